"""The RSA steps of DKIM verification and signing through OpenSSL give dkimpy's own answers,
case by case: every signature below is judged by :func:`dkimrsa.verify` and by dkimpy's original
function, and every signature made by :func:`dkimrsa.sign` is compared with dkimpy's."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import dkim as dkimpy
import dkim.crypto
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from pillarbox.policy import arc, dkimrsa
from pillarbox.policy import dkim as _dkim  # noqa: F401  (importing it installs the seam)
from pillarbox.queue import dkim as queue_dkim

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
    assert dkimpy.RSASSA_PKCS1_v1_5_sign is dkimrsa.sign
    dkimrsa.install()  # again: nothing changes
    assert dkimpy.RSASSA_PKCS1_v1_5_verify is dkimrsa.verify
    assert dkimpy.RSASSA_PKCS1_v1_5_sign is dkimrsa.sign


@pytest.mark.parametrize("name", ["RSASSA_PKCS1_v1_5_verify", "RSASSA_PKCS1_v1_5_sign"])
@pytest.mark.parametrize("moved", ["replaced", "gone"])
def test_install_refuses_a_dkimpy_that_moved_the_step(
    name: str, moved: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is replaced unless both names are still dkimpy's functions (or ours)."""
    if moved == "gone":
        monkeypatch.delattr(dkimpy, name)
    else:
        monkeypatch.setattr(dkimpy, name, lambda *_: b"")
    for other in ("RSASSA_PKCS1_v1_5_verify", "RSASSA_PKCS1_v1_5_sign"):
        if other != name:
            monkeypatch.setattr(dkimpy, other, getattr(dkim.crypto, other))
    with pytest.raises(RuntimeError, match=name):
        dkimrsa.install()
    assert all(
        getattr(dkimpy, other) is getattr(dkim.crypto, other)
        for other in ("RSASSA_PKCS1_v1_5_verify", "RSASSA_PKCS1_v1_5_sign")
        if other != name
    )


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


# -- signing ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=[1024, 2048, 3072, 4096])
def signing_key(request: pytest.FixtureRequest) -> dict[str, int]:
    """dkimpy's parse of a new key's PEM (PKCS#1 for 1024 bits, PKCS#8 otherwise), as
    dkimpy's ``sign`` and ``arc_sign`` hand it to the RSA step."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=request.param)
    layout = (
        serialization.PrivateFormat.TraditionalOpenSSL
        if request.param == 1024
        else serialization.PrivateFormat.PKCS8
    )
    pem = key.private_bytes(serialization.Encoding.PEM, layout, serialization.NoEncryption())
    parsed: dict[str, int] = dkim.crypto.parse_pem_private_key(pem)
    return parsed


def refuse_dkimpy_signing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> bytes:
        raise AssertionError("dkimpy's pure-Python signing was called")

    monkeypatch.setattr(dkimrsa, "DKIMPY_SIGN", refuse)


@pytest.mark.parametrize("make_digest", [hashlib.sha256, hashlib.sha1], ids=["sha256", "sha1"])
@pytest.mark.parametrize("data", [b"", MESSAGE, b"\xff" * 5000], ids=["empty", "short", "long"])
def test_openssl_signs_the_octets_dkimpy_signs(
    signing_key: dict[str, int],
    make_digest: Callable[[bytes], Any],
    data: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = bytes(dkim.crypto.RSASSA_PKCS1_v1_5_sign(make_digest(data), signing_key))
    refuse_dkimpy_signing(monkeypatch)
    signature = dkimrsa.sign(make_digest(data), signing_key)
    assert signature == expected
    public = {k: signing_key[k] for k in ("modulus", "publicExponent")}
    assert dkimrsa.verify(make_digest(data), signature, public)


def _numbers(private: rsa.RSAPrivateKey) -> dict[str, int]:
    n = private.private_numbers()
    return {
        "modulus": n.public_numbers.n,
        "publicExponent": n.public_numbers.e,
        "privateExponent": n.d,
        "prime1": n.p,
        "prime2": n.q,
        "exponent1": n.dmp1,
        "exponent2": n.dmq1,
        "coefficient": n.iqmp,
    }


def test_a_key_openssl_refuses_is_signed_by_dkimpy(private: rsa.RSAPrivateKey) -> None:
    """dkimpy signs with the CRT values and never reads d; OpenSSL's check refuses a wrong d."""
    key = _numbers(private) | {"privateExponent": private.private_numbers().d + 2}
    assert dkimrsa._openssl_private_key(tuple(key[n] for n in dkimrsa._PRIVATE_NUMBERS)) is None
    signature = dkimrsa.sign(hashlib.sha256(MESSAGE), key)
    assert signature == bytes(dkimrsa.DKIMPY_SIGN(hashlib.sha256(MESSAGE), key))
    assert dkimrsa.verify(hashlib.sha256(MESSAGE), signature, key)


def test_a_modulus_too_short_for_the_digest_is_dkimpys_error() -> None:
    """A 216-bit key (two Mersenne primes) OpenSSL loads but will not sign a SHA-256 DigestInfo
    with: dkimpy's DigestTooLargeError (its ``sign`` reports it as a ParameterError)."""
    p, q, e = 2**127 - 1, 2**89 - 1, 65537
    d = pow(e, -1, (p - 1) * (q - 1))
    key = {
        "modulus": p * q,
        "publicExponent": e,
        "privateExponent": d,
        "prime1": p,
        "prime2": q,
        "exponent1": d % (p - 1),
        "exponent2": d % (q - 1),
        "coefficient": pow(q, -1, p),
    }
    assert dkimrsa._openssl_private_key(tuple(key[n] for n in dkimrsa._PRIVATE_NUMBERS))
    with pytest.raises(dkim.crypto.DigestTooLargeError):
        dkimrsa.sign(hashlib.sha256(MESSAGE), key)


def test_a_hash_dkimpy_cannot_encode_is_dkimpys_error(private: rsa.RSAPrivateKey) -> None:
    with pytest.raises(KeyError, match="md5"):
        dkimrsa.sign(hashlib.md5(MESSAGE), _numbers(private))


def test_loaded_private_keys_are_kept_by_their_numbers_and_bounded(
    private: rsa.RSAPrivateKey,
) -> None:
    numbers = tuple(_numbers(private)[n] for n in dkimrsa._PRIVATE_NUMBERS)
    first = dkimrsa._openssl_private_key(numbers)
    assert first is not None and first is dkimrsa._openssl_private_key(numbers)
    wrong_d = (*numbers[:2], numbers[2] + 2, *numbers[3:])
    assert dkimrsa._openssl_private_key(wrong_d) is None
    # Refused keys are kept too. (A wrong prime is refused at once, p·q ≠ n; a wrong private
    # exponent only by OpenSSL's check, ~45 ms a key: 16 s for these.)
    for p in range(dkimrsa.PRIVATE_KEY_CACHE_SIZE + 10):
        dkimrsa._openssl_private_key((*numbers[:3], p, *numbers[4:]))
    assert dkimrsa._openssl_private_key.cache_info().currsize == dkimrsa.PRIVATE_KEY_CACHE_SIZE


def test_dkim_and_arc_signing_give_dkimpys_fields(
    private: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole of our signing and sealing, once with the RSA step through OpenSSL and once
    with dkimpy's own: the same fields, octet for octet (the clock fixed for t=)."""
    now = datetime(2025, 6, 3, 12, 0, tzinfo=UTC)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key = queue_dkim.DkimKey("pb202506r", queue_dkim.DkimAlgorithm.RSA_SHA256, pem, now)
    message = (
        b"Authentication-Results: mx.test; spf=pass smtp.mailfrom=a@example.com; arc=none\r\n"
        b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: figures\r\n"
        b"\r\nNumbers attached.\r\n"
    )
    monkeypatch.setattr(time, "time", lambda: 1748952000.0)

    def both() -> tuple[bytes, bytes]:
        signed = queue_dkim.sign(message, "example.com", [key])
        sealed = arc.seal(
            message,
            domain="example.com",
            selector="arc",
            private_pem=pem,
            authserv_id="mx.test",
            timestamp=1748952000,
        )
        return signed, sealed

    ours = both()
    monkeypatch.setattr(dkimpy, "RSASSA_PKCS1_v1_5_sign", dkim.crypto.RSASSA_PKCS1_v1_5_sign)
    assert both() == ours
