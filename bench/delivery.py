"""Queue-to-remote delivery throughput over loopback to 10 destination domains; prints a table.

Usage: ``python bench/delivery.py [--messages N] [--size BYTES] [--dir DIR]``

Set-up (before the clock starts): a SQLite store holding N queued messages (one recipient
each, spread round-robin over ``d0.test`` … ``d9.test``); Pillarbox's authoritative DNS server
on loopback publishing an MX and an A record per domain; one aiosmtpd receiver per domain on
its own loopback address (127.0.0.10 … 127.0.0.19), all on one port, as real MX hosts would be
(aiosmtpd offers no CHUNKING, so bodies go with DATA and dot-stuffing). Every receiver runs on
its own thread and event loop, and the sender's queue runner on the main one — all on the same
two cores, so the figure is a floor for the sender.

Measured: the wall time from the runner's first claim until the queue is empty, i.e. reading
each message from the store, the MX and address lookups (cached after the first), the SMTP
sessions (STARTTLS is not offered by the receivers, so the sessions stay plaintext), and
recording every result durably (one fsync'd write per message, group-committed).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from pillarbox.dns.authoritative import StaticZones, serve_zones
from pillarbox.dns.records import DnsRecord
from pillarbox.dns.resolver import DnsResolver
from pillarbox.net.smtp_client import SessionSettings
from pillarbox.queue.routing import Router
from pillarbox.queue.runner import QueueRunner, RunnerLimits
from pillarbox.queue.schedule import RetryPolicy
from pillarbox.smtp.client import SmtpClientSettings
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.types import NewQueueRecipient
from pillarbox.testing.live import free_port

DOMAINS = 10
ENQUEUE_BATCH = 100
#: (concurrency, per_domain) settings measured, one table row each.
SETTINGS = ((10, 1), (20, 2), (40, 4))


class Counter:
    """An aiosmtpd handler that accepts everything and counts messages."""

    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received += 1
        return "250 2.0.0 accepted"


def message(n: int, size: int) -> bytes:
    head = (
        f"From: sender@bench.test\r\nTo: user{n}@d{n % DOMAINS}.test\r\n"
        f"Subject: bench {n}\r\nMessage-ID: <{n}@bench.test>\r\n\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog. 0123456789\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


async def fill(store: SqliteStore, count: int, size: int) -> None:
    for start in range(0, count, ENQUEUE_BATCH):
        await asyncio.gather(
            *(
                store.enqueue(
                    "sender@bench.test",
                    message(n, size),
                    [NewQueueRecipient(f"user{n}@d{n % DOMAINS}.test")],
                )
                for n in range(start, min(count, start + ENQUEUE_BATCH))
            )
        )


async def measure(
    directory: Path,
    resolver: DnsResolver,
    port: int,
    counters: list[Counter],
    count: int,
    size: int,
    settings: tuple[int, int],
) -> tuple[float, int, int]:
    """(seconds until the queue is empty, messages received, messages left in the queue)."""
    store = SqliteStore(directory / f"bench-{settings[0]}-{settings[1]}.sqlite3")
    await store.open()
    try:
        await fill(store, count, size)
        before = sum(c.received for c in counters)
        wakeup = asyncio.Event()
        runner = QueueRunner(
            store=store,
            router=Router(store),
            resolver=resolver,
            policy=RetryPolicy(schedule=(60.0,), lifetime=3600.0),
            hostname="bench.test",
            wakeup=wakeup,
            remote_port=port,
            session=SessionSettings(client=SmtpClientSettings(hostname="bench.test")),
            limits=RunnerLimits(concurrency=settings[0], per_domain=settings[1], poll_interval=0.5),
        )
        started = time.perf_counter()
        task = asyncio.create_task(runner.run())
        deadline = started + 300
        # Polled: the receivers count on their own threads and loops.
        while sum(c.received for c in counters) - before < count:
            if time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.01)
        while await store.list_queue():  # the last results being recorded
            if time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        received = sum(c.received for c in counters) - before
        return elapsed, received, len(await store.list_queue())
    finally:
        await store.close()


async def main(count: int, size: int, directory: Path) -> None:
    addresses = [f"127.0.0.{10 + d}" for d in range(DOMAINS)]
    port = free_port(*addresses)
    counters = [Counter() for _ in range(DOMAINS)]
    controllers = [
        Controller(counter, hostname=address, port=port)
        for counter, address in zip(counters, addresses, strict=True)
    ]
    for controller in controllers:
        controller.start()
    records = []
    for d, address in enumerate(addresses):
        records += [
            DnsRecord(f"d{d}.test", "MX", f"10 mx.d{d}.test."),
            DnsRecord(f"mx.d{d}.test", "A", address),
        ]
    zones = StaticZones.from_records(records, origins=[f"d{d}.test" for d in range(DOMAINS)])
    rows = []
    try:
        async with serve_zones(zones) as dns_server:
            resolver = DnsResolver(nameserver=f"127.0.0.1:{dns_server.port}", timeout=2.0)
            for settings in SETTINGS:
                elapsed, received, left = await measure(
                    directory, resolver, port, counters, count, size, settings
                )
                rows.append((settings, received, left, elapsed))
    finally:
        for controller in controllers:
            controller.stop()
    print(
        f"queue → remote SMTP over loopback: {count} messages of ~{size} bytes, {DOMAINS} domains"
    )
    print()
    print("| concurrency | per domain | delivered | left | seconds | messages/s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for (concurrency, per_domain), received, left, elapsed in rows:
        print(
            f"| {concurrency} | {per_domain} | {received} | {left} | {elapsed:.2f} "
            f"| {received / elapsed:.0f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--dir", type=Path, default=None, help="Where the stores go (temp dir).")
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="pillarbox-bench-"))
    try:
        asyncio.run(main(args.messages, args.size, work))
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
