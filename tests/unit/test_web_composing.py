"""Recipient validation, reply/forward drafts, and the messages built from drafts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pillarbox.mail.parse import parse_message
from pillarbox.mail.people import Person, parse_people
from pillarbox.web.composing import (
    Draft,
    Upload,
    angle,
    build_message,
    check_recipients,
    forward_draft,
    quote,
    reply_draft,
    reply_subject,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ME = Person("Alice Ä", "alice@example.org")

ORIGINAL = (
    b"From: Bob <bob@example.org>\r\nTo: Alice <alice@example.org>, carol@example.net\r\n"
    b"Cc: dave@example.net, alice@example.org\r\nReply-To: bob.reply@example.org\r\n"
    b"Subject: Plans\r\nDate: Tue, 30 Apr 2024 09:00:00 +0000\r\n"
    b"Message-ID: <m2@example.org>\r\nReferences: <m0@example.org> <m1@example.org>\r\n"
    b"\r\nLine one\r\n\r\nLine three\r\n"
)


def test_parse_people_separates_valid_and_invalid() -> None:
    valid, invalid = parse_people('"Bob B." <bob@example.org>, carol@EXAMPLE.net, oops, x@y, a@')
    assert [str(p) for p in valid] == ['"Bob B." <bob@example.org>', "carol@example.net"]
    assert invalid == ["oops", "x@y", "a"]
    assert parse_people("  ") == ([], [])


def test_check_recipients_reports_per_field() -> None:
    result = check_recipients(
        Draft(to="bob@example.org", cc="bad", bcc="eve@example.net"), max_recipients=10
    )
    assert result.errors == {"cc": "not a valid address: bad"}
    assert result.envelope == ["bob@example.org", "eve@example.net"]
    assert check_recipients(Draft(), max_recipients=10).errors == {
        "to": "add at least one recipient"
    }
    many = ", ".join(f"u{n}@example.org" for n in range(5))
    assert "at most 3" in check_recipients(Draft(to=many), max_recipients=3).errors["to"]


def test_reply_all_threads_quotes_and_drops_self() -> None:
    info = parse_message(ORIGINAL)
    draft = reply_draft(
        info, "Line one\n\nLine three\n", own_addresses={"alice@example.org"}, reply_all=True,
        origin="5:9", received=NOW,
    )  # fmt: skip
    assert draft.to == "bob.reply@example.org"
    assert draft.cc == "carol@example.net, dave@example.net"
    assert draft.subject == "Re: Plans"
    assert draft.in_reply_to == "m2@example.org"
    assert draft.references == ("m0@example.org", "m1@example.org", "m2@example.org")
    assert "Bob <bob@example.org> wrote:\n> Line one\n>\n> Line three" in draft.body
    assert draft.replying_to == "5:9"
    single = reply_draft(info, "x", own_addresses=set(), reply_all=False, origin="", received=NOW)
    assert single.cc == ""


def test_reply_all_keeps_a_display_name_with_a_comma_one_recipient() -> None:
    """A name the original quoted (RFC 5322 §3.2.4) is quoted again in the draft: unquoted,
    its comma would split the field into two invalid recipients."""
    info = parse_message(
        ORIGINAL.replace(b"carol@example.net", b'"Doe, John" <john@example.net>', 1)
    )
    draft = reply_draft(
        info, "x", own_addresses={"alice@example.org"}, reply_all=True, origin="", received=NOW
    )
    assert draft.cc == '"Doe, John" <john@example.net>, dave@example.net'
    checked = check_recipients(draft, max_recipients=10)
    assert checked.errors == {}
    assert checked.envelope == ["bob.reply@example.org", "john@example.net", "dave@example.net"]


def test_subject_prefixes_are_not_stacked() -> None:
    assert reply_subject("Re: x") == "Re: x" and reply_subject("AW: x") == "AW: x"
    assert reply_subject("Regarding") == "Re: Regarding"
    info = parse_message(ORIGINAL.replace(b"Subject: Plans", b"Subject: Fwd: Plans"))
    assert forward_draft(info, "t", origin="1:1", received=NOW).subject == "Fwd: Plans"


def test_forward_summarises_the_original() -> None:
    draft = forward_draft(parse_message(ORIGINAL), "Line one", origin="1:2", received=NOW)
    assert "---------- Forwarded message ----------\nFrom: Bob <bob@example.org>" in draft.body
    assert "Subject: Plans" in draft.body and draft.body.endswith("Line one")
    assert draft.forwarding == "1:2" and draft.to == ""


def test_quote() -> None:
    assert quote("a\r\n\r\nb\n") == "> a\n>\n> b"


def test_built_message_headers_and_parts() -> None:
    draft = Draft(
        subject="Grüße\r\nBcc: injected@evil.example",
        body="Hallo Bob,\nschöne Grüße.\n",
        in_reply_to="m2@example.org",
        references=("<m1@example.org>", "m2@example.org"),
        attachments=(Upload("bericht.pdf", "application/pdf", b"%PDF-1.4"),),
    )
    recipients = check_recipients(
        Draft(to="Bob <bob@example.org>", bcc="secret@example.net"), max_recipients=5
    )
    raw, message_id = build_message(
        draft, sender=ME, recipients=recipients, hostname="mx.test", now=NOW, include_bcc=False
    )
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    info = parse_message(raw)
    assert info.subject == "Grüße Bcc: injected@evil.example"  # one line, no header injection
    assert info.from_name == "Alice Ä" and info.from_addr == "alice@example.org"
    assert info.to_addr == "bob@example.org"
    assert info.message_id == message_id.strip("<>") and message_id.endswith("@mx.test>")
    assert info.in_reply_to == "m2@example.org"
    assert info.references == ("m1@example.org", "m2@example.org")
    assert b"secret@example.net" not in raw
    assert [a.filename for a in info.attachments] == ["bericht.pdf"]
    assert "schöne Grüße" in info.body_text
    copy, same_id = build_message(
        draft, sender=ME, recipients=recipients, hostname="mx.test", now=NOW,
        include_bcc=True, message_id=message_id,
    )  # fmt: skip
    assert same_id == message_id and b"Bcc: secret@example.net" in copy


def test_a_reply_to_a_subject_with_any_line_break_builds() -> None:
    """Found by fuzz/thread_keys.py: the email package refuses whatever ``str.splitlines``
    breaks at (a form feed, U+2028…) in a header value; only CR and LF were made blanks."""
    info = parse_message(b"Subject: a\x0cb\xe2\x80\xa8c\x1cd\r\nMessage-ID: <m@x>\r\n\r\nhi\r\n")
    draft = reply_draft(info, "", own_addresses=set(), reply_all=False, origin="", received=NOW)
    recipients = check_recipients(Draft(to="bob@example.org"), max_recipients=5)
    raw, _ = build_message(
        draft, sender=ME, recipients=recipients, hostname="mx.test", now=NOW, include_bcc=False
    )
    assert parse_message(raw).subject == "Re: a b c d"


def test_angle() -> None:
    assert angle("a@b") == "<a@b>" and angle("<a@b>") == "<a@b>" and angle(" ") == ""
    # Found by fuzz/thread_keys.py: the parsed id ",1@x>" was written <,1@x>, another id.
    assert angle(",1@x>") == "" and angle("<<a@b>>") == ""
    assert angle("a\x1cb@x") == angle("\x1cb@x") == angle("a\r\nb@x") == ""  # not another id


@pytest.mark.parametrize(
    ("header", "written"),
    [
        # Found by fuzz/thread_keys.py: the parsed id drops the quotes ("quoted local@x"), the
        # reply wrote <quoted local@x>, which reads back as quotedlocal@x: out of the thread.
        (b'<"quoted local"@example.org>', b'<"quoted local"@example.org>'),
        (b'<"a\\\\b \\"c"@x>', b'<"a\\\\b \\"c"@x>'),
        # Found by fuzz/thread_keys.py: the quoted id-left's leading blank was dropped.
        (b'<" <1@x> q"@example.org>', b'<" <1@x> q"@example.org>'),
        # The email package wrote an id too long for a 78-character line as encoded words
        # (RFC 2047 §5 forbids them in a msg-id): a reply to a long Message-ID left the thread.
        (b"<" + b"x" * 90 + b"@example.org>", b"<" + b"x" * 90 + b"@example.org>"),
        # Specials but no blank or quote: written as it is, read back verbatim.
        (b"<a,b@exa;mple.org>", b"<a,b@exa;mple.org>"),
        # A UTF-8 id (RFC 6532) was written as an encoded word (RFC 2047 §5 forbids it there).
        (b"<caf\xc3\xa9@example.org>", None),
    ],
)
def test_a_reply_names_the_id_it_answers_as_it_reads_back(
    header: bytes, written: bytes | None
) -> None:
    info = parse_message(b"From: bob@example.org\r\nMessage-ID: " + header + b"\r\n\r\nhi\r\n")
    draft = reply_draft(info, "", own_addresses=set(), reply_all=False, origin="", received=NOW)
    recipients = check_recipients(Draft(to="bob@example.org"), max_recipients=5)
    raw, _ = build_message(
        draft, sender=ME, recipients=recipients, hostname="mx.test", now=NOW, include_bcc=False
    )
    reply = parse_message(raw)
    if written is None:
        assert b"In-Reply-To" not in raw and b"References" not in raw
        return
    assert b"In-Reply-To: " + written + b"\r\n" in raw
    assert reply.in_reply_to == info.message_id and reply.references == (info.message_id,)
