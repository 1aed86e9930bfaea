"""The client role of the sans-I/O SMTP core, used by outbound delivery.

Implementation notes
--------------------
RFCs: 5321, 2920 (PIPELINING), 3030 (CHUNKING), 3461 (DSN parameters), 6531 (SMTPUTF8),
3207 (STARTTLS), 4954 (AUTH), 1870 (SIZE), 9422 (LIMITS).

Invariants:

* Replies are matched to commands strictly in order: every command written is appended to an
  in-flight queue, every complete reply answers its head.
* Every recipient of a transaction ends with exactly one ``RecipientResult(final=True)``, whatever
  happens: rejected at RCPT, failed MAIL, refused DATA/BDAT, the end-of-data reply, a timeout,
  a lost connection or a malformed reply (STYLE §7). A recipient accepted at RCPT also gets a
  non-final result when that happens.
* With PIPELINING, MAIL, every RCPT and DATA go out in one write (RFC 2920 §3.1); the body is
  sent only after 354 (DATA) or once all RCPT replies are in (BDAT), so nothing is sent for a
  transaction with no accepted recipient. Without PIPELINING one command waits for its reply.
* A transaction that fails after MAIL was accepted is cleared with an automatic RSET whose reply
  is consumed (RFC 3030 §2 demands it after a failed BDAT).
* A transaction is refused (:class:`LocalProtocolError`, as for a parameter not offered) when
  the last EHLO's LIMITS forbid it: more recipients than RCPTMAX, or a MAIL past MAILMAX
  (RFC 9422 §4.1, §4.2); the caller splits its recipients and opens a new connection.
* After ``220`` to STARTTLS the input buffer is discarded: bytes a man in the middle appended
  in plaintext must not be read as replies under TLS (the client side of CVE-2011-0411).
* The core never reads the clock: :meth:`ClientConnection.deadline` is the RFC 5321 §4.5.3.2
  timeout of the reply awaited; the data block timeout (§4.5.3.2.5) bounds each socket write
  and so belongs to the adapter. The timeout runs from the command (or from the previous
  complete reply, when pipelined) to its complete reply: bytes that do not finish a reply do
  not extend it, or a server trickling a byte at a time (a tarpit) would hold the session for
  ever. The reply a timeout ends with names what was awaited (:data:`CLIENT_TIMEOUTS`).
"""

from __future__ import annotations

import base64
import enum
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from pillarbox.mail.dotstuff import Stuffer
from pillarbox.smtp import replies as R
from pillarbox.smtp.errors import LocalProtocolError
from pillarbox.smtp.extensions import Capabilities, Extension
from pillarbox.smtp.grammar import (
    Auth,
    Bdat,
    Body,
    Command,
    Data,
    Hello,
    HelloKind,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Rset,
    StartTls,
    format_command,
)
from pillarbox.smtp.replies import Reply
from pillarbox.smtp.sentinels import CLOSED, IDLE, NEED_DATA, Sentinel

_REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])(?:([ -])(.*))?")
_ENHANCED = re.compile(r"([245]\.[0-9]{1,3}\.[0-9]{1,3})(?: |$)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: The server's reply broke the reply syntax of RFC 5321 §4.2.
MALFORMED_REPLY = Reply(451, "4.5.0", "malformed reply from the server")
#: RFC 5321 §4.5.3.2: no reply in time, by what was awaited (a command, the greeting, or the
#: end of data: "." or BDAT LAST), so that a deferral says at which stage the server stalled.
CLIENT_TIMEOUTS = {
    awaited: R.CLIENT_TIMEOUT.with_text(f"timed out waiting for the reply to {awaited}")
    for awaited in (
        "greeting",
        "EHLO",
        "HELO",
        "LHLO",
        "STARTTLS",
        "AUTH",
        "NOOP",
        "RSET",
        "QUIT",
        "MAIL",
        "RCPT",
        "DATA",
        "BDAT",
        "end of data",
    )
}
#: RFC 5321 §4.5.3.2.5: a block of the message (or a command) could not be written in time,
#: the server having stopped reading; the adapter, which writes, reports it.
SEND_TIMEOUT = R.CLIENT_TIMEOUT.with_text("timed out sending: the server stopped reading")


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpClientSettings:
    """Our name and the limits of the client role; every field is configurable."""

    #: Sent with EHLO/HELO (RFC 5321 §4.1.1.1: our fully qualified name).
    hostname: str
    use_pipelining: bool = True
    #: Send bodies with BDAT when the server offers CHUNKING (no dot-stuffing, RFC 3030).
    use_chunking: bool = True
    #: RFC 5321 §4.5.3.2.1–§4.5.3.2.6 timeouts, seconds.
    greeting_timeout: float = 300.0
    mail_timeout: float = 300.0
    rcpt_timeout: float = 300.0
    data_init_timeout: float = 120.0
    data_block_timeout: float = 180.0
    data_end_timeout: float = 600.0
    #: EHLO, STARTTLS, AUTH, RSET, NOOP, QUIT: no RFC figure, the command timeout is used.
    command_timeout: float = 300.0
    #: RFC 5321 §4.5.3.1.5 says 512 with CRLF; real servers exceed it, so we are generous;
    #: a longer line is cut here rather than refused.
    max_reply_line: int = 4096
    max_reply_lines: int = 1000


# -- events -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Greeting:
    """The server's banner; anything but 220 means no service (RFC 5321 §3.1)."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class Response:
    """The reply to a command outside a transaction (EHLO, HELO, STARTTLS, AUTH, RSET, NOOP,
    QUIT). After a positive EHLO, :attr:`ClientConnection.capabilities` is its offer."""

    command: Command
    reply: Reply


@dataclass(frozen=True, slots=True)
class AuthChallenge:
    """A 334 challenge, base64-decoded; answer with auth_response() or auth_cancel()."""

    data: bytes


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """The outcome for one recipient. ``final`` False: accepted at RCPT, the message is still to
    be answered; True: the last word on this recipient for this message in this session."""

    rcpt: RcptTo
    reply: Reply
    final: bool


@dataclass(frozen=True, slots=True)
class ReadyForData:
    """Send the body now with send_body() and end_body()."""


@dataclass(frozen=True, slots=True)
class MessageDone:
    """The transaction is over (every recipient has its final result); ``reply`` ended it."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection is finished: after QUIT, a 421, a timeout, a lost connection or a
    malformed reply (``reply`` says which)."""

    reply: Reply


ClientEvent = (
    Greeting | Response | AuthChallenge | RecipientResult | ReadyForData | MessageDone | Closed
)


class _Kind(enum.Enum):
    GREETING = "greeting"
    COMMAND = "command"  # answered with a Response
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    CHUNK = "chunk"  # a BDAT chunk that is not the last
    END = "end"  # "." after DATA, or BDAT LAST
    SILENT = "silent"  # automatic RSET, or "." closing a DATA with no recipients


@dataclass(slots=True)
class _InFlight:
    kind: _Kind
    command: Command | None = None
    rcpt: RcptTo | None = None
    sent_at: float | None = None


@dataclass(slots=True)
class _Transaction:
    mail: MailFrom
    recipients: list[RcptTo]
    chunking: bool
    mail_reply: Reply | None = None
    accepted: list[RcptTo] = field(default_factory=list)
    #: Recipients without a final result yet (compared by identity: duplicates may exist).
    open: list[RcptTo] = field(default_factory=list)
    unsent: deque[Command] = field(default_factory=deque)
    last_refusal: Reply | None = None
    replies_due: int = 0  # RCPT replies not in yet
    body: bool = False  # the application may send the body
    done: bool = False


def _awaited(entry: _InFlight) -> str:
    """What a timed-out reply was to, as :data:`CLIENT_TIMEOUTS` names it."""
    match entry.kind:
        case _Kind.GREETING:
            return "greeting"
        case _Kind.CHUNK:
            return "BDAT"
        case _Kind.END:
            return "end of data"
        case _Kind.SILENT:
            return "RSET" if isinstance(entry.command, Rset) else "end of data"
    match entry.command:
        case Hello(kind=kind):
            return kind.value
        case StartTls():
            return "STARTTLS"
        case Auth():
            return "AUTH"
        case Noop():
            return "NOOP"
        case Rset():
            return "RSET"
        case Quit():
            return "QUIT"
        case MailFrom():
            return "MAIL"
        case RcptTo():
            return "RCPT"
    return "DATA"


class ClientConnection:
    """One SMTP session, client side. Call :meth:`receive_data` with what the server sends,
    take events from :meth:`next_event`, issue commands when it says :data:`IDLE`, and write
    :meth:`data_to_send` after every call."""

    def __init__(self, settings: SmtpClientSettings, *, now: float) -> None:
        self.settings = settings
        #: What the last positive EHLO offered; empty before, after HELO and after STARTTLS.
        self.capabilities = Capabilities()
        self.tls = False
        self.authenticated = False
        self._buf = bytearray()
        #: The start of a reply line longer than ``max_reply_line`` whose end is still to come.
        self._overlong: bytes | None = None
        self._out = bytearray()
        self._events: deque[ClientEvent] = deque()
        self._in_flight: deque[_InFlight] = deque([_InFlight(_Kind.GREETING, sent_at=now)])
        self._lines: list[tuple[int, str]] = []
        self._last_rx = now
        #: When the last complete reply arrived: a pipelined reply's timeout starts there.
        self._answered_at = now
        self._txn: _Transaction | None = None
        self._stuffer: Stuffer | None = None
        self._closed = False
        self._tls_pending = False
        self._auth: Auth | None = None  # the AUTH command whose exchange is running
        self._mail_commands = 0

    @property
    def transactions_left(self) -> int | None:
        """The transactions the server's MAILMAX still allows on this connection, every MAIL
        sent counting, refused or not (RFC 9422 §4.1); None: no MAILMAX in the last EHLO reply
        (§3.6: only the last one counts)."""
        mail_max = self.capabilities.limits.mail_max
        return None if mail_max is None else max(0, mail_max - self._mail_commands)

    # -- I/O-facing API -----------------------------------------------------------------------
    def receive_data(self, data: bytes, now: float) -> None:
        if not self._closed and data:
            self._buf += data
            self._last_rx = now

    def data_to_send(self, now: float) -> bytes:
        """Bytes to write; commands in them start their reply timeouts at ``now``."""
        for entry in self._in_flight:
            if entry.sent_at is None:
                entry.sent_at = now
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> ClientEvent | Sentinel:
        while True:
            if self._events:
                return self._events.popleft()
            if self._closed:
                return CLOSED
            if not self._in_flight:
                return IDLE
            reply = self._next_reply()
            if reply is not None:
                self._answered_at = self._last_rx
                self._on_reply(reply)
            elif not self._events and not self._closed:
                return NEED_DATA

    def deadline(self) -> float | None:
        """When :meth:`handle_timeout` is due: the timeout of the reply awaited now."""
        if self._closed or not self._in_flight or self._in_flight[0].sent_at is None:
            return None
        head = self._in_flight[0]
        assert head.sent_at is not None
        return max(head.sent_at, self._answered_at) + self._timeout(head.kind)

    def handle_timeout(self, now: float) -> None:
        deadline = self.deadline()
        if deadline is not None and now >= deadline:
            self._fail_all(CLIENT_TIMEOUTS[_awaited(self._in_flight[0])])

    def send_timed_out(self) -> None:
        """The adapter's write did not drain in time: everything awaited fails."""
        if not self._closed:
            self._fail_all(SEND_TIMEOUT)

    def connection_lost(self) -> None:
        """The adapter saw EOF or an I/O error: everything awaited fails (4.4.2)."""
        if not self._closed:
            self._fail_all(R.CONNECTION_LOST)

    def tls_established(self) -> None:
        """The handshake after 220 to STARTTLS is done; send EHLO again (RFC 3207 §4.2)."""
        if not self._tls_pending:
            raise LocalProtocolError("no STARTTLS accepted")
        self._tls_pending = False
        self.tls = True
        self.capabilities = Capabilities()

    # -- commands -----------------------------------------------------------------------------
    def ehlo(self) -> None:
        self._command(Hello(HelloKind.EHLO, self.settings.hostname))

    def helo(self) -> None:
        """For servers that refuse EHLO (RFC 5321 §3.2): no extensions."""
        self._command(Hello(HelloKind.HELO, self.settings.hostname))

    def starttls(self) -> None:
        if self.tls or Extension.STARTTLS not in self.capabilities:
            raise LocalProtocolError("STARTTLS not offered")
        self._command(StartTls())

    def auth(self, mechanism: str, initial_response: bytes | None = None) -> None:
        if mechanism.upper() not in self.capabilities.auth_mechanisms:
            raise LocalProtocolError(f"AUTH {mechanism} not offered")
        self._auth = Auth(mechanism.upper(), initial_response)
        self._command(self._auth)

    def auth_response(self, data: bytes) -> None:
        """Answer an :class:`AuthChallenge` (RFC 4954 §4)."""
        self._auth_line(base64.b64encode(data))

    def auth_cancel(self) -> None:
        self._auth_line(b"*")

    def noop(self) -> None:
        self._command(Noop())

    def rset(self) -> None:
        self._command(Rset())

    def quit(self) -> None:
        self._command(Quit())

    def send_mail(self, mail: MailFrom, recipients: Sequence[RcptTo]) -> None:
        """Start a transaction: MAIL, the RCPTs and (unless CHUNKING is used) DATA, pipelined
        when the server allows. Results arrive as :class:`RecipientResult` events, then
        :class:`ReadyForData` or :class:`MessageDone`."""
        self._require_idle()
        if not recipients:
            raise LocalProtocolError("a transaction needs recipients")
        self._check_params(mail, recipients)
        self._check_limits(recipients)
        chunking = self.settings.use_chunking and Extension.CHUNKING in self.capabilities
        txn = _Transaction(mail, list(recipients), chunking, replies_due=len(recipients))
        txn.open = list(recipients)
        self._txn = txn
        self._mail_commands += 1
        commands: list[Command] = [mail, *recipients]
        if not chunking:
            commands.append(Data())
        if self.settings.use_pipelining and Extension.PIPELINING in self.capabilities:
            for command in commands:
                self._write(command)
        else:
            txn.unsent.extend(commands[1:])
            self._write(mail)

    def send_body(self, data: bytes) -> None:
        """Send a piece of the message (CRLF line ends); dot-stuffed for DATA, one BDAT chunk
        with CHUNKING. Only while :attr:`accepting_body`."""
        txn = self._body_txn()
        if not data:
            return
        if txn.chunking:
            self._out += format_command(Bdat(len(data), last=False)) + data
            self._in_flight.append(_InFlight(_Kind.CHUNK))
        else:
            assert self._stuffer is not None
            self._out += self._stuffer.feed(data)

    def end_body(self) -> None:
        """End the message: ``.`` after DATA, ``BDAT 0 LAST`` with CHUNKING."""
        txn = self._body_txn()
        txn.body = False
        if txn.chunking:
            self._out += format_command(Bdat(0, last=True))
        else:
            assert self._stuffer is not None
            self._out += self._stuffer.end()
            self._stuffer = None
        self._in_flight.append(_InFlight(_Kind.END))

    @property
    def accepting_body(self) -> bool:
        """True between :class:`ReadyForData` and end_body(), unless the server already failed
        the transaction (a refused BDAT chunk)."""
        return self._txn is not None and self._txn.body and not self._txn.done

    # -- internals: sending -------------------------------------------------------------------
    def _require_idle(self) -> None:
        if self._closed:
            raise LocalProtocolError("connection closed")
        if self._txn is not None or self._tls_pending:
            raise LocalProtocolError("a transaction or TLS handshake is in progress")
        if any(
            e.kind is _Kind.COMMAND and isinstance(e.command, StartTls | Auth)
            for e in self._in_flight
        ):
            raise LocalProtocolError("STARTTLS or AUTH must be answered first")
        if any(e.kind is _Kind.GREETING for e in self._in_flight):
            raise LocalProtocolError("await the greeting first")

    def _command(self, command: Command) -> None:
        self._require_idle()
        self._in_flight.append(_InFlight(_Kind.COMMAND, command))
        self._out += format_command(command)

    def _auth_line(self, line: bytes) -> None:
        if self._auth is None or self._in_flight or self._closed:
            raise LocalProtocolError("no AUTH challenge to answer")
        self._out += line + b"\r\n"
        self._in_flight.append(_InFlight(_Kind.COMMAND, self._auth))

    def _check_params(self, mail: MailFrom, recipients: Sequence[RcptTo]) -> None:
        """Parameters only for offered extensions (RFC 5321 §4.1.1.11); the queue decides what
        to do without them (e.g. RFC 3461 §5.2 "relayed" DSNs, RFC 6531 §3.2 downgrade)."""
        p, offered = mail.params, self.capabilities
        needed = {
            Extension.SIZE: p.size is not None,
            Extension.EIGHTBITMIME: p.body is Body.EIGHT_BIT_MIME,
            Extension.SMTPUTF8: p.smtputf8
            or any(r.path.mailbox and r.path.mailbox.needs_smtputf8 for r in recipients)
            or bool(mail.path.mailbox and mail.path.mailbox.needs_smtputf8),
            Extension.DSN: p.ret is not None
            or p.envid is not None
            or any(r.params.notify is not None or r.params.orcpt is not None for r in recipients),
            Extension.AUTH: p.auth is not None,
            Extension.REQUIRETLS: p.requiretls,
        }
        missing = [ext.value for ext, used in needed.items() if used and ext not in offered]
        if p.body is Body.BINARY_MIME and "BINARYMIME" not in offered:
            missing.append("BINARYMIME")
        if missing:
            raise LocalProtocolError(f"server does not offer {', '.join(missing)}")
        if p.smtputf8 is False and needed[Extension.SMTPUTF8]:
            raise LocalProtocolError("non-ASCII addresses need MailParams(smtputf8=True)")

    def _check_limits(self, recipients: Sequence[RcptTo]) -> None:
        """What the server announced it will not take (RFC 9422 §4.1, §4.2)."""
        rcpt_max = self.capabilities.limits.rcpt_max
        if rcpt_max is not None and len(recipients) > rcpt_max:
            raise LocalProtocolError(f"the server takes {rcpt_max} recipients per transaction")
        if self.transactions_left == 0:
            raise LocalProtocolError("the server takes no more transactions on this connection")

    def _write(self, command: Command) -> None:
        kind = {MailFrom: _Kind.MAIL, RcptTo: _Kind.RCPT, Data: _Kind.DATA}[type(command)]
        rcpt = command if isinstance(command, RcptTo) else None
        self._in_flight.append(_InFlight(kind, command, rcpt))
        self._out += format_command(command)

    def _body_txn(self) -> _Transaction:
        txn = self._txn
        if txn is None or not txn.body or txn.done:
            raise LocalProtocolError("not sending a body now")
        return txn

    def _timeout(self, kind: _Kind) -> float:
        s = self.settings
        return {
            _Kind.GREETING: s.greeting_timeout,
            _Kind.MAIL: s.mail_timeout,
            _Kind.RCPT: s.rcpt_timeout,
            _Kind.DATA: s.data_init_timeout,
            _Kind.CHUNK: s.data_block_timeout,
            _Kind.END: s.data_end_timeout,
        }.get(kind, s.command_timeout)

    # -- internals: replies -------------------------------------------------------------------
    def _next_reply(self) -> Reply | None:
        """Parse one complete (possibly multi-line) reply from the buffer (RFC 5321 §4.2)."""
        while True:
            limit = self.settings.max_reply_line
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > limit:
                    # A line past the limit keeps its start and loses the rest (as Postfix's
                    # smtp_get does): its code still answers the command; memory stays bounded.
                    if self._overlong is None:
                        self._overlong = bytes(self._buf[:limit])
                    self._buf.clear()
                return None
            if self._overlong is not None:
                raw, self._overlong = self._overlong, None
            else:
                raw = bytes(self._buf[: min(end, limit)]).removesuffix(b"\r")
            del self._buf[: end + 1]
            match = _REPLY_LINE.fullmatch(raw)
            if (
                match is None
                or len(self._lines) >= self.settings.max_reply_lines
                or (self._lines and self._lines[0][0] != int(match.group(1)))
            ):
                self._fail_all(MALFORMED_REPLY)
                return None
            text = _CONTROL.sub(" ", (match.group(3) or b"").decode("utf-8", "replace"))
            self._lines.append((int(match.group(1)), text))
            if match.group(2) != b"-":
                return self._assemble()

    def _assemble(self) -> Reply:
        code = self._lines[0][0]
        texts = [text for _, text in self._lines]
        self._lines = []
        found = [_ENHANCED.match(t) for t in texts]
        enhanced: str | None = None
        if all(found) and found[0] is not None and found[0].group(1)[0] == str(code)[0]:
            enhanced = found[0].group(1)
            texts = [t[m.end() :] if m else t for t, m in zip(texts, found, strict=True)]
        return Reply(code, enhanced, "\n".join(texts))

    def _on_reply(self, reply: Reply) -> None:
        entry = self._in_flight.popleft()
        if reply.code == 421:
            # RFC 5321 §3.8: the server is closing; this and everything after it fail with 421.
            self._in_flight.appendleft(entry)
            self._fail_all(reply)
            return
        match entry.kind:
            case _Kind.GREETING:
                self._events.append(Greeting(reply))
                if reply.code != 220:
                    self._in_flight.append(_InFlight(_Kind.COMMAND, Quit()))
                    self._out += format_command(Quit())
            case _Kind.COMMAND:
                self._on_command_reply(entry, reply)
            case _Kind.SILENT:
                pass
            case _:
                self._on_transaction_reply(entry, reply)

    def _on_command_reply(self, entry: _InFlight, reply: Reply) -> None:
        command = entry.command
        assert command is not None
        if isinstance(command, Auth) and reply.code == 334:
            try:
                self._events.append(AuthChallenge(base64.b64decode(reply.text, validate=True)))
            except ValueError:  # binascii.Error, or text that is not even ASCII
                self._fail_all(MALFORMED_REPLY)
            return
        if isinstance(command, Hello) and reply.is_positive:
            self.capabilities = (
                Capabilities.from_ehlo_lines(reply.lines[1:])
                if command.extended
                else Capabilities()
            )
        elif isinstance(command, StartTls) and reply.code == 220:
            self._tls_pending = True
            self._buf.clear()  # nothing read before the handshake may count after it
        elif isinstance(command, Auth):
            self._auth = None
            self.authenticated = reply.code == 235
        self._events.append(Response(command, reply))
        if isinstance(command, Quit):
            self._closed = True
            self._events.append(Closed(reply))

    def _on_transaction_reply(self, entry: _InFlight, reply: Reply) -> None:
        txn = self._txn
        assert txn is not None
        match entry.kind:
            case _Kind.MAIL:
                txn.mail_reply = reply
                if not reply.is_positive:
                    txn.last_refusal = reply
                    if txn.unsent:  # not pipelined: no RCPT follows a refused MAIL
                        txn.unsent.clear()
                        for rcpt in txn.recipients:
                            self._final(rcpt, reply)
                        self._finish(reply, reset=False)
            case _Kind.RCPT:
                self._on_rcpt_reply(txn, entry, reply)
            case _Kind.DATA:
                if reply.code == 354 and txn.accepted:
                    self._stuffer = Stuffer()
                    self._start_body()
                elif reply.code == 354:
                    # RFC 2920 §3.1: every RCPT failed yet DATA was accepted; end it empty.
                    self._in_flight.append(_InFlight(_Kind.SILENT))
                    self._out += b".\r\n"
                    self._finish(txn.last_refusal or reply, reset=False)
                elif txn.accepted:
                    self._fail_accepted(reply)
                else:
                    self._finish(txn.last_refusal or reply, reset=self._mail_ok)
            case _Kind.CHUNK | _Kind.END if txn.done:
                # Answers to chunks sent before the transaction failed (RFC 3030 §2).
                if not any(e.kind in (_Kind.CHUNK, _Kind.END) for e in self._in_flight):
                    self._txn = None
            case _Kind.CHUNK:
                if not reply.is_positive:
                    self._fail_accepted(reply)
            case _Kind.END:
                for rcpt in list(txn.accepted):
                    self._final(rcpt, reply)
                # RFC 3030 §2: after a failed BDAT the state is indeterminate until RSET.
                self._finish(reply, reset=txn.chunking and not reply.is_positive)
        if txn.unsent and not txn.done:
            self._write(txn.unsent.popleft())  # not pipelined: the next command now

    def _on_rcpt_reply(self, txn: _Transaction, entry: _InFlight, reply: Reply) -> None:
        assert entry.rcpt is not None
        txn.replies_due -= 1
        if txn.mail_reply is not None and not txn.mail_reply.is_positive:
            reply = txn.mail_reply  # the recipient failed because MAIL did
        if reply.is_positive:
            txn.accepted.append(entry.rcpt)
            self._events.append(RecipientResult(entry.rcpt, reply, final=False))
        else:
            txn.last_refusal = reply
            self._final(entry.rcpt, reply)
        if txn.replies_due:
            return
        if not txn.accepted:
            if txn.chunking or txn.unsent:  # no DATA sent: nothing more to wait for
                txn.unsent.clear()
                self._finish(reply, reset=self._mail_ok)
            # else the pipelined DATA is still to be answered
        elif txn.chunking:
            self._start_body()

    def _final(self, rcpt: RcptTo, reply: Reply) -> None:
        assert self._txn is not None
        self._txn.open = [r for r in self._txn.open if r is not rcpt]
        self._events.append(RecipientResult(rcpt, reply, final=True))

    @property
    def _mail_ok(self) -> bool:
        txn = self._txn
        return txn is not None and txn.mail_reply is not None and txn.mail_reply.is_positive

    def _start_body(self) -> None:
        assert self._txn is not None
        self._txn.body = True
        self._events.append(ReadyForData())

    def _fail_accepted(self, reply: Reply) -> None:
        assert self._txn is not None
        for rcpt in list(self._txn.accepted):
            self._final(rcpt, reply)
        self._finish(reply, reset=True)

    def _finish(self, reply: Reply, *, reset: bool) -> None:
        """End the transaction; chunks still in flight are answered into the void."""
        txn = self._txn
        assert txn is not None
        txn.done = True
        txn.body = False
        self._stuffer = None
        self._events.append(MessageDone(reply))
        if not any(e.kind in (_Kind.CHUNK, _Kind.END) for e in self._in_flight):
            self._txn = None
        if reset:
            self._in_flight.append(_InFlight(_Kind.SILENT, Rset()))
            self._out += format_command(Rset())

    def _fail_all(self, reply: Reply) -> None:
        """The session ends: every recipient still open gets ``reply`` as its final result."""
        txn = self._txn
        if txn is not None and not txn.done:
            for rcpt in list(txn.open):
                self._final(rcpt, reply)
            txn.done = True
            self._events.append(MessageDone(reply))
        for entry in self._in_flight:
            if entry.kind is _Kind.COMMAND and entry.command is not None:
                self._events.append(Response(entry.command, reply))
        self._in_flight.clear()
        self._txn = None
        self._closed = True
        self._buf.clear()
        self._overlong = None
        self._events.append(Closed(reply))
