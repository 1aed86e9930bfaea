"""RFC 7239 ``Forwarded`` (and the X-Forwarded-* fields) as the web listener reads them from a
trusted proxy: the field's syntax (§4), nodes (§6), the chain read from the right (§5.2, §7.4).
"""

from __future__ import annotations

import ipaddress
import logging

import pytest
from starlette.types import Message, Receive, Scope, Send

from pillarbox.net.forwarded import (
    ForwardedHeaders,
    MalformedForwarded,
    parse_forwarded,
    parse_node,
)

PROXY = "10.0.0.5"
NETWORKS = ("10.0.0.0/24", "2001:db8:ffff::/48")


@pytest.mark.parametrize(
    ("lines", "elements"),
    [
        (["for=192.0.2.43"], [{"for": "192.0.2.43"}]),
        # §4: case-insensitive names, quoted values with quoted-pairs, empty pairs, OWS.
        (
            ['For="[2001:db8:cafe::17]:4711";PROTO=https ; by=_x, for=unknown'],
            [{"for": "[2001:db8:cafe::17]:4711", "proto": "https", "by": "_x"}, {"for": "unknown"}],
        ),
        (['for="_gaz\\"zy"'], [{"for": '_gaz"zy'}]),
        # Several lines are one list.
        (
            ["for=192.0.2.43", "for=198.51.100.17;proto=http"],
            [{"for": "192.0.2.43"}, {"for": "198.51.100.17", "proto": "http"}],
        ),
    ],
)
def test_field_syntax(lines: list[str], elements: list[dict[str, str]]) -> None:
    assert parse_forwarded(lines) == elements


@pytest.mark.parametrize(
    "line",
    [
        "for=192.0.2.43;for=198.51.100.17",  # §4: a parameter at most once per element
        "for",
        'for="unterminated',
        "for=192.0.2.43 proto=http",
        "for=[2001:db8::1]",  # "[" is not a token: IPv6 must be quoted (§6)
    ],
)
def test_malformed_field(line: str) -> None:
    with pytest.raises(MalformedForwarded):
        parse_forwarded([line])


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ("192.0.2.43", ("192.0.2.43", 0)),
        ("192.0.2.43:47011", ("192.0.2.43", 47011)),
        ("[2001:db8:cafe::17]", ("2001:db8:cafe::17", 0)),
        ("[2001:db8:cafe::17]:4711", ("2001:db8:cafe::17", 4711)),
        ("192.0.2.43:_port1", ("192.0.2.43", 0)),  # §6.3 obfuscated port
        ("unknown", None),  # §6.2
        ("UNKNOWN", None),
        ("_hidden", None),  # §6.3 obfuscated identifier
        ("_SEVKISEK", None),
    ],
)
def test_nodes(node: str, expected: tuple[str, int] | None) -> None:
    parsed = parse_node(node)
    if expected is None:
        assert parsed is None
    else:
        assert parsed == (ipaddress.ip_address(expected[0]), expected[1])


@pytest.mark.parametrize(
    "node", ["2001:db8::1", "[192.0.2.1]", "192.0.2.300", "192.0.2.1:70000", "example.com"]
)
def test_bad_nodes(node: str) -> None:
    with pytest.raises(MalformedForwarded):
        parse_node(node)


async def seen(
    headers: dict[str, str] | list[tuple[str, str]], peer: str = PROXY, kind: str = "http"
) -> tuple[tuple[str, int], str]:
    """The client and scheme the app behind the middleware sees for one request."""
    got: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        got.append(scope)

    async def receive() -> Message:
        return {"type": "http.request"}

    async def send(message: Message) -> None:
        pass

    pairs = headers.items() if isinstance(headers, dict) else headers
    scope: Scope = {
        "type": kind,
        "client": (peer, 50000),
        "scheme": "http" if kind == "http" else "ws",
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in pairs],
    }
    await ForwardedHeaders(app, NETWORKS)(scope, receive, send)
    return got[0]["client"], got[0]["scheme"]


async def test_forwarded_from_a_trusted_proxy() -> None:
    assert await seen({"Forwarded": "for=192.0.2.43;proto=https"}) == (("192.0.2.43", 0), "https")
    # §5.2: IPv6 quoted in brackets, with a port.
    assert await seen({"Forwarded": 'for="[2001:db8:cafe::17]:4711"'}) == (
        ("2001:db8:cafe::17", 4711),
        "http",
    )
    # A dual-stack socket gives an IPv4 proxy as IPv4-mapped.
    assert await seen({"Forwarded": "for=192.0.2.43"}, peer=f"::ffff:{PROXY}") == (
        ("192.0.2.43", 0),
        "http",
    )
    assert await seen({"Forwarded": "proto=https"}, kind="websocket") == ((PROXY, 50000), "wss")


async def test_ignored_from_anyone_else() -> None:
    header = {"Forwarded": "for=192.0.2.43;proto=https", "X-Forwarded-For": "192.0.2.44"}
    assert await seen(header, peer="192.0.2.99") == (("192.0.2.99", 50000), "http")


async def test_chain_read_from_the_right() -> None:
    # The client's own claim (leftmost) is not believed past an untrusted hop.
    chain = "for=198.51.100.1, for=192.0.2.43;proto=https, for=10.0.0.7;proto=http"
    assert await seen({"Forwarded": chain}) == (("192.0.2.43", 0), "https")
    # Every hop a proxy: the leftmost.
    assert await seen({"Forwarded": "for=10.0.0.8, for=10.0.0.7"}) == (("10.0.0.8", 0), "http")


async def test_obfuscated_and_unknown_name_no_client() -> None:
    """§6.2, §6.3: the address stays the proxy's; the proxy's proto= still counts."""
    for node in ("_hidden", "unknown", '"_x:_p"'):
        assert await seen({"Forwarded": f"for={node};proto=https"}) == ((PROXY, 50000), "https")


async def test_forwarded_wins_over_x_forwarded() -> None:
    both = {"Forwarded": "for=192.0.2.43", "X-Forwarded-For": "192.0.2.44"}
    assert await seen(both) == (("192.0.2.43", 0), "http")


async def test_malformed_forwarded_is_logged_and_the_x_fields_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    bad = {"Forwarded": "for=2001:db8::1", "X-Forwarded-For": "192.0.2.44"}
    assert await seen(bad) == (("192.0.2.44", 0), "http")
    assert "malformed Forwarded field ignored" in caplog.text
    assert await seen({"Forwarded": "for"}) == ((PROXY, 50000), "http")


async def test_x_forwarded_fields() -> None:
    fields = [("X-Forwarded-For", "198.51.100.1, 192.0.2.43"), ("X-Forwarded-Proto", "https")]
    assert await seen(fields) == (("192.0.2.43", 0), "https")
    assert await seen({"X-Forwarded-For": "[2001:db8::5]:443"}) == (("2001:db8::5", 443), "http")
    assert await seen({"X-Forwarded-Proto": "gopher"}) == ((PROXY, 50000), "http")


async def test_an_ipv6_zone_names_no_client() -> None:
    """Found by fuzz/forwarded.py: Python reads any text after "%" as an IPv6 zone, and
    ``2001:db8::1%<anything>`` became the scope's client (the logs', the login limits'),
    the sender's text in it; a zone names an interface of the sender's host, no client."""
    scoped = {"X-Forwarded-For": "2001:db8::1%x y=1"}
    assert await seen(scoped) == ((PROXY, 50000), "http")
    assert await seen({"X-Forwarded-For": "[fe80::1%eth0]:443"}) == ((PROXY, 50000), "http")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # Two proxies, each appending to both fields: the outer one ended the client's TLS,
        # the inner one (10.0.0.7, trusted) was reached over plain HTTP.
        (
            [("X-Forwarded-For", "192.0.2.43, 10.0.0.7"), ("X-Forwarded-Proto", "https, http")],
            (("192.0.2.43", 0), "https"),
        ),
        # The same as one line per proxy (RFC 7239 §4: lines combine as one list).
        (
            [
                ("X-Forwarded-For", "192.0.2.43"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-For", "10.0.0.7"),
                ("X-Forwarded-Proto", "http"),
            ],
            (("192.0.2.43", 0), "https"),
        ),
        # The client's own claims (leftmost) stay left of what the proxies appended.
        (
            [("X-Forwarded-For", "198.51.100.1, 192.0.2.43"), ("X-Forwarded-Proto", "https, http")],
            (("192.0.2.43", 0), "http"),
        ),
        # The front proxy set the scheme, the inner one passed it on without appending.
        (
            [("X-Forwarded-For", "192.0.2.43, 10.0.0.7"), ("X-Forwarded-Proto", "https")],
            (("192.0.2.43", 0), "https"),
        ),
        # No client named: the scheme the trusted peer appended.
        ([("X-Forwarded-Proto", "https, http")], ((PROXY, 50000), "http")),
    ],
)
async def test_x_forwarded_proto_goes_with_the_chosen_hop(
    fields: list[tuple[str, str]], expected: tuple[tuple[str, int], str]
) -> None:
    """The scheme is the one recorded beside the client X-Forwarded-For names (lists aligned
    from the right, as RFC 7239 §5.4 pairs ``for=`` and ``proto=`` in one element), not the
    last X-Forwarded-Proto line."""
    assert await seen(fields) == expected
