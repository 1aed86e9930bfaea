"""CardDAV (RFC 6352 on WebDAV, RFC 4918; sync-collection, RFC 6578): the address book synced
by phones and desktop clients (iOS and macOS Contacts, Thunderbird, DAVx⁵, vdirsyncer).

Implementation notes:

- **Where things are**: ``/.well-known/carddav`` redirects to ``/dav/`` (RFC 6764 §5); the
  principal is ``/dav/principals/<address>/``, the address book home
  ``/dav/addressbooks/<address>/``, and it holds one address book, ``contacts/``
  ("Contacts"); each contact is ``<UID>.vcf`` in it (the UID percent-encoded).
- **Authentication and reach** are :mod:`.dav`'s: Basic (app passwords) or a bearer token;
  a path naming another account is 404.
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
  webmail, its vCard 4.0 form, one tag for both versions: :func:`pillarbox.vcard.etag`),
  computed by the store on every write and kept beside the contact, so a Depth-1 PROPFIND
  reads no card (:meth:`Store.contact_members`). A card is found by the store's UID index
  (:meth:`Store.contact_by_uid`), not by listing the book.
- **Sync** (RFC 6578): every write of the address book — here, the webmail's Contacts page,
  the JSON API, an import — raises the book's change counter and stamps the contacts it
  saved; a deletion leaves a tombstone of the UID (kept ``[contacts] sync_history_days``).
  ``sync-collection`` answers what changed after a client's token (a URI naming the account
  and the counter, also the ``getctag``); one of another account, from the future or older
  than the tombstones kept is ``valid-sync-token``, 403 (:func:`.webdav.sync_report`).
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

from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import quote
from xml.etree.ElementTree import Element

from starlette.requests import Request
from starlette.responses import Response

from pillarbox import davxml, vcard
from pillarbox.addressbook import card_limit
from pillarbox.davxml import CALENDARSERVER, CARDDAV, DAV, Found, element, tag
from pillarbox.errors import NotFound, TooManyEntries, UserError
from pillarbox.observability.log import Log
from pillarbox.store.types import Account, Contact, Member
from pillarbox.web.app import web
from pillarbox.web.contacts import save
from pillarbox.web.downloads import foreign_content
from pillarbox.web.webdav import (
    FINITE_DEPTH,
    INVALID_SYNC_TOKEN,
    NOT_FOUND,
    OWNER_PRIVILEGES,
    PRECONDITION_FAILED,
    ROOT,
    SUPPORTED_REPORT,
    Resource,
    Target,
    answer,
    collection,
    common,
    depth,
    href_prop,
    not_allowed,
    owned_target,
    precondition,
    privileges,
    props,
    read,
    read_xml,
    report_set,
    sync_report,
    sync_since,
    sync_token,
    text,
    xml,
)

_log = Log("web.carddav")

WELL_KNOWN = "/.well-known/carddav"
#: The path segment below ``/dav/`` of the address book homes.
SECTION = "addressbooks"
BOOK = "contacts"
BOOK_NAME = "Contacts"
SUFFIX = ".vcf"
VCARD_TYPES = frozenset({"text/vcard", "text/x-vcard"})
VERSIONS = ("3.0", "4.0")
NO_RELOCATION = "a card stays where it is: one address book, each card named by its UID\n"
SUPPORTED_DATA = davxml.error(element(tag(CARDDAV, "supported-address-data")))


def _valid_data(reason: str) -> bytes:
    return davxml.error(element(tag(CARDDAV, "valid-address-data"), reason))


# -- paths -----------------------------------------------------------------------------------------


def home_href(address: str) -> str:
    return f"{ROOT}{SECTION}/{quote(address, safe='@')}/"


def book_href(address: str) -> str:
    return f"{home_href(address)}{BOOK}/"


def card_href(address: str, uid: str) -> str:
    return book_href(address) + quote(uid, safe="") + SUFFIX


def target(path: str) -> Target | None:
    """The resource a decoded path below ``/dav/addressbooks/`` names ("home", "book" or
    "card", ``name`` the card's UID), or None."""
    parts = path.split("/", 2)
    match parts:
        case [address] | [address, ""]:
            return Target("home", address)
        case [address, book] | [address, book, ""]:
            return Target("book", address) if book == BOOK else None
        case [address, book, name]:
            if book == BOOK and name.endswith(SUFFIX) and len(name) > len(SUFFIX):
                return Target("card", address, name=name[: -len(SUFFIX)])
    return None


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


def scope(account: Account) -> str:
    """What the address book's sync tokens name it by (:func:`.webdav.sync_token`): the
    account's id, so an account removed and made again does not take its tokens."""
    return f"contacts.{account.id}"


def _address_data_types() -> Element:
    """RFC 6352 §6.2.2 ``supported-address-data``."""
    types = [element(tag(CARDDAV, "address-data-type")) for _ in VERSIONS]
    for made, version in zip(types, VERSIONS, strict=True):
        made.set("content-type", "text/vcard")
        made.set("version", version)
    return element(tag(CARDDAV, "supported-address-data"), None, *types)


def card_resource(address: str, contact: Contact | Member) -> Resource:
    """A card's properties, from the contact or from its listing (:class:`Member`)."""
    uid = contact.uid if isinstance(contact, Contact) else contact.name
    return Resource(
        card_href(address, uid),
        props(
            element(tag(DAV, "resourcetype")),
            element(tag(DAV, "getetag"), contact.etag),
            element(tag(DAV, "getcontenttype"), "text/vcard; charset=utf-8"),
            element(tag(DAV, "displayname"), contact.label),
            privileges(*OWNER_PRIVILEGES),
            *common(address),
        ),
    )


def book_resource(account: Account, token: int, max_size: int) -> Resource:
    """The address book's properties; ``token`` its change counter (the store's)."""
    address = account.address
    return Resource(
        book_href(address),
        props(
            collection(element(tag(CARDDAV, "addressbook"))),
            element(tag(DAV, "displayname"), BOOK_NAME),
            element(tag(CALENDARSERVER, "getctag"), f'"{account.id}-{token}"'),
            element(tag(DAV, "sync-token"), sync_token(scope(account), token)),
            element(tag(CARDDAV, "addressbook-description"), "The webmail's address book"),
            _address_data_types(),
            element(tag(CARDDAV, "max-resource-size"), str(max_size)),  # RFC 6352 §6.2.3
            report_set(
                tag(CARDDAV, "addressbook-multiget"),
                tag(CARDDAV, "addressbook-query"),
                tag(DAV, "sync-collection"),
            ),
            privileges(*OWNER_PRIVILEGES),
            *common(address),
        ),
    )


def home_resource(address: str) -> Resource:
    return Resource(
        home_href(address),
        props(
            collection(),
            href_prop(tag(CARDDAV, "addressbook-home-set"), home_href(address)),
            privileges("read"),
            *common(address),
        ),
    )


def _card_version(accept: str) -> str:
    """The vCard version a GET's Accept asks for: 4.0 when it names it, else 3.0."""
    return "4.0" if "version=4.0" in accept.replace(" ", "").replace('"', "") else "3.0"


def _address_data(contact: Contact, asked: davxml.PropFind) -> Element:
    """The card as a REPORT's ``address-data`` asks, in its vCard version (the properties it
    may list are not narrowed: every card is small)."""
    return element(tag(CARDDAV, "address-data"), served(contact, asked.vcard_version))


async def handle(request: Request, account: Account, found: Target) -> Response:
    """A request on the address book home, the book or a card of the caller's."""
    method = request.method
    if method == "PROPFIND":
        return await _propfind(request, account, found)
    if method == "REPORT" and found.kind == "book":
        return await _report(request, account)
    if found.kind != "card":
        if method in ("GET", "HEAD") and found.kind == "book":
            return text(f"{BOOK_NAME}: use a CardDAV client\n", 200)
        return not_allowed("OPTIONS, GET, HEAD, PROPFIND, REPORT")
    if method in ("GET", "HEAD"):
        return await _get(request, account, found.name)
    if method == "PUT":
        return await _put(request, account, found.name)
    if method == "DELETE":
        return await _delete(request, account, found.name)
    if method in ("COPY", "MOVE"):
        # RFC 4918 §9.8.5, §9.9.4 leave a refusal's reason to the server: there is no other
        # address book to move a card to, and a card's name is its UID (a COPY would hold
        # the UID twice, a renaming MOVE name a card by another's UID).
        return text(NO_RELOCATION, 403)
    return not_allowed("OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND")


async def _contacts(request: Request, account: Account) -> list[Contact]:
    return await web(request).services.store.list_contacts(account.id)


async def _book(request: Request, account: Account) -> Resource:
    token = await web(request).services.store.contacts_sync_token(account.id)
    return book_resource(account, token, card_limit(web(request).services.config))


async def _by_uid(request: Request, account: Account, uid: str) -> Contact | None:
    """The card a path names, by the store's UID index (not a listing of the book)."""
    try:
        return await web(request).services.store.contact_by_uid(account.id, uid)
    except NotFound:
        return None


async def _propfind(request: Request, account: Account, found: Target) -> Response:
    asked = davxml.propfind(await read_xml(request))
    levels = depth(request)
    address = account.address
    if found.kind == "card":
        contact = await _by_uid(request, account, found.name)
        if contact is None:
            return text(NOT_FOUND, 404)
        return xml(davxml.multistatus([answer(card_resource(address, contact), asked)]))
    if levels is None:
        # RFC 4918 §9.1: a server may refuse Depth: infinity on a collection.
        return xml(FINITE_DEPTH, 403)
    resources: list[Resource] = []
    match found.kind:
        case "home":
            resources.append(home_resource(address))
            if levels:
                resources.append(await _book(request, account))
        case "book":
            resources.append(await _book(request, account))
            if levels:
                # The stored ETags: no card is read, formatted or hashed.
                members = await web(request).services.store.contact_members(account.id)
                resources += [card_resource(address, m) for m in members]
    return xml(davxml.multistatus([answer(r, asked) for r in resources]))


async def _report(request: Request, account: Account) -> Response:
    body = await read_xml(request)
    asked = davxml.report(body)
    if isinstance(asked, davxml.OtherReport):
        _log.info("carddav report not supported", account=account.address, report=asked.name)
        return xml(SUPPORTED_REPORT, 403)
    address = account.address
    if isinstance(asked, davxml.SyncCollection):
        return await _sync(request, account, asked)
    responses: list[Found] = []
    if isinstance(asked, davxml.Multiget):
        for href in asked.hrefs:
            named = owned_target(href, SECTION, target, address)
            contact = (
                await _by_uid(request, account, named.name)
                if named is not None and named.kind == "card"
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
    return xml(davxml.multistatus(responses))


async def _sync(request: Request, account: Account, asked: davxml.SyncCollection) -> Response:
    """RFC 6578 §3.2: the cards changed since the client's token (every card, for none), and
    the UIDs deleted."""
    since = sync_since(asked, scope(account))
    if since is None:
        _log.info("carddav sync token refused", account=account.address, token=asked.token)
        return xml(INVALID_SYNC_TOKEN, 403)
    changes = await web(request).services.store.contact_changes(account.id, since)
    address = account.address
    return sync_report(
        asked,
        scope(account),
        since,
        changes,
        lambda c: answer(card_resource(address, c), asked.props, _address_data(c, asked.props)),
        lambda uid: card_href(address, uid),
    )


async def _get(request: Request, account: Account, uid: str) -> Response:
    contact = await _by_uid(request, account, uid)
    if contact is None:
        return text(NOT_FOUND, 404)
    version = _card_version(request.headers.get("accept", ""))
    body = served(contact, version).encode()
    headers = {"etag": contact.etag, "cache-control": "private, no-cache"}
    response = Response(body, headers=headers, media_type="text/vcard; charset=utf-8")
    return foreign_content(response, f"{uid}.vcf")


async def _put(request: Request, account: Account, uid: str) -> Response:
    app = web(request)
    media = request.headers.get("content-type", "text/vcard").split(";")[0].strip().lower()
    if media not in VCARD_TYPES:
        # RFC 6352 §6.3.2.1 (CARDDAV:supported-address-data).
        return xml(SUPPORTED_DATA, 415)
    data = await read(request, card_limit(web(request).services.config))
    try:
        card_text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return xml(_valid_data("the card is not UTF-8 text"), 400)
    parsed = vcard.parse(card_text)
    if parsed.skipped or len(parsed.contacts) != 1:
        # RFC 6352 §5.1: one vCard per address object resource.
        reason = "; ".join(parsed.reasons) or f"{len(parsed.contacts)} cards; expected one"
        _log.info("carddav card refused", account=account.address, reason=reason)
        return xml(_valid_data(reason), 400)
    card = parsed.contacts[0]
    if not card.uid:
        card = replace(card, card=vcard.with_uid(card.card or "", uid))
    elif card.uid != uid:
        conflict = element(
            tag(CARDDAV, "no-uid-conflict"),
            None,
            element(tag(DAV, "href"), card_href(account.address, card.uid)),
        )
        return xml(davxml.error(conflict), 403)
    current = await _by_uid(request, account, uid)
    if not precondition(request, current.etag if current is not None else None):
        return text(PRECONDITION_FAILED, 412)
    try:
        stored = await save(app.services, account, replace(card, uid=uid))
    except TooManyEntries as exc:
        # RFC 4918 §11.5 Insufficient Storage (RFC 6352 has no precondition for a count); the
        # store counts in the transaction that would add the card.
        return text(f"{exc}\n", 507)
    except UserError as exc:
        _log.info("carddav card refused", account=account.address, reason=str(exc))
        return xml(_valid_data(str(exc)), 400)
    response = Response(status_code=204 if current is not None else 201)
    if stored.card is not None and stored.card.encode() == data:
        # RFC 6352 §6.3.2.3 (RFC 4918 §9.7.1): the card is stored as sent, so its ETag is
        # given; one changed on the way (a UID added, a byte-order mark or text outside the
        # card dropped) gets none and the client fetches it back.
        response.headers["etag"] = stored.etag
    return response


async def _delete(request: Request, account: Account, uid: str) -> Response:
    current = await _by_uid(request, account, uid)
    if current is None:
        return text(NOT_FOUND, 404)
    if not precondition(request, current.etag if current is not None else None):
        return text(PRECONDITION_FAILED, 412)
    await web(request).services.store.delete_contact(account.id, current.id, now=datetime.now(UTC))
    return Response(status_code=204)
