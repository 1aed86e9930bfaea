"""One account on several devices: a phone that syncs with QRESYNC and drops its connection,
a laptop (imapclient) changing the mailbox meanwhile; three devices changing one mailbox at
once, each keeping the picture the server's responses draw, which must end as the mailbox.

The phone is this module's own line client, because it must keep the MODSEQ bookkeeping RFC
7162 §6 prescribes for a resynchronising client, which no library here exposes: after each
tagged response its HIGHESTMODSEQ is the last HIGHESTMODSEQ response code seen, else the
highest MODSEQ item seen, if higher than what it had.
"""

from __future__ import annotations

import random
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from imapclient import IMAPClient
from imapclient.imapclient import DELETED, FLAGGED

from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.live import LiveServer

pytestmark = pytest.mark.listeners("smtp", "imap")

USER = "alice@example.org"
_MODSEQ = re.compile(rb"MODSEQ \((\d+)\)")
_HIGHEST = re.compile(rb"\[HIGHESTMODSEQ (\d+)\]")


class Phone:
    """A QRESYNC client over a plain socket, keeping its HIGHESTMODSEQ as §6 says."""

    def __init__(self, live: LiveServer) -> None:
        self.sock = socket.create_connection(("127.0.0.1", live.port("imap")), timeout=10)
        self.file = self.sock.makefile("rb")
        self.serial = 0
        self.highestmodseq = 0
        self.file.readline()
        self.command(f'LOGIN {USER} "{PASSWORD}"')
        self.command("ENABLE QRESYNC")

    def command(self, text: str) -> list[bytes]:
        self.serial += 1
        tag = b"p%d" % self.serial
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        lines = []
        while not lines or not lines[-1].startswith(tag + b" "):
            lines.append(self.file.readline().rstrip(b"\r\n"))
        assert lines[-1].startswith(tag + b" OK"), lines
        codes = [int(m.group(1)) for line in lines for m in [_HIGHEST.search(line)] if m]
        if codes:
            self.highestmodseq = codes[-1]  # §6: used "even if it has seen higher"
        else:
            seen = [int(m.group(1)) for line in lines for m in _MODSEQ.finditer(line)]
            self.highestmodseq = max([self.highestmodseq, *seen])
        return lines

    def drop(self) -> None:
        """The connection lost, as a phone leaving the Wi-Fi loses it: no LOGOUT."""
        self.file.close()
        self.sock.close()


def test_a_phone_dropped_while_a_vanished_was_withheld_learns_of_it_on_resync(
    live: LiveServer,
) -> None:
    """RFC 7162 §3.2: the phone reads and marks a message by number (FETCH, STORE: neither may
    carry the VANISHED of what the laptop deleted meanwhile, RFC 9051 §7.5.1) and is sent
    MODSEQs beyond that deletion's; it loses the connection before any NOOP. Resynchronising
    with SELECT (QRESYNC …) from the HIGHESTMODSEQ it kept, it must hear that message 1
    vanished — before the fix it kept a message the other devices had deleted, for good."""
    for subject in ("one", "two", "three"):
        live.deliver(USER, subject)
    phone = Phone(live)
    selected = b"\n".join(phone.command("SELECT INBOX"))
    found = re.search(rb"UIDVALIDITY (\d+)", selected)
    assert found is not None
    uidvalidity = int(found.group(1))
    laptop = IMAPClient("127.0.0.1", port=live.port("imap"), ssl=False, timeout=10)
    laptop.login(USER, PASSWORD)
    laptop.select_folder("INBOX")
    laptop.add_flags([1], [DELETED], silent=True)
    laptop.uid_expunge([1])
    laptop.add_flags([3], [FLAGGED], silent=True)
    laptop.logout()

    phone.command("FETCH 2 (FLAGS)")
    phone.command("STORE 2 +FLAGS (\\Seen)")
    known = phone.highestmodseq
    phone.drop()

    phone = Phone(live)
    resync = phone.command(f"SELECT INBOX (QRESYNC ({uidvalidity} {known} 1:3))")
    assert b"* VANISHED (EARLIER) 1" in resync, resync
    phone.command("LOGOUT")


class Tracker:
    """A device that keeps the mailbox as the server's untagged responses describe it: the UID
    and flags at each sequence number (EXISTS, EXPUNGE, VANISHED, FETCH), learning the UIDs
    of new messages with ``FETCH n:* (UID)``, as a mail app would."""

    def __init__(self, live: LiveServer, name: str, *, qresync: bool) -> None:
        self.name = name
        self.sock = socket.create_connection(("127.0.0.1", live.port("imap")), timeout=30)
        self.file = self.sock.makefile("rb")
        self.serial = 0
        self.view: list[list[Any]] = []  # [uid | None, flags | None] per sequence number
        self.file.readline()
        self.command(f'LOGIN {USER} "{PASSWORD}"')
        if qresync:
            self.command("ENABLE QRESYNC")
        self.command("SELECT INBOX")

    def command(self, text: str) -> list[str]:
        self.serial += 1
        tag = f"d{self.serial}"
        self.sock.sendall(f"{tag} {text}\r\n".encode())
        lines: list[str] = []
        while not lines or not lines[-1].startswith(tag + " "):
            lines.append(self.file.readline().decode().rstrip("\r\n"))
        for line in lines:
            self._track(line)
        if any(uid is None for uid, _ in self.view):
            self.command(f"FETCH {[uid for uid, _ in self.view].index(None) + 1}:* (UID)")
        return lines

    def _track(self, line: str) -> None:
        if m := re.fullmatch(r"\* (\d+) EXISTS", line):
            grown = int(m.group(1)) - len(self.view)
            assert grown >= 0, (self.name, "EXISTS went down", line)  # RFC 9051 §7.4.1
            self.view += [[None, None] for _ in range(grown)]
        elif m := re.fullmatch(r"\* (\d+) EXPUNGE", line):
            del self.view[int(m.group(1)) - 1]
        elif m := re.fullmatch(r"\* VANISHED ([\d:,]+)", line):
            gone = {
                uid
                for part in m.group(1).split(",")
                for first, _, last in [part.partition(":")]
                for uid in range(int(first), int(last or first) + 1)
            }
            assert gone <= {uid for uid, _ in self.view}, (self.name, "unknown UID", line)
            self.view = [entry for entry in self.view if entry[0] not in gone]
        elif m := re.fullmatch(r"\* (\d+) FETCH \((.*)\)", line):
            entry = self.view[int(m.group(1)) - 1]
            if uid := re.search(r"UID (\d+)", m.group(2)):
                assert entry[0] in (None, int(uid.group(1))), (self.name, "moved UID", line)
                entry[0] = int(uid.group(1))
            if flags := re.search(r"FLAGS \(([^)]*)\)", m.group(2)):
                entry[1] = set(flags.group(1).split()) - {"\\Recent"}


def test_three_devices_changing_one_mailbox_at_once_all_end_with_the_mailbox(
    live: LiveServer,
) -> None:
    """Three devices (one with QRESYNC) flag, read, append, move, expunge and search in one
    INBOX at the same time, 120 random commands each, by sequence number as well as by UID.
    Every response must be consistent with what each device was told before (EXISTS never
    down, a sequence number's UID never changes, no VANISHED of a UID never announced), and
    after a NOOP each device's picture must be the mailbox: the same UIDs as a fresh session
    sees, with the flags as they are — no message missing, none extra, no flag change unsaid."""
    appended = "Subject: from a device\r\n\r\nhello\r\n"
    append = f"APPEND INBOX {{{len(appended)}+}}\r\n{appended}"
    devices = [
        Tracker(live, "phone", qresync=True),
        Tracker(live, "laptop", qresync=False),
        Tracker(live, "tablet", qresync=False),
    ]
    for _ in range(8):
        devices[0].command(append)

    def work(device: Tracker, seed: int) -> None:
        chance = random.Random(seed)
        for _ in range(120):
            count, pick = len(device.view), chance.random()
            seq = chance.randint(1, count) if count else 0
            if pick < 0.3 and seq:
                sign, flag = chance.choice("+-"), chance.choice(["\\Seen", "\\Flagged", "$Work"])
                device.command(f"STORE {seq} {sign}FLAGS ({flag})")
            elif pick < 0.4 and seq:
                device.command(f"FETCH {seq}:* (FLAGS)")
            elif pick < 0.65 or not seq:
                device.command(append)
            elif pick < 0.73 and (uid := device.view[seq - 1][0]):
                device.command(f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)")
                device.command(f"UID EXPUNGE {uid}")
            elif pick < 0.8:
                device.command(f"MOVE {seq} Archive")
            elif pick < 0.85:
                device.command(f"STORE {seq} +FLAGS.SILENT (\\Deleted)")
                device.command("EXPUNGE")
            elif pick < 0.92:
                device.command("SEARCH ALL")
            else:
                device.command("NOOP")

    with ThreadPoolExecutor(len(devices)) as pool:
        for done in [pool.submit(work, device, n) for n, device in enumerate(devices)]:
            done.result()
    fresh = Tracker(live, "fresh", qresync=False)
    fresh.command("FETCH 1:* (FLAGS)")
    for device in devices:
        device.command("NOOP")
        assert [uid for uid, _ in device.view] == [uid for uid, _ in fresh.view], device.name
        for (uid, told), (_, flags) in zip(device.view, fresh.view, strict=True):
            assert told is None or told == flags, (device.name, uid)  # None: never asked
