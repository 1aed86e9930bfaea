"""Zone transfers of the hosted zones to secondary name servers: AXFR (RFC 5936), IXFR
answered with the whole zone (RFC 1995 §4), both guarded by address and TSIG (RFC 8945).

dnspython parses the transfer queries, checks their TSIG and builds the signed answers
(dnslib, which answers every other query in :mod:`pillarbox.dns.authoritative`, has no TSIG).

Implementation notes:

* Who may transfer is the primary's policy (RFC 5936 §5): an address within
  ``[dns] transfer_allowed`` and, when ``transfer_tsig_key`` is set, a query signed with that
  key. A TSIG is checked first, so that every later answer to its query is signed (RFC 8945
  §5.3); the zone is looked up last, so a stranger learns nothing of which zones are served.
  A query signed with a key we do not hold, or whose MAC does not verify, gets NOTAUTH with
  the TSIG error BADKEY or BADSIG in an unsigned TSIG record (RFC 8945 §5.2.1, §5.2.2). One
  whose MAC verifies but whose time lies outside its fudge gets NOTAUTH with BADTIME signed
  with the key (§5.2.3): its Time Signed and Fudge the query's, so the client verifies it
  despite its clock, and our time in Other Data, so it learns by how much it is off. dnspython
  checks the MAC before the time, so only the key's holder gets a signed answer, never a
  forger (a signing oracle). The most recent Time Signed per key is not kept (§5.2.3's
  SHOULD against replays within the fudge); a stranger, or an unsigned
  query when a key is required, gets REFUSED. Each refusal is logged with the peer, the zone
  and the reason: at INFO for an address not allowed (strangers try AXFR on every name
  server), at WARNING for the rest (a secondary set up wrong, or someone with a stolen
  address).
* A zone we do not serve gets NOTAUTH (RFC 5936 §2.2.1), signed like any answer to a
  verified query; a store that fails while the zone is read, SERVFAIL.
* A secondary's SOA query signed with the key (BIND signs the refresh query before each
  transfer with the key it transfers with, and rejects an unsigned answer) is answered here,
  signed (RFC 8945 §5.3), or refused as a transfer with a bad TSIG is; from any address, as
  the SOA is public. Every other SOA query, and any query when no key is set, takes the
  usual path of :mod:`pillarbox.dns.authoritative`.
* AXFR, and IXFR over TCP, get the SOA, every other RRset, and the SOA again (RFC 5936
  §2.2): RFC 1995 §4 lets an IXFR be answered so, and we keep no history of changes. An
  IXFR whose client already holds our serial gets our SOA alone (RFC 1995 §2). The records
  go in messages of about :data:`MESSAGE_BUDGET` octets, each with the question and AA; with
  TSIG each is signed, the later ones chaining the MAC of the one before (RFC 8945 §5.3.1).
* Over UDP, AXFR gets NOTIMP (RFC 5936 §4.2: AXFR over UDP is not defined); an IXFR from an
  allowed client gets our SOA alone, which sends it to TCP (RFC 1995 §2).
* Only unsigned zones are transferred: ``[dns] dnssec`` signs answers as they are asked,
  with NSECs made per query (RFC 9824), so there is no NSEC chain a secondary could serve
  denials from; the config refuses transfers beside it (docs/dns.md).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rrset
import dns.tsig

from pillarbox.config import Config
from pillarbox.dns.authoritative import MAX_TCP_MESSAGE, StaticZone, ZoneSource, error_reply
from pillarbox.dns.records import normalise_name
from pillarbox.dns.serial import serial_greater
from pillarbox.errors import ConfigError, InvalidName
from pillarbox.observability.log import Log

SOA = 6  # RFC 1035 §3.2.2
TSIG = 250  # RFC 8945 §4.2
AXFR = 252  # RFC 1035 §3.2.3
IXFR = 251  # RFC 1995 §3
#: Octets of records per message of a transfer: well within a TCP message (RFC 1035 §4.2.2),
#: and a small zone fits in one.
MESSAGE_BUDGET = 16_000
_HEADER_LENGTH = 12
_OPCODE_MASK = 0x7800  # RFC 1035 §4.1.1: OPCODE, bits 1-4 of the second 16-bit word

_log = Log("dns.transfer")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferPolicy:
    """Who may transfer the zones (module notes); the default allows no one."""

    allowed: tuple[Network, ...] = ()
    #: The TSIG key every transfer must be signed with; None: the address alone decides.
    key: dns.tsig.Key | None = None

    def allows(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer.partition("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack listener reports IPv4 peers so
        return any(address in network for network in self.allowed)


def tsig_key(config: Config) -> dns.tsig.Key | None:
    """The ``[dns] transfer_tsig_key`` with its secret read from its file (HMAC-SHA256, the
    algorithm RFC 8945 §6 requires every implementation to have); None when not set."""
    section = config.dns
    if not section.transfer_tsig_key:
        return None
    path = config.resolve_path(section.transfer_tsig_secret_file)
    try:
        text = path.read_text(encoding="ascii").strip()
        secret = base64.b64decode(text, validate=True)
    except OSError as exc:
        raise ConfigError("dns.transfer_tsig_secret_file", f"{path}: {exc.strerror}") from None
    except (UnicodeDecodeError, binascii.Error):
        raise ConfigError("dns.transfer_tsig_secret_file", f"{path}: not base64") from None
    if len(secret) < 16:
        # RFC 8945 §6.2: a key shorter than half the HMAC output weakens it.
        raise ConfigError("dns.transfer_tsig_secret_file", f"{path}: under 16 octets of secret")
    try:
        return dns.tsig.Key(section.transfer_tsig_key, secret, dns.tsig.HMAC_SHA256)
    except dns.exception.DNSException:
        raise ConfigError("dns.transfer_tsig_key", "not a domain name") from None


def transfer_policy(config: Config) -> TransferPolicy:
    return TransferPolicy(
        allowed=tuple(ipaddress.ip_network(n, strict=False) for n in config.dns.transfer_allowed),
        key=tsig_key(config),
    )


def transfer_type(data: bytes) -> int | None:
    """AXFR or IXFR when ``data`` is a one-question QUERY asking for one, else None (read
    from the wire without parsing the rest: every query of the server passes here)."""
    qtype = question_type(data)
    return qtype if qtype in (AXFR, IXFR) else None


def question_type(data: bytes) -> int | None:
    """The QTYPE of a one-question QUERY, else None (:func:`transfer_type`)."""
    if len(data) < _HEADER_LENGTH:
        return None
    flags, questions = struct.unpack("!HH", data[2:6])
    if flags & 0x8000 or flags & _OPCODE_MASK or questions != 1:
        return None
    position = _HEADER_LENGTH
    while position < len(data) and data[position] != 0:
        if data[position] & 0xC0:
            return None  # a compression pointer in the first name: no transfer query has one
        position += 1 + data[position]
    if position + 3 > len(data):
        return None
    (qtype,) = struct.unpack("!H", data[position + 1 : position + 3])
    return int(qtype)


def ends_with_tsig(data: bytes) -> bool:
    """``data``'s last record is a TSIG (RFC 8945 §4.1: where a signed message has it), read
    from the wire by skipping each record (parsing the whole query would cost every SOA query
    with EDNS some 100 µs more)."""
    if len(data) < _HEADER_LENGTH:
        return False
    questions, *records = struct.unpack("!HHHH", data[4:_HEADER_LENGTH])
    position, rtype = _HEADER_LENGTH, None
    for index in range(questions + sum(records)):
        position = _name_end(data, position)
        if position + 4 > len(data):
            return False
        (rtype,) = struct.unpack("!H", data[position : position + 2])
        if index < questions:
            position += 4  # QTYPE, QCLASS
            continue
        if position + 10 > len(data):
            return False
        (length,) = struct.unpack("!H", data[position + 8 : position + 10])
        position += 10 + length  # TYPE, CLASS, TTL, RDLENGTH, RDATA (RFC 1035 §4.1.3)
    return sum(records) > 0 and rtype == TSIG and position == len(data)


def _name_end(data: bytes, position: int) -> int:
    """Where the name at ``position`` ends: after its root label or its compression pointer
    (RFC 1035 §4.1.4); past the end of ``data`` when it is cut short."""
    while position < len(data) and data[position] != 0:
        if data[position] & 0xC0:
            return position + 2
        position += 1 + data[position]
    return position + 1


class ZoneTransfers:
    """Answers the transfer queries the authoritative server passes on (module notes)."""

    def __init__(
        self,
        source: ZoneSource,
        policy: TransferPolicy,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock``: our time, told to a client whose TSIG time is off (module notes)."""
        self._source = source
        self._policy = policy
        self._clock = clock

    async def replies(self, data: bytes, peer: str, *, udp: bool) -> list[bytes] | None:
        """The messages answering ``data`` from ``peer``, or None when it asks no transfer."""
        qtype = question_type(data)
        if qtype == SOA:
            return await self._signed_soa(data, peer)
        if qtype not in (AXFR, IXFR):
            return None
        try:
            query = dns.message.from_wire(data, keyring=False)
        except dns.exception.DNSException:
            return [error_reply(data, dns.rcode.FORMERR)]
        kind = dns.rdatatype.to_text(dns.rdatatype.RdataType(qtype))
        zone_text = query.question[0].name.to_text(omit_final_dot=True)
        verified = self._verified(data, query, kind, zone_text, peer)
        if not isinstance(verified, dns.message.Message):
            return [verified]
        if udp and qtype == AXFR:
            return [_answer(verified, dns.rcode.NOTIMP)]  # RFC 5936 §4.2
        if not self._policy.allows(peer):
            # INFO: strangers try AXFR on every name server they find; it is no fault here.
            _log.info(
                "zone transfer refused",
                kind=kind,
                zone=zone_text,
                peer=peer,
                reason="address not in dns.transfer_allowed",
            )
            return [_answer(verified, dns.rcode.REFUSED)]  # RFC 5936 §5
        if self._policy.key is not None and not verified.had_tsig:
            # WARNING: an allowed address without the key is a secondary set up wrong.
            _log.warning(
                "zone transfer refused",
                kind=kind,
                zone=zone_text,
                peer=peer,
                reason="not signed with dns.transfer_tsig_key",
            )
            return [_answer(verified, dns.rcode.REFUSED)]
        try:
            zone = await self._zone(zone_text)
        except Exception:  # the store failed: as respond() answers any query then
            _log.exception("zone source failed", kind=kind, zone=zone_text, peer=peer)
            return [_answer(verified, dns.rcode.SERVFAIL)]
        if zone is None or query.question[0].rdclass != dns.rdataclass.IN:
            _log.warning("zone transfer of a zone not served", kind=kind, zone=zone_text, peer=peer)
            return [_answer(verified, dns.rcode.NOTAUTH)]  # RFC 5936 §2.2.1
        rrsets = zone.rrsets()
        soa = rrsets[0]
        serial = _serial(soa)
        if qtype == IXFR and (udp or not _behind(query, serial)):
            sequence = [soa]  # RFC 1995 §2: up to date, or come back over TCP
        else:
            sequence = [*rrsets, soa]  # RFC 5936 §2.2
        messages = _messages(verified, sequence)
        _log.info(
            "zone transferred",
            kind=kind,
            zone=zone.origin,
            serial=serial,
            peer=peer,
            records=sum(len(rdatas) for *_, rdatas in sequence),
            messages=len(messages),
            tsig=verified.had_tsig,
        )
        return messages

    async def _signed_soa(self, data: bytes, peer: str) -> list[bytes] | None:
        """The signed answer to a secondary's SOA query signed with TSIG (module notes); None
        for an unsigned one, which the usual path answers."""
        if self._policy.key is None or not ends_with_tsig(data):
            return None
        try:
            query = dns.message.from_wire(data, keyring=False)
        except dns.exception.DNSException:
            return None  # the usual path answers FORMERR
        if not query.had_tsig:
            return None
        zone_text = query.question[0].name.to_text(omit_final_dot=True)
        verified = self._verified(data, query, "SOA", zone_text, peer)
        if not isinstance(verified, dns.message.Message):
            return [verified]
        try:
            zone = await self._zone(zone_text)
        except Exception:
            _log.exception("zone source failed", kind="SOA", zone=zone_text, peer=peer)
            return [_answer(verified, dns.rcode.SERVFAIL)]
        if zone is None:
            return [_answer(verified, dns.rcode.NOTAUTH)]
        return _messages(verified, zone.rrsets()[:1])

    def _verified(
        self, data: bytes, query: dns.message.Message, kind: str, zone: str, peer: str
    ) -> dns.message.Message | bytes:
        """``query`` with its TSIG, if any, checked (the answers are then signed), or the
        reply refusing a TSIG that does not verify (module notes)."""
        if not query.had_tsig:
            return query
        key = self._policy.key
        keyring = {} if key is None else {key.name: key}
        try:
            return dns.message.from_wire(data, keyring=keyring)
        except dns.tsig.BadTime:  # raised once the MAC has verified: key is the query's
            assert key is not None
            reason = "TSIG time outside its fudge"
            _log.warning("zone transfer refused", kind=kind, zone=zone, peer=peer, reason=reason)
            return _badtime(query, key, int(self._clock()))
        except (dns.message.UnknownTSIGKey, dns.tsig.BadKey, dns.tsig.BadAlgorithm):
            error, reason = dns.rcode.BADKEY, "TSIG key unknown"
        except dns.exception.DNSException:
            error, reason = dns.rcode.BADSIG, "TSIG signature does not verify"
        _log.warning("zone transfer refused", kind=kind, zone=zone, peer=peer, reason=reason)
        return _tsig_error(query, error)

    async def _zone(self, name: str) -> StaticZone | None:
        """The served zone whose apex is ``name``; None for any other name."""
        try:
            origin = normalise_name(name)
        except InvalidName:
            return None
        zone = await self._source.zone_for(origin)
        return zone if zone is not None and zone.origin == origin else None


def _answer(query: dns.message.Message, rcode: dns.rcode.Rcode) -> bytes:
    """A reply with ``rcode`` and no records, signed when ``query``'s TSIG was verified."""
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    return response.to_wire()


def _badtime(query: dns.message.Message, key: dns.tsig.Key, now: int) -> bytes:
    """NOTAUTH with the TSIG error BADTIME, signed with ``key`` (RFC 8945 §5.2.3): the
    query's Time Signed and Fudge, ``now`` in Other Data (48 bits), the MAC over the query's
    MAC, the reply and these (§4.3.3)."""
    assert query.tsig is not None and query.keyname is not None  # only signed queries come
    request = query.tsig[0]
    response = dns.message.make_response(query)  # query read unverified: no TSIG of its own
    response.set_rcode(dns.rcode.NOTAUTH)
    unsigned = response.to_wire()
    variables = request.replace(error=dns.rcode.BADTIME, other=now.to_bytes(6, "big"))
    # dnspython's own signing stamps the clock's time; tsig.sign (unannotated) takes ours.
    signed, _ctx = dns.tsig.sign(  # type: ignore[no-untyped-call]
        unsigned, key, variables, request.time_signed, request.mac
    )
    response.tsig = dns.rrset.from_rdata(query.keyname, 0, signed)
    return response.to_wire()


def _tsig_error(query: dns.message.Message, error: dns.rcode.Rcode) -> bytes:
    """NOTAUTH carrying the TSIG ``error`` in a TSIG record with no MAC (RFC 8945 §5.2.1,
    §5.2.2)."""
    response = dns.message.make_response(query)
    response.set_rcode(dns.rcode.NOTAUTH)
    assert query.tsig is not None and query.keyname is not None  # only signed queries come
    rdata = query.tsig[0].replace(mac=b"", error=error, other=b"")
    response.tsig = dns.rrset.from_rdata(query.keyname, 0, rdata)
    return response.to_wire()


#: An RRset as :meth:`StaticZone.rrsets` gives it: owner, type, TTL, rdatas in wire form.
RRsetData = tuple[str, int, int, list[bytes]]


def _serial(soa: RRsetData) -> int:
    rdata = _rdata(soa[1], soa[3][0])
    assert isinstance(rdata, dns.rdtypes.ANY.SOA.SOA)
    return int(rdata.serial)


def _behind(query: dns.message.Message, serial: int) -> bool:
    """The IXFR's client holds an older serial than ``serial`` (RFC 1995 §3: its SOA is in
    the authority section; none: it holds nothing)."""
    for rrset in query.authority:
        if rrset.rdtype == dns.rdatatype.SOA:
            return serial_greater(serial, int(rrset[0].serial))
    return True


def _rdata(rtype: int, wire: bytes) -> dns.rdata.Rdata:
    return dns.rdata.from_wire(
        dns.rdataclass.IN, dns.rdatatype.RdataType(rtype), wire, 0, len(wire)
    )


def _messages(query: dns.message.Message, sequence: list[RRsetData]) -> list[bytes]:
    """``sequence``'s RRsets in messages of about :data:`MESSAGE_BUDGET` octets, signed as
    one TSIG chain when ``query`` was (RFC 8945 §5.3.1)."""
    batches: list[list[dns.rrset.RRset]] = [[]]
    size = 0
    for owner, rtype, ttl, rdatas in sequence:
        rrset = dns.rrset.RRset(
            dns.name.from_text(owner + "."), dns.rdataclass.IN, dns.rdatatype.RdataType(rtype)
        )
        for wire in rdatas:
            rrset.add(_rdata(rtype, wire), ttl)
        # Each record uncompressed: owner, type, class, TTL, length, data (RFC 1035 §4.1.3).
        octets = sum(len(owner) + 2 + 10 + len(wire) for wire in rdatas)
        if batches[-1] and size + octets > MESSAGE_BUDGET:
            batches.append([])
            size = 0
        batches[-1].append(rrset)
        size += octets
    wires = []
    chain = None
    for batch in batches:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        response.answer = batch
        # Over TCP the limit is the message's (RFC 1035 §4.2.2), not the EDNS payload of the
        # query, which dnspython would otherwise apply.
        wires.append(response.to_wire(max_size=MAX_TCP_MESSAGE, multi=True, tsig_ctx=chain))
        chain = response.tsig_ctx
    return wires
