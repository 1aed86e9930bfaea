"""Quota warnings on the live server: mail over SMTP that takes an account past 80 % of its
quota brings one warning into its INBOX, the next delivery none, crossing 95 % another; a
warning reaches a mailbox the delivery filled (it is stored beyond the quota it warns about)
and an IMAP client reads it like any message. An IMAP APPEND, MULTIAPPEND or COPY past a
threshold warns when it happens, once. ``$PILLARBOX_TEST_STORE`` runs it on PostgreSQL."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from imapclient import IMAPClient

from pillarbox import config as cfg
from pillarbox.mail.parse import parse_message
from pillarbox.store.types import INBOX
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config

ALICE = "alice@example.org"
WARNING = b"Subject: Your mailbox is "


@contextmanager
def serve(tmp_path: Path, thresholds: tuple[int, ...]) -> Iterator[LiveServer]:
    config = loopback_config(
        tmp_path / "data",
        only=("smtp", "imap"),
        quota=cfg.QuotaSection(warning_thresholds=thresholds),
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account(ALICE, TEST_PASSWORD)
        yield live


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    with serve(tmp_path, (80, 95)) as server:
        yield server


def set_quota_and_fill(live: LiveServer, messages: int, filled: int) -> None:
    """A quota of ``messages`` messages, ``filled`` of them taken (as an IMAP APPEND would)."""

    async def go() -> None:
        account = await live.store.get_account(ALICE)
        assert account is not None
        await live.store.set_quota(account.id, None, messages)
        inbox = await live.store.get_mailbox(account.id, INBOX)
        for n in range(filled):
            raw = f"Subject: old {n}\r\n\r\nkept\r\n".encode()
            await live.store.append(inbox.id, raw, parse_message(raw))

    live.call(go())


def warnings(live: LiveServer) -> list[bytes]:
    return [m for m in live.mailbox_messages(ALICE, INBOX) if WARNING in m]


def test_one_warning_per_threshold_crossed(live: LiveServer) -> None:
    set_quota_and_fill(live, 20, 15)  # 75 %
    live.deliver(ALICE, "sixteenth")  # 16 of 20: 80 %
    [first] = warnings(live)
    assert b"Subject: Your mailbox is 80% full\r\n" in first
    assert b"From: Postmaster <postmaster@example.org>\r\n" in first
    assert b"Auto-Submitted: auto-generated\r\n" in first
    assert first.startswith(b"Return-Path: <>\r\nDelivered-To: alice@example.org\r\n")
    assert b"messages: 16 of 20 (80%)" in first
    live.deliver(ALICE, "eighteenth")  # the warning was the 17th: 18 of 20, still past 80 %
    assert len(warnings(live)) == 1
    live.deliver(ALICE, "nineteenth")  # 19 of 20: 95 %
    second = warnings(live)[1]
    assert b"Subject: Your mailbox is 95% full\r\n" in second
    assert len(live.mailbox_messages(ALICE, INBOX)) == 20
    # Full now: the next message (smtplib announces its SIZE=, RFC 1870) is refused at RCPT.
    with (
        smtplib.SMTP("127.0.0.1", live.port("smtp")) as client,
        pytest.raises(smtplib.SMTPRecipientsRefused),
    ):
        client.sendmail("friend@example.net", [ALICE], b"Subject: more\r\n\r\nHi.\r\n")
    assert len(warnings(live)) == 2
    assert live.server.context is not None
    registry = live.server.context.metrics.registry
    assert registry.get_sample_value("pillarbox_quota_warnings_total") == 2


def test_a_drop_below_and_a_new_crossing_warn_again(live: LiveServer) -> None:
    set_quota_and_fill(live, 20, 15)
    live.deliver(ALICE, "to 80 %")
    assert len(warnings(live)) == 1
    client = IMAPClient("127.0.0.1", port=live.port("imap"), ssl=False, timeout=10)
    client.login(ALICE, TEST_PASSWORD)
    client.select_folder("INBOX")
    client.delete_messages(client.search(["SUBJECT", "old"])[:10])  # 7 of 20 left
    client.expunge()
    live.deliver(ALICE, "below again")  # 8 of 20: the level drops, silently
    assert len(warnings(live)) == 1
    for n in range(8):  # 16 of 20 at the last
        live.deliver(ALICE, f"filling {n}")
    assert len(warnings(live)) == 2
    # The warning is mail like any other to the account's own client.
    client.noop()
    uids = client.search(["SUBJECT", "Your mailbox is 80% full"])
    assert len(uids) == 2
    fetched = client.fetch(uids[-1:], ["BODY[TEXT]"])[uids[-1]][b"BODY[TEXT]"]
    assert b"Trash and Junk" in fetched
    client.logout()


def test_warning_is_stored_in_a_mailbox_the_delivery_filled(tmp_path: Path) -> None:
    with serve(tmp_path, (100,)) as live:
        set_quota_and_fill(live, 3, 2)
        live.deliver(ALICE, "the last that fits")  # 3 of 3: 100 %
        [warning] = warnings(live)
        assert b"Subject: Your mailbox is 100% full\r\n" in warning
        assert len(live.mailbox_messages(ALICE, INBOX)) == 4  # one beyond the quota


def imap_login(live: LiveServer) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=live.port("imap"), ssl=False, timeout=10)
    client.login(ALICE, TEST_PASSWORD)
    return client


def test_an_imap_append_past_a_threshold_warns_at_once(live: LiveServer) -> None:
    set_quota_and_fill(live, 20, 15)  # 75 %
    client = imap_login(live)
    client.append("Drafts", b"Subject: draft\r\n\r\nmine\r\n")  # 16 of 20: 80 %
    [warning] = warnings(live)
    assert b"Subject: Your mailbox is 80% full\r\n" in warning
    assert b"messages: 16 of 20 (80%)" in warning
    client.append("Archive", b"Subject: kept\r\n\r\nmine\r\n")  # 18 of 20: still past 80 %
    assert len(warnings(live)) == 1
    client.select_folder("INBOX")
    assert client.search(["SUBJECT", "Your mailbox is 80% full"]) != []
    client.logout()


def test_an_imap_copy_past_a_threshold_warns_at_once(live: LiveServer) -> None:
    set_quota_and_fill(live, 20, 15)
    client = imap_login(live)
    client.select_folder("INBOX")
    client.move([1, 2], "Trash")  # within the account: usage unchanged, 75 %
    assert warnings(live) == []
    client.copy([3], "Archive")  # 16 of 20: 80 %
    [warning] = warnings(live)
    assert b"messages: 16 of 20 (80%)" in warning
    client.append("INBOX", b"Subject: more\r\n\r\nmine\r\n")  # 18 of 20
    assert len(warnings(live)) == 1
    client.logout()


def test_a_multiappend_past_two_thresholds_warns_once_of_the_higher(live: LiveServer) -> None:
    """RFC 3502 over a raw socket: imapclient's ``multiappend`` puts two spaces between its
    literals, which the grammar (and so this server) refuses."""
    set_quota_and_fill(live, 20, 15)
    messages = [f"Subject: {n}\r\n\r\nmine\r\n".encode() for n in range(4)]  # 19 of 20
    command = f'a LOGIN "{ALICE}" "{TEST_PASSWORD}"\r\nb APPEND Archive'.encode()
    for message in messages:  # RFC 7888 LITERAL+: no continuation to wait for
        command += b" {%d+}\r\n" % len(message) + message
    with socket.create_connection(("127.0.0.1", live.port("imap")), timeout=10) as sock:
        sock.sendall(command + b"\r\nc LOGOUT\r\n")
        replies = b""
        while chunk := sock.recv(65536):
            replies += chunk
    assert b"\r\nb OK [APPENDUID " in replies
    [warning] = warnings(live)
    assert b"Subject: Your mailbox is 95% full\r\n" in warning


def test_an_append_into_a_shared_mailbox_warns_its_owner(live: LiveServer) -> None:
    """RFC 4314: the message counts in the owner's quota, so the owner is warned."""
    bob = "bob@example.org"
    live.add_account(bob, TEST_PASSWORD)

    async def share() -> None:
        owner, grantee = await live.store.get_account(ALICE), await live.store.get_account(bob)
        assert owner is not None and grantee is not None
        box = await live.store.create_mailbox(owner.id, "Support")
        await live.store.set_acl(box.id, grantee.id, "lri")

    live.call(share())
    set_quota_and_fill(live, 20, 15)
    client = IMAPClient("127.0.0.1", port=live.port("imap"), ssl=False, timeout=10)
    client.login(bob, TEST_PASSWORD)
    client.append(f"Other Users/{ALICE}/Support", b"Subject: for alice\r\n\r\nhi\r\n")
    [warning] = warnings(live)  # 16 of 20, in alice's INBOX
    assert b"To: alice@example.org\r\n" in warning and b"messages: 16 of 20 (80%)" in warning
    assert live.mailbox_messages(bob, INBOX) == []
    client.logout()
