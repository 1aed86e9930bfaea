"""The "regex" extension (draft-ietf-sieve-regex-01): the ``:regex`` match type and the
``:quoteregex`` modifier of ``set``.

Patterns are POSIX extended regular expressions (IEEE 1003.2, as the draft requires) read as
Dovecot Pigeonhole reads them — glibc's ``regcomp`` with ``REG_EXTENDED``, and ``REG_ICASE``
under ``i;ascii-casemap`` — but run on RE2 (``google-re2``), whose matching time is linear in
the text whatever the pattern: Python's ``re`` backtracks, and a user's pattern against a
sender's header must not be able to take a delivery's CPU. RE2's syntax is not POSIX's, so
:func:`translate` parses the POSIX pattern and writes it out again in RE2's: each literal but
ASCII letters and digits as ``\\x{…}``, bracket expressions member by member (a backslash is
literal in them, ``]`` first is a member, ``[:class:]``, ``[=c=]``, ``[.c.]``), stacked
repetitions (``a**``, ``a+?``: in POSIX a repetition of a repetition, not a lazy one) as
groups, ``{,n}`` as ``{0,n}``. What has no faithful translation is refused, with the reason:
back-references (``\\1``: not regular; no linear matcher has them), ``\\<``/``\\>``, an
escaped letter other than glibc's ``\\w \\W \\s \\S \\b \\B`` (undefined in POSIX; glibc's
``REG_ICASE`` makes ``\\d`` match nothing at all), multi-character collating elements, counts
over 1000 (RE2's bound).

Invariants (each checked against Pigeonhole in ``tests/interop/test_sieve_pigeonhole.py``):

- A match is a search (unanchored), leftmost-longest (POSIX; RE2's ``longest_match``); ``.``
  and ``[^…]`` match a newline too (no ``REG_NEWLINE``); ``^``/``$`` anchor at the ends of the
  value only.
- ``i;ascii-casemap`` is glibc's ``REG_ICASE`` in the C locale: the value and the pattern's
  literals (bracket members and range ends too) are compared in ASCII upper case; an escaped
  character is not translated; ``[:lower:]`` and ``[:upper:]`` mean ``[:alpha:]``; a range
  that is empty once in upper case (``[_-a]``) is invalid. Nothing outside ASCII is folded.
- Match variables (the draft): ``${0}`` is the matched part of the value, ``${1}``… the groups
  (empty when a group took no part), all of them, cut from the value as given.
- A character is a Unicode character (as ``:matches``), where Pigeonhole's glibc sees octets
  (``^.$`` does not match ``é`` there, and ``(.)`` can capture half of one): a deliberate
  difference. An octet that was not UTF-8 (a lone surrogate, in the value or in a pattern
  made from a header by ``:quoteregex``) is one character, read as ``?`` on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NoReturn

import re2

#: draft-ietf-sieve-regex-01: the characters :quoteregex prefixes with a backslash.
SPECIAL = frozenset("\\^$.[]|()*+?{}")
#: POSIX character class names (IEEE 1003.2 §2.8.3.2, glibc's set: no "word").
CLASSES = frozenset(
    {"alnum", "alpha", "blank", "cntrl", "digit", "graph", "lower", "print", "punct", "space"}
    | {"upper", "xdigit"}
)
#: glibc's escapes that stand for a class (C locale: ASCII word characters and space).
_ESCAPED_CLASSES = {
    "w": "[0-9A-Za-z_]",
    "W": "[^0-9A-Za-z_]",
    "s": "[[:space:]]",
    "S": "[^[:space:]]",
}
#: glibc's escapes that are anchors (never repeated: "\\b*" is an error there too).
_ESCAPED_ANCHORS = {"b": r"\b", "B": r"\B", "`": r"\A", "'": r"\z"}
#: RE2 rejects counted repetitions above this.
MAX_REPEAT = 1000
_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
#: Compiled patterns kept; each may hold up to ``max_memory`` octets in RE2.
_CACHE_ENTRIES = 128


class RegexError(ValueError):
    """A pattern that is not a POSIX extended regular expression, or not one we can run."""


@dataclass(frozen=True, slots=True)
class RegexLimits:
    """What one :regex pattern may cost (``sieve.regex_max_length``,
    ``sieve.regex_max_memory``)."""

    #: Characters of a pattern (after variables are expanded).
    max_length: int = 4096
    #: Octets RE2 may use for one compiled pattern: its program and its DFA cache. A pattern
    #: whose program does not fit is refused; a match whose DFA outgrows it falls back to
    #: RE2's NFA — slower, still linear in the text.
    max_memory: int = 1 << 20


DEFAULT_LIMITS = RegexLimits()


def quote(value: str) -> str:
    """draft-ietf-sieve-regex-01 ``:quoteregex``: ``value`` as a pattern that matches
    only itself."""
    return "".join("\\" + c if c in SPECIAL else c for c in value)


def translate(pattern: str, casemap: bool) -> str:
    """``pattern`` (a POSIX ERE, glibc's reading) in RE2's syntax, case-insensitive as
    ``REG_ICASE`` when ``casemap`` (the value must then be upper-cased: :func:`search` does);
    :class:`RegexError` with the reason if it is invalid or has no faithful translation."""
    return _Translator(pattern, casemap).translate()


def check(pattern: str, casemap: bool, limits: RegexLimits) -> None:
    """:class:`RegexError` unless ``pattern`` translates and compiles within ``limits``."""
    _compiled(pattern, casemap, limits)


def search(pattern: str, value: str, casemap: bool, limits: RegexLimits) -> tuple[str, ...] | None:
    """The match variables of ``pattern`` found in ``value`` (per the draft: the matched part,
    then each group's, empty for a group that took no part); None if it does not match."""
    regex = _compiled(pattern, casemap, limits)
    text = value.translate(_UPPER) if casemap else value
    try:
        found = regex.search(text)
    except UnicodeEncodeError:
        # A lone surrogate (from undecodable octets): matched as "?", one character as well,
        # so the positions still point into ``value``.
        found = regex.search(text.encode("utf-8", "replace").decode("utf-8"))
    if found is None:
        return None
    spans = [found.span(i) for i in range(regex.groups + 1)]
    return tuple("" if start < 0 else value[start:end] for start, end in spans)


def _compiled(pattern: str, casemap: bool, limits: RegexLimits) -> Any:
    if len(pattern) > limits.max_length:
        raise RegexError(f"longer than {limits.max_length} characters")
    return _compile(pattern, casemap, limits.max_memory)


@lru_cache(maxsize=_CACHE_ENTRIES)
def _compile(pattern: str, casemap: bool, max_memory: int) -> Any:
    options = re2.Options()
    options.longest_match = True  # POSIX: leftmost-longest
    options.dot_nl = True  # no REG_NEWLINE
    options.max_mem = max_memory
    options.log_errors = False
    try:
        return re2.compile(translate(pattern, casemap), options)
    except re2.error as exc:
        # What RE2 refuses after translation: a program larger than max_memory, nested
        # counts whose product is too large.
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RegexError(f"too large or complex for the matcher ({reason})") from None


def _literal(c: str) -> str:
    if "\ud800" <= c <= "\udfff":
        # A lone surrogate (an octet that was not UTF-8, in a variable set from a header) is
        # what search reads in the value as "?": so a quoted value still matches itself.
        c = "?"
    return c if c.isascii() and c.isalnum() else f"\\x{{{ord(c):x}}}"


class _Translator:
    """A recursive-descent reading of glibc's POSIX ERE grammar (``RE_SYNTAX_POSIX_EXTENDED``):
    ``regex = branch *("|" branch)``, ``branch = *(atom *repetition)``; empty branches and
    groups are allowed, an unmatched ``)`` is a literal, a repetition with nothing before it
    (at the start, after ``(``, ``|`` or an anchor) is an error."""

    def __init__(self, pattern: str, casemap: bool) -> None:
        self.pattern = pattern
        self.casemap = casemap
        self.at = 0
        self.depth = 0

    def fail(self, reason: str) -> NoReturn:
        raise RegexError(f"{reason} (at offset {self.at})")

    def peek(self, ahead: int = 0) -> str:
        index = self.at + ahead
        return self.pattern[index] if index < len(self.pattern) else ""

    def translate(self) -> str:
        # At the top an unmatched ")" is a literal, so the alternation reads to the end.
        return self.alternation()

    def alternation(self) -> str:
        branches = [self.branch()]
        while self.peek() == "|":
            self.at += 1
            branches.append(self.branch())
        return "|".join(branches)

    def branch(self) -> str:
        out: list[str] = []
        while (c := self.peek()) and c != "|" and not (c == ")" and self.depth):
            atom, repeatable = self.atom()
            repeated = False
            while self.peek() and self.peek() in "*+?{":
                if not repeatable:
                    self.fail("a repetition needs something before it to repeat")
                if repeated:
                    atom = f"(?:{atom})"  # POSIX "a**", "a+?": a repetition of a repetition
                atom += self.repetition()
                repeated = True
            out.append(atom)
        return "".join(out)

    def atom(self) -> tuple[str, bool]:
        """The next atom in RE2 syntax, and whether a repetition may follow it."""
        c = self.peek()
        if c in ("*", "+", "?", "{"):
            self.fail("a repetition needs something before it to repeat")
        self.at += 1
        if c == "(":
            self.depth += 1
            inner = self.alternation()
            if self.peek() != ")":
                self.fail("unmatched (")
            self.at += 1
            self.depth -= 1
            return f"({inner})", True
        if c == ".":
            return ".", True
        if c in ("^", "$"):
            return c, False
        if c == "[":
            return self.bracket(), True
        if c == "\\":
            return self.escape()
        return _literal(self.case(c)), True

    def case(self, c: str) -> str:
        return c.translate(_UPPER) if self.casemap else c

    def escape(self) -> tuple[str, bool]:
        c = self.peek()
        if not c:
            self.fail("trailing backslash")
        self.at += 1
        if c in _ESCAPED_CLASSES:
            return _ESCAPED_CLASSES[c], True
        if c in _ESCAPED_ANCHORS:
            return _ESCAPED_ANCHORS[c], False
        if c.isdigit():
            self.fail(f"back-reference \\{c} (not supported: it needs a backtracking matcher)")
        if c in "<>":
            self.fail(f"\\{c} (word start and end anchors are not supported)")
        if c.isascii() and c.isalpha():
            self.fail(f"\\{c} has no meaning in a POSIX extended regular expression")
        return _literal(c), True  # not translated to upper case: glibc takes it as written

    def repetition(self) -> str:
        c = self.peek()
        self.at += 1
        if c != "{":
            return c
        low = self.number()
        comma = self.peek() == ","
        if comma:
            self.at += 1
        high = self.number()
        if not self.peek():
            self.fail("unmatched {")
        if self.peek() != "}" or (low is None and not comma):
            self.fail("invalid interval")
        self.at += 1
        if low is None:
            low = 0  # glibc: "{,n}" is "{0,n}"
        if high is not None and high < low:
            self.fail("invalid interval: the maximum is below the minimum")
        if max(low, high or 0) > MAX_REPEAT:
            self.fail(f"repetition count over {MAX_REPEAT}")
        if not comma:
            return f"{{{low}}}"
        return f"{{{low},}}" if high is None else f"{{{low},{high}}}"

    def number(self) -> int | None:
        start = self.at
        while self.peek().isascii() and self.peek().isdigit():
            self.at += 1
        digits = self.pattern[start : self.at]
        if len(digits) > 5:
            self.fail(f"repetition count over {MAX_REPEAT}")
        return int(digits) if digits else None

    def bracket(self) -> str:
        """A bracket expression (IEEE 1003.2 §2.8.3.2), as glibc's ``parse_bracket_exp``
        reads it; the ``[`` is behind."""
        negated = self.peek() == "^"
        if negated:
            self.at += 1
        pieces: list[str] = []
        first = True
        while True:
            if not self.peek():
                self.fail("unmatched [")
            if self.peek() == "]" and not first:
                self.at += 1
                break
            kind, value = self.bracket_element(accept_hyphen=first)
            first = False
            if kind == "class":
                pieces.append(f"[:{value}:]")
                continue
            if kind == "equivalence" or self.peek() != "-" or self.peek(1) in ("]", ""):
                pieces.append(_literal(value))
                continue
            self.at += 1  # the range's "-"
            end_kind, end = self.bracket_element(accept_hyphen=True)
            if end_kind != "char":
                self.fail("invalid range end")
            if ord(end) < ord(value):
                self.fail("invalid range end: the range is empty")
            pieces.append(f"{_literal(value)}-{_literal(end)}")
        return "[" + ("^" if negated else "") + "".join(pieces) + "]"

    def bracket_element(self, *, accept_hyphen: bool) -> tuple[str, str]:
        """("char", c) — a character or a collating symbol ``[.c.]`` —, ("equivalence", c)
        for ``[=c=]``, or ("class", name) for ``[:name:]``; characters in the case compared."""
        c = self.peek()
        if c == "[" and self.peek(1) in (".", "=", ":"):
            delimiter = self.peek(1)
            close = self.pattern.find(delimiter + "]", self.at + 2)
            if close < 0:
                self.fail(f"unmatched [{delimiter}")
            name = self.pattern[self.at + 2 : close]
            self.at = close + 2
            if delimiter == ":":
                if name not in CLASSES:
                    self.fail(f"invalid character class [:{name}:]")
                if self.casemap and name in ("lower", "upper"):
                    name = "alpha"  # glibc under REG_ICASE
                return "class", name
            if len(name) != 1:
                self.fail(f"invalid collating element [{delimiter}{name}{delimiter}]")
            return ("char" if delimiter == "." else "equivalence"), self.case(name)
        if c == "-" and not accept_hyphen and self.peek(1) != "]":
            self.fail("invalid range: '-' must be first or last in a bracket expression")
        self.at += 1
        return "char", self.case(c)
