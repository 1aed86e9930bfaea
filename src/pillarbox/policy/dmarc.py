"""DMARC (RFC 7489; RFC 9989 where it only clarifies): policy records, organizational domains,
identifier alignment, and the disposition a failing message asks for.

Implementation notes:

- **Policy discovery** (RFC 7489 §6.6.3): ``_dmarc.<author domain>``, then — only if that
  has no usable record — ``_dmarc.<organizational domain>``; no intermediate labels (RFC 9989's
  tree walk is not followed, so results match RFC 7489 receivers). Of the TXT records there,
  those not starting ``v=DMARC1`` are discarded; more than one left means no policy (step 4).
  A temporary DNS failure is ``temperror`` and never treated as "no policy" (§11.3).
- **Organizational domain** (§3.2): the public suffix plus one label, from the Public Suffix
  List shipped in the ``publicsuffixlist`` package (no download at run time). A name that is
  itself a public suffix has none and aligns with nothing but itself.
- **Records** (§6.3, §6.6.3 step 6): tags after ``v`` in any order, unknown tags ignored,
  values case-insensitive; an invalid value of an optional tag falls back to its default
  ("syntax errors in the remainder of the record SHOULD be discarded in favor of default
  values"); a missing or invalid ``p`` keeps the record only if it has a valid ``rua``, as
  ``p=none``.
- **Alignment** (§3.1): relaxed compares organizational domains, strict compares names; both
  case-insensitively. Only *passing* SPF and DKIM results count (§4.2).
- **Disposition** (§6.6.4): a failing message gets ``p`` (``sp`` when the record came from
  the organizational domain and the author domain is below it); if the message is not
  selected by ``pct``, the next lower policy. Several author domains (RFC 7489 §6.6.1): each is
  evaluated and the strictest outcome wins. No From field: ``permerror``, disposition reject.
"""

from __future__ import annotations

import enum
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

from publicsuffixlist import PublicSuffixList

from pillarbox.dns.resolver import DnsTemporaryError, Resolver
from pillarbox.errors import InvalidName


class DmarcResult(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NONE = "none"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


class Disposition(enum.StrEnum):
    """What the domain owner asks receivers to do with failing mail (RFC 7489 §6.3 ``p``)."""

    NONE = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"


_SEVERITY = {Disposition.NONE: 0, Disposition.QUARANTINE: 1, Disposition.REJECT: 2}
_LOWER = {Disposition.REJECT: Disposition.QUARANTINE, Disposition.QUARANTINE: Disposition.NONE}


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    """A parsed policy record with defaults filled in (RFC 7489 §6.3)."""

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

    def text(self) -> str:
        """The record in canonical form, every tag spelled out (what reports quote, and what
        :func:`parse_record` reads back to an equal record)."""
        tags = [
            f"p={self.p.value}",
            f"sp={self.sp.value}",
            f"adkim={self.adkim}",
            f"aspf={self.aspf}",
            f"pct={self.pct}",
            f"fo={self.fo}",
            f"rf={self.rf}",
            f"ri={self.ri}",
        ]
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
    #: Where the record was found: ``domain`` or its organizational domain (the DMARC Policy
    #: Domain that aggregate reports are about, RFC 9990 §3.1.2).
    policy_domain: str = ""


# -- organizational domains (RFC 7489 §3.2) ------------------------------------------------------


@cache
def _psl() -> PublicSuffixList:
    return PublicSuffixList()  # the list shipped in the package: no network


def organizational_domain(domain: str) -> str | None:
    """The registered domain under the public suffix, lowercase; None if ``domain`` is itself
    a public suffix (or empty)."""
    name = domain.strip().lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        return None
    result: str | None = _psl().privatesuffix(name)
    return result


def aligned(author: str, identifier: str, mode: str) -> bool:
    """RFC 7489 §3.1: strict = same name; relaxed = same organizational domain."""
    a = author.strip().lower().rstrip(".")
    b = identifier.strip().lower().rstrip(".")
    if not a or not b:
        return False
    if a == b:
        return True
    if mode == "s":
        return False
    org = organizational_domain(a)
    return org is not None and org == organizational_domain(b)


# -- records (RFC 7489 §6.3, §6.4) ---------------------------------------------------------------

_VERSION = re.compile(r"\s*v\s*=\s*DMARC1\s*(;|$)")
_URI = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:[^\s,!]+(![0-9]+[kmgt]?)?")


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


def parse_record(text: str) -> DmarcRecord | None:
    """A DMARC record, or None if ``text`` is not a usable one (see the module notes)."""
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
            return None  # §6.6.3 step 6: no usable policy and no one to report to
        p = Disposition.NONE
    sp = _policy(tags.get("sp")) if "sp" in tags else p
    if sp is None:
        if not rua:
            return None
        sp = p
    adkim = tags.get("adkim", "r").lower()
    aspf = tags.get("aspf", "r").lower()
    pct_text = tags.get("pct", "100")
    pct = int(pct_text) if pct_text.isdigit() and int(pct_text) <= 100 else 100
    ri_text = tags.get("ri", "86400")
    fo = tags.get("fo", "0")
    return DmarcRecord(
        p=p,
        sp=sp,
        adkim=adkim if adkim in ("r", "s") else "r",
        aspf=aspf if aspf in ("r", "s") else "r",
        pct=pct,
        fo=fo if re.fullmatch(r"[01ds](:[01ds])*", fo) else "0",
        rf=tags.get("rf", "afrf").lower() or "afrf",
        ri=int(ri_text) if ri_text.isdigit() else 86400,
        rua=rua,
        ruf=_uris(tags.get("ruf", "")),
    )


def is_dmarc_text(text: str) -> bool:
    """The TXT data starts with the ``v=DMARC1`` tag (RFC 7489 §6.6.3 step 3; RFC 9990 §4
    step 6 for report consent records)."""
    return _VERSION.match(text) is not None


def select_record(texts: Sequence[str]) -> DmarcRecord | None:
    """RFC 7489 §6.6.3 steps 3–4: discard non-DMARC records; exactly one must remain."""
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
    """The policy for author domain ``domain`` and whether it came from the organizational
    domain; raises :class:`DnsTemporaryError`."""
    record = await _lookup(resolver, domain)
    if record is not None:
        return record, False
    org = organizational_domain(domain)
    if org is None or org == domain:
        return None, False
    return await _lookup(resolver, org), True


# -- evaluation (RFC 7489 §4.2, §6.6) ------------------------------------------------------------


async def _evaluate_domain(
    resolver: Resolver,
    domain: str,
    spf: AuthIdentity | None,
    dkim: Sequence[AuthIdentity],
    rng: random.Random,
) -> DmarcOutcome:
    domain = domain.strip().lower().rstrip(".")
    try:
        record, inherited = await discover(resolver, domain)
    except DnsTemporaryError as exc:
        return DmarcOutcome(DmarcResult.TEMPERROR, Disposition.NONE, domain, None, str(exc))
    if record is None:
        return DmarcOutcome(DmarcResult.NONE, Disposition.NONE, domain, None, "no policy")
    passing: list[str] = []
    if spf is not None and spf.result == "pass" and aligned(domain, spf.domain, record.aspf):
        passing.append("spf")
    if any(d.result == "pass" and aligned(domain, d.domain, record.adkim) for d in dkim):
        passing.append("dkim")
    policy_domain = (organizational_domain(domain) or domain) if inherited else domain
    if passing:
        return DmarcOutcome(
            DmarcResult.PASS,
            Disposition.NONE,
            domain,
            record,
            "aligned",
            tuple(passing),
            policy_domain,
        )
    policy = record.sp if inherited else record.p
    sampled = record.pct >= 100 or rng.random() * 100 < record.pct
    if not sampled:
        policy = _LOWER.get(policy, Disposition.NONE)  # §6.6.4: the next lower policy
    reason = "no aligned SPF or DKIM pass" + ("" if sampled else f" (pct={record.pct})")
    return DmarcOutcome(DmarcResult.FAIL, policy, domain, record, reason, (), policy_domain)


async def evaluate(
    resolver: Resolver,
    author_domains: Sequence[str],
    spf: AuthIdentity | None,
    dkim: Sequence[AuthIdentity],
    *,
    rng: random.Random | None = None,
) -> DmarcOutcome:
    """DMARC for a message whose From field names ``author_domains`` (see the module notes)."""
    if not author_domains:
        return DmarcOutcome(
            DmarcResult.PERMERROR, Disposition.REJECT, "", None, "no From address (RFC 5322)"
        )
    generator = rng if rng is not None else random.Random()
    outcomes = [
        await _evaluate_domain(resolver, d, spf, dkim, generator)
        for d in dict.fromkeys(a.lower().rstrip(".") for a in author_domains)
    ]
    order = [
        DmarcResult.PASS,
        DmarcResult.NONE,
        DmarcResult.TEMPERROR,
        DmarcResult.FAIL,
        DmarcResult.PERMERROR,
    ]
    return max(outcomes, key=lambda o: (_SEVERITY[o.disposition], order.index(o.result)))
