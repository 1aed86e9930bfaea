"""Operational metrics in the Prometheus exposition format (``docs/metrics.md``).

Implementation notes:

- **One registry per server**, held by :class:`pillarbox.services.Services`, never
  prometheus_client's global one: two servers in one process (the tests, a node pair) count
  apart, and a scrape shows this process only. With several nodes on one PostgreSQL store each
  node is scraped on its own; only the queue gauges read the shared store, so they are the
  cluster's (the same value on every node).
- **Instrumentation stays in the adapters** (``net/``, the queue runner, intake), at the lines
  that already log the event; the sans-I/O cores never see this module.
- **Cheap on the hot path**: a counter increment is a lock and an add. Adapters resolve their
  labelled children once (per handler or per runner), not per event; gauges of live state
  (sessions open, the queue) are computed at scrape time (:class:`_LiveCollector`), so they
  cost nothing between scrapes.
- **Nothing counted that nobody can read**: without a metrics listener (``counting=False``)
  the children of every connection and message (the listeners', the SMTP messages', the
  policy verdicts'; :meth:`Metrics.count`, :meth:`Metrics.timing`) are :data:`UNCOUNTED`,
  whose calls do nothing: at the MX ~1.4 µs a message of locks, adds and a bucket search
  (0.3 µs an increment, 0.7 an observation) that no scrape would ever show.
- **Low cardinality**: labels are listener and protocol names, reply classes and fixed
  outcome words — never an address, an account, a host or a message id.
- Series of every known label value exist from the start at 0, so ``rate()`` and alerts see
  the first event rather than a series appearing out of nowhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Final, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pillarbox.store.types import QueueDepth

#: The protocols a login can fail on: the session groups of :mod:`pillarbox.net.serve` (a
#: protocol's listeners share one count) and the web's two (the login form, DAV).
PROTOCOLS = ("smtp", "lmtp", "imap", "pop3", "managesieve", "web", "dav")
#: :class:`pillarbox.policy.verdict.Action` values.
POLICY_ACTIONS = ("inbox", "junk", "reject")
#: One outbound delivery attempt for one recipient ended so.
DELIVERY_RESULTS = ("delivered", "deferred", "bounced")
#: A greylisting decision at RCPT: the sender is on ``allow_sender_domains`` or on a
#: recipient's own allow list, its SPF passed, the recipient's domain is skipped, the client
#: is on no DNSBL (the opt-outs, docs/greylisting.md), or the store's
#: :class:`pillarbox.store.types.GreyOutcome` (new and early are deferrals).
GREYLIST_OUTCOMES = (
    "allowed",
    "listed",
    "spf",
    "recipient",
    "unlisted",
    "new",
    "early",
    "retried",
    "known",
    "client",
)
#: How a pause before the MX's greeting ended (``smtp.greet_pause``): the client waited for
#: the greeting, talked before it (greeted with 554), or left.
GREET_OUTCOMES = ("waited", "talked", "left")
#: The mailboxes the retention job empties of old mail (``[retention]``).
RETENTION_MAILBOXES = ("junk", "trash")
#: Why a login failed: wrong or unknown credentials, or the client was throttled first.
AUTH_REASONS = ("credentials", "rate_limited")
#: How the code step of a two-step web login ended: the code (or a recovery code) was right,
#: it was wrong or used already, the address or account was throttled before it was checked,
#: or the stored secret does not open under this server's key (``data_dir/totp-key``).
SECOND_FACTOR_OUTCOMES = ("passed", "wrong_code", "rate_limited", "unreadable_secret")
#: Seconds from a web request's arrival to its response head (pages, API calls, downloads).
WEB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: The route label of web requests no route took: unknown paths (404), redirects to HTTPS,
#: bodies refused before routing — never the raw path, which the client chooses.
UNMATCHED_ROUTE = "unmatched"
#: Seconds from a message's last octet to the reply (the store's fsync and the policy's DNS).
DATA_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Count(Protocol):
    """A counter's child, or :data:`UNCOUNTED`."""

    def inc(self, amount: float = 1) -> None: ...


class Observe(Protocol):
    """A histogram's child, or :data:`UNCOUNTED`."""

    def observe(self, amount: float) -> None: ...


class _Uncounted:
    """A child that counts nothing: what a server without a metrics listener updates."""

    __slots__ = ()

    def inc(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


UNCOUNTED: Final = _Uncounted()


class Metrics:
    """The server's counters and histograms, and the sources of its live gauges.

    ``counting``: a metrics listener will serve them. Without one the series still exist (a
    test may read the registry of the families counted off the per-message path), but the
    children resolved through :meth:`count` and :meth:`timing` are :data:`UNCOUNTED`."""

    def __init__(self, *, counting: bool = True) -> None:
        self.counting = counting
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self.sessions = Counter(
            "pillarbox_sessions",
            "Connections admitted, by listener.",
            ["listener"],
            registry=registry,
        )
        self.connections_refused = Counter(
            "pillarbox_connections_refused",
            "Connections refused at accept by the connection limits or the PROXY header check, "
            "by listener.",
            ["listener"],
            registry=registry,
        )
        self.tls_handshake_failures = Counter(
            "pillarbox_tls_handshake_failures",
            "TLS handshakes that failed (STARTTLS/STLS, or on an implicit-TLS port), by listener.",
            ["listener"],
            registry=registry,
        )
        self.smtp_messages = Counter(
            "pillarbox_smtp_messages",
            "Messages at the end of DATA/BDAT, by listener and outcome "
            "(accepted, refused_4xx, refused_5xx).",
            ["listener", "outcome"],
            registry=registry,
        )
        self.smtp_data_seconds = Histogram(
            "pillarbox_smtp_data_seconds",
            "Seconds from a message's last octet to the SMTP reply, by listener.",
            ["listener"],
            buckets=DATA_BUCKETS,
            registry=registry,
        )
        self.policy_verdicts = Counter(
            "pillarbox_policy_verdicts",
            "Inbound policy verdicts, one per local account receiving a message, by action.",
            ["action"],
            registry=registry,
        )
        self.delivery_attempts = Counter(
            "pillarbox_delivery_attempts",
            "Outbound delivery attempts, one per recipient, by result "
            "(delivered, deferred, bounced).",
            ["result"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "pillarbox_auth_failures",
            "Failed logins, by protocol and reason (credentials, rate_limited).",
            ["protocol", "reason"],
            registry=registry,
        )
        self.greylisting_decisions = Counter(
            "pillarbox_greylisting_decisions",
            "Greylisting decisions at the MX, one per recipient checked, by outcome "
            "(docs/greylisting.md; new and early were deferred).",
            ["outcome"],
            registry=registry,
        )
        self.greet_pauses = Counter(
            "pillarbox_smtp_greet_pauses",
            "Pauses before the MX's greeting (smtp.greet_pause), by outcome (waited, talked: "
            "greeted with 554, left).",
            ["outcome"],
            registry=registry,
        )
        self.quota_warnings = Counter(
            "pillarbox_quota_warnings",
            "Quota warnings stored in an account's INBOX ([quota] warning_thresholds).",
            registry=registry,
        )
        self.retention_expunged = Counter(
            "pillarbox_retention_expunged",
            "Messages expunged by the retention job ([retention]), by mailbox (junk, trash).",
            ["mailbox"],
            registry=registry,
        )
        self.second_factor_logins = Counter(
            "pillarbox_web_second_factor_logins",
            "Code steps of two-step web logins, by outcome "
            "(passed, wrong_code, rate_limited, unreadable_secret).",
            ["outcome"],
            registry=registry,
        )
        #: Outcome word → its child, resolved once.
        self.second_factor = {
            outcome: self.second_factor_logins.labels(outcome) for outcome in SECOND_FACTOR_OUTCOMES
        }
        self.web_requests = Counter(
            "pillarbox_web_requests",
            "Web requests answered, by route template and status class (1xx…5xx).",
            ["route", "status"],
            registry=registry,
        )
        self.web_request_seconds = Histogram(
            "pillarbox_web_request_seconds",
            "Seconds from a web request's arrival to its response head, by route template.",
            ["route"],
            buckets=WEB_BUCKETS,
            registry=registry,
        )
        self.queue_query_failures = Counter(
            "pillarbox_queue_query_failures",
            "Scrapes whose queue query failed (the queue gauges were left out).",
            registry=registry,
        )
        for action in POLICY_ACTIONS:
            self.policy_verdicts.labels(action)
        for outcome in GREYLIST_OUTCOMES:
            self.greylisting_decisions.labels(outcome)
        for outcome in GREET_OUTCOMES:
            self.greet_pauses.labels(outcome)
        for result in DELIVERY_RESULTS:
            self.delivery_attempts.labels(result)
        for mailbox in RETENTION_MAILBOXES:
            self.retention_expunged.labels(mailbox)
        for protocol in PROTOCOLS:
            for reason in AUTH_REASONS:
                self.auth_failures.labels(protocol, reason)
        self._live = _LiveCollector()
        registry.register(self._live)

    def count(self, family: Counter, *labels: str) -> Count:
        """The child of ``family`` for ``labels`` (resolved once by its user), or
        :data:`UNCOUNTED` when this server is not counting."""
        return family.labels(*labels) if self.counting else UNCOUNTED

    def timing(self, family: Histogram, *labels: str) -> Observe:
        """As :meth:`count`, for a histogram."""
        return family.labels(*labels) if self.counting else UNCOUNTED

    def watch_sessions(self, protocol: str, count: Callable[[], int]) -> None:
        """Report ``count()`` at each scrape as the protocol's open sessions."""
        self._live.sessions[protocol] = count

    def set_queue(self, depth: QueueDepth | None, now: datetime | None = None) -> None:
        """The queue as last read (None: the read failed, the gauges are left out)."""
        self._live.queue = depth
        self._live.queue_read_at = now or datetime.now(UTC)

    def listener(self, name: str, *, tls: bool) -> ListenerMetrics:
        """The children a listener updates, resolved once (``tls``: it offers TLS, implicit
        or by STARTTLS)."""
        return ListenerMetrics(self, name, tls=tls)

    def smtp(self, listener: str) -> SmtpMetrics:
        return SmtpMetrics(self, listener)

    def auth(self, protocol: str) -> AuthMetrics:
        return AuthMetrics(self, protocol)

    def web(self) -> WebMetrics:
        return WebMetrics(self)


class ListenerMetrics:
    """One listener's series, created (at 0) when the listener is; a handshake-failure series
    only where TLS is offered."""

    __slots__ = ("handshake_failures", "refused", "sessions")

    def __init__(self, metrics: Metrics, name: str, *, tls: bool) -> None:
        self.sessions = metrics.count(metrics.sessions, name)
        self.refused = metrics.count(metrics.connections_refused, name)
        self.handshake_failures = (
            metrics.count(metrics.tls_handshake_failures, name) if tls else None
        )


class SmtpMetrics:
    """One SMTP listener's message series."""

    __slots__ = ("accepted", "data_seconds", "refused_4xx", "refused_5xx")

    def __init__(self, metrics: Metrics, listener: str) -> None:
        self.accepted = metrics.count(metrics.smtp_messages, listener, "accepted")
        self.refused_4xx = metrics.count(metrics.smtp_messages, listener, "refused_4xx")
        self.refused_5xx = metrics.count(metrics.smtp_messages, listener, "refused_5xx")
        self.data_seconds = metrics.timing(metrics.smtp_data_seconds, listener)

    def message(self, code: int) -> None:
        """Count a message by the reply it got at the end of DATA."""
        if code < 400:
            self.accepted.inc()
        elif code < 500:
            self.refused_4xx.inc()
        else:
            self.refused_5xx.inc()


class AuthMetrics:
    """One protocol's failed-login counters."""

    __slots__ = ("credentials", "rate_limited")

    def __init__(self, metrics: Metrics, protocol: str) -> None:
        self.credentials = metrics.auth_failures.labels(protocol, "credentials")
        self.rate_limited = metrics.auth_failures.labels(protocol, "rate_limited")


class WebMetrics:
    """The web app's request series. A route's children are made on its first request and
    kept: the labels are the route table's templates (bounded, and known only to the app),
    so they do not all exist from the start as other series do."""

    __slots__ = ("_children", "_requests", "_seconds")

    def __init__(self, metrics: Metrics) -> None:
        self._requests = metrics.web_requests
        self._seconds = metrics.web_request_seconds
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def request(self, route: str, status: int, seconds: float) -> None:
        """Count one answered request of ``route`` (its template, or
        :data:`UNMATCHED_ROUTE`)."""
        kind = status // 100
        children = self._children.get((route, kind))
        if children is None:
            children = (self._requests.labels(route, f"{kind}xx"), self._seconds.labels(route))
            self._children[route, kind] = children
        children[0].inc()
        children[1].observe(seconds)


class _LiveCollector(Collector):
    """Gauges of live state, computed when scraped."""

    def __init__(self) -> None:
        self.sessions: dict[str, Callable[[], int]] = {}
        self.queue: QueueDepth | None = None
        self.queue_read_at = datetime.now(UTC)

    def collect(self) -> Iterable[Metric]:
        return list(self._families())

    def _families(self) -> Iterator[Metric]:
        active = GaugeMetricFamily(
            "pillarbox_sessions_active", "Sessions open now, by protocol.", labels=["protocol"]
        )
        for protocol, count in self.sessions.items():
            active.add_metric([protocol], count())
        yield active
        depth = self.queue
        if depth is None:
            return
        yield GaugeMetricFamily(
            "pillarbox_queue_messages",
            "Messages in the outbound queue (the shared store's: cluster-wide).",
            value=depth.messages,
        )
        recipients = GaugeMetricFamily(
            "pillarbox_queue_recipients",
            "Queued recipients not yet final, by state (pending, deferred; cluster-wide).",
            labels=["state"],
        )
        recipients.add_metric(["pending"], depth.pending)
        recipients.add_metric(["deferred"], depth.deferred)
        yield recipients
        age = 0.0
        if depth.oldest is not None:
            age = max(0.0, (self.queue_read_at - depth.oldest).total_seconds())
        yield GaugeMetricFamily(
            "pillarbox_queue_oldest_message_age_seconds",
            "Age of the oldest queued message (0 for an empty queue; cluster-wide).",
            value=age,
        )
