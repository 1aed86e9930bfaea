"""Sieve scripts in SQLite (table ``sieve_scripts``, migration 14) and the "duplicate" test's
tracking (``sieve_duplicates``, migration 37): the queries behind the store's Sieve methods,
run on the reader pool or the writer thread.

At most one script per account is active: a partial unique index enforces it, so activating
one clears the others in the same transaction first.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from pillarbox.errors import AlreadyExists, NotFound
from pillarbox.store.sqlite.dmarcdata import microseconds
from pillarbox.store.types import SieveScript

_COLUMNS = "name, content, active"


def _script(row: tuple[str, str, int]) -> SieveScript:
    return SieveScript(row[0], row[1], bool(row[2]))


def list_scripts(conn: sqlite3.Connection, account_id: int) -> list[SieveScript]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM sieve_scripts WHERE account_id = ? ORDER BY name", (account_id,)
    )
    return [_script(row) for row in rows]


def get_script(conn: sqlite3.Connection, account_id: int, name: str) -> SieveScript | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM sieve_scripts WHERE account_id = ? AND name = ?",
        (account_id, name),
    ).fetchone()
    return None if row is None else _script(row)


def active_script(conn: sqlite3.Connection, account_id: int) -> SieveScript | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM sieve_scripts WHERE account_id = ? AND active = 1",
        (account_id,),
    ).fetchone()
    return None if row is None else _script(row)


def put_script(conn: sqlite3.Connection, account_id: int, name: str, content: str) -> None:
    if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
        raise NotFound(f"no account {account_id}")
    conn.execute(
        "INSERT INTO sieve_scripts (account_id, name, content) VALUES (?, ?, ?) "
        "ON CONFLICT (account_id, name) DO UPDATE SET content = excluded.content",
        (account_id, name, content),
    )


def set_active(conn: sqlite3.Connection, account_id: int, name: str | None) -> None:
    if name is not None and get_script(conn, account_id, name) is None:
        raise NotFound(f"no script {name!r}")
    conn.execute(
        "UPDATE sieve_scripts SET active = 0 WHERE account_id = ? AND active = 1", (account_id,)
    )
    if name is not None:
        conn.execute(
            "UPDATE sieve_scripts SET active = 1 WHERE account_id = ? AND name = ?",
            (account_id, name),
        )


def delete_script(conn: sqlite3.Connection, account_id: int, name: str) -> None:
    cursor = conn.execute(
        "DELETE FROM sieve_scripts WHERE account_id = ? AND name = ?", (account_id, name)
    )
    if cursor.rowcount == 0:
        raise NotFound(f"no script {name!r}")


def rename_script(conn: sqlite3.Connection, account_id: int, old: str, new: str) -> None:
    if get_script(conn, account_id, old) is None:
        raise NotFound(f"no script {old!r}")
    if get_script(conn, account_id, new) is not None:
        raise AlreadyExists(f"script {new!r} exists")
    conn.execute(
        "UPDATE sieve_scripts SET name = ? WHERE account_id = ? AND name = ?",
        (new, account_id, old),
    )


# -- the "duplicate" test (RFC 7352; table sieve_duplicates, migration 37) -------------------


def live_duplicates(conn: sqlite3.Connection, account_id: int, now: datetime) -> frozenset[str]:
    rows = conn.execute(
        "SELECT key FROM sieve_duplicates WHERE account_id = ? AND expires > ?",
        (account_id, microseconds(now)),
    )
    return frozenset(key for (key,) in rows)


def track_duplicates(
    conn: sqlite3.Connection,
    account_id: int,
    entries: Sequence[tuple[str, datetime]],
    now: datetime,
    max_entries: int,
) -> None:
    if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
        raise NotFound(f"no account {account_id}")
    conn.execute(
        "DELETE FROM sieve_duplicates WHERE account_id = ? AND expires <= ?",
        (account_id, microseconds(now)),
    )
    conn.executemany(
        "INSERT INTO sieve_duplicates (account_id, key, expires) VALUES (?, ?, ?) "
        "ON CONFLICT (account_id, key) DO UPDATE SET expires = excluded.expires",
        [(account_id, key, microseconds(expires)) for key, expires in entries],
    )
    # The bound: the entries that expire first go first.
    conn.execute(
        "DELETE FROM sieve_duplicates WHERE account_id = ? AND key IN ("
        "SELECT key FROM sieve_duplicates WHERE account_id = ? "
        "ORDER BY expires DESC, key LIMIT -1 OFFSET ?)",
        (account_id, account_id, max_entries),
    )


def prune_duplicates(conn: sqlite3.Connection, now: datetime) -> int:
    # Account by account: the index leads with the account, so each is one range of it, not
    # a scan of every entry.
    return conn.execute(
        "DELETE FROM sieve_duplicates WHERE account_id IN (SELECT id FROM accounts) "
        "AND expires <= ?",
        (microseconds(now),),
    ).rowcount
