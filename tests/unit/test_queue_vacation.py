"""The auto-reply message itself (RFC 3834 §3) for awkward originals; when a reply is sent at
all is tested on the live server (tests/interop/test_forwarding.py)."""

from __future__ import annotations

import dataclasses
import email
from datetime import UTC, datetime
from email.policy import default

import pytest

from pillarbox.queue.vacation import Incoming, build_reply, compose_reply
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


def test_display_names_and_subjects_that_need_care() -> None:
    """A display name with RFC 5322 specials is quoted (it was written bare: the From named
    a group); a Subject holding a line separator (U+2028) becomes one line — the email
    package refuses it, which failed the reply."""
    account = dataclasses.replace(ALICE, display_name='Liddell, Alice "Al"')
    original = "From: ann@outside.test\r\nSubject: a\u2028b\r\n\r\nHi\r\n".encode()
    raw = build_reply(Incoming.of("ann@outside.test", original), account, AWAY, now=NOW)
    reply = email.message_from_bytes(raw, policy=default)
    [author] = reply["From"].addresses
    assert (author.display_name, author.addr_spec) == ('Liddell, Alice "Al"', ALICE.address)
    assert reply["Subject"] == "Auto: a b"


def test_no_message_id_no_threading_fields() -> None:
    reply = reply_to(b"From: ann@outside.test\r\n\r\nHi\r\n")
    assert reply["In-Reply-To"] is None and reply["References"] is None
    assert reply["Subject"] == "Auto: "
    assert reply.get_content().splitlines() == ["Back on Monday.", "Alice"]


def _composed(
    body: str, *, subject: str = "", sender: str = "", mime: bool = False
) -> email.message.EmailMessage:
    original = b"From: ann@outside.test\r\nSubject: Plans\r\nMessage-ID: <m@outside.test>\r\n\r\n"
    incoming = Incoming.of("ann@outside.test", original)
    raw = compose_reply(
        incoming, ALICE, body=body, now=NOW, subject=subject, sender=sender, mime=mime
    )
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(raw, policy=default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def test_sieve_reply_subject_and_from() -> None:
    """RFC 5230 §4.3: the script's subject (RFC 2047-encoded when not ASCII) and From."""
    reply = _composed("Away.", subject="Außer Haus", sender="Team <team@example.org>")
    assert reply["Subject"] == "Außer Haus"
    assert reply["From"] == "Team <team@example.org>"
    assert reply["In-Reply-To"] == "<m@outside.test>"


def test_sieve_reply_mime_entity() -> None:
    """RFC 5230 §4.4: with :mime the reason is the entity, its own MIME fields and all."""
    entity = (
        'Content-Type: multipart/alternative; boundary="foo"\r\n\r\n'
        "--foo\r\n\r\nI'm at the beach.\r\n"
        "--foo\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n<p>At the beach</p>\r\n"
        "--foo--\r\n"
    )
    reply = _composed(entity, mime=True)
    assert reply.get_content_type() == "multipart/alternative"
    assert reply["MIME-Version"] == "1.0"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["Subject"] == "Auto: Plans"
    plain, html = reply.iter_parts()
    assert plain.get_content().strip() == "I'm at the beach."
    assert html.get_content_type() == "text/html"


@pytest.mark.parametrize(
    ("field", "requiretls", "marked"),
    [
        (b"TLS-Required: No\r\n", False, True),
        (b"TLS-Required:  no \r\n", False, True),
        (b"TLS-Required: yes\r\n", False, False),
        (b"", False, False),
        (b"TLS-Required: No\r\n", True, False),
    ],
)
def test_a_reply_asks_what_the_message_asked_of_tls(
    field: bytes, requiretls: bool, marked: bool
) -> None:
    """RFC 8689 §6: a reply applies the message's "TLS not required" as its REQUIRETLS
    (which the queue carries), both ways; under the tag the field is moot (§4.1)."""
    original = b"From: ann@outside.test\r\n" + field + b"Subject: Plans\r\n\r\nHi\r\n"
    incoming = Incoming.of("ann@outside.test", original, requiretls=requiretls)
    assert incoming.requiretls is requiretls
    reply = email.message_from_bytes(build_reply(incoming, ALICE, AWAY, now=NOW), policy=default)
    assert reply.get("TLS-Required") == ("No" if marked else None)
