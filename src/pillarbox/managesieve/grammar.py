"""ManageSieve command framing and grammar (RFC 5804 §1.2, §4): bytes in, commands out.

Implementation notes
- A command is an atom, then strings (quoted or literal) and numbers separated by SP, ended by
  CRLF; a literal ``{n+}`` ends its line and is followed by n octets, after which the command
  line continues (§4 ``literal-c2s``). The :class:`Framer` only looks at line ends, like the
  IMAP one (:mod:`pillarbox.imap.lexer`); :func:`parse_command` reads the assembled command.
- Only non-synchronising literals exist from client to server (§4): the protocol has no
  continuation response. A client sending ``{n}`` can therefore only be sending the octets at
  once, so ``{n}`` is read exactly like ``{n+}`` — refusing it would read a script as commands.
- Limits: a line longer than ``max_line`` is refused and skipped to its end; a literal over
  ``max_literal``, or one that would take the whole command over ``max_command`` (a command
  may chain any number of literals), is refused at its announcement and its octets (and the
  rest of its command) are read and dropped, unless that is more than ``max_discard`` octets:
  then the stream is given up (the session answers BYE). Dropped octets are not kept, so the
  framer holds at most one command of ``max_command`` plus a line. ``max_command`` bounds the
  command as framed (:attr:`CommandReady.data`, a literal announcement's line end included)
  exactly. Line ends: CRLF; a bare LF is accepted too, and framed as CRLF after a literal
  announcement.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

_LITERAL_AT_END: Final = re.compile(rb"\{(\d{1,19})(\+?)\}\Z")
_LITERAL: Final = re.compile(rb"\{(\d{1,10})\+?\}\r\n")
#: What ends a literal announcement in a framed command, whichever line end was sent (§4
#: ``literal-c2s``).
_CRLF: Final = b"\r\n"
#: Enough of a skipped line's end to recognise a literal announcement.
_TAIL_KEEP: Final = 32
# ACAP/RFC 5804 §4 atom: ATOM-CHAR excludes SP, controls, ( ) { " % * \\ and 8-bit octets.
_ATOM: Final = re.compile(rb"[!#$&'+,\-./0-9:;<=>?@A-Z\[\]^_`a-z|}~]+")
# §4 number = (NZDIGIT *DIGIT) / "0": a 32-bit unsigned number without leading zeros.
_NUMBER: Final = re.compile(rb"0|[1-9][0-9]{0,9}")
MAX_NUMBER: Final = 2**32 - 1
#: §4 ``quoted``: at most 1024 octets between the quotes.
MAX_QUOTED: Final = 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class FramerLimits:
    #: Longest line between literals, line end excluded.
    max_line: int = 8192
    #: Largest literal (a script upload; SASL responses and names are far smaller).
    max_literal: int = 65536
    #: Largest whole command as framed: its lines, literals and their announcements' CRLFs
    #: (PUTSCRIPT: a name and a script).
    max_command: int = 2 * 65536 + 2 * 8192
    #: Octets of a refused literal read and dropped before the connection is given up.
    max_discard: int = 1024 * 1024


class RejectReason(enum.Enum):
    LINE_TOO_LONG = "line too long"
    LITERAL_TOO_LARGE = "literal too large"
    COMMAND_TOO_LARGE = "command too large"


@dataclass(frozen=True, slots=True)
class CommandReady:
    """A whole command: its lines joined with their literals, without the final line end."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    """The command in progress is refused (answer NO); what is left of it is dropped."""

    reason: RejectReason
    size: int


@dataclass(frozen=True, slots=True)
class Fatal:
    """A refused literal is too large to skip: answer BYE and close."""

    size: int


FrameEvent = CommandReady | Rejected | Fatal


class Framer:
    """Feed with :meth:`receive_data`, drain with :meth:`next_event` until it returns None."""

    def __init__(self, limits: FramerLimits) -> None:
        self.limits = limits
        self._buffer = bytearray()
        self._command = bytearray()
        self._literal_left = 0
        self._discarding = False
        self._line_overflow = False
        self._closed = False

    @property
    def in_literal(self) -> bool:
        return self._literal_left > 0

    def receive_data(self, data: bytes) -> None:
        if not self._closed:
            self._buffer += data

    def discard(self) -> int:
        """Forget everything received and not yet framed (pipelined after STARTTLS: it was
        sent in the clear and may have been injected); returns how many octets."""
        dropped = len(self._buffer) + len(self._command)
        self._buffer.clear()
        self._command.clear()
        self._literal_left = 0
        self._discarding = self._line_overflow = False
        return dropped

    def next_event(self) -> FrameEvent | None:
        while not self._closed:
            if self._literal_left:
                if not self._buffer:
                    return None
                take = min(self._literal_left, len(self._buffer))
                if not self._discarding:
                    self._command += self._buffer[:take]
                del self._buffer[:take]
                self._literal_left -= take
                continue
            newline = self._buffer.find(b"\n")
            if newline < 0:
                return self._partial_line()
            event = self._complete_line(newline)
            if event is not None:
                return event
        return None

    def _partial_line(self) -> FrameEvent | None:
        if len(self._buffer) <= self.limits.max_line:
            return None
        event = self._reject(RejectReason.LINE_TOO_LONG, len(self._buffer))
        del self._buffer[: len(self._buffer) - _TAIL_KEEP]
        self._line_overflow = True
        return event

    def _reject(self, reason: RejectReason, size: int) -> FrameEvent | None:
        """Refuse the command in progress (once) and drop the rest of it."""
        if self._discarding:
            return None
        self._discarding = True
        self._command.clear()
        return Rejected(reason, size)

    def _complete_line(self, newline: int) -> FrameEvent | None:
        end = newline - 1 if newline and self._buffer[newline - 1] == 0x0D else newline
        line = bytes(self._buffer[:end])
        del self._buffer[: newline + 1]
        pending = None
        if self._line_overflow or len(line) > self.limits.max_line:
            if not self._line_overflow:
                pending = self._reject(RejectReason.LINE_TOO_LONG, len(line))
            line = line[-_TAIL_KEEP:]
            self._line_overflow = False
        if not self._discarding:
            self._command += line
            if len(self._command) > self.limits.max_command:
                pending = self._reject(RejectReason.COMMAND_TOO_LARGE, len(self._command))
        match = _LITERAL_AT_END.search(line)
        if match is None:
            return self._end_command(pending)
        size = int(match.group(1))
        # The command as framed: its lines so far, the announcement's line end (CRLF, a bare
        # LF's too) and the literal; counted before any of it is taken, so that max_command
        # bounds the framed command exactly.
        framed = len(self._command) + len(_CRLF) + size
        if not self._discarding and size > self.limits.max_literal:
            pending = self._reject(RejectReason.LITERAL_TOO_LARGE, size)
        elif not self._discarding and framed > self.limits.max_command:
            pending = self._reject(RejectReason.COMMAND_TOO_LARGE, framed)
        if self._discarding and size > self.limits.max_discard:
            self._closed = True
            self._buffer.clear()
            return Fatal(size)
        if not self._discarding:
            self._command += _CRLF
        self._literal_left = size
        return pending

    def _end_command(self, pending: FrameEvent | None) -> FrameEvent | None:
        discarded = self._discarding
        data = bytes(self._command)
        self._command.clear()
        self._discarding = False
        return pending if discarded else CommandReady(data)


class GrammarError(Exception):
    """The command does not parse; the message is for the log, the client gets a NO."""


@dataclass(frozen=True, slots=True)
class Command:
    """``name`` upper-cased (§1.2: command names are case-insensitive); strings as bytes,
    numbers as int, in order."""

    name: str
    args: tuple[bytes | int, ...]


def parse_command(data: bytes) -> Command:
    """One framed command; :class:`GrammarError` if it breaks §4's grammar."""
    match = _ATOM.match(data)
    if match is None:
        raise GrammarError("no command name")
    position = match.end()
    args = []
    while position < len(data):
        if data[position] != 0x20:
            raise GrammarError("expected SP between arguments")
        position += 1
        value, position = read_value(data, position)
        args.append(value)
    return Command(match.group().decode("ascii").upper(), tuple(args))


def parse_string_line(data: bytes) -> bytes:
    """A SASL client response (§2.1): exactly one string on the line."""
    value, position = read_value(data, 0)
    if position != len(data) or isinstance(value, int):
        raise GrammarError("a SASL response is one string")
    return value


def read_value(data: bytes, position: int) -> tuple[bytes | int, int]:
    """The string or number at ``position``, and where it ends."""
    if position >= len(data):
        raise GrammarError("missing argument")
    lead = data[position]
    if lead == 0x22:  # DQUOTE
        return _read_quoted(data, position + 1)
    if lead == 0x7B:  # {
        literal = _LITERAL.match(data, position)
        if literal is None:
            raise GrammarError("bad literal announcement")
        start = literal.end()
        end = start + int(literal.group(1))
        if end > len(data):
            raise GrammarError("literal shorter than announced")
        return data[start:end], end
    number = _NUMBER.match(data, position)
    if number is not None and (number.end() == len(data) or data[number.end()] == 0x20):
        value = int(number.group())
        if value > MAX_NUMBER:
            raise GrammarError("number over 32 bits")
        return value, number.end()
    raise GrammarError("expected a string or a number")


def _read_quoted(data: bytes, position: int) -> tuple[bytes, int]:
    out = bytearray()
    while position < len(data):
        octet = data[position]
        if octet == 0x22:
            if len(out) > MAX_QUOTED:
                raise GrammarError("quoted string over 1024 octets")
            return bytes(out), position + 1
        if octet == 0x5C:  # QUOTED-SPECIALS: only " and \\ may be escaped
            position += 1
            if position >= len(data) or data[position] not in b'"\\':
                raise GrammarError("bad escape in quoted string")
            octet = data[position]
        elif octet in b"\r\n\0":
            raise GrammarError("CR, LF or NUL in a quoted string")
        out.append(octet)
        position += 1
    raise GrammarError("unterminated quoted string")
