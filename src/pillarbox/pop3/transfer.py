"""The octets of a RETR or TOP answer, produced from the stored message in streamed chunks.

The application hands over the message in chunks of any size, cut anywhere; the encoder keeps the
little state a chunk boundary needs (was the last byte a CR, is the next byte at a line start,
how far into the header TOP is), so the output is the same however the message is cut.

The wire form (RFC 1939 §3, §11), before dot-stuffing, is the stored message with:

- every LF not preceded by CR sent as CRLF (Pillarbox stores CRLF; this guards imported mail);
- a CR not followed by LF left alone (it is data, not a line end);
- a final CRLF added when the message does not end with one (a lone final CR gets its LF), since
  the terminating ``.CRLF`` must start a line.

:func:`wire_size` counts exactly these octets, which is the size LIST, STAT and RETR's ``+OK``
line report. Dot-stuffing (:func:`pillarbox.mail.dotstuff.stuff`) then doubles a leading ``.``
of each line; it is not counted in the size (RFC 1939 §11).
"""

from __future__ import annotations

import re

from pillarbox.mail.dotstuff import stuff
from pillarbox.pop3.responses import END_OF_MULTILINE

_BARE_LF = re.compile(rb"(?<!\r)\n")


class _LineEndings:
    """Streaming CRLF normalisation; remembers only the last byte it emitted."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = b"\n"  # the start of a message counts as a line start

    def convert(self, chunk: bytes) -> bytes:
        if not chunk:
            return chunk
        if self._last == b"\r" and chunk.startswith(b"\n"):
            # The CR ending the previous chunk and this LF are one CRLF.
            converted = b"\n" + _BARE_LF.sub(b"\r\n", chunk[1:])
        else:
            converted = _BARE_LF.sub(b"\r\n", chunk)
        self._last = converted[-1:]
        return converted

    def end(self) -> bytes:
        """What completes the last line: nothing, an LF after a lone CR, or a CRLF."""
        if self._last == b"\n":
            return b""
        return b"\n" if self._last == b"\r" else b"\r\n"


def wire_size(raw: bytes) -> int:
    """The size RETR of ``raw`` is listed with (RFC 1939 §11): its wire form, unstuffed."""
    endings = _LineEndings()
    return len(endings.convert(raw)) + len(endings.end())


class MessageEncoder:
    """Turns a stored message into the dot-stuffed body of a RETR or TOP answer.

    ``top_lines`` None sends the whole message (RETR); a number sends the header, the blank
    line and that many body lines (RFC 1939 §7 TOP), or the whole message if it is shorter.
    """

    __slots__ = ("_done", "_endings", "_header_line_length", "_in_header", "_line_start", "_wanted")

    def __init__(self, top_lines: int | None = None) -> None:
        self._endings = _LineEndings()
        self._line_start = True
        self._in_header = top_lines is not None
        self._header_line_length = 0
        self._wanted = top_lines
        self._done = False

    @property
    def done(self) -> bool:
        """True once TOP has all its lines: further chunks are not needed."""
        return self._done

    def encode(self, chunk: bytes) -> bytes:
        """The wire octets for the next chunk of the stored message."""
        if self._done:
            return b""
        data = self._endings.convert(chunk)
        if self._wanted is not None:
            data = self._cut(data, self._wanted)
        return self._stuff(data)

    def finish(self) -> bytes:
        """The last octets: the end of an unterminated last line and the ``.CRLF`` terminator."""
        tail = b"" if self._done else self._endings.end()
        self._done = True
        return tail + END_OF_MULTILINE

    def _cut(self, data: bytes, wanted: int) -> bytes:
        """The part of ``data`` TOP sends: all of the header, then the wanted body lines."""
        position = 0
        while self._in_header:
            newline = data.find(b"\n", position)
            if newline < 0:
                self._header_line_length += len(data) - position
                return data
            length = self._header_line_length + newline - position
            self._header_line_length = 0
            position = newline + 1
            # After normalisation an empty line is exactly CRLF: one octet before the LF.
            if length == 1:
                self._in_header = False
        lines = data.count(b"\n", position)
        if lines < wanted:
            self._wanted = wanted - lines
            return data
        for _ in range(wanted):
            position = data.index(b"\n", position) + 1
        self._done = True
        return data[:position]

    def _stuff(self, data: bytes) -> bytes:
        """Dot-stuff ``data``, knowing whether it starts at a line start (RFC 1939 §3)."""
        if not data:
            return data
        if self._line_start:
            stuffed = stuff(data)
        else:
            first_line_end = data.find(b"\n") + 1
            stuffed = (
                data
                if first_line_end == 0
                else data[:first_line_end] + stuff(data[first_line_end:])
            )
        self._line_start = data.endswith(b"\n")
        return stuffed
