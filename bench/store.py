"""Store figures: durable deliveries/s for both blob modes, scaling, SELECT, search; one table.

Usage: ``python bench/store.py [--quick] [--dir DIR]`` (SQLite), or
``python bench/store.py --store postgresql://user@host/db [--quick]``: the PostgreSQL backend
beside SQLite — durable deliveries/s with one node and with two nodes (two processes over one
database), into one mailbox and spread over many accounts, plus SELECT and search at scale.
The bench creates a database of its own on that server and drops it at the end.
``python bench/store.py --contention [--quick]``: only the SQLite writer beside a busy event
loop — deliveries/s with 0, 250 and 500 µs of pure-Python loop work per delivery, and the
writer's busy share and wall/CPU time per operation (how long it waits for the GIL).

Every delivery is a distinct 4 KB message (a unique Message-ID keeps blobs from deduplicating),
parsed once before the clock starts (parsing is the SMTP server's cost, not the store's) and
delivered with ``synchronous=FULL``: each figure counts acknowledged, fsync'd deliveries. CPU
µs/delivery is process CPU time per delivery (all threads), a figure that a busy shared machine
disturbs less than the wall-clock rate. The full-text index is built behind the writes (see
``pillarbox.store.sqlite.store``); its own rate is reported separately.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from pillarbox.mail.model import MessageInfo
from pillarbox.mail.parse import parse_message
from pillarbox.store.blobs import BlobMode
from pillarbox.store.interface import Store
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.types import DeliveryTarget, FlagOp, Mailbox, MessageQuery

MESSAGE_SIZE = 4096
_WORDS = [
    "".join(random.Random(i).choices("abcdefghijklmnopqrstuvwxyz", k=2 + i % 8))
    for i in range(5000)
]


def make_message(serial: int, rng: random.Random) -> bytes:
    """A 4,096-byte message; ``serial`` makes it unique."""
    head = (
        f"From: Sender {serial % 97} <sender{serial % 97}@example.org>\r\n"
        f"To: rcpt@example.com\r\n"
        f"Subject: report {rng.choice(_WORDS)} {rng.choice(_WORDS)}\r\n"
        f"Date: Mon, 3 Mar 2025 10:{serial % 60:02d}:00 +0000\r\n"
        f"Message-ID: <{serial:012d}@bench.example.org>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode()
    body = bytearray()
    while len(head) + len(body) < MESSAGE_SIZE:
        line = " ".join(rng.choices(_WORDS, k=10)).encode() + b"\r\n"
        body += line
    return head + bytes(body[: MESSAGE_SIZE - len(head) - 2]) + b"\r\n"


class Corpus:
    """Distinct messages cheaply: real parses of a pool, re-stamped with unique Message-IDs."""

    def __init__(self, pool: int = 200, first_serial: int = 10**9) -> None:
        rng = random.Random(7)
        self._pool = [
            (raw, parse_message(raw)) for raw in (make_message(i, rng) for i in range(pool))
        ]
        self._serial = first_serial

    def next(self) -> tuple[bytes, MessageInfo]:
        self._serial += 1
        raw, info = self._pool[self._serial % len(self._pool)]
        old_id = raw[raw.index(b"Message-ID: <") + 13 : raw.index(b"@bench")]
        new_id = f"{self._serial:012d}".encode()
        unique = raw.replace(old_id, new_id, 1)
        return unique, dataclasses.replace(
            info, message_id=f"<{new_id.decode()}@bench.example.org>"
        )


async def new_store(root: Path, mode: BlobMode) -> tuple[SqliteStore, int, Mailbox]:
    store = SqliteStore(root / "pillarbox.sqlite3", blob_mode=mode, blob_dir=root / "blobs")
    await store.open()
    await store.add_domain("example.com")
    account = await store.add_account("rcpt@example.com", "x")
    return store, account.id, await store.get_mailbox(account.id, "INBOX")


@dataclasses.dataclass
class Run:
    deliveries: int
    seconds: float
    cpu: float
    transactions: int

    @property
    def rate(self) -> float:
        return self.deliveries / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.deliveries * 1e6

    @property
    def per_commit(self) -> float:
        return self.deliveries / max(1, self.transactions)


def hold_the_gil(seconds: float) -> None:
    """Pure-Python work for ``seconds``: what the server's event loop does per message (SMTP,
    parsing, policy) while the writer thread wants the GIL back after each SQLite call."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(50))


async def deliver_many(
    store: SqliteStore,
    account_id: int,
    corpus: Corpus,
    count: int,
    writers: int,
    loop_work: float = 0.0,
) -> Run:
    messages = [corpus.next() for _ in range(count)]
    queue = iter(messages)
    targets = [DeliveryTarget(account_id)]

    async def writer() -> None:
        for raw, info in queue:
            if loop_work:
                hold_the_gil(loop_work)
            await store.deliver(raw, info, targets)

    before = store.batches_committed[0]
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(writer() for _ in range(writers)))
    run = Run(
        count,
        time.perf_counter() - wall,
        time.process_time() - cpu,
        store.batches_committed[0] - before,
    )
    return run


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await fn()
    return (time.perf_counter() - start) * 1000


async def timed_cpu(fn: Callable[[], Awaitable[object]]) -> str:
    """ "wall/CPU ms" of one call, CPU being the process's (all threads): the figure a shared
    machine disturbs less."""
    wall, cpu = time.perf_counter(), time.process_time()
    await fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return f"{wall * 1000:.1f}/{cpu * 1000:.1f} ms"


def row(label: str, value: str, note: str = "") -> None:
    print(f"| {label:<58} | {value:>14} | {note:<34} |")


def header() -> None:
    print("| figure" + " " * 52 + " | value          | note" + " " * 31 + "|")
    print("|" + "-" * 60 + "|" + "-" * 16 + "|" + "-" * 36 + "|")


async def writer_contention(base: Path, count: int) -> None:
    """The one writer thread beside a busy event loop: 50 concurrent deliveries, each after
    ``loop_work`` of pure-Python work on the loop. The writer's wall time per operation
    against its CPU time shows how long it waits for the GIL (the fsync is per batch)."""
    corpus = Corpus()
    for micros in (0, 250, 500):
        store, account_id, _ = await new_store(base / f"contention-{micros}", BlobMode.DATABASE)
        await deliver_many(store, account_id, corpus, 200, 50)  # warm-up
        (wall0, cpu0), ops0 = store.writer_seconds, store.batches_committed[1]
        run = await deliver_many(store, account_id, corpus, count, 50, micros / 1e6)
        (wall1, cpu1), ops1 = store.writer_seconds, store.batches_committed[1]
        await store.close()
        ops = max(1, ops1 - ops0)
        row(
            f"deliveries/s, loop busy {micros} µs per delivery, 50 writers",
            f"{run.rate:,.0f}",
            f"writer {(wall1 - wall0) / run.seconds:.0%} busy, "
            f"{(wall1 - wall0) / ops * 1e3:.2f}/{(cpu1 - cpu0) / ops * 1e3:.2f} ms",
        )


async def main(quick: bool, base: Path) -> None:
    corpus = Corpus()
    header()

    # 1. Both blob strategies, 1/10/100 concurrent writers, into one mailbox.
    for mode in (BlobMode.DATABASE, BlobMode.FILES):
        for writers in (1, 10, 100):
            count = {1: 300, 10: 1500, 100: 3000}[writers] // (3 if quick else 1)
            store, account_id, _ = await new_store(base / f"{mode}-{writers}", mode)
            await deliver_many(store, account_id, corpus, 200, writers)  # warm-up
            run = await deliver_many(store, account_id, corpus, count, writers)
            await store.close()
            row(
                f"deliveries/s, blobs={mode.value}, {writers} writer(s)",
                f"{run.rate:,.0f}",
                f"{run.cpu_us:,.0f} CPU µs, {run.per_commit:.1f}/commit",
            )

    # 2. Cost per delivery at 1k vs 100k messages (database blobs, 100 writers); SELECT at 35k.
    target = 20_000 if quick else 100_000
    store, account_id, inbox = await new_store(base / "scale", BlobMode.DATABASE)
    await deliver_many(store, account_id, corpus, 1000, 100)
    small = await deliver_many(store, account_id, corpus, 2000, 100)
    select_at = min(35_000, target - 5000)
    while (await store.mailbox_status(inbox.id)).messages < select_at:
        await deliver_many(store, account_id, corpus, 5000, 100)
    size = (await store.mailbox_status(inbox.id)).messages
    await store.close()
    reopened = SqliteStore(base / "scale" / "pillarbox.sqlite3")
    await reopened.open()
    cold = await timed_cpu(lambda: reopened.list_messages(inbox.id))
    warm = await timed_cpu(lambda: reopened.list_messages(inbox.id))
    await deliver_many(reopened, account_id, corpus, 1, 1)
    await reopened.store_flags(inbox.id, [5, 6, 7], FlagOp.ADD, frozenset({"\\Seen"}))
    patched = await timed_cpu(lambda: reopened.list_messages(inbox.id))
    status = await timed_cpu(lambda: reopened.mailbox_status(inbox.id))
    ranged = await timed_cpu(lambda: reopened.list_messages(inbox.id, uid_min=size - 50))
    uids = list(range(1, 1001))
    infos_first = await timed_cpu(lambda: reopened.message_infos(inbox.id, uids, with_text=False))
    infos_again = await timed_cpu(lambda: reopened.message_infos(inbox.id, uids, with_text=False))
    infos_text = await timed_cpu(lambda: reopened.message_infos(inbox.id, uids))
    row(f"list_messages, {size:,} messages, cold (after reopen)", cold, "wall/CPU ms (all threads)")
    row(f"list_messages, {size:,} messages, warm", warm)
    row(f"list_messages, {size:,} messages, after 1 arrival + 3 STOREs", patched)
    row(f"list_messages, last 50 UIDs of {size:,}", ranged)
    row(f"mailbox_status, {size:,} messages", status)
    row("message_infos 1,000, with_text=False, first (decodes)", infos_first)
    row("message_infos 1,000, with_text=False, again (cached)", infos_again)
    row("message_infos 1,000, with text (structure cached)", infos_text)
    while (await reopened.mailbox_status(inbox.id)).messages < target:
        await deliver_many(reopened, account_id, corpus, 5000, 100)
    large = await deliver_many(reopened, account_id, corpus, 2000, 100)
    final = (await reopened.mailbox_status(inbox.id)).messages
    wal = base / "scale" / "pillarbox.sqlite3-wal"
    wal_mib = wal.stat().st_size / 2**20 if wal.exists() else 0.0
    await reopened.close()
    row(
        "deliveries/s at ~1k messages (100 writers)",
        f"{small.rate:,.0f}",
        f"{small.cpu_us:,.0f} CPU µs",
    )
    row(
        f"deliveries/s at ~{final // 1000}k messages (100 writers)",
        f"{large.rate:,.0f}",
        f"{large.cpu_us:,.0f} CPU µs ({large.cpu_us / small.cpu_us - 1:+.0%} vs 1k)",
    )
    row(f"WAL file after {final:,} deliveries", f"{wal_mib:.0f} MiB", "bounded by wal_limit_mib")

    # 3. Full-text index: build rate, and search answered by the index vs by the scan.
    count = 1000 if quick else 3000
    store, account_id, inbox = await new_store(base / "search", BlobMode.DATABASE)
    await deliver_many(store, account_id, corpus, count, 100)
    word = _WORDS[1234]
    scan = await timed_cpu(lambda: store.search_text(inbox.id, [word, "report"]))
    build = await timed(store.catch_up_index)
    indexed = await timed_cpu(lambda: store.search_text(inbox.id, [word, "report"]))
    short = await timed_cpu(lambda: store.search_text(inbox.id, ["zq"]))
    await store.close()
    row(
        "full-text indexing (behind the writes)",
        f"{count / build * 1000:,.0f} msg/s",
        f"{build / count:.2f} ms per 4 KB message",
    )
    row(f"search_text 2 terms, {count:,} msgs, not indexed (scan)", scan)
    row(f"search_text 2 terms, {count:,} msgs, indexed (FTS5)", indexed)
    row(f"search_text 1 two-char term, {count:,} msgs (scan)", short)


def run_loop(coroutine: Coroutine[Any, Any, None]) -> None:
    """The server's event loop (uvloop when installed, as ``pillarbox serve`` runs): how it
    hands the GIL over between callbacks is part of what the contention figures measure."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)


# -- PostgreSQL: one node, two nodes, beside SQLite -------------------------------------------
#: Accounts the "spread" shape delivers to (an MX serving many users), round robin.
SPREAD_ACCOUNTS = 100


async def provision(store: Store, accounts: int) -> list[int]:
    """A domain and ``accounts`` accounts; their ids."""
    await store.add_domain("example.com")
    return [(await store.add_account(f"rcpt{i}@example.com", "x")).id for i in range(accounts)]


async def deliver_spread(
    store: Store, account_ids: list[int], corpus: Corpus, count: int, writers: int
) -> tuple[float, float]:
    """``count`` deliveries by ``writers`` concurrent writers, message *i* to account
    ``i mod len(account_ids)``; (wall seconds, process CPU seconds)."""
    jobs = iter([(corpus.next(), account_ids[i % len(account_ids)]) for i in range(count)])

    async def writer() -> None:
        for (raw, info), account_id in jobs:
            await store.deliver(raw, info, [DeliveryTarget(account_id)])

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(writer() for _ in range(writers)))
    return time.perf_counter() - wall, time.process_time() - cpu


def node_process(
    node: int, url: str, accounts: int, count: int, writers: int, barrier: Any
) -> tuple[float, float, float]:
    """One "node" of the two-node figure: its own process, store and pool; starts with the
    others (``barrier``) and returns (start, end, CPU seconds) on the shared monotonic clock."""
    from pillarbox.store.postgres import PostgresStore

    async def run() -> tuple[float, float, float]:
        store = PostgresStore(url)
        await store.open()
        try:
            ids = [a.id for a in await store.list_accounts()][:accounts]
            corpus = Corpus(pool=50, first_serial=(node + 2) * 10**9)  # no shared content
            barrier.wait()
            start = time.monotonic()
            _, cpu = await deliver_spread(store, ids, corpus, count, writers)
            return start, time.monotonic(), cpu
        finally:
            await store.close()

    return asyncio.run(run())


async def postgres_main(quick: bool, server: str, base: Path) -> None:
    import multiprocessing

    from pillarbox.store.postgres import PostgresStore
    from pillarbox.testing.postgres import TestDatabase

    database = TestDatabase(server)
    corpus = Corpus()
    count = 1500 if quick else 4000
    print(
        "| shape, writers"
        + " " * 44
        + " | SQLite         | PostgreSQL 1 node | PostgreSQL 2 nodes |"
    )
    print("|" + "-" * 60 + "|" + "-" * 16 + "|" + "-" * 19 + "|" + "-" * 20 + "|")
    try:
        for accounts, writers in ((1, 10), (1, 100), (SPREAD_ACCOUNTS, 10), (SPREAD_ACCOUNTS, 100)):
            rates: list[str] = []
            # SQLite, the embedded reference, same shape.
            sqlite = SqliteStore(base / f"sqlite-{accounts}-{writers}" / "db.sqlite3")
            await sqlite.open()
            ids = await provision(sqlite, accounts)
            await deliver_spread(sqlite, ids, corpus, 200, writers)  # warm-up
            seconds, cpu = await deliver_spread(sqlite, ids, corpus, count, writers)
            await sqlite.close()
            rates.append(f"{count / seconds:,.0f} ({cpu / count * 1e6:,.0f} µs)")
            # PostgreSQL, one node.
            url = database.new_store_url()
            pg = PostgresStore(url)
            await pg.open()
            ids = await provision(pg, accounts)
            await deliver_spread(pg, ids, corpus, 200, writers)
            seconds, cpu = await deliver_spread(pg, ids, corpus, count, writers)
            await pg.close()
            rates.append(f"{count / seconds:,.0f} ({cpu / count * 1e6:,.0f} µs)")
            # PostgreSQL, two nodes: two processes, each with half the writers and deliveries.
            context = multiprocessing.get_context("spawn")
            barrier = context.Manager().Barrier(2)
            with context.Pool(2) as pool:
                results = pool.starmap(
                    node_process,
                    [(n, url, accounts, count // 2, max(1, writers // 2), barrier) for n in (0, 1)],
                )
            elapsed = max(end for _, end, _ in results) - min(start for start, _, _ in results)
            cpu = sum(c for _, _, c in results)
            rates.append(f"{count // 2 * 2 / elapsed:,.0f} ({cpu / count * 1e6:,.0f} µs)")
            shape = "1 mailbox" if accounts == 1 else f"{accounts} accounts, round robin"
            print(
                f"| {shape + f', {writers} writers':<58} | {rates[0]:>14} | {rates[1]:>17} "
                f"| {rates[2]:>18} |"
            )

        # SELECT and search on PostgreSQL at scale (one mailbox).
        size = 10_000 if quick else 35_000
        pg = PostgresStore(database.new_store_url())
        await pg.open()
        [account_id] = await provision(pg, 1)
        inbox = await pg.get_mailbox(account_id, "INBOX")
        while (await pg.mailbox_status(inbox.id)).messages < size:
            await deliver_spread(pg, [account_id], corpus, 2500, 100)
        listed = await timed(lambda: pg.list_messages(inbox.id))
        status = await timed(lambda: pg.mailbox_status(inbox.id))
        word = _WORDS[1234]
        scan = await timed(lambda: pg.search_text(inbox.id, [word, "report"]))
        build = await timed(pg.catch_up_index)
        search = await timed(lambda: pg.search_text(inbox.id, [word, "report"]))
        short = await timed(lambda: pg.search_text(inbox.id, ["zq"]))
        page = await timed(lambda: pg.query_messages(inbox.id, MessageQuery(), offset=0, limit=50))
        await pg.close()
        print()
        row(f"PostgreSQL list_messages, {size:,} messages", f"{listed:.0f} ms")
        row(f"PostgreSQL mailbox_status, {size:,} messages", f"{status:.2f} ms")
        row(
            "PostgreSQL trigram indexing (behind the writes)",
            f"{size / build * 1000:,.0f} msg/s",
            f"{build / size:.2f} ms per 4 KB message",
        )
        row(f"PostgreSQL search_text 2 terms, {size:,} msgs, not indexed", f"{scan:.0f} ms")
        row(f"PostgreSQL search_text 2 terms, {size:,} msgs, indexed", f"{search:.1f} ms")
        row(f"PostgreSQL search_text 1 two-char term, {size:,} msgs", f"{short:.0f} ms")
        row(f"PostgreSQL query_messages first page of {size:,}", f"{page:.1f} ms")
    finally:
        database.drop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (about a minute)")
    parser.add_argument("--dir", type=Path, help="where to put the stores (default: a temp dir)")
    parser.add_argument(
        "--contention",
        action="store_true",
        help="only the writer beside a busy event loop (wall/CPU ms per write operation)",
    )
    parser.add_argument(
        "--store",
        default="sqlite",
        help="sqlite (default), or a postgresql:// URL of a server to compare against",
    )
    args = parser.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="pillarbox-bench-"))
    try:
        if args.contention:
            header()
            run_loop(writer_contention(base, 1000 if args.quick else 4000))
        elif args.store == "sqlite":
            asyncio.run(main(args.quick, base))
        elif args.store.startswith(("postgresql://", "postgres://")):
            asyncio.run(postgres_main(args.quick, args.store, base))
        else:
            parser.error("--store is sqlite or a postgresql:// URL")
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
