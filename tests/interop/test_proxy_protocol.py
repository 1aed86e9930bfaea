"""Listeners behind a load balancer, driven directly over loopback (HAProxy itself:
test_proxy_protocol_haproxy.py): who may send a PROXY header, what happens without one, and the
web's forwarded headers.

The balancer is 127.0.0.3, the one address in ``proxy_networks``; strangers connect from
127.0.0.1.

(a) A stranger is closed unanswered, even with a valid header: no greeting, a log line.
(b) From the balancer: no header, a malformed one, or none in ``proxy_timeout`` closes the
    connection unanswered — no greeting is sent before the header.
(c) A v2 LOCAL header (the balancer's health check) keeps the connection's own address.
(d) A header and the TLS ClientHello after it in one segment (implicit TLS): the handshake
    gets every byte of the hello.
(e) The web listener believes Forwarded (RFC 7239), X-Forwarded-For and X-Forwarded-Proto
    from the balancer alone: the login rate limit counts the forwarded client, and the page is
    treated as HTTPS.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import socket
import ssl
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pillarbox.proxyprotocol import V2_SIGNATURE
from pillarbox.testing.live import TEST_AUTH, TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.webclient import server_trust

BALANCER = "127.0.0.3"
STRANGER = "127.0.0.1"
TIMEOUT = 0.5
V1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\n"
V2_LOCAL = V2_SIGNATURE + b"\x20\x00\x00\x00"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    base = loopback_config(
        tmp_path / "data",
        only=["smtp", "submissions", "http"],
        # One free failure per address, then a long delay: the third try is refused (429).
        auth=dataclasses.replace(TEST_AUTH, free_failures=1, base_delay=600.0),
    )
    trusted = (f"{BALANCER}/32",)
    proxied = {
        name: dataclasses.replace(
            getattr(base.listeners, name),
            proxy_protocol=True,
            proxy_networks=trusted,
            proxy_timeout=TIMEOUT,
        )
        for name in ("smtp", "submissions")
    }
    web = dataclasses.replace(base.listeners.http, forwarded_headers=True, proxy_networks=trusted)
    listeners = dataclasses.replace(base.listeners, http=web, **proxied)
    with LiveServer(dataclasses.replace(base, listeners=listeners)) as server:
        server.add_domain("example.org")
        server.add_account("alice@example.org", TEST_PASSWORD)
        yield server


def connect(live: LiveServer, listener: str, source: str) -> socket.socket:
    return socket.create_connection(
        ("127.0.0.1", live.port(listener)), timeout=10, source_address=(source, 0)
    )


def until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends before it closes the connection (a reset, when the bytes
    sent were not all read: the kernel's answer to a close with unread input)."""
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        getattr(r, "fields", {})["reason"]
        for r in caplog.records
        if r.getMessage() == "connection refused: PROXY protocol"
    ]


def connected_from(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        getattr(r, "fields", {})["remote"]
        for r in caplog.records
        if r.name == "pillarbox.smtp" and r.getMessage() == "connected"
    ]


@pytest.mark.parametrize("sends", [b"", V1 + b"EHLO a.example\r\n"])
def test_a_stranger_is_closed_unanswered(
    live: LiveServer, caplog: pytest.LogCaptureFixture, sends: bytes
) -> None:
    caplog.set_level(logging.INFO, logger="pillarbox")
    with connect(live, "smtp", STRANGER) as sock:
        sock.sendall(sends)
        assert until_closed(sock) == b""
    assert refusals(caplog) == ["not from proxy_networks"]
    assert connected_from(caplog) == []


@pytest.mark.parametrize(
    ("sends", "reason"),
    [
        (b"EHLO client.example\r\n", "not a PROXY protocol header"),
        (b"PROXY TCP4 192.0.2.07 198.51.100.1 40000 25\r\n", "not an IPv4 address"),
        (V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12), "unassigned PROXY v2 command 2"),
        (b"PROXY TCP4 192.0.2.7", "no PROXY header in time"),
        (b"", "no PROXY header in time"),
    ],
)
def test_the_balancer_without_a_valid_header_is_closed_unanswered(
    live: LiveServer, caplog: pytest.LogCaptureFixture, sends: bytes, reason: str
) -> None:
    caplog.set_level(logging.INFO, logger="pillarbox")
    with connect(live, "smtp", BALANCER) as sock:
        sock.sendall(sends)
        assert until_closed(sock) == b""  # no 220 greeting before the header
    [refusal] = refusals(caplog)
    assert reason in refusal
    assert connected_from(caplog) == []


def test_a_header_is_the_peer(live: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pillarbox")
    with connect(live, "smtp", BALANCER) as sock:
        sock.sendall(V1)
        assert sock.makefile("rb").readline().startswith(b"220 ")
    assert connected_from(caplog) == ["192.0.2.7"]


def test_v2_local_keeps_the_connection_address(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    """§2.2: LOCAL is the balancer's own connection (a health check): its real endpoints."""
    caplog.set_level(logging.INFO, logger="pillarbox")
    with connect(live, "smtp", BALANCER) as sock:
        sock.sendall(V2_LOCAL)
        assert sock.makefile("rb").readline().startswith(b"220 ")
    assert connected_from(caplog) == [BALANCER]


def test_header_and_client_hello_in_one_segment(live: LiveServer) -> None:
    """A v2 header for 2001:db8::7, then at once the ClientHello: the server reads the header
    alone, so the TLS handshake gets the whole hello and the 220 comes over TLS."""
    context = server_trust(live)
    context.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing)
    header = (
        V2_SIGNATURE
        + b"\x21\x21\x00\x24"
        + socket.inet_pton(socket.AF_INET6, "2001:db8::7")
        + socket.inet_pton(socket.AF_INET6, "2001:db8::1")
        + struct.pack("!HH", 40000, 465)
    )
    with connect(live, "submissions", BALANCER) as sock:
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()
        sock.sendall(header + outgoing.read())
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                data = sock.recv(65536)
                assert data, "closed during the handshake"
                incoming.write(data)
        sock.sendall(outgoing.read())
        greeting = b""
        while not greeting.endswith(b"\r\n"):
            try:
                greeting += tls.read(4096)
            except ssl.SSLWantReadError:
                incoming.write(sock.recv(65536))
    assert greeting.startswith(b"220 ")


_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def web_client(live: LiveServer, source: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"http://127.0.0.1:{live.port('http')}",
        transport=httpx.HTTPTransport(local_address=source),
        timeout=30,
    )


#: The client's address as each kind of field names it.
FOR_FIELDS = {
    "x-forwarded": lambda address: {"X-Forwarded-For": address},
    "rfc7239": lambda address: {"Forwarded": f"for={address};proto=http"},
    # A /64 apiece: the addresses of one IPv6 prefix are one client ([server] ipv6_client_prefix).
    "rfc7239-ipv6": lambda address: {
        "Forwarded": f'for="[2001:db8:{address.rsplit(".", 1)[1]}::1]:4711"'
    },
}


def failed_login(
    client: httpx.Client, forwarded_for: str, attempt: int, field: str = "x-forwarded"
) -> int:
    """A login with a wrong password (for a different account each time: only the address
    limit applies); the status of the answer."""
    headers = FOR_FIELDS[field](forwarded_for)
    page = client.get("/login", headers=headers)
    match = _CSRF.search(page.text)
    assert match is not None
    form = {"csrf": match.group(1), "username": f"u{attempt}@example.org", "password": "wrong one"}
    return client.post("/login", data=form, headers=headers).status_code


@pytest.mark.parametrize("field", sorted(FOR_FIELDS))
def test_web_login_limit_counts_the_forwarded_client(live: LiveServer, field: str) -> None:
    with web_client(live, BALANCER) as client:
        tries = [failed_login(client, "198.51.100.7", n, field) for n in range(3)]
        assert tries == [401, 401, 429]
        # Another client behind the same balancer is not held back.
        assert failed_login(client, "198.51.100.8", 3, field) == 401


@pytest.mark.parametrize("field", sorted(FOR_FIELDS))
def test_web_ignores_forwarded_headers_from_a_stranger(live: LiveServer, field: str) -> None:
    with web_client(live, STRANGER) as client:
        assert [failed_login(client, "198.51.100.9", n, field) for n in range(2)] == [401, 401]
        # The header named someone else, but the address counted is the stranger's own.
        assert failed_login(client, "198.51.100.10", 2, field) == 429


@pytest.mark.parametrize(
    "proto", [{"X-Forwarded-Proto": "https"}, {"Forwarded": "for=_hidden;proto=https"}]
)
@pytest.mark.parametrize(("source", "https"), [(BALANCER, True), (STRANGER, False)])
def test_web_scheme_from_the_balancer_only(
    live: LiveServer, source: str, https: bool, proto: dict[str, str]
) -> None:
    """X-Forwarded-Proto: https (or Forwarded's proto=https) from the balancer (which ended
    TLS): the session cookie is Secure and the answer carries HSTS, as on the https listener."""
    with web_client(live, source) as client:
        page = client.get("/login", headers=proto)
    assert ("; Secure" in page.headers["set-cookie"]) is https
    assert ("strict-transport-security" in page.headers) is https


def test_web_scheme_of_the_client_hop_behind_two_proxies(live: LiveServer) -> None:
    """Two proxies, each appending to X-Forwarded-For and X-Forwarded-Proto (one line apiece):
    the outer one ended the client's TLS, the inner one (the balancer's address, trusted) was
    reached over HTTP. The scheme is the client hop's, https, not the last line's."""
    fields = [
        ("X-Forwarded-For", "198.51.100.20"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-For", BALANCER),
        ("X-Forwarded-Proto", "http"),
    ]
    with web_client(live, BALANCER) as client:
        page = client.get("/login", headers=fields)
    assert "; Secure" in page.headers["set-cookie"]
    assert "strict-transport-security" in page.headers
