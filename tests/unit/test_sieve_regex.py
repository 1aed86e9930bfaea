"""The "regex" extension (draft-ietf-sieve-regex-01): POSIX ERE (as glibc reads it, which is
what Pigeonhole runs) translated to RE2, the :regex match type in every test that takes a
match type, match variables, comparators, ``set :quoteregex``, the limits, and the linear
time that is the reason for RE2. tests/interop/test_sieve_pigeonhole.py compares the same
behaviours with Pigeonhole itself."""

from __future__ import annotations

import time

import pytest

from pillarbox.config import SieveSection
from pillarbox.sieve import (
    Discard,
    FileInto,
    Keep,
    Outcome,
    RegexLimits,
    RunLimits,
    SieveError,
    SieveMessage,
    compile_script,
)
from pillarbox.sieve.regex import RegexError, quote, search, translate

MESSAGE = (
    b"From: Ken Murchison <Ken+Lists@Example.ORG>\r\n"
    b"To: tjs@example.com\r\n"
    b"Subject: [Dev] Release 2.4 is out\r\n"
    b"X-Mailer: Mutt/2.2.12 (2023-09-09)\r\n"
    b"Date: Sun, 1 Jun 2025 10:15:07 +0200\r\n"
    b"\r\n"
    b"Line one\r\nprice: 120 EUR\r\n"
)


def message(raw: bytes = MESSAGE) -> SieveMessage:
    return SieveMessage.from_bytes(
        raw,
        envelope_from="Bounce+x@Lists.example.org",
        envelope_to="tjs+sieve@example.com",
        environment={"host": "mx.example.org"},
    )


def run(script: str, raw: bytes = MESSAGE, limits: RunLimits | None = None) -> Outcome:
    return compile_script(script).run(message(raw), limits)


def folders(script: str, raw: bytes = MESSAGE) -> list[str]:
    outcome = run(script, raw)
    assert outcome.error is None, outcome.error
    return [a.mailbox for a in outcome.actions if isinstance(a, FileInto)]


# -- translation: POSIX ERE (glibc) → RE2 --------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "casemap", "expected"),
    [
        ("abc", False, "abc"),
        ("abc", True, "ABC"),  # REG_ICASE: compared in upper case, as glibc does
        ("a.b", False, "a.b"),
        ("a\\.b", False, r"a\x{2e}b"),  # an escaped special is a literal
        ("^a$", False, "^a$"),
        ("a|b|", False, "a|b|"),  # empty branches are allowed
        ("()", False, "()"),
        ("(a)(b(c))", False, "(a)(b(c))"),
        ("a*b+c?", False, "a*b+c?"),
        ("a**", False, "(?:a*)*"),  # a repetition of a repetition, not a lazy one
        ("a+?", False, "(?:a+)?"),
        ("a{2}{3}", False, "(?:a{2}){3}"),
        ("a{2}", False, "a{2}"),
        ("a{2,}", False, "a{2,}"),
        ("a{2,5}", False, "a{2,5}"),
        ("a{,5}", False, "a{0,5}"),  # glibc's "{,n}"
        ("a{,}", False, "a{0,}"),
        (")", False, r"\x{29}"),  # an unmatched ")" is a literal
        ("a}", False, r"a\x{7d}"),
        ("]", False, r"\x{5d}"),
        ("é", False, r"\x{e9}"),
        # bracket expressions: backslash literal, "]" first a member, "-" first or last
        ("[\\n]", False, r"[\x{5c}n]"),
        ("[]a]", False, r"[\x{5d}a]"),
        ("[^]a]", False, r"[^\x{5d}a]"),
        ("[a-]", False, r"[a\x{2d}]"),
        ("[-a]", False, r"[\x{2d}a]"),
        ("[--/]", False, r"[\x{2d}-\x{2f}]"),
        ("[%--]", False, r"[\x{25}-\x{2d}]"),
        ("[a-c-]", False, r"[a-c\x{2d}]"),
        ("[[]", False, r"[\x{5b}]"),
        ("[a\\]]", False, r"[a\x{5c}]\x{5d}"),  # "[a\]" then a literal "]"
        ("[[:alpha:][:digit:]_]", False, r"[[:alpha:][:digit:]\x{5f}]"),
        ("[[=a=]]", False, "[a]"),
        ("[[.-.]]", False, r"[\x{2d}]"),
        ("[[.].]]", False, r"[\x{5d}]"),
        ("[[.a.]-c]", False, "[a-c]"),
        ("[=a=]", False, r"[\x{3d}a\x{3d}]"),  # not an equivalence class: three members
        ("[a-z]", True, "[A-Z]"),
        ("[[:lower:]]", True, "[[:alpha:]]"),  # glibc under REG_ICASE
        ("[[:upper:]]", True, "[[:alpha:]]"),
        ("[[:upper:]]", False, "[[:upper:]]"),
        ("[^a]", True, "[^A]"),
        # glibc's escapes
        ("\\w\\W", False, "[0-9A-Za-z_][^0-9A-Za-z_]"),
        ("\\s\\S", False, "[[:space:]][^[:space:]]"),
        ("\\bx\\B", False, r"\bx\B"),
        ("\\`x\\'", False, r"\Ax\z"),
        ("\\%", True, r"\x{25}"),
    ],
)
def test_translation(pattern: str, casemap: bool, expected: str) -> None:
    assert translate(pattern, casemap) == expected


@pytest.mark.parametrize(
    ("pattern", "casemap", "reason"),
    [
        # invalid in glibc too (the messages Pigeonhole's sievec prints, in our words)
        ("(", False, "unmatched ("),
        ("a(b", False, "unmatched ("),
        ("[a", False, "unmatched ["),
        ("[]", False, "unmatched ["),
        ("[[:alpha:]", False, "unmatched ["),
        ("[[:a]", False, "unmatched [:"),
        ("*a", False, "needs something before it"),
        ("a|*b", False, "needs something before it"),
        ("(*a)", False, "needs something before it"),
        ("^*", False, "needs something before it"),
        ("a$+", False, "needs something before it"),
        ("\\b*", False, "needs something before it"),
        ("{1}", False, "needs something before it"),
        ("a{", False, "unmatched {"),
        ("a{1", False, "unmatched {"),
        ("a{x}", False, "invalid interval"),
        ("a{}", False, "invalid interval"),
        ("a{ 1}", False, "invalid interval"),
        ("a{2,1}", False, "below the minimum"),
        ("a\\", False, "trailing backslash"),
        ("[[:word:]]", False, "invalid character class"),
        ("[[=ab=]]", False, "invalid collating element"),
        ("[[.hyphen.]]", False, "invalid collating element"),
        ("[z-a]", False, "range is empty"),
        ("[_-a]", True, "range is empty"),  # "_" to "A" in upper case: glibc refuses it too
        ("[a-c-e]", False, "invalid range"),
        ("[[:alpha:]-z]", False, "invalid range"),
        ("[a-[:alpha:]]", False, "invalid range end"),
        ("[[=a=]-z]", False, "invalid range"),
        # valid in glibc, with no faithful translation to a linear-time matcher
        ("(a)\\1", False, "back-reference"),
        ("\\<word\\>", False, "word start and end anchors"),
        ("a{1001}", False, "over 1000"),
        ("a{99999999}", False, "over 1000"),
        # undefined in POSIX; glibc under REG_ICASE makes "\d" match nothing at all
        ("\\d+", True, "has no meaning"),
        ("\\n", False, "has no meaning"),
    ],
)
def test_refused_patterns(pattern: str, casemap: bool, reason: str) -> None:
    with pytest.raises(RegexError, match=reason.replace("[", r"\[").replace("(", r"\(")):
        translate(pattern, casemap)


@pytest.mark.parametrize(
    ("pattern", "value", "casemap", "expected"),
    [
        # a search, leftmost-longest; ${0} is the matched part, then each group
        ("l+", "hello", False, ("ll",)),
        ("a|ab", "abc", False, ("ab",)),  # POSIX: the longest, where Perl takes "a"
        ("(.*)-(.*)", "a-b-c", False, ("a-b-c", "a-b", "c")),
        ("(a)|(b)", "b", False, ("b", "", "b")),  # a group that took no part is empty
        ("(x)?y", "y", False, ("y", "")),
        ("((a)|b)+", "ab", False, ("ab", "b", "a")),  # as glibc
        ("^re: (.*)", "RE: Hello", True, ("RE: Hello", "Hello")),  # captures as written
        ("^re: (.*)", "RE: Hello", False, None),
        ("[[:upper:]]", "abc", True, ("a",)),
        ("^[^a]$", "A", True, None),
        ("\\.", "a", False, None),
        (".", "\n", False, ("\n",)),  # no REG_NEWLINE: "." and [^…] match a newline
        ("[^a]", "\n", False, ("\n",)),
        ("^b", "a\nb", False, None),  # "^" is the start of the value only
        ("a$", "a\nb", False, None),
        ("^.$", "é", False, ("é",)),  # a character, not an octet (Pigeonhole differs)
        ("É", "é", True, None),  # i;ascii-casemap folds ASCII only
        ("K", "\u212a", True, None),  # not the Kelvin sign either (RE2's folding would)
        ("s", "\u017f", True, None),  # nor the long s
        ("", "anything", False, ("",)),
        ("x{0}y", "y", False, ("y",)),
        ("[\\]", "a\\b", False, ("\\",)),
        ("a\\b", "a\\b", False, ("a",)),  # "\b" is a word boundary (glibc's), not a "b"
        ("a.b", "a\udcffb", False, ("a\udcffb",)),  # a lone surrogate is one character
        # ... and one in the pattern (a header's octets that were not UTF-8, :quoteregex'd into
        # a variable) matches it: fuzz/sieve_regex.py found it matching nothing.
        ("^x\udcffy$", "x\udcffy", True, ("x\udcffy",)),
    ],
)
def test_search(pattern: str, value: str, casemap: bool, expected: tuple[str, ...] | None) -> None:
    assert search(pattern, value, casemap, RegexLimits()) == expected


@pytest.mark.parametrize(
    "text",
    ["plain", "a.b*c+d?e", "(x|y)[z]{2}", "^$", "\\back\\slash\\", "}{][)(", "é.ü", ""],
)
@pytest.mark.parametrize("casemap", [False, True])
def test_quote_matches_itself_only(text: str, casemap: bool) -> None:
    """draft-ietf-sieve-regex-01 (:quoteregex): a quoted string matches a literal occurrence."""
    pattern = "^" + quote(text) + "$"
    assert search(pattern, text, casemap, RegexLimits()) == (text,)
    if text:
        assert search(pattern, text + "x", casemap, RegexLimits()) is None
        assert search(pattern, "x" + text[1:], casemap, RegexLimits()) is None


def test_linear_time_where_backtracking_explodes() -> None:
    """The reason for RE2: "(a+)+$" against 30 000 "a" and a "b" would take a backtracking
    matcher (Python's re, PCRE) longer than the universe has; RE2 answers in milliseconds."""
    value = "a" * 30_000 + "b"
    started = time.perf_counter()
    for pattern in ("(a+)+$", "^(a|aa)*$", "(.*a){20}$", "^(a?){25}a{25}$"):
        assert search(pattern, value, False, RegexLimits()) is None
    assert time.perf_counter() - started < 2.0


def test_limits() -> None:
    with pytest.raises(RegexError, match="longer than 8 characters"):
        search("abcdefghi", "x", False, RegexLimits(max_length=8))
    assert search("abcdefgh", "abcdefgh", False, RegexLimits(max_length=8)) == ("abcdefgh",)
    big = "(" + "|".join(f"w{i:04}[a-z]{{1,30}}" for i in range(200)) + ")"
    with pytest.raises(RegexError, match="too large"):
        search(big, "x", False, RegexLimits(max_memory=65536))
    assert search(big, "w0199abc", False, RegexLimits()) == ("w0199abc", "w0199abc")


# -- the language: :regex on every test that takes a match type ---------------------------------


@pytest.mark.parametrize(
    ("test", "holds"),
    [
        ('header :regex "subject" "^\\\\[dev\\\\] release [0-9]+\\\\.[0-9]+"', True),
        ('header :regex :comparator "i;octet" "subject" "^\\\\[dev\\\\]"', False),
        ('header :regex :comparator "i;octet" "subject" "^\\\\[Dev\\\\]"', True),
        ('header :regex "x-mailer" ["^outlook", "^mutt/2\\\\."]', True),
        ('header :regex "subject" "^release"', False),
        ('address :regex :localpart "from" "^ken\\\\+"', True),
        ('address :regex :domain "from" "^example\\\\.(org|net)$"', True),
        ('address :regex :all "from" "^[^@]+@example\\\\.com$"', False),
        ('envelope :regex "from" "^bounce\\\\+[a-z]+@"', True),
        ('envelope :regex :domain "to" "example\\\\.com$"', True),
        ('exists "subject"', True),
    ],
)
def test_regex_in_tests(test: str, holds: bool) -> None:
    script = f'require ["regex", "envelope"]; if {test} {{ discard; }}'
    assert (run(script).actions == (Discard(),)) is holds


@pytest.mark.parametrize(
    ("preamble", "test"),
    [
        ('require ["regex", "variables"]; set "a" "xxx";', 'string :regex "${a}" "^x+$"'),
        ('require ["regex", "imap4flags"]; addflag "\\\\Seen";', 'hasflag :regex "^\\\\\\\\se"'),
        ('require ["regex", "body"];', 'body :regex "price: [0-9]+ eur"'),
        ('require ["regex", "body"];', 'body :raw :regex "one[[:space:]]+price"'),
        ('require ["regex", "date"];', 'date :regex :originalzone "date" "time" "^10:[0-5]"'),
        ('require ["regex", "environment"];', 'environment :regex "host" "^mx\\\\."'),
        (
            'require ["regex", "enotify"];',
            'notify_method_capability :regex "mailto:a@b.example" "online" "^m"',
        ),
    ],
)
def test_regex_in_extension_tests(preamble: str, test: str) -> None:
    assert run(f"{preamble} if {test} {{ discard; }}").actions == (Discard(),)


def test_deleteheader_regex() -> None:
    outcome = run(
        'require ["regex", "editheader"]; deleteheader :regex "x-mailer" "^mutt/[0-9]";'
        'deleteheader :regex "subject" "^nothing";'
    )
    assert outcome.message is not None
    assert b"X-Mailer" not in outcome.message and b"Subject" in outcome.message


def test_match_variables() -> None:
    """The draft: ${0} the matched part, ${1}… the groups (all of them, beyond 9 too), from
    the first value and key that match; a failed :regex leaves the last ones."""
    script = r"""require ["regex", "variables", "fileinto", "envelope"];
if header :regex "subject" ["(nomatch)", "\\[([a-z]+)\\] (release) ([0-9.]+)"] {
    fileinto "${1}/${2}/${3}/${0}";
}
if envelope :regex "from" "^([^+]*)\\+([^@]*)@(.*)$" { fileinto "${1}-${2}-${3}"; }
if header :regex "subject" "(q)" { fileinto "never"; }
fileinto "still-${2}";
if header :regex "subject" "((((((((((((R))))))))))))" { fileinto "twelve-${12}-${13}"; }
if header :regex "subject" "(x)?(e)" { fileinto "unset-[${1}]-${2}"; }
"""
    assert folders(script) == [
        "Dev/Release/2.4/[Dev] Release 2.4",
        "Bounce-x-Lists.example.org",
        "still-x",
        "twelve-R-",
        "unset-[]-e",
    ]


def test_match_variables_only_with_variables() -> None:
    """Without "variables" a :regex compares and sets nothing (nothing could read it)."""
    assert run('require "regex"; if header :regex "subject" "(dev)" { discard; }').actions == (
        Discard(),
    )


def test_quoteregex() -> None:
    script = r"""require ["regex", "variables", "fileinto"];
set :quoteregex "q" "Release 2.4";
if header :regex "subject" "${q}" { fileinto "dot-literal"; }
set :quoteregex "r" "Release 2?4";
if header :regex "subject" "${r}" { fileinto "never"; }
set :quoteregex :upper "u" "a.b";
if string :is "${u}" "A\\.B" { fileinto "precedence"; }
"""
    assert folders(script) == ["dot-literal", "precedence"]


@pytest.mark.parametrize(
    ("script", "error"),
    [
        ('if header :regex "subject" "a" {}', "needs require 'regex'"),
        ('require "regex"; if header :regex :contains "subject" "a" {}', "exclude each other"),
        (
            'require ["regex", "comparator-i;ascii-numeric"]; '
            'if header :regex :comparator "i;ascii-numeric" "subject" "a" {}',
            "cannot do :regex",
        ),
        ('require "regex"; if header :regex "subject" ["a", "b("] {}', "invalid regular expr"),
        ('require "regex"; if header :regex "subject" "(a)\\\\1" {}', "back-reference"),
        ('require "regex";\n\nif address :regex "from" "[z-a]" {}', "line 3: invalid regular"),
        ('require ["variables"]; set :quoteregex "a" "b";', "needs require 'regex'"),
        (
            'require ["regex", "variables"]; set :quotewildcard :quoteregex "a" "b";',
            "exclude each other",
        ),
        (
            'require ["regex", "editheader"]; deleteheader :regex "x-a" "(";',
            "invalid regular expression",
        ),
        (
            'require ["regex", "encoded-character"]; if header :regex "s" "${hex:28}" {}',
            "unmatched (",
        ),
    ],
)
def test_compile_errors(script: str, error: str) -> None:
    with pytest.raises(SieveError) as raised:
        compile_script(script)
    assert error in str(raised.value)


def test_patterns_made_of_variables_are_checked_when_they_run() -> None:
    """An invalid pattern made of variables cannot be refused at upload; at run time it is
    an error (RFC 5228 §2.10.6): the actions are dropped, the message kept."""
    script = (
        'require ["regex", "variables", "fileinto"]; set "p" "(a"; fileinto "before";'
        'if header :regex "subject" "${p}" { discard; }'
    )
    compile_script(script)  # accepted
    outcome = run(script)
    assert outcome.actions == (Keep(),)
    assert outcome.error is not None and "unmatched (" in outcome.error
    good = script.replace('"(a"', r'"^\\[dev"')  # the pattern ^\[dev
    assert run(good).actions == (FileInto("before"),)  # discard cancels only the implicit keep


def test_limits_at_compile_and_run_time() -> None:
    long_pattern = "a" * 20
    script = f'require "regex"; if header :regex "subject" "{long_pattern}" {{}}'
    compile_script(script)
    with pytest.raises(SieveError, match="longer than 10 characters"):
        compile_script(script, regex_limits=RegexLimits(max_length=10))
    made = (
        f'require ["regex", "variables"]; set "p" "{long_pattern}"; '
        'if header :regex "subject" "${p}" { discard; }'
    )
    compiled = compile_script(made, regex_limits=RegexLimits(max_length=10))
    outcome = compiled.run(message(), RunLimits(regex=RegexLimits(max_length=10)))
    assert outcome.error is not None and "longer than 10" in outcome.error


def test_config_defaults_match_the_core() -> None:
    section = SieveSection()
    assert RegexLimits(section.regex_max_length, section.regex_max_memory) == RegexLimits()


def test_hasflag_keys_are_checked_flag_by_flag() -> None:
    """hasflag's keys are space-separated flag lists (RFC 5232 §4): each is a pattern."""
    with pytest.raises(SieveError, match="unmatched"):
        compile_script('require ["regex", "imap4flags"]; if hasflag :regex "( )" {}')
    script = 'require ["regex", "imap4flags"]; addflag "b"; if hasflag :regex "^a ^b$" { discard; }'
    assert run(script).actions == (Discard(),)
