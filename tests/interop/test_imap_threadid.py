"""RFC 8474 THREADID end to end: mail in over SMTP to the MX (a reply before its parent, one
transaction for two accounts), read back with imapclient: FETCH THREADID, SEARCH THREADID, and
COPY/MOVE keeping the id; each account threads its own copy. ``$PILLARBOX_TEST_STORE`` runs it
on PostgreSQL."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient

from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config

ALICE = "alice@example.org"
BOB = "bob@example.org"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(loopback_config(tmp_path / "data", only=("smtp", "imap"))) as server:
        server.add_domain("example.org")
        server.add_account(ALICE, TEST_PASSWORD)
        server.add_account(BOB, TEST_PASSWORD)
        yield server


def send(live: LiveServer, recipients: list[str], head: str) -> None:
    """One message over SMTP to the MX, as another server would send it."""
    raw = f"From: ann@example.net\r\nTo: {', '.join(recipients)}\r\n{head}\r\nHello.\r\n"
    with smtplib.SMTP("127.0.0.1", live.port("smtp")) as client:
        client.sendmail("ann@example.net", recipients, raw)


def threads(client: IMAPClient) -> dict[int, bytes]:
    """Each message's THREADID by UID (imapclient hands an unknown item over parsed)."""
    fetched = client.fetch(client.search(), ["THREADID"])
    found: dict[int, bytes] = {}
    for uid, data in fetched.items():
        [thread] = data[b"THREADID"]
        found[uid] = thread
    return found


def connect(live: LiveServer, user: str) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=live.port("imap"), ssl=False, timeout=10)
    client.login(user, TEST_PASSWORD)
    return client


def test_threads_over_smtp_and_imap(live: LiveServer) -> None:
    send(
        live,
        [ALICE, BOB],
        "Subject: Re: plan\r\nMessage-ID: <r1@example.net>\r\nIn-Reply-To: <p1@example.net>\r\n"
        "References: <p1@example.net>\r\n",
    )
    send(live, [ALICE, BOB], "Subject: plan\r\nMessage-ID: <p1@example.net>\r\n")
    send(live, [ALICE], "Subject: other\r\nMessage-ID: <o1@example.net>\r\n")

    alice = connect(live, ALICE)
    assert alice.has_capability("OBJECTID")
    alice.select_folder("INBOX")
    mine = threads(alice)
    assert mine[1] == mine[2] != mine[3]  # the parent joined the reply that came first
    assert alice.search(["THREADID", mine[1].decode()]) == [1, 2]
    assert alice.search(["THREADID", mine[3].decode()]) == [3]
    alice.create_folder("Archive/plan")
    alice.copy([1], "Archive/plan")
    alice.move([2], "Archive/plan")
    alice.select_folder("Archive/plan")
    assert threads(alice) == {1: mine[1], 2: mine[1]}
    assert alice.search(["THREADID", mine[1].decode()]) == [1, 2]
    alice.logout()

    bob = connect(live, BOB)
    bob.select_folder("INBOX")
    his = threads(bob)
    assert his[1] == his[2]
    assert his[1] not in set(mine.values())  # never shared between accounts
    assert bob.search(["THREADID", mine[1].decode()]) == []
    bob.logout()
