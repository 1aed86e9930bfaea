"""A hosted zone's key rollover (``pillarbox.dns.rollover``), served by two nodes over one
store (SQLite, and PostgreSQL where a server is reachable): the keys' states at each step,
what the server publishes and signs with, the DS set the parent should have, and, at every
step, a validation by dnspython from each DS set a parent could be showing (the old DS,
both, only the new) — never bogus where the rules say it must not be. Also a stored key that
does not load: logged, its zone served unsigned, the others signed; ``--force`` replaces
it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.dnssec
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from pillarbox import provisioning
from pillarbox.dns.authoritative import DEFAULT_SOA, StaticZone, ZoneError, respond
from pillarbox.dns.cds import CdsMode
from pillarbox.dns.hosted import ZONE_CACHE_SECONDS, HostedZones
from pillarbox.dns.rollover import (
    RolloverRefused,
    RolloverStep,
    RolloverTiming,
    finish_rollover,
    key_ring,
    rollover_status,
    start_rollover,
)
from pillarbox.dns.signing import DEFAULT_SIGNING, SigningPolicy, ZoneKey, new_key_pem
from pillarbox.store.interface import Store
from pillarbox.store.postgres.store import PostgresStore
from pillarbox.store.sqlite.store import SqliteStore
from pillarbox.store.types import DnssecKey, DnssecKeyState
from pillarbox.testing.postgres import unreachable_reason

DOMAIN = "example.org"
OTHER = "other.example"
TIMING = RolloverTiming(
    dnskey_ttl=DEFAULT_SOA.ttl, propagation=ZONE_CACHE_SECONDS, retire_after=2 * 86_400
)
ORIGIN = dns.name.from_text(DOMAIN)


class Clocks:
    """The wall clock the keys' times are read against, and the monotonic one of the zones'
    cache, moved together."""

    def __init__(self) -> None:
        self.wall = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture(params=["sqlite", "postgresql"])
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Store, Store]]:
    """Two nodes' stores over one database: an SQLite file, or a PostgreSQL schema (skipped
    when no server is reachable)."""
    first: Store
    second: Store
    if request.param == "postgresql":
        reason = unreachable_reason()
        if reason is not None:
            pytest.skip(reason)
        url = request.getfixturevalue("database").new_store_url()
        first, second = PostgresStore(url), PostgresStore(url)
    else:
        path = tmp_path / "shared.sqlite3"
        first, second = SqliteStore(path), SqliteStore(path)
    await first.open()
    await second.open()
    await provisioning.add_domain(first, DOMAIN)
    await provisioning.add_domain(first, OTHER)
    try:
        yield first, second
    finally:
        await second.close()
        await first.close()


def node(store: Store, clocks: Clocks) -> HostedZones:
    return HostedZones(
        store,
        mail_host=f"mail.{DOMAIN}",
        addresses=("192.0.2.7",),
        signing=SigningPolicy(),
        rollover=TIMING,
        cds="publish",
        clock=lambda: clocks.mono,
        wall_clock=lambda: clocks.wall,
    )


async def ask(zones: HostedZones, name: str, rtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rtype, want_dnssec=True)
    wire = await respond(zones, query.to_wire(), udp=False)
    assert wire is not None
    return dns.message.from_wire(wire)


def split(reply: dns.message.Message, rtype: int) -> tuple[dns.rrset.RRset, dns.rrset.RRset]:
    data = next(r for r in reply.answer if r.rdtype == rtype)
    sigs = next(r for r in reply.answer if r.rdtype == dns.rdatatype.RRSIG)
    return data, sigs


def validates(
    dnskey_reply: dns.message.Message, mx_reply: dns.message.Message, ds: Sequence[str]
) -> bool:
    """What a validator holding the DS set ``ds`` concludes (RFC 4035 §5.2, §5.3): the DNSKEY
    RRset is authenticated by a signature of a key some DS names; the MX RRset by a key of
    that RRset."""
    keys, key_sigs = split(dnskey_reply, dns.rdatatype.DNSKEY)
    wanted = {value.split()[0] + " " + value.split()[-1].lower() for value in ds}
    vouched = dns.rrset.RRset(ORIGIN, keys.rdclass, keys.rdtype)
    for key in keys:
        made = dns.dnssec.make_ds(ORIGIN, key, "SHA256").to_text().split()
        if f"{made[0]} {made[-1].lower()}" in wanted:
            vouched.add(key, keys.ttl)
    mx, mx_sigs = split(mx_reply, dns.rdatatype.MX)
    try:
        dns.dnssec.validate(keys, key_sigs, {ORIGIN: vouched})
        dns.dnssec.validate(mx, mx_sigs, {ORIGIN: keys})
    except dns.dnssec.ValidationFailure:
        return False
    return True


async def served(zones: HostedZones) -> tuple[list[int], list[int], list[int]]:
    """The tags of the DNSKEY RRset, of the signatures over it, and of the MX's signatures."""
    dnskey = await ask(zones, DOMAIN, "DNSKEY")
    keys, key_sigs = split(dnskey, dns.rdatatype.DNSKEY)
    _mx, mx_sigs = split(await ask(zones, DOMAIN, "MX"), dns.rdatatype.MX)
    return (
        sorted(dns.dnssec.key_id(k) for k in keys),
        sorted(s.key_tag for s in key_sigs),
        [s.key_tag for s in mx_sigs],
    )


async def validation_by_ds_set(zones: HostedZones, sets: dict[str, list[str]]) -> dict[str, bool]:
    dnskey, mx = await ask(zones, DOMAIN, "DNSKEY"), await ask(zones, DOMAIN, "MX")
    return {name: validates(dnskey, mx, ds) for name, ds in sets.items()}


def ds_of(key: ZoneKey) -> str:
    return key.ds_record(3600).value


async def cds_served(zones: HostedZones) -> tuple[list[int], list[int], list[int]]:
    """The key tags the CDS RRset names (each with digest type 2), the keys the CDNSKEY
    RRset holds, and the signatures over the CDS."""
    cds, sigs = split(await ask(zones, DOMAIN, "CDS"), dns.rdatatype.CDS)
    cdnskey, _ = split(await ask(zones, DOMAIN, "CDNSKEY"), dns.rdatatype.CDNSKEY)
    assert {r.digest_type for r in cds} == {2}  # RFC 8624 §3.3
    return (
        sorted(r.key_tag for r in cds),
        sorted(dns.dnssec.key_id(r) for r in cdnskey),
        sorted(s.key_tag for s in sigs),
    )


async def cds_checked_by(zones: HostedZones, sets: dict[str, list[str]]) -> dict[str, bool]:
    """Whether a parent holding each DS set finds the CDS and CDNSKEY RRsets signed by a key
    its DS names (RFC 7344 §4.1), the keys taken from the DNSKEY RRset."""
    keys, _ = split(await ask(zones, DOMAIN, "DNSKEY"), dns.rdatatype.DNSKEY)
    signed = [
        split(await ask(zones, DOMAIN, rtype), dns.rdatatype.from_text(rtype))
        for rtype in ("CDS", "CDNSKEY")
    ]
    checked = {}
    for name, ds in sets.items():
        named = dns.rrset.RRset(ORIGIN, keys.rdclass, keys.rdtype)
        for key in keys:
            if dns.dnssec.make_ds(ORIGIN, key, "SHA256").to_text() in ds:
                named.add(key, keys.ttl)
        try:
            for rrset, sigs in signed:
                dns.dnssec.validate(rrset, sigs, {ORIGIN: named})
        except dns.dnssec.ValidationFailure:
            checked[name] = False
        else:
            checked[name] = True
    return checked


async def test_a_rollover_step_by_step_never_bogus(stores: tuple[Store, Store]) -> None:
    first, second = stores
    clocks = Clocks()
    nodes = [node(first, clocks), node(second, clocks)]
    # Step 0: one key, made by the first node to need it; both nodes sign with it.
    for zones in nodes:
        await ask(zones, DOMAIN, "MX")
    ring = await key_ring(first, DOMAIN, clocks.wall, TIMING)
    assert ring.active is not None and len(ring.keys) == 1
    old = ring.active.key
    assert [await served(zones) for zones in nodes] == [
        ([old.key_tag], [old.key_tag], [old.key_tag])
    ] * 2
    assert rollover_status(ring, TIMING, clocks.wall, [ds_of(old)]).step is RolloverStep.SIGNED
    assert [r.value for r in ring.parent_ds(TIMING, clocks.wall, 3600)] == [ds_of(old)]
    assert await cds_served(nodes[0]) == ([old.key_tag], [old.key_tag], [old.key_tag])

    # Step 1: the next key, published by the operator's command on the first node.
    ring = await start_rollover(first, ring, clocks.wall)
    published = ring.get(DnssecKeyState.PUBLISHED)
    assert published is not None
    new = published.key
    assert new.key_tag != old.key_tag
    with pytest.raises(RolloverRefused, match="under way"):
        await start_rollover(
            second, await key_ring(second, DOMAIN, clocks.wall, TIMING), clocks.wall
        )
    # Until the zones are built again the nodes serve the one key; then both serve both,
    # each signing the DNSKEY RRset, while the data stays signed by the old key.
    clocks.advance(ZONE_CACHE_SECONDS)
    both = sorted([old.key_tag, new.key_tag])
    for zones in nodes:
        assert await served(zones) == (both, both, [old.key_tag])
    sets = {"old": [ds_of(old)], "both": [ds_of(old), ds_of(new)], "new": [ds_of(new)]}
    assert await validation_by_ds_set(nodes[1], sets) == dict.fromkeys(sets, True)
    # The CDS asks for the old DS alone until caches hold the new DNSKEY: a parent taking
    # the new DS now would leave validators with a DNSKEY RRset lacking its key. Every key
    # signs the CDS, so a parent holding any DS set can check it.
    for zones in nodes:
        assert await cds_served(zones) == ([old.key_tag], [old.key_tag], both)
    assert await cds_checked_by(nodes[0], sets) == dict.fromkeys(sets, True)
    serial_before_ready = (await ask(nodes[0], DOMAIN, "SOA")).answer[0][0].serial
    # The parent should keep the old DS, and take the new one only from its ready time.
    status = rollover_status(ring, TIMING, clocks.wall, sets["old"])
    assert status.step is RolloverStep.PUBLISHED and not status.may_finish
    shown = ring.parent_ds(TIMING, clocks.wall, 3600)
    assert [r.value for r in shown] == [ds_of(old), ds_of(new)]
    ready = TIMING.ready_at(published.stored)
    assert f"from {ready:%Y-%m-%d %H:%M} UTC, not before" in shown[1].purpose
    with pytest.raises(RolloverRefused, match="published"):
        await finish_rollover(first, status, DOMAIN, clocks.wall)

    # Step 2: past the DNSKEY TTL the DS may go to the registrar; --finish waits for the
    # parent to show it.
    clocks.advance(DEFAULT_SOA.ttl)
    status = rollover_status(ring, TIMING, clocks.wall, sets["old"])
    assert status.step is RolloverStep.READY
    assert "now" in ring.parent_ds(TIMING, clocks.wall, 3600)[1].purpose
    with pytest.raises(RolloverRefused, match="ready"):
        await finish_rollover(first, status, DOMAIN, clocks.wall)
    assert rollover_status(ring, TIMING, clocks.wall, None).step is RolloverStep.READY
    for parent in (sets["both"], sets["new"]):
        assert rollover_status(ring, TIMING, clocks.wall, parent).may_finish
    # From the ready time the CDS names both keys, and the zone's serial moves with it.
    for zones in nodes:
        assert await cds_served(zones) == (both, both, both)
    assert (await ask(nodes[0], DOMAIN, "SOA")).answer[0][0].serial != serial_before_ready

    # Step 3: finished; the new key signs the data, the old one still signs the DNSKEY RRset.
    status = rollover_status(ring, TIMING, clocks.wall, sets["new"])
    await finish_rollover(second, status, DOMAIN, clocks.wall)
    finished_at = clocks.wall
    clocks.advance(ZONE_CACHE_SECONDS)
    for zones in nodes:
        assert await served(zones) == (both, both, [new.key_tag])
    assert await validation_by_ds_set(nodes[0], sets) == dict.fromkeys(sets, True)
    ring = await key_ring(first, DOMAIN, clocks.wall, TIMING)
    assert [(k.key.key_tag, k.state) for k in ring.keys] == [
        (new.key_tag, DnssecKeyState.ACTIVE),
        (old.key_tag, DnssecKeyState.RETIRED),
    ]
    retired = rollover_status(ring, TIMING, clocks.wall, sets["both"])
    assert retired.step is RolloverStep.RETIRED
    assert any("remove the old key's DS" in line for line in retired.advice)
    assert [r.value for r in ring.parent_ds(TIMING, clocks.wall, 3600)] == [ds_of(new)]
    # The CDS asks the parent to drop the old DS; the old key still signs it for a parent
    # that holds only that DS.
    for zones in nodes:
        assert await cds_served(zones) == ([new.key_tag], [new.key_tag], both)
    assert await cds_checked_by(nodes[1], sets) == dict.fromkeys(sets, True)

    # Step 4: at its time the retired key is removed by the first node to read the keys.
    clocks.wall = finished_at + timedelta(seconds=TIMING.retire_after)
    clocks.advance(ZONE_CACHE_SECONDS)
    for zones in nodes:
        assert await served(zones) == ([new.key_tag], [new.key_tag], [new.key_tag])
    assert [k.state for k in await second.dnssec_keys(DOMAIN)] == [DnssecKeyState.ACTIVE]
    # The parent's old DS set no longer vouches (its TTL has long passed); both or the new do.
    assert await validation_by_ds_set(nodes[1], sets) == {"old": False, "both": True, "new": True}
    ring = await key_ring(first, DOMAIN, clocks.wall, TIMING)
    assert rollover_status(ring, TIMING, clocks.wall, sets["new"]).step is RolloverStep.SIGNED
    assert await cds_served(nodes[0]) == ([new.key_tag], [new.key_tag], [new.key_tag])


async def test_finish_force_goes_on_without_the_parent(
    stores: tuple[Store, Store],
) -> None:
    first, _ = stores
    now = datetime.now(UTC)
    ring = await start_rollover(first, await key_ring(first, DOMAIN, now, TIMING), now)
    status = rollover_status(ring, TIMING, now, None)
    await finish_rollover(first, status, DOMAIN, now, force=True)
    states = [k.state for k in await first.dnssec_keys(DOMAIN)]
    assert states == [DnssecKeyState.ACTIVE, DnssecKeyState.RETIRED]
    # Nothing left to finish, forced or not.
    ring = await key_ring(first, DOMAIN, now, TIMING)
    with pytest.raises(RolloverRefused, match="retired"):
        await finish_rollover(
            first, rollover_status(ring, TIMING, now, None), DOMAIN, now, force=True
        )


async def test_a_key_that_does_not_load_leaves_its_zone_unsigned_and_the_others_signed(
    stores: tuple[Store, Store], caplog: pytest.LogCaptureFixture
) -> None:
    first, _ = stores
    clocks = Clocks()
    corrupt = DnssecKey(
        DOMAIN,
        b"-----BEGIN PRIVATE KEY-----\nbroken\n",
        clocks.wall,
        DnssecKeyState.ACTIVE,
        clocks.wall,
    )
    await first.add_dnssec_key(corrupt)
    zones = node(first, clocks)
    caplog.set_level(logging.ERROR, logger="pillarbox.dns.hosted")
    reply = await ask(zones, DOMAIN, "MX")
    # Served, without signatures: a validator holding the DS rejects it (as it would a
    # SERVFAIL), every other resolver gets the answer.
    assert [r.rdtype for r in reply.answer] == [dns.rdatatype.MX]
    (line,) = [r for r in caplog.records if r.getMessage() == "dnssec key does not load"]
    fields = line.__dict__["fields"]
    assert fields["zone"] == DOMAIN and fields["served"] == "unsigned"
    assert f"pillarbox dns rollover {DOMAIN} --force" in fields["fix"]
    other = await ask(zones, OTHER, "MX")
    assert [r.rdtype for r in other.answer] == [dns.rdatatype.MX, dns.rdatatype.RRSIG]

    ring = await key_ring(first, DOMAIN, clocks.wall, TIMING)
    assert ring.active is None and len(ring.broken) == 1
    assert rollover_status(ring, TIMING, clocks.wall, []).step is RolloverStep.BROKEN
    with pytest.raises(RolloverRefused, match="does not load"):
        await start_rollover(first, ring, clocks.wall)
    # --force: the broken key goes, a new one signs at once.
    ring = await start_rollover(first, ring, clocks.wall, force=True)
    assert ring.active is not None and ring.broken == () and len(ring.keys) == 1
    # The parent still shows the DS of the key that broke, naming no key of the zone now:
    # the status says first that the registrar needs the new key's DS at once.
    gone = ds_of(ZoneKey(DOMAIN, new_key_pem()))
    status = rollover_status(ring, TIMING, clocks.wall, [gone])
    assert status.step is RolloverStep.SIGNED
    assert f"names no key of {DOMAIN}" in status.advice[0]
    assert f"(tag {ring.active.key.key_tag}): give it now" in status.advice[0]
    ours = rollover_status(ring, TIMING, clocks.wall, [ds_of(ring.active.key)])
    assert not any("names no key" in line for line in ours.advice)
    clocks.advance(ZONE_CACHE_SECONDS)
    tag = ring.active.key.key_tag
    assert await served(zones) == ([tag], [tag], [tag])


async def test_cds_asks_for_the_ds_removal_while_signed_or_says_nothing(
    stores: tuple[Store, Store],
) -> None:
    first, _ = stores
    clocks = Clocks()

    def zones(mode: CdsMode, signing: SigningPolicy | None = DEFAULT_SIGNING) -> HostedZones:
        return HostedZones(
            first,
            mail_host=f"mail.{DOMAIN}",
            signing=signing,
            rollover=TIMING,
            cds=mode,
            clock=lambda: clocks.mono,
            wall_clock=lambda: clocks.wall,
        )

    # RFC 8078 §4: the delete request, alone in each RRset, signed by the key the parent's
    # DS names, so the parent can believe it.
    leaving = zones("delete")
    keys, _ = split(await ask(leaving, DOMAIN, "DNSKEY"), dns.rdatatype.DNSKEY)
    for rtype, value in (("CDS", "0 0 0 00"), ("CDNSKEY", "0 3 0 AA==")):
        rrset, sigs = split(await ask(leaving, DOMAIN, rtype), dns.rdatatype.from_text(rtype))
        assert [r.to_text() for r in rrset] == [value]
        dns.dnssec.validate(rrset, sigs, {ORIGIN: keys})
    # Off, or unsigned: no CDS and no CDNSKEY (the name has no such RRset).
    for quiet in (zones("off"), zones("off", None)):
        for rtype in ("CDS", "CDNSKEY"):
            reply = await ask(quiet, DOMAIN, rtype)
            assert reply.rcode() == dns.rcode.NOERROR and reply.answer == []
    with pytest.raises(ZoneError, match="signed only"):
        StaticZone(DOMAIN, cds=[(dns.rdatatype.CDS, [b"\0\0\0\0\0"])])
