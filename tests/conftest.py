"""Fixtures shared by the test directories."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pillarbox.testing.postgres import TestDatabase


@pytest.fixture(scope="module")
def database() -> Iterator[TestDatabase]:
    """A PostgreSQL database of the test module's own, dropped after it (modules that use it
    skip themselves when no server is reachable)."""
    db = TestDatabase()
    yield db
    db.drop()
