"""The web listeners' connection limits against the live server (``[web] max_connections``,
``max_connections_per_ip``, ``request_head_timeout``): uvicorn times out only the wait between
requests, so connections that never sent a request used to be held for ever, and a thousand
of them from one address made the webmail answer 503 to everybody."""

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
from pillarbox.testing.webclient import server_trust

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
        time.sleep(0.2)
        assert status_from(live, "127.0.0.1") == 200


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
