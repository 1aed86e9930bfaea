"""SQLite queries of greylisting (table ``greylist``): plain functions over a connection, run
by :class:`~.store.SqliteStore` on its one writer thread, which makes the read, the decision
(:meth:`~pillarbox.store.types.GreylistRules.step`) and the write one atomic step. Times are
microseconds since the epoch."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from pillarbox.store.sqlite.dmarcdata import EPOCH, MICROSECOND, microseconds
from pillarbox.store.types import GreylistRules, GreyOutcome, GreyTriplet, Sighting


def check(
    conn: sqlite3.Connection, triplet: GreyTriplet, now: datetime, rules: GreylistRules
) -> GreyOutcome:
    key = (triplet.client, triplet.sender, triplet.recipient)
    row = conn.execute(
        "SELECT first_seen, passed, expires FROM greylist "
        "WHERE client = ? AND sender = ? AND recipient = ?",
        key,
    ).fetchone()
    seen = None
    if row is not None:
        seen = Sighting(EPOCH + row[0] * MICROSECOND, bool(row[1]), EPOCH + row[2] * MICROSECOND)
    passes = 0
    if rules.auto_allow_clients:
        # Counted up to the threshold only: a big sender's network has many.
        (passes,) = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM greylist WHERE client = ? AND passed = 1 "
            "AND expires >= ? LIMIT ?)",
            (triplet.client, microseconds(now), rules.auto_allow_clients),
        ).fetchone()
    outcome, after = rules.step(seen, passes, now)
    if after != seen:
        conn.execute(
            "INSERT OR REPLACE INTO greylist "
            "(client, sender, recipient, first_seen, passed, expires) VALUES (?, ?, ?, ?, ?, ?)",
            (*key, microseconds(after.first_seen), int(after.passed), microseconds(after.expires)),
        )
    return outcome


def prune(conn: sqlite3.Connection, now: datetime) -> int:
    return conn.execute("DELETE FROM greylist WHERE expires < ?", (microseconds(now),)).rowcount
