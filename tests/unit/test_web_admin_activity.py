"""The admin chart's intervals (pillarbox.web.admin.interval_starts): whole hours or days of
the viewer's zone, as instants in UTC, across daylight-saving changes and half-hour offsets."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pillarbox.web.admin import ACTIVITY_RANGES, QUARTER, interval_starts

PARIS = ZoneInfo("Europe/Paris")
# Paris moved its clocks forward on 29 March 2026 (02:00 → 03:00) and back on 25 October.
SPRING = datetime(2026, 3, 30, 9, 41, tzinfo=UTC)
AUTUMN = datetime(2026, 10, 25, 3, 10, tzinfo=UTC)


def test_days_are_local_days_of_23_24_or_25_hours() -> None:
    starts = interval_starts(ACTIVITY_RANGES["30d"], SPRING, PARIS)
    assert len(starts) == 31
    local = [s.astimezone(PARIS) for s in starts]
    assert all(s.hour == s.minute == 0 for s in local)
    assert local[-2].date() == SPRING.date() and local[-1].date() == SPRING.date() + timedelta(1)
    lengths = [b - a for a, b in itertools.pairwise(starts)]
    assert lengths[-2] == timedelta(hours=23)  # 29 March
    assert set(lengths[:-2] + lengths[-1:]) == {timedelta(hours=24)}
    autumn = interval_starts(ACTIVITY_RANGES["30d"], AUTUMN, PARIS)
    assert autumn[-1] - autumn[-2] == timedelta(hours=25)
    # Every boundary is a whole number of the store's quarter hours from the first.
    for days in (starts, autumn):
        assert all((s - days[0]) % QUARTER == timedelta(0) for s in days)


def test_hours_are_an_hour_apart_and_start_on_the_local_hour() -> None:
    kolkata = interval_starts(ACTIVITY_RANGES["48h"], SPRING, ZoneInfo("Asia/Kolkata"))
    assert len(kolkata) == 49
    assert kolkata[-2] == datetime(2026, 3, 30, 9, 30, tzinfo=UTC)  # 15:00 in Kolkata
    assert {b - a for a, b in itertools.pairwise(kolkata)} == {timedelta(hours=1)}
    # Across the autumn change Paris reads 02:00 twice: both hours are there.
    paris = [
        s.astimezone(PARIS).strftime("%H:%M")
        for s in interval_starts(ACTIVITY_RANGES["48h"], AUTUMN, PARIS)
    ]
    assert paris[-5:] == ["02:00", "02:00", "03:00", "04:00", "05:00"]  # the last: the end


def test_utc_is_what_the_api_counts_in() -> None:
    starts = interval_starts(ACTIVITY_RANGES["48h"], SPRING, UTC)
    assert starts[-2] == datetime(2026, 3, 30, 9, tzinfo=UTC)
