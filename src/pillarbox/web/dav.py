"""The ``/dav/`` tree: CardDAV (:mod:`.carddav`) and CalDAV (:mod:`.caldav`) behind one
principal per account, one authentication and one set of routes.

Implementation notes:

- **Where things are**: ``/.well-known/carddav`` and ``/.well-known/caldav`` redirect to
  ``/dav/`` (RFC 6764 §5); the principal ``/dav/principals/<address>/`` names both homes,
  ``addressbook-home-set`` (RFC 6352 §7.1.1) and ``calendar-home-set`` (RFC 4791 §6.2.1),
  the account's address as its ``calendar-user-address-set`` (RFC 6638 §2.4.1), its
  ``calendar-user-type`` (§2.4.2) and its scheduling inbox and outbox (§2.2.1, §2.1.1:
  :mod:`.scheduleboxes`).
- **Authentication** (:func:`.webdav.caller`): failures answer 401 with a ``WWW-Authenticate``
  challenge, throttling 429, counted as the other protocols count them.
- **Only the owner**: a path naming another account (or none that exists) is 404, the same
  answer, so addresses cannot be probed.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from pillarbox import davxml
from pillarbox.auth.directory import normalize_username
from pillarbox.davxml import CALDAV, CARDDAV, DAV, element, tag
from pillarbox.errors import AuthenticationFailed, RateLimited
from pillarbox.observability.log import Log
from pillarbox.web import caldav, carddav, scheduleboxes
from pillarbox.web.app import client_ip, refused
from pillarbox.web.webdav import (
    FINITE_DEPTH,
    NOT_FOUND,
    ROOT,
    Resource,
    Target,
    answer,
    caller,
    collection,
    common,
    depth,
    href_prop,
    not_allowed,
    principal_href,
    privileges,
    props,
    read_xml,
    text,
    xml,
)

_log = Log("web.dav")

METHODS = [
    "OPTIONS",
    "GET",
    "HEAD",
    "PUT",
    "DELETE",
    "COPY",
    "MOVE",
    "PROPFIND",
    "PROPPATCH",
    "REPORT",
    "MKCALENDAR",
    "POST",  # RFC 6638 §5: free-busy lookups through the outbox
]
#: RFC 4918 §10.1 compliance classes, RFC 6352 §6.1 "addressbook", RFC 4791 §5.1
#: "calendar-access", RFC 6638 §2 "calendar-auto-schedule" (the server sends the
#: invitations of what a client stores: :mod:`.caldav`).
DAV_HEADER = "1, 3, addressbook, calendar-access, calendar-auto-schedule"
REALM = 'Basic realm="Pillarbox CardDAV", charset="UTF-8"'  # RFC 7617 §2.1
UNAUTHORIZED = "authentication required: HTTP Basic with an app password, or a bearer token\n"


def _target(path: str) -> tuple[Target, bool] | None:
    """The resource a decoded path below ``/dav/`` names, and whether it is the root or the
    principal (answered here) rather than a protocol's."""
    section, _, rest = path.partition("/")
    if section == carddav.SECTION:
        found = carddav.target(rest)
    elif section == caldav.SECTION:
        found = caldav.target(rest)
    elif section == scheduleboxes.SECTION:
        found = scheduleboxes.target(rest)
    elif path == "":
        return Target("root", ""), True
    elif section == "principals" and rest.count("/") <= 1 and rest.rstrip("/"):
        return Target("principal", rest.rstrip("/")), True
    else:
        return None
    return (found, False) if found is not None else None


def principal_resource(address: str) -> Resource:
    return Resource(
        principal_href(address),
        props(
            collection(element(tag(DAV, "principal"))),
            element(tag(DAV, "displayname"), address),
            href_prop(tag(CARDDAV, "addressbook-home-set"), carddav.home_href(address)),
            href_prop(tag(CALDAV, "calendar-home-set"), caldav.home_href(address)),
            href_prop(tag(CALDAV, "calendar-user-address-set"), f"mailto:{address}"),
            element(tag(CALDAV, "calendar-user-type"), "INDIVIDUAL"),  # RFC 6638 §2.4.2
            href_prop(
                tag(CALDAV, "schedule-inbox-URL"),
                scheduleboxes.box_href(address, scheduleboxes.INBOX),
            ),
            href_prop(
                tag(CALDAV, "schedule-outbox-URL"),
                scheduleboxes.box_href(address, scheduleboxes.OUTBOX),
            ),
            privileges("read"),
            *common(address),
        ),
    )


def root_resource(address: str) -> Resource:
    return Resource(
        ROOT,
        props(
            collection(),
            href_prop(tag(DAV, "current-user-principal"), principal_href(address)),
            href_prop(tag(CARDDAV, "addressbook-home-set"), carddav.home_href(address)),
            href_prop(tag(CALDAV, "calendar-home-set"), caldav.home_href(address)),
        ),
    )


async def dav(request: Request) -> Response:
    """Every method on every path under ``/dav/``."""
    if request.method == "OPTIONS":
        # RFC 4918 §10.1: the compliance classes, before any authentication.
        return Response(headers={"dav": DAV_HEADER, "allow": ", ".join(METHODS)})
    try:
        account = await caller(request)
    except RateLimited as exc:
        return refused(text("too many authentication failures\n", 429), exc)
    except AuthenticationFailed as exc:
        if "authorization" in request.headers:  # not a client's first, anonymous request
            _log.info("dav authentication failed", reason=str(exc), ip=client_ip(request))
        return Response(
            UNAUTHORIZED, 401, {"www-authenticate": REALM}, media_type="text/plain; charset=utf-8"
        )
    named = _target(request.path_params["path"])
    if named is None:
        return text(NOT_FOUND, 404)
    found, here = named
    if found.kind != "root" and normalize_username(found.address) != account.address:
        return text(NOT_FOUND, 404)
    try:
        if not here and request.path_params["path"].startswith(carddav.SECTION):
            return await carddav.handle(request, account, found)
        if not here and request.path_params["path"].startswith(scheduleboxes.SECTION):
            return await scheduleboxes.handle(request, account, found)
        if not here:
            return await caldav.handle(request, account, found)
        if request.method != "PROPFIND":
            return not_allowed("OPTIONS, PROPFIND")
        return await _propfind(request, account.address, found)
    except davxml.BadRequestBody as exc:
        _log.info("dav bad request body", account=account.address, reason=str(exc))
        return text(f"{exc}\n", 400)


async def _propfind(request: Request, address: str, found: Target) -> Response:
    asked = davxml.propfind(await read_xml(request))
    levels = depth(request)
    if levels is None:
        # RFC 4918 §9.1: a server may refuse Depth: infinity on a collection.
        return xml(FINITE_DEPTH, 403)
    if found.kind == "principal":
        resources = [principal_resource(address)]
    else:
        resources = [root_resource(address)]
        if levels:
            resources += [
                principal_resource(address),
                carddav.home_resource(address),
                caldav.home_resource(address),
            ]
    return xml(davxml.multistatus([answer(r, asked) for r in resources]))


async def well_known(request: Request) -> Response:
    """RFC 6764 §5: the context path, for clients given only the host name; also a PROPFIND
    of ``/``, which clients given the server's bare URL send first (python-caldav, DAVx⁵
    before it tries the well-known paths). GET ``/`` stays the webmail's."""
    return RedirectResponse(ROOT, status_code=301)


def routes() -> list[BaseRoute]:
    return [
        Route(carddav.WELL_KNOWN, well_known, methods=METHODS),
        Route(caldav.WELL_KNOWN, well_known, methods=METHODS),
        Route("/", well_known, methods=["PROPFIND"]),
        Route(ROOT + "{path:path}", dav, methods=METHODS),
    ]
