"""The authoritative server: answers (through ``respond``, no sockets) and both transports."""

from __future__ import annotations

import asyncio
import struct

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from pillarbox.dns.authoritative import (
    ServerLimits,
    SoaSettings,
    StaticZone,
    StaticZones,
    ZoneError,
    respond,
    serve_zones,
)
from pillarbox.dns.records import DnsRecord

RECORDS = [
    DnsRecord("a.test", "MX", "10 mx.a.test.", 300),
    DnsRecord("mx.a.test", "A", "127.0.0.1", 300),
    DnsRecord("mx.a.test", "AAAA", "::1", 300),
    DnsRecord("a.test", "TXT", "v=spf1 mx -all", 300),
    DnsRecord("www.a.test", "CNAME", "mx.a.test.", 300),
    DnsRecord("out.a.test", "CNAME", "elsewhere.example.", 300),
    DnsRecord("dangling.a.test", "CNAME", "gone.a.test.", 300),
    DnsRecord("deep.below.a.test", "A", "127.0.0.2", 300),
    DnsRecord("_imaps._tcp.a.test", "SRV", "0 1 993 mx.a.test.", 300),
    DnsRecord("b.test", "MX", "10 mx.b.test.", 300),
    DnsRecord("mx.b.test", "A", "127.0.0.3", 300),
]
SOA = SoaSettings(ttl=3600, minimum=120)
ZONES = StaticZones.from_records(RECORDS, origins=["a.test", "b.test"], soa=SOA)


async def ask(name: str, rtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rtype)
    reply = await respond(ZONES, query.to_wire(), udp=True)
    assert reply is not None
    return dns.message.from_wire(reply)


def texts(message: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in message.answer for rd in rrset}


async def test_positive_answer_is_authoritative() -> None:
    reply = await ask("a.test", "MX")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert not reply.flags & dns.flags.RA
    assert texts(reply) == {"10 mx.a.test."}
    # RFC 1035 §3.3.9: the exchange's addresses come along.
    additional = {rd.to_text() for rrset in reply.additional for rd in rrset}
    assert additional == {"127.0.0.1", "::1"}


async def test_nxdomain_carries_soa_with_negative_ttl() -> None:
    reply = await ask("nope.a.test", "A")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.flags & dns.flags.AA
    assert reply.answer == []
    (soa,) = reply.authority
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa.name.to_text() == "a.test."
    assert soa.ttl == 120  # RFC 2308 §3: min(SOA TTL, MINIMUM)


async def test_nodata_for_existing_name_and_empty_non_terminal() -> None:
    for name in ("mx.a.test", "below.a.test"):  # owns A/AAAA; has only a name below it
        reply = await ask(name, "TXT")
        assert reply.rcode() == dns.rcode.NOERROR, name
        assert reply.answer == []
        assert [r.rdtype for r in reply.authority] == [dns.rdatatype.SOA]


async def test_names_outside_served_zones_are_refused() -> None:
    reply = await ask("example.com", "A")
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.flags & dns.flags.AA


async def test_a_dot_inside_a_label_is_no_separator() -> None:
    # RFC 1035 §5.1: "mx\\.a.test" is the two labels "mx.a" and "test", under no zone of ours;
    # "deep\\.below.a.test" is a name below a.test that does not exist. Neither is the name
    # its bare dots would spell (both of those have records).
    assert (await ask("mx\\.a.test", "A")).rcode() == dns.rcode.REFUSED
    below = await ask("deep\\.below.a.test", "A")
    assert below.rcode() == dns.rcode.NXDOMAIN
    assert below.answer == []


async def test_case_insensitive_and_question_case_echoed() -> None:
    reply = await ask("MX.A.Test", "a")
    assert texts(reply) == {"127.0.0.1"}
    assert reply.question[0].name.to_text() == "MX.A.Test."
    assert reply.answer[0].name.to_text() == "MX.A.Test."


async def test_cname_followed_inside_zone_and_left_outside() -> None:
    reply = await ask("www.a.test", "A")
    assert [r.rdtype for r in reply.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
    reply = await ask("out.a.test", "A")
    assert texts(reply) == {"elsewhere.example."}
    assert reply.rcode() == dns.rcode.NOERROR
    reply = await ask("www.a.test", "CNAME")
    assert texts(reply) == {"mx.a.test."}
    reply = await ask("dangling.a.test", "A")  # RFC 6604: the RCODE of the chain's end
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert texts(reply) == {"gone.a.test."}
    assert [r.rdtype for r in reply.authority] == [dns.rdatatype.SOA]


async def test_apex_has_soa_and_ns() -> None:
    soa = await ask("b.test", "SOA")
    assert [rd.to_text() for rd in soa.answer[0]] == [
        "ns.b.test. hostmaster.b.test. 1 3600 900 1209600 120"
    ]
    assert texts(await ask("b.test", "NS")) == {"ns.b.test."}


async def test_any_returns_every_rrset() -> None:
    reply = await ask("a.test", "ANY")
    types = {rrset.rdtype for rrset in reply.answer}
    assert {dns.rdatatype.MX, dns.rdatatype.TXT, dns.rdatatype.SOA, dns.rdatatype.NS} <= types


async def test_zone_transfer_refused() -> None:
    assert (await ask("a.test", "AXFR")).rcode() == dns.rcode.REFUSED


async def test_malformed_and_odd_packets() -> None:
    query = dns.message.make_query("a.test", "A")
    wire = query.to_wire()
    formerr = await respond(ZONES, wire[:14], udp=True)  # header, then a cut question
    assert formerr is not None
    assert formerr[:2] == wire[:2]
    assert dns.message.from_wire(formerr).rcode() == dns.rcode.FORMERR
    assert await respond(ZONES, wire[:5], udp=True) is None  # no header: dropped
    response = bytearray(wire)
    response[2] |= 0x80  # QR: a response is never answered
    assert await respond(ZONES, bytes(response), udp=True) is None
    query.set_opcode(dns.opcode.STATUS)
    notimp = await respond(ZONES, query.to_wire(), udp=True)
    assert notimp is not None
    assert dns.message.from_wire(notimp).rcode() == dns.rcode.NOTIMP


async def test_edns_version_other_than_zero_gets_badvers() -> None:
    query = dns.message.make_query("a.test", "A", use_edns=1, payload=1232)
    reply = await respond(ZONES, query.to_wire(), udp=True)
    assert reply is not None
    assert dns.message.from_wire(reply).rcode() == dns.rcode.BADVERS


BIG = StaticZones.from_records(
    [DnsRecord("big.test", "TXT", f"{i:03d}" + "x" * 250, 60) for i in range(8)],
    origins=["big.test"],
)


async def test_udp_truncation_depends_on_edns_payload() -> None:
    query = dns.message.make_query("big.test", "TXT")  # about 2 KiB of answer
    small = await respond(BIG, query.to_wire(), udp=True)
    assert small is not None
    truncated = dns.message.from_wire(small)
    assert truncated.flags & dns.flags.TC
    assert truncated.answer == []
    assert len(small) <= 512
    edns = dns.message.make_query("big.test", "TXT", use_edns=0, payload=4096)
    capped = await respond(BIG, edns.to_wire(), udp=True)  # our 1232 wins over the client's
    assert capped is not None
    assert dns.message.from_wire(capped).flags & dns.flags.TC
    whole = await respond(BIG, edns.to_wire(), udp=True, udp_payload=4096)
    assert whole is not None
    assert len(dns.message.from_wire(whole).answer[0]) == 8
    over_tcp = await respond(BIG, query.to_wire(), udp=False)
    assert over_tcp is not None
    assert not dns.message.from_wire(over_tcp).flags & dns.flags.TC


async def test_failing_source_gives_servfail() -> None:
    class Broken:
        async def zone_for(self, name: str) -> StaticZone | None:
            raise RuntimeError("store down")

    query = dns.message.make_query("a.test", "A")
    reply = await respond(Broken(), query.to_wire(), udp=True)
    assert reply is not None
    assert dns.message.from_wire(reply).rcode() == dns.rcode.SERVFAIL


def test_zone_rejects_inconsistent_records() -> None:
    with pytest.raises(ZoneError, match="outside"):
        StaticZone("a.test", [DnsRecord("b.test", "A", "127.0.0.1")])
    with pytest.raises(ZoneError, match="CNAME"):
        StaticZone(
            "a.test",
            [DnsRecord("x.a.test", "A", "127.0.0.1"), DnsRecord("x.a.test", "CNAME", "a.test.")],
        )
    with pytest.raises(ZoneError, match="SOA"):
        StaticZone("a.test", [DnsRecord("a.test", "SOA", "a. b. 1 2 3 4 5")])
    with pytest.raises(ZoneError):
        StaticZone("a.test", [DnsRecord("a.test", "MX", "not a number")])
    with pytest.raises(ZoneError, match="none of the zones"):
        StaticZones.from_records([DnsRecord("c.test", "A", "127.0.0.1")], origins=["a.test"])


async def test_tcp_carries_several_queries_in_order() -> None:
    async with serve_zones(ZONES) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        queries = [
            dns.message.make_query(n, "A") for n in ("mx.a.test", "nope.a.test", "mx.b.test")
        ]
        # All three written at once, the lengths and messages in arbitrary chunks.
        stream = b"".join(struct.pack("!H", len(w)) + w for w in (q.to_wire() for q in queries))
        writer.write(stream[:1])
        await writer.drain()
        writer.write(stream[1:])
        replies = []
        for _ in queries:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            replies.append(dns.message.from_wire(await reader.readexactly(length)))
        writer.close()
        await writer.wait_closed()
    assert [r.id for r in replies] == [q.id for q in queries]
    assert [r.rcode() for r in replies] == [dns.rcode.NOERROR, dns.rcode.NXDOMAIN, 0]


async def test_tcp_idle_connection_is_closed() -> None:
    limits = ServerLimits(tcp_idle_timeout=0.2)
    async with serve_zones(ZONES, limits=limits) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"\x00")  # half a length prefix, then silence
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()


async def test_tcp_connection_limit() -> None:
    limits = ServerLimits(max_tcp_connections=1)
    async with serve_zones(ZONES, limits=limits) as server:
        _, first = await asyncio.open_connection("127.0.0.1", server.port)
        await asyncio.sleep(0.05)
        reader, second = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(reader.read(), 2) == b""  # closed at once
        first.close()
        second.close()


@pytest.mark.parametrize(
    ("authentic", "flags", "dnssec_ok", "ad"),
    [
        (True, dns.flags.AD, False, True),  # RFC 6840 §5.7: AD in the query asks for it
        (True, 0, True, True),  # DO asks for it too (RFC 4035 §3.2.3)
        (True, 0, False, False),  # RFC 6840 §5.8: neither: no AD
        (False, dns.flags.AD, True, False),  # an ordinary zone never sets it
    ],
)
async def test_ad_only_from_authentic_zones_when_asked(
    authentic: bool, flags: int, dnssec_ok: bool, ad: bool
) -> None:
    """RFC 4035 §3.1.6: a server may hold its own zone's data authentic (the DANE tests)."""
    zones = StaticZones(
        [StaticZone("s.test", [DnsRecord("s.test", "A", "127.0.0.9")], authentic=authentic)]
    )
    query = dns.message.make_query("s.test", "A", want_dnssec=dnssec_ok)
    query.flags |= flags
    reply = dns.message.from_wire(await respond(zones, query.to_wire(), udp=True) or b"")
    assert bool(reply.flags & dns.flags.AD) is ad
    assert texts(reply) == {"127.0.0.9"}
