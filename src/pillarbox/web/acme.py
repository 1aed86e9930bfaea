"""The answers to ACME HTTP-01 challenges (RFC 8555 §8.3), served at
``/.well-known/acme-challenge/<token>`` by the web app and by the dedicated challenge listener
that ``[tls] acme_challenge_listener`` starts (the CA connects to port 80, where the web
listener usually is not).

The token is only a key into the table of answers ``pillarbox.net.acme`` fills while an
attempt is under way; it never reaches a file name. Anything else is 404 on the challenge
listener, or, with ``[web] redirect_http`` and an https listener, a redirect there: port 80 is
where a browser given the bare host name lands.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

#: RFC 8555 §8.1: a token is base64url without padding (at least 128 bits of entropy).
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")


async def _answer(request: Request) -> Response:
    answers: Mapping[str, str] = request.app.state.acme_challenges
    token = request.path_params["token"]
    answer = answers.get(token) if _TOKEN.fullmatch(token) else None
    if answer is None:
        return PlainTextResponse("no such challenge\n", status_code=404)
    # RFC 8555 §8.3: the body is the key authorization, as the example's octet-stream.
    return Response(answer, media_type="application/octet-stream")


def routes() -> list[BaseRoute]:
    """The challenge route; the app's ``state.acme_challenges`` must hold the answers."""
    return [Route("/.well-known/acme-challenge/{token}", _answer, methods=["GET"])]


def challenge_app(
    answers: Mapping[str, str], *, hostname: str = "", https_port: int | None = None
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
    return app
