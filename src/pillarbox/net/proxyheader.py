"""The PROXY protocol on a listener: whom to believe, and reading the header off the socket.

Implementation notes:

- **Trusted networks only.** A listener with ``proxy_protocol`` on believes the header from
  ``proxy_networks`` and from nowhere else: any other peer is closed at accept, unanswered —
  otherwise anyone could connect straight to the port and name any address they like
  (Postfix's ``smtpd_upstream_proxy_protocol`` has no such list and relies on the firewall;
  Dovecot's ``haproxy_trusted_networks`` is this).
- **Before anything else**: no greeting is sent until the header has been read (as Postfix
  does), and TLS — implicit or STARTTLS — starts after it, on the client's own bytes.
- **Exact reads.** :class:`HeaderProtocol` is an :class:`asyncio.BufferedProtocol` whose buffer
  is exactly as long as :meth:`~pillarbox.proxyprotocol.HeaderReader.wanted`, so the transport
  never takes a byte past the header from the socket: the TLS ClientHello of an implicit-TLS
  client is still there for ``loop.start_tls``, which could not be handed bytes already read.
  Then the transport is paused and handed to the listener's channel (``set_protocol``).
- **Bounded wait**: ``proxy_timeout`` seconds for the whole header (Postfix's
  ``smtpd_upstream_proxy_timeout``, 5 s), then the connection is closed with a log line; so is
  a malformed header, or a peer that closes before sending one.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from pillarbox.config import Listener as ListenerSettings
from pillarbox.net.channel import plain_peer
from pillarbox.observability.log import Log
from pillarbox.observability.metrics import ListenerMetrics
from pillarbox.proxyprotocol import HeaderReader, ProxyHeader, ProxyHeaderError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class UpstreamProxy:
    """A listener's PROXY protocol settings."""

    #: The load balancers allowed to send the header; every other peer is refused.
    networks: tuple[Network, ...]
    #: Seconds the whole header may take to arrive.
    timeout: float

    @classmethod
    def of(cls, settings: ListenerSettings) -> UpstreamProxy | None:
        """The listener's settings, or None when it reads no PROXY header."""
        if not settings.proxy_protocol:
            return None
        networks = tuple(ipaddress.ip_network(n, strict=False) for n in settings.proxy_networks)
        return cls(networks, settings.proxy_timeout)

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:  # no IP address at all: not a balancer we know
            return False
        return any(ip in network for network in self.networks)


#: Called with the transport (paused, right after the header) and the header.
OnHeader = Callable[[asyncio.Transport, ProxyHeader], None]


class HeaderProtocol(asyncio.BufferedProtocol):
    """A new connection until its PROXY header is read; then it is the listener's."""

    def __init__(
        self,
        proxy: UpstreamProxy,
        on_header: OnHeader,
        log: Log,
        metrics: ListenerMetrics | None,
    ) -> None:
        self._proxy = proxy
        self._on_header = on_header
        self._log = log
        self._metrics = metrics
        self._reader = HeaderReader()
        self._chunk = bytearray()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        if peername is None:
            # uvloop asks for the address only now: a peer that reset the connection before
            # (HAProxy ends its check-send-proxy health checks with a RST) has none. It is
            # gone, not a stranger: nothing to refuse or to warn about.
            self._log.debug("connection gone before its address was read")
            self._transport.close()
            return
        peer = plain_peer(peername)[0]
        self._log = self._log.bind(remote=peer)
        if not self._proxy.trusts(peer):
            self._refuse("not from proxy_networks")
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._proxy.timeout, self._refuse, "no PROXY header in time")

    def get_buffer(self, sizehint: int) -> memoryview:
        self._chunk = bytearray(self._reader.wanted())
        return memoryview(self._chunk)

    def buffer_updated(self, nbytes: int) -> None:
        try:
            header = self._reader.receive_data(bytes(self._chunk[:nbytes]))
        except ProxyHeaderError as exc:
            self._refuse(str(exc))
            return
        if header is None:
            return
        self._stop_timer()
        transport = self._transport
        assert transport is not None
        transport.pause_reading()  # until the channel (or the TLS handshake) takes the rest
        if header.source is None:
            self._log.debug("PROXY header names no client", reason=header.reason)
        self._on_header(transport, header)

    def eof_received(self) -> bool:
        self._refuse("closed before the PROXY header")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()

    def _refuse(self, reason: str) -> None:
        self._stop_timer()
        self._log.warning("connection refused: PROXY protocol", reason=reason)
        if self._metrics is not None:
            self._metrics.refused.inc()
        if self._transport is not None:
            self._transport.close()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
