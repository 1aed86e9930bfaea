"""An account's contacts as every way in stores them: the Contacts page and the JSON API
(:mod:`pillarbox.web.contacts`), CardDAV (:mod:`pillarbox.web.carddav`) and a .vcf import
(:mod:`pillarbox.transfer.vcf`: the page's, the API's and ``pillarbox import vcard``).

Implementation notes:

- **One check for every way in**: a contact from the page's form, the API or a vCard card
  passes :func:`checked_contact` against ``[contacts]``: a name or an address at least, each
  address valid (stored normalised, as the compose page would send to it: its own check,
  :func:`pillarbox.mail.people.parse_people`, plain text parsing that loads no web app),
  counts and lengths within limits. A card of an import that fails it is skipped and
  counted like a malformed one.
- **UIDs** (RFC 6350 §6.7.6): a contact made here gets ``urn:uuid:`` and a random UUID
  (:func:`new_uid`), written into its kept card too; an imported card keeps its own
  (:mod:`pillarbox.transfer.vcf` derives one for a card without).
- **A card is held to what a CardDAV client may PUT** (:func:`card_limit`): a stored card a
  client could not write back would fail its next sync of that contact.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from pillarbox import vcard
from pillarbox.config import Config, ContactsSection
from pillarbox.errors import UserError
from pillarbox.mail.people import parse_people
from pillarbox.store.types import Contact


def new_uid() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


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


def card_limit(config: Config) -> int:
    """The largest card kept: what a CardDAV client may PUT (RFC 6352 §6.2.3's
    ``max-resource-size``), the import's limit within the web's body limit."""
    return min(config.contacts.max_import_bytes, config.web.max_form_bytes)
