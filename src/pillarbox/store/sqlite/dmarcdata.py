"""SQLite queries of the DMARC aggregate reports (table ``dmarc_observations``): plain
functions over a connection, run by :class:`~.store.SqliteStore` on its reader threads or its
writer. Times are microseconds since the epoch, as in the other tables; the DKIM results are a
JSON array of ``[domain, selector, result]``.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

from pillarbox.store import dmarcrows
from pillarbox.store.types import DmarcObservation

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def microseconds(value: datetime) -> int:
    """``value`` as this backend stores times: microseconds since the epoch."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // MICROSECOND


def record(conn: sqlite3.Connection, o: DmarcObservation) -> None:
    conn.execute(
        f"INSERT INTO dmarc_observations ({dmarcrows.COLUMNS}) VALUES ({', '.join('?' * 15)})",
        dmarcrows.row(o, microseconds(o.received), json.dumps([list(d) for d in o.dkim])),
    )


def observations(conn: sqlite3.Connection, until: datetime) -> list[DmarcObservation]:
    rows = conn.execute(
        f"SELECT {dmarcrows.COLUMNS} FROM dmarc_observations "
        "WHERE received < ? ORDER BY received, id",
        (microseconds(until),),
    )
    return [
        dmarcrows.observation(row, EPOCH + row[0] * MICROSECOND, json.loads(row[10]))
        for row in rows
    ]


def delete(conn: sqlite3.Connection, until: datetime, domain: str | None) -> int:
    if domain is None:
        cursor = conn.execute(
            "DELETE FROM dmarc_observations WHERE received < ?", (microseconds(until),)
        )
    else:
        cursor = conn.execute(
            "DELETE FROM dmarc_observations WHERE received < ? AND policy_domain = ?",
            (microseconds(until), domain),
        )
    return cursor.rowcount


def claim_run(conn: sqlite3.Connection, period_end: datetime, scope: str, node: str) -> bool:
    cursor = conn.execute(
        "INSERT INTO dmarc_report_runs (period_end, scope, node) VALUES (?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        (microseconds(period_end), scope, node),
    )
    return cursor.rowcount == 1
