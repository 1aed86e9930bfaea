"""Issued secrets (app passwords, API tokens): how they are stored and recognised.

They are 32 random bytes shown once to the user, so the store keeps only their SHA-256: a slow
hash would add cost per login and nothing against guessing a 256-bit secret.
"""

from __future__ import annotations

import hashlib


def token_digest(secret: str) -> str:
    """The stored form of an issued secret: SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()
