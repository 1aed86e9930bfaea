"""RFC 4791 on iCalendar objects (pillarbox.ical) and CalDAV request bodies
(pillarbox.caldavxml): the §4.1 checks on PUT, the stored time bounds, §9.7 filters and §9.9
time ranges over recurrences, as tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pillarbox import caldavxml, davxml, ical
from pillarbox.caldavxml import CompFilter, PropFilter, TimeRange
from pillarbox.davxml import BadRequestBody, Multiget, OtherReport, TextMatch
from pillarbox.testing.icalendars import WEEKLY, event


def utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


ONE = event("one", "20250301T100000Z").encode()
#: A to-do without dates.
TODO = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VTODO\r\nUID:t\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"


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
    assert isinstance(multiget, Multiget)
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
    assert sync == davxml.SyncCollection(sync.props, "t", 5)  # type: ignore[union-attr]
    assert isinstance(caldavxml.report(f"<c:free-busy-query {NS}/>".encode()), OtherReport)


def _query(inner: str) -> str:
    """A calendar-query whose VCALENDAR filter holds ``inner``."""
    return (
        f'<c:calendar-query {NS}><c:filter><c:comp-filter name="VCALENDAR">{inner}'
        "</c:comp-filter></c:filter></c:calendar-query>"
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
