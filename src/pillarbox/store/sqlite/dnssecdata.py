"""SQLite queries for the zone signing keys of hosted domains (table ``dnssec_keys``, schema
version 48): plain functions over a connection, run by :class:`~.store.SqliteStore` on its
reader threads or its writer. A key is inserted if absent and read back, as the ACME account
is (``acmedata``); removing the domain removes its key (``ON DELETE CASCADE``).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from pillarbox.errors import NotFound
from pillarbox.store.types import DnssecKey

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def key(conn: sqlite3.Connection, domain: str) -> DnssecKey | None:
    row = conn.execute(
        "SELECT key, created FROM dnssec_keys WHERE domain = ?", (domain,)
    ).fetchone()
    if row is None:
        return None
    return DnssecKey(domain, bytes(row[0]), _EPOCH + timedelta(microseconds=row[1]))


def add_key(conn: sqlite3.Connection, new: DnssecKey) -> DnssecKey:
    if conn.execute("SELECT 1 FROM domains WHERE name = ?", (new.domain,)).fetchone() is None:
        raise NotFound(f"no such domain: {new.domain}")
    created = (new.created - _EPOCH) // timedelta(microseconds=1)
    conn.execute(
        "INSERT INTO dnssec_keys (domain, key, created) VALUES (?, ?, ?) "
        "ON CONFLICT (domain) DO NOTHING",
        (new.domain, new.key_pem, created),
    )
    stored = key(conn, new.domain)
    assert stored is not None  # written or kept just above, in this transaction
    return stored
