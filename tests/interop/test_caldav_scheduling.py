"""CalDAV implicit scheduling (RFC 6638) against the live server: what a phone stores with
ATTENDEEs makes the server send the iTIP messages by iMIP (RFC 6047), checked in the
recipients' INBOXes. The organizer's PUT invites (REQUEST), a change sends updates, an
attendee taken off gets a CANCEL, the DELETE cancels for all, a MOVE sends nothing; an
attendee's PUT changing its answer sends the REPLY; SCHEDULE-AGENT=CLIENT (§7.1) and
``Schedule-Reply: F`` (§8.1) send nothing; python-caldav's save invites too; a
sync-collection narrows ``calendar-data``; a reschedule resets the attendees' answers (§3.2.8);
deleting a calendar removes each meeting in it (§3.2.3.2); SCHEDULE-STATUS is the server's
(§3.2.9, §7.3), a Calendar page save's too; an ORGANIZER per component is refused (§3.2.4.2);
the webmail's Accept follows the default calendar a client chose (§9.2)."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from xml.etree.ElementTree import fromstring

import caldav
import httpx
import icalendar
import pytest

from pillarbox.net.tls import tls_paths
from pillarbox.testing.davclient import dav_client, error_of, responses
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.polling import wait_for
from pillarbox.testing.webclient import WebSession, mailbox_id

ALICE = "alice@example.org"
BOB = "bob@example.org"
CAROL = "carol@example.org"
ICS = {"content-type": "text/calendar; charset=utf-8"}
C = "{urn:ietf:params:xml:ns:caldav}"


def calendar_of(address: str) -> str:
    return f"/dav/calendars/{address}/personal/"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    config = loopback_config(tmp_path / "data", only=["http", "https", "submission"])
    with LiveServer(config) as server:
        server.add_domain("example.org")
        server.add_account(ALICE, TEST_PASSWORD, display_name="Alice")
        server.add_account(BOB, TEST_PASSWORD, display_name="Bob")
        server.add_account(CAROL, TEST_PASSWORD, display_name="Carol")
        yield server


def meeting(
    *attendees: str,
    start: str = "20310304T093000Z",
    sequence: int = 0,
    organizer: str = f"ORGANIZER;CN=Alice:mailto:{ALICE}",
    extra: str = "",
) -> str:
    """Alice's meeting as iOS writes it: the organizer listed as an attendee too."""
    lines = "".join(f"{a}\r\n" for a in attendees)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Apple Inc.//iOS 18//EN\r\n"
        "BEGIN:VEVENT\r\nUID:roadmap-1\r\nDTSTAMP:20310101T000000Z\r\n"
        f"DTSTART:{start}\r\nDURATION:PT1H\r\nSUMMARY:Roadmap\r\nSEQUENCE:{sequence}\r\n"
        f"{organizer}\r\nATTENDEE;CN=Alice;PARTSTAT=ACCEPTED:mailto:{ALICE}\r\n{lines}{extra}"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def bob_line(partstat: str = "NEEDS-ACTION") -> str:
    return f"ATTENDEE;CN=Bob;PARTSTAT={partstat};RSVP=TRUE:mailto:{BOB}"


CAROL_LINE = f"ATTENDEE;CN=Carol;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{CAROL}"


def itips(live: LiveServer, address: str) -> list[icalendar.Event]:
    """The VEVENT of each iMIP message in the INBOX, oldest first, its METHOD checked against
    the part's method parameter (RFC 6047 §2.4) and kept as ``X-METHOD`` for the test."""
    found = []
    for raw in live.mailbox_messages(address, "INBOX"):
        message = message_from_bytes(raw, policy=policy.default)
        part = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
        itip = icalendar.Calendar.from_ical(part.get_content())
        assert part.get_param("method") == str(itip["METHOD"])
        (event,) = itip.walk("VEVENT")
        event["X-METHOD"] = str(itip["METHOD"])
        event["X-SUBJECT"] = str(message["Subject"])
        found.append(event)
    return found


def methods(live: LiveServer, address: str) -> list[tuple[str, int]]:
    return [(str(e["X-METHOD"]), int(e.get("SEQUENCE", 0))) for e in itips(live, address)]


def wait_count(live: LiveServer, address: str, count: int) -> list[icalendar.Event]:
    return wait_for(
        lambda: found if len(found := itips(live, address)) >= count else None,
        f"{count} scheduling messages for {address}",
    )


def put(client: httpx.Client, path: str, body: str, **headers: str) -> httpx.Response:
    return client.put(path, content=body.encode(), headers={**ICS, **headers})


def test_organizer_and_attendee_scheduling_over_caldav(live: LiveServer) -> None:
    """Alice's phone invites Bob and Carol, moves the meeting, takes Carol off and deletes it;
    Bob's phone accepts, then declines with Schedule-Reply: F."""
    event = calendar_of(ALICE) + "roadmap-1.ics"
    with dav_client(live, ALICE) as alice, dav_client(live, BOB) as bob:
        options = alice.request("OPTIONS", "/dav/")
        assert "calendar-auto-schedule" in options.headers["dav"]  # RFC 6638 §2

        assert put(alice, event, meeting(bob_line(), CAROL_LINE)).status_code == 201
        (request,) = wait_count(live, BOB, 1)
        assert request["X-METHOD"] == "REQUEST" and int(request.get("SEQUENCE", 0)) == 0
        assert str(request["UID"]) == "roadmap-1" and request["X-SUBJECT"] == "Invitation: Roadmap"
        assert [str(e["X-METHOD"]) for e in wait_count(live, CAROL, 1)] == ["REQUEST"]

        # Moved: the update to both, with the SEQUENCE the phone raised.
        moved = meeting(bob_line(), CAROL_LINE, start="20310304T110000Z", sequence=1)
        assert put(alice, event, moved).status_code == 204
        update = wait_count(live, BOB, 2)[1]
        assert int(update["SEQUENCE"]) == 1 and update["X-METHOD"] == "REQUEST"
        assert str(update["DTSTART"].to_ical(), "ascii") == "20310304T110000Z"
        wait_count(live, CAROL, 2)

        # Carol taken off: a CANCEL to her; Bob gets the update.
        without_carol = meeting(bob_line(), start="20310304T110000Z", sequence=2)
        assert put(alice, event, without_carol).status_code == 204
        cancel = wait_count(live, CAROL, 3)[2]
        assert cancel["X-METHOD"] == "CANCEL" and str(cancel["STATUS"]) == "CANCELLED"
        assert str(cancel["ATTENDEE"]).lower() == f"mailto:{CAROL}"
        wait_count(live, BOB, 3)

        # An alarm added: nothing the attendees hold changed, nobody is sent anything.
        alarm = "BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:x\r\nTRIGGER:-PT5M\r\nEND:VALARM\r\n"
        same = meeting(bob_line(), start="20310304T110000Z", sequence=2, extra=alarm)
        assert put(alice, event, same).status_code == 204

        # Bob's phone stores the invitation, then accepts: the REPLY to Alice.
        copy = calendar_of(BOB) + "roadmap-1.ics"
        assert put(bob, copy, without_carol).status_code == 201  # NEEDS-ACTION: no answer
        accepted = meeting(bob_line("ACCEPTED"), start="20310304T110000Z", sequence=2)
        assert put(bob, copy, accepted).status_code == 204
        (reply,) = wait_count(live, ALICE, 1)
        assert reply["X-METHOD"] == "REPLY" and reply["X-SUBJECT"] == "Accepted: Roadmap"
        assert str(reply["ATTENDEE"]).lower() == f"mailto:{BOB}"
        assert reply["ATTENDEE"].params["PARTSTAT"] == "ACCEPTED"
        assert int(reply["SEQUENCE"]) == 2
        # The same answer written again, and a change with Schedule-Reply: F: nothing sent.
        assert put(bob, copy, accepted).status_code == 204
        declined = meeting(bob_line("DECLINED"), start="20310304T110000Z", sequence=2)
        assert put(bob, copy, declined, **{"schedule-reply": "F"}).status_code == 204
        assert bob.delete(copy, headers={"schedule-reply": "F"}).status_code == 204

        # Alice deletes the meeting: a CANCEL to Bob (not to Carol, no longer invited).
        assert alice.delete(event).status_code == 204
        last = wait_count(live, BOB, 4)[3]
        assert last["X-METHOD"] == "CANCEL" and int(last["SEQUENCE"]) == 3
        assert alice.get(event).status_code == 404

    assert methods(live, BOB) == [("REQUEST", 0), ("REQUEST", 1), ("REQUEST", 2), ("CANCEL", 3)]
    # Her CANCEL: the version she was sent (SEQUENCE 1), raised (RFC 5546 §3.2.5).
    assert methods(live, CAROL) == [("REQUEST", 0), ("REQUEST", 1), ("CANCEL", 2)]
    assert methods(live, ALICE) == [("REPLY", 2)]  # never sent to herself
    # What the server sends for a phone is not kept in Sent: nobody wrote it (the webmail's
    # own invitations and answers are, docs/calendars.md).
    assert live.mailbox_messages(ALICE, "Sent") == live.mailbox_messages(BOB, "Sent") == []


def test_client_scheduling_and_an_attendee_delete(live: LiveServer) -> None:
    """SCHEDULE-AGENT=CLIENT on the ORGANIZER: the phone sends its own, the server nothing;
    on one attendee: only the others are invited; an attendee's DELETE declines."""
    path = calendar_of(ALICE) + "roadmap-1.ics"
    own = f"ORGANIZER;SCHEDULE-AGENT=CLIENT:mailto:{ALICE}"
    carol_by_client = CAROL_LINE.replace("ATTENDEE;", "ATTENDEE;SCHEDULE-AGENT=CLIENT;")
    with dav_client(live, ALICE) as alice, dav_client(live, BOB) as bob:
        assert put(alice, path, meeting(bob_line(), organizer=own)).status_code == 201
        assert alice.delete(path).status_code == 204
        assert put(alice, path, meeting(bob_line(), carol_by_client)).status_code == 201
        (request,) = wait_count(live, BOB, 1)
        assert int(request.get("SEQUENCE", 0)) == 0  # the second PUT's, not the first's
        # Bob's phone deletes the invitation: a REPLY declining (no Schedule-Reply: F).
        copy = calendar_of(BOB) + "roadmap-1.ics"
        assert put(bob, copy, meeting(bob_line())).status_code == 201
        assert bob.delete(copy).status_code == 204
        (reply,) = wait_count(live, ALICE, 1)
        assert reply["X-METHOD"] == "REPLY" and reply["ATTENDEE"].params["PARTSTAT"] == "DECLINED"
    assert methods(live, BOB) == [("REQUEST", 0)]
    assert methods(live, CAROL) == []


def test_a_moved_meeting_sends_nothing(live: LiveServer) -> None:
    """MOVE (RFC 4918 §9.9) of a meeting to another calendar: the same event, filed
    elsewhere, so nobody is sent anything (RFC 6638 §3.2); deleting it there cancels it."""
    source = calendar_of(ALICE) + "roadmap-1.ics"
    work = f"/dav/calendars/{ALICE}/work/"
    with dav_client(live, ALICE) as alice:
        assert put(alice, source, meeting(bob_line())).status_code == 201
        wait_count(live, BOB, 1)
        assert alice.request("MKCALENDAR", work).status_code == 201
        destination = f"{alice.base_url}{work}roadmap-1.ics"
        moved = alice.request("MOVE", source, headers={"destination": destination})
        assert moved.status_code == 201
        assert alice.delete(work + "roadmap-1.ics").status_code == 204
        wait_count(live, BOB, 2)
    assert methods(live, BOB) == [("REQUEST", 0), ("CANCEL", 1)]


def test_a_reschedule_resets_the_answers(live: LiveServer) -> None:
    """RFC 6638 §3.2.8: the organizer's phone moves a meeting Bob accepted and writes his
    ACCEPTED back: the server stores him NEEDS-ACTION (the organizer's own line, and Carol's,
    whose client schedules her, §7.1, as sent), answers the PUT without an ETag (RFC 4791
    §5.3.4: not stored as sent) and sends Bob the update asking him again. A change that
    moves nothing (the place) keeps the object as sent, its ETag answered."""
    path = calendar_of(ALICE) + "roadmap-1.ics"
    carol = CAROL_LINE.replace("ATTENDEE;", "ATTENDEE;SCHEDULE-AGENT=CLIENT;").replace(
        "NEEDS-ACTION", "ACCEPTED"
    )
    with dav_client(live, ALICE) as alice:
        assert put(alice, path, meeting(bob_line("ACCEPTED"), carol)).status_code == 201
        wait_count(live, BOB, 1)
        moved = meeting(bob_line("ACCEPTED"), carol, start="20310304T110000Z", sequence=1)
        written = put(alice, path, moved)
        assert written.status_code == 204 and "etag" not in written.headers
        assert "schedule-tag" in written.headers
        stored = alice.get(path)
        assert stored.text != moved
        (event,) = icalendar.Calendar.from_ical(stored.text).walk("VEVENT")
        answers = {str(a).lower(): a.params["PARTSTAT"] for a in event["ATTENDEE"]}
        assert answers == {
            f"mailto:{ALICE}": "ACCEPTED",
            f"mailto:{BOB}": "NEEDS-ACTION",
            f"mailto:{CAROL}": "ACCEPTED",
        }
        update = wait_count(live, BOB, 2)[1]
        assert update["X-METHOD"] == "REQUEST" and int(update["SEQUENCE"]) == 1
        (bob,) = [a for a in update["ATTENDEE"] if str(a).lower() == f"mailto:{BOB}"]
        assert bob.params["PARTSTAT"] == "NEEDS-ACTION"

        # Bob's answer applied (as the webmail's "Update the event" does), then a new place:
        # nothing rescheduled, the object kept as sent and its ETag answered.
        answered = stored.text.replace("PARTSTAT=NEEDS-ACTION", "PARTSTAT=ACCEPTED")
        assert put(alice, path, answered).status_code == 204
        elsewhere = answered.replace("SUMMARY:Roadmap", "SUMMARY:Roadmap\r\nLOCATION:Room 2")
        placed = put(alice, path, elsewhere)
        assert (
            placed.status_code == 204 and placed.headers["etag"] == alice.get(path).headers["etag"]
        )
        assert alice.get(path).text == elsewhere

        # The meeting's name written over with a to-do: stored, nothing to reset (no 500).
        todo = (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//EN\r\nBEGIN:VTODO\r\n"
            "UID:roadmap-1\r\nDTSTAMP:20310101T000000Z\r\nSUMMARY:Slides\r\n"
            "END:VTODO\r\nEND:VCALENDAR\r\n"
        )
        assert put(alice, path, todo).status_code == 204


def test_an_attendee_answers_one_instance(live: LiveServer) -> None:
    """RFC 6638 §3.2.2.3: Bob's phone accepts a weekly meeting (a REPLY for the series), then
    removes one instance with an EXDATE ("MUST deliver an iTIP REPLY … to indicate that the
    Attendee has declined the instance") and answers another TENTATIVE in an overridden
    instance: a REPLY each, naming only that instance by its RECURRENCE-ID."""
    weekly = "RRULE:FREQ=WEEKLY;COUNT=4\r\n"
    copy = calendar_of(BOB) + "roadmap-1.ics"
    with dav_client(live, ALICE) as alice, dav_client(live, BOB) as bob:
        made = put(alice, calendar_of(ALICE) + "roadmap-1.ics", meeting(bob_line(), extra=weekly))
        assert made.status_code == 201
        wait_count(live, BOB, 1)
        accepted = meeting(bob_line("ACCEPTED"), extra=weekly)
        assert put(bob, copy, accepted).status_code == 201
        (series,) = wait_count(live, ALICE, 1)
        assert "RECURRENCE-ID" not in series and series["ATTENDEE"].params["PARTSTAT"] == "ACCEPTED"

        without = meeting(bob_line("ACCEPTED"), extra=weekly + "EXDATE:20310311T093000Z\r\n")
        assert put(bob, copy, without).status_code == 204
        declined = wait_count(live, ALICE, 2)[1]
        assert declined["X-SUBJECT"] == "Declined: Roadmap"
        assert declined["RECURRENCE-ID"].to_ical() == b"20310311T093000Z"
        assert declined["ATTENDEE"].params["PARTSTAT"] == "DECLINED"

        instance = (
            "BEGIN:VEVENT\r\nUID:roadmap-1\r\nDTSTAMP:20310101T000000Z\r\n"
            "RECURRENCE-ID:20310318T093000Z\r\nDTSTART:20310318T093000Z\r\nDURATION:PT1H\r\n"
            f"SUMMARY:Roadmap\r\nORGANIZER;CN=Alice:mailto:{ALICE}\r\n{bob_line('TENTATIVE')}\r\n"
            "END:VEVENT\r\n"
        )
        maybe = without.replace("END:VCALENDAR", instance + "END:VCALENDAR")
        assert put(bob, copy, maybe).status_code == 204
        tentative = wait_count(live, ALICE, 3)[2]
        assert tentative["RECURRENCE-ID"].to_ical() == b"20310318T093000Z"
        assert tentative["ATTENDEE"].params["PARTSTAT"] == "TENTATIVE"
    assert methods(live, ALICE) == [("REPLY", 0)] * 3


def test_python_caldav_saves_an_invitation(live: LiveServer) -> None:
    """python-caldav (a real CalDAV client library) saves an event with an attendee: the
    server invites him."""
    url = f"https://127.0.0.1:{live.port('https')}/dav/"
    cafile = str(tls_paths(live.config)[0])
    with caldav.DAVClient(url, username=ALICE, password=TEST_PASSWORD, ssl_verify_cert=cafile) as c:
        calendar = c.calendar(url=f"https://127.0.0.1:{live.port('https')}{calendar_of(ALICE)}")
        calendar.save_event(meeting(bob_line()))
    (request,) = wait_count(live, BOB, 1)
    assert request["X-METHOD"] == "REQUEST" and str(request["UID"]) == "roadmap-1"


def test_sync_collection_narrows_calendar_data(live: LiveServer) -> None:
    """RFC 4791 §9.6 in a sync-collection (RFC 6578): only the properties asked for."""
    with dav_client(live, ALICE) as alice:
        assert put(alice, calendar_of(ALICE) + "solo.ics", meeting()).status_code == 201
        body = (
            '<?xml version="1.0"?><d:sync-collection xmlns:d="DAV:" '
            'xmlns:c="urn:ietf:params:xml:ns:caldav"><d:sync-token/><d:sync-level>1'
            "</d:sync-level><d:prop><d:getetag/><c:calendar-data>"
            '<c:comp name="VCALENDAR"><c:prop name="VERSION"/><c:comp name="VEVENT">'
            '<c:prop name="UID"/><c:prop name="SUMMARY"/></c:comp></c:comp>'
            "</c:calendar-data></d:prop></d:sync-collection>"
        )
        answered = alice.request("REPORT", calendar_of(ALICE), content=body)
        (found,) = responses(answered).values()
        data = found.findtext(f".//{C}calendar-data") or ""
        assert "SUMMARY:Roadmap" in data and "UID:roadmap-1" in data
        assert "DTSTART" not in data and "ORGANIZER" not in data
        assert fromstring(answered.content).findtext("{DAV:}sync-token")


def test_deleting_a_calendar_removes_its_meetings(live: LiveServer) -> None:
    """RFC 6638 §3.2.3.2: python-caldav deletes a calendar; every meeting in it goes as its
    own DELETE would: Alice's cancelled for Bob, the one Bob attends declined to Carol. An
    event without attendees sends nothing, nor does a calendar deleted with
    ``Schedule-Reply: F`` for the meeting Bob attends (§8.1)."""
    url = f"https://127.0.0.1:{live.port('https')}/dav/"
    cafile = str(tls_paths(live.config)[0])
    carols = meeting(bob_line(), organizer=f"ORGANIZER;CN=Carol:mailto:{CAROL}").replace(
        "roadmap-1", "offsite-2"
    )
    alone = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:gym\r\n" + (
        "DTSTAMP:20310101T000000Z\r\nDTSTART:20310305T070000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    with dav_client(live, ALICE) as alice, dav_client(live, BOB) as bob:
        work, team = f"/dav/calendars/{ALICE}/work/", f"/dav/calendars/{BOB}/team/"
        quiet = f"/dav/calendars/{BOB}/quiet/"
        for client, path in ((alice, work), (bob, team), (bob, quiet)):
            assert client.request("MKCALENDAR", path).status_code == 201
        assert put(alice, work + "roadmap-1.ics", meeting(bob_line())).status_code == 201
        assert put(alice, work + "gym.ics", alone).status_code == 201
        wait_count(live, BOB, 1)
        assert put(bob, team + "offsite-2.ics", carols).status_code == 201
        assert put(bob, quiet + "offsite-2.ics", carols).status_code == 201
        assert bob.request("DELETE", quiet, headers={"schedule-reply": "F"}).status_code == 204
    for address, name in ((ALICE, "work"), (BOB, "team")):
        with caldav.DAVClient(
            url, username=address, password=TEST_PASSWORD, ssl_verify_cert=cafile
        ) as c:
            c.calendar(url=f"{url}calendars/{address}/{name}/").delete()
    cancel = wait_count(live, BOB, 2)[1]
    assert cancel["X-METHOD"] == "CANCEL" and str(cancel["UID"]) == "roadmap-1"
    (reply,) = wait_count(live, CAROL, 1)
    assert reply["X-METHOD"] == "REPLY" and str(reply["UID"]) == "offsite-2"
    assert str(reply["ATTENDEE"]).lower() == f"mailto:{BOB}"
    assert reply["ATTENDEE"].params["PARTSTAT"] == "DECLINED"
    assert methods(live, BOB) == [("REQUEST", 0), ("CANCEL", 1)]
    assert methods(live, CAROL) == [("REPLY", 0)]
    assert methods(live, ALICE) == []


def schedule_statuses(client: httpx.Client, path: str, name: str) -> dict[str, str | None]:
    """Each ``name`` (ATTENDEE, ORGANIZER) line's SCHEDULE-STATUS in the stored object."""
    (event,) = icalendar.Calendar.from_ical(client.get(path).content).walk("VEVENT")
    lines = event.get(name)
    return {
        str(line)[7:].lower(): line.params.get("SCHEDULE-STATUS")
        for line in (lines if isinstance(lines, list) else [lines])
    }


def test_schedule_status_is_the_servers(live: LiveServer) -> None:
    """RFC 6638 §3.2.9, §7.3: after implicit scheduling the organizer's copy says what became
    of each message — in Bob's INBOX (1.2), queued for another server (1.1), an address no
    one has (3.7) —, a client's own status there is undone, and no scheduling message carries
    one; Bob's copy says on the ORGANIZER what became of his REPLY."""
    event, copy = calendar_of(ALICE) + "roadmap-1.ics", calendar_of(BOB) + "roadmap-1.ics"
    nobody = "ATTENDEE;CN=Nobody;PARTSTAT=NEEDS-ACTION:mailto:nobody@example.org"
    remote = "ATTENDEE;CN=Dan;PARTSTAT=NEEDS-ACTION:mailto:dan@elsewhere.test"
    claimed = bob_line().replace("ATTENDEE;", "ATTENDEE;SCHEDULE-STATUS=2.0;")
    with dav_client(live, ALICE) as alice, dav_client(live, BOB) as bob:
        created = put(alice, event, meeting(claimed, nobody, remote))
        assert created.status_code == 201 and "etag" not in created.headers  # not as sent
        assert schedule_statuses(alice, event, "ATTENDEE") == {
            ALICE: None,  # the organizer, listed by iOS: sent nothing
            BOB: "1.2",
            "nobody@example.org": "3.7",
            "dan@elsewhere.test": "1.1",
        }
        (request,) = wait_count(live, BOB, 1)
        assert all("SCHEDULE-STATUS" not in a.params for a in request["ATTENDEE"])

        # The phone writes back what it fetched: stored as sent, the ETag answered.
        fetched = alice.get(event)
        back = alice.put(event, content=fetched.content, headers=ICS)
        assert back.status_code == 204 and back.headers["etag"] == fetched.headers["etag"]
        # A client claiming another status for Bob, with nothing sent: the server's stays.
        tampered = fetched.content.replace(b"SCHEDULE-STATUS=1.2", b"SCHEDULE-STATUS=2.0")
        assert tampered != fetched.content
        assert alice.put(event, content=tampered, headers=ICS).status_code == 204
        assert schedule_statuses(alice, event, "ATTENDEE")[BOB] == "1.2"

        # Bob's phone accepts: his REPLY is in Alice's INBOX, his copy says so.
        assert put(bob, copy, meeting(bob_line())).status_code == 201
        assert schedule_statuses(bob, copy, "ORGANIZER") == {ALICE: None}
        assert put(bob, copy, meeting(bob_line("ACCEPTED"))).status_code == 204
        assert schedule_statuses(bob, copy, "ORGANIZER") == {ALICE: "1.2"}
        (reply,) = wait_count(live, ALICE, 1)
        assert "SCHEDULE-STATUS" not in reply["ORGANIZER"].params
        assert "SCHEDULE-STATUS" not in reply["ATTENDEE"].params
    assert methods(live, BOB) == [("REQUEST", 0)]


def test_python_caldav_saves_again_after_an_etag_less_put(live: LiveServer) -> None:
    """RFC 4791 §5.3.4: the PUT that invites Bob answers no ETag (his SCHEDULE-STATUS was
    written); python-caldav then drops the ETag it had and guards its next save with the
    Schedule-Tag the PUT answered (RFC 6638 §8.3), which the status write kept: the update
    is taken, not refused."""
    url = f"https://127.0.0.1:{live.port('https')}/dav/"
    cafile = str(tls_paths(live.config)[0])
    with caldav.DAVClient(url, username=ALICE, password=TEST_PASSWORD, ssl_verify_cert=cafile) as c:
        calendar = c.calendar(url=f"https://127.0.0.1:{live.port('https')}{calendar_of(ALICE)}")
        saved = calendar.save_event(meeting(bob_line()))
        assert saved.etag is None and saved.schedule_tag
        saved.icalendar_component["SUMMARY"] = "Roadmap v2"
        saved.save()
        assert "Roadmap v2" in calendar.event_by_uid("roadmap-1").data
    update = wait_count(live, BOB, 2)[1]
    assert str(update["SUMMARY"]) == "Roadmap v2"


def test_the_webmails_accept_follows_the_chosen_default_calendar(live: LiveServer) -> None:
    """RFC 6638 §9.2: Bob's client makes ``work`` his default calendar (a PROPPATCH of his
    inbox); the invitation he accepts in the webmail is stored there, not in ``personal``,
    with what became of his REPLY on its ORGANIZER (§7.3), as a phone's answer records it."""
    work = f"/dav/calendars/{BOB}/work/"
    patch = (
        '<d:propertyupdate xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set>'
        f"<d:prop><c:schedule-default-calendar-URL><d:href>{work}</d:href>"
        "</c:schedule-default-calendar-URL></d:prop></d:set></d:propertyupdate>"
    )
    with dav_client(live, ALICE) as alice, dav_client(live, BOB) as bob:
        assert bob.request("MKCALENDAR", work).status_code == 201
        inbox = f"/dav/scheduling/{BOB}/inbox/"
        assert bob.request("PROPPATCH", inbox, content=patch).status_code == 207
        assert (
            put(alice, calendar_of(ALICE) + "roadmap-1.ics", meeting(bob_line())).status_code == 201
        )
        wait_count(live, BOB, 1)
        box = mailbox_id(live, BOB, "INBOX")
        (record,) = live.call(live.store.list_messages(box))
        web = WebSession(live)
        assert web.login(BOB).status_code == 303
        accepted = web.post(f"/mail/{box}/{record.uid}/invitation", {"action": "accept"})
        assert accepted.status_code == 303
        web.close()
        members = responses(bob.request("PROPFIND", work, headers={"depth": "1"}))
        (copy,) = (href for href in members if href.endswith(".ics"))
        # RFC 6638 §7.3: his REPLY went to Alice's INBOX, and his copy says so.
        assert schedule_statuses(bob, copy, "ORGANIZER") == {ALICE: "1.2"}
        personal = responses(bob.request("PROPFIND", calendar_of(BOB), headers={"depth": "1"}))
        assert list(personal) == [calendar_of(BOB)]
    (reply,) = wait_count(live, ALICE, 1)
    assert reply["ATTENDEE"].params["PARTSTAT"] == "ACCEPTED"


def test_a_calendar_page_save_writes_schedule_status(live: LiveServer) -> None:
    """RFC 6638 §3.2.9, §7.3: an event with attendees saved on the Calendar page carries the
    same SCHEDULE-STATUS a CalDAV PUT of it would — Bob's REQUEST in his INBOX (1.2), one
    queued for another server (1.1), an address no one has (3.7); an update writes them
    again, and one adding Carol adds hers."""
    form = {
        "title": "Roadmap", "calendar": "personal", "start_date": "2031-03-04",
        "start_time": "09:30", "end_date": "2031-03-04", "end_time": "10:30",
        "location": "", "description": "", "action": "save",
        "attendees": f"Bob <{BOB}>, nobody@example.org, dan@elsewhere.test",
    }  # fmt: skip
    web = WebSession(live)
    assert web.login(ALICE).status_code == 303
    made = web.post("/calendar/events", form)
    assert made.status_code == 303 and "done=invited" in made.headers["location"]
    with dav_client(live, ALICE) as alice:
        (event,) = (h for h in responses(alice.request("PROPFIND", calendar_of(ALICE), headers={
            "depth": "1"})) if h.endswith(".ics"))  # fmt: skip
        statuses = {BOB: "1.2", "nobody@example.org": "3.7", "dan@elsewhere.test": "1.1"}
        assert schedule_statuses(alice, event, "ATTENDEE") == statuses
        name = event.rsplit("/", 1)[1]
        # A new location: the update to all, and their statuses written again.
        moved = web.post(f"/calendar/events/personal/{name}", {**form, "location": "Room 2"})
        assert moved.status_code == 303 and "done=invited" in moved.headers["location"]
        assert schedule_statuses(alice, event, "ATTENDEE") == statuses
        added = web.post(
            f"/calendar/events/personal/{name}",
            {**form, "attendees": f"{form['attendees']}, {CAROL}"},
        )
        assert added.status_code == 303 and "done=invited" in added.headers["location"]
        assert schedule_statuses(alice, event, "ATTENDEE") == {**statuses, CAROL: "1.2"}
    web.close()
    # The invitation, the new location, the list with Carol (RFC 5546 §3.2.2: her line is
    # in every attendee's copy).
    assert [m for m, _ in methods(live, BOB)] == ["REQUEST"] * 3
    assert [m for m, _ in methods(live, CAROL)] == ["REQUEST"]


def test_an_organizer_per_component_is_refused(live: LiveServer) -> None:
    """RFC 6638 §3.2.4.2: a meeting whose overridden instance names another ORGANIZER is
    refused (403 ``same-organizer-in-all-components``) and nothing is sent; the same override
    with the series' ORGANIZER (its address in other case) is stored and invites Bob."""
    override = (
        "END:VEVENT\r\nBEGIN:VEVENT\r\nUID:roadmap-1\r\nDTSTAMP:20310101T000000Z\r\n"
        "RECURRENCE-ID:20310311T093000Z\r\nDTSTART:20310311T100000Z\r\nDURATION:PT1H\r\n"
        "SUMMARY:Roadmap\r\n{organizer}\r\n{bob}\r\n"
    )
    weekly = meeting(bob_line(), extra="RRULE:FREQ=WEEKLY;COUNT=3\r\n")
    carols = override.format(organizer=f"ORGANIZER:mailto:{CAROL}", bob=bob_line())
    alices = override.format(organizer=f"ORGANIZER:mailto:{ALICE.upper()}", bob=bob_line())
    event = calendar_of(ALICE) + "roadmap-1.ics"
    with dav_client(live, ALICE) as alice:
        refused = put(alice, event, weekly.replace("END:VEVENT\r\nEND:VCALENDAR", carols + (
            "END:VEVENT\r\nEND:VCALENDAR")))  # fmt: skip
        assert refused.status_code == 403
        assert error_of(refused) == [f"{C}same-organizer-in-all-components"]
        assert alice.get(event).status_code == 404
        stored = put(alice, event, weekly.replace("END:VEVENT\r\nEND:VCALENDAR", alices + (
            "END:VEVENT\r\nEND:VCALENDAR")))  # fmt: skip
        assert stored.status_code == 201
    # The invitation, with both components: one message.
    assert len(live.mailbox_messages(BOB, "INBOX")) == 1
    assert live.mailbox_messages(CAROL, "INBOX") == []
