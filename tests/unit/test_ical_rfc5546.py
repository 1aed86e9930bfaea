"""The webmail's iCalendar writing (pillarbox.ical): the iTIP REPLY (RFC 5546 §3.2.3), the
REQUEST stored as a calendar object (RFC 4791 §4.1), the event form → VEVENT (RFC 5545
§3.6.1) and an edit that keeps what the form does not show; and the form's checks
(pillarbox.web.calendarpage)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest
from starlette.datastructures import FormData

from pillarbox import ical
from pillarbox.errors import UserError
from pillarbox.testing.icalendars import WEEKLY
from pillarbox.web.calendarpage import form_fields, month_grid, span_text

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
REQUEST = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Org//EN\r\nMETHOD:REQUEST\r\n"
    b"BEGIN:VEVENT\r\nUID:u-1@example.net\r\nDTSTAMP:20260101T000000Z\r\nSEQUENCE:3\r\n"
    b"DTSTART:20260510T090000Z\r\nDTEND:20260510T100000Z\r\nSUMMARY:Review\r\n"
    b"ORGANIZER;CN=Org:mailto:org@example.net\r\n"
    b"ATTENDEE;CN=Org;PARTSTAT=ACCEPTED:mailto:org@example.net\r\n"
    b"ATTENDEE;CN=Ann;RSVP=TRUE;PARTSTAT=NEEDS-ACTION:mailto:Ann@example.org\r\n"
    b"ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:other@example.org\r\n"
    b"X-CUSTOM:kept\r\nEND:VEVENT\r\n"
    b"BEGIN:VEVENT\r\nUID:u-1@example.net\r\nDTSTAMP:20260101T000000Z\r\nSEQUENCE:3\r\n"
    b"RECURRENCE-ID:20260517T090000Z\r\nDTSTART:20260518T090000Z\r\n"
    b"DTEND:20260518T100000Z\r\nSUMMARY:Review (moved)\r\n"
    b"ORGANIZER;CN=Org:mailto:org@example.net\r\n"
    b"ATTENDEE;CN=Ann;PARTSTAT=NEEDS-ACTION:mailto:ann@example.org\r\n"
    b"END:VEVENT\r\nEND:VCALENDAR\r\n"
)


@pytest.mark.parametrize(
    "twice",
    [b"ORGANIZER;CN=Org:mailto:org@example.net\r\n", b"SEQUENCE:3\r\n", b"SUMMARY:Review\r\n"],
)
def test_a_property_given_twice_is_unreadable(twice: bytes) -> None:
    """Found by fuzz/imip.py: two ORGANIZERs (or SEQUENCEs) are a list to the parser, and
    reading the invitation raised AttributeError (TypeError), which the message page, catching
    InvalidObject, let through.
    RFC 5545 §3.6.1: each of these occurs at most once."""
    with pytest.raises(ical.InvalidObject, match="more than once"):
        ical.read_invitation(REQUEST.replace(twice, twice + twice, 1))


def test_a_request_whose_components_do_not_nest_is_unreadable() -> None:
    """Found by fuzz/imip.py: a VTIMEZONE closed by ``END:VEVENT`` (RFC 5545 §3.4: an END
    names what its BEGIN opened) was read, the parser never building the zone, and the
    REPLY to it, writing the zone back with its own END, could not be read (by us or any
    reader building zones): the organizer got an answer it could not apply."""
    zone = (
        b"BEGIN:VTIMEZONE\r\nTZID:Z\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n"
        b"TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\nDESCRIPTION:x\r\n"
    )
    unmatched = REQUEST.replace(b"BEGIN:VEVENT", zone + b"END:VEVENT\r\nBEGIN:VEVENT", 1)
    with pytest.raises(ical.InvalidObject, match="END:VEVENT where VTIMEZONE is open"):
        ical.read_invitation(unmatched)
    matched = REQUEST.replace(
        b"BEGIN:VEVENT",
        zone.replace(b"DESCRIPTION:x\r\n", b"") + b"END:VTIMEZONE\r\nBEGIN:VEVENT",
        1,
    )
    reply = ical.itip_reply(matched, "ann@example.org", "ACCEPTED", NOW)
    assert ical.read_invitation(reply).method == "REPLY"


def test_reply_has_the_properties_rfc5546_requires() -> None:
    data = ical.itip_reply(REQUEST, "ann@example.org", "TENTATIVE", NOW)
    reply = icalendar.Calendar.from_ical(data)
    # §3.2.3: METHOD:REPLY, VERSION, PRODID on the calendar.
    assert str(reply["METHOD"]) == "REPLY"
    assert str(reply["VERSION"]) == "2.0"
    assert "PRODID" in reply
    series, moved = reply.walk("VEVENT")
    for event in (series, moved):
        # ATTENDEE (exactly one: the replier), DTSTAMP, ORGANIZER, UID, SEQUENCE if non-zero.
        attendee = event["ATTENDEE"]
        assert not isinstance(attendee, list)
        assert str(attendee).lower() == "mailto:ann@example.org"
        assert attendee.params["PARTSTAT"] == "TENTATIVE"
        assert "RSVP" not in attendee.params
        assert event.decoded("DTSTAMP") == NOW
        assert str(event["ORGANIZER"]) == "mailto:org@example.net"
        assert str(event["UID"]) == "u-1@example.net"
        assert int(event["SEQUENCE"]) == 3
        assert "X-CUSTOM" not in event
    assert series.get("RECURRENCE-ID") is None
    assert moved.decoded("RECURRENCE-ID") == datetime(2026, 5, 17, 9, 0, tzinfo=UTC)
    assert series["ATTENDEE"].params["CN"] == "Ann"
    # The reply is a valid iCalendar object the parser reads back.
    assert ical.read_invitation(data).method == "REPLY"


def test_reply_without_sequence_and_for_an_unlisted_attendee() -> None:
    request = REQUEST.replace(b"SEQUENCE:3\r\n", b"")
    reply = icalendar.Calendar.from_ical(ical.itip_reply(request, "x@example.org", "DECLINED", NOW))
    for event in reply.walk("VEVENT"):
        assert "SEQUENCE" not in event  # §3.2.3: only when non-zero
        assert str(event["ATTENDEE"]) == "mailto:x@example.org"
    with pytest.raises(ValueError, match="not an answer"):
        ical.itip_reply(REQUEST, "ann@example.org", "NEEDS-ACTION", NOW)


def test_read_invitation() -> None:
    invitation = ical.read_invitation(REQUEST)
    assert (invitation.method, invitation.uid, invitation.summary) == (
        "REQUEST",
        "u-1@example.net",
        "Review",
    )
    assert invitation.organizer == "org@example.net" and invitation.organizer_name == "Org"
    assert invitation.start == datetime(2026, 5, 10, 9, 0, tzinfo=UTC)
    assert [(a.address, a.partstat) for a in invitation.attendees] == [
        ("org@example.net", "ACCEPTED"),
        ("Ann@example.org", "NEEDS-ACTION"),
        ("other@example.org", "NEEDS-ACTION"),
    ]
    assert invitation.sequence == 3
    period = REQUEST.replace(
        b"DTSTART:20260510T090000Z", b"DTSTART;VALUE=PERIOD:20260510T090000Z/PT1H"
    )
    assert ical.read_invitation(period).start is None  # not a time the summary can show
    for broken in (
        b"BEGIN:VCALENDAR\r\nnot ical\r\n",
        REQUEST.replace(b"METHOD:REQUEST\r\n", b""),
        b"\xff\xfe",
    ):
        with pytest.raises(ical.InvalidObject):
            ical.read_invitation(broken)


def test_request_stored_as_a_calendar_object() -> None:
    stored = ical.accepted_object(REQUEST, "ann@example.org", "ACCEPTED")
    info = ical.read_object(stored, 100)  # RFC 4791 §4.1: no METHOD, one UID
    assert info.uid == "u-1@example.net"
    assert ical.partstat_of(stored, "ANN@example.org") == "ACCEPTED"
    assert ical.partstat_of(stored, "other@example.org") == "NEEDS-ACTION"
    assert ical.partstat_of(stored, "nobody@example.org") == ""
    assert b"X-CUSTOM:kept" in stored
    (series, _) = icalendar.Calendar.from_ical(stored).walk("VEVENT")
    ann = next(a for a in series["ATTENDEE"] if "Ann" in str(a))
    assert "RSVP" not in ann.params  # answered


def test_new_event_from_the_form() -> None:
    fields = ical.EventFields(
        "Lunch, with Bob",
        datetime(2026, 6, 1, 10, 0, tzinfo=UTC),
        datetime(2026, 6, 1, 11, 0, tzinfo=UTC),
        "Café; upstairs",
        "Line one\nline two",
    )
    data = ical.new_event(fields, "uid-9", NOW)
    info = ical.read_object(data, 100)
    assert (info.uid, info.component) == ("uid-9", "VEVENT")
    (event,) = icalendar.Calendar.from_ical(data).walk("VEVENT")
    # RFC 5545 §3.6.1: UID and DTSTAMP required; DTEND rather than DURATION.
    assert event.decoded("DTSTAMP") == NOW
    assert "DURATION" not in event
    assert ical.stored_fields(data) == fields
    all_day = ical.EventFields("Trip", date(2026, 6, 1), date(2026, 6, 4))
    (event,) = icalendar.Calendar.from_ical(ical.new_event(all_day, "u", NOW)).walk("VEVENT")
    start = event.decoded("DTSTART")
    assert start == date(2026, 6, 1) and not isinstance(start, datetime)  # VALUE=DATE
    assert event.decoded("DTEND") == date(2026, 6, 4)
    assert "LOCATION" not in event and "DESCRIPTION" not in event


def test_edit_keeps_what_the_form_does_not_show() -> None:
    current = ical.stored_fields(WEEKLY.encode())
    assert current.start == datetime(2025, 1, 6, 9, 0, tzinfo=ZoneInfo("Europe/Paris"))
    retitled = ical.EventFields(
        "Stand-up", current.start.astimezone(UTC), current.end.astimezone(UTC), "", ""
    )
    data = ical.revised_event(WEEKLY.encode(), retitled, NOW).decode()
    assert "SUMMARY:Stand-up" in data
    assert "DTSTART;TZID=Europe/Paris:20250106T090000" in data  # the same instant: kept
    assert "RRULE:FREQ=WEEKLY;COUNT=10" in data and "BEGIN:VALARM" in data
    assert "RECURRENCE-ID;TZID=Europe/Paris:20250120T090000" in data
    assert "SUMMARY:Réunion d'équipe (moved)" in data  # the overridden instance untouched
    assert "DESCRIPTION" not in data.split("BEGIN:VALARM")[0]  # cleared in the form
    # RFC 5545 §3.8.7.4: a new title is not a significant revision; the SEQUENCE stays.
    assert "SEQUENCE" not in data.split("BEGIN:VEVENT")[1].split("END:VEVENT")[0]
    # The same fields again: the stored bytes themselves (no DTSTAMP rewritten, no new ETag).
    assert ical.revised_event(data.encode(), retitled, NOW).decode() == data
    moved = ical.EventFields(
        "Stand-up",
        datetime(2025, 1, 6, 7, 0, tzinfo=UTC),
        datetime(2025, 1, 6, 7, 15, tzinfo=UTC),
    )
    data = ical.revised_event(data.encode(), moved, NOW).decode()
    assert "DTSTART:20250106T070000Z" in data and "SEQUENCE:1" in data  # a new time: raised
    ical.read_object(data.encode(), 100)


def test_occurrences_expand_recurrences() -> None:
    found = ical.occurrences(
        WEEKLY.encode(), datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC), 100
    )
    days = [o.start.date() for o in found]  # type: ignore[union-attr]
    assert days == [date(2025, 1, 6), date(2025, 1, 21), date(2025, 1, 27)]
    assert all(o.recurring for o in found)
    assert ical.occurrences(b"broken", NOW, NOW + timedelta(days=1), 10) == []


def test_a_one_off_event_does_not_repeat() -> None:
    """The agenda's "(repeats)" is for series only: recurring-ical-events gives every instance
    a RECURRENCE-ID, a single event's too."""
    one_off = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
        "UID:once@example.org\r\nDTSTAMP:20250101T000000Z\r\nDTSTART:20250110T090000Z\r\n"
        "DTEND:20250110T100000Z\r\nSUMMARY:Dentist\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    start = datetime(2025, 1, 1, tzinfo=UTC)
    [found] = ical.occurrences(one_off.encode(), start, start + timedelta(days=31), 10)
    assert found.summary == "Dentist" and not found.recurring


def form(**fields: str) -> FormData:
    base = {"title": "T", "start_date": "2026-03-29", "start_time": "01:30"}
    return FormData({**base, "end_date": "2026-03-29", "end_time": "03:30", **fields})


def test_form_fields_in_the_readers_zone() -> None:
    paris = ZoneInfo("Europe/Paris")
    fields = form_fields(form(), paris)
    # 29 March 2026: Paris moves from +01:00 to +02:00 at 02:00.
    assert fields.start == datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    assert fields.end == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    day = form_fields(form(all_day="1", end_date="2026-03-30"), paris)
    assert (day.start, day.end) == (date(2026, 3, 29), date(2026, 3, 31))
    for bad, reason in (
        ({"title": " "}, "title"),
        ({"start_date": "29/03/2026"}, "start date"),
        ({"end_time": "00:00"}, "ends before"),
        ({"title": "x" * 501}, "at most"),
        ({"description": "a\x00b"}, "control character"),
        ({"location": "a\x1bb"}, "control character"),  # RFC 5545 §3.1
    ):
        with pytest.raises(UserError, match=reason):
            form_fields(form(**bad), paris)


def test_month_grid_and_span_text() -> None:
    paris = ZoneInfo("Europe/Paris")
    assert span_text(date(2026, 6, 1), date(2026, 6, 2), paris) == "Mon 01 Jun 2026"
    assert span_text(date(2026, 6, 1), date(2026, 6, 4), paris).endswith(
        "Wed 03 Jun 2026 (all day)"
    )
    text = span_text(
        datetime(2026, 6, 1, 8, tzinfo=UTC), datetime(2026, 6, 1, 9, tzinfo=UTC), paris
    )
    assert text == "Mon 01 Jun 2026 10:00 – 11:00 (Europe/Paris)"
    mixed = span_text(datetime(2026, 6, 1, 8, tzinfo=UTC), date(2026, 6, 2), paris)
    assert mixed == "Mon 01 Jun 2026 10:00 (Europe/Paris)"  # a broken invitation's end
    grid = month_grid(date(2026, 6, 1), [])
    assert grid[0][0].day == date(2026, 6, 1)  # a Monday
    assert all(len(week) == 7 for week in grid)
    assert (grid[-1][-1].day, grid[-1][-1].in_month) == (date(2026, 7, 5), False)


# -- the organizer's side: REQUEST and CANCEL built, REPLY applied -------------------------------

FIELDS = ical.EventFields("Review", NOW + timedelta(days=1), NOW + timedelta(days=1, hours=1))


def organized(*attendees: tuple[str, str]) -> bytes:
    """A new event of org@example.net's with ``attendees``."""
    event = ical.new_event(FIELDS, "m-1@example.net", NOW)
    return ical.with_attendees(event, "org@example.net", "Org", attendees, NOW)


def test_with_attendees_asks_new_ones_and_keeps_answers() -> None:
    data = organized(("ann@example.org", "Ann"), ("bob@example.org", ""))
    organizer, attendees = ical.event_attendees(data)
    assert organizer == "org@example.net"
    assert [(a.address, a.name, a.partstat) for a in attendees] == [
        ("ann@example.org", "Ann", "NEEDS-ACTION"),
        ("bob@example.org", "", "NEEDS-ACTION"),
    ]
    event = only(data)
    assert all(a.params["RSVP"] == "TRUE" for a in event["ATTENDEE"])
    assert event["ORGANIZER"].params["CN"] == "Org"
    answered = data.replace(
        b"PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:ann", b"PARTSTAT=ACCEPTED:mailto:ann"
    )
    assert ical.event_attendees(answered)[1][0].partstat == "ACCEPTED"
    # Bob removed, Cy added: Ann keeps her answer (and her line as it was).
    again = ical.with_attendees(
        answered,
        "org@example.net",
        "Org",
        [("ANN@example.org", ""), ("cy@example.org", "")],
        NOW,
    )
    assert [(a.address, a.partstat) for a in ical.event_attendees(again)[1]] == [
        ("ann@example.org", "ACCEPTED"),
        ("cy@example.org", "NEEDS-ACTION"),
    ]
    # None left: the ORGANIZER goes too (RFC 5545 §3.8.4.3: only on a meeting).
    # The same people again: the object itself, nothing rewritten.
    same = [("cy@example.org", "Cy"), ("ann@example.org", "")]
    assert ical.with_attendees(again, "ORG@example.net", "", same, NOW) is again
    alone = ical.with_attendees(again, "org@example.net", "Org", [], NOW)
    assert ical.event_attendees(alone) == ("", ())
    with pytest.raises(ical.InvalidObject, match="no organizer or attendees"):
        ical.itip_request(alone, "REQUEST", NOW)


def only(data: bytes) -> icalendar.Event:
    (event,) = icalendar.Calendar.from_ical(data).walk("VEVENT")
    return event


def test_request_has_the_properties_rfc5546_requires() -> None:
    later = NOW + timedelta(hours=2)
    revised = ical.revised_event(
        organized(("ann@example.org", "Ann")),
        ical.EventFields(
            "Review", FIELDS.start + timedelta(hours=1), FIELDS.end + timedelta(hours=1)
        ),
        NOW,
    )
    request = icalendar.Calendar.from_ical(ical.itip_request(revised, "REQUEST", later))
    # §3.2.2: METHOD, PRODID, VERSION; ATTENDEE, DTSTAMP, DTSTART, ORGANIZER, SEQUENCE (when
    # non-zero), SUMMARY, UID on the VEVENT.
    assert (str(request["METHOD"]), str(request["VERSION"])) == ("REQUEST", "2.0")
    assert "PRODID" in request
    (event,) = request.walk("VEVENT")
    assert str(event["ATTENDEE"]) == "mailto:ann@example.org"
    assert event["ATTENDEE"].params["RSVP"] == "TRUE"
    assert event.decoded("DTSTAMP") == later  # when sent
    assert event.decoded("DTSTART") == FIELDS.start + timedelta(hours=1)
    assert str(event["ORGANIZER"]) == "mailto:org@example.net"
    assert int(event["SEQUENCE"]) == 1  # the time changed: raised by the edit
    assert (str(event["SUMMARY"]), str(event["UID"])) == ("Review", "m-1@example.net")
    assert ical.read_invitation(ical.itip_request(revised, "REQUEST", later)).method == "REQUEST"
    with pytest.raises(ValueError, match="not an organizer's method"):
        ical.itip_request(revised, "REPLY", later)


def test_cancel_has_the_properties_rfc5546_requires() -> None:
    moved = (
        b"BEGIN:VEVENT\r\nUID:m-1@example.net\r\nDTSTAMP:20260101T000000Z\r\n"
        b"RECURRENCE-ID:20260509T120000Z\r\nDTSTART:20260509T130000Z\r\nEND:VEVENT\r\n"
    )
    data = organized(("ann@example.org", "Ann")).replace(b"END:VCALENDAR", moved + b"END:VCALENDAR")
    cancel = icalendar.Calendar.from_ical(ical.itip_request(data, "CANCEL", NOW))
    assert str(cancel["METHOD"]) == "CANCEL"
    # §3.2.5: ATTENDEE, DTSTAMP, ORGANIZER, SEQUENCE (raised), UID, STATUS:CANCELLED for the
    # whole event: the series alone, no overridden instance.
    (event,) = cancel.walk("VEVENT")
    assert "RECURRENCE-ID" not in event
    assert str(event["STATUS"]) == "CANCELLED"
    assert int(event["SEQUENCE"]) == 1
    assert str(event["ATTENDEE"]) == "mailto:ann@example.org"
    assert str(event["ORGANIZER"]) == "mailto:org@example.net"
    assert (str(event["UID"]), event.decoded("DTSTAMP")) == ("m-1@example.net", NOW)


def test_reply_applied_sets_only_that_attendees_partstat() -> None:
    stored = organized(("ann@example.org", "Ann"), ("bob@example.org", "Bob"))
    stored = stored.replace(b"END:VEVENT", b"X-PHONE:kept\r\nEND:VEVENT")
    request = ical.itip_request(stored, "REQUEST", NOW)
    reply = ical.itip_reply(request, "bob@example.org", "ACCEPTED", NOW)
    check = ical.check_reply(stored, reply)
    assert (check.attendee, check.name, check.partstat, check.current, check.problem) == (
        "bob@example.org", "Bob", "ACCEPTED", "NEEDS-ACTION", "",
    )  # fmt: skip
    applied = ical.applied_reply(stored, reply)
    assert [(a.address, a.partstat) for a in ical.event_attendees(applied)[1]] == [
        ("ann@example.org", "NEEDS-ACTION"),
        ("bob@example.org", "ACCEPTED"),
    ]
    event = only(applied)
    assert str(event["X-PHONE"]) == "kept"
    assert int(event.get("SEQUENCE", 0)) == int(only(stored).get("SEQUENCE", 0))  # not raised
    assert ical.check_reply(applied, reply).current == "ACCEPTED"


def test_reply_from_a_stranger_or_an_older_sequence_is_not_applied() -> None:
    stored = organized(("ann@example.org", "Ann"))
    request = ical.itip_request(stored, "REQUEST", NOW)
    stranger = ical.itip_reply(request, "eve@example.org", "ACCEPTED", NOW)
    assert ical.check_reply(stored, stranger).problem == (
        "eve@example.org is not an attendee of this event"
    )
    with pytest.raises(ical.ReplyNotApplied, match="not an attendee"):
        ical.applied_reply(stored, stranger)
    old = ical.itip_reply(request, "ann@example.org", "DECLINED", NOW)  # to SEQUENCE 0
    later = replace(FIELDS, start=FIELDS.start + timedelta(hours=1), end=FIELDS.end)
    revised = ical.revised_event(stored, later, NOW)  # moved: SEQUENCE 1 now
    assert (
        ical.check_reply(revised, old).problem == "this answer is to an older version of the event"
    )
    with pytest.raises(ical.ReplyNotApplied, match="older version"):
        ical.applied_reply(revised, old)
    newer = ical.itip_reply(
        ical.itip_request(revised, "REQUEST", NOW), "ann@example.org", "DECLINED", NOW
    )
    assert ical.event_attendees(ical.applied_reply(revised, newer))[1][0].partstat == "DECLINED"
    two = newer.replace(b"END:VEVENT", b"ATTENDEE:mailto:x@example.org\r\nEND:VEVENT")
    with pytest.raises(ical.InvalidObject, match="exactly one ATTENDEE"):
        ical.check_reply(revised, two)


def test_reply_to_one_instance_sets_it_there_only() -> None:
    """A REPLY per VEVENT: the series' answer goes to the series, an instance's (by its
    RECURRENCE-ID) to that overridden instance only."""
    stored = organized(("ann@example.org", "Ann"))
    instance = (
        b"BEGIN:VEVENT\r\nUID:m-1@example.net\r\nDTSTAMP:20260101T000000Z\r\n"
        b"RECURRENCE-ID:20260509T120000Z\r\nDTSTART:20260509T130000Z\r\n"
        b"ORGANIZER:mailto:org@example.net\r\n"
        b"ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:ann@example.org\r\nEND:VEVENT\r\n"
    )
    stored = stored.replace(b"END:VCALENDAR", instance + b"END:VCALENDAR")
    request = ical.itip_request(stored, "REQUEST", NOW)
    series_only = ical.itip_reply(request, "ann@example.org", "DECLINED", NOW)
    series_only = series_only.split(b"BEGIN:VEVENT")
    reply = b"BEGIN:VEVENT".join([series_only[0], series_only[2]])  # the instance's answer
    applied = icalendar.Calendar.from_ical(ical.applied_reply(stored, reply))
    series, moved = applied.walk("VEVENT")
    assert series["ATTENDEE"].params["PARTSTAT"] == "NEEDS-ACTION"
    assert moved["ATTENDEE"].params["PARTSTAT"] == "DECLINED"
