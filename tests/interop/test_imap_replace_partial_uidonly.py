"""RFC 8508 REPLACE, RFC 9394 PARTIAL and RFC 9586 UIDONLY driven by real clients against the
live server: imaplib sends REPLACE through its extension hook (``xatom``, the literal as for
APPEND) and reads UIDONLY's UIDFETCH lines as untagged data; imapclient pages a mailbox with
the PARTIAL fetch modifier and parses the answer itself."""

from __future__ import annotations

import imaplib

import pytest
from imapclient import IMAPClient

from pillarbox.mail.parse import parse_message
from pillarbox.store.types import DeliveryTarget
from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.live import LiveServer

pytestmark = pytest.mark.listeners("imap", "imaps")


def note(n: int) -> bytes:
    return (
        f"From: Sender {n} <s{n}@example.net>\r\nTo: alice@example.org\r\n"
        f"Subject: note {n}\r\nMessage-ID: <p{n}@example.net>\r\n\r\nbody {n}\r\n"
    ).encode()


def deliver(live: LiveServer, count: int) -> None:
    async def go() -> None:
        account = await live.store.get_account("alice@example.org")
        assert account is not None
        for n in range(1, count + 1):
            raw = note(n)
            [result] = await live.store.deliver(
                raw, parse_message(raw), [DeliveryTarget(account.id)]
            )
            assert result.record is not None

    live.call(go())


def imaplib_client(live: LiveServer) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", live.port("imap"), timeout=10)
    imap.login("alice@example.org", PASSWORD)
    return imap


def test_imaplib_replaces_a_draft(live: LiveServer) -> None:
    imap = imaplib_client(live)
    assert "REPLACE" in imap.capabilities
    typ, _ = imap.append("Drafts", "(\\Draft)", None, b"Subject: draft 1\r\n\r\nfirst\r\n")
    assert typ == "OK"
    imap.select("Drafts")
    imap.literal = b"Subject: draft 2\r\n\r\nsecond\r\n"  # sent as the command's literal
    typ, _ = imap.xatom("REPLACE", "1", "Drafts", "(\\Draft \\Seen)")
    assert typ == "OK"
    _, appended = imap.response("APPENDUID")
    assert appended[0] is not None and appended[0].split()[1] == b"2"
    _, expunged = imap.response("EXPUNGE")
    assert expunged == [b"1"]
    imap.literal = b"Subject: draft 3\r\n\r\nthird\r\n"
    typ, _ = imap.uid("REPLACE", "2", "Drafts")
    assert typ == "OK"
    typ, data = imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[TEXT])")
    assert typ == "OK"
    assert [item[1] for item in data if isinstance(item, tuple)] == [b"third\r\n"]
    imap.literal = b"Subject: x\r\n\r\n"
    typ, data = imap.uid("REPLACE", "3", "Nowhere")
    assert typ == "NO" and data[0] is not None and data[0].startswith(b"[TRYCREATE]")
    imap.logout()


def test_imaplib_replaces_a_draft_in_a_full_mailbox(live: LiveServer) -> None:
    """The store replaces in one transaction, the quota judged on the net change (RFC 9208
    §4.3.1): with the message quota reached, an APPEND is NO [OVERQUOTA] while a REPLACE of a
    draft, which adds no message, is stored."""
    imap = imaplib_client(live)
    typ, _ = imap.append("Drafts", "(\\Draft)", None, b"Subject: draft 1\r\n\r\nfirst\r\n")
    assert typ == "OK"

    async def fill() -> None:
        account = await live.store.get_account("alice@example.org")
        assert account is not None
        await live.store.set_quota(account.id, None, 1)

    live.call(fill())
    typ, data = imap.append("Drafts", "(\\Draft)", None, b"Subject: more\r\n\r\nmore\r\n")
    assert typ == "NO" and data[0] is not None and data[0].startswith(b"[OVERQUOTA]")
    imap.select("Drafts")
    imap.literal = b"Subject: draft 2\r\n\r\nsecond\r\n"
    typ, _ = imap.uid("REPLACE", "1", "Drafts", "(\\Draft)")
    assert typ == "OK"
    typ, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[TEXT])")
    assert [item[1] for item in data if isinstance(item, tuple)] == [b"second\r\n"]
    imap.logout()


def test_imaplib_partial_search_from_the_end(live: LiveServer) -> None:
    deliver(live, 12)
    imap = imaplib_client(live)
    assert "PARTIAL" in imap.capabilities
    imap.select("INBOX")
    typ, _ = imap.uid("SEARCH", "RETURN", "(COUNT PARTIAL -1:-5)", "ALL")
    assert typ == "OK"
    _, esearch = imap.response("ESEARCH")
    assert esearch[0] is not None
    assert esearch[0].endswith(b"UID PARTIAL (-1:-5 8:12) COUNT 12")
    imap.logout()


def test_imapclient_pages_with_the_partial_fetch_modifier(live: LiveServer) -> None:
    deliver(live, 12)
    client = IMAPClient("127.0.0.1", port=live.port("imap"), ssl=False, timeout=10)
    client.login("alice@example.org", PASSWORD)
    client.select_folder("INBOX")
    pages = [
        # imapclient keeps only the UIDs it named: the whole mailbox's, paged by the server.
        client.fetch(range(1, 13), ["ENVELOPE"], modifiers=[f"PARTIAL -{first}:-{first + 4}"])
        for first in (1, 6, 11)
    ]
    assert [sorted(page) for page in pages] == [[8, 9, 10, 11, 12], [3, 4, 5, 6, 7], [1, 2]]
    subjects = {uid: data[b"ENVELOPE"].subject for page in pages for uid, data in page.items()}
    assert subjects[12] == b"note 12" and subjects[1] == b"note 1"
    client.logout()


def test_imaplib_under_uidonly(live: LiveServer) -> None:
    deliver(live, 3)
    imap = imaplib_client(live)
    assert "UIDONLY" in imap.capabilities
    typ, _ = imap.enable("UIDONLY")
    assert typ == "OK" and imap.response("ENABLED")[1] == [b"UIDONLY"]
    imap.select("INBOX")
    with pytest.raises(imaplib.IMAP4.error, match="UIDREQUIRED"):
        imap.fetch("1", "(FLAGS)")
    typ, _ = imap.uid("STORE", "2", "+FLAGS", "(\\Deleted)")
    assert typ == "OK"
    _, changed = imap.response("UIDFETCH")
    assert changed == [b"2 (FLAGS (\\Deleted \\Recent))"]  # numbered by UID, no UID item
    typ, _ = imap.expunge()
    assert typ == "OK"
    _, vanished = imap.response("VANISHED")
    assert vanished == [b"2"]
    assert imap.response("EXPUNGE")[1] == [None]
    imap.uid("FETCH", "1:*", "(RFC822.SIZE)")
    _, fetched = imap.response("UIDFETCH")
    assert [line.split(b" ", 1)[0] for line in fetched] == [b"1", b"3"]
    imap.logout()
