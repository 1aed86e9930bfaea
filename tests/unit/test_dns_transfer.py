"""Zone transfers (RFC 5936 AXFR, RFC 1995 IXFR answered in full) with TSIG (RFC 8945), from
the live authoritative server on loopback, asked by dnspython's client: who may transfer, the
messages of a transfer (SOA first and last, a large zone in several messages signed as one
chain), and the UDP and IXFR cases."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
import struct
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import dns.asyncquery
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TSIG
import dns.tsig
import pytest

from pillarbox import config as cfg
from pillarbox.dns.authoritative import (
    AuthoritativeServer,
    SoaSettings,
    StaticZone,
    StaticZones,
    serve_zones,
)
from pillarbox.dns.records import DnsRecord
from pillarbox.dns.transfer import (
    AXFR,
    IXFR,
    MESSAGE_BUDGET,
    TransferPolicy,
    ZoneTransfers,
    ends_with_tsig,
    transfer_type,
    tsig_key,
)
from pillarbox.errors import ConfigError

SECRET = base64.b64encode(bytes(range(32))).decode()
KEY = dns.tsig.Key("xfr.a.test", SECRET, dns.tsig.HMAC_SHA256)
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
RECORDS = [
    DnsRecord("a.test", "MX", "10 mx.a.test.", 300),
    DnsRecord("mx.a.test", "A", "127.0.0.1", 300),
    DnsRecord("a.test", "TXT", "v=spf1 mx -all", 300),
    DnsRecord("_dmarc.a.test", "TXT", "v=DMARC1; p=quarantine", 300),
]
SERIAL = 1_800_000_000


def zone(records: Iterable[DnsRecord] = RECORDS) -> StaticZones:
    return StaticZones([StaticZone("a.test", records, soa=SoaSettings(serial=SERIAL))])


@pytest.fixture
async def server() -> AsyncIterator[AuthoritativeServer]:
    """The zone, transferable from loopback with :data:`KEY`."""
    zones = zone()
    policy = TransferPolicy(allowed=LOOPBACK, key=KEY)
    async with serve_zones(zones, transfers=ZoneTransfers(zones, policy)) as running:
        yield running


async def transfer(
    server: AuthoritativeServer, *, key: dns.tsig.Key | None = KEY, rdtype: str = "AXFR"
) -> list[dns.message.Message]:
    """The messages of a transfer of ``a.test``, their TSIG chain checked with ``key``."""
    keyring = None if key is None else {key.name: key}

    def run() -> list[dns.message.Message]:
        return list(
            dns.query.xfr(
                "127.0.0.1",
                "a.test",
                rdtype=dns.rdatatype.from_text(rdtype),
                port=server.port,
                keyring=keyring,
                keyname=None if key is None else key.name,
                keyalgorithm=dns.tsig.HMAC_SHA256,
                serial=SERIAL - 5,
                relativize=False,
                timeout=10,
                lifetime=10,
            )
        )

    return await asyncio.to_thread(run)


async def ask(
    server: AuthoritativeServer,
    qtype: str,
    *,
    key: dns.tsig.Key | None = None,
    udp: bool = False,
    name: str = "a.test",
) -> dns.message.Message:
    """One message answering a transfer query (the first, for a TCP transfer)."""
    query = dns.message.make_query(name, qtype)
    if key is not None:
        query.use_tsig(key)
    if udp:
        return await dns.asyncquery.udp(query, "127.0.0.1", port=server.port, timeout=5)
    return await dns.asyncquery.tcp(query, "127.0.0.1", port=server.port, timeout=5)


def records(messages: list[dns.message.Message]) -> list[tuple[str, str, str]]:
    return [
        (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rdata.to_text())
        for message in messages
        for rrset in message.answer
        for rdata in rrset
    ]


async def test_axfr_sends_the_zone_between_two_soas(server: AuthoritativeServer) -> None:
    messages = await transfer(server)
    sent = records(messages)
    # RFC 5936 §2.2: the SOA opens and closes the transfer, and is nowhere else.
    assert sent[0][1] == sent[-1][1] == "SOA" and sent[0] == sent[-1]
    assert [r for r in sent if r[1] == "SOA"] == [sent[0], sent[-1]]
    assert f" {SERIAL} " in sent[0][2]
    assert set(sent[1:-1]) == {
        ("a.test.", "MX", "10 mx.a.test."),
        ("mx.a.test.", "A", "127.0.0.1"),
        ("a.test.", "TXT", '"v=spf1 mx -all"'),
        ("_dmarc.a.test.", "TXT", '"v=DMARC1; p=quarantine"'),
        ("a.test.", "NS", "ns.a.test."),
    }
    assert all(m.had_tsig for m in messages)  # and dnspython verified each MAC


async def test_a_large_zone_goes_in_several_messages_signed_as_one_chain() -> None:
    many = [DnsRecord(f"r{n}.a.test", "TXT", "x" * 200, 300) for n in range(300)]
    zones = zone(RECORDS + many)
    policy = TransferPolicy(allowed=LOOPBACK, key=KEY)
    async with serve_zones(zones, transfers=ZoneTransfers(zones, policy)) as running:
        messages = await transfer(running)
    assert len(messages) >= 300 * 200 // MESSAGE_BUDGET
    assert len(records(messages)) == 2 + len(RECORDS) + 1 + len(many)
    # RFC 8945 §5.3.1: every message signed, each MAC covering the one before (dnspython's
    # xfr checks the chain: a broken link raises).
    assert all(m.had_tsig for m in messages)


async def test_ixfr_is_answered_with_the_whole_zone(server: AuthoritativeServer) -> None:
    # RFC 1995 §4: an AXFR-style answer to an IXFR from a client behind.
    sent = records(await transfer(server, rdtype="IXFR"))
    assert len(sent) == 2 + len(RECORDS) + 1


async def test_ixfr_of_a_client_up_to_date_gets_the_soa_alone(server: AuthoritativeServer) -> None:
    query = dns.message.make_query("a.test", "IXFR")
    soa = dns.rdtypes.ANY.SOA.SOA(
        dns.rdataclass.IN, dns.rdatatype.SOA, "ns.a.test.", "h.a.test.", SERIAL, 1, 1, 1, 1
    )
    query.authority.append(dns.rrset.from_rdata("a.test.", 300, soa))
    query.use_tsig(KEY)
    reply = await dns.asyncquery.tcp(query, "127.0.0.1", port=server.port, timeout=5)
    assert [rr.rdtype for rr in reply.answer] == [dns.rdatatype.SOA]  # RFC 1995 §2
    assert reply.answer[0][0].serial == SERIAL


async def test_over_udp_axfr_is_not_implemented_and_ixfr_gets_the_soa(
    server: AuthoritativeServer,
) -> None:
    axfr = await ask(server, "AXFR", key=KEY, udp=True)
    assert axfr.rcode() == dns.rcode.NOTIMP  # RFC 5936 §4.2
    ixfr = await ask(server, "IXFR", key=KEY, udp=True)
    assert ixfr.rcode() == dns.rcode.NOERROR  # RFC 1995 §2: come again over TCP
    assert [rr.rdtype for rr in ixfr.answer] == [dns.rdatatype.SOA]


def refusals(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str]]:
    """(level, reason, peer) of each refusal logged."""
    return [
        (r.levelname, r.fields["reason"], r.fields["peer"])
        for r in caplog.records
        if r.getMessage() == "zone transfer refused"
    ]


async def test_transfer_without_the_key_is_refused(
    server: AuthoritativeServer, caplog: pytest.LogCaptureFixture
) -> None:
    for qtype in ("AXFR", "IXFR"):
        reply = await ask(server, qtype)
        assert reply.rcode() == dns.rcode.REFUSED
        assert not reply.answer
    unsigned = ("WARNING", "not signed with dns.transfer_tsig_key", "127.0.0.1")
    assert refusals(caplog) == [unsigned, unsigned]


async def test_transfer_with_another_key_or_secret_is_notauth(
    server: AuthoritativeServer, caplog: pytest.LogCaptureFixture
) -> None:
    # RFC 8945 §5.2: NOTAUTH, the TSIG error saying why, no MAC (dnspython reports it).
    wrong_secret = dns.tsig.Key(KEY.name, base64.b64encode(b"y" * 32), dns.tsig.HMAC_SHA256)
    with pytest.raises(dns.tsig.PeerBadSignature):
        await ask(server, "AXFR", key=wrong_secret)
    other_key = dns.tsig.Key("other.key", SECRET, dns.tsig.HMAC_SHA256)
    with pytest.raises(dns.tsig.PeerBadKey):
        await ask(server, "AXFR", key=other_key)
    assert [reason for _, reason, _ in refusals(caplog)] == [
        "TSIG signature does not verify",
        "TSIG key unknown",
    ]


def skewed_query(skew: int) -> tuple[bytes, dns.rdtypes.ANY.TSIG.TSIG]:
    """An AXFR query for ``a.test`` signed with :data:`KEY` by a client whose clock is
    ``skew`` seconds off (dnspython's signing reads the clock: this signs by hand)."""
    query = dns.message.make_query("a.test", "AXFR")
    query.use_tsig(KEY)
    variables = query.tsig[0]
    query.tsig = None
    unsigned = query.to_wire()
    signed, _ = dns.tsig.sign(unsigned, KEY, variables, int(time.time()) + skew)
    return with_tsig(unsigned, signed), signed


def with_tsig(unsigned: bytes, rdata: dns.rdtypes.ANY.TSIG.TSIG) -> bytes:
    """``unsigned`` with the TSIG record of ``rdata`` appended (RFC 8945 §4.2)."""
    body = rdata.to_wire()
    (additional,) = struct.unpack("!H", unsigned[10:12])
    record = KEY.name.to_wire() + struct.pack("!HHIH", 250, 255, 0, len(body)) + body
    return unsigned[:10] + struct.pack("!H", additional + 1) + unsigned[12:] + record


def mac_verifies(reply: bytes, request_mac: bytes) -> bool:
    """The reply's TSIG MAC checked by hand, as RFC 8945 §4.3.3 defines it (dnspython's
    client refuses to check any TSIG carrying an error): HMAC-SHA256 over the request's MAC,
    the reply without its TSIG record (ARCOUNT one less, ID the Original ID), and the TSIG
    variables."""
    parsed = dns.message.from_wire(reply, keyring=False)
    tsig = parsed.tsig[0]
    parsed.tsig = None
    # The reply rendered again without its TSIG record: the octets sent before that record
    # (checked), with ARCOUNT one less.
    without = parsed.to_wire()
    assert reply[12 : len(without)] == without[12:] and reply[2:10] == without[2:10]
    message = struct.pack("!H", tsig.original_id) + without[2:]
    variables = (
        KEY.name.to_digestable()
        + struct.pack("!HI", 255, 0)
        + tsig.algorithm.to_digestable()
        + struct.pack("!HIH", tsig.time_signed >> 32, tsig.time_signed & 0xFFFFFFFF, tsig.fudge)
        + struct.pack("!HH", tsig.error, len(tsig.other))
        + tsig.other
    )
    signed = struct.pack("!H", len(request_mac)) + request_mac + message + variables
    expected = hmac.new(base64.b64decode(SECRET), signed, hashlib.sha256).digest()
    return hmac.compare_digest(expected, tsig.mac)


async def exchange(server: AuthoritativeServer, wire: bytes) -> bytes:
    """One query over TCP, its reply (RFC 1035 §4.2.2 framing)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(struct.pack("!H", len(wire)) + wire)
        (length,) = struct.unpack("!H", await reader.readexactly(2))
        return await reader.readexactly(length)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_badtime_is_signed_with_the_client_time_and_ours(
    server: AuthoritativeServer, caplog: pytest.LogCaptureFixture
) -> None:
    # RFC 8945 §5.2.3: a client 10 minutes behind (the fudge is 300 s).
    wire, sent = skewed_query(-600)
    before = int(time.time())
    reply_wire = await exchange(server, wire)
    reply = dns.message.from_wire(reply_wire, keyring=False)
    assert reply.rcode() == dns.rcode.NOTAUTH and not reply.answer
    tsig = reply.tsig[0]
    assert tsig.error == dns.rcode.BADTIME
    # Its own Time Signed and Fudge, so it verifies the reply whatever its clock says; our
    # time in Other Data (48 bits), so it knows by how much it is off.
    assert (tsig.time_signed, tsig.fudge) == (sent.time_signed, sent.fudge)
    assert len(tsig.other) == 6
    assert before <= int.from_bytes(tsig.other, "big") <= int(time.time())
    assert mac_verifies(reply_wire, sent.mac)
    assert not mac_verifies(reply_wire, b"\0" * len(sent.mac))  # the request's MAC counts
    assert [reason for _, reason, _ in refusals(caplog)] == ["TSIG time outside its fudge"]
    # A client whose clock is right gets its transfer.
    assert (await ask(server, "AXFR", key=KEY)).answer


async def test_transfer_from_an_address_not_allowed_is_refused_even_signed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pillarbox.dns")
    zones = zone()
    policy = TransferPolicy(allowed=(ipaddress.ip_network("192.0.2.0/24"),), key=KEY)
    async with serve_zones(zones, transfers=ZoneTransfers(zones, policy)) as running:
        reply = await ask(running, "AXFR", key=KEY)
        assert reply.rcode() == dns.rcode.REFUSED
        assert reply.had_tsig  # its TSIG verified first: the refusal is signed
        # A stranger is routine on the internet: INFO, not WARNING.
        assert refusals(caplog) == [("INFO", "address not in dns.transfer_allowed", "127.0.0.1")]
        # The usual queries are answered as before.
        soa = await ask(running, "SOA", udp=True)
        assert soa.rcode() == dns.rcode.NOERROR and soa.answer


async def test_without_a_key_configured_the_address_decides() -> None:
    zones = zone()
    policy = TransferPolicy(allowed=LOOPBACK)
    async with serve_zones(zones, transfers=ZoneTransfers(zones, policy)) as running:
        assert len(records(await transfer(running, key=None))) == 2 + len(RECORDS) + 1
        # A signed query names a key this server does not hold (RFC 8945 §5.2.1).
        with pytest.raises(dns.tsig.PeerBadKey):
            await ask(running, "AXFR", key=KEY)


async def test_transfer_of_a_zone_not_served_is_notauth(server: AuthoritativeServer) -> None:
    for name in ("b.test", "mx.a.test"):  # not ours; ours but not a zone apex
        reply = await ask(server, "AXFR", key=KEY, name=name)
        assert reply.rcode() == dns.rcode.NOTAUTH  # RFC 5936 §2.2.1
        assert reply.had_tsig  # signed: the query's key was verified


async def test_a_signed_soa_query_gets_a_signed_answer(
    server: AuthoritativeServer, caplog: pytest.LogCaptureFixture
) -> None:
    """BIND signs its refresh query (SOA) with the key it transfers with and drops an answer
    without TSIG (RFC 8945 §5.3): the SOA comes signed, over UDP as over TCP."""
    for udp in (True, False):
        reply = await ask(server, "SOA", key=KEY, udp=udp)  # dnspython checks the TSIG
        assert reply.had_tsig and reply.rcode() == dns.rcode.NOERROR
        assert reply.flags & dns.flags.AA
        ((name, rtype, rdata),) = records([reply])
        assert (name, rtype) == ("a.test.", "SOA") and f" {SERIAL} " in rdata
    wrong_secret = dns.tsig.Key(KEY.name, base64.b64encode(b"y" * 32), dns.tsig.HMAC_SHA256)
    with pytest.raises(dns.tsig.PeerBadSignature):
        await ask(server, "SOA", key=wrong_secret, udp=True)
    assert refusals(caplog) == [("WARNING", "TSIG signature does not verify", "127.0.0.1")]
    assert (await ask(server, "SOA", key=KEY, name="b.test")).rcode() == dns.rcode.NOTAUTH
    unsigned = await ask(server, "SOA", udp=True)  # the usual answer, for anyone
    assert not unsigned.had_tsig and records([unsigned])[0][1] == "SOA"


async def test_without_transfers_the_server_refuses_them() -> None:
    async with serve_zones(zone()) as running:
        assert (await ask(running, "AXFR")).rcode() == dns.rcode.REFUSED


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (dns.message.make_query("a.test", "AXFR").to_wire(), AXFR),
        (dns.message.make_query("a.test", "IXFR").to_wire(), IXFR),
        (dns.message.make_query("a.test", "SOA").to_wire(), None),
        (dns.message.make_response(dns.message.make_query("a.test", "AXFR")).to_wire(), None),
        (dns.message.make_query("a.test", "AXFR").to_wire()[:14], None),  # cut short
        (b"\x00" * 11, None),
    ],
    ids=["axfr", "ixfr", "soa", "a-response", "cut-short", "no-header"],
)
def test_transfer_queries_are_told_from_the_wire(wire: bytes, expected: int | None) -> None:
    assert transfer_type(wire) == expected


def _signed(qtype: str, use_edns: int | None = None) -> bytes:
    query = dns.message.make_query("a.test", qtype, use_edns=use_edns)
    query.use_tsig(KEY)
    return query.to_wire()


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (_signed("SOA"), True),
        (_signed("SOA", use_edns=0), True),  # OPT, then TSIG last
        (dns.message.make_query("a.test", "SOA").to_wire(), False),
        (dns.message.make_query("a.test", "SOA", use_edns=0).to_wire(), False),
        (_signed("SOA")[:-3], False),  # cut short
        (_signed("SOA") + b"\x00", False),  # a trailing octet
        (b"\x00" * 11, False),
    ],
    ids=["signed", "signed-edns", "plain", "edns", "cut-short", "trailing", "no-header"],
)
def test_a_tsig_is_told_from_the_wire(wire: bytes, expected: bool) -> None:
    assert ends_with_tsig(wire) is expected


def test_the_tsig_secret_is_read_from_its_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "xfr.secret"
    secret_file.write_text(SECRET + "\n")
    config = cfg.from_mapping(
        {"dns": {"transfer_tsig_key": "xfr.a.test", "transfer_tsig_secret_file": "xfr.secret"}}
    )
    config = cfg.dataclasses.replace(config, source=tmp_path / "pillarbox.toml")
    assert tsig_key(config) == KEY
    secret_file.write_text("not base64!")
    with pytest.raises(ConfigError, match="not base64"):
        tsig_key(config)
    secret_file.write_text(base64.b64encode(b"short").decode())
    with pytest.raises(ConfigError, match="under 16 octets"):
        tsig_key(config)
    secret_file.unlink()
    with pytest.raises(ConfigError, match="transfer_tsig_secret_file"):
        tsig_key(config)


@pytest.mark.parametrize(
    ("dns_section", "key"),
    [
        ({"transfer_tsig_key": "k"}, "dns.transfer_tsig_key"),
        ({"transfer_allowed": ["not-a-network"]}, "dns.transfer_allowed"),
        (
            {"authoritative_enabled": True, "dnssec": True, "transfer_allowed": ["192.0.2.1"]},
            "dns.transfer_allowed",
        ),
        ({"authoritative_enabled": True, "dnssec": True, "notify": ["192.0.2.1"]}, "dns.notify"),
        ({"zone_check_interval": 0}, "dns.zone_check_interval"),
        ({"nameservers": ["ns 2.example"]}, "dns.nameservers"),
        ({"catalog_zone": "catalog zone.invalid"}, "dns.catalog_zone"),
        (
            {"authoritative_enabled": True, "dnssec": True, "catalog_zone": "c.invalid"},
            "dns.catalog_zone",
        ),
    ],
)
def test_transfer_settings_are_checked(dns_section: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        cfg.from_mapping({"dns": dns_section})
    assert raised.value.key == key


class FailingSource:
    """A zone source whose store is down."""

    async def zone_for(self, name: str) -> StaticZone | None:
        raise OSError("the store is down")


async def test_a_failing_zone_source_gives_servfail(caplog: pytest.LogCaptureFixture) -> None:
    source = FailingSource()
    policy = TransferPolicy(allowed=LOOPBACK, key=KEY)
    async with serve_zones(source, transfers=ZoneTransfers(source, policy)) as running:
        reply = await ask(running, "AXFR", key=KEY)
    assert reply.rcode() == dns.rcode.SERVFAIL and reply.had_tsig
    assert any(r.getMessage() == "zone source failed" for r in caplog.records)
