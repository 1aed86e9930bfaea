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
  node, each try claimed once; a restart does not lose it. A domain with no record gets no
  report. One whose record cannot be looked up now (a temporary DNS failure) has its report
  kept the same way, under :data:`LOOKUP_PENDING`, and the lookup retried on the same
  schedule; once found, the report goes to the URIs as a new one would.
- **The message** (§5.3) carries ``TLS-Required: No``: our queue delivers it with
  opportunistic TLS whatever the domain's MTA-STS or DANE policy (the failures it reports may
  be what stops the mail), and such deliveries are not counted in the next report.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
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
from pillarbox.store.types import Account, TlsReportPost

#: The scope under which a period's run is claimed (beside DMARC's in the same table).
RUN_SCOPE = "tlsrpt:*"
#: The ``url`` of a kept report whose ``rua`` is not known yet: the domain's TLS-RPT record
#: could not be looked up (a temporary DNS failure). The lookup is retried as a POST is.
LOOKUP_PENDING = ""

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


async def report_uris(resolver: Resolver, domain: str) -> tuple[str, ...] | None:
    """The ``rua`` of the domain's TLS-RPT record (§3); none without one; None when it cannot
    be looked up now (a temporary DNS failure: the lookup is retried, :data:`LOOKUP_PENDING`)."""
    try:
        record = parse_record(await resolver.txt(f"_smtp._tls.{domain}"))
    except InvalidName as exc:
        _log.info("no TLS-RPT record", domain=domain, reason=str(exc))
        return ()
    except DnsTemporaryError as exc:
        _log.warning("TLS-RPT record lookup failed", domain=domain, reason=exc.problem)
        return None
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
        if uris is None:
            # §5.5 asks retries of a failed delivery; a failed lookup of where to deliver is
            # one too: kept and retried as a failed POST is.
            await _keep_for_retry(services, report.gzipped(), LOOKUP_PENDING, report.policy_domain)
            sent.append((report, []))
            continue
        sent.append((report, await _deliver(services, account, report, uris, resolver)))
    # The rows counted, by id: a session's result stamped before ``end`` whose write committed
    # after the read above waits for the next report (as the DMARC reports' job does).
    await store.delete_tls_results([r.id for r in results])
    return sent


async def _deliver(
    services: Services,
    account: Account,
    report: TlsReport,
    uris: Sequence[str],
    resolver: Resolver,
    first_try: datetime | None = None,
) -> list[str]:
    """Send ``report`` to the ``rua`` URIs (§3): by POST to ``https:`` ones, a failed POST kept
    for retry (its retries bounded from ``first_try``), by mail to ``mailto:`` ones; returns
    where it went."""
    config = services.config
    destinations = [d for d in (mailto_destination(u) for u in uris) if d is not None]
    posted = [u for u in uris if u.lower().startswith("https:")]
    skipped = [u for u in uris if mailto_destination(u) is None and u not in posted]
    if skipped:
        _log.info("report URI not supported", domain=report.policy_domain, uris=",".join(skipped))
    delivered = []
    body = report.gzipped()
    for url in posted:
        if await _post(body, url, report.policy_domain, resolver, config.tls_reports, 1):
            delivered.append(url)
        else:
            await _keep_for_retry(services, body, url, report.policy_domain, first_try)
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
    return (allowed if ok else []) + delivered


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


async def _keep_for_retry(
    services: Services, body: bytes, url: str, domain: str, first_try: datetime | None = None
) -> None:
    """A failed first POST (or rua lookup, ``url`` :data:`LOOKUP_PENDING`) goes to the store
    (§5.5), to be retried from there until ``post_retry_for`` after ``first_try`` (now)."""
    section = services.config.tls_reports
    now = datetime.now(UTC)
    first_try = first_try or now
    deadline = first_try + timedelta(seconds=section.post_retry_for)
    if deadline <= now:
        return
    post = TlsReportPost(
        url=url,
        policy_domain=domain,
        body=body,
        first_try=first_try,
        next_try=min(now + timedelta(seconds=section.post_retry), deadline),
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
    if post.url == LOOKUP_PENDING:
        done = await _retry_lookup(services, resolver, post, attempt)
    else:
        done = await _post(post.body, post.url, post.policy_domain, resolver, section, attempt)
    if done:
        await store.delete_tls_report_post(post.id)
        return True
    deadline = post.first_try + timedelta(seconds=section.post_retry_for)
    now = datetime.now(UTC)
    if now >= deadline:
        _log.warning(
            "TLS report given up",
            domain=post.policy_domain,
            to=post.url or "(rua unknown)",
            attempts=attempt,
        )
        await store.delete_tls_report_post(post.id)
        return True
    wait = min(section.post_retry * 2 ** min(attempt - 1, 40), section.post_retry_for)
    await store.reschedule_tls_report_post(
        post.id, min(now + timedelta(seconds=wait), deadline), attempt
    )
    return True


async def _retry_lookup(
    services: Services, resolver: Resolver, post: TlsReportPost, attempt: int
) -> bool:
    """The kept report's rua looked up again; once found, the report goes there as a new one
    would (its failed POSTs kept with the original first try, so every retry ends within
    ``post_retry_for`` of it). False while the lookup still fails."""
    uris = await report_uris(resolver, post.policy_domain)
    if uris is None:
        return False
    config = services.config
    report = TlsReport.from_gzipped(post.body, post.policy_domain, submitter(config).domain)
    account = await report_account(services, sender_address(config))
    where = await _deliver(services, account, report, uris, resolver, post.first_try)
    _log.info("TLS-RPT record found", domain=post.policy_domain, attempt=attempt, to=len(where))
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
