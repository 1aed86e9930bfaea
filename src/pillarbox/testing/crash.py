"""A crash harness: ``pillarbox serve`` under concurrent real clients, killed with SIGKILL at
random moments and restarted on the same data, with a ledger of every positive reply checked
against what the restarted server holds.

The standard it proves (DESIGN principle 3): a positive reply — 250 after DATA, APPEND OK,
MOVE/EXPUNGE OK, +OK to a POP3 QUIT — means the change is on stable storage, so a SIGKILL at
any moment loses nothing acknowledged and brings back nothing acknowledged as gone.

Invariants checked after every restart (:meth:`Chaos.verify`):

- every message the MX acknowledged is in each recipient's INBOX exactly once, its stored bytes
  ending with the bytes sent (the server prepends trace headers only);
- every APPEND acknowledged is there exactly once, byte for byte, under the UID its APPENDUID
  named; UIDVALIDITY never changes; no UID is ever given to two messages;
- a message whose MOVE was acknowledged is in the target only, under its COPYUID UID, with the
  flags acknowledged before; one whose EXPUNGE was acknowledged is nowhere;
- a POP3 DELE is applied only by a QUIT answered +OK (RFC 1939 §6): without QUIT the message
  stays, after +OK it is gone;
- every submission acknowledged reaches the remote smart host at least once; a second copy
  (killed after the remote 250, before the queue recorded it) is allowed by RFC 5321 §6.1 and
  counted, never a loss;
- an operation in flight at the kill may have happened or not, but once a restart shows which,
  later restarts must show the same (nothing reappears, nothing vanishes).

With the server down (:func:`store_findings`): the SQLite integrity check, every message and
queue row's blob present with its bytes, reference counts equal to the rows, orphan blobs counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import imaplib
import poplib
import random
import re
import smtplib
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from pillarbox import config as cfg
from pillarbox import provisioning
from pillarbox.store.open import is_postgresql, open_store
from pillarbox.testing.live import TEST_PASSWORD, free_port
from pillarbox.testing.nodes import Node

DOMAIN = "example.org"
MX_RCPTS = (f"bob@{DOMAIN}", f"erin@{DOMAIN}")  # erin's maildrop is also emptied over POP3
APPENDER = f"carol@{DOMAIN}"
MOVER = f"dave@{DOMAIN}"
SUBMITTER = f"sam@{DOMAIN}"
JUNK = "Junk"  # the MX files what the spam filter scores high here (still delivered)
ARCHIVE = "Archive"  # every new account has one (RFC 6154 \\Archive)
ACCOUNTS = (*MX_RCPTS, APPENDER, MOVER, SUBMITTER)

#: One stored copy of a message: UID, bytes, flags.
_Held = tuple[int, bytes, bytes]

_MESSAGE_ID = re.compile(rb"Message-ID: <([^>@]+)@chaos\.test>", re.IGNORECASE)
_UID = re.compile(rb"UID (\d+)")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_APPENDUID = re.compile(rb"APPENDUID (\d+) (\d+)")
_COPYUID = re.compile(rb"(\d+) \S+ (\d+)")  # imaplib keeps a code's data without its name


class Step(enum.IntEnum):
    """How far one of the mover's messages got: each step is an acknowledged command."""

    APPENDED = 0
    FLAGGED = 1
    MOVED = 2
    EXPUNGED = 3  # or never appended: absent from both mailboxes


class KillPoint(enum.Enum):
    """When :meth:`Chaos.round` kills, after its wait."""

    ANYWHERE = "anywhere"  # at once: with a DATA and an APPEND in flight (a commit, maybe)
    AFTER_250 = "after 250"  # the moment an MX client reads a 250 after DATA
    REMOTE_250 = "remote 250"  # while the smart host holds a delivery's 250: it is retried


@dataclass
class Moved:
    """The mover's ledger entry: the last step acknowledged, and the one in flight at a kill."""

    raw: bytes
    step: Step
    pending: Step | None = None
    uid: int = 0  # in INBOX, then (after MOVE) in Archive
    acknowledged: bool = False  # its APPEND was


@dataclass
class Ledger:
    """Every positive reply the clients got, with what was sent (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    mx: dict[str, bytes] = field(default_factory=dict)
    mx_unsure: dict[str, bytes] = field(default_factory=dict)  # killed before the reply
    refused: list[tuple[str, str, tuple[int, bytes]]] = field(default_factory=list)  # at RCPT
    submitted: dict[str, bytes] = field(default_factory=dict)
    appended: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # raw, UID
    append_unsure: dict[str, bytes] = field(default_factory=dict)
    moved: dict[str, Moved] = field(default_factory=dict)
    popped: set[str] = field(default_factory=set)  # QUIT answered +OK after DELE
    pop_unsure: set[str] = field(default_factory=set)  # QUIT sent, no reply
    uidvalidity: dict[tuple[str, str], int] = field(default_factory=dict)
    uids: dict[tuple[str, str, int], str] = field(default_factory=dict)  # → Message-ID

    def acknowledged(self) -> int:
        with self.lock:
            moved = sum(entry.acknowledged for entry in self.moved.values())
            return len(MX_RCPTS) * len(self.mx) + len(self.submitted) + len(self.appended) + moved


@dataclass
class Round:
    """Figures of one kill and restart."""

    kill_after: float
    restart_seconds: float
    acknowledged: int
    found: int
    lost: int
    duplicated: int
    orphans: int  # blob rows or files nothing refers to
    staged: int  # staged blob files a kill left in blobs/tmp (removed once an hour old)
    problems: list[str]
    #: What the kill interrupted: client commands left without a reply, by kind, and the
    #: queue's deliveries the smart host had taken but not yet answered 250.
    interrupted: dict[str, int] = field(default_factory=dict)


@dataclass
class Sink:
    """The remote smart host: keeps every message the queue delivers to it."""

    received: list[bytes] = field(default_factory=list)
    delay: float = 0.05  # the queue's deliveries stay in flight a while: kills land there
    answering: int = 0  # messages taken, 250 not yet sent

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.answering += 1
        try:
            await asyncio.sleep(self.delay)
            self.received.append(bytes(envelope.content))
            return "250 OK"
        finally:
            self.answering -= 1


def message(tag: str, rng: random.Random, sender: str, rcpt: str) -> bytes:
    """A message with a unique Message-ID and a body of random size (up to ~64 KB, so DATA
    and APPEND last long enough to be killed in the middle)."""
    lines = rng.randrange(1, 900)
    body = b"".join(b"line %d of %s %s\r\n" % (i, tag.encode(), b"x" * 40) for i in range(lines))
    head = (
        f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: chaos {tag}\r\n"
        f"Message-ID: <{tag}@chaos.test>\r\nDate: Tue, 1 Dec 2026 00:00:00 +0000\r\n\r\n"
    )
    return head.encode() + body


def message_id(raw: bytes) -> str | None:
    match = _MESSAGE_ID.search(raw)
    return match.group(1).decode() if match else None


class Chaos:
    """``with Chaos(root, store_url) as chaos: chaos.round(kill_after) …; chaos.finish()``."""

    def __init__(self, root: Path, store_url: str, *, seed: int = 0) -> None:
        self.root = root
        self.store_url = store_url
        self.rng = random.Random(seed)
        self.ledger = Ledger()
        self.sink = Sink()
        self._sink_port = free_port("127.0.0.1")
        self._controller = Controller(self.sink, hostname="127.0.0.1", port=self._sink_port)
        queue = cfg.QueueSection(
            smarthost=f"127.0.0.1:{self._sink_port}",
            smarthost_verify_tls=False,
            lease=2.0,
            poll_interval=0.5,
            retry_schedule=(1.0,),
        )
        self.node = Node(
            root,
            "chaos",
            store_url,
            listeners=("smtp", "submission", "imap", "pop3"),
            queue=queue,
        )
        self._pause = threading.Event()
        self._stop = threading.Event()
        self._parked: list[threading.Event] = []
        self._threads: list[threading.Thread] = []
        self._counter = 0
        self._counter_lock = threading.Lock()
        self._acked = threading.Event()  # an MX client just read a 250 after DATA
        # (Message-ID, recipient) of unsure MX messages seen stored: they must stay now. Per
        # recipient: a kill in the middle of DATA's intake can leave some recipients' copies
        # stored and not others' (no 250 was given, the client sends it again).
        self._observed_mx: set[tuple[str, str]] = set()
        self.rounds: list[Round] = []

    # -- life cycle -----------------------------------------------------------------------

    def __enter__(self) -> Chaos:
        self._controller.start()
        self._provision()
        self.node.start()
        workers: list[Callable[[random.Random], None]] = [
            self._mx_worker,
            self._mx_worker,
            self._submission_worker,
            self._append_worker,
            self._append_worker,
            self._move_worker,
            self._pop_worker,
        ]
        for index, worker in enumerate(workers):
            parked = threading.Event()
            rng = random.Random(self.rng.random())
            thread = threading.Thread(
                target=self._run, args=(worker, parked, rng), name=f"chaos-{index}", daemon=True
            )
            self._parked.append(parked)
            self._threads.append(thread)
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._pause.clear()
        for thread in self._threads:
            thread.join(30)
        self.node.stop()
        self._controller.stop()

    def _provision(self) -> None:
        async def go() -> None:
            store = open_store(self.store_url, Path(self.node.config.server.data_dir))
            await store.open()
            try:
                await provisioning.add_domain(store, DOMAIN)
                for address in ACCOUNTS:
                    await provisioning.add_account(store, self.node.config, address, TEST_PASSWORD)
            finally:
                await store.close()

        Path(self.node.config.server.data_dir).mkdir(parents=True, exist_ok=True)
        asyncio.run(go())

    def _park_all(self) -> None:
        self._pause.set()
        for parked in self._parked:
            if not parked.wait(60):
                raise RuntimeError("a chaos worker did not stop")

    def _resume_all(self) -> None:
        for parked in self._parked:
            parked.clear()
        self._pause.clear()

    def round(self, kill_after: float, at: KillPoint = KillPoint.ANYWHERE) -> Round:
        """Let the clients run ``kill_after`` seconds, SIGKILL the server (then, or at the
        next moment ``at`` names), check the store offline, restart it and check what it
        serves."""
        time.sleep(kill_after)
        if at is KillPoint.AFTER_250:
            self._acked.clear()
            self._acked.wait(30)
        elif at is KillPoint.REMOTE_250:
            deadline = time.monotonic() + 30
            while self.sink.answering == 0 and time.monotonic() < deadline:
                time.sleep(0.002)
        before = self._unanswered()
        remote = self.sink.answering  # read first: the killed session's handler ends at once
        self.node.kill()
        self._park_all()
        interrupted = {kind: n - before[kind] for kind, n in self._unanswered().items()}
        interrupted["remote 250"] = remote
        offline = store_findings(self.store_url, Path(self.node.config.server.data_dir))
        started = time.monotonic()
        self.node.start()
        restart = time.monotonic() - started
        result = self._recorded(
            offline,
            self.verify(),
            kill_after=kill_after,
            restart_seconds=restart,
            interrupted=interrupted,
        )
        self._resume_all()
        return result

    def _recorded(
        self,
        offline: tuple[list[str], int, int],
        served: tuple[int, int, int, list[str]],
        *,
        kill_after: float = 0.0,
        restart_seconds: float = 0.0,
        interrupted: dict[str, int] | None = None,
    ) -> Round:
        """The round of what :func:`store_findings` found in the store (``offline``) and
        :meth:`verify` in what the server serves (``served``), appended to :attr:`rounds`."""
        stored_problems, orphans, staged = offline
        found, lost, duplicated, served_problems = served
        result = Round(
            kill_after=kill_after,
            restart_seconds=restart_seconds,
            acknowledged=self.ledger.acknowledged(),
            found=found,
            lost=lost,
            duplicated=duplicated,
            orphans=orphans,
            staged=staged,
            problems=stored_problems + served_problems,
            interrupted=interrupted or {},
        )
        self.rounds.append(result)
        return result

    def _unanswered(self) -> dict[str, int]:
        """Client commands the ledger holds as sent but unanswered, by kind."""
        with self.ledger.lock:
            moved = [entry.pending for entry in self.ledger.moved.values()]
            return {
                "DATA": len(self.ledger.mx_unsure),
                "APPEND": len(self.ledger.append_unsure) + moved.count(Step.APPENDED),
                "STORE/MOVE/EXPUNGE": sum(p not in (None, Step.APPENDED) for p in moved),
                "QUIT": len(self.ledger.pop_unsure),
            }

    def finish(self, drain_timeout: float = 60.0) -> Round:
        """Stop the clients, let the queue deliver everything, check once more, stop the
        server gracefully and check the store it leaves."""
        self._park_all()
        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline and self._undelivered():
            time.sleep(0.2)
        found, lost, duplicated, problems = self.verify()
        undelivered = sorted(self._undelivered())
        lost += len(undelivered)
        problems += [f"{tag}: submitted, never delivered" for tag in undelivered]
        self.node.stop()
        offline = store_findings(self.store_url, Path(self.node.config.server.data_dir))
        result = self._recorded(offline, (found, lost, duplicated, problems))
        self.node.start()  # for __exit__'s graceful stop
        return result

    def _undelivered(self) -> set[str]:
        delivered = {message_id(raw) for raw in list(self.sink.received)}
        with self.ledger.lock:
            return set(self.ledger.submitted) - delivered

    # -- clients --------------------------------------------------------------------------

    def _tag(self, kind: str) -> str:
        with self._counter_lock:
            self._counter += 1
            return f"{kind}.{self._counter}"

    def _run(
        self,
        worker: Callable[[random.Random], None],
        parked: threading.Event,
        rng: random.Random,
    ) -> None:
        while not self._stop.is_set():
            if self._pause.is_set():
                parked.set()
                time.sleep(0.05)
                continue
            try:
                worker(rng)
            except (OSError, smtplib.SMTPException, imaplib.IMAP4.error, poplib.error_proto):
                time.sleep(0.05)  # the server is down: try again (or park) shortly

    def _mx_worker(self, rng: random.Random) -> None:
        with smtplib.SMTP("127.0.0.1", self.node.port("smtp"), timeout=30) as client:
            while not self._pause.is_set():
                tag = self._tag("mx")
                raw = message(tag, rng, "friend@example.net", MX_RCPTS[0])
                try:
                    refused = client.sendmail("friend@example.net", list(MX_RCPTS), raw)
                except BaseException:
                    with self.ledger.lock:
                        self.ledger.mx_unsure[tag] = raw
                    raise
                with self.ledger.lock:
                    self.ledger.mx[tag] = raw
                    for rcpt, reply in refused.items():
                        self.ledger.refused.append((tag, rcpt, reply))
                self._acked.set()

    def _submission_worker(self, rng: random.Random) -> None:
        with smtplib.SMTP("127.0.0.1", self.node.port("submission"), timeout=30) as client:
            client.login(SUBMITTER, TEST_PASSWORD)
            while not self._pause.is_set():
                tag = self._tag("sub")
                raw = message(tag, rng, SUBMITTER, "far@remote.example")
                client.sendmail(SUBMITTER, ["far@remote.example"], raw)
                with self.ledger.lock:
                    self.ledger.submitted[tag] = raw

    def _imap(self, user: str) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.node.port("imap"), timeout=30)
        client.login(user, TEST_PASSWORD)
        return client

    def _append_worker(self, rng: random.Random) -> None:
        client = self._imap(APPENDER)
        try:
            while not self._pause.is_set():
                tag = self._tag("app")
                raw = message(tag, rng, APPENDER, APPENDER)
                try:
                    typ, data = client.append("INBOX", "", imaplib.Time2Internaldate(0), raw)
                except BaseException:
                    with self.ledger.lock:
                        self.ledger.append_unsure[tag] = raw
                    raise
                if typ != "OK":
                    continue
                validity, uid = _appenduid(data)
                with self.ledger.lock:
                    self.ledger.appended[tag] = (raw, uid)
                    self._note_uid(APPENDER, "INBOX", validity, uid, tag)
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def _move_worker(self, rng: random.Random) -> None:
        client = self._imap(MOVER)
        try:
            while not self._pause.is_set():
                self._move_one(client, rng)
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def _move_one(self, client: imaplib.IMAP4, rng: random.Random) -> None:
        """APPEND, flag, MOVE to Archive, and (every other message) expunge there: each step
        recorded once acknowledged, the one a kill interrupts recorded as pending."""
        tag = self._tag("mv")
        raw = message(tag, rng, MOVER, MOVER)
        entry = Moved(raw, Step.EXPUNGED, pending=Step.APPENDED)
        try:
            client.select("INBOX")
            appended = client.append("INBOX", "", imaplib.Time2Internaldate(0), raw)
            _ok(appended)
            validity, entry.uid = _appenduid(appended[1])
            with self.ledger.lock:
                self._note_uid(MOVER, "INBOX", validity, entry.uid, tag)
                entry.step, entry.pending, entry.acknowledged = Step.APPENDED, Step.FLAGGED, True
                self.ledger.moved[tag] = entry
            _ok(client.uid("STORE", str(entry.uid), "+FLAGS", r"(\Flagged)"))
            with self.ledger.lock:
                entry.step, entry.pending = Step.FLAGGED, Step.MOVED
            client.untagged_responses.clear()
            _ok(client.uid("MOVE", str(entry.uid), ARCHIVE))
            _, codes = client.response("COPYUID")
            copied = _COPYUID.fullmatch(codes[-1]) if codes and codes[-1] else None
            if copied is None:
                raise imaplib.IMAP4.error(f"MOVE without COPYUID: {codes!r}")
            with self.ledger.lock:
                entry.uid = int(copied.group(2))
                self._note_uid(MOVER, ARCHIVE, int(copied.group(1)), entry.uid, tag)
                entry.step = Step.MOVED
                entry.pending = Step.EXPUNGED if rng.random() < 0.5 else None
            if entry.pending is None:
                return
            client.select(ARCHIVE)
            _ok(client.uid("STORE", str(entry.uid), "+FLAGS", r"(\Deleted)"))
            _ok(client.uid("EXPUNGE", str(entry.uid)))
            with self.ledger.lock:
                entry.step, entry.pending = Step.EXPUNGED, None
        except BaseException:
            with self.ledger.lock:
                self.ledger.moved.setdefault(tag, entry)
            raise

    def _pop_worker(self, rng: random.Random) -> None:
        client = poplib.POP3("127.0.0.1", self.node.port("pop3"), timeout=30)
        try:
            client.user(MX_RCPTS[1])
            client.pass_(TEST_PASSWORD)
        except BaseException:
            with contextlib.suppress(Exception):
                client.close()
            raise
        doomed: set[str] = set()
        try:
            _, listing, _ = client.list()
            for line in listing[:30]:
                number = int(line.split()[0])
                _, head, _ = client.top(number, 0)
                tag = message_id(b"\r\n".join(head))
                if tag is not None and rng.random() < 0.5:
                    client.dele(number)
                    doomed.add(tag)
        except BaseException:
            client.close()  # no QUIT: RFC 1939 §6, nothing deleted
            raise
        with self.ledger.lock:
            self.ledger.pop_unsure |= doomed
        client.quit()
        with self.ledger.lock:
            self.ledger.pop_unsure -= doomed
            self.ledger.popped |= doomed
        time.sleep(0.2)

    def _note_uid(self, user: str, box: str, validity: int, uid: int, tag: str) -> list[str]:
        """Record a UID the server gave ``tag``; the caller holds the ledger's lock."""
        problems = []
        known = self.ledger.uidvalidity.setdefault((user, box), validity)
        if known != validity:
            problems.append(f"{user} {box}: UIDVALIDITY {known} became {validity}")
            self.ledger.uidvalidity[(user, box)] = validity
        owner = self.ledger.uids.setdefault((user, box, uid), tag)
        if owner != tag:
            problems.append(f"{user} {box}: UID {uid} given to {owner} and to {tag}")
        return problems

    # -- checks ---------------------------------------------------------------------------

    def verify(self) -> tuple[int, int, int, list[str]]:
        """What the running server holds against the ledger: (found, lost, duplicated
        remote deliveries, problems)."""
        problems: list[str] = []
        boxes = {
            (user, box): self._fetch_all(user, box, problems)
            for user, box in [
                (MX_RCPTS[0], "INBOX"),
                (MX_RCPTS[0], JUNK),
                (MX_RCPTS[1], "INBOX"),
                (MX_RCPTS[1], JUNK),
                (APPENDER, "INBOX"),
                (MOVER, "INBOX"),
                (MOVER, ARCHIVE),
            ]
        }
        found = lost = 0
        with self.ledger.lock:
            ledger = self.ledger
            # MX: each recipient holds each acknowledged message once (erin: unless popped).
            for user in MX_RCPTS:
                held = _merged(boxes[(user, "INBOX")], boxes[(user, JUNK)])
                for tag, raw in list(ledger.mx.items()) + list(ledger.mx_unsure.items()):
                    copies = held.get(tag, [])
                    must = tag in ledger.mx or (tag, user) in self._observed_mx
                    if any(t == tag and r == user for t, r, _ in ledger.refused):
                        continue  # the MX did not accept this recipient
                    if user == MX_RCPTS[1]:
                        if tag in ledger.pop_unsure and not copies:
                            ledger.pop_unsure.discard(tag)
                            ledger.popped.add(tag)
                        if tag in ledger.popped:
                            if copies:
                                problems.append(f"{tag}: deleted over POP3, back in {user}")
                            else:
                                found += tag in ledger.mx
                            continue
                        if tag in ledger.pop_unsure:
                            ledger.pop_unsure.discard(tag)  # seen kept: may be deleted again
                    if len(copies) > 1:
                        problems.append(f"{tag}: {len(copies)} copies in {user}")
                    if not copies:
                        if must:
                            lost += 1
                            problems.append(f"{tag}: acknowledged by the MX, lost for {user}")
                        continue
                    found += tag in ledger.mx
                    if tag in ledger.mx_unsure:
                        self._observed_mx.add((tag, user))
                    if not copies[0][1].endswith(raw):
                        problems.append(f"{tag}: stored bytes for {user} differ from those sent")
            # APPEND: byte for byte, under its APPENDUID.
            held = boxes[(APPENDER, "INBOX")]
            for tag, (raw, uid) in ledger.appended.items():
                copies = held.get(tag, [])
                if len(copies) != 1:
                    lost += not copies
                    problems.append(f"{tag}: APPEND acknowledged, {len(copies)} copies")
                    continue
                found += 1
                if copies[0][:2] != (uid, raw):
                    problems.append(f"{tag}: stored UID/bytes differ from the APPEND's")
            for tag in ledger.append_unsure:
                if len(held.get(tag, [])) > 1:
                    problems.append(f"{tag}: APPEND in flight stored twice")
            # The mover: each message in the state acknowledged (or the one in flight).
            inbox, archive = boxes[(MOVER, "INBOX")], boxes[(MOVER, ARCHIVE)]
            for tag, entry in ledger.moved.items():
                here = [
                    (Step.FLAGGED if b"\\Flagged" in f else Step.APPENDED, u, r)
                    for u, r, f in inbox.get(tag, [])
                ]
                here += [(Step.MOVED, u, r) for u, r, _ in archive.get(tag, [])]
                allowed = {entry.step} | ({entry.pending} if entry.pending is not None else set())
                if len(here) > 1:
                    problems.append(f"{tag}: {len(here)} copies across INBOX and {ARCHIVE}")
                    continue
                state = here[0][0] if here else Step.EXPUNGED
                if state not in allowed:
                    lost += entry.acknowledged
                    problems.append(
                        f"{tag}: {state.name} after {entry.step.name} was acknowledged"
                        f" (in flight: {entry.pending.name if entry.pending else 'nothing'})"
                    )
                    continue
                found += entry.acknowledged
                if here:
                    if here[0][2] != entry.raw:
                        problems.append(f"{tag}: stored bytes differ from the APPEND's")
                    if state == entry.step and state != Step.APPENDED and here[0][1] != entry.uid:
                        problems.append(f"{tag}: UID {here[0][1]}, acknowledged as {entry.uid}")
                # What this restart shows must stay.
                entry.step, entry.pending = state, None
                entry.uid = here[0][1] if here else 0
        delivered: dict[str, int] = {}
        for raw in list(self.sink.received):
            tag = message_id(raw) or "?"
            delivered[tag] = delivered.get(tag, 0) + 1
        duplicated = sum(count - 1 for count in delivered.values() if count > 1)
        for tag, raw in list(ledger.submitted.items()):
            if tag in delivered:
                found += 1
                if not any(r.endswith(raw) for r in self.sink.received if message_id(r) == tag):
                    problems.append(f"{tag}: delivered bytes differ from those submitted")
        return found, lost, duplicated, problems

    def _fetch_all(self, user: str, box: str, problems: list[str]) -> dict[str, list[_Held]]:
        """Message-ID → [(UID, bytes, flags)] of every message in one mailbox, recording
        UIDVALIDITY and UIDs in the ledger."""
        client = self._imap(user)
        held: dict[str, list[_Held]] = {}
        try:
            _ok(client.select(box, readonly=True))
            _, validity_data = client.response("UIDVALIDITY")
            validity = int(validity_data[0]) if validity_data and validity_data[0] else 0
            typ, data = client.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
            _ok((typ, data))
            for item in data:
                if not isinstance(item, tuple):
                    continue
                head, raw = item
                uid_match, flags_match = _UID.search(head), _FLAGS.search(head)
                tag = message_id(raw)
                if uid_match is None or tag is None:
                    continue
                uid = int(uid_match.group(1))
                flags = flags_match.group(1) if flags_match else b""
                held.setdefault(tag, []).append((uid, raw, flags))
                with self.ledger.lock:
                    problems += self._note_uid(user, box, validity, uid, tag)
        finally:
            client.logout()
        return held


def _merged(*boxes: dict[str, list[_Held]]) -> dict[str, list[_Held]]:
    merged: dict[str, list[_Held]] = {}
    for box in boxes:
        for tag, copies in box.items():
            merged.setdefault(tag, []).extend(copies)
    return merged


def _appenduid(data: list[Any]) -> tuple[int, int]:
    text = b" ".join(d for d in data if isinstance(d, bytes))
    match = _APPENDUID.search(text)
    if match is None:
        raise imaplib.IMAP4.error(f"APPEND without APPENDUID: {text!r}")
    return int(match.group(1)), int(match.group(2))


def _ok(reply: tuple[str, list[Any]]) -> None:
    if reply[0] != "OK":
        raise imaplib.IMAP4.error(f"{reply[0]} {reply[1]!r}")


# -- the store, offline ---------------------------------------------------------------------

_REFERENCES = """
    SELECT count(*) FROM blobs b WHERE refcount <>
        (SELECT count(*) FROM messages m WHERE m.blob = b.id)
        + (SELECT count(*) FROM queue_messages q WHERE q.blob = b.id)
"""
_DANGLING = """
    SELECT (SELECT count(*) FROM messages m WHERE NOT EXISTS
                (SELECT 1 FROM blobs b WHERE b.id = m.blob))
         + (SELECT count(*) FROM queue_messages q WHERE NOT EXISTS
                (SELECT 1 FROM blobs b WHERE b.id = q.blob))
"""
_NO_DATA = """
    SELECT sha256 FROM blobs b WHERE refcount > 0 AND NOT EXISTS
        (SELECT 1 FROM blob_data d WHERE d.id = b.id)
"""
_UNREFERENCED = "SELECT count(*) FROM blobs WHERE refcount <= 0"


def store_findings(url: str, data_dir: Path) -> tuple[list[str], int, int]:
    """(problems, orphan blobs, staged leftovers) of a store no server is running on."""
    problems: list[str] = []
    if is_postgresql(url):
        import psycopg

        with psycopg.connect(url) as pg:

            def rows(query: str) -> list[Any]:
                return pg.execute(query).fetchall()

            return _blob_findings(rows, data_dir, files=False, problems=problems)
    path = data_dir / "pillarbox.sqlite3"
    files = "blobs=files" in url
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchall()
        if integrity != [("ok",)]:
            problems.append(f"SQLite integrity check: {integrity[:5]}")
        return _blob_findings(
            lambda query: conn.execute(query).fetchall(), data_dir, files=files, problems=problems
        )
    finally:
        conn.close()


def _blob_findings(
    rows: Callable[[str], list[Any]], data_dir: Path, *, files: bool, problems: list[str]
) -> tuple[list[str], int, int]:
    if (bad := rows(_REFERENCES)[0][0]) != 0:
        problems.append(f"{bad} blob reference counts differ from their rows")
    if (dangling := rows(_DANGLING)[0][0]) != 0:
        problems.append(f"{dangling} message/queue rows name a blob that has no row")
    orphans = int(rows(_UNREFERENCED)[0][0])
    staged = 0
    if files:
        known = {sha for (sha,) in rows("SELECT sha256 FROM blobs WHERE refcount > 0")}
        blob_dir = data_dir / "blobs"
        on_disk = {p.name for p in blob_dir.glob("??/*")}
        if missing := known - on_disk:
            problems.append(f"{len(missing)} blob rows without their file")
        orphans += len(on_disk - known)
        staged = sum(1 for _ in (blob_dir / "tmp").glob("*"))
    elif missing_data := rows(_NO_DATA):
        problems.append(f"{len(missing_data)} blob rows without their bytes")
    return problems, orphans, staged
