"""Sieve scripts in PostgreSQL (table ``sieve_scripts``, migration 9) and the "duplicate"
test's tracking (``sieve_duplicates``, migration 32): the queries behind the store's Sieve
methods.

At most one script per account is active: a partial unique index enforces it, so activating
one clears the others in the same transaction first.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from pillarbox.errors import AlreadyExists, NotFound
from pillarbox.store.types import SieveScript

Conn = psycopg.AsyncConnection[TupleRow]

_SELECT = "SELECT name, content, active FROM sieve_scripts WHERE account_id = %s"


async def _scripts(conn: Conn, where: str, params: tuple[Any, ...]) -> list[SieveScript]:
    cur = await conn.execute(_SELECT + where, params)
    return [SieveScript(name, content, active) for name, content, active in await cur.fetchall()]


async def list_scripts(conn: Conn, account_id: int) -> list[SieveScript]:
    return await _scripts(conn, ' ORDER BY name COLLATE "C"', (account_id,))


async def get_script(conn: Conn, account_id: int, name: str) -> SieveScript | None:
    found = await _scripts(conn, " AND name = %s", (account_id, name))
    return found[0] if found else None


async def active_script(conn: Conn, account_id: int) -> SieveScript | None:
    found = await _scripts(conn, " AND active", (account_id,))
    return found[0] if found else None


async def put_script(conn: Conn, account_id: int, name: str, content: str) -> None:
    cur = await conn.execute("SELECT 1 FROM accounts WHERE id = %s", (account_id,))
    if await cur.fetchone() is None:
        raise NotFound(f"no account {account_id}")
    await conn.execute(
        "INSERT INTO sieve_scripts (account_id, name, content) VALUES (%s, %s, %s) "
        "ON CONFLICT (account_id, name) DO UPDATE SET content = excluded.content",
        (account_id, name, content),
    )


async def set_active(conn: Conn, account_id: int, name: str | None) -> None:
    if name is not None and await get_script(conn, account_id, name) is None:
        raise NotFound(f"no script {name!r}")
    await conn.execute(
        "UPDATE sieve_scripts SET active = false WHERE account_id = %s AND active", (account_id,)
    )
    if name is not None:
        await conn.execute(
            "UPDATE sieve_scripts SET active = true WHERE account_id = %s AND name = %s",
            (account_id, name),
        )


async def delete_script(conn: Conn, account_id: int, name: str) -> None:
    cur = await conn.execute(
        "DELETE FROM sieve_scripts WHERE account_id = %s AND name = %s", (account_id, name)
    )
    if cur.rowcount == 0:
        raise NotFound(f"no script {name!r}")


async def rename_script(conn: Conn, account_id: int, old: str, new: str) -> None:
    if await get_script(conn, account_id, old) is None:
        raise NotFound(f"no script {old!r}")
    if await get_script(conn, account_id, new) is not None:
        raise AlreadyExists(f"script {new!r} exists")
    await conn.execute(
        "UPDATE sieve_scripts SET name = %s WHERE account_id = %s AND name = %s",
        (new, account_id, old),
    )


# -- the "duplicate" test (RFC 7352; table sieve_duplicates, migration 32) -------------------


async def live_duplicates(conn: Conn, account_id: int, now: datetime) -> frozenset[str]:
    cur = await conn.execute(
        "SELECT key FROM sieve_duplicates WHERE account_id = %s AND expires > %s",
        (account_id, now),
    )
    return frozenset(key for (key,) in await cur.fetchall())


async def track_duplicates(
    conn: Conn,
    account_id: int,
    entries: Sequence[tuple[str, datetime]],
    now: datetime,
    max_entries: int,
) -> None:
    cur = await conn.execute("SELECT 1 FROM accounts WHERE id = %s", (account_id,))
    if await cur.fetchone() is None:
        raise NotFound(f"no account {account_id}")
    await conn.execute(
        "DELETE FROM sieve_duplicates WHERE account_id = %s AND expires <= %s", (account_id, now)
    )
    async with conn.cursor() as many:
        await many.executemany(
            "INSERT INTO sieve_duplicates (account_id, key, expires) VALUES (%s, %s, %s) "
            "ON CONFLICT (account_id, key) DO UPDATE SET expires = excluded.expires",
            [(account_id, key, expires) for key, expires in entries],
        )
    # The bound: the entries that expire first go first.
    await conn.execute(
        "DELETE FROM sieve_duplicates WHERE account_id = %s AND key IN ("
        "SELECT key FROM sieve_duplicates WHERE account_id = %s "
        'ORDER BY expires DESC, key COLLATE "C" OFFSET %s)',
        (account_id, account_id, max_entries),
    )


async def prune_duplicates(conn: Conn, now: datetime) -> int:
    # Account by account (one index descent each): the index leads with the account.
    cur = await conn.execute(
        "DELETE FROM sieve_duplicates WHERE account_id = ANY(ARRAY(SELECT id FROM accounts)) "
        "AND expires <= %s",
        (now,),
    )
    return cur.rowcount
