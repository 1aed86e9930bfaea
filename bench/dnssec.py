"""The authoritative server's answers with and without DNSSEC: what signing costs per query
(``respond``, no sockets), for a hosted domain's zone as ``dns records`` builds it.

Usage: ``python bench/dnssec.py [--queries N]``

Measured: µs per query (the best of 5 runs of N queries, 2,000 by default) for a positive
answer (``mail.<domain> A``) and for names that do not exist, each a new name (a flood of
random subdomains), unsigned (no DO) and signed (DO). A positive answer's signatures come
from the cache after the first query; each new name costs one NSEC signature (ECDSA P-256),
the SOA's being cached. The last line is the same flood over a spent signing budget
(``[dns] dnssec_signatures_per_second``): each signed answer is a TC=1 reply instead.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time

import dns.message

from pillarbox.dns.authoritative import StaticZone, StaticZones, respond
from pillarbox.dns.records import required_records
from pillarbox.dns.signing import SignatureBudget, ZoneKey, ZoneSigner, new_key_pem

DOMAIN = "example.org"


async def per_query(zones: StaticZones, names: list[str], dnssec: bool) -> float:
    queries = [dns.message.make_query(n, "A", want_dnssec=dnssec).to_wire() for n in names]
    start = time.perf_counter()
    for query in queries:
        await respond(zones, query, udp=True)
    return (time.perf_counter() - start) / len(queries) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=2_000)
    count = parser.parse_args().queries
    records = required_records(DOMAIN, mail_host=f"mail.{DOMAIN}", addresses=["192.0.2.1"])
    signer = ZoneSigner(ZoneKey(DOMAIN, new_key_pem()))
    zones = StaticZones([StaticZone(DOMAIN, records.records, signer=signer)])
    fresh = (f"r{n}.{DOMAIN}" for n in itertools.count())
    print(f"{'answer':<24} {'unsigned µs':>12} {'signed µs':>10}")
    for label, names in (
        ("positive", lambda: [f"mail.{DOMAIN}"] * count),
        ("name that does not exist", lambda: [next(fresh) for _ in range(count)]),
    ):
        plain = min(asyncio.run(per_query(zones, names(), False)) for _ in range(5))
        signed = min(asyncio.run(per_query(zones, names(), True)) for _ in range(5))
        print(f"{label:<24} {plain:>12.1f} {signed:>10.1f}")
    spent = SignatureBudget(1, clock=lambda: 0.0)
    spent.take()  # a frozen clock: it never refills
    limited = ZoneSigner(ZoneKey(DOMAIN, new_key_pem()), budget=spent)
    over = StaticZones([StaticZone(DOMAIN, records.records, signer=limited)])
    names = [next(fresh) for _ in range(count)]
    plain = min(asyncio.run(per_query(over, names, False)) for _ in range(5))
    deferred = min(asyncio.run(per_query(over, names, True)) for _ in range(5))
    print(f"{'over budget (TC)':<24} {plain:>12.1f} {deferred:>10.1f}")


if __name__ == "__main__":
    main()
