"""pillarbox mail: reading messages, safe attachment names, search queries, tables,
local Maildir/mbox writing."""

from __future__ import annotations

import mailbox
from datetime import date
from pathlib import Path

import pytest

from pillarbox.cli.mail import render
from pillarbox.cli.mail.localmail import Maildir, Mbox
from pillarbox.cli.mail.reading import attachment_targets, readable, safe_filename
from pillarbox.cli.mail.search import search_criteria
from pillarbox.errors import UserError

ALTERNATIVE = (
    b"From: a@example.org\r\nSubject: alt\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="M"\r\n\r\n'
    b'--M\r\nContent-Type: multipart/alternative; boundary="A"\r\n\r\n'
    b"--A\r\nContent-Type: text/html\r\n\r\n<p>html version</p>\r\n"
    b"--A\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
    b"quoted-printable\r\n\r\nplain caf=C3=A9\r\n"
    b"--A--\r\n"
    b'--M\r\nContent-Type: application/octet-stream; name="../../etc/passwd"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\naGk=\r\n"
    b'--M\r\nContent-Type: text/plain; name="passwd"\r\n'
    b"Content-Disposition: attachment\r\n\r\nsecond\r\n"
    b"--M--\r\n"
)


def test_plain_alternative_wins_and_attachments_are_listed() -> None:
    message = readable(ALTERNATIVE)
    assert message.text == "plain café"
    assert [a.filename for a in message.attachments] == ["../../etc/passwd", "passwd"]
    assert message.attachment_bytes(message.attachments[0]) == b"hi"


def test_html_only_becomes_text() -> None:
    raw = (
        b"From: a@example.org\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><head><style>p{}</style></head><body><p>Hello &amp; welcome</p>"
        b"<script>alert(1)</script><p>Second</p></body></html>\r\n"
    )
    assert readable(raw).text == "Hello & welcome\n\nSecond"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("..", "fallback"),
        (".bashrc", "bashrc"),
        ("a\x00b\x1b[31m.txt", "a_b_[31m.txt"),
        ("C:evil.txt", "C_evil.txt"),
        (None, "fallback"),
        ("", "fallback"),
        ("résumé.pdf", "résumé.pdf"),
    ],
)
def test_safe_filename(name: str | None, expected: str) -> None:
    assert safe_filename(name, "fallback") == expected


def test_long_filename_keeps_extension() -> None:
    name = safe_filename("x" * 400 + ".pdf", "f")
    assert name.endswith(".pdf") and len(name.encode()) <= 200


def test_attachment_targets_are_unique_and_inside(tmp_path: Path) -> None:
    targets = attachment_targets(readable(ALTERNATIVE).attachments, tmp_path)
    assert [p.name for _, p in targets] == ["passwd", "passwd-2"]
    assert all(p.parent == tmp_path for _, p in targets)


def test_search_language() -> None:
    assert search_criteria('hello from:bob subject:"two words" unread flagged') == [
        "TEXT",
        "hello",
        "FROM",
        "bob",
        "SUBJECT",
        "two words",
        "UNSEEN",
        "FLAGGED",
    ]
    assert search_criteria("since:2024-01-31 before:2024-02-01 to:x") == [
        "SINCE",
        date(2024, 1, 31),
        "BEFORE",
        date(2024, 2, 1),
        "TO",
        "x",
    ]
    assert search_criteria("") == ["ALL"]
    assert search_criteria("unknown:thing") == ["TEXT", "unknown:thing"]


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("since:yesterday", "YYYY-MM-DD"),
        ("since:2024-02-30", "day is out of range"),
        ("from:", "needs a value"),
        ('subject:"open', "No closing quotation"),
    ],
)
def test_bad_search_queries(query: str, problem: str) -> None:
    with pytest.raises(UserError, match=problem):
        search_criteria(query)


def test_table_cuts_and_cleans() -> None:
    text = render.table(["A", "B"], [["x" * 30, "evil\x1b[2J subject"], ["y", "漢字"]], [10, 0])
    lines = text.split("\n")
    assert lines[0] == "A           B"
    assert lines[1] == "xxxxxxxxx…  evil [2J subject"
    assert "\x1b" not in text
    assert lines[2] == "y           漢字"


def test_flag_letters() -> None:
    assert render.flag_letters([]) == "N"
    assert render.flag_letters(["\\Seen", "\\Flagged", "\\Answered"]) == "FA"


def test_maildir_delivery(tmp_path: Path) -> None:
    target = Maildir(tmp_path / "md")
    target.add(b"Subject: one\r\n\r\nbody\r\n")
    target.add(b"Subject: two\r\n\r\nbody\r\n")
    box = mailbox.Maildir(tmp_path / "md", create=False)
    assert sorted(m["Subject"] for m in box) == ["one", "two"]
    assert not list((tmp_path / "md" / "tmp").iterdir())


def test_mbox_uses_mboxrd_quoting(tmp_path: Path) -> None:
    path = tmp_path / "mail.mbox"
    target = Mbox(path)
    target.add(b"Subject: one\r\n\r\nFrom here\r\n>From there\r\nend")
    target.add(b"Subject: two\r\n\r\nbody\r\n")
    data = path.read_bytes()
    assert b"\n>From here\n>>From there\nend\n\n" in data
    assert data.count(b"\nFrom MAILER-DAEMON ") == 1 and data.startswith(b"From MAILER-DAEMON ")
    assert [m["Subject"] for m in mailbox.mbox(path)] == ["one", "two"]
    assert path.stat().st_mode & 0o777 == 0o600
