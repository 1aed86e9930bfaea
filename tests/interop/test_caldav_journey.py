"""A meeting's whole life between two local accounts, each with a real client: Alice's
calendar app (python-caldav, as DAVx⁵ or iOS would drive the server: implicit scheduling,
RFC 6638) makes a calendar and a weekly meeting with one instance moved, invites Bob; Bob
accepts in the webmail and his own CalDAV client sees the series and the moved instance;
Alice applies his answer, reschedules the series (his answer reset, §3.2.8), Bob accepts
the new time, and Alice's app cancels it: Bob's copy goes when he removes it. Every message
is read from the INBOXes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

import caldav
import icalendar
import pytest

from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.polling import wait_for
from pillarbox.testing.webclient import WebSession, mailbox_id, tls_paths

ALICE = "alice@example.org"
BOB = "bob@example.org"

SERIES = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Journey//EN\r\n"
    "BEGIN:VEVENT\r\nUID:standup-1\r\nDTSTAMP:20310101T000000Z\r\nSEQUENCE:{sequence}\r\n"
    "DTSTART:{start}\r\nDURATION:PT30M\r\nRRULE:FREQ=WEEKLY;COUNT=4\r\nSUMMARY:Stand-up\r\n"
    f"ORGANIZER;CN=Alice:mailto:{ALICE}\r\n"
    f"ATTENDEE;CN=Alice;PARTSTAT=ACCEPTED:mailto:{ALICE}\r\n"
    f"ATTENDEE;CN=Bob;PARTSTAT={{bob}};RSVP=TRUE:mailto:{BOB}\r\n"
    "END:VEVENT\r\n"
    # The second week's instance, an hour later.
    "BEGIN:VEVENT\r\nUID:standup-1\r\nDTSTAMP:20310101T000000Z\r\nSEQUENCE:{sequence}\r\n"
    "RECURRENCE-ID:{moved_id}\r\nDTSTART:{moved_start}\r\nDURATION:PT30M\r\n"
    f"SUMMARY:Stand-up (later)\r\nORGANIZER;CN=Alice:mailto:{ALICE}\r\n"
    f"ATTENDEE;CN=Alice;PARTSTAT=ACCEPTED:mailto:{ALICE}\r\n"
    f"ATTENDEE;CN=Bob;PARTSTAT={{bob}};RSVP=TRUE:mailto:{BOB}\r\n"
    "END:VEVENT\r\nEND:VCALENDAR\r\n"
)


def series(bob: str, *, sequence: int = 0, hour: int = 9) -> str:
    return SERIES.format(
        sequence=sequence,
        start=f"20310303T{hour:02}0000Z",
        moved_id=f"20310310T{hour:02}0000Z",
        moved_start=f"20310310T{hour + 1:02}0000Z",
        bob=bob,
    )


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    config = loopback_config(tmp_path / "data", only=["http", "https", "submission", "imap"])
    with LiveServer(config) as server:
        server.add_domain("example.org")
        server.add_account(ALICE, TEST_PASSWORD, display_name="Alice")
        server.add_account(BOB, TEST_PASSWORD, display_name="Bob")
        yield server


def app(live: LiveServer, address: str) -> caldav.DAVClient:
    return caldav.DAVClient(
        f"https://127.0.0.1:{live.port('https')}/dav/",
        username=address,
        password=TEST_PASSWORD,
        ssl_verify_cert=str(tls_paths(live.config)[0]),
    )


def arrived(live: LiveServer, address: str, subject: str) -> list[tuple[int, int, bytes]]:
    """(mailbox id, uid, bytes) of each INBOX message with that subject, oldest first."""
    box = mailbox_id(live, address, "INBOX")
    found = []
    for record in live.call(live.store.list_messages(box)):
        raw = live.call(live.store.read_blob(record.blob_id))
        if f"Subject: {subject}".encode() in raw:
            found.append((box, record.uid, raw))
    return found


def nth(live: LiveServer, address: str, subject: str, count: int) -> tuple[int, int, bytes]:
    """The ``count``-th message with that subject, once it arrived."""
    return wait_for(
        lambda: (
            found[count - 1] if len(found := arrived(live, address, subject)) >= count else None
        ),
        f"{count} × {subject!r} for {address}",
    )


def itip(raw: bytes) -> icalendar.Calendar:
    """The iMIP message's iCalendar object (RFC 6047 §2.4)."""
    message = message_from_bytes(raw, policy=policy.default)
    part = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    return icalendar.Calendar.from_ical(part.get_content())


def bob_partstat(component: icalendar.Component) -> str:
    attendees = component.get("ATTENDEE")
    listed = attendees if isinstance(attendees, list) else [attendees]
    (bob,) = [a for a in listed if str(a).lower() == f"mailto:{BOB}"]
    return str(bob.params["PARTSTAT"])


def test_a_meeting_from_invitation_to_cancellation(live: LiveServer) -> None:
    alice_app, bob_app = app(live, ALICE), app(live, BOB)
    team = alice_app.principal().make_calendar(name="Team", cal_id="team")
    meeting = team.save_event(series("NEEDS-ACTION"))

    # Bob's invitation, the moved instance in it; he accepts in the webmail.
    box, uid, raw = nth(live, BOB, "Invitation: Stand-up", 1)
    invited = itip(raw)
    assert str(invited["METHOD"]) == "REQUEST"
    assert len(list(invited.walk("VEVENT"))) == 2
    bob_web, alice_web = WebSession(live), WebSession(live)
    assert bob_web.login(BOB).status_code == 303 and alice_web.login(ALICE).status_code == 303
    accepted = bob_web.post(f"/mail/{box}/{uid}/invitation", {"action": "accept"})
    assert accepted.status_code == 303 and "organizer+told" in accepted.headers["location"]

    # Bob's client: the series in his default calendar, four instances, one an hour later.
    (bobs,) = bob_app.principal().calendars()
    (copy,) = bobs.events()
    assert bob_partstat(copy.icalendar_component) == "ACCEPTED"
    instances = bobs.search(
        start=datetime(2031, 3, 1, tzinfo=UTC), end=datetime(2031, 4, 1, tzinfo=UTC),
        event=True, expand=True,
    )  # fmt: skip
    starts = sorted(i.icalendar_component.decoded("DTSTART") for i in instances)
    assert [s.day for s in starts] == [3, 10, 17, 24] and starts[1].hour == 10

    # Alice applies his answer; her app then moves the series to 11:00.
    box, uid, _ = nth(live, ALICE, "Accepted: Stand-up", 1)
    applied = alice_web.post(f"/mail/{box}/{uid}/invitation", {"action": "apply"})
    assert applied.status_code == 303
    meeting.load()
    assert bob_partstat(meeting.icalendar_component) == "ACCEPTED"
    meeting.data = series("ACCEPTED", sequence=1, hour=11)
    meeting.save()
    meeting.load()
    # RFC 6638 §3.2.8: he accepted 09:00, not 11:00: asked again, in the series and the
    # moved instance, in her calendar and in the update he is sent.
    events = list(icalendar.Calendar.from_ical(meeting.data).walk("VEVENT"))
    assert [bob_partstat(e) for e in events] == ["NEEDS-ACTION", "NEEDS-ACTION"]
    box, uid, raw = nth(live, BOB, "Invitation: Stand-up", 2)
    update = list(itip(raw).walk("VEVENT"))
    assert [bob_partstat(e) for e in update] == ["NEEDS-ACTION", "NEEDS-ACTION"]
    # python-caldav raises the SEQUENCE on each save (its increase_seqno): the update is hers.
    assert int(update[0]["SEQUENCE"]) == int(events[0]["SEQUENCE"]) > 0
    again = bob_web.post(f"/mail/{box}/{uid}/invitation", {"action": "accept"})
    assert again.status_code == 303
    (copy,) = bobs.events()
    assert copy.icalendar_component.decoded("DTSTART").hour == 11
    assert bob_partstat(copy.icalendar_component) == "ACCEPTED"

    # Alice's app deletes it: a CANCEL; Bob removes it from his calendar.
    meeting.delete()
    box, uid, raw = nth(live, BOB, "Cancelled: Stand-up", 1)
    assert str(itip(raw)["METHOD"]) == "CANCEL"
    removed = bob_web.post(f"/mail/{box}/{uid}/invitation", {"action": "remove"})
    assert "Removed+from+your+calendar" in removed.headers["location"]
    assert bobs.events() == []
    bob_web.close()
    alice_web.close()
