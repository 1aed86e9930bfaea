"""PostgreSQL queries of the reports received about our domains (table
``received_reports``); async functions over a connection, run by
:class:`~.store.PostgresStore`. Semantics as in the SQLite backend; the rows a ``jsonb``
array (:mod:`pillarbox.store.receivedrows`)."""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from pillarbox.store import receivedrows
from pillarbox.store.types import ReceivedReport

Conn = psycopg.AsyncConnection[TupleRow]


async def add(conn: Conn, report: ReceivedReport) -> bool:
    cur = await conn.execute(
        f"INSERT INTO received_reports ({receivedrows.COLUMNS}) "
        f"VALUES ({', '.join(['%s'] * 10)}) ON CONFLICT DO NOTHING",
        receivedrows.values(
            report,
            report.begin,
            report.end,
            report.received,
            Jsonb(receivedrows.rows_value(report)),
        ),
    )
    return cur.rowcount == 1


async def reports(
    conn: Conn, since: datetime, domain: str | None, kind: str | None, limit: int
) -> list[ReceivedReport]:
    cur = await conn.execute(
        f"SELECT {receivedrows.COLUMNS} FROM received_reports WHERE date_end >= %(since)s "
        "AND (%(domain)s::text IS NULL OR domain = %(domain)s "
        "OR right(domain, length(%(domain)s) + 1) = '.' || %(domain)s) "
        "AND (%(kind)s::text IS NULL OR kind = %(kind)s) "
        "ORDER BY date_end DESC, id DESC LIMIT %(limit)s",
        {"since": since, "domain": domain, "kind": kind, "limit": limit},
    )
    return [
        receivedrows.report(row, row[4], row[5], row[6], row[9]) for row in await cur.fetchall()
    ]


async def delete(conn: Conn, until: datetime) -> int:
    cur = await conn.execute("DELETE FROM received_reports WHERE date_end < %s", (until,))
    return cur.rowcount


async def delete_domain(conn: Conn, name: str) -> int:
    """Forget the reports about ``name`` (a domain being removed, gone from ``domains``
    already) and its subdomains, except those another hosted domain still covers (a hosted
    subdomain of it, or a hosted parent); how many."""
    cur = await conn.execute(
        "DELETE FROM received_reports r "
        "WHERE (r.domain = %(name)s OR right(r.domain, length(%(name)s) + 1) = '.' || %(name)s) "
        "AND NOT EXISTS (SELECT 1 FROM domains h WHERE r.domain = h.name "
        "OR right(r.domain, length(h.name) + 1) = '.' || h.name)",
        {"name": name},
    )
    return cur.rowcount
