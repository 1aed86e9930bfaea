"""Which client an address is, for the limits kept per client address (connections, failed
logins).

An IPv6 host is given a whole prefix (a /64 to a home line, a VPS or a cloud instance, RFC
6177 §3), and picks the address of each connection from it at will (RFC 8981 temporary
addresses do so by default): counted one address at a time, one host would have 2^64 turns
at every per-address limit. So an IPv6 address counts by its first ``ipv6_prefix`` bits, as
one client; an IPv4 address (and an IPv4-mapped IPv6 one, ``::ffff:a.b.c.d``, as a dual-stack
listener reports an IPv4 peer) counts alone. A text that is not an address is its own key.
"""

from __future__ import annotations

import functools
import ipaddress

#: The prefix length a host is given (RFC 6177 §3, the /64 of a subnet).
DEFAULT_IPV6_PREFIX = 64
#: Keys kept for the next connection from the same address (a listener asks at its accept and
#: at its close, and most connections come from addresses seen before).
KEYS_KEPT = 4096


@functools.lru_cache(maxsize=KEYS_KEPT)
def client_key(address: str, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> str:
    """The key ``address`` is counted under: ``2001:db8:1:2::/64`` for any address of that
    prefix, the address itself for IPv4. A pure function of its arguments, kept: parsing the
    address was two ``ipaddress`` parses a connection (its admission and its release)."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        if ipv6_prefix < 128:
            return str(ipaddress.IPv6Network((parsed, ipv6_prefix), strict=False))
    return str(parsed)
