"""dns check: expected records against what a real server publishes (and a failing resolver)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pillarbox.dns.authoritative import StaticZones, serve_zones
from pillarbox.dns.check import (
    Finding,
    FindingStatus,
    check_ds,
    check_records,
    check_tlsa,
    format_findings,
)
from pillarbox.dns.records import DnsRecord, DomainRecords, required_records, tlsa_record
from pillarbox.dns.resolver import DnsResolver, DnsTemporaryError, MxResult, MxStatus
from pillarbox.dns.signing import ZoneKey, new_key_pem
from pillarbox.testing.testca import make_ca

DKIM = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="


def expected() -> DomainRecords:
    return required_records(
        "example.test", mail_host="mail.example.test", addresses=["127.0.0.1"],
        dkim={"pb202506e": DKIM},
    )  # fmt: skip


async def check_published(published: list[DnsRecord]) -> dict[tuple[str, str], Finding]:
    zones = StaticZones.from_records(published, origins=["example.test"])
    async with serve_zones(zones) as server:
        resolver = DnsResolver(nameserver=f"127.0.0.1:{server.port}", timeout=2)
        findings = await check_records(resolver, expected().records)
    assert len(findings) == len(expected().records)
    return {(f.name, f.expected[0] if f.type == "TXT" else f.type): f for f in findings}


async def test_all_ok_when_published_as_generated() -> None:
    findings = await check_published(list(expected().records))
    assert {f.status for f in findings.values()} == {FindingStatus.OK}


def replaced(
    name: str, rtype: str, *new: DnsRecord, prefix: str = "", base: list[DnsRecord] | None = None
) -> list[DnsRecord]:
    """``base`` (default: the generated records) with those at (name, type[, value prefix])
    replaced by ``new``."""
    kept = [
        r
        for r in (base if base is not None else expected().records)
        if not (r.name == name and r.type == rtype and r.value.startswith(prefix))
    ]
    return kept + list(new)


async def test_missing_and_wrong_records() -> None:
    published = replaced("example.test", "MX", DnsRecord("example.test", "MX", "10 other.test."))
    published = [r for r in published if not r.name.startswith("_dmarc.")]
    published += [DnsRecord("example.test", "TXT", "google-site-verification=abc")]
    findings = await check_published(published)
    mx = findings[("example.test", "MX")]
    assert mx.status is FindingStatus.WRONG
    assert mx.found == ("10 other.test.",)
    assert "missing: 10 mail.example.test" in mx.detail
    assert "unexpected: 10 other.test" in mx.detail
    dmarc = next(f for k, f in findings.items() if k[0] == "_dmarc.example.test")
    assert dmarc.status is FindingStatus.MISSING
    spf = findings[("example.test", "v=spf1 ip4:127.0.0.1 -all")]
    assert spf.status is FindingStatus.OK  # the verification record beside it is not SPF


async def test_spf_and_tag_records_compared_by_meaning() -> None:
    published = replaced(
        "example.test", "TXT", DnsRecord("example.test", "TXT", "V=SPF1  IP4:127.0.0.1 -ALL")
    )
    published = replaced(
        "_dmarc.example.test", "TXT",
        DnsRecord("_dmarc.example.test", "TXT",
                  "v=DMARC1;rua=mailto:dmarc-reports@example.test;  p=quarantine"),
        prefix="v=DMARC1", base=published)  # fmt: skip
    findings = await check_published(published)
    assert {f.status for f in findings.values()} == {FindingStatus.OK}

    wrong = await check_published(
        replaced("example.test", "TXT", DnsRecord("example.test", "TXT", "v=spf1 mx ~all"))
    )
    spf = wrong[("example.test", "v=spf1 ip4:127.0.0.1 -all")]
    assert spf.status is FindingStatus.WRONG
    assert spf.found == ("v=spf1 mx ~all",)


async def test_two_spf_records_are_wrong() -> None:
    extra = DnsRecord("example.test", "TXT", "v=spf1 -all")
    findings = await check_published([*expected().records, extra])
    spf = findings[("example.test", "v=spf1 ip4:127.0.0.1 -all")]
    assert spf.status is FindingStatus.WRONG
    assert "several" in spf.detail


async def test_dkim_key_mismatch() -> None:
    name = "pb202506e._domainkey.example.test"
    findings = await check_published(
        replaced(name, "TXT", DnsRecord(name, "TXT", "v=DKIM1; k=ed25519; p=AAAA"))
    )
    assert findings[(name, DKIM)].status is FindingStatus.WRONG


class FailingResolver:
    """Any Resolver implementation works; this one's upstream is down."""

    async def mx(self, domain: str) -> MxResult:
        return MxResult(domain, MxStatus.TEMPORARY, reason="down")

    async def addresses(self, host: str) -> list[str]:
        raise DnsTemporaryError(host, "down")

    async def txt(self, name: str) -> list[bytes]:
        raise DnsTemporaryError(name, "down")

    async def ptr(self, ip: str) -> list[str]:
        raise DnsTemporaryError(ip, "down")

    async def lookup(self, name: str, rtype: str) -> list[str]:
        raise DnsTemporaryError(name, "down")


async def test_temporary_failure_is_reported_as_error() -> None:
    findings = await check_records(FailingResolver(), expected().records)
    assert {f.status for f in findings} == {FindingStatus.ERROR}
    assert findings[0].detail == "down"
    report = format_findings(findings)
    assert report.startswith("[ERROR  ] example.test MX (mail exchanger)")
    assert "expected: 10 mail.example.test." in report


def certificate(tmp_path: Path, name: str) -> bytes:
    cert_path, _ = make_ca(tmp_path / name).issue("mail.example.test")
    pem = cert_path.read_bytes()
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


async def check_tlsa_published(
    published: list[DnsRecord], served: bytes, unstable: str = "", *, secure: bool | None = None
) -> Finding | None:
    """``check_tlsa`` against a zone publishing ``published``; ``secure`` None: the resolver
    does not trust the AD bit (``dns.trust_ad = "never"``), else it does and the zone's answers
    carry AD (a validating resolver's secure answers) or not (an unsigned zone's)."""
    authentic = ["example.test"] if secure else []
    zones = StaticZones.from_records(published, origins=["example.test"], authentic=authentic)
    async with serve_zones(zones) as server:
        resolver = DnsResolver(
            nameserver=f"127.0.0.1:{server.port}",
            timeout=2,
            trust_ad="never" if secure is None else "loopback",
        )
        return await check_tlsa(resolver, "mail.example.test", served, unstable)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[bytes, bytes]:
    """The certificate served and one of another key (a stale record's)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    return certificate(tmp_path, "a"), certificate(tmp_path, "b")


async def test_tlsa_matching_missing_and_stale(keys: tuple[bytes, bytes]) -> None:
    served, other = keys
    current, stale = (
        tlsa_record("mail.example.test", served),
        tlsa_record("mail.example.test", other),
    )
    assert current.name == "_25._tcp.mail.example.test"

    ok = await check_tlsa_published([current], served)
    assert ok is not None and ok.status is FindingStatus.OK
    assert ok.expected == (current.value,)
    # RFC 7671 §8.1: current + next during a rollover; one matching is enough.
    both = await check_tlsa_published([stale, current], served)
    assert both is not None and both.status is FindingStatus.OK and len(both.found) == 2

    missing = await check_tlsa_published([], served)
    assert missing is not None and missing.status is FindingStatus.MISSING

    wrong = await check_tlsa_published([stale], served)
    assert wrong is not None and wrong.status is FindingStatus.WRONG
    assert wrong.detail.startswith("MISMATCH")
    assert "defers mail" in format_findings([wrong])


async def test_tlsa_not_authenticated_by_dnssec(keys: tuple[bytes, bytes]) -> None:
    """RFC 7672 §2.2: senders apply DANE only to a secure TLSA RRset. With the resolver's AD
    trusted, a matching record without AD is a record without effect: WRONG, said so; with
    AD, OK and nothing to add; with AD not trusted, OK with a word that it was not checked."""
    served, other = keys
    current = tlsa_record("mail.example.test", served)
    secure = await check_tlsa_published([current], served, secure=True)
    assert secure is not None and (secure.status, secure.detail) == (FindingStatus.OK, "")
    insecure = await check_tlsa_published([current], served, secure=False)
    assert insecure is not None and insecure.status is FindingStatus.WRONG
    assert insecure.detail.startswith("INSECURE: matches, but the answer is not DNSSEC-auth")
    assert "RFC 7672 §2.2" in format_findings([insecure])
    unknown = await check_tlsa_published([current], served)
    assert unknown is not None and unknown.status is FindingStatus.OK
    assert "not checked whether DNSSEC authenticates it" in unknown.detail
    # A mismatch is said as a mismatch, authenticated or not.
    stale = await check_tlsa_published(
        [tlsa_record("mail.example.test", other)], served, secure=False
    )
    assert stale is not None and stale.detail.startswith("MISMATCH")


async def test_tlsa_of_a_key_about_to_change(keys: tuple[bytes, bytes]) -> None:
    served, other = keys
    why = "each ACME renewal makes a new key"
    # None published and none wanted: nothing to say.
    assert await check_tlsa_published([], served, why) is None
    soon = await check_tlsa_published([tlsa_record("mail.example.test", served)], served, why)
    assert soon is not None and soon.status is FindingStatus.WRONG
    assert soon.detail == f"matches now, but will not for long: {why}"
    stale = await check_tlsa_published([tlsa_record("mail.example.test", other)], served, why)
    assert stale is not None and stale.detail.startswith("MISMATCH")


async def check_ds_published(
    published: list[DnsRecord], expected: DnsRecord | None, *more: DnsRecord
) -> Finding | None:
    """``check_ds`` against a parent zone (``test``) publishing ``published``."""
    zones = StaticZones.from_records(published, origins=["test"])
    async with serve_zones(zones) as server:
        resolver = DnsResolver(nameserver=f"127.0.0.1:{server.port}", timeout=2)
        keys = [] if expected is None else [expected, *more]
        return await check_ds(resolver, "example.test", keys)


async def test_ds_at_the_parent_against_the_zone_key() -> None:
    ours = ZoneKey("example.test", new_key_pem()).ds_record(3600)
    other = ZoneKey("example.test", new_key_pem()).ds_record(3600)
    assert await check_ds_published([], None) is None  # unsigned, no DS: nothing to say
    ok = await check_ds_published([other, ours], ours)  # a rollover's second DS is fine
    assert ok is not None and ok.status is FindingStatus.OK and len(ok.found) == 2
    # The digest split in two, in capitals, as some registrars show it, is the same DS.
    tag, algorithm, digest_type, digest = ours.value.split()
    halves = f"{digest[:32].upper()} {digest[32:]}"
    split = DnsRecord(ours.name, "DS", f"{tag} {algorithm} {digest_type} {halves}")
    same = await check_ds_published([split], ours)
    assert same is not None and same.status is FindingStatus.OK
    missing = await check_ds_published([], ours)
    assert missing is not None and missing.status is FindingStatus.MISSING
    wrong = await check_ds_published([other], ours)
    assert wrong is not None and wrong.status is FindingStatus.WRONG
    assert "fail every name" in wrong.detail
    # During a rollover the next (or previous) key vouches for the zone as well: the parent
    # showing only its DS is fine, one naming neither key is not.
    nxt = ZoneKey("example.test", new_key_pem()).ds_record(3600)
    rolled = await check_ds_published([nxt], ours, nxt)
    assert rolled is not None and rolled.status is FindingStatus.OK
    assert rolled.expected == (ours.value, nxt.value)
    neither = await check_ds_published([other], ours, nxt)
    assert neither is not None and neither.status is FindingStatus.WRONG
    # A DS for a zone we do not sign breaks it just as surely.
    unsigned = await check_ds_published([ours], None)
    assert unsigned is not None and unsigned.status is FindingStatus.WRONG
    assert "not signed" in unsigned.detail
