"""SQLite queries for ACME DNS-01 challenge records (table ``acme_challenges``, schema version
17): plain functions over a connection, run by :class:`~.store.SqliteStore` on its reader
threads or its writer.

A record lives from the attempt that publishes it to the end of that attempt, or to its expiry
if the attempt never ends (a crash): expired rows are left out of every read and deleted by the
next write. Removing the domain removes its records (``ON DELETE CASCADE``).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from pillarbox.errors import NotFound
from pillarbox.store.types import AcmeChallengeRecord

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _us(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND


def add_challenge(conn: sqlite3.Connection, record: AcmeChallengeRecord) -> None:
    if conn.execute("SELECT 1 FROM domains WHERE name = ?", (record.domain,)).fetchone() is None:
        raise NotFound(f"no domain {record.domain}")
    expires = _us(record.expires)
    conn.execute("DELETE FROM acme_challenges WHERE expires <= ?", (_us(datetime.now(UTC)),))
    conn.execute(
        "INSERT INTO acme_challenges (domain, name, value, expires) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name, value) DO UPDATE SET domain = excluded.domain, "
        "expires = excluded.expires",
        (record.domain, record.name, record.value, expires),
    )


def remove_challenge(conn: sqlite3.Connection, name: str, value: str) -> None:
    conn.execute("DELETE FROM acme_challenges WHERE name = ? AND value = ?", (name, value))


def list_challenges(
    conn: sqlite3.Connection, domain: str, now: datetime
) -> list[AcmeChallengeRecord]:
    rows = conn.execute(
        "SELECT domain, name, value, expires FROM acme_challenges "
        "WHERE domain = ? AND expires > ? ORDER BY name, value",
        (domain, _us(now)),
    )
    return [
        AcmeChallengeRecord(domain, name, value, _EPOCH + expires * _MICROSECOND)
        for domain, name, value, expires in rows
    ]
