"""PostgreSQL queries of the webmail's address book (migrations 23 and 25; SQLite's ``contactdata``
has the notes). Addresses and phones are ``text[]``; ``search`` is compared byte-wise
(``COLLATE "C"``) so both backends list contacts in the same order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from pillarbox.errors import NotFound, TooManyEntries
from pillarbox.store.contactrows import search_key, search_text
from pillarbox.store.types import Contact

Conn = AsyncConnection[TupleRow]
_COLUMNS = "id, uid, display_name, emails, phones, organization, note, card, created, updated"


def _contact(row: tuple[Any, ...]) -> Contact:
    id_, uid, name, emails, phones, organization, note, card, created, updated = row
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
    )


async def list_contacts(
    conn: Conn, account_id: int, search: str, limit: int | None
) -> list[Contact]:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM contacts WHERE account_id = %s AND strpos(search, %s) > 0 "
        'ORDER BY search COLLATE "C", id LIMIT %s',
        (account_id, search_key(search), limit),
    )
    return [_contact(row) for row in await cur.fetchall()]


async def get_contact(conn: Conn, account_id: int, contact_id: int) -> Contact:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM contacts WHERE id = %s AND account_id = %s",
        (contact_id, account_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no contact {contact_id}")
    return _contact(row)


async def contact_by_uid(conn: Conn, account_id: int, uid: str) -> Contact:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM contacts WHERE account_id = %s AND uid = %s", (account_id, uid)
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no contact with UID {uid!r}")
    return _contact(row)


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
    stored: list[Contact] = []
    for contact in contacts:
        values = (
            contact.display_name,
            list(contact.emails),
            list(contact.phones),
            contact.organization,
            contact.note,
            contact.card,
            search_text(contact),
            now,
        )
        if contact.id == 0:
            cur = await conn.execute(
                "INSERT INTO contacts (account_id, uid, display_name, emails, phones, "
                "organization, note, card, search, updated, created) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (account_id, uid) DO UPDATE SET display_name = excluded.display_name, "
                "emails = excluded.emails, phones = excluded.phones, "
                "organization = excluded.organization, note = excluded.note, "
                "card = excluded.card, search = excluded.search, updated = excluded.updated "
                "RETURNING id, uid, created, updated",
                (account_id, contact.uid, *values, now),
            )
        else:
            cur = await conn.execute(
                "UPDATE contacts SET display_name = %s, emails = %s, phones = %s, "
                "organization = %s, note = %s, card = %s, search = %s, updated = %s "
                "WHERE id = %s AND account_id = %s RETURNING id, uid, created, updated",
                (*values, contact.id, account_id),
            )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no contact {contact.id}")
        id_, uid, created, updated = row
        stored.append(replace(contact, id=id_, uid=uid, created=created, updated=updated))
    cur = await conn.execute("SELECT count(*) FROM contacts WHERE account_id = %s", (account_id,))
    counted = await cur.fetchone()
    if counted is not None and counted[0] > limit:
        # Raised inside the transaction: it rolls back, nothing of the call is kept.
        raise TooManyEntries(f"at most {limit} contacts")
    return stored


async def delete_contact(conn: Conn, account_id: int, contact_id: int) -> None:
    cur = await conn.execute(
        "DELETE FROM contacts WHERE id = %s AND account_id = %s", (contact_id, account_id)
    )
    if cur.rowcount == 0:
        raise NotFound(f"no contact {contact_id}")
