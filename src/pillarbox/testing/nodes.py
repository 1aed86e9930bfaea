"""Several ``pillarbox serve`` processes over one PostgreSQL store, for the many-node tests.

Each :class:`Node` is a real server process, started from its own config file exactly as an
operator starts one (``pillarbox --config node-a.toml serve``), with its own host name (the
queue's lease owner), data directory (TLS files) and loopback ports; only the store is shared.
Tests kill them with SIGKILL to play a crashed machine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from pillarbox import config as cfg
from pillarbox import provisioning
from pillarbox.store.postgres import PostgresStore
from pillarbox.testing.live import TEST_STORE_ENV, free_port, loopback_config


class Node:
    """``with Node(...) as node:`` — a server process, ready once its listeners accept."""

    def __init__(
        self,
        root: Path,
        name: str,
        store_url: str,
        *,
        listeners: Iterable[str] = ("smtp", "submission", "imap"),
        ports: Mapping[str, int] | None = None,
        program: Sequence[str] = ("-m", "pillarbox.cli"),
        **sections: Any,
    ) -> None:
        """``ports``: listeners' ports chosen by the test (another server connects there);
        the others get free loopback ports. ``program``: what the interpreter runs, given
        ``--config PATH serve`` (a script standing in for another version of Pillarbox)."""
        self.name = name
        self.program = tuple(program)
        wanted = tuple(listeners)
        chosen = ports or {}
        self.ports = {
            listener: chosen.get(listener) or free_port("127.0.0.1") for listener in wanted
        }
        base = loopback_config(
            root / name,
            only=wanted,
            ports=self.ports,
            store=cfg.StoreSection(url=store_url),
            **sections,
        )
        self.config = dataclasses.replace(
            base, server=dataclasses.replace(base.server, hostname=f"{name}.test")
        )
        self.config_path = root / f"{name}.toml"
        self.log_path = root / f"{name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        self.config_path.write_text(cfg.render_toml(self.config), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PILLARBOX")}
        env.pop(TEST_STORE_ENV, None)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, *self.program, "--config", str(self.config_path), "serve"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        for port in self.ports.values():
            while not _accepts(port):
                if self._process.poll() is not None:
                    raise RuntimeError(f"node {self.name} exited: {self.log()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node {self.name} did not start: {self.log()[-2000:]}")
                time.sleep(0.05)

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"node {self.name} was not started")
        return self._process.pid

    def port(self, listener: str) -> int:
        return self.ports[listener]

    def kill(self) -> None:
        """SIGKILL: no shutdown, no released claims, as a machine that lost power."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(10)

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Node:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def provision_account(node: Node, store_url: str, address: str, password: str) -> None:
    """Host ``address``'s domain and add the account in the shared store, before the nodes start
    (the account's password hash follows ``node``'s config)."""

    async def provision() -> None:
        store = PostgresStore(store_url)
        await store.open()
        try:
            await provisioning.add_domain(store, address.rpartition("@")[2])
            await provisioning.add_account(store, node.config, address, password)
        finally:
            await store.close()

    asyncio.run(provision())


def node_pair(
    root: Path, store_url: str, address: str, password: str, **options: Any
) -> tuple[Node, Node]:
    """Nodes ``node-a`` and ``node-b``, alike but for their names, ports and data directories
    (``options`` as :class:`Node` takes them), over the store at ``store_url`` with the account
    ``address`` provisioned: two machines behind one load balancer. Not started, so that a
    test may adjust their config first or start one alone (``with a, b:`` starts both)."""
    a, b = (Node(root, name, store_url, **options) for name in ("node-a", "node-b"))
    provision_account(a, store_url, address, password)
    return a, b


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
