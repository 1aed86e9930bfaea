"""Sieve notifications by mail (RFC 5435 ``notify`` with the mailto method, RFC 5436): a new
message about the one delivered, sent through the queue as auto-replies are.

Implementation notes (the rules are also in docs/sieve.md):

- **When none is sent** (:func:`reason_not_to_notify`): the triggering message has
  ``Auto-Submitted`` other than ``no`` (RFC 5436 §2.7 SHOULD NOT: a notification about a
  notification, a bounce or an auto-reply is how loops start); it was judged spam (as a
  redirect of spam is never done: a notification would be the spammer's ping). A message
  from the null sender does notify (§2.7 MUST).
- **Recipients**: the URI's addresses (its path, ``to`` and ``cc``, RFC 5436 §2.7), already
  bounded and collapsed by the run (``sieve.max_notify_recipients`` per notify,
  ``sieve.max_notifications`` per run); the account's own address and the RCPT addresses
  that reached it are dropped, logged — a notification about a message to an address, sent
  to that same address, would be the loop §2.7 asks us to avoid.
- **The message** (RFC 5436 §2.7): ``Auto-Submitted: auto-notified`` with the
  ``owner-email`` parameter (§2.7.1), first; ``From`` the ``:from`` address when the account
  may send as it (RFC 5435 §3.3: others are ignored, logged), else the account; ``To`` and
  ``Cc`` as the URI has them; ``Subject`` ``:message``, else the URI's ``subject``, else the
  triggering message's; the URI's ``body``, else a short note of the triggering message's
  From, Subject and Date (never its body: §5 warns that a notification is a forward);
  ``Importance: high``/``low`` for ``:importance`` 1/3 (§2.4); the URI's other fields, minus
  the unsafe ones (:data:`pillarbox.sieve.notify.IGNORED_FIELDS`); a fresh ``Date`` and
  ``Message-ID``. DKIM-signed like an auto-reply.
- **Envelope sender** (§2.7): null when the triggering message's was, else the From
  address. Each recipient gets the message through :func:`pillarbox.queue.bounce.
  send_report`: straight into the mailbox of a local recipient (unfiltered, as auto-replies
  are), else queued; the queue retries the submission, the notification is never made again
  (§2.7 MUST NOT resubmit). About a message received with REQUIRETLS, the notification is
  queued with the tag (RFC 8689 §6: a mediator's reoriginated message keeps the sender's TLS
  requirement); with a non-null envelope sender it then goes only to hosts §4.2.1 accepts.
  About one marked ``TLS-Required: No``, it is marked so (§6, the other way).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from pillarbox.mail import trace
from pillarbox.mail.decode import printable
from pillarbox.observability.log import Log
from pillarbox.queue import bounce
from pillarbox.queue.routing import Router
from pillarbox.queue.signing import sign_outbound
from pillarbox.queue.vacation import Incoming, account_from
from pillarbox.sieve import Notify, editheader
from pillarbox.store.interface import Store
from pillarbox.store.types import Account

#: RFC 5436 §2.4 lets :importance set a header; Importance (RFC 2156 §5.3.4) has these.
IMPORTANCE_VALUES = {1: "high", 3: "low"}

_log = Log("sieve")


def reason_not_to_notify(message: Incoming, *, spam: bool) -> str | None:
    """Why ``message`` triggers no notification, or None (see the notes)."""
    if any(v.lower() != "no" for v in message.values("auto-submitted")):
        return "auto-submitted"
    if spam:
        return "judged spam"
    return None


def compose(
    action: Notify,
    message: Incoming,
    account: Account,
    *,
    sender: str,
    now: datetime,
    max_field_size: int,
) -> bytes:
    """The notification about ``message`` (see the notes); ``sender`` is its From address,
    "" for the account's own (with its display name). The URI's fields are written as
    ``addheader`` writes one (RFC 2047 words, folded, line breaks as spaces), never parsed
    as structured fields; the run checked them against ``max_field_size`` (the same
    ``sieve.max_header_size``), so they fit."""
    out = EmailMessage(policy=SMTP)
    own = account.address
    # RFC 5436 §2.7.1: a trace field, with the owner's address as the parameter.
    out["Auto-Submitted"] = f'auto-notified; owner-email="{own}"'
    out["From"] = sender or account_from(account)
    mailto = action.mailto
    if mailto.to:
        out["To"] = ", ".join(mailto.to)
    if mailto.cc:
        out["Cc"] = ", ".join(mailto.cc)
    original = message.values("subject")
    subject = action.message if action.message is not None else mailto.subject
    out["Subject"] = printable(subject if subject is not None else (original or [""])[0])
    out["Date"] = format_datetime(now)
    out["Message-ID"] = trace.make_message_id(secrets.token_hex(12), account.domain)
    if action.importance in IMPORTANCE_VALUES:
        out["Importance"] = IMPORTANCE_VALUES[action.importance]
    if message.tls_optional and not any(n.lower() == "tls-required" for n, _ in mailto.fields):
        out["TLS-Required"] = "No"  # RFC 8689 §6, unless the URI sets it (module notes)
    body = mailto.body
    if body is None:
        summary = [
            f"{name}: {printable(values[0])}"
            for name in ("From", "Subject", "Date")
            if (values := message.values(name.lower()))
        ]
        body = "\n".join(["A new message arrived for " + own + ".", "", *summary])
    out.set_content(body.replace("\r\n", "\n"), cte="quoted-printable")
    head, _, content = out.as_bytes().partition(b"\r\n\r\n")
    extra = b""
    for name, value in mailto.fields:
        # RFC 5436 §2.7 suggests the first letter of a URI field's name in capitals.
        field = editheader.new_field(name[:1].upper() + name[1:], value, max_field_size)
        extra += field.name.encode("ascii") + b":" + field.value + b"\r\n"
    return head + b"\r\n" + extra + b"\r\n" + content


async def send(
    store: Store,
    router: Router,
    wakeup: asyncio.Event,
    action: Notify,
    message: Incoming,
    account: Account,
    *,
    own: Sequence[str],
    sender: str,
    spam: bool,
    now: datetime,
    max_field_size: int,
) -> bytes | None:
    """Send ``action``'s notification about ``message`` (see the notes); the notification as
    sent, or None when none was. ``own`` are the addresses that reached the account (with
    its own), ``sender`` an accepted ``:from`` or ""."""
    reason = reason_not_to_notify(message, spam=spam)
    if reason is not None:
        _log.info("sieve notify not sent", account=account.address, reason=reason)
        return None
    mine = {account.address.lower(), *(a.lower() for a in own)}
    recipients = [r for r in action.recipients if r.lower() not in mine]
    if len(recipients) < len(action.recipients):
        _log.info("sieve notify: not to the account's own address", account=account.address)
    if not recipients:
        return None
    notification = compose(
        action, message, account, sender=sender, now=now, max_field_size=max_field_size
    )
    raw = await sign_outbound(store, notification)
    # RFC 5436 §2.7: null after a null sender (no loop of reports), else the author.
    envelope = (sender or account.address) if message.sender else ""
    for recipient in recipients:
        # RFC 8689 §6: a notification reoriginated from a REQUIRETLS message keeps the tag.
        await bounce.send_report(
            store, router, wakeup, raw, recipient, sender=envelope, requiretls=message.requiretls
        )
    # RFC 5435 §8: every use of notify is logged.
    _log.info(
        "sieve notification sent",
        account=account.address,
        recipients=len(recipients),
        importance=action.importance,
    )
    return raw
