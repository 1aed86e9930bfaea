"""The ``queue.*_timeout`` keys reach the running server's deliveries: a remote host that takes
the connection and never greets is given up after ``queue.greeting_timeout``, not the RFC 5321
§4.5.3.2.1 five minutes, and the deferral says so."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.testing.dnszone import ZoneRecord
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, free_port, loopback_config
from pillarbox.testing.polling import wait_for


@pytest.fixture
def dns_records() -> list[ZoneRecord]:
    return [
        ZoneRecord("silent.test", "MX", "10 mx.silent.test."),
        ZoneRecord("mx.silent.test", "A", "127.0.0.1"),
    ]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A host whose kernel completes connections that nobody ever answers."""
    port = free_port("127.0.0.1")
    with socket.create_server(("127.0.0.1", port)) as listener:
        listener.listen(8)
        yield port


def test_greeting_timeout_is_the_configured_one(
    tmp_path: Path, dns_port: int, silent_port: int
) -> None:
    config = loopback_config(
        tmp_path / "data",
        only=["submission"],
        dns=cfg.DnsSection(nameserver=f"127.0.0.1:{dns_port}", timeout=2.0),
        queue=cfg.QueueSection(remote_port=silent_port, greeting_timeout=0.5),
    )
    with LiveServer(config) as server:
        server.add_domain("example.org")
        server.add_account("alice@example.org", TEST_PASSWORD)
        with smtplib.SMTP("127.0.0.1", server.port("submission")) as client:
            client.login("alice@example.org", TEST_PASSWORD)
            client.sendmail(
                "alice@example.org",
                ["bob@silent.test"],
                "From: alice@example.org\r\nTo: bob@silent.test\r\nSubject: s\r\n\r\nHi.\r\n",
            )

        async def last_reply() -> str | None:
            return next(
                (r.last_reply for m in await server.store.list_queue() for r in m.recipients),
                None,
            )

        reply = wait_for(lambda: server.call(last_reply()), "a deferral", timeout=15.0)
        assert "451 4.4.2" in reply and "timed out waiting for the reply to greeting" in reply
