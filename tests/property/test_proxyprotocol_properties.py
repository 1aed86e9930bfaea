"""Hypothesis properties of the PROXY header reader: any bytes either give a header, ask for
more, or are refused with :class:`ProxyHeaderError` (nothing else escapes); a header the way
HAProxy writes it (either version, any address and port) reads back as what was written,
however the bytes are cut; and the reader never wants a byte past the header."""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import given
from hypothesis import strategies as st

from pillarbox.proxyprotocol import V2_SIGNATURE, HeaderReader, ProxyHeader, ProxyHeaderError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

ipv4 = st.ip_addresses(v=4)
# IPv4-mapped addresses read back as IPv4 (the form every log line uses): tested apart.
ipv6 = st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None)
ports = st.integers(0, 65535)


def v1(source: Address, destination: Address, sport: int, dport: int) -> bytes:
    family = b"TCP4" if source.version == 4 else b"TCP6"
    return b"PROXY %s %s %s %d %d\r\n" % (
        family,
        str(source).encode(),
        str(destination).encode(),
        sport,
        dport,
    )


def v2(source: Address, destination: Address, sport: int, dport: int, tlvs: bytes) -> bytes:
    block = source.packed + destination.packed + struct.pack("!HH", sport, dport) + tlvs
    family = 0x11 if source.version == 4 else 0x21
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(block)) + block


tlv = st.builds(
    lambda kind, value: bytes([kind]) + struct.pack("!H", len(value)) + value,
    st.integers(0, 255),
    st.binary(max_size=40),
)


@st.composite
def headers(draw: st.DrawFn) -> tuple[bytes, ProxyHeader]:
    addresses = draw(st.one_of(st.tuples(ipv4, ipv4), st.tuples(ipv6, ipv6)))
    sport, dport = draw(ports), draw(ports)
    if draw(st.booleans()):
        header = v1(*addresses, sport, dport)
        version = 1
    else:
        header = v2(*addresses, sport, dport, b"".join(draw(st.lists(tlv, max_size=4))))
        version = 2
    source, destination = (str(a) for a in addresses)
    return header, ProxyHeader(version, (source, sport), (destination, dport))


def read_in_pieces(data: bytes, cuts: list[int]) -> tuple[ProxyHeader | None, int]:
    """Feed ``data`` in pieces no longer than ``cuts`` say (and than the reader wants);
    the result and how many bytes were taken."""
    reader = HeaderReader()
    taken = 0
    for cut in cuts:
        piece = data[taken : taken + min(cut, reader.wanted())]
        if not piece:
            break
        taken += len(piece)
        result = reader.receive_data(piece)
        if result is not None:
            return result, taken
    return None, taken


@given(headers(), st.lists(st.integers(1, 70), min_size=1, max_size=200), st.binary())
def test_header_reads_back_however_cut(
    case: tuple[bytes, ProxyHeader], cuts: list[int], after: bytes
) -> None:
    header, expected = case
    cuts = cuts * (len(header) // len(cuts) + 1)  # enough pieces for the longest header
    assert read_in_pieces(header + after, cuts) == (expected, len(header))


@given(ipv4, ipv4, ports, ports)
def test_ipv4_mapped_sources_read_as_ipv4(
    source: ipaddress.IPv4Address, destination: ipaddress.IPv4Address, sport: int, dport: int
) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{source}")
    for header in (
        v1(mapped, ipaddress.IPv6Address(f"::ffff:{destination}"), sport, dport),
        v2(mapped, ipaddress.IPv6Address(f"::ffff:{destination}"), sport, dport, b""),
    ):
        result, _ = read_in_pieces(header, [len(header)] * len(header))
        assert result is not None and result.source == (str(source), sport)


@given(st.binary(max_size=300), st.lists(st.integers(1, 70), min_size=1, max_size=50))
def test_any_bytes_are_a_header_more_wanted_or_refused(data: bytes, cuts: list[int]) -> None:
    try:
        result, taken = read_in_pieces(data, cuts)
    except ProxyHeaderError:
        return
    assert taken <= len(data)
    if result is not None and result.source is not None:
        ipaddress.ip_address(result.source[0])
        assert 0 <= result.source[1] <= 65535


@given(st.sampled_from([b"PROXY ", V2_SIGNATURE + b"\x21"]), st.binary(max_size=200))
def test_arbitrary_header_bodies_are_read_or_refused(opening: bytes, rest: bytes) -> None:
    """Bytes after a valid opening, fed as the listener feeds them: the same three outcomes."""
    data = opening + rest
    try:
        result, taken = read_in_pieces(data, [len(data) + 1] * (len(data) + 1))
    except ProxyHeaderError:
        return
    assert taken <= len(data)
    assert result is None or result.version in (1, 2)
