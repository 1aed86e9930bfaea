"""NOTIFY (RFC 5465) and ESORT PARTIAL (RFC 5267 §4.4) with Python's imaplib and imapclient
against the live server: mail sent with smtplib reaches a NOTIFY session as a STATUS of its
(non-selected) INBOX with no command in progress (pushed: no IMAP session polls); a rename
made by another client (imapclient) reaches it as LIST with OLDNAME; PARTIAL pages of a SORT
are exactly the slices of the whole sorted result."""

from __future__ import annotations

import imaplib
import random
import re
import smtplib

import pytest
from imapclient import IMAPClient

from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.live import LiveServer
from pillarbox.testing.push import unasked_line

pytestmark = pytest.mark.listeners("imap", "smtp")

USER = "alice@example.org"


def notify_session(live: LiveServer, *groups: str) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", live.port("imap"), timeout=10)
    imap.login(USER, PASSWORD)
    assert "NOTIFY" in imap.capabilities
    typ, data = imap.xatom("NOTIFY", "SET", *groups)
    assert typ == "OK", data
    return imap


def test_smtp_delivery_to_a_non_selected_inbox_is_a_status_unasked(
    live: LiveServer,
) -> None:
    imap = notify_session(
        live,
        "(selected (MessageNew MessageExpunge))",
        "(inboxes (MessageNew MessageExpunge))",
        "(personal (MailboxName SubscriptionChange))",
    )
    assert imap.select("Archive")[0] == "OK"
    raw = (
        b"From: someone@example.net\r\nTo: alice@example.org\r\nSubject: pushed\r\n"
        b"Message-ID: <pushed@example.net>\r\n\r\nhello\r\n"
    )
    with smtplib.SMTP("127.0.0.1", live.port("smtp"), local_hostname="client.example.net") as mx:
        mx.sendmail("someone@example.net", [USER], raw)
    assert unasked_line(imap) == b"* STATUS INBOX (UIDNEXT 2 MESSAGES 1)"
    imap.logout()


def test_another_clients_rename_reaches_a_notify_session(live: LiveServer) -> None:
    other = IMAPClient("127.0.0.1", port=live.port("imap"), ssl=False, timeout=10)
    other.login(USER, PASSWORD)
    other.create_folder("Projects")
    other.create_folder("Projects/2024")
    imap = notify_session(live, "(personal (MailboxName SubscriptionChange))")
    other.rename_folder("Projects", "Done")
    line = unasked_line(imap)
    # Its child is renamed with it and gets no event of its own (RFC 5465 §5.4).
    assert line == b'* LIST (\\HasChildren) "/" Done (OLDNAME (Projects))'
    other.subscribe_folder("Done/2024")
    assert unasked_line(imap) == b'* LIST (\\HasNoChildren \\Subscribed) "/" Done/2024'
    # The session's own changes are not echoed (RFC 5465 §5).
    assert imap.create("Mine")[0] == "OK"
    assert imap.noop()[0] == "OK" and imap.response("LIST") == ("LIST", [None])
    other.logout()
    imap.logout()


def _partial(imap: imaplib.IMAP4, low: int, high: int, criteria: str) -> tuple[bytes, list[int]]:
    typ, _ = imap.uid("SORT", f"RETURN (PARTIAL {low}:{high})", criteria, "UTF-8", "ALL")
    assert typ == "OK"
    _, [esearch] = imap.response("ESEARCH")
    assert isinstance(esearch, bytes)
    found = re.fullmatch(rb'\(TAG "[^"]+"\) UID PARTIAL \((\d+:\d+) (NIL|[\d,:]+)\)', esearch)
    assert found is not None, esearch
    if found[2] == b"NIL":
        return found[1], []
    return found[1], [n for run in _runs(found[2]) for n in run]


def _runs(text: bytes) -> list[list[int]]:
    """A sequence set in the order written (ESORT keeps the sort order, RFC 5267 §3.2)."""
    runs = []
    for item in text.decode().split(","):
        low, _, high = item.partition(":")
        first, last = int(low), int(high or low)
        runs.append(list(range(first, last + 1)))
    return runs


def test_partial_pages_are_slices_of_the_sorted_result(live: LiveServer) -> None:
    words = ["apple", "mango", "zebra", "kiwi", "fig", "lime", "pear", "plum", "date", "yam"]
    rng = random.Random(5267)
    client = IMAPClient("127.0.0.1", port=live.port("imap"), ssl=False, timeout=10)
    client.login(USER, PASSWORD)
    for n in range(37):
        subject = f"{rng.choice(words)} {rng.randrange(5)}"
        client.append(
            "INBOX", f"Subject: {subject}\r\nFrom: x{n}@example.net\r\n\r\nb\r\n".encode()
        )
    client.logout()
    imap = imaplib.IMAP4("127.0.0.1", live.port("imap"), timeout=10)
    imap.login(USER, PASSWORD)
    imap.select("INBOX", readonly=True)
    for criteria in ("(SUBJECT)", "(REVERSE FROM)", "(SIZE SUBJECT)"):
        typ, [whole] = imap.uid("SORT", criteria, "UTF-8", "ALL")
        assert typ == "OK" and isinstance(whole, bytes)
        full = [int(n) for n in whole.split()]
        assert sorted(full) == list(range(1, 38))
        pages = []
        for low in range(1, 38, 8):
            window, page = _partial(imap, low, low + 7, criteria)
            assert window == b"%d:%d" % (low, low + 7)
            assert page == full[low - 1 : low + 7]
            pages += page
        assert pages == full
        assert _partial(imap, 38, 50, criteria) == (b"38:50", [])
    imap.logout()
