"""SQLite queries of CalDAV calendars (migrations 31 and 34): plain functions over a connection,
run by :class:`~.store.SqliteStore` on its readers or its writer. Times are microseconds since the
epoch; an object's ``starts``/``ends`` are NULL when unbounded that way. Each change raises its
calendar's ``sync_token`` and stamps the object (or a deleted object's tombstone) with it, so
RFC 6578 sync-collection reads what changed after a token from ``modseq``. Tombstones older
than the sync history kept are pruned (:func:`prune_tombstones`), raising the calendar's
``oldest_token``: a client's token below it is refused (§3.7). Each object's ETag is kept
beside it, so a listing (:func:`calendar_members`) reads no object's bytes."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from pillarbox.errors import AlreadyExists, NotFound, TooManyEntries
from pillarbox.store.types import (
    Calendar,
    CalendarObject,
    Member,
    SyncChanges,
    data_etag,
    require_precondition,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_CALENDAR = "id, name, display_name, color, description, timezone, sync_token, created"
_OBJECT = "id, name, uid, component, data, starts, ends, modseq, updated, schedule_tag"


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // _MICROSECOND


def _time(micros: int | None) -> datetime | None:
    return None if micros is None else _EPOCH + micros * _MICROSECOND


def _calendar(row: tuple[int, str, str, str, str, str, int, int]) -> Calendar:
    id_, name, display_name, color, description, timezone, token, created = row
    return Calendar(
        id=id_,
        name=name,
        display_name=display_name,
        color=color,
        description=description,
        timezone=timezone,
        sync_token=token,
        created=_time(created),
    )


def _object(
    row: tuple[int, str, str, str, bytes, int | None, int | None, int, int, str],
) -> CalendarObject:
    id_, name, uid, component, data, starts, ends, modseq, updated, schedule_tag = row
    return CalendarObject(
        id=id_,
        name=name,
        uid=uid,
        component=component,
        data=bytes(data),
        starts=_time(starts),
        ends=_time(ends),
        modseq=modseq,
        updated=_time(updated),
        schedule_tag=schedule_tag,
    )


def list_calendars(conn: sqlite3.Connection, account_id: int) -> list[Calendar]:
    rows = conn.execute(
        f"SELECT {_CALENDAR} FROM calendars WHERE account_id = ? ORDER BY name", (account_id,)
    )
    return [_calendar(row) for row in rows]


def _calendar_named(conn: sqlite3.Connection, account_id: int, name: str) -> Calendar:
    row = conn.execute(
        f"SELECT {_CALENDAR} FROM calendars WHERE account_id = ? AND name = ?", (account_id, name)
    ).fetchone()
    if row is None:
        raise NotFound(f"no calendar {name!r}")
    return _calendar(row)


def create_calendar(
    conn: sqlite3.Connection, account_id: int, calendar: Calendar, now: datetime, limit: int
) -> Calendar:
    if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
        raise NotFound(f"no account {account_id}")
    (count,) = conn.execute(
        "SELECT count(*) FROM calendars WHERE account_id = ?", (account_id,)
    ).fetchone()
    if count >= limit:
        raise TooManyEntries(f"at most {limit} calendars")
    row = conn.execute(
        "INSERT INTO calendars (account_id, name, display_name, color, description, timezone, "
        "sync_token, created) VALUES (?, ?, ?, ?, ?, ?, 1, ?) "
        "ON CONFLICT (account_id, name) DO NOTHING RETURNING id",
        (
            account_id,
            calendar.name,
            calendar.display_name,
            calendar.color,
            calendar.description,
            calendar.timezone,
            _micros(now),
        ),
    ).fetchone()
    if row is None:
        raise AlreadyExists(f"calendar {calendar.name!r} exists")
    return replace(calendar, id=row[0], sync_token=1, created=now)


def update_calendar(conn: sqlite3.Connection, account_id: int, calendar: Calendar) -> Calendar:
    row = conn.execute(
        "UPDATE calendars SET display_name = ?, color = ?, description = ?, timezone = ?, "
        f"sync_token = sync_token + 1 WHERE account_id = ? AND name = ? RETURNING {_CALENDAR}",
        (
            calendar.display_name,
            calendar.color,
            calendar.description,
            calendar.timezone,
            account_id,
            calendar.name,
        ),
    ).fetchone()
    if row is None:
        raise NotFound(f"no calendar {calendar.name!r}")
    return _calendar(row)


def delete_calendar(conn: sqlite3.Connection, account_id: int, name: str) -> None:
    # The objects and tombstones go with it (ON DELETE CASCADE).
    cursor = conn.execute(
        "DELETE FROM calendars WHERE account_id = ? AND name = ?", (account_id, name)
    )
    if cursor.rowcount == 0:
        raise NotFound(f"no calendar {name!r}")


def calendar_objects(
    conn: sqlite3.Connection,
    account_id: int,
    calendar: str,
    start: datetime | None,
    end: datetime | None,
    scheduling: bool,
    uids: Sequence[str] | None,
    after: str,
    limit: int | None,
) -> list[CalendarObject]:
    found = _calendar_named(conn, account_id, calendar)
    # BINARY collation: names compare by their UTF-8 bytes, in code point order (a page's
    # ``after`` and its ORDER BY agree, on the (calendar_id, name) index).
    rows = conn.execute(
        f"SELECT {_OBJECT} FROM calendar_objects WHERE calendar_id = ?1 "
        "AND (?2 IS NULL OR starts IS NULL OR starts < ?2) "
        "AND (?3 IS NULL OR ends IS NULL OR ends > ?3) "
        "AND (NOT ?4 OR schedule_tag != '') "
        "AND (?5 IS NULL OR uid IN (SELECT value FROM json_each(?5))) "
        "AND name > ?6 ORDER BY name LIMIT ?7",
        (
            found.id,
            None if end is None else _micros(end),
            None if start is None else _micros(start),
            scheduling,
            None if uids is None else json.dumps(list(uids)),
            after,
            -1 if limit is None else limit,
        ),
    )
    return [_object(row) for row in rows]


def calendar_members(conn: sqlite3.Connection, account_id: int, calendar: str) -> list[Member]:
    found = _calendar_named(conn, account_id, calendar)
    # length() of a BLOB is read from its record header: the bytes are not loaded.
    rows = conn.execute(
        "SELECT name, uid, etag, component, length(data), schedule_tag FROM calendar_objects "
        "WHERE calendar_id = ? ORDER BY name",
        (found.id,),
    )
    return [
        Member(name=name, uid=uid, etag=etag, component=component, size=size, schedule_tag=tag)
        for name, uid, etag, component, size, tag in rows
    ]


def calendar_object(
    conn: sqlite3.Connection, account_id: int, calendar: str, column: str, value: str
) -> CalendarObject:
    """The object whose ``column`` (``name`` or ``uid``, both unique per calendar) is
    ``value``."""
    found = _calendar_named(conn, account_id, calendar)
    row = conn.execute(
        f"SELECT {_OBJECT} FROM calendar_objects WHERE calendar_id = ? AND {column} = ?",
        (found.id, value),
    ).fetchone()
    if row is None:
        raise NotFound(f"no calendar object with {column} {value!r}")
    return _object(row)


def _next_token(conn: sqlite3.Connection, calendar_id: int) -> int:
    (token,) = conn.execute(
        "UPDATE calendars SET sync_token = sync_token + 1 WHERE id = ? RETURNING sync_token",
        (calendar_id,),
    ).fetchone()
    return int(token)


def save_calendar_object(
    conn: sqlite3.Connection,
    account_id: int,
    calendar: str,
    obj: CalendarObject,
    now: datetime,
    limit: int,
    if_match: str | None = None,
    if_none_match: bool = False,
) -> CalendarObject:
    found = _calendar_named(conn, account_id, calendar)
    if if_match is not None or if_none_match:
        row = conn.execute(
            "SELECT etag FROM calendar_objects WHERE calendar_id = ? AND name = ?",
            (found.id, obj.name),
        ).fetchone()
        require_precondition(obj.name, None if row is None else row[0], if_match, if_none_match)
    clash = conn.execute(
        "SELECT 1 FROM calendar_objects WHERE calendar_id = ? AND uid = ? AND name != ?",
        (found.id, obj.uid, obj.name),
    ).fetchone()
    if clash is not None:
        raise AlreadyExists(f"UID {obj.uid!r} is another object's")
    token = _next_token(conn, found.id)
    at = _micros(now)
    (id_,) = conn.execute(
        "INSERT INTO calendar_objects (calendar_id, name, uid, component, data, starts, ends, "
        "modseq, updated, etag, schedule_tag) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (calendar_id, name) DO UPDATE SET uid = excluded.uid, "
        "component = excluded.component, data = excluded.data, starts = excluded.starts, "
        "ends = excluded.ends, modseq = excluded.modseq, updated = excluded.updated, "
        "etag = excluded.etag, schedule_tag = excluded.schedule_tag RETURNING id",
        (
            found.id,
            obj.name,
            obj.uid,
            obj.component,
            obj.data,
            None if obj.starts is None else _micros(obj.starts),
            None if obj.ends is None else _micros(obj.ends),
            token,
            at,
            data_etag(obj.data),
            obj.schedule_tag,
        ),
    ).fetchone()
    conn.execute(
        "DELETE FROM calendar_tombstones WHERE calendar_id = ? AND name = ?", (found.id, obj.name)
    )
    (count,) = conn.execute(
        "SELECT count(*) FROM calendar_objects WHERE calendar_id = ?", (found.id,)
    ).fetchone()
    if count > limit:
        # The writer rolls this operation back (its savepoint): nothing of the call is kept.
        raise TooManyEntries(f"at most {limit} objects in a calendar")
    return replace(obj, id=id_, modseq=token, updated=_time(at))


def delete_calendar_object(
    conn: sqlite3.Connection, account_id: int, calendar: str, name: str, now: datetime
) -> None:
    found = _calendar_named(conn, account_id, calendar)
    cursor = conn.execute(
        "DELETE FROM calendar_objects WHERE calendar_id = ? AND name = ?", (found.id, name)
    )
    if cursor.rowcount == 0:
        raise NotFound(f"no calendar object {name!r}")
    conn.execute(
        "INSERT INTO calendar_tombstones (calendar_id, name, modseq, deleted) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (calendar_id, name) DO UPDATE SET modseq = excluded.modseq, "
        "deleted = excluded.deleted",
        (found.id, name, _next_token(conn, found.id), _micros(now)),
    )


def move_calendar_object(
    conn: sqlite3.Connection,
    account_id: int,
    calendar: str,
    name: str,
    target: str,
    obj: CalendarObject,
    now: datetime,
    limit: int,
) -> CalendarObject:
    """The tombstone in ``calendar`` first (``NotFound`` when the object went meanwhile), then
    the save in ``target``; either raising undoes both (one transaction)."""
    delete_calendar_object(conn, account_id, calendar, name, now)
    return save_calendar_object(conn, account_id, target, obj, now, limit)


def calendar_changes(
    conn: sqlite3.Connection, account_id: int, calendar: str, since: int
) -> SyncChanges[CalendarObject]:
    found = _calendar_named(conn, account_id, calendar)
    (oldest,) = conn.execute(
        "SELECT oldest_token FROM calendars WHERE id = ?", (found.id,)
    ).fetchone()
    changed = conn.execute(
        f"SELECT {_OBJECT} FROM calendar_objects WHERE calendar_id = ? AND modseq > ? "
        "ORDER BY modseq",
        (found.id, since),
    )
    deleted = conn.execute(
        "SELECT name FROM calendar_tombstones WHERE calendar_id = ? AND modseq > ? ORDER BY modseq",
        (found.id, since),
    )
    return SyncChanges(
        [_object(row) for row in changed], [name for (name,) in deleted], found.sync_token, oldest
    )


def prune_tombstones(conn: sqlite3.Connection, before: datetime) -> int:
    """Remove the tombstones of objects deleted before ``before``; each calendar that lost
    one answers no token older than the last change pruned. How many were removed."""
    at = _micros(before)
    conn.execute(
        "UPDATE calendars SET oldest_token = max(oldest_token, (SELECT max(t.modseq) "
        "FROM calendar_tombstones t WHERE t.calendar_id = calendars.id AND t.deleted < ?1)) "
        "WHERE id IN (SELECT calendar_id FROM calendar_tombstones WHERE deleted < ?1)",
        (at,),
    )
    return conn.execute("DELETE FROM calendar_tombstones WHERE deleted < ?", (at,)).rowcount
