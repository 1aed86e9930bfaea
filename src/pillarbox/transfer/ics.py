""".ics files into and out of an account's calendars: the Calendar page's "Import .ics" form
and Export link, the API's ``/calendars/{name}/import`` and ``/export`` (their HTTP side:
:mod:`pillarbox.web.calendarimport`), ``pillarbox import ics`` and ``pillarbox export --ics``
(:mod:`pillarbox.transfer.davfiles`) — one path for all, which loads no web code.

Implementation notes:

- **Cut and checked** by :func:`pillarbox.calendarfile.cut` and ``checked`` (one object per
  UID, each read by :func:`pillarbox.ical.read_object` as a CalDAV PUT is), off the event
  loop for a large file; ``[calendars] max_import_bytes`` bounds the file (checked by the
  caller before it is read whole: the web answers 413, the CLI refuses the file),
  ``max_object_bytes`` each object, ``max_objects`` how many one file brings and how many
  the calendar holds.
- **Into a new calendar** when the caller says so (``create``): one the account lacks is
  made as MKCALENDAR makes one (:func:`pillarbox.calendars.new_calendar`: the name rules,
  ``max_per_account``), after the file is found to be iCalendar text (a wrong file makes
  no calendar), titled as the user typed it, else as the file titles its calendar
  (X-WR-CALNAME, what Google, Apple and Thunderbird export), else by its name.
- **Stored as a PUT stores** (:func:`pillarbox.calendars.save_object`): an object whose UID
  the calendar holds replaces that one, under its name (RFC 4791 §4.1: one UID per
  calendar); a new one is ``<UID>.ics`` (a random name when that is not a safe segment or is
  taken).
- **What is stored as the file has it is left alone** — no new ETag, nothing for a phone to
  fetch, no sync token raised — so running the same import again, or importing the
  calendar's own export, changes nothing. Told from one listing of the calendar
  (:meth:`.Store.calendar_members`: each object's name, UID and ETag, no bytes): an object
  whose bytes' ETag is its UID's is stored byte for byte; the stored objects of the file's
  other known UIDs are read in batches of :data:`LOOKUP_BATCH` and compared for content
  (:func:`pillarbox.calendarfile.same_content`: an export writes its own PRODID and one
  definition of each zone). Neither kind is checked again. What is then written needs no
  lookup: whether a UID is new, the name to replace and a free name come from that listing.
  A first import of 200 events did 600 lookups before the 200 writes (by UID twice, by name
  once); none now.
- **Written as planned or not at all**: the listing is :func:`planned`, the writes
  :func:`written`, and a client writes beside both. So each write is conditional, checked
  by the store in the write's transaction (RFC 9110 §13.1, as a CalDAV PUT's If-None-Match
  and If-Match): a new object only where the listing found the name free, a replacement
  only over the object as it was read. An object a client made meanwhile under
  ``<UID>.ics`` of a UID of the file (holding another UID), or changed meanwhile, is left
  as the client wrote it, and the import's object counted skipped with why; one of a UID
  the import then writes under another name is refused as any PUT's would be (RFC 4791
  §4.1), counted the same. Never a silent overwrite: running the import again stores what
  was skipped beside (a name taken is not reused) or over what is then listed.
- **Stored as the file has it**: a changed time does not reset the attendees' answers as
  an organizer's PUT does (RFC 6638 §3.2.8): the file says what they are, and a second run
  of it then finds every object as the file has it.
- **Nothing is sent**: an export holds events with ATTENDEEs, organized by the user or by
  others, that were sent (or answered) long ago. Implicit scheduling (RFC 6638 §3.2,
  :func:`pillarbox.web.scheduling.schedule_write`) runs after a PUT or a save in the
  Calendar page's form; never here.
- **A refusal stops nothing but that object**: the calendar full (``max_objects``) skips
  the rest, each counted, with the reason.
- **The export streams**: the objects are read :data:`EXPORT_PAGE` at a time and written
  out as read (each VTIMEZONE once, before the first object naming it), so its memory is
  one page's whatever the calendar's size: 0.3 MiB at most allocated for 20,000 events
  where holding them all took 36 MiB. A calendar deleted while it streams cannot be
  answered with an error (the status went with the first page): the download is broken
  off (:class:`pillarbox.errors.BrokenOff`, logged at INFO), never ended as if whole;
  ``pillarbox export --ics`` then writes no file.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace

from pillarbox import calendarfile
from pillarbox.blocking import run_blocking
from pillarbox.calendars import (
    DEFAULT,
    DEFAULT_NAME,
    MAX_DISPLAY_NAME,
    UidTaken,
    calendars_of,
    new_calendar,
    object_name,
    save_object,
)
from pillarbox.errors import (
    AlreadyExists,
    BrokenOff,
    NotFound,
    PreconditionFailed,
    TooManyEntries,
    UserError,
)
from pillarbox.observability.log import Log
from pillarbox.services import Services
from pillarbox.store.types import Account, Calendar, CalendarObject, data_etag
from pillarbox.transfer.imported import Imported

# Named as when this was the web's: the name operators' log filters know.
_log = Log("web.calendarimport")


#: UIDs looked up in one store read (:meth:`.Store.calendar_objects`' ``uids``).
LOOKUP_BATCH = 500


async def import_ics(
    services: Services,
    account: Account,
    calendar: str,
    data: bytes,
    *,
    create: bool = False,
    display_name: str = "",
) -> Imported:
    """Store the events and to-dos of an .ics file in the account's ``calendar`` (see the
    notes): :func:`planned`, then :func:`written`."""
    plan = await planned(
        services, account, calendar, data, create=create, display_name=display_name
    )
    return await written(services, account, plan)


@dataclass(frozen=True, slots=True)
class Plan:
    """What an import is to write, decided from one listing of the calendar: each object
    with the one of its UID it replaces (None: new, under ``name``), and what the file
    holds as stored already or could not give."""

    calendar: str
    writes: tuple[tuple[calendarfile.Piece, str, CalendarObject | None], ...]
    unchanged: int
    skipped: int
    reasons: tuple[str, ...]


async def planned(
    services: Services,
    account: Account,
    calendar: str,
    data: bytes,
    *,
    create: bool = False,
    display_name: str = "",
) -> Plan:
    """The first step of :func:`import_ics`: the file (within ``[calendars]
    max_import_bytes``, the caller's check) cut and checked against the calendar as it is
    listed now; ``UserError`` for a file that is no iCalendar text, ``NotFound`` (a
    ``UserError`` too) for a calendar the account does not have. With ``create``, a calendar
    the account lacks is made, once the file is found to be iCalendar text (:func:`_made`)."""
    limits = services.config.calendars
    exists = calendar in {c.name for c in await calendars_of(services, account)}
    if not exists and not create:
        raise NotFound(f"no calendar named {calendar!r}")
    try:
        members = await services.store.calendar_members(account.id, calendar) if exists else []
        etags = {m.uid: m.etag for m in members}
        try:
            found, as_stored = await run_blocking(
                _cut, data, limits.max_object_bytes, etags
            )  # fmt: skip
        except calendarfile.NotCalendar as exc:
            raise UserError(str(exc)) from None
        if not exists:
            await _made(services, account, calendar, display_name or found.name)
        # The objects of the file's other UIDs the calendar holds: read in a few batches,
        # each compared for content and, when that changed, written over.
        differing = [p.uid for p in found.pieces if p.uid in etags and p.uid not in as_stored]
        previous: dict[str, CalendarObject] = {}
        for start in range(0, len(differing), LOOKUP_BATCH):
            batch = differing[start : start + LOOKUP_BATCH]
            for obj in await services.store.calendar_objects(account.id, calendar, uids=batch):
                previous[obj.uid] = obj
    except NotFound:  # deleted since
        raise NotFound(f"no calendar named {calendar!r}") from None

    def unchanged(piece: calendarfile.Uncut) -> bool:
        if piece.uid in as_stored:
            return True
        held = previous.get(piece.uid)
        return held is not None and calendarfile.same_content(held.data, piece.data)

    # Every object is parsed and its recurrences expanded (as a PUT's): off the loop at any
    # size, as caldav's reads are. Not those stored as they are.
    cut = await run_blocking(
        calendarfile.checked,
        found,
        max_objects=limits.max_objects,
        max_instances=limits.max_instances,
        unchanged=unchanged,
    )
    names = {m.name for m in members}
    writes: list[tuple[calendarfile.Piece, str, CalendarObject | None]] = []
    for piece in cut.objects:
        before = previous.get(piece.info.uid)
        name = before.name if before is not None else _free_name(piece.info.uid, names)
        names.add(name)
        writes.append((piece, name, before))
    return Plan(calendar, tuple(writes), cut.unchanged, cut.skipped, cut.reasons)


async def written(services: Services, account: Account, plan: Plan) -> Imported:
    """The second step of :func:`import_ics`: each object of ``plan`` stored, as the plan
    saw the calendar or not at all (the store's conditional write): an object a client
    wrote meanwhile under the name, or over the object replaced, is left as it is and the
    import's counted skipped, with why (a run of the same file again stores it beside)."""
    calendar = plan.calendar
    stored, conflicts, skipped, reasons = 0, 0, plan.skipped, list(plan.reasons)
    for index, (piece, name, before) in enumerate(plan.writes):
        uid = piece.info.uid
        try:
            await save_object(
                services, account, calendar, name, piece.data, piece.info, before,
                as_given=True, conditional=True,
            )  # fmt: skip
        except UidTaken:  # a client's PUT of the same UID beside this import
            skipped += 1
            reasons.append(f"{piece.info.component} {uid[:80]}: written meanwhile by a client")
            continue
        except PreconditionFailed:
            conflicts += 1
            reasons.append(
                f"{piece.info.component} {uid[:80]}: {name[:80]} was written meanwhile by a "
                "client; not overwritten"
            )
            continue
        except TooManyEntries as exc:
            late = len(plan.writes) - index
            skipped += late
            reasons.append(f"{late} event(s) not stored: {exc}")
            break
        except NotFound:
            raise NotFound(f"no calendar named {calendar!r}") from None
        stored += 1
    done = Imported(stored, plan.unchanged, skipped + conflicts, tuple(reasons))
    _log.info(
        "calendar imported",
        account=account.address,
        calendar=calendar,
        stored=stored,
        unchanged=plan.unchanged,
        skipped=skipped,
        conflicts=conflicts,
        reasons="; ".join(reasons[:5]),
    )
    return done


async def _made(services: Services, account: Account, name: str, title: str) -> None:
    """The calendar ``name`` made for an import as MKCALENDAR makes one
    (:func:`pillarbox.calendars.new_calendar`: its name rules, ``InvalidName``, and
    ``max_per_account``, ``TooManyEntries``), its display name ``title`` (what the user
    typed, or the file's X-WR-CALNAME) up to :data:`pillarbox.calendars.MAX_DISPLAY_NAME`
    characters, else ``name``. One
    made beside this import (a client's MKCALENDAR) is imported into."""
    made = Calendar(name=name, display_name=title[:MAX_DISPLAY_NAME].strip() or name)
    with contextlib.suppress(AlreadyExists):
        await new_calendar(services, account, made)
        _log.info("calendar made for an import", account=account.address, calendar=name)


def _cut(
    data: bytes, max_object_bytes: int, etags: Mapping[str, str]
) -> tuple[calendarfile.Cut, set[str]]:
    """The file's objects (:func:`pillarbox.calendarfile.cut`), and the UIDs of those stored
    byte for byte: their bytes' ETag is the one ``etags`` (by UID) lists."""
    found = calendarfile.cut(data, max_object_bytes=max_object_bytes)
    same = {p.uid for p in found.pieces if p.uid in etags and etags[p.uid] == data_etag(p.data)}
    return found, same


def _free_name(uid: str, names: set[str]) -> str:
    """``<UID>.ics``, or a random name when that is not a safe segment or another object
    (of another UID) has it among ``names`` (the listing's, and those this import wrote):
    an import does not replace an object by its name."""
    name = object_name(uid)
    return name if name not in names else f"{uuid.uuid4()}.ics"


#: Objects read from the store at once for an export (their bytes at most this many times
#: ``[calendars] max_object_bytes`` in memory; a page is some 250 KB in a usual calendar).
EXPORT_PAGE = 100


async def export_ics(services: Services, account: Account, calendar: str) -> IcsExport:
    """Every object of the account's ``calendar`` as one .ics file (each VTIMEZONE once),
    written as it is read (:meth:`IcsExport.chunks`). ``NotFound`` (at once) for a calendar
    it does not have. Reading makes nothing: the default calendar of an account without
    calendars, which every listing shows (and makes), is exported empty and not made here."""
    stored = await services.store.list_calendars(account.id)
    found = {c.name: c for c in stored}
    if calendar in found:
        return IcsExport.of(services, account, found[calendar])
    if calendar == DEFAULT and not stored:
        default = Calendar(name=DEFAULT, display_name=DEFAULT_NAME)
        return replace(IcsExport.of(services, account, default), stored=False)
    raise NotFound(f"no calendar named {calendar!r}")


@dataclass(slots=True)
class IcsExport:
    """The file of :func:`export_ics` as it is written (the web's download, ``pillarbox
    export --ics``), and how many objects it holds so far."""

    services: Services
    account: Account
    calendar: str
    title: str
    objects: int = 0
    #: False for the default calendar not made yet (:func:`export_ics`): it holds nothing.
    stored: bool = True

    @classmethod
    def of(cls, services: Services, account: Account, calendar: Calendar) -> IcsExport:
        """The export of ``calendar``, titled with its display name (else its name)."""
        return cls(services, account, calendar.name, calendar.display_name or calendar.name)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file, :data:`EXPORT_PAGE` objects at a time, so a calendar of any size takes
        the memory of one page. Not one snapshot: each page is read on its own, so an event
        changed during the export is in it as it was or as it is (once: pages follow the
        names). A calendar deleted meanwhile ends it with :class:`pillarbox.errors.BrokenOff`
        after the pages read, logged: the file must not look whole (its END:VCALENDAR
        never comes), and a download's status is sent already."""
        store, account, calendar = self.services.store, self.account, self.calendar
        yield calendarfile.joined_head(self.title)
        zones: set[str] = set()
        after = ""
        while self.stored:
            try:
                page = await store.calendar_objects(
                    account.id, calendar, after=after, limit=EXPORT_PAGE
                )
            except NotFound:
                _log.info(
                    "calendar export broken off: the calendar was deleted",
                    account=account.address,
                    calendar=calendar,
                    objects=self.objects,
                )
                raise BrokenOff(
                    f"the calendar {calendar!r} was deleted during its export"
                ) from None
            if page:
                # Each object is parsed for its components: off the loop, as the import's cut.
                yield await run_blocking(
                    calendarfile.joined_components, [o.data for o in page], zones
                )
                self.objects += len(page)
            if len(page) < EXPORT_PAGE:
                break
            after = page[-1].name
        yield calendarfile.JOINED_END
