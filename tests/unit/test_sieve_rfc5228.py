"""RFC 5228 (Sieve): lexer, parser and validator errors with their lines, the base tests and
commands, match types and comparators, the implicit keep, duplicates, limits and runtime errors,
and the RFC's own examples."""

from __future__ import annotations

import pytest

from pillarbox.queue.routing import PLUS_DELIMITER
from pillarbox.sieve import (
    EXTENSIONS,
    Discard,
    FileInto,
    Keep,
    Outcome,
    Redirect,
    RunLimits,
    SieveError,
    SieveMessage,
    compile_script,
)
from pillarbox.sieve.interpret import SUBADDRESS_SEPARATOR
from pillarbox.sieve.lexer import Kind, tokenize

MESSAGE = (
    b"Return-Path: <bounce@lists.example.org>\r\n"
    b"From: Tim Showalter <tjs@example.COM>\r\n"
    b"To: Group: me@example.com, other+tag@example.net;, ken@example.org\r\n"
    b"Cc: =?utf-8?q?J=C3=BCrgen?= <juergen@example.de>\r\n"
    b"Sender: owner-ietf-mta-filters@imc.org\r\n"
    b"Subject: =?UTF-8?B?TWFrZSBtb25leSBmYXN0?= now\r\n"
    b"X-Caffeine: C8H10N4O2\r\n"
    b"X-Folded: first\r\n  second\r\n"
    b"\r\n"
    b"Hello\r\n"
)


def message(raw: bytes = MESSAGE, **envelope: str) -> SieveMessage:
    return SieveMessage.from_bytes(raw, **envelope)


def run(script: str, msg: SieveMessage | None = None, limits: RunLimits | None = None) -> Outcome:
    return compile_script(script).run(msg or message(), limits)


def holds(test: str, msg: SieveMessage | None = None, requires: str = "") -> bool:
    """Whether ``test`` is true for the message (a script that discards when it is)."""
    outcome = run(f"{requires}if {test} {{ discard; }}", msg)
    assert outcome.error is None
    return outcome.actions == (Discard(),)


# -- lexer -------------------------------------------------------------------------------------


def test_tokens_of_every_kind() -> None:
    tokens = tokenize('IF :Is 10K "a\\"b\\\\c\\d" [ ] ( ) { } , ;')
    assert [(t.kind, t.text) for t in tokens] == [
        (Kind.IDENTIFIER, "if"),
        (Kind.TAG, "is"),
        (Kind.NUMBER, "10K"),
        (Kind.STRING, 'a"b\\cd'),  # §2.4.2: undefined escapes drop the backslash
        *[(Kind.SEPARATOR, c) for c in "[](){},;"],
        (Kind.END, ""),
    ]
    assert tokens[2].number == 10 * 1024


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("1k", 1024), ("2M", 2 << 20), ("3g", 3 << 30), ("2147483647", 2**31 - 1)],
)
def test_numbers_and_quantifiers(text: str, value: int) -> None:
    """§2.4.1: K, M, G are powers of two; at least 2^31 - 1."""
    assert tokenize(text)[0].number == value


def test_multiline_string_dot_stuffing_and_comment() -> None:
    """§2.4.2: a hash comment may follow text:; '..' loses a dot; '.foo' stays."""
    script = "text: # comment\r\nline 1\r\n..dot\r\n.foo\r\n\r\n.\r\n"
    [string, _end] = tokenize(script)
    assert string.text == "line 1\r\n.dot\r\n.foo\r\n\r\n"


def test_bare_lf_line_ends_and_line_numbers() -> None:
    tokens = tokenize('/* one\ntwo */ a\n# hash\nb "x\ny" c\ntext:\nz\n.\nd')
    assert [(t.text, t.line) for t in tokens] == [
        ("a", 2),
        ("b", 4),
        ("x\ny", 4),
        ("c", 5),
        ("z\n", 6),
        ("d", 9),
        ("", 9),
    ]


@pytest.mark.parametrize(
    ("script", "line", "message"),
    [
        ('keep;\n"open', 2, "unterminated quoted string"),
        ("keep;\n\n/* open", 3, "unterminated bracket comment"),
        ("keep text:\nabc\n", 1, "unterminated multi-line string"),
        ("keep text: x\n.\n;", 1, "expected a line break after 'text:'"),
        ("keep;\n: x", 2, "expected a tag name after ':'"),
        ("keep;\n\nkeep @;", 3, "unexpected character '@'"),
        ("keep;\x00", 1, "NUL character in script"),
        ("if size :over 99999999999999999999 {}", 1, "number too large: 99999999999999999999"),
        # parser
        ("keep", 1, "expected ';' or '{' after 'keep', found the end of the script"),
        ("keep;\n}", 2, "unexpected '}'"),
        ("if true {\nkeep;\n", 3, "expected '}' to end the block, found the end of the script"),
        ('if header ["a",\n] "b" {}', 2, "expected a string in the list, found ']'"),
        ('if header ["a" "b"] "c" {}', 1, "expected ']' to end the string list, found a string"),
        ("if anyof (true,\nfalse {}", 2, "expected ')' to end the test list, found '{'"),
        ("if anyof (\n) {}", 2, "expected a test, found ')'"),
    ],
)
def test_syntax_errors_carry_their_line(script: str, line: int, message: str) -> None:
    with pytest.raises(SieveError) as caught:
        compile_script(script)
    assert (caught.value.line, caught.value.message) == (line, message)
    assert str(caught.value) == f"line {line}: {message}"


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "line", "message"),
    [
        ("frobnicate;", 1, "unknown command 'frobnicate'"),
        ("if frobnicate {}", 1, "unknown test 'frobnicate'"),
        ("true;", 1, "unknown command 'true'"),
        ("if keep {}", 1, "unknown test 'keep'"),
        ('\nfileinto "x";', 2, "command 'fileinto' needs require 'fileinto' (RFC 5228 §3.2)"),
        ('if envelope "to" "x" {}', 1, "test 'envelope' needs require 'envelope' (RFC 5228 §3.2)"),
        (
            'require "fileinto";\nredirect :copy "a@b.c";',
            2,
            "tag ':copy' needs require 'copy' (RFC 5228 §3.2)",
        ),
        ('require "x-unknown";', 1, "unsupported extension 'x-unknown'"),
        ('keep;\nrequire "fileinto";', 2, "require is only allowed at the start of the script"),
        (
            'if true { require "fileinto"; }',
            1,
            "require is only allowed at the start of the script",
        ),
        ("else { keep; }", 1, "else without a preceding if"),
        ("if true {} keep; elsif true {}", 1, "elsif without a preceding if"),
        ("if true {} else {} else {}", 1, "else without a preceding if"),
        ("if true;", 1, "if needs a block"),
        ("keep {}", 1, "keep takes no block"),
        ("if {}", 1, "if needs exactly one test"),
        ("if (true) {}", 1, "if needs exactly one test"),
        ("if not (true) {}", 1, "not needs exactly one test"),
        ("if allof true {}", 1, "allof needs a test list in parentheses"),
        ("if true true {}", 1, "true takes no test"),
        ("if size :over 1 true {}", 1, "size takes no test"),
        ("stop 1;", 1, "stop takes 0 positional argument(s), got 1"),
        ("redirect;", 1, "redirect takes 1 positional argument(s), got 0"),
        ('redirect ["a@b.c"];', 1, "redirect argument 1: expected a string, found a string list"),
        ("redirect 5;", 1, "redirect argument 1: expected a string, found a number"),
        ('if header "a" {}', 1, "header takes 2 positional argument(s), got 1"),
        ("if exists 5 {}", 1, "exists argument 1: expected a string list, found a number"),
        ('if header :frob "a" "b" {}', 1, "unknown tag ':frob' for header"),
        ('if header "a" :is "b" {}', 1, "tag ':is' after the positional arguments"),
        ('if header :is :is "a" "b" {}', 1, "tag ':is' given twice"),
        (
            'if header :is :contains "a" "b" {}',
            1,
            "tags ':is' and ':contains' exclude each other (RFC 5228 §2.7)",
        ),
        (
            'if address :all\n:domain "to" "b" {}',
            2,
            "tags ':all' and ':domain' exclude each other (RFC 5228 §2.7)",
        ),
        ('if header :comparator "a" "b" {}', 1, "header takes 2 positional argument(s), got 1"),
        (
            'if header :comparator 5 "a" "b" {}',
            1,
            "tag ':comparator': expected a string, found a number",
        ),
        (
            'if header :comparator "i;foo" "a" "b" {}',
            1,
            "unsupported comparator 'i;foo' (RFC 5228 §2.7.3)",
        ),
        (
            'if header :comparator "i;ascii-numeric" "a" "b" {}',
            1,
            "comparator 'i;ascii-numeric' needs require 'comparator-i;ascii-numeric'",
        ),
        ("if size 100 {}", 1, "size needs :over or :under"),
        (
            "if size :over 1 :under 2 {}",
            1,
            "tags ':over' and ':under' exclude each other (RFC 5228 §2.7)",
        ),
        ('if size :over "1" {}', 1, "tag ':over': expected a number, found a string list"),
        ("if size :under {}", 1, "tag ':under' needs a number"),
        ('if address "subject" "x" {}', 1, "header 'subject' holds no addresses (RFC 5228 §5.1)"),
        ('require "envelope"; if envelope "auth" "x" {}', 1, "unsupported envelope part 'auth'"),
        ('redirect "no address";', 1, "redirect: invalid address 'no address' (RFC 5228 §2.4.2.3)"),
        ("if true {\n if true {\n  if true {} } }", 3, "nested deeper than 2"),
        ("if not not not true {}", 1, "nested deeper than 2"),
        ("if true {\n if true {\n  if true {\n   keep; } } }", 3, "nested deeper than 2"),
    ],
)
def test_validation_errors_carry_their_line(script: str, line: int, message: str) -> None:
    depth = 2 if "nested" in message else 32
    with pytest.raises(SieveError) as caught:
        compile_script(script, max_nesting=depth)
    assert (caught.value.line, caught.value.message) == (line, message)


def test_script_size_limit() -> None:
    compile_script("keep;", max_size=5)
    with pytest.raises(SieveError, match="line 1: script larger than 4 bytes"):
        compile_script("keep;", max_size=4)


def test_always_available_comparators_may_be_required() -> None:
    """§2.7.3: i;octet and i;ascii-casemap need no require, but may have one."""
    compile_script('require ["comparator-i;octet", "comparator-i;ascii-casemap"]; keep;')
    assert "comparator-i;octet" not in EXTENSIONS


def test_case_insensitive_identifiers_and_tags() -> None:
    """§8.1: identifiers and tags ignore case (the RFC's own example writes :DOMAIN)."""
    assert holds('ADDRESS :DOMAIN :IS "from" "example.com"')


# -- tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        ("true", True),
        ("false", False),
        ("not false", True),
        ("allof (true, false)", False),
        ("allof (true, true)", True),
        ("anyof (false, false)", False),
        ("anyof (false, true)", True),
        ('exists "X-Caffeine"', True),
        ('exists ["x-caffeine", "FROM"]', True),
        ('exists ["X-Caffeine", "X-Missing"]', False),
        # §5.7: the RFC's X-Caffeine examples
        ('header :is ["X-Caffeine"] [""]', False),
        ('header :contains ["X-Caffeine"] [""]', True),
        ('header :contains ["X-Missing"] [""]', False),
        ('header "x-caffeine" "c8h10n4o2"', True),
        ('header :comparator "i;octet" "x-caffeine" "c8h10n4o2"', False),
        ('header :comparator "i;octet" "x-caffeine" "C8H10N4O2"', True),
        ('header :is "x-folded" "first  second"', True),  # unfolded
        # §2.7.2: RFC 2047 words decoded before comparing
        ('header :is "subject" "Make money fast now"', True),
        ('header :matches "subject" "*make*money*fast*"', True),
        ('header :contains "cc" "Jürgen"', True),
        ('header :matches "subject" "Make?money*"', True),
        ('header :matches "subject" "Make?money"', False),
        ('header :matches "x-caffeine" "C8H10N4O?"', True),
        ('header :matches "x-caffeine" "C8H10N4O2?"', False),
        ('header :matches "x-caffeine" "*"', True),
        ('header :contains ["to", "cc"] ["nobody", "ken@"]', True),
        # sizes (the message is 300-odd bytes)
        ("size :over 100", True),
        ("size :under 100", False),
        ("size :over 1K", False),
        ("size :under 1K", True),
        # address, §5.1 and §2.7.4
        ('address :is "from" "tjs@example.com"', True),
        ('address :all :is "from" "TJS@EXAMPLE.COM"', True),
        ('address :all :comparator "i;octet" :is "from" "tjs@example.com"', False),
        ('address :localpart "from" "tjs"', True),
        ('address :domain "from" "example.com"', True),
        ('address :domain :is "from" "Tim Showalter"', False),  # never the phrase
        ('address :contains "from" "Showalter"', False),
        ('address :is "to" "me@example.com"', True),  # inside a group
        ('address :is "to" "ken@example.org"', True),  # after the group
        ('address :contains "to" "Group"', False),  # never the group name
        ('address :domain :is "cc" "example.de"', True),
        ('address :is "bcc" ""', False),
    ],
)
def test_base_tests(test: str, expected: bool) -> None:
    assert holds(test) is expected


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("frob*", "frobnitzm", True),
        ("*nit*", "frobnitzm", True),
        ("f?obnitzm", "frobnitzm", True),
        ("f?bnitzm", "frobnitzm", False),
        ("*", "", True),
        ("?", "", False),
        ("a\\\\*b", "a*b", True),  # §2.7.1: "\\\\*" in a script is an escaped "*"
        ("a\\\\*b", "axxb", False),
        ("a\\\\?b", "a?b", True),
        ("a\\\\?b", "axb", False),
        ("[a].(b)+", "[A].(B)+", True),  # no regex metacharacters leak
        ("*.example.com", "mail.EXAMPLE.com", True),
        ("x*y*z", "x\ny z", True),
    ],
)
def test_matches_wildcards(pattern: str, value: str, expected: bool) -> None:
    raw = f"Subject: {value}\r\n\r\n".encode()
    if "\n" in value:
        raw = b"Subject: x\r\n y z\r\n\r\n"  # folded: unfolds to "x y z"
        value = "x y z"
    assert holds(f'header :matches "subject" "{pattern}"', message(raw)) is expected


def test_casemap_folds_only_ascii() -> None:
    """RFC 4790 §9.2: i;ascii-casemap maps A-Z only; "Ü" and "ü" differ."""
    msg = message("Subject: ÜBER\r\n\r\n".encode())
    assert holds('header :is "subject" "über"', msg) is False
    assert holds('header :is "subject" "ÜbEr"', msg) is True
    assert holds('header :matches "subject" "Ü*r"', msg) is True
    assert holds('header :matches "subject" "ü*R"', msg) is False


# -- actions and the implicit keep ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "actions"),
    [
        ("", (Keep(),)),  # §2.10.2: implicit keep
        ("keep;", (Keep(),)),
        ("keep; keep;", (Keep(),)),  # §2.10.3
        ("discard;", (Discard(),)),
        ("discard; keep;", (Keep(),)),  # a later keep still keeps
        ("keep; discard;", (Keep(),)),
        ('redirect "a@example.net";', (Redirect("a@example.net"),)),
        ('redirect "A <a@example.net>"; redirect "a@example.net";', (Redirect("a@example.net"),)),
        ('redirect "a@example.net"; keep;', (Redirect("a@example.net"), Keep())),
        ('redirect "a@example.net"; discard;', (Redirect("a@example.net"), Discard())),
        (
            'require "fileinto"; fileinto "a"; fileinto "a"; fileinto "b";',
            (FileInto("a"), FileInto("b")),
        ),
        ('require "fileinto"; fileinto "INBOX.x";', (FileInto("INBOX.x"),)),
        ("stop; discard;", (Keep(),)),
        ("discard; stop; keep;", (Discard(),)),
        ("if true { if true { stop; } } discard;", (Keep(),)),
        ("if false { discard; } elsif false { discard; } else { keep; }", (Keep(),)),
        ("if false { keep; } elsif true { discard; } else { keep; }", (Discard(),)),
    ],
)
def test_actions(script: str, actions: tuple[object, ...]) -> None:
    outcome = run(script)
    assert outcome.error is None
    assert outcome.actions == actions


def test_rfc5228_section_9_extended_example() -> None:
    """The RFC's extended example, on messages taking each branch."""
    script = compile_script(
        """#
# Example Sieve Filter
# Declare any optional features or extension used by the script
#
require ["fileinto"];

#
# Handle messages from known mailing lists
# Move messages from IETF filter discussion list to filter mailbox
#
if header :is "Sender" "owner-ietf-mta-filters@imc.org"
        {
        fileinto "filter";  # move to "filter" mailbox
        }
#
# Keep all messages to or from people in my company
#
elsif address :DOMAIN :is ["From", "To"] "example.com"
        {
        keep;               # keep in "In" mailbox
        }

#
# Try and catch unsolicited email.  If a message is not to me,
# or it contains a subject known to be spam, file it away.
#
elsif anyof (NOT address :all :contains
               ["To", "Cc", "Bcc"] "me@example.com",
             header :matches "subject"
               ["*make*money*fast*", "*university*dipl*mas*"])
        {
        fileinto "spam";   # move to "spam" mailbox
        }
else
        {
        # Move all other (non-company) mail to "personal"
        # mailbox.
        fileinto "personal";
        }
"""
    )
    cases = {
        MESSAGE: FileInto("filter"),
        b"From: a@EXAMPLE.com\r\nTo: me@example.com\r\n\r\n": Keep(),
        b"From: a@example.org\r\nTo: you@example.org\r\n\r\n": FileInto("spam"),
        b"From: a@example.org\r\nTo: me@example.com.au\r\nSubject: University diplomas\r\n\r\n": (
            FileInto("spam")
        ),
        b"From: a@example.org\r\nTo: me@example.com.au\r\nSubject: lunch\r\n\r\n": FileInto(
            "personal"
        ),
    }
    for raw, action in cases.items():
        assert script.run(message(raw)).actions == (action,), raw


# -- limits and runtime errors -------------------------------------------------------------------


def test_too_many_redirects_is_a_runtime_error_and_keeps() -> None:
    """§2.10.6: the script's actions are dropped; the message gets the implicit keep."""
    script = 'redirect "a@example.net"; redirect "b@example.net"; redirect "c@example.net";'
    outcome = run(script, limits=RunLimits(max_redirects=2))
    assert outcome == Outcome((Keep(),), error="more than 2 redirects")
    assert len(run(script, limits=RunLimits(max_redirects=3)).actions) == 3


def test_too_many_actions_is_a_runtime_error_and_keeps() -> None:
    script = 'require "fileinto"; fileinto "a"; fileinto "b"; fileinto "a"; keep;'
    assert run(script, limits=RunLimits(max_actions=3)).error is None  # "a" twice is one
    outcome = run(script, limits=RunLimits(max_actions=2))
    assert outcome == Outcome((Keep(),), error="more than 2 actions")


def test_subaddress_separator_is_the_routing_delimiter() -> None:
    """RFC 5233 :user/:detail split where Pillarbox's routing splits plus-addresses."""
    assert SUBADDRESS_SEPARATOR == PLUS_DELIMITER


def test_a_compiled_script_runs_many_messages() -> None:
    script = compile_script('if header :contains "subject" "a" { discard; }')
    assert script.run(message(b"Subject: a\r\n\r\n")).actions == (Discard(),)
    assert script.run(message(b"Subject: b\r\n\r\n")).actions == (Keep(),)
