"""Sender Policy Framework (RFC 7208): ``check_host()`` for the MAIL FROM and HELO identities.

Implementation notes:

- Our own evaluator, async on :class:`~pillarbox.dns.resolver.Resolver`, rather than pyspf:
  every lookup goes through the shared resolver and its cache, the lookups of one term run
  concurrently (the A/AAAA of all MX hosts, the PTR validation), and the whole evaluation
  runs under one deadline instead of blocking a worker thread per lookup. On the OpenSPF
  RFC 7208 suite it passes as many tests as pyspf 2.0.14 (see ``bench/policy.py``).
- Limits (RFC 7208 §4.6.4): at most :attr:`SpfLimits.max_dns_terms` terms that cause DNS
  queries (include, a, mx, ptr, exists, redirect), counted over the whole evaluation, includes
  and redirects included; at most :attr:`SpfLimits.max_void_lookups` lookups answering NXDOMAIN
  or no records; at most 10 MX hosts per ``mx`` (else permerror) and 10 PTR names per ``ptr``
  (the rest ignored). Exceeding a limit is ``permerror``; running out of time is ``temperror``.
- Errors: a temporary DNS failure of the record lookup, an include, a/mx/exists gives
  ``temperror`` (§4.4, §5); NXDOMAIN for the checked domain gives ``none`` (§4.3); syntax errors
  anywhere in an evaluated record give ``permerror`` (§4.6); a PTR lookup failure only makes
  ``ptr`` not match (§5.5).
- The explanation of a ``fail`` (``exp=``, §6.2) is fetched after the result is known, does not
  count towards the limits, and any problem with it just leaves the default explanation.
- Records are parsed once per distinct text and networks built once per (address, prefix)
  (bounded LRUs of immutable values): with DNS answers cached, parsing was half the cost of a
  check (docs/performance.md, "Session 7").
"""

from __future__ import annotations

import asyncio
import enum
import functools
import ipaddress
import re
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from pillarbox.dns.resolver import DnsTemporaryError, Resolver
from pillarbox.errors import InvalidName

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class SpfResult(enum.StrEnum):
    """RFC 7208 §2.6, written as RFC 8601 §2.7.2 spells them."""

    NONE = "none"
    NEUTRAL = "neutral"
    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


_QUALIFIERS = {
    "+": SpfResult.PASS,
    "-": SpfResult.FAIL,
    "~": SpfResult.SOFTFAIL,
    "?": SpfResult.NEUTRAL,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SpfLimits:
    """RFC 7208 §4.6.4 processing limits, and our deadline (§4.6.4 asks for at least 20 s)."""

    max_dns_terms: int = 10
    max_void_lookups: int = 2
    max_mx_hosts: int = 10
    max_ptr_names: int = 10
    #: Seconds for a whole check_host(), includes and redirects included.
    timeout: float = 20.0
    #: Longest explanation string kept (exp= text comes from the sender's DNS).
    max_explanation: int = 512


DEFAULT_LIMITS = SpfLimits()


@dataclass(frozen=True, slots=True)
class SpfOutcome:
    """The result of check_host() for one identity."""

    result: SpfResult
    #: The domain checked (the MAIL FROM domain, or the HELO name).
    domain: str
    #: The term that decided, or why there was an error (for logs and Authentication-Results).
    reason: str = ""
    #: For ``fail``: the sender's explanation (``exp=``), if it published a valid one.
    explanation: str = ""


class _PermError(Exception):
    """A syntax error or an exceeded limit: the result is permerror."""


class _TempError(Exception):
    """A DNS failure that may go away: the result is temperror."""


@dataclass(frozen=True, slots=True)
class _Mechanism:
    qualifier: SpfResult
    name: str
    #: The domain-spec or IP network text, unexpanded ("" if absent).
    argument: str
    cidr4: int | None
    cidr6: int | None


@dataclass(frozen=True, slots=True)
class _Record:
    mechanisms: tuple[_Mechanism, ...]
    redirect: str | None
    explanation: str | None


# RFC 7208 §12 ABNF pieces.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9\-_.]*")
_MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
_DNS_MECHANISMS = frozenset({"include", "a", "mx", "ptr", "exists"})
_CIDR = re.compile(r"^(.*?)(?:/(\d+))?(?://(\d+))?$", re.DOTALL)
_MACRO = re.compile(r"%(?:\{([slodiphcrtv])(\d*)(r?)([.\-+,/_=]*)\}|(.))", re.IGNORECASE)
_MACRO_STRING = re.compile(
    r"(?:[\x21-\x24\x26-\x7e]|%%|%_|%-|%\{[slodiphcrtv]\d*r?[.\-+,/_=]*\})*", re.IGNORECASE
)
_TOPLABEL = re.compile(
    r"(?:[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9\-]*[A-Za-z0-9])"
)
_EXPLANATION_ONLY = re.compile(r"%\{[crt]", re.IGNORECASE)
_VERSION = re.compile(rb"v=spf1(?: |$)", re.IGNORECASE)
_MAX_DOMAIN = 253  # RFC 7208 §7.3 with the final dot omitted


def _ip(text: str) -> IpAddress:
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # RFC 7208 §5: an IPv4-mapped address is checked as IPv4
    return address


def _valid_domain(domain: str) -> bool:
    """RFC 7208 §4.3: a multi-label name whose labels are 1–63 octets, at most 253 in all."""
    name = domain[:-1] if domain.endswith(".") else domain
    if not name or len(name) > _MAX_DOMAIN or "." not in name:
        return False
    return all(0 < len(label) <= 63 for label in name.split("."))


def _check_domain_spec(spec: str) -> None:
    """RFC 7208 §7.1: domain-spec = macro-string domain-end; domain-end = "." toplabel ["."]
    or a macro expansion."""
    _check_macro_string(spec)
    if _EXPLANATION_ONLY.search(spec):
        raise _PermError(f"macros c, r and t are allowed only in explanations: {spec!r}")  # §7.3
    if spec.endswith("}") and "%{" in spec:
        return
    name = spec[:-1] if spec.endswith(".") else spec
    head, dot, toplabel = name.rpartition(".")
    if not dot or not head or not _TOPLABEL.fullmatch(toplabel):
        raise _PermError(f"domain-spec {spec!r} does not end in a top-level label")


#: Distinct SPF records and networks kept parsed: the records of the senders (and the
#: providers they include) of a busy hour; records and networks are immutable values.
PARSE_CACHE_SIZE = 2048


@functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
def parse_record(text: str) -> _Record:
    """Parse an SPF record (``v=spf1`` and what follows); :class:`_PermError` if malformed.
    Cached by the exact text (a malformed record is not cached: it raises each time)."""
    terms = text.split(" ")[1:]
    mechanisms: list[_Mechanism] = []
    redirect: str | None = None
    explanation: str | None = None
    for term in terms:
        if not term:
            continue  # runs of spaces (§4.6.1 allows 1*SP)
        name_match = _NAME.match(term)
        if name_match and term[name_match.end() : name_match.end() + 1] == "=":
            name = name_match.group().lower()
            value = term[name_match.end() + 1 :]
            if name in ("redirect", "exp"):
                _check_domain_spec(value)
                if name == "redirect":
                    if redirect is not None:
                        raise _PermError("more than one redirect modifier")
                    redirect = value
                else:
                    if explanation is not None:
                        raise _PermError("more than one exp modifier")
                    explanation = value
            else:
                _check_macro_string(value)  # §6: unknown modifiers are ignored, but must parse
            continue
        mechanisms.append(_parse_mechanism(term))
    return _Record(tuple(mechanisms), redirect, explanation)


def _parse_mechanism(term: str) -> _Mechanism:
    qualifier = SpfResult.PASS
    if term[0] in _QUALIFIERS:
        qualifier = _QUALIFIERS[term[0]]
        term = term[1:]
    name_match = re.match(r"[A-Za-z0-9]+", term)
    if name_match is None:
        raise _PermError(f"unknown mechanism {term!r}")
    name = name_match.group().lower()
    rest = term[name_match.end() :]
    if name not in _MECHANISMS:
        raise _PermError(f"unknown mechanism {name!r}")
    if name == "all":
        if rest:
            raise _PermError(f"malformed mechanism {term!r}")
        return _Mechanism(qualifier, name, "", None, None)
    if name in ("ip4", "ip6"):
        return _ip_mechanism(qualifier, name, rest)
    argument = ""
    if rest.startswith(":"):
        argument = rest[1:]
        rest = ""
        if not argument or argument.startswith("/"):
            raise _PermError(f"{name}: needs a domain after ':'")
    cidr4 = cidr6 = None
    if name in ("a", "mx"):
        argument, cidr4, cidr6 = _split_cidr(argument or rest, has_domain=bool(argument))
        if not argument and rest and not rest.startswith("/"):
            raise _PermError(f"malformed mechanism {term!r}")
    elif rest:
        raise _PermError(f"malformed mechanism {term!r}")
    if name in ("include", "exists") and not argument:
        raise _PermError(f"{name} needs a domain")
    if argument:
        _check_domain_spec(argument)
    return _Mechanism(qualifier, name, argument, cidr4, cidr6)


def _split_cidr(text: str, *, has_domain: bool) -> tuple[str, int | None, int | None]:
    """``domain/24//64`` → (domain, 24, 64); RFC 7208 §5.6 dual-cidr-length."""
    match = _CIDR.match(text)
    assert match is not None  # the pattern matches every string
    domain, v4, v6 = match.groups()
    if has_domain and not domain:
        raise _PermError("empty domain-spec")
    cidr4 = _prefix(v4, 32) if v4 is not None else None
    cidr6 = _prefix(v6, 128) if v6 is not None else None
    return domain, cidr4, cidr6


def _prefix(text: str, maximum: int) -> int:
    # RFC 7208 §5.6: ip4-cidr-length = "/" ("0" / %x31-39 0*1DIGIT); no leading zeros.
    # DIGIT is ASCII (RFC 5234 B.1): str.isdigit() alone also takes "²" and "٣".
    if (
        not (text.isascii() and text.isdigit())
        or (len(text) > 1 and text.startswith("0"))
        or int(text) > maximum
    ):
        raise _PermError(f"invalid prefix length /{text}")
    return int(text)


def _ip_mechanism(qualifier: SpfResult, name: str, rest: str) -> _Mechanism:
    if not rest.startswith(":"):
        raise _PermError(f"{name} needs a network")
    text = rest[1:]
    address, _, length = text.partition("/")
    maximum = 32 if name == "ip4" else 128
    try:
        network = ipaddress.ip_address(address)
    except ValueError:
        raise _PermError(f"invalid address in {name}:{text}") from None
    if (name == "ip4") != isinstance(network, ipaddress.IPv4Address):
        raise _PermError(f"wrong address family in {name}:{text}")
    prefix = maximum if not length else _prefix(length, maximum)
    if name == "ip4":
        return _Mechanism(qualifier, name, address, prefix, None)
    return _Mechanism(qualifier, name, address, None, prefix)


def _check_macro_string(text: str) -> None:
    """RFC 7208 §7.1 macro-string syntax (the values of modifiers we do not know)."""
    if not _MACRO_STRING.fullmatch(text):
        raise _PermError(f"invalid macro-string {text!r}")


@dataclass(slots=True)
class _Context:
    """One check_host() evaluation: the identities and what the limits have counted so far."""

    resolver: Resolver
    ip: IpAddress
    sender: str
    helo: str
    receiver: str
    limits: SpfLimits
    dns_terms: int = 0
    void_lookups: int = 0
    validated_name: str | None = None

    @property
    def local_part(self) -> str:
        return self.sender.rpartition("@")[0] or "postmaster"

    @property
    def sender_domain(self) -> str:
        return self.sender.rpartition("@")[2]

    def count_term(self) -> None:
        self.dns_terms += 1
        if self.dns_terms > self.limits.max_dns_terms:
            raise _PermError(f"more than {self.limits.max_dns_terms} DNS-querying terms")

    def count_void(self, found: Sequence[object]) -> None:
        if not found:
            self.void_lookups += 1
            if self.void_lookups > self.limits.max_void_lookups:
                raise _PermError(f"more than {self.limits.max_void_lookups} void lookups")

    # -- macros (RFC 7208 §7) -------------------------------------------------------------------
    async def expand(self, text: str, domain: str, *, explanation: bool = False) -> str:
        out: list[str] = []
        pos = 0
        for match in _MACRO.finditer(text):
            out.append(text[pos : match.start()])
            pos = match.end()
            letter, digits, reverse, delimiters, literal = match.groups()
            if literal is not None:
                if literal == "%":
                    out.append("%")
                elif literal == "_":
                    out.append(" ")
                elif literal == "-":
                    out.append("%20")
                else:
                    raise _PermError(f"invalid macro %{literal} in {text!r}")
                continue
            value = await self._macro_value(letter.lower(), domain, explanation)
            parts = re.split("[" + re.escape(delimiters or ".") + "]", value)
            if reverse:
                parts.reverse()
            if digits:
                count = int(digits)
                if count == 0:
                    raise _PermError(f"macro with zero labels in {text!r}")
                parts = parts[-count:]
            expanded = ".".join(parts)
            if letter.isupper():
                expanded = urllib.parse.quote(expanded, safe="-._~")  # RFC 3986 unreserved
            out.append(expanded)
        rest = text[pos:]
        if "%" in rest:
            raise _PermError(f"invalid macro in {text!r}")
        out.append(rest)
        return "".join(out)

    async def _macro_value(self, letter: str, domain: str, explanation: bool) -> str:
        if letter in "crt" and not explanation:
            raise _PermError(f"macro %{{{letter}}} is allowed only in explanations")
        match letter:
            case "s":
                return f"{self.local_part}@{self.sender_domain}"
            case "l":
                return self.local_part
            case "o":
                return self.sender_domain
            case "d":
                return domain
            case "i":
                if isinstance(self.ip, ipaddress.IPv4Address):
                    return str(self.ip)
                return ".".join(self.ip.exploded.replace(":", ""))
            case "p":
                return await self._validated_name(domain)
            case "v":
                return "in-addr" if isinstance(self.ip, ipaddress.IPv4Address) else "ip6"
            case "h":
                return self.helo
            case "c":
                return str(self.ip)
            case "r":
                return self.receiver or "unknown"
            case _:  # "t"
                return str(int(time.time()))

    async def _validated_name(self, domain: str) -> str:
        """The %{p} macro (§7.3): a validated name of the client, preferring ``domain``."""
        if self.validated_name is None:
            names = await _validated_names(self, domain)
            exact = [n for n in names if n == domain or n.endswith("." + domain)]
            self.validated_name = (exact or names or ["unknown"])[0]
        return self.validated_name


async def _validated_names(ctx: _Context, target: str) -> list[str]:
    """RFC 7208 §5.5: the client's PTR names whose addresses include it (first 10 names)."""
    try:
        names = await ctx.resolver.ptr(str(ctx.ip))
    except (DnsTemporaryError, InvalidName):
        return []
    names = names[: ctx.limits.max_ptr_names]
    rtype = "A" if isinstance(ctx.ip, ipaddress.IPv4Address) else "AAAA"

    async def validated(name: str) -> str | None:
        try:
            addresses = await ctx.resolver.lookup(name, rtype)
        except (DnsTemporaryError, InvalidName):
            return None
        return name if any(_same_ip(a, ctx.ip) for a in addresses) else None

    checked = await asyncio.gather(*(validated(n) for n in names))
    matching = [n for n in checked if n is not None]
    return sorted(matching, key=lambda n: not (n == target or n.endswith("." + target)))


def _same_ip(text: str, ip: IpAddress) -> bool:
    try:
        return _ip(text) == ip
    except ValueError:
        return False


def _in_network(ip: IpAddress, address: str, prefix: int | None) -> bool:
    network = _network(address, ip.version, prefix)
    return network is not None and ip in network


@functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
def _network(
    address: str, version: int, prefix: int | None
) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The network of ``address``/``prefix`` (the whole address without a prefix), or None if
    ``address`` is no IP address of that ``version``."""
    try:
        other = _ip(address)
    except ValueError:
        return None
    if other.version != version:
        return None
    length = prefix if prefix is not None else other.max_prefixlen
    return ipaddress.ip_network(f"{other}/{length}", strict=False)


def _truncate(domain: str) -> str:
    """RFC 7208 §7.3: drop left labels until the expanded name is at most 253 characters."""
    domain = domain.rstrip(".")
    while len(domain) > _MAX_DOMAIN and "." in domain:
        domain = domain.partition(".")[2]
    return domain


async def _txt(ctx: _Context, domain: str) -> list[bytes]:
    try:
        return await ctx.resolver.txt(domain)
    except DnsTemporaryError as exc:
        raise _TempError(str(exc)) from None


async def _spf_record(ctx: _Context, domain: str) -> tuple[_Record | None, bool]:
    """RFC 7208 §4.4–4.5: the one SPF record of ``domain`` (None if none); the flag tells
    whether the lookup was void (NXDOMAIN or no TXT records)."""
    records = await _txt(ctx, domain)
    spf = [r for r in records if _VERSION.match(r)]
    if not spf:
        return None, not records
    if len(spf) > 1:
        raise _PermError(f"{domain} has {len(spf)} SPF records")
    try:
        text = spf[0].decode("ascii")
    except UnicodeDecodeError:
        raise _PermError(f"{domain}: SPF record is not 7-bit ASCII") from None  # §3.1
    if any(not 0x20 <= ord(c) < 0x7F for c in text):
        raise _PermError(f"{domain}: control character in SPF record")
    return parse_record(text), False


async def _check(ctx: _Context, domain: str) -> tuple[SpfResult, str, str | None]:
    """check_host() proper for ``domain``: (result, deciding term, exp= domain-spec)."""
    if not _valid_domain(domain):
        return SpfResult.NONE, f"{domain!r} is not a valid domain", None
    record, _ = await _spf_record(ctx, domain)
    if record is None:
        return SpfResult.NONE, f"no SPF record at {domain}", None
    for mechanism in record.mechanisms:
        if mechanism.name in _DNS_MECHANISMS:
            ctx.count_term()
        if await _matches(ctx, mechanism, domain):
            term = (
                f"{mechanism.name}:{mechanism.argument}" if mechanism.argument else mechanism.name
            )
            return mechanism.qualifier, term, record.explanation
    if record.redirect is not None:
        ctx.count_term()
        target = _truncate(await ctx.expand(record.redirect, domain))
        result, term, explanation = await _check(ctx, target)
        if result is SpfResult.NONE:
            raise _PermError(f"redirect to {target}, which has no SPF record")  # §6.1
        return result, term, explanation
    return SpfResult.NEUTRAL, "no mechanism matched", None


async def _target(ctx: _Context, mechanism: _Mechanism, domain: str) -> str:
    if not mechanism.argument:
        return domain
    return _truncate(await ctx.expand(mechanism.argument, domain))


async def _addresses(ctx: _Context, name: str, rtype: str) -> list[str]:
    try:
        return await ctx.resolver.lookup(name, rtype)
    except DnsTemporaryError as exc:
        raise _TempError(str(exc)) from None
    except InvalidName:
        return []


async def _matches(ctx: _Context, mechanism: _Mechanism, domain: str) -> bool:
    ip = ctx.ip
    v4 = isinstance(ip, ipaddress.IPv4Address)
    prefix = mechanism.cidr4 if v4 else mechanism.cidr6
    rtype = "A" if v4 else "AAAA"
    match mechanism.name:
        case "all":
            return True
        case "ip4" | "ip6":
            return _in_network(ip, mechanism.argument, prefix)
        case "a":
            target = await _target(ctx, mechanism, domain)
            found = await _addresses(ctx, target, rtype)
            ctx.count_void(found)
            return any(_in_network(ip, a, prefix) for a in found)
        case "mx":
            return await _mx_matches(ctx, await _target(ctx, mechanism, domain), rtype, prefix)
        case "ptr":
            target = await _target(ctx, mechanism, domain)
            target = target.lower()
            names = await _validated_names(ctx, target)
            ctx.count_void(names)
            return any(n == target or n.endswith("." + target) for n in names)
        case "exists":
            target = await _target(ctx, mechanism, domain)
            found = await _addresses(ctx, target, "A")  # §5.7: always A, whatever the client
            ctx.count_void(found)
            return bool(found)
        case _:  # include
            target = await _target(ctx, mechanism, domain)
            result, _, _ = await _check(ctx, target)
            if result is SpfResult.TEMPERROR:
                raise _TempError(f"include:{target} gave temperror")
            if result in (SpfResult.PERMERROR, SpfResult.NONE):
                raise _PermError(f"include:{target} gave {result}")  # §5.2
            return result is SpfResult.PASS


async def _mx_matches(ctx: _Context, target: str, rtype: str, prefix: int | None) -> bool:
    # The records themselves, not Resolver.mx(): that one merges hosts listed twice, and the
    # limit counts records (RFC 7208 §4.6.4).
    records = await _addresses(ctx, target, "MX")
    ctx.count_void(records)
    if len(records) > ctx.limits.max_mx_hosts:
        raise _PermError(f"{target} has more than {ctx.limits.max_mx_hosts} MX records")
    hosts = {r.partition(" ")[2].rstrip(".").lower() for r in records} - {""}  # "0 ." is null
    results = await asyncio.gather(*(_addresses(ctx, host, rtype) for host in hosts))
    return any(_in_network(ctx.ip, a, prefix) for found in results for a in found)


async def _explain(ctx: _Context, spec: str, domain: str) -> str:
    """RFC 7208 §6.2: the expanded TXT at the exp= domain; "" on any problem."""
    try:
        target = _truncate(await ctx.expand(spec, domain))
        records = await ctx.resolver.txt(target)
        if len(records) != 1:
            return ""
        text = records[0].decode("ascii")
        expanded = await ctx.expand(text, domain, explanation=True)
    except (_PermError, _TempError, DnsTemporaryError, UnicodeDecodeError, InvalidName):
        return ""
    return expanded[: ctx.limits.max_explanation]


async def check_host(
    resolver: Resolver,
    ip: str,
    domain: str,
    sender: str,
    *,
    helo: str = "",
    receiver: str = "",
    limits: SpfLimits = DEFAULT_LIMITS,
) -> SpfOutcome:
    """RFC 7208 §4: may ``ip`` send mail for ``domain``? ``sender`` is the MAIL FROM address
    (``postmaster@<helo>`` for the HELO identity); ``receiver`` names us in explanations."""
    domain = domain.rstrip(".").lower() if domain.endswith(".") else domain.lower()
    try:
        address = _ip(ip)
    except ValueError:
        return SpfOutcome(SpfResult.PERMERROR, domain, f"{ip!r} is not an IP address")
    ctx = _Context(resolver, address, sender, helo, receiver, limits)
    try:
        async with asyncio.timeout(limits.timeout):
            result, term, exp = await _check(ctx, domain)
            explanation = ""
            if result is SpfResult.FAIL and exp is not None:
                explanation = await _explain(ctx, exp, domain)
    except _PermError as exc:
        return SpfOutcome(SpfResult.PERMERROR, domain, str(exc))
    except _TempError as exc:
        return SpfOutcome(SpfResult.TEMPERROR, domain, str(exc))
    except TimeoutError:
        return SpfOutcome(SpfResult.TEMPERROR, domain, f"no result within {limits.timeout:g}s")
    return SpfOutcome(result, domain, term, explanation)


async def check_mail_from(
    resolver: Resolver,
    ip: str,
    mail_from: str,
    helo: str,
    *,
    receiver: str = "",
    limits: SpfLimits = DEFAULT_LIMITS,
) -> SpfOutcome:
    """The MAIL FROM identity (RFC 7208 §2.4); the null reverse-path uses the HELO name."""
    if not mail_from:
        return await check_helo(resolver, ip, helo, receiver=receiver, limits=limits)
    local, _, domain = mail_from.rpartition("@")
    sender = f"{local or 'postmaster'}@{domain}"
    return await check_host(
        resolver, ip, domain, sender, helo=helo, receiver=receiver, limits=limits
    )


async def check_helo(
    resolver: Resolver,
    ip: str,
    helo: str,
    *,
    receiver: str = "",
    limits: SpfLimits = DEFAULT_LIMITS,
) -> SpfOutcome:
    """The HELO identity (RFC 7208 §2.3): ``postmaster@<helo>``; an address literal or a
    name that is no domain gives ``none``."""
    if helo.startswith("[") or not _valid_domain(helo):
        return SpfOutcome(SpfResult.NONE, helo, "HELO is not a domain name")
    return await check_host(
        resolver, ip, helo, f"postmaster@{helo}", helo=helo, receiver=receiver, limits=limits
    )
