"""The periodic DMARC aggregate report job: kept evaluations → reports → messages queued from
``dmarc_reports.from_address`` through the normal submission path (DKIM-signed, routed, retried
like any other mail). The destination check and the submission are shared with the failure
reports (:mod:`.failurereporting`).

Implementation notes:

- Periods are aligned to multiples of ``dmarc_reports.interval`` since the epoch (a daily
  interval reports each UTC day, RFC 9990 §3.1.1.4); the job wakes at each boundary and
  reports what was received before it. Evaluations left over from a period the server was down
  for widen the next report's ``begin`` rather than being dropped, so periods never overlap.
- Evaluations are deleted once their reports are queued (or found to have nowhere to go); if
  the sending account is missing, they are kept for the next run. Deleted by row, exactly
  those counted: an evaluation is stamped when the message is judged and committed after, so
  one stamped before a boundary can arrive after the report read the period.
- **Destinations** (RFC 9990 §3.5, §4; RFC 9991 §5 for ``ruf``): only ``mailto:`` URIs. A
  URI whose host is outside the policy domain's organizational domain (by the PSL, whatever
  ``policy.dmarc_discovery`` says) needs the report consumer's consent,
  ``<policy-domain>._report._dmarc.<host>`` TXT starting ``v=DMARC1``; a ``rua`` (``ruf``)
  there replaces the URI if it names the same host, and one naming another host cancels both.
  A ``!size`` suffix (RFC 7489 §6.2) drops the URI when the report message is larger.
- On PostgreSQL with several nodes every node runs the job over the shared table; each period
  is claimed once in the store (``dmarc_report_runs``), so only one node sends its reports.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from urllib.parse import unquote

from pillarbox.config import Config
from pillarbox.dns.resolver import DnsResolver, DnsTemporaryError, Resolver
from pillarbox.errors import InvalidName
from pillarbox.observability.log import Log
from pillarbox.periodic import period_end, run_periodically
from pillarbox.policy.dmarc import is_dmarc_text, organizational_domain, parse_record
from pillarbox.policy.dmarcreport import AggregateReport, Reporter, build_reports, report_message
from pillarbox.services import Services
from pillarbox.store.interface import Store
from pillarbox.store.types import Account, DmarcObservation

_SIZE = re.compile(r"!(\d+)([kmgt]?)$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


@dataclass(frozen=True, slots=True)
class Destination:
    """A verified ``mailto:`` report address and the largest message it accepts."""

    address: str
    max_bytes: int | None = None


def mailto_destination(uri: str) -> Destination | None:
    """``mailto:addr[!size]`` → its address and limit; None for other schemes."""
    if not uri.lower().startswith("mailto:"):
        return None
    target = uri[len("mailto:") :]
    limit = None
    match = _SIZE.search(target)
    if match:
        limit = int(match.group(1)) * _UNITS[match.group(2).lower()]
        target = target[: match.start()]
    address = unquote(target.partition("?")[0]).strip()
    if address.count("@") != 1 or not address.partition("@")[2]:
        return None
    return Destination(address, limit)


def _host(destination: Destination) -> str:
    return destination.address.rpartition("@")[2].lower().rstrip(".")


async def verified_destinations(
    resolver: Resolver, policy_domain: str, uris: Sequence[str], *, tag: str = "rua"
) -> list[Destination]:
    """The URIs of a record's ``tag`` (``rua``, or ``ruf`` for failure reports, RFC 9991 §5)
    that reports may go to (RFC 9990 §4; see the module notes)."""
    found: list[Destination] = []
    org = organizational_domain(policy_domain) or policy_domain
    for uri in uris:
        destination = mailto_destination(uri)
        if destination is None:
            continue
        host = _host(destination)
        if (organizational_domain(host) or host) == org:
            found.append(destination)
            continue
        try:
            texts = await resolver.txt(f"{policy_domain}._report._dmarc.{host}")
        except (DnsTemporaryError, InvalidName):
            continue  # §4 steps 4–5: no positive determination this time
        consents = [t.decode("utf-8", "replace") for t in texts]
        consents = [t for t in consents if is_dmarc_text(t)]
        if not consents:
            continue  # §4 step 7
        override = _override(consents[0], tag)
        if override is None:
            found.append(destination)
        else:
            # §4 step 9: the override must keep the destination host, else neither is used.
            replaced = [d for d in (mailto_destination(u) for u in override) if d is not None]
            if replaced and all(_host(d) == host for d in replaced):
                found.extend(replaced)
    return list(dict.fromkeys(found))


def _override(consent: str, tag: str) -> tuple[str, ...] | None:
    """The ``rua`` (or ``ruf``) of a consent record (§4 step 9), None if it has none."""
    if tag not in consent.lower():
        return None
    record = parse_record(consent.rstrip().rstrip(";") + "; p=none")
    if record is None:
        return None
    uris = record.ruf if tag == "ruf" else record.rua
    return uris or None


def reporter(config: Config) -> Reporter:
    """Our report metadata from ``[dmarc_reports]`` and ``server.hostname``."""
    section = config.dmarc_reports
    return Reporter(
        receiver=config.server.hostname,
        org_name=section.org_name or config.server.hostname,
        email=section.contact_email or section.from_address,
    )


async def pending_reports(
    store: Store, config: Config, end: int, *, domain: str | None = None
) -> list[AggregateReport]:
    """Reports of the evaluations received before ``end`` (only ``domain``'s if given)."""
    return _reports(await _pending(store, end, domain), config, end)


async def _pending(store: Store, end: int, domain: str | None) -> list[DmarcObservation]:
    """The kept evaluations received before ``end`` (only ``domain``'s if given)."""
    observations = await store.dmarc_observations(datetime.fromtimestamp(end, UTC))
    if domain is not None:
        observations = [o for o in observations if o.policy_domain == domain.lower()]
    return observations


def _reports(
    observations: list[DmarcObservation], config: Config, end: int
) -> list[AggregateReport]:
    if not observations:
        return []
    interval = config.dmarc_reports.interval
    earliest = int(observations[0].received.timestamp())
    begin = min(end - int(interval), period_end(earliest, interval))
    return build_reports(observations, reporter(config), begin=begin, end=end)


async def send_reports(
    services: Services, reports: Sequence[AggregateReport], resolver: Resolver
) -> list[tuple[AggregateReport, list[str]]]:
    """Queue each report to its verified destinations; returns where each went. Raises
    nothing for a report with no destination (it is simply not sent)."""
    log = Log("dmarc-reports")
    section = services.config.dmarc_reports
    account = await report_account(services, section.from_address)
    sent: list[tuple[AggregateReport, list[str]]] = []
    for report in reports:
        destinations = await verified_destinations(resolver, report.policy_domain, report.rua)
        now = datetime.now(UTC)
        allowed, ok, reply = await submit_report(
            services,
            account,
            destinations,
            partial(report_message, report, sender=section.from_address, date=now),
        )
        if not allowed:
            log.info("no verified destination", domain=report.policy_domain)
            sent.append((report, []))
            continue
        log.info(
            "aggregate report queued",
            domain=report.policy_domain,
            to=",".join(allowed),
            messages=report.messages,
            reply=reply,
        )
        sent.append((report, allowed if ok else []))
    return sent


async def report_account(services: Services, address: str) -> Account:
    """The local account reports are sent from; :class:`LookupError` if there is none."""
    account = await services.store.get_account(address.lower())
    if account is None:
        raise LookupError(f"report sender {address} is no account")
    return account


async def submit_report(
    services: Services,
    account: Account,
    destinations: Sequence[Destination],
    build: Callable[[list[str]], bytes],
) -> tuple[list[str], bool, str]:
    """Queue a report from ``account`` through the submission path (DKIM-signed, routed,
    retried like any mail) to the ``destinations`` whose size limit it fits (``!size``:
    RFC 7489 §6.2, obsolete in RFC 9989 §4.8, still honoured). ``build(recipients)`` makes the
    report for them (its To names them), again if some were left out. Returns who it went
    to (none: nothing was queued), whether it was accepted, and the reply code."""
    from pillarbox.queue.intake import submit  # the queue imports the policy: import late

    addresses = [d.address for d in destinations]
    raw = build(addresses)
    allowed = [d.address for d in destinations if d.max_bytes is None or len(raw) <= d.max_bytes]
    if not allowed:
        return [], False, ""
    if allowed != addresses:
        raw = build(allowed)
    # Sent by the server, not by a person: outside the account's sending limits (a busy MX
    # reports to hundreds of domains a day, each a first-time recipient).
    result = await submit(services, account, raw, account.address, allowed, limited=False)
    return allowed, result.ok, str(result.reply.code)


async def report_once(
    services: Services, end: int, resolver: Resolver, *, domain: str | None = None
) -> list[tuple[AggregateReport, list[str]]]:
    """Send every report due at boundary ``end`` (only ``domain``'s if given) and forget what
    they counted; returns each report and where it went."""
    observations = await _pending(services.store, end, domain)
    reports = _reports(observations, services.config, end)
    if not reports:
        return []
    until = datetime.fromtimestamp(end, UTC)
    scope = domain.lower() if domain else "*"
    node = services.config.server.hostname
    if not await services.store.claim_dmarc_report_run(until, scope, node):
        # Another node (or an earlier run of ours) sends this period's reports; a node that
        # died mid-way leaves its evaluations in the store for the next period's report.
        Log("dmarc-reports").info("period already claimed", end=str(until), scope=scope)
        return []
    sent = await send_reports(services, reports, resolver)
    # The rows counted, by id: an evaluation stamped before ``end`` whose write committed after
    # the read above (a message judged just before the boundary) waits for the next report.
    await services.store.delete_dmarc_observations([o.id for o in observations])
    return sent


def report_resolver(config: Config) -> DnsResolver:
    """A resolver of its own for the consent lookups (the policy's cache is for mail)."""
    return DnsResolver(nameserver=config.dns.nameserver, timeout=config.dns.timeout)


async def run(services: Services) -> None:
    """The background task: at each period boundary, :func:`report_once`."""
    resolver = report_resolver(services.config)
    await run_periodically(
        services,
        services.config.dmarc_reports.interval,
        partial(report_once, services, resolver=resolver),
        Log("dmarc-reports"),
    )
