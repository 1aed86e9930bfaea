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
- **Submission** (RFC 6409): the envelope sender and every header ``From`` address must belong to
  the authenticated account (its address, plus-addresses of it, or aliases that resolve only
  to it); missing ``Date``/``Message-ID`` are added (RFC 6409 §8).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pillarbox.concurrently import concurrently
from pillarbox.errors import InvalidName
from pillarbox.mail import dsn, trace
from pillarbox.mail.address import Address, parse_address
from pillarbox.mail.model import MessageInfo
from pillarbox.observability.log import Log
from pillarbox.policy.authresults import strip_forged
from pillarbox.policy.pipeline import Arrival, Assessment, Copy, Judgement
from pillarbox.policy.verdict import Action, Verdict, decide
from pillarbox.queue import forwarding, srs, vacation
from pillarbox.queue.filtering import LocalDelivery, Refusal
from pillarbox.queue.forwarding import Forward
from pillarbox.queue.local import parse
from pillarbox.queue.routing import LocalRecipient, Resolution
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
QUEUED = replies.MESSAGE_ACCEPTED
#: The inbound policy refused the message for every recipient (DMARC p=reject, spam score);
#: the text says why (never a silent drop).
POLICY_REFUSED = replies.POLICY_REJECTED
#: RFC 5429 §2.2: every recipient's Sieve script erejected the message (the text is the
#: first script's reason, when it has one that fits a reply line).
SIEVE_REFUSED = replies.POLICY_REJECTED.with_text("refused by the recipient's filter")
#: Characters of an ereject reason put in the reply line (RFC 5321 §4.5.3.1.5: 512 octets).
MAX_REFUSAL_TEXT = 400
SPAM_NOT_FORWARDED = "message judged spam; not forwarded"
#: Every recipient is an alias that would send the message back where it came from
#: (RFC 3463 X.4.6: routing loop detected).
FORWARDING_LOOP = Reply(554, "5.4.6", "mail forwarding loop")


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

    def __init__(self, services: Services) -> None:
        self._services = services
        self._store = services.store
        self._router = services.router
        self._log = Log("intake")
        verdicts = services.metrics.policy_verdicts
        self._verdicts = {action: verdicts.labels(action.value) for action in Action}
        self._delivery = LocalDelivery.of(services)
        self._forwarder = self._delivery.forwarder
        self._responder = self._delivery.responder

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

    async def check_recipient(
        self, rcpt: RcptTo, account: Account | None, size_hint: int | None
    ) -> tuple[Reply, Resolution | None]:
        mailbox = rcpt.path.mailbox
        if mailbox is None:
            return replies.BAD_RECIPIENT_SYNTAX, None
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
            return replies.MAILBOX_FULL, None
        return replies.RECIPIENT_OK, resolution

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
        now = datetime.now(UTC)
        queue_id = secrets.token_hex(8)
        sender = mail.path.mailbox.normalised if mail.path.mailbox else ""
        plan = self._plan(recipients)
        judged = origin.account is None and self._services.config.policy.enabled
        # The one parse of the message (DESIGN principle 4): the From check, the policy and
        # the stored copies (with their fields on top, see parse_with_fields) all use it.
        # Unjudged mail for one mailbox is parsed as that copy instead, which is cheaper.
        info: MessageInfo | None = None
        if origin.account is not None:
            body = trace.complete_submission(
                body,
                date=now,
                message_id=trace.make_message_id(secrets.token_hex(12), self._services.hostname),
            )
            info = await parse(body)
            verdict = await self._check_from_header(origin.account, info)
            if verdict is not None:
                return verdict
        elif judged and (plan.local or plan.aliased):
            info = await parse(body)
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
            assessment = await self._assess(sender, body, info, origin)
        if assessment is not None and plan.local:
            judgement = await self._judge(assessment, list(plan.local))
            if judgement.refusal:
                self._log.info("refused by policy", id=queue_id, reason=judgement.refusal)
                return POLICY_REFUSED.with_text(judgement.refusal)
        alias_headers = b""
        if assessment is not None and plan.aliased:
            judged_forward, alias_headers = self._judge_forward(assessment)
            if judged_forward.is_spam:
                # Spam is never forwarded; with no mailbox of ours to keep it, it is refused.
                self._log.info("not forwarded: spam", id=queue_id, score=judged_forward.score)
                if not plan.local and not plan.plain:
                    return POLICY_REFUSED.with_text(judged_forward.refusal or SPAM_NOT_FORWARDED)
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
            else:
                forwards.append(Forward(via, tuple(targets), alias_headers))
        storing: dict[int, LocalRecipient] = {}
        for account_id, recipient in plan.local.items():
            forward = self._account_forward(
                recipient, settings[account_id], copies.get(account_id), body, queue_id
            )
            if forward is not None:
                forwards.append(forward)
                if not settings[account_id].forward_keep_copy:
                    continue
            storing[account_id] = recipient
        if not storing and not forwards and not plan.plain:
            return FORWARDING_LOOP  # every recipient would forward it back
        outcomes: list[bool] = []
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
                        _filing(copies.get(a)),
                        addressed=plan.addressed[a],
                        submitted=origin.account is not None,
                        refusals=refusals,
                    )
                    for a, r in storing.items()
                ]
            )
            outcomes = [s is DeliveryStatus.STORED for s in statuses]
        # Each keeps its account's judged decision (and fields) in the store, so the retry
        # files it as it would have been filed now; the queued message is the one shared
        # ``received + clean`` (a report that it never fit returns what was sent, as before).
        retry_local = [
            NewQueueRecipient(recipient.account.address, filing=_filing(copies.get(a)))
            for (a, recipient), stored in zip(storing.items(), outcomes, strict=True)
            if not stored
        ]
        if not plan.plain and not forwards and storing and not any(outcomes):
            self._log.info("refused: every mailbox full", id=queue_id, sender=sender)
            return replies.MAILBOX_FULL
        if refusals and len(refusals) == len(storing) and not plan.plain and not forwards:
            # RFC 5429 §2.2: every recipient's script erejected it and no copy went anywhere:
            # refused in the protocol, so no report is needed.
            self._log.info("refused by sieve ereject", id=queue_id, sender=sender)
            text = dsn.clean(" ".join(refusals[0].reason.split()))[:MAX_REFUSAL_TEXT]
            return SIEVE_REFUSED.with_text(text) if text else SIEVE_REFUSED
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
            queued = await self._store.enqueue(
                sender, outbound, to_queue, ret=ret, envid=mail.params.envid
            )
            self._log.info("queued", id=queue_id, queue=queued.id, recipients=len(to_queue))
        if forwards:
            await self._forward(forwards, sender, message, origin, mail, now)
        if to_queue or forwards:
            self._services.queue_wakeup.set()
        await self._auto_replies(sender, body, plan, settings, copies, now)
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
        )
        return QUEUED.with_text(f"message accepted as {queue_id}")

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
            )

    async def _auto_replies(
        self,
        sender: str,
        body: bytes,
        plan: _Plan,
        settings: dict[int, AccountSettings],
        copies: Mapping[int, Copy],
        now: datetime,
    ) -> None:
        """Vacation replies of the recipient accounts that have one on (:mod:`.vacation`)."""
        active = [a for a in plan.local if vacation.is_active(settings[a], now)]
        if not active:
            return
        incoming = vacation.Incoming.of(sender, body)
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
        self, sender: str, body: bytes, info: MessageInfo, origin: Origin
    ) -> Assessment:
        """The policy's recipient-independent assessment (``pillarbox.policy``)."""
        arrival = Arrival(client_ip=origin.client_ip, helo=origin.helo, mail_from=sender)
        hosted = {domain.name for domain in await self._store.list_domains()}
        return await self._services.policy.assess(arrival, body, info, hosted_domains=hosted)

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

    async def _judge(self, assessment: Assessment, account_ids: Sequence[int]) -> Judgement:
        """The inbound policy's verdict for each local account (``pillarbox.policy``)."""
        judgement = await self._services.policy.judge(assessment, account_ids)
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

    async def _check_from_header(self, account: Account, info: MessageInfo) -> Reply | None:
        for address in info.envelope.from_:
            if address.mailbox is None or address.host is None:
                continue  # group syntax markers
            try:
                parsed = parse_address(f"{address.mailbox}@{address.host}")
            except InvalidName:
                return NOT_YOUR_FROM
            if not await self.owns(account, parsed):
                return NOT_YOUR_FROM
        return None


def _filing(judged: Copy | None) -> Filing | None:
    return judged.filing if judged is not None else None


@dataclass(frozen=True, slots=True)
class Submitted:
    """What :func:`submit` did: the final reply and each recipient's RCPT-time verdict."""

    reply: Reply
    refused: tuple[tuple[str, Reply], ...]

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
) -> Submitted:
    """Submit a message as ``account`` through the same checks and path as SMTP submission
    (used by webmail and other in-process senders)."""
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
    for address in recipients:
        try:
            rcpt = RcptTo(Path(parse_address(address)))
        except InvalidName:
            refused.append((address, replies.BAD_RECIPIENT_SYNTAX))
            continue
        reply, resolution = await intake.check_recipient(rcpt, account, len(raw))
        if resolution is None:
            refused.append((address, reply))
        else:
            accepted.append(AcceptedRecipient(rcpt, resolution))
    if not accepted:
        return Submitted(replies.NO_VALID_RECIPIENTS, tuple(refused))
    origin = Origin(
        helo=helo,
        client_ip=client_ip,
        protocol=trace.with_protocol(esmtp=True, tls=tls, authenticated=True),
        account=account,
    )
    reply = await intake.accept(mail, accepted, raw, origin)
    return Submitted(reply, tuple(refused))
