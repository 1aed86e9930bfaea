"""METADATA entries in SQLite (tables ``mailbox_metadata`` and ``server_metadata``, migration
20): the queries behind the store's metadata methods, run on the reader pool or the writer
thread (whose single writer makes the limit checks exact)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from pillarbox.errors import NotFound
from pillarbox.store.metadatarows import check_limits
from pillarbox.store.types import MetadataLimits


def _target(
    conn: sqlite3.Connection, account_id: int, mailbox_id: int | None
) -> tuple[str, str, int]:
    """(table, key column, key value) of a mailbox's or the account's server entries."""
    if mailbox_id is None:
        if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
            raise NotFound(f"no account {account_id}")
        return "server_metadata", "account_id", account_id
    row = conn.execute(
        "SELECT 1 FROM mailboxes WHERE id = ? AND account_id = ?", (mailbox_id, account_id)
    ).fetchone()
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    return "mailbox_metadata", "mailbox_id", mailbox_id


def get_entries(
    conn: sqlite3.Connection, account_id: int, mailbox_id: int | None, names: Sequence[str] | None
) -> dict[str, bytes]:
    table, column, key = _target(conn, account_id, mailbox_id)
    base = f"SELECT name, value FROM {table} WHERE {column} = ?"
    if names is None:
        rows = conn.execute(base, (key,)).fetchall()
    else:
        rows = []
        for name in dict.fromkeys(names):
            below = name + "/"
            rows += conn.execute(
                base + " AND (name = ? OR substr(name, 1, ?) = ?)", (key, name, len(below), below)
            ).fetchall()
    return {row[0]: bytes(row[1]) for row in rows}


def set_entries(
    conn: sqlite3.Connection,
    account_id: int,
    mailbox_id: int | None,
    entries: Mapping[str, bytes | None],
    limits: MetadataLimits,
) -> None:
    table, column, key = _target(conn, account_id, mailbox_id)
    count = conn.execute(
        f"SELECT count(*) FROM {table} WHERE {column} = ?",
        (key,),
    ).fetchone()[0]
    existing: dict[str, int] = {}
    for name in entries:
        row = conn.execute(
            f"SELECT length(CAST(name AS BLOB)) + length(value) FROM {table} "
            f"WHERE {column} = ? AND name = ?",
            (key, name),
        ).fetchone()
        if row is not None:
            existing[name] = int(row[0])
    check_limits(
        count=int(count),
        total=account_total(conn, account_id),
        existing=existing,
        entries=entries,
        limits=limits,
    )
    for name, value in entries.items():
        if value is None:
            conn.execute(
                f"DELETE FROM {table} WHERE {column} = ? AND name = ?",
                (key, name),
            )
        else:
            conn.execute(
                f"INSERT INTO {table} ({column}, name, value) VALUES (?, ?, ?) "
                f"ON CONFLICT ({column}, name) DO UPDATE SET value = excluded.value",
                (key, name, value),
            )


def account_total(conn: sqlite3.Connection, account_id: int) -> int:
    """Octets of names and values of all the account's entries."""
    row = conn.execute(
        "SELECT (SELECT coalesce(sum(length(CAST(name AS BLOB)) + length(value)), 0) "
        "FROM server_metadata WHERE account_id = ?) + "
        "(SELECT coalesce(sum(length(CAST(m.name AS BLOB)) + length(m.value)), 0) "
        "FROM mailbox_metadata m JOIN mailboxes b ON b.id = m.mailbox_id "
        "WHERE b.account_id = ?)",
        (account_id, account_id),
    ).fetchone()
    return int(row[0])


def list_entries(conn: sqlite3.Connection, account_id: int) -> dict[int, dict[str, bytes]]:
    result: dict[int, dict[str, bytes]] = {}
    for name, value in conn.execute(
        "SELECT name, value FROM server_metadata WHERE account_id = ?", (account_id,)
    ):
        result.setdefault(0, {})[name] = bytes(value)
    for mailbox_id, name, value in conn.execute(
        "SELECT m.mailbox_id, m.name, m.value FROM mailbox_metadata m "
        "JOIN mailboxes b ON b.id = m.mailbox_id WHERE b.account_id = ?",
        (account_id,),
    ):
        result.setdefault(int(mailbox_id), {})[name] = bytes(value)
    return result


def copy_entries(conn: sqlite3.Connection, source_id: int, target_id: int) -> None:
    """RFC 5464 §4.1: renaming INBOX copies its entries to the new mailbox."""
    conn.execute(
        "INSERT INTO mailbox_metadata (mailbox_id, name, value) "
        "SELECT ?, name, value FROM mailbox_metadata WHERE mailbox_id = ?",
        (target_id, source_id),
    )
