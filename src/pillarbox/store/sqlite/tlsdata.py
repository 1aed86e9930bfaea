"""SQLite queries of the TLS-RPT session results (table ``tls_results``, RFC 8460) and of the
reports whose POST failed (``tls_report_posts``, §5.5): plain functions over a connection, as
in :mod:`.dmarcdata`. Times are microseconds since the epoch; the string lists are JSON arrays.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime

from pillarbox.store import tlsrows
from pillarbox.store.sqlite.dmarcdata import EPOCH, MICROSECOND, delete_rows, microseconds
from pillarbox.store.types import TlsReportPost, TlsSessionResult


def record(conn: sqlite3.Connection, r: TlsSessionResult) -> None:
    conn.execute(
        f"INSERT INTO tls_results ({tlsrows.COLUMNS}) "
        f"VALUES ({', '.join('?' * tlsrows.PLACEHOLDERS)})",
        tlsrows.row(
            r, microseconds(r.recorded), json.dumps(r.policy_strings), json.dumps(r.mx_patterns)
        ),
    )


def results(conn: sqlite3.Connection, until: datetime) -> list[TlsSessionResult]:
    rows = conn.execute(
        f"SELECT {tlsrows.READ} FROM tls_results WHERE recorded < ? ORDER BY recorded, id",
        (microseconds(until),),
    )
    return [
        tlsrows.result(row, EPOCH + row[0] * MICROSECOND, json.loads(row[3]), json.loads(row[4]))
        for row in rows
    ]


def delete(conn: sqlite3.Connection, ids: Sequence[int]) -> int:
    return delete_rows(conn, "tls_results", ids)


def add_post(conn: sqlite3.Connection, p: TlsReportPost) -> int:
    cur = conn.execute(
        f"INSERT INTO tls_report_posts ({tlsrows.POST_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        (
            p.url,
            p.policy_domain,
            p.body,
            microseconds(p.first_try),
            microseconds(p.next_try),
            p.attempts,
        ),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def post_due(conn: sqlite3.Connection, now: datetime) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM tls_report_posts WHERE next_try <= ? LIMIT 1", (microseconds(now),)
        ).fetchone()
        is not None
    )


def claim_post(conn: sqlite3.Connection, now: datetime, lease: datetime) -> TlsReportPost | None:
    """In the writer's transaction: the select and the lease are one step."""
    row = conn.execute(
        f"SELECT id, {tlsrows.POST_COLUMNS} FROM tls_report_posts WHERE next_try <= ? "
        "ORDER BY next_try, id LIMIT 1",
        (microseconds(now),),
    ).fetchone()
    if row is None:
        return None
    conn.execute(
        "UPDATE tls_report_posts SET next_try = ? WHERE id = ?", (microseconds(lease), row[0])
    )
    return tlsrows.post(row, EPOCH + row[4] * MICROSECOND, lease)


def reschedule_post(
    conn: sqlite3.Connection, post_id: int, next_try: datetime, attempts: int
) -> None:
    conn.execute(
        "UPDATE tls_report_posts SET next_try = ?, attempts = ? WHERE id = ?",
        (microseconds(next_try), attempts, post_id),
    )


def delete_post(conn: sqlite3.Connection, post_id: int) -> None:
    conn.execute("DELETE FROM tls_report_posts WHERE id = ?", (post_id,))
