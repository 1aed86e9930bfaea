"""Web figures: server time of the message list of a 35,000-message folder, a message view,
and search; one table. Target: each under 100 ms.

The threaded list's first open is shown on its own line, and so is its first open after new mail
(each of ``--runs`` rounds delivers one reply into a conversation of the folder, then opens the
first page): what a list that caches the folder's threads pays when they change.

Usage: ``python bench/web.py [--messages N] [--runs N] [--dir DIR] [--mbox [PATH]]
[--store postgresql://…]``

``--mbox`` fills the folder from a real archive instead (default: the linux-mips list, densely
threaded, so the threaded list is measured on real References chains); otherwise the folder gets
synthetic, unthreaded ~2 KB messages.

With ``--dir`` the data directory is kept, and a later run over the same directory skips
filling the folder (filling 35,000 messages takes minutes on a small machine). With ``--store``
the server uses that PostgreSQL database instead of SQLite in the data directory (kept too: a
later run over the same database skips the filling).

The server is the real one (``LiveServer``: uvicorn on the server's loop, the SQLite store);
requests go over loopback with a logged-in session. "Server time" is the app's own
``Server-Timing`` figure: from the request reaching the app to the response head, with the
page fully rendered — what the server spends, without the client's or the network's share.
Round-trip time as the client saw it is shown beside it. The folder is filled with distinct
~2 KB messages before the clock starts, and the full-text index is brought up to date.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from pillarbox import config as cfg
from pillarbox.mail.parse import parse_message
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.types import INBOX, DeliveryTarget
from pillarbox.testing.corpus import LINUX_MIPS, mboxrd_messages
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.webclient import WebSession

ADDRESS = "alice@example.org"
_WORDS = [
    "".join(random.Random(i).choices("abcdefghijklmnopqrstuvwxyz", k=3 + i % 7))
    for i in range(3000)
]


def make_message(serial: int, rng: random.Random) -> bytes:
    head = (
        f"From: Sender {serial % 113} <sender{serial % 113}@example.net>\r\n"
        f"To: {ADDRESS}\r\nSubject: {rng.choice(_WORDS)} {rng.choice(_WORDS)} {serial}\r\n"
        f"Date: Mon, 3 Mar 2025 {serial % 24:02d}:{serial % 60:02d}:00 +0000\r\n"
        f"Message-ID: <{serial:09d}@bench.example.net>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    lines = [" ".join(rng.choices(_WORDS, k=10)) for _ in range(25)]
    if serial % 1000 == 0:
        lines.append("needle-phrase quarterly forecast")
    return (head + "\r\n".join(lines) + "\r\n").encode()


def synthetic_messages(count: int) -> Iterator[bytes]:
    rng = random.Random(1)
    for serial in range(1, count + 1):
        yield make_message(serial, rng)


async def fill(live: LiveServer, messages: Iterator[bytes], count: int) -> int:
    store = live.store
    account = await store.get_account(ADDRESS)
    assert account is not None

    async def writer(n: int) -> None:
        for raw in itertools.islice(messages, n):
            await store.deliver(raw, parse_message(raw), [DeliveryTarget(account.id)])

    writers = 64
    await asyncio.gather(
        *(writer(count // writers + (i < count % writers)) for i in range(writers))
    )
    if isinstance(store, SqliteStore):
        await store.catch_up_index()
    return (await store.get_mailbox(account.id, INBOX)).id


async def existing_folder(live: LiveServer) -> int | None:
    account = await live.store.get_account(ADDRESS)
    if account is None:
        return None
    return (await live.store.get_mailbox(account.id, INBOX)).id


async def deliver_reply(live: LiveServer, box: int, serial: int) -> None:
    """One new message answering the folder's middle message: its conversation comes first."""
    store = live.store
    status = await store.mailbox_status(box)
    middle = status.mailbox.uidnext // 2
    parent = (await store.message_infos(box, [middle], with_text=False))[middle].message_id
    raw = (
        f"From: Late Sender <late@example.net>\r\nTo: {ADDRESS}\r\n"
        f"Subject: Re: late reply {serial}\r\nMessage-ID: <late{serial}@bench.example.net>\r\n"
        f"In-Reply-To: <{parent}>\r\nReferences: <{parent}>\r\n\r\nlate reply\r\n"
    ).encode()
    await store.deliver(raw, parse_message(raw), [DeliveryTarget(status.mailbox.account_id)])
    if isinstance(store, SqliteStore):
        await store.catch_up_index()


def after_new_mail(
    live: LiveServer, web: WebSession, box: int, path: str, runs: int
) -> tuple[float, float]:
    """(median server ms, server CPU ms per request) of ``path`` opened right after one new
    message, over ``runs`` rounds; the delivery is outside the clocks."""
    server: list[float] = []
    cpu = 0.0
    for serial in range(runs):
        live.call(deliver_reply(live, box, serial))
        process_start, client_start = time.process_time(), time.thread_time()
        response = web.get(path)
        cpu += (time.process_time() - process_start) - (time.thread_time() - client_start)
        assert response.status_code == 200, (path, response.status_code)
        server.append(float(response.headers["server-timing"].split("dur=")[1]))
    return statistics.median(server), cpu * 1000 / runs


def measure(web: WebSession, path: str, runs: int) -> tuple[float, float, float, float]:
    """(median server ms, p95 server ms, median round-trip ms, server CPU ms per request)
    after one warm-up.

    Server CPU is the process's CPU time less the calling (client) thread's: the server's loop
    thread, the store's reader and writer threads, the blocking pool. On a shared machine it is
    the figure contention disturbs least.
    """
    server: list[float] = []
    trip: list[float] = []
    web.get(path)
    process_start, client_start = time.process_time(), time.thread_time()
    for attempt in range(runs + 1):
        start = time.perf_counter()
        response = web.get(path)
        elapsed = (time.perf_counter() - start) * 1000
        assert response.status_code == 200, (path, response.status_code)
        timing = response.headers["server-timing"]
        if attempt:  # the first request warms caches (snapshot, page cache)
            server.append(float(timing.split("dur=")[1]))
            trip.append(elapsed)
    cpu = (time.process_time() - process_start) - (time.thread_time() - client_start)
    server.sort()
    p95 = server[min(len(server) - 1, int(len(server) * 0.95))]
    return statistics.median(server), p95, statistics.median(trip), cpu * 1000 / (runs + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=35_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--dir", type=Path, help="keep (and reuse) the data directory here")
    parser.add_argument(
        "--mbox",
        type=Path,
        nargs="?",
        const=LINUX_MIPS,
        help="fill from this xz mboxrd archive (default: the linux-mips list)",
    )
    parser.add_argument("--store", help="a postgresql:// URL (default: SQLite in the data dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        store = {"store": cfg.StoreSection(url=args.store)} if args.store else {}
        config = loopback_config(root / "data", only=["http"], **store)
        with LiveServer(config) as live:
            box = live.call(existing_folder(live))
            if box is None:
                live.add_domain("example.org")
                live.add_account(ADDRESS, TEST_PASSWORD)
                started = time.perf_counter()
                source = (
                    mboxrd_messages(args.mbox, args.messages)
                    if args.mbox
                    else synthetic_messages(args.messages)
                )
                box = live.call(fill(live, source, args.messages), timeout=3600)
                print(f"filled {args.messages} messages in {time.perf_counter() - started:.0f} s")
            args.messages = live.call(live.store.mailbox_status(box)).messages
            web = WebSession(live)
            assert web.login(ADDRESS).status_code == 303
            middle = args.messages // 2
            # The first threaded list, and the first after new mail, timed alone.
            process_start, client_start = time.process_time(), time.thread_time()
            cold = web.get(f"/mail/{box}?view=threads")
            cold_cpu = (time.process_time() - process_start) - (time.thread_time() - client_start)
            cold_ms = float(cold.headers["server-timing"].split("dur=")[1])
            new_ms, new_cpu = after_new_mail(live, web, box, f"/mail/{box}?view=threads", args.runs)
            args.messages += args.runs
            cases = [
                ("threaded list, first page", f"/mail/{box}?view=threads"),
                ("threaded list, page 100", f"/mail/{box}?view=threads&page=100"),
                ("message list, first page (date)", f"/mail/{box}"),
                ("message list, page 350 (date)", f"/mail/{box}?page=350"),
                ("message list, sorted by subject", f"/mail/{box}?sort=subject&order=asc"),
                ("message list, sorted by sender", f"/mail/{box}?sort=from&order=asc"),
                ("message list, unread only", f"/mail/{box}?unseen=1"),
                ("message view", f"/mail/{box}/{middle}"),
                ("message source", f"/mail/{box}/{middle}/source"),
                ("search, one word (full text)", f"/mail/{box}?q=forecast"),
                (
                    "search, phrase + sender filter",
                    f"/mail/{box}?q=%22needle-phrase%22&from=sender",
                ),
                ("search, subject filter", f"/mail/{box}?subject=report"),
                ("JSON API message list", f"/api/v1/mailboxes/{box}/messages"),
            ]
            print(f"\nWeb server time, {args.messages:,}-message folder, {args.runs} runs each")
            load = os.getloadavg()[0]
            print(f"(load average {load:.1f} on {os.cpu_count()} CPUs at the start)")
            print(
                f"{'request':<36} {'median ms':>10} {'p95 ms':>8} {'round trip':>11}"
                f" {'server CPU ms':>14}"
            )
            print(
                f"{'threaded list, first open (cold)':<36} {cold_ms:>10.1f} {'':>20}"
                f" {cold_cpu * 1000:>14.1f}"
            )
            print(
                f"{'threaded list, after one new message':<36} {new_ms:>10.1f} {'':>20}"
                f" {new_cpu:>14.1f}"
            )
            for label, path in cases:
                median, p95, trip, cpu = measure(web, path, args.runs)
                flag = "" if median < 100 else "  (over 100 ms)"
                print(f"{label:<36} {median:>10.1f} {p95:>8.1f} {trip:>11.1f} {cpu:>14.1f}{flag}")
            web.close()


if __name__ == "__main__":
    main()
