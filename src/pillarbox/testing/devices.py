"""Several devices of one account changing one mailbox at once, for the sync tests.

Each :class:`Tracker` is an IMAP session over a plain socket that keeps the mailbox as the
server's untagged responses describe it — the UID and flags at each sequence number, from
EXISTS, EXPUNGE, VANISHED and FETCH — and checks every response against what it was told
before. :func:`change_at_once` has several trackers (on one server, or on several nodes of
one store) run random commands concurrently; :func:`assert_converged` then checks that each
one's picture is the mailbox.
"""

from __future__ import annotations

import random
import re
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

_APPENDED = "Subject: from a device\r\n\r\nhello\r\n"
APPEND = f"APPEND INBOX {{{len(_APPENDED)}+}}\r\n{_APPENDED}"


class Tracker:
    """One device: a session on ``port`` with INBOX selected, learning the UIDs of new
    messages with ``FETCH n:* (UID)`` as a mail app would."""

    def __init__(self, port: int, user: str, password: str, name: str, *, qresync: bool) -> None:
        self.name = name
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")
        self.serial = 0
        #: ``[uid, flags]`` per sequence number; None where the device was not told yet.
        self.view: list[tuple[int | None, frozenset[str] | None]] = []
        #: The flags the last ``* FLAGS`` response named (RFC 9051 §7.3.5).
        self.listed: frozenset[str] = frozenset()
        self.file.readline()
        self.command(f'LOGIN {user} "{password}"')
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
        unknown = [uid for uid, _ in self.view]
        if None in unknown:
            self.command(f"FETCH {unknown.index(None) + 1}:* (UID)")
        return lines

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def _track(self, line: str) -> None:
        if m := re.fullmatch(r"\* FLAGS \(([^)]*)\)", line):
            self.listed = frozenset(m.group(1).split())
        elif m := re.fullmatch(r"\* (\d+) EXISTS", line):
            grown = int(m.group(1)) - len(self.view)
            assert grown >= 0, (self.name, "EXISTS went down", line)  # RFC 9051 §7.4.1
            self.view += [(None, None)] * grown
        elif m := re.fullmatch(r"\* (\d+) EXPUNGE", line):
            del self.view[int(m.group(1)) - 1]
        elif m := re.fullmatch(r"\* VANISHED ([\d:,]+)", line):
            gone = {
                uid
                for part in m.group(1).split(",")
                for first, _, last in [part.partition(":")]
                for uid in range(int(first), int(last or first) + 1)
            }
            # RFC 7162 §3.2.10.2: only messages announced by EXISTS (UID known or not yet).
            unknown = sum(uid is None for uid, _ in self.view)
            known = {uid for uid, _ in self.view}
            assert len(gone - known) <= unknown, (self.name, "VANISHED of the unannounced", line)
            self.view = [entry for entry in self.view if entry[0] not in gone]
            del self.view[len(self.view) - len(gone - known) :]  # unknown UIDs are the newest
        elif m := re.fullmatch(r"\* (\d+) FETCH \((.*)\)", line):
            index = int(m.group(1)) - 1
            uid, flags = self.view[index]
            if found := re.search(r"UID (\d+)", m.group(2)):
                assert uid in (None, int(found.group(1))), (self.name, "moved UID", line)
                uid = int(found.group(1))
            if listed := re.search(r"FLAGS \(([^)]*)\)", m.group(2)):
                flags = frozenset(listed.group(1).split()) - {"\\Recent"}
                assert flags <= self.listed, (self.name, "a keyword FLAGS did not list", line)
            self.view[index] = (uid, flags)


def _work(device: Tracker, seed: int, commands: int) -> None:
    chance = random.Random(seed)
    for _ in range(commands):
        count, pick = len(device.view), chance.random()
        seq = chance.randint(1, count) if count else 0
        if pick < 0.3 and seq:
            sign, flag = (
                chance.choice("+-"),
                chance.choice(["\\Seen", "\\Flagged", "$Work", "$Home"]),
            )
            device.command(f"STORE {seq} {sign}FLAGS ({flag})")
        elif pick < 0.4 and seq:
            device.command(f"FETCH {seq}:* (FLAGS)")
        elif pick < 0.65 or not seq:
            device.command(APPEND)
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


def change_at_once(devices: Sequence[Tracker], commands: int, seed: int = 0) -> None:
    """Each device runs ``commands`` random commands (flags, FETCH, APPEND, UID EXPUNGE, MOVE,
    EXPUNGE, SEARCH, NOOP), by sequence number as well as by UID, all devices at once."""
    with ThreadPoolExecutor(len(devices)) as pool:
        runs = [pool.submit(_work, device, seed + n, commands) for n, device in enumerate(devices)]
        for run in runs:
            run.result()


def assert_converged(devices: Sequence[Tracker], fresh: Tracker) -> None:
    """After a NOOP, each device holds the mailbox as ``fresh`` (a new session) sees it: the
    same UIDs in order, and every flag set it was told still the message's."""
    fresh.command("FETCH 1:* (FLAGS)")
    for device in devices:
        device.command("NOOP")
        assert [uid for uid, _ in device.view] == [uid for uid, _ in fresh.view], device.name
        for (uid, told), (_, flags) in zip(device.view, fresh.view, strict=True):
            assert told is None or told == flags, (device.name, uid)  # None: never asked
