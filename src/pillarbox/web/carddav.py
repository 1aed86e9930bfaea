"""CardDAV (RFC 6352 on WebDAV, RFC 4918): the address book synced by phones and desktop
clients (iOS and macOS Contacts, Thunderbird, DAVx⁵, vdirsyncer).

Implementation notes:

- **Where things are**: ``/.well-known/carddav`` redirects to ``/dav/`` (RFC 6764 §5); the
  principal is ``/dav/principals/<address>/``, the address book home
  ``/dav/addressbooks/<address>/``, and it holds one address book, ``contacts/``
  ("Contacts"); each contact is ``<UID>.vcf`` in it (the UID percent-encoded).
- **Authentication**: HTTP Basic (RFC 7617) through the same check as IMAP's LOGIN — an app
  password, or the account password when the account has no second factor (a client cannot
  ask for a code) — or ``Authorization: Bearer`` with an API token. Never the session cookie:
  a request needs credentials of its own, so a cross-site page cannot use a logged-in
  visitor's session (no CSRF token is needed or taken). Failures answer 401 with a
  ``WWW-Authenticate`` challenge, throttling 429, as the other protocols count them.
- **Only the owner**: a path naming another account (or none that exists) is 404, the same
  answer, so addresses cannot be probed.
- **Resource names are UIDs**: the store keeps no name per card, so a contact lives at its
  UID. A PUT of a card without a UID takes the name's; one whose UID differs from the name is
  refused (403, ``no-uid-conflict`` naming where that UID lives). Clients that name a new card
  after its UID (DAVx⁵, iOS, Thunderbird, vdirsyncer for UIDs of letters, digits and ``-_.+``)
  are served; others see the refusal.
- **Cards are kept as sent**: a PUT card is stored byte for byte beside the fields the
  address book reads (FN/N, EMAIL, TEL, ORG, NOTE, UID; :mod:`pillarbox.vcard`), and GET and
  the REPORTs serve it as it was sent, so ADR, BDAY, PHOTO, types and groups round-trip. The
  PUT answers its ETag (RFC 6352 §6.3.2.3, RFC 4918 §9.7.1) unless the card was changed on
  the way (a UID added to a card without one, a byte-order mark or text outside the card
  dropped), when the client fetches it back. A webmail edit rewrites only what it changed
  inside the kept card (:func:`pillarbox.vcard.revise`).
- **ETags** are the digest of what is served (the kept card; for a contact made in the
  webmail, its vCard 4.0 form, one tag for both versions): stable while the contact is
  unchanged, new on every change. The collection's ``getctag`` is a digest of every
  contact's ETag and UID, so adding, changing and deleting all change it. No
  ``sync-collection`` (RFC 6578): the store keeps no record of deletions to report, so it is
  neither answered nor advertised; clients compare the ctag and the ETags instead. A card is
  found by the store's UID index (:meth:`Store.contact_by_uid`), not by listing the book.
- **vCard versions**: a kept card is served in the version it was sent in, whatever the
  client asks: converting it would drop what the address book does not model, and the
  client would put the poorer card back. A contact made in the webmail is written as 3.0
  unless the client's Accept (GET) or ``address-data`` (REPORT) asks for 4.0 (3.0 is RFC
  6352's default and the version it requires, §6.3.2).
- **Limits**: a PUT card up to ``[contacts] max_import_bytes`` (and the web's body limit, the
  smaller is advertised as ``max-resource-size``), ``max_per_account`` cards, every field
  checked as the Contacts page checks it. XML bodies are bounded by ``[web] max_form_bytes``
  and parsed without DTDs (:mod:`pillarbox.davxml`). Bad input: 400 (malformed XML, a
  ``DAV:error`` naming ``valid-address-data`` for a bad card), 415 for a body that is not
  ``text/vcard`` (``supported-address-data``), 412 for a failed ``If-Match`` or
  ``If-None-Match``, 413 past a size, 507 past the card count.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import quote, unquote, urlsplit
from xml.etree.ElementTree import Element

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from pillarbox import davxml, vcard
from pillarbox.auth.directory import normalize_username
from pillarbox.davxml import CALENDARSERVER, CARDDAV, DAV, Found, element, tag
from pillarbox.errors import (
    AuthenticationFailed,
    NotFound,
    RateLimited,
    TooManyEntries,
    UserError,
)
from pillarbox.observability.log import Log
from pillarbox.store.types import Account, Contact
from pillarbox.web.api import token_account
from pillarbox.web.app import BodyTooLarge, client_ip, refused, web
from pillarbox.web.contacts import save

_log = Log("web.carddav")

ROOT = "/dav/"
WELL_KNOWN = "/.well-known/carddav"
BOOK = "contacts"
BOOK_NAME = "Contacts"
SUFFIX = ".vcf"
METHODS = ["OPTIONS", "GET", "HEAD", "PUT", "DELETE", "PROPFIND", "REPORT"]
#: RFC 4918 §10.1 compliance classes and RFC 6352 §6.1 "addressbook".
DAV_HEADER = "1, 3, addressbook"
REALM = 'Basic realm="Pillarbox CardDAV", charset="UTF-8"'  # RFC 7617 §2.1
XML_TYPE = "application/xml; charset=utf-8"
VCARD_TYPES = frozenset({"text/vcard", "text/x-vcard"})
VERSIONS = ("3.0", "4.0")

UNAUTHORIZED = "authentication required: HTTP Basic with an app password, or a bearer token\n"
NOT_FOUND = "not found\n"
FINITE_DEPTH = davxml.error(element(tag(DAV, "propfind-finite-depth")))
SUPPORTED_REPORT = davxml.error(element(tag(DAV, "supported-report")))
SUPPORTED_DATA = davxml.error(element(tag(CARDDAV, "supported-address-data")))
PRECONDITION_FAILED = "precondition failed: the card changed or exists\n"


def _valid_data(reason: str) -> bytes:
    return davxml.error(element(tag(CARDDAV, "valid-address-data"), reason))


# -- paths -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """What a request path names: ``kind`` is "root", "principal", "home", "book" or "card"
    (``name`` the card's UID), for ``address`` (None at the root)."""

    kind: str
    address: str | None = None
    name: str = ""


def principal_href(address: str) -> str:
    return f"{ROOT}principals/{quote(address, safe='@')}/"


def home_href(address: str) -> str:
    return f"{ROOT}addressbooks/{quote(address, safe='@')}/"


def book_href(address: str) -> str:
    return f"{home_href(address)}{BOOK}/"


def card_href(address: str, uid: str) -> str:
    return book_href(address) + quote(uid, safe="") + SUFFIX


def target(path: str) -> Target | None:
    """The resource a decoded path below ``/dav/`` names, or None."""
    parts = path.split("/", 3)
    match parts:
        case [""]:
            return Target("root")
        case ["principals", address] | ["principals", address, ""]:
            return Target("principal", address)
        case ["addressbooks", address] | ["addressbooks", address, ""]:
            return Target("home", address)
        case ["addressbooks", address, book] | ["addressbooks", address, book, ""]:
            return Target("book", address) if book == BOOK else None
        case ["addressbooks", address, book, name]:
            if book == BOOK and name.endswith(SUFFIX) and len(name) > len(SUFFIX):
                return Target("card", address, name[: -len(SUFFIX)])
    return None


def _href_target(href: str) -> Target | None:
    """A multiget's href (a path, or a whole URL) as a target."""
    path = unquote(urlsplit(href).path)
    return target(path[len(ROOT) :]) if path.startswith(ROOT) else None


# -- properties ------------------------------------------------------------------------------------


def served(contact: Contact, version: str) -> str:
    """The card a GET or a REPORT answers: the kept card as received, in the version it was
    sent in whatever ``version`` asks; a contact made in the webmail written in ``version``.
    RFC 6352 §5.1.1 makes conversion between versions optional, and a server that does not
    convert may refuse (``supported-address-data-conversion``, §8.7); converting here would
    drop every property the address book does not model (the client would then put the
    poorer card back) and a refusal would stop the client's sync, so the card is served as
    it is: every CardDAV client reads both versions."""
    return contact.card if contact.card is not None else vcard.format_card(contact, version)


def etag(contact: Contact) -> str:
    """A strong ETag (RFC 9110 §8.8.3), new on every change: the digest of the kept card,
    exactly what is served; for a contact without one, of its vCard 4.0 form (one ETag for
    both versions, so a client asking 4.0 sees the ETag a PROPFIND lists)."""
    return '"' + hashlib.sha256(served(contact, "4.0").encode()).hexdigest()[:32] + '"'


def ctag(contacts: Sequence[Contact]) -> str:
    """The collection's tag: changes when any contact is added, changed or deleted."""
    digest = hashlib.sha256()
    for contact in sorted(contacts, key=lambda c: c.uid):
        digest.update(f"{contact.uid}\0{etag(contact)}\0".encode())
    return '"' + digest.hexdigest()[:32] + '"'


def _privileges(*names: str) -> Element:
    """RFC 3744 §5.4 ``current-user-privilege-set``."""
    return element(
        tag(DAV, "current-user-privilege-set"),
        None,
        *(element(tag(DAV, "privilege"), None, element(tag(DAV, n))) for n in names),
    )


_OWNER_PRIVILEGES = ("read", "write", "write-content", "bind", "unbind", "read-acl")


def _href(name: str, href: str) -> Element:
    return element(name, None, element(tag(DAV, "href"), href))


def _common(address: str) -> list[Element]:
    return [
        _href(tag(DAV, "current-user-principal"), principal_href(address)),
        _href(tag(DAV, "principal-URL"), principal_href(address)),
        _href(tag(DAV, "owner"), principal_href(address)),
    ]


def _collection(*types: Element) -> Element:
    return element(tag(DAV, "resourcetype"), None, element(tag(DAV, "collection")), *types)


def _report_set() -> Element:
    """RFC 3253 §3.1.5: the REPORTs answered on the address book."""
    reports = (tag(CARDDAV, "addressbook-multiget"), tag(CARDDAV, "addressbook-query"))
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


def _address_data_types() -> Element:
    """RFC 6352 §6.2.2 ``supported-address-data``."""
    types = [element(tag(CARDDAV, "address-data-type")) for _ in VERSIONS]
    for made, version in zip(types, VERSIONS, strict=True):
        made.set("content-type", "text/vcard")
        made.set("version", version)
    return element(tag(CARDDAV, "supported-address-data"), None, *types)


@dataclass(frozen=True, slots=True)
class Resource:
    """One resource's href and its properties (name → filled element)."""

    href: str
    props: dict[str, Element]


def _props(*made: Element) -> dict[str, Element]:
    return {e.tag: e for e in made}


def card_resource(address: str, contact: Contact) -> Resource:
    return Resource(
        card_href(address, contact.uid),
        _props(
            element(tag(DAV, "resourcetype")),
            element(tag(DAV, "getetag"), etag(contact)),
            element(tag(DAV, "getcontenttype"), "text/vcard; charset=utf-8"),
            element(tag(DAV, "displayname"), contact.label),
            _privileges(*_OWNER_PRIVILEGES),
            *_common(address),
        ),
    )


def book_resource(address: str, contacts: Sequence[Contact], max_size: int) -> Resource:
    return Resource(
        book_href(address),
        _props(
            _collection(element(tag(CARDDAV, "addressbook"))),
            element(tag(DAV, "displayname"), BOOK_NAME),
            element(tag(CALENDARSERVER, "getctag"), ctag(contacts)),
            element(tag(CARDDAV, "addressbook-description"), "The webmail's address book"),
            _address_data_types(),
            element(tag(CARDDAV, "max-resource-size"), str(max_size)),  # RFC 6352 §6.2.3
            _report_set(),
            _privileges(*_OWNER_PRIVILEGES),
            *_common(address),
        ),
    )


def home_resource(address: str) -> Resource:
    return Resource(
        home_href(address),
        _props(
            _collection(),
            _href(tag(CARDDAV, "addressbook-home-set"), home_href(address)),
            _privileges("read"),
            *_common(address),
        ),
    )


def principal_resource(address: str) -> Resource:
    return Resource(
        principal_href(address),
        _props(
            _collection(element(tag(DAV, "principal"))),
            element(tag(DAV, "displayname"), address),
            # RFC 6352 §7.1.1: where the principal's address books are.
            _href(tag(CARDDAV, "addressbook-home-set"), home_href(address)),
            _privileges("read"),
            *_common(address),
        ),
    )


def root_resource(address: str) -> Resource:
    return Resource(
        ROOT,
        _props(
            _collection(),
            _href(tag(DAV, "current-user-principal"), principal_href(address)),
            _href(tag(CARDDAV, "addressbook-home-set"), home_href(address)),
        ),
    )


def answer(resource: Resource, asked: davxml.PropFind, data: Element | None = None) -> Found:
    """One multistatus response: the asked properties found and missing (``data``, the
    card's ``address-data``, only when asked for by name, as RFC 4918 §9.1 keeps ``allprop``
    to what is cheap)."""
    props = dict(resource.props)
    if data is not None:
        props[data.tag] = data
    if asked.propname:
        return Found(resource.href, [element(name) for name in props])
    if asked.allprop:
        return Found(
            resource.href, [p for n, p in props.items() if n != tag(CARDDAV, "address-data")]
        )
    found = [props[name] for name in asked.names if name in props]
    return Found(resource.href, found, [name for name in asked.names if name not in props])


# -- requests --------------------------------------------------------------------------------------


def _xml(body: bytes, status: int = 207) -> Response:
    return Response(body, status_code=status, media_type=XML_TYPE)


def _text(text: str, status: int) -> Response:
    return Response(text, status_code=status, media_type="text/plain; charset=utf-8")


async def _read(request: Request, limit: int) -> bytes:
    """The body, ``BodyTooLarge`` past ``limit`` bytes as it streams in."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _account(request: Request) -> Account:
    """The caller, by Basic credentials or bearer token; ``AuthenticationFailed`` or
    ``RateLimited`` otherwise."""
    app = web(request)
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return await token_account(app, credentials)
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


def _depth(request: Request) -> int | None:
    """RFC 4918 §10.2: 0 or 1; None for infinity (also what a missing header means)."""
    value = request.headers.get("depth", "infinity").strip()
    return {"0": 0, "1": 1}.get(value)


def _max_card(request: Request) -> int:
    app = web(request)
    return min(app.services.config.contacts.max_import_bytes, app.limits.max_form_bytes)


def _card_version(accept: str) -> str:
    """The vCard version a GET's Accept asks for: 4.0 when it names it, else 3.0."""
    return "4.0" if "version=4.0" in accept.replace(" ", "").replace('"', "") else "3.0"


def _address_data(contact: Contact, asked: davxml.PropFind) -> Element:
    """The card as a REPORT's ``address-data`` asks, in its vCard version (the properties it
    may list are not narrowed: every card is small)."""
    return element(tag(CARDDAV, "address-data"), served(contact, asked.vcard_version))


async def dav(request: Request) -> Response:
    """Every method on every path under ``/dav/``."""
    if request.method == "OPTIONS":
        # RFC 4918 §10.1: the compliance classes, before any authentication.
        return Response(headers={"dav": DAV_HEADER, "allow": ", ".join(METHODS)})
    try:
        account = await _account(request)
    except RateLimited as exc:
        return refused(_text("too many authentication failures\n", 429), exc)
    except AuthenticationFailed as exc:
        if "authorization" in request.headers:  # not a client's first, anonymous request
            _log.info("carddav authentication failed", reason=str(exc), ip=client_ip(request))
        return Response(
            UNAUTHORIZED, 401, {"www-authenticate": REALM}, media_type="text/plain; charset=utf-8"
        )
    found = target(request.path_params["path"])
    if found is None or (
        found.address is not None and normalize_username(found.address) != account.address
    ):
        return _text(NOT_FOUND, 404)
    try:
        return await _dispatch(request, account, found)
    except davxml.BadRequestBody as exc:
        _log.info("carddav bad request body", account=account.address, reason=str(exc))
        return _text(f"{exc}\n", 400)


async def _dispatch(request: Request, account: Account, found: Target) -> Response:
    method = request.method
    if method == "PROPFIND":
        return await _propfind(request, account, found)
    if method == "REPORT" and found.kind == "book":
        return await _report(request, account)
    if found.kind != "card":
        if method in ("GET", "HEAD") and found.kind == "book":
            return _text(f"{BOOK_NAME}: use a CardDAV client\n", 200)
        return _not_allowed("OPTIONS, GET, HEAD, PROPFIND, REPORT")
    if method in ("GET", "HEAD"):
        return await _get(request, account, found.name)
    if method == "PUT":
        return await _put(request, account, found.name)
    if method == "DELETE":
        return await _delete(request, account, found.name)
    return _not_allowed("OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND")


def _not_allowed(allow: str) -> Response:
    """RFC 9110 §15.5.6: 405 with the methods the resource takes."""
    response = _text("method not allowed here\n", 405)
    response.headers["allow"] = allow
    return response


async def _contacts(request: Request, account: Account) -> list[Contact]:
    return await web(request).services.store.list_contacts(account.id)


async def _by_uid(request: Request, account: Account, uid: str) -> Contact | None:
    """The card a path names, by the store's UID index (not a listing of the book)."""
    try:
        return await web(request).services.store.contact_by_uid(account.id, uid)
    except NotFound:
        return None


async def _propfind(request: Request, account: Account, found: Target) -> Response:
    asked = davxml.propfind(await _read(request, web(request).limits.max_form_bytes))
    depth = _depth(request)
    address = account.address
    if found.kind == "card":
        contact = await _by_uid(request, account, found.name)
        if contact is None:
            return _text(NOT_FOUND, 404)
        return _xml(davxml.multistatus([answer(card_resource(address, contact), asked)]))
    if depth is None:
        # RFC 4918 §9.1: a server may refuse Depth: infinity on a collection.
        return _xml(FINITE_DEPTH, 403)
    resources: list[Resource] = []
    match found.kind:
        case "root":
            resources.append(root_resource(address))
            if depth:
                resources += [principal_resource(address), home_resource(address)]
        case "principal":
            resources.append(principal_resource(address))
        case "home":
            resources.append(home_resource(address))
            if depth:
                contacts = await _contacts(request, account)
                resources.append(book_resource(address, contacts, _max_card(request)))
        case "book":
            contacts = await _contacts(request, account)
            resources.append(book_resource(address, contacts, _max_card(request)))
            if depth:
                resources += [card_resource(address, c) for c in contacts]
    return _xml(davxml.multistatus([answer(r, asked) for r in resources]))


async def _report(request: Request, account: Account) -> Response:
    body = await _read(request, web(request).limits.max_form_bytes)
    asked = davxml.report(body)
    if isinstance(asked, davxml.OtherReport):
        _log.info("carddav report not supported", account=account.address, report=asked.name)
        return _xml(SUPPORTED_REPORT, 403)
    address = account.address
    responses: list[Found] = []
    if isinstance(asked, davxml.Multiget):
        for href in asked.hrefs:
            named = _href_target(href)
            mine = named is not None and normalize_username(named.address or "") == address
            contact = (
                await _by_uid(request, account, named.name)
                if named is not None and named.kind == "card" and mine
                else None
            )
            if contact is None:
                responses.append(Found(href, status=404))
                continue
            data = _address_data(contact, asked.props)
            responses.append(answer(card_resource(address, contact), asked.props, data))
    else:
        contacts = await _contacts(request, account)
        chosen = [c for c in contacts if davxml.matches(asked, c)]
        for contact in chosen[: asked.limit]:
            data = _address_data(contact, asked.props)
            responses.append(answer(card_resource(address, contact), asked.props, data))
    return _xml(davxml.multistatus(responses))


def _precondition(request: Request, current: Contact | None) -> bool:
    """RFC 9110 §13.1.1 and §13.1.2: If-Match (an ETag or *) and If-None-Match (*, or
    ETags) against the card as it stands; False when the request must fail with 412."""
    tag_now = etag(current) if current is not None else None
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


async def _get(request: Request, account: Account, uid: str) -> Response:
    contact = await _by_uid(request, account, uid)
    if contact is None:
        return _text(NOT_FOUND, 404)
    version = _card_version(request.headers.get("accept", ""))
    body = served(contact, version).encode()
    headers = {"etag": etag(contact), "cache-control": "private, no-cache"}
    return Response(body, headers=headers, media_type="text/vcard; charset=utf-8")


async def _put(request: Request, account: Account, uid: str) -> Response:
    app = web(request)
    media = request.headers.get("content-type", "text/vcard").split(";")[0].strip().lower()
    if media not in VCARD_TYPES:
        # RFC 6352 §6.3.2.1 (CARDDAV:supported-address-data).
        return _xml(SUPPORTED_DATA, 415)
    data = await _read(request, _max_card(request))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return _xml(_valid_data("the card is not UTF-8 text"), 400)
    parsed = vcard.parse(text)
    if parsed.skipped or len(parsed.contacts) != 1:
        # RFC 6352 §5.1: one vCard per address object resource.
        reason = "; ".join(parsed.reasons) or f"{len(parsed.contacts)} cards; expected one"
        _log.info("carddav card refused", account=account.address, reason=reason)
        return _xml(_valid_data(reason), 400)
    card = parsed.contacts[0]
    if not card.uid:
        card = replace(card, card=vcard.with_uid(card.card or "", uid))
    elif card.uid != uid:
        conflict = element(
            tag(CARDDAV, "no-uid-conflict"),
            None,
            element(tag(DAV, "href"), card_href(account.address, card.uid)),
        )
        return _xml(davxml.error(conflict), 403)
    current = await _by_uid(request, account, uid)
    if not _precondition(request, current):
        return _text(PRECONDITION_FAILED, 412)
    try:
        stored = await save(app.services, account, replace(card, uid=uid))
    except TooManyEntries as exc:
        # RFC 4918 §11.5 Insufficient Storage (RFC 6352 has no precondition for a count); the
        # store counts in the transaction that would add the card.
        return _text(f"{exc}\n", 507)
    except UserError as exc:
        _log.info("carddav card refused", account=account.address, reason=str(exc))
        return _xml(_valid_data(str(exc)), 400)
    response = Response(status_code=204 if current is not None else 201)
    if stored.card is not None and stored.card.encode() == data:
        # RFC 6352 §6.3.2.3 (RFC 4918 §9.7.1): the card is stored as sent, so its ETag is
        # given; one changed on the way (a UID added, a byte-order mark or text outside the
        # card dropped) gets none and the client fetches it back.
        response.headers["etag"] = etag(stored)
    return response


async def _delete(request: Request, account: Account, uid: str) -> Response:
    current = await _by_uid(request, account, uid)
    if current is None:
        return _text(NOT_FOUND, 404)
    if not _precondition(request, current):
        return _text(PRECONDITION_FAILED, 412)
    await web(request).services.store.delete_contact(account.id, current.id)
    return Response(status_code=204)


async def well_known(request: Request) -> Response:
    """RFC 6764 §5: the context path, for clients given only the host name."""
    return RedirectResponse(ROOT, status_code=301)


def routes() -> list[BaseRoute]:
    return [
        Route(WELL_KNOWN, well_known, methods=METHODS),
        Route(ROOT + "{path:path}", dav, methods=METHODS),
    ]
