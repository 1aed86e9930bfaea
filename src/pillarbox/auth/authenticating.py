"""What a protocol session needs of the authenticator, as Protocols: the IMAP and ManageSieve
cores take these rather than :class:`pillarbox.auth.directory.Authenticator` itself, so an
adapter can hand them a wrapper (:class:`pillarbox.net.authcount.CountedAuthenticator`, which
counts failed logins for the metrics) and the cores stay free of the store and of I/O."""

from __future__ import annotations

from typing import Protocol

from pillarbox.auth.sasl import Challenge
from pillarbox.store.types import Account


class LoggedIn(Protocol):
    """What a finished SASL exchange yields (``pillarbox.auth.directory.Authenticated``)."""

    @property
    def account(self) -> Account: ...

    @property
    def mechanism(self) -> str: ...


class SaslExchange(Protocol):
    async def start(self, initial_response: bytes | None) -> Challenge | LoggedIn: ...

    async def receive(self, response: bytes) -> Challenge | LoggedIn: ...


class Authenticating(Protocol):
    """The part of :class:`pillarbox.auth.directory.Authenticator` a session uses. Failures
    raise ``AuthenticationFailed`` or ``RateLimited`` (the authenticator rate-limits)."""

    def mechanisms(self, *, secure: bool) -> tuple[str, ...]: ...

    def start_sasl(self, mechanism: str, *, remote_ip: str, secure: bool) -> SaslExchange: ...

    async def check_password(
        self, username: str, password: str, remote_ip: str, *, interactive: bool = False
    ) -> Account: ...
