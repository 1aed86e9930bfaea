"""What a TLS ClientHello offers, read from the bytes before OpenSSL takes them: the server
name (SNI) and the ALPN protocols.

Python's ``ssl`` lets a server switch certificates from the SNI callback, which runs before
ALPN is negotiated and is not told which protocols were offered; tls-alpn-01 (RFC 8737 §3)
needs both to decide whether a handshake is a CA's validation. So the hello is read here,
without I/O: the caller passes every byte received so far and gets None until the whole
hello has arrived.

Implementation notes:

- Only what the decision needs is parsed (RFC 8446 §4.1.2 framing, RFC 6066 §3 SNI, RFC 7301
  §3.1 ALPN); anything malformed raises :class:`ValueError` and the caller leaves the
  handshake to OpenSSL, which refuses it with the proper alert.
- The hello may span several handshake records (RFC 8446 §5.1); they are joined up to
  :data:`MAX_HELLO` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

#: RFC 8446 §5.1: ContentType handshake; §4: HandshakeType client_hello.
HANDSHAKE_RECORD = 22
CLIENT_HELLO = 1
#: Extension numbers: RFC 6066 §3 server_name, RFC 7301 §3.1 application_layer_protocol_negotiation.
SERVER_NAME = 0
ALPN = 16
#: RFC 6066 §3: NameType host_name.
HOST_NAME = 0
#: The largest hello read; a longer one is left to OpenSSL undecided. Real hellos are a few
#: KiB (post-quantum key shares included); the record layer caps a record at 2^14 (§5.1).
MAX_HELLO = 16384
#: The most bytes read for one hello, record headers included (a hello cut into tiny records).
MAX_RECEIVED = 2 * MAX_HELLO


@dataclass(frozen=True, slots=True)
class ClientHello:
    """What the hello offered: the SNI host name (lower case; "" without one) and the ALPN
    protocol names in the client's order (empty without the extension)."""

    server_name: str
    alpn: tuple[str, ...]


def _vector(data: bytes, at: int, length_size: int) -> tuple[bytes, int]:
    """The length-prefixed field at ``at`` and the offset after it; :class:`ValueError` if
    it runs past the end of ``data``."""
    start = at + length_size
    end = start + int.from_bytes(data[at:start], "big")
    if end > len(data):  # a cut-short length prefix too: then start > len(data)
        raise ValueError("field runs past its end")
    return data[start:end], end


def _items(data: bytes, length_size: int) -> list[bytes]:
    """The length-prefixed items of a list (e.g. RFC 7301's ProtocolNameList)."""
    items, at = [], 0
    while at < len(data):
        item, at = _vector(data, at, length_size)
        items.append(item)
    return items


def _handshake_bytes(data: bytes) -> bytes:
    """The handshake layer's bytes received so far: the records' contents joined, the last
    record's as far as it has arrived."""
    joined = bytearray()
    at = 0
    while at + 5 <= len(data):
        if data[at] != HANDSHAKE_RECORD:
            raise ValueError("not a handshake record")
        length = int.from_bytes(data[at + 3 : at + 5], "big")
        joined += data[at + 5 : at + 5 + length]
        at += 5 + length
    return bytes(joined)


def parse_client_hello(data: bytes) -> ClientHello | None:
    """The offer of the ClientHello at the start of ``data``; None while it is incomplete.

    Raises :class:`ValueError` for bytes that are not a ClientHello, or one longer than
    :data:`MAX_HELLO` (or :data:`MAX_RECEIVED` with its record headers).
    """
    if data and data[0] != HANDSHAKE_RECORD:
        raise ValueError("not a TLS handshake")
    if len(data) > MAX_RECEIVED:
        raise ValueError("hello too long")
    handshake = _handshake_bytes(data)
    if len(handshake) < 4:
        return None
    if handshake[0] != CLIENT_HELLO:
        raise ValueError("not a ClientHello")
    length = int.from_bytes(handshake[1:4], "big")
    if 4 + length > MAX_HELLO:
        raise ValueError("hello too long")
    if len(handshake) < 4 + length:
        return None
    hello = handshake[4 : 4 + length]
    at = 2 + 32  # legacy_version, random (RFC 8446 §4.1.2)
    _, at = _vector(hello, at, 1)  # legacy_session_id
    _, at = _vector(hello, at, 2)  # cipher_suites
    _, at = _vector(hello, at, 1)  # legacy_compression_methods
    if at == len(hello):
        return ClientHello("", ())  # RFC 5246 §7.4.1.2: extensions may be absent
    extensions, _ = _vector(hello, at, 2)
    server_name, alpn = "", tuple[str, ...]()
    at = 0
    while at < len(extensions):
        kind = int.from_bytes(extensions[at : at + 2], "big")
        body, at = _vector(extensions, at + 2, 2)
        if kind == SERVER_NAME:
            server_name = _server_name(body)
        elif kind == ALPN:
            alpn = _protocols(body)
    return ClientHello(server_name, alpn)


def _server_name(body: bytes) -> str:
    """RFC 6066 §3: the host_name entry of the ServerNameList (ASCII, A-labels)."""
    names, _ = _vector(body, 0, 2)
    at = 0
    while at < len(names):
        kind = names[at]
        name, at = _vector(names, at + 1, 2)
        if kind == HOST_NAME:
            return name.decode("ascii").lower()  # UnicodeDecodeError is a ValueError
    return ""


def _protocols(body: bytes) -> tuple[str, ...]:
    """RFC 7301 §3.1: ProtocolNameList, each name a non-empty byte string."""
    names, _ = _vector(body, 0, 2)
    found = tuple(name.decode("ascii") for name in _items(names, 1))
    if "" in found:
        raise ValueError("an empty ALPN protocol name")  # §3.1: "MUST NOT be included"
    return found
