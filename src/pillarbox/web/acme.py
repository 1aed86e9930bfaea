"""The answers to ACME HTTP-01 challenges (RFC 8555 §8.3), served at
``/.well-known/acme-challenge/<token>`` by the web app and by the dedicated challenge listener
that ``[tls] acme_challenge_listener`` starts (the CA connects to port 80, where the web
listener usually is not).

The token is only a key into the table of answers ``pillarbox.net.acme`` fills while an
attempt is under way; it never reaches a file name. Anything else is 404.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
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


def challenge_app(answers: Mapping[str, str]) -> Starlette:
    """The whole app of the dedicated challenge listener: the challenge route alone."""
    app = Starlette(routes=routes())
    app.state.acme_challenges = answers
    return app
