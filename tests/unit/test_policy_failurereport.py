"""DMARC failure reports (RFC 9991): which reports ``fo`` asks for, and the AFRF message
(RFC 5965 §2–3, RFC 6591, RFC 9991 §4) parsed back with the standard library."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from datetime import UTC, datetime
from email.message import Message

import pytest

from pillarbox.auth.ratelimit import RateLimiter
from pillarbox.config import DmarcFailureReportSection
from pillarbox.policy import dmarc
from pillarbox.policy.authresults import AuthSummary
from pillarbox.policy.dkim import DkimResult, SignatureResult
from pillarbox.policy.failurereport import (
    AuthFailure,
    Content,
    Envelope,
    FailedMessage,
    ReportSettings,
    identity_alignment,
    is_feedback_report,
    redact_header,
    redact_local_part,
    report_kinds,
    report_message,
    trimmed,
)
from pillarbox.policy.failurereporting import domain_limits
from pillarbox.policy.spf import SpfOutcome, SpfResult

ARRIVAL = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
ORIGINAL = (
    b"Received: from client.test by mx.test; Fri, 1 May 2026 12:00:00 +0000\r\n"
    b"From: Alice <alice@sender.example>\r\n"
    b"To: bob@example.org, carol@example.org\r\n"
    b"Subject: quarterly figures\r\n"
    b"Message-ID: <m1@sender.example>\r\n"
    b"\r\n"
    b"The confidential body.\r\n"
)
SIGNED = SignatureResult(DkimResult.FAIL, "sender.example", "s1", "rsa-sha256", "abcdefgh")


def failed_message(
    record_text: str,
    *,
    result: dmarc.DmarcResult = dmarc.DmarcResult.FAIL,
    aligned: tuple[str, ...] = (),
    spf: SpfResult = SpfResult.FAIL,
    dkim: tuple[SignatureResult, ...] = (SIGNED,),
    raw: bytes = ORIGINAL,
) -> FailedMessage:
    record = dmarc.parse_record(record_text)
    assert record is not None
    disposition = record.p if result is dmarc.DmarcResult.FAIL else dmarc.Disposition.NONE
    outcome = dmarc.DmarcOutcome(
        result, disposition, "sender.example", record, "", aligned, "sender.example"
    )
    auth = AuthSummary(
        spf=SpfOutcome(spf, "sender.example"), dkim=dkim, dkim_checked=True, dmarc=outcome
    )
    return FailedMessage(
        outcome=outcome,
        auth=auth,
        source_ip="192.0.2.7",
        mail_from="alice@sender.example",
        arrival=ARRIVAL,
        raw=raw,
    )


RUF = "ruf=mailto:ruf@sender.example"


@pytest.mark.parametrize(
    ("record", "result", "aligned", "kinds"),
    [
        (f"v=DMARC1; p=reject; {RUF}", dmarc.DmarcResult.FAIL, (), ["dmarc"]),  # fo=0 default
        (f"v=DMARC1; p=reject; fo=0; {RUF}", dmarc.DmarcResult.PASS, ("spf",), []),
        # fo=1: any mechanism without an aligned pass, even when DMARC passed.
        (f"v=DMARC1; p=reject; fo=1; {RUF}", dmarc.DmarcResult.PASS, ("spf",), ["dmarc"]),
        (f"v=DMARC1; p=reject; fo=1; {RUF}", dmarc.DmarcResult.PASS, ("dkim", "spf"), []),
        (f"v=DMARC1; p=reject; fo=d; {RUF}", dmarc.DmarcResult.PASS, ("spf",), ["signature"]),
        (f"v=DMARC1; p=reject; fo=s; {RUF}", dmarc.DmarcResult.FAIL, (), ["spf"]),
        (
            f"v=DMARC1; p=reject; fo=0:d:s; {RUF}",
            dmarc.DmarcResult.FAIL,
            (),
            ["dmarc", "signature", "spf"],
        ),
        ("v=DMARC1; p=reject; fo=1", dmarc.DmarcResult.FAIL, (), []),  # no ruf: fo ignored
        # RFC 9991 §2: never from a public suffix operator's record.
        (f"v=DMARC1; p=reject; psd=y; {RUF}", dmarc.DmarcResult.FAIL, (), []),
    ],
)
def test_fo_options(
    record: str, result: dmarc.DmarcResult, aligned: tuple[str, ...], kinds: list[str]
) -> None:
    got = report_kinds(failed_message(record, result=result, aligned=aligned))
    assert [k.value for k in got] == kinds


def test_temperror_asks_for_nothing() -> None:
    failed = failed_message(f"v=DMARC1; p=reject; fo=1; {RUF}")
    failed = replace(failed, outcome=replace(failed.outcome, result=dmarc.DmarcResult.TEMPERROR))
    assert report_kinds(failed) == []


def test_identity_alignment_names_what_failed() -> None:
    outcome = failed_message(f"v=DMARC1; p=reject; {RUF}", aligned=("spf",)).outcome
    assert identity_alignment(outcome) == ["dkim"]
    assert identity_alignment(replace(outcome, aligned=())) == ["dkim", "spf"]


ENVELOPE = Envelope(
    sender="reports@example.org",
    recipients=["ruf@sender.example"],
    date=ARRIVAL,
    message_id="<r1@mx.example.org>",
    boundary_seed="report.1",
)


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def parts(message: Message) -> list[Message]:
    payload = message.get_payload()
    assert isinstance(payload, list)
    return payload


def feedback(message: Message) -> Message:
    """The fields of the ``message/feedback-report`` part."""
    body = parts(message)[1].get_payload()
    if isinstance(body, list):  # the stdlib parses message/* bodies as messages
        [inner] = body
        assert isinstance(inner, Message)
        return inner
    assert isinstance(body, str)
    return email.message_from_string(body)


def test_report_structure_headers_only_and_redacted() -> None:
    failed = failed_message(f"v=DMARC1; p=reject; {RUF}", aligned=())
    settings = ReportSettings(receiver="mx.example.org", redaction_key=b"k" * 32)
    raw = report_message(failed, AuthFailure.DMARC, settings, ENVELOPE, spf_record="v=spf1 -all")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    message = parse(raw)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "feedback-report"
    assert [p.get_content_type() for p in parts(message)] == [
        "text/plain",
        "message/feedback-report",
        "text/rfc822-headers",
    ]
    fields = feedback(message)
    assert fields["Feedback-Type"] == "auth-failure"
    assert fields["Version"] == "1"
    assert fields["User-Agent"].startswith("Pillarbox/")
    assert fields["Auth-Failure"] == "dmarc"
    assert fields["Identity-Alignment"] == "dkim, spf"
    assert "dmarc=fail" in fields["Authentication-Results"]
    assert fields["Authentication-Results"].startswith("mx.example.org;")
    # A failed signature of the aligned author domain (RFC 9991 §4 item 1).
    assert (fields["DKIM-Domain"], fields["DKIM-Selector"], fields["DKIM-Identity"]) == (
        "sender.example",
        "s1",
        "@sender.example",
    )
    assert fields["SPF-DNS"] == "txt : sender.example : v=spf1 -all"
    assert fields["Source-IP"] == "192.0.2.7"
    assert fields["Reported-Domain"] == "sender.example"
    assert fields["Delivery-Result"] == "reject"
    assert fields["Arrival-Date"] == "Fri, 01 May 2026 12:00:00 +0000"
    token = redact_local_part(b"alice", b"k" * 32).decode()
    assert fields["Original-Mail-From"] == f"<{token}@sender.example>"
    assert fields["Original-Rcpt-To"] is None  # never: it would expose the recipients
    original = parts(message)[2].get_payload()
    assert isinstance(original, str)
    assert "The confidential body" not in original
    assert "alice@" not in original and "bob@" not in original
    assert f"{token}@sender.example" in original
    assert "<m1@sender.example>" in original  # identifiers are not addresses
    assert "Subject: quarterly figures" in original


def test_full_content_carries_the_message_up_to_a_size() -> None:
    failed = failed_message(f"v=DMARC1; p=quarantine; {RUF}")
    settings = ReportSettings(receiver="mx.example.org", content=Content.FULL)
    message = parse(report_message(failed, AuthFailure.DMARC, settings, ENVELOPE))
    third = parts(message)[2]
    assert third.get_content_type() == "message/rfc822"
    assert "The confidential body" in third.as_string()
    assert "alice@sender.example" in third.as_string()  # redaction off
    assert feedback(message)["Delivery-Result"] == "spam"
    small = replace(settings, max_original=100)
    headers = parse(report_message(failed, AuthFailure.DMARC, small, ENVELOPE))
    assert parts(headers)[2].get_content_type() == "text/rfc822-headers"


def test_signature_and_spf_reports() -> None:
    failed = failed_message(f"v=DMARC1; p=none; fo=d:s; {RUF}")
    settings = ReportSettings(receiver="mx.example.org")
    signature = feedback(parse(report_message(failed, AuthFailure.SIGNATURE, settings, ENVELOPE)))
    assert signature["Auth-Failure"] == "signature"
    assert signature["DKIM-Domain"] == "sender.example"
    assert signature["Identity-Alignment"] is None  # a DMARC report's field
    assert signature["Delivery-Result"] is None  # p=none decided nothing
    spf = feedback(parse(report_message(failed, AuthFailure.SPF, settings, ENVELOPE)))
    assert spf["Auth-Failure"] == "spf"


def test_injected_values_cannot_add_fields() -> None:
    failed = failed_message(f"v=DMARC1; p=reject; {RUF}")
    failed = replace(failed, source_ip="192.0.2.7\r\nFeedback-Type: abuse")
    settings = ReportSettings(receiver="mx.example.org")
    fields = feedback(parse(report_message(failed, AuthFailure.DMARC, settings, ENVELOPE)))
    assert fields.get_all("Feedback-Type") == ["auth-failure"]


def test_feedback_reports_are_recognised() -> None:
    report = report_message(
        failed_message(f"v=DMARC1; p=reject; {RUF}"),
        AuthFailure.DMARC,
        ReportSettings(receiver="mx.example.org"),
        ENVELOPE,
    )
    assert is_feedback_report(report)
    assert not is_feedback_report(ORIGINAL)
    # Other receivers' reports: the parameter quoted, or split as RFC 2231 §3 allows.
    for content_type in (
        b'Multipart/Report; report-type="feedback-report"; boundary="b"',
        b"multipart/report;\r\n report-type*0=feedback-;\r\n report-type*1=report; boundary=b",
    ):
        other = b"From: abuse@receiver.example\r\nContent-Type: " + content_type + b"\r\n\r\nx\r\n"
        assert is_feedback_report(other), content_type
    assert not is_feedback_report(
        b'Content-Type: multipart/report; report-type="delivery-status"; boundary=b\r\n\r\nx\r\n'
    )


def test_redaction_keeps_identifiers_and_is_stable() -> None:
    header = (
        b"From: a.b+tag@x.example\r\nCc: <A.B+tag@x.example>\r\n"
        b"Message-ID: <id@x.example>\r\nReferences: <r@x.example>\r\n"
    )
    out = redact_header(header, b"key")
    token = redact_local_part(b"a.b+tag", b"key")
    assert out.count(token + b"@x.example") == 2  # case-insensitive: one token per address
    assert b"<id@x.example>" in out and b"<r@x.example>" in out
    assert redact_local_part(b"a", b"key") != redact_local_part(b"a", b"other key")


def test_redaction_covers_utf8_and_quoted_local_parts() -> None:
    header = (
        'To: s\u00f6r\u00e9n@x.example, j\u00f6rg@ex\u00e4mple.de\r\nCc: "john doe"@x.example\r\n'
    ).encode()
    out = redact_header(header, b"key")
    for local in ("s\u00f6r\u00e9n", "j\u00f6rg", '"john doe"'):
        assert local.encode() not in out
    assert redact_local_part("s\u00f6r\u00e9n".encode(), b"key") + b"@x.example" in out
    assert redact_local_part("j\u00f6rg".encode(), b"key") + "@ex\u00e4mple.de".encode() in out
    assert redact_local_part(b'"john doe"', b"key") + b"@x.example" in out


def test_rate_limit_per_domain_and_window() -> None:
    limiter = RateLimiter(
        domain_limits(DmarcFailureReportSection(max_per_domain=3, rate_window=60))
    )
    sent = []
    for now in (0.0, 1.0, 2.0, 3.0, 30.0):
        allowed = limiter.check("a.example", now) is None
        if allowed:
            limiter.record_failure("a.example", now)
        sent.append(allowed)
    assert sent == [True, True, True, False, False]
    assert limiter.check("b.example", 3.0) is None  # per policy domain
    assert limiter.check("a.example", 62.5) is None  # a window after the last one


def test_pending_reports_keep_only_what_they_carry() -> None:
    failed = failed_message(f"v=DMARC1; p=reject; {RUF}")
    headers = trimmed(failed, ReportSettings(receiver="mx.example.org"))
    assert headers.header_only and b"confidential body" not in headers.raw
    assert headers.raw.endswith(b"Message-ID: <m1@sender.example>\r\n\r\n")
    full = ReportSettings(receiver="mx.example.org", content=Content.FULL)
    assert trimmed(failed, full) is failed
    small = replace(full, max_original=100)
    large = trimmed(failed, small)
    assert large.header_only
    # Even if the header alone fits, a trimmed message is never reported as the whole one.
    message = parse(report_message(large, AuthFailure.DMARC, full, ENVELOPE))
    assert parts(message)[2].get_content_type() == "text/rfc822-headers"
