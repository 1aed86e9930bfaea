"""The inbound policy: from an arriving message to a verdict per recipient account.

Implementation notes:

- Two stages, because SMTP gives one reply per message but accounts differ. :meth:`InboundPolicy.
  assess` runs once per message: SPF (MAIL FROM, or HELO for the null sender), DKIM, ARC and
  DNSBL concurrently under one deadline, then DMARC on their results, the rules, and the
  message's tokens. :meth:`InboundPolicy.verdict` runs per recipient account: the global and
  the account's classifier model, the account's sender reputation and allow/block lists (an
  allow entry stands only for a From its domain vouched for: :mod:`.senderlists`),
  fetched in one store round trip (``Store.spam_evidence``, whose token counts are cached
  and checked against each model's generation), summed with the message's reasons. Each
  token's clue is kept per state of the two models (:mod:`.cluecache`), so the store is asked
  only for the counts of tokens without one, and scoring is look-ups.
- The message is refused at DATA only when every recipient's verdict is ``reject``
  (:func:`pillarbox.queue.intake` decides); otherwise each copy goes to INBOX or Junk.
- Clients in ``trusted_networks`` (loopback by default: local injection) skip the DNS checks,
  the forged-sender rule and the header facts (:mod:`.headerfacts`: fitted on mail from remote
  senders, they read the minimal header a local script writes, without Date, Message-ID or
  mailer, as spam); the content classifier, rules and lists still apply. A message from a file
  (``pillarbox spam evaluate``) gets the header facts: it is mail as collected, what they were
  fitted on.
- DNS trouble never refuses mail: temperror results score nothing; a DMARC temperror applies
  no policy (RFC 7489 §6.6.3 and the local choice recorded in ``dmarc-cases.yml``).
- Everything is explained: each signal is a :class:`~.verdict.Reason`; the message carries
  ``Authentication-Results`` (RFC 8601) and ``X-Pillarbox-Spam``.
- With ``dmarc_reports`` on, each DMARC pass or fail under a record that has ``rua`` is kept in
  the store (one small write per such message) for the aggregate report job
  (:mod:`.reporting`); messages refused at DATA are counted too (RFC 9990 §3.1). With
  ``dmarc_failure_reports`` on, each evaluation is handed to the failure reporter
  (:mod:`.failurereporting`), which decides and sends in the background.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from pillarbox.blocking import run_sized
from pillarbox.concurrently import concurrently
from pillarbox.config import Config, PolicySection
from pillarbox.dns.resolver import DnsResolver, Resolver
from pillarbox.mail.headers import ScannedFields
from pillarbox.mail.model import MessageInfo
from pillarbox.policy import (
    arc,
    dkim,
    dmarc,
    dmarcreport,
    dnsbl,
    reputation,
    rules,
    senderlists,
    spf,
)
from pillarbox.policy.authresults import AuthSummary
from pillarbox.policy.authresults import header as auth_header
from pillarbox.policy.classifier import (
    DEFAULT_SETTINGS,
    Classification,
    ClassifierSettings,
    message_tokens,
)
from pillarbox.policy.cluecache import ClueCache, ModelsState
from pillarbox.policy.failurereport import FailedMessage, FailureSink
from pillarbox.policy.headerfacts import POINTS, header_reasons, message_facts
from pillarbox.policy.verdict import Action, Reason, Thresholds, Verdict, decide
from pillarbox.store.interface import Store
from pillarbox.store.types import INBOX, Filing, SenderListKind, SpamCounts

#: Where spam goes (every account has it, see ``store.types.DEFAULT_MAILBOXES``).
JUNK_MAILBOX = "Junk"


@dataclass(frozen=True, slots=True, kw_only=True)
class Scores:
    """What each finding adds to the spam score (negative: evidence of ham)."""

    #: Multiplies the classifier's (2p - 1): certain spam adds this much, certain ham removes it.
    bayes: float = 10.0
    spf_fail: float = 1.5
    spf_softfail: float = 0.5
    dkim_fail: float = 1.0
    dmarc_pass: float = -1.0
    gtube: float = 1000.0
    attachment_only: float = 2.5
    forged_local_sender: float = 4.0
    no_from: float = 1.0
    #: Points of each header fact (:mod:`.headerfacts`); a fact without points adds nothing.
    header_facts: Mapping[str, float] = field(default_factory=lambda: POINTS)


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicySettings:
    """Everything :class:`InboundPolicy` needs; built from ``[policy]`` by the config glue."""

    thresholds: Thresholds = field(default_factory=Thresholds)
    scores: Scores = field(default_factory=Scores)
    reputation: reputation.ReputationScores = reputation.DEFAULT_SCORES
    classifier: ClassifierSettings = DEFAULT_SETTINGS
    check_spf: bool = True
    check_dkim: bool = True
    check_dmarc: bool = True
    check_arc: bool = True
    use_classifier: bool = True
    use_reputation: bool = True
    use_header_facts: bool = True
    #: Refuse mail without a From address (DMARC permerror, RFC 7489 §6.6.1).
    reject_without_from: bool = False
    trusted_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    ip_zones: tuple[dnsbl.DnsblZone, ...] = ()
    domain_zones: tuple[dnsbl.DnsblZone, ...] = ()
    #: Seconds for the DNS checks of one message (SPF, DKIM keys, ARC keys, DNSBL together), and
    #: again for its DMARC lookups (which need the SPF and DKIM results first).
    timeout: float = 10.0
    #: Link domains of the body looked up in ``domain_zones``.
    max_link_domains: int = 10
    spf_limits: spf.SpfLimits = spf.DEFAULT_LIMITS
    dkim_limits: dkim.DkimLimits = dkim.DEFAULT_LIMITS
    arc_limits: arc.ArcLimits = arc.DEFAULT_LIMITS
    #: Keep each DMARC evaluation whose record asks for aggregate reports (``rua``).
    dmarc_reports: bool = False
    dmarc_discovery: dmarc.Discovery = dmarc.Discovery.PSL
    #: ARC sealers whose passing chain exempts a DMARC failure from its policy (lowercase).
    arc_trusted_sealers: frozenset[str] = frozenset()


def _zones(items: Sequence[str]) -> tuple[dnsbl.DnsblZone, ...]:
    """``zone=score`` items (validated by the config loader)."""
    zones = []
    for item in items:
        zone, _, score = item.partition("=")
        zones.append(dnsbl.DnsblZone(zone.strip().strip("."), float(score)))
    return tuple(zones)


def settings_from_config(section: PolicySection) -> PolicySettings:
    """The ``[policy]`` section as :class:`PolicySettings`."""
    return PolicySettings(
        thresholds=Thresholds(junk=section.junk_threshold, reject=section.reject_threshold),
        scores=Scores(bayes=section.bayes_weight),
        classifier=ClassifierSettings(account_weight=section.account_weight),
        check_spf=section.spf,
        check_dkim=section.dkim,
        check_dmarc=section.dmarc,
        dmarc_discovery=dmarc.Discovery(section.dmarc_discovery),
        arc_trusted_sealers=frozenset(d.lower().rstrip(".") for d in section.arc_trusted_sealers),
        check_arc=section.arc,
        use_classifier=section.classifier,
        use_reputation=section.reputation,
        use_header_facts=section.header_facts,
        reject_without_from=section.reject_without_from,
        trusted_networks=section.trusted_networks,
        ip_zones=_zones(section.dnsbl_ip_zones),
        domain_zones=_zones(section.dnsbl_domain_zones),
        timeout=section.timeout,
    )


def inbound_policy(
    config: Config,
    store: Store,
    *,
    failure_reports: Callable[[Resolver], FailureSink] | None = None,
) -> InboundPolicy:
    """The server's policy, with its own resolver (and cache) on ``dns.nameserver``;
    ``failure_reports`` builds the DMARC failure reporter on that resolver."""
    resolver = DnsResolver(nameserver=config.dns.nameserver, timeout=config.dns.timeout)
    settings = replace(
        settings_from_config(config.policy), dmarc_reports=config.dmarc_reports.enabled
    )
    sink = failure_reports(resolver) if failure_reports is not None else None
    return InboundPolicy(
        settings, store, resolver, hostname=config.server.hostname, failure_reports=sink
    )


@dataclass(frozen=True, slots=True)
class Arrival:
    """How a message reached the MX: the SMTP facts the checks need."""

    client_ip: str
    helo: str
    #: MAIL FROM, "" for the null reverse-path.
    mail_from: str


@dataclass(frozen=True, slots=True)
class Assessment:
    """Everything about a message that does not depend on the recipient."""

    auth: AuthSummary
    reasons: tuple[Reason, ...]
    tokens: frozenset[str]
    sender: reputation.SenderFacts
    author_domains: tuple[str, ...]
    #: Set when the message must be refused whoever it is for (DMARC p=reject, no From).
    forced: Action | None = None
    override: str = ""
    refusal: str = ""
    #: The header facts' reasons (:mod:`.headerfacts`), kept apart: they were fitted as a
    #: correction to the classifier's score, so a verdict uses them only beside one.
    header_facts: tuple[Reason, ...] = ()

    def auth_header(self, our_id: str) -> bytes:
        return auth_header(our_id, self.auth)


def author_domains(info: MessageInfo) -> tuple[str, ...]:
    """The domains of the From field's addresses (RFC 7489 §6.6.1), lowercase, in order."""
    domains = [
        a.host.lower().rstrip(".")
        for a in info.envelope.from_
        if a.mailbox is not None and a.host is not None and a.host != "MISSING_DOMAIN"
    ]
    return tuple(dict.fromkeys(domains))


def client_address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client's address, an IPv4-mapped IPv6 one as the IPv4 address it is; None for one
    that does not parse (a UNIX socket peer)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_networks(
    ip: str, networks: Collection[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    address = client_address(ip)
    return address is not None and any(address in net for net in networks)


def _auth_reasons(summary: AuthSummary, scores: Scores) -> list[Reason]:
    out: list[Reason] = []
    if summary.spf is not None:
        result = summary.spf.result
        if result is spf.SpfResult.FAIL:
            out.append(Reason("SPF_FAIL", scores.spf_fail, summary.spf.domain))
        elif result is spf.SpfResult.SOFTFAIL:
            out.append(Reason("SPF_SOFTFAIL", scores.spf_softfail, summary.spf.domain))
    failed = [s for s in summary.dkim if s.result is dkim.DkimResult.FAIL]
    if failed and not any(s.result is dkim.DkimResult.PASS for s in summary.dkim):
        out.append(Reason("DKIM_FAIL", scores.dkim_fail, failed[0].domain))
    if summary.dmarc is not None and summary.dmarc.result is dmarc.DmarcResult.PASS:
        out.append(Reason("DMARC_PASS", scores.dmarc_pass, summary.dmarc.domain))
    return out


def _link_domains(tokens: Collection[str], limit: int) -> list[str]:
    """Registered domains of the body's links, from the ``url:`` tokens."""
    found: list[str] = []
    for token in sorted(tokens):
        if token.startswith("url:") and token.count(".") == 1 and ":" not in token[4:]:
            found.append(token[4:])
    return found[:limit]


#: Client addresses whose trust :meth:`InboundPolicy._is_trusted` keeps.
_TRUSTED_CLIENTS_KEPT = 4096

#: Any token does (the classifier's own look like ``word`` or ``header:…``).
_WARM_UP_TOKEN = "warm-up"


class InboundPolicy:
    """See the module notes. One per server; holds the resolver (and its cache)."""

    def __init__(
        self,
        settings: PolicySettings,
        store: Store,
        resolver: Resolver,
        *,
        hostname: str,
        rng: random.Random | None = None,
        failure_reports: FailureSink | None = None,
    ) -> None:
        self.settings = settings
        self._failure_reports = failure_reports
        self._store = store
        self._resolver = resolver
        self.hostname = hostname
        self._rng = rng if rng is not None else random.Random()
        self._trusted = [ipaddress.ip_network(n, strict=False) for n in settings.trusted_networks]
        #: Client address → in ``trusted_networks``: parsing the address cost ~2 µs per message.
        self._trusted_clients: dict[str, bool] = {}
        self._clues = ClueCache()

    @property
    def resolver(self) -> Resolver:
        """The policy's resolver: greylisting's SPF check at RCPT shares its cache, so the
        check at DATA finds the answers there."""
        return self._resolver

    async def assess(
        self,
        arrival: Arrival | None,
        raw: bytes,
        info: MessageInfo,
        *,
        hosted_domains: Collection[str] = (),
        header: ScannedFields | None = None,
    ) -> Assessment:
        """The recipient-independent part (see the module notes). ``raw`` is the message as
        received, before our trace fields; without an ``arrival`` (a message from a file:
        ``pillarbox spam evaluate``) only the content is judged. ``header``: the parse's read
        of the header (:func:`~pillarbox.mail.parse.parse_message_fields`), read again
        without it."""
        s = self.settings
        authors = author_domains(info)
        # Tokenising a large message is kept off the event loop (STYLE §9, see run_sized).
        tokens = (
            await run_sized(len(raw), message_tokens, raw, info, header=header)
            if s.use_classifier
            else frozenset()
        )
        trusted = arrival is None or self._is_trusted(arrival.client_ip)
        summary = AuthSummary()
        listings: list[dnsbl.Listing] = []
        if arrival is not None and not trusted:
            summary, listings = await self._authenticate(arrival, raw, authors, tokens)
        reasons = _auth_reasons(summary, s.scores)
        reasons += [
            Reason("DNSBL", listing.score, f"{listing.zone}")
            for listing in listings
            if listing.listed
        ]
        dmarc_pass = summary.dmarc is not None and summary.dmarc.result is dmarc.DmarcResult.PASS
        for rule in (
            rules.gtube(raw, info, s.scores.gtube),
            rules.attachment_only(info, s.scores.attachment_only),
            rules.no_from(authors, s.scores.no_from),
            None
            if trusted
            else rules.forged_local_sender(
                authors, hosted_domains, vouched=dmarc_pass, score=s.scores.forged_local_sender
            ),
        ):
            if rule is not None:
                reasons.append(rule)
        facts: list[Reason] = []
        if s.use_header_facts and (arrival is None or not trusted):
            envelope = arrival.mail_from if arrival is not None else None
            found = message_facts(raw, info, envelope, header)
            facts = header_reasons(found, s.scores.header_facts)
        forced, override, refusal = self._forced(summary, authors)
        first_from = info.from_addr.lower() if authors else ""
        verified = [d.domain for d in summary.dkim if d.result is dkim.DkimResult.PASS and d.domain]
        if summary.spf is not None and summary.spf.result is spf.SpfResult.PASS:
            verified.append(summary.spf.domain)
        sender = reputation.SenderFacts(
            from_address=first_from,
            from_verified=dmarc_pass,
            verified_domains=reputation.verified_domains(verified),
            client_ip="" if arrival is None or trusted else arrival.client_ip,
        )
        return Assessment(
            summary,
            tuple(reasons),
            tokens,
            sender,
            authors,
            forced,
            override,
            refusal,
            tuple(facts),
        )

    def _is_trusted(self, client_ip: str) -> bool:
        """:func:`in_networks` of the trusted networks, kept per address (at most
        :data:`_TRUSTED_CLIENTS_KEPT`: past that, all are forgotten)."""
        known = self._trusted_clients.get(client_ip)
        if known is None:
            if len(self._trusted_clients) >= _TRUSTED_CLIENTS_KEPT:
                self._trusted_clients.clear()
            known = self._trusted_clients[client_ip] = in_networks(client_ip, self._trusted)
        return known

    def _forced(
        self, summary: AuthSummary, authors: Sequence[str]
    ) -> tuple[Action | None, str, str]:
        if not authors and self.settings.reject_without_from:
            return Action.REJECT, "no-from", "message has no From address (RFC 5322 §3.6)"
        outcome = summary.dmarc
        if outcome is None or outcome.result is not dmarc.DmarcResult.FAIL:
            return None, "", ""
        if outcome.disposition is dmarc.Disposition.REJECT:
            return (
                Action.REJECT,
                "dmarc-reject",
                f"DMARC policy of {outcome.domain} rejects this message",
            )
        if outcome.disposition is dmarc.Disposition.QUARANTINE:
            return Action.JUNK, "dmarc-quarantine", ""
        return None, "", ""

    async def _authenticate(
        self, arrival: Arrival, raw: bytes, authors: Sequence[str], tokens: Collection[str]
    ) -> tuple[AuthSummary, list[dnsbl.Listing]]:
        s = self.settings
        resolver = self._resolver

        async def nothing() -> None:
            return None

        spf_task = (
            spf.check_mail_from(
                resolver,
                arrival.client_ip,
                arrival.mail_from,
                arrival.helo,
                receiver=self.hostname,
                limits=s.spf_limits,
            )
            if s.check_spf
            else nothing()
        )
        dkim_task = (
            dkim.verify(resolver, raw, limits=s.dkim_limits)
            if s.check_dkim or s.check_dmarc
            else nothing()
        )
        arc_task = arc.verify(resolver, raw, limits=s.arc_limits) if s.check_arc else nothing()
        envelope_domain = arrival.mail_from.rpartition("@")[2]
        domains = [*authors, envelope_domain, *_link_domains(tokens, s.max_link_domains)]
        dnsbl_task = dnsbl.check(
            resolver,
            client_ip=arrival.client_ip,
            ip_zones=s.ip_zones,
            domains=domains,
            domain_zones=s.domain_zones,
            timeout=s.timeout,
        )
        try:
            async with asyncio.timeout(s.timeout):
                spf_out, dkim_out, arc_out, listings = await asyncio.gather(
                    spf_task, dkim_task, arc_task, dnsbl_task
                )
        except TimeoutError:
            # Each check has its own deadline below this one; this is the backstop.
            return AuthSummary(), []
        signatures = tuple(dkim_out or ())
        dmarc_out = None
        if s.check_dmarc and authors:
            spf_identity = (
                dmarc.AuthIdentity(spf_out.result.value, spf_out.domain)
                if spf_out is not None and arrival.mail_from
                else None
            )
            dkim_identities = [dmarc.AuthIdentity(r.result.value, r.domain) for r in signatures]
            dmarc_out = await dmarc.evaluate(
                resolver,
                authors,
                spf_identity,
                dkim_identities,
                rng=self._rng,
                discovery=s.dmarc_discovery,
                timeout=s.timeout,
            )
            if arc_out is not None and arc.trusted_pass(arc_out, s.arc_trusted_sealers, authors):
                dmarc_out = dmarc.local_exception(dmarc_out, arc.trusted_comment(arc_out))
        summary = AuthSummary(
            spf=spf_out,
            spf_is_helo=not arrival.mail_from,
            dkim=signatures if s.check_dkim else (),
            dkim_checked=s.check_dkim,
            dmarc=dmarc_out,
            arc=arc_out,
        )
        if s.dmarc_reports and dmarc_out is not None:
            kept = dmarcreport.observation(
                dmarc_out,
                AuthSummary(spf=spf_out, spf_is_helo=not arrival.mail_from, dkim=signatures),
                source_ip=arrival.client_ip,
                mail_from=arrival.mail_from,
                received=datetime.now(UTC),
            )
            if kept is not None:
                await self._store.record_dmarc_observation(kept)
        if self._failure_reports is not None and dmarc_out is not None:
            self._failure_reports.consider(
                FailedMessage(
                    outcome=dmarc_out,
                    auth=replace(summary, dkim=signatures),
                    source_ip=arrival.client_ip,
                    mail_from=arrival.mail_from,
                    arrival=datetime.now(UTC),
                    raw=raw,
                )
            )
        return summary, listings

    async def warm_up(self) -> None:
        """Have the store read the global model before mail arrives. A small model is read
        whole on its first lookup (``pillarbox.store.spamcache``), and without this the first
        messages after a start waited for that read: in the SMTP bench's first row (policy on)
        p99 19–58 ms and worst 121–400 ms, with it 16–30 and 76–178 (docs/performance.md,
        "Session 6"). Asking for one token is what starts the read."""
        if self.settings.use_classifier:
            await self._store.spam_model(None, (_WARM_UP_TOKEN,))

    async def judge(
        self, assessment: Assessment, account_ids: Sequence[int], *, whole: bool = True
    ) -> Judgement:
        """Judge the message's one :meth:`assess`-ment for each account; with ``whole`` (SMTP:
        one reply covers all recipients) refused only if every account's verdict is
        ``reject``. Without (LMTP answers each recipient) there is a copy for every account,
        its verdict saying whether that one is refused."""
        verdicts = await concurrently([self.verdict(assessment, a) for a in account_ids])
        if whole and verdicts and all(v.action is Action.REJECT for v in verdicts):
            return Judgement(verdicts[0].refusal, {})
        auth = assessment.auth_header(self.hostname)
        copies = {
            account_id: Copy(JUNK_MAILBOX if v.is_spam else INBOX, v.header() + auth, v)
            for account_id, v in zip(account_ids, verdicts, strict=True)
        }
        return Judgement("", copies)

    async def record_correspondents(self, account_id: int, addresses: Sequence[str]) -> None:
        """The account sent mail to ``addresses``: their replies are welcome (reputation)."""
        if self.settings.use_reputation and addresses:
            keys = reputation.correspondent_keys(addresses)
            await self._store.record_sender_reputation(account_id, keys, SpamCounts(ham=1))

    async def verdict(self, assessment: Assessment, account_id: int) -> Verdict:
        """The verdict for one recipient account (see the module notes)."""
        s = self.settings
        keys = reputation.sender_keys(assessment.sender) if s.use_reputation else []
        tokens = assessment.tokens
        kept = self._clues.current(account_id)
        # One store round trip for everything the verdict reads (models, reputation, lists),
        # counts only for the tokens that have no clue kept (see .cluecache).
        asked = tokens if kept is None else kept.missing(tokens)
        evidence = await self._store.spam_evidence(account_id, list(asked), keys)
        reasons = list(assessment.reasons)
        if s.use_classifier:
            table = self._clues.table(account_id, ModelsState.of(evidence, s.classifier))
            # The kept table (the usual case) lacks at most what was asked: no second pass.
            missing = asked if table is kept or not table.trained else table.missing(tokens)
            if missing is not asked and not missing <= asked:
                # A model was trained since the kept clues were worked out: all anew.
                evidence = await self._store.spam_evidence(account_id, list(tokens), keys)
                table = self._clues.table(account_id, ModelsState.of(evidence, s.classifier))
                missing = table.missing(tokens)
            self._clues.add(table, missing, evidence.global_model[1], evidence.account_model[1])
            bayes = self._bayes(table.classify(tokens))
            reasons += bayes
            if bayes:  # no trained model: the facts alone are outside what they were fitted on
                reasons += assessment.header_facts
        reasons += reputation.reasons(assessment.sender, evidence.reputation, s.reputation)
        forced, override = assessment.forced, assessment.override
        entry = senderlists.chosen(evidence.sender_entries, assessment.sender.from_address)
        if forced is None and entry is not None:
            if entry.kind is SenderListKind.BLOCK:
                forced, override = Action.JUNK, "block-list"
                reasons.append(Reason("BLOCK_LIST", 0.0, entry.pattern))
            elif senderlists.vouched(assessment.sender) and not _dmarc_failed(assessment):
                forced, override = Action.INBOX, "allow-list"
                reasons.append(Reason("ALLOW_LIST", 0.0, entry.pattern))
            else:  # a From anyone could have written (senderlists' notes): the score decides
                reasons.append(Reason("ALLOW_LIST_UNVERIFIED", 0.0, entry.pattern))
        return decide(
            reasons, s.thresholds, forced=forced, override=override, refusal=assessment.refusal
        )

    async def explained_clues(self, assessment: Assessment, account_id: int) -> list[ExplainedClue]:
        """The clues the classifier combines for the message and the account, strongest
        first, each with the models' counts that made its probability: why ``BAYES`` is what
        it is (``pillarbox spam explain``). Every token's counts are read anew, not the kept
        tables', so they are the store's as of this call."""
        if not self.settings.use_classifier:
            return []
        tokens = assessment.tokens
        evidence = await self._store.spam_evidence(account_id, list(tokens), [])
        table = ModelsState.of(evidence, self.settings.classifier).new_table()
        theirs, mine = evidence.global_model[1], evidence.account_model[1]
        table.add(tokens, theirs, mine)
        nothing = SpamCounts()
        return [
            ExplainedClue(token, p, theirs.get(token, nothing), mine.get(token, nothing))
            for token, p in table.chosen(tokens)
        ]

    def _bayes(self, result: Classification) -> list[Reason]:
        if not result.trained:
            return []
        score = round(self.settings.scores.bayes * (2 * result.probability - 1), 2)
        return [Reason("BAYES", score, f"{result.probability:.3f}")]


@dataclass(frozen=True, slots=True)
class ExplainedClue:
    """One token of a message the classifier took as evidence: its spam probability, and in
    how many ham and spam messages the global model and the account's model saw it."""

    token: str
    probability: float
    global_counts: SpamCounts
    account_counts: SpamCounts


@dataclass(frozen=True, slots=True)
class Copy:
    """Where one account's copy goes, and the fields to put on top of it."""

    mailbox: str
    headers: bytes
    verdict: Verdict

    @property
    def filing(self) -> Filing:
        """What delivery needs of this decision, and what a queued retry of it keeps."""
        return Filing(self.mailbox, self.verdict.is_spam, self.headers)


@dataclass(frozen=True, slots=True)
class Judgement:
    """The decision on one arriving message: refused (``refusal`` set), or a copy per account."""

    refusal: str
    copies: Mapping[int, Copy]


def _dmarc_failed(assessment: Assessment) -> bool:
    outcome = assessment.auth.dmarc
    return outcome is not None and outcome.result is dmarc.DmarcResult.FAIL
