"""Sieve tokens (RFC 5228 §8.1): identifiers, tags, numbers, quoted and multi-line strings and
the separators; whitespace and both kinds of comment are skipped.

Line breaks are CRLF in the RFC; a bare LF is accepted as one too (scripts uploaded from Unix
editors have them, and Pigeonhole accepts them). Identifiers and tags are returned lowercase
(§8.1: case-insensitive); strings keep their case, with escapes and dot-stuffing removed.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from pillarbox.sieve.errors import SieveError


class Kind(enum.Enum):
    IDENTIFIER = "identifier"
    TAG = "tag"
    NUMBER = "number"
    STRING = "string"
    SEPARATOR = "separator"
    END = "end of script"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    #: The lowercase name, the separator character, or the string's value.
    text: str
    line: int
    #: The value of a number (its quantifier applied).
    number: int = 0


#: §2.4.1: K, M and G are powers of two.
QUANTIFIERS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
#: Beyond the §2.4.1 minimum of 2^31 - 1, up to what a 64-bit unsigned counter holds.
MAX_NUMBER = (1 << 64) - 1
SEPARATORS = frozenset("[](){},;")

_WHITESPACE = re.compile(r"[ \t\r\n]+")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"([0-9]+)([KkMmGg]?)")
_MULTILINE_START = re.compile(r"text:[ \t]*(?:#[^\n]*)?\r?\n", re.IGNORECASE)
_MULTILINE_ANY = re.compile(r"text:", re.IGNORECASE)


def tokenize(text: str) -> list[Token]:
    """All tokens of ``text``, ending with an END token; :class:`SieveError` on bad input."""
    return _Lexer(text).run()


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.tokens: list[Token] = []

    def run(self) -> list[Token]:
        text = self.text
        if "\x00" in text:
            # §2.4.2: an unencoded NUL is not allowed anywhere.
            raise SieveError(text.count("\n", 0, text.index("\x00")) + 1, "NUL character in script")
        while True:
            self._skip_whitespace_and_comments()
            if self.pos >= len(text):
                self.tokens.append(Token(Kind.END, "", self.line))
                return self.tokens
            c = text[self.pos]
            if c == '"':
                self._quoted()
            elif c in SEPARATORS:
                self.tokens.append(Token(Kind.SEPARATOR, c, self.line))
                self.pos += 1
            elif c == ":":
                m = _IDENTIFIER.match(text, self.pos + 1)
                if m is None:
                    raise SieveError(self.line, "expected a tag name after ':'")
                self.tokens.append(Token(Kind.TAG, m.group().lower(), self.line))
                self.pos = m.end()
            elif c.isdigit() and c.isascii():
                self._number()
            elif _MULTILINE_ANY.match(text, self.pos):
                self._multiline()
            elif (m := _IDENTIFIER.match(text, self.pos)) is not None:
                self.tokens.append(Token(Kind.IDENTIFIER, m.group().lower(), self.line))
                self.pos = m.end()
            else:
                raise SieveError(self.line, f"unexpected character {c!r}")

    def _skip_whitespace_and_comments(self) -> None:
        text = self.text
        while self.pos < len(text):
            m = _WHITESPACE.match(text, self.pos)
            if m is not None:
                self.line += m.group().count("\n")
                self.pos = m.end()
            elif text.startswith("#", self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end  # the newline is whitespace
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise SieveError(self.line, "unterminated bracket comment")
                self.line += text.count("\n", self.pos, end)
                self.pos = end + 2
            else:
                return

    def _quoted(self) -> None:
        """§2.4.2: ``\\\\`` and ``\\"`` are escapes; any other backslash is dropped."""
        text = self.text
        start_line = self.line
        out: list[str] = []
        pos = self.pos + 1
        while True:
            if pos >= len(text):
                raise SieveError(start_line, "unterminated quoted string")
            c = text[pos]
            if c == '"':
                break
            if c == "\\" and pos + 1 < len(text):
                pos += 1
                c = text[pos]
            if c == "\n":
                self.line += 1
            out.append(c)
            pos += 1
        self.pos = pos + 1
        self.tokens.append(Token(Kind.STRING, "".join(out), start_line))

    def _number(self) -> None:
        m = _NUMBER.match(self.text, self.pos)
        assert m is not None
        value = int(m.group(1)) * QUANTIFIERS.get(m.group(2).lower(), 1)
        if value > MAX_NUMBER:
            raise SieveError(self.line, f"number too large: {m.group()}")
        self.tokens.append(Token(Kind.NUMBER, m.group(), self.line, value))
        self.pos = m.end()

    def _multiline(self) -> None:
        """§2.4.2 ``text:`` … ``.``: dot-stuffed lines up to a line holding only a period."""
        text = self.text
        start_line = self.line
        m = _MULTILINE_START.match(text, self.pos)
        if m is None:
            raise SieveError(self.line, "expected a line break after 'text:'")
        pos = m.end()
        self.line += 1
        lines: list[str] = []
        while True:
            end = text.find("\n", pos)
            if end < 0:
                if text[pos:].removesuffix("\r") == ".":  # the last line without its break
                    pos = len(text)
                    break
                raise SieveError(start_line, "unterminated multi-line string")
            line = text[pos : end + 1]
            content = line.rstrip("\n").removesuffix("\r")
            self.line += 1
            pos = end + 1
            if content == ".":
                break
            lines.append(line[1:] if line.startswith("..") else line)
        self.pos = pos
        self.tokens.append(Token(Kind.STRING, "".join(lines), start_line))
