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
# No deadline: a test's time per example measures the machine's load (the suite runs in four
# workers beside the PostgreSQL pass), not the code; a deadline failed CI on a 0.13 ms example
# that once took 299 ms. Slow code is found by the benchmarks in bench/.
settings.register_profile("repeatable", derandomize=True, deadline=None)
settings.register_profile("explore", derandomize=False, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(scope="module")
def database() -> Iterator[TestDatabase]:
    """A PostgreSQL database of the test module's own, dropped after it (modules that use it
    skip themselves when no server is reachable)."""
    db = TestDatabase()
    yield db
    db.drop()
