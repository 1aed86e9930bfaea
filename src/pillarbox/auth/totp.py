"""One-time passwords: HOTP (RFC 4226) and TOTP (RFC 6238), the second factor of the web login.

Sans-I/O: time is an argument (Unix seconds), the caller keeps the last accepted step.

Implementation notes:

- **Parameters** are the ones every authenticator app implements and the ``otpauth://`` key
  URI defaults to: HMAC-SHA-1, 6 digits, 30-second steps from the Unix epoch (RFC 6238 §4.1,
  T0 = 0, X = 30). The secret is 160 bits, the HMAC-SHA-1 key length RFC 4226 §4 (R6)
  recommends, from :mod:`secrets`.
- **Window.** A code of the current step or of one step either side is accepted (RFC 6238
  §5.2 recommends at most one step of network delay; the step before also covers a clock a
  little behind). The step a code matched is returned so the caller can refuse it and every
  earlier one next time (§5.2: "the verifier MUST NOT accept the second attempt of the same
  OTP after the successful validation has been issued for the first OTP").
- **Constant time.** Every step of the window is computed and compared with
  :func:`hmac.compare_digest`, whichever matches, so timing tells nothing about the code.
- **Recovery codes** are 10 random letters from an alphabet without look-alikes (~50 bits
  each); like app passwords they are stored only as SHA-256 digests (a slow hash adds nothing
  against guessing 50 random bits behind a rate limit).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from urllib.parse import quote, urlencode

#: RFC 4226 §4 R6: the shared secret is at least 128 bits; 160 recommended.
SECRET_BYTES = 20
DIGITS = 6
#: RFC 6238 §4.1: X, the time step in seconds (30 is the recommended default, §5.2).
STEP_SECONDS = 30
#: Steps either side of the current one whose codes are accepted (RFC 6238 §5.2).
WINDOW = 1
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
_RECOVERY_LETTERS = 10


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def hotp(key: bytes, counter: int, *, digits: int = DIGITS, digest: str = "sha1") -> str:
    """RFC 4226 §5.3: HMAC over the 8-byte big-endian counter, dynamic truncation, modulo
    10^digits, zero-padded."""
    mac = hmac.digest(key, struct.pack(">Q", counter), digest)
    offset = mac[-1] & 0x0F  # §5.3: the low-order 4 bits of the last byte
    binary = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(binary % 10**digits).zfill(digits)


def time_step(unix_time: float) -> int:
    """RFC 6238 §4.2: T = floor((Current Unix time - T0) / X), T0 = 0."""
    return int(unix_time // STEP_SECONDS)


def totp(key: bytes, unix_time: float, *, digits: int = DIGITS, digest: str = "sha1") -> str:
    """RFC 6238 §4.2: TOTP = HOTP(K, T)."""
    return hotp(key, time_step(unix_time), digits=digits, digest=digest)


def normalize_code(text: str) -> str:
    """What a user typed, without the spaces and dashes apps show in codes."""
    return "".join(text.split()).replace("-", "")


def matching_step(key: bytes, code: str, unix_time: float, *, after: int = -1) -> int | None:
    """The time step within the window whose code is ``code``, if it is later than
    ``after`` (the last step a code was accepted for), else None."""
    code = normalize_code(code)
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    now = time_step(unix_time)
    found: int | None = None
    for step in range(now - WINDOW, now + WINDOW + 1):
        # Every step is computed and compared: no early exit to time.
        if hmac.compare_digest(hotp(key, step), code) and step > after and found is None:
            found = step
    return found


def encode_secret(key: bytes) -> str:
    """The secret as authenticator apps take it typed in: base32 without padding (the
    ``secret`` parameter of the key URI), in groups of four for reading."""
    text = base64.b32encode(key).decode("ascii").rstrip("=")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def decode_secret(text: str) -> bytes | None:
    """The inverse of :func:`encode_secret` (spaces, case and padding forgiven); None if it
    is not base32 of a secret of at least :data:`SECRET_BYTES`."""
    compact = "".join(text.split()).upper().rstrip("=")
    try:
        key = base64.b32decode(compact + "=" * (-len(compact) % 8))
    except (ValueError, TypeError):
        return None
    return key if len(key) >= SECRET_BYTES else None


def key_uri(key: bytes, *, issuer: str, account: str) -> str:
    """The ``otpauth://totp/ISSUER:ACCOUNT?secret=…&issuer=…`` URI authenticator apps read
    from a QR code (the de-facto Key URI Format of Google Authenticator; the parameters left
    out are the defaults: SHA1, 6 digits, period 30)."""
    label = quote(f"{issuer}:{account}", safe="@:")
    secret = encode_secret(key).replace(" ", "")
    return f"otpauth://totp/{label}?" + urlencode(
        {"secret": secret, "issuer": issuer}, quote_via=quote
    )


def new_recovery_codes(count: int = RECOVERY_CODES) -> list[str]:
    """Fresh one-time recovery codes, shown once (``xxxxx-xxxxx``)."""
    codes = []
    for _ in range(count):
        letters = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LETTERS))
        codes.append(f"{letters[:5]}-{letters[5:]}")
    return codes


def recovery_digest(code: str) -> str:
    """The stored form of a recovery code: SHA-256 of its normal form (no spaces or dashes,
    lower case), so it is accepted however it is typed."""
    return hashlib.sha256(normalize_code(code).lower().encode()).hexdigest()


def looks_like_recovery_code(text: str) -> bool:
    code = normalize_code(text).lower()
    return len(code) == _RECOVERY_LETTERS and all(c in _RECOVERY_ALPHABET for c in code)
