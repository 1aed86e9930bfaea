"""What zone transfers cost the authoritative server (``ZoneTransfers.replies``, no sockets):
the sniffing every query now passes, and a transfer of a hosted domain's zone as ``dns
records`` builds it, and of a large zone, without and with TSIG.

Usage: ``python bench/dnsxfr.py [--runs N]``

Measured: the best of 5 rounds of N runs (200 by default): µs per ordinary query spent in
``transfer_type`` (what a server with transfers configured adds to each query), and per
transfer: µs, messages and octets, for the hosted zone (about twenty records) and for one
with 1,000 more TXT records of 200 octets.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import time

import dns.message
import dns.tsig

from pillarbox.dns.authoritative import StaticZone, StaticZones
from pillarbox.dns.records import DnsRecord, required_records
from pillarbox.dns.transfer import TransferPolicy, ZoneTransfers, transfer_type

DOMAIN = "example.org"
KEY = dns.tsig.Key("xfr.example.org", b"s" * 32, dns.tsig.HMAC_SHA256)
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


def best(runs: int, once: object) -> float:
    """µs per call of ``once`` (a zero-argument callable), best of 5 rounds."""
    assert callable(once)
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(runs):
            once()
        rounds.append((time.perf_counter() - start) / runs * 1e6)
    return min(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    runs = parser.parse_args().runs
    records = required_records(DOMAIN, mail_host=f"mail.{DOMAIN}", addresses=["192.0.2.1"])
    query = dns.message.make_query(f"mail.{DOMAIN}", "A").to_wire()
    sniff = best(runs * 50, lambda: transfer_type(query))
    print(f"transfer_type on an ordinary query: {sniff:.2f} µs")
    print(f"{'zone':<28} {'records':>8} {'TSIG':>5} {'µs':>9} {'messages':>9} {'octets':>8}")
    large = list(records.records) + [
        DnsRecord(f"r{n}.{DOMAIN}", "TXT", "x" * 200) for n in range(1_000)
    ]
    for label, content in (("hosted domain", records.records), ("with 1,000 TXT", large)):
        zones = StaticZones([StaticZone(DOMAIN, content, nameservers=(f"mail.{DOMAIN}",))])
        for key in (None, KEY):
            transfers = ZoneTransfers(zones, TransferPolicy(allowed=LOOPBACK, key=key))
            axfr = dns.message.make_query(DOMAIN, "AXFR")
            if key is not None:
                axfr.use_tsig(key)
            wire = axfr.to_wire()
            loop = asyncio.new_event_loop()

            def once(
                t: ZoneTransfers = transfers, w: bytes = wire, on: asyncio.AbstractEventLoop = loop
            ) -> list[bytes] | None:
                return on.run_until_complete(t.replies(w, "127.0.0.1", udp=False))

            replies = once()
            assert replies is not None
            cost = best(max(1, runs // (20 if len(content) > 100 else 1)), once)
            loop.close()
            print(
                f"{label:<28} {len(content) + 2:>8} {'yes' if key else 'no':>5} {cost:>9.0f} "
                f"{len(replies):>9} {sum(map(len, replies)):>8}"
            )


if __name__ == "__main__":
    main()
