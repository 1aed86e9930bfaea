"""Command framing: literals (RFC 9051 §4.3, RFC 7888), limits, and resynchronisation."""

from __future__ import annotations

from pillarbox.imap.lexer import (
    CommandReady,
    ContinueLiteral,
    Event,
    Fatal,
    Lexer,
    LexerLimits,
    Rejected,
    RejectReason,
)


def drain(lexer: Lexer) -> list[Event]:
    events = []
    while (event := lexer.next_event()) is not None:
        events.append(event)
    return events


def test_plain_lines_and_pipelining() -> None:
    lexer = Lexer()
    lexer.receive_data(b"a NOOP\r\nb CAPA")
    assert drain(lexer) == [CommandReady(b"a NOOP")]
    lexer.receive_data(b"BILITY\nc LOGOUT\r\n")
    assert drain(lexer) == [CommandReady(b"b CAPABILITY"), CommandReady(b"c LOGOUT")]


def test_synchronising_literal_asks_for_continuation() -> None:
    lexer = Lexer()
    lexer.receive_data(b"a LOGIN {4}\r\n")
    assert drain(lexer) == [ContinueLiteral(4)]
    assert lexer.in_literal
    lexer.receive_data(b"fr")
    assert drain(lexer) == []
    lexer.receive_data(b"ed {3}\r\n")
    assert drain(lexer) == [ContinueLiteral(3)]
    lexer.receive_data(b"pw\n\r\n")
    assert drain(lexer) == [CommandReady(b"a LOGIN {4}\r\nfred {3}\r\npw\n")]


def test_non_synchronising_literals_byte_by_byte() -> None:
    lexer = Lexer()
    wire = b"A001 LOGIN {11+}\r\nFRED FOOBAR {7+}\r\nfat man\r\nA002 NOOP\r\n"
    events: list[Event] = []
    for index in range(len(wire)):
        lexer.receive_data(wire[index : index + 1])
        events += drain(lexer)
    assert events == [
        CommandReady(b"A001 LOGIN {11+}\r\nFRED FOOBAR {7+}\r\nfat man"),
        CommandReady(b"A002 NOOP"),
    ]


def test_literal8_and_empty_literal() -> None:
    lexer = Lexer()
    lexer.receive_data(b"a APPEND x ~{0+}\r\n\r\nb APPEND y ~{2+}\r\n\x00\r\r\n")
    assert drain(lexer) == [
        CommandReady(b"a APPEND x ~{0+}\r\n"),
        CommandReady(b"b APPEND y ~{2+}\r\n\x00\r"),
    ]


def test_synchronising_literal_too_large_is_refused_before_data() -> None:
    lexer = Lexer(limits=LexerLimits(max_literal=10))
    lexer.receive_data(b"a LOGIN {11}\r\nb NOOP\r\n")
    assert drain(lexer) == [
        Rejected("a", RejectReason.LITERAL_TOO_LARGE, 11, synchronizing=True),
        CommandReady(b"b NOOP"),
    ]


def test_append_has_its_own_literal_limit() -> None:
    lexer = Lexer(limits=LexerLimits(max_literal=10, max_append_literal=100))
    lexer.receive_data(b"a APPEND INBOX {50}\r\n")
    assert drain(lexer) == [ContinueLiteral(50)]
    lexer.receive_data(b"x" * 50 + b"\r\n")
    assert drain(lexer) == [CommandReady(b"a APPEND INBOX {50}\r\n" + b"x" * 50)]
    lexer.receive_data(b"b APPEND INBOX {101}\r\n")
    assert drain(lexer) == [Rejected("b", RejectReason.LITERAL_TOO_LARGE, 101, True)]


def test_oversized_non_synchronising_literal_is_discarded_with_the_command() -> None:
    lexer = Lexer(limits=LexerLimits(max_literal=10))
    lexer.receive_data(b"a LOGIN {20+}\r\n")
    assert drain(lexer) == [Rejected("a", RejectReason.LITERAL_TOO_LARGE, 20, False)]
    lexer.receive_data(b"x" * 20 + b" {3+}\r\nabc\r\nb NOOP\r\n")
    assert drain(lexer) == [CommandReady(b"b NOOP")]


def test_literal_minus_limits_non_synchronising_literals_to_4096() -> None:
    lexer = Lexer(limits=LexerLimits(literal_minus=True))
    lexer.receive_data(b"a APPEND x {4097+}\r\n" + b"y" * 4097 + b"\r\nb APPEND x {4096+}\r\n")
    events = drain(lexer)
    assert events == [Rejected("a", RejectReason.LITERAL_TOO_LARGE, 4097, False)]
    lexer.receive_data(b"z" * 4096 + b"\r\n")
    assert drain(lexer) == [CommandReady(b"b APPEND x {4096+}\r\n" + b"z" * 4096)]


def test_huge_non_synchronising_literal_closes() -> None:
    lexer = Lexer(limits=LexerLimits(max_literal=10, max_discard=1000))
    lexer.receive_data(b"a LOGIN {999999999+}\r\nxxxx")
    assert drain(lexer) == [Fatal("a", RejectReason.LITERAL_TOO_LARGE, 999999999)]
    assert lexer.closed
    lexer.receive_data(b"b NOOP\r\n")
    assert drain(lexer) == []


def test_long_line_is_rejected_once_and_skipped() -> None:
    lexer = Lexer(limits=LexerLimits(max_line=50))
    lexer.receive_data(b"t1 SEARCH " + b"X" * 100)
    assert drain(lexer) == [Rejected("t1", RejectReason.LINE_TOO_LONG, 110)]
    lexer.receive_data(b"Y" * 1000)
    assert drain(lexer) == []
    lexer.receive_data(b" {5+}\r\n12345\r\nt2 NOOP\r\n")
    assert drain(lexer) == [CommandReady(b"t2 NOOP")]


def test_long_line_received_at_once() -> None:
    lexer = Lexer(limits=LexerLimits(max_line=50))
    lexer.receive_data(b"t1 SEARCH " + b"X" * 100 + b"\r\nt2 NOOP\r\n")
    assert drain(lexer) == [
        Rejected("t1", RejectReason.LINE_TOO_LONG, 110),
        CommandReady(b"t2 NOOP"),
    ]


def test_command_size_limit() -> None:
    lexer = Lexer(limits=LexerLimits(max_command=30))
    lexer.receive_data(b"a LOGIN {10+}\r\n0123456789 {10}\r\n")
    assert drain(lexer) == [Rejected("a", RejectReason.LITERAL_TOO_LARGE, 10, True)]


def test_command_size_limit_is_exact_at_a_literal() -> None:
    """The limit counts the CRLF that follows a literal's announcement, so a command one octet
    over is refused when the literal is announced, before its octets are read and held."""
    at_limit = Lexer(limits=LexerLimits(max_command=20))
    at_limit.receive_data(b"a X {10}\r\n")
    assert drain(at_limit) == [ContinueLiteral(10)]
    at_limit.receive_data(b"0123456789\r\n")
    assert drain(at_limit) == [CommandReady(b"a X {10}\r\n0123456789")]  # 20 octets
    over = Lexer(limits=LexerLimits(max_command=20))
    over.receive_data(b"a X {11}\r\n")
    assert drain(over) == [Rejected("a", RejectReason.LITERAL_TOO_LARGE, 11, True)]


def test_rejection_without_a_tag() -> None:
    lexer = Lexer(limits=LexerLimits(max_literal=1))
    lexer.receive_data(b"{5}\r\n")
    assert drain(lexer) == [Rejected(None, RejectReason.LITERAL_TOO_LARGE, 5, True)]
