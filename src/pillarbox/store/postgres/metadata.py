"""METADATA entries in PostgreSQL (tables ``mailbox_metadata`` and ``server_metadata``,
migration 15): the queries behind the store's metadata methods.

A write locks the account's row first (``FOR NO KEY UPDATE``), so two nodes writing entries of
one account at once take turns and the limit checks see each other's result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from pillarbox.errors import NotFound
from pillarbox.store.metadatarows import check_limits
from pillarbox.store.types import MetadataLimits

Conn = psycopg.AsyncConnection[TupleRow]


async def _rows(conn: Conn, query: str, params: Sequence[Any]) -> list[TupleRow]:
    cur = await conn.execute(query.encode(), params)
    return await cur.fetchall()


async def _target(
    conn: Conn, account_id: int, mailbox_id: int | None, *, lock: bool = False
) -> tuple[str, str, int]:
    """(table, key column, key value) of a mailbox's or the account's server entries."""
    locking = " FOR NO KEY UPDATE" if lock else ""
    if lock or mailbox_id is None:
        found = await _rows(conn, "SELECT 1 FROM accounts WHERE id = %s" + locking, (account_id,))
        if not found:
            raise NotFound(f"no account {account_id}")
    if mailbox_id is None:
        return "server_metadata", "account_id", account_id
    found = await _rows(
        conn, "SELECT 1 FROM mailboxes WHERE id = %s AND account_id = %s", (mailbox_id, account_id)
    )
    if not found:
        raise NotFound(f"no mailbox {mailbox_id}")
    return "mailbox_metadata", "mailbox_id", mailbox_id


async def get_entries(
    conn: Conn, account_id: int, mailbox_id: int | None, names: Sequence[str] | None
) -> dict[str, bytes]:
    table, column, key = await _target(conn, account_id, mailbox_id)
    base = f"SELECT name, value FROM {table} WHERE {column} = %s"
    if names is None:
        rows = await _rows(conn, base, (key,))
    else:
        unique = list(dict.fromkeys(names))
        rows = await _rows(
            conn,
            base + " AND (name = ANY(%s) OR EXISTS (SELECT 1 FROM unnest(%s::text[]) AS p(n) "
            "WHERE left(name, length(p.n) + 1) = p.n || '/'))",
            (key, unique, unique),
        )
    return {row[0]: bytes(row[1]) for row in rows}


async def set_entries(
    conn: Conn,
    account_id: int,
    mailbox_id: int | None,
    entries: Mapping[str, bytes | None],
    limits: MetadataLimits,
) -> None:
    table, column, key = await _target(conn, account_id, mailbox_id, lock=True)
    count = (await _rows(conn, f"SELECT count(*) FROM {table} WHERE {column} = %s", (key,)))[0][0]
    names = list(entries)
    existing = {
        row[0]: int(row[1])
        for row in await _rows(
            conn,
            f"SELECT name, octet_length(name) + octet_length(value) FROM {table} "
            f"WHERE {column} = %s AND name = ANY(%s)",
            (key, names),
        )
    }
    check_limits(
        count=int(count),
        total=await account_total(conn, account_id),
        existing=existing,
        entries=entries,
        limits=limits,
    )
    for name, value in entries.items():
        if value is None:
            await conn.execute(
                f"DELETE FROM {table} WHERE {column} = %s AND name = %s".encode(),
                (key, name),
            )
        else:
            await conn.execute(
                f"INSERT INTO {table} ({column}, name, value) VALUES (%s, %s, %s) "
                f"ON CONFLICT ({column}, name) DO UPDATE SET value = excluded.value".encode(),
                (key, name, value),
            )


async def account_total(conn: Conn, account_id: int) -> int:
    """Octets of names and values of all the account's entries."""
    rows = await _rows(
        conn,
        "SELECT (SELECT coalesce(sum(octet_length(name) + octet_length(value)), 0) "
        "FROM server_metadata WHERE account_id = %s) + "
        "(SELECT coalesce(sum(octet_length(m.name) + octet_length(m.value)), 0) "
        "FROM mailbox_metadata m JOIN mailboxes b ON b.id = m.mailbox_id "
        "WHERE b.account_id = %s)",
        (account_id, account_id),
    )
    return int(rows[0][0])


async def list_entries(conn: Conn, account_id: int) -> dict[int, dict[str, bytes]]:
    result: dict[int, dict[str, bytes]] = {}
    rows = await _rows(
        conn,
        "SELECT 0, name, value FROM server_metadata WHERE account_id = %s "
        "UNION ALL SELECT m.mailbox_id, m.name, m.value FROM mailbox_metadata m "
        "JOIN mailboxes b ON b.id = m.mailbox_id WHERE b.account_id = %s",
        (account_id, account_id),
    )
    for mailbox_id, name, value in rows:
        result.setdefault(int(mailbox_id), {})[name] = bytes(value)
    return result


async def copy_entries(conn: Conn, source_id: int, target_id: int) -> None:
    """RFC 5464 §4.1: renaming INBOX copies its entries to the new mailbox."""
    await conn.execute(
        "INSERT INTO mailbox_metadata (mailbox_id, name, value) "
        "SELECT %s, name, value FROM mailbox_metadata WHERE mailbox_id = %s",
        (target_id, source_id),
    )
