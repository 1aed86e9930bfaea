"""PostgreSQL queries of the MTA-STS policy cache (table ``mta_sts_policies``, RFC 8461 §5.1);
async functions over a connection, as in :mod:`.tlsdata`; the MX patterns a ``jsonb`` array."""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from pillarbox.store import stsrows
from pillarbox.store.types import StsPolicyRecord

Conn = psycopg.AsyncConnection[TupleRow]


async def save(conn: Conn, p: StsPolicyRecord) -> None:
    await conn.execute(
        f"INSERT INTO mta_sts_policies ({stsrows.COLUMNS}) "
        f"VALUES ({', '.join(['%s'] * stsrows.PLACEHOLDERS)}) "
        "ON CONFLICT (domain) DO UPDATE SET policy_id = excluded.policy_id, "
        "mode = excluded.mode, mx = excluded.mx, max_age = excluded.max_age, "
        "fetched = excluded.fetched, expires = excluded.expires "
        "WHERE excluded.fetched >= mta_sts_policies.fetched",
        stsrows.row(p, Jsonb(list(p.mx)), p.fetched, p.expires),
    )


async def unexpired(conn: Conn, now: datetime) -> list[StsPolicyRecord]:
    cur = await conn.execute(
        f"SELECT {stsrows.COLUMNS} FROM mta_sts_policies WHERE expires > %s "
        "ORDER BY fetched DESC, domain",
        (now,),
    )
    return [stsrows.record(r, r[3], r[5]) for r in await cur.fetchall()]


async def prune(conn: Conn, now: datetime) -> int:
    cur = await conn.execute("DELETE FROM mta_sts_policies WHERE expires <= %s", (now,))
    return cur.rowcount
