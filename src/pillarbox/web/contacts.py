"""The webmail's address book: the Contacts page, "add to contacts" from a message, vCard
import and export, and the contacts half of recipient completion. The JSON API calls the same
functions (:mod:`.api`).

Implementation notes:

- **One check for every way in** (:func:`pillarbox.addressbook.checked_contact`): a contact
  from the page's form, the API, CardDAV or a vCard card; UIDs as
  :mod:`pillarbox.addressbook` gives them.
- **Import and export**: what a .vcf file stores, and what an export holds, are
  :mod:`pillarbox.transfer.vcf`'s (each card checked, a UID derived for a card without
  one, a card stored as it is left alone), the path ``pillarbox import vcard`` and
  ``export --vcard`` take too.
- **Import size**: ``[contacts] max_import_bytes``, checked on the file (the page) or the
  text (the API) before parsing (:func:`.app.within_limit`): 413 past it. The request itself
  may be as large as a compose request (``[web] max_upload_bytes``), the limit the body is
  refused at as it streams in.
- **Completion** offers the account's contacts first (name and address, as a recipient field
  takes them), then the correspondents the store remembers; never another account's data.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import urlencode

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pillarbox import vcard
from pillarbox.addressbook import checked_contact
from pillarbox.errors import NotFound, UserError
from pillarbox.mail.people import recipient_text
from pillarbox.services import Services
from pillarbox.store.types import Account, Contact
from pillarbox.transfer import vcf
from pillarbox.web.app import (
    field_number,
    field_text,
    posted_form,
    redirect,
    require_account,
    unconfirmed,
    web,
    within_limit,
)
from pillarbox.web.downloads import foreign_content

#: Contacts the Contacts page lists at once (a search narrows it), and the longest search.
PAGE_LIMIT = 500
MAX_SEARCH = 254
VCARD_TYPE = "text/vcard; charset=utf-8"  # RFC 6350 §10.1


def _lines(text: str) -> list[str]:
    """The entries of a one-per-line (or comma-separated) field, blanks dropped."""
    return [part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()]


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


async def export_vcards(services: Services, account: Account) -> Response:
    """:func:`pillarbox.transfer.vcf.exported_vcards` as a download."""
    data, _ = await vcf.exported_vcards(services, account)
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
        done = await vcf.import_vcards(app.services, account, within_limit(data, limit))
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
