"""Shared mailboxes through IMAP ACL (RFC 4314) against the live server with imapclient, two
users, on the store ``$PILLARBOX_TEST_STORE`` names (SQLite or PostgreSQL): alice shares
"Support" with bob; bob finds it in the other users' namespace (RFC 2342), reads it with "lr"
but may not delete it or change flags (NO [NOPERM], RFC 5530); with "lrswi" he appends (the
message counts against alice's quota) and marks a message seen, and alice, idling on Support,
hears his flag change; bob, idling on it, hears alice's append. A negative entry (RFC 4314 §2)
takes from bob what "anyone" gives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from pillarbox import config as cfg
from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.live import LiveServer, loopback_config

ALICE = "alice@example.org"
BOB = "bob@example.org"
SHARED = f"Other Users/{ALICE}/Support"
MESSAGE = b"From: carol@example.net\r\nSubject: help\r\n\r\nplease help\r\n"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    imap = cfg.ImapSection(login_without_tls=True)
    with LiveServer(loopback_config(tmp_path / "data", only=["imap"], imap=imap)) as server:
        server.add_domain("example.org")
        server.add_account(ALICE, PASSWORD, quota_messages=3)
        server.add_account(BOB, PASSWORD)
        yield server


def client(live: LiveServer, user: str) -> IMAPClient:
    imap = IMAPClient("127.0.0.1", port=live.port("imap"), ssl=False, timeout=10)
    imap.login(user, PASSWORD)
    return imap


def idle_until(imap: IMAPClient, wanted: object) -> list[object]:
    """IDLE responses until one equals ``wanted`` (each wait bounded by the client timeout)."""
    seen: list[object] = []
    for _ in range(20):
        seen += imap.idle_check(timeout=5)
        if any(wanted == response or _has(response, wanted) for response in seen):
            return seen
    raise AssertionError(f"never saw {wanted!r}: {seen!r}")


def _has(response: object, wanted: object) -> bool:
    return isinstance(response, tuple) and isinstance(wanted, tuple) and response[:2] == wanted


def test_alice_shares_support_with_bob(live: LiveServer) -> None:
    alice, bob = client(live, ALICE), client(live, BOB)
    assert {b"ACL", b"RIGHTS=TEXK"} <= {c.upper() for c in alice.capabilities()}
    alice.create_folder("Support")
    alice.append("Support", MESSAGE)
    # Before any grant the mailbox is as absent as one that does not exist (RFC 4314 §4).
    assert bob.list_folders("", "Other Users/*") == []
    with pytest.raises(IMAPClientError, match=r"NONEXISTENT"):
        bob.select_folder(SHARED)

    alice.setacl("Support", BOB, "lr")
    assert (BOB.encode(), b"lr") in alice.getacl("Support")
    namespace = bob.namespace()
    assert namespace.other == (("Other Users/", "/"),)
    names = [name for _, _, name in bob.list_folders("", "Other Users/*")]
    assert names == [f"Other Users/{ALICE}", SHARED]
    assert bob.select_folder(SHARED)[b"EXISTS"] == 1
    fetched = bob.fetch([1], ["BODY[]", "FLAGS"])[1]
    assert fetched[b"BODY[]"] == MESSAGE
    assert b"\\Seen" not in fetched[b"FLAGS"]  # no "s": reading does not mark it seen
    with pytest.raises(IMAPClientError, match=r"NOPERM"):
        bob.add_flags([1], [b"\\Seen"])
    with pytest.raises(IMAPClientError, match=r"NOPERM"):
        bob.delete_folder(SHARED)
    with pytest.raises(IMAPClientError, match=r"NOPERM"):
        bob.append(SHARED, MESSAGE)
    bob.unselect_folder()

    alice.setacl("Support", BOB, "lrswi")
    bob.select_folder(SHARED)
    bob.append(SHARED, MESSAGE, flags=[b"\\Seen"])
    owner = live.call(live.store.get_account(ALICE))
    assert owner is not None
    quota = live.call(live.store.quota_usage(owner.id))
    assert quota.messages == 2  # bob's append counts against alice
    alice.select_folder("Support")
    alice.idle()
    bob.add_flags([1], [b"\\Seen"])
    idle_until(alice, (1, b"FETCH"))
    alice.idle_done()
    assert alice.get_flags([1])[1] == (b"\\Seen",)  # one set of flags per message, shared

    bob.idle()
    alice.append("Support", MESSAGE)  # the third: alice's quota is now full
    idle_until(bob, (3, b"EXISTS"))
    bob.idle_done()
    with pytest.raises(IMAPClientError, match=r"OVERQUOTA"):
        bob.append(SHARED, MESSAGE)
    alice.logout()
    bob.logout()


def test_a_negative_entry_takes_rights_from_anyone(live: LiveServer) -> None:
    """RFC 4314 §2: alice opens Support to everyone, then takes "w", "i" and "t" back from bob
    with a negative entry: he reads and marks seen, but may not flag, delete or append; once
    she removes the entry, he may."""
    alice, bob = client(live, ALICE), client(live, BOB)
    alice.create_folder("Support")
    alice.append("Support", MESSAGE)
    alice.setacl("Support", "anyone", "lrswit")
    alice.setacl("Support", f"-{BOB}", "wit")
    assert alice.getacl("Support") == [
        (ALICE.encode(), b"lrswipkxteacd"),
        (b"anyone", b"lrswitd"),
        (f"-{BOB}".encode(), b"witd"),
    ]
    bob.select_folder(SHARED)
    assert b"\\Seen" in bob.add_flags([1], [b"\\Seen"])[1]
    for flag in (b"\\Flagged", b"\\Deleted"):
        with pytest.raises(IMAPClientError, match=r"NOPERM"):
            bob.add_flags([1], [flag])
    with pytest.raises(IMAPClientError, match=r"NOPERM"):
        bob.append(SHARED, MESSAGE)

    # An empty rights list removes the entry (§3.1); imapclient would send "" unquoted.
    alice.setacl("Support", f"-{BOB}", '""')
    assert alice.getacl("Support")[-1] == (b"anyone", b"lrswitd")
    bob.unselect_folder()
    bob.select_folder(SHARED)  # rights are read at SELECT (§5.1.1)
    bob.append(SHARED, MESSAGE)
    assert b"\\Flagged" in bob.add_flags([1], [b"\\Flagged"])[1]
    alice.logout()
    bob.logout()
