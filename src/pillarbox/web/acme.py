"""The answers to ACME HTTP-01 challenges (RFC 8555 §8.3), served at
``/.well-known/acme-challenge/<token>`` by the web app and by the dedicated challenge listener
that ``[tls] acme_challenge_listener`` starts (the CA connects to port 80, where the web
listener usually is not).

The token is only a key into the table of answers ``pillarbox.net.acmechallenge`` fills while
an attempt is under way, or, for a token another node's attempt shared, into the store's
``acme_answers`` (behind a balancer the CA's request may reach any node); it never reaches a
file name. A token found in neither, or whose answer expired, is 404; the store's answer is
awaited at most :data:`STORE_LOOKUP_TIMEOUT` seconds (503 after that, or if it fails: the
CA retries).

The port-80 listener answers anyone, so a token this node does not hold costs a store query
only while some attempt in the cluster has answers pending (:class:`SharedTokens`): when the
store has none, that is remembered for :data:`~pillarbox.store.types.ACME_ANSWER_LAG` and
every unknown token in the meantime is 404 without a query, however many arrive (at most one
query a second per node). An attempt shares its answers and waits twice that lag before the
CA may ask (:mod:`pillarbox.net.acmechallenge`), so no node still remembers "none" by then. Anything
else is 404 on the challenge
listener, or, with ``[web] redirect_http`` and an https listener, a redirect there: port 80 is
where a browser given the bare host name lands.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from pillarbox.errors import StorageError
from pillarbox.store.interface import Store
from pillarbox.store.types import ACME_ANSWER_LAG, ACME_HTTP01

#: RFC 8555 §8.1: a token is base64url without padding (at least 128 bits of entropy).
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
#: Seconds the store's answer to a token lookup is awaited.
STORE_LOOKUP_TIMEOUT = 5.0


class SharedTokens:
    """The http-01 answers other nodes' attempts shared through the store, as this node's
    challenge routes (web app and challenge listener alike) look tokens up in them: the store
    is read only while it has some pending, and "none pending" is believed for
    :data:`~pillarbox.store.types.ACME_ANSWER_LAG` seconds (the port-80 listener is open to
    anyone; an unknown token must not cost a query each)."""

    def __init__(
        self, store: Store, limit: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._limit = limit
        self._clock = clock
        #: Until when (``clock``) the store is known to hold no http-01 answer.
        self._none_until = float("-inf")

    async def answer(self, token: str) -> str | None:
        """The key authorization shared under ``token``; None if there is none (or, within the
        lag, none was pending when last read). :class:`StorageError` from the store."""
        now = self._clock()
        if now < self._none_until:
            return None
        # All of them (few: one per name of the attempts under way, at most ``limit``) rather
        # than the one token: an empty answer is what lets the next requests skip the store.
        pending = await self._store.list_acme_answers(ACME_HTTP01, datetime.now(UTC), self._limit)
        if not pending:
            self._none_until = now + ACME_ANSWER_LAG
        return next((answer.value for answer in pending if answer.key == token), None)


async def _answer(request: Request) -> Response:
    answers: Mapping[str, str] = request.app.state.acme_challenges
    shared: SharedTokens | None = request.app.state.acme_shared
    token = request.path_params["token"]
    if not _TOKEN.fullmatch(token):
        return PlainTextResponse("no such challenge\n", status_code=404)
    answer = answers.get(token)
    if answer is None and shared is not None:
        try:
            async with asyncio.timeout(STORE_LOOKUP_TIMEOUT):
                answer = await shared.answer(token)
        except (TimeoutError, StorageError):
            return PlainTextResponse("challenges unavailable\n", status_code=503)
    if answer is None:
        return PlainTextResponse("no such challenge\n", status_code=404)
    # RFC 8555 §8.3: the body is the key authorization, as the example's octet-stream.
    return Response(answer, media_type="application/octet-stream")


def routes() -> list[BaseRoute]:
    """The challenge route; the app's ``state.acme_challenges`` must hold this node's answers
    and ``state.acme_shared`` the other nodes' (None: this node's only)."""
    return [Route("/.well-known/acme-challenge/{token}", _answer, methods=["GET"])]


def challenge_app(
    answers: Mapping[str, str],
    shared: SharedTokens | None,
    *,
    hostname: str = "",
    https_port: int | None = None,
) -> Starlette:
    """The whole app of the dedicated challenge listener: the challenge route, and with
    ``https_port`` a redirect of every other page to the https listener (RFC 6797 §7.2)."""
    from pillarbox.web.app import NOT_REDIRECTED_PREFIX, https_location

    async def to_https(request: Request) -> Response:
        if https_port is None or request.url.path.startswith(NOT_REDIRECTED_PREFIX):
            return PlainTextResponse("not found\n", status_code=404)
        return RedirectResponse(https_location(request.scope, hostname, https_port), 308)

    app = Starlette(routes=[*routes(), Route("/{path:path}", to_https, methods=["GET"])])
    app.state.acme_challenges = answers
    app.state.acme_shared = shared
    return app
