"""The webmail's address book: the Contacts page, "add to contacts" from a message, vCard
import and export, and the contacts half of recipient completion. The JSON API calls the same
functions (:mod:`.api`).

Implementation notes:

- **One check for every way in**: a contact from the page's form, the API or a vCard card
  passes :func:`checked_contact` against ``[contacts]``: a name or an address at least, each
  address valid (stored normalised, as the compose page would send to it), counts and lengths
  within limits. A card of an import that fails it is skipped and counted like a malformed one.
- **UIDs** (RFC 6350 §6.7.6): a contact made here gets ``urn:uuid:`` and a random UUID; an
  imported card keeps its own, so importing the same file again updates instead of
  duplicating (the store replaces by UID). An imported card without one (Outlook, Android
  and many other exports write none) gets one derived from its text (:func:`imported_uid`),
  so that importing that file again finds the same UIDs too.
- **A re-import writes nothing that is there**: a card whose UID's contact is stored with
  that very card (its ETag, :func:`pillarbox.vcard.etag`, is the card's digest) is left
  alone and counted ``unchanged`` — a write would raise the address book's sync token and
  the contact's ETag, and every CardDAV client would fetch the whole book again. Told by
  the ETags the book lists (one store read, :meth:`.Store.contact_members`, no card read),
  as the calendar import does (:mod:`.calendarimport`).
- **Import size**: ``[contacts] max_import_bytes``, checked on the file (the page) or the
  text (the API) before parsing: 413 past it. The request itself may be as large as a compose
  request (``[web] max_upload_bytes``), the limit the body is refused at as it streams in.
  Each card is held to what a CardDAV client may PUT (:func:`card_limit`), as kept — a 2.1
  card as its larger 3.0 form: a stored card a client could not write back would fail its
  next sync of that contact.
- **Completion** offers the account's contacts first (name and address, as a recipient field
  takes them), then the correspondents the store remembers; never another account's data.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import urlencode

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pillarbox import vcard
from pillarbox.blocking import run_sized
from pillarbox.config import Config, ContactsSection
from pillarbox.errors import NotFound, UserError
from pillarbox.observability.log import Log
from pillarbox.services import Services
from pillarbox.store.types import Account, Contact
from pillarbox.web.app import (
    BodyTooLarge,
    field_number,
    field_text,
    posted_form,
    redirect,
    require_account,
    unconfirmed,
    web,
)
from pillarbox.web.composing import parse_people
from pillarbox.web.downloads import foreign_content
from pillarbox.web.imported import Imported
from pillarbox.web.reading import recipient_text

_log = Log("web.contacts")

#: Contacts the Contacts page lists at once (a search narrows it), and the longest search.
PAGE_LIMIT = 500
MAX_SEARCH = 254
VCARD_TYPE = "text/vcard; charset=utf-8"  # RFC 6350 §10.1


#: The name space of :func:`imported_uid`'s UUIDs (RFC 9562 §5.5). Never to change: the
#: UIDs of the contacts already imported were derived in it.
IMPORTED_UID_NAMESPACE = uuid.UUID("c17f2126-7afe-4a25-8fb7-858b3e03b891")


def new_uid() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def imported_uid(card: str) -> str:
    """The UID an imported card without one is given: ``urn:uuid:`` and a name-based UUID
    (RFC 9562 §5.5, SHA-1) of the card's text (:func:`pillarbox.vcard.content_text`: folds
    and line ends do not count). A random one (as a contact made here gets) would make
    every re-import of the same file — a monthly Outlook export imported again, an import
    retried after a timeout — double each such contact; derived from the card, the UID is
    the one of the first import, and the existing rule applies: a card with a known UID
    replaces that contact. So a contact edited here (or over CardDAV) since is replaced by
    the file's version, as one from a card with its own UID is; a card changed in the file
    since is another card (nothing in it says which contact it was) and is added beside the
    old one. Two identical cards in one file are one contact."""
    return f"urn:uuid:{uuid.uuid5(IMPORTED_UID_NAMESPACE, vcard.content_text(card))}"


def with_imported_uids(contacts: Sequence[Contact]) -> list[Contact]:
    """The contacts of an import, each card without a UID given :func:`imported_uid` (in its
    kept card too: RFC 6352 §5.1, a CardDAV client reads it there), the repeats of an
    identical card dropped."""
    given: list[Contact] = []
    derived: set[str] = set()
    for contact in contacts:
        if not contact.uid and contact.card is not None:
            uid = imported_uid(contact.card)
            if uid in derived:
                continue
            derived.add(uid)
            contact = replace(contact, uid=uid, card=vcard.with_uid(contact.card, uid))
        given.append(contact)
    return given


def _lines(text: str) -> list[str]:
    """The entries of a one-per-line (or comma-separated) field, blanks dropped."""
    return [part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()]


def checked_contact(limits: ContactsSection, contact: Contact) -> Contact:
    """``contact`` as stored — names and phones with runs of blanks made one, addresses
    normalised, duplicates dropped — or ``UserError`` saying what is wrong."""
    fields = (contact.uid, contact.display_name, contact.organization, contact.note)
    if any(
        vcard.REFUSED_CHARACTERS.search(text)
        for text in (*fields, *contact.emails, *contact.phones)
    ):
        # PostgreSQL's text refuses NUL; no vCard content line holds a control (RFC 6350
        # §3.3), and a REPORT's address-data (XML) cannot.
        raise UserError("a field holds a control character")
    name = " ".join(contact.display_name.split())
    organization = " ".join(contact.organization.split())
    note = contact.note.replace("\r\n", "\n").replace("\r", "\n").strip()
    emails: list[str] = []
    for text in contact.emails:
        # The compose page's own check of a recipient: what it takes, a contact may hold.
        found, invalid = parse_people(text)
        if invalid or len(found) != 1:
            raise UserError(f"not a valid address: {text.strip() or '(empty)'}")
        if found[0].address.lower() not in {e.lower() for e in emails}:
            emails.append(found[0].address)
    phones = list(dict.fromkeys(" ".join(p.split()) for p in contact.phones if p.strip()))
    if not name and not emails:
        raise UserError("give a name or an email address")
    if len(emails) > limits.max_emails:
        raise UserError(f"at most {limits.max_emails} email addresses")
    if len(phones) > limits.max_phones:
        raise UserError(f"at most {limits.max_phones} phone numbers")
    for label, value in (("name", name), ("organisation", organization)):
        if len(value) > limits.max_name:
            raise UserError(f"the {label} is longer than {limits.max_name} characters")
    if any(len(phone) > limits.max_name for phone in phones):
        raise UserError(f"a phone number is longer than {limits.max_name} characters")
    if len(note) > limits.max_note:
        raise UserError(f"the note is longer than {limits.max_note} characters")
    if len(contact.uid) > limits.max_name:
        raise UserError(f"the UID is longer than {limits.max_name} characters")
    if "\r" in contact.uid:
        # vCard text has no escape for a carriage return (RFC 6350 §3.4): written as a
        # newline, the UID would read back as another card's.
        raise UserError("the UID holds a carriage return")
    uid, card = contact.uid, contact.card
    if not uid:
        uid = new_uid()
        # A kept card without a UID gets the one made (RFC 6350 §6.7.6), so that its export
        # imported again replaces it rather than doubling it.
        card = None if card is None else vcard.with_uid(card, uid)
    return replace(
        contact,
        uid=uid,
        card=card,
        display_name=name,
        emails=tuple(emails),
        phones=tuple(phones),
        organization=organization,
        note=note,
    )


async def save(services: Services, account: Account, contact: Contact) -> Contact:
    """Check and store one contact (``id`` 0: a new one, or one replacing the contact of its
    UID). An edit of a stored contact that has a kept card — by id, or by UID without a card
    of its own (the JSON API's add) — rewrites only what changed in that card
    (:func:`pillarbox.vcard.revise`), so what a phone put there and the webmail does not
    show stays."""
    limits = services.config.contacts
    checked = checked_contact(limits, contact)
    current: Contact | None = None
    if checked.id:
        current = await services.store.get_contact(account.id, checked.id)
    elif contact.uid and contact.card is None:
        try:
            current = await services.store.contact_by_uid(account.id, contact.uid)
        except NotFound:
            current = None
    if current is not None and current.card is not None and checked.card is None:
        checked = replace(checked, card=vcard.revise(current.card, current, checked))
    (stored,) = await services.store.save_contacts(
        account.id,
        [checked],
        now=datetime.now(UTC),
        limit=limits.max_per_account,
    )
    return stored


def card_limit(config: Config) -> int:
    """The largest card kept: what a CardDAV client may PUT (RFC 6352 §6.2.3's
    ``max-resource-size``), the import's limit within the web's body limit."""
    return min(config.contacts.max_import_bytes, config.web.max_form_bytes)


def _read_import(data: bytes) -> tuple[vcard.Parsed, list[Contact]]:
    parsed = vcard.parse(vcard.decode(data))
    return parsed, with_imported_uids(parsed.contacts)


async def import_vcards(services: Services, account: Account, data: bytes) -> Imported:
    """Store every good card of a .vcf file; ``BodyTooLarge`` past ``max_import_bytes``,
    ``UserError`` for a file that would take the account past its limit. The file is not
    refused for octets that are not UTF-8: a vCard 2.1 card (Outlook's) names its CHARSET,
    and a 3.0 or 4.0 card holding such octets is skipped alone (:func:`pillarbox.vcard.decode`).
    A card without a UID is given :func:`imported_uid`, so a re-import does not double it."""
    limits = services.config.contacts
    if len(data) > limits.max_import_bytes:
        raise BodyTooLarge(limits.max_import_bytes)
    # Up to max_import_bytes (2 MiB) of pure-Python parsing: off the loop past mail size.
    parsed, cards = await run_sized(len(data), _read_import, data)
    good: list[Contact] = []
    reasons = list(parsed.reasons)
    largest = card_limit(services.config)
    for card in cards:
        try:
            if (
                card.card is not None
                and len(card.card.encode("utf-8", "surrogateescape")) > largest
            ):
                raise UserError(f"larger than the {largest} bytes a card may have")
            good.append(checked_contact(limits, card))
        except UserError as exc:
            reasons.append(f"card {card.label}: {exc}")
    fresh = await _changed(services, account, good)
    if fresh:
        await services.store.save_contacts(
            account.id, fresh, now=datetime.now(UTC), limit=limits.max_per_account
        )
    skipped = parsed.skipped + len(cards) - len(good)
    done = Imported(len(fresh), len(good) - len(fresh), skipped, tuple(reasons))
    if skipped:
        _log.info(
            "vcard cards skipped",
            account=account.address,
            stored=done.stored,
            unchanged=done.unchanged,
            skipped=skipped,
            reasons="; ".join(reasons[:5]),
        )
    return done


async def _changed(services: Services, account: Account, good: list[Contact]) -> list[Contact]:
    """The cards of ``good`` to write: not those whose UID's contact is stored with that very
    card (its stored ETag is the card's). A UID the file holds twice is written as before,
    each card in turn (the last one stays), lest the first be written and the last, the
    stored one, left out."""
    if not good:
        return []
    held = {member.name: member.etag for member in await services.store.contact_members(account.id)}
    once = Counter(contact.uid for contact in good)
    return [
        contact
        for contact in good
        if contact.card is None
        or once[contact.uid] > 1
        or held.get(contact.uid) != vcard.etag(contact)
    ]


async def exported_vcards(services: Services, account: Account) -> tuple[bytes, int]:
    """Every contact of the account as one .vcf file (:func:`pillarbox.vcard.format_cards`:
    the Contacts page's export, ``pillarbox export --vcard``), and how many."""
    contacts = await services.store.list_contacts(account.id)
    return vcard.format_cards(contacts).encode(), len(contacts)


async def export_vcards(services: Services, account: Account) -> Response:
    """:func:`exported_vcards` as a download."""
    data, _ = await exported_vcards(services, account)
    response = foreign_content(Response(data, media_type=VCARD_TYPE), "contacts.vcf")
    response.headers["cache-control"] = "private, no-store"
    return response


async def completions(services: Services, account: Account, prefix: str, limit: int) -> list[str]:
    """Recipients for a typed ``prefix``: matching contacts' addresses (with their names)
    first, then the correspondents the store remembers, each address once."""
    found: list[str] = []
    seen: set[str] = set()
    for contact in await services.store.list_contacts(account.id, prefix, limit):
        for address in contact.emails:
            if address.lower() not in seen:
                seen.add(address.lower())
                found.append(recipient_text(contact.display_name, address))
    for address in await services.store.correspondents(account.id, prefix, limit):
        if address.lower() not in seen:
            seen.add(address.lower())
            found.append(address)
    return found[:limit]


# -- pages -----------------------------------------------------------------------------------------


def _form_contact(form: FormData, contact_id: int) -> Contact:
    return Contact(
        id=contact_id,
        uid="",
        display_name=field_text(form, "display_name"),
        emails=tuple(_lines(field_text(form, "emails"))),
        phones=tuple(field_text(form, "phones").splitlines()),
        organization=field_text(form, "organization"),
        note=field_text(form, "note"),
    )


async def _render(
    request: Request,
    account: Account,
    *,
    editing: Contact | None = None,
    error: str = "",
    status_code: int = 200,
) -> Response:
    app = web(request)
    search = request.query_params.get("q", "").strip()[:MAX_SEARCH]
    listed = await app.services.store.list_contacts(account.id, search, PAGE_LIMIT + 1)
    return app.render(
        request,
        "contacts.html",
        status_code=status_code,
        contacts=listed[:PAGE_LIMIT],
        more=len(listed) > PAGE_LIMIT,
        search=search,
        editing=editing or Contact(uid=""),
        error=error,
        notice=_NOTICES.get(request.query_params.get("done", ""), ""),
        # The counts of an import just done (the redirect after it carries them).
        imported=field_number(request.query_params.get("imported")),
        unchanged=field_number(request.query_params.get("unchanged")) or 0,
        skipped=field_number(request.query_params.get("skipped")) or 0,
        contact_limits=app.services.config.contacts,
    )


_NOTICES = {
    "saved": "Contact saved.",
    "added": "Added to your contacts.",
    "known": "Already in your contacts.",
    "deleted": "Deleted.",
}


async def contacts_page(request: Request) -> Response:
    return await _render(request, await require_account(request))


async def contact_page(request: Request) -> Response:
    """The list, with one contact's form open for editing."""
    app = web(request)
    account = await require_account(request)
    contact = await app.services.store.get_contact(account.id, request.path_params["contact"])
    return await _render(request, account, editing=contact)


async def contact_submit(request: Request) -> Response:
    """Create (``/contacts``), save or delete (``/contacts/{id}``) one contact; an error is
    shown in the form, with what was typed."""
    app = web(request)
    account = await require_account(request)
    form = await posted_form(request)
    contact_id: int = request.path_params.get("contact", 0)
    if field_text(form, "action") == "delete":
        contact = await app.services.store.get_contact(account.id, contact_id)
        asked = unconfirmed(
            request,
            form,
            what=f"The contact {contact.label} will be deleted.",
            button="Delete contact",
            back=f"/contacts/{contact_id}",
        )
        if asked is not None:
            return asked
        await app.services.store.delete_contact(account.id, contact_id, now=datetime.now(UTC))
        return redirect("/contacts?done=deleted")
    typed = _form_contact(form, contact_id)
    try:
        stored = await save(app.services, account, typed)
    except NotFound:
        raise  # another account's, or deleted since: the 404 page, not a form error
    except UserError as exc:
        return await _render(request, account, editing=typed, error=str(exc), status_code=400)
    return redirect(f"/contacts/{stored.id}?done=saved")


async def add_sender(request: Request) -> Response:
    """ "Add to contacts" on a message: the sender becomes a contact (or, already one, is
    opened), and the page to complete it is shown."""
    app = web(request)
    account = await require_account(request)
    form = await posted_form(request)
    address = field_text(form, "address").strip()
    for known in await app.services.store.list_contacts(account.id, address):
        if address.lower() in (e.lower() for e in known.emails):
            return redirect(f"/contacts/{known.id}?done=known")
    contact = Contact(uid="", display_name=field_text(form, "name"), emails=(address,))
    stored = await save(app.services, account, contact)
    return redirect(f"/contacts/{stored.id}?done=added")


async def import_page(request: Request) -> Response:
    app = web(request)
    account = await require_account(request)
    form = await posted_form(request, files=True)
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return await _render(request, account, error="choose a .vcf file", status_code=400)
    limit = app.services.config.contacts.max_import_bytes
    data = await upload.read(limit + 1)
    try:
        done = await import_vcards(app.services, account, data)
    except UserError as exc:
        return await _render(request, account, error=str(exc), status_code=400)
    counts = done.counts()
    return redirect("/contacts?" + urlencode(counts))


async def export_page(request: Request) -> Response:
    return await export_vcards(web(request).services, await require_account(request))


def routes() -> list[BaseRoute]:
    return [
        Route("/contacts", contacts_page, methods=["GET"]),
        Route("/contacts", contact_submit, methods=["POST"]),
        Route("/contacts/add", add_sender, methods=["POST"]),
        Route("/contacts/import", import_page, methods=["POST"]),
        Route("/contacts/export.vcf", export_page, methods=["GET"]),
        Route("/contacts/{contact:int}", contact_page, methods=["GET"]),
        Route("/contacts/{contact:int}", contact_submit, methods=["POST"]),
    ]
