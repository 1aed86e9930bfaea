"""METADATA (RFC 5464) against the live server with imapclient and imaplib (raw commands: neither
has METADATA methods), on the store ``$PILLARBOX_TEST_STORE`` names (SQLite or PostgreSQL):
values with 8-bit and NUL octets (literal8) come back exactly; entries follow RENAME and die
with DELETE; the limits from ``[imap]`` are refused with RFC 5464's codes and change nothing;
another client's SETMETADATA reaches a NOTIFY session (RFC 5465 §5.6, §5.7) unasked."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient
from imapclient.imapclient import _literal

from pillarbox import config as cfg
from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.live import LiveServer, loopback_config
from pillarbox.testing.push import unasked_line

USER = "alice@example.org"
ADMIN = "mailto:postmaster@example.org"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    imap = cfg.ImapSection(
        login_without_tls=True,
        metadata_admin=ADMIN,
        metadata_max_value_size=1024,
        metadata_max_entries=10,
        metadata_max_total=4096,
    )
    with LiveServer(loopback_config(tmp_path / "data", only=["imap"], imap=imap)) as server:
        server.add_domain("example.org")
        server.add_account(USER, PASSWORD)
        yield server


def client(live: LiveServer) -> IMAPClient:
    imap = IMAPClient("127.0.0.1", port=live.port("imap"), ssl=False, timeout=10)
    imap.login(USER, PASSWORD)
    return imap


def command(imap: IMAPClient, name: bytes, *args: bytes) -> tuple[str, list[object]]:
    """A raw command (8-bit and ``_literal`` arguments go as literals); (result, data)."""
    typ, data = imap._raw_command(name, list(args), uid=False)
    return typ, data


def metadata(imap: IMAPClient, mailbox: bytes, *entries: bytes) -> list[object]:
    """The untagged METADATA data of a GETMETADATA (imaplib keeps the response codes of
    earlier replies, [METADATA …], under the same name: dropped first)."""
    imap._imap.untagged_responses.pop("METADATA", None)
    typ, data = command(imap, b"GETMETADATA", mailbox, b"(" + b" ".join(entries) + b")")
    assert typ == "OK", data
    _, found = imap._imap._untagged_response(typ, data, "METADATA")
    return list(found)


def test_capabilities_and_server_entries(live: LiveServer) -> None:
    imap = client(live)
    assert {b"METADATA", b"METADATA-SERVER"} <= set(imap.capabilities())
    assert metadata(imap, b'""', b"/shared/admin") == [
        b'"" (/shared/admin "' + ADMIN.encode() + b'")'
    ]
    typ, data = command(imap, b"SETMETADATA", b'""', b'(/shared/admin "mailto:x@example.org")')
    assert (typ, data) == ("NO", [b"[NOPERM] Entry is read-only"])
    imap.logout()


def test_8bit_values_round_trip_and_entries_follow_their_mailbox(live: LiveServer) -> None:
    imap = client(live)
    value = "Ünïcode — and \xff\xfe raw".encode("latin-1", "replace") + bytes(range(0x80, 0x90))
    imap.create_folder("Projects")
    typ, data = command(
        imap,
        b"SETMETADATA",
        b"Projects",
        b"(/private/comment",
        _literal(value),
        b'/shared/comment "team")',
    )
    assert typ == "OK", data
    assert metadata(imap, b"Projects", b"/private/comment") == [
        (b"Projects (/private/comment {%d}" % len(value), value),
        b")",
    ]
    imap.rename_folder("Projects", "Done")  # RFC 5464 §4.1: the entries follow
    found = metadata(imap, b"Done", b"/shared/comment")
    assert found == [b'Done (/shared/comment "team")']
    imap.delete_folder("Done")
    typ, data = command(imap, b"GETMETADATA", b"Done", b"/shared/comment")
    assert typ == "NO" and b"[NONEXISTENT]" in data[0]  # type: ignore[operator]
    imap.create_folder("Done")  # a new mailbox of the same name inherits nothing
    assert metadata(imap, b"Done", b"/shared/comment") == [b"Done (/shared/comment NIL)"]
    imap.logout()


def test_nul_octets_travel_as_literal8(live: LiveServer) -> None:
    imap = imaplib.IMAP4("127.0.0.1", live.port("imap"), timeout=10)
    imap.login(USER, PASSWORD)
    value = b"\x00\x01binary\xff\x00"
    imap.send(b'm1 SETMETADATA "" (/private/vendor/vendor.example/blob ~{%d+}\r\n' % len(value))
    imap.send(value + b")\r\n")
    assert imap.readline() == b"m1 OK SETMETADATA completed\r\n"
    imap.send(b'm2 GETMETADATA "" /private/vendor/vendor.example/blob\r\n')
    assert imap.readline() == b'* METADATA "" (/private/vendor/vendor.example/blob ~{10}\r\n'
    assert imap.read(len(value)) == value
    assert imap.readline() == b")\r\n"
    assert imap.readline() == b"m2 OK GETMETADATA completed\r\n"
    imap.logout()


def test_limits_are_refused_with_the_rfc_codes(live: LiveServer) -> None:
    imap = client(live)
    typ, data = command(
        imap,
        b"SETMETADATA",
        b"INBOX",
        b"(/shared/comment",
        _literal(b"x" * 1025),
        b"/private/a NIL)",
    )
    assert (typ, data) == ("NO", [b"[METADATA MAXSIZE 1024] Entry value too large"])
    pairs = b" ".join(b'/private/e%d "v"' % i for i in range(10))
    assert command(imap, b"SETMETADATA", b"INBOX", b"(" + pairs + b")")[0] == "OK"
    typ, data = command(
        imap, b"SETMETADATA", b"INBOX", b'(/private/e0 NIL /private/new "1" /private/new2 "2")'
    )
    assert (typ, data) == ("NO", [b"[METADATA TOOMANY] Too many entries"])
    assert metadata(imap, b"INBOX", b"/private/e0", b"/private/new") == [
        b'INBOX (/private/e0 "v" /private/new NIL)'  # nothing of a refused command was done
    ]
    # 4096 octets per account: the server entries count too.
    for n in range(3):
        entry = b"/private/vendor/vendor.example/%d" % n
        typ, data = command(
            imap, b"SETMETADATA", b'""', b"(" + entry, _literal(b"y" * 1000), b"/private/x NIL)"
        )
        assert typ == "OK", data
    typ, data = command(
        imap,
        b"SETMETADATA",
        b'""',
        b"(/private/vendor/vendor.example/3",
        _literal(b"y" * 1000),
        b"/private/x NIL)",
    )
    assert (typ, data) == ("NO", [b"[OVERQUOTA] Entries exceed the account's limit"])
    imap.logout()


def test_another_clients_change_reaches_a_notify_session(live: LiveServer) -> None:
    watcher = imaplib.IMAP4("127.0.0.1", live.port("imap"), timeout=10)
    watcher.login(USER, PASSWORD)
    typ, data = watcher.xatom(
        "NOTIFY", "SET", "(personal (MailboxMetadataChange ServerMetadataChange))"
    )
    assert typ == "OK", data
    other = client(live)
    assert command(other, b"SETMETADATA", b"Archive", b'(/shared/comment "old mail")')[0] == "OK"
    assert unasked_line(watcher) == b"* METADATA Archive /shared/comment"
    assert (
        command(other, b"SETMETADATA", b'""', b'(/private/vendor/vendor.example/t "1")')[0] == "OK"
    )
    assert unasked_line(watcher) == b'* METADATA "" /private/vendor/vendor.example/t'
    assert command(other, b"SETMETADATA", b"Archive", b"(/shared/comment NIL)")[0] == "OK"
    assert unasked_line(watcher) == b"* METADATA Archive /shared/comment"
    other.logout()
    watcher.logout()
