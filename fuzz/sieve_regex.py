"""Fuzz the Sieve :regex translation (POSIX ERE → RE2, ``pillarbox.sieve.regex``).

Input: the first byte picks the comparator (odd: i;ascii-casemap), the rest is a pattern
(UTF-8 with surrogates). Asserted, beyond "no exception":

* ``translate`` and ``check`` raise nothing but RegexError (RE2's own refusals included);
* a pattern that compiles searches a fixed value and the pattern's own text without raising,
  and what it finds lies in the value (``${0}`` and every group are substrings of it);
* ``quote`` of the input always compiles and matches the input itself (the draft).
"""

from __future__ import annotations

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox.sieve.regex import RegexError, RegexLimits, check, quote, search

LIMITS = RegexLimits()
VALUE = "Re: [Dev] Release 2.4 -- caf\u00e9\nline two\t(x) {a} \\b"


def check_input(data: bytes) -> None:
    casemap = bool(data[:1]) and data[0] % 2 == 1
    pattern = data[1:].decode("utf-8", "surrogateescape")
    literal = "^" + quote(pattern) + "$"
    if len(literal) <= LIMITS.max_length:
        assert search(literal, pattern, casemap, LIMITS) == (pattern,), pattern
    try:
        check(pattern, casemap, LIMITS)
    except RegexError:
        return
    for value in (VALUE, pattern):
        found = search(pattern, value, casemap, LIMITS)
        if found is not None:
            assert all(part in value for part in found), (pattern, value, found)


def seeds() -> list[bytes]:
    return [
        b"\x01^re: (.*)$",
        b"\x00[]a-c[:alpha:][=x=][.-.]]+|a{,2}b**",
        b"\x01\\w+\\W\\s\\S\\bx\\B\\`\\'",
        b"\x00((a)|b)+(x)?y{2,5}",
        b"\x01[^]a][\\n]\\.\\{)}",
        b"\x00(a+)+$",
    ]


if __name__ == "__main__":
    harness.main("sieve_regex", check_input, seeds(), max_len=4096)
