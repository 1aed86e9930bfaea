"""Per-account outbound sending limits: what a compromised account or a runaway script may send.

Implementation notes:

- Three limits over a **sliding window** of 24 hours (:data:`WINDOW`), each from
  ``[submission_limits]`` unless the account has its own (``pillarbox user limits``, the admin
  API; 0 is unlimited): messages, recipients (each distinct address once per message), and
  **first-time recipients** — addresses the account never sent to before, which is what a
  spammer with stolen credentials sends to while the account's owner mostly writes to people
  they wrote to before (Mox's ``MaxFirstTimeRecipientsPerDay``).
- Checked **per recipient at RCPT** (RFC 6409 §6.2), after the recipient is known to be
  deliverable: the one that would pass a limit gets 451 4.7.1 (RFC 3463 §3.8 X.7.1; temporary
  like Mox's answer, where §6.2 suggests 550: the client may retry once the window has moved
  on); those accepted before it in the transaction
  stay accepted. A transaction that would exceed the message limit has every RCPT refused.
- Counted **only when the message is accepted** (250 after DATA): :meth:`SendingLimiter.record`
  runs at the end of :meth:`pillarbox.queue.intake.Intake.accept`; a refused DATA, an RSET or a
  dropped connection counts nothing.
- **Cost**: one indexed read per transaction (:meth:`~pillarbox.store.interface.Store.
  sending_usage`, with the account's own limits), taken at its first RCPT. Whether a recipient
  is known is asked of the store only when it could matter — when counting it as new would
  pass the first-time limit — and then for every recipient of the transaction not asked yet,
  so the count stays exact. One write per accepted message.
- **Memory**: the store keeps the account's messages of the window (pruned past it at each
  write) and every recipient it sent to with the first and last time, for
  ``recipient_memory_days`` after the last message to it: an address written to once a year
  stays known; one not written to for longer is first-time again.
- Concurrent transactions of one account each read the usage before the others commit, so the
  limits may be passed by what those transactions send at once (as in Mox): they bound a
  runaway, not a count to the message.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pillarbox.config import SubmissionLimitsSection
from pillarbox.errors import UserError
from pillarbox.observability.log import Log
from pillarbox.smtp import replies
from pillarbox.smtp.replies import Reply
from pillarbox.store.interface import Store
from pillarbox.store.types import Account, SendingLimits, SendingUsage

#: The sliding window the limits count over.
WINDOW = timedelta(hours=24)
#: Largest limit an account may be given (the store keeps them as 32-bit integers).
MAX_LIMIT = 2**31 - 1

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Limit(enum.Enum):
    """Which limit a recipient would pass; the value names it in replies and logs."""

    MESSAGES = "messages"
    RECIPIENTS = "recipients"
    FIRST_TIME = "first-time recipients"


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits in force for one account (0: unlimited)."""

    messages: int
    recipients: int
    first_time: int

    @classmethod
    def of(cls, defaults: SubmissionLimitsSection, own: SendingLimits) -> Limits:
        """The account's own limits where it has them, the configured defaults elsewhere."""
        return cls(
            defaults.messages_per_day if own.messages is None else own.messages,
            defaults.recipients_per_day if own.recipients is None else own.recipients,
            defaults.first_time_recipients_per_day if own.first_time is None else own.first_time,
        )

    def value(self, limit: Limit) -> int:
        match limit:
            case Limit.MESSAGES:
                return self.messages
            case Limit.RECIPIENTS:
                return self.recipients
            case Limit.FIRST_TIME:
                return self.first_time


def checked(limits: SendingLimits) -> SendingLimits:
    """``limits`` if each is the default (None), 0 (unlimited) or a count that fits."""
    for name in ("messages", "recipients", "first_time"):
        value = getattr(limits, name)
        if value is not None and not 0 <= value <= MAX_LIMIT:
            raise UserError(f"the {name} limit must be 0 (unlimited) to {MAX_LIMIT}")
    return limits


@dataclass(frozen=True, slots=True)
class SendingState:
    """An account's limits and what it sent in the last 24 hours (what an admin looks at)."""

    address: str
    #: Its own limits (None: the default).
    own: SendingLimits
    #: The limits in force (0: unlimited).
    limits: Limits
    usage: SendingUsage

    def as_json(self) -> dict[str, object]:
        def triple(messages: object, recipients: object, first_time: object) -> object:
            return {"messages": messages, "recipients": recipients, "first_time": first_time}

        own, limits, usage = self.own, self.limits, self.usage
        return {
            "address": self.address,
            "own": triple(own.messages, own.recipients, own.first_time),
            "limits": triple(limits.messages, limits.recipients, limits.first_time),
            "sent": triple(usage.messages, usage.recipients, usage.first_time),
        }


async def sending_state(
    store: Store, account: Account, defaults: SubmissionLimitsSection, now: datetime
) -> SendingState:
    usage = await store.sending_usage(account.id, now - WINDOW)
    return SendingState(account.address, usage.limits, Limits.of(defaults, usage.limits), usage)


def passes(limit: int, used: int, adding: int = 1) -> bool:
    """Whether ``adding`` more to ``used`` would go past ``limit`` (0: unlimited)."""
    return limit > 0 and used + adding > limit


def limit_reply(limit: Limit, value: int) -> Reply:
    """The 451 4.7.1 a recipient gets that would pass ``limit``."""
    return replies.SENDING_LIMIT.with_text(
        f"this account's limit of {limit.value} per 24 hours ({value}) is reached; try again later"
    )


class Allowance:
    """One transaction's check of an account's limits, recipient by recipient (see the module
    notes): made at MAIL, asked at each RCPT, dropped with the transaction."""

    def __init__(
        self,
        store: Store,
        account: Account,
        defaults: SubmissionLimitsSection,
        clock: Clock,
        log: Log,
    ) -> None:
        self._store = store
        self._account = account
        self._defaults = defaults
        self._clock = clock
        self._log = log
        self._usage: SendingUsage | None = None
        self._limits = Limits(0, 0, 0)
        #: Recipients admitted in this transaction (store keys), in order.
        self._admitted: list[str] = []
        #: Those of them the store was asked about, and which of those it knew.
        self._asked: set[str] = set()
        self._known: set[str] = set()
        self._warned = False

    @property
    def admitted(self) -> Sequence[str]:
        return self._admitted

    async def admit(self, address: str) -> Reply | None:
        """None if the transaction may add the recipient ``address`` (its store key, see
        :attr:`pillarbox.mail.address.Address.key`), which it then counts; else the reply
        refusing it."""
        if address in self._admitted:
            return None  # given twice: one recipient of the message
        usage = await self._read()
        limits = self._limits
        if passes(limits.messages, usage.messages):
            return self._refuse(Limit.MESSAGES, address)
        if passes(limits.recipients, usage.recipients + len(self._admitted)):
            return self._refuse(Limit.RECIPIENTS, address)
        if passes(limits.first_time, usage.first_time + self._new_count()):
            # It would pass if new: now ask the store about it and the others not asked yet.
            asking = [a for a in (*self._admitted, address) if a not in self._asked]
            self._known |= await self._store.known_recipients(self._account.id, asking)
            self._asked.update(asking)
            if address not in self._known and passes(
                limits.first_time, usage.first_time + self._new_count()
            ):
                return self._refuse(Limit.FIRST_TIME, address)
        self._admitted.append(address)
        return None

    def _new_count(self) -> int:
        """Admitted recipients that are, or may be, first-time (not known to be otherwise)."""
        return sum(1 for a in self._admitted if a not in self._known)

    async def _read(self) -> SendingUsage:
        if self._usage is None:
            since = self._clock() - WINDOW
            self._usage = await self._store.sending_usage(self._account.id, since)
            self._limits = Limits.of(self._defaults, self._usage.limits)
        return self._usage

    def _refuse(self, limit: Limit, address: str) -> Reply:
        value = self._limits.value(limit)
        # An admin wants to know, once per transaction (a client retrying each recipient
        # would otherwise repeat the line for every one).
        report = self._log.info if self._warned else self._log.warning
        report(
            "sending limit reached",
            account=self._account.address,
            limit=limit.name.lower(),
            allowed=value,
            rcpt=address,
        )
        self._warned = True
        return limit_reply(limit, value)


class SendingLimiter:
    """Makes each transaction's :class:`Allowance` and records what was sent."""

    def __init__(
        self, store: Store, settings: SubmissionLimitsSection, clock: Clock = utc_now
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._log = Log("sendlimits")

    def allowance(self, account: Account, log: Log | None = None) -> Allowance:
        """The limits of one transaction of ``account``; ``log`` (the session's, with its
        connection id) says when it hits one."""
        return Allowance(self._store, account, self._settings, self._clock, log or self._log)

    async def record(self, account: Account, recipients: Sequence[str]) -> None:
        """The account's message to ``recipients`` (store keys) was accepted: count it."""
        now = self._clock()
        await self._store.record_sending(
            account.id,
            recipients,
            now,
            window_start=now - WINDOW,
            memory_start=now - timedelta(days=self._settings.recipient_memory_days),
        )
