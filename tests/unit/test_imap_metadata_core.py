"""METADATA (RFC 5464) on the parser and the session core over a real SQLite store: the
command table (both option placements, entry lists with and without parentheses, values as
quoted, literal and literal8), what DEPTH selects, the configuration's limits and their bounds,
and NOTIFY's metadata events where transcripts cannot reach: a mailbox created or renamed
after NOTIFY SET."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox import provisioning
from pillarbox.errors import ConfigError
from pillarbox.imap import commands as c
from pillarbox.imap.errors import ParseError
from pillarbox.imap.metadata import select
from pillarbox.imap.parser import parse_command
from pillarbox.net.imap import session_settings
from pillarbox.store.interface import Store
from pillarbox.store.open import open_store
from pillarbox.store.types import Change, ChangeKind, MetadataLimits
from pillarbox.testing.imapcore import CoreWire, core_session
from pillarbox.testing.live import TEST_PASSWORD, loopback_config

USER = "alice@example.org"


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (
            b'a GETMETADATA "" /shared/comment',
            c.GetMetadata("a", "", ("/shared/comment",)),
        ),
        (  # §5 ABNF: options before the mailbox; names are case-insensitive (§3.2)
            b"a GETMETADATA (MAXSIZE 1024 DEPTH infinity) inbox (/Shared/Comment /private)",
            c.GetMetadata("a", "INBOX", ("/shared/comment", "/private"), 1024, None),
        ),
        (  # the §4.2.1 example: options after the mailbox
            b'a GETMETADATA "INBOX" (DEPTH 1) (/private/filters/values)',
            c.GetMetadata("a", "INBOX", ("/private/filters/values",), None, 1),
        ),
        (  # the §4.4.1 example: entries without parentheses
            b"a GETMETADATA INBOX /private/comment /shared/comment",
            c.GetMetadata("a", "INBOX", ("/private/comment", "/shared/comment")),
        ),
        (
            b"a SETMETADATA INBOX (/private/comment {5}\r\nab\r\nc"
            b' /shared/comment NIL /shared/x "y")',
            c.SetMetadata(
                "a",
                "INBOX",
                (("/private/comment", b"ab\r\nc"), ("/shared/comment", None), ("/shared/x", b"y")),
            ),
        ),
        (  # RFC 5464 §5 value = nstring / literal8: binary data with NUL
            b'a SETMETADATA "" (/private/vendor/vendor.example/k ~{3}\r\n\x00\xff\x01)',
            c.SetMetadata("a", "", (("/private/vendor/vendor.example/k", b"\x00\xff\x01"),)),
        ),
    ],
)
def test_commands(line: bytes, command: c.Command) -> None:
    assert parse_command(line) == command


@pytest.mark.parametrize(
    "line",
    [
        b"a GETMETADATA INBOX",
        b"a GETMETADATA INBOX ()",
        b"a GETMETADATA (DEPTH 1) (DEPTH 1) INBOX /private",
        b"a GETMETADATA (MAXSIZE -1) INBOX /private",
        b"a GETMETADATA INBOX /private/comment\x01",
        b"a GETMETADATA INBOX /PRIVATE/Caf\xc3\xa9",
        b"a SETMETADATA INBOX ()",
        b'a SETMETADATA INBOX (/private/comment "x"',
        b"a SETMETADATA INBOX (/private/comment {2}\r\na\x00)",  # NUL only in literal8
        b'a SETMETADATA INBOX (/private/vendor/x/y "x" /shared "y")',
    ],
)
def test_malformed_commands_are_bad(line: bytes) -> None:
    with pytest.raises(ParseError) as error:
        parse_command(line)
    assert error.value.condition == "BAD"


def test_depth_selects_levels_below_each_requested_name() -> None:
    entries = {"/a/b": b"1", "/a/b/c": b"2", "/a/b/c/d": b"3", "/a/bc": b"4"}
    assert select(entries, ["/a/b"], 0) == [("/a/b", b"1")]
    assert select(entries, ["/a/b"], 1) == [("/a/b", b"1"), ("/a/b/c", b"2")]
    assert select(entries, ["/a/b", "/a/b/c"], None) == [
        ("/a/b", b"1"),
        ("/a/b/c", b"2"),
        ("/a/b/c/d", b"3"),
    ]
    assert select(entries, ["/a/bc"], None) == [("/a/bc", b"4")]  # no child of "/a/b"
    assert select(entries, ["/a"], 1) == [("/a", None), ("/a/b", b"1"), ("/a/bc", b"4")]


def test_limits_come_from_the_configuration_within_the_rfc_minimums() -> None:
    imap = cfg.ImapSection(
        metadata_max_value_size=200_000, metadata_max_entries=10, metadata_max_total=5
    )
    settings = session_settings(imap)
    assert settings.metadata_limits == MetadataLimits(max_entries=10, max_total=5)
    # A value up to the limit gets through the framer, to be answered by SETMETADATA.
    assert settings.lexer.max_literal == 200_000
    assert session_settings(cfg.ImapSection()).lexer.max_literal == 65536
    for change, key in [
        ({"metadata_max_value_size": 1023}, "imap.metadata_max_value_size"),
        ({"metadata_max_entries": 9}, "imap.metadata_max_entries"),
        ({"metadata_max_total": 0}, "imap.metadata_max_total"),
        ({"metadata_admin": "postmaster at example.org"}, "imap.metadata_admin"),
    ]:
        with pytest.raises(ConfigError) as error:
            cfg.from_mapping({"imap": change})
        assert error.value.key == key
    admin = cfg.from_mapping({"imap": {"metadata_admin": "mailto:postmaster@example.org"}})
    assert admin.imap.metadata_admin == "mailto:postmaster@example.org"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = open_store("sqlite:", tmp_path)
    await store.open()
    await provisioning.add_domain(store, "example.org")
    await provisioning.add_account(store, loopback_config(tmp_path), USER, TEST_PASSWORD)
    yield store
    await store.close()


@pytest.fixture
async def wire(store: Store, tmp_path: Path) -> CoreWire:
    wire = CoreWire(core_session(store, loopback_config(tmp_path), now=0.0))
    await wire.login(USER, TEST_PASSWORD)
    return wire


async def test_selected_state_and_enable(wire: CoreWire) -> None:
    assert "b OK" in await wire.send("b SELECT INBOX\r\n")
    out = await wire.send("c GETMETADATA INBOX /private/comment\r\n")
    assert out == "* METADATA INBOX (/private/comment NIL)\r\nc OK GETMETADATA completed\r\n"
    # Unsolicited METADATA only through NOTIFY: ENABLE METADATA enables nothing (RFC 5161 §3.1).
    assert await wire.send("d ENABLE METADATA\r\n") == "d BAD Command not valid in this state\r\n"
    assert "e OK" in await wire.send("e UNSELECT\r\n")
    assert await wire.send("f ENABLE METADATA\r\n") == "* ENABLED\r\nf OK ENABLE completed\r\n"


async def test_notify_follows_mailboxes_created_and_renamed_later(
    wire: CoreWire, store: Store
) -> None:
    account = await store.get_account(USER)
    assert account is not None
    out = await wire.send("b NOTIFY SET (subtree Work (MailboxMetadataChange MailboxName))\r\n")
    assert out == "b OK NOTIFY completed\r\n"
    limits = MetadataLimits(max_entries=10, max_total=10_000)
    # Another client creates Work/2026 and annotates it: both hints arrive together.
    created = await store.create_mailbox(account.id, "Work/2026")
    await store.set_metadata(account.id, created.id, {"/shared/comment": b"new"}, limits)
    work = await store.get_mailbox(account.id, "Work")
    wire.session.notify(Change(account.id, work.id, ChangeKind.MAILBOXES, 0))
    out = await wire.hint(Change(account.id, created.id, ChangeKind.METADATA, 0))
    assert out.splitlines() == [
        '* LIST (\\HasChildren) "/" Work',
        '* LIST (\\HasNoChildren) "/" Work/2026',
        "* METADATA Work/2026 /shared/comment",
    ]
    # Renamed out of the watched subtree: its entries go with it, and are no longer watched.
    await store.rename_mailbox(account.id, "Work/2026", "Old")
    out = await wire.hint(Change(account.id, created.id, ChangeKind.MAILBOXES, 0))
    # (A child renamed to the top level is no "renamed with its parent": reported, §5.4.)
    assert out == '* LIST (\\HasNoChildren) "/" Old (OLDNAME (Work/2026))\r\n'
    await store.set_metadata(account.id, created.id, {"/shared/comment": b"moved"}, limits)
    assert await wire.hint(Change(account.id, created.id, ChangeKind.METADATA, 0)) == ""
    # A watched mailbox's unchanged rewrite is no event; a removal always is (§5.6).
    await store.set_metadata(account.id, work.id, {"/private/a": b"1"}, limits)
    assert "/private/a" in await wire.hint(Change(account.id, work.id, ChangeKind.METADATA, 0))
    await store.set_metadata(account.id, work.id, {"/private/a": b"1"}, limits)
    assert await wire.hint(Change(account.id, work.id, ChangeKind.METADATA, 0)) == ""
    await store.set_metadata(account.id, work.id, {"/private/a": None}, limits)
    out = await wire.hint(Change(account.id, work.id, ChangeKind.METADATA, 0))
    assert out == "* METADATA Work /private/a\r\n"


async def test_utf8_values_are_quoted_once_utf8_is_enabled(wire: CoreWire) -> None:
    comment = "Caf\u00e9".encode()
    out = await wire.send("b SETMETADATA INBOX (/private/comment {5}\r\n")
    assert out == "+ Ready for literal data\r\n"
    assert await wire.send(comment.decode() + ")\r\n") == "b OK SETMETADATA completed\r\n"
    out = await wire.send("c GETMETADATA INBOX /private/comment\r\n")
    assert (
        out
        == "* METADATA INBOX (/private/comment {5}\r\nCaf\u00e9)\r\nc OK GETMETADATA completed\r\n"
    )
    assert "d OK" in await wire.send("d ENABLE UTF8=ACCEPT\r\n")
    out = await wire.send("e GETMETADATA INBOX /private/comment\r\n")
    assert (
        out == '* METADATA INBOX (/private/comment "Caf\u00e9")\r\ne OK GETMETADATA completed\r\n'
    )
