"""Thread ids (RFC 8474 THREADID): what they add to a delivery, and the migration's backfill.

Usage: ``python bench/threadid.py [--messages N] [--store postgresql://user@host/db]``
(SQLite by default; with ``--store`` the PostgreSQL backend, in a database of its own that the
bench drops at the end).

Set-up (before any clock starts): one account holding N messages (35,000 by default) in
threads of 1 to 12 messages, each reply's References naming up to 10 earlier messages of its
thread, delivered in shuffled order (many replies arrive before their parents).

Measured:

- **per delivery**: the thread lookup a delivery does inside its transaction (the backend's
  ``_thread_of``: one probe of the key table per Message-ID, the new keys inserted), for a
  message starting a thread, a reply naming 1 stored message and one naming 10, each run
  2,000 times in one transaction that is rolled back; µs per call. On PostgreSQL the lookup
  is one statement, so one round trip, measured beside it for scale.
- **SEARCH THREADID**: what ``SEARCH THREADID x`` reads of the store for a whole mailbox:
  the UIDs of one thread from the ``(mailbox, thread)`` index (``Store.thread_uids``, since
  SQLite migration 32 / PostgreSQL 27), averaged over SEARCHED threads; and, for comparison,
  how the search engine read it before: the thread of every message, in batches of
  INFO_BATCH.
- **backfill**: the migrations from SQLite 29 / PostgreSQL 24 on (the backfill, and the later
  ones: a column of contacts, the thread indexes) over the N stored messages, from the
  schema before them: the time the migration's transaction holds the database, i.e. how long
  the first start of the new version waits before it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

from pillarbox.imap.searchengine import INFO_BATCH
from pillarbox.mail.parse import parse_message
from pillarbox.store.interface import Store
from pillarbox.store.threadrows import thread_keys
from pillarbox.store.types import INBOX, DeliveryTarget

WRITERS = 100
CALLS = 2000
SEARCHED = 200


def corpus(count: int, rng: random.Random) -> list[bytes]:
    """``count`` messages in threads of 1–12, shuffled."""
    messages: list[bytes] = []
    thread = 0
    while len(messages) < count:
        thread += 1
        ids: list[str] = []
        for _ in range(min(rng.randint(1, 12), count - len(messages))):
            own = f"t{thread}.{len(ids)}@bench.example.org"
            refs = " ".join(f"<{i}>" for i in ids[-10:])
            head = f"References: {refs}\r\nIn-Reply-To: <{ids[-1]}>\r\n" if ids else ""
            messages.append(
                f"From: s{thread % 97}@example.org\r\nTo: rcpt@example.com\r\n"
                f"Subject: topic {thread}\r\nMessage-ID: <{own}>\r\n{head}\r\nbody\r\n".encode()
            )
            ids.append(own)
    rng.shuffle(messages)
    return messages


async def fill(store: Store, count: int) -> int:
    """The account and its ``count`` messages; the account id."""
    await store.add_domain("example.com")
    account = await store.add_account("rcpt@example.com", "x")
    pending = iter(corpus(count, random.Random(7)))

    async def writer() -> None:
        for raw in pending:
            await store.deliver(raw, parse_message(raw), [DeliveryTarget(account.id)])

    await asyncio.gather(*(writer() for _ in range(WRITERS)))
    return account.id


async def search_ms(store: Store, account_id: int, count: int) -> dict[str, float]:
    """The ms a SEARCH THREADID over the whole INBOX spends in the store: by the index (one
    thread's UIDs, averaged over SEARCHED threads), and by the scan it replaced."""
    inbox = await store.get_mailbox(account_id, INBOX)
    uids = list(range(1, count + 1))
    start = time.perf_counter()
    threads: dict[int, int] = {}
    for first in range(0, count, INFO_BATCH):
        threads |= await store.thread_ids(inbox.id, uids[first : first + INFO_BATCH])
    scan = (time.perf_counter() - start) * 1000
    searched = random.Random(11).sample(sorted(set(threads.values())), SEARCHED)
    start = time.perf_counter()
    for thread in searched:
        await store.thread_uids(inbox.id, thread)
    index = (time.perf_counter() - start) * 1000 / SEARCHED
    return {
        f"SEARCH THREADID over {count:,} messages, by the index": index,
        f"SEARCH THREADID over {count:,}, reading every message's thread (before)": scan,
    }


def lookups() -> dict[str, list[list[str]]]:
    """The keys of CALLS messages of each shape; a reply names stored messages (it joins)."""
    shapes: dict[str, list[list[str]]] = {}
    for name, refs in (("new thread", 0), ("reply, 1 reference", 1), ("reply, 10 references", 10)):
        shapes[f"thread lookup per delivery, {name}"] = [
            thread_keys(
                f"x{n}.{refs}@bench.example.org",
                f"t{n}.0@bench.example.org" if refs else "",
                [f"t{n}.{r}@bench.example.org" for r in range(refs)],
                "",
            )
            for n in range(1, CALLS + 1)
        ]
    return shapes


def sqlite_lookups(path: Path, account_id: int) -> dict[str, float]:
    from pillarbox.store.sqlite.store import _thread_of

    conn = sqlite3.connect(path, isolation_level=None)
    results: dict[str, float] = {}
    try:
        for name, calls in lookups().items():
            conn.execute("BEGIN IMMEDIATE")
            start = time.perf_counter()
            for keys in calls:
                _thread_of(conn, account_id, keys)
            results[name] = (time.perf_counter() - start) / len(calls) * 1e6
            conn.execute("ROLLBACK")
    finally:
        conn.close()
    return results


def sqlite_backfill(path: Path) -> float:
    from pillarbox.store.sqlite.migrations import migrate

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript(  # back to version 28 (29 undone, and the later ones: migrate
            # resumes after the highest version recorded)
            "DROP INDEX messages_thread; ALTER TABLE messages DROP COLUMN thread; "
            "DROP TABLE thread_keys; DELETE FROM meta WHERE key = 'next_thread'; "
            "ALTER TABLE contacts DROP COLUMN card; DELETE FROM schema_version WHERE version >= 29;"
        )
        start = time.perf_counter()
        migrate(conn)
        return time.perf_counter() - start
    finally:
        conn.close()


async def run_sqlite(count: int, base: Path) -> tuple[dict[str, float], dict[str, float], float]:
    from pillarbox.store.sqlite import SqliteStore

    path = base / "pillarbox.sqlite3"
    store = SqliteStore(path)
    await store.open()
    try:
        account_id = await fill(store, count)
        search = await search_ms(store, account_id, count)
    finally:
        await store.close()
    return sqlite_lookups(path, account_id), search, sqlite_backfill(path)


async def run_postgres(count: int, server: str) -> tuple[dict[str, float], dict[str, float], float]:
    import psycopg

    from pillarbox.store.postgres import PostgresStore
    from pillarbox.store.postgres.migrations import migrate
    from pillarbox.store.postgres.store import _thread_of
    from pillarbox.testing.postgres import TestDatabase

    database = TestDatabase(server)
    try:
        url = database.new_store_url()
        store = PostgresStore(url)
        await store.open()
        try:
            account_id = await fill(store, count)
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                # As autovacuum would have by now: without statistics on the freshly filled
                # table the planner scans it for every batch.
                await conn.execute("ANALYZE messages")
            search = await search_ms(store, account_id, count)
        finally:
            await store.close()
        results: dict[str, float] = {}
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            start = time.perf_counter()
            for n in range(CALLS):
                await conn.execute("SELECT %s", (n,))
            results["one round trip (SELECT 1), for scale"] = (
                (time.perf_counter() - start) / CALLS * 1e6
            )
            for name, calls in lookups().items():
                await conn.execute("BEGIN")
                start = time.perf_counter()
                for keys in calls:
                    await _thread_of(conn, account_id, keys)
                results[name] = (time.perf_counter() - start) / len(calls) * 1e6
                await conn.execute("ROLLBACK")
            await conn.execute(  # back to version 23 (24 undone, and the later ones, as
                # migrate resumes after the highest version recorded; 27's indexes go too)
                "ALTER TABLE messages DROP COLUMN thread; DROP TABLE thread_keys; "
                "DROP SEQUENCE thread_ids; ALTER TABLE contacts DROP COLUMN card; "
                "DELETE FROM schema_version WHERE version >= 24"
            )
            start = time.perf_counter()
            await migrate(conn)
            backfill = time.perf_counter() - start
        return results, search, backfill
    finally:
        database.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=35_000, help="messages in the account")
    parser.add_argument("--store", default="sqlite", help="sqlite, or a postgresql:// URL")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pillarbox-bench-"))
    try:
        if args.store == "sqlite":
            backend = "SQLite"
            per_call, search, backfill = asyncio.run(run_sqlite(args.messages, base))
        elif args.store.startswith(("postgresql://", "postgres://")):
            backend = "PostgreSQL"
            per_call, search, backfill = asyncio.run(run_postgres(args.messages, args.store))
        else:
            parser.error("--store is sqlite or a postgresql:// URL")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"| {backend}, {args.messages:,} messages in the account | figure |")
    print("|---|---|")
    for name, micros in per_call.items():
        print(f"| {name} | {micros:,.0f} µs |")
    for name, millis in search.items():
        print(f"| {name} | {millis:,.2f} ms |")
    print(f"| backfill migration over {args.messages:,} messages | {backfill:.2f} s |")


if __name__ == "__main__":
    main()
