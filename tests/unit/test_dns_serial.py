"""The SOA serial rule (RFC 1982 serial number arithmetic) and the zone content digest."""

from __future__ import annotations

import pytest

from pillarbox.dns.serial import next_serial, serial_greater, zone_digest

TOP = 2**32 - 1


@pytest.mark.parametrize(
    ("a", "b", "greater"),
    [
        (2, 1, True),
        (1, 2, False),
        (5, 5, False),
        (0, TOP, True),  # RFC 1982 §3.2: past the top, 0 follows 2^32 - 1
        (TOP, 0, False),
        (2**31 - 1, 0, True),
        (2**31, 0, False),  # exactly half apart: undefined, so not greater (§3.2)
        (0, 2**31, False),
        (100, 2**31 + 101, True),
    ],
)
def test_serial_comparison_is_rfc_1982(a: int, b: int, greater: bool) -> None:
    assert serial_greater(a, b) is greater


@pytest.mark.parametrize(
    ("stored", "now", "expected"),
    [
        (None, 1_800_000_000, 1_800_000_000),  # a first serial is the time
        (1, 1_800_000_000, 1_800_000_000),  # the old fixed serial 1: the time is greater
        (1_800_000_000, 1_800_000_500, 1_800_000_500),
        (1_800_000_000, 1_800_000_000, 1_800_000_001),  # two changes in one second
        (1_800_000_000, 1_700_000_000, 1_800_000_001),  # the clock set back
        (TOP, 5, 5),  # after 2106: the time wrapped, and is still greater (§3.1)
        (TOP, TOP, 0),  # one more than the top is 0, which is greater
    ],
)
def test_next_serial_is_the_time_or_one_more(stored: int | None, now: int, expected: int) -> None:
    serial = next_serial(stored, now)
    assert serial == expected
    if stored is not None:
        assert serial_greater(serial, stored)


def test_digest_is_of_the_records_not_their_order() -> None:
    lines = ["a.test.\t3600\tIN\tMX\t10 mx.a.test.", 'a.test.\t3600\tIN\tTXT\t"v=spf1 -all"']
    assert zone_digest(lines) == zone_digest(reversed(lines))
    assert zone_digest(lines) != zone_digest(lines[:1])
    assert zone_digest(lines) != zone_digest([*lines[:1], 'a.test.\t3600\tIN\tTXT\t"v=spf1 mx"'])
