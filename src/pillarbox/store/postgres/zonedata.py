"""PostgreSQL queries for the SOA serials of the hosted zones (table ``zone_serials``,
migration 43; :mod:`pillarbox.dns.serial`): plain async functions over a connection, run by
:class:`~.store.PostgresStore`. A new digest locks the zone's row (``FOR UPDATE``), so of two
nodes bringing the same new digest at once the second waits, finds it stored, and leaves the
serial as the first set it: one change, one step, one NOTIFY. Rows outlive their domains.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import TupleRow

from pillarbox.dns.serial import next_serial
from pillarbox.store.types import ZoneSerial

Conn = psycopg.AsyncConnection[TupleRow]


async def stored(conn: Conn, domain: str, *, lock: bool = False) -> tuple[int, bytes] | None:
    cur = await conn.execute(
        "SELECT serial, digest FROM zone_serials WHERE domain = %s"
        + (" FOR UPDATE" if lock else ""),
        (domain,),
    )
    row = await cur.fetchone()
    # The column is a bigint: a serial is unsigned 32-bit (RFC 1982 §2), past a PG integer.
    return None if row is None else (int(row[0]), bytes(row[1]))


async def advance(conn: Conn, domain: str, digest: bytes, now: int) -> ZoneSerial:
    # The first serial of a zone: of nodes inserting at once, one row wins and the others
    # fall through to the locked read below, as for any later change.
    cur = await conn.execute(
        "INSERT INTO zone_serials (domain, serial, digest) VALUES (%s, %s, %s) "
        "ON CONFLICT (domain) DO NOTHING RETURNING serial",
        (domain, next_serial(None, now), digest),
    )
    inserted = await cur.fetchone()
    if inserted is not None:
        return ZoneSerial(int(inserted[0]), changed=True)
    current = await stored(conn, domain, lock=True)
    assert current is not None  # there was a conflicting row, and rows are never deleted
    if current[1] == digest:
        return ZoneSerial(current[0], changed=False)
    serial = next_serial(current[0], now)
    await conn.execute(
        "UPDATE zone_serials SET serial = %s, digest = %s WHERE domain = %s",
        (serial, digest, domain),
    )
    return ZoneSerial(serial, changed=True)
