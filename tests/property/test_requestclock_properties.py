"""The web request clock's framing (:mod:`pillarbox.net.requestclock`) against h11's, the
parser uvicorn reads the same bytes with: for any stream of requests h11 reads, cut anywhere,
the clock is in the same phase with the same deadline after every piece as a clock driven by
h11 itself (:mod:`pillarbox.testing.h11clock`)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pillarbox.net.requestclock import Phase, RequestClock
from pillarbox.testing.h11clock import H11Clock


def clock() -> RequestClock:
    return RequestClock(0.0, head_timeout=10.0, body_timeout=5.0, body_min_rate=100)


@st.composite
def request(draw: st.DrawFn) -> bytes:
    eol = draw(st.sampled_from([b"\r\n", b"\n"]))
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.1", b"1.0"]))
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"CONNECT"]))
    fields = [b"Host: example.org", b"User-Agent: x/1"]
    body = b""
    framing = draw(st.sampled_from(["none", "length", "chunked", "both"]))
    data = draw(st.binary(max_size=300))
    if framing in ("length", "both"):
        spaces = draw(st.sampled_from([b"", b" ", b"\t "]))
        value = str(len(data)).encode()
        value = draw(st.sampled_from([value, value + b", " + value]))
        fields.append(b"content-LENGTH:" + spaces + value + spaces)
        body = data
    if framing in ("chunked", "both"):
        fields.append(b"Transfer-Encoding: " + draw(st.sampled_from([b"chunked", b"Chunked "])))
        body = b""
        cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
        for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
            if end > start:
                ext = draw(st.sampled_from([b"", b";name=value", b" "]))
                body += f"{end - start:x}".encode() + ext + b"\r\n" + data[start:end] + b"\r\n"
        body += b"0\r\n" + draw(st.sampled_from([b"", b"Trailer: x\r\n", b"T: y\n"])) + eol
    if draw(st.booleans()):
        fields.append(draw(st.sampled_from([b"Connection: keep-alive", b"connection: Close"])))
    if draw(st.booleans()):
        fields.append(b"X-Folded: one" + eol + b"\ttwo")  # RFC 9112 §5.2 obs-fold
    if draw(st.booleans()):
        fields.append(b"Upgrade: h2c")
    head = method + b" /p?q=1 HTTP/" + version + eol
    return head + b"".join(field + eol for field in fields) + eol + body


@given(
    requests=st.lists(request(), min_size=1, max_size=4),
    cuts=st.lists(st.integers(0, 2000), max_size=12),
    step=st.integers(7, 400),
)
def test_the_clock_frames_requests_as_h11_does(
    requests: list[bytes], cuts: list[int], step: int
) -> None:
    """The stream cut at random places and every ``step`` bytes (segments as TCP gives)."""
    stream = b"".join(requests)
    ours, theirs = clock(), H11Clock(clock())
    every = set(range(step, len(stream), step))
    points = sorted({cut % (len(stream) + 1) for cut in cuts} | every | {len(stream)})
    start = 0
    for now, end in enumerate(points, start=1):
        ours.received(stream[start:end], float(now))
        theirs.received(stream[start:end], float(now))
        start = end
        assert (ours.phase, ours.deadline()) == (theirs.clock.phase, theirs.clock.deadline())


@given(st.binary(max_size=200), st.integers(0, 200))
def test_any_bytes_h11_still_reads_are_timed_as_h11_times_them(data: bytes, cut: int) -> None:
    """Whatever the bytes: as long as h11 has not given up on them (then uvicorn answers 400
    and closes, whatever the clock says), the clock agrees with it."""
    ours, theirs = clock(), H11Clock(clock())
    for now, piece in enumerate((data[:cut], data[cut:]), start=1):
        ours.received(piece, float(now))
        theirs.received(piece, float(now))
    if theirs.clock.phase is not Phase.UNTIMED:
        assert (ours.phase, ours.deadline()) == (theirs.clock.phase, theirs.clock.deadline())
