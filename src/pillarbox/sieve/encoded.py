"""The "encoded-character" extension (RFC 5228 §2.4.2.4): ``${hex:…}`` and ``${unicode:…}``
in strings, replaced after escapes and dot-unstuffing. A sequence that does not follow the
grammar stays as written; a well-formed one naming a surrogate or a value past U+10FFFF is an
error."""

from __future__ import annotations

import re

_BLANK = r"(?:[ \t]|\r?\n)"
_ENCODED = re.compile(
    r"\$\{(hex|unicode):("
    + _BLANK
    + r"*[0-9A-Fa-f]+(?:"
    + _BLANK
    + r"+[0-9A-Fa-f]+)*"
    + _BLANK
    + r"*)\}",
    re.IGNORECASE,
)


class EncodingError(ValueError):
    """A well-formed ``${unicode:…}`` outside Unicode's scalar values."""


def decode(text: str) -> str:
    """``text`` with its encoded characters replaced (see the module notes)."""
    if "${" not in text:
        return text
    return _ENCODED.sub(_replacement, text)


def _replacement(m: re.Match[str]) -> str:
    kind = m.group(1).lower()
    values = m.group(2).split()
    if kind == "hex":
        if any(len(v) > 2 for v in values):
            return m.group()  # hex-pair = 1*2HEXDIG: not the grammar, left alone
        # Octets are text to us; bytes that are not UTF-8 stay as surrogates, as in headers.
        return bytes(int(v, 16) for v in values).decode("utf-8", "surrogateescape")
    out: list[str] = []
    for value in values:
        code = int(value, 16)
        if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
            raise EncodingError(f"invalid Unicode character U+{code:X} in ${{unicode:…}}")
        out.append(chr(code))
    return "".join(out)
