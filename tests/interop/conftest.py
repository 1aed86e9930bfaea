"""Fixtures that start a real Pillarbox on loopback (see :mod:`pillarbox.testing.live`)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox import provisioning
from pillarbox.dns.authoritative import AuthoritativeServer, StaticZone, StaticZones
from pillarbox.store.sqlite import SqliteStore
from pillarbox.testing.dnszone import ZoneRecord, build_zones
from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.live import LiveServer, loopback_config
from pillarbox.testing.webclient import WebSession


@pytest.fixture
def dns_records() -> list[ZoneRecord]:
    """What ``dns_port`` serves; a test module overrides it with its senders' records."""
    return []


@pytest.fixture
def dns_secure() -> list[str]:
    """Names whose zones ``dns_port`` answers with the AD bit (DNSSEC "secure", for DANE)."""
    return []


class _Failing:
    """The zones, but the names in ``failing`` (read at each query) are refused, as a name
    under no zone is: the resolver reports a temporary failure."""

    def __init__(self, zones: StaticZones, failing: set[str]) -> None:
        self._zones, self._failing = zones, failing

    async def zone_for(self, name: str) -> StaticZone | None:
        return None if name in self._failing else await self._zones.zone_for(name)


@pytest.fixture
def dns_failing() -> set[str]:
    """Names ``dns_port`` answers REFUSED (a temporary failure) while they are in the set."""
    return set()


@pytest.fixture
def dns_port(
    dns_records: list[ZoneRecord], dns_secure: list[str], dns_failing: set[str]
) -> Iterator[int]:
    """A loopback DNS server for ``dns_records``, on its own loop in a thread (smtplib blocks
    the test's)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    zones, rejected = build_zones(dns_records, secure=dns_secure)
    assert not rejected
    server = AuthoritativeServer(_Failing(zones, dns_failing))
    asyncio.run_coroutine_threadsafe(server.start("127.0.0.1", 0), loop).result(10)
    yield server.port
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def _serve_two_accounts(config: cfg.Config) -> Iterator[LiveServer]:
    with LiveServer(config) as server:
        server.add_domain("example.org")
        server.add_account("alice@example.org", PASSWORD)
        server.add_account("bob@example.org", PASSWORD)
        yield server


def _listeners(request: pytest.FixtureRequest) -> tuple[str, ...] | None:
    marker = request.node.get_closest_marker("listeners")
    return marker.args if marker else None


@pytest.fixture
def live(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """A server with two accounts; ``@pytest.mark.listeners("pop3", …)`` limits its listeners."""
    yield from _serve_two_accounts(loopback_config(tmp_path / "data", only=_listeners(request)))


@pytest.fixture
def alice(live: LiveServer) -> Iterator[WebSession]:
    """alice@example.org logged in to ``live``'s webmail over http."""
    session = WebSession(live)
    assert session.login("alice@example.org").status_code == 303
    yield session
    session.close()


@pytest.fixture
def tls_live(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """``live`` as deployed for users: passwords only over TLS (STARTTLS or implicit), so a
    client that would send one in the clear fails the test instead of passing."""
    config = loopback_config(
        tmp_path / "data",
        only=_listeners(request),
        smtp=cfg.SmtpSection(auth_without_tls=False, max_connections_per_ip=1000),
        imap=cfg.ImapSection(login_without_tls=False),
        pop3=cfg.Pop3Section(login_without_tls=False),
    )
    yield from _serve_two_accounts(config)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A queue's store: SQLite, with the sender alice@a.test of the delivery tests."""
    store = SqliteStore(tmp_path / "queue.sqlite3")
    await store.open()
    await provisioning.add_domain(store, "a.test")
    await store.add_account("alice@a.test", "x")
    try:
        yield store
    finally:
        await store.close()
