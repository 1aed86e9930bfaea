"""Hypothesis properties of the Sieve core: any text either compiles or raises SieveError (with
a line inside the script); a compiled script always decides something, never raises; and
:matches (cut at its stars, linear) agrees with the plain regular-expression reading of
RFC 5228 §2.7.1, and so do its RFC 5229 match variables — while staying fast on the patterns
that make backtracking explode."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from pillarbox.sieve import (
    Discard,
    FileInto,
    Keep,
    Redirect,
    Reject,
    SieveError,
    SieveMessage,
    compile_script,
)
from pillarbox.sieve.match import glob_captures, glob_matches

NOW = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
MESSAGE = SieveMessage.from_bytes(
    b"From: a+b@example.com\r\nTo: g: c@example.org;\r\nSubject: =?utf-8?q?x_y?=\r\n\r\nbody\r\n",
    envelope_from="s@example.net",
    envelope_to="me@example.org",
)

WORDS = [
    "require", "if", "elsif", "else", "keep", "discard", "stop", "redirect", "fileinto",
    "header", "address", "envelope", "exists", "size", "true", "false", "not", "allof",
    "anyof", "setflag", "addflag", "hasflag", "vacation", "body", ":is", ":contains",
    ":matches", ":over", ":under", ":comparator", ":localpart", ":domain", ":all", ":copy",
    ":flags", ":days", ":value", ":count", ":user", ":detail", '"fileinto"', '"imap4flags"',
    '"copy"', '"envelope"', '"vacation"', '"relational"', '"subaddress"', '"body"',
    '"subject"', '"from"', '"to"', '"x*"', '"a@b.c"', '"gt"', '"i;octet"', "10K", "0",
    '["a", "b"]', "set", "string", '"variables"', '"${a}"', '"${1}"', ":lower", ":length",
    "reject", "ereject", '"reject"', '"ereject"', ":seconds", '"vacation-seconds"',
    "date", "currentdate", ":zone", ":originalzone", ":index", ":last", '"date"', '"year"',
    '"+0100"', "mailboxexists", ":create", '"mailbox"', '"index"',
    ":regex", '"regex"', ":quoteregex", '"^a(b|c)*$"', '"[[:alpha:]]+"', '"a("',
    "text:\nx\n.\n", "{", "}", "(", ")", ",", ";", "[", "]", "#c\n", "/*c*/",
]  # fmt: skip


@given(st.text(max_size=300))
@settings(max_examples=300)
def test_any_text_compiles_or_raises_sieve_error(text: str) -> None:
    try:
        script = compile_script(text)
    except SieveError as exc:
        line = exc.line
        assert 1 <= line <= text.count("\n") + 1
        return
    assert script.run(MESSAGE).actions


@given(st.lists(st.sampled_from(WORDS), max_size=40))
@settings(max_examples=500)
def test_token_soup_compiles_or_raises_sieve_error(words: list[str]) -> None:
    """Scripts made of real tokens reach the validator and the interpreter, not just the lexer."""
    text = " ".join(words)
    try:
        script = compile_script(text)
    except SieveError:
        return
    outcome = script.run(MESSAGE, now=NOW)
    assert outcome.actions
    stored = [a for a in outcome.actions if isinstance(a, Keep | FileInto)]
    if not stored:  # nothing kept: discarded, sent on or refused, never silently gone
        assert any(isinstance(a, Discard | Redirect | Reject) for a in outcome.actions)


def _reference(pattern: str, value: str, casemap: bool) -> bool:
    return _reference_match(pattern, value, casemap) is not None


def _reference_match(pattern: str, value: str, casemap: bool) -> re.Match[str] | None:
    """RFC 5228 §2.7.1 as a regular expression; each wildcard a group, stars lazy — the
    reading of RFC 5229 §3.2's examples, where a star takes as little as it can."""
    out = []
    escaped = False
    for c in pattern:
        if escaped:
            out.append(re.escape(c))
            escaped = False
        elif c == "\\":
            escaped = True
        else:
            out.append("(.*?)" if c == "*" else "(.)" if c == "?" else re.escape(c))
    flags = re.DOTALL | (re.ASCII | re.IGNORECASE if casemap else 0)
    return re.fullmatch("".join(out), value, flags)


@given(
    st.text(alphabet="ab*?\\A", max_size=12),
    st.text(alphabet="abAB*?\\", max_size=16),
    st.booleans(),
)
@settings(max_examples=3000)
def test_matches_agrees_with_the_regular_expression_reading(
    pattern: str, value: str, casemap: bool
) -> None:
    assert glob_matches(pattern, value, casemap) is _reference(pattern, value, casemap)


def test_matches_is_fast_where_backtracking_explodes() -> None:
    pattern = "*a" * 25 + "*b"
    value = "a" * 200_000
    start = time.perf_counter()
    assert glob_matches(pattern, value, True) is False
    assert glob_matches(pattern, value + "b", True) is True
    assert time.perf_counter() - start < 1.0


@given(
    st.text(alphabet="ab*?\\A", max_size=12),
    st.text(alphabet="abAB*?\\", max_size=16),
    st.booleans(),
)
@settings(max_examples=3000)
def test_match_variables_agree_with_the_regular_expression_reading(
    pattern: str, value: str, casemap: bool
) -> None:
    reference = _reference_match(pattern, value, casemap)
    expected = None if reference is None else (value, *reference.groups())
    assert glob_captures(pattern, value, casemap) == expected


def test_match_variables_are_fast_where_backtracking_explodes() -> None:
    pattern = "*a" * 25 + "*b"
    value = "a" * 200_000
    start = time.perf_counter()
    assert glob_captures(pattern, value, True) is None
    found = glob_captures(pattern, value + "b", True)
    assert found is not None and found[1:3] == ("", "") and len(found[-1]) == 200_000 - 25
    assert time.perf_counter() - start < 1.0
