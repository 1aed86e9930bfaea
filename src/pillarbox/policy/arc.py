"""Authenticated Received Chain (RFC 8617): verifying a chain, and sealing one when we forward.

Implementation notes:

- Verification is dkimpy's (chain order, instance numbering, the cv= rules of RFC 8617 §5.2),
  fed like DKIM: the keys of every ARC-Seal and ARC-Message-Signature are fetched first,
  concurrently, through our resolver (:func:`pillarbox.policy.dkim.prefetch_keys`), then dkimpy
  runs against that table. A chain of more than :attr:`ArcLimits.max_instances` sets is
  ``fail`` without any lookup (RFC 8617 §4.2.1: i= is at most 50).
- Results are RFC 8601's ``arc=`` values: ``none`` (no ARC sets), ``pass``, ``fail``. A key
  lookup that failed temporarily makes the chain ``fail`` with that reason in the comment; the
  chain is only advice to DMARC, never a reason to refuse mail here.
- A chain that passes, whose newest seal is by a sealer in ``policy.arc_trusted_sealers`` and
  whose newest ARC-Authentication-Results records ``dmarc=pass`` for the message's From
  domain, exempts a message failing DMARC here from the domain's policy (:func:`trusted_pass`;
  RFC 8617 §7.2.1: what is trusted is the sealer's assessment, so one that saw DMARC fail
  exempts nothing; RFC 9989 §5.4), a local policy exception the aggregate report records.
- Sealing (:func:`seal`) adds the next ARC set to a message that carries our own
  ``Authentication-Results`` (the AAR copies it, RFC 8617 §4.1.1); dkimpy signs with RSA-SHA256
  (its only ARC algorithm), relaxed/relaxed canonicalisation, its RSA step done by OpenSSL
  with dkimpy's own result (:mod:`pillarbox.policy.dkimrsa`, installed by
  :mod:`pillarbox.policy.dkim`, which this module imports).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection
from dataclasses import dataclass

import dkim

from pillarbox.blocking import run_sized
from pillarbox.dns.resolver import Resolver
from pillarbox.errors import UserError
from pillarbox.mail.headers import raw_text, scan_header
from pillarbox.policy.dkim import KeyTable, fields_tags, prefetch_keys

MAX_INSTANCE = 50  # RFC 8617 §4.2.1
_ARC_FIELDS = ("arc-seal", "arc-message-signature", "arc-authentication-results")
_INSTANCE = re.compile(r"\s*i\s*=\s*(\d+)\s*;")
_DMARC_PASS = re.compile(r"\bdmarc\s*=\s*pass\b[^;]*?\bheader\.from\s*=\s*([^\s;]+)", re.I)


class ArcResult(enum.StrEnum):
    NONE = "none"
    PASS = "pass"
    FAIL = "fail"


@dataclass(frozen=True, slots=True, kw_only=True)
class ArcLimits:
    #: ARC sets accepted in a chain; a longer chain fails.
    max_instances: int = MAX_INSTANCE
    #: Seconds for all key lookups of one message together.
    timeout: float = 5.0


DEFAULT_LIMITS = ArcLimits()


@dataclass(frozen=True, slots=True)
class ArcOutcome:
    result: ArcResult
    #: Number of ARC sets (the highest i=).
    instances: int = 0
    reason: str = ""
    #: The d= of the newest ARC-Seal (who handed the message to us), lowercase.
    sealer: str = ""
    #: The From domains the newest ARC-Authentication-Results records ``dmarc=pass`` for
    #: (lowercase): what that sealer found.
    sealer_dmarc_pass: frozenset[str] = frozenset()


def trusted_pass(
    outcome: ArcOutcome | None, sealers: Collection[str], authors: Collection[str]
) -> bool:
    """The chain passed, its newest seal is by one of ``sealers`` (lowercase domains), and
    that sealer recorded DMARC passing for the From domains ``authors``: the hop that handed
    the message to us is trusted to have authenticated it (RFC 8617 §7.2.1)."""
    return (
        outcome is not None
        and outcome.result is ArcResult.PASS
        and outcome.sealer in sealers
        and bool(authors)
        and all(a in outcome.sealer_dmarc_pass for a in authors)
    )


def _dmarc_passes(raw: bytes, instance: int) -> frozenset[str]:
    """The header.from domains the ARC-Authentication-Results of ``instance`` has
    ``dmarc=pass`` for."""
    block = scan_header(raw, 0, len(raw), max_fields=1000)
    for f in block.fields:
        if f.key != "arc-authentication-results":
            continue
        value = raw_text(f.value)
        found = _INSTANCE.match(value)
        if found is not None and int(found.group(1)) == instance:
            return frozenset(d.lower().rstrip(".") for d in _DMARC_PASS.findall(value))
    return frozenset()


def trusted_comment(outcome: ArcOutcome) -> str:
    """The aggregate report's comment on the exception (after RFC 8617 §7.2.2, which
    suggests the chain's ``arc=pass as[N].d=…``)."""
    return f"arc=pass as[{outcome.instances}].d={outcome.sealer}"


class ArcSealError(UserError):
    """The message cannot be sealed (no Authentication-Results of ours, malformed header)."""


def _verify_blocking(raw: bytes, keys: KeyTable) -> tuple[bytes | None, str]:
    try:
        cv, _, reason = dkim.ARC(raw, minkey=1024).verify(dnsfunc=keys.dnsfunc)
    except (dkim.DKIMException, IndexError, ValueError, TypeError) as exc:
        return dkim.CV_Fail, f"malformed ARC header: {exc}"
    return cv, str(reason)


async def verify(
    resolver: Resolver, raw: bytes, *, limits: ArcLimits = DEFAULT_LIMITS
) -> ArcOutcome:
    """Validate the ARC chain of ``raw`` (RFC 8617 §5.2)."""
    found = fields_tags(raw, _ARC_FIELDS)
    seals, signatures = found["arc-seal"], found["arc-message-signature"]
    if not seals and not signatures and not found["arc-authentication-results"]:
        return ArcOutcome(ArcResult.NONE)
    count = max(len(seals), len(signatures))
    if count > limits.max_instances:
        return ArcOutcome(ArcResult.FAIL, count, f"more than {limits.max_instances} ARC sets")
    names = [t.key_name for t in (*seals, *signatures) if t is not None and t.domain]
    keys = KeyTable(await prefetch_keys(resolver, names, timeout=limits.timeout))
    cv, reason = await run_sized(len(raw), _verify_blocking, raw, keys)
    sealer = seals[0].domain if seals and seals[0] is not None else ""
    if cv == dkim.CV_Pass:
        return ArcOutcome(ArcResult.PASS, count, reason, sealer, _dmarc_passes(raw, count))
    if cv == dkim.CV_None and count == 0:
        return ArcOutcome(ArcResult.NONE, 0, reason)
    # cv None from dkimpy with sets present: a hop recorded cv=fail, the chain is over.
    return ArcOutcome(ArcResult.FAIL, count, reason, sealer)


def seal(
    raw: bytes,
    *,
    domain: str,
    selector: str,
    private_pem: bytes,
    authserv_id: str,
    timestamp: int | None = None,
) -> bytes:
    """The next ARC set (ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results, CRLF
    terminated) to put in front of ``raw`` when forwarding it. ``raw`` must carry our
    ``Authentication-Results`` (with ``authserv_id``), including its ``arc=`` result.
    Blocking: call through :func:`pillarbox.blocking.run_sized`."""
    try:
        headers = dkim.arc_sign(
            raw,
            selector.encode("ascii"),
            domain.encode("ascii"),  # a hosted domain: the store keeps A-labels
            private_pem,
            authserv_id.encode("ascii"),
            timestamp=timestamp,
        )
    except (dkim.DKIMException, IndexError, ValueError) as exc:
        raise ArcSealError(f"cannot seal: {exc}") from None
    if not headers:
        # dkimpy adds no set without our results, or to a chain that has failed (RFC 8617
        # §5.1.2: a failed chain is not sealed again).
        raise ArcSealError(f"nothing to seal: no {authserv_id} results, or the chain failed")
    return b"".join(headers)
