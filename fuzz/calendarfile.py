"""Fuzz the .ics import's cutting (pillarbox.calendarfile) with arbitrary files: what a user
uploads on the Calendar page or an operator gives ``pillarbox import ics``.

Asserted, beyond "no exception" other than ``NotCalendar``:

* every object cut is one a CalDAV PUT accepts (:func:`pillarbox.ical.read_object` gives the
  object's own info), no UID twice, and what was skipped is counted with reasons;
* the objects joined into one file (the export, written page by page) cut again into
  objects with the same UIDs, types and bounds and the same content, nothing skipped.
"""

from __future__ import annotations

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox import calendarfile, ical
    from pillarbox.testing.icalendars import NEW_YORK, WEEKLY, event

_LIMITS = {"max_objects": 50, "max_object_bytes": 64 * 1024, "max_instances": 200}


def check(data: bytes) -> None:
    try:
        cut = calendarfile.split(data, **_LIMITS)
    except calendarfile.NotCalendar:
        return
    uids = [p.info.uid for p in cut.objects]
    assert len(set(uids)) == len(uids), uids
    assert (cut.skipped == 0) == (not cut.reasons), cut
    for piece in cut.objects:
        assert ical.read_object(piece.data, _LIMITS["max_instances"]) == piece.info
    # The export, written a page at a time (here two objects a page): its pages' VTIMEZONEs
    # each once, whatever the paging.
    datas = [p.data for p in cut.objects]
    zones: set[str] = set()
    pages = [
        calendarfile.joined_components(datas[i : i + 2], zones) for i in range(0, len(datas), 2)
    ]
    exported = calendarfile.joined_head("x") + b"".join(pages) + calendarfile.JOINED_END
    assert calendarfile.joined_components(datas, set()) == b"".join(pages)
    again = calendarfile.split(exported, **_LIMITS)
    assert again.skipped == 0, again.reasons
    assert [p.info for p in again.objects] == [p.info for p in cut.objects]
    # Imported back, the export changes nothing: each object holds what it held.
    for before, after in zip(cut.objects, again.objects, strict=True):
        assert calendarfile.same_content(before.data, after.data)


def seeds() -> list[bytes]:
    zone = NEW_YORK[NEW_YORK.index("BEGIN:VTIMEZONE") : NEW_YORK.index("END:VCALENDAR")]
    series = WEEKLY[: WEEKLY.index("END:VCALENDAR")]
    other = event("one", "20310304T093000Z")
    return [
        WEEKLY.encode(),
        (series + zone + other[other.index("BEGIN:VEVENT") :]).encode(),
        WEEKLY.replace("VERSION:2.0", "VERSION:2.0\r\nMETHOD:PUBLISH").encode(),
        WEEKLY.replace("VERSION:2.0", "VERSION:2.0\r\nMETHOD:REQUEST").encode(),
        (
            b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VTODO\r\nUID:t\r\nEND:VTODO\r\n"
            b"BEGIN:VJOURNAL\r\nUID:j\r\nEND:VJOURNAL\r\nEND:VCALENDAR\r\n"
        ),
    ]


if __name__ == "__main__":
    harness.main("calendarfile", check, seeds(), max_len=65536)
