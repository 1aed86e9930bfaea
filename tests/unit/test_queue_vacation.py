"""The auto-reply message itself (RFC 3834 §3) for awkward originals; when a reply is sent at
all is tested on the live server (tests/interop/test_forwarding.py)."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email.policy import default

import pytest

from pillarbox.queue.vacation import Incoming, build_reply
from pillarbox.store.types import Account, AccountSettings

NOW = datetime(2025, 6, 2, 9, 30, tzinfo=UTC)
ALICE = Account(1, "alice@example.org", "Alice Liddell", "", None, False, None, None, NOW)
AWAY = AccountSettings(vacation_enabled=True, vacation_body="Back on Monday.\nAlice")


def reply_to(original: bytes, settings: AccountSettings = AWAY) -> email.message.EmailMessage:
    raw = build_reply(Incoming.of("ann@outside.test", original), ALICE, settings, now=NOW)
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(raw, policy=default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        (b"Lunch?", "Auto: Lunch?"),
        (b"=?utf-8?q?Caf=C3=A9?=", "Auto: Café"),
        ("Grüße".encode(), "Auto: Grüße"),
        (b"broken \xff\xfe bytes", "Auto: broken \ufffd\ufffd bytes"),
        (b"bare\rCR", "Auto: bare CR"),
    ],
)
def test_subject_of_the_original(subject: bytes, expected: str) -> None:
    original = b"From: ann@outside.test\r\nSubject: " + subject + b"\r\n\r\nHi\r\n"
    assert reply_to(original)["Subject"] == expected


def test_headers_of_a_reply() -> None:
    original = (
        b"From: ann@outside.test\r\nSubject: Plans\r\nMessage-ID: <m2@outside.test>\r\n"
        b"References: <m0@outside.test>\r\n <m1@outside.test>\r\n\r\nHi\r\n"
    )
    reply = reply_to(original, AccountSettings(vacation_subject="Away", vacation_body="Away."))
    assert reply["From"] == "Alice Liddell <alice@example.org>"
    assert reply["To"] == "ann@outside.test"
    assert reply["Subject"] == "Away"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["In-Reply-To"] == "<m2@outside.test>"
    assert reply["References"] == "<m0@outside.test> <m1@outside.test> <m2@outside.test>"
    assert reply["Message-ID"].endswith("@example.org>")
    assert reply.get_content().strip() == "Away."


def test_no_message_id_no_threading_fields() -> None:
    reply = reply_to(b"From: ann@outside.test\r\n\r\nHi\r\n")
    assert reply["In-Reply-To"] is None and reply["References"] is None
    assert reply["Subject"] == "Auto: "
    assert reply.get_content().splitlines() == ["Back on Monday.", "Alice"]
