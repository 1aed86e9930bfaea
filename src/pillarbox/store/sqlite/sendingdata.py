"""Outbound sending limits in SQLite (tables ``sending_limits``, ``sent_messages`` and
``sent_recipients``, migration 18): the queries behind the store's sending methods, plain
functions over a connection as in :mod:`.dmarcdata`. Times are microseconds since the epoch.

The usage read is one statement of indexed aggregates (``sent_messages(account_id, sent)``,
``sent_recipients(account_id, first_sent)``) plus the account's limits row; each write prunes
the same account's rows that fell out of the window or the memory, so neither table grows past
what the limits let an account send.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from pillarbox.errors import NotFound
from pillarbox.store.sqlite.dmarcdata import microseconds
from pillarbox.store.types import SendingLimits, SendingUsage

#: Addresses per ``IN (…)`` query, under SQLite's default host-parameter limit.
_CHUNK = 500


def limits(conn: sqlite3.Connection, account_id: int) -> SendingLimits:
    row = conn.execute(
        "SELECT messages, recipients, first_time FROM sending_limits WHERE account_id = ?",
        (account_id,),
    ).fetchone()
    return SendingLimits() if row is None else SendingLimits(*row)


def set_limits(conn: sqlite3.Connection, account_id: int, value: SendingLimits) -> None:
    if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
        raise NotFound(f"no account {account_id}")
    if value == SendingLimits():
        conn.execute("DELETE FROM sending_limits WHERE account_id = ?", (account_id,))
        return
    conn.execute(
        "INSERT INTO sending_limits (account_id, messages, recipients, first_time) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET "
        "messages = excluded.messages, recipients = excluded.recipients, "
        "first_time = excluded.first_time",
        (account_id, value.messages, value.recipients, value.first_time),
    )


def usage(conn: sqlite3.Connection, account_id: int, since: datetime) -> SendingUsage:
    after = microseconds(since)
    row = conn.execute(
        "SELECT "
        "(SELECT count(*) FROM sent_messages WHERE account_id = ?1 AND sent > ?2), "
        "(SELECT coalesce(sum(recipients), 0) FROM sent_messages "
        " WHERE account_id = ?1 AND sent > ?2), "
        "(SELECT count(*) FROM sent_recipients WHERE account_id = ?1 AND first_sent > ?2), "
        "l.messages, l.recipients, l.first_time "
        "FROM (SELECT 1) LEFT JOIN sending_limits AS l ON l.account_id = ?1",
        (account_id, after),
    ).fetchone()
    return SendingUsage(row[0], row[1], row[2], SendingLimits(row[3], row[4], row[5]))


def known(conn: sqlite3.Connection, account_id: int, addresses: Sequence[str]) -> set[str]:
    found: set[str] = set()
    unique = sorted(set(addresses))
    for start in range(0, len(unique), _CHUNK):
        chunk = unique[start : start + _CHUNK]
        rows = conn.execute(
            "SELECT address FROM sent_recipients WHERE account_id = ? "
            f"AND address IN ({', '.join('?' * len(chunk))})",
            (account_id, *chunk),
        )
        found.update(row[0] for row in rows)
    return found


def record(
    conn: sqlite3.Connection,
    account_id: int,
    recipients: Sequence[str],
    at: datetime,
    window_start: datetime,
    memory_start: datetime,
) -> None:
    when = microseconds(at)
    unique = sorted(set(recipients))
    conn.execute(
        "DELETE FROM sent_messages WHERE account_id = ? AND sent <= ?",
        (account_id, microseconds(window_start)),
    )
    conn.execute(
        "DELETE FROM sent_recipients WHERE account_id = ? AND last_sent <= ?",
        (account_id, microseconds(memory_start)),
    )
    conn.execute(
        "INSERT INTO sent_messages (account_id, sent, recipients) VALUES (?, ?, ?)",
        (account_id, when, len(unique)),
    )
    conn.executemany(
        "INSERT INTO sent_recipients (account_id, address, first_sent, last_sent) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (account_id, address) DO UPDATE SET "
        "last_sent = max(last_sent, excluded.last_sent)",
        [(account_id, address, when, when) for address in unique],
    )
