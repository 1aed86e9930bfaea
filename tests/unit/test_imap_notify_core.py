"""NOTIFY (RFC 5465) on the session core over a real SQLite store: the refusal table of
:func:`pillarbox.imap.notify.plan`, when the session wants pushes, and what transcripts cannot
show — INBOX renamed (§5.4), the client's own changes not echoed (§5), no MessageNew FETCH for
its own APPEND (§5.2)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pillarbox import provisioning
from pillarbox.imap import commands as c
from pillarbox.imap import notify
from pillarbox.imap.fetch import FetchItem
from pillarbox.imap.parser import parse_command
from pillarbox.mail.parse import parse_message
from pillarbox.store.interface import Store
from pillarbox.store.open import open_store
from pillarbox.store.types import Change, ChangeKind, DeliveryTarget, FlagOp
from pillarbox.testing.imapcore import CoreWire, core_session
from pillarbox.testing.live import TEST_PASSWORD, loopback_config

USER = "alice@example.org"
MESSAGE = b"Subject: hi\r\n\r\nbody\r\n"


def _plan(text: str) -> notify.NotifyPlan:
    command = parse_command(b"t NOTIFY " + text.encode())
    assert isinstance(command, c.Notify)
    return notify.plan(command)


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("SET (personal (MessageExpunge))", notify.BAD_EVENT_PAIRS),
        ("SET (personal (FlagChange MessageNew))", notify.BAD_EVENT_PAIRS),
        (
            "SET (selected (MessageNew MessageExpunge SubscriptionChange))",
            notify.BAD_SELECTED_EVENT,
        ),
        ("SET (selected-delayed NONE) (selected NONE)", notify.BAD_TWO_SELECTED),
        ("SET (subtree A (MessageNew (UID) MessageExpunge))", notify.BAD_FETCH_ATTS),
        # The BAD rules come first: a malformed request is the client's error (RFC 5465 §3.1).
        ("SET (personal (AnnotationChange))", notify.BAD_EVENT_PAIRS),
        ("SET (personal (MailboxName SomeFutureEvent))", notify.NO_BADEVENT),
        ("SET (selected (MessageNew MessageExpunge AnnotationChange))", notify.NO_BADEVENT),
    ],
)
def test_refusals(text: str, reply: object) -> None:
    with pytest.raises(notify.NotifyRefused) as refused:
        _plan(text)
    assert refused.value.reply == reply


def test_plan_of_the_rfc_example() -> None:
    plan = _plan(
        "SET STATUS (selected-delayed (MessageNew (UID FLAGS) MessageExpunge))"
        " (subtree Lists (MessageNew MessageExpunge)) (subscribed (SubscriptionChange))"
    )
    assert plan.selected and plan.delayed and plan.status
    assert plan.fetch_atts == (FetchItem.UID, FetchItem.FLAGS)
    assert plan.watch("Lists/Lemonade", set()) == notify.Watch(messages=True)
    assert plan.watch("Listsx", set()) == notify.Watch()
    assert plan.watch("Other", {"Other"}) == notify.Watch(subscriptions=True)
    assert _plan("NONE") == notify.NotifyPlan() == _plan("SET (selected NONE)")


async def hint(wire: CoreWire, store: Store, mailbox: str, kind: ChangeKind) -> str:
    """What the adapter does on a change-feed wake-up (hints carry the MODSEQ reached)."""
    account = await store.get_account(USER)
    assert account is not None
    box = await store.get_mailbox(account.id, mailbox)
    return await wire.hint(Change(account.id, box.id, kind, box.highestmodseq))


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


async def test_pushes_are_wanted_between_commands_once_notify_asks(wire: CoreWire) -> None:
    session = wire.session
    assert not session.wants_push  # before NOTIFY, only IDLE pushes (RFC 5465 §3.1)
    assert "b OK" in await wire.send("b NOTIFY SET (personal (MailboxName))\r\n")
    assert session.wants_push
    assert await wire.send("c APPEND INBOX {14}\r\n") == "+ Ready for literal data\r\n"
    assert not session.wants_push  # not while the client sends a literal
    assert "c OK" in await wire.send(MESSAGE.decode() + "\r\n")
    assert session.wants_push
    assert "d OK" in await wire.send("d NOTIFY NONE\r\n")
    assert not session.wants_push
    assert "e OK" in await wire.send("e NOTIFY SET (personal NONE) (selected NONE)\r\n")
    assert not session.wants_push


async def test_renaming_inbox_reports_the_new_mailbox_only(wire: CoreWire, store: Store) -> None:
    assert "b OK" in await wire.send("b NOTIFY SET (personal (MailboxName))\r\n")
    account = await store.get_account(USER)
    assert account is not None
    await store.rename_mailbox(account.id, "INBOX", "Old")  # by another client
    # RFC 5465 §5.4: a new INBOX is assumed created, and no event is sent for INBOX.
    assert await hint(wire, store, "Old", ChangeKind.MAILBOXES) == (
        '* LIST (\\HasNoChildren) "/" Old\r\n'
    )


async def test_own_changes_are_not_echoed(wire: CoreWire, store: Store) -> None:
    assert "b OK" in await wire.send(
        "b NOTIFY SET (personal (MessageNew MessageExpunge MailboxName))\r\n"
    )
    assert "c OK" in await wire.send("c APPEND Junk {14+}\r\n" + MESSAGE.decode() + "\r\n")
    assert await hint(wire, store, "Junk", ChangeKind.EXISTS) == ""
    assert "d OK" in await wire.send("d CREATE Fresh\r\n")
    assert await hint(wire, store, "Fresh", ChangeKind.MAILBOXES) == ""
    account = await store.get_account(USER)
    assert account is not None
    await store.deliver(MESSAGE, parse_message(MESSAGE), [DeliveryTarget(account.id, "Junk")])
    assert await hint(wire, store, "Junk", ChangeKind.EXISTS) == (
        "* STATUS Junk (UIDNEXT 3 MESSAGES 2)\r\n"
    )


async def test_no_message_new_fetch_for_the_clients_own_append(
    wire: CoreWire, store: Store
) -> None:
    assert "b OK" in await wire.send("b SELECT INBOX\r\n")
    assert "c OK" in await wire.send(
        "c NOTIFY SET (selected (MessageNew (UID FLAGS) MessageExpunge))\r\n"
    )
    appended = await wire.send("d APPEND INBOX {14+}\r\n" + MESSAGE.decode() + "\r\n")
    assert "* 1 EXISTS" in appended and "FETCH" not in appended
    account = await store.get_account(USER)
    assert account is not None
    await store.deliver(MESSAGE, parse_message(MESSAGE), [DeliveryTarget(account.id)])
    pushed = await hint(wire, store, "INBOX", ChangeKind.EXISTS)
    assert pushed == "* 2 EXISTS\r\n* 2 RECENT\r\n* 2 FETCH (UID 2 FLAGS (\\Recent))\r\n"


#: The FETCH another session's \Flagged brings (an IMAP4rev1 session: \Recent too).
FLAGGED = "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))\r\n"


@pytest.mark.parametrize(
    ("events", "pushed"),
    [
        ("MessageNew MessageExpunge", ""),
        ("MessageNew MessageExpunge FlagChange", FLAGGED),
    ],
    ids=["without-flagchange", "with-flagchange"],
)
async def test_selected_flag_changes_are_pushed_only_when_asked(
    wire: CoreWire, store: Store, events: str, pushed: str
) -> None:
    """RFC 5465 §5: omitting FlagChange asks the server not to push another session's flag
    change; the next command still carries it, as plain IMAP does (RFC 9051 §7.5.1)."""
    account = await store.get_account(USER)
    assert account is not None
    await store.deliver(MESSAGE, parse_message(MESSAGE), [DeliveryTarget(account.id)])
    assert "b OK" in await wire.send("b SELECT INBOX\r\n")
    assert "c OK" in await wire.send(f"c NOTIFY SET (selected ({events}))\r\n")
    inbox = await store.get_mailbox(account.id, "INBOX")
    await store.store_flags(inbox.id, [1], FlagOp.ADD, frozenset({"\\Flagged"}))
    assert await hint(wire, store, "INBOX", ChangeKind.FLAGS) == pushed
    later = await wire.send("d NOOP\r\n")
    if pushed:
        assert "FETCH" not in later
    else:
        assert later.startswith(FLAGGED), later
