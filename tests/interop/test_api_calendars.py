"""A calendar's .ics import and export through the JSON API (``/api/v1/calendars/{name}/…``)
against the live server: the counts the page and the CLI give, a re-run changing nothing (an
object a client stored under a name of its own too), an edited event replacing its UID's
object, the export importing back (page by page, unchanged); a calendar made for an import
(``create``); 404 for a calendar the account lacks without it, 400 and 413 for a
file refused, the CSRF header for session callers, a bearer token reaching its own account
alone, a file past ``[web] max_form_bytes`` taken (the larger upload bound); the calendars
listed (``GET /calendars``) by the names import and export take; the OpenAPI document listing
the operations."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest

from pillarbox.testing.davclient import dav_client, responses, text_of
from pillarbox.testing.icalendars import WEEKLY
from pillarbox.testing.live import LiveServer
from pillarbox.testing.webclient import WebSession
from pillarbox.transfer import ics

pytestmark = pytest.mark.listeners("http", "https")

ALICE = "alice@example.org"
CAL = f"/dav/calendars/{ALICE}/personal/"
HEAD = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Exporter//EN\r\nMETHOD:PUBLISH\r\n"
PIECE_HEAD = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Exporter//EN\r\n"
SERIES = WEEKLY[WEEKLY.index("BEGIN:VTIMEZONE") : WEEKLY.index("END:VCALENDAR")]
JOURNAL = "BEGIN:VJOURNAL\r\nUID:j-1\r\nDTSTAMP:20250101T000000Z\r\nEND:VJOURNAL\r\n"
ICS = {"content-type": "text/calendar; charset=utf-8"}
SKIPPED_JOURNAL = "VJOURNAL j-1: a VJOURNAL is not kept in a calendar"


def vevent(uid: str, summary: str) -> str:
    return (
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20250101T000000Z\r\n"
        f"DTSTART:20310304T093000Z\r\nDTEND:20310304T103000Z\r\nSUMMARY:{summary}\r\n"
        "END:VEVENT\r\n"
    )


EXPORT = HEAD + SERIES + vevent("plain-1", "Lunch") + JOURNAL + "END:VCALENDAR\r\n"


@pytest.fixture
def bob(live: LiveServer) -> Iterator[WebSession]:
    session = WebSession(live)
    assert session.login("bob@example.org").status_code == 303
    yield session
    session.close()


def _import(session: WebSession, text: str, calendar: str = "personal") -> httpx.Response:
    return session.api("POST", f"/calendars/{calendar}/import", {"ics": text})


def test_import_reimport_and_export(live: LiveServer, alice: WebSession) -> None:
    done = _import(alice, EXPORT)
    assert done.status_code == 200
    assert done.json() == {
        "imported": 2,
        "unchanged": 0,
        "skipped": 1,
        "reasons": [SKIPPED_JOURNAL],
    }
    # The same file again: every object found as stored, nothing written.
    again = _import(alice, EXPORT).json()
    assert (again["imported"], again["unchanged"], again["skipped"]) == (0, 2, 1)
    # An edited event replaces the object of its UID, under its name.
    edited = _import(alice, EXPORT.replace("SUMMARY:Lunch", "SUMMARY:Long lunch")).json()
    assert (edited["imported"], edited["unchanged"]) == (1, 1)

    exported = alice.api("GET", "/calendars/personal/export")
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "text/calendar; charset=utf-8"
    assert exported.headers["content-disposition"].startswith('attachment; filename="personal.ics"')
    assert exported.headers["cache-control"] == "private, no-store"
    assert exported.text.count("BEGIN:VTIMEZONE") == 1
    assert "SUMMARY:Long lunch" in exported.text and "UID:weekly-1" in exported.text
    # The export imports back: the same UIDs, no object more.
    back = _import(alice, exported.text).json()
    assert (back["imported"], back["unchanged"], back["skipped"]) == (0, 2, 0)
    names = [
        line for line in alice.api("GET", "/calendars/personal/export").text.splitlines()
        if line.startswith("UID:")
    ]  # fmt: skip
    assert sorted(set(names)) == ["UID:plain-1", "UID:weekly-1"]


def _listing(dav: httpx.Client) -> tuple[str, dict[str, str]]:
    """The calendar's ctag, and each object's ETag by href (a Depth-1 PROPFIND)."""
    body = (
        '<?xml version="1.0"?><d:propfind xmlns:d="DAV:" '
        'xmlns:cs="http://calendarserver.org/ns/"><d:prop><d:getetag/><cs:getctag/>'
        "</d:prop></d:propfind>"
    )
    found = responses(dav.request("PROPFIND", CAL, content=body, headers={"depth": "1"}))
    tag = text_of(found.pop(CAL), "{http://calendarserver.org/ns/}getctag")
    return tag, {href: text_of(r, "{DAV:}getetag") for href, r in found.items()}


def test_the_export_streams_page_by_page_and_imports_back_unchanged(
    live: LiveServer, alice: WebSession
) -> None:
    """More objects than one page of the export: every one in the file once, each zone once,
    the file sent as it is written (chunked, no length). Imported back, nothing is written:
    the objects' content is what is stored, though the export wrote its own PRODID and one
    definition of a zone two phone objects each had their own of."""
    count = ics.EXPORT_PAGE + 5
    many = PIECE_HEAD + "".join(vevent(f"e{n:03}", f"Event {n}") for n in range(count))
    assert _import(alice, many + "END:VCALENDAR\r\n").json()["imported"] == count
    other_zone = WEEKLY.replace("weekly-1", "weekly-2").replace(
        "TZID:Europe/Paris\r\n", "TZID:Europe/Paris\r\nX-LIC-LOCATION:Europe/Paris\r\n", 1
    )
    with dav_client(live, ALICE) as dav:
        for name, data in (("a-phone.ics", WEEKLY), ("zz-phone.ics", other_zone)):
            put = dav.put(CAL + name, content=data.encode(), headers=ICS)
            assert put.status_code == 201, put.text
        before = _listing(dav)
        assert len(before[1]) == count + 2

        with alice.client.stream("GET", "/api/v1/calendars/personal/export") as exported:
            assert exported.status_code == 200
            assert "content-length" not in exported.headers
            assert exported.headers["transfer-encoding"] == "chunked"
            text = b"".join(exported.iter_bytes()).decode()
        uids = [line for line in text.splitlines() if line.startswith("UID:")]
        assert len(set(uids)) == count + 2 and text.count("BEGIN:VTIMEZONE") == 1
        assert text.startswith("BEGIN:VCALENDAR\r\n") and text.endswith("END:VCALENDAR\r\n")

        back = _import(alice, text).json()
        assert back == {"imported": 0, "unchanged": count + 2, "skipped": 0, "reasons": []}
        assert _listing(dav) == before


def test_an_object_a_client_named_is_found_by_its_bytes_then_by_its_uid(
    live: LiveServer, alice: WebSession
) -> None:
    """An object a phone PUT under a name of its own: unchanged when the file has its bytes,
    replaced under that name when the file has it edited, never doubled as ``<UID>.ics``."""
    stored = PIECE_HEAD + vevent("phone-1", "Dentist") + "END:VCALENDAR\r\n"
    with dav_client(live, ALICE) as dav:
        put = dav.put(
            CAL + "A1B2C3.ics",
            content=stored.encode(),
            headers={"content-type": "text/calendar; charset=utf-8"},
        )
        assert put.status_code == 201
        same = HEAD + vevent("phone-1", "Dentist") + "END:VCALENDAR\r\n"
        assert _import(alice, same).json() == {
            "imported": 0,
            "unchanged": 1,
            "skipped": 0,
            "reasons": [],
        }
        assert dav.get(CAL + "A1B2C3.ics").headers["etag"] == put.headers["etag"]
        changed = _import(alice, same.replace("Dentist", "Dentist (moved)")).json()
        assert (changed["imported"], changed["unchanged"]) == (1, 0)
        assert b"SUMMARY:Dentist (moved)" in dav.get(CAL + "A1B2C3.ics").content
        assert dav.get(CAL + "phone-1.ics").status_code == 404


def test_refusals(live: LiveServer, alice: WebSession, bob: WebSession) -> None:
    for method, path, body in (
        ("POST", "/calendars/nope/import", {"ics": EXPORT}),
        ("GET", "/calendars/nope/export", None),
    ):
        answer = alice.api(method, path, body)
        assert (answer.status_code, answer.json()) == (404, {"error": "no calendar named 'nope'"})
    # An export reads: an account without calendars is not given the default one by it (its
    # listing would), the default one exported empty; any other name is not found.
    bob_id = live.call(live.store.get_account("bob@example.org"))
    assert bob_id is not None and live.call(live.store.list_calendars(bob_id.id)) == []
    answer = bob.api("GET", "/calendars/personal/export")
    assert answer.status_code == 200 and "BEGIN:VEVENT" not in answer.text
    assert answer.text.startswith("BEGIN:VCALENDAR\r\n")
    assert answer.text.endswith("END:VCALENDAR\r\n") and "X-WR-CALNAME:Calendar" in answer.text
    answer = bob.api("GET", "/calendars/trips/export")
    assert (answer.status_code, answer.json()) == (404, {"error": "no calendar named 'trips'"})
    assert live.call(live.store.list_calendars(bob_id.id)) == []
    not_ics = _import(alice, "hello")
    assert not_ics.status_code == 400 and "error" in not_ics.json()
    assert alice.api("POST", "/calendars/personal/import", {}).json() == {
        "error": "ics is required"
    }
    # Not UTF-8 (a lone surrogate in the JSON): the file is refused, no server error.
    body = json.dumps({"ics": HEAD + vevent("s-1", "\udcfc") + "END:VCALENDAR\r\n"})
    lone = alice.api(
        "POST",
        "/calendars/personal/import",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert lone.status_code == 400
    # [calendars] max_import_bytes (10 MiB), checked on the text, within [web] max_upload_bytes.
    too_large = _import(alice, "x" * (10 * 1024 * 1024 + 1))
    assert too_large.status_code == 413 and "error" in too_large.json()
    forged = alice.client.post("/api/v1/calendars/personal/import", json={"ics": EXPORT})
    assert forged.status_code == 403
    assert "BEGIN:VEVENT" not in alice.api("GET", "/calendars/personal/export").text


def test_create_makes_a_calendar_the_account_lacks(alice: WebSession) -> None:
    """``"create": true``: the calendar is made (as MKCALENDAR: its name rules), titled as
    the file titles its calendar, then imported into; without it, 404 as before."""
    named = EXPORT.replace("METHOD:PUBLISH\r\n", "X-WR-CALNAME:Holidays\r\n")
    body = {"ics": named, "create": True}
    made = alice.api("POST", "/calendars/trips/import", body)
    assert (made.status_code, made.json()["imported"]) == (200, 2)
    listed = {c["name"]: c["display_name"] for c in alice.api("GET", "/calendars").json()}
    assert listed == {"personal": "Calendar", "trips": "Holidays"}
    assert "UID:plain-1" in alice.api("GET", "/calendars/trips/export").text
    again = alice.api("POST", "/calendars/trips/import", body).json()
    assert (again["imported"], again["unchanged"]) == (0, 2)
    bad = alice.api("POST", "/calendars/no%20way/import", body)
    assert bad.status_code == 400 and "letters, digits" in bad.json()["error"]
    flag = alice.api("POST", "/calendars/more/import", {"ics": EXPORT, "create": "yes"})
    assert (flag.status_code, flag.json()) == (400, {"error": "create must be true or false"})
    assert len(alice.api("GET", "/calendars").json()) == 2


def test_a_file_past_the_form_bound_is_taken(alice: WebSession) -> None:
    """Larger than ``[web] max_form_bytes`` (1 MiB), as an export of a year or two is: read up
    to ``[web] max_upload_bytes``, then held to ``[calendars] max_import_bytes``."""
    line = "DESCRIPTION:" + "x" * 60 + "\r\n"
    journals = "".join(
        f"BEGIN:VJOURNAL\r\nUID:big-{n}\r\n{line * 3000}END:VJOURNAL\r\n" for n in range(6)
    )
    text = HEAD + vevent("one", "One") + journals + "END:VCALENDAR\r\n"
    assert len(text) > 1024 * 1024
    done = _import(alice, text)
    assert done.status_code == 200, done.text
    assert (done.json()["imported"], done.json()["skipped"]) == (1, 6)


def test_a_bearer_token_reaches_only_its_account(
    live: LiveServer, alice: WebSession, bob: WebSession
) -> None:
    page = alice.post("/settings/api-token", {"label": "sync"})
    secret = re.search(r'id="new-secret">([^<]+)<', page.text)
    assert secret is not None
    client = httpx.Client(
        base_url=alice.base, headers={"authorization": f"Bearer {secret.group(1)}"}
    )
    made = client.post("/api/v1/calendars/personal/import", json={"ics": EXPORT})
    assert made.json()["imported"] == 2
    assert "UID:plain-1" in client.get("/api/v1/calendars/personal/export").text
    assert "BEGIN:VEVENT" not in bob.api("GET", "/calendars/personal/export").text


def test_the_calendars_are_listed_with_the_names_import_and_export_take(
    live: LiveServer, alice: WebSession, bob: WebSession
) -> None:
    """``GET /calendars``: the account's own (the default one made on first use, as the page
    makes it), one a CalDAV client made with its name, colour and description, by name; the
    default flagged; never another account's."""
    personal = {
        "name": "personal",
        "display_name": "Calendar",
        "color": "",
        "description": "",
        "components": ["VEVENT", "VTODO"],
        "default": True,
    }
    first = alice.api("GET", "/calendars")
    assert first.status_code == 200
    assert first.json() == [personal]
    with dav_client(live, ALICE) as dav:
        made = dav.request(
            "MKCALENDAR",
            f"/dav/calendars/{ALICE}/work/",
            content=(
                '<?xml version="1.0"?><c:mkcalendar xmlns:d="DAV:" '
                'xmlns:c="urn:ietf:params:xml:ns:caldav" '
                'xmlns:ical="http://apple.com/ns/ical/"><d:set><d:prop>'
                "<d:displayname>Work</d:displayname>"
                "<ical:calendar-color>#3366ccff</ical:calendar-color>"
                "<c:calendar-description>Office hours</c:calendar-description>"
                "</d:prop></d:set></c:mkcalendar>"
            ),
        )
        assert made.status_code == 201, made.text
    work = {
        "name": "work",
        "display_name": "Work",
        "color": "#3366ccff",
        "description": "Office hours",
        "components": ["VEVENT", "VTODO"],
        "default": False,
    }
    assert alice.api("GET", "/calendars").json() == [personal, work]
    # Each listed name is one import and export take.
    for listed in alice.api("GET", "/calendars").json():
        assert _import(alice, EXPORT, listed["name"]).json()["imported"] == 2
        assert "UID:plain-1" in alice.api("GET", f"/calendars/{listed['name']}/export").text
    assert [c["name"] for c in bob.api("GET", "/calendars").json()] == ["personal"]


def test_openapi_lists_the_calendar_operations(alice: WebSession) -> None:
    paths = alice.api("GET", "/openapi.json").json()["paths"]
    assert set(paths["/api/v1/calendars"]) == {"get"}
    listed = paths["/api/v1/calendars"]["get"]["responses"]["200"]["content"]
    assert listed["application/json"]["schema"]["items"] == {
        "$ref": "#/components/schemas/Calendar"
    }
    assert set(paths["/api/v1/calendars/{name}/import"]) == {"post"}
    exported = paths["/api/v1/calendars/{name}/export"]
    assert set(exported) == {"get"}
    assert list(exported["get"]["responses"]["200"]["content"]) == ["text/calendar"]
