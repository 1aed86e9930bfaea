"""The RSA step of DKIM verification through OpenSSL gives dkimpy's own answer, case by case:
every signature below is judged by :func:`dkimrsa.verify` and by dkimpy's original function."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import dkim as dkimpy
import dkim.crypto
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from pillarbox.policy import dkim as _dkim  # noqa: F401  (importing it installs the seam)
from pillarbox.policy import dkimrsa

MESSAGE = b"the signed header fields, canonicalised"


@pytest.fixture(scope="module")
def private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def dkimpy_key(key: rsa.RSAPrivateKey) -> dict[str, int]:
    numbers = key.public_key().public_numbers()
    return {"modulus": numbers.n, "publicExponent": numbers.e}


def raw_signature(key: rsa.RSAPrivateKey, block: bytes) -> bytes:
    """``block`` (k octets) through the private RSA operation, no padding added: lets a test
    sign a malformed encoding."""
    numbers = key.private_numbers()
    n = numbers.public_numbers.n
    return pow(int.from_bytes(block), numbers.d, n).to_bytes((n.bit_length() + 7) // 8)


def encoded(digest: Any, length: int = 256) -> bytes:
    return bytes(dkim.crypto.EMSA_PKCS1_v1_5_encode(digest, length))


def good(key: rsa.RSAPrivateKey) -> bytes:
    return key.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256())


CASES: dict[str, tuple[Callable[[rsa.RSAPrivateKey], bytes], Callable[[], Any]]] = {
    "good sha256": (good, lambda: hashlib.sha256(MESSAGE)),
    "good sha1 (rsa-sha1)": (
        lambda k: k.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA1()),
        lambda: hashlib.sha1(MESSAGE),
    ),
    "other data": (good, lambda: hashlib.sha256(b"something else")),
    "sha1 signature, sha256 expected": (
        lambda k: k.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA1()),
        lambda: hashlib.sha256(MESSAGE),
    ),
    # dkimpy reads the signature as an integer: a leading zero octet (k + 1 octets) still
    # verifies there; OpenSSL refuses the length, and dkimpy's answer is kept.
    "one octet too long": (lambda k: b"\x00" + good(k), lambda: hashlib.sha256(MESSAGE)),
    # So does s + n (dkimpy reduces mod n; OpenSSL refuses s >= n).
    "s + n": (
        lambda k: (int.from_bytes(good(k)) + k.public_key().public_numbers().n).to_bytes(257),
        lambda: hashlib.sha256(MESSAGE),
    ),
    "truncated": (lambda k: good(k)[:-1], lambda: hashlib.sha256(MESSAGE)),
    "a padding octet not FF": (
        lambda k: raw_signature(
            k, encoded(hashlib.sha256(MESSAGE)).replace(b"\xff\xff\xff", b"\xff\xfe\xff", 1)
        ),
        lambda: hashlib.sha256(MESSAGE),
    ),
    # DigestInfo without the NULL parameters: well padded, so OpenSSL recovers it, but it is
    # not dkimpy's encoding.
    "DigestInfo without NULL": (
        lambda k: raw_signature(
            k,
            b"\x00\x01"
            + b"\xff" * (256 - 3 - 49)
            + b"\x00\x30\x2f\x30\x0b\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x04\x20"
            + hashlib.sha256(MESSAGE).digest(),
        ),
        lambda: hashlib.sha256(MESSAGE),
    ),
    "empty": (lambda k: b"", lambda: hashlib.sha256(MESSAGE)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_answer_as_dkimpy(case: str, private: rsa.RSAPrivateKey) -> None:
    make_signature, make_digest = CASES[case]
    signature, key = make_signature(private), dkimpy_key(private)
    expected = dkimrsa.DKIMPY_VERIFY(make_digest(), signature, key)
    assert dkimrsa.verify(make_digest(), signature, key) is expected
    assert expected is case.startswith("good") or case in ("one octet too long", "s + n")


def test_a_key_openssl_refuses_gets_dkimpy_answer(private: rsa.RSAPrivateKey) -> None:
    """e = 1 (OpenSSL refuses e < 3): the encoded block is its own signature for dkimpy."""
    n = private.public_key().public_numbers().n
    key = {"modulus": n, "publicExponent": 1}
    signature = encoded(hashlib.sha256(MESSAGE))
    assert dkimrsa.DKIMPY_VERIFY(hashlib.sha256(MESSAGE), signature, key)
    assert dkimrsa.verify(hashlib.sha256(MESSAGE), signature, key)


def test_a_modulus_too_short_for_the_digest_raises_as_dkimpy_does() -> None:
    """400 bits leave no room for a SHA-256 DigestInfo and eight padding octets."""
    key = {"modulus": 2**400 + 1, "publicExponent": 65537}
    signature = (2**399 + 12345).to_bytes(50)
    with pytest.raises(dkim.crypto.DigestTooLargeError):
        dkimrsa.DKIMPY_VERIFY(hashlib.sha256(MESSAGE), signature, key)
    with pytest.raises(dkim.crypto.DigestTooLargeError):
        dkimrsa.verify(hashlib.sha256(MESSAGE), signature, key)


def test_a_good_signature_needs_no_python_rsa(
    private: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object) -> bool:
        raise AssertionError("dkimpy's pure-Python check was called")

    monkeypatch.setattr(dkimrsa, "DKIMPY_VERIFY", refuse)
    assert dkimrsa.verify(hashlib.sha256(MESSAGE), good(private), dkimpy_key(private))


def test_installed_where_dkimpy_looks_it_up() -> None:
    assert dkimpy.RSASSA_PKCS1_v1_5_verify is dkimrsa.verify
    dkimrsa.install()  # again: nothing changes
    assert dkimpy.RSASSA_PKCS1_v1_5_verify is dkimrsa.verify


def test_loaded_keys_are_kept_by_modulus_and_exponent_and_bounded() -> None:
    modulus = 2**2047 + 1
    first = dkimrsa._openssl_key(modulus, 65537)
    assert first is dkimrsa._openssl_key(modulus, 65537)
    other = dkimrsa._openssl_key(modulus, 3)
    assert other is not None and other.public_numbers().e == 3
    assert dkimrsa._openssl_key(modulus + 2, 65537) is not first
    for n in range(dkimrsa.KEY_CACHE_SIZE + 10):
        dkimrsa._openssl_key(modulus + 2 * n, 65537)
    assert dkimrsa._openssl_key.cache_info().currsize == dkimrsa.KEY_CACHE_SIZE
