"""PostgreSQL queries of the webmail's address book (migrations 23, 25 and 29; SQLite's
``contactdata`` has the notes). A write locks the account's row first, so the book's sync token
and the contact count move one write at a time. Addresses and phones are ``text[]``; ``search``
is compared byte-wise (``COLLATE "C"``) so both backends list contacts in the same order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from pillarbox import vcard
from pillarbox.errors import NotFound, TooManyEntries
from pillarbox.store.contactrows import search_key, search_text
from pillarbox.store.types import Contact, Member, SyncChanges

Conn = AsyncConnection[TupleRow]
COLUMNS = (
    "id, uid, display_name, emails, phones, organization, note, card, created, updated, "
    "modseq, etag"
)


def contact(row: tuple[Any, ...]) -> Contact:
    id_, uid, name, emails, phones, organization, note, card, created, updated, modseq, etag = row
    return Contact(
        id=id_,
        uid=uid,
        display_name=name,
        emails=tuple(emails),
        phones=tuple(phones),
        organization=organization,
        note=note,
        card=card,
        created=created,
        updated=updated,
        modseq=modseq,
        etag=etag,
    )


async def list_contacts(
    conn: Conn, account_id: int, search: str, limit: int | None
) -> list[Contact]:
    cur = await conn.execute(
        f"SELECT {COLUMNS} FROM contacts WHERE account_id = %s AND strpos(search, %s) > 0 "
        'ORDER BY search COLLATE "C", id LIMIT %s',
        (account_id, search_key(search), limit),
    )
    return [contact(row) for row in await cur.fetchall()]


async def get_contact(conn: Conn, account_id: int, contact_id: int) -> Contact:
    cur = await conn.execute(
        f"SELECT {COLUMNS} FROM contacts WHERE id = %s AND account_id = %s",
        (contact_id, account_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no contact {contact_id}")
    return contact(row)


async def contact_by_uid(conn: Conn, account_id: int, uid: str) -> Contact:
    cur = await conn.execute(
        f"SELECT {COLUMNS} FROM contacts WHERE account_id = %s AND uid = %s", (account_id, uid)
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no contact with UID {uid!r}")
    return contact(row)


async def save_contacts(
    conn: Conn, account_id: int, contacts: Sequence[Contact], now: datetime, limit: int
) -> list[Contact]:
    # The account row is locked first: one contacts write per account at a time, so the
    # count checked at the end holds.
    cur = await conn.execute(
        "SELECT 1 FROM accounts WHERE id = %s FOR NO KEY UPDATE", (account_id,)
    )
    if await cur.fetchone() is None:
        raise NotFound(f"no account {account_id}")
    token = await _next_token(conn, account_id)
    stored: list[Contact] = []
    for given in contacts:
        cur = await conn.execute(
            "SELECT id, uid, created FROM contacts WHERE account_id = %s AND "
            + ("uid = %s" if given.id == 0 else "id = %s"),
            (account_id, given.uid if given.id == 0 else given.id),
        )
        row = await cur.fetchone()
        if row is None and given.id != 0:
            raise NotFound(f"no contact {given.id}")
        # The ETag is of the card served under the UID kept, REV (the update time) included.
        saved = replace(given, uid=given.uid if row is None else row[1], updated=now)
        saved = replace(saved, modseq=token, etag=vcard.etag(saved))
        values = (
            saved.display_name,
            list(saved.emails),
            list(saved.phones),
            saved.organization,
            saved.note,
            saved.card,
            search_text(saved),
            now,
            token,
            saved.etag,
        )
        if row is None:
            cur = await conn.execute(
                "INSERT INTO contacts (account_id, uid, display_name, emails, phones, "
                "organization, note, card, search, updated, modseq, etag, created) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (account_id, saved.uid, *values, now),
            )
            inserted = await cur.fetchone()
            assert inserted is not None
            id_, created = inserted[0], now
            await conn.execute(
                "DELETE FROM contact_tombstones WHERE account_id = %s AND uid = %s",
                (account_id, saved.uid),
            )
        else:
            id_, _, created = row
            await conn.execute(
                "UPDATE contacts SET display_name = %s, emails = %s, phones = %s, "
                "organization = %s, note = %s, card = %s, search = %s, updated = %s, "
                "modseq = %s, etag = %s WHERE id = %s",
                (*values, id_),
            )
        stored.append(replace(saved, id=id_, created=created))
    cur = await conn.execute("SELECT count(*) FROM contacts WHERE account_id = %s", (account_id,))
    counted = await cur.fetchone()
    if counted is not None and counted[0] > limit:
        # Raised inside the transaction: it rolls back, nothing of the call is kept.
        raise TooManyEntries(f"at most {limit} contacts")
    return stored


async def delete_contact(conn: Conn, account_id: int, contact_id: int, now: datetime) -> None:
    # The book's row first, as a save takes it before the contacts' rows: no lock cycle.
    token = await _next_token(conn, account_id)
    cur = await conn.execute(
        "DELETE FROM contacts WHERE id = %s AND account_id = %s RETURNING uid",
        (contact_id, account_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no contact {contact_id}")
    await conn.execute(
        "INSERT INTO contact_tombstones (account_id, uid, modseq, deleted) "
        "VALUES (%s, %s, %s, %s) ON CONFLICT (account_id, uid) DO UPDATE "
        "SET modseq = excluded.modseq, deleted = excluded.deleted",
        (account_id, row[0], token, now),
    )


async def _next_token(conn: Conn, account_id: int) -> int:
    # The upsert locks the book's row until the commit: one change of the book at a time.
    cur = await conn.execute(
        "INSERT INTO contact_books (account_id, sync_token) VALUES (%s, 1) "
        "ON CONFLICT (account_id) DO UPDATE SET sync_token = contact_books.sync_token + 1 "
        "RETURNING sync_token",
        (account_id,),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def sync_state(conn: Conn, account_id: int) -> tuple[int, int]:
    """The book's sync token and the oldest it answers (both 0 before its first change)."""
    cur = await conn.execute(
        "SELECT sync_token, oldest_token FROM contact_books WHERE account_id = %s", (account_id,)
    )
    row = await cur.fetchone()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


async def contact_members(conn: Conn, account_id: int) -> list[Member]:
    cur = await conn.execute(
        "SELECT uid, etag, display_name, emails FROM contacts WHERE account_id = %s "
        'ORDER BY uid COLLATE "C"',
        (account_id,),
    )
    return [
        Member(
            name=uid,
            etag=etag,
            label=Contact(uid=uid, display_name=name, emails=tuple(emails)).label,
        )
        for uid, etag, name, emails in await cur.fetchall()
    ]


async def contact_changes(conn: Conn, account_id: int, since: int) -> SyncChanges[Contact]:
    token, oldest = await sync_state(conn, account_id)
    cur = await conn.execute(
        f"SELECT {COLUMNS} FROM contacts WHERE account_id = %s AND modseq > %s ORDER BY modseq",
        (account_id, since),
    )
    changed = [contact(row) for row in await cur.fetchall()]
    cur = await conn.execute(
        "SELECT uid FROM contact_tombstones WHERE account_id = %s AND modseq > %s ORDER BY modseq",
        (account_id, since),
    )
    deleted = [uid for (uid,) in await cur.fetchall()]
    return SyncChanges(changed, deleted, token, oldest)


async def prune_tombstones(conn: Conn, before: datetime) -> int:
    """Remove the tombstones of contacts deleted before ``before``; each book that lost one
    answers no token older than the last change pruned. How many were removed."""
    await conn.execute(
        "UPDATE contact_books b SET oldest_token = greatest(b.oldest_token, t.last) "
        "FROM (SELECT account_id, max(modseq) AS last FROM contact_tombstones "
        "WHERE deleted < %s GROUP BY account_id) t WHERE b.account_id = t.account_id",
        (before,),
    )
    cur = await conn.execute("DELETE FROM contact_tombstones WHERE deleted < %s", (before,))
    return cur.rowcount
