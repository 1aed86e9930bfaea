"""pillarbox mail: building messages (RFC 5322/2047/2231), replies and forwards."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import pytest

from pillarbox.cli.mail import compose
from pillarbox.cli.mail.reading import readable
from pillarbox.errors import UserError

NOW = datetime(2024, 6, 3, 10, 0, tzinfo=UTC)


def draft(**fields: object) -> compose.Draft:
    base: dict[str, object] = {
        "from_address": "alice@example.org",
        "from_name": "Alïce Example",
        "to": ["Bøb <bob@example.org>"],
        "subject": "Grüße – ünïcode",
        "body": "héllo\nsecond line",
    }
    base.update(fields)
    return compose.Draft(**base)  # type: ignore[arg-type]


def test_headers_are_encoded_and_complete() -> None:
    raw = compose.build(draft(), now=NOW).raw
    assert raw.isascii()  # RFC 2047 words and QP body: no 8BITMIME needed
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"Subject: =?utf-8?" in head
    assert b"Date: Mon, 03 Jun 2024 10:00:00 +0000" in head
    assert b"Message-ID: <" in head and b"@example.org>" in head
    assert b"\n" not in raw.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == "Grüße – ünïcode"
    assert parsed["From"].addresses[0].display_name == "Alïce Example"
    assert parsed.get_content().replace("\r\n", "\n") == "héllo\nsecond line\n"


def test_bcc_is_envelope_only() -> None:
    outgoing = compose.build(draft(cc=["carol@example.net"], bcc=["dave@example.com"]))
    assert outgoing.recipients == ("bob@example.org", "carol@example.net", "dave@example.com")
    assert outgoing.bcc == ("dave@example.com",)
    raw = outgoing.raw
    assert b"dave@example.com" not in raw
    assert b"Bcc" not in raw


def test_attachment_filename_uses_rfc2231() -> None:
    attached = compose.AttachedFile("résumé €.pdf", "application/pdf", b"%PDF-1.4 \x00\xff")
    raw = compose.build(draft(attachments=[attached])).raw
    assert b"filename*=utf-8''r%C3%A9sum%C3%A9%20%E2%82%AC.pdf" in raw
    message = readable(raw)
    [attachment] = message.attachments
    assert attachment.filename == "résumé €.pdf"
    assert message.attachment_bytes(attachment) == b"%PDF-1.4 \x00\xff"


def test_file_attachment_types(tmp_path: Path) -> None:
    base = tmp_path
    (base / "notes.txt").write_text("plain", encoding="utf-8")
    (base / "x.tar.gz").write_bytes(b"\x1f\x8b")
    assert compose.file_attachment(base / "notes.txt").content_type == "text/plain"
    assert compose.file_attachment(base / "x.tar.gz").content_type == "application/octet-stream"
    with pytest.raises(UserError, match="cannot read attachment"):
        compose.file_attachment(base / "missing")


@pytest.mark.parametrize("bad", ["bob", "bob@", "@example.org", "a b@example.org"])
def test_bad_recipients_are_refused(bad: str) -> None:
    with pytest.raises(UserError, match="not an email address"):
        compose.build(draft(to=[bad]))


def test_no_recipients() -> None:
    with pytest.raises(UserError, match="no recipients"):
        compose.build(draft(to=[]))


def test_comma_separated_recipients() -> None:
    outgoing = compose.build(draft(to=["a@example.org, B <b@example.org>"]))
    assert outgoing.recipients == ("a@example.org", "b@example.org")


ORIGINAL = (
    b"From: Bob Example <bob@example.org>\r\n"
    b"To: alice@example.org, Carol <carol@example.net>\r\n"
    b"Cc: dave@example.com, Alice <ALICE@example.org>\r\n"
    b"Reply-To: bob-replies@example.org\r\n"
    b"Subject: =?utf-8?q?Caf=C3=A9?= plans\r\n"
    b"Date: Mon, 03 Jun 2024 10:00:00 +0200\r\n"
    b"Message-ID: <m2@example.org>\r\n"
    b"References: <m0@example.org> <m1@example.org>\r\n"
    b"In-Reply-To: <m1@example.org>\r\n"
    b"\r\n"
    b"Shall we meet?\r\n> earlier quote\r\n\r\nBob\r\n"
)


def test_reply_quotes_with_attribution() -> None:
    text = compose.quoted(readable(ORIGINAL))
    assert text == (
        "On Mon, 03 Jun 2024 10:00:00 +0200, Bob Example wrote:\n"
        "> Shall we meet?\n>> earlier quote\n>\n> Bob\n"
    )


def test_reply_recipients_and_threading() -> None:
    original = readable(ORIGINAL)
    assert compose.reply_recipients(original, "alice@example.org", reply_all=False) == (
        ["bob-replies@example.org"],
        [],
    )
    to, cc = compose.reply_recipients(original, "alice@example.org", reply_all=True)
    assert to == ["bob-replies@example.org", "Carol <carol@example.net>"]
    assert cc == ["dave@example.com"]  # our own address (any case) is left out
    assert compose.reply_references(original) == (
        "<m2@example.org>",
        ["<m0@example.org>", "<m1@example.org>", "<m2@example.org>"],
    )
    assert compose.reply_subject(original.info.subject) == "Re: Café plans"
    assert compose.reply_subject("RE: x") == "RE: x"
    assert compose.forward_subject("Fwd: x") == "Fwd: x"
    assert compose.forward_subject("x") == "Fwd: x"


def test_reply_references_fall_back_to_in_reply_to() -> None:
    raw = b"From: b@example.org\r\nMessage-ID: <n2@x>\r\nIn-Reply-To: <n1@x>\r\n\r\nhi\r\n"
    assert compose.reply_references(readable(raw)) == ("<n2@x>", ["<n1@x>", "<n2@x>"])


def test_built_reply_carries_threading_headers() -> None:
    original = readable(ORIGINAL)
    parent, refs = compose.reply_references(original)
    raw = compose.build(draft(in_reply_to=parent, references=refs)).raw
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed["In-Reply-To"] == "<m2@example.org>"
    assert parsed["References"] == "<m0@example.org> <m1@example.org> <m2@example.org>"


def test_forward_attaches_original_as_message() -> None:
    raw = compose.build(draft(attached_messages=[ORIGINAL], body="FYI")).raw
    message = readable(raw)
    [attachment] = message.attachments
    assert attachment.content_type == "message/rfc822"
    inner = readable(message.attachment_bytes(attachment))
    assert inner.info.message_id == "m2@example.org"
    assert inner.text.startswith("Shall we meet?")
    assert message.text == "FYI"


def test_forward_inline_lists_headers_and_text() -> None:
    text = compose.forwarded_inline(readable(ORIGINAL))
    assert text.startswith("---------- Forwarded message ----------\n")
    assert "From: Bob Example <bob@example.org>" in text
    assert "Subject: Café plans" in text
    assert text.rstrip().endswith("Bob")
