"""PostgreSQL queries for the zone signing keys of hosted domains (table ``dnssec_keys``,
migration 42): plain async functions over a connection, run by
:class:`~.store.PostgresStore`. A key is inserted if absent and then read back: of two nodes
at once, the second's insert waits for the first's row and does nothing, and its read (a
statement of its own, so under READ COMMITTED a snapshot taken after that row committed)
returns the first node's key, as with the ACME account (``acmedata``).
"""

from __future__ import annotations

import psycopg
from psycopg.rows import TupleRow

from pillarbox.errors import NotFound
from pillarbox.store.types import DnssecKey

Conn = psycopg.AsyncConnection[TupleRow]


async def key(conn: Conn, domain: str) -> DnssecKey | None:
    cur = await conn.execute("SELECT key, created FROM dnssec_keys WHERE domain = %s", (domain,))
    row = await cur.fetchone()
    return None if row is None else DnssecKey(domain, bytes(row[0]), row[1])


async def add_key(conn: Conn, new: DnssecKey) -> DnssecKey:
    cur = await conn.execute("SELECT 1 FROM domains WHERE name = %s", (new.domain,))
    if await cur.fetchone() is None:
        raise NotFound(f"no such domain: {new.domain}")
    await conn.execute(
        "INSERT INTO dnssec_keys (domain, key, created) VALUES (%s, %s, %s) "
        "ON CONFLICT (domain) DO NOTHING",
        (new.domain, new.key_pem, new.created),
    )
    stored = await key(conn, new.domain)
    assert stored is not None  # written just above, or another node's row it waited for
    return stored
