"""Dot-stuffing both ways, the end of DATA, and the smuggling sequences (RFC 5321 §4.5.2)."""

from __future__ import annotations

import pytest

from pillarbox.mail.dotstuff import Stuffer, Unstuffer, stuff


@pytest.mark.parametrize(
    ("wire", "body", "unused"),
    [
        (b".\r\n", b"", b""),
        (b"a\r\n.\r\nNOOP\r\n", b"a\r\n", b"NOOP\r\n"),
        (b"..\r\n.\r\n", b".\r\n", b""),
        (b"..a\r\n...\r\n.\r\n", b".a\r\n..\r\n", b""),
        (b".a\r\n.\r\n", b"a\r\n", b""),  # a lone leading dot is removed too
        (b"a.\r\n.\r\n", b"a.\r\n", b""),
    ],
)
def test_unstuff(wire: bytes, body: bytes, unused: bytes) -> None:
    for size in (1, 2, 3, len(wire)):
        u = Unstuffer()
        out = b"".join(u.feed(wire[i : i + size]) for i in range(0, len(wire), size))
        assert out == body
        assert u.finished
        assert u.unused == unused
        assert not u.saw_bare_linebreak


@pytest.mark.parametrize(
    "sequence", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\n\r\n.\r"]
)
def test_smuggling_sequences_never_end_data(sequence: bytes) -> None:
    u = Unstuffer()
    out = u.feed(b"x" + sequence + b"MAIL FROM:<a@b>\r\n")
    assert not u.finished
    assert u.saw_bare_linebreak
    assert b"MAIL FROM:<a@b>" in out


def test_normalise_bare_linebreaks() -> None:
    u = Unstuffer(normalise_bare_linebreaks=True)
    # The normalised LF after ".\n" is no line start: the ".\r\n" after it is content.
    assert u.feed(b"a\nb\rc\r\n.\n.\r\n.\r\n") == b"a\r\nb\r\nc\r\n\r\n.\r\n"
    assert u.finished
    assert u.saw_bare_linebreak


def test_longest_line_counts_the_wire() -> None:
    u = Unstuffer()
    u.feed(b"abc\r\n")
    assert u.longest_line == 5
    u.feed(b"x" * 10)
    assert u.longest_line == 12  # an unfinished line counts with the CRLF it will need
    u.feed(b"\r\n..\r\n")
    assert u.longest_line == 12
    normalised = Unstuffer(normalise_bare_linebreaks=True)
    normalised.feed(b"aaaa\nbb\r\n")
    assert normalised.longest_line == 5


def test_after_finish_everything_is_unused() -> None:
    u = Unstuffer()
    assert u.feed(b".\r\nA") == b""
    assert u.feed(b"B") == b""
    assert u.unused == b"AB"


def test_stuff() -> None:
    assert stuff(b"") == b""
    assert stuff(b".a\r\n.b\r\nc.\r\n") == b"..a\r\n..b\r\nc.\r\n"


@pytest.mark.parametrize(
    ("pieces", "wire"),
    [
        ([b".a"], b"..a\r\n.\r\n"),
        ([b"a\r", b"\n.b\r\n"], b"a\r\n..b\r\n.\r\n"),
        ([b"a\r\n", b"."], b"a\r\n..\r\n.\r\n"),
        ([], b".\r\n"),
        ([b"x\r\n"], b"x\r\n.\r\n"),
    ],
)
def test_stuffer(pieces: list[bytes], wire: bytes) -> None:
    s = Stuffer()
    assert b"".join(s.feed(p) for p in pieces) + s.end() == wire
