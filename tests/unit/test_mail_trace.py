"""Trace fields (RFC 5321 §4.4, RFC 3848, RFC 6531 §4.3) and submission fix-ups (RFC 6409 §8)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pillarbox.mail.headers import scan_header
from pillarbox.mail.parse import parse_message
from pillarbox.mail.trace import (
    TlsSummary,
    address_literal,
    complete_submission,
    delivered_to,
    make_message_id,
    received,
    return_path,
    with_protocol,
)

WHEN = datetime(2024, 3, 5, 14, 7, 9, tzinfo=timezone(timedelta(hours=1)))


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"esmtp": False, "tls": False, "authenticated": False}, "SMTP"),
        ({"esmtp": True, "tls": False, "authenticated": False}, "ESMTP"),
        ({"esmtp": True, "tls": True, "authenticated": False}, "ESMTPS"),
        ({"esmtp": True, "tls": False, "authenticated": True}, "ESMTPA"),
        ({"esmtp": True, "tls": True, "authenticated": True}, "ESMTPSA"),
        ({"esmtp": True, "tls": True, "authenticated": False, "utf8": True}, "UTF8SMTPS"),
        ({"esmtp": True, "tls": True, "authenticated": True, "utf8": True}, "UTF8SMTPSA"),
        ({"esmtp": True, "tls": False, "authenticated": False, "lmtp": True}, "LMTP"),
        ({"esmtp": True, "tls": True, "authenticated": True, "lmtp": True}, "LMTPSA"),
        (
            {"esmtp": True, "tls": False, "authenticated": False, "utf8": True, "lmtp": True},
            "UTF8LMTP",
        ),
    ],
)
def test_with_protocol(flags: dict[str, bool], expected: str) -> None:
    assert with_protocol(**flags) == expected


def test_address_literals() -> None:
    assert address_literal("192.0.2.7") == "[192.0.2.7]"
    assert address_literal("2001:DB8:0:0::1") == "[IPv6:2001:db8::1]"
    assert address_literal("::ffff:192.0.2.7") == "[192.0.2.7]"


def test_received_full() -> None:
    field = received(
        helo="mail.example.com",
        client_ip="192.0.2.7",
        client_host="mail.example.com",
        by_host="mx.example.org",
        protocol="ESMTPS",
        queue_id="4AbC123",
        date=WHEN,
        recipients=["user@example.org"],
        tls=TlsSummary("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256),
    )
    assert field == (
        b"Received: from mail.example.com (mail.example.com [192.0.2.7])\r\n"
        b"\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n"
        b"\tby mx.example.org (Pillarbox) with ESMTPS id 4AbC123\r\n"
        b"\tfor <user@example.org>; Tue, 05 Mar 2024 14:07:09 +0100\r\n"
    )
    # It is one well-formed field that our own parser reads back.
    block = scan_header(field + b"\r\n", 0, len(field) + 2)
    assert [f.key for f in block.fields] == ["received"]


def test_received_minimal_and_several_recipients() -> None:
    field = received(
        helo="[192.0.2.7]",
        client_ip="2001:db8::5",
        client_host=None,
        by_host="mx.example.org",
        protocol="SMTP",
        queue_id="Q1",
        date=WHEN,
        recipients=["a@example.org", "b@example.org"],
    )
    assert field == (
        b"Received: from [192.0.2.7] ([IPv6:2001:db8::5])\r\n"
        b"\tby mx.example.org (Pillarbox) with SMTP id Q1; Tue, 05 Mar 2024 14:07:09 +0100\r\n"
    )


@pytest.mark.parametrize(
    ("helo", "first"),
    [
        ("front.example", b"Received: from front.example\r\n"),
        ("bad helo!", b'Received: from localhost (invalid HELO "bad helo!")\r\n'),
    ],
)
def test_received_from_a_unix_socket_has_no_tcp_info(helo: str, first: bytes) -> None:
    """LMTP from a front MTA on a UNIX socket: no client address (RFC 5321 §4.4 Extended-Domain
    is then the Domain alone)."""
    field = received(
        helo=helo,
        client_ip="",
        client_host=None,
        by_host="mx.example.org",
        protocol="LMTP",
        queue_id="Q2",
        date=WHEN,
        recipients=["a@example.org"],
    )
    assert field == first + (
        b"\tby mx.example.org (Pillarbox) with LMTP id Q2\r\n"
        b"\tfor <a@example.org>; Tue, 05 Mar 2024 14:07:09 +0100\r\n"
    )


def test_received_does_not_let_the_client_inject() -> None:
    field = received(
        helo="evil)\r\nX-Injected: yes (",
        client_ip="192.0.2.7",
        client_host="bad host name",
        by_host="mx.example.org",
        protocol="ESMTP",
        queue_id="Q1",
        date=WHEN,
        recipients=["u@example.org\r\nX-Bad: 1"],
    )
    assert b"\r\nX-" not in field
    assert field.startswith(
        b'Received: from [192.0.2.7] ([192.0.2.7]) (invalid HELO "evil\\) X-Injected: yes \\(")'
    )
    block = scan_header(field + b"\r\n", 0, len(field) + 2)
    assert [f.key for f in block.fields] == ["received"]


def test_received_rejects_bad_values() -> None:
    common = {
        "helo": "h.example",
        "client_ip": "192.0.2.1",
        "client_host": None,
        "by_host": "mx.example",
        "protocol": "ESMTP",
    }
    with pytest.raises(ValueError, match="timezone"):
        received(**common, queue_id="Q", date=datetime(2024, 1, 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="atom"):
        received(**common, queue_id="bad id", date=WHEN)  # type: ignore[arg-type]


def test_simple_fields() -> None:
    assert return_path("bounce@example.com") == b"Return-Path: <bounce@example.com>\r\n"
    assert return_path("") == b"Return-Path: <>\r\n"
    assert delivered_to("u@example.org") == b"Delivered-To: u@example.org\r\n"
    assert make_message_id("a1.b2", "example.org") == "<a1.b2@example.org>"
    with pytest.raises(ValueError, match="message id"):
        make_message_id("has space", "example.org")


class TestCompleteSubmission:
    def test_adds_both_at_the_end_of_the_header(self) -> None:
        raw = b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n"
        out = complete_submission(raw, date=WHEN, message_id="<id1@example.com>")
        assert out == (
            b"From: a@example.com\r\nSubject: hi\r\n"
            b"Date: Tue, 05 Mar 2024 14:07:09 +0100\r\nMessage-ID: <id1@example.com>\r\n"
            b"\r\nbody\r\n"
        )
        info = parse_message(out)
        assert info.message_id == "id1@example.com"
        assert info.sent_date == WHEN

    def test_keeps_present_fields_and_bytes(self) -> None:
        raw = b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\n\xff body"
        assert complete_submission(raw, date=WHEN, message_id="<z@y>") is raw
        only_date = b"message-id: <x@y>\r\n\r\nb"
        assert complete_submission(only_date, date=WHEN, message_id="<z@y>") == (
            b"message-id: <x@y>\r\nDate: Tue, 05 Mar 2024 14:07:09 +0100\r\n\r\nb"
        )

    def test_lf_message_and_header_without_line_end(self) -> None:
        out = complete_submission(
            b"Subject: s\n\nb\n", date=WHEN.astimezone(UTC), message_id="<i@h>"
        )
        assert out == b"Subject: s\nDate: Tue, 05 Mar 2024 13:07:09 +0000\nMessage-ID: <i@h>\n\nb\n"
        out = complete_submission(b"Subject: s", date=WHEN, message_id="<i@h>")
        assert out.startswith(b"Subject: s\r\nDate: ")
        out = complete_submission(b"", date=WHEN, message_id="<i@h>")
        assert out == b"Date: Tue, 05 Mar 2024 14:07:09 +0100\r\nMessage-ID: <i@h>\r\n"
