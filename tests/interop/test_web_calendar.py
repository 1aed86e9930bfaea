"""The webmail's Calendar page and invitations over real HTTP against the live server: an
event made, edited and deleted in the page is the object CalDAV serves (an edit keeping what
a phone wrote), the month view and the agenda expand recurrences, forms without the CSRF
token are refused, and an invitation sent by SMTP is accepted in the web: the event is in the
calendar over CalDAV, the organizer gets the iTIP REPLY in his mailbox, and IMAP shows the
invitation \\Answered (in a shared folder, only with "w"); and the organizer's
side: an event with attendees made on the Calendar page invites them (REQUEST), an answer
received updates it, a time change sends the update, a delete the CANCEL; a save sends (and
stores) only what changed, as a CalDAV PUT would; what the webmail sends is kept in Sent; an
event moves between calendars (a tombstone left, no-uid-conflict refused)."""

from __future__ import annotations

import html
import re
import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import caldav
import icalendar
import pytest
from imapclient import IMAPClient

from pillarbox.store.types import SpecialUse
from pillarbox.testing.davclient import dav_client, responses
from pillarbox.testing.icalendars import WEEKLY
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.polling import wait_for
from pillarbox.testing.webclient import WebSession, mailbox_id, special_mailbox_id, tls_paths

ALICE = "alice@example.org"
BOB = "bob@example.org"
CAL = f"/dav/calendars/{ALICE}/personal/"
ICS = {"content-type": "text/calendar; charset=utf-8"}


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


def event_form(**fields: str) -> dict[str, str]:
    base = {
        "title": "Dentist",
        "calendar": "personal",
        "start_date": "2031-03-04",
        "start_time": "09:30",
        "end_date": "2031-03-04",
        "end_time": "10:15",
        "location": "",
        "description": "",
        "action": "save",
    }
    return {**base, **fields}


def dav_objects(live: LiveServer, address: str = ALICE) -> dict[str, bytes]:
    """name → bytes of the account's default calendar, over CalDAV (PROPFIND, then GET)."""
    calendar = f"/dav/calendars/{address}/personal/"
    with dav_client(live, address) as dav:
        listing = dav.request("PROPFIND", calendar, headers={"depth": "1"})
        names = [h.rsplit("/", 1)[1] for h in responses(listing) if not h.endswith("/")]
        return {name: dav.get(calendar + name).content for name in names}


def only_event(data: bytes) -> icalendar.Event:
    (event,) = icalendar.Calendar.from_ical(data).walk("VEVENT")
    return event


def test_create_edit_delete_an_event_seen_over_caldav(live: LiveServer, alice: WebSession) -> None:
    page = alice.get("/calendar")
    assert page.status_code == 200
    assert "Calendar" in page.text and 'id="month-grid"' in page.text

    made = alice.post("/calendar/events", event_form(location="Main St 1", description="X-ray"))
    assert made.status_code == 303
    target = made.headers["location"]
    assert re.fullmatch(r"/calendar/events/personal/[-0-9a-f]+\.ics\?done=saved", target)
    (name, data), *_ = dav_objects(live).items()
    event = only_event(data)
    assert str(event["SUMMARY"]) == "Dentist"
    assert event.decoded("DTSTART") == datetime(2031, 3, 4, 9, 30, tzinfo=UTC)  # no tz cookie
    assert event.decoded("DTEND") == datetime(2031, 3, 4, 10, 15, tzinfo=UTC)
    assert str(event["LOCATION"]) == "Main St 1"

    shown = alice.get("/calendar?month=2031-03").text
    assert 'data-day="2031-03-04"' in shown and "09:30 Dentist" in shown
    opened = alice.get(target.split("?")[0])
    assert 'value="Dentist"' in opened.text and 'value="09:30"' in opened.text

    edited = alice.post(
        f"/calendar/events/personal/{name}", event_form(title="Dentist <b>", all_day="1")
    )
    assert edited.status_code == 303
    event = only_event(dav_objects(live)[name])
    assert str(event["SUMMARY"]) == "Dentist <b>"
    assert event.decoded("DTSTART") == datetime(2031, 3, 4).date()
    assert event.decoded("DTEND") == datetime(2031, 3, 5).date()  # exclusive (RFC 5545)
    assert int(event["SEQUENCE"]) == 1
    assert "Dentist &lt;b&gt;" in alice.get("/calendar?month=2031-03").text

    gone = alice.post(f"/calendar/events/personal/{name}", {"action": "delete", "confirmed": "1"})
    assert gone.status_code == 303
    assert dav_objects(live) == {}


def test_edit_keeps_what_a_phone_wrote(live: LiveServer, alice: WebSession) -> None:
    """A CalDAV client's weekly series, retitled in the web: its time zone, recurrence,
    exception, overridden instance and alarm stay; the unchanged start keeps its TZID."""
    todo = WEEKLY.replace("VEVENT", "VTODO").replace("weekly-1", "todo-1").encode()
    color = (
        '<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" '
        'xmlns:ical="http://apple.com/ns/ical/"><d:set><d:prop>'
        "<ical:calendar-color>#FF8800FF</ical:calendar-color></d:prop></d:set>"
        "</d:propertyupdate>"
    )
    with dav_client(live, ALICE) as dav:
        assert dav.request("PROPPATCH", CAL, content=color).status_code == 207
        assert dav.put(CAL + "weekly.ics", content=WEEKLY.encode(), headers=ICS).status_code == 201
        assert dav.put(CAL + "todo.ics", content=todo, headers=ICS).status_code == 201
    # The month view and the agenda expand the series (9 instances, one moved, one excluded).
    page = alice.get("/calendar?month=2025-01").text
    assert page.count("Réunion d&#39;équipe") >= 3
    assert "Réunion d&#39;équipe (moved)" in page
    assert 'data-day="2025-01-13"' in page
    day13 = page.split('data-day="2025-01-13"')[1].split("</td>")[0]
    assert "Réunion" not in day13  # the EXDATE
    assert 'fill="#FF8800"' in page  # the phone's colour (an SVG fill: the CSP allows no styles)
    # A to-do is not an event: not shown, and not edited from the form.
    assert alice.get("/calendar/events/personal/todo.ics").status_code == 404
    refused = alice.post("/calendar/events/personal/todo.ics", event_form())
    assert refused.status_code == 400 and "only an event can be edited here" in refused.text

    form = alice.get("/calendar/events/personal/weekly.ics").text
    values = dict(
        re.findall(r'name="(start_date|start_time|end_date|end_time)"[^>]*value="([^"]*)"', form)
    )
    assert values == {
        "start_date": "2025-01-06",
        "start_time": "08:00",  # 09:00 Paris, shown in UTC (no tz cookie)
        "end_date": "2025-01-06",
        "end_time": "08:30",
    }
    saved = alice.post(
        "/calendar/events/personal/weekly.ics",
        event_form(title="Team meeting", description="A long description", **values),
    )
    assert saved.status_code == 303
    data = dav_objects(live)["weekly.ics"].decode()
    for kept in (
        "TZID:Europe/Paris",
        "DTSTART;TZID=Europe/Paris:20250106T090000",
        "RRULE:FREQ=WEEKLY;COUNT=10",
        "EXDATE;TZID=Europe/Paris:20250113T090000",
        "RECURRENCE-ID;TZID=Europe/Paris:20250120T090000",
        "BEGIN:VALARM",
        "SUMMARY:Team meeting",
    ):
        assert kept in data, kept


def test_time_zone_cookie_and_form_errors(live: LiveServer, alice: WebSession) -> None:
    alice.client.cookies.set("tz", "America/New_York")
    made = alice.post("/calendar/events", event_form(start_time="09:00", end_time="10:00"))
    assert made.status_code == 303
    (data,) = dav_objects(live).values()
    assert only_event(data).decoded("DTSTART") == datetime(2031, 3, 4, 14, 0, tzinfo=UTC)
    assert "Times in America/New_York" in alice.get("/calendar?month=2031-03").text

    for fields, error in (
        ({"title": "  "}, "give the event a title"),
        ({"end_time": "08:00"}, "the event ends before it starts"),
        ({"start_date": "tomorrow"}, "give the start date as a date"),
        ({"calendar": "nope"}, "choose one of your calendars"),
    ):
        refused = alice.post("/calendar/events", event_form(**fields))
        assert refused.status_code == 400
        assert html.escape(error, quote=True) in refused.text
    assert len(dav_objects(live)) == 1


def test_forms_need_the_csrf_token(live: LiveServer, alice: WebSession) -> None:
    for month in ("0001-01", "9999-12", "2031-13", "x"):  # this month instead
        assert alice.get(f"/calendar?month={month}").status_code == 200
    refused = alice.post("/calendar/events", event_form(), csrf=False)
    assert refused.status_code == 303 and refused.headers["location"].startswith("/login")
    assert dav_objects(live) == {}
    outsider = WebSession(live)
    assert outsider.get("/calendar").headers["location"].startswith("/login")
    outsider.close()


def invitation(
    method: str,
    sequence: int = 0,
    *,
    extra: str = "",
    organizer: str = "CN=Bob:mailto:" + BOB,
    uid: str = "plan-42@example.org",
) -> bytes:
    start = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0, second=0, minute=0)
    calendar = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Bob//Calendar//EN\r\n"
        f"METHOD:{method}\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n"
        f"DTSTAMP:20250101T000000Z\r\nSEQUENCE:{sequence}\r\n"
        f"DTSTART:{start:%Y%m%dT%H%M%SZ}\r\nDTEND:{start + timedelta(hours=1):%Y%m%dT%H%M%SZ}\r\n"
        f"SUMMARY:Planning\r\nLOCATION:Room 4\r\n{extra}"
        f"ORGANIZER;{organizer}\r\n"
        "ATTENDEE;CN=Bob;PARTSTAT=ACCEPTED:mailto:bob@example.org\r\n"
        "ATTENDEE;CN=Alice;RSVP=TRUE;PARTSTAT=NEEDS-ACTION:mailto:alice@example.org\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = "Bob <bob@example.org>"
    message["To"] = "Alice <alice@example.org>"
    message["Subject"] = f"Invitation: Planning ({method})"
    message.set_content("You are invited.\n")
    message.add_alternative(calendar, subtype="calendar", params={"method": method})
    return message.as_bytes()


def send_as_bob(live: LiveServer, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", live.port("submission"), timeout=10) as smtp:
        smtp.login(BOB, TEST_PASSWORD)
        smtp.sendmail(BOB, [ALICE], raw)


def newest(live: LiveServer, address: str, subject: str) -> tuple[int, int, bytes] | None:
    """(mailbox id, uid, bytes) of the INBOX message with that subject, once it arrived."""
    box = mailbox_id(live, address)
    for record in live.call(live.store.list_messages(box)):
        raw = live.call(live.store.read_blob(record.blob_id))
        if f"Subject: {subject}".encode() in raw:
            return box, record.uid, raw
    return None


def test_invitation_accepted_in_the_web(live: LiveServer, alice: WebSession) -> None:
    send_as_bob(live, invitation("REQUEST"))
    box, uid, _ = wait_for(lambda: newest(live, ALICE, "Invitation: Planning (REQUEST)"), "invite")
    page = alice.get(f"/mail/{box}/{uid}").text
    assert 'id="invitation"' in page and "Invitation: Planning" in page
    assert "Room 4" in page and "Bob &lt;bob@example.org&gt;" in page
    assert 'value="accept"' in page and 'value="decline"' in page
    assert 'id="invitation-warning"' not in page  # sent by its organizer

    forged = alice.post(f"/mail/{box}/{uid}/invitation", {"action": "accept"}, csrf=False)
    assert forged.status_code == 303 and forged.headers["location"].startswith("/login")
    assert dav_objects(live) == {}
    answered = alice.post(f"/mail/{box}/{uid}/invitation", {"action": "accept"})
    assert answered.status_code == 303
    assert "organizer+told" in answered.headers["location"]

    # The event over CalDAV: a calendar-query REPORT finds it, with alice's answer.
    with dav_client(live, ALICE) as dav:
        body = (
            '<?xml version="1.0"?><c:calendar-query xmlns:d="DAV:" '
            'xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><c:calendar-data/></d:prop>'
            '<c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"/>'
            "</c:comp-filter></c:filter></c:calendar-query>"
        )
        found = responses(dav.request("REPORT", CAL, content=body, headers={"depth": "1"}))
    (element,) = found.values()
    data = element.findtext(".//{urn:ietf:params:xml:ns:caldav}calendar-data", "")
    assert "METHOD" not in data
    assert re.search(r"PARTSTAT=ACCEPTED[^\n]*:mailto:alice@example.org", data.replace("\r\n ", ""))

    # The REPLY in the organizer's mailbox (a local domain: delivered by the queue).
    _, _, raw = wait_for(lambda: newest(live, BOB, "Accepted: Planning"), "the REPLY")
    reply = message_from_bytes(raw, policy=policy.default)
    assert reply["From"] == "Alice <alice@example.org>"
    assert reply["To"] == BOB
    part = next(p for p in reply.walk() if p.get_content_type() == "text/calendar")
    assert part.get_param("method") == "REPLY"
    itip = icalendar.Calendar.from_ical(part.get_content())
    assert str(itip["METHOD"]) == "REPLY"
    (event,) = itip.walk("VEVENT")
    assert str(event["UID"]) == "plan-42@example.org"
    attendee = event["ATTENDEE"]
    assert str(attendee).lower() == "mailto:alice@example.org"
    assert attendee.params["PARTSTAT"] == "ACCEPTED"

    page = alice.get(f"/mail/{box}/{uid}").text
    assert "your answer: accepted" in page
    # The answer kept in Alice's Sent, as the message Bob got.
    (copy,) = sent_copies(live, ALICE, "Accepted: Planning")
    assert itip_of(copy, "REPLY")["ATTENDEE"].params["PARTSTAT"] == "ACCEPTED"

    # The organizer cancels: the message offers to remove it, and removing does.
    send_as_bob(live, invitation("CANCEL", sequence=1))
    box, uid, _ = wait_for(lambda: newest(live, ALICE, "Invitation: Planning (CANCEL)"), "cancel")
    page = alice.get(f"/mail/{box}/{uid}").text
    assert "Cancelled: Planning" in page and 'value="remove"' in page
    removed = alice.post(f"/mail/{box}/{uid}/invitation", {"action": "remove"})
    assert "Removed+from+your+calendar" in removed.headers["location"]
    assert dav_objects(live) == {}


def test_a_cancel_removes_only_its_organizers_event(live: LiveServer, alice: WebSession) -> None:
    """RFC 5546 §3.2.5 and RFC 6047 §3: a CANCEL its sender does not organize is warned and
    removes the event only with "remove it anyway"; one naming its sender as organizer
    leaves an event someone else organizes (here the reader's own) where it is. Before,
    anyone who knew a UID could have any event removed."""
    carol = "carol@example.org"
    send_as_bob(live, invitation("REQUEST", organizer=f"CN=Carol:mailto:{carol}"))
    box, uid, _ = wait_for(lambda: newest(live, ALICE, "Invitation: Planning (REQUEST)"), "req")
    accepted = alice.post(f"/mail/{box}/{uid}/invitation", {"action": "accept"})
    assert "Saved+in+your+calendar" in accepted.headers["location"]  # carol has no mailbox
    assert len(dav_objects(live)) == 1

    send_as_bob(live, invitation("CANCEL", sequence=1, organizer=f"CN=Carol:mailto:{carol}"))
    box, uid, _ = wait_for(lambda: newest(live, ALICE, "Invitation: Planning (CANCEL)"), "cancel")
    page = html.unescape(alice.get(f"/mail/{box}/{uid}").text)
    assert f"sent by Bob <{BOB}>, not by the organizer it names ({carol})" in page
    assert 'name="trust" value="yes" required' in page
    refused = alice.post(f"/mail/{box}/{uid}/invitation", {"action": "remove"})
    assert refused.status_code == 400 and "remove it anyway" in html.unescape(refused.text)
    assert len(dav_objects(live)) == 1
    removed = alice.post(f"/mail/{box}/{uid}/invitation", {"action": "remove", "trust": "yes"})
    assert "Removed+from+your+calendar" in removed.headers["location"]
    assert dav_objects(live) == {}

    assert alice.post("/calendar/events", event_form(title="Mine")).status_code == 303
    ((_, data),) = dav_objects(live).items()
    own = str(only_event(data)["UID"])
    raw = invitation("CANCEL", uid=own).replace(b"(CANCEL)", b"(CANCEL mine)")
    send_as_bob(live, raw)
    box, uid, _ = wait_for(lambda: newest(live, ALICE, "Invitation: Planning (CANCEL mine)"), "c")
    kept = alice.post(f"/mail/{box}/{uid}/invitation", {"action": "remove"})
    assert "another+organizer" in kept.headers["location"]
    assert len(dav_objects(live)) == 1


def imap_flags(live: LiveServer, address: str, uid: int) -> tuple[bytes, ...]:
    """The message's flags in ``address``'s INBOX, read over IMAP by its owner."""
    with IMAPClient("127.0.0.1", port=live.port("imap"), ssl=False, timeout=10) as imap:
        imap.login(address, TEST_PASSWORD)
        imap.select_folder("INBOX", readonly=True)
        return tuple(imap.get_flags([uid])[uid])


def test_an_answered_invitation_is_marked_answered(live: LiveServer, alice: WebSession) -> None:
    """RFC 9051 §2.3.2: once the REPLY went, the invitation is \\Answered (as a reply marks
    its original); not when no REPLY was sent, and in a folder shared with the reader only
    with "w" (RFC 4314 §4)."""
    roomed = invitation("REQUEST", organizer="CN=Room:urn:uuid:room-4")
    send_as_bob(live, roomed.replace(b"Subject: Invitation", b"Subject: Room invitation"))
    box, uid, _ = wait_for(lambda: newest(live, ALICE, "Room invitation"), "the room's invite")
    saved = alice.post(f"/mail/{box}/{uid}/invitation", {"action": "accept"})
    assert "names+no+organizer" in saved.headers["location"]
    assert b"\\Answered" not in imap_flags(live, ALICE, uid)  # no REPLY was sent

    send_as_bob(live, invitation("REQUEST"))
    box, uid, _ = wait_for(lambda: newest(live, ALICE, "Invitation: Planning"), "the invite")
    assert b"\\Answered" not in imap_flags(live, ALICE, uid)
    answered = alice.post(f"/mail/{box}/{uid}/invitation", {"action": "tentative"})
    assert "organizer+told" in answered.headers["location"]
    assert b"\\Answered" in imap_flags(live, ALICE, uid)

    # Carol's INBOX, shared with Alice: answering from it marks it only with "w".
    carol = "carol@example.org"
    live.add_account(carol, TEST_PASSWORD)
    with smtplib.SMTP("127.0.0.1", live.port("submission"), timeout=10) as smtp:
        smtp.login(BOB, TEST_PASSWORD)
        smtp.sendmail(BOB, [carol], invitation("REQUEST", sequence=1))
    box, uid, _ = wait_for(lambda: newest(live, carol, "Invitation: Planning"), "carol's copy")
    alice_id = live.call(live.store.get_account(ALICE))
    assert alice_id is not None
    for rights, marked in (("lr", False), ("lrw", True)):
        live.call(live.store.set_acl(box, alice_id.id, rights))
        answered = alice.post(f"/mail/{box}/{uid}/invitation", {"action": "decline"})
        assert "organizer+told" in answered.headers["location"], rights
        assert (b"\\Answered" in imap_flags(live, carol, uid)) is marked, rights


def test_broken_or_oversized_invitation_gets_a_note(live: LiveServer, alice: WebSession) -> None:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = "Bob <bob@example.org>"
    message["To"] = ALICE
    message["Subject"] = "Broken invite"
    message.set_content("See the calendar part.\n")
    message.add_alternative("BEGIN:VCALENDAR\r\nthis is not iCalendar\r\n", subtype="calendar")
    send_as_bob(live, message.as_bytes())
    folded = "DESCRIPTION:" + "\r\n ".join(["x" * 70] * 4000) + "\r\n"  # over 256 KiB
    big = invitation("REQUEST", extra=folded)
    send_as_bob(live, big.replace(b"Subject: Invitation", b"Subject: Big invitation"))
    box, uid, _ = wait_for(lambda: newest(live, ALICE, "Broken invite"), "the broken invite")
    page = alice.get(f"/mail/{box}/{uid}").text
    assert 'id="invitation-note"' in page and "cannot be read" in page
    assert 'value="accept"' not in page
    refused = alice.post(f"/mail/{box}/{uid}/invitation", {"action": "accept"})
    assert refused.status_code == 400
    box, uid, _ = wait_for(lambda: newest(live, ALICE, "Big invitation"), "the big invite")
    page = alice.get(f"/mail/{box}/{uid}").text
    assert "too large to show" in page


def arrived(
    live: LiveServer, address: str, subject: str, folder: str = "INBOX"
) -> list[tuple[int, int, bytes]]:
    """(mailbox id, uid, bytes) of each message of ``folder`` with that subject, oldest
    first."""
    box = mailbox_id(live, address, folder)
    found = []
    for record in live.call(live.store.list_messages(box)):
        raw = live.call(live.store.read_blob(record.blob_id))
        if f"Subject: {subject}".encode() in raw:
            found.append((box, record.uid, raw))
    return found


def sent_copies(live: LiveServer, address: str, subject: str) -> list[bytes]:
    """The messages with that subject in the account's Sent, each checked seen (\\Seen, as
    the webmail keeps what it sends)."""
    box = special_mailbox_id(live, address, SpecialUse.SENT)
    found = []
    for record in live.call(live.store.list_messages(box)):
        raw = live.call(live.store.read_blob(record.blob_id))
        if f"Subject: {subject}".encode() in raw:
            assert "\\Seen" in record.flags
            found.append(raw)
    return found


def itip_of(raw: bytes, method: str) -> icalendar.Event:
    """The iMIP message's one VEVENT, checking the part's method parameter (RFC 6047 §2.4)."""
    message = message_from_bytes(raw, policy=policy.default)
    part = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    assert part.get_param("method") == method
    itip = icalendar.Calendar.from_ical(part.get_content())
    assert str(itip["METHOD"]) == method
    (event,) = itip.walk("VEVENT")
    return event


def partstats(data: bytes) -> dict[str, str]:
    event = only_event(data)
    attendees = event.get("ATTENDEE")
    listed = attendees if isinstance(attendees, list) else [attendees]
    return {str(a).lower(): str(a.params["PARTSTAT"]) for a in listed}


def test_invitations_sent_from_the_calendar_page(live: LiveServer, alice: WebSession) -> None:
    """Alice invites Bob from the Calendar page; Bob accepts in the web; Alice applies his
    answer; a time change sends SEQUENCE 1 and asks him again (his answer reset, RFC 6638
    §3.2.8); the delete sends a CANCEL Bob acts on."""
    made = alice.post("/calendar/events", event_form(title="Roadmap", attendees=f"Bob <{BOB}>"))
    assert made.status_code == 303
    target = made.headers["location"]
    query = parse_qs(urlsplit(target).query)
    assert query["done"] == ["invited"] and "warning" not in query  # sent: no warning
    (name, data), *_ = dav_objects(live).items()
    event = only_event(data)
    assert str(event["ORGANIZER"]) == f"mailto:{ALICE}"
    assert event["ATTENDEE"].params["PARTSTAT"] == "NEEDS-ACTION"
    assert event["ATTENDEE"].params["RSVP"] == "TRUE"
    assert "Bob" in alice.get(target.split("?")[0]).text  # the form shows the attendee

    # Bob's INBOX: the REQUEST (a multipart with the summary and the text/calendar part).
    ((box, uid, raw),) = wait_for(lambda: arrived(live, BOB, "Invitation: Roadmap"), "request")
    assert b"Alice invites you to Roadmap." in raw
    request = itip_of(raw, "REQUEST")
    assert str(request["UID"]) == str(event["UID"])
    assert str(request["ATTENDEE"]).lower() == f"mailto:{BOB}"
    assert int(request.get("SEQUENCE", 0)) == 0
    bob = WebSession(live)
    assert bob.login(BOB).status_code == 303
    answered = bob.post(f"/mail/{box}/{uid}/invitation", {"action": "accept"})
    assert "organizer+told" in answered.headers["location"]
    (copy,) = dav_objects(live, BOB)
    form = bob.get(f"/calendar/events/personal/{copy}").text  # Alice's to change, not Bob's
    assert f"Organized by {ALICE}" in form and 'name="attendees"' not in form

    # Alice's INBOX: Bob's REPLY; applying it sets his PARTSTAT in her stored event.
    ((box, uid, _),) = wait_for(lambda: arrived(live, ALICE, "Accepted: Roadmap"), "reply")
    page = alice.get(f"/mail/{box}/{uid}").text
    assert "Bob accepted." in page and 'value="apply"' in page and "Update the event" in page
    applied = alice.post(f"/mail/{box}/{uid}/invitation", {"action": "apply"})
    assert applied.status_code == 303
    assert "Event+updated%3A+Bob+accepted" in applied.headers["location"]
    with dav_client(live, ALICE) as dav:
        stored = dav.get(CAL + name).content
    assert partstats(stored) == {f"mailto:{BOB}": "ACCEPTED"}
    assert "already has this answer" in alice.get(f"/mail/{box}/{uid}").text

    # A time change: the update goes to Bob with SEQUENCE 1; his old answer no longer applies.
    moved = alice.post(f"/calendar/events/personal/{name}", event_form(
        title="Roadmap", start_time="11:00", end_time="12:00", attendees=BOB,
    ))  # fmt: skip
    assert moved.status_code == 303 and "done=invited" in moved.headers["location"]
    assert int(only_event(dav_objects(live)[name])["SEQUENCE"]) == 1
    # RFC 6638 §3.2.8: he accepted another time; asked again.
    assert partstats(dav_objects(live)[name]) == {f"mailto:{BOB}": "NEEDS-ACTION"}
    updates = wait_for(
        lambda: (found := arrived(live, BOB, "Invitation: Roadmap"))[1:] and found, "update"
    )
    update = itip_of(updates[1][2], "REQUEST")
    assert int(update["SEQUENCE"]) == 1
    assert update["ATTENDEE"].params["PARTSTAT"] == "NEEDS-ACTION"
    assert update.decoded("DTSTART") == datetime(2031, 3, 4, 11, 0, tzinfo=UTC)
    page = alice.get(f"/mail/{box}/{uid}").text
    assert "Not applied: this answer is to an older version of the event." in page
    assert alice.post(f"/mail/{box}/{uid}/invitation", {"action": "apply"}).status_code == 400

    # The delete: a CANCEL to Bob, whose "Remove from calendar" removes his copy.
    assert len(dav_objects(live, BOB)) == 1
    gone = alice.post(f"/calendar/events/personal/{name}", {"action": "delete", "confirmed": "1"})
    assert gone.status_code == 303 and "done=cancelled" in gone.headers["location"]
    assert dav_objects(live) == {}
    ((box, uid, raw),) = wait_for(lambda: arrived(live, BOB, "Cancelled: Roadmap"), "cancel")
    cancel = itip_of(raw, "CANCEL")
    assert str(cancel["STATUS"]) == "CANCELLED" and int(cancel["SEQUENCE"]) == 2
    # Alice's Sent: the invitation, the update and the cancellation.
    assert len(sent_copies(live, ALICE, "Invitation: Roadmap")) == 2
    assert len(sent_copies(live, ALICE, "Cancelled: Roadmap")) == 1
    page = bob.get(f"/mail/{box}/{uid}").text
    assert "Cancelled: Roadmap" in page and 'value="remove"' in page
    removed = bob.post(f"/mail/{box}/{uid}/invitation", {"action": "remove"})
    assert "Removed+from+your+calendar" in removed.headers["location"]
    assert dav_objects(live, BOB) == {}
    bob.close()


def test_attendee_field_limits_and_a_stranger_reply(live: LiveServer, alice: WebSession) -> None:
    """The attendees field takes what the compose form's To takes, no more; a REPLY from
    someone who is not an attendee is shown as such and not applied."""
    bad = alice.post("/calendar/events", event_form(attendees="bob@, not an address"))
    assert bad.status_code == 400 and "not a valid attendee address" in bad.text
    many = ", ".join(f"u{i}@example.net" for i in range(live.config.web.max_recipients + 1))
    over = alice.post("/calendar/events", event_form(attendees=many))
    assert over.status_code == 400 and "at most" in over.text
    assert dav_objects(live) == {}
    assert (
        alice.post("/calendar/events", event_form(title="Sync", attendees=BOB)).status_code == 303
    )
    ((name, data),) = dav_objects(live).items()
    uid = str(only_event(data)["UID"])
    for subject, about in (("stranger", uid), ("unknown event", "elsewhere@example.net")):
        send_as_bob(live, eve_reply(f"Accepted: Sync ({subject})", about))
    box, uid_, _ = wait_for(lambda: newest(live, ALICE, "Accepted: Sync (stranger)"), "reply")
    page = alice.get(f"/mail/{box}/{uid_}").text
    assert "Eve accepted." in page
    assert "Not applied: eve@example.org is not an attendee of this event." in page
    assert 'value="apply"' not in page
    refused = alice.post(f"/mail/{box}/{uid_}/invitation", {"action": "apply"})
    assert refused.status_code == 400
    assert partstats(dav_objects(live)[name]) == {f"mailto:{BOB}": "NEEDS-ACTION"}
    box, uid_, _ = wait_for(lambda: newest(live, ALICE, "Accepted: Sync (unknown event)"), "2")
    page = alice.get(f"/mail/{box}/{uid_}").text
    assert "The event this answers is not in your calendars." in page
    assert 'value="apply"' not in page


def eve_reply(subject: str, uid: str, attendee: str = "eve@example.org") -> bytes:
    """Eve's REPLY to Alice's event ``uid``, as Bob sends it (Eve is not an attendee); or
    that of another ``attendee``."""
    reply = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Eve//EN\r\nMETHOD:REPLY\r\n"
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20310101T000000Z\r\n"
        f"ORGANIZER:mailto:{ALICE}\r\n"
        f"ATTENDEE;CN=Eve;PARTSTAT=ACCEPTED:mailto:{attendee}\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = BOB
    message["To"] = ALICE
    message["Subject"] = subject
    message.set_content("Accepted.\n")
    message.add_alternative(reply, subtype="calendar", params={"method": "REPLY"})
    return message.as_bytes()


def test_a_message_not_from_whom_it_names_is_warned(live: LiveServer, alice: WebSession) -> None:
    """RFC 6047 §3: a REPLY sent by someone other than the attendee it names is shown with a
    warning and applied only when the organizer ticks "apply it anyway"; a REQUEST whose
    ORGANIZER is not its sender gets the warning line."""
    carol = "carol@example.org"
    made = alice.post("/calendar/events", event_form(title="Sync", attendees=f"{BOB}, {carol}"))
    assert made.status_code == 303
    ((name, data),) = dav_objects(live).items()
    uid = str(only_event(data)["UID"])
    send_as_bob(live, eve_reply("Accepted: Sync (for Carol)", uid, attendee=carol))
    box, uid_, _ = wait_for(lambda: newest(live, ALICE, "Accepted: Sync (for Carol)"), "reply")
    page = html.unescape(alice.get(f"/mail/{box}/{uid_}").text)
    assert 'id="invitation-warning"' in page
    assert f"sent by {BOB}, not by the attendee it names ({carol})" in page
    assert 'value="apply"' in page and 'name="trust" value="yes" required' in page
    refused = alice.post(f"/mail/{box}/{uid_}/invitation", {"action": "apply"})
    assert refused.status_code == 400 and "apply it anyway" in html.unescape(refused.text)
    assert partstats(dav_objects(live)[name])[f"mailto:{carol}"] == "NEEDS-ACTION"
    applied = alice.post(f"/mail/{box}/{uid_}/invitation", {"action": "apply", "trust": "yes"})
    assert applied.status_code == 303 and "Event+updated" in applied.headers["location"]
    assert partstats(dav_objects(live)[name]) == {
        f"mailto:{BOB}": "NEEDS-ACTION",
        f"mailto:{carol}": "ACCEPTED",
    }

    send_as_bob(live, invitation("REQUEST", organizer=f"CN=Carol:mailto:{carol}"))
    box, uid_, _ = wait_for(lambda: newest(live, ALICE, "Invitation: Planning (REQUEST)"), "req")
    page = html.unescape(alice.get(f"/mail/{box}/{uid_}").text)
    assert f"sent by Bob <{BOB}>, not by the organizer it names ({carol})" in page
    assert 'value="accept"' in page  # a warning, not a refusal: the invitee decides


def test_deleting_an_event_someone_else_organizes_declines_it(
    live: LiveServer, alice: WebSession
) -> None:
    """RFC 5546 §3.2.3: Alice deletes, from the Calendar page, an event Bob organizes that she
    accepted; the page offers the decline, and Bob's INBOX gets her REPLY with
    PARTSTAT=DECLINED. Without the tick, nothing is sent; her own event offers nothing."""
    send_as_bob(live, invitation("REQUEST"))
    box, uid, _ = wait_for(lambda: newest(live, ALICE, "Invitation: Planning (REQUEST)"), "invite")
    assert alice.post(f"/mail/{box}/{uid}/invitation", {"action": "accept"}).status_code == 303
    wait_for(lambda: newest(live, BOB, "Accepted: Planning"), "the acceptance")
    ((name, _),) = dav_objects(live).items()
    page = html.unescape(alice.get(f"/calendar/events/personal/{name}").text)
    assert 'id="event-decline"' in page
    assert f"tell {BOB} you will not attend (a decline from {ALICE})" in page
    deleted = alice.post(
        f"/calendar/events/personal/{name}",
        {"action": "delete", "decline": "yes", "confirmed": "1"},
    )
    assert deleted.status_code == 303
    query = parse_qs(urlsplit(deleted.headers["location"]).query)
    assert query["done"] == ["declined"] and "warning" not in query
    assert "the organizer told you will not attend" in alice.get(deleted.headers["location"]).text
    assert dav_objects(live) == {}
    _, _, raw = wait_for(lambda: newest(live, BOB, "Declined: Planning"), "the decline")
    assert message_from_bytes(raw, policy=policy.default)["From"] == f"Alice <{ALICE}>"
    event = itip_of(raw, "REPLY")
    assert str(event["UID"]) == "plan-42@example.org"
    assert str(event["ATTENDEE"]).lower() == f"mailto:{ALICE}"
    assert event["ATTENDEE"].params["PARTSTAT"] == "DECLINED"
    assert len(sent_copies(live, ALICE, "Declined: Planning")) == 1

    # Accepted again, deleted without the tick: deleted, and Bob is sent nothing more.
    assert alice.post(f"/mail/{box}/{uid}/invitation", {"action": "accept"}).status_code == 303
    wait_for(lambda: len(arrived(live, BOB, "Accepted: Planning")) == 2, "the second acceptance")
    ((name, _),) = dav_objects(live).items()
    quiet = alice.post(f"/calendar/events/personal/{name}", {"action": "delete", "confirmed": "1"})
    assert quiet.headers["location"] == "/calendar?done=deleted"
    assert dav_objects(live) == {}

    own = alice.post("/calendar/events", event_form(title="Mine", attendees=BOB))
    assert 'id="event-decline"' not in alice.get(own.headers["location"]).text
    # Mail sent after the quiet delete has arrived: a decline from it would have too.
    wait_for(lambda: newest(live, BOB, "Invitation: Mine"), "the invitation sent after it")
    assert len(arrived(live, BOB, "Declined: Planning")) == 1


def test_a_save_sends_only_what_changed_for_the_attendees(
    live: LiveServer, alice: WebSession
) -> None:
    """The Calendar page's save decides what to send as a CalDAV PUT does (RFC 6638 §3.2.1):
    saving the event unchanged stores nothing (the same ETag) and sends nothing; an alarm and
    an X- property a phone added (what only the organizer holds) send nothing, and a save in
    the web after them neither; a new time sends the update with SEQUENCE raised (RFC 5546
    §2.1.4), a new title the update with the same SEQUENCE (not a significant revision,
    RFC 5545 §3.8.7.4). Each invitation sent from the web is kept in Alice's Sent."""
    form = event_form(title="Roadmap", attendees=f"Bob <{BOB}>")
    made = alice.post("/calendar/events", form)
    assert "done=invited" in made.headers["location"]
    target = made.headers["location"].split("?")[0]
    ((name, _),) = dav_objects(live).items()
    wait_for(lambda: arrived(live, BOB, "Invitation: Roadmap"), "the invitation")
    with dav_client(live, ALICE) as dav:
        etag = dav.get(CAL + name).headers["etag"]

    again = alice.post(target, form)
    assert again.headers["location"] == f"{target}?done=unchanged"
    assert "Nothing changed: the event is as it was." in alice.get(again.headers["location"]).text
    with dav_client(live, ALICE) as dav:
        stored = dav.get(CAL + name)
        assert stored.headers["etag"] == etag
        # A phone adds an alarm and a colour: nothing the attendees' copies hold.
        alarmed = stored.content.replace(
            b"END:VEVENT",
            b"X-APPLE-TRAVEL-ADVISORY-BEHAVIOR:AUTOMATIC\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\n"
            b"DESCRIPTION:Roadmap\r\nTRIGGER:-PT15M\r\nEND:VALARM\r\nEND:VEVENT",
        )
        put = dav.put(CAL + name, content=alarmed, headers={**ICS, "if-match": etag})
        assert put.status_code == 204
        etag = put.headers["etag"]
    after_phone = alice.post(target, form)
    assert after_phone.headers["location"] == f"{target}?done=unchanged"
    with dav_client(live, ALICE) as dav:
        assert dav.get(CAL + name).headers["etag"] == etag

    moved = alice.post(target, {**form, "start_time": "11:00", "end_time": "12:00"})
    assert "done=invited" in moved.headers["location"]
    stored_event = only_event(dav_objects(live)[name])
    assert int(stored_event["SEQUENCE"]) == 1
    assert "BEGIN:VALARM" in dav_objects(live)[name].decode()  # the phone's alarm kept
    updates = wait_for(
        lambda: (found := arrived(live, BOB, "Invitation: Roadmap"))[1:] and found, "update"
    )
    assert len(updates) == 2  # nothing for the unchanged saves or the alarm
    assert int(itip_of(updates[1][2], "REQUEST")["SEQUENCE"]) == 1

    renamed = alice.post(target, {**form, "start_time": "11:00", "end_time": "12:00",
                                  "title": "Roadmap v2"})  # fmt: skip
    assert "done=invited" in renamed.headers["location"]
    assert int(only_event(dav_objects(live)[name])["SEQUENCE"]) == 1  # not raised
    ((_, _, raw),) = wait_for(lambda: arrived(live, BOB, "Invitation: Roadmap v2"), "rename")
    update = itip_of(raw, "REQUEST")
    assert int(update["SEQUENCE"]) == 1 and str(update["SUMMARY"]) == "Roadmap v2"

    # Alice's Sent: the three invitations the web sent, as Bob got them.
    copies = wait_for(lambda: sent_copies(live, ALICE, "Invitation: Roadmap"), "sent copies")
    assert len(copies) == 3
    assert itip_of(copies[1], "REQUEST").decoded("DTSTART") == datetime(
        2031, 3, 4, 11, 0, tzinfo=UTC
    )
    assert message_from_bytes(copies[0], policy=policy.default)["To"] == BOB


def test_moving_an_event_to_another_calendar(live: LiveServer, alice: WebSession) -> None:
    """An event moved from "personal" to "work" in the form keeps its UID and bytes, leaves a
    tombstone: python-caldav syncing both calendars (RFC 6578) sees it gone from one and in
    the other. A move onto a calendar already holding the UID is refused (RFC 4791
    §5.3.2.1 no-uid-conflict) and moves nothing."""
    work = f"/dav/calendars/{ALICE}/work/"
    with dav_client(live, ALICE) as dav:
        assert dav.request("MKCALENDAR", work).status_code == 201
    made = alice.post("/calendar/events", event_form(title="Budget"))
    ((name, before),) = dav_objects(live).items()
    page = alice.get(made.headers["location"]).text
    assert 'name="calendar">' in page and "disabled" not in page.split('name="calendar"')[1][:5]

    url = f"https://127.0.0.1:{live.port('https')}"
    cafile = str(tls_paths(live.config)[0])
    with caldav.DAVClient(
        url + "/dav/", username=ALICE, password=TEST_PASSWORD, ssl_verify_cert=cafile
    ) as client:
        personal = client.calendar(url=url + CAL).objects_by_sync_token(load_objects=True)
        in_work = client.calendar(url=url + work).objects_by_sync_token(load_objects=True)
        assert len(list(personal)) == 1 and not list(in_work)

        moved = alice.post(
            f"/calendar/events/personal/{name}", event_form(title="Budget", calendar="work")
        )
        assert moved.headers["location"] == f"/calendar/events/work/{name}?done=saved"
        assert dav_objects(live) == {}
        with dav_client(live, ALICE) as dav:
            assert dav.get(work + name).content == before  # the same object, byte for byte

        updated, deleted = personal.sync()
        assert not list(updated) and [unquote(o.url.path) for o in deleted] == [CAL + name]
        updated, deleted = in_work.sync()
        ((obj,),) = (list(updated),)
        assert unquote(obj.url.path) == work + name and not list(deleted)
        assert str(only_event(obj.data.encode())["UID"]) == str(only_event(before)["UID"])

    # The same UID written to "personal" meanwhile (a phone): the move back is refused.
    with dav_client(live, ALICE) as dav:
        assert dav.put(CAL + "copy.ics", content=before, headers=ICS).status_code == 201
    refused = alice.post(
        f"/calendar/events/work/{name}", event_form(title="Budget", calendar="personal")
    )
    assert refused.status_code == 400
    assert "that calendar already has this event (the same UID)" in refused.text
    assert f'action="/calendar/events/work/{name}"' in refused.text  # still the work one
    assert '<option value="personal" selected>' in refused.text  # the choice kept
    with dav_client(live, ALICE) as dav:
        assert dav.get(work + name).content == before
    assert list(dav_objects(live)) == ["copy.ics"]


def test_deleting_a_phones_meeting_cancels_for_the_attendees_only(
    live: LiveServer, alice: WebSession
) -> None:
    """A meeting Alice's iPhone wrote (she is listed among the attendees, as iOS lists the
    organizer) deleted in the web: the CANCEL goes to Bob, as for a CalDAV DELETE, and not to
    Alice herself."""
    meeting = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Apple Inc.//iOS 18//EN\r\nBEGIN:VEVENT\r\n"
        "UID:ios-1\r\nDTSTAMP:20310101T000000Z\r\nDTSTART:20310304T093000Z\r\n"
        "DURATION:PT1H\r\nSUMMARY:Review\r\nORGANIZER;CN=Alice:mailto:alice@example.org\r\n"
        "ATTENDEE;CN=Alice;PARTSTAT=ACCEPTED:mailto:alice@example.org\r\n"
        "ATTENDEE;CN=Bob;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:bob@example.org\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    with dav_client(live, ALICE) as dav:
        assert dav.put(CAL + "ios-1.ics", content=meeting.encode(), headers=ICS).status_code == 201
    wait_for(lambda: arrived(live, BOB, "Invitation: Review"), "the phone's invitation")
    gone = alice.post("/calendar/events/personal/ios-1.ics", {"action": "delete", "confirmed": "1"})
    assert "done=cancelled" in gone.headers["location"]
    ((_, _, raw),) = wait_for(lambda: arrived(live, BOB, "Cancelled: Review"), "the cancel")
    assert message_from_bytes(raw, policy=policy.default)["To"] == BOB
    assert len(sent_copies(live, ALICE, "Cancelled: Review")) == 1
    # Mail to Bob sent after it has arrived: one to Alice would have been delivered as soon.
    assert alice.post("/calendar/events", event_form(title="Later", attendees=BOB))
    wait_for(lambda: arrived(live, BOB, "Invitation: Later"), "a later invitation")
    assert arrived(live, ALICE, "Cancelled: Review") == []


def test_a_full_mailbox_warns_that_no_copy_was_kept_in_sent(
    live: LiveServer, alice: WebSession
) -> None:
    """Alice's mailbox full: her invitations from the Calendar page and her answer to Bob's
    still go, and each shows the compose form's warning that Sent has no copy (one text:
    ``MailAccess.keep_sent``); the answered invitation is still marked answered."""
    send_as_bob(live, invitation("REQUEST"))
    box, uid, _ = wait_for(lambda: newest(live, ALICE, "Invitation: Planning (REQUEST)"), "invite")
    account = live.call(live.store.get_account(ALICE))
    assert account is not None
    live.call(live.store.set_quota(account.id, None, 1))  # the invitation fills it
    warning = "sent, but your mailbox is full: no copy was kept in Sent"

    answered = alice.post(f"/mail/{box}/{uid}/invitation", {"action": "accept"})
    notice = parse_qs(urlsplit(answered.headers["location"]).query)["invitation"]
    assert notice == [
        f"Accepted: saved in your calendar and the organizer told (the answer was {warning})."
    ]
    wait_for(lambda: newest(live, BOB, "Accepted: Planning"), "the REPLY")
    assert "your answer: accepted" in alice.get(f"/mail/{box}/{uid}").text
    assert sent_copies(live, ALICE, "Accepted: Planning") == []

    made = alice.post("/calendar/events", event_form(title="Budget", attendees=BOB))
    target = made.headers["location"]
    assert parse_qs(urlsplit(target).query)["warning"] == [warning]
    page = alice.get(target).text
    assert f'id="invitation-warning">Invitations {warning}</p>' in html.unescape(page)
    wait_for(lambda: arrived(live, BOB, "Invitation: Budget"), "the invitation")
    assert sent_copies(live, ALICE, "Invitation: Budget") == []


def test_a_link_made_elsewhere_puts_no_words_on_our_pages(
    live: LiveServer, alice: WebSession
) -> None:
    """The messages a redirect carries in the address (an invitation's answer, the warning of
    a send) are shown only under the seal this session's server gave them: a link made
    elsewhere cannot make our page say "call this number" (the seal's binding to the session
    and the text: tests/unit/test_web_session.py)."""
    send_as_bob(live, invitation("REQUEST"))
    box, uid, _ = wait_for(lambda: newest(live, ALICE, "Invitation: Planning (REQUEST)"), "invite")
    answered = alice.post(f"/mail/{box}/{uid}/invitation", {"action": "accept"})
    genuine = alice.get(answered.headers["location"]).text
    assert "Accepted: saved in your calendar and the organizer told." in html.unescape(genuine)

    forged = "Your account is locked: call +1 555 0100"
    inbox = mailbox_id(live, ALICE)
    for path, query in [
        (f"/mail/{box}/{uid}", {"invitation": forged}),
        (f"/mail/{inbox}", {"sent": "1", "warning": forged}),
        ("/calendar", {"done": "invited", "warning": forged}),
        ("/calendar", {"done": "invited", "warning": forged, "warning_seal": "AAAA"}),
    ]:
        page = alice.get(path, params=query)
        assert page.status_code == 200, path
        assert "call +1 555 0100" not in html.unescape(page.text), (path, query)
