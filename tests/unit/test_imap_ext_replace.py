"""RFC 8508 REPLACE on the session core with a real SQLite store: its grammar (§5) as a table,
and what transcripts cannot show — a literal over APPENDLIMIT, the quota judged on the net
change, and a message expunged by another session while this one still shows it."""

# ruff: noqa: F811 -- ``store`` is the fixture imported from test_imap_session, used by name.
from __future__ import annotations

from pathlib import Path

import pytest
from test_imap_session import USER, deliver, make_wire, store  # noqa: F401

from pillarbox.imap import commands as c
from pillarbox.imap.errors import ParseError
from pillarbox.imap.lexer import (
    ContinueLiteral,
    Event,
    Lexer,
    LexerLimits,
    Rejected,
    RejectReason,
)
from pillarbox.imap.parser import parse_command
from pillarbox.imap.sequence import SequenceSet
from pillarbox.store.interface import Store
from pillarbox.store.types import INBOX
from pillarbox.testing.live import TEST_PASSWORD

# (command line, the command it parses to): RFC 8508 §5
# replace = "REPLACE" SP seq-number SP mailbox append-message; uid-replace = "UID" SP replace.
GRAMMAR = [
    (
        b"A003 REPLACE 4 Drafts (\\Seen \\Draft) {3}\r\nabc",
        c.Replace(
            "A003",
            SequenceSet.from_numbers([4]),
            "Drafts",
            c.AppendMessage(b"abc", ("\\Seen", "\\Draft")),
        ),
    ),
    (
        b"B001 UID REPLACE 2000 Drafts {3+}\r\nxyz",
        c.Replace(
            "B001", SequenceSet.from_numbers([2000]), "Drafts", c.AppendMessage(b"xyz"), True
        ),
    ),
    (
        b"a REPLACE * INBOX ~{2}\r\n\x00y",
        c.Replace("a", SequenceSet.parse(b"*"), INBOX, c.AppendMessage(b"\x00y", binary=True)),
    ),
    (
        b"a REPLACE 1 x UTF8 (~{1}\r\nz)",
        c.Replace(
            "a", SequenceSet.from_numbers([1]), "x", c.AppendMessage(b"z", (), None, True, True)
        ),
    ),
]

BAD = [
    (b"a REPLACE 1:2 Drafts {1}\r\nx", "expected 'SP'"),  # one seq-number, not a set
    (b"a REPLACE 1,2 Drafts {1}\r\nx", "expected 'SP'"),
    (b"a REPLACE $ Drafts {1}\r\nx", "expected a number"),
    (b"a REPLACE 0 Drafts {1}\r\nx", "non-zero"),
    (b"a REPLACE 1 Drafts", "expected 'SP'"),
    (b"a REPLACE 1 Drafts {1}\r\nx {1}\r\ny", "unexpected characters"),  # §4.7: one message
    (b"a UID REPLACE 1 Drafts (\\Seen)", "expected 'SP'"),
]


@pytest.mark.parametrize(("line", "command"), GRAMMAR)
def test_replace_grammar(line: bytes, command: c.Replace) -> None:
    assert parse_command(line) == command
    assert parse_command(c.format_command(command)[:-2]) == command


@pytest.mark.parametrize(("line", "fragment"), BAD)
def test_replace_grammar_errors(line: bytes, fragment: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_command(line)
    assert info.value.condition == "BAD"
    assert fragment in info.value.message


@pytest.mark.parametrize("verb", [b"REPLACE 1", b"UID REPLACE 7", b"replace 1"])
def test_replace_literal_has_the_append_limit(verb: bytes) -> None:
    """APPENDLIMIT (RFC 7889) bounds the message of a REPLACE as of an APPEND: a literal
    over it is refused before it is read, with [TOOBIG]."""
    lexer = Lexer(limits=LexerLimits(max_literal=10, max_append_literal=100))
    lexer.receive_data(b"a " + verb + b" Drafts {50}\r\n")
    assert _drain(lexer) == [ContinueLiteral(50)]
    lexer.receive_data(b"x" * 50 + b"\r\nb " + verb + b" Drafts {101}\r\n")
    assert _drain(lexer)[-1] == Rejected("b", RejectReason.LITERAL_TOO_LARGE, 101, True)


def _drain(lexer: Lexer) -> list[Event]:
    events = []
    while (event := lexer.next_event()) is not None:
        events.append(event)
    return events


async def _inbox_uids(store: Store) -> list[str]:
    account = await store.get_account(USER)
    assert account is not None
    inbox = await store.get_mailbox(account.id, INBOX)
    return [str(record.uid) for record in await store.list_messages(inbox.id)]


async def test_quota_is_judged_on_the_net_change(store: Store, tmp_path: Path) -> None:
    """The store replaces in one transaction, so the quota sees the net change (RFC 9208
    §4.3.1): at the message limit a REPLACE fits, as it adds no message; one that adds
    octets past the size limit is NO [OVERQUOTA], and the old message stays (RFC 8508 §3.4:
    nothing changes on failure)."""
    await deliver(store, "one")
    account = await store.get_account(USER)
    assert account is not None
    await store.set_quota(account.id, None, 1)
    wire = make_wire(store, tmp_path)
    await wire.login(USER, TEST_PASSWORD)
    await wire.send("s SELECT INBOX\r\n")
    out = await wire.send("a REPLACE 1 INBOX {8+}\r\nSubject:\r\n")
    assert out.endswith("* 1 EXPUNGE\r\na OK REPLACE completed\r\n")
    assert await _inbox_uids(store) == ["2"]
    used = (await store.quota_usage(account.id)).bytes_used
    await store.set_quota(account.id, used, 1)
    out = await wire.send("b REPLACE 1 INBOX {10+}\r\nSubject: \r\n")
    assert out == "b NO [OVERQUOTA] Over quota\r\n"
    assert await _inbox_uids(store) == ["2"]


async def test_message_expunged_meanwhile_is_not_replaced(store: Store, tmp_path: Path) -> None:
    """Another session expunges the message this one still shows: the new message is removed
    again and the REPLACE is NO [EXPUNGEISSUED], the EXPUNGE announced before it."""
    await deliver(store, "one")
    await deliver(store, "two")
    wire = make_wire(store, tmp_path)
    await wire.login(USER, TEST_PASSWORD)
    await wire.send("s SELECT INBOX\r\n")
    other = make_wire(store, tmp_path)
    await other.login(USER, TEST_PASSWORD)
    await other.send("s SELECT INBOX\r\nt UID STORE 1 +FLAGS.SILENT (\\Deleted)\r\nu EXPUNGE\r\n")
    out = await wire.send("a UID REPLACE 1 INBOX {8+}\r\nSubject:\r\n")
    assert out == ("* 1 EXPUNGE\r\na NO [EXPUNGEISSUED] The message to replace was expunged\r\n")
    assert await _inbox_uids(store) == ["2"]  # the replacement (UID 3) removed again
