"""The hosted zones as the authoritative server serves them (``pillarbox.dns.hosted``): the
ACME DNS-01 records among them, as the writing node and as another node over the same store
see them; their signing key, one per domain across nodes; the mail host's TLSA record."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from pillarbox import provisioning
from pillarbox.dns import notify
from pillarbox.dns.authoritative import respond
from pillarbox.dns.hosted import (
    CHALLENGE_CACHE_SECONDS,
    CHALLENGE_TTL,
    ZONE_CACHE_SECONDS,
    HostedZones,
)
from pillarbox.dns.records import DnsRecord
from pillarbox.dns.signing import SigningPolicy, ZoneKey
from pillarbox.store.sqlite.store import SqliteStore
from pillarbox.store.types import AcmeChallengeRecord

DOMAIN = "example.org"
NAME = f"_acme-challenge.{DOMAIN}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "store.sqlite3")
    await store.open()
    await provisioning.add_domain(store, DOMAIN)
    await provisioning.add_domain(store, f"sub.{DOMAIN}")
    try:
        yield store
    finally:
        await store.close()


async def txt(zones: HostedZones, name: str) -> tuple[int, list[str], list[int]]:
    """(RCODE, TXT values, TTLs) of the authoritative answer for ``name``."""
    query = dns.message.make_query(name, dns.rdatatype.TXT)
    wire = await respond(zones, query.to_wire(), udp=True)
    assert wire is not None
    reply = dns.message.from_wire(wire)
    values = sorted(b"".join(rd.strings).decode() for rrset in reply.answer for rd in rrset)
    return reply.rcode(), values, [rrset.ttl for rrset in reply.answer]


def record(value: str, name: str = NAME, domain: str = DOMAIN) -> AcmeChallengeRecord:
    return AcmeChallengeRecord(domain, name, value, datetime.now(UTC) + timedelta(minutes=5))


async def test_challenge_records_are_served_and_withdrawn(store: SqliteStore) -> None:
    clock = Clock()
    ours = HostedZones(store, mail_host=f"mail.{DOMAIN}", clock=clock)
    other_node = HostedZones(store, mail_host=f"mail.{DOMAIN}", clock=clock)
    assert (await txt(ours, NAME))[0] == dns.rcode.NXDOMAIN
    assert (await txt(other_node, NAME))[0] == dns.rcode.NXDOMAIN

    # The apex and its wildcard share one name: one RRset with both values, a short TTL.
    await store.add_acme_challenge(record("apex-value"))
    await store.add_acme_challenge(record("wildcard-value"))
    ours.forget_challenges(DOMAIN)
    assert await txt(ours, NAME) == (
        dns.rcode.NOERROR,
        ["apex-value", "wildcard-value"],
        [CHALLENGE_TTL],
    )
    # Another node serving the same store still has its last reading, for at most
    # CHALLENGE_CACHE_SECONDS (its zone's other records are cached for far longer).
    assert (await txt(other_node, NAME))[1] == []
    clock.now += CHALLENGE_CACHE_SECONDS
    assert (await txt(other_node, NAME))[1] == ["apex-value", "wildcard-value"]

    # A host's record goes in the closest enclosing hosted zone, not a parent's.
    deep = f"_acme-challenge.mail.sub.{DOMAIN}"
    await store.add_acme_challenge(record("deep", deep, f"sub.{DOMAIN}"))
    ours.forget_challenges(f"sub.{DOMAIN}")
    assert (await txt(ours, deep))[1] == ["deep"]
    assert await ours.hosted_domain_of(deep) == f"sub.{DOMAIN}"
    assert await ours.hosted_domain_of(NAME) == DOMAIN
    assert await ours.hosted_domain_of("_acme-challenge.elsewhere.example") is None

    await store.remove_acme_challenge(NAME, "apex-value")
    await store.remove_acme_challenge(NAME, "wildcard-value")
    ours.forget_challenges(DOMAIN)
    assert (await txt(ours, NAME))[0] == dns.rcode.NXDOMAIN
    # The zone's own records stay.
    assert (await txt(ours, f"_dmarc.{DOMAIN}"))[1] != []


async def test_an_expired_record_is_not_served(store: SqliteStore) -> None:
    clock = Clock()
    zones = HostedZones(store, mail_host=f"mail.{DOMAIN}", clock=clock)
    expired = AcmeChallengeRecord(DOMAIN, NAME, "old", datetime.now(UTC) - timedelta(seconds=1))
    await store.add_acme_challenge(expired)
    assert (await txt(zones, NAME))[0] == dns.rcode.NXDOMAIN


async def test_the_zones_name_this_host_as_their_name_server(store: SqliteStore) -> None:
    """The NS of a hosted zone is the mail host, which the zone (or the mail host's own zone)
    gives an address: a name server name nothing resolves (``ns.<domain>`` was) leaves the
    domain to the parent's glue, and resolvers that ask for the NS's address find nothing."""
    zones = HostedZones(store, mail_host=f"mail.{DOMAIN}", addresses=("192.0.2.7",))
    for origin in (DOMAIN, f"sub.{DOMAIN}"):
        query = dns.message.make_query(origin, dns.rdatatype.NS)
        wire = await respond(zones, query.to_wire(), udp=True)
        assert wire is not None
        reply = dns.message.from_wire(wire)
        assert [rd.target.to_text() for rrset in reply.answer for rd in rrset] == [
            f"mail.{DOMAIN}."
        ]
    address = dns.message.make_query(f"mail.{DOMAIN}", dns.rdatatype.A)
    wire = await respond(zones, address.to_wire(), udp=True)
    assert wire is not None
    assert [rd.address for rrset in dns.message.from_wire(wire).answer for rd in rrset] == [
        "192.0.2.7"
    ]


async def ask(zones: HostedZones, name: str, rtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rtype, want_dnssec=True)
    wire = await respond(zones, query.to_wire(), udp=True)
    assert wire is not None
    return dns.message.from_wire(wire)


async def test_nodes_over_one_store_sign_with_the_stored_key(tmp_path: Path) -> None:
    """Two nodes starting at once on a store where no key exists yet make one each; the store
    keeps one, and both serve it and sign with it. Each hosted domain has its own."""
    path = tmp_path / "shared.sqlite3"
    first, second = SqliteStore(path), SqliteStore(path)
    await first.open()
    await second.open()
    try:
        await provisioning.add_domain(first, DOMAIN)
        await provisioning.add_domain(first, f"other.{DOMAIN}.example")
        nodes = [
            HostedZones(store, mail_host=f"mail.{DOMAIN}", signing=SigningPolicy())
            for store in (first, second)
        ]
        replies = await asyncio.gather(*(ask(node, DOMAIN, "DNSKEY") for node in nodes))
        served = [
            next(r for r in reply.answer if r.rdtype == dns.rdatatype.DNSKEY) for reply in replies
        ]
        assert served[0] == served[1]
        (stored,) = await first.dnssec_keys(DOMAIN)
        assert served[0][0] == ZoneKey(DOMAIN, stored.key_pem).dnskey
        for node in nodes:  # the MX RRset's signature verifies with that key, on either node
            reply = await ask(node, DOMAIN, "MX")
            mx, rrsig = reply.answer
            dns.dnssec.validate(mx, rrsig, {dns.name.from_text(DOMAIN): served[0]})
        other = await ask(nodes[1], f"other.{DOMAIN}.example", "DNSKEY")
        assert other.answer[0] != served[0]
    finally:
        await second.close()
        await first.close()


async def test_the_signing_budget_is_shared_by_every_zone(store: SqliteStore) -> None:
    """``signatures_per_second`` bounds the zones together: a flood spread over them is
    deferred (TC) as one aimed at a single zone is."""
    clock = Clock()  # frozen: the bucket does not refill
    policy = SigningPolicy(signatures_per_second=2)
    zones = HostedZones(store, mail_host=f"mail.{DOMAIN}", signing=policy, clock=clock)
    first = await ask(zones, f"x.{DOMAIN}", "A")  # its SOA and NSEC: the two allowed
    assert not first.flags & dns.flags.TC
    assert [r.rdtype for r in first.authority].count(dns.rdatatype.RRSIG) == 2
    other_zone = await ask(zones, f"y.sub.{DOMAIN}", "A")
    assert other_zone.flags & dns.flags.TC and other_zone.authority == []
    unlimited = HostedZones(store, mail_host=f"mail.{DOMAIN}", signing=SigningPolicy())
    for name in (f"x.{DOMAIN}", f"y.sub.{DOMAIN}", f"z.sub.{DOMAIN}"):
        assert not (await ask(unlimited, name, "A")).flags & dns.flags.TC, name


async def test_unsigned_unless_asked(store: SqliteStore) -> None:
    zones = HostedZones(store, mail_host=f"mail.{DOMAIN}")
    reply = await ask(zones, DOMAIN, "MX")
    assert [r.rdtype for r in reply.answer] == [dns.rdatatype.MX]
    assert await store.dnssec_keys(DOMAIN) == []  # no key is made for an unsigned zone


async def test_the_mail_hosts_tlsa_is_served_in_its_zone(store: SqliteStore) -> None:
    tlsa = DnsRecord(f"_25._tcp.mail.{DOMAIN}", "TLSA", "3 1 1 " + "cd" * 32)
    offered: list[DnsRecord | None] = [tlsa]
    clock = Clock()
    zones = HostedZones(store, mail_host=f"mail.{DOMAIN}", tlsa=lambda: offered[0], clock=clock)
    reply = await ask(zones, tlsa.name, "TLSA")
    assert [rd.to_text() for rrset in reply.answer for rd in rrset] == [tlsa.value]
    # Not in a zone the name is outside of (sub.example.org is a zone of its own).
    elsewhere = DnsRecord(f"_25._tcp.mail.sub.{DOMAIN}", "TLSA", tlsa.value)
    sub = HostedZones(store, mail_host=f"mail.sub.{DOMAIN}", tlsa=lambda: elsewhere)
    assert (await ask(sub, elsewhere.name, "TLSA")).answer != []
    assert (await ask(sub, tlsa.name, "TLSA")).answer == []
    # When the key stops lasting (None), the record goes with the next build of the zone.
    offered[0] = None
    clock.now += ZONE_CACHE_SECONDS
    assert (await ask(zones, tlsa.name, "TLSA")).answer == []


def serial_of(soa: str) -> int:
    """The serial of the SOA record that ``on_serial_change`` was given."""
    return notify.soa_serial(notify.soa_record(soa))


async def soa_serial(zones: HostedZones, name: str = DOMAIN) -> int:
    query = dns.message.make_query(name, dns.rdatatype.SOA)
    wire = await respond(zones, query.to_wire(), udp=True)
    assert wire is not None
    return int(dns.message.from_wire(wire).answer[0][0].serial)


async def test_the_soa_serial_moves_with_the_zone_once_across_nodes(store: SqliteStore) -> None:
    """Each content its serial, greater than the last (RFC 1982), the same on every node;
    the node whose build moved it is the one told (it sends the NOTIFY)."""
    clock = Clock()
    wall = datetime.now(UTC)  # the challenge record below expires in minutes
    moved: dict[str, list[tuple[str, int]]] = {"ours": [], "other": []}

    def node(name: str) -> HostedZones:
        return HostedZones(
            store,
            mail_host=f"mail.{DOMAIN}",
            clock=clock,
            wall_clock=lambda: wall,
            on_serial_change=lambda zone, soa: moved[name].append((zone, serial_of(soa))),
        )

    ours, other = node("ours"), node("other")
    first = await soa_serial(ours)
    assert first == int(wall.timestamp())
    assert moved == {"ours": [(DOMAIN, first)], "other": []}
    assert await soa_serial(other) == first  # the same content: the same serial, no NOTIFY
    assert moved["other"] == []
    # Built again after the cache time, unchanged: nothing moves. refresh() builds every
    # hosted zone, asked for or not: the subdomain's gets its first serial.
    clock.now += ZONE_CACHE_SECONDS
    await ours.refresh()
    assert await soa_serial(ours) == first
    assert moved["ours"] == [(DOMAIN, first), (f"sub.{DOMAIN}", first)]

    # A change in the store moves it on, within the same second too.
    await store.add_acme_challenge(record("token"))
    ours.forget_challenges(DOMAIN)
    second = await soa_serial(ours)
    assert second == first + 1
    assert moved["ours"][-1] == (DOMAIN, second)
    # The other node builds the same new content: the same serial, and no second step.
    clock.now += ZONE_CACHE_SECONDS
    await other.refresh()
    assert await soa_serial(other) == second
    assert moved["other"] == []


async def test_the_ns_names_are_the_configured_ones_and_part_of_the_content(
    store: SqliteStore,
) -> None:
    clock = Clock()
    plain = HostedZones(store, mail_host=f"mail.{DOMAIN}", clock=clock)
    with_secondary = HostedZones(
        store,
        mail_host=f"mail.{DOMAIN}",
        nameservers=(f"mail.{DOMAIN}", "ns2.elsewhere.example"),
        clock=clock,
    )
    before = await soa_serial(plain)
    query = dns.message.make_query(DOMAIN, dns.rdatatype.NS)
    wire = await respond(with_secondary, query.to_wire(), udp=True)
    assert wire is not None
    reply = dns.message.from_wire(wire)
    assert {rd.to_text() for rd in reply.answer[0]} == {
        f"mail.{DOMAIN}.",
        "ns2.elsewhere.example.",
    }
    assert await soa_serial(with_secondary) != before


CATALOG = "catalog.invalid"


def member_name(domain: str) -> str:
    """RFC 9432 §4.3's member name, unique-N worked out with dnspython's own wire form."""
    unique = hashlib.sha1(dns.name.from_text(domain).to_wire()).hexdigest()
    return f"{unique}.zones.{CATALOG}"


async def catalog_members(zones: HostedZones, catalog: str = CATALOG) -> dict[str, str]:
    """The catalog zone as a transfer carries it: each PTR's owner and target."""
    zone = await zones.zone_for(catalog)
    assert zone is not None and zone.origin == catalog
    members = {}
    for owner, rtype, _ttl, rdatas in zone.rrsets():
        if rtype == dns.rdatatype.PTR:
            (rdata,) = rdatas  # §4.3: the only record of its RRset
            members[owner] = dns.name.from_wire(rdata, 0)[0].to_text()
    return members


async def test_the_catalog_zone_lists_the_hosted_domains_and_follows_them(
    store: SqliteStore,
) -> None:
    """RFC 9432: version 2, NS invalid., a PTR per hosted domain; a domain added or removed
    moves the catalog's serial (and is announced), the catalog first at a refresh; the
    members' own zones are untouched by it."""
    clock = Clock()
    moved: list[tuple[str, int]] = []
    zones = HostedZones(
        store,
        mail_host=f"mail.{DOMAIN}",
        catalog=CATALOG,
        clock=clock,
        on_serial_change=lambda zone, soa: moved.append((zone, serial_of(soa))),
    )
    await zones.refresh()
    assert [zone for zone, _ in moved] == [CATALOG, DOMAIN, f"sub.{DOMAIN}"]
    assert await catalog_members(zones) == {
        member_name(DOMAIN): f"{DOMAIN}.",
        member_name(f"sub.{DOMAIN}"): f"sub.{DOMAIN}.",
    }
    version = await ask(zones, f"version.{CATALOG}", "TXT")
    assert [b"".join(rd.strings) for rd in version.answer[0]] == [b"2"]
    ns = await ask(zones, CATALOG, "NS")
    assert [rd.target.to_text() for rd in ns.answer[0]] == ["invalid."]
    first = await soa_serial(zones, CATALOG)
    member_serial = await soa_serial(zones)

    await provisioning.add_domain(store, "bücher.example")  # listed by its A-label
    clock.now += ZONE_CACHE_SECONDS
    await zones.refresh()
    second = await soa_serial(zones, CATALOG)
    assert second > first and (CATALOG, second) in moved
    assert (await catalog_members(zones))[member_name("xn--bcher-kva.example")] == (
        "xn--bcher-kva.example."
    )
    await provisioning.remove_domain(store, f"sub.{DOMAIN}")
    clock.now += ZONE_CACHE_SECONDS
    await zones.refresh()
    assert member_name(f"sub.{DOMAIN}") not in await catalog_members(zones)
    assert await soa_serial(zones, CATALOG) > second
    assert await soa_serial(zones) == member_serial
    # Unchanged, it keeps its serial: nothing announced for nothing.
    announced = len(moved)
    clock.now += ZONE_CACHE_SECONDS
    await zones.refresh()
    assert len(moved) == announced


async def test_a_catalog_named_as_a_hosted_domain_is_logged_as_hiding_it(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    zones = HostedZones(store, mail_host=f"mail.{DOMAIN}", catalog=f"sub.{DOMAIN}")
    await zones.refresh()
    assert list((await catalog_members(zones, f"sub.{DOMAIN}")).values()) == [f"{DOMAIN}."]
    hiding = [r for r in caplog.records if r.getMessage() == "catalog zone hides a hosted domain"]
    assert hiding and hiding[0].levelname == "ERROR"
