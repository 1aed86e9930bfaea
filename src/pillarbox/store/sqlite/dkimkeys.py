"""SQLite queries for DKIM signing keys (table ``dkim_keys``, schema version 3): plain functions
over a connection, run by :class:`~.store.SqliteStore` on its reader threads or its writer.

Keys are never deleted by rotation, only retired: a selector, once published, is never reused
for another key (a verifier's cache may still hold the old record), and the primary key
``(domain, selector)`` enforces it. Removing the domain removes its keys (``ON DELETE CASCADE``).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from pillarbox.errors import AlreadyExists, NotFound
from pillarbox.store.types import DkimKeyRecord

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_COLUMNS = "domain, selector, algorithm, private_pem, created, retired"


def _us(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND


def _key(row: tuple[str, str, str, bytes, int, int | None]) -> DkimKeyRecord:
    domain, selector, algorithm, pem, created, retired = row
    return DkimKeyRecord(
        domain,
        selector,
        algorithm,
        bytes(pem),
        _EPOCH + created * _MICROSECOND,
        None if retired is None else _EPOCH + retired * _MICROSECOND,
    )


def add_key(conn: sqlite3.Connection, key: DkimKeyRecord) -> None:
    if conn.execute("SELECT 1 FROM domains WHERE name = ?", (key.domain,)).fetchone() is None:
        raise NotFound(f"no domain {key.domain}")
    try:
        conn.execute(
            f"INSERT INTO dkim_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (
                key.domain,
                key.selector,
                key.algorithm,
                key.private_pem,
                _us(key.created),
                None if key.retired is None else _us(key.retired),
            ),
        )
    except sqlite3.IntegrityError:
        raise AlreadyExists(f"{key.domain} has a DKIM key with selector {key.selector}") from None


def list_keys(conn: sqlite3.Connection, domain: str, include_retired: bool) -> list[DkimKeyRecord]:
    sql = f"SELECT {_COLUMNS} FROM dkim_keys WHERE domain = ?"
    if not include_retired:
        sql += " AND retired IS NULL"
    return [_key(row) for row in conn.execute(sql + " ORDER BY created, selector", (domain,))]


def retire_key(conn: sqlite3.Connection, domain: str, selector: str, when: datetime) -> None:
    cursor = conn.execute(
        "UPDATE dkim_keys SET retired = coalesce(retired, ?) WHERE domain = ? AND selector = ?",
        (_us(when), domain, selector),
    )
    if cursor.rowcount == 0:
        raise NotFound(f"{domain} has no DKIM key with selector {selector}")
