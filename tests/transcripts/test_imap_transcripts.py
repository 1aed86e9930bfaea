"""Plays every ``tests/transcripts/imap/*.txt`` on the sans-I/O session core (with a real SQLite
store) and on the live server over a loopback socket: the wire output must be the same.

Transcript format, one item per line (blank lines and ``#`` comments ignored):

``C: text``              a client line, CRLF appended; consecutive C lines go in one write
                         (pipelined); a literal's data is simply the next C line
``C> text``              raw client bytes with Python escapes, nothing appended
``S: text``              an expected server line; ``*`` matches any run of characters, except
                         the leading ``* `` of an untagged response, which is literal
``S! closed``            the server closes the connection here
``S! starttls``          the client performs the TLS handshake here (after STARTTLS's OK)
``T: seconds``           that much silence passes (core only: the live timer is 30 minutes)
``D: mailbox raw``       a message (Python escapes) is delivered through the store right now
``E: uid``               another client moves INBOX's message ``uid`` to Trash (an expunge)
``F: uid flag``          another client adds ``flag`` to INBOX's message ``uid``
``O: verb NAME [NEW]``   another client's ``create``, ``delete``, ``rename``, ``subscribe`` or
                         ``unsubscribe`` of mailbox NAME
``A: NAME ENTRY [VALUE]`` another client's SETMETADATA of ENTRY on mailbox NAME (``""``: the
                         server entries) to VALUE (Python escapes), or without VALUE its removal
``P: mailbox raw``       a message is delivered to the peer's mailbox right now (RFC 4314)
``@ sample N``           before connecting, N numbered sample messages are delivered to INBOX
``@ mailbox NAME``       before connecting, mailbox NAME is created
``@ core-only``          the transcript needs a clock (T:) and only runs on the core
``@ set key=value``      an ``[imap]`` setting: ``login_without_tls``, ``max_errors``,
                         ``notify_max_mailboxes``, ``metadata_max_value_size``,
                         ``metadata_max_entries``, ``metadata_max_total``, ``metadata_admin``
``@ tls``                the connection starts in TLS (port 993 live)
``@ peer-mailbox NAME``  before connecting, a second account, ``$PEER``, gets mailbox NAME
``@ peer-acl NAME RIGHTS [WHO]`` before connecting, the peer grants ``$USER`` (or WHO:
                         ``anyone``, ``-anyone``, ``-$USER``; "-" for a negative entry,
                         RFC 4314 §2) RIGHTS on NAME

``$(name)`` in an S line captures a server-assigned object id (``[A-Za-z0-9_-]+``, RFC 8474
§4) the first time, and must be that same id after; in a C line it is replaced by the id
captured: a transcript can show two messages sharing an id and search by it, byte for byte,
whatever numbering the store is at.

``$USER`` and ``$PASS`` stand for a fresh account made for each transcript and its password,
``$PLAIN`` for their SASL PLAIN response in base64 (RFC 4616), ``$PEER`` for a second account
(made with each transcript; RFC 4314 sharing).
"""

from __future__ import annotations

import base64
import dataclasses
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox import provisioning
from pillarbox.imap.acl import is_special, split_negative
from pillarbox.imap.session import Action
from pillarbox.mail.parse import parse_message
from pillarbox.store.interface import Store
from pillarbox.store.open import open_store
from pillarbox.store.types import (
    INBOX,
    Change,
    ChangeKind,
    DeliveryTarget,
    FlagOp,
    MetadataLimits,
)
from pillarbox.testing.imapcore import core_session
from pillarbox.testing.live import TEST_PASSWORD, LiveServerPool, loopback_config
from pillarbox.testing.transcript import (
    CollectedOutput,
    LineReader,
    compare_lines,
    unverified_client_tls,
)

TRANSCRIPTS = sorted((Path(__file__).parent / "imap").glob("*.txt"))


@dataclass
class Step:
    send: bytes = b""
    expect: list[str] = field(default_factory=list)
    close: bool = False
    starttls: bool = False
    wait: float = 0.0
    deliver: tuple[str, bytes] | None = None
    #: Another client's change: ("expunge", uid, "") or ("flag", uid, flag).
    other: tuple[str, int, str] | None = None
    #: Another client's mailbox operation: (verb, name, new name or "").
    mailbox_op: tuple[str, str, str] | None = None
    #: Another client's SETMETADATA: (mailbox or "", entry, value or None).
    metadata: tuple[str, str, bytes | None] | None = None
    #: A delivery to the peer's mailbox: (mailbox, raw).
    peer_deliver: tuple[str, bytes] | None = None


@dataclass
class Transcript:
    name: str
    steps: list[Step]
    samples: int = 0
    mailboxes: list[str] = field(default_factory=list)
    core_only: bool = False
    tls: bool = False
    settings: dict[str, str] = field(default_factory=dict)
    #: Whether the transcript uses the second account (made only then).
    peer: bool = False
    peer_mailboxes: list[str] = field(default_factory=list)
    #: (peer's mailbox, rights granted to the transcript's user).
    peer_acl: list[tuple[str, str, str]] = field(default_factory=list)


def peer_of(user: str) -> str:
    """The second account of a transcript."""
    local, _, domain = user.partition("@")
    return f"{local}-peer@{domain}"


def _unescape(text: str) -> bytes:
    return text.encode("latin-1").decode("unicode_escape").encode("latin-1")


def load(path: Path, user: str) -> Transcript:
    transcript = Transcript(path.stem, [])
    send = bytearray()
    expect: list[str] = []

    def flush() -> None:
        if send or expect:
            transcript.steps.append(Step(bytes(send), list(expect)))
            send.clear()
            expect.clear()

    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        plain = base64.b64encode(f"\0{user}\0{TEST_PASSWORD}".encode()).decode()
        line = line.replace("$USER", user).replace("$PASS", TEST_PASSWORD)
        transcript.peer = transcript.peer or "$PEER" in line or line.startswith(("@ peer", "P:"))
        line = line.replace("$PLAIN", plain).replace("$PEER", peer_of(user))
        if not line.strip() or line.startswith("#"):
            continue
        tag, rest = line[:2], line[3:]
        if tag in ("C:", "C>"):
            if expect:
                flush()
            send += (rest + "\r\n").encode() if tag == "C:" else _unescape(rest)
        elif tag == "S:":
            expect.append(rest)
        elif tag in ("S!", "T:", "D:", "E:", "F:", "O:", "A:", "P:"):
            flush()
            if tag == "S!":
                if rest not in ("closed", "starttls"):
                    raise ValueError(f"{path.name}:{number}: unknown S! {rest!r}")
                transcript.steps.append(Step(close=rest == "closed", starttls=rest == "starttls"))
            elif tag == "T:":
                transcript.steps.append(Step(wait=float(rest)))
            elif tag == "E:":
                transcript.steps.append(Step(other=("expunge", int(rest), "")))
            elif tag == "F:":
                uid, flag = rest.split()
                transcript.steps.append(Step(other=("flag", int(uid), flag)))
            elif tag == "A:":
                name, entry, *value = rest.split(" ", 2)
                mailbox = "" if name == '""' else name
                data = _unescape(value[0]) if value else None
                transcript.steps.append(Step(metadata=(mailbox, entry, data)))
            elif tag == "O:":
                verb, name, *new = rest.split()
                transcript.steps.append(Step(mailbox_op=(verb, name, "".join(new))))
            elif tag == "P:":
                mailbox, _, raw = rest.partition(" ")
                transcript.steps.append(Step(peer_deliver=(mailbox, _unescape(raw))))
            else:
                mailbox, _, raw = rest.partition(" ")
                transcript.steps.append(Step(deliver=(mailbox, _unescape(raw))))
        elif line.startswith("@ "):
            words = line[2:].split()
            if words[0] == "sample":
                transcript.samples = int(words[1])
            elif words[0] == "mailbox":
                transcript.mailboxes.append(words[1])
            elif words[0] == "core-only":
                transcript.core_only = True
            elif words[0] == "tls":
                transcript.tls = True
            elif words[0] == "peer-mailbox":
                transcript.peer_mailboxes.append(words[1])
            elif words[0] == "peer-acl":
                transcript.peer_acl.append((words[1], words[2], (*words[3:], "$USER")[0]))
            elif words[0] == "set":
                transcript.settings.update(w.split("=", 1) for w in words[1:])  # type: ignore[misc]
            else:
                raise ValueError(f"{path.name}:{number}: unknown directive {words[0]!r}")
        else:
            raise ValueError(f"{path.name}:{number}: cannot parse {line!r}")
    flush()
    return transcript


_CAPTURE = re.compile(r"\$\(([a-z0-9_]+)\)")


class Captures:
    """The ids one run of a transcript captured (``$(name)``), and line matching with them."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def matches(self, pattern: str, line: str) -> bool:
        """``*`` is a wildcard except as the untagged-response marker at the start of a line."""
        literal_star = pattern.startswith("* ")
        body = pattern[2:] if literal_star else pattern
        regex = ".*".join(self._part(part) for part in body.split("*"))
        found = re.fullmatch(("\\* " if literal_star else "") + regex, line, re.DOTALL)
        if found is None:
            return False
        self.values.update(found.groupdict())
        return True

    def _part(self, text: str) -> str:
        pieces: list[str] = []
        opened: set[str] = set()
        last = 0
        for capture in _CAPTURE.finditer(text):
            pieces.append(re.escape(text[last : capture.start()]))
            name = capture.group(1)
            if name in self.values:
                pieces.append(re.escape(self.values[name]))
            elif name in opened:
                pieces.append(f"(?P={name})")
            else:
                opened.add(name)
                pieces.append(f"(?P<{name}>[A-Za-z0-9_-]+)")
            last = capture.end()
        pieces.append(re.escape(text[last:]))
        return "".join(pieces)

    def fill(self, data: bytes) -> bytes:
        """A client write with each ``$(name)`` replaced by its captured id."""
        return _CAPTURE.sub(
            lambda found: self.values[found.group(1)], data.decode("latin-1")
        ).encode("latin-1")


def sample(n: int) -> bytes:
    """Sample message n: 7-bit, deterministic size."""
    return (
        f"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
        f"From: Sender {n} <sender{n}@example.net>\r\n"
        f"To: Recipient <recipient@example.org>\r\n"
        f"Subject: message {n}\r\n"
        f"Message-ID: <m{n}@example.net>\r\n"
        f"\r\n"
        f"body of message {n}\r\n"
    ).encode()


async def prepare(store: Store, transcript: Transcript, user: str) -> None:
    account = await store.get_account(user)
    assert account is not None
    for name in transcript.mailboxes:
        await store.create_mailbox(account.id, name)
    for n in range(1, transcript.samples + 1):
        raw = sample(n)
        await store.deliver(raw, parse_message(raw), [DeliveryTarget(account.id)])
    peer = await store.get_account(peer_of(user))
    if peer is None:
        return
    for name in transcript.peer_mailboxes:
        await store.create_mailbox(peer.id, name)
    for name, rights, who in transcript.peer_acl:
        identifier, negative = split_negative(who)
        grantee = identifier if is_special(identifier) else account.id
        mailbox = await store.get_mailbox(peer.id, name)
        await store.set_acl(mailbox.id, grantee, rights, negative=negative)


async def remove_peer(store: Store, user: str) -> None:
    """The peer goes after a live transcript, and with it its mailboxes and their entries: an
    "anyone" entry (RFC 4314 §2) would otherwise reach the next transcripts' users, whose LIST
    would show it (the live server is shared)."""
    peer = await store.get_account(peer_of(user))
    if peer is not None:
        await store.remove_account(peer.id)


async def _hint(store: Store, account_id: int, mailbox_id: int, kind: ChangeKind) -> Change:
    """A hint as the feed carries it: with the MODSEQ the mailbox reached (a session ignores
    hints its view has already taken in)."""
    status = await store.mailbox_status(mailbox_id)
    return Change(account_id, mailbox_id, kind, status.mailbox.highestmodseq)


async def deliver(store: Store, user: str, mailbox: str, raw: bytes) -> list[Change]:
    """Deliver ``raw``; the change-feed hints the adapter would pass on (as do the others)."""
    account = await store.get_account(user)
    assert account is not None
    [result] = await store.deliver(raw, parse_message(raw), [DeliveryTarget(account.id, mailbox)])
    assert result.record is not None
    box = await store.get_mailbox(account.id, mailbox)
    return [await _hint(store, account.id, box.id, ChangeKind.EXISTS)]


async def other_client(store: Store, user: str, change: tuple[str, int, str]) -> list[Change]:
    account = await store.get_account(user)
    assert account is not None
    inbox = await store.get_mailbox(account.id, INBOX)
    kind, uid, flag = change
    if kind == "expunge":  # a MOVE: one atomic change, so the timing of hints cannot matter
        trash = await store.get_mailbox(account.id, "Trash")
        await store.move_messages(inbox.id, [uid], trash.id)
        return [
            await _hint(store, account.id, inbox.id, ChangeKind.EXPUNGE),
            await _hint(store, account.id, trash.id, ChangeKind.EXISTS),
        ]
    await store.store_flags(inbox.id, [uid], FlagOp.ADD, frozenset({flag}))
    return [await _hint(store, account.id, inbox.id, ChangeKind.FLAGS)]


async def mailbox_op(store: Store, user: str, op: tuple[str, str, str]) -> list[Change]:
    account = await store.get_account(user)
    assert account is not None
    verb, name, new_name = op
    if verb in ("subscribe", "unsubscribe"):
        await store.set_subscribed(account.id, name, verb == "subscribe")
        return [Change(account.id, 0, ChangeKind.SUBSCRIPTIONS, 0)]
    if verb == "create":
        mailbox = await store.create_mailbox(account.id, name)
    elif verb == "rename":
        mailbox = await store.get_mailbox(account.id, name)
        await store.rename_mailbox(account.id, name, new_name)
    else:
        mailbox = await store.get_mailbox(account.id, name)
        await store.delete_mailbox(mailbox.id)
    return [Change(account.id, mailbox.id, ChangeKind.MAILBOXES, 0)]


async def set_metadata(
    store: Store, user: str, change: tuple[str, str, bytes | None]
) -> list[Change]:
    account = await store.get_account(user)
    assert account is not None
    name, entry, value = change
    mailbox_id = None if name == "" else (await store.get_mailbox(account.id, name)).id
    limits = MetadataLimits(max_entries=1000, max_total=10**9)
    await store.set_metadata(account.id, mailbox_id, {entry: value}, limits)
    return [Change(account.id, mailbox_id or 0, ChangeKind.METADATA, 0)]


def _config(tmp: Path, transcript: Transcript) -> cfg.Config:
    base = loopback_config(tmp, only=["imap", "imaps"])
    settings = transcript.settings
    imap = dataclasses.replace(
        base.imap,
        metadata_max_value_size=int(
            settings.get("metadata_max_value_size", base.imap.metadata_max_value_size)
        ),
        metadata_max_entries=int(
            settings.get("metadata_max_entries", base.imap.metadata_max_entries)
        ),
        metadata_max_total=int(settings.get("metadata_max_total", base.imap.metadata_max_total)),
        metadata_admin=settings.get("metadata_admin", base.imap.metadata_admin),
        login_without_tls=transcript.settings.get("login_without_tls", "true") == "true",
        max_errors=int(transcript.settings.get("max_errors", base.imap.max_errors)),
        notify_max_mailboxes=int(
            transcript.settings.get("notify_max_mailboxes", base.imap.notify_max_mailboxes)
        ),
    )
    return dataclasses.replace(base, imap=imap)


# -- the core ---------------------------------------------------------------------------------


async def run_on_core(transcript: Transcript, tmp: Path, user: str) -> None:
    config = _config(tmp, transcript)
    store = open_store("sqlite:", tmp)
    await store.open()
    try:
        await provisioning.add_domain(store, "example.org")
        await provisioning.add_account(store, config, user, TEST_PASSWORD)
        if transcript.peer:
            await provisioning.add_account(store, config, peer_of(user), TEST_PASSWORD)
        await prepare(store, transcript, user)

        now = time.time()
        session = core_session(store, config, now=now, tls_active=transcript.tls)
        captures = Captures()
        out = CollectedOutput()
        out.data += session.greeting()
        pending: list[str] = []
        closed = False
        for step in transcript.steps:
            changes: list[Change] = []
            if step.deliver is not None:
                changes += await deliver(store, user, *step.deliver)
            if step.other is not None:
                changes += await other_client(store, user, step.other)
            if step.mailbox_op is not None:
                changes += await mailbox_op(store, user, step.mailbox_op)
            if step.metadata is not None:
                changes += await set_metadata(store, user, step.metadata)
            if step.peer_deliver is not None:  # the feed carries a watched mailbox's changes
                changes += await deliver(store, peer_of(user), *step.peer_deliver)
            if changes:
                # What the adapter does on a change-feed wake-up.
                for change in changes:
                    session.notify(change)
                if session.wants_push:
                    pushed = await session.push_updates(out, now)
                    closed = closed or pushed is Action.CLOSE
            if step.wait:
                now += step.wait
                bye = session.handle_timeout(now)
                if bye is not None:
                    out.data += bye
                    closed = True
            if step.send:
                assert not closed, f"{transcript.name}: sending after close"
                action = await session.receive_data(captures.fill(step.send), out, now)
                if action is Action.START_TLS:
                    session.tls_started()
                closed = closed or action is Action.CLOSE
            text = out.data.decode("utf-8", "replace")
            out.data.clear()
            pending += text.split("\r\n")[:-1]
            compare_lines(transcript.name, pending, step.expect, captures.matches)
            if step.close:
                assert closed, f"{transcript.name}: expected the server to close"
        assert not pending, f"{transcript.name}: unexpected output {pending!r}"
    finally:
        await store.close()


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
async def test_transcript_on_core(path: Path, tmp_path: Path) -> None:
    user = f"{path.stem.replace('_', '-')}@example.org"
    await run_on_core(load(path, user), tmp_path, user)


# -- the live server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def servers() -> Iterator[LiveServerPool]:
    pool = LiveServerPool()
    yield pool
    pool.close()


LIVE = [p for p in TRANSCRIPTS if "@ core-only" not in p.read_text(encoding="utf-8")]


@pytest.mark.parametrize("path", LIVE, ids=[p.stem for p in LIVE])
def test_transcript_live(path: Path, servers: LiveServerPool, tmp_path: Path) -> None:
    user = f"{path.stem.replace('_', '-')}@example.org"
    transcript = load(path, user)
    server = servers.get(transcript.settings, lambda: _config(tmp_path / "live", transcript))
    server.add_account(user, TEST_PASSWORD)
    if transcript.peer:
        server.add_account(peer_of(user), TEST_PASSWORD)
    server.call(prepare(server.store, transcript, user))
    port = server.port("imaps" if transcript.tls else "imap")
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if transcript.tls:
        sock = unverified_client_tls().wrap_socket(sock)
    reader = LineReader(sock)
    captures = Captures()
    pending = reader.lines(1)
    try:
        for step in transcript.steps:
            if step.deliver is not None:
                server.call(deliver(server.store, user, *step.deliver))
            if step.other is not None:
                server.call(other_client(server.store, user, step.other))
            if step.mailbox_op is not None:
                server.call(mailbox_op(server.store, user, step.mailbox_op))
            if step.metadata is not None:
                server.call(set_metadata(server.store, user, step.metadata))
            if step.peer_deliver is not None:
                server.call(deliver(server.store, peer_of(user), *step.peer_deliver))
            if step.send:
                sock.sendall(captures.fill(step.send))
            pending += reader.lines(max(0, len(step.expect) - len(pending)))
            compare_lines(transcript.name, pending, step.expect, captures.matches)
            if step.starttls:
                sock = unverified_client_tls().wrap_socket(sock)
                reader = LineReader(sock)
            if step.close:
                assert reader.closed(), f"{transcript.name}: expected the server to close"
        assert not pending and not reader.buffer, f"{transcript.name}: unexpected {pending!r}"
    finally:
        sock.close()
        if transcript.peer:
            server.call(remove_peer(server.store, user))


def test_there_are_transcripts() -> None:
    assert len(TRANSCRIPTS) >= 20
