"""SQLite queries behind the web's needs: sorted, filtered pages of a mailbox; account settings;
issued tokens. Plain functions over a connection; :class:`~.store.SqliteStore` runs them on its
reader threads or its writer, like its own queries.

A page is chosen in two steps: the ordered UIDs of the page (one scan of the mailbox's rows in
the ``messages`` table, whose sort-key columns were filled at ingest, with SQLite's top-N sort
for ``LIMIT``), then the page's records by primary key. Joining ``blobs`` only for the page's
rows, not for every candidate, is what keeps a 35,000-message mailbox page at a few
milliseconds.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from pillarbox.errors import AlreadyExists, NotFound, UserError
from pillarbox.store.types import (
    AccountSettings,
    AccountToken,
    Identity,
    LoginHold,
    MessageQuery,
    SortKey,
    ThreadFields,
    TokenKind,
    TotpEnrolment,
    vacation_renewed,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

#: ORDER BY expression of each sort key (ties: UID, in the same direction).
_ORDER = {
    SortKey.ARRIVAL: "internal_date",
    SortKey.DATE: "coalesce(sent_date, internal_date)",
    SortKey.FROM: "from_addr",
    SortKey.SUBJECT: "subject COLLATE NOCASE",
    SortKey.SIZE: "size",
}


#: Deepest offset read by walking the date index rather than by sorting (measured crossover on
#: a 35,000-message mailbox: index ~8 ms at 1,000, a sort ~35 ms whatever the offset).
_INDEX_WALK_LIMIT = 3000


def _us(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND


def thread_sizes(conn: sqlite3.Connection, mailbox_id: int) -> list[tuple[int, int]]:
    """One pass over the range of ``messages_thread`` (mailbox, thread, uid, sent_date,
    internal_date: migration 36) in thread order, grouped as it goes; then the threads sorted."""
    return conn.execute(
        "SELECT thread, count(*) FROM messages WHERE mailbox_id = ? GROUP BY thread "
        "ORDER BY max(coalesce(sent_date, internal_date)) DESC, max(uid) DESC",
        (mailbox_id,),
    ).fetchall()


def thread_fields(
    conn: sqlite3.Connection, mailbox_id: int, threads: Sequence[int]
) -> list[ThreadFields]:
    """The threads' rows found by ``messages_thread``, named: without statistics the planner
    walks the whole mailbox by the primary key to save the sort by UID (25–55 ms for a page at
    35,000 messages against 0.2–0.5). Every field is a column (``refs`` since migration 8), so
    no MessageInfo is read or decoded."""
    rows = conn.execute(
        "SELECT uid, internal_date, sent_date, subject, message_id, in_reply_to, refs, thread, "
        "seen FROM messages INDEXED BY messages_thread "
        "WHERE mailbox_id = ? AND thread IN (SELECT value FROM json_each(?)) ORDER BY uid",
        (mailbox_id, json.dumps(list(threads))),
    )
    return [
        ThreadFields(
            uid,
            _EPOCH + timedelta(0, 0, internal),
            None if sent is None else _EPOCH + timedelta(0, 0, sent),
            subject,
            message_id,
            in_reply_to,
            tuple(json.loads(references)),
            thread,
            bool(seen),
        )
        for uid, internal, sent, subject, message_id, in_reply_to, references, thread, seen in rows
    ]


def _where(mailbox_id: int, query: MessageQuery) -> tuple[str, list[object]]:
    clauses = ["mailbox_id = ?"]
    params: list[object] = [mailbox_id]
    for columns, term in (
        (("from_addr",), query.from_contains),
        (("subject",), query.subject_contains),
        (("to_addr", "cc_addr"), query.to_contains),
    ):
        if term:
            tests = [_contains(column, term) for column in columns]
            clauses.append("(" + " OR ".join(sql for sql, _ in tests) + ")")
            params += [value for _, value in tests]
    if query.since is not None:
        clauses.append("coalesce(sent_date, internal_date) >= ?")
        params.append(_us(query.since))
    if query.before is not None:
        clauses.append("coalesce(sent_date, internal_date) < ?")
        params.append(_us(query.before))
    if query.unseen:
        clauses.append("NOT seen")
    if query.flagged:
        clauses.append("instr(' ' || flags || ' ', ' \\Flagged ') > 0")
    if query.uids is not None:
        clauses.append("uid IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(sorted(query.uids)))
    return " AND ".join(clauses), params


def _contains(column: str, term: str) -> tuple[str, str]:
    """A case-insensitive substring test: SQLite's LIKE for ASCII terms (built in, several
    times faster than a Python function per row), the registered ``pb_icontains`` otherwise
    (LIKE folds ASCII letters only)."""
    if term.isascii():
        escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return f"{column} LIKE ? ESCAPE '\\'", f"%{escaped}%"
    return f"pb_icontains({column}, ?)", term


def page_uids(
    conn: sqlite3.Connection, mailbox_id: int, query: MessageQuery, offset: int, limit: int
) -> tuple[int, list[int]]:
    """(number matching, the page's UIDs in order); ``NotFound`` for an unknown mailbox."""
    row = conn.execute(
        "SELECT messages, unseen FROM mailboxes WHERE id = ?", (mailbox_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    where, params = _where(mailbox_id, query)
    messages, unseen = int(row[0]), int(row[1])
    if where == "mailbox_id = ?":
        total = messages  # the counters the triggers keep (see .migrations)
    elif where == "mailbox_id = ? AND NOT seen":
        total = unseen
    else:
        return _filtered_page(conn, where, params, query, offset, limit)
    offset, limit = max(0, offset), max(0, min(limit, total - offset))
    if limit == 0:
        return total, []
    key = _ORDER[query.sort]
    descending = query.descending
    # A page past the middle is read from the other end (reversed): no page walks more than
    # half of what matches.
    if offset > total // 2:
        offset, descending = total - offset - limit, not descending
    # The date index pays when the page is near an end and most rows it walks match (every row
    # costs a lookup); otherwise sorting the matching rows is cheaper, and "+ 0" keeps the
    # planner off the index.
    walk_index = (
        where in ("mailbox_id = ?", "mailbox_id = ? AND NOT seen")
        and offset < _INDEX_WALK_LIMIT
        and total * 4 >= messages
    )
    if query.sort is SortKey.DATE and not walk_index:
        key += " + 0"
    direction = "DESC" if descending else "ASC"
    uids = [
        int(r[0])
        for r in conn.execute(
            f"SELECT uid FROM messages WHERE {where} "
            f"ORDER BY {key} {direction}, uid {direction} LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
    ]
    if descending != query.descending:
        uids.reverse()
    return total, uids


def _filtered_page(
    conn: sqlite3.Connection,
    where: str,
    params: list[object],
    query: MessageQuery,
    offset: int,
    limit: int,
) -> tuple[int, list[int]]:
    """A filtered page and its total from one scan: the filters (substring tests, mostly)
    are what costs, and ``count(*) OVER ()`` counts the matches of the same scan that sorts
    them — half the work of a count query followed by a page query."""
    offset, limit = max(0, offset), max(0, limit)
    direction = "DESC" if query.descending else "ASC"
    key = _ORDER[query.sort] + (" + 0" if query.sort is SortKey.DATE else "")  # no index walk
    rows = conn.execute(
        f"SELECT uid, count(*) OVER () FROM messages WHERE {where} "
        f"ORDER BY {key} {direction}, uid {direction} LIMIT ? OFFSET ?",
        (*params, limit, offset),
    ).fetchall()
    if not rows:  # past the end, or no page asked for: the total needs its own count
        return (_count(conn, where, params) if offset or not limit else 0), []
    return int(rows[0][1]), [int(uid) for uid, _ in rows]


def _count(conn: sqlite3.Connection, where: str, params: list[object]) -> int:
    (count,) = conn.execute(f"SELECT count(*) FROM messages WHERE {where}", params).fetchone()
    return int(count)


# -- settings ------------------------------------------------------------------------------------


def get_settings(conn: sqlite3.Connection, account_id: int) -> AccountSettings:
    row = conn.execute(
        "SELECT vacation_enabled, vacation_subject, vacation_body, vacation_until, forward_to, "
        "forward_keep_copy, junk_days, trash_days, time_zone, shortcuts, default_calendar "
        "FROM account_settings "
        "WHERE account_id = ?",
        (account_id,),
    ).fetchone()
    if row is None:
        if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
            raise NotFound(f"no account {account_id}")
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
        vacation_enabled=bool(enabled),
        vacation_subject=subject,
        vacation_body=body,
        vacation_until=None if until is None else _EPOCH + until * _MICROSECOND,
        forward_to=tuple(json.loads(forward_to)),
        forward_keep_copy=bool(keep),
        junk_days=junk_days,
        trash_days=trash_days,
        time_zone=zone,
        shortcuts=bool(keys),
        default_calendar=calendar,
    )


def set_settings(conn: sqlite3.Connection, account_id: int, settings: AccountSettings) -> None:
    if vacation_renewed(get_settings(conn, account_id), settings):
        conn.execute("DELETE FROM vacation_replies WHERE account_id = ?", (account_id,))
    until = settings.vacation_until
    conn.execute(
        "INSERT OR REPLACE INTO account_settings (account_id, vacation_enabled, vacation_subject, "
        "vacation_body, vacation_until, forward_to, forward_keep_copy, junk_days, trash_days, "
        "time_zone, shortcuts, default_calendar) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            account_id,
            int(settings.vacation_enabled),
            settings.vacation_subject,
            settings.vacation_body,
            None if until is None else _us(until),
            json.dumps(list(settings.forward_to)),
            int(settings.forward_keep_copy),
            settings.junk_days,
            settings.trash_days,
            settings.time_zone,
            int(settings.shortcuts),
            settings.default_calendar,
        ),
    )


def claim_vacation_reply(
    conn: sqlite3.Connection, account_id: int, sender: str, now: datetime, interval: timedelta
) -> bool:
    if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
        raise NotFound(f"no account {account_id}")
    stamp, horizon = _us(now), _us(now - interval)
    conn.execute(
        "DELETE FROM vacation_replies WHERE account_id = ? AND replied <= ? AND sender != ?",
        (account_id, horizon, sender.lower()),
    )
    # The conditional upsert changes no row when the last reply is recent: rowcount 0.
    cursor = conn.execute(
        "INSERT INTO vacation_replies (account_id, sender, replied) VALUES (?, ?, ?) "
        "ON CONFLICT (account_id, sender) DO UPDATE SET replied = excluded.replied "
        "WHERE replied <= ?",
        (account_id, sender.lower(), stamp, horizon),
    )
    return cursor.rowcount == 1


# -- tokens --------------------------------------------------------------------------------------

_TOKEN_COLUMNS = "id, account_id, kind, label, created"


def _token(row: tuple[int, int, str, str, int]) -> AccountToken:
    token_id, account_id, kind, label, created = row
    return AccountToken(
        token_id, account_id, TokenKind(kind), label, _EPOCH + created * _MICROSECOND
    )


def add_token(
    conn: sqlite3.Connection, account_id: int, kind: TokenKind, label: str, digest: str, now: int
) -> AccountToken:
    if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
        raise NotFound(f"no account {account_id}")
    try:
        row = conn.execute(
            "INSERT INTO account_tokens (account_id, kind, label, digest, created) "
            f"VALUES (?, ?, ?, ?, ?) RETURNING {_TOKEN_COLUMNS}",
            (account_id, kind.value, label, digest, now),
        ).fetchone()
    except sqlite3.IntegrityError:
        raise AlreadyExists("a token with this digest exists") from None
    return _token(row)


def list_tokens(
    conn: sqlite3.Connection, account_id: int, kind: TokenKind | None
) -> list[AccountToken]:
    sql = f"SELECT {_TOKEN_COLUMNS} FROM account_tokens WHERE account_id = ?"
    params: list[object] = [account_id]
    if kind is not None:
        sql += " AND kind = ?"
        params.append(kind.value)
    return [_token(row) for row in conn.execute(sql + " ORDER BY id", params)]


def remove_token(conn: sqlite3.Connection, account_id: int, token_id: int) -> None:
    cursor = conn.execute(
        "DELETE FROM account_tokens WHERE id = ? AND account_id = ?", (token_id, account_id)
    )
    if cursor.rowcount == 0:
        raise NotFound(f"no token {token_id}")


def find_token(conn: sqlite3.Connection, kind: TokenKind, digest: str) -> AccountToken | None:
    row = conn.execute(
        f"SELECT {_TOKEN_COLUMNS} FROM account_tokens WHERE kind = ? AND digest = ?",
        (kind.value, digest),
    ).fetchone()
    return None if row is None else _token(row)


# -- second factor (migration 24) ---------------------------------------------------------------


def enable_totp(
    conn: sqlite3.Connection,
    account_id: int,
    sealed_secret: str,
    recovery_digests: Sequence[str],
    now: int,
) -> None:
    if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
        raise NotFound(f"no account {account_id}")
    disable_totp(conn, account_id)
    conn.execute(
        "INSERT INTO account_totp (account_id, sealed_secret, last_step, created) "
        "VALUES (?, ?, 0, ?)",
        (account_id, sealed_secret, now),
    )
    conn.executemany(
        "INSERT OR IGNORE INTO account_totp_recovery (account_id, digest) VALUES (?, ?)",
        [(account_id, digest) for digest in recovery_digests],
    )


def get_totp(conn: sqlite3.Connection, account_id: int) -> TotpEnrolment | None:
    row = conn.execute(
        "SELECT sealed_secret, last_step, "
        "(SELECT count(*) FROM account_totp_recovery r WHERE r.account_id = t.account_id) "
        "FROM account_totp t WHERE account_id = ?",
        (account_id,),
    ).fetchone()
    return None if row is None else TotpEnrolment(account_id, row[0], row[1], row[2])


def disable_totp(conn: sqlite3.Connection, account_id: int) -> bool:
    conn.execute("DELETE FROM account_totp_recovery WHERE account_id = ?", (account_id,))
    cursor = conn.execute("DELETE FROM account_totp WHERE account_id = ?", (account_id,))
    return cursor.rowcount == 1


def claim_totp_step(conn: sqlite3.Connection, account_id: int, step: int) -> bool:
    cursor = conn.execute(
        "UPDATE account_totp SET last_step = ? WHERE account_id = ? AND last_step < ?",
        (step, account_id, step),
    )
    return cursor.rowcount == 1


def use_recovery_code(conn: sqlite3.Connection, account_id: int, digest: str) -> bool:
    cursor = conn.execute(
        "DELETE FROM account_totp_recovery WHERE account_id = ? AND digest = ?",
        (account_id, digest),
    )
    return cursor.rowcount == 1


def replace_recovery_codes(
    conn: sqlite3.Connection, account_id: int, digests: Sequence[str]
) -> bool:
    if (
        conn.execute("SELECT 1 FROM account_totp WHERE account_id = ?", (account_id,)).fetchone()
        is None
    ):
        return False
    conn.execute("DELETE FROM account_totp_recovery WHERE account_id = ?", (account_id,))
    conn.executemany(
        "INSERT OR IGNORE INTO account_totp_recovery (account_id, digest) VALUES (?, ?)",
        [(account_id, digest) for digest in digests],
    )
    return True


def totp_accounts(conn: sqlite3.Connection) -> set[int]:
    return {row[0] for row in conn.execute("SELECT account_id FROM account_totp")}


# -- messages two-step logins hold between their steps (migration 46) ---------------------------


def hold_login_message(
    conn: sqlite3.Connection, hold: LoginHold, now: datetime, max_bytes: int
) -> bool:
    if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (hold.account_id,)).fetchone() is None:
        raise NotFound(f"no account {hold.account_id}")
    conn.execute(
        "DELETE FROM login_holds WHERE account_id = ? OR expires <= ?",
        (hold.account_id, _us(now)),
    )
    if hold.size > max_bytes:
        return False
    # The bound: the holds expiring last stay while they and this one fit.
    conn.execute(
        "DELETE FROM login_holds WHERE account_id IN (SELECT account_id FROM ("
        "SELECT account_id, sum(size) OVER (ORDER BY expires DESC, account_id DESC) AS kept "
        "FROM login_holds) WHERE kept > ?)",
        (max_bytes - hold.size,),
    )
    conn.execute(
        "INSERT INTO login_holds (account_id, sid, sealed, size, expires) VALUES (?, ?, ?, ?, ?)",
        (hold.account_id, hold.sid, hold.sealed, hold.size, _us(hold.expires)),
    )
    return True


def held_login_message(
    conn: sqlite3.Connection, account_id: int, sid: str, now: datetime
) -> str | None:
    row = conn.execute(
        "SELECT sealed FROM login_holds WHERE account_id = ? AND sid = ? AND expires > ?",
        (account_id, sid, _us(now)),
    ).fetchone()
    return None if row is None else str(row[0])


def drop_login_message(conn: sqlite3.Connection, account_id: int, sid: str) -> None:
    conn.execute("DELETE FROM login_holds WHERE account_id = ? AND sid = ?", (account_id, sid))


def prune_login_messages(conn: sqlite3.Connection, now: datetime) -> int:
    return conn.execute("DELETE FROM login_holds WHERE expires <= ?", (_us(now),)).rowcount


# -- sending identities and correspondents (migration 22; sent_recipients from 18) --------------

_IDENTITY_COLUMNS = "id, address, display_name, reply_to, signature, is_default"


def _identity(row: tuple[int, str, str, str, str, int]) -> Identity:
    id_, address, name, reply_to, signature, is_default = row
    return Identity(
        id=id_,
        address=address,
        display_name=name,
        reply_to=reply_to,
        signature=signature,
        is_default=bool(is_default),
    )


def list_identities(conn: sqlite3.Connection, account_id: int) -> list[Identity]:
    rows = conn.execute(
        f"SELECT {_IDENTITY_COLUMNS} FROM identities WHERE account_id = ? "
        "ORDER BY is_default DESC, address, id",
        (account_id,),
    )
    return [_identity(row) for row in rows]


def save_identity(
    conn: sqlite3.Connection, account_id: int, identity: Identity, limit: int
) -> Identity:
    if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
        raise NotFound(f"no account {account_id}")
    values = (
        identity.address,
        identity.display_name,
        identity.reply_to,
        identity.signature,
        int(identity.is_default),
    )
    if identity.id == 0:
        (count,) = conn.execute(
            "SELECT count(*) FROM identities WHERE account_id = ?", (account_id,)
        ).fetchone()
        if count >= limit:
            raise UserError(f"at most {limit} identities")
        cursor = conn.execute(
            "INSERT INTO identities (account_id, address, display_name, reply_to, signature, "
            "is_default) VALUES (?, ?, ?, ?, ?, ?)",
            (account_id, *values),
        )
        stored = replace(identity, id=int(cursor.lastrowid or 0))
    else:
        cursor = conn.execute(
            "UPDATE identities SET address = ?, display_name = ?, reply_to = ?, signature = ?, "
            "is_default = ? WHERE id = ? AND account_id = ?",
            (*values, identity.id, account_id),
        )
        if cursor.rowcount == 0:
            raise NotFound(f"no identity {identity.id}")
        stored = identity
    if stored.is_default:
        conn.execute(
            "UPDATE identities SET is_default = 0 WHERE account_id = ? AND id != ?",
            (account_id, stored.id),
        )
    return stored


def delete_identity(conn: sqlite3.Connection, account_id: int, identity_id: int) -> None:
    cursor = conn.execute(
        "DELETE FROM identities WHERE id = ? AND account_id = ?", (identity_id, account_id)
    )
    if cursor.rowcount == 0:
        raise NotFound(f"no identity {identity_id}")


def correspondents(conn: sqlite3.Connection, account_id: int, prefix: str, limit: int) -> list[str]:
    # Both scans stay within the account's rows (the primary keys start with account_id).
    prefix = prefix.lower()
    found: dict[str, None] = {}
    recent = conn.execute(
        "SELECT address FROM sent_recipients WHERE account_id = ?1 "
        "AND substr(lower(address), 1, length(?2)) = ?2 ORDER BY last_sent DESC, address LIMIT ?3",
        (account_id, prefix, limit),
    )
    found.update(dict.fromkeys(address for (address,) in recent))
    key = "sent:" + prefix
    tallied = conn.execute(
        "SELECT substr(key, 6) FROM sender_reputation WHERE account_id = ?1 "
        "AND substr(key, 1, length(?2)) = ?2 ORDER BY ham DESC, key LIMIT ?3",
        (account_id, key, limit),
    )
    for (address,) in tallied:
        if address.lower() not in {a.lower() for a in found}:
            found[address] = None
    return list(found)[:limit]
