"""ManageSieve benchmark: script uploads (compile + durable store write), downloads and
listings over one connection, and whole sessions (connect, capabilities, PLAIN login, LOGOUT).

``pillarbox serve`` runs as its own process with only the managesieve listener; a raw-socket
client (no client library overhead) talks to it over loopback, one command at a time, as mail
apps do. Prints a table; not a timed test.

    python bench/managesieve.py [--scripts 500] [--sessions 200]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from smtp import free_port

from pillarbox import config as cfg
from pillarbox import provisioning
from pillarbox.store.open import open_store

ADDRESS = "sieve@bench.test"
PASSWORD = "bench password 123"
#: A typical filter: a few rules with fileinto, flags and a vacation (about 600 octets).
SCRIPT = (
    'require ["fileinto", "imap4flags", "vacation", "envelope", "subaddress"];\r\n'
    'if header :contains "list-id" "dev.lists.example" { fileinto "Lists/dev"; stop; }\r\n'
    'if address :is :domain "from" "example.com" { addflag "\\\\Flagged"; }\r\n'
    'if envelope :detail "to" "receipts" { fileinto :flags "\\\\Seen" "Receipts"; }\r\n'
    'if header :matches "subject" "*[SPAM]*" { fileinto "Junk"; stop; }\r\n'
    'if anyof (size :over 5M, header :contains "x-priority" "5") { fileinto "Bulk"; }\r\n'
    'vacation :days 7 :subject "Away" "I am away until Monday; your mail will be read then.";\r\n'
)
MAX_SCRIPTS = 1_000_000


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.status()

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def status(self) -> bytes:
        while not (line := self.line()).startswith((b"OK", b"NO", b"BYE")):
            pass
        if not line.startswith(b"OK"):
            raise RuntimeError(line.decode())
        return line

    def command(self, data: bytes) -> bytes:
        self.sock.sendall(data)
        return self.status()

    def login(self) -> None:
        plain = base64.b64encode(f"\0{ADDRESS}\0{PASSWORD}".encode())
        self.command(b'AUTHENTICATE "PLAIN" "' + plain + b'"\r\n')


async def prepare(config: cfg.Config) -> None:
    store = open_store(config.store.url, config.data_dir)
    await store.open()
    try:
        await provisioning.add_domain(store, "bench.test")
        await provisioning.add_account(store, config, ADDRESS, PASSWORD)
    finally:
        await store.close()


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>10.0f} /s   {seconds / count * 1000:>7.2f} ms each"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripts", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = cfg.dev_config(tmp)
        config = dataclasses.replace(
            config,
            listeners=cfg.Listeners(
                **{
                    name: cfg.Listener(port=port if name == "managesieve" else 0)
                    if name == "managesieve"
                    else cfg.Listener(enabled=False)
                    for name in cfg.LISTENER_DOCS
                }
            ),
            auth=cfg.AuthSection(argon2_memory_cost=1024),
            sieve=dataclasses.replace(config.sieve, max_scripts=MAX_SCRIPTS),
            logging=cfg.LoggingSection(level="WARNING"),
        )
        path = Path(tmp) / "pillarbox.toml"
        path.write_text(cfg.render_toml(config))
        config = cfg.load(path)
        asyncio.run(prepare(config))
        process = subprocess.Popen(
            [sys.executable, "-m", "pillarbox.cli", "--config", str(path), "serve"],
            stdout=subprocess.DEVNULL,
        )
        try:
            for _ in range(300):
                try:
                    client = Client(port)
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                raise RuntimeError("server did not start")
            client.login()
            body = SCRIPT.encode()
            t0 = time.perf_counter()
            for n in range(args.scripts):
                name = f"script-{n}".encode()
                client.command(b'PUTSCRIPT "%s" {%d+}\r\n%s\r\n' % (name, len(body), body))
            put = time.perf_counter() - t0
            t0 = time.perf_counter()
            for n in range(args.scripts):
                client.command(b'GETSCRIPT "script-%d"\r\n' % n)
            get = time.perf_counter() - t0
            t0 = time.perf_counter()
            for _ in range(args.scripts):
                client.command(b"CHECKSCRIPT {%d+}\r\n%s\r\n" % (len(body), body))
            check = time.perf_counter() - t0
            t0 = time.perf_counter()
            listings = 50
            for _ in range(listings):
                client.command(b"LISTSCRIPTS\r\n")
            listing = time.perf_counter() - t0
            client.command(b"LOGOUT\r\n")
            t0 = time.perf_counter()
            for _ in range(args.sessions):
                session = Client(port)
                session.login()
                session.command(b"LOGOUT\r\n")
                session.sock.close()
            sessions = time.perf_counter() - t0
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(f"ManageSieve, one client, {len(body)}-octet script, SQLite store")
    print(f"{'PUTSCRIPT (compile + store)':<38} {rate(args.scripts, put)}")
    print(f"{'GETSCRIPT':<38} {rate(args.scripts, get)}")
    print(f"{'CHECKSCRIPT (compile only)':<38} {rate(args.scripts, check)}")
    print(f"{f'LISTSCRIPTS of {args.scripts} scripts':<38} {rate(listings, listing)}")
    print(f"{'session: connect, PLAIN, LOGOUT':<38} {rate(args.sessions, sessions)}")


if __name__ == "__main__":
    main()
