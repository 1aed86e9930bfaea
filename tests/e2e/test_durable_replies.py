"""A positive reply follows an fsync: ``pillarbox serve`` (SQLite) runs under ``strace -f``
while concurrent clients send mail to the MX and APPEND over IMAP, and every ``250`` after DATA
and every ``OK [APPENDUID`` is checked against the system calls: between the read that ended
the message and the write of the reply, an fsync/fdatasync of the database's WAL completed
(and, with file blobs, a staged blob file: the message's, unless a concurrent one).

A SIGKILL cannot prove this (the page cache outlives the process: tests/e2e/test_crash.py
proves the ordering of commit and reply, not the flush); a power cut would. Skipped where
strace is missing or ptrace is not allowed.
"""

from __future__ import annotations

import asyncio
import imaplib
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox import provisioning
from pillarbox.store.open import open_store
from pillarbox.testing.live import TEST_PASSWORD, free_port, loopback_config
from pillarbox.testing.nodes import _accepts

USER = "bob@example.org"
CLIENTS = 3
MESSAGES = 8  # per client and protocol

_LINE = re.compile(
    r"(?P<pid>\d+)\s+(?P<ts>\d+\.\d+)\s+(?:<\.\.\. (?P<resumed>\w+) resumed>|(?P<call>\w+)\()"
    r"(?P<rest>.*)"
)
_DURATION = re.compile(r"<(\d+\.\d+)>\s*$")
_RESULT = re.compile(r"=\s+(-?\d+)")
_FIRST_ARG = re.compile(r"\s*(\d+)\s*[,)]")


@dataclass
class Trace:
    """What the trace shows: fsyncs (path, start, end), reads and writes per fd in order."""

    syncs: list[tuple[str, float, float]] = field(default_factory=list)
    io: list[tuple[str, int, float, str]] = field(default_factory=list)  # kind, fd, time, data
    paths: dict[int, str] = field(default_factory=dict)  # fd → the path it was last opened as
    pending: dict[tuple[str, str], tuple[float, str]] = field(default_factory=dict)

    def feed(self, line: str) -> None:
        match = _LINE.match(line)
        if match is None:
            return
        ts = float(match["ts"])
        name = match["resumed"] or match["call"]
        rest = match["rest"]
        if match["resumed"]:
            started, head = self.pending.pop((match["pid"], name), (ts, ""))
            self._complete(name, head + rest, started, ts)
        elif rest.endswith("<unfinished ...>"):
            self.pending[(match["pid"], name)] = (ts, rest.removesuffix("<unfinished ...>"))
        else:
            duration = _DURATION.search(rest)
            self._complete(name, rest, ts, ts + float(duration[1]) if duration else ts)

    def _complete(self, name: str, args: str, start: float, end: float) -> None:
        result = _RESULT.search(args.rsplit(")", 1)[-1])
        if result is None or int(result[1]) < 0:
            return
        if name == "openat":
            path = args.split('"')[1] if '"' in args else ""
            self.paths[int(result[1])] = path
            return
        first = _FIRST_ARG.match(args)
        fd = int(first[1]) if first else -1
        if name in ("fsync", "fdatasync"):
            self.syncs.append((self.paths.get(fd, ""), start, end))
        elif name in ("read", "recvfrom", "write", "sendto"):
            kind = "in" if name in ("read", "recvfrom") else "out"
            self.io.append((kind, fd, start, args))

    def synced(self, after: float, before: float, path_part: str) -> bool:
        return any(
            after <= start and end <= before and path_part in path
            for path, start, end in self.syncs
        )


def _provision(config: cfg.Config, data_dir: Path) -> None:
    async def go() -> None:
        store = open_store(config.store.url, data_dir)
        await store.open()
        try:
            await provisioning.add_domain(store, "example.org")
            await provisioning.add_account(store, config, USER, TEST_PASSWORD)
        finally:
            await store.close()

    asyncio.run(go())


def _send(port: int, client: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        for n in range(MESSAGES):
            body = f"Subject: mx {client}.{n}\r\n\r\n" + "text\r\n" * (50 * n + 1)
            smtp.sendmail("friend@example.net", [USER], body)


def _append(port: int, client: int) -> None:
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=60)
    imap.login(USER, TEST_PASSWORD)
    for n in range(MESSAGES):
        body = f"Subject: append {client}.{n}\r\n\r\n" + "text\r\n" * (50 * n + 1)
        assert imap.append("INBOX", "", None, body.encode())[0] == "OK"
    imap.logout()


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
@pytest.mark.parametrize("url", ["sqlite:", "sqlite:?blobs=files"], ids=["database", "files"])
def test_every_positive_reply_follows_an_fsync(tmp_path: Path, url: str) -> None:
    ports = {"smtp": free_port("127.0.0.1"), "imap": free_port("127.0.0.1")}
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    config = loopback_config(data_dir, only=ports, ports=ports, store=cfg.StoreSection(url=url))
    _provision(config, data_dir)
    config_path = tmp_path / "pillarbox.toml"
    config_path.write_text(cfg.render_toml(config))
    trace_path = tmp_path / "trace"
    calls = "openat,fsync,fdatasync,read,recvfrom,write,sendto"
    strace = ["strace", "-f", "-ttt", "-T", "-s", "48", "-e", f"trace={calls}"]
    serve = [sys.executable, "-m", "pillarbox.cli", "--config", str(config_path), "serve"]
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        tracer = subprocess.Popen(
            [*strace, "-o", str(trace_path), *serve],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        while not all(_accepts(port) for port in ports.values()):
            if tracer.poll() is not None:
                pytest.skip(f"strace cannot trace here: {log_path.read_text(errors='replace')}")
            time.sleep(0.1)
        threads = [
            threading.Thread(target=work, args=(port, client))
            for client in range(CLIENTS)
            for work, port in ((_send, ports["smtp"]), (_append, ports["imap"]))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        server = subprocess.run(
            ["pgrep", "-P", str(tracer.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in server:  # the traced server: strace itself would only detach on SIGTERM
            subprocess.run(["kill", "-TERM", pid], check=False)
        tracer.wait(60)
    assert not tracer.returncode or tracer.returncode == -signal.SIGTERM

    trace = Trace()
    for line in trace_path.read_text(errors="replace").splitlines():
        trace.feed(line)
    last_read: dict[int, float] = {}
    checked = 0
    for kind, fd, at, data in trace.io:
        if kind == "in":
            last_read[fd] = at
            continue
        if not ('"250 2.0.0' in data or "OK [APPENDUID" in data):
            continue
        checked += 1
        ended = last_read[fd]
        assert trace.synced(ended, at, "-wal"), f"reply without a WAL fsync before it: {data}"
        if "blobs=files" in url:
            assert trace.synced(ended, at, "/blobs/tmp/"), f"blob not fsync'd before: {data}"
    assert checked == 2 * CLIENTS * MESSAGES
