"""The key that seals two-factor login (TOTP) secrets at rest, and the sealing itself (also of
the message a two-step login holds between its steps, under a purpose of its own:
:mod:`.loginhold`).

Implementation notes:

- **A key of its own** (``data_dir/totp-key``, 32 bytes, mode 0600), not the web secret:
  ``web-secret`` signs session cookies, and replacing it is how an operator ends every
  session at once (a node whose data directory is new makes one afresh, too). TOTP secrets
  used to be sealed under a key derived from it, so replacing it silently made every
  enrolment unusable. This key is never rotated: an enrolment lasts as long as its owner
  keeps it, and a new key could not open the old secrets anyway.
- **The upgrade keeps every enrolment.** When ``totp-key`` does not exist but ``web-secret``
  does, the new file holds the very key the secrets were sealed under until now (derived from
  ``web-secret`` as :class:`pillarbox.web.session.SessionCodec` did), so they keep opening and
  nothing in the store is rewritten; from then on the two files are independent. A new server
  makes it at random. It is created with a link (never over an existing file), so two
  processes starting together end with one key.
- **Never replaced without a word.** A ``totp-key`` of the wrong size is a :class:`ConfigError`
  at start-up naming the file and the way out; made afresh, it would orphan every enrolment.
- **Lost anyway** (no backup, or nodes with different files): the secrets do not open. The
  login's code step says so and still takes recovery codes (stored as digests, not sealed);
  the admin's accounts page and ``pillarbox user 2fa ADDRESS`` show the enrolment as
  unreadable; removing it there (or ``--disable``) lets the owner enrol again.
- **Sealing**: AES-256-GCM with a random 96-bit nonce; the associated data names the purpose
  and the account, so a sealed secret copied onto another account's row, or an enrolment
  form's value offered as a stored one, does not open.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pillarbox.atomicfile import create_exclusively
from pillarbox.errors import ConfigError
from pillarbox.store.types import TotpEnrolment
from pillarbox.web.session import SECRET_FILE

KEY_FILE = "totp-key"
KEY_BYTES = 32
_SEAL_VERSION = "v1:"
_NONCE_BYTES = 12


class TotpSealer:
    """Seals and opens TOTP secrets (and login holds) under one key."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, account_id: int, secret: bytes, purpose: str = "stored") -> str:
        """``secret`` encrypted for ``account_id`` (``purpose`` keeps an enrolment form's
        value from being taken for a stored one and back)."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret, f"{purpose}:{account_id}".encode())
        return _SEAL_VERSION + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def unseal(self, account_id: int, text: str, purpose: str = "stored") -> bytes | None:
        """The secret sealed by :meth:`seal`, or None if it was not sealed for this account
        and purpose under this key."""
        if not text.startswith(_SEAL_VERSION):
            return None
        try:
            blob = base64.urlsafe_b64decode(text[len(_SEAL_VERSION) :])
            return self._aead.decrypt(
                blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], f"{purpose}:{account_id}".encode()
            )
        except (ValueError, InvalidTag):
            return None

    def opens(self, enrolment: TotpEnrolment) -> bool:
        """Whether the enrolment's stored secret opens under this key."""
        return self.unseal(enrolment.account_id, enrolment.sealed_secret) is not None


def read_key(data_dir: Path) -> bytes | None:
    """The sealing key, None when there is none yet; :class:`ConfigError` when the file is
    not a key."""
    path = data_dir / KEY_FILE
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(key) != KEY_BYTES:
        raise ConfigError(
            "",
            f"{path} is {len(key)} bytes, not a {KEY_BYTES}-byte key: restore it from a backup "
            "(every node needs the same file). Without it no two-factor login opens; to start "
            "over, delete it and remove each enrolment (pillarbox user 2fa ADDRESS --disable).",
        )
    return key


def load_key(data_dir: Path) -> bytes:
    """The sealing key, made on first use (see the module notes). Blocking: at start-up."""
    key = read_key(data_dir)
    if key is not None:
        return key
    # Another process may have made it meanwhile: then that one is the key.
    create_exclusively(data_dir / KEY_FILE, _first_key(data_dir), 0o600)
    key = read_key(data_dir)
    assert key is not None
    return key


def _first_key(data_dir: Path) -> bytes:
    """The key the secrets sealed so far were sealed under (derived from the web secret, as
    ``SessionCodec.subkey(b"totp-secret")`` did), or a random one on a new server."""
    try:
        web_secret = (data_dir / SECRET_FILE).read_bytes()
    except FileNotFoundError:
        return secrets.token_bytes(KEY_BYTES)
    return hmac.digest(web_secret, b"subkey\x00totp-secret", hashlib.sha256)
