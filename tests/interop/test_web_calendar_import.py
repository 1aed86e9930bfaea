"""The Calendar page's .ics import and export over real HTTP against the live server: the
imported objects are what CalDAV then serves (one per UID, overrides and time zones with
them), a re-import changes nothing, the export is the calendar as one file that imports
back, a new calendar made for an import (within ``max_per_account``), an imported meeting
invites nobody (a CalDAV PUT of the same kind does), and the form is refused without its
CSRF token."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import icalendar
import pytest

from pillarbox import config as cfg
from pillarbox import ical
from pillarbox.store.types import Calendar, CalendarObject, SpecialUse
from pillarbox.testing.davclient import dav_client, responses
from pillarbox.testing.icalendars import WEEKLY
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.polling import wait_for
from pillarbox.testing.webclient import WebSession, mailbox_id, special_mailbox_id
from pillarbox.transfer.ics import EXPORT_PAGE

ALICE = "alice@example.org"
BOB = "bob@example.org"
CAL = f"/dav/calendars/{ALICE}/personal/"
ICS = {"content-type": "text/calendar; charset=utf-8"}
HEAD = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Exporter//EN\r\nMETHOD:PUBLISH\r\n"
PARIS = WEEKLY[WEEKLY.index("BEGIN:VTIMEZONE") : WEEKLY.index("BEGIN:VEVENT")]
SERIES = WEEKLY[WEEKLY.index("BEGIN:VEVENT") : WEEKLY.index("END:VCALENDAR")]


def vevent(uid: str, summary: str, extra: str = "") -> str:
    return (
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20250101T000000Z\r\n"
        f"DTSTART:20310304T093000Z\r\nDTEND:20310304T103000Z\r\nSUMMARY:{summary}\r\n"
        f"{extra}END:VEVENT\r\n"
    )


MEETING = vevent(
    "meeting-1",
    "Board meeting",
    f"ORGANIZER;CN=Alice:mailto:{ALICE}\r\n"
    f"ATTENDEE;CN=Bob;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{BOB}\r\n",
)
JOURNAL = "BEGIN:VJOURNAL\r\nUID:j-1\r\nDTSTAMP:20250101T000000Z\r\nEND:VJOURNAL\r\n"
EXPORT = (
    HEAD + PARIS + SERIES + MEETING + JOURNAL + vevent("plain-1", "Lunch") + "END:VCALENDAR\r\n"
)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    config = loopback_config(tmp_path / "data", only=["http", "https", "submission", "imap"])
    with LiveServer(config) as server:
        server.add_domain("example.org")
        server.add_account(ALICE, TEST_PASSWORD, display_name="Alice")
        server.add_account(BOB, TEST_PASSWORD, display_name="Bob")
        yield server


@pytest.fixture
def alice(live: LiveServer) -> Iterator[WebSession]:
    session = WebSession(live)
    assert session.login(ALICE).status_code == 303
    yield session
    session.close()


def import_file(
    session: WebSession, data: bytes, calendar: str = "personal", new: str = ""
) -> httpx.Response:
    return session.client.post(
        "/calendar/import",
        data={"csrf": session.csrf("/calendar"), "calendar": calendar, "new_calendar": new},
        files={"file": ("calendar.ics", data, "text/calendar")},
    )


def titles(live: LiveServer) -> dict[str, str]:
    """Alice's calendars: name → display name."""
    account = live.call(live.store.get_account(ALICE))
    return {c.name: c.display_name for c in live.call(live.store.list_calendars(account.id))}


def dav_objects(live: LiveServer) -> dict[str, tuple[str, bytes]]:
    """name → (ETag, bytes) of Alice's default calendar, over CalDAV (PROPFIND, then GET)."""
    with dav_client(live, ALICE) as dav:
        listing = dav.request("PROPFIND", CAL, headers={"depth": "1"})
        names = [h.rsplit("/", 1)[1] for h in responses(listing) if not h.endswith("/")]
        found = {}
        for name in names:
            got = dav.get(CAL + name)
            found[name] = (got.headers["etag"], got.content)
        return found


def subjects(live: LiveServer, address: str, mailbox_id: int) -> list[bytes]:
    found = []
    for record in live.call(live.store.list_messages(mailbox_id)):
        raw = live.call(live.store.read_blob(record.blob_id))
        found.append(next(line for line in raw.splitlines() if line.startswith(b"Subject:")))
    return found


def test_import_read_back_over_caldav_reimport_and_export(
    live: LiveServer, alice: WebSession
) -> None:
    page = alice.get("/calendar")
    assert (
        'action="/calendar/import"' in page.text and 'href="/calendar/export/personal"' in page.text
    )

    done = import_file(alice, EXPORT.encode())
    assert done.status_code == 303
    location = urlsplit(done.headers["location"])
    query = parse_qs(location.query)
    assert (query["imported"], query["unchanged"], query["skipped"]) == (["3"], ["0"], ["1"])
    assert query["reasons"] == ["VJOURNAL j-1: a VJOURNAL is not kept in a calendar"]
    shown = alice.get(done.headers["location"]).text
    assert (
        "Imported 3 events; skipped 1 (VJOURNAL j-1: a VJOURNAL is not kept in a calendar)."
        in shown
    )
    assert "Nobody was sent an invitation." in shown

    objects = dav_objects(live)
    assert sorted(objects) == ["meeting-1.ics", "plain-1.ics", "weekly-1.ics"]
    # The series as the phone wrote it (the exporter's PRODID), its zone and override with it.
    assert (
        objects["weekly-1.ics"][1]
        == WEEKLY.replace("-//Phone//Calendar 1.0//EN", "-//Exporter//EN").encode()
    )
    plain = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Exporter//EN\r\n"
    assert (
        objects["plain-1.ics"][1]
        == (plain + vevent("plain-1", "Lunch") + "END:VCALENDAR\r\n").encode()
    )
    assert "09:30 Lunch" in alice.get("/calendar?month=2031-03").text

    # The same file again: nothing changes (the ETags CalDAV clients hold stay).
    again = parse_qs(urlsplit(import_file(alice, EXPORT.encode()).headers["location"]).query)
    assert (again["imported"], again["unchanged"], again["skipped"]) == (["0"], ["3"], ["1"])
    assert dav_objects(live) == objects
    # An edited event in a new export replaces the one of its UID, under its name.
    edited = EXPORT.replace("SUMMARY:Lunch", "SUMMARY:Long lunch")
    third = parse_qs(urlsplit(import_file(alice, edited.encode()).headers["location"]).query)
    assert (third["imported"], third["unchanged"]) == (["1"], ["2"])
    after = dav_objects(live)
    assert sorted(after) == sorted(objects)
    assert b"SUMMARY:Long lunch" in after["plain-1.ics"][1]

    exported = alice.get("/calendar/export/personal")
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "text/calendar; charset=utf-8"
    assert exported.headers["content-disposition"].startswith('attachment; filename="personal.ics"')
    calendar = icalendar.Calendar.from_ical(exported.content)
    assert len(calendar.walk("VTIMEZONE")) == 1
    assert sorted(str(e["UID"]) for e in calendar.walk("VEVENT")) == [
        "meeting-1", "plain-1", "weekly-1", "weekly-1",
    ]  # fmt: skip
    assert alice.get("/calendar/export/nothing").status_code == 404
    # The export imported into a second calendar: every event, the same UIDs and components.
    with dav_client(live, ALICE) as dav:
        made = dav.request("MKCALENDAR", f"/dav/calendars/{ALICE}/work/")
        assert made.status_code == 201
    into = parse_qs(
        urlsplit(import_file(alice, exported.content, "work").headers["location"]).query
    )
    assert (into["imported"], into["skipped"]) == (["3"], ["0"])
    second = alice.get("/calendar/export/work")
    assert second.content.replace(b"X-WR-CALNAME:work", b"X-WR-CALNAME:Calendar") == (
        exported.content
    )


def test_an_import_overwrites_nothing_a_client_wrote_meanwhile(live: LiveServer) -> None:
    """A phone writes between the import's listing and its writes: an object under the name
    the import chose for a new UID (holding another UID), and an edit of the object the
    import replaces. Neither is overwritten; each is counted skipped, with why; the run
    again stores the new event beside the phone's, and the file's version over the edit.

    A race in real time hangs on scheduling; the import's own two steps (:func:`planned`,
    :func:`written`) are the seam, called in order with a real CalDAV client's PUTs between
    them: nothing of ours is replaced."""
    from pillarbox.transfer.ics import import_ics, planned, written

    services = live.server.context
    assert services is not None
    account = live.call(live.store.get_account(ALICE))
    plain = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Phone//EN\r\n"
    with dav_client(live, ALICE) as dav:
        first = dav.put(CAL + "plain-1.ics", content=plain + vevent("plain-1", "Lunch")
                        + "END:VCALENDAR\r\n", headers=ICS)  # fmt: skip
        assert first.status_code == 201, first.text
    file = (
        HEAD + vevent("new-1", "New") + vevent("plain-1", "Long lunch") + vevent("kept-1", "Kept")
    )
    data = (file + "END:VCALENDAR\r\n").encode()
    plan = live.call(planned(services, account, "personal", data))
    assert [(piece.info.uid, name) for piece, name, _ in plan.writes] == [
        ("new-1", "new-1.ics"), ("plain-1", "plain-1.ics"), ("kept-1", "kept-1.ics"),
    ]  # fmt: skip
    phone = plain + vevent("phone-1", "Phone") + "END:VCALENDAR\r\n"
    dinner = plain + vevent("plain-1", "Dinner") + "END:VCALENDAR\r\n"
    with dav_client(live, ALICE) as dav:
        assert dav.put(CAL + "new-1.ics", content=phone, headers=ICS).status_code == 201
        assert dav.put(CAL + "plain-1.ics", content=dinner, headers=ICS).status_code == 204
    done = live.call(written(services, account, plan))
    assert (done.stored, done.unchanged, done.skipped) == (1, 0, 2)
    assert done.reasons == (
        "VEVENT new-1: new-1.ics was written meanwhile by a client; not overwritten",
        "VEVENT plain-1: plain-1.ics was written meanwhile by a client; not overwritten",
    )
    objects = dav_objects(live)
    assert sorted(objects) == ["kept-1.ics", "new-1.ics", "plain-1.ics"]
    assert objects["new-1.ics"][1] == phone.encode()
    assert objects["plain-1.ics"][1] == dinner.encode()

    again = live.call(import_ics(services, account, "personal", data))
    assert (again.stored, again.unchanged, again.skipped) == (2, 1, 0)
    after = dav_objects(live)
    assert after["new-1.ics"] == objects["new-1.ics"] and b"Long lunch" in after["plain-1.ics"][1]
    (beside,) = set(after) - set(objects)
    assert b"UID:new-1" in after[beside][1]


def test_a_calendar_deleted_while_its_export_streams_breaks_the_download_off(
    live: LiveServer, alice: WebSession, caplog: pytest.LogCaptureFixture
) -> None:
    """The export's status (200) went with its first bytes; the calendar deleted (a phone's
    CalDAV DELETE) before its next page is read: the connection is closed without the last
    chunk, so the client knows the file is cut off (httpx: RemoteProtocolError; a browser: a
    failed download), and the file lacks its END:VCALENDAR. One INFO line says why, no
    traceback, and no ERROR line (uvicorn's about the unfinished response is dropped). The first
    page (100 objects of 200 KB) is more than the socket buffers hold, so the server reads
    the second only after the client has read, after the delete."""
    caplog.set_level(logging.INFO)
    assert alice.get("/calendar").status_code == 200  # "personal" made, the default: "big" may go
    account = live.call(live.store.get_account(ALICE))
    now = datetime.now(UTC)
    live.call(live.store.create_calendar(account.id, Calendar(name="big"), now=now, limit=20))
    description = ical.folded("DESCRIPTION:" + "x" * 200_000)
    for n in range(EXPORT_PAGE + 50):
        data = HEAD + vevent(f"e{n:03}", "Long", description + "\r\n") + "END:VCALENDAR\r\n"
        obj = CalendarObject(name=f"e{n:03}.ics", uid=f"e{n:03}", component="VEVENT",
                             data=data.encode())  # fmt: skip
        live.call(live.store.save_calendar_object(account.id, "big", obj, now=now, limit=1000))
    with alice.client.stream("GET", "/calendar/export/big") as response:
        assert response.status_code == 200
        chunks = response.iter_raw()
        received = [next(chunks)]
        with dav_client(live, ALICE) as dav:
            assert dav.request("DELETE", f"/dav/calendars/{ALICE}/big/").status_code == 204
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
            received.extend(chunks)  # each chunk kept as it comes, until the break
    got = b"".join(received)
    assert got.startswith(b"BEGIN:VCALENDAR\r\n") and b"END:VCALENDAR" not in got
    assert got.count(b"BEGIN:VEVENT\r\n") == EXPORT_PAGE == got.count(b"END:VEVENT\r\n")
    [line] = [r for r in caplog.records if r.getMessage().startswith("calendar export broken")]
    assert (line.levelno, line.__dict__["fields"]["objects"]) == (logging.INFO, EXPORT_PAGE)
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert alice.get("/calendar/export/big").status_code == 404


def test_import_into_a_new_calendar(live: LiveServer, alice: WebSession) -> None:
    """ "A new calendar" and a name typed: a calendar made (as MKCALENDAR makes one) titled
    so, named after it, then imported into; each such import makes another."""
    page = alice.get("/calendar").text
    assert '<option value="">A new calendar</option>' in page and 'name="new_calendar"' in page
    done = import_file(alice, EXPORT.encode(), calendar="", new="Café & Work")
    assert done.status_code == 303
    query = parse_qs(urlsplit(done.headers["location"]).query)
    assert (query["imported"], query["skipped"]) == (["3"], ["1"])
    assert titles(live) == {"personal": "Calendar", "cafe-work": "Café & Work"}
    shown = alice.get("/calendar").text
    assert 'href="/calendar/export/cafe-work"' in shown and "Export Café &amp; Work" in shown
    assert b"UID:plain-1" in alice.get("/calendar/export/cafe-work").content
    assert import_file(alice, EXPORT.encode(), calendar="", new="Café & Work").status_code == 303
    assert sorted(titles(live)) == ["cafe-work", "cafe-work-2", "personal"]

    unnamed = import_file(alice, EXPORT.encode(), calendar="")
    assert unnamed.status_code == 400 and "name the new calendar" in unnamed.text
    both = import_file(alice, EXPORT.encode(), new="Trips")
    assert both.status_code == 400 and "choose “A new calendar”" in both.text
    nothing = import_file(alice, b"BEGIN:VCARD\r\nEND:VCARD\r\n", calendar="", new="Bad")
    assert nothing.status_code == 400 and "not an iCalendar (.ics) file" in nothing.text
    assert len(titles(live)) == 3


def test_an_imported_meeting_sends_no_invitation(live: LiveServer, alice: WebSession) -> None:
    """The imported event names Bob as attendee and Alice as organizer: nothing is sent. A
    CalDAV PUT of such an event afterwards does invite Bob (RFC 6638 implicit scheduling),
    so by the time that arrives the import's would have too."""
    done = import_file(alice, (HEAD + MEETING + "END:VCALENDAR\r\n").encode())
    assert parse_qs(urlsplit(done.headers["location"]).query)["imported"] == ["1"]
    assert live.call(live.store.list_queue()) == []
    control = (HEAD.replace("METHOD:PUBLISH\r\n", "") + MEETING.replace("meeting-1", "put-1")
               .replace("Board meeting", "Put meeting") + "END:VCALENDAR\r\n")  # fmt: skip
    with dav_client(live, ALICE) as dav:
        assert dav.put(CAL + "put-1.ics", content=control.encode(), headers=ICS).status_code == 201
    inbox = mailbox_id(live, BOB)
    arrived = wait_for(lambda: subjects(live, BOB, inbox), "the PUT's invitation")
    assert arrived == [b"Subject: Invitation: Put meeting"]
    assert subjects(live, ALICE, special_mailbox_id(live, ALICE, SpecialUse.SENT)) == []


def test_a_new_time_imported_keeps_the_answers_the_file_has(
    live: LiveServer, alice: WebSession
) -> None:
    """An organizer's PUT with a new time resets the attendees' answers (RFC 6638 §3.2.8);
    an import stores what its file says, so running it again changes nothing."""
    accepted = MEETING.replace("PARTSTAT=NEEDS-ACTION", "PARTSTAT=ACCEPTED")
    first = (HEAD + accepted + "END:VCALENDAR\r\n").encode()
    later = first.replace(b"T093000Z", b"T110000Z").replace(b"T103000Z", b"T120000Z")
    made = parse_qs(urlsplit(import_file(alice, first).headers["location"]).query)
    assert made["imported"] == ["1"]
    moved = parse_qs(urlsplit(import_file(alice, later).headers["location"]).query)
    assert (moved["imported"], moved["unchanged"]) == (["1"], ["0"])
    (etag, data), *_ = dav_objects(live).values()
    assert b"PARTSTAT=ACCEPTED" in data and b"DTSTART:20310304T110000Z" in data
    again = parse_qs(urlsplit(import_file(alice, later).headers["location"]).query)
    assert (again["imported"], again["unchanged"]) == (["0"], ["1"])
    assert list(dav_objects(live).values()) == [(etag, data)]
    assert live.call(live.store.list_queue()) == []


def test_refusals(live: LiveServer, alice: WebSession) -> None:
    unsigned = alice.client.post(
        "/calendar/import",
        data={"calendar": "personal"},
        files={"file": ("calendar.ics", EXPORT.encode(), "text/calendar")},
    )
    assert unsigned.status_code == 303  # to the login page: the form was not this session's
    assert "reason=stale" in unsigned.headers["location"] and dav_objects(live) == {}
    nothing = alice.client.post("/calendar/import", data={"csrf": alice.csrf("/calendar")})
    assert nothing.status_code == 400 and "choose an .ics file" in nothing.text
    vcard = import_file(alice, b"BEGIN:VCARD\r\nEND:VCARD\r\n")
    assert vcard.status_code == 400 and "not an iCalendar (.ics) file" in vcard.text
    elsewhere = import_file(alice, EXPORT.encode(), calendar="work")
    assert elsewhere.status_code == 400 and "no calendar named" in elsewhere.text
    invitation = import_file(alice, EXPORT.replace("PUBLISH", "REQUEST").encode())
    query = parse_qs(urlsplit(invitation.headers["location"]).query)
    assert (query["imported"], query["skipped"]) == (["0"], ["5"])  # every component
    assert dav_objects(live) == {}


def test_limits(tmp_path: Path) -> None:
    limits = cfg.CalendarsSection(max_import_bytes=4096, max_objects=3, max_per_account=2)
    config = loopback_config(tmp_path / "data", only=["http", "https"], calendars=limits)
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account(ALICE, TEST_PASSWORD)
        alice = WebSession(live)
        assert alice.login(ALICE).status_code == 303
        big = (
            HEAD + vevent("big", "Big", "DESCRIPTION:" + "x" * 4096 + "\r\n") + "END:VCALENDAR\r\n"
        )
        assert import_file(alice, big.encode()).status_code == 413
        five = HEAD + "".join(vevent(f"e{n}", f"E{n}") for n in range(5)) + "END:VCALENDAR\r\n"
        done = parse_qs(urlsplit(import_file(alice, five.encode()).headers["location"]).query)
        assert (done["imported"], done["skipped"]) == (["3"], ["2"])
        assert done["reasons"] == ["2 more event(s) past the 3 one import takes"]
        # Many reasons: the first ten shown, within the address's bound.
        journals = "".join(
            f"BEGIN:VJOURNAL\r\nUID:{'j' * 70}{n}\r\nEND:VJOURNAL\r\n" for n in range(30)
        )
        many = import_file(alice, (HEAD + journals + "END:VCALENDAR\r\n").encode())
        shown = parse_qs(urlsplit(many.headers["location"]).query)
        assert shown["skipped"] == ["30"] and shown["reasons"][0].endswith("; and 20 more")
        assert len(shown["reasons"][0]) <= 1500 + len("; and 20 more")
        assert "and 20 more" in alice.get(many.headers["location"]).text
        # The calendar is full: the next file's new events are skipped, a known UID replaced.
        more = HEAD + vevent("e0", "Changed") + vevent("e9", "E9") + "END:VCALENDAR\r\n"
        full = parse_qs(urlsplit(import_file(alice, more.encode()).headers["location"]).query)
        assert (full["imported"], full["skipped"]) == (["1"], ["1"])
        assert full["reasons"][0].startswith("1 event(s) not stored: ")
        assert sorted(dav_objects(live)) == ["e0.ics", "e1.ics", "e2.ics"]
        assert b"SUMMARY:Changed" in dav_objects(live)["e0.ics"][1]
        # A new calendar within max_per_account (2, with the default one), not past it.
        small = (HEAD + vevent("s", "S") + "END:VCALENDAR\r\n").encode()
        assert import_file(alice, small, calendar="", new="Second").status_code == 303
        third = import_file(alice, small, calendar="", new="Third")
        assert third.status_code == 400 and "at most 2 calendars" in third.text
        assert sorted(titles(live)) == ["personal", "second"]
        alice.close()
