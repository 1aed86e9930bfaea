"""The live ManageSieve listener's defences: login throttling across connections (the shared
authenticator, as for IMAP), the connection limit, shutdown, and logs without credentials."""

from __future__ import annotations

import base64
import dataclasses
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.testing.live import TEST_AUTH, TEST_PASSWORD, LiveServer, loopback_config

USER = "alice@example.org"
PLAIN = base64.b64encode(f"\0{USER}\0{TEST_PASSWORD}".encode()).decode()
WRONG = base64.b64encode(f"\0{USER}\0not the password".encode()).decode()


def _server(tmp: Path, **sections: object) -> LiveServer:
    live = LiveServer(loopback_config(tmp / "data", only=("managesieve",), **sections))
    live.__enter__()
    live.add_domain("example.org")
    live.add_account(USER, TEST_PASSWORD)
    return live


@pytest.fixture
def throttling(tmp_path: Path) -> Iterator[LiveServer]:
    auth = dataclasses.replace(TEST_AUTH, free_failures=1, base_delay=60.0)
    live = _server(tmp_path, auth=auth)
    yield live
    live.__exit__(None, None, None)


class _Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                return b""
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def status(self) -> bytes:
        while not (line := self.line()).startswith((b"OK", b"NO", b"BYE")) and line:
            pass
        return line

    def command(self, text: str) -> bytes:
        self.sock.sendall(text.encode() + b"\r\n")
        return self.status()


def test_failed_logins_are_throttled_across_connections(throttling: LiveServer) -> None:
    first = _Client(throttling.port("managesieve"))
    assert first.status().startswith(b"OK")
    for _ in range(2):  # one failure is free, the second one counts
        assert first.command(f'AUTHENTICATE "PLAIN" "{WRONG}"') == b'NO "Authentication failed"'
    throttled = b'NO (TRYLATER) "Too many failed logins, try again later"'
    assert first.command(f'AUTHENTICATE "PLAIN" "{PLAIN}"') == throttled
    second = _Client(throttling.port("managesieve"))
    assert second.status().startswith(b"OK")
    assert second.command(f'AUTHENTICATE "PLAIN" "{PLAIN}"') == throttled


def test_connections_over_the_limit_get_bye(tmp_path: Path) -> None:
    live = _server(tmp_path, managesieve=cfg.ManageSieveSection(max_connections_per_ip=1))
    try:
        first = _Client(live.port("managesieve"))
        assert first.status() == b'OK "Pillarbox ManageSieve ready"'
        second = _Client(live.port("managesieve"))
        assert second.line() == b'BYE (TRYLATER) "Too many connections, try again later"'
        assert second.line() == b""
        assert first.command("NOOP") == b'OK "Done"'
    finally:
        live.__exit__(None, None, None)


def test_shutdown_says_bye(tmp_path: Path) -> None:
    live = _server(tmp_path)
    client = _Client(live.port("managesieve"))
    assert client.status().startswith(b"OK")
    live.__exit__(None, None, None)
    assert client.line() == b'BYE (TRYLATER) "Server shutting down"'


def test_logs_carry_the_connection_and_never_the_credentials(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    live = _server(tmp_path)
    try:
        client = _Client(live.port("managesieve"))
        client.status()
        assert client.command(f'AUTHENTICATE "PLAIN" "{WRONG}"').startswith(b"NO")
        assert client.command(f'AUTHENTICATE "PLAIN" "{PLAIN}"') == b'OK "Logged in"'
        assert client.command('PUTSCRIPT "s" "keep; # secret body"') == (
            b'OK "Putscript completed"'
        )
        client.command("LOGOUT")
    finally:
        live.__exit__(None, None, None)
    ours = [r for r in caplog.records if r.name.endswith("managesieve")]
    text = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', {})}" for r in ours)
    assert "logged in" in text and "script stored" in text
    assert all(getattr(r, "fields", {}).get("conn", "").startswith("managesieve-") for r in ours)
    for secret in (PLAIN, WRONG, TEST_PASSWORD, "not the password", "secret body"):
        assert secret not in text


def test_trace_protocol_logs_both_ways_with_sasl_payloads_and_scripts_elided(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pillarbox.managesieve")
    live = _server(tmp_path, logging=cfg.LoggingSection(trace_protocol=True))
    script = "keep; # secret body"
    try:
        client = _Client(live.port("managesieve"))
        client.status()
        assert client.command(f'AUTHENTICATE "PLAIN" "{WRONG}"').startswith(b"NO")
        # No initial response: the payload comes as the answer to an empty challenge.
        client.sock.sendall(b'AUTHENTICATE "PLAIN"\r\n')
        assert client.line() == b'""'
        assert client.command(f'"{PLAIN}"') == b'OK "Logged in"'
        client.command("UNAUTHENTICATE")
        # The payload as a literal.
        literal = f'AUTHENTICATE "PLAIN" {{{len(PLAIN)}+}}\r\n{PLAIN}'
        assert client.command(literal) == b'OK "Logged in"'
        put = f'PUTSCRIPT "s" {{{len(script)}+}}\r\n{script}'
        assert client.command(put) == b'OK "Putscript completed"'
        assert client.command('GETSCRIPT "s"') == b'OK "Getscript completed"'
        client.command("LOGOUT")
    finally:
        live.__exit__(None, None, None)
    lines = [r.getMessage() for r in caplog.records if r.getMessage()[:3] in ("C: ", "S: ")]
    assert lines[0] == 'S: "IMPLEMENTATION" "Pillarbox"'  # the greeting, from its first line
    for expected in (
        'S: OK "Pillarbox ManageSieve ready"',
        'C: AUTHENTICATE "PLAIN" <redacted>',
        'C: AUTHENTICATE "PLAIN"',
        'S: ""',
        "C: <redacted SASL response>",
        'S: OK "Logged in"',
        f'C: PUTSCRIPT "s" <literal:{len(script)}>',
        'C: GETSCRIPT "s"',
        f"S: <literal:{len(script.encode())}>",
        'S: OK "Getscript completed"',
        "C: LOGOUT",
    ):
        assert expected in lines
    assert lines.count('C: AUTHENTICATE "PLAIN" <redacted>') == 2  # quoted, then literal
    text = "\n".join(lines)
    for secret in (PLAIN, WRONG, TEST_PASSWORD, "secret body"):
        assert secret not in text


def test_without_trace_protocol_no_protocol_line_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pillarbox.managesieve")
    live = _server(tmp_path)
    try:
        client = _Client(live.port("managesieve"))
        client.status()
        assert client.command("NOOP") == b'OK "Done"'
    finally:
        live.__exit__(None, None, None)
    assert not [r for r in caplog.records if r.getMessage()[:3] in ("C: ", "S: ")]
