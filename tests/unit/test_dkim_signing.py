"""DKIM keys and signatures, verified by dkimpy against the generated public records."""

from __future__ import annotations

import base64
import importlib.util
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from pillarbox.blocking import run_blocking
from pillarbox.errors import InvalidName
from pillarbox.queue.dkim import (
    DkimAlgorithm,
    DkimKey,
    DkimKeyError,
    DkimMessageError,
    generate_key,
    headers_to_sign,
    public_record,
    selector_for,
    sign,
)

NOW = datetime(2025, 6, 3, 12, 0, tzinfo=UTC)
DOMAIN = "example.com"
MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: Quarterly figures\r\n"
    b"Date: Tue, 3 Jun 2025 12:00:00 +0000\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"X-Mailer: test\r\n"
    b"\r\n"
    b"Numbers attached.\r\n"
)
needs_nacl = pytest.mark.skipif(
    importlib.util.find_spec("nacl") is None,
    reason="dkimpy signs and verifies Ed25519 through PyNaCl, which is not installed",
)


@pytest.fixture(scope="module")
def rsa_key() -> DkimKey:
    return generate_key(DkimAlgorithm.RSA_SHA256, now=NOW)


@pytest.fixture(scope="module")
def ed_key() -> DkimKey:
    return generate_key(DkimAlgorithm.ED25519_SHA256, now=NOW)


def dns_for(*keys: DkimKey) -> Callable[..., bytes | None]:
    """A dkimpy ``dnsfunc`` publishing the keys' records at <selector>._domainkey.example.com."""
    records = {
        f"{k.selector}._domainkey.{DOMAIN}.".encode(): public_record(k).encode() for k in keys
    }

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return dnsfunc


def verify(message: bytes, *keys: DkimKey, index: int = 0) -> bool:
    try:
        return bool(dkim.DKIM(message).verify(idx=index, dnsfunc=dns_for(*keys)))
    except dkim.DKIMException:  # a body hash mismatch raises instead of returning False
        return False


def test_selectors_name_month_and_algorithm() -> None:
    assert selector_for(DkimAlgorithm.RSA_SHA256, NOW) == "pb202506r"
    assert selector_for(DkimAlgorithm.ED25519_SHA256, NOW) == "pb202506e"
    assert selector_for(DkimAlgorithm.RSA_SHA256, datetime(2026, 1, 1)) == "pb202601r"


def test_generated_keys(rsa_key: DkimKey, ed_key: DkimKey) -> None:
    assert rsa_key.selector == "pb202506r"
    assert rsa_key.created == NOW
    assert rsa_key.private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    private = serialization.load_pem_private_key(rsa_key.private_pem, None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size == 2048
    assert isinstance(
        serialization.load_pem_private_key(ed_key.private_pem, None), ed25519.Ed25519PrivateKey
    )
    assert ed_key.selector == "pb202506e"
    rotated = generate_key(DkimAlgorithm.ED25519_SHA256, now=NOW, selector="PB202506E2")
    assert rotated.selector == "pb202506e2"
    with pytest.raises(InvalidName):
        generate_key(DkimAlgorithm.ED25519_SHA256, now=NOW, selector="bad selector")


def tags(record: str) -> dict[str, str]:
    return dict(part.strip().split("=", 1) for part in record.split(";"))


def test_public_records(rsa_key: DkimKey, ed_key: DkimKey) -> None:
    rsa_tags = tags(public_record(rsa_key))
    assert (rsa_tags["v"], rsa_tags["k"]) == ("DKIM1", "rsa")
    public = serialization.load_der_public_key(base64.b64decode(rsa_tags["p"]))
    private = serialization.load_pem_private_key(rsa_key.private_pem, None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert public.public_numbers() == private.public_key().public_numbers()  # type: ignore[union-attr]
    ed_tags = tags(public_record(ed_key))
    assert ed_tags["k"] == "ed25519"
    raw = base64.b64decode(ed_tags["p"])
    assert len(raw) == 32  # RFC 8463 §4.2: the bare key, not SubjectPublicKeyInfo


def test_rsa_signature_verifies(rsa_key: DkimKey) -> None:
    header = sign(MESSAGE, DOMAIN, [rsa_key])
    assert header.startswith(b"DKIM-Signature: ")
    assert header.endswith(b"\r\n")
    fields = dkim.util.parse_tag_value(header.split(b":", 1)[1])
    assert fields[b"a"] == b"rsa-sha256"
    assert fields[b"c"] == b"relaxed/relaxed"
    assert (fields[b"d"], fields[b"s"]) == (b"example.com", b"pb202506r")
    signed = [h.strip() for h in fields[b"h"].split(b":")]
    assert signed.count(b"from") == 2  # once per instance, once more: oversigned
    assert signed.count(b"reply-to") == 1  # absent, still signed: none may be added
    assert b"x-mailer" not in signed
    assert verify(header + MESSAGE, rsa_key)


def test_relaxed_canonicalisation_survives_refolding(rsa_key: DkimKey) -> None:
    header = sign(MESSAGE, DOMAIN, [rsa_key])
    mangled = MESSAGE.replace(b"Subject: Quarterly figures", b"subject:   Quarterly\r\n\tfigures ")
    mangled = mangled.replace(b"attached.\r\n", b"attached.   \r\n\r\n\r\n")
    assert verify(header + mangled, rsa_key)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda m: m.replace(b"Numbers", b"Letters"),
        lambda m: b"From: mallory@example.net\r\n" + m,  # a second From: oversigned
        lambda m: b"Reply-To: mallory@example.net\r\n" + m,  # absent but oversigned
        lambda m: m.replace(b"Quarterly", b"Yearly"),
    ],
)
def test_tampering_breaks_the_signature(rsa_key: DkimKey, tamper: Callable[[bytes], bytes]) -> None:
    header = sign(MESSAGE, DOMAIN, [rsa_key])
    assert not verify(header + tamper(MESSAGE), rsa_key)


def test_unsigned_headers_may_be_added(rsa_key: DkimKey) -> None:
    header = sign(MESSAGE, DOMAIN, [rsa_key])
    assert verify(b"Received: from relay\r\n" + header + MESSAGE, rsa_key)


@needs_nacl
def test_ed25519_signature_verifies(ed_key: DkimKey) -> None:
    header = sign(MESSAGE, DOMAIN, [ed_key])
    assert b"a=ed25519-sha256" in header
    assert verify(header + MESSAGE, ed_key)
    assert not verify(header + MESSAGE.replace(b"Numbers", b"Letters"), ed_key)


@needs_nacl
def test_both_algorithms_together(rsa_key: DkimKey, ed_key: DkimKey) -> None:
    headers = sign(MESSAGE, DOMAIN, [ed_key, rsa_key])
    assert headers.count(b"DKIM-Signature:") == 2
    signed = headers + MESSAGE
    assert verify(signed, rsa_key, ed_key, index=0)
    assert verify(signed, rsa_key, ed_key, index=1)


async def test_signing_off_the_event_loop(rsa_key: DkimKey) -> None:
    header = await run_blocking(sign, MESSAGE, DOMAIN, [rsa_key])
    assert verify(header + MESSAGE, rsa_key)


def test_unusable_keys(rsa_key: DkimKey, ed_key: DkimKey) -> None:
    with pytest.raises(DkimKeyError, match="pb202506r"):
        sign(MESSAGE, DOMAIN, [replace(rsa_key, private_pem=b"garbage")])
    with pytest.raises(DkimKeyError, match="not an rsa key"):
        sign(MESSAGE, DOMAIN, [replace(ed_key, algorithm=DkimAlgorithm.RSA_SHA256)])
    with pytest.raises(DkimKeyError):
        public_record(replace(rsa_key, algorithm=DkimAlgorithm.ED25519_SHA256))


@pytest.mark.parametrize(
    "raw", [b"Subject without a colon\r\n\r\nbody\r\n", b" folded first\r\nFrom: a@b\r\n\r\n"]
)
def test_malformed_message(rsa_key: DkimKey, raw: bytes) -> None:
    with pytest.raises(DkimMessageError):
        sign(raw, DOMAIN, [rsa_key])


def test_headers_to_sign() -> None:
    present = [b"Received", b"From", b"To", b"To", b"List-Id", b"X-Spam"]
    names = headers_to_sign(present)
    assert names.count(b"from") == 2
    assert names.count(b"to") == 3
    assert names.count(b"list-id") == 1  # signed, not oversigned: lists may add their own
    assert names.count(b"subject") == 1  # absent, oversigned
    assert b"received" not in names
    assert b"x-spam" not in names
    assert headers_to_sign(present, signed=("from",), oversigned=()) == [b"from"]
