"""An authoritative DNS server for hosted domains, and the DNS of end-to-end tests.

dnslib parses and builds packets; the transport is asyncio (one UDP endpoint and one TCP server on
the same address and port), so it shares Pillarbox's event loop.

Implementation notes:

* Answers come from a :class:`ZoneSource`; :class:`StaticZones` serves fixed zones (tests, or
  zones built from :func:`pillarbox.dns.records.required_records`). A name outside every served
  zone is REFUSED, without AA: we are not a resolver.
* Lookup is RFC 1034 §4.3.2 without delegations or wildcards. Zone transfers (AXFR, IXFR) go
  to the server's :class:`~pillarbox.dns.transfer.ZoneTransfers` with the client's address;
  without one they are REFUSED. Every answer from a zone has AA set (RFC 1035 §4.1.1).
* A zone with a :class:`~pillarbox.dns.signing.ZoneSigner` is signed (DNSSEC): its apex serves
  the DNSKEY RRset (RFC 4035 §2.1; during a rollover two keys, each signing it, RFC 4035
  §2.2) and, when given, the CDS and CDNSKEY RRsets for the parent (RFC 7344 §4,
  :mod:`pillarbox.dns.cds`), and an answer to a query with DO (RFC 3225 §3, echoed in
  the reply's OPT) carries each RRset of every section followed by its RRSIG (RFC 4035
  §3.1.1). Denial is compact (RFC 9824 §3, :mod:`pillarbox.dns.signing`): a negative answer
  adds one NSEC at the last name looked up after the SOA, and a name that does not exist is
  answered NOERROR; without DO it stays NXDOMAIN and nothing is signed. A query with the
  Compact Answers OK flag (CO, RFC 9824 §5.1) gets NXDOMAIN with the same compact denial and
  CO in the reply's OPT: its resolver reads the NXNAME and restores the rcode for its
  clients. Every name of a
  signed zone owns that NSEC, so an NSEC query gets it as its answer; a query for the NXNAME
  meta-type gets FORMERR (RFC 9824 §3.5). RRSIG queries are answered as any type the name
  lacks (no RRset of signatures is assembled). AD is never set on a signed zone's answers
  (RFC 4035 §3.1.6): a validator judges the signatures itself.
* A zone built with ``authentic`` (unsigned) sets AD when the query has AD or DO (RFC 4035
  §3.1.6: a server's local policy may hold its own authoritative data authentic; RFC 6840
  §5.7, §5.8): with no signatures served, this only serves a client that trusts this server
  as its validating resolver, as the DANE delivery tests' resolver does. A signed zone
  ignores it.
* Negative answers (RFC 2308 §2): NXDOMAIN when the name owns nothing and has nothing below it;
  NODATA (NOERROR, empty answer) when it exists, also as an empty non-terminal (RFC 8020). Both
  carry the zone's SOA in the authority section with TTL min(SOA TTL, MINIMUM) (RFC 2308 §3).
* CNAMEs are followed inside the zone (RFC 1034 §4.3.2 step 3a), at most :data:`MAX_CNAME_CHAIN`
  links; the RCODE is that of the last name in the chain (RFC 6604 §3).
* A/AAAA of in-zone MX, SRV and NS targets go in the additional section (RFC 1035 §3.3.9).
* Names match case-insensitively (RFC 4343); the question and the answer's first owner name are
  echoed as the client wrote them.
* UDP answers fit 512 octets, or the EDNS0 payload the query offers capped by ours (RFC 6891
  §6.2.5); a larger answer goes out with TC set and no records (RFC 2181 §9) and the client asks
  again over TCP. Signatures count: a signed answer that does not fit is truncated whole
  (RFC 4035 §3.1.1 lets no RRset go without its RRSIG). A UDP answer that needs a new
  signature over the signer's budget (:class:`~pillarbox.dns.signing.SignatureBudget`) is
  sent the same way, TC and no records, and is signed when asked again over TCP. TCP
  messages carry a two-octet length (RFC 1035 §4.2.2); one connection may carry many
  queries, answered in order (RFC 7766 §6.2.1.1), until it idles out.
* Malformed queries get FORMERR when the header is readable and are dropped otherwise; a packet
  with QR set is never answered (no reflection loops); opcodes other than QUERY get NOTIMP; an
  EDNS version other than 0 gets BADVERS (RFC 6891 §6.1.3). A source that fails gives SERVFAIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from dnslib import (
    CLASS,
    EDNS0,
    QTYPE,
    RCODE,
    RD,
    RR,
    SOA,
    TXT,
    DNSBuffer,
    DNSError,
    DNSHeader,
    DNSLabel,
    DNSRecord,
)

from pillarbox.dns.records import DnsRecord, character_strings, normalise_name
from pillarbox.dns.signing import NXNAME, SigningDeferred, ZoneSigner, nsec_rdata
from pillarbox.errors import InvalidName, UserError
from pillarbox.observability.log import Log

MAX_CNAME_CHAIN = 8
UDP_LIMIT_WITHOUT_EDNS = 512  # RFC 1035 §4.2.1
MAX_TCP_MESSAGE = 65_535  # RFC 1035 §4.2.2: two-octet length
HEADER_LENGTH = 12
OPCODE_QUERY = 0
EDNS_VERSION = 0
BADVERS_EXTENDED = 1  # RFC 6891 §9: BADVERS is 16 = extended RCODE 1, header RCODE 0
#: RFC 3225 §3: DNSSEC OK, the top bit of the OPT TTL's 16 flag bits.
EDNS_DO = 0x8000
#: RFC 9824 §5.1: Compact Answers OK, the flag bit after DO (IANA "EDNS Header Flags" bit 1).
EDNS_CO = 0x4000
#: A deferred signing is logged the first time and then once per this many.
OVER_BUDGET_LOG_EVERY = 1000
#: Our largest UDP reply to an EDNS0 client (DNS Flag Day 2020: no IP fragmentation).
DEFAULT_UDP_PAYLOAD = 1232

if TYPE_CHECKING:
    from pillarbox.dns.transfer import ZoneTransfers

_log = Log("dns.authoritative")


class ZoneError(UserError):
    """A set of records cannot form a zone (a name outside it, CNAME beside other data, …)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SoaSettings:
    """The SOA fields a zone without secondaries still publishes (RFC 1035 §3.3.13)."""

    serial: int = 1
    refresh: int = 3_600
    retry: int = 900
    expire: int = 1_209_600
    #: Negative-caching TTL (RFC 2308 §4).
    minimum: int = 300
    ttl: int = 3_600
    #: Mailbox of the person responsible, as a name; empty: ``hostmaster.<origin>``.
    hostmaster: str = ""


DEFAULT_SOA = SoaSettings()


def _key(label: Any) -> str:
    """A dnslib name as our lookup key: lowercase, no final dot (RFC 4343). A dot inside a
    label (``mx\\.a.test``: one label ``mx.a``) is a character of that label, not a separator
    (RFC 1035 §5.1), but dnslib prints it bare, which made the name ``mx.a.test``; it is
    written as ``\\046`` instead, so it matches none of our names and splits no label."""
    parts = label.label
    if any(b"." in part for part in parts):
        return ".".join(part.decode("latin-1").replace(".", "\\046") for part in parts).lower()
    return str(label).rstrip(".").lower()


class StaticZone:
    """One zone with fixed contents, indexed for lookups.

    The apex always has an SOA (built from ``soa``) and NS records: the NS records given among
    ``records``, else one per name in ``nameservers``, else ``ns.<origin>``.
    """

    def __init__(
        self,
        origin: str,
        records: Iterable[DnsRecord] = (),
        *,
        nameservers: Sequence[str] = (),
        soa: SoaSettings = DEFAULT_SOA,
        authentic: bool = False,
        signer: ZoneSigner | None = None,
        cds: Sequence[tuple[int, Sequence[bytes]]] = (),
    ) -> None:
        """``cds``: the CDS and CDNSKEY RRsets of the apex as (type, rdatas in wire form),
        served only by a signed zone (RFC 7344 §4.1: they MUST be signed)."""
        if cds and signer is None:
            raise ZoneError(f"{origin}: CDS and CDNSKEY are served signed only (RFC 7344 §4.1)")
        self.origin = normalise_name(origin)
        #: Answers carry AD for clients asking for it (module notes); never a signed zone's.
        self.authentic = authentic and signer is None
        #: Signs the answers to queries with DO (module notes); None: an unsigned zone.
        self.signer = signer
        self._nodes: dict[str, dict[int, list[Any]]] = {}
        self._names: set[str] = {self.origin}  # owner names and their ancestors in the zone
        for record in records:
            self._add(record)
        apex = self._nodes.setdefault(self.origin, {})
        if QTYPE.SOA in apex:
            raise ZoneError(f"{self.origin}: the SOA record is built from SoaSettings")
        if QTYPE.NS not in apex:
            for ns in nameservers or (f"ns.{self.origin}",):
                self._add(DnsRecord(self.origin, "NS", normalise_name(ns) + ".", soa.ttl))
        primary = _key(apex[QTYPE.NS][0].rdata.label)
        rname = normalise_name(soa.hostmaster or f"hostmaster.{self.origin}")
        self.soa = RR(
            DNSLabel(self.origin + "."),
            QTYPE.SOA,
            ttl=soa.ttl,
            rdata=SOA(
                primary + ".",
                rname + ".",
                (soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum),
            ),
        )
        apex[QTYPE.SOA] = [self.soa]
        if signer is not None:  # RFC 4035 §2.1: the zone's DNSKEY RRset at its apex
            apex[QTYPE.DNSKEY] = [
                RR(
                    DNSLabel(self.origin + "."),
                    QTYPE.DNSKEY,
                    ttl=soa.ttl,
                    rdata=RD(key.dnskey_wire),
                )
                for key in signer.keys
            ]
            for rtype, rdatas in cds:  # RFC 7344 §4: at the apex, beside the DNSKEY RRset
                apex[rtype] = [
                    RR(DNSLabel(self.origin + "."), rtype, ttl=soa.ttl, rdata=RD(wire))
                    for wire in rdatas
                ]
        #: TTL of the SOA in negative answers (RFC 2308 §3), and of the NSEC denying a name
        #: (RFC 9077 §3.2: the same minimum).
        self.negative_ttl = min(soa.ttl, soa.minimum)

    def _add(self, record: DnsRecord) -> None:
        name = normalise_name(record.name)
        if not self.contains(name):
            raise ZoneError(f"{name} is outside the zone {self.origin}")
        rr = _to_rr(name, record)
        node = self._nodes.setdefault(name, {})
        if (rr.rtype == QTYPE.CNAME and node) or QTYPE.CNAME in node:
            raise ZoneError(f"{name}: a CNAME cannot share its name (RFC 1034 §3.6.2)")
        node.setdefault(rr.rtype, []).append(rr)
        while name != self.origin:
            self._names.add(name)
            name = name.partition(".")[2]

    def contains(self, name: str) -> bool:
        """``name`` (lowercase, no final dot) is the apex or below it."""
        return name == self.origin or name.endswith("." + self.origin)

    def node(self, name: str) -> dict[int, list[Any]] | None:
        """The RRsets owned by ``name`` by type; None if it owns none."""
        return self._nodes.get(name)

    def exists(self, name: str) -> bool:
        """``name`` owns records or has names below it (an empty non-terminal, RFC 8020)."""
        return name in self._names

    def rrsets(self) -> list[tuple[str, int, int, list[bytes]]]:
        """Every RRset of the zone as (owner, type, TTL, rdatas in wire form), the apex SOA
        first: what a zone transfer carries (:mod:`pillarbox.dns.transfer`)."""
        found = [(self.origin, QTYPE.SOA, self.soa.ttl, [_rdata_wire(self.soa)])]
        for name, node in self._nodes.items():
            for rtype, rrs in node.items():
                if rtype != QTYPE.SOA:
                    ttl = min(rr.ttl for rr in rrs)  # RFC 2181 §5.2: one TTL per RRset
                    found.append((name, rtype, ttl, [_rdata_wire(rr) for rr in rrs]))
        return found


def _to_rr(name: str, record: DnsRecord) -> Any:
    if record.type == "TXT":
        # Built from octets: zone-file escapes (\DDD) would be mis-decoded by dnslib's parser.
        return RR(
            DNSLabel(name + "."),
            QTYPE.TXT,
            ttl=record.ttl,
            rdata=TXT(list(character_strings(record.value))),
        )
    try:
        parsed = RR.fromZone(f"{name}. {record.ttl} IN {record.type} {record.value}")
    except (DNSError, ValueError, KeyError, IndexError) as exc:
        raise ZoneError(f"{name} {record.type} {record.value!r}: {exc}") from None
    if len(parsed) != 1:
        raise ZoneError(f"{name} {record.type} {record.value!r}: not one record")
    return parsed[0]


class ZoneSource(Protocol):
    """Where the server finds zones: fixed ones, or built from the store per query."""

    async def zone_for(self, name: str) -> StaticZone | None:
        """The served zone ``name`` (lowercase, no final dot) belongs to, or None."""
        ...


class StaticZones:
    """A :class:`ZoneSource` over fixed zones; the closest enclosing zone answers."""

    def __init__(self, zones: Iterable[StaticZone]) -> None:
        self._zones = {zone.origin: zone for zone in zones}

    @classmethod
    def from_records(
        cls,
        records: Iterable[DnsRecord],
        *,
        origins: Iterable[str],
        soa: SoaSettings = DEFAULT_SOA,
        authentic: Iterable[str] = (),
    ) -> StaticZones:
        """Zones for ``origins``, each record placed in the closest one that contains it; the
        zones of the origins in ``authentic`` set AD (:class:`StaticZone`)."""
        signed = {normalise_name(o) for o in authentic}
        names = sorted({normalise_name(o) for o in origins}, key=len, reverse=True)
        grouped: dict[str, list[DnsRecord]] = {origin: [] for origin in names}
        for record in records:
            owner = normalise_name(record.name)
            origin = next((o for o in names if owner == o or owner.endswith("." + o)), None)
            if origin is None:
                raise ZoneError(f"{owner} is in none of the zones {', '.join(names)}")
            grouped[origin].append(record)
        return cls(
            StaticZone(origin, rs, soa=soa, authentic=origin in signed)
            for origin, rs in grouped.items()
        )

    async def zone_for(self, name: str) -> StaticZone | None:
        while True:
            zone = self._zones.get(name)
            if zone is not None:
                return zone
            if "." not in name:
                return None
            name = name.partition(".")[2]


def _additional(zone: StaticZone, answers: list[Any]) -> list[Any]:
    """RFC 1035 §3.3.9: addresses of in-zone hosts the answer names (MX, SRV, NS)."""
    extra: list[Any] = []
    seen: set[str] = set()
    for rr in answers:
        if rr.rtype in (QTYPE.MX, QTYPE.NS):
            target = _key(rr.rdata.label)
        elif rr.rtype == QTYPE.SRV:
            target = _key(rr.rdata.target)
        else:
            continue
        node = zone.node(target)
        if target in seen or node is None:
            continue
        seen.add(target)
        extra += node.get(QTYPE.AAAA, []) + node.get(QTYPE.A, [])
    return extra


def answer_from_zone(zone: StaticZone, request: Any, *, deferrable: bool = False) -> Any:
    """The authoritative reply to a parsed one-question QUERY for a name inside ``zone``.
    ``deferrable`` (a UDP query): raise :class:`SigningDeferred` rather than sign over the
    signing budget."""
    question = request.q
    reply = _reply_header(request, rcode=RCODE.NOERROR, aa=True)
    name, qtype = _key(question.qname), question.qtype
    secure = zone.signer is not None and _dnssec_ok(request)
    if zone.signer is not None and qtype == QTYPE.NSEC:
        # Every name of a signed zone owns an NSEC (module notes): the one a denial would carry.
        reply.add_answer(_denial(zone, question.qname, name))
        return _signed(zone, reply, deferrable=deferrable) if secure else reply
    negative = False
    for link in range(MAX_CNAME_CHAIN):
        node = zone.node(name)
        if node is None:
            negative = True
            if not zone.exists(name) and (not secure or _edns_flags(request) & EDNS_CO):
                # RFC 9824 §3: a signed answer says NOERROR, its NSEC claiming the name exists,
                # unless the resolver takes NXDOMAIN beside that NSEC (CO, RFC 9824 §5.1).
                reply.header.rcode = RCODE.NXDOMAIN
            break
        if qtype == QTYPE.ANY:
            found = [rr for rrs in node.values() for rr in rrs]
        else:
            found = node.get(qtype) or node.get(QTYPE.CNAME, [])
        negative = not found
        for rr in found:
            # The first owner name echoes the question's spelling (RFC 4343 §4.1).
            owner = question.qname if link == 0 else rr.rname
            reply.add_answer(RR(owner, rr.rtype, rr.rclass, rr.ttl, rr.rdata))
        if not found or found[0].rtype != QTYPE.CNAME or qtype in (QTYPE.CNAME, QTYPE.ANY):
            break
        name = _key(found[0].rdata.label)
        if not zone.contains(name):
            break  # the client's resolver follows it out of the zone
    if negative:  # RFC 2308 §2.1, §2.2: also after a CNAME chain that ends in nothing
        soa = zone.soa
        reply.add_auth(RR(soa.rname, QTYPE.SOA, ttl=zone.negative_ttl, rdata=soa.rdata))
        if secure:  # RFC 4035 §3.1.3.1, §3.1.3.2 with RFC 9824 §3: one NSEC at the name
            reply.add_auth(_denial(zone, DNSLabel(name + "."), name))
    for rr in _additional(zone, reply.rr):
        reply.add_ar(rr)
    if secure:
        return _signed(zone, reply, deferrable=deferrable)
    if zone.authentic and (request.header.ad or _dnssec_ok(request)):
        reply.header.ad = 1  # RFC 4035 §3.1.6, RFC 6840 §5.8
    return reply


def _denial(zone: StaticZone, owner: Any, name: str) -> Any:
    """The compact-denial NSEC at ``name`` (written as ``owner``) of a signed zone: the types
    the name has, none for an empty non-terminal, NXNAME if it does not exist (RFC 9824 §3)."""
    node = zone.node(name)
    types = list(node) if node is not None else [] if zone.exists(name) else None
    return RR(owner, QTYPE.NSEC, ttl=zone.negative_ttl, rdata=RD(nsec_rdata(name, types)))


def _signed(zone: StaticZone, reply: Any, *, deferrable: bool) -> Any:
    """``reply`` with each RRset of every section followed by its RRSIG (RFC 4035 §3.1.1)."""
    signer = zone.signer
    assert signer is not None  # only signed zones' answers come here
    for section in (reply.rr, reply.auth, reply.ar):
        signed: list[Any] = []
        for rrset in _rrsets(section):
            # RFC 2181 §5.2: one TTL per RRset, and the signature covers it (RFC 4034 §3).
            ttl = min(rr.ttl for rr in rrset)
            first = rrset[0]
            rdatas = [_rdata_wire(rr) for rr in rrset]
            owner = _key(first.rname)
            rrsigs = signer.rrsigs(owner, first.rtype, ttl, rdatas, deferrable=deferrable)
            signed += [RR(rr.rname, rr.rtype, rr.rclass, ttl, rr.rdata) for rr in rrset]
            signed += [RR(first.rname, QTYPE.RRSIG, ttl=ttl, rdata=RD(sig)) for sig in rrsigs]
        section[:] = signed
    # RFC 4035 §3.1.6: AD stays clear; a validator makes up its own mind from the signatures.
    return reply


def _rrsets(records: list[Any]) -> list[list[Any]]:
    """Records grouped into RRsets (owner, type), in order of first appearance."""
    groups: dict[tuple[str, int], list[Any]] = {}
    for rr in records:
        groups.setdefault((_key(rr.rname), rr.rtype), []).append(rr)
    return list(groups.values())


def _rdata_wire(rr: Any) -> bytes:
    """An rdata alone in wire form, its names compressed (if at all) only against itself."""
    buffer = DNSBuffer()
    rr.rdata.pack(buffer)
    return bytes(buffer.data)


def _edns_flags(request: Any) -> int:
    """The 16 flag bits of the query's OPT (RFC 6891 §6.1.3: the low half of its TTL), 0
    without one."""
    return next((rr.ttl & 0xFFFF for rr in request.ar if rr.rtype == QTYPE.OPT), 0)


def _dnssec_ok(request: Any) -> bool:
    """The query's EDNS0 DO bit (RFC 3225 §3)."""
    return bool(_edns_flags(request) & EDNS_DO)


def _reply_opt(request: Any, udp_payload: int) -> Any:
    """The reply's OPT: our payload size, with the query's DO (RFC 3225 §3) and CO (RFC 9824
    §5.1: set in replies to queries with it, by a server that restores NXDOMAIN) copied."""
    opt = EDNS0(udp_len=udp_payload)
    opt.ttl |= _edns_flags(request) & (EDNS_DO | EDNS_CO)
    return opt


def _reply_header(request: Any, *, rcode: int, aa: bool) -> Any:
    header = DNSHeader(
        id=request.header.id,
        qr=1,
        aa=int(aa),
        rd=request.header.rd,
        ra=0,
        opcode=request.header.opcode,
        rcode=rcode,
    )
    return DNSRecord(header, questions=list(request.questions))


def error_reply(data: bytes, rcode: int) -> bytes:
    """A bare reply (no sections) to a query that is not parsed further, from its raw header."""
    query_id, flags = struct.unpack("!HH", data[:4])
    opcode_and_rd = flags & 0x7900  # keep OPCODE (bits 11-14) and RD (bit 8)
    return struct.pack("!HHHHHH", query_id, 0x8000 | opcode_and_rd | rcode, 0, 0, 0, 0)


async def respond(
    source: ZoneSource, data: bytes, *, udp: bool, udp_payload: int = DEFAULT_UDP_PAYLOAD
) -> bytes | None:
    """The reply to one query packet, or None when none must be sent.

    ``udp_payload`` is our largest UDP reply, advertised in EDNS0; over UDP the client's EDNS0
    size (or 512 without EDNS0) lowers it, and a reply over the limit is truncated.
    """
    if len(data) < HEADER_LENGTH or data[2] & 0x80:
        return None  # not even a header, or a response: never answer (reflection loops)
    try:
        request = DNSRecord.parse(data)
    except (DNSError, ValueError, IndexError, struct.error):
        return error_reply(data, RCODE.FORMERR)
    if request.header.opcode != OPCODE_QUERY:
        return error_reply(data, RCODE.NOTIMP)
    options = [rr for rr in request.ar if rr.rtype == QTYPE.OPT]
    if len(request.questions) != 1 or len(options) > 1:  # RFC 6891 §6.1.1: at most one OPT
        return error_reply(data, RCODE.FORMERR)
    edns = options[0] if options else None
    limit = MAX_TCP_MESSAGE
    if udp:
        offered = edns.rclass if edns is not None else UDP_LIMIT_WITHOUT_EDNS
        limit = max(UDP_LIMIT_WITHOUT_EDNS, min(offered, udp_payload))
    if edns is not None and (edns.ttl >> 16) & 0xFF != EDNS_VERSION:
        reply = _reply_header(request, rcode=RCODE.NOERROR, aa=False)
        reply.add_ar(EDNS0(udp_len=udp_payload, ext_rcode=BADVERS_EXTENDED))
        return bytes(reply.pack())  # dnslib packs into a bytearray
    try:
        reply = await _answer(source, request, deferrable=udp)
    except SigningDeferred as over:
        # signing.py notes: no unsigned answer, no failure; TC sends the resolver to TCP,
        # where the answer is signed (RFC 2181 §9: a truncated answer is asked again).
        if over.over_budget == 1 or over.over_budget % OVER_BUDGET_LOG_EVERY == 0:
            _log.warning(
                "dnssec signing over budget: UDP answers needing a new signature get TC",
                name=str(request.q.qname),
                over_budget=over.over_budget,
            )
        return _truncated(request, edns, udp_payload, rcode=RCODE.NOERROR, aa=True)
    if edns is not None:
        reply.add_ar(_reply_opt(request, udp_payload))
    packed = bytes(reply.pack())
    if len(packed) <= limit:
        return packed
    if not udp:  # nothing smaller exists: the zone data is at fault
        _log.error("answer exceeds a TCP message", name=str(request.q.qname))
        return error_reply(data, RCODE.SERVFAIL)
    # RFC 2181 §9: too big for this datagram; set TC and send no partial RRsets.
    return _truncated(
        request, edns, udp_payload, rcode=reply.header.rcode, aa=bool(reply.header.aa)
    )


def _truncated(request: Any, edns: Any, udp_payload: int, *, rcode: int, aa: bool) -> bytes:
    """A reply with TC set and no records: the client asks again over TCP."""
    truncated = _reply_header(request, rcode=rcode, aa=aa)
    truncated.header.tc = 1
    if edns is not None:
        truncated.add_ar(_reply_opt(request, udp_payload))
    return bytes(truncated.pack())


async def _answer(source: ZoneSource, request: Any, *, deferrable: bool) -> Any:
    question = request.q
    if question.qclass != CLASS.IN or question.qtype in (QTYPE.AXFR, QTYPE.IXFR):
        return _reply_header(request, rcode=RCODE.REFUSED, aa=False)
    if question.qtype == NXNAME:  # RFC 9824 §3.5: a meta-type, never asked for
        return _reply_header(request, rcode=RCODE.FORMERR, aa=False)
    try:
        zone = await source.zone_for(_key(question.qname))
    except InvalidName:
        zone = None
    except Exception:
        _log.exception("zone source failed", name=str(question.qname))
        return _reply_header(request, rcode=RCODE.SERVFAIL, aa=False)
    if zone is None:
        return _reply_header(request, rcode=RCODE.REFUSED, aa=False)
    return answer_from_zone(zone, request, deferrable=deferrable)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerLimits:
    #: Largest UDP reply we send to an EDNS0 client.
    udp_payload: int = DEFAULT_UDP_PAYLOAD
    #: Seconds a TCP connection may sit idle (or mid-message) before we close it (RFC 7766 §6.2.3).
    tcp_idle_timeout: float = 10.0
    #: TCP connections at once; more are closed on arrival
    #: (``dns.authoritative_max_tcp_connections``).
    max_tcp_connections: int = 256
    #: UDP queries being answered at once; more are dropped (the client retries).
    max_udp_in_flight: int = 1024


DEFAULT_LIMITS = ServerLimits()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, tuple[str | Any, int]], None]) -> None:
        self._on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        _log.debug("udp error", error=str(exc))  # ICMP unreachable from a past peer: harmless


class AuthoritativeServer:
    """UDP and TCP on one address and port, answering from a :class:`ZoneSource`.

    Use as ``async with AuthoritativeServer(source) as server: await server.start(host, port)``;
    port 0 picks a free port (the same for UDP and TCP), read back from :attr:`port`.
    """

    def __init__(
        self,
        source: ZoneSource,
        *,
        limits: ServerLimits = DEFAULT_LIMITS,
        transfers: ZoneTransfers | None = None,
    ) -> None:
        """``transfers`` answers AXFR and IXFR (module notes)."""
        self._source = source
        self._limits = limits
        self._transfers = transfers
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._udp_in_flight = 0
        self._tcp_connections = 0
        self.host = ""
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        loop = asyncio.get_running_loop()
        attempts = 20 if port == 0 else 1
        for attempt in range(attempts):
            self._tcp = await asyncio.start_server(self._serve_tcp, host, port)
            bound = self._tcp.sockets[0].getsockname()[1]
            try:
                self._udp, _ = await loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self._on_datagram), local_addr=(host, bound)
                )
            except OSError:
                self._tcp.close()
                await self._tcp.wait_closed()
                self._tcp = None
                if attempt == attempts - 1:
                    raise
                continue  # port 0: TCP's free port was taken for UDP; try another
            self.host, self.port = host, bound
            _log.info("listening", address=host, port=bound)
            return

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        self._udp = None
        if self._tcp is not None:
            self._tcp.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._tcp is not None:
            await self._tcp.wait_closed()
            self._tcp = None

    async def __aenter__(self) -> AuthoritativeServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_datagram(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self._udp_in_flight >= self._limits.max_udp_in_flight:
            return
        self._udp_in_flight += 1
        self._spawn(self._answer_udp(data, addr))

    async def _replies(self, data: bytes, peer: str, *, udp: bool) -> list[bytes]:
        """The messages answering one query: many for a zone transfer, else one or none."""
        if self._transfers is not None:
            replies = await self._transfers.replies(data, peer, udp=udp)
            if replies is not None:
                return replies
        reply = await respond(self._source, data, udp=udp, udp_payload=self._limits.udp_payload)
        return [] if reply is None else [reply]

    async def _answer_udp(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            for reply in await self._replies(data, str(addr[0]), udp=True):
                if self._udp is not None:
                    self._udp.sendto(reply, addr)
        finally:
            self._udp_in_flight -= 1

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._tcp_connections >= self._limits.max_tcp_connections:
            writer.close()
            return
        self._tcp_connections += 1
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)  # so close() ends connections, not only the listener
        idle = self._limits.tcp_idle_timeout
        peer = str(writer.get_extra_info("peername")[0])
        try:
            while True:
                # Any partial message counts as activity only once complete: a client that
                # trickles a query slower than the idle timeout is cut off.
                (length,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), idle))
                query = await asyncio.wait_for(reader.readexactly(length), idle)
                for reply in await self._replies(query, peer, udp=False):
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await asyncio.wait_for(writer.drain(), idle)
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass  # the client closed, stalled or vanished: the connection simply ends
        finally:
            self._tcp_connections -= 1
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def serve_zones(
    source: ZoneSource,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    limits: ServerLimits = DEFAULT_LIMITS,
    transfers: ZoneTransfers | None = None,
) -> AsyncIterator[AuthoritativeServer]:
    """A running server for the block's duration; port 0 picks a free one (see ``.port``)."""
    server = AuthoritativeServer(source, limits=limits, transfers=transfers)
    async with server:
        await server.start(host, port)
        yield server
