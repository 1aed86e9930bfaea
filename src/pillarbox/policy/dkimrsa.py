"""dkimpy's RSA signature check and signing (RSASSA-PKCS1-v1_5, RFC 8017 §8.2), with OpenSSL
asked first.

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
- Signing is the same seam the other way: dkimpy's ``RSASSA_PKCS1_v1_5_sign`` (DKIM and ARC
  signing both reach it from ``DKIM.gen_header``) does the private-key operation in pure Python
  (CRT, two 1024-bit ``pow`` for a 2048-bit key: ~5 ms, holding the GIL, so even off the
  event loop it stalls it); :func:`sign` has OpenSSL do it on the digest dkimpy computed
  (~0.2 ms, the GIL released). RSASSA-PKCS1-v1_5 is deterministic (RFC 8017 §8.2.1: s = m^d
  mod n of a fixed encoding), so the octets are dkimpy's own whenever both use the same
  encoding and the same s: OpenSSL's DigestInfo for SHA-1 and SHA-256 is dkimpy's (with the
  NULL parameters, RFC 8017 §9.2 note 1), and a key is loaded only if OpenSSL's consistency
  check passes (d, the CRT exponents and coefficient agree with p, q and e: dkimpy signs with
  the CRT values and never reads d). A hash dkimpy names otherwise, a key OpenSSL refuses, or
  a signing OpenSSL refuses (a modulus too short for the digest) is done by dkimpy's original
  function, with its octets or exception. Loading a key checks it (~27 ms for 2048 bits), so
  loaded keys are kept, by all their numbers.
"""

from __future__ import annotations

import functools
from typing import Protocol

import dkim
import dkim.crypto
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

#: dkimpy's own functions, kept to answer whatever OpenSSL does not confirm or will not do.
DKIMPY_VERIFY = dkim.crypto.RSASSA_PKCS1_v1_5_verify
DKIMPY_SIGN = dkim.crypto.RSASSA_PKCS1_v1_5_sign

#: Distinct RSA public keys kept loaded into OpenSSL (a busy hour's senders).
KEY_CACHE_SIZE = 512
#: Distinct RSA private keys kept loaded (our domains' signing and sealing keys).
PRIVATE_KEY_CACHE_SIZE = 256

#: The hashes dkimpy can encode (its ``HASH_ID_MAP``), by the name its hash object gives.
_DIGESTS: dict[str, type[hashes.SHA1 | hashes.SHA256]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
}
#: dkimpy's parse of a private key (``parse_private_key``), the numbers a key is kept by.
_PRIVATE_NUMBERS = (
    "modulus", "publicExponent", "privateExponent", "prime1", "prime2", "exponent1",
    "exponent2", "coefficient",
)  # fmt: skip


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


@functools.lru_cache(maxsize=PRIVATE_KEY_CACHE_SIZE)
def _openssl_private_key(numbers: tuple[int, ...]) -> rsa.RSAPrivateKey | None:
    """The key (:data:`_PRIVATE_NUMBERS`, in that order) loaded into OpenSSL after its
    consistency check, or None if OpenSSL refuses it (dkimpy, which never checks, may not)."""
    n, e, d, p, q, dmp1, dmq1, iqmp = numbers
    try:
        return rsa.RSAPrivateNumbers(
            p, q, d, dmp1, dmq1, iqmp, rsa.RSAPublicNumbers(e, n)
        ).private_key()
    except ValueError:
        return None


def sign(digest: _Hash, private_key: dict[str, int]) -> bytes:
    """``dkim.crypto.RSASSA_PKCS1_v1_5_sign(digest, private_key)``, the same octets (see the
    module notes). ``private_key`` is dkimpy's parse of the PEM key."""
    algorithm = _DIGESTS.get(digest.name.lower())
    if algorithm is not None:
        key = _openssl_private_key(tuple(private_key[name] for name in _PRIVATE_NUMBERS))
        if key is not None:
            try:
                return key.sign(digest.digest(), padding.PKCS1v15(), Prehashed(algorithm()))
            except ValueError:
                pass
    return bytes(DKIMPY_SIGN(digest, private_key))


#: dkimpy's module-level names for the RSA steps (``from dkim.crypto import ...`` in
#: ``dkim/__init__.py``), with its own function and ours.
_SEAMS = (
    ("RSASSA_PKCS1_v1_5_verify", DKIMPY_VERIFY, verify),
    ("RSASSA_PKCS1_v1_5_sign", DKIMPY_SIGN, sign),
)


def install() -> None:
    """Have dkimpy's DKIM and ARC verification and signing call :func:`verify` and :func:`sign`
    for the RSA step (once per process; called again, nothing changes)."""
    for name, original, ours in _SEAMS:
        if getattr(dkim, name, None) not in (original, ours):
            # A dkimpy that no longer calls the function by this name would silently keep
            # its pure-Python step, or call something else; refuse to guess.
            raise RuntimeError(f"dkimpy no longer does the RSA step through {name}")
    for name, _, ours in _SEAMS:
        setattr(dkim, name, ours)
