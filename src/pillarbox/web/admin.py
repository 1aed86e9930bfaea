"""Administration for accounts with the admin role: domains (and their DNS records), accounts,
aliases, the outbound queue, a dashboard with a chart of mail over time; an account's two-factor
login can be removed here (account recovery, as ``pillarbox user 2fa --disable``). Every change goes
through :mod:`pillarbox.provisioning` so the CLI's rules apply here too; the operations are
shared with the JSON API."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pillarbox import provisioning, retention
from pillarbox.dns.hosted import hosted_records, record_policy
from pillarbox.dns.records import DomainRecords
from pillarbox.dns.securerecords import SecureRecords, secure_records, zone_text
from pillarbox.errors import NotFound, UserError
from pillarbox.observability.log import Log
from pillarbox.policy import receivedreports
from pillarbox.queue import sendlimits
from pillarbox.services import Services
from pillarbox.store.types import Account, ActivityCounts, ReceivedReport, SendingLimits
from pillarbox.web.app import (
    field_number,
    field_text,
    posted_form,
    redirect,
    refusal_status,
    refused,
    require_admin,
    unconfirmed,
    web,
)
from pillarbox.web.charts import Series, line_chart
from pillarbox.web.zone import reader_zone

MIB = 1024 * 1024
_log = Log("web.admin")


@dataclass(frozen=True, slots=True)
class ActivityRange:
    """A window of the dashboard chart: ``buckets`` intervals of ``step``, ending with the
    current one, labelled with ``label_format`` (strftime)."""

    key: str
    title: str
    step: timedelta
    buckets: int
    label_format: str
    #: Every how many intervals the x axis is labelled.
    label_every: int


ACTIVITY_RANGES = {
    r.key: r
    for r in (
        ActivityRange("48h", "last 48 hours, per hour", timedelta(hours=1), 48, "%H:%M", 6),
        ActivityRange("30d", "last 30 days, per day", timedelta(days=1), 30, "%d %b", 5),
    )
}
#: The most days of received reports one view shows (about ten years).
MAX_REPORT_DAYS = 3660
#: The chart's series: (ActivityCounts field, legend).
ACTIVITY_SERIES = (
    ("delivered", "delivered"),
    ("junk", "of which spam (Junk)"),
    ("sent", "sent"),
    ("queued", "still queued"),
)


#: What the store counts in when the chart's intervals are a zone's hours or days: every UTC
#: offset and daylight-saving shift of today's tz database is a whole number of quarter hours,
#: so the quarters counted from a local midnight or hour each fall in one local interval.
QUARTER = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class Activity:
    range: ActivityRange
    #: One per interval, each ``start`` the interval's first instant (in UTC).
    counts: list[ActivityCounts]
    #: The zone the intervals are hours or days of, and the labels written in.
    zone: tzinfo = UTC

    @property
    def labels(self) -> list[str]:
        return [
            c.start.astimezone(self.zone).strftime(self.range.label_format) for c in self.counts
        ]

    def series(self) -> list[Series]:
        return [
            Series(key, label, tuple(getattr(c, key) for c in self.counts))
            for key, label in ACTIVITY_SERIES
        ]

    def chart(self) -> Markup:
        return line_chart(
            self.labels,
            self.series(),
            title=f"Mail over the {self.range.title}",
            label_every=self.range.label_every,
        )


def interval_starts(window: ActivityRange, now: datetime, zone: tzinfo) -> list[datetime]:
    """The instants (UTC) that start each of ``window``'s intervals, ending with the current
    one, and the end of the last: whole hours or days as read in ``zone``. A local day is 23 or
    25 hours across a daylight-saving change; hours are an hour apart whatever the clock says
    (the hour repeated in autumn shows twice, the one skipped in spring not at all)."""
    local = now.astimezone(zone)
    if window.step < timedelta(days=1):
        current = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        first = current - window.step * (window.buckets - 1)
        return [first + window.step * n for n in range(window.buckets + 1)]
    today = local.date()
    days = [today - window.step * n for n in range(window.buckets - 1, -2, -1)]
    return [datetime.combine(day, time(), zone).astimezone(UTC) for day in days]


async def activity(services: Services, key: str, now: datetime, zone: tzinfo = UTC) -> Activity:
    """Counts for the chart: intervals of whole hours or days in ``zone`` (the viewer's on the
    page, UTC in the JSON API), summed from the store's quarter hours."""
    window = ACTIVITY_RANGES.get(key) or ACTIVITY_RANGES["48h"]
    starts = interval_starts(window, now, zone)
    quarters = await services.store.activity(
        starts[0], QUARTER, (starts[-1] - starts[0]) // QUARTER
    )
    counts = []
    for start, end in itertools.pairwise(starts):
        inside = quarters[(start - starts[0]) // QUARTER : (end - starts[0]) // QUARTER]
        counts.append(
            ActivityCounts(
                start,
                delivered=sum(q.delivered for q in inside),
                junk=sum(q.junk for q in inside),
                sent=sum(q.sent for q in inside),
                queued=sum(q.queued for q in inside),
            )
        )
    return Activity(window, counts, zone)


@dataclass(frozen=True, slots=True)
class Dashboard:
    domains: int
    accounts: int
    aliases: int
    stored_messages: int
    stored_bytes: int
    queued_messages: int
    #: Queue recipients by state ("pending", "deferred", …).
    queued_recipients: dict[str, int]


async def dashboard(services: Services) -> Dashboard:
    store = services.store
    accounts = await store.list_accounts()
    usage = [await store.quota_usage(a.id) for a in accounts]
    queue = await store.list_queue()
    states = Counter(r.state.value for m in queue for r in m.recipients)
    return Dashboard(
        domains=len(await store.list_domains()),
        accounts=len(accounts),
        aliases=len(await store.list_aliases()),
        stored_messages=sum(u.messages for u in usage),
        stored_bytes=sum(u.bytes_used for u in usage),
        queued_messages=len(queue),
        queued_recipients=dict(states),
    )


async def domain_records(services: Services, name: str) -> DomainRecords:
    """What to publish in DNS for a hosted domain: what ``pillarbox dns records`` prints and
    the authoritative server serves (:func:`hosted_records`, with ``dns.addresses``)."""
    domain = provisioning.normalise_domain(name)
    if await services.store.get_domain(domain) is None:
        raise NotFound(f"no such domain: {domain}")
    return await hosted_records(
        services.store,
        domain,
        mail_host=services.hostname,
        addresses=services.config.dns.addresses,
        now=datetime.now(UTC),
        policy=record_policy(services.config),
    )


async def domain_secure_records(services: Services, records: DomainRecords) -> SecureRecords:
    """The MX host's TLSA and the zone's DNSKEY and DS beside ``records``, as ``pillarbox dns
    records`` prints them; with ``[dns] dnssec`` the zone's key is made now if it has none,
    as that command does, so the DS can go to the registrar before the first signed answer."""
    ttl = records.records[0].ttl
    return await secure_records(services.store, services.config, records.domain, ttl)


@dataclass(frozen=True, slots=True)
class ReceivedView:
    """The reports other providers sent about one domain over the last ``days`` days."""

    domain: str
    days: int
    reports: list[ReceivedReport]

    def sources(self, kind: str) -> list[receivedreports.SourceTotal]:
        return receivedreports.by_source(r for r in self.reports if r.kind == kind)


async def received_reports(services: Services, name: str, days_text: str = "") -> ReceivedView:
    """The DMARC aggregate and TLS-RPT reports kept for a hosted domain and its subdomains
    (:mod:`pillarbox.policy.receivedreports`), newest first."""
    domain = provisioning.normalise_domain(name)
    if await services.store.get_domain(domain) is None:
        raise NotFound(f"no such domain: {domain}")
    try:
        days = int(days_text) if days_text else receivedreports.DEFAULT_DAYS
    except ValueError:
        raise UserError("days must be a number") from None
    if not 1 <= days <= MAX_REPORT_DAYS:
        raise UserError(f"days must be 1–{MAX_REPORT_DAYS}")
    since = datetime.now(UTC) - timedelta(days=days)
    return ReceivedView(domain, days, await services.store.received_reports(since, domain=domain))


def quota_from_text(megabytes: str, messages: str) -> tuple[int | None, int | None]:
    """Quota fields as typed (empty: unlimited) to bytes and a message count."""
    try:
        size = int(float(megabytes) * MIB) if megabytes.strip() else None
        count = int(messages) if messages.strip() else None
    except (ValueError, OverflowError):  # "x", "nan"; "inf", "1e999"
        raise UserError("quotas must be numbers (empty: unlimited)") from None
    return provisioning.checked_quotas(size, count)


async def set_quota(
    services: Services, address: str, quota_bytes: int | None, quota_messages: int | None
) -> Account:
    account = await provisioning.get_account(services.store, address)
    await services.store.set_quota(
        account.id, *provisioning.checked_quotas(quota_bytes, quota_messages)
    )
    return account


def limits_from_text(messages: str, recipients: str, first_time: str) -> SendingLimits:
    """Sending limit fields as typed (empty: the default, 0: unlimited)."""

    def count(text: str) -> int | None:
        return int(text) if text.strip() else None

    try:
        limits = SendingLimits(count(messages), count(recipients), count(first_time))
    except ValueError:
        raise UserError("sending limits must be whole numbers (empty: the default)") from None
    return sendlimits.checked(limits)


async def sending_state(services: Services, address: str) -> sendlimits.SendingState:
    account = await provisioning.get_account(services.store, address)
    return await sendlimits.sending_state(
        services.store, account, services.config.submission_limits, datetime.now(UTC)
    )


async def set_sending_limits(
    services: Services, address: str, limits: SendingLimits
) -> sendlimits.SendingState:
    await provisioning.set_sending_limits(services.store, address, limits)
    return await sending_state(services, address)


async def remove_account(services: Services, admin: Account, address: str) -> None:
    if provisioning.account_key(address) == admin.address:
        raise UserError("you cannot remove the account you are logged in with")
    await provisioning.remove_account(services.store, address)


# -- pages -----------------------------------------------------------------------------------------


async def _render(
    request: Request, template: str, status_code: int = 200, **extra: object
) -> Response:
    app = web(request)
    await require_admin(request)
    return app.render(request, template, status_code=status_code, section=template, **extra)


async def dashboard_page(request: Request) -> Response:
    await require_admin(request)
    services = web(request).services
    return await _render(
        request,
        "admin.html",
        board=await dashboard(services),
        activity=await activity(
            services,
            request.query_params.get("range", "48h"),
            datetime.now(UTC),
            reader_zone(request),
        ),
        ranges=ACTIVITY_RANGES,
    )


async def domains_page(request: Request, *, error: str = "", status_code: int = 200) -> Response:
    await require_admin(request)
    store = web(request).services.store
    domains = await store.list_domains()
    counts = {d.name: len(await store.list_accounts(d.name)) for d in domains}
    return await _render(
        request, "admin_domains.html", status_code, domains=domains, counts=counts, error=error
    )


async def domain_page(request: Request) -> Response:
    await require_admin(request)
    services = web(request).services
    records = await domain_records(services, request.path_params["name"])
    secure = await domain_secure_records(services, records)
    zone = zone_text(records, secure)
    return await _render(request, "admin_domain.html", records=records, secure=secure, zone=zone)


async def reports_page(request: Request) -> Response:
    await require_admin(request)
    view = await received_reports(
        web(request).services, request.path_params["name"], request.query_params.get("days", "")
    )
    return await _render(request, "admin_reports.html", view=view)


async def accounts_page(request: Request, *, error: str = "", status_code: int = 200) -> Response:
    await require_admin(request)
    services = web(request).services
    store = services.store
    now = datetime.now(UTC)
    accounts = await store.list_accounts()
    usage = {a.id: await store.quota_usage(a.id) for a in accounts}
    kept = {a.id: await store.get_settings(a.id) for a in accounts}
    sending = {
        a.id: await sendlimits.sending_state(store, a, services.config.submission_limits, now)
        for a in accounts
    }
    two_factor = await store.totp_accounts()
    return await _render(
        request,
        "admin_accounts.html",
        status_code,
        accounts=accounts,
        usage=usage,
        retention={
            a.id: {
                label: retention.described(services.config.retention, kept[a.id], special_use)
                for special_use, label in retention.RETAINED.items()
            }
            for a in accounts
        },
        sending=sending,
        two_factor=two_factor,
        unreadable=await _unreadable_enrolments(request, two_factor),
        error=error,
    )


async def _unreadable_enrolments(request: Request, accounts: set[int]) -> set[int]:
    """Those of ``accounts`` whose two-factor secret does not open under this server's key:
    their owners cannot log in with a code; removing the enrolment is the way out."""
    app = web(request)
    unreadable = set()
    for account_id in accounts:
        enrolment = await app.services.store.get_totp(account_id)
        if enrolment is not None and not app.sealer.opens(enrolment):
            unreadable.add(account_id)
    return unreadable


async def aliases_page(request: Request, *, error: str = "", status_code: int = 200) -> Response:
    await require_admin(request)
    aliases = await web(request).services.store.list_aliases()
    return await _render(request, "admin_aliases.html", status_code, aliases=aliases, error=error)


async def queue_page(request: Request) -> Response:
    await require_admin(request)
    queue = await web(request).services.store.list_queue()
    return await _render(request, "admin_queue.html", queue=queue)


#: The admin actions that destroy, each with what its confirmation says (``{}`` the form's
#: field named last), its button, and that field.
_DESTROYS = {
    ("domains", "remove"): ("The domain {} will be removed.", "Remove domain", "name"),
    ("accounts", "remove"): (
        "The account {} and all its mail will be removed.",
        "Remove account",
        "address",
    ),
    ("accounts", "2fa-remove"): (
        "The two-factor login of {} will be removed: the password alone logs in until its "
        "owner enrols again.",
        "Remove two-factor login",
        "address",
    ),
    ("aliases", "remove"): ("The alias {} will be removed.", "Remove alias", "address"),
    ("queue", "remove"): (
        "Queued message {} will be removed without being delivered.",
        "Remove from the queue",
        "id",
    ),
}


async def change(request: Request) -> Response:
    """Every admin POST: ``/admin/{what}/{verb}`` with the subject in the form."""
    admin = await require_admin(request)
    form = await posted_form(request)
    services = web(request).services
    store = services.store
    what: str = request.path_params["what"]
    verb: str = request.path_params["verb"]
    pages = {"domains": domains_page, "accounts": accounts_page, "aliases": aliases_page}
    if (destroys := _DESTROYS.get((what, verb))) is not None:
        text, button, field = destroys
        asked = unconfirmed(
            request,
            form,
            what=text.format(field_text(form, field)),
            button=button,
            back=f"/admin/{what}",
        )
        if asked is not None:
            return asked
    try:
        match what, verb:
            case "domains", "add":
                await provisioning.add_domain(store, field_text(form, "name"))
            case "domains", "remove":
                await provisioning.remove_domain(store, field_text(form, "name"))
            case "accounts", "add":
                quota_bytes, quota_messages = quota_from_text(
                    field_text(form, "quota_mb"), field_text(form, "quota_messages")
                )
                await provisioning.add_account(
                    store,
                    services.config,
                    field_text(form, "address"),
                    field_text(form, "password"),
                    display_name=field_text(form, "display_name").strip(),
                    is_admin=form.get("is_admin") == "1",
                    quota_bytes=quota_bytes,
                    quota_messages=quota_messages,
                )
            case "accounts", "remove":
                await remove_account(services, admin, field_text(form, "address"))
            case "accounts", "password":
                await provisioning.set_password(
                    store,
                    services.config,
                    field_text(form, "address"),
                    field_text(form, "password"),
                )
            case "accounts", "2fa-remove":
                account, removed = await provisioning.remove_second_factor(
                    store, field_text(form, "address")
                )
                if removed:
                    _log.info(
                        "two-factor login removed by an admin",
                        account=account.address,
                        admin=admin.address,
                    )
            case "accounts", "quota":
                quota_bytes, quota_messages = quota_from_text(
                    field_text(form, "quota_mb"), field_text(form, "quota_messages")
                )
                await set_quota(services, field_text(form, "address"), quota_bytes, quota_messages)
            case "accounts", "limits":
                limits = limits_from_text(
                    field_text(form, "messages"),
                    field_text(form, "recipients"),
                    field_text(form, "first_time"),
                )
                await provisioning.set_sending_limits(store, field_text(form, "address"), limits)
            case "aliases", "add":
                targets = [t for t in field_text(form, "targets").replace(",", " ").split() if t]
                await provisioning.add_alias(store, field_text(form, "address"), targets)
            case "aliases", "remove":
                await provisioning.remove_alias(store, field_text(form, "address"))
            case "queue", "retry":
                await store.retry_queued(_queue_id(form.get("id")), datetime.now(UTC))
                # Every runner that hears the store (every node's on PostgreSQL), as
                # `pillarbox queue retry` does, not only this process's.
                await store.wake_queue()
            case "queue", "remove":
                await store.remove_queued(_queue_id(form.get("id")))
            case _:
                raise NotFound("no such admin action")
    except UserError as exc:
        if isinstance(exc, NotFound) and what not in pages:
            raise
        page = pages.get(what)
        if page is None:
            raise
        return refused(await page(request, error=str(exc), status_code=refusal_status(exc)), exc)
    return redirect(f"/admin/{what}")


def _queue_id(value: object) -> int:
    number = field_number(value)
    if number is None:
        raise NotFound("no such queued message")
    return number


def routes() -> list[BaseRoute]:
    return [
        Route("/admin", dashboard_page),
        Route("/admin/domains", domains_page),
        Route("/admin/domains/{name}", domain_page),
        Route("/admin/domains/{name}/reports", reports_page),
        Route("/admin/accounts", accounts_page),
        Route("/admin/aliases", aliases_page),
        Route("/admin/queue", queue_page),
        Route("/admin/{what}/{verb}", change, methods=["POST"]),
    ]
