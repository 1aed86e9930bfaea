"""RFC 5804 §4 grammar: command parsing as a table, string encoding as a round-trip property,
and the framer's limits (a line too long, a literal too large, one too large to skip)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pillarbox.managesieve.grammar import (
    Command,
    CommandReady,
    Fatal,
    Framer,
    FramerLimits,
    GrammarError,
    Rejected,
    RejectReason,
    parse_command,
    parse_string_line,
    read_value,
)
from pillarbox.managesieve.responses import Reply, Status, encode_string


@pytest.mark.parametrize(
    ("data", "command"),
    [
        (b"logout", Command("LOGOUT", ())),
        (b'PutScript "a" {5+}\r\nkeep;', Command("PUTSCRIPT", (b"a", b"keep;"))),
        (b'PUTSCRIPT {1}\r\na ""', Command("PUTSCRIPT", (b"a", b""))),
        (b'HAVESPACE "a" 0', Command("HAVESPACE", (b"a", 0))),
        (b'HAVESPACE "a" 4294967295', Command("HAVESPACE", (b"a", 4294967295))),
        (b'NOOP "q\\"uo\\\\te"', Command("NOOP", (b'q"uo\\te',))),
        (b'NOOP "\xc3\xbc"', Command("NOOP", ("ü".encode(),))),
    ],
)
def test_parse_command(data: bytes, command: Command) -> None:
    assert parse_command(data) == command


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b'"LOGOUT"',
        b"NOOP  x",
        b"NOOP x",
        b'NOOP "a',
        b'NOOP "\\n"',
        b'NOOP "a" ',
        b"HAVESPACE 007",
        b"HAVESPACE 4294967296",
        b"PUTSCRIPT {5+}\r\nabc",
        b"PUTSCRIPT {5+}abcde",
        b'NOOP "' + b"x" * 1025 + b'"',
    ],
)
def test_grammar_errors(data: bytes) -> None:
    with pytest.raises(GrammarError):
        parse_command(data)


def test_sasl_response_is_one_string() -> None:
    assert parse_string_line(b'"abc"') == b"abc"
    assert parse_string_line(b"{0+}\r\n") == b""
    for bad in (b"abc", b'"a" "b"', b"12"):
        with pytest.raises(GrammarError):
            parse_string_line(bad)


@given(st.binary(max_size=2000))
def test_encoded_strings_read_back(value: bytes) -> None:
    encoded = encode_string(value)
    assert read_value(encoded, 0) == (value, len(encoded))


def test_strings_are_quoted_when_the_grammar_allows() -> None:
    assert encode_string('say "hi" \\') == b'"say \\"hi\\" \\\\"'
    assert encode_string("two\r\nlines") == b"{10}\r\ntwo\r\nlines"
    assert encode_string("x" * 1025).startswith(b"{1025}\r\n")


def test_reply_encoding() -> None:
    assert Reply(Status.OK).encode() == b"OK\r\n"
    assert Reply(Status.NO, "line 2: x", "QUOTA/MAXSIZE").encode() == (
        b'NO (QUOTA/MAXSIZE) "line 2: x"\r\n'
    )


def _events(framer: Framer, data: bytes) -> list[object]:
    framer.receive_data(data)
    events = []
    while (event := framer.next_event()) is not None:
        events.append(event)
    return events


def test_framer_skips_an_overlong_line_and_goes_on() -> None:
    framer = Framer(FramerLimits(max_line=16, max_literal=8, max_discard=64))
    assert _events(framer, b"NOOP " + b"x" * 40) == [Rejected(RejectReason.LINE_TOO_LONG, 45)]
    assert _events(framer, b"y" * 100 + b"\r\nLOGOUT\r\n") == [CommandReady(b"LOGOUT")]


def test_framer_skips_a_large_literal_then_gives_up_on_a_huge_one() -> None:
    framer = Framer(FramerLimits(max_line=64, max_literal=8, max_discard=64))
    events = _events(framer, b'PUTSCRIPT "a" {20+}\r\n' + b"z" * 20 + b"\r\nNOOP\r\n")
    assert events == [Rejected(RejectReason.LITERAL_TOO_LARGE, 20), CommandReady(b"NOOP")]
    assert _events(framer, b'PUTSCRIPT "a" {65+}\r\n') == [Fatal(65)]
    assert _events(framer, b"NOOP\r\n") == []


def test_framer_discard_forgets_pipelined_input() -> None:
    framer = Framer(FramerLimits())
    framer.receive_data(b"STARTTLS\r\nNOOP\r\nPUTSCRIPT {3+}\r\na")
    assert framer.next_event() == CommandReady(b"STARTTLS")
    assert framer.discard() == len(b"NOOP\r\nPUTSCRIPT {3+}\r\na")
    assert framer.next_event() is None


def test_framer_bounds_a_command_of_many_literals() -> None:
    framer = Framer(FramerLimits(max_line=64, max_literal=16, max_command=40, max_discard=64))
    chain = b"NOOP {16+}\r\n" + b"a" * 16 + b"{16+}\r\n" + b"b" * 16 + b"{16+}\r\n" + b"c" * 16
    events = _events(framer, chain + b"\r\nLOGOUT\r\n")
    assert events == [Rejected(RejectReason.COMMAND_TOO_LARGE, 51), CommandReady(b"LOGOUT")]


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_framer_bounds_a_command_exactly(eol: bytes) -> None:
    """``max_command`` bounds the command as framed, a literal's announcement's line end
    (framed as CRLF whatever was sent) included, and a literal that would take it past is
    refused at its announcement. That line end was counted only after the check: a command
    max_command + 1 or + 2 octets long had its literal read and held before the refusal."""
    framer = Framer(FramerLimits(max_line=64, max_literal=32, max_command=40, max_discard=64))
    assert _events(framer, b"NOOP {28+}" + eol) == []
    assert _events(framer, b"a" * 28 + b"\r\n") == [CommandReady(b"NOOP {28+}\r\n" + b"a" * 28)]
    assert len(b"NOOP {28+}\r\n" + b"a" * 28) == 40
    # One octet more: refused before its literal arrives, the literal read and dropped.
    assert _events(framer, b"NOOP {29+}" + eol) == [Rejected(RejectReason.COMMAND_TOO_LARGE, 41)]
    assert _events(framer, b"a" * 29 + b"\r\nLOGOUT\r\n") == [CommandReady(b"LOGOUT")]
    # The same bound on the line after a literal: 40 framed octets pass, 41 do not.
    after = b"NOOP {16+}" + eol + b"a" * 16
    assert _events(framer, after + b' "123456789"\r\n') == [
        CommandReady(b"NOOP {16+}\r\n" + b"a" * 16 + b' "123456789"')
    ]
    assert _events(framer, after + b' "1234567890"\r\n') == [
        Rejected(RejectReason.COMMAND_TOO_LARGE, 41)
    ]


def test_framer_gives_a_literal_after_a_bare_lf_its_crlf() -> None:
    """A bare LF ends a line too; one ending a literal announcement is framed as CRLF, the
    form the grammar reads (§4 ``literal-c2s``), so the command is an octet longer than what
    was sent (fuzz/managesieve_command.py's bound had not allowed for it)."""
    framer = Framer(FramerLimits())
    events = _events(framer, b"AUTHENTICATE {5}\nPLAIN\r\n")
    assert events == [CommandReady(b"AUTHENTICATE {5}\r\nPLAIN")]
    assert parse_command(b"AUTHENTICATE {5}\r\nPLAIN") == Command("AUTHENTICATE", (b"PLAIN",))
