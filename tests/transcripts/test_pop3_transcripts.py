"""Plays every ``tests/transcripts/pop3/*.txt`` against the sans-I/O POP3 core.

Transcript format, one item per line:

``C: text``            a client line (sent with CRLF); consecutive C lines are sent together,
                       so a run of them is a pipelined burst (RFC 2449 §6.6)
``S: text``            an expected server line (CRLF implied); compared byte for byte, in order,
                       trailing spaces included (the SASL empty challenge is ``S: + ``)
``-- eof``             the client closes its side
``-- wait N``          N seconds pass without input
``#! key [value…]``    a setting or expectation of the scaffold (see :func:`_load`)
``# …`` / blank        comments

The scaffold application below is test-only: a fixed maildrop for ``mrose`` (and ``test``, the
RFC 5034 examples' user) whose two messages are exactly 120 and 200 octets, as in RFC 1939's
examples; password ``secret``; APOP secret ``tanstaaf`` (RFC 1939 §7's example); PLAIN (RFC 4616)
and a toy two-step mechanism ``X-TWO-STEP`` to exercise multi-round SASL. The same transcripts
are played with input fed whole and byte by byte, and messages supplied whole and in 7-byte
chunks: the wire output must not depend on either.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pillarbox.pop3 import (
    NEED_DATA,
    PAUSED,
    Apop,
    Disconnect,
    MaildropMessage,
    Pop3Limits,
    Pop3Server,
    Pop3Settings,
    Retrieve,
    SaslResponse,
    SaslStart,
    StartTls,
    Update,
    UserPass,
    responses,
)

TRANSCRIPTS = sorted((Path(__file__).parent / "pop3").glob("*.txt"))

UIDVALIDITY = 1234567890
MESSAGES = {
    1001: (
        b"From: Marshall Rose <mrose@dbc.mtview.ca.us>\r\n"
        b"Subject: dewey\r\n"
        b"\r\n"
        b"First body line.\r\n"
        b"Second line here\r\n"
        b".starts with a dot\r\n"
    ),
    1002: (
        b"From: Einar Stefferud <stef@nma.com>\r\n"
        b"To: mrose@dbc.mtview.ca.us\r\n"
        b"Subject: octets\r\n"
        b"\r\n"
        b"line 1\r\n"
        b"line 2\r\n"
        b".\r\n"
        b"line 4\r\n"
        b"line 5: the quick brown fox jumps over the lazy dog\r\n"
        b"line 6: end of the second message\r\n"
    ),
}
PASSWORDS = {"mrose": "secret", "test": "test"}
APOP_SECRETS = {"mrose": "tanstaaf"}


@dataclass
class Transcript:
    items: list[tuple[str, str]]
    hostname: str = "pop.example.com"
    apop: str | None = None
    tls: bool = False
    stls: bool = False
    insecure: bool = False
    sasl: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256")
    expire: int | str | None = None
    login_delay: int | None = None
    implementation: str | None = "Pillarbox"
    max_errors: int = 20
    locked_once: set[str] = field(default_factory=set)
    expect_update: tuple[int, ...] | None = None
    expect_close: str | None = None


def _load(path: Path) -> Transcript:
    transcript = Transcript(items=[])
    for raw in path.read_text(encoding="utf-8").split("\n"):
        if raw.startswith(("C:", "S:")):
            text = raw[2:]
            transcript.items.append((raw[0], text[1:] if text.startswith(" ") else text))
        elif raw.startswith("-- "):
            transcript.items.append(("--", raw[3:]))
        elif raw.startswith("#! "):
            key, _, value = raw[3:].partition(" ")
            match key:
                case "hostname":
                    transcript.hostname = value
                case "apop":
                    transcript.apop = value
                case "tls" | "stls" | "insecure":
                    setattr(transcript, key, True)
                case "sasl":
                    transcript.sasl = tuple(value.split())
                case "expire":
                    transcript.expire = int(value) if value.isdigit() else value
                case "login-delay":
                    transcript.login_delay = int(value)
                case "implementation":
                    transcript.implementation = value or None
                case "max-errors":
                    transcript.max_errors = int(value)
                case "locked-once":
                    transcript.locked_once.add(value)
                case "expect-update":
                    transcript.expect_update = tuple(int(uid) for uid in value.split())
                case "expect-close":
                    transcript.expect_close = value
                case _:
                    raise ValueError(f"{path.name}: unknown directive {key!r}")
        elif raw.strip() and not raw.startswith("#"):
            raise ValueError(f"{path.name}: unparsable line {raw!r}")
    return transcript


class ScaffoldApp:
    """Answers the core's events from the fixed maildrop above."""

    def __init__(self, server: Pop3Server, transcript: Transcript, chunk: int | None) -> None:
        self.server = server
        self.transcript = transcript
        self.locked_once = set(transcript.locked_once)
        self.chunk = chunk
        self.updates: list[tuple[int, ...]] = []
        self.sasl_step = 0
        self.tls_pending = False

    def login(self, user: str, ok: bool) -> None:
        if not ok:
            self.server.reject_login(responses.AUTH_FAILED)
        elif user in self.locked_once:
            self.locked_once.discard(user)
            self.server.reject_login(responses.IN_USE)
        else:
            sizes = [MaildropMessage(uid, len(raw)) for uid, raw in MESSAGES.items()]
            self.server.accept_login(UIDVALIDITY, sizes)

    def handle(self, event: object) -> None:
        match event:
            case UserPass(user, password):
                self.login(user, PASSWORDS.get(user) == password)
            case Apop(user, timestamp, digest):
                secret = APOP_SECRETS.get(user, "")
                expected = hashlib.md5((timestamp + secret).encode()).hexdigest()
                self.login(user, bool(secret) and digest == expected)
            case SaslStart("PLAIN", None):
                self.server.sasl_challenge(b"")
            case SaslStart("PLAIN", data) | SaslResponse(data) if self.sasl_step == 0:
                assert data is not None
                _, user, password = data.decode().split("\0")
                self.login(user, PASSWORDS.get(user) == password)
            case SaslStart("X-TWO-STEP", _):
                self.sasl_step = 1
                self.server.sasl_challenge(b"step one")
            case SaslResponse(data) if self.sasl_step == 1:
                self.sasl_step = 2
                self.server.sasl_challenge(b"got " + data)
            case SaslResponse(b"") if self.sasl_step == 2:
                self.sasl_step = 0
                self.login("mrose", True)
            case StartTls():
                # The handshake happens once the burst that carried STLS has arrived: whatever
                # came with it was sent in the clear (see rfc2595_stls_injection.txt).
                self.tls_pending = True
            case Retrieve(_, uid, _):
                raw = MESSAGES[uid]
                size = self.chunk or len(raw)
                for start in range(0, len(raw), size):
                    if not self.server.message_chunk(raw[start : start + size]):
                        break
                self.server.end_message()
            case Update(deleted):
                self.updates.append(deleted)
                self.server.complete_update()
            case _:
                raise AssertionError(f"unexpected event {event!r}")


def _runs(items: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """Consecutive C lines (a pipelined burst) and S lines grouped; each -- line alone."""
    runs: list[tuple[str, list[str]]] = []
    for kind, text in items:
        if runs and kind in ("C", "S") and runs[-1][0] == kind:
            runs[-1][1].append(text)
        else:
            runs.append((kind, [text]))
    return runs


def _play(path: Path, bytewise: bool, chunk: int | None) -> None:
    transcript = _load(path)
    settings = Pop3Settings(
        hostname=transcript.hostname,
        apop=transcript.apop is not None,
        sasl_mechanisms=transcript.sasl,
        expire=transcript.expire,  # type: ignore[arg-type]
        login_delay=transcript.login_delay,
        implementation=transcript.implementation,
        limits=Pop3Limits(max_errors=transcript.max_errors),
    )
    clock = 0.0
    server = Pop3Server(
        settings,
        now=clock,
        tls_active=transcript.tls,
        starttls_available=transcript.stls,
        insecure_auth_allowed=transcript.insecure,
        apop_timestamp=transcript.apop,
    )
    app = ScaffoldApp(server, transcript, chunk)
    disconnect: Disconnect | None = None

    def pump() -> None:
        nonlocal clock, disconnect
        while True:
            event = server.next_event()
            if event is NEED_DATA:
                return
            if event is PAUSED:
                if app.tls_pending:
                    return
                deadline = server.deadline()
                assert deadline is not None, "paused with nothing to wait for"
                clock = max(clock, deadline)
                server.handle_timeout(clock)
            elif isinstance(event, Disconnect):
                disconnect = event
                return
            else:
                app.handle(event)

    output = bytearray()
    expected = bytearray()
    for kind, texts in _runs(transcript.items):
        if kind == "C":
            burst = b"".join(text.encode() + b"\r\n" for text in texts)
            for piece in [burst[i : i + 1] for i in range(len(burst))] if bytewise else [burst]:
                server.receive_data(piece, clock)
                pump()
        elif kind == "S":
            expected += b"".join(text.encode() + b"\r\n" for text in texts)
        elif texts == ["eof"]:
            server.receive_data(b"", clock)
        else:
            clock += float(texts[0].removeprefix("wait "))
            server.handle_timeout(clock)
        pump()
        if app.tls_pending:
            app.tls_pending = False
            server.tls_started()
            pump()
        output += server.data_to_send(clock)
        if kind == "S":
            # Everything expected so far has been produced, and nothing more.
            assert output.decode() == expected.decode()
    assert output.decode() == expected.decode()
    assert app.updates == ([] if transcript.expect_update is None else [transcript.expect_update])
    if transcript.expect_close is None:
        assert disconnect is None, f"unexpected {disconnect}"
    else:
        assert disconnect is not None
        assert disconnect.reason.value == transcript.expect_close


def test_transcripts_exist() -> None:
    assert len(TRANSCRIPTS) >= 20


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[path.stem for path in TRANSCRIPTS])
@pytest.mark.parametrize(
    ("bytewise", "chunk"), [(False, None), (True, 7)], ids=["whole", "bytewise-chunked"]
)
def test_transcript(path: Path, bytewise: bool, chunk: int | None) -> None:
    _play(path, bytewise, chunk)
