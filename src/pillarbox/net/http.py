"""The web listeners: uvicorn serving an ASGI app on the server's own event loop, over plain
HTTP ("http", the ACME challenge listener) or implicit TLS ("https").

Implementation notes:

- **One loop** (DESIGN principle 7): uvicorn's ``Server.serve`` runs as a task on the running
  loop, on a socket we bind ourselves (so port 0 works and the bound port is known at once).
- **TLS is the shared context**: "https" hands uvicorn the one :class:`ssl.SSLContext` every
  listener uses, through uvicorn's public ``ssl_context_factory`` (uvicorn ≥ 0.47) rather than
  certificate files, so a certificate loaded into it (an ACME renewal,
  :mod:`pillarbox.net.acme`) is what the next HTTPS handshake presents, with no restart. uvicorn
  passes the context to ``loop.create_server(ssl=...)``; its protocol reports ``scheme``
  "https" to the app from the transport (the session cookie's ``Secure``, HSTS).
- **Bind, then serve**: the socket is bound before the app exists (:meth:`HttpListener.bind`),
  so the web app can be built knowing every bound port (client set-up pages, the HTTPS redirect).
- **The TLS handshake is bounded** by ``tls.handshake_timeout``, as on the other listeners
  (:class:`_EmbeddedUvicorn` opens the server itself: uvicorn leaves asyncio's 60 s).
- **Behind a reverse proxy** (``forwarded_headers``): :mod:`pillarbox.net.forwarded` takes
  the client's address and scheme from ``Forwarded`` (RFC 7239) or
  ``X-Forwarded-For``/``X-Forwarded-Proto`` on connections from the trusted networks only, in
  place of uvicorn's proxy-headers middleware (which reads only the X- fields; uvicorn reads no
  PROXY protocol header).
- **Signals belong to ``pillarbox serve``**: uvicorn would install its own SIGINT/SIGTERM
  handlers (and re-raise the signal afterwards); :class:`_EmbeddedUvicorn` disables that, and
  the server stops uvicorn through :meth:`HttpListener.stop_accepting` /
  :meth:`HttpListener.finish`, like every other listener.
- **ACME tls-alpn-01** (``acme_tls_alpn``): the listener's handshakes read the ClientHello and
  answer a CA's ``acme-tls/1`` validation (:mod:`pillarbox.net.tls`); such a connection is
  closed after its handshake by :class:`ValidationGuard`, before uvicorn sees it.
- **Connections are bounded** (:class:`ConnectionGuard`, ``[web] max_connections``,
  ``max_connections_per_ip``), as on the other listeners: past either limit a connection
  gets a 503 and is closed. **Slow clients are closed** (``request_head_timeout``,
  ``request_body_timeout``, ``request_body_min_rate``; :mod:`pillarbox.net.requestclock`):
  uvicorn times out only the wait between requests, so a client that sent nothing, a request
  head a byte at a time (the first or any later one on a kept-alive connection) or a body a
  byte at a time held its connection for ever, and a thousand of them from one address left
  everyone else 503. Connections from
  ``proxy_networks`` (forwarded headers on) carry many clients and count only in the total.
- **Graceful stop**: uvicorn closes the socket, asks keep-alive connections to close and gives
  in-flight requests ``grace`` seconds; the web app's live-update streams end by themselves
  once ``Services.shutdown`` is set, so they do not hold the stop up.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import cast

import uvicorn
from starlette.types import ASGIApp

from pillarbox.net.forwarded import ForwardedHeaders, TrustedNetworks
from pillarbox.net.listener import ConnectionCounter
from pillarbox.net.requestclock import RequestClock
from pillarbox.net.tls import ACME_TLS_1, ACME_TLS_ALPN
from pillarbox.observability.log import Log


class ValidationGuard(asyncio.Protocol):
    """The https listener's protocol in front of the web app's: a connection whose handshake
    negotiated ``acme-tls/1`` is closed at once and never reaches the app (RFC 8737 §4: no
    data follows the handshake); every other one is handed over untouched."""

    def __init__(self, inner: asyncio.Protocol) -> None:
        self._inner = inner
        self._validation = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == ACME_TLS_1:
            self._validation = True
            transport.close()  # after the pending handshake bytes, with a close_notify
            return
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._validation:
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._validation:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self._validation else self._inner.eof_received()

    def pause_writing(self) -> None:
        if not self._validation:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if not self._validation:
            self._inner.resume_writing()


#: The answer to a connection past a limit (RFC 9110 §15.6.4), before uvicorn sees it.
REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
    b"Retry-After: 60\r\nConnection: close\r\n\r\ntoo many connections\n"
)


class ConnectionGuard(asyncio.Protocol):
    """In front of uvicorn's protocol: counts the connection in (``connections``; a 503 and
    close past a limit, the peer counted only in the total when ``unlimited`` holds for it)
    and closes it when its client is late with a request head or body (``times`` makes the
    clock that says when: :mod:`pillarbox.net.requestclock`; module notes)."""

    def __init__(
        self,
        inner: asyncio.Protocol,
        connections: ConnectionCounter,
        *,
        times: Callable[[float], RequestClock],
        unlimited: Callable[[str], bool],
        log: Log,
    ) -> None:
        self._inner = inner
        self._connections = connections
        self._times = times
        self._unlimited = unlimited
        self._log = log
        self._counted: str | None = None
        self._admitted = False
        self._clock: RequestClock | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._address = ""
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if peer else ""
        key = None if self._unlimited(address) else address
        refusal = self._connections.admit(key)
        if refusal:
            self._log.info("connection refused", remote=address, reason=refusal)
            # A stream protocol's transport writes; uvloop's is no asyncio.WriteTransport.
            cast(asyncio.Transport, transport).write(REFUSED)
            transport.close()
            return
        self._admitted, self._counted, self._transport = True, key, transport
        self._address = address
        self._clock = self._times(asyncio.get_running_loop().time())
        self._arm()
        self._inner.connection_made(transport)

    def _arm(self) -> None:
        """A timer at the clock's deadline, unless one runs no later: a timer firing early
        re-arms itself (:meth:`_check`), so bytes arriving (which only push a deadline
        further) cost no timer of their own; a new head or body may bring it nearer."""
        deadline = None if self._clock is None else self._clock.deadline()
        if deadline is None:
            return
        if self._timer is not None:
            if self._timer.when() <= deadline:
                return
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(deadline, self._check)

    def _check(self) -> None:
        self._timer = None
        clock = self._clock
        if clock is None or self._transport is None:
            return
        deadline = clock.deadline()
        if deadline is not None and deadline <= asyncio.get_running_loop().time():
            self._log.info(
                "client too slow, closing", remote=self._address, waiting_for=clock.phase.value
            )
            self._clock = None
            self._transport.close()
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        if not self._admitted:
            return
        if self._clock is not None:
            self._clock.received(data, asyncio.get_running_loop().time())
            self._arm()
        self._inner.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._connections.release(self._counted)
        self._inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._admitted else None

    def pause_writing(self) -> None:
        if self._admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self._inner.resume_writing()


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without signal handling of its own (the process's owner handles signals), and
    with a bound on the TLS handshake."""

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        handshake_timeout: float,
        guarded: bool = False,
        admission: Callable[[asyncio.Protocol], asyncio.Protocol] | None = None,
    ) -> None:
        super().__init__(config)
        self._handshake_timeout = handshake_timeout
        self._guarded = guarded
        self._admission = admission

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's start-up without sockets, then the server on ours made here: uvicorn's
        own ``create_server`` passes no ``ssl_handshake_timeout``, and asyncio's default lets
        a client that never completes the handshake hold a connection for 60 s."""
        await super().startup(sockets=[])  # the lifespan and server state; no server yet
        if self.should_exit:  # the app's lifespan start-up failed: uvicorn serves nothing
            return
        self.started = False
        config = self.config

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            protocol: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=_loop,
            )
            if self._guarded:
                protocol = ValidationGuard(protocol)
            return protocol if self._admission is None else self._admission(protocol)

        loop = asyncio.get_running_loop()
        for sock in sockets or []:
            server = await loop.create_server(
                create_protocol,
                sock=sock,
                ssl=config.ssl,
                backlog=config.backlog,
                ssl_handshake_timeout=self._handshake_timeout if config.ssl else None,
            )
            self.servers.append(server)
        self.started = True


def _bind(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((address, port))
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


#: RFC 9110 §4.2: the port a URL may leave out.
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(scheme: str, host: str, port: int) -> str:
    """``https://mail.example.org``, ``http://127.0.0.1:8080``, ``https://[::1]:8443``: the
    port written only when it is not the scheme's default (RFC 9110 §4.2)."""
    netloc = f"[{host}]" if ":" in host else host
    return f"{scheme}://{netloc}" + ("" if DEFAULT_PORTS.get(scheme) == port else f":{port}")


class HttpListener:
    """A web listener: :meth:`start` (or :meth:`bind` then :meth:`serve`), then the same
    surface as :class:`~pillarbox.net.listener.Listener`; ``tls`` makes it HTTPS."""

    def __init__(
        self,
        name: str,
        *,
        grace: float,
        tls: ssl.SSLContext | None = None,
        max_connections: int = 1000,
        keepalive: float = 5.0,
        handshake_timeout: float = 30.0,
        forwarded: tuple[str, ...] = (),
        acme_tls_alpn: Callable[[str], ssl.SSLContext | None] | None = None,
        connections: ConnectionCounter | None = None,
        head_timeout: float = 30.0,
        body_timeout: float = 60.0,
        body_min_rate: int = 500,
    ) -> None:
        self.name = name
        #: Shared by the web listeners (:class:`ConnectionGuard`); None: uvicorn's limit only.
        self._connections = connections
        self._times = functools.partial(
            RequestClock,
            head_timeout=head_timeout,
            body_timeout=body_timeout,
            body_min_rate=body_min_rate,
        )
        self.tls = tls
        #: SNI name → the context answering its tls-alpn-01 challenge (None: not answered).
        self._acme_tls_alpn = acme_tls_alpn
        #: Networks whose Forwarded and X-Forwarded-For/-Proto are believed; empty: nobody's.
        self._forwarded = forwarded
        self._handshake_timeout = handshake_timeout
        self._grace = grace
        self._max_connections = max_connections
        self._keepalive = keepalive
        self._socket: socket.socket | None = None
        self._server: _EmbeddedUvicorn | None = None
        self._task: asyncio.Task[None] | None = None
        self._log = Log(f"net.{name}")

    def _admission(self) -> Callable[[asyncio.Protocol], asyncio.Protocol] | None:
        counter = self._connections
        if counter is None:
            return None
        proxies = TrustedNetworks(self._forwarded)

        def guard(protocol: asyncio.Protocol) -> asyncio.Protocol:
            return ConnectionGuard(
                protocol,
                counter,
                times=self._times,
                unlimited=proxies.peer,
                log=self._log,
            )

        return guard

    @property
    def ports(self) -> list[tuple[str, int]]:
        if self._socket is None:
            return []
        address, port = self._socket.getsockname()[:2]
        return [(str(address), int(port))]

    async def start(self, address: str, port: int, app: ASGIApp) -> None:
        self.bind(address, port)
        await self.serve(app)

    def bind(self, address: str, port: int) -> None:
        self._socket = _bind(address, port)

    async def serve(self, app: ASGIApp) -> None:
        """Run uvicorn with ``app`` on the bound socket; returns once it accepts."""
        assert self._socket is not None, "bind() first"
        tls = self.tls
        if self._forwarded:
            app = ForwardedHeaders(app, self._forwarded)
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,  # ForwardedHeaders reads them, Forwarded included
            limit_concurrency=self._max_connections,
            timeout_keep_alive=int(self._keepalive),
            timeout_graceful_shutdown=int(max(1, self._grace)),
            # The shared context itself, never a copy: certificate reloads reach this listener.
            ssl_context_factory=None if tls is None else (lambda _config, _default: tls),
        )
        answering = tls is not None and self._acme_tls_alpn is not None
        self._server = _EmbeddedUvicorn(
            config,
            handshake_timeout=self._handshake_timeout,
            guarded=answering,
            admission=self._admission(),
        )
        # Set while the task is made: its connections' handshakes run in copies of its context.
        answers = ACME_TLS_ALPN.set(self._acme_tls_alpn if answering else None)
        try:
            self._task = asyncio.get_running_loop().create_task(
                self._server.serve(sockets=[self._socket]), name=f"{self.name}-uvicorn"
            )
        finally:
            ACME_TLS_ALPN.reset(answers)
        while not self._server.started:  # startup is a few loop turns; fail fast if it died
            if self._task.done():
                self._task.result()
                raise RuntimeError("the HTTP server stopped during start-up")
            await asyncio.sleep(0.005)

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.should_exit = True

    async def finish(self, grace: float) -> None:
        """Wait for uvicorn's own graceful shutdown (bounded by ``grace``), then force it."""
        task = self._task
        if task is None:  # bound, never served (start-up failed in between)
            if self._socket is not None:
                self._socket.close()
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=grace + 2)
        except TimeoutError:
            if self._server is not None:
                self._server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            if self._socket is not None:
                self._socket.close()
            self._task = None
