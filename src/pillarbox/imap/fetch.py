"""FETCH attributes (RFC 9051 §6.4.5 and extensions): the model, macros, wire forms.

A FETCH names what to return; the macros ALL/FAST/FULL are expanded by the parser, so the
session only sees attributes. Section specifiers keep their header field names as written
because the response echoes them (RFC 9051 §7.5.2 ``BODY[section]<origin>``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from pillarbox.imap import strings


class FetchItem(enum.Enum):
    """The attributes without a section."""

    ENVELOPE = "ENVELOPE"
    FLAGS = "FLAGS"
    INTERNALDATE = "INTERNALDATE"
    RFC822_SIZE = "RFC822.SIZE"
    BODY = "BODY"  # the non-extensible BODYSTRUCTURE
    BODYSTRUCTURE = "BODYSTRUCTURE"
    UID = "UID"
    RFC822 = "RFC822"  # RFC 3501: BODY[] with \Seen
    RFC822_HEADER = "RFC822.HEADER"  # RFC 3501: BODY.PEEK[HEADER]
    RFC822_TEXT = "RFC822.TEXT"  # RFC 3501: BODY[TEXT] with \Seen
    MODSEQ = "MODSEQ"  # RFC 7162 §3.1.4.1
    EMAILID = "EMAILID"  # RFC 8474 §5.1
    THREADID = "THREADID"  # RFC 8474 §5.2
    SAVEDATE = "SAVEDATE"  # RFC 8514 §4.3


#: RFC 9051 §6.4.5 macros.
MACROS: Final = {
    "ALL": (FetchItem.FLAGS, FetchItem.INTERNALDATE, FetchItem.RFC822_SIZE, FetchItem.ENVELOPE),
    "FAST": (FetchItem.FLAGS, FetchItem.INTERNALDATE, FetchItem.RFC822_SIZE),
    "FULL": (
        FetchItem.FLAGS,
        FetchItem.INTERNALDATE,
        FetchItem.RFC822_SIZE,
        FetchItem.ENVELOPE,
        FetchItem.BODY,
    ),
}

#: section-msgtext / section-text keywords (RFC 9051 §9).
SECTION_TEXTS: Final = frozenset({"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"})


@dataclass(frozen=True, slots=True)
class Section:
    """``part`` is the section-part (``(1, 2)`` for ``1.2``; empty for the whole message),
    ``text`` one of :data:`SECTION_TEXTS` or None, ``fields`` the header-list when ``text`` is
    HEADER.FIELDS[.NOT]."""

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.text is not None and self.text not in SECTION_TEXTS:
            raise ValueError(f"unknown section text {self.text!r}")
        if self.text == "MIME" and not self.part:
            raise ValueError("MIME needs a part number (RFC 9051 §9 section-spec)")
        if (self.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT")) != bool(self.fields):
            raise ValueError("HEADER.FIELDS[.NOT] and a field list go together")
        if any(number < 1 for number in self.part):
            raise ValueError("part numbers are non-zero")

    def format(self) -> bytes:
        """The section-spec between the brackets, e.g. ``1.2.HEADER.FIELDS (DATE FROM)``."""
        out = b".".join(b"%d" % n for n in self.part)
        if self.text is not None:
            out += (b"." if out else b"") + self.text.encode("ascii")
        if self.fields:
            out += b" (" + b" ".join(strings.astring(f) for f in self.fields) + b")"
        return out


@dataclass(frozen=True, slots=True)
class BodySection:
    """``BODY[section]<offset.length>`` or ``BODY.PEEK[…]``; ``partial`` is (offset, length)."""

    section: Section
    peek: bool = False
    partial: tuple[int, int] | None = None

    def request(self) -> bytes:
        name = b"BODY.PEEK[" if self.peek else b"BODY["
        return name + self.section.format() + b"]" + _partial(self.partial)

    def label(self) -> bytes:
        """The response item name: no ``.PEEK``, the partial reduced to its origin."""
        origin = b"" if self.partial is None else b"<%d>" % self.partial[0]
        return b"BODY[" + self.section.format() + b"]" + origin


@dataclass(frozen=True, slots=True)
class BinarySection:
    """``BINARY[part]<offset.length>`` or ``BINARY.PEEK[…]`` (RFC 3516 §4.1, RFC 9051)."""

    part: tuple[int, ...] = ()
    peek: bool = False
    partial: tuple[int, int] | None = None

    def request(self) -> bytes:
        name = b"BINARY.PEEK[" if self.peek else b"BINARY["
        return name + _part(self.part) + b"]" + _partial(self.partial)

    def label(self) -> bytes:
        origin = b"" if self.partial is None else b"<%d>" % self.partial[0]
        return b"BINARY[" + _part(self.part) + b"]" + origin


@dataclass(frozen=True, slots=True)
class BinarySize:
    """``BINARY.SIZE[part]``: the decoded size of a part (RFC 3516 §4.1)."""

    part: tuple[int, ...] = ()

    def request(self) -> bytes:
        return self.label()

    def label(self) -> bytes:
        return b"BINARY.SIZE[" + _part(self.part) + b"]"


@dataclass(frozen=True, slots=True)
class Preview:
    """``PREVIEW`` or ``PREVIEW (LAZY)`` (RFC 8970 §3.1)."""

    lazy: bool = False

    def request(self) -> bytes:
        return b"PREVIEW (LAZY)" if self.lazy else b"PREVIEW"


FetchAtt = FetchItem | BodySection | BinarySection | BinarySize | Preview


def format_att(att: FetchAtt) -> bytes:
    if isinstance(att, FetchItem):
        return att.value.encode("ascii")
    return att.request()


def format_atts(atts: tuple[FetchAtt, ...]) -> bytes:
    """The FETCH argument: always parenthesised (which also fits a single attribute)."""
    return b"(" + b" ".join(format_att(att) for att in atts) + b")"


def sets_seen(att: FetchAtt) -> bool:
    """Whether fetching ``att`` sets \\Seen (RFC 9051 §6.4.5; RFC 3501 for RFC822/RFC822.TEXT)."""
    if isinstance(att, BodySection | BinarySection):
        return not att.peek
    return att in (FetchItem.RFC822, FetchItem.RFC822_TEXT)


def _part(part: tuple[int, ...]) -> bytes:
    return b".".join(b"%d" % n for n in part)


def _partial(partial: tuple[int, int] | None) -> bytes:
    return b"" if partial is None else b"<%d.%d>" % partial
