"""CalDAV (RFC 4791 on WebDAV, RFC 4918; sync-collection, RFC 6578): the calendars synced by
phones and desktop clients (iOS and macOS Calendar, Thunderbird, DAVx⁵, vdirsyncer).

Implementation notes:

- **Where things are**: the calendar home is ``/dav/calendars/<address>/`` (the principal's
  ``calendar-home-set``, :mod:`.dav`); each calendar is a collection in it, each event or
  to-do a resource ``<name>`` in that (the name the client chose, usually ``<UID>.ics``).
  An account without calendars is given one, ``personal/`` ("Calendar"), on its first
  request here; MKCALENDAR (§5.3.1) makes more, DELETE removes one (and its objects, each
  meeting as its own DELETE would: RFC 6638 §3.2.3.2) but the default one
  (:func:`pillarbox.calendars.default_calendar`, ``personal`` or one a client chose, §9.2;
  §4.3: 403).
- **Objects are kept as sent**, byte for byte (``GET`` and ``calendar-data`` answer exactly
  the PUT's body), so the ETag a PUT answers (RFC 4791 §5.3.4) is the one a GET gives — but
  for an organizer's reschedule, whose attendees' answers are reset (RFC 6638 §3.2.8,
  :func:`pillarbox.calendars.save_object`), and a meeting whose SCHEDULE-STATUS the server wrote
  (:func:`.scheduling.schedule_write`): that PUT answers no ETag (§5.3.4). It is
  checked (:func:`pillarbox.ical.read_object`, off the event loop) against RFC 4791 §4.1:
  refusals carry the §5.3.2.1 precondition — 403 for ``valid-calendar-data``,
  ``valid-calendar-object-resource``, ``supported-calendar-data``,
  ``supported-calendar-component`` and ``max-resource-size``, 409 for ``no-uid-conflict``
  (another resource of the calendar has the UID: the request could succeed in another state,
  RFC 3253 §1.6), 412 for a failed ``If-Match`` / ``If-None-Match``, 507 past the object
  count; a PUT into a calendar that does not exist is 409 (RFC 4918 §9.7.1).
- **COPY and MOVE** (RFC 4918 §9.8, §9.9) take an object to a name in any of the account's
  calendars, its bytes and ETag as they are (:func:`_relocate`); a MOVE is one store
  transaction, so both calendars' sync tokens tell it. A calendar is neither moved nor
  copied (405).
- **REPORTs**: ``calendar-multiget`` (§7.9), ``calendar-query`` (§7.8; the store narrows a
  top-level ``time-range`` by each object's stored bounds, :mod:`pillarbox.ical` decides
  with its recurrences expanded, floating times in the calendar's ``calendar-timezone``),
  both answering ``calendar-data`` as asked (§9.6: ``comp``/``prop`` narrowing, ``expand``,
  ``limit-recurrence-set``; 507 ``number-of-matches-within-limits`` when that would expand
  past ``[calendars] max_instances``), ``free-busy-query`` (§7.10: 200 with one VFREEBUSY),
  ``sync-collection`` (RFC 6578; ``calendar-data`` narrowed as in the others; the store keeps a
  tombstone per deleted object, for ``[calendars] sync_history_days``; a token is the
  calendar's id and change counter, one of another calendar, from the future or older than
  the tombstones kept is ``valid-sync-token``, 403: :func:`.webdav.sync_report`).
- **Properties**: PROPPATCH sets ``displayname``, Apple's ``calendar-color``,
  ``calendar-description`` (§5.2.1) and ``calendar-timezone`` (§5.2.2: an iCalendar object
  with exactly one VTIMEZONE, else 403 ``valid-calendar-data``), all or none (RFC 4918 §9.2:
  others answer 403, the rest 424); MKCALENDAR takes the same four and
  ``supported-calendar-component-set`` (a subset of VEVENT, VTODO: every calendar holds
  both, so it is not kept). No other (dead) properties are kept.
- **Listings read no object's bytes**: a Depth-1 PROPFIND answers each object's ETag, kept
  beside it on PUT, and its size (:meth:`Store.calendar_members`).
- **Implicit scheduling** (RFC 6638 §3.2, the ``calendar-auto-schedule`` feature): after a
  PUT or DELETE of an event whose ORGANIZER is one of the account's identities, the server
  sends the iTIP messages by iMIP (:mod:`.scheduling`, the webmail's path): a REQUEST to the
  attendees (all of them when what their copies hold changed, :func:`pillarbox.ical.
  scheduled_content`; else only those newly listed), a CANCEL to those taken off, a CANCEL
  to all on DELETE; for an event the account attends, a REPLY to the organizer when its own
  PARTSTAT changed to an answer (of the series, or of instances only: §3.2.2.3), DECLINED on
  DELETE, nothing with ``Schedule-Reply: F``
  (§8.1). Nobody whose SCHEDULE-AGENT is not SERVER gets anything (§7.1), the organizer
  listed as an attendee (iOS does) neither. What is sent is what was stored (a reschedule's
  answers reset, §3.2.8). Then what became of each message (§3.2.9) is written in
  SCHEDULE-STATUS (§7.3: on the attendees of the organizer's copy, on the ORGANIZER of an
  attendee's), a client's own value on those lines undone, and the object stored again
  (same Schedule-Tag) when that changed it (:func:`.scheduling.schedule_write`, which the
  Calendar page's save shares); a message not sent is logged, the PUT still succeeds.
- **Schedule-Tag** (RFC 6638 §3.2.10): an event the account organizes or attends (§3.1)
  keeps a tag beside it (:func:`pillarbox.calendars.schedule_tag` decides when it changes:
  with the organizer's changes, not with answers), answered in GET/HEAD/PUT's
  ``Schedule-Tag`` header (§8.2) and the ``schedule-tag`` property (§9.3);
  ``If-Schedule-Tag-Match`` (§8.3) guards PUT, DELETE, COPY and MOVE (the source's tag) as
  If-Match does (412). A MOVE to a free name keeps the tag (the same resource, filed
  elsewhere); a COPY, or a MOVE over another object, gets the tag a PUT of the same bytes
  there would. Objects stay as sent, so answers are not merged into an organizer's PUT that
  matched the tag.
- **Elsewhere**: the scheduling inbox and outbox (RFC 6638 §2.1, §2.2; free-busy lookups of
  other accounts through the outbox, §5) are :mod:`.scheduleboxes`; the inbox stays empty
  (invitations arrive as mail). What is stored of calendars and objects, whoever writes
  (the Calendar page, an .ics import), is :mod:`pillarbox.calendars`'s: the default
  calendar, the names, an object saved as a PUT saves it.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import quote
from xml.etree.ElementTree import Element

from starlette.requests import Request
from starlette.responses import Response

from pillarbox import caldavxml, davxml, ical
from pillarbox.blocking import run_blocking
from pillarbox.calendars import (
    MAX_DISPLAY_NAME,
    NAME,
    UidTaken,
    calendars_of,
    check_uid_free,
    default_calendar,
    new_calendar,
    save_object,
    schedule_tag,
)
from pillarbox.config import CalendarsSection
from pillarbox.davxml import APPLE_ICAL, CALDAV, CALENDARSERVER, DAV, Found, element, tag
from pillarbox.errors import (
    AlreadyExists,
    InvalidName,
    NotFound,
    PreconditionFailed,
    TooManyEntries,
)
from pillarbox.observability.log import Log
from pillarbox.store.types import Account, Calendar, CalendarObject, Member
from pillarbox.web.app import BodyTooLarge, web
from pillarbox.web.downloads import foreign_content
from pillarbox.web.scheduling import schedule, schedule_write
from pillarbox.web.webdav import (
    FINITE_DEPTH,
    INVALID_SYNC_TOKEN,
    NOT_FOUND,
    OWNER_PRIVILEGES,
    PRECONDITION_FAILED,
    ROOT,
    SUPPORTED_REPORT,
    TOO_MANY_CHANGES,
    Resource,
    Target,
    answer,
    collection,
    common,
    depth,
    not_allowed,
    owned_target,
    precondition,
    privileges,
    props,
    read,
    read_xml,
    relocation,
    report_set,
    sync_report,
    sync_since,
    sync_token,
    text,
    xml,
)

_log = Log("web.caldav")

WELL_KNOWN = "/.well-known/caldav"
#: The path segment below ``/dav/`` of the calendar homes.
SECTION = "calendars"
CALENDAR_TYPE = "text/calendar"
COLOR = re.compile(r"#[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?")
_COLLECTION_METHODS = "OPTIONS, GET, HEAD, PROPFIND, PROPPATCH, REPORT, DELETE"


def _condition(name: str, *children: Element) -> bytes:
    return davxml.error(element(tag(CALDAV, name), None, *children))


# -- paths -----------------------------------------------------------------------------------------


def home_href(address: str) -> str:
    return f"{ROOT}{SECTION}/{quote(address, safe='@')}/"


def calendar_href(address: str, calendar: str) -> str:
    return f"{home_href(address)}{quote(calendar, safe='')}/"


def object_href(address: str, calendar: str, name: str) -> str:
    return calendar_href(address, calendar) + quote(name, safe="@")


def target(path: str) -> Target | None:
    """The resource a decoded path below ``/dav/calendars/`` names ("home", "calendar" or
    "object"), or None."""
    match path.split("/", 2):
        case [address] | [address, ""]:
            return Target("home", address)
        case [address, calendar] | [address, calendar, ""]:
            return Target("calendar", address, calendar)
        case [address, calendar, name] if "/" not in name:
            return Target("object", address, calendar, name)
    return None


# -- properties ------------------------------------------------------------------------------------


def _scope(calendar: Calendar) -> str:
    """What a calendar's sync tokens name it by (:func:`.webdav.sync_token`): its id."""
    return str(calendar.id)


def _components() -> Element:
    """RFC 4791 §5.2.3 ``supported-calendar-component-set``."""
    made = [element(tag(CALDAV, "comp")) for _ in ical.COMPONENTS]
    for comp, name in zip(made, ical.COMPONENTS, strict=True):
        comp.set("name", name)
    return element(tag(CALDAV, "supported-calendar-component-set"), None, *made)


def _data_types() -> Element:
    """RFC 4791 §5.2.4 ``supported-calendar-data``."""
    data = element(tag(CALDAV, "calendar-data"))
    data.set("content-type", CALENDAR_TYPE)
    data.set("version", "2.0")
    return element(tag(CALDAV, "supported-calendar-data"), None, data)


def calendar_resource(address: str, calendar: Calendar, max_size: int) -> Resource:
    found = props(
        collection(element(tag(CALDAV, "calendar"))),
        element(tag(DAV, "displayname"), calendar.display_name or calendar.name),
        element(tag(CALENDARSERVER, "getctag"), f'"{calendar.id}-{calendar.sync_token}"'),
        element(tag(DAV, "sync-token"), sync_token(_scope(calendar), calendar.sync_token)),
        _components(),
        _data_types(),
        element(tag(CALDAV, "max-resource-size"), str(max_size)),  # RFC 4791 §5.2.5
        report_set(
            tag(CALDAV, "calendar-multiget"),
            tag(CALDAV, "calendar-query"),
            tag(CALDAV, "free-busy-query"),
            tag(DAV, "sync-collection"),
        ),
        privileges(*OWNER_PRIVILEGES),
        *common(address),
    )
    for name, value in (
        (tag(APPLE_ICAL, "calendar-color"), calendar.color),
        (tag(CALDAV, "calendar-description"), calendar.description),  # RFC 4791 §5.2.1
        (tag(CALDAV, "calendar-timezone"), calendar.timezone),  # RFC 4791 §5.2.2
    ):
        if value:
            found[name] = element(name, value)
    return Resource(calendar_href(address, calendar.name), found)


def object_resource(address: str, calendar: str, obj: CalendarObject | Member) -> Resource:
    """An object's properties, from the object or from its listing (:class:`Member`)."""
    size = len(obj.data) if isinstance(obj, CalendarObject) else obj.size
    return Resource(
        object_href(address, calendar, obj.name),
        props(
            element(tag(DAV, "resourcetype")),
            element(tag(DAV, "getetag"), obj.etag),
            element(
                tag(DAV, "getcontenttype"),
                f"{CALENDAR_TYPE}; charset=utf-8; component={obj.component.lower()}",
            ),
            element(tag(DAV, "getcontentlength"), str(size)),
            # RFC 6638 §9.3: only a scheduling object resource has one.
            *([element(tag(CALDAV, "schedule-tag"), obj.schedule_tag)] if obj.schedule_tag else []),
            privileges(*OWNER_PRIVILEGES),
            *common(address),
        ),
    )


def home_resource(address: str) -> Resource:
    return Resource(
        home_href(address),
        props(
            collection(),
            element(
                tag(CALDAV, "calendar-home-set"),
                None,
                element(tag(DAV, "href"), home_href(address)),
            ),
            privileges("read", "bind", "unbind"),
            *common(address),
        ),
    )


def _calendar_data(obj: CalendarObject) -> Element:
    """The object as received (validated UTF-8 on PUT) for a REPORT's ``calendar-data``."""
    return element(tag(CALDAV, "calendar-data"), obj.data.decode("utf-8"))


async def _data_as_asked(
    request: Request,
    calendar: Calendar,
    objects: Sequence[CalendarObject],
    asked: caldavxml.CalendarData,
) -> list[Element]:
    """Each object's ``calendar-data`` as the REPORT asks for it (RFC 4791 §9.6): as stored,
    or narrowed and expanded off the event loop, floating times in ``calendar``'s zone."""
    if asked.whole or not objects:
        return [_calendar_data(o) for o in objects]
    texts = await run_blocking(
        ical.render,
        [o.data for o in objects],
        asked,
        web(request).services.config.calendars.max_instances,
        calendar.timezone,
    )
    return [element(tag(CALDAV, "calendar-data"), t) for t in texts]


# -- requests --------------------------------------------------------------------------------------


def _max_object(request: Request) -> int:
    app = web(request)
    return min(app.services.config.calendars.max_object_bytes, app.limits.max_form_bytes)


async def account_calendars(request: Request, account: Account) -> list[Calendar]:
    """The account's calendars (:func:`pillarbox.calendars.calendars_of`: an account with
    none is given the default one first)."""
    return await calendars_of(web(request).services, account)


def free_calendar_name(title: str, taken: Collection[str]) -> str:
    """A name (:data:`pillarbox.calendars.NAME`) for a new calendar a user titled ``title``
    (the webmail's import into a new calendar): its letters and digits in ASCII, lowercased,
    the rest as ``-`` (so "Café & Work" is ``cafe-work``); ``calendar`` when none are left;
    ``-2``, ``-3``… added while ``taken`` has it."""
    ascii_text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    base = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:60].strip("-")
    base = base or "calendar"
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base}-{number}"
    return name


async def handle(request: Request, account: Account, found: Target) -> Response:
    """A request on the calendar home, a calendar or an object of the caller's."""
    calendars = {c.name: c for c in await account_calendars(request, account)}
    method = request.method
    if found.kind == "home":
        if method == "PROPFIND":
            return await _propfind_home(request, account, list(calendars.values()))
        return not_allowed("OPTIONS, PROPFIND")
    calendar = calendars.get(found.collection)
    if found.kind == "calendar":
        if method == "MKCALENDAR":
            return await _mkcalendar(request, account, found.collection, calendar)
        if calendar is None:
            return text(NOT_FOUND, 404)
        default = await default_calendar(web(request).services, account, list(calendars.values()))
        return await _on_calendar(request, account, calendar, default)
    if method == "MKCALENDAR":
        # RFC 4791 §5.3.1.1: calendars are made in the home only.
        return xml(_condition("calendar-collection-location-ok"), 403)
    if calendar is None:
        if method == "PUT":
            return text("no such calendar: make it first (MKCALENDAR)\n", 409)
        return text(NOT_FOUND, 404)
    if method in ("GET", "HEAD"):
        return await _get(request, account, calendar, found.name)
    if method == "PUT":
        return await _put(request, account, calendar, found.name)
    if method == "DELETE":
        return await _delete(request, account, calendar, found.name)
    if method in ("COPY", "MOVE"):
        return await _relocate(request, account, calendars, calendar, found.name)
    if method == "PROPFIND":
        obj = await _object(request, account, calendar, found.name)
        if obj is None:
            return text(NOT_FOUND, 404)
        asked = davxml.propfind(await read_xml(request))
        resource = object_resource(account.address, calendar.name, obj)
        return xml(davxml.multistatus([answer(resource, asked)]))
    return not_allowed("OPTIONS, GET, HEAD, PUT, DELETE, COPY, MOVE, PROPFIND")


async def _on_calendar(
    request: Request, account: Account, calendar: Calendar, default: str
) -> Response:
    """A request on one of the account's calendars; ``default`` names its default calendar
    (:func:`pillarbox.calendars.default_calendar`)."""
    method = request.method
    if method == "PROPFIND":
        return await _propfind_calendar(request, account, calendar)
    if method == "REPORT":
        return await _report(request, account, calendar)
    if method == "PROPPATCH":
        return await _proppatch(request, account, calendar)
    if method == "DELETE":
        if calendar.name == default:
            # RFC 6638 §4.3: "Servers MUST reject any attempt to delete the default calendar
            # collection", with RFC 6638's CALDAV:default-calendar-needed (what Cyrus IMAP and
            # Stalwart answer; Apple's server, older than the RFC, said
            # default-calendar-delete-allowed).
            _log.info("default calendar not deleted", account=account.address)
            return xml(_condition("default-calendar-needed"), 403)
        return await _delete_calendar(request, account, calendar)
    if method in ("GET", "HEAD"):
        return text(f"{calendar.display_name}: use a CalDAV client\n", 200)
    return not_allowed(_COLLECTION_METHODS)


async def _delete_calendar(request: Request, account: Account, calendar: Calendar) -> Response:
    """DELETE of a calendar (not the default one) and everything in it. RFC 6638 §3.2.3.2:
    "When the server receives a DELETE method request targeted at a calendar collection, it
    MUST execute the Remove operation on all scheduling object resources contained in the
    calendar collection" — each meeting goes as its own DELETE would (:func:`_delete`): a
    CANCEL to the attendees of one the account organizes (§3.2.1.3), a DECLINED REPLY to
    the organizer of one it attends (§3.2.2.4), ``Schedule-Reply: F`` heeded (§8.1)."""
    store = web(request).services.store
    # The scheduling object resources (§3.1) are those with a Schedule-Tag (§3.2.10): the
    # store tells them by the tag kept beside each object, so the others' bytes are not read.
    meetings = [
        o
        for o in await store.calendar_objects(account.id, calendar.name, scheduling=True)
        if o.component == "VEVENT"
    ]
    try:
        await store.delete_calendar(account.id, calendar.name)
    except NotFound:  # deleted by a request beside this one, which sent the messages
        return text(NOT_FOUND, 404)
    for obj in meetings:
        await schedule(
            request, web(request).services, account, obj.data, None,
            replies=_replies(request), sent_copy=False,
        )  # fmt: skip
    return Response(status_code=204)


async def _object(
    request: Request, account: Account, calendar: Calendar, name: str
) -> CalendarObject | None:
    try:
        return await web(request).services.store.calendar_object(account.id, calendar.name, name)
    except NotFound:
        return None


async def _propfind_home(
    request: Request, account: Account, calendars: Sequence[Calendar]
) -> Response:
    asked = davxml.propfind(await read_xml(request))
    levels = depth(request)
    if levels is None:
        return xml(FINITE_DEPTH, 403)  # RFC 4918 §9.1
    resources = [home_resource(account.address)]
    if levels:
        resources += [
            calendar_resource(account.address, c, _max_object(request)) for c in calendars
        ]
    return xml(davxml.multistatus([answer(r, asked) for r in resources]))


async def _propfind_calendar(request: Request, account: Account, calendar: Calendar) -> Response:
    asked = davxml.propfind(await read_xml(request))
    levels = depth(request)
    if levels is None:
        return xml(FINITE_DEPTH, 403)  # RFC 4918 §9.1
    resources = [calendar_resource(account.address, calendar, _max_object(request))]
    if levels:
        # The stored ETags and sizes: no object's bytes are read.
        members = await web(request).services.store.calendar_members(account.id, calendar.name)
        resources += [object_resource(account.address, calendar.name, m) for m in members]
    return xml(davxml.multistatus([answer(r, asked) for r in resources]))


# -- REPORT ----------------------------------------------------------------------------------------


async def _report(request: Request, account: Account, calendar: Calendar) -> Response:
    try:
        asked = caldavxml.report(await read_xml(request))
        if isinstance(asked, davxml.OtherReport):
            _log.info("caldav report not supported", account=account.address, report=asked.name)
            return xml(SUPPORTED_REPORT, 403)
        if isinstance(asked, caldavxml.CalendarMultiget):
            return await _multiget(request, account, asked)
        if isinstance(asked, caldavxml.CalendarSync):
            return await _sync(request, account, calendar, asked.sync, asked.data)
        if isinstance(asked, caldavxml.FreeBusyQuery):
            return await _free_busy(request, account, calendar, asked)
        return await _query(request, account, calendar, asked)
    except caldavxml.UnsupportedFilter as exc:
        _log.info("caldav filter not supported", account=account.address, reason=str(exc))
        return xml(_condition("supported-filter"), 403)  # RFC 4791 §7.7
    except caldavxml.UnsupportedCalendarData as exc:
        _log.info("caldav data type not supported", account=account.address, asked=str(exc))
        return xml(_condition("supported-calendar-data"), 403)  # RFC 4791 §7.8, §7.9
    except ical.TooManyInstances as exc:
        _log.info("caldav report past max_instances", account=account.address, reason=str(exc))
        # RFC 4791 §7.8's postcondition for what exceeds the server's limits.
        return xml(TOO_MANY_CHANGES, 507)


async def _multiget(
    request: Request, account: Account, asked: caldavxml.CalendarMultiget
) -> Response:
    """RFC 4791 §7.9: each href answered, 404 for one that is not an object of the caller's
    (floating times of each read in its own calendar's zone)."""
    calendars = {c.name: c for c in await account_calendars(request, account)}
    hits: dict[int, tuple[Calendar, CalendarObject]] = {}
    for index, href in enumerate(asked.hrefs):
        named = owned_target(href, SECTION, target, account.address)
        if named is None or named.kind != "object" or named.collection not in calendars:
            continue
        with contextlib.suppress(NotFound):
            obj = await web(request).services.store.calendar_object(
                account.id, named.collection, named.name
            )
            hits[index] = (calendars[named.collection], obj)
    data: dict[int, Element] = {}
    for calendar in calendars.values():
        mine = [i for i, (c, _) in hits.items() if c is calendar]
        rendered = await _data_as_asked(request, calendar, [hits[i][1] for i in mine], asked.data)
        data.update(zip(mine, rendered, strict=True))
    responses = [
        answer(object_resource(account.address, hits[i][0].name, hits[i][1]), asked.props, data[i])
        if i in hits
        else Found(href, status=404)
        for i, href in enumerate(asked.hrefs)
    ]
    return xml(davxml.multistatus(responses))


def _narrowed(query: caldavxml.CompFilter) -> caldavxml.TimeRange | None:
    """The time range every match must meet, when the filter has one at the component level
    (``VCALENDAR`` → one ``VEVENT`` or ``VTODO`` with a ``time-range``)."""
    ranges = [c.time_range for c in query.comps if not c.is_not_defined]
    return ranges[0] if len(ranges) == 1 else None


async def _query(
    request: Request, account: Account, calendar: Calendar, asked: caldavxml.CalendarQuery
) -> Response:
    """RFC 4791 §7.8: the objects passing the filter; the store narrows by a top-level time
    range, the library's check decides."""
    window = _narrowed(asked.filter)
    objects = await web(request).services.store.calendar_objects(
        account.id,
        calendar.name,
        start=window.start if window else None,
        end=window.end if window else None,
    )
    kinds = ical.kinds_only(asked.filter)
    if kinds is not None:
        passed = [o.component in kinds for o in objects]
    else:
        # Parsing and recurrence expansion of every candidate: off the event loop.
        passed = await run_blocking(
            ical.select,
            [o.data for o in objects],
            asked.filter,
            web(request).services.config.calendars.max_instances,
            calendar.timezone,
        )
    matched = [o for o, ok in zip(objects, passed, strict=True) if ok]
    data = await _data_as_asked(request, calendar, matched, asked.data)
    responses = [
        answer(object_resource(account.address, calendar.name, o), asked.props, d)
        for o, d in zip(matched, data, strict=True)
    ]
    return xml(davxml.multistatus(responses))


async def _free_busy(
    request: Request, account: Account, calendar: Calendar, asked: caldavxml.FreeBusyQuery
) -> Response:
    """RFC 4791 §7.10: 200 with one VFREEBUSY of the calendar's busy time in the range (the
    store narrows by each object's stored bounds)."""
    objects = await web(request).services.store.calendar_objects(
        account.id, calendar.name, start=asked.start, end=asked.end
    )
    answered = await run_blocking(
        ical.free_busy,
        [o.data for o in objects],
        asked.start,
        asked.end,
        datetime.now(UTC),
        web(request).services.config.calendars.max_instances,
        calendar.timezone,
    )
    return Response(answered, media_type=f"{CALENDAR_TYPE}; charset=utf-8")


async def _sync(
    request: Request,
    account: Account,
    calendar: Calendar,
    asked: davxml.SyncCollection,
    calendar_data: caldavxml.CalendarData,
) -> Response:
    """RFC 6578 §3.2: what changed since the client's token (everything, for none), each
    object's ``calendar-data`` as asked (RFC 4791 §9.6, as in a multiget)."""
    since = sync_since(asked, _scope(calendar))
    if since is None:
        _log.info("caldav sync token refused", account=account.address, token=asked.token)
        return xml(INVALID_SYNC_TOKEN, 403)
    changes = await web(request).services.store.calendar_changes(account.id, calendar.name, since)
    address = account.address
    rendered = await _data_as_asked(request, calendar, changes.changed, calendar_data)
    data = {o.name: d for o, d in zip(changes.changed, rendered, strict=True)}
    return sync_report(
        asked,
        _scope(calendar),
        since,
        changes,
        lambda o: answer(object_resource(address, calendar.name, o), asked.props, data[o.name]),
        lambda name: object_href(address, calendar.name, name),
    )


# -- collections -----------------------------------------------------------------------------------


#: The properties PROPPATCH and MKCALENDAR set, each with how a calendar takes its value.
_KEPT: dict[str, Callable[[Calendar, str], Calendar]] = {
    tag(DAV, "displayname"): lambda c, v: replace(c, display_name=v),
    tag(APPLE_ICAL, "calendar-color"): lambda c, v: replace(c, color=v),
    tag(CALDAV, "calendar-description"): lambda c, v: replace(c, description=v),  # §5.2.1
    tag(CALDAV, "calendar-timezone"): lambda c, v: replace(c, timezone=v),  # RFC 4791 §5.2.2
}


async def _valid(limits: CalendarsSection, name: str, value: str) -> bool:
    """Whether a value given for one of :data:`_KEPT` may be kept."""
    if name == tag(DAV, "displayname"):
        return len(value) <= MAX_DISPLAY_NAME
    if name == tag(APPLE_ICAL, "calendar-color"):
        return not value or COLOR.fullmatch(value) is not None
    if name == tag(CALDAV, "calendar-description"):
        return len(value) <= limits.max_description
    if len(value.encode()) > limits.max_timezone_bytes:
        return False
    try:
        # RFC 4791 §5.2.2: one VTIMEZONE in an iCalendar object; parsed off the event loop.
        await run_blocking(ical.check_timezone, value.encode())
    except ical.InvalidObject:
        return False
    return True


async def _settable(
    limits: CalendarsSection,
    update: caldavxml.PropertyUpdate,
    calendar: Calendar,
    extra: frozenset[str],
) -> tuple[Calendar, list[str], list[str]]:
    """The calendar with the update's properties (:data:`_KEPT`) applied, the properties
    done, and those refused (any other but ``extra``, accepted and dropped; a bad value)."""
    changed, done, refused = calendar, [], []
    for name, prop in update.set.items():
        value = (prop.text or "").strip()
        take = _KEPT.get(name)
        if take is not None and await _valid(limits, name, value):
            changed = take(changed, value)
        elif name not in extra:
            refused.append(name)
            continue
        done.append(name)
    for name in update.remove:
        take = _KEPT.get(name)
        if take is None:
            refused.append(name)
            continue
        changed = take(changed, "")
        done.append(name)
    return changed, done, refused


async def _proppatch(request: Request, account: Account, calendar: Calendar) -> Response:
    """RFC 4918 §9.2: every instruction done, or none (403 for those refused, 424 for the
    rest)."""
    update = caldavxml.property_update(await read_xml(request), tag(DAV, "propertyupdate"))
    limits = web(request).services.config.calendars
    changed, done, refused = await _settable(limits, update, calendar, frozenset())
    href = calendar_href(account.address, calendar.name)
    if refused:
        others = [(403, refused), (424, done)] if done else [(403, refused)]
        return xml(davxml.multistatus([Found(href, others=others)]))
    await web(request).services.store.update_calendar(account.id, changed)
    return xml(davxml.multistatus([Found(href, [element(n) for n in done])]))


#: The MKCALENDAR property checked and not kept (RFC 4791 §5.2.3): every calendar holds
#: both components.
_DROPPED = frozenset({tag(CALDAV, "supported-calendar-component-set")})


async def _mkcalendar(
    request: Request, account: Account, name: str, existing: Calendar | None
) -> Response:
    """RFC 4791 §5.3.1: a new calendar in the home, 201."""
    update = caldavxml.property_update(await read_xml(request), tag(CALDAV, "mkcalendar"))
    if existing is not None:
        # RFC 4791 §5.3.1.1 (DAV:resource-must-be-null).
        return xml(davxml.error(element(tag(DAV, "resource-must-be-null"))), 403)
    components = update.set.get(tag(CALDAV, "supported-calendar-component-set"))
    if components is not None and not {
        c.get("name", "").upper() for c in components.iter(tag(CALDAV, "comp"))
    } <= set(ical.COMPONENTS):
        return xml(_condition("supported-calendar-component"), 403)
    limits = web(request).services.config.calendars
    calendar, _, refused = await _settable(limits, update, Calendar(name=name), _DROPPED)
    if refused:
        href = calendar_href(account.address, name)
        return xml(davxml.multistatus([Found(href, others=[(403, refused)])]), 403)
    try:
        await new_calendar(web(request).services, account, calendar)
    except InvalidName as exc:
        return text(f"{exc}\n", 403)
    except AlreadyExists:
        return xml(davxml.error(element(tag(DAV, "resource-must-be-null"))), 403)
    except TooManyEntries as exc:
        return text(f"{exc}\n", 507)  # RFC 4918 §11.5
    return Response(status_code=201)


# -- objects ---------------------------------------------------------------------------------------


async def _get(request: Request, account: Account, calendar: Calendar, name: str) -> Response:
    obj = await _object(request, account, calendar, name)
    if obj is None:
        return text(NOT_FOUND, 404)
    headers = {"etag": obj.etag, "cache-control": "private, no-cache", **_tag_header(obj)}
    response = Response(obj.data, headers=headers, media_type=f"{CALENDAR_TYPE}; charset=utf-8")
    return foreign_content(response, name)


def _tag_header(obj: CalendarObject) -> dict[str, str]:
    """RFC 6638 §8.2: the Schedule-Tag header of a GET, HEAD or PUT of a scheduling object
    resource (none for another object)."""
    return {"schedule-tag": obj.schedule_tag} if obj.schedule_tag else {}


def _schedule_tag_holds(request: Request, current: CalendarObject | None) -> bool:
    """RFC 6638 §8.3: a PUT, DELETE, COPY or MOVE with If-Schedule-Tag-Match proceeds only
    when the resource's Schedule-Tag is the one given (False: 412, as a failed If-Match) —
    so not when it has none or does not exist. The tag's quotes are not required (some
    clients drop them)."""
    wanted = request.headers.get("if-schedule-tag-match")
    if wanted is None:
        return True
    return (
        current is not None
        and bool(current.schedule_tag)
        and wanted.strip().strip('"') == current.schedule_tag.strip('"')
    )


#: The request headers that make a PUT conditional on the object it replaces (not
#: If-Schedule-Tag-Match: RFC 6638 §3.2.10 lets it succeed over an attendee's answer, which
#: changes the ETag and not the tag).
_CONDITIONS = ("if-match", "if-none-match")


async def _put(request: Request, account: Account, calendar: Calendar, name: str) -> Response:
    app = web(request)
    media = request.headers.get("content-type", CALENDAR_TYPE).split(";")[0].strip().lower()
    if media != CALENDAR_TYPE:
        return xml(_condition("supported-calendar-data"), 403)  # RFC 4791 §5.3.2.1
    if not NAME.fullmatch(name):
        return text("a resource name is letters, digits and ._@+=~- (up to 255)\n", 403)
    try:
        data = await read(request, _max_object(request))
    except BodyTooLarge:
        return xml(_condition("max-resource-size"), 403)  # RFC 4791 §5.3.2.1
    current = await _object(request, account, calendar, name)
    etag = current.etag if current is not None else None
    if not precondition(request, etag) or not _schedule_tag_holds(request, current):
        return text(PRECONDITION_FAILED, 412)
    limits = app.services.config.calendars
    try:
        # Parsing and recurrence expansion (bounded by max_instances): off the event loop.
        info = await run_blocking(ical.read_object, data, limits.max_instances)
    except ical.InvalidObject as exc:
        _log.info("caldav object refused", account=account.address, reason=str(exc))
        return xml(_condition(exc.condition), 403)
    # A PUT that named the state it expects gets it or 412, also when another write of the
    # name came between the check above and the store's write (RFC 9110 §13.1.1, §13.1.2).
    conditional = any(h in request.headers for h in _CONDITIONS)
    try:
        stored = await save_object(
            app.services, account, calendar.name, name, data, info, current,
            conditional=conditional,
        )  # fmt: skip
    except UidTaken as exc:
        return _uid_conflict(account, calendar, exc.holder)
    except TooManyEntries as exc:
        return text(f"{exc}\n", 507)  # RFC 4918 §11.5
    except PreconditionFailed:
        return text(PRECONDITION_FAILED, 412)
    if info.component == "VEVENT":
        # What the attendees are sent is what was stored (answers reset, RFC 6638 §3.2.8). A
        # phone's messages are not kept in Sent: the user wrote no message (docs/calendars.md).
        stored, _ = await schedule_write(
            request, app.services, account, calendar.name, stored,
            current.data if current is not None else None,
            replies=_replies(request), sent_copy=False,
        )  # fmt: skip
    # RFC 4791 §5.3.4: the ETag only when stored as sent (a reschedule's reset answers, the
    # delivery statuses written are not: the client fetches the object again); RFC 6638
    # §8.2: the Schedule-Tag.
    as_sent = {"etag": stored.etag} if stored.data == data else {}
    headers = {**as_sent, **_tag_header(stored)}
    return Response(status_code=204 if current is not None else 201, headers=headers)


def _uid_conflict(account: Account, calendar: Calendar, holder: str | None) -> Response:
    """RFC 4791 §5.3.2.1 ``no-uid-conflict``, naming the resource that has the UID."""
    hrefs = (
        []
        if holder is None
        else [element(tag(DAV, "href"), object_href(account.address, calendar.name, holder))]
    )
    return xml(_condition("no-uid-conflict", *hrefs), 409)


async def _relocate(
    request: Request,
    account: Account,
    calendars: dict[str, Calendar],
    calendar: Calendar,
    name: str,
) -> Response:
    """RFC 4918 §9.8 COPY and §9.9 MOVE of an object to a name in one of the account's
    calendars (the same one: a rename), its bytes as they are (so its ETag too): 201 when the
    Destination was free, 204 when it replaced an object there (§9.9.4, Overwrite: T), 412
    when it holds one and Overwrite is F (§10.6) or the source's If-Match or
    If-Schedule-Tag-Match (RFC 6638 §8.3) fails, 409
    ``no-uid-conflict`` when another object of that calendar has the UID (RFC 4791 §5.3.2.1;
    a COPY into the source's own calendar always does, §4.1). A MOVE is one store transaction
    (:meth:`Store.move_calendar_object`: a tombstone in the source calendar, the object in
    the target, both tokens raised, RFC 6578). Nothing is sent (RFC 6638 §3.2): the event is
    the same one, only filed elsewhere, and a COPY's is another calendar's view of it."""
    asked = relocation(request, SECTION, target, account.address)
    if isinstance(asked, Response):
        return asked
    current = await _object(request, account, calendar, name)
    if current is None:
        return text(NOT_FOUND, 404)
    # RFC 6638 §8.3: If-Schedule-Tag-Match makes any method on a scheduling object
    # resource conditional; for COPY and MOVE it is the source's tag that is meant.
    if not precondition(request, current.etag) or not _schedule_tag_holds(request, current):
        return text(PRECONDITION_FAILED, 412)
    found = asked.target
    if found.kind != "object":
        return text("the Destination must be an object in a calendar, not a collection\n", 403)
    into = calendars.get(found.collection)
    if into is None:
        return text("no such calendar: make it first (MKCALENDAR)\n", 409)  # RFC 4918 §9.9.4
    moving = request.method == "MOVE"
    if (into.name, found.name) == (calendar.name, name):
        return text("the Destination is the resource itself\n", 403)  # RFC 4918 §9.9.4
    if not NAME.fullmatch(found.name):
        return text("a resource name is letters, digits and ._@+=~- (up to 255)\n", 403)
    there = await _object(request, account, into, found.name)
    if there is not None and not asked.overwrite:
        return text(PRECONDITION_FAILED, 412)  # RFC 4918 §10.6
    # The object replaced at the Destination, and for a MOVE within a calendar the source,
    # give the UID up in the same transaction.
    spared = (found.name, name) if moving and into.name == calendar.name else (found.name,)
    app = web(request)
    if moving and there is None:
        tag = current.schedule_tag  # the same resource, filed elsewhere: nothing changed
    else:
        # A new resource, or one written over: its tag as a PUT of these bytes gives it.
        tag = await schedule_tag(app.services, account, there, current.data)
    renamed = replace(current, id=0, name=found.name, modseq=0, updated=None, schedule_tag=tag)
    now, limit = datetime.now(UTC), app.services.config.calendars.max_objects
    try:
        await check_uid_free(app.services, account.id, into.name, current.uid, spared)
        if moving:
            stored = await app.services.store.move_calendar_object(
                account.id, calendar.name, name, into.name, renamed, now=now, limit=limit
            )
        else:
            stored = await app.services.store.save_calendar_object(
                account.id, into.name, renamed, now=now, limit=limit
            )
    except UidTaken as exc:
        return _uid_conflict(account, into, exc.holder)
    except AlreadyExists:  # a write beside this one took the UID after the check
        return _uid_conflict(account, into, None)
    except TooManyEntries as exc:
        return text(f"{exc}\n", 507)  # RFC 4918 §11.5
    except NotFound:  # the source (or a calendar) went meanwhile
        return text(NOT_FOUND, 404)
    headers = {"etag": stored.etag, **_tag_header(stored)}
    return Response(status_code=204 if there is not None else 201, headers=headers)


async def _delete(request: Request, account: Account, calendar: Calendar, name: str) -> Response:
    current = await _object(request, account, calendar, name)
    if current is None:
        return text(NOT_FOUND, 404)
    if not precondition(request, current.etag) or not _schedule_tag_holds(request, current):
        return text(PRECONDITION_FAILED, 412)
    try:
        await web(request).services.store.delete_calendar_object(
            account.id, calendar.name, name, now=datetime.now(UTC)
        )
    except NotFound:
        return text(NOT_FOUND, 404)
    if current.component == "VEVENT":
        await schedule(
            request, web(request).services, account, current.data, None,
            replies=_replies(request), sent_copy=False,
        )  # fmt: skip
    return Response(status_code=204)


# -- implicit scheduling (RFC 6638) ----------------------------------------------------------------


def _replies(request: Request) -> bool:
    """RFC 6638 §8.1: "Schedule-Reply: F" asks for no REPLY."""
    return request.headers.get("schedule-reply", "T").strip().upper() != "F"
