"""Schedule-Tag (RFC 6638 §3.2.10, §8.2, §8.3, §9.3) against the live server, over CalDAV
with httpx and in the webmail: a scheduling object resource (§3.1: an event the account
organizes or attends) carries a tag in GET, HEAD and PUT answers and as
``CALDAV:schedule-tag`` in PROPFIND and REPORT; an event without an ORGANIZER, or one the
account is not in, has none. Every write of the organizer's copy changes it; the answer the
server applies to the organizer's copy (the webmail's "Update the event" of a REPLY) does
not, so the organizer's phone still writes with If-Schedule-Tag-Match where an If-Match on
the old ETag fails; an attendee's own answer keeps the tag of the attendee's copy, an
organizer's update stored there (accepted in the webmail) changes it, so the attendee's
phone writing from the older copy is refused (412). On PostgreSQL too with
``PILLARBOX_TEST_STORE``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import icalendar
import pytest

from pillarbox.testing.davclient import dav_client, found, responses, text_of
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.polling import wait_for
from pillarbox.testing.webclient import WebSession, mailbox_id

ALICE = "alice@example.org"
BOB = "bob@example.org"
ICS = {"content-type": "text/calendar; charset=utf-8"}
C = "{urn:ietf:params:xml:ns:caldav}"
D = "{DAV:}"
ALICE_CAL = f"/dav/calendars/{ALICE}/personal/"
BOB_CAL = f"/dav/calendars/{BOB}/personal/"
TAG_PROPFIND = (
    '<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
    "<d:prop><d:getetag/><c:schedule-tag/></d:prop></d:propfind>"
)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    config = loopback_config(tmp_path / "data", only=["http", "https", "submission"])
    with LiveServer(config) as server:
        server.add_domain("example.org")
        server.add_account(ALICE, TEST_PASSWORD, display_name="Alice")
        server.add_account(BOB, TEST_PASSWORD, display_name="Bob")
        yield server


def meeting(
    bob: str = "NEEDS-ACTION", *, start: str = "20310304T093000Z", stamp: str = "20310101T000000Z",
    extra: str = "",
) -> str:  # fmt: skip
    """Alice's meeting with Bob (Bob answered ``bob``), as a phone writes it."""
    people = (
        f"ATTENDEE;CN=Alice;PARTSTAT=ACCEPTED:mailto:{ALICE}\r\n"
        f"ATTENDEE;CN=Bob;PARTSTAT={bob}"
        + (";RSVP=TRUE" if bob == "NEEDS-ACTION" else "")
        + f":mailto:{BOB}\r\n"
    )
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Apple Inc.//iOS 18//EN\r\n"
        f"BEGIN:VEVENT\r\nUID:roadmap-1\r\nDTSTAMP:{stamp}\r\nDTSTART:{start}\r\n"
        f"DURATION:PT1H\r\nSUMMARY:Roadmap\r\nORGANIZER;CN=Alice:mailto:{ALICE}\r\n{people}"
        f"{extra}END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


#: An event without an ORGANIZER.
PLAIN = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//EN\r\nBEGIN:VEVENT\r\nUID:plain-1\r\n"
    "DTSTAMP:20310101T000000Z\r\nDTSTART:20310305T093000Z\r\nSUMMARY:Dentist\r\n"
    "END:VEVENT\r\nEND:VCALENDAR\r\n"
)


def put(client: httpx.Client, path: str, body: str, **headers: str) -> httpx.Response:
    return client.put(path, content=body.encode(), headers={**ICS, **headers})


def tag_of(client: httpx.Client, path: str) -> str:
    """The object's ``CALDAV:schedule-tag`` (RFC 6638 §9.3) by a Depth-0 PROPFIND, checked
    against GET's Schedule-Tag header (§8.2)."""
    listing = client.request("PROPFIND", path, content=TAG_PROPFIND, headers={"depth": "0"})
    (response,) = responses(listing).values()
    tag = text_of(response, f"{C}schedule-tag")
    assert client.get(path).headers["schedule-tag"] == tag
    return tag


def bobs_answer(data: bytes) -> str:
    (event,) = icalendar.Calendar.from_ical(data).walk("VEVENT")
    (bob,) = [a for a in event["ATTENDEE"] if str(a).lower() == f"mailto:{BOB}"]
    return str(bob.params["PARTSTAT"])


def answered_as(data: bytes, partstat: str) -> str:
    """The object with Bob's PARTSTAT set, as his phone writes an answer."""
    calendar = icalendar.Calendar.from_ical(data)
    for event in calendar.walk("VEVENT"):
        for attendee in event["ATTENDEE"]:
            if str(attendee).lower() == f"mailto:{BOB}":
                attendee.params["PARTSTAT"] = partstat
    return calendar.to_ical().decode()


def arrived(live: LiveServer, address: str, subject: str) -> list[tuple[int, int]]:
    """(mailbox id, uid) of each INBOX message with that subject."""
    box = mailbox_id(live, address, "INBOX")
    return [
        (box, record.uid)
        for record in live.call(live.store.list_messages(box))
        if f"Subject: {subject}".encode() in live.call(live.store.read_blob(record.blob_id))
    ]


def test_schedule_tag_of_the_organizers_copy(live: LiveServer) -> None:
    """The tag in every answer and property, changed by each write of Alice's, kept when she
    applies Bob's REPLY in the webmail; If-Schedule-Tag-Match guards PUT and DELETE."""
    event, plain = ALICE_CAL + "roadmap-1.ics", ALICE_CAL + "plain.ics"
    with dav_client(live, ALICE) as alice, dav_client(live, BOB) as bob:
        created = put(alice, event, meeting())
        assert created.status_code == 201
        first = created.headers["schedule-tag"]  # RFC 6638 §8.2, on the PUT too
        # Bob's SCHEDULE-STATUS written (RFC 6638 §3.2.9): not stored as sent, so no ETag.
        assert "etag" not in created.headers
        assert first.startswith('"') and first.endswith('"')
        assert first != alice.get(event).headers["etag"]
        assert tag_of(alice, event) == first
        assert alice.head(event).headers["schedule-tag"] == first

        # An event without an ORGANIZER is no scheduling object resource (§3.1): no tag
        # anywhere; nor is one someone else organizes that Alice does not attend.
        stored = put(alice, plain, PLAIN)
        assert stored.status_code == 201 and "schedule-tag" not in stored.headers
        assert "schedule-tag" not in alice.get(plain).headers
        listing = responses(
            alice.request("PROPFIND", ALICE_CAL, content=TAG_PROPFIND, headers={"depth": "1"})
        )
        assert text_of(listing[event], f"{C}schedule-tag") == first
        assert found(listing[plain], f"{C}schedule-tag") is None
        multiget = alice.request(
            "REPORT",
            ALICE_CAL,
            headers={"depth": "1"},
            content=(
                '<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
                f"<d:prop><c:schedule-tag/></d:prop><d:href>{event}</d:href>"
                "</c:calendar-multiget>"
            ),
        )
        assert text_of(responses(multiget)[event], f"{C}schedule-tag") == first
        # §8.3: a resource without a tag never matches one.
        assert put(alice, plain, PLAIN, **{"if-schedule-tag-match": first}).status_code == 412
        others = meeting().replace(f"mailto:{ALICE}", "mailto:dan@example.net")
        stranger = put(alice, ALICE_CAL + "others.ics", others.replace("roadmap-1", "o-1"))
        assert stranger.status_code == 201 and "schedule-tag" not in stranger.headers

        # Any write of the organizer's changes the tag: here only an alarm.
        alarm = "BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:x\r\nTRIGGER:-PT5M\r\nEND:VALARM\r\n"
        written = put(alice, event, meeting(extra=alarm), **{"if-schedule-tag-match": first})
        assert written.status_code == 204
        second = written.headers["schedule-tag"]
        assert second != first and tag_of(alice, event) == second
        stale = put(alice, event, meeting(), **{"if-schedule-tag-match": first})
        assert stale.status_code == 412
        etag = alice.get(event).headers["etag"]

        # Bob's phone accepts: the REPLY reaches Alice, who applies it in the webmail.
        assert put(bob, BOB_CAL + "roadmap-1.ics", meeting()).status_code == 201
        assert put(bob, BOB_CAL + "roadmap-1.ics", meeting("ACCEPTED")).status_code == 204
        ((box, uid),) = wait_for(lambda: arrived(live, ALICE, "Accepted: Roadmap"), "REPLY")
        web = WebSession(live)
        assert web.login(ALICE).status_code == 303
        applied = web.post(f"/mail/{box}/{uid}/invitation", {"action": "apply"})
        assert applied.status_code == 303 and "Event+updated" in applied.headers["location"]
        web.close()
        answered = alice.get(event)
        assert bobs_answer(answered.content) == "ACCEPTED"
        # The ETag follows the bytes; the Schedule-Tag stays (§3.2.10): the phone's write
        # conditioned on the old ETag fails, the one on the Schedule-Tag goes through.
        assert answered.headers["etag"] != etag and answered.headers["schedule-tag"] == second
        moved = meeting("ACCEPTED", start="20310304T110000Z", extra=alarm)
        assert put(alice, event, moved, **{"if-match": etag}).status_code == 412
        rewritten = put(alice, event, moved, **{"if-schedule-tag-match": second})
        assert rewritten.status_code == 204 and rewritten.headers["schedule-tag"] != second

        # DELETE: a stale tag is refused, the current one deletes.
        current = rewritten.headers["schedule-tag"]
        assert alice.delete(event, headers={"if-schedule-tag-match": second}).status_code == 412
        assert alice.delete(event, headers={"if-schedule-tag-match": current}).status_code == 204
        assert alice.get(event).status_code == 404


def test_schedule_tag_of_an_attendees_copy(live: LiveServer) -> None:
    """Bob's answers keep his copy's tag; Alice's update, accepted in his webmail, changes it,
    so his phone's write from the copy before is refused."""
    copy = BOB_CAL + "roadmap-1.ics"
    with dav_client(live, ALICE) as alice, dav_client(live, BOB) as bob:
        assert put(bob, copy, meeting()).status_code == 201
        first = tag_of(bob, copy)
        # His answer (the stamp a client rewrites with it): the tag stays, the REPLY goes.
        accepted = meeting("ACCEPTED", stamp="20310102T080000Z")
        answered = put(bob, copy, accepted, **{"if-schedule-tag-match": first})
        assert answered.status_code == 204 and answered.headers["schedule-tag"] == first
        assert put(bob, copy, meeting("TENTATIVE")).headers["schedule-tag"] == first
        wait_for(lambda: arrived(live, ALICE, "Accepted: Roadmap"), "REPLY")

        # Alice moves the meeting; Bob accepts the update in the webmail, which stores it
        # in his calendar: the organizer's change, a new tag.
        assert put(alice, ALICE_CAL + "roadmap-1.ics", meeting()).status_code == 201
        moved = meeting(start="20310304T110000Z").replace("SUMMARY", "SEQUENCE:1\r\nSUMMARY")
        assert put(alice, ALICE_CAL + "roadmap-1.ics", moved).status_code == 204
        requests = wait_for(
            lambda: found if len(found := arrived(live, BOB, "Invitation: Roadmap")) >= 2 else None,
            "the update",
        )
        box, uid = requests[-1]
        web = WebSession(live)
        assert web.login(BOB).status_code == 303
        assert web.post(f"/mail/{box}/{uid}/invitation", {"action": "accept"}).status_code == 303
        web.close()
        updated = bob.get(copy)
        assert b"DTSTART:20310304T110000Z" in updated.content
        second = updated.headers["schedule-tag"]
        assert second != first

        # His phone, still holding the copy before the update, answers: refused (§8.3), so
        # it does not write the old time back; from the copy it fetches again, it goes.
        stale = put(bob, copy, meeting("DECLINED"), **{"if-schedule-tag-match": first})
        assert stale.status_code == 412
        assert b"DTSTART:20310304T110000Z" in bob.get(copy).content
        declined = updated.text.replace(
            "PARTSTAT=ACCEPTED:mailto:bob", "PARTSTAT=DECLINED:mailto:bob"
        )
        fresh = put(bob, copy, declined, **{"if-schedule-tag-match": second})
        assert fresh.status_code == 204 and fresh.headers["schedule-tag"] == second


def relocate(
    client: httpx.Client, method: str, source: str, destination: str, **headers: str
) -> httpx.Response:
    """COPY or MOVE ``source`` to ``destination`` (made absolute, RFC 4918 §10.3)."""
    return client.request(
        method, source, headers={"destination": f"{client.base_url}{destination}", **headers}
    )


def test_copy_and_move_are_conditional_on_the_schedule_tag(live: LiveServer) -> None:
    """RFC 6638 §8.3 on COPY and MOVE: the source's tag must match (412, nothing done,
    otherwise); a MOVE to a free name keeps the tag, a COPY gets its own, a MOVE over
    another copy of the event the tag a PUT of the same bytes there would."""
    event, work = ALICE_CAL + "roadmap-1.ics", f"/dav/calendars/{ALICE}/work/roadmap-1.ics"
    with dav_client(live, ALICE) as alice, dav_client(live, BOB) as bob:
        assert alice.request("MKCALENDAR", f"/dav/calendars/{ALICE}/work/").status_code == 201
        first = put(alice, event, meeting()).headers["schedule-tag"]
        for method in ("MOVE", "COPY"):
            stale = relocate(alice, method, event, work, **{"if-schedule-tag-match": '"old"'})
            assert stale.status_code == 412
            assert alice.get(work).status_code == 404 and tag_of(alice, event) == first

        copied = relocate(alice, "COPY", event, work, **{"if-schedule-tag-match": first})
        assert copied.status_code == 201
        assert copied.headers["schedule-tag"] == tag_of(alice, work) != first
        assert tag_of(alice, event) == first
        assert alice.delete(work).status_code == 204
        moved = relocate(alice, "MOVE", event, work, **{"if-schedule-tag-match": first})
        assert moved.status_code == 201 and moved.headers["schedule-tag"] == first
        assert tag_of(alice, work) == first and alice.get(event).status_code == 404

        # An object without a tag never matches (as for PUT and DELETE).
        assert put(alice, ALICE_CAL + "plain.ics", PLAIN).status_code == 201
        untagged = relocate(
            alice, "MOVE", ALICE_CAL + "plain.ics", f"/dav/calendars/{ALICE}/work/plain.ics",
            **{"if-schedule-tag-match": first},
        )  # fmt: skip
        assert untagged.status_code == 412

        # Bob's copy, and another with his answer in a second calendar: moved over his
        # copy, only the answer differs, so the tag stays (as his PUT of it would keep it);
        # a copy with a time Alice changed over it gives a new one.
        other = f"/dav/calendars/{BOB}/other/roadmap-1.ics"
        copy = BOB_CAL + "roadmap-1.ics"
        assert bob.request("MKCALENDAR", f"/dav/calendars/{BOB}/other/").status_code == 201
        assert put(bob, copy, meeting(), **{"schedule-reply": "F"}).status_code == 201
        held = tag_of(bob, copy)
        answered = put(bob, other, meeting("ACCEPTED"), **{"schedule-reply": "F"})
        assert answered.status_code == 201
        over = relocate(bob, "MOVE", other, copy, **{"schedule-reply": "F"})
        assert over.status_code == 204 and over.headers["schedule-tag"] == held
        assert bobs_answer(bob.get(copy).content) == "ACCEPTED"
        later = meeting(start="20310304T110000Z").replace("SUMMARY", "SEQUENCE:1\r\nSUMMARY")
        assert put(bob, other, later, **{"schedule-reply": "F"}).status_code == 201
        updated = relocate(bob, "COPY", other, copy)
        assert updated.status_code == 204 and updated.headers["schedule-tag"] not in ("", held)
        assert tag_of(bob, copy) == updated.headers["schedule-tag"]
