"""Asyncio adapter driving the ManageSieve session core (:mod:`pillarbox.managesieve`).

Implementation notes:

- This module owns what the core must not: the socket (a :class:`Channel`), STARTTLS (the
  session drops what was pipelined after the command, the channel what it had buffered,
  RFC 5804 §2.2), the clock and the idle timer, and the server's shutdown.
- One task per connection: wait for the client's bytes or the shutdown until the session's
  deadline; a refused admission gets ``BYE (TRYLATER)`` before the close.
- Login goes through the shared :class:`~pillarbox.auth.directory.Authenticator`, so app
  passwords, SCRAM verifiers and the per-address and per-account rate limits are IMAP's.
- Logs carry the connection id; the session logs logins and script changes by name, never
  a SASL payload or a script's content. With ``logging.trace_protocol`` each command and
  response line is logged too (``C:``/``S:``), SASL payloads redacted and literals (scripts)
  shown as their size.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from pillarbox.config import Config
from pillarbox.managesieve import Action, FramerLimits, ManageSieveSession, SessionSettings
from pillarbox.managesieve import responses as replies
from pillarbox.managesieve.session import CommandTrace
from pillarbox.net.authcount import CountedAuthenticator
from pillarbox.net.channel import Channel, ChannelClosed
from pillarbox.net.listener import Admission, Handler
from pillarbox.observability.log import Log, redact_line, trace_lines
from pillarbox.services import Services
from pillarbox.sieve import EXTENSIONS
from pillarbox.sieve.notify import METHODS
from pillarbox.sievescripts import ScriptLimits


def session_settings(config: Config) -> SessionSettings:
    """The session's limits from ``[managesieve]`` and ``[sieve]``."""
    section, sieve = config.managesieve, config.sieve
    return SessionSettings(
        framer=FramerLimits(
            max_line=section.max_line_length,
            max_literal=sieve.max_script_size,
            # A name and a script, each possibly a literal, and their lines.
            max_command=2 * sieve.max_script_size + 2 * section.max_line_length,
            max_discard=section.max_skip,
        ),
        scripts=ScriptLimits.of(sieve),
        max_errors=section.max_errors,
        max_auth_failures=section.max_auth_failures,
        idle_timeout=section.idle_timeout,
        login_timeout=section.login_timeout,
        login_without_tls=section.login_without_tls,
        sieve_extensions=tuple(EXTENSIONS),
        max_redirects=sieve.max_redirects,
        notify_methods=METHODS,
    )


def managesieve_handler(services: Services, listener: str) -> Handler:
    settings = session_settings(services.config)
    authenticator = CountedAuthenticator(
        services.authenticator, services.metrics.auth("managesieve")
    )

    async def handle(channel: Channel, admission: Admission) -> None:
        if not admission.admitted:
            await channel.send(replies.BYE_BUSY.encode())
            return
        await _Connection(services, settings, authenticator, channel, admission).run()

    return handle


class _Output:
    """Writes with back-pressure: a GETSCRIPT to a slow reader holds one script, not many."""

    def __init__(self, channel: Channel, trace: Log | None) -> None:
        self._channel = channel
        self._trace = trace

    async def write(self, data: bytes) -> None:
        if self._trace is not None:
            for line in trace_lines(data):
                self._trace.info("S: " + line)
        await self._channel.send(data)


def _command_tracer(log: Log) -> CommandTrace:
    def trace(data: bytes, sasl_response: bool) -> None:
        if sasl_response:
            log.info("C: " + redact_line(data, in_sasl_exchange=True).decode())
            return
        for line in trace_lines(data):
            log.info("C: " + redact_line(line.encode()).decode("utf-8", "backslashreplace"))

    return trace


class _Connection:
    def __init__(
        self,
        services: Services,
        settings: SessionSettings,
        authenticator: CountedAuthenticator,
        channel: Channel,
        admission: Admission,
    ) -> None:
        self.services = services
        self.channel = channel
        remote_ip = channel.peer[0]
        self.log = Log("managesieve", conn=admission.connection_id, remote=remote_ip)
        tracing = services.config.logging.trace_protocol
        self.out = _Output(channel, self.log if tracing else None)
        self.session = ManageSieveSession(
            settings,
            services.store,
            authenticator,
            remote_ip=remote_ip,
            tls_active=channel.tls_active,
            starttls_available=not channel.tls_active,
            now=time.monotonic(),
            log=self.log,
            trace=_command_tracer(self.log) if tracing else None,
        )

    async def run(self) -> None:
        self.log.info("connected", tls=self.channel.tls_active)
        reason = "closed"
        try:
            await self.out.write(self.session.greeting())
            reason = await self._loop()
        except ChannelClosed as exc:
            reason = exc.reason
        self.log.info("disconnected", reason=reason)

    async def _loop(self) -> str:
        session = self.session
        loop = asyncio.get_running_loop()
        shutdown = loop.create_task(self.services.shutdown.wait())
        receive: asyncio.Task[bytes] | None = None
        try:
            while True:
                if receive is None:
                    receive = loop.create_task(self.channel.receive(None))
                timeout = max(0.0, session.deadline() - time.monotonic())
                done, _ = await asyncio.wait(
                    {receive, shutdown}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if receive in done:
                    data = receive.result()
                    receive = None
                    action = await session.receive_data(data, self.out, time.monotonic())
                    if action is Action.CLOSE:
                        return "logout" if data else "peer closed"
                    if action is Action.START_TLS:
                        discarded = await self.channel.start_tls(
                            self.services.tls, self.services.config.tls.handshake_timeout
                        )
                        if discarded:
                            self.log.warning("discarded plaintext after STARTTLS", octets=discarded)
                        await self.out.write(session.tls_started())
                elif shutdown in done:
                    await self.out.write(session.shutdown())
                    return "shutdown"
                else:
                    bye = session.handle_timeout(time.monotonic())
                    if bye is not None:
                        await self.out.write(bye)
                        return "login timeout" if session.login_timed_out else "idle timeout"
        finally:
            for task in (receive, shutdown):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
