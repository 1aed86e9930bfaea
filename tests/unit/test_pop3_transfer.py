"""RETR/TOP encoding: CRLF normalisation, dot-stuffing across chunks, TOP cuts, sizes
(RFC 1939 §3, §7, §11)."""

from __future__ import annotations

import pytest

from pillarbox.pop3.transfer import MessageEncoder, wire_size


def _encode(raw: bytes, top: int | None = None, chunk: int | None = None) -> bytes:
    encoder = MessageEncoder(top)
    size = chunk or max(len(raw), 1)
    out = b"".join(encoder.encode(raw[i : i + size]) for i in range(0, len(raw), size))
    return out + encoder.finish()


@pytest.mark.parametrize(
    ("raw", "wire"),
    [
        (b"", b".\r\n"),
        (b"a\r\n", b"a\r\n.\r\n"),
        (b"a", b"a\r\n.\r\n"),
        (b"a\r", b"a\r\n.\r\n"),
        (b"a\nb\n", b"a\r\nb\r\n.\r\n"),
        (b"a\rb\r\n", b"a\rb\r\n.\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b"x\r\n.\r\n..y\r\n", b"x\r\n..\r\n...y\r\n.\r\n"),
        (b"x\n.y", b"x\r\n..y\r\n.\r\n"),
        (b"a.b\r\n", b"a.b\r\n.\r\n"),
    ],
)
@pytest.mark.parametrize("chunk", [None, 1, 2, 3])
def test_retr_wire_form(raw: bytes, wire: bytes, chunk: int | None) -> None:
    assert _encode(raw, chunk=chunk) == wire


@pytest.mark.parametrize(
    ("raw", "size"),
    [(b"", 0), (b"a\r\n", 3), (b"a", 3), (b"a\n", 3), (b"a\r", 3), (b".\r\n", 3), (b"\n\n", 4)],
)
def test_wire_size_counts_crlf_but_not_stuffing(raw: bytes, size: int) -> None:
    assert wire_size(raw) == size


MESSAGE = b"A: 1\r\nB: 2\r\n\r\none\r\n.two\r\nthree\r\n"


@pytest.mark.parametrize(
    ("top", "wire"),
    [
        (0, b"A: 1\r\nB: 2\r\n\r\n.\r\n"),
        (1, b"A: 1\r\nB: 2\r\n\r\none\r\n.\r\n"),
        (2, b"A: 1\r\nB: 2\r\n\r\none\r\n..two\r\n.\r\n"),
        (3, b"A: 1\r\nB: 2\r\n\r\none\r\n..two\r\nthree\r\n.\r\n"),
        (1000, b"A: 1\r\nB: 2\r\n\r\none\r\n..two\r\nthree\r\n.\r\n"),
    ],
)
@pytest.mark.parametrize("chunk", [None, 1, 4, 5])
def test_top(top: int, wire: bytes, chunk: int | None) -> None:
    assert _encode(MESSAGE, top=top, chunk=chunk) == wire


def test_top_header_only_and_empty_header() -> None:
    assert _encode(b"A: 1\r\nB: 2", top=0) == b"A: 1\r\nB: 2\r\n.\r\n"
    assert _encode(b"\r\nbody\r\nmore\r\n", top=1) == b"\r\nbody\r\n.\r\n"
    # Bare LF lines are lines too, and an LF-only blank line ends the header.
    assert _encode(b"A: 1\n\nx\ny\n", top=1, chunk=1) == b"A: 1\r\n\r\nx\r\n.\r\n"


def test_top_reports_when_done() -> None:
    encoder = MessageEncoder(1)
    assert encoder.encode(b"H: v\r\n\r\nline") == b"H: v\r\n\r\nline"
    assert not encoder.done
    assert encoder.encode(b"\r\nrest\r\n") == b"\r\n"
    assert encoder.done
    assert encoder.encode(b"ignored\r\n") == b""
    assert encoder.finish() == b".\r\n"


def test_retr_is_never_done_early() -> None:
    encoder = MessageEncoder()
    encoder.encode(b"H: v\r\n\r\n" + b"x\r\n" * 10)
    assert not encoder.done


def test_dot_mid_line_at_chunk_boundary_is_not_stuffed() -> None:
    encoder = MessageEncoder()
    assert encoder.encode(b"abc") == b"abc"
    assert encoder.encode(b".def\r\n") == b".def\r\n"
    assert encoder.encode(b".g") == b"..g"
    assert encoder.encode(b"\r") == b"\r"
    assert encoder.encode(b"\n.h") == b"\n..h"
    assert encoder.finish() == b"\r\n.\r\n"
