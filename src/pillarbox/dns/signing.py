"""DNSSEC for the zones of the authoritative server: the zone's key, signatures made as answers
go out (online signing), and the NSEC records that deny existence.

dnspython makes every signature and record (``dns.dnssec``); this module decides what is
signed, when, and with which times. It does no I/O: the clock is an argument.

Implementation notes:

* **One key signs a zone**, a combined signing key (CSK): flags 257, Zone Key and Secure
  Entry Point (RFC 4034 §2.1.1), algorithm 13, ECDSA P-256 with SHA-256 (RFC 8624 §3.1: MUST
  for signing; RFC 6605), so one DS at the parent, and signatures of 64 octets. The DS
  offered to the registrar uses digest type 2, SHA-256 (RFC 8624 §3.3: MUST; RFC 4509).
  During a rollover (:mod:`pillarbox.dns.rollover`) the next or the previous key stands
  beside it in the DNSKEY RRset and signs that RRset too, and the CDS and CDNSKEY RRsets
  (:mod:`pillarbox.dns.cds`; RFC 7344 §4.1: signed by a key the parent's DS names, which may
  be either), nothing else.
* **Signatures are made on demand** for the RRsets an answer carries, and cached by the
  RRset's canonical content (RFC 4034 §6.2) and TTL, so a changed zone is signed anew and an
  unchanged one is not. Each signature's inception lies ``inception_offset`` in the past, so
  a validator whose clock runs behind still accepts it (RFC 6781 §4.4.2.2); it expires
  ``validity`` after inception (RFC 4034 §3.1.5) and is made again once it is ``refresh``
  old, well before a cached copy anywhere expires. The RRSIG's TTL and Original TTL are the
  TTL the RRset is served with (RFC 4034 §3, §3.1.4).
* **Denial of existence is compact** (RFC 9824): an answer without data carries one NSEC at
  the query name whose Next Domain Name is that name's immediate successor (``\\000.`` in front,
  RFC 4034 §6.1), so it covers no other name, and whose type bitmap lists the types the name
  has (with RRSIG and NSEC, RFC 4035 §2.3) — none for an empty non-terminal, and for a name
  that does not exist only RRSIG, NSEC and the NXNAME meta-type (RFC 9824 §3.2). Such a name
  is answered NOERROR rather than NXDOMAIN (RFC 9824 §3): the NSEC claims it exists. Chosen
  over RFC 4470's minimally covering NSEC pairs because one NSEC and one signature answer
  every negative question (smaller answers, one signing per name), no neighbouring names are
  computed (an ordering mistake there would deny names that exist), no wildcard proof is
  needed, and it walks nothing of the zone; Knot DNS, Cloudflare, NS1 and Route 53 serve it.
  The zones serve no wildcards, so no answer needs a wildcard's proof either.
* **New signatures are budgeted** (:class:`SignatureBudget`): each costs an ECDSA signing
  (about 0.6 ms, ``bench/dnssec.py``) on the event loop the mail services share, and names
  that do not exist, asked at random, each need one; no cache helps. Over the budget an
  answer that needs a new signature is not made over UDP: the server answers TC=1 and the
  resolver asks again over TCP (BIND's and Knot's response-rate-limiting "slip"), where it
  is signed (the budget counts it). A spoofed flood never completes a TCP handshake; a flood
  through real resolvers costs them a connection a name; every validator still gets a
  signed answer. An unsigned answer would be bogus to validators, and SERVFAIL or REFUSED
  would fail them: neither is sent.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import dns.dnssec
import dns.dnssectypes
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.DNSKEY
import dns.rrset
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pillarbox.dns.records import DnsRecord

#: RFC 8624 §3.1: ECDSAP256SHA256, MUST implement for signing.
ALGORITHM = dns.dnssectypes.Algorithm.ECDSAP256SHA256
#: RFC 4034 §2.1.1: Zone Key (256) + Secure Entry Point (1): one key signs everything.
CSK_FLAGS = 257
#: RFC 8624 §3.3: SHA-256 (digest type 2) is the DS digest to publish.
DS_DIGEST = "SHA256"
#: RFC 9824 §3.2: the meta-type marking a name that does not exist in a compact answer.
NXNAME = 128
RRSIG = 46
NSEC = 47
DNSKEY = 48
CDS = 59  # RFC 7344 §3.2
CDNSKEY = 60  # RFC 7344 §3.1
#: The apex RRsets every key of the DNSKEY RRset signs, not the active key alone (module
#: notes): a validator, or a parent checking the CDS (RFC 7344 §4.1), may trust any of them.
SIGNED_BY_EVERY_KEY = frozenset({DNSKEY, CDS, CDNSKEY})
MAX_WIRE_NAME = 255  # RFC 1035 §3.1


class ZoneKeyError(ValueError):
    """A stored zone key that is not an ECDSA P-256 private key in PEM."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningPolicy:
    """How long signatures last (``[dns] dnssec_*``)."""

    #: Seconds from a signature's inception to its expiration (RFC 4034 §3.1.5).
    validity: int = 14 * 86_400
    #: Seconds after which a cached signature is made again (before half its validity).
    refresh: int = 7 * 86_400
    #: Seconds an inception lies before the signing time, for validators whose clock is behind.
    inception_offset: int = 3_600
    #: Signatures kept per zone; a full cache is emptied (names asked at random must not grow it).
    max_cached: int = 10_000
    #: New signatures a second for UDP answers (module notes); 0: no limit.
    signatures_per_second: int = 0


DEFAULT_SIGNING = SigningPolicy()


def new_key_pem() -> bytes:
    """A new zone key: ECDSA P-256, unencrypted PKCS#8 PEM (as the store keeps it)."""
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class ZoneKey:
    """A zone's CSK: its private key, DNSKEY record and the DS the parent publishes."""

    def __init__(self, origin: str, key_pem: bytes) -> None:
        try:
            private = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ZoneKeyError(f"{origin}: the zone key does not load: {exc}") from None
        if not isinstance(private, ec.EllipticCurvePrivateKey) or not isinstance(
            private.curve, ec.SECP256R1
        ):
            raise ZoneKeyError(f"{origin}: the zone key is not ECDSA P-256")
        self.origin = origin
        self.name = dns.name.from_text(origin)
        self.private_key = private
        self.dnskey: dns.rdtypes.ANY.DNSKEY.DNSKEY = dns.dnssec.make_dnskey(
            private.public_key(), ALGORITHM, flags=CSK_FLAGS
        )
        self.key_tag = dns.dnssec.key_id(self.dnskey)  # RFC 4034 Appendix B

    @property
    def dnskey_wire(self) -> bytes:
        return rdata_wire(self.dnskey)

    def dnskey_record(self, ttl: int, state: str = "") -> DnsRecord:
        """The DNSKEY as ``dns records`` shows it (the server publishes it at the apex), its
        purpose naming the key's rollover ``state`` if given."""
        value = f"{CSK_FLAGS} 3 {int(ALGORITHM)} {base64.b64encode(self.dnskey.key).decode()}"
        purpose = f"DNSSEC zone key, tag {self.key_tag}" + (f", {state}" if state else "")
        return DnsRecord(self.origin, "DNSKEY", value, ttl, purpose)

    def ds_record(self, ttl: int) -> DnsRecord:
        """The DS record to give the registrar, so the parent zone vouches for this key."""
        ds = dns.dnssec.make_ds(self.name, self.dnskey, DS_DIGEST)
        return DnsRecord(
            self.origin, "DS", ds.to_text(), ttl, "DNSSEC delegation signer, for the registrar"
        )


def rdata_wire(rdata: dns.rdata.Rdata) -> bytes:
    """A dnspython rdata in wire form."""
    wire = rdata.to_wire()
    assert wire is not None  # returned, not written to a file
    return wire


def _rrset(owner: str, rtype: int, ttl: int, rdatas: Iterable[bytes]) -> dns.rrset.RRset:
    kind = dns.rdatatype.RdataType.make(rtype)
    rrset = dns.rrset.RRset(dns.name.from_text(owner + "."), dns.rdataclass.IN, kind)
    for wire in rdatas:
        rrset.add(dns.rdata.from_wire(dns.rdataclass.IN, kind, wire, 0, len(wire)), ttl)
    return rrset


class SigningDeferred(Exception):
    """A UDP answer needed a new signature over the budget: it is to be asked over TCP."""

    def __init__(self, over_budget: int) -> None:
        super().__init__(f"signing budget spent ({over_budget} signatures over it so far)")
        #: :attr:`SignatureBudget.over_budget` now (for a log line now and then).
        self.over_budget = over_budget


class SignatureBudget:
    """New signatures a second, shared by every zone's signer: a token bucket holding one
    second's worth, so a burst of that many passes at once."""

    def __init__(self, per_second: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_second <= 0:
            raise ValueError(f"signatures a second must be positive, got {per_second}")
        self._rate = per_second
        self._tokens = float(per_second)
        self._clock = clock
        self._last = clock()
        #: Signatures asked for over the budget since it was made (deferred, or made anyway
        #: for a TCP answer).
        self.over_budget = 0

    def take(self) -> bool:
        """Whether one more signature is within the budget now (counting it if so)."""
        now = self._clock()
        self._tokens = min(self._rate, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.over_budget += 1
        return False


class ZoneSigner:
    """Signs a zone's RRsets with its key, keeping each signature until it is due again."""

    def __init__(
        self,
        key: ZoneKey,
        policy: SigningPolicy = DEFAULT_SIGNING,
        *,
        others: Sequence[ZoneKey] = (),
        clock: Callable[[], float] = time.time,
        budget: SignatureBudget | None = None,
    ) -> None:
        """``key`` signs every RRset; ``others`` (a rollover's next or previous key) are
        published in the DNSKEY RRset and sign that RRset alone (module notes). ``budget``:
        the new signatures allowed a second, shared with other zones' signers (None: no
        limit)."""
        self.key = key
        #: The DNSKEY RRset: the signing key first.
        self.keys = (key, *others)
        self._policy = policy
        self._clock = clock
        self._budget = budget
        self._cache: dict[tuple[str, int, int, int, tuple[bytes, ...]], tuple[float, bytes]] = {}

    def rrsigs(
        self,
        owner: str,
        rtype: int,
        ttl: int,
        rdatas: Sequence[bytes],
        *,
        deferrable: bool = False,
    ) -> list[bytes]:
        """The RRSIGs an RRset is served with: the signing key's, and for the DNSKEY, CDS and
        CDNSKEY RRsets each published key's as well (RFC 4035 §2.2: one RRSIG per key that
        signs it), so a validator holding the DS of any of them authenticates the RRset (RFC
        4035 §5.2), and a parent checks the CDS with the DS it holds (RFC 7344 §4.1)."""
        if rtype not in SIGNED_BY_EVERY_KEY:
            return [self.rrsig(owner, rtype, ttl, rdatas, deferrable=deferrable)]
        return [
            self.rrsig(owner, rtype, ttl, rdatas, deferrable=deferrable, by=n)
            for n in range(len(self.keys))
        ]

    def rrsig(
        self,
        owner: str,
        rtype: int,
        ttl: int,
        rdatas: Sequence[bytes],
        *,
        deferrable: bool = False,
        by: int = 0,
    ) -> bytes:
        """The RRSIG rdata (wire) over the RRset ``owner``/``rtype`` of ``rdatas`` (each an
        rdata in wire form, names uncompressed or compressed against that rdata alone),
        served with ``ttl``, made with ``keys[by]``. ``owner`` is lowercase, without the
        final dot.

        A new signature counts against the budget; over it, a ``deferrable`` one (a UDP
        answer's) raises :class:`SigningDeferred` instead of being made."""
        # Keyed by the rdata as served: the same content always packs the same, so a lookup
        # needs no parsing; a spelling that differs only in case is merely signed once more.
        cache_key = (owner, rtype, ttl, by, tuple(sorted(rdatas)))
        now = self._clock()
        cached = self._cache.get(cache_key)
        if cached is not None and now - cached[0] < self._policy.refresh:
            return cached[1]
        budget = self._budget
        if budget is not None and not budget.take() and deferrable:
            raise SigningDeferred(budget.over_budget)
        inception = int(now) - self._policy.inception_offset
        key = self.keys[by]
        signature = dns.dnssec.sign(
            _rrset(owner, rtype, ttl, rdatas),
            key.private_key,
            key.name,
            key.dnskey,
            inception=datetime.fromtimestamp(inception, UTC),
            expiration=datetime.fromtimestamp(inception + self._policy.validity, UTC),
        )
        wire = rdata_wire(signature)
        if len(self._cache) >= self._policy.max_cached:
            self._cache.clear()
        self._cache[cache_key] = (now, wire)
        return wire


def successor(owner: str) -> dns.name.Name:
    """The name right after ``owner`` in canonical order (RFC 4034 §6.1): ``\\000.owner``; a
    name too long for that gets its first label's last octet raised by one instead (RFC 4471
    §3.1.2), past the capitals, which sort as small letters."""
    name = dns.name.from_text(owner + ".")
    if sum(len(label) + 1 for label in name.labels) + 2 <= MAX_WIRE_NAME:
        return dns.name.Name((b"\x00", *name.labels))
    first = bytearray(name.labels[0])
    while first and first[-1] == 0xFF:
        first.pop()  # nothing follows 0xff in that place: raise the octet before it
    if not first:
        raise ValueError(f"{owner}: no successor within the name's length")
    first[-1] += 1
    if ord("A") <= first[-1] <= ord("Z"):
        first[-1] = ord("Z") + 1
    return dns.name.Name((bytes(first), *name.labels[1:]))


def nsec_rdata(owner: str, types: Iterable[int] | None) -> bytes:
    """The compact-denial NSEC rdata (wire) at ``owner``: the types the name has, or (None)
    a name that does not exist (module notes)."""
    present = {RRSIG, NSEC} | ({NXNAME} if types is None else set(types))
    next_name = b"".join(bytes([len(label)]) + label for label in successor(owner).labels)
    return next_name + type_bitmap(present)


def type_bitmap(types: Iterable[int]) -> bytes:
    """The Type Bit Maps field of RFC 4034 §4.1.2: per window of 256 types in use, its number,
    its length and the bits up to the last octet with one set."""
    windows: dict[int, bytearray] = {}
    for rtype in types:
        window, low = divmod(rtype, 256)
        bits = windows.setdefault(window, bytearray(32))
        bits[low // 8] |= 0x80 >> (low % 8)
    out = bytearray()
    for window, bits in sorted(windows.items()):
        length = max(i for i, octet in enumerate(bits) if octet) + 1
        out += bytes([window, length]) + bits[:length]
    return bytes(out)
