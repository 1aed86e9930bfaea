"""The web listeners' connection limits against the live server (``[web] max_connections``,
``max_connections_per_ip``, ``request_head_timeout``, ``request_body_timeout``,
``request_body_min_rate``): uvicorn times out only the wait between requests, so connections
that never sent a request, or sent a later request's head or a body a byte at a time, used to
be held for ever, and a thousand of them from one address made the webmail answer 503 to
everybody."""

from __future__ import annotations

import dataclasses
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from pillarbox import config as cfg
from pillarbox.net.http import REFUSED
from pillarbox.testing.live import LiveServer, loopback_config
from pillarbox.testing.polling import wait_for
from pillarbox.testing.webclient import WebSession, server_trust

OTHER_CLIENT = "127.0.0.2"


@contextmanager
def served(tmp: Path, **web: Any) -> Iterator[LiveServer]:
    config = loopback_config(tmp, only=["http", "https"], web=cfg.WebSection(**web))
    with LiveServer(config) as live:
        yield live


def idle(live: LiveServer, listener: str, source: str = "127.0.0.1") -> socket.socket:
    """A connection that sends nothing (over TLS: the handshake, then nothing)."""
    sock = socket.create_connection(
        ("127.0.0.1", live.port(listener)), timeout=10, source_address=(source, 0)
    )
    if listener == "https":
        return server_trust(live).wrap_socket(sock, server_hostname="mx.test")
    return sock


def answer(sock: socket.socket) -> bytes:
    """What the server sends before it closes (b"" for a close without a word; a TLS peer's
    close may come as an EOF error instead, depending on timing)."""
    sock.settimeout(10)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except (ssl.SSLEOFError, ConnectionResetError):
        pass
    return data


def status_from(live: LiveServer, source: str) -> int:
    transport = httpx.HTTPTransport(local_address=source)
    base = f"http://127.0.0.1:{live.port('http')}"
    with httpx.Client(base_url=base, transport=transport, timeout=10) as client:
        return client.get("/login").status_code


def test_one_address_cannot_take_every_connection(tmp_path: Path) -> None:
    with served(tmp_path, max_connections_per_ip=3) as live, ExitStack() as held:
        for listener in ("http", "http", "https"):  # both listeners count together
            held.enter_context(idle(live, listener))
        for listener in ("http", "https"):
            with idle(live, listener) as refused:
                assert answer(refused) == REFUSED
        assert status_from(live, OTHER_CLIENT) == 200
        held.close()
        # The server frees the slots when it sees the closes, a moment later (not within a
        # fixed 0.2 s on a loaded machine).
        wait_for(lambda: status_from(live, "127.0.0.1") == 200, "the closed connections' slots")


def test_a_connection_without_a_request_head_is_closed(tmp_path: Path) -> None:
    with served(tmp_path, request_head_timeout=1.0) as live:
        started = time.monotonic()
        with idle(live, "http") as silent, idle(live, "https") as silent_tls:
            assert answer(silent) == b"" and answer(silent_tls) == b""
        with idle(live, "http") as trickle:
            trickle.sendall(b"GET /login HTTP/1.1\r\nHost: mx.test\r\n")
            trickle.settimeout(0.2)
            closed = False
            while not closed and time.monotonic() - started < 10:
                try:
                    trickle.sendall(b"X-A: b\r\n")
                    closed = trickle.recv(100) == b""
                except TimeoutError:
                    pass
                except OSError:
                    closed = True
            assert closed
        assert time.monotonic() - started < 8
        with idle(live, "http") as prompt:
            prompt.sendall(b"GET /login HTTP/1.1\r\nHost: mx.test\r\n\r\n")
            time.sleep(1.5)  # past the head timeout: a served request is not cut
            prompt.settimeout(5)
            assert prompt.recv(12) == b"HTTP/1.1 200"


def test_a_reverse_proxy_counts_in_the_total_only(tmp_path: Path) -> None:
    base = loopback_config(tmp_path, only=["http"], web=cfg.WebSection(max_connections_per_ip=2))
    behind = cfg.Listener(
        address="127.0.0.1", port=0, forwarded_headers=True, proxy_networks=("127.0.0.1/32",)
    )
    config = dataclasses.replace(base, listeners=dataclasses.replace(base.listeners, http=behind))
    with LiveServer(config) as live, ExitStack() as held:
        for _ in range(4):
            held.enter_context(idle(live, "http"))
        assert status_from(live, "127.0.0.1") == 200


def trickled_until_closed(sock: socket.socket, piece: bytes, every: float, limit: float) -> float:
    """Send ``piece`` every ``every`` seconds until the server closes; the seconds it took
    (``limit`` if it never did)."""
    started = time.monotonic()
    sock.settimeout(every)
    while time.monotonic() - started < limit:
        try:
            sock.sendall(piece)
            if sock.recv(65536) == b"":
                break
        except TimeoutError:
            pass
        except OSError:
            break
    return time.monotonic() - started


def post_head(length: int) -> bytes:
    return (
        f"POST /login HTTP/1.1\r\nHost: mx.test\r\nContent-Length: {length}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
    ).encode()


def test_a_later_request_head_sent_slowly_is_closed(tmp_path: Path) -> None:
    """The second request on a kept-alive connection has its own head timeout, counted from
    its first byte (before, only the first request's head was timed)."""
    with served(tmp_path, request_head_timeout=1.0) as live, idle(live, "http") as sock:
        sock.sendall(b"GET /login HTTP/1.1\r\nHost: mx.test\r\n\r\n")
        sock.settimeout(5)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        time.sleep(2)  # longer than the head timeout, within uvicorn's keep-alive
        sock.sendall(b"GET /login HTTP/1.1\r\n")
        took = trickled_until_closed(sock, b"X-A: b\r\n", 0.2, 10)
        assert took < 3


def test_a_request_body_sent_slowly_is_closed(tmp_path: Path) -> None:
    """A body that never stops but comes a byte at a time is closed once it falls behind
    request_body_min_rate; one that stops is closed after request_body_timeout."""
    with served(tmp_path, request_body_timeout=1.0, request_body_min_rate=1000) as live:
        with idle(live, "http") as trickle:
            trickle.sendall(post_head(100_000))
            assert trickled_until_closed(trickle, b"a", 0.1, 10) < 3
        with idle(live, "https") as stalled:
            started = time.monotonic()  # before the server can have the body and time it
            stalled.sendall(post_head(100_000) + b"a" * 20_000)
            assert answer(stalled) == b""
            assert 0.8 < time.monotonic() - started < 3


def test_a_slow_honest_body_and_a_live_stream_are_not_cut(tmp_path: Path) -> None:
    """A body at four times the minimum rate takes three times request_body_timeout and is
    answered; the live-update stream, a response the client waits on, outlives every
    timeout."""
    web = {"request_head_timeout": 1.0, "request_body_timeout": 1.0}
    with served(tmp_path, request_body_min_rate=1000, sse_keepalive=0.5, **web) as live:
        with idle(live, "http") as honest:
            body = b"x=" + b"y" * 11_998
            honest.sendall(post_head(len(body)))
            for start in range(0, len(body), 400):
                honest.sendall(body[start : start + 400])
                time.sleep(0.1)
            honest.settimeout(5)
            assert honest.recv(12) == b"HTTP/1.1 303"  # no CSRF token: answered, not cut
        live.add_domain("example.org")
        live.add_account("alice@example.org", "pw-alice-1")
        session = WebSession(live)
        assert session.login("alice@example.org", "pw-alice-1").status_code == 303
        with session.client.stream("GET", "/events", timeout=5) as stream:
            started, comments = time.monotonic(), 0
            for line in stream.iter_lines():
                comments += line.startswith(":")
                if time.monotonic() - started > 3.5:
                    break
            assert comments >= 4
        session.close()


def test_a_slow_head_after_a_connect_request_is_closed(tmp_path: Path) -> None:
    """uvicorn answers CONNECT like any request and reads the next one on the connection; the
    request clock, reading with h11, took it for a switch of protocols and stopped timing, so
    a CONNECT first let a later head trickle for ever."""
    with served(tmp_path, request_head_timeout=1.0) as live, idle(live, "http") as sock:
        sock.sendall(b"CONNECT mx.test:443 HTTP/1.1\r\nHost: mx.test\r\n\r\n")
        sock.settimeout(5)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 4"), first[:40]
        sock.sendall(b"GET /login HTTP/1.1\r\n")
        took = trickled_until_closed(sock, b"X-A: b\r\n", 0.2, 10)
        assert took < 3
