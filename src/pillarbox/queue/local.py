"""Final delivery of queued mail to hosted mailboxes: recipients whose mailbox was full when the
message arrived (intake queues them), and delivery reports addressed to our own users.

Copies for accounts go through their Sieve scripts (:mod:`.filtering`), as at intake, with the
inbound policy's decision intake kept on the queued recipient (``QueuedRecipient.filing``: the
mailbox, spam or not, the ``X-Pillarbox-Spam`` and ``Authentication-Results`` fields) — from
the store, never from the message, whose fields any sender can write. The copy
gets the same trace fields as intake's direct delivery (``Return-Path``,
``Delivered-To``, RFC 5321 §4.4, RFC 9228) and goes through :meth:`Store.deliver`, fsync'd
before the reply. An address that now resolves to several accounts (an alias) is delivered to
each; the reply is the first failure, so a full mailbox is retried — at the cost of a second
copy for the others, which is why intake queues account addresses, never aliases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pillarbox.blocking import run_sized
from pillarbox.errors import InvalidName
from pillarbox.mail import trace
from pillarbox.mail.address import parse_address
from pillarbox.mail.headers import ScannedFields
from pillarbox.mail.model import MessageInfo
from pillarbox.mail.parse import parse_message, parse_message_fields, prepend_fields
from pillarbox.queue.routing import Router
from pillarbox.smtp import replies
from pillarbox.smtp.replies import Reply
from pillarbox.store.interface import Store
from pillarbox.store.types import DeliveryStatus, DeliveryTarget, Filing

if TYPE_CHECKING:
    from pillarbox.queue.filtering import LocalDelivery

DELIVERED = Reply(250, "2.0.0", "delivered to the mailbox")
#: The target mailbox vanished between resolution and storage (RFC 3463 X.2.0): retry.
NO_MAILBOX = Reply(450, "4.2.0", "mailbox not available")

_STATUS_REPLIES = {
    DeliveryStatus.OVER_QUOTA: replies.MAILBOX_FULL,
    DeliveryStatus.NO_MAILBOX: NO_MAILBOX,
}


async def parse(raw: bytes) -> MessageInfo:
    """Parse once at ingest (intake's and this module's), off the loop when the message is
    large."""
    return await run_sized(len(raw), parse_message, raw)


async def parse_judged(raw: bytes) -> tuple[MessageInfo, ScannedFields]:
    """:func:`parse`, and the header's fields as it read them, for the inbound policy."""
    return await run_sized(len(raw), parse_message_fields, raw)


async def parse_with_fields(fields: bytes, raw: bytes, info: MessageInfo) -> MessageInfo:
    """The parse of ``fields + raw`` given ``info``, the parse of ``raw``: derived from it
    when :func:`~pillarbox.mail.parse.prepend_fields` can be exact (delivery's trace and
    policy fields on a message the policy parsed), else parsed whole."""
    derived = await run_sized(len(raw), prepend_fields, info, fields)
    return derived if derived is not None else await parse(fields + raw)


async def deliver_local(
    store: Store,
    router: Router,
    sender: str,
    address: str,
    raw: bytes,
    *,
    delivery: LocalDelivery | None = None,
    filing: Filing | None = None,
    requiretls: bool = False,
) -> Reply:
    """Store ``raw`` for the hosted ``address``; the reply the queue records for it.

    With ``delivery``, each account's copy takes the same path as at intake (its Sieve
    script: :mod:`.filtering`; ``filing`` the policy's decision made then, if any); without,
    straight to INBOX — for the reports we write ourselves (DSNs, auto-replies), which no
    script should bounce around again. ``requiretls``: the message's RFC 8689 tag, kept by
    what its script redirects."""
    try:
        parsed = parse_address(address)
    except InvalidName:
        return replies.BAD_RECIPIENT_SYNTAX
    resolution = await router.resolve(parsed)
    if not resolution.local:
        return replies.MAILBOX_UNKNOWN
    for recipient in resolution.local:
        if delivery is not None:
            status = await delivery.deliver(
                sender, recipient, b"", raw, None, filing, requiretls=requiretls
            )
            if status is not DeliveryStatus.STORED:
                return _STATUS_REPLIES[status]
            continue
        copy = trace.return_path(sender) + trace.delivered_to(recipient.account.address) + raw
        info = await parse(copy)
        [result] = await store.deliver(copy, info, [DeliveryTarget(recipient.account.id)])
        if result.status is not DeliveryStatus.STORED:
            return _STATUS_REPLIES[result.status]
    return DELIVERED
