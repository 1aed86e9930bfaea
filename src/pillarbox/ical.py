"""iCalendar objects (RFC 5545) as CalDAV keeps and queries them (RFC 4791 §4.1, §9.7, §9.9).

Implementation notes:

- **Parsed by ``icalendar``, recurrences expanded by ``recurring-ical-events``** (RRULE, RDATE,
  EXDATE, overridden instances by RECURRENCE-ID): well-kept libraries, not a hand-written
  RRULE engine. Both are pure Python and slow on big or many-instance objects, so callers run
  every function here off the event loop (:func:`pillarbox.blocking.run_blocking`), on
  objects no bigger than ``[calendars] max_object_bytes``.
- **Checked on PUT** (:func:`read_object`): UTF-8, parseable, no property the parser could not
  read, no component ending before it starts (``valid-calendar-data``); one VCALENDAR, no
  METHOD, components (besides VTIMEZONE) of one type sharing one UID
  (``valid-calendar-object-resource``); that type VEVENT or VTODO
  (``supported-calendar-component``); one ORGANIZER in all its components (RFC 6638
  §3.2.4.2, ``same-organizer-in-all-components``). The object itself is kept as sent:
  nothing here rewrites it.
- **Time bounds**: the first instance's start and the last instance's end, each widened by
  :data:`SLACK` (a floating time or a date is read as UTC here, while a client may mean any
  zone), None when unbounded (an RRULE with neither COUNT nor UNTIL, more than
  ``max_instances`` instances, a to-do without dates). The store narrows a time-range query
  by them; :func:`matches` then decides exactly.
- **Floating times and dates** in a time-range test, an ``expand``, a
  ``limit-recurrence-set`` and a free-busy query are read in the calendar's
  ``calendar-timezone`` (RFC 4791 §9.9), UTC when it has none.
- **``calendar-data`` as asked** (:func:`render`, RFC 4791 §9.6): ``expand`` and
  ``limit-recurrence-set`` parse and rewrite the object (so it is no longer the bytes sent);
  ``comp``/``prop`` narrowing alone works on the stored content lines, so the lines kept are
  byte for byte the client's (folding, parameters, line ends). Expanding costs as walking
  the series from its start does: past ``max_instances`` it is :class:`TooManyInstances`.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import cast

import icalendar
import recurring_ical_events
from icalendar.parser.content_line import NEWLINE, UFOLD
from icalendar.prop import vBroken

from pillarbox.caldavxml import (
    CalendarData,
    CompFilter,
    CompSelect,
    PropFilter,
    TimeRange,
    UnsupportedFilter,
)
from pillarbox.davxml import text_matches

#: RFC 4791 §5.2.3: the component types a calendar collection takes.
COMPONENTS = ("VEVENT", "VTODO")
#: How far an object's stored bounds are widened each way (floating times, dates: UTC±14h).
SLACK = timedelta(days=1)
#: RFC 5545 §3.6.1, §3.6.2, §3.6.4 and §3.7: properties a component has at most once (the
#: ones this module and the recurrence library read; ORGANIZER or SEQUENCE twice made an
#: invitation's reading raise what the message page does not catch, found by fuzz/imip.py).
_ONCE = frozenset(
    {
        "UID", "DTSTART", "DTEND", "DUE", "DURATION", "RECURRENCE-ID", "DTSTAMP", "VERSION",
        "ORGANIZER", "SEQUENCE", "SUMMARY", "LOCATION", "STATUS", "TRANSP", "METHOD",
    }
)  # fmt: skip
#: Characters no object holds: RFC 5545 §3.1 CONTROL but for CR and LF (the line ends; bare
#: ones are read as such), and U+FFFE and U+FFFF, no characters of XML 1.0 either (§2.2), in
#: which a REPORT carries the object (RFC 4791 §9.6).
REFUSED_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
_FAR_PAST = datetime(1, 1, 2, tzinfo=UTC)
_FAR_FUTURE = datetime(9999, 12, 30, tzinfo=UTC)


class InvalidObject(Exception):
    """A PUT object fails an RFC 4791 §5.3.2.1 (or RFC 6638 §3.2.4) precondition, named by
    ``condition``."""

    def __init__(self, condition: str, reason: str) -> None:
        super().__init__(reason)
        self.condition = condition


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What the store keeps beside an object: its UID, component type and time bounds."""

    uid: str
    component: str
    starts: datetime | None
    ends: datetime | None


def _calendar(data: bytes) -> icalendar.Calendar:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidObject("valid-calendar-data", "not UTF-8 text") from None
    refused = REFUSED_CHARACTERS.search(text)
    if refused is not None:
        # NUL is one a store cannot keep (PostgreSQL's text refuses it, and the UID is text);
        # none can stand in an XML document: a REPORT's calendar-data holding one was a body
        # no client could read.
        raise InvalidObject("valid-calendar-data", f"the character {refused[0]!r}")
    unmatched = _unmatched_end(text)
    if unmatched is not None:
        raise InvalidObject("valid-calendar-data", unmatched)
    try:
        calendars = icalendar.Calendar.from_ical(text, multiple=True)
    except Exception as exc:
        # The parser fails on malformed input with more than ValueError (AttributeError,
        # TypeError on a repeated TZID, found by fuzz/ical.py): all of it is bad data.
        raise InvalidObject("valid-calendar-data", str(exc)[:200]) from None
    if len(calendars) != 1 or calendars[0].name != "VCALENDAR":
        # RFC 4791 §4.1: one VCALENDAR per calendar object resource.
        raise InvalidObject("valid-calendar-object-resource", "expected one VCALENDAR")
    calendar: icalendar.Calendar = calendars[0]
    for component in calendar.walk():
        seen: set[str] = set()
        for name, value in component.property_items(recursive=False):
            if isinstance(value, vBroken):
                raise InvalidObject("valid-calendar-data", f"{name} cannot be read")
            if name in _ONCE and name in seen:
                raise InvalidObject("valid-calendar-data", f"{name} more than once")
            seen.add(name)
    if calendar.get("VERSION") != "2.0":
        raise InvalidObject("valid-calendar-data", "VERSION:2.0 is required (RFC 5545 §3.7.4)")
    return calendar


def _unmatched_end(text: str) -> str | None:
    """Why the components do not nest (RFC 5545 §3.4, §3.6: each ``END`` names the component
    its ``BEGIN`` opened); None when they do. The parser closes whatever is open at any END,
    reading another structure than the text's: a VTIMEZONE closed by ``END:VEVENT`` was never
    built, and written back (in a REPLY) it could not be read (found by fuzz/imip.py)."""
    opened: list[str] = []
    # The content lines as the parser cuts them (its unfolding and line ends).
    for line in NEWLINE.split(UFOLD.sub("", text)):
        if not line[:5].upper().startswith(("BEGIN", "END")):
            continue
        head, colon, value = line.partition(":")
        name = head.partition(";")[0].upper()
        if not colon:
            continue  # no content line: the parser says so
        value = value.upper()
        if name == "BEGIN":
            opened.append(value)
        elif name == "END":
            current = opened.pop() if opened else "nothing"
            if current != value:
                return f"END:{value[:40]} where {current[:40]} is open"
    return None


def check_timezone(data: bytes) -> None:
    """RFC 4791 §5.2.2: a ``calendar-timezone`` is an iCalendar object holding exactly one
    VTIMEZONE (and nothing else); :class:`InvalidObject` otherwise."""
    calendar = _calendar(data)
    if [c.name for c in calendar.subcomponents] != ["VTIMEZONE"]:
        raise InvalidObject("valid-calendar-data", "expected one VTIMEZONE")


def read_object(data: bytes, max_instances: int) -> ObjectInfo:
    """The object's UID, type and bounds; :class:`InvalidObject` when RFC 4791 §4.1 or
    §5.3.2.1 refuses it."""
    calendar = _calendar(data)
    if "METHOD" in calendar:
        # RFC 4791 §4.1: "MUST NOT specify the iCalendar METHOD property".
        raise InvalidObject("valid-calendar-object-resource", "METHOD is not allowed")
    components = [c for c in calendar.subcomponents if c.name != "VTIMEZONE"]
    kinds = {c.name for c in components}
    if len(kinds) != 1:
        # RFC 4791 §4.1: one type of component per resource (VTIMEZONE aside).
        raise InvalidObject("valid-calendar-object-resource", "expected one component type")
    (kind,) = kinds
    if kind not in COMPONENTS:
        raise InvalidObject("supported-calendar-component", f"{kind} is not supported")
    uids = {str(c.get("UID", "")) for c in components}
    if len(uids) != 1 or "" in uids:
        # RFC 4791 §4.1: every component of the resource has the same UID.
        raise InvalidObject("valid-calendar-object-resource", "expected one UID")
    (uid,) = uids
    organizers = {_address(line).lower() for c in components for line in _lines(c, "ORGANIZER")}
    if len(organizers) > 1:
        # RFC 6638 §3.2.4.2: "All the calendar components in a scheduling object resource
        # MUST contain the same "ORGANIZER" property value when present".
        raise InvalidObject("same-organizer-in-all-components", "the organizers differ")
    named = [c.decoded("RECURRENCE-ID", None) for c in components]
    if len(set(named)) != len(named):
        # RFC 5545 §3.8.4.4: the UID names one recurrence set, RECURRENCE-ID one instance of
        # it. The expansion library keeps one component of each and drops the others, while
        # the bounds and time-range checks here count them all: a dropped one starting long
        # before the series had the library walk to it in windows of years (found by
        # fuzz/ical.py: a REPORT on such an object took seconds).
        raise InvalidObject("valid-calendar-object-resource", "an instance defined twice")
    for component in components:
        backward = _ends_before_start(component)
        if backward is not None:
            raise InvalidObject("valid-calendar-data", backward)
    try:
        starts, ends = _bounds(calendar, kind, components, max_instances)
    except Exception as exc:
        # Recurrence expansion of what the parser accepted can still fail in many ways (an
        # RRULE the library cannot expand, dates out of range): the object is refused, as
        # one this server cannot answer time-range queries on.
        raise InvalidObject("valid-calendar-data", f"cannot expand: {exc}"[:200]) from None
    return ObjectInfo(uid, kind, starts, ends)


def _ends_before_start(component: icalendar.Component) -> str | None:
    """Why the component ends before it starts (RFC 5545 §3.8.2.2: DTEND "MUST be later in
    time than" DTSTART; §3.8.2.3: DUE "equal to or after" it; a DURATION below zero likewise);
    None when it does not. The recurrence library widens every query by an instance's
    duration, so a negative one has it expand the series that far ahead of each query (found
    by fuzz/ical.py: a weekly series whose DTEND was 855 years before its DTSTART made every
    time-range REPORT on it expand 44,000 instances, seconds of a worker each)."""
    start = component.decoded("DTSTART", None)
    if not isinstance(start, date):
        return None
    for name in ("DTEND", "DUE"):
        end = component.decoded(name, None)
        if isinstance(end, date) and _utc(end) < _utc(start):
            return f"{name} before DTSTART"
    duration = component.decoded("DURATION", None)
    if isinstance(duration, timedelta) and duration < timedelta(0):
        return "a negative DURATION"
    return None


def _stored(data: bytes) -> icalendar.Calendar:
    """A stored object parsed for a query. One kept before PUT refused a component ending
    before it starts (:func:`_ends_before_start`) is read without its end, as an instance of
    the default length (RFC 5545 §3.6.1), so that a query over it costs what any other
    object's does rather than seconds of expansion; the stored bytes are not changed."""
    calendar = _calendar(data)
    for component in calendar.walk():
        if component.name in ("VEVENT", "VTODO") and _ends_before_start(component) is not None:
            for name in ("DTEND", "DUE", "DURATION"):
                component.pop(name, None)
    return calendar


def _utc(value: date | datetime, zone: tzinfo = UTC) -> datetime:
    """A DATE or DATE-TIME as UTC (a date at midnight, a floating time: both in ``zone``)."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return (
        value.replace(tzinfo=zone).astimezone(UTC)
        if value.tzinfo is None
        else value.astimezone(UTC)
    )


def _span(instance: icalendar.Component, zone: tzinfo = UTC) -> tuple[datetime, datetime]:
    """An instance (as the library gives it: DTSTART and DTEND, or DUE for a to-do) in UTC."""
    start = _utc(instance.decoded("DTSTART"), zone)
    end = instance.decoded("DTEND", None) or instance.decoded("DUE", None)
    return start, start if end is None else max(start, _utc(end, zone))


def _walk(
    calendar: icalendar.Component, kind: str, start: datetime, end: datetime, zone: tzinfo
) -> Iterator[tuple[datetime, datetime, icalendar.Component]]:
    """The instances overlapping ``[start, end)`` with their spans, earliest start first, as
    the library's ``after`` gives them but walked in windows of our own. ``after`` halves
    its window, down to 15 minutes, each time the window holds an instance, and an instance
    overlapping every window (one lasting centuries) is in every one: it crossed the
    centuries 15 minutes at a time (found by fuzz/ical.py: a PUT, whose bounds were walked
    so, kept a worker for hours). Here a window doubles whenever it brings no new instance.
    A floating time is read in the zone of the time it is asked about."""
    query = recurring_ical_events.of(calendar, components=(kind,), skip_bad_series=True)
    seen: set[tuple[datetime, datetime, str]] = set()
    window, low = timedelta(days=1), start
    while low < end:
        high = end if end - low <= window else low + window
        fresh = []
        for instance in query.between(low.astimezone(zone), high.astimezone(zone)):
            begins, ends = _span(instance, zone)
            key = (begins, ends, str(instance.get("RECURRENCE-ID", "")))
            if key not in seen:
                seen.add(key)
                fresh.append((begins, ends, instance))
        fresh.sort(key=lambda found: found[0])
        yield from fresh
        if not fresh:
            window = min(window * 2, _FAR_FUTURE - _FAR_PAST)
        low = high


def _bounds(
    calendar: icalendar.Calendar,
    kind: str,
    components: Sequence[icalendar.Component],
    max_instances: int,
) -> tuple[datetime | None, datetime | None]:
    earliest = _earliest(components)
    if earliest is None:
        return None, None  # RFC 4791 §9.9: a to-do without dates is in every range
    infinite = any(
        "COUNT" not in rule and "UNTIL" not in rule for c in components for rule in _rules(c)
    )
    if infinite or _finite_instances(components, earliest) > max_instances:
        return earliest - SLACK, None
    # A finite series: its instances (about 0.2 ms each), asked for at once: as few as
    # COUNT and UNTIL allow, and no walk in windows (:func:`_walk`) to pass them.
    query = recurring_ical_events.of(calendar, components=(kind,), skip_bad_series=True)
    spans = [_span(i) for i in query.between(earliest - SLACK, _FAR_FUTURE)]
    if not spans or len(spans) > max_instances:
        return earliest - SLACK, None
    return min(earliest, *(s for s, _ in spans)) - SLACK, max(e for _, e in spans) + SLACK


def _finite_instances(components: Sequence[icalendar.Component], earliest: datetime) -> float:
    """How many instances finite rules give at most: COUNT, or as many as fit before UNTIL."""
    total = 0.0
    for component in components:
        for rule in _rules(component):
            if "COUNT" in rule:
                total += int(rule["COUNT"][0])
            else:
                total += _instances_between([component], earliest, _utc(rule["UNTIL"][0]))
    return total


def _earliest(components: Sequence[icalendar.Component], zone: tzinfo = UTC) -> datetime | None:
    """The earliest DTSTART, DUE or RDATE of the components: no instance starts before it
    (RFC 5545 §3.8.5.3: DTSTART is the series' first instance, RDATE adds others)."""
    found: list[datetime] = []
    for component in components:
        for name in ("DTSTART", "DUE"):
            if name in component:
                found.append(_utc(component.decoded(name), zone))
        rdates = component.get("RDATE")
        for listed in rdates if isinstance(rdates, list) else [rdates] if rdates else []:
            for value in listed.dts:
                moment = value.dt[0] if isinstance(value.dt, tuple) else value.dt
                found.append(_utc(moment, zone))
    return min(found, default=None)


#: RFC 5545 §3.3.10: the period of each FREQ in seconds (months and years at their shortest),
#: and the BY rules that may give several instances a period.
_PERIOD = {
    "SECONDLY": 1,
    "MINUTELY": 60,
    "HOURLY": 3600,
    "DAILY": 86400,
    "WEEKLY": 7 * 86400,
    "MONTHLY": 28 * 86400,
    "YEARLY": 365 * 86400,
}
_EXPANDING = ("BYSECOND", "BYMINUTE", "BYHOUR", "BYDAY", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO")


def _instances_between(
    components: Sequence[icalendar.Component], start: datetime, end: datetime
) -> float:
    """How many instances the components' rules may give between two times, over-estimated
    (every BY list taken as multiplying): what expanding up to ``end`` would cost."""
    total = 0.0
    seconds = max(0.0, (end - start).total_seconds())
    for component in components:
        for rule in _rules(component):
            period = _PERIOD.get(str(rule.get("FREQ", ["SECONDLY"])[0]).upper(), 1)
            interval = max(1, int(rule.get("INTERVAL", [1])[0]))
            several = math.prod(len(rule.get(name, [1])) for name in _EXPANDING)
            total += seconds / (period * interval) * several
    return total


def _rules(component: icalendar.Component) -> list[icalendar.vRecur]:
    rules = component.get("RRULE")
    if rules is None:
        return []
    return list(rules) if isinstance(rules, list) else [rules]


# -- calendar-query (RFC 4791 §9.7) ----------------------------------------------------------------


def kinds_only(query: CompFilter) -> frozenset[str] | None:
    """The component types a filter asks for when that is all it asks (a VCALENDAR filter of
    bare VEVENT or VTODO comp-filters, or none: every type), so the stored type answers it
    without parsing a single object; None when the objects must be read (:func:`select`)."""
    if query.is_not_defined or query.time_range is not None or query.props:
        return None
    names = set()
    for comp in query.comps:
        bare = not (comp.is_not_defined or comp.time_range or comp.props or comp.comps)
        if not bare or comp.name not in COMPONENTS:
            return None
        names.add(comp.name)
    if not names:
        return frozenset(COMPONENTS)
    # RFC 4791 §9.7.1: sibling comp-filters must all match; an object has one type.
    return frozenset(names) if len(names) == 1 else frozenset()


def select(
    objects: Sequence[bytes], query: CompFilter, max_instances: int, timezone: str = ""
) -> list[bool]:
    """For each stored object, whether it passes the query's filter (one call per REPORT, off
    the loop), floating times read in ``timezone`` (the calendar's ``calendar-timezone``).
    ``UnsupportedFilter`` for a filter this server does not evaluate."""
    zone = _zone(timezone)
    return [_passes(data, query, max_instances, zone) for data in objects]


def _passes(data: bytes, query: CompFilter, max_instances: int, zone: tzinfo) -> bool:
    try:
        return _comp_matches(_stored(data), query, None, max_instances, zone)
    except UnsupportedFilter:
        raise
    except Exception:
        # Every stored object was parsed and expanded on PUT; should a query's range still
        # make the library fail, the object is answered (RFC 4791 §7.8 lets a client filter
        # again) rather than failing the whole REPORT.
        return True


def _in_range(
    calendar: icalendar.Component,
    kind: str,
    wanted: TimeRange,
    max_instances: int,
    zone: tzinfo,
) -> bool:
    """RFC 4791 §9.9: whether any instance of the object overlaps ``[start, end)``."""
    components = [c for c in calendar.subcomponents if c.name == kind]
    earliest = _earliest(components, zone)
    if earliest is None:
        return True  # a to-do without dates is in every range
    if _instances_between(components, earliest, wanted.start or earliest) > max_instances:
        # Expanding that far would cost more than the limit allows (an endless series asked
        # about years after it began): answered as matching; RFC 4791 §7.8 clients filter.
        return True
    return next(_overlapping(calendar, kind, wanted, zone), None) is not None


def _overlapping(
    calendar: icalendar.Component, kind: str, wanted: TimeRange, zone: tzinfo
) -> Iterator[icalendar.Component]:
    """The instances overlapping ``[start, end)`` by RFC 4791 §9.9's rules (an instance of no
    duration when it starts in the range), earliest first."""
    components = [c for c in calendar.subcomponents if c.name == kind]
    earliest = _earliest(components, zone)
    if earliest is None:
        return
    # The walk starts where it is asked to: never from before the series starts.
    start = max(wanted.start or earliest, earliest - SLACK)
    end = wanted.end or _FAR_FUTURE
    for begins, ends, instance in _walk(calendar, kind, start, end, zone):
        if _meets(begins, ends, start, end):
            yield instance


def _meets(begins: datetime, ends: datetime, start: datetime, end: datetime) -> bool:
    """RFC 4791 §9.9: whether ``[begins, ends)`` overlaps ``[start, end)``, an instant when it
    falls in the range."""
    if begins == ends:
        return start <= begins < end
    return begins < end and ends > start


def _comp_matches(
    component: icalendar.Component,
    wanted: CompFilter,
    calendar: icalendar.Component | None,
    max_instances: int,
    zone: tzinfo,
) -> bool:
    """RFC 4791 §9.7.1 for ``component`` (the VCALENDAR at the top, then its children)."""
    if wanted.is_not_defined:
        return False
    if wanted.time_range is not None:
        if calendar is None or component.name not in COMPONENTS:
            raise UnsupportedFilter("time-range only on VEVENT and VTODO")
        if not _in_range(calendar, component.name, wanted.time_range, max_instances, zone):
            return False
    top = calendar if calendar is not None else component
    for prop in wanted.props:
        if not _prop_matches(component, prop):
            return False
    for child in wanted.comps:
        found = [c for c in component.subcomponents if c.name == child.name]
        if child.is_not_defined:
            if found:
                return False
            continue
        if not any(_comp_matches(c, child, top, max_instances, zone) for c in found):
            return False
    return True


def _prop_matches(component: icalendar.Component, wanted: PropFilter) -> bool:
    """RFC 4791 §9.7.2: present, absent, or its text matching."""
    values = component.get(wanted.name)
    present = [] if values is None else values if isinstance(values, list) else [values]
    if wanted.is_not_defined:
        return not present
    if wanted.text_match is None:
        return bool(present)
    texts = [v.to_ical().decode() if hasattr(v, "to_ical") else str(v) for v in present]
    if not texts:
        return False
    return any(text_matches(wanted.text_match, t) for t in texts)


# -- the calendar's time zone (RFC 4791 §5.2.2, §9.9) ----------------------------------------------


def _zone(timezone: str) -> tzinfo:
    """The time zone of a calendar's ``calendar-timezone`` (checked when it was set), UTC for
    none."""
    if not timezone:
        return UTC
    # The parser makes a VTIMEZONE an ``icalendar.Timezone``.
    vtimezone = cast("icalendar.Timezone", _calendar(timezone.encode()).subcomponents[0])
    try:
        found: tzinfo = vtimezone.to_tz()
    except Exception:
        # A VTIMEZONE the parser took whose rules the library cannot build: floating times
        # are then read as UTC, as for a calendar without a zone.
        return UTC
    return found


# -- calendar-data (RFC 4791 §9.6) -----------------------------------------------------------------


class TooManyInstances(Exception):
    """Answering would expand more instances of an object than ``max_instances`` allows."""


def render(
    objects: Sequence[bytes], wanted: CalendarData, max_instances: int, timezone: str = ""
) -> list[str]:
    """Each stored object's ``calendar-data`` as a REPORT asks for it (RFC 4791 §9.6: one
    call per REPORT, off the loop), floating times read in ``timezone``."""
    zone = _zone(timezone)
    return [_rendered(data, wanted, max_instances, zone) for data in objects]


def _rendered(data: bytes, wanted: CalendarData, max_instances: int, zone: tzinfo) -> str:
    text = _recurrences(data, wanted, max_instances, zone) or data.decode("utf-8")
    # §9.6.7 limit-freebusy-set narrows VFREEBUSY components, which no calendar here holds
    # (supported-calendar-component-set is VEVENT and VTODO): nothing to do.
    return text if wanted.comp is None else _narrowed(text, wanted.comp)


def _recurrences(data: bytes, wanted: CalendarData, max_instances: int, zone: tzinfo) -> str | None:
    """The object rewritten by ``expand`` or ``limit-recurrence-set``; None to answer it as
    stored (neither asked, or nothing to leave out)."""
    try:
        if wanted.expand is not None:
            return _expanded(_stored(data), wanted.expand, max_instances, zone)
        if wanted.limit_recurrence is not None:
            return _limited(_stored(data), wanted.limit_recurrence, zone)
    except TooManyInstances:
        raise
    except Exception:
        # Every stored object was parsed and expanded on PUT; should the library still fail
        # on this range, the object is answered as stored (as :func:`_passes` does).
        return None
    return None


def _kind(calendar: icalendar.Calendar) -> str:
    """The object's one component type (checked on PUT), VTIMEZONE aside."""
    return str(next(c.name for c in calendar.subcomponents if c.name != "VTIMEZONE"))


def _expanded(
    calendar: icalendar.Calendar, wanted: TimeRange, max_instances: int, zone: tzinfo
) -> str:
    """RFC 4791 §9.6.5: the instances in the range, each its own component with a
    RECURRENCE-ID and no RRULE, RDATE or EXDATE (the library gives them so), times with a
    TZID in UTC, no VTIMEZONE."""
    instances = _instances_in(calendar, _kind(calendar), wanted, max_instances, zone)
    out = icalendar.Calendar()
    for name, value in calendar.property_items(recursive=False):
        if name not in ("BEGIN", "END"):
            out.add(name, value)
    for instance in instances:
        out.add_component(_in_utc(instance))
    text: str = out.to_ical().decode("utf-8")
    return text


def _instances_in(
    calendar: icalendar.Calendar, kind: str, wanted: TimeRange, max_instances: int, zone: tzinfo
) -> list[icalendar.Component]:
    """The instances overlapping the range (RFC 4791 §9.9); :class:`TooManyInstances` when
    there are more than ``max_instances``, or reaching the range would walk past that many."""
    components = [c for c in calendar.subcomponents if c.name == kind]
    earliest = _earliest(components, zone)
    if earliest is None:
        return components  # a to-do without dates: in every range (§9.9), as it is
    end = wanted.end or _FAR_FUTURE
    if _instances_between(components, earliest, end) > max_instances:
        raise TooManyInstances(f"expanding to {end:%Y-%m-%d}")
    instances = list(
        itertools.islice(_overlapping(calendar, kind, wanted, zone), max_instances + 1)
    )
    if len(instances) > max_instances:
        raise TooManyInstances(f"more than {max_instances} instances in the range")
    return instances


def _in_utc(component: icalendar.Component) -> icalendar.Component:
    """RFC 4791 §9.6.5: "date and local time with reference to time zone information MUST
    be converted into date with UTC time" (a floating time or a date is left as it is)."""
    for part in component.walk():
        for name in list(part.keys()):
            value = part[name]
            moment = getattr(value, "dt", None)
            if isinstance(moment, datetime) and moment.tzinfo not in (None, UTC):
                params = {k: v for k, v in value.params.items() if k != "TZID"}
                part[name] = icalendar.vDDDTypes(moment.astimezone(UTC))
                part[name].params.update(params)
    return component


def _limited(calendar: icalendar.Calendar, wanted: TimeRange, zone: tzinfo) -> str | None:
    """RFC 4791 §9.6.6: the master components, and the overridden instances that overlap the
    range (by their own times or by the instance they replace; one for THISANDFUTURE
    instances from before the range's end); None when every one is kept."""
    start = wanted.start or _FAR_PAST
    end = wanted.end or _FAR_FUTURE
    dropped = []
    for component in calendar.subcomponents:
        if "RECURRENCE-ID" not in component:
            continue
        replaced = _utc(component.decoded("RECURRENCE-ID"), zone)
        own_start, own_end = _own_span(component, zone)
        future = component["RECURRENCE-ID"].params.get("RANGE", "").upper() == "THISANDFUTURE"
        if not (
            _meets(replaced, replaced, start, end)
            or _meets(own_start, own_end, start, end)
            or (future and replaced < end)
        ):
            dropped.append(component)
    if not dropped:
        return None
    for component in dropped:
        calendar.subcomponents.remove(component)
    text: str = calendar.to_ical().decode("utf-8")
    return text


def _own_span(component: icalendar.Component, zone: tzinfo) -> tuple[datetime, datetime]:
    """RFC 4791 §9.9's table for a component as written: DTEND or DUE, else DTSTART plus
    DURATION, else a day for a date, else nothing."""
    if "DTSTART" not in component:
        moment = _utc(component.decoded("RECURRENCE-ID"), zone)
        return moment, moment
    begun = component.decoded("DTSTART")
    start = _utc(begun, zone)
    end = component.decoded("DTEND", None) or component.decoded("DUE", None)
    if end is not None:
        return start, max(start, _utc(end, zone))
    if "DURATION" in component:
        return start, start + component.decoded("DURATION")
    return start, start + (timedelta(days=1) if not isinstance(begun, datetime) else timedelta())


#: RFC 5545 §3.1: a content line and its folded continuations (a line starting with a blank).
_CONTENT_LINE = re.compile(r"[^\n]*(?:\n|$)(?:[ \t][^\n]*(?:\n|$))*")


def property_name(unfolded: str) -> str:
    """An unfolded content line's name (RFC 5545 §3.1: before the first ";" or ":"), in
    capitals."""
    return re.split(r"[;:]", unfolded, maxsplit=1)[0].strip().upper()


def value_start(unfolded: str) -> int | None:
    """Where an unfolded content line's value starts: after the first colon outside a quoted
    parameter value (RFC 5545 §3.1: a parameter value may hold a colon, quoted); None
    without one."""
    quoted = False
    for index, char in enumerate(unfolded):
        if char == '"':
            quoted = not quoted
        elif char == ":" and not quoted:
            return index + 1
    return None


def property_value(unfolded: str) -> str:
    """An unfolded content line's value (:func:`value_start`); "" without one."""
    start = value_start(unfolded)
    return "" if start is None else unfolded[start:]


def _narrowed(text: str, wanted: CompSelect) -> str:
    """RFC 4791 §9.6.1-§9.6.4: the components and properties asked for, each line kept
    as stored (folding, parameters, line ends); ``novalue`` ones with an empty value."""
    kept: list[str] = []
    # The selection of each open component; None for one dropped (and all within it).
    open_: list[CompSelect | None] = []
    for line in _CONTENT_LINE.findall(text):
        if not line:
            continue
        unfolded = re.sub(r"\r?\n[ \t]", "", line).rstrip("\r\n")
        name = property_name(unfolded)
        value = property_value(unfolded).strip().upper() if name in ("BEGIN", "END") else ""
        current = open_[-1] if open_ else None
        if name == "BEGIN":
            if not open_:
                chosen: CompSelect | None = wanted if value == wanted.name else None
            elif current is None:
                chosen = None
            elif current.comps is None:
                chosen = CompSelect(value)
            else:
                chosen = next((c for c in current.comps if c.name == value), None)
            open_.append(chosen)
            if chosen is not None:
                kept.append(line)
            continue
        if name == "END":
            if open_ and open_.pop() is not None:
                kept.append(line)
            continue
        if current is None:
            continue
        if current.props is None:
            kept.append(line)
            continue
        asked = next((p for p in current.props if p.name == name), None)
        if asked is not None:
            kept.append(line if not asked.novalue else _without_value(unfolded, line))
    return "".join(kept)


def _without_value(unfolded: str, line: str) -> str:
    """RFC 4791 §9.6.4 ``novalue``: the property's name and parameters, an empty value (the
    first colon outside a quoted parameter value ends them, RFC 5545 §3.1)."""
    start = value_start(unfolded)
    if start is None:
        return line
    ending = "\r\n" if line.endswith("\r\n") else "\n" if line.endswith("\n") else ""
    return unfolded[:start] + ending


# -- free-busy-query (RFC 4791 §7.10) --------------------------------------------------------------

#: RFC 5545 §3.7.3: who wrote the objects made here (free-busy answers, the webmail's events and
#: invitation replies).
PRODID = "-//Pillarbox//Pillarbox//EN"


def free_busy(
    objects: Sequence[bytes],
    start: datetime,
    end: datetime,
    now: datetime,
    max_instances: int,
    timezone: str = "",
) -> str:
    """RFC 4791 §7.10: one VFREEBUSY for ``[start, end)`` with the busy periods of the
    objects' events (merged, cut to the range, in UTC); :class:`TooManyInstances` when an
    object would expand past ``max_instances``."""
    busy = _busy_periods(objects, start, end, max_instances, timezone)
    return _vfreebusy(busy, start, end, now)


def _vfreebusy(
    busy: Busy,
    start: datetime,
    end: datetime,
    now: datetime,
    answering: FreeBusyRequest | None = None,
    attendee: str = "",
) -> str:
    """The one writer of a VFREEBUSY object, for both places that answer busy time: a
    calendar's free-busy-query (RFC 4791 §7.10: no METHOD, DTSTAMP, DTSTART, DTEND and the
    FREEBUSY lines) and, ``answering`` an outbox's request for ``attendee``, a METHOD:REPLY
    (RFC 5546 §3.3.3: the request's UID, ORGANIZER and the ATTENDEE besides). Each line
    folded at 75 octets (RFC 5545 §3.1): an address can be longer than that."""
    scheduling = []
    if answering is not None:
        if answering.uid:
            scheduling.append(f"UID:{icalendar.vText(answering.uid).to_ical().decode()}")
        scheduling += [f"ORGANIZER:{answering.organizer}", f"ATTENDEE:{attendee}"]
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        *(["METHOD:REPLY"] if answering is not None else []),
        "BEGIN:VFREEBUSY",
        *scheduling,
        f"DTSTAMP:{_stamp(now)}",
        f"DTSTART:{_stamp(start)}",
        f"DTEND:{_stamp(end)}",
        # RFC 5545 §3.8.2.6: one period per line, in order of their starts.
        *(
            f"FREEBUSY;FBTYPE={fbtype}:{_stamp(s)}/{_stamp(e)}"
            for (s, e), fbtype in _in_order(busy)
        ),
        "END:VFREEBUSY",
        "END:VCALENDAR",
    ]
    return "".join(f"{folded(line)}\r\n" for line in lines)


#: RFC 5545 §3.1: "Lines of text SHOULD NOT be longer than 75 octets, excluding the line break."
MAX_LINE_OCTETS = 75


def folded(line: str) -> str:
    """A content line folded (RFC 5545 §3.1): pieces of at most 75 octets, each continuation
    after a CRLF and a space (which counts), never inside a UTF-8 character."""
    pieces, piece, size = [], "", 0
    for char in line:
        octets = len(char.encode())
        if size + octets > MAX_LINE_OCTETS:
            pieces.append(piece)
            piece, size = " ", 1
        piece += char
        size += octets
    return "\r\n".join([*pieces, piece])


#: Busy periods by FBTYPE (RFC 5545 §3.2.9).
Busy = dict[str, list[tuple[datetime, datetime]]]


def _busy_periods(
    objects: Sequence[bytes], start: datetime, end: datetime, max_instances: int, timezone: str
) -> Busy:
    """The busy periods of the objects' events in ``[start, end)``, cut to it, floating
    times in ``timezone``."""
    zone = _zone(timezone)
    wanted = TimeRange(start, end)
    busy: Busy = {}
    for data in objects:
        try:
            calendar = _stored(data)
            # §7.10: only VEVENT (and VFREEBUSY, VAVAILABILITY: not kept here) is busy time.
            kind = _kind(calendar)
            events = (
                []
                if kind != "VEVENT"
                else _instances_in(calendar, kind, wanted, max_instances, zone)
            )
        except TooManyInstances:
            raise
        except Exception:
            # Parsed and expanded on PUT; should the library still fail on this range, the
            # object gives no busy time rather than failing the whole answer.
            continue
        for instance in events:
            fbtype = _busy_type(instance)
            begins, ends = _span(instance, zone)
            if fbtype is not None and begins < ends:
                busy.setdefault(fbtype, []).append((max(begins, start), min(ends, end)))
    return busy


def _in_order(busy: Busy) -> list[tuple[tuple[datetime, datetime], str]]:
    """The periods merged, with their FBTYPEs, in order of their starts (RFC 5545 §3.8.2.6)."""
    return sorted((p, fbtype) for fbtype, periods in busy.items() for p in _merged(periods))


def _busy_type(instance: icalendar.Component) -> str | None:
    """RFC 4791 §7.10: a transparent or cancelled event is free time; a tentative one
    BUSY-TENTATIVE, any other BUSY."""
    if str(instance.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
        return None
    status = str(instance.get("STATUS", "CONFIRMED")).upper()
    if status == "CANCELLED":
        return None
    return "BUSY-TENTATIVE" if status == "TENTATIVE" else "BUSY"


def _merged(periods: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Overlapping or touching periods as one, in order (RFC 5545 §3.8.2.6 lists them so)."""
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(periods):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


# -- the webmail's calendar page and invitations ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One instance of an event as a calendar page shows it: a DATE (all day) or a DATE-TIME
    (aware, or floating: the reader's zone) start and end."""

    uid: str
    summary: str
    start: date | datetime
    end: date | datetime
    location: str
    recurring: bool

    @property
    def all_day(self) -> bool:
        return not isinstance(self.start, datetime)


def occurrences(
    data: bytes, start: datetime, end: datetime, max_instances: int
) -> list[Occurrence]:
    """The object's event instances meeting ``[start, end)``, recurrences expanded by the
    library (at most ``max_instances``); none for a to-do, or an object that cannot be read."""
    try:
        calendar = _stored(data)
        query = recurring_ical_events.of(calendar, components=("VEVENT",), skip_bad_series=True)
        found = list(itertools.islice(query.between(start, end), max_instances))
    except Exception:
        # Stored objects were checked on PUT; one the library still cannot expand over this
        # range is left out of the page rather than failing it.
        return []
    # Whether a series repeats is read from the stored components: the library puts a
    # RECURRENCE-ID on every instance it yields, a one-off event's too.
    series = {
        str(event.get("UID", ""))
        for event in calendar.walk("VEVENT")
        if "RRULE" in event or "RDATE" in event or "RECURRENCE-ID" in event
    }
    result = []
    for instance in found:
        first = instance.decoded("DTSTART")
        last = instance.decoded("DTEND", None) or first
        recurring = str(instance.get("UID", "")) in series
        result.append(
            Occurrence(
                str(instance.get("UID", "")),
                str(instance.get("SUMMARY", "")),
                first,
                last,
                str(instance.get("LOCATION", "")),
                recurring,
            )
        )
    return result


@dataclass(frozen=True, slots=True)
class EventFields:
    """What the webmail's event form edits of a VEVENT (RFC 5545 §3.6.1); the rest of the
    object is kept as it was. All-day: ``start`` and ``end`` are dates, ``end`` exclusive."""

    summary: str
    start: date | datetime
    end: date | datetime
    location: str = ""
    description: str = ""


def _master(calendar: icalendar.Calendar) -> icalendar.Component:
    """The event's series (the VEVENT without RECURRENCE-ID), else its first VEVENT."""
    events = [c for c in calendar.subcomponents if c.name == "VEVENT"]
    if not events:
        raise InvalidObject("supported-calendar-component", "not an event")
    return next((e for e in events if "RECURRENCE-ID" not in e), events[0])


def stored_fields(data: bytes) -> EventFields:
    """The form's fields of a stored event; :class:`InvalidObject` for a to-do."""
    return event_fields(_master(_calendar(data)))


def event_fields(event: icalendar.Component) -> EventFields:
    """The form's fields of a VEVENT (its end from DTEND, else DTSTART and DURATION)."""
    start = event.decoded("DTSTART")
    end = event.decoded("DTEND", None)
    if end is None:
        duration = event.decoded("DURATION", None)
        default = timedelta(days=1) if not isinstance(start, datetime) else timedelta()
        end = start + (duration if isinstance(duration, timedelta) else default)
    return EventFields(
        str(event.get("SUMMARY", "")),
        start,
        end,
        str(event.get("LOCATION", "")),
        str(event.get("DESCRIPTION", "")),
    )


def _apply(event: icalendar.Component, fields: EventFields, now: datetime) -> frozenset[str]:
    """Set the form's fields on ``event``, rewriting only those that changed: an unchanged
    start keeps its TZID (and so a series its zone's daylight saving time), an unchanged
    title its LANGUAGE, an unchanged length its DURATION. The names of the properties
    rewritten; DTSTAMP and LAST-MODIFIED are set only when there are some."""
    current = event_fields(event) if "DTSTART" in event else None
    changed = set()
    for name, value in (
        ("SUMMARY", fields.summary),
        ("LOCATION", fields.location),
        ("DESCRIPTION", fields.description),
    ):
        if current is None or value != getattr(current, name.lower()):
            changed.add(name)
            event.pop(name, None)
            if value:
                event.add(name, value)
    if current is None or not _same(current.start, fields.start):
        changed.add("DTSTART")
        event.pop("DTSTART", None)
        event.add("DTSTART", fields.start)
    if current is None or not _same(current.end, fields.end):
        changed.add("DTEND")
        # RFC 5545 §3.6.1: DTEND or DURATION, not both; DTEND is exclusive for a date.
        for name in ("DTEND", "DURATION"):
            event.pop(name, None)
        event.add("DTEND", fields.end)
    if changed:
        _stamp_revision(event, now)
    return frozenset(changed)


def _stamp_revision(event: icalendar.Component, now: datetime) -> None:
    for name in ("DTSTAMP", "LAST-MODIFIED"):
        event.pop(name, None)
        event.add(name, now)  # RFC 5545 §3.8.7.2, §3.8.7.3


def _same(old: date | datetime, new: date | datetime) -> bool:
    """The same DATE, or the same instant (a floating time compared as written)."""
    if isinstance(old, datetime) != isinstance(new, datetime):
        return False
    if (
        isinstance(old, datetime)
        and isinstance(new, datetime)
        and ((old.tzinfo is None) != (new.tzinfo is None))
    ):
        return False
    return old == new


def new_event(fields: EventFields, uid: str, now: datetime) -> bytes:
    """A VCALENDAR holding one VEVENT made from the form (RFC 5545 §3.6.1: UID, DTSTAMP)."""
    calendar = icalendar.Calendar()
    calendar.add("VERSION", "2.0")
    calendar.add("PRODID", PRODID)
    event = icalendar.Event()
    event.add("UID", uid)
    event.add("CREATED", now)
    _apply(event, fields, now)
    calendar.add_component(event)
    return bytes(calendar.to_ical())


#: What of the form's fields is a "significant" revision (RFC 5545 §3.8.7.4, RFC 5546
#: §2.1.4: the time; the title, place and description are not, so answers already given to
#: the event still apply, §2.1.5).
_RESCHEDULING = frozenset({"DTSTART", "DTEND"})


def revised_event(data: bytes, fields: EventFields, now: datetime) -> bytes:
    """The stored object with its series' VEVENT changed to the form's fields, its SEQUENCE
    raised when the time changed (RFC 5545 §3.8.7.4): every other property and component
    (time zones, alarms, attendees, overridden instances, X- properties) is kept. ``data``
    itself, byte for byte, when the form changed nothing (so saving it stores nothing new)."""
    calendar = _calendar(data)
    event = _master(calendar)
    changed = _apply(event, fields, now)
    if not changed:
        return data
    if changed & _RESCHEDULING:
        sequence = int(event.get("SEQUENCE", 0))
        event.pop("SEQUENCE", None)
        event.add("SEQUENCE", sequence + 1)
    return bytes(calendar.to_ical())


# -- iTIP (RFC 5546) over iMIP (RFC 6047) ----------------------------------------------------------

#: RFC 5546 §3.2.3: the PARTSTAT values an attendee answers a REQUEST with.
ANSWERS = ("ACCEPTED", "TENTATIVE", "DECLINED")


@dataclass(frozen=True, slots=True)
class Attendee:
    address: str
    name: str
    partstat: str


@dataclass(frozen=True, slots=True)
class Invitation:
    """A text/calendar part of a message (RFC 6047 §2.4) as its summary shows it."""

    method: str
    uid: str
    summary: str
    start: date | datetime | None
    end: date | datetime | None
    location: str
    organizer: str
    organizer_name: str
    attendees: tuple[Attendee, ...]
    sequence: int


def _address(value: object) -> str:
    """A ``mailto:`` calendar user address (RFC 5545 §3.3.3) as a bare address."""
    text = str(value or "")
    return text[7:] if text.lower().startswith("mailto:") else text


def read_invitation(data: bytes) -> Invitation:
    """The scheduling message's method and its event (RFC 5546 §1.4); :class:`InvalidObject`
    when it is not a VCALENDAR with a METHOD and a VEVENT with a UID (callers bound its size)."""
    calendar = _calendar(data)
    method = str(calendar.get("METHOD", "")).upper()
    if not method:
        raise InvalidObject("valid-calendar-data", "no METHOD: not a scheduling message")
    event = _master(calendar)
    uid = str(event.get("UID", ""))
    if not uid:
        raise InvalidObject("valid-calendar-data", "the event has no UID")
    organizer = event.get("ORGANIZER")
    attendees = event.get("ATTENDEE")
    listed = [] if attendees is None else attendees if isinstance(attendees, list) else [attendees]
    return Invitation(
        method,
        uid,
        str(event.get("SUMMARY", "")),
        _moment(event.decoded("DTSTART", None)),
        _moment(event.decoded("DTEND", None)),
        str(event.get("LOCATION", "")),
        _address(organizer),
        str(organizer.params.get("CN", "")) if organizer is not None else "",
        tuple(
            Attendee(
                _address(a),
                str(a.params.get("CN", "")),
                str(a.params.get("PARTSTAT", "NEEDS-ACTION")).upper(),
            )
            for a in listed
        ),
        int(event.get("SEQUENCE", 0)),
    )


def _moment(value: object) -> date | datetime | None:
    """A DATE or DATE-TIME value; None for anything else the parser gave (a PERIOD)."""
    return value if isinstance(value, date) else None


def _is(value: object, address: str) -> bool:
    return _address(value).lower() == address.lower()


def accepted_object(data: bytes, attendee: str, partstat: str) -> bytes:
    """The REQUEST's calendar as a calendar object resource: without METHOD (RFC 4791 §4.1)
    and with ``attendee``'s PARTSTAT set (and RSVP dropped: answered)."""
    calendar = _calendar(data)
    calendar.pop("METHOD", None)
    for event in calendar.walk("VEVENT"):
        attendees = event.get("ATTENDEE")
        for value in attendees if isinstance(attendees, list) else [attendees]:
            if value is not None and _is(value, attendee):
                value.params["PARTSTAT"] = partstat
                value.params.pop("RSVP", None)
    return bytes(calendar.to_ical())


def itip_reply(
    data: bytes, attendee: str, partstat: str, now: datetime,
    instances: Mapping[date | datetime, str] | None = None,
) -> bytes:  # fmt: skip
    """The METHOD:REPLY (RFC 5546 §3.2.3) of ``attendee`` to a REQUEST: per VEVENT of it,
    ATTENDEE (only the one replying, with PARTSTAT), DTSTAMP, ORGANIZER, UID, RECURRENCE-ID
    when the request had one, SEQUENCE when non-zero; SUMMARY and DTSTART as optional
    context. With ``instances`` (RECURRENCE-ID → PARTSTAT, :func:`answered_instances`), the
    answers to those instances alone, one VEVENT each — an instance without a VEVENT of its
    own (one an EXDATE removed) answered from the series with its RECURRENCE-ID."""
    for answered in (partstat, *(instances or {}).values()):
        if answered not in ANSWERS:
            raise ValueError(f"not an answer: {answered}")
    request = _calendar(data)
    reply = icalendar.Calendar()
    reply.add("PRODID", PRODID)
    reply.add("VERSION", "2.0")
    reply.add("METHOD", "REPLY")
    answering: list[tuple[icalendar.Component, date | datetime | None, str]] = [
        (e, None, partstat) for e in request.walk("VEVENT")
    ]
    if instances is not None:
        overrides = {e.decoded("RECURRENCE-ID", None): e for e in request.walk("VEVENT")}
        answering = [
            (overrides.get(moment, _master(request)), moment, answer)
            for moment, answer in instances.items()
        ]
    for event, moment, given in answering:
        answer = icalendar.Event()
        # Copied as the organizer wrote them: the UID, the organizer and the instance answered.
        for name in ("UID", "ORGANIZER", "RECURRENCE-ID", "DTSTART", "SUMMARY"):
            if name in event:
                answer[name] = event[name]
        if moment is not None and "RECURRENCE-ID" not in event:
            answer.add("RECURRENCE-ID", moment)
            answer.pop("DTSTART", None)
            answer.add("DTSTART", moment)
        attendees = event.get("ATTENDEE")
        listed = attendees if isinstance(attendees, list) else [attendees]
        found = next((a for a in listed if a is not None and _is(a, attendee)), None)
        who = icalendar.vCalAddress(str(found) if found is not None else f"mailto:{attendee}")
        if found is not None and "CN" in found.params:
            who.params["CN"] = found.params["CN"]
        who.params["PARTSTAT"] = given
        answer.add("ATTENDEE", who)
        answer.add("DTSTAMP", now)
        sequence = int(event.get("SEQUENCE", 0))
        if sequence:
            answer.add("SEQUENCE", sequence)
        reply.add_component(answer)
    # A VTIMEZONE a copied DTSTART or RECURRENCE-ID names goes along (RFC 5546 §3.2.3).
    for zone in request.walk("VTIMEZONE"):
        reply.add_component(zone)
    _without_schedule_status(reply)
    return bytes(reply.to_ical())


def answered_instances(previous: bytes, data: bytes, attendee: str) -> dict[date | datetime, str]:
    """RFC 6638 §3.2.2.3: the instances whose answer ``attendee`` changed from ``previous``
    to ``data`` (RECURRENCE-ID → the new PARTSTAT, one of :data:`ANSWERS`): an overridden
    instance whose PARTSTAT changed, or one added with a PARTSTAT other than the series'
    was, and each instance an added EXDATE removes ("the Attendee has declined the
    instance"). The series' own answer is not among them."""
    before, after = _answers(previous, attendee), _answers(data, attendee)
    series = before.get(None, "NEEDS-ACTION")
    return {
        moment: answer
        for moment, answer in after.items()
        if moment is not None and answer in ANSWERS and answer != before.get(moment, series)
    }


def _answers(data: bytes, attendee: str) -> dict[date | datetime | None, str]:
    """``attendee``'s PARTSTAT per VEVENT, by RECURRENCE-ID (None: the series), and DECLINED
    for each instance an EXDATE of the series removes."""
    calendar = _calendar(data)
    answers: dict[date | datetime | None, str] = {}
    for event in calendar.walk("VEVENT"):
        found = next((a for a in _listed(event) if _is(a, attendee)), None)
        if found is not None:
            partstat = str(found.params.get("PARTSTAT", "NEEDS-ACTION")).upper()
            answers[event.decoded("RECURRENCE-ID", None)] = partstat
    for moment in _dates(_master(calendar), "EXDATE"):
        if isinstance(moment, date):
            answers.setdefault(moment, "DECLINED")
    return answers


def organizer_of(data: bytes) -> str:
    """The ORGANIZER of a stored event (RFC 5545 §3.8.4.3) as a bare address; "" without
    one (an event of the account's own, never scheduled)."""
    return _address(_master(_calendar(data)).get("ORGANIZER"))


def partstat_of(data: bytes, attendee: str) -> str:
    """``attendee``'s PARTSTAT in a stored event (RFC 5545 §3.2.12), "" when not listed."""
    event = _master(_calendar(data))
    attendees = event.get("ATTENDEE")
    for value in attendees if isinstance(attendees, list) else [attendees]:
        if value is not None and _is(value, attendee):
            return str(value.params.get("PARTSTAT", "NEEDS-ACTION")).upper()
    return ""


# -- the organizer's side of iTIP: invitations sent and replies applied ---------------------------

#: RFC 5545 §3.2.12: the PARTSTAT values of an attendee of a VEVENT.
_EVENT_PARTSTATS = frozenset({"NEEDS-ACTION", "ACCEPTED", "DECLINED", "TENTATIVE", "DELEGATED"})


def _listed(event: icalendar.Component) -> list[icalendar.vCalAddress]:
    return _lines(event, "ATTENDEE")


def _lines(component: icalendar.Component, name: str) -> list[icalendar.vCalAddress]:
    """Each ``name`` (ATTENDEE, ORGANIZER) line of the component, however many it has."""
    lines = component.get(name)
    return [] if lines is None else lines if isinstance(lines, list) else [lines]


def event_attendees(data: bytes) -> tuple[str, tuple[Attendee, ...]]:
    """A stored event's organizer (a bare address, "" for none) and its series' attendees."""
    event = _master(_calendar(data))
    return _address(event.get("ORGANIZER")), tuple(
        Attendee(
            _address(a),
            str(a.params.get("CN", "")),
            str(a.params.get("PARTSTAT", "NEEDS-ACTION")).upper(),
        )
        for a in _listed(event)
    )


def with_attendees(
    data: bytes, organizer: str, organizer_name: str, attendees: Sequence[tuple[str, str]],
    now: datetime,
) -> bytes:  # fmt: skip
    """The event with ``organizer`` as its ORGANIZER and ``attendees`` ((address, name) pairs)
    as the series' ATTENDEEs: one already listed keeps its line (its answer), a new one is
    asked to answer (RFC 5546 §3.2.2: PARTSTAT=NEEDS-ACTION, RSVP=TRUE), one no longer given
    is dropped. Without attendees the ORGANIZER goes too (RFC 5545 §3.8.4.3: an ORGANIZER
    only on a meeting). ``data`` itself, byte for byte, when it already has that organizer
    and those attendees."""
    calendar = _calendar(data)
    event = _master(calendar)
    kept = {_address(a).lower(): a for a in _listed(event)}
    had = _address(event["ORGANIZER"]).lower() if "ORGANIZER" in event else ""
    wanted = {address.lower() for address, _ in attendees}
    if wanted == set(kept) and had == (organizer.lower() if attendees else ""):
        return data
    event.pop("ATTENDEE", None)
    event.pop("ORGANIZER", None)
    _stamp_revision(event, now)
    if not attendees:
        return bytes(calendar.to_ical())
    who = icalendar.vCalAddress(f"mailto:{organizer}")
    if organizer_name:
        who.params["CN"] = organizer_name
    event.add("ORGANIZER", who)
    for address, name in attendees:
        line = kept.get(address.lower())
        if line is None:
            line = icalendar.vCalAddress(f"mailto:{address}")
            if name:
                line.params["CN"] = name
            line.params["PARTSTAT"] = "NEEDS-ACTION"
            line.params["RSVP"] = "TRUE"
        event.add("ATTENDEE", line)
    return bytes(calendar.to_ical())


def itip_request(data: bytes, method: str, now: datetime) -> bytes:
    """A stored event as the organizer's scheduling message (RFC 5546 §1.4): ``REQUEST``
    (§3.2.2: the object as stored, which carries ATTENDEE, DTSTAMP, DTSTART, ORGANIZER, UID,
    SUMMARY and its SEQUENCE) or ``CANCEL`` (§3.2.5: the series' VEVENT with STATUS:CANCELLED
    and its SEQUENCE raised, the overridden instances left out: the whole event goes); both
    with METHOD, and DTSTAMP set to when it is sent (RFC 5546 §2.1.5)."""
    if method not in ("REQUEST", "CANCEL"):
        raise ValueError(f"not an organizer's method: {method}")
    calendar = _calendar(data)
    if "ORGANIZER" not in _master(calendar) or not _listed(_master(calendar)):
        raise InvalidObject("valid-calendar-data", "the event has no organizer or attendees")
    calendar.add("METHOD", method)
    if method == "CANCEL":
        master = _master(calendar)
        calendar.subcomponents = [
            c for c in calendar.subcomponents if c.name != "VEVENT" or c is master
        ]
        master.pop("STATUS", None)
        master.add("STATUS", "CANCELLED")
        sequence = int(master.get("SEQUENCE", 0))
        master.pop("SEQUENCE", None)
        master.add("SEQUENCE", sequence + 1)
    for event in calendar.walk("VEVENT"):
        event.pop("DTSTAMP", None)
        event.add("DTSTAMP", now)
    _without_schedule_status(calendar)
    return bytes(calendar.to_ical())


class ReplyNotApplied(ValueError):
    """A REPLY that does not change the organizer's event; the message says why."""


@dataclass(frozen=True, slots=True)
class ReplyCheck:
    """A REPLY (RFC 5546 §3.2.3) set against the organizer's stored event."""

    attendee: str
    name: str
    partstat: str
    #: The attendee's PARTSTAT in the stored event ("" when not listed there).
    current: str
    #: Why the REPLY is not applied; "" when it can be.
    problem: str


def check_reply(stored: bytes, reply: bytes) -> ReplyCheck:
    """Whether ``reply`` can be applied to the organizer's ``stored`` event: its one ATTENDEE
    must be one of the event's, its PARTSTAT an event's, and its SEQUENCE not older than the
    stored one (RFC 5546 §2.1.5: an older message is out of date)."""
    answer = _master(_calendar(reply))
    listed = _listed(answer)
    if len(listed) != 1:
        raise InvalidObject("valid-calendar-data", "a REPLY names exactly one ATTENDEE")
    attendee = listed[0]
    address = _address(attendee)
    name = str(attendee.params.get("CN", ""))
    partstat = str(attendee.params.get("PARTSTAT", "NEEDS-ACTION")).upper()
    event = _master(_calendar(stored))
    current = next(
        (
            str(a.params.get("PARTSTAT", "NEEDS-ACTION")).upper()
            for a in _listed(event)
            if _is(a, address)
        ),
        "",
    )
    problem = ""
    if not current:
        problem = f"{address} is not an attendee of this event"
    elif partstat not in _EVENT_PARTSTATS:
        problem = f"{partstat} is not an answer to an event"
    elif int(answer.get("SEQUENCE", 0)) < int(event.get("SEQUENCE", 0)):
        problem = "this answer is to an older version of the event"
    return ReplyCheck(address, name, partstat, current, problem)


def applied_reply(stored: bytes, reply: bytes) -> bytes:
    """The organizer's event with the replying attendee's PARTSTAT set (RFC 5546 §3.2.3),
    in the series and in each overridden instance the REPLY answers (by RECURRENCE-ID);
    nothing else is changed. :class:`ReplyNotApplied` when :func:`check_reply` finds a
    problem."""
    check = check_reply(stored, reply)
    if check.problem:
        raise ReplyNotApplied(check.problem)
    calendar = _calendar(stored)
    answered = {
        c.decoded("RECURRENCE-ID", None): str(_listed(c)[0].params.get("PARTSTAT", "")).upper()
        for c in _calendar(reply).walk("VEVENT")
        if len(_listed(c)) == 1
    }
    for event in calendar.walk("VEVENT"):
        partstat = answered.get(event.decoded("RECURRENCE-ID", None))
        if partstat not in _EVENT_PARTSTATS:
            continue
        for value in _listed(event):
            if _is(value, check.attendee):
                value.params["PARTSTAT"] = partstat
    return bytes(calendar.to_ical())


# -- implicit scheduling of CalDAV objects (RFC 6638) ----------------------------------------------

#: What of an event its attendees' copies hold (RFC 5546 §2.1.4: a change to these is an
#: update to send; an answer written back, an alarm or a colour is not).
_SCHEDULED = frozenset(
    {
        "DTSTART", "DTEND", "DURATION", "RRULE", "RDATE", "EXDATE", "RECURRENCE-ID",
        "SUMMARY", "LOCATION", "DESCRIPTION", "STATUS", "SEQUENCE",
    }
)  # fmt: skip


def client_scheduled(data: bytes) -> frozenset[str]:
    """The addresses (lowercased) of the series' ORGANIZER and ATTENDEEs a client schedules
    itself (RFC 6638 §7.1: SCHEDULE-AGENT other than SERVER, the default): the server sends
    them nothing and sends nothing for them."""
    event = _master(_calendar(data))
    organizer = event.get("ORGANIZER")
    people = _listed(event) + ([organizer] if organizer is not None else [])
    return frozenset(_address(p).lower() for p in people if not _server_schedules(p))


def scheduled_content(data: bytes) -> tuple[str, ...]:
    """What of the event (every VEVENT) an attendee's copy holds, to tell an update from a
    write that leaves the attendees' copies as they are (:data:`_SCHEDULED`)."""
    lines = []
    for event in _calendar(data).walk("VEVENT"):
        lines += [
            str(event.content_line(name, value))
            for name, value in event.property_items(recursive=False)
            if name.upper() in _SCHEDULED
        ]
        lines.append("")
    return tuple(lines)


# -- the organizer's reschedule (RFC 6638 §3.2.8) --------------------------------------------------

#: RFC 6638 §3.2.8: "Any change to these properties results in PARTSTAT being set to
#: NEEDS-ACTION".
_RESCHEDULED_BY = ("DTSTART", "DTEND", "DURATION", "DUE")


def rescheduled(previous: bytes, data: bytes) -> bytes:
    """RFC 6638 §3.2.8: the organizer's new version ``data`` of ``previous`` with the
    PARTSTAT of every attendee the server schedules (SCHEDULE-AGENT SERVER or absent, §7.1),
    but the organizer's own line, reset to NEEDS-ACTION in each component whose change
    reschedules an instance (:func:`_reschedules`); ``data`` itself, byte for byte, when no
    component does or every such attendee needs to act already (the PUT's ETag then holds,
    RFC 4791 §5.3.4)."""
    calendar = _calendar(data)
    master = _master(calendar)
    if "ORGANIZER" in master and not _server_schedules(master["ORGANIZER"]):
        return data  # §7.1: the organizer's client schedules; the server changes nothing
    before = {e.decoded("RECURRENCE-ID", None): e for e in _calendar(previous).walk("VEVENT")}
    reset = False
    for event in calendar.walk("VEVENT"):
        if not _reschedules(before.get(event.decoded("RECURRENCE-ID", None)), event):
            continue
        organizer = _address(event.get("ORGANIZER") or master.get("ORGANIZER")).lower()
        for attendee in _listed(event):
            if _address(attendee).lower() == organizer or not _server_schedules(attendee):
                continue
            if str(attendee.params.get("PARTSTAT", "NEEDS-ACTION")).upper() != "NEEDS-ACTION":
                attendee.params["PARTSTAT"] = "NEEDS-ACTION"
                reset = True
    return bytes(calendar.to_ical()) if reset else data


def _server_schedules(value: object) -> bool:
    """RFC 6638 §7.1: whether the server schedules for an ORGANIZER or ATTENDEE (its
    SCHEDULE-AGENT SERVER, the default)."""
    params = getattr(value, "params", {})
    return str(params.get("SCHEDULE-AGENT", "SERVER")).upper() == "SERVER"


def _reschedules(old: icalendar.Component | None, new: icalendar.Component) -> bool:
    """RFC 6638 §3.2.8's table, for one component (the series, or an instance overridden by
    RECURRENCE-ID) against what it was (None: an override added now): any change of DTSTART,
    DTEND, DURATION or DUE; an RRULE changed (also one that only ends the series sooner,
    which moves no instance: the rule is not expanded to tell); an RDATE added; an EXDATE
    removed (an instance reinstated). An override added reschedules its instance when it
    starts other than at its RECURRENCE-ID."""
    if old is None:
        recurrence = new.decoded("RECURRENCE-ID", None)
        start = new.decoded("DTSTART", None)
        return recurrence is not None and (start is None or not _same(recurrence, start))
    if any(old.decoded(n, None) != new.decoded(n, None) for n in _RESCHEDULED_BY):
        return True
    if _rules(old) != _rules(new):
        return True
    return bool(_dates(new, "RDATE") - _dates(old, "RDATE")) or bool(
        _dates(old, "EXDATE") - _dates(new, "EXDATE")
    )


def _dates(component: icalendar.Component, name: str) -> set[object]:
    """The values of every ``name`` (RDATE, EXDATE) property of the component."""
    found = component.get(name)
    listed = [] if found is None else found if isinstance(found, list) else [found]
    return {d.dt for value in listed for d in value.dts}


# -- SCHEDULE-STATUS (RFC 6638 §3.2.9, §7.3) ------------------------------------------------------

_SCHEDULE_STATUS = "SCHEDULE-STATUS"


def _without_schedule_status(message: icalendar.Calendar) -> None:
    """RFC 6638 §7.3: "Servers MUST NOT include this parameter in any scheduling messages
    sent as the result of a scheduling operation" — taken off the ORGANIZER and ATTENDEEs
    of every VEVENT of ``message``."""
    for event in message.walk("VEVENT"):
        organizer = event.get("ORGANIZER")
        for line in _listed(event) + ([organizer] if organizer is not None else []):
            line.params.pop(_SCHEDULE_STATUS, None)


def _served_lines(event: icalendar.Component, organizing: bool) -> list[icalendar.vCalAddress]:
    """The lines of ``event`` whose SCHEDULE-STATUS is the server's (RFC 6638 §7.3): in the
    organizer's copy its ATTENDEEs (the server sends them REQUESTs and CANCELs), in an
    attendee's copy its ORGANIZER (the server sends it REPLYs) — those the server schedules
    for (§7.1: SCHEDULE-AGENT SERVER, the default)."""
    organizer = event.get("ORGANIZER")
    lines = _listed(event) if organizing else [organizer] if organizer is not None else []
    return [line for line in lines if _server_schedules(line)]


def with_schedule_status(
    data: bytes, previous: bytes | None, statuses: Mapping[str, str], own: frozenset[str]
) -> bytes:
    """The stored event ``data`` (``previous`` before it, None when new) with the delivery
    status (RFC 6638 §3.2.9) of the messages the server just sent for it — ``statuses``: each
    recipient's (lowercased) code — in SCHEDULE-STATUS (§7.3) on the lines that are the
    server's (:func:`_served_lines`; the copy is the organizer's when its ORGANIZER is one of
    ``own``, the owner's lowercased addresses). A line not just sent anything keeps what
    ``previous`` held for its address: §7.3 lets the server change it only for "calendar
    users who were sent a scheduling message", and "Clients SHOULD NOT change or remove this
    parameter if it was provided by the server" — so one a client set, changed or removed
    there is undone, never stored as the server's word. ``data`` itself, byte for byte, when
    nothing changes (the PUT's ETag then holds, RFC 4791 §5.3.4); with an ORGANIZER whose
    client schedules (§7.1), always: §7.3 lets that client keep its own statuses."""
    calendar = _calendar(data)
    master = _master(calendar)
    if "ORGANIZER" not in master or not _server_schedules(master["ORGANIZER"]):
        return data
    organizing = _address(master["ORGANIZER"]).lower() in own
    kept: dict[str, str] = {}
    if previous is not None:
        for event in _calendar(previous).walk("VEVENT"):
            for line in _served_lines(event, organizing):
                if _SCHEDULE_STATUS in line.params:
                    kept[_address(line).lower()] = str(line.params[_SCHEDULE_STATUS])
    changed = False
    for event in calendar.walk("VEVENT"):
        for line in _served_lines(event, organizing):
            address = _address(line).lower()
            wanted = statuses.get(address) or kept.get(address)
            had = line.params.get(_SCHEDULE_STATUS)
            if wanted == (None if had is None else str(had)):
                continue
            changed = True
            if wanted is None:
                line.params.pop(_SCHEDULE_STATUS)
            else:
                line.params[_SCHEDULE_STATUS] = wanted
    return bytes(calendar.to_ical()) if changed else data


# -- Schedule-Tag (RFC 6638 §3.2.10) --------------------------------------------------------------

#: What of an ATTENDEE line is its participation, not the organizer's: its answer (PARTSTAT),
#: whether one is asked (RSVP: dropped once answered, :func:`accepted_object`), and what the
#: server says of delivering to it (RFC 6638 §3.2.9 SCHEDULE-STATUS).
_PARTICIPATION = ("PARTSTAT", "RSVP", _SCHEDULE_STATUS)
#: Stamps a client rewrites whenever it writes (RFC 5545 §3.8.7.2, §3.8.7.3): an answer's
#: PUT carries new ones and is still only an answer.
_STAMPS = frozenset({"DTSTAMP", "LAST-MODIFIED"})


@dataclass(frozen=True, slots=True)
class Scheduling:
    """What RFC 6638 §3.1 and §3.2.10's Schedule-Tag rules read of an event with an
    ORGANIZER."""

    #: The ORGANIZER's address (bare, see :func:`_address`).
    organizer: str
    #: The ATTENDEEs' addresses, lowercased, of every VEVENT.
    attendees: frozenset[str]
    #: The object without its participation (:data:`_PARTICIPATION`) and stamps
    #: (:data:`_STAMPS`): two versions alike here differ only in answers.
    organized: bytes

    def owned_by(self, addresses: frozenset[str]) -> bool:
        """RFC 6638 §3.1: whether the event is a scheduling object resource in the calendar
        of the owner of ``addresses`` (lowercased): the organizer's, or an attendee's."""
        return self.organizer.lower() in addresses or bool(self.attendees & addresses)


def scheduling_of(data: bytes) -> Scheduling | None:
    """The scheduling of an event with an ORGANIZER (RFC 6638 §3.1 then asks whose calendar
    holds it: :meth:`Scheduling.owned_by`); None for another object (a to-do, an event
    without one)."""
    calendar = _calendar(data)
    events = list(calendar.walk("VEVENT"))
    organized = next((e for e in events if "ORGANIZER" in e), None)
    if organized is None:
        return None
    attendees = frozenset(_address(a).lower() for e in events for a in _listed(e))
    for event in events:
        for name in _STAMPS:
            event.pop(name, None)
        for value in _listed(event):
            for param in _PARTICIPATION:
                value.params.pop(param, None)
        if "ORGANIZER" in event:
            # RFC 6638 §7.3: what the server says of delivering the attendee's REPLYs.
            event["ORGANIZER"].params.pop(_SCHEDULE_STATUS, None)
    return Scheduling(_address(organized.get("ORGANIZER")), attendees, bytes(calendar.to_ical()))


def schedules(data: bytes) -> bool:
    """Whether a stored object is a meeting (an ORGANIZER and an ATTENDEE), for the
    migration that gives the scheduling object resources stored before Schedule-Tags their
    first one without knowing the owner's addresses (:meth:`Scheduling.owned_by`); False
    for an object that cannot be read."""
    try:
        scheduling = scheduling_of(data)
    except InvalidObject:
        return False
    return scheduling is not None and bool(scheduling.attendees)


# -- free-busy requests to the scheduling outbox (RFC 6638 §5) -------------------------------------


@dataclass(frozen=True, slots=True)
class FreeBusyRequest:
    """A VFREEBUSY request (RFC 5546 §3.3.2) POSTed to a scheduling outbox."""

    uid: str
    #: The ORGANIZER's calendar user address as written (``mailto:…``).
    organizer: str
    #: The ATTENDEEs' calendar user addresses as written, each once, in order.
    attendees: tuple[str, ...]
    start: datetime
    end: datetime


def freebusy_request(data: bytes) -> FreeBusyRequest:
    """The request a POST to the outbox carries; :class:`InvalidObject` with RFC 6638 §5's
    ``valid-scheduling-message`` when it is not METHOD:REQUEST with one VFREEBUSY holding
    an ORGANIZER, an ATTENDEE and a DTSTART before its DTEND (RFC 5546 §3.3.2; floating
    times read as UTC)."""
    calendar = _calendar(data)
    if str(calendar.get("METHOD", "")).upper() != "REQUEST":
        raise InvalidObject("valid-scheduling-message", "METHOD:REQUEST is required")
    components = [c for c in calendar.subcomponents if c.name != "VTIMEZONE"]
    if [c.name for c in components] != ["VFREEBUSY"]:
        raise InvalidObject("valid-scheduling-message", "expected one VFREEBUSY")
    (query,) = components
    attendees = tuple(dict.fromkeys(str(a) for a in _listed(query)))
    start, end = query.decoded("DTSTART", None), query.decoded("DTEND", None)
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        raise InvalidObject("valid-scheduling-message", "DTSTART and DTEND are required")
    start, end = _utc(start), _utc(end)
    if "ORGANIZER" not in query or not attendees or not start < end:
        raise InvalidObject(
            "valid-scheduling-message", "an ORGANIZER, an ATTENDEE and DTSTART < DTEND"
        )
    return FreeBusyRequest(
        str(query.get("UID", "")), str(query["ORGANIZER"]), attendees, start, end
    )


def freebusy_reply(
    asked: FreeBusyRequest,
    attendee: str,
    calendars: Sequence[tuple[Sequence[bytes], str]],
    now: datetime,
    max_instances: int,
) -> str:
    """RFC 5546 §3.3.3: ``attendee``'s METHOD:REPLY to ``asked``, the busy time of their
    ``calendars`` (each one's objects and ``calendar-timezone``), merged;
    :class:`TooManyInstances` as :func:`free_busy`."""
    busy: Busy = {}
    for objects, timezone in calendars:
        for fbtype, periods in _busy_periods(
            objects, asked.start, asked.end, max_instances, timezone
        ).items():
            busy.setdefault(fbtype, []).extend(periods)
    return _vfreebusy(busy, asked.start, asked.end, now, asked, attendee)
