"""The DNS records of the domains this server hosts, read from the store: for ``pillarbox dns
records``/``dns check`` and as the :class:`~pillarbox.dns.authoritative.ZoneSource` of the
optional authoritative server.

The zones also carry the TXT records answering ACME DNS-01 challenges (RFC 8555 §8.4), from
the store's ``acme_challenges``: the node running an attempt writes them there, so every node
serving the zone (each runs this source over the shared store) publishes them. They are read
again every :data:`CHALLENGE_CACHE_SECONDS` rather than with the rest of the zone, so another
node answers within that bound; the writing node calls :meth:`HostedZones.forget_challenges`
and answers at once.

With ``[dns] dnssec`` the zones are signed (:mod:`pillarbox.dns.signing`) with each domain's
keys from the store (:mod:`pillarbox.dns.rollover`), the active one made by whichever node
(or ``pillarbox dns records``) first needs it: the store keeps the first one stored, so every
node signs with the key whose DS the registrar has, and every node sees a rollover's next
key within ``dns.zone_check_interval`` (read again with the rest of the zone). The apex's
CDS and CDNSKEY RRsets (``dns.dnssec_cds``, :mod:`pillarbox.dns.cds`) are made at each build
from the keys read then and the wall clock, so a next key joins them within that interval of
its ready time. A stored key that does not load is logged as an ERROR, naming the zone and
the fix, each time the zone is built; without a loadable active key the zone is served
unsigned rather than failed: a validator holding its DS rejects the answers either way,
every other resolver still gets them, and the other zones are untouched.
A zone that holds the mail host's name also serves its TLSA record (``_25._tcp.<host>``, RFC
7672 §3.1.1) when the certificate's key stays (the same condition ``dns records`` offers it
on), read again with the rest of the zone, so a hand-placed next key shows up within
``dns.zone_check_interval`` of the certificate changing.

Each zone's SOA serial comes from the store (:mod:`pillarbox.dns.serial`): every build digests
the zone's records, NS names and key, and the store moves the serial on when the digest is new.
The node whose build moved it calls ``on_serial_change`` with the zone's new SOA record (the
NOTIFY sender, :mod:`pillarbox.dns.notify`, which sends it as its hint): one change, one
announcement, whichever node noticed it. Every node must therefore build the same zone: a
node whose ``[dns]`` differs (addresses, nameservers) or whose certificate gives another TLSA
record moves the serial at each build, which the log shows as a ``zone serial moved`` line
every few seconds.

With ``dns.catalog_zone`` one more zone lists the hosted domains for the secondaries
(:mod:`pillarbox.dns.catalog`, RFC 9432): built, cached, given its serial and announced as
the hosted zones are, never signed, with no ACME challenges; built first at each refresh, so
a secondary learns of a new domain before it is told of the domain's own zone.

The DKIM records are the public halves of the stored keys: every active key, and each retired
key for :data:`RETIRED_KEY_PUBLISHED` after its retirement, so mail signed just before a
rotation still verifies while it is in transit or in a verifier's queue.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pillarbox.blocking import run_blocking
from pillarbox.config import Config
from pillarbox.dns.authoritative import DEFAULT_SOA, SoaSettings, StaticZone
from pillarbox.dns.catalog import catalog_records
from pillarbox.dns.cds import CdsMode, ParentSignal, parent_signal
from pillarbox.dns.records import (
    DEFAULT_POLICY,
    DEFAULT_SRV_SERVICES,
    DnsRecord,
    DomainRecords,
    RecordPolicy,
    required_records,
)
from pillarbox.dns.rollover import RolloverTiming, broken_key_fix, key_ring
from pillarbox.dns.serial import zone_digest
from pillarbox.dns.signing import SignatureBudget, SigningPolicy, ZoneSigner
from pillarbox.observability.log import Log
from pillarbox.queue import dkim
from pillarbox.store.interface import Store
from pillarbox.store.types import DkimKeyRecord, ZoneSerial

#: How long a retired DKIM key stays published (the rotation advice in :mod:`.queue.dkim`).
RETIRED_KEY_PUBLISHED = timedelta(days=7)
#: Seconds a zone built from the store is served before it is built again.
ZONE_CACHE_SECONDS = 30.0
#: Seconds the ACME challenge records of a zone are served before they are read again: the
#: longest another node takes to publish a record one node wrote.
CHALLENGE_CACHE_SECONDS = 1.0
#: TTL of an ACME challenge record: short, so a resolver never holds a stale value into the
#: next attempt (RFC 8555 §8.4 leaves it to the client; certbot's DNS plugins use 10 to 120).
CHALLENGE_TTL = 10

_log = Log("dns.hosted")


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


def record_policy(config: Config) -> RecordPolicy:
    """The record choices the config makes: the report addresses ``rua=`` names are the ones
    :mod:`pillarbox.policy.receivedreports` reads (``[received_reports]``), and the SRV records
    name the ports the listeners serve, as the autoconfig documents do (a service whose
    listener is off is not published)."""
    section = config.received_reports
    services = tuple(
        dataclasses.replace(service, port=listener.port)
        for service in DEFAULT_SRV_SERVICES
        if (listener := getattr(config.listeners, service.listener)).enabled
    )
    return RecordPolicy(
        dmarc_reports=section.dmarc_local_part,
        tls_reports=section.tls_local_part,
        srv_services=services,
    )


def signing_policy(config: Config) -> SigningPolicy | None:
    """How the hosted zones are signed (``[dns] dnssec_*``); None when they are not."""
    dns = config.dns
    if not dns.dnssec:
        return None
    return SigningPolicy(
        validity=dns.dnssec_validity,
        refresh=dns.dnssec_refresh,
        inception_offset=dns.dnssec_inception_offset,
        max_cached=dns.dnssec_signature_cache,
        signatures_per_second=dns.dnssec_signatures_per_second,
    )


def rollover_timing(config: Config) -> RolloverTiming:
    """How long the steps of a key rollover wait, for the zones :class:`HostedZones` serves."""
    return RolloverTiming(
        dnskey_ttl=DEFAULT_SOA.ttl,
        propagation=config.dns.zone_check_interval,  # how long a node serves a zone built before
        retire_after=config.dns.dnssec_retire_seconds,
    )


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


@dataclass(slots=True)
class _CachedZone:
    """A hosted domain's zone as last built: its records from the store (None: not hosted)
    until ``expires``, and its challenge records until ``challenges_expire``."""

    expires: float
    records: tuple[DnsRecord, ...] | None
    challenges: tuple[DnsRecord, ...] = ()
    challenges_expire: float = 0.0
    zone: StaticZone | None = None
    signer: ZoneSigner | None = None
    signal: ParentSignal | None = None


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
        signing: SigningPolicy | None = None,
        rollover: RolloverTiming | None = None,
        cds: CdsMode = "off",
        tlsa: Callable[[], DnsRecord | None] | None = None,
        nameservers: Sequence[str] = (),
        catalog: str = "",
        on_serial_change: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``signing``: sign the zones so (None: unsigned); ``rollover``: remove retired keys
        at their time (None: never, as for tests that hold one key); ``cds``: the CDS and
        CDNSKEY RRsets the signed zones publish (:mod:`pillarbox.dns.cds`; other than "off"
        it needs ``rollover``, for when a next key may be named); ``tlsa``: the mail
        host's TLSA record, or None when none would last (it reads the certificate: called
        off the event loop, once per zone build); ``nameservers``: the zones' NS names (empty:
        the mail host); ``catalog``: the catalog zone's name (lowercase A-labels; "": none);
        ``on_serial_change(domain, soa)``: called when this node's build moved a zone's
        serial, with the zone's SOA record as a zone-file line (module notes)."""
        self._store = store
        self._mail_host = mail_host
        self._nameservers = tuple(nameservers) or (mail_host,)
        self._catalog = catalog
        self._on_serial_change = on_serial_change
        self._addresses = tuple(addresses)
        self._policy = policy
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._zones: dict[str, _CachedZone] = {}
        self._signing = signing
        if cds != "off" and rollover is None:
            raise ValueError("CDS names a rollover's next key by its timing: give rollover")
        self._rollover = rollover
        self._cds: CdsMode = cds
        self._tlsa = tlsa
        #: Per domain, the signer of its stored keys: its signatures outlive zone rebuilds.
        self._signers: dict[str, ZoneSigner] = {}
        #: New signatures a second, for every zone together (a flood spreads over zones).
        per_second = 0 if signing is None else signing.signatures_per_second
        self._budget = SignatureBudget(per_second, clock=clock) if per_second else None

    async def zone_for(self, name: str) -> StaticZone | None:
        candidate = name
        while True:
            zone = await self._zone(candidate)
            if zone is not None:
                return zone
            if "." not in candidate:
                return None
            candidate = candidate.partition(".")[2]

    async def hosted_domain_of(self, name: str) -> str | None:
        """The hosted domain whose zone ``name`` (lowercase, no final dot) is in: the closest
        enclosing one, as :meth:`zone_for` chooses."""
        zone = await self.zone_for(name)
        return None if zone is None else zone.origin

    def forget_challenges(self, domain: str) -> None:
        """Read ``domain``'s challenge records again at the next query (they were changed)."""
        cached = self._zones.get(domain)
        if cached is not None:
            cached.challenges_expire = 0.0

    async def _zone(self, domain: str) -> StaticZone | None:
        if domain == self._catalog:
            return await self._catalog_zone()
        now = self._clock()
        cached = self._zones.get(domain)
        if cached is None or cached.expires <= now:
            records = None
            if await self._store.get_domain(domain) is not None:
                built = await hosted_records(
                    self._store,
                    domain,
                    mail_host=self._mail_host,
                    addresses=self._addresses,
                    now=self._wall_clock(),
                    policy=self._policy,
                )
                records = tuple(built.records) + await self._tlsa_in(domain)
            if len(self._zones) > 10_000:
                self._zones.clear()  # names asked for at random must not grow the cache forever
            cached = _CachedZone(now + self._cache_seconds, records)
            if records is not None and self._signing is not None:
                cached.signer, cached.signal = await self._signer(domain)
            self._zones[domain] = cached
        if cached.records is None:
            return None
        if cached.zone is None or cached.challenges_expire <= now:
            rows = await self._store.list_acme_challenges(domain, self._wall_clock())
            challenges = tuple(
                DnsRecord(row.name, "TXT", row.value, CHALLENGE_TTL)
                for row in rows
                if row.name.endswith("." + domain)
            )
            if cached.zone is None or challenges != cached.challenges:
                content = cached.records + challenges
                serial = await self._serial(
                    domain, content, cached.signer, cached.signal, nameservers=self._nameservers
                )
                # The NS is this host by default, with the address the zones give it
                # (``ns.<domain>``, StaticZone's default, resolves nowhere).
                cached.zone = StaticZone(
                    domain,
                    content,
                    nameservers=self._nameservers,
                    soa=SoaSettings(serial=serial.serial),
                    signer=cached.signer,
                    cds=() if cached.signal is None else cached.signal.rrsets(),
                )
                self._built(cached.zone, serial)
                cached.challenges = challenges
            cached.challenges_expire = now + CHALLENGE_CACHE_SECONDS
        return cached.zone

    async def _catalog_zone(self) -> StaticZone:
        """The catalog zone listing every hosted domain (module notes)."""
        now = self._clock()
        cached = self._zones.get(self._catalog)
        if cached is not None and cached.zone is not None and cached.expires > now:
            return cached.zone
        domains = await self._store.list_domains()
        members = [d.name for d in domains if d.name != self._catalog]
        if len(members) < len(domains):  # the catalog answers for that name, not the domain
            _log.error(
                "catalog zone hides a hosted domain",
                zone=self._catalog,
                fix="set dns.catalog_zone to a name no hosted domain has (catalog.invalid)",
            )
        records = catalog_records(self._catalog, members)
        # Its one NS (invalid.) is among the records: the configured names are not its.
        serial = await self._serial(self._catalog, records, None, None, nameservers=())
        zone = StaticZone(self._catalog, records, soa=SoaSettings(serial=serial.serial))
        self._zones[self._catalog] = _CachedZone(now + self._cache_seconds, records, zone=zone)
        self._built(zone, serial)
        return zone

    async def _serial(
        self,
        domain: str,
        records: tuple[DnsRecord, ...],
        signer: ZoneSigner | None,
        signal: ParentSignal | None,
        *,
        nameservers: Sequence[str],
    ) -> ZoneSerial:
        """The SOA serial of ``domain``'s zone holding ``records`` and served with the NS
        names ``nameservers``, and whether this build moved it (module notes)."""
        lines = [record.zone_line() for record in records]
        lines += [f"{domain}.\tNS\t{name}." for name in nameservers]
        if signer is not None:  # a rollover's steps change the DNSKEY RRset
            lines += [f"{domain}.\tDNSKEY\t{key.dnskey}" for key in signer.keys]
        if signal is not None:  # and so does a next key's DS joining the CDS RRset
            lines += [record.zone_line() for record in signal.records(domain, 0)]
        now = int(self._wall_clock().timestamp())
        return await self._store.zone_serial(domain, zone_digest(lines), now)

    def _built(self, zone: StaticZone, serial: ZoneSerial) -> None:
        """Announce ``zone``, just built, if its build moved the serial (module notes)."""
        if serial.changed:
            _log.info("zone serial moved", zone=zone.origin, serial=serial.serial)
            if self._on_serial_change is not None:
                self._on_serial_change(zone.origin, zone.soa.toZone())

    def soas(self) -> dict[str, str]:
        """Each hosted zone's SOA record as last built (a zone-file line): what a NOTIFY
        names."""
        return {
            domain: cached.zone.soa.toZone()
            for domain, cached in self._zones.items()
            if cached.zone is not None
        }

    async def refresh(self) -> None:
        """Build every hosted zone whose cached build expired, so a change is noticed (and
        announced) without waiting for a query to ask for the zone; the catalog first."""
        if self._catalog:
            await self._catalog_zone()
        for domain in await self._store.list_domains():
            await self._zone(domain.name)

    async def _tlsa_in(self, domain: str) -> tuple[DnsRecord, ...]:
        """The mail host's TLSA record if it lies in ``domain``'s zone and one is offered."""
        record = None if self._tlsa is None else await run_blocking(self._tlsa)
        if record is None or not record.name.endswith("." + domain):
            return ()
        return (record,)

    async def _signer(self, domain: str) -> tuple[ZoneSigner | None, ParentSignal | None]:
        """The signer of ``domain``'s stored keys (an active one made now if it has none),
        kept while the keys stay: a rollover's step, or a domain removed and added again,
        makes a new one; and the CDS and CDNSKEY RRsets the zone serves now. None, None
        when the active key does not load (module notes)."""
        assert self._signing is not None  # only signed zones ask
        now = self._wall_clock()
        ring = await key_ring(self._store, domain, now, self._rollover)
        for row, why in ring.broken:
            _log.error(
                "dnssec key does not load",
                zone=domain,
                state=row.state.value,
                error=why,
                served="unsigned" if ring.active is None else "signed without this key",
                fix=broken_key_fix(domain),
            )
        active = ring.active
        if active is None:
            self._signers.pop(domain, None)
            return None, None
        others = ring.others()
        keys = tuple(key.dnskey for key in (active.key, *others))
        signer = self._signers.get(domain)
        if signer is None or tuple(key.dnskey for key in signer.keys) != keys:
            signer = ZoneSigner(active.key, self._signing, others=others, budget=self._budget)
            self._signers[domain] = signer
        signal = (
            None if self._rollover is None else parent_signal(ring, self._rollover, now, self._cds)
        )
        return signer, signal
