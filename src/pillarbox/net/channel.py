"""A byte channel over an asyncio transport: what every protocol adapter reads from and writes to.

Built on ``asyncio.Protocol`` rather than streams for one reason that matters to security:
STARTTLS (RFC 3207 §4.2, RFC 2595 §3.1, CVE-2011-0411). Every plaintext byte received before the
TLS handshake passes through :meth:`data_received` into our own buffer, so
:meth:`Channel.start_tls` can discard it exactly; a stream reader would hold bytes in a private
buffer that would later be read as if they had come over TLS.

Also here: flow control both ways (reading pauses while the adapter has a backlog; writes wait
for the transport to drain), and the mapping of low-level ``OSError``/``ssl`` failures to
:class:`ChannelClosed` — once, at this boundary (STYLE §6).

A wait's timeout is a deadline the channel's one timer checks when it fires: the timer is made
when a wait's deadline comes before it (the first wait, mostly) and lives on between waits,
re-arming itself for a later deadline, until the connection is lost. A timer per wait, made and
cancelled around it, was 3–5 µs a wait under uvloop (several a message at the MX).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable
from typing import Any, cast

from pillarbox.errors import PillarboxError

#: Bytes buffered from the peer before reading is paused (the adapter has not consumed them).
READ_HIGH_WATER = 256 * 1024


class ChannelClosed(PillarboxError):
    """The connection is gone (peer closed, reset, or TLS failed); ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Channel(asyncio.Protocol):
    """One accepted (or opened) connection as a byte pipe with timeouts."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        #: What a receive waits on while nothing is buffered, woken by data, the end of the
        #: stream, an interruption or its deadline (:meth:`_wake`); None while none waits.
        #: A future of the loop's own, as asyncio's streams keep: ``asyncio.Event``'s wait
        #: and set are Python code around the same future, paid at every wait.
        self._waiter: asyncio.Future[None] | None = None
        self._eof = False
        self._lost: str | None = None
        #: While the transport has paused our writing: what drains wait on, set when it
        #: resumes (or the connection is lost). None while writing flows, as it nearly always
        #: does: an ``asyncio.Event`` made for every connection was Python code for nobody.
        self._write_resumed: asyncio.Event | None = None
        self._loop = asyncio.get_running_loop()
        #: What :meth:`wait_connected` waits on, made only for such a wait.
        self._connected: asyncio.Future[None] | None = None
        self._tls_active = False
        self._interrupted = False
        self._timed_out = False
        #: When the wait in progress times out (loop time); None between waits.
        self._deadline: float | None = None
        #: The timer that checks :attr:`_deadline`, and when it fires.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._handshake_failed = False
        #: The client's and the balancer's endpoints from a PROXY header (see :meth:`relay`).
        self._relayed: tuple[tuple[str, int], tuple[str, int]] | None = None
        #: The transport's peer, as :attr:`peer` gives it: asked by the listener and the
        #: session, and uvloop formats the address anew (``inet_ntop``, ``snprintf``) each time.
        self._peer: tuple[str, int] | None = None

    # -- asyncio.Protocol callbacks ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)
        self._tls_active = transport.get_extra_info("ssl_object") is not None
        if self._connected is not None and not self._connected.done():
            self._connected.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._wake()
        if len(self._buffer) > READ_HIGH_WATER and self._transport is not None:
            self._transport.pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = _describe_error(exc) if exc else "closed"
        self._eof = True
        self._wake()
        self.resume_writing()
        if self._timer is not None:
            # Else it would keep this channel (and its buffers) until the last deadline.
            self._timer.cancel()
            self._timer = None

    def pause_writing(self) -> None:
        if self._write_resumed is None:
            self._write_resumed = asyncio.Event()

    def resume_writing(self) -> None:
        resumed, self._write_resumed = self._write_resumed, None
        if resumed is not None:
            resumed.set()

    # -- adapter API ---------------------------------------------------------------------------
    @property
    def transport(self) -> asyncio.Transport:
        if self._transport is None:
            raise ChannelClosed("not connected")
        return self._transport

    def extra(self, name: str) -> Any:
        return self._transport.get_extra_info(name) if self._transport else None

    def relay(self, source: tuple[str, int], destination: tuple[str, int]) -> None:
        """Take a trusted PROXY header's endpoints as :attr:`peer` and :attr:`local`: the
        client's address is then the one every log line, limit and policy check sees."""
        self._relayed = (source, destination)

    @property
    def peer(self) -> tuple[str, int]:
        """Remote address and port (IPv4-mapped IPv6 addresses are shown as IPv4); the
        client's, from the PROXY header, behind a load balancer."""
        if self._relayed is not None:
            return self._relayed[0]
        peer = self._peer
        if peer is None:
            if self._transport is None:
                return ("", 0)
            peer = self._peer = plain_peer(self._transport.get_extra_info("peername"))
        return peer

    @property
    def local(self) -> tuple[str, int]:
        if self._relayed is not None:
            return self._relayed[1]
        sock = self.extra("sockname") or ("", 0)
        return str(sock[0]), int(sock[1])

    @property
    def tls_active(self) -> bool:
        return self._tls_active

    @property
    def handshake_failed(self) -> bool:
        """A STARTTLS handshake on this channel failed (the metrics count it per listener)."""
        return self._handshake_failed

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        obj = self.extra("ssl_object")
        return obj if isinstance(obj, ssl.SSLObject) else None

    async def wait_connected(self) -> None:
        if self._transport is None:
            if self._connected is None:
                self._connected = self._loop.create_future()
            await self._connected

    def interrupt(self) -> None:
        """End a wait of :meth:`receive_unless_interrupted`, now and from now on, while
        nothing is buffered (the server shutting down, for a session between commands)."""
        self._interrupted = True
        self._wake()

    async def receive(self, timeout: float | None) -> bytes:
        """Return what the peer has sent (at least one byte), or b"" at end of stream.

        Raises ``TimeoutError`` if nothing arrives within ``timeout`` seconds.
        """
        data = await self._receive(timeout, interruptible=False)
        assert data is not None
        return data

    def receive_unless_interrupted(self, timeout: float | None) -> Awaitable[bytes | None]:
        """:meth:`receive`, or None once :meth:`interrupt` was called and nothing is buffered:
        one wait for the peer's bytes and an interruption, without a task to race them.
        (The wait itself, not a coroutine awaiting it: a frame fewer at every SMTP command.)"""
        return self._receive(timeout, interruptible=True)

    async def _receive(self, timeout: float | None, *, interruptible: bool) -> bytes | None:
        if not self._buffer and not self._eof:
            if self._waiter is not None:
                raise RuntimeError("another receive is already waiting on this channel")
            # A deadline the channel's timer wakes the wait at as data would: cheaper than
            # the task cancellation of ``asyncio.timeout``, which every command of every
            # session paid, and than a timer per wait (see the module notes).
            if timeout is not None:
                self._wait_until(self._loop.time() + (timeout if timeout > 0.0 else 0.0))
            self._timed_out = False
            try:
                while not self._buffer and not self._eof:
                    if interruptible and self._interrupted:
                        return None
                    if self._timed_out:
                        raise TimeoutError
                    self._waiter = self._loop.create_future()
                    await self._waiter
            finally:
                self._deadline = None
                self._waiter = None
        data = bytes(self._buffer)
        self._buffer.clear()
        if self._transport is not None and not self._eof:
            self._transport.resume_reading()
        return data

    def _wait_until(self, deadline: float) -> None:
        """Time the wait out at ``deadline``; the timer is made anew only when it would fire
        after it (or there is none: the first wait, or the connection is lost)."""
        self._deadline = deadline
        if self._timer is None or self._timer_at > deadline:
            if self._timer is not None:
                self._timer.cancel()
            if self._lost is None:
                self._timer = self._loop.call_at(deadline, self._deadline_check)
                self._timer_at = deadline

    def _deadline_check(self) -> None:
        """The timer fired: time out the wait in progress if the timer was set for its
        deadline (the loop's timers may fire a little early; a timer per wait took that as
        the timeout too), else wait on for it; between waits, the next wait arms it again."""
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return
        if deadline <= self._timer_at:
            self._timed_out = True
            self._wake()
        else:
            self._wait_until(deadline)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def write(self, data: bytes) -> None:
        """Queue ``data`` for sending; pair with :meth:`drain` to honour back-pressure."""
        if not data:
            return
        if self._lost is not None or self._transport is None or self._transport.is_closing():
            raise ChannelClosed(self._lost or "closed")
        self._transport.write(data)

    async def drain(self) -> None:
        resumed = self._write_resumed
        if resumed is not None:
            await resumed.wait()
        if self._lost is not None:
            raise ChannelClosed(self._lost)

    async def send(self, data: bytes) -> None:
        self.write(data)
        # write() raised if the connection is lost: only a paused transport leaves a drain
        # to wait for (a coroutine less for every reply sent).
        if self._write_resumed is not None:
            await self.drain()

    async def start_tls(self, context: ssl.SSLContext, timeout: float = 30.0) -> int:
        """Upgrade to TLS (server side); returns how many buffered plaintext bytes were discarded.

        RFC 3207 §4.2: anything the client pipelined after STARTTLS is not trusted and is dropped.
        """
        discarded = len(self._buffer)
        await self._upgrade(context, server_side=True, server_hostname=None, timeout=timeout)
        return discarded

    async def start_tls_client(
        self, context: ssl.SSLContext, server_hostname: str | None, timeout: float = 30.0
    ) -> None:
        """Upgrade an outgoing connection to TLS (SMTP client STARTTLS)."""
        await self._upgrade(
            context, server_side=False, server_hostname=server_hostname, timeout=timeout
        )

    async def _upgrade(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None,
        timeout: float,
    ) -> None:
        """The TLS handshake of either side, over this transport; buffered plaintext is dropped."""
        self._buffer.clear()
        loop = asyncio.get_running_loop()
        try:
            new_transport = await loop.start_tls(
                self.transport,
                self,
                context,
                server_side=server_side,
                server_hostname=server_hostname,
                ssl_handshake_timeout=timeout,
            )
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
            self._lost = _describe_error(exc)
            self._handshake_failed = True
            raise ChannelClosed(self._lost) from exc
        if new_transport is None:
            self._handshake_failed = True
            raise ChannelClosed("TLS handshake failed")
        self._transport = new_transport
        self._tls_active = True

    async def close(self) -> None:
        """Flush what was written, then close."""
        if self._transport is None or self._transport.is_closing():
            return
        # Nothing waits to drain unless the transport paused our writing: the timeout (a
        # timer made and cancelled, every connection) only for that.
        if self._lost is None and self._write_resumed is not None:
            try:
                async with asyncio.timeout(5):
                    await self.drain()
            except (TimeoutError, ChannelClosed):
                pass
        self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


def plain_peer(peername: Any) -> tuple[str, int]:
    """A transport's ``peername`` as (address, port), IPv4-mapped IPv6 shown as IPv4, and
    ("", 0) for a UNIX socket's peer."""
    peer = peername or ("", 0)
    host = str(peer[0])
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, int(peer[1])


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        # OpenSSL's verification message ("Hostname mismatch", "certificate has expired"):
        # what a TLS report (RFC 8460 §4.3.1) and an operator need, beyond the bare reason.
        return f"TLS error: certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"
