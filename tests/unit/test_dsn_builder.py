"""RFC 3464 / RFC 6522 delivery reports: structure, fields, what of the original is returned."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

import pytest

from pillarbox.mail.dsn import (
    Action,
    DeliveryReport,
    RecipientReport,
    ReportMessage,
    ReturnContent,
    build_report,
    delivery_status,
    fold,
)

T0 = datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
ORIGINAL = (
    b"Received: from x by mx.a.test; Sun, 1 Jun 2025 10:00:00 +0000\r\n"
    b"From: alice@a.test\r\nTo: bob@b.test\r\nSubject: hello\r\n\r\nbody line\r\n"
)
FAILED = RecipientReport(
    final_recipient="bob@b.test",
    action=Action.FAILED,
    status="5.1.1",
    original_recipient="rfc822;Bob@B.test",
    remote_mta="mx.b.test",
    diagnostic="550 5.1.1 mailbox unavailable",
    last_attempt=T0,
)
HEADER = ReportMessage(
    from_address="MAILER-DAEMON@mx.a.test",
    to_address="alice@a.test",
    date=T0,
    message_id="<r1@mx.a.test>",
    boundary_seed="pb-b1",
)


def report(*recipients: RecipientReport, envid: str | None = None) -> DeliveryReport:
    return DeliveryReport(
        reporting_mta="mx.a.test", arrival_date=T0, recipients=recipients, envid=envid
    )


def parse(raw: bytes) -> email.message.Message:
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def test_failure_report_structure_and_fields() -> None:
    raw = build_report(report(FAILED, envid="env-1"), HEADER, ORIGINAL, ret=ReturnContent.FULL)
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["To"] == "<alice@a.test>"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    text, status, original = msg.get_payload()
    assert text.get_content_type() == "text/plain"
    assert text.get_payload().endswith(
        "<bob@b.test>: failed\r\n    mx.b.test: 550 5.1.1 mailbox unavailable\r\n"
    )
    assert status.get_content_type() == "message/delivery-status"
    per_message, per_recipient = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; mx.a.test"
    assert per_message["Original-Envelope-Id"] == "env-1"
    assert per_recipient["Final-Recipient"] == "rfc822; bob@b.test"
    assert per_recipient["Original-Recipient"] == "rfc822; Bob@B.test"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.1.1"
    assert per_recipient["Remote-MTA"] == "dns; mx.b.test"
    assert per_recipient["Diagnostic-Code"] == "smtp; 550 5.1.1 mailbox unavailable"
    assert original.get_content_type() == "message/rfc822"
    assert original.get_payload()[0]["Subject"] == "hello"
    assert raw.endswith(b"body line\r\n\r\n--pb-b1--\r\n")


def test_no_envid_no_orcpt_means_no_such_fields() -> None:
    bare = RecipientReport(final_recipient="bob@b.test", action=Action.FAILED, status="5.0.0")
    text = delivery_status(report(bare))
    assert "Original-Envelope-Id" not in text and "Original-Recipient" not in text
    assert "Remote-MTA" not in text and "Diagnostic-Code" not in text


@pytest.mark.parametrize(
    ("ret", "limit", "expected"),
    [
        (ReturnContent.HEADERS, 10**6, "text/rfc822-headers"),
        (ReturnContent.FULL, 10, "text/rfc822-headers"),  # too large: headers only
        (None, 10**6, "message/rfc822"),  # RFC 3461 §4.3: our choice, the whole message
    ],
)
def test_what_is_returned(ret: ReturnContent | None, limit: int, expected: str) -> None:
    header = ReportMessage(
        from_address=HEADER.from_address,
        to_address=HEADER.to_address,
        date=T0,
        message_id=HEADER.message_id,
        boundary_seed="b",
        max_original=limit,
    )
    msg = parse(build_report(report(FAILED), header, ORIGINAL, ret=ret))
    returned = msg.get_payload()[2]
    assert returned.get_content_type() == expected
    if expected == "text/rfc822-headers":
        assert "Subject: hello" in returned.get_payload()
        assert "body line" not in returned.get_payload()


def test_delay_report_returns_headers_and_says_until_when() -> None:
    delayed = RecipientReport(
        final_recipient="bob@b.test",
        action=Action.DELAYED,
        status="4.4.1",
        diagnostic="451 4.4.1 could not connect",
        will_retry_until=datetime(2025, 6, 6, 10, 0, tzinfo=UTC),
    )
    msg = parse(build_report(report(delayed), HEADER, ORIGINAL, ret=ReturnContent.FULL))
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    status = msg.get_payload()[1].get_payload()[1]
    assert status["Action"] == "delayed"
    assert status["Will-Retry-Until"] == "Fri, 06 Jun 2025 10:00:00 +0000"
    assert msg.get_payload()[2].get_content_type() == "text/rfc822-headers"  # RFC 3461 §6.2


def test_boundary_never_occurs_in_the_parts() -> None:
    original = ORIGINAL + b"--pb-b1\r\n"
    raw = build_report(report(FAILED), HEADER, original, ret=ReturnContent.FULL)
    assert b'boundary="pb-b1.1"' in raw
    assert len(parse(raw).get_payload()) == 3


def test_remote_text_cannot_inject_fields() -> None:
    evil = RecipientReport(
        final_recipient="bob@b.test",
        action=Action.FAILED,
        status="5.0.0",
        diagnostic="550 no\r\nAction: delivered",
    )
    text = delivery_status(report(evil))
    assert "\r\nAction: delivered" not in text
    assert text.count("\r\nAction:") == 1
    assert "Diagnostic-Code: smtp; 550 no Action: delivered\r\n" in text


def test_utf8_original_is_message_global() -> None:
    original = "From: jöran@a.test\r\nSubject: hej\r\n\r\nhi\r\n".encode()
    raw = build_report(report(FAILED), HEADER, original, ret=ReturnContent.FULL)
    assert b"Content-Type: message/global\r\nContent-Description: Original message\r\n" in raw
    assert b"Content-Transfer-Encoding: 8bit" in raw


def test_long_values_are_folded() -> None:
    field = fold("Diagnostic-Code", "smtp; " + " ".join(["word"] * 40))
    assert all(len(line) <= 78 for line in field.split("\r\n"))
    assert field.endswith("\r\n") and field.count("\r\n ") >= 2


def test_a_report_needs_recipients() -> None:
    with pytest.raises(ValueError, match="at least one"):
        build_report(report(), HEADER, ORIGINAL, ret=None)
