"""Fixtures that start a real Pillarbox on loopback (see :mod:`pillarbox.testing.live`)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pillarbox.dns.authoritative import AuthoritativeServer
from pillarbox.testing.dnszone import ZoneRecord, build_zones
from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.live import LiveServer, loopback_config


@pytest.fixture
def dns_records() -> list[ZoneRecord]:
    """What ``dns_port`` serves; a test module overrides it with its senders' records."""
    return []


@pytest.fixture
def dns_port(dns_records: list[ZoneRecord]) -> Iterator[int]:
    """A loopback DNS server for ``dns_records``, on its own loop in a thread (smtplib blocks
    the test's)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    zones, rejected = build_zones(dns_records)
    assert not rejected
    server = AuthoritativeServer(zones)
    asyncio.run_coroutine_threadsafe(server.start("127.0.0.1", 0), loop).result(10)
    yield server.port
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@pytest.fixture
def live(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """A server with two accounts; ``@pytest.mark.listeners("pop3", …)`` limits its listeners."""
    marker = request.node.get_closest_marker("listeners")
    only = marker.args if marker else None
    with LiveServer(loopback_config(tmp_path / "data", only=only)) as server:
        server.add_domain("example.org")
        server.add_account("alice@example.org", PASSWORD)
        server.add_account("bob@example.org", PASSWORD)
        yield server
