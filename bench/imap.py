"""IMAP server figures: a real mailing-list archive, idle capacity, a mixed load; prints tables.

Usage: ``python bench/imap.py [mailbox|idle|mixed] [--messages N] [--corpus PATH] [--dir DIR]
[--sessions N] [--seconds S]``

``mailbox`` (the default):
The mailbox is loaded from the linux-mips archive (mboxrd, xz): each message is
mboxrd-unescaped, given CRLF line ends (what IMAP APPEND stores), parsed once and appended
through the store in concurrent batches (the store's group commit), before the clock starts.
Then a real server runs on loopback and this script's own client measures it over TCP with
TCP_NODELAY (so Nagle's delay is not what is measured) and LITERAL+ for APPEND (no round trip
per literal), from a separate process (so it does not compete for the server's GIL). Each
figure is the median wall time from sending the command to reading its
tagged OK, with every response byte read; APPEND/s is sequential (each waits for its OK).

``idle``: ``--sessions`` connections (100 accounts) log in, SELECT INBOX and IDLE, opened by one
asyncio client process; the server's resident memory is read before and after (VmRSS of this
process, which holds the server; the clients are another process), then APPENDs from an extra
connection are timed to the ``* n EXISTS`` each idling session of that mailbox receives; the
server's CPU time per delivery (LOGIN, APPEND, LOGOUT of the extra connection and the fan-out
to its idlers) is read by the client from /proc/<server pid>/stat.

``mixed``: 10 concurrent clients loop LOGIN, SELECT, FETCH, STORE, EXPUNGE, APPEND, LOGOUT over
100 accounts for ``--seconds``; operations are commands completed. The machine is shared, so
beside each wall-clock rate the server's CPU time (user+sys from /proc/self/stat) per operation
is given: that figure does not depend on what else the machine runs.

``--dir DIR`` keeps the data directory: loading the 35,000 messages takes minutes, so load
once and reuse it (the APPENDed messages are expunged again at the end of each run). Beside
each wall-clock figure, the server's CPU time per command is given (read by the client from
/proc/<server pid>/stat; a mean over the repeats).

Both raise ``imap.max_connections``/``max_connections_per_ip`` in their server's config, and run
on loopback only, bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import multiprocessing
import os
import re
import resource
import shutil
import socket
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from pillarbox.mail.parse import parse_message
from pillarbox.store.interface import Store
from pillarbox.store.types import INBOX
from pillarbox.testing.corpus import LINUX_MIPS, mboxrd_messages
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config

CORPUS = LINUX_MIPS
USER = "bench@example.org"
BATCH = 200


async def load(store: Store, messages: list[bytes]) -> float:
    account = await store.get_account(USER)
    assert account is not None
    inbox = await store.get_mailbox(account.id, INBOX)
    started = time.perf_counter()
    for start in range(0, len(messages), BATCH):
        batch = messages[start : start + BATCH]
        await asyncio.gather(*(store.append(inbox.id, raw, parse_message(raw)) for raw in batch))
    await catch_up(store)
    return time.perf_counter() - started


async def catch_up(store: Store) -> None:
    """Finish the full-text index work pending behind the writes (a load's, or the last run's
    APPENDs and their expunge), so that it does not run beside the figures."""
    catch_up_index = getattr(store, "catch_up_index", None)
    if catch_up_index is not None:
        await catch_up_index()


class Client:
    """A minimal IMAP client: one command at a time, reads everything up to its tagged reply."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.serial = 0
        greeting = self.sock.recv(65536)
        assert greeting.startswith(b"* OK"), greeting

    def command(self, text: bytes) -> tuple[bytes, float]:
        """Send ``tag text``; return the whole response and the seconds it took."""
        self.serial += 1
        tag = b"b%d" % self.serial
        marker = b"\r\n" + tag + b" "
        buffer = bytearray(b"\r\n")  # responses start at a line start
        started = time.perf_counter()
        self.sock.sendall(tag + b" " + text + b"\r\n")
        scan = 0
        while (found := buffer.find(marker, scan)) < 0 or buffer.find(b"\r\n", found + 2) < 0:
            scan = max(0, len(buffer) - len(marker) - 1) if found < 0 else scan
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("server closed the connection")
            buffer += chunk
        elapsed = time.perf_counter() - started
        end = buffer.find(b"\r\n", found + 2)
        status = bytes(buffer[found + 2 : end]).split(b" ")[1]
        if status != b"OK":
            raise RuntimeError(f"{text[:60]!r} failed: {bytes(buffer[found:end])!r}")
        return bytes(buffer[2 : end + 2]), elapsed


def median(client: Client, command: bytes, repeat: int) -> tuple[float, float, bytes]:
    """Median wall seconds, mean server CPU seconds, and the last response."""
    times = []
    response = b""
    cpu = _cpu_seconds(os.getppid())
    for _ in range(repeat):
        response, elapsed = client.command(command)
        times.append(elapsed)
    cpu = (_cpu_seconds(os.getppid()) - cpu) / repeat
    return statistics.median(times), cpu, response


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def measure(port: int, sample: bytes) -> list[tuple[str, str, str, str]]:
    """The client side, run in its own process so that it does not share the server's GIL
    (the server is its parent: its CPU time is read from /proc, in clock ticks, so a figure
    under 10 ms is only meaningful as a mean over repeats)."""
    client = Client(port)
    client.command(f'LOGIN {USER} "{TEST_PASSWORD}"'.encode())
    rows: list[tuple[str, str, str, str]] = []
    cold, cold_cpu, _ = median(client, b"EXAMINE INBOX", 1)
    warm, cpu, response = median(client, b"EXAMINE INBOX", 5)
    found = re.search(rb"\* (\d+) EXISTS", response)
    assert found is not None
    exists = int(found.group(1))
    rows.append(("SELECT (EXAMINE) INBOX, first", _ms(cold), _ms(cold_cpu), "< 100 ms"))
    rows.append(("SELECT (EXAMINE) INBOX, again", _ms(warm), _ms(cpu), "< 100 ms"))
    seconds, cpu, response = median(client, b"UID FETCH 1:* (FLAGS)", 5)
    assert response.count(b" FETCH (") == exists
    rows.append(("UID FETCH 1:* (FLAGS)", _ms(seconds), _ms(cpu), "< 300 ms"))
    count = min(1000, exists)
    seconds, cpu, _ = median(client, b"FETCH 1:%d (ENVELOPE BODYSTRUCTURE)" % count, 3)
    rows.append((f"FETCH 1:{count} (ENVELOPE BODYSTRUCTURE)", _ms(seconds), _ms(cpu), ""))
    for term in (b"ralf", b"kernel panic", b"zzyzx"):
        seconds, cpu, response = median(client, b'SEARCH TEXT "' + term + b'"', 3)
        hits = len(response.split(b"\r\n", 1)[0].split()) - 2
        label = f'SEARCH TEXT "{term.decode()}" ({hits} found)'
        rows.append((label, _ms(seconds), _ms(cpu), "< 200 ms"))
    client.command(b"SELECT INBOX")
    appends = 300
    started = time.perf_counter()
    cpu = _cpu_seconds(os.getppid())
    uids = []
    for _ in range(appends):
        response, _ = client.command(b"APPEND INBOX {%d+}\r\n" % len(sample) + sample)
        uids += re.findall(rb"APPENDUID \d+ (\d+)", response)
    rate = appends / (time.perf_counter() - started)
    cpu = (_cpu_seconds(os.getppid()) - cpu) / appends
    label = f"APPEND, sequential ({len(sample)} octets each)"
    rows.append((label, f"{rate:.0f} /s", _ms(cpu), ""))
    # Leave the mailbox as it was, for the next run on a kept --dir.
    client.command(b"UID STORE %s:* +FLAGS.SILENT (\\Deleted)" % uids[0])
    client.command(b"UID EXPUNGE %s:*" % uids[0])
    client.command(b"LOGOUT")
    return rows


def run(messages: int, corpus: Path, directory: Path) -> None:
    """Loads the mailbox into ``directory`` unless an earlier run did (``--dir``: the load
    takes minutes, so keep a directory and reuse it; the corpus is then only sampled)."""
    config = loopback_config(directory, only=["imap"])
    with LiveServer(config) as server:
        if server.call(server.store.get_account(USER)) is None:
            raws = list(mboxrd_messages(corpus, messages))
            server.add_domain("example.org")
            server.add_account(USER, TEST_PASSWORD)
            load_seconds = server.call(load(server.store, raws), timeout=3600)
            sample = raws[len(raws) // 2]
            loaded = f"loaded in {load_seconds:.0f} s"
        else:
            sample = next(m for m in mboxrd_messages(corpus, 100) if len(m) > 2000)
            loaded = f"reused from {directory}"
            server.call(catch_up(server.store), timeout=600)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            rows = pool.submit(measure, server.port("imap"), sample).result()
    print(f"\nIMAP on a {messages:,}-message mailbox, {loaded}")
    width = max(len(row[0]) for row in rows)
    print(f"{'operation':<{width}}  {'wall':>12}  {'server CPU':>10}  target (wall)")
    for label, figure, cpu, target in rows:
        print(f"{label:<{width}}  {figure:>12}  {cpu:>10}  {target}")


# -- idle capacity and the mixed load ------------------------------------------------------

ACCOUNTS = 100
CLIENT_PASSWORD = "bench-password-0"
SMALL = b"From: a@example.net\r\nTo: b@example.org\r\nSubject: hello\r\n\r\nhi there\r\n"


def _account(n: int) -> str:
    return f"user{n}@example.org"


def _cpu_seconds(pid: int | None = None) -> float:
    """User + system time of a process (this one, the server, by default), from /proc."""
    fields = Path(f"/proc/{pid or 'self'}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _raise_nofile(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


async def _read_until(reader: asyncio.StreamReader, marker: bytes) -> bytes:
    data = bytearray()
    while marker not in data:
        chunk = await reader.read(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return bytes(data)


async def _idle_client(port: int, sessions: int, rounds: int) -> dict[str, float]:
    limit = asyncio.Semaphore(200)  # connections being set up at once

    async def open_one(n: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
        async with limit:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await _read_until(reader, b"\r\n")
            account = n % ACCOUNTS
            login = f'a LOGIN {_account(account)} "{CLIENT_PASSWORD}"\r\n'.encode()
            writer.write(login + b"b SELECT INBOX\r\nc IDLE\r\n")
            await _read_until(reader, b"+ idling")
            return reader, writer, account

    started = time.perf_counter()
    conns = await asyncio.gather(*(open_one(n) for n in range(sessions)))
    setup = time.perf_counter() - started
    print(f"{sessions} sessions idling after {setup:.1f} s; measuring", flush=True)
    await asyncio.sleep(5)  # the server process samples its RSS meanwhile
    latencies: list[float] = []
    cpu = _cpu_seconds(os.getppid())  # the server's (this client's parent)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await _read_until(reader, b"\r\n")
    for r in range(rounds):
        account = r % ACCOUNTS
        writer.write(f'l{r} LOGIN {_account(account)} "{CLIENT_PASSWORD}"\r\n'.encode())
        await _read_until(reader, b"l%d OK" % r)
        idlers = [(rd, wr) for rd, wr, acct in conns if acct == account]
        waits = [asyncio.ensure_future(_read_until(rd, b" EXISTS\r\n")) for rd, _ in idlers]
        sent = time.perf_counter()
        writer.write(b"p%d APPEND INBOX {%d+}\r\n%s\r\n" % (r, len(SMALL), SMALL))
        for done in asyncio.as_completed(waits):
            await done
            latencies.append(time.perf_counter() - sent)
        await _read_until(reader, b"p%d OK" % r)
        writer.write(b"u%d LOGOUT\r\n" % r)
        await _read_until(reader, b"u%d OK" % r)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await _read_until(reader, b"\r\n")
    cpu = _cpu_seconds(os.getppid()) - cpu
    for _, wr, _ in conns:
        wr.close()
    latencies.sort()
    return {
        "cpu": cpu / rounds,
        "setup": setup,
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[int(len(latencies) * 0.99)],
        "samples": len(latencies),
    }


def idle_client(port: int, sessions: int, rounds: int) -> dict[str, float]:
    _raise_nofile(sessions + 1000)
    return asyncio.run(_idle_client(port, sessions, rounds))


async def _mixed_client(port: int, clients: int, seconds: float) -> dict[str, float]:
    deadline = time.perf_counter() + seconds
    counts = [0] * clients

    async def command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tag: bytes,
                      text: bytes) -> None:  # fmt: skip
        writer.write(tag + b" " + text + b"\r\n")
        marker = b"\r\n" + tag + b" "
        data = bytearray(b"\r\n")  # responses start at a line start
        while (found := data.find(marker)) < 0 or data.find(b"\r\n", found + 2) < 0:
            chunk = await reader.read(65536)
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        if not data[found + len(marker) :].startswith(b"OK"):
            raise RuntimeError(bytes(data[found : found + 200]))

    async def loop(index: int) -> None:
        n = index
        while time.perf_counter() < deadline:
            account = n % ACCOUNTS
            n += clients
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await _read_until(reader, b"\r\n")
            steps = [
                f'LOGIN {_account(account)} "{CLIENT_PASSWORD}"'.encode(),
                b"SELECT INBOX",
                b"FETCH 1:* (FLAGS UID RFC822.SIZE)",
                b"STORE 1 +FLAGS (\\Deleted)",
                b"EXPUNGE",
                b"APPEND INBOX {%d+}\r\n%s" % (len(SMALL), SMALL),
                b"LOGOUT",
            ]
            for step, text in enumerate(steps):
                await command(reader, writer, b"t%d" % step, text)
                counts[index] += 1
            writer.close()

    await asyncio.gather(*(loop(i) for i in range(clients)))
    return {"ops": sum(counts)}


def mixed_client(port: int, clients: int, seconds: float) -> dict[str, float]:
    return asyncio.run(_mixed_client(port, clients, seconds))


def _with_accounts(directory: Path, seed: int) -> LiveServer:
    config = loopback_config(directory, only=["imap"])
    unlimited = dataclasses.replace(
        config.imap, max_connections=1_000_000, max_connections_per_ip=1_000_000
    )
    server = LiveServer(dataclasses.replace(config, imap=unlimited))
    server.__enter__()
    server.add_domain("example.org")
    for n in range(ACCOUNTS):
        server.add_account(_account(n), CLIENT_PASSWORD)
    account_ids = [server.call(server.store.get_account(_account(n))) for n in range(ACCOUNTS)]

    async def seed_mail() -> None:
        for account in account_ids:
            assert account is not None
            inbox = await server.store.get_mailbox(account.id, INBOX)
            for _ in range(seed):
                await server.store.append(inbox.id, SMALL, parse_message(SMALL))

    server.call(seed_mail(), timeout=600)
    return server


def run_idle(directory: Path, sessions: int, rounds: int) -> None:
    _raise_nofile(sessions + 1000)
    server = _with_accounts(directory, seed=1)
    try:
        before = _rss_bytes()
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            future = pool.submit(idle_client, server.port("imap"), sessions, rounds)
            # Sample the server's RSS while every session idles (the client waits 5 s then).
            peak = before
            while not future.done():
                time.sleep(0.5)
                peak = max(peak, _rss_bytes())
            figures = future.result()
    finally:
        server.__exit__(None, None, None)
    per_session = (peak - before) / sessions
    print(f"\nIMAP idle capacity ({ACCOUNTS} accounts, one process)")
    print(f"{'figure':<42} {'value':>14}  target")
    print(f"{'sessions in IDLE':<42} {sessions:>14,}  10,000")
    print(f"{'server RSS with them (peak)':<42} {peak / 2**20:>11.0f} MiB  < 1,024 MiB")
    print(f"{'memory per idle session':<42} {per_session / 1024:>11.1f} KiB")
    print(f"{'time to log in + SELECT + IDLE all':<42} {figures['setup']:>12.1f} s")
    print(f"{'APPEND -> EXISTS at each idler, p50':<42} {figures['p50'] * 1000:>11.1f} ms")
    print(
        f"{'APPEND -> EXISTS at each idler, p99':<42} {figures['p99'] * 1000:>11.1f} ms  < 100 ms"
    )
    print(f"{'latency samples':<42} {int(figures['samples']):>14,}")
    print(f"{'server CPU per delivery (its fan-out incl.)':<42} {figures['cpu'] * 1000:>11.1f} ms")


def run_mixed(directory: Path, seconds: float) -> None:
    server = _with_accounts(directory, seed=5)
    try:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            pool.submit(mixed_client, server.port("imap"), 1, 1.0).result()  # warm the caches
            cpu = _cpu_seconds()
            started = time.perf_counter()
            figures = pool.submit(mixed_client, server.port("imap"), 10, seconds).result()
            wall = time.perf_counter() - started
            cpu = _cpu_seconds() - cpu
    finally:
        server.__exit__(None, None, None)
    ops = figures["ops"]
    print(f"\nIMAP mixed load: 10 clients, {ACCOUNTS} accounts, {wall:.0f} s")
    print(f"{'figure':<40} {'value':>12}  target")
    print(f"{'operations / s (wall clock)':<40} {ops / wall:>12.0f}  >= 1,150-1,430 (Dovecot 2.3)")
    print(f"{'server CPU per operation':<40} {cpu / ops * 1000:>9.2f} ms")
    print(f"{'server CPU-bound rate (1 core)':<40} {ops / cpu:>12.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", choices=("mailbox", "idle", "mixed"), default="mailbox")
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--messages", type=int, default=35_000)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument(
        "--dir", type=Path, default=None, help="data directory, kept and reused (default: temp)"
    )
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="pillarbox-bench-imap-"))
    try:
        if args.mode == "idle":
            run_idle(directory, args.sessions, args.rounds)
        elif args.mode == "mixed":
            run_mixed(directory, args.seconds)
        else:
            run(args.messages, args.corpus, directory)
    finally:
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
