"""The scheduling inbox and outbox (RFC 6638 §2.1, §2.2, §5) against the live server: the
principal names them, they answer PROPFIND (the inbox empty, naming the default calendar),
and the outbox answers a VFREEBUSY request with each attendee's busy time — over httpx and
through python-caldav's ``Principal.freebusy_request``. On PostgreSQL too with
``PILLARBOX_TEST_STORE``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from xml.etree.ElementTree import Element, fromstring

import caldav
import httpx
import icalendar
import pytest

from pillarbox.testing.davclient import dav_client, error_of, found, responses, text_of
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.webclient import tls_paths

ALICE = "alice@example.org"
BOB = "bob@example.org"
C = "{urn:ietf:params:xml:ns:caldav}"
D = "{DAV:}"
ICS = {"content-type": "text/calendar; charset=utf-8"}
INBOX = f"/dav/scheduling/{ALICE}/inbox/"
OUTBOX = f"/dav/scheduling/{ALICE}/outbox/"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    config = loopback_config(tmp_path / "data", only=["http", "https"])
    with LiveServer(config) as server:
        server.add_domain("example.org")
        server.add_account(ALICE, TEST_PASSWORD, display_name="Alice")
        server.add_account(BOB, TEST_PASSWORD, display_name="Bob")
        yield server


def event(uid: str, start: str, extra: str = "") -> bytes:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20310101T000000Z\r\nDTSTART:{start}\r\nDURATION:PT1H\r\n"
        f"SUMMARY:Private {uid}\r\n{extra}END:VEVENT\r\nEND:VCALENDAR\r\n"
    ).encode()


def request(*attendees: str, organizer: str = ALICE, method: str = "REQUEST") -> bytes:
    lines = "".join(f"ATTENDEE:mailto:{a}\r\n" for a in attendees)
    return (
        f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//EN\r\nMETHOD:{method}\r\n"
        "BEGIN:VFREEBUSY\r\nUID:fb-1\r\nDTSTAMP:20310101T000000Z\r\n"
        "DTSTART:20310304T000000Z\r\nDTEND:20310305T000000Z\r\n"
        f"ORGANIZER:mailto:{organizer}\r\n{lines}END:VFREEBUSY\r\nEND:VCALENDAR\r\n"
    ).encode()


def store(client: httpx.Client, path: str, data: bytes) -> None:
    assert client.put(path, content=data, headers=ICS).status_code == 201


def href_of(response: Element, name: str) -> str | None:
    value = found(response, name)
    return None if value is None else value.findtext(f"{D}href")


def propfind(client: httpx.Client, path: str, body: str, depth: str = "0") -> httpx.Response:
    return client.request("PROPFIND", path, content=body, headers={"depth": depth})


def test_principal_inbox_and_outbox(live: LiveServer) -> None:
    with dav_client(live, ALICE) as alice:
        principal = f"/dav/principals/{ALICE}/"
        asked = (
            '<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop>'
            "<c:schedule-inbox-URL/><c:schedule-outbox-URL/><c:calendar-user-type/>"
            "</d:prop></d:propfind>"
        )
        (me,) = responses(propfind(alice, principal, asked)).values()
        assert href_of(me, f"{C}schedule-inbox-URL") == INBOX
        assert href_of(me, f"{C}schedule-outbox-URL") == OUTBOX
        assert text_of(me, f"{C}calendar-user-type") == "INDIVIDUAL"

        allprop = '<d:propfind xmlns:d="DAV:"><d:allprop/></d:propfind>'
        inbox = responses(propfind(alice, INBOX, allprop, depth="1"))
        assert list(inbox) == [INBOX]  # no members: invitations arrive as mail
        kinds = found(inbox[INBOX], f"{D}resourcetype")
        assert kinds is not None and [k.tag for k in kinds] == [
            f"{D}collection",
            f"{C}schedule-inbox",
        ]
        default = href_of(inbox[INBOX], f"{C}schedule-default-calendar-URL")
        assert default == f"/dav/calendars/{ALICE}/personal/"
        (outbox,) = responses(propfind(alice, OUTBOX, allprop)).values()
        kinds = found(outbox, f"{D}resourcetype")
        assert kinds is not None and [k.tag for k in kinds] == [
            f"{D}collection",
            f"{C}schedule-outbox",
        ]

        patch = (
            '<d:propertyupdate xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
            "<d:set><d:prop><d:displayname>x</d:displayname></d:prop></d:set></d:propertyupdate>"
        )

        # Another account's boxes are not found; a box takes no other method.
        assert propfind(alice, f"/dav/scheduling/{BOB}/inbox/", allprop).status_code == 404
        assert alice.request("PROPPATCH", OUTBOX, content=patch).status_code == 405
        assert alice.post(INBOX, content=request(BOB), headers=ICS).status_code == 405
        assert alice.get(OUTBOX).status_code == 405


def default_patch(*instructions: str) -> str:
    return (
        '<d:propertyupdate xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
        f"{''.join(instructions)}</d:propertyupdate>"
    )


def set_default(href: str) -> str:
    return (
        "<d:set><d:prop><c:schedule-default-calendar-URL>"
        f"<d:href>{href}</d:href></c:schedule-default-calendar-URL></d:prop></d:set>"
    )


def statuses(patched: httpx.Response) -> dict[str, str]:
    """Each property of a PROPPATCH's 207 with its status line."""
    assert patched.status_code == 207
    return {
        prop.tag: str(propstat.findtext(f"{D}status"))
        for propstat in fromstring(patched.content).iter(f"{D}propstat")
        for prop in propstat.iterfind(f"{D}prop/*")
    }


def test_a_client_changes_the_default_calendar(live: LiveServer) -> None:
    """RFC 6638 §9.2: a PROPPATCH of the inbox's ``schedule-default-calendar-URL`` to another
    of the account's calendars makes it the default (§4.3: now the one DELETE refuses, and
    the old default can go, here through python-caldav); a href that is not one of them is
    403 ``valid-schedule-default-calendar-URL``; removing it, or any other property, is
    refused with the rest (RFC 4918 §9.2: 403, 424), and nothing changes."""
    home = f"/dav/calendars/{ALICE}/"
    allprop = '<d:propfind xmlns:d="DAV:"><d:allprop/></d:propfind>'
    url = f"https://127.0.0.1:{live.port('https')}"
    key = f"{C}schedule-default-calendar-URL"
    with dav_client(live, ALICE) as alice:

        def default() -> str | None:
            return href_of(responses(propfind(alice, INBOX, allprop))[INBOX], key)

        assert alice.request("MKCALENDAR", home + "work/").status_code == 201
        for wrong in (f"/dav/calendars/{BOB}/personal/", home + "nope/", INBOX, home):
            refused = alice.request("PROPPATCH", INBOX, content=default_patch(set_default(wrong)))
            assert refused.status_code == 403
            assert error_of(refused) == [f"{C}valid-schedule-default-calendar-URL"]
        mixed = default_patch(
            set_default(home + "work/"),
            "<d:set><d:prop><d:displayname>In</d:displayname></d:prop></d:set>",
        )
        assert statuses(alice.request("PROPPATCH", INBOX, content=mixed)) == {
            f"{D}displayname": "HTTP/1.1 403 Forbidden",
            key: "HTTP/1.1 424 Failed Dependency",
        }
        removal = default_patch(
            "<d:remove><d:prop><c:schedule-default-calendar-URL/></d:prop></d:remove>"
        )
        assert statuses(alice.request("PROPPATCH", INBOX, content=removal)) == {
            key: "HTTP/1.1 403 Forbidden"
        }
        assert default() == home + "personal/"

        # A full URL (RFC 4918 §8.3) to the new calendar: taken, and kept.
        chosen = alice.request(
            "PROPPATCH", INBOX, content=default_patch(set_default(url + home + "work/"))
        )
        assert statuses(chosen) == {key: "HTTP/1.1 200 OK"}
        assert default() == home + "work/"
        refused = alice.delete(home + "work/")
        assert refused.status_code == 403
        assert error_of(refused) == [f"{C}default-calendar-needed"]
    client = caldav.DAVClient(
        f"{url}/dav/",
        username=ALICE,
        password=TEST_PASSWORD,
        ssl_verify_cert=str(tls_paths(live.config)[0]),
    )
    principal = client.principal()
    principal.calendar(cal_id="personal").delete()  # no longer the default
    assert [str(c.url) for c in principal.calendars()] == [url + home + "work/"]


def test_the_default_calendar_cannot_be_deleted(live: LiveServer) -> None:
    """RFC 6638 §4.3: the calendar the inbox names as ``schedule-default-calendar-URL`` is
    refused to DELETE (403, ``default-calendar-needed``), over httpx and through
    python-caldav; another calendar is deleted, and the default keeps its events."""
    home = f"/dav/calendars/{ALICE}/"
    with dav_client(live, ALICE) as alice:
        allprop = '<d:propfind xmlns:d="DAV:"><d:allprop/></d:propfind>'
        default = href_of(
            responses(propfind(alice, INBOX, allprop))[INBOX], f"{C}schedule-default-calendar-URL"
        )
        assert default == home + "personal/"
        store(alice, default + "a.ics", event("a", "20310304T093000Z"))
        assert alice.request("MKCALENDAR", home + "work/").status_code == 201
        refused = alice.delete(default)
        assert refused.status_code == 403
        assert error_of(refused) == [f"{C}default-calendar-needed"]
        assert alice.get(default + "a.ics").status_code == 200
        assert alice.delete(home + "work/").status_code == 204
    client = caldav.DAVClient(
        f"https://127.0.0.1:{live.port('https')}/dav/",
        username=ALICE,
        password=TEST_PASSWORD,
        ssl_verify_cert=str(tls_paths(live.config)[0]),
    )
    principal = client.principal()
    (calendar,) = principal.calendars()
    with pytest.raises(caldav.lib.error.AuthorizationError) as refusal:
        calendar.delete()
    assert refusal.value.preconditions == [f"{C}default-calendar-needed"]
    (still,) = principal.calendars()
    assert str(still.url).endswith(default) and len(still.events()) == 1
    other = principal.make_calendar(name="Other", cal_id="other")
    other.delete()
    assert [str(c.url) for c in principal.calendars()] == [str(still.url)]


def test_outbox_answers_free_busy(live: LiveServer) -> None:
    with dav_client(live, ALICE) as alice, dav_client(live, BOB) as bob:
        work = f"/dav/calendars/{BOB}/work/"
        assert bob.request("MKCALENDAR", work).status_code == 201
        personal = f"/dav/calendars/{BOB}/personal/"
        store(bob, personal + "a.ics", event("a", "20310304T093000Z"))
        store(bob, work + "b.ics", event("b", "20310304T150000Z", "STATUS:TENTATIVE\r\n"))
        store(bob, work + "c.ics", event("c", "20310310T150000Z"))  # outside the range asked

        answered = alice.post(OUTBOX, content=request(BOB, "nobody@elsewhere.example"), headers=ICS)
        assert answered.status_code == 200, answered.text
        root = fromstring(answered.content)
        assert root.tag == f"{C}schedule-response"
        by_recipient = {
            r.findtext(f"{C}recipient/{D}href"): (
                r.findtext(f"{C}request-status"),
                r.findtext(f"{C}calendar-data"),
            )
            for r in root.findall(f"{C}response")
        }
        status, data = by_recipient[f"mailto:{BOB}"]
        assert status == "2.0;Success" and data is not None
        reply = icalendar.Calendar.from_ical(data)
        assert str(reply["METHOD"]) == "REPLY"
        (busy,) = reply.walk("VFREEBUSY")
        assert str(busy["UID"]) == "fb-1" and str(busy["ATTENDEE"]) == f"mailto:{BOB}"
        assert str(busy["ORGANIZER"]) == f"mailto:{ALICE}"
        periods = [(p.params["FBTYPE"], p.to_ical().decode()) for p in busy["FREEBUSY"]]
        assert periods == [
            ("BUSY", "20310304T093000Z/20310304T103000Z"),
            ("BUSY-TENTATIVE", "20310304T150000Z/20310304T160000Z"),
        ]
        assert "Private" not in data  # periods only, never what the events are
        assert by_recipient["mailto:nobody@elsewhere.example"] == (
            "3.7;Invalid calendar user",
            None,
        )

        # Asking as someone else, or with something not a free-busy request: refused (§5).
        refused = alice.post(OUTBOX, content=request(BOB, organizer=BOB), headers=ICS)
        assert refused.status_code == 403 and error_of(refused) == [f"{C}valid-organizer"]
        wrong = alice.post(OUTBOX, content=request(BOB, method="PUBLISH"), headers=ICS)
        assert wrong.status_code == 403 and error_of(wrong) == [f"{C}valid-scheduling-message"]
        broken = alice.post(OUTBOX, content=b"not iCalendar", headers=ICS)
        assert broken.status_code == 403 and error_of(broken) == [f"{C}valid-calendar-data"]
        typed = alice.post(OUTBOX, content=request(BOB), headers={"content-type": "text/plain"})
        assert typed.status_code == 403 and error_of(typed) == [f"{C}supported-calendar-data"]


def test_python_caldav_asks_free_busy_through_the_outbox(live: LiveServer) -> None:
    with dav_client(live, BOB) as bob:
        store(bob, f"/dav/calendars/{BOB}/personal/a.ics", event("a", "20310304T093000Z"))
    client = caldav.DAVClient(
        f"https://127.0.0.1:{live.port('https')}/dav/",
        username=ALICE,
        password=TEST_PASSWORD,
        ssl_verify_cert=str(tls_paths(live.config)[0]),
    )
    principal = client.principal()
    assert str(principal.schedule_outbox().url).endswith(OUTBOX)
    inbox = principal.schedule_inbox()
    assert str(inbox.url).endswith(INBOX)
    assert inbox.get_items() == []  # invitations arrive as mail (docs/calendars.md)
    start, end = datetime(2031, 3, 4, tzinfo=UTC), datetime(2031, 3, 5, tzinfo=UTC)
    answers = principal.freebusy_request(start, end, [f"mailto:{BOB}"])
    assert answers["errors"] == {}
    busy = answers[f"mailto:{BOB}"].icalendar_component
    assert busy["FREEBUSY"].to_ical().decode() == "20310304T093000Z/20310304T103000Z"


def test_free_busy_of_other_hosted_domains_and_aliases(live: LiveServer) -> None:
    """Any local calendar user is answered, whatever hosted domain its address is in, and so
    is an alias or a plus-address that reaches one account only (its busy time); an alias
    that reaches several (a list), or anyone off the server, and the catch-all's target
    asked under an address nobody has, are ``3.7``."""
    carol = "carol@example.net"
    live.add_domain("example.net")
    live.add_account(carol, TEST_PASSWORD, display_name="Carol")
    live.call(live.store.add_alias("c.jones@example.org", [carol]))
    live.call(live.store.add_alias("team@example.org", [carol, BOB]))
    live.call(live.store.add_alias("@example.net", [carol]))
    with dav_client(live, carol) as client:
        store(client, f"/dav/calendars/{carol}/personal/a.ics", event("a", "20310304T093000Z"))
    asked = [carol, "c.jones@example.org", "carol+work@example.net", "team@example.org"]
    asked.append("typo@example.net")
    with dav_client(live, ALICE) as alice:
        answered = alice.post(OUTBOX, content=request(*asked), headers=ICS)
    assert answered.status_code == 200, answered.text
    statuses = {
        r.findtext(f"{C}recipient/{D}href"): (
            r.findtext(f"{C}request-status"),
            r.findtext(f"{C}calendar-data"),
        )
        for r in fromstring(answered.content).findall(f"{C}response")
    }
    for address in asked[:3]:
        status, data = statuses[f"mailto:{address}"]
        assert status == "2.0;Success" and data is not None, address
        (busy,) = icalendar.Calendar.from_ical(data).walk("VFREEBUSY")
        assert str(busy["ATTENDEE"]) == f"mailto:{address}"  # as asked (RFC 5546 §3.3.3)
        assert busy["FREEBUSY"].to_ical().decode() == "20310304T093000Z/20310304T103000Z"
    for address in asked[3:]:
        assert statuses[f"mailto:{address}"] == ("3.7;Invalid calendar user", None), address
