"""DNS blocklists (RFC 5782) against a test zone served on loopback."""

from __future__ import annotations

import pytest

from pillarbox.policy import dnsbl
from pillarbox.policy.dnsbl import DnsblZone
from pillarbox.testing.dnszone import ZoneRecord, serve_records

IP_ZONE = DnsblZone("bl.test", 3.0)
DOMAIN_ZONE = DnsblZone("dbl.test", 2.5)
ZONE = [
    ZoneRecord("2.0.0.127.bl.test", "A", "127.0.0.2"),  # RFC 5782 §5: the test entry
    ZoneRecord("9.113.0.203.bl.test", "A", "127.0.0.4"),
    ZoneRecord("9.113.0.203.bl.test", "TXT", "listed: see https://bl.test/203.0.113.9"),
    ZoneRecord("10.113.0.203.bl.test", "A", "192.0.2.1"),  # outside 127/8: ignored
    ZoneRecord(
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test", "A", "127.0.0.2"
    ),
    ZoneRecord("spammer.test.dbl.test", "A", "127.0.1.2"),
]


def test_query_names() -> None:
    assert dnsbl.ip_query_name("192.0.2.99", "bl.test") == "99.2.0.192.bl.test"
    assert dnsbl.ip_query_name("::ffff:192.0.2.99", "bl.test.") == "99.2.0.192.bl.test"
    assert dnsbl.ip_query_name("2001:db8::1", "bl.test").startswith("1.0.0.0.")


@pytest.mark.parametrize(
    ("ip", "listed"),
    [("127.0.0.2", True), ("203.0.113.9", True), ("203.0.113.10", False), ("2001:db8::1", True),
     ("198.51.100.1", False)],
)  # fmt: skip
async def test_client_ip_lookups(ip: str, listed: bool) -> None:
    async with serve_records(ZONE) as resolver:
        found = await dnsbl.check(
            resolver,
            client_ip=ip,
            ip_zones=[IP_ZONE],
            domains=[],
            domain_zones=[],
            timeout=2,
            check_private=True,
        )
    assert bool(found) is listed


async def test_listing_carries_codes_text_and_score() -> None:
    async with serve_records(ZONE) as resolver:
        [listing] = await dnsbl.check(
            resolver,
            client_ip="203.0.113.9",
            ip_zones=[IP_ZONE],
            domains=[],
            domain_zones=[],
            timeout=2,
            check_private=True,  # 203.0.113.0/24 is a documentation range, not global
        )
    assert (listing.zone, listing.codes, listing.score) == ("bl.test", ("127.0.0.4",), 3.0)
    assert listing.text.startswith("listed:")


async def test_domains_are_checked_and_private_clients_skipped() -> None:
    async with serve_records(ZONE) as resolver:
        found = await dnsbl.check(
            resolver,
            client_ip="127.0.0.2",
            ip_zones=[IP_ZONE],
            domains=["ok.test", "Spammer.test"],
            domain_zones=[DOMAIN_ZONE],
            timeout=2,
        )
    assert [(f.zone, f.subject) for f in found] == [("dbl.test", "spammer.test")]


async def test_a_failing_list_is_temporary_not_listed() -> None:
    async with serve_records(ZONE, failing=["9.113.0.203.bl.test"]) as resolver:
        [found] = await dnsbl.check(
            resolver,
            client_ip="203.0.113.9",
            ip_zones=[IP_ZONE],
            domains=[],
            domain_zones=[],
            timeout=2,
            check_private=True,  # 203.0.113.0/24 is a documentation range, not global
        )
    assert (found.listed, found.temporary, found.score) == (False, True, 0.0)
