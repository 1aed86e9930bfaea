"""PostgreSQL queries for the zone signing keys of hosted domains (table ``dnssec_keys``,
migration 42, one key per domain and state from migration 44): plain async functions over a
connection, run by :class:`~.store.PostgresStore`. A key is inserted if its state is free
and then read back: of two nodes at once, the second's insert waits for the first's row and
does nothing, and its read (a statement of its own, so under READ COMMITTED a snapshot taken
after that row committed) returns the first node's key, as with the ACME account
(``acmedata``). A rollover's step locks the domain's keys first, so two at once are one.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg.rows import TupleRow

from pillarbox.errors import NotFound
from pillarbox.store.types import DNSSEC_FINISH, DnssecKey, DnssecKeyState

Conn = psycopg.AsyncConnection[TupleRow]

#: The order :meth:`~pillarbox.store.interface.Store.dnssec_keys` promises.
_STATE_ORDER = "CASE state WHEN 'active' THEN 0 WHEN 'published' THEN 1 ELSE 2 END"


async def keys(conn: Conn, domain: str, *, lock: bool = False) -> list[DnssecKey]:
    cur = await conn.execute(
        "SELECT key, created, state, changed FROM dnssec_keys WHERE domain = %s "
        f"ORDER BY {_STATE_ORDER}" + (" FOR UPDATE" if lock else ""),
        (domain,),
    )
    return [
        DnssecKey(domain, bytes(key), created, DnssecKeyState(state), changed)
        for key, created, state, changed in await cur.fetchall()
    ]


async def add_key(conn: Conn, new: DnssecKey) -> DnssecKey:
    cur = await conn.execute("SELECT 1 FROM domains WHERE name = %s", (new.domain,))
    if await cur.fetchone() is None:
        raise NotFound(f"no such domain: {new.domain}")
    await conn.execute(
        "INSERT INTO dnssec_keys (domain, state, key, created, changed) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (domain, state) DO NOTHING",
        (new.domain, new.state.value, new.key_pem, new.created, new.changed),
    )
    # Written just above, or another node's row it waited for.
    return next(k for k in await keys(conn, new.domain) if k.state is new.state)


async def finish_rollover(conn: Conn, domain: str, now: datetime) -> bool:
    states = {k.state for k in await keys(conn, domain, lock=True)}
    if DnssecKeyState.PUBLISHED not in states or DnssecKeyState.RETIRED in states:
        return False
    for old, new in DNSSEC_FINISH:
        await conn.execute(
            "UPDATE dnssec_keys SET state = %s, changed = %s WHERE domain = %s AND state = %s",
            (new.value, now, domain, old.value),
        )
    return True


async def remove_key(conn: Conn, key: DnssecKey) -> bool:
    cur = await conn.execute(
        "DELETE FROM dnssec_keys WHERE domain = %s AND state = %s AND key = %s",
        (key.domain, key.state.value, key.key_pem),
    )
    return cur.rowcount > 0
