"""HOTP/TOTP (RFC 4226, RFC 6238): the published test vectors, the window, replay, codes."""

from __future__ import annotations

import pytest

from pillarbox.auth import totp

SEED_SHA1 = b"12345678901234567890"
SEED_SHA256 = b"12345678901234567890123456789012"
SEED_SHA512 = b"1234567890123456789012345678901234567890123456789012345678901234"

#: RFC 6238 Appendix B (8 digits).
RFC6238_VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize(("when", "sha1", "sha256", "sha512"), RFC6238_VECTORS)
def test_rfc6238_appendix_b(when: int, sha1: str, sha256: str, sha512: str) -> None:
    assert totp.totp(SEED_SHA1, when, digits=8) == sha1
    assert totp.totp(SEED_SHA256, when, digits=8, digest="sha256") == sha256
    assert totp.totp(SEED_SHA512, when, digits=8, digest="sha512") == sha512


def test_rfc4226_appendix_d() -> None:
    expected = ["755224", "287082", "359152", "969429", "338314",
                "254676", "287922", "162583", "399871", "520489"]  # fmt: skip
    assert [totp.hotp(SEED_SHA1, counter) for counter in range(10)] == expected


def test_time_steps() -> None:
    assert totp.time_step(59) == 1
    assert totp.time_step(1111111109) == 0x023523EC  # Appendix B's T column


def test_window_and_replay() -> None:
    key = totp.new_secret()
    assert len(key) == 20
    now = 1_700_000_000.0
    step = totp.time_step(now)
    assert totp.matching_step(key, totp.totp(key, now), now) == step
    assert totp.matching_step(key, totp.totp(key, now - 30), now) == step - 1
    assert totp.matching_step(key, totp.totp(key, now + 30), now) == step + 1
    assert totp.matching_step(key, totp.totp(key, now - 60), now) is None
    assert totp.matching_step(key, totp.totp(key, now + 60), now) is None
    # Accepted once: the same step, or an earlier one, is refused afterwards.
    assert totp.matching_step(key, totp.totp(key, now), now, after=step) is None
    assert totp.matching_step(key, totp.totp(key, now - 30), now, after=step) is None
    assert totp.matching_step(key, totp.totp(key, now + 30), now, after=step) == step + 1
    # Typed with a space, or garbage.
    code = totp.totp(key, now)
    assert totp.matching_step(key, f"{code[:3]} {code[3:]}", now) == step
    for bad in ("", "12345", "1234567", "abcdef", "１２３４５６"):
        assert totp.matching_step(key, bad, now) is None


def test_secret_encoding_and_uri() -> None:
    key = SEED_SHA1
    shown = totp.encode_secret(key)
    assert shown == "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ"
    assert totp.decode_secret(shown.lower()) == key
    assert totp.decode_secret("GEZDGNBV") is None  # too short
    assert totp.decode_secret("not base32!") is None
    uri = totp.key_uri(key, issuer="Pillarbox mail.example.org", account="bob@example.org")
    assert uri == (
        "otpauth://totp/Pillarbox%20mail.example.org:bob@example.org"
        "?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Pillarbox%20mail.example.org"
    )


def test_recovery_codes() -> None:
    codes = totp.new_recovery_codes()
    assert len(codes) == len(set(codes)) == 10
    for code in codes:
        assert totp.looks_like_recovery_code(code)
        assert totp.recovery_digest(code) == totp.recovery_digest(code.upper().replace("-", " "))
    assert not totp.looks_like_recovery_code("123456")
