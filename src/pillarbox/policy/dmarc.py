"""DMARC (RFC 9989, which obsoletes RFC 7489): policy records, organizational domains,
identifier alignment, and the disposition a failing message asks for.

Implementation notes:

- **Policy discovery** is a configuration choice (:class:`Discovery`), default ``psl``:

  - ``psl`` (RFC 7489 §6.6.3): ``_dmarc.<author domain>``, then — only if that has no usable
    record — ``_dmarc.<organizational domain>``; no intermediate labels, so results match
    RFC 7489 receivers (and ``dmarc-cases.yml``, written from RFC 7489). Organizational
    domain (RFC 7489 §3.2): the public suffix plus one label, from the Public Suffix List
    shipped in the ``publicsuffixlist`` package (no download at run time). A name that is
    itself a public suffix has none and aligns with nothing but itself.
  - ``treewalk`` (RFC 9989 §4.10): at most eight queries from the author domain up to its
    top label, stopping at a record with ``psd=y`` or ``psd=n``; the organizational domain is
    chosen by §4.10.2 (``psd=n`` record, else one label below a ``psd=y`` one, else the
    record with the fewest labels), and the record applied is the author domain's, else the
    organizational domain's, else the PSD's (§4.10.1). Relaxed alignment walks from each
    authenticated identifier as well (§4.10.2); walks are cached per message.

  Of the TXT records at a name, those not starting ``v=DMARC1`` are discarded; more than one
  left means none there. A temporary DNS failure is ``temperror`` and never treated as "no
  policy" (RFC 9989 §5.3.6).
- **Records** (RFC 9989 §4.7, §4.8): tags after ``v`` in any order, unknown tags ignored,
  values case-insensitive; an invalid value of an optional tag falls back to its default; a
  missing or invalid ``p`` (or invalid ``sp``/``np``) keeps the record only if it has a
  valid ``rua``, as ``p=none`` (§4.10.1). ``np`` defaults to ``sp``, which defaults to ``p``.
  Records and organizational domains are computed once per distinct text (bounded LRUs).
- **Testing** (RFC 9989 §4.7 ``t``, Appendix A.6): ``t=y`` applies the policy one step
  lower. RFC 9989 dropped ``pct``; legacy records are still honoured as RFC 7489 §6.6.4 did
  (a message not selected by ``pct`` gets the next lower policy), but only when the record
  has no ``t`` tag — a record with ``t`` speaks RFC 9989 and its ``pct`` is ignored. Either
  way the policy is lowered once, never twice.
- **Alignment** (RFC 9989 §3.2.10): relaxed compares organizational domains, strict compares
  names; both case-insensitively. Only *passing* SPF and DKIM results count (§4.4).
- **Disposition** (§4.10.1): a failing message gets ``p`` when the record is the author
  domain's; below a record found higher up, ``np`` if the author domain does not exist
  (NXDOMAIN, §3.2.13 and RFC 8020 — one MX query, since any answer but NXDOMAIN means the name
  exists, Appendix A.4), else ``sp``. Several author domains: each is evaluated and the
  strictest outcome wins (RFC 9989 §5.3.1 allows going on). No From field: ``permerror``,
  disposition reject. A local exception (:func:`local_exception`, used for trusted ARC
  sealers) keeps the ``fail`` and lifts the policy.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from publicsuffixlist import PublicSuffixList

from pillarbox.dns.resolver import DnsTemporaryError, MxStatus, Resolver
from pillarbox.errors import InvalidName


class DmarcResult(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NONE = "none"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


class Disposition(enum.StrEnum):
    """What the domain owner asks receivers to do with failing mail (RFC 9989 §4.7 ``p``)."""

    NONE = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"


class Discovery(enum.StrEnum):
    """How the policy record and organizational domains are found (RFC 9990 §3.1.1.5
    ``discovery_method``)."""

    PSL = "psl"
    TREEWALK = "treewalk"


class Override(enum.StrEnum):
    """Why a failing message got less than the published policy (RFC 9990 §3.1.6)."""

    #: ``t=y`` (RFC 9989 §4.7).
    TEST_MODE = "policy_test_mode"
    #: Not selected by a legacy ``pct`` (RFC 7489 §6.6.4): no RFC 9990 type of its own.
    OTHER = "other"
    #: A local exception: a trusted ARC sealer vouched for the message (RFC 8617 §7.2.1).
    LOCAL_POLICY = "local_policy"


_SEVERITY = {Disposition.NONE: 0, Disposition.QUARANTINE: 1, Disposition.REJECT: 2}
_LOWER = {Disposition.REJECT: Disposition.QUARANTINE, Disposition.QUARANTINE: Disposition.NONE}


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    """A parsed policy record with defaults filled in (RFC 9989 §4.7)."""

    p: Disposition
    sp: Disposition
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    fo: str = "0"
    rf: str = "afrf"
    ri: int = 86400
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()
    #: Policy for non-existent subdomains (RFC 9989 §4.7; absent: ``sp``). None only while
    #: constructing: :meth:`__post_init__` fills it in.
    np: Disposition | None = None
    #: ``t=y``: testing, apply one step less (RFC 9989 §4.7).
    t: bool = False
    #: ``y``: published by a public suffix operator; ``n``: an organizational domain; ``u``.
    psd: str = "u"

    def __post_init__(self) -> None:
        if self.np is None:
            object.__setattr__(self, "np", self.sp)  # RFC 9989 §4.7: np absent → sp

    @property
    def nonexistent(self) -> Disposition:
        """``np``, typed without the None it has only while constructing."""
        assert self.np is not None  # filled in by __post_init__
        return self.np

    def text(self) -> str:
        """The record in canonical form, every tag spelled out (what reports quote, and what
        :func:`parse_record` reads back to an equal record). ``t`` is written only as ``t=y``:
        a written ``t=n`` would make a reader ignore a legacy ``pct``."""
        tags = [
            f"p={self.p.value}",
            f"sp={self.sp.value}",
            f"np={self.nonexistent.value}",
            f"adkim={self.adkim}",
            f"aspf={self.aspf}",
            f"pct={self.pct}",
            f"fo={self.fo}",
            f"rf={self.rf}",
            f"ri={self.ri}",
            f"psd={self.psd}",
        ]
        if self.t:
            tags.append("t=y")
        tags += [
            f"{name}={','.join(uris)}"
            for name, uris in (("rua", self.rua), ("ruf", self.ruf))
            if uris
        ]
        return "; ".join(["v=DMARC1", *tags])


@dataclass(frozen=True, slots=True)
class AuthIdentity:
    """One authenticated identifier handed to DMARC: an SPF or DKIM result and its domain."""

    result: str
    domain: str


@dataclass(frozen=True, slots=True)
class DmarcOutcome:
    result: DmarcResult
    disposition: Disposition
    #: The author (RFC5322.From) domain evaluated; for several, the one that decided.
    domain: str = ""
    #: The record applied (None without one).
    record: DmarcRecord | None = None
    reason: str = ""
    #: The identifiers that aligned and passed ("spf", "dkim").
    aligned: tuple[str, ...] = field(default=())
    #: Where the record was found: ``domain``, its organizational domain or its public suffix
    #: domain (the DMARC Policy Domain that reports are about, RFC 9990 §3.1.2).
    policy_domain: str = ""
    #: Set when a failing message got less than the published policy.
    override: Override | None = None
    discovery: Discovery = Discovery.PSL
    #: What the aggregate report says about ``override`` (RFC 9990 §3.1.6 ``comment``).
    override_comment: str = ""


# -- organizational domains by the PSL (RFC 7489 §3.2) -------------------------------------------


@functools.cache
def _psl() -> PublicSuffixList:
    return PublicSuffixList()  # the list shipped in the package: no network


def _normal(domain: str) -> str:
    name = domain.strip().lower()
    return name[:-1] if name.endswith(".") else name


#: Organizational domains kept (:func:`organizational_domain`): DMARC alignment and sender
#: reputation ask for the same few thousand domains again and again.
ORG_DOMAIN_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=ORG_DOMAIN_CACHE_SIZE)
def organizational_domain(domain: str) -> str | None:
    """The registered domain under the public suffix, lowercase; None if ``domain`` is itself
    a public suffix (or empty). Cached: the shipped list never changes while we run."""
    name = _normal(domain)
    if not name:
        return None
    result: str | None = _psl().privatesuffix(name)
    return result


def aligned(author: str, identifier: str, mode: str) -> bool:
    """RFC 7489 §3.1 with PSL organizational domains: strict = same name; relaxed = same
    organizational domain."""
    a, b = _normal(author), _normal(identifier)
    if not a or not b:
        return False
    if a == b:
        return True
    if mode == "s":
        return False
    org = organizational_domain(a)
    return org is not None and org == organizational_domain(b)


# -- records (RFC 9989 §4.7, §4.8) ---------------------------------------------------------------

_VERSION = re.compile(r"\s*v\s*=\s*DMARC1\s*(;|$)")
_URI = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:[^\s,!]+(![0-9]+[kmgt]?)?")
_FO = re.compile(r"[01ds](:[01ds])*")


def _uris(value: str) -> tuple[str, ...]:
    uris = tuple(u.strip() for u in value.split(",") if u.strip())
    return tuple(u for u in uris if _URI.fullmatch(u))


def _policy(value: str | None) -> Disposition | None:
    if value is None:
        return None
    try:
        return Disposition(value.strip().lower())
    except ValueError:
        return None


def _is_number(text: str) -> bool:
    """RFC 9989 §4.7 numbers are 1*DIGIT, and DIGIT is ASCII (RFC 5234 B.1): ``str.isdigit``
    alone also takes "²" (which ``int`` refuses) and "٥" (which it reads as 5)."""
    return text.isascii() and text.isdigit()


#: Distinct policy records kept parsed (:func:`parse_record`; records are immutable values).
RECORD_CACHE_SIZE = 2048


@functools.lru_cache(maxsize=RECORD_CACHE_SIZE)
def parse_record(text: str) -> DmarcRecord | None:
    """A DMARC record, or None if ``text`` is not a usable one (see the module notes); cached
    by the exact text."""
    if not _VERSION.match(text):
        return None
    tags: dict[str, str] = {}
    for part in text.split(";")[1:]:
        name, equals, value = part.partition("=")
        if equals and name.strip():
            tags.setdefault(name.strip().lower(), value.strip())
    rua = _uris(tags.get("rua", ""))
    p = _policy(tags.get("p"))
    if p is None:
        if not rua:
            return None  # RFC 9989 §4.10.1: no usable policy and no one to report to
        p = Disposition.NONE
    sp = _policy(tags.get("sp")) if "sp" in tags else p
    np = _policy(tags.get("np")) if "np" in tags else sp
    if sp is None or np is None:
        if not rua:
            return None  # §4.10.1: an invalid sp or np is treated like an invalid p
        # §4.10.1: "act as if a record containing p=none was retrieved" — for every policy.
        p = sp = np = Disposition.NONE
    adkim = tags.get("adkim", "r").lower()
    aspf = tags.get("aspf", "r").lower()
    testing = tags.get("t", "").lower()
    pct_text = tags.get("pct", "100")
    pct = int(pct_text) if _is_number(pct_text) and int(pct_text) <= 100 else 100
    if testing in ("y", "n"):
        pct = 100  # RFC 9989 Appendix A.6: t replaces pct; a record with t is a 9989 one
    ri_text = tags.get("ri", "86400")
    fo = tags.get("fo", "0")
    psd = tags.get("psd", "u").lower()
    return DmarcRecord(
        p=p,
        sp=sp,
        np=np,
        adkim=adkim if adkim in ("r", "s") else "r",
        aspf=aspf if aspf in ("r", "s") else "r",
        pct=pct,
        fo=fo if _FO.fullmatch(fo) else "0",
        rf=tags.get("rf", "afrf").lower() or "afrf",
        ri=int(ri_text) if _is_number(ri_text) else 86400,
        rua=rua,
        ruf=_uris(tags.get("ruf", "")),
        t=testing == "y",
        psd=psd if psd in ("y", "n", "u") else "u",
    )


def is_dmarc_text(text: str) -> bool:
    """The TXT data starts with the ``v=DMARC1`` tag (RFC 9989 §4.10 step 2; RFC 9990 §4
    step 6 for report consent records)."""
    return _VERSION.match(text) is not None


def select_record(texts: Sequence[str]) -> DmarcRecord | None:
    """RFC 9989 §4.10 step 2: discard non-DMARC records; exactly one must remain."""
    candidates = [t for t in texts if is_dmarc_text(t)]
    if len(candidates) != 1:
        return None
    return parse_record(candidates[0])


async def _lookup(resolver: Resolver, domain: str) -> DmarcRecord | None:
    try:
        records = await resolver.txt(f"_dmarc.{domain}")
    except InvalidName:
        return None
    return select_record([r.decode("utf-8", "replace") for r in records])


async def discover(resolver: Resolver, domain: str) -> tuple[DmarcRecord | None, bool]:
    """RFC 7489 discovery: the policy for author domain ``domain`` and whether it came from
    the organizational domain; raises :class:`DnsTemporaryError`."""
    record = await _lookup(resolver, domain)
    if record is not None:
        return record, False
    org = organizational_domain(domain)
    if org is None or org == domain:
        return None, False
    return await _lookup(resolver, org), True


# -- the DNS tree walk (RFC 9989 §4.10) ----------------------------------------------------------

#: RFC 9989 §4.10 step 4: names longer than this are cut to it after the first query.
MAX_WALK_LABELS = 7


def walk_targets(domain: str) -> list[str]:
    """The names a tree walk from ``domain`` queries, in order (RFC 9989 §4.10 steps 3–7):
    ``domain``, then — cut to seven labels if it has eight or more — each parent to the top
    label; never more than eight."""
    labels = _normal(domain).split(".")
    if not labels or not labels[0]:
        return []
    targets = [".".join(labels)]
    rest = labels[1:] if len(labels) < MAX_WALK_LABELS + 1 else labels[-MAX_WALK_LABELS:]
    while rest:
        targets.append(".".join(rest))
        rest = rest[1:]
    return targets


class TreeWalk:
    """Tree walks for one message, each ``_dmarc`` name queried at most once."""

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver
        self._records: dict[str, DmarcRecord | None] = {}

    async def record(self, domain: str) -> DmarcRecord | None:
        """The one valid record at ``_dmarc.<domain>``; raises :class:`DnsTemporaryError`."""
        if domain not in self._records:
            self._records[domain] = await _lookup(self._resolver, domain)
        return self._records[domain]

    async def walk(self, start: str) -> list[tuple[str, DmarcRecord]]:
        """The records a walk from ``start`` finds, longest name first; it stops at one with
        ``psd=y`` or ``psd=n`` (§4.10 steps 2 and 6)."""
        found: list[tuple[str, DmarcRecord]] = []
        for target in walk_targets(start):
            record = await self.record(target)
            if record is not None:
                found.append((target, record))
                if record.psd in ("y", "n"):
                    break
        return found

    async def organizational_domain(self, start: str) -> str:
        """RFC 9989 §4.10.2: the organizational domain of ``start``."""
        name = _normal(start)
        found = await self.walk(name)
        for domain, record in found:
            if record.psd == "n":
                return domain  # step 1
            if record.psd == "y" and domain != name:
                return name.removesuffix("." + domain).rpartition(".")[2] + "." + domain  # 2
        if found:
            return found[-1][0]  # step 3: the record with the fewest labels
        return name  # no record anywhere: the name itself

    async def discover(self, author: str) -> tuple[DmarcRecord | None, str]:
        """RFC 9989 §4.10.1: the record applied to ``author`` and where it was found — the
        author domain, else its organizational domain, else its public suffix domain."""
        own = await self.record(author)
        if own is not None:
            return own, author
        found = dict(await self.walk(author))
        org = await self.organizational_domain(author)
        if org in found:
            return found[org], org
        psd = [(d, r) for d, r in found.items() if r.psd == "y"]
        if psd:
            return psd[0][1], psd[0][0]
        return None, ""

    async def aligned(self, author: str, identifier: str, mode: str) -> bool:
        """RFC 9989 §4.10.2: strict = same name; relaxed = same organizational domain, each
        found by a tree walk."""
        a, b = _normal(author), _normal(identifier)
        if not a or not b:
            return False
        if a == b:
            return True
        if mode == "s":
            return False
        org = await self.organizational_domain(a)
        # A name's organizational domain is the name or one of its parents: an identifier
        # that is neither ``org`` nor below it cannot share it, and needs no walk of its own.
        if b != org and not b.endswith("." + org):
            return False
        return org == await self.organizational_domain(b)


# -- evaluation (RFC 9989 §4.4, §4.10.1, §5.3) ---------------------------------------------------


async def _exists(resolver: Resolver, domain: str) -> bool:
    """RFC 9989 §3.2.13: a name exists unless the DNS answers NXDOMAIN (here to an MX query:
    NODATA, an empty non-terminal and any record mean it exists, Appendix A.4)."""
    answer = await resolver.mx(domain)
    if answer.status is MxStatus.TEMPORARY:
        raise DnsTemporaryError(domain, answer.reason)
    return answer.status is not MxStatus.NO_DOMAIN


async def _evaluate_domain(
    resolver: Resolver,
    domain: str,
    spf: AuthIdentity | None,
    dkim: Sequence[AuthIdentity],
    rng: random.Random,
    discovery: Discovery,
) -> DmarcOutcome:
    domain = _normal(domain)
    walk = TreeWalk(resolver)
    try:
        if discovery is Discovery.TREEWALK:
            record, policy_domain = await walk.discover(domain)
        else:
            record, inherited = await discover(resolver, domain)
            policy_domain = (organizational_domain(domain) or domain) if inherited else domain
        if record is None:
            return DmarcOutcome(
                DmarcResult.NONE, Disposition.NONE, domain, None, "no policy", discovery=discovery
            )
        passing: list[str] = []
        candidates = [("spf", spf, record.aspf)] if spf is not None else []
        candidates += [("dkim", d, record.adkim) for d in dkim]
        for method, identity, mode in candidates:
            if identity is None or identity.result != "pass" or method in passing:
                continue
            if discovery is Discovery.TREEWALK:
                good = await walk.aligned(domain, identity.domain, mode)
            else:
                good = aligned(domain, identity.domain, mode)
            if good:
                passing.append(method)
        if passing:
            return DmarcOutcome(
                DmarcResult.PASS,
                Disposition.NONE,
                domain,
                record,
                "aligned",
                tuple(sorted(passing, key=("spf", "dkim").index)),
                policy_domain,
                discovery=discovery,
            )
        if policy_domain == domain:
            policy = record.p
        elif record.nonexistent is not record.sp and not await _exists(resolver, domain):
            policy = record.nonexistent  # RFC 9989 §4.10.1: np for a non-existent subdomain
        else:
            policy = record.sp
    except DnsTemporaryError as exc:
        return DmarcOutcome(
            DmarcResult.TEMPERROR, Disposition.NONE, domain, None, str(exc), discovery=discovery
        )
    override = None
    if policy is not Disposition.NONE:
        if record.t:
            override = Override.TEST_MODE  # RFC 9989 §4.7 t=y: one level below
        elif record.pct < 100 and rng.random() * 100 >= record.pct:
            override = Override.OTHER  # RFC 7489 §6.6.4: not sampled, the next lower policy
    reason = "no aligned SPF or DKIM pass"
    comment = ""
    if override is not None:
        policy = _LOWER.get(policy, Disposition.NONE)
        comment = "t=y" if override is Override.TEST_MODE else f"not sampled (pct={record.pct})"
        reason += f" ({comment})"
    return DmarcOutcome(
        DmarcResult.FAIL,
        policy,
        domain,
        record,
        reason,
        (),
        policy_domain,
        override,
        discovery,
        comment,
    )


def local_exception(outcome: DmarcOutcome, comment: str) -> DmarcOutcome:
    """``outcome`` with its policy not applied, as a local policy exception (RFC 9989 §5.4:
    receivers may deviate, and say why in aggregate reports, RFC 9990 §3.1.6). The result stays
    ``fail``; only a failure whose policy would act is changed."""
    if outcome.result is not DmarcResult.FAIL or outcome.disposition is Disposition.NONE:
        return outcome
    return replace(
        outcome,
        disposition=Disposition.NONE,
        reason=f"{outcome.reason}; policy not applied: {comment}",
        override=Override.LOCAL_POLICY,
        override_comment=comment,
    )


async def evaluate(
    resolver: Resolver,
    author_domains: Sequence[str],
    spf: AuthIdentity | None,
    dkim: Sequence[AuthIdentity],
    *,
    rng: random.Random | None = None,
    discovery: Discovery = Discovery.PSL,
    timeout: float | None = None,
) -> DmarcOutcome:
    """DMARC for a message whose From field names ``author_domains`` (see the module notes);
    lookups that take longer than ``timeout`` seconds in all make it ``temperror`` (a tree
    walk may ask dozens of names for one message)."""
    if not author_domains:
        return DmarcOutcome(
            DmarcResult.PERMERROR, Disposition.REJECT, "", None, "no From address (RFC 5322)"
        )
    generator = rng if rng is not None else random.Random()
    domains = list(dict.fromkeys(a.lower().rstrip(".") for a in author_domains))
    try:
        async with asyncio.timeout(timeout):
            outcomes = [
                await _evaluate_domain(resolver, d, spf, dkim, generator, discovery)
                for d in domains
            ]
    except TimeoutError:
        reason = f"DMARC lookups took more than {timeout} s"
        return DmarcOutcome(
            DmarcResult.TEMPERROR, Disposition.NONE, domains[0], None, reason, discovery=discovery
        )
    order = [
        DmarcResult.PASS,
        DmarcResult.NONE,
        DmarcResult.TEMPERROR,
        DmarcResult.FAIL,
        DmarcResult.PERMERROR,
    ]
    return max(outcomes, key=lambda o: (_SEVERITY[o.disposition], order.index(o.result)))
