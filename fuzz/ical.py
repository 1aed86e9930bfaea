"""Fuzz the iCalendar objects CalDAV clients PUT (pillarbox.ical) and the calendar REPORT
bodies (pillarbox.caldavxml) with arbitrary bytes.

Input: byte 0 even — an object as a PUT body; odd — a REPORT body on a calendar. Asserted,
beyond "no exception" other than ``InvalidObject``, ``BadRequestBody``, ``UnsupportedFilter``,
``UnsupportedCalendarData`` and ``TooManyInstances``:

* an accepted object has a UID and a VEVENT or VTODO type, its bounds in order, and answers a
  time-range query (the recurrence expansion, bounded by ``max_instances``) without raising;
  as a REPORT's ``calendar-data`` it is an XML document that reads back to the same text;
* a parsed calendar-query's filter runs against a fixed recurring event without raising;
* a parsed multiget's or query's ``calendar-data`` (narrowing, expand, limit-recurrence-set)
  renders that event without raising.
* an even input read as an invitation from mail (the webmail's iMIP box): one that reads
  gets its REPLY and its object to store made without raising, and the stored object is
  either accepted or refused with ``InvalidObject``.
* an accepted object set against the fixed recurring event, each way, as an organizer's
  reschedule (RFC 6638 §3.2.8: the object with answers reset is still accepted) and as an
  attendee's answers to instances (§3.2.2.3: only answers, and their REPLY made).
* an even input read for its Schedule-Tag (RFC 6638 §3.2.10, :func:`ical.scheduling_of`) and
  as a free-busy request POSTed to the outbox (§5): one that reads gets its REPLY, with the
  fixed recurring event as busy time, without raising.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from xml.etree import ElementTree

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox import caldavxml, davxml, ical
    from pillarbox.caldavxml import CompFilter, TimeRange, UnsupportedFilter
    from pillarbox.davxml import BadRequestBody
    from pillarbox.testing.icalendars import WEEKLY

#: A time-range every instance from 2025 on meets (any VEVENT or VTODO's expansion runs).
_NOW = datetime(2026, 1, 1, tzinfo=UTC)
_ANY_TIME = CompFilter("VEVENT", time_range=TimeRange(datetime(2025, 1, 1, tzinfo=UTC), None))


def check(data: bytes) -> None:
    if not data:
        return
    body = data[1:]
    if data[0] % 2 == 0:
        with contextlib.suppress(ical.InvalidObject):
            ical.read_invitation(body)
            ical.itip_reply(body, "ann@example.org", "ACCEPTED", _NOW)
            ical.read_object(ical.accepted_object(body, "ann@example.org", "DECLINED"), 200)
        with contextlib.suppress(ical.InvalidObject):
            ical.scheduling_of(body)
        with contextlib.suppress(ical.InvalidObject, ical.TooManyInstances):
            asked = ical.freebusy_request(body)
            ical.freebusy_reply(asked, asked.attendees[0], [([WEEKLY.encode()], "")], _NOW, 200)
        try:
            info = ical.read_object(body, max_instances=200)
        except ical.InvalidObject:
            return
        assert info.uid and info.component in ical.COMPONENTS
        # A REPORT's calendar-data carries the object as it is: it must be XML a client reads.
        text = body.decode("utf-8")
        document = davxml.document(davxml.element("{urn:ietf:params:xml:ns:caldav}x", text))
        assert ElementTree.fromstring(document).text == text
        assert info.starts is None or info.ends is None or info.starts <= info.ends
        ical.select([body], CompFilter("VCALENDAR", comps=(_ANY_TIME,)), 200)
        # RFC 6638 §3.2.8 and §3.2.2.3 between two accepted versions (the fixed event's and
        # this one): a reset object still accepted, the instances answered are answers.
        weekly = WEEKLY.encode()
        for before, after in ((weekly, body), (body, weekly)) if info.component == "VEVENT" else ():
            ical.read_object(ical.rescheduled(before, after), max_instances=200)
            answered = ical.answered_instances(before, after, "ann@example.org")
            assert set(answered.values()) <= set(ical.ANSWERS)
            if answered:
                ical.itip_reply(after, "ann@example.org", "ACCEPTED", _NOW, answered)
        return
    try:
        parsed = caldavxml.report(body)
    except (BadRequestBody, caldavxml.UnsupportedCalendarData):
        return
    if isinstance(parsed, caldavxml.CalendarQuery):
        with contextlib.suppress(UnsupportedFilter):
            ical.select([WEEKLY.encode()], parsed.filter, 100)
    if isinstance(
        parsed, caldavxml.CalendarQuery | caldavxml.CalendarMultiget | caldavxml.CalendarSync
    ):
        with contextlib.suppress(ical.TooManyInstances):
            ical.render([WEEKLY.encode()], parsed.data, 100)


def seeds() -> list[bytes]:
    ns = b'xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"'
    return [
        b"\x00" + WEEKLY.encode(),
        b"\x00" + WEEKLY.replace("VERSION:2.0", "VERSION:2.0\r\nMETHOD:REQUEST").encode(),
        b"\x00BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VTODO\r\nUID:t\r\nEND:VTODO\r\n"
        b"END:VCALENDAR\r\n",
        b"\x00BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:REQUEST\r\nBEGIN:VFREEBUSY\r\nUID:f\r\n"
        b"DTSTART:20250101T000000Z\r\nDTEND:20250201T000000Z\r\nORGANIZER:mailto:a@x\r\n"
        b"ATTENDEE:mailto:b@x\r\nEND:VFREEBUSY\r\nEND:VCALENDAR\r\n",
        b"\x01<c:calendar-query " + ns + b'><c:filter><c:comp-filter name="VCALENDAR">'
        b'<c:comp-filter name="VEVENT"><c:time-range start="20250101T000000Z"/>'
        b'<c:prop-filter name="UID"><c:text-match>x</c:text-match></c:prop-filter>'
        b"</c:comp-filter></c:comp-filter></c:filter></c:calendar-query>",
        b"\x01<d:sync-collection " + ns + b"><d:sync-token/><d:prop/></d:sync-collection>",
        b"\x01<c:calendar-multiget " + ns + b'><d:prop><c:calendar-data><c:comp name="VCALENDAR">'
        b'<c:comp name="VEVENT"><c:prop name="UID" novalue="yes"/></c:comp></c:comp>'
        b'<c:expand start="20250101T000000Z" end="20250201T000000Z"/></c:calendar-data>'
        b"</d:prop><d:href>x.ics</d:href></c:calendar-multiget>",
    ]


if __name__ == "__main__":
    harness.main("ical", check, seeds(), max_len=65536)
