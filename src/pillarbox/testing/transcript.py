"""SMTP ``C:``/``S:`` transcripts: one file format, replayed on the sans-I/O core (here) and,
by the network tests, on the live server over a socket.

Format, one item per line (blank lines and ``#`` comments ignored)::

    @ set starttls=true auth_mechanisms=PLAIN   server settings the transcript needs
    @ reject rcpt *unknown@* 550 5.1.1 mailbox unavailable
                                                 the application refuses MAIL/RCPT whose
                                                 normalised address matches the glob (stage
                                                 ``mail``, ``rcpt``, ``data`` (any message) or
                                                 ``hello``)
    @ reject delivery *full@* 452 4.2.2 mailbox full
                                                 LMTP: that recipient's reply after the data
                                                 (the others get 250; RFC 2033 §4.2)
    @ user alice secret                          an account for AUTH PLAIN (the password is
                                                 the rest of the line)
    C: EHLO client.example                       client line; CRLF is appended
    C> DATA\\r\\nbody\\n.\\n                        raw client bytes, Python escapes, no CRLF added
    S: 250-*                                     one expected reply line; ``*`` matches any run
    S! closed                                    the server closes the connection here
    T: 301                                       let 301 seconds of silence pass
    M> body\\r\\n                                 the last accepted message's content (core only)

Consecutive ``C:``/``C>`` items are sent in one write, so they are pipelined. Each group of
``S:`` lines is awaited in full before the next write. A live replay maps ``@ set`` to the
listener's configuration, performs a real TLS handshake after a 220 reply to STARTTLS, sleeps
for ``T:`` (with timeouts configured short) and may check ``M>`` against the store.
"""

from __future__ import annotations

import fnmatch
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace

from pillarbox.smtp import replies as R
from pillarbox.smtp.grammar import Auth, Hello, MailFrom, RcptTo, StartTls
from pillarbox.smtp.replies import Reply
from pillarbox.smtp.sentinels import PAUSED, Sentinel
from pillarbox.smtp.server import (
    AuthResponse,
    BareLinebreakPolicy,
    DataChunk,
    DataEnd,
    DataStart,
    Mode,
    ServerConnection,
    SmtpServerSettings,
    State,
)


class TranscriptMismatch(AssertionError):
    """The server's output differs from the transcript."""


@dataclass(frozen=True, slots=True)
class Rule:
    """``@ reject STAGE GLOB CODE ENHANCED TEXT``."""

    stage: str
    pattern: str
    reply: Reply


@dataclass(frozen=True, slots=True)
class Step:
    """Bytes to send, then reply lines to await (or the close, or a pause)."""

    send: bytes = b""
    expect: tuple[str, ...] = ()
    expect_close: bool = False
    wait: float = 0.0
    message: bytes | None = None


@dataclass(frozen=True, slots=True)
class Transcript:
    name: str
    settings: dict[str, str] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    users: dict[str, str] = field(default_factory=dict)
    steps: tuple[Step, ...] = ()


def parse_transcript(text: str, name: str = "") -> Transcript:
    settings: dict[str, str] = {}
    rules: list[Rule] = []
    users: dict[str, str] = {}
    steps: list[Step] = []
    send = bytearray()
    expect: list[str] = []

    def flush() -> None:
        if send or expect:
            steps.append(Step(bytes(send), tuple(expect)))
            send.clear()
            expect.clear()

    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        tag, rest = line[:2], line[3:]
        if tag in ("C:", "C>"):
            if expect:
                flush()
            send += (rest + "\r\n").encode() if tag == "C:" else _unescape(rest)
        elif tag == "S:":
            expect.append(rest)
        elif tag in ("S!", "T:", "M>"):
            flush()
            if tag == "S!":
                steps.append(Step(expect_close=True))
            elif tag == "T:":
                steps.append(Step(wait=float(rest)))
            else:
                steps.append(Step(message=_unescape(rest)))
        elif line.startswith("@ "):
            words = line[2:].split()
            if words[0] == "set":
                settings.update(w.split("=", 1) for w in words[1:])  # type: ignore[misc]
            elif words[0] == "reject":
                code, enhanced = int(words[3]), words[4]
                rules.append(Rule(words[1], words[2], Reply(code, enhanced, " ".join(words[5:]))))
            elif words[0] == "user":
                users[words[1]] = " ".join(words[2:])
            else:
                raise ValueError(f"{name}:{number}: unknown directive {words[0]!r}")
        else:
            raise ValueError(f"{name}:{number}: cannot parse {line!r}")
    flush()
    return Transcript(name, settings, tuple(rules), users, tuple(steps))


def _unescape(text: str) -> bytes:
    return text.encode("latin-1").decode("unicode_escape").encode("latin-1")


def match_line(pattern: str, line: str) -> bool:
    """``*`` in ``pattern`` matches any run of characters; everything else is literal."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, line, re.DOTALL) is not None


def server_settings(transcript: Transcript) -> SmtpServerSettings:
    """``SmtpServerSettings`` with the transcript's ``@ set`` overrides applied."""
    base = SmtpServerSettings(hostname="mx.test")
    types = {f.name: f.type for f in fields(SmtpServerSettings)}
    overrides: dict[str, object] = {}
    for key, value in transcript.settings.items():
        kind = str(types[key])
        if key == "mode":
            overrides[key] = Mode(value)
        elif key == "bare_linebreaks":
            overrides[key] = BareLinebreakPolicy(value)
        elif "bool" in kind:
            overrides[key] = value == "true"
        elif "tuple" in kind:
            overrides[key] = tuple(value.split(","))
        elif "float" in kind:
            overrides[key] = float(value)
        elif "int" in kind:
            overrides[key] = None if value == "none" else int(value)
        else:
            overrides[key] = value
    return replace(base, **overrides)  # type: ignore[arg-type]


class _ScriptedApplication:
    """The application side for core replays: accepts everything but what ``@ reject`` names,
    checks AUTH PLAIN against ``@ user``, keeps message bodies."""

    def __init__(self, transcript: Transcript, conn: ServerConnection) -> None:
        self.transcript = transcript
        self.conn = conn
        self.body = bytearray()
        self.messages: list[bytes] = []

    def _rule(self, stage: str, subject: str) -> Reply | None:
        for rule in self.transcript.rules:
            if rule.stage == stage and fnmatch.fnmatchcase(subject, rule.pattern):
                return rule.reply
        return None

    def run(self) -> None:
        conn = self.conn
        while True:
            event = conn.next_event()
            if event is PAUSED and conn.state is State.TLS:
                return  # the "handshake" follows once the client's write is delivered
            if event is not PAUSED:
                if isinstance(event, Sentinel):
                    return
                self._observe(event)
                continue
            pending = conn.pending
            refusal: Reply | None = None
            if isinstance(pending, MailFrom | RcptTo):
                stage = "mail" if isinstance(pending, MailFrom) else "rcpt"
                refusal = self._rule(stage, str(pending.path)[1:-1])
            elif isinstance(pending, Hello):
                refusal = self._rule("hello", pending.domain)
            elif isinstance(pending, DataEnd):
                refusal = self._rule("data", "*")
                if refusal is None:
                    self.messages.append(bytes(self.body))
                if refusal is None and conn.settings.mode is Mode.LMTP:
                    conn.respond_per_recipient(
                        [
                            self._rule("delivery", str(rcpt)[1:-1]) or R.MESSAGE_ACCEPTED
                            for rcpt in pending.recipients
                        ]
                    )
                    continue
            elif isinstance(pending, Auth | AuthResponse):
                self._auth(pending)
                continue
            elif not isinstance(pending, StartTls):
                raise AssertionError(f"unexpected decision {pending!r}")
            if refusal is None:
                conn.accept()
            else:
                conn.reject(refusal)

    def _observe(self, event: object) -> None:
        if isinstance(event, DataStart):
            self.body.clear()
        elif isinstance(event, DataChunk):
            self.body += event.data

    def _auth(self, pending: Auth | AuthResponse) -> None:
        if isinstance(pending, Auth) and pending.mechanism != "PLAIN":
            self.conn.reject(R.MECHANISM_UNKNOWN)
            return
        response = pending.initial_response if isinstance(pending, Auth) else pending.data
        if response is None:
            self.conn.challenge(b"")
            return
        parts = response.split(b"\0")
        ok = len(parts) == 3 and self.transcript.users.get(parts[1].decode()) == parts[2].decode()
        if ok:
            self.conn.accept()
        else:
            self.conn.reject(R.AUTH_FAILED)


def run_on_core(transcript: Transcript, *, chunk_size: int | None = None) -> list[bytes]:
    """Replay ``transcript`` on a :class:`ServerConnection`; raise :class:`TranscriptMismatch`
    at the first difference. ``chunk_size`` feeds client bytes in pieces of that size.
    Returns the messages the scripted application accepted."""
    conn = ServerConnection(server_settings(transcript))
    app = _ScriptedApplication(transcript, conn)
    now = 0.0
    ready = R.lmtp_ready if conn.settings.mode is Mode.LMTP else R.service_ready
    conn.greet(ready(conn.settings.hostname))
    output = conn.data_to_send(now).decode("utf-8")
    pending_lines = output.split("\r\n")[:-1]
    for step in transcript.steps:
        if step.send:
            size = chunk_size or len(step.send)
            for i in range(0, len(step.send), size):
                conn.receive_data(step.send[i : i + size], now)
                app.run()
        if conn.state is State.TLS:
            # The handshake happens once the client's write is out: what it wrote after
            # STARTTLS in the same write was plaintext and is gone (RFC 3207 §4.2).
            conn.tls_established()
            app.run()
        if step.wait:
            now += step.wait
            conn.handle_timeout(now)
            app.run()
        app.run()
        pending_lines += conn.data_to_send(now).decode("utf-8").split("\r\n")[:-1]
        for pattern in step.expect:
            if not pending_lines:
                raise TranscriptMismatch(f"{transcript.name}: expected {pattern!r}, got nothing")
            line = pending_lines.pop(0)
            if not match_line(pattern, line):
                raise TranscriptMismatch(f"{transcript.name}: expected {pattern!r}, got {line!r}")
        if step.expect_close and conn.state is not State.CLOSED:
            raise TranscriptMismatch(f"{transcript.name}: expected the server to close")
        if step.message is not None and (not app.messages or app.messages[-1] != step.message):
            got = app.messages[-1] if app.messages else None
            raise TranscriptMismatch(f"{transcript.name}: message {got!r} != {step.message!r}")
    if pending_lines:
        raise TranscriptMismatch(f"{transcript.name}: unexpected output {pending_lines!r}")
    return app.messages


def run_on_socket(
    transcript: Transcript,
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None = None,
    timeout: float = 10.0,
    last_message: Callable[[], bytes | None] | None = None,
) -> None:
    """Replay ``transcript`` against a live server over TCP (the transcript's ``@`` directives
    must already hold for that server: its accounts, limits and offers).

    After a 220 reply to a STARTTLS, the socket is wrapped in TLS with ``tls`` (the client's
    remaining bytes of that write were sent in plaintext before the handshake and must have been
    discarded by the server). ``M>`` is checked with ``last_message`` (the live server adds
    trace fields on top, so the stored message must end with the expected content); ``T:``
    items are core-only and rejected here.
    """
    sock: socket.socket = socket.create_connection((host, port), timeout=timeout)
    reader = LineReader(sock)
    try:
        for step in transcript.steps:
            if step.wait:
                raise ValueError(f"{transcript.name}: T: items cannot be replayed live")
            if step.send:
                sock.sendall(step.send)
            for pattern in step.expect:
                line = reader.line()
                if line is None:
                    raise TranscriptMismatch(f"{transcript.name}: expected {pattern!r}, got EOF")
                if not match_line(pattern, line):
                    raise TranscriptMismatch(
                        f"{transcript.name}: expected {pattern!r}, got {line!r}"
                    )
                if line.startswith("220 ") and b"STARTTLS" in step.send.upper():
                    if tls is None:
                        raise ValueError(f"{transcript.name}: STARTTLS needs a TLS context")
                    sock = tls.wrap_socket(sock, server_hostname=None)
                    reader = LineReader(sock)
            if step.expect_close and reader.line() is not None:
                raise TranscriptMismatch(f"{transcript.name}: expected the server to close")
            if step.message is not None:
                stored = last_message() if last_message else None
                if stored is None or not stored.endswith(step.message):
                    raise TranscriptMismatch(f"{transcript.name}: message {stored!r}")
        sock.settimeout(0.3)
        try:
            extra = reader.line()
        except TimeoutError:
            extra = None
        if extra is not None:
            raise TranscriptMismatch(f"{transcript.name}: unexpected output {extra!r}")
    finally:
        sock.close()


class LineReader:
    """CRLF-terminated reply lines from a blocking socket: the live half of every protocol's
    transcript tests (SMTP here; IMAP and ManageSieve in tests/transcripts)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        #: Bytes received after the last line returned.
        self.buffer = b""

    def line(self) -> str | None:
        """The next line, or None when the server closed the connection first."""
        while b"\r\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line.decode("utf-8", "replace")

    def lines(self, count: int) -> list[str]:
        """The next ``count`` lines; AssertionError if the connection closes before."""
        out: list[str] = []
        while len(out) < count:
            line = self.line()
            if line is None:
                raise AssertionError(f"connection closed; got {out!r}")
            out.append(line)
        return out

    def closed(self) -> bool:
        """Whether the server closed the connection with nothing more to read."""
        try:
            return self.buffer == b"" and self.sock.recv(1) == b""
        except (ConnectionResetError, ssl.SSLError):
            return True


def unverified_client_tls() -> ssl.SSLContext:
    """A client context that accepts the live server's self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def compare_lines(
    name: str,
    pending: list[str],
    expect: list[str],
    matches: Callable[[str, str], bool] = match_line,
) -> None:
    """Take ``expect``'s lines off the front of ``pending``, each matching its pattern
    (AssertionError naming the transcript otherwise): the comparison of the IMAP and
    ManageSieve transcripts, whose expected lines may arrive with others still pending."""
    for pattern in expect:
        assert pending, f"{name}: expected {pattern!r}, got nothing more"
        line = pending.pop(0)
        assert matches(pattern, line), f"{name}: expected {pattern!r}, got {line!r}"


class CollectedOutput:
    """An ``Output`` for a session core run in a test: everything written, kept in order."""

    def __init__(self) -> None:
        self.data = bytearray()

    async def write(self, data: bytes) -> None:
        self.data += data
