"""The queue runner: claims due messages from the store and delivers them, locally or by SMTP.

Implementation notes:

- **Claims and restarts.** Messages are claimed with a lease (``queue.lease``) under this
  node's name (``server.hostname``), so a node that restarts takes its own claims back at once,
  and another node takes them over when the lease runs out. Results are recorded per message
  when all its recipients have an answer for this attempt; delivered and failed recipients are
  final and never tried again. A crash between a server's 250 and that record re-delivers those
  recipients (RFC 5321 §6.1 accepts a duplicate over a loss); the window is one message.
- **Concurrency.** At most ``max_messages`` messages are in flight (their bytes are held in
  memory). Remote recipients are grouped by destination domain; each destination has a queue
  of parts served by at most ``per_domain`` workers, and all workers together hold at most
  ``concurrency`` connections. A worker keeps its connection open while its destination has
  parts waiting, so many messages to one host share one session (RFC 5321 §4.5.4.1 favours
  few connections per destination); once the server's MAILMAX is reached (RFC 9422 §4.1) it
  opens a new connection to the same address for the rest.
- **Host order** and the bookkeeping of answers are pure (:mod:`.remote`); classification,
  retry times, expiry and the choice of report too (:mod:`.schedule`). This module only wires
  them to the store, DNS and :class:`~pillarbox.net.smtp_client.SmtpSession`.
- **Opportunistic TLS** (RFC 7435): STARTTLS whenever offered, any certificate taken; a failed
  STARTTLS (454, or a handshake that fails) is followed by a plaintext session with the same
  address, unless something below demands TLS (:meth:`QueueRunner._plaintext_fallback`).
- **MTA-STS** (RFC 8461, :mod:`.mtasts`): before delivering to a domain by MX, its policy is
  looked up (:class:`~pillarbox.net.mtasts.MtaStsPolicies`); each MX host then gets the plan
  :func:`.mtasts.host_plan` gives it. Under "enforce" a host the policy does not list, or one
  that fails verified STARTTLS, is a failed host like an unreachable one (the next is tried,
  the recipients are deferred with the reason); under "testing" the failure is only logged.
  Through a smart host the policy domain is the smart host's own name, not the recipient's
  domain (§3.4: "MUST treat the smart host domain as the Policy Domain"; no parent zone is
  asked); its policy is applied to the smart host as to an MX host (listed, and verified TLS,
  under "enforce"), with the smart host's credentials. A smart host given as an IP address
  has no policy domain; nor has an address literal (§3.4).
  :meth:`QueueRunner.run` first loads the policies and failed fetches kept in the store
  (§5.1, §10.2: a restart must not forget them; §3.3: nor wait less after a failure,
  :meth:`MtaStsPolicies.load`); while it runs, a task of its own fetches
  cached policies again ahead of their expiry (§3.3 SHOULD, ``queue.mta_sts_refresh``,
  :meth:`MtaStsPolicies.keep_fresh`).
- **DANE** (RFC 7672, :mod:`.dane`): for a host from a DNSSEC-authenticated MX answer whose
  addresses are authenticated too, the TLSA records at ``_<port>._tcp.<host>`` are looked up
  (after the addresses, §2.2.2). A failed lookup makes the host unusable (§2.1.2: the next
  host is tried, never plaintext); usable secure records make STARTTLS mandatory and the
  certificate must match one of them (a host that fails is a failed host, 4.7.5 or 4.7.10);
  secure records none of which is usable make STARTTLS mandatory alone. Where DANE
  authenticates a host, the domain's MTA-STS policy is not applied to it (RFC 8461 §2: STS
  never overrides DANE; DNSSEC already vouches for the MX host, so neither the policy's MX
  list nor its PKIX check applies); elsewhere MTA-STS applies as before.
- **TLS policy** (``queue.tls_policy``, :mod:`.tlspolicy`): a destination with an entry (the
  smart host's ``[host]`` entry through a smart host) gets that level instead of discovery:
  no MTA-STS fetch, TLSA lookups only for ``dane``/``dane-only`` (even with ``queue.dane``
  off). A host that cannot meet a mandatory level is a failed host (4.7.10 no STARTTLS, 4.7.5
  a certificate refused or, for ``dane-only``, no usable secure TLSA records, RFC 7672 §6);
  the recipients are deferred with the reason once no host is left. ``TLS-Required: No``
  lowers every level but ``none`` to ``may``. Only TLSA-decided sessions of such destinations
  go to the TLS report: our levels are not the domain's published policy.
- **REQUIRETLS** (RFC 8689 §4.2.1): a message tagged REQUIRETLS with a reverse-path gets
  sessions of its own and only hosts authenticated — by DANE, by a DNSSEC-signed MX answer
  and a certificate that chains and names the host, by MTA-STS "enforce" listing it, or by a
  ``verify``/``secure`` entry (for a smart host: a certificate naming it) — whose EHLO after
  STARTTLS offers REQUIRETLS; the parameter goes on MAIL. An unauthenticated host is 550
  5.7.10, one not offering REQUIRETLS 550 5.7.30 (both permanent: what the domain publishes
  and its servers' software, not a passing state); TLS failures stay 4.7.x and are retried;
  a temporary failure of one host outweighs a permanent one of another. Its
  ``TLS-Required: No`` is ignored (§4.1). Reports on tagged messages are tagged (§5) but,
  with their null reverse-path, go the usual way, the parameter given where offered.
- **TLS reports** (RFC 8460, :mod:`.tlsrpt`, with ``tls_reports``): each host tried by MX
  leaves one result in the store — success, or a §4.3 failure (STARTTLS missing, a certificate
  the policy refused, a TLSA lookup that failed, an MX host the MTA-STS policy does not
  list) — under the policy that applied (``tlsa``, ``sts`` or ``no-policy-found``). Connection
  failures are transient and not kept (§4.3.4). Through a smart host the results are the
  smart host's, under its own name: the Policy Domain whose policy applied (RFC 8461 §3.4),
  which is the ``policy-domain`` of the report (RFC 8460 §4.4) and where its ``_smtp._tls``
  record is looked up (§3); the recipient domains published nothing that was applied. A
  smart host given as an IP address has no domain and no report. Messages marked
  ``TLS-Required: No`` (RFC 8689 §4.2.2, the reports themselves) are delivered to their own
  sessions with opportunistic TLS only — neither MTA-STS nor DANE can stop them (RFC 8460
  §5.3) — and are not counted.
- **Local recipients** in the queue (a mailbox that was full) are delivered through the store,
  with the policy's decision intake kept for each (:func:`.local.deliver_local`); so are
  reports to local senders (:mod:`.bounce`).
- **Wake-ups**: intake sets ``Services.queue_wakeup`` after queueing; the runner also wakes at
  the earliest retry it scheduled and every ``poll_interval`` (for retries requested through
  the CLI or other nodes). A message that fails for a reason of ours (a store error) is left
  alone for ``poll_interval``, so a broken message cannot spin the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter

from pillarbox.dns.resolver import DnsResolver, DnsTemporaryError, HostAddresses, Resolver
from pillarbox.errors import ConfigError, InvalidName
from pillarbox.mail.dsn import RecipientReport
from pillarbox.mail.headers import scan_header
from pillarbox.net.mtasts import FETCH_TIMEOUT, MtaStsPolicies
from pillarbox.net.smtp_client import (
    SessionSettings,
    SmtpSession,
    chain_verifying_context,
    opportunistic_context,
    verifying_context,
)
from pillarbox.observability.log import Log
from pillarbox.observability.metrics import Metrics
from pillarbox.queue import bounce
from pillarbox.queue.dane import (
    NO_DANE,
    TLSA_LOOKUP_FAILED,
    DanePlan,
    DanePlanKind,
    base_domains,
    is_mismatch,
    lookup_failed,
    needs_alias_check,
    plan_for,
    tlsa_name,
)
from pillarbox.queue.filtering import LocalDelivery
from pillarbox.queue.local import deliver_local
from pillarbox.queue.mtasts import (
    MAX_POLICY_SIZE,
    MX_NOT_IN_POLICY,
    REFRESH_SECONDS,
    HostPlan,
    Mode,
    Policy,
    TlsPlan,
    host_plan,
)
from pillarbox.queue.remote import (
    DNS_FAILURE,
    MAX_RECIPIENTS,
    NO_ADDRESS,
    REQUIRETLS_POLICY_UNAVAILABLE,
    REQUIRETLS_UNAUTHENTICATED,
    REQUIRETLS_UNSUPPORTED,
    TLS_UNAVAILABLE,
    Answer,
    Job,
    Part,
    RemoteRecipient,
    Route,
    content_flags,
    is_tls_failure,
    mx_route,
    parse_hostport,
    smarthost_route,
    split_jobs,
)
from pillarbox.queue.routing import Router
from pillarbox.queue.schedule import (
    Attempt,
    RetryPolicy,
    Verdict,
    decide,
    described,
    reply_text,
)
from pillarbox.queue.tlspolicy import (
    DANE_REQUIRED,
    NO_TABLE,
    DestinationPolicy,
    Level,
    PolicyTable,
)
from pillarbox.queue.tlsrpt import (
    PolicyType,
    ResultType,
    certificate_failure,
    sts_policy_strings,
    tls_optional,
)
from pillarbox.services import Services
from pillarbox.smtp.client import SmtpClientSettings
from pillarbox.smtp.extensions import Extension
from pillarbox.smtp.replies import LOCAL_ERROR, Reply
from pillarbox.store.interface import Store
from pillarbox.store.open import is_postgresql
from pillarbox.store.types import (
    AttemptOutcome,
    QueuedMessage,
    QueuedRecipient,
    RecipientState,
    TlsSessionResult,
)

_log = Log("queue")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunnerLimits:
    #: Connections open at once, all destinations together (``queue.concurrency``).
    concurrency: int = 20
    #: Connections to one destination domain (``queue.per_domain``).
    per_domain: int = 4
    #: Messages being delivered at once; their bytes stay in memory meanwhile.
    max_messages: int = 100
    #: Seconds between store scans without a wake-up (``queue.poll_interval``).
    poll_interval: float = 30.0
    #: Seconds a claim lasts (``queue.lease``).
    lease: float = 900.0
    #: Recipients per SMTP transaction (RFC 5321 §4.5.3.1.8 minimum).
    max_recipients: int = MAX_RECIPIENTS
    #: Largest original returned whole in a report (``queue.bounce_original_limit``).
    bounce_original_limit: int = 262_144
    #: Seconds a session whose destination ran out of parts waits for messages already
    #: claimed, still being read, to hand it theirs before it quits (``queue.session_linger``).
    linger: float = 1.0


@dataclass(frozen=True, slots=True)
class Relay:
    """A smart host (``queue.smarthost``): all remote mail goes there instead of by MX."""

    host: str
    port: int
    session: SessionSettings


@dataclass(frozen=True, slots=True)
class MtaSts:
    """MTA-STS for delivery by MX (``queue.mta_sts``): where policies come from, and the
    session settings for hosts whose certificate must be verified (RFC 8461 §4.2)."""

    policies: MtaStsPolicies
    #: Verifies the certificates of hosts a policy lists (§4.2); sessions with them require
    #: STARTTLS (§5 "enforce": no mail without it).
    context: ssl.SSLContext


@dataclass(slots=True)
class _Delivery:
    """One claimed message being delivered: its bytes and its recipients' answers."""

    message: QueuedMessage
    raw: bytes
    parts_left: int = 0
    answers: dict[int, Answer] = field(default_factory=dict)
    finished: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True)
class _Destination:
    domain: str
    #: Messages marked ``TLS-Required: No`` (RFC 8689 §4.2.2): no MTA-STS, no DANE, not
    #: counted in TLS reports. They get sessions of their own.
    tls_optional: bool = False
    #: Messages tagged REQUIRETLS with a reverse-path (RFC 8689 §4.2.1): only hosts
    #: authenticated by DNSSEC/DANE or MTA-STS "enforce", verified TLS, REQUIRETLS offered.
    #: Sessions of their own too.
    requiretls: bool = False
    parts: deque[tuple[Part, _Delivery]] = field(default_factory=deque)
    workers: int = 0


#: A destination: the domain, whether it is the TLS-optional one, the REQUIRETLS one.
_DestinationKey = tuple[str, bool, bool]


@dataclass(frozen=True, slots=True)
class _TlsNote:
    """The policy a host was tried under, for the TLS report (RFC 8460 §4.4)."""

    domain: str
    host: str
    policy_type: PolicyType
    policy_strings: tuple[str, ...] = ()
    mx_patterns: tuple[str, ...] = ()


def _utc_now() -> datetime:
    return datetime.now(UTC)


class QueueRunner:
    """Delivers the queue until cancelled (:meth:`run`); see the module notes."""

    def __init__(
        self,
        *,
        store: Store,
        router: Router,
        resolver: Resolver,
        policy: RetryPolicy,
        hostname: str,
        wakeup: asyncio.Event,
        remote_port: int = 25,
        session: SessionSettings,
        relay: Relay | None = None,
        mta_sts: MtaSts | None = None,
        dane: bool = False,
        tls_policy: PolicyTable = NO_TABLE,
        verified_tls: ssl.SSLContext | None = None,
        tls_reports: bool = False,
        limits: RunnerLimits = RunnerLimits(),
        clock: Callable[[], datetime] = _utc_now,
        local_delivery: LocalDelivery | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        #: Attempts per recipient by the state they leave it in (``FAILED`` is a bounce).
        self._attempts: dict[RecipientState, Counter] = {}
        if metrics is not None:
            attempts = metrics.delivery_attempts
            self._attempts = {
                RecipientState.DELIVERED: attempts.labels("delivered"),
                RecipientState.DEFERRED: attempts.labels("deferred"),
                RecipientState.FAILED: attempts.labels("bounced"),
            }
        #: Queued mail for our own accounts (mailbox full at intake) goes through their
        #: Sieve scripts as it would have then; None: straight to INBOX.
        self._local_delivery = local_delivery
        self._router = router
        self._resolver = resolver
        self._policy = policy
        self._hostname = hostname
        self._wakeup = wakeup
        self._remote_port = remote_port
        self._session = session
        self._relay = relay
        self._mta_sts = mta_sts
        self._dane = dane
        self._tls_table = tls_policy
        #: Chains of ``verify``/``secure`` hosts are checked against these roots.
        self._verified_tls = verified_tls or chain_verifying_context()
        self._opportunistic = opportunistic_context()
        self._tls_reports = tls_reports
        self._limits = limits
        self._clock = clock
        self._slots = asyncio.Semaphore(limits.concurrency)
        self._inflight: dict[int, _Delivery] = {}
        #: Claimed deliveries whose parts are not handed to their destinations yet, and an
        #: event set whenever there are none (see :meth:`_parts_may_come`).
        self._starting = 0
        self._all_started = asyncio.Event()
        self._all_started.set()
        self._destinations: dict[_DestinationKey, _Destination] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_due: datetime | None = None
        self._resting: dict[int, datetime] = {}
        self._closing = False

    # -- the loop --------------------------------------------------------------------------------
    async def run(self) -> None:
        _log.info("queue runner started", owner=self._hostname)
        if self._mta_sts is not None:
            # RFC 8461 §5.1, §10.2: policies cached before a restart apply from the first
            # delivery on, and are refreshed on their schedule.
            await self._mta_sts.policies.load()
        refresher = None
        if self._mta_sts is not None and self._mta_sts.policies.refreshing:
            # RFC 8461 §3.3: cached policies are refreshed before they expire.
            refresher = asyncio.get_running_loop().create_task(self._mta_sts.policies.keep_fresh())
        try:
            while True:
                await self.claim()
                await self._sleep()
        finally:
            if refresher is not None:
                refresher.cancel()
                await asyncio.gather(refresher, return_exceptions=True)
            self._closing = True
            while self._tasks:
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _sleep(self) -> None:
        timeout = self._limits.poll_interval
        if self._next_due is not None:
            until = (self._next_due - self._clock()).total_seconds()
            timeout = max(0.0, min(timeout, until))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()
        self._wakeup.clear()

    async def claim(self) -> int:
        """Claim what is due and start delivering it; the number of messages started."""
        now = self._clock()
        if self._next_due is not None and self._next_due <= now:
            self._next_due = None
        self._resting = {k: v for k, v in self._resting.items() if v > now}
        free = self._limits.max_messages - len(self._inflight)
        if free <= 0:
            return 0
        # Our own in-flight messages are claimed again (same owner): ask for enough to skip them.
        claimed = await self._store.claim_due(
            now,
            limit=free + len(self._inflight) + len(self._resting),
            lease_seconds=self._limits.lease,
            owner=self._hostname,
        )
        started = 0
        for message in claimed:
            if message.id in self._inflight or message.id in self._resting:
                continue
            if len(self._inflight) >= self._limits.max_messages:
                break
            delivery = _Delivery(message, b"")
            self._inflight[message.id] = delivery
            if not self._closing:  # else _spawn drops it unstarted
                self._starting += 1
                self._all_started.clear()
            self._spawn(self._process(delivery))
            started += 1
        return started

    async def idle(self) -> None:
        """Wait until nothing is in flight (tests and the benchmark)."""
        while self._inflight:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._closing:
            coro.close()  # shutting down: what it would do is taken up at the next start
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- one message -----------------------------------------------------------------------------
    async def _process(self, delivery: _Delivery) -> None:
        message = delivery.message
        try:
            try:
                delivery.raw = await self._store.read_blob(message.blob_id)
                await self._start_parts(delivery)
            finally:
                self._started()
            await delivery.finished.wait()
            await self._finish(delivery)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("delivery attempt failed", queue=message.id)
            self._resting[message.id] = self._clock() + timedelta(
                seconds=self._limits.poll_interval
            )
        finally:
            self._inflight.pop(message.id, None)
            self._wakeup.set()  # room for another message

    async def _start_parts(self, delivery: _Delivery) -> None:
        message = delivery.message
        header_utf8, eight_bit = content_flags(delivery.raw)
        header = scan_header(delivery.raw, 0, len(delivery.raw))
        # RFC 8689 §4.1: with the REQUIRETLS parameter the TLS-Required field is ignored.
        optional = not message.requiretls and tls_optional((f.key, f.value) for f in header.fields)
        # §4.2.1 is for a message "for which the MAIL FROM return-path is not empty": a tagged
        # report (§5) only passes the parameter on where it is offered.
        required = message.requiretls and bool(message.sender)
        remote: dict[str, list[QueuedRecipient]] = {}
        local: list[QueuedRecipient] = []
        for recipient in message.recipients:
            domain = recipient.address.rpartition("@")[2].lower()
            if not domain.startswith("[") and await self._router.is_hosted(domain):
                local.append(recipient)
            else:
                remote.setdefault(domain, []).append(recipient)
        parts = []
        for domain, recipients in remote.items():
            job = Job(
                message_id=message.id,
                sender=message.sender,
                recipients=tuple(
                    RemoteRecipient(r.id, r.address, r.notify, r.orcpt) for r in recipients
                ),
                size=len(delivery.raw),
                ret=message.ret,
                envid=message.envid,
                utf8=header_utf8,
                eight_bit=eight_bit,
                requiretls=message.requiretls,
            )
            parts += [(domain, Part(j)) for j in split_jobs(job, self._limits.max_recipients)]
        delivery.parts_left = len(parts)
        for recipient in local:
            reply = await deliver_local(
                self._store,
                self._router,
                message.sender,
                recipient.address,
                delivery.raw,
                delivery=self._local_delivery,
                filing=recipient.filing,
                requiretls=message.requiretls,
            )
            delivery.answers[recipient.id] = Answer(reply, None)
        if not parts:
            delivery.finished.set()
        for domain, part in parts:
            self._dispatch((domain, optional, required), part, delivery)

    def _started(self) -> None:
        """One claimed delivery has handed out its parts (or failed before)."""
        self._starting -= 1
        if self._starting == 0:
            self._all_started.set()

    async def _parts_may_come(self, destination: _Destination) -> bool:
        """Whether ``destination`` has parts once the messages already claimed have handed
        theirs out (each is read from the store first), waiting at most ``linger``: a session
        whose parts ran out just before the next message's arrived would otherwise quit, and
        that message open a connection of its own (RFC 5321 §4.5.4.1: few per destination)."""
        if not destination.parts and self._starting:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._limits.linger):
                    await self._all_started.wait()
        return bool(destination.parts)

    def _part_done(self, part: Part, delivery: _Delivery) -> None:
        delivery.answers.update(part.answers)
        delivery.parts_left -= 1
        if delivery.parts_left <= 0:
            delivery.finished.set()

    async def _finish(self, delivery: _Delivery) -> None:
        message = delivery.message
        now = self._clock()
        verdicts: list[tuple[QueuedRecipient, Verdict]] = []
        for recipient in message.recipients:
            answer = delivery.answers.get(recipient.id) or Answer(LOCAL_ERROR, None)
            attempt = Attempt(
                reply=answer.reply,
                host=answer.host,
                attempts_before=recipient.attempts,
                queued_at=message.queued_at,
                notify=recipient.notify,
                delay_notified=recipient.delay_notified,
                null_sender=not message.sender,
                relayed=answer.relayed,
            )
            verdicts.append((recipient, decide(attempt, self._policy, now)))
        await self._report(delivery, verdicts, now)
        outcomes = [
            AttemptOutcome(
                recipient_id=r.id,
                state=v.state,
                reply=described(v.reply, v.host),
                next_attempt=v.next_attempt,
                delay_notified=v.delay_notified,
            )
            for r, v in verdicts
        ]
        await self._store.record_attempts(message.id, outcomes)
        for recipient, verdict in verdicts:
            _log.info(
                verdict.state.value,
                queue=message.id,
                to=recipient.address,
                host=verdict.host or "-",
                reply=reply_text(verdict.reply),
            )
            counter = self._attempts.get(verdict.state)
            if counter is not None:
                counter.inc()
            if verdict.next_attempt is not None and (
                self._next_due is None or verdict.next_attempt < self._next_due
            ):
                self._next_due = verdict.next_attempt

    async def _report(
        self,
        delivery: _Delivery,
        verdicts: Sequence[tuple[QueuedRecipient, Verdict]],
        now: datetime,
    ) -> None:
        """Send the one report this attempt causes, before its results are recorded (a crash
        in between repeats the report rather than losing it)."""
        entries = [
            RecipientReport(
                final_recipient=r.address,
                action=v.report,
                status=v.status,
                original_recipient=r.orcpt,
                remote_mta=v.host,
                diagnostic=reply_text(v.reply),
                last_attempt=now,
                will_retry_until=(
                    self._policy.expires(delivery.message.queued_at) if v.next_attempt else None
                ),
            )
            for r, v in verdicts
            if v.report is not None
        ]
        if not entries:
            return
        report = bounce.report_for(
            delivery.message,
            delivery.raw,
            entries,
            hostname=self._hostname,
            now=now,
            max_original=self._limits.bounce_original_limit,
        )
        await bounce.send_report(
            self._store,
            self._router,
            self._wakeup,
            report,
            delivery.message.sender,
            requiretls=delivery.message.requiretls,
        )

    # -- destinations ----------------------------------------------------------------------------
    def _dispatch(self, key: _DestinationKey, part: Part, delivery: _Delivery) -> None:
        destination = self._destinations.get(key)
        if destination is None:
            destination = self._destinations[key] = _Destination(*key)
        destination.parts.append((part, delivery))
        self._staff(key, destination)

    def _staff(self, key: _DestinationKey, destination: _Destination) -> None:
        if destination.workers < self._limits.per_domain and destination.workers < len(
            destination.parts
        ):
            destination.workers += 1
            self._spawn(self._worker(key, destination))

    async def _worker(self, key: _DestinationKey, destination: _Destination) -> None:
        try:
            async with self._slots:
                await self._serve(destination.domain, destination)
        finally:
            destination.workers -= 1
            if destination.parts:
                self._staff(key, destination)  # parts that arrived as this worker finished
            elif destination.workers == 0 and self._destinations.get(key) is destination:
                del self._destinations[key]

    async def _route(self, domain: str) -> Route:
        if self._relay is not None:
            return smarthost_route(domain, self._relay.host, self._relay.port)
        if domain.startswith("[") and domain.endswith("]"):
            literal = domain[1:-1].removeprefix("IPv6:")
            return Route(domain, (literal,), self._remote_port)
        result = await self._resolver.mx(domain)
        return mx_route(result, port=self._remote_port, myself=self._hostname)

    async def _addresses(self, host: str) -> HostAddresses | Answer:
        with contextlib.suppress(ValueError):
            # An address in place of a name: RFC 7672 §2.2, DANE does not apply.
            return HostAddresses((str(ipaddress.ip_address(host)),))
        try:
            found = await self._resolver.host_addresses(host)
        except DnsTemporaryError as exc:
            return Answer(DNS_FAILURE.with_text(f"{host}: {exc.problem}"), None)
        return (
            found
            if found.addresses
            else Answer(NO_ADDRESS.with_text(f"{host} has no address"), None)
        )

    async def _serve(self, domain: str, destination: _Destination) -> None:
        """Deliver the destination's parts, host after host (RFC 5321 §5.1 order)."""
        route = await self._route(domain)
        if route.failure is not None:
            while destination.parts:
                part, delivery = destination.parts.popleft()
                part.settle(route.failure)
                self._part_done(part, delivery)
            return
        settings = self._relay.session if self._relay is not None else self._session
        optional = destination.tls_optional
        required = destination.requiretls
        explicit = self._destination_policy(domain, optional)
        discovery = explicit is None and not optional
        policy = await self._sts_policy(domain) if discovery else None
        last: Answer | None = None
        if explicit is None:
            dane_enabled = self._dane and not optional
        else:  # an entry asks for DANE itself, whatever ``queue.dane`` says
            dane_enabled = explicit.level.dane and self._resolver.trusts_ad
        dane_possible = dane_enabled and route.secure
        sts_domain = self._policy_domain(domain)
        #: Where this destination's sessions go in the TLS report (RFC 8460 §4.4 policy-domain:
        #: the domain whose policy applies, the smart host's own through one); None: nowhere.
        report_domain = (
            sts_domain
            if self._tls_reports and not optional and (explicit is None or explicit.level.dane)
            else None
        )
        unfetched_policy = False
        if discovery and policy is None and self._mta_sts is not None and sts_domain:
            failure = self._mta_sts.policies.fetch_failure(sts_domain)
            unfetched_policy = failure is not None
            if failure is not None and report_domain is not None:
                # No policy because it could not be had: a policy failure (RFC 8460 §4.3.2.2).
                unfetched = _TlsNote(report_domain, "", PolicyType.STS)
                await self._record_tls(unfetched, "", failure.result_type, failure.reason)
        #: REQUIRETLS: a temporary failure seen on some host; it outweighs a permanent refusal
        #: of another (that host may take the message later).
        transient: Answer | None = None
        for host in route.hosts:
            plan = host_plan(policy, host)
            if plan.mx_mismatch and not dane_possible:
                refused = await self._mx_mismatch(domain, host, policy, plan, report_domain)
                if refused is not None:
                    last = refused
                    continue
            addresses = await self._addresses(host)
            if isinstance(addresses, Answer):
                last = addresses
                continue
            dane = (
                await self._dane_plan(domain, route, host, addresses) if dane_enabled else NO_DANE
            )
            note = (
                self._tls_note(report_domain, host, policy, plan, dane)
                if report_domain is not None
                else None
            )
            if (
                explicit is not None
                and note is not None
                and note.policy_type is not PolicyType.TLSA
            ):
                note = None  # our own policy, not the domain's: nothing to tell its owner
            if dane.kind is DanePlanKind.UNREACHABLE:
                text = f"{tlsa_name(dane.base, route.port)}: {dane.reason}; the host is not used"
                last = Answer(TLSA_LOOKUP_FAILED.with_text(text), host)
                await self._record_tls(note, "", ResultType.DNSSEC_INVALID, dane.reason)
                continue
            host_settings = settings
            if explicit is not None:
                if explicit.level is Level.DANE_ONLY and dane.kind is not DanePlanKind.AUTHENTICATE:
                    last = self._dane_required(domain, route, host, addresses, dane, explicit)
                    continue
                host_settings = self._policy_settings(
                    settings, explicit, host, self._nexthop(domain)
                )
            if plan.mx_mismatch and dane_possible and dane.kind is not DanePlanKind.AUTHENTICATE:
                refused = await self._mx_mismatch(domain, host, policy, plan, report_domain)
                if refused is not None:
                    last = refused
                    continue
            if required:
                if last is not None and last.reply.is_transient:
                    transient = last
                authenticated = self._requiretls_settings(
                    domain, route, host, plan, dane, explicit, host_settings, unfetched_policy
                )
                if isinstance(authenticated, Answer):
                    last = authenticated
                    continue
                host_settings = authenticated
            untried = deque(addresses.addresses)
            while untried:
                address = untried.popleft()
                if not destination.parts:
                    return
                session = await self._open(
                    domain, host, address, route.port, host_settings, plan, dane, note
                )
                if not isinstance(session, SmtpSession):
                    if explicit is not None:
                        session = self._policy_failure(domain, host, explicit, session)
                    if required and is_tls_failure(session):
                        session = session.with_text(f"REQUIRETLS: {session.text}")
                    last = Answer(session, host)
                    continue
                if required and Extension.REQUIRETLS not in session.capabilities:
                    # RFC 8689 §4.2.1 step 5: QUIT, and the next MX host.
                    await session.close()
                    if last is not None and last.reply.is_transient:
                        transient = last
                    _log.warning("REQUIRETLS: not offered", domain=domain, host=host)
                    text = f"{REQUIRETLS_UNSUPPORTED.text}: the host does not offer it"
                    last = Answer(REQUIRETLS_UNSUPPORTED.with_text(text), host)
                    break
                try:
                    while session.usable and await self._parts_may_come(destination):
                        part, delivery = destination.parts.popleft()
                        await session.deliver(part, delivery.raw)
                        if part.complete:
                            self._part_done(part, delivery)
                        else:  # for the next transaction, or the next address or host
                            destination.parts.appendleft((part, delivery))
                finally:
                    spent = session.spent  # before QUIT closes it
                    await session.close()
                if spent:
                    untried.appendleft(address)  # RFC 9422 §4.1 MAILMAX: a new connection
        if destination.workers > 1:
            return  # the other workers still have hosts to try for what is left
        if required and transient is not None and last is not None and last.reply.code >= 500:
            last = transient
        while destination.parts:
            part, delivery = destination.parts.popleft()
            if part.last_failure is None and last is not None:
                part.fail_session(last.reply, last.host)
            part.give_up()
            self._part_done(part, delivery)

    def _requiretls_settings(
        self,
        domain: str,
        route: Route,
        host: str,
        plan: HostPlan,
        dane: DanePlan,
        explicit: DestinationPolicy | None,
        settings: SessionSettings,
        unfetched_policy: bool,
    ) -> SessionSettings | Answer:
        """RFC 8689 §4.2.1 steps 2 and 4 for a REQUIRETLS message: the session settings that
        authenticate ``host`` (its name, then its certificate), or why it cannot be used."""
        if explicit is not None and explicit.level is Level.NONE:
            why = f"the TLS policy for {self._nexthop(domain)} is none"
        elif dane.kind is DanePlanKind.AUTHENTICATE:
            return settings  # RFC 7672: DNSSEC MX and addresses, TLSA-matched certificate
        elif explicit is not None and explicit.level.verifies:
            return settings  # the administrator's names, PKIX-verified (_policy_settings)
        elif plan.tls is TlsPlan.VERIFIED and self._mta_sts is not None:
            return settings  # "enforce" lists the host: _open verifies it (RFC 8461 §4.1, §4.2)
        elif self._relay is not None:
            # The smart host is our own choice, named in the configuration: its certificate
            # must chain to a trusted root and name it (RFC 6125), whatever
            # queue.smarthost_verify_tls says for other mail.
            name = self._relay.host.lower().rstrip(".")
            return replace(settings, tls=self._verified_tls, require_tls=True, tls_match=(name,))
        elif route.secure:
            # A DNSSEC-signed MX answer vouches for the host name (step 2); the certificate
            # must chain to a trusted root and carry that name (step 4, RFC 6125).
            name = host.lower().rstrip(".")
            return replace(settings, tls=self._verified_tls, require_tls=True, tls_match=(name,))
        elif domain.startswith("["):
            why = "an address literal has no MX record to authenticate"
        else:
            why = f"the MX records of {domain} are not DNSSEC-signed and no MTA-STS policy"
            why += " in enforce mode lists the host"
        reply = REQUIRETLS_POLICY_UNAVAILABLE if unfetched_policy else REQUIRETLS_UNAUTHENTICATED
        _log.warning("REQUIRETLS: host not authenticated", domain=domain, host=host, reason=why)
        return Answer(reply.with_text(f"{reply.text}: {why}"), host)

    def _destination_policy(self, domain: str, optional: bool) -> DestinationPolicy | None:
        """The ``[queue.tls_policy]`` entry for the nexthop (the smart host, or else the
        domain); None: discovery. ``TLS-Required: No`` lowers it to ``may`` (RFC 8689 §4.2.2),
        except ``none``, which already asks less."""
        if self._relay is not None:
            found = self._tls_table.for_relay(self._relay.host, self._relay.port)
        else:
            found = self._tls_table.for_domain(domain)
        if found is not None and optional and found.level is not Level.NONE:
            return found.with_level(Level.MAY)
        return found

    def _nexthop(self, domain: str) -> str:
        """The ``nexthop`` of ``match=``: the smart host, or the recipient domain."""
        return self._relay.host if self._relay is not None else domain

    def _policy_settings(
        self, settings: SessionSettings, explicit: DestinationPolicy, host: str, nexthop: str
    ) -> SessionSettings:
        """The session an explicit level asks for (DANE's own demands are added by
        :meth:`_open` from the host's plan)."""
        level = explicit.level
        if level is Level.NONE:
            # No STARTTLS; credentials for a smart host are then refused by the session.
            return replace(settings, tls=None, require_tls=False)
        if level.verifies:
            names = explicit.match_names(host, nexthop)
            return replace(settings, tls=self._verified_tls, require_tls=True, tls_match=names)
        # may, dane, dane-only: any certificate unless DANE asks; encrypt: TLS mandatory.
        required = settings.require_tls or level is Level.ENCRYPT
        return replace(settings, tls=self._opportunistic, require_tls=required)

    def _policy_failure(
        self, domain: str, host: str, explicit: DestinationPolicy, opened: Reply
    ) -> Reply:
        """A host that could not meet a mandatory level, said to be one (it stays 4.7.x and
        temporary: the next host is tried, then the recipients are deferred)."""
        if not explicit.level.mandatory or explicit.level.dane or not is_tls_failure(opened):
            return opened
        _log.warning(
            "TLS policy: delivery refused",
            domain=domain,
            host=host,
            level=explicit.level.value,
            reply=opened.text,
        )
        return opened.with_text(f"{explicit.describe()}: {opened.text}")

    def _dane_required(
        self,
        domain: str,
        route: Route,
        host: str,
        addresses: HostAddresses,
        dane: DanePlan,
        explicit: DestinationPolicy,
    ) -> Answer:
        """``dane-only`` and a host DANE cannot authenticate: not used (RFC 7672 §6), and
        why."""
        if not self._resolver.trusts_ad:
            why = "the resolver is not trusted to validate DNSSEC (dns.trust_ad)"
        elif not route.secure:
            why = f"the MX records of {domain} are not DNSSEC-signed"
        elif not addresses.authentic:
            why = "the host's addresses are not DNSSEC-signed"
        elif dane.kind is DanePlanKind.ENCRYPT:
            why = f"no usable TLSA record at {tlsa_name(dane.base, route.port)}"
        else:
            why = "no secure TLSA records for the host"
        _log.warning("TLS policy: no DANE", domain=domain, host=host, reason=why)
        return Answer(DANE_REQUIRED.with_text(f"{explicit.describe()}: {why}"), host)

    def _policy_domain(self, domain: str) -> str | None:
        """The MTA-STS Policy Domain of mail for ``domain``: the smart host's name when there
        is one (RFC 8461 §3.4: "compliant senders MUST treat the smart host domain as the
        Policy Domain"), else the recipient domain itself (§3.4: never its parent); None for
        an address, a smart host's or an address literal's (§3.4: no policy for those)."""
        name = self._relay.host if self._relay is not None else domain
        if name.startswith("["):
            return None
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(name)
            return None
        return name.lower().rstrip(".")

    async def _sts_policy(self, domain: str) -> Policy | None:
        """The MTA-STS policy that applies to mail for ``domain`` (:meth:`_policy_domain`)."""
        sts_domain = self._policy_domain(domain)
        if self._mta_sts is None or sts_domain is None:
            return None
        return await self._mta_sts.policies.policy_for(sts_domain)

    async def _dane_plan(
        self, domain: str, route: Route, host: str, addresses: HostAddresses
    ) -> DanePlan:
        """What the host's TLSA records ask (RFC 7672 §2.2); :data:`.dane.NO_DANE` when DANE
        cannot apply (the MX answer or the host's addresses are insecure, or no candidate base
        domain has secure TLSA records, §2.2.3)."""
        alias_secure = False
        if needs_alias_check(
            host, addresses.canonical, mx_secure=route.secure, addresses_secure=addresses.authentic
        ):
            # §2.2.2 "Insecure CNAME": is the alias itself in a signed zone?
            try:
                alias = await self._resolver.records(host, "CNAME")
            except (DnsTemporaryError, InvalidName) as exc:
                reason = exc.problem if isinstance(exc, DnsTemporaryError) else str(exc)
                _log.warning("DANE: CNAME lookup failed", domain=domain, host=host, reason=reason)
                return lookup_failed(host, f"CNAME lookup of {host}: {reason}")
            alias_secure = alias.authentic and bool(alias.records)
        bases = base_domains(
            host,
            addresses.canonical,
            mx_secure=route.secure,
            addresses_secure=addresses.authentic,
            alias_secure=alias_secure,
        )
        for base in bases:
            try:
                found = await self._resolver.records(tlsa_name(base, route.port), "TLSA")
            except (DnsTemporaryError, InvalidName) as exc:
                reason = exc.problem if isinstance(exc, DnsTemporaryError) else str(exc)
                _log.warning("DANE: TLSA lookup failed", domain=domain, host=host, reason=reason)
                return lookup_failed(base, reason)  # §2.1.2: any failure, not just the last
            dane = plan_for(base, found.records, secure=found.authentic)
            if dane.kind is not DanePlanKind.NONE:
                _log.info(
                    "DANE: TLSA records",
                    domain=domain,
                    host=host,
                    base=base,
                    plan=dane.kind.value,
                    usable=len(dane.records),
                    published=len(found.records),
                )
                return dane
        return NO_DANE

    async def _mx_mismatch(
        self,
        domain: str,
        host: str,
        policy: Policy | None,
        plan: HostPlan,
        report_domain: str | None,
    ) -> Answer | None:
        """An MX host the policy does not list: refused under "enforce", logged under
        "testing" (RFC 8461 §4.1, §5); either way a failure for the TLS report (of
        ``report_domain``, None: none)."""
        mode = policy.mode.value if policy is not None else "-"
        _log.warning("MTA-STS: MX host not in the policy", domain=domain, host=host, mode=mode)
        if report_domain is not None and policy is not None:
            strings = sts_policy_strings(policy)
            note = _TlsNote(report_domain, host, PolicyType.STS, strings, policy.mx)
            reason = f"{host} is not an MX host of the MTA-STS policy"
            await self._record_tls(note, "", ResultType.VALIDATION_FAILURE, reason)
        if plan.tls is not TlsPlan.REFUSED:
            return None
        text = f"MTA-STS policy of {self._policy_domain(domain)} (enforce) does not list the host"
        return Answer(MX_NOT_IN_POLICY.with_text(text), host)

    async def _open(
        self,
        domain: str,
        host: str,
        address: str,
        port: int,
        settings: SessionSettings,
        plan: HostPlan,
        dane: DanePlan = NO_DANE,
        note: _TlsNote | None = None,
    ) -> SmtpSession | Reply:
        """A session with ``host`` as its TLSA records (RFC 7672 §2.2, §3) or else its domain's
        policy (RFC 8461 §4.2, §5) plan it; the outcome goes to the TLS report (``note``)."""
        if dane.kind is DanePlanKind.AUTHENTICATE:
            opened = await self._open_dane(domain, host, address, port, settings, dane)
            await self._record_session(note, address, opened)
            return opened
        if dane.kind is DanePlanKind.ENCRYPT:
            settings = replace(settings, require_tls=True)  # §2.2: TLS, any certificate
        if plan.tls is TlsPlan.OPPORTUNISTIC or self._mta_sts is None:
            opened = await SmtpSession.open(host, address, port, settings)
            if dane.kind is DanePlanKind.ENCRYPT:
                opened = self._dane_failure(domain, host, dane, opened)
            await self._record_session(note, address, opened)
            return await self._plaintext_fallback(host, address, port, settings, opened)
        # §4.2: the certificate chains to a trusted root and names the host; the rest of the
        # session (a smart host's credentials, §3.4) as it would be without the policy.
        verified = replace(settings, tls=self._mta_sts.context, require_tls=True)
        session = await SmtpSession.open(host, address, port, verified)
        await self._record_session(note, address, session)
        if isinstance(session, SmtpSession) or not is_tls_failure(session):
            return session
        if plan.tls is TlsPlan.VERIFIED:
            _log.warning("MTA-STS: delivery refused", domain=domain, host=host, reply=session.text)
            sts_domain = self._policy_domain(domain)
            return session.with_text(f"MTA-STS policy of {sts_domain} (enforce): {session.text}")
        # "testing": what would have failed is logged, and the host used as without a policy.
        _log.warning(
            "MTA-STS: policy would fail (testing)", domain=domain, host=host, reply=session.text
        )
        opened = await SmtpSession.open(host, address, port, settings)
        return await self._plaintext_fallback(host, address, port, settings, opened)

    async def _plaintext_fallback(
        self,
        host: str,
        address: str,
        port: int,
        settings: SessionSettings,
        opened: SmtpSession | Reply,
    ) -> SmtpSession | Reply:
        """After a failed STARTTLS under opportunistic TLS, a plaintext session with the same
        address (RFC 7435 §1.3: encrypt where possible, else deliver as without it; Postfix's
        "may" level does the same). Not where TLS is demanded (MTA-STS "enforce", DANE, a TLS
        policy above "may", REQUIRETLS, a verified or authenticated smart host): their
        settings are not :attr:`~SessionSettings.opportunistic`. An attacker able to break
        the handshake could as well strip STARTTLS from the EHLO reply; refusing the fallback
        would only keep mail from hosts whose TLS is broken until it bounces."""
        if isinstance(opened, SmtpSession) or not (
            settings.opportunistic and is_tls_failure(opened)
        ):
            return opened
        _log.warning("STARTTLS failed, plaintext", host=host, peer=address, reply=opened.text)
        return await SmtpSession.open(host, address, port, replace(settings, tls=None))

    async def _open_dane(
        self,
        domain: str,
        host: str,
        address: str,
        port: int,
        settings: SessionSettings,
        dane: DanePlan,
    ) -> SmtpSession | Reply:
        """STARTTLS mandatory, SNI the TLSA base domain, the certificate matching a usable
        record (RFC 7672 §2.2, §3.1.1, §8.1); any certificate passes the handshake itself."""
        dane_settings = replace(
            settings,
            tls=settings.tls or opportunistic_context(),
            require_tls=True,
            tlsa=dane.records,
            tls_name=dane.base,
        )
        opened = await SmtpSession.open(host, address, port, dane_settings)
        return self._dane_failure(domain, host, dane, opened)

    def _tls_note(
        self, domain: str, host: str, policy: Policy | None, plan: HostPlan, dane: DanePlan
    ) -> _TlsNote:
        """The policy the host is tried under, as the TLS report of ``domain`` (the Policy
        Domain) names it (RFC 8460 §4.4)."""
        dane_decides = dane.kind in (DanePlanKind.AUTHENTICATE, DanePlanKind.UNREACHABLE) or (
            dane.kind is DanePlanKind.ENCRYPT and plan.tls is TlsPlan.OPPORTUNISTIC
        )
        if dane_decides:
            return _TlsNote(domain, host, PolicyType.TLSA, dane.published)
        if policy is not None and policy.mode is not Mode.NONE:
            return _TlsNote(domain, host, PolicyType.STS, sts_policy_strings(policy), policy.mx)
        return _TlsNote(domain, host, PolicyType.NONE)

    async def _record_session(
        self, note: _TlsNote | None, address: str, opened: SmtpSession | Reply
    ) -> None:
        """A session's TLS outcome for the report: success when TLS was negotiated as the
        policy required; a failure by its §4.3 type; nothing for a transient failure
        (§4.3.4: no connection, no greeting)."""
        if note is None:
            return
        if isinstance(opened, SmtpSession):
            if opened.tls:
                await self._record_tls(note, address, None, "", opened.local_address)
            else:
                reason = f"{note.host} does not offer STARTTLS"
                await self._record_tls(
                    note, address, ResultType.STARTTLS_NOT_SUPPORTED, reason, opened.local_address
                )
            return
        if not is_tls_failure(opened):
            return
        if opened.code == 454 or opened.enhanced == TLS_UNAVAILABLE.enhanced:
            result = ResultType.STARTTLS_NOT_SUPPORTED
        elif is_mismatch(opened):
            result = ResultType.TLSA_INVALID  # §4.3.2.1: no record matched
        else:
            result = certificate_failure(opened.text)
        await self._record_tls(note, address, result, opened.text)

    async def _record_tls(
        self,
        note: _TlsNote | None,
        address: str,
        result: ResultType | None,
        reason: str,
        local: str = "",
    ) -> None:
        if note is None:
            return
        try:
            await self._store.record_tls_result(
                TlsSessionResult(
                    recorded=self._clock(),
                    policy_domain=note.domain,
                    policy_type=note.policy_type.value,
                    policy_strings=note.policy_strings,
                    mx_patterns=note.mx_patterns,
                    result_type=result.value if result is not None else "",
                    receiving_mx=note.host,
                    receiving_ip=address,
                    sending_ip=local,
                    failure_reason=reason,
                )
            )
        except Exception:  # the report is worth less than the delivery it describes
            _log.exception("TLS report result not kept", domain=note.domain, host=note.host)

    def _dane_failure(
        self, domain: str, host: str, dane: DanePlan, opened: SmtpSession | Reply
    ) -> SmtpSession | Reply:
        """A TLS failure under DANE, said to be one (RFC 7672 §2.2: the host is not used)."""
        if isinstance(opened, SmtpSession) or not is_tls_failure(opened):
            return opened
        _log.warning("DANE: delivery refused", domain=domain, host=host, reply=opened.text)
        return opened.with_text(f"DANE (TLSA of {dane.base}, {dane.kind.value}): {opened.text}")


def mta_sts_for(
    resolver: Resolver,
    *,
    store: Store | None,
    cafile: str | None,
    fetch_timeout: float = FETCH_TIMEOUT,
    max_policy_size: int = MAX_POLICY_SIZE,
    refresh: float = REFRESH_SECONDS,
    policy_port: int = 443,
    shared: bool = True,
) -> MtaSts:
    """MTA-STS for a runner: one trust store (``cafile``, or the system's) for policy hosts
    and MX hosts alike; fetched policies kept in ``store`` (restarts), which other nodes
    write too when ``shared``; ``policy_port`` is for tests (RFC 8461 §3.2 fixes HTTPS)."""
    context = verifying_context(cafile)
    policies = MtaStsPolicies(
        resolver,
        context,
        port=policy_port,
        timeout=fetch_timeout,
        max_size=max_policy_size,
        refresh=refresh,
        store=store,
        shared=shared,
    )
    return MtaSts(policies, context)


def _dane_enabled(configured: bool, resolver: Resolver) -> bool:
    """DANE needs authenticated answers: without a trusted AD bit it could never apply, and
    the operator is told so once, at start. Info, not a warning: it is the default on any
    host whose resolver is not a validating one on loopback (docs/dane.md), the demo's too."""
    if configured and not resolver.trusts_ad:
        _log.info(
            "DANE off: the resolver's AD bit is not trusted (dns.trust_ad; a validating"
            " resolver on this host enables it)"
        )
    return configured and resolver.trusts_ad


def _check_tls_policy(table: PolicyTable, relay: Relay | None, resolver: Resolver) -> None:
    """Say at start what the table cannot do on this host: entries no delivery will look
    up, DANE levels without a trusted validating resolver."""
    if relay is not None:
        ignored = sorted(k for k in table.entries if not k.startswith("["))
        if ignored:
            _log.warning(
                "TLS policy: domain entries unused, all mail goes to the smart host",
                keys=", ".join(ignored),
            )
    elif any(k.startswith("[") for k in table.entries):
        _log.info("TLS policy: [host] entries apply to address-literal recipients only here")
    dane_keys = sorted(k for k, v in table.entries.items() if v.level.dane)
    if dane_keys and not resolver.trusts_ad:
        _log.warning(
            "TLS policy: DANE levels without a trusted validating resolver (dns.trust_ad):"
            " dane is may, dane-only defers everything",
            keys=", ".join(dane_keys),
        )


def runner_for(services: Services, *, resolver: Resolver | None = None) -> QueueRunner:
    """The runner of a server, configured from ``[queue]`` and ``[dns]``."""
    config = services.config
    queue = config.queue
    client = SmtpClientSettings(
        hostname=config.server.hostname,
        greeting_timeout=queue.greeting_timeout,
        mail_timeout=queue.mail_timeout,
        rcpt_timeout=queue.rcpt_timeout,
        data_init_timeout=queue.data_init_timeout,
        data_block_timeout=queue.data_block_timeout,
        data_end_timeout=queue.data_end_timeout,
        command_timeout=queue.command_timeout,
    )
    relay = None
    if queue.smarthost:
        host, port = parse_hostport(queue.smarthost, queue.remote_port)
        credentials = (
            (queue.smarthost_username, queue.smarthost_password)
            if queue.smarthost_username
            else None
        )
        context = verifying_context() if queue.smarthost_verify_tls else opportunistic_context()
        relay = Relay(
            host,
            port,
            SessionSettings(
                client=client,
                connect_timeout=queue.connect_timeout,
                source_addresses=queue.source_addresses,
                tls=context,
                require_tls=credentials is not None,
                credentials=credentials,
                skip_5xx_greeting=queue.skip_5xx_greeting,
            ),
        )
    resolver = resolver or DnsResolver(
        nameserver=config.dns.nameserver,
        timeout=config.dns.timeout,
        trust_ad=config.dns.trust_ad,
    )
    mta_sts = None
    cafile = queue.mta_sts_ca_bundle
    cafile_path = str(config.resolve_path(cafile)) if cafile else None
    try:
        verified_tls = chain_verifying_context(cafile_path)
        if queue.mta_sts:
            mta_sts = mta_sts_for(
                resolver,
                store=services.store,
                cafile=cafile_path,
                fetch_timeout=queue.mta_sts_fetch_timeout,
                max_policy_size=queue.mta_sts_max_policy_size,
                refresh=queue.mta_sts_refresh,
                policy_port=queue.mta_sts_port,
                shared=is_postgresql(config.store.url),
            )
    except OSError as exc:  # a missing file, or no certificate in it (ssl.SSLError)
        raise ConfigError("queue.mta_sts_ca_bundle", f"{cafile}: {exc}") from None
    tls_policy = PolicyTable.parse(queue.tls_policy)
    _check_tls_policy(tls_policy, relay, resolver)
    return QueueRunner(
        store=services.store,
        router=services.router,
        resolver=resolver,
        policy=RetryPolicy(
            schedule=queue.retry_schedule,
            lifetime=queue.lifetime,
            bounce_lifetime=queue.bounce_lifetime,
            delay_warning=queue.delay_warning,
        ),
        hostname=config.server.hostname,
        wakeup=services.queue_wakeup,
        remote_port=queue.remote_port,
        session=SessionSettings(
            client=client,
            connect_timeout=queue.connect_timeout,
            source_addresses=queue.source_addresses,
            tls=opportunistic_context(),
            skip_5xx_greeting=queue.skip_5xx_greeting,
        ),
        relay=relay,
        mta_sts=mta_sts,
        dane=_dane_enabled(queue.dane, resolver),
        tls_policy=tls_policy,
        verified_tls=verified_tls,
        tls_reports=config.tls_reports.enabled,
        limits=RunnerLimits(
            concurrency=queue.concurrency,
            per_domain=queue.per_domain,
            poll_interval=queue.poll_interval,
            lease=queue.lease,
            bounce_original_limit=queue.bounce_original_limit,
            linger=queue.session_linger,
        ),
        local_delivery=LocalDelivery.of(services),
        metrics=services.metrics,
    )
