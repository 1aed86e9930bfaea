"""PostgreSQL queries of the DMARC aggregate reports (table ``dmarc_observations``); async
functions over a connection, run by :class:`~.store.PostgresStore`. Semantics as in the SQLite
backend; the DKIM results are a ``jsonb`` array of ``[domain, selector, result]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from pillarbox.store import dmarcrows
from pillarbox.store.types import DmarcObservation

Conn = psycopg.AsyncConnection[TupleRow]


async def record(conn: Conn, o: DmarcObservation) -> None:
    await conn.execute(
        f"INSERT INTO dmarc_observations ({dmarcrows.COLUMNS}) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        dmarcrows.row(o, o.received, Jsonb([list(d) for d in o.dkim])),
    )


async def observations(conn: Conn, until: datetime) -> list[DmarcObservation]:
    cur = await conn.execute(
        f"SELECT {dmarcrows.READ} FROM dmarc_observations "
        "WHERE received < %s ORDER BY received, id",
        (until,),
    )
    return [dmarcrows.observation(row, row[0], row[10]) for row in await cur.fetchall()]


async def delete(conn: Conn, ids: Sequence[int]) -> int:
    cur = await conn.execute("DELETE FROM dmarc_observations WHERE id = ANY(%s)", (list(ids),))
    return cur.rowcount


async def claim_run(conn: Conn, period_end: datetime, scope: str, node: str) -> bool:
    cur = await conn.execute(
        "INSERT INTO dmarc_report_runs (period_end, scope, node) VALUES (%s, %s, %s) "
        "ON CONFLICT DO NOTHING",
        (period_end, scope, node),
    )
    return cur.rowcount == 1
