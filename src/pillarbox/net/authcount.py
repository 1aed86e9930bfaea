"""The authenticator as the IMAP and ManageSieve sessions see it, counting failed logins.

Those cores call the authenticator themselves (:mod:`pillarbox.auth.authenticating`), so the
adapter hands them this wrapper: a wrong password or a throttled client raises through it as
before, and is counted by protocol and reason (``pillarbox_auth_failures_total``). SMTP and
POP3 count in their adapters, where they already catch and log the failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
from contextlib import contextmanager

from pillarbox.auth.authenticating import Authenticating, LoggedIn, SaslExchange
from pillarbox.auth.sasl import Challenge
from pillarbox.errors import AuthenticationFailed, RateLimited
from pillarbox.observability.metrics import AuthMetrics
from pillarbox.store.types import Account


@contextmanager
def _counting(metrics: AuthMetrics) -> Iterator[None]:
    try:
        yield
    except RateLimited:
        metrics.rate_limited.inc()
        raise
    except AuthenticationFailed:
        metrics.credentials.inc()
        raise


class CountedAuthenticator:
    """:class:`Authenticating` that counts its failures in ``metrics``."""

    def __init__(self, inner: Authenticating, metrics: AuthMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def mechanisms(self, *, secure: bool) -> tuple[str, ...]:
        return self._inner.mechanisms(secure=secure)

    def start_sasl(self, mechanism: str, *, remote_ip: str, secure: bool) -> SaslExchange:
        exchange = self._inner.start_sasl(mechanism, remote_ip=remote_ip, secure=secure)
        return _CountedExchange(exchange, self._metrics)

    async def check_password(
        self, username: str, password: str, remote_ip: str, *, interactive: bool = False
    ) -> Account:
        with _counting(self._metrics):
            return await self._inner.check_password(
                username, password, remote_ip, interactive=interactive
            )


class _CountedExchange:
    def __init__(self, inner: SaslExchange, metrics: AuthMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def start(self, initial_response: bytes | None) -> Challenge | LoggedIn:
        return await self._step(self._inner.start(initial_response))

    async def receive(self, response: bytes) -> Challenge | LoggedIn:
        return await self._step(self._inner.receive(response))

    async def _step(self, step: Awaitable[Challenge | LoggedIn]) -> Challenge | LoggedIn:
        with _counting(self._metrics):
            return await step
