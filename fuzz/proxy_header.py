"""Fuzz the PROXY protocol header reader (pillarbox.proxyprotocol) with arbitrary bytes.

Input: byte 0 is the largest read (0: whatever the reader wants); the rest is what the load
balancer — or anyone who reached the port — sends. Asserted, beyond "no exception" other than
``ProxyHeaderError``:

* the reader never asks for a byte past the header: a header ends exactly where the bytes it
  took end, and :func:`parse` of those bytes gives the same header;
* the way the bytes are cut never changes the outcome (the same bytes in the largest reads
  the reader allows give the same header, or the same refusal);
* a header naming a client names an IP address and a port in range; a version 1 line is at
  most 107 bytes.
"""

from __future__ import annotations

import ipaddress

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox.proxyprotocol import (
        V1_MAX_LENGTH,
        V2_SIGNATURE,
        HeaderReader,
        ProxyHeader,
        ProxyHeaderError,
        parse,
    )


def read(stream: bytes, largest: int) -> tuple[ProxyHeader | None, int] | str:
    """Feed ``stream`` as the listener does; (header or None, bytes taken), or the refusal."""
    reader = HeaderReader()
    taken = 0
    try:
        while taken < len(stream):
            wanted = reader.wanted()
            assert wanted >= 1
            piece = stream[taken : taken + (min(wanted, largest) if largest else wanted)]
            taken += len(piece)
            header = reader.receive_data(piece)
            if header is not None:
                return header, taken
    except ProxyHeaderError as exc:
        return f"refused: {exc}"
    return None, taken


def check(data: bytes) -> None:
    if not data:
        return
    largest, stream = data[0], data[1:]
    outcome = read(stream, largest)
    if largest:
        whole = read(stream, 0)
        # A refusal may come sooner in smaller reads, never differ in kind.
        assert isinstance(whole, str) == isinstance(outcome, str), (outcome, whole)
        if not isinstance(whole, str):
            assert whole == outcome, (outcome, whole)
    if isinstance(outcome, str) or outcome[0] is None:
        return
    header, taken = outcome
    assert parse(stream[:taken]) == header
    if header.version == 1:
        assert taken <= V1_MAX_LENGTH
    if header.source is not None:
        assert header.destination is not None
        for address, port in (header.source, header.destination):
            ipaddress.ip_address(address)
            assert 0 <= port <= 65535


def seeds() -> list[bytes]:
    ipv4 = bytes([192, 0, 2, 1, 198, 51, 100, 2, 0xDC, 0x04, 0x00, 0x19])
    return [
        b"\x00PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\nEHLO x\r\n",
        b"\x03PROXY TCP6 2001:db8::1 ::ffff:192.0.2.9 40000 993\r\n\x16\x03\x01",
        b"\x00PROXY UNKNOWN\r\n",
        b"\x00" + V2_SIGNATURE + b"\x21\x11\x00\x0c" + ipv4,
        b"\x05"
        + V2_SIGNATURE
        + b"\x21\x11\x00\x15"
        + ipv4
        + b"\x01\x00\x04smtp\x04\x00\x02\x00\x00",
        b"\x00" + V2_SIGNATURE + b"\x20\x00\x00\x00",
        b"\x00" + V2_SIGNATURE + b"\x21\x31\x00\xd8" + b"/a".ljust(216, b"\x00"),
    ]


if __name__ == "__main__":
    harness.main("proxy_header", check, seeds(), max_len=1024)
