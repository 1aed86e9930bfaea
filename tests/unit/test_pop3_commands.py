"""POP3 command grammar (RFC 1939 §3, RFC 2449 §3): a table of lines and what they parse to."""

from __future__ import annotations

import pytest

from pillarbox.pop3 import responses
from pillarbox.pop3.commands import (
    ARITY,
    Command,
    Verb,
    parse_command,
    parse_line_count,
    parse_message_number,
)
from pillarbox.pop3.errors import CommandError


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"STAT", Command(Verb.STAT)),
        (b"stat", Command(Verb.STAT)),
        (b"LiSt 2", Command(Verb.LIST, (b"2",))),
        (b"LIST", Command(Verb.LIST)),
        (b"TOP 1 10", Command(Verb.TOP, (b"1", b"10"))),
        (b"TOP  1   10 ", Command(Verb.TOP, (b"1", b"10"))),
        (b"USER mrose", Command(Verb.USER, (b"mrose",))),
        (b"USER j\xc3\xb6rg", Command(Verb.USER, (b"j\xc3\xb6rg",))),
        # RFC 1939 §7 PASS: the rest of the line, spaces included, is the password.
        (b"PASS correct horse  battery ", Command(Verb.PASS, (b"correct horse  battery ",))),
        (b"APOP mrose c4c9", Command(Verb.APOP, (b"mrose", b"c4c9"))),
        (b"AUTH", Command(Verb.AUTH)),
        (b"AUTH PLAIN", Command(Verb.AUTH, (b"PLAIN",))),
        (b"AUTH PLAIN =", Command(Verb.AUTH, (b"PLAIN", b"="))),
        (b"STLS", Command(Verb.STLS)),
        (b"CAPA", Command(Verb.CAPA)),
        (b"UIDL 3", Command(Verb.UIDL, (b"3",))),
        (b"QUIT", Command(Verb.QUIT)),
    ],
)
def test_parses(line: bytes, command: Command) -> None:
    assert parse_command(line) == command


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"", responses.UNKNOWN_COMMAND),
        (b"HELO x", responses.UNKNOWN_COMMAND),
        (b"STATUS", responses.UNKNOWN_COMMAND),
        (b" STAT", responses.UNKNOWN_COMMAND),
        (b"STAT\x00", responses.INVALID_CHARACTERS),
        (b"USER a\tb", responses.INVALID_CHARACTERS),
        (b"PASS a\rb", responses.INVALID_CHARACTERS),
        (b"NOOP\x7f", responses.INVALID_CHARACTERS),
        (b"PASS", responses.WRONG_ARGUMENTS.format(verb="PASS")),
        (b"PASS ", responses.WRONG_ARGUMENTS.format(verb="PASS")),
        (b"USER", responses.WRONG_ARGUMENTS.format(verb="USER")),
        (b"USER a b", responses.WRONG_ARGUMENTS.format(verb="USER")),
        (b"STAT 1", responses.WRONG_ARGUMENTS.format(verb="STAT")),
        (b"TOP 1", responses.WRONG_ARGUMENTS.format(verb="TOP")),
        (b"TOP 1 2 3", responses.WRONG_ARGUMENTS.format(verb="TOP")),
        (b"AUTH A B C", responses.WRONG_ARGUMENTS.format(verb="AUTH")),
        (b"APOP mrose", responses.WRONG_ARGUMENTS.format(verb="APOP")),
        (b"QUIT now", responses.WRONG_ARGUMENTS.format(verb="QUIT")),
    ],
)
def test_refuses(line: bytes, reply: responses.Reply) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(line)
    assert caught.value.reply == reply


def test_every_verb_has_an_arity() -> None:
    assert set(ARITY) == set(Verb)


@pytest.mark.parametrize(("arg", "number"), [(b"1", 1), (b"007", 7), (b"4294967296", 2**32)])
def test_message_number(arg: bytes, number: int) -> None:
    assert parse_message_number(arg) == number


@pytest.mark.parametrize("arg", [b"0", b"00", b"-1", b"+1", b"1.0", b"one", b"\xd9\xa1", b""])
def test_bad_message_number(arg: bytes) -> None:
    with pytest.raises(CommandError) as caught:
        parse_message_number(arg)
    assert caught.value.reply == responses.INVALID_MESSAGE_NUMBER


def test_line_count() -> None:
    assert parse_line_count(b"0") == 0
    assert parse_line_count(b"25") == 25
    for bad in (b"-1", b"x", b"", b"1e3"):
        with pytest.raises(CommandError):
            parse_line_count(bad)
