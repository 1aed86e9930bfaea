"""The daily TLS-RPT job (RFC 8460): the outbound sessions' TLS results kept by the queue
runner → one report per recipient domain that asks for reports → messages queued from
``tls_reports.from_address`` through the submission path (DKIM-signed for our domain, §3),
on the schedule and with the once-per-cluster claim of the DMARC aggregate reports
(:mod:`pillarbox.policy.reporting`).

Implementation notes:

- **Period** (§4.1): multiples of ``tls_reports.interval`` since the epoch — each UTC day by
  default; the run starts a random time up to ``max_delay`` (4 hours) after the boundary, as
  §4.1 suggests, to spread the load on report receivers. Results left from periods the
  server was down for widen the next report's start, as for DMARC. The run claims
  ``(period end, "tlsrpt:*")`` in the store's report runs, so one node of a cluster sends;
  results are deleted once every report is queued (or found to have nowhere to go); with
  the sending account missing nothing is claimed or deleted.
- **Destinations** (§3): the single ``v=TLSRPTv1`` record at ``_smtp._tls.<domain>``, its
  ``rua`` URIs: ``mailto:`` ones get the report by mail, ``https:`` ones by POST (§5.4,
  :mod:`pillarbox.net.tlsrpt`); other schemes are logged and skipped. A failed POST is
  logged and kept in the store (``tls_report_posts``) with its bytes, and retried from there
  (§5.5: for ``post_retry_for``, 24 hours, with doubling waits from ``post_retry``) by any
  node, each try claimed once; a restart does not lose it. A domain with no record, or
  whose record cannot be looked up now, gets no report: its results are dropped with the
  others.
- **The message** (§5.3) carries ``TLS-Required: No``: our queue delivers it with
  opportunistic TLS whatever the domain's MTA-STS or DANE policy (the failures it reports may
  be what stops the mail), and such deliveries are not counted in the next report.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from functools import partial

from pillarbox.config import Config, TlsReportSection
from pillarbox.dns.resolver import DnsTemporaryError, Resolver
from pillarbox.errors import InvalidName
from pillarbox.net.tlsrpt import ReportPostError, post_report
from pillarbox.observability.log import Log
from pillarbox.periodic import period_end, run_periodically
from pillarbox.policy.reporting import (
    mailto_destination,
    report_account,
    report_resolver,
    submit_report,
)
from pillarbox.queue.tlsrpt import Submitter, TlsReport, build_reports, parse_record, report_message
from pillarbox.services import Services
from pillarbox.store.types import TlsReportPost

#: The scope under which a period's run is claimed (beside DMARC's in the same table).
RUN_SCOPE = "tlsrpt:*"

_log = Log("tls-reports")


def sender_address(config: Config) -> str:
    section = config.tls_reports
    return section.from_address or config.dmarc_reports.from_address


def submitter(config: Config) -> Submitter:
    """Our identity in reports: §5.3 makes the submitter the contact address's domain."""
    section = config.tls_reports
    contact = section.contact_email or sender_address(config)
    return Submitter(
        organization=section.org_name or config.server.hostname,
        contact=contact,
        domain=contact.rpartition("@")[2].lower() or config.server.hostname,
    )


async def report_uris(resolver: Resolver, domain: str) -> tuple[str, ...]:
    """The ``rua`` of the domain's TLS-RPT record (§3); none without one, or when it cannot be
    looked up now."""
    try:
        record = parse_record(await resolver.txt(f"_smtp._tls.{domain}"))
    except (DnsTemporaryError, InvalidName) as exc:
        _log.info("no TLS-RPT record this time", domain=domain, reason=str(exc))
        return ()
    return record.rua if record is not None else ()


async def report_once(
    services: Services, end: int, resolver: Resolver
) -> list[tuple[TlsReport, list[str]]]:
    """Send every report due at boundary ``end`` and forget the results it counted; returns
    each report and where it went."""
    store, config = services.store, services.config
    until = datetime.fromtimestamp(end, UTC)
    results = await store.tls_results(until)
    if not results:
        return []
    account = await report_account(services, sender_address(config))
    if not await store.claim_dmarc_report_run(until, RUN_SCOPE, config.server.hostname):
        _log.info("period already claimed", end=str(until))
        return []
    interval = config.tls_reports.interval
    begin = min(end - int(interval), period_end(results[0].recorded.timestamp(), interval))
    sent: list[tuple[TlsReport, list[str]]] = []
    for report in build_reports(results, submitter(config), begin=begin, end=end):
        uris = await report_uris(resolver, report.policy_domain)
        destinations = [d for d in (mailto_destination(u) for u in uris) if d is not None]
        posted = [u for u in uris if u.lower().startswith("https:")]
        skipped = [u for u in uris if mailto_destination(u) is None and u not in posted]
        if skipped:
            _log.info(
                "report URI not supported", domain=report.policy_domain, uris=",".join(skipped)
            )
        delivered = []
        body = report.gzipped()
        for url in posted:
            if await _post(body, url, report.policy_domain, resolver, config.tls_reports, 1):
                delivered.append(url)
            else:
                await _keep_for_retry(services, body, url, report.policy_domain)
        now = datetime.now(UTC)
        allowed, ok, reply = await submit_report(
            services,
            account,
            destinations,
            partial(report_message, report, sender=account.address, date=now),
        )
        if allowed:
            _log.info(
                "TLS report queued",
                domain=report.policy_domain,
                to=",".join(allowed),
                sessions=report.sessions,
                failures=report.failures,
                reply=reply,
            )
        sent.append((report, (allowed if ok else []) + delivered))
    await store.delete_tls_results(until)
    return sent


async def _post(
    body: bytes,
    url: str,
    domain: str,
    resolver: Resolver,
    section: TlsReportSection,
    attempt: int,
) -> bool:
    try:
        await post_report(url, body, resolver, timeout=section.post_timeout)
    except ReportPostError as exc:
        _log.warning("TLS report not posted", domain=domain, reason=str(exc), attempt=attempt)
        return False
    _log.info("TLS report posted", domain=domain, to=url, attempt=attempt)
    return True


async def _keep_for_retry(services: Services, body: bytes, url: str, domain: str) -> None:
    """A failed first POST goes to the store (§5.5), to be retried from there."""
    section = services.config.tls_reports
    if section.post_retry_for <= 0:
        return
    now = datetime.now(UTC)
    post = TlsReportPost(
        url=url,
        policy_domain=domain,
        body=body,
        first_try=now,
        next_try=now + timedelta(seconds=min(section.post_retry, section.post_retry_for)),
        attempts=1,
    )
    await services.store.add_tls_report_post(post)


async def retry_due_post(services: Services, resolver: Resolver) -> bool:
    """Try again the kept POST due first, if any (§5.5): gone once it succeeds; else due
    again after ``post_retry`` seconds doubled for each try after the first, and given up
    once ``post_retry_for`` has passed since the first try. False when none is due.

    The claim leases it for twice ``post_timeout``: no other node tries it meanwhile, and if
    this one dies mid-try, it is tried again after the lease."""
    section, store = services.config.tls_reports, services.store
    now = datetime.now(UTC)
    post = await store.claim_tls_report_post(now, now + timedelta(seconds=2 * section.post_timeout))
    if post is None:
        return False
    attempt = post.attempts + 1
    if await _post(post.body, post.url, post.policy_domain, resolver, section, attempt):
        await store.delete_tls_report_post(post.id)
        return True
    deadline = post.first_try + timedelta(seconds=section.post_retry_for)
    now = datetime.now(UTC)
    if now >= deadline:
        _log.warning(
            "TLS report given up", domain=post.policy_domain, to=post.url, attempts=attempt
        )
        await store.delete_tls_report_post(post.id)
        return True
    wait = min(section.post_retry * 2 ** min(attempt - 1, 40), section.post_retry_for)
    await store.reschedule_tls_report_post(
        post.id, min(now + timedelta(seconds=wait), deadline), attempt
    )
    return True


async def retry_posts(services: Services, resolver: Resolver) -> None:
    """The background task of §5.5 retries: every ``post_retry`` seconds (at most a minute),
    try the kept POSTs that are due, on every node (the store's claim keeps each to one)."""
    poll = min(services.config.tls_reports.post_retry, 60.0)
    while not services.shutdown.is_set():
        try:
            while await retry_due_post(services, resolver):
                pass
        except Exception as exc:  # a store hiccup must not end the retries: the next poll
            _log.error("TLS report retries failed", error=str(exc))
        await asyncio.sleep(poll)


async def run(services: Services) -> None:
    """The background task: at each period boundary, :func:`report_once`; and beside it
    :func:`retry_posts`."""
    resolver = report_resolver(services.config)
    services.spawn(retry_posts(services, resolver), "tls-report-retries")
    await run_periodically(
        services,
        services.config.tls_reports.interval,
        partial(report_once, services, resolver=resolver),
        _log,
        max_delay=services.config.tls_reports.max_delay,
    )
