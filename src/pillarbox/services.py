"""The shared parts of a running server, handed to every protocol adapter and the web app.

One object instead of a dozen parameters; built once by ``pillarbox serve`` (or a test) and
passed explicitly — there are no module-level singletons.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from pillarbox.auth.directory import Authenticator
from pillarbox.config import Config
from pillarbox.observability.metrics import Metrics
from pillarbox.queue.routing import Router
from pillarbox.queue.srs import SrsSettings
from pillarbox.store.interface import Store

if TYPE_CHECKING:
    from pillarbox.dns.resolver import Resolver
    from pillarbox.policy.failurereport import FailureSink
    from pillarbox.policy.pipeline import InboundPolicy
    from pillarbox.sieve.cache import ScriptCache


@dataclass
class Services:
    config: Config
    store: Store
    authenticator: Authenticator
    router: Router
    #: Server-side TLS context of every listener.
    tls: ssl.SSLContext
    #: The key and limits of the Sender Rewriting Scheme for forwarded mail.
    srs: SrsSettings
    #: Set when the server begins a graceful stop; sessions end at their next safe point.
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set whenever something is queued for outbound delivery, to wake the queue runner.
    queue_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    background: set[asyncio.Task[None]] = field(default_factory=set)
    #: ACME HTTP-01 answers being asked for (token → key authorization, RFC 8555 §8.3), filled
    #: by :mod:`pillarbox.net.acmechallenge` and read by the web app's challenge route.
    acme_challenges: dict[str, str] = field(default_factory=dict)
    #: This server's counters and gauges (the metrics listener serves them; docs/metrics.md).
    metrics: Metrics = field(default_factory=Metrics)
    _policy: InboundPolicy | None = field(default=None, init=False, repr=False)
    _sieve_scripts: ScriptCache | None = field(default=None, init=False, repr=False)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run a background task for the server's lifetime (cancelled at shutdown)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    @property
    def hostname(self) -> str:
        return self.config.server.hostname

    @property
    def policy(self) -> InboundPolicy:
        """The inbound policy (SPF/DKIM/DMARC/ARC/DNSBL/spam filter), built on first use:
        one per server, so its DNS cache is shared by every connection."""
        if self._policy is None:
            # Imported at first use, as the Sieve cache below: an admin command builds
            # Services to store what the web would and never judges a message (the policy's
            # modules and the Sieve engine were ~0.4 s of CPU of its start on a slow VM).
            from pillarbox.policy.pipeline import inbound_policy

            reporter: Callable[[Resolver], FailureSink] | None = None
            if self.config.dmarc_failure_reports.enabled:
                # Imported here: the reporter's module imports this one (it sends through us).
                from pillarbox.policy.failurereporting import FailureReporter

                reporter = partial(FailureReporter, self)
            self._policy = inbound_policy(self.config, self.store, failure_reports=reporter)
        return self._policy

    @property
    def sieve_scripts(self) -> ScriptCache:
        """Compiled Sieve scripts by content (``[sieve]`` limits), shared by every delivery."""
        if self._sieve_scripts is None:
            from pillarbox.sieve import RegexLimits
            from pillarbox.sieve.cache import ScriptCache

            section = self.config.sieve
            self._sieve_scripts = ScriptCache(
                max_entries=section.cache_entries,
                max_size=section.max_script_size,
                max_nesting=section.max_nesting,
                max_variables=section.max_variables,
                regex_limits=RegexLimits(section.regex_max_length, section.regex_max_memory),
            )
        return self._sieve_scripts


def command_services(config: Config, store: Store) -> Services:
    """The parts an admin command uses to do what the running server would (store as the web
    does, queue reports), listening on nothing: submission needs no server certificate."""
    from pillarbox import provisioning
    from pillarbox.queue.forwarding import srs_settings

    return Services(
        config=config,
        store=store,
        authenticator=provisioning.authenticator(store, config),
        router=Router(store),
        tls=ssl.create_default_context(ssl.Purpose.CLIENT_AUTH),
        srs=srs_settings(config),
    )
