"""Sealing of TOTP secrets at rest (pillarbox.web.twofactor): bound to the server secret, the
account and the purpose; and the QR code of the key URI."""

from __future__ import annotations

import base64

from pillarbox.auth import totp
from pillarbox.web.session import SessionCodec
from pillarbox.web.twofactor import qr_data_uri, seal, unseal

CODEC = SessionCodec(b"s" * 32, ttl=3600)


def test_sealed_secret_opens_only_for_its_account_purpose_and_server() -> None:
    key = totp.new_secret()
    sealed = seal(CODEC, 7, key)
    assert sealed.startswith("v1:")
    assert key not in base64.urlsafe_b64decode(sealed[3:])  # not stored in the clear
    assert totp.encode_secret(key).replace(" ", "") not in sealed
    assert unseal(CODEC, 7, sealed) == key
    assert seal(CODEC, 7, key) != sealed  # a fresh nonce each time
    assert unseal(CODEC, 8, sealed) is None  # copied onto another account
    assert unseal(CODEC, 7, sealed, "enrol") is None  # a stored secret is not a set-up form's
    assert unseal(SessionCodec(b"t" * 32, ttl=3600), 7, sealed) is None  # another server key
    for broken in ("", "v1:", "v1:!!!", "v2:" + sealed[3:], sealed[:-4]):
        assert unseal(CODEC, 7, broken) is None


def test_qr_code_is_an_svg_data_uri() -> None:
    uri = totp.key_uri(totp.new_secret(), issuer="Pillarbox x", account="a@example.org")
    image = qr_data_uri(uri)
    assert image.startswith("data:image/svg+xml")
