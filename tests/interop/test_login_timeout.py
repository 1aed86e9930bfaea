"""The login deadline on every listener where clients log in (IMAP, POP3, ManageSieve, SMTP
submission, LMTP from outside its trusted networks), live: a client that connects and never
logs in gets the protocol's goodbye and then end of stream once ``login_timeout`` has passed
since it connected, and a log line says why; a client that logged in stays past that time.
The idle timers (30 minutes, 10 for POP3, 5 for SMTP commands) would not have closed it."""

from __future__ import annotations

import base64
import logging
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from pillarbox import config as cfg
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.polling import wait_for

LOGIN_TIMEOUT = 1.0
USER = "alice@example.org"
PLAIN = base64.b64encode(f"\0{USER}\0{TEST_PASSWORD}".encode()).decode()


@dataclass(frozen=True)
class Protocol:
    listener: str
    #: The greeting ends with a line starting with this.
    greeting_end: bytes
    #: (command, start of the last line of its successful answer) to log in.
    login: tuple[tuple[bytes, bytes], ...]
    noop: tuple[bytes, bytes]
    goodbye: bytes
    #: The log line that says why the connection was closed.
    logged: Callable[[logging.LogRecord], bool]


def _fields(record: logging.LogRecord) -> dict[str, object]:
    fields: dict[str, object] = getattr(record, "fields", {})
    return fields


PROTOCOLS = {
    "imap": Protocol(
        "imap",
        b"* OK ",
        ((f'a LOGIN {USER} "{TEST_PASSWORD}"'.encode(), b"a OK "),),
        (b"b NOOP", b"b OK "),
        b"* BYE No login in time, disconnecting\r\n",
        lambda r: r.getMessage() == "login timeout",
    ),
    "pop3": Protocol(
        "pop3",
        b"+OK ",
        ((f"USER {USER}".encode(), b"+OK"), (f"PASS {TEST_PASSWORD}".encode(), b"+OK")),
        (b"NOOP", b"+OK"),
        b"-ERR no login in time, closing connection\r\n",
        lambda r: r.getMessage() == "disconnected" and _fields(r)["reason"] == "login-timeout",
    ),
    "managesieve": Protocol(
        "managesieve",
        b"OK ",
        ((f'AUTHENTICATE "PLAIN" "{PLAIN}"'.encode(), b"OK "),),
        (b"NOOP", b"OK "),
        b'BYE "No login in time, disconnecting"\r\n',
        lambda r: r.getMessage() == "disconnected" and _fields(r)["reason"] == "login timeout",
    ),
    "submission": Protocol(
        "submission",
        b"220 ",
        ((b"EHLO client.test", b"250 "), (f"AUTH PLAIN {PLAIN}".encode(), b"235 ")),
        (b"NOOP", b"250 "),
        b"421 4.4.2 no authentication in time, closing connection\r\n",
        lambda r: r.getMessage() == "closing" and _fields(r)["code"] == 421,
    ),
}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    config = loopback_config(
        tmp_path_factory.mktemp("login-timeout"),
        only=tuple(PROTOCOLS),
        smtp=cfg.SmtpSection(auth_without_tls=True, login_timeout=LOGIN_TIMEOUT),
        imap=cfg.ImapSection(login_without_tls=True, login_timeout=LOGIN_TIMEOUT),
        pop3=cfg.Pop3Section(login_without_tls=True, login_timeout=LOGIN_TIMEOUT),
        managesieve=cfg.ManageSieveSection(login_without_tls=True, login_timeout=LOGIN_TIMEOUT),
    )
    with LiveServer(config) as server:
        server.add_domain("example.org")
        server.add_account(USER, TEST_PASSWORD)
        yield server


class Client:
    def __init__(self, port: int | str) -> None:
        """Connected to a loopback ``port``, or to a UNIX socket's path."""
        if isinstance(port, str):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(30)
            self.sock.connect(port)
        else:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")

    def until(self, start: bytes) -> bytes:
        """Lines up to the first that starts with ``start``; that line."""
        while True:
            line = self.file.readline()
            assert line, f"end of stream before {start!r}"
            if line.startswith(start):
                return line

    def command(self, line: bytes, answer: bytes) -> None:
        self.sock.sendall(line + b"\r\n")
        self.until(answer)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_a_client_that_does_not_log_in_in_time_is_told_and_dropped(
    live: LiveServer, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pillarbox")
    protocol = PROTOCOLS[name]
    port = live.port(protocol.listener)
    patient = Client(port)  # logs in, then outlives the silent client's deadline
    try:
        patient.until(protocol.greeting_end)
        for line, answer in protocol.login:
            patient.command(line, answer)
        connected = time.monotonic()
        silent = Client(port)
        try:
            silent.until(protocol.greeting_end)
            rest = silent.file.read()  # to end of stream: the server closes
            waited = time.monotonic() - connected
        finally:
            silent.close()
        assert rest == protocol.goodbye
        assert waited >= LOGIN_TIMEOUT
        wait_for(lambda: any(protocol.logged(r) for r in caplog.records), "the log line")
        # Connected before the silent client, but logged in: still served.
        patient.command(*protocol.noop)
    finally:
        patient.close()


def test_lmtp_outsider_that_must_log_in_is_dropped_busy_or_not(
    tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """LMTP from outside ``[lmtp] trusted_networks`` must log in (``require_auth``): a slow
    client sending NOOPs, each within command_timeout, is still closed once login_timeout
    has passed since the greeting, as on submission. The UNIX socket needs no login, so the
    same client there is served on."""
    caplog.set_level(logging.INFO, logger="pillarbox")
    data = tmp_path_factory.mktemp("lmtp-login")
    path = str(data / "lmtp.sock")
    config = loopback_config(
        data,
        only=("lmtp",),
        smtp=cfg.SmtpSection(login_timeout=LOGIN_TIMEOUT),
        lmtp=cfg.LmtpSection(
            trusted_networks=(), require_tls=False, auth_accounts=(USER,), socket=path
        ),
    )
    with LiveServer(config) as server:
        trusted = Client(path)
        # The server's deadline runs from its greeting: timed from before the connection,
        # not from after both LHLOs (later by their round trips, seen as a close "too early"
        # under load).
        connected = time.monotonic()
        outsider = Client(server.port("lmtp"))
        try:
            for client in (trusted, outsider):
                client.until(b"220 ")
                client.command(b"LHLO client.test", b"250 ")
            greeted = time.monotonic()
            closed = None
            while time.monotonic() - greeted < 3 * LOGIN_TIMEOUT:
                trusted.command(b"NOOP", b"250 ")
                if closed is None:
                    outsider.sock.sendall(b"NOOP\r\n")
                    line = outsider.file.readline()
                    if line.startswith(b"421 "):
                        closed = time.monotonic() - connected
                        assert (
                            line == b"421 4.4.2 no authentication in time, closing connection\r\n"
                        )
                        assert outsider.file.read() == b""
                    else:
                        assert line.startswith(b"250 ")
                time.sleep(0.2)
            assert closed is not None and LOGIN_TIMEOUT <= closed < 2 * LOGIN_TIMEOUT
            trusted.command(b"NOOP", b"250 ")  # three deadlines later, still served
        finally:
            trusted.close()
            outsider.close()
