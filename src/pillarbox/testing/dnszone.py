"""A loopback DNS server serving records a test writes itself, and a resolver pointed at it.

Used by the policy tests and the evaluation of the SPF/DKIM/DMARC/ARC suites: every record is
served by the real authoritative server (:mod:`pillarbox.dns.authoritative`) over UDP/TCP on
127.0.0.1, and looked up by the real :class:`~pillarbox.dns.resolver.DnsResolver`, so nothing
of the DNS path is mocked.

Each record goes into a zone named after its top-level label (``com``, ``net``, ``arpa``…),
or, under a name listed in ``secure``, into a zone of that name whose answers carry the AD bit
(standing in for a validating resolver's "secure" answers, for DANE; the resolver must be told
to trust it: ``trust_ad``). A name under none of them answers NXDOMAIN, as the root servers
would. Names listed in
``failing`` answer REFUSED, which the resolver reports as a temporary error,
the way a SERVFAIL or a timeout is reported, without making a test wait for a timeout.

Our zones hold host names only (letters, digits, hyphen, underscore). Records under other owner
names, which the SPF suites use (RFC 7208 §7.1 lets a domain-spec hold any visible character,
``a:foo:bar/baz.example.com``), are served by :func:`serve_any_names`: dnslib's server (a
peer's code) answers those names itself and passes every other question to ours.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dnslib import MX, QTYPE, RR, A, DNSLabel, DNSRecord
from dnslib.proxy import ProxyResolver
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from pillarbox.dns.authoritative import (
    AuthoritativeServer,
    StaticZone,
    StaticZones,
    ZoneError,
    serve_zones,
)
from pillarbox.dns.records import DnsRecord, normalise_name
from pillarbox.dns.resolver import CacheLimits, DnsResolver
from pillarbox.errors import InvalidName
from pillarbox.testing.live import free_port


@dataclass(frozen=True, slots=True)
class ZoneRecord:
    """One record: owner name, type, and the value as :class:`DnsRecord` takes it."""

    name: str
    type: str
    value: str


class _Zones:
    """:class:`StaticZones` with some names answering REFUSED (a temporary failure)."""

    def __init__(self, zones: StaticZones, failing: frozenset[str]) -> None:
        self._zones = zones
        self._failing = failing
        self._nowhere = StaticZone("invalid")  # RFC 6761 §6.4: never holds a name

    async def zone_for(self, name: str) -> StaticZone | None:
        if name in self._failing:
            return None
        # A name under no zone gets NXDOMAIN, as the root would answer it.
        return await self._zones.zone_for(name) or self._nowhere


def build_zones(
    records: Iterable[ZoneRecord], *, secure: Iterable[str] = ()
) -> tuple[StaticZones, list[ZoneRecord]]:
    """Zones for ``records``, and the records no zone can hold (names DNS cannot carry);
    zones of the names in ``secure`` are authentic (module notes)."""
    secure_origins = sorted({normalise_name(n) for n in secure}, key=len, reverse=True)
    grouped: dict[str, list[DnsRecord]] = {o: [] for o in secure_origins}
    rejected: list[ZoneRecord] = []
    for record in records:
        try:
            name = normalise_name(record.name)
        except InvalidName:
            rejected.append(record)
            continue
        origin = next(
            (o for o in secure_origins if name == o or name.endswith("." + o)),
            name.rpartition(".")[2],
        )
        dns_record = DnsRecord(name, record.type, record.value, ttl=60)
        try:
            StaticZone(origin, [dns_record])  # checks the value alone
        except ZoneError:
            rejected.append(record)
            continue
        grouped.setdefault(origin, []).append(dns_record)
    zones = [
        StaticZone(origin, rs, authentic=origin in secure_origins) for origin, rs in grouped.items()
    ]
    return StaticZones(zones), rejected


@contextlib.asynccontextmanager
async def serve_test_zones(
    records: Iterable[ZoneRecord], *, failing: Iterable[str] = (), secure: Iterable[str] = ()
) -> AsyncIterator[AuthoritativeServer]:
    """Serve ``records`` on loopback for the block (module notes: ``failing``, ``secure``)."""
    zones, _ = build_zones(records, secure=secure)
    source = _Zones(zones, frozenset(n.rstrip(".").lower() for n in failing))
    async with serve_zones(source) as server:
        yield server


@contextlib.asynccontextmanager
async def serve_records(
    records: Iterable[ZoneRecord],
    *,
    failing: Iterable[str] = (),
    secure: Iterable[str] = (),
    timeout: float = 2.0,
    cache: bool = True,
) -> AsyncIterator[DnsResolver]:
    """Serve ``records`` on loopback for the block; yields a resolver that asks only it and
    trusts its AD bit (it is on loopback, ``dns.trust_ad = "loopback"``)."""
    async with serve_test_zones(records, failing=failing, secure=secure) as server:
        limits = CacheLimits() if cache else CacheLimits(max_entries=0)
        yield DnsResolver(
            nameserver=f"127.0.0.1:{server.port}",
            timeout=timeout,
            cache=limits,
            trust_ad="loopback",
        )


def dnslib_servers(resolver: BaseResolver, port: int) -> list[DNSServer]:
    """dnslib's own server (a peer's code, not ours) answering from ``resolver`` on
    127.0.0.1:``port`` over UDP and TCP, started, logging nothing; ``stop()`` each when done."""
    quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    servers = [
        DNSServer(resolver, address="127.0.0.1", port=port, tcp=tcp, logger=quiet)
        for tcp in (False, True)
    ]
    for server in servers:
        server.start_thread()
    return servers


def _label(name: str) -> DNSLabel:
    """A name as its labels, whatever characters they hold (no escapes, no IDNA)."""
    return DNSLabel([label.encode() for label in name.rstrip(".").split(".")])


def _dnslib_record(record: ZoneRecord) -> RR:
    """``record`` as dnslib's resource record: the types the SPF suites put under such names
    (A and MX); any other is refused, not served wrongly."""
    kind = record.type.upper()
    data: Any
    if kind == "A":
        data = A(record.value)
    elif kind == "MX":
        preference, _, exchange = record.value.partition(" ")
        data = MX(_label(exchange), int(preference))
    else:
        raise ValueError(f"type {record.type} under {record.name!r} is not served")
    return RR(_label(record.name), getattr(QTYPE, kind), rdata=data, ttl=60)


class _Front(ProxyResolver):  # type: ignore[misc]
    """Answers the names in ``held`` from their records; passes every other question on to
    127.0.0.1:``port`` and its answer back unchanged (REFUSED included)."""

    def __init__(self, held: Mapping[tuple[bytes, ...], list[RR]], port: int) -> None:
        super().__init__("127.0.0.1", port, timeout=5)
        self._held = held

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        question = request.q
        records = self._held.get(tuple(label.lower() for label in question.qname.label))
        if records is None:
            return super().resolve(request, handler)
        reply = request.reply()
        for record in records:
            if question.qtype in (record.rtype, QTYPE.ANY):
                reply.add_answer(record)
        return reply


@contextlib.asynccontextmanager
async def serve_any_names(
    records: Iterable[ZoneRecord], *, failing: Iterable[str] = ()
) -> AsyncIterator[int]:
    """:func:`serve_test_zones` for records under any owner name (module notes); yields the
    port to ask (UDP and TCP on 127.0.0.1)."""
    records = list(records)
    _, rejected = build_zones(records)
    async with serve_test_zones(records, failing=failing) as server:
        if not rejected:
            yield server.port
            return
        held: dict[tuple[bytes, ...], list[RR]] = {}
        for record in rejected:
            rr = _dnslib_record(record)
            held.setdefault(tuple(label.lower() for label in rr.rname.label), []).append(rr)
        port = free_port("127.0.0.1")
        servers = dnslib_servers(_Front(held, server.port), port)
        try:
            yield port
        finally:
            for front in servers:
                front.stop()
                front.server.server_close()
