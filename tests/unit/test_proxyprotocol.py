"""The PROXY protocol header reader on byte-exact headers (HAProxy's proxy-protocol.txt §2):
what each valid header says, every way a header is refused, and that the reader never asks
for a byte past the header's end."""

from __future__ import annotations

import struct

import pytest

from pillarbox.proxyprotocol import (
    V2_SIGNATURE,
    HeaderReader,
    ProxyHeader,
    ProxyHeaderError,
    parse,
)


def v2(command: int, family_protocol: int, block: bytes) -> bytes:
    """A version 2 header: signature, version 2 and ``command``, family/protocol, length."""
    return (
        V2_SIGNATURE
        + bytes([0x20 | command, family_protocol])
        + struct.pack("!H", len(block))
        + block
    )


IPV4_BLOCK = bytes([192, 0, 2, 1, 198, 51, 100, 2]) + struct.pack("!HH", 56324, 25)
IPV6_BLOCK = (
    bytes.fromhex("20010db8000000000000000000000001")
    + bytes.fromhex("20010db8000000000000000000000002")
    + struct.pack("!HH", 40000, 993)
)
#: TLVs as HAProxy sends them: ALPN "smtp", then a NOOP of 3 bytes of padding (§2.2.1).
TLVS = b"\x01\x00\x04smtp" + b"\x04\x00\x03\x00\x00\x00"

VALID: list[tuple[bytes, ProxyHeader]] = [
    # §2.1 examples and limits
    (
        b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n",
        ProxyHeader(1, ("192.0.2.1", 56324), ("198.51.100.2", 25)),
    ),
    (
        b"PROXY TCP6 2001:db8::1 2001:db8::2 40000 993\r\n",
        ProxyHeader(1, ("2001:db8::1", 40000), ("2001:db8::2", 993)),
    ),
    (
        b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
        ProxyHeader(1, ("0.0.0.0", 0), ("255.255.255.255", 65535)),
    ),
    (
        b"PROXY TCP6 ::ffff:192.0.2.7 ::1 1 2\r\n",  # an IPv4 client through a dual-stack balancer
        ProxyHeader(1, ("192.0.2.7", 1), ("::1", 2)),
    ),
    (b"PROXY UNKNOWN\r\n", ProxyHeader(1, None, None, "UNKNOWN")),
    # §2.1: after UNKNOWN anything up to the CRLF is ignored; the 107-byte worst case.
    (
        b"PROXY UNKNOWN " + b"f" * 39 + b" " + b"f" * 39 + b" 65535 65535\r\n",
        ProxyHeader(1, None, None, "UNKNOWN"),
    ),
    # §2.2
    (v2(1, 0x11, IPV4_BLOCK), ProxyHeader(2, ("192.0.2.1", 56324), ("198.51.100.2", 25))),
    (
        v2(1, 0x21, IPV6_BLOCK),
        ProxyHeader(2, ("2001:db8::1", 40000), ("2001:db8::2", 993)),
    ),
    (v2(1, 0x11, IPV4_BLOCK + TLVS), ProxyHeader(2, ("192.0.2.1", 56324), ("198.51.100.2", 25))),
    # LOCAL: the balancer's own connection (health check); any block is discarded.
    (v2(0, 0x00, b""), ProxyHeader(2, None, None, "LOCAL")),
    (v2(0, 0x11, IPV4_BLOCK), ProxyHeader(2, None, None, "LOCAL")),
    (v2(0, 0x11, b"\xff"), ProxyHeader(2, None, None, "LOCAL")),
    # Valid, but naming no TCP client: the connection's own endpoints are used.
    (v2(1, 0x00, b""), ProxyHeader(2, None, None, "AF_UNSPEC")),
    (v2(1, 0x31, b"/run/a.sock".ljust(108, b"\0") * 2), ProxyHeader(2, None, None, "AF_UNIX")),
    (v2(1, 0x12, IPV4_BLOCK), ProxyHeader(2, None, None, "not TCP")),
]


def feed(reader: HeaderReader, data: bytes) -> ProxyHeader | None:
    """``data`` given to the reader as the listener gives it: at most what it wants at once."""
    result = None
    while data:
        wanted = reader.wanted()
        result = reader.receive_data(data[:wanted])
        data = data[wanted:]
    return result


@pytest.mark.parametrize(("header", "expected"), VALID)
def test_valid_headers(header: bytes, expected: ProxyHeader) -> None:
    assert parse(header) == expected


@pytest.mark.parametrize(("header", "expected"), VALID)
def test_reader_takes_exactly_the_header(header: bytes, expected: ProxyHeader) -> None:
    """Fed what it asks for from a stream where the client's bytes follow, the reader ends
    exactly at the header's last byte: nothing of the client's is consumed."""
    stream = header + b"\x16\x03\x01 ClientHello"
    reader = HeaderReader()
    taken = 0
    result = None
    while result is None:
        wanted = reader.wanted()
        assert wanted >= 1
        result = reader.receive_data(stream[taken : taken + wanted])
        taken += wanted
    assert (result, taken) == (expected, len(header))


def test_first_read_is_within_the_shortest_header() -> None:
    assert HeaderReader().wanted() == len(b"PROXY UNKNOWN\r\n")


def test_reading_one_byte_at_a_time() -> None:
    header = v2(1, 0x11, IPV4_BLOCK + TLVS)
    reader = HeaderReader()
    results = [reader.receive_data(header[i : i + 1]) for i in range(len(header))]
    assert results[:-1] == [None] * (len(header) - 1)
    assert results[-1] == ProxyHeader(2, ("192.0.2.1", 56324), ("198.51.100.2", 25))


MALFORMED: list[tuple[bytes, str]] = [
    (b"EHLO client.example\r\n", "not a PROXY protocol header"),
    (b"proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n", "not a PROXY protocol header"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03abcdefgh", "not a PROXY protocol header"),
    (b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\n", "lone CR or LF"),
    (b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\rX", "lone CR or LF"),
    (b"PROXY TCP4 192.0.2.1\n198.51.100.2 56324 25\r\n", "lone CR or LF"),
    (b"PROXY \r\n       ", "bytes after the CRLF"),
    (b"PROXY UNKNOWN " + b"x" * 93, "no CRLF within 107 bytes"),
    (b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n", "CRLF within 107 bytes"),
    (b"PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n", "two addresses and two ports"),
    (b"PROXY TCP4  192.0.2.1 198.51.100.2 56324 25\r\n", "two addresses and two ports"),
    (b"PROXY UDP4 192.0.2.1 198.51.100.2 56324 25\r\n", "two addresses and two ports"),
    (b"PROXY UNKNOWNX\r\n", "two addresses and two ports"),
    (b"PROXY TCP4 192.0.2.01 198.51.100.2 56324 25\r\n", "not an IPv4 address"),
    (b"PROXY TCP4 192.0.2.256 198.51.100.2 56324 25\r\n", "not an IPv4 address"),
    (b"PROXY TCP4 2001:db8::1 198.51.100.2 56324 25\r\n", "not an IPv4 address"),
    (b"PROXY TCP6 192.0.2.1 2001:db8::2 56324 25\r\n", "not an IPv6 address"),
    (b"PROXY TCP6 fe80::1%eth0 2001:db8::2 56324 25\r\n", "not an IPv6 address"),
    (b"PROXY TCP4 192.0.2.1 198.51.100.2 056324 25\r\n", "not a port"),
    (b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 25\r\n", "not a port"),
    (b"PROXY TCP4 192.0.2.1 198.51.100.2 -1 25\r\n", "not a port"),
    # version 2
    (b"\r\n\r\n\x00\r\nQUIX\n" + b"\x21\x11\x00\x0c" + IPV4_BLOCK, "not a PROXY protocol header"),
    (V2_SIGNATURE + b"\x11\x11\x00\x0c" + IPV4_BLOCK, "unsupported PROXY protocol version 1"),
    (V2_SIGNATURE + b"\x31\x11\x00\x0c" + IPV4_BLOCK, "unsupported PROXY protocol version 3"),
    (v2(2, 0x11, IPV4_BLOCK), "unassigned PROXY v2 command 2"),
    (v2(1, 0x41, IPV4_BLOCK), "unassigned PROXY v2 family/protocol 0x41"),
    (v2(1, 0x13, IPV4_BLOCK), "unassigned PROXY v2 family/protocol 0x13"),
    (v2(1, 0x11, IPV4_BLOCK[:11]), "shorter than its family needs"),
    (v2(1, 0x21, IPV4_BLOCK), "shorter than its family needs"),
    (v2(1, 0x11, IPV4_BLOCK + b"\x01\x00"), "truncated TLV"),
    (v2(1, 0x11, IPV4_BLOCK + b"\x01\x00\x05smtp"), "TLV runs past"),
]


@pytest.mark.parametrize(("data", "error"), MALFORMED)
def test_malformed_headers_are_refused(data: bytes, error: str) -> None:
    """Through the reader, as the listener reads (the error may come before the end)."""
    with pytest.raises(ProxyHeaderError, match=error):
        feed(HeaderReader(), data)


@pytest.mark.parametrize(
    "data",
    [
        b"EHLO x\r\n",  # another protocol's first line, seen in the first 15 bytes
        b"GET / HTTP/1.1\r\n",
        b"\x16\x03\x01\x00",  # a TLS ClientHello straight from a client
        b"\r\n\r\n\x00\r\nQUIT\n\x10",  # version 1 in the v2 signature
    ],
)
def test_other_protocols_are_refused_at_once(data: bytes) -> None:
    """No waiting for the header's length: the first bytes that cannot open one end it."""
    with pytest.raises(ProxyHeaderError):
        HeaderReader().receive_data(data)


@pytest.mark.parametrize(
    "truncated",
    [
        b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r",
        b"PROXY UNK",
        v2(1, 0x11, IPV4_BLOCK)[:15],
        v2(1, 0x11, IPV4_BLOCK)[:-1],
    ],
)
def test_truncated_headers_want_more(truncated: bytes) -> None:
    """A header cut short is not complete: the reader waits (the listener's timeout ends it),
    and parsing what there is refuses it."""
    reader = HeaderReader()
    assert feed(reader, truncated) is None
    assert reader.wanted() >= 1
    with pytest.raises(ProxyHeaderError):
        parse(truncated)


def test_more_than_wanted_is_refused() -> None:
    """The reader never accepts bytes past what it asked for: they would be the client's."""
    with pytest.raises(ProxyHeaderError, match="more bytes than the header holds"):
        HeaderReader().receive_data(b"PROXY UNKNOWN\r\nEHLO")


def test_largest_v2_header_is_read() -> None:
    """§2.2: the length field is 16 bits; a header that long is still one header."""
    block = IPV4_BLOCK + b"\x04" + struct.pack("!H", 0xFFFF - 12 - 3) + bytes(0xFFFF - 12 - 3)
    header = v2(1, 0x11, block)
    assert len(header) == 16 + 0xFFFF
    reader = HeaderReader()
    assert feed(reader, header[:16]) is None
    assert reader.wanted() == 0xFFFF
    assert reader.receive_data(header[16:]) == ProxyHeader(
        2, ("192.0.2.1", 56324), ("198.51.100.2", 25)
    )
