"""SQLite queries of the webmail's address book (migrations 28, 30 and 34): plain functions over
a connection, run by :class:`~.store.SqliteStore` on its readers or its writer. Addresses and
phones are JSON arrays; the ``search`` column (:mod:`pillarbox.store.contactrows`) is matched
with ``instr`` and orders the list. Every write raises the account's ``contact_books.sync_token``
and stamps the contacts it saves (or the tombstone of the one it deletes) with it, as
:mod:`.calendardata` does per calendar, so RFC 6578 sync-collection reads what changed after a
token from ``modseq``; the ETag is computed here, on write, and kept."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from pillarbox.errors import NotFound, TooManyEntries
from pillarbox.store.contactrows import search_key, search_text
from pillarbox.store.types import Contact, Member, SyncChanges

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
COLUMNS = (
    "id, uid, display_name, emails, phones, organization, note, card, created, updated, "
    "modseq, etag"
)

_Row = tuple[int, str, str, str, str, str, str, str | None, int, int, int, str]


def contact(row: _Row) -> Contact:
    id_, uid, name, emails, phones, organization, note, card, created, updated, modseq, etag = row
    return Contact(
        id=id_,
        uid=uid,
        display_name=name,
        emails=tuple(json.loads(emails)),
        phones=tuple(json.loads(phones)),
        organization=organization,
        note=note,
        card=card,
        created=_EPOCH + created * _MICROSECOND,
        updated=_EPOCH + updated * _MICROSECOND,
        modseq=modseq,
        etag=etag,
    )


def list_contacts(
    conn: sqlite3.Connection, account_id: int, search: str, limit: int | None
) -> list[Contact]:
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM contacts WHERE account_id = ?1 AND instr(search, ?2) > 0 "
        "ORDER BY search, id LIMIT ?3",
        (account_id, search_key(search), -1 if limit is None else limit),
    )
    return [contact(row) for row in rows]


def get_contact(conn: sqlite3.Connection, account_id: int, contact_id: int) -> Contact:
    row = conn.execute(
        f"SELECT {COLUMNS} FROM contacts WHERE id = ? AND account_id = ?",
        (contact_id, account_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"no contact {contact_id}")
    return contact(row)


def contact_by_uid(conn: sqlite3.Connection, account_id: int, uid: str) -> Contact:
    # The UNIQUE (account_id, uid) constraint's index finds it.
    row = conn.execute(
        f"SELECT {COLUMNS} FROM contacts WHERE account_id = ? AND uid = ?", (account_id, uid)
    ).fetchone()
    if row is None:
        raise NotFound(f"no contact with UID {uid!r}")
    return contact(row)


def save_contacts(
    conn: sqlite3.Connection,
    account_id: int,
    contacts: Sequence[Contact],
    now: datetime,
    limit: int,
) -> list[Contact]:
    # Imported here: the commands that open the store to list users or domains never save a
    # contact, and loading the card parsers cost each of them 2-4 ms (docs/performance.md).
    from pillarbox import vcard

    if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
        raise NotFound(f"no account {account_id}")
    at = (now - _EPOCH) // _MICROSECOND
    updated = _EPOCH + at * _MICROSECOND
    token = _next_token(conn, account_id)
    stored: list[Contact] = []
    for given in contacts:
        row = conn.execute(
            "SELECT id, uid, created FROM contacts WHERE account_id = ? AND "
            + ("uid = ?" if given.id == 0 else "id = ?"),
            (account_id, given.uid if given.id == 0 else given.id),
        ).fetchone()
        if row is None and given.id != 0:
            raise NotFound(f"no contact {given.id}")
        # The UID a new contact takes, or the one an edit keeps: the ETag is of the card
        # served under it, REV (the update time) included.
        saved = replace(given, uid=given.uid if row is None else row[1], updated=updated)
        saved = replace(saved, modseq=token, etag=vcard.etag(saved))
        values = (
            saved.display_name,
            json.dumps(list(saved.emails)),
            json.dumps(list(saved.phones)),
            saved.organization,
            saved.note,
            saved.card,
            search_text(saved),
            at,
            token,
            saved.etag,
        )
        if row is None:
            (id_,) = conn.execute(
                "INSERT INTO contacts (account_id, uid, display_name, emails, phones, "
                "organization, note, card, search, updated, modseq, etag, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (account_id, saved.uid, *values, at),
            ).fetchone()
            created = at
            conn.execute(
                "DELETE FROM contact_tombstones WHERE account_id = ? AND uid = ?",
                (account_id, saved.uid),
            )
        else:
            id_, _, created = row
            conn.execute(
                "UPDATE contacts SET display_name = ?, emails = ?, phones = ?, organization = ?, "
                "note = ?, card = ?, search = ?, updated = ?, modseq = ?, etag = ? WHERE id = ?",
                (*values, id_),
            )
        stored.append(replace(saved, id=id_, created=_EPOCH + created * _MICROSECOND))
    (count,) = conn.execute(
        "SELECT count(*) FROM contacts WHERE account_id = ?", (account_id,)
    ).fetchone()
    if count > limit:
        # The writer rolls this operation back (its savepoint): nothing of the call is kept.
        raise TooManyEntries(f"at most {limit} contacts")
    return stored


def delete_contact(
    conn: sqlite3.Connection, account_id: int, contact_id: int, now: datetime
) -> None:
    row = conn.execute(
        "DELETE FROM contacts WHERE id = ? AND account_id = ? RETURNING uid",
        (contact_id, account_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"no contact {contact_id}")
    conn.execute(
        "INSERT INTO contact_tombstones (account_id, uid, modseq, deleted) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (account_id, uid) DO UPDATE SET modseq = excluded.modseq, "
        "deleted = excluded.deleted",
        (account_id, row[0], _next_token(conn, account_id), (now - _EPOCH) // _MICROSECOND),
    )


def _next_token(conn: sqlite3.Connection, account_id: int) -> int:
    (token,) = conn.execute(
        "INSERT INTO contact_books (account_id, sync_token) VALUES (?, 1) "
        "ON CONFLICT (account_id) DO UPDATE SET sync_token = sync_token + 1 "
        "RETURNING sync_token",
        (account_id,),
    ).fetchone()
    return int(token)


def sync_state(conn: sqlite3.Connection, account_id: int) -> tuple[int, int]:
    """The book's sync token and the oldest it answers (both 0 before its first change)."""
    row = conn.execute(
        "SELECT sync_token, oldest_token FROM contact_books WHERE account_id = ?", (account_id,)
    ).fetchone()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


def contact_members(conn: sqlite3.Connection, account_id: int) -> list[Member]:
    rows = conn.execute(
        "SELECT uid, etag, display_name, emails FROM contacts WHERE account_id = ? ORDER BY uid",
        (account_id,),
    )
    return [
        Member(
            name=uid,
            etag=etag,
            label=Contact(uid=uid, display_name=name, emails=tuple(json.loads(emails))).label,
        )
        for uid, etag, name, emails in rows
    ]


def contact_changes(conn: sqlite3.Connection, account_id: int, since: int) -> SyncChanges[Contact]:
    token, oldest = sync_state(conn, account_id)
    changed = conn.execute(
        f"SELECT {COLUMNS} FROM contacts WHERE account_id = ? AND modseq > ? ORDER BY modseq",
        (account_id, since),
    )
    deleted = conn.execute(
        "SELECT uid FROM contact_tombstones WHERE account_id = ? AND modseq > ? ORDER BY modseq",
        (account_id, since),
    )
    return SyncChanges(
        [contact(row) for row in changed], [uid for (uid,) in deleted], token, oldest
    )


def prune_tombstones(conn: sqlite3.Connection, before: datetime) -> int:
    """Remove the tombstones of contacts deleted before ``before``; each book that lost one
    answers no token older than the last change pruned. How many were removed."""
    at = (before - _EPOCH) // _MICROSECOND
    conn.execute(
        "UPDATE contact_books SET oldest_token = max(oldest_token, (SELECT max(t.modseq) "
        "FROM contact_tombstones t WHERE t.account_id = contact_books.account_id "
        "AND t.deleted < ?1)) "
        "WHERE account_id IN (SELECT account_id FROM contact_tombstones WHERE deleted < ?1)",
        (at,),
    )
    return conn.execute("DELETE FROM contact_tombstones WHERE deleted < ?", (at,)).rowcount
