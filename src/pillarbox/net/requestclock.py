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
- **The framing is h11's**, the parser uvicorn uses here, fed the same bytes: a request's end
  (Content-Length, chunked) is where h11 says. Our side of that parser never writes: once a
  request is read, an empty answer is put through it so it reads the next one (pipelined
  requests included). Whatever h11 cannot read further (an upgrade, a close, a malformed
  request, which uvicorn answers 400) ends the timing: uvicorn is the one talking then.
"""

from __future__ import annotations

import enum

import h11

#: uvicorn's own bound on a request head (``h11_max_incomplete_event_size``), so this parser
#: never gives up on a head uvicorn still reads.
MAX_HEAD = 16 * 1024


class Phase(enum.Enum):
    HEAD = "request head"
    BODY = "request body"
    BETWEEN = "between requests"
    UNTIMED = "untimed"


class RequestClock:
    """The deadline of a web connection's client: see the module notes."""

    def __init__(
        self, opened: float, *, head_timeout: float, body_timeout: float, body_min_rate: int
    ) -> None:
        self._head_timeout = head_timeout
        self._body_timeout = body_timeout
        self._body_min_rate = body_min_rate
        self._parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.phase = Phase.HEAD
        self._started = opened  # of the current head or body
        self._last = opened  # the last body byte
        self._body_bytes = 0

    def received(self, data: bytes, now: float) -> None:
        if self.phase is Phase.UNTIMED or not data:
            return
        if self.phase is Phase.BETWEEN:
            self.phase, self._started = Phase.HEAD, now
        self._last = now
        self._parser.receive_data(data)
        try:
            self._advance(now)
        except h11.ProtocolError:
            self.phase = Phase.UNTIMED

    def _advance(self, now: float) -> None:
        while self.phase is not Phase.UNTIMED:
            event = self._parser.next_event()
            if event is h11.NEED_DATA:
                return
            if isinstance(event, h11.Request):
                self.phase, self._started, self._body_bytes = Phase.BODY, now, 0
            elif isinstance(event, h11.Data):
                self._body_bytes += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._next_request(now)
            else:  # PAUSED (an upgrade, CONNECT) or ConnectionClosed
                self.phase = Phase.UNTIMED

    def _next_request(self, now: float) -> None:
        """Put an empty answer through our side of the parser so it reads the next request;
        one that cannot follow (HTTP/1.0, ``Connection: close``) ends the timing."""
        self._parser.send(h11.Response(status_code=204, headers=[]))
        self._parser.send(h11.EndOfMessage())
        if self._parser.our_state is not h11.DONE:
            self.phase = Phase.UNTIMED
            return
        self._parser.start_next_cycle()
        pipelined = bool(self._parser.trailing_data[0])
        self.phase, self._started = (Phase.HEAD, now) if pipelined else (Phase.BETWEEN, now)

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
