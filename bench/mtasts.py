"""MTA-STS policy lookups of domains that publish none: what the store read-through costs.

Usage: ``python bench/mtasts.py [--domains N] [--lookups N] [--store postgresql://user@host/db]``
(SQLite by default; with ``--store`` the PostgreSQL backend, in a database of its own that the
bench drops at the end).

Set-up (before any clock starts): a store; Pillarbox's authoritative DNS server on loopback
publishing an MX for each of N domains (``d0.test`` …) and no ``_mta-sts`` record, so that
the resolver caches each negative answer for the zone's negative TTL (300 s); one lookup of
every domain to fill that cache. No policy host is ever asked.

Measured: :meth:`pillarbox.net.mtasts.MtaStsPolicies.policy_for` over the domains in turn,
µs per lookup — what every delivery attempt asks before it connects — once as on a store
other nodes share (``shared=True``: each miss reads ``Store.sts_cache_entry``) and once as on
a store only this process writes (``shared=False``, the SQLite server: memory, filled by
``load``, answers); and one ``sts_cache_entry`` call alone. The difference is the read.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import ssl
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from pillarbox.dns.authoritative import StaticZones, serve_zones
from pillarbox.dns.records import DnsRecord
from pillarbox.dns.resolver import DnsResolver
from pillarbox.net.mtasts import MtaStsPolicies
from pillarbox.store.interface import Store


def zones(count: int) -> StaticZones:
    domains = [f"d{n}.test" for n in range(count)]
    records = [DnsRecord(d, "MX", f"10 mx.{d}.") for d in domains]
    return StaticZones.from_records(records, origins=domains)


async def measure(store: Store, domains: int, lookups: int) -> dict[str, float]:
    names = [f"d{n}.test" for n in range(domains)]
    results: dict[str, float] = {}
    async with serve_zones(zones(domains)) as server:
        resolver = DnsResolver(nameserver=f"127.0.0.1:{server.port}", timeout=2.0)
        for shared in (True, False):
            policies = MtaStsPolicies(
                resolver, ssl.create_default_context(), store=store, shared=shared
            )
            await policies.load()
            for name in names:  # the resolver's negative cache, filled
                assert await policies.policy_for(name) is None
            start = time.perf_counter()
            for n in range(lookups):
                await policies.policy_for(names[n % domains])
            label = "shared (read-through)" if shared else "not shared (memory only)"
            results[f"policy_for, no policy, {label}"] = (
                (time.perf_counter() - start) / lookups * 1e6
            )
        now = datetime.now(UTC)
        start = time.perf_counter()
        for n in range(lookups):
            await store.sts_cache_entry(names[n % domains], now)
        results["Store.sts_cache_entry alone"] = (time.perf_counter() - start) / lookups * 1e6
    return results


async def run_sqlite(domains: int, lookups: int, base: Path) -> dict[str, float]:
    from pillarbox.store.sqlite import SqliteStore

    store = SqliteStore(base / "bench.sqlite3")
    await store.open()
    try:
        return await measure(store, domains, lookups)
    finally:
        await store.close()


async def run_postgres(domains: int, lookups: int, server: str) -> dict[str, float]:
    from pillarbox.store.postgres import PostgresStore
    from pillarbox.testing.postgres import TestDatabase

    database = TestDatabase(server)
    try:
        store = PostgresStore(database.new_store_url())
        await store.open()
        try:
            return await measure(store, domains, lookups)
        finally:
            await store.close()
    finally:
        database.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=200, help="recipient domains")
    parser.add_argument("--lookups", type=int, default=20_000, help="lookups timed")
    parser.add_argument("--store", default="sqlite", help="sqlite, or a postgresql:// URL")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pillarbox-bench-"))
    try:
        if args.store == "sqlite":
            backend = "SQLite"
            results = asyncio.run(run_sqlite(args.domains, args.lookups, base))
        elif args.store.startswith(("postgresql://", "postgres://")):
            backend = "PostgreSQL"
            results = asyncio.run(run_postgres(args.domains, args.lookups, args.store))
        else:
            parser.error("--store is sqlite or a postgresql:// URL")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"| {backend}, {args.domains} domains without MTA-STS | µs per lookup |")
    print("|---|---|")
    for name, micros in results.items():
        print(f"| {name} | {micros:,.1f} |")


if __name__ == "__main__":
    main()
