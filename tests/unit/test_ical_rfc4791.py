"""RFC 4791 on iCalendar objects (pillarbox.ical) and CalDAV request bodies
(pillarbox.caldavxml): the §4.1 checks on PUT, the stored time bounds, §9.7 filters and §9.9
time ranges over recurrences, as tables."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from pillarbox import caldavxml, davxml, ical
from pillarbox.caldavxml import CompFilter, PropFilter, TimeRange
from pillarbox.davxml import BadRequestBody, OtherReport, TextMatch
from pillarbox.testing.icalendars import NEW_YORK, WEEKLY, event


def utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


ONE = event("one", "20250301T100000Z").encode()
#: A to-do without dates.
TODO = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VTODO\r\nUID:t\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"


#: An endless weekly series from the year 4050 and a second VEVENT of its UID without a
#: RECURRENCE-ID in 2025 (fuzz/ical.py's finding, minimised).
TWO_SERIES = (
    event("x", "40500210T090000Z", extra="RRULE:FREQ=WEEKLY\r\n")
    .replace(
        "END:VCALENDAR",
        "BEGIN:VEVENT\r\nUID:x\r\nDTSTAMP:20250101T000000Z\r\nDTSTART:20250121T140000Z\r\n"
        "END:VEVENT\r\nEND:VCALENDAR",
    )
    .encode()
)
#: A second override of WEEKLY's moved instance.
_MOVED_AGAIN = (
    "BEGIN:VEVENT\r\nUID:weekly-1\r\nDTSTAMP:20250101T000000Z\r\n"
    "RECURRENCE-ID;TZID=Europe/Paris:20250120T090000\r\n"
    "DTSTART;TZID=Europe/Paris:20250122T090000\r\nDURATION:PT1H\r\nEND:VEVENT\r\n"
)


@pytest.mark.parametrize(
    ("body", "condition"),
    [
        (b"\xff\xfe not UTF-8", "valid-calendar-data"),
        (b"BEGIN:VCALENDAR\r\nno colon\r\nEND:VCALENDAR\r\n", "valid-calendar-data"),
        (ONE.replace(b"VERSION:2.0", b"VERSION:1.0"), "valid-calendar-data"),
        (ONE.replace(b"DTSTART:20250301T100000Z", b"DTSTART:x"), "valid-calendar-data"),
        # Found by fuzz/ical.py: a repeated UID made the recurrence library raise TypeError,
        # a repeated TZID made the parser raise AttributeError.
        (ONE.replace(b"UID:one", b"UID:one\r\nUID:two"), "valid-calendar-data"),
        (
            ONE.replace(
                b"BEGIN:VEVENT",
                b"BEGIN:VTIMEZONE\r\nTZID:a\r\nTZID:b\r\nEND:VTIMEZONE\r\nBEGIN:VEVENT",
            ),
            "valid-calendar-data",
        ),
        (ONE + ONE, "valid-calendar-object-resource"),
        (
            ONE.replace(b"VERSION:2.0", b"VERSION:2.0\r\nMETHOD:PUBLISH"),
            "valid-calendar-object-resource",
        ),
        (ONE.replace(b"UID:one\r\n", b""), "valid-calendar-object-resource"),
        (
            ONE.replace(
                b"END:VCALENDAR",
                b"BEGIN:VTODO\r\nUID:one\r\nEND:VTODO\r\nEND:VCALENDAR",
            ),
            "valid-calendar-object-resource",
        ),
        # RFC 5545 §3.8.4.4: one series per UID, one override per instance (found by
        # fuzz/ical.py: the library drops the second, the bounds counted it).
        (TWO_SERIES, "valid-calendar-object-resource"),
        (
            WEEKLY.replace("END:VCALENDAR", _MOVED_AGAIN + "END:VCALENDAR").encode(),
            "valid-calendar-object-resource",
        ),
        # RFC 5545 §3.1: no control character but HTAB (a form feed was kept, and every
        # REPORT's calendar-data then was XML no client could read).
        (ONE.replace(b"SUMMARY:Meeting", b"SUMMARY:a\x0cb"), "valid-calendar-data"),
        (ONE.replace(b"SUMMARY:Meeting", b"SUMMARY:a\x1bb"), "valid-calendar-data"),
        (ONE.replace(b"SUMMARY:Meeting", "SUMMARY:a\uffffb".encode()), "valid-calendar-data"),
        (WEEKLY.replace("END:VTIMEZONE", "END:VEVENT", 1).encode(), "valid-calendar-data"),
        (ONE.replace(b"END:VCALENDAR", b"END:VEVENT\r\nEND:VCALENDAR"), "valid-calendar-data"),
        # RFC 5545 §3.8.2.2, §3.8.2.3: no component ends before it starts (found by
        # fuzz/ical.py: the recurrence library widens each query by the negative duration,
        # and a time-range REPORT on this series expanded 855 years of it, 8 s a query).
        (
            event("w", "20250106T090000Z", extra="RRULE:FREQ=WEEKLY\r\n")
            .replace("DURATION:PT1H", "DTEND:11700502T093000Z")
            .encode(),
            "valid-calendar-data",
        ),
        (ONE.replace(b"DURATION:PT1H", b"DURATION:-P1D"), "valid-calendar-data"),
        (
            TODO.replace(b"UID:t", b"UID:t\r\nDTSTART:20250106T090000Z\r\nDUE:20250105T090000Z"),
            "valid-calendar-data",
        ),
        (ONE.replace(b"VEVENT", b"VJOURNAL"), "supported-calendar-component"),
        (ONE.replace(b"VEVENT", b"VFREEBUSY"), "supported-calendar-component"),
    ],
)
def test_objects_refused_with_their_precondition(body: bytes, condition: str) -> None:
    with pytest.raises(ical.InvalidObject) as refused:
        ical.read_object(body, max_instances=100)
    assert refused.value.condition == condition


@pytest.mark.parametrize(
    ("body", "starts", "ends"),
    [
        (ONE, "20250301T100000Z", "20250301T110000Z"),
        # Ten weekly instances, the first at 08:00 UTC, the last (10 March) ending 08:30.
        (WEEKLY.encode(), "20250106T080000Z", "20250310T083000Z"),
        (
            event("d", "20250101T070000Z", extra="RRULE:FREQ=DAILY\r\n").encode(),
            "20250101T070000Z",
            None,
        ),
        (
            event("c", "20250101T070000Z", extra="RRULE:FREQ=DAILY;COUNT=101\r\n").encode(),
            "20250101T070000Z",
            None,  # more instances than max_instances: open-ended
        ),
        (
            event(
                "u", "20250101T070000Z", extra="RRULE:FREQ=DAILY;UNTIL=20250105T070000Z\r\n"
            ).encode(),
            "20250101T070000Z",
            "20250105T080000Z",
        ),
        (
            TODO,
            None,
            None,
        ),
        # RFC 5545 §3.8.2.3: a DUE "equal to or after" DTSTART: an instant, accepted.
        (
            TODO.replace(b"UID:t", b"UID:t\r\nDTSTART:20250106T090000Z\r\nDUE:20250106T090000Z"),
            "20250106T090000Z",
            "20250106T090000Z",
        ),
    ],
)
def test_bounds_are_the_instances_widened(
    body: bytes, starts: str | None, ends: str | None
) -> None:
    info = ical.read_object(body, max_instances=100)
    assert info.starts == (None if starts is None else utc(starts) - ical.SLACK)
    assert info.ends == (None if ends is None else utc(ends) + ical.SLACK)


def _in(body: bytes, start: str | None, end: str | None, kind: str = "VEVENT") -> bool:
    window = TimeRange(start and utc(start), end and utc(end))
    query = CompFilter("VCALENDAR", comps=(CompFilter(kind, time_range=window),))
    (passed,) = ical.select([body], query, 100)
    return passed


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("20250106T080000Z", "20250106T080100Z", True),  # the first instance
        ("20250106T083000Z", "20250106T090000Z", False),  # ends as the range starts
        ("20250106T070000Z", "20250106T080000Z", False),  # ends as the instance starts
        ("20250113T000000Z", "20250114T000000Z", False),  # EXDATE
        ("20250120T080000Z", "20250120T083000Z", False),  # overridden: moved away
        ("20250121T130000Z", "20250121T131000Z", True),  # ...to here
        ("20250310T080000Z", "20250310T081000Z", True),  # the tenth
        ("20250317T080000Z", "20250317T081000Z", False),  # no eleventh
        ("20250311T000000Z", None, False),
        (None, "20250106T080001Z", True),
    ],
)
def test_time_range_over_a_recurring_series(
    start: str | None, end: str | None, expected: bool
) -> None:
    assert _in(WEEKLY.encode(), start, end) is expected


def test_endless_series_are_not_expanded_past_the_limit() -> None:
    """An endless daily series asked about past ``max_instances`` days from its start is
    answered as matching without expansion (the cost is bounded, not the answer exact); a
    range before it starts is not in it, whatever the limit."""
    daily = event("d", "20250101T070000Z", extra="RRULE:FREQ=DAILY\r\n").encode()
    window = TimeRange(utc("20250201T000000Z"), utc("20250201T060000Z"))  # no instance
    query = CompFilter("VCALENDAR", comps=(CompFilter("VEVENT", time_range=window),))
    assert ical.select([daily], query, 100) == [False]  # 31 days in: expanded, exact
    assert ical.select([daily], query, 10) == [True]  # past the limit: not expanded
    before = TimeRange(None, utc("20241201T000000Z"))
    early = CompFilter("VCALENDAR", comps=(CompFilter("VEVENT", time_range=before),))
    assert ical.select([daily], early, 10) == [False]
    minutely = event("m", "20250101T070000Z", extra="RRULE:FREQ=MINUTELY\r\n").encode()
    far = TimeRange(utc("20990101T000000Z"), None)
    late = CompFilter("VCALENDAR", comps=(CompFilter("VEVENT", time_range=far),))
    assert ical.select([minutely], late, 1000) == [True]  # at once, not 39 million instances


def test_an_instance_lasting_centuries_is_walked_past_at_once() -> None:
    """Found by fuzz/ical.py: the recurrence library's ``after`` halves its window while it
    finds an instance, and an instance lasting 3,000 years is in every window: a PUT walked
    them 15 minutes at a time (a worker thread kept for hours). Minimised: an instance whose
    RECURRENCE-ID names no instance of the series stands alone."""
    data = (
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:u\r\n"
        b"DTSTART:20250106T090000Z\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:u\r\n"
        b"RECURRENCE-ID;TZID=Nowhere/Else:20250120T090000\r\nDTSTART:20250121T140000Z\r\n"
        b"DTEND:52200121T143000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    started = time.perf_counter()
    info = ical.read_object(data, max_instances=100)
    assert info.ends == utc("52200122T143000Z")  # the end, widened by a day
    late = TimeRange(utc("30000101T000000Z"), None)
    query = CompFilter("VCALENDAR", comps=(CompFilter("VEVENT", time_range=late),))
    assert ical.select([data], query, 100) == [True]
    assert time.perf_counter() - started < 5.0


def test_a_stored_object_ending_before_it_starts_is_queried_at_once() -> None:
    """An object kept before PUT refused a component ending before it starts (a negative
    duration had the recurrence library expand 855 years of a weekly series for every
    time-range query: 8 s) is read without its end: each query is as fast as any other's,
    its instances taken as lasting no time (RFC 5545 §3.6.1)."""
    data = (
        event("w", "20250106T090000Z", extra="RRULE:FREQ=WEEKLY\r\n")
        .replace("DURATION:PT1H", "DTEND:11700502T093000Z")
        .encode()
    )
    window = TimeRange(utc("20250113T000000Z"), utc("20250114T000000Z"))
    query = CompFilter("VCALENDAR", comps=(CompFilter("VEVENT", time_range=window),))
    started = time.perf_counter()
    assert ical.select([data], query, 100) == [True]
    [found] = ical.occurrences(data, window.start, window.end, 100)
    assert found.start == found.end == utc("20250113T090000Z")
    busy = ical.free_busy([data], window.start, window.end, window.start, 100)
    assert "FBTYPE" not in busy  # an instant is no busy time
    assert time.perf_counter() - started < 1.0


def test_time_range_edges_of_single_events() -> None:
    instant = event("i", "20250301T100000Z").replace("DURATION:PT1H", "DURATION:PT0S").encode()
    # RFC 4791 §9.9: an event of no duration is in a range starting at it, not one ending at it.
    assert _in(instant, "20250301T100000Z", "20250301T110000Z")
    assert not _in(instant, "20250301T090000Z", "20250301T100000Z")
    all_day = (
        event("a", "20250301T100000Z")
        .replace("DTSTART:20250301T100000Z", "DTSTART;VALUE=DATE:20250301")
        .replace("DURATION:PT1H\r\n", "")
        .encode()
    )
    assert _in(all_day, "20250301T230000Z", "20250302T000000Z")
    assert not _in(all_day, "20250302T000000Z", "20250303T000000Z")
    assert _in(TODO, "20250101T000000Z", "20250102T000000Z", "VTODO")  # undated: any range
    assert not _in(TODO, "20250101T000000Z", "20250102T000000Z", "VEVENT")


def test_prop_filters() -> None:
    def passes(*props: PropFilter) -> bool:
        query = CompFilter("VCALENDAR", comps=(CompFilter("VEVENT", props=props),))
        (passed,) = ical.select([ONE], query, 100)
        return passed

    assert passes(PropFilter("UID", text_match=TextMatch("ON", "i;ascii-casemap")))
    assert not passes(PropFilter("UID", text_match=TextMatch("ON", "i;octet")))
    assert passes(PropFilter("UID", text_match=TextMatch("x", "i;ascii-casemap", negate=True)))
    assert passes(PropFilter("RRULE", is_not_defined=True))
    assert not passes(PropFilter("SUMMARY", is_not_defined=True))
    assert passes(PropFilter("SUMMARY"))
    assert not passes(
        PropFilter("LOCATION", text_match=TextMatch("x", "i;ascii-casemap", negate=True))
    )


NS = 'xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"'


def test_reports_read() -> None:
    multiget = caldavxml.report(
        f"<c:calendar-multiget {NS}><d:prop><c:calendar-data/></d:prop>"
        "<d:href> /dav/calendars/a@b/personal/x.ics </d:href></c:calendar-multiget>".encode()
    )
    assert isinstance(multiget, caldavxml.CalendarMultiget)
    assert multiget.data.whole
    assert multiget.hrefs == ("/dav/calendars/a@b/personal/x.ics",)
    assert multiget.props.names == ("{urn:ietf:params:xml:ns:caldav}calendar-data",)
    query = caldavxml.report(
        f'<c:calendar-query {NS}><c:filter><c:comp-filter name="vcalendar">'
        '<c:comp-filter name="VTODO"><c:time-range end="20250101T000000Z"/>'
        '<c:prop-filter name="summary"><c:text-match negate-condition="yes">x</c:text-match>'
        "</c:prop-filter></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>".encode()
    )
    assert isinstance(query, caldavxml.CalendarQuery)
    assert query.filter == CompFilter(
        "VCALENDAR",
        comps=(
            CompFilter(
                "VTODO",
                time_range=TimeRange(None, utc("20250101T000000Z")),
                props=(
                    PropFilter(
                        "SUMMARY", text_match=TextMatch("x", "i;ascii-casemap", negate=True)
                    ),
                ),
            ),
        ),
    )
    sync = caldavxml.report(
        f"<d:sync-collection {NS}><d:sync-token>t</d:sync-token><d:limit><d:nresults>5"
        "</d:nresults></d:limit><d:prop><d:getetag/></d:prop></d:sync-collection>".encode()
    )
    assert isinstance(sync, caldavxml.CalendarSync)
    assert sync.sync == davxml.SyncCollection(sync.sync.props, "t", 5)
    assert sync.data.whole  # no calendar-data asked: the objects as stored
    free_busy = caldavxml.report(
        f'<c:free-busy-query {NS}><c:time-range start="20250101T000000Z" '
        'end="20250201T000000Z"/></c:free-busy-query>'.encode()
    )
    assert free_busy == caldavxml.FreeBusyQuery(utc("20250101T000000Z"), utc("20250201T000000Z"))
    assert isinstance(caldavxml.report(f"<c:schedule-query {NS}/>".encode()), OtherReport)


def _query(inner: str) -> str:
    """A calendar-query whose VCALENDAR filter holds ``inner``."""
    return (
        f'<c:calendar-query {NS}><c:filter><c:comp-filter name="VCALENDAR">{inner}'
        "</c:comp-filter></c:filter></c:calendar-query>"
    )


def _data(inner: str, attributes: str = "") -> str:
    """A calendar-multiget asking for ``calendar-data`` holding ``inner``."""
    return (
        f"<c:calendar-multiget {NS}><d:prop><d:getetag/><c:calendar-data{attributes}>{inner}"
        "</c:calendar-data></d:prop><d:href>x.ics</d:href></c:calendar-multiget>"
    )


@pytest.mark.parametrize(
    "body",
    [
        f"<c:calendar-query {NS}><c:filter/></c:calendar-query>",
        _query("").replace("VCALENDAR", "VEVENT"),
        _query('<c:comp-filter name="VEVENT"><c:time-range/></c:comp-filter>'),
        _query(
            '<c:comp-filter name="VEVENT">'
            '<c:time-range start="20250102T000000Z" end="20250101T000000Z"/></c:comp-filter>'
        ),
        _query('<c:comp-filter name="VEVENT"><c:time-range start="2025-01-01"/></c:comp-filter>'),
        # RFC 4791 §7.10: one time-range, here with both ends.
        f"<c:free-busy-query {NS}/>",
        f'<c:free-busy-query {NS}><c:time-range start="20250101T000000Z"/></c:free-busy-query>',
        # §9.6: expand and limit-recurrence-set take both ends; one or the other; VCALENDAR.
        _data('<c:expand start="20250101T000000Z"/>'),
        _data(
            '<c:expand start="20250101T000000Z" end="20250201T000000Z"/>'
            '<c:limit-recurrence-set start="20250101T000000Z" end="20250201T000000Z"/>'
        ),
        _data('<c:comp name="VEVENT"/>'),
        _data('<c:comp name="VCALENDAR"><c:prop/></c:comp>'),
    ],
)
def test_bad_queries_are_400(body: str) -> None:
    with pytest.raises(BadRequestBody):
        caldavxml.report(body.encode())


def test_filters_not_evaluated_are_refused() -> None:
    with pytest.raises(caldavxml.UnsupportedFilter):
        caldavxml.report(
            f'<c:calendar-query {NS}><c:filter><c:comp-filter name="VCALENDAR">'
            '<c:comp-filter name="VEVENT"><c:prop-filter name="DTSTAMP">'
            '<c:time-range start="20250101T000000Z"/></c:prop-filter></c:comp-filter>'
            "</c:comp-filter></c:filter></c:calendar-query>".encode()
        )
    deep = CompFilter(
        "VCALENDAR",
        comps=(
            CompFilter(
                "VEVENT",
                comps=(CompFilter("VALARM", time_range=TimeRange(None, utc("20250101T000000Z"))),),
            ),
        ),
    )
    with pytest.raises(caldavxml.UnsupportedFilter):
        ical.select([WEEKLY.encode()], deep, 100)


@pytest.mark.parametrize(
    ("query", "kinds"),
    [
        (CompFilter("VCALENDAR"), {"VEVENT", "VTODO"}),
        (CompFilter("VCALENDAR", comps=(CompFilter("VTODO"),)), {"VTODO"}),
        (CompFilter("VCALENDAR", comps=(CompFilter("VTODO"), CompFilter("VEVENT"))), set()),
        (CompFilter("VCALENDAR", comps=(CompFilter("VTIMEZONE"),)), None),
        (CompFilter("VCALENDAR", comps=(CompFilter("VEVENT", is_not_defined=True),)), None),
        (CompFilter("VCALENDAR", comps=(CompFilter("VEVENT", props=(PropFilter("UID"),)),)), None),
        (
            CompFilter(
                "VCALENDAR",
                comps=(CompFilter("VEVENT", time_range=TimeRange(None, utc("20250101T000000Z"))),),
            ),
            None,
        ),
    ],
)
def test_filters_answered_by_the_stored_type(query: CompFilter, kinds: set[str] | None) -> None:
    """A filter naming only types is answered without parsing; it agrees with the parse."""
    found = ical.kinds_only(query)
    assert found == (None if kinds is None else frozenset(kinds))
    if found is not None:
        assert ical.select([ONE, TODO], query, 100) == ["VEVENT" in found, "VTODO" in found]


# -- calendar-data (RFC 4791 §9.6) -----------------------------------------------------------------

JANUARY_START, JANUARY_END = utc("20250101T000000Z"), utc("20250125T000000Z")
JANUARY = TimeRange(JANUARY_START, JANUARY_END)
#: RFC 4791 §7.8.1's example, narrowed to what WEEKLY has.
SUMMARIES = (
    '<c:comp name="VCALENDAR"><c:prop name="VERSION"/><c:comp name="VEVENT">'
    '<c:prop name="SUMMARY"/><c:prop name="description"/><c:prop name="DTSTART" novalue="yes"/>'
    '</c:comp><c:comp name="VTIMEZONE"/></c:comp>'
)


@pytest.mark.parametrize(
    ("inner", "data"),
    [
        ("", caldavxml.CalendarData()),
        (
            SUMMARIES,
            caldavxml.CalendarData(
                caldavxml.CompSelect(
                    "VCALENDAR",
                    (caldavxml.PropSelect("VERSION"),),
                    (
                        caldavxml.CompSelect(
                            "VEVENT",
                            (
                                caldavxml.PropSelect("SUMMARY"),
                                caldavxml.PropSelect("DESCRIPTION"),
                                caldavxml.PropSelect("DTSTART", novalue=True),
                            ),
                            (),
                        ),
                        caldavxml.CompSelect("VTIMEZONE"),
                    ),
                )
            ),
        ),
        (
            '<c:comp name="VCALENDAR"><c:allprop/><c:allcomp/></c:comp>',
            caldavxml.CalendarData(caldavxml.CompSelect("VCALENDAR")),
        ),
        (
            '<c:comp name="VCALENDAR"><c:allprop/></c:comp>',
            caldavxml.CalendarData(caldavxml.CompSelect("VCALENDAR", None, ())),
        ),
        (
            '<c:expand start="20250101T000000Z" end="20250125T000000Z"/>',
            caldavxml.CalendarData(expand=JANUARY),
        ),
        (
            '<c:limit-recurrence-set start="20250101T000000Z" end="20250125T000000Z"/>'
            '<c:limit-freebusy-set start="20250101T000000Z" end="20250125T000000Z"/>',
            caldavxml.CalendarData(limit_recurrence=JANUARY, limit_freebusy=JANUARY),
        ),
    ],
)
def test_calendar_data_read(inner: str, data: caldavxml.CalendarData) -> None:
    asked = caldavxml.report(_data(inner).encode())
    assert isinstance(asked, caldavxml.CalendarMultiget) and asked.data == data
    query = _query("").replace(
        "<c:filter>", f"<d:prop><c:calendar-data>{inner}</c:calendar-data></d:prop><c:filter>"
    )
    found = caldavxml.report(query.encode())
    assert isinstance(found, caldavxml.CalendarQuery) and found.data == data


@pytest.mark.parametrize(
    "attributes", [' content-type="application/calendar+json"', ' version="1.0"']
)
def test_calendar_data_of_another_type_is_refused(attributes: str) -> None:
    with pytest.raises(caldavxml.UnsupportedCalendarData):
        caldavxml.report(_data("", attributes).encode())
    caldavxml.report(_data("", ' content-type="text/calendar" version="2.0"').encode())


def _rendered(data: str, wanted: caldavxml.CalendarData, timezone: str = "") -> str:
    (text,) = ical.render([data.encode()], wanted, 100, timezone)
    return text


def test_narrowing_keeps_the_stored_lines() -> None:
    """§9.6.1-§9.6.4: the lines asked for, byte for byte (folding, CRLF, parameters kept);
    ``novalue`` keeps the parameters; an empty ``comp`` is the whole component."""
    asked = caldavxml.report(_data(SUMMARIES).encode())
    assert isinstance(asked, caldavxml.CalendarMultiget)
    narrowed = _rendered(WEEKLY, asked.data)
    vtimezone = WEEKLY[WEEKLY.index("BEGIN:VTIMEZONE") : WEEKLY.index("BEGIN:VEVENT")]
    assert narrowed == (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"
        + vtimezone
        + "BEGIN:VEVENT\r\nDTSTART;TZID=Europe/Paris:\r\nSUMMARY:Réunion d'équipe\r\n"
        "DESCRIPTION:A long description that a client folds at seve\r\n"
        " nty-five octets, as RFC 5545 §3.1 says.\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\nDTSTART;TZID=Europe/Paris:\r\nSUMMARY:Réunion d'équipe (moved)\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    every = caldavxml.CalendarData(caldavxml.CompSelect("VCALENDAR"))
    assert _rendered(WEEKLY, every) == WEEKLY
    no_alarm = caldavxml.CalendarData(
        caldavxml.CompSelect("VCALENDAR", None, (caldavxml.CompSelect("VEVENT", None, ()),))
    )
    alarm = WEEKLY[WEEKLY.index("BEGIN:VALARM") : WEEKLY.index("END:VALARM\r\n") + 12]
    vtimezone_gone = WEEKLY.replace(vtimezone, "")
    assert _rendered(WEEKLY, no_alarm) == vtimezone_gone.replace(alarm, "")
    quoted = event(
        "q", "20250301T100000Z", extra='ATTENDEE;CN="Doe: Jane":mailto:j@example.org\r\n'
    )
    attendees = caldavxml.CalendarData(
        caldavxml.CompSelect(
            "VCALENDAR",
            (),
            (caldavxml.CompSelect("VEVENT", (caldavxml.PropSelect("ATTENDEE", True),), ()),),
        )
    )
    assert _rendered(quoted, attendees) == (
        'BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nATTENDEE;CN="Doe: Jane":\r\nEND:VEVENT\r\n'
        "END:VCALENDAR\r\n"
    )


def test_expand_gives_each_instance_in_utc() -> None:
    """§9.6.5: one component per instance in the range, RECURRENCE-ID, no RRULE/EXDATE, no
    VTIMEZONE, times with a TZID in UTC."""
    expanded = _rendered(WEEKLY, caldavxml.CalendarData(expand=JANUARY))
    assert "VTIMEZONE" not in expanded and "TZID" not in expanded
    assert "RRULE" not in expanded and "EXDATE" not in expanded and "RDATE" not in expanded
    instances = expanded.split("BEGIN:VEVENT\r\n")[1:]
    starts = [line for i in instances for line in i.split("\r\n") if line.startswith("DTSTART")]
    ids = [line for i in instances for line in i.split("\r\n") if line.startswith("RECURRENCE-ID")]
    # The 13th is an EXDATE, the 20th moved to the 21st (at 14:00 Paris).
    assert starts == ["DTSTART:20250106T080000Z", "DTSTART:20250121T130000Z"]
    assert ids == ["RECURRENCE-ID:20250106T080000Z", "RECURRENCE-ID:20250120T080000Z"]
    assert "BEGIN:VALARM" in instances[0]
    # Floating times stay floating (§9.6.5 converts only those with a zone), and are read in
    # the calendar's zone: 10:00 in New York is 15:00 UTC.
    floating = event("f", "20250301T100000", extra="RRULE:FREQ=DAILY;COUNT=3\r\n")
    afternoon = caldavxml.CalendarData(
        expand=TimeRange(utc("20250302T143000Z"), utc("20250302T153000Z"))
    )
    assert "DTSTART:20250302T100000\r\n" in _rendered(floating, afternoon, NEW_YORK)
    assert "BEGIN:VEVENT" not in _rendered(floating, afternoon)  # 10:00 UTC without a zone


def test_expand_past_max_instances_is_refused() -> None:
    daily = event("d", "20250101T070000Z", extra="RRULE:FREQ=DAILY\r\n").encode()
    years = caldavxml.CalendarData(
        expand=TimeRange(utc("20250101T000000Z"), utc("20300101T000000Z"))
    )
    with pytest.raises(ical.TooManyInstances):
        ical.render([daily], years, 100)
    week = caldavxml.CalendarData(
        expand=TimeRange(utc("20250101T000000Z"), utc("20250108T000000Z"))
    )
    assert ical.render([daily], week, 100)[0].count("BEGIN:VEVENT") == 7


@pytest.mark.parametrize(
    ("start", "end", "moved_kept"),
    [
        ("20250101T000000Z", "20250110T000000Z", False),
        ("20250120T000000Z", "20250120T120000Z", True),  # the instance it replaces
        ("20250121T130000Z", "20250121T140000Z", True),  # where it is now
        ("20250122T000000Z", "20250201T000000Z", False),
    ],
)
def test_limit_recurrence_set_keeps_the_overrides_in_range(
    start: str, end: str, moved_kept: bool
) -> None:
    """§9.6.6: the master always, an overridden instance only in the range."""
    wanted = caldavxml.CalendarData(limit_recurrence=TimeRange(utc(start), utc(end)))
    limited = _rendered(WEEKLY, wanted)
    assert ("(moved)" in limited) is moved_kept
    assert "RRULE:FREQ=WEEKLY;COUNT=10" in limited
    assert (limited == WEEKLY) is moved_kept  # nothing left out: as stored


ALL_DAY = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:d\r\n"
    "DTSTAMP:20250101T000000Z\r\nDTSTART;VALUE=DATE:20250301\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


@pytest.mark.parametrize(
    ("data", "start", "end", "utc_match", "new_york_match"),
    [
        # An all-day event is 1 March from midnight to midnight where the calendar is.
        (ALL_DAY, "20250301T020000Z", "20250301T030000Z", True, False),
        (ALL_DAY, "20250302T030000Z", "20250302T040000Z", False, True),
        # A floating 10:00 is 10:00 UTC, or 15:00 UTC in New York.
        (
            event("f", "20250301T100000"),
            "20250301T100000Z",
            "20250301T103000Z",
            True,
            False,
        ),
        (event("f", "20250301T100000"), "20250301T150000Z", "20250301T153000Z", False, True),
        # A time with its zone is the same instant whatever the calendar's.
        (WEEKLY, "20250106T080000Z", "20250106T081000Z", True, True),
    ],
)
def test_floating_times_and_dates_are_in_the_calendars_zone(
    data: str, start: str, end: str, utc_match: bool, new_york_match: bool
) -> None:
    """§9.9: floating times and dates in a time-range test are read in the
    ``calendar-timezone``, UTC when the calendar has none."""
    query = CompFilter(
        "VCALENDAR", comps=(CompFilter("VEVENT", time_range=TimeRange(utc(start), utc(end))),)
    )
    assert ical.select([data.encode()], query, 100) == [utc_match]
    assert ical.select([data.encode()], query, 100, NEW_YORK) == [new_york_match]


# -- free-busy-query (RFC 4791 §7.10) --------------------------------------------------------------


def test_free_busy_from_opaque_events_not_cancelled() -> None:
    objects = [
        WEEKLY,
        event("overlapping", "20250106T081500Z"),  # merged with the weekly's 08:00-08:30
        event("tentative", "20250107T081500Z", extra="STATUS:TENTATIVE\r\n"),
        event("free", "20250108T081500Z", extra="TRANSP:TRANSPARENT\r\n"),
        event("cancelled", "20250109T081500Z", extra="STATUS:CANCELLED\r\n"),
        event("cut", "20250124T233000Z"),  # cut at the range's end
        event("outside", "20250301T081500Z"),
        TODO.decode(),
    ]
    answered = ical.free_busy(
        [o.encode() for o in objects],
        JANUARY_START,
        JANUARY_END,
        utc("20250301T120000Z"),
        100,
    )
    assert answered == (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Pillarbox//Pillarbox//EN\r\n"
        "BEGIN:VFREEBUSY\r\nDTSTAMP:20250301T120000Z\r\n"
        "DTSTART:20250101T000000Z\r\nDTEND:20250125T000000Z\r\n"
        "FREEBUSY;FBTYPE=BUSY:20250106T080000Z/20250106T091500Z\r\n"
        "FREEBUSY;FBTYPE=BUSY-TENTATIVE:20250107T081500Z/20250107T091500Z\r\n"
        "FREEBUSY;FBTYPE=BUSY:20250121T130000Z/20250121T133000Z\r\n"
        "FREEBUSY;FBTYPE=BUSY:20250124T233000Z/20250125T000000Z\r\n"
        "END:VFREEBUSY\r\nEND:VCALENDAR\r\n"
    )
    # The all-day event is busy for the day where the calendar is.
    new_york = ical.free_busy(
        [ALL_DAY.encode()],
        utc("20250301T000000Z"),
        utc("20250303T000000Z"),
        utc("20250301T000000Z"),
        100,
        NEW_YORK,
    )
    assert "FREEBUSY;FBTYPE=BUSY:20250301T050000Z/20250302T050000Z\r\n" in new_york
    daily = event("d", "20250101T070000Z", extra="RRULE:FREQ=DAILY\r\n").encode()
    with pytest.raises(ical.TooManyInstances):
        ical.free_busy(
            [daily], utc("20300101T000000Z"), utc("20300102T000000Z"), utc("20250101T000000Z"), 100
        )
