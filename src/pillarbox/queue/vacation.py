"""Vacation auto-replies (RFC 3834, with the choices of Sieve's vacation extension, RFC 5230).

Implementation notes (the rules are also in docs/forwarding.md):

- **When not to reply** (:func:`reason_not_to_reply`; each case is a test): the auto-reply is off
  or past its last day; the envelope sender is null, or a robot's (``MAILER-DAEMON``,
  ``owner-*``, ``*-request``, ``LISTSERV``, ``majordomo`` — RFC 3834 §2, RFC 5230 §4.6) or the
  account itself; the message has ``Auto-Submitted`` other than ``no`` (RFC 3834 §2 MUST NOT,
  §5), ``Precedence: bulk/list/junk``, or any ``List-*`` field (RFC 2369: mailing lists); it was
  judged spam; or, with ``vacation.require_explicit_address``, none of the account's addresses
  is in To, Cc, Bcc or their Resent- forms (RFC 3834 §2: a Bcc'd or list copy gets no reply).
- **Once per sender** per ``vacation.interval_days`` (RFC 3834 §2 recommends 7 days): the store
  remembers the last reply to each sender (:meth:`~pillarbox.store.interface.Store.
  claim_vacation_reply`), atomically, so concurrent deliveries send one reply, on any node.
- **The reply** (RFC 3834 §3): to the Return-Path — the envelope sender, never From or Reply-To
  (§4); ``From`` the account; ``Subject`` the account's, or ``Auto: <original>`` (§3.1.5);
  ``In-Reply-To``/``References`` (§3.1.6); ``Auto-Submitted: auto-replied`` (§5); sent with the
  null envelope sender (§3.3) so that nothing answers it. It is DKIM-signed and goes through
  the outbound queue, or straight into the mailbox of a local sender.
- **REQUIRETLS** (RFC 8689 §6): a reply to a message received with REQUIRETLS is a message
  reoriginated from it (it quotes its subject and ids), so it is queued with the tag too; with
  its null reverse-path the runner gives the parameter to every hop that offers it and still
  uses one that does not (§5), as for a bounce. The other way too: a reply to a message
  marked ``TLS-Required: No`` is marked so (§6 "both requiring TLS transmission and
  requesting that TLS not be required").
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import message_from_string
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr

from pillarbox.mail import trace
from pillarbox.mail.decode import printable
from pillarbox.mail.headers import (
    HeaderField,
    parse_addresses,
    parse_msg_ids,
    raw_text,
    scan_header,
)
from pillarbox.observability.log import Log
from pillarbox.queue import bounce
from pillarbox.queue.routing import Router
from pillarbox.queue.signing import sign_outbound
from pillarbox.queue.tlsrpt import tls_optional
from pillarbox.store.interface import Store
from pillarbox.store.types import Account, AccountSettings

#: Local parts of senders that are robots (RFC 3834 §2, RFC 5230 §4.6), compared without case.
ROBOT_SENDERS = frozenset({"mailer-daemon", "listserv", "majordomo"})
#: Precedence values of mass mail (RFC 3834 §2 names the field; these are its common values).
BULK_PRECEDENCE = frozenset({"bulk", "list", "junk"})
RECIPIENT_FIELDS = frozenset({"to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"})
#: Header fields read for the decision (a hostile header stays bounded).
MAX_FIELDS = 1000
REFERENCES_LIMIT = 20

_log = Log("vacation")


@dataclass(frozen=True, slots=True)
class Incoming:
    """What the decision and the reply need from the arriving message; ``requiretls`` its
    RFC 8689 tag, which what is sent in answer to it keeps (§6)."""

    sender: str
    fields: tuple[HeaderField, ...]
    requiretls: bool = False

    @classmethod
    def of(cls, sender: str, raw: bytes, *, requiretls: bool = False) -> Incoming:
        block = scan_header(raw, 0, len(raw), max_fields=MAX_FIELDS)
        return cls(sender, block.fields, requiretls)

    def values(self, key: str) -> list[str]:
        return [raw_text(f.value).strip() for f in self.fields if f.key == key]

    @property
    def tls_optional(self) -> bool:
        """RFC 8689 §6: the message asks with ``TLS-Required: No`` that TLS not be required
        (moot under the REQUIRETLS tag, §4.1), which what answers it asks too."""
        return not self.requiretls and tls_optional((f.key, f.value) for f in self.fields)


def is_active(settings: AccountSettings, now: datetime) -> bool:
    """The auto-reply is on and its last day (a whole UTC day) has not passed."""
    if not settings.vacation_enabled:
        return False
    until = settings.vacation_until
    return until is None or now < until + timedelta(days=1)


def account_from(account: Account) -> str:
    """The account as a From value: its display name (quoted as RFC 5322 §3.2.5 needs) and
    address."""
    return formataddr((account.display_name, account.address))


def _robot(sender: str) -> bool:
    local = sender.rpartition("@")[0].lower()
    return local in ROBOT_SENDERS or local.startswith("owner-") or local.endswith("-request")


def reason_not_to_reply(
    message: Incoming,
    own_addresses: Collection[str],
    *,
    spam: bool,
    require_explicit_address: bool,
) -> str | None:
    """Why the message gets no auto-reply, or None when it may get one (see the notes).
    ``own_addresses`` are the account's, lowercase."""
    sender = message.sender
    if not sender:
        return "null sender"
    if _robot(sender):
        return "sender is a robot"
    if sender.lower() in own_addresses:
        return "sender is the account"
    if spam:
        return "judged spam"
    if any(v.lower() != "no" for v in message.values("auto-submitted")):
        return "auto-submitted"
    if any(v.lower() in BULK_PRECEDENCE for v in message.values("precedence")):
        return "bulk precedence"
    if any(f.key.startswith("list-") for f in message.fields):
        return "mailing list"
    if require_explicit_address and not _addressed_to(message, own_addresses):
        return "account not in To/Cc"
    return None


def _addressed_to(message: Incoming, own_addresses: Collection[str]) -> bool:
    for field in message.fields:
        if field.key not in RECIPIENT_FIELDS:
            continue
        addresses, _ = parse_addresses(raw_text(field.value), limit=100)
        for address in addresses:
            mailbox = f"{address.mailbox}@{address.host}".lower()
            if address.mailbox and address.host and mailbox in own_addresses:
                return True
    return False


def build_reply(
    message: Incoming,
    account: Account,
    settings: AccountSettings,
    *,
    now: datetime,
) -> bytes:
    """The auto-reply to ``message`` (see the notes), CRLF line endings."""
    return compose_reply(
        message, account, body=settings.vacation_body, subject=settings.vacation_subject, now=now
    )


def compose_reply(
    message: Incoming,
    account: Account,
    *,
    body: str,
    now: datetime,
    subject: str = "",
    sender: str = "",
    mime: bool = False,
) -> bytes:
    """An auto-reply with the given text (or, with ``mime``, MIME entity: RFC 5230 §4.4),
    ``subject`` (default ``Auto: <original>``) and ``From`` (default the account)."""
    if mime:
        reply = message_from_string(body.replace("\r\n", "\n"), _class=EmailMessage, policy=SMTP)
        del reply["MIME-Version"]
        reply["MIME-Version"] = "1.0"
    else:
        reply = EmailMessage(policy=SMTP)
    reply["From"] = sender or account_from(account)
    reply["To"] = message.sender
    original = message.values("subject")
    reply["Subject"] = subject or "Auto: " + printable(original[0] if original else "")
    reply["Date"] = format_datetime(now)
    reply["Message-ID"] = trace.make_message_id(secrets.token_hex(12), account.domain)
    ids = [i for v in message.values("message-id") for i in parse_msg_ids(v, limit=1)][:1]
    if ids:
        reply["In-Reply-To"] = f"<{ids[0]}>"
        known = [i for v in message.values("references") for i in parse_msg_ids(v)]
        reply["References"] = " ".join(f"<{i}>" for i in [*known[-REFERENCES_LIMIT:], ids[0]])
    reply["Auto-Submitted"] = "auto-replied"  # RFC 3834 §5
    if message.tls_optional:
        reply["TLS-Required"] = "No"  # RFC 8689 §6 (module notes)
    if not mime:
        reply.set_content(body.replace("\r\n", "\n"), cte="quoted-printable")
    return reply.as_bytes()


@dataclass(frozen=True, slots=True)
class ScriptReply:
    """A Sieve ``vacation`` action as delivery resolved it (RFC 5230 §4): ``period`` (from
    :days or RFC 6131 :seconds) within the site's bounds, ``sender`` a From the account may use
    or "" for the default."""

    reason: str
    handle: str
    period: timedelta
    subject: str = ""
    sender: str = ""
    addresses: tuple[str, ...] = ()
    mime: bool = False


class Responder:
    """Decides and sends auto-replies for delivered messages (see the notes)."""

    def __init__(
        self,
        store: Store,
        router: Router,
        wakeup: asyncio.Event,
        *,
        interval: timedelta,
        require_explicit_address: bool,
    ) -> None:
        self._store = store
        self._router = router
        self._wakeup = wakeup
        self._interval = interval
        self._require_explicit = require_explicit_address

    async def respond(
        self,
        message: Incoming,
        account: Account,
        settings: AccountSettings,
        addressed: Sequence[str],
        now: datetime,
        *,
        spam: bool,
    ) -> bool:
        """Send the account's auto-reply to ``message`` if one is due; True if sent.
        ``addressed`` are the addresses the message was delivered through (RCPT TO)."""
        if not is_active(settings, now):
            return False
        own = {account.address.lower(), *(a.lower() for a in addressed)}
        reason = reason_not_to_reply(
            message, own, spam=spam, require_explicit_address=self._require_explicit
        )
        if reason is None and not await self._store.claim_vacation_reply(
            account.id, message.sender, now, self._interval
        ):
            reason = "already replied to this sender"
        if reason is not None:
            _log.info("no auto-reply", account=account.address, reason=reason)
            return False
        await self._send(build_reply(message, account, settings, now=now), message, account)
        return True

    async def respond_to_script(
        self,
        message: Incoming,
        account: Account,
        addressed: Sequence[str],
        request: ScriptReply,
        now: datetime,
        *,
        spam: bool,
    ) -> bytes | None:
        """Send a Sieve script's auto-reply (RFC 5230) if one is due: the reply as sent, or
        None. The
        same rules as the account's own, except that the account must be named in the
        header (§4.5 MUST, whatever ``vacation.require_explicit_address`` says), ``:addresses``
        count as its own, and the once-per-sender memory is per ``:handle`` (§4.2) and
        ``:days``."""
        own = {account.address.lower(), *(a.lower() for a in (*addressed, *request.addresses))}
        reason = reason_not_to_reply(message, own, spam=spam, require_explicit_address=True)
        # The store remembers senders; the handle goes into the remembered key, after a
        # newline no address can hold, hashed to a fixed length.
        handle = hashlib.sha256(request.handle.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        key = f"{message.sender}\nsieve:{handle}"
        if reason is None and not await self._store.claim_vacation_reply(
            account.id, key, now, request.period
        ):
            reason = "already replied to this sender"
        if reason is not None:
            _log.info("no auto-reply", account=account.address, reason=reason, sieve=True)
            return None
        reply = compose_reply(
            message,
            account,
            body=request.reason,
            now=now,
            subject=request.subject,
            sender=request.sender,
            mime=request.mime,
        )
        return await self._send(reply, message, account)

    async def _send(self, reply: bytes, message: Incoming, account: Account) -> bytes:
        signed = await sign_outbound(self._store, reply)
        await bounce.send_report(
            self._store,
            self._router,
            self._wakeup,
            signed,
            message.sender,
            requiretls=message.requiretls,  # RFC 8689 §6 (module notes)
        )
        _log.info("auto-reply sent", account=account.address, requiretls=message.requiretls)
        return signed
