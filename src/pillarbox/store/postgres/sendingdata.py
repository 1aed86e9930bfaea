"""Outbound sending limits in PostgreSQL (tables ``sending_limits``, ``sent_messages`` and
``sent_recipients``, migration 13): the queries behind the store's sending methods, async
functions over a connection; semantics as in the SQLite backend's :mod:`..sqlite.sendingdata`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pillarbox.errors import NotFound
from pillarbox.store.postgres.dmarcdata import Conn
from pillarbox.store.types import SendingLimits, SendingUsage


async def limits(conn: Conn, account_id: int) -> SendingLimits:
    cur = await conn.execute(
        "SELECT messages, recipients, first_time FROM sending_limits WHERE account_id = %s",
        (account_id,),
    )
    row = await cur.fetchone()
    return SendingLimits() if row is None else SendingLimits(*row)


async def set_limits(conn: Conn, account_id: int, value: SendingLimits) -> None:
    cur = await conn.execute("SELECT 1 FROM accounts WHERE id = %s", (account_id,))
    if await cur.fetchone() is None:
        raise NotFound(f"no account {account_id}")
    if value == SendingLimits():
        await conn.execute("DELETE FROM sending_limits WHERE account_id = %s", (account_id,))
        return
    await conn.execute(
        "INSERT INTO sending_limits (account_id, messages, recipients, first_time) "
        "VALUES (%s, %s, %s, %s) ON CONFLICT (account_id) DO UPDATE SET "
        "messages = excluded.messages, recipients = excluded.recipients, "
        "first_time = excluded.first_time",
        (account_id, value.messages, value.recipients, value.first_time),
    )


async def usage(conn: Conn, account_id: int, since: datetime) -> SendingUsage:
    cur = await conn.execute(
        "SELECT "
        "(SELECT count(*) FROM sent_messages WHERE account_id = %(a)s AND sent > %(t)s), "
        "(SELECT coalesce(sum(recipients), 0) FROM sent_messages "
        " WHERE account_id = %(a)s AND sent > %(t)s), "
        "(SELECT count(*) FROM sent_recipients "
        " WHERE account_id = %(a)s AND first_sent > %(t)s), "
        "l.messages, l.recipients, l.first_time "
        "FROM (SELECT 1) AS one LEFT JOIN sending_limits AS l ON l.account_id = %(a)s",
        {"a": account_id, "t": since},
    )
    row = await cur.fetchone()
    assert row is not None
    return SendingUsage(
        int(row[0]), int(row[1]), int(row[2]), SendingLimits(row[3], row[4], row[5])
    )


async def known(conn: Conn, account_id: int, addresses: Sequence[str]) -> set[str]:
    cur = await conn.execute(
        "SELECT address FROM sent_recipients WHERE account_id = %s AND address = ANY(%s)",
        (account_id, sorted(set(addresses))),
    )
    return {row[0] for row in await cur.fetchall()}


async def record(
    conn: Conn,
    account_id: int,
    recipients: Sequence[str],
    at: datetime,
    window_start: datetime,
    memory_start: datetime,
) -> None:
    unique = sorted(set(recipients))
    await conn.execute(
        "DELETE FROM sent_messages WHERE account_id = %s AND sent <= %s",
        (account_id, window_start),
    )
    await conn.execute(
        "DELETE FROM sent_recipients WHERE account_id = %s AND last_sent <= %s",
        (account_id, memory_start),
    )
    await conn.execute(
        "INSERT INTO sent_messages (account_id, sent, recipients) VALUES (%s, %s, %s)",
        (account_id, at, len(unique)),
    )
    if unique:
        # Sorted: two nodes recording for one account lock the rows in the same order.
        await conn.execute(
            "INSERT INTO sent_recipients (account_id, address, first_sent, last_sent) "
            "SELECT %s, address, %s, %s FROM unnest(%s::text[]) AS address "
            "ON CONFLICT (account_id, address) DO UPDATE SET "
            "last_sent = greatest(sent_recipients.last_sent, excluded.last_sent)",
            (account_id, at, at, unique),
        )
