"""The web request clock (:mod:`pillarbox.net.requestclock`): which deadline each byte of a
connection leaves, time given as an argument."""

from __future__ import annotations

from pillarbox.net.requestclock import Phase, RequestClock


def clock() -> RequestClock:
    return RequestClock(0.0, head_timeout=10.0, body_timeout=5.0, body_min_rate=100)


def test_every_head_is_timed_from_its_first_byte() -> None:
    c = clock()
    assert (c.phase, c.deadline()) == (Phase.HEAD, 10.0)  # the first: from the connect
    c.received(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 3.0)
    assert (c.phase, c.deadline()) == (Phase.BETWEEN, None)  # uvicorn's keep-alive now
    c.received(b"GET /b HTTP/1.1\r\n", 50.0)
    assert (c.phase, c.deadline()) == (Phase.HEAD, 60.0)
    c.received(b"Host: a\r\n", 59.0)  # bytes do not refresh a head's time
    assert c.deadline() == 60.0


def test_a_body_earns_time_by_its_rate_and_loses_it_by_idling() -> None:
    c = clock()
    c.received(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n", 1.0)
    assert (c.phase, c.deadline()) == (Phase.BODY, 6.0)
    c.received(b"x" * 200, 2.0)  # 2 s earned, but idle from 2.0 ends at 7.0
    assert c.deadline() == 7.0
    c.received(b"x", 6.5)  # a byte at a time: the rate bound, 1 + 5 + 201/100
    assert c.deadline() == 8.01
    c.received(b"x" * 10_000, 7.0)
    assert c.deadline() == 12.0


def test_chunked_and_pipelined_requests_are_followed() -> None:
    c = clock()
    c.received(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n", 1.0)
    assert c.phase is Phase.BODY
    c.received(b"hello\r\n0\r\n\r\nGET / HTTP/1.1\r\n", 2.0)
    assert (c.phase, c.deadline()) == (Phase.HEAD, 12.0)


def test_what_cannot_follow_is_not_timed() -> None:
    closing = clock()
    closing.received(b"GET / HTTP/1.0\r\n\r\n", 1.0)
    malformed = clock()
    malformed.received(b"\x00\x01 nonsense\r\n\r\n", 1.0)
    assert closing.deadline() is None and malformed.deadline() is None


def test_a_head_pipelined_behind_a_body_is_timed_from_the_body_end() -> None:
    c = clock()
    c.received(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n", 1.0)
    c.received(b"abGET / HTT", 2.0)
    assert (c.phase, c.deadline()) == (Phase.HEAD, 12.0)


def test_a_trailer_is_read_the_same_however_it_is_cut() -> None:
    """Found by fuzz/request_clock.py: a trailer's first read beginning with a control byte
    was refused as a request line would be, where the same bytes in one read were not."""
    head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
    whole, cut = clock(), clock()
    whole.received(head + b"\rX: 1\r\n\r\n", 1.0)
    cut.received(head + b"\rX", 1.0)
    cut.received(b": 1\r\n\r\n", 1.0)
    assert (cut.phase, cut.deadline()) == (whole.phase, whole.deadline()) == (Phase.BETWEEN, None)


def test_connect_and_upgrade_requests_stay_timed() -> None:
    """uvicorn (no WebSocket library here) answers them like any other request and reads the
    next one; the h11 reading took a CONNECT for a switch of protocols and stopped timing,
    so a CONNECT first left the connection's later heads and bodies untimed."""
    for head in (
        b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
    ):
        c = clock()
        c.received(head, 1.0)
        c.received(b"GET / HTTP/1.1\r\n", 2.0)
        assert (c.phase, c.deadline()) == (Phase.HEAD, 12.0)
