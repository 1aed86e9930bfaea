"""PostgreSQL queries for ACME DNS-01 challenge records (table ``acme_challenges``, migration
12) and http-01/tls-alpn-01 answers (table ``acme_answers``, migration 28): plain async
functions over a connection, run by :class:`~.store.PostgresStore`. The life of a record is
that of the SQLite backend's (its ``acmedata`` notes): read while unexpired, deleted by its
attempt or by the next write after it expired. Adds of answers take an advisory lock per kind,
so that two nodes adding at once cannot both pass the limit or both claim one key.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from psycopg.rows import TupleRow

from pillarbox.errors import AlreadyExists, NotFound, TooManyEntries
from pillarbox.store.types import AcmeAnswer, AcmeChallengeRecord

Conn = psycopg.AsyncConnection[TupleRow]

#: ``pg_advisory_xact_lock`` class of the answers' adds ("acme" in ASCII).
_ANSWER_LOCK = 0x61636D65


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


async def add_answer(conn: Conn, answer: AcmeAnswer, limit: int) -> None:
    lock = (_ANSWER_LOCK, answer.kind)
    await conn.execute("SELECT pg_advisory_xact_lock(%s::integer, hashtext(%s))", lock)
    await conn.execute("DELETE FROM acme_answers WHERE expires <= %s", (datetime.now(UTC),))
    cur = await conn.execute(
        "SELECT value FROM acme_answers WHERE kind = %s AND key = %s", (answer.kind, answer.key)
    )
    row = await cur.fetchone()
    if row is None:
        cur = await conn.execute(
            "SELECT count(*) FROM acme_answers WHERE kind = %s", (answer.kind,)
        )
        counted = await cur.fetchone()
        pending = counted[0] if counted else 0
        if pending >= limit:
            raise TooManyEntries(f"{pending} {answer.kind} answers pending (limit {limit})")
    elif row[0] != answer.value:
        raise AlreadyExists(f"another attempt's {answer.kind} answer for {answer.key} is pending")
    await conn.execute(
        "INSERT INTO acme_answers (kind, key, value, expires) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (kind, key) DO UPDATE SET expires = excluded.expires",
        (answer.kind, answer.key, answer.value, answer.expires),
    )


async def remove_answer(conn: Conn, kind: str, key: str, value: str) -> None:
    await conn.execute(
        "DELETE FROM acme_answers WHERE kind = %s AND key = %s AND value = %s", (kind, key, value)
    )


async def answer_value(conn: Conn, kind: str, key: str, now: datetime) -> str | None:
    cur = await conn.execute(
        "SELECT value FROM acme_answers WHERE kind = %s AND key = %s AND expires > %s",
        (kind, key, now),
    )
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def list_answers(conn: Conn, kind: str, now: datetime, limit: int) -> list[AcmeAnswer]:
    cur = await conn.execute(
        "SELECT kind, key, value, expires FROM acme_answers WHERE kind = %s AND expires > %s "
        'ORDER BY key COLLATE "C" LIMIT %s',
        (kind, now, limit),
    )
    return [AcmeAnswer(*row) for row in await cur.fetchall()]
