"""vCard (RFC 6350, 4.0; RFC 2426, 3.0; and 2.1, read): the address book's import and
export format.

Implementation notes:

- **Owned, not a dependency**: the part of vCard an address book of names, addresses, phones,
  organisation and note needs is the content-line grammar (§3.3), unfolding (§3.2), value
  escaping (§3.4) and seven properties; that is this module. ``vobject`` (the usual library)
  parses every property into objects and reads vCard 4.0 only partly; it would add a
  dependency (and ``python-dateutil``) for what is a page of code here, tested byte by byte.
- **Read**: vCard 3.0, 4.0 and 2.1 (below; another ``VERSION`` makes the card bad);
  ``FN`` (else one built from ``N``), ``EMAIL``, ``TEL`` (a
  ``VALUE=uri`` ``tel:`` URI becomes its number), ``ORG`` (its units joined with ", "),
  ``NOTE``, ``UID``; ``PREF`` (4.0) and ``TYPE=pref`` (3.0) put an address or number first. Groups
  (``item1.EMAIL``) are read as the bare property; every other property is only kept. Lines
  folded with a space or a tab, and ends of line CRLF or bare LF, are accepted.
- **Bad cards are skipped, not fatal**: a card without ``END:VCARD``, with a line that is not
  a content line or a character of :data:`REFUSED_CHARACTERS` (octets that are not UTF-8
  among them, :func:`decode`), an unknown version, or nothing to keep (no name and no
  address) is counted in :attr:`Parsed.skipped` with a reason, and reading goes on at the
  next ``BEGIN:VCARD``.
- **vCard 2.1** (versit, 1996; no RFC — Outlook's "Save as vCard", Android and feature
  phones, older Apple exports): bare parameters (``TEL;WORK;VOICE:``), ``ENCODING=`` (or bare)
  QUOTED-PRINTABLE with its soft line breaks, ``CHARSET=`` (any Python knows; without one
  UTF-8, else windows-1252), BASE64 values over lines ended by an empty one, folding that
  keeps the blank (RFC 822's), and its escaping (only ``\\;`` in a component; a backslash is
  otherwise itself). An unknown CHARSET or ENCODING, text not in its CHARSET or base64 that
  is not skips the card, as any bad card. The limits are the caller's, as for the others.
- **A 2.1 card is kept as vCard 3.0, not as received**: CardDAV clients read 3.0 (what RFC
  6352 §3 has servers support) and 4.0, not 2.1; ``text/vcard`` is UTF-8 only (RFC 6350
  §10.1); and a value in windows-1252 or quoted-printable kept as such would reach every
  client and every export undecoded. So the card kept, served and exported is its 3.0 form:
  every property (ADR, LABEL, PHOTO, X-MS-…, X-ANDROID-…, those the webmail does not model
  too) in its order, values decoded to UTF-8 and escaped as 3.0 escapes them (RFC 2426 §4),
  QUOTED-PRINTABLE and CHARSET dropped, bare parameters as ``TYPE=``, a BASE64 value as
  ``ENCODING=b`` (RFC 2426 §5.8.4), ``VALUE=URL`` as ``VALUE=uri``, GEO's comma a semicolon,
  and the FN and N 3.0 requires (RFC 2426 §5) added when missing. It reads back to the same
  contact, so importing an export changes nothing; the 2.1 text itself is not kept.
- **Kept as received** (3.0 and 4.0): each card read carries its text as received (BEGIN to
  END line, folds and line ends as they were) in :attr:`Contact.card`; the store keeps it,
  CardDAV serves it and the export writes it, so what the fields do not hold (ADR, BDAY,
  PHOTO, TYPE and other parameters, groups, X- properties) is never lost. :func:`revise`
  applies a webmail edit to such a card (a 2.1 card's 3.0 form too): only the changed
  properties it owns (FN, N, EMAIL, TEL, ORG, NOTE) are rewritten, a changed address or
  number in the place (and with the parameters) of the one it replaced.
- **Written** (a contact without a kept card): vCard 4.0, or 3.0 for a CardDAV client that
  asks (RFC 6352 §10.4), UTF-8, CRLF, lines folded at 75 octets without splitting a UTF-8
  sequence (§3.2), text escaped per §3.4 (backslash, comma, semicolon, newline); ``FN`` (the
  label when there is no name: FN is required, §6.2.1), ``UID``, ``EMAIL``, ``TEL``, ``ORG``,
  ``NOTE``, ``REV`` (the last update, §6.7.4). ``N`` is written in 3.0 only (required there,
  RFC 2426 §5; optional in 4.0), made from the display name: the store keeps no structured
  name.
- Pure: no I/O, no clock; sizes are the caller's (``[contacts]``).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC

from pillarbox.store.types import Contact, data_etag

#: Characters no card holds: controls but HTAB and the line ends (RFC 6350 §3.3: a value is
#: WSP, VCHAR and non-ASCII), lone surrogates (octets that were not UTF-8: :func:`decode`), and
#: U+FFFE and U+FFFF, no characters of XML 1.0 either (§2.2), in which a REPORT carries the card
#: (RFC 6352 §10.4).
REFUSED_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")

#: RFC 6350 §3.2: "Lines of text SHOULD NOT be longer than 75 octets, excluding the line break."
MAX_LINE_OCTETS = 75
CRLF = "\r\n"
VERSIONS = frozenset({"3.0", "4.0"})
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


@dataclass(frozen=True, slots=True)
class _Raw:
    """One content line as received: its physical lines (``text``, folds and line ends
    included) and the line they unfold to (``logical``)."""

    text: str
    logical: str


def _raw_lines(text: str) -> list[_Raw]:
    """The content lines of ``text`` as received: a physical line starting with a space or a
    tab continues the one before (RFC 6350 §3.2); ends of line CRLF or bare LF."""
    raws: list[_Raw] = []
    # The continuations of the last line, joined to it once: a line folded many times (a
    # 2 MiB photo is 27,000 physical lines) grown by concatenation was quadratic.
    texts: list[str] = []
    logicals: list[str] = []

    def join_folds() -> None:
        if texts:
            last = raws[-1]
            raws[-1] = _Raw(last.text + "".join(texts), last.logical + "".join(logicals))
            texts.clear()
            logicals.clear()

    for physical in re.split(r"(?<=\n)", text):
        if not physical:
            continue
        unended = physical.removesuffix("\n").removesuffix("\r")
        if raws and physical[0] in " \t":
            texts.append(physical)
            logicals.append(unended[1:])
        else:
            join_folds()
            raws.append(_Raw(physical, unended))
    join_folds()
    return raws


#: A card's first or last line. versit's 2.1 grammar allows blanks around the colon
#: (``"BEGIN" [ws] ":" [ws] "VCARD"``); RFC 6350 §3.3's and RFC 2426's do not (see parse).
_DELIMITER = re.compile(r"(BEGIN|END)[ \t]*:[ \t]*VCARD", re.IGNORECASE)


def _delimiter(line: str) -> str:
    """``BEGIN`` or ``END`` for a card's first or last line, else ``""``. Blanks around it
    are any :meth:`str.strip` removes: a stray CR before END, kept in the line by a bare LF
    before it, must end the card here as in the 2.1 reading (which drops it), or the 3.0
    form would hold an END:VCARD inside."""
    match = _DELIMITER.fullmatch(line.strip())
    return match[1].upper() if match else ""


def _strict_delimiters(received: str) -> bool:
    """Whether a card's BEGIN and END lines have no blank around their colon."""
    ends = received.partition("\n")[0].strip() + received.rstrip("\r\n").rpartition("\n")[2].strip()
    return " " not in ends and "\t" not in ends


def _cards(text: str) -> Iterator[tuple[list[str], str] | _BadCard]:
    """The content lines of each ``BEGIN:VCARD`` … ``END:VCARD`` with the card's text as
    received (from its BEGIN line to its END line's end), or the reason one is broken."""
    current: list[_Raw] | None = None
    for raw in _raw_lines(text):
        delimiter = _delimiter(raw.logical)
        if delimiter == "BEGIN":
            if current is not None:
                yield _BadCard("no END:VCARD before the next card")
            current = [raw]
        elif delimiter == "END":
            if current is not None:
                inner = [r.logical for r in current[1:] if r.logical.strip()]
                yield inner, "".join(r.text for r in current) + raw.text
            current = None
        elif current is not None:
            current.append(raw)
    if current is not None:
        yield _BadCard("no END:VCARD at the end of the file")


def _version(lines: list[str]) -> str:
    """A card's VERSION, read before its lines are (2.1's are not 3.0's)."""
    for line in lines:
        head, _, value = line.partition(":")
        if head.strip().upper() == "VERSION":
            return value.strip()
    return ""


def decode(data: bytes) -> str:
    """A .vcf file's octets as the text :func:`parse` reads: UTF-8 (vCard 4.0's only charset,
    RFC 6350 §3.1; a byte-order mark dropped), an octet that is not UTF-8 kept as a lone
    surrogate (``surrogateescape``). A 2.1 card's CHARSET says what its octets are, so they
    are read there; a 3.0 or 4.0 card holding one is skipped, its neighbours kept."""
    return data.decode("utf-8-sig", "surrogateescape")


def parse(text: str) -> Parsed:
    """Every card of a .vcf file (as :func:`decode` gives it), each contact with its card as
    received (:attr:`Contact.card`), a 2.1 card's as its vCard 3.0 form."""
    contacts: list[Contact] = []
    reasons: list[str] = []
    for number, card in enumerate(_cards(text), start=1):
        try:
            if isinstance(card, _BadCard):
                raise card
            lines, received = card
            if _version(lines) == LEGACY_VERSION:
                received = _upgraded(received)
                lines = [raw.logical for raw in _raw_lines(received)[1:-1]]
            elif not _strict_delimiters(received):
                # Kept as received, such a card would be served to CardDAV clients whose
                # parsers follow RFC 6350, and the webmail's edits look for END:VCARD.
                raise _BadCard("blanks around BEGIN's or END's colon (only vCard 2.1 has them)")
            refused = REFUSED_CHARACTERS.search(received)
            if refused is not None and _SURROGATE.fullmatch(refused[0]):
                raise _BadCard("octets that are not UTF-8")  # see decode
            if refused is not None:
                # NUL is one a store cannot keep (PostgreSQL's text refuses it); none can
                # stand in an XML document: a REPORT's address-data holding one was a body
                # no client could read.
                raise _BadCard(f"the character {refused[0]!r}")
            contact = _card([_content_line(line) for line in lines])
            contacts.append(replace(contact, card=received))
        except _BadCard as exc:
            reasons.append(f"card {number}: {exc}")
    return Parsed(tuple(contacts), len(reasons), tuple(reasons))


# -- vCard 2.1 -------------------------------------------------------------------------------------
# The versit Consortium's "vCard, The Electronic Business Card, Version 2.1" (September 1996; no
# RFC): what Outlook, many phones and older exports write. §-references below are to it.

LEGACY_VERSION = "2.1"
#: 2.1 §2.9: a parameter may be a bare type (``knowntype``: ``TEL;WORK;VOICE:``); writers put
#: the encoding bare too (``NOTE;QUOTED-PRINTABLE:``), one of these (§2.1.5).
_LEGACY_ENCODINGS = frozenset({"QUOTED-PRINTABLE", "BASE64", "B", "8BIT", "7BIT"})
#: 2.1's text properties: the value is one text, a ``;`` in it literal. Every other property
#: is compound — N, ADR, ORG (§2.9: components split at ``;``, one in a component escaped
#: ``\;``, §2.1.3) and those 2.1 does not define (X-ANDROID-CUSTOM…), so that their
#: components stay components.
_LEGACY_TEXT = frozenset({"FN", "NOTE", "TITLE", "ROLE", "LABEL", "EMAIL", "TEL", "MAILER", "UID"})
#: Values that are no text in 3.0 (a URI, a date, an offset, a position: RFC 2426 §3), copied
#: without text escaping (unless a decoded line break would end the line).
_LEGACY_VERBATIM = frozenset({"URL", "BDAY", "REV", "TZ", "GEO", "PHOTO", "LOGO", "SOUND", "KEY"})
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/=]+")
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # an octet that was not UTF-8 (see decode)
#: RFC 2978 §2.3: a charset name is up to 40 of these (no NUL, no blank: a codec name Python
#: would otherwise be asked about).
_CHARSET_NAME = re.compile(r"[A-Za-z0-9!#$%&'+^_`{}~-]{1,40}")
_LEGACY_PARAMETER_SPECIALS = re.compile(r'[,;:"]')


def _legacy_encoding(head: str) -> str:
    """The ENCODING of a 2.1 line's ``head`` (name and parameters), "" for none."""
    for part in head.split(";")[1:]:
        key, eq, value = (p.strip().upper() for p in part.partition("="))
        if not eq and key in _LEGACY_ENCODINGS:
            return key
        if eq and key == "ENCODING":
            return value
    return ""


def _legacy_lines(text: str) -> list[str]:
    """The logical lines of a 2.1 card's inner text. A quoted-printable value ending in ``=``
    (a soft line break) goes on with the next line whole, its blanks data (RFC 2045
    §6.7 rule 5); else a line starting with a space or a tab is a fold, the blank kept (§2.1.3:
    RFC 822 folding, where unfolding removes only the line break); a BASE64 value goes on
    with the lines that are base64 text, folded or not, until an empty line (§2.9)."""
    lines: list[list[str]] = []
    encoding: str | None = None  # of the last line, None while its head is unfinished
    for physical in re.split(r"\r?\n", text):
        current = lines[-1] if lines else None
        if current is not None and encoding == "QUOTED-PRINTABLE" and current[-1].endswith("="):
            current[-1] = current[-1][:-1]
            current.append(physical)
        elif current is not None and physical[:1] in (" ", "\t"):
            current.append(physical)
        elif (
            current is not None
            and encoding in ("BASE64", "B")
            and _BASE64_TEXT.fullmatch(physical.strip())
        ):
            current.append(physical.strip())
        else:
            lines.append([physical])
            encoding = None
        if encoding is None and ":" in physical:  # the head just ended: joined once
            encoding = _legacy_encoding("".join(lines[-1]).partition(":")[0])
    return ["".join(parts) for parts in lines]


def _legacy_text(raw: bytes, charset: str | None) -> str:
    """A 2.1 value's octets as text: in its CHARSET (§2.1.6's default is ASCII); without one,
    UTF-8 when they are UTF-8, else windows-1252 — a deliberate guess: it is what Windows
    writers that leave the CHARSET out use, and an octet it cannot read skips the card."""
    if charset is None:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            charset = "windows-1252"
    if not _CHARSET_NAME.fullmatch(charset):
        raise _BadCard(f"unknown CHARSET {charset[:40]!r}")
    try:
        return raw.decode(charset)
    except LookupError:
        raise _BadCard(f"unknown CHARSET {charset!r}") from None
    except ValueError:  # UnicodeError, or a codec's own complaint
        raise _BadCard(f"text that is not {charset!r}") from None


def _legacy_parameter(value: str) -> str:
    # RFC 2426 §4 (param-value): a value holding a separator is quoted; a DQUOTE cannot be.
    value = value.replace('"', "")
    return f'"{value}"' if _LEGACY_PARAMETER_SPECIALS.search(value) else value


def _legacy_line(logical: str) -> str:
    """One 2.1 content line as vCard 3.0 (RFC 2426): the value decoded (quoted-printable, its
    CHARSET) to text and escaped as 3.0 escapes it (RFC 2426 §4: backslash, comma, semicolon,
    newline; 2.1 escapes only a component's ``;``, §2.1.3, and its backslash is otherwise
    literal); bare parameters as ``TYPE=``, ENCODING and CHARSET dropped (a BASE64 value is
    ``ENCODING=b``, RFC 2426 §5.8.4), ``VALUE=URL`` as ``VALUE=uri``; the group kept."""
    head, colon, value = logical.partition(":")
    if not colon:
        raise _BadCard(f"not a content line: {logical[:40]!r}")
    if _SURROGATE.search(head):
        raise _BadCard("octets that are not UTF-8")  # names and parameters have no CHARSET
    name_part, *param_parts = head.split(";")
    match = _NAME.fullmatch(name_part.strip())
    if match is None:
        raise _BadCard(f"not a property name: {name_part[:40]!r}")
    name = match.group(1).upper()
    types: list[str] = []
    others: list[str] = []
    encoding, charset, value_type = "", None, ""
    for part in param_parts:
        key, eq, given = (p.strip() for p in part.partition("="))
        upper = key.upper()
        if not key:
            continue
        if (not eq and upper in _LEGACY_ENCODINGS) or upper == "ENCODING":
            encoding = (given if eq else key).upper()
        elif not eq or upper == "TYPE":
            types.extend(t.strip() for t in (given if eq else key).split(",") if t.strip())
        elif upper == "CHARSET":
            charset = given
        elif upper == "VALUE":
            value_type = given.upper()
        else:
            others.append(f"{key}={_legacy_parameter(given)}")
    # RFC 2426 §4: "TYPE=" type-val *("," type-val)
    params = [f"TYPE={','.join(_legacy_parameter(t) for t in types)}"] if types else []
    params += others
    if encoding in ("BASE64", "B"):
        data = "".join(value.split())
        try:
            binascii.a2b_base64(data, strict_mode=True)
        except ValueError:  # binascii.Error, or a character that is not ASCII
            raise _BadCard(f"{name}: not base64") from None
        return ";".join([match.group(0).strip(), *params, "ENCODING=b"]) + ":" + data
    if encoding not in ("", "QUOTED-PRINTABLE", "8BIT", "7BIT"):
        raise _BadCard(f"{name}: unknown ENCODING {encoding[:40]!r}")  # §2.1.5's are those
    octets = value.encode("utf-8", "surrogateescape")  # the file's own octets (see decode)
    if encoding == "QUOTED-PRINTABLE":
        text = _legacy_text(binascii.a2b_qp(octets), charset)
    elif value.isascii() or _SURROGATE.search(value):
        text = _legacy_text(octets, charset)
    else:
        # Octets that are UTF-8 (and not ASCII) are read as UTF-8 whatever the CHARSET
        # says: a writer labelling UTF-8 "ISO-8859-1" is met, other charsets' text is
        # hardly ever valid UTF-8, and the JSON API's file arrives as text already.
        text = value
    if value_type in ("URL", "CONTENT-ID", "CID"):
        # RFC 2426 §5.8.4: a URI value; a content id (§2.1.8) as RFC 2392's cid: URL.
        params.append("VALUE=uri")
        if value_type != "URL":
            text = "cid:" + text.strip().removeprefix("<").removesuffix(">")
    elif value_type and value_type != "INLINE":
        params.append(f"VALUE={_legacy_parameter(value_type.lower())}")
    if name == "GEO":
        text = text.replace(",", ";")  # §2.4.6 "37.24,-17.87"; RFC 2426 §3.4.2 "37.38;-122.08"
    if "\n" in text or "\r" in text or (name not in _LEGACY_VERBATIM and value_type != "URL"):
        if name in _LEGACY_TEXT:
            # "\;" is read as ";" in a text value too (a deliberate deviation: §2.1.3 escapes
            # only components): Android's writer escapes every ";" of a 2.1 value.
            text = escape(text.replace("\\;", ";"))
        else:
            components = re.split(r"(?<!\\);", text)
            text = ";".join(escape(c.replace("\\;", ";")) for c in components)
    return ";".join([match.group(0).strip(), *params]) + ":" + text


def _upgraded(received: str) -> str:
    """A 2.1 card (``received``, BEGIN to END) as the vCard 3.0 card that is kept instead:
    every property, each line as :func:`_legacy_line` writes it, folded (RFC 2426 §2.6),
    CRLF; the FN and N 3.0 requires (RFC 2426 §5) added when the card lacks one, as
    :func:`format_card` writes them."""
    raws = _raw_lines(received)
    inner = "".join(raw.text for raw in raws[1:-1])
    lines = [
        _legacy_line(line)
        for line in _legacy_lines(inner)
        if line.strip() and line.partition(":")[0].strip().upper() != "VERSION"
    ]
    parsed = [_content_line(line) for line in ["VERSION:3.0", *lines]]
    names = {line.name for line in parsed}
    contact = _card(parsed)
    added = [] if "FN" in names else [f"FN:{escape(contact.label)}"]
    if "N" not in names:
        added.append(f"N:{_structured_name(contact.display_name)}")
    return "".join(
        fold(line) for line in ["BEGIN:VCARD", "VERSION:3.0", *added, *lines, "END:VCARD"]
    )


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


def etag(contact: Contact) -> str:
    """A contact's strong ETag (RFC 9110 §8.8.3), new on every change: the digest of exactly
    what CardDAV serves, the kept card; for a contact without one, of its vCard 4.0 form (one
    ETag for both versions, so that a client asking 4.0 sees the ETag a PROPFIND lists). The
    store computes it on every write and keeps it beside the contact."""
    return data_etag((contact.card if contact.card is not None else format_card(contact)).encode())


def format_cards(contacts: list[Contact]) -> str:
    """A .vcf file of ``contacts``, one card after another (RFC 6350 §3.1): a kept card as
    it was received (ended by a line break if it had none), the others written."""
    cards = (c.card if c.card is not None else format_card(c) for c in contacts)
    return "".join(card if card.endswith("\n") else card + CRLF for card in cards)


# -- editing a kept card ---------------------------------------------------------------------------


def _match_key(name: str, value: str) -> str:
    """What makes two numbers the same one (runs of blanks aside) or two addresses (the
    domain's case aside: the local part's may matter, RFC 5321 §2.4, and an edit of it is
    written)."""
    value = " ".join(value.split())
    if name == "EMAIL":
        local, at, domain = value.rpartition("@")
        return f"{local}{at}{domain.lower()}"
    return value


#: RFC 3966 §3 ``global-number-digits``: "+", then digits and the visual separators "-", ".",
#: "(" and ")" — a number a ``tel:`` URI holds as written (a local number needs a
#: phone-context, which an edit does not give).
_TEL_GLOBAL_NUMBER = re.compile(r"\+[0-9().-]*[0-9][0-9().-]*")


class _Revision:
    """The kept card's lines, each kept as received (``text``), rewritten or dropped (""),
    and the lines to add before ``END:VCARD``."""

    def __init__(self, card: str) -> None:
        self.raws = _raw_lines(card)
        self.text = [raw.text for raw in self.raws]
        self.eol = "\n" if self.raws and not self.raws[0].text.endswith("\r\n") else CRLF
        self.parsed: list[_Line | None] = []
        for raw in self.raws:
            try:
                self.parsed.append(_content_line(raw.logical) if raw.logical.strip() else None)
            except _BadCard:
                self.parsed.append(None)
        self.end = max(
            (i for i, raw in enumerate(self.raws) if raw.logical.strip().upper() == "END:VCARD"),
            default=len(self.raws),
        )
        self.added: dict[int, list[str]] = {}

    def indexes(self, name: str) -> list[int]:
        return [
            i
            for i, line in enumerate(self.parsed)
            if line is not None and line.name == name and i < self.end
        ]

    def line(self, logical: str) -> str:
        """A new line, folded, ended as the card's own lines are."""
        return fold(logical).replace(CRLF, self.eol)

    def rewrite(self, index: int, value: str, *, drop: str = "") -> None:
        """Line ``index`` with a new value, its group and parameters kept (but a parameter
        ``drop``)."""
        head = _split_outside_quotes(self.raws[index].logical, ":")[0]
        if drop:
            name, *params = _split_outside_quotes(head, ";")
            kept = [p for p in params if p.partition("=")[0].strip().upper() != drop]
            head = ";".join([name, *kept])
        self.text[index] = self.line(f"{head}:{value}")

    def rewrite_tel(self, index: int, line: _Line, number: str) -> None:
        """A TEL line ``line`` holding ``number`` now, as the user typed it: a ``tel:`` URI
        still when it was one and the number can be one as typed, else text, the line's
        ``VALUE=uri`` dropped (RFC 6350 §6.4.1: TEL's value is text by default). Blanks are
        no URI's, and turning them into "-" changed the number the user sees."""
        if not any(v.lower() == "uri" for v in line.params.get("VALUE", [])):
            self.rewrite(index, escape(number))
        elif _TEL_GLOBAL_NUMBER.fullmatch(number):
            self.rewrite(index, "tel:" + number)
        else:
            self.rewrite(index, escape(number), drop="VALUE")

    def add(self, after: list[int], logical: str) -> None:
        """A new line after the last of ``after`` (the property's other lines), else at
        the end of the card."""
        self.added.setdefault(max(after, default=self.end - 1), []).append(self.line(logical))

    def single(self, name: str, value: str) -> None:
        """A property of one value: the first line rewritten (the others dropped), added
        when there is none, dropped when ``value`` is empty."""
        found = self.indexes(name)
        for index in found[1:]:
            self.text[index] = ""
        if not value:
            for index in found[:1]:
                self.text[index] = ""
        elif found:
            self.rewrite(found[0], value)
        else:
            self.add([], f"{name}:{value}")

    def several(self, name: str, values: tuple[str, ...]) -> None:
        """EMAIL or TEL: a line whose value is still there is kept as received; the values
        gone and the values new are paired in order, each new one written in the place (group
        and parameters: TYPE, PREF…) of the one it replaced; a new value left over is added
        after the property's last line, a line left over dropped."""
        lines = [(i, line) for i in self.indexes(name) if (line := self.parsed[i]) is not None]
        wanted = list(values)
        wanted_keys = [_match_key(name, v) for v in wanted]
        gone: list[tuple[int, _Line]] = []
        for index, line in lines:
            value = _phone(line) if name == "TEL" else unescape(line.value).strip()
            if not value:
                continue  # never read: left as received
            key = _match_key(name, value)
            if key in wanted_keys:
                del wanted[wanted_keys.index(key)]
                wanted_keys.remove(key)
            else:
                gone.append((index, line))
        for (index, line), value in zip(gone, wanted, strict=False):
            if name == "TEL":
                self.rewrite_tel(index, line, value)
            else:
                self.rewrite(index, escape(value))
        for index, _ in gone[len(wanted) :]:
            self.text[index] = ""
        for value in wanted[len(gone) :]:
            self.add(self.indexes(name), f"{name}:{escape(value)}")

    def card(self) -> str:
        return "".join(text + "".join(self.added.get(i, [])) for i, text in enumerate(self.text))


def content_text(card: str) -> str:
    """``card``'s content lines unfolded (§3.2), each without its line end and trailing
    blanks, blank lines dropped, joined with LF: one text for one card however it was folded
    and whatever its line ends (a file that went through a mail client or an editor)."""
    return "\n".join(line for raw in _raw_lines(card) if (line := raw.logical.rstrip()))


def with_uid(card: str, uid: str) -> str:
    """A kept card that has no UID with ``uid`` added (RFC 6352 §5.1: an address object
    resource's card has one; a CardDAV PUT without it takes its resource name)."""
    revision = _Revision(card)
    revision.add([], _uid_line(uid))
    return revision.card()


def revise(card: str, before: Contact, after: Contact) -> str:
    """A kept card (whose fields, as stored, are ``before``) edited in the webmail to
    ``after``: only the properties the webmail owns (FN, N, EMAIL, TEL, ORG, NOTE) that
    changed are rewritten; every other line — ADR, BDAY, PHOTO, X- properties, groups — and every
    unchanged line stays byte for byte as received. ``FN`` follows the label, ``N`` (when the
    card has one) is derived again from a changed name as :func:`format_card` derives it;
    EMAIL and TEL keep the lines of the values still there (see :meth:`_Revision.several`)."""
    revision = _Revision(card)
    if after.label != before.label:
        revision.single("FN", escape(after.label))
    if after.display_name != before.display_name:
        for index in revision.indexes("N")[:1]:
            revision.rewrite(index, _structured_name(after.display_name))
    if after.emails != before.emails:
        revision.several("EMAIL", after.emails)
    if after.phones != before.phones:
        revision.several("TEL", after.phones)
    if after.organization != before.organization:
        revision.single("ORG", escape(after.organization))
    if after.note != before.note:
        revision.single("NOTE", escape(after.note))
    return revision.card()
