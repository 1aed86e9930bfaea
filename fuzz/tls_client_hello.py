"""Fuzz the ClientHello reader (pillarbox.net.clienthello) with arbitrary bytes.

Input: the first bytes of a TLS connection to an https listener answering tls-alpn-01. Asserted,
beyond "no exception" other than ``ValueError`` (the handshake is then left to OpenSSL):

* every prefix of bytes that give an offer asks for more or gives the same offer (the handshake
  is held only until the hello is whole, and the decision never depends on what follows);
* an offer's server name is lower-case ASCII and its ALPN names are non-empty.
"""

from __future__ import annotations

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox.net.clienthello import ClientHello, parse_client_hello


def parse(data: bytes) -> ClientHello | str | None:
    try:
        return parse_client_hello(data)
    except ValueError as exc:
        return f"refused: {exc}"


def check(data: bytes) -> None:
    outcome = parse(data)
    if not isinstance(outcome, ClientHello):
        return
    assert outcome.server_name == outcome.server_name.lower()
    assert outcome.server_name.isascii()
    assert all(outcome.alpn)
    for end in range(0, len(data), max(1, len(data) // 64)):
        assert parse(data[:end]) in (None, outcome), end


def seeds() -> list[bytes]:
    sni = b"\x00\x00\x00\x18\x00\x16\x00\x00\x13mail.pillarbox.test"
    alpn = b"\x00\x10\x00\x0d\x00\x0b\x0aacme-tls/1"
    extensions = sni + alpn
    body = (
        b"\x03\x03"
        + bytes(32)
        + b"\x00\x00\x02\x13\x01\x01\x00"
        + len(extensions).to_bytes(2, "big")
        + extensions
    )
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    whole = b"\x16\x03\x01" + len(handshake).to_bytes(2, "big") + handshake
    cut = len(handshake) // 2
    split = b"".join(
        b"\x16\x03\x01" + len(part).to_bytes(2, "big") + part
        for part in (handshake[:cut], handshake[cut:])
    )
    return [whole, split, whole[:40], b"\x16\x03\x01\x00\x04\x01\xff\xff\xff"]


if __name__ == "__main__":
    harness.main("tls_client_hello", check, seeds(), max_len=4096)
