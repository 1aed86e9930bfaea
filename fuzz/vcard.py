"""Fuzz the vCard reader and writer (pillarbox.vcard) with arbitrary text: a CardDAV PUT body
or an imported .vcf file, from whoever holds the account.

Input: the file (bytes, decoded as the import decodes them: ``vcard.decode``, octets that
are not UTF-8 kept as surrogate escapes for a 2.1 card's CHARSET); its last byte also picks a
webmail edit. Asserted, beyond "no exception" (the reader never raises: a bad card is skipped
with a reason):

* each card read carries its text as received — a 2.1 card's converted to vCard 3.0 —, which
  reads back alone to the same contact and which a store can keep (no NUL: PostgreSQL's text
  refuses it; no surrogate: not UTF-8) and a REPORT's ``address-data`` carry (an XML
  document reading back to the same text);
* a contact that passes the one check of every way in (``checked_contact``: what the store
  keeps), written as vCard 4.0 and 3.0, reads back to the same fields, and so does its kept
  card given a UID (``with_uid``, a CardDAV PUT without one);
* the kept card edited in the webmail (``revise``) reads back to the edited fields.
"""

from __future__ import annotations

from dataclasses import replace
from xml.etree import ElementTree

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox import davxml, vcard
    from pillarbox.addressbook import checked_contact
    from pillarbox.config import ContactsSection
    from pillarbox.errors import UserError
    from pillarbox.store.types import Contact
    from pillarbox.testing.vcards import ANDROID, OUTLOOK_2016, RICH_CARD

LIMITS = ContactsSection()
_UPGRADED = "BEGIN:VCARD\r\nVERSION:3.0\r\n"


def _fields(contact: Contact) -> tuple[object, ...]:
    """What the store keeps of a checked contact, the lists as sets (an edit or a PREF may
    reorder them); a number as typed (one edited in a ``tel:`` URI line gained "-" for its
    blanks before, and read back so)."""
    return (
        contact.uid,
        contact.label,
        sorted(contact.emails),
        sorted(contact.phones),
        contact.organization,
        contact.note,
    )


def _one(text: str) -> Contact:
    parsed = vcard.parse(text)
    assert parsed.skipped == 0 and len(parsed.contacts) == 1, (text, parsed)
    return parsed.contacts[0]


def _stored(contact: Contact) -> Contact | None:
    try:
        return checked_contact(LIMITS, contact)
    except UserError:
        return None


def _edited(before: Contact, choice: int) -> Contact | None:
    """An edit of ``before`` as the webmail's form makes one, picked by ``choice``'s bits."""
    after = before
    if choice & 1:
        after = replace(after, display_name="Ana Lima" if before.display_name else "")
    if choice & 2:
        after = replace(after, emails=after.emails[1:])
    if choice & 4:
        after = replace(after, emails=(*after.emails, "new@example.org"))
    if choice & 8:
        after = replace(after, phones=(*after.phones[::-1][1:], "+33 1 02"))
    if choice & 16:
        after = replace(after, organization="" if before.organization else "ACME; Labs")
    if choice & 32:
        after = replace(after, note="" if before.note else "line\nnext, with; marks\\")
    return _stored(after)


def check(data: bytes) -> None:
    text = vcard.decode(data)
    parsed = vcard.parse(text)
    assert parsed.skipped == len(parsed.reasons)
    for contact in parsed.contacts:
        assert contact.display_name or contact.emails, contact
        assert contact.card is not None
        # As received, or a 2.1 card written as 3.0 (with the FN and N 3.0 requires).
        assert contact.card in text or contact.card.startswith(_UPGRADED), contact.card
        contact.card.encode()  # UTF-8: what the store and every client are given
        # No NUL (a store's text column, PostgreSQL's, refuses it) nor anything else a
        # REPORT's address-data (XML) cannot carry.
        assert not vcard.REFUSED_CHARACTERS.search(contact.card), contact.card
        document = davxml.document(
            davxml.element("{urn:ietf:params:xml:ns:carddav}x", contact.card)
        )
        assert ElementTree.fromstring(document).text == contact.card
        assert _one(contact.card) == contact
        stored = _stored(contact)
        if stored is None:
            continue
        for version in ("4.0", "3.0"):
            written = vcard.format_card(replace(stored, card=None), version)
            again = _stored(_one(written))
            assert again is not None and _fields(again) == _fields(stored), (version, written)
        if not contact.uid:
            given = _stored(_one(vcard.with_uid(contact.card, "urn:uuid:1")))
            assert given is not None
            assert _fields(given) == _fields(replace(stored, uid="urn:uuid:1")), given
        after = _edited(stored, data[-1])
        if after is not None and stored.card is not None:
            revised = vcard.revise(stored.card, stored, after)
            again = _stored(_one(revised))
            assert again is not None and _fields(again) == _fields(after), (revised, after)


def seeds() -> list[bytes]:
    return [
        RICH_CARD.encode(),
        b"BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:4fbe8971\r\nFN:Doe\\, Jane\\; Dr.\r\n"
        b"EMAIL:jane@example.com\r\nEMAIL;PREF=1:jd@work.example\r\nTEL:+1 555 0100\r\n"
        b"ORG:ACME\\\\Labs;R&D\r\nNOTE:first line\\nsecond\\, with comma\r\nEND:VCARD\r\n\x3f",
        b"BEGIN:VCARD\nVERSION:3.0\nN:Perreault;Simon;;;ing. jr,M.Sc.\nFN:Simon\n  Perreault\n"
        b'item1.EMAIL;TYPE=work:simon@example.com\nTEL;VALUE=uri;TYPE="voice,home":tel:+1-418-2\n'
        b"TEL;CELL:+1 555\nEND:VCARD\n\x01",
        b"BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Good\r\nEND:VCARD\r\nBEGIN:VCARD\r\nVERSION:2.1\r\n"
        b"FN:Old\r\nEND:VCARD\r\nstray\r\nBEGIN:VCARD\r\nVERSION:4.0\r\nFN:Cut\r\n",
        b"\xef\xbb\xbfBEGIN:VCARD\r\nVERSION:4.0\r\nUID;VALUE=text:a\\,b\\;c\r\n"
        b"EMAIL:a@example.com\r\nEND:VCARD\r\n\x3e",
        OUTLOOK_2016.encode("cp1252"),
        ANDROID.encode(),
    ]


if __name__ == "__main__":
    harness.main("vcard", check, seeds(), max_len=65536)
