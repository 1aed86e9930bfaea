"""SQLite queries for the SOA serials of the hosted zones (table ``zone_serials``, schema
version 49; :mod:`pillarbox.dns.serial`): plain functions over a connection, run by
:class:`~.store.SqliteStore`. A reader answers while the digest is unchanged; only a new
digest takes the writer, which looks again (another task may have moved the serial on first).
Rows outlive their domains: a domain added again goes on from its last serial.
"""

from __future__ import annotations

import sqlite3

from pillarbox.dns.serial import next_serial
from pillarbox.store.types import ZoneSerial


def stored(conn: sqlite3.Connection, domain: str) -> tuple[int, bytes] | None:
    row = conn.execute(
        "SELECT serial, digest FROM zone_serials WHERE domain = ?", (domain,)
    ).fetchone()
    return None if row is None else (int(row[0]), bytes(row[1]))


def advance(conn: sqlite3.Connection, domain: str, digest: bytes, now: int) -> ZoneSerial:
    current = stored(conn, domain)
    if current is not None and current[1] == digest:
        return ZoneSerial(current[0], changed=False)
    serial = next_serial(None if current is None else current[0], now)
    conn.execute(
        "INSERT INTO zone_serials (domain, serial, digest) VALUES (?, ?, ?) "
        "ON CONFLICT (domain) DO UPDATE SET serial = excluded.serial, digest = excluded.digest",
        (domain, serial, digest),
    )
    return ZoneSerial(serial, changed=True)
