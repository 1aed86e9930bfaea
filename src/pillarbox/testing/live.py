"""A real Pillarbox server on loopback for tests: every listener on port 0, in a thread.

The server runs on its own event loop in a background thread, so tests can drive it with the
blocking standard-library clients (smtplib, imaplib, poplib) exactly as a user's program would;
nothing of ours is mocked. Accounts are made through the same provisioning code as the CLI,
with cheap argon2 parameters so a test suite stays fast.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import smtplib
import socket
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from pillarbox import config as cfg
from pillarbox import provisioning
from pillarbox.net.serve import Server
from pillarbox.store.interface import Store
from pillarbox.store.types import Account

T = TypeVar("T")

#: The password of every account the test fixtures create.
TEST_PASSWORD = "a long test password"

#: argon2id settings for tests only: fast, still the real algorithm.
TEST_AUTH = cfg.AuthSection(
    argon2_time_cost=1,
    argon2_memory_cost=1024,
    argon2_parallelism=1,
    scram_iterations=4096,
    min_password_length=8,
)


#: Environment variable naming a PostgreSQL server for the test servers' stores (see
#: :func:`loopback_config`); unset: SQLite.
TEST_STORE_ENV = "PILLARBOX_TEST_STORE"

#: Where test servers send DNS queries unless a test names its own server: a loopback port
#: nobody listens on, so a test never asks the machine's resolver (no traffic leaves the host)
#: and lookups fail fast as temporary errors.
NO_DNS = "127.0.0.1:9"


#: Ports :func:`free_port` draws from: below the kernel's ephemeral range (Linux's default
#: starts at 32768), so that no client connection made meanwhile — by this test or a run
#: beside it — is given the port before its server binds it.
_FREE_PORTS = range(20000, 32768)
#: The ports :func:`free_port` handed out lately, oldest first (an ordered set), never handed
#: out again while kept: each caller binds its port later, so two calls of one test (two
#: listeners of a server, two frontends of one HAProxy) could be given the same port free at
#: both times. Seen: HAProxy, which binds with SO_REUSEPORT, listened for two frontends on
#: one port and sent a ManageSieve client to the POP3 backend. A port handed out 4,096 calls
#: ago has been bound or dropped by now.
_HANDED_OUT: dict[int, None] = {}
_HANDED_OUT_KEPT = 4096


def free_port(*addresses: str) -> int:
    """A port free for TCP and UDP on every one of ``addresses`` (loopback IPs), for servers
    that must share one port number on several addresses (SMTP's remote port, DNS), or that
    are bound later by another program (a peer's configured port); not one this process
    handed out lately."""
    for _ in range(200):
        port = secrets.choice(_FREE_PORTS)  # not `random`: tests may seed it
        if port in _HANDED_OUT:
            continue
        try:
            for address in addresses:
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    with socket.socket(socket.AF_INET, kind) as taken:
                        taken.bind((address, port))
        except OSError:
            continue
        _HANDED_OUT[port] = None
        if len(_HANDED_OUT) > _HANDED_OUT_KEPT:
            del _HANDED_OUT[next(iter(_HANDED_OUT))]
        return port
    raise RuntimeError(f"no port free on all of {', '.join(addresses)}")


def loopback_config(
    data_dir: Path,
    *,
    only: Iterable[str] | None = None,
    address: str = "127.0.0.1",
    ports: Mapping[str, int] | None = None,
    **sections: Any,
) -> cfg.Config:
    """A loopback config with listeners on ephemeral ports (all, or ``only`` those named) and
    plaintext login allowed (tests exercise TLS explicitly where it matters).

    ``address`` is where every listener binds (several servers can share ports on 127.0.0.2,
    127.0.0.3, …); ``ports`` fixes the port of some listeners. DNS goes to :data:`NO_DNS`
    unless ``dns=`` is given. With ``$PILLARBOX_TEST_STORE`` set to a PostgreSQL server's URL,
    each config gets a fresh, empty PostgreSQL store there instead of SQLite in ``data_dir``
    (so the same suites run on both backends), unless ``store=`` is given.
    """
    wanted = set(cfg.LISTENER_DOCS if only is None else only)
    fixed = ports or {}
    listeners = cfg.Listeners(
        **{
            name: cfg.Listener(address=address, port=fixed.get(name, 0), enabled=name in wanted)
            for name in cfg.LISTENER_DOCS
        }
    )
    base = cfg.Config(
        server=cfg.ServerSection(hostname="mx.test", data_dir=str(data_dir), shutdown_grace=2.0),
        listeners=listeners,
        auth=TEST_AUTH,
        smtp=cfg.SmtpSection(auth_without_tls=True, max_connections_per_ip=1000),
        imap=cfg.ImapSection(login_without_tls=True),
        pop3=cfg.Pop3Section(login_without_tls=True),
        managesieve=cfg.ManageSieveSection(login_without_tls=True),
        dns=cfg.DnsSection(nameserver=NO_DNS, timeout=1.0),
    )
    server = os.environ.get(TEST_STORE_ENV)
    if server and "store" not in sections:
        from pillarbox.testing.postgres import shared_database

        sections["store"] = cfg.StoreSection(url=shared_database(server).new_store_url())
    return dataclasses.replace(base, **sections)


def serving_dns(config: cfg.Config, port: int, **dns: Any) -> cfg.Config:
    """``config`` with its authoritative DNS server on 127.0.0.1:``port`` and the other
    ``[dns]`` fields in ``dns``."""
    return dataclasses.replace(
        config,
        dns=dataclasses.replace(
            config.dns,
            authoritative_enabled=True,
            authoritative_address="127.0.0.1",
            authoritative_port=port,
            **dns,
        ),
    )


class LiveServer:
    """``with LiveServer(config) as server:`` — started on enter, stopped gracefully on exit."""

    def __init__(
        self,
        config: cfg.Config,
        *,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
    ) -> None:
        """``loop_factory``: the event loop to serve on (``uvloop.new_event_loop`` to run as
        production does where uvloop is installed)."""
        self.config = config
        self._loop = loop_factory()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.server = Server(config)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        try:
            self.call(self.server.start())
        except BaseException:
            self._shutdown_loop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.call(self.server.stop())
        finally:
            self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def call(self, coro: Awaitable[T], timeout: float = 60) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(_wrap(coro), self._loop)
        return future.result(timeout)

    def port(self, listener: str) -> int:
        return self.server.listeners[listener].ports[0][1]

    @property
    def store(self) -> Store:
        assert self.server.context is not None
        return self.server.context.store

    def with_store(self, action: Callable[[Store], Awaitable[T]]) -> T:
        return self.call(action(self.store))

    def add_domain(self, name: str) -> None:
        self.call(provisioning.add_domain(self.store, name))

    def add_account(self, address: str, password: str, **options: Any) -> Account:
        return self.call(
            provisioning.add_account(self.store, self.config, address, password, **options)
        )

    def create_mailbox(self, address: str, name: str) -> None:
        """A folder for one account, as a mail app would create it."""

        async def go() -> None:
            account = await self.store.get_account(address)
            assert account is not None, address
            await self.store.create_mailbox(account.id, name)

        self.call(go())

    def activate_sieve(self, address: str, script: str, name: str = "main") -> None:
        """Store ``script`` for one account and make it the active one (no compile check: a
        test may want a broken script in place)."""
        self.put_sieve(address, script, name, active=True)

    def put_sieve(self, address: str, script: str, name: str, *, active: bool = False) -> None:
        """Store (or replace) one account's script ``name``; ``active`` makes it the one
        delivery runs (else the active one stays: an included script, RFC 6609)."""

        async def go() -> None:
            account = await self.store.get_account(address)
            assert account is not None, address
            await self.store.put_sieve_script(account.id, name, script)
            if active:
                await self.store.set_active_sieve_script(account.id, name)

        self.call(go())

    def mailbox_messages(self, address: str, mailbox: str) -> list[bytes]:
        """The stored bytes of every message in one account's mailbox, in UID order."""

        async def go() -> list[bytes]:
            account = await self.store.get_account(address)
            assert account is not None, address
            box = await self.store.get_mailbox(account.id, mailbox)
            return [
                await self.store.read_blob(r.blob_id)
                for r in await self.store.list_messages(box.id)
            ]

        return self.call(go())

    def deliver(self, recipient: str, subject: str, sender: str = "friend@example.net") -> None:
        """A small message for ``recipient`` through the MX listener, as another server
        would send it (plain SMTP, no AUTH)."""
        with smtplib.SMTP("127.0.0.1", self.port("smtp")) as client:
            client.sendmail(
                sender,
                [recipient],
                f"From: {sender}\r\nTo: {recipient}\r\nSubject: {subject}\r\n\r\nHi.\r\n",
            )


async def _wrap(coro: Awaitable[T]) -> T:
    return await coro


class LiveServerPool:
    """Live servers shared by a module's tests, one per distinct settings: each started on
    first use with ``example.org`` hosted, all stopped by :meth:`close` (the transcript tests
    replay dozens of transcripts against a few configurations)."""

    def __init__(self) -> None:
        self._running: dict[tuple[str, ...], LiveServer] = {}

    def get(self, settings: Mapping[str, object], config: Callable[[], cfg.Config]) -> LiveServer:
        """The server for ``settings``, started from ``config()`` if it is not running yet."""
        key = tuple(sorted(f"{k}={v}" for k, v in settings.items()))
        if key not in self._running:
            server = LiveServer(config()).__enter__()
            server.add_domain("example.org")
            self._running[key] = server
        return self._running[key]

    def close(self) -> None:
        for server in self._running.values():
            server.__exit__(None, None, None)
        self._running.clear()
