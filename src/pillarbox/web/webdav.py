"""WebDAV (RFC 4918) machinery shared by CardDAV (:mod:`.carddav`) and CalDAV (:mod:`.caldav`):
who the caller is, bodies read within a limit, resources and their properties answered in a
multistatus, conditional requests, and the plain replies. :mod:`.dav` routes requests to the
two protocols; this module knows neither.

Implementation notes:

- **Authentication**: HTTP Basic (RFC 7617) through the same check as IMAP's LOGIN — an app
  password, or the account password when the account has no second factor (a client cannot
  ask for a code) — or ``Authorization: Bearer`` with an API token. Never the session cookie:
  a request needs credentials of its own, so a cross-site page cannot use a logged-in
  visitor's session (no CSRF token is needed or taken).
- **Properties**: a resource is its href and a map of filled property elements; PROPFIND and
  the REPORTs answer the asked names from it (:func:`answer`), the missing ones as 404.
- **ETags** are strong (RFC 9110 §8.8.3) and compared as strings by :func:`precondition`.
- **Sync** (RFC 6578, :func:`sync_report`): a token is a URI naming the collection and its
  change counter; one of another collection, from the future, or older than the oldest change
  the store still answers (its tombstones pruned) is 403 ``valid-sync-token`` (§3.2, §3.7),
  so the client syncs in full again.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote, unquote, urlsplit
from xml.etree.ElementTree import Element

from starlette.requests import Request
from starlette.responses import Response

from pillarbox import davxml
from pillarbox.auth.directory import normalize_username
from pillarbox.davxml import DAV, Found, element, tag
from pillarbox.errors import AuthenticationFailed
from pillarbox.observability.log import Log
from pillarbox.store.types import Account, SyncChanges
from pillarbox.web.account import token_account
from pillarbox.web.app import BodyTooLarge, client_ip, web

ROOT = "/dav/"
XML_TYPE = "application/xml; charset=utf-8"
NOT_FOUND = "not found\n"
PRECONDITION_FAILED = "precondition failed: the resource changed or exists\n"
FINITE_DEPTH = davxml.error(element(tag(DAV, "propfind-finite-depth")))
SUPPORTED_REPORT = davxml.error(element(tag(DAV, "supported-report")))
INVALID_SYNC_TOKEN = davxml.error(element(tag(DAV, "valid-sync-token")))  # RFC 6578 §3.2
#: RFC 6578 §3.6: a client's limit smaller than the changes (the server does not page).
TOO_MANY_CHANGES = davxml.error(element(tag(DAV, "number-of-matches-within-limits")))
_SYNC_TOKEN = re.compile(r"urn:x-pillarbox:sync:(.+)-(\d{1,18})")
_log = Log("web.webdav")
_Member = TypeVar("_Member")
#: RFC 3744 §5.4: what the owner may do with a collection or a resource of it.
OWNER_PRIVILEGES = ("read", "write", "write-content", "bind", "unbind", "read-acl")


@dataclass(frozen=True, slots=True)
class Target:
    """What a request path names: ``kind`` as the protocol module parsing it says ("home",
    "book", "card", "calendar", "object"…), of account ``address``, in ``collection``,
    ``name`` the resource's own."""

    kind: str
    address: str
    collection: str = ""
    name: str = ""


def principal_href(address: str) -> str:
    return f"{ROOT}principals/{quote(address, safe='@')}/"


def href_path(href: str) -> str | None:
    """A multiget's href (a path, or a whole URL) as a decoded path below ``/dav/``."""
    path = unquote(urlsplit(href).path)
    return path[len(ROOT) :] if path.startswith(ROOT) else None


def owned_target(
    href: str, section: str, parse: Callable[[str], Target | None], address: str
) -> Target | None:
    """What a multiget's href names below ``/dav/<section>/`` (``parse`` reads the rest),
    when it is the caller's (``address``); None otherwise, answered 404 alike."""
    path = href_path(href)
    if path is None or not path.startswith(section + "/"):
        return None
    found = parse(path[len(section) + 1 :])
    if found is None or normalize_username(found.address) != address:
        return None
    return found


@dataclass(frozen=True, slots=True)
class Relocation:
    """Where a COPY or MOVE asks a resource to go (RFC 4918 §10.3 Destination) and whether it
    may replace what is there (§10.6 Overwrite)."""

    target: Target
    overwrite: bool


def relocation(
    request: Request, section: str, parse: Callable[[str], Target | None], address: str
) -> Relocation | Response:
    """The Destination and Overwrite of a COPY or MOVE (RFC 4918 §9.8, §9.9) naming a resource
    below ``/dav/<section>/`` of the caller's (``address``), or the refusal to answer: 400 for
    a missing or malformed header, 502 for a Destination on another host (§9.9.4: this server
    does not ask another to take it), 403 for one outside the caller's ``section`` (another
    account's, another protocol's, none of ours: §9.9.4 leaves the reason free)."""
    given = request.headers.get("destination", "").strip()
    overwrite = request.headers.get("overwrite", "T").strip().upper()
    if not given or overwrite not in ("T", "F"):
        return text("COPY and MOVE take a Destination, and an Overwrite of T or F\n", 400)
    parts = urlsplit(given)
    if parts.hostname is not None and parts.hostname != request.url.hostname:
        return text("the Destination is on another server\n", 502)
    found = owned_target(given, section, parse, address)
    if found is None:
        return text("the Destination is not one of your collections of this kind\n", 403)
    return Relocation(found, overwrite == "T")


# -- properties ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resource:
    """One resource's href and its properties (name → filled element)."""

    href: str
    props: dict[str, Element]


def props(*made: Element) -> dict[str, Element]:
    return {e.tag: e for e in made}


@functools.lru_cache(maxsize=8)
def privileges(*names: str) -> Element:
    """RFC 3744 §5.4 ``current-user-privilege-set``. One element for every resource that
    answers it (a listing of a thousand members builds it once): elements are only read
    after they are built, never changed."""
    return element(
        tag(DAV, "current-user-privilege-set"),
        None,
        *(element(tag(DAV, "privilege"), None, element(tag(DAV, n))) for n in names),
    )


def href_prop(name: str, href: str) -> Element:
    return element(name, None, element(tag(DAV, "href"), href))


@functools.lru_cache(maxsize=64)
def common(address: str) -> tuple[Element, ...]:
    """The properties every resource of an account has: whose it is (built once per
    account, as :func:`privileges`)."""
    return (
        href_prop(tag(DAV, "current-user-principal"), principal_href(address)),
        href_prop(tag(DAV, "principal-URL"), principal_href(address)),
        href_prop(tag(DAV, "owner"), principal_href(address)),
    )


def collection(*types: Element) -> Element:
    return element(tag(DAV, "resourcetype"), None, element(tag(DAV, "collection")), *types)


def report_set(*reports: str) -> Element:
    """RFC 3253 §3.1.5: the REPORTs a collection answers."""
    return element(
        tag(DAV, "supported-report-set"),
        None,
        *(
            element(
                tag(DAV, "supported-report"), None, element(tag(DAV, "report"), None, element(r))
            )
            for r in reports
        ),
    )


def answer(resource: Resource, asked: davxml.PropFind, data: Element | None = None) -> Found:
    """One multistatus response: the asked properties found and missing (``data``, the
    object's ``address-data`` or ``calendar-data``, only when asked for by name, as RFC 4918
    §9.1 keeps ``allprop`` to what is cheap)."""
    found = dict(resource.props)
    if data is not None:
        found[data.tag] = data
    if asked.propname:
        return Found(resource.href, [element(name) for name in found])
    if asked.allprop:
        return Found(resource.href, [p for n, p in found.items() if data is None or n != data.tag])
    listed = [found[name] for name in asked.names if name in found]
    return Found(resource.href, listed, [name for name in asked.names if name not in found])


# -- sync (RFC 6578) -------------------------------------------------------------------------------


def sync_token(scope: str, token: int) -> str:
    """RFC 6578 §3.2: a URI naming the collection (``scope``: for a calendar its id, so one
    deleted and made again under its name does not take its tokens) and its change counter."""
    return f"urn:x-pillarbox:sync:{scope}-{token}"


def sync_since(asked: davxml.SyncCollection, scope: str) -> int | None:
    """The change counter a sync-collection REPORT's token names for collection ``scope``: 0
    for no token (an initial sync), None for a token that is not one of this collection's."""
    if not asked.token:
        return 0
    matched = _SYNC_TOKEN.fullmatch(asked.token)
    if matched is None or matched[1] != scope:
        return None
    return int(matched[2])


def sync_report(
    asked: davxml.SyncCollection,
    scope: str,
    since: int,
    changes: SyncChanges[_Member],
    changed: Callable[[_Member], Found],
    deleted: Callable[[str], str],
) -> Response:
    """RFC 6578 §3.2: the members changed since the client's token (``changed`` answers one)
    and, for a token, those deleted (``deleted`` is the href of a deleted member's name)."""
    if asked.token and not changes.answers(since):
        # §3.7: a token from the future, or older than the oldest change kept (tombstones
        # pruned): the client must sync in full (an initial sync, without a token, is always
        # answered).
        _log.info("sync token refused", scope=scope, token=since, oldest=changes.oldest)
        return xml(INVALID_SYNC_TOKEN, 403)
    if asked.limit is not None and len(changes.changed) + len(changes.deleted) > asked.limit:
        return xml(TOO_MANY_CHANGES, 507)
    responses = [changed(member) for member in changes.changed]
    if asked.token:
        # §3.5.2: a member removed since the token is a bare 404.
        responses += [Found(deleted(name), status=404) for name in changes.deleted]
    token = sync_token(scope, changes.token)
    return xml(davxml.multistatus(responses, sync_token=token))


# -- requests --------------------------------------------------------------------------------------


def xml(body: bytes, status: int = 207) -> Response:
    return Response(body, status_code=status, media_type=XML_TYPE)


def text(message: str, status: int) -> Response:
    return Response(message, status_code=status, media_type="text/plain; charset=utf-8")


def not_allowed(allow: str) -> Response:
    """RFC 9110 §15.5.6: 405 with the methods the resource takes."""
    response = text("method not allowed here\n", 405)
    response.headers["allow"] = allow
    return response


async def read(request: Request, limit: int) -> bytes:
    """The body, ``BodyTooLarge`` past ``limit`` bytes as it streams in."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_xml(request: Request) -> bytes:
    """An XML request body, within ``[web] max_form_bytes``."""
    return await read(request, web(request).limits.max_form_bytes)


async def caller(request: Request) -> Account:
    """The caller, by Basic credentials or bearer token; ``AuthenticationFailed`` or
    ``RateLimited`` otherwise."""
    app = web(request)
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return await token_account(app.services, credentials)
    if scheme.lower() != "basic":
        raise AuthenticationFailed("no credentials")
    try:
        # RFC 7617 §2.1: user-id ":" password, UTF-8 with charset="UTF-8".
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise AuthenticationFailed("malformed Basic credentials") from None
    user, colon, password = decoded.partition(":")
    if not colon:
        raise AuthenticationFailed("malformed Basic credentials")
    return await app.dav_logins.check_password(user, password, client_ip(request))


def depth(request: Request) -> int | None:
    """RFC 4918 §10.2: 0 or 1; None for infinity (also what a missing header means)."""
    value = request.headers.get("depth", "infinity").strip()
    return {"0": 0, "1": 1}.get(value)


def precondition(request: Request, tag_now: str | None) -> bool:
    """RFC 9110 §13.1.1 and §13.1.2: If-Match (an ETag or *) and If-None-Match (*, or
    ETags) against the resource's ETag as it stands (None: it does not exist); False when the
    request must fail with 412."""
    if_match = request.headers.get("if-match")
    if if_match is not None:
        wanted = {t.strip() for t in if_match.split(",")}
        if tag_now is None or not ("*" in wanted or tag_now in wanted):
            return False
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and tag_now is not None:
        refused_tags = {t.strip() for t in if_none_match.split(",")}
        if "*" in refused_tags or tag_now in refused_tags:
            return False
    return True
