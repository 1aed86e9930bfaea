"""Asyncio adapter driving the sans-I/O POP3 core (:mod:`pillarbox.pop3`) against the store.

Implementation notes:

- The maildrop is the account's INBOX, snapshotted at login (RFC 1939 §4: numbers fixed for
  the session). One POP3 session per maildrop, on whichever node (``Store.lock_maildrop``): a
  second gets ``-ERR [IN-USE]`` (RFC 2449 §8.1.2) — POP3's deletions-at-QUIT model has no
  answer for two writers.
- Deletions happen only in the UPDATE state after a clean QUIT: the core emits ``Update`` only
  then, and we expunge exactly those UIDs (flag ``\\Deleted`` then UID EXPUNGE semantics), so
  IMAP sessions see an ordinary expunge through the change feed.
- Messages stream to the client in 64 KiB slices; the core dot-stuffs and stops TOP early.
- Listed sizes are the stored sizes: every message is stored with CRLF line endings (the SMTP
  core and IMAP APPEND guarantee it), which is what RETR sends (RFC 1939 §11).
"""

from __future__ import annotations

import asyncio

from pillarbox import pop3
from pillarbox.auth.directory import Authenticated, SaslSession
from pillarbox.auth.sasl import Challenge, UnsupportedMechanism
from pillarbox.errors import AuthenticationFailed, NotFound, RateLimited, StorageError
from pillarbox.net.channel import Channel
from pillarbox.net.listener import Admission, Handler
from pillarbox.observability.log import Log
from pillarbox.observability.metrics import AuthMetrics
from pillarbox.pop3 import responses
from pillarbox.services import Services
from pillarbox.store.types import INBOX, Account, FlagOp, Mailbox

SLICE = 64 * 1024


def pop3_handler(services: Services, listener: str) -> Handler:
    implicit_tls = listener == "pop3s"
    config = services.config.pop3
    settings = pop3.Pop3Settings(
        hostname=services.hostname,
        sasl_mechanisms=services.authenticator.mechanisms(secure=True),
        limits=pop3.Pop3Limits(
            max_errors=config.max_errors,
            idle_timeout=config.idle_timeout,
            login_timeout=config.login_timeout,
        ),
    )
    auth_metrics = services.metrics.auth("pop3")

    async def handle(channel: Channel, admission: Admission) -> None:
        if not admission.admitted:
            await channel.send(responses.SYS_TEMP.encode())
            return
        session = _Pop3Session(services, settings, channel, admission, implicit_tls, auth_metrics)
        await session.run()

    return handle


class _Pop3Session:
    def __init__(
        self,
        services: Services,
        settings: pop3.Pop3Settings,
        channel: Channel,
        admission: Admission,
        implicit_tls: bool,
        auth_metrics: AuthMetrics,
    ) -> None:
        self.services = services
        self.auth_metrics = auth_metrics
        self.channel = channel
        self.loop = asyncio.get_running_loop()
        self.remote_ip = channel.peer[0]
        self.log = Log("pop3", conn=admission.connection_id, remote=self.remote_ip)
        self.core = pop3.Pop3Server(
            settings,
            now=self.loop.time(),
            tls_active=implicit_tls,
            starttls_available=not implicit_tls,
            insecure_auth_allowed=services.config.pop3.login_without_tls,
        )
        self.account: Account | None = None
        self.inbox: Mailbox | None = None
        self.sasl: SaslSession | None = None

    async def run(self) -> None:
        self.log.info("connected", tls=self.channel.tls_active)
        try:
            await self._loop()
        finally:
            await self._release()

    async def _release(self) -> None:
        """Give the maildrop up (once): at the goodbye, else when the session ends anyhow."""
        account, self.account = self.account, None
        if account is not None:
            try:
                await self.services.store.unlock_maildrop(account.id)
            except StorageError as exc:  # the store closed first (shutdown): nothing held
                self.log.warning("cannot unlock maildrop", error=str(exc))

    async def _flush(self) -> None:
        data = self.core.data_to_send(self.loop.time())
        if data:
            await self.channel.send(data)

    async def _loop(self) -> None:
        core = self.core
        while True:
            event = core.next_event()
            if event is pop3.NEED_DATA or event is pop3.PAUSED:
                await self._flush()  # replies the core produced itself (USER, LIST, …)
                deadline = core.deadline()
                timeout = None if deadline is None else max(0.0, deadline - self.loop.time())
                if event is pop3.PAUSED:
                    await asyncio.sleep(timeout or 0)
                    core.handle_timeout(self.loop.time())
                    continue
                if self.services.shutdown.is_set() and core.state is not pop3.State.TRANSACTION:
                    return
                try:
                    data = await self.channel.receive(timeout)
                except TimeoutError:
                    core.handle_timeout(self.loop.time())
                    continue
                core.receive_data(data, self.loop.time())
                continue
            match event:
                case pop3.Disconnect(reason=reason):
                    # RFC 1939 §6 releases the lock as the session ends; before the goodbye
                    # here, so that a client logging in again as soon as it reads +OK (on
                    # this node or another) never finds its own maildrop in use.
                    await self._release()
                    await self._flush()
                    self.log.info("disconnected", reason=reason.value)
                    return
                case pop3.UserPass(user=user, password=password):
                    await self._password_login(user, password)
                case pop3.SaslStart(mechanism=mechanism, initial_response=initial):
                    await self._sasl_start(mechanism, initial)
                case pop3.SaslResponse(data=data):
                    await self._sasl_step(data)
                case pop3.StartTls():
                    await self._flush()
                    discarded = await self.channel.start_tls(
                        self.services.tls, self.services.config.tls.handshake_timeout
                    )
                    if discarded:
                        self.log.warning("discarded plaintext after STLS", octets=discarded)
                    core.tls_started()
                case pop3.Retrieve(uid=uid):
                    await self._retrieve(uid)
                case pop3.Update(deleted_uids=uids):
                    await self._update(uids)
                case pop3.Apop():
                    core.reject_login(responses.AUTH_FAILED)  # APOP is never enabled
                case _:
                    raise AssertionError(f"unhandled POP3 event {event!r}")

    def _count_failure(self, exc: AuthenticationFailed | RateLimited) -> None:
        metrics = self.auth_metrics
        (metrics.rate_limited if isinstance(exc, RateLimited) else metrics.credentials).inc()

    async def _password_login(self, user: str, password: str) -> None:
        try:
            account = await self.services.authenticator.check_password(
                user, password, self.remote_ip
            )
        except (AuthenticationFailed, RateLimited) as exc:
            self.log.info("login failed", user=user, reason=type(exc).__name__)
            self._count_failure(exc)
            self.core.reject_login(responses.AUTH_FAILED)
            return
        await self._open_maildrop(account)

    async def _sasl_start(self, mechanism: str, initial: bytes | None) -> None:
        try:
            self.sasl = self.services.authenticator.start_sasl(
                mechanism, remote_ip=self.remote_ip, secure=self._secure
            )
            step = await self.sasl.start(initial)
        except UnsupportedMechanism:
            self.core.reject_login(responses.UNSUPPORTED_MECHANISM)
            return
        except (AuthenticationFailed, RateLimited) as exc:
            self.log.info("SASL login failed", mechanism=mechanism, reason=type(exc).__name__)
            self._count_failure(exc)
            self.core.reject_login(responses.AUTH_FAILED)
            return
        await self._sasl_outcome(step)

    async def _sasl_step(self, data: bytes) -> None:
        assert self.sasl is not None
        try:
            step = await self.sasl.receive(data)
        except (AuthenticationFailed, RateLimited) as exc:
            self.log.info("SASL login failed", reason=type(exc).__name__)
            self._count_failure(exc)
            self.core.reject_login(responses.AUTH_FAILED)
            return
        await self._sasl_outcome(step)

    async def _sasl_outcome(self, step: Challenge | Authenticated) -> None:
        if isinstance(step, Challenge):
            self.core.sasl_challenge(step.data)
            return
        self.sasl = None
        await self._open_maildrop(step.account)

    @property
    def _secure(self) -> bool:
        return self.core.tls_active or self.services.config.pop3.login_without_tls

    async def _open_maildrop(self, account: Account) -> None:
        store = self.services.store
        try:
            locked = await store.lock_maildrop(account.id)
        except StorageError as exc:
            self.log.error("cannot lock maildrop", account=account.address, error=str(exc))
            self.core.reject_login(responses.SYS_TEMP)
            return
        if not locked:
            self.log.info("maildrop in use", account=account.address)
            self.core.reject_login(responses.IN_USE)
            return
        try:
            inbox = await store.get_mailbox(account.id, INBOX)
            records = await store.list_messages(inbox.id)
        except (NotFound, StorageError) as exc:
            await store.unlock_maildrop(account.id)
            self.log.error("cannot open maildrop", account=account.address, error=str(exc))
            self.core.reject_login(responses.SYS_TEMP)
            return
        self.account, self.inbox = account, inbox
        self.core.accept_login(
            inbox.uidvalidity, [pop3.MaildropMessage(r.uid, r.size) for r in records]
        )
        self.log.info("logged in", account=account.address, messages=len(records))

    async def _retrieve(self, uid: int) -> None:
        assert self.inbox is not None
        store = self.services.store
        record = await store.get_message(self.inbox.id, uid)
        if record is None:
            self.core.fail_message(responses.MESSAGE_GONE)
            return
        try:
            raw = await store.read_blob(record.blob_id)
        except (NotFound, StorageError) as exc:
            self.log.error("cannot read message", uid=uid, error=str(exc))
            self.core.fail_message(responses.MESSAGE_UNAVAILABLE)
            return
        view = memoryview(raw)
        for start in range(0, len(raw), SLICE):
            if not self.core.message_chunk(bytes(view[start : start + SLICE])):
                break
            await self._flush()
        self.core.end_message()

    async def _update(self, uids: tuple[int, ...]) -> None:
        assert self.inbox is not None and self.account is not None
        store = self.services.store
        try:
            if uids:
                await store.store_flags(self.inbox.id, uids, FlagOp.ADD, frozenset({"\\Deleted"}))
                await store.expunge(self.inbox.id, uids)
        except StorageError as exc:
            self.log.error("update failed", error=str(exc))
            self.core.fail_update()
            return
        self.log.info("update", account=self.account.address, deleted=len(uids))
        self.core.complete_update()
