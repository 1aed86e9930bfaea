"""Delivery reports (bounces, delay warnings, success reports) for queued messages: built with
:mod:`pillarbox.mail.dsn` and sent back to the message's envelope sender.

Implementation notes:

- The report goes out with the null reverse-path (RFC 5321 §4.5.5), from
  ``MAILER-DAEMON@<our host name>``, so it can never cause another report: a report that
  cannot be delivered is dropped (and logged). A message whose own sender is null gets no
  report at all — :func:`pillarbox.queue.schedule.decide` never asks for one.
- A sender at a hosted domain gets the report in their INBOX at once; when that cannot be done
  now (mailbox full) it is queued for a local retry like any other local recipient. Other
  senders get it through the queue, by MX.
- **REQUIRETLS** (RFC 8689 §5): a report on a message received with REQUIRETLS carries the
  original's header only, whatever RET asked (RET=HDRS, RET=FULL disregarded), and is queued
  with the REQUIRETLS tag itself, so the runner gives the parameter to every next hop offering
  it; with its null reverse-path it is not held to §4.2.1 and still goes to one that does not
  (§5: such a report SHOULD NOT be discarded).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from datetime import datetime

from pillarbox.errors import InvalidName
from pillarbox.mail import trace
from pillarbox.mail.address import parse_address
from pillarbox.mail.dsn import (
    Action,
    DeliveryReport,
    RecipientReport,
    ReportMessage,
    ReturnContent,
    build_report,
)
from pillarbox.observability.log import Log
from pillarbox.queue.local import deliver_local
from pillarbox.queue.routing import Router
from pillarbox.queue.schedule import classify
from pillarbox.store.interface import Store
from pillarbox.store.types import NewQueueRecipient, QueuedMessage, RecipientState

MAILER_DAEMON = "MAILER-DAEMON"

_log = Log("bounce")


def report_for(
    message: QueuedMessage,
    raw: bytes,
    recipients: Sequence[RecipientReport],
    *,
    hostname: str,
    now: datetime,
    max_original: int,
) -> bytes:
    """The DSN message for ``recipients`` of ``message`` (at least one)."""
    report = DeliveryReport(
        reporting_mta=hostname,
        arrival_date=message.queued_at,
        recipients=tuple(recipients),
        envid=message.envid,
    )
    ret = {"FULL": ReturnContent.FULL, "HDRS": ReturnContent.HEADERS}.get(message.ret or "")
    if message.requiretls:
        ret = ReturnContent.HEADERS  # RFC 8689 §5: as if RET=HDRS, RET=FULL disregarded
    return _built(report, raw, message.sender, hostname, now, max_original, ret)


#: The longest Sieve reject reason a refusal report carries, in characters.
MAX_REASON = 1000


def refusal_for(
    raw: bytes,
    sender: str,
    recipient: str,
    reason: str,
    *,
    hostname: str,
    now: datetime,
    max_original: int,
) -> bytes:
    """The DSN for a message ``recipient``'s Sieve script refused (RFC 5429 §2.1.2: a DSN or
    an MDN; ours is a DSN, Action failed, 5.7.1, the reason as its diagnostic), carrying the
    refused message's header only: a refusal need not return what was refused."""
    text = " ".join(reason.split())[:MAX_REASON] or "rejected"
    entry = RecipientReport(
        final_recipient=recipient,
        action=Action.FAILED,
        status="5.7.1",
        diagnostic=f"550 5.7.1 {text}",
        last_attempt=now,
    )
    report = DeliveryReport(reporting_mta=hostname, arrival_date=now, recipients=(entry,))
    return _built(report, raw, sender, hostname, now, max_original, ReturnContent.HEADERS)


def _built(
    report: DeliveryReport,
    raw: bytes,
    sender: str,
    hostname: str,
    now: datetime,
    max_original: int,
    ret: ReturnContent | None,
) -> bytes:
    header = ReportMessage(
        from_address=f"{MAILER_DAEMON}@{hostname}",
        to_address=sender,
        date=now,
        message_id=trace.make_message_id(secrets.token_hex(12), hostname),
        boundary_seed=f"pb-report-{secrets.token_hex(8)}",
        max_original=max_original,
    )
    return build_report(report, header, raw, ret=ret)


async def send_report(
    store: Store,
    router: Router,
    wakeup: asyncio.Event,
    report: bytes,
    to: str,
    *,
    requiretls: bool = False,
    sender: str = "",
) -> None:
    """Deliver or queue ``report`` for ``to`` with the null sender (see the module notes),
    or ``sender`` when the message is one that names another (a Sieve notification, RFC 5436
    §2.7); ``requiretls``: the report is on a REQUIRETLS message and is queued with the tag
    (RFC 8689 §5)."""
    try:
        address = parse_address(to)
    except InvalidName:
        _log.warning("report dropped: sender address unusable", to=to)
        return
    if not address.is_literal and await router.is_hosted(address.domain):
        reply = await deliver_local(store, router, sender, address.normalised, report)
        if reply.is_positive:
            _log.info("report delivered", to=to)
            return
        if classify(reply) is RecipientState.FAILED:
            _log.warning("report dropped: no such local sender", to=to, reply=reply.code)
            return
    await store.enqueue(
        sender, report, [NewQueueRecipient(address.normalised)], requiretls=requiretls
    )
    wakeup.set()
    _log.info("report queued", to=to, requiretls=requiretls)
