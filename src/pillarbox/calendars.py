"""An account's calendars and their objects as the store is to keep them, whoever writes them:
CalDAV (:mod:`pillarbox.web.caldav`), the Calendar page and invitations, the JSON API, and an
.ics import (:mod:`pillarbox.transfer.ics`: the web's, and ``pillarbox import ics``, which
loads no web code). The store checks none of this; how a refusal is answered is the caller's.

Implementation notes:

- **The default calendar**: an account without calendars is given one, ``personal``
  ("Calendar"), when they are first listed (:func:`calendars_of`); the default (RFC 6638
  §4.3, :func:`default_calendar`) is the one a client chose, else ``personal``.
- **Names** (:data:`NAME`): a path segment every client can write, a calendar's
  (:func:`new_calendar`, as MKCALENDAR makes one: RFC 4791 §5.3.1) and a new object's
  (:func:`object_name`: ``<UID>.ics`` when that is one).
- **Objects are stored as a PUT stores them** (:func:`save_object`, :func:`move_object`):
  one UID per calendar (RFC 4791 §4.1, :class:`UidTaken`); an organizer's reschedule resets
  the attendees' answers (RFC 6638 §3.2.8) unless the writer says what they are (an
  import); the Schedule-Tag (RFC 6638 §3.2.10, :func:`schedule_tag`) changes with the
  organizer's changes, not with answers; a conditional write (RFC 9110 §13.1) is checked by
  the store in the write's transaction. Nothing here sends: implicit scheduling is the
  web's (:func:`pillarbox.web.scheduling.schedule_write`).
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from pillarbox import ical, identities
from pillarbox.blocking import run_blocking
from pillarbox.errors import AlreadyExists, InvalidName, NotFound
from pillarbox.services import Services
from pillarbox.store.types import Account, Calendar, CalendarObject, new_schedule_tag

DEFAULT = "personal"
DEFAULT_NAME = "Calendar"
#: What a calendar's or an object's name may be: a path segment every client can write.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+=~-]{0,254}")
MAX_DISPLAY_NAME = 200


async def default_calendar(
    services: Services, account: Account, calendars: Sequence[Calendar]
) -> str:
    """The account's default calendar (RFC 6638 §4.3; the inbox's
    ``schedule-default-calendar-URL``, §9.2) among its ``calendars``: where a new event of
    the Calendar page or an accepted invitation goes, and the one calendar that cannot be
    deleted. The one a client chose (a PROPPATCH of the inbox, kept in the account's
    settings) while it exists; else ``personal``, or (an account whose ``personal`` was
    deleted before that was refused) the first."""
    names = [c.name for c in calendars]
    chosen = (await services.store.get_settings(account.id)).default_calendar
    if chosen in names:
        return chosen
    return DEFAULT if DEFAULT in names or not names else names[0]


async def calendars_of(services: Services, account: Account) -> list[Calendar]:
    """The account's calendars; an account with none is given the default one first (every
    listing shows one: a client's first request, the Calendar page, ``pillarbox import ics``)."""
    found = await services.store.list_calendars(account.id)
    if found:
        return found
    with contextlib.suppress(AlreadyExists):  # made by a request beside this one
        await new_calendar(services, account, Calendar(name=DEFAULT, display_name=DEFAULT_NAME))
    return await services.store.list_calendars(account.id)


#: Why a calendar's name (:data:`NAME`) is refused.
NAME_RULE = "a calendar's name is letters, digits and ._@+=~- (up to 255)"


async def new_calendar(services: Services, account: Account, calendar: Calendar) -> Calendar:
    """Add ``calendar`` to the account's, as MKCALENDAR does (RFC 4791 §5.3.1; also the
    default one, an .ics import into a new calendar): ``InvalidName`` for a name that is not
    :data:`NAME`, ``AlreadyExists`` for one the account has, ``TooManyEntries`` past
    ``[calendars] max_per_account``. Its properties are the caller's to check."""
    if not NAME.fullmatch(calendar.name):
        raise InvalidName(NAME_RULE)
    return await services.store.create_calendar(
        account.id,
        calendar,
        now=datetime.now(UTC),
        limit=services.config.calendars.max_per_account,
    )


def object_name(uid: str) -> str:
    """The resource name of a new object: ``<UID>.ics`` when that is a safe path segment (what
    most clients choose), else a random one."""
    name = f"{uid}.ics"
    return name if NAME.fullmatch(name) else f"{uuid.uuid4()}.ics"


class UidTaken(AlreadyExists):
    """RFC 4791 §4.1: another object of the calendar has the UID; ``holder`` is its name (None
    when a write beside this one took the UID between the check and the save)."""

    def __init__(self, holder: str | None) -> None:
        super().__init__("another event of the calendar has the same UID")
        self.holder = holder


async def save_object(
    services: Services,
    account: Account,
    calendar: str,
    name: str,
    data: bytes,
    info: ical.ObjectInfo,
    previous: CalendarObject | None,
    *,
    reply: bool = False,
    as_given: bool = False,
    conditional: bool = False,
) -> CalendarObject:
    """Store an object ``info`` was read from as ``name`` over ``previous`` (the object of
    that name, None when new), as a PUT stores it, for the web's Calendar page and
    invitations too (``reply``: the server applying an attendee's REPLY, see
    :func:`schedule_tag`; ``as_given``: an import, whose file says what the answers are, so
    a new time resets none): :class:`UidTaken` when another object holds its UID,
    ``TooManyEntries`` past ``[calendars] max_objects``. ``conditional``: only over
    ``previous`` as it was read (its ETag; no object of the name when None), checked by the
    store in the write's transaction, else ``PreconditionFailed`` and nothing written — a
    write beside this one is never overwritten unseen."""
    store = services.store
    if not reply and not as_given:
        data = await _answers_reset(services, account, previous, data, info)
    tag = await schedule_tag(services, account, previous, data, reply=reply)
    try:
        return await store.save_calendar_object(
            account.id,
            calendar,
            _stored(name, data, info, tag),
            now=datetime.now(UTC),
            limit=services.config.calendars.max_objects,
            if_match=previous.etag if conditional and previous is not None else None,
            if_none_match=conditional and previous is None,
        )
    except AlreadyExists:
        # The store refuses another object's UID (RFC 4791 §4.1): only then is its holder
        # looked up, to be named (a write is one read fewer).
        await check_uid_free(services, account.id, calendar, info.uid, (name,))
        raise UidTaken(None) from None


async def move_object(
    services: Services, account: Account, calendar: str, previous: CalendarObject,
    target: str, data: bytes, info: ical.ObjectInfo,
) -> CalendarObject:  # fmt: skip
    """Move the object ``previous`` of ``calendar`` (now ``data``, which ``info`` was read from) to
    the account's calendar ``target`` (the web's Calendar page): a tombstone in ``calendar``,
    the object in ``target`` under the same name unless ``target`` has one of that name (then
    a new one), all or nothing (:meth:`Store.move_calendar_object`). :class:`UidTaken` when
    ``target`` already holds its UID (RFC 4791 §5.3.2.1 ``no-uid-conflict``),
    ``TooManyEntries`` past ``[calendars] max_objects``."""
    store = services.store
    name = previous.name
    await check_uid_free(services, account.id, target, info.uid, ())
    try:
        await store.calendar_object(account.id, target, name)
    except NotFound:
        moved = name
    else:
        moved = f"{uuid.uuid4()}.ics"  # another object's name there: never replace it
    data = await _answers_reset(services, account, previous, data, info)
    tag = await schedule_tag(services, account, previous, data)
    try:
        return await store.move_calendar_object(
            account.id,
            calendar,
            name,
            target,
            _stored(moved, data, info, tag),
            now=datetime.now(UTC),
            limit=services.config.calendars.max_objects,
        )
    except AlreadyExists:
        raise UidTaken(None) from None


async def check_uid_free(
    services: Services, account_id: int, calendar: str, uid: str, spared: tuple[str, ...]
) -> None:
    """RFC 4791 §4.1: :class:`UidTaken` when an object of ``calendar`` not named in ``spared``
    (those the write replaces or removes) has ``uid``."""
    try:
        holder = await services.store.calendar_object_by_uid(account_id, calendar, uid)
    except NotFound:
        return
    if holder.name not in spared:
        raise UidTaken(holder.name)


async def _answers_reset(
    services: Services, account: Account, previous: CalendarObject | None, data: bytes,
    info: ical.ObjectInfo,
) -> bytes:  # fmt: skip
    """RFC 6638 §3.2.8: what is stored of ``data`` (``info`` read from it) written over
    ``previous``: for an event, over an event, that the account organizes, the attendees'
    answers reset to NEEDS-ACTION where the change reschedules (:func:`pillarbox.ical.
    rescheduled`) — they accepted another time; ``data`` as sent otherwise. Not for the
    server applying an attendee's REPLY (no reschedule)."""
    if previous is None or previous.component != "VEVENT" or info.component != "VEVENT":
        return data
    organizer = (await run_blocking(ical.organizer_of, data)).lower()
    known = {i.address.lower() for i in await identities.identities_of(services, account)}
    if not organizer or organizer not in known:
        return data
    return await run_blocking(ical.rescheduled, previous.data, data)


def _stored(name: str, data: bytes, info: ical.ObjectInfo, tag: str) -> CalendarObject:
    return CalendarObject(
        name=name,
        uid=info.uid,
        component=info.component,
        data=data,
        starts=info.starts,
        ends=info.ends,
        schedule_tag=tag,
    )


async def schedule_tag(
    services: Services,
    account: Account,
    previous: CalendarObject | None,
    data: bytes,
    *,
    reply: bool = False,
) -> str:
    """The Schedule-Tag of ``data`` stored over ``previous`` (None: a new object), by RFC
    6638 §3.2.10: "" for an object that is not a scheduling object resource of the account
    (§3.1: an event it organizes, or one with an ORGANIZER it attends); a new tag for every
    change the organizer makes (any write of the organizer's copy, an update of theirs
    stored in an attendee's copy); ``previous``'s tag kept when the server applies an
    attendee's REPLY to the organizer's copy (``reply``), and when a write of an attendee's
    copy changes only answers (PARTSTAT, RSVP, SCHEDULE-STATUS, the stamps:
    :func:`pillarbox.ical.scheduling_of`) — the attendee's own answer, or an organizer's
    update that only passes on another attendee's. So an attendee's client holding the tag
    (If-Schedule-Tag-Match) is refused only when the organizer changed the event."""
    scheduling = await run_blocking(ical.scheduling_of, data)
    if scheduling is None:
        return ""
    known = frozenset(i.address.lower() for i in await identities.identities_of(services, account))
    if not scheduling.owned_by(known):
        return ""
    if previous is None or not previous.schedule_tag:
        return new_schedule_tag()
    if reply:
        return previous.schedule_tag
    if scheduling.organizer.lower() not in known:
        before = await run_blocking(ical.scheduling_of, previous.data)
        if before is not None and before.organized == scheduling.organized:
            return previous.schedule_tag
    return new_schedule_tag()
