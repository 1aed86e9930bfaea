"""Sealing of TOTP secrets at rest (pillarbox.web.totpseal): bound to the key, the account and
the purpose; the key file of its own (made from the web secret on upgrade, never replaced,
never tied to later changes of the web secret); and the QR code of the key URI."""

from __future__ import annotations

import base64
import os
import stat
import threading
from pathlib import Path

import pytest

from pillarbox.atomicfile import create_exclusively
from pillarbox.auth import totp
from pillarbox.errors import ConfigError
from pillarbox.web.session import SECRET_FILE, load_secret
from pillarbox.web.totpseal import KEY_FILE, TotpSealer, load_key, read_key
from pillarbox.web.twofactor import qr_data_uri

SEALER = TotpSealer(b"s" * 32)
#: Sealed for account 7 by the code before totp-key existed (a key derived from a web-secret
#: of bytes 0…31): the upgrade must keep such enrolments opening.
OLD_WEB_SECRET = bytes(range(32))
OLD_SEALED = "v1:tny6TX-aj-kG_ovmMV40XEQpp2tMkg7ub2XZpVvw-rv0Au1tMRHYu6LQIeIztlF1"
OLD_SECRET = b"12345678901234567890"


def test_sealed_secret_opens_only_for_its_account_purpose_and_key() -> None:
    key = totp.new_secret()
    sealed = SEALER.seal(7, key)
    assert sealed.startswith("v1:")
    assert key not in base64.urlsafe_b64decode(sealed[3:])  # not stored in the clear
    assert totp.encode_secret(key).replace(" ", "") not in sealed
    assert SEALER.unseal(7, sealed) == key
    assert SEALER.seal(7, key) != sealed  # a fresh nonce each time
    assert SEALER.unseal(8, sealed) is None  # copied onto another account
    assert SEALER.unseal(7, sealed, "enrol") is None  # a stored secret is not a set-up form's
    assert TotpSealer(b"t" * 32).unseal(7, sealed) is None  # another server's key
    for broken in ("", "v1:", "v1:!!!", "v2:" + sealed[3:], sealed[:-4]):
        assert SEALER.unseal(7, broken) is None


def test_upgrade_keeps_old_enrolments_and_frees_them_from_the_web_secret(tmp_path: Path) -> None:
    (tmp_path / SECRET_FILE).write_bytes(OLD_WEB_SECRET)
    key = load_key(tmp_path)
    assert TotpSealer(key).unseal(7, OLD_SEALED) == OLD_SECRET
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    # The operator replaces the web secret (to end every session): sessions go, 2FA stays.
    (tmp_path / SECRET_FILE).unlink()
    assert load_secret(tmp_path) != OLD_WEB_SECRET
    assert load_key(tmp_path) == key
    assert TotpSealer(load_key(tmp_path)).unseal(7, OLD_SEALED) == OLD_SECRET


def test_a_new_server_gets_a_random_key_of_its_own(tmp_path: Path) -> None:
    assert read_key(tmp_path) is None
    key = load_key(tmp_path)
    assert len(key) == 32 and load_key(tmp_path) == key
    web_secret = load_secret(tmp_path)
    assert web_secret != key and load_key(tmp_path) == key
    other = tmp_path / "other"
    assert load_key(other) != key


def test_a_damaged_key_file_stops_the_start_and_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_bytes(b"truncated")
    with pytest.raises(ConfigError) as refused:
        load_key(tmp_path)
    assert str(tmp_path / KEY_FILE) in str(refused.value)
    assert "pillarbox user 2fa ADDRESS --disable" in str(refused.value)
    assert (tmp_path / KEY_FILE).read_bytes() == b"truncated"


def test_processes_starting_together_end_with_one_key(tmp_path: Path) -> None:
    keys: list[bytes] = []
    start = threading.Barrier(8)

    def first_start() -> None:
        start.wait()
        keys.append(load_key(tmp_path))

    threads = [threading.Thread(target=first_start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1 and keys[0] == read_key(tmp_path)
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]  # no leftovers


def test_create_exclusively_never_replaces(tmp_path: Path) -> None:
    path = tmp_path / "key"
    assert create_exclusively(path, b"first", 0o600)
    assert not create_exclusively(path, b"second", 0o600)
    assert path.read_bytes() == b"first"


def test_qr_code_is_an_svg_data_uri() -> None:
    uri = totp.key_uri(totp.new_secret(), issuer="Pillarbox x", account="a@example.org")
    image = qr_data_uri(uri)
    assert image.startswith("data:image/svg+xml")
