"""Helpers of the DNSSEC key rollover tests against a live server on SQLite: the DS records
a command printed, and the hours a rollover waits passed in the store rather than waited.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pillarbox.store.open import DEFAULT_SQLITE_NAME


def printed_ds(stdout: str) -> list[str]:
    """The DS records a command printed (``dns records``, ``dns rollover``), as zone-file
    lines with the comment marks taken off, in the order printed."""
    return [line.lstrip("; ").strip() for line in stdout.splitlines() if "\tDS\t" in line]


def backdate_key(data_dir: Path, state: str, seconds: float) -> None:
    """Time passing for the zone key in ``state`` (of the store in ``data_dir``): the time it
    entered that state moved ``seconds`` back, as if they had passed."""
    with sqlite3.connect(data_dir / DEFAULT_SQLITE_NAME) as conn:
        conn.execute(
            "UPDATE dnssec_keys SET changed = changed - ? WHERE state = ?",
            (int(seconds * 1_000_000), state),
        )
