"""Where a filter listens, written as Postfix and Sendmail write it: ``inet:HOST:PORT`` (an IPv6
address in brackets) or ``unix:/absolute/path``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FilterAddress:
    """A TCP host and port, or a Unix socket's path (``host`` empty)."""

    text: str
    host: str = ""
    port: int = 0
    path: str = ""


def parse_filter_address(text: str) -> FilterAddress:
    """The address ``text`` names; ValueError with the reason if it names none."""
    kind, _, rest = text.partition(":")
    if kind == "unix":
        if not rest.startswith("/"):
            raise ValueError("a unix: socket needs an absolute path")
        return FilterAddress(text, path=rest)
    if kind != "inet":
        raise ValueError("expected inet:HOST:PORT or unix:/PATH")
    host, _, port = rest.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)  # ValueError if not an IPv6 address
    elif "[" in host or "]" in host:
        raise ValueError("expected inet:HOST:PORT, an IPv6 address in brackets")
    if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError("expected inet:HOST:PORT with a port 1–65535")
    return FilterAddress(text, host=host, port=int(port))
