"""Other DNS clients against the authoritative server: dnspython's plain queries, and dig."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from pillarbox.dns.authoritative import AuthoritativeServer, StaticZones, serve_zones
from pillarbox.dns.records import DnsRecord, required_records

HOSTED = required_records(
    "a.test",
    mail_host="mx.a.test",
    addresses=["127.0.0.1"],
    dkim={"sel": "v=DKIM1; p=" + "k" * 400},
)
ZONES = StaticZones.from_records(
    [*HOSTED.records, DnsRecord("big.a.test", "TXT", "t" * 4000)], origins=["a.test"]
)


@pytest.fixture
async def server() -> AsyncIterator[AuthoritativeServer]:
    async with serve_zones(ZONES) as running:
        yield running


def answers(message: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in message.answer for rd in rrset}


async def test_dnspython_udp_and_tcp(server: AuthoritativeServer) -> None:
    query = dns.message.make_query("A.Test", "MX")
    for send in (dns.query.udp, dns.query.tcp):
        reply = await asyncio.to_thread(send, query, "127.0.0.1", 2, server.port)
        assert reply.rcode() == dns.rcode.NOERROR
        assert reply.flags & dns.flags.AA
        assert answers(reply) == {"10 mx.a.test."}
        assert {rd.to_text() for rrset in reply.additional for rd in rrset} == {"127.0.0.1"}


async def test_dnspython_falls_back_to_tcp_on_truncation(server: AuthoritativeServer) -> None:
    query = dns.message.make_query("big.a.test", "TXT", use_edns=0, payload=1232)
    reply, used_tcp = await asyncio.to_thread(
        dns.query.udp_with_fallback, query, "127.0.0.1", 2, server.port
    )
    assert used_tcp
    assert b"".join(reply.answer[0][0].strings) == b"t" * 4000


async def test_dnspython_negative_answers(server: AuthoritativeServer) -> None:
    for name, rcode in (("nope.a.test", dns.rcode.NXDOMAIN), ("mx.a.test", dns.rcode.NOERROR)):
        query = dns.message.make_query(name, "TXT")
        reply = await asyncio.to_thread(dns.query.udp, query, "127.0.0.1", 2, server.port)
        assert reply.rcode() == rcode
        assert reply.answer == []
        assert reply.authority[0].rdtype == dns.rdatatype.SOA
    outside = dns.message.make_query("example.com", "A")
    reply = await asyncio.to_thread(dns.query.tcp, outside, "127.0.0.1", 2, server.port)
    assert reply.rcode() == dns.rcode.REFUSED


DIG = shutil.which("dig")
needs_dig = pytest.mark.skipif(DIG is None, reason="dig is not installed (Debian: bind9-dnsutils)")


async def dig(port: int, *args: str) -> str:
    assert DIG is not None
    process = await asyncio.create_subprocess_exec(
        DIG, "@127.0.0.1", "-p", str(port), "+time=2", "+tries=1", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 0, err.decode()
    return out.decode()


@needs_dig
async def test_dig_over_udp_and_tcp(server: AuthoritativeServer) -> None:
    for transport in ("+notcp", "+tcp"):
        out = await dig(server.port, transport, "+short", "_imaps._tcp.a.test", "SRV")
        assert out.strip() == "0 1 993 mx.a.test."
    dkim = await dig(server.port, "+short", "sel._domainkey.a.test", "TXT")
    assert dkim.strip() == '"v=DKIM1; p=' + "k" * 244 + '" "' + "k" * 156 + '"'


@needs_dig
async def test_dig_sees_flags_and_negative_answers(server: AuthoritativeServer) -> None:
    out = await dig(server.port, "nope.a.test", "A")
    assert "status: NXDOMAIN" in out
    assert " aa" in out.split("flags:")[1].split(";")[0]
    assert "SOA" in out.split("AUTHORITY SECTION")[1]
    out = await dig(server.port, "+ignore", "+bufsize=1232", "big.a.test", "TXT")
    assert " tc" in out.split("flags:")[1].split(";")[0]
    out = await dig(server.port, "elsewhere.example", "A")
    assert "status: REFUSED" in out
