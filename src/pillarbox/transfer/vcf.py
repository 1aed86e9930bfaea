""".vcf files into and out of an account's address book: the Contacts page's import and export
and the API's (their HTTP side: :mod:`pillarbox.web.contacts`), ``pillarbox import vcard`` and
``pillarbox export --vcard`` (:mod:`pillarbox.transfer.davfiles`) — one path for all, which
loads no web app.

Implementation notes:

- **Every card checked** as a contact from the page is (:func:`pillarbox.addressbook.
  checked_contact`), and held to what a CardDAV client may PUT
  (:func:`pillarbox.addressbook.card_limit`), as kept — a 2.1 card as its larger 3.0 form.
  A card that fails is skipped and counted, with why; ``[contacts] max_import_bytes``
  bounds the file (checked by the caller before it is read whole: the web answers 413, the
  CLI refuses the file).
- **UIDs** (RFC 6350 §6.7.6): an imported card keeps its own, so importing the same file
  again updates instead of duplicating (the store replaces by UID). An imported card
  without one (Outlook, Android and many other exports write none) gets one derived from
  its text (:func:`imported_uid`), so that importing that file again finds the same UIDs
  too.
- **A re-import writes nothing that is there**: a card whose UID's contact is stored with
  that very card (its ETag, :func:`pillarbox.vcard.etag`, is the card's digest) is left
  alone and counted ``unchanged`` — a write would raise the address book's sync token and
  the contact's ETag, and every CardDAV client would fetch the whole book again. Told by
  the ETags the book lists (one store read, :meth:`.Store.contact_members`, no card read),
  as the calendar import does (:mod:`pillarbox.transfer.ics`).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from pillarbox import vcard
from pillarbox.addressbook import card_limit, checked_contact
from pillarbox.blocking import run_sized
from pillarbox.errors import UserError
from pillarbox.observability.log import Log
from pillarbox.services import Services
from pillarbox.store.types import Account, Contact
from pillarbox.transfer.imported import Imported

# Named as when this was the web's: the name operators' log filters know.
_log = Log("web.contacts")

#: The name space of :func:`imported_uid`'s UUIDs (RFC 9562 §5.5). Never to change: the
#: UIDs of the contacts already imported were derived in it.
IMPORTED_UID_NAMESPACE = uuid.UUID("c17f2126-7afe-4a25-8fb7-858b3e03b891")


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


def _read_import(data: bytes) -> tuple[vcard.Parsed, list[Contact]]:
    parsed = vcard.parse(vcard.decode(data))
    return parsed, with_imported_uids(parsed.contacts)


async def import_vcards(services: Services, account: Account, data: bytes) -> Imported:
    """Store every good card of a .vcf file (within ``[contacts] max_import_bytes``, the
    caller's check); ``UserError`` for a file that would take the account past its limit.
    The file is not refused for octets that are not UTF-8: a vCard 2.1 card (Outlook's)
    names its CHARSET, and a 3.0 or 4.0 card holding such octets is skipped alone
    (:func:`pillarbox.vcard.decode`). A card without a UID is given :func:`imported_uid`,
    so a re-import does not double it."""
    limits = services.config.contacts
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
