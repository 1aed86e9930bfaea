"""CalDAV (RFC 4791, RFC 6578) against the live server over HTTPS, with httpx as the client:
discovery from ``/.well-known/caldav`` to the default calendar, MKCALENDAR, PROPPATCH and
DELETE of calendars, GET/PUT/DELETE of objects with ETags and their preconditions, the RFC
4791 §5.3.2.1 refusals, calendar-multiget, calendar-query (comp-filter, prop-filter,
time-range over recurrences, floating times in the calendar's zone), calendar-data as asked
(narrowing, expand, limit-recurrence-set), free-busy-query, sync-collection, limits, and who
may reach what."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.etree.ElementTree import Element, fromstring
from xml.sax.saxutils import escape

import httpx
import pytest

from pillarbox import config as cfg
from pillarbox.testing.davclient import dav_client, error_of, found, responses, text_of
from pillarbox.testing.icalendars import NEW_YORK, WEEKLY, event
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config

pytestmark = pytest.mark.listeners("http", "https")

ALICE = "alice@example.org"
HOME = "/dav/calendars/alice@example.org/"
CAL = HOME + "personal/"
D = "{DAV:}"
C = "{urn:ietf:params:xml:ns:caldav}"
CS = "{http://calendarserver.org/ns/}"
ICAL = "{http://apple.com/ns/ical/}"
NS = (
    'xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav" '
    'xmlns:cs="http://calendarserver.org/ns/" xmlns:ical="http://apple.com/ns/ical/"'
)
ICS = {"content-type": "text/calendar; charset=utf-8"}
#: RFC 4791 §5.2.2's example of a calendar-timezone: one VTIMEZONE in a VCALENDAR.
PARIS = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Example//EN\r\nBEGIN:VTIMEZONE\r\n"
    "TZID:Europe/Paris\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n"
    "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\n"
    "END:STANDARD\r\nEND:VTIMEZONE\r\nEND:VCALENDAR\r\n"
)


@pytest.fixture
def dav(live: LiveServer) -> Iterator[httpx.Client]:
    """alice's CalDAV client over HTTPS, with her account password (no second factor)."""
    with dav_client(live, ALICE) as client:
        yield client


def propfind(client: httpx.Client, path: str, props: str, depth: str = "0") -> httpx.Response:
    body = f'<?xml version="1.0"?><d:propfind {NS}><d:prop>{props}</d:prop></d:propfind>'
    return client.request("PROPFIND", path, content=body, headers={"depth": depth})


def report(client: httpx.Client, path: str, body: str) -> httpx.Response:
    return client.request(
        "REPORT", path, content=f'<?xml version="1.0"?>{body}', headers={"depth": "1"}
    )


def ctag(client: httpx.Client, path: str = CAL) -> str:
    return text_of(responses(propfind(client, path, "<cs:getctag/>"))[path], f"{CS}getctag")


def test_discovery_from_the_well_known_url_to_the_default_calendar(dav: httpx.Client) -> None:
    redirect = dav.request("PROPFIND", "/.well-known/caldav", headers={"depth": "0"})
    assert (redirect.status_code, redirect.headers["location"]) == (301, "/dav/")
    root = responses(propfind(dav, "/dav/", "<d:current-user-principal/><c:calendar-home-set/>"))
    home_set = found(root["/dav/"], f"{C}calendar-home-set")
    assert home_set is not None and home_set.findtext(f"{D}href") == HOME
    principal = "/dav/principals/alice@example.org/"
    me = responses(
        propfind(dav, principal, "<c:calendar-home-set/><c:calendar-user-address-set/>")
    )[principal]
    home_set = found(me, f"{C}calendar-home-set")
    assert home_set is not None and home_set.findtext(f"{D}href") == HOME
    addresses = found(me, f"{C}calendar-user-address-set")
    assert addresses is not None and addresses.findtext(f"{D}href") == f"mailto:{ALICE}"
    props = (
        "<d:resourcetype/><d:displayname/><c:supported-calendar-component-set/>"
        "<c:supported-calendar-data/><c:max-resource-size/><cs:getctag/><d:sync-token/>"
        "<d:supported-report-set/><ical:calendar-color/>"
    )
    listed = responses(propfind(dav, HOME, props, depth="1"))
    # The default calendar is made on first use.
    assert list(listed) == [HOME, CAL]
    calendar = listed[CAL]
    kinds = found(calendar, f"{D}resourcetype")
    assert kinds is not None and [k.tag for k in kinds] == [f"{D}collection", f"{C}calendar"]
    assert text_of(calendar, f"{D}displayname") == "Calendar"
    components = found(calendar, f"{C}supported-calendar-component-set")
    assert components is not None
    assert [c.get("name") for c in components] == ["VEVENT", "VTODO"]
    data = found(calendar, f"{C}supported-calendar-data")
    assert data is not None
    assert [(d.get("content-type"), d.get("version")) for d in data] == [("text/calendar", "2.0")]
    assert text_of(calendar, f"{C}max-resource-size") == str(256 * 1024)
    assert text_of(calendar, f"{D}sync-token").startswith("urn:x-pillarbox:sync:")
    reports = found(calendar, f"{D}supported-report-set")
    assert reports is not None
    assert [r[0][0].tag for r in reports] == [
        f"{C}calendar-multiget",
        f"{C}calendar-query",
        f"{C}free-busy-query",
        f"{D}sync-collection",
    ]
    # No colour set: reported missing.
    missing = [p for p in calendar.findall(f"{D}propstat") if "404" in p.findtext(f"{D}status", "")]
    assert [e.tag for e in missing[0].iterfind(f"{D}prop/*")] == [f"{ICAL}calendar-color"]
    options = dav.options(CAL)
    assert "calendar-access" in options.headers["dav"].split(", ")
    assert "MKCALENDAR" in options.headers["allow"]
    assert dav.request("PROPFIND", CAL).status_code == 403  # no Depth: infinity
    # RFC 4918 §9.7.1: into a calendar that does not exist, 409.
    missing = dav.put(HOME + "missing/x.ics", content=event("x", "20250101T100000Z"), headers=ICS)
    assert missing.status_code == 409


def test_objects_are_kept_as_sent_with_etags_and_preconditions(dav: httpx.Client) -> None:
    path = CAL + "weekly-1.ics"
    before = ctag(dav)
    put = dav.put(path, content=WEEKLY.encode(), headers={**ICS, "if-none-match": "*"})
    assert put.status_code == 201, put.text
    etag = put.headers["etag"]
    got = dav.get(path)
    assert got.status_code == 200
    assert got.content == WEEKLY.encode()  # byte for byte: CRLF, folding, UTF-8
    assert got.headers["etag"] == etag and got.headers["content-type"].startswith("text/calendar")
    assert ctag(dav) != before
    listed = responses(propfind(dav, CAL, "<d:getetag/><d:getcontenttype/>", depth="1"))
    assert list(listed) == [CAL, path]
    assert text_of(listed[path], f"{D}getetag") == etag
    assert text_of(listed[path], f"{D}getcontenttype").endswith("component=vevent")
    # If-None-Match: * refuses to overwrite; a stale If-Match refuses too.
    again = dav.put(path, content=WEEKLY.encode(), headers={**ICS, "if-none-match": "*"})
    assert again.status_code == 412
    changed = WEEKLY.replace("COUNT=10", "COUNT=12").encode()
    stale = dav.put(path, content=changed, headers={**ICS, "if-match": '"stale"'})
    assert stale.status_code == 412
    replaced = dav.put(path, content=changed, headers={**ICS, "if-match": etag})
    assert replaced.status_code == 204 and replaced.headers["etag"] != etag
    assert dav.get(path).content == changed
    assert dav.delete(path, headers={"if-match": etag}).status_code == 412
    assert dav.delete(path, headers={"if-match": replaced.headers["etag"]}).status_code == 204
    assert dav.get(path).status_code == 404
    assert dav.delete(path).status_code == 404
    assert dav.request("PROPFIND", path, headers={"depth": "0"}).status_code == 404


def test_rfc4791_preconditions_refuse_bad_objects(dav: httpx.Client) -> None:
    def put(body: str, name: str = "bad.ics", headers: dict[str, str] = ICS) -> httpx.Response:
        return dav.put(CAL + name, content=body.encode(), headers=headers)

    cases = {
        "garbage": ("BEGIN:VCALENDAR\r\nnot a line\r\nEND:VCALENDAR\r\n", "valid-calendar-data"),
        "broken date": (
            event("b", "20250101T100000Z").replace("DTSTART:20250101T100000Z", "DTSTART:soon"),
            "valid-calendar-data",
        ),
        "two calendars": (
            event("a", "20250101T100000Z") * 2,
            "valid-calendar-object-resource",
        ),
        "METHOD": (
            event("m", "20250101T100000Z").replace("VERSION:2.0", "VERSION:2.0\r\nMETHOD:REQUEST"),
            "valid-calendar-object-resource",
        ),
        "two UIDs": (
            event("u1", "20250101T100000Z").replace(
                "END:VCALENDAR",
                "BEGIN:VEVENT\r\nUID:u2\r\nDTSTART:20250102T100000Z\r\nEND:VEVENT\r\nEND:VCALENDAR",
            ),
            "valid-calendar-object-resource",
        ),
        "no UID": (
            event("", "20250101T100000Z").replace("UID:\r\n", ""),
            "valid-calendar-object-resource",
        ),
        "journal": (
            event("j", "20250101T100000Z").replace("VEVENT", "VJOURNAL"),
            "supported-calendar-component",
        ),
    }
    for label, (body, condition) in cases.items():
        refused = put(body)
        assert refused.status_code == 403, label
        assert error_of(refused) == [f"{C}{condition}"], label
    wrong_type = put(event("t", "20250101T100000Z"), headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 403
    assert error_of(wrong_type) == [f"{C}supported-calendar-data"]
    # A second resource with a UID the calendar has: 409, naming where it lives.
    assert put(event("dup", "20250101T100000Z"), "first.ics").status_code == 201
    conflict = put(event("dup", "20250102T100000Z"), "second.ics")
    assert conflict.status_code == 409
    root = fromstring(conflict.content)
    assert root.find(f"{C}no-uid-conflict/{D}href").text == CAL + "first.ics"  # type: ignore[union-attr]
    assert dav.get(CAL + "second.ics").status_code == 404
    assert dav.get(CAL + "bad.ics").status_code == 404
    assert put(event("x", "20250101T100000Z"), "no/slash.ics").status_code == 404


def test_calendars_made_changed_and_removed(dav: httpx.Client) -> None:
    work = HOME + "work/"
    body = (
        f'<?xml version="1.0"?><c:mkcalendar {NS}><d:set><d:prop>'
        "<d:displayname>Work</d:displayname><ical:calendar-color>#3366ccff</ical:calendar-color>"
        "<c:calendar-description>Office hours</c:calendar-description>"
        '<c:supported-calendar-component-set><c:comp name="VEVENT"/>'
        "</c:supported-calendar-component-set>"
        "</d:prop></d:set></c:mkcalendar>"
    )
    made = dav.request("MKCALENDAR", work, content=body)
    assert made.status_code == 201, made.text
    again = dav.request("MKCALENDAR", work, content=body)
    assert again.status_code == 403 and error_of(again) == [f"{D}resource-must-be-null"]
    journals = body.replace('name="VEVENT"', 'name="VJOURNAL"')
    refused = dav.request("MKCALENDAR", HOME + "journal/", content=journals)
    assert refused.status_code == 403
    assert error_of(refused) == [f"{C}supported-calendar-component"]
    nested = dav.request("MKCALENDAR", work + "inner", content="")
    assert nested.status_code == 403 and error_of(nested) == [f"{C}calendar-collection-location-ok"]
    listed = responses(
        propfind(
            dav,
            HOME,
            "<d:displayname/><ical:calendar-color/><c:calendar-description/><c:calendar-timezone/>",
            "1",
        )
    )
    assert list(listed) == [HOME, CAL, work]
    assert text_of(listed[work], f"{D}displayname") == "Work"
    assert text_of(listed[work], f"{ICAL}calendar-color") == "#3366ccff"
    # RFC 4791 §5.2.1: the description given to MKCALENDAR is kept; no time zone was given.
    assert text_of(listed[work], f"{C}calendar-description") == "Office hours"
    assert found(listed[work], f"{C}calendar-timezone") is None

    def proppatch(inner: str) -> httpx.Response:
        return dav.request(
            "PROPPATCH",
            work,
            content=f'<?xml version="1.0"?><d:propertyupdate {NS}>{inner}</d:propertyupdate>',
        )

    before = ctag(dav, work)
    renamed = responses(
        proppatch("<d:set><d:prop><d:displayname>Office</d:displayname></d:prop></d:set>")
    )
    assert found(renamed[work], f"{D}displayname") is not None
    assert ctag(dav, work) != before
    # All or nothing: an unknown property is 403, the colour with it 424 and not changed.
    mixed = responses(
        proppatch(
            "<d:set><d:prop><ical:calendar-color>#000000</ical:calendar-color>"
            "<d:getetag>x</d:getetag></d:prop></d:set>"
        )
    )[work]
    statuses = {
        p.findtext(f"{D}status"): [e.tag for e in p.iterfind(f"{D}prop/*")]
        for p in mixed.findall(f"{D}propstat")
    }
    assert statuses == {
        "HTTP/1.1 403 Forbidden": [f"{D}getetag"],
        "HTTP/1.1 424 Failed Dependency": [f"{ICAL}calendar-color"],
    }
    listed = responses(propfind(dav, work, "<d:displayname/><ical:calendar-color/>"))
    assert text_of(listed[work], f"{D}displayname") == "Office"
    assert text_of(listed[work], f"{ICAL}calendar-color") == "#3366ccff"
    responses(proppatch("<d:remove><d:prop><ical:calendar-color/></d:prop></d:remove>"))
    listed = responses(propfind(dav, work, "<ical:calendar-color/>"))
    assert found(listed[work], f"{ICAL}calendar-color") is None
    # RFC 4791 §5.2.2: a time zone is one VTIMEZONE in an iCalendar object, kept as the XML
    # carries it (raw CRLFs read as LF, XML 1.0 §2.11) and answered by PROPFIND; anything else
    # is refused (403).
    described = responses(
        proppatch(
            "<d:set><d:prop><c:calendar-description>Team &amp; clients</c:calendar-description>"
            f"<c:calendar-timezone>{escape(PARIS)}</c:calendar-timezone></d:prop></d:set>"
        )
    )[work]
    assert [p.findtext(f"{D}status") for p in described.findall(f"{D}propstat")] == [
        "HTTP/1.1 200 OK"
    ]
    listed = responses(propfind(dav, work, "<c:calendar-description/><c:calendar-timezone/>"))
    assert text_of(listed[work], f"{C}calendar-description") == "Team & clients"
    assert text_of(listed[work], f"{C}calendar-timezone") == PARIS.strip().replace("\r\n", "\n")
    for bad in (event("x", "20250101T100000Z"), "not iCalendar", PARIS.replace("VTIMEZONE", "X")):
        refused = responses(
            proppatch(
                "<d:set><d:prop><c:calendar-timezone>"
                f"{escape(bad)}</c:calendar-timezone></d:prop></d:set>"
            )
        )[work]
        assert refused.findtext(f"{D}propstat/{D}status") == "HTTP/1.1 403 Forbidden", bad
    zoned = body.replace(
        "</d:prop>", f"<c:calendar-timezone>{escape(PARIS)}</c:calendar-timezone></d:prop>"
    )
    assert dav.request("MKCALENDAR", HOME + "zoned/", content=zoned).status_code == 201
    listed = responses(propfind(dav, HOME + "zoned/", "<c:calendar-timezone/>"))
    assert text_of(listed[HOME + "zoned/"], f"{C}calendar-timezone") == PARIS.strip().replace(
        "\r\n", "\n"
    )
    bad_zone = body.replace("</d:prop>", "<c:calendar-timezone>x</c:calendar-timezone></d:prop>")
    assert dav.request("MKCALENDAR", HOME + "badzone/", content=bad_zone).status_code == 403
    assert dav.delete(HOME + "zoned/").status_code == 204
    responses(proppatch("<d:remove><d:prop><c:calendar-description/></d:prop></d:remove>"))
    listed = responses(propfind(dav, work, "<c:calendar-description/>"))
    assert found(listed[work], f"{C}calendar-description") is None

    assert dav.put(work + "e.ics", content=event("e", "20250101T100000Z")).status_code == 201
    assert dav.delete(work).status_code == 204
    assert dav.get(work + "e.ics").status_code == 404
    assert propfind(dav, work, "<d:displayname/>").status_code == 404
    assert list(responses(propfind(dav, HOME, "<d:displayname/>", "1"))) == [HOME, CAL]


def test_multiget_and_query_with_recurrences(dav: httpx.Client) -> None:
    objects = {
        "weekly-1.ics": WEEKLY,
        "single.ics": event("single", "20250204T150000Z", summary="Dentist"),
        "daily.ics": event("daily", "20250101T070000Z", extra="RRULE:FREQ=DAILY\r\n"),
        "todo.ics": (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VTODO\r\nUID:todo\r\n"
            "DTSTAMP:20250101T000000Z\r\nSUMMARY:Taxes\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"
        ),
    }
    for name, body in objects.items():
        assert dav.put(CAL + name, content=body.encode(), headers=ICS).status_code == 201

    multiget = report(
        dav,
        CAL,
        f"<c:calendar-multiget {NS}><d:prop><d:getetag/><c:calendar-data/></d:prop>"
        f"<d:href>{CAL}weekly-1.ics</d:href><d:href>{CAL}missing.ics</d:href>"
        "<d:href>/dav/calendars/bob@example.org/personal/weekly-1.ics</d:href>"
        "</c:calendar-multiget>",
    )
    got = responses(multiget)
    assert list(got) == [
        CAL + "weekly-1.ics",
        CAL + "missing.ics",
        "/dav/calendars/bob@example.org/personal/weekly-1.ics",
    ]
    assert text_of(got[CAL + "weekly-1.ics"], f"{C}calendar-data") == WEEKLY  # CRLF kept
    assert got[CAL + "missing.ics"].findtext(f"{D}status") == "HTTP/1.1 404 Not Found"

    def query(filters: str) -> list[str]:
        body = (
            f"<c:calendar-query {NS}><d:prop><d:getetag/></d:prop><c:filter>"
            f'<c:comp-filter name="VCALENDAR">{filters}</c:comp-filter></c:filter>'
            "</c:calendar-query>"
        )
        return sorted(href.removeprefix(CAL) for href in responses(report(dav, CAL, body)))

    def between(start: str, end: str) -> list[str]:
        return query(
            f'<c:comp-filter name="VEVENT"><c:time-range start="{start}" end="{end}"/>'
            "</c:comp-filter>"
        )

    everything = ["daily.ics", "single.ics", "todo.ics", "weekly-1.ics"]
    assert query("") == everything
    assert query('<c:comp-filter name="VTODO"/>') == ["todo.ics"]
    assert query('<c:comp-filter name="VEVENT"/>') == ["daily.ics", "single.ics", "weekly-1.ics"]
    uid = (
        '<c:comp-filter name="VEVENT"><c:prop-filter name="UID">'
        "<c:text-match>WEEKLY-1</c:text-match></c:prop-filter></c:comp-filter>"
    )
    assert query(uid) == ["weekly-1.ics"]
    octets = uid.replace("<c:text-match>", '<c:text-match collation="i;octet">')
    assert query(octets) == []
    negated = uid.replace("<c:text-match>", '<c:text-match negate-condition="yes">')
    assert query(negated) == ["daily.ics", "single.ics"]
    no_rrule = (
        '<c:comp-filter name="VEVENT"><c:prop-filter name="RRULE"><c:is-not-defined/>'
        "</c:prop-filter></c:comp-filter>"
    )
    # RFC 4791 §9.7.1 tests components one by one: the series' overridden instance has none.
    assert query(no_rrule) == ["single.ics", "weekly-1.ics"]
    rrule = no_rrule.replace("<c:is-not-defined/>", "")
    assert query(rrule) == ["daily.ics", "weekly-1.ics"]
    alarm = '<c:comp-filter name="VEVENT"><c:comp-filter name="VALARM"/></c:comp-filter>'
    assert query(alarm) == ["weekly-1.ics"]

    # Time ranges (the daily series runs 07:00-08:00 UTC every day, for ever).
    assert between("20250106T080000Z", "20250106T081000Z") == ["weekly-1.ics"]  # 09:00 Paris
    assert between("20250113T080000Z", "20250113T090000Z") == []  # EXDATE
    assert between("20250120T080000Z", "20250120T090000Z") == []  # moved away...
    assert between("20250121T130000Z", "20250121T133000Z") == ["weekly-1.ics"]  # ...to here
    assert between("20250310T080000Z", "20250310T081000Z") == ["weekly-1.ics"]  # tenth
    assert between("20250317T080000Z", "20250317T090000Z") == []  # no eleventh
    assert between("20250204T153000Z", "20250204T154500Z") == ["single.ics"]
    assert between("20250204T160000Z", "20250204T170000Z") == []  # ends as this starts
    assert between("20300601T073000Z", "20300601T074000Z") == ["daily.ics"]
    assert between("20241231T000000Z", "20250101T000000Z") == []
    open_ended = query(
        '<c:comp-filter name="VEVENT"><c:time-range start="20990101T000000Z"/></c:comp-filter>'
    )
    assert open_ended == ["daily.ics"]

    unsupported = report(
        dav,
        CAL,
        f'<c:calendar-query {NS}><c:filter><c:comp-filter name="VCALENDAR">'
        '<c:comp-filter name="VEVENT"><c:prop-filter name="ATTENDEE">'
        '<c:param-filter name="PARTSTAT"/></c:prop-filter></c:comp-filter>'
        "</c:comp-filter></c:filter></c:calendar-query>",
    )
    assert unsupported.status_code == 403 and error_of(unsupported) == [f"{C}supported-filter"]
    bad_range = report(
        dav,
        CAL,
        f'<c:calendar-query {NS}><c:filter><c:comp-filter name="VCALENDAR">'
        '<c:comp-filter name="VEVENT"><c:time-range start="tomorrow"/></c:comp-filter>'
        "</c:comp-filter></c:filter></c:calendar-query>",
    )
    assert bad_range.status_code == 400
    other = report(dav, CAL, f"<c:schedule-query {NS}/>")
    assert other.status_code == 403 and error_of(other) == [f"{D}supported-report"]


def test_sync_collection_reports_changes_and_deletions(dav: httpx.Client, live: LiveServer) -> None:
    def sync(token: str) -> tuple[dict[str, Element], str]:
        body = (
            f"<d:sync-collection {NS}><d:sync-token>{token}</d:sync-token>"
            "<d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>"
        )
        answer = report(dav, CAL, body)
        found_token = fromstring(answer.content).findtext(f"{D}sync-token", "")
        return responses(answer), found_token

    for uid in ("a", "b"):
        dav.put(CAL + f"{uid}.ics", content=event(uid, "20250101T100000Z"), headers=ICS)
    first, token = sync("")
    assert sorted(first) == [CAL + "a.ics", CAL + "b.ics"]
    assert token == text_of(responses(propfind(dav, CAL, "<d:sync-token/>"))[CAL], f"{D}sync-token")
    nothing, same = sync(token)
    assert (nothing, same) == ({}, token)
    dav.put(CAL + "a.ics", content=event("a", "20250102T100000Z"), headers=ICS)
    dav.delete(CAL + "b.ics")
    dav.put(CAL + "c.ics", content=event("c", "20250101T100000Z"), headers=ICS)
    changed, newer = sync(token)
    assert list(changed) == [CAL + "a.ics", CAL + "c.ics", CAL + "b.ics"]
    assert changed[CAL + "b.ics"].findtext(f"{D}status") == "HTTP/1.1 404 Not Found"
    assert found(changed[CAL + "a.ics"], f"{D}getetag") is not None
    assert newer != token
    for bad in ("urn:x-pillarbox:sync:999-1", "http://elsewhere/token", newer + "0"):
        refused = report(
            dav,
            CAL,
            f"<d:sync-collection {NS}><d:sync-token>{bad}</d:sync-token>"
            "<d:sync-level>1</d:sync-level><d:prop/></d:sync-collection>",
        )
        assert refused.status_code == 403 and error_of(refused) == [f"{D}valid-sync-token"]
    # The tombstone of b.ics pruned (the retention job, past [calendars] sync_history_days):
    # the token from before its deletion is refused, so the client syncs in full (§3.7).
    later = datetime.now(UTC) + timedelta(days=1)
    live.with_store(lambda s: s.prune_tombstones(calendars_before=later, contacts_before=None))
    stale = report(
        dav,
        CAL,
        f"<d:sync-collection {NS}><d:sync-token>{token}</d:sync-token>"
        "<d:sync-level>1</d:sync-level><d:prop/></d:sync-collection>",
    )
    assert stale.status_code == 403 and error_of(stale) == [f"{D}valid-sync-token"]
    assert sync(newer)[0] == {}  # a token after the pruned change still works
    full, _ = sync("")
    assert sorted(full) == [CAL + "a.ics", CAL + "c.ics"]


def test_a_listing_answers_the_stored_etags_and_sizes(dav: httpx.Client) -> None:
    """A Depth-1 PROPFIND answers each object's ETag and size from beside it (no bytes read),
    the same as GET gives."""
    for uid in ("a", "b"):
        put = dav.put(CAL + f"{uid}.ics", content=event(uid, "20250101T100000Z"), headers=ICS)
        assert put.status_code == 201
    listed = responses(propfind(dav, CAL, "<d:getetag/><d:getcontentlength/>", "1"))
    for uid in ("a", "b"):
        got = dav.get(CAL + f"{uid}.ics")
        assert text_of(listed[CAL + f"{uid}.ics"], f"{D}getetag") == got.headers["etag"]
        assert text_of(listed[CAL + f"{uid}.ics"], f"{D}getcontentlength") == str(len(got.content))


def test_who_may_reach_what(live: LiveServer, dav: httpx.Client) -> None:
    base = f"http://127.0.0.1:{live.port('http')}"
    anonymous = httpx.request("PROPFIND", base + CAL, headers={"depth": "0"})
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic realm=")
    wrong = httpx.request(
        "PROPFIND", base + CAL, headers={"depth": "0"}, auth=(ALICE, "not the password")
    )
    assert wrong.status_code == 401
    bob_calendar = "/dav/calendars/bob@example.org/personal/"
    bob_event = bob_calendar + "x.ics"
    body = event("x", "20250101T100000Z")
    with httpx.Client(base_url=base, auth=("bob@example.org", TEST_PASSWORD)) as bob:
        assert bob.put(bob_event, content=body, headers=ICS).status_code == 201
        assert bob.get(CAL + "x.ics").status_code == 404
        assert bob.request("MKCALENDAR", HOME + "mine/").status_code == 404
    # alice reaches none of bob's, answered as if it did not exist.
    assert propfind(dav, bob_calendar, "<d:displayname/>").status_code == 404
    assert dav.get(bob_event).status_code == 404
    assert dav.put(bob_event, content=body, headers=ICS).status_code == 404
    assert dav.delete(bob_event).status_code == 404
    assert dav.delete(bob_calendar).status_code == 404
    assert dav.request("MKCALENDAR", "/dav/calendars/bob@example.org/new/").status_code == 404
    with httpx.Client(base_url=base, auth=("bob@example.org", TEST_PASSWORD)) as bob:
        assert bob.get(bob_event).content == body.encode()


def test_calendar_limits(tmp_path: Path) -> None:
    limits = cfg.CalendarsSection(
        max_per_account=2,
        max_objects=2,
        max_object_bytes=1024,
        max_description=10,
        max_timezone_bytes=100,
    )
    config = loopback_config(tmp_path / "data", only=["http"], calendars=limits)
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account(ALICE, TEST_PASSWORD)
        base = f"http://127.0.0.1:{live.port('http')}"
        with httpx.Client(base_url=base, auth=(ALICE, TEST_PASSWORD)) as dav:
            size = text_of(
                responses(propfind(dav, CAL, "<c:max-resource-size/>"))[CAL],
                f"{C}max-resource-size",
            )
            assert size == "1024"
            for uid in ("one", "two"):
                put = dav.put(
                    CAL + f"{uid}.ics", content=event(uid, "20250101T100000Z"), headers=ICS
                )
                assert put.status_code == 201
            full = dav.put(
                CAL + "three.ics", content=event("three", "20250101T100000Z"), headers=ICS
            )
            assert full.status_code == 507 and "at most 2 objects" in full.text
            # Replacing one is no new object.
            again = dav.put(CAL + "one.ics", content=event("one", "20250102T100000Z"), headers=ICS)
            assert again.status_code == 204
            large = event("one", "20250101T100000Z", summary="x" * 1024)
            too_large = dav.put(CAL + "one.ics", content=large, headers=ICS)
            assert too_large.status_code == 403
            assert error_of(too_large) == [f"{C}max-resource-size"]
            assert dav.request("MKCALENDAR", HOME + "second/").status_code == 201
            third = dav.request("MKCALENDAR", HOME + "third/")
            assert third.status_code == 507 and "at most 2 calendars" in third.text
            # A description or a time zone past its limit: refused (403), the other kept.
            for prop, value in (
                ("calendar-description", "x" * 11),
                ("calendar-timezone", escape(PARIS)),
            ):
                patch = dav.request(
                    "PROPPATCH",
                    CAL,
                    content=f"<d:propertyupdate {NS}><d:set><d:prop><c:{prop}>{value}</c:{prop}>"
                    "</d:prop></d:set></d:propertyupdate>",
                )
                assert patch.status_code == 207
                (refused,) = responses(patch).values()
                assert refused.findtext(f"{D}propstat/{D}status") == "HTTP/1.1 403 Forbidden"
            fits = dav.request(
                "PROPPATCH",
                CAL,
                content=f"<d:propertyupdate {NS}><d:set><d:prop>"
                "<c:calendar-description>ten chars.</c:calendar-description>"
                "</d:prop></d:set></d:propertyupdate>",
            )
            (kept,) = responses(fits).values()
            assert kept.findtext(f"{D}propstat/{D}status") == "HTTP/1.1 200 OK"


def test_calendar_data_as_asked_and_free_busy(dav: httpx.Client) -> None:
    """RFC 4791 §9.6 (narrowing, expand, limit-recurrence-set), §9.9 in the calendar's zone,
    §7.10 free-busy-query, over a calendar whose ``calendar-timezone`` is New York's."""
    ny = HOME + "ny/"
    made = dav.request(
        "MKCALENDAR",
        ny,
        content=f'<?xml version="1.0"?><c:mkcalendar {NS}><d:set><d:prop>'
        f"<c:calendar-timezone>{escape(NEW_YORK).replace(chr(13), '&#13;')}"
        "</c:calendar-timezone></d:prop></d:set></c:mkcalendar>",
    )
    assert made.status_code == 201, made.text
    all_day = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:all-day\r\n"
        "DTSTAMP:20250101T000000Z\r\nDTSTART;VALUE=DATE:20250110\r\nSUMMARY:Holiday\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    objects = {
        "weekly-1.ics": WEEKLY,
        "floating.ics": event("floating", "20250108T100000", extra="RRULE:FREQ=DAILY;COUNT=2\r\n"),
        "all-day.ics": all_day,
        "tentative.ics": event("tentative", "20250107T081500Z", extra="STATUS:TENTATIVE\r\n"),
        "free.ics": event("free", "20250107T120000Z", extra="TRANSP:TRANSPARENT\r\n"),
        "cancelled.ics": event("cancelled", "20250107T130000Z", extra="STATUS:CANCELLED\r\n"),
    }
    for name, body in objects.items():
        assert dav.put(ny + name, content=body.encode(), headers=ICS).status_code == 201

    def data(report_body: str) -> dict[str, str]:
        got = responses(report(dav, ny, report_body))
        return {h.removeprefix(ny): text_of(r, f"{C}calendar-data") for h, r in got.items()}

    def multiget(asked: str, *names: str) -> dict[str, str]:
        hrefs = "".join(f"<d:href>{ny}{n}</d:href>" for n in names)
        return data(
            f"<c:calendar-multiget {NS}><d:prop><d:getetag/><c:calendar-data>{asked}"
            f"</c:calendar-data></d:prop>{hrefs}</c:calendar-multiget>"
        )

    def query(asked: str, start: str, end: str) -> dict[str, str]:
        return data(
            f"<c:calendar-query {NS}><d:prop><c:calendar-data>{asked}</c:calendar-data>"
            f'</d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">'
            f'<c:time-range start="{start}" end="{end}"/></c:comp-filter></c:comp-filter>'
            "</c:filter></c:calendar-query>"
        )

    # §9.6.1-§9.6.4: the stored lines asked for, byte for byte (the folded DESCRIPTION too).
    summaries = (
        '<c:comp name="VCALENDAR"><c:prop name="VERSION"/><c:comp name="VEVENT">'
        '<c:prop name="SUMMARY"/><c:prop name="DESCRIPTION"/>'
        '<c:prop name="DTSTART" novalue="yes"/></c:comp></c:comp>'
    )
    assert multiget(summaries, "weekly-1.ics") == {
        "weekly-1.ics": "BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"
        "BEGIN:VEVENT\r\nDTSTART;TZID=Europe/Paris:\r\nSUMMARY:Réunion d'équipe\r\n"
        "DESCRIPTION:A long description that a client folds at seve\r\n"
        " nty-five octets, as RFC 5545 §3.1 says.\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\nDTSTART;TZID=Europe/Paris:\r\nSUMMARY:Réunion d'équipe (moved)\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    }
    everything = '<c:comp name="VCALENDAR"><c:allprop/><c:allcomp/></c:comp>'
    assert multiget(everything, "weekly-1.ics", "all-day.ics") == {
        "weekly-1.ics": WEEKLY,
        "all-day.ics": all_day,
    }

    # §9.6.5: each instance in the range, in UTC, with its RECURRENCE-ID.
    expand = '<c:expand start="20250105T000000Z" end="20250122T000000Z"/>'
    expanded = query(expand, "20250105T000000Z", "20250122T000000Z")
    assert sorted(expanded) == [
        "all-day.ics",
        "cancelled.ics",
        "floating.ics",
        "free.ics",
        "tentative.ics",
        "weekly-1.ics",
    ]
    weekly = expanded["weekly-1.ics"]
    assert "RRULE" not in weekly and "EXDATE" not in weekly and "VTIMEZONE" not in weekly
    lines = weekly.split("\r\n")
    assert [line for line in lines if line.startswith(("DTSTART", "RECURRENCE-ID"))] == [
        "DTSTART:20250106T080000Z",
        "RECURRENCE-ID:20250106T080000Z",
        "DTSTART:20250121T130000Z",
        "RECURRENCE-ID:20250120T080000Z",
    ]
    floating = expanded["floating.ics"].split("\r\n")
    assert [line for line in floating if line.startswith("RECURRENCE-ID")] == [
        "RECURRENCE-ID:20250108T100000",
        "RECURRENCE-ID:20250109T100000",
    ]
    # §9.6.6: the master, and the moved instance only when the range holds it.
    limit = '<c:limit-recurrence-set start="{0}" end="{1}"/>'
    early = multiget(limit.format("20250101T000000Z", "20250110T000000Z"), "weekly-1.ics")
    assert "(moved)" not in early["weekly-1.ics"]
    assert "RRULE:FREQ=WEEKLY;COUNT=10" in early["weekly-1.ics"]
    late = multiget(limit.format("20250120T000000Z", "20250122T000000Z"), "weekly-1.ics")
    assert late == {"weekly-1.ics": WEEKLY}

    # §9.9: the floating 10:00 is 15:00 UTC in New York; the all-day event is 10 January
    # from 05:00 UTC to 05:00 UTC the next day.
    assert list(query("", "20250108T100000Z", "20250108T110000Z")) == []
    assert list(query("", "20250108T150000Z", "20250108T153000Z")) == ["floating.ics"]
    assert list(query("", "20250110T000000Z", "20250110T040000Z")) == []
    assert list(query("", "20250111T040000Z", "20250111T050000Z")) == ["all-day.ics"]

    # §7.10: one VFREEBUSY, periods merged and in order, the transparent and cancelled left out.
    free_busy = report(
        dav,
        ny,
        f'<c:free-busy-query {NS}><c:time-range start="20250105T000000Z" '
        'end="20250112T000000Z"/></c:free-busy-query>',
    )
    assert free_busy.status_code == 200
    assert free_busy.headers["content-type"] == "text/calendar; charset=utf-8"
    stamp = next(line for line in free_busy.text.split("\r\n") if line.startswith("DTSTAMP:"))
    assert free_busy.text == (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Pillarbox//Pillarbox//EN\r\n"
        f"BEGIN:VFREEBUSY\r\n{stamp}\r\nDTSTART:20250105T000000Z\r\nDTEND:20250112T000000Z\r\n"
        "FREEBUSY;FBTYPE=BUSY:20250106T080000Z/20250106T083000Z\r\n"
        "FREEBUSY;FBTYPE=BUSY-TENTATIVE:20250107T081500Z/20250107T091500Z\r\n"
        "FREEBUSY;FBTYPE=BUSY:20250108T150000Z/20250108T160000Z\r\n"
        "FREEBUSY;FBTYPE=BUSY:20250109T150000Z/20250109T160000Z\r\n"
        "FREEBUSY;FBTYPE=BUSY:20250110T050000Z/20250111T050000Z\r\n"
        "END:VFREEBUSY\r\nEND:VCALENDAR\r\n"
    )

    # Refusals: another data type 403, a range without an end 400, and an expansion past
    # [calendars] max_instances (an endless daily series over ten years) 507.
    json = report(
        dav,
        ny,
        f'<c:calendar-multiget {NS}><d:prop><c:calendar-data content-type="application/json"/>'
        f"</d:prop><d:href>{ny}all-day.ics</d:href></c:calendar-multiget>",
    )
    assert json.status_code == 403 and error_of(json) == [f"{C}supported-calendar-data"]
    open_range = report(
        dav,
        ny,
        f'<c:free-busy-query {NS}><c:time-range start="20250105T000000Z"/></c:free-busy-query>',
    )
    assert open_range.status_code == 400
    daily = event("daily", "20250101T070000Z", extra="RRULE:FREQ=DAILY\r\n")
    assert dav.put(ny + "daily.ics", content=daily.encode(), headers=ICS).status_code == 201
    too_many = report(
        dav,
        ny,
        f"<c:calendar-multiget {NS}><d:prop><c:calendar-data>"
        '<c:expand start="20250101T000000Z" end="20350101T000000Z"/></c:calendar-data>'
        f"</d:prop><d:href>{ny}daily.ics</d:href></c:calendar-multiget>",
    )
    assert too_many.status_code == 507
    assert error_of(too_many) == [f"{D}number-of-matches-within-limits"]
