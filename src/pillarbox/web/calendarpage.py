"""The webmail's Calendar page: the account's CalDAV calendars (RFC 4791) as a month view and
an agenda of upcoming events, and a form to create, edit and delete a simple event.

Implementation notes:

- **The same objects as CalDAV**: events are read with :meth:`Store.calendar_objects` (the
  store narrowing by each object's bounds) and expanded by :func:`pillarbox.ical.occurrences`
  (``recurring-ical-events``, bounded by ``[calendars] max_instances``), off the event loop.
  An event written here is checked by :func:`pillarbox.ical.read_object` and stored by
  :func:`store_event` exactly as a CalDAV PUT would store it, so phones see it on their next
  sync (the calendar's sync token is raised).
- **Edits keep what the form does not show**: the stored VEVENT is changed in place
  (:func:`pillarbox.ical.revised_event`): a phone's alarms, attendees, time zones, recurrence
  and overridden instances stay; only the fields that changed are rewritten.
- **Moving** an event to another of the account's calendars (the form's Calendar):
  :func:`move_event`, one store transaction (a tombstone in the old calendar, the object,
  UID and bytes kept, in the new one, RFC 6578 sees both); refused when the new calendar
  holds the UID (RFC 4791 §5.3.2.1 no-uid-conflict).
- **Time zone**: the reader's, as every page has it (:mod:`pillarbox.web.zone`: the account's
  setting, else the browser's, else UTC). Times typed in the form are in that zone and stored
  in UTC (RFC 5545 §3.3.5 form #2: no VTIMEZONE to carry); an unchanged start keeps its own
  TZID.
- **Attendees** (RFC 5546 over RFC 6047, :mod:`.scheduling`): an event the account
  organizes (or a new one) takes attendees; saving it with some stores ORGANIZER and ATTENDEE
  lines and sends each attendee the event as a METHOD:REQUEST, one removed from the list a
  CANCEL; deleting it sends them a CANCEL. An edit is sent as a CalDAV PUT's would be
  (:func:`.scheduling.schedule_write`, one decision for both): the update to all only when
  what the attendees' copies hold changed; what became of each message is written in the
  attendee's SCHEDULE-STATUS (RFC 6638 §3.2.9, §7.3), as for a PUT; an edit changing
  nothing is not stored at all (the same bytes, the same ETag). The event is saved even
  when sending fails: the page says what was not sent. What is sent from here is kept in
  Sent (docs/calendars.md).
- **Someone else's event**: deleting an event another organizes, that one of the account's
  identities attends, offers (ticked) to tell the organizer: a METHOD:REPLY with
  PARTSTAT=DECLINED from that identity (RFC 5546 §3.2.3, :func:`.scheduling.send_reply`),
  sent before the event is deleted; the event is deleted even when sending fails.
- **.ics files**: the Import form and each calendar's Export link (:mod:`.calendarimport`;
  :mod:`pillarbox.transfer.ics`, shared with ``pillarbox import ics``): one object per UID
  stored as a PUT stores it, and no invitation sent.
- **CSRF**: every form is a POST through :func:`.app.posted_form`, like the rest of the webmail.
"""

from __future__ import annotations

import calendar as monthdays
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from urllib.parse import quote, urlencode

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pillarbox import ical
from pillarbox.blocking import run_blocking
from pillarbox.calendars import (
    MAX_DISPLAY_NAME,
    UidTaken,
    default_calendar,
    move_object,
    object_name,
    save_object,
)
from pillarbox.errors import NotFound, TooManyEntries, UserError
from pillarbox.identities import identities_of
from pillarbox.observability.log import Log
from pillarbox.services import Services
from pillarbox.store.types import Account, Calendar, CalendarObject, Identity
from pillarbox.transfer.ics import import_ics
from pillarbox.web import identities
from pillarbox.web.app import (
    field_number,
    field_text,
    posted_form,
    redirect,
    require_account,
    sealed,
    unconfirmed,
    unsealed,
    web,
    within_limit,
)
from pillarbox.web.caldav import account_calendars, free_calendar_name
from pillarbox.web.calendarimport import export_download
from pillarbox.web.scheduling import (
    Meeting,
    attendees_field,
    meeting_of,
    schedule,
    schedule_write,
    send_reply,
)
from pillarbox.web.zone import reader_zone

_log = Log("web.calendar")

#: The longest title, location and description the form takes (characters).
MAX_TITLE = 500
MAX_TEXT = 10_000


@dataclass(frozen=True, slots=True)
class Shown:
    """One occurrence as the page lists it, in the reader's zone."""

    calendar: Calendar
    name: str
    occurrence: ical.Occurrence
    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        return self.occurrence.summary or "(no title)"


def _local(value: date | datetime, zone: tzinfo) -> datetime:
    """A DATE (midnight) or a floating time as in ``zone``, an aware time converted to it."""
    if not isinstance(value, datetime):
        return datetime.combine(value, time(), zone)
    return value.replace(tzinfo=zone) if value.tzinfo is None else value.astimezone(zone)


def _expand(
    found: Sequence[tuple[Calendar, CalendarObject]],
    start: datetime,
    end: datetime,
    zone: tzinfo,
    max_instances: int,
) -> list[Shown]:
    shown = []
    for calendar, obj in found:
        if obj.component != "VEVENT":
            continue
        for item in ical.occurrences(obj.data, start, end, max_instances):
            first, last = _local(item.start, zone), _local(item.end, zone)
            shown.append(Shown(calendar, obj.name, item, first, max(first, last)))
    shown.sort(key=lambda s: (s.start, s.label))
    return shown[:max_instances]


async def events_between(
    services: Services, account: Account, calendars: Sequence[Calendar], start: datetime,
    end: datetime, zone: tzinfo,
) -> list[Shown]:  # fmt: skip
    """Every event instance of the calendars meeting ``[start, end)``."""
    found: list[tuple[Calendar, CalendarObject]] = []
    for calendar in calendars:
        objects = await services.store.calendar_objects(
            account.id, calendar.name, start=start, end=end
        )
        found.extend((calendar, obj) for obj in objects)
    limit = services.config.calendars.max_instances
    return await run_blocking(_expand, found, start, end, zone, limit)


@dataclass(frozen=True, slots=True)
class Day:
    day: date
    in_month: bool
    events: tuple[Shown, ...]


def month_grid(first: date, events: Sequence[Shown]) -> list[list[Day]]:
    """The weeks (Monday first) covering the month of ``first``, each day with its events
    (an event over several days on each of them)."""
    weeks = monthdays.Calendar().monthdatescalendar(first.year, first.month)
    spans = [(e.start.date(), _last_day(e), e) for e in events]
    return [
        [
            Day(day, day.month == first.month, tuple(e for s, t, e in spans if s <= day <= t))
            for day in week
        ]
        for week in weeks
    ]


def _last_day(event: Shown) -> date:
    """The event's last day: the end is exclusive (RFC 5545 §3.6.1), so an all-day event, or a
    timed one ending at midnight, ends the day before its end."""
    end = event.end
    if end > event.start and end.time() == time():
        return end.date() - timedelta(days=1)
    return end.date()


def span_text(start: date | datetime, end: date | datetime | None, zone: tzinfo) -> str:
    """An event's time as a reader reads it: "Mon 2 Mar 2026" for a day (with the last day
    of several), else the start and end times in ``zone`` (an end of the other kind than the
    start, which a broken invitation may have, left out)."""
    if end is not None and isinstance(end, datetime) != isinstance(start, datetime):
        end = None
    if not isinstance(start, datetime):
        last = end - timedelta(days=1) if end is not None and end > start else start
        text = f"{start:%a %d %b %Y}"
        return text if last == start else f"{text} – {last:%a %d %b %Y} (all day)"
    first = _local(start, zone)
    text = f"{first:%a %d %b %Y %H:%M}"
    if end is not None:
        last = _local(end, zone)
        same_day = last.date() == first.date()
        text += f" – {last:%H:%M}" if same_day else f" – {last:%a %d %b %Y %H:%M}"
    return f"{text} ({zone})"


def _month(text: str, today: date) -> date:
    """The first day of the ``YYYY-MM`` asked for, else of this month (also for a year whose
    grid or neighbours fall outside what dates can hold)."""
    try:
        first = datetime.strptime(text.strip(), "%Y-%m").date()
    except ValueError:
        return today.replace(day=1)
    return first if 1 < first.year < 9999 else today.replace(day=1)


# -- the event form --------------------------------------------------------------------------------


def _form_date(form: FormData, name: str) -> date:
    try:
        return date.fromisoformat(field_text(form, name).strip())
    except ValueError:
        raise UserError(f"give the {name.replace('_', ' ')} as a date") from None


def _form_time(form: FormData, name: str) -> time:
    try:
        return time.fromisoformat(field_text(form, name).strip())
    except ValueError:
        raise UserError(f"give the {name.replace('_', ' ')} as a time") from None


def form_fields(form: FormData, zone: tzinfo) -> ical.EventFields:
    """The event the form describes; ``UserError`` saying what is wrong. Timed events are
    kept in UTC (RFC 5545 §3.3.5 form #2); all-day ones end the day after their last."""
    title = " ".join(field_text(form, "title").split())
    location = " ".join(field_text(form, "location").split())
    description = field_text(form, "description").replace("\r\n", "\n").strip()
    if not title:
        raise UserError("give the event a title")
    if len(title) > MAX_TITLE or len(location) > MAX_TITLE:
        raise UserError(f"the title and the location are at most {MAX_TITLE} characters")
    if len(description) > MAX_TEXT:
        raise UserError(f"the description is at most {MAX_TEXT} characters")
    if any(ical.REFUSED_CHARACTERS.search(text) for text in (title, location, description)):
        raise UserError("a field holds a control character")  # RFC 5545 §3.1
    first = _form_date(form, "start_date")
    last = _form_date(form, "end_date") if field_text(form, "end_date").strip() else first
    if field_text(form, "all_day"):
        if last < first:
            raise UserError("the event ends before it starts")
        return ical.EventFields(title, first, last + timedelta(days=1), location, description)
    start = datetime.combine(first, _form_time(form, "start_time"), zone).astimezone(UTC)
    end = datetime.combine(last, _form_time(form, "end_time"), zone).astimezone(UTC)
    if end < start:
        raise UserError("the event ends before it starts")
    return ical.EventFields(title, start, end, location, description)


async def store_event(
    services: Services, account: Account, calendar: str, name: str, data: bytes,
    previous: CalendarObject | None, *, reply: bool = False,
) -> CalendarObject:  # fmt: skip
    """Check and store one object as a CalDAV PUT does over ``previous``, the object of that
    name the caller read (None: a new one) (RFC 4791 §4.1: one UID per calendar; its
    Schedule-Tag, ``reply`` when it is an attendee's answer applied: :func:`.caldav.
    schedule_tag`); ``UserError`` when it is refused."""
    info = await _checked(services, data)
    try:
        return await save_object(
            services, account, calendar, name, data, info, previous, reply=reply
        )
    except TooManyEntries as exc:  # UidTaken is a UserError already
        raise UserError(str(exc)) from None


async def move_event(
    services: Services, account: Account, calendar: str, current: CalendarObject, target: str,
    data: bytes,
) -> CalendarObject:  # fmt: skip
    """Move the object ``current`` (now ``data``, checked as :func:`store_event` checks it) from
    ``calendar`` to the account's calendar ``target`` (:func:`pillarbox.calendars.move_object`: a
    tombstone left, the UID kept); ``UserError`` when ``target`` holds its UID already (RFC
    4791 §5.3.2.1 no-uid-conflict) or is full."""
    info = await _checked(services, data)
    try:
        return await move_object(services, account, calendar, current, target, data, info)
    except UidTaken:
        raise UserError("that calendar already has this event (the same UID)") from None
    except TooManyEntries as exc:
        raise UserError(str(exc)) from None


async def _checked(services: Services, data: bytes) -> ical.ObjectInfo:
    """The object as a CalDAV PUT reads it (its size, RFC 4791 §4.1); ``UserError`` when it
    would be refused."""
    limits = services.config.calendars
    if len(data) > limits.max_object_bytes:
        raise UserError(f"the event is larger than {limits.max_object_bytes} bytes")
    try:
        return await run_blocking(ical.read_object, data, limits.max_instances)
    except ical.InvalidObject as exc:
        raise UserError(f"the event cannot be stored: {exc}") from None


# -- pages -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Editing:
    """The form's state: the event opened (calendar and name, empty for a new one) and values."""

    calendar: str = ""
    name: str = ""
    title: str = ""
    all_day: bool = False
    start_date: str = ""
    start_time: str = ""
    end_date: str = ""
    end_time: str = ""
    location: str = ""
    description: str = ""
    #: The Attendees field: addresses, comma-separated.
    attendees: str = ""
    #: The organizer when it is someone else (the attendees are then not the account's to edit).
    organizer: str = ""
    #: The stored attendees with their answers.
    answers: tuple[ical.Attendee, ...] = ()
    #: The account's address among the attendees of someone else's event ("" otherwise):
    #: deleting it offers to send the organizer a decline from it.
    attending: str = ""
    #: The calendar chosen in the form when it is not ``calendar`` (a move the page refused).
    chosen: str = ""


def _attendees_text(attendees: Sequence[ical.Attendee]) -> str:
    return ", ".join(f'"{a.name}" <{a.address}>' if a.name else a.address for a in attendees)


def _editing(
    calendar: str, name: str, fields: ical.EventFields, zone: tzinfo, meeting: Meeting,
    attending: Identity | None,
) -> Editing:  # fmt: skip
    start, end = _local(fields.start, zone), _local(fields.end, zone)
    all_day = not isinstance(fields.start, datetime)
    if all_day:
        end -= timedelta(days=1)  # the form shows the last day; RFC 5545 stores the day after
    return Editing(
        calendar,
        name,
        fields.summary,
        all_day,
        start.date().isoformat(),
        "" if all_day else start.strftime("%H:%M"),
        end.date().isoformat(),
        "" if all_day else end.strftime("%H:%M"),
        fields.location,
        fields.description,
        _attendees_text(meeting.attendees),
        "" if meeting.organizer is not None else meeting.organizer_address,
        meeting.attendees,
        "" if attending is None else attending.address,
    )


def _typed(form: FormData, calendar: str, name: str) -> Editing:
    chosen = field_text(form, "calendar")
    return Editing(
        calendar,
        name,
        field_text(form, "title"),
        bool(field_text(form, "all_day")),
        field_text(form, "start_date"),
        field_text(form, "start_time"),
        field_text(form, "end_date"),
        field_text(form, "end_time"),
        field_text(form, "location"),
        field_text(form, "description"),
        field_text(form, "attendees"),
        chosen=chosen if chosen != calendar else "",
    )


_NOTICES = {
    "saved": "Event saved.",
    "unchanged": "Nothing changed: the event is as it was.",
    "deleted": "Event deleted.",
    "invited": "Event saved and the attendees invited.",
    "cancelled": "Event deleted and the attendees told.",
    "declined": "Event deleted and the organizer told you will not attend.",
}


async def _render(
    request: Request,
    account: Account,
    *,
    editing: Editing | None = None,
    error: str = "",
    import_error: str = "",
    status_code: int = 200,
) -> Response:
    app = web(request)
    services = app.services
    zone = reader_zone(request)
    now = datetime.now(zone)
    first = _month(request.query_params.get("month", ""), now.date())
    calendars = await account_calendars(request, account)
    weeks = monthdays.Calendar().monthdatescalendar(first.year, first.month)
    start = datetime.combine(weeks[0][0], time(), zone)
    end = datetime.combine(weeks[-1][-1] + timedelta(days=1), time(), zone)
    shown = await events_between(services, account, calendars, start, end, zone)
    days = services.config.calendars.agenda_days
    agenda = await events_between(
        services, account, calendars, now, now + timedelta(days=days), zone
    )
    if editing is None:
        today = now.date().isoformat()
        editing = Editing(
            await default_calendar(services, account, calendars),
            start_date=today,
            start_time=f"{(now.hour + 1) % 24:02d}:00",
            end_date=today,
            end_time=f"{(now.hour + 2) % 24:02d}:00",
        )
    previous = (first - timedelta(days=1)).replace(day=1)
    done = request.query_params.get("done", "")
    warning = unsealed(request, "warning")
    following = (first + timedelta(days=31)).replace(day=1)
    return app.render(
        request,
        "calendar.html",
        status_code=status_code,
        calendars=calendars,
        month=first,
        previous=previous.strftime("%Y-%m"),
        following=following.strftime("%Y-%m"),
        today=now.date(),
        grid=month_grid(first, shown),
        agenda=agenda,
        agenda_days=days,
        zone=str(zone),
        editing=editing,
        error=error,
        notice=_NOTICES.get(done, ""),
        warning=warning and f"{'Your decline' if done == 'declined' else 'Invitations'} {warning}",
        max_title=MAX_TITLE,
        # The counts of an import just done (the redirect after it carries them).
        imported=field_number(request.query_params.get("imported")),
        unchanged=field_number(request.query_params.get("unchanged")) or 0,
        skipped=field_number(request.query_params.get("skipped")) or 0,
        reasons=unsealed(request, "reasons"),
        import_error=import_error,
        import_limit=services.config.calendars.max_import_bytes,
        max_calendar_name=MAX_DISPLAY_NAME,
    )


async def calendar_page(request: Request) -> Response:
    return await _render(request, await require_account(request))


async def event_page(request: Request) -> Response:
    """The page with one stored event's form open."""
    app = web(request)
    account = await require_account(request)
    calendar, name = request.path_params["calendar"], request.path_params["name"]
    obj = await app.services.store.calendar_object(account.id, calendar, name)
    try:
        fields = await run_blocking(ical.stored_fields, obj.data)
    except ical.InvalidObject:
        raise NotFound("not an event the calendar page can edit") from None
    meeting = await meeting_of(app.services, account, obj.data)
    attending = await _attending(app.services, account, meeting)
    editing = _editing(calendar, name, fields, reader_zone(request), meeting, attending)
    return await _render(request, account, editing=editing)


async def event_submit(request: Request) -> Response:
    """Create (``/calendar/events``), save or delete (``/calendar/events/{calendar}/{name}``)
    one event, inviting its attendees (see the notes); an error is shown in the form with
    what was typed."""
    app = web(request)
    services = app.services
    account = await require_account(request)
    form = await posted_form(request)
    calendar = request.path_params.get("calendar") or field_text(form, "calendar")
    name = request.path_params.get("name", "")
    now = datetime.now(UTC)
    if name and field_text(form, "action") == "delete":
        current = await services.store.calendar_object(account.id, calendar, name)
        meeting = await _meeting_or_none(services, account, current.data)
        attending = None if meeting is None else await _attending(services, account, meeting)
        declining = attending if field_text(form, "decline") else None
        title = field_text(form, "title").strip() or "(no title)"
        told = " (the organizer is told you decline)" if declining is not None else ""
        asked = unconfirmed(
            request,
            form,
            what=f"The event {title} will be deleted{told}.",
            button="Delete event",
            back=f"/calendar/events/{quote(calendar, safe='')}/{quote(name, safe='')}",
        )
        if asked is not None:
            return asked
        warning = ""
        if declining is not None and meeting is not None:
            warning = await _decline(request, services, account, declining, meeting, current)
        await services.store.delete_calendar_object(account.id, calendar, name, now=now)
        _log.info("calendar event deleted", account=account.address, calendar=calendar)
        if declining is not None:
            return redirect(
                "/calendar?"
                + urlencode({"done": "declined", **sealed(request, "warning", warning)})
            )
        if meeting is None or meeting.organizer is None:
            return redirect("/calendar?done=deleted")
        # RFC 5546 §3.2.5: the whole event cancelled, to every attendee (as for a CalDAV
        # DELETE: not to the organizer listed among them, nor one a client schedules).
        sent = await schedule(
            request, services, account, current.data, None, replies=False, sent_copy=True
        )
        if not sent:
            return redirect("/calendar?done=deleted")
        warning = "; ".join(d.warning for d in sent if d.warning)
        return redirect(
            "/calendar?" + urlencode({"done": "cancelled", **sealed(request, "warning", warning)})
        )
    # The form's calendar: where a new event goes, or where an edited one moves to.
    chosen = field_text(form, "calendar") or calendar
    typed = _typed(form, calendar, name)
    try:
        fields = form_fields(form, reader_zone(request))
        invited = attendees_field(
            field_text(form, "attendees"), max_recipients=app.limits.max_recipients
        )
        if chosen not in {c.name for c in await account_calendars(request, account)}:
            raise UserError("choose one of your calendars")
        edited: CalendarObject | None = None
        if name:
            edited = await services.store.calendar_object(account.id, calendar, name)
            try:
                data = await run_blocking(ical.revised_event, edited.data, fields, now)
            except ical.InvalidObject:
                raise UserError("only an event can be edited here") from None
        else:
            uid = str(uuid.uuid4())
            name = object_name(uid)
            data = ical.new_event(fields, uid, now)
        previous = None if edited is None else edited.data
        meeting = await meeting_of(services, account, previous)
        if meeting.organizer is not None and (invited or meeting.attendees):
            person = identities.sender(meeting.organizer, account)
            data = await run_blocking(
                ical.with_attendees, data, person.address, person.name,
                [(p.address, p.name) for p in invited], now,
            )  # fmt: skip
        if edited is not None and chosen != calendar:
            stored = await move_event(services, account, calendar, edited, chosen, data)
            name = stored.name
        elif data == previous:
            # Nothing the form shows changed: no new ETag for the phones to fetch, no update.
            return redirect(f"/calendar/events/{calendar}/{name}?done=unchanged")
        else:
            # As stored: a new time resets the attendees' answers (RFC 6638 §3.2.8).
            stored = await store_event(services, account, chosen, name, data, edited)
    except UserError as exc:
        return await _render(request, account, editing=typed, error=str(exc), status_code=400)
    target = f"/calendar/events/{chosen}/{name}"
    # What to send is decided, and what became of it recorded in SCHEDULE-STATUS, as for a
    # CalDAV PUT (RFC 6638 §3.2.1, §3.2.9): an update to all only when what the attendees'
    # copies hold changed (not for a move alone: the attendees' copies do not say which of
    # the organizer's calendars holds it); the form changes no answer (no REPLY).
    _, sent = await schedule_write(
        request, services, account, chosen, stored, previous, replies=False, sent_copy=True
    )
    if not sent:
        return redirect(f"{target}?done=saved")
    warning = "; ".join(d.warning for d in sent if d.warning)
    return redirect(
        f"{target}?" + urlencode({"done": "invited", **sealed(request, "warning", warning)})
    )


async def _attending(services: Services, account: Account, meeting: Meeting) -> Identity | None:
    """The account's identity among the attendees of an event someone else organizes (the
    one a decline goes out from); None for its own event, or when none of them attends."""
    if meeting.organizer is not None or "@" not in meeting.organizer_address:
        return None
    listed = {a.address.lower() for a in meeting.attendees}
    known = await identities_of(services, account)
    return next((i for i in known if i.address.lower() in listed), None)


async def _decline(
    request: Request, services: Services, account: Account, attending: Identity,
    meeting: Meeting, current: CalendarObject,
) -> str:  # fmt: skip
    """Tell the organizer ``attending`` will not come (RFC 5546 §3.2.3: a REPLY with
    PARTSTAT=DECLINED): "" when the submission took it, else why not."""
    unsent = await send_reply(
        request, services, account, attending, current.data, "DECLINED",
        meeting.organizer_address, sent_copy=True,
    )  # fmt: skip
    return f"was {unsent.warning}" if unsent.warning else ""


async def _meeting_or_none(services: Services, account: Account, data: bytes) -> Meeting | None:
    """The scheduling of a stored object, None for one that is not an event (a to-do)."""
    try:
        return await meeting_of(services, account, data)
    except ical.InvalidObject:
        return None


#: How many of an import's reasons for skipping the page shows, and in how many characters
#: at most: they ride in the redirect's address (the log has the counts and the first five).
SHOWN_REASONS = 10
MAX_REASONS_TEXT = 1500


async def import_page(request: Request) -> Response:
    """Import an .ics file into the chosen calendar, or a new one of the name typed (made
    as MKCALENDAR makes one, named after it: :func:`.caldav.free_calendar_name`)
    (:mod:`pillarbox.transfer.ics`: nothing is sent); the page then says how many were imported
    and skipped, and why."""
    app = web(request)
    account = await require_account(request)
    form = await posted_form(request, files=True)
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return await _render(request, account, import_error="choose an .ics file", status_code=400)
    limit = app.services.config.calendars.max_import_bytes
    data = await upload.read(limit + 1)
    calendar, title = field_text(form, "calendar"), field_text(form, "new_calendar").strip()
    try:
        if calendar and title:
            # Either may be what the user meant: neither is guessed.
            raise UserError(f"to import into a new calendar {title!r}, choose “A new calendar”")
        if calendar:
            done = await import_ics(app.services, account, calendar, within_limit(data, limit))
        elif not title:
            raise UserError("name the new calendar")
        else:
            taken = {c.name for c in await account_calendars(request, account)}
            calendar = free_calendar_name(title, taken)
            done = await import_ics(
                app.services,
                account,
                calendar,
                within_limit(data, limit),
                create=True,
                display_name=title,
            )
    except UserError as exc:
        return await _render(request, account, import_error=str(exc), status_code=400)
    reasons = "; ".join(done.reasons[:SHOWN_REASONS])
    if len(reasons) > MAX_REASONS_TEXT:
        reasons = reasons[: MAX_REASONS_TEXT - 1] + "…"
    if len(done.reasons) > SHOWN_REASONS:
        reasons += f"; and {len(done.reasons) - SHOWN_REASONS} more"
    counts = done.counts()
    return redirect(
        "/calendar?"
        + urlencode({**counts, **sealed(request, "reasons", reasons)})
        + "#import-result"
    )


async def export_page(request: Request) -> Response:
    """One calendar as an .ics file (a download)."""
    app = web(request)
    account = await require_account(request)
    return await export_download(app.services, account, request.path_params["calendar"])


def routes() -> list[BaseRoute]:
    return [
        Route("/calendar", calendar_page, methods=["GET"]),
        Route("/calendar/import", import_page, methods=["POST"]),
        Route("/calendar/export/{calendar}", export_page, methods=["GET"]),
        Route("/calendar/events", event_submit, methods=["POST"]),
        Route("/calendar/events/{calendar}/{name}", event_page, methods=["GET"]),
        Route("/calendar/events/{calendar}/{name}", event_submit, methods=["POST"]),
    ]
