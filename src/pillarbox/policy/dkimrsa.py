"""dkimpy's RSA signature check (RSASSA-PKCS1-v1_5, RFC 8017 §8.2.2), with OpenSSL asked first.

Implementation notes:

- dkimpy verifies RSA signatures in pure Python (``dkim.crypto.RSASSA_PKCS1_v1_5_verify``:
  the modular exponentiation and byte conversions), about 180 µs for a 2048-bit key, the
  largest single cost of a DKIM-signed message from the internet (docs/performance.md,
  "Session 7"). :func:`verify` is that function with the exponentiation done by OpenSSL
  (``cryptography``, ~15 µs); :func:`install` puts it where dkimpy's ``verify_sig_process``
  (DKIM and ARC) looks it up, the one place dkimpy does the RSA step. Everything else —
  canonicalisation, hashing, tag and key parsing, RFC 8301 key size and algorithm rules — is
  still dkimpy's.
- The result is always dkimpy's. OpenSSL only *recovers* the padded block: it computes
  s^e mod n (refusing s ≥ n) and strips the type-1 padding, which it checks strictly (RFC 8017
  §9.2 note: 00 01, at least eight FF, 00). :func:`verify` rebuilds the whole block from what
  came back and compares it with dkimpy's own encoding of the expected digest
  (``EMSA_PKCS1_v1_5_encode``, DigestInfo for the hash dkimpy used, rsa-sha1 included), so
  ``True`` means exactly what dkimpy's comparison means. Anything else — a block that differs,
  a signature OpenSSL refuses (longer than the modulus, s ≥ n), a key OpenSSL refuses (even
  exponent…) — is handed to dkimpy's original function, whose answer (or exception) is
  returned. A forged signature therefore costs both checks; a good one only OpenSSL's.
"""

from __future__ import annotations

import functools
from typing import Protocol

import dkim
import dkim.crypto
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding, rsa

#: dkimpy's own function, kept to answer whatever OpenSSL does not confirm.
DKIMPY_VERIFY = dkim.crypto.RSASSA_PKCS1_v1_5_verify

#: Distinct RSA public keys kept loaded into OpenSSL (a busy hour's senders).
KEY_CACHE_SIZE = 512


class _Hash(Protocol):
    """What dkimpy passes as ``hash``: a hashlib-like object (``dkim.HashThrough``)."""

    name: str

    def digest(self) -> bytes: ...


@functools.lru_cache(maxsize=KEY_CACHE_SIZE)
def _openssl_key(modulus: int, exponent: int) -> rsa.RSAPublicKey | None:
    """The key loaded into OpenSSL, or None if OpenSSL refuses it (dkimpy may not)."""
    try:
        return rsa.RSAPublicNumbers(exponent, modulus).public_key()
    except ValueError:
        return None


def verify(digest: _Hash, signature: bytes, public_key: dict[str, int]) -> bool:
    """``dkim.crypto.RSASSA_PKCS1_v1_5_verify(digest, signature, public_key)``, the same
    answer (see the module notes). ``digest`` is the hash object of the signed data;
    ``public_key`` is dkimpy's parse (``modulus``, ``publicExponent``)."""
    modulus = public_key["modulus"]
    key = _openssl_key(modulus, public_key["publicExponent"])
    if key is not None:
        try:
            payload = key.recover_data_from_signature(signature, padding.PKCS1v15(), None)
        except (InvalidSignature, ValueError):
            payload = None
        if payload is not None:
            length = (modulus.bit_length() + 7) // 8  # k, the modulus in octets
            block = b"\x00\x01" + b"\xff" * (length - len(payload) - 3) + b"\x00" + payload
            if block == dkim.crypto.EMSA_PKCS1_v1_5_encode(digest, length):
                return True
    valid: bool = DKIMPY_VERIFY(digest, signature, public_key)
    return valid


def install() -> None:
    """Have dkimpy's DKIM and ARC verification call :func:`verify` for the RSA step (once per
    process; called again, nothing changes)."""
    current = getattr(dkim, "RSASSA_PKCS1_v1_5_verify", None)
    if current is verify:
        return
    if current is not DKIMPY_VERIFY:
        # A dkimpy that no longer calls the function by this name would silently keep its
        # pure-Python check, or call something else; refuse to guess.
        raise RuntimeError("dkimpy no longer verifies RSA through RSASSA_PKCS1_v1_5_verify")
    dkim.RSASSA_PKCS1_v1_5_verify = verify
