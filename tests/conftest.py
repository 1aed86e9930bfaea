"""Fixtures shared by the test directories."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from pillarbox.testing.postgres import TestDatabase

# Property tests draw the same examples on every run (seeded by each test's name), so a run of
# the suite, in CI above all, passes or fails on the code alone, never on a lucky draw.
# ``HYPOTHESIS_PROFILE=explore`` draws new examples on each run, to hunt for bugs (run it
# repeatedly); a failure it finds gets pinned with ``@example`` (as in
# test_mail_parse_properties).
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(scope="module")
def database() -> Iterator[TestDatabase]:
    """A PostgreSQL database of the test module's own, dropped after it (modules that use it
    skip themselves when no server is reachable)."""
    db = TestDatabase()
    yield db
    db.drop()
