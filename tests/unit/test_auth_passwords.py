"""Password storage (pillarbox.auth.passwords) and SASLprep (pillarbox.auth.saslprep)."""

from __future__ import annotations

import base64

import pytest

from pillarbox.auth.passwords import (
    HashParams,
    InvalidVerifier,
    check_strength,
    encode_scram_verifier,
    hash_password,
    is_password_hash,
    needs_rehash,
    parse_scram_verifier,
    scram_verifier,
    verify_password,
)
from pillarbox.auth.saslprep import StringprepError, saslprep
from pillarbox.auth.scram import SCRAM_SHA_256

CHEAP = HashParams(time_cost=1, memory_cost=8, parallelism=1, hash_len=16, salt_len=8)


def test_hash_is_argon2id_phc_and_verifies() -> None:
    hashed = hash_password("correct horse battery", CHEAP)
    assert hashed.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert is_password_hash(hashed)
    assert verify_password(hashed, "correct horse battery")
    assert not verify_password(hashed, "correct horse battery ")
    assert not verify_password(hashed, "")


def test_two_hashes_of_one_password_differ() -> None:
    assert hash_password("same", CHEAP) != hash_password("same", CHEAP)


def test_passwords_are_saslprepped_before_hashing() -> None:
    # U+00A0 NO-BREAK SPACE maps to SPACE; U+00AD SOFT HYPHEN maps to nothing (RFC 4013 §2.1).
    hashed = hash_password("a\u00a0b\u00adc", CHEAP)
    assert verify_password(hashed, "a bc")


@pytest.mark.parametrize("stored", ["!", "*", "", "$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA"])
def test_non_argon2id_hash_never_verifies(stored: str) -> None:
    assert not is_password_hash(stored)
    assert not verify_password(stored, "anything")


def test_unpreparable_password_neither_hashes_nor_verifies() -> None:
    with pytest.raises(StringprepError):
        hash_password("tab\there", CHEAP)
    assert not verify_password(hash_password("x", CHEAP), "tab\there")


def test_needs_rehash_follows_params() -> None:
    hashed = hash_password("pw", CHEAP)
    assert not needs_rehash(hashed, CHEAP)
    assert needs_rehash(hashed, HashParams(time_cost=2, memory_cost=8, parallelism=1))


# -- SCRAM verifiers ----------------------------------------------------------------------------


def test_scram_verifier_matches_rfc7677_keys() -> None:
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    text = scram_verifier("pencil", salt, 4096)
    prefix, keys = text.rsplit("$", 1)
    assert prefix == "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=="
    stored, server = keys.split(":")
    verifier = parse_scram_verifier(text)
    assert verifier.hash is SCRAM_SHA_256
    assert verifier.salt == salt
    assert verifier.iterations == 4096
    assert base64.b64decode(stored) == verifier.stored_key
    assert base64.b64decode(server) == verifier.server_key
    assert encode_scram_verifier(verifier) == text


def test_scram_verifier_defaults_to_random_salt_and_params() -> None:
    a = parse_scram_verifier(scram_verifier("pw", params=HashParams(scram_iterations=5000)))
    b = parse_scram_verifier(scram_verifier("pw", params=HashParams(scram_iterations=5000)))
    assert a.iterations == 5000
    assert len(a.salt) == 16
    assert a.salt != b.salt


def test_scram_verifier_rejects_bad_arguments() -> None:
    with pytest.raises(InvalidVerifier):
        scram_verifier("pw", b"", 4096)
    with pytest.raises(InvalidVerifier):
        scram_verifier("pw", b"salt", 0)
    with pytest.raises(StringprepError):
        scram_verifier("bell\x07", b"salt", 4096)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SCRAM-SHA-1$4096:c2FsdA==$AAAA:AAAA",
        "SCRAM-SHA-256$0:c2FsdA==$" + "A" * 44 + ":" + "A" * 44,  # iterations not positive
        "SCRAM-SHA-256$4096:$" + "A" * 43 + "=:" + "A" * 43 + "=",  # no salt
        "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA",  # keys too short
        "SCRAM-SHA-256$4096:c2Fsd===$" + "A" * 43 + "=:" + "A" * 43 + "=",  # bad padding
        "md5abcdef",
    ],
)
def test_parse_scram_verifier_rejects(text: str) -> None:
    with pytest.raises(InvalidVerifier):
        parse_scram_verifier(text)


# -- strength -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "min_length", "forbidden", "weak"),
    [
        ("short", 8, (), True),
        ("aaaaaaaaaaaa", 8, (), True),
        ("AaAaAaAaAaAa", 8, (), True),  # one character, case-folded
        ("abcdefghijkl", 8, (), True),
        ("987654321", 8, (), True),
        ("Password1", 8, (), True),
        ("qwertyuiop", 8, (), True),
        ("alice12345", 8, ("alice@example.org", "alice"), True),
        ("tab\tin it long", 8, (), True),
        ("correct horse battery staple", 8, ("alice@example.org", "alice"), False),
        ("Tr0ub4dor&3", 8, (), False),
        ("ünïcödé pässwörd", 8, (), False),
    ],
)
def test_check_strength(
    password: str, min_length: int, forbidden: tuple[str, ...], weak: bool
) -> None:
    reason = check_strength(password, min_length, forbidden=forbidden)
    assert (reason is not None) is weak


def test_check_strength_counts_characters_not_bytes() -> None:
    assert check_strength("ääääääöö", 8) is None
    assert check_strength("äääääöö", 8) == "shorter than 8 characters"


# -- SASLprep (RFC 4013 §3 examples) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "prepared"),
    [
        ("I\u00adX", "IX"),  # SOFT HYPHEN mapped to nothing
        ("user", "user"),
        ("USER", "USER"),  # case preserved
        ("\u00aa", "a"),  # NFKC
        ("\u2168", "IX"),  # NFKC
        ("a\u2003b", "a b"),  # non-ASCII space → SPACE
    ],
)
def test_saslprep_rfc4013_examples(value: str, prepared: str) -> None:
    assert saslprep(value) == prepared


@pytest.mark.parametrize(
    "value",
    [
        "\u0007",  # RFC 4013 §3: prohibited character
        "\u0627\u0031",  # RFC 4013 §3: bidi — RandALCat must start and end
        "\u0627a\u0627",  # mixes RandALCat and LCat
        "\ue000",  # private use
    ],
)
def test_saslprep_rejects(value: str) -> None:
    with pytest.raises(StringprepError):
        saslprep(value)


def test_saslprep_unassigned_allowed_in_queries_only() -> None:
    unassigned = "\u0221"  # unassigned in Unicode 3.2 (RFC 3454 table A.1)
    assert saslprep(unassigned) == unassigned
    with pytest.raises(StringprepError):
        saslprep(unassigned, stored=True)


def test_saslprep_right_to_left_ok() -> None:
    assert saslprep("\u0627\u0031\u0628") == "\u0627\u0031\u0628"
