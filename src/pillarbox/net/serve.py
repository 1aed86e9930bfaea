"""``pillarbox serve``: one process, one event loop, every listener (DESIGN principle 7).

Start-up order: store (migrations) → TLS (the stored ACME certificate, when ``tls.acme``) →
listeners → the ACME challenge listener → the authoritative DNS server (when enabled; with
``dns.notify``, a task building its zones every ``dns.zone_check_interval``) → the
policy and its spam model read ahead (when enabled) → background tasks (the queue runner, the
ACME renewal task, the greylist pruning when greylisting is on, the retention job, the check
that no newer Pillarbox upgraded the store since) → with a SQLite store, the control socket
(:mod:`.control`); then print where to connect.
Shutdown on SIGTERM/SIGINT in reverse: stop accepting, tell sessions to wind down
(``context.shutdown``), give in-flight transactions ``server.shutdown_grace`` seconds, stop
background tasks (a delivery cut short stays claimed by this node's name and is taken up again
at the next start), close the store — so an acknowledged message is never lost and a message
in flight is either acknowledged and stored or not acknowledged at all. The same stop, exit
code 1, when that check finds the store upgraded under the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import ipaddress
import signal
import ssl
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pillarbox import blocking, provisioning, retention
from pillarbox.config import LISTENER_DOCS, Config, socket_mode
from pillarbox.dns.authoritative import AuthoritativeServer, ServerLimits
from pillarbox.dns.hosted import HostedZones, record_policy, rollover_timing, signing_policy
from pillarbox.dns.notify import ZoneNotifier, notify_targets
from pillarbox.dns.records import normalise_name
from pillarbox.dns.transfer import ZoneTransfers, transfer_policy, tsig_key
from pillarbox.errors import ConfigError, SchemaTooNew, StorageError, StoreInUse
from pillarbox.net.acmefiles import lasting_tlsa
from pillarbox.net.certfiles import CertificateFiles
from pillarbox.net.control import ControlSocket
from pillarbox.net.control import socket_path as control_socket_path
from pillarbox.net.http import HttpListener, origin
from pillarbox.net.listener import ConnectionCounter, ConnectionLimits, Handler, Listener
from pillarbox.net.proxyheader import UpstreamProxy
from pillarbox.net.tls import (
    certificate_addresses,
    ensure_self_signed,
    server_context,
    tls_paths,
)
from pillarbox.observability import log as logging_setup
from pillarbox.observability.log import Log
from pillarbox.observability.metrics import Metrics
from pillarbox.policy import greylisting, reporting
from pillarbox.queue import tlsreporting
from pillarbox.queue.forwarding import srs_settings
from pillarbox.queue.routing import Router
from pillarbox.queue.runner import runner_for
from pillarbox.services import Services
from pillarbox.store.open import is_postgresql, open_store
from pillarbox.store.sqlite.serverlock import ServerLock

if TYPE_CHECKING:
    from pillarbox.net.acme import CertificateManager

#: listener name → (implicit TLS?, connection-limit group, "module:factory" of its handler)
SERVICES: dict[str, tuple[bool, str, str]] = {
    "smtp": (False, "smtp", "pillarbox.net.smtp:mx_handler"),
    "submission": (False, "smtp", "pillarbox.net.smtp:submission_handler"),
    "submissions": (True, "smtp", "pillarbox.net.smtp:submission_handler"),
    "imap": (False, "imap", "pillarbox.net.imap:imap_handler"),
    "imaps": (True, "imap", "pillarbox.net.imap:imap_handler"),
    "pop3": (False, "pop3", "pillarbox.net.pop3:pop3_handler"),
    "pop3s": (True, "pop3", "pillarbox.net.pop3:pop3_handler"),
    "managesieve": (False, "managesieve", "pillarbox.net.managesieve:managesieve_handler"),
    "lmtp": (False, "lmtp", "pillarbox.net.smtp:lmtp_handler"),
    "metrics": (False, "metrics", "pillarbox.net.metrics:metrics_handler"),
}

#: The listeners served by uvicorn with the web app (one app for both) → implicit TLS?
WEB_LISTENERS: dict[str, bool] = {"http": False, "https": True}
#: The LMTP listener on a UNIX socket (``[lmtp] socket``), beside or instead of the TCP one.
LMTP_SOCKET = "lmtp-unix"
#: The listener answering ACME HTTP-01 challenges (``[tls] acme_challenge_listener``).
ACME_LISTENER = "acme-http"

HandlerFactory = Callable[[Services, str], Handler]


def _factory(spec: str) -> HandlerFactory:
    module_name, _, attribute = spec.partition(":")
    factory: HandlerFactory = getattr(importlib.import_module(module_name), attribute)
    return factory


class Server:
    """A running Pillarbox: listeners plus background tasks over one store; tests start it
    in-process on port 0 and read the bound ports from :attr:`listeners`."""

    def __init__(self, config: Config, *, held: ServerLock | None = None) -> None:
        self.config = config
        #: The SQLite store's lock when ``pillarbox serve`` took it before starting the server.
        self.held = held
        self.listeners: dict[str, Listener | HttpListener] = {}
        self.context: Services | None = None
        #: The authoritative DNS server, when ``dns.authoritative_enabled``.
        self.dns: AuthoritativeServer | None = None
        #: Sends NOTIFY to the secondaries, when ``dns.notify``.
        self.notifier: ZoneNotifier | None = None
        #: The ACME certificate's keeper, when ``tls.acme``.
        self.acme: CertificateManager | None = None
        #: Where ``pillarbox queue flush`` wakes the queue runner, with a SQLite store.
        self.control: ControlSocket | None = None
        self.log = Log("serve")
        #: Set by a signal, or by the server itself when it must not go on.
        self.stopping = asyncio.Event()
        #: Why the server stopped itself, raised once it has stopped.
        self.fault: SchemaTooNew | StoreInUse | None = None

    async def start(self) -> None:
        config = self.config
        blocking.configure(config.server.workers)
        challenges: dict[str, str] = {}
        cert, key = tls_paths(config)
        if not config.tls.cert and ensure_self_signed(
            cert, key, config.server.hostname, certificate_addresses(config)
        ):
            self.log.info("self-signed certificate written", path=str(cert))
        tls = server_context(config)
        if config.tls.acme:
            # Imported only then: the ACME client (and requests) stay out of a server without.
            from pillarbox.net.acme import CertificateManager

            self.acme = CertificateManager(config, tls, challenges)
            self.acme.install_stored()
        store = open_store(
            config.store.url, config.data_dir, config.store, serving=True, held=self.held
        )
        await store.open()
        authenticator = provisioning.authenticator(store, config)
        self.context = context = Services(
            config=config,
            store=store,
            authenticator=authenticator,
            router=Router(store),
            tls=tls,
            srs=srs_settings(config),
            acme_challenges=challenges,
            # Nothing on the SMTP path is counted that no listener would serve.
            metrics=Metrics(counting=config.listeners.metrics.enabled),
        )
        prefix = config.server.ipv6_client_prefix

        def counter(total: int, per_address: int) -> ConnectionCounter:
            return ConnectionCounter(
                ConnectionLimits(ipv6_prefix=prefix, total=total, per_address=per_address)
            )

        counters = {
            "smtp": counter(config.smtp.max_connections, config.smtp.max_connections_per_ip),
            "imap": counter(config.imap.max_connections, config.imap.max_connections_per_ip),
            "pop3": counter(config.pop3.max_connections, config.pop3.max_connections_per_ip),
            "managesieve": counter(
                config.managesieve.max_connections, config.managesieve.max_connections_per_ip
            ),
            # One front MTA, usually: its connections are all from one address.
            "lmtp": counter(config.lmtp.max_connections, config.lmtp.max_connections),
            # Both web listeners together; uvicorn's own limit is per listener.
            "http": counter(config.web.max_connections, config.web.max_connections_per_ip),
            # One scraper cannot take them all: a few per address, and few in total.
            "metrics": counter(
                config.metrics.max_connections, max(1, min(4, config.metrics.max_connections))
            ),
        }
        # The LMTP group counts its TCP and UNIX-socket sessions together, as its limit does.
        for group in ("smtp", "imap", "pop3", "managesieve", "lmtp"):
            context.metrics.watch_sessions(group, _count_of(counters[group]))
        try:
            web: list[HttpListener] = []
            for name in LISTENER_DOCS:
                settings = getattr(config.listeners, name)
                if not settings.enabled:
                    continue
                if name in WEB_LISTENERS:
                    http = HttpListener(
                        name,
                        grace=config.server.shutdown_grace,
                        tls=tls if WEB_LISTENERS[name] else None,
                        handshake_timeout=config.tls.handshake_timeout,
                        forwarded=settings.proxy_networks if settings.forwarded_headers else (),
                        acme_tls_alpn=self._tls_alpn_answers(name),
                        max_connections=config.web.max_connections,
                        connections=counters["http"],
                        head_timeout=config.web.request_head_timeout,
                        body_timeout=config.web.request_body_timeout,
                        body_min_rate=config.web.request_body_min_rate,
                    )
                    with _bind_error(f"listeners.{name}", settings.address, settings.port):
                        http.bind(settings.address, settings.port)
                    self.listeners[name] = http
                    web.append(http)
                    continue
                if name not in SERVICES:
                    self.log.warning("listener not available in this build", listener=name)
                    continue
                implicit_tls, group, spec = SERVICES[name]
                listener = Listener(
                    name,
                    _factory(spec)(context, name),
                    counters[group],
                    tls=tls if implicit_tls else None,
                    handshake_timeout=config.tls.handshake_timeout,
                    # Every listener but the metrics one offers TLS, implicit or by STARTTLS.
                    metrics=context.metrics.listener(name, tls=group != "metrics"),
                    proxy=UpstreamProxy.of(settings),
                )
                with _bind_error(f"listeners.{name}", settings.address, settings.port):
                    await listener.start(settings.address, settings.port)
                self.listeners[name] = listener
                self.log.info("listening", listener=name, on=_where(listener.ports))
                if name == "metrics":
                    self._check_metrics_exposure(settings.address)
            await self._start_lmtp_socket(context, counters["lmtp"])
            await self._serve_web(context, web)
            await self._start_acme_listener(context)
            await self._start_dns(context)
            if config.policy.enabled:
                await self._warm_up_policy(context)
        except BaseException:
            await self.stop()
            raise
        context.spawn(runner_for(context).run(), "queue-runner")
        # `pillarbox queue flush` wakes the runner as the admin page's Retry does: by NOTIFY
        # on PostgreSQL (every node hears it), by the control socket on SQLite.
        store.on_queue_wake(context.queue_wakeup.set)
        if not is_postgresql(config.store.url):
            self.control = ControlSocket(context.queue_wakeup.set)
            await self.control.start(control_socket_path(config.data_dir))
        if config.greylisting.enabled:
            pruning = greylisting.prune_periodically(
                context.store, config.greylisting.prune_interval, context.shutdown
            )
            context.spawn(pruning, "greylist-prune")
        context.spawn(retention.run(context), "retention")
        context.spawn(self._watch_schema(context), "schema-watch")
        if config.dmarc_reports.enabled:
            context.spawn(reporting.run(context), "dmarc-reports")
        if config.tls_reports.enabled:
            context.spawn(tlsreporting.run(context), "tls-reports")
        if config.tls.cert:
            files = CertificateFiles(context.tls, *tls_paths(config))
            context.spawn(
                files.follow(config.tls.files_check_interval, context.shutdown), "tls-files"
            )
        if self.acme is not None:
            self.acme.store = context.store
            if self.acme.tls_alpn is not None:
                following = self.acme.tls_alpn.follow(
                    context.store, config.tls.acme_shared_answers_max
                )
                context.spawn(following, "acme-tls-alpn")
            context.spawn(self.acme.run(), "acme")

    async def _watch_schema(self, context: Services) -> None:
        """Stop when a newer Pillarbox has upgraded the store: the schema was checked only at
        open, and going on would write rows without what the new migrations added (an old
        PostgreSQL node beside an upgraded one saved contacts with no ETag; docs/upgrading.md).
        """
        while not context.shutdown.is_set():
            await asyncio.sleep(self.config.server.schema_check_interval)
            try:
                await context.store.check_schema()
            except (SchemaTooNew, StoreInUse) as exc:  # StoreInUse: PostgreSQL's lock lost
                upgraded = isinstance(exc, SchemaTooNew)
                self.log.error(
                    "the store was upgraded under this server; stopping"
                    if upgraded
                    else "a migration took the store from this server; stopping",
                    error=str(exc),
                )
                self.fault = exc
                self.stopping.set()
                return
            except StorageError as exc:  # a store hiccup: the next check retries
                self.log.warning("schema check failed", error=str(exc))

    def _check_metrics_exposure(self, address: str) -> None:
        """Metrics reachable beyond this host without credentials are worth a warning: they
        tell anyone how much mail flows and who fails to log in how often."""
        metrics = self.config.metrics
        if metrics.bearer_token or metrics.basic_auth_password:
            return
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(address).is_loopback:
                return
        self.log.warning(
            "metrics listener open beyond loopback without credentials",
            address=address,
            hint="set [metrics] bearer_token or basic_auth_password",
        )

    async def _warm_up_policy(self, context: Services) -> None:
        """The policy built and the spam filter's model read before the first message needs
        them (mail arriving meanwhile waits on its connection); a failure only costs the
        first messages that read."""
        try:
            await context.policy.warm_up()
        except StorageError as exc:
            self.log.warning("spam model not read ahead", error=str(exc))
        else:
            self.log.info("spam model read ahead")

    async def _start_lmtp_socket(self, context: Services, counter: ConnectionCounter) -> None:
        """LMTP on the UNIX socket ``[lmtp] socket`` names (Postfix ``lmtp:unix:``), if any:
        the same handler as the TCP listener's, sharing its connection limit."""
        path = self.config.lmtp.socket
        if not path:
            return
        mode = socket_mode(self.config.lmtp.socket_mode)
        assert mode is not None  # validated with the config
        listener = Listener(
            LMTP_SOCKET,
            _factory(SERVICES["lmtp"][2])(context, "lmtp"),
            counter,
            metrics=context.metrics.listener(LMTP_SOCKET, tls=False),
        )
        with _bind_error("lmtp.socket", path, None):
            await listener.start_unix(path, mode)
        self.listeners[LMTP_SOCKET] = listener
        self.log.info("listening", listener=LMTP_SOCKET, on=path)

    def _tls_alpn_answers(self, listener: str) -> Callable[[str], ssl.SSLContext | None] | None:
        """What the https listener answers tls-alpn-01 with (RFC 8737: the CA connects to
        port 443); None for other listeners or without tls-alpn-01."""
        if listener != "https" or self.acme is None or self.acme.tls_alpn is None:
            return None
        return self.acme.tls_alpn.context_for

    async def _start_acme_listener(self, context: Services) -> None:
        """The HTTP-01 challenge listener (``[tls] acme_challenge_listener``): the CA connects
        to port 80, where the web listener usually is not; browsers landing there are sent on
        to the https listener when ``[web] redirect_http``."""
        tls = self.config.tls
        if not (tls.acme and tls.acme_challenge_listener and "http-01" in tls.acme_challenges):
            return  # dns-01 only: port 80 may be closed or another server's
        from pillarbox.web.acme import SharedTokens, challenge_app

        https = self.listeners.get("https")
        app = challenge_app(
            context.acme_challenges,
            SharedTokens(context.store, tls.acme_shared_answers_max),
            hostname=self.config.server.hostname,
            https_port=https.ports[0][1] if https and self.config.web.redirect_http else None,
        )
        listener = HttpListener(ACME_LISTENER, grace=self.config.server.shutdown_grace)
        await listener.start(tls.acme_http_address, tls.acme_http_port, app)
        self.listeners[ACME_LISTENER] = listener
        self.log.info("listening", listener=ACME_LISTENER, on=_where(listener.ports))

    async def _start_dns(self, context: Services) -> None:
        """The optional authoritative DNS server for the hosted domains (``[dns]``)."""
        dns = self.config.dns
        if not dns.authoritative_enabled:
            return
        if dns.notify:
            self.notifier = ZoneNotifier(
                notify_targets(self.config),
                key=tsig_key(self.config),
                retry_interval=dns.notify_retry_interval,
            )
        zones = HostedZones(
            context.store,
            mail_host=self.config.server.hostname,
            addresses=dns.addresses,
            policy=record_policy(self.config),
            cache_seconds=dns.zone_check_interval,
            signing=signing_policy(self.config),
            rollover=rollover_timing(self.config),
            cds=dns.dnssec_cds,
            tlsa=lambda: lasting_tlsa(self.config),
            nameservers=dns.nameservers,
            catalog=normalise_name(dns.catalog_zone) if dns.catalog_zone else "",
            on_serial_change=None if self.notifier is None else self.notifier.zone_changed,
        )
        transfers = ZoneTransfers(zones, transfer_policy(self.config))
        limits = ServerLimits(max_tcp_connections=dns.authoritative_max_tcp_connections)
        self.dns = AuthoritativeServer(zones, limits=limits, transfers=transfers)
        await self.dns.start(dns.authoritative_address, dns.authoritative_port)
        self.log.info("dns listening", on=_where([(self.dns.host, self.dns.port)]))
        if self.notifier is not None:
            context.spawn(self._watch_zones(zones, self.notifier), "dns-zone-watch")
        if self.acme is not None and "dns-01" in self.config.tls.acme_challenges:
            from pillarbox.dns.acmerecords import AcmeChallengeRecords

            self.acme.dns_records = AcmeChallengeRecords(
                context.store, zones, self.dns.host, self.dns.port
            )

    async def _watch_zones(self, zones: HostedZones, notifier: ZoneNotifier) -> None:
        """Build the hosted zones every ``dns.zone_check_interval`` whether asked for or
        not, so a change moves the serial and is announced to the secondaries (NOTIFY) even
        while no query comes. After the first build every zone is announced, changed or not,
        as BIND announces the zones it loads: a secondary that missed a NOTIFY while this
        server was down (or its retries ran out) catches up now, not at its SOA refresh. An
        unneeded one costs a query: a secondary told of a zone asks for its SOA and transfers
        only a newer serial (RFC 1996 §1.2, §3)."""
        announced = False
        while True:
            try:
                await zones.refresh()
                if not announced:
                    for domain, soa in zones.soas().items():
                        notifier.zone_changed(domain, soa)
                    announced = True
            except StorageError as exc:  # a store hiccup: the next round retries
                self.log.warning("zone check failed", error=str(exc))
            await asyncio.sleep(self.config.dns.zone_check_interval)

    async def _serve_web(self, context: Services, web: Sequence[HttpListener]) -> None:
        """The web app on the bound web listeners: built last, once every port is known, so
        client set-up pages name the ports actually bound and plain HTTP can redirect to the
        https listener's."""
        if not web:
            return
        from pillarbox.web.app import create_app
        from pillarbox.web.zone import load_zone_names

        await load_zone_names()
        ports = {name: listener.ports[0][1] for name, listener in self.listeners.items()}
        app = create_app(context, ports=ports)
        for listener in web:
            await listener.serve(app)
            self.log.info("listening", listener=listener.name, on=_where(listener.ports))

    def endpoints(self) -> list[str]:
        lines = [
            f"{name:<12} {_where(listener.ports)}" + ("  (TLS)" if _implicit_tls(name) else "")
            for name, listener in self.listeners.items()
        ]
        if self.dns is not None:
            lines.append(f"{'dns':<12} {_where([(self.dns.host, self.dns.port)])}  (UDP, TCP)")
        url = self.webmail_url()
        if url is not None:
            lines.append(f"{'webmail':<12} {url}")
        return lines

    def webmail_url(self) -> str | None:
        """Where a browser opens the webmail: the https listener when it runs, else http."""
        for name in ("https", "http"):
            listener = self.listeners.get(name)
            if listener is not None and listener.ports:
                address, port = listener.ports[0]
                host = self.config.server.hostname if address in ("::", "0.0.0.0") else address
                return origin(name, host, port) + "/"
        return None

    async def stop(self) -> None:
        """Graceful stop; safe to call twice."""
        for listener in self.listeners.values():
            listener.stop_accepting()
        context = self.context
        if context is not None:
            context.shutdown.set()
        await asyncio.gather(
            *(lst.finish(self.config.server.shutdown_grace) for lst in self.listeners.values())
        )
        self.listeners.clear()
        if self.control is not None:
            await self.control.close()
            self.control = None
        if self.dns is not None:
            await self.dns.close()
            self.dns = None
        if self.notifier is not None:
            await self.notifier.close()
            self.notifier = None
        if context is not None:
            for task in list(context.background):
                task.cancel()
            await asyncio.gather(*context.background, return_exceptions=True)
            await context.store.close()
            self.context = None
        blocking.shutdown()


def _implicit_tls(name: str) -> bool:
    """Whether the listener speaks TLS from the first byte ("metrics" ends in s, yet not)."""
    if name in SERVICES:
        return SERVICES[name][0]
    return WEB_LISTENERS.get(name, False)


def _count_of(counter: ConnectionCounter) -> Callable[[], int]:
    return lambda: counter.total


def _where(ports: Sequence[tuple[str, int]]) -> str:
    """``host:port`` for each, ``[v6]:port``; a UNIX socket's path as it is."""
    return ", ".join(
        a if a.startswith("/") else f"[{a}]:{p}" if ":" in a else f"{a}:{p}" for a, p in ports
    )


async def serve_until_signalled(
    config: Config, banner: Sequence[str] = (), *, held: ServerLock | None = None
) -> None:
    server = Server(config, held=held)
    await server.start()
    # What start-up built (modules, config, TLS contexts, caches) lives as long as the process.
    # Left in the collected heap, every full collection walked it: pauses of up to 37 ms measured,
    # stalling every session at once and making the SMTP benchmark's p99 (docs/performance.md,
    # "Garbage-collection pauses"). Frozen, a full collection walks only later objects.
    gc.collect()
    gc.freeze()
    server.log.info("start-up heap frozen", objects=gc.get_freeze_count())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stopping.set)
    lines = [*banner, "Pillarbox is running; connect to:", *(f"  {e}" for e in server.endpoints())]
    lines.append("Stop with Ctrl-C (SIGINT) or SIGTERM.")
    print("\n".join(lines), flush=True)
    await server.stopping.wait()
    server.log.info("stopping")
    await server.stop()
    server.log.info("stopped")
    if server.fault is not None:
        raise server.fault


def run_server(
    config: Config, banner: Sequence[str] = (), *, held: ServerLock | None = None
) -> None:
    """Entry point of ``pillarbox serve``: uvloop when installed, the stdlib loop otherwise.
    ``held``: the SQLite store's lock, taken already (:func:`pillarbox.cli.main.run_locked`)."""
    logging_setup.setup(config.logging.level, config.logging.format)
    try:
        _loop_runner()(serve_until_signalled(config, banner, held=held))
    except KeyboardInterrupt:
        sys.exit(130)


def _loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """uvloop's runner when it is installed (the ``speed`` extra), else asyncio's."""
    try:
        module = importlib.import_module("uvloop")
    except ImportError:
        return asyncio.run
    runner: Callable[[Coroutine[Any, Any, None]], None] = module.run
    return runner


@contextlib.contextmanager
def _bind_error(key: str, address: str, port: int | None) -> Iterator[None]:
    """A listener that cannot bind (the port taken by another server, an address this host
    does not have, a socket path in use) is a configuration error naming its key, not a
    traceback: the operator moves the port or path, or turns the listener off. ``port`` is
    None for a UNIX socket at the path ``address``."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if port is None:
            fix = f"cannot listen on {address} ({reason}); change the path or remove it"
        else:
            fix = (
                f"cannot listen on {address}:{port} ({reason}); "
                "change its port or set enabled = false"
            )
        raise ConfigError(key, fix) from None
