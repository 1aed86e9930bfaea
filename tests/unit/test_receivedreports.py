"""Reading the reports other providers send (pillarbox.policy.receivedreports): the formats
and encodings reporters use, and the refusals — bombs, DTDs, malformed documents."""

from __future__ import annotations

import dataclasses
import gzip
import json
import time
from datetime import UTC, datetime

import pytest

from pillarbox import config as cfg
from pillarbox.dns.hosted import record_policy
from pillarbox.dns.records import required_records
from pillarbox.errors import ConfigError
from pillarbox.policy import dmarcreport, receivedreports
from pillarbox.policy.receivedreports import Limits, ReportError, read_message
from pillarbox.store.types import DmarcObservation
from pillarbox.testing import reports

NOW = datetime(2026, 4, 2, tzinfo=UTC)
LIMITS = Limits(max_size=64 * 1024, max_parts=4)


def read_one(raw: bytes, limits: Limits = LIMITS) -> receivedreports.ReceivedReport:
    reading = read_message(raw, NOW, limits)
    assert reading.refused == ()
    [report] = reading.reports
    return report


@pytest.mark.parametrize(
    ("content_type", "filename", "encode", "single_part"),
    [
        ("application/gzip", "google.com!example.org!1!2.xml.gz", reports.gzipped, False),
        ("application/zip", "example.org!1!2.zip", lambda d: reports.zipped("r.xml", d), True),
        ("text/xml", "report.xml", lambda d: d, False),
        ("application/octet-stream", "report.xml.gz", reports.gzipped, False),
    ],
)
def test_dmarc_report_in_each_encoding(
    content_type: str, filename: str, encode: object, single_part: bool
) -> None:
    assert callable(encode)
    raw = reports.report_message(
        "dmarc-reports@example.org",
        encode(reports.dmarc_xml()),
        content_type,
        filename,
        single_part=single_part,
    )
    report = read_one(raw)
    assert (report.kind, report.org_name, report.report_id) == (
        "dmarc",
        "google.com",
        "10387712312983794876",
    )
    assert report.domain == "example.org"
    assert report.policy == "p=quarantine"
    assert report.begin == datetime.fromtimestamp(1_780_000_000, UTC)
    assert report.contact == "noreply-dmarc-support@google.com"
    assert [(r.source, r.messages, r.failed, r.disposition) for r in report.rows] == [
        ("192.0.2.25", 12, 0, "none"),
        ("198.51.100.7", 3, 3, "quarantine"),
    ]
    assert report.rows[0].detail == "dkim example.org/s1 pass; spf example.org pass"


@pytest.mark.parametrize(
    ("content_type", "encode"),
    [("application/tlsrpt+gzip", reports.gzipped), ("application/tlsrpt+json", lambda d: d)],
)
def test_tls_report_rfc8460_example(content_type: str, encode: object) -> None:
    assert callable(encode)
    raw = reports.report_message(
        "tls-reports@example.org", encode(reports.tls_json()), content_type, "report.json.gz"
    )
    report = read_one(raw)
    assert (report.kind, report.org_name, report.domain) == ("tlsrpt", "Company-X", "example.org")
    assert report.begin == datetime(2026, 4, 1, tzinfo=UTC)
    [row] = report.rows
    assert (row.source, row.messages, row.failed) == ("sts example.org", 5629, 303)
    assert "certificate-expired ×100 mx1.mail.company-y.example" in row.detail
    assert "starttls-not-supported ×200 mx2.mail.company-y.example 203.0.113.56" in row.detail


def test_our_own_aggregate_report_reads_back() -> None:
    """What pillarbox.policy.dmarcreport sends (RFC 9990 namespace) is what we read."""
    observation = DmarcObservation(
        received=NOW,
        policy_domain="example.org",
        header_from="example.org",
        envelope_from="example.org",
        source_ip="203.0.113.9",
        disposition="reject",
        dkim_aligned=False,
        spf_aligned=False,
        spf_domain="example.org",
        spf_result="fail",
        dkim=(("example.org", "s1", "fail"),),
        policy_record="v=DMARC1; p=reject; rua=mailto:dmarc-reports@example.org",
    )
    reporter = dmarcreport.Reporter(
        receiver="mx.other.test", org_name="Other Org", email="reports@other.test"
    )
    [built] = dmarcreport.build_reports([observation] * 2, reporter, begin=100, end=200)
    raw = dmarcreport.report_message(
        built, ["dmarc-reports@example.org"], sender="reports@other.test", date=NOW
    )
    report = read_one(raw)
    assert (report.org_name, report.report_id, report.domain) == (
        "Other Org",
        built.report_id,
        "example.org",
    )
    assert [(r.source, r.messages, r.failed, r.disposition) for r in report.rows] == [
        ("203.0.113.9", 2, 2, "reject")
    ]


def test_gzip_bomb_is_refused() -> None:
    bomb = gzip.compress(b"<" + b" " * (4 * 1024 * 1024))
    assert len(bomb) < 8 * 1024
    raw = reports.report_message("dmarc-reports@example.org", bomb, "application/gzip", "b.gz")
    reading = read_message(raw, NOW, LIMITS)
    assert reading.reports == ()
    assert reading.refused == (f"report decompresses past {LIMITS.max_size} bytes",)


def test_zip_bomb_is_refused() -> None:
    bomb = reports.zipped("r.xml", b"<" + b" " * (4 * 1024 * 1024))
    raw = reports.report_message("dmarc-reports@example.org", bomb, "application/zip", "b.zip")
    assert read_message(raw, NOW, LIMITS).refused == (
        f"report decompresses past {LIMITS.max_size} bytes",
    )


def test_entity_expansion_is_refused() -> None:
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE feedback [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><feedback><report_metadata>'
        b"<org_name>&b;</org_name></report_metadata></feedback>"
    )
    with pytest.raises(ReportError, match="document type declaration"):
        receivedreports.parse_xml(laughs)
    external = b'<!DOCTYPE f SYSTEM "file:///etc/passwd"><feedback/>'
    with pytest.raises(ReportError, match="document type declaration"):
        receivedreports.parse_xml(external)
    with pytest.raises(ReportError, match="malformed XML"):
        receivedreports.parse_xml(b"<feedback>&undeclared;</feedback>")


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"<feedback><report_metadata>", "malformed XML"),
        (b"<html><body>hi</body></html>", "not a DMARC aggregate report"),
        (b"<feedback><version>1.0</version></feedback>", "without org_name"),
        (b'{"organization-name": "x"', "malformed JSON"),
        (b'{"organization-name": "x"}', "without date-range"),
        (b"PK\x03\x04 not really", "neither an XML nor a JSON report"),
    ],
)
def test_malformed_reports_are_refused_with_a_reason(document: bytes, reason: str) -> None:
    raw = reports.report_message(
        "dmarc-reports@example.org", gzip.compress(document), "application/gzip", "r.xml.gz"
    )
    reading = read_message(raw, NOW, LIMITS)
    assert reading.reports == ()
    [refused] = reading.refused
    assert reason in refused


def test_odd_values_a_store_cannot_keep_are_refused() -> None:
    """Found writing fuzz/received_reports.py: a TLS report's JSON string with a lone
    surrogate (``\\ud800``) was read, and the store's insert failed on it (UTF-8 cannot
    encode it); a DMARC row's negative count was kept, lowering every total."""
    surrogate = reports.tls_json().replace(b'"Company-X"', b'"\\ud800X"')
    assert b"\\ud800" in surrogate
    with pytest.raises(ReportError, match="lone surrogate in TLS report"):
        receivedreports.read_document(surrogate, NOW)
    negative = reports.dmarc_xml(rows=(("192.0.2.25", -12, "none", "pass", "pass"),))
    with pytest.raises(ReportError, match="count is negative: -12"):
        receivedreports.read_document(negative, NOW)


def test_text_in_many_pieces_is_read_in_linear_time() -> None:
    """Found writing fuzz/received_reports.py: expat gives text in pieces (one per character
    reference), each added to a growing string: 4 MB of ``&amp;`` (a 4 KB gzip) took 18 s,
    the 16 MiB a report may inflate to, minutes. Now well under a second."""
    document = b"<feedback><report_metadata><org_name>" + b"&amp;" * 800_000
    document += b"</org_name></report_metadata></feedback>"
    start = time.perf_counter()
    root = receivedreports.parse_xml(document)
    assert time.perf_counter() - start < 3.0
    assert root.value("report_metadata", "org_name") == "&" * 800_000


def test_bad_compressed_data_and_limits() -> None:
    raw = reports.report_message(
        "dmarc-reports@example.org", b"not gzip at all", "application/gzip", "r.xml.gz"
    )
    assert read_message(raw, NOW, LIMITS).refused[0].startswith("bad gzip data")
    raw = reports.report_message(
        "dmarc-reports@example.org", b"not a zip", "application/zip", "r.zip"
    )
    assert read_message(raw, NOW, LIMITS).refused[0].startswith("bad zip data")
    # A plain text message to the report address holds no report: nothing read or refused.
    plain = b"From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n"
    assert read_message(plain, NOW, LIMITS) == receivedreports.Reading((), ())
    # At most max_parts report parts of one message are read.
    message = reports.report_message(
        "dmarc-reports@example.org", reports.dmarc_xml(), "text/xml", "a.xml"
    )
    assert len(read_message(message, NOW, Limits(max_size=10, max_parts=1)).refused) == 1


def test_by_source_sums_reports() -> None:
    one = read_one(
        reports.report_message("d@example.org", reports.dmarc_xml(), "text/xml", "a.xml")
    )
    two = read_one(
        reports.report_message(
            "d@example.org",
            reports.dmarc_xml(report_id="2", rows=(("198.51.100.7", 1, "none", "pass", "fail"),)),
            "text/xml",
            "b.xml",
        )
    )
    totals = receivedreports.by_source([one, two])
    assert [(t.source, t.messages, t.passed, t.failed, t.reports) for t in totals] == [
        ("198.51.100.7", 4, 1, 3, 2),
        ("192.0.2.25", 12, 12, 0, 1),
    ]


def test_odd_json_shapes_are_read_or_refused_per_part() -> None:
    document = json.loads(reports.tls_json())
    document["policies"][0]["failure-details"] = 7
    document["policies"][0]["summary"] = {"total-successful-session-count": "many"}
    raw = reports.report_message(
        "tls-reports@example.org", json.dumps(document).encode(), "application/tlsrpt+json", "r"
    )
    [row] = read_one(raw).rows
    assert (row.messages, row.failed, row.detail) == (0, 0, "")
    deep = b"[" * 100_000 + b"]" * 100_000
    raw = reports.report_message("t@example.org", b"{" + deep[1:], "application/tlsrpt+json", "r")
    assert len(read_message(raw, NOW, LIMITS).refused) == 1


def test_the_generated_records_name_the_configured_addresses() -> None:
    config = cfg.Config(
        received_reports=cfg.ReceivedReportSection(dmarc_local_part="dmarc-rua", tls_local_part="")
    )
    records = required_records(
        "example.org", mail_host="mx.example.org", policy=record_policy(config)
    )
    values = {r.name: r.value for r in records.records}
    assert values["_dmarc.example.org"].endswith("; rua=mailto:dmarc-rua@example.org")
    assert "_smtp._tls.example.org" not in values
    intake = receivedreports.Intake.of(None, config.received_reports)  # type: ignore[arg-type]
    assert intake is not None and intake.wants("DMARC-RUA") and not intake.wants("tls-reports")
    off = dataclasses.replace(config.received_reports, enabled=False)
    assert receivedreports.Intake.of(None, off) is None  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"received_reports\.dmarc_local_part"):
        cfg.from_mapping({"received_reports": {"dmarc_local_part": "a@b"}})
    with pytest.raises(ConfigError, match=r"received_reports\.max_size"):
        cfg.from_mapping({"received_reports": {"max_size": 0}})


def test_corrupt_and_encrypted_zips_are_refused() -> None:
    """Not a zip, a zip cut short, and a member flagged encrypted (zipfile raises
    RuntimeError for it): each a refused report, never an exception out of delivery."""
    whole = reports.zipped("r.xml", b"<feedback/>")
    with pytest.raises(ReportError, match="bad zip data"):
        receivedreports.inflate("zip", b"PK\x03\x04 not really", 1024)
    with pytest.raises(ReportError, match="bad zip data"):
        receivedreports.inflate("zip", whole[: len(whole) // 2], 1024)
    # General purpose bit 0 (encrypted) set in the local header and the central directory.
    central = whole.rindex(b"PK\x01\x02")
    flagged = bytearray(whole)
    flagged[6] |= 1
    flagged[central + 8] |= 1
    with pytest.raises(ReportError, match="bad zip data"):
        receivedreports.inflate("zip", bytes(flagged), 1024)
