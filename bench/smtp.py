"""SMTP intake benchmark: accepted-and-durable messages/s and DATA→250 latency.

Starts ``pillarbox serve`` as a separate process (its own interpreter and core, as in
production) with only the MX listener, then drives it over loopback with a small pipelining
client (TCP_NODELAY, MAIL+RCPT+DATA in one write, RFC 2920). Every message is parsed, indexed
and fsync'd by the server before its 250 — that is what is measured. A table is printed; this is
not a timed test.

    python bench/smtp.py [--messages 2000] [--size 4096] [--store URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pillarbox import config as cfg
from pillarbox import provisioning
from pillarbox.cli.main import run_store

DOMAIN = "bench.test"
RECIPIENT = f"inbox@{DOMAIN}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def message(size: int, n: int) -> bytes:
    header = (
        f"From: load@example.net\r\nTo: {RECIPIENT}\r\nSubject: bench {n}\r\n"
        f"Message-ID: <bench.{n}.{time.time_ns()}@example.net>\r\n\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    body = line * ((size - len(header)) // len(line) + 1)
    return header + body[: max(0, size - len(header) - 2)] + b"\r\n"


def start_server(data_dir: Path, store_url: str | None) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = cfg.dev_config(str(data_dir))
    listeners = cfg.Listeners(
        **{
            name: cfg.Listener(port=port if name == "smtp" else 0, enabled=name == "smtp")
            for name in cfg.LISTENER_DOCS
        }
    )
    import dataclasses

    config = dataclasses.replace(
        config,
        listeners=listeners,
        smtp=cfg.SmtpSection(max_connections_per_ip=1000, max_connections=5000),
        logging=cfg.LoggingSection(level="WARNING"),
    )
    if store_url:
        config = dataclasses.replace(config, store=cfg.StoreSection(url=store_url))
    path = data_dir / "pillarbox.toml"
    path.write_text(cfg.render_toml(config))
    loaded = cfg.load(path)
    run_store(loaded, lambda s: provisioning.add_domain(s, DOMAIN))
    run_store(
        loaded,
        lambda s: provisioning.add_account(
            s,
            dataclasses.replace(loaded, auth=cfg.AuthSection(argon2_memory_cost=1024)),
            RECIPIENT,
            "bench password 123",
        ),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "pillarbox.cli", "--config", str(path), "serve"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start")


class Client:
    """A minimal pipelining SMTP client that times each DATA→250."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = cls(reader, writer)
        await client.reply()  # greeting
        writer.write(b"EHLO bench.example\r\n")
        await client.reply()
        return client

    async def reply(self) -> int:
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError("server closed")
            if line[3:4] != b"-":
                return int(line[:3])

    async def send(self, raw: bytes) -> float:
        envelope = f"MAIL FROM:<load@example.net> SIZE={len(raw)}\r\nRCPT TO:<{RECIPIENT}>\r\n"
        self.writer.write(envelope.encode() + b"DATA\r\n")
        codes = [await self.reply() for _ in range(3)]
        if codes != [250, 250, 354]:
            raise RuntimeError(f"unexpected replies {codes}")
        self.writer.write(raw + b".\r\n")
        start = time.perf_counter()
        code = await self.reply()
        latency = time.perf_counter() - start
        if code != 250:
            raise RuntimeError(f"message refused: {code}")
        return latency

    async def quit(self) -> None:
        self.writer.write(b"QUIT\r\n")
        await self.reply()
        self.writer.close()


async def reuse(port: int, connections: int, total: int, size: int) -> tuple[float, list[float]]:
    per = total // connections
    latencies: list[float] = []

    async def worker(w: int) -> None:
        client = await Client.connect(port)
        for n in range(per):
            latencies.append(await client.send(message(size, w * per + n)))
        await client.quit()

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(connections)))
    return per * connections / (time.perf_counter() - start), latencies


async def one_per_connection(
    port: int, sessions: int, total: int, size: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker() -> None:
        for n in counter:
            client = await Client.connect(port)
            latencies.append(await client.send(message(size, n)))
            await client.quit()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(sessions)))
    return total / (time.perf_counter() - start), latencies


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process (Linux), to report cost per message even when the
    machine is shared and wall-clock rates are noisy."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--store", default=None, help="store URL (default: SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        process, port = start_server(Path(tmp), args.store)
        try:
            rows = []
            for connections in (1, 10, 50):
                cpu = cpu_seconds(process.pid)
                rate, lat = asyncio.run(reuse(port, connections, args.messages, args.size))
                cost = (cpu_seconds(process.pid) - cpu) / args.messages * 1000
                rows.append((f"reuse, {connections} conn", rate, pct(lat, 50), pct(lat, 99), cost))
            for sessions in (20, 50):
                cpu = cpu_seconds(process.pid)
                rate, lat = asyncio.run(
                    one_per_connection(port, sessions, args.messages, args.size)
                )
                cost = (cpu_seconds(process.pid) - cpu) / args.messages * 1000
                rows.append(
                    (f"1 msg/conn, {sessions} conc", rate, pct(lat, 50), pct(lat, 99), cost)
                )
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(
        f"SMTP intake, {args.size} B messages, {args.messages} per row, store "
        f"{args.store or 'sqlite'}, pid cpu count {os.cpu_count()}"
    )
    print(f"{'scenario':<24} {'msg/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'srv CPU ms/msg':>15}")
    for name, rate, p50, p99, cost in rows:
        print(f"{name:<24} {rate:>9.0f} {p50:>8.1f} {p99:>8.1f} {cost:>15.2f}")


if __name__ == "__main__":
    main()
