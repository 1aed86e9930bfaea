"""Asynchronous DNS lookups for mail: MX in RFC 5321 §5.1 order, addresses, TXT, PTR.

Implementation notes:

* :class:`Resolver` is the seam (a ``typing.Protocol``): the queue, policy checks and
  ``pillarbox dns check`` take any implementation; :class:`DnsResolver` is the real one, a stub
  resolver on dnspython's asyncio resolver that asks the system's recursive server (or the one in
  ``dns.nameserver``). It never recurses itself (but finishes a CNAME chain, below).
* Outcomes are split by permanence, because the queue bounces on a permanent answer and retries on
  a temporary one: a positive answer, NODATA and NXDOMAIN are authoritative answers (permanent);
  SERVFAIL, REFUSED, timeouts, network errors and malformed responses are temporary.
  :meth:`Resolver.mx` reports all of them as a value (:class:`MxResult`); the list-returning
  lookups return ``[]`` for NXDOMAIN/NODATA and raise :class:`DnsTemporaryError` otherwise.
* A name that cannot exist in the DNS (empty label, label over 63 octets, name over 255) is
  answered like NXDOMAIN without asking anyone: no server could ever hold it.
* The cache is bounded (LRU by entry count) and keeps each answer for its TTL, capped by
  :class:`CacheLimits`; NXDOMAIN and NODATA are cached for the negative TTL of RFC 2308 §5
  (the lesser of the SOA's TTL and its MINIMUM field), capped separately. Temporary failures
  are not cached (RFC 2308 §7 allows up to five minutes; not caching them retries sooner).
  MX answers are cached as records, so equal preferences are shuffled anew on every lookup.
* Concurrent lookups of one (name, type) share one query ("single flight"): a burst of mail
  from a sender not yet cached asked for the same SPF, DKIM key and DMARC records once per
  message in flight (ten of each in the SMTP bench's first wave, docs/performance.md,
  "Session 7"). The query runs as a task of its own, so a caller that gives up (its deadline)
  does not cancel it for the others; all of them get its answer or its temporary error. When
  the last of them gives up, the query is cancelled: no task outlives every caller (nor the
  event loop that a shutdown is about to close).
* **DNSSEC status** (RFC 4035 §3.2.3, RFC 6840 §5.7): the resolver never validates; it asks
  with AD and DO set and records whether each answer came back with AD (``authentic`` on
  :class:`MxResult`, :class:`HostAddresses`, :class:`RecordSet`) — but only from a server it
  is told to trust (``trust_ad``, ``dns.trust_ad``): RFC 4035 §4.9.3 forbids relying on
  validation done elsewhere unless the channel to that server is secure, which loopback is.
  Without that trust every answer is reported unauthenticated, and DANE is never applied.
* **CNAME chains**: an address answer that ends at a CNAME whose target the server did not
  resolve (an authoritative server stops at its zone's edge, RFC 1034 §4.3.2; some
  forwarders too) is followed here, one query per link, at most :data:`MAX_CNAME_LINKS`;
  the result is authentic only if every link was (RFC 7672 §2.1.2: an insecure link makes
  all that follows insecure). Recursive servers return whole chains, so this costs nothing
  behind one.
* Names are parsed once per distinct text (:func:`_name`, a bounded LRU shared by all
  resolvers), so an answer from the cache costs two dictionary lookups and no parse.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import ipaddress
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol, cast

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.rdata
import dns.rdatatype
import dns.resolver
import dns.reversename
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA

from pillarbox.errors import ConfigError, InvalidName, PillarboxError

DEFAULT_PORT = 53
#: EDNS0 UDP payload we advertise: the DNS Flag Day 2020 value, safe from IP fragmentation;
#: DKIM keys fit without falling back to TCP.
EDNS_PAYLOAD = 1232


class DnsError(PillarboxError):
    """A lookup could not produce an answer.

    Neither a :class:`~pillarbox.errors.UserError` nor a :class:`~pillarbox.errors.ServerFault`:
    the DNS around us failed, not the caller and not Pillarbox.
    """

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


class DnsTemporaryError(DnsError):
    """SERVFAIL, REFUSED, a timeout or a network error: the same lookup may succeed later."""


class MxStatus(enum.Enum):
    FOUND = "found"
    #: NOERROR without MX records: deliver to the domain's own A/AAAA (RFC 5321 §5.1).
    NO_MX = "no-mx"
    #: NXDOMAIN, or a name that cannot exist.
    NO_DOMAIN = "no-domain"
    #: The domain says it accepts no mail (RFC 7505).
    NULL_MX = "null-mx"
    TEMPORARY = "temporary"


@dataclass(frozen=True, slots=True)
class MxHost:
    preference: int
    #: Lowercase host name without the final dot.
    host: str


@dataclass(frozen=True, slots=True)
class MxResult:
    """The outcome of an MX lookup, as a value the queue can branch on."""

    domain: str
    status: MxStatus
    #: FOUND only: by preference, equal preferences in random order (RFC 5321 §5.1).
    hosts: tuple[MxHost, ...] = ()
    #: Why a lookup failed (for logs and DSN diagnostic text).
    reason: str = ""
    #: The answer (MX records, or the NODATA of an implicit MX) was DNSSEC-authenticated by a
    #: trusted resolver: RFC 7672 §2.2.1's "secure" MX RRset.
    authentic: bool = False

    @property
    def permanent(self) -> bool:
        """The domain cannot receive mail: bounce now rather than retry."""
        return self.status in (MxStatus.NO_DOMAIN, MxStatus.NULL_MX)

    @property
    def targets(self) -> tuple[str, ...]:
        """Host names to try in order: the MX hosts, or the implicit MX (the domain itself)."""
        if self.status is MxStatus.FOUND:
            return tuple(h.host for h in self.hosts)
        if self.status is MxStatus.NO_MX:
            return (self.domain,)  # RFC 5321 §5.1: the domain is its own implicit MX
        return ()


@dataclass(frozen=True, slots=True)
class HostAddresses:
    """A and AAAA addresses of a host, and whether every answer that gave them was
    DNSSEC-authenticated (RFC 7672 §2.2.2: the addresses are "secure")."""

    addresses: tuple[str, ...]
    authentic: bool = False
    #: The CNAME-expanded name when the host is an alias, else "" (RFC 7672 §2.2.2).
    canonical: str = ""


@dataclass(frozen=True, slots=True)
class RecordSet:
    """Records of one name and type in presentation format, and whether the answer was
    DNSSEC-authenticated (a CNAME chain included: the AD bit covers the whole answer)."""

    records: tuple[str, ...]
    authentic: bool = False


TrustAd = Literal["loopback", "always", "never"]


class Resolver(Protocol):
    """What mail delivery and DNS checks need from DNS."""

    async def mx(self, domain: str) -> MxResult: ...

    async def addresses(self, host: str) -> list[str]:
        """A and AAAA addresses of ``host`` as text; ``[]`` if it has none."""
        ...

    async def txt(self, name: str) -> list[bytes]:
        """Each TXT record at ``name`` with its strings joined; ``[]`` if there is none."""
        ...

    async def ptr(self, ip: str) -> list[str]:
        """Names from the reverse zone of ``ip``; ``[]`` if there is none."""
        ...

    async def lookup(self, name: str, rtype: str) -> list[str]:
        """Records of any type in presentation format (as in a zone file); ``[]`` if none."""
        ...

    async def host_addresses(self, host: str) -> HostAddresses:
        """:meth:`addresses` with their DNSSEC status."""
        ...

    async def records(self, name: str, rtype: str) -> RecordSet:
        """:meth:`lookup` with its DNSSEC status; raises :class:`DnsTemporaryError`."""
        ...

    @property
    def trusts_ad(self) -> bool:
        """Whether ``authentic`` can ever be true: the server's AD bit is trusted."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheLimits:
    #: Entries kept; the least recently used goes first.
    max_entries: int = 10_000
    #: Cap on a positive answer's TTL (Unbound's cache-max-ttl default).
    max_ttl: int = 86_400
    #: Cap on NXDOMAIN/NODATA TTLs; RFC 2308 §5 finds one to three hours sensible.
    max_negative_ttl: int = 3_600


DEFAULT_CACHE_LIMITS = CacheLimits()


@dataclass(slots=True)
class _Flight:
    """One query in flight, and how many lookups are waiting for it."""

    task: asyncio.Task[_Outcome]
    waiters: int = 0


@dataclass(frozen=True, slots=True)
class _Outcome:
    """One (name, type) answer: records, or a negative answer telling NXDOMAIN from NODATA."""

    records: tuple[dns.rdata.Rdata, ...]
    nxdomain: bool = False
    #: AD was set on the answer by a trusted server.
    authentic: bool = False
    #: The name the answer's CNAME chain ends at (lowercase, no final dot); "" without one.
    canonical: str = ""


class _ResponseCache:
    """A bounded LRU of answers, each kept until its (capped) TTL runs out."""

    def __init__(self, limits: CacheLimits, clock: Callable[[], float]) -> None:
        self._limits = limits
        self._clock = clock
        self._entries: OrderedDict[tuple[str, int], tuple[float, _Outcome]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[str, int]) -> _Outcome | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, outcome = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return outcome

    def put(self, key: tuple[str, int], outcome: _Outcome, ttl: int) -> None:
        cap = self._limits.max_ttl if outcome.records else self._limits.max_negative_ttl
        ttl = min(ttl, cap)
        if ttl <= 0 or self._limits.max_entries <= 0:
            return
        self._entries[key] = (self._clock() + ttl, outcome)
        self._entries.move_to_end(key)
        while len(self._entries) > self._limits.max_entries:
            self._entries.popitem(last=False)


def parse_nameserver(text: str, *, key: str = "dns.nameserver") -> tuple[str, int] | None:
    """``dns.nameserver`` (or another setting naming a DNS server, ``key``) as (address, port);
    None for the system's resolver (an empty setting).

    Accepts ``host``, ``host:port``, a bare IPv6 address and ``[v6]:port``. The host must be an IP
    address: resolving the resolver's own name would need a resolver.
    """
    text = text.strip()
    if not text:
        return None
    host, port_text = text, ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(key, f"malformed address {text!r}")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(key, f"{host!r} is not an IP address") from None
    if not port_text:
        return host, DEFAULT_PORT
    if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5) or not (
        0 < int(port_text) < 65536
    ):
        raise ConfigError(key, f"bad port {port_text!r}")
    return host, int(port_text)


#: CNAME links followed after the server's answer (:meth:`DnsResolver.host_addresses`).
MAX_CNAME_LINKS = 8


class _Name(NamedTuple):
    name: dns.name.Name
    #: The name's key in the answer cache: lowercase presentation form.
    key: str


#: Names kept parsed (:func:`_name`): the few thousand a busy hour of mail asks for again and
#: again (SPF domains, key selectors, ``_dmarc`` names), so that a cached answer costs no parse.
NAME_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=NAME_CACHE_SIZE)
def _name(text: str) -> _Name | None:
    """The absolute DNS name for ``text`` and its cache key, or None if no such name can exist
    (cached by the exact text: names are immutable, the parse is always the same)."""
    text = text.strip().rstrip(".")
    if not text:
        return None
    try:
        name = dns.name.from_text(text)
    except dns.exception.DNSException:  # empty label, label > 63 or name > 255 octets
        return None
    return _Name(name, _cache_key(name))


def _cache_key(name: dns.name.Name) -> str:
    return name.to_text().lower()


def _host_text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


class DnsResolver:
    """:class:`Resolver` on dnspython, with the cache described in the module notes."""

    def __init__(
        self,
        *,
        nameserver: str = "",
        timeout: float = 5.0,
        cache: CacheLimits = DEFAULT_CACHE_LIMITS,
        prefer_ipv6: bool = True,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        trust_ad: TrustAd = "never",
    ) -> None:
        """``nameserver`` as in ``dns.nameserver`` (empty: the system's); ``timeout`` bounds each
        lookup as a whole, retries included; ``rng`` shuffles equal MX preferences;
        ``trust_ad`` as in ``dns.trust_ad`` (module notes)."""
        address = parse_nameserver(nameserver)
        try:
            self._resolver = dns.asyncresolver.Resolver(configure=address is None)
        except dns.resolver.NoResolverConfiguration:
            raise ConfigError(
                "dns.nameserver", "the system has no resolver configured; set one"
            ) from None
        if address is not None:
            self._resolver.nameservers = [dns.nameserver.Do53Nameserver(*address)]
        self._trust_ad = trusted_for_ad(trust_ad, self._nameserver_addresses())
        if self._trust_ad:
            # RFC 6840 §5.7: AD in a query asks for the AD bit without DNSSEC records; DO too,
            # since older validators set AD only for DO queries (RFC 4035 §3.2.3).
            self._resolver.flags = dns.flags.RD | dns.flags.AD
            self._resolver.use_edns(0, dns.flags.DO, EDNS_PAYLOAD)
        else:
            self._resolver.use_edns(0, 0, EDNS_PAYLOAD)
        self._resolver.cache = None  # ours, below: bounded, capped, negative-aware
        self._timeout = timeout
        self._cache = _ResponseCache(cache, clock)
        self._in_flight: dict[tuple[str, int], _Flight] = {}
        self._prefer_ipv6 = prefer_ipv6
        self._rng = rng if rng is not None else random.Random()

    def _nameserver_addresses(self) -> list[str]:
        return [str(getattr(ns, "address", ns)) for ns in self._resolver.nameservers]

    @property
    def trusts_ad(self) -> bool:
        return self._trust_ad

    async def _query(self, target: _Name, rdtype: dns.rdatatype.RdataType) -> _Outcome:
        key = (target.key, int(rdtype))
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        flight = self._in_flight.get(key)
        if flight is None:
            flight = _Flight(asyncio.ensure_future(self._ask(target, rdtype, key)))
            self._in_flight[key] = flight
            flight.task.add_done_callback(functools.partial(self._landed, key))
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if not flight.waiters and not flight.task.done():
                # Every caller gave up. Forgotten at once: a lookup arriving before the task
                # has wound down asks anew rather than sharing a cancellation.
                self._forget(key, flight.task)
                flight.task.cancel()

    def _landed(self, key: tuple[str, int], task: asyncio.Task[_Outcome]) -> None:
        self._forget(key, task)
        if not task.cancelled():
            task.exception()  # retrieved: its callers may all have given up as it came

    def _forget(self, key: tuple[str, int], task: asyncio.Task[_Outcome]) -> None:
        flight = self._in_flight.get(key)
        if flight is not None and flight.task is task:
            del self._in_flight[key]

    async def _ask(
        self, target: _Name, rdtype: dns.rdatatype.RdataType, key: tuple[str, int]
    ) -> _Outcome:
        """Ask the server (one query, shared by :meth:`_query`) and cache the answer."""
        name = target.name
        text = _host_text(name)
        try:
            answer = await self._resolver.resolve(
                name, rdtype, raise_on_no_answer=False, search=False, lifetime=self._timeout
            )
        except dns.resolver.NXDOMAIN as exc:
            outcome = _Outcome((), nxdomain=True)
            self._cache.put(key, outcome, _negative_ttl(exc))
            return outcome
        except dns.resolver.LifetimeTimeout:
            raise DnsTemporaryError(text, f"no answer within {self._timeout:g}s") from None
        except dns.resolver.NoNameservers:
            raise DnsTemporaryError(text, "server failure (SERVFAIL or REFUSED)") from None
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsTemporaryError(text, f"lookup failed: {exc}") from None
        records = tuple(answer.rrset) if answer.rrset is not None else ()
        authentic = self._trust_ad and bool(answer.response.flags & dns.flags.AD)
        canonical = answer.canonical_name
        outcome = _Outcome(
            records,
            authentic=authentic,
            canonical="" if canonical == name else _host_text(canonical),
        )
        # For NODATA, dnspython's minimum_ttl already folds in the SOA (RFC 2308 §5).
        self._cache.put(key, outcome, answer.chaining_result.minimum_ttl)
        return outcome

    async def _followed(self, target: _Name, rdtype: dns.rdatatype.RdataType) -> _Outcome:
        """:meth:`_query`, with a CNAME chain the server left unfinished followed (module
        notes); ``canonical`` is the last name reached, ``authentic`` that of every link."""
        outcome = await self._query(target, rdtype)
        authentic, canonical = outcome.authentic, outcome.canonical
        for _ in range(MAX_CNAME_LINKS):
            if outcome.records or outcome.nxdomain or not outcome.canonical:
                break
            following = _name(outcome.canonical)
            if following is None or following.key == target.key:
                break
            target = following
            outcome = await self._query(target, rdtype)
            authentic = authentic and outcome.authentic
            canonical = outcome.canonical or canonical
        return _Outcome(outcome.records, outcome.nxdomain, authentic, canonical)

    async def mx(self, domain: str) -> MxResult:
        name = _name(domain)
        domain = domain.strip().rstrip(".").lower()
        if name is None:
            return MxResult(domain, MxStatus.NO_DOMAIN, reason="not a valid domain name")
        try:
            outcome = await self._query(name, dns.rdatatype.MX)
        except DnsTemporaryError as exc:
            return MxResult(domain, MxStatus.TEMPORARY, reason=exc.problem)
        if outcome.nxdomain:
            return MxResult(domain, MxStatus.NO_DOMAIN, reason="domain does not exist")
        if not outcome.records:
            return MxResult(domain, MxStatus.NO_MX, authentic=outcome.authentic)
        records = cast(tuple[MX, ...], outcome.records)
        # RFC 7505 §3 defines the null MX as one record "0 .". A lone "." at another preference
        # has the same meaning (no usable host); a "." beside real hosts is ignored.
        usable = [r for r in records if r.exchange != dns.name.root]
        if not usable:
            return MxResult(domain, MxStatus.NULL_MX, reason="domain accepts no mail (null MX)")
        return MxResult(
            domain, MxStatus.FOUND, hosts=self._ordered(usable), authentic=outcome.authentic
        )

    def _ordered(self, records: Sequence[MX]) -> tuple[MxHost, ...]:
        """RFC 5321 §5.1: ascending preference; equal preferences randomised to spread load."""
        by_preference: dict[int, list[str]] = {}
        for record in records:
            by_preference.setdefault(record.preference, []).append(_host_text(record.exchange))
        hosts: list[MxHost] = []
        seen: set[str] = set()
        for preference in sorted(by_preference):
            group = by_preference[preference]
            self._rng.shuffle(group)
            for host in group:
                if host not in seen:  # a host listed twice is tried at its best preference
                    seen.add(host)
                    hosts.append(MxHost(preference, host))
        return tuple(hosts)

    async def addresses(self, host: str) -> list[str]:
        """A and AAAA, queried concurrently; IPv6 first unless ``prefer_ipv6`` is off (see
        :meth:`host_addresses`)."""
        return list((await self.host_addresses(host)).addresses)

    async def host_addresses(self, host: str) -> HostAddresses:
        """A and AAAA, queried concurrently; IPv6 first unless ``prefer_ipv6`` is off.

        A temporary failure of one family is ignored when the other family has addresses (the
        host is reachable now); it is raised when nothing was found, since the host might have
        addresses that we could not see.
        """
        name = _name(host)
        if name is None:
            return HostAddresses(())
        families = (dns.rdatatype.AAAA, dns.rdatatype.A)
        if not self._prefer_ipv6:
            families = families[::-1]
        results = await asyncio.gather(
            *(self._followed(name, rdtype) for rdtype in families), return_exceptions=True
        )
        found: list[str] = []
        failure: DnsTemporaryError | None = None
        authentic = True
        canonical = ""
        for result in results:
            if isinstance(result, DnsTemporaryError):
                failure = failure or result
            elif isinstance(result, BaseException):
                raise result
            else:
                found.extend(cast(A | AAAA, r).address for r in result.records)
                authentic = authentic and result.authentic
                canonical = canonical or result.canonical
        if not found and failure is not None:
            raise failure
        # Secure when every answer that came was (a failed family adds no address to trust).
        return HostAddresses(tuple(found), authentic=authentic and bool(found), canonical=canonical)

    async def txt(self, name: str) -> list[bytes]:
        dns_name = _name(name)
        if dns_name is None:
            return []
        outcome = await self._query(dns_name, dns.rdatatype.TXT)
        # RFC 7208 §3.3, RFC 6376 §3.6.2.2: a record's strings are concatenated without spaces.
        return [b"".join(cast(TXT, r).strings) for r in outcome.records]

    async def ptr(self, ip: str) -> list[str]:
        try:
            name = dns.reversename.from_address(ip)
        except (dns.exception.DNSException, ValueError):
            raise InvalidName(f"{ip!r} is not an IP address") from None
        outcome = await self._query(_Name(name, _cache_key(name)), dns.rdatatype.PTR)
        return [_host_text(cast(PTR, r).target) for r in outcome.records]

    async def lookup(self, name: str, rtype: str) -> list[str]:
        return list((await self.records(name, rtype)).records)

    async def records(self, name: str, rtype: str) -> RecordSet:
        try:
            rdtype = dns.rdatatype.RdataType.make(rtype.upper())
        except dns.exception.DNSException:
            raise InvalidName(f"{rtype!r} is not a DNS record type") from None
        dns_name = _name(name)
        if dns_name is None:
            return RecordSet(())
        outcome = await self._query(dns_name, rdtype)
        return RecordSet(tuple(r.to_text() for r in outcome.records), outcome.authentic)


def trusted_for_ad(setting: TrustAd, nameservers: Sequence[str]) -> bool:
    """Whether the AD bit of answers from ``nameservers`` is believed (``dns.trust_ad``):
    "loopback" when every one of them is on this host (RFC 4035 §4.9.3: a secure channel to a
    validating resolver; glibc's and Mox's default rule), "always" for a validating resolver
    reached some other trusted way, "never" to ignore AD (no DANE)."""
    if setting == "always":
        return bool(nameservers)
    if setting == "never" or not nameservers:
        return False
    for address in nameservers:
        try:
            if not ipaddress.ip_address(address.partition("%")[0]).is_loopback:
                return False
        except ValueError:
            return False
    return True


def _negative_ttl(exc: dns.resolver.NXDOMAIN) -> int:
    """RFC 2308 §5 negative TTL of an NXDOMAIN, from the SOA of its response (0 without one)."""
    # ``responses()`` is untyped; it returns this same mapping.
    responses = cast(dict[dns.name.Name, dns.message.QueryMessage], exc.kwargs.get("responses", {}))
    for response in responses.values():
        try:
            return int(response.resolve_chaining().minimum_ttl)
        except dns.exception.DNSException:
            return 0
    return 0
