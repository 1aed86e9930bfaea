"""A real Pillarbox server on loopback for tests: every listener on port 0, in a thread.

The server runs on its own event loop in a background thread, so tests can drive it with the
blocking standard-library clients (smtplib, imaplib, poplib) exactly as a user's program would;
nothing of ours is mocked. Accounts are made through the same provisioning code as the CLI,
with cheap argon2 parameters so a test suite stays fast.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Awaitable, Callable, Iterable
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


def loopback_config(
    data_dir: Path, *, only: Iterable[str] | None = None, **sections: Any
) -> cfg.Config:
    """A loopback config with listeners on ephemeral ports (all, or ``only`` those named) and
    plaintext login allowed (tests exercise TLS explicitly where it matters)."""
    wanted = set(cfg.LISTENER_DOCS if only is None else only)
    listeners = cfg.Listeners(
        **{
            name: cfg.Listener(address="127.0.0.1", port=0, enabled=name in wanted)
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
    )
    return dataclasses.replace(base, **sections)


class LiveServer:
    """``with LiveServer(config) as server:`` — started on enter, stopped gracefully on exit."""

    def __init__(self, config: cfg.Config) -> None:
        self.config = config
        self._loop = asyncio.new_event_loop()
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


async def _wrap(coro: Awaitable[T]) -> T:
    return await coro
