"""Asyncio adapter driving the IMAP session core (:mod:`pillarbox.imap.session`).

Implementation notes:

- This module owns what the core must not: the socket (a :class:`Channel`), TLS (implicit on
  993, STARTTLS on 143 — the session discards what was pipelined after STARTTLS, the channel
  discards what it buffered, RFC 9051 §6.2.1), the clock and timers, the change feed, and
  the executor that parses appended messages off the event loop.
- **One task per connection**, waiting at once for the client's bytes, the server's shutdown,
  the autologout deadline (any received byte resets it, RFC 9051 §5.4) and — while the client
  idles — the change feed. The receive stays pending across wake-ups, so no byte is lost when
  the feed wins the race.
- **Change feed.** Subscribed once the session is authenticated; every hint is passed to the
  session (which re-reads the truth by MODSEQ at its next safe point) and, while the session
  wants pushes (IDLE, or between commands once NOTIFY asked for events, RFC 5465), wakes the
  connection to push the updates at once.
- **Output** is gathered and written with back-pressure: a write of more than
  :data:`FLUSH_AT` octets waits for the transport to drain, so a slow reader of a large FETCH
  holds one chunk in memory, not the whole response.
- **COMPRESS=DEFLATE** (RFC 4978) is a layer between the session and the channel, so under
  TLS (§3: compress first, then encrypt): from the octet after the tagged OK, every flush is
  deflated (with a sync flush) and every received chunk inflated in bounded pieces before the
  session sees it; octets pipelined after COMPRESS are taken back from the session's lexer and
  inflated too. A corrupt stream closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from pillarbox.blocking import run_blocking
from pillarbox.config import ImapSection, PolicySection
from pillarbox.imap import replies
from pillarbox.imap.compress import CompressionError, Deflate
from pillarbox.imap.lexer import LexerLimits
from pillarbox.imap.session import Action, ImapSession, SessionSettings, State
from pillarbox.mail.model import MessageInfo
from pillarbox.mail.parse import parse_message
from pillarbox.net.authcount import CountedAuthenticator
from pillarbox.net.channel import Channel
from pillarbox.net.listener import Admission, Handler
from pillarbox.observability.log import Log
from pillarbox.queue.quotawarning import QuotaWarnings
from pillarbox.services import Services
from pillarbox.store.interface import ChangeSubscription
from pillarbox.store.types import MetadataLimits

#: Gathered output is written once it reaches this size (and before every wait for input).
FLUSH_AT = 64 * 1024


def session_settings(
    config: ImapSection, hostname: str = "localhost", policy: PolicySection | None = None
) -> SessionSettings:
    """The session's limits from ``config.imap`` (and how much a session's moves and
    markings teach the spam filter, from ``config.policy``)."""
    default = LexerLimits()
    lexer = LexerLimits(
        max_line=config.max_line_length,
        # A METADATA value up to its limit must get through the framer, to be refused (if
        # at all) with RFC 5464's [METADATA MAXSIZE] rather than [TOOBIG].
        max_literal=max(default.max_literal, config.metadata_max_value_size),
        max_append_literal=config.max_literal_size,
        max_command=max(default.max_command, config.max_literal_size + config.max_line_length),
    )
    return SessionSettings(
        lexer=lexer,
        max_errors=config.max_errors,
        idle_timeout=config.idle_timeout,
        login_timeout=config.login_timeout,
        login_without_tls=config.login_without_tls,
        hostname=hostname,
        learn_max_messages=(policy or PolicySection()).learn_max_messages,
        notify_max_mailboxes=config.notify_max_mailboxes,
        metadata_max_value_size=config.metadata_max_value_size,
        metadata_limits=MetadataLimits(
            max_entries=config.metadata_max_entries, max_total=config.metadata_max_total
        ),
        metadata_admin=config.metadata_admin,
    )


def imap_handler(services: Services, listener: str) -> Handler:
    implicit_tls = listener == "imaps"
    settings = session_settings(services.config.imap, services.hostname, services.config.policy)
    authenticator = CountedAuthenticator(services.authenticator, services.metrics.auth("imap"))
    quota_warnings = QuotaWarnings.of(services)

    async def handle(channel: Channel, admission: Admission) -> None:
        if not admission.admitted:
            await channel.send(replies.BYE_BUSY.untagged())
            return
        connection = _Connection(
            services, settings, authenticator, quota_warnings, channel, admission, implicit_tls
        )
        await connection.run()

    return handle


async def _parse(raw: bytes) -> MessageInfo:
    return await run_blocking(parse_message, raw)


class _Output:
    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._buffer = bytearray()
        self.deflate: Deflate | None = None

    async def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= FLUSH_AT:
            await self.flush()

    async def flush(self) -> None:
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            if self.deflate is not None:
                data = self.deflate.deflate(data)
            await self._channel.send(data)


class _Connection:
    def __init__(
        self,
        services: Services,
        settings: SessionSettings,
        authenticator: CountedAuthenticator,
        quota_warnings: QuotaWarnings,
        channel: Channel,
        admission: Admission,
        implicit_tls: bool,
    ) -> None:
        self.services = services
        self.channel = channel
        self.out = _Output(channel)
        remote_ip = channel.peer[0]
        self.log = Log("imap", conn=admission.connection_id, remote=remote_ip)
        self.session = ImapSession(
            settings,
            services.store,
            authenticator,
            parse=_parse,
            remote_ip=remote_ip,
            tls_active=implicit_tls,
            starttls_available=not implicit_tls,
            now=time.time(),
            log=self.log,
            quota_watch=quota_warnings,
        )
        self.feed: ChangeSubscription | None = None
        self.changed = asyncio.Event()
        self.tasks: list[asyncio.Task[Any]] = []

    async def run(self) -> None:
        self.log.info("connected", tls=self.channel.tls_active)
        try:
            await self.out.write(self.session.greeting())
            await self._loop()
            await self.out.flush()
        finally:
            for task in self.tasks:
                task.cancel()
            if self.feed is not None:
                await self.feed.close()

    async def _loop(self) -> None:
        session = self.session
        loop = asyncio.get_running_loop()
        shutdown = loop.create_task(self.services.shutdown.wait())
        self.tasks.append(shutdown)
        receive: asyncio.Task[bytes] | None = None
        changed: asyncio.Task[bool] | None = None
        try:
            while True:
                await self.out.flush()
                if receive is None:
                    receive = loop.create_task(self.channel.receive(None))
                waits: set[asyncio.Task[Any]] = {receive, shutdown}
                if session.wants_push:  # IDLE, or events NOTIFY asked for (RFC 5465 §3.1)
                    if changed is None:
                        changed = loop.create_task(self.changed.wait())
                    waits.add(changed)
                timeout = max(0.0, session.deadline() - time.time())
                done, _ = await asyncio.wait(
                    waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                now = time.time()
                if receive in done:
                    data = receive.result()
                    receive = None
                    if not await self._receive(data, now):
                        return
                elif changed is not None and changed in done:
                    changed = None
                    self.changed.clear()
                    if not await self._obey(await session.push_updates(self.out, now)):
                        return
                elif shutdown in done:
                    await self.out.write(session.shutdown())
                    self.log.info("closed for shutdown")
                    return
                else:
                    before_login = session.state is State.NOT_AUTHENTICATED
                    bye = session.handle_timeout(now)
                    if bye is not None:
                        await self.out.write(bye)
                        self.log.info("login timeout" if before_login else "autologout")
                        return
        finally:
            for task in (receive, changed):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task

    async def _receive(self, data: bytes, now: float) -> bool:
        """Feed received octets (inflated once COMPRESS is active); False to close."""
        deflate = self.out.deflate
        if deflate is None or not data:
            return await self._obey(await self.session.receive_data(data, self.out, now))
        try:
            for piece in deflate.inflate(data):
                if not await self._obey(await self.session.receive_data(piece, self.out, now)):
                    return False
        except CompressionError as exc:
            self.log.warning("closed: corrupt compressed input", error=str(exc))
            return False
        return True

    async def _obey(self, action: Action) -> bool:
        """Carry out the session's request; False when the connection is to close."""
        if self.feed is None and self.session.account is not None:
            self._subscribe(self.session.account.id)
        if self.feed is not None:  # a shared mailbox selected (RFC 4314): hear its owner's
            self.feed.watch(self.session.watched_mailbox)
        if action is Action.CLOSE:
            return False
        if action is Action.START_TLS:
            await self.out.flush()
            discarded = await self.channel.start_tls(
                self.services.tls, self.services.config.tls.handshake_timeout
            )
            if discarded:
                self.log.warning("discarded plaintext after STARTTLS", octets=discarded)
            self.session.tls_started()
        if action is Action.START_COMPRESS:
            await self.out.flush()  # the tagged OK goes out uncompressed (RFC 4978 §3)
            self.out.deflate = Deflate()
            pipelined = self.session.compression_started()
            if pipelined:
                return await self._receive(pipelined, time.time())
        return True

    def _subscribe(self, account_id: int) -> None:
        self.log.info("logged in", account_id=account_id)
        feed = self.services.store.subscribe(account_id)
        self.feed = feed

        async def pump() -> None:
            async for change in feed:
                self.session.notify(change)
                self.changed.set()

        self.tasks.append(asyncio.get_running_loop().create_task(pump()))
