"""The scheduling inbox and outbox of CalDAV scheduling (RFC 6638 §2.1, §2.2): where a
client finds them, what they answer, and the free-busy lookups the outbox takes (§5).

Implementation notes:

- **Where they are**: ``/dav/scheduling/<address>/inbox/`` and ``…/outbox/``, outside the
  calendar home (so no calendar's name can be taken by them), named by the principal's
  ``schedule-inbox-URL`` (§2.2.1) and ``schedule-outbox-URL`` (§2.1.1) (:mod:`.dav`).
- **The inbox is empty**: invitations arrive as mail (iMIP, :mod:`.invitations`), not in it
  (§4 would have the server process them into calendars too; docs/calendars.md says why not);
  it answers PROPFIND (``schedule-inbox`` resource type, no members) and names the calendar
  invitations accepted in the webmail go to as its ``schedule-default-calendar-URL`` (§9.2),
  which a PROPPATCH changes to another of the account's calendars (kept in its settings;
  §4.3 lets a client choose) and a DELETE does not remove (§4.3's MUST, :mod:`.caldav`).
- **The outbox** answers PROPFIND (``schedule-outbox``) and POST of a VFREEBUSY request
  (§5; RFC 5546 §3.3.2) from one of the caller's identities (else 403 ``valid-organizer``):
  200 with a ``schedule-response`` holding, per ATTENDEE, a request status and, for a local
  account (in any hosted domain; by its address, or an alias or plus-address reaching it
  alone: :func:`_calendar_user`), its busy time over all its calendars as a METHOD:REPLY
  VFREEBUSY (RFC 5546 §3.3.3; each calendar's floating times in its ``calendar-timezone``);
  any other address is ``3.7`` (RFC 5546 §3.6: invalid calendar user): nothing is asked
  of another server. At most ``[web] max_recipients`` attendees (403 ``max-recipients``).
- Any authenticated account may ask for any local account's busy time (periods only, never
  what the events are), as a shared server's users can in other CalDAV servers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit
from xml.etree.ElementTree import Element

from starlette.requests import Request
from starlette.responses import Response

from pillarbox import caldavxml, davxml, ical
from pillarbox.auth.directory import normalize_username
from pillarbox.blocking import run_blocking
from pillarbox.calendars import default_calendar
from pillarbox.davxml import CALDAV, DAV, element, tag
from pillarbox.identities import identities_of
from pillarbox.mail.address import parse_address
from pillarbox.observability.log import Log
from pillarbox.queue.routing import PLUS_DELIMITER
from pillarbox.services import Services
from pillarbox.store.types import Account, Calendar
from pillarbox.web.app import BodyTooLarge, web
from pillarbox.web.caldav import CALENDAR_TYPE, account_calendars, calendar_href
from pillarbox.web.webdav import (
    FINITE_DEPTH,
    ROOT,
    Resource,
    Target,
    answer,
    collection,
    common,
    depth,
    href_prop,
    not_allowed,
    privileges,
    props,
    read,
    read_xml,
    xml,
)

_log = Log("web.scheduleboxes")

#: The path segment below ``/dav/`` of the inboxes and outboxes.
SECTION = "scheduling"
INBOX = "inbox"
OUTBOX = "outbox"
#: RFC 5546 §3.6 request statuses of a free-busy answer.
SUCCESS = "2.0;Success"
UNKNOWN_USER = "3.7;Invalid calendar user"
TOO_MANY_INSTANCES = "5.1;Service unavailable"


def box_href(address: str, box: str) -> str:
    return f"{ROOT}{SECTION}/{quote(address, safe='@')}/{box}/"


def target(path: str) -> Target | None:
    """The box a decoded path below ``/dav/scheduling/`` names ("inbox" or "outbox")."""
    address, _, box = path.removesuffix("/").partition("/")
    return Target(box, address) if address and box in (INBOX, OUTBOX) else None


def _condition(name: str) -> bytes:
    return davxml.error(element(tag(CALDAV, name)))


async def _inbox(request: Request, account: Account) -> Resource:
    calendars = await account_calendars(request, account)
    chosen = await default_calendar(web(request).services, account, calendars)
    default = calendar_href(account.address, chosen)
    return Resource(
        box_href(account.address, INBOX),
        props(
            collection(element(tag(CALDAV, "schedule-inbox"))),  # RFC 6638 §2.2
            element(tag(DAV, "displayname"), "Inbox"),
            href_prop(tag(CALDAV, "schedule-default-calendar-URL"), default),  # §9.2
            privileges("read"),
            *common(account.address),
        ),
    )


def _outbox(address: str) -> Resource:
    # RFC 6638 §6.1.2: schedule-send (of which free-busy lookups are all it takes here).
    sending = element(
        tag(DAV, "current-user-privilege-set"),
        None,
        *(
            element(tag(DAV, "privilege"), None, element(name))
            for name in (tag(DAV, "read"), tag(CALDAV, "schedule-send"))
        ),
    )
    return Resource(
        box_href(address, OUTBOX),
        props(
            collection(element(tag(CALDAV, "schedule-outbox"))),  # RFC 6638 §2.1
            element(tag(DAV, "displayname"), "Outbox"),
            sending,
            *common(address),
        ),
    )


async def handle(request: Request, account: Account, found: Target) -> Response:
    """A request on the caller's inbox or outbox."""
    if request.method == "PROPFIND":
        asked = davxml.propfind(await read_xml(request))
        if depth(request) is None:
            return xml(FINITE_DEPTH, 403)  # RFC 4918 §9.1
        resource = (
            await _inbox(request, account) if found.kind == INBOX else _outbox(account.address)
        )
        # No members at any depth: invitations arrive as mail.
        return xml(davxml.multistatus([answer(resource, asked)]))
    if request.method == "POST" and found.kind == OUTBOX:
        return await _free_busy(request, account)
    if request.method == "PROPPATCH" and found.kind == INBOX:
        return await _proppatch_inbox(request, account)
    return not_allowed(
        "OPTIONS, PROPFIND, POST" if found.kind == OUTBOX else "OPTIONS, PROPFIND, PROPPATCH"
    )


_DEFAULT_URL = tag(CALDAV, "schedule-default-calendar-URL")


async def _proppatch_inbox(request: Request, account: Account) -> Response:
    """RFC 4918 §9.2 on the inbox, all or none: ``schedule-default-calendar-URL`` (RFC 6638
    §9.2) set to one of the account's calendars makes that the default (§4.3: where the
    webmail's Accept stores an invitation, and the calendar a DELETE is refused), kept in
    the account's settings. Any other property, and removing that one (the inbox always
    names a default, §4.3), is refused: 403, the rest 424. A href that is not one of the
    account's calendars: 403 ``valid-schedule-default-calendar-URL``."""
    update = caldavxml.property_update(await read_xml(request), tag(DAV, "propertyupdate"))
    names = [*update.set, *update.remove]
    if not names:
        raise davxml.BadRequestBody("a propertyupdate sets or removes a property")
    href = box_href(account.address, INBOX)
    refused = [n for n in update.set if n != _DEFAULT_URL] + list(update.remove)
    if refused:
        done = [_DEFAULT_URL] if _DEFAULT_URL in update.set and _DEFAULT_URL not in refused else []
        others = [(403, refused), (424, done)] if done else [(403, refused)]
        _log.info("inbox properties not changed", account=account.address, properties=refused)
        return xml(davxml.multistatus([davxml.Found(href, others=others)]))
    asked = update.set[_DEFAULT_URL].findtext(tag(DAV, "href")) or ""
    name = _calendar_at(account, asked, await account_calendars(request, account))
    if name is None:
        # RFC 6638 §9.2's precondition (as Apple's Calendar Server, Cyrus and Xandikos name
        # it): the href must be a calendar collection of the inbox's owner.
        _log.info("default calendar not changed", account=account.address, href=asked)
        return xml(_condition("valid-schedule-default-calendar-URL"), 403)
    store = web(request).services.store
    settings = await store.get_settings(account.id)
    await store.set_settings(account.id, replace(settings, default_calendar=name))
    _log.info("default calendar changed", account=account.address, calendar=name)
    return xml(davxml.multistatus([davxml.Found(href, [element(_DEFAULT_URL)])]))


def _calendar_at(account: Account, href: str, calendars: Sequence[Calendar]) -> str | None:
    """The name of the account's calendar ``href`` (a path or a full URL, RFC 4918 §8.3)
    names; None for anything else (another account's, an object, the inbox)."""
    path = unquote(urlsplit(href.strip()).path).rstrip("/")
    return next(
        (
            c.name
            for c in calendars
            if unquote(calendar_href(account.address, c.name)).rstrip("/") == path
        ),
        None,
    )


async def _free_busy(request: Request, account: Account) -> Response:
    """RFC 6638 §5: the attendees' busy time, each with its request status."""
    app = web(request)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != CALENDAR_TYPE:
        return xml(_condition("supported-calendar-data"), 403)
    try:
        data = await read(request, app.services.config.calendars.max_object_bytes)
        asked = await run_blocking(ical.freebusy_request, data)
    except BodyTooLarge:
        return xml(_condition("max-resource-size"), 403)
    except ical.InvalidObject as exc:
        _log.info("free-busy request refused", account=account.address, reason=str(exc))
        condition = (
            exc.condition if exc.condition == "valid-scheduling-message" else "valid-calendar-data"
        )
        return xml(_condition(condition), 403)
    known = {i.address.lower() for i in await identities_of(app.services, account)}
    if _address(asked.organizer) not in known:
        # RFC 6638 §5: the ORGANIZER must be the outbox's owner, CALDAV:valid-organizer (the
        # drafts' organizer-allowed, which Apple's server still answers).
        return xml(_condition("valid-organizer"), 403)
    if len(asked.attendees) > app.limits.max_recipients:
        return xml(_condition("max-recipients"), 403)
    now = datetime.now(UTC)
    answers = [await _answer(app.services, asked, attendee, now) for attendee in asked.attendees]
    _log.info("free-busy answered", account=account.address, attendees=len(answers))
    root = element(tag(CALDAV, "schedule-response"), None, *answers)
    return Response(davxml.document(root), media_type="application/xml; charset=utf-8")


def _address(calendar_user: str) -> str:
    """A ``mailto:`` calendar user address as a lowercased bare address ("" for another
    scheme)."""
    scheme, _, rest = calendar_user.partition(":")
    return rest.strip().lower() if scheme.lower() == "mailto" else ""


async def _answer(
    services: Services, asked: ical.FreeBusyRequest, attendee: str, now: datetime
) -> Element:
    """One ``CALDAV:response`` of the ``schedule-response``: ``attendee``'s request status and,
    for a local account, its busy time."""
    status, reply = UNKNOWN_USER, None
    found = await _calendar_user(services, _address(attendee))
    if found is not None:
        held = await _busy_sources(services, found, asked)
        try:
            reply = await run_blocking(
                ical.freebusy_reply, asked, attendee, held, now,
                services.config.calendars.max_instances,
            )  # fmt: skip
            status = SUCCESS
        except ical.TooManyInstances:
            status = TOO_MANY_INSTANCES
    parts = [
        element(tag(CALDAV, "recipient"), None, element(tag(DAV, "href"), attendee)),
        element(tag(CALDAV, "request-status"), status),
    ]
    if reply is not None:
        parts.append(element(tag(CALDAV, "calendar-data"), reply))
    return element(tag(CALDAV, "response"), None, *parts)


async def _calendar_user(services: Services, address: str) -> Account | None:
    """The one local account ``address`` names, in any hosted domain: its own address, or
    an alias or a plus-address that reaches that account alone (as the account may send as
    such an alias, :meth:`Router.owned_addresses`). None for anyone else: an alias that
    reaches several accounts or another server (a list is no calendar user), and an address
    only a catch-all takes (a typo would otherwise show the catch-all owner's time)."""
    username = normalize_username(address)
    if username is None:
        return None
    local, _, domain = username.rpartition("@")
    base = f"{local.partition(PLUS_DELIMITER)[0]}@{domain}"
    for key in dict.fromkeys((username, base)):
        account = await services.store.get_account(key)
        if account is not None:
            return account
        alias = await services.store.get_alias(key)
        if alias is not None:
            reached = await services.router.resolve(parse_address(alias.address))
            if reached.remote or len(reached.local) != 1:
                return None
            return reached.local[0].account
    return None


async def _busy_sources(
    services: Services, account: Account, asked: ical.FreeBusyRequest
) -> Sequence[tuple[Sequence[bytes], str]]:
    """Each of the account's calendars' objects in the asked range (by their stored bounds)
    and its ``calendar-timezone``."""
    held = []
    for calendar in await services.store.list_calendars(account.id):
        objects = await services.store.calendar_objects(
            account.id, calendar.name, start=asked.start, end=asked.end
        )
        held.append(([o.data for o in objects], calendar.timezone))
    return held
