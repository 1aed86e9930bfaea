"""PostgreSQL queries of the TLS-RPT session results (table ``tls_results``, RFC 8460) and of
the reports whose POST failed (``tls_report_posts``, §5.5); async functions over a connection,
as in :mod:`.dmarcdata`; the string lists are ``jsonb`` arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from psycopg.types.json import Jsonb

from pillarbox.store import tlsrows
from pillarbox.store.postgres.dmarcdata import Conn
from pillarbox.store.types import TlsReportPost, TlsSessionResult


async def record(conn: Conn, r: TlsSessionResult) -> None:
    await conn.execute(
        f"INSERT INTO tls_results ({tlsrows.COLUMNS}) "
        f"VALUES ({', '.join(['%s'] * tlsrows.PLACEHOLDERS)})",
        tlsrows.row(r, r.recorded, Jsonb(list(r.policy_strings)), Jsonb(list(r.mx_patterns))),
    )


async def results(conn: Conn, until: datetime) -> list[TlsSessionResult]:
    cur = await conn.execute(
        f"SELECT {tlsrows.READ} FROM tls_results WHERE recorded < %s ORDER BY recorded, id",
        (until,),
    )
    return [tlsrows.result(row, row[0], row[3], row[4]) for row in await cur.fetchall()]


async def delete(conn: Conn, ids: Sequence[int]) -> int:
    cur = await conn.execute("DELETE FROM tls_results WHERE id = ANY(%s)", (list(ids),))
    return cur.rowcount


async def add_post(conn: Conn, p: TlsReportPost) -> int:
    cur = await conn.execute(
        f"INSERT INTO tls_report_posts ({tlsrows.POST_COLUMNS}) "
        "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (p.url, p.policy_domain, p.body, p.first_try, p.next_try, p.attempts),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def claim_post(conn: Conn, now: datetime, lease: datetime) -> TlsReportPost | None:
    """One statement: the row due first, skipped if another node holds it, leased."""
    cur = await conn.execute(
        "UPDATE tls_report_posts SET next_try = %s WHERE id = ("
        "  SELECT id FROM tls_report_posts WHERE next_try <= %s"
        "  ORDER BY next_try, id LIMIT 1 FOR UPDATE SKIP LOCKED"
        f") RETURNING id, {tlsrows.POST_COLUMNS}",
        (lease, now),
    )
    row = await cur.fetchone()
    return None if row is None else tlsrows.post(row, row[4], row[5])


async def reschedule_post(conn: Conn, post_id: int, next_try: datetime, attempts: int) -> None:
    await conn.execute(
        "UPDATE tls_report_posts SET next_try = %s, attempts = %s WHERE id = %s",
        (next_try, attempts, post_id),
    )


async def delete_post(conn: Conn, post_id: int) -> None:
    await conn.execute("DELETE FROM tls_report_posts WHERE id = %s", (post_id,))
