"""How long a web client may take to send each request: the deadlines a web connection's
bytes run against, read from the bytes themselves (the web listeners' guard,
:class:`pillarbox.net.http.ConnectionGuard`, in front of uvicorn's protocol).

Implementation notes:

- **Sans-I/O, time as an argument** (the aioquic shape): :meth:`RequestClock.received` takes
  the bytes and the time they came; :meth:`RequestClock.deadline` says when the connection is
  late; the guard owns the timer.
- **Every request head is timed**, not only the first: a head must be complete
  ``head_timeout`` seconds after its first byte (the first request's: after the connection
  opened). Between requests nothing is timed here: uvicorn's keep-alive timeout ends a
  connection idle after a response, and a long response (the live-update stream) is the
  server's to send, not the client's.
- **A body must keep coming** (STYLE 8: inactivity timers are refreshed by any received
  bytes): ``body_timeout`` seconds without a byte closes the connection, and so does a body
  slower on average than ``body_min_rate`` bytes a second: each byte received earns
  ``1 / body_min_rate`` more seconds on top of ``body_timeout`` from the body's start (Apache's
  mod_reqtimeout ``body=…,MinRate=…``). A byte every few seconds refreshes an idle timer for
  ever; it does not earn time fast enough here. An honest link of any usable speed (a 25 MiB
  attachment at 64 kbit/s is 8000 bytes a second) stays far ahead of the deadline.
- **The framing is read, not parsed**: a request's end is where uvicorn's parser (h11) puts
  it, found from only what framing needs (RFC 9112 §6.3): the head's end, the request line's
  version, and the Content-Length, Transfer-Encoding and Connection fields, with h11's
  leniencies (a bare LF ends a line, obs-fold continues a field, whitespace after a chunk
  size). Feeding h11 itself the bytes uvicorn parses anyway cost 85 µs a 479-byte head.
  What cannot be followed (a close, HTTP/1.0, a malformed request, which uvicorn answers 400
  or 501 and closes) ends the timing: uvicorn is the one talking then. An Upgrade or CONNECT
  request is timed like any other: without a WebSocket library uvicorn switches no protocol,
  answers it, and reads the next request (were it to switch, what follows the handshake
  would be timed as a head). A request misframed here would be closed late or early, never
  read differently: uvicorn alone reads the bytes.
"""

from __future__ import annotations

import enum
import re

#: uvicorn's own bound on a request head (``h11_max_incomplete_event_size``), so this reading
#: never gives up on a head uvicorn still reads; also a chunk line's and the trailer's bound.
MAX_HEAD = 16 * 1024
#: RFC 9112 §2.2: a recipient MAY take a bare LF as a line's end (h11 does).
_BLANK_LINE = re.compile(rb"\n\r?\n")
#: RFC 9112 §3: method SP request-target SP HTTP-version.
_REQUEST_LINE = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+ [^\x00\s]+ HTTP/(\d\.\d)")
#: RFC 9112 §7.1: chunk-size [chunk-ext] CRLF (h11: at most 20 digits, trailing OWS taken).
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;.*)?[ \t]*")
#: The fields framing depends on (RFC 9112 §6.1, §6.3, §9.3; RFC 9110 §7.8).
_FRAMING_FIELDS = frozenset({b"content-length", b"transfer-encoding", b"connection"})
_MAX_LENGTH_DIGITS = 20  # h11's bound on Content-Length


class Phase(enum.Enum):
    HEAD = "request head"
    BODY = "request body"
    BETWEEN = "between requests"
    UNTIMED = "untimed"


class _Next(enum.Enum):
    """What the reading waits for."""

    HEAD = enum.auto()
    DATA = enum.auto()  # ``_left`` bytes of body (a Content-Length's, or a chunk's)
    CHUNK_SIZE = enum.auto()
    CHUNK_END = enum.auto()  # the CRLF after a chunk's data
    TRAILER = enum.auto()


class _Malformed(Exception):
    """What uvicorn answers 400 (or 501) and closes."""


class RequestClock:
    """The deadline of a web connection's client: see the module notes."""

    def __init__(
        self, opened: float, *, head_timeout: float, body_timeout: float, body_min_rate: int
    ) -> None:
        self._head_timeout = head_timeout
        self._body_timeout = body_timeout
        self._body_min_rate = body_min_rate
        self.phase = Phase.HEAD
        self._started = opened  # of the current head or body
        self._last = opened  # the last body byte
        self._body_bytes = 0
        self._next = _Next.HEAD
        self._buffer = bytearray()  # a head, a chunk line or a trailer not yet complete
        self._searched = 0  # where the blank line's search resumes in ``_buffer``
        self._left = 0  # body bytes still to come (DATA)
        self._chunked = False
        self._follows = True  # another request may follow this one on the connection

    def received(self, data: bytes, now: float) -> None:
        if self.phase is Phase.UNTIMED or not data:
            return
        if self.phase is Phase.BETWEEN:
            self.phase, self._started = Phase.HEAD, now
        self._last = now
        try:
            while data and self.phase is not Phase.UNTIMED:
                if self._next is _Next.DATA:
                    data = self._count(data, now)
                else:
                    self._buffer += data
                    data = self._read_lines(now)
        except _Malformed:
            self.phase = Phase.UNTIMED

    def _count(self, data: bytes, now: float) -> bytes:
        """Body bytes counted, never kept; what follows them."""
        taken = min(self._left, len(data))
        self._left -= taken
        self._body_bytes += taken
        if not self._left:
            if self._chunked:
                self._next = _Next.CHUNK_END
            else:
                self._request_read(now, pipelined=taken < len(data))
        return data[taken:]

    def _read_lines(self, now: float) -> bytes:
        """Read heads, chunk lines and trailers from the buffer until it holds no complete
        one; what follows them when body bytes come next (b"" otherwise: kept)."""
        while self.phase is not Phase.UNTIMED:
            if self._next is _Next.DATA:
                rest = bytes(self._buffer)
                self._buffer.clear()
                return rest
            if self._next in (_Next.HEAD, _Next.TRAILER):
                block = self._block()
                if block is None:
                    return b""
                if self._next is _Next.HEAD:
                    self._head_read(block, now)
                else:
                    self._request_read(now, pipelined=bool(self._buffer))
            else:
                line = self._line()
                if line is None:
                    return b""
                if self._next is _Next.CHUNK_END:
                    if line:  # h11: exactly CRLF after a chunk's data
                        raise _Malformed
                    self._next = _Next.CHUNK_SIZE
                    continue
                match = _CHUNK_SIZE.fullmatch(line)
                if match is None:
                    raise _Malformed
                self._left = int(match.group(1), 16)
                self._next = _Next.DATA if self._left else _Next.TRAILER
        return b""

    def _block(self) -> bytes | None:
        """Lines up to a blank one, taken from the buffer (None: not all there yet)."""
        buffer = self._buffer
        if self._next is _Next.TRAILER:  # no trailer: the blank line at once (h11)
            if buffer == b"\r":
                return None
            for blank in (b"\n", b"\r\n"):
                if buffer.startswith(blank):
                    del buffer[: len(blank)]
                    return b""
        match = _BLANK_LINE.search(buffer, self._searched)
        if match is None:
            if len(buffer) > MAX_HEAD:
                raise _Malformed
            if self._next is _Next.HEAD and buffer and buffer[0] < 0x21:
                raise _Malformed  # a request line starts with a method (h11)
            self._searched = max(0, len(buffer) - 2)
            return None
        block = bytes(buffer[: match.end()])
        del buffer[: match.end()]
        self._searched = 0
        return block

    def _line(self) -> bytes | None:
        """One CRLF-ended line taken from the buffer, without its CRLF (None: not there)."""
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD:
                raise _Malformed
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    def _head_read(self, head: bytes, now: float) -> None:
        """The request's framing from its head (RFC 9112 §6.3), the way h11 reads it."""
        lines = [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")[:-2]]
        if not lines:
            raise _Malformed
        request = _REQUEST_LINE.fullmatch(lines[0])
        if request is None:
            raise _Malformed
        fields: list[list[bytes]] = []  # [name, value] of the framing fields
        last: list[bytes] | None = None
        for number, line in enumerate(lines[1:]):
            if line[:1] in (b" ", b"\t"):  # RFC 9112 §5.2 obs-fold
                if number == 0:
                    raise _Malformed
                if last is not None:
                    last[1] += b" " + line.strip(b" \t")
                continue
            name, colon, value = line.partition(b":")
            if not colon or not name or name[-1:] in (b" ", b"\t"):
                raise _Malformed  # RFC 9112 §5.1: no whitespace before the colon
            name = name.lower()
            last = [name, value.strip(b" \t")] if name in _FRAMING_FIELDS else None
            if last is not None:
                fields.append(last)
        self._frame(request.group(1), fields)
        self.phase, self._started, self._body_bytes = Phase.BODY, now, 0
        if self._left or self._chunked:
            self._next = _Next.DATA if self._left else _Next.CHUNK_SIZE
        else:
            self._request_read(now, pipelined=bool(self._buffer))

    def _frame(self, version: bytes, fields: list[list[bytes]]) -> None:
        """Body length and whether another request may follow, from the framing fields."""
        values: dict[bytes, list[bytes]] = {}
        for name, value in fields:
            values.setdefault(name, []).append(value)
        encodings = values.get(b"transfer-encoding", [])
        if len(encodings) > 1 or (encodings and encodings[0].lower() != b"chunked"):
            raise _Malformed  # h11 reads no other transfer coding (uvicorn: 501)
        lengths = {
            item.strip()
            for value in values.get(b"content-length", [])
            for item in value.split(b",")
        }
        if len(lengths) > 1:
            raise _Malformed  # RFC 9112 §6.3 (5): differing lengths
        length = lengths.pop() if lengths else b"0"
        if not length.isdigit() or len(length) > _MAX_LENGTH_DIGITS:
            raise _Malformed
        # RFC 9112 §6.3 (3): Transfer-Encoding overrides Content-Length.
        self._chunked = bool(encodings)
        self._left = 0 if self._chunked else int(length)
        # RFC 9112 §9.3: HTTP/1.1 persists unless "close"; h11 never keeps HTTP/1.0 alive.
        self._follows = b"close" not in _tokens(values.get(b"connection", [])) and version >= b"1.1"

    def _request_read(self, now: float, *, pipelined: bool) -> None:
        """The request is all in: the next one's head is timed from now if its bytes came
        with this one's (``pipelined``), from its first byte otherwise; none follows a close."""
        self._next = _Next.HEAD
        if not self._follows:
            self.phase = Phase.UNTIMED
            return
        self.phase, self._started = (Phase.HEAD if pipelined else Phase.BETWEEN), now

    def deadline(self) -> float | None:
        """When the client is late with what it is sending (None: nothing is timed now)."""
        if self.phase is Phase.HEAD:
            return self._started + self._head_timeout
        if self.phase is Phase.BODY:
            idle = self._last + self._body_timeout
            if self._body_min_rate <= 0:
                return idle
            earned = self._started + self._body_timeout + self._body_bytes / self._body_min_rate
            return min(idle, earned)
        return None


def _tokens(values: list[bytes]) -> set[bytes]:
    """The comma-separated tokens of a field's lines, lowercased (RFC 9110 §5.6.1)."""
    return {item.strip().lower() for value in values for item in value.split(b",")} - {b""}
