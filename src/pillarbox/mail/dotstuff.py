"""Dot-stuffing for the line-oriented transfers of SMTP DATA (RFC 5321 §4.5.2) and POP3
(RFC 1939 §3): a line that begins with "." gets one more "." on the wire.

:class:`Unstuffer` undoes it incrementally, as bytes arrive, and finds the end of the data.
Lines end at CRLF and nowhere else (RFC 5321 §2.3.8): a bare CR or bare LF is never a line
boundary, so it can neither end the data nor start a line whose dot gets removed. That is the
whole defence against SMTP smuggling (CVE-2023-51764/51765/51766): ``\\n.\\n``, ``\\r.\\r``,
``\\n.\\r\\n`` and ``\\r\\n.\\n`` are all message content here. The unstuffer also reports what a
server's policy needs to refuse such content (:attr:`Unstuffer.saw_bare_linebreak`) or, when asked
to normalise, turns each bare CR or LF into CRLF in its output.
"""

from __future__ import annotations

import re

_BARE = re.compile(rb"[\r\n]")


def stuff(data: bytes) -> bytes:
    """Stuff ``data`` (CRLF lines) for transmission; the terminating ``.CRLF`` is not added."""
    if not data:
        return data
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed


class Unstuffer:
    """Incremental reverse of :func:`stuff` plus detection of the ``CRLF.CRLF`` terminator.

    Feed wire bytes in any chunking; :meth:`feed` returns the message bytes decoded so far (the
    same bytes whatever the chunking). Once :attr:`finished`, the bytes after the terminator
    are in :attr:`unused`. Memory is bounded: at most two undecided bytes are held back.
    """

    __slots__ = (
        "_at_line_start",
        "_line_length",
        "_longest",
        "_normalise",
        "_pending",
        "finished",
        "saw_bare_linebreak",
        "unused",
    )

    def __init__(self, *, normalise_bare_linebreaks: bool = False) -> None:
        self._normalise = normalise_bare_linebreaks
        self._pending = b""
        # The data starts right after the CRLF of the DATA command line.
        self._at_line_start = True
        self._line_length = 0
        self.finished = False
        self.unused = b""
        self.saw_bare_linebreak = False
        self._longest = 0

    @property
    def longest_line(self) -> int:
        """Longest line so far in octets on the wire, CRLF included (RFC 5321 §4.5.3.1.6).

        A line still arriving counts with the CRLF it must end with, so an over-long line is
        seen as soon as its octets are, not when (or if) its end arrives.
        """
        return max(self._longest, self._line_length + 2 if self._line_length else 0)

    def feed(self, data: bytes) -> bytes:
        if self.finished:
            self.unused += data
            return b""
        buf = self._pending + data
        self._pending = b""
        out: list[bytes] = []
        i, n = 0, len(buf)
        while i < n:
            if self._at_line_start and buf[i] == 0x2E:  # "."
                if buf.startswith(b".\r\n", i):
                    self.finished = True
                    self.unused = buf[i + 3 :]
                    break
                if n - i < 3 and b".\r\n".startswith(buf[i:]):
                    self._pending = buf[i:]  # "." or ".\r": undecided until more arrives
                    break
                # RFC 5321 §4.5.2: the first "." of a line with more on it is deleted.
                i += 1
                self._line_length += 1
            self._at_line_start = False
            k = buf.find(b"\r\n.", i)
            if k >= 0 or not buf.endswith(b"\r"):
                # Fast path: the lines up to the next one that starts with "." (or to the
                # end of what we have) go out as one slice when they hold no bare CR or LF.
                stop = k + 2 if k >= 0 else n
                block = buf[i:stop]
                lines = block.split(b"\r\n")
                # Without its CRLFs the block holds a CR or LF only where one was bare (two
                # memchr scans of a joined copy: cheaper than counting CRs and LFs in it; by
                # ``find``, as bytes' ``in`` first tries its operand as an integer, making and
                # clearing a TypeError).
                without_crlfs = b"".join(lines)
                if (
                    len(lines) > 1
                    and without_crlfs.find(b"\r") < 0
                    and without_crlfs.find(b"\n") < 0
                ):
                    self._end_line(len(lines[0]) + 2)
                    if len(lines) > 2:
                        self._longest = max(self._longest, max(map(len, lines[1:-1])) + 2)
                    self._line_length = len(lines[-1])
                    out.append(block)
                    self._at_line_start = not lines[-1]
                    i = stop
                    continue
            j = buf.find(b"\r\n", i)
            end = j if j >= 0 else (n - 1 if buf.endswith(b"\r") else n)
            out.append(self._content(buf[i:end]))
            if j < 0:
                self._pending = buf[end:]  # a lone trailing "\r" may be half of a CRLF
                break
            out.append(b"\r\n")
            self._end_line(2)
            self._at_line_start = True
            i = j + 2
        return b"".join(out)

    def _content(self, segment: bytes) -> bytes:
        """Account for a piece of one line (no CRLF in it) and return it as output."""
        if segment.find(b"\r") < 0 and segment.find(b"\n") < 0:  # find: see feed
            self._line_length += len(segment)
            return segment
        self.saw_bare_linebreak = True
        if not self._normalise:
            self._line_length += len(segment)
            return segment
        # Normalised bare line breaks end a line for the length limit, but never for "." rules.
        pieces = _BARE.split(segment)
        for piece in pieces[:-1]:
            self._end_line(len(piece) + 1)
        self._line_length += len(pieces[-1])
        return b"\r\n".join(pieces)

    def _end_line(self, terminator: int) -> None:
        self._longest = max(self._longest, self._line_length + terminator)
        self._line_length = 0


class Stuffer:
    """Incremental :func:`stuff` for a body sent in pieces, plus the terminator.

    Stuffing depends on the line start, which can straddle two pieces (``...\\r`` then
    ``\\n.x``), so the last two octets sent are remembered.
    """

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b"\r\n"  # the body starts at a line start

    def feed(self, data: bytes) -> bytes:
        joined = self._tail + data
        self._tail = joined[-2:]
        # The pattern is 3 octets long, so the 2-octet tail itself is never rewritten.
        return joined.replace(b"\r\n.", b"\r\n..")[2:] if data else b""

    def end(self) -> bytes:
        """The terminator, preceded by a CRLF if the body did not end with one
        (RFC 5321 §4.1.1.4)."""
        return (b"" if self._tail == b"\r\n" else b"\r\n") + b".\r\n"
