"""iCalendar objects shared by the CalDAV tests (HTTP, vdirsyncer, the ical unit tests)."""

from __future__ import annotations


def event(uid: str, start: str, *, extra: str = "", summary: str = "Meeting") -> str:
    """A one-hour VEVENT at ``start`` (a UTC ``YYYYMMDDTHHMMSSZ``), with ``extra`` lines
    (``RRULE:…\\r\\n``) inside it."""
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Pillarbox tests//EN\r\n"
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20250101T000000Z\r\nDTSTART:{start}\r\n"
        f"DURATION:PT1H\r\nSUMMARY:{summary}\r\n{extra}END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


#: A weekly series from a phone: a time zone, an exception date, an overridden instance, an
#: alarm, non-ASCII text and a folded line; kept byte for byte by the server.
WEEKLY = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Phone//Calendar 1.0//EN\r\n"
    "BEGIN:VTIMEZONE\r\nTZID:Europe/Paris\r\n"
    "BEGIN:STANDARD\r\nDTSTART:19701025T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\n"
    "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\n"
    "BEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n"
    "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n"
    "BEGIN:VEVENT\r\nUID:weekly-1\r\nDTSTAMP:20250101T000000Z\r\n"
    "DTSTART;TZID=Europe/Paris:20250106T090000\r\nDTEND;TZID=Europe/Paris:20250106T093000\r\n"
    "RRULE:FREQ=WEEKLY;COUNT=10\r\nEXDATE;TZID=Europe/Paris:20250113T090000\r\n"
    "SUMMARY:Réunion d'équipe\r\nDESCRIPTION:A long description that a client folds at seve\r\n"
    " nty-five octets, as RFC 5545 §3.1 says.\r\n"
    "BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT10M\r\nDESCRIPTION:Reminder\r\nEND:VALARM\r\n"
    "END:VEVENT\r\n"
    "BEGIN:VEVENT\r\nUID:weekly-1\r\nDTSTAMP:20250101T000000Z\r\n"
    "RECURRENCE-ID;TZID=Europe/Paris:20250120T090000\r\n"
    "DTSTART;TZID=Europe/Paris:20250121T140000\r\nDTEND;TZID=Europe/Paris:20250121T143000\r\n"
    "SUMMARY:Réunion d'équipe (moved)\r\nEND:VEVENT\r\n"
    "END:VCALENDAR\r\n"
)


#: A ``calendar-timezone`` (RFC 4791 §5.2.2): one VTIMEZONE, New York's rules since 2007.
NEW_YORK = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Pillarbox tests//EN\r\n"
    "BEGIN:VTIMEZONE\r\nTZID:America/New_York\r\n"
    "BEGIN:STANDARD\r\nDTSTART:20071104T020000\r\nTZOFFSETFROM:-0400\r\nTZOFFSETTO:-0500\r\n"
    "RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU\r\nEND:STANDARD\r\n"
    "BEGIN:DAYLIGHT\r\nDTSTART:20070311T020000\r\nTZOFFSETFROM:-0500\r\nTZOFFSETTO:-0400\r\n"
    "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n"
    "END:VCALENDAR\r\n"
)
