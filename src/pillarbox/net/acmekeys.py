"""The P-256 keys of ACME: the account's and each certificate's, made new or read from a file.

Every key here is P-256: a new certificate's key replaces the old one's in OpenSSL's one slot
per key type of the shared TLS context (:mod:`pillarbox.net.acme`).
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def new_key_pem() -> bytes:
    """A new P-256 private key as PKCS#8 PEM."""
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def file_key(path: Path) -> bytes | None:
    """Blocking: the EC key in ``path`` (an earlier version's ``account.key``, or the key of
    the certificate held now) as PKCS#8 PEM; None if there is no such file, or it holds no EC
    key (then a new key is made, as that version would have done)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
