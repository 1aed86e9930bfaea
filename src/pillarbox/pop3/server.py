"""The sans-I/O POP3 server: bytes in, events and bytes out, time as an argument.

Implementation notes
--------------------
RFCs: 1939 (POP3), 2449 (CAPA, PIPELINING, response codes), 2595 §4 (STLS), 5034 (SASL AUTH),
3206 (``[SYS/TEMP]`` and ``[AUTH]`` codes, AUTH-RESP-CODE). Implicit TLS on port 995 (RFC 8314)
is the adapter's business: the core only learns ``tls_active=True``.

Invariants:

- The states and every input that moves between them are :data:`TRANSITIONS`. A command absent
  from it for the current state is answered ``-ERR`` (RFC 1939 §3); an application answer absent
  from it raises :class:`Pop3UsageError`. Closing (QUIT, errors, timeout, EOF) is possible from
  every state and is not listed.
- Input lines are handled strictly in order (RFC 2449 §6.6 PIPELINING): while the application
  answers one event, later lines wait and :meth:`next_event` returns ``PAUSED``.
- Only :class:`Update`, produced by QUIT in TRANSACTION state, can remove mail. EOF, idle
  timeout, input overflow and errors close without it (RFC 1939 §3, §6).
- Input buffered behind STLS is discarded: it was sent in the clear before the handshake and
  may be injected (the STARTTLS command-injection class of bugs, CVE-2011-0411).
- USER/PASS and plaintext SASL mechanisms are neither advertised nor accepted before TLS unless
  the connection is allowed insecure authentication (RFC 2595 §2.3, RFC 5034 §4).
- The ``-ERR`` of a login refused with ``[AUTH]`` is held back ``auth_failure_delay`` seconds,
  and ``max_auth_failures`` of them close the connection; across connections, rate limiting is
  the application's (it answers ``[AUTH]`` without checking the password).
- Nothing the client sent is echoed in a reply.
- The core never reads the clock: every call that learns the time takes ``now`` (monotonic
  seconds), and :meth:`deadline` says when :meth:`handle_timeout` is due. Input and output both
  count as activity for the idle timer, so a long RETR to a slow client is not "idle".
"""

from __future__ import annotations

import binascii
import enum
import re
from collections import deque
from collections.abc import Callable, Sequence

from pillarbox.pop3 import responses
from pillarbox.pop3.commands import (
    Command,
    Verb,
    parse_command,
    parse_line_count,
    parse_message_number,
)
from pillarbox.pop3.errors import CommandError, Pop3UsageError
from pillarbox.pop3.events import (
    NEED_DATA,
    PAUSED,
    Apop,
    Disconnect,
    DisconnectReason,
    Event,
    Retrieve,
    SaslResponse,
    SaslStart,
    Signal,
    StartTls,
    Update,
    UserPass,
)
from pillarbox.pop3.maildrop import Maildrop, MaildropMessage
from pillarbox.pop3.responses import Reply
from pillarbox.pop3.settings import Pop3Settings
from pillarbox.pop3.transfer import MessageEncoder


class State(enum.Enum):
    AUTHORIZATION = "authorization"
    #: USER accepted; PASS may follow (RFC 1939 §7).
    USER_GIVEN = "user-given"
    #: USER/PASS or APOP credentials are with the application.
    CHECKING_PASSWORD = "checking-password"
    #: The application's turn in a SASL exchange (RFC 5034 §4).
    SASL_SERVER = "sasl-server"
    #: The client's turn in a SASL exchange: the next line is a response, not a command.
    SASL_CLIENT = "sasl-client"
    #: ``+OK`` to STLS is queued; the adapter runs the handshake (RFC 2595 §4).
    STARTING_TLS = "starting-tls"
    TRANSACTION = "transaction"
    #: The application supplies a RETR/TOP message.
    RETRIEVING = "retrieving"
    #: QUIT received in TRANSACTION: the application removes the deleted messages (RFC 1939 §6).
    UPDATE = "update"
    CLOSED = "closed"


class Step(enum.Enum):
    """Inputs of the state table that are not client commands."""

    USER_REJECTED = "user-rejected"
    LOGIN_ACCEPTED = "login-accepted"
    LOGIN_REJECTED = "login-rejected"
    SASL_CHALLENGE = "sasl-challenge"
    SASL_RESPONSE = "sasl-response"
    SASL_ABORTED = "sasl-aborted"
    TLS_STARTED = "tls-started"
    MESSAGE_CHUNK = "message-chunk"
    MESSAGE_END = "message-end"
    MESSAGE_REFUSED = "message-refused"
    MESSAGE_ABORTED = "message-aborted"
    UPDATE_DONE = "update-done"


Input = Verb | Step

_A = State.AUTHORIZATION
_U = State.USER_GIVEN
_T = State.TRANSACTION
#: Where the client's turn is and it has not logged in: the login deadline runs.
_LOGIN_STATES = frozenset({_A, _U, State.SASL_CLIENT})

#: state x input -> state. For commands, the state reached when the command succeeds; a command
#: that fails (bad argument, no such message) leaves the state unchanged, and AUTH without a
#: mechanism only lists the mechanisms.
TRANSITIONS: dict[tuple[State, Input], State] = {
    # RFC 1939 §4, §7; RFC 2449 §5; RFC 2595 §4; RFC 5034 §4.
    **{
        (state, verb): target
        for state in (_A, _U)
        for verb, target in (
            (Verb.USER, _U),
            (Verb.APOP, State.CHECKING_PASSWORD),
            (Verb.AUTH, State.SASL_SERVER),
            (Verb.STLS, State.STARTING_TLS),
            (Verb.CAPA, state),
            (Verb.QUIT, State.CLOSED),
            (Step.USER_REJECTED, _A),
        )
    },
    (_U, Verb.PASS): State.CHECKING_PASSWORD,
    (State.CHECKING_PASSWORD, Step.LOGIN_ACCEPTED): _T,
    (State.CHECKING_PASSWORD, Step.LOGIN_REJECTED): _A,
    (State.SASL_SERVER, Step.SASL_CHALLENGE): State.SASL_CLIENT,
    (State.SASL_SERVER, Step.LOGIN_ACCEPTED): _T,
    (State.SASL_SERVER, Step.LOGIN_REJECTED): _A,
    (State.SASL_CLIENT, Step.SASL_RESPONSE): State.SASL_SERVER,
    (State.SASL_CLIENT, Step.SASL_ABORTED): _A,
    # RFC 2595 §4: "the server remains in AUTHORIZATION state".
    (State.STARTING_TLS, Step.TLS_STARTED): _A,
    # RFC 1939 §5, §7; RFC 2449 §5.
    **{
        (_T, verb): _T
        for verb in (Verb.STAT, Verb.LIST, Verb.DELE, Verb.NOOP, Verb.RSET, Verb.UIDL, Verb.CAPA)
    },
    (_T, Verb.RETR): State.RETRIEVING,
    (_T, Verb.TOP): State.RETRIEVING,
    (_T, Verb.QUIT): State.UPDATE,
    (State.RETRIEVING, Step.MESSAGE_CHUNK): State.RETRIEVING,
    (State.RETRIEVING, Step.MESSAGE_END): _T,
    (State.RETRIEVING, Step.MESSAGE_REFUSED): _T,
    (State.RETRIEVING, Step.MESSAGE_ABORTED): State.CLOSED,
    # RFC 1939 §6: whether or not removal succeeded, the session ends.
    (State.UPDATE, Step.UPDATE_DONE): State.CLOSED,
}

#: States in which the core waits for the application, not the client.
APPLICATION_TURN = frozenset(
    {
        State.CHECKING_PASSWORD,
        State.SASL_SERVER,
        State.STARTING_TLS,
        State.RETRIEVING,
        State.UPDATE,
    }
)

#: RFC 5034 §4: mechanisms that reveal the password, never offered without TLS by default.
PLAINTEXT_MECHANISMS = frozenset({"PLAIN", "LOGIN"})

_WRONG_STATE_REPLIES = {(_A, Verb.PASS): responses.PASS_WITHOUT_USER}
# RFC 1939 §7 APOP: "a 16-octet value ... in hexadecimal format, using lower-case ASCII".
_APOP_DIGEST = re.compile(rb"[0-9a-fA-F]{32}")
# RFC 2449 §3 timestamp = "<" *VCHAR ">", conforming to the RFC 822 msg-id.
_APOP_TIMESTAMP = re.compile(r"<[\x21-\x3d\x3f-\x7e]+@[\x21-\x3d\x3f-\x7e]+>")
_CRLF_LENGTH = 2


def _queued_size(line: bytes | None) -> int:
    """What a queued line counts against ``max_buffered_input``: empty lines count too."""
    return 1 if line is None else len(line) + 1


def _text(arg: bytes) -> str:
    try:
        return arg.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(responses.INVALID_UTF8) from None


def _base64(arg: bytes) -> bytes:
    """RFC 5034 §4: reject any character outside the alphabet and misplaced padding."""
    try:
        return binascii.a2b_base64(arg, strict_mode=True)
    except binascii.Error:
        raise CommandError(responses.INVALID_BASE64) from None


class Pop3Server:
    """One POP3 session, server side.

    ``now`` is the monotonic time of the connection's start. ``tls_active`` is True on an
    implicit-TLS port (995); ``starttls_available`` offers STLS on a plain port (110) when a
    certificate is configured; ``insecure_auth_allowed`` permits USER/PASS and PLAIN without TLS
    (for loopback clients, when configured). ``apop_timestamp`` (e.g. ``<pid.clock@host>``,
    unique per connection) is required exactly when ``settings.apop`` is on.
    """

    def __init__(
        self,
        settings: Pop3Settings,
        *,
        now: float,
        tls_active: bool = False,
        starttls_available: bool = False,
        insecure_auth_allowed: bool = False,
        apop_timestamp: str | None = None,
    ) -> None:
        if settings.apop != (apop_timestamp is not None):
            raise Pop3UsageError("an APOP timestamp is required exactly when APOP is enabled")
        if apop_timestamp is not None and not _APOP_TIMESTAMP.fullmatch(apop_timestamp):
            raise Pop3UsageError(f"APOP timestamp {apop_timestamp!r} is not a msg-id")
        self._settings = settings
        self._limits = settings.limits
        self._tls_active = tls_active
        self._starttls_available = starttls_available
        self._insecure_auth_allowed = insecure_auth_allowed
        self._apop_timestamp = apop_timestamp
        self._state = State.AUTHORIZATION
        self._close_reason = DisconnectReason.QUIT
        # Input: complete lines (None for one that overran every limit) and the unfinished tail.
        self._lines: deque[bytes | None] = deque()
        self._partial = bytearray()
        self._discarding = False
        self._buffered = 0
        self._eof = False
        self._out = bytearray()
        self._clock = now
        self._last_activity = now
        self._login_deadline = now + self._limits.login_timeout
        # A refused login's reply, held until the given time; close after it if the flag is set.
        self._held: tuple[bytes, float, bool] | None = None
        self._errors = 0
        self._auth_failures = 0
        self._user = ""
        self._maildrop: Maildrop | None = None
        self._encoder = MessageEncoder()
        self._retrieve_reply: bytes = b""
        greeting = (
            responses.GREETING.format(hostname=settings.hostname)
            if apop_timestamp is None
            else responses.GREETING_APOP.format(
                hostname=settings.hostname, timestamp=apop_timestamp
            )
        )
        self._send(greeting)

    # -- observation ---------------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self._state

    @property
    def tls_active(self) -> bool:
        return self._tls_active

    @property
    def closed(self) -> bool:
        """True once the session is over; :meth:`next_event` then returns :class:`Disconnect`."""
        return self._is_closed()

    def capabilities(self) -> tuple[str, ...]:
        """The CAPA lines for the current state and connection (RFC 2449 §5, §6)."""
        lines = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self._plaintext_allowed:
            lines.append("USER")
        mechanisms = self._offered_mechanisms()
        if mechanisms:
            lines.append("SASL " + " ".join(mechanisms))
        # RFC 2595 §4: STLS is listed only where it is "permitted in the current state".
        if self._state in (_A, _U) and self._starttls_available and not self._tls_active:
            lines.append("STLS")
        if self._settings.expire is not None:
            lines.append(f"EXPIRE {self._settings.expire}")
        if self._settings.login_delay is not None:
            lines.append(f"LOGIN-DELAY {self._settings.login_delay}")
        if self._settings.implementation is not None:
            lines.append(f"IMPLEMENTATION {self._settings.implementation}")
        return tuple(lines)

    # -- I/O side ------------------------------------------------------------------------------
    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes read from the client; ``b""`` means the client closed its side."""
        if self._state is State.CLOSED:
            return
        self._clock = now
        if not data:
            self._eof = True
            return
        self._last_activity = now
        self._partial += data
        longest = self._limits.max_sasl_line  # the longest line acceptable in any state
        start = 0
        while (newline := self._partial.find(b"\n", start)) >= 0:
            line = bytes(self._partial[start:newline])
            start = newline + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if self._discarding or len(line) + _CRLF_LENGTH > longest:
                self._queue_line(None)
                self._discarding = False
            else:
                self._queue_line(line)
        del self._partial[:start]
        if len(self._partial) > longest:
            # Keep no more of an overlong line than it takes to know it is overlong.
            self._partial.clear()
            self._discarding = True

    def data_to_send(self, now: float) -> bytes:
        """Bytes to write to the client. Sending counts as activity for the idle timer."""
        self._clock = now
        self._release_held()
        data = bytes(self._out)
        self._out.clear()
        if data:
            self._last_activity = now
        return data

    def deadline(self) -> float | None:
        """When :meth:`handle_timeout` must be called; None while the application has the turn
        (the adapter bounds its own work, e.g. the TLS handshake) or once closed."""
        if self._state is State.CLOSED:
            return None
        idle = self._last_activity + self._limits.idle_timeout
        if self._state in _LOGIN_STATES:
            idle = min(idle, self._login_deadline)
        if self._held is not None:
            return min(self._held[1], idle)
        if self._state in APPLICATION_TURN:
            return None
        return idle

    def handle_timeout(self, now: float) -> None:
        """Release a held reply that is due, or end an idle session. RFC 1939 §3: on autologout
        the server closes "without removing any messages or sending any response"; a client
        still not logged in at the login deadline gets an ``-ERR`` first (there is nothing of
        its to keep, and the reply tells a slow client why)."""
        if self._state is State.CLOSED:
            return
        self._clock = now
        self._release_held()
        if self._held is None and self._state in _LOGIN_STATES and now >= self._login_deadline:
            self._send(responses.LOGIN_TIMEOUT)
            self._close(DisconnectReason.LOGIN_TIMEOUT)
            return
        if (
            self._held is None
            and not self.closed
            and self._state not in APPLICATION_TURN
            and now >= self._last_activity + self._limits.idle_timeout
        ):
            self._close(DisconnectReason.IDLE_TIMEOUT)

    def next_event(self) -> Event | Signal:
        """Handle buffered lines until one needs the application; see :mod:`.events`."""
        if not self.closed and self._buffered > self._limits.max_buffered_input:
            self._close(DisconnectReason.INPUT_OVERFLOW)
        if self.closed:
            return Disconnect(self._close_reason)
        if self._held is not None or self._state in APPLICATION_TURN:
            return PAUSED
        while self._lines:
            line = self._lines.popleft()
            self._buffered -= _queued_size(line)
            event = self._handle_line(line)
            if event is not None:
                return event
            if self._is_closed():  # a method: mypy would keep the narrowing of a property
                return Disconnect(self._close_reason)
        if self._eof:
            self._close(DisconnectReason.PEER_CLOSED)
            return Disconnect(self._close_reason)
        return NEED_DATA

    # -- the application's answers -------------------------------------------------------------
    # Once the session is closed (EOF, overflow), answers are accepted and dropped, so an
    # application finishing its work after a disconnect needs no special case.
    def accept_login(self, uidvalidity: int, messages: Sequence[MaildropMessage]) -> None:
        """Answer to UserPass/Apop/SaslStart/SaslResponse: logged in, the INBOX is locked for
        this session, and ``messages`` (UID order) is its fixed listing."""
        if self._state is State.CLOSED:
            return
        target = self._target(Step.LOGIN_ACCEPTED)
        maildrop = Maildrop(uidvalidity, messages)
        self._state = target
        self._maildrop = maildrop
        self._send(responses.MAILDROP_SUMMARY.format(count=maildrop.count, size=maildrop.size))

    def reject_login(self, reply: Reply) -> None:
        """Answer to a login event with an ``-ERR`` reply: :data:`~responses.AUTH_FAILED`
        (bad credentials or rate-limited: delayed and counted), :data:`~responses.IN_USE`,
        :data:`~responses.LOGIN_DELAY` or :data:`~responses.SYS_TEMP` (sent at once)."""
        if self._state is State.CLOSED:
            return
        if reply.ok:
            raise Pop3UsageError("reject_login needs an -ERR reply")
        self._enter(Step.LOGIN_REJECTED)
        self._user = ""
        if reply.code == responses.CODE_AUTH:
            # RFC 3206: [AUTH] is a problem with the credentials -- the guess that is slowed.
            self._auth_failures += 1
            close = self._auth_failures >= self._limits.max_auth_failures
            self._held = (reply.encode(), self._clock + self._limits.auth_failure_delay, close)
            self._release_held()
        else:
            self._send(reply)

    def sasl_challenge(self, data: bytes) -> None:
        """Answer to SaslStart/SaslResponse: send a challenge and wait for the client's response.
        A mechanism's final server data (SCRAM's ``v=``) goes this way too: RFC 5034 §4 allows no
        data with ``+OK``, so the client answers it with an empty line before ``accept_login``."""
        if self._state is State.CLOSED:
            return
        self._enter(Step.SASL_CHALLENGE)
        self._out += responses.sasl_challenge(data)

    def tls_started(self) -> None:
        """Answer to StartTls: the handshake succeeded; the session starts over in
        AUTHORIZATION with whatever was received before it forgotten (RFC 2595 §4)."""
        if self._state is State.CLOSED:
            return
        self._enter(Step.TLS_STARTED)
        self._tls_active = True
        self._discard_input()

    def message_chunk(self, data: bytes) -> bool:
        """Answer to Retrieve: the next chunk of the stored message, cut anywhere. Returns
        False once no more is needed (TOP has its lines); then call :meth:`end_message`."""
        if self._state is State.CLOSED:
            return False
        self._enter(Step.MESSAGE_CHUNK)
        self._out += self._retrieve_reply
        self._retrieve_reply = b""
        self._out += self._encoder.encode(data)
        return not self._encoder.done

    def end_message(self) -> None:
        """Answer to Retrieve: the whole message was supplied; terminate the answer."""
        if self._state is State.CLOSED:
            return
        self._enter(Step.MESSAGE_END)
        self._out += self._retrieve_reply
        self._retrieve_reply = b""
        self._out += self._encoder.finish()

    def fail_message(self, reply: Reply) -> None:
        """Answer to Retrieve: the message cannot be read. Before any chunk, the client gets
        ``reply`` (:data:`~responses.MESSAGE_GONE`, :data:`~responses.MESSAGE_UNAVAILABLE`);
        after one, the ``+OK`` is on the wire and only closing the connection is honest."""
        if self._state is State.CLOSED:
            return
        if reply.ok:
            raise Pop3UsageError("fail_message needs an -ERR reply")
        if self._retrieve_reply:
            self._enter(Step.MESSAGE_REFUSED)
            self._retrieve_reply = b""
            self._send(reply)
        else:
            self._enter(Step.MESSAGE_ABORTED)
            self._close(DisconnectReason.MESSAGE_ABORTED)

    def complete_update(self) -> None:
        """Answer to Update: the deleted messages are expunged; sign off and close."""
        if self._state is State.CLOSED:
            return
        self._enter(Step.UPDATE_DONE)
        left = self._view.count
        self._send(
            responses.SIGN_OFF_LEFT.format(hostname=self._settings.hostname, count=left)
            if left
            else responses.SIGN_OFF_EMPTY.format(hostname=self._settings.hostname)
        )
        self._close(DisconnectReason.QUIT)

    def fail_update(self) -> None:
        """Answer to Update: removal failed, perhaps partly (RFC 1939 §6); report and close."""
        if self._state is State.CLOSED:
            return
        self._enter(Step.UPDATE_DONE)
        self._send(responses.UPDATE_FAILED)
        self._close(DisconnectReason.QUIT)

    # -- internals -----------------------------------------------------------------------------
    def _is_closed(self) -> bool:
        return self._state is State.CLOSED

    @property
    def _plaintext_allowed(self) -> bool:
        return self._tls_active or self._insecure_auth_allowed

    @property
    def _view(self) -> Maildrop:
        if self._maildrop is None:  # the state table makes this unreachable
            raise Pop3UsageError("no maildrop before login")
        return self._maildrop

    def _offered_mechanisms(self) -> tuple[str, ...]:
        return tuple(
            mechanism
            for mechanism in self._settings.sasl_mechanisms
            if self._plaintext_allowed or mechanism not in PLAINTEXT_MECHANISMS
        )

    def _target(self, step: Step) -> State:
        target = TRANSITIONS.get((self._state, step))
        if target is None:
            raise Pop3UsageError(f"{step.name} is not an answer in state {self._state.name}")
        return target

    def _enter(self, step: Input) -> None:
        self._state = (
            self._target(step) if isinstance(step, Step) else TRANSITIONS[(self._state, step)]
        )

    def _send(self, reply: Reply) -> None:
        self._out += reply.encode()

    def _error(self, reply: Reply) -> None:
        """A client mistake: answer it, or close once there have been too many."""
        self._errors += 1
        if self._errors >= self._limits.max_errors:
            self._send(responses.TOO_MANY_ERRORS)
            self._close(DisconnectReason.TOO_MANY_ERRORS)
        else:
            self._send(reply)

    def _close(self, reason: DisconnectReason) -> None:
        self._state = State.CLOSED
        self._close_reason = reason
        self._held = None
        self._discard_input()

    def _queue_line(self, line: bytes | None) -> None:
        self._lines.append(line)
        self._buffered += _queued_size(line)

    def _discard_input(self) -> None:
        self._lines.clear()
        self._partial.clear()
        self._discarding = False
        self._buffered = 0

    def _release_held(self) -> None:
        if self._held is None or self._clock < self._held[1]:
            return
        data, _, close = self._held
        self._held = None
        self._out += data
        if close:
            self._close(DisconnectReason.TOO_MANY_AUTH_FAILURES)

    def _handle_line(self, line: bytes | None) -> Event | None:
        if self._state is State.SASL_CLIENT:
            return self._sasl_line(line)
        try:
            if line is None or len(line) + _CRLF_LENGTH > self._limits.max_command_line:
                raise CommandError(responses.LINE_TOO_LONG)
            command = parse_command(line)
            if (self._state, command.verb) not in TRANSITIONS:
                raise CommandError(
                    _WRONG_STATE_REPLIES.get((self._state, command.verb), responses.WRONG_STATE)
                )
            return _HANDLERS[command.verb](self, command)
        except CommandError as error:
            self._error(error.reply)
            return None

    def _sasl_line(self, line: bytes | None) -> Event | None:
        """A client response in a SASL exchange (RFC 5034 §4)."""
        if line is None or len(line) + _CRLF_LENGTH > self._limits.max_sasl_line:
            reply = responses.LINE_TOO_LONG
        elif line == b"*":
            reply = responses.AUTH_CANCELLED
        else:
            try:
                data = _base64(line)
            except CommandError as error:
                reply = error.reply
            else:
                self._enter(Step.SASL_RESPONSE)
                return SaslResponse(data)
        self._enter(Step.SASL_ABORTED)
        self._error(reply)
        return None

    # -- command handlers: each validates, then enters its TRANSITIONS target ------------------
    def _user_command(self, command: Command) -> None:
        try:
            if not self._plaintext_allowed:
                raise CommandError(responses.PLAINTEXT_DISALLOWED)
            user = _text(command.args[0])
        except CommandError:
            self._enter(Step.USER_REJECTED)
            self._user = ""
            raise
        self._enter(Verb.USER)
        # RFC 1939 §7: +OK whether or not the mailbox exists; existence is never revealed.
        self._user = user
        self._send(responses.USER_ACCEPTED)

    def _pass_command(self, command: Command) -> Event:
        password = _text(command.args[0])
        self._enter(Verb.PASS)
        user, self._user = self._user, ""
        return UserPass(user, password)

    def _apop_command(self, command: Command) -> Event:
        timestamp = self._apop_timestamp
        if timestamp is None:
            raise CommandError(responses.APOP_UNAVAILABLE)
        user = _text(command.args[0])
        if not _APOP_DIGEST.fullmatch(command.args[1]):
            raise CommandError(responses.INVALID_APOP_DIGEST)
        self._enter(Verb.APOP)
        self._user = ""
        return Apop(user, timestamp, command.args[1].decode("ascii").lower())

    def _auth_command(self, command: Command) -> Event | None:
        if not command.args:
            self._send_multiline(responses.MECHANISMS_FOLLOW, self._offered_mechanisms())
            return None
        mechanism = command.args[0].decode("ascii", "replace").upper()
        if mechanism not in self._settings.sasl_mechanisms:
            raise CommandError(responses.UNSUPPORTED_MECHANISM)
        if mechanism not in self._offered_mechanisms():
            raise CommandError(responses.PLAINTEXT_DISALLOWED)
        initial: bytes | None = None
        if len(command.args) == 2:
            # RFC 5034 §4: "=" is a present but empty initial response.
            initial = b"" if command.args[1] == b"=" else _base64(command.args[1])
        self._enter(Verb.AUTH)
        self._user = ""
        return SaslStart(mechanism, initial)

    def _stls_command(self, command: Command) -> Event:
        if self._tls_active:
            raise CommandError(responses.TLS_ALREADY_ACTIVE)
        if not self._starttls_available:
            raise CommandError(responses.STLS_UNAVAILABLE)
        self._enter(Verb.STLS)
        self._user = ""
        self._send(responses.STLS_BEGIN)
        self._discard_input()
        return StartTls()

    def _capa_command(self, command: Command) -> None:
        self._enter(Verb.CAPA)
        self._send_multiline(responses.CAPA_FOLLOWS, self.capabilities())

    def _quit_command(self, command: Command) -> Event | None:
        self._enter(Verb.QUIT)
        if self._state is State.UPDATE:
            return Update(self._view.deleted_uids())
        # RFC 1939 §4: QUIT in AUTHORIZATION ends the session without an UPDATE state.
        self._send(responses.SIGN_OFF.format(hostname=self._settings.hostname))
        self._close(DisconnectReason.QUIT)
        return None

    def _stat_command(self, command: Command) -> None:
        self._enter(Verb.STAT)
        self._send(responses.STAT.format(count=self._view.count, size=self._view.size))

    def _list_command(self, command: Command) -> None:
        view = self._view
        if command.args:
            number = parse_message_number(command.args[0])
            size = view.get(number).size
            self._enter(Verb.LIST)
            self._send(responses.SCAN_LISTING.format(number=number, size=size))
            return
        self._enter(Verb.LIST)
        self._send(responses.LIST_FOLLOWS.format(count=view.count, size=view.size))
        for number, message in view.listing():
            self._out += responses.listing_line(number, message.size)
        self._out += responses.END_OF_MULTILINE

    def _uidl_command(self, command: Command) -> None:
        view = self._view
        if command.args:
            number = parse_message_number(command.args[0])
            unique_id = view.unique_id(number)
            self._enter(Verb.UIDL)
            self._send(responses.UNIQUE_ID_LISTING.format(number=number, unique_id=unique_id))
            return
        self._enter(Verb.UIDL)
        self._send(responses.UIDL_FOLLOWS)
        for number, _ in view.listing():
            self._out += responses.listing_line(number, view.unique_id(number))
        self._out += responses.END_OF_MULTILINE

    def _retr_command(self, command: Command) -> Event:
        number = parse_message_number(command.args[0])
        message = self._view.get(number)
        return self._retrieve(
            Verb.RETR, number, message, responses.RETR_FOLLOWS.format(size=message.size), None
        )

    def _top_command(self, command: Command) -> Event:
        number = parse_message_number(command.args[0])
        lines = parse_line_count(command.args[1])
        message = self._view.get(number)
        return self._retrieve(Verb.TOP, number, message, responses.TOP_FOLLOWS, lines)

    def _retrieve(
        self, verb: Verb, number: int, message: MaildropMessage, reply: Reply, lines: int | None
    ) -> Event:
        self._enter(verb)
        # The +OK goes out with the first chunk, so fail_message can still answer -ERR.
        self._retrieve_reply = reply.encode()
        self._encoder = MessageEncoder(lines)
        return Retrieve(number, message.uid, lines)

    def _dele_command(self, command: Command) -> None:
        number = parse_message_number(command.args[0])
        self._view.delete(number)
        self._enter(Verb.DELE)
        self._send(responses.DELETED.format(number=number))

    def _noop_command(self, command: Command) -> None:
        self._enter(Verb.NOOP)
        self._send(responses.NOOP)

    def _rset_command(self, command: Command) -> None:
        self._view.reset()
        self._enter(Verb.RSET)
        self._send(responses.MAILDROP_SUMMARY.format(count=self._view.count, size=self._view.size))

    def _send_multiline(self, reply: Reply, lines: Sequence[str]) -> None:
        self._send(reply)
        for line in lines:
            self._out += line.encode("ascii") + b"\r\n"
        self._out += responses.END_OF_MULTILINE


_HANDLERS: dict[Verb, Callable[[Pop3Server, Command], Event | None]] = {
    Verb.USER: Pop3Server._user_command,
    Verb.PASS: Pop3Server._pass_command,
    Verb.APOP: Pop3Server._apop_command,
    Verb.AUTH: Pop3Server._auth_command,
    Verb.STLS: Pop3Server._stls_command,
    Verb.CAPA: Pop3Server._capa_command,
    Verb.QUIT: Pop3Server._quit_command,
    Verb.STAT: Pop3Server._stat_command,
    Verb.LIST: Pop3Server._list_command,
    Verb.UIDL: Pop3Server._uidl_command,
    Verb.RETR: Pop3Server._retr_command,
    Verb.TOP: Pop3Server._top_command,
    Verb.DELE: Pop3Server._dele_command,
    Verb.NOOP: Pop3Server._noop_command,
    Verb.RSET: Pop3Server._rset_command,
}
