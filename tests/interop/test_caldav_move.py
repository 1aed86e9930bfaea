"""WebDAV COPY and MOVE (RFC 4918 §9.8, §9.9) of calendar objects against the live server over
HTTPS, with httpx as the client: an event moved and copied between two calendars of the
account and renamed in one, with its bytes and ETag, Overwrite (§10.6), If-Match, RFC 4791
§5.3.2.1 ``no-uid-conflict``, the sync-collection tokens of both calendars (RFC 6578), every
refusal of a Destination, and CardDAV's refusal (one address book, cards named by UID)."""

from __future__ import annotations

from collections.abc import Iterator
from xml.etree.ElementTree import Element, fromstring

import httpx
import pytest

from pillarbox.testing.davclient import dav_client, error_of, responses, text_of
from pillarbox.testing.icalendars import event
from pillarbox.testing.live import LiveServer

pytestmark = pytest.mark.listeners("http", "https")

ALICE = "alice@example.org"
HOME = "/dav/calendars/alice@example.org/"
CAL = HOME + "personal/"
WORK = HOME + "work/"
D = "{DAV:}"
C = "{urn:ietf:params:xml:ns:caldav}"
NS = 'xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"'
ICS = {"content-type": "text/calendar; charset=utf-8"}
PLAIN = "text/plain; charset=utf-8"


@pytest.fixture
def dav(live: LiveServer) -> Iterator[httpx.Client]:
    """alice's CalDAV client over HTTPS, with a second calendar, ``work/``."""
    with dav_client(live, ALICE) as client:
        assert client.request("PROPFIND", HOME, headers={"depth": "1"}).status_code == 207
        assert client.request("MKCALENDAR", WORK).status_code == 201
        yield client


def relocate(
    client: httpx.Client, method: str, source: str, destination: str, **headers: str
) -> httpx.Response:
    """COPY or MOVE ``source`` to ``destination``, a path made absolute on the client's host,
    as clients send it (RFC 4918 §10.3: an absolute URI)."""
    return client.request(
        method, source, headers={"destination": f"{client.base_url}{destination}", **headers}
    )


def sync(client: httpx.Client, calendar: str, token: str) -> tuple[dict[str, Element], str]:
    body = (
        f'<?xml version="1.0"?><d:sync-collection {NS}><d:sync-token>{token}</d:sync-token>'
        "<d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>"
    )
    answer = client.request("REPORT", calendar, content=body, headers={"depth": "1"})
    return responses(answer), fromstring(answer.content).findtext(f"{D}sync-token", "")


def refusal(response: httpx.Response) -> tuple[int, str, str]:
    return response.status_code, response.headers["content-type"], response.text


def test_move_between_calendars_keeps_the_bytes_and_tombstones_the_source(
    dav: httpx.Client,
) -> None:
    body = event("a", "20250101T100000Z").encode()
    put = dav.put(CAL + "a.ics", content=body, headers=ICS)
    assert put.status_code == 201
    _, personal = sync(dav, CAL, "")
    _, work = sync(dav, WORK, "")

    moved = relocate(
        dav, "MOVE", CAL + "a.ics", WORK + "a.ics", **{"if-match": put.headers["etag"]}
    )
    # RFC 4918 §9.9.4: 201, a new resource at the Destination; the same bytes, the same ETag.
    assert (moved.status_code, moved.content) == (201, b"")
    assert moved.headers["etag"] == put.headers["etag"]
    assert dav.get(CAL + "a.ics").status_code == 404
    got = dav.get(WORK + "a.ics")
    assert (got.content, got.headers["etag"]) == (body, put.headers["etag"])
    # RFC 6578: the source's sync reports the object gone, the target's the object added.
    gone, _ = sync(dav, CAL, personal)
    assert list(gone) == [CAL + "a.ics"]
    assert gone[CAL + "a.ics"].findtext(f"{D}status") == "HTTP/1.1 404 Not Found"
    added, _ = sync(dav, WORK, work)
    assert list(added) == [WORK + "a.ics"]
    assert text_of(added[WORK + "a.ics"], f"{D}getetag") == put.headers["etag"]

    # Renamed within the calendar (the UID given up by the source in the same transaction).
    renamed = relocate(dav, "MOVE", WORK + "a.ics", WORK + "b.ics")
    assert renamed.status_code == 201
    assert dav.get(WORK + "a.ics").status_code == 404
    assert dav.get(WORK + "b.ics").content == body


def test_move_overwrite_and_if_match(dav: httpx.Client) -> None:
    a = event("a", "20250101T100000Z").encode()
    b = event("b", "20250102T100000Z").encode()
    assert dav.put(CAL + "a.ics", content=a, headers=ICS).status_code == 201
    assert dav.put(WORK + "b.ics", content=b, headers=ICS).status_code == 201
    stale = relocate(dav, "MOVE", CAL + "a.ics", WORK + "a.ics", **{"if-match": '"stale"'})
    assert refusal(stale) == (412, PLAIN, "precondition failed: the resource changed or exists\n")
    # RFC 4918 §10.6: Overwrite F and an object at the Destination, 412; nothing moved.
    kept = relocate(dav, "MOVE", CAL + "a.ics", WORK + "b.ics", overwrite="F")
    assert refusal(kept) == (412, PLAIN, "precondition failed: the resource changed or exists\n")
    assert dav.get(CAL + "a.ics").content == a and dav.get(WORK + "b.ics").content == b
    # Overwrite T (the default): the object there is replaced, 204 (§9.9.4).
    replaced = relocate(dav, "MOVE", CAL + "a.ics", WORK + "b.ics")
    assert (replaced.status_code, replaced.content) == (204, b"")
    assert dav.get(WORK + "b.ics").content == a
    assert dav.get(CAL + "a.ics").status_code == 404


def test_copy_checks_the_uid_in_the_target(dav: httpx.Client) -> None:
    body = event("a", "20250101T100000Z").encode()
    assert dav.put(CAL + "a.ics", content=body, headers=ICS).status_code == 201
    _, personal = sync(dav, CAL, "")
    _, work = sync(dav, WORK, "")
    copied = relocate(dav, "COPY", CAL + "a.ics", WORK + "a.ics", overwrite="F")
    assert copied.status_code == 201
    assert dav.get(CAL + "a.ics").content == dav.get(WORK + "a.ics").content == body
    # The source's calendar is unchanged; the target's sync reports the copy.
    assert sync(dav, CAL, personal) == ({}, personal)
    assert list(sync(dav, WORK, work)[0]) == [WORK + "a.ics"]
    # RFC 4791 §5.3.2.1 no-uid-conflict, naming the object that holds the UID: another name
    # in the same target, or the source's own calendar.
    for destination, holder in (
        (WORK + "other.ics", WORK + "a.ics"),
        (CAL + "b.ics", CAL + "a.ics"),
    ):
        conflict = relocate(dav, "COPY", CAL + "a.ics", destination)
        assert conflict.status_code == 409 and error_of(conflict) == [f"{C}no-uid-conflict"]
        assert fromstring(conflict.content).findtext(f"{C}no-uid-conflict/{D}href") == holder
        assert dav.get(destination).status_code == 404
    # The same for a MOVE into a calendar that holds the UID under another name.
    assert dav.put(WORK + "c.ics", content=event("c", "20250103T100000Z"), headers=ICS)
    moved = relocate(dav, "MOVE", WORK + "a.ics", CAL + "c.ics")
    assert moved.status_code == 409 and error_of(moved) == [f"{C}no-uid-conflict"]
    assert dav.get(WORK + "a.ics").content == body


def test_destinations_refused(dav: httpx.Client, live: LiveServer) -> None:
    assert dav.put(CAL + "a.ics", content=event("a", "20250101T100000Z"), headers=ICS)
    allow = dav.options(CAL).headers["allow"].split(", ")
    assert "COPY" in allow and "MOVE" in allow  # RFC 4918 §18.1: class 1 has both
    source = CAL + "a.ics"
    bad = "COPY and MOVE take a Destination, and an Overwrite of T or F\n"
    assert refusal(dav.request("MOVE", source)) == (400, PLAIN, bad)
    assert refusal(relocate(dav, "MOVE", source, WORK + "a.ics", overwrite="maybe")) == (
        400,
        PLAIN,
        bad,
    )
    elsewhere = dav.request(
        "MOVE", source, headers={"destination": "https://other.example/dav/calendars/x/y/z.ics"}
    )
    assert refusal(elsewhere) == (502, PLAIN, "the Destination is on another server\n")
    outside = "the Destination is not one of your collections of this kind\n"
    for destination in (
        "/dav/calendars/bob@example.org/personal/a.ics",
        "/dav/addressbooks/alice@example.org/contacts/a.vcf",
        "/mail/a.ics",
    ):
        assert refusal(relocate(dav, "MOVE", source, destination)) == (403, PLAIN, outside)
    # A path on this host given without scheme and host is the same as a whole URL.
    assert refusal(dav.request("MOVE", source, headers={"destination": "/mail/a.ics"})) == (
        403,
        PLAIN,
        outside,
    )
    collection = "the Destination must be an object in a calendar, not a collection\n"
    assert refusal(relocate(dav, "MOVE", source, WORK)) == (403, PLAIN, collection)
    missing = relocate(dav, "MOVE", source, HOME + "missing/a.ics")
    assert refusal(missing) == (409, PLAIN, "no such calendar: make it first (MKCALENDAR)\n")
    itself = relocate(dav, "MOVE", source, source)
    assert refusal(itself) == (403, PLAIN, "the Destination is the resource itself\n")
    assert refusal(relocate(dav, "COPY", CAL + "none.ics", WORK + "a.ics")) == (
        404,
        PLAIN,
        "not found\n",
    )
    assert dav.get(source).status_code == 200 and dav.get(WORK + "a.ics").status_code == 404


def test_carddav_refuses_to_move_or_copy_a_card(live: LiveServer) -> None:
    book = "/dav/addressbooks/alice@example.org/contacts/"
    card = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:ann\r\nFN:Ann\r\nN:;Ann;;;\r\nEND:VCARD\r\n"
    with dav_client(live, ALICE) as client:
        put = client.put(book + "ann.vcf", content=card, headers={"content-type": "text/vcard"})
        assert put.status_code == 201
        for method in ("MOVE", "COPY"):
            refused = relocate(client, method, book + "ann.vcf", book + "bob.vcf")
            assert refusal(refused) == (
                403,
                PLAIN,
                "a card stays where it is: one address book, each card named by its UID\n",
            )
        assert client.get(book + "ann.vcf").text == card
        assert client.get(book + "bob.vcf").status_code == 404
