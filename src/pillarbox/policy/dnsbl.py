"""DNS blocklists (RFC 5782): the client's IP address and the domains a message names.

Implementation notes:

- An IPv4 address is listed in a zone when ``d.c.b.a.<zone>`` has an A record (RFC 5782
  §2.1); an IPv6 address is looked up as 32 reversed nibbles (§2.4); a domain as
  ``<domain>.<zone>`` (§2.3, the URI/domain lists). The A record's value says why (lists use
  127.0.0.x codes); the TXT record at the same name, when there is one, is the explanation.
- Only answers inside 127.0.0.0/8 count (§2.1, §5: anything else is a broken or hijacked
  zone); a zone answering its own test entry wrongly is not detected here (that is the
  operator's ``pillarbox dns check`` business).
- Every query of a message runs concurrently, under one deadline; a lookup that fails or
  times out is reported as ``temperror`` for that zone and scores nothing (a list that is down
  must not block mail).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from pillarbox.dns.resolver import DnsTemporaryError, Resolver
from pillarbox.errors import InvalidName

LOOPBACK_NET = ipaddress.ip_network("127.0.0.0/8")


@dataclass(frozen=True, slots=True)
class DnsblZone:
    """One list: its zone and what a listing adds to the spam score."""

    zone: str
    score: float


@dataclass(frozen=True, slots=True)
class Listing:
    """One query's result: listed (with codes and text), or a temporary failure."""

    zone: str
    #: The IP address or domain looked up.
    subject: str
    listed: bool
    codes: tuple[str, ...] = ()
    text: str = ""
    score: float = 0.0
    temporary: bool = False


def ip_query_name(ip: str, zone: str) -> str:
    """RFC 5782 §2.1/§2.4: the name to look up for ``ip`` in ``zone``."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        labels = str(address).split(".")
    else:
        labels = list(address.exploded.replace(":", ""))
    return ".".join(reversed(labels)) + "." + zone.strip(".")


async def _query(resolver: Resolver, name: str, zone: DnsblZone, subject: str) -> Listing:
    try:
        answers = await resolver.lookup(name, "A")
    except DnsTemporaryError:
        return Listing(zone.zone, subject, False, temporary=True)
    except InvalidName:
        return Listing(zone.zone, subject, False)
    codes = tuple(a for a in answers if ipaddress.ip_address(a) in LOOPBACK_NET)
    if not codes:
        return Listing(zone.zone, subject, False)
    try:
        texts = await resolver.txt(name)
    except (DnsTemporaryError, InvalidName):
        texts = []
    text = texts[0].decode("utf-8", "replace")[:200] if texts else ""
    return Listing(zone.zone, subject, True, codes, text, zone.score)


def _is_public_ip(ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_global
    return address.is_global


async def check(
    resolver: Resolver,
    *,
    client_ip: str,
    ip_zones: Sequence[DnsblZone],
    domains: Sequence[str],
    domain_zones: Sequence[DnsblZone],
    timeout: float,
    check_private: bool = False,
) -> list[Listing]:
    """Look ``client_ip`` up in ``ip_zones`` and each of ``domains`` in ``domain_zones``, all
    at once; returns every listing and every temporary failure (unlisted results are left
    out). Private and loopback clients are not looked up unless ``check_private``."""
    queries: list[tuple[str, DnsblZone, str]] = []
    if ip_zones and (check_private or _is_public_ip(client_ip)):
        try:
            for zone in ip_zones:
                queries.append((ip_query_name(client_ip, zone.zone), zone, client_ip))
        except ValueError:
            pass  # not an IP address: nothing to look up
    for domain in dict.fromkeys(d.lower().strip(".") for d in domains if d):
        for zone in domain_zones:
            queries.append((f"{domain}.{zone.zone.strip('.')}", zone, domain))
    if not queries:
        return []
    tasks = [_query(resolver, name, zone, subject) for name, zone, subject in queries]
    try:
        async with asyncio.timeout(timeout):
            results = await asyncio.gather(*tasks)
    except TimeoutError:
        return [Listing(z.zone, s, False, temporary=True) for _, z, s in queries]
    return [r for r in results if r.listed or r.temporary]
