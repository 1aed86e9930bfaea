"""Our MTA-STS policy file (RFC 8461 §3.2): ``GET /.well-known/mta-sts.txt`` on the host
``mta-sts.<hosted domain>`` answers with exactly the policy whose digest the domain's
``_mta-sts`` TXT record carries (:func:`pillarbox.web.admin.domain_records`, the same records
the admin page and ``pillarbox dns records`` show), as ``text/plain``.

Any other host, a domain we do not host included, gets 404: the file says which hosts may
receive a domain's mail, and only a hosted domain's is ours to say. Senders fetch it over
HTTPS only (§3.3): the "https" listener serves it, with a certificate that must name the host
(``[tls] acme_names``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pillarbox.errors import InvalidName, NotFound
from pillarbox.web.admin import domain_records
from pillarbox.web.app import web

#: RFC 8461 §3.2: the Policy Host is "mta-sts" prepended to the Policy Domain.
POLICY_HOST_PREFIX = "mta-sts."


def policy_domain(host_header: str) -> str:
    """The Policy Domain a request's Host names (``mta-sts.example.com:443`` → ``example.com``);
    raises :class:`NotFound` for any other host."""
    host = host_header.strip().lower().partition(":")[0].rstrip(".")
    if not host.startswith(POLICY_HOST_PREFIX) or len(host) == len(POLICY_HOST_PREFIX):
        raise NotFound("no MTA-STS policy for this host")
    return host[len(POLICY_HOST_PREFIX) :]


async def policy_file(request: Request) -> Response:
    domain = policy_domain(request.headers.get("host", ""))
    try:
        records = await domain_records(web(request).services, domain)
    except InvalidName:
        raise NotFound("no MTA-STS policy for this host") from None
    return Response(records.mta_sts_policy, media_type="text/plain")


def routes() -> list[BaseRoute]:
    return [Route("/.well-known/mta-sts.txt", policy_file)]
