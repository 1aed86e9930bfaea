"""IMAP with Python's imaplib against the live server: login (LOGIN, STARTTLS, IMAPS,
AUTHENTICATE), list, select/examine, fetch of every item, search, store, copy/move, expunge,
append, status and the IMAP4rev2 switch."""

from __future__ import annotations

import imaplib
import re
import ssl
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.mail.parse import parse_message
from pillarbox.store.types import DeliveryTarget
from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.live import LiveServer, loopback_config

pytestmark = pytest.mark.listeners("imap", "imaps")

MULTIPART = (
    b"From: Ann <ann@example.net>\r\n"
    b"To: alice@example.org\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?= report\r\n"
    b"Date: Tue, 2 Jan 2024 10:00:00 +0100\r\n"
    b"Message-ID: <mp@example.net>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Caf=C3=A9 numbers attached.\r\n"
    b"--b1\r\n"
    b"Content-Type: application/octet-stream; name=data.bin\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"Content-Disposition: attachment; filename=data.bin\r\n"
    b"\r\n"
    b"AAECAwQ=\r\n"
    b"--b1--\r\n"
)


def plain(n: int) -> bytes:
    return (
        f"From: Sender {n} <s{n}@example.net>\r\nTo: alice@example.org\r\n"
        f"Subject: note {n}\r\nMessage-ID: <n{n}@example.net>\r\n\r\nnote body {n}\r\n"
    ).encode()


def deliver(
    live: LiveServer, raw: bytes, mailbox: str = "INBOX", flags: frozenset[str] = frozenset()
) -> None:
    async def go() -> None:
        account = await live.store.get_account("alice@example.org")
        assert account is not None
        target = DeliveryTarget(account.id, mailbox, flags)
        [result] = await live.store.deliver(raw, parse_message(raw), [target])
        assert result.record is not None

    live.call(go())


def client(live: LiveServer) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", live.port("imap"), timeout=10)
    imap.login("alice@example.org", PASSWORD)
    return imap


def tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def test_login_list_select_logout(live: LiveServer) -> None:
    imap = imaplib.IMAP4("127.0.0.1", live.port("imap"), timeout=10)
    assert "IMAP4REV2" in imap.capabilities and "IDLE" in imap.capabilities
    typ, _ = imap.login("alice@example.org", PASSWORD)
    assert typ == "OK"
    typ, listing = imap.list()
    names = {line.decode().rsplit(" ", 1)[1] for line in listing if isinstance(line, bytes)}
    assert {"INBOX", "Drafts", "Sent", "Junk", "Trash", "Archive"} <= names
    assert any(b"\\Trash" in line for line in listing if isinstance(line, bytes))
    typ, data = imap.select("inbox")
    assert (typ, data) == ("OK", [b"0"])
    assert imap.logout()[0] == "BYE"


def test_fetch_every_item(live: LiveServer) -> None:
    deliver(live, MULTIPART)
    imap = client(live)
    imap.select("INBOX")
    typ, data = imap.fetch(
        "1",
        "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE BINARY.SIZE[2])",
    )
    assert typ == "OK"
    text = data[0].decode() if isinstance(data[0], bytes) else ""
    assert f"RFC822.SIZE {len(MULTIPART)}" in text
    assert '"=?utf-8?q?caf=C3=A9?= report"' in text
    assert '("text" "plain" ("charset" "utf-8") NIL NIL "QUOTED-PRINTABLE"' in text
    assert '"mixed" ("boundary" "b1")' in text
    assert "BINARY.SIZE[2] 5" in text
    typ, data = imap.fetch("1", "(BODY.PEEK[] BODY.PEEK[1] BINARY.PEEK[2] BODY.PEEK[2.MIME])")
    assert typ == "OK"
    literals = [part[1] for part in data if isinstance(part, tuple)]
    assert literals[0] == MULTIPART
    assert literals[1] == b"Caf=C3=A9 numbers attached."
    assert literals[2] == b"\x00\x01\x02\x03\x04"
    assert literals[3].startswith(b"Content-Type: application/octet-stream")
    typ, data = imap.fetch("1", "(FLAGS)")
    assert b"\\Seen" not in data[0]  # every fetch so far was a PEEK
    typ, data = imap.fetch("1", "(RFC822)")
    assert data[0][1] == MULTIPART and b"\\Seen" in data[1]
    typ, data = imap.fetch("1", "(RFC822.HEADER BODY[HEADER.FIELDS (SUBJECT DATE)])")
    literals = [part[1] for part in data if isinstance(part, tuple)]
    assert literals[0] == MULTIPART[: MULTIPART.index(b"\r\n\r\n") + 4]
    assert literals[1] == (
        b"Subject: =?utf-8?q?caf=C3=A9?= report\r\nDate: Tue, 2 Jan 2024 10:00:00 +0100\r\n\r\n"
    )
    imap.logout()


def test_search_store_expunge(live: LiveServer) -> None:
    for n in range(1, 6):
        deliver(live, plain(n))
    deliver(live, MULTIPART)
    imap = client(live)
    imap.select("INBOX")
    assert imap.search(None, "ALL") == ("OK", [b"1 2 3 4 5 6"])
    assert imap.search(None, "SUBJECT", '"note 3"') == ("OK", [b"3"])
    assert imap.search(None, "TEXT", "ann@example.net") == ("OK", [b"6"])
    assert imap.search("UTF-8", "BODY", '"numbers attached"') == ("OK", [b"6"])
    assert imap.search(None, "FROM", "s2@example.net") == ("OK", [b"2"])
    typ, data = imap.store("2:3", "+FLAGS", "(\\Deleted \\Flagged)")
    assert typ == "OK" and len(data) == 2
    assert imap.search(None, "DELETED") == ("OK", [b"2 3"])
    assert imap.search(None, "OR", "FLAGGED", "LARGER", "400") == ("OK", [b"2 3 6"])
    typ, data = imap.expunge()
    assert (typ, data) == ("OK", [b"3", b"2"])
    assert imap.uid("SEARCH", "ALL") == ("OK", [b"1 4 5 6"])
    imap.logout()


def test_copy_move_append_status(live: LiveServer) -> None:
    for n in range(1, 4):
        deliver(live, plain(n))
    imap = client(live)
    assert imap.create("Projects/2024")[0] == "OK"
    imap.select("INBOX")
    typ, data = imap.copy("1:2", "Projects/2024")
    assert typ == "OK" and re.search(rb"\[COPYUID \d+ 1:2 1:2\]", data[0])
    typ, data = imap._simple_command("UID", "MOVE", "3", "Archive")  # type: ignore[attr-defined]
    assert typ == "OK"
    assert imap.uid("SEARCH", "ALL") == ("OK", [b"1 2"])
    typ, data = imap.append("Projects/2024", "(\\Seen)", None, b"Subject: appended\n\nhi\n")
    assert typ == "OK" and re.search(rb"\[APPENDUID \d+ 3\]", data[0])
    typ, data = imap.status("Projects/2024", "(MESSAGES UNSEEN UIDNEXT)")
    assert data == [b"Projects/2024 (MESSAGES 3 UNSEEN 2 UIDNEXT 4)"]
    typ, data = imap.status("Archive", "(MESSAGES)")
    assert data == [b"Archive (MESSAGES 1)"]
    imap.select("Projects/2024", readonly=True)
    typ, data = imap.fetch("3", "(RFC822.SIZE BODY.PEEK[])")
    assert data[0][1] == b"Subject: appended\r\n\r\nhi\r\n"  # bare LF stored as CRLF
    assert imap.rename("Projects", "Work")[0] == "OK"
    assert imap.delete("Work")[0] == "NO"  # it has an inferior
    imap.logout()


def test_starttls_and_implicit_tls(live: LiveServer) -> None:
    imap = imaplib.IMAP4("127.0.0.1", live.port("imap"), timeout=10)
    assert "STARTTLS" in imap.capabilities
    imap.starttls(ssl_context=tls_context())
    assert "STARTTLS" not in imap.capabilities
    imap.login("alice@example.org", PASSWORD)
    imap.logout()
    secure = imaplib.IMAP4_SSL("127.0.0.1", live.port("imaps"), ssl_context=tls_context())
    assert "STARTTLS" not in secure.capabilities
    secure.login("alice@example.org", PASSWORD)
    assert secure.select("INBOX")[0] == "OK"
    secure.logout()


def test_authenticate_plain_and_failure(live: LiveServer) -> None:
    imap = imaplib.IMAP4("127.0.0.1", live.port("imap"), timeout=10)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap.login("alice@example.org", "not the password")
    typ, _ = imap.authenticate("PLAIN", lambda _: f"\0alice@example.org\0{PASSWORD}".encode())
    assert typ == "OK"
    imap.logout()


def test_imap4rev2_enable(live: LiveServer) -> None:
    deliver(live, plain(1))
    imap = client(live)
    typ, _ = imap._simple_command("ENABLE", "IMAP4rev2")  # type: ignore[attr-defined]
    assert typ == "OK"
    imap.select("INBOX")
    typ, _ = imap._simple_command("SEARCH", "ALL")  # type: ignore[attr-defined]
    assert typ == "OK"
    assert imap.untagged_responses.get("ESEARCH")
    imap.logout()


def trained(live: LiveServer) -> tuple[int, int]:
    """Alice's own spam model: how many messages it learnt as ham and as spam."""

    async def go() -> tuple[int, int]:
        account = await live.store.get_account("alice@example.org")
        assert account is not None
        model, _ = await live.store.spam_model(account.id, [])
        return model.ham, model.spam

    return live.call(go())


def note(subject: str) -> bytes:
    """A short message to Alice, told apart by its subject."""
    head = f"From: x@example.net\r\nTo: alice@example.org\r\nSubject: {subject}\r\n"
    return (head + "\r\nBuy now.\r\n").encode()


@pytest.mark.listeners("imap")
def test_move_into_and_out_of_junk_trains_the_spam_filter(live: LiveServer) -> None:
    deliver(live, note("cheap pills"))
    imap = imaplib.IMAP4("127.0.0.1", live.port("imap"))
    imap.login("alice@example.org", PASSWORD)
    imap.select("INBOX")
    assert imap.uid("MOVE", "1", "Junk")[0] == "OK"
    assert trained(live) == (0, 1)
    imap.select("Junk")
    assert imap.uid("MOVE", "1", "INBOX")[0] == "OK"
    assert trained(live) == (1, 0)
    imap.logout()


@pytest.mark.listeners("imap")
def test_junk_keywords_train_the_spam_filter(live: LiveServer) -> None:
    # RFC 9051 §2.3.2's $Junk and $NotJunk, as Thunderbird and Apple Mail set them when the
    # user marks a message, moved or not.
    deliver(live, note("cheap pills"))
    deliver(live, note("minutes"))
    imap = imaplib.IMAP4("127.0.0.1", live.port("imap"))
    imap.login("alice@example.org", PASSWORD)
    imap.select("INBOX")
    assert imap.uid("STORE", "1", "+FLAGS", "($Junk)")[0] == "OK"
    assert trained(live) == (0, 1)
    # Set again, or then moved to Junk as well: trained once.
    assert imap.uid("STORE", "1", "+FLAGS", "($Junk)")[0] == "OK"
    assert imap.uid("COPY", "1", "Junk")[0] == "OK"
    assert trained(live) == (0, 1)
    # Marked not spam after all: the spam training undone, the ham done (any case).
    assert imap.uid("STORE", "1", "FLAGS", "(\\Seen $notjunk)")[0] == "OK"
    assert trained(live) == (1, 0)
    # Clearing a keyword, or setting both at once, says nothing.
    assert imap.uid("STORE", "1", "-FLAGS", "($NotJunk)")[0] == "OK"
    assert imap.uid("STORE", "2", "+FLAGS", "($Junk $NotJunk)")[0] == "OK"
    assert imap.uid("STORE", "2", "+FLAGS", "(\\Flagged)")[0] == "OK"
    assert trained(live) == (1, 0)
    assert imap.uid("STORE", "2", "+FLAGS.SILENT", "($NotJunk)")[0] == "OK"
    assert trained(live) == (1, 0)  # already set on it: no change, nothing learnt
    imap.uid("STORE", "2", "-FLAGS", "($Junk $NotJunk)")
    assert imap.uid("STORE", "2", "+FLAGS.SILENT", "($NotJunk)")[0] == "OK"
    assert trained(live) == (2, 0)
    # Mail our filter filed in Junk carries $Junk; a client marking it read by sending the
    # whole set restates that, and the user judged nothing.
    deliver(live, note("filed"), "Junk", frozenset({"$Junk"}))
    imap.select("Junk")
    [uid] = imap.uid("SEARCH", "SUBJECT", "filed")[1]
    assert imap.uid("STORE", uid, "FLAGS", "(\\Seen $Junk)")[0] == "OK"
    assert trained(live) == (2, 0)
    imap.logout()


def test_one_command_teaches_at_most_policy_learn_max_messages(tmp_path: Path) -> None:
    config = loopback_config(
        tmp_path / "data", only=("imap",), policy=cfg.PolicySection(learn_max_messages=2)
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account("alice@example.org", PASSWORD)
        for n in range(6):
            deliver(live, plain(n))
        imap = imaplib.IMAP4("127.0.0.1", live.port("imap"))
        imap.login("alice@example.org", PASSWORD)
        imap.select("INBOX")
        assert imap.uid("STORE", "1:3", "+FLAGS.SILENT", "($Junk)")[0] == "OK"
        assert trained(live) == (0, 2)  # all three marked, two learnt from
        assert imap.uid("SEARCH", "KEYWORD", "$Junk")[1] == [b"1 2 3"]
        assert imap.uid("MOVE", "4:6", "Junk")[0] == "OK"
        assert trained(live) == (0, 4)  # all three moved, two more learnt from
        imap.select("Junk")
        assert imap.uid("SEARCH", "ALL")[1] == [b"1 2 3"]
        imap.logout()
