"""CalDAV and CardDAV listing figures: a Depth-1 PROPFIND (``getetag``, as every sync client
asks at each sync) of a calendar of N events and of an address book of N contacts; one table.

Usage: ``python bench/dav.py [--objects N] [--runs N]``

The server is the real one (``LiveServer``: uvicorn on the server's loop, the SQLite store);
requests go over loopback with HTTP Basic. The calendar holds distinct ~1.5 KB events; the
address book half contacts made in the webmail (no kept card: the card is written when
served) and half cards as a phone PUTs them (~0.5 KB, kept). "Server CPU" is the process's CPU
time less the client thread's (the server's loop, the store's threads, the blocking pool), per
request: the figure a shared machine disturbs least. Run it against two revisions with
``PYTHONPATH=<checkout>/src`` to compare them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from pillarbox.store.types import Calendar, CalendarObject, Contact
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config

ADDRESS = "alice@example.org"
CALENDAR = f"/dav/calendars/{ADDRESS}/bench/"
BOOK = f"/dav/addressbooks/{ADDRESS}/contacts/"
PROPFIND = b'<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>'


def event(serial: int) -> bytes:
    description = " ".join(f"word{(serial * 7 + i) % 997}" for i in range(180))
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:event-{serial}\r\nDTSTAMP:20250101T000000Z\r\n"
        f"DTSTART:2025{1 + serial % 12:02d}{1 + serial % 28:02d}T100000Z\r\n"
        f"DURATION:PT1H\r\nSUMMARY:Meeting {serial}\r\nDESCRIPTION:{description}\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    ).encode()


def contact(serial: int) -> Contact:
    name = f"Person {serial}"
    address = f"person{serial}@example.net"
    card = None
    if serial % 2:
        card = (
            f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:c-{serial}\r\nFN:{name}\r\nN:{serial};Person;;;\r\n"
            f"EMAIL;TYPE=work:{address}\r\nTEL;TYPE=cell:+33 6 00 00 {serial % 100:02d} 00\r\n"
            "ADR;TYPE=home:;;1 Rue de la Paix;Paris;;75002;France\r\n"
            f"NOTE:{' '.join(f'note{i}' for i in range(40))}\r\nEND:VCARD\r\n"
        )
    return Contact(uid=f"c-{serial}", display_name=name, emails=(address,), card=card)


async def fill(live: LiveServer, count: int) -> None:
    store = live.store
    account = await store.get_account(ADDRESS)
    assert account is not None
    now = datetime.now(UTC)
    await store.create_calendar(account.id, Calendar(name="bench"), now=now, limit=5)
    for serial in range(count):
        obj = CalendarObject(
            name=f"event-{serial}.ics",
            uid=f"event-{serial}",
            component="VEVENT",
            data=event(serial),
        )
        await store.save_calendar_object(account.id, "bench", obj, now=now, limit=count)
    await store.save_contacts(
        account.id, [contact(serial) for serial in range(count)], now=now, limit=count
    )


def measure(client: httpx.Client, path: str, runs: int) -> tuple[float, float, int]:
    """(median round-trip ms, server CPU ms per request, responses listed), after a warm-up."""

    def once() -> httpx.Response:
        response = client.request("PROPFIND", path, content=PROPFIND, headers={"depth": "1"})
        assert response.status_code == 207, response.text[:200]
        return response

    listed = once().text.count("<d:response>")
    trips: list[float] = []
    process_start, client_start = time.process_time(), time.thread_time()
    for _ in range(runs):
        start = time.perf_counter()
        once()
        trips.append((time.perf_counter() - start) * 1000)
    cpu = (time.process_time() - process_start) - (time.thread_time() - client_start)
    return statistics.median(trips), cpu * 1000 / runs, listed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = loopback_config(Path(tmp) / "data", only=["http"])
        with LiveServer(config) as live:
            live.add_domain("example.org")
            live.add_account(ADDRESS, TEST_PASSWORD)
            live.call(fill(live, args.objects), timeout=600)
            base = f"http://127.0.0.1:{live.port('http')}"
            with httpx.Client(base_url=base, auth=(ADDRESS, TEST_PASSWORD), timeout=60) as client:
                print(f"\nDepth-1 PROPFIND (getetag), {args.objects:,} members, {args.runs} runs")
                print(
                    f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the start)"
                )
                print(f"{'collection':<28} {'listed':>7} {'median ms':>10} {'server CPU ms':>14}")
                for label, path in (("calendar", CALENDAR), ("address book", BOOK)):
                    trip, cpu, listed = measure(client, path, args.runs)
                    print(f"{label:<28} {listed:>7} {trip:>10.1f} {cpu:>14.1f}")


if __name__ == "__main__":
    main()
