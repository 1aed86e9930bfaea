"""Incremental command framing: bytes in, complete commands (with their literals) out.

Implementation notes
- A command is a line, unless the line ends in a literal announcement ``{n}`` / ``{n+}``
  (``~{…}`` for literal8 is the same to the framer): then n octets follow, then the command
  continues with another line (RFC 9051 §4.3, RFC 7888 §3). The framer only looks at the end of
  each line, as RFC 7888 §3 prescribes.
- Synchronising literal: the framer stops and emits :class:`ContinueLiteral`; the adapter sends
  ``+ …`` and keeps feeding. If the literal is over the limit, :class:`Rejected` comes instead
  and the client, which has not sent the data, abandons the command (RFC 9051 §7.5).
- Non-synchronising literal over the limit (or over 4096 octets when the server advertises
  LITERAL-, RFC 7888 §5): :class:`Rejected` at once (so the tagged answer can precede the data,
  RFC 7888 §4 option 1), then the literal and the rest of the command are read and discarded —
  unless discarding would exceed ``max_discard``, then :class:`Fatal` (answer BYE and close).
- A line longer than ``max_line`` is :class:`Rejected` and discarded up to its end; only its
  last octets are kept, to see whether a literal follows it.
- Line ends: CRLF; a bare LF is accepted too (as Dovecot and Mox do). Yielded commands have
  CRLF after each literal announcement and no final CRLF: the form ``parse_command`` reads.
- The lexer holds at most one command plus ``max_line`` octets; it never interprets commands,
  so IDLE's ``DONE`` and AUTHENTICATE responses come out as commands too.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

from pillarbox.imap.parser import read_tag

#: RFC 7888 §5: with LITERAL-, a non-synchronising literal may not exceed 4096 octets.
LITERAL_MINUS_MAX: Final = 4096
#: Enough of a discarded line's end to recognise ``{n+}`` with a 63-bit n.
_TAIL_KEEP: Final = 32
_LITERAL_AT_END: Final = re.compile(rb"\{(\d{1,19})(\+?)\}\Z")


@dataclass(frozen=True, slots=True)
class LexerLimits:
    """Every bound the framer enforces; the server fills it from configuration."""

    #: Longest line (between literals), CRLF excluded. Dovecot's default is 64 KiB.
    max_line: int = 65536
    #: Largest literal in commands other than APPEND and REPLACE.
    max_literal: int = 65536
    #: Largest APPEND or REPLACE message literal (advertised as APPENDLIMIT, RFC 7889).
    max_append_literal: int = 64 * 1024 * 1024
    #: Largest whole command, lines and literals together (a MULTIAPPEND batch).
    max_command: int = 256 * 1024 * 1024
    #: How much of a rejected non-synchronising literal to read and drop before giving up.
    max_discard: int = 1024 * 1024
    #: True if the server advertises LITERAL- instead of LITERAL+ (RFC 7888 §5).
    literal_minus: bool = False


class RejectReason(enum.Enum):
    LINE_TOO_LONG = "line too long"
    LITERAL_TOO_LARGE = "literal too large"  # answer with [TOOBIG] (RFC 4469 §5, RFC 7888 §5)
    COMMAND_TOO_LARGE = "command too large"


@dataclass(frozen=True, slots=True)
class CommandReady:
    """A whole command: lines joined with their literals, without the final CRLF."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ContinueLiteral:
    """A synchronising literal of ``size`` octets was accepted: send a ``+`` continuation."""

    size: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """The command in progress is refused; answer ``tag BAD``/``NO`` (untagged if no tag).

    ``synchronizing`` tells whether the client is waiting (it will send nothing more of this
    command) or already sending (the framer drops what comes).
    """

    tag: str | None
    reason: RejectReason
    size: int = 0
    synchronizing: bool = False


@dataclass(frozen=True, slots=True)
class Fatal:
    """The stream cannot be resynchronised cheaply: answer ``* BYE`` and close."""

    tag: str | None
    reason: RejectReason
    size: int


Event = CommandReady | ContinueLiteral | Rejected | Fatal


class Lexer:
    """Feed with :meth:`receive_data`, drain with :meth:`next_event` until it returns None."""

    def __init__(self, *, limits: LexerLimits | None = None) -> None:
        self.limits = limits or LexerLimits()
        self._buffer = bytearray()  # received, not yet consumed
        self._command = bytearray()  # the command being assembled
        self._tag: str | None = None
        self._is_append = False
        self._literal_left = 0  # octets of the current literal still expected
        self._discarding = False  # the command was rejected; drop it to its end
        self._line_overflow = False  # the current line is over max_line; keep only its tail
        self._closed = False

    @property
    def closed(self) -> bool:
        """True after :class:`Fatal`: nothing more is read."""
        return self._closed

    @property
    def in_literal(self) -> bool:
        """True while literal octets are expected (inactivity timers may treat this apart)."""
        return self._literal_left > 0

    def take_unread(self) -> bytes:
        """Hand back what was received after the last complete command, unread: after
        COMPRESS those octets are compressed (RFC 4978 §3) and must pass the inflater first."""
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def receive_data(self, data: bytes) -> None:
        if not self._closed:
            self._buffer += data

    def next_event(self) -> Event | None:
        """The next framing event, or None when more data is needed."""
        while not self._closed:
            if self._literal_left:
                if not self._buffer:
                    return None
                self._consume_literal()
                continue
            newline = self._buffer.find(b"\n")
            if newline < 0:
                return self._partial_line()
            event = self._complete_line(newline)
            if event is not None:
                return event
        return None

    # -- internals -------------------------------------------------------------------------

    def _consume_literal(self) -> None:
        take = min(self._literal_left, len(self._buffer))
        if not self._discarding:
            self._command += self._buffer[:take]
        del self._buffer[:take]
        self._literal_left -= take

    def _partial_line(self) -> Event | None:
        """No line end yet: if the line is already too long, reject it and keep only its tail."""
        if len(self._buffer) <= self.limits.max_line:
            return None
        event = self._reject_line(len(self._buffer), bytes(self._buffer[:64]))
        del self._buffer[: len(self._buffer) - _TAIL_KEEP]
        self._line_overflow = True
        return event

    def _reject_line(self, length: int, head: bytes) -> Event | None:
        """Reject the command for a long line (once); ``head`` is the line's start."""
        if self._discarding:
            return None
        if not self._command:
            self._tag = read_tag(head)
        self._discarding = True
        return Rejected(self._tag, RejectReason.LINE_TOO_LONG, length)

    def _complete_line(self, newline: int) -> Event | None:
        end = newline - 1 if newline and self._buffer[newline - 1] == 0x0D else newline
        line = bytes(self._buffer[:end])
        del self._buffer[: newline + 1]
        pending = None
        if self._line_overflow or len(line) > self.limits.max_line:
            if not self._line_overflow:
                pending = self._reject_line(len(line), line[:64])
            line = line[-_TAIL_KEEP:]
            self._line_overflow = False
        return self._finish_line(line, pending)

    def _finish_line(self, line: bytes, pending: Event | None) -> Event | None:
        """One whole line of the current command; ``pending`` is a rejection to report."""
        if not self._command and not self._discarding:
            self._tag = read_tag(line)
            self._is_append = _APPEND_PREFIX.match(line) is not None
        if not self._discarding:
            self._command += line
            if len(self._command) > self.limits.max_command:
                self._discarding = True
                pending = Rejected(self._tag, RejectReason.COMMAND_TOO_LARGE, len(self._command))
        match = _LITERAL_AT_END.search(line)
        if match is None:
            return self._end_command(pending)
        size = int(match.group(1))
        if not match.group(2):  # synchronising
            if self._discarding:
                # The client waits for "+" and gets the rejection instead: the command is over.
                return self._end_command(pending)
            if self._too_large(size, synchronizing=True):
                self._discarding = True
                event = Rejected(self._tag, RejectReason.LITERAL_TOO_LARGE, size, True)
                return self._end_command(event)
            self._command += b"\r\n"
            self._literal_left = size
            return ContinueLiteral(size)
        if not self._discarding and self._too_large(size, synchronizing=False):
            self._discarding = True
            pending = Rejected(self._tag, RejectReason.LITERAL_TOO_LARGE, size, False)
        if self._discarding and size > self.limits.max_discard:
            self._closed = True
            self._buffer.clear()
            return Fatal(self._tag, RejectReason.LITERAL_TOO_LARGE, size)
        if not self._discarding:
            self._command += b"\r\n"
        self._literal_left = size
        return pending

    def _too_large(self, size: int, *, synchronizing: bool) -> bool:
        limits = self.limits
        if not synchronizing and limits.literal_minus and size > LITERAL_MINUS_MAX:
            return True
        limit = limits.max_append_literal if self._is_append else limits.max_literal
        # The command then holds the CRLF the lexer writes after the announcement too.
        framed = len(self._command) + len(b"\r\n") + size
        return size > limit or framed > limits.max_command

    def _end_command(self, pending: Event | None) -> Event | None:
        """The current command ended: yield it, or the rejection it earned (if not yet sent)."""
        discarded = self._discarding
        data = bytes(self._command)
        self._command.clear()
        self._discarding = False
        self._tag = None
        self._is_append = False
        return pending if discarded else CommandReady(data)


#: A command's first line is an APPEND, or a (UID) REPLACE, which stores its message as APPEND
#: does (RFC 8508 §3.2; RFC 7889 APPENDLIMIT): its literals have their own limit.
_APPEND_PREFIX: Final = re.compile(rb"[^ ]+ (?:UID )?(?:APPEND|REPLACE) ", re.IGNORECASE)
