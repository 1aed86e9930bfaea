"""SMTP intake benchmark: accepted-and-durable messages/s and DATA→250 latency.

Starts ``pillarbox serve`` as a separate process (its own interpreter and core, as in
production) with only the MX listener, then drives it over loopback with a small pipelining
client (TCP_NODELAY, MAIL+RCPT+DATA in one write, RFC 2920). Every message is parsed, judged by
the default inbound policy, stored and fsync'd by the server before its 250 — that is what is
measured. A table is printed; this is not a timed test. Besides the rate and the DATA→250
percentiles it shows the worst latency, the server's CPU per message and this process's (the
client's, plus with ``--untrusted`` the DNS server's thread): a client near a full core would
be measuring itself.

The policy sees what an MX in service sees: the global and the account's classifier models are
trained first (``--train`` synthetic messages, the account's model with a tenth of them), and
each message is ~4 KB of words drawn from the same vocabulary, so every message's tokens are
looked up in a model of tens of thousands of tokens. By default the client is on loopback,
which ``policy.trusted_networks`` trusts (no SPF/DKIM/DMARC: local injection); ``--untrusted``
empties that list, DKIM-signs every message (RSA-2048, before the clock starts) and answers
the server's SPF, DKIM and DMARC lookups from a DNS server on loopback — the path of mail
from the internet.

    python bench/smtp.py [--messages 2000] [--size 4096] [--store URL] [--untrusted]
        [--train 2000] [--rows reuse1,reuse10,reuse50,conn20,conn50] [--no-policy] [--core]
        [--reference | --connect PORT] [--server-src DIR] [--milter ADDRESS]

``--reference`` drives aiosmtpd writing one fsync'd file per message (``smtp_reference.py``)
with the same client, to put the figures of the VM of the day beside the issue's reference;
``--connect`` drives a server that is already running (Postfix, as docs/performance.md sets it
up), whose CPU it does not measure.
``--server-src`` runs the server on another build of ``src`` (a mypyc-compiled one,
docs/performance.md "Session 14") while the client stays on this one.
``--milter`` has the MX ask a mail filter that is already running (docs/milter.md; the
filter's CPU is not in the server's column).
``--core`` prints only the CPU cost of the sans-I/O SMTP core for a one-message session, in
this process: the floor under every figure of the table.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import gc
import itertools
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pillarbox import config as cfg
from pillarbox import provisioning
from pillarbox.cli.main import run_store
from pillarbox.mail.parse import parse_message
from pillarbox.policy.classifier import message_tokens
from pillarbox.queue import dkim
from pillarbox.smtp import replies
from pillarbox.smtp.grammar import Hello, MailFrom, RcptTo
from pillarbox.smtp.sentinels import CLOSED, NEED_DATA
from pillarbox.smtp.server import DataEnd, ServerConnection, SmtpServerSettings
from pillarbox.store.interface import Store
from pillarbox.store.types import SpamCounts
from pillarbox.testing.dnszone import ZoneRecord, serve_test_zones

DOMAIN = "bench.test"
RECIPIENT = f"inbox@{DOMAIN}"
SENDER_DOMAIN = "example.net"
SENDER = f"load@{SENDER_DOMAIN}"
ROWS = ("reuse1", "reuse10", "reuse50", "conn20", "conn50")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Corpus:
    """Deterministic messages of words from one vocabulary (Zipf-like frequencies, as text
    has), so bench mail and training mail share most of their tokens."""

    def __init__(self, seed: int = 25) -> None:
        rng = random.Random(seed)
        letters = "abcdefghijklmnopqrstuvwxyz"
        self.words = [
            "".join(rng.choice(letters) for _ in range(rng.randint(3, 10))) for _ in range(20_000)
        ]
        self.cumulative = list(itertools.accumulate(1 / (rank + 1) for rank in range(20_000)))
        self._rng = rng

    def text(self, size: int) -> bytes:
        """Lines of up to ~70 characters, CRLF-terminated, about ``size`` octets in all."""
        lines: list[str] = []
        line: list[str] = []
        length = width = 0
        while length < size:
            for word in self._rng.choices(self.words, cum_weights=self.cumulative, k=200):
                line.append(word)
                width += len(word) + 1
                if width > 70:
                    lines.append(" ".join(line))
                    length += width + 1
                    line, width = [], 0
                    if length >= size:
                        break
        return ("\r\n".join(lines) + "\r\n").encode()

    def message(self, size: int, n: int, subject_word: str = "bench") -> bytes:
        header = (
            f"From: Load <{SENDER}>\r\nTo: {RECIPIENT}\r\nSubject: {subject_word} {n}\r\n"
            f"Date: Sun, 29 Nov 2026 09:00:00 +0000\r\n"
            f"Message-ID: <bench.{n}.{time.time_ns()}@{SENDER_DOMAIN}>\r\n\r\n"
        ).encode()
        return header + self.text(size - len(header))


def training_tallies(corpus: Corpus, count: int) -> tuple[dict[str, SpamCounts], SpamCounts]:
    """Token tallies of ``count`` training messages, alternately ham and spam."""
    tallies: dict[str, SpamCounts] = {}
    for n in range(count):
        spam = n % 2 == 1
        raw = corpus.message(4096, n, "offer" if spam else "minutes")
        for token in message_tokens(raw, parse_message(raw)):
            old = tallies.get(token, SpamCounts())
            tallies[token] = SpamCounts(old.ham + (not spam), old.spam + spam)
    return tallies, SpamCounts(ham=count - count // 2, spam=count // 2)


async def train(
    account_id: int | None, totals: SpamCounts, tokens: dict[str, SpamCounts], store: Store
) -> None:
    await store.train_spam_model(account_id, totals, tokens)


def start_server(
    data_dir: Path,
    args: argparse.Namespace,
    corpus: Corpus,
    nameserver: str,
    *,
    wrapper: Sequence[str] = (),
    sqlite: cfg.SqliteSection | None = None,
    start_timeout: float = 30,
) -> tuple[subprocess.Popen[bytes], int]:
    """The server, its models trained. ``wrapper`` runs it under another program (valgrind,
    ``smtp_callgrind.py``), ``sqlite`` replaces the SQLite store's tuning section."""
    port = free_port()
    config = cfg.dev_config(str(data_dir))
    listeners = cfg.Listeners(
        **{
            name: cfg.Listener(port=port if name == "smtp" else 0, enabled=name == "smtp")
            for name in cfg.LISTENER_DOCS
        }
    )
    policy = cfg.PolicySection(enabled=not args.no_policy)
    if args.untrusted:
        policy = dataclasses.replace(policy, trusted_networks=())
    config = dataclasses.replace(
        config,
        listeners=listeners,
        smtp=cfg.SmtpSection(max_connections_per_ip=1000, max_connections=5000),
        logging=cfg.LoggingSection(level=args.log_level),
        policy=policy,
        dns=cfg.DnsSection(nameserver=nameserver),
    )
    if args.milter:
        config = dataclasses.replace(config, milter=cfg.MilterSection(mx=(args.milter,)))
    if args.store:
        config = dataclasses.replace(config, store=cfg.StoreSection(url=args.store))
    if sqlite is not None:
        config = dataclasses.replace(config, store=dataclasses.replace(config.store, sqlite=sqlite))
    path = data_dir / "pillarbox.toml"
    path.write_text(cfg.render_toml(config))
    loaded = cfg.load(path)
    run_store(loaded, lambda s: provisioning.add_domain(s, DOMAIN))
    account = run_store(
        loaded,
        lambda s: provisioning.add_account(
            s,
            dataclasses.replace(loaded, auth=cfg.AuthSection(argon2_memory_cost=1024)),
            RECIPIENT,
            "bench password 123",
        ),
    )
    if args.train:
        for account_id, count in ((None, args.train), (account.id, args.train // 10)):
            tokens, totals = training_tallies(corpus, count)
            run_store(loaded, functools.partial(train, account_id, totals, tokens))
    env = os.environ.copy()
    if args.server_src:
        # A build of src/ elsewhere (a mypyc one, docs/performance.md) for the server alone;
        # this process, the client, stays on the source it was started with.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (args.server_src, env.get("PYTHONPATH"))))
    process = subprocess.Popen(
        [*wrapper, sys.executable, "-m", "pillarbox.cli", "--config", str(path), "serve"],
        stdout=subprocess.DEVNULL,
        env=env,
    )
    listening(process, port, start_timeout)
    return process, port


def start_reference(data_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    script = Path(__file__).with_name("smtp_reference.py")
    process = subprocess.Popen([sys.executable, str(script), str(port), str(data_dir)])
    listening(process, port)
    return process, port


def listening(process: subprocess.Popen[bytes], port: int, timeout: float = 30) -> None:
    """Wait until ``process`` accepts connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
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
        envelope = f"MAIL FROM:<{SENDER}> SIZE={len(raw)}\r\nRCPT TO:<{RECIPIENT}>\r\n"
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


async def reuse(port: int, connections: int, messages: list[bytes]) -> tuple[float, list[float]]:
    per = len(messages) // connections
    latencies: list[float] = []

    async def worker(w: int) -> None:
        client = await Client.connect(port)
        for raw in messages[w * per : (w + 1) * per]:
            latencies.append(await client.send(raw))
        await client.quit()

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(connections)))
    return per * connections / (time.perf_counter() - start), latencies


async def one_per_connection(
    port: int, sessions: int, messages: list[bytes]
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    pending = iter(messages)

    async def worker() -> None:
        for raw in pending:
            client = await Client.connect(port)
            latencies.append(await client.send(raw))
            await client.quit()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(sessions)))
    return len(messages) / (time.perf_counter() - start), latencies


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process (Linux), to report cost per message even when the
    machine is shared and wall-clock rates are noisy. System time is shown apart: on loopback
    the sender's ``send`` also runs the receiving side's TCP processing, which a NIC would take
    off the server's CPU."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else 0.0


@contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection in the load generator while a row runs: a full collection of this
    process took 16–32 ms, stalling every connection's clock at once, and showed up as the
    server's p99. Collected between rows instead."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@contextmanager
def sender_dns(key: dkim.DkimKey | None) -> Iterator[str]:
    """The sending domain's SPF, DMARC and DKIM records, served on loopback from a thread of
    this process for the duration; yields the ``dns.nameserver`` value for the server."""
    records = [
        ZoneRecord(SENDER_DOMAIN, "TXT", "v=spf1 ip4:127.0.0.0/8 -all"),
        ZoneRecord(f"_dmarc.{SENDER_DOMAIN}", "TXT", "v=DMARC1; p=quarantine"),
    ]
    if key is not None:
        name = f"{key.selector}._domainkey.{SENDER_DOMAIN}"
        records.append(ZoneRecord(name, "TXT", dkim.public_record(key)))
    ready: list[str] = []
    started, stop = threading.Event(), threading.Event()

    async def serve() -> None:
        async with serve_test_zones(records) as server:
            ready.append(f"127.0.0.1:{server.port}")
            started.set()
            await asyncio.to_thread(stop.wait)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield ready[0]
    finally:
        stop.set()
        thread.join()


def core_floor(messages: list[bytes]) -> float:
    """CPU ms per message of the sans-I/O SMTP core alone (no sockets, store or policy): one
    session per message — greeting, EHLO, MAIL, RCPT, DATA, QUIT — each decision accepted at
    once. The floor under the server's figures that no store or policy work can lower."""
    settings = SmtpServerSettings(hostname="bench.example")
    start = time.process_time()
    for raw in messages:
        core = ServerConnection(settings)
        core.greet(replies.service_ready("bench.example"))
        envelope = f"MAIL FROM:<{SENDER}> SIZE={len(raw)}\r\nRCPT TO:<{RECIPIENT}>\r\nDATA\r\n"
        for data in (b"EHLO client.example\r\n", envelope.encode(), raw + b".\r\nQUIT\r\n"):
            core.receive_data(data, 0.0)
            while (event := core.next_event()) not in (NEED_DATA, CLOSED):
                if isinstance(event, Hello | MailFrom | RcptTo):
                    core.accept()
                elif isinstance(event, DataEnd):
                    core.answer(replies.MESSAGE_ACCEPTED)
            core.data_to_send(0.0)
    return (time.process_time() - start) / len(messages) * 1000


def signer(key: dkim.DkimKey | None) -> Callable[[bytes], bytes]:
    if key is None:
        return lambda raw: raw
    return lambda raw: dkim.sign(raw, SENDER_DOMAIN, [key]) + raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--store", default=None, help="store URL (default: SQLite)")
    parser.add_argument("--train", type=int, default=2000, help="training messages (global)")
    parser.add_argument("--untrusted", action="store_true", help="mail as from the internet")
    parser.add_argument("--no-policy", action="store_true", help="policy.enabled = false")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"subset of {','.join(ROWS)}")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="the server's logging.level (INFO, the default config, logs ~4 lines a message)",
    )
    parser.add_argument(
        "--server-src",
        metavar="DIR",
        help="put DIR first on the server's PYTHONPATH (e.g. a compiled build's src)",
    )
    parser.add_argument(
        "--milter",
        metavar="ADDRESS",
        help="a mail filter the MX asks (milter.mx, e.g. unix:/run/opendkim/opendkim.sock)",
    )
    parser.add_argument("--core", action="store_true", help="only the sans-I/O core's CPU floor")
    parser.add_argument(
        "--connect",
        type=int,
        metavar="PORT",
        help=f"drive a server already running on 127.0.0.1:PORT (e.g. Postfix) for {RECIPIENT}",
    )
    parser.add_argument(
        "--reference",
        action="store_true",
        help="drive aiosmtpd writing fsync'd files instead (bench/smtp_reference.py)",
    )
    args = parser.parse_args()
    if args.core:
        corpus = Corpus()
        sample = [corpus.message(args.size, n) for n in range(args.messages)]
        print(f"sans-I/O SMTP core alone: {core_floor(sample):.3f} ms CPU per one-message session")
        return
    rows_wanted = args.rows.split(",")
    corpus = Corpus()
    key = (
        dkim.generate_key(dkim.DkimAlgorithm.RSA_SHA256, now=datetime.now(UTC))
        if args.untrusted
        else None
    )
    sign = signer(key)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, sender_dns(key) as nameserver:
        process: subprocess.Popen[bytes] | None = None
        if args.connect:
            port = args.connect
        elif args.reference:
            process, port = start_reference(Path(tmp))
        else:
            process, port = start_server(Path(tmp), args, corpus, nameserver)

        def server_cpu() -> tuple[float, float]:
            """The server's CPU, NaN for a server this bench did not start (not measured)."""
            return cpu_seconds(process.pid) if process is not None else (math.nan, math.nan)

        try:
            for row in rows_wanted:
                count = int(row.removeprefix("reuse").removeprefix("conn"))
                messages = [sign(corpus.message(args.size, n)) for n in range(args.messages)]
                cpu, own = server_cpu(), cpu_seconds(os.getpid())
                with collector_paused():
                    if row.startswith("reuse"):
                        name = f"reuse, {count} conn"
                        rate, lat = asyncio.run(reuse(port, count, messages))
                    else:
                        name = f"1 msg/conn, {count} conc"
                        rate, lat = asyncio.run(one_per_connection(port, count, messages))
                user, system = (
                    (after - before) / len(lat) * 1000
                    for after, before in zip(server_cpu(), cpu, strict=True)
                )
                client = sum(cpu_seconds(os.getpid())) - sum(own)
                rows.append(
                    (
                        name,
                        rate,
                        pct(lat, 50),
                        pct(lat, 99),
                        max(lat) * 1000,
                        user + system,
                        system,
                        client / len(lat) * 1000,
                    )
                )
        finally:
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
    policy = "off" if args.no_policy else ("untrusted+DNS" if args.untrusted else "trusted")
    if args.connect:
        server = f"a server already running on port {args.connect} (its CPU: nan)"
    elif args.reference:
        server = "REFERENCE aiosmtpd, one fsync'd file per message"
    else:
        server = f"store {args.store or 'sqlite'}, policy {policy}, model trained on {args.train}"
    print(
        f"SMTP intake, {args.size} B messages, {args.messages} per row, {server}, "
        f"cpu count {os.cpu_count()}"
    )
    print(
        f"{'scenario':<24} {'msg/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'srv CPU ms/msg':>15} {'of it sys':>10} {'client CPU':>11}"
    )
    for name, rate, p50, p99, worst, cost, system, client in rows:
        print(
            f"{name:<24} {rate:>9.0f} {p50:>8.1f} {p99:>8.1f} {worst:>8.1f} {cost:>15.2f} "
            f"{system:>10.2f} {client:>11.2f}"
        )


if __name__ == "__main__":
    main()
