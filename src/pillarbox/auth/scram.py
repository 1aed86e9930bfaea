"""SCRAM key derivation (RFC 5802 §3), shared by the server and client mechanisms and by
password storage.

The server never stores the password, only ``StoredKey`` and ``ServerKey``: enough to check a
ClientProof and to prove itself with a ServerSignature, not enough to log in elsewhere as the
user (an attacker holding them still has to invert a hash to get the ClientKey).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from pillarbox.auth.saslprep import saslprep


@dataclass(frozen=True, slots=True)
class ScramHash:
    """One member of the SCRAM family (RFC 5802 §4): the mechanism name and its hash function."""

    mechanism: str
    #: The name ``hashlib`` and ``hmac`` know the function by.
    algorithm: str
    #: Output size in octets; a ClientProof or ServerSignature of another length is malformed.
    size: int


#: RFC 7677 §3 — the mechanism Pillarbox offers.
SCRAM_SHA_256 = ScramHash("SCRAM-SHA-256", "sha256", 32)
#: RFC 5802 §4 — for clients of servers that offer nothing better.
SCRAM_SHA_1 = ScramHash("SCRAM-SHA-1", "sha1", 20)


@dataclass(frozen=True, slots=True)
class ScramVerifier:
    """What a server stores for one user and one SCRAM hash (RFC 5802 §3)."""

    hash: ScramHash
    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes


def salted_password(h: ScramHash, password: str, salt: bytes, iterations: int) -> bytes:
    """``SaltedPassword := Hi(Normalize(password), salt, i)`` (RFC 5802 §3).

    Hi is PBKDF2 with HMAC as the PRF and one output block (RFC 5802 §2.2), which is exactly
    ``hashlib.pbkdf2_hmac`` with the digest size as length. Raises
    :class:`~pillarbox.auth.saslprep.StringprepError` if the password cannot be prepared.
    """
    normalized = saslprep(password)
    return hashlib.pbkdf2_hmac(h.algorithm, normalized.encode("utf-8"), salt, iterations, h.size)


def hmac_digest(h: ScramHash, key: bytes, message: bytes) -> bytes:
    """``HMAC(key, str)`` of RFC 5802 §2.2."""
    return hmac.digest(key, message, h.algorithm)


def client_key(h: ScramHash, salted: bytes) -> bytes:
    """``ClientKey := HMAC(SaltedPassword, "Client Key")`` (RFC 5802 §3)."""
    return hmac_digest(h, salted, b"Client Key")


def server_key(h: ScramHash, salted: bytes) -> bytes:
    """``ServerKey := HMAC(SaltedPassword, "Server Key")`` (RFC 5802 §3)."""
    return hmac_digest(h, salted, b"Server Key")


def stored_key(h: ScramHash, key: bytes) -> bytes:
    """``StoredKey := H(ClientKey)`` (RFC 5802 §3)."""
    return hashlib.new(h.algorithm, key).digest()


def derive_verifier(h: ScramHash, password: str, salt: bytes, iterations: int) -> ScramVerifier:
    """The StoredKey/ServerKey pair for ``password``: what the store keeps instead of it."""
    salted = salted_password(h, password, salt, iterations)
    return ScramVerifier(
        hash=h,
        iterations=iterations,
        salt=salt,
        stored_key=stored_key(h, client_key(h, salted)),
        server_key=server_key(h, salted),
    )


def xor(a: bytes, b: bytes) -> bytes:
    """Octet-wise exclusive or of two equal-length strings (ClientProof, RFC 5802 §3)."""
    return bytes(x ^ y for x, y in zip(a, b, strict=True))
