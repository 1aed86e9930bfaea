"""Hypothesis properties of the ClientHello reader (``pillarbox.net.clienthello``), which sees
the first bytes of every handshake on an https listener answering tls-alpn-01: any bytes give
an offer, ask for more, or raise :class:`ValueError` (nothing else escapes, so a hostile hello
only ever falls back to OpenSSL); a hello built from any SNI name and ALPN list reads back as
built, whole or cut into records of any size, and every prefix of it asks for more."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pillarbox.net.clienthello import ClientHello, parse_client_hello

labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
names = st.lists(labels, min_size=2, max_size=4).map(".".join)
protocols = st.lists(st.from_regex(r"[ -~]{1,20}", fullmatch=True), max_size=5)


def _vector(length_size: int, body: bytes) -> bytes:
    return len(body).to_bytes(length_size, "big") + body


def client_hello(server_name: str, alpn: list[str], padding: int) -> bytes:
    """The handshake message of a ClientHello (RFC 8446 §4.1.2) offering these."""
    extensions = b""
    if server_name:
        entry = b"\x00" + _vector(2, server_name.encode())  # RFC 6066 §3 host_name
        extensions += b"\x00\x00" + _vector(2, _vector(2, entry))
    if alpn:
        listed = b"".join(_vector(1, p.encode()) for p in alpn)
        extensions += b"\x00\x10" + _vector(2, _vector(2, listed))  # RFC 7301 §3.1
    extensions += b"\x00\x15" + _vector(2, bytes(padding))  # RFC 7685 padding
    body = (
        b"\x03\x03"
        + bytes(32)
        + _vector(1, bytes(32))
        + _vector(2, b"\x13\x01\x13\x02")
        + _vector(1, b"\x00")
        + _vector(2, extensions)
    )
    return b"\x01" + _vector(3, body)


def records(handshake: bytes, size: int) -> bytes:
    """``handshake`` framed in records of at most ``size`` bytes (RFC 8446 §5.1)."""
    return b"".join(
        b"\x16\x03\x01" + _vector(2, handshake[at : at + size])
        for at in range(0, len(handshake), size)
    )


@given(st.binary(max_size=600))
def test_any_bytes_give_an_offer_ask_for_more_or_are_refused(data: bytes) -> None:
    try:
        outcome = parse_client_hello(data)
    except ValueError:
        return
    assert outcome is None or isinstance(outcome, ClientHello)


@given(st.binary(max_size=300))
def test_bytes_after_a_handshake_record_header_never_escape(data: bytes) -> None:
    try:
        outcome = parse_client_hello(b"\x16\x03\x01" + _vector(2, b"\x01" + _vector(3, data)))
    except ValueError:
        return
    assert outcome is None or isinstance(outcome, ClientHello)


@given(st.one_of(st.just(""), names), protocols, st.integers(0, 600), st.integers(1, 700))
def test_a_hello_reads_back_however_it_is_framed(
    server_name: str, alpn: list[str], padding: int, size: int
) -> None:
    data = records(client_hello(server_name, alpn, padding), size)
    assert parse_client_hello(data) == ClientHello(server_name, tuple(alpn))
    for end in range(0, len(data), max(1, len(data) // 40)):
        assert parse_client_hello(data[:end]) is None
