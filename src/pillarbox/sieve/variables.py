"""The "variables" extension (RFC 5229): ``${name}`` and ``${N}`` references in strings, the
``set`` modifiers, and the bounds on what a script may store.

Expansion happens when a command or test runs (§3: "at the time the string is used"), once
and not again on the result (a value holding ``${x}`` stays as it is). A ``${`` that does not
follow the grammar stays literal text (§3: ``"${doh!}"``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from pillarbox.sieve import regex
from pillarbox.sieve.match import fold
from pillarbox.sieve.notify import encode_url

#: RFC 5229 §3: variable-ref = "${" [namespace] variable-name "}", namespace = identifier "."
#: *sub-namespace, variable-name = num-variable / identifier.
_NAME = r"(?:[0-9]+|[A-Za-z_][A-Za-z0-9_]*)"
REFERENCE = re.compile(r"\$\{(" + _NAME + r"(?:\." + _NAME + r")*)\}")
#: §4: a variable ``set`` can name (never a match variable, never a namespace).
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: §4.1: modifiers with their precedence; higher goes first, two of one precedence conflict.
MODIFIERS = {
    "lower": 40,
    "upper": 40,
    "lowerfirst": 30,
    "upperfirst": 30,
    "quotewildcard": 20,
    "quoteregex": 20,  # draft-ietf-sieve-regex-01
    "encodeurl": 15,  # RFC 5435 §6
    "length": 10,
}
_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def references(text: str) -> list[str]:
    """The names ``text`` refers to, namespaced ones whole (``a.b``)."""
    if "${" not in text:
        return []
    return [m.group(1) for m in REFERENCE.finditer(text)]


def refers(text: str) -> bool:
    """Whether ``text`` holds a variable reference (its value is known only at run time)."""
    return "${" in text and REFERENCE.search(text) is not None


def expand(text: str, variables: Mapping[str, str], matched: Sequence[str], max_size: int) -> str:
    """``text`` with its references replaced (§3): a variable never set, and a match variable
    past the last wildcard, are the empty string. Names compare without case (§3)."""
    if "${" not in text:
        return text

    def value(m: re.Match[str]) -> str:
        name = m.group(1)
        if name.isdigit():
            index = int(name)
            return matched[index] if index < len(matched) else ""
        return variables.get(fold(name), "")

    return truncated(REFERENCE.sub(value, text), max_size)


def truncated(value: str, max_size: int) -> str:
    """``value`` cut to at most ``max_size`` octets of UTF-8, at a character boundary (§6
    lets an implementation bound a variable's length; ``sieve.max_variable_size``)."""
    if len(value) * 4 <= max_size:
        return value
    data = value.encode("utf-8", "surrogatepass")
    if len(data) <= max_size:
        return value
    return data[:max_size].decode("utf-8", "ignore")


def modified(value: str, modifiers: Sequence[str]) -> str:
    """``value`` with the §4.1 modifiers applied, highest precedence first. Case changes fold
    A–Z only, as the i;ascii-casemap comparator (and Pigeonhole) do."""
    for name in sorted(modifiers, key=MODIFIERS.__getitem__, reverse=True):
        if name == "lower":
            value = fold(value)
        elif name == "upper":
            value = value.translate(_UPPER)
        elif name == "lowerfirst":
            value = fold(value[:1]) + value[1:]
        elif name == "upperfirst":
            value = value[:1].translate(_UPPER) + value[1:]
        elif name == "quotewildcard":
            value = re.sub(r"([*?\\])", r"\\\1", value)
        elif name == "quoteregex":
            value = regex.quote(value)
        elif name == "encodeurl":
            value = encode_url(value)
        else:  # length: characters, not octets (§4.1)
            value = str(len(value))
    return value
