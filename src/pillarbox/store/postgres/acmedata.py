"""PostgreSQL queries for ACME DNS-01 challenge records (table ``acme_challenges``, migration
12): plain async functions over a connection, run by :class:`~.store.PostgresStore`. The life
of a record is that of the SQLite backend's (its ``acmedata`` notes): read while unexpired,
deleted by its attempt or by the next write after it expired.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from psycopg.rows import TupleRow

from pillarbox.errors import NotFound
from pillarbox.store.types import AcmeChallengeRecord

Conn = psycopg.AsyncConnection[TupleRow]


async def add_challenge(conn: Conn, record: AcmeChallengeRecord) -> None:
    cur = await conn.execute("SELECT 1 FROM domains WHERE name = %s FOR SHARE", (record.domain,))
    if await cur.fetchone() is None:
        raise NotFound(f"no domain {record.domain}")
    await conn.execute("DELETE FROM acme_challenges WHERE expires <= %s", (datetime.now(UTC),))
    await conn.execute(
        "INSERT INTO acme_challenges (domain, name, value, expires) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (name, value) DO UPDATE SET domain = excluded.domain, "
        "expires = excluded.expires",
        (record.domain, record.name, record.value, record.expires),
    )


async def remove_challenge(conn: Conn, name: str, value: str) -> None:
    await conn.execute("DELETE FROM acme_challenges WHERE name = %s AND value = %s", (name, value))


async def list_challenges(conn: Conn, domain: str, now: datetime) -> list[AcmeChallengeRecord]:
    cur = await conn.execute(
        "SELECT domain, name, value, expires FROM acme_challenges "
        'WHERE domain = %s AND expires > %s ORDER BY name COLLATE "C", value COLLATE "C"',
        (domain, now),
    )
    return [AcmeChallengeRecord(*row) for row in await cur.fetchall()]
