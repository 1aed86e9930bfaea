"""Hypothesis over the SQLite store: UID, MODSEQ, expunge and counter invariants (RFC 9051
§2.3.1.1, RFC 7162 §3) hold over random sequences of deliveries, STOREs, expunges, copies and
moves, with both blob modes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from pillarbox.store.blobs import BlobMode
from pillarbox.store.sqlite import SqliteStore
from pillarbox.testing.store_contract import store_state_machine

SETTINGS = settings(
    max_examples=25,
    stateful_step_count=15,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.parametrize("mode", list(BlobMode))
def test_store_invariants(tmp_path: Path, mode: BlobMode) -> None:
    def fresh() -> SqliteStore:
        root = Path(tempfile.mkdtemp(dir=tmp_path))
        return SqliteStore(root / "db.sqlite3", blob_mode=mode, blob_dir=root / "blobs")

    run_state_machine_as_test(store_state_machine(fresh), settings=SETTINGS)
