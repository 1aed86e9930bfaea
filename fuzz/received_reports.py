"""Fuzz the reading of the DMARC aggregate and TLS reports other providers mail to our report
addresses (pillarbox.policy.receivedreports): anyone may send mail there.

Input: byte 0 picks how the rest arrives — 0: a whole message; 1: the report document as
it is once decompressed; 2: that document gzipped in an ``application/gzip`` part; 3:
zipped in an ``application/zip`` part. Asserted, beyond "no exception":

* a document is read or refused with ``ReportError`` only (``read_message`` would turn
  anything else into "unreadable report", which is a finding here too);
* a report read is one a store keeps: its texts (every field of it and of its rows) are
  strict UTF-8 without NUL (PostgreSQL's text and jsonb refuse both lone surrogates and
  NUL), its policy domain lower-case without a trailing dot, its message counts
  non-negative with the failed ones among them;
* at most ``max_parts`` parts are read, each giving a report or a reason.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import io
import zipfile
from datetime import UTC, datetime

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox.policy.receivedreports import (
        Limits,
        ReportError,
        read_document,
        read_message,
    )
    from pillarbox.store.types import ReceivedReport, ReceivedReportRow

NOW = datetime(2026, 12, 1, tzinfo=UTC)
LIMITS = Limits(max_size=1 << 20, max_parts=4)


def _stored(report: ReceivedReport) -> None:
    items: tuple[ReceivedReport | ReceivedReportRow, ...] = (report, *report.rows)
    for item in items:
        for field in dataclasses.fields(item):
            value = getattr(item, field.name)
            if isinstance(value, str):
                value.encode("utf-8")  # strict: a lone surrogate raises
                assert "\x00" not in value, (field.name, value)
    assert report.domain and report.domain == report.domain.lower().rstrip("."), report.domain
    for row in report.rows:
        assert 0 <= row.failed <= row.messages, row


def _message(part_type: str, payload: bytes, filename: str) -> bytes:
    head = (
        "From: reports@example.net\r\nTo: dmarc@example.org\r\nSubject: Report\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        f"--b\r\nContent-Type: {part_type}\r\nContent-Transfer-Encoding: base64\r\n"
        f'Content-Disposition: attachment; filename="{filename}"\r\n\r\n'
    )
    return head.encode() + base64.encodebytes(payload) + b"--b--\r\n"


def check(data: bytes) -> None:
    if not data:
        return
    how, body = data[0] % 4, data[1:]
    if how == 1:
        try:
            report = read_document(body, NOW)
        except ReportError:
            return
        _stored(report)
        return
    if how == 0:
        raw = body
    elif how == 2:
        raw = _message("application/gzip", gzip.compress(body, mtime=0), "r.xml.gz")
    else:
        packed = io.BytesIO()
        with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("report.xml", body)
        raw = _message("application/zip", packed.getvalue(), "r.zip")
    reading = read_message(raw, NOW, LIMITS)
    assert len(reading.reports) + len(reading.refused) <= LIMITS.max_parts
    for reason in reading.refused:
        assert not reason.startswith("unreadable report"), reason
    for report in reading.reports:
        _stored(report)


def seeds() -> list[bytes]:
    dmarc = (
        b'<?xml version="1.0"?><feedback xmlns="urn:ietf:params:xml:ns:dmarc-2.0">'
        b"<report_metadata><org_name>google.com</org_name><email>noreply@google.com</email>"
        b"<report_id>1234</report_id><date_range><begin>1764460800</begin>"
        b"<end>1764547199</end></date_range></report_metadata><policy_published>"
        b"<domain>Example.org.</domain><p>reject</p></policy_published><record><row>"
        b"<source_ip>192.0.2.1</source_ip><count>3</count><policy_evaluated>"
        b"<disposition>none</disposition><dkim>pass</dkim><spf>fail</spf></policy_evaluated>"
        b"</row><identifiers><header_from>example.org</header_from></identifiers>"
        b"<auth_results><dkim><domain>example.org</domain><selector>s1</selector>"
        b"<result>pass</result></dkim><spf><domain>example.org</domain><result>fail</result>"
        b"</spf></auth_results></record></feedback>"
    )
    tls = (
        b'{"organization-name":"Company-X","date-range":{"start-datetime":'
        b'"2026-11-30T00:00:00Z","end-datetime":"2026-11-30T23:59:59Z"},'
        b'"contact-info":"sts-reporting@company-x.example","report-id":"5065427c-23d3",'
        b'"policies":[{"policy":{"policy-type":"sts","policy-domain":"example.org"},'
        b'"summary":{"total-successful-session-count":5326,"total-failure-session-count":303},'
        b'"failure-details":[{"result-type":"certificate-expired","receiving-mx-hostname":'
        b'"mx1.example.org","failed-session-count":100}]}]}'
    )
    return [
        b"\x01" + dmarc,
        b"\x01" + tls,
        b"\x02" + dmarc,
        b"\x03" + tls,
        b"\x00"
        + _message("application/tlsrpt+json", tls, "r.json")[:-7]
        + b"--b\r\nContent-Type: text/xml\r\n\r\n"
        + dmarc
        + b"\r\n--b--\r\n",
    ]


if __name__ == "__main__":
    harness.main("received_reports", check, seeds(), max_len=65536)
