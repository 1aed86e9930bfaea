"""A calendar's .ics import and export: the Calendar page's "Import .ics" form and Export
link, the API's ``/calendars/{name}/import`` and ``/export``, and ``pillarbox import ics`` —
one path for all.

Implementation notes:

- **Cut and checked** by :func:`pillarbox.calendarfile.split` (one object per UID, each read
  by :func:`pillarbox.ical.read_object` as a CalDAV PUT is), off the event loop for a large
  file; ``[calendars] max_import_bytes`` bounds the file, ``max_object_bytes`` each object,
  ``max_objects`` how many one file brings and how many the calendar holds.
- **Stored as a PUT stores** (:func:`.caldav.save_object`): an object whose UID the
  calendar holds replaces that one, under its name (RFC 4791 §4.1: one UID per calendar); a
  new one is ``<UID>.ics`` (a random name when that is not a safe segment or is taken). An
  object already stored byte for byte is left alone — no new ETag, nothing for a phone to
  fetch — so running the same import again changes nothing. Told by the ETags the calendar
  lists (one store read per import, :meth:`.Store.calendar_members`, no object's bytes): an
  object whose bytes' ETag is among them is stored as it is (bytes that name a UID are that
  UID's object, one per calendar), neither checked again nor looked up; only the others are
  looked up by UID. A re-run of 2,000 events did a lookup and a full check for each.
- **Stored as the file has it**: a changed time does not reset the attendees' answers as
  an organizer's PUT does (RFC 6638 §3.2.8): the file says what they are, and a second run
  of it then finds every object as the file has it.
- **Nothing is sent**: an export holds events with ATTENDEEs, organized by the user or by
  others, that were sent (or answered) long ago. Implicit scheduling (RFC 6638 §3.2,
  :func:`.scheduling.schedule_write`) runs after a PUT or a save in the Calendar page's
  form; never here.
- **A refusal stops nothing but that object**: the calendar full (``max_objects``) skips
  the rest, each counted, with the reason.
"""

from __future__ import annotations

import uuid

from starlette.responses import Response

from pillarbox import calendarfile
from pillarbox.blocking import run_blocking
from pillarbox.errors import NotFound, TooManyEntries, UserError
from pillarbox.observability.log import Log
from pillarbox.services import Services
from pillarbox.store.types import Account, CalendarObject, data_etag
from pillarbox.web.app import BodyTooLarge
from pillarbox.web.caldav import UidTaken, calendars_of, object_name, save_object
from pillarbox.web.downloads import foreign_content
from pillarbox.web.imported import Imported

_log = Log("web.calendarimport")

ICS_TYPE = "text/calendar; charset=utf-8"  # RFC 5545 §8.1


async def import_ics(services: Services, account: Account, calendar: str, data: bytes) -> Imported:
    """Store the events and to-dos of an .ics file in the account's ``calendar`` (see the
    notes); ``BodyTooLarge`` past ``[calendars] max_import_bytes``, ``UserError`` for a file
    that is no iCalendar text, ``NotFound`` (a ``UserError`` too) for a calendar the account
    does not have."""
    limits = services.config.calendars
    if len(data) > limits.max_import_bytes:
        raise BodyTooLarge(limits.max_import_bytes)
    if calendar not in {c.name for c in await calendars_of(services, account)}:
        raise NotFound(f"no calendar named {calendar!r}")
    try:
        held = {m.etag for m in await services.store.calendar_members(account.id, calendar)}
    except NotFound:  # deleted since
        raise NotFound(f"no calendar named {calendar!r}") from None
    try:
        # Every object is parsed and its recurrences expanded (as a PUT's): off the loop at
        # any size, as caldav's reads are. Not those stored as they are: their bytes' ETag
        # is the calendar's, and bytes naming a UID are that UID's object (one per calendar).
        cut = await run_blocking(
            calendarfile.split,
            data,
            max_objects=limits.max_objects,
            max_object_bytes=limits.max_object_bytes,
            max_instances=limits.max_instances,
            unchanged=lambda piece: data_etag(piece) in held,
        )
    except calendarfile.NotCalendar as exc:
        raise UserError(str(exc)) from None
    stored, unchanged = 0, cut.unchanged
    skipped, reasons = cut.skipped, list(cut.reasons)
    for index, piece in enumerate(cut.objects):
        uid = piece.info.uid
        previous = await _holder(services, account, calendar, uid)
        if previous is not None and previous.data == piece.data:  # stored meanwhile
            unchanged += 1
            continue
        name = previous.name if previous is not None else await _free_name(
            services, account, calendar, uid
        )  # fmt: skip
        try:
            await save_object(
                services, account, calendar, name, piece.data, piece.info, previous, as_given=True
            )
        except UidTaken:  # a client's PUT of the same UID beside this import
            skipped += 1
            reasons.append(f"{piece.info.component} {uid[:80]}: written meanwhile by a client")
            continue
        except TooManyEntries as exc:
            late = len(cut.objects) - index
            skipped += late
            reasons.append(f"{late} event(s) not stored: {exc}")
            break
        except NotFound:
            raise NotFound(f"no calendar named {calendar!r}") from None
        stored += 1
    done = Imported(stored, unchanged, skipped, tuple(reasons))
    _log.info(
        "calendar imported",
        account=account.address,
        calendar=calendar,
        stored=stored,
        unchanged=unchanged,
        skipped=skipped,
        reasons="; ".join(reasons[:5]),
    )
    return done


async def _holder(
    services: Services, account: Account, calendar: str, uid: str
) -> CalendarObject | None:
    try:
        return await services.store.calendar_object_by_uid(account.id, calendar, uid)
    except NotFound:
        return None


async def _free_name(services: Services, account: Account, calendar: str, uid: str) -> str:
    """``<UID>.ics``, or a random name when that is not a safe segment or another object
    (of another UID) has it: an import never replaces an object by its name."""
    name = object_name(uid)
    try:
        await services.store.calendar_object(account.id, calendar, name)
    except NotFound:
        return name
    return f"{uuid.uuid4()}.ics"


async def export_ics(services: Services, account: Account, calendar: str) -> bytes:
    """Every object of the account's ``calendar`` as one .ics file (each VTIMEZONE once);
    ``NotFound`` for a calendar it does not have."""
    found = {c.name: c for c in await calendars_of(services, account)}
    if calendar not in found:
        raise NotFound(f"no calendar named {calendar!r}")
    objects = await services.store.calendar_objects(account.id, calendar)
    name = found[calendar].display_name or calendar
    return await run_blocking(calendarfile.joined, [o.data for o in objects], name)


async def export_download(services: Services, account: Account, calendar: str) -> Response:
    """:func:`export_ics` as a download ``<calendar>.ics`` (the page's Export link, the API's
    ``/export``)."""
    data = await export_ics(services, account, calendar)
    response = foreign_content(Response(data, media_type=ICS_TYPE), f"{calendar}.ics")
    response.headers["cache-control"] = "private, no-store"
    return response
