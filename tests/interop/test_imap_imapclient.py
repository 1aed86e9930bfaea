"""IMAP with imapclient against the live server: the library mail programs are built on.
IDLE (a delivery shows up unasked), two clients observing each other's changes, and
the everyday folder/message operations through imapclient's own parsing."""

from __future__ import annotations

import pytest
from imapclient import IMAPClient

from pillarbox.mail.parse import parse_message
from pillarbox.store.types import DeliveryTarget
from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.live import LiveServer
from pillarbox.testing.push import PUSH_WAIT

pytestmark = pytest.mark.listeners("imap", "imaps")


def message(n: int) -> bytes:
    return (
        f"From: Sender {n} <s{n}@example.net>\r\nTo: alice@example.org\r\n"
        f"Subject: hello {n}\r\nMessage-ID: <h{n}@example.net>\r\n\r\nbody {n}\r\n"
    ).encode()


def deliver(live: LiveServer, raw: bytes) -> None:
    async def go() -> None:
        account = await live.store.get_account("alice@example.org")
        assert account is not None
        [result] = await live.store.deliver(raw, parse_message(raw), [DeliveryTarget(account.id)])
        assert result.record is not None

    live.call(go())


def connect(live: LiveServer) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=live.port("imap"), ssl=False, timeout=10)
    client.login("alice@example.org", PASSWORD)
    return client


def test_folders_and_messages(live: LiveServer) -> None:
    for n in range(1, 4):
        deliver(live, message(n))
    client = connect(live)
    assert b"MOVE" in client.capabilities() and client.has_capability("UIDPLUS")
    folders = {name: flags for flags, _, name in client.list_folders()}
    assert b"\\Sent" in folders["Sent"] and b"\\HasNoChildren" in folders["INBOX"]
    assert client.find_special_folder(b"\\Junk") == "Junk"
    client.create_folder("Reports/2024")
    assert client.folder_exists("Reports/2024")
    selected = client.select_folder("INBOX")
    assert selected[b"EXISTS"] == 3 and selected[b"UIDNEXT"] == 4
    data = client.fetch([1, 2, 3], ["ENVELOPE", "FLAGS", "RFC822.SIZE", "BODY.PEEK[TEXT]"])
    assert data[2][b"ENVELOPE"].subject == b"hello 2"
    assert data[2][b"ENVELOPE"].from_[0].host == b"example.net"
    assert data[3][b"BODY[TEXT]"] == b"body 3\r\n"
    assert data[1][b"RFC822.SIZE"] == len(message(1))
    assert client.search(["SUBJECT", "hello 2"]) == [2]
    client.add_flags([1], [b"\\Seen", b"$Label"])
    assert set(client.get_flags([1])[1]) >= {b"\\Seen", b"$Label"}
    client.remove_flags([1], [b"$Label"])
    assert b"$Label" not in client.get_flags([1])[1]
    client.copy([1], "Reports/2024")
    client.move([2], "Archive")
    assert client.search(["ALL"]) == [1, 3]
    client.delete_messages([3])
    client.expunge()
    assert client.search(["ALL"]) == [1]
    uid = client.append("Drafts", b"Subject: draft\r\n\r\nsoon\r\n", flags=[b"\\Draft"])
    assert uid is not None
    status = client.folder_status("Reports/2024", ["MESSAGES", "UNSEEN"])
    assert status == {b"MESSAGES": 1, b"UNSEEN": 0}
    client.logout()


def test_idle_sees_a_delivery_unasked(live: LiveServer) -> None:
    client = connect(live)
    client.select_folder("INBOX")
    client.idle()
    deliver(live, message(1))
    responses = client.idle_check(timeout=PUSH_WAIT)
    client.idle_done()
    assert (1, b"EXISTS") in responses
    client.logout()


def test_two_clients_observe_each_other(live: LiveServer) -> None:
    for n in range(1, 4):
        deliver(live, message(n))
    first, second = connect(live), connect(live)
    first.select_folder("INBOX")
    second.select_folder("INBOX")
    second.idle()
    first.add_flags([2], [b"\\Flagged"])
    seen = second.idle_check(timeout=2.0)
    assert any(r[0] == 2 and r[1] == b"FETCH" for r in seen), seen
    second.idle_done()
    # The other client's expunge reaches the first at its next command (here NOOP).
    second.delete_messages([1])
    second.expunge()
    _, updates = first.noop()
    assert (1, b"EXPUNGE") in updates
    assert first.search(["ALL"]) == [2, 3]  # imapclient speaks UIDs
    assert b"\\Flagged" in first.get_flags([2])[2]
    first.append("INBOX", message(9))
    _, updates = second.noop()
    assert (3, b"EXISTS") in updates
    first.logout()
    second.logout()


def test_a_move_within_the_mailbox_is_one_modseq_to_another_client(live: LiveServer) -> None:
    """RFC 6851 §4.4 with RFC 7162: a MOVE within INBOX takes one MODSEQ, the copies' and the
    removals'; a second QRESYNC client sees the removals as VANISHED and the copies as new,
    and resynchronising from the MODSEQ before the move finds exactly that move."""
    for n in range(1, 4):
        deliver(live, message(n))
    mover, watcher = connect(live), connect(live)
    for client in (mover, watcher):
        client.enable("QRESYNC")
    before = watcher.select_folder("INBOX")[b"HIGHESTMODSEQ"]
    mover.select_folder("INBOX")
    mover.move([1, 2], "INBOX")
    _, updates = watcher.noop()
    assert (b"VANISHED", b"1:2") in updates and (3, b"EXISTS") in updates, updates
    changed = watcher.fetch(range(1, 10), ["FLAGS"], modifiers=[f"CHANGEDSINCE {before}"])
    assert sorted(changed) == [4, 5]
    assert {data[b"MODSEQ"] for data in changed.values()} == {(before + 1,)}
    status = watcher.folder_status("INBOX", [b"HIGHESTMODSEQ"])
    assert status[b"HIGHESTMODSEQ"] == before + 1
    mover.logout()
    watcher.logout()


def test_the_selected_mailbox_follows_a_rename_of_its_parent(live: LiveServer) -> None:
    """The phone has "Trips/2024" selected; the laptop renames "Trips" to "Travel" (RFC 9051
    §6.3.6: inferiors go with it). The phone's session holds the mailbox by id, as Dovecot:
    it goes on under the new name — the laptop's delivery and flag change reach it, STATUS
    and APPEND by the new name are the selected mailbox (its \\Recent, its EXISTS), the old
    name is gone, a SELECT of the new one finds the same mailbox — and the laptop's DELETE
    of "Travel/2024" still ends it (BYE)."""
    laptop, phone = connect(live), connect(live)
    laptop.create_folder("Trips/2024")
    laptop.append("Trips/2024", message(1))
    selected = phone.select_folder("Trips/2024")
    assert selected[b"EXISTS"] == 1 and selected[b"RECENT"] == 1
    laptop.rename_folder("Trips", "Travel")
    phone.idle()
    laptop.append("Travel/2024", message(2))
    seen: list[tuple[object, ...]] = []
    while (2, b"EXISTS") not in seen:
        more = phone.idle_check(timeout=5.0)
        assert more, seen
        seen += more
    laptop.select_folder("Travel/2024")  # after the phone took the new message's \Recent
    laptop.add_flags([1], [b"\\Flagged"])
    while not any(response[1] == b"FETCH" for response in seen):
        more = phone.idle_check(timeout=5.0)
        assert more, seen
        seen += more
    phone.idle_done()
    assert phone.folder_status("Travel/2024", ["MESSAGES", "RECENT"]) == {
        b"MESSAGES": 2,
        b"RECENT": 2,  # this session's \Recent: the selected mailbox's (RFC 3501 §6.3.10)
    }
    phone.append("Travel/2024", message(3))
    assert phone.search(["ALL"]) == [1, 2, 3]  # the APPEND's EXISTS came with its response
    assert phone.folder_exists("Travel/2024") and not phone.folder_exists("Trips/2024")
    again = phone.select_folder("Travel/2024")
    assert again[b"UIDVALIDITY"] == selected[b"UIDVALIDITY"] and again[b"EXISTS"] == 3
    laptop.unselect_folder()
    laptop.delete_folder("Travel/2024")
    with pytest.raises(IMAPClient.AbortError):  # BYE, then the server closes
        phone.noop()
    laptop.logout()
