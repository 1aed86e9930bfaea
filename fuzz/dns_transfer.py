"""Fuzz the zone transfer path of the authoritative DNS server (pillarbox.dns.transfer): every
query the server receives passes ``transfer_type``, and a transfer query from an allowed
address is parsed and its TSIG checked before anything of the zone is read.

Input: a DNS message, as it arrives over TCP from 127.0.0.1 (allowed; the policy requires the
TSIG key). Asserted, beyond "no exception":

* ``replies`` answers exactly the messages ``transfer_type`` calls transfers, and SOA queries
  carrying a TSIG (None otherwise);
* every reply fits a TCP message, parses, is a response (QR) with the query's id;
* no record of the zone goes out unless the query's TSIG verifies with the key: a forged or
  unsigned query gets an error and nothing else.
"""

from __future__ import annotations

import asyncio
import ipaddress

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    import dns.exception
    import dns.flags
    import dns.message
    import dns.tsig

    from pillarbox.dns.authoritative import StaticZone, StaticZones
    from pillarbox.dns.records import DnsRecord
    from pillarbox.dns.transfer import (
        SOA,
        TransferPolicy,
        ZoneTransfers,
        question_type,
        transfer_type,
    )

KEY = dns.tsig.Key("xfr.a.test", b"k" * 32, dns.tsig.HMAC_SHA256)
ZONES = StaticZones(
    [
        StaticZone(
            "a.test",
            [
                DnsRecord("a.test", "MX", "10 mx.a.test."),
                DnsRecord("mx.a.test", "A", "192.0.2.1"),
                DnsRecord("a.test", "TXT", "v=spf1 -all"),
            ],
        )
    ]
)
TRANSFERS = ZoneTransfers(
    ZONES, TransferPolicy(allowed=(ipaddress.ip_network("127.0.0.0/8"),), key=KEY)
)
MAX_TCP_MESSAGE = 65_535


def _verifies(data: bytes) -> bool:
    try:
        return dns.message.from_wire(data, keyring={KEY.name: KEY}).had_tsig
    except dns.exception.DNSException:
        return False


def _signed_soa(data: bytes) -> bool:
    if question_type(data) != SOA:
        return False
    try:
        return dns.message.from_wire(data, keyring=False).had_tsig
    except dns.exception.DNSException:
        return False


def check(data: bytes) -> None:
    for udp in (False, True):
        replies = asyncio.run(TRANSFERS.replies(data, "127.0.0.1", udp=udp))
        assert (replies is not None) == (transfer_type(data) is not None or _signed_soa(data))
        if replies is None:
            continue
        assert replies, "a transfer or signed SOA query got no reply"
        for wire in replies:
            assert len(wire) <= MAX_TCP_MESSAGE
            assert wire[:2] == data[:2], "not the query's id"
            reply = dns.message.from_wire(wire, keyring=False)
            assert reply.flags & dns.flags.QR
            if reply.answer:
                assert _verifies(data), "zone records sent for a query without the key"


def seeds() -> list[bytes]:
    found = []
    for qtype in ("AXFR", "IXFR", "SOA"):
        for name in ("a.test", "b.test", "mx.a.test"):
            query = dns.message.make_query(name, qtype)
            found.append(query.to_wire())
            query.use_tsig(KEY)
            found.append(query.to_wire())
    return found


if __name__ == "__main__":
    harness.main("dns_transfer", check, seeds(), max_len=1024)
