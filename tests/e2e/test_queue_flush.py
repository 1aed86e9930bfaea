"""``pillarbox queue flush`` wakes a running ``pillarbox serve`` at once, as Postfix's
``postqueue -f`` does: through the control socket in the data directory on SQLite, by NOTIFY
to every node on PostgreSQL. ``queue.poll_interval`` is ten minutes here, so a delivery within
seconds of the flush can only come from the wake-up.

The message waits for a smart host that was down when the server tried it; the smart host (an
aiosmtpd server) then comes up, and the operator flushes the queue.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner

from pillarbox import config as cfg
from pillarbox.cli.main import cli
from pillarbox.store.open import open_store
from pillarbox.store.types import NewQueueRecipient
from pillarbox.testing.live import TEST_STORE_ENV, free_port
from pillarbox.testing.nodes import Node
from pillarbox.testing.polling import wait_for
from pillarbox.testing.postgres import unreachable_reason

RAW = b"From: alice@example.org\r\nTo: x@far.example\r\nSubject: flushed\r\n\r\nHi.\r\n"
#: How soon after the flush the delivery must arrive: far below ``poll_interval``.
PROMPT = 3.0


class Sink:
    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope.content)
        return "250 OK"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return "sqlite:"
    reason = unreachable_reason()
    if reason is not None:
        pytest.skip(reason)
    url: str = request.getfixturevalue("database").new_store_url()
    return url


@pytest.fixture
def smarthost_port() -> Iterator[tuple[int, list[Controller]]]:
    port = free_port("127.0.0.1")
    started: list[Controller] = []
    yield port, started
    for controller in started:
        controller.stop()


def pillarbox(config: Path, *args: str) -> str:
    result = CliRunner().invoke(
        cli, ["--config", str(config), *args], env={"PILLARBOX_CONFIG": None, TEST_STORE_ENV: None}
    )
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.stdout


def enqueue(node: Node) -> None:
    async def go() -> None:
        store = open_store(node.config.store.url, node.config.data_dir)
        await store.open()
        try:
            await store.enqueue("alice@example.org", RAW, [NewQueueRecipient("x@far.example")])
        finally:
            await store.close()

    asyncio.run(go())


def deferred(node: Node) -> bool:
    [message] = json.loads(pillarbox(node.config_path, "queue", "list", "--json"))
    [recipient] = message["recipients"]
    return recipient["state"] == "deferred" and recipient["attempts"] == 1


def test_queue_flush_wakes_the_running_server(
    tmp_path: Path, store_url: str, smarthost_port: tuple[int, list[Controller]]
) -> None:
    port, started = smarthost_port
    queue = cfg.QueueSection(
        smarthost=f"127.0.0.1:{port}",
        smarthost_verify_tls=False,
        poll_interval=600.0,
        retry_schedule=(600.0,),
    )
    node = Node(tmp_path, "mx", store_url, listeners=["submission"], queue=queue)
    enqueue(node)
    with node:
        # At start the runner tries it: nobody listens on the smart host's port yet.
        wait_for(lambda: deferred(node), "the first attempt deferred", context=node.log)
        sink = Sink()
        controller = Controller(sink, hostname="127.0.0.1", port=port)
        controller.start()
        started.append(controller)
        flushed = time.monotonic()
        said = pillarbox(node.config_path, "queue", "flush")
        woken = "the running server woken" if store_url == "sqlite:" else "every running node woken"
        assert said == f"retrying 1 message ({woken})\n"
        wait_for(lambda: sink.received, "the flushed delivery", timeout=PROMPT, context=node.log)
        assert time.monotonic() - flushed < PROMPT
        assert b"Subject: flushed" in sink.received[0]
    if store_url == "sqlite:":
        # Stopped: the socket is gone, and the CLI says the retry waits for the next start.
        assert not (node.config.data_dir / "control.sock").exists()
        said = pillarbox(node.config_path, "queue", "flush")
        assert said == (
            "retrying 0 messages (no server is running on this data directory:"
            " it starts them when it starts)\n"
        )
