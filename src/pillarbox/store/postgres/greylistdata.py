"""PostgreSQL queries of greylisting (table ``greylist``); async functions over a connection,
run by :class:`~.store.PostgresStore`. Semantics as in the SQLite backend; the triplet's row
is locked (inserted first as long expired if missing) so two nodes deciding the same triplet
at once take turns."""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg.rows import TupleRow

from pillarbox.store.types import GreylistRules, GreyOutcome, GreyTriplet, Sighting

Conn = psycopg.AsyncConnection[TupleRow]


async def check(
    conn: Conn, triplet: GreyTriplet, now: datetime, rules: GreylistRules
) -> GreyOutcome:
    key = (triplet.client, triplet.sender, triplet.recipient)
    await conn.execute(
        "INSERT INTO greylist (client, sender, recipient, first_seen, passed, expires) "
        "VALUES (%s, %s, %s, %s, false, 'epoch') ON CONFLICT DO NOTHING",
        (*key, now),
    )
    cur = await conn.execute(
        "SELECT first_seen, passed, expires FROM greylist "
        "WHERE client = %s AND sender = %s AND recipient = %s FOR UPDATE",
        key,
    )
    row = await cur.fetchone()
    # None only if a prune removed the row between the statements: as never seen.
    seen = None if row is None else Sighting(row[0], row[1], row[2])
    passes = 0
    if rules.auto_allow_clients:
        # Counted up to the threshold only: a big sender's network has many.
        cur = await conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM greylist WHERE client = %s AND passed "
            "AND expires >= %s LIMIT %s) AS live",
            (triplet.client, now, rules.auto_allow_clients),
        )
        counted = await cur.fetchone()
        passes = int(counted[0]) if counted is not None else 0
    outcome, after = rules.step(seen, passes, now)
    if after != seen:
        await conn.execute(
            "INSERT INTO greylist (client, sender, recipient, first_seen, passed, expires) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (client, sender, recipient) DO UPDATE "
            "SET first_seen = excluded.first_seen, passed = excluded.passed, "
            "expires = excluded.expires",
            (*key, after.first_seen, after.passed, after.expires),
        )
    return outcome


async def prune(conn: Conn, now: datetime) -> int:
    cur = await conn.execute("DELETE FROM greylist WHERE expires < %s", (now,))
    return cur.rowcount
