"""The Sieve extensions in EXTENSIONS, each against its RFC: envelope (RFC 5228 §5.4),
encoded-character (§2.4.2.4), copy (RFC 3894), imap4flags (RFC 5232), vacation (RFC 5230),
subaddress (RFC 5233), body (RFC 5173), relational (RFC 5231) with i;ascii-numeric (RFC 4790),
variables (RFC 5229)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pillarbox.config import SieveSection
from pillarbox.sieve import (
    EXTENSIONS,
    Discard,
    FileInto,
    Keep,
    Outcome,
    Redirect,
    Reject,
    RunLimits,
    SieveError,
    SieveMessage,
    Vacation,
    compile_script,
)
from pillarbox.sieve.cache import ScriptCache
from pillarbox.sievescripts import InvalidScript, ScriptLimits, compile_checked

MESSAGE = (
    b"From: Ken <ken+lists@example.org>\r\n"
    b"To: tjs+sieve@example.com, ken@example.org\r\n"
    b"Cc: a@example.net, b@example.net, c@example.net\r\n"
    b"Subject: $$$ 100 dollars\r\n"
    b"X-Spam-Score: 12\r\n"
    b"X-Priority: 3\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="b"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--b\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Caf=C3=A9 tonight?\r\n"
    b"--b\r\n"
    b"Content-Type: text/html\r\n"
    b"\r\n"
    b"<p>Cafe <b>tonight</b></p>\r\n"
    b"--b\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"c2VjcmV0IHBheWxvYWQ=\r\n"
    b"--b--\r\n"
)


def message(raw: bytes = MESSAGE, **envelope: str) -> SieveMessage:
    return SieveMessage.from_bytes(raw, **envelope)


def run(script: str, msg: SieveMessage | None = None) -> Outcome:
    return compile_script(script).run(msg or message())


def holds(requires: str, test: str, msg: SieveMessage | None = None) -> bool:
    outcome = run(f"require {requires}; if {test} {{ discard; }}", msg)
    assert outcome.error is None
    return outcome.actions == (Discard(),)


def test_extensions_listed() -> None:
    assert EXTENSIONS == (
        "body",
        "comparator-i;ascii-numeric",
        "copy",
        "date",
        "editheader",
        "encoded-character",
        "enotify",
        "duplicate",
        "envelope",
        "environment",
        "ereject",
        "fcc",
        "fileinto",
        "ihave",
        "imap4flags",
        "include",
        "index",
        "mailbox",
        "mboxmetadata",
        "regex",
        "reject",
        "relational",
        "servermetadata",
        "spamtest",
        "spamtestplus",
        "special-use",
        "subaddress",
        "vacation",
        "vacation-seconds",
        "variables",
    )


# -- envelope (RFC 5228 §5.4) -------------------------------------------------------------------

ENVELOPE = {"envelope_from": "Bounce+x@Lists.example.org", "envelope_to": "tjs+sieve@example.com"}


@pytest.mark.parametrize(
    ("test", "envelope", "expected"),
    [
        ('envelope "from" "bounce+x@lists.example.org"', ENVELOPE, True),
        ('envelope :domain "from" "lists.example.org"', ENVELOPE, True),
        ('envelope :localpart :comparator "i;octet" "from" "Bounce+x"', ENVELOPE, True),
        ('envelope :all "to" "tjs+sieve@example.com"', ENVELOPE, True),
        ('envelope ["from", "to"] "tjs+sieve@example.com"', ENVELOPE, True),
        ('envelope :contains "from" "example.com"', ENVELOPE, False),
        # the null reverse-path is "" whatever the address part
        ('envelope :is "from" ""', {"envelope_from": "", "envelope_to": "a@b.c"}, True),
        ('envelope :domain :is "from" ""', {"envelope_from": "", "envelope_to": "a@b.c"}, True),
        ('envelope :is "from" ""', ENVELOPE, False),
    ],
)
def test_envelope(test: str, envelope: dict[str, str], expected: bool) -> None:
    assert holds('"envelope"', test, message(**envelope)) is expected


# -- subaddress (RFC 5233) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        ('address :user "to" "tjs"', True),
        ('address :detail "to" "sieve"', True),
        ('address :user "from" "ken"', True),
        ('address :detail "from" "lists"', True),
        # ken@example.org in To has no detail: :detail matches nothing, not even ""
        ('address :detail :is "to" ""', False),
        ('address :detail :matches "to" "*"', True),  # tjs+sieve's "sieve"
        ('address :user :is "to" "ken"', True),
        ('envelope :detail "to" "sieve"', True),
        ('envelope :user "to" "tjs"', True),
        ('envelope :detail "from" "x"', True),
    ],
)
def test_subaddress(test: str, expected: bool) -> None:
    msg = message(**ENVELOPE)
    assert holds('["subaddress", "envelope"]', test, msg) is expected


def test_detail_empty_after_separator() -> None:
    """RFC 5233 §4: "user+@…" has an empty detail, which :is "" matches."""
    msg = message(b"To: user+@example.com\r\n\r\n")
    assert holds('"subaddress"', 'address :detail :is "to" ""', msg) is True
    msg = message(b"To: user@example.com\r\n\r\n")
    assert holds('"subaddress"', 'address :detail :is "to" ""', msg) is False


# -- encoded-character (RFC 5228 §2.4.2.4) -----------------------------------------------------


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("$${hex:40}", "$@"),
        ("${hex: 40 }", "@"),
        ("${HEX: 40}", "@"),
        ("${hex:40", "${hex:40"),
        ("${hex:400}", "${hex:400}"),
        ("${hex:4${hex:30}}", "${hex:40}"),
        ("${unicode:40}", "@"),
        ("${ unicode:40}", "${ unicode:40}"),
        ("${UNICODE:40}", "@"),
        ("${UnICoDE:0000040}", "@"),
        ("${Unicode:40}", "@"),
        ("${unicode:e9 20 263a}", "é ☺"),
        ("${hex:c3 a9}", "é"),
    ],
)
def test_encoded_character_rfc_examples(written: str, value: str) -> None:
    """The RFC's own table of valid and invalid encodings."""
    raw = f"Subject: {value}\r\n\r\n".encode()
    assert holds('"encoded-character"', f'header :is "subject" "{written}"', message(raw))


def test_encoded_character_only_when_required() -> None:
    raw = b"Subject: $$$\r\n\r\n"
    assert holds('"encoded-character"', 'header :contains "Subject" "$${hex:24 24}"', message(raw))
    outcome = run('if header :contains "Subject" "$${hex:24 24}" { discard; }', message(raw))
    assert outcome.actions == (Keep(),)


def test_encoded_character_out_of_range_is_an_error() -> None:
    with pytest.raises(SieveError) as caught:
        compile_script('require "encoded-character";\nif header "a" "${unicode:D800}" {}')
    assert (caught.value.line, caught.value.message) == (
        2,
        "invalid Unicode character U+D800 in ${unicode:…}",
    )
    compile_script('require "encoded-character"; if header "a" "${unicode:D80}" {}')


# -- copy (RFC 3894) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "actions"),
    [
        ('redirect :copy "a@example.net";', (Redirect("a@example.net", copy=True), Keep())),
        ('fileinto :copy "x";', (FileInto("x", copy=True), Keep())),
        ('fileinto :copy "x"; discard;', (FileInto("x", copy=True),)),
        ('redirect :copy "a@example.net"; redirect "a@example.net";', (Redirect("a@example.net"),)),
    ],
)
def test_copy(script: str, actions: tuple[object, ...]) -> None:
    assert run(f'require ["copy", "fileinto"]; {script}').actions == actions


# -- imap4flags (RFC 5232) -----------------------------------------------------------------------

FLAGS = 'require ["imap4flags", "fileinto"]; '


@pytest.mark.parametrize(
    ("script", "actions"),
    [
        ('setflag "\\\\Seen";', (Keep(("\\Seen",)),)),  # the implicit keep takes the flags
        (
            'addflag ["\\\\seen", "$Label1 \\\\Flagged"];',
            (Keep(("\\Seen", "$Label1", "\\Flagged")),),
        ),
        ('addflag "a"; addflag "A b";', (Keep(("a", "b")),)),  # no case-variant duplicates
        ('setflag "a b c"; removeflag "B";', (Keep(("a", "c")),)),
        ('setflag "a"; setflag "b";', (Keep(("b",)),)),
        ('addflag "\\\\Recent \\\\Bogus ok bad(atom";', (Keep(("ok",)),)),  # invalid ones dropped
        ('setflag "a"; fileinto "x"; setflag "b"; keep;', (FileInto("x", ("a",)), Keep(("b",)))),
        ('setflag "a"; fileinto :flags "z" "x";', (FileInto("x", ("z",)),)),
        ('setflag "a"; keep :flags ["y", "z"];', (Keep(("y", "z")),)),
        ('fileinto :flags "a" "x"; fileinto :flags "b" "x";', (FileInto("x", ("a", "b")),)),
        ('keep :flags "a"; keep :flags "b";', (Keep(("a", "b")),)),
    ],
)
def test_imap4flags_actions(script: str, actions: tuple[object, ...]) -> None:
    assert run(FLAGS + script).actions == actions


@pytest.mark.parametrize(
    ("setup", "test", "expected"),
    [
        ('setflag "\\\\Seen Work";', 'hasflag "work"', True),
        ('setflag "\\\\Seen Work";', 'hasflag :comparator "i;octet" "work"', False),
        ('setflag "\\\\Seen Work";', 'hasflag ["x", "\\\\seen"]', True),
        ('setflag "\\\\Seen Work";', 'hasflag :contains "or"', True),
        ('setflag "\\\\Seen Work";', 'hasflag :matches "W*"', True),
        ("", 'hasflag :matches "*"', False),
        ('setflag "a"; removeflag "a";', 'hasflag "a"', False),
    ],
)
def test_hasflag(setup: str, test: str, expected: bool) -> None:
    outcome = run(f"{FLAGS}{setup} if {test} {{ discard; }}")
    assert (outcome.actions == (Discard(),)) is expected


# -- vacation (RFC 5230) -------------------------------------------------------------------------


def test_vacation_leaves_the_implicit_keep() -> None:
    [vacation, keep] = run('require "vacation"; vacation "Gone fishing.";').actions
    assert keep == Keep()
    assert isinstance(vacation, Vacation)
    assert vacation.reason == "Gone fishing."
    assert (vacation.days, vacation.subject, vacation.from_, vacation.mime) == (
        None,
        None,
        None,
        False,
    )
    assert vacation.handle.startswith("auto:")


def test_vacation_parameters() -> None:
    script = """require "vacation";
vacation :days 23 :addresses ["tjs@example.edu", "ts4z@landru.example.edu"]
  :subject "Out" :from "Tim <tjs@example.edu>" :handle "away" :mime text:
Content-Type: text/plain

I'm away.
.
;"""
    [vacation, _keep] = run(script).actions
    assert vacation == Vacation(
        reason="Content-Type: text/plain\n\nI'm away.\n",
        handle="away",
        subject="Out",
        from_="Tim <tjs@example.edu>",
        addresses=("tjs@example.edu", "ts4z@landru.example.edu"),
        days=23,
        mime=True,
    )


def test_vacation_handles_tell_replies_apart() -> None:
    """RFC 5230 §4.2: without :handle, the parameters name the reply; a subject and a reason
    with the same text are different replies."""

    def handle(args: str) -> str:
        [vacation, _] = run(f'require "vacation"; vacation {args};').actions
        assert isinstance(vacation, Vacation)
        return vacation.handle

    assert handle('"a"') == handle('"a"')
    assert handle('"a"') != handle('"b"')
    assert handle(':subject "x" "y"') != handle(':subject "xy" ""')
    assert handle(':days 3 "a"') == handle(':days 9 "a"')
    assert handle(':handle "h" "a"') == handle(':handle "h" "b"') == "h"


def test_second_vacation_is_a_runtime_error() -> None:
    """RFC 5230 §4.7: the script fails; the message is kept."""
    outcome = run('require "vacation"; vacation "a"; discard; vacation "b";')
    assert outcome == Outcome((Keep(),), error="vacation executed twice (RFC 5230 §4.7)")


def test_vacation_from_must_be_an_address() -> None:
    with pytest.raises(SieveError, match="vacation :from: invalid address 'nobody'"):
        compile_script('require "vacation"; vacation :from "nobody" "x";')


# -- relational (RFC 5231) and i;ascii-numeric (RFC 4790 §9.1) ----------------------------------

REL = '["relational", "comparator-i;ascii-numeric"]'


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        ('header :value "gt" :comparator "i;ascii-numeric" "x-spam-score" "10"', True),
        ('header :value "gt" :comparator "i;ascii-numeric" "x-spam-score" "12"', False),
        ('header :value "ge" :comparator "i;ascii-numeric" "x-spam-score" "12"', True),
        ('header :value "lt" :comparator "i;ascii-numeric" "x-spam-score" "9"', False),
        ('header :value "le" :comparator "i;ascii-numeric" "x-spam-score" "012"', True),
        ('header :value "eq" :comparator "i;ascii-numeric" "x-spam-score" "12"', True),
        ('header :value "ne" :comparator "i;ascii-numeric" "x-spam-score" "12"', False),
        # as text, "12" sorts before "9"
        ('header :value "lt" "x-spam-score" "9"', True),
        ('header :value "gt" "subject" "$"', True),
        # no leading digits is positive infinity (RFC 4790 §9.1.1)
        ('header :value "gt" :comparator "i;ascii-numeric" "subject" "999999"', True),
        ('header :is :comparator "i;ascii-numeric" "x-priority" "03"', True),
        # :count counts entities: addresses for address, fields for header
        ('address :count "eq" :comparator "i;ascii-numeric" "cc" "3"', True),
        ('address :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] "5"', True),
        ('address :count "gt" :comparator "i;ascii-numeric" ["to", "cc"] "5"', False),
        ('header :count "eq" :comparator "i;ascii-numeric" "cc" "1"', True),
        ('header :count "eq" :comparator "i;ascii-numeric" "x-missing" "0"', True),
        ('header :value "GT" :comparator "i;ascii-numeric" "x-spam-score" "10"', True),
    ],
)
def test_relational(test: str, expected: bool) -> None:
    assert holds(REL, test) is expected


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (
            'require "relational"; if header :value "xx" "a" "b" {}',
            "invalid relational operator 'xx' (RFC 5231 §5)",
        ),
        (
            f'require {REL}; if header :contains :comparator "i;ascii-numeric" "a" "1" {{}}',
            "comparator 'i;ascii-numeric' cannot do :contains",
        ),
        (
            'if header :count "eq" "a" "1" {}',
            "tag ':count' needs require 'relational' (RFC 5228 §3.2)",
        ),
    ],
)
def test_relational_errors(script: str, message: str) -> None:
    with pytest.raises(SieveError) as caught:
        compile_script(script)
    assert caught.value.message == message


# -- body (RFC 5173) -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        ('body :contains "café tonight"', True),  # :text, transfer- and charset-decoded
        ('body :text :contains "<b>tonight</b>"', True),  # text/html is text
        ('body :contains "secret"', False),  # not a text part
        ('body :content "application" :contains "secret payload"', True),  # decoded
        ('body :content "text/html" :contains "caf\u00e9"', False),
        ('body :content "text/plain" :contains "café"', True),
        ('body :content "" :contains "secret"', True),
        ('body :raw :contains "Caf=C3=A9"', True),  # undecoded
        ('body :raw :contains "c2VjcmV0IHBheWxvYWQ="', True),
        ('body :raw :contains "preamble"', True),
        ('body :raw :contains "X-Spam-Score"', False),  # the body only
        ('body :matches "*tonight*"', True),
    ],
)
def test_body(test: str, expected: bool) -> None:
    assert holds('"body"', test) is expected


def test_rfc5231_section_6_examples() -> None:
    """RFC 5231 §6: :count counts addresses for address, fields for header."""
    msg = message(
        b"Received: from a\r\nReceived: from b\r\nSubject: example\r\n"
        b"To: foo@example.com, baz@example.com\r\nCc: qux@example.com\r\n\r\n"
    )
    cases = {
        'address :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] ["3"]': True,
        'anyof (address :count "ge" :comparator "i;ascii-numeric" ["to"] ["3"],'
        ' address :count "ge" :comparator "i;ascii-numeric" ["cc"] ["3"])': False,
        'header :count "ge" :comparator "i;ascii-numeric" ["received"] ["3"]': False,
        'header :count "ge" :comparator "i;ascii-numeric" ["received", "subject"] ["3"]': True,
        'header :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] ["3"]': False,
    }
    for test, expected in cases.items():
        assert holds(REL, test, msg) is expected, test


def test_rfc5233_style_subaddress_filing() -> None:
    """The subaddress RFC's filing example: by user, by detail, and the empty detail."""
    script = compile_script(
        'require ["envelope", "subaddress", "fileinto"];\n'
        'if envelope :user "to" "postmaster" { fileinto "inbox.postmaster"; stop; }\n'
        'if envelope :detail :is "to" "mta-filters" { fileinto "inbox.ietf-mta-filters"; }\n'
        'if envelope :detail :is "to" "" { fileinto "inbox.spam"; }\n'
    )
    cases = {
        "postmaster+x@example.org": (FileInto("inbox.postmaster"),),
        "ken+mta-filters@example.org": (FileInto("inbox.ietf-mta-filters"),),
        "ken+@example.org": (FileInto("inbox.spam"),),
        "ken@example.org": (Keep(),),
    }
    for rcpt, actions in cases.items():
        assert script.run(message(envelope_to=rcpt)).actions == actions, rcpt


def test_rfc5230_example() -> None:
    """RFC 5230 §4.8's first example, as the action it yields."""
    [vacation, keep] = run(
        'require "vacation";\n'
        'vacation :days 23 :addresses ["tjs@example.edu",\n'
        '                              "ts4z@landru.example.edu"]\n'
        "   \"I'm away until October 19.\n"
        "   If it's an emergency, call 911, I guess.\" ;\n"
    ).actions
    assert keep == Keep()
    assert isinstance(vacation, Vacation)
    assert vacation.days == 23
    assert vacation.addresses == ("tjs@example.edu", "ts4z@landru.example.edu")
    assert vacation.reason.startswith("I'm away until October 19.\n")


# -- variables (RFC 5229) ----------------------------------------------------------------------

LIST_MESSAGE = (
    b"From: Ken <ken+lists@example.org>\r\n"
    b"To: coyote@ACME.Example.COM\r\n"
    b"Subject: [acme-users] [fwd] version 1.0 is out\r\n"
    b"List-ID: Acme users <acme-users@lists.example.com>\r\n"
    b"\r\n"
    b"Body here.\r\n"
)


def folders(script: str, raw: bytes = LIST_MESSAGE, **kwargs: int) -> list[str]:
    """The mailboxes ``script`` (requiring fileinto and variables) files into."""
    outcome = compile_script(f'require ["fileinto", "variables"];\n{script}').run(
        message(raw, envelope_from="bounce@lists.example.com", envelope_to="me@example.org"),
        RunLimits(**kwargs),
    )
    assert outcome.error is None, outcome.error
    return [a.mailbox for a in outcome.actions if isinstance(a, FileInto)]


def test_rfc5229_section_3_2_examples() -> None:
    """The examples of §3.2, with what their comments say the match variables hold."""
    script = """
if header :matches "List-ID" "*<*@*" {
    fileinto "INBOX.lists.${2}";
}
if header :matches "Subject" "[*] *" {
    fileinto "INBOX.lists.${1}";
    fileinto "rest.${2}";
}
if address :matches ["To", "Cc"] ["coyote@**.com", "wile@**.com"] {
    fileinto "INBOX.business.${2}";
    fileinto "whole.${0}.empty.${1}";
}
"""
    assert folders(script) == [
        "INBOX.lists.acme-users",
        "rest.[fwd] version 1.0 is out",
        "INBOX.business.ACME.Example",
        "whole.coyote@ACME.Example.COM.empty.",
    ]


def test_rfc5229_section_3_2_untaken_tests_set_nothing() -> None:
    """§3.2's last example: a test not evaluated (anyof short-cuts) sets no match variable."""
    script = """
if anyof (true, address :domain :matches "To" "*.com") { fileinto "x${1}"; }
"""
    assert folders(script) == ["x"]


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        # each "?" is a match variable too, in pattern order; stars match as little as they can
        (
            'if header :matches "Subject" "*?*?*" { fileinto "${1}|${2}|${3}|${4}|${5}"; }',
            "|[||a|cme-users] [fwd] version 1.0 is out",
        ),
        # a failed :matches leaves the earlier values (§3.2)
        (
            'if header :matches "Subject" "[*]*" {}\n'
            'if header :matches "Subject" "nomatch*" {}\nfileinto "${1}";',
            "acme-users",
        ),
        # :is and :contains set none
        (
            'if header :matches "Subject" "[*]*" {}\n'
            'if header :contains "Subject" "fwd" { fileinto "${1}"; }',
            "acme-users",
        ),
        # the first value that matches, trying every key on a value before the next value
        (
            'if header :matches ["X-None", "Subject", "To"] ["*@*", "[*]*"] { fileinto "${1}"; }',
            "acme-users",
        ),
        ('if header :matches "To" ["*@*", "*"] { fileinto "${1}"; }', "coyote"),
        # a match variable past the last wildcard, or one never set, is empty
        ('if header :matches "To" "*@*" { fileinto "[${3}${9}${10}${nothing}]"; }', "[]"),
        # escaped wildcards are not variables
        ('if header :matches "Subject" "\\\\[*\\\\]*" { fileinto "${1}"; }', "acme-users"),
        ('if envelope :matches "from" "*@*" { fileinto "${2}"; }', "lists.example.com"),
        # the string test (§5) sets them too; an expanded key's wildcards are wildcards
        ('set "p" "*-*"; if string :matches "a-b-c" "${p}" { fileinto "${1}+${2}"; }', "a+b-c"),
    ],
)
def test_match_variables(script: str, expected: str) -> None:
    requires = '"envelope", ' if "envelope" in script else ""
    outcome = compile_script(f'require [{requires}"fileinto", "variables"];\n{script}').run(
        message(LIST_MESSAGE, envelope_from="bounce@lists.example.com", envelope_to="me@x.org")
    )
    assert [a.mailbox for a in outcome.actions if isinstance(a, FileInto)] == [expected]


def test_body_sets_no_match_variables() -> None:
    """As in Pigeonhole: body :matches matches but leaves ${1} as it was."""
    script = 'require ["fileinto", "variables", "body"];\n'
    script += 'if body :matches "*here*" { fileinto "a.${1}"; }'
    assert compile_script(script).run(message(LIST_MESSAGE)).actions == (FileInto("a."),)


@pytest.mark.parametrize(
    ("modifiers", "value", "expected"),
    [
        # RFC 5229 §4.1's examples
        (":length", "juMBlEd lETteRS", "15"),
        (":lower", "juMBlEd lETteRS", "jumbled letters"),
        (":upperfirst", "juMBlEd lETteRS", "JuMBlEd lETteRS"),
        (":upperfirst :lower", "juMBlEd lETteRS", "Jumbled letters"),
        (":lower :upperfirst", "juMBlEd lETteRS", "Jumbled letters"),  # precedence, not order
        (":quotewildcard", "Rock*", "Rock\\*"),
        (":quotewildcard", "a?b\\\\c", "a\\?b\\\\c"),  # Sieve's "a?b\\c" is a?b\c
        (":upper", "juMBlEd lETteRS", "JUMBLED LETTERS"),
        (":lowerfirst", "ABC", "aBC"),
        (":length :quotewildcard", "a*", "3"),  # quoted first (20), then measured (10)
        (":length", "h\u00e9\u00e9", "3"),  # characters, not octets
        (":upper", "\u00e9a", "\u00e9A"),  # A–Z only, as i;ascii-casemap and Pigeonhole
        ("", "${x}${x}", "abab"),
    ],
)
def test_set_modifiers(modifiers: str, value: str, expected: str) -> None:
    script = f'set "x" "ab"; set {modifiers} "b" "{value}"; fileinto "${{b}}";'
    assert folders(script) == [expected]


def test_names_ignore_case_and_expansion_is_done_once() -> None:
    script = 'set "Company" "ACME"; set "raw" "${company}"; set "ref" "${Company}x${";\n'
    script += 'set "inner" "${President, ${Company} Inc.}"; set "lit" "\\${raw}";\n'
    script += 'fileinto "${COMPANY}|${REF}|${inner}"; set "v" "${r"; fileinto "${v}aw}";'
    assert folders(script) == ["ACME|ACMEx${|${President, ACME Inc.}", "${raw}"]


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        ('string :is "${a}" "xy"', True),
        ('string :is "${a}" "x"', False),
        ('string :is "${none}" ""', True),
        ('string :contains ["${a}", "q"] "y"', True),
        ('string :count "eq" ["${none}", "", "${a}"] "1"', True),  # "" counts 0 (§5)
        ('string :count "eq" ["", ""] "0"', True),
        ('string :value "gt" :comparator "i;ascii-numeric" "${n}" "9"', True),
        ('not string :is "${a}" "${b}"', True),
    ],
)
def test_string_test(test: str, expected: bool) -> None:
    script = (
        'require ["variables", "relational", "comparator-i;ascii-numeric"];\n'
        'set "a" "xy"; set "b" "XY!"; set "n" "10";\n'
        f"if {test} {{ discard; }}"
    )
    assert (run(script).actions == (Discard(),)) is expected


def test_variables_in_every_argument_that_reads_them() -> None:
    script = """require ["variables", "fileinto", "imap4flags", "copy", "envelope", "vacation"];
set "h" "subject"; set "f" "\\\\Seen $Tag"; set "who" "ken@example.org";
set "e" "from"; set "d" "lists.example.com";
if allof (header :contains "${h}" "acme", exists "${h}", envelope :domain "${e}" "${d}") {
    addflag "${f}";
    redirect :copy "${who}";
    vacation :subject "Re: ${h}" :handle "h-${e}" :from "${who}" "Away: ${d}";
}
"""
    outcome = compile_script(script).run(
        message(LIST_MESSAGE, envelope_from="bounce@lists.example.com", envelope_to="me@x.org")
    )
    assert outcome.actions == (
        Redirect("ken@example.org", copy=True),
        Vacation(
            reason="Away: lists.example.com",
            handle="h-from",
            subject="Re: subject",
            from_="ken@example.org",
        ),
        Keep(("\\Seen", "$Tag")),
    )


def test_an_invalid_address_made_of_variables_is_a_runtime_error() -> None:
    outcome = run('require "variables"; set "a" "not an address"; redirect "${a}";')
    assert outcome.actions == (Keep(),)
    assert outcome.error is not None and "invalid address" in outcome.error


def test_values_are_cut_at_max_variable_size() -> None:
    script = 'set "a" "\u00e9\u00e9\u00e9"; set "b" "${a}${a}"; set :length "n" "${b}";'
    script += 'if header :matches "subject" "*" { set :length "m" "${0}"; }'
    script += 'fileinto "${n}.${m}";'
    assert folders(script, max_variable_size=5) == ["2.5"]  # é is two octets
    assert folders(script) == ["6.37"]


@pytest.mark.parametrize(
    ("script", "message_part"),
    [
        ('require "variables"; set "1" "x";', "invalid variable name '1'"),
        ('require "variables"; set "a.b" "x";', "invalid variable name 'a.b'"),
        ('require "variables"; set "" "x";', "invalid variable name ''"),
        ('require "variables"; set "a";', "takes 2 positional"),
        ('require "variables"; set :lower :upper "a" "x";', "exclude each other"),
        ('require "variables"; set :lowerfirst :upperfirst "a" "x";', "exclude each other"),
        ('require "variables"; set :length :length "a" "x";', "given twice"),
        ('require "variables"; set :count "a" "x";', "unknown tag"),
        ('require ["variables", "fileinto"]; fileinto "${a.b}";', "namespace 'a'"),
        ('require "variables"; if string :is "${env.x}" "" {}', "namespace 'env'"),
        ('set "a" "x";', "needs require 'variables'"),
        ('if string "a" "b" {}', "needs require 'variables'"),
        ('require "variables"; if string "a" {}', "takes 2 positional"),
    ],
)
def test_variables_compile_errors(script: str, message_part: str) -> None:
    with pytest.raises(SieveError, match=re.escape(message_part)):
        compile_script(script)


def test_without_the_extension_references_are_text() -> None:
    script = 'require "fileinto"; fileinto "${a.b}";'
    assert run(script).actions == (FileInto("${a.b}"),)


def test_checks_of_values_wait_for_run_time_when_they_hold_variables() -> None:
    """address on a non-address header, an envelope part, a redirect address: constants are
    refused at compile time, values made of variables judged when the script runs."""
    compile_script('require "variables"; if address "${h}" "a" {}')
    compile_script('require ["variables", "envelope"]; if envelope "${p}" "a" {}')
    compile_script('require "variables"; redirect "${to}";')
    with pytest.raises(SieveError):
        compile_script('require "variables"; if address "subject" "a" {}')
    script = 'require ["variables", "envelope"]; set "p" "auth";'
    script += 'if envelope :matches "${p}" "*" { discard; }'
    assert run(script).actions == (Keep(),)


def test_number_of_variables_is_bounded() -> None:
    names = "".join(f'set "v{n}" "x"; set "V{n}" "y";' for n in range(3))
    compile_script(f'require "variables"; {names}', max_variables=3)
    with pytest.raises(SieveError, match="more than 2 variables"):
        compile_script(f'require "variables"; {names}', max_variables=2)


def test_imap4flags_on_variables() -> None:
    """RFC 5232 §3, §4 with variables: a first argument names the variable the flags live in."""
    script = r"""require ["fileinto", "variables", "imap4flags"];
setflag "f" "\\Seen b";
addflag "f" ["c", "d"];
removeflag "F" "b";
fileinto "a.${f}";
set "g" "x y";
if hasflag ["f", "g"] "y" { fileinto "b"; }
if hasflag :matches "f" "c*" { fileinto "c${0}"; }
if hasflag "c" { fileinto "never"; }
addflag "g" "Z \\bogus";
fileinto "e.${g}";
"""
    outcome = compile_script(script).run(message())
    assert [a.mailbox for a in outcome.actions if isinstance(a, FileInto)] == [
        "a.\\Seen c d",
        "b",
        "cc",
        "e.x y Z",
    ]
    assert outcome.actions[-1] == FileInto("e.x y Z")  # the internal variable stayed empty
    with pytest.raises(SieveError, match="takes 1 positional"):
        compile_script('require "imap4flags"; setflag "f" "x";')  # needs variables
    with pytest.raises(SieveError, match="invalid variable name"):
        compile_script('require ["imap4flags", "variables"]; addflag "1" "x";')


def test_config_bounds_reach_the_compiler_and_the_run() -> None:
    """``sieve.max_variables`` refuses at upload (ScriptLimits) and in delivery's cache;
    ``sieve.max_variable_size`` is a RunLimits field delivery fills from the same section."""
    section = SieveSection(max_variables=1, max_variable_size=8)
    script = 'require "variables"; set "a" "1"; set "b" "2";'
    with pytest.raises(InvalidScript, match="more than 1 variables"):
        compile_checked(script, ScriptLimits.of(section))
    with pytest.raises(SieveError, match="more than 1 variables"):
        ScriptCache(max_variables=section.max_variables).script(script)
    compile_checked(script, ScriptLimits.of(SieveSection()))


# -- mailbox (RFC 5490) --------------------------------------------------------------------------

MAILBOXES = ("INBOX", "Lists", "Lists/dev", "Caf\u00e9")


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        ('mailboxexists "Lists"', True),
        ('mailboxexists ["INBOX", "Lists/dev"]', True),
        ('mailboxexists "inbox"', True),  # INBOX in any case (RFC 9051 §5.1)
        ('mailboxexists "Cafe\u0301"', True),  # compared in NFC, as the store does
        ('mailboxexists "lists"', False),  # other names keep their case
        ('mailboxexists ["Lists", "Nope"]', False),  # all of them must exist (§3.1)
        ('mailboxexists "Lists/"', False),  # a name the store refuses exists nowhere
        ('mailboxexists ""', False),
        ('mailboxexists "${box}"', True),  # names are expanded (RFC 5229 §3)
    ],
)
def test_mailboxexists(test: str, expected: bool) -> None:
    msg = SieveMessage.from_bytes(MESSAGE, mailboxes=MAILBOXES)
    script = f'require ["mailbox", "variables"]; set "box" "Lists/dev"; if {test} {{ discard; }}'
    assert (run(script, msg).actions == (Discard(),)) is expected


def test_mailboxexists_without_the_names_is_false() -> None:
    """A view made without the account's mailboxes (a tool, a test) has none."""
    assert holds('"mailbox"', 'mailboxexists "INBOX"') is False


@pytest.mark.parametrize(
    ("script", "actions"),
    [
        ('fileinto :create "New";', (FileInto("New", create=True),)),
        ('fileinto :create :copy "New";', (FileInto("New", copy=True, create=True), Keep())),
        # duplicates collapse (RFC 5228 §2.10.3): one copy, created if either asked
        ('fileinto "New"; fileinto :create "New";', (FileInto("New", create=True),)),
        ('fileinto "New";', (FileInto("New"),)),
    ],
)
def test_fileinto_create(script: str, actions: tuple[object, ...]) -> None:
    full = f'require ["fileinto", "mailbox", "copy"]; {script}'
    assert run(full).actions == actions


@pytest.mark.parametrize(
    ("script", "message_part"),
    [
        ('require "fileinto"; fileinto :create "a";', "needs require 'mailbox'"),
        ('require "mailbox"; fileinto :create "a";', "needs require 'fileinto'"),
        ('require ["fileinto", "mailbox"]; fileinto :create :create "a";', "given twice"),
        ('if mailboxexists "a" {}', "needs require 'mailbox'"),
        ('require "mailbox"; if mailboxexists {}', "takes 1 positional"),
        ('require "mailbox"; if mailboxexists "a" "b" {}', "takes 1 positional"),
        ('require "mailbox"; if mailboxexists 1 {}', "expected a string list"),
    ],
)
def test_mailbox_compile_errors(script: str, message_part: str) -> None:
    with pytest.raises(SieveError, match=re.escape(message_part)):
        compile_script(script)


# -- date and index (RFC 5260) -------------------------------------------------------------------

DATED = (
    b"Received: from a by b; Tue, 3 Jun 2025 23:30:00 -0500\r\n"
    b"Received: from c by d; Mon, 2 Jun 2025 10:00:00 +0000\r\n"
    b"Date: Sun, 1 Jun 2025 22:15:07 +0200\r\n"
    b"X-Date: Wed, 4 Jun 2025 01:00:00 +0000\r\n"
    b"X-Date: Thu, 5 Jun 2025 01:00:00 +0000\r\n"
    b"X-Bad: not a date\r\n"
    b"From: boss@example.com\r\n"
    b"To: b@example.org, c@example.org\r\n"
    b"To: d@example.org\r\n"
    b"Subject: x\r\n"
    b"\r\n"
    b"Body\r\n"
)
NOW = datetime(2026, 11, 30, 2, 29, 30, tzinfo=UTC)


def dated(script: str, now: datetime | None = NOW) -> list[str]:
    """The mailboxes ``script`` files into on :data:`DATED`, run at ``now``."""
    requires = 'require ["fileinto", "date", "index", "variables", "relational"];\n'
    outcome = compile_script(requires + script).run(message(DATED), now=now)
    assert outcome.error is None, outcome.error
    return [a.mailbox for a in outcome.actions if isinstance(a, FileInto)]


@pytest.mark.parametrize(
    ("test", "value"),
    [
        # §4.2 date-parts, in the field's own zone; every value checked against sieve-test
        (':originalzone "date" "year"', "2025"),
        (':originalzone "date" "month"', "06"),
        (':originalzone "date" "day"', "01"),
        (':originalzone "date" "date"', "2025-06-01"),
        (':originalzone "date" "julian"', "60827"),  # Modified Julian Day
        (':originalzone "date" "hour"', "22"),
        (':originalzone "date" "minute"', "15"),
        (':originalzone "date" "second"', "07"),
        (':originalzone "date" "time"', "22:15:07"),
        (':originalzone "date" "iso8601"', "2025-06-01T22:15:07+02:00"),
        (':originalzone "date" "std11"', "Sun, 01 Jun 2025 22:15:07 +0200"),
        (':originalzone "date" "zone"', "+0200"),
        (':originalzone "date" "weekday"', "0"),  # Sunday
        (':originalzone "date" "DATE"', "2025-06-01"),  # date-parts ignore case
        # :zone converts; without either, the local zone (that of the run's now: UTC here)
        (':zone "-0330" "date" "iso8601"', "2025-06-01T16:45:07-03:30"),
        (':zone "+1400" "date" "std11"', "Mon, 02 Jun 2025 10:15:07 +1400"),
        (':zone "+0000" "date" "iso8601"', "2025-06-01T20:15:07Z"),
        (':zone "-0000" "date" "zone"', "+0000"),
        ('"date" "time"', "20:15:07"),
        # Received: the date after the last ";"; one field: the first, or :index's (§6)
        (':originalzone "received" "iso8601"', "2025-06-03T23:30:00-05:00"),
        (':originalzone "x-date" "date"', "2025-06-04"),
        (':originalzone :index 2 "x-date" "date"', "2025-06-05"),
        (':originalzone :index 1 :last "received" "date"', "2025-06-02"),
    ],
)
def test_date_parts(test: str, value: str) -> None:
    assert dated(f'if date :matches {test} "*" {{ fileinto "${{0}}"; }}') == [value]


@pytest.mark.parametrize(
    "test",
    [
        'date :matches "x-bad" "date" "*"',  # not a date
        'date :matches "x-none" "date" "*"',  # no such field
        'date :matches :index 3 "x-date" "date" "*"',  # no third one
        'date :is "x-date" "date" "2025-06-05"',  # only the first field counts
        'date :matches :zone "${z}" "date" "date" "*"',  # a zone made of variables, invalid
        'date :matches "date" "${p}" "*"',  # a date-part made of variables, unknown
    ],
)
def test_date_tests_that_hold_for_nothing(test: str) -> None:
    assert dated(f'set "z" "bogus"; set "p" "fortnight"; if {test} {{ fileinto "x"; }}') == []


def test_currentdate_reads_the_time_it_is_given() -> None:
    script = 'if currentdate :matches "iso8601" "*" { fileinto "${0}"; }\n'
    script += 'if currentdate :matches :zone "+0530" "iso8601" "*" { fileinto "${0}"; }\n'
    script += 'if currentdate :matches "zone" "*" { fileinto "${0}"; }'
    assert dated(script) == ["2026-11-30T02:29:30Z", "2026-11-30T07:59:30+05:30", "+0000"]
    local = NOW.astimezone(timezone(timedelta(hours=-5)))  # a server whose local zone is -0500
    assert dated(script, local) == [
        "2026-11-29T21:29:30-05:00",
        "2026-11-30T07:59:30+05:30",
        "-0500",
    ]
    # date converts to that local zone too (§4.1)
    assert dated('if date :matches "date" "hour" "*" { fileinto "${0}"; }', local) == ["15"]
    # without a time, currentdate holds for nothing (the core never reads the clock)
    assert dated('if currentdate :matches "year" "*" { fileinto "x"; }', None) == []


def test_rfc5260_examples() -> None:
    """§4.3, §5 and §6's examples, on a message from the boss, Sunday 22:15 +0200."""
    office = (
        'if allof(header :contains "from" "boss@example.com",\n'
        '         date :value "ge" :originalzone "date" "hour" "09",\n'
        '         date :value "lt" :originalzone "date" "hour" "17") { fileinto "urgent"; }\n'
        'if anyof(date :is "received" "weekday" "0", date :is "received" "weekday" "6")\n'
        '  { fileinto "weekend"; }\n'
        'if date :is :originalzone "date" "weekday" "0" { fileinto "sunday"; }\n'
    )
    assert dated(office) == ["sunday"]  # after hours; received Tuesday (first Received)
    monthly = (
        'if currentdate :matches "month" "*" { set "month" "${1}"; }\n'
        'if currentdate :matches "year" "*" { set "year" "${1}"; }\n'
        'fileinto "${month}-${year}";\n'
    )
    assert dated(monthly) == ["11-2026"]
    away = (
        'if allof(currentdate :value "ge" "date" "2026-11-30",\n'
        '         currentdate :value "le" "date" "2026-12-07") { fileinto "away"; }\n'
    )
    assert dated(away) == ["away"]
    assert dated(away, NOW - timedelta(days=1)) == []
    index = (
        'if header :index 2 :contains "received" "from c" { fileinto "second"; }\n'
        'if date :value "gt" :index 1 :zone "-0500" "received" "iso8601"\n'
        '    "2025-06-03T09:00:00-05:00" { fileinto "after-cutoff"; }\n'
    )
    assert dated(index) == ["second", "after-cutoff"]


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        ('header :index 1 "to" "b@example.org, c@example.org"', True),
        ('header :index 2 "to" "d@example.org"', True),
        ('header :index 1 :last "to" "d@example.org"', True),
        ('header :index 3 "to" "d@example.org"', False),
        # several names: the fields of each, in the order named (as Pigeonhole counts)
        ('header :index 3 :contains ["x-date", "received"] "from a"', True),
        # address :index counts fields, not addresses
        ('address :index 2 "to" "d@example.org"', True),
        ('address :index 1 "to" "c@example.org"', True),
        ('address :index 1 "to" "d@example.org"', False),
        ('address :index 2 :last "to" "c@example.org"', True),
    ],
)
def test_index(test: str, expected: bool) -> None:
    assert holds('"index"', test, message(DATED)) is expected


@pytest.mark.parametrize(
    ("script", "message_part"),
    [
        ('require "date"; if date :zone "0100" "date" "year" "2025" {}', "invalid :zone"),
        ('require "date"; if date :zone "+01" "date" "year" "2025" {}', "invalid :zone"),
        ('require "date"; if date :zone "+0160" "date" "year" "2025" {}', "invalid :zone"),
        ('require "date"; if date "date" "fortnight" "1" {}', "unknown date-part"),
        ('require "date"; if currentdate "fortnight" "1" {}', "unknown date-part"),
        ('require "date"; if date :originalzone :zone "+0100" "date" "year" "1" {}', "exclude"),
        ('require "date"; if currentdate :originalzone "year" "1" {}', "unknown tag"),
        ('require "date"; if currentdate "year" {}', "takes 2 positional"),
        ('require "date"; if date "date" "year" {}', "takes 3 positional"),
        ('require "date"; if date "date" ["year"] "1" {}', "expected a string"),
        ('if date "date" "year" "1" {}', "needs require 'date'"),
        ('require "date"; if date :index 1 "date" "year" "1" {}', "needs require 'index'"),
        ('require "index"; if header :last "a" "b" {}', ":last needs :index"),
        ('require "index"; if address :index 0 "to" "b" {}', "counts from 1"),
        ('require "index"; if exists :index 1 "to" {}', "unknown tag"),
        ('require ["index", "envelope"]; if envelope :index 1 "to" "b" {}', "unknown tag"),
        ('require "index"; if header :index "1" "a" "b" {}', "expected a number"),
    ],
)
def test_date_and_index_compile_errors(script: str, message_part: str) -> None:
    with pytest.raises(SieveError, match=re.escape(message_part)):
        compile_script(script)


# -- reject and ereject (RFC 5429) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "actions"),
    [
        ('reject "No thanks.";', (Reject("No thanks."),)),
        ('ereject "No thanks.";', (Reject("No thanks.", extended=True),)),
        ("reject text:\nGo away.\n.\n;", (Reject("Go away.\n"),)),
        # discard beside reject changes nothing: the message is refused
        ('discard; reject "no";', (Reject("no"),)),
        ('reject "no"; discard;', (Reject("no"),)),
        ('set "who" "Ken"; reject "Not from ${who}.";', (Reject("Not from Ken."),)),
        ('if false { reject "no"; }', (Keep(),)),
    ],
)
def test_reject(script: str, actions: tuple[object, ...]) -> None:
    full = f'require ["reject", "ereject", "variables"]; {script}'
    outcome = run(full)
    assert outcome.error is None
    assert outcome.actions == actions


@pytest.mark.parametrize(
    ("script", "error"),
    [
        # §2.1: once per script; MUST NOT go with vacation; not with what delivers it
        ('reject "a"; reject "b";', "reject executed twice"),
        ('reject "a"; ereject "b";', "reject executed twice"),
        ('vacation "away"; reject "no";', "reject with vacation"),
        ('reject "no"; vacation "away";', "vacation after reject"),
        ('keep; reject "no";', "reject with keep"),
        ('reject "no"; fileinto "a";', "fileinto after reject"),
        ('redirect :copy "a@example.org"; reject "no";', "reject with redirect"),
    ],
)
def test_reject_conflicts_are_runtime_errors_that_keep(script: str, error: str) -> None:
    full = f'require ["reject", "ereject", "vacation", "fileinto", "copy"]; {script}'
    outcome = run(full)
    assert outcome.actions == (Keep(),)
    assert outcome.error is not None and error in outcome.error


@pytest.mark.parametrize(
    ("script", "message_part"),
    [
        ('reject "no";', "needs require 'reject'"),
        ('require "reject"; ereject "no";', "needs require 'ereject'"),
        ('require "reject"; reject;', "takes 1 positional"),
        ('require "reject"; reject ["a", "b"];', "expected a string"),
        ('require "reject"; reject "a" "b";', "takes 1 positional"),
    ],
)
def test_reject_compile_errors(script: str, message_part: str) -> None:
    with pytest.raises(SieveError, match=re.escape(message_part)):
        compile_script(script)


# -- vacation-seconds (RFC 6131) -----------------------------------------------------------------


def test_vacation_seconds() -> None:
    """RFC 6131 §2's example; "vacation-seconds" implies "vacation" (§3)."""
    [vacation, keep] = run(
        'require "vacation-seconds";\n'
        'vacation :addresses ["tjs@example.edu"] :seconds 1800\n'
        '  "I am in a meeting, and do not have access to email.";\n'
    ).actions
    assert keep == Keep()
    assert isinstance(vacation, Vacation)
    assert (vacation.seconds, vacation.days) == (1800, None)
    [vacation, _] = run('require "vacation-seconds"; vacation :seconds 0 "x";').actions
    assert isinstance(vacation, Vacation) and vacation.seconds == 0


@pytest.mark.parametrize(
    ("script", "message_part"),
    [
        ('require "vacation"; vacation :seconds 10 "x";', "needs require 'vacation-seconds'"),
        ('require "vacation-seconds"; vacation :seconds 10 :days 1 "x";', "exclude each other"),
        ('require "vacation-seconds"; vacation :seconds "10" "x";', "expected a number"),
        ('require "vacation-seconds"; vacation "x" :seconds;', "after the positional"),
    ],
)
def test_vacation_seconds_compile_errors(script: str, message_part: str) -> None:
    with pytest.raises(SieveError, match=re.escape(message_part)):
        compile_script(script)
