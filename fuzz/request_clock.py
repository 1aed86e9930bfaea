"""Fuzz the web listeners' request clock (pillarbox.net.requestclock) with a web client's
bytes, cut into reads of any size at any times.

Input: byte 0 is the largest read (0: all at once), byte 1 the seconds between reads; the
rest is what the client sends. The same bytes are also given to a reference h11 server
connection one byte at a time, answering each request as the clock does, which tells at
each offset what the client is sending (a head, a body, nothing) and how much body came.
Asserted, beyond "no exception" (``received`` documents none: whatever h11 cannot read ends
the timing):

* after every read the clock's phase is the reference's at that offset: the framing
  (Content-Length, chunked, pipelined requests, an upgrade, a close, a malformed request)
  is h11's whatever the cuts;
* its deadline is the one the module notes promise: a head's ``head_timeout`` from its
  first byte (the first head's: from the connection's opening), a body's ``body_timeout``
  from the last read capped by the minimum rate over the body bytes received, none between
  requests or once untimed.
"""

from __future__ import annotations

from dataclasses import dataclass

import atheris
import harness

# h11 instrumented too: its framing paths are what the fuzzer should find its way through.
with atheris.instrument_imports(include=["pillarbox", "h11"]):
    import h11

    from pillarbox.net.requestclock import MAX_HEAD, Phase, RequestClock

HEAD_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0
MIN_RATE = 100
OPENED = 1000.0


@dataclass(frozen=True, slots=True)
class Reference:
    """What h11 says the client is sending after some byte: the phase, the requests whose
    head it read so far, and the body bytes of the last."""

    phase: Phase
    requests: int
    body: int


def reference(stream: bytes) -> list[Reference]:
    """The reference's phase after each byte of ``stream`` (index i: after i + 1 bytes)."""
    parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    phase, requests, body = Phase.HEAD, 0, 0
    out: list[Reference] = []
    for index in range(len(stream)):
        if phase is not Phase.UNTIMED:
            phase = Phase.HEAD if phase is Phase.BETWEEN else phase
            parser.receive_data(stream[index : index + 1])
            try:
                while True:
                    event = parser.next_event()
                    if event is h11.NEED_DATA:
                        break
                    if isinstance(event, h11.Request):
                        phase, requests, body = Phase.BODY, requests + 1, 0
                    elif isinstance(event, h11.Data):
                        body += len(event.data)
                    elif isinstance(event, h11.EndOfMessage):
                        parser.send(h11.Response(status_code=204, headers=[]))
                        parser.send(h11.EndOfMessage())
                        if parser.our_state is not h11.DONE:
                            phase = Phase.UNTIMED
                            break
                        parser.start_next_cycle()
                        phase = Phase.BETWEEN
                    else:
                        phase = Phase.UNTIMED
                        break
            except h11.ProtocolError:
                phase = Phase.UNTIMED
            # Bytes of the next request already read make its head begin now.
            if phase is Phase.BETWEEN and parser.trailing_data[0]:
                phase = Phase.HEAD
        out.append(Reference(phase, requests, body))
    return out


def check(data: bytes) -> None:
    if len(data) < 2:
        return
    largest, step, stream = data[0], float(data[1]), data[2:]
    expected = reference(stream)
    clock = RequestClock(
        OPENED, head_timeout=HEAD_TIMEOUT, body_timeout=BODY_TIMEOUT, body_min_rate=MIN_RATE
    )
    assert clock.phase is Phase.HEAD and clock.deadline() == OPENED + HEAD_TIMEOUT
    taken, now, turn = 0, OPENED, 0
    head_start, body_start = OPENED, OPENED
    previous = Reference(Phase.HEAD, 0, 0)
    while taken < len(stream):
        size = len(stream) if not largest else 1 + (turn * 7) % largest
        piece, turn = stream[taken : taken + size], turn + 1
        taken += len(piece)
        now += step
        clock.received(piece, now)
        wanted = expected[taken - 1]
        assert clock.phase is wanted.phase, (taken, clock.phase, wanted)
        if wanted.phase is Phase.HEAD and (
            previous.phase is not Phase.HEAD or wanted.requests != previous.requests
        ):
            head_start = now  # this read began the head (or ended the request before it)
        if wanted.requests != previous.requests:
            body_start = now  # this read ended a head
        deadline = clock.deadline()
        if wanted.phase is Phase.HEAD:
            assert deadline == head_start + HEAD_TIMEOUT, (deadline, head_start)
        elif wanted.phase is Phase.BODY:
            earned = body_start + BODY_TIMEOUT + wanted.body / MIN_RATE
            assert deadline == min(now + BODY_TIMEOUT, earned), (deadline, now, earned)
        else:
            assert deadline is None, deadline
        previous = wanted


def seeds() -> list[bytes]:
    get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    post = b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    chunked = (
        b"POST /api HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"
    )
    return [
        b"\x00\x01" + get,
        b"\x05\x02" + get + post + chunked,
        b"\x03\x01" + chunked + get,
        b"\x01\x00" + post,
        b"\x00\x01GET / HTTP/1.0\r\n\r\n" + get,
        b"\x02\x01GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + get,
        b"\x04\x01GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade"
        b"\r\n\r\n" + get,
        b"\x07\x01CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x00\x01GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3"
        b"\r\n\r\nabc",
        b"\x02\x01\r\n\r\n" + get,
    ]


if __name__ == "__main__":
    harness.main("request_clock", check, seeds(), max_len=4096)
