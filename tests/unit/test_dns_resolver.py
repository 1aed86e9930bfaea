"""DnsResolver against the authoritative server on loopback: real UDP/TCP, no mocks."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator

import pytest

from pillarbox.dns import resolver as resolver_module
from pillarbox.dns.authoritative import SoaSettings, StaticZone, StaticZones, serve_zones
from pillarbox.dns.records import DnsRecord
from pillarbox.dns.resolver import (
    CacheLimits,
    DnsResolver,
    DnsTemporaryError,
    MxStatus,
    parse_nameserver,
)
from pillarbox.errors import ConfigError, InvalidName
from pillarbox.testing.dnszone import ZoneRecord, serve_records

RECORDS = [
    DnsRecord("a.test", "MX", "20 backup.a.test.", 300),
    DnsRecord("a.test", "MX", "10 mx1.a.test.", 300),
    DnsRecord("a.test", "MX", "10 mx2.a.test.", 300),
    DnsRecord("a.test", "MX", "10 MX3.a.test.", 300),
    DnsRecord("a.test", "MX", "5 first.a.test.", 300),
    DnsRecord("mx1.a.test", "A", "127.0.0.1", 300),
    DnsRecord("mx1.a.test", "AAAA", "::1", 300),
    DnsRecord("mx1.a.test", "A", "127.0.0.2", 300),
    DnsRecord("v4only.a.test", "A", "127.0.0.3", 300),
    DnsRecord("implicit.a.test", "A", "127.0.0.4", 300),
    DnsRecord("null.a.test", "MX", "0 .", 300),
    DnsRecord("mixed.a.test", "MX", "0 .", 300),
    DnsRecord("mixed.a.test", "MX", "10 mx1.a.test.", 300),
    DnsRecord("a.test", "TXT", "v=spf1 mx -all", 300),
    DnsRecord("a.test", "TXT", "other", 300),
    DnsRecord("k._domainkey.a.test", "TXT", "v=DKIM1; k=rsa; p=" + "Q" * 600, 300),
    DnsRecord("big.a.test", "TXT", "y" * 3000, 300),  # over 1232 octets: TC, then TCP
    DnsRecord("1.0.0.127.in-addr.arpa", "PTR", "mx1.a.test.", 300),
]
SOA = SoaSettings(minimum=120)


class CountingZones:
    """StaticZones that counts the queries reaching the server, to observe the cache."""

    def __init__(self, zones: StaticZones) -> None:
        self.zones = zones
        self.queries = 0

    async def zone_for(self, name: str) -> StaticZone | None:
        self.queries += 1
        if name.startswith("servfail."):
            raise RuntimeError("source failure")
        return await self.zones.zone_for(name)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def source() -> CountingZones:
    return CountingZones(
        StaticZones.from_records(RECORDS, origins=["a.test", "127.in-addr.arpa"], soa=SOA)
    )


@pytest.fixture
async def port(source: CountingZones) -> AsyncIterator[int]:
    async with serve_zones(source) as server:
        yield server.port


def resolver(port: int, **kwargs: object) -> DnsResolver:
    return DnsResolver(nameserver=f"127.0.0.1:{port}", timeout=2.0, **kwargs)  # type: ignore[arg-type]


async def test_mx_sorted_by_preference(port: int) -> None:
    result = await resolver(port).mx("A.test.")
    assert result.status is MxStatus.FOUND
    assert result.domain == "a.test"
    assert [h.preference for h in result.hosts] == [5, 10, 10, 10, 20]
    assert result.targets[0] == "first.a.test"
    assert result.targets[-1] == "backup.a.test"
    assert set(result.targets[1:4]) == {"mx1.a.test", "mx2.a.test", "mx3.a.test"}  # lowercased
    assert not result.permanent


async def test_equal_preferences_randomised_by_injected_rng(port: int) -> None:
    seen = set()
    r = resolver(port, rng=random.Random(7))
    for _ in range(60):  # served from the cache after the first: shuffled anew each time
        seen.add((await r.mx("a.test")).targets[1:4])
    assert seen == set(itertools.permutations(["mx1.a.test", "mx2.a.test", "mx3.a.test"]))
    one = await resolver(port, rng=random.Random(3)).mx("a.test")
    two = await resolver(port, rng=random.Random(3)).mx("a.test")
    assert one.targets == two.targets  # the same seed, the same order: reproducible tests


async def test_no_mx_records_means_implicit_mx(port: int) -> None:
    r = resolver(port)
    result = await r.mx("implicit.a.test")
    assert result.status is MxStatus.NO_MX
    assert result.targets == ("implicit.a.test",)
    assert await r.addresses(result.targets[0]) == ["127.0.0.4"]


async def test_nxdomain_is_permanent(port: int) -> None:
    result = await resolver(port).mx("nowhere.a.test")
    assert result.status is MxStatus.NO_DOMAIN
    assert result.permanent
    assert result.targets == ()


async def test_null_mx(port: int) -> None:
    r = resolver(port)
    null = await r.mx("null.a.test")
    assert null.status is MxStatus.NULL_MX
    assert null.permanent
    assert null.targets == ()
    mixed = await r.mx("mixed.a.test")  # "." beside a real host: the "." is skipped
    assert mixed.status is MxStatus.FOUND
    assert mixed.targets == ("mx1.a.test",)


async def test_invalid_names_are_answered_without_asking(port: int, source: CountingZones) -> None:
    r = resolver(port)
    for name in ("", "a..test", "x" * 64 + ".test"):
        assert (await r.mx(name)).status is MxStatus.NO_DOMAIN
        assert await r.addresses(name) == []
        assert await r.txt(name) == []
    assert source.queries == 0


async def test_server_failure_and_refusal_are_temporary(port: int) -> None:
    r = resolver(port)
    for domain in ("servfail.a.test", "not-served.example"):  # SERVFAIL; REFUSED
        result = await r.mx(domain)
        assert result.status is MxStatus.TEMPORARY, domain
        assert not result.permanent
        assert "server failure" in result.reason
        with pytest.raises(DnsTemporaryError):
            await r.addresses(domain)


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A UDP port on loopback where queries go unanswered."""
    loop = asyncio.get_running_loop()
    silent, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    yield silent.get_extra_info("sockname")[1]
    silent.close()


async def test_timeout_is_temporary(silent_port: int) -> None:
    loop = asyncio.get_running_loop()
    r = DnsResolver(nameserver=f"127.0.0.1:{silent_port}", timeout=0.3)
    started = loop.time()
    result = await r.mx("a.test")
    assert result.status is MxStatus.TEMPORARY
    assert "0.3s" in result.reason
    with pytest.raises(DnsTemporaryError):
        await r.txt("a.test")
    assert loop.time() - started < 3


async def test_addresses_both_families_in_configured_order(port: int) -> None:
    assert await resolver(port).addresses("mx1.a.test") == ["::1", "127.0.0.1", "127.0.0.2"]
    v4_first = resolver(port, prefer_ipv6=False)
    assert await v4_first.addresses("mx1.a.test") == ["127.0.0.1", "127.0.0.2", "::1"]
    assert await v4_first.addresses("v4only.a.test") == ["127.0.0.3"]
    assert await v4_first.addresses("nowhere.a.test") == []


async def test_txt_records_joined_and_long_ones_over_tcp(port: int) -> None:
    r = resolver(port)
    assert sorted(await r.txt("a.test")) == [b"other", b"v=spf1 mx -all"]
    assert await r.txt("k._domainkey.a.test") == [b"v=DKIM1; k=rsa; p=" + b"Q" * 600]
    assert await r.txt("big.a.test") == [b"y" * 3000]  # truncated over UDP, complete over TCP
    assert await r.txt("mx1.a.test") == []


async def test_ptr_and_generic_lookup(port: int) -> None:
    r = resolver(port)
    assert await r.ptr("127.0.0.1") == ["mx1.a.test"]
    assert await r.ptr("127.0.0.9") == []
    with pytest.raises(InvalidName):
        await r.ptr("not-an-ip")
    assert sorted(await r.lookup("mixed.a.test", "mx")) == ["0 .", "10 mx1.a.test."]
    with pytest.raises(InvalidName):
        await r.lookup("a.test", "NOSUCHTYPE")


async def test_cache_respects_ttl(port: int, source: CountingZones) -> None:
    clock = Clock()
    r = resolver(port, clock=clock)
    assert await r.addresses("v4only.a.test") == ["127.0.0.3"]  # A: TTL 300; AAAA: NODATA, 120
    asked = source.queries
    clock.now += 119
    await r.addresses("v4only.a.test")
    assert source.queries == asked
    clock.now += 2
    await r.addresses("v4only.a.test")
    assert source.queries == asked + 1  # the NODATA for AAAA expired, the A did not
    clock.now += 180
    assert await r.addresses("v4only.a.test") == ["127.0.0.3"]
    assert source.queries == asked + 3  # the A expired at 300, the AAAA again at 241


async def test_negative_answers_cached_for_soa_minimum(port: int, source: CountingZones) -> None:
    clock = Clock()
    r = resolver(port, clock=clock)
    await r.mx("nowhere.a.test")  # NXDOMAIN
    await r.mx("implicit.a.test")  # NODATA
    asked = source.queries
    clock.now += 119
    assert (await r.mx("nowhere.a.test")).status is MxStatus.NO_DOMAIN
    assert (await r.mx("implicit.a.test")).status is MxStatus.NO_MX
    assert source.queries == asked  # RFC 2308: min(SOA TTL 3600, MINIMUM 120)
    clock.now += 2
    await r.mx("nowhere.a.test")
    assert source.queries == asked + 1


async def test_cache_caps_and_bound(port: int, source: CountingZones) -> None:
    clock = Clock()
    capped = resolver(
        port, clock=clock, cache=CacheLimits(max_ttl=10, max_negative_ttl=5, max_entries=2)
    )
    await capped.mx("a.test")
    await capped.mx("nowhere.a.test")
    asked = source.queries
    clock.now += 6  # past the negative cap, within the positive one
    await capped.mx("a.test")
    await capped.mx("nowhere.a.test")
    assert source.queries == asked + 1
    clock.now += 5  # past the positive cap
    await capped.mx("a.test")
    assert source.queries == asked + 2
    for name in ("mx1.a.test", "mx2.a.test", "first.a.test"):  # evicts the least recent
        await capped.txt(name)
    await capped.mx("a.test")
    assert source.queries == asked + 6


async def test_temporary_failures_are_not_cached(port: int, source: CountingZones) -> None:
    r = resolver(port)
    await r.mx("servfail.a.test")
    asked = source.queries
    await r.mx("servfail.a.test")
    assert source.queries > asked


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("", None),
        ("  ", None),
        ("192.0.2.1", ("192.0.2.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("::1", ("::1", 53)),
        ("[2001:db8::1]:5300", ("2001:db8::1", 5300)),
        ("[::1]", ("::1", 53)),
    ],
)
def test_parse_nameserver(text: str, parsed: tuple[str, int] | None) -> None:
    assert parse_nameserver(text) == parsed


@pytest.mark.parametrize(
    "text", ["dns.example", "127.0.0.1:0", "127.0.0.1:x", "[::1", "[::1]x", "127.0.0.1:²"]
)
def test_parse_nameserver_rejects(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_nameserver(text)
    assert info.value.key == "dns.nameserver"


async def test_spellings_of_a_name_share_its_cached_answer(
    port: int, source: CountingZones
) -> None:
    r = resolver(port)
    first = await r.txt("A.Test.")
    asked = source.queries
    for spelling in ("a.test", "A.TEST", " a.test. "):
        assert await r.txt(spelling) == first
    assert source.queries == asked
    # Each text parses to its own name: another name is asked anew, not answered from a.test.
    assert await r.txt("k._domainkey.a.test") != first
    assert source.queries == asked + 1


def test_parsed_names_are_kept_by_text_and_bounded() -> None:
    assert resolver_module._name("Sub.A.test") is resolver_module._name("Sub.A.test")
    assert resolver_module._name("a\\.test") != resolver_module._name("a.test")
    assert resolver_module._name("a..test") is None  # an empty label: no such name
    for n in range(resolver_module.NAME_CACHE_SIZE + 10):
        resolver_module._name(f"n{n}.test")
    assert resolver_module._name.cache_info().currsize == resolver_module.NAME_CACHE_SIZE


async def test_concurrent_identical_lookups_share_one_query(
    port: int, source: CountingZones
) -> None:
    r = resolver(port, cache=CacheLimits(max_entries=0))  # no cache: only the sharing can save
    answers = await asyncio.gather(*(r.txt("a.test") for _ in range(10)))
    assert source.queries == 1
    assert all(sorted(a) == [b"other", b"v=spf1 mx -all"] for a in answers)
    await asyncio.gather(r.txt("a.test"), r.lookup("a.test", "MX"), r.txt("k._domainkey.a.test"))
    assert source.queries == 4  # a name/type pair apart is a query apart; the last one landed
    failures = await asyncio.gather(
        *(r.txt("servfail.a.test") for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(f, DnsTemporaryError) for f in failures)
    assert source.queries == 5
    with pytest.raises(DnsTemporaryError):
        await r.txt("servfail.a.test")  # a shared failure is not kept either
    assert source.queries == 6


async def test_a_caller_giving_up_leaves_the_shared_query_to_the_others(
    port: int, source: CountingZones
) -> None:
    r = resolver(port)
    first = asyncio.ensure_future(r.txt("a.test"))
    second = asyncio.ensure_future(r.txt("a.test"))
    await asyncio.sleep(0)  # both are waiting on the one query
    first.cancel()
    assert sorted(await second) == [b"other", b"v=spf1 mx -all"]
    assert first.cancelled()
    assert source.queries == 1


async def test_the_query_is_cancelled_when_every_caller_gives_up(silent_port: int) -> None:
    r = DnsResolver(nameserver=f"127.0.0.1:{silent_port}", timeout=30)
    callers = [asyncio.ensure_future(r.txt("a.test")) for _ in range(3)]
    await asyncio.sleep(0.01)
    for caller in callers:
        caller.cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    await asyncio.sleep(0.01)
    assert asyncio.all_tasks() == {asyncio.current_task()}  # no query left behind


async def test_a_cname_chain_the_server_left_unfinished_is_followed() -> None:
    """An authoritative server answers a CNAME leaving its zone with the CNAME alone; the
    addresses come from following it, secure only if every link was (RFC 7672 §2.1.2)."""
    records = [
        ZoneRecord("to-plain.signed.test", "CNAME", "host.plain.test."),
        ZoneRecord("host.plain.test", "A", "127.0.0.7"),
        ZoneRecord("to-signed.signed.test", "CNAME", "hop.other.test."),
        ZoneRecord("hop.other.test", "CNAME", "host.other.test."),
        ZoneRecord("host.other.test", "A", "127.0.0.8"),
        ZoneRecord("to-nowhere.signed.test", "CNAME", "gone.plain.test."),
        ZoneRecord("loop-a.signed.test", "CNAME", "loop-b.other.test."),
        ZoneRecord("loop-b.other.test", "CNAME", "loop-a.signed.test."),
    ]
    async with serve_records(records, secure=["signed.test", "other.test"]) as resolver:
        insecure = await resolver.host_addresses("to-plain.signed.test")
        assert insecure.addresses == ("127.0.0.7",) and not insecure.authentic
        assert insecure.canonical == "host.plain.test"
        secure = await resolver.host_addresses("to-signed.signed.test")
        assert secure.addresses == ("127.0.0.8",) and secure.authentic
        assert secure.canonical == "host.other.test"
        assert (await resolver.host_addresses("to-nowhere.signed.test")).addresses == ()
        assert (await resolver.host_addresses("loop-a.signed.test")).addresses == ()
