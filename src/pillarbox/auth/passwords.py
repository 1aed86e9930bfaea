"""Password storage: argon2id hashes (RFC 9106), SCRAM-SHA-256 verifiers, and a strength rule.

Every account keeps two derived forms of its password and never the password itself: an argon2id
PHC string (checked for PLAIN, LOGIN, IMAP LOGIN, POP3 PASS) and a SCRAM verifier (StoredKey and
ServerKey, RFC 5802 §3) for SCRAM-SHA-256. Both are computed from the SASLprep'd password
(RFC 4616 §2: prepare before any non-invertible function), so every mechanism agrees on it.

Hashing is deliberately slow: call these through ``pillarbox.blocking.run_blocking`` from async
code. Tests pass cheap :class:`HashParams` explicitly.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import secrets
from dataclasses import dataclass

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

from pillarbox.auth.saslprep import StringprepError, saslprep
from pillarbox.auth.scram import SCRAM_SHA_256, ScramVerifier, derive_verifier
from pillarbox.errors import UserError


class InvalidVerifier(UserError):
    """A string is not an encoded SCRAM-SHA-256 verifier, or cannot be made into one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HashParams:
    """Cost parameters for new password hashes; existing hashes carry their own.

    Defaults are RFC 9106 §4's second recommended option (64 MiB, 3 passes, 4 lanes) and the
    SCRAM iteration count RFC 7677 §3 asks for at least.
    """

    #: argon2 passes over memory.
    time_cost: int = 3
    #: argon2 memory in KiB.
    memory_cost: int = 65536
    #: argon2 lanes.
    parallelism: int = 4
    #: argon2 tag length in octets.
    hash_len: int = 32
    #: Salt length in octets, for argon2 and SCRAM alike.
    salt_len: int = 16
    #: PBKDF2 iterations for new SCRAM-SHA-256 verifiers (RFC 7677 §3: SHOULD be ≥ 4096).
    scram_iterations: int = 4096


DEFAULT_HASH_PARAMS = HashParams()


def _hasher(params: HashParams) -> argon2.PasswordHasher:
    return argon2.PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_cost,
        parallelism=params.parallelism,
        hash_len=params.hash_len,
        salt_len=params.salt_len,
        type=argon2.Type.ID,
    )


def hash_password(password: str, params: HashParams = DEFAULT_HASH_PARAMS) -> str:
    """An argon2id PHC string (``$argon2id$v=19$m=…,t=…,p=…$salt$tag``) for ``password``.

    Raises :class:`~pillarbox.auth.saslprep.StringprepError` if the password holds characters
    SASLprep prohibits (controls, unassigned code points, ...): such a password could never be
    typed the same way twice.
    """
    return _hasher(params).hash(saslprep(password, stored=True))


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``.

    Anything that is not an argon2 PHC string never matches: an operator may store ``!`` to
    disable password logins for an account, as in ``/etc/shadow``.
    """
    try:
        prepared = saslprep(password)
        # The hash carries its own cost parameters; the hasher's own are irrelevant here.
        return _hasher(DEFAULT_HASH_PARAMS).verify(password_hash, prepared)
    except (StringprepError, VerificationError, InvalidHashError):
        return False


def is_password_hash(value: str) -> bool:
    """Whether ``value`` is an argon2id hash at all (else password logins are disabled)."""
    try:
        return argon2.extract_parameters(value).type is argon2.Type.ID
    except InvalidHashError:
        return False


def needs_rehash(password_hash: str, params: HashParams = DEFAULT_HASH_PARAMS) -> bool:
    """Whether a (verified) hash was made with other parameters than ``params``."""
    return _hasher(params).check_needs_rehash(password_hash)


# -- SCRAM verifiers ----------------------------------------------------------------------------

_SCRAM_PREFIX = "SCRAM-SHA-256"
# SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, as PostgreSQL stores it.
_VERIFIER = re.compile(
    r"SCRAM-SHA-256\$([1-9][0-9]{0,9}):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)"
)


def scram_verifier(
    password: str,
    salt: bytes | None = None,
    iterations: int | None = None,
    *,
    params: HashParams = DEFAULT_HASH_PARAMS,
) -> str:
    """An encoded SCRAM-SHA-256 verifier for ``password``, in PostgreSQL's format:
    ``SCRAM-SHA-256$<iterations>:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>``.

    ``salt`` and ``iterations`` default to a fresh random salt and ``params``' values.
    Raises :class:`~pillarbox.auth.saslprep.StringprepError` like :func:`hash_password`.
    """
    saslprep(password, stored=True)  # reject what hash_password rejects, for the same reason
    salt = secrets.token_bytes(params.salt_len) if salt is None else salt
    iterations = params.scram_iterations if iterations is None else iterations
    if iterations < 1 or not salt:
        raise InvalidVerifier("SCRAM needs a non-empty salt and a positive iteration count")
    return encode_scram_verifier(derive_verifier(SCRAM_SHA_256, password, salt, iterations))


def encode_scram_verifier(verifier: ScramVerifier) -> str:
    """The stored text form of ``verifier`` (see :func:`scram_verifier`)."""
    b64 = base64.b64encode
    return (
        f"{_SCRAM_PREFIX}${verifier.iterations}:{b64(verifier.salt).decode()}"
        f"${b64(verifier.stored_key).decode()}:{b64(verifier.server_key).decode()}"
    )


def parse_scram_verifier(text: str) -> ScramVerifier:
    """The :class:`ScramVerifier` encoded in ``text``; :class:`InvalidVerifier` if it is not one."""
    match = _VERIFIER.fullmatch(text)
    if match is None:
        raise InvalidVerifier("not a SCRAM-SHA-256 verifier")
    iterations, *encoded = match.groups()
    try:
        salt, stored, server = (base64.b64decode(e, validate=True) for e in encoded)
    except binascii.Error as exc:
        raise InvalidVerifier("bad base64 in SCRAM-SHA-256 verifier") from exc
    if not salt or len(stored) != SCRAM_SHA_256.size or len(server) != SCRAM_SHA_256.size:
        raise InvalidVerifier("SCRAM-SHA-256 verifier has wrong key sizes")
    return ScramVerifier(SCRAM_SHA_256, int(iterations), salt, stored, server)


# -- strength -----------------------------------------------------------------------------------

#: Passwords at the top of every leaked-password list; compared case-insensitively. Short ones
#: are caught by the length rule already and are here so a low ``min_length`` still rejects them.
COMMON_PASSWORDS = frozenset(
    {
        "123456", "123456789", "12345678", "1234567890", "1234567", "12345", "password",
        "password1", "password123", "passw0rd", "p@ssw0rd", "p@ssword", "qwerty", "qwerty123",
        "qwertyuiop", "qwertyui", "asdfghjkl", "asdfasdf", "zxcvbnm", "1q2w3e4r", "1q2w3e4r5t",
        "1qaz2wsx", "zaq12wsx", "qazwsx", "abc123", "abc12345", "abcd1234", "iloveyou",
        "sunshine", "princess", "football", "baseball", "basketball", "welcome", "welcome1",
        "welcome123", "letmein", "letmein1", "trustno1", "superman", "batman", "starwars",
        "dragon", "monkey", "master", "shadow", "michael", "jennifer", "jordan23", "changeme",
        "admin", "admin123", "administrator", "root", "toor", "test", "test1234", "testtest",
        "secret", "hello123", "helloworld", "whatever", "computer", "internet", "mustang",
        "access", "freedom", "football1", "charlie", "donald", "login", "master123", "pokemon",
        "q1w2e3r4", "q1w2e3r4t5y6", "987654321", "0987654321", "666666", "654321", "121212",
        "password!", "summer2024", "winter2024", "spring2024", "autumn2024", "mypassword",
        "letmein123", "iloveyou1", "princess1", "sunshine1", "chocolate", "liverpool",
        "arsenal", "chelsea", "manchester", "samsung", "google", "linkedin", "facebook",
        "azerty", "azertyuiop", "qwertz", "qwertzuiop", "motdepasse", "passwort", "contraseña",
        "senha", "parola", "salasana", "wachtwoord",
    }
)  # fmt: skip


def check_strength(
    password: str, min_length: int, *, forbidden: tuple[str, ...] = ()
) -> str | None:
    """Why ``password`` is too weak to set, or ``None`` if it is acceptable.

    ``forbidden`` holds strings the password must not be built around, typically the account's
    address and local part: with them taken out, it must still be ``min_length`` long.
    Length counts characters after SASLprep.
    """
    try:
        prepared = saslprep(password, stored=True)
    except StringprepError as exc:
        return f"contains a character not allowed in passwords ({exc})"
    if len(prepared) < min_length:
        return f"shorter than {min_length} characters"
    folded = prepared.casefold()
    if len(set(folded)) == 1:
        return "repeats a single character"
    codes = [ord(ch) for ch in folded]
    steps = {b - a for a, b in itertools.pairwise(codes)}
    if steps in ({1}, {-1}):
        return "is a simple sequence"
    if folded in COMMON_PASSWORDS:
        return "is one of the most common passwords"
    for word in forbidden:
        # What is left without the name must itself pass the length rule.
        if word and len(folded.replace(word.casefold(), "")) < min_length:
            return "is too close to the account name"
    return None
