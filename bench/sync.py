"""Device-to-device sync latency: a change made by one IMAP session, heard by another in IDLE.

Usage: ``python bench/sync.py [--store sqlite|postgresql://…] [--nodes 1|2] [--changes N]``

One account, two devices: device A changes the INBOX through its own session (``STORE
+FLAGS``/``-FLAGS \\Flagged`` in turn, a keyword, an APPEND, an ``UID EXPUNGE``), device B
idles on the same INBOX (RFC 2177) and waits for the untagged response the change owes it
(``FETCH … FLAGS``, ``EXISTS``, ``EXPUNGE``). Each figure is the wall time from A's command
leaving the client to B's response arriving, p50/p99 over ``--changes`` changes of each kind.

The servers are real ``pillarbox serve`` processes (:class:`pillarbox.testing.nodes.Node`),
started from a config file as an operator starts one; the client is this process (blocking
sockets, TCP_NODELAY, so Nagle's delay is not measured). With ``--nodes 2`` A talks to node
a and B to node b over one PostgreSQL store, so what is measured is the LISTEN/NOTIFY hop
(the default store URL is the test suite's, ``$PILLARBOX_TEST_POSTGRES`` or
``postgresql://postgres@127.0.0.1:5432/postgres``; a fresh database is made and dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from pillarbox import provisioning
from pillarbox.store.open import open_store
from pillarbox.testing.live import TEST_PASSWORD
from pillarbox.testing.nodes import Node
from pillarbox.testing.postgres import TestDatabase

USER = "devices@example.org"
MESSAGE = b"From: a@example.net\r\nTo: devices@example.org\r\nSubject: sync\r\n\r\nOne line.\r\n"


class Device:
    """One IMAP session over a blocking socket, as a mail app holds it."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.serial = 0
        self.line()  # greeting
        self.command(f'LOGIN {USER} "{TEST_PASSWORD}"'.encode())
        self.command(b"SELECT INBOX")

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("server closed the connection")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, text: bytes) -> list[bytes]:
        self.serial += 1
        tag = b"c%d" % self.serial
        self.send(tag + b" " + text + b"\r\n")
        return self.until(tag + b" ")

    def until(self, prefix: bytes) -> list[bytes]:
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if line.startswith(prefix):
                if not line.startswith(prefix + b"OK") and prefix.startswith(b"c"):
                    raise RuntimeError(line.decode())
                return lines


def timed(a: Device, b: Device, request: bytes, heard: re.Pattern[bytes]) -> float:
    """Seconds from ``request`` leaving A to B's line matching ``heard``; then A's reply."""
    a.serial += 1
    tag = b"c%d" % a.serial
    started = time.perf_counter()
    a.send(tag + b" " + request)
    while not heard.search(b.line()):
        pass
    elapsed = time.perf_counter() - started
    a.until(tag + b" ")
    return elapsed


def measure(a: Device, b: Device, changes: int) -> dict[str, list[float]]:
    b.serial += 1
    b.send(b"c%d IDLE\r\n" % b.serial)
    b.until(b"+ ")
    kinds: dict[str, Callable[[int], float]] = {
        "flag (STORE ±FLAGS \\Flagged -> FETCH)": lambda n: timed(
            a,
            b,
            b"UID STORE 1 %sFLAGS.SILENT (\\Flagged)\r\n" % (b"-" if n % 2 else b"+"),
            re.compile(rb"^\* 1 FETCH "),
        ),
        "keyword (STORE +FLAGS $kN -> FETCH)": lambda n: timed(
            a, b, b"UID STORE 1 +FLAGS.SILENT ($k%d)\r\n" % n, re.compile(rb"^\* 1 FETCH ")
        ),
        "new mail (APPEND -> EXISTS)": lambda n: timed(
            a,
            b,
            b"APPEND INBOX {%d+}\r\n%s\r\n" % (len(MESSAGE), MESSAGE),
            re.compile(rb"^\* \d+ EXISTS"),
        ),
    }
    figures: dict[str, list[float]] = {kind: [] for kind in kinds}
    for n in range(changes):
        for kind, change in kinds.items():
            figures[kind].append(change(n))
    # The APPENDed messages go again, one UID EXPUNGE each (UIDs 2.. in order).
    deleted = []
    for uid in range(2, 2 + changes):
        a.command(b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid)
        while not b.line().startswith(b"* "):
            pass
        deleted.append(timed(a, b, b"UID EXPUNGE %d\r\n" % uid, re.compile(rb" EXPUNGE$")))
    figures["delete (UID EXPUNGE -> EXPUNGE)"] = deleted
    b.send(b"DONE\r\n")
    b.until(b"c%d " % b.serial)
    return figures


def provision(url: str, data_dir: Path, node: Node) -> None:
    async def go() -> None:
        store = open_store(url, data_dir)
        await store.open()
        try:
            await provisioning.add_domain(store, "example.org")
            await provisioning.add_account(store, node.config, USER, TEST_PASSWORD)
        finally:
            await store.close()

    asyncio.run(go())


def _ms(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", default="sqlite", help="sqlite, or a postgresql:// server URL")
    parser.add_argument("--nodes", type=int, choices=(1, 2), default=1)
    parser.add_argument("--changes", type=int, default=100)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pillarbox-bench-sync-"))
    with ExitStack() as stack:
        if args.store == "sqlite":
            if args.nodes != 1:
                parser.error("two nodes need a PostgreSQL store")
            url = "sqlite:"
        else:
            database = TestDatabase(args.store if args.store != "postgresql" else None)
            stack.callback(database.drop)
            url = database.new_store_url()
        nodes = [Node(root, f"node-{n}", url, listeners=("imap",)) for n in range(args.nodes)]
        provision(url, root / nodes[0].name, nodes[0])
        for node in nodes:
            stack.enter_context(node)
        a = Device(nodes[0].port("imap"))
        a.command(b"APPEND INBOX {%d+}\r\n%s" % (len(MESSAGE), MESSAGE))
        b = Device(nodes[-1].port("imap"))
        figures = measure(a, b, args.changes)
    where = "one node" if args.nodes == 1 else "A on node a, B on node b"
    print(f"\nchange on device A -> untagged response in device B's IDLE ({args.store}, {where})")
    print(f"{'change':<42} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'n':>5}")
    for kind, values in figures.items():
        print(
            f"{kind:<42} {_ms(values, 50):>8.1f} {_ms(values, 99):>8.1f}"
            f" {max(values) * 1000:>8.1f} {len(values):>5}"
        )


if __name__ == "__main__":
    main()
