"""SQLite queries of the webmail's address book (migrations 28 and 30): plain functions over a
connection, run by :class:`~.store.SqliteStore` on its readers or its writer. Addresses and
phones are JSON arrays; the ``search`` column (:mod:`pillarbox.store.contactrows`) is matched
with ``instr`` and orders the list."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from pillarbox.errors import NotFound, TooManyEntries
from pillarbox.store.contactrows import search_key, search_text
from pillarbox.store.types import Contact

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_COLUMNS = "id, uid, display_name, emails, phones, organization, note, card, created, updated"

_Row = tuple[int, str, str, str, str, str, str, str | None, int, int]


def _contact(row: _Row) -> Contact:
    id_, uid, name, emails, phones, organization, note, card, created, updated = row
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
    )


def list_contacts(
    conn: sqlite3.Connection, account_id: int, search: str, limit: int | None
) -> list[Contact]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM contacts WHERE account_id = ?1 AND instr(search, ?2) > 0 "
        "ORDER BY search, id LIMIT ?3",
        (account_id, search_key(search), -1 if limit is None else limit),
    )
    return [_contact(row) for row in rows]


def get_contact(conn: sqlite3.Connection, account_id: int, contact_id: int) -> Contact:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM contacts WHERE id = ? AND account_id = ?",
        (contact_id, account_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"no contact {contact_id}")
    return _contact(row)


def contact_by_uid(conn: sqlite3.Connection, account_id: int, uid: str) -> Contact:
    # The UNIQUE (account_id, uid) constraint's index finds it.
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM contacts WHERE account_id = ? AND uid = ?", (account_id, uid)
    ).fetchone()
    if row is None:
        raise NotFound(f"no contact with UID {uid!r}")
    return _contact(row)


def save_contacts(
    conn: sqlite3.Connection,
    account_id: int,
    contacts: Sequence[Contact],
    now: datetime,
    limit: int,
) -> list[Contact]:
    if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
        raise NotFound(f"no account {account_id}")
    at = (now - _EPOCH) // _MICROSECOND
    stored: list[Contact] = []
    for contact in contacts:
        values = (
            contact.display_name,
            json.dumps(list(contact.emails)),
            json.dumps(list(contact.phones)),
            contact.organization,
            contact.note,
            contact.card,
            search_text(contact),
            at,
        )
        if contact.id == 0:
            row = conn.execute(
                "INSERT INTO contacts (account_id, uid, display_name, emails, phones, "
                "organization, note, card, search, updated, created) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10) "
                "ON CONFLICT (account_id, uid) DO UPDATE SET display_name = excluded.display_name, "
                "emails = excluded.emails, phones = excluded.phones, "
                "organization = excluded.organization, note = excluded.note, "
                "card = excluded.card, search = excluded.search, updated = excluded.updated "
                "RETURNING id, uid, created",
                (account_id, contact.uid, *values),
            ).fetchone()
        else:
            row = conn.execute(
                "UPDATE contacts SET display_name = ?, emails = ?, phones = ?, organization = ?, "
                "note = ?, card = ?, search = ?, updated = ? WHERE id = ? AND account_id = ? "
                "RETURNING id, uid, created",
                (*values, contact.id, account_id),
            ).fetchone()
        if row is None:
            raise NotFound(f"no contact {contact.id}")
        id_, uid, created = row
        stored.append(
            replace(
                contact,
                id=id_,
                uid=uid,
                created=_EPOCH + created * _MICROSECOND,
                updated=_EPOCH + at * _MICROSECOND,
            )
        )
    (count,) = conn.execute(
        "SELECT count(*) FROM contacts WHERE account_id = ?", (account_id,)
    ).fetchone()
    if count > limit:
        # The writer rolls this operation back (its savepoint): nothing of the call is kept.
        raise TooManyEntries(f"at most {limit} contacts")
    return stored


def delete_contact(conn: sqlite3.Connection, account_id: int, contact_id: int) -> None:
    cursor = conn.execute(
        "DELETE FROM contacts WHERE id = ? AND account_id = ?", (contact_id, account_id)
    )
    if cursor.rowcount == 0:
        raise NotFound(f"no contact {contact_id}")
