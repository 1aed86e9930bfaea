"""mbox and Maildir as files: reading what other programs write, writing what they read, and the
folder names between them (``pillarbox.transfer``)."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pillarbox.errors import UserError
from pillarbox.store.types import SpecialUse
from pillarbox.transfer import folders, maildir, mbox

OURS = {use: use.value.lstrip("\\") for use in SpecialUse}


def test_mboxrd_and_mboxo_quoting_is_undone_and_state_headers_become_flags() -> None:
    data = (
        b"From alice@example.org Mon Mar  3 10:00:00 2025\n"
        b"From: alice@example.org\n"
        b"Subject: one\n"
        b"Status: RO\n"
        b"X-Status: AF\n"
        b"X-Keywords: $Label1 Work\n"
        b"X-UID: 7\n"
        b"\n"
        b">From the start\n"
        b">>From deeper\n"
        b"Status: body lines are not headers\n"
        b"\n"
        b"From bob@example.net Tue Mar  4 11:30:15 +0100 2025\n"
        b"Subject: two\n"
        b"X-Status: DT\n"
        b"\n"
        b"body\n"
        b"From unquoted in an mboxo body, not after an empty line\n"
        b"\n"
    )
    messages = list(mbox.read_mbox(io.BytesIO(data)))
    assert len(messages) == 2
    first, second = messages
    assert first.raw == (
        b"From: alice@example.org\nSubject: one\n\nFrom the start\n>From deeper\n"
        b"Status: body lines are not headers\n"
    )
    assert first.flags == {"\\Seen", "\\Answered", "\\Flagged", "$Label1", "Work"}
    assert first.internal_date == datetime(2025, 3, 3, 10, 0, 0, tzinfo=UTC)
    assert second.raw == (
        b"Subject: two\n\nbody\nFrom unquoted in an mboxo body, not after an empty line\n"
    )
    assert second.flags == {"\\Deleted", "\\Draft"}
    assert second.internal_date == datetime(2025, 3, 4, 10, 30, 15, tzinfo=UTC)
    assert (first.number, second.number) == (1, 2)
    assert data[second.offset :].startswith(b"From bob@")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"From a@b Mon Mar  3 10:00:00 2025", datetime(2025, 3, 3, 10, tzinfo=UTC)),
        (b"From a@b  Mon Mar 3 10:00 2025", datetime(2025, 3, 3, 10, tzinfo=UTC)),
        (b"From a@b Mon Mar  3 10:00:00 2025 -0200", datetime(2025, 3, 3, 12, tzinfo=UTC)),
        (b"From a@b Mon Mar  3 10:00:00 PST 2025", datetime(2025, 3, 3, 10, tzinfo=UTC)),
        (b"From MAILER-DAEMON Fri Feb 30 10:00:00 2025", None),
        (b"From here to eternity", None),
    ],
)
def test_from_line_dates(line: bytes, expected: datetime | None) -> None:
    assert mbox.parse_from_line(line) == expected


def test_placeholder_from_line_dates_are_no_internal_date() -> None:
    data = (
        b"From mboxrd@z Thu Jan  1 00:00:00 1970\nSubject: lore\n\n\n"
        b"From 0123abc Mon Sep 17 00:00:00 2001\nSubject: git format-patch\n\n"
    )
    assert [m.internal_date for m in mbox.read_mbox(io.BytesIO(data))] == [None, None]


def test_an_mbox_entry_reads_back_as_the_message_its_flags_and_date() -> None:
    raw = (
        b"From: a@example.org\r\nSubject: quoting\r\n\r\nFrom me\r\n>From you\r\n"
        b">>From them\r\nlast line without end"
    )
    flags = frozenset({"\\Seen", "\\Flagged", "\\Deleted", "$Forwarded"})
    when = datetime(2024, 12, 31, 23, 59, 58, tzinfo=UTC)
    entries = mbox.mbox_entry(raw, flags, when) + mbox.mbox_entry(b"\r\nno header\r\n", flags, when)
    back = list(mbox.read_mbox(io.BytesIO(entries)))
    assert [m.raw for m in back] == [
        raw.replace(b"\r\n", b"\n") + b"\n",
        b"\nno header\n",
    ]
    assert all(m.flags == flags and m.internal_date == when for m in back)


def test_folder_names_map_onto_safe_file_names_and_back() -> None:
    for name in ("INBOX", "Archive/2024", "a.b/c%d", "Entwürfe/日本", "~tilde", "../up", ".."):
        encoded = folders.file_name(name)
        assert "/" not in encoded and encoded not in (".", "..")
        assert not encoded.startswith(".")
        assert "/".join(folders.mailbox_levels(encoded)) == name
    assert folders.file_name("Archive/2024") == "Archive.2024"
    assert folders.file_name("Entwürfe") == "Entw&APw-rfe"  # Dovecot's on-disk mUTF-7
    assert folders.file_name("a.b") == "a%2eb"


@pytest.mark.parametrize(
    ("levels", "expected"),
    [
        (["Sent Items"], "Sent"),
        (["sent items", "2023"], "Sent/2023"),
        (["Deleted Items"], "Trash"),
        (["Spam"], "Junk"),
        (["[Gmail]", "Sent Mail"], "Sent"),
        (["DRAFTS"], "Drafts"),
        (["inbox", "Lists"], "INBOX/Lists"),
        (["Projects", "Sent"], "Projects/Sent"),
        (["Archive", "2024"], "Archive/2024"),
    ],
)
def test_special_folders_are_recognised_by_their_common_names(
    levels: list[str], expected: str
) -> None:
    assert folders.map_folder(levels, OURS) == expected


def test_special_use_attribute_wins_over_the_name() -> None:
    assert folders.map_folder(["Gesendet"], OURS, SpecialUse.SENT) == "Sent"
    assert folders.map_folder(["Whatever"], OURS, SpecialUse.JUNK) == "Junk"


def _deliver(path: Path, name: str, text: bytes, mtime: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text)
    os.utime(path, (mtime, mtime))


def test_maildir_tree_flags_keywords_and_dates(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    _deliver(root / "new" / "1700000000.M1P1.host", "", b"Subject: new\n\nx\n", 1_700_000_000)
    _deliver(root / "cur" / "1700000001.M1P1.host:2,FRSab", "", b"Subject: c\n\n", 1_700_000_001)
    _deliver(root / "tmp" / "1700000002.M1P1.host", "", b"Subject: tmp\n\n", 1_700_000_002)
    (root / "dovecot-keywords").write_text("0 $Label1\n1 Work\n")
    sent = root / ".Sent"
    _deliver(sent / "cur" / "1.M1P1.h:2,S", "", b"Subject: s\n\n", 1)
    _deliver(root / ".Archive.2024" / "cur" / "2.M2P2.h:2,T", "", b"Subject: a\n\n", 2)
    (root / ".notamaildir").mkdir()

    found = maildir.read_folders(root)
    assert [f.name for f in found] == ["INBOX", "Archive/2024", "Sent"]
    inbox = list(maildir.read_messages(found[0]))
    assert [m.path.name for m in inbox] == ["1700000000.M1P1.host", "1700000001.M1P1.host:2,FRSab"]
    assert inbox[0].flags == frozenset()
    assert inbox[1].flags == {"\\Flagged", "\\Answered", "\\Seen", "$Label1", "Work"}
    assert inbox[1].internal_date == datetime.fromtimestamp(1_700_000_001, UTC)
    assert [m.flags for m in maildir.read_messages(found[1])] == [{"\\Deleted"}]


def test_maildir_writer_writes_what_the_reader_reads(tmp_path: Path) -> None:
    writer = maildir.MaildirWriter(tmp_path / "out")
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    flags = frozenset({"\\Seen", "\\Draft", "Work", "$Forwarded"})
    writer.add("INBOX", b"Subject: x\r\n\r\nbody\r\n", flags, when)
    writer.add("Lists/a.b", b"Subject: y\r\n\r\n", frozenset(), when)
    writer.close()
    found = {f.name: f for f in maildir.read_folders(tmp_path / "out")}
    assert set(found) == {"INBOX", "Lists/a.b"}
    assert (found["Lists/a.b"].path / "maildirfolder").exists()
    (message,) = maildir.read_messages(found["INBOX"])
    assert message.flags == flags
    assert message.internal_date == when
    assert message.path.read_bytes() == b"Subject: x\n\nbody\n"
    assert message.path.stat().st_mode & 0o777 == 0o600


def test_a_directory_that_is_no_maildir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a Maildir"):
        maildir.read_folders(tmp_path)


def test_a_message_over_the_size_limit_is_read_past_not_held() -> None:
    data = (
        b"From a Mon Mar  3 10:00:00 2025\nSubject: big\n\n" + b"x" * 100 + b"\n\n"
        b"From a Mon Mar  3 10:00:00 2025\nSubject: small\n\n"
    )
    big, small = mbox.read_mbox(io.BytesIO(data), max_size=60)
    assert (big.raw, big.too_large) == (b"", 116)  # as in the file, separator included
    assert (small.raw, small.too_large) == (b"Subject: small\n", 0)


def test_mbox_directories_of_thunderbird_apple_mail_and_our_export(tmp_path: Path) -> None:
    from pillarbox.transfer.files import mbox_files

    entry = b"From a Mon Mar  3 10:00:00 2025\nSubject: x\n\n"
    for relative in (
        "tb/Inbox",
        "tb/Archives",
        "tb/Archives.sbd/2024",
        "tb/v1.2",
        "apple/Inbox.mbox/mbox",
        "apple/Projects.mbox/mbox",
        "apple/Projects.mbox/Old.mbox/mbox",
        "ours/Archive.2024.mbox",
        "ours/a%2eb.mbox",
    ):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(entry)
    (tmp_path / "tb" / "Inbox.msf").write_bytes(b'// <!-- <mdb:mork:z v="1.4"/> -->')
    (tmp_path / "apple" / "Inbox.mbox" / "Info.plist").write_bytes(b"<?xml")

    def names(directory: str) -> list[str]:
        return ["/".join(levels) for levels, _ in mbox_files(tmp_path / directory)]

    assert names("tb") == ["Archives", "Archives/2024", "Inbox", "v1.2"]
    assert names("apple") == ["Inbox", "Projects", "Projects/Old"]
    assert names("ours") == ["Archive/2024", "a.b"]
    assert folders.map_folder(["Archives", "2024"], OURS) == "Archive/2024"
    assert folders.map_folder(["Inbox"], OURS) == "INBOX"


def test_a_content_length_that_holds_makes_the_body_verbatim() -> None:
    body = b"\nFrom an unquoted line\n>From kept as is\n"
    data = (
        b"From a Mon Mar  3 10:00:00 2025\nSubject: cl\nContent-Length: %d\n\n" % len(body)
        + body
        + b"\nFrom b Mon Mar  3 10:00:00 2025\nSubject: wrong length\nContent-Length: 3\n\n"
        b"From here\n>From there\n"
    )
    first, second, third = mbox.read_mbox(io.BytesIO(data))
    assert first.raw == b"Subject: cl\n\n" + body
    # A Content-Length that does not end the message is ignored: the usual rules apply.
    assert second.raw == b"Subject: wrong length\n"
    assert third.raw == b"From there\n"
