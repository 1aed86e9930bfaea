"""The SEARCH key tree (RFC 9051 §6.4.4, RFC 3501 §6.4.4 and extensions), and its wire form.

Keys are values, not strings: the search planner matches on the class. Several keywords share a
class when they test the same thing (SEEN/UNSEEN/KEYWORD x are :class:`FlagKey`; BEFORE/SENTON/
SAVEDSINCE are :class:`DateKey`), and :func:`format_key` writes the keyword the RFC has for it,
so ``parse(format(key)) == key``. A parenthesised list is :class:`And` exactly as written
(``(X)`` stays a one-element ``And``); a search program of several keys is an ``And`` too.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date
from typing import Final

from pillarbox.imap import strings
from pillarbox.imap.dates import format_date
from pillarbox.imap.sequence import SequenceSet


class DateField(enum.Enum):
    INTERNAL = ""  # BEFORE / ON / SINCE: the internal date (RFC 9051 §6.4.4)
    SENT = "SENT"  # SENTBEFORE / SENTON / SENTSINCE: the Date: header
    SAVED = "SAVED"  # SAVEDBEFORE / SAVEDON / SAVEDSINCE (RFC 8514 §4.2)


class DateOp(enum.Enum):
    BEFORE = "BEFORE"
    ON = "ON"
    SINCE = "SINCE"


@dataclass(frozen=True, slots=True)
class AllKey:
    """ALL."""


@dataclass(frozen=True, slots=True)
class FlagKey:
    """A flag test: SEEN is ``FlagKey("\\\\Seen")``, UNSEEN ``FlagKey("\\\\Seen", False)``,
    KEYWORD x ``FlagKey("x")``, RECENT/OLD ``FlagKey("\\\\Recent", …)`` (RFC 3501 only)."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class NewKey:
    """NEW (RFC 3501 §6.4.4): \\Recent and not \\Seen."""


@dataclass(frozen=True, slots=True)
class StringKey:
    """BCC/CC/FROM/SUBJECT/TO (the envelope field), BODY, TEXT: a substring test."""

    field: str  # one of STRING_FIELDS, uppercase
    value: str


@dataclass(frozen=True, slots=True)
class HeaderKey:
    """HEADER field-name string; an empty ``value`` matches every message with the field."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class DateKey:
    field: DateField
    op: DateOp
    day: date


@dataclass(frozen=True, slots=True)
class SizeKey:
    """LARGER n (``larger``) or SMALLER n: RFC822.SIZE strictly above / below ``size``."""

    larger: bool
    size: int


@dataclass(frozen=True, slots=True)
class SequenceKey:
    """A bare sequence set (message numbers) or ``UID sequence-set``; either may be ``$``."""

    sequence: SequenceSet
    uid: bool = False


@dataclass(frozen=True, slots=True)
class ModSeqKey:
    """MODSEQ [entry-name entry-type] n (RFC 7162 §3.1.5): messages with MODSEQ ≥ n.

    ``entry`` is the flag of ``"/flags/<flag>"`` and ``entry_type`` priv/shared/all, both kept
    for the round trip; servers without per-flag modseqs ignore them.
    """

    modseq: int
    entry: str | None = None
    entry_type: str | None = None


@dataclass(frozen=True, slots=True)
class WithinKey:
    """OLDER n / YOUNGER n (RFC 5032 §3): internal date more/less than n seconds before now."""

    older: bool
    seconds: int


@dataclass(frozen=True, slots=True)
class SaveDateSupportedKey:
    """SAVEDATESUPPORTED (RFC 8514 §4.2): all messages if the mailbox keeps save dates."""


@dataclass(frozen=True, slots=True)
class ObjectIdKey:
    """EMAILID x / THREADID x (RFC 8474 §6)."""

    thread: bool
    object_id: str


@dataclass(frozen=True, slots=True)
class Not:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class Or:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class And:
    """A parenthesised list, or a search program of several keys; never empty."""

    keys: tuple[SearchKey, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("an AND of no keys is not expressible in IMAP")


SearchKey = (
    AllKey
    | FlagKey
    | NewKey
    | StringKey
    | HeaderKey
    | DateKey
    | SizeKey
    | SequenceKey
    | ModSeqKey
    | WithinKey
    | SaveDateSupportedKey
    | ObjectIdKey
    | Not
    | Or
    | And
)

STRING_FIELDS: Final = frozenset({"BCC", "CC", "FROM", "SUBJECT", "TO", "BODY", "TEXT"})

#: Flag keywords with their own search keys (RFC 9051 §6.4.4, RFC 3501 for RECENT/OLD):
#: flag → (keyword when present, keyword when absent).
FLAG_KEYS: Final = {
    "\\Answered": ("ANSWERED", "UNANSWERED"),
    "\\Deleted": ("DELETED", "UNDELETED"),
    "\\Draft": ("DRAFT", "UNDRAFT"),
    "\\Flagged": ("FLAGGED", "UNFLAGGED"),
    "\\Seen": ("SEEN", "UNSEEN"),
    "\\Recent": ("RECENT", "OLD"),
}
#: keyword → (flag, present), the inverse of FLAG_KEYS.
FLAG_KEYWORDS: Final = {
    keyword: (flag, present)
    for flag, pair in FLAG_KEYS.items()
    for keyword, present in zip(pair, (True, False), strict=True)
}


def format_key(key: SearchKey, *, utf8: bool = False, charset: str = "utf-8") -> bytes:
    """The wire form of one search key; strings are encoded in ``charset`` (the command's
    CHARSET, a Python codec name) and sent quoted or as literals as needed."""

    def text(value: str) -> bytes:
        return strings.astring(value.encode(charset), utf8=utf8)

    def sub(inner: SearchKey) -> bytes:
        return format_key(inner, utf8=utf8, charset=charset)

    match key:
        case AllKey():
            return b"ALL"
        case FlagKey(flag=flag, present=present):
            pair = FLAG_KEYS.get(flag)
            if pair is not None:
                return (pair[0] if present else pair[1]).encode("ascii")
            return (b"KEYWORD " if present else b"UNKEYWORD ") + flag.encode("ascii")
        case NewKey():
            return b"NEW"
        case StringKey(field=field, value=value):
            return field.encode("ascii") + b" " + text(value)
        case HeaderKey(name=name, value=value):
            return b"HEADER " + strings.astring(name.encode("ascii")) + b" " + text(value)
        case DateKey(field=field, op=op, day=day):
            return (field.value + op.value).encode("ascii") + b" " + format_date(day)
        case SizeKey(larger=larger, size=size):
            return b"%s %d" % (b"LARGER" if larger else b"SMALLER", size)
        case SequenceKey(sequence=sequence, uid=uid):
            return (b"UID " if uid else b"") + sequence.format()
        case ModSeqKey(modseq=modseq, entry=entry, entry_type=entry_type):
            if entry is None or entry_type is None:
                return b"MODSEQ %d" % modseq
            entry_name = strings.quoted(b"/flags/" + entry.encode("ascii"))
            return b"MODSEQ %s %s %d" % (entry_name, entry_type.encode("ascii"), modseq)
        case WithinKey(older=older, seconds=seconds):
            return b"%s %d" % (b"OLDER" if older else b"YOUNGER", seconds)
        case SaveDateSupportedKey():
            return b"SAVEDATESUPPORTED"
        case ObjectIdKey(thread=thread, object_id=object_id):
            return (b"THREADID " if thread else b"EMAILID ") + object_id.encode("ascii")
        case Not(key=inner):
            return b"NOT " + sub(inner)
        case Or(left=left, right=right):
            return b"OR " + sub(left) + b" " + sub(right)
        case And(keys=keys):
            return b"(" + b" ".join(sub(k) for k in keys) + b")"


def format_program(key: SearchKey, *, utf8: bool = False, charset: str = "utf-8") -> bytes:
    """A whole search program: a top-level ``And`` of two or more keys loses its parentheses."""
    if isinstance(key, And) and len(key.keys) > 1:
        return b" ".join(format_key(k, utf8=utf8, charset=charset) for k in key.keys)
    return format_key(key, utf8=utf8, charset=charset)
