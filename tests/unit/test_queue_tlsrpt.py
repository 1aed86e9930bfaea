"""RFC 8460 (SMTP TLS reporting) core: the ``_smtp._tls`` record, result classification, the
JSON report (§4.4), its file name (§5.1) and message (§5.3). Each table cites its section."""

from __future__ import annotations

import email
import gzip
import json
from datetime import UTC, datetime

import pytest

from pillarbox.queue.mtasts import Mode, Policy
from pillarbox.queue.tlsrpt import (
    ResultType,
    Submitter,
    TlsReport,
    TlsRptRecord,
    build_reports,
    certificate_failure,
    parse_record,
    report_message,
    sts_policy_strings,
    tls_optional,
)
from pillarbox.store.types import TlsSessionResult

# -- §3 the record --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("texts", "rua"),
    [
        ([b"v=TLSRPTv1; rua=mailto:reports@example.com"], ("mailto:reports@example.com",)),
        (
            [b"v=TLSRPTv1;rua=https://reporting.example.com/v1/tlsrpt"],
            ("https://reporting.example.com/v1/tlsrpt",),
        ),
        (
            [b"v=TLSRPTv1; rua=mailto:a@example.com, https://r.example.com/x;"],
            ("mailto:a@example.com", "https://r.example.com/x"),
        ),
        ([b"v=TLSRPTv1; ext=1; rua=mailto:a@example.com"], ("mailto:a@example.com",)),
        ([b"v=spf1 -all", b"v=TLSRPTv1; rua=mailto:a@example.com"], ("mailto:a@example.com",)),
        ([b"v=TLSRPTv1; ext=1"], None),  # rua is required
        ([b"v=TLSRPTv1; rua="], None),
        ([b"v=TLSRPTv1; rua=mailto:a@x.com", b"v=TLSRPTv1; rua=mailto:b@x.com"], None),  # not one
        ([b"v=TLSRPTv2; rua=mailto:a@example.com"], None),
        ([b"rua=mailto:a@example.com; v=TLSRPTv1"], None),  # the version comes first
        ([b"v=TLSRPTv1; bad field; rua=mailto:a@example.com"], None),
        ([], None),
    ],
)
def test_parse_record(texts: list[bytes], rua: tuple[str, ...] | None) -> None:
    assert parse_record(texts) == (TlsRptRecord(rua) if rua else None)


# -- §4.3 classification --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "result"),
    [
        (
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: Hostname mismatch, "
            "certificate is not valid for 'mx.example.com'.",
            ResultType.CERTIFICATE_HOST_MISMATCH,
        ),
        ("certificate verify failed: certificate has expired", ResultType.CERTIFICATE_EXPIRED),
        (
            "certificate verify failed: unable to get local issuer certificate",
            ResultType.CERTIFICATE_NOT_TRUSTED,
        ),
        ("certificate verify failed: self-signed certificate", ResultType.CERTIFICATE_NOT_TRUSTED),
        ("[SSL: WRONG_VERSION_NUMBER] wrong version number", ResultType.VALIDATION_FAILURE),
    ],
)
def test_certificate_failure(text: str, result: ResultType) -> None:
    assert certificate_failure(text) is result


def test_sts_policy_strings_list_each_mx() -> None:
    """§4.5: one string per line, each mx separate."""
    policy = Policy(Mode.TESTING, ("mx1.example.com", "*.example.net"), 604800)
    assert sts_policy_strings(policy) == (
        "version: STSv1",
        "mode: testing",
        "mx: mx1.example.com",
        "mx: *.example.net",
        "max_age: 604800",
    )


@pytest.mark.parametrize(
    ("fields", "optional"),
    [
        ([("tls-required", b"No")], True),  # RFC 8689 §5
        ([("tls-required", b" no ")], True),
        ([("tls-required", b"Yes")], False),
        ([("subject", b"No")], False),
        ([], False),
    ],
)
def test_tls_optional(fields: list[tuple[str, bytes]], optional: bool) -> None:
    assert tls_optional(fields) is optional


# -- §4.4 the report ------------------------------------------------------------------------------

BEGIN = int(datetime(2026, 11, 29, tzinfo=UTC).timestamp())
END = BEGIN + 86400
SUBMITTER = Submitter(
    organization="Example Sender", contact="tlsrpt@sender.example", domain="sender.example"
)
TLSA = ("3 1 1 " + "ab" * 32,)


def result(domain: str, policy_type: str, result_type: str = "", **extra: str) -> TlsSessionResult:
    fields = {
        "recorded": datetime.fromtimestamp(BEGIN + 60, UTC),
        "policy_domain": domain,
        "policy_type": policy_type,
        "policy_strings": TLSA if policy_type == "tlsa" else (),
        "mx_patterns": (),
        "result_type": result_type,
        "receiving_mx": f"mx.{domain}",
        "receiving_ip": "192.0.2.25",
        "sending_ip": "198.51.100.1",
        "failure_reason": "",
    }
    fields.update(extra)
    return TlsSessionResult(**fields)  # type: ignore[arg-type]


def test_reports_count_sessions_per_policy() -> None:
    results = [
        result("a.example", "tlsa"),
        result("a.example", "tlsa"),
        result("a.example", "tlsa", "tlsa-invalid", failure_reason="no match"),
        result("a.example", "tlsa", "tlsa-invalid", failure_reason="no match"),
        result("a.example", "tlsa", "starttls-not-supported", receiving_ip="192.0.2.26"),
        result("a.example", "no-policy-found"),
        result("b.example", "no-policy-found"),
    ]
    a, b = build_reports(results, SUBMITTER, begin=BEGIN, end=END)
    assert (a.policy_domain, a.sessions, a.failures) == ("a.example", 6, 3)
    document = json.loads(a.document)
    assert document["organization-name"] == "Example Sender"
    assert document["contact-info"] == "tlsrpt@sender.example"
    assert document["date-range"] == {
        "start-datetime": "2026-11-29T00:00:00Z",
        "end-datetime": "2026-11-30T00:00:00Z",
    }
    assert document["report-id"] == a.report_id == f"{BEGIN}.{END}.a.example@sender.example"
    tlsa, none = document["policies"]
    assert tlsa["policy"] == {
        "policy-type": "tlsa",
        "policy-string": list(TLSA),
        "policy-domain": "a.example",
    }
    assert tlsa["summary"] == {
        "total-successful-session-count": 2,
        "total-failure-session-count": 3,
    }
    assert tlsa["failure-details"] == [
        {
            "result-type": "starttls-not-supported",
            "sending-mta-ip": "198.51.100.1",
            "receiving-mx-hostname": "mx.a.example",
            "receiving-ip": "192.0.2.26",
            "failed-session-count": 1,
        },
        {
            "result-type": "tlsa-invalid",
            "sending-mta-ip": "198.51.100.1",
            "receiving-mx-hostname": "mx.a.example",
            "receiving-ip": "192.0.2.25",
            "failed-session-count": 2,
            "failure-reason-code": "no match",
        },
    ]
    assert none == {
        "policy": {"policy-type": "no-policy-found", "policy-domain": "a.example"},
        "summary": {"total-successful-session-count": 1, "total-failure-session-count": 0},
    }
    assert (b.sessions, b.failures) == (1, 0)


def test_sts_policies_carry_their_mx_patterns() -> None:
    strings = ("version: STSv1", "mode: enforce", "mx: *.c.example", "max_age: 86400")
    results = [
        result(
            "c.example",
            "sts",
            "certificate-host-mismatch",
            policy_strings=strings,  # type: ignore[arg-type]
            mx_patterns=("*.c.example",),  # type: ignore[arg-type]
            sending_ip="",
            receiving_ip="",
        )
    ]
    [report] = build_reports(results, SUBMITTER, begin=BEGIN, end=END)
    [entry] = json.loads(report.document)["policies"]
    assert entry["policy"] == {
        "policy-type": "sts",
        "policy-string": list(strings),
        "policy-domain": "c.example",
        "mx-host": ["*.c.example"],
    }
    # Addresses not known (no connection) are left out rather than sent empty.
    assert entry["failure-details"] == [
        {
            "result-type": "certificate-host-mismatch",
            "receiving-mx-hostname": "mx.c.example",
            "failed-session-count": 1,
        }
    ]


def test_file_name_and_subject() -> None:
    [report] = build_reports([result("a.example", "tlsa")], SUBMITTER, begin=BEGIN, end=END)
    assert report.filename == f"sender.example!a.example!{BEGIN}!{END}.json.gz"  # §5.1
    assert report.subject == (  # §5.3 tlsrpt-subject
        f"Report Domain: a.example Submitter: sender.example Report-ID: <{report.report_id}>"
    )
    assert report.gzipped() == report.gzipped()  # a resent report is the same file


def test_report_message() -> None:
    [report] = build_reports([result("a.example", "tlsa")], SUBMITTER, begin=BEGIN, end=END)
    raw = report_message(
        report, ["tlsrpt@a.example"], sender="tlsrpt@sender.example", date=datetime.now(UTC)
    )
    message = email.message_from_bytes(raw)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "tlsrpt"
    assert message["TLS-Report-Domain"] == "a.example"
    assert message["TLS-Report-Submitter"] == "sender.example"
    assert message["TLS-Required"] == "No"
    # Folded at FWS, which the §5.3 grammar allows.
    assert " ".join(str(message["Subject"]).split()) == report.subject
    text, attachment = message.get_payload()  # type: ignore[misc]
    assert text.get_content_type() == "text/plain"
    assert attachment.get_content_type() == "application/tlsrpt+gzip"
    assert attachment.get_filename() == report.filename
    payload = attachment.get_payload(decode=True)
    assert json.loads(gzip.decompress(payload)) == json.loads(report.document)


def test_a_policy_that_could_not_be_fetched_names_no_host() -> None:
    """§4.3.2.2: the failure is the policy's, no MX host was tried."""
    failed = result(
        "d.example",
        "sts",
        "sts-policy-fetch-error",
        receiving_mx="",
        receiving_ip="",
        sending_ip="",
    )
    [report] = build_reports([failed], SUBMITTER, begin=BEGIN, end=END)
    [entry] = json.loads(report.document)["policies"]
    assert entry["policy"] == {"policy-type": "sts", "policy-domain": "d.example"}
    assert entry["failure-details"] == [
        {"result-type": "sts-policy-fetch-error", "failed-session-count": 1}
    ]


def test_a_kept_report_reads_back_as_built() -> None:
    """A report kept in the store to be sent later (its rua not known yet) is rebuilt from
    its gzipped document: the same message (§5.3 subject, §5.1 file name, counts)."""
    results = [
        result("a.example", "tlsa"),
        result("a.example", "tlsa", "tlsa-invalid", failure_reason="no match"),
        result("a.example", "no-policy-found"),
    ]
    [report] = build_reports(results, SUBMITTER, begin=BEGIN, end=END)
    again = TlsReport.from_gzipped(report.gzipped(), "a.example", SUBMITTER.domain)
    assert again == report
