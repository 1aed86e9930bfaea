"""Sending DMARC failure reports (RFC 9991): the inbound policy hands over each evaluated
message; reports its record asks for (:func:`.failurereport.report_kinds`) are rate-limited,
checked against the destination's consent and queued from ``dmarc_failure_reports.
from_address`` through the normal submission path (DKIM-signed, so the report stream is
DMARC-aligned, RFC 9991 §5.1).

Implementation notes:

- Off unless ``dmarc_failure_reports.enabled``; the policy then calls :meth:`FailureReporter.
  consider` for every DMARC pass or fail. It decides without I/O and never delays the SMTP
  reply: the lookups and the submission run as a background task of the server.
- **Rate limit** (RFC 9991 §2, §8.1): at most ``max_per_domain`` reports per DMARC policy domain
  within ``rate_window`` seconds, counted when a report is generated (whether or not its
  destinations consent, so a flood also costs no more DNS lookups), per node; the rest are
  dropped with a log line. The window is :class:`pillarbox.auth.ratelimit.RateLimiter`'s: a
  domain that reached its limit is locked for one window. ``max_pending`` bounds the reports
  in flight across all domains.
- **Destinations** (RFC 9991 §5): the ``ruf`` URIs, verified exactly as the aggregate reports'
  ``rua`` (:func:`.reporting.verified_destinations` with ``tag="ruf"``): only ``mailto:``,
  external hosts need ``<policy-domain>._report._dmarc.<host>`` consent.
- A message that is itself a feedback report gets none (no report loops, RFC 9991 §5.1).
- ``SPF-DNS`` (RFC 9991 §4) is looked up again (the policy's cache usually answers) only when
  SPF failed; a failed lookup leaves the field out.
- A report waiting to be sent holds only what it will carry (the original's header unless
  ``content = "full"``): ``max_pending`` reports never hold ``max_pending`` whole messages.
- Reports lost to a shutdown while in flight are not retried.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

from pillarbox.auth.ratelimit import RateLimiter, RateLimits
from pillarbox.config import DmarcFailureReportSection
from pillarbox.dns.resolver import DnsTemporaryError, Resolver
from pillarbox.errors import InvalidName
from pillarbox.observability.log import Log
from pillarbox.policy import reporting
from pillarbox.policy.failurereport import (
    AuthFailure,
    Content,
    Envelope,
    FailedMessage,
    ReportSettings,
    is_feedback_report,
    report_kinds,
    report_message,
    trimmed,
)
from pillarbox.policy.spf import SpfResult

if TYPE_CHECKING:
    from pillarbox.services import Services


def domain_limits(section: DmarcFailureReportSection) -> RateLimits:
    """``max_per_domain`` reports per ``rate_window`` as :class:`RateLimits`: that many minus
    one free events, and the last one locks the domain for a window."""
    return RateLimits(
        window=section.rate_window,
        free_failures=section.max_per_domain - 1,
        base_delay=0.0,
        max_delay=0.0,
        lockout_failures=section.max_per_domain,
        lockout=section.rate_window,
        max_keys=section.max_domains,
    )


class FailureReporter:
    """See the module notes. One per server, built with its inbound policy."""

    def __init__(
        self,
        services: Services,
        resolver: Resolver,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        config = services.config
        section = config.dmarc_failure_reports
        self._services = services
        self._resolver = resolver
        self._clock = clock
        self._sender = section.from_address or config.dmarc_reports.from_address
        self._max_pending = section.max_pending
        self._settings = ReportSettings(
            receiver=config.server.hostname,
            content=Content(section.content),
            max_original=section.max_original_bytes,
            # Per run: tokens cannot be matched against another run's (or another server's).
            redaction_key=secrets.token_bytes(32) if section.redact_addresses else None,
        )
        self._limiter = RateLimiter(domain_limits(section))
        self._pending = 0
        self._log = Log("dmarc-failure-reports")

    @property
    def pending(self) -> int:
        """Reports being prepared or queued right now."""
        return self._pending

    def consider(self, failed: FailedMessage) -> None:
        """Start sending the reports ``failed`` calls for, within the limits; returns at once."""
        kinds = report_kinds(failed)
        if not kinds or is_feedback_report(failed.raw):
            return
        outcome = failed.outcome
        domain = outcome.policy_domain or outcome.domain
        if self._pending >= self._max_pending:
            # Before the rate limiter: a report dropped here must not use up the domain's share.
            self._log.warning("too many reports in flight: dropped", domain=domain)
            return
        now = self._clock()
        allowed: list[AuthFailure] = []
        for kind in kinds:
            if self._limiter.check(domain, now) is not None:
                self._log.info("rate limited", domain=domain, kind=kind.value)
                continue
            self._limiter.record_failure(domain, now)  # here: one report generated
            allowed.append(kind)
        if not allowed:
            return
        self._pending += 1
        kept = trimmed(failed, self._settings)
        self._services.spawn(self._send(kept, domain, allowed), "dmarc-failure-report")

    async def _send(self, failed: FailedMessage, domain: str, kinds: list[AuthFailure]) -> None:
        try:
            await self._deliver(failed, domain, kinds)
        except Exception as exc:  # one report's trouble must not surface as an unhandled task
            self._log.error("failure report not sent", domain=domain, error=str(exc))
        finally:
            self._pending -= 1

    async def _deliver(self, failed: FailedMessage, domain: str, kinds: list[AuthFailure]) -> None:
        record = failed.outcome.record
        assert record is not None  # report_kinds returns nothing without one
        destinations = await reporting.verified_destinations(
            self._resolver, domain, record.ruf, tag="ruf"
        )
        if not destinations:
            self._log.info("no verified destination", domain=domain)
            return
        account = await reporting.report_account(self._services, self._sender)
        spf_record = await self._spf_record(failed)
        for kind in kinds:
            envelope = Envelope(
                sender=account.address,
                recipients=(),
                date=datetime.now(UTC),
                message_id=f"<{uuid.uuid4().hex}@{self._settings.receiver}>",
                boundary_seed=f"report.{uuid.uuid4().hex}",
            )
            build = partial(self._report, failed, kind, envelope, spf_record)
            allowed, ok, reply = await reporting.submit_report(
                self._services, account, destinations, build
            )
            if not allowed:
                self._log.info("report larger than every destination accepts", domain=domain)
                continue
            self._log.info(
                "failure report queued",
                domain=domain,
                kind=kind.value,
                to=",".join(allowed),
                reply=reply,
                ok=str(ok),
            )

    def _report(
        self,
        failed: FailedMessage,
        kind: AuthFailure,
        envelope: Envelope,
        spf_record: str | None,
        recipients: list[str],
    ) -> bytes:
        envelope = replace(envelope, recipients=recipients)
        return report_message(failed, kind, self._settings, envelope, spf_record=spf_record)

    async def _spf_record(self, failed: FailedMessage) -> str | None:
        spf = failed.auth.spf
        if spf is None or spf.result not in (SpfResult.FAIL, SpfResult.SOFTFAIL):
            return None
        try:
            texts = await self._resolver.txt(spf.domain)
        except (DnsTemporaryError, InvalidName):
            return None
        records = [t.decode("utf-8", "replace") for t in texts]
        found = [r for r in records if r.lower() == "v=spf1" or r.lower().startswith("v=spf1 ")]
        return found[0] if len(found) == 1 else None
