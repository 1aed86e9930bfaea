"""Hypothesis properties of Sieve's :regex (``pillarbox.sieve.regex``): any text either is a
pattern we run or raises RegexError; whatever a pattern finds lies in the value; a
``:quoteregex``-quoted text matches itself and nothing else; and on patterns drawn from the
POSIX ERE grammar, the translated pattern (RE2, leftmost-longest) matches exactly the values
Python's ``re`` matches with the same pattern written in its own syntax — under ``i;octet``
and, with ASCII case folding, under ``i;ascii-casemap``."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from pillarbox.sieve.regex import RegexError, RegexLimits, check, quote, search

LIMITS = RegexLimits()


@given(st.text(max_size=60), st.booleans(), st.text(max_size=40))
@settings(max_examples=400)
def test_any_text_is_a_pattern_or_a_regex_error(pattern: str, casemap: bool, value: str) -> None:
    try:
        check(pattern, casemap, LIMITS)
    except RegexError:
        return
    found = search(pattern, value, casemap, LIMITS)
    if found is not None:
        assert all(part in value for part in found)


@given(st.text(st.characters(exclude_categories=()), max_size=80), st.booleans())
@settings(max_examples=300)
def test_quoted_text_matches_itself_only(text: str, casemap: bool) -> None:
    pattern = "^" + quote(text) + "$"
    assert search(pattern, text, casemap, LIMITS) == (text,)
    assert search(pattern, text + "x", casemap, LIMITS) is None


def _pair(ere: str, python: str) -> tuple[str, str]:
    """A pattern in POSIX ERE and the same in Python's syntax."""
    return ere, python


LETTERS = st.sampled_from(["a", "b", "A"])
ATOMS = st.one_of(
    LETTERS.map(lambda c: _pair(c, c)),
    st.just(_pair(".", ".")),
    st.just(_pair("[ab]", "[ab]")),
    st.just(_pair("[^a]", "[^a]")),
    st.just(_pair("[a-b]", "[a-b]")),
    st.just(_pair("[]a]", r"[\]a]")),
    st.just(_pair("[[:alpha:]]", "[A-Za-z]")),
    st.just(_pair("\\.", r"\.")),
    st.just(_pair("\\w", r"[0-9A-Za-z_]")),
)


REPEATS = st.sampled_from(["*", "+", "?", "{2}", "{0,2}", "{1,}"])
#: POSIX stacks repetitions ("a*+" is "(a*)+"); Python's re would read some as lazy.
STACKED = st.tuples(ATOMS, REPEATS, REPEATS).map(
    lambda t: (t[0][0] + t[1] + t[2], f"(?:(?:{t[0][1]}){t[1]}){t[2]}")
)


def _extend(children: st.SearchStrategy[tuple[str, str]]) -> st.SearchStrategy[tuple[str, str]]:
    return st.one_of(
        st.tuples(children, REPEATS).map(lambda t: (f"({t[0][0]}){t[1]}", f"({t[0][1]}){t[1]}")),
        st.lists(children, min_size=2, max_size=3).map(
            lambda ps: ("".join(p[0] for p in ps), "".join(p[1] for p in ps))
        ),
        st.lists(children, min_size=2, max_size=3).map(
            lambda ps: ("|".join(f"({p[0]})" for p in ps), "|".join(f"({p[1]})" for p in ps))
        ),
    )


PATTERNS = st.recursive(st.one_of(ATOMS, STACKED), _extend, max_leaves=8)
ANCHORED = st.tuples(PATTERNS, st.booleans(), st.booleans()).map(
    lambda t: (("^" if t[1] else "") + t[0][0] + ("$" if t[2] else ""),
               ("^" if t[1] else "") + t[0][1] + (r"\Z" if t[2] else ""))
)  # fmt: skip


@given(ANCHORED, st.text(alphabet="abAB.\n_", max_size=8), st.booleans())
@settings(max_examples=600)
def test_matches_what_a_reference_engine_matches(
    pair: tuple[str, str], value: str, casemap: bool
) -> None:
    ere, python = pair
    flags = re.DOTALL | (re.IGNORECASE | re.ASCII if casemap else 0)
    expected = re.search(python, value, flags) is not None
    assert (search(ere, value, casemap, LIMITS) is not None) is expected, (ere, python)
