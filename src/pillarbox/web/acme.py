"""The answers to ACME HTTP-01 challenges (RFC 8555 §8.3), served at
``/.well-known/acme-challenge/<token>`` by the web app and by the dedicated challenge listener
that ``[tls] acme_challenge_listener`` starts (the CA connects to port 80, where the web
listener usually is not).

The token is only a key into the table of answers ``pillarbox.net.acme`` fills while an
attempt is under way, or, for a token another node's attempt shared, into the store's
``acme_answers`` (behind a balancer the CA's request may reach any node); it never reaches a
file name. A token found in neither, or whose answer expired, is 404; the store's answer is
awaited at most :data:`STORE_LOOKUP_TIMEOUT` seconds (503 after that, or if it fails: the
CA retries). Anything else is 404 on the challenge
listener, or, with ``[web] redirect_http`` and an https listener, a redirect there: port 80 is
where a browser given the bare host name lands.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from pillarbox.errors import StorageError
from pillarbox.store.interface import Store
from pillarbox.store.types import ACME_HTTP01

#: RFC 8555 §8.1: a token is base64url without padding (at least 128 bits of entropy).
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
#: Seconds the store's answer to a token lookup is awaited.
STORE_LOOKUP_TIMEOUT = 5.0


async def _answer(request: Request) -> Response:
    answers: Mapping[str, str] = request.app.state.acme_challenges
    store: Store | None = request.app.state.acme_store
    token = request.path_params["token"]
    if not _TOKEN.fullmatch(token):
        return PlainTextResponse("no such challenge\n", status_code=404)
    answer = answers.get(token)
    if answer is None and store is not None:
        try:
            async with asyncio.timeout(STORE_LOOKUP_TIMEOUT):
                answer = await store.acme_answer(ACME_HTTP01, token, datetime.now(UTC))
        except (TimeoutError, StorageError):
            return PlainTextResponse("challenges unavailable\n", status_code=503)
    if answer is None:
        return PlainTextResponse("no such challenge\n", status_code=404)
    # RFC 8555 §8.3: the body is the key authorization, as the example's octet-stream.
    return Response(answer, media_type="application/octet-stream")


def routes() -> list[BaseRoute]:
    """The challenge route; the app's ``state.acme_challenges`` must hold this node's answers
    and ``state.acme_store`` the store holding every node's (None: this node's only)."""
    return [Route("/.well-known/acme-challenge/{token}", _answer, methods=["GET"])]


def challenge_app(
    answers: Mapping[str, str],
    store: Store | None,
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
    app.state.acme_store = store
    return app
