"""DMARC aggregate reports (RFC 9990): the XML against the structure of the Appendix A schema,
the file name, Subject and message of §3.5.2, and the external-destination check of §4 on
records served by a loopback DNS server."""

from __future__ import annotations

import email
import gzip
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from email.message import Message

import pytest

from pillarbox.periodic import period_end
from pillarbox.policy import dmarc
from pillarbox.policy.authresults import AuthSummary
from pillarbox.policy.dkim import DkimResult, SignatureResult
from pillarbox.policy.dmarcreport import (
    NAMESPACE,
    Reporter,
    build_reports,
    observation,
    report_message,
)
from pillarbox.policy.reporting import Destination, verified_destinations
from pillarbox.policy.spf import SpfOutcome, SpfResult
from pillarbox.store.types import DmarcObservation
from pillarbox.testing.dnszone import ZoneRecord, serve_records

NS = {"d": NAMESPACE}
REPORTER = Reporter(receiver="mx.example.org", org_name="Example Org", email="dmarc@example.org")
START = datetime(2026, 3, 1, tzinfo=UTC)
RECORD = dmarc.parse_record("v=DMARC1; p=reject; pct=50; rua=mailto:agg@sender.example")
assert RECORD is not None


def seen(n: int, *, passed: bool, ip: str = "192.0.2.1", dkim: str = "pass") -> DmarcObservation:
    return DmarcObservation(
        received=START + timedelta(minutes=n),
        policy_domain="sender.example",
        header_from="sender.example",
        envelope_from="bounce.sender.example",
        source_ip=ip,
        disposition="pass" if passed else "quarantine",
        dkim_aligned=passed,
        spf_aligned=False,
        spf_domain="bounce.sender.example",
        spf_result="softfail",
        dkim=(("sender.example", "s1", dkim),),
        policy_record=RECORD.text(),
        # Below the published p=reject: pct=50 did not select it.
        override="" if passed else "other",
        override_comment="" if passed else "not sampled (pct=50)",
    )


def test_report_follows_the_schema_and_counts_rows() -> None:
    observations = [
        seen(1, passed=True),
        seen(2, passed=True),
        seen(3, passed=False, dkim="fail"),
        seen(4, passed=True, ip="2001:db8::1"),
    ]
    [report] = build_reports(observations, REPORTER, begin=1000, end=2000)
    root = ET.fromstring(report.xml)
    assert root.tag == f"{{{NAMESPACE}}}feedback"
    # §3.1.1.2: first level elements in schema order.
    assert [child.tag.split("}")[1] for child in root] == [
        "version",
        "report_metadata",
        "policy_published",
        "record",
        "record",
        "record",
    ]
    assert root.findtext("d:version", namespaces=NS) == "1.0"
    meta = root.find("d:report_metadata", NS)
    assert meta is not None
    assert meta.findtext("d:org_name", namespaces=NS) == "Example Org"
    assert meta.findtext("d:email", namespaces=NS) == "dmarc@example.org"
    assert meta.findtext("d:report_id", namespaces=NS) == report.report_id
    assert meta.findtext("d:date_range/d:begin", namespaces=NS) == "1000"
    assert meta.findtext("d:date_range/d:end", namespaces=NS) == "2000"
    published = root.find("d:policy_published", NS)
    assert published is not None
    assert {c.tag.split("}")[1]: c.text for c in published} == {
        "domain": "sender.example",
        "p": "reject",
        "sp": "reject",
        "np": "reject",
        "adkim": "r",
        "aspf": "r",
        "discovery_method": "psl",
        "fo": "0",
        "testing": "n",
    }
    rows = {}
    for record in root.findall("d:record", NS):
        # RecordType and PolicyEvaluatedType are sequences: order matters.
        assert [c.tag.split("}")[1] for c in record] == ["row", "identifiers", "auth_results"]
        evaluated = record.find("d:row/d:policy_evaluated", NS)
        assert evaluated is not None
        tags = [c.tag.split("}")[1] for c in evaluated]
        assert tags[:3] == ["disposition", "dkim", "spf"]
        key = (
            record.findtext("d:row/d:source_ip", namespaces=NS),
            evaluated.findtext("d:disposition", namespaces=NS),
        )
        rows[key] = int(record.findtext("d:row/d:count", namespaces=NS) or 0)
        assert record.findtext("d:identifiers/d:header_from", namespaces=NS) == "sender.example"
        spf = record.find("d:auth_results/d:spf", NS)
        assert spf is not None and spf.findtext("d:scope", namespaces=NS) == "mfrom"
        assert record.findtext("d:auth_results/d:dkim/d:selector", namespaces=NS) == "s1"
        if key[1] == "quarantine":
            # Below the published p=reject (pct sampling): a reason is required (§3.1.1.9).
            assert tags == ["disposition", "dkim", "spf", "reason"]
            assert evaluated.findtext("d:reason/d:type", namespaces=NS) == "other"
            comment = evaluated.findtext("d:reason/d:comment", namespaces=NS)
            assert comment == "not sampled (pct=50)"
    assert rows == {
        ("192.0.2.1", "pass"): 2,
        ("192.0.2.1", "quarantine"): 1,
        ("2001:db8::1", "pass"): 1,
    }
    assert report.messages == 4


def test_one_report_per_policy_domain_with_its_last_record() -> None:
    other = dmarc.parse_record("v=DMARC1; p=none; rua=mailto:a@other.example")
    assert other is not None
    changed = dmarc.parse_record("v=DMARC1; p=quarantine; rua=mailto:agg@sender.example")
    assert changed is not None
    first, second = seen(1, passed=True), seen(2, passed=True)
    second = DmarcObservation(**{**_fields(second), "policy_record": changed.text()})
    third = DmarcObservation(
        **{**_fields(seen(3, passed=True)), "policy_domain": "other.example"}
        | {"policy_record": other.text()}
    )
    reports = build_reports([first, second, third], REPORTER, begin=0, end=60)
    assert [r.policy_domain for r in reports] == ["other.example", "sender.example"]
    root = ET.fromstring(reports[1].xml)
    assert root.findtext("d:policy_published/d:p", namespaces=NS) == "quarantine"
    assert reports[0].rua == ("mailto:a@other.example",)


def _fields(o: DmarcObservation) -> dict[str, object]:
    return {name: getattr(o, name) for name in DmarcObservation.__dataclass_fields__}


def test_file_name_subject_and_message() -> None:
    [report] = build_reports([seen(1, passed=True)], REPORTER, begin=86400, end=172800)
    assert report.filename == "mx.example.org!sender.example!86400!172800.xml.gz"
    raw = report_message(
        report, sender="reports@example.org", recipients=["agg@sender.example"], date=START
    )
    parsed: Message = email.message_from_bytes(raw)
    # The ABNF allows folding (1*FWS between the words).
    assert " ".join(str(parsed["Subject"]).split()) == (
        f"Report Domain: sender.example Submitter: mx.example.org Report-ID: <{report.report_id}>"
    )
    assert parsed["Message-ID"] == f"<{report.report_id}>"
    [attachment] = [p for p in parsed.walk() if p.get_content_type() == "application/gzip"]
    assert attachment.get_filename() == report.filename
    payload = attachment.get_payload(decode=True)
    assert isinstance(payload, bytes)
    assert gzip.decompress(payload) == report.xml
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")


def test_observation_of_an_outcome() -> None:
    outcome = dmarc.DmarcOutcome(
        dmarc.DmarcResult.FAIL,
        dmarc.Disposition.QUARANTINE,
        "mail.sender.example",
        RECORD,
        "no aligned SPF or DKIM pass",
        (),
        "sender.example",
    )
    summary = AuthSummary(
        spf=SpfOutcome(SpfResult.FAIL, "bounce.test"),
        dkim=(SignatureResult(DkimResult.FAIL, "sender.example", "s1", "rsa-sha256", "abc"),),
    )
    kept = observation(
        outcome, summary, source_ip="192.0.2.9", mail_from="x@bounce.test", received=START
    )
    assert kept is not None
    assert (kept.policy_domain, kept.header_from, kept.envelope_from) == (
        "sender.example",
        "mail.sender.example",
        "bounce.test",
    )
    assert (kept.disposition, kept.spf_result, kept.dkim) == (
        "quarantine",
        "fail",
        (("sender.example", "s1", "fail"),),
    )
    no_rua = dmarc.parse_record("v=DMARC1; p=reject")
    quiet = dmarc.DmarcOutcome(dmarc.DmarcResult.FAIL, dmarc.Disposition.REJECT, "a.test", no_rua)
    assert observation(quiet, summary, source_ip="", mail_from="", received=START) is None


def test_testing_mode_and_tree_walk_are_reported() -> None:
    """RFC 9990 §3.1.1.5 (testing, np, discovery_method) and §3.1.6 (policy_test_mode)."""
    record = dmarc.parse_record(
        "v=DMARC1; p=reject; sp=quarantine; np=reject; t=y; rua=mailto:agg@sender.example"
    )
    assert record is not None
    outcome = dmarc.DmarcOutcome(
        dmarc.DmarcResult.FAIL,
        dmarc.Disposition.QUARANTINE,
        "ghost.sender.example",
        record,
        "no aligned SPF or DKIM pass (t=y)",
        (),
        "sender.example",
        dmarc.Override.TEST_MODE,
        dmarc.Discovery.TREEWALK,
        "t=y",
    )
    kept = observation(outcome, AuthSummary(), source_ip="192.0.2.9", mail_from="", received=START)
    assert kept is not None
    assert (kept.override, kept.discovery) == ("policy_test_mode", "treewalk")
    [report] = build_reports([kept], REPORTER, begin=0, end=60)
    root = ET.fromstring(report.xml)
    published = root.find("d:policy_published", NS)
    assert published is not None
    assert published.findtext("d:discovery_method", namespaces=NS) == "treewalk"
    assert published.findtext("d:testing", namespaces=NS) == "y"
    assert published.findtext("d:np", namespaces=NS) == "reject"
    reason = root.find("d:record/d:row/d:policy_evaluated/d:reason", NS)
    assert reason is not None
    assert reason.findtext("d:type", namespaces=NS) == "policy_test_mode"
    assert reason.findtext("d:comment", namespaces=NS) == "t=y"


def test_period_boundaries() -> None:
    assert period_end(86400 * 3 + 5, 86400) == 86400 * 3
    assert period_end(7200, 3600) == 7200


@pytest.mark.parametrize(
    ("rua", "expected"),
    [
        # Inside the policy domain's organizational domain: no check needed.
        ("mailto:agg@reports.sender.example", [Destination("agg@reports.sender.example")]),
        # External, with consent.
        (
            "mailto:dmarc@consenting.example!10m",
            [Destination("dmarc@consenting.example", 10 << 20)],
        ),
        # External, no consent record: ignored (§4).
        ("mailto:dmarc@victim.example", []),
        # Consent overriding the address on the same host.
        ("mailto:old@override.example", [Destination("new@override.example")]),
        # Consent redirecting to another host: neither is used (§4).
        ("mailto:x@elsewhere.example", []),
        # Other schemes are not supported.
        ("https://sender.example/dmarc", []),
    ],
)
async def test_external_destinations_need_consent(rua: str, expected: list[Destination]) -> None:
    records = [
        ZoneRecord("sender.example._report._dmarc.consenting.example", "TXT", "v=DMARC1"),
        ZoneRecord(
            "sender.example._report._dmarc.override.example",
            "TXT",
            "v=DMARC1; rua=mailto:new@override.example",
        ),
        ZoneRecord(
            "sender.example._report._dmarc.elsewhere.example",
            "TXT",
            "v=DMARC1; rua=mailto:x@third.example",
        ),
        ZoneRecord("sender.example._report._dmarc.victim.example", "TXT", "not dmarc"),
    ]
    async with serve_records(records) as resolver:
        assert await verified_destinations(resolver, "sender.example", [rua]) == expected
