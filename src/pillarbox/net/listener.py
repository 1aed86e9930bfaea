"""Listening sockets: accept, admit or refuse, run one handler task per connection, stop cleanly.

Admission limits (connections in total and per client address) are checked at accept; a refused
connection is still handed to the protocol's handler with ``admitted=False`` so it can say the
protocol's own "busy" reply (421, ``* BYE``, ``-ERR [SYS/TEMP]``) before closing — a silent close
would look like a network fault to the client and make it retry at once.

Behind a load balancer (``proxy_protocol``), a connection is first read for its PROXY header
(:mod:`pillarbox.net.proxyheader`); only then is it admitted — counted under the client's
address, not the balancer's — and, on an implicit-TLS listener, its TLS handshake made.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pillarbox.clientaddress import DEFAULT_IPV6_PREFIX, client_key
from pillarbox.net.channel import Channel, ChannelClosed
from pillarbox.net.proxyheader import HeaderProtocol, UpstreamProxy
from pillarbox.net.tls import HANDSHAKE_FAILED
from pillarbox.observability.log import Log, new_connection_id
from pillarbox.observability.metrics import ListenerMetrics
from pillarbox.proxyprotocol import ProxyHeader


@dataclass(frozen=True, slots=True)
class Admission:
    """What a handler is told about its connection before the first byte."""

    connection_id: str
    admitted: bool
    #: Why the connection was refused (for the log and the protocol's busy reply).
    refusal: str = ""


Handler = Callable[[Channel, Admission], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLimits:
    total: int = 1000
    per_address: int = 50
    #: IPv6 addresses count against ``per_address`` by this prefix (:mod:`pillarbox.clientaddress`).
    ipv6_prefix: int = DEFAULT_IPV6_PREFIX


class ConnectionCounter:
    """Counts live connections in total and per address; shared by the listeners of a service
    (the MX and both submission ports share SMTP's limits)."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.total = 0
        #: Live connections per client key, none at zero. A plain dict: ``Counter``'s
        #: ``__missing__`` and ``__delitem__`` are Python code, paid at every accept and close.
        self.by_address: dict[str, int] = {}

    def admit(self, address: str | None) -> str:
        """Count the connection in; returns "" if admitted, else the reason it is refused.
        ``None``: counted in the total only (a reverse proxy's, carrying many clients)."""
        if self.total >= self.limits.total:
            return "too many connections"
        if address is None:
            self.total += 1
            return ""
        key = client_key(address, self.limits.ipv6_prefix)
        count = self.by_address.get(key, 0)
        if count >= self.limits.per_address:
            return "too many connections from your address"
        self.total += 1
        self.by_address[key] = count + 1
        return ""

    def release(self, address: str | None) -> None:
        self.total -= 1
        if address is None:
            return
        key = client_key(address, self.limits.ipv6_prefix)
        count = self.by_address.get(key, 0) - 1
        if count > 0:
            self.by_address[key] = count
        else:
            self.by_address.pop(key, None)


class Listener:
    """One listening socket (possibly several, for a dual-stack address) for one service."""

    def __init__(
        self,
        name: str,
        handler: Handler,
        counter: ConnectionCounter,
        *,
        tls: ssl.SSLContext | None = None,
        handshake_timeout: float = 30.0,
        metrics: ListenerMetrics | None = None,
        proxy: UpstreamProxy | None = None,
    ) -> None:
        self.name = name
        #: Read a PROXY header first (then TLS, if ``tls``, is started by :meth:`_run`).
        self._proxy = proxy
        self._metrics = metrics
        self._handler = handler
        self._counter = counter
        self._tls = tls
        self._handshake_timeout = handshake_timeout
        self._server: asyncio.Server | None = None
        #: The UNIX socket's path, when listening on one (removed at :meth:`finish`).
        self._path: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._log = Log(f"net.{name}")

    @property
    def ports(self) -> list[tuple[str, int]]:
        """The bound (address, port) pairs, port 0 resolved; (path, 0) for a UNIX socket."""
        if self._server is None:
            return []
        if self._path is not None:
            return [(self._path, 0)]
        return [(str(s.getsockname()[0]), int(s.getsockname()[1])) for s in self._server.sockets]

    async def start(self, address: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        tls = None if self._proxy else self._tls  # behind a balancer: TLS after the header
        failures = None if self._metrics is None else self._metrics.handshake_failures
        # Implicit TLS: the accepted connections' handshakes report to this listener's
        # counter (pillarbox.net.tls); they run in a copy of the context serving starts in.
        # Behind a balancer the channel makes the handshake and :meth:`_run` counts it.
        reporting = HANDSHAKE_FAILED.set(failures.inc if tls and failures else None)
        try:
            self._server = await loop.create_server(
                self._make_channel,
                host=address,
                port=port,
                ssl=tls,
                ssl_handshake_timeout=self._handshake_timeout if tls else None,
                reuse_address=True,
                backlog=1024,
            )
        finally:
            HANDSHAKE_FAILED.reset(reporting)

    async def start_unix(self, path: str, mode: int) -> None:
        """Listen on the UNIX socket ``path`` (from the admin's config only) with permissions
        ``mode``. A socket file nobody listens on (left by a crash) is replaced; one in use,
        or a file that is not a socket, is an error (OSError)."""
        clear_stale_socket(path)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(self._make_channel, path=path, backlog=1024)
        self._path = path
        os.chmod(path, mode)

    def _make_channel(self) -> asyncio.BaseProtocol:
        if self._proxy is not None:
            return HeaderProtocol(self._proxy, self._relayed, self._log, self._metrics)
        return _AcceptedChannel(self)

    def _relayed(self, transport: asyncio.Transport, header: ProxyHeader) -> None:
        """The PROXY header is read: the connection becomes a channel whose peer is the
        header's client (the connection's own, for a header naming none)."""
        channel = _AcceptedChannel(self)
        if header.source is not None and header.destination is not None:
            channel.relay(header.source, header.destination)
        transport.set_protocol(channel)
        channel.connection_made(transport)
        if self._tls is None:
            transport.resume_reading()  # with TLS, loop.start_tls resumes it

    def _spawn(self, channel: Channel) -> None:
        task = asyncio.get_running_loop().create_task(self._run(channel))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, channel: Channel) -> None:
        # No TCP_NODELAY here: asyncio's and uvloop's TCP transports set it on every accepted
        # socket (tests/unit/test_net_listener.py), and asking again (the transport's socket
        # object, its family as an enum, a system call) was paid by every connection.
        address = channel.peer[0]
        connection_id = new_connection_id(self.name)
        refusal = self._counter.admit(address)
        admission = Admission(connection_id, admitted=not refusal, refusal=refusal)
        metrics = self._metrics
        if refusal:
            self._bound(admission, address).warning("connection refused", reason=refusal)
            if metrics is not None:
                metrics.refused.inc()
        elif metrics is not None:
            metrics.sessions.inc()
        try:
            if self._proxy is not None and self._tls is not None:
                await channel.start_tls(self._tls, self._handshake_timeout)
            await self._handler(channel, admission)
        except ChannelClosed as exc:
            self._bound(admission, address).info("connection lost", reason=exc.reason)
        except asyncio.CancelledError:
            channel.abort()
            raise
        except Exception:
            self._bound(admission, address).exception("handler failed")
            channel.abort()
        finally:
            if not refusal:
                self._counter.release(address)
            failures = None if metrics is None else metrics.handshake_failures
            if failures is not None and channel.handshake_failed:
                failures.inc()
            await channel.close()

    def _bound(self, admission: Admission, address: str) -> Log:
        """The listener's log for one connection: bound only for a line to write, which most
        connections (the handler logs its own) never have."""
        return self._log.bind(conn=admission.connection_id, remote=address)

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    @property
    def active(self) -> int:
        return len(self._tasks)

    async def finish(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for connections to end, then cancel the rest."""
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        if self._server is not None:
            await self._server.wait_closed()
        if self._path is not None:
            clear_stale_socket(self._path)
            self._path = None


def clear_stale_socket(path: str) -> None:
    """Remove the socket file at ``path`` unless a server still accepts on it."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise OSError(errno.EEXIST, "the path exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody listening: left over
            return
    raise OSError(errno.EADDRINUSE, "another server listens on the socket")


class _AcceptedChannel(Channel):
    def __init__(self, listener: Listener) -> None:
        super().__init__()
        self._listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._listener._spawn(self)
