"""SPF (RFC 7208) on records these tests serve from a loopback DNS server."""

from __future__ import annotations

import ipaddress

import pytest

from pillarbox.dns.resolver import DnsResolver
from pillarbox.policy import spf
from pillarbox.policy.spf import SpfLimits, SpfResult
from pillarbox.testing.dnszone import ZoneRecord, serve_any_names, serve_records

ZONE = [
    ZoneRecord("pass.test", "TXT", "v=spf1 ip4:192.0.2.0/24 -all"),
    ZoneRecord("fail.test", "TXT", "v=spf1 -all exp=why.fail.test"),
    ZoneRecord("why.fail.test", "TXT", "%{i} may not send for %{d} (%{l})"),
    ZoneRecord("soft.test", "TXT", "v=spf1 ~all"),
    ZoneRecord("neutral.test", "TXT", "v=spf1 ?all"),
    ZoneRecord("nomatch.test", "TXT", "v=spf1 ip4:198.51.100.1"),
    ZoneRecord("a.test", "TXT", "v=spf1 a a:other.a.test/30 -all"),
    ZoneRecord("a.test", "A", "192.0.2.10"),
    ZoneRecord("other.a.test", "A", "198.51.100.5"),
    ZoneRecord("mx.test", "TXT", "v=spf1 mx -all"),
    ZoneRecord("mx.test", "MX", "10 mail.mx.test."),
    ZoneRecord("mail.mx.test", "A", "192.0.2.20"),
    ZoneRecord("mail.mx.test", "AAAA", "2001:db8::20"),
    ZoneRecord("incl.test", "TXT", "v=spf1 include:pass.test -all"),
    ZoneRecord("redir.test", "TXT", "v=spf1 redirect=pass.test"),
    ZoneRecord("redir-none.test", "TXT", "v=spf1 redirect=nothing.test"),
    ZoneRecord("macro.test", "TXT", "v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all"),
    ZoneRecord("1.2.0.192.jack._spf.macro.test", "A", "127.0.0.2"),
    ZoneRecord("ptr.test", "TXT", "v=spf1 ptr -all"),
    ZoneRecord("30.2.0.192.in-addr.arpa", "PTR", "host.ptr.test."),
    ZoneRecord("host.ptr.test", "A", "192.0.2.30"),
    ZoneRecord("two.test", "TXT", "v=spf1 -all"),
    ZoneRecord("two.test", "TXT", "v=spf1 +all"),
    ZoneRecord("syntax.test", "TXT", "v=spf1 ip4:300.1.1.1 -all"),
    ZoneRecord("unknown.test", "TXT", "v=spf1 foo:bar -all"),
    ZoneRecord("void.test", "TXT", "v=spf1 a:n1.test a:n2.test a:n3.test -all"),
    ZoneRecord("loop.test", "TXT", "v=spf1 include:loop.test -all"),
    ZoneRecord("temp.test", "TXT", "v=spf1 include:down.test -all"),
    ZoneRecord("exp-macro.test", "TXT", "v=spf1 -all exp=%{r}.test"),
    ZoneRecord("ip6.test", "TXT", "v=spf1 ip6:2001:db8::/32 -all"),
    ZoneRecord("helo.test", "TXT", "v=spf1 a -all"),
    ZoneRecord("helo.test", "A", "192.0.2.40"),
]

CASES = [
    # (client ip, domain, local part, result)
    ("192.0.2.1", "pass.test", "a", SpfResult.PASS),
    ("198.51.100.1", "pass.test", "a", SpfResult.FAIL),
    ("192.0.2.1", "soft.test", "a", SpfResult.SOFTFAIL),
    ("192.0.2.1", "neutral.test", "a", SpfResult.NEUTRAL),
    ("192.0.2.1", "nomatch.test", "a", SpfResult.NEUTRAL),  # §4.7: default is neutral
    ("192.0.2.10", "a.test", "a", SpfResult.PASS),
    ("198.51.100.6", "a.test", "a", SpfResult.PASS),  # other.a.test/30
    ("198.51.100.9", "a.test", "a", SpfResult.FAIL),
    ("192.0.2.20", "mx.test", "a", SpfResult.PASS),
    ("2001:db8::20", "mx.test", "a", SpfResult.PASS),
    ("::ffff:192.0.2.20", "mx.test", "a", SpfResult.PASS),  # IPv4-mapped is checked as IPv4
    ("192.0.2.5", "incl.test", "a", SpfResult.PASS),
    ("203.0.113.5", "incl.test", "a", SpfResult.FAIL),
    ("192.0.2.5", "redir.test", "a", SpfResult.PASS),
    ("192.0.2.5", "redir-none.test", "a", SpfResult.PERMERROR),  # §6.1
    ("192.0.2.1", "macro.test", "jack", SpfResult.PASS),
    ("192.0.2.1", "macro.test", "jill", SpfResult.FAIL),
    ("192.0.2.30", "ptr.test", "a", SpfResult.PASS),
    ("192.0.2.31", "ptr.test", "a", SpfResult.FAIL),
    ("192.0.2.1", "two.test", "a", SpfResult.PERMERROR),  # §4.5
    ("192.0.2.1", "syntax.test", "a", SpfResult.PERMERROR),
    ("192.0.2.1", "unknown.test", "a", SpfResult.PERMERROR),
    ("192.0.2.1", "void.test", "a", SpfResult.PERMERROR),  # §4.6.4: 3 void lookups
    ("192.0.2.1", "loop.test", "a", SpfResult.PERMERROR),  # the 10-term limit ends a loop
    ("192.0.2.1", "temp.test", "a", SpfResult.TEMPERROR),
    ("192.0.2.1", "exp-macro.test", "a", SpfResult.PERMERROR),  # %{r} only in explanations
    ("2001:db8:1::1", "ip6.test", "a", SpfResult.PASS),
    ("192.0.2.1", "ip6.test", "a", SpfResult.FAIL),
    ("192.0.2.1", "absent.test", "a", SpfResult.NONE),  # NXDOMAIN
    ("192.0.2.1", "no-dots", "a", SpfResult.NONE),  # §4.3: not a multi-label name
]


@pytest.mark.parametrize(("ip", "domain", "local", "expected"), CASES)
async def test_check_host(ip: str, domain: str, local: str, expected: SpfResult) -> None:
    async with serve_records(ZONE, failing=["down.test"]) as resolver:
        outcome = await spf.check_host(resolver, ip, domain, f"{local}@{domain}")
    assert outcome.result is expected, outcome


async def test_fail_carries_the_expanded_explanation() -> None:
    async with serve_records(ZONE) as resolver:
        outcome = await spf.check_host(resolver, "203.0.113.7", "fail.test", "bob@fail.test")
    assert outcome.result is SpfResult.FAIL
    assert outcome.explanation == "203.0.113.7 may not send for fail.test (bob)"


async def test_null_sender_checks_the_helo_identity() -> None:
    async with serve_records(ZONE) as resolver:
        good = await spf.check_mail_from(resolver, "192.0.2.40", "", "helo.test")
        bad = await spf.check_mail_from(resolver, "192.0.2.41", "", "helo.test")
        literal = await spf.check_helo(resolver, "192.0.2.40", "[192.0.2.40]")
    assert (good.result, bad.result, literal.result) == (
        SpfResult.PASS,
        SpfResult.FAIL,
        SpfResult.NONE,
    )


async def test_a_missing_local_part_becomes_postmaster() -> None:
    zone = [
        ZoneRecord("pm.test", "TXT", "v=spf1 exists:%{l}.pm.test -all"),
        ZoneRecord("postmaster.pm.test", "A", "127.0.0.2"),
    ]
    async with serve_records(zone) as resolver:
        outcome = await spf.check_mail_from(resolver, "192.0.2.1", "@pm.test", "helo.test")
    assert outcome.result is SpfResult.PASS


async def test_overall_timeout_is_temperror() -> None:
    async with serve_records(ZONE, failing=["down.test"]) as resolver:
        limits = SpfLimits(timeout=0.000_001)
        outcome = await spf.check_host(resolver, "192.0.2.1", "mx.test", "a@mx.test", limits=limits)
    assert outcome.result is SpfResult.TEMPERROR


async def test_more_than_ten_mx_records_is_permerror() -> None:
    zone = [ZoneRecord("many.test", "TXT", "v=spf1 mx -all")] + [
        ZoneRecord("many.test", "MX", f"{n} mx{n}.many.test.") for n in range(11)
    ]
    async with serve_records(zone) as resolver:
        outcome = await spf.check_host(resolver, "192.0.2.1", "many.test", "a@many.test")
    assert outcome.result is SpfResult.PERMERROR


@pytest.mark.parametrize(
    "record",
    [
        "v=spf1 a:",
        "v=spf1 ip4:192.0.2.1/33",
        "v=spf1 ip4:192.0.2.1/08",
        "v=spf1 ip6:192.0.2.1",
        "v=spf1 redirect=a.test redirect=b.test",
        "v=spf1 exp=a.test exp=b.test",
        "v=spf1 include:%{z}.test",
        "v=spf1 a:example.123",
        "v=spf1 all:x",
        "v=spf1 -all foo=%",
        # Digits other than ASCII ones (found by fuzz/policy_spf.py: "²" made int() raise
        # ValueError; "٣" would have been read as 3): RFC 7208 §5.6 lengths are ASCII DIGITs.
        "v=spf1 ip6:2001:db8::/3\u00b2 -all",
        "v=spf1 ip4:192.0.2.0/2\u0663 -all",
        "v=spf1 a/2\u0663 -all",
    ],
)
def test_malformed_records_are_rejected(record: str) -> None:
    with pytest.raises(spf._PermError):
        spf.parse_record(record)


@pytest.mark.parametrize(
    "record",
    ["v=spf1", "v=spf1  -all", "v=spf1 a/24//64 mx:x.test/24 -all", "v=spf1 -all moo=%{d}.x"],
)
def test_wellformed_records_parse(record: str) -> None:
    spf.parse_record(record)


def test_parsed_records_are_kept_by_text_and_bounded() -> None:
    first = spf.parse_record("v=spf1 ip4:192.0.2.0/24 -all")
    assert spf.parse_record("v=spf1 ip4:192.0.2.0/24 -all") is first
    other = spf.parse_record("v=spf1 ip4:192.0.2.0/25 -all")
    assert (other.mechanisms[0].cidr4, first.mechanisms[0].cidr4) == (25, 24)
    for n in range(spf.PARSE_CACHE_SIZE + 10):
        spf.parse_record(f"v=spf1 include:n{n}.test -all")
    assert spf.parse_record.cache_info().currsize == spf.PARSE_CACHE_SIZE
    for _ in range(2):  # a malformed record is refused every time, never cached as good
        with pytest.raises(spf._PermError):
            spf.parse_record("v=spf1 ip4:192.0.2.300 -all")


def test_networks_are_kept_by_address_family_and_prefix() -> None:
    v4 = ipaddress.ip_address("192.0.2.10")
    v6 = ipaddress.ip_address("2001:db8::1")
    assert spf._in_network(v4, "192.0.2.0", 24)
    assert not spf._in_network(v4, "192.0.2.0", 30)  # same address, another prefix
    assert not spf._in_network(v6, "192.0.2.0", 64)  # another family (a /64 of an ip6 check)
    assert spf._in_network(v6, "2001:db8::", 32)
    assert spf._in_network(v4, "192.0.2.10", None) and not spf._in_network(v4, "192.0.2.11", None)
    assert not spf._in_network(v4, "not an address", 24)
    for n in range(spf.PARSE_CACHE_SIZE + 10):
        spf._in_network(v4, f"10.{n // 256}.{n % 256}.0", 24)
    assert spf._network.cache_info().currsize == spf.PARSE_CACHE_SIZE


@pytest.mark.parametrize(
    ("record", "owner", "expected"),
    [
        # RFC 7208 §7.1: a domain-spec may hold any visible character but "%" (OpenSPF's
        # a-colon-domain and mx-colon-domain): queried as written, not refused as a bad name.
        ("v=spf1 a:foo:bar/baz.odd.test -all", "foo:bar/baz.odd.test", SpfResult.PASS),
        ("v=spf1 mx:foo:bar/baz.odd.test -all", "foo:bar/baz.odd.test", SpfResult.PASS),
        # §7.1: "%%" expands to "%", "%_" to a space, "%-" to "%20" (macro-mania-in-domain).
        (
            "v=spf1 a:macro%%percent%_%_space%-url-space.odd.test -all",
            "macro%percent  space%20url-space.odd.test",
            SpfResult.PASS,
        ),
        # The same names, but the client is not the address they hold.
        ("v=spf1 a:foo:bar/baz.odd.test -all", "foo:bar/baz.odd.test", SpfResult.FAIL),
    ],
)
async def test_domain_specs_with_any_visible_character(
    record: str, owner: str, expected: SpfResult
) -> None:
    address = "192.0.2.50" if expected is SpfResult.PASS else "192.0.2.99"
    zone = [
        ZoneRecord("odd.test", "TXT", record),
        ZoneRecord(owner, "A", "192.0.2.50"),
        ZoneRecord(owner, "MX", f"0 {owner}."),
    ]
    async with serve_any_names(zone) as port:
        resolver = DnsResolver(nameserver=f"127.0.0.1:{port}", timeout=2.0)
        outcome = await spf.check_host(resolver, address, "odd.test", "a@odd.test")
    assert outcome.result is expected, outcome
