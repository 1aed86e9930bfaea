"""PostgreSQL queries behind the web's needs and the signing keys: sorted, filtered pages of a
mailbox; account settings; issued tokens; DKIM keys. Plain async functions over a connection,
run by :class:`~.store.PostgresStore` inside its reads and write transactions.

A page is chosen as in the SQLite backend (its ``webdata`` notes): the ordered UIDs of the page
from the ``messages`` sort-key columns filled at ingest, then the page's records by primary key.
Text is compared byte-wise (``COLLATE "C"``) so both backends order alike whatever the
database's collation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import TupleRow

from pillarbox.errors import AlreadyExists, NotFound, UserError
from pillarbox.store.types import (
    AccountSettings,
    AccountToken,
    DkimKeyRecord,
    Identity,
    LoginHold,
    MessageQuery,
    SortKey,
    ThreadFields,
    TokenKind,
    TotpEnrolment,
    vacation_renewed,
)

Conn = psycopg.AsyncConnection[TupleRow]

#: ORDER BY expression of each sort key (ties: UID, in the same direction).
_ORDER = {
    SortKey.ARRIVAL: "internal_date",
    SortKey.DATE: "coalesce(sent_date, internal_date)",
    SortKey.FROM: 'from_addr COLLATE "C"',
    SortKey.SUBJECT: 'lower(subject) COLLATE "C"',
    SortKey.SIZE: "size",
}


def _contains(column: str) -> str:
    """Case-insensitive substring test of a sort-key column against a lowercased term."""
    return f"strpos(lower({column}), %s) > 0"


def _where(mailbox_id: int, query: MessageQuery) -> tuple[str, list[object]]:
    clauses = ["mailbox_id = %s"]
    params: list[object] = [mailbox_id]
    for column, term in (("from_addr", query.from_contains), ("subject", query.subject_contains)):
        if term:
            clauses.append(_contains(column))
            params.append(term.lower())
    if query.to_contains:
        clauses.append(f"({_contains('to_addr')} OR {_contains('cc_addr')})")
        params += [query.to_contains.lower()] * 2
    if query.since is not None:
        clauses.append("coalesce(sent_date, internal_date) >= %s")
        params.append(query.since)
    if query.before is not None:
        clauses.append("coalesce(sent_date, internal_date) < %s")
        params.append(query.before)
    if query.unseen:
        clauses.append("NOT seen")
    if query.flagged:
        clauses.append("'\\Flagged' = ANY(flags)")
    if query.uids is not None:
        clauses.append("uid = ANY(%s)")
        params.append(sorted(query.uids))
    return " AND ".join(clauses), params


async def page_uids(
    conn: Conn, mailbox_id: int, query: MessageQuery, offset: int, limit: int
) -> tuple[int, list[int]]:
    """(number matching, the page's UIDs in order); ``NotFound`` for an unknown mailbox."""
    cur = await conn.execute("SELECT messages FROM mailboxes WHERE id = %s", (mailbox_id,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    where, params = _where(mailbox_id, query)
    if len(params) == 1:
        total = int(row[0])
    else:
        cur = await conn.execute(f"SELECT count(*) FROM messages WHERE {where}".encode(), params)
        counted = await cur.fetchone()
        total = int(counted[0]) if counted else 0
    direction = "DESC" if query.descending else "ASC"
    order = f"{_ORDER[query.sort]} {direction}, uid {direction}"
    cur = await conn.execute(
        f"SELECT uid FROM messages WHERE {where} ORDER BY {order} LIMIT %s OFFSET %s".encode(),
        (*params, max(0, limit), max(0, offset)),
    )
    return total, [int(r[0]) for r in await cur.fetchall()]


# -- settings ------------------------------------------------------------------------------------


async def _require_account(conn: Conn, account_id: int) -> None:
    cur = await conn.execute("SELECT 1 FROM accounts WHERE id = %s", (account_id,))
    if await cur.fetchone() is None:
        raise NotFound(f"no account {account_id}")


async def get_settings(conn: Conn, account_id: int) -> AccountSettings:
    cur = await conn.execute(
        "SELECT vacation_enabled, vacation_subject, vacation_body, vacation_until, forward_to, "
        "forward_keep_copy, junk_days, trash_days, time_zone, shortcuts, default_calendar "
        "FROM account_settings "
        "WHERE account_id = %s",
        (account_id,),
    )
    row = await cur.fetchone()
    if row is None:
        await _require_account(conn, account_id)
        return AccountSettings()
    (
        enabled,
        subject,
        body,
        until,
        forward_to,
        keep,
        junk_days,
        trash_days,
        zone,
        keys,
        calendar,
    ) = row
    return AccountSettings(
        vacation_enabled=enabled,
        vacation_subject=subject,
        vacation_body=body,
        vacation_until=until,
        forward_to=tuple(forward_to),
        forward_keep_copy=keep,
        junk_days=junk_days,
        trash_days=trash_days,
        time_zone=zone,
        shortcuts=keys,
        default_calendar=calendar,
    )


async def set_settings(conn: Conn, account_id: int, settings: AccountSettings) -> None:
    if vacation_renewed(await get_settings(conn, account_id), settings):
        await conn.execute("DELETE FROM vacation_replies WHERE account_id = %s", (account_id,))
    await conn.execute(
        "INSERT INTO account_settings (account_id, vacation_enabled, vacation_subject, "
        "vacation_body, vacation_until, forward_to, forward_keep_copy, junk_days, trash_days, "
        "time_zone, shortcuts, default_calendar) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (account_id) DO UPDATE SET "
        "vacation_enabled = excluded.vacation_enabled, "
        "vacation_subject = excluded.vacation_subject, vacation_body = excluded.vacation_body, "
        "vacation_until = excluded.vacation_until, forward_to = excluded.forward_to, "
        "forward_keep_copy = excluded.forward_keep_copy, junk_days = excluded.junk_days, "
        "trash_days = excluded.trash_days, time_zone = excluded.time_zone, "
        "shortcuts = excluded.shortcuts, default_calendar = excluded.default_calendar",
        (
            account_id,
            settings.vacation_enabled,
            settings.vacation_subject,
            settings.vacation_body,
            settings.vacation_until,
            list(settings.forward_to),
            settings.forward_keep_copy,
            settings.junk_days,
            settings.trash_days,
            settings.time_zone,
            settings.shortcuts,
            settings.default_calendar,
        ),
    )


async def claim_vacation_reply(
    conn: Conn, account_id: int, sender: str, now: datetime, interval: timedelta
) -> bool:
    await _require_account(conn, account_id)
    horizon = now - interval
    await conn.execute(
        "DELETE FROM vacation_replies WHERE account_id = %s AND replied <= %s AND sender <> %s",
        (account_id, horizon, sender.lower()),
    )
    # The conditional upsert returns no row when the last reply is recent.
    cur = await conn.execute(
        "INSERT INTO vacation_replies (account_id, sender, replied) VALUES (%s, %s, %s) "
        "ON CONFLICT (account_id, sender) DO UPDATE SET replied = excluded.replied "
        "WHERE vacation_replies.replied <= %s RETURNING 1",
        (account_id, sender.lower(), now, horizon),
    )
    return await cur.fetchone() is not None


# -- tokens --------------------------------------------------------------------------------------

_TOKEN_COLUMNS = "id, account_id, kind, label, created"


def _token(row: TupleRow) -> AccountToken:
    token_id, account_id, kind, label, created = row
    return AccountToken(token_id, account_id, TokenKind(kind), label, created)


async def add_token(
    conn: Conn, account_id: int, kind: TokenKind, label: str, digest: str, now: datetime
) -> AccountToken:
    await _require_account(conn, account_id)
    try:
        cur = await conn.execute(
            "INSERT INTO account_tokens (account_id, kind, label, digest, created) "
            f"VALUES (%s, %s, %s, %s, %s) RETURNING {_TOKEN_COLUMNS}",
            (account_id, kind.value, label, digest, now),
        )
    except pg_errors.UniqueViolation:
        raise AlreadyExists("a token with this digest exists") from None
    row = await cur.fetchone()
    assert row is not None
    return _token(row)


async def list_tokens(conn: Conn, account_id: int, kind: TokenKind | None) -> list[AccountToken]:
    cur = await conn.execute(
        f"SELECT {_TOKEN_COLUMNS} FROM account_tokens WHERE account_id = %s "
        "AND (%s::text IS NULL OR kind = %s) ORDER BY id",
        (account_id, *([kind.value] * 2 if kind else [None, None])),
    )
    return [_token(row) for row in await cur.fetchall()]


async def remove_token(conn: Conn, account_id: int, token_id: int) -> None:
    cur = await conn.execute(
        "DELETE FROM account_tokens WHERE id = %s AND account_id = %s", (token_id, account_id)
    )
    if cur.rowcount == 0:
        raise NotFound(f"no token {token_id}")


async def find_token(conn: Conn, kind: TokenKind, digest: str) -> AccountToken | None:
    cur = await conn.execute(
        f"SELECT {_TOKEN_COLUMNS} FROM account_tokens WHERE kind = %s AND digest = %s",
        (kind.value, digest),
    )
    row = await cur.fetchone()
    return None if row is None else _token(row)


# -- second factor (migration 19) ---------------------------------------------------------------


async def enable_totp(
    conn: Conn,
    account_id: int,
    sealed_secret: str,
    recovery_digests: Sequence[str],
    now: datetime,
) -> None:
    await _require_account(conn, account_id)
    await disable_totp(conn, account_id)
    await conn.execute(
        "INSERT INTO account_totp (account_id, sealed_secret, last_step, created) "
        "VALUES (%s, %s, 0, %s)",
        (account_id, sealed_secret, now),
    )
    if recovery_digests:
        await conn.execute(
            "INSERT INTO account_totp_recovery (account_id, digest) "
            "SELECT %s, d FROM unnest(%s::text[]) AS d ON CONFLICT DO NOTHING",
            (account_id, list(recovery_digests)),
        )


async def get_totp(conn: Conn, account_id: int) -> TotpEnrolment | None:
    cur = await conn.execute(
        "SELECT sealed_secret, last_step, "
        "(SELECT count(*) FROM account_totp_recovery r WHERE r.account_id = t.account_id) "
        "FROM account_totp t WHERE account_id = %s",
        (account_id,),
    )
    row = await cur.fetchone()
    return None if row is None else TotpEnrolment(account_id, row[0], row[1], row[2])


async def disable_totp(conn: Conn, account_id: int) -> bool:
    await conn.execute("DELETE FROM account_totp_recovery WHERE account_id = %s", (account_id,))
    cur = await conn.execute("DELETE FROM account_totp WHERE account_id = %s", (account_id,))
    return cur.rowcount == 1


async def claim_totp_step(conn: Conn, account_id: int, step: int) -> bool:
    cur = await conn.execute(
        "UPDATE account_totp SET last_step = %s WHERE account_id = %s AND last_step < %s",
        (step, account_id, step),
    )
    return cur.rowcount == 1


async def use_recovery_code(conn: Conn, account_id: int, digest: str) -> bool:
    cur = await conn.execute(
        "DELETE FROM account_totp_recovery WHERE account_id = %s AND digest = %s",
        (account_id, digest),
    )
    return cur.rowcount == 1


async def replace_recovery_codes(conn: Conn, account_id: int, digests: Sequence[str]) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM account_totp WHERE account_id = %s FOR UPDATE", (account_id,)
    )
    if await cur.fetchone() is None:
        return False
    await conn.execute("DELETE FROM account_totp_recovery WHERE account_id = %s", (account_id,))
    if digests:
        await conn.execute(
            "INSERT INTO account_totp_recovery (account_id, digest) "
            "SELECT %s, d FROM unnest(%s::text[]) AS d ON CONFLICT DO NOTHING",
            (account_id, list(digests)),
        )
    return True


async def totp_accounts(conn: Conn) -> set[int]:
    cur = await conn.execute("SELECT account_id FROM account_totp")
    return {row[0] for row in await cur.fetchall()}


# -- messages two-step logins hold between their steps (migration 40) ---------------------------


async def hold_login_message(conn: Conn, hold: LoginHold, now: datetime, max_bytes: int) -> bool:
    cur = await conn.execute("SELECT 1 FROM accounts WHERE id = %s", (hold.account_id,))
    if await cur.fetchone() is None:
        raise NotFound(f"no account {hold.account_id}")
    # One bound for every node: two holds at once must not both fit in the same room. Reads
    # (another node's code page) go on meanwhile.
    await conn.execute("LOCK TABLE login_holds IN SHARE ROW EXCLUSIVE MODE")
    await conn.execute(
        "DELETE FROM login_holds WHERE account_id = %s OR expires <= %s", (hold.account_id, now)
    )
    if hold.size > max_bytes:
        return False
    # The bound: the holds expiring last stay while they and this one fit.
    await conn.execute(
        "DELETE FROM login_holds WHERE account_id IN (SELECT account_id FROM ("
        "SELECT account_id, sum(size) OVER (ORDER BY expires DESC, account_id DESC) AS kept "
        "FROM login_holds) AS running WHERE kept > %s)",
        (max_bytes - hold.size,),
    )
    await conn.execute(
        "INSERT INTO login_holds (account_id, sid, sealed, size, expires) "
        "VALUES (%s, %s, %s, %s, %s)",
        (hold.account_id, hold.sid, hold.sealed, hold.size, hold.expires),
    )
    return True


async def held_login_message(conn: Conn, account_id: int, sid: str, now: datetime) -> str | None:
    cur = await conn.execute(
        "SELECT sealed FROM login_holds WHERE account_id = %s AND sid = %s AND expires > %s",
        (account_id, sid, now),
    )
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def drop_login_message(conn: Conn, account_id: int, sid: str) -> None:
    await conn.execute(
        "DELETE FROM login_holds WHERE account_id = %s AND sid = %s", (account_id, sid)
    )


async def prune_login_messages(conn: Conn, now: datetime) -> int:
    cur = await conn.execute("DELETE FROM login_holds WHERE expires <= %s", (now,))
    return cur.rowcount


# -- DKIM keys (never deleted by rotation, only retired: see the SQLite dkimkeys notes) ----------

_KEY_COLUMNS = "domain, selector, algorithm, private_pem, created, retired"


def _key(row: TupleRow) -> DkimKeyRecord:
    domain, selector, algorithm, pem, created, retired = row
    return DkimKeyRecord(domain, selector, algorithm, bytes(pem), created, retired)


async def add_dkim_key(conn: Conn, key: DkimKeyRecord) -> None:
    cur = await conn.execute("SELECT 1 FROM domains WHERE name = %s FOR SHARE", (key.domain,))
    if await cur.fetchone() is None:
        raise NotFound(f"no domain {key.domain}")
    values: tuple[Any, ...] = (
        key.domain,
        key.selector,
        key.algorithm,
        key.private_pem,
        key.created,
        key.retired,
    )
    cur = await conn.execute(
        f"INSERT INTO dkim_keys ({_KEY_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) "
        "ON CONFLICT DO NOTHING RETURNING 1",
        values,
    )
    if await cur.fetchone() is None:
        raise AlreadyExists(f"{key.domain} has a DKIM key with selector {key.selector}")


async def list_dkim_keys(conn: Conn, domain: str, include_retired: bool) -> list[DkimKeyRecord]:
    cur = await conn.execute(
        f"SELECT {_KEY_COLUMNS} FROM dkim_keys WHERE domain = %s "
        'AND (%s OR retired IS NULL) ORDER BY created, selector COLLATE "C"',
        (domain, include_retired),
    )
    return [_key(row) for row in await cur.fetchall()]


async def retire_dkim_key(conn: Conn, domain: str, selector: str, when: datetime) -> None:
    cur = await conn.execute(
        "UPDATE dkim_keys SET retired = coalesce(retired, %s) WHERE domain = %s AND selector = %s",
        (when, domain, selector),
    )
    if cur.rowcount == 0:
        raise NotFound(f"{domain} has no DKIM key with selector {selector}")


async def thread_sizes(conn: Conn, mailbox_id: int) -> list[tuple[int, int]]:
    """The range of ``messages_thread`` (mailbox, thread, uid; sent_date and internal_date
    included: migration 31), grouped; an index-only scan where the visibility map allows."""
    cursor = await conn.execute(
        "SELECT thread, count(*) FROM messages WHERE mailbox_id = %s GROUP BY thread "
        "ORDER BY max(coalesce(sent_date, internal_date)) DESC, max(uid) DESC",
        (mailbox_id,),
    )
    return [(int(thread), int(count)) for thread, count in await cursor.fetchall()]


async def thread_fields(conn: Conn, mailbox_id: int, threads: Sequence[int]) -> list[ThreadFields]:
    """The threads' rows found by ``messages_thread``: every field is a column (``refs`` since
    migration 4), so no MessageInfo is read or decoded."""
    cursor = await conn.execute(
        "SELECT uid, internal_date, sent_date, subject, message_id, in_reply_to, refs, thread, "
        "seen FROM messages WHERE mailbox_id = %s AND thread = ANY(%s) ORDER BY uid",
        (mailbox_id, list(threads)),
    )
    return [
        ThreadFields(
            uid, internal, sent, subject, message_id, in_reply_to, tuple(references), thread, seen
        )
        for uid, internal, sent, subject, message_id, in_reply_to, references, thread, seen in (
            await cursor.fetchall()
        )
    ]


# -- sending identities and correspondents (migration 17; sent_recipients from 13) --------------

_IDENTITY_COLUMNS = "id, address, display_name, reply_to, signature, is_default"


def _identity(row: tuple[Any, ...]) -> Identity:
    id_, address, name, reply_to, signature, is_default = row
    return Identity(
        id=id_,
        address=address,
        display_name=name,
        reply_to=reply_to,
        signature=signature,
        is_default=is_default,
    )


async def list_identities(conn: Conn, account_id: int) -> list[Identity]:
    cur = await conn.execute(
        f"SELECT {_IDENTITY_COLUMNS} FROM identities WHERE account_id = %s "
        'ORDER BY is_default DESC, address COLLATE "C", id',
        (account_id,),
    )
    return [_identity(row) for row in await cur.fetchall()]


async def save_identity(conn: Conn, account_id: int, identity: Identity, limit: int) -> Identity:
    # The account row is locked first: one identity write per account at a time, so the
    # count below holds and two "make default" never deadlock on each other's rows.
    cur = await conn.execute(
        "SELECT 1 FROM accounts WHERE id = %s FOR NO KEY UPDATE", (account_id,)
    )
    if await cur.fetchone() is None:
        raise NotFound(f"no account {account_id}")
    values = (
        identity.address,
        identity.display_name,
        identity.reply_to,
        identity.signature,
        identity.is_default,
    )
    if identity.id == 0:
        cur = await conn.execute(
            "SELECT count(*) FROM identities WHERE account_id = %s", (account_id,)
        )
        row = await cur.fetchone()
        if row is not None and row[0] >= limit:
            raise UserError(f"at most {limit} identities")
        cur = await conn.execute(
            "INSERT INTO identities (account_id, address, display_name, reply_to, signature, "
            "is_default) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (account_id, *values),
        )
        row = await cur.fetchone()
        assert row is not None
        stored = replace(identity, id=row[0])
    else:
        cur = await conn.execute(
            "UPDATE identities SET address = %s, display_name = %s, reply_to = %s, "
            "signature = %s, is_default = %s WHERE id = %s AND account_id = %s",
            (*values, identity.id, account_id),
        )
        if cur.rowcount == 0:
            raise NotFound(f"no identity {identity.id}")
        stored = identity
    if stored.is_default:
        await conn.execute(
            "UPDATE identities SET is_default = false WHERE account_id = %s AND id != %s "
            "AND is_default",
            (account_id, stored.id),
        )
    return stored


async def delete_identity(conn: Conn, account_id: int, identity_id: int) -> None:
    cur = await conn.execute(
        "DELETE FROM identities WHERE id = %s AND account_id = %s", (identity_id, account_id)
    )
    if cur.rowcount == 0:
        raise NotFound(f"no identity {identity_id}")


async def correspondents(conn: Conn, account_id: int, prefix: str, limit: int) -> list[str]:
    # Both scans stay within the account's rows (the primary keys start with account_id).
    prefix = prefix.lower()
    cur = await conn.execute(
        "SELECT address FROM sent_recipients WHERE account_id = %s "
        'AND starts_with(lower(address), %s) ORDER BY last_sent DESC, address COLLATE "C" '
        "LIMIT %s",
        (account_id, prefix, limit),
    )
    found: dict[str, None] = dict.fromkeys(address for (address,) in await cur.fetchall())
    cur = await conn.execute(
        "SELECT substr(key, 6) FROM sender_reputation WHERE account_id = %s "
        'AND starts_with(key, %s) ORDER BY ham DESC, key COLLATE "C" LIMIT %s',
        (account_id, "sent:" + prefix, limit),
    )
    seen = {a.lower() for a in found}
    for (address,) in await cur.fetchall():
        if address.lower() not in seen:
            found[address] = None
    return list(found)[:limit]
