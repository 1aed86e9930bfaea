"""Fuzz the IMAP command framer and parser (pillarbox.imap.lexer, pillarbox.imap.parser).

Input: byte 0 chooses UTF-8 mode (ENABLE UTF8=ACCEPT), LITERAL- and the read size; the rest
is what the client sends. The lexer frames it under small limits; each whole command is
parsed. Asserted, beyond "no exception":

* the lexer raises nothing and its only events are its four kinds; what it holds stays within
  its limits (one command plus a line);
* the parser raises nothing but :class:`ParseError`;
* a command it parsed formats (``format_command``) to wire text that frames into one command
  and parses back to an equal command (the round trip of the grammar);
* a mailbox name decoded from modified UTF-7 encodes back to a name that decodes the same.
"""

from __future__ import annotations

import dataclasses

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox.imap import mutf7
    from pillarbox.imap.commands import format_command
    from pillarbox.imap.errors import Mutf7Error, ParseError
    from pillarbox.imap.lexer import (
        CommandReady,
        ContinueLiteral,
        Fatal,
        Lexer,
        LexerLimits,
        Rejected,
    )
    from pillarbox.imap.parser import parse_command

LIMITS = LexerLimits(
    max_line=2048, max_literal=1024, max_append_literal=4096, max_command=8192, max_discard=4096
)
_BIG = LexerLimits(max_line=1 << 20, max_literal=1 << 20, max_command=1 << 22)


def _frame(wire: bytes) -> bytes:
    """The one command the lexer makes of ``wire`` (a formatted command)."""
    lexer = Lexer(limits=_BIG)
    lexer.receive_data(wire)
    ready = []
    while (event := lexer.next_event()) is not None:
        if isinstance(event, CommandReady):
            ready.append(event.data)
    assert len(ready) == 1, (wire, ready)
    return ready[0]


def _round_trip(data: bytes, utf8: bool) -> None:
    try:
        command = parse_command(data, utf8=utf8)
    except ParseError:
        return
    wire = format_command(command, utf8=utf8)
    again = parse_command(_frame(wire), utf8=utf8)
    assert again == command, (data, wire, command, again)


def check(data: bytes) -> None:
    if not data:
        return
    flags = data[0]
    utf8 = bool(flags & 1)
    limits = dataclasses.replace(LIMITS, literal_minus=bool(flags & 2))
    step = flags >> 2 or len(data) or 1
    stream = data[1:]
    lexer = Lexer(limits=limits)
    for start in range(0, max(len(stream), 1), step):
        lexer.receive_data(stream[start : start + step])
        while (event := lexer.next_event()) is not None:
            assert isinstance(event, CommandReady | ContinueLiteral | Rejected | Fatal)
            if isinstance(event, CommandReady):
                assert len(event.data) <= limits.max_command + limits.max_line
                _round_trip(event.data, utf8)
    try:
        name = mutf7.decode(stream)
    except Mutf7Error:
        return
    assert mutf7.decode(mutf7.encode(name)) == name


def seeds() -> list[bytes]:
    found = [bytes([i & 3]) + t for i, t in enumerate(harness.transcript_lines("imap", "C: "))]
    found += [
        b"\x00a APPEND INBOX (\\Seen) {5}\r\nhello\r\n",
        b"\x02a APPEND INBOX {3+}\r\nabc\r\n",
        b"\x00b UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (To)]<0.9>)\r\n",
        b'\x01a SELECT "&AOQ-" (QRESYNC (1 2 1:5 (1:3 4:6)))\r\n',
        b"\x00a SEARCH CHARSET UTF-8 OR (FROM x) NOT SINCE 1-Jan-2020 ~{3+}\r\nabc\r\n",
        b"\x00a NOTIFY SET (selected MessageNew (UID BODY[HEADER]) MessageExpunge)\r\n",
        b'\x00a SETMETADATA "" (/private/vendor/v/k ~{3+}\r\n\x00\xff\x01 /shared/c NIL)\r\n',
        b"\x01a GETMETADATA (MAXSIZE 9 DEPTH infinity) INBOX (/private /shared/comment)\r\n",
    ]
    return found


if __name__ == "__main__":
    harness.main("imap_command", check, seeds())
