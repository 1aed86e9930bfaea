"""``pillarbox import ics`` figures: an export of N events into a fresh SQLite site, then the
same file again (every object unchanged), as an operator runs them.

Usage: ``python bench/calendarimport.py [--events N]``

The file is what Google or Apple Calendar export: one VCALENDAR, one shared VTIMEZONE, N
events, a quarter of them weekly series with an overridden instance. Each run is the command
itself (a process: start-up and store opening included, some 1 s); the cutting and checking
of the file (:func:`pillarbox.calendarfile.split`, the same in both runs) is timed apart, in
this process. Reported: wall time of each run, and per event; the command's CPU time (user
and system, from ``getrusage``), the steadier figure on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from pillarbox import calendarfile
from pillarbox.config import CalendarsSection
from pillarbox.testing.command import init_site, run_pillarbox
from pillarbox.testing.icalendars import WEEKLY

USER = "bench@example.org"
ZONE = WEEKLY[WEEKLY.index("BEGIN:VTIMEZONE") : WEEKLY.index("BEGIN:VEVENT")]


def export(events: int) -> bytes:
    parts = ["BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Bench//EN\r\nMETHOD:PUBLISH\r\n", ZONE]
    for n in range(events):
        day = 1 + n % 28
        start = f"DTSTART;TZID=Europe/Paris:2031{1 + n % 12:02}{day:02}T0900"
        body = (
            f"UID:bench-{n}@example.org\r\nDTSTAMP:20250101T000000Z\r\n{start}00\r\n"
            f"DTEND;TZID=Europe/Paris:2031{1 + n % 12:02}{day:02}T100000\r\n"
            f"SUMMARY:Event {n}\r\nDESCRIPTION:Bench event number {n}, with some text.\r\n"
        )
        if n % 4 == 0:
            parts.append(f"BEGIN:VEVENT\r\n{body}RRULE:FREQ=WEEKLY;COUNT=20\r\nEND:VEVENT\r\n")
            moved = f"2031{1 + n % 12:02}{day:02}"
            parts.append(
                f"BEGIN:VEVENT\r\nUID:bench-{n}@example.org\r\nDTSTAMP:20250101T000000Z\r\n"
                f"RECURRENCE-ID;TZID=Europe/Paris:{moved}T090000\r\n"
                f"DTSTART;TZID=Europe/Paris:{moved}T110000\r\n"
                f"DTEND;TZID=Europe/Paris:{moved}T120000\r\nSUMMARY:Event {n} (moved)\r\n"
                "END:VEVENT\r\n"
            )
        else:
            parts.append(f"BEGIN:VEVENT\r\n{body}END:VEVENT\r\n")
    parts.append("END:VCALENDAR\r\n")
    return "".join(parts).encode()


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    data = export(args.events)
    limits = CalendarsSection()
    started = time.perf_counter()
    cut = calendarfile.split(
        data,
        max_objects=limits.max_objects,
        max_object_bytes=limits.max_object_bytes,
        max_instances=limits.max_instances,
    )
    split_s = time.perf_counter() - started
    assert len(cut.objects) == args.events and not cut.skipped
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        site.mkdir()
        init_site(site, USER, "correct horse battery")
        path = Path(tmp) / "export.ics"
        path.write_bytes(data)
        rows = [
            ("file", f"{len(data) / 1000:.0f} KB, {args.events} events"),
            ("cut", f"{split_s:.2f} s"),
        ]
        for label, key in (("import", "imported"), ("re-run (all unchanged)", "unchanged")):
            before = _children_cpu()
            started = time.perf_counter()
            result = run_pillarbox(site, "import", "ics", str(path), "--account", USER, "--json")
            wall = time.perf_counter() - started
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout)[key] == args.events, result.stdout
            cpu = _children_cpu() - before
            per_event = wall / args.events * 1000
            rows.append((label, f"{wall:.2f} s ({per_event:.2f} ms/event), CPU {cpu:.2f} s"))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


if __name__ == "__main__":
    main()
