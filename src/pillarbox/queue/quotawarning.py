"""Quota warnings (Dovecot's ``quota_warning``): a message into an account's INBOX when a
delivery, an APPEND or a COPY takes its usage past one of ``[quota] warning_thresholds``.

Implementation notes:

- **Judged on the delivery's own figures.** :meth:`Store.deliver` returns, with each stored
  copy, the account's usage right after it, read in the delivery's transaction
  (:attr:`DeliveryResult.usage`, with the level last warned of): checking costs no store
  round trip, and nothing at all for an account without a quota. The store is written only
  when the level changes (a crossing, or usage found lower than the level warned of).
- **Once per crossing.** The level is the highest threshold usage has reached (bytes or
  messages, whichever is fuller). A warning is due when a delivery's level is above both the
  level stored and the level before this delivery (usage minus its own copies): so usage
  that fell below a threshold (an expunge) and rose past it again warns again, even when no
  delivery saw it low. The durable level (:meth:`Store.set_quota_warned`, compare-and-set)
  makes deliveries racing past one threshold send one warning; deliveries are ordered by
  their transactions, so only one of them starts below the threshold.
- **Not refused by the quota it warns about.** The warning is stored with
  ``beyond_quota``: a full mailbox still gets it. It is stored directly (never through
  Sieve, forwarding or vacation: it is about this mailbox), with the null ``Return-Path``,
  ``From: postmaster@<the account's domain>`` and ``Auto-Submitted: auto-generated``
  (RFC 3834 §5), so no vacation responder answers it.
- **The delivery stands** whatever happens to its warning: a warning the store fails to keep
  is logged (``quota warning not stored``), never turned into a failure of the message that
  was stored already (the sender would send it again).
- **Every way mail is added checks**: final delivery (intake, queued retries:
  :mod:`.filtering`) through :meth:`QuotaWarnings.after_delivery`; an IMAP APPEND, COPY or
  MOVE and the webmail's saves (drafts, Sent copies, moves) through
  :meth:`QuotaWarnings.after_saving`, on the usage :meth:`Store.append` and
  ``copy_messages`` return from their own transactions (:class:`Appended`,
  :class:`Copied`), so these cost no round trip either. One rule (:func:`quota_step`)
  for all. The account is read only when a warning is due.
- A warning never fails the APPEND or COPY it follows: as for a delivery, a store failure
  is logged and the save stands.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from prometheus_client import Counter

from pillarbox.errors import NotFound, StorageError
from pillarbox.mail import trace
from pillarbox.mail.parse import parse_message
from pillarbox.observability.log import Log
from pillarbox.services import Services
from pillarbox.sizes import human_size
from pillarbox.store.interface import Store
from pillarbox.store.types import (
    Account,
    DeliveryResult,
    DeliveryStatus,
    DeliveryTarget,
    QuotaUsage,
)

_log = Log("quota")


def reached(bytes_used: int, messages: int, usage: QuotaUsage, thresholds: Sequence[int]) -> int:
    """The highest of ``thresholds`` (percentages) that ``bytes_used`` or ``messages`` reach
    of ``usage``'s limits; 0 for none (or no limits)."""
    level = 0
    for percent in thresholds:
        if percent <= level:
            continue
        if (usage.bytes_limit is not None and bytes_used * 100 >= percent * usage.bytes_limit) or (
            usage.messages_limit is not None and messages * 100 >= percent * usage.messages_limit
        ):
            level = percent
    return level


@dataclass(frozen=True, slots=True)
class QuotaStep:
    """What a delivery changes: the level to keep, and whether to warn of it."""

    level: int
    warn: bool


def quota_step(
    after: QuotaUsage, added_bytes: int, added_messages: int, thresholds: Sequence[int]
) -> QuotaStep | None:
    """The step due after a delivery that added ``added_bytes`` in ``added_messages`` and left
    usage at ``after`` (see the module notes); None when nothing changes."""
    level = reached(after.bytes_used, after.messages, after, thresholds)
    before = reached(
        after.bytes_used - added_bytes, after.messages - added_messages, after, thresholds
    )
    if level > min(after.warned, before):
        return QuotaStep(level, warn=True)
    if level != after.warned:
        return QuotaStep(level, warn=False)
    return None


def usage_figures(usage: QuotaUsage) -> list[str]:
    """The account's usage, one line per limit, for the warning's text."""
    lines = []
    if usage.bytes_limit is not None:
        lines.append(
            f"  size:     {human_size(usage.bytes_used)} of {human_size(usage.bytes_limit)} "
            f"({usage.bytes_percent}%)"
        )
    if usage.messages_limit is not None:
        lines.append(
            f"  messages: {usage.messages} of {usage.messages_limit} ({usage.messages_percent}%)"
        )
    return lines


def warning_message(account: Account, usage: QuotaUsage, level: int, *, now: datetime) -> bytes:
    """The warning for ``account`` at ``level`` percent, CRLF line endings."""
    message = EmailMessage(policy=SMTP)
    message["From"] = f"Postmaster <postmaster@{account.domain}>"
    message["To"] = account.address
    message["Subject"] = f"Your mailbox is {level}% full"
    message["Date"] = format_datetime(now)
    message["Message-ID"] = trace.make_message_id(secrets.token_hex(12), account.domain)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834 §5: not to be answered
    text = "\n".join(
        [
            f"Your mailbox {account.address} has reached {level}% of its quota:",
            "",
            *usage_figures(usage),
            "",
            "When it is full, new mail for you cannot be delivered: the sending servers",
            "retry for a while, then return the messages to their senders.",
            "",
            "To make room, delete messages you no longer need (large ones first), and empty",
            "the Trash and Junk folders: deleted messages count until they are gone from",
            "there too. If you need more room, ask your administrator for a larger quota.",
            "",
            "You get this warning once each time your mailbox fills past this mark.",
            "",
        ]
    )
    message.set_content(text, cte="quoted-printable")
    return message.as_bytes()


class QuotaWarnings:
    """Checks each delivery's results and stores the warnings due (see the module notes)."""

    def __init__(
        self, store: Store, thresholds: Sequence[int], *, sent: Counter | None = None
    ) -> None:
        self._store = store
        self._thresholds = tuple(sorted(thresholds))
        #: ``pillarbox_quota_warnings`` (docs/metrics.md), when the server counts.
        self._sent = sent

    @classmethod
    def of(cls, services: Services) -> QuotaWarnings:
        """The server's, from ``[quota]``, counted in its metrics."""
        return cls(
            services.store,
            services.config.quota.warning_thresholds,
            sent=services.metrics.quota_warnings,
        )

    async def after_delivery(self, account: Account, results: Sequence[DeliveryResult]) -> bool:
        """Warn ``account`` if its copies in ``results`` took it past a threshold; whether a
        warning was stored."""
        stored = [r for r in results if r.status is DeliveryStatus.STORED and r.usage is not None]
        if not stored:
            return False
        added = sum(r.record.size for r in stored if r.record is not None)
        return await self._judge(account.id, account, stored[-1].usage, added, len(stored))

    async def after_saving(
        self, account_id: int, usage: QuotaUsage | None, size: int, count: int
    ) -> bool:
        """Warn the account if ``count`` messages of ``size`` octets, saved by an APPEND, COPY,
        MOVE or REPLACE (IMAP or the webmail) that left its usage at ``usage``, took it past
        a threshold; whether a warning was stored. ``usage`` None (nothing added): nothing. A
        replacement within the account adds octets only (``count`` 0)."""
        return await self._judge(account_id, None, usage, size, count)

    async def _judge(
        self,
        account_id: int,
        account: Account | None,
        after: QuotaUsage | None,
        added: int,
        count: int,
    ) -> bool:
        if after is None or (count <= 0 and added <= 0) or not self._thresholds:
            return False
        if after.bytes_limit is None and after.messages_limit is None:
            return False
        step = quota_step(after, added, count, self._thresholds)
        if step is None:
            return False
        try:
            if step.level != after.warned and not await self._store.set_quota_warned(
                account_id, after.warned, step.level
            ):
                return False  # another writer moved the level first: it warns, if one is due
            if not step.warn:
                return False
            account = account or await self._store.get_account_by_id(account_id)
            if account is None:
                return False  # removed meanwhile
            raw = warning_message(account, after, step.level, now=datetime.now(UTC))
            copy = trace.return_path("") + trace.delivered_to(account.address) + raw
            target = DeliveryTarget(account.id, beyond_quota=True)
            [result] = await self._store.deliver(copy, parse_message(copy), [target])
        except (StorageError, NotFound) as exc:
            # What called is stored: failing a delivery now would have it sent again, an
            # APPEND would be retried and stored twice.
            _log.error("quota warning not stored", account=account_id, error=str(exc))
            return False
        _log.info(
            "quota warning", account=account.address, level=step.level, status=result.status.value
        )
        if result.status is not DeliveryStatus.STORED:
            return False  # the INBOX is gone: nothing to warn in
        if self._sent is not None:
            self._sent.inc()
        return True
