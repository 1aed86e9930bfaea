"""Who a request through a reverse proxy came from: the ``Forwarded`` field (RFC 7239) and the
de-facto ``X-Forwarded-For``/``X-Forwarded-Proto``, believed from ``proxy_networks`` only.

Implementation notes:

- **ASGI middleware** in front of the web app on a listener with ``forwarded_headers``
  (:class:`ForwardedHeaders`; it replaces uvicorn's proxy-headers middleware, which reads only
  the X- fields). It rewrites the scope's ``client`` and ``scheme``, so the login limits, the
  logs, the session cookie's ``Secure`` and HSTS see the client, not the proxy.
- **Trust is the peer's address**: a connection from outside ``proxy_networks`` keeps its own
  address and scheme whatever it sends. The listener is dual-stack, so an IPv4 balancer arrives
  as ``::ffff:a.b.c.d`` and is matched as its IPv4 address.
- **The chain is read from the right** (RFC 7239 §5.2, §7.4: each proxy appends an element;
  only what the trusted ones wrote is believed): elements whose ``for=`` is a trusted proxy are
  skipped; the first other one names the client, and its ``proto=`` (§5.4) the scheme the
  client used. If every hop is trusted the leftmost is taken (as uvicorn does).
- **``for=`` that is not an address** — ``unknown`` (§6.2) or an obfuscated identifier
  ``_…`` (§6.3) — names no client: the address stays the proxy's, the element's ``proto=``
  still counts (a trusted proxy wrote it). IPv6 is quoted and bracketed (§6,
  ``for="[2001:db8::1]:4711"``); a port, or an obfuscated port, may follow.
- **``X-Forwarded-Proto`` goes with its hop**: its entries (all lines, one comma-separated
  list) are aligned with ``X-Forwarded-For``'s from the right, so the scheme taken is the one
  recorded beside the client the chain names, by the proxy that took its connection — never
  simply the last line, which behind two appending proxies is the inner hop's (``http``
  between them). One entry for several hops is every hop's (a front proxy set it, the others
  passed it on).
- **``Forwarded`` wins** when a trusted proxy sends it with the X- fields; a malformed one
  (bad syntax, a parameter twice in an element, §4) is ignored with a log line, and the
  X- fields, if any, are used instead. The request itself is answered: the proxy, not the
  client, wrote the field.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from pillarbox.observability.log import Log

_log = Log("net.forwarded")

# RFC 7230 §3.2.6 token and quoted-string (with quoted-pair), which RFC 7239 §4 uses for values.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PAIR = re.compile(rf'[ \t]*({_TOKEN})=(?:({_TOKEN})|"((?:[^"\\]|\\.)*)")[ \t]*')
_QUOTED_PAIR = re.compile(r"\\(.)")
# RFC 7239 §6: node = nodename [ ":" node-port ]; obfnode / obfport = "_" 1*(ALPHA / DIGIT /
# "." / "_" / "-"); port = 1*5DIGIT.
_NODE = re.compile(
    r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<ipv4>[0-9.]+)|(?P<other>(?i:unknown)|_[A-Za-z0-9._-]+))"
    r"(?::(?:(?P<port>[0-9]{1,5})|_[A-Za-z0-9._-]+))?"
)
#: The schemes a proxy may report (RFC 7239 §5.4 allows any URI scheme; these are ours).
_SCHEMES = frozenset({"http", "https"})

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class MalformedForwarded(ValueError):
    """A ``Forwarded`` field that RFC 7239 §4 does not allow."""


@dataclass(frozen=True, slots=True)
class Hop:
    """What one proxy recorded of the request it received: from where (None when it did not
    say, or said ``unknown`` or an obfuscated name) and over which scheme (None: not said)."""

    client: tuple[Address, int] | None
    proto: str | None = None


def parse_forwarded(values: Iterable[str]) -> list[dict[str, str]]:
    """The elements of the ``Forwarded`` field lines ``values`` (RFC 7239 §4: lines combine
    as one comma-separated list), each as lowercase parameter names to unquoted values."""
    text = ",".join(values)
    elements: list[dict[str, str]] = [{}]
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char == ",":
            elements.append({})
            pos += 1
        elif char in "; \t":
            pos += 1
        else:
            match = _PAIR.match(text, pos)
            if match is None:
                raise MalformedForwarded(f"not a forwarded-pair at offset {pos}")
            name = match.group(1).lower()  # §4: parameter names are case-insensitive
            if name in elements[-1]:
                raise MalformedForwarded(f"{name}= twice in one element")
            quoted = match.group(3)
            elements[-1][name] = (
                match.group(2) if quoted is None else _QUOTED_PAIR.sub(r"\1", quoted)
            )
            pos = match.end()
            if pos < len(text) and text[pos] not in ",;":
                raise MalformedForwarded(f"no separator at offset {pos}")
    return [element for element in elements if element]


def parse_node(text: str) -> tuple[Address, int] | None:
    """A ``for=`` node (RFC 7239 §6): its address and port (0 when none or obfuscated), None
    for ``unknown`` and obfuscated names (§6.2, §6.3). :class:`MalformedForwarded` otherwise
    (an IPv6 address outside brackets, say)."""
    match = _NODE.fullmatch(text)
    if match is None:
        raise MalformedForwarded(f"not a node: {text!r}")
    if match.group("other") is not None:
        return None
    try:
        if match.group("ipv6") is not None:
            address: Address = ipaddress.IPv6Address(match.group("ipv6"))
        else:
            address = ipaddress.IPv4Address(match.group("ipv4"))
    except ValueError as exc:
        raise MalformedForwarded(f"not an address: {text!r}") from exc
    port = int(match.group("port") or 0)
    if port > 65535:
        raise MalformedForwarded(f"not a port: {text!r}")
    return address, port


def forwarded_hops(values: Iterable[str]) -> list[Hop]:
    """The hops a ``Forwarded`` field records, oldest first."""
    hops = []
    for element in parse_forwarded(values):
        node = element.get("for")
        proto = element.get("proto", "").lower() or None
        hops.append(Hop(None if node is None else parse_node(node), proto))
    return hops


def x_forwarded_hops(for_values: Iterable[str], proto_values: Sequence[str] = ()) -> list[Hop]:
    """The hops of ``X-Forwarded-For`` (bare or bracketed addresses, maybe with a port; an
    entry that is none names no client), each with its ``X-Forwarded-Proto`` entry: the lists
    are aligned from the right, as each proxy appends to both (RFC 7239 §5.4 pairs ``for=`` and
    ``proto=`` in one element; the X- fields are its two columns). A hop left of the shortest
    proto list gets the list's leftmost entry: a proxy in front set it, and the ones behind
    passed it on rather than append (one value, the usual case, is then every hop's)."""
    protos = x_forwarded_protos(proto_values)
    entries = ",".join(for_values).split(",")
    hops = []
    for index, entry in enumerate(entries):
        text = entry.strip()
        client: tuple[Address, int] | None
        try:
            address = ipaddress.ip_address(text)
            # An IPv6 zone ("%eth0") names an interface of the sender's host, no client, and
            # Python keeps any text after the "%": the client's, into the scope and the logs
            # (found by fuzz/forwarded.py). RFC 7239 §6 nodes have none either.
            scoped = isinstance(address, ipaddress.IPv6Address) and address.scope_id
            client = None if scoped else (address, 0)
        except ValueError:
            try:
                client = parse_node(text)
            except MalformedForwarded:
                client = None
        aligned = len(protos) - (len(entries) - index)
        hops.append(Hop(client, protos[max(aligned, 0)] if protos else None))
    return hops


def x_forwarded_protos(values: Sequence[str]) -> list[str | None]:
    """The entries of ``X-Forwarded-Proto`` lines, oldest first (lines combine as one
    comma-separated list, as ``Forwarded``'s do, RFC 7239 §4); an empty entry says nothing."""
    entries = ",".join(values).split(",") if values else []
    return [entry.strip().lower() or None for entry in entries]


class TrustedNetworks:
    """``proxy_networks``: whether an address is one of the proxies."""

    def __init__(self, networks: Sequence[str]) -> None:
        self._networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    def __contains__(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)

    def peer(self, text: str) -> bool:
        """The connection's peer (the scope's ``client`` host) is a proxy."""
        try:
            return ipaddress.ip_address(text) in self
        except ValueError:
            return False


def client_hop(hops: Sequence[Hop], trusted: TrustedNetworks) -> Hop | None:
    """The hop that names the client: from the right, the first whose ``for=`` is not a
    trusted proxy; the leftmost when every one is (see the module notes)."""
    for hop in reversed(hops):
        if hop.client is None or hop.client[0] not in trusted:
            return hop
    return hops[0] if hops else None


class ForwardedHeaders:
    """ASGI middleware: the client and scheme of a request from a trusted proxy, from its
    ``Forwarded`` or ``X-Forwarded-*`` fields (see the module notes)."""

    def __init__(self, app: ASGIApp, networks: Sequence[str]) -> None:
        self.app = app
        self._trusted = TrustedNetworks(networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        peer = scope.get("client")
        if scope["type"] in ("http", "websocket") and peer and self._trusted.peer(peer[0]):
            hop = self._hop(scope["headers"], peer[0])
            if hop is not None:
                _apply(scope, hop)
        await self.app(scope, receive, send)

    def _hop(self, headers: Iterable[tuple[bytes, bytes]], peer: str) -> Hop | None:
        forwarded: list[str] = []
        x_for: list[str] = []
        x_proto: list[str] = []
        for name, value in headers:
            if name == b"forwarded":
                forwarded.append(value.decode("latin-1"))
            elif name == b"x-forwarded-for":
                x_for.append(value.decode("latin-1"))
            elif name == b"x-forwarded-proto":
                x_proto.append(value.decode("latin-1"))
        if forwarded:
            try:
                return client_hop(forwarded_hops(forwarded), self._trusted)
            except MalformedForwarded as exc:
                _log.warning("malformed Forwarded field ignored", peer=peer, error=str(exc))
        if x_for:
            return client_hop(x_forwarded_hops(x_for, x_proto), self._trusted)
        # No client named: the scheme is what the trusted peer appended, the rightmost entry.
        return Hop(None, x_forwarded_protos(x_proto)[-1]) if x_proto else None


def _apply(scope: Scope, hop: Hop) -> None:
    if hop.client is not None:
        address, port = hop.client
        scope["client"] = (str(address), port)
    if hop.proto in _SCHEMES:
        scheme = hop.proto
        scope["scheme"] = scheme.replace("http", "ws") if scope["type"] == "websocket" else scheme
