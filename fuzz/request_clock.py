"""Fuzz the web request clock's framing (pillarbox.net.requestclock) with arbitrary bytes.

Input: byte 0 is the largest read (0: all at once); the rest is what a web client sends.
Asserted, beyond "no exception" at all (the clock never raises: what it cannot follow it stops
timing):

* the way the bytes are cut never changes the phase and deadline they leave (all received at
  one time);
* as long as h11, uvicorn's parser, still reads the bytes (:mod:`pillarbox.testing.h11clock`),
  the clock is in h11's phase with h11's deadline after every read — once h11 gives up,
  uvicorn answers 400 and closes, whatever the clock says.
"""

from __future__ import annotations

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox.net.requestclock import Phase, RequestClock
    from pillarbox.testing.h11clock import H11Clock


def clock() -> RequestClock:
    return RequestClock(0.0, head_timeout=10.0, body_timeout=5.0, body_min_rate=100)


def check(data: bytes) -> None:
    if not data:
        return
    largest, stream = data[0] or len(data), data[1:]
    whole, cut, oracle = clock(), clock(), H11Clock(clock())
    whole.received(stream, 1.0)
    for start in range(0, len(stream), largest):
        piece = stream[start : start + largest]
        cut.received(piece, 1.0)
        oracle.received(piece, 1.0)
        if oracle.clock.phase is not Phase.UNTIMED:
            assert (cut.phase, cut.deadline()) == (oracle.clock.phase, oracle.clock.deadline())
    assert (cut.phase, cut.deadline()) == (whole.phase, whole.deadline())


def seeds() -> list[bytes]:
    return [
        b"\x00GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
        b"\x07POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n",
        b"\x03POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n5;x=y\r\nhello\r\n"
        b"0\r\nT: 1\r\n\r\n",
        b"\x00GET / HTTP/1.0\r\nX-A: 1\r\n \t2\r\nConnection: keep-alive\r\n\r\n",
    ]


if __name__ == "__main__":
    harness.main("request_clock", check, seeds(), max_len=4096)
