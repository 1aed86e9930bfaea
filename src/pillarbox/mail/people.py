"""People named in address fields, as readers and writers of mail see them: a display name
and ``local@domain``, from a parsed message's envelope (:func:`people`) or from what a person
typed into a recipient field (:func:`parse_people`), and back into field text
(:func:`recipient_text`).

Plain text work on the parsed addresses of :mod:`pillarbox.mail.headers`, so that the address
book (:mod:`pillarbox.addressbook`, which ``pillarbox import vcard`` and CardDAV load) checks
addresses as the compose page does without loading the web app.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pillarbox.errors import InvalidName
from pillarbox.mail.address import parse_address
from pillarbox.mail.decode import decode_words, escaped_to_text
from pillarbox.mail.headers import MISSING_DOMAIN, parse_addresses
from pillarbox.mail.model import EnvelopeAddress

#: What ``str.splitlines`` breaks at, which the email package refuses in a header value
#: (a reply to a subject holding a form feed or U+2028 raised, and the send failed): a
#: field's text is made one line.
LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")

#: RFC 5322 §3.2.3 atext, plus the space between words: a display name of these needs no quotes.
_PLAIN_NAME = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~ "
)


def recipient_text(name: str, address: str) -> str:
    """``name <address>`` as a recipient field takes it: the name quoted (RFC 5322 §3.2.4)
    unless it is plain words (a comma in it would otherwise split the field)."""
    if not name:
        return address
    if not all(char in _PLAIN_NAME or ord(char) > 127 for char in name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{address}>"


@dataclass(frozen=True, slots=True)
class Person:
    """One address as shown: a decoded display name (may be empty) and ``local@domain``."""

    name: str
    address: str

    def __str__(self) -> str:
        return recipient_text(self.name, self.address)

    @property
    def label(self) -> str:
        return self.name or self.address


def people(addresses: Sequence[EnvelopeAddress]) -> list[Person]:
    """The mailboxes of an ENVELOPE address list, group markers dropped."""
    result: list[Person] = []
    for item in addresses:
        if item.mailbox is None or item.host is None:
            continue
        address = escaped_to_text(item.mailbox)
        if item.host != MISSING_DOMAIN:
            address += "@" + escaped_to_text(item.host)
        name = decode_words(escaped_to_text(item.name or "")).strip()
        result.append(Person(name, address))
    return result


def parse_people(text: str) -> tuple[list[Person], list[str]]:
    """The addresses in a comma-separated field, and the entries that are not valid."""
    if not text.strip():
        return [], []
    addresses, _defects = parse_addresses(LINE_BREAKS.sub(" ", text))
    valid: list[Person] = []
    invalid: list[str] = []
    for person, item in zip(people(addresses), addresses, strict=False):
        if item.host == MISSING_DOMAIN or not item.host:
            invalid.append(person.address)
            continue
        try:
            parsed = parse_address(person.address)
        except InvalidName:
            invalid.append(person.address)
            continue
        if parsed.is_literal or "." not in parsed.domain:
            invalid.append(person.address)
            continue
        valid.append(Person(person.name, parsed.normalised))
    # Entries the parser dropped entirely (group markers without members) are not errors.
    return valid, invalid
