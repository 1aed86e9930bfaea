"""Asyncio adapter driving the sans-I/O SMTP server core for the MX, submission and LMTP
listeners.

Implementation notes:

- The core decides the protocol (pipelining order, limits, smuggling, STARTTLS state reset);
  this adapter only moves bytes, runs the TLS handshake, and answers the core's decisions
  through :class:`pillarbox.queue.intake.Intake` (relay rules, routing, durable storage).
- **MX** (port 25): no AUTH; recipients must resolve at hosted domains (RFC 5321 §3.6.2).
  With ``[greylisting]`` on, a recipient that resolved is then greylisted (RFC 6647,
  :mod:`pillarbox.policy.greylisting`) unless the client is trusted: 451 4.7.1 for it alone.
  With ``smtp.greet_pause``, an untrusted client not remembered as patient waits that long for
  the greeting; if it talks first it is greeted 554 (:mod:`pillarbox.net.pregreet`).
  **Submission** (587 STARTTLS, 465 implicit TLS, RFC 6409/8314): AUTH is offered only under
  TLS (unless ``smtp.auth_without_tls``) and required before MAIL (530 5.7.0).
  **LMTP** (RFC 2033, for a front MTA, loopback by default): the core in LMTP mode (LHLO only,
  §4.1); recipients only at hosted domains, as at the MX (no relay); after the data one reply
  per accepted recipient (§4.2) from :meth:`~pillarbox.queue.intake.Intake.accept_each`, each
  sent once its copy is fsync'd. STARTTLS on TCP (RFC 3207; never on the UNIX socket) and
  AUTH after it as one of ``[lmtp] auth_accounts`` (RFC 4954): a TCP client outside ``[lmtp]
  trusted_networks`` gets the core's ``require_tls``/``require_auth`` (:class:`LmtpAccess`).
  The authenticated front MTA is not a submitter: it gains no relaying and no sender check.
  Limits are the ``[smtp]`` knobs; policy and quota replies are ``[lmtp]``.
- The message body arrives as chunks (already dot-unstuffed, size-limited by the core as they
  arrive) and is spooled in memory up to ``smtp.max_message_size``; the store is written only
  after the final octet, and 250 is sent only after the store has fsync'd (intake).
- Password checks happen off the event loop inside the Authenticator; a rate-limited client
  gets 454 4.7.0, a wrong password 535 5.7.8 (RFC 4954 §6).
- An idle session is ended with 421 when the server shuts down (RFC 5321 §3.8); a session in
  the middle of a transaction is allowed to finish within the shutdown grace period.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from pillarbox.auth.directory import Authenticated, SaslSession, normalize_username
from pillarbox.auth.sasl import Challenge, UnsupportedMechanism
from pillarbox.errors import AuthenticationFailed, InvalidName, RateLimited, StorageError
from pillarbox.mail import trace
from pillarbox.mail.address import parse_address
from pillarbox.net.channel import Channel
from pillarbox.net.listener import Admission, Handler
from pillarbox.net.milter import Filtered, Filters
from pillarbox.net.pregreet import GreetPause, Network
from pillarbox.observability.log import Log
from pillarbox.observability.metrics import AuthMetrics, SmtpMetrics
from pillarbox.policy import dnsbl, spf
from pillarbox.policy.greylisting import ClientListings, Greylist
from pillarbox.policy.pipeline import in_networks
from pillarbox.queue.intake import AcceptedRecipient, Intake, Judging, Origin, PerRecipient
from pillarbox.queue.sendlimits import Allowance
from pillarbox.services import Services
from pillarbox.smtp import replies
from pillarbox.smtp.grammar import (
    Auth,
    Hello,
    MailFrom,
    Path,
    Quit,
    RcptTo,
    Rset,
    StartTls,
    Xforward,
)
from pillarbox.smtp.replies import Reply
from pillarbox.smtp.sentinels import CLOSED, NEED_DATA, PAUSED
from pillarbox.smtp.server import (
    AuthAborted,
    AuthResponse,
    BareLinebreakPolicy,
    DataAborted,
    DataChunk,
    DataEnd,
    DataStart,
    Mode,
    ProtocolError,
    ServerConnection,
    Shutdown,
    SmtpServerSettings,
    State,
)
from pillarbox.store.types import Account

#: States in which no transaction is open: a shutdown may end the session here.
_IDLE_STATES = frozenset({State.GREETED, State.READY})


def _settings(
    services: Services, *, submission: bool, implicit_tls: bool, lmtp: bool = False
) -> SmtpServerSettings:
    smtp = services.config.smtp
    mechanisms: tuple[str, ...] = ()
    if submission or (lmtp and services.config.lmtp.auth_accounts):
        mechanisms = services.authenticator.mechanisms(secure=True)
    return SmtpServerSettings(
        hostname=services.hostname,
        mode=Mode.LMTP if lmtp else Mode.SMTP,
        max_message_size=smtp.max_message_size,
        max_recipients=smtp.max_recipients,
        max_command_line=smtp.max_line_length,
        max_text_line=smtp.max_line_length,
        max_errors=smtp.max_errors,
        bare_linebreaks=(
            BareLinebreakPolicy.REJECT
            if smtp.bare_newline == "reject"
            else BareLinebreakPolicy.NORMALISE
        ),
        command_timeout=smtp.command_timeout,
        data_timeout=smtp.data_timeout,
        login_timeout=smtp.login_timeout if submission else None,
        starttls=(services.config.lmtp.starttls if lmtp else smtp.starttls) and not implicit_tls,
        xforward=lmtp and services.config.lmtp.policy == "full",
        auth_mechanisms=mechanisms,
        auth_without_tls=submission and smtp.auth_without_tls,
        require_auth=submission,  # RFC 6409 §4.3 (and LmtpAccess for outsiders)
        requiretls=smtp.requiretls,
    )


def mx_handler(services: Services, listener: str) -> Handler:
    settings = _settings(services, submission=False, implicit_tls=False)
    config = services.config
    # smtp.enforce_sync for strangers only: a trusted host injects as it likes.
    strict = dataclasses.replace(settings, enforce_sync=config.smtp.enforce_sync)
    trusted = [ipaddress.ip_network(n, strict=False) for n in config.policy.trusted_networks]

    def settings_for(client_ip: str) -> SmtpServerSettings:
        return settings if in_networks(client_ip, trusted) else strict

    return _handler(
        services,
        settings,
        listener,
        submission=False,
        implicit_tls=False,
        greylist=_greylist(services) if config.greylisting.enabled else None,
        greet_pause=_greet_pause(services, trusted) if config.smtp.greet_pause > 0 else None,
        settings_for=settings_for,
        milters=config.milter.mx,
    )


def _greylist(services: Services) -> Greylist:
    config = services.config
    spf_check = None
    if config.greylisting.allow_spf_pass:
        spf_check = functools.partial(
            spf.check_mail_from,
            services.policy.resolver,
            receiver=services.hostname,
            limits=spf.SpfLimits(timeout=config.policy.timeout),
        )
    client_listings = None
    if config.greylisting.only_listed_clients:
        client_listings = _client_listings(services)
    return Greylist(
        config.greylisting,
        config.policy.trusted_networks,
        services.store,
        services.metrics,
        spf_check=spf_check,
        client_listings=client_listings,
    )


def _greet_pause(services: Services, trusted: Sequence[Network]) -> GreetPause:
    smtp = services.config.smtp
    return GreetPause(
        smtp.greet_pause, smtp.greet_pass_ttl, smtp.greet_pass_clients, trusted, services.metrics
    )


def _client_listings(services: Services) -> ClientListings:
    """Selective greylisting's question: the client's address in the inbound policy's IP
    lists, on its resolver (whose cache the lookups at DATA then find)."""
    policy = services.policy
    zones, timeout = policy.settings.ip_zones, services.config.policy.timeout

    async def listings(client_ip: str) -> list[dnsbl.Listing]:
        return await dnsbl.check(
            policy.resolver,
            client_ip=client_ip,
            ip_zones=zones,
            domains=(),
            domain_zones=(),
            timeout=timeout,
        )

    return listings


def submission_handler(services: Services, listener: str) -> Handler:
    implicit_tls = listener == "submissions"
    settings = _settings(services, submission=True, implicit_tls=implicit_tls)
    return _handler(
        services,
        settings,
        listener,
        submission=True,
        implicit_tls=implicit_tls,
        milters=services.config.milter.submission,
    )


#: ``[lmtp] quota_full`` → the reply to a recipient over quota (RFC 3463 X.2.2: both a
#: permanent and a persistent transient failure; Dovecot's quota_full_tempfail chooses too).
LMTP_MAILBOX_FULL = {
    "tempfail": replies.MAILBOX_FULL,
    "reject": replies.MAILBOX_FULL_PERMANENT,
}


@dataclass(frozen=True, slots=True)
class LmtpAccess:
    """Who may deliver over LMTP how (``[lmtp]``). The UNIX socket is guarded by its file
    permissions, and a TCP client in ``trusted_networks`` by where it is: both deliver as
    before. Anyone else on TCP gets ``require_tls``/``require_auth``, so that mail crosses the
    network encrypted and only a front MTA that knows a password of ``auth_accounts`` can
    inject it (Dovecot's ``login_trusted_networks`` draws the same line)."""

    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    #: A TCP client in ``trusted``.
    insider: SmtpServerSettings
    #: The UNIX socket: no STARTTLS (there is no network to cross), hence no AUTH either.
    socket: SmtpServerSettings
    outsider: SmtpServerSettings
    #: ``auth_accounts``, normalised as logins are.
    accounts: frozenset[str]

    @classmethod
    def of(cls, services: Services, settings: SmtpServerSettings) -> LmtpAccess:
        section = services.config.lmtp
        replace = dataclasses.replace
        return cls(
            trusted=tuple(ipaddress.ip_network(n, strict=False) for n in section.trusted_networks),
            insider=settings,
            socket=replace(settings, starttls=False),
            # An outsider that must log in gets submission's login deadline (smtp.login_timeout,
            # from the greeting, busy or not): NOOPs could otherwise hold a session
            # unauthenticated for ever, command_timeout at a time.
            outsider=replace(
                settings,
                require_tls=section.require_tls,
                require_auth=section.require_auth,
                login_timeout=services.config.smtp.login_timeout if section.require_auth else None,
            ),
            accounts=frozenset(
                name for a in section.auth_accounts if (name := normalize_username(a))
            ),
        )

    def settings_for(self, client_ip: str) -> SmtpServerSettings:
        """The core's settings for a client (``""``: the UNIX socket's)."""
        if not client_ip:
            return self.socket
        return self.insider if in_networks(client_ip, self.trusted) else self.outsider


def lmtp_handler(services: Services, listener: str) -> Handler:
    settings = _settings(services, submission=False, implicit_tls=False, lmtp=True)
    section = services.config.lmtp
    each = PerRecipient(
        mailbox_full=LMTP_MAILBOX_FULL[section.quota_full], refuse_spam=section.refuse_spam
    )
    access = LmtpAccess.of(services, settings)
    return _handler(
        services,
        settings,
        listener,
        submission=False,
        implicit_tls=False,
        lmtp=each,
        access=access,
        settings_for=access.settings_for,
    )


def _handler(
    services: Services,
    settings: SmtpServerSettings,
    listener: str,
    *,
    submission: bool,
    implicit_tls: bool,
    lmtp: PerRecipient | None = None,
    greylist: Greylist | None = None,
    access: LmtpAccess | None = None,
    greet_pause: GreetPause | None = None,
    settings_for: Callable[[str], SmtpServerSettings] | None = None,
    milters: Sequence[str] = (),
) -> Handler:
    """``settings_for`` chooses the core's settings by client address (default: ``settings``
    for every client); ``milters``: the mail filters each session consults, in order."""
    intake = Intake(services) if lmtp is None else Intake(services, mailbox_full=lmtp.mailbox_full)
    protocol = "smtp" if lmtp is None else "lmtp"
    metrics = _Observed(services.metrics.smtp(listener), services.metrics.auth(protocol))
    # Bound per session: a Log made anew looks its logger up (logging's lock) every connection.
    log = Log(protocol)

    def handle(channel: Channel, admission: Admission) -> Awaitable[None]:
        # The session's coroutine itself, not one awaiting it: each coroutine in the chain of
        # awaits is passed through again every time the session resumes (every reply).
        if not admission.admitted:
            return channel.send(replies.SERVICE_UNAVAILABLE.with_text(admission.refusal).render())
        peer = channel.peer[0]
        bound = log.bind(conn=admission.connection_id, remote=peer)
        session = _SmtpSession(
            services,
            intake,
            settings if settings_for is None else settings_for(peer),
            channel,
            bound,
            submission,
            implicit_tls,
            metrics,
            lmtp,
            greylist,
            access,
            greet_pause,
            (
                Filters(
                    milters,
                    services.config.milter,
                    listener,
                    bound,
                    max_message=services.config.smtp.max_message_size,
                )
                if milters
                else None
            ),
        )
        return session.run()

    return handle


class _Observed(NamedTuple):
    """A listener's metrics children, resolved once for all its sessions."""

    messages: SmtpMetrics
    auth: AuthMetrics


class _SmtpSession:
    def __init__(
        self,
        services: Services,
        intake: Intake,
        settings: SmtpServerSettings,
        channel: Channel,
        log: Log,
        submission: bool,
        implicit_tls: bool,
        metrics: _Observed,
        lmtp: PerRecipient | None = None,
        greylist: Greylist | None = None,
        access: LmtpAccess | None = None,
        greet_pause: GreetPause | None = None,
        filters: Filters | None = None,
    ) -> None:
        self.services = services
        #: The listener's mail filters (``[milter]``), this session's connections to them.
        self.filters = filters
        #: The MX's pause before the greeting (None elsewhere, or when off).
        self.greet_pause = greet_pause
        self.metrics = metrics
        #: How an LMTP session answers each recipient; None for SMTP.
        self.lmtp = lmtp
        #: LMTP: the accounts AUTH may be (None for SMTP, where any account may).
        self.lmtp_accounts = None if access is None else access.accounts
        self.remote_ip = channel.peer[0]
        #: The MX's greylisting (None elsewhere, or when off); decided once for the client.
        self.greylist = None if greylist is None or greylist.exempt(self.remote_ip) else greylist
        self.intake = intake
        self.channel = channel
        self.submission = submission
        self.loop = asyncio.get_running_loop()
        #: The listener's, bound to this connection's id and client.
        self.log = log
        self.core = ServerConnection(settings, tls=implicit_tls)
        self.account: Account | None = None
        self.sasl: SaslSession | None = None
        self.mail: MailFrom | None = None
        self.accepted: list[AcceptedRecipient] = []
        #: The submitter's sending limits for the open transaction (pillarbox.queue.sendlimits).
        self.allowance: Allowance | None = None
        self.spool = bytearray()
        #: XFORWARD attributes for the next transaction (LMTP with ``policy = "full"``).
        self.xforward: dict[str, str] = {}
        #: Done once the server begins shutting down, and then interrupts the channel's wait
        #: for a command: made at the first such wait and kept for the session (one per wait,
        #: raced against a task reading, was two tasks more for every command).
        self.stopping: asyncio.Task[Literal[True]] | None = None

    def _reset_transaction(self) -> None:
        self.mail = None
        self.accepted = []
        self.allowance = None
        self.spool = bytearray()

    async def _flush(self) -> None:
        data = self.core.data_to_send(self.loop.time())
        if data:
            await self.channel.send(data)

    async def run(self) -> None:
        # The loop and its end in one coroutine (see handle).
        try:
            self.log.info("connected", submission=self.submission, tls=self.channel.tls_active)
            ready = replies.service_ready if self.lmtp is None else replies.lmtp_ready
            greeting = ready(self.services.hostname)
            early = b""
            pause = self.greet_pause
            if pause is not None and pause.applies(self.remote_ip, self.loop.time()):
                waited = await self._pause_before_greeting(pause)
                if waited is None:
                    return
                early = waited
                if early:
                    greeting = replies.TALKED_FIRST
            if self.filters is not None and greeting.code == 220:
                peer = self.channel.peer
                refusal = await self.filters.connect(peer[0], peer[1], self.services.hostname)
                if refusal is not None:
                    self.log.info("refused by a mail filter", code=refusal.code)
                    greeting = (
                        replies.FILTER_REFUSED_SERVICE
                        if refusal.code >= 500
                        else replies.FILTER_DEFERRED_SERVICE
                    )
            self.core.greet(greeting)
            core = self.core
            if early:
                core.receive_data(early, self.loop.time())
            while True:
                event = core.next_event()
                if event is NEED_DATA:
                    await self._flush()
                    if self.services.shutdown.is_set() and core.state in _IDLE_STATES:
                        await self.channel.send(replies.SHUTTING_DOWN.render())
                        return
                    deadline = core.deadline()
                    timeout = None
                    if deadline is not None:
                        # Not max(): the builtin parses its keywords, every wait of every session.
                        left = deadline - self.loop.time()
                        timeout = left if left > 0.0 else 0.0
                    try:
                        data = await self._receive(timeout)
                    except TimeoutError:
                        core.handle_timeout(self.loop.time())
                        continue
                    if data is None:
                        await self.channel.send(replies.SHUTTING_DOWN.render())
                        self.log.info("ended idle session for shutdown")
                        return
                    if not data:
                        self.log.info("client closed the connection", state=core.state.value)
                        return
                    core.receive_data(data, self.loop.time())
                    continue
                if event is CLOSED:
                    await self._flush()
                    self.log.info("closed")
                    return
                if event is PAUSED:
                    if core.state is State.TLS:
                        await self._start_tls()
                        continue
                    raise AssertionError("core paused without a pending decision")
                await self._handle(event)
        finally:
            if self.stopping is not None:
                self.stopping.cancel()
            if self.filters is not None:
                await self.filters.close()

    async def _pause_before_greeting(self, pause: GreetPause) -> bytes | None:
        """Wait ``pause.seconds`` before the greeting (:mod:`pillarbox.net.pregreet`): b"" if
        the client waited, what it sent if it talked first, None if it left."""
        try:
            early = await self.channel.receive(pause.seconds)
        except TimeoutError:
            pause.waited(self.remote_ip, self.loop.time())
            pause.count("waited")
            return b""
        if not early:
            self.log.info("client left before the greeting")
            pause.count("left")
            return None
        # RFC 5321 §3.1, §4.3.1: a client waits for the greeting before it sends anything.
        self.log.info("client talked before the greeting", octets=len(early))
        pause.count("talked")
        return early

    def _receive(self, timeout: float | None) -> Awaitable[bytes | None]:
        """Read from the client; None when the server begins shutting down while idle. The
        channel's wait itself, not a coroutine awaiting it (a frame fewer every command)."""
        if self.core.state not in _IDLE_STATES:
            return self.channel.receive(timeout)
        if self.stopping is None:
            self.stopping = asyncio.ensure_future(self.services.shutdown.wait())
            self.stopping.add_done_callback(self._interrupt)
        return self.channel.receive_unless_interrupted(timeout)

    def _interrupt(self, stopping: asyncio.Task[Literal[True]]) -> None:
        if not stopping.cancelled():  # cancelled: the session has ended
            self.channel.interrupt()

    async def _start_tls(self) -> None:
        await self._flush()
        discarded = await self.channel.start_tls(
            self.services.tls, self.services.config.tls.handshake_timeout
        )
        if discarded:
            self.log.warning("discarded plaintext pipelined after STARTTLS", octets=discarded)
        self.core.tls_established()
        self.account = None  # a login before TLS is forgotten with it (RFC 3207 §4.2)
        self._reset_transaction()
        self.log.info("TLS established", tls=self._tls_text())

    def _tls_text(self) -> str:
        obj = self.channel.ssl_object
        if obj is None:
            return "none"
        cipher = obj.cipher()
        return f"{obj.version()} {cipher[0] if cipher else ''}".strip()

    async def _handle(self, event: object) -> None:
        core = self.core
        # Each arm is a class test paid by every event that reaches it: a message's events
        # first, then a connection's, then the rare ones (the events' classes are disjoint).
        match event:
            case DataChunk(data=data):
                self.spool += data
            case MailFrom():
                await self._mail(event)
            case RcptTo():
                await self._rcpt(event)
            case DataStart():
                self.spool = bytearray()
            case DataEnd():
                await self._data_end()
            case Hello():
                self._reset_transaction()  # RFC 5321 §4.1.4: a hello implies RSET
                self.xforward = {}
                if self.filters is not None:
                    tls = self._tls_summary()
                    refusal = await self.filters.helo(
                        event.domain, None if tls is None else (tls.version, tls.cipher)
                    )
                    if refusal is not None:
                        core.reject(refusal)
                        return
                core.accept()
            case Quit():
                pass  # already answered by the core
            case Xforward(attributes=attributes):
                self.xforward.update(attributes)  # already answered 250 by the core
            case StartTls():
                core.accept()
            case Auth(mechanism=mechanism, initial_response=initial):
                await self._auth_start(mechanism, initial)
            case AuthResponse(data=data):
                await self._auth_step(data)
            case AuthAborted():
                self.sasl = None
            case DataAborted(reply=reply):
                self.log.info("message refused", code=reply.code, reason=reply.text)
                self.metrics.messages.message(reply.code)
                self._reset_transaction()
                self.xforward = {}
            case ProtocolError(reply=reply):
                self.log.info("protocol error", code=reply.code, reason=reply.text)
            case Shutdown(reply=reply):
                self.log.info("closing", code=reply.code, reason=reply.text)
            case Rset():
                self._reset_transaction()
                self.xforward = {}
            case _:
                pass  # Noop, Help, Vrfy: already answered by the core

    # -- AUTH ----------------------------------------------------------------------------------
    @property
    def _secure(self) -> bool:
        return self.core.tls or self.core.settings.auth_without_tls

    async def _auth_start(self, mechanism: str, initial: bytes | None) -> None:
        try:
            self.sasl = self.services.authenticator.start_sasl(
                mechanism, remote_ip=self.remote_ip, secure=self._secure
            )
        except UnsupportedMechanism:
            self.core.reject(replies.MECHANISM_UNKNOWN)
            return
        await self._auth_outcome(lambda s: s.start(initial))

    async def _auth_step(self, data: bytes) -> None:
        if self.sasl is None:
            self.core.reject(replies.AUTH_FAILED)
            return
        await self._auth_outcome(lambda s: s.receive(data))

    async def _auth_outcome(
        self, step_of: Callable[[SaslSession], Awaitable[Challenge | Authenticated]]
    ) -> None:
        assert self.sasl is not None
        try:
            step = await step_of(self.sasl)
        except RateLimited:
            self.log.warning("AUTH rate limited")
            self.metrics.auth.rate_limited.inc()
            self.sasl = None
            self.core.reject(replies.AUTH_TEMPORARY)
            return
        except AuthenticationFailed as exc:
            self.log.info("AUTH failed", reason=str(exc))
            self.metrics.auth.credentials.inc()
            self.sasl = None
            self.core.reject(replies.AUTH_FAILED)
            return
        if isinstance(step, Challenge):
            self.core.challenge(step.data)
            return
        self.sasl = None
        address = step.account.address
        if self.lmtp_accounts is None:
            self.account = step.account
        elif address not in self.lmtp_accounts:
            # As a wrong password, so that the reply does not confirm this one.
            self.log.warning("AUTH as an account not in lmtp.auth_accounts", account=address)
            self.metrics.auth.credentials.inc()
            self.core.reject(replies.AUTH_FAILED)
            return
        # A front MTA's login only admits it (LmtpAccess): self.account stays None, so it
        # does not submit (no relaying, no sender check; the Received field says LMTPSA).
        self.log.info("authenticated", account=address, mechanism=step.mechanism)
        self.core.accept()

    # -- envelope ------------------------------------------------------------------------------
    async def _mail(self, mail: MailFrom) -> None:
        reply = await self.intake.check_sender(mail, self.account)
        if reply.is_positive and self.filters is not None:
            login = None if self.account is None else self.account.address
            reply = await self.filters.mail(mail, login) or reply
        if reply.is_positive:
            self._reset_transaction()
            self.mail = mail
            if self.account is not None:
                self.allowance = self.intake.allowance(self.account, self.log)
        else:
            self.log.info("sender refused", sender=str(mail.path), code=reply.code)
        self.core.answer(reply)

    async def _rcpt(self, rcpt: RcptTo) -> None:
        assert self.mail is not None
        reply, resolution = await self.intake.check_recipient(
            rcpt, self.account, self.mail.params.size, self.allowance
        )
        # The MX offers no AUTH; the account test keeps a logged-in sender out should it ever.
        if resolution is not None and self.greylist is not None and self.account is None:
            assert rcpt.path.mailbox is not None  # it resolved
            deferred = await self.greylist.check(
                self.remote_ip,
                self.mail.path.mailbox,
                self.core.hello.domain if self.core.hello else "",
                rcpt.path.mailbox,
                resolution.local,
                self.log,
            )
            if deferred is not None:
                reply, resolution = deferred, None
        if resolution is not None and self.filters is not None:
            refusal = await self.filters.rcpt(rcpt)
            if refusal is not None:
                reply, resolution = refusal, None
        if resolution is not None:
            self.accepted.append(AcceptedRecipient(rcpt, resolution))
        else:
            self.log.info("recipient refused", rcpt=str(rcpt.path), code=reply.code)
        self.core.answer(reply)

    async def _data_end(self) -> None:
        assert self.mail is not None
        forwarded = self._forwarded_client()
        origin = Origin(
            helo=self.core.hello.domain if self.core.hello else "",
            client_ip=self.remote_ip,
            protocol=trace.with_protocol(
                esmtp=bool(self.core.hello and self.core.hello.extended),
                tls=self.core.tls,
                authenticated=self.core.authenticated,
                utf8=self.mail.params.smtputf8,
                lmtp=self.lmtp is not None,  # RFC 3848 §2: "LMTP"
            ),
            tls=self._tls_summary(),
            account=self.account,
            judging=Judging.FULL if self.lmtp is None else self._lmtp_judging(forwarded),
            forwarded=forwarded,
        )
        self.xforward = {}  # XFORWARD_README: the attributes last one transaction
        started = self.loop.time()
        if self.lmtp is not None:
            answers = await self._data_end_each(origin, self.lmtp)
            # One message, counted by its best outcome: accepted if any recipient took it.
            reply = next((a for a in answers if a.is_positive), answers[0])
        else:
            raw = bytes(self.spool)
            try:
                if self.filters is None:
                    reply = await self.intake.accept(self.mail, self.accepted, raw, origin)
                else:
                    reply = await self._accept_filtered(await self.filters.message(raw), origin)
            except StorageError as exc:
                self.log.error("storing the message failed", error=str(exc))
                reply = replies.LOCAL_ERROR
            self._reset_transaction()
            self.core.answer(reply)
        messages = self.metrics.messages
        messages.data_seconds.observe(self.loop.time() - started)
        messages.message(reply.code)

    async def _accept_filtered(self, filtered: Filtered, origin: Origin) -> Reply:
        """The reply to a message the mail filters saw: their refusal, a 250 for a message
        they discarded (or left without recipients), or the intake's of what they left."""
        assert self.mail is not None
        if filtered.reply is not None:
            return filtered.reply
        mail, accepted = await self._filtered_envelope(filtered)
        if filtered.discard or not accepted:
            self.log.warning("message discarded by a mail filter", sender=str(self.mail.path))
            return replies.MESSAGE_ACCEPTED
        origin = dataclasses.replace(origin, quarantine=filtered.quarantine)
        return await self.intake.accept(mail, accepted, filtered.message, origin)

    async def _filtered_envelope(
        self, filtered: Filtered
    ) -> tuple[MailFrom, list[AcceptedRecipient]]:
        """The envelope after the filters' changes (milter ``e``, ``+``, ``-``); an address a
        filter wrote that does not parse, or names no one here, is logged and left out."""
        assert self.mail is not None
        mail = self.mail
        if filtered.sender is not None:
            try:
                mailbox = parse_address(filtered.sender) if filtered.sender else None
                mail = dataclasses.replace(mail, path=Path(mailbox))
            except InvalidName:
                self.log.warning("mail filter's sender refused", sender=filtered.sender)
        removed = {r.lower() for r in filtered.removed}
        accepted = [a for a in self.accepted if str(a.rcpt.path.mailbox).lower() not in removed]
        for text in filtered.added:
            try:
                added = await self.intake.route_added(parse_address(text))
            except InvalidName:
                added = None
            if added is None:
                self.log.warning("mail filter's recipient refused", rcpt=text)
            else:
                accepted.append(added)
        return mail, accepted

    def _lmtp_judging(self, forwarded: tuple[str, str] | None) -> Judging:
        """``[lmtp] policy``; "full" needs the sender's MTA from XFORWARD (``forwarded``),
        else "content"."""
        judging = Judging(self.services.config.lmtp.policy)
        if judging is Judging.FULL and forwarded is None:
            return Judging.CONTENT
        return judging

    def _forwarded_client(self) -> tuple[str, str] | None:
        """The sender's MTA as XFORWARD named it: (address, HELO), or None without a usable
        ADDR. Postfix writes IPv6 addresses as ``IPv6:...``; unknown values are
        ``[UNAVAILABLE]`` or ``[TEMPUNAVAIL]``."""
        address = self.xforward.get("ADDR")
        if address is None:
            return None  # every MX message: XFORWARD is only offered to an LMTP front MTA
        if address[:5].upper() == "IPV6:":
            address = address[5:]
        try:
            ipaddress.ip_address(address)
        except ValueError:
            return None
        helo = self.xforward.get("HELO", "")
        return address, "" if helo in ("[UNAVAILABLE]", "[TEMPUNAVAIL]") else helo

    async def _data_end_each(self, origin: Origin, each: PerRecipient) -> list[Reply]:
        """LMTP: one reply per accepted recipient, each its own outcome (RFC 2033 §4.2);
        the replies sent."""
        assert self.mail is not None
        try:
            answers = await self.intake.accept_each(
                self.mail, self.accepted, bytes(self.spool), origin, each
            )
        except StorageError as exc:
            self.log.error("storing the message failed", error=str(exc))
            answers = [replies.LOCAL_ERROR] * len(self.accepted)
        for accepted, answer in zip(self.accepted, answers, strict=True):
            if not answer.is_positive:
                self.log.info(
                    "recipient not delivered",
                    rcpt=str(accepted.rcpt.path),
                    code=answer.code,
                    reason=answer.text,
                )
        self._reset_transaction()
        self.core.respond_per_recipient(answers)
        return answers

    def _tls_summary(self) -> trace.TlsSummary | None:
        obj = self.channel.ssl_object
        if obj is None:
            return None
        cipher = obj.cipher()
        return trace.TlsSummary(
            version=obj.version() or "TLS",
            cipher=cipher[0] if cipher else "unknown",
            bits=cipher[2] if cipher else None,
        )
