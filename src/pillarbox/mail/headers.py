"""RFC 5322 header blocks on bytes: field scanning with offsets, addresses, MIME parameters.

Implementation notes:

- A header block is scanned line by line on the raw bytes, so every field knows its exact span
  (``BODY[HEADER.FIELDS]`` is a concatenation of spans). Lines end at LF; a CR before it is part
  of the line ending; bare LF endings are accepted (RFC 5322 §2.1 wants CRLF, mbox files and
  some APPENDs don't have it).
- The header ends at the first empty line (RFC 5322 §2.1), at the end of the region, or — a
  defect — at the first line that is neither a field nor a continuation (RFC 5322 §2.2): that
  line then starts the body, the way Python's ``email`` and most MUAs read it.
- Field values stay bytes here. RFC 6532 allows UTF-8 in them; whatever 8-bit garbage they
  hold is kept as ``surrogateescape`` text in the model, so raw values survive storage intact.
- The address parser works on tokens (RFC 5322 §3.2, §3.4) and never fails: whatever it cannot
  read becomes the Dovecot placeholders ``MISSING_MAILBOX`` / ``MISSING_DOMAIN`` plus a defect.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import quote_from_bytes

from pillarbox.mail.model import EnvelopeAddress, Params

MISSING_MAILBOX = "MISSING_MAILBOX"
MISSING_DOMAIN = "MISSING_DOMAIN"

# RFC 5322 §3.6.8 ftext is %d33-57 / %d59-126; obs-optional (§4.5.8) allows WSP before ":".
# One match is a whole field: its first line and every folded continuation line (§2.2.3).
_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)\n?")


_WSP = frozenset(b" \t")


class HeaderField(NamedTuple):
    """One field: ``raw[start:end]`` is the whole field including folding and its line ending.

    A named tuple rather than a dataclass: a message has dozens and they are built per parse.
    """

    name: str
    #: The lower-case name fields are matched by (field names are case-insensitive).
    key: str
    #: The value as sent: folded, without the final line ending.
    value: bytes
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class HeaderBlock:
    """A scanned header: its fields and where the body starts (after the empty line, if any)."""

    fields: tuple[HeaderField, ...]
    body_start: int
    defects: tuple[str, ...] = ()


_HEADER_END = re.compile(rb"(?:^|\n)(\r?\n)")


@dataclass(frozen=True, slots=True)
class ScannedFields:
    """The fields :func:`scan_header` read of a message's header (from its first byte) with
    ``max_fields``, kept by the parse for whoever reads the same header again with a limit of
    its own (the policy's tokens and header facts): :func:`header_fields`."""

    fields: tuple[HeaderField, ...]
    max_fields: int | None

    def upto(self, max_fields: int) -> tuple[HeaderField, ...] | None:
        """What a scan of the same header with ``max_fields`` reads, or None when this scan
        stopped short of it. A scan reads field by field, so its first n fields depend
        neither on its limit nor on how far past the header's end its span reaches."""
        if self.max_fields is None or max_fields <= self.max_fields:
            return self.fields[:max_fields]
        return self.fields if len(self.fields) < self.max_fields else None


def header_fields(
    raw: bytes, end: int, max_fields: int, scanned: ScannedFields | None = None
) -> tuple[HeaderField, ...]:
    """``scan_header(raw, 0, end, max_fields=max_fields).fields``, ``end`` being the end of
    the header block; from ``scanned`` (the parse's read of that header) when it reaches."""
    kept = None if scanned is None else scanned.upto(max_fields)
    return kept if kept is not None else scan_header(raw, 0, end, max_fields=max_fields).fields


def scan_header(raw: bytes, start: int, end: int, *, max_fields: int | None = None) -> HeaderBlock:
    """Scan the header block at ``raw[start:end]``; linear in its size, never raises.

    Past ``max_fields`` fields the rest of the header is only searched for its end (the
    empty line), not read: a hostile header cannot make a million field records.
    """
    fields = _leading_fields(raw, start, end, end if max_fields is None else max_fields)
    defects: list[str] = []
    match = _FIELD.match
    pos = fields[-1].end if fields else start
    while pos < end:
        if max_fields is not None and len(fields) >= max_fields:
            defects.append(f"more than {max_fields} header fields; rest not read")
            blank = _HEADER_END.search(raw, pos - 1, end)
            body_start = end if blank is None else blank.end()
            return HeaderBlock(tuple(fields), body_start, tuple(defects))
        first = raw[pos]
        if first == 0x0A or (first == 0x0D and (pos + 1 == end or raw[pos + 1] == 0x0A)):
            body_start = min(end, pos + (1 if first == 0x0A else 2))
            return HeaderBlock(tuple(fields), body_start, tuple(defects))
        if first in _WSP:
            # RFC 5322 §2.2.3: folding needs a field to continue; the line is ignored.
            defects.append("header continuation line without a field")
            newline = raw.find(b"\n", pos, end)
            pos = end if newline < 0 else newline + 1
            continue
        m = match(raw, pos, end)
        if m is None:
            defects.append("missing header/body separator")
            return HeaderBlock(tuple(fields), pos, tuple(defects))
        name, value = m.group(1, 2)
        fields.append(_field(name, value, pos, m.end()))
        pos = m.end()
    return HeaderBlock(tuple(fields), end, tuple(defects))


# ``_FIELD`` with the whole field captured as well, so that ``findall`` can read a header.
_FIELDS = re.compile(b"(" + _FIELD.pattern + b")")
_EMPTY_LINE = re.compile(rb"\n\r?\n")
#: Headers up to this size are read with one ``findall`` (bounding the list it builds).
_LEADING_FIELDS_BYTES = 64 * 1024


def _leading_fields(raw: bytes, start: int, end: int, limit: int) -> list[HeaderField]:
    """The fields of ``raw[start:end]`` up to its first empty line when they follow each other
    without a gap (every well-formed header), read by one ``findall``; else none, and
    :func:`scan_header` reads the header field by field, defects and all."""
    if raw.startswith(b"\n", start) or raw.startswith(b"\r\n", start):
        return []  # the empty line comes first
    empty = _EMPTY_LINE.search(raw, start, end)
    stop = end if empty is None else empty.start() + 1
    if stop - start > _LEADING_FIELDS_BYTES:
        return []
    matches = _FIELDS.findall(raw, start, stop)
    if len(matches) > limit:
        return []
    fields: list[HeaderField] = []
    append = fields.append
    pos = start
    for whole, name, value in matches:
        text = name.decode("ascii")
        if value[-1:] == b"\r":
            value = value[:-1]
        end_of_field = pos + len(whole)
        append(_new_field(HeaderField, (text, text.lower(), value, pos, end_of_field)))
        pos = end_of_field
    # ``findall`` skips what does not match: only a gapless run covers the span exactly.
    return fields if pos == stop else []


def _field(name: bytes, value: bytes, start: int, end: int) -> HeaderField:
    text = name.decode("ascii")
    if value[-1:] == b"\r":
        value = value[:-1]  # the CR of the line ending
    return HeaderField(text, text.lower(), value, start, end)


# Skips the named tuple's Python-level __new__ where a header is read in bulk.
_new_field = tuple.__new__


def unfold(value: bytes) -> bytes:
    """RFC 5322 §2.2.3 unfolding: remove the line breaks of folded lines."""
    # ``find``, not ``in``: CPython's ``bytes in bytes`` first tries the operand as an
    # integer, making and clearing a TypeError (~2k instructions); this runs per field.
    if value.find(b"\n") < 0:
        return value
    return value.replace(b"\r\n", b"").replace(b"\n", b"")


def raw_text(value: bytes) -> str:
    """An unfolded field value as kept raw in the model: trimmed, ``surrogateescape`` text."""
    return unfold(value).decode("utf-8", "surrogateescape").strip(" \t")


# -- RFC 5322 §3.2 tokens, for addresses and message ids ---------------------------------------

# A token is (kind, text, whitespace before it). ``kind`` is "atom", "quoted" (text unquoted),
# "comment" (text without parentheses), "literal" ("[…]"), or the special character itself.
_Token = tuple[str, str, bool]
# Atoms include "." (RFC 5322 dot-atom, and obs-phrase allows "." in names), so "." never
# needs to be a token of its own. A domain literal (RFC 5322 §3.4.1) left open ends before
# an angle bracket: "<1[@x> <a@b>" holds two ids, as the quick reading of ids finds.
_TOKEN = re.compile(
    r'([ \t\r\n]+)|"([^"\\]*(?:\\.[^"\\]*)*)"?|(\[[^\]<>]*\]?)|([<>,:;@])'
    r'|([^ \t\r\n"()<>\[\],:;@]+)|(\()|(.)',
    re.S,
)
_ESCAPE = re.compile(r"\\(.)", re.S)


def _unescape(text: str) -> str:
    return _ESCAPE.sub(r"\1", text) if "\\" in text else text


def _comment_end(text: str, pos: int) -> int:
    """Index after the (possibly nested) comment opening at ``text[pos]``, or ``len(text)``."""
    depth = 0
    n = len(text)
    while pos < n:
        c = text[pos]
        if c == "\\":
            pos += 2
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return pos + 1
        pos += 1
    return n


def _tokens(text: str) -> Iterator[_Token]:
    """RFC 5322 §3.2 lexical tokens, lazily; a stray character (")") is read as an atom."""
    match = _TOKEN.match
    pos, n, space = 0, len(text), False
    while pos < n:
        m = match(text, pos)
        assert m is not None  # the last alternative matches any character
        group = m.lastindex
        if group == 1:
            space = True
        elif group == 6:
            end = _comment_end(text, pos)
            yield "comment", _unescape(text[pos + 1 : end - 1]), space
            pos, space = end, True
            continue
        else:
            if group == 2:
                yield "quoted", _unescape(m.group(2)), space
            elif group == 4:
                yield m.group(4), m.group(4), space
            else:
                yield ("literal" if group == 3 else "atom"), m.group(), space
            space = False
        pos = m.end()


def _phrase(tokens: Iterable[_Token]) -> str:
    """Words joined as written, one space where there was whitespace (a display name)."""
    out: list[str] = []
    for kind, text, space in tokens:
        if kind != "comment":
            if out and space:
                out.append(" ")
            out.append(text)
    return "".join(out)


def _concat(tokens: Iterable[_Token]) -> str:
    """Words joined without whitespace: RFC 5322 §4.4 allows CFWS around the "." of obsolete
    local parts and domains, which is not part of the address."""
    return "".join(text for kind, text, _ in tokens if kind != "comment")


_SEPARATORS = frozenset(",;:")


def _index(tokens: list[_Token], kind: str, start: int = 0) -> int | None:
    for i in range(start, len(tokens)):
        if tokens[i][0] == kind:
            return i
    return None


class _AddressParser:
    """RFC 5322 §3.4 address-list → ENVELOPE address structures (RFC 9051 §7.5.2)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.out: list[EnvelopeAddress] = []
        self.defects: list[str] = []

    def parse(self, text: str) -> None:
        current: list[_Token] = []
        angle = 0
        in_group = False
        for tok in _tokens(text):
            if len(self.out) >= self.limit:
                self.defects.append(f"more than {self.limit} addresses; rest ignored")
                current = []
                break
            kind = tok[0]
            if angle == 0 and kind in _SEPARATORS:
                if kind == "," or (kind == ";" and not in_group):
                    self.mailbox(current)
                    current = []
                    continue
                if kind == ":" and not in_group:
                    # RFC 5322 §3.4 group: display-name ":" [group-list] ";"
                    self.out.append(EnvelopeAddress(None, None, _phrase(current), None))
                    current, in_group = [], True
                    continue
                if kind == ";":
                    self.mailbox(current)
                    self.out.append(EnvelopeAddress(None, None, None, None))
                    current, in_group = [], False
                    continue
            if kind == "<":
                angle += 1
            elif kind == ">" and angle:
                angle -= 1
            current.append(tok)
        self.mailbox(current)
        if in_group:
            self.defects.append("unterminated address group")
            self.out.append(EnvelopeAddress(None, None, None, None))

    def mailbox(self, tokens: list[_Token]) -> None:
        if all(kind == "comment" for kind, _, _ in tokens):
            return
        opening = _index(tokens, "<")
        if opening is None:
            # addr-spec alone; an RFC 822 trailing comment is the name, as c-client reads it.
            comments = [text.strip() for kind, text, _ in tokens if kind == "comment"]
            self.address(comments[-1] if comments and comments[-1] else None, None, tokens)
            return
        closing = _index(tokens, ">", opening + 1)
        inner = tokens[opening + 1 : closing]
        route: str | None = None
        if inner and inner[0][0] == "@":
            # RFC 5322 §4.4 obs-route: "@a,@b:" before the addr-spec.
            colon = _index(inner, ":")
            if colon is not None:
                route = _concat(inner[:colon])
                inner = inner[colon + 1 :]
        phrase = _phrase(tokens[:opening])
        if not inner:
            self.out.append(EnvelopeAddress(phrase or None, route, "", ""))
            return
        self.address(phrase or None, route, inner)

    def address(self, name: str | None, route: str | None, spec: list[_Token]) -> None:
        words = [t for t in spec if t[0] != "comment" and t[0] != ">"]
        at = None
        for i, t in enumerate(words):
            if t[0] == "@":
                at = i
        if at is None:
            local, host = _phrase(words), ""
        else:
            local, host = _concat(words[:at]), _concat(words[at + 1 :])
        if not local:
            self.defects.append("address without local part")
            local = MISSING_MAILBOX
        if not host:
            self.defects.append("address without domain")
            host = MISSING_DOMAIN
        self.out.append(EnvelopeAddress(name, route, local, host))


# The common well-formed mailbox shapes — ``local@domain``, ``Name <local@domain>``,
# ``"Name" <local@domain>`` — read by one regex; anything else takes the token parser, which
# gives the same result for these shapes (a property test holds the two together).
_WORD = r'[^ \t"(),:;<>@\[\]\\]+'
_SIMPLE_MAILBOX = re.compile(
    rf'[ \t]*(?:(?:"([^"\\]*)"[ \t]*|([^"(),:;<>@\[\]\\]*))<({_WORD})@({_WORD})>'
    rf"|({_WORD})@({_WORD}))[ \t]*(?:,|\Z)"
)


_BLANKS = re.compile(r"[ \t]+")


def _simple_addresses(text: str, limit: int) -> tuple[EnvelopeAddress, ...] | None:
    out: list[EnvelopeAddress] = []
    match = _SIMPLE_MAILBOX.match
    pos, n = 0, len(text)
    while pos < n and len(out) < limit:
        m = match(text, pos)
        if m is None:
            return None
        quoted, plain, local, domain, bare_local, bare_domain = m.groups()
        if local is None:
            out.append(EnvelopeAddress(None, None, bare_local, bare_domain))
        else:
            if quoted is not None:
                name = quoted
            elif "\t" in plain or "  " in plain:
                name = _BLANKS.sub(" ", plain).strip(" ")
            else:
                name = plain.strip(" ")
            out.append(EnvelopeAddress(name or None, None, local, domain))
        pos = m.end()
    return tuple(out)


def parse_addresses(
    text: str, *, limit: int = 1000
) -> tuple[tuple[EnvelopeAddress, ...], tuple[str, ...]]:
    """Parse an address-list header value (unfolded text) into ENVELOPE addresses and defects.

    Names and mailboxes are kept raw (encoded words intact, RFC 9051 §7.5.2) with quoting
    removed; group start and end markers follow RFC 9051 §7.5.2. At most ``limit`` entries
    are read (plus a closing group marker), so a hostile header cannot bloat the metadata.
    """
    simple = _simple_addresses(text, limit)
    if simple is not None:
        return simple, () if len(simple) < limit else (f"more than {limit} addresses",)
    parser = _AddressParser(limit)
    parser.parse(text)
    return tuple(parser.out), tuple(parser.defects)


_SIMPLE_IDS = re.compile(r"<([^<>]*)>")


def parse_msg_ids(text: str, *, limit: int = 1000) -> tuple[str, ...]:
    """The msg-ids of a Message-ID/In-Reply-To/References value (RFC 5322 §3.6.4), without
    angle brackets (as JMAP, RFC 8621 §4.1.3, presents them), at most ``limit`` of them. A
    bare id without brackets is accepted when nothing else is there."""
    ids: list[str] = []
    if "(" not in text and '"' not in text and "<" in text:
        for found in _SIMPLE_IDS.findall(text):
            ident = _BLANKS.sub("", found) if " " in found or "\t" in found else found
            if ident:
                ids.append(ident)
                if len(ids) >= limit:
                    break
        return tuple(ids)
    words: list[str] = []
    spaced = False
    inside: list[str] | None = None
    for kind, word, space in _tokens(text):
        if kind == "<":
            inside = []
        elif kind == ">" and inside is not None:
            if inside:
                ids.append("".join(inside))
                if len(ids) >= limit:
                    break
            inside = None
        elif kind != "comment" and inside is not None:
            inside.append(word)
        elif kind != "comment":
            spaced = spaced or (space and bool(words))
            words.append(word)
    bare = "".join(words)
    if not ids and bare and not spaced and "<" not in bare and ">" not in bare:
        # Only an id without brackets (found by fuzz/thread_keys.py: '"<c@x>', a quote
        # left open, was kept as "<c@x>", and a reply's In-Reply-To, written <c@x>, read
        # back as another id: the reply left the thread).
        ids.append(bare)
    return tuple(ids)


def parse_date(text: str) -> datetime | None:
    """An aware datetime for an RFC 5322 §3.3 date (obsolete zones included), or None.

    ``-0000`` (RFC 5322 §3.3: "no information about the local time zone") is read as UTC.
    """
    try:
        canonical = _CANONICAL_DATE.fullmatch(text)
        value = parsedate_to_datetime(text) if canonical is None else _canonical_date(canonical)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# RFC 5322 §3.3 date-time as nearly every mailer writes it, read without the general parser
# (which splits and re-tries every token); the result is the one the general parser gives.
_CANONICAL_DATE = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?([0-9]{1,2}) "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ([1-9][0-9]{3}) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-][0-9]{4})"
)
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


def _canonical_date(m: re.Match[str]) -> datetime:
    day, month, year, hour, minute, second, zone = m.groups()
    return datetime(
        int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second), 0, _zone(zone)
    )


@lru_cache(maxsize=64)
def _zone(zone: str) -> timezone | None:
    """``+hhmm``/``-hhmm`` as a tzinfo; None for ``-0000`` (RFC 5322 §3.3: no information)."""
    offset = int(zone[1:3]) * 3600 + int(zone[3:5]) * 60
    if zone[0] == "-":
        if not offset:
            return None
        offset = -offset
    return timezone(timedelta(seconds=offset))


# -- RFC 2045 §5.1 / RFC 2183 §2 content headers with RFC 2231 parameters -----------------------

_MEDIA = re.compile(r"\s*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)\s*(?:/\s*([!#$%&'*+\-.^_`|~0-9A-Za-z]+))?")
_PARAM_NAME = re.compile(r"\s*([^=;\s]+)\s*")
_QUOTED_VALUE = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"?', re.S)
_CONTINUATION = re.compile(r"(.+?)\*(\d{1,4})?(\*)?")
# RFC 2231 §7 attribute-char, kept unencoded when a plain section joins an extended value.
_ATTRIBUTE_SAFE = "!#$&+-.^_`|~"


def parse_content_header(text: str) -> tuple[str, str | None, Params] | None:
    """Split ``type/subtype; params`` (or a disposition ``kind; params``) into lower-case
    type, subtype (None if absent) and merged parameters; None if no type token is there."""
    media = _MEDIA.match(text)
    if media is None:
        return None
    subtype = media.group(2)
    return (
        media.group(1).lower(),
        subtype.lower() if subtype else None,
        merge_rfc2231(_raw_params(text, media.end())),
    )


def _raw_params(text: str, pos: int) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    n = len(text)
    while pos < n:
        if text[pos] in "; \t":
            pos += 1
            continue
        name = _PARAM_NAME.match(text, pos)
        if name is None or name.end() >= n or text[name.end()] != "=":
            semicolon = text.find(";", pos)
            pos = n if semicolon < 0 else semicolon + 1
            continue
        pos = name.end() + 1
        while pos < n and text[pos] in " \t":
            pos += 1
        if pos < n and text[pos] == '"':
            quoted = _QUOTED_VALUE.match(text, pos)
            assert quoted is not None  # a '"' always starts a (maybe unterminated) match
            value = _ESCAPE.sub(r"\1", quoted.group(1))
            pos = quoted.end()
        else:
            # Lenient: an unquoted value runs to ";" (spaces in file names are common).
            semicolon = text.find(";", pos)
            end = n if semicolon < 0 else semicolon
            value = text[pos:end].strip()
            pos = end
        params.append((name.group(1).lower(), value))
    return params


def merge_rfc2231(params: list[tuple[str, str]]) -> Params:
    """Join RFC 2231 §3 continuations into one parameter each, the way Dovecot presents them.

    ``name*0``, ``name*1``… become ``name``; if any section is extended (§4), the result is one
    ``name*`` whose value stays ``charset'lang'%XX…`` with plain sections percent-encoded, so the
    IMAP client still gets well-formed RFC 2231. Other parameters keep their first occurrence.
    """
    plain: dict[str, str] = {}
    for name, value in params:
        if "*" in name:
            break
        plain.setdefault(name, value)
    else:
        return tuple(plain.items())  # no RFC 2231 name: nothing to join (the common case)
    slots: list[tuple[str, str] | str] = []  # a finished parameter, or a base to join
    sections: dict[str, dict[int, tuple[str, bool]]] = {}
    for name, value in params:
        cont = _CONTINUATION.fullmatch(name)
        if cont is None or cont.group(2) is None:
            slots.append((name, value))  # plain, or "name*": a single extended value
            continue
        base = cont.group(1)
        if base not in sections:
            sections[base] = {}
            slots.append(base)
        sections[base].setdefault(int(cont.group(2)), (value, cont.group(3) is not None))
    merged: dict[str, str] = {}
    for slot in slots:
        key, value = slot if isinstance(slot, tuple) else _joined(slot, sections[slot])
        merged.setdefault(key, value)
    return tuple(merged.items())


def _joined(base: str, parts: dict[int, tuple[str, bool]]) -> tuple[str, str]:
    ordered = [parts[i] for i in sorted(parts)]
    if not any(extended for _, extended in ordered):
        return base, "".join(value for value, _ in ordered)
    pieces = [] if ordered[0][1] else ["''"]
    for value, extended in ordered:
        raw = value.encode("utf-8", "surrogateescape")
        pieces.append(value if extended else quote_from_bytes(raw, safe=_ATTRIBUTE_SAFE))
    return base + "*", "".join(pieces)


def param(params: Params, name: str) -> str | None:
    """The raw value of parameter ``name`` (lower case), or None."""
    for key, value in params:
        if key == name:
            return value
    return None
