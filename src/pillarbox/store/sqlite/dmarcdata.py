"""SQLite queries of the DMARC aggregate reports (table ``dmarc_observations``): plain
functions over a connection, run by :class:`~.store.SqliteStore` on its reader threads or its
writer. Times are microseconds since the epoch, as in the other tables; the DKIM results are a
JSON array of ``[domain, selector, result]``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from pillarbox.store import dmarcrows
from pillarbox.store.types import DmarcObservation

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Row ids a DELETE names at once (SQLite's bound on a statement's variables is 32,766).
_IDS_PER_DELETE = 500
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
        f"SELECT {dmarcrows.READ} FROM dmarc_observations WHERE received < ? ORDER BY received, id",
        (microseconds(until),),
    )
    return [
        dmarcrows.observation(row, EPOCH + row[0] * MICROSECOND, json.loads(row[10]))
        for row in rows
    ]


def delete(conn: sqlite3.Connection, ids: Sequence[int]) -> int:
    return delete_rows(conn, "dmarc_observations", ids)


def delete_rows(conn: sqlite3.Connection, table: str, ids: Sequence[int]) -> int:
    """Delete the rows of ``table`` (a name of this module's callers, never input) by id, a
    bounded number of ids a statement; how many went."""
    removed = 0
    for start in range(0, len(ids), _IDS_PER_DELETE):
        chunk = ids[start : start + _IDS_PER_DELETE]
        cursor = conn.execute(
            f"DELETE FROM {table} WHERE id IN ({', '.join('?' * len(chunk))})", tuple(chunk)
        )
        removed += cursor.rowcount
    return removed


def claim_run(conn: sqlite3.Connection, period_end: datetime, scope: str, node: str) -> bool:
    cursor = conn.execute(
        "INSERT INTO dmarc_report_runs (period_end, scope, node) VALUES (?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        (microseconds(period_end), scope, node),
    )
    return cursor.rowcount == 1
