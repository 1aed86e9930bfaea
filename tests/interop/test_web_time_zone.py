"""The webmail's times in the reader's zone, over real HTTP against the live server (httpx):
the browser's ``tz`` cookie, the account's Settings → Time zone overriding it, an unknown name
ignored, and the message list, search results, conversations, a message's Date and the
calendar all written in the same zone; the JSON API stays in UTC."""

from __future__ import annotations

import html
import re
import threading
import zoneinfo
from collections.abc import Iterator
from pathlib import Path

import pytest

from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.webclient import WebSession, deliver
from pillarbox.web import zone

ALICE = "alice@example.org"
# One instant, 29 June 2024 23:30 UTC, as two senders wrote it: the pages must not show the
# sender's offset, only the reader's.
UTC_DATE = "Sat, 29 Jun 2024 23:30:00 +0000"
PARIS_DATE = "Sun, 30 Jun 2024 01:30:00 +0200"
INSTANTS = {"2024-06-29T23:30:00+00:00", "2024-06-30T01:30:00+02:00"}
TOKYO_FULL = "Sun, 30 Jun 2024 08:30 JST"
NEW_YORK_FULL = "Sat, 29 Jun 2024 19:30 EDT"
UTC_FULL = "Sat, 29 Jun 2024 23:30 UTC"
_DATE_CELLS = re.compile(r'<td class="date"><time datetime="([^"]+)" title="([^"]+)">([^<]+)<')
_MESSAGE_DATE = re.compile(r'<dt>Date</dt><dd><time datetime="([^"]+)">([^<]+)</time>')
_ZONE = re.compile(r'<html lang="en" data-zone="([^"]+)"( data-zone-auto)?>')


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(loopback_config(tmp_path / "data", only=["http"])) as server:
        server.add_domain("example.org")
        server.add_account(ALICE, TEST_PASSWORD)
        yield server


@pytest.fixture
def alice(live: LiveServer) -> Iterator[WebSession]:
    session = WebSession(live)
    assert session.login(ALICE).status_code == 303
    yield session
    session.close()


def dated(subject: str, date: str, message_id: str, headers: str = "") -> bytes:
    return (
        f"From: Carol <carol@example.net>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        f"Date: {date}\r\nMessage-ID: {message_id}\r\n{headers}\r\nHello.\r\n"
    ).encode()


@pytest.fixture
def messages(live: LiveServer) -> tuple[int, int, int]:
    """(mailbox id, uid, uid): the same instant written in UTC and in Paris, the second a reply."""
    box, first = deliver(live, ALICE, dated("Report", UTC_DATE, "<r1@example.net>"))
    reply = dated("Re: Report", PARIS_DATE, "<r2@example.net>", "In-Reply-To: <r1@example.net>\r\n")
    _, second = deliver(live, ALICE, reply)
    return box, first, second


def list_dates(page: str) -> list[tuple[str, str, str]]:
    """(datetime attribute, title, text) of each row's date cell."""
    return [(a, html.unescape(t), html.unescape(x)) for a, t, x in _DATE_CELLS.findall(page)]


def message_date(page: str) -> tuple[str, str]:
    """(datetime attribute, text) of a message view's Date."""
    match = _MESSAGE_DATE.search(page)
    assert match is not None, page[:2000]
    return match.group(1), html.unescape(match.group(2))


def shown_zone(page: str) -> tuple[str, bool]:
    """The zone the page says it is written in, and whether the browser's may replace it."""
    match = _ZONE.search(page)
    assert match is not None, page[:300]
    return match.group(1), bool(match.group(2))


def test_without_a_zone_the_pages_are_in_utc(
    alice: WebSession, messages: tuple[int, int, int]
) -> None:
    box, _, second = messages
    page = alice.get(f"/mail/{box}").text
    assert shown_zone(page) == ("UTC", True)
    assert [(t, x) for _, t, x in list_dates(page)] == [(UTC_FULL, "29 Jun 2024")] * 2
    assert message_date(alice.get(f"/mail/{box}/{second}").text)[1] == UTC_FULL


def test_the_browser_cookie_sets_the_zone_of_every_list_and_view(
    alice: WebSession, messages: tuple[int, int, int]
) -> None:
    box, first, second = messages
    alice.client.cookies.set("tz", "Asia/Tokyo")
    page = alice.get(f"/mail/{box}").text
    assert shown_zone(page) == ("Asia/Tokyo", True)
    # Both rows on the same local day and time, whatever offset the sender wrote; the
    # machine-readable attribute is the instant as the message gave it.
    rows = list_dates(page)
    assert [(t, x) for _, t, x in rows] == [(TOKYO_FULL, "30 Jun 2024")] * 2
    assert {a for a, _, _ in rows} <= INSTANTS
    for uid in (first, second):
        attribute, text = message_date(alice.get(f"/mail/{box}/{uid}").text)
        assert text == TOKYO_FULL and attribute in INSTANTS
    found = alice.get(f"/mail/{box}", params={"q": "Report"}).text
    assert [x for _, _, x in list_dates(found)] == ["30 Jun 2024"] * 2
    threads = alice.get(f"/mail/{box}", params={"view": "threads"}).text
    assert 'id="view-threads" aria-current="true"' in threads
    assert "30 Jun 2024" in threads and "29 Jun 2024" not in threads
    # The message view's list of the conversation too.
    view = alice.get(f"/mail/{box}/{first}").text
    assert "30 Jun 2024" in view and "29 Jun 2024" not in view

    # A name the tz database does not know is ignored: UTC, as without a cookie.
    alice.client.cookies.set("tz", "Mars/Olympus_Mons")
    page = alice.get(f"/mail/{box}").text
    assert shown_zone(page) == ("UTC", True)
    assert [x for _, _, x in list_dates(page)] == ["29 Jun 2024"] * 2

    # The JSON API is not the pages: ISO 8601 with the offset, clients convert.
    alice.client.cookies.set("tz", "Asia/Tokyo")
    listed = alice.api("GET", f"/mailboxes/{box}/messages").json()
    dates = {m["date"] for m in listed["messages"]}
    assert dates and dates <= INSTANTS


def test_the_setting_overrides_the_cookie_until_set_back_to_automatic(
    alice: WebSession, messages: tuple[int, int, int]
) -> None:
    box, first, _ = messages
    alice.client.cookies.set("tz", "Asia/Tokyo")
    settings = alice.get("/settings").text
    assert '<option value="" selected>Automatic' in settings
    assert "<option>America/New_York</option>" in settings
    assert "Times are shown in Asia/Tokyo (your browser's zone)." in settings

    saved = alice.post("/settings/time-zone", {"time_zone": "America/New_York"})
    assert saved.status_code == 303 and saved.headers["location"] == "/settings?saved=time-zone"
    page = alice.get(f"/mail/{box}").text
    assert shown_zone(page) == ("America/New_York", False)  # the script leaves it alone
    assert [(t, x) for _, t, x in list_dates(page)] == [(NEW_YORK_FULL, "29 Jun 2024")] * 2
    assert message_date(alice.get(f"/mail/{box}/{first}").text)[1] == NEW_YORK_FULL
    settings = alice.get("/settings").text
    assert "<option selected>America/New_York</option>" in settings
    assert "Times are shown in America/New_York." in settings
    # The calendar reads the same zone: no second reading of the cookie.
    assert "Times in America/New_York" in alice.get("/calendar").text

    refused = alice.post("/settings/time-zone", {"time_zone": "Mars/Olympus_Mons"})
    assert refused.status_code == 400
    assert "unknown time zone: Mars/Olympus_Mons" in refused.text
    assert shown_zone(alice.get(f"/mail/{box}").text)[0] == "America/New_York"  # unchanged

    assert alice.post("/settings/time-zone", {"time_zone": ""}).status_code == 303
    assert shown_zone(alice.get(f"/mail/{box}").text) == ("Asia/Tokyo", True)
    assert message_date(alice.get(f"/mail/{box}/{first}").text)[1] == TOKYO_FULL
    assert "Times in Asia/Tokyo" in alice.get("/calendar").text


def test_the_known_zone_names_are_read_at_start_up_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk of the tz directories (about 15 ms) is made once, before the web listener
    accepts, on the executor's thread: no request waits for it on the event loop."""
    readers: list[str] = []

    def available() -> set[str]:
        readers.append(threading.current_thread().name)
        return zoneinfo.available_timezones()

    monkeypatch.setattr(zone, "available_timezones", available)
    zone.zone_names.cache_clear()
    zone._names.cache_clear()
    with LiveServer(loopback_config(tmp_path / "data", only=["http"])) as server:
        assert [name.split("_")[0] for name in readers] == ["pillarbox-blocking"]
        server.add_domain("example.org")
        server.add_account(ALICE, TEST_PASSWORD)
        session = WebSession(server)
        session.client.cookies.set("tz", "Asia/Tokyo")
        assert session.login(ALICE).status_code == 303
        assert shown_zone(session.get("/mail", follow_redirects=True).text) == ("Asia/Tokyo", True)
        session.close()
    assert len(readers) == 1
