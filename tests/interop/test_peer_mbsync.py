"""IMAP synchronised across devices, with mbsync (isync) as the devices.

Two Maildirs are two devices of one user: one syncs over implicit TLS (imaps), the other over
STARTTLS, both trusting our self-signed certificate through ``CertificateFile``. Mail arrives by
SMTP and changes happen on every side (a flag set on a device, a message deleted on the server
and on a device, a folder created on a device); after each round of syncs the server (read with
imaplib) and both devices hold the same folders, messages and flags. mbsync logs in with
SCRAM-SHA-256 (through Cyrus SASL), enables COMPRESS=DEFLATE and pipelines its commands.
"""

from __future__ import annotations

import imaplib
import ssl
from email.parser import BytesHeaderParser
from pathlib import Path

import pytest

from pillarbox.net.tls import tls_paths
from pillarbox.testing.live import TEST_PASSWORD, LiveServer
from pillarbox.testing.peers import require, run

pytestmark = pytest.mark.listeners("smtp", "imap", "imaps")

USER = "alice@example.org"

#: Maildir info flags (the letters after ``:2,``) and the IMAP system flags they stand for.
MAILDIR_FLAGS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen"}

#: {folder: sorted [(subject, flags)]}: what a device or the server holds.
State = dict[str, list[tuple[str, frozenset[str]]]]


class Device:
    """One Maildir kept in step with the account by mbsync."""

    def __init__(self, root: Path, live: LiveServer, *, starttls: bool) -> None:
        self.mail = root / "mail"
        self.mail.mkdir(parents=True)
        self.rc = root / "mbsyncrc"
        port, ssl_type = (
            (live.port("imap"), "STARTTLS") if starttls else (live.port("imaps"), "IMAPS")
        )
        # The certificate names localhost (and the IP, which isync 1.4 does not check).
        self.rc.write_text(
            f"IMAPAccount pillarbox\nHost localhost\nPort {port}\nUser {USER}\n"
            f'Pass "{TEST_PASSWORD}"\nSSLType {ssl_type}\n'
            f"CertificateFile {tls_paths(live.config)[0]}\n\n"
            "IMAPStore far\nAccount pillarbox\n\n"
            f"MaildirStore near\nPath {self.mail}/\nInbox {self.mail}/INBOX\n"
            "SubFolders Verbatim\n\n"
            "Channel everything\nFar :far:\nNear :near:\nPatterns *\nCreate Both\n"
            "Expunge Both\nSyncState *\n"
        )

    def sync(self) -> None:
        result = run([require("mbsync", "isync"), "-c", str(self.rc), "-a"], timeout=30)
        assert "rror" not in result.stderr, result.stderr

    def state(self) -> State:
        found: State = {}
        for cur in sorted(self.mail.rglob("cur")):
            folder = cur.parent.relative_to(self.mail).as_posix()
            found[folder] = sorted(
                (subject_of(path.read_bytes()), maildir_flags(path.name))
                for path in [*cur.iterdir(), *(cur.parent / "new").iterdir()]
            )
        return found

    def find(self, subject: str) -> Path:
        [path] = [p for p in self.mail.glob("INBOX/*/*") if subject_of(p.read_bytes()) == subject]
        return path

    def set_flags(self, subject: str, letters: str) -> None:
        """What a mail program does to flag a message in a Maildir: rename it into cur/."""
        path = self.find(subject)
        base, _, info = path.name.partition(":2,")
        path.rename(path.parent.parent / "cur" / f"{base}:2,{''.join(sorted(info + letters))}")

    def add_folder(self, name: str, subject: str) -> None:
        folder = self.mail / name
        for sub in ("cur", "new", "tmp"):
            (folder / sub).mkdir(parents=True)
        (folder / "cur" / "1.local:2,S").write_bytes(
            f"From: {USER}\r\nTo: {USER}\r\nSubject: {subject}\r\n\r\nA note.\r\n".encode()
        )


def subject_of(raw: bytes) -> str:
    return str(BytesHeaderParser().parsebytes(raw)["Subject"])


def maildir_flags(name: str) -> frozenset[str]:
    return frozenset(MAILDIR_FLAGS[c] for c in name.partition(":2,")[2] if c in MAILDIR_FLAGS)


def server_state(live: LiveServer) -> State:
    context = ssl.create_default_context(cafile=str(tls_paths(live.config)[0]))
    with imaplib.IMAP4_SSL("localhost", live.port("imaps"), ssl_context=context) as imap:
        imap.login(USER, TEST_PASSWORD)
        typ, listed = imap.list()
        assert typ == "OK"
        found: State = {}
        for line in listed:
            assert isinstance(line, bytes)
            name = line.rsplit(b' "/" ', 1)[1].decode().strip('"')
            typ, data = imap.select(f'"{name}"', readonly=True)
            assert typ == "OK"
            messages = []
            if data != [b"0"]:
                typ, fetched = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
                assert typ == "OK"
                for item in fetched:
                    if isinstance(item, tuple):
                        flags = imaplib.ParseFlags(item[0])
                        kept = frozenset(f.decode() for f in flags) & set(MAILDIR_FLAGS.values())
                        messages.append((subject_of(item[1]), kept))
            found[name] = sorted(messages)
        return found


def expunge_on_server(live: LiveServer, subject: str) -> None:
    with imaplib.IMAP4("127.0.0.1", live.port("imap")) as imap:
        imap.starttls(ssl.create_default_context(cafile=str(tls_paths(live.config)[0])))
        imap.login(USER, TEST_PASSWORD)
        imap.select("INBOX")
        typ, data = imap.uid("SEARCH", "SUBJECT", f'"{subject}"')
        assert typ == "OK" and len(data[0].split()) == 1
        imap.uid("STORE", data[0].decode(), "+FLAGS.SILENT", "(\\Deleted)")
        typ, _ = imap.expunge()
        assert typ == "OK"


def test_two_devices_and_the_server_agree_after_changes_on_every_side(
    tls_live: LiveServer, tmp_path: Path
) -> None:
    require("mbsync", "isync")
    laptop = Device(tmp_path / "laptop", tls_live, starttls=False)
    phone = Device(tmp_path / "phone", tls_live, starttls=True)
    tls_live.deliver(USER, "one")
    tls_live.deliver(USER, "two")
    laptop.sync()
    phone.sync()
    first = server_state(tls_live)
    assert first["INBOX"] == [("one", frozenset()), ("two", frozenset())]
    assert {"Sent", "Trash", "Drafts", "Junk"} <= first.keys()
    assert laptop.state() == phone.state() == first

    # Round two: a flag and a folder on the laptop, a deletion and new mail on the server.
    laptop.set_flags("one", "F")
    laptop.add_folder("Projects/Plans", "plan")
    expunge_on_server(tls_live, "two")
    tls_live.deliver(USER, "three")
    laptop.sync()
    phone.sync()
    # The server made the parent "Projects" when the laptop created Projects/Plans (RFC 9051
    # §6.3.4); the laptop listed the folders before that, so it learns of it now.
    laptop.sync()
    second = server_state(tls_live)
    assert second["INBOX"] == [("one", frozenset({"\\Flagged"})), ("three", frozenset())]
    assert second["Projects/Plans"] == [("plan", frozenset({"\\Seen"}))]
    assert second["Projects"] == []
    assert laptop.state() == phone.state() == second

    # Round three: the phone reads one message and deletes another; the laptop follows.
    phone.set_flags("three", "S")
    phone.find("one").unlink()
    phone.sync()
    laptop.sync()
    third = server_state(tls_live)
    assert third["INBOX"] == [("three", frozenset({"\\Seen"}))]
    assert laptop.state() == phone.state() == third


def move_on_server(live: LiveServer, subject: str, folder: str) -> None:
    with imaplib.IMAP4("127.0.0.1", live.port("imap")) as imap:
        imap.starttls(ssl.create_default_context(cafile=str(tls_paths(live.config)[0])))
        imap.login(USER, TEST_PASSWORD)
        imap.select("INBOX")
        typ, data = imap.uid("SEARCH", "SUBJECT", f'"{subject}"')
        assert typ == "OK" and len(data[0].split()) == 1
        typ, _ = imap.uid("MOVE", data[0].decode(), folder)
        assert typ == "OK"


def test_moves_on_both_sides_and_flags_from_two_devices_converge_without_duplicates(
    tls_live: LiveServer, tmp_path: Path
) -> None:
    """A move on the server (RFC 6851 MOVE), a move on a device (a Maildir file re-filed under
    a new name, as a mail program files it), and two devices flagging one message differently
    between syncs: after two rounds every side holds each message once, where it was moved,
    with both devices' flags."""
    require("mbsync", "isync")
    laptop = Device(tmp_path / "laptop", tls_live, starttls=False)
    phone = Device(tmp_path / "phone", tls_live, starttls=True)
    for subject in ("a", "b", "c"):
        tls_live.deliver(USER, subject)
    laptop.sync()
    phone.sync()

    move_on_server(tls_live, "a", "Archive")
    laptop.set_flags("b", "F")
    phone.set_flags("b", "R")
    moved = phone.find("c")
    (phone.mail / "Archive" / "cur" / "2.phone:2,S").write_bytes(moved.read_bytes())
    moved.unlink()
    for _ in range(2):
        laptop.sync()
        phone.sync()

    state = server_state(tls_live)
    assert state["INBOX"] == [("b", frozenset({"\\Flagged", "\\Answered"}))]
    assert state["Archive"] == [("a", frozenset()), ("c", frozenset({"\\Seen"}))]
    assert laptop.state() == phone.state() == state
