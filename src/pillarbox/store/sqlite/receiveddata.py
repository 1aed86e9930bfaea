"""SQLite queries of the reports received about our domains (table ``received_reports``):
plain functions over a connection, run by :class:`~.store.SqliteStore`. Times are
microseconds since the epoch; the rows a JSON array (:mod:`pillarbox.store.receivedrows`)."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from pillarbox.store import receivedrows
from pillarbox.store.sqlite.dmarcdata import EPOCH, MICROSECOND, microseconds
from pillarbox.store.types import ReceivedReport


def add(conn: sqlite3.Connection, report: ReceivedReport) -> bool:
    cursor = conn.execute(
        f"INSERT INTO received_reports ({receivedrows.COLUMNS}) "
        f"VALUES ({', '.join('?' * 10)}) ON CONFLICT DO NOTHING",
        receivedrows.values(
            report,
            microseconds(report.begin),
            microseconds(report.end),
            microseconds(report.received),
            json.dumps(receivedrows.rows_value(report)),
        ),
    )
    return cursor.rowcount == 1


def reports(
    conn: sqlite3.Connection, since: datetime, domain: str | None, kind: str | None, limit: int
) -> list[ReceivedReport]:
    rows = conn.execute(
        f"SELECT {receivedrows.COLUMNS} FROM received_reports "
        "WHERE (?1 IS NULL OR domain = ?1 OR substr(domain, -length(?1) - 1) = '.' || ?1) "
        "AND (?1 IS NULL OR domain = ?1 OR substr(domain, -length(?1) - 1) = '.' || ?1) "
        "AND (?2 IS NULL OR kind = ?2) "
        "AND date_end >= ?3 ORDER BY date_end DESC, id DESC LIMIT ?4",
        (domain, kind, microseconds(since), limit),
    )
    return [
        receivedrows.report(
            row,
            EPOCH + row[4] * MICROSECOND,
            EPOCH + row[5] * MICROSECOND,
            EPOCH + row[6] * MICROSECOND,
            json.loads(row[9]),
        )
        for row in rows
    ]


def delete(conn: sqlite3.Connection, until: datetime) -> int:
    cursor = conn.execute("DELETE FROM received_reports WHERE date_end < ?", (microseconds(until),))
    return cursor.rowcount


def delete_domain(conn: sqlite3.Connection, name: str) -> int:
    """Forget the reports about ``name`` (a domain being removed, gone from ``domains``
    already) and its subdomains, except those another hosted domain still covers (a hosted
    subdomain of it, or a hosted parent); how many."""
    cursor = conn.execute(
        "DELETE FROM received_reports "
        "WHERE (domain = ?1 OR substr(domain, -length(?1) - 1) = '.' || ?1) "
        "AND NOT EXISTS (SELECT 1 FROM domains h WHERE received_reports.domain = h.name "
        "OR substr(received_reports.domain, -length(h.name) - 1) = '.' || h.name)",
        (name,),
    )
    return cursor.rowcount
