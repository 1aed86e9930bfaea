"""The calendars synchronised with a real CalDAV client: vdirsyncer (Debian's package) keeps a
local vdir (one .ics file per event) in step with the account over HTTPS.

vdirsyncer finds the calendars from the host alone (``/.well-known/caldav``, the principal,
the calendar home), then syncs both ways. Events are made, edited and deleted on each side —
on the server with httpx as another CalDAV client, locally by writing files — and after each
sync both sides hold the same objects, byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from xml.etree.ElementTree import fromstring

import httpx
import pytest

from pillarbox.testing.davclient import dav_client
from pillarbox.testing.icalendars import WEEKLY, event
from pillarbox.testing.live import LiveServer
from pillarbox.testing.vdirsyncer import Vdirsyncer

pytestmark = pytest.mark.listeners("http", "https")

ALICE = "alice@example.org"
HOME = "/dav/calendars/alice@example.org/"
CAL = HOME + "personal/"
ICS = {"content-type": "text/calendar; charset=utf-8"}


@pytest.fixture
def phone(live: LiveServer) -> Iterator[httpx.Client]:
    """Another CalDAV client of alice's (what her phone would be), making changes on the
    server."""
    with dav_client(live, ALICE) as client:
        yield client


def server_objects(client: httpx.Client, calendar: str = CAL) -> dict[str, bytes]:
    """name → bytes of every object of the calendar, read by PROPFIND and GET."""
    listed = client.request("PROPFIND", calendar, headers={"depth": "1"})
    assert listed.status_code == 207
    responses = fromstring(listed.content).iterfind("{DAV:}response")
    hrefs = [r.findtext("{DAV:}href", "") for r in responses]
    return {href.rsplit("/", 1)[1]: client.get(href).content for href in hrefs if href != calendar}


def local_objects(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.glob("*.ics")}


def test_vdirsyncer_syncs_calendars_both_ways(
    live: LiveServer, phone: httpx.Client, tmp_path: Path
) -> None:
    client = Vdirsyncer(tmp_path, live, ALICE, "caldav", ".ics")
    local = client.local / "personal"
    made = event("server-1", "20250301T100000Z", summary="Made on the server")
    assert phone.put(CAL + "server-1.ics", content=made, headers=ICS).status_code == 201
    client.sync()
    assert local_objects(local) == server_objects(phone) == {"server-1.ics": made.encode()}

    # Made locally (a recurring series with a time zone, an exception and an override): it
    # reaches the server as it is, and the PUT's ETag leaves nothing to fetch back.
    (local / "weekly-1.ics").write_bytes(WEEKLY.encode())
    client.sync()
    assert server_objects(phone)["weekly-1.ics"] == WEEKLY.encode()
    assert "Copying" not in client.sync()

    # Edited on each side.
    edited_locally = WEEKLY.replace("COUNT=10", "COUNT=4")
    (local / "weekly-1.ics").write_bytes(edited_locally.encode())
    edited_on_server = made.replace("Made on the server", "Edited on the phone")
    assert phone.put(CAL + "server-1.ics", content=edited_on_server, headers=ICS).status_code == 204
    client.sync()
    assert (
        local_objects(local)
        == server_objects(phone)
        == {
            "server-1.ics": edited_on_server.encode(),
            "weekly-1.ics": edited_locally.encode(),
        }
    )
    # The edit is seen by a time-range query: the series now ends after four weeks.
    query = (
        '<?xml version="1.0"?><c:calendar-query xmlns:d="DAV:" '
        'xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/></d:prop><c:filter>'
        '<c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">'
        '<c:time-range start="20250210T000000Z" end="20250211T000000Z"/>'
        "</c:comp-filter></c:comp-filter></c:filter></c:calendar-query>"
    )
    answer = phone.request("REPORT", CAL, content=query, headers={"depth": "1"})
    assert answer.status_code == 207 and b"weekly-1.ics" not in answer.content

    # Deleted on each side.
    (local / "weekly-1.ics").unlink()
    assert phone.delete(CAL + "server-1.ics").status_code == 204
    client.sync()
    assert local_objects(local) == server_objects(phone) == {}
    assert "Deleting" not in client.sync()

    # A calendar made on the server is discovered and synced too.
    assert phone.request("MKCALENDAR", HOME + "work/").status_code == 201
    task = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VTODO\r\nUID:task-1\r\n"
        "DTSTAMP:20250101T000000Z\r\nSUMMARY:File the report\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"
    )
    assert phone.put(HOME + "work/task-1.ics", content=task, headers=ICS).status_code == 201
    client.sync()
    assert local_objects(client.local / "work") == {"task-1.ics": task.encode()}
