"""An in-process resolver for the policy fuzz targets: the Resolver Protocol of
pillarbox.dns.resolver answered from a table, failing the way the real one (DnsResolver) does.

A name that cannot exist gets what DnsResolver gives it (no records, MX ``no-domain``). A
name containing ``servfail`` fails temporarily (DnsTemporaryError; MX ``temporary``); one
containing ``slow`` answers after :data:`SLOW_ANSWER` seconds, past the policy's own deadline,
so the temperror paths of RFC 7208 §4.4, RFC 6376 §6.1.2 and RFC 7489 §6.6.3 run too. Every
query is counted, to check processing limits such as RFC 7208 §4.6.4's.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Mapping

from pillarbox.dns.resolver import DnsTemporaryError, MxHost, MxResult, MxStatus
from pillarbox.errors import InvalidName

#: Seconds a ``slow`` name takes to answer; the targets' deadlines are shorter.
SLOW_ANSWER = 1.0


class StaticResolver:
    """TXT records from ``txt`` (name → records). A and AAAA for names starting with ``a``;
    MX for names starting with ``mx`` (twelve hosts, more than RFC 7208 §4.6.4 allows, for
    ``mxmany``); PTR: twelve names for any address."""

    def __init__(self, txt: Mapping[str, list[bytes]]) -> None:
        self.txt_records = {name.lower().rstrip("."): records for name, records in txt.items()}
        self.queries = 0

    async def _ask(self, text: str) -> str | None:
        """The name asked for, lowercase; None if no such name can exist."""
        self.queries += 1
        name = text.strip().rstrip(".").lower()
        if not name or len(name) > 253 or any(not 0 < len(x) <= 63 for x in name.split(".")):
            return None
        if "servfail" in name:
            raise DnsTemporaryError(name, "server failure (SERVFAIL or REFUSED)")
        if "slow" in name:
            await asyncio.sleep(SLOW_ANSWER)
        return name

    async def mx(self, domain: str) -> MxResult:
        try:
            name = await self._ask(domain)
        except DnsTemporaryError as exc:
            return MxResult(domain, MxStatus.TEMPORARY, reason=exc.problem)
        if name is None:
            return MxResult(domain, MxStatus.NO_DOMAIN, reason="not a valid domain name")
        if name.startswith("mx"):
            return MxResult(name, MxStatus.FOUND, tuple(MxHost(10, h) for h in _mx_hosts(name)))
        return MxResult(name, MxStatus.NO_MX)

    async def addresses(self, host: str) -> list[str]:
        name = await self._ask(host)
        return ["2001:db8::1", "192.0.2.1"] if name and name.startswith("a") else []

    async def txt(self, name: str) -> list[bytes]:
        found = await self._ask(name)
        return self.txt_records.get(found, []) if found else []

    async def ptr(self, ip: str) -> list[str]:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidName(f"{ip!r} is not an IP address") from None
        self.queries += 1
        return [f"a{i}.host.test" for i in range(12)]

    async def lookup(self, name: str, rtype: str) -> list[str]:
        found = await self._ask(name)
        if found is None:
            return []
        match rtype.upper():
            case "A" if found.startswith("a"):
                return ["192.0.2.1"]
            case "AAAA" if found.startswith("a"):
                return ["2001:db8::1"]
            case "MX" if found.startswith("mx"):
                return [f"10 {host}." for host in _mx_hosts(found)]
            case "TXT":
                return [r.decode("latin-1") for r in self.txt_records.get(found, [])]
        return []


def _mx_hosts(name: str) -> list[str]:
    return [f"a{i}.{name}" for i in range(12 if name.startswith("mxmany") else 3)]
