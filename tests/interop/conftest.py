"""Fixtures that start a real Pillarbox on loopback (see :mod:`pillarbox.testing.live`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.live import LiveServer, loopback_config


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
