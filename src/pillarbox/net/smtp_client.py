"""Asyncio adapter driving the sans-I/O SMTP client core (:mod:`pillarbox.smtp.client`) for
outbound delivery: one :class:`SmtpSession` is one connection to one address of one host, over
which the queue delivers any number of :class:`~pillarbox.queue.remote.Part` s in turn.

Implementation notes:

- The core decides the protocol (pipelining, CHUNKING, reply matching, per-recipient results,
  RFC 5321 §4.5.3.2 reply timeouts via :meth:`ClientConnection.deadline`); this adapter moves
  bytes, runs the TLS handshake, and maps what the core reports onto the part's recipients.
- **EHLO**, then HELO if the server refuses EHLO with 5xx (RFC 5321 §3.2). **STARTTLS** whenever
  offered (RFC 3207), then EHLO again (§4.2). For MX hosts the TLS is opportunistic
  (RFC 7435): any certificate is accepted unless the domain's MTA-STS policy says which one
  is right (RFC 8461 §4.2: the runner then passes a verifying context and ``require_tls``);
  a failed STARTTLS fails the session, and the runner opens a plaintext one when the
  settings are :attr:`~SessionSettings.opportunistic`. Under DANE (RFC 7672) the runner
  passes the host's usable TLSA records: the handshake accepts any certificate (§3.1.1: names
  and dates do not count), and the leaf certificate must then match one of the records,
  before EHLO. Under a ``verify``/``secure`` TLS policy the handshake verifies the chain (not
  the name) and the certificate must then carry one of the policy's names (``tls_match``),
  before EHLO. A smart host may require TLS and a verified certificate, and gets the
  credentials (AUTH PLAIN, RFC 4954/4616) only over TLS.
- A failure before the first transaction (connection refused, no 220, EHLO/HELO refused, TLS,
  AUTH) fails the session as a whole (:meth:`open` returns the reply; the runner moves on to the
  next address or host); once the session is up,
  every recipient gets the core's per-recipient result, session-level ones (421, timeouts, a
  lost connection) leaving it open for the next host, and a 452 "too many recipients" after
  others were accepted leaving it open for the next transaction (:mod:`~pillarbox.queue.remote`).
- **LIMITS** (RFC 9422), from the last EHLO reply (§3.6): a transaction carries at most RCPTMAX
  recipients of the part, the others staying open for the next one (§4.2); after MAILMAX
  transactions the session is :attr:`~SmtpSession.spent` (§4.1) and the runner opens another
  connection for what is left. RCPTDOMAINMAX (§4.3) holds by construction: a session carries
  the recipients of one domain.
- The message body goes out in chunks of ``chunk_size`` (each a BDAT chunk under CHUNKING,
  dot-stuffed by the core under DATA); every write waits for the transport to drain, bounded by
  the RFC 5321 §4.5.3.2.5 data block timeout.
- Low-level errors (``OSError``, ``ssl``) become replies here, once (STYLE §6).
- No reply made here names the host (nor does the server's own reply get it added): the
  runner keeps the host beside each reply, and ``queue show`` and the reports print
  ``host: reply``, the host once (:func:`pillarbox.queue.schedule.described`).
- A **5xx greeting** (RFC 5321 §3.1) fails the host transiently under
  :attr:`SessionSettings.skip_5xx_greeting` (:func:`~pillarbox.queue.remote.skipped_greeting`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import os
import ssl
from dataclasses import dataclass

from pillarbox.net.channel import Channel, ChannelClosed
from pillarbox.observability.log import Log
from pillarbox.queue.dane import DANE_MISMATCH, MISMATCH_MARKER, Tlsa, certificate_matches
from pillarbox.queue.remote import (
    CONNECT_FAILED,
    RELAY_AUTH_FAILED,
    TLS_FAILED,
    TLS_UNAVAILABLE,
    Envelope,
    Part,
    envelope,
    is_over_recipient_limit,
    skipped_greeting,
    split_jobs,
)
from pillarbox.queue.tlspolicy import (
    NAME_MISMATCH,
    NAME_MISMATCH_MARKER,
    certificate_matches_names,
)
from pillarbox.smtp.client import (
    AuthChallenge,
    ClientConnection,
    ClientEvent,
    Closed,
    Greeting,
    MessageDone,
    ReadyForData,
    RecipientResult,
    Response,
    SmtpClientSettings,
)
from pillarbox.smtp.errors import LocalProtocolError
from pillarbox.smtp.extensions import Capabilities, Extension
from pillarbox.smtp.replies import Reply
from pillarbox.smtp.sentinels import CLOSED, IDLE, NEED_DATA, Sentinel

#: Bytes handed to the core per send_body() call (one BDAT chunk under CHUNKING).
DEFAULT_CHUNK = 64 * 1024
#: Seconds to wait for the reply to QUIT: the mail is delivered, so there is no reason to wait
#: the full command timeout for a server that never answers it.
QUIT_TIMEOUT = 10.0


def _endpoint(address: str, port: int) -> str:
    """``address:port``, an IPv6 address in brackets; a host name (a smart host) as it is."""
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(address).version == 6:
            return f"[{address}]:{port}"
    return f"{address}:{port}"


def _source(settings: SessionSettings, address: str) -> tuple[str, int] | None:
    """The local address to connect to ``address`` from (any port), if one is configured."""
    try:
        version = ipaddress.ip_address(address).version
    except ValueError:
        return None  # a host name (a smart host): the system resolves and chooses
    for source in settings.source_addresses:
        if ipaddress.ip_address(source).version == version:
            return (source, 0)
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSettings:
    client: SmtpClientSettings
    connect_timeout: float = 30.0
    #: Local addresses to connect from, one per IP version (``queue.source_addresses``); a
    #: host of a version without one: the system's choice.
    source_addresses: tuple[str, ...] = ()
    #: Context for STARTTLS; None never starts TLS.
    tls: ssl.SSLContext | None = None
    #: Fail the host when it does not offer STARTTLS (smart hosts with credentials).
    require_tls: bool = False
    tls_handshake_timeout: float = 30.0
    #: (user name, password) for AUTH PLAIN after TLS; None: no AUTH.
    credentials: tuple[str, str] | None = None
    chunk_size: int = DEFAULT_CHUNK
    #: DANE (RFC 7672 §3.1.1): usable TLSA records one of which the server's certificate must
    #: match after STARTTLS; empty: no DANE check. Set with ``require_tls``.
    tlsa: tuple[Tlsa, ...] = ()
    #: The SNI name when it is not the host's: the TLSA base domain (RFC 7672 §8.1).
    tls_name: str | None = None
    #: Names (``.suffix``: any subdomain) one of which the certificate must carry after a
    #: verifying handshake (``tls_policy`` verify/secure, :mod:`pillarbox.queue.tlspolicy`);
    #: empty: no name check here (the context's own, if any). Set with ``require_tls``.
    tls_match: tuple[str, ...] = ()
    #: A 5xx greeting fails the host transiently (``queue.skip_5xx_greeting``, Postfix's
    #: ``smtp_skip_5xx_greeting``), not with the server's permanent reply.
    skip_5xx_greeting: bool = True

    @property
    def opportunistic(self) -> bool:
        """TLS is tried and any certificate taken, but nothing demands it (RFC 7435 §1.3): no
        verification, DANE, name check, credentials or ``require_tls``. Only then may a failed
        STARTTLS give way to plaintext."""
        return (
            self.tls is not None
            and self.tls.verify_mode == ssl.CERT_NONE
            and not self.require_tls
            and not self.tlsa
            and not self.tls_match
            and self.credentials is None
        )


def opportunistic_context() -> ssl.SSLContext:
    """TLS for MX hosts without a policy: encrypt, accept any certificate (RFC 7435 §1.3).
    No trust store is loaded, as nothing is checked against one: the client context
    ``ssl.create_default_context`` makes, less its reading of the system's roots."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def chain_verifying_context(cafile: str | None = None) -> ssl.SSLContext:
    """PKIX without the name check: a certificate chaining to the system's roots (or those
    in ``cafile``), its names checked afterwards against a TLS policy's ``match`` list, which
    may hold several names and subdomain patterns (:mod:`pillarbox.queue.tlspolicy`)."""
    if cafile is None:
        return _system_roots(check_hostname=False, where=ssl.get_default_verify_paths())
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    context.check_hostname = False
    return context


def verifying_context(cafile: str | None = None) -> ssl.SSLContext:
    """PKIX: a certificate chaining to the system's roots (or those in ``cafile``) and naming
    the host (smart hosts; MX and policy hosts under MTA-STS, RFC 8461 §3.3, §4.2)."""
    if cafile is None:
        return _system_roots(check_hostname=True, where=ssl.get_default_verify_paths())
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)


@functools.cache
def _system_roots(*, check_hostname: bool, where: ssl.DefaultVerifyPaths) -> ssl.SSLContext:
    """One context per process checking against the system's roots as found at ``where``
    (``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` move it): reading them is ~50 ms of CPU, which
    the queue runner, its MTA-STS fetcher and a smart host's relay each paid at start.
    Shared safely: no caller changes a context it is given (they only wrap connections)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = check_hostname
    return context


class SmtpSession:
    """One open, greeted (and, where possible, encrypted) connection to ``host`` at ``address``.

    Create it with :meth:`open`; deliver parts with :meth:`deliver` while :attr:`usable`;
    finish with :meth:`close` (QUIT).
    """

    def __init__(
        self, channel: Channel, conn: ClientConnection, host: str, settings: SessionSettings
    ) -> None:
        self._channel = channel
        self._conn = conn
        self.host = host
        self._settings = settings
        self._loop = asyncio.get_running_loop()
        self._log = Log("delivery", host=host, peer=channel.peer[0])
        self._closed = False

    @property
    def usable(self) -> bool:
        """The session can take another transaction."""
        return not self._closed and self._conn.transactions_left != 0

    @property
    def spent(self) -> bool:
        """The connection is sound but the server's MAILMAX is reached (RFC 9422 §4.1): the
        rest wants a new connection."""
        return not self._closed and self._conn.transactions_left == 0

    @property
    def tls(self) -> bool:
        return self._conn.tls

    @property
    def capabilities(self) -> Capabilities:
        """What the server's last EHLO reply offered (after STARTTLS, the encrypted one)."""
        return self._conn.capabilities

    @property
    def local_address(self) -> str:
        """Our address on the connection (TLS-RPT's ``sending-mta-ip``, RFC 8460 §4.4)."""
        return str(self._channel.local[0])

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    async def open(
        cls, host: str, address: str, port: int, settings: SessionSettings
    ) -> SmtpSession | Reply:
        """Connect, read the greeting, EHLO, STARTTLS, AUTH; the reply that failed otherwise."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(settings.connect_timeout):
                _, channel = await loop.create_connection(
                    Channel, address, port, local_addr=_source(settings, address)
                )
        except (OSError, TimeoutError) as exc:
            # asyncio's own message repeats the address: the errno's words say it all.
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            if exc.errno:
                reason = os.strerror(exc.errno)
            text = f"could not connect to {_endpoint(address, port)}: {reason}"
            return CONNECT_FAILED.with_text(text)
        conn = ClientConnection(settings.client, now=loop.time())
        session = cls(channel, conn, host, settings)
        try:
            failure = await session._start()
        except LocalProtocolError as exc:  # the server's offer changed under us: not usable
            failure = CONNECT_FAILED.with_text(str(exc))
        if failure is not None:
            session._channel.abort()
            return failure
        return session

    async def _start(self) -> Reply | None:
        event = await self._event()
        if not isinstance(event, Greeting) or event.reply.code != 220:
            if isinstance(event, Greeting):
                await self._await_quit()
                # RFC 5321 §3.1: a 554 greeting means "no service here", but says nothing of
                # the other MX hosts (§5.1) nor of this one later (§4.5.4.1 retries).
                if event.reply.code >= 500 and self._settings.skip_5xx_greeting:
                    return skipped_greeting(event.reply)
            return self._failure(event)
        reply = await self._hello()
        if reply is not None:
            return reply
        offered = self._conn.capabilities
        if self._settings.tls is not None and Extension.STARTTLS in offered:
            self._conn.starttls()
            event = await self._event()
            if not isinstance(event, Response) or event.reply.code != 220:
                return self._failure(event, TLS_FAILED)
            await self._flush()
            try:
                await self._channel.start_tls_client(
                    self._settings.tls,
                    server_hostname=self._settings.tls_name or self.host,
                    timeout=self._settings.tls_handshake_timeout,
                )
            except ChannelClosed as exc:
                return TLS_FAILED.with_text(f"TLS handshake failed: {exc.reason}")
            if self._settings.tlsa:
                mismatch = self._dane_mismatch(self._settings.tlsa)
                if mismatch is not None:
                    return mismatch
            if self._settings.tls_match:
                mismatch = self._name_mismatch(self._settings.tls_match)
                if mismatch is not None:
                    return mismatch
            self._conn.tls_established()
            reply = await self._hello()
            if reply is not None:
                return reply
        elif self._settings.require_tls:
            return TLS_UNAVAILABLE.with_text("the host does not offer STARTTLS")
        if self._settings.credentials is not None:
            return await self._authenticate(*self._settings.credentials)
        return None

    async def _await_quit(self) -> None:
        """Send the QUIT the core has queued and take its reply, for at most ``QUIT_TIMEOUT``
        (RFC 5321 §3.1: a server greeting with 554 waits for it, too)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(QUIT_TIMEOUT):
                while not isinstance(await self._event(), Closed | Sentinel):
                    pass

    def _dane_mismatch(self, records: tuple[Tlsa, ...]) -> Reply | None:
        """RFC 7672 §3.1.1: the leaf certificate matches one of ``records``, or the failure."""
        ssl_object = self._channel.ssl_object
        certificate = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        matched = certificate_matches(records, certificate) if certificate else None
        if matched is None:
            text = f"the certificate {MISMATCH_MARKER} {len(records)} usable TLSA record(s)"
            return DANE_MISMATCH.with_text(text)
        self._log.info("DANE authenticated", base=self._settings.tls_name or self.host)
        return None

    def _name_mismatch(self, wanted: tuple[str, ...]) -> Reply | None:
        """The verified certificate carries one of the ``wanted`` names (RFC 6125 §6.4), or
        the failure."""
        ssl_object = self._channel.ssl_object
        certificate = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if certificate and certificate_matches_names(certificate, wanted):
            return None
        return NAME_MISMATCH.with_text(
            f"the certificate {NAME_MISMATCH_MARKER} {', '.join(wanted)}"
        )

    async def _hello(self) -> Reply | None:
        self._conn.ehlo()
        event = await self._event()
        if isinstance(event, Response) and event.reply.code >= 500:
            self._conn.helo()  # RFC 5321 §3.2: a server that does not know EHLO
            event = await self._event()
        if isinstance(event, Response) and event.reply.is_positive:
            return None
        return self._failure(event)

    async def _authenticate(self, username: str, password: str) -> Reply | None:
        if not self._conn.tls:
            return TLS_UNAVAILABLE.with_text("credentials are only sent over TLS")
        if "PLAIN" not in self._conn.capabilities.auth_mechanisms:
            return RELAY_AUTH_FAILED.with_text("the smart host does not offer AUTH PLAIN")
        # RFC 4616 §2: authzid NUL authcid NUL passwd; the authzid is left empty.
        self._conn.auth("PLAIN", b"\0" + username.encode() + b"\0" + password.encode())
        event = await self._event()
        if isinstance(event, AuthChallenge):  # a server that ignored the initial response
            self._conn.auth_cancel()
            event = await self._event()
        if isinstance(event, Response) and event.reply.code == 235:
            return None
        detail = event.reply.text if isinstance(event, Response | Closed) else "no reply"
        return RELAY_AUTH_FAILED.with_text(f"{RELAY_AUTH_FAILED.text}: {detail}")

    def _failure(self, event: ClientEvent | Sentinel, default: Reply | None = None) -> Reply:
        """The reply that made opening the session fail."""
        if isinstance(event, Greeting | Response | Closed):
            reply = event.reply
            if reply.code < 400:
                reply = default or Reply(451, "4.4.0", f"unexpected reply {reply.code}")
            return reply
        return default or CONNECT_FAILED.with_text("the host closed the connection")

    # -- delivering ------------------------------------------------------------------------------
    async def deliver(self, part: Part, raw: bytes) -> None:
        """One transaction for the part's open recipients (the first RCPTMAX of them, RFC 9422
        §4.2); their answers go into ``part``."""
        job = part.open_job()
        if not job.recipients:
            return
        rcpt_max = self._conn.capabilities.limits.rcpt_max
        if rcpt_max is not None:
            job = next(split_jobs(job, rcpt_max))
        env = envelope(job, self._conn.capabilities)
        if isinstance(env, Reply):
            part.settle(env, self.host)
            return
        by_rcpt = {id(rcpt): r.id for rcpt, r in zip(env.rcpts, job.recipients, strict=True)}
        try:
            self._conn.send_mail(env.mail, env.rcpts)
        except LocalProtocolError as exc:
            self._closed = True
            part.fail_session(CONNECT_FAILED.with_text(str(exc)), self.host)
            return
        accepted = False
        over_limit: list[tuple[int, Reply]] = []
        while True:
            event = await self._event()
            if isinstance(event, RecipientResult) and event.final:
                if is_over_recipient_limit(event.reply):
                    over_limit.append((by_rcpt[id(event.rcpt)], event.reply))
                else:
                    part.record(by_rcpt[id(event.rcpt)], event.reply, self.host, dsn=env.dsn)
            elif isinstance(event, RecipientResult):
                accepted = True
            elif isinstance(event, ReadyForData):
                await self._send_body(raw)
            elif isinstance(event, MessageDone):
                self._log_transaction(job.message_id, env, event.reply)
                # A session that ended with the transaction reports Closed right after it.
                if isinstance(self._conn.next_event(), Closed):
                    self._closed = True
                break
            elif isinstance(event, Closed) or event is CLOSED or event is IDLE:
                break
        if accepted and over_limit:
            # RFC 5321 §4.5.3.1.10: the rest go in the next transaction (the runner's).
            self._log.info("recipient limit", queue=job.message_id, left=len(over_limit))
            part.fail_session(over_limit[0][1], self.host)
        else:
            for recipient_id, reply in over_limit:
                part.record(recipient_id, reply, self.host, dsn=env.dsn)

    async def _send_body(self, raw: bytes) -> None:
        step = self._settings.chunk_size
        for start in range(0, len(raw), step):
            if not self._conn.accepting_body:
                return  # the server failed the transaction mid-way (a refused BDAT chunk)
            self._conn.send_body(raw[start : start + step])
            await self._flush(self._settings.client.data_block_timeout)
        if self._conn.accepting_body:
            self._conn.end_body()
            await self._flush(self._settings.client.data_block_timeout)

    def _log_transaction(self, message_id: int, env: Envelope, reply: Reply) -> None:
        self._log.info(
            "transaction",
            queue=message_id,
            recipients=len(env.rcpts),
            reply=reply.code,
            tls=self._conn.tls,
        )

    async def close(self) -> None:
        """QUIT (when still possible) and close the connection."""
        if not self._closed:
            with contextlib.suppress(LocalProtocolError):
                self._conn.quit()
                await self._await_quit()
        await self._channel.close()

    # -- the pump --------------------------------------------------------------------------------
    async def _flush(self, timeout: float | None = None) -> None:
        data = self._conn.data_to_send(self._loop.time())
        if not data:
            return
        try:
            self._channel.write(data)
            async with asyncio.timeout(timeout or self._settings.client.command_timeout):
                await self._channel.drain()
        except ChannelClosed:
            self._conn.connection_lost()
        except TimeoutError:
            self._conn.send_timed_out()

    async def _event(self) -> ClientEvent | Sentinel:
        """The next event of the core, reading from the network as it needs."""
        while True:
            event = self._conn.next_event()
            if event is CLOSED:
                self._closed = True
                return event
            if isinstance(event, Closed):
                self._closed = True
                return event
            if event is not NEED_DATA:
                if event is IDLE:
                    await self._flush()
                return event
            await self._flush()
            deadline = self._conn.deadline()
            timeout = None if deadline is None else max(0.0, deadline - self._loop.time())
            try:
                data = await self._channel.receive(timeout)
            except TimeoutError:
                self._conn.handle_timeout(self._loop.time())
                continue
            if not data:
                self._conn.connection_lost()
                continue
            self._conn.receive_data(data, self._loop.time())
