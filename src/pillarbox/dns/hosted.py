"""The DNS records of the domains this server hosts, read from the store: for ``pillarbox dns
records``/``dns check`` and as the :class:`~pillarbox.dns.authoritative.ZoneSource` of the
optional authoritative server.

The DKIM records are the public halves of the stored keys: every active key, and each retired
key for :data:`RETIRED_KEY_PUBLISHED` after its retirement, so mail signed just before a
rotation still verifies while it is in transit or in a verifier's queue.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from pillarbox.dns.authoritative import StaticZone
from pillarbox.dns.records import DEFAULT_POLICY, DomainRecords, RecordPolicy, required_records
from pillarbox.queue import dkim
from pillarbox.store.interface import Store
from pillarbox.store.types import DkimKeyRecord

#: How long a retired DKIM key stays published (the rotation advice in :mod:`.queue.dkim`).
RETIRED_KEY_PUBLISHED = timedelta(days=7)
#: Seconds a zone built from the store is served before it is built again.
ZONE_CACHE_SECONDS = 30.0


def published_keys(keys: Sequence[DkimKeyRecord], now: datetime) -> dict[str, str]:
    """Selector → TXT value for every key that must be in the DNS at ``now``."""
    published = {}
    for key in keys:
        if key.retired is None or now - key.retired < RETIRED_KEY_PUBLISHED:
            value = dkim.DkimKey(
                key.selector, dkim.DkimAlgorithm(key.algorithm), key.private_pem, key.created
            )
            published[key.selector] = dkim.public_record(value)
    return published


async def hosted_records(
    store: Store,
    domain: str,
    *,
    mail_host: str,
    addresses: Sequence[str] = (),
    now: datetime,
    policy: RecordPolicy = DEFAULT_POLICY,
) -> DomainRecords:
    """What ``domain`` needs published, with its real DKIM public keys."""
    keys = await store.list_dkim_keys(domain, include_retired=True)
    return required_records(
        domain,
        mail_host=mail_host,
        addresses=addresses,
        dkim=published_keys(keys, now),
        policy=policy,
    )


class HostedZones:
    """A zone per hosted domain, built from the store and kept for a short while."""

    def __init__(
        self,
        store: Store,
        *,
        mail_host: str,
        addresses: Sequence[str] = (),
        policy: RecordPolicy = DEFAULT_POLICY,
        cache_seconds: float = ZONE_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._mail_host = mail_host
        self._addresses = tuple(addresses)
        self._policy = policy
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._zones: dict[str, tuple[float, StaticZone | None]] = {}

    async def zone_for(self, name: str) -> StaticZone | None:
        candidate = name
        while True:
            zone = await self._zone(candidate)
            if zone is not None:
                return zone
            if "." not in candidate:
                return None
            candidate = candidate.partition(".")[2]

    async def _zone(self, domain: str) -> StaticZone | None:
        now = self._clock()
        cached = self._zones.get(domain)
        if cached is not None and cached[0] > now:
            return cached[1]
        zone = None
        if await self._store.get_domain(domain) is not None:
            records = await hosted_records(
                self._store,
                domain,
                mail_host=self._mail_host,
                addresses=self._addresses,
                now=self._wall_clock(),
                policy=self._policy,
            )
            zone = StaticZone(domain, records.records)
        if len(self._zones) > 10_000:
            self._zones.clear()  # names asked for at random must not grow the cache forever
        self._zones[domain] = (now + self._cache_seconds, zone)
        return zone
