"""The retention job (pillarbox.retention): how long each account's Junk and Trash keep mail,
and one run over a real store whose clock dated the mail weeks ago (no sleeping for days).
The live server's side — the periodic task, IDLE sessions seeing the expunges — is
tests/interop/test_retention_server.py."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pillarbox.config import RetentionSection, from_mapping
from pillarbox.errors import ConfigError, NotFound
from pillarbox.observability.metrics import Metrics
from pillarbox.retention import (
    cutoff,
    expunge_old,
    prune_sync_history,
    retention_days,
    run_once,
)
from pillarbox.store.interface import Store
from pillarbox.store.postgres import PostgresStore
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.types import (
    INBOX,
    AccountSettings,
    Calendar,
    CalendarObject,
    Contact,
    LoginHold,
    SpecialUse,
)
from pillarbox.testing.postgres import unreachable_reason
from pillarbox.testing.store_contract import DOMAIN, make_message

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SECTION = RetentionSection(junk_days=30, trash_days=7, batch_size=2)


@pytest.mark.parametrize(
    ("settings", "junk", "trash"),
    [
        (AccountSettings(), 30, 7),  # the server's days
        (AccountSettings(junk_days=90), 90, 7),  # the account's own
        (AccountSettings(junk_days=0, trash_days=1), 0, 1),  # 0: kept until deleted
    ],
)
def test_retention_days_prefers_the_accounts_own(
    settings: AccountSettings, junk: int, trash: int
) -> None:
    assert retention_days(SECTION, settings, SpecialUse.JUNK) == junk
    assert retention_days(SECTION, settings, SpecialUse.TRASH) == trash


def test_cutoff() -> None:
    assert cutoff(NOW, 30) == datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
    assert cutoff(NOW, 0) is None


class Clock:
    """The store's clock: what it stamps as the save date."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now.timestamp()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(tmp_path: Path, clock: Clock) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "db.sqlite3", clock=clock)
    await store.open()
    await store.add_domain(DOMAIN)
    yield store
    await store.close()


async def test_one_run_expunges_old_junk_and_trash_in_batches(
    store: SqliteStore, clock: Clock
) -> None:
    alice = await store.add_account(f"alice@{DOMAIN}", "h")
    keeper = await store.add_account(f"keeper@{DOMAIN}", "h")
    await store.set_settings(keeper.id, AccountSettings(junk_days=0))
    boxes = {}
    for account in (alice, keeper):
        for name in (INBOX, "Junk", "Trash"):
            boxes[account.id, name] = (await store.get_mailbox(account.id, name)).id
    # Trash renamed by a mail app stays the Trash (found by its special use).
    await store.rename_mailbox(alice.id, "Trash", "Deleted Items")
    serial = 0

    async def save(account_id: int, name: str, age: timedelta, count: int = 1) -> None:
        nonlocal serial
        clock.now = NOW - age
        for _ in range(count):
            serial += 1
            await store.append(boxes[account_id, name], *make_message(serial))

    await save(alice.id, "Junk", timedelta(days=31), count=5)  # three batches of two
    await save(alice.id, "Junk", timedelta(days=29))
    await save(alice.id, "Trash", timedelta(days=8))
    await save(alice.id, "Trash", timedelta(days=6))
    await save(alice.id, INBOX, timedelta(days=400))
    await save(keeper.id, "Junk", timedelta(days=400))
    await save(keeper.id, "Trash", timedelta(days=8))
    old_blob = (await store.list_messages(boxes[alice.id, "Junk"]))[0].blob_id
    metrics = Metrics()

    result = await expunge_old(store, SECTION, NOW, metrics=metrics)

    assert result.counts == {"junk": 5, "trash": 2} and result.accounts == 2
    assert [r.uid for r in await store.list_messages(boxes[alice.id, "Junk"])] == [6]
    assert [r.uid for r in await store.list_messages(boxes[alice.id, "Trash"])] == [2]
    assert len(await store.list_messages(boxes[alice.id, INBOX])) == 1
    assert len(await store.list_messages(boxes[keeper.id, "Junk"])) == 1  # its own 0 days
    assert await store.list_messages(boxes[keeper.id, "Trash"]) == []
    with pytest.raises(NotFound):
        await store.read_blob(old_blob)  # freed like any expunged message's
    assert (await store.quota_usage(alice.id)).messages == 3
    for mailbox, count in (("junk", 5), ("trash", 2)):
        labels = {"mailbox": mailbox}
        assert (
            metrics.registry.get_sample_value("pillarbox_retention_expunged_total", labels) == count
        )
    # The next run finds nothing more.
    again = await expunge_old(store, SECTION, NOW)
    assert again.total == 0 and again.accounts == 0


async def test_nothing_configured_expunges_nothing(store: SqliteStore, clock: Clock) -> None:
    account = await store.add_account(f"alice@{DOMAIN}", "h")
    junk = await store.get_mailbox(account.id, "Junk")
    clock.now = NOW - timedelta(days=3650)
    await store.append(junk.id, *make_message(1))
    result = await expunge_old(store, RetentionSection(), NOW)
    assert result.total == 0
    assert len(await store.list_messages(junk.id)) == 1


async def test_sync_history_pruned_by_each_kinds_days(store: SqliteStore) -> None:
    """Tombstones older than ``sync_history_days`` go, each kind by its own section (0 keeps
    them); a collection that lost one refuses older tokens (RFC 6578 §3.7)."""
    alice = await store.add_account(f"alice@{DOMAIN}", "h")
    await store.create_calendar(alice.id, Calendar(name="cal"), now=NOW, limit=5)
    for name, age in (("old.ics", 40), ("new.ics", 5)):
        obj = CalendarObject(name=name, uid=name, component="VEVENT", data=b"x")
        await store.save_calendar_object(alice.id, "cal", obj, now=NOW, limit=5)
        await store.delete_calendar_object(alice.id, "cal", name, now=NOW - timedelta(days=age))
    old, young = await store.save_contacts(
        alice.id, [Contact(uid="old"), Contact(uid="young")], now=NOW, limit=5
    )
    await store.delete_contact(alice.id, old.id, now=NOW - timedelta(days=400))
    await store.delete_contact(alice.id, young.id, now=NOW - timedelta(days=40))
    config = from_mapping({"calendars": {"sync_history_days": 30}, "contacts": {}})
    assert config.contacts.sync_history_days == 90  # the default

    assert await prune_sync_history(store, config, NOW) == 2  # old.ics, and the contact "old"
    calendar = await store.calendar_changes(alice.id, "cal", 0)
    assert (calendar.oldest, calendar.answers(2)) == (3, False)  # saved 2, deleted 3
    assert (await store.calendar_changes(alice.id, "cal", 3)).deleted == ["new.ics"]
    book = await store.contact_changes(alice.id, 1)
    assert (book.oldest, book.deleted) == (2, ["young"])
    # 0 keeps every tombstone.
    keep = from_mapping(
        {"calendars": {"sync_history_days": 0}, "contacts": {"sync_history_days": 0}}
    )
    assert await prune_sync_history(store, keep, NOW + timedelta(days=900)) == 0


async def test_one_whole_run_expunges_and_prunes(store: SqliteStore, clock: Clock) -> None:
    """``run_once`` (the server's task each interval, and ``pillarbox store expunge-old``)
    expunges old mail and prunes old tombstones in the same run."""
    alice = await store.add_account(f"alice@{DOMAIN}", "h")
    trash = await store.get_mailbox(alice.id, "Trash")
    clock.now = NOW - timedelta(days=10)
    await store.append(trash.id, *make_message(1))
    (contact,) = await store.save_contacts(alice.id, [Contact(uid="gone")], now=NOW, limit=5)
    await store.delete_contact(alice.id, contact.id, now=NOW - timedelta(days=100))
    config = from_mapping({"retention": {"trash_days": 7}, "contacts": {"sync_history_days": 90}})

    result = await run_once(store, config, NOW)

    assert (result.counts, result.accounts, result.tombstones) == ({"junk": 0, "trash": 1}, 1, 1)
    assert await store.list_messages(trash.id) == []
    assert (await store.contact_changes(alice.id, 0)).deleted == []
    again = await run_once(store, config, NOW)
    assert (again.total, again.tombstones) == (0, 0)


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A new store of each backend (PostgreSQL skipped when no server is reachable)."""
    store: Store
    if request.param == "sqlite":
        store = SqliteStore(tmp_path / "db.sqlite3")
    else:
        if (reason := unreachable_reason()) is not None:
            pytest.skip(reason)
        store = PostgresStore(request.getfixturevalue("database").new_store_url())
    await store.open()
    await store.add_domain(DOMAIN)
    yield store
    await store.close()


async def test_run_forgets_expired_sieve_duplicates(
    any_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Each run forgets the Sieve "duplicate" ids expired in any account (RFC 7352 §3.1),
    also in one whose scripts record nothing new, and logs how many."""
    hour = timedelta(hours=1)
    alice = await any_store.add_account(f"alice@{DOMAIN}", "h")
    bob = await any_store.add_account(f"bob@{DOMAIN}", "h")
    earlier = NOW - 3 * hour
    await any_store.track_sieve_duplicates(
        alice.id, [("old", NOW - hour), ("new", NOW + hour)], earlier, 10
    )
    await any_store.track_sieve_duplicates(bob.id, [("old", NOW - 2 * hour)], earlier, 10)

    with caplog.at_level(logging.INFO, logger="pillarbox"):
        result = await run_once(any_store, from_mapping({}), NOW)

    assert result.duplicates == 2
    [line] = [r for r in caplog.records if r.getMessage() == "retention run"]
    assert line.__dict__["fields"]["sieve_duplicates"] == 2
    assert await any_store.sieve_duplicates(alice.id, earlier) == {"new"}
    assert await any_store.sieve_duplicates(bob.id, earlier) == frozenset()
    assert (await run_once(any_store, from_mapping({}), NOW)).duplicates == 0


async def test_run_forgets_expired_login_holds(
    any_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Each run forgets the messages two-step logins held and nobody came back for (sealed,
    but a user's unsent text), and logs how many; an unexpired one stays."""
    alice = await any_store.add_account(f"alice@{DOMAIN}", "h")
    bob = await any_store.add_account(f"bob@{DOMAIN}", "h")
    earlier = NOW - timedelta(hours=1)
    for owner, expires in ((alice, earlier + timedelta(minutes=5)), (bob, NOW + timedelta(1))):
        hold = LoginHold(account_id=owner.id, sid="s", sealed="v1:x", size=3, expires=expires)
        assert await any_store.hold_login_message(hold, earlier, 1024)

    with caplog.at_level(logging.INFO, logger="pillarbox"):
        result = await run_once(any_store, from_mapping({}), NOW)

    assert result.login_holds == 1
    [line] = [r for r in caplog.records if r.getMessage() == "retention run"]
    assert line.__dict__["fields"]["login_holds"] == 1
    assert await any_store.held_login_message(alice.id, "s", earlier) is None
    assert await any_store.held_login_message(bob.id, "s", NOW) == "v1:x"
    assert (await run_once(any_store, from_mapping({}), NOW)).login_holds == 0


def test_sync_history_days_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"contacts\.sync_history_days"):
        from_mapping({"contacts": {"sync_history_days": -1}})
