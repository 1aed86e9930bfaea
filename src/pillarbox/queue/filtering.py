"""Final delivery of one copy to one hosted account, through the account's active Sieve script
(RFC 5228) — the one path for mail arriving at intake and for mail retried from the queue.

Implementation notes (the rules are also in docs/sieve.md):

- **The policy's decision** (a :class:`~pillarbox.store.types.Filing`: mailbox, spam, fields)
  is intake's judgement of the message, or, for a copy retried from the queue, that same
  judgement as intake kept it with the queued recipient — never re-read from the message.
- **No script, or a broken one, is the old delivery**: the mailbox the inbound policy chose
  (INBOX, or Junk for spam). A script that does not compile (stored before a limit changed, or
  by a tool that skipped the check) and a runtime error (RFC 5228 §2.10.6) both mean the
  implicit keep, logged: a script never loses a message. The script is run on the copy as
  stored: with ``Return-Path``, ``Delivered-To`` and the policy's fields on top.
- **keep** is the policy's mailbox, so spam kept stays in Junk; **fileinto** is the script's
  mailbox, spam or not (the user asked for it). A fileinto mailbox that does not exist gets the
  copy in the policy's mailbox instead, with the fileinto's flags, logged (RFC 5228 §4.1
  leaves it to the implementation; creating folders from a script would let a typo make one).
  Keep and fileinto of the same mailbox are one copy (§2.10.3), their imap4flags united.
- **fileinto :create** (RFC 5490 §3.2) creates a missing mailbox through the store (its name
  checks: ``normalize_mailbox_name``; superiors made too), as a plain folder — with a special
  use only when its :specialuse names one (RFC 8579 §4) — and only while the account has
  fewer than ``sieve.create_max_mailboxes``, so a script filing by header values cannot flood
  it. A creation that fails (an invalid name,
  the bound) is the §3.2 error: the copy goes where a missing mailbox's would, logged.
- **include** (RFC 6609): before the run, the scripts the active one includes are read —
  :personal from the account's scripts in the store, :global from ``sieve.global_dir`` — and
  compiled through the cache, every delivery: the cache is keyed by content, so an included
  script changed is a new entry and takes effect on the next message. At most
  ``sieve.max_includes`` are read; one that does not exist, does not compile or loops is the
  run's error when (and only if) the include runs (the implicit keep, logged).
- **addheader / deleteheader** (RFC 5293) change the copy keep and fileinto store (the
  header as the script left it at its end, parsed again from those bytes so FETCH and SEARCH
  see it); the fields delivery put on top stay there, untouched (``delivery_fields``: the web
  UI's spam verdict and spam learning trust that block); redirect, reject and vacation use
  the message as it arrived (a redirected copy never carries our Return-Path and
  Delivered-To, which the edited copy begins with).
- **mailboxexists** (RFC 5490 §3.1) reads the account's mailbox names, listed only for a
  script that requires "mailbox" (or includes one that does); **specialuse_exists** (RFC 8579
  §3) their special uses, for one that requires "special-use". **fileinto :specialuse**
  (§4) files into the account's mailbox with that special use when it has one, else into the
  mailbox named (the rules above).
- **spamtest** (RFC 5235) reads the policy's verdict on this copy: the score and action of
  the ``X-Pillarbox-Spam`` field in the :class:`Filing` intake kept (never the message's
  fields), with ``[policy]``'s thresholds (:mod:`pillarbox.sieve.spamtest` maps them); a copy
  no policy judged is "not tested".
- **duplicate** (RFC 7352): the keys the account's earlier runs recorded and not expired are
  read before the run (for a script that requires "duplicate"); those the run hands back are
  recorded after its copy is stored (§3.1: a run that failed, or a copy deferred and run
  again, records none), expiring after :seconds (``sieve.duplicate_default_seconds``, at
  most ``duplicate_max_seconds``), at most ``duplicate_max_entries`` per account.
- **metadata tests** (RFC 5490 §3.3–§3.6) read METADATA entries (RFC 5464), read-only: before
  the run, only the entries the scripts' tests name (``Script.metadata``), or all of the
  account's when a name is made of variables, with IMAP's computed ones; the run stays
  sans-I/O.
- **notify** (RFC 5435, mailto RFC 5436) goes through :mod:`.notification` after the copy is
  stored, as vacation does: none about an Auto-Submitted message or spam, none to the
  account's own addresses; ``:from`` only if the account may send as it.
- **discard** stores nothing and logs it; the message still counts as delivered.
- **redirect** queues a copy through :mod:`.forwarding` (SRS, ARC, ``Delivered-To`` loop
  check). Spam is never redirected, as it is never forwarded; a redirect that is not done (spam,
  or a loop) keeps the message instead if nothing else would.
- **reject / ereject** (RFC 5429) happen at final delivery, after (or for a queued retry,
  long after) the SMTP transaction took the message: the refusal is a DSN (5.7.1, the reason
  as diagnostic, the header returned) to the envelope sender through :mod:`.bounce` — never
  to the null sender (a report about a report: the message is dropped, logged) and never for
  spam (the sender is likely forged: backscatter; the message stays in Junk instead, as a
  redirect not done does). **ereject** at intake is handed back to the caller instead
  (``refusals``): when every recipient of the transaction refused it and nothing else was
  stored, queued or forwarded, intake answers DATA with 550 5.7.1 (RFC 5429 §2.2: in the
  protocol); otherwise the caller sends the reports as for reject.
- **vacation** goes through :mod:`.vacation` (RFC 3834 rules, once per sender per handle per
  ``:days``); ``:from`` is used only if the account may send as it (RFC 5230 §4.3 lets us
  ignore others), so a script cannot make us sign mail for an address its owner does not own.
- **:fcc** (RFC 8580) on vacation and notify: the reply or notification as sent (signed) is
  stored in the mailbox named, or the one with its :specialuse, with its :flags; a missing
  one is created only with :create (as fileinto :create), else the copy is not kept, logged
  — it was sent. No reply sent, no copy.
- **Quota warnings** (:mod:`.quotawarning`) are judged on the stored copies' results, after
  them: a copy that takes the account past ``[quota] warning_thresholds`` is followed by
  the warning in its INBOX.
- **Durability**: the copy is stored before any redirect or reply is sent; a copy that does
  not fit (over quota) is reported so and nothing else happens, so the queue's retry runs the
  script again from the start.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pillarbox.blocking import run_blocking, run_sized
from pillarbox.errors import AlreadyExists, InvalidName, NotFound
from pillarbox.imap.metadata import computed_entries
from pillarbox.mail import trace
from pillarbox.mail.address import parse_address
from pillarbox.mail.headers import scan_header
from pillarbox.mail.model import MessageInfo
from pillarbox.observability.log import Log
from pillarbox.policy import receivedreports
from pillarbox.queue import bounce, forwarding, notification, vacation
from pillarbox.queue.forwarding import Forward, Forwarder
from pillarbox.queue.local import parse, parse_with_fields
from pillarbox.queue.quotawarning import QuotaWarnings
from pillarbox.queue.routing import LocalRecipient, Router
from pillarbox.services import Services
from pillarbox.sieve import (
    INLINE_COMPILE_SIZE,
    Discard,
    Fcc,
    FileInto,
    IncludeKey,
    Keep,
    MetadataKey,
    Notify,
    Outcome,
    Redirect,
    RegexLimits,
    Reject,
    RunLimits,
    Script,
    SieveError,
    SieveMessage,
    SpamStatus,
    Vacation,
    environment,
)
from pillarbox.sieve.cache import ScriptCache, unwrap
from pillarbox.sieve.message import metadata_key
from pillarbox.sieve.validate import sieve_address
from pillarbox.sievescripts import read_global_script
from pillarbox.store.interface import Store
from pillarbox.store.types import (
    INBOX,
    Account,
    DeliveryResult,
    DeliveryStatus,
    DeliveryTarget,
    Filing,
    Mailbox,
    NewQueueRecipient,
    SpecialUse,
)

_log = Log("sieve")
#: The score and action of the policy's ``X-Pillarbox-Spam`` field (pillarbox.policy.verdict),
#: read from the Filing intake kept, never from the message.
_VERDICT = re.compile(rb"X-Pillarbox-Spam: score=(-?[0-9]+(?:\.[0-9]+)?); action=([a-z]+)", re.I)


@dataclass(frozen=True, slots=True)
class Refusal:
    """An ereject (RFC 5429 §2.2) not yet answered: intake refuses the transaction in SMTP
    if it can, else sends its report (:meth:`LocalDelivery.send_refusals`)."""

    account: Account
    reason: str
    message: bytes
    sender: str
    rcpt: str
    #: The message's RFC 8689 tag: the refusal report keeps it (§5).
    requiretls: bool = False


@dataclass(frozen=True, slots=True)
class _Plan:
    """What to do with one copy: the mailboxes (with flags), the redirects, the reply."""

    targets: tuple[DeliveryTarget, ...]
    redirects: tuple[str, ...]
    vacation: Vacation | None
    #: The targets' mailboxes a ``fileinto :create`` named (RFC 5490 §3.2), with the
    #: special use its :specialuse gave (RFC 8579 §4), if any.
    create: dict[str, SpecialUse | None] = field(default_factory=dict)


class LocalDelivery:
    """Stores one copy for one account, after its Sieve script (see the module notes)."""

    def __init__(
        self,
        store: Store,
        router: Router,
        scripts: ScriptCache,
        forwarder: Forwarder,
        responder: vacation.Responder,
        wakeup: asyncio.Event,
        *,
        limits: RunLimits,
        default_days: int,
        max_days: int,
        create_max_mailboxes: int = 500,
        hostname: str = "localhost",
        bounce_original_limit: int = 262_144,
        vacation_min_seconds: int = 300,
        global_dir: Path | None = None,
        max_script_size: int = 65536,
        reports: receivedreports.Intake | None = None,
        quota_warnings: QuotaWarnings | None = None,
        metadata_admin: str = "",
        spam_thresholds: tuple[float, float] = (5.0, 15.0),
        duplicate_seconds: int = 604800,
        duplicate_max_seconds: int = 2592000,
        duplicate_max_entries: int = 10000,
    ) -> None:
        self._store = store
        self._router = router
        self._scripts = scripts
        self.forwarder = forwarder
        self.responder = responder
        self._wakeup = wakeup
        self._limits = limits
        self._default_days = default_days
        self._max_days = max_days
        self._create_max_mailboxes = create_max_mailboxes
        self._hostname = hostname
        self._bounce_original_limit = bounce_original_limit
        self._vacation_min_seconds = vacation_min_seconds
        self._global_dir = global_dir
        self._max_script_size = max_script_size
        self._reports = reports
        self._quota_warnings = quota_warnings
        self._metadata_admin = metadata_admin
        self._spam_thresholds = spam_thresholds
        self._duplicate_seconds = duplicate_seconds
        self._duplicate_max_seconds = duplicate_max_seconds
        self._duplicate_max_entries = duplicate_max_entries

    @classmethod
    def of(cls, services: Services) -> LocalDelivery:
        """The delivery of a running server, from its config."""
        config = services.config
        forwarder = Forwarder(
            services.store,
            services.srs,
            hostname=services.hostname,
            seal=config.forwarding.arc_seal,
        )
        responder = vacation.Responder(
            services.store,
            services.router,
            services.queue_wakeup,
            interval=timedelta(days=config.vacation.interval_days),
            require_explicit_address=config.vacation.require_explicit_address,
        )
        section = config.sieve
        return cls(
            services.store,
            services.router,
            services.sieve_scripts,
            forwarder,
            responder,
            services.queue_wakeup,
            limits=RunLimits(
                max_actions=section.max_actions,
                max_redirects=section.max_redirects,
                max_variable_size=section.max_variable_size,
                max_include_depth=section.max_include_depth,
                max_includes=section.max_includes,
                max_header_size=section.max_header_size,
                max_notify_recipients=section.max_notify_recipients,
                max_notifications=section.max_notifications,
                regex=RegexLimits(section.regex_max_length, section.regex_max_memory),
            ),
            default_days=max(1, round(config.vacation.interval_days)),
            max_days=section.vacation_max_days,
            create_max_mailboxes=section.create_max_mailboxes,
            hostname=services.hostname,
            bounce_original_limit=config.queue.bounce_original_limit,
            vacation_min_seconds=section.vacation_min_seconds,
            global_dir=config.resolve_path(section.global_dir) if section.global_dir else None,
            max_script_size=section.max_script_size,
            reports=receivedreports.Intake.of(services.store, config.received_reports),
            quota_warnings=QuotaWarnings.of(services),
            metadata_admin=config.imap.metadata_admin,
            spam_thresholds=(config.policy.junk_threshold, config.policy.reject_threshold),
            duplicate_seconds=section.duplicate_default_seconds,
            duplicate_max_seconds=section.duplicate_max_seconds,
            duplicate_max_entries=section.duplicate_max_entries,
        )

    async def deliver(
        self,
        sender: str,
        recipient: LocalRecipient,
        received: bytes,
        body: bytes,
        body_info: MessageInfo | None,
        filing: Filing | None,
        *,
        addressed: Sequence[str] = (),
        submitted: bool = False,
        refusals: list[Refusal] | None = None,
        remote: tuple[str, str] = ("", ""),
        requiretls: bool = False,
    ) -> DeliveryStatus:
        """Final delivery of one copy of ``received + body`` (with the policy's fields on top,
        to its mailbox, when judged: ``filing``, at intake or kept in the queue): STORED
        (discarded counts), else why it was not (the queue retries it).
        ``body_info`` is the parse of ``body`` if there is one; else the copy is parsed.
        ``addressed`` are the RCPT addresses that reached the account (for vacation).
        With ``refusals``, an ereject that would send a report is appended there instead
        (the module notes). ``remote`` is the SMTP client's address and name, for the
        RFC 5183 environment (unknown for a copy retried from the queue). ``requiretls``: the
        message's RFC 8689 tag, which a redirected copy keeps (§6)."""
        account = recipient.account
        mailbox, headers = (filing.mailbox, filing.fields) if filing else (INBOX, b"")
        spam = filing is not None and filing.spam
        fields = (
            trace.return_path(sender) + trace.delivered_to(account.address) + headers + received
        )
        copy = fields + body
        info = (
            await parse(copy)
            if body_info is None
            else await parse_with_fields(fields, body, body_info)
        )
        message = received + body
        outcome = await self._outcome(
            account, copy, info, sender, recipient.original, remote, fields, filing
        )
        if outcome.message is not None:
            # RFC 5293: the header as the script left it is stored, parsed from those bytes.
            copy = outcome.message
            info = await parse(copy)
        if any(isinstance(a, FileInto) and a.specialuse for a in outcome.actions):
            outcome = await self._special_use_targets(account, outcome)
        redirects = any(isinstance(a, Redirect) for a in outcome.actions)
        may_redirect = redirects and not spam and not forwarding.looped(message, account.address)
        rejection = next((a for a in outcome.actions if isinstance(a, Reject)), None)
        plan = _plan(outcome, account.id, mailbox, may_redirect, keep_rejected=spam)
        if (
            not plan.targets
            and not outcome.error
            and any(isinstance(a, Discard) for a in outcome.actions)
        ):
            _log.info("discarded by sieve", account=account.address)
        if plan.targets:
            results = await self._store.deliver(copy, info, list(plan.targets))
            if plan.create:
                results = await self._created(account, copy, info, results, plan.create)
            results = await self._missing_mailboxes(copy, info, results, mailbox)
            if not any(r.status is DeliveryStatus.STORED for r in results):
                _log.info(
                    "local delivery deferred",
                    account=account.address,
                    status=results[0].status.value,
                )
                return results[0].status
            for result in results:
                if result.status is not DeliveryStatus.STORED:
                    # Another copy was stored: the message is delivered, this folder missed it.
                    _log.warning(
                        "sieve copy not stored",
                        account=account.address,
                        mailbox=result.target.mailbox,
                        status=result.status.value,
                    )
            if self._quota_warnings is not None:
                await self._quota_warnings.after_delivery(account, results)
        if outcome.duplicates and outcome.error is None:
            await self._track_duplicates(account, outcome)
        if redirects:
            if not may_redirect:
                reason = "spam" if spam else "forwarding loop"
                _log.info("sieve redirect not done", account=account.address, reason=reason)
            elif plan.redirects:
                await self._redirect(
                    account, plan.redirects, sender, message, headers, submitted, requiretls
                )
        # RFC 8689 §6: a reply or notification reoriginated from a REQUIRETLS message keeps
        # the tag (Incoming.requiretls); §5: so does a refusal report, a non-delivery one.
        notifies = [action for action in outcome.actions if isinstance(action, Notify)]
        if plan.vacation is not None or notifies:
            # The header read once, and only for a script that answers or notifies.
            incoming = vacation.Incoming.of(sender, message, requiretls=requiretls)
            if plan.vacation is not None:
                await self._reply(account, plan.vacation, incoming, addressed, spam=spam)
            for action in notifies:
                await self._notify(account, action, incoming, addressed, spam=spam)
        if rejection is not None:
            refusal = Refusal(
                account, rejection.reason, message, sender, recipient.original, requiretls
            )
            if rejection.extended and refusals is not None and sender and not spam:
                refusals.append(refusal)
            else:
                await self._refuse(refusal, extended=rejection.extended, spam=spam)
        await self._read_reports(recipient, message, spam)
        return DeliveryStatus.STORED

    async def _read_reports(self, recipient: LocalRecipient, message: bytes, spam: bool) -> None:
        """A copy for a report address (``[received_reports]``): its DMARC / TLS-RPT reports
        are read and kept — after the copy is stored, so a report never changes where the
        message goes (:mod:`pillarbox.policy.receivedreports`). Spam is not read: a report
        the filter doubts is left for a person to look at."""
        if self._reports is None:
            return
        # Every local copy passes here: the RCPT's local part, split off without a parse
        # (routing parsed it already; a quoted one names no report address).
        local = recipient.original.rpartition("@")[0]
        if recipient.tag is not None:
            local = local[: -len(recipient.tag) - 1]
        if not self._reports.wants(local):
            return
        if spam:
            _log.info("received report not read: spam", rcpt=recipient.original)
            return
        await self._reports.take(recipient.original, message)

    async def send_refusals(self, refusals: Sequence[Refusal]) -> None:
        """The reports of erejects intake could not refuse in SMTP (RFC 5429 §2.2)."""
        for refusal in refusals:
            await self._refuse(refusal, extended=True, spam=False)

    async def _refuse(self, refusal: Refusal, *, extended: bool, spam: bool) -> None:
        """RFC 5429 §2.1.2: the refusal as a DSN to the envelope sender (module notes)."""
        account, sender = refusal.account, refusal.sender
        if spam:
            _log.info("sieve reject not done: spam, kept", account=account.address)
            return
        if not sender:
            _log.info("sieve reject: null sender, discarded", account=account.address)
            return
        report = bounce.refusal_for(
            refusal.message,
            sender,
            refusal.rcpt,
            refusal.reason,
            hostname=self._hostname,
            now=datetime.now(UTC),
            max_original=self._bounce_original_limit,
        )
        await bounce.send_report(
            self._store, self._router, self._wakeup, report, sender, requiretls=refusal.requiretls
        )
        _log.info("rejected by sieve", account=account.address, ereject=extended)

    async def _compiled(self, text: str) -> Script | SieveError:
        """The compiled script from the cache; compiled once per text, a large one on the
        worker pool (a 64 KB script takes ~50 ms: the loop keeps serving meanwhile)."""
        entry = self._scripts.lookup(text)
        if entry is None:
            if len(text) <= INLINE_COMPILE_SIZE:
                entry = self._scripts.compile(text)
            else:
                entry = await run_blocking(self._scripts.compile, text)
            self._scripts.remember(text, entry)
        return entry

    async def _includes(
        self, account: Account, script: Script
    ) -> dict[IncludeKey, Script | SieveError | None]:
        """The scripts ``script`` may include, and those they may, compiled (module notes):
        None for one that does not exist; at most ``max_includes`` read."""
        found: dict[IncludeKey, Script | SieveError | None] = {}
        pending = sorted(script.includes)
        while pending and len(found) < self._limits.max_includes:
            key = pending.pop(0)
            if key in found:
                continue
            text = await self._included_text(account, key)
            if text is None or isinstance(text, SieveError):
                found[key] = text
                continue
            entry = found[key] = await self._compiled(text)
            if isinstance(entry, Script):
                pending.extend(sorted(entry.includes - found.keys()))
        return found

    async def _included_text(self, account: Account, key: IncludeKey) -> str | SieveError | None:
        location, name = key
        if location == "personal":
            stored = await self._store.get_sieve_script(account.id, name)
            return None if stored is None else stored.content
        if self._global_dir is None:
            return None
        data = await run_blocking(read_global_script, self._global_dir, name, self._max_script_size)
        if data is None:
            return None
        if len(data) > self._max_script_size:
            return SieveError(1, f"script larger than {self._max_script_size} bytes")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return SieveError(1, "script is not UTF-8")

    async def _outcome(
        self,
        account: Account,
        copy: bytes,
        info: MessageInfo,
        sender: str,
        rcpt: str,
        remote: tuple[str, str],
        fields: bytes,
        filing: Filing | None,
    ) -> Outcome:
        """The script's decision, or the implicit keep when there is no script or it fails.
        ``fields`` are the ones delivery put on top of ``copy``, hidden from the script;
        ``filing`` the policy's decision (spamtest reads its verdict)."""
        stored = await self._store.active_sieve_script(account.id)
        if stored is None:
            return Outcome((Keep(),))
        try:
            script = unwrap(await self._compiled(stored.content))
        except SieveError as exc:
            _log.warning(
                "sieve script does not compile: kept",
                account=account.address,
                script=stored.name,
                error=str(exc),
            )
            return Outcome((Keep(),), error=str(exc))
        includes = await self._includes(account, script) if script.includes else None
        scripts = [script, *(s for s in (includes or {}).values() if isinstance(s, Script))]
        requires = frozenset().union(*(s.requires for s in scripts))
        boxes: list[Mailbox] = []
        if requires & {"mailbox", "special-use"}:  # RFC 5490 §3.1, RFC 8579 §3
            boxes = await self._store.list_mailboxes(account.id)
        duplicates: frozenset[str] = frozenset()
        now = datetime.now(UTC).astimezone()  # RFC 5260: the local zone, time of delivery
        if "duplicate" in requires:  # RFC 7352
            duplicates = await self._store.sieve_duplicates(account.id, now)
        metadata: dict[MetadataKey, str] = {}
        if requires & {"mboxmetadata", "servermetadata"}:  # RFC 5490 §3.3–§3.6
            metadata = await self._metadata(account, scripts)
        view = SieveMessage.of(
            copy,
            info,
            envelope_from=sender,
            envelope_to=rcpt,
            mailboxes=[m.name for m in boxes],
            environment=environment.items(
                host=self._hostname, remote_ip=remote[0], remote_host=remote[1]
            ),
            delivery_fields=len(scan_header(fields, 0, len(fields)).fields),
            metadata=metadata,
            spam=self._spam_status(filing),
            duplicates=duplicates,
            special_uses={m.name: m.special_use.lower() for m in boxes if m.special_use},
        )
        try:
            outcome = await run_sized(
                len(copy),
                script.run,
                view,
                self._limits,
                now=now,
                includes=includes,
                name=stored.name,
            )
        except Exception as exc:  # a fault of ours must not lose the message: keep it
            _log.error("sieve run failed: kept", account=account.address, error=repr(exc))
            return Outcome((Keep(),), error=repr(exc))
        if outcome.error is not None:
            _log.info(
                "sieve runtime error: kept",
                account=account.address,
                script=stored.name,
                error=outcome.error,
            )
        return outcome

    def _spam_status(self, filing: Filing | None) -> SpamStatus | None:
        """RFC 5235: the policy's verdict on this copy, from the field intake kept with its
        decision (None: not judged — submitted, injected, the policy off)."""
        found = _VERDICT.search(filing.fields) if filing is not None else None
        if found is None:
            return None
        junk, reject = self._spam_thresholds
        return SpamStatus(float(found[1]), found[2].decode().lower(), junk, reject)

    async def _track_duplicates(self, account: Account, outcome: Outcome) -> None:
        """RFC 7352 §3.1: the ids of a run that finished, recorded once its copy is stored
        (a deferred copy runs the script again); :seconds bounded by the site (§3.3)."""
        now = datetime.now(UTC)
        entries = []
        for tracked in outcome.duplicates:
            seconds = self._duplicate_seconds if tracked.seconds is None else tracked.seconds
            period = timedelta(seconds=min(seconds, self._duplicate_max_seconds))
            entries.append((tracked.key, now + period))
        await self._store.track_sieve_duplicates(
            account.id, entries, now, self._duplicate_max_entries
        )

    async def _special_use_targets(self, account: Account, outcome: Outcome) -> Outcome:
        """RFC 8579 §4: a fileinto :specialuse goes to the account's mailbox with that
        attribute when there is one, else to the mailbox it names."""
        boxes = await self._store.list_mailboxes(account.id)
        actions = []
        for action in outcome.actions:
            if isinstance(action, FileInto) and action.specialuse:
                found = _special_use_mailbox(boxes, action.specialuse)
                if found is not None:
                    action = replace(action, mailbox=found, create=False)
            actions.append(action)
        return replace(outcome, actions=tuple(actions))

    async def _fcc(self, account: Account, fcc: Fcc, sent: bytes) -> None:
        """RFC 8580 §3: the copy of a reply or notification sent, stored in the mailbox
        :fcc names (or the one with its :specialuse), with its :flags; a missing mailbox is
        created only with :create — else the copy is not kept, logged (it was sent)."""
        boxes = await self._store.list_mailboxes(account.id)
        name = _special_use_mailbox(boxes, fcc.specialuse) if fcc.specialuse else None
        target = DeliveryTarget(account.id, name or fcc.mailbox, frozenset(fcc.flags))
        info = await parse(sent)
        [result] = await self._store.deliver(sent, info, [target])
        if result.status is DeliveryStatus.NO_MAILBOX and fcc.create:
            create = {target.mailbox: _special_use(fcc.specialuse)}
            [result] = await self._created(account, sent, info, [result], create)
        if result.status is DeliveryStatus.STORED:
            _log.info("sieve fcc stored", account=account.address, mailbox=target.mailbox)
        else:
            _log.warning(
                "sieve fcc not stored",
                account=account.address,
                mailbox=target.mailbox,
                status=result.status.value,
            )

    async def _metadata(
        self, account: Account, scripts: Sequence[Script]
    ) -> dict[MetadataKey, str]:
        """The METADATA entries (RFC 5464) the scripts' tests name, read-only: only those,
        unless a name is made of variables (then all of the account's), with the computed
        ones IMAP shows (``/shared/admin``, ``/private/specialuse``). Values are UTF-8 text
        to a script; octets that are not are replaced."""
        named = [compiled.metadata for compiled in scripts]
        boxes = {m.name: m for m in await self._store.list_mailboxes(account.id)}
        entries: dict[MetadataKey, bytes] = {}
        targets: set[str | None]
        if any(n is None for n in named):
            names_by_id = {m.id: m.name for m in boxes.values()}
            for box_id, stored in (await self._store.list_metadata(account.id)).items():
                owner = names_by_id.get(box_id) if box_id else None
                if box_id and owner is None:
                    continue  # deleted meanwhile
                entries.update(((owner, n), v) for n, v in stored.items())
            targets = {None, *boxes}
        else:
            wanted = frozenset().union(*(n for n in named if n is not None))
            keys = {k for k in (metadata_key(m, n) for m, n in wanted) if k is not None}
            targets = {m for m, _ in keys if m is None or m in boxes}
            for target in targets:
                names = sorted(n for m, n in keys if m == target)
                mailbox_id = None if target is None else boxes[target].id
                try:
                    stored = await self._store.get_metadata(account.id, mailbox_id, names)
                except NotFound:
                    continue  # deleted meanwhile: it has no entries
                entries.update(((target, n), v) for n, v in stored.items() if n in names)
        for target in targets:
            computed = computed_entries(
                None if target is None else boxes[target], self._metadata_admin
            )
            entries.update(((target, n), v) for n, v in computed.items())
        return {k: v.decode("utf-8", "replace") for k, v in entries.items()}

    async def _notify(
        self,
        account: Account,
        action: Notify,
        incoming: vacation.Incoming,
        addressed: Sequence[str],
        *,
        spam: bool,
    ) -> None:
        """RFC 5435 / RFC 5436: the notification (:mod:`.notification`); ``:from`` is used
        only if the account may send as it (RFC 5435 §3.3: others ignored), as vacation's."""
        author = ""
        if action.from_ is not None:
            if await self._may_send_as(account, action.from_):
                author = sieve_address(action.from_)
            else:
                _log.info("sieve notify :from ignored: not the account's", account=account.address)
        sent = await notification.send(
            self._store,
            self._router,
            self._wakeup,
            action,
            incoming,
            account,
            own=addressed,
            sender=author,
            spam=spam,
            now=datetime.now(UTC),
            max_field_size=self._limits.max_header_size,
        )
        if sent is not None and action.fcc is not None:
            await self._fcc(account, action.fcc, sent)

    async def _created(
        self,
        account: Account,
        copy: bytes,
        info: MessageInfo,
        results: list[DeliveryResult],
        create: dict[str, SpecialUse | None],
    ) -> list[DeliveryResult]:
        """RFC 5490 §3.2: targets a ``fileinto :create`` named that were missing, created and
        delivered again; those that cannot be created stay missing (see the module notes)."""
        out: list[DeliveryResult] = []
        for result in results:
            target = result.target
            if result.status is not DeliveryStatus.NO_MAILBOX or target.mailbox not in create:
                out.append(result)
                continue
            count = len(await self._store.list_mailboxes(account.id))
            if count >= self._create_max_mailboxes:
                _log.warning(
                    "sieve fileinto :create: too many mailboxes",
                    account=account.address,
                    mailbox=target.mailbox,
                    limit=self._create_max_mailboxes,
                )
                out.append(result)
                continue
            try:
                await self._store.create_mailbox(account.id, target.mailbox, create[target.mailbox])
            except InvalidName as exc:
                _log.info(
                    "sieve fileinto :create: invalid name",
                    account=account.address,
                    mailbox=target.mailbox,
                    error=str(exc),
                )
                out.append(result)
                continue
            except AlreadyExists:
                pass  # made meanwhile (another delivery, an IMAP CREATE): deliver into it
            else:
                _log.info("sieve fileinto :create", account=account.address, mailbox=target.mailbox)
            [again] = await self._store.deliver(copy, info, [target])
            out.append(again)
        return out

    async def _missing_mailboxes(
        self,
        copy: bytes,
        info: MessageInfo,
        results: list[DeliveryResult],
        mailbox: str,
    ) -> list[DeliveryResult]:
        """Targets whose mailbox does not exist go to the policy's mailbox, and a missing
        policy mailbox (an account that deleted its Junk) to INBOX — each mailbox once."""
        stored = {r.target.mailbox.upper() for r in results if r.status is DeliveryStatus.STORED}
        out = [r for r in results if r.status is not DeliveryStatus.NO_MAILBOX]
        for result in results:
            if result.status is not DeliveryStatus.NO_MAILBOX:
                continue
            target = result.target
            fallback = mailbox if target.mailbox != mailbox else INBOX
            if target.mailbox == INBOX or fallback.upper() in stored:
                out.append(result)
                continue
            _log.info(
                "sieve fileinto: no such mailbox, kept",
                account_id=target.account_id,
                mailbox=target.mailbox,
                kept_in=fallback,
            )
            [again] = await self._store.deliver(
                copy, info, [DeliveryTarget(target.account_id, fallback, target.flags)]
            )
            if again.status is DeliveryStatus.NO_MAILBOX and fallback != INBOX:
                [again] = await self._store.deliver(
                    copy, info, [DeliveryTarget(target.account_id, INBOX, target.flags)]
                )
            if again.status is DeliveryStatus.STORED:
                stored.add(again.target.mailbox.upper())
            out.append(again)
        return out

    async def _redirect(
        self,
        account: Account,
        addresses: Sequence[str],
        sender: str,
        message: bytes,
        headers: bytes,
        submitted: bool,
        requiretls: bool,
    ) -> None:
        """RFC 5228 §4.2: the message as it arrived, to each address, as a forward would go
        (RFC 8689 §6: with its REQUIRETLS tag, as a mediator applies it to what it resends)."""
        domain = sender.rpartition("@")[2]
        hosted_sender = bool(sender) and await self._router.is_hosted(domain)
        targets = tuple(NewQueueRecipient(a) for a in addresses)
        await self.forwarder.send(
            Forward(account.address, targets, headers),
            sender,
            message,
            submitted=submitted,
            hosted_sender=hosted_sender,
            now=datetime.now(UTC),
            requiretls=requiretls,
        )
        self._wakeup.set()
        _log.info("redirected by sieve", account=account.address, recipients=len(addresses))

    async def _reply(
        self,
        account: Account,
        action: Vacation,
        incoming: vacation.Incoming,
        addressed: Sequence[str],
        *,
        spam: bool,
    ) -> None:
        if action.seconds is not None:
            # RFC 6131 §2: a site minimum (at most a day), the :days maximum on top.
            seconds = max(action.seconds, self._vacation_min_seconds)
            period = timedelta(seconds=min(seconds, self._max_days * 86400))
        else:
            days = action.days if action.days is not None else self._default_days
            period = timedelta(days=min(max(days, 1), self._max_days))  # RFC 5230 §4.1
        reply_from = ""
        if action.from_ is not None:
            if await self._may_send_as(account, action.from_):
                reply_from = action.from_
            else:
                _log.info(
                    "sieve vacation :from ignored: not the account's", account=account.address
                )
        request = vacation.ScriptReply(
            reason=action.reason,
            handle=action.handle,
            period=period,
            subject=action.subject or "",
            sender=reply_from,
            addresses=action.addresses,
            mime=action.mime,
        )
        sent = await self.responder.respond_to_script(
            incoming,
            account,
            addressed,
            request,
            datetime.now(UTC),
            spam=spam,
        )
        if sent is not None and action.fcc is not None:
            await self._fcc(account, action.fcc, sent)

    async def _may_send_as(self, account: Account, text: str) -> bool:
        try:
            address = parse_address(sieve_address(text))
        except InvalidName:
            return False
        return await self._router.owns(account, address)


def _plan(
    outcome: Outcome,
    account_id: int,
    mailbox: str,
    may_redirect: bool,
    *,
    keep_rejected: bool = False,
) -> _Plan:
    """The targets, redirects and reply of an outcome; ``mailbox`` is the policy's choice.
    Redirects that may not be done, and a reject when ``keep_rejected`` (spam), leave a keep
    behind when nothing else stores the copy."""
    targets: dict[str, DeliveryTarget] = {}
    redirects: list[str] = []
    reply: Vacation | None = None
    create: dict[str, SpecialUse | None] = {}

    def add(name: str, flags: tuple[str, ...]) -> None:
        key = name.upper() if name.upper() == INBOX else name
        earlier = targets.get(key)
        merged = frozenset(flags) | (earlier.flags if earlier else frozenset())
        targets[key] = DeliveryTarget(account_id, name, merged)

    kept_for_redirect = False
    for action in outcome.actions:
        if isinstance(action, Keep):
            add(mailbox, action.flags)
        elif isinstance(action, FileInto):
            add(action.mailbox, action.flags)
            if action.create:
                create[action.mailbox] = _special_use(action.specialuse)
        elif isinstance(action, Redirect):
            if may_redirect:
                redirects.append(action.address)
            elif not action.copy:
                kept_for_redirect = True
        elif isinstance(action, Vacation):
            reply = action
        elif isinstance(action, Reject) and keep_rejected:
            kept_for_redirect = True
    if kept_for_redirect and not targets:
        add(mailbox, ())
    return _Plan(tuple(targets.values()), tuple(redirects), reply, create)


def _special_use(flag: str | None) -> SpecialUse | None:
    """The attribute a created mailbox gets (RFC 8579 §4), if it is one a mailbox of ours
    can have (RFC 6154's but \\All and \\Flagged, which are views, not folders)."""
    return next((u for u in SpecialUse if flag is not None and u.lower() == flag.lower()), None)


def _special_use_mailbox(boxes: Sequence[Mailbox], flag: str) -> str | None:
    return next(
        (m.name for m in boxes if m.special_use and m.special_use.lower() == flag.lower()), None
    )
