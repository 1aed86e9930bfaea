"""The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2), sans I/O.

A TCP load balancer in front of Pillarbox opens its own connection to us; the client's address
(which SPF, DNSBL, greylisting, rate limits and Received fields are about) would be lost. With
the PROXY protocol the balancer sends one header before the client's first byte saying whose
connection this is. This module reads that header; :mod:`pillarbox.net.proxyheader` feeds it
bytes and decides whom to believe.

Implementation notes:

- **Never read past the header.** :meth:`HeaderReader.wanted` says how many bytes may be read
  without taking any of the client's own bytes: the adapter reads exactly that many, so on an
  implicit-TLS listener the TLS ClientHello that follows stays in the socket for the handshake.
  A version 1 line is read two bytes at a time at most (its CRLF may come next); a version 2
  header, whose length is in its first 16 bytes, in two reads.
- **Bounded.** A version 1 line is at most 107 bytes with its CRLF (§2.1); a version 2 header is
  16 bytes plus its 16-bit length field, so at most 65,551 bytes (§2.2). Nothing else grows.
- **Strict.** "Any sequence which does not exactly match the protocol must be discarded and
  cause the receiver to abort the connection" (§2.1): leading zeroes, a lone CR or LF, a
  version other than 2, an unassigned command, family or protocol, an address block shorter
  than its family needs, a TLV running past the header — each is a :class:`ProxyHeaderError`.
- **The connection's own endpoints, when the header names none**: v1 ``UNKNOWN``, the v2
  ``LOCAL`` command (the balancer's health checks), ``AF_UNSPEC``, and the families this server
  does not serve (``AF_UNIX``, UDP) give :attr:`ProxyHeader.source` None with the reason — §2.2
  lets a receiver fall back to the real endpoints for the valid combinations it does not
  support. A path is no client address for SPF or a rate limit.
- **TLVs are walked, not used** (§2.2.1): each must fit in what is left of the header.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from pillarbox.errors import UserError

#: §2.1: "PROXY UNKNOWN ffff:…:ffff ffff:…:ffff 65535 65535\r\n", the longest line, CRLF included.
V1_MAX_LENGTH = 107
#: §2.1: "PROXY UNKNOWN\r\n", the shortest header of either version.
MIN_LENGTH = 15
V1_PREFIX = b"PROXY "
#: §2.2: the 12-byte signature that opens a version 2 header.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: §2.2: signature, version and command, family and protocol, 16-bit length.
V2_FIXED_LENGTH = 16
#: §2.2: "the highest four bits contains the version … the receiver must only accept" 2.
V2_VERSION = 0x2
V2_LOCAL = 0x0
V2_PROXY = 0x1
#: §2.2: address family (high nibble of the 14th byte).
AF_UNSPEC, AF_INET, AF_INET6, AF_UNIX = 0x0, 0x1, 0x2, 0x3
#: §2.2: transport protocol (low nibble of the 14th byte).
UNSPEC, STREAM, DGRAM = 0x0, 0x1, 0x2
#: §2.2: bytes of the address block each family needs (two addresses, then two ports if any).
V2_ADDRESS_LENGTH = {AF_UNSPEC: 0, AF_INET: 12, AF_INET6: 36, AF_UNIX: 216}

#: §2.1: decimal without heading zeroes, "in order to avoid any possible confusion with octal".
_DECIMAL = re.compile(rb"0|[1-9][0-9]{0,4}")
_IPV4 = re.compile(rb"(?:(?:0|[1-9][0-9]{0,2})\.){3}(?:0|[1-9][0-9]{0,2})")
_IPV6 = re.compile(rb"[0-9A-Fa-f:.]{2,45}")


class ProxyHeaderError(UserError):
    """The bytes are not a PROXY protocol header: the connection is to be closed (§2.1)."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What the balancer said about the connection it relays."""

    version: int
    #: The client's address and port; None: use the connection's own (see :attr:`reason`).
    source: tuple[str, int] | None
    #: The address and port the client connected to on the balancer (None with source).
    destination: tuple[str, int] | None
    #: Why the header names no addresses ("LOCAL", "UNKNOWN", "AF_UNIX", …); "" when it does.
    reason: str = ""


class HeaderReader:
    """Collects one PROXY header from the bytes it is given (at most :meth:`wanted` at a time)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def wanted(self) -> int:
        """How many bytes may be read next without reading past the header: at least 1 until
        the header is complete (raises :class:`ProxyHeaderError` once the bytes are not one)."""
        return _still_wanted(bytes(self._buffer))

    def receive_data(self, data: bytes) -> ProxyHeader | None:
        """Add ``data``; the header once it is complete, else None (more is wanted).

        Raises :class:`ProxyHeaderError` as soon as the bytes cannot begin a valid header, or
        if ``data`` goes past the header's end (the adapter asked for more than it was told).
        """
        if len(data) > self.wanted():
            raise ProxyHeaderError("more bytes than the header holds")
        self._buffer += data
        buffered = bytes(self._buffer)
        if _still_wanted(buffered):
            return None
        return parse(buffered)


def _still_wanted(data: bytes) -> int:
    """Bytes the header ``data`` begins still needs at least: 0 once it is complete."""
    _check_start(data)
    if data[:1] == V2_SIGNATURE[:1]:
        if len(data) < V2_FIXED_LENGTH:
            return V2_FIXED_LENGTH - len(data)
        return V2_FIXED_LENGTH + int.from_bytes(data[14:16], "big") - len(data)
    if len(data) < MIN_LENGTH:
        return MIN_LENGTH - len(data)
    return _v1_still_wanted(data)


def _check_start(data: bytes) -> None:
    """Raise as soon as ``data`` cannot begin a header of either version (§2.2's test)."""
    if data[:1] == V2_SIGNATURE[:1]:
        if not V2_SIGNATURE.startswith(data[: len(V2_SIGNATURE)]):
            raise ProxyHeaderError("not a PROXY protocol header")
        if len(data) > len(V2_SIGNATURE) and data[12] >> 4 != V2_VERSION:
            raise ProxyHeaderError(f"unsupported PROXY protocol version {data[12] >> 4}")
    elif not V1_PREFIX.startswith(data[: len(V1_PREFIX)]):
        raise ProxyHeaderError("not a PROXY protocol header")


def _v1_still_wanted(data: bytes) -> int:
    end = data.find(b"\r\n")
    if end >= 0:
        if end + 2 != len(data):
            raise ProxyHeaderError("bytes after the CRLF of a short PROXY line")
        return 0
    if b"\n" in data or b"\r" in data[:-1]:
        # §2.1: "must not tolerate a single CR or LF character to end the line".
        raise ProxyHeaderError("a lone CR or LF in the PROXY line")
    if len(data) >= V1_MAX_LENGTH:
        raise ProxyHeaderError(f"no CRLF within {V1_MAX_LENGTH} bytes of the PROXY line")
    return 1 if data.endswith(b"\r") else 2


def parse(header: bytes) -> ProxyHeader:
    """The header that is exactly ``header`` (either version); raises :class:`ProxyHeaderError`."""
    if header.startswith(V2_SIGNATURE):
        return _parse_v2(header)
    if header.startswith(V1_PREFIX):
        return _parse_v1(header)
    raise ProxyHeaderError("not a PROXY protocol header")


def _parse_v1(line: bytes) -> ProxyHeader:
    if len(line) > V1_MAX_LENGTH or not line.endswith(b"\r\n"):
        raise ProxyHeaderError("PROXY line not ended by CRLF within 107 bytes")
    fields = line[len(V1_PREFIX) : -2].split(b" ")
    if fields[0] == b"UNKNOWN":
        # §2.1: "the receiver must ignore anything presented before the CRLF is found".
        return ProxyHeader(1, None, None, "UNKNOWN")
    if len(fields) != 5 or fields[0] not in (b"TCP4", b"TCP6"):
        raise ProxyHeaderError("PROXY line is not TCP4/TCP6 with two addresses and two ports")
    family, source, destination, source_port, destination_port = fields
    version = 4 if family == b"TCP4" else 6
    return ProxyHeader(
        1,
        (_v1_address(source, version), _v1_port(source_port)),
        (_v1_address(destination, version), _v1_port(destination_port)),
    )


def _v1_address(text: bytes, version: int) -> str:
    pattern = _IPV4 if version == 4 else _IPV6
    if pattern.fullmatch(text):
        try:
            address = ipaddress.ip_address(text.decode("ascii"))
        except ValueError:
            pass
        else:
            if address.version == version:
                return _plain(address)
    raise ProxyHeaderError(f"not an IPv{version} address in the PROXY line")


def _v1_port(text: bytes) -> int:
    if _DECIMAL.fullmatch(text) and int(text) <= 65535:
        return int(text)
    raise ProxyHeaderError("not a port in the PROXY line")


def _parse_v2(header: bytes) -> ProxyHeader:
    if len(header) < V2_FIXED_LENGTH:
        raise ProxyHeaderError("truncated PROXY v2 header")
    version, command = header[12] >> 4, header[12] & 0xF
    family, protocol = header[13] >> 4, header[13] & 0xF
    length = int.from_bytes(header[14:16], "big")
    if len(header) != V2_FIXED_LENGTH + length:
        raise ProxyHeaderError("PROXY v2 header length does not match its length field")
    if version != V2_VERSION:
        raise ProxyHeaderError(f"unsupported PROXY protocol version {version}")
    if command not in (V2_LOCAL, V2_PROXY):
        # §2.2: "Receivers must drop connections presenting unexpected values here."
        raise ProxyHeaderError(f"unassigned PROXY v2 command {command}")
    if family not in V2_ADDRESS_LENGTH or protocol not in (UNSPEC, STREAM, DGRAM):
        raise ProxyHeaderError(f"unassigned PROXY v2 family/protocol {header[13]:#04x}")
    if command == V2_LOCAL:
        # §2.2: "must use the real connection endpoints and discard the protocol block".
        return ProxyHeader(2, None, None, "LOCAL")
    if family == AF_UNSPEC:
        # §2.2: "The receiver should ignore address information."
        return ProxyHeader(2, None, None, "AF_UNSPEC")
    body = header[V2_FIXED_LENGTH:]
    needed = V2_ADDRESS_LENGTH[family]
    if len(body) < needed:
        raise ProxyHeaderError("PROXY v2 address block shorter than its family needs")
    _walk_tlvs(body[needed:])
    if family == AF_UNIX or protocol != STREAM:
        return ProxyHeader(2, None, None, "AF_UNIX" if family == AF_UNIX else "not TCP")
    size = 4 if family == AF_INET else 16
    source = ipaddress.ip_address(body[:size])
    destination = ipaddress.ip_address(body[size : 2 * size])
    ports = body[2 * size : 2 * size + 4]
    return ProxyHeader(
        2,
        (_plain(source), int.from_bytes(ports[:2], "big")),
        (_plain(destination), int.from_bytes(ports[2:], "big")),
    )


def _walk_tlvs(tlvs: bytes) -> None:
    """§2.2.1: type (1 byte), length (2 bytes), value; each must end within the header."""
    at = 0
    while at < len(tlvs):
        if at + 3 > len(tlvs):
            raise ProxyHeaderError("truncated TLV in the PROXY v2 header")
        at += 3 + int.from_bytes(tlvs[at + 1 : at + 3], "big")
        if at > len(tlvs):
            raise ProxyHeaderError("TLV runs past the PROXY v2 header")


def _plain(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The address as the rest of the server writes a peer's: IPv4-mapped IPv6 as IPv4."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)
