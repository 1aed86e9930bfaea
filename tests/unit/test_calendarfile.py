"""An .ics file cut into calendar object resources (RFC 4791 §4.1: one UID each, its
overrides and the VTIMEZONEs it names with it), each checked as a CalDAV PUT is, a bad
component skipped alone; and a calendar's objects joined into one file, page by page."""

from __future__ import annotations

import pytest

from pillarbox import calendarfile, ical
from pillarbox.calendarfile import (
    JOINED_END,
    NotCalendar,
    Split,
    Uncut,
    checked,
    joined_components,
    joined_head,
    split,
)
from pillarbox.testing.icalendars import NEW_YORK, WEEKLY, event

HEAD = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Exporter//EN\r\n"
PARIS = WEEKLY[WEEKLY.index("BEGIN:VTIMEZONE") : WEEKLY.index("BEGIN:VEVENT")]
NY = NEW_YORK[NEW_YORK.index("BEGIN:VTIMEZONE") : NEW_YORK.index("END:VCALENDAR")]
SERIES = WEEKLY[WEEKLY.index("BEGIN:VEVENT") : WEEKLY.index("END:VCALENDAR")]


def vevent(uid: str, extra: str = "", start: str = "DTSTART:20310304T093000Z") -> str:
    return (
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20250101T000000Z\r\n{start}\r\n"
        f"DURATION:PT1H\r\nSUMMARY:{uid}\r\n{extra}END:VEVENT\r\n"
    )


def joined(pages: list[list[bytes]], name: str = "") -> bytes:
    """The export as the web writes it: the head, each page's components, the end."""
    zones: set[str] = set()
    return joined_head(name) + b"".join(joined_components(p, zones) for p in pages) + JOINED_END


def cut(text: str, max_objects: int = 100) -> Split:
    return split(
        text.encode(), max_objects=max_objects, max_object_bytes=64 * 1024, max_instances=50
    )


def test_one_object_per_uid_with_its_overrides_and_the_zones_it_names() -> None:
    ny_event = vevent("ny-1", start="DTSTART;TZID=America/New_York:20310304T093000")
    todo = "BEGIN:VTODO\r\nUID:todo-1\r\nDTSTAMP:20250101T000000Z\r\nSUMMARY:Tax\r\nEND:VTODO\r\n"
    text = (
        HEAD + "METHOD:PUBLISH\r\nX-WR-CALNAME:Work\r\n" + PARIS + NY
        + SERIES + vevent("utc-1") + ny_event + todo + "END:VCALENDAR\r\n"
    )  # fmt: skip
    done = cut(text)
    assert (done.skipped, done.reasons) == (0, ())
    assert [(p.info.uid, p.info.component) for p in done.objects] == [
        ("weekly-1", "VEVENT"),
        ("utc-1", "VEVENT"),
        ("ny-1", "VEVENT"),
        ("todo-1", "VTODO"),
    ]
    series, utc, ny, task = (p.data.decode() for p in done.objects)
    # The series: master and overridden instance together, Paris's zone, the lines as written
    # (folding, non-ASCII): exactly the phone's object with the exporter's PRODID.
    assert series == WEEKLY.replace("-//Phone//Calendar 1.0//EN", "-//Exporter//EN")
    assert utc == HEAD + vevent("utc-1") + "END:VCALENDAR\r\n"  # no METHOD, no zone
    assert ny == HEAD + NY + ny_event + "END:VCALENDAR\r\n"
    assert task == HEAD + todo + "END:VCALENDAR\r\n"
    # Each as a PUT would read it.
    for piece in done.objects:
        assert ical.read_object(piece.data, 50) == piece.info


def test_a_bad_component_is_skipped_alone_with_its_reason() -> None:
    journal = "BEGIN:VJOURNAL\r\nUID:j-1\r\nDTSTAMP:20250101T000000Z\r\nEND:VJOURNAL\r\n"
    no_uid = (
        "BEGIN:VEVENT\r\nDTSTAMP:20250101T000000Z\r\nDTSTART:20310101T000000Z\r\nEND:VEVENT\r\n"
    )
    twice = vevent("twice", "DTSTART:20310305T093000Z\r\n")  # DTSTART twice: unreadable
    text = (
        HEAD + journal + vevent("good-1") + no_uid + twice + vevent("good-2") + "END:VCALENDAR\r\n"
    )
    done = cut(text)
    assert [p.info.uid for p in done.objects] == ["good-1", "good-2"]
    assert done.skipped == 3
    assert done.reasons == (
        "VJOURNAL j-1: a VJOURNAL is not kept in a calendar",
        "VEVENT 3: no UID (RFC 5545 §3.8.4.7)",
        "VEVENT twice: DTSTART more than once",
    )


def test_a_uid_defined_twice_in_the_file_keeps_the_first() -> None:
    later = vevent("dup", "LOCATION:second\r\n")
    override = vevent("dup", "RECURRENCE-ID:20310311T093000Z\r\n")
    text = (
        HEAD + vevent("dup", "RRULE:FREQ=WEEKLY;COUNT=3\r\n") + later + override + override
        + "END:VCALENDAR\r\n"
    )  # fmt: skip
    done = cut(text)
    ((piece),) = done.objects
    assert piece.data.decode() == (
        HEAD + vevent("dup", "RRULE:FREQ=WEEKLY;COUNT=3\r\n") + override + "END:VCALENDAR\r\n"
    )
    assert done.reasons == (
        "VEVENT dup: the file defines it twice; the first is kept",
        "VEVENT dup: the file defines its instance RECURRENCE-ID:20310311T093000Z twice; "
        "the first is kept",
    )
    assert done.skipped == 2


def test_an_itip_request_is_not_an_export() -> None:
    text = HEAD + "METHOD:REQUEST\r\n" + vevent("inv-1") + vevent("inv-2") + "END:VCALENDAR\r\n"
    done = cut(text)
    assert done.objects == () and done.skipped == 2
    assert done.reasons == (
        "METHOD:REQUEST: an invitation or answer (RFC 5546), not a calendar export: its 2 "
        "component(s) skipped",
    )


def test_limits_and_broken_nesting() -> None:
    text = HEAD + "".join(vevent(f"e{n}") for n in range(5)) + "END:VCALENDAR\r\n"
    done = cut(text, max_objects=3)
    assert [p.info.uid for p in done.objects] == ["e0", "e1", "e2"]
    assert (done.skipped, done.reasons) == (2, ("2 more event(s) past the 3 one import takes",))
    big = split(
        (HEAD + vevent("big", "DESCRIPTION:" + "x" * 2000 + "\r\n") + "END:VCALENDAR\r\n").encode(),
        max_objects=10,
        max_object_bytes=1000,
        max_instances=50,
    )
    assert big.reasons == ("VEVENT big: larger than 1000 bytes",)
    unclosed = HEAD + vevent("ok") + "BEGIN:VEVENT\r\nUID:cut\r\nEND:VCALENDAR\r\n"
    done = cut(unclosed)
    assert [p.info.uid for p in done.objects] == ["ok"]
    assert done.reasons == ("VEVENT cut: BEGIN:VEVENT without its END",)


def test_objects_stored_as_they_are_are_counted_not_read() -> None:
    """What ``unchanged`` says is stored byte for byte is counted, not checked again (not
    even one the check would now refuse), and counts toward ``max_objects``."""
    backwards = vevent("backwards", start="DTSTART:20310304T093000Z").replace(
        "DURATION:PT1H", "DURATION:-PT1H"
    )
    text = HEAD + vevent("e0") + backwards + vevent("e2") + vevent("e3") + "END:VCALENDAR\r\n"
    stored = {
        (HEAD + vevent("e0") + "END:VCALENDAR\r\n").encode(),
        (HEAD + backwards + "END:VCALENDAR\r\n").encode(),
    }
    asked: list[bytes] = []

    def unchanged(piece: Uncut) -> bool:
        asked.append(piece.data)
        return piece.data in stored

    found = calendarfile.cut(text.encode(), max_object_bytes=64 * 1024)
    done = checked(found, max_objects=3, max_instances=50, unchanged=unchanged)
    assert (done.unchanged, [p.info.uid for p in done.objects]) == (2, ["e2"])
    assert (done.skipped, done.reasons) == (1, ("1 more event(s) past the 3 one import takes",))
    assert len(asked) == 3
    # Without it, the object the check refuses is skipped with its reason, as before.
    assert cut(text).unchanged == 0 and cut(text).skipped == 1


@pytest.mark.parametrize(
    "data", [b"", b"BEGIN:VCARD\r\nEND:VCARD\r\n", "BEGIN:VCALENDAR\r\n\xe9".encode("latin-1")]
)
def test_no_calendar_at_all_is_refused(data: bytes) -> None:
    with pytest.raises(NotCalendar):
        split(data, max_objects=10, max_object_bytes=1000, max_instances=10)


def test_lf_line_ends_and_a_bom_are_read() -> None:
    text = "\ufeff" + (HEAD + vevent("lf") + "END:VCALENDAR\r\n").replace("\r\n", "\n")
    ((piece),) = cut(text).objects
    assert piece.data.decode() == HEAD + vevent("lf") + "END:VCALENDAR\r\n"


def test_the_same_file_splits_the_same_and_the_export_splits_back() -> None:
    one = event("one", "20310304T093000Z").encode()
    exported = joined([[WEEKLY.encode(), one]], "Work, home")
    text = exported.decode()
    assert text.startswith(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Pillarbox//Pillarbox//EN\r\n"
        "CALSCALE:GREGORIAN\r\nX-WR-CALNAME:Work\\, home\r\n" + PARIS
    )
    assert text.count("BEGIN:VTIMEZONE") == 1 and text.endswith("END:VEVENT\r\nEND:VCALENDAR\r\n")
    first, second = cut(text), cut(text)
    assert first == second
    assert [p.info.uid for p in first.objects] == ["weekly-1", "one"]


def test_each_zone_is_written_once_before_the_first_object_naming_it() -> None:
    """The file is written page by page as the objects are read: a zone written in one page
    is not written again in a later one; a zone first named late is written there."""
    other = WEEKLY.replace("weekly-1", "weekly-2").encode()
    ny = vevent("ny-1", start="DTSTART;TZID=America/New_York:20310304T093000")
    late = NEW_YORK.replace("END:VCALENDAR", ny + "END:VCALENDAR").encode()
    pages = [[WEEKLY.encode(), other], [late, other.replace(b"weekly-2", b"weekly-3")]]
    text = joined(pages).decode()
    assert text.count("BEGIN:VTIMEZONE") == 2 and text.count("TZID:Europe/Paris\r\n") == 1
    assert text.index("TZID:America/New_York\r\n") > text.index("UID:weekly-2")
    assert text.index("TZID:America/New_York\r\n") < text.index("UID:ny-1")
    assert [p.info.uid for p in cut(text).objects] == ["weekly-1", "weekly-2", "ny-1", "weekly-3"]


def test_an_object_read_back_from_an_export_holds_what_is_stored() -> None:
    """What only the export writes (its PRODID, CALSCALE, one definition per TZID) is not
    content; a changed line of a component is."""
    stored = WEEKLY.encode()
    other_zone = WEEKLY.replace("BEGIN:VTIMEZONE", "BEGIN:VTIMEZONE\r\nX-LIC-LOCATION:Paris", 1)
    pages = [[other_zone.replace("weekly-1", "first").encode(), stored]]
    (_, back) = [p.data for p in cut(joined(pages).decode()).objects]
    assert back != stored and b"PRODID:-//Pillarbox" in back and b"X-LIC-LOCATION" in back
    assert calendarfile.same_content(stored, back)
    assert not calendarfile.same_content(stored, back.replace(b"SUMMARY:", b"SUMMARY:x"))
    added = back.replace(b"DTSTAMP:", b"X-A:1\r\nDTSTAMP:", 1)
    assert not calendarfile.same_content(stored, added)
