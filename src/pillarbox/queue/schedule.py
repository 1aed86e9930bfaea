"""When to try a queued recipient again, and what an attempt's reply makes of it — pure logic.

Implementation notes (RFC 5321 §4.5.4.1, RFC 3461 §5.2, RFC 3464 §2.3.3):

- A reply classifies one recipient: 2xx delivered, 5xx failed for good, anything else (4xx, a
  connection that failed, a timeout) deferred. RFC 5321 §4.5.4.1 suggests 30 minutes between
  attempts and 4–5 days before giving up; :class:`RetryPolicy` takes the intervals from
  ``queue.retry_schedule`` (the default starts faster and backs off to hours, as Postfix does,
  so a greylisting server sees the second attempt soon) and the limit from ``queue.lifetime``.
- The ``n``-th failed attempt waits ``schedule[n-1]`` seconds (the last interval repeats). The
  attempt after the lifetime ends is not skipped: the next attempt is moved to the moment of
  expiry, so every message gets its last chance, then bounces with X.4.7 "delivery time expired"
  (RFC 3463) and the last reply as the diagnostic.
- A message with the null reverse-path (a report: nobody is told when it fails, RFC 3461
  §6.1) ends at ``queue.bounce_lifetime`` instead when that is shorter (Postfix's
  ``bounce_queue_lifetime``): reports to a dead address otherwise sit in the queue for the
  full lifetime. 0 gives it one attempt.
- DSNs follow the recipient's NOTIFY (RFC 3461 §4.1): none for NEVER; failures unless NOTIFY
  was given without FAILURE; one delay warning (when ``delay_warning`` is set) unless NOTIFY was
  given without DELAY; success reports only when asked for with SUCCESS. A message with the null
  reverse-path never causes a report (RFC 5321 §4.5.5, RFC 3461 §6.1): no bounce loops.
- Nothing reads the clock: every function takes ``now``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from pillarbox.mail.dsn import Action
from pillarbox.smtp.replies import Reply
from pillarbox.store.types import RecipientState

#: RFC 3463 X.4.7: the message stayed in the queue too long.
EXPIRED_STATUS = "4.4.7"
#: Status for a failure that carried no enhanced code (RFC 3461 §6.3 (g)).
GENERIC_PERMANENT = "5.0.0"
GENERIC_TRANSIENT = "4.0.0"


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """``queue.retry_schedule``, ``queue.lifetime``, ``queue.bounce_lifetime`` and
    ``queue.delay_warning``, in seconds."""

    schedule: tuple[float, ...]
    lifetime: float
    #: For messages with the null reverse-path, when shorter than ``lifetime``; None: as it.
    bounce_lifetime: float | None = None
    #: 0: never send a delay warning.
    delay_warning: float = 0.0

    def __post_init__(self) -> None:
        if not self.schedule or any(s <= 0 for s in self.schedule):
            raise ValueError("the retry schedule needs positive intervals")

    def expires(self, queued_at: datetime, *, null_sender: bool = False) -> datetime:
        lifetime = self.lifetime
        if null_sender and self.bounce_lifetime is not None:
            lifetime = min(lifetime, self.bounce_lifetime)
        return queued_at + timedelta(seconds=lifetime)

    def next_attempt(
        self, *, queued_at: datetime, attempts: int, now: datetime, null_sender: bool = False
    ) -> datetime | None:
        """When to try again after ``attempts`` failed attempts (this one included); None when
        the lifetime (of a message with the null reverse-path, ``null_sender``) is over and
        the recipient must bounce."""
        expires = self.expires(queued_at, null_sender=null_sender)
        if now >= expires:
            return None
        interval = self.schedule[min(max(attempts, 1), len(self.schedule)) - 1]
        return min(now + timedelta(seconds=interval), expires)

    def delay_warning_due(self, *, queued_at: datetime, now: datetime) -> bool:
        return self.delay_warning > 0 and now - queued_at >= timedelta(seconds=self.delay_warning)


def classify(reply: Reply) -> RecipientState:
    """RFC 5321 §4.2.1: 2xx positive completion, 5xx permanent, the rest transient."""
    if 200 <= reply.code < 300:
        return RecipientState.DELIVERED
    if reply.code >= 500:
        return RecipientState.FAILED
    return RecipientState.DEFERRED


def status_code(reply: Reply) -> str:
    """The RFC 3463 status a report gives for ``reply``."""
    if reply.enhanced is not None:
        return reply.enhanced
    if reply.code >= 500:
        return GENERIC_PERMANENT
    if reply.code >= 400:
        return GENERIC_TRANSIENT
    return "2.0.0"


def reply_text(reply: Reply) -> str:
    """A reply on one line, as the DSN ``Diagnostic-Code`` and the queue listing show it."""
    parts = [str(reply.code)]
    if reply.enhanced:
        parts.append(reply.enhanced)
    parts.append(" ".join(reply.lines))
    return " ".join(parts)


def described(reply: Reply, host: str | None) -> str:
    """``host: reply`` as ``queue show`` keeps it (``last_reply``), the host named once: the
    texts of the replies never name the host they are about (its name is ``host``, the
    report's Remote-MTA); without a host, the reply alone."""
    return f"{host}: {reply_text(reply)}" if host else reply_text(reply)


class Notify(enum.Enum):
    """Which kinds of report a recipient wants, from its NOTIFY set (RFC 3461 §4.1)."""

    FAILURE = "FAILURE"
    DELAY = "DELAY"
    SUCCESS = "SUCCESS"


def wants(notify: frozenset[str], kind: Notify) -> bool:
    """Empty NOTIFY is the default: failures and (at our discretion) delays, no successes."""
    if "NEVER" in notify:
        return False
    if not notify:
        return kind is not Notify.SUCCESS
    return kind.value in notify


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What one attempt at one recipient came to, ready for the store and for a report."""

    state: RecipientState
    #: The reply as stored (``last_reply``) and shown by ``queue show``.
    reply: Reply
    #: The host that answered; None for a local delivery or a failure before any connection.
    host: str | None
    next_attempt: datetime | None = None
    #: The report this attempt causes for the recipient, if any.
    report: Action | None = None
    #: RFC 3463 status for the report.
    status: str = ""
    #: Set when this attempt sends the one delay warning.
    delay_notified: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """The facts of one attempt at one recipient that decide its verdict."""

    reply: Reply
    host: str | None
    attempts_before: int
    queued_at: datetime
    notify: frozenset[str]
    delay_notified: bool
    null_sender: bool
    #: The receiving server did not offer DSN, so it will send no success report (RFC 3461
    #: §5.2.2: we issue a "relayed" one); False for local deliveries.
    relayed: bool = False


def decide(attempt: Attempt, policy: RetryPolicy, now: datetime) -> Verdict:
    """Classify an attempt's reply, schedule a retry or expire, and pick the report."""
    state = classify(attempt.reply)
    reporting = not attempt.null_sender
    host = attempt.host
    if state is RecipientState.DELIVERED:
        report = None
        if reporting and wants(attempt.notify, Notify.SUCCESS):
            report = Action.RELAYED if attempt.relayed else Action.DELIVERED
        return Verdict(state=state, reply=attempt.reply, host=host, report=report, status="2.0.0")
    if state is RecipientState.FAILED:
        report = Action.FAILED if reporting and wants(attempt.notify, Notify.FAILURE) else None
        return Verdict(
            state=state,
            reply=attempt.reply,
            host=host,
            report=report,
            status=status_code(attempt.reply),
        )
    retry = policy.next_attempt(
        queued_at=attempt.queued_at,
        attempts=attempt.attempts_before + 1,
        now=now,
        null_sender=attempt.null_sender,
    )
    if retry is None:
        report = Action.FAILED if reporting and wants(attempt.notify, Notify.FAILURE) else None
        return Verdict(
            state=RecipientState.FAILED,
            reply=attempt.reply,
            host=host,
            report=report,
            status=EXPIRED_STATUS,
        )
    warn = (
        reporting
        and not attempt.delay_notified
        and wants(attempt.notify, Notify.DELAY)
        and policy.delay_warning_due(queued_at=attempt.queued_at, now=now)
    )
    return Verdict(
        state=RecipientState.DEFERRED,
        reply=attempt.reply,
        host=host,
        next_attempt=retry,
        report=Action.DELAYED if warn else None,
        status=status_code(attempt.reply),
        delay_notified=warn,
    )
