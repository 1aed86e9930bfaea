"""Google Takeout's ``X-Gmail-Labels``: parsing (quoted, folded, RFC 2047 encoded, empty), the
Takeout fields taken out of the message, and labels → folders and flags."""

from __future__ import annotations

import pytest

from pillarbox.transfer.takeout import (
    ARCHIVE,
    DRAFTS,
    INBOX_FOLDER,
    JUNK,
    SENT,
    TRASH,
    Folder,
    category_keyword,
    has_labels,
    parse_labels,
    placement,
    split_message,
)

SEEN = "\\Seen"


@pytest.mark.parametrize(
    ("value", "labels"),
    [
        (
            b" Inbox,Important,Opened,Category Updates",
            ["Inbox", "Important", "Opened", "Category Updates"],
        ),
        # A label holding a comma is quoted; a quote in it doubled (CSV).
        (b' Sent,"Clients, big",Opened', ["Sent", "Clients, big", "Opened"]),
        (b' "He said ""hi""",x', ['He said "hi"', "x"]),
        # Folded (LF or CRLF, space or tab).
        (b" Inbox,\r\n Work/2024,\n\tStarred\r\n", ["Inbox", "Work/2024", "Starred"]),
        # The whole list in one encoded word, commas inside it (what Takeout writes).
        (b" =?UTF-8?Q?=C3=85pnet,Kategori:_Reklame?=", ["Åpnet", "Kategori: Reklame"]),
        (b" =?UTF-8?B?w4VwbmV0LFJlaXNlL05vcmdl?=", ["Åpnet", "Reise/Norge"]),
        # Adjacent encoded words across a fold: the white space between them is not text.
        (
            b" =?UTF-8?Q?Opened,Reise/Norge_?=\r\n =?UTF-8?Q?2024?=,Work",
            ["Opened", "Reise/Norge 2024", "Work"],
        ),
        (b' =?UTF-8?Q?"a,_=C3=A5",b?=', ["a, å", "b"]),
        # Plain and encoded mixed.
        (b" Inbox,=?UTF-8?Q?Entw=C3=BCrfe?=,Work", ["Inbox", "Entwürfe", "Work"]),
        # Raw UTF-8 (not encoded) is taken as it is.
        ("  Inbox,Café".encode(), ["Inbox", "Café"]),
        # Not decodable: the text as it stands.
        (b" =?no-such-charset?Q?x?=", ["=?no-such-charset?Q?x?="]),
        # Empty, blank, and empty items.
        (b"", []),
        (b"   \r\n", []),
        (b" Inbox,,  ,Opened,", ["Inbox", "Opened"]),
    ],
)
def test_parse_labels(value: bytes, labels: list[str]) -> None:
    assert parse_labels(value) == labels


def test_split_message_removes_the_takeout_fields_and_keeps_the_rest() -> None:
    raw = (
        b"X-GM-THRID: 1790000000000000001\r\n"
        b"X-Gmail-Labels: Inbox,\r\n Work\r\n"
        b"From: a@example.net\r\n"
        b"Subject: s\r\n"
        b"\r\n"
        b"X-Gmail-Labels: in the body, kept\r\n"
    )
    stripped, labels = split_message(raw)
    assert labels == ["Inbox", "Work"]
    assert stripped == (
        b"From: a@example.net\r\nSubject: s\r\n\r\nX-Gmail-Labels: in the body, kept\r\n"
    )
    assert split_message(b"Subject: none\n\nbody\n") == (b"Subject: none\n\nbody\n", [])
    assert split_message(b"X-Gmail-Labels: Spam\n") == (b"", ["Spam"])  # all header


def test_has_labels_looks_at_the_header_only() -> None:
    assert has_labels(b"X-GM-THRID: 1\nx-gmail-labels: Inbox\n\nbody\n")
    assert not has_labels(b"Subject: s\n\nX-Gmail-Labels: Inbox\n")


@pytest.mark.parametrize(
    ("label", "keyword"),
    [
        ("Category Promotions", "$Category-Promotions"),
        ("category social", "$Category-Social"),
        ("Category Purchases", "$Category-Purchases"),
        ("Category Two Words", None),
        ("Categories", None),
        ("Inbox", None),
    ],
)
def test_category_keyword(label: str, keyword: str | None) -> None:
    assert category_keyword(label) == keyword


@pytest.mark.parametrize(
    ("labels", "folders", "flags"),
    [
        (["Inbox", "Opened"], [INBOX_FOLDER], {SEEN}),
        (["Inbox", "Unread"], [INBOX_FOLDER], set()),
        (["inbox", "UNREAD", "starred"], [INBOX_FOLDER], {"\\Flagged"}),
        (
            ["Inbox", "Important", "Category Updates", "Opened"],
            [INBOX_FOLDER],
            {SEEN, "$Important", "$Category-Updates"},
        ),
        (["Sent", "Opened"], [SENT], {SEEN}),
        (["Drafts"], [DRAFTS], {SEEN, "\\Draft"}),
        # Several folder labels: one copy in each, in label order, each once.
        (
            ["Inbox", "Work/2024", "Sent", "Work/2024", "Clients, big"],
            [INBOX_FOLDER, Folder(("Work", "2024")), SENT, Folder(("Clients, big",))],
            {SEEN},
        ),
        # Spam and Trash exclude every other folder; spam never reaches INBOX.
        (["Spam", "Inbox", "Unread", "Work"], [JUNK], set()),
        (["Trash", "Work", "Starred"], [TRASH], {SEEN, "\\Flagged"}),
        (["Trash", "Spam"], [JUNK], {SEEN}),
        (["Spam", "Trash"], [JUNK], {SEEN}),
        # Archived: no folder label at all ("Archived" itself is not one).
        ([], [ARCHIVE], {SEEN}),
        (["Opened", "Archived"], [ARCHIVE], {SEEN}),
        (["Important", "Unread", "Category Forums"], [ARCHIVE], {"$Important", "$Category-Forums"}),
        (["Chat", "Opened"], [Folder(("Chat",))], {SEEN}),
    ],
)
def test_placement(labels: list[str], folders: list[Folder], flags: set[str]) -> None:
    placed = placement(labels)
    assert list(placed.folders) == folders
    assert placed.flags == frozenset(flags)
