"""The webmail's time zone (pillarbox.web.zone): which zone a request gets (the account's
setting, the browser's cookie, UTC), which names are taken, and how a time is written in it —
across daylight-saving changes, where the same wall time happens twice or never."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from pillarbox.web.zone import Source, Style, chosen_zone, known_zone, when, zone_names

BERLIN = known_zone("Europe/Berlin")
NEW_YORK = known_zone("America/New_York")
assert BERLIN is not None and NEW_YORK is not None


def test_the_setting_wins_over_the_browser_and_utc_is_the_last_resort() -> None:
    chosen = chosen_zone("America/New_York", "Europe/Berlin")
    assert (chosen.name, chosen.tz, chosen.source) == ("America/New_York", NEW_YORK, Source.SETTING)
    browser = chosen_zone("", "Europe/Berlin")
    assert (browser.name, browser.tz, browser.source) == ("Europe/Berlin", BERLIN, Source.BROWSER)
    default = chosen_zone("", "")
    assert (default.name, default.tz, default.source) == ("UTC", UTC, Source.DEFAULT)
    # A setting the tz database no longer knows falls back to the browser's.
    assert chosen_zone("Gone/Zone", "Europe/Berlin").source is Source.BROWSER


@pytest.mark.parametrize(
    "name",
    [
        "Mars/Olympus_Mons",
        "europe/berlin",  # names are case-sensitive, as the tz database's files are
        "../../../etc/passwd",
        "/usr/share/zoneinfo/Europe/Berlin",
        "Europe/Berlin\x00",
        "localtime",  # the server's own zone, not a reader's
        "Factory",
        "zone.tab",
        "Europe/" + "x" * 80,
    ],
)
def test_names_outside_the_tz_database_are_refused(name: str) -> None:
    assert known_zone(name) is None
    assert name not in zone_names()


def test_an_unknown_cookie_is_ignored_and_logged_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="pillarbox.web.zone")
    chosen = chosen_zone("", "Mars/Olympus_Mons")
    assert chosen.source is Source.DEFAULT and chosen.tz is UTC
    (record,) = [r for r in caplog.records if r.name == "pillarbox.web.zone"]
    assert record.levelno == logging.DEBUG
    assert record.getMessage() == "unknown time zone cookie ignored"
    assert record.fields == {"zone": "Mars/Olympus_Mons"}  # type: ignore[attr-defined]


def test_the_settings_choice_lists_iana_names() -> None:
    names = zone_names()
    assert list(names) == sorted(names)
    assert {"UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"} <= set(names)
    assert all(known_zone(n) is not None for n in names[:: max(1, len(names) // 50)])


NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("instant", "style", "text"),
    [
        # Spring forward in Berlin (the EU changes at 01:00 UTC): 02:00 CET never happens;
        # 01:00 UTC is 03:00 CEST, the minute before it 01:59 CET.
        (datetime(2026, 3, 29, 0, 59, tzinfo=UTC), "full", "Sun, 29 Mar 2026 01:59 CET"),
        (datetime(2026, 3, 29, 1, 0, tzinfo=UTC), "full", "Sun, 29 Mar 2026 03:00 CEST"),
        # Fall back: 02:30 happens twice, told apart by the abbreviation.
        (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), "stamp", "2026-10-25 02:30 CEST"),
        (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), "stamp", "2026-10-25 02:30 CET"),
        (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), "time", "02:30:00 CET"),
        # The local day, not UTC's: 23:30 UTC on the 31st of December is New Year's Day here.
        (datetime(2025, 12, 31, 23, 30, tzinfo=UTC), "day", "2026-01-01"),
        (datetime(2025, 12, 31, 23, 30, tzinfo=UTC), "short", "01 Jan"),
        (datetime(2025, 12, 31, 22, 30, tzinfo=UTC), "short", "31 Dec 2025"),
        # An offset given with the value changes nothing: the same instant, the reader's zone.
        (datetime(2026, 6, 15, 6, 0, tzinfo=NEW_YORK), "short", "12:00"),
        (datetime(2026, 6, 15, 10, 0), "short", "12:00"),  # naive: taken as UTC
    ],
)
def test_times_in_berlin(instant: datetime, style: Style, text: str) -> None:
    assert when(instant, BERLIN, style, now=NOW) == text


def test_new_york_fall_back_and_today() -> None:
    # 1 November 2026: 01:30 EDT, then an hour later 01:30 again, EST.
    first = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    second = first + timedelta(hours=1)
    assert when(first, NEW_YORK, "full", now=first) == "Sun, 01 Nov 2026 01:30 EDT"
    assert when(second, NEW_YORK, "full", now=first) == "Sun, 01 Nov 2026 01:30 EST"
    # "Today" is the reader's today: at 03:00 UTC it is still the evening before in New York.
    now = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)
    assert when(datetime(2026, 11, 2, 1, 0, tzinfo=UTC), NEW_YORK, now=now) == "20:00"
    assert when(datetime(2026, 11, 2, 1, 0, tzinfo=UTC), UTC, now=now) == "01:00"
    assert when(datetime(2026, 11, 1, 23, 0, tzinfo=UTC), UTC, now=now) == "01 Nov"


def test_abbreviations_of_other_zones() -> None:
    instant = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    kolkata, sao_paulo = known_zone("Asia/Kolkata"), known_zone("America/Sao_Paulo")
    assert kolkata is not None and sao_paulo is not None
    assert when(instant, kolkata, "full", now=instant) == "Mon, 01 Jun 2026 17:30 IST"
    # The tz database has no letters for São Paulo: its offset, read as one.
    assert when(instant, sao_paulo, "full", now=instant) == "Mon, 01 Jun 2026 09:00 UTC-03"
    assert when(instant, UTC, "full", now=instant) == "Mon, 01 Jun 2026 12:00 UTC"
