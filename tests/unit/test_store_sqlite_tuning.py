"""The SQLite backend's performance machinery: the bounded WAL, the in-memory caches (message
structures, directory lookups) and the query shapes they rely on; correctness, not speed."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pillarbox.store.directorycache import DirectoryCache
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.sqlite.snapshots import InfoCache
from pillarbox.store.sqlite.store import ROWS_BY_UID, SqliteLimits
from pillarbox.store.types import INBOX, Mailbox
from pillarbox.testing.store_contract import DOMAIN, make_message


async def _store(path: Path, limits: SqliteLimits | None = None) -> tuple[SqliteStore, Mailbox]:
    store = SqliteStore(path, limits=limits or SqliteLimits())
    await store.open()
    await store.add_domain(DOMAIN)
    account = await store.add_account(f"a@{DOMAIN}", "h")
    return store, await store.get_mailbox(account.id, INBOX)


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, Mailbox]]:
    store, inbox = await _store(tmp_path / "db.sqlite3")
    yield store, inbox
    await store.close()


# -- message structures ----------------------------------------------------------------------------
async def test_message_infos_without_text(opened: tuple[SqliteStore, Mailbox]) -> None:
    store, inbox = opened
    raw, info = make_message(1, body="the body text")
    await store.append(inbox.id, raw, info)
    bare = await store.message_infos(inbox.id, [1, 2], with_text=False)
    assert bare == {1: dataclasses.replace(info, header_text="", body_text="")}
    assert await store.message_infos(inbox.id, [1]) == {1: info}
    # Decoded once: the second text-less answer is the cached object itself.
    assert (await store.message_infos(inbox.id, [1], with_text=False))[1] is bare[1]


async def test_message_infos_shared_blob_in_two_mailboxes(
    opened: tuple[SqliteStore, Mailbox],
) -> None:
    store, inbox = opened
    other = await store.create_mailbox(inbox.account_id, "Other")
    raw, info = make_message(1)
    await store.append(inbox.id, raw, info)
    await store.append(other.id, raw, info)  # the same blob, one cache entry
    assert await store.message_infos(inbox.id, [1]) == {1: info}
    assert await store.message_infos(other.id, [1]) == {1: info}
    assert await store.message_infos(other.id, [7]) == {}


def test_info_cache_evicts_least_recently_used() -> None:
    _, info = make_message(1)
    cache = InfoCache(max_entries=2)
    cache.put_many({1: info, 2: info})
    assert cache.get_many([1]) == {1: info}  # 1 is now the most recent
    cache.put_many({3: info})
    assert set(cache.get_many([1, 2, 3])) == {1, 3}
    InfoCache(max_entries=0).put_many({1: info})  # off: stores nothing, fails nothing


# -- full-text search ------------------------------------------------------------------------------
async def test_search_combines_index_backlog_and_short_terms(
    opened: tuple[SqliteStore, Mailbox],
) -> None:
    store, inbox = opened
    await store.append(inbox.id, *make_message(1, body="kernel panic at boot"))
    await store.catch_up_index()
    await store.append(inbox.id, *make_message(2, body="another kernel panic, xy"))
    # 1 is answered by the index, 2 by the scan of the backlog; both in one answer.
    assert await store.search_text(inbox.id, ["Kernel Panic"]) == {1, 2}
    assert await store.search_text(inbox.id, ["panic", "xy"]) == {2}
    assert await store.search_text(inbox.id, ["panic"], body_only=True) == {1, 2}
    assert await store.search_text(inbox.id, ["hello"], body_only=True) == set()
    assert await store.search_text(inbox.id, ["hello"]) == {1, 2}  # the subject


async def test_catch_up_index_in_steps(opened: tuple[SqliteStore, Mailbox]) -> None:
    store, inbox = opened
    for serial in range(1, 140):  # more than one step of 128
        await store.append(inbox.id, *make_message(serial))
    batches = store.batches_committed[0]
    await store.catch_up_index()
    assert store.batches_committed[0] - batches >= 2

    def pending(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT count(*) FROM blob_text WHERE state != 1").fetchone()[0])

    assert await store._read(pending) == 0
    assert await store.search_text(inbox.id, ["number 139"]) == {139}


async def test_select_reads_only_the_covering_record_index(
    opened: tuple[SqliteStore, Mailbox],
) -> None:
    store, inbox = opened

    def plan(conn: sqlite3.Connection) -> list[str]:
        rows = conn.execute("EXPLAIN QUERY PLAN " + ROWS_BY_UID, (inbox.id, 1, 2**63 - 1))
        return [row[3] for row in rows]

    assert await store._read(plan) == [
        "SEARCH m USING COVERING INDEX messages_records (mailbox_id=? AND uid>? AND uid<?)"
    ]


# -- bounded WAL -----------------------------------------------------------------------------------
async def test_wal_restarts_under_sustained_writes(tmp_path: Path) -> None:
    limits = SqliteLimits(wal_limit_mib=1, checkpoint_interval_ms=5)
    store, inbox = await _store(tmp_path / "db.sqlite3", limits)
    wal = tmp_path / "db.sqlite3-wal"
    peak = 0
    try:
        for serial in range(600):  # ~2.5 MB of message bytes, ~4 times that of pages
            await store.append(inbox.id, *make_message(serial, size_pad=4000))
            peak = max(peak, wal.stat().st_size)
        writer = store._writer
        assert writer is not None
        assert writer.wal_restarts >= 1
        # Unbounded, the WAL would hold every page written (> 10 MB); restarted, it is cut back
        # to the limit each time and grows by at most a few checkpoint intervals past it.
        assert peak < 6 * 1024 * 1024
        assert (await store.mailbox_status(inbox.id)).messages == 600
    finally:
        await store.close()


# -- directory lookups -----------------------------------------------------------------------------
async def test_directory_lookups_see_own_writes_at_once(tmp_path: Path) -> None:
    store, _ = await _store(tmp_path / "db.sqlite3", SqliteLimits(directory_ttl_ms=60_000))
    try:
        assert await store.get_account(f"b@{DOMAIN}") is None  # a cached miss…
        account = await store.add_account(f"b@{DOMAIN}", "h")
        assert await store.get_account(f"b@{DOMAIN}") == account  # …gone with the write
        await store.set_display_name(account.id, "Bee")
        found = await store.get_account(f"b@{DOMAIN}")
        assert found is not None and found.display_name == "Bee"
        await store.add_alias(f"c@{DOMAIN}", [f"b@{DOMAIN}"])
        assert await store.get_alias(f"c@{DOMAIN}") is not None
        await store.remove_alias(f"c@{DOMAIN}")
        assert await store.get_alias(f"c@{DOMAIN}") is None
        await store.add_domain("two.example")
        domains = await store.list_domains()
        assert [d.name for d in domains] == [DOMAIN, "two.example"]
        domains.clear()  # a caller's list is its own
        assert len(await store.list_domains()) == 2
        await store.remove_domain("two.example")
        assert await store.get_domain("two.example") is None
    finally:
        await store.close()


async def test_directory_lookups_of_other_writers_expire(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store, _ = await _store(path, SqliteLimits(directory_ttl_ms=60_000))
    uncached, _ = await _store(tmp_path / "other.sqlite3", SqliteLimits(directory_ttl_ms=0))
    try:
        assert await store.get_domain("late.example") is None
        outside = sqlite3.connect(path)  # another process, say the command line
        outside.execute("INSERT INTO domains (name, created) VALUES ('late.example', 0)")
        outside.commit()
        outside.close()
        assert await store.get_domain("late.example") is None  # within the TTL
        store._directory.ttl = 0.0  # as if it had expired
        store._directory.invalidate()
        assert await store.get_domain("late.example") is not None
        assert await uncached.get_domain("late.example") is None  # ttl 0: always asks
    finally:
        await store.close()
        await uncached.close()


def test_directory_cache_expiry_generation_and_bound() -> None:
    now = [100.0]
    cache = DirectoryCache(ttl=1.0, max_entries=3, clock=lambda: now[0])
    generation = cache.generation
    cache.put(("account", "a"), None, generation)
    assert cache.get(("account", "a")) == (None,)  # a cached absence
    now[0] += 1.0
    assert cache.get(("account", "a")) is None  # expired
    # A lookup that began before a write must not store what it read.
    stale = cache.generation
    cache.invalidate()
    cache.put(("account", "a"), "old", stale)
    assert cache.get(("account", "a")) is None
    for name in "bcd":
        cache.put(("alias", name), name, cache.generation)
    assert sum(cache.get(("alias", n)) is not None for n in "bcd") <= 3
    now[0] += 5.0
    cache.put(("alias", "e"), "e", cache.generation)  # the expired make room
    assert cache.get(("alias", "e")) == ("e",)
