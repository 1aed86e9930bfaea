"""Fuzz the reading of ``Forwarded`` and ``X-Forwarded-*`` fields (pillarbox.net.forwarded):
a trusted proxy appends its hop, but what is left of it is whatever the client sent.

Input: byte 0 picks the fields (bit 0: ``Forwarded``, bit 1: ``X-Forwarded-For``, bit 2:
``X-Forwarded-Proto``); the rest, split at line feeds, are their values, in turn (as a proxy
relays them: latin-1). The request comes from a trusted proxy (192.0.2.1, in
``proxy_networks`` 192.0.2.0/24). Asserted, beyond "no exception" other than
``MalformedForwarded`` from the ``Forwarded`` reader (the middleware logs it and falls back):

* every hop read names an IP address (no IPv6 zone: it names an interface of the sender's
  host, and would carry the client's text into the scope) and a port in range, or none;
* the hop chosen is one of the hops, the rightmost not a trusted proxy (or the leftmost);
* after the middleware, the scope's client is an address written as Python writes it
  (what the login limits and the logs key on) and the scheme ``http`` or ``https``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from typing import Any

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox.net.forwarded import (
        ForwardedHeaders,
        MalformedForwarded,
        TrustedNetworks,
        client_hop,
        forwarded_hops,
        x_forwarded_hops,
    )

PROXY = "192.0.2.1"
TRUSTED = TrustedNetworks(["192.0.2.0/24"])


def _hops_ok(hops: list[Any]) -> None:
    for hop in hops:
        if hop.client is not None:
            address, port = hop.client
            assert "%" not in str(address), address
            assert 0 <= port <= 65535, port
    chosen = client_hop(hops, TRUSTED)
    assert (chosen is None) == (not hops)
    if chosen is not None:
        assert chosen in hops


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    scope["seen"] = True


def check(data: bytes) -> None:
    if not data:
        return
    which, values = data[0], data[1:].decode("latin-1").split("\n")
    forwarded = values[0::3] if which & 1 else []
    x_for = values[1::3] if which & 2 else []
    x_proto = values[2::3] if which & 4 else []
    if forwarded:
        with contextlib.suppress(MalformedForwarded):
            _hops_ok(forwarded_hops(forwarded))
    if x_for:
        _hops_ok(x_forwarded_hops(x_for, x_proto))
    headers = [(b"forwarded", v.encode("latin-1")) for v in forwarded]
    headers += [(b"x-forwarded-for", v.encode("latin-1")) for v in x_for]
    headers += [(b"x-forwarded-proto", v.encode("latin-1")) for v in x_proto]
    scope: dict[str, Any] = {
        "type": "http", "client": (PROXY, 4711), "scheme": "http", "headers": headers,
    }  # fmt: skip
    asyncio.run(ForwardedHeaders(_app, ["192.0.2.0/24"])(scope, _receive, _send))
    assert scope["seen"] and scope["scheme"] in ("http", "https"), scope["scheme"]
    host, port = scope["client"]
    assert str(ipaddress.ip_address(host)) == host, host
    assert 0 <= port <= 65535


async def _receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}


async def _send(message: dict[str, Any]) -> None:
    pass


def seeds() -> list[bytes]:
    return [
        b'\x01for=192.0.2.60;proto=https;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"',
        b"\x06198.51.100.7, 192.0.2.9\n\nhttps",
        b"\x07for=unknown;proto=http, for=_hidden\n203.0.113.5:8080, [2001:db8::1]:443\nhttps",
        b'\x01for="_gazonk"',
        b"\x02fe80::1, 2001:db8::2",
    ]


if __name__ == "__main__":
    harness.main("forwarded", check, seeds(), max_len=4096)
