"""The one path every accepted message takes — from the MX, from submission, from webmail.

Implementation notes:

- **Relay rules** (RFC 5321 §3.6, §7.1): an unauthenticated client may only give recipients at
  hosted domains that resolve to something; everything else is 554 5.7.1 (other domains, address
  literals) or 550 5.1.1 (unknown local parts, which is also where %-hacks, bang paths and
  quoted local parts end up: they never match an account). Source routes are ignored as
  RFC 5321 Appendix C requires — the mailbox after the route is what counts.
- **Accepted means durable** (DESIGN principle 3): :meth:`Intake.accept` returns a positive reply
  only after every local copy is stored and every remote recipient is queued by the store, each
  of which is fsync'd before it returns.
- **Per-recipient outcome**: a local recipient whose mailbox is full at the end of DATA does not
  fail the others; it is queued and retried like a remote delivery (and bounced if it never
  fits). Only when nothing at all could be stored is the whole message refused (452 4.2.2).
  The queued recipient is the account's address (never an alias) and keeps the policy's
  decision on its copy in the store (:class:`~pillarbox.store.types.Filing`: mailbox, spam,
  fields), so the retry is filed, filtered and answered as this delivery would have been.
- **Forwarding and auto-replies** are applied here, once per arriving message, after the
  verdict: an account's forwarding and an alias's remote targets are queued as forwarded
  copies (:mod:`.forwarding`: SRS, ARC, loops, never spam), and vacation replies sent
  (:mod:`.vacation`). A bounce to one of our SRS addresses is accepted at RCPT and returned to
  the original sender. The rules: docs/forwarding.md.
- **LMTP** (RFC 2033, :meth:`Intake.accept_each`): one reply per accepted recipient, each its
  own outcome: stored (250, after the fsync), over quota (``[lmtp] quota_full``: 452 4.2.2 or
  552 5.2.2, and not queued here: the front MTA keeps the message and retries), erejected by
  its Sieve script (550 5.7.1, no report), refused as spam only if ``[lmtp] refuse_spam``.
  A recipient reached through an alias answers for the alias: 250 if any of its destinations
  took the message; a full account behind such a 250 is queued and retried as for SMTP. The
  policy is ``[lmtp] policy`` (:class:`Judging`): the checks that need the sender's connection
  (SPF, DKIM/DMARC/ARC as our verdict, DNSBL) belong to the front MTA, which had it.
- **Submission** (RFC 6409): the envelope sender and every header ``From`` address must belong to
  the authenticated account (its address, plus-addresses of it, or aliases that resolve only
  to it); missing ``Date``/``Message-ID`` are added (RFC 6409 §8).
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pillarbox.concurrently import concurrently
from pillarbox.errors import InvalidName, StorageError
from pillarbox.mail import dsn, trace
from pillarbox.mail.address import Address, parse_address
from pillarbox.mail.headers import (
    HeaderField,
    ScannedFields,
    parse_addresses,
    raw_text,
    scan_header,
)
from pillarbox.mail.model import MessageInfo
from pillarbox.observability.log import Log
from pillarbox.policy.authresults import strip_forged
from pillarbox.policy.pipeline import JUNK_MAILBOX, Arrival, Assessment, Copy, Judgement
from pillarbox.policy.verdict import Action, Verdict, decide
from pillarbox.queue import forwarding, srs, vacation
from pillarbox.queue.filtering import LocalDelivery, Refusal
from pillarbox.queue.forwarding import Forward
from pillarbox.queue.local import parse, parse_judged
from pillarbox.queue.routing import LocalRecipient, Resolution
from pillarbox.queue.sendlimits import Allowance, SendingLimiter
from pillarbox.queue.signing import sign_outbound
from pillarbox.services import Services
from pillarbox.smtp import replies
from pillarbox.smtp.grammar import MailFrom, Path, RcptTo
from pillarbox.smtp.replies import Reply
from pillarbox.store.types import (
    Account,
    AccountSettings,
    DeliveryStatus,
    Filing,
    NewQueueRecipient,
)

NOT_YOUR_SENDER = replies.POLICY_REJECTED.with_text("sender address not owned by the login")
NOT_YOUR_FROM = replies.POLICY_REJECTED.with_text("From header address not owned by the login")
NOT_YOUR_RESENT_FROM = replies.POLICY_REJECTED.with_text(
    "Resent-From header address not owned by the login"
)
QUEUED = replies.MESSAGE_ACCEPTED
#: The inbound policy refused the message for every recipient (DMARC p=reject, spam score);
#: the text says why (never a silent drop).
POLICY_REFUSED = replies.POLICY_REJECTED
#: RFC 5429 §2.2: every recipient's Sieve script erejected the message (the text is the
#: first script's reason, when it has one that fits a reply line).
SIEVE_REFUSED = replies.POLICY_REJECTED.with_text("refused by the recipient's filter")
#: Characters of an ereject reason put in the reply line (RFC 5321 §4.5.3.1.5: 512 octets).
MAX_REFUSAL_TEXT = 400
#: The field on top of a copy a mail filter quarantined, with the filter's reason.
QUARANTINE_FIELD = "X-Pillarbox-Quarantine"
SPAM_NOT_FORWARDED = "message judged spam; not forwarded"
#: Every recipient is an alias that would send the message back where it came from
#: (RFC 3463 X.4.6: routing loop detected).
FORWARDING_LOOP = Reply(554, "5.4.6", "mail forwarding loop")


class Judging(enum.StrEnum):
    """How much of the inbound policy a message's arrival lets us apply."""

    #: Authentication, DNSBL, content, lists: on the client (the MX), or on the sender's MTA
    #: a trusted front MTA names (LMTP with XFORWARD, :attr:`Origin.forwarded`).
    FULL = "full"
    #: The client is a front MTA that took the message from the sender (LMTP): no SPF,
    #: DKIM/DMARC/ARC verdict or DNSBL (the connection they need was the front MTA's); the
    #: content classifier, rules, reputation and allow/block lists, with Junk filing.
    CONTENT = "content"
    #: No judgement: every copy is filed in INBOX (and then through Sieve).
    NONE = "none"


@dataclass(frozen=True, slots=True)
class PerRecipient:
    """How :meth:`Intake.accept_each` answers each recipient (LMTP, RFC 2033 §4.2)."""

    #: The reply to a recipient over quota (452 4.2.2 or 552 5.2.2, RFC 3463 X.2.2).
    mailbox_full: Reply = replies.MAILBOX_FULL
    #: Refuse a recipient whose verdict is ``reject`` (else it is filed in Junk).
    refuse_spam: bool = False


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a message came from, for the Received field and the ownership checks."""

    helo: str
    client_ip: str
    #: The ``with`` keyword (see :func:`pillarbox.mail.trace.with_protocol`).
    protocol: str
    client_host: str | None = None
    tls: trace.TlsSummary | None = None
    #: The authenticated submitter; None for mail arriving at the MX.
    account: Account | None = None
    #: What of the inbound policy applies to mail without an ``account``.
    judging: Judging = Judging.FULL
    #: The sender's MTA as a front MTA passed it (LMTP XFORWARD): its address and HELO, which
    #: the policy checks instead of the client's (the Received field still names the client).
    forwarded: tuple[str, str] | None = None
    #: Whether the message counts against the account's sending limits (:mod:`.sendlimits`):
    #: not for reports the server itself sends from an account.
    limited: bool = True
    #: A mail filter's reason to quarantine the message (milter ``q``): every local copy goes
    #: to Junk with the reason in a field on top, and nothing leaves for another server.
    quarantine: str | None = None


@dataclass(frozen=True, slots=True)
class AcceptedRecipient:
    """A recipient accepted at RCPT time, with where it resolved to."""

    rcpt: RcptTo
    resolution: Resolution


@dataclass
class _Plan:
    """Where one message goes, by kind of destination."""

    #: Hosted accounts, once each.
    local: dict[int, LocalRecipient] = field(default_factory=dict)
    #: The RCPT addresses each account was reached through (its addresses, for vacation).
    addressed: dict[int, list[str]] = field(default_factory=dict)
    #: Remote addresses the message leaves for as it is: a submitter's recipients at other
    #: domains, the original senders of bounces to our SRS addresses.
    plain: list[NewQueueRecipient] = field(default_factory=list)
    #: Remote targets of our aliases, by alias (RCPT) address: forwarded.
    aliased: dict[str, list[NewQueueRecipient]] = field(default_factory=dict)


class Intake:
    """Decides MAIL and RCPT, then stores or queues the message at the end of DATA."""

    def __init__(self, services: Services, *, mailbox_full: Reply = replies.MAILBOX_FULL) -> None:
        self._services = services
        #: The RCPT reply when every mailbox the recipient reaches is too full for SIZE=.
        self._mailbox_full = mailbox_full
        self._store = services.store
        self._router = services.router
        self._log = Log("intake")
        metrics = services.metrics
        self._verdicts = {
            action: metrics.count(metrics.policy_verdicts, action.value) for action in Action
        }
        self._delivery = LocalDelivery.of(services)
        self._forwarder = self._delivery.forwarder
        self._responder = self._delivery.responder
        self._limiter = SendingLimiter(services.store, services.config.submission_limits)

    # -- MAIL / RCPT ---------------------------------------------------------------------------
    async def owns(self, account: Account, address: Address) -> bool:
        """Whether ``account`` may use ``address`` as a sender (see the module notes)."""
        return await self._router.owns(account, address)

    async def check_sender(self, mail: MailFrom, account: Account | None) -> Reply:
        if account is not None:
            if mail.path.mailbox is None:
                return NOT_YOUR_SENDER  # a submitter has no business sending bounces
            if not await self.owns(account, mail.path.mailbox):
                return NOT_YOUR_SENDER
        return replies.SENDER_OK

    def allowance(self, account: Account, log: Log | None = None) -> Allowance:
        """The sending limits of one transaction of ``account`` (see :mod:`.sendlimits`)."""
        return self._limiter.allowance(account, log)

    async def check_recipient(
        self,
        rcpt: RcptTo,
        account: Account | None,
        size_hint: int | None,
        allowance: Allowance | None = None,
    ) -> tuple[Reply, Resolution | None]:
        """The reply to RCPT and where the recipient resolved; ``allowance`` (a submitter's)
        refuses a deliverable recipient that would pass the account's sending limits."""
        mailbox = rcpt.path.mailbox
        if mailbox is None:
            return replies.BAD_RECIPIENT_SYNTAX, None
        given = mailbox
        if mailbox.is_bare_postmaster:
            mailbox = await self._postmaster()
            if mailbox is None:
                return replies.MAILBOX_UNKNOWN, None
        resolution = await self._router.resolve(mailbox)
        if resolution.unknown and resolution.hosted and srs.is_srs(mailbox.local):
            resolution = self._srs_return(mailbox)
        if not resolution.hosted and account is None:
            return replies.RELAY_DENIED, None  # RFC 5321 §3.6.2: never an open relay
        if resolution.unknown:
            return replies.MAILBOX_UNKNOWN, None
        if (
            size_hint
            and not resolution.remote
            and await self._all_full(resolution.local, size_hint)
        ):
            return self._mailbox_full, None
        if allowance is not None:
            refusal = await allowance.admit(given.key)  # as counted by accept()
            if refusal is not None:
                return refusal, None
        return replies.RECIPIENT_OK, resolution

    async def route_added(self, mailbox: Address) -> AcceptedRecipient | None:
        """A recipient a mail filter added (milter ``+``), routed as RCPT would route it but
        without the relay check (the administrator's filter added it); None for an unknown
        address of a hosted domain."""
        resolution = await self._router.resolve(mailbox)
        if resolution.unknown:
            return None
        return AcceptedRecipient(RcptTo(Path(mailbox)), resolution)

    def _srs_return(self, mailbox: Address) -> Resolution:
        """Mail to an SRS address of ours (a bounce of mail we forwarded) goes back to the
        original sender (see :mod:`.forwarding`); a forged or expired one stays unknown."""
        try:
            day = srs.day_number(datetime.now(UTC))
            original = parse_address(srs.reverse(self._services.srs, mailbox.local, day))
        except (srs.SrsError, InvalidName) as exc:
            self._log.info("SRS address refused", rcpt=mailbox.normalised, reason=str(exc))
            return Resolution(hosted=True)
        return Resolution(remote=(original.normalised,), hosted=True, srs_return=True)

    async def _postmaster(self) -> Address | None:
        """RFC 5321 §4.1.1.3: ``<Postmaster>`` without a domain is the postmaster of this host;
        it goes to the first hosted domain's postmaster."""
        domains = await self._store.list_domains()
        if not domains:
            return None
        try:
            return parse_address(f"postmaster@{domains[0].name}")
        except InvalidName:
            return None

    async def _all_full(self, local: Sequence[LocalRecipient], size: int) -> bool:
        if not local:
            return False
        for recipient in local:
            account = recipient.account
            if account.quota_bytes is None and account.quota_messages is None:
                return False  # unlimited: no need to read the usage
            usage = await self._store.quota_usage(account.id)
            if usage.fits(size):
                return False
        return True

    # -- end of DATA ---------------------------------------------------------------------------
    async def accept(
        self,
        mail: MailFrom,
        recipients: Sequence[AcceptedRecipient],
        body: bytes,
        origin: Origin,
    ) -> Reply:
        """Store and queue one message for its accepted recipients; the reply to send."""
        return (await self._accept(mail, recipients, body, origin, None))[0]

    async def accept_each(
        self,
        mail: MailFrom,
        recipients: Sequence[AcceptedRecipient],
        body: bytes,
        origin: Origin,
        each: PerRecipient,
    ) -> list[Reply]:
        """Store one message for its accepted recipients and answer each of them (LMTP,
        RFC 2033 §4.2: one reply per recipient, in RCPT order; see the module notes)."""
        return await self._accept(mail, recipients, body, origin, each)

    async def _accept(
        self,
        mail: MailFrom,
        recipients: Sequence[AcceptedRecipient],
        body: bytes,
        origin: Origin,
        each: PerRecipient | None,
    ) -> list[Reply]:
        """:meth:`accept` (``each`` None: one reply for the message) or :meth:`accept_each`."""
        now = datetime.now(UTC)
        queue_id = secrets.token_hex(8)
        sender = mail.path.mailbox.normalised if mail.path.mailbox else ""
        plan = self._plan(recipients)

        def whole(reply: Reply) -> list[Reply]:
            return [reply] * (1 if each is None else len(recipients))

        if origin.quarantine is not None and (plan.plain or plan.aliased):
            # No Junk of ours to hold it in on another server: refused rather than sent on.
            self._log.info("refused: quarantined", id=queue_id, reason=origin.quarantine)
            return whole(replies.FILTER_QUARANTINED)

        judged = (
            origin.account is None
            and self._services.config.policy.enabled
            and origin.judging is not Judging.NONE
        )
        # The one parse of the message (DESIGN principle 4): the From check, the policy and
        # the stored copies (with their fields on top, see parse_with_fields) all use it.
        # Unjudged mail for one mailbox is parsed as that copy instead, which is cheaper.
        info: MessageInfo | None = None
        header: ScannedFields | None = None
        if origin.account is not None:
            body = trace.complete_submission(
                body,
                date=now,
                message_id=trace.make_message_id(secrets.token_hex(12), self._services.hostname),
            )
            info = await parse(body)
            verdict = await self._check_from_header(origin.account, body)
            if verdict is not None:
                return whole(verdict)
        elif judged and (plan.local or plan.aliased):
            info, header = await parse_judged(body)
        received = trace.received(
            helo=origin.helo,
            client_ip=origin.client_ip,
            client_host=origin.client_host,
            by_host=self._services.hostname,
            protocol=origin.protocol,
            queue_id=queue_id,
            date=now,
            recipients=[str(r.rcpt.path.mailbox) for r in recipients],
            tls=origin.tls,
        )
        message = received + body
        settings = await self._settings(list(plan.local))
        judgement: Judgement | None = None
        assessment: Assessment | None = None
        if judged and (plan.local or plan.aliased):
            assert info is not None
            # Once per message, whoever it is for: DMARC observations and failure reports are
            # made here, and would be doubled for a message to an account and a forward.
            assessment = await self._assess(sender, body, info, header, origin)
        #: LMTP: accounts answered with a refusal of their own before delivery (spam).
        refused: dict[int, Reply] = {}
        if assessment is not None and plan.local:
            judgement = await self._judge(assessment, list(plan.local), whole=each is None)
            if judgement.refusal:
                self._log.info("refused by policy", id=queue_id, reason=judgement.refusal)
                return whole(POLICY_REFUSED.with_text(judgement.refusal))
            if each is not None and each.refuse_spam:
                for account_id, copy in judgement.copies.items():
                    if copy.verdict.action is Action.REJECT:
                        self._log.info("refused by policy", id=queue_id, account=account_id)
                        refused[account_id] = POLICY_REFUSED.with_text(copy.verdict.refusal)
                        del plan.local[account_id]
        alias_headers = b""
        #: LMTP: alias addresses whose remote targets were not sent the message, and why.
        unsent: dict[str, Reply] = {}
        if assessment is not None and plan.aliased:
            judged_forward, alias_headers = self._judge_forward(assessment)
            if judged_forward.is_spam:
                # Spam is never forwarded; with no mailbox of ours to keep it, it is refused.
                self._log.info("not forwarded: spam", id=queue_id, score=judged_forward.score)
                spam = POLICY_REFUSED.with_text(judged_forward.refusal or SPAM_NOT_FORWARDED)
                if not plan.local and not plan.plain and not refused:
                    return whole(spam)
                unsent.update(dict.fromkeys(plan.aliased, spam))
                plan.aliased.clear()
        clean = body
        if judged and (plan.local or plan.aliased):
            # RFC 8601 §5: Authentication-Results claiming to be ours are forgeries.
            clean = strip_forged(body, self._services.hostname)
            message = received + clean
        copies = judgement.copies if judgement is not None else {}
        forwards: list[Forward] = []
        for via, targets in plan.aliased.items():
            if forwarding.looped(body, via):
                self._log.info("forwarding loop", id=queue_id, via=via)
                unsent[via] = FORWARDING_LOOP
            else:
                forwards.append(Forward(via, tuple(targets), alias_headers))
        storing: dict[int, LocalRecipient] = {}
        #: Accounts whose forwarding took a copy: the message is theirs whatever the store does.
        forwarded: set[int] = set()
        for account_id, recipient in plan.local.items():
            forward = self._account_forward(
                recipient, settings[account_id], copies.get(account_id), body, queue_id
            )
            if forward is not None:
                forwards.append(forward)
                forwarded.add(account_id)
                if not settings[account_id].forward_keep_copy:
                    continue
            storing[account_id] = recipient
        if not storing and not forwards and not plan.plain and each is None:
            return whole(FORWARDING_LOOP)  # every recipient would forward it back
        statuses: list[DeliveryStatus] = []
        refusals: list[Refusal] = []
        if storing:
            clean_info = info if clean is body else None
            if clean_info is None and len(storing) > 1:
                clean_info = await parse(clean)
            statuses = await concurrently(
                [
                    self._delivery.deliver(
                        sender,
                        r,
                        received,
                        clean,
                        clean_info,
                        _filing(copies.get(a), origin.quarantine),
                        addressed=plan.addressed[a],
                        submitted=origin.account is not None,
                        refusals=refusals,
                        remote=(origin.client_ip, origin.client_host or ""),
                        requiretls=mail.params.requiretls,
                    )
                    for a, r in storing.items()
                ]
            )
        outcomes = [s is DeliveryStatus.STORED for s in statuses]
        # Each keeps its account's judged decision (and fields) in the store, so the retry
        # files it as it would have been filed now; the queued message is the one shared
        # ``received + clean`` (a report that it never fit returns what was sent, as before).
        unstored = [a for a, stored in zip(storing, outcomes, strict=True) if not stored]
        delivered = QUEUED.with_text(f"message accepted as {queue_id}")
        answers: list[Reply] = []
        if each is None:
            if not plan.plain and not forwards and storing and not any(outcomes):
                self._log.info("refused: every mailbox full", id=queue_id, sender=sender)
                return whole(replies.MAILBOX_FULL)
            if refusals and len(refusals) == len(storing) and not plan.plain and not forwards:
                # RFC 5429 §2.2: every recipient's script erejected it and no copy went
                # anywhere: refused in the protocol, so no report is needed.
                self._log.info("refused by sieve ereject", id=queue_id, sender=sender)
                return whole(_sieve_refusal(refusals[0]))
        else:
            failed = dict(refused)
            for account_id, status in zip(storing, statuses, strict=True):
                if status is DeliveryStatus.OVER_QUOTA:
                    failed[account_id] = each.mailbox_full
                elif status is not DeliveryStatus.STORED:
                    failed[account_id] = replies.LOCAL_ERROR
            failed.update((r.account.id, _sieve_refusal(r)) for r in refusals)
            for account_id in forwarded:
                failed.pop(account_id, None)  # its copy left: a failed store is retried here
            answers = _answers(recipients, failed, unsent, delivered)
            # Only a recipient answered 250 promises delivery: its full accounts are retried
            # here and its erejects reported; the others were answered in the protocol.
            covered = {
                r.account.id
                for accepted, answer in zip(recipients, answers, strict=True)
                if answer.is_positive
                for r in accepted.resolution.local
            }
            unstored = [a for a in unstored if a in covered]
            refusals = [r for r in refusals if r.account.id in covered]
            for account_id in set(failed) - covered:
                plan.local.pop(account_id, None)  # no vacation reply for what was not taken
        retry_local = [
            NewQueueRecipient(
                storing[a].account.address, filing=_filing(copies.get(a), origin.quarantine)
            )
            for a in unstored
        ]
        if refusals:
            await self._delivery.send_refusals(refusals)
        to_queue = plan.plain + retry_local
        if to_queue:
            # Signed once, as it will leave, and only what a logged-in owner of the From
            # address submitted: never a forwarded message claiming our domain (see
            # pillarbox.queue.signing).
            signs = plan.plain and origin.account is not None
            outbound = await sign_outbound(self._store, message) if signs else message
            ret = mail.params.ret.value if mail.params.ret else None
            # RFC 8689 §4.1: REQUIRETLS tags the queued message (TLS-Required is then moot).
            queued = await self._store.enqueue(
                sender,
                outbound,
                to_queue,
                ret=ret,
                envid=mail.params.envid,
                requiretls=mail.params.requiretls,
            )
            self._log.info(
                "queued",
                id=queue_id,
                queue=queued.id,
                recipients=len(to_queue),
                requiretls=mail.params.requiretls,
            )
        if forwards:
            await self._forward(forwards, sender, message, origin, mail, now)
        if to_queue or forwards:
            self._services.queue_wakeup.set()
        await self._auto_replies(sender, body, plan, settings, copies, now, mail)
        if origin.account is not None and origin.limited:
            await self._count_sent(origin.account, recipients, queue_id)
        if origin.account is not None and self._services.config.policy.enabled:
            written = [r.rcpt.path.mailbox.normalised for r in recipients if r.rcpt.path.mailbox]
            await self._services.policy.record_correspondents(origin.account.id, written)
        self._log.info(
            "accepted",
            id=queue_id,
            sender=sender,
            local=sum(outcomes),
            queued=len(to_queue),
            forwarded=len(forwards),
            size=len(message),
            refused=sum(not a.is_positive for a in answers),
            requiretls=mail.params.requiretls,
        )
        return answers if each is not None else [delivered]

    async def _count_sent(
        self, account: Account, recipients: Sequence[AcceptedRecipient], queue_id: str
    ) -> None:
        """Count the accepted message against the account's sending limits (only now: a
        refused DATA counts nothing). The message is already stored and queued, so a failure
        here is logged and the message still accepted (a retry would send it twice)."""
        keys = [r.rcpt.path.mailbox.key for r in recipients if r.rcpt.path.mailbox]
        try:
            await self._limiter.record(account, keys)
        except StorageError as exc:
            self._log.error("counting a sent message failed", id=queue_id, error=str(exc))

    @staticmethod
    def _plan(recipients: Sequence[AcceptedRecipient]) -> _Plan:
        plan = _Plan()
        for accepted in recipients:
            resolution = accepted.resolution
            for recipient in resolution.local:
                plan.local.setdefault(recipient.account.id, recipient)
                plan.addressed.setdefault(recipient.account.id, []).append(recipient.original)
            notify = frozenset(n.value for n in accepted.rcpt.params.notify or ())
            orcpt = accepted.rcpt.params.orcpt
            orcpt_text = f"{orcpt.addr_type};{orcpt.address}" if orcpt else None
            targets = [NewQueueRecipient(a, notify, orcpt_text) for a in resolution.remote]
            mailbox = accepted.rcpt.path.mailbox
            if resolution.hosted and not resolution.srs_return and mailbox and targets:
                plan.aliased.setdefault(mailbox.normalised, []).extend(targets)
            else:
                plan.plain += targets
        return plan

    def _account_forward(
        self,
        recipient: LocalRecipient,
        settings: AccountSettings,
        judged: Copy | None,
        body: bytes,
        queue_id: str,
    ) -> Forward | None:
        """The account's forwarding of this message, unless it has none, the message is spam
        (it stays in the account's Junk) or it has been through this account before (a loop:
        the account keeps it)."""
        address = recipient.account.address
        if not settings.forward_to:
            return None
        if judged is not None and judged.verdict.is_spam:
            self._log.info("not forwarded: spam", id=queue_id, account=address)
            return None
        if forwarding.looped(body, address):
            self._log.info("forwarding loop: kept", id=queue_id, account=address)
            return None
        targets = tuple(NewQueueRecipient(a) for a in settings.forward_to)
        return Forward(address, targets, judged.headers if judged is not None else b"")

    async def _forward(
        self,
        forwards: Sequence[Forward],
        sender: str,
        message: bytes,
        origin: Origin,
        mail: MailFrom,
        now: datetime,
    ) -> None:
        """Queue the forwarded copies (:mod:`.forwarding`)."""
        hosted_sender = bool(sender) and await self._router.is_hosted(sender.rpartition("@")[2])
        for forward in forwards:
            await self._forwarder.send(
                forward,
                sender,
                message,
                submitted=origin.account is not None,
                hosted_sender=hosted_sender,
                now=now,
                ret=mail.params.ret.value if mail.params.ret else None,
                envid=mail.params.envid,
                # RFC 8689 §4.1: every aliased or forwarded copy is tagged as the message was.
                requiretls=mail.params.requiretls,
            )

    async def _auto_replies(
        self,
        sender: str,
        body: bytes,
        plan: _Plan,
        settings: dict[int, AccountSettings],
        copies: Mapping[int, Copy],
        now: datetime,
        mail: MailFrom,
    ) -> None:
        """Vacation replies of the recipient accounts that have one on (:mod:`.vacation`)."""
        active = [a for a in plan.local if vacation.is_active(settings[a], now)]
        if not active:
            return
        # RFC 8689 §6: the reply to a REQUIRETLS message is queued with the tag.
        incoming = vacation.Incoming.of(sender, body, requiretls=mail.params.requiretls)
        for account_id in active:
            judged = copies.get(account_id)
            await self._responder.respond(
                incoming,
                plan.local[account_id].account,
                settings[account_id],
                plan.addressed[account_id],
                now,
                spam=judged is not None and judged.verdict.is_spam,
            )

    async def _assess(
        self,
        sender: str,
        body: bytes,
        info: MessageInfo,
        header: ScannedFields | None,
        origin: Origin,
    ) -> Assessment:
        """The policy's recipient-independent assessment (``pillarbox.policy``); ``header``:
        the parse's read of the header, if it kept one."""
        # CONTENT: the content alone, as the sender's connection was the front MTA's.
        client_ip, helo = origin.forwarded or (origin.client_ip, origin.helo)
        arrival = (
            None
            if origin.judging is Judging.CONTENT
            else Arrival(client_ip=client_ip, helo=helo, mail_from=sender)
        )
        hosted = {domain.name for domain in await self._store.list_domains()}
        return await self._services.policy.assess(
            arrival, body, info, hosted_domains=hosted, header=header
        )

    def _judge_forward(self, assessment: Assessment) -> tuple[Verdict, bytes]:
        """The verdict on a message our aliases forward to other domains, and our
        ``Authentication-Results`` for its ARC set. An alias has no account, so no classifier
        model, reputation or lists of its own: authentication, DMARC, DNSBL and the rules
        decide. The header facts do not (they are fitted on top of a classifier's score, and
        spam is refused here, not filed in Junk)."""
        policy = self._services.policy
        verdict = decide(
            assessment.reasons,
            policy.settings.thresholds,
            forced=assessment.forced,
            override=assessment.override,
            refusal=assessment.refusal,
        )
        return verdict, assessment.auth_header(policy.hostname)

    async def _settings(self, account_ids: list[int]) -> dict[int, AccountSettings]:
        """The accounts' settings, read concurrently."""
        found = await concurrently([self._store.get_settings(a) for a in account_ids])
        return dict(zip(account_ids, found, strict=True))

    async def _judge(
        self, assessment: Assessment, account_ids: Sequence[int], *, whole: bool
    ) -> Judgement:
        """The inbound policy's verdict for each local account (``pillarbox.policy``)."""
        judgement = await self._services.policy.judge(assessment, account_ids, whole=whole)
        for account_id, copy in judgement.copies.items():
            verdict = copy.verdict
            self._log.info(
                "policy verdict",
                account=account_id,
                action=verdict.action.value,
                score=verdict.score,
            )
            self._verdicts[verdict.action].inc()
        return judgement

    async def _check_from_header(self, account: Account, raw: bytes) -> Reply | None:
        """Every author the message names must be the login's: each address of From and of
        Sender (which readers show as "on behalf of"), and of Resent-From and Resent-Sender
        of the newest resent block, the one a resend through us adds (RFC 5322 §3.6.6: the
        resender is that block's author). RFC 5322 §3.6 allows one From and one Sender; a
        second one, which some readers show instead of the first, is refused, not judged by
        the first alone. From is the login's even on a resend: our DKIM signature and DMARC
        alignment vouch for it, so resending someone else's message is refused."""
        block = scan_header(raw, 0, len(raw))
        authors = [f for f in block.fields if f.key in ("from", "sender")]
        resenders = [f for f in _newest_resent_block(block.fields) if f.key in _RESENDERS]
        for named, refusal in ((authors, NOT_YOUR_FROM), (resenders, NOT_YOUR_RESENT_FROM)):
            if len(named) != len({f.key for f in named}):
                return refusal
            for author in named:
                if not await self._owns_all(account, author.value):
                    return refusal
        return None

    async def _owns_all(self, account: Account, value: bytes) -> bool:
        addresses, _ = parse_addresses(raw_text(value))
        for address in addresses:
            if address.mailbox is None or address.host is None:
                continue  # group syntax markers
            try:
                parsed = parse_address(f"{address.mailbox}@{address.host}")
            except InvalidName:
                return False
            if not await self.owns(account, parsed):
                return False
        return True


#: The authors of a resend (RFC 5322 §3.6.6).
_RESENDERS = ("resent-from", "resent-sender")


def _newest_resent_block(fields: Sequence[HeaderField]) -> list[HeaderField]:
    """The resent fields a resend added last: RFC 5322 §3.6.6 has each resend prepend its
    block, so the first run of Resent-* fields from the top; the run ends at any other field
    or at a Resent-* field it already holds: that starts the next, older block, whose
    authors resent the message before the login did."""
    newest: list[HeaderField] = []
    for one in fields:
        if not one.key.startswith("resent-"):
            if newest:
                break
            continue
        if any(f.key == one.key for f in newest):
            break
        newest.append(one)
    return newest


def _filing(judged: Copy | None, quarantine: str | None) -> Filing | None:
    """The policy's filing of a copy; in Junk, with the reason on top, when a mail filter
    quarantined the message."""
    if quarantine is None:
        return judged.filing if judged is not None else None
    reason = " ".join(quarantine.split())[:MAX_REFUSAL_TEXT]
    field = f"{QUARANTINE_FIELD}: {reason}\r\n".encode("utf-8", "replace")
    return Filing(JUNK_MAILBOX, True, field + (judged.headers if judged is not None else b""))


def _sieve_refusal(refusal: Refusal) -> Reply:
    """The reply to an ereject refused in the protocol: 550 5.7.1 with the script's reason."""
    text = dsn.clean(" ".join(refusal.reason.split()))[:MAX_REFUSAL_TEXT]
    return SIEVE_REFUSED.with_text(text) if text else SIEVE_REFUSED


def _answers(
    recipients: Sequence[AcceptedRecipient],
    failed: Mapping[int, Reply],
    unsent: Mapping[str, Reply],
    delivered: Reply,
) -> list[Reply]:
    """One reply per recipient (RFC 2033 §4.2): ``delivered`` if any destination it resolved
    to took the message (an account not in ``failed``; remote targets not in ``unsent``),
    else the failure of its first destination."""
    answers: list[Reply] = []
    for accepted in recipients:
        outcomes: list[Reply | None] = [failed.get(r.account.id) for r in accepted.resolution.local]
        if accepted.resolution.remote:
            mailbox = accepted.rcpt.path.mailbox
            outcomes.append(unsent.get(mailbox.normalised) if mailbox else None)
        failures = [o for o in outcomes if o is not None]
        ok = len(failures) < len(outcomes)
        answers.append(delivered if ok else (failures[0] if failures else replies.LOCAL_ERROR))
    return answers


@dataclass(frozen=True, slots=True)
class Submitted:
    """What :func:`submit` did: the final reply and each recipient's RCPT-time verdict."""

    reply: Reply
    refused: tuple[tuple[str, Reply], ...]
    #: The recipients (as given) only hosted accounts take: with a positive ``reply`` the
    #: message is in their mailboxes (stored before the reply, DESIGN principle 3), not
    #: queued for another server (RFC 6638 §3.2.9 tells "delivered" from "sent" by this).
    local: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.reply.is_positive


async def submit(
    services: Services,
    account: Account,
    raw: bytes,
    sender: str,
    recipients: Sequence[str],
    *,
    client_ip: str = "127.0.0.1",
    helo: str = "webmail",
    tls: bool = False,
    limited: bool = True,
) -> Submitted:
    """Submit a message as ``account`` through the same checks and path as SMTP submission
    (used by webmail and other in-process senders); ``limited``: within the account's sending
    limits and counted (the webmail), not for what the server itself sends (reports)."""
    intake = Intake(services)
    try:
        mail = MailFrom(Path(parse_address(sender)))
    except InvalidName:
        return Submitted(replies.BAD_SENDER_SYNTAX, ())
    verdict = await intake.check_sender(mail, account)
    if not verdict.is_positive:
        return Submitted(verdict, ())
    accepted: list[AcceptedRecipient] = []
    refused: list[tuple[str, Reply]] = []
    local: list[str] = []
    allowance = intake.allowance(account) if limited else None
    for address in recipients:
        try:
            rcpt = RcptTo(Path(parse_address(address)))
        except InvalidName:
            refused.append((address, replies.BAD_RECIPIENT_SYNTAX))
            continue
        reply, resolution = await intake.check_recipient(rcpt, account, len(raw), allowance)
        if resolution is None:
            refused.append((address, reply))
        else:
            accepted.append(AcceptedRecipient(rcpt, resolution))
            if resolution.local and not resolution.remote:
                local.append(address)
    if not accepted:
        return Submitted(replies.NO_VALID_RECIPIENTS, tuple(refused))
    origin = Origin(
        helo=helo,
        client_ip=client_ip,
        protocol=trace.with_protocol(esmtp=True, tls=tls, authenticated=True),
        account=account,
        limited=limited,
    )
    reply = await intake.accept(mail, accepted, raw, origin)
    return Submitted(reply, tuple(refused), tuple(local))
