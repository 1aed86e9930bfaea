"""vCard (RFC 6350, 4.0; RFC 2426, 3.0): the address book's import and export format.

Implementation notes:

- **Owned, not a dependency**: the part of vCard an address book of names, addresses, phones,
  organisation and note needs is the content-line grammar (§3.3), unfolding (§3.2), value
  escaping (§3.4) and seven properties; that is this module. ``vobject`` (the usual library)
  parses every property into objects and reads vCard 4.0 only partly; it would add a
  dependency (and ``python-dateutil``) for what is a page of code here, tested byte by byte.
- **Read**: vCard 3.0 and 4.0 (a ``VERSION`` other than those, 2.1's quoted-printable
  included, makes the card bad); ``FN`` (else one built from ``N``), ``EMAIL``, ``TEL`` (a
  ``VALUE=uri`` ``tel:`` URI becomes its number), ``ORG`` (its units joined with ", "),
  ``NOTE``, ``UID``; ``PREF`` (4.0) and ``TYPE=pref`` (3.0) put an address or number first. Groups
  (``item1.EMAIL``) are read as the bare property; every other property is ignored. Lines
  folded with a space or a tab, and ends of line CRLF or bare LF, are accepted.
- **Bad cards are skipped, not fatal**: a card without ``END:VCARD``, with a line that is not
  a content line, an unknown version, or nothing to keep (no name and no address) is counted
  in :attr:`Parsed.skipped` with a reason, and reading goes on at the next ``BEGIN:VCARD``.
- **Written**: vCard 4.0, or 3.0 for a CardDAV client that asks (RFC 6352 §10.4), UTF-8,
  CRLF, lines folded at 75 octets without splitting a UTF-8 sequence (§3.2), text escaped per
  §3.4 (backslash, comma, semicolon, newline); ``FN`` (the label when there is no name: FN is
  required, §6.2.1), ``UID``, ``EMAIL``, ``TEL``, ``ORG``, ``NOTE``, ``REV`` (the last update,
  §6.7.4). ``N`` is written in 3.0 only (required there, RFC 2426 §5; optional in 4.0), made
  from the display name: the store keeps no structured name.
- Pure: no I/O, no clock; sizes are the caller's (``[contacts]``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC

from pillarbox.store.types import Contact

#: RFC 6350 §3.2: "Lines of text SHOULD NOT be longer than 75 octets, excluding the line break."
MAX_LINE_OCTETS = 75
CRLF = "\r\n"
VERSIONS = frozenset({"3.0", "4.0"})
#: RFC 6350 §3.2: a line break followed by one white space character is a fold.
_FOLD = re.compile(r"\r?\n[ \t]")
#: RFC 6350 §3.3: ``[group "."] name`` — letters, digits and dashes.
_NAME = re.compile(r"(?:[A-Za-z0-9-]+\.)?([A-Za-z0-9-]+)")
_UNESCAPE = re.compile(r"\\(.)", re.S)
#: What a text value escapes on output (RFC 6350 §3.4).
_ESCAPES = {"\\": "\\\\", "\n": "\\n", ",": "\\,", ";": "\\;"}
_LAST_PREFERENCE = 101  # RFC 6350 §5.3: PREF is 1 (most preferred) to 100


@dataclass(frozen=True, slots=True)
class Parsed:
    """What a file held: its good cards as contacts (``id`` 0; ``uid`` "" for a card without
    one), and how many were skipped, with a reason for each."""

    contacts: tuple[Contact, ...]
    skipped: int
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Line:
    name: str  # upper case, group removed
    params: dict[str, list[str]]  # names upper case; values as written (quotes removed)
    value: str  # raw: still escaped


class _BadCard(Exception):
    pass


def _unfold(text: str) -> list[str]:
    return _FOLD.sub("", text).replace("\r\n", "\n").split("\n")


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _content_line(line: str) -> _Line:
    """RFC 6350 §3.3: ``contentline = [group "."] name *(";" param) ":" value CRLF``; the
    first colon outside a quoted parameter value ends the parameters."""
    head_and_value = _split_outside_quotes(line, ":")
    if len(head_and_value) < 2:
        raise _BadCard(f"not a content line: {line[:40]!r}")
    head, value = head_and_value[0], ":".join(head_and_value[1:])
    name_part, *param_parts = _split_outside_quotes(head, ";")
    match = _NAME.fullmatch(name_part)
    if match is None:
        raise _BadCard(f"not a property name: {name_part[:40]!r}")
    params: dict[str, list[str]] = {}
    for part in param_parts:
        key, eq, values = part.partition("=")
        if not eq:  # vCard 2.1's bare types ("TEL;CELL:"), still written by some exporters
            key, values = "TYPE", key
        params.setdefault(key.upper(), []).extend(
            v.strip('"') for v in _split_outside_quotes(values, ",")
        )
    return _Line(match.group(1).upper(), params, value)


def unescape(value: str) -> str:
    """A text value as meant (RFC 6350 §3.4): ``\\n`` or ``\\N`` a newline, ``\\\\``, ``\\,``
    and ``\\;`` the character; any other escaped character is kept as itself."""
    return _UNESCAPE.sub(lambda m: "\n" if m.group(1) in "nN" else m.group(1), value)


def _components(value: str) -> list[str]:
    """A structured value's components (N, ORG): split at unescaped semicolons (an escaped
    backslash is set aside first, so ``\\\\;`` still splits)."""
    protected = value.replace("\\\\", "\0")
    return [unescape(part).replace("\0", "\\") for part in re.split(r"(?<!\\);", protected)]


def _preference(line: _Line) -> int:
    """RFC 6350 §5.3 PREF (1 most preferred), or RFC 2426's ``TYPE=pref`` (first)."""
    for value in line.params.get("PREF", []):
        if value.isdigit() and 1 <= int(value) <= 100:
            return int(value)
    if any(t.lower() == "pref" for t in line.params.get("TYPE", [])):
        return 0
    return _LAST_PREFERENCE


def _phone(line: _Line) -> str:
    value = unescape(line.value).strip()
    # RFC 6350 §6.4.1: TEL may be reset to a URI (VALUE=uri, a tel: URI, RFC 3966); the
    # number is what is kept. Without VALUE=uri the value is text, "tel:" and all.
    is_uri = any(v.lower() == "uri" for v in line.params.get("VALUE", []))
    return value[4:].strip() if is_uri and value.lower().startswith("tel:") else value


def _card(lines: list[_Line]) -> Contact:
    version = next((unescape(line.value).strip() for line in lines if line.name == "VERSION"), "")
    if version not in VERSIONS:
        raise _BadCard(f"unsupported VERSION {version or '(none)'}")
    full_name, structured, organization, note, uid = "", "", "", "", ""
    emails: list[tuple[int, str]] = []
    phones: list[tuple[int, str]] = []
    for line in lines:
        match line.name:
            case "FN":
                full_name = full_name or " ".join(unescape(line.value).split())
            case "N":
                # RFC 6350 §6.2.2: family; given; additional; prefixes; suffixes.
                parts = [*_components(line.value), "", "", "", ""]
                family, given, additional, prefixes, suffixes = parts[:5]
                order = (prefixes, given, additional, family, suffixes)
                structured = " ".join(" ".join(order).replace(",", " ").split())
            case "EMAIL":
                if address := unescape(line.value).strip():
                    emails.append((_preference(line), address))
            case "TEL":
                if number := _phone(line):
                    phones.append((_preference(line), number))
            case "ORG":
                units = [u.strip() for u in _components(line.value) if u.strip()]
                organization = organization or ", ".join(units)
            case "NOTE":
                note = note or unescape(line.value).replace("\r\n", "\n").replace("\r", "\n")
            case "UID":
                uid = uid or unescape(line.value).strip()
    name = full_name or structured
    if not name and not emails:
        raise _BadCard("neither a name nor an email address")
    return Contact(
        uid=uid,
        display_name=name,
        emails=tuple(a for _, a in sorted(emails, key=lambda p: p[0])),
        phones=tuple(n for _, n in sorted(phones, key=lambda p: p[0])),
        organization=organization,
        note=note,
    )


def _cards(lines: list[str]) -> Iterator[list[str] | _BadCard]:
    """The lines of each ``BEGIN:VCARD`` … ``END:VCARD``, or the reason one is broken."""
    current: list[str] | None = None
    for line in lines:
        upper = line.strip().upper()
        if upper == "BEGIN:VCARD":
            if current is not None:
                yield _BadCard("no END:VCARD before the next card")
            current = []
        elif upper == "END:VCARD":
            if current is not None:
                yield current
            current = None
        elif current is not None and line.strip():
            current.append(line)
    if current is not None:
        yield _BadCard("no END:VCARD at the end of the file")


def parse(text: str) -> Parsed:
    """Every card of a .vcf file (already decoded: vCard 4.0 is UTF-8, RFC 6350 §3.1)."""
    contacts: list[Contact] = []
    reasons: list[str] = []
    for number, card in enumerate(_cards(_unfold(text)), start=1):
        try:
            if isinstance(card, _BadCard):
                raise card
            contacts.append(_card([_content_line(line) for line in card]))
        except _BadCard as exc:
            reasons.append(f"card {number}: {exc}")
    return Parsed(tuple(contacts), len(reasons), tuple(reasons))


# -- writing ---------------------------------------------------------------------------------------


def escape(value: str) -> str:
    """A text value as written (RFC 6350 §3.4), newlines of any kind as ``\\n``."""
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(_ESCAPES.get(char, char) for char in value)


def fold(line: str) -> str:
    """``line`` with CRLF: folded (CRLF and a space) so no physical line passes 75 octets,
    never inside a UTF-8 sequence (RFC 6350 §3.2)."""
    out: list[str] = []
    size, limit = 0, MAX_LINE_OCTETS
    for char in line:
        octets = len(char.encode())
        if size + octets > limit:
            out.append(CRLF + " ")
            size, limit = 1, MAX_LINE_OCTETS
        out.append(char)
        size += octets
    return "".join(out) + CRLF


def _uid_line(uid: str) -> str:
    # RFC 6350 §6.7.6: a URI by default; a UID a URI cannot carry as is is written as text.
    if any(char in uid for char in "\\,;\n\r"):
        return f"UID;VALUE=text:{escape(uid)}"
    return f"UID:{uid}"


def _structured_name(name: str) -> str:
    """RFC 2426 §3.1.2 ``N`` (family; given; additional; prefixes; suffixes) from a display
    name: its last word the family name, the words before it the given name."""
    *given, family = name.split() or [""]
    return ";".join((escape(family), escape(" ".join(given)), "", "", ""))


def format_card(contact: Contact, version: str = "4.0") -> str:
    """One vCard of ``contact`` (its ``label`` as FN when it has no name): 4.0, or 3.0 for a
    CardDAV client asking for it (RFC 6352 §10.4's default), which adds the ``N`` that 3.0
    requires (RFC 2426 §5)."""
    lines = ["BEGIN:VCARD", f"VERSION:{version}", _uid_line(contact.uid)]
    lines.append(f"FN:{escape(contact.label)}")
    if version == "3.0":
        lines.append(f"N:{_structured_name(contact.display_name)}")
    lines += [f"EMAIL:{escape(address)}" for address in contact.emails]
    lines += [f"TEL:{escape(number)}" for number in contact.phones]
    if contact.organization:
        lines.append(f"ORG:{escape(contact.organization)}")
    if contact.note:
        lines.append(f"NOTE:{escape(contact.note)}")
    if contact.updated is not None:
        # RFC 6350 §6.7.4 REV, a timestamp (§4.3.5) in UTC.
        lines.append(f"REV:{contact.updated.astimezone(UTC):%Y%m%dT%H%M%SZ}")
    lines.append("END:VCARD")
    return "".join(fold(line) for line in lines)


def format_cards(contacts: list[Contact]) -> str:
    """A .vcf file of ``contacts``, one card after another (RFC 6350 §3.1)."""
    return "".join(format_card(contact) for contact in contacts)
