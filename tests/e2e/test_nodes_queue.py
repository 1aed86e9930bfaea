"""The outbound queue over two ``pillarbox serve`` processes sharing one PostgreSQL database:
node A claims a message and is killed (SIGKILL) in the middle of delivering it; once A's lease
runs out, node B takes the claim over and delivers it, exactly once.

The remote end is an aiosmtpd server on loopback (the smart host of both nodes) that can hold
a session at RCPT, which pins the delivery on node A at the moment of the kill.

Skipped without a PostgreSQL server (``$PILLARBOX_TEST_POSTGRES`` or 127.0.0.1:5432).
"""

from __future__ import annotations

import asyncio
import smtplib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller

from pillarbox import config as cfg
from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.live import free_port
from pillarbox.testing.nodes import node_pair
from pillarbox.testing.postgres import TestDatabase, needs_postgres

pytestmark = needs_postgres()

USER = "alice@example.org"
LEASE = 3.0


@dataclass
class Sink:
    """Keeps every message it accepts; while ``hold`` is set, sessions wait at RCPT."""

    hold: threading.Event = field(default_factory=threading.Event)
    held: threading.Event = field(default_factory=threading.Event)
    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        while self.hold.is_set():
            self.held.set()
            await asyncio.sleep(0.05)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((session.host_name, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler = Sink()
    port = free_port("127.0.0.1")
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    handler.hold.clear()
    controller.stop()


def test_a_killed_nodes_claim_is_taken_over_after_the_lease(
    tmp_path: Path, database: TestDatabase, sink: tuple[Sink, int]
) -> None:
    handler, port = sink
    url = database.new_store_url()
    queue = cfg.QueueSection(
        smarthost=f"127.0.0.1:{port}",
        smarthost_verify_tls=False,
        lease=LEASE,
        poll_interval=0.5,
    )
    a, b = node_pair(tmp_path, url, USER, PASSWORD, listeners=["submission"], queue=queue)
    handler.hold.set()
    with a:
        with smtplib.SMTP("127.0.0.1", a.port("submission")) as client:
            client.login(USER, PASSWORD)
            client.sendmail(
                USER,
                ["x@remote.example", "y@remote.example"],
                f"From: {USER}\r\nTo: x@remote.example\r\nSubject: once\r\n\r\nonly once\r\n",
            )
        assert handler.held.wait(20), a.log()[-2000:]  # node A is delivering it now
        a.kill()
    with psycopg.connect(url) as conn:
        claims = conn.execute("SELECT lease_owner FROM queue_messages").fetchall()
    assert claims == [("node-a.test",)]  # the dead node's claim outlives it

    handler.hold.clear()
    killed_at = time.monotonic()
    with b:
        deadline = killed_at + LEASE + 30
        while not handler.received and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # a second delivery, were there one, would arrive meanwhile
        assert len(handler.received) == 1, b.log()[-2000:]
        [(helo, rcpts, content)] = handler.received
        assert helo == "node-b.test"
        assert sorted(rcpts) == ["x@remote.example", "y@remote.example"]
        assert b"only once" in content
        with psycopg.connect(url) as conn:
            for _ in range(50):
                if conn.execute("SELECT count(*) FROM queue_messages").fetchone() == (0,):
                    break
                time.sleep(0.1)
            assert conn.execute("SELECT count(*) FROM queue_messages").fetchone() == (0,)
