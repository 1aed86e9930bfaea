"""Fuzz the greylisting triplet's normalisation (pillarbox.policy.greylisting): the sender key
and the client network, from whatever a client sends as MAIL FROM and whatever peer address
a listener (or a PROXY header) names.

Input: one line, the sender's address (as MAIL FROM gives it, SMTPUTF8 or not) and the
client's address; after a NUL, the prefix lengths. Asserted, beyond "no exception":

* a sender key keeps the address's domain and a non-empty local part;
* what changes from message to message of one sender does not change its key: a BATV tag
  (``prvs=…=``) put before the local part, a ``+extension`` after it, another counter in
  place of each number standing alone;
* the client network is the client's address's network under the configured prefix (an
  IPv4-mapped IPv6 address counts as the IPv4 one), or the text itself when it is no
  address (a UNIX socket peer).
"""

from __future__ import annotations

import ipaddress
import re

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox.errors import InvalidName
    from pillarbox.mail.address import Address, parse_address
    from pillarbox.policy.greylisting import client_network, sender_key

_NUMBER = re.compile(r"\b\d+\b")


def _variant_key(address: Address, local: str) -> str | None:
    """The key of ``address`` with ``local`` as its local part, None when that is no address."""
    try:
        return sender_key(parse_address(f"{local}@{address.domain}"))
    except InvalidName:
        return None


def _sender(text: str) -> None:
    for utf8 in (False, True):
        try:
            address = parse_address(text, utf8=utf8)
        except InvalidName:
            continue
        key = sender_key(address)
        if address.is_bare_postmaster:
            assert key == address.key, (address, key)
            continue
        # (A general address literal may hold "@": the domain is the key's end, not its part
        # after the last "@".)
        assert key.endswith(f"@{address.domain}"), (address, key)
        assert len(key) > len(address.domain) + 1, (address, key)
        plain = address.local
        if address.quoted or not plain.isascii() or plain.lower().startswith(("prvs=", "srs")):
            continue
        for variant in (
            f"prvs=0123456789={plain}",
            plain if "+" in plain else f"{plain}+tag-1",
            _NUMBER.sub(lambda m: str(int(m.group()) + 1), plain),
        ):
            other = _variant_key(address, variant)
            assert other in (None, key), (address, variant, key, other)


def _client(text: str, ipv4_prefix: int, ipv6_prefix: int) -> None:
    network = client_network(text, ipv4_prefix, ipv6_prefix)
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        assert network == text, (text, network)
        return
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    parsed = ipaddress.ip_network(network)
    prefix = ipv4_prefix if address.version == 4 else ipv6_prefix
    assert parsed.version == address.version and parsed.prefixlen == prefix, (text, network)
    host_bits = address.max_prefixlen - prefix  # a scoped address (fe80::1%eth0) has no "in"
    assert int(address) >> host_bits == int(parsed.network_address) >> host_bits, network


def check(data: bytes) -> None:
    line, _, prefixes = data.partition(b"\x00")
    text = line.decode("utf-8", "surrogateescape")
    _sender(text)
    ipv4_prefix = prefixes[0] % 33 if prefixes else 24
    ipv6_prefix = prefixes[1] % 129 if len(prefixes) > 1 else 64
    _client(text, ipv4_prefix, ipv6_prefix)


def seeds() -> list[bytes]:
    return [
        b"Bob@Example.NET",
        b"list-bounces+alice=example.org@lists.example.net",
        b"bounce-1234-56@news.example.com\x00\x18\x40",
        b"msg.2026.11.30@example.com",
        b"PRVS=0123ABCDEF=Bob@example.net",
        b"SRS0=HHH1=TT=orig.example=bob@fwd.example",
        b"SRS1=x9Y1=first.example==ab12=T2=orig.example=bob@fwd.example",
        b'"quoted+local 1"@example.com',
        b"j\xc3\xb6rg@b\xc3\xbccher.example",
        b"Postmaster",
        b"u@[IPv6:2001:db8::1]",
        b"192.0.2.77\x00\x10\x30",
        b"::ffff:192.0.2.77\x00\x20\x80",
        b"2001:db8:1:2::77\x00\x00\x38",
        b"fe80::1%eth0",
    ]


if __name__ == "__main__":
    harness.main("greylist_keys", check, seeds(), max_len=4096)
