"""The IMAP session core over a real SQLite store: the state tables, framing and pipelining,
limits, change hints, and the cases transcripts cannot show (quota rollback, deleting the
selected mailbox, byte-at-a-time input)."""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pillarbox import provisioning
from pillarbox.imap import commands as c
from pillarbox.imap.lexer import LexerLimits
from pillarbox.imap.responses import Condition
from pillarbox.imap.session import (
    _HANDLERS,
    ALLOWED,
    TRANSITIONS,
    Action,
    State,
    normalise_line_endings,
)
from pillarbox.mail.parse import parse_message
from pillarbox.store.interface import Store
from pillarbox.store.open import open_store
from pillarbox.store.types import INBOX, Change, ChangeKind, DeliveryTarget, FlagOp
from pillarbox.testing.imapcore import CoreWire, core_session
from pillarbox.testing.live import TEST_PASSWORD, loopback_config

USER = "alice@example.org"
NOW = 1_700_000_000.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    config = loopback_config(tmp_path)
    store = open_store("sqlite:", tmp_path)
    await store.open()
    await provisioning.add_domain(store, "example.org")
    await provisioning.add_account(store, config, USER, TEST_PASSWORD)
    yield store
    await store.close()


def make_wire(store: Store, tmp_path: Path, **imap: object) -> CoreWire:
    config = loopback_config(tmp_path)
    config = dataclasses.replace(config, imap=dataclasses.replace(config.imap, **imap))
    return CoreWire(core_session(store, config, now=NOW), now=NOW)


async def deliver(store: Store, subject: str) -> int:
    raw = f"Subject: {subject}\r\n\r\nbody\r\n".encode()
    account = await store.get_account(USER)
    assert account is not None
    [result] = await store.deliver(raw, parse_message(raw), [DeliveryTarget(account.id)])
    assert result.record is not None
    return result.record.uid


# -- the tables ---------------------------------------------------------------------------


def test_every_command_is_handled_or_refused() -> None:
    every = set(typing.get_args(c.Command))
    allowed = set().union(*ALLOWED.values())
    assert allowed == every
    assert allowed == set(_HANDLERS)
    assert ALLOWED[State.LOGOUT] == frozenset()


def test_transitions_only_lead_between_known_states() -> None:
    for (state, command, _condition), target in TRANSITIONS.items():
        assert command in ALLOWED[state]
        assert target is not state
    assert TRANSITIONS[(State.SELECTED, c.Select, Condition.NO)] is State.AUTHENTICATED


def test_normalise_line_endings() -> None:
    assert normalise_line_endings(b"a\nb\r\nc") == b"a\r\nb\r\nc\r\n"
    assert normalise_line_endings(b"a\r\n") == b"a\r\n"
    assert normalise_line_endings(b"x\r") == b"x\r\r\n"  # a bare CR is data, kept
    assert normalise_line_endings(b"") == b""


# -- framing, pipelining, limits ----------------------------------------------------------


async def test_pipelined_commands_are_answered_in_order(store: Store, tmp_path: Path) -> None:
    wire = make_wire(store, tmp_path)
    await wire.login(USER, TEST_PASSWORD)
    out = await wire.send("a NOOP\r\nb SELECT INBOX\r\nc FETCH 1:* FLAGS\r\nd LOGOUT\r\n")
    tags = [line.split(" ")[0] for line in out.splitlines() if not line.startswith("*")]
    assert tags == ["a", "b", "c", "d"]
    assert "c BAD Message sequence number out of range" in out  # empty mailbox, RFC 9051 §9
    assert wire.action is Action.CLOSE and wire.session.state is State.LOGOUT


async def test_byte_at_a_time_input_gives_the_same_output(tmp_path: Path) -> None:
    script = (
        f'a LOGIN {USER} "{TEST_PASSWORD}"\r\nb SELECT INBOX\r\n'
        "c APPEND INBOX {9}\r\nSubject:x\r\nd FETCH 1:* (UID FLAGS BODY.PEEK[HEADER])\r\n"
    ).encode()
    outputs = []
    for run, size in enumerate((len(script), 1)):
        directory = tmp_path / str(run)
        config = loopback_config(directory)
        store = open_store("sqlite:", directory)
        await store.open()
        try:
            await provisioning.add_domain(store, "example.org")
            await provisioning.add_account(store, config, USER, TEST_PASSWORD)
            await deliver(store, "one")
            wire = make_wire(store, directory)
            pieces = [await wire.send(script[i : i + size]) for i in range(0, len(script), size)]
        finally:
            await store.close()
        masked = re.sub(r"(UIDVALIDITY|APPENDUID) \d+", r"\1 n", "".join(pieces))
        outputs.append(re.sub(r"MAILBOXID \(\S+\)", "MAILBOXID (id)", masked))
    assert outputs[0] == outputs[1]
    assert "+ Ready for literal data" in outputs[0] and "d OK FETCH completed" in outputs[0]


async def test_non_synchronising_literal_over_the_limit_is_skipped(
    store: Store, tmp_path: Path
) -> None:
    wire = make_wire(store, tmp_path)
    await wire.login(USER, TEST_PASSWORD)
    big = "x" * 70_000
    out = await wire.send(f"a CREATE {{70000+}}\r\n{big}\r\nb NOOP\r\n")
    assert out == ("a BAD [TOOBIG] Non-synchronizing literal too large\r\nb OK NOOP completed\r\n")


async def test_literal_too_large_to_skip_closes(store: Store, tmp_path: Path) -> None:
    wire = make_wire(store, tmp_path)
    out = await wire.send("a CREATE {99999999+}\r\n")
    assert out == "* BYE [TOOBIG] Literal too large, closing connection\r\n"
    assert wire.action is Action.CLOSE


async def test_append_limit_comes_from_configuration(store: Store, tmp_path: Path) -> None:
    wire = make_wire(store, tmp_path, max_literal_size=1000)
    await wire.login(USER, TEST_PASSWORD)
    assert "APPENDLIMIT=1000" in await wire.send("a CAPABILITY\r\n")
    assert await wire.send("b APPEND INBOX {1001}\r\n") == "b NO [TOOBIG] Literal too large\r\n"


async def test_end_of_stream_closes(store: Store, tmp_path: Path) -> None:
    wire = make_wire(store, tmp_path)
    assert await wire.send(b"") == ""
    assert wire.action is Action.CLOSE


async def test_a_client_not_logged_in_by_the_login_deadline_gets_bye(
    store: Store, tmp_path: Path
) -> None:
    wire = make_wire(store, tmp_path, login_timeout=60.0)
    session, start = wire.session, wire.now
    assert session.deadline() == start + 60
    wire.now += 50
    await wire.send("a NOOP\r\n")
    assert session.deadline() == start + 60  # input does not move it
    assert session.handle_timeout(start + 59) is None
    assert session.handle_timeout(start + 60) == b"* BYE No login in time, disconnecting\r\n"
    assert session.state is State.LOGOUT


async def test_deadline_and_shutdown(store: Store, tmp_path: Path) -> None:
    wire = make_wire(store, tmp_path)
    session = wire.session
    await wire.login(USER, TEST_PASSWORD)
    assert session.deadline() == wire.now + 1800  # logged in: the idle timer alone
    assert session.handle_timeout(wire.now + 1799) is None
    wire.now += 1000
    await wire.send("a NOOP\r\n")
    assert session.deadline() == wire.now + 1800  # any input resets the timer
    assert session.shutdown() == b"* BYE [UNAVAILABLE] Server shutting down\r\n"


# -- the selected mailbox and change hints -------------------------------------------------


async def test_hints_bring_changes_to_the_next_command(store: Store, tmp_path: Path) -> None:
    await deliver(store, "one")
    wire = make_wire(store, tmp_path)
    await wire.login(USER, TEST_PASSWORD)
    await wire.send("s SELECT INBOX\r\n")
    await deliver(store, "two")
    # Without a hint a FETCH does not look (only NOOP, CHECK and IDLE poll) ...
    out = await wire.send("f1 FETCH 1 UID\r\n")
    assert "EXISTS" not in out
    # ... with one, the next command takes the change in and announces it.
    account = await store.get_account(USER)
    assert account is not None
    inbox = await store.get_mailbox(account.id, INBOX)
    wire.session.notify(Change(account.id, inbox.id + 1000, ChangeKind.EXISTS, 9))
    assert "EXISTS" not in await wire.send("f2 FETCH 1 UID\r\n")  # another mailbox's hint
    wire.session.notify(Change(account.id, inbox.id, ChangeKind.EXISTS, 9))
    out = await wire.send("f3 FETCH 1 UID\r\n")
    assert out == "* 1 FETCH (UID 1)\r\n* 2 EXISTS\r\n* 2 RECENT\r\nf3 OK FETCH completed\r\n"


async def test_an_append_after_an_unannounced_delivery_announces_both(
    store: Store, tmp_path: Path
) -> None:
    """A delivery commits while this session works (its hint not yet taken in), then the
    session APPENDs: its own message gets the next UID, above the delivery's. The view must
    take both in, in UID order — it once joined its own message first and then took the lower
    UID for one already expunged, so the delivered message never reached this device."""
    await deliver(store, "one")
    wire = make_wire(store, tmp_path)
    await wire.login(USER, TEST_PASSWORD)
    await wire.send("s SELECT INBOX\r\n")
    assert await deliver(store, "two") == 2
    out = await wire.send("a APPEND INBOX {16+}\r\nSubject: own\r\n\r\n\r\n")
    assert "* 3 EXISTS\r\n" in out and "[APPENDUID " in out, out
    out = await wire.send("n NOOP\r\n")
    assert await wire.send("f FETCH 1:* (UID)\r\n") == (
        "* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 2)\r\n* 3 FETCH (UID 3)\r\nf OK FETCH completed\r\n"
    )


async def test_a_store_answers_flags_another_device_set_before_its_hint_came(
    store: Store, tmp_path: Path
) -> None:
    """RFC 9051 §6.4.6: STORE answers with each message's flags as they are. Another device
    set \\Seen on message 1 and its hint has not arrived (another PostgreSQL node's is on its
    way); this session's STORE +FLAGS (\\Seen) changes nothing in the store. Its answer
    showed the flags the view still held, without the \\Seen the client just asked for (the
    hint's FETCH followed later); now the view reads the store first, and the hint brings
    nothing more (RFC 9051 §7.5.2)."""
    await deliver(store, "one")
    wire = make_wire(store, tmp_path)
    await wire.login(USER, TEST_PASSWORD)
    await wire.send("s SELECT INBOX\r\n")
    account = await store.get_account(USER)
    assert account is not None
    inbox = await store.get_mailbox(account.id, INBOX)
    await store.store_flags(inbox.id, [1], FlagOp.ADD, frozenset({"\\Seen"}))
    out = await wire.send("t STORE 1 +FLAGS (\\Seen)\r\n")
    assert out == "* 1 FETCH (UID 1 FLAGS (\\Recent \\Seen))\r\nt OK STORE completed\r\n"
    status = await store.mailbox_status(inbox.id)
    wire.session.notify(
        Change(account.id, inbox.id, ChangeKind.FLAGS, status.mailbox.highestmodseq)
    )
    assert await wire.send("n NOOP\r\n") == "n OK NOOP completed\r\n"


async def test_idle_pushes_only_when_hinted(store: Store, tmp_path: Path) -> None:
    wire = make_wire(store, tmp_path)
    await wire.login(USER, TEST_PASSWORD)
    await wire.send("s SELECT INBOX\r\n")
    assert await wire.send("i IDLE\r\n") == "+ idling\r\n"
    assert wire.session.idling
    await deliver(store, "new")
    assert await wire.session.push_updates(wire, wire.now) is Action.CONTINUE
    assert wire.data == b""
    account = await store.get_account(USER)
    assert account is not None
    inbox = await store.get_mailbox(account.id, INBOX)
    wire.session.notify(Change(account.id, inbox.id, ChangeKind.EXISTS, 2))
    await wire.session.push_updates(wire, wire.now)
    assert bytes(wire.data) == b"* 1 EXISTS\r\n* 1 RECENT\r\n"
    wire.data.clear()
    assert await wire.send("done\r\n") == "i OK IDLE terminated\r\n"


async def test_deleting_the_selected_mailbox(store: Store, tmp_path: Path) -> None:
    wire = make_wire(store, tmp_path)
    await wire.login(USER, TEST_PASSWORD)
    await wire.send("a CREATE Box\r\nb SELECT Box\r\n")
    assert await wire.send("c DELETE Box\r\n") == "c OK DELETE completed\r\n"
    assert wire.session.state is State.AUTHENTICATED
    other = make_wire(store, tmp_path)
    await other.login(USER, TEST_PASSWORD)
    await wire.send("d CREATE Box2\r\ne SELECT Box2\r\n")
    await other.send("x DELETE Box2\r\n")
    out = await wire.send("f NOOP\r\n")
    assert out == "* BYE The selected mailbox was deleted by another session\r\n"
    assert wire.action is Action.CLOSE


async def test_a_hint_that_any_mailbox_may_be_gone_ends_an_idle_on_a_deleted_one(
    store: Store, tmp_path: Path
) -> None:
    """After lost notifications the PostgreSQL feed re-hints each mailbox that still exists
    and, per account, ``(account, 0, MAILBOXES)``: a deleted mailbox has no row to hint by.
    The session idling on it must take that as "look whether yours is still there" and end
    with the same BYE as when the deletion's own hint arrives — not wait for a command."""
    wire = make_wire(store, tmp_path)
    await wire.login(USER, TEST_PASSWORD)
    await wire.send("a CREATE Box\r\nb SELECT Box\r\n")
    assert await wire.send("i IDLE\r\n") == "+ idling\r\n"
    account = await store.get_account(USER)
    assert account is not None
    await store.delete_mailbox((await store.get_mailbox(account.id, "Box")).id)
    inbox = await store.get_mailbox(account.id, INBOX)
    wire.session.notify(Change(account.id, inbox.id, ChangeKind.MAILBOXES, 0))  # not ours
    assert await wire.session.push_updates(wire, wire.now) is Action.CONTINUE
    assert wire.data == b""
    wire.session.notify(Change(account.id, 0, ChangeKind.MAILBOXES, 0))
    assert await wire.session.push_updates(wire, wire.now) is Action.CLOSE
    assert bytes(wire.data) == b"* BYE The selected mailbox was deleted by another session\r\n"


async def test_multiappend_is_all_or_nothing(store: Store, tmp_path: Path) -> None:
    account = await store.get_account(USER)
    assert account is not None
    await store.set_quota(account.id, None, 1)
    wire = make_wire(store, tmp_path)
    await wire.login(USER, TEST_PASSWORD)
    out = await wire.send("a APPEND INBOX {3+}\r\nA:b {3+}\r\nA:c\r\n")
    assert out == "a NO [OVERQUOTA] Over quota\r\n"
    inbox = await store.get_mailbox(account.id, INBOX)
    assert await store.list_messages(inbox.id) == []


async def test_fetch_sets_seen_once_and_reports_it(store: Store, tmp_path: Path) -> None:
    await deliver(store, "one")
    wire = make_wire(store, tmp_path)
    await wire.login(USER, TEST_PASSWORD)
    await wire.send("e ENABLE IMAP4rev2\r\ns SELECT INBOX\r\n")
    out = await wire.send("f UID FETCH 1 BODY[TEXT]\r\n")
    assert out == (
        "* 1 FETCH (UID 1 BODY[TEXT] {6}\r\nbody\r\n FLAGS (\\Seen))\r\nf OK FETCH completed\r\n"
    )
    again = await wire.send("g FETCH 1 (BODY[TEXT])\r\n")
    assert "FLAGS" not in again  # already \Seen: nothing changed, nothing to report


async def test_examine_never_sets_seen(store: Store, tmp_path: Path) -> None:
    await deliver(store, "one")
    wire = make_wire(store, tmp_path)
    await wire.login(USER, TEST_PASSWORD)
    await wire.send("s EXAMINE INBOX\r\n")
    out = await wire.send("f FETCH 1 (RFC822.TEXT)\r\n")
    assert "\\Seen" not in out
    account = await store.get_account(USER)
    assert account is not None
    inbox = await store.get_mailbox(account.id, INBOX)
    [record] = await store.list_messages(inbox.id)
    assert record.flags == frozenset()


async def test_authenticate_cancel_and_lexer_settings(store: Store, tmp_path: Path) -> None:
    wire = make_wire(store, tmp_path, max_line_length=100)
    assert wire.session.settings.lexer == LexerLimits(
        max_line=100,
        max_append_literal=wire.session.settings.lexer.max_append_literal,
        max_command=wire.session.settings.lexer.max_command,
    )
    assert await wire.send("a AUTHENTICATE PLAIN\r\n") == "+ \r\n"
    assert await wire.send("*\r\n") == "a BAD Authentication cancelled\r\n"
    out = await wire.send("b NOOP " + "x" * 200 + "\r\n")
    assert out == "b BAD Command line too long\r\n"
