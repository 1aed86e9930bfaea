"""IMAP server figures on a real mailing-list archive; prints one table.

Usage: ``python bench/imap.py [--messages N] [--corpus PATH] [--dir DIR]``

The mailbox is loaded from the linux-mips archive (mboxrd, xz): each message is
mboxrd-unescaped, given CRLF line ends (what IMAP APPEND stores), parsed once and appended
through the store in concurrent batches (the store's group commit), before the clock starts.
Then a real server runs on loopback and this script's own client measures it over TCP with
TCP_NODELAY (so Nagle's delay is not what is measured) and LITERAL+ for APPEND (no round trip
per literal), from a separate process (so it does not compete for the server's GIL). Each
figure is the median wall time from sending the command to reading its
tagged OK, with every response byte read; APPEND/s is sequential (each waits for its OK).
"""

from __future__ import annotations

import argparse
import asyncio
import lzma
import multiprocessing
import re
import shutil
import socket
import statistics
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from pillarbox.imap.session import normalise_line_endings
from pillarbox.mail.parse import parse_message
from pillarbox.store.interface import Store
from pillarbox.store.types import INBOX
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config

CORPUS = Path("/work/shared/corpora/mbox/linux-mips-first35000.mboxrd.xz")
USER = "bench@example.org"
BATCH = 200
_FROM_QUOTED = re.compile(rb"^>(>*From )", re.MULTILINE)


def mboxrd_messages(path: Path, limit: int) -> Iterator[bytes]:
    """Messages of an mboxrd file: split at ``From `` lines, one ``>`` removed from quoted
    ``>From`` lines (the mboxrd rule), line ends made CRLF."""
    current: list[bytes] = []
    count = 0
    with lzma.open(path, "rb") as stream:
        for line in stream:
            if line.startswith(b"From "):
                if current:
                    yield normalise_line_endings(_FROM_QUOTED.sub(rb"\1", b"".join(current)))
                    count += 1
                    if count >= limit:
                        return
                current = []
                continue
            current.append(line)
    if current and count < limit:
        yield normalise_line_endings(_FROM_QUOTED.sub(rb"\1", b"".join(current)))


async def load(store: Store, messages: list[bytes]) -> float:
    account = await store.get_account(USER)
    assert account is not None
    inbox = await store.get_mailbox(account.id, INBOX)
    started = time.perf_counter()
    for start in range(0, len(messages), BATCH):
        batch = messages[start : start + BATCH]
        await asyncio.gather(*(store.append(inbox.id, raw, parse_message(raw)) for raw in batch))
    catch_up = getattr(store, "catch_up_index", None)
    if catch_up is not None:
        await catch_up()  # the full-text index is built behind the writes
    return time.perf_counter() - started


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


def median(client: Client, command: bytes, repeat: int) -> tuple[float, bytes]:
    times = []
    response = b""
    for _ in range(repeat):
        response, elapsed = client.command(command)
        times.append(elapsed)
    return statistics.median(times), response


def measure(port: int, sample: bytes) -> list[tuple[str, str, str]]:
    """The client side, run in its own process so that it does not share the server's GIL."""
    client = Client(port)
    client.command(f'LOGIN {USER} "{TEST_PASSWORD}"'.encode())
    rows: list[tuple[str, str, str]] = []
    _, cold = client.command(b"EXAMINE INBOX")
    warm, response = median(client, b"EXAMINE INBOX", 5)
    found = re.search(rb"\* (\d+) EXISTS", response)
    assert found is not None
    exists = int(found.group(1))
    rows.append(("SELECT (EXAMINE) INBOX, first", f"{cold * 1000:.1f} ms", ""))
    rows.append(("SELECT (EXAMINE) INBOX, again", f"{warm * 1000:.1f} ms", "< 100 ms"))
    seconds, response = median(client, b"UID FETCH 1:* (FLAGS)", 5)
    assert response.count(b" FETCH (") == exists
    rows.append(("UID FETCH 1:* (FLAGS)", f"{seconds * 1000:.1f} ms", "< 300 ms"))
    count = min(1000, exists)
    seconds, _ = median(client, b"FETCH 1:%d (ENVELOPE BODYSTRUCTURE)" % count, 3)
    rows.append((f"FETCH 1:{count} (ENVELOPE BODYSTRUCTURE)", f"{seconds * 1000:.1f} ms", ""))
    for term in (b"ralf", b"kernel panic", b"zzyzx"):
        seconds, response = median(client, b'SEARCH TEXT "' + term + b'"', 3)
        hits = len(response.split(b"\r\n", 1)[0].split()) - 2
        label = f'SEARCH TEXT "{term.decode()}" ({hits} found)'
        rows.append((label, f"{seconds * 1000:.1f} ms", "< 200 ms"))
    client.command(b"SELECT INBOX")
    appends = 300
    started = time.perf_counter()
    for _ in range(appends):
        client.command(b"APPEND INBOX {%d+}\r\n" % len(sample) + sample)
    rate = appends / (time.perf_counter() - started)
    rows.append((f"APPEND, sequential ({len(sample)} octets each)", f"{rate:.0f} /s", ""))
    client.command(b"LOGOUT")
    return rows


def run(messages: int, corpus: Path, directory: Path) -> None:
    raws = list(mboxrd_messages(corpus, messages))
    config = loopback_config(directory, only=["imap"])
    with LiveServer(config) as server:
        if server.call(server.store.get_account(USER)) is None:
            server.add_domain("example.org")
            server.add_account(USER, TEST_PASSWORD)
            load_seconds = server.call(load(server.store, raws), timeout=3600)
        else:  # --dir of an earlier run: the mailbox is there already
            load_seconds = 0.0
        size = sum(len(raw) for raw in raws)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            rows = pool.submit(measure, server.port("imap"), raws[len(raws) // 2]).result()
    print(f"\nIMAP on {len(raws):,} messages ({size / 1e6:.0f} MB), loaded in {load_seconds:.0f} s")
    width = max(len(row[0]) for row in rows)
    print(f"{'operation':<{width}}  {'figure':>12}  target")
    for label, figure, target in rows:
        print(f"{label:<{width}}  {figure:>12}  {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=35_000)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument(
        "--dir", type=Path, default=None, help="data directory, kept and reused (default: temp)"
    )
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="pillarbox-bench-imap-"))
    try:
        run(args.messages, args.corpus, directory)
    finally:
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
