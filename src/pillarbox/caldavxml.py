"""CalDAV (RFC 4791) and WebDAV sync (RFC 6578) request bodies: the REPORTs a calendar
answers, MKCALENDAR and PROPPATCH. Parsing is :func:`pillarbox.davxml.parse` (no DTD, bounded
depth); anything malformed raises :class:`~pillarbox.davxml.BadRequestBody` (400).

Implementation notes:

- **REPORTs read**: ``calendar-multiget`` (RFC 4791 §7.9: :class:`CalendarMultiget`),
  ``calendar-query`` (§7.8: its filter as :class:`CompFilter`), ``free-busy-query`` (§7.10:
  :class:`FreeBusyQuery`), ``sync-collection`` (RFC 6578 §3.2: token, level, limit); any
  other root is an :class:`~pillarbox.davxml.OtherReport`.
- **What ``calendar-data`` asks for** (§9.6, in a multiget's or a query's ``prop``): the
  components and properties to keep (``comp``/``prop``, ``allcomp``/``allprop``), and at most
  one of ``expand`` and ``limit-recurrence-set``, plus ``limit-freebusy-set``: a
  :class:`CalendarData`. Any media type but ``text/calendar`` 2.0 is
  :class:`UnsupportedCalendarData` (403 ``supported-calendar-data``).
- **Filters** (§9.7): nested ``comp-filter`` with ``is-not-defined`` or ``time-range``,
  ``prop-filter`` with ``is-not-defined`` or one ``text-match`` (§9.7.5: ``i;ascii-casemap``
  by default, substring, ``negate-condition``). A ``param-filter`` or a ``time-range`` on a
  property is not evaluated: :class:`UnsupportedFilter` (403 ``supported-filter``, §7.7).
- Pure: no I/O; :mod:`pillarbox.ical` evaluates the filters against stored objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from xml.etree.ElementTree import Element

from pillarbox.davxml import (
    CALDAV,
    DAV,
    BadRequestBody,
    OtherReport,
    PropFind,
    SyncCollection,
    TextMatch,
    asked_props,
    parse,
    sync_collection,
    tag,
    text_match,
)

#: RFC 4791 §9.9: time-range values are UTC date-times "with UTC time".
_UTC_FORMAT = "%Y%m%dT%H%M%SZ"


class UnsupportedFilter(Exception):
    """A calendar-query filter this server does not evaluate (RFC 4791 §7.7
    ``supported-filter``, 403)."""


class UnsupportedCalendarData(Exception):
    """A ``calendar-data`` asking for a media type or version this server does not answer
    (RFC 4791 §7.8 and §7.9 precondition ``supported-calendar-data``, 403)."""


@dataclass(frozen=True, slots=True)
class TimeRange:
    """RFC 4791 §9.9: ``[start, end)``, either end open."""

    start: datetime | None
    end: datetime | None


@dataclass(frozen=True, slots=True)
class PropFilter:
    """RFC 4791 §9.7.2: an iCalendar property present, absent, or matching a text."""

    name: str
    is_not_defined: bool = False
    text_match: TextMatch | None = None


@dataclass(frozen=True, slots=True)
class CompFilter:
    """RFC 4791 §9.7.1: a component present (with its own filters met) or absent."""

    name: str
    is_not_defined: bool = False
    time_range: TimeRange | None = None
    props: tuple[PropFilter, ...] = ()
    comps: tuple[CompFilter, ...] = ()


@dataclass(frozen=True, slots=True)
class PropSelect:
    """RFC 4791 §9.6.4: a property kept, with its value or (``novalue``) without."""

    name: str
    novalue: bool = False


@dataclass(frozen=True, slots=True)
class CompSelect:
    """RFC 4791 §9.6.1: a component kept, with the properties and components listed in it
    (None: all of them, for ``allprop``/``allcomp`` or an element that lists neither)."""

    name: str
    props: tuple[PropSelect, ...] | None = None
    comps: tuple[CompSelect, ...] | None = None


@dataclass(frozen=True, slots=True)
class CalendarData:
    """RFC 4791 §9.6: what of each object a REPORT answers; all None is the whole object."""

    comp: CompSelect | None = None
    expand: TimeRange | None = None  # §9.6.5
    limit_recurrence: TimeRange | None = None  # §9.6.6
    limit_freebusy: TimeRange | None = None  # §9.6.7

    @property
    def whole(self) -> bool:
        """Whether the object is answered as stored."""
        return self.comp is None and self.expand is None and self.limit_recurrence is None


@dataclass(frozen=True, slots=True)
class CalendarMultiget:
    """RFC 4791 §7.9."""

    props: PropFind
    hrefs: tuple[str, ...]
    data: CalendarData = CalendarData()


@dataclass(frozen=True, slots=True)
class CalendarSync:
    """RFC 6578 §3.2's ``sync-collection`` on a calendar, with the ``calendar-data`` asked
    (RFC 4791 §9.6)."""

    sync: SyncCollection
    data: CalendarData = CalendarData()


@dataclass(frozen=True, slots=True)
class CalendarQuery:
    props: PropFind
    filter: CompFilter
    data: CalendarData = CalendarData()


@dataclass(frozen=True, slots=True)
class FreeBusyQuery:
    """RFC 4791 §7.10: the busy time of a calendar within a range (both ends given here)."""

    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class PropertyUpdate:
    """A PROPPATCH (RFC 4918 §14.19) or MKCALENDAR (RFC 4791 §5.3.1) body: the properties set
    (name → element, in document order) and removed."""

    set: dict[str, Element]
    remove: tuple[str, ...] = ()


def _time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value.strip(), _UTC_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise BadRequestBody(f"time-range value {value[:40]!r} is not a UTC date-time") from None


def _time_range(element: Element | None) -> TimeRange | None:
    if element is None:
        return None
    found = TimeRange(_time(element.get("start")), _time(element.get("end")))
    if found.start is None and found.end is None:
        raise BadRequestBody("time-range needs a start or an end")  # RFC 4791 §9.9
    if found.start is not None and found.end is not None and found.end <= found.start:
        raise BadRequestBody("time-range ends before it starts")
    return found


def _prop_filter(element: Element) -> PropFilter:
    name = element.get("name", "").upper()
    if not name:
        raise BadRequestBody("prop-filter without a name")
    if element.find(tag(CALDAV, "time-range")) is not None:
        raise UnsupportedFilter("time-range on a property")
    if element.find(tag(CALDAV, "param-filter")) is not None:
        raise UnsupportedFilter("param-filter")
    matched = element.find(tag(CALDAV, "text-match"))
    return PropFilter(
        name=name,
        is_not_defined=element.find(tag(CALDAV, "is-not-defined")) is not None,
        text_match=None if matched is None else text_match(matched, "i;ascii-casemap"),
    )


def _comp_filter(element: Element) -> CompFilter:
    name = element.get("name", "").upper()
    if not name:
        raise BadRequestBody("comp-filter without a name")
    return CompFilter(
        name=name,
        is_not_defined=element.find(tag(CALDAV, "is-not-defined")) is not None,
        time_range=_time_range(element.find(tag(CALDAV, "time-range"))),
        props=tuple(_prop_filter(p) for p in element.findall(tag(CALDAV, "prop-filter"))),
        comps=tuple(_comp_filter(c) for c in element.findall(tag(CALDAV, "comp-filter"))),
    )


def _ends(element: Element) -> tuple[datetime, datetime]:
    """RFC 4791 §9.6.5-§9.6.7 (and §7.10 here): a range with both ends, UTC."""
    found = _time_range(element)
    if found is None or found.start is None or found.end is None:
        raise BadRequestBody(f"{element.tag} needs a start and an end")
    return found.start, found.end


def _bounded(element: Element) -> TimeRange:
    return TimeRange(*_ends(element))


def _comp_select(element: Element) -> CompSelect:
    name = element.get("name", "").upper()
    if not name:
        raise BadRequestBody("comp without a name")
    props = [
        PropSelect(p.get("name", "").upper(), p.get("novalue", "no") == "yes")
        for p in element.findall(tag(CALDAV, "prop"))
    ]
    if any(not p.name for p in props):
        raise BadRequestBody("prop without a name")
    comps = [_comp_select(c) for c in element.findall(tag(CALDAV, "comp"))]
    every_prop = element.find(tag(CALDAV, "allprop")) is not None
    every_comp = element.find(tag(CALDAV, "allcomp")) is not None
    if not (props or comps or every_prop or every_comp):
        # An element listing nothing keeps the component whole: RFC 4791 §7.8.1's example asks
        # for ``<C:comp name="VTIMEZONE"/>`` and answers the whole VTIMEZONE.
        return CompSelect(name)
    return CompSelect(
        name,
        None if every_prop else tuple(props),
        None if every_comp else tuple(comps),
    )


def calendar_data(root: Element) -> CalendarData:
    """What the ``prop``'s ``calendar-data`` of a multiget, query or sync asks for (§9.6)."""
    asked = root.find(f"{tag(DAV, 'prop')}/{tag(CALDAV, 'calendar-data')}")
    if asked is None:
        return CalendarData()
    if asked.get("content-type", "text/calendar").lower() != "text/calendar" or (
        asked.get("version", "2.0") != "2.0"
    ):
        raise UnsupportedCalendarData(asked.get("content-type", "")[:40])
    comp = asked.find(tag(CALDAV, "comp"))
    if comp is not None and comp.get("name", "").upper() != "VCALENDAR":
        raise BadRequestBody("calendar-data's comp is VCALENDAR")  # RFC 4791 §9.6.1
    ranges = {
        name: _bounded(found) if (found := asked.find(tag(CALDAV, name))) is not None else None
        for name in ("expand", "limit-recurrence-set", "limit-freebusy-set")
    }
    if ranges["expand"] is not None and ranges["limit-recurrence-set"] is not None:
        raise BadRequestBody("expand or limit-recurrence-set, not both")  # RFC 4791 §9.6
    return CalendarData(
        None if comp is None else _comp_select(comp),
        ranges["expand"],
        ranges["limit-recurrence-set"],
        ranges["limit-freebusy-set"],
    )


def report(
    body: bytes,
) -> CalendarMultiget | CalendarQuery | FreeBusyQuery | CalendarSync | OtherReport:
    """A REPORT on a calendar."""
    root = parse(body)
    if root.tag == tag(CALDAV, "calendar-multiget"):
        hrefs = tuple((h.text or "").strip() for h in root.findall(tag(DAV, "href")))
        return CalendarMultiget(asked_props(root), hrefs, calendar_data(root))
    if root.tag == tag(CALDAV, "calendar-query"):
        # RFC 4791 §9.7: exactly one comp-filter, for VCALENDAR, in the filter.
        top = root.findall(f"{tag(CALDAV, 'filter')}/{tag(CALDAV, 'comp-filter')}")
        if len(top) != 1 or top[0].get("name", "").upper() != "VCALENDAR":
            raise BadRequestBody("calendar-query needs one VCALENDAR comp-filter")
        return CalendarQuery(asked_props(root), _comp_filter(top[0]), calendar_data(root))
    if root.tag == tag(CALDAV, "free-busy-query"):
        # RFC 4791 §7.10: exactly one time-range.
        ranges = root.findall(tag(CALDAV, "time-range"))
        if len(ranges) != 1:
            raise BadRequestBody("free-busy-query needs one time-range")
        return FreeBusyQuery(*_ends(ranges[0]))
    if root.tag == tag(DAV, "sync-collection"):
        return CalendarSync(sync_collection(root), calendar_data(root))
    return OtherReport(root.tag)


def property_update(body: bytes, root_tag: str) -> PropertyUpdate:
    """A PROPPATCH (``root_tag`` DAV:propertyupdate) or MKCALENDAR (CALDAV:mkcalendar) body;
    an empty MKCALENDAR body sets nothing."""
    if not body.strip():
        return PropertyUpdate({})
    root = parse(body)
    if root.tag != root_tag:
        raise BadRequestBody(f"expected {root_tag}")
    found: dict[str, Element] = {}
    removed: list[str] = []
    for instruction in root:
        if instruction.tag not in (tag(DAV, "set"), tag(DAV, "remove")):
            continue
        for prop in instruction.iterfind(f"{tag(DAV, 'prop')}/*"):
            if instruction.tag == tag(DAV, "set"):
                found[prop.tag] = prop
            else:
                removed.append(prop.tag)
    return PropertyUpdate(found, tuple(removed))
