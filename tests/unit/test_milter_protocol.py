"""Milter packets byte for byte (libmilter's ``mfdef.h``, protocol version 6): what the client
frames, how every reply a filter may send decodes, how received bytes are cut into packets, and
the filter addresses a configuration names."""

from __future__ import annotations

import pytest

from pillarbox.milter import protocol as p
from pillarbox.milter.address import FilterAddress, parse_filter_address
from pillarbox.milter.protocol import ActionFlag as A
from pillarbox.milter.protocol import ProtocolFlag as P

# -- what the client sends ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "data", "wire"),
    [
        (b"Q", b"", b"\x00\x00\x00\x01Q"),
        (b"A", b"", b"\x00\x00\x00\x01A"),
        (b"T", b"", b"\x00\x00\x00\x01T"),
        (b"B", b"hello\r\n", b"\x00\x00\x00\x08Bhello\r\n"),
        (b"B", b"x" * 300, b"\x00\x00\x01\x2dB" + b"x" * 300),
    ],
)
def test_packet(code: bytes, data: bytes, wire: bytes) -> None:
    assert p.packet(code, data) == wire


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("", b"\0"),
        ("example.org", b"example.org\0"),
        (b"raw", b"raw\0"),
        ("caf\u00e9", b"caf\xc3\xa9\0"),
        ("\udcff", b"\xff\0"),  # surrogateescape: the octet the text was read from
        ("a\0b", b"ab\0"),  # a NUL inside would end the string early
        (b"\0\0", b"\0"),
    ],
)
def test_c_string(text: str | bytes, wire: bytes) -> None:
    assert p.c_string(text) == wire


def test_negotiation_offers_every_action_and_every_step_but_rcpt_rej() -> None:
    assert p.OFFERED_ACTIONS == 0x1FF
    assert p.OFFERED_PROTOCOL == 0x1FF7FF
    assert p.negotiation(p.OFFERED_ACTIONS, p.OFFERED_PROTOCOL) == (
        b"\x00\x00\x00\x0dO\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xf7\xff"
    )


@pytest.mark.parametrize(
    ("stage", "pairs", "wire"),
    [
        (p.Stage.CONNECT, [("j", "mx.test")], b"\x00\x00\x00\x0cDCj\0mx.test\0"),
        (
            p.Stage.MAIL,
            [("mail_addr", "a@b"), ("i", "Q1")],
            b"\x00\x00\x00\x17DM{mail_addr}\0a@b\0i\0Q1\0",
        ),
        (p.Stage.RCPT, [("rcpt_addr", "")], b"\x00\x00\x00\x0fDR{rcpt_addr}\0\0"),
        (p.Stage.EOM, [], b"\x00\x00\x00\x02DE"),
    ],
)
def test_macros(stage: p.Stage, pairs: list[tuple[str, str]], wire: bytes) -> None:
    assert p.macros(stage, pairs) == wire


@pytest.mark.parametrize(
    ("hostname", "address", "port", "data"),
    [
        ("[192.0.2.1]", "192.0.2.1", 25, b"[192.0.2.1]\x004\x00\x19192.0.2.1\0"),
        ("h.example", "2001:db8::1", 50000, b"h.example\x006\xc3\x502001:db8::1\0"),
    ],
)
def test_connect_data(hostname: str, address: str, port: int, data: bytes) -> None:
    assert p.connect_data(hostname, address, port) == data


@pytest.mark.parametrize(
    ("args", "data"),
    [
        (["<>"], b"<>\0"),
        (["<a@b.example>", "SIZE=10", "BODY=8BITMIME"], b"<a@b.example>\0SIZE=10\0BODY=8BITMIME\0"),
    ],
)
def test_arguments(args: list[str], data: bytes) -> None:
    assert p.arguments(args) == data


def test_stages_carry_their_command_byte_and_flags() -> None:
    table = {s: (s.command, s.left_out, s.unanswered) for s in p.Stage}
    assert table == {
        p.Stage.CONNECT: (b"C", P.NOCONNECT, P.NR_CONN),
        p.Stage.HELO: (b"H", P.NOHELO, P.NR_HELO),
        p.Stage.MAIL: (b"M", P.NOMAIL, P.NR_MAIL),
        p.Stage.RCPT: (b"R", P.NORCPT, P.NR_RCPT),
        p.Stage.DATA: (b"T", P.NODATA, P.NR_DATA),
        p.Stage.HEADER: (b"L", P.NOHDRS, P.NR_HDR),
        p.Stage.EOH: (b"N", P.NOEOH, P.NR_EOH),
        p.Stage.BODY: (b"B", P.NOBODY, P.NR_BODY),
        p.Stage.EOM: (b"E", P(0), P(0)),
    }


# -- what a filter sends back -------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "data", "answer"),
    [
        (b"c", b"", p.Final(p.Verdict.CONTINUE)),
        (b"a", b"", p.Final(p.Verdict.ACCEPT)),
        (b"r", b"", p.Final(p.Verdict.REJECT)),
        (b"t", b"", p.Final(p.Verdict.TEMPFAIL)),
        (b"d", b"", p.Final(p.Verdict.DISCARD)),
        (b"f", b"", p.Final(p.Verdict.CONN_FAIL)),
        (b"4", b"", p.Final(p.Verdict.SHUTDOWN)),
        (b"s", b"", p.Final(p.Verdict.SKIP)),
        (b"y", b"550 5.7.1 no thanks\0", p.Final(p.Verdict.REPLYCODE, b"550 5.7.1 no thanks")),
        (
            b"y",
            b"451-4.7.1 a\r\n451 4.7.1 b\0",
            p.Final(p.Verdict.REPLYCODE, b"451-4.7.1 a\r\n451 4.7.1 b"),
        ),
        (b"y", b"550 x", p.Final(p.Verdict.REPLYCODE, b"550 x")),  # its NUL left off
        (b"p", b"", None),
        (
            b"O",
            b"\x00\x00\x00\x06\x00\x00\x00\x11\x00\x10\x00\x42",
            p.Negotiated(6, A.ADDHDRS | A.CHGHDRS, P.NOHELO | P.NOEOH | P.HDR_LEADSPC),
        ),
        # Macro lists after the three words (SMFIF_SETSYMLIST) are not read.
        (
            b"O",
            b"\x00\x00\x00\x06\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01{auth_type}\0",
            p.Negotiated(6, A.SETSYMLIST, P(0)),
        ),
        # Protocol bits beyond the known ones (libmilter's internal SMFIP_MDS_*) are dropped.
        (b"O", b"\x00\x00\x00\x02\x00\x00\x00\x00\x30\x00\x00\x01", p.Negotiated(2, A(0), P(1))),
        (b"h", b"X-Spam\0yes\0", p.AddHeader("X-Spam", "yes")),
        (b"h", b"X-Empty\0\0", p.AddHeader("X-Empty", "")),
        (b"h", b"X-Folded\0a\n\tb\0", p.AddHeader("X-Folded", "a\n\tb")),
        (b"h", b"X-Bytes\0\xff\0", p.AddHeader("X-Bytes", "\ufffd")),
        (b"i", b"\x00\x00\x00\x00X-First\0 1\0", p.InsertHeader(0, "X-First", " 1")),
        (b"i", b"\x00\x00\x01\x00X-Deep\0v\0", p.InsertHeader(256, "X-Deep", "v")),
        (b"m", b"\x00\x00\x00\x02Subject\0new\0", p.ChangeHeader(2, "Subject", "new")),
        (b"m", b"\x00\x00\x00\x01Subject\0\0", p.ChangeHeader(1, "Subject", "")),
        (b"b", b"new body\r\n", p.ReplaceBody(b"new body\r\n")),
        (b"b", b"", p.ReplaceBody(b"")),
        (b"b", b"with\0nul", p.ReplaceBody(b"with\0nul")),
        (b"e", b"<s@x.example>\0", p.ChangeFrom("<s@x.example>")),
        (b"e", b"<>\0SIZE=10\0BODY=8BITMIME\0", p.ChangeFrom("<>", ("SIZE=10", "BODY=8BITMIME"))),
        (b"+", b"<r@x.example>\0", p.AddRecipient("<r@x.example>")),
        (
            b"2",
            b"<r@x.example>\0NOTIFY=NEVER\0",
            p.AddRecipient("<r@x.example>", ("NOTIFY=NEVER",)),
        ),
        (b"-", b"<r@x.example>\0", p.DeleteRecipient("<r@x.example>")),
        (b"q", b"spam score 12\0", p.Quarantine("spam score 12")),
    ],
)
def test_decode(code: bytes, data: bytes, answer: p.Answer) -> None:
    assert p.decode(code, data) == answer


@pytest.mark.parametrize(
    ("code", "data"),
    [
        (b"O", b"\x00\x00\x00\x06\x00\x00\x00\x00\x00\x00\x00"),  # 11 of 12 bytes
        (b"O", b""),
        (b"h", b"X-Spam\0yes"),  # not NUL-terminated
        (b"h", b"X-Spam\0"),  # a name without a value
        (b"h", b"X-Spam\0yes\0more\0"),
        (b"h", b""),
        (b"i", b"\x00\x00\x00"),  # no index
        (b"i", b"\x00\x00\x00\x00X\0"),
        (b"m", b"\x00\x00\x00\x01Subject\0a\0b\0"),
        (b"m", b"\x00\x00\x00\x01Subject\0a"),
        (b"e", b""),
        (b"e", b"<a@b>"),
        (b"+", b""),
        (b"2", b""),
        (b"-", b"<a@b>\0<c@d>\0"),
        (b"-", b""),
        (b"q", b""),
        (b"q", b"a\0b\0"),
        (b"l", b"\x00\x00\x00\x01{i}\0"),  # symbol lists only travel inside the ``O`` reply
        (b"z", b""),
        (b"C", b"x\0"),  # a command byte, not a reply
        (b"\0", b""),
    ],
)
def test_decode_refuses(code: bytes, data: bytes) -> None:
    with pytest.raises(p.MilterProtocolError):
        p.decode(code, data)


def test_every_edit_code_has_its_action() -> None:
    assert {code: int(flag) for code, flag in p.EDIT_ACTIONS.items()} == {
        b"h": 0x01,
        b"i": 0x01,
        b"m": 0x10,
        b"b": 0x02,
        b"e": 0x40,
        b"+": 0x04,
        b"2": 0x80,
        b"-": 0x08,
        b"q": 0x20,
    }


# -- framing ------------------------------------------------------------------------------

_REPLIES = b"\x00\x00\x00\x01p" + b"\x00\x00\x00\x08hX-A\0v1\0" + b"\x00\x00\x00\x01c"
_PACKETS = [(b"p", b""), (b"h", b"X-A\0v1\0"), (b"c", b"")]


def test_framer_several_packets_in_one_feed() -> None:
    assert list(p.Framer(100).feed(_REPLIES)) == _PACKETS


def test_framer_one_byte_at_a_time() -> None:
    framer = p.Framer(100)
    got: list[tuple[bytes, bytes]] = []
    ends = []
    for i in range(len(_REPLIES)):
        out = list(framer.feed(_REPLIES[i : i + 1]))
        got += out
        if out:
            ends.append(i + 1)
    assert got == _PACKETS
    assert ends == [5, 17, 22]  # each packet comes out with its last byte, not before


def test_framer_keeps_a_partial_packet_for_the_next_feed() -> None:
    framer = p.Framer(100)
    assert list(framer.feed(_REPLIES[:7])) == _PACKETS[:1]
    assert list(framer.feed(_REPLIES[7:])) == _PACKETS[1:]
    assert list(framer.feed(b"")) == []


@pytest.mark.parametrize(
    ("max_packet", "wire", "packets"),
    [
        (1, b"\x00\x00\x00\x01c", [(b"c", b"")]),
        (6, b"\x00\x00\x00\x06b12345", [(b"b", b"12345")]),  # exactly the bound
    ],
)
def test_framer_bound_is_inclusive(
    max_packet: int, wire: bytes, packets: list[tuple[bytes, bytes]]
) -> None:
    assert list(p.Framer(max_packet).feed(wire)) == packets


@pytest.mark.parametrize(
    ("max_packet", "wire"),
    [
        (5, b"\x00\x00\x00\x06"),  # refused on its length alone, before any data arrives
        (65536, b"\xff\xff\xff\xff"),
        (65536, b"\x00\x01\x00\x01b"),
        (100, b"\x00\x00\x00\x00"),  # no command byte: a zero-length packet
        (100, b"\x00\x00\x00\x01c\x00\x00\x00\x00c"),  # after a good one
    ],
)
def test_framer_refuses(max_packet: int, wire: bytes) -> None:
    framer = p.Framer(max_packet)
    with pytest.raises(p.MilterProtocolError, match="reply packet of"):
        list(framer.feed(wire))


def test_framer_refuses_a_long_packet_fed_one_byte_at_a_time_at_its_fourth_byte() -> None:
    framer = p.Framer(10)
    for byte in (b"\x00", b"\x00", b"\x00"):
        assert list(framer.feed(byte)) == []
    with pytest.raises(p.MilterProtocolError):
        list(framer.feed(b"\x0b"))


# -- filter addresses ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("inet:localhost:8891", FilterAddress("inet:localhost:8891", host="localhost", port=8891)),
        ("inet:127.0.0.1:1", FilterAddress("inet:127.0.0.1:1", host="127.0.0.1", port=1)),
        ("inet:[::1]:65535", FilterAddress("inet:[::1]:65535", host="::1", port=65535)),
        (
            "inet:[2001:db8::5]:11332",
            FilterAddress("inet:[2001:db8::5]:11332", host="2001:db8::5", port=11332),
        ),
        (
            "unix:/run/opendkim.sock",
            FilterAddress("unix:/run/opendkim.sock", path="/run/opendkim.sock"),
        ),
        ("unix:/", FilterAddress("unix:/", path="/")),
    ],
)
def test_parse_filter_address(text: str, address: FilterAddress) -> None:
    assert parse_filter_address(text) == address


_PORT = "with a port 1–65535"
_FORM = "expected inet:HOST:PORT or unix:/PATH"
_BRACKETS = "an IPv6 address in brackets"
_ABSOLUTE = "absolute path"
_IPV6 = "Address cannot be empty|parts expected"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", _FORM),
        ("localhost:8891", _FORM),
        ("tcp:localhost:8891", _FORM),
        ("INET:localhost:8891", _FORM),
        ("local:/run/opendkim.sock", _FORM),
        ("inet:localhost", _PORT),
        ("inet::8891", _PORT),
        ("inet:localhost:", _PORT),
        ("inet:localhost:0", _PORT),
        ("inet:localhost:65536", _PORT),
        ("inet:localhost:-1", _PORT),
        ("inet:localhost:+25", _PORT),
        ("inet:localhost:8891x", _PORT),
        ("inet:localhost:\u0668\u0668\u0669\u0661", _PORT),  # Arabic-Indic digits
        ("inet:localhost:\u00b2", _PORT),  # SUPERSCRIPT TWO: isdigit() but no int()
        ("inet:[::1]", _BRACKETS),
        ("inet:[::1:25", _BRACKETS),
        ("inet:::1]:25", _BRACKETS),
        ("inet:a[b:25", _BRACKETS),
        ("inet:[]:25", _IPV6),
        ("inet:[example.org]:25", _IPV6),
        ("inet:[192.0.2.1]:25", _IPV6),
        ("unix:", _ABSOLUTE),
        ("unix:run/opendkim.sock", _ABSOLUTE),
    ],
)
def test_parse_filter_address_refuses(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_filter_address(text)
