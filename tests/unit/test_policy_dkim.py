"""DKIM verification and ARC on signatures and keys these tests make themselves."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import authres
import dkim as dkimpy
import pytest

from pillarbox.policy import arc, authresults, dkim
from pillarbox.policy.arc import ArcResult
from pillarbox.policy.dkim import DkimResult
from pillarbox.queue.dkim import DkimAlgorithm, DkimKey, generate_key, public_record, sign
from pillarbox.testing.dnszone import ZoneRecord, serve_records

NOW = datetime(2025, 6, 1, tzinfo=UTC)
MESSAGE = (
    b"From: Alice <alice@signer.test>\r\nTo: bob@example.org\r\nSubject: hello\r\n"
    b"Date: Sun, 1 Jun 2025 10:00:00 +0000\r\nMessage-ID: <1@signer.test>\r\n\r\n"
    b"Hello Bob,\r\nthis is signed.\r\n"
)


@pytest.fixture(scope="module")
def rsa_key() -> DkimKey:
    return generate_key(DkimAlgorithm.RSA_SHA256, now=NOW, selector="r1")


@pytest.fixture(scope="module")
def ed_key() -> DkimKey:
    return generate_key(DkimAlgorithm.ED25519_SHA256, now=NOW, selector="e1")


def records(*keys: DkimKey) -> list[ZoneRecord]:
    return [
        ZoneRecord(f"{k.selector}._domainkey.signer.test", "TXT", public_record(k)) for k in keys
    ]


async def test_rsa_and_ed25519_signatures_pass(rsa_key: DkimKey, ed_key: DkimKey) -> None:
    signed = sign(MESSAGE, "signer.test", [rsa_key, ed_key]) + MESSAGE
    async with serve_records(records(rsa_key, ed_key)) as resolver:
        results = await dkim.verify(resolver, signed)
    assert [(r.result, r.algorithm, r.domain) for r in results] == [
        (DkimResult.PASS, "rsa-sha256", "signer.test"),
        (DkimResult.PASS, "ed25519-sha256", "signer.test"),
    ]


async def test_changed_body_fails(rsa_key: DkimKey) -> None:
    signed = sign(MESSAGE, "signer.test", [rsa_key]) + MESSAGE.replace(b"Hello", b"Howdy")
    async with serve_records(records(rsa_key)) as resolver:
        [result] = await dkim.verify(resolver, signed)
    assert result.result is DkimResult.FAIL
    assert "body hash" in result.reason


async def test_missing_key_is_permerror_and_failing_dns_temperror(rsa_key: DkimKey) -> None:
    signed = sign(MESSAGE, "signer.test", [rsa_key]) + MESSAGE
    async with serve_records([]) as resolver:
        [missing] = await dkim.verify(resolver, signed)
    async with serve_records([], failing=["r1._domainkey.signer.test"]) as resolver:
        [temporary] = await dkim.verify(resolver, signed)
    assert missing.result is DkimResult.PERMERROR
    assert temporary.result is DkimResult.TEMPERROR


async def test_rsa_sha1_is_not_acceptable(rsa_key: DkimKey) -> None:
    header = dkimpy.sign(
        MESSAGE,
        b"r1",
        b"signer.test",
        rsa_key.private_pem,
        signature_algorithm=b"rsa-sha1",
        include_headers=[b"from", b"subject"],
    )
    async with serve_records(records(rsa_key)) as resolver:
        [result] = await dkim.verify(resolver, header + MESSAGE)
    assert result.result is DkimResult.POLICY  # RFC 8301 §3.1


async def test_key_shorter_than_the_minimum_fails() -> None:
    short = generate_key(DkimAlgorithm.RSA_SHA256, now=NOW, selector="short", rsa_bits=1024)
    signed = sign(MESSAGE, "signer.test", [short]) + MESSAGE
    async with serve_records(records(short)) as resolver:
        [accepted] = await dkim.verify(resolver, signed)
        strict = dkim.DkimLimits(min_rsa_bits=2048)
        [refused] = await dkim.verify(resolver, signed, limits=strict)
    assert accepted.result is DkimResult.PASS
    assert refused.result is DkimResult.FAIL  # RFC 8301 §3.2: a key too short for us


@pytest.mark.parametrize(
    "field",
    [
        b"DKIM-Signature: v=1; a=rsa-sha256; d=signer.test; s=r1; b=!!!; bh=x; h=from\r\n",
        b"DKIM-Signature: v=1; a=rsa-sha256; d=signer.test; s=r1\r\n",
        b"DKIM-Signature: this is not a tag list\r\n",
        b"DKIM-Signature: v=1; a=rsa-md5; d=signer.test; s=r1; b=AAAA; bh=AAAA; h=from\r\n",
    ],
)
async def test_malformed_signatures_are_permerror(field: bytes, rsa_key: DkimKey) -> None:
    async with serve_records(records(rsa_key)) as resolver:
        [result] = await dkim.verify(resolver, field + MESSAGE)
    assert result.result is DkimResult.PERMERROR


async def test_huge_header_and_many_signatures_stay_bounded(rsa_key: DkimKey) -> None:
    signature = sign(MESSAGE, "signer.test", [rsa_key])
    filler = b"".join(b"X-Filler-%d: %s\r\n" % (n, b"y" * 200) for n in range(5000))
    message = signature * 8 + filler + MESSAGE
    async with serve_records(records(rsa_key)) as resolver:
        results = await dkim.verify(resolver, message, limits=dkim.DkimLimits(max_signatures=3))
    assert [r.result for r in results].count(DkimResult.NEUTRAL) == 5
    assert len(results) == 8


async def test_no_signature_gives_no_results() -> None:
    async with serve_records([]) as resolver:
        assert await dkim.verify(resolver, MESSAGE) == []


async def test_arc_seal_then_verify(rsa_key: DkimKey) -> None:
    stamped = b"Authentication-Results: forwarder.test; arc=none; spf=pass\r\n" + MESSAGE
    seal = arc.seal(
        stamped,
        domain="signer.test",
        selector="r1",
        private_pem=rsa_key.private_pem,
        authserv_id="forwarder.test",
    )
    async with serve_records(records(rsa_key)) as resolver:
        good = await arc.verify(resolver, seal + stamped)
        bad = await arc.verify(resolver, seal + stamped.replace(b"this is signed", b"tampered"))
        none = await arc.verify(resolver, MESSAGE)
    assert (good.result, good.instances, good.sealer) == (ArcResult.PASS, 1, "signer.test")
    assert bad.result is ArcResult.FAIL
    assert none.result is ArcResult.NONE


def test_sealing_needs_our_authentication_results(rsa_key: DkimKey) -> None:
    with pytest.raises(arc.ArcSealError):
        arc.seal(
            MESSAGE,
            domain="signer.test",
            selector="r1",
            private_pem=rsa_key.private_pem,
            authserv_id="forwarder.test",
        )


@pytest.mark.parametrize("b_prefix", ["TUVocn/i", "ab+cd/ef"])
def test_our_results_with_a_slash_in_header_b_can_be_sealed(
    rsa_key: DkimKey, b_prefix: str
) -> None:
    """A base64 ``header.b`` prefix holds a ``/`` (a tspecial) one time in eight: written as a
    quoted-string (RFC 8601 §2.2, RFC 2045 §5.1) it keeps its value for readers, and a message
    carrying it can be forwarded with an ARC set (dkimpy's sealing re-reads it with authres)."""
    signature = dkim.SignatureResult(
        DkimResult.PASS, "signer.test", "e1", "ed25519-sha256", b_prefix
    )
    summary = authresults.AuthSummary(dkim=(signature,), dkim_checked=True)
    field = authresults.header("forwarder.test", summary)
    [parsed] = authres.AuthenticationResultsHeader.parse(field.decode()).results
    assert {p.name: p.value for p in parsed.properties}["b"] == b_prefix
    sealed = arc.seal(
        field + MESSAGE,
        domain="signer.test",
        selector="r1",
        private_pem=rsa_key.private_pem,
        authserv_id="forwarder.test",
    )
    assert f'header.b="{b_prefix}"'.encode() in sealed


async def test_a_changed_key_record_is_parsed_anew(rsa_key: DkimKey) -> None:
    """The parsed-key cache is keyed by the record's text: after a key rotation under the
    same selector, the old parse is not reused (the old signature fails, the new passes)."""
    rotated = generate_key(DkimAlgorithm.RSA_SHA256, now=NOW, selector="r1", rsa_bits=1024)
    old = sign(MESSAGE, "signer.test", [rsa_key]) + MESSAGE
    new = sign(MESSAGE, "signer.test", [rotated]) + MESSAGE
    async with serve_records(records(rsa_key)) as resolver:
        before = [r.result for r in await dkim.verify(resolver, old)]
    async with serve_records(records(rotated)) as resolver:
        after = [r.result for r in await dkim.verify(resolver, old)]
        after += [r.result for r in await dkim.verify(resolver, new)]
    assert before == [DkimResult.PASS]
    assert after == [DkimResult.FAIL, DkimResult.PASS]


def test_parsed_keys_are_reused_and_bounded(rsa_key: DkimKey, ed_key: DkimKey) -> None:
    record = public_record(rsa_key).encode()
    first = dkim.public_key("r1._domainkey.signer.test", record)
    # Another name publishing the same text shares the parse; equal text, equal key.
    assert dkim.public_key("other._domainkey.else.test", record) is first
    assert first == dkimpy.evaluate_pk("r1._domainkey.signer.test", record)
    assert dkim.public_key("e1", public_record(ed_key).encode())[2] == b"ed25519"
    # Distinct records beyond the bound: the cache stays at its size.
    for n in range(dkim.KEY_CACHE_SIZE + 10):
        dkim.public_key("x", b"v=DKIM1; k=ed25519; p=" + base64.b64encode(n.to_bytes(32)))
    assert dkim._parsed_key.cache_info().currsize == dkim.KEY_CACHE_SIZE


@pytest.mark.parametrize("record", [b"", b"v=DKIM1; k=rsa; p=!!!", b"v=DKIM2; p=AAAA"])
def test_unusable_key_records_raise_as_dkimpy_does(record: bytes) -> None:
    with pytest.raises(dkimpy.KeyFormatError) as ours:
        dkim.public_key("r1._domainkey.signer.test", record)
    with pytest.raises(dkimpy.KeyFormatError) as theirs:
        dkimpy.evaluate_pk("r1._domainkey.signer.test", record)
    assert str(ours.value) == str(theirs.value)


async def test_signatures_of_one_message_are_judged_independently(
    rsa_key: DkimKey, ed_key: DkimKey
) -> None:
    """dkimpy's parse of the message is shared by its signatures: each one's key and result
    are its own, whatever the signature before it found."""
    unknown = generate_key(DkimAlgorithm.RSA_SHA256, now=NOW, selector="gone", rsa_bits=1024)
    good_rsa, good_ed = (
        sign(MESSAGE, "signer.test", [rsa_key]),
        sign(MESSAGE, "signer.test", [ed_key]),
    )
    no_key = sign(MESSAGE, "signer.test", [unknown])
    forged = sign(MESSAGE.replace(b"hello", b"howdy"), "signer.test", [rsa_key])
    message = good_ed + no_key + forged + good_rsa + MESSAGE
    async with serve_records(records(rsa_key, ed_key)) as resolver:
        results = await dkim.verify(resolver, message)
    assert [(r.result, r.selector) for r in results] == [
        (DkimResult.PASS, "e1"),
        (DkimResult.PERMERROR, "gone"),
        (DkimResult.FAIL, "r1"),
        (DkimResult.PASS, "r1"),
    ]
