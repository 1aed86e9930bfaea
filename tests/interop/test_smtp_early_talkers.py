"""Clients that do not wait for the MX's replies, on a live server. The pregreet test
(``smtp.greet_pause``, :mod:`pillarbox.net.pregreet`): Python's smtplib waits for the greeting
as RFC 5321 §3.1 and §4.3.1 ask, gets it after the pause and is not made to wait again; a
client that sends before the greeting is greeted with 554 and served nothing but QUIT (byte
for byte, over a raw socket); a client that leaves is counted; trusted clients and submission
are never paused. Synchronisation (``smtp.enforce_sync``, RFC 2920 §3.1): a spam engine's
whole session sent at once ends with 554 5.5.0 and stores nothing, while smtplib and a
pipelining client that waits where it must deliver; a trusted client is not held to it.

The client is 127.0.0.1 and ``policy.trusted_networks`` names 127.0.0.2 only, so the same
machine is a stranger or a trusted client by its source address.
"""

from __future__ import annotations

import smtplib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.store.types import INBOX
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config

PAUSE = 1.0
ALICE = "alice@example.org"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    config = loopback_config(
        tmp_path / "data",
        only=["smtp", "submission"],
        policy=cfg.PolicySection(enabled=False, trusted_networks=("127.0.0.2/32",)),
        smtp=cfg.SmtpSection(greet_pause=PAUSE, greet_pass_ttl=60.0, auth_without_tls=True),
    )
    with LiveServer(config) as server:
        server.add_domain("example.org")
        server.add_account(ALICE, TEST_PASSWORD)
        yield server


def pauses(live: LiveServer, outcome: str) -> float:
    assert live.server.context is not None
    registry = live.server.context.metrics.registry
    value = registry.get_sample_value("pillarbox_smtp_greet_pauses_total", {"outcome": outcome})
    assert value is not None
    return value


def greeted_after(live: LiveServer, source: str = "127.0.0.1", listener: str = "smtp") -> float:
    """Seconds from connecting until smtplib has read the greeting (it waits, as a client
    must); the session then ends with QUIT."""
    start = time.monotonic()
    with smtplib.SMTP(
        "127.0.0.1",
        live.port(listener),
        local_hostname="mx.example.net",
        source_address=(source, 0),
    ) as client:
        elapsed = time.monotonic() - start
        assert client.noop()[0] == 250
    return elapsed


def test_a_client_that_waits_is_greeted_after_the_pause_once(live: LiveServer) -> None:
    assert greeted_after(live) >= PAUSE - 0.05
    # Remembered for greet_pass_ttl: greeted at once, and its mail taken as ever.
    assert greeted_after(live) < PAUSE / 2
    with smtplib.SMTP("127.0.0.1", live.port("smtp"), local_hostname="mx.example.net") as client:
        message = f"From: bob@example.net\r\nTo: {ALICE}\r\nSubject: waited\r\n\r\nHi.\r\n"
        assert client.sendmail("bob@example.net", [ALICE], message) == {}
    assert len(live.mailbox_messages(ALICE, INBOX)) == 1
    assert pauses(live, "waited") == 1
    assert pauses(live, "talked") == 0


def test_a_client_that_talks_first_gets_554_and_nothing_but_quit(live: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", live.port("smtp")), timeout=5) as sock:
        # A spam engine's burst, sent on connect: the 554 greeting answers it, then each
        # command gets what a refused session gives (RFC 5321 §3.1): only QUIT is served.
        sock.sendall(
            b"EHLO bot.example\r\nMAIL FROM:<a@bot.example>\r\n"
            b"RCPT TO:<alice@example.org>\r\nDATA\r\n"
        )
        sock.sendall(b"QUIT\r\n")
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    assert received == (
        b"554 no SMTP service here: talked before the greeting\r\n"
        b"503 5.5.1 bad sequence of commands\r\n"
        b"503 5.5.1 bad sequence of commands\r\n"
        b"503 5.5.1 bad sequence of commands\r\n"
        b"503 5.5.1 bad sequence of commands\r\n"
        b"221 2.0.0 bye\r\n"
    )
    assert live.mailbox_messages(ALICE, INBOX) == []
    assert pauses(live, "talked") == 1
    # Talking first is not waiting: the address is paused again next time.
    assert greeted_after(live) >= PAUSE - 0.05


def test_a_client_that_leaves_during_the_pause_is_counted(live: LiveServer) -> None:
    socket.create_connection(("127.0.0.1", live.port("smtp")), timeout=5).close()
    deadline = time.monotonic() + 5
    while pauses(live, "left") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pauses(live, "left") == 1
    assert greeted_after(live) >= PAUSE - 0.05  # and the listener serves on


def test_trusted_clients_and_submission_are_not_paused(live: LiveServer) -> None:
    assert greeted_after(live, source="127.0.0.2") < PAUSE / 2
    assert greeted_after(live, listener="submission") < PAUSE / 2
    assert pauses(live, "waited") == 0


BURST = (
    b"EHLO bot.example\r\nMAIL FROM:<a@bot.example>\r\nRCPT TO:<alice@example.org>\r\n"
    b"DATA\r\nSubject: all at once\r\n\r\nBuy.\r\n.\r\nQUIT\r\n"
)


def burst(live: LiveServer, source: str) -> bytes:
    """Read the greeting, then send a whole session at once: everything the server wrote."""
    with socket.create_connection(
        ("127.0.0.1", live.port("smtp")), timeout=5, source_address=(source, 0)
    ) as sock:
        greeting = b""
        while not greeting.endswith(b"\r\n"):
            greeting += sock.recv(4096)
        sock.sendall(BURST)
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    return received


def test_a_session_sent_at_once_ends_at_the_ehlo_and_stores_nothing(live: LiveServer) -> None:
    assert burst(live, "127.0.0.1") == (
        b"554 5.5.0 synchronization error: sent without waiting for our reply\r\n"
    )
    assert live.mailbox_messages(ALICE, INBOX) == []
    # A trusted host injecting the same burst is not held to it.
    written = burst(live, "127.0.0.2")
    assert b"250 2.0.0 message accepted" in written and written.endswith(b"221 2.0.0 bye\r\n")
    assert len(live.mailbox_messages(ALICE, INBOX)) == 1


def test_a_client_pipelining_where_it_may_delivers(live: LiveServer) -> None:
    """MAIL, RCPT and DATA in one write (RFC 2920), then the content once the 354 came."""
    assert greeted_after(live) >= PAUSE - 0.05  # the first connection waits for its greeting
    with socket.create_connection(("127.0.0.1", live.port("smtp")), timeout=5) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220 ")
        sock.sendall(b"EHLO c.example\r\n")
        while not (line := reader.readline()).startswith(b"250 "):
            assert line.startswith(b"250-")
        sock.sendall(b"MAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        assert [reader.readline()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
        sock.sendall(b"Subject: waited\r\n\r\nHi.\r\n.\r\nQUIT\r\n")
        assert reader.readline().startswith(b"250 2.0.0 message accepted")
        assert reader.readline() == b"221 2.0.0 bye\r\n"
    assert len(live.mailbox_messages(ALICE, INBOX)) == 1
