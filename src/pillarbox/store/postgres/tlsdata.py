"""PostgreSQL queries of the TLS-RPT session results (table ``tls_results``, RFC 8460); async
functions over a connection, as in :mod:`.dmarcdata`; the string lists are ``jsonb`` arrays.
"""

from __future__ import annotations

from datetime import datetime

from psycopg.types.json import Jsonb

from pillarbox.store import tlsrows
from pillarbox.store.postgres.dmarcdata import Conn
from pillarbox.store.types import TlsSessionResult


async def record(conn: Conn, r: TlsSessionResult) -> None:
    await conn.execute(
        f"INSERT INTO tls_results ({tlsrows.COLUMNS}) "
        f"VALUES ({', '.join(['%s'] * tlsrows.PLACEHOLDERS)})",
        tlsrows.row(r, r.recorded, Jsonb(list(r.policy_strings)), Jsonb(list(r.mx_patterns))),
    )


async def results(conn: Conn, until: datetime) -> list[TlsSessionResult]:
    cur = await conn.execute(
        f"SELECT {tlsrows.COLUMNS} FROM tls_results WHERE recorded < %s ORDER BY recorded, id",
        (until,),
    )
    return [tlsrows.result(row, row[0], row[3], row[4]) for row in await cur.fetchall()]


async def delete(conn: Conn, until: datetime) -> int:
    cur = await conn.execute("DELETE FROM tls_results WHERE recorded < %s", (until,))
    return cur.rowcount
