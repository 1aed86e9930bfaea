"""Fuzz the IMAP command framer and parser (pillarbox.imap.lexer, pillarbox.imap.parser).

Input: byte 0 chooses UTF-8 mode (ENABLE UTF8=ACCEPT, bit 0), LITERAL- (bit 1), UIDONLY
(ENABLE UIDONLY, bit 2) and the read size (the bits above); the rest is what the client
sends. The lexer frames it under small limits; each whole command is parsed. Asserted, beyond
"no exception":

* the lexer raises nothing and its only events are its four kinds; what it holds stays within
  its limits (one command plus a line);
* the parser raises nothing but :class:`ParseError`;
* a command it parsed formats (``format_command``) to wire text that frames into one command
  and parses back to an equal command (the round trip of the grammar);
* a PARTIAL range (RFC 9394) has two non-zero ends of one sign, and the messages it picks
  from a result are those a position-by-position reading of §3.1 picks;
* under UIDONLY, the session refuses (RFC 9586 §3) exactly the non-UID forms of the commands
  that have a UID form (but EXPUNGE), a search program naming a message-number set anywhere
  in it (the key's tree walked here field by field), and QRESYNC's seq-match data;
* a mailbox name decoded from modified UTF-7 encodes back to a name that decodes the same.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox.imap import commands as c
    from pillarbox.imap import mutf7
    from pillarbox.imap import search as s
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
    from pillarbox.imap.session import partial_window, uidonly_refuses

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


#: Result sizes a PARTIAL window is checked against: empty, shorter and longer than it.
_RESULTS = (0, 1, 3, 7, 100)


def _check_partial(partial: tuple[int, int]) -> None:
    first, last = partial
    assert first != 0 and last != 0 and (first > 0) == (last > 0), partial
    low, high = sorted((abs(first), abs(last)))
    for size in _RESULTS:
        numbers = [n * 10 for n in range(1, size + 1)]
        # §3.1: position 1 is the first message, -1 the last; positions not there are skipped.
        index = [p - 1 if first > 0 else size - p for p in range(low, min(high, size) + 1)]
        wanted = sorted(numbers[i] for i in index if 0 <= i < size)
        assert partial_window(numbers, partial) == wanted, (partial, size)


def _sequence_keys(value: object) -> Iterator[s.SequenceKey]:
    """Every SequenceKey anywhere in a search program, whatever the key holding it."""
    if isinstance(value, s.SequenceKey):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            yield from _sequence_keys(getattr(value, item.name))
    elif isinstance(value, tuple | list | frozenset):
        for item in value:
            yield from _sequence_keys(item)


def _numbered(command: c.Command) -> bool:
    """What RFC 9586 §3 refuses once UIDONLY is on, worked out apart from the session's."""
    if isinstance(command, c.Fetch | c.Store | c.Copy | c.Move | c.Replace):
        return not command.uid
    if isinstance(command, c.Search | c.Sort | c.Thread):
        return not command.uid or any(
            not k.uid and not k.sequence.saved for k in _sequence_keys(command.key)
        )
    if isinstance(command, c.Select):
        return command.qresync is not None and command.qresync.seq_match is not None
    return False


def _round_trip(data: bytes, utf8: bool, uidonly: bool) -> None:
    try:
        command = parse_command(data, utf8=utf8)
    except ParseError:
        return
    wire = format_command(command, utf8=utf8)
    again = parse_command(_frame(wire), utf8=utf8)
    assert again == command, (data, wire, command, again)
    partial = getattr(command, "partial", None)
    if isinstance(command, c.Search | c.Sort | c.Fetch) and partial is not None:
        _check_partial(partial)
    if uidonly:
        assert uidonly_refuses(command) == _numbered(command), command


def check(data: bytes) -> None:
    if not data:
        return
    flags = data[0]
    utf8 = bool(flags & 1)
    uidonly = bool(flags & 4)
    limits = dataclasses.replace(LIMITS, literal_minus=bool(flags & 2))
    step = flags >> 3 or len(data) or 1
    stream = data[1:]
    lexer = Lexer(limits=limits)
    for start in range(0, max(len(stream), 1), step):
        lexer.receive_data(stream[start : start + step])
        while (event := lexer.next_event()) is not None:
            assert isinstance(event, CommandReady | ContinueLiteral | Rejected | Fatal)
            if isinstance(event, CommandReady):
                assert len(event.data) <= limits.max_command + limits.max_line
                _round_trip(event.data, utf8, uidonly)
    try:
        name = mutf7.decode(stream)
    except Mutf7Error:
        return
    assert mutf7.decode(mutf7.encode(name)) == name


def seeds() -> list[bytes]:
    found = [bytes([i & 7]) + t for i, t in enumerate(harness.transcript_lines("imap", "C: "))]
    found += [
        b"\x00a APPEND INBOX (\\Seen) {5}\r\nhello\r\n",
        b"\x02a APPEND INBOX {3+}\r\nabc\r\n",
        b"\x00b UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (To)]<0.9>)\r\n",
        b'\x01a SELECT "&AOQ-" (QRESYNC (1 2 1:5 (1:3 4:6)))\r\n',
        b"\x00a SEARCH CHARSET UTF-8 OR (FROM x) NOT SINCE 1-Jan-2020 ~{3+}\r\nabc\r\n",
        b"\x00a NOTIFY SET (selected MessageNew (UID BODY[HEADER]) MessageExpunge)\r\n",
        b'\x00a SETMETADATA "" (/private/vendor/v/k ~{3+}\r\n\x00\xff\x01 /shared/c NIL)\r\n',
        b"\x01a GETMETADATA (MAXSIZE 9 DEPTH infinity) INBOX (/private /shared/comment)\r\n",
        # RFC 9394 PARTIAL in SEARCH, SORT and FETCH, from either end.
        b"\x04a UID SEARCH RETURN (PARTIAL -1:-100 COUNT) UNDELETED\r\n",
        b"\x00a SEARCH RETURN (MIN PARTIAL 500:400 SAVE) OR 1:5 $\r\n",
        b"\x04a UID SORT RETURN (PARTIAL 1:10) (REVERSE DATE) UTF-8 UID 1:*\r\n",
        b"\x04a UID FETCH 1:* (FLAGS) (PARTIAL -5:-1 CHANGEDSINCE 4)\r\n",
        # RFC 9586 UIDONLY: the forms it refuses and those it keeps.
        b"\x04a ENABLE UIDONLY\r\nb FETCH 1 FLAGS\r\nc UID SEARCH NOT (OR SEEN 1:3)\r\n"
        b"d UID THREAD REFERENCES UTF-8 UID 2 $\r\ne COPY 1 X\r\nf UID EXPUNGE 1:*\r\n",
        b"\x04a SELECT INBOX (QRESYNC (1 2 1:4 (1:2 3:4)))\r\nb UID STORE 1 +FLAGS (x)\r\n",
        # RFC 4314 §2 negative rights; RFC 8508 REPLACE and UID REPLACE.
        b'\x00a SETACL INBOX -bob@x.test -lr\r\nb DELETEACL INBOX "-anyone"\r\n'
        b"c LISTRIGHTS INBOX -bob\r\nd SETACL INBOX -anyone +w\r\n",
        b"\x06a REPLACE 1 Drafts (\\Draft) {3+}\r\nabc\r\nb UID REPLACE 4 Drafts {1}\r\nx\r\n",
        b'\x05a UID REPLACE 4 "&AOQ-" (\\Seen) "1-Jan-2020 00:00:00 +0000" UTF8 (~{2+}\r\nab)\r\n',
    ]
    return found


if __name__ == "__main__":
    harness.main("imap_command", check, seeds())
