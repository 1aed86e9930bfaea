"""SQLite queries for the zone signing keys of hosted domains (table ``dnssec_keys``, schema
version 48, one key per domain and state from version 50): plain functions over a
connection, run by :class:`~.store.SqliteStore` on its reader threads or its writer. A key
is inserted if its state is free and read back, as the ACME account is (``acmedata``);
removing the domain removes its keys (``ON DELETE CASCADE``).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from pillarbox.errors import NotFound
from pillarbox.store.types import DNSSEC_FINISH, DnssecKey, DnssecKeyState

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The order :meth:`~pillarbox.store.interface.Store.dnssec_keys` promises.
_STATE_ORDER = "CASE state WHEN 'active' THEN 0 WHEN 'published' THEN 1 ELSE 2 END"


def _micros(when: datetime) -> int:
    return (when - _EPOCH) // timedelta(microseconds=1)


def _key(domain: str, row: tuple[bytes, int, str, int]) -> DnssecKey:
    key, created, state, changed = row
    return DnssecKey(
        domain,
        bytes(key),
        _EPOCH + timedelta(microseconds=created),
        DnssecKeyState(state),
        _EPOCH + timedelta(microseconds=changed),
    )


def keys(conn: sqlite3.Connection, domain: str) -> list[DnssecKey]:
    rows = conn.execute(
        "SELECT key, created, state, changed FROM dnssec_keys WHERE domain = ? "
        f"ORDER BY {_STATE_ORDER}",
        (domain,),
    ).fetchall()
    return [_key(domain, row) for row in rows]


def add_key(conn: sqlite3.Connection, new: DnssecKey) -> DnssecKey:
    if conn.execute("SELECT 1 FROM domains WHERE name = ?", (new.domain,)).fetchone() is None:
        raise NotFound(f"no such domain: {new.domain}")
    conn.execute(
        "INSERT INTO dnssec_keys (domain, state, key, created, changed) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (domain, state) DO NOTHING",
        (new.domain, new.state.value, new.key_pem, _micros(new.created), _micros(new.changed)),
    )
    # Written or kept just above, in this transaction.
    return next(k for k in keys(conn, new.domain) if k.state is new.state)


def finish_rollover(conn: sqlite3.Connection, domain: str, now: datetime) -> bool:
    states = {k.state for k in keys(conn, domain)}
    if DnssecKeyState.PUBLISHED not in states or DnssecKeyState.RETIRED in states:
        return False
    for old, new in DNSSEC_FINISH:
        conn.execute(
            "UPDATE dnssec_keys SET state = ?, changed = ? WHERE domain = ? AND state = ?",
            (new.value, _micros(now), domain, old.value),
        )
    return True


def remove_key(conn: sqlite3.Connection, key: DnssecKey) -> bool:
    cur = conn.execute(
        "DELETE FROM dnssec_keys WHERE domain = ? AND state = ? AND key = ?",
        (key.domain, key.state.value, key.key_pem),
    )
    return cur.rowcount > 0
