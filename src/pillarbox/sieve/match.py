"""String comparison (RFC 5228 §2.7): match types, comparators (RFC 4790 §9), the
relational extension (RFC 5231) and :regex (draft-ietf-sieve-regex-01, :mod:`.regex`).

``i;ascii-casemap`` folds only A–Z (RFC 4790 §9.2), which is what ``re.ASCII | re.IGNORECASE``
does for :matches patterns. ``i;octet`` compares code points, whose order is the order of
their UTF-8 octets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from pillarbox.sieve import regex
from pillarbox.sieve.errors import SieveRuntimeError
from pillarbox.sieve.program import Match

_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_DIGITS = re.compile(r"[0-9]+")


def fold(text: str) -> str:
    return text.translate(_FOLD)


@dataclass(frozen=True, slots=True)
class _Glob:
    """A :matches pattern cut at its stars: fixed-length pieces (literals and ``?``)."""

    pieces: tuple[re.Pattern[str], ...]
    lengths: tuple[int, ...]
    starred: bool
    #: Where each piece's ``?`` wildcards are, as offsets into the piece (RFC 5229 §3.2).
    singles: tuple[tuple[int, ...], ...]


@lru_cache(maxsize=1024)
def _glob(pattern: str, casemap: bool) -> _Glob:
    """RFC 5228 §2.7.1 wildcards: ``*`` any sequence, ``?`` one character, ``\\`` quotes the
    next character."""
    pieces: list[list[str]] = [[]]
    lengths = [0]
    singles: list[list[int]] = [[]]
    escaped = False
    for c in pattern:
        if escaped or c not in "\\*?":
            pieces[-1].append(re.escape(c))
            lengths[-1] += 1
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == "?":
            pieces[-1].append(".")
            singles[-1].append(lengths[-1])
            lengths[-1] += 1
        else:
            pieces.append([])
            lengths.append(0)
            singles.append([])
    flags = re.DOTALL | (re.ASCII | re.IGNORECASE if casemap else 0)
    compiled = tuple(re.compile("".join(p), flags) for p in pieces)
    return _Glob(compiled, tuple(lengths), len(pieces) > 1, tuple(tuple(s) for s in singles))


def _placed(glob: _Glob, value: str) -> list[int] | None:
    """Where each piece of ``glob`` starts in ``value``, or None if it does not match — in time
    linear in the value per piece: the first piece is anchored at the start, the last at the
    end, and each one between taken at its leftmost place (which is always right when stars
    separate them), so no input can make it backtrack the way a regular expression with many
    ``.*`` does. Leftmost places make every star but the last match as little as it can, which
    is what RFC 5229 §3.2's examples capture ("[*] *" on "[a] [b] c": "a", "[b] c")."""
    pieces, lengths = glob.pieces, glob.lengths
    if not glob.starred:
        return [0] if pieces[0].fullmatch(value) is not None else None
    end = len(value) - lengths[-1]
    if end < lengths[0] or pieces[0].match(value, 0) is None:
        return None
    starts = [0]
    pos = lengths[0]
    for piece, length in zip(pieces[1:-1], lengths[1:-1], strict=True):
        if length == 0:
            starts.append(pos)
            continue
        found = piece.search(value, pos, end)
        if found is None:
            return None
        starts.append(found.start())
        pos = found.end()
    if pieces[-1].fullmatch(value, end) is None:
        return None
    starts.append(end)
    return starts


def glob_matches(pattern: str, value: str, casemap: bool) -> bool:
    """Whether ``value`` matches the :matches ``pattern`` (see :func:`_placed`)."""
    return _placed(_glob(pattern, casemap), value) is not None


def glob_captures(pattern: str, value: str, casemap: bool) -> tuple[str, ...] | None:
    """RFC 5229 §3.2 match variables of ``value`` against the :matches ``pattern``: the whole
    value (``${0}``), then what each wildcard (``*`` or ``?``) matched, in pattern order; None
    if it does not match."""
    glob = _glob(pattern, casemap)
    starts = _placed(glob, value)
    if starts is None:
        return None
    out = [value]
    last = len(glob.pieces) - 1
    for index, (start, length, singles) in enumerate(
        zip(starts, glob.lengths, glob.singles, strict=True)
    ):
        out.extend(value[start + offset] for offset in singles)
        if index < last:
            out.append(value[start + length : starts[index + 1]])
    return tuple(out)


def _numeric(text: str) -> float:
    """RFC 4790 §9.1.1: the value of the leading digits; none is positive infinity."""
    m = _DIGITS.match(text)
    return float("inf") if m is None else int(m.group())


def _ordered(comparator: str, value: str, key: str) -> int:
    """-1, 0 or 1 as ``value`` sorts before, equal to or after ``key``."""
    a: float | str
    b: float | str
    if comparator == "i;ascii-numeric":
        a, b = _numeric(value), _numeric(key)
    elif comparator == "i;ascii-casemap":
        a, b = fold(value), fold(key)
    else:
        a, b = value, key
    return (a > b) - (a < b)  # type: ignore[operator]


_RELATIONS = {
    "gt": lambda c: c > 0,
    "ge": lambda c: c >= 0,
    "lt": lambda c: c < 0,
    "le": lambda c: c <= 0,
    "eq": lambda c: c == 0,
    "ne": lambda c: c != 0,
}


def regex_captures(
    match: Match, value: str, key: str, limits: regex.RegexLimits
) -> tuple[str, ...] | None:
    """The match variables of :regex ``key`` in ``value``, None if it does not match. A key
    that is not a valid pattern can only be made of variables (constants are checked at
    compile time): a runtime error."""
    try:
        return regex.search(key, value, match.comparator == "i;ascii-casemap", limits)
    except regex.RegexError as exc:
        raise SieveRuntimeError(f":regex {key!r}: {exc}") from None


def matches_one(match: Match, value: str, key: str, limits: regex.RegexLimits) -> bool:
    """Whether one ``value`` matches one ``key`` (any match type but :count); ``limits``
    bound a :regex pattern."""
    comparator = match.comparator
    kind = match.kind
    if kind == "regex":
        return regex_captures(match, value, key, limits) is not None
    if kind == "is":
        if comparator == "i;ascii-numeric":
            return _numeric(value) == _numeric(key)
        if comparator == "i;ascii-casemap":
            return fold(value) == fold(key)
        return value == key
    if kind == "contains":
        if comparator == "i;ascii-casemap":
            return fold(key) in fold(value)
        return key in value
    if kind == "matches":
        return glob_matches(key, value, comparator == "i;ascii-casemap")
    assert kind == "value"
    return bool(_RELATIONS[match.relation](_ordered(comparator, value, key)))


def first_captures(
    match: Match, values: Iterable[str], keys: Iterable[str], limits: regex.RegexLimits
) -> tuple[str, ...] | None:
    """The match variables of the first value (then key) that a :matches or :regex ``match``
    matches (RFC 5229 §3.2, draft-ietf-sieve-regex-01), in the order :func:`matches_any`
    tries them; None if none does."""
    keys = tuple(keys)
    casemap = match.comparator == "i;ascii-casemap"
    for value in values:
        for key in keys:
            if match.kind == "regex":
                found = regex_captures(match, value, key, limits)
            else:
                found = glob_captures(key, value, casemap)
            if found is not None:
                return found
    return None


def matches_any(
    match: Match, values: Iterable[str], keys: Iterable[str], limits: regex.RegexLimits
) -> bool:
    """RFC 5228 §2.7: true if any value matches any key; for RFC 5231 :count, the number of
    values compared (as a number in text) against each key."""
    keys = tuple(keys)
    if match.kind == "count":
        count = str(sum(1 for _ in values))
        return any(_RELATIONS[match.relation](_ordered(match.comparator, count, k)) for k in keys)
    return any(matches_one(match, v, k, limits) for v in values for k in keys)
