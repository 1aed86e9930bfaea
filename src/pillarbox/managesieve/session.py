"""The ManageSieve session: one connection's protocol state machine (RFC 5804).

Implementation notes
- **Shape** (as :mod:`pillarbox.imap.session`): no sockets, TLS, timers or clock. Bytes come
  in through :meth:`ManageSieveSession.receive_data` (the session owns the
  :class:`~.grammar.Framer`), responses go out through an :class:`Output` whose ``write`` the
  adapter implements with back-pressure, time is an argument. Handlers are ``async`` because
  the session is the store's client (through :mod:`pillarbox.sievescripts`, which holds the
  quota and compile rules it shares with the CLI); tests pass a real SQLite store.
- **States** (§2): NOT_AUTHENTICATED and AUTHENTICATED; :data:`ALLOWED` says which commands
  each accepts. Anything else is ``NO`` (the protocol has no BAD), and ``max_errors`` of those
  in a row end the connection with ``BYE``. AUTHENTICATE after a login is ``NO`` (§2.1: no
  reauthentication); UNAUTHENTICATE (§2.14.1) returns to NOT_AUTHENTICATED.
- **One command at a time**, in order; pipelined commands wait in the framer.
- **Capabilities** (§1.7) go out at connect, after STARTTLS (§2.2, without STARTTLS) and on
  CAPABILITY; not after AUTHENTICATE, which negotiates no security layer here (§2.1:
  re-issued only then). OWNER only once authenticated. SASL lists what this connection may
  use: PLAIN only under TLS unless ``login_without_tls`` (RFC 5804 §5); a plaintext mechanism
  asked for before TLS is ``NO (ENCRYPT-NEEDED)``.
- **SASL** (§2.1): challenges and responses are base64 in strings; ``"*"`` cancels with NO; an
  initial response is accepted for client-first mechanisms (all we offer). A mechanism's final
  server data (SCRAM's ``v=``) goes as a last challenge answered by an empty string, which
  §2.1 allows ("MAY be placed within ... the SASL response code" is the other way).
  Credentials, throttling and app passwords are the :class:`Authenticator`'s, as for IMAP.
- **STARTTLS** (§2.2): whatever the client pipelined after it was sent in the clear and is
  dropped (the command-injection class of CVE-2011-0411).
- **Responses never echo client bytes** except where the protocol asks (NOOP's TAG, script
  names in LISTSCRIPTS, the compiler's message about the client's own script), always as
  properly quoted or literal strings.
"""

from __future__ import annotations

import binascii
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from pillarbox import sievescripts
from pillarbox.auth.authenticating import Authenticating, LoggedIn, SaslExchange
from pillarbox.auth.sasl import Challenge, UnsupportedMechanism
from pillarbox.errors import (
    AlreadyExists,
    AuthenticationFailed,
    InvalidName,
    NotFound,
    RateLimited,
    StorageError,
)
from pillarbox.managesieve import responses as r
from pillarbox.managesieve.grammar import (
    Command,
    CommandReady,
    Fatal,
    Framer,
    FramerLimits,
    GrammarError,
    RejectReason,
    parse_command,
    parse_string_line,
)
from pillarbox.managesieve.responses import Reply, encode_string
from pillarbox.sievescripts import ScriptLimits
from pillarbox.store.interface import Store
from pillarbox.store.types import Account

#: RFC 5804 §1.2: the autologout timer, once authenticated, is at least 30 minutes.
MIN_IDLE_TIMEOUT = 1800.0


class State(enum.Enum):
    NOT_AUTHENTICATED = "not-authenticated"
    AUTHENTICATED = "authenticated"
    CLOSED = "closed"


class Action(enum.Enum):
    """What the adapter does after :meth:`ManageSieveSession.receive_data`."""

    CONTINUE = "continue"
    #: The OK to STARTTLS is written: run the handshake, then call ``tls_started``.
    START_TLS = "start-tls"
    #: Write what was output, then close the connection.
    CLOSE = "close"


_ANY_STATE = frozenset({"CAPABILITY", "LOGOUT", "NOOP"})
#: RFC 5804 §2: the commands each state accepts.
ALLOWED: dict[State, frozenset[str]] = {
    State.NOT_AUTHENTICATED: _ANY_STATE | {"AUTHENTICATE", "STARTTLS"},
    State.AUTHENTICATED: _ANY_STATE
    | {
        "HAVESPACE",
        "PUTSCRIPT",
        "LISTSCRIPTS",
        "SETACTIVE",
        "GETSCRIPT",
        "DELETESCRIPT",
        "RENAMESCRIPT",
        "CHECKSCRIPT",
        "UNAUTHENTICATE",
    },
    State.CLOSED: frozenset(),
}


class Output(Protocol):
    async def write(self, data: bytes) -> None: ...


class EventLog(Protocol):
    def info(self, msg: str, **fields: object) -> None: ...

    def exception(self, msg: str, **fields: object) -> None: ...


#: ``trace(command, sasl_response)``: each complete command as received (literals included),
#: and whether it is a SASL response rather than a command — for ``logging.trace_protocol``,
#: which the adapter implements (and redacts).
CommandTrace = Callable[[bytes, bool], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSettings:
    """Every knob of a session; the adapter fills it from ``[managesieve]`` and ``[sieve]``."""

    framer: FramerLimits = field(default_factory=FramerLimits)
    scripts: ScriptLimits = field(default_factory=ScriptLimits)
    #: Bad commands in a row before BYE.
    max_errors: int = 10
    #: Failed AUTHENTICATE commands on one connection before BYE.
    max_auth_failures: int = 3
    #: Seconds without input before BYE (§1.2: at least 30 minutes).
    idle_timeout: float = MIN_IDLE_TIMEOUT
    #: Seconds from connecting (or UNAUTHENTICATE) within which the client must log in, busy
    #: or not: §1.2's 30 minutes are for authenticated sessions; a client that never logs in
    #: only holds a connection slot (Dovecot's login processes give it 3 minutes).
    login_timeout: float = 180.0
    #: PLAIN before TLS (loopback tests and local development only).
    login_without_tls: bool = False
    #: IMPLEMENTATION capability (§1.7).
    implementation: str = "Pillarbox"
    #: SIEVE capability: the ``require`` names the interpreter supports.
    sieve_extensions: tuple[str, ...] = ()
    #: MAXREDIRECTS capability; None leaves it out.
    max_redirects: int | None = None
    #: NOTIFY capability: the enotify methods (§1.7: present only with "enotify" in SIEVE).
    notify_methods: tuple[str, ...] = ()


@dataclass(slots=True)
class _Sasl:
    exchange: SaslExchange


class _Refused(Exception):
    """A handler's early NO."""

    def __init__(self, reply: Reply, *, bad_command: bool = False) -> None:
        super().__init__(reply.text)
        self.reply = reply
        #: A protocol error (counted towards ``max_errors``), not an operation's refusal.
        self.bad_command = bad_command


Handler = Callable[["ManageSieveSession", Command, Output], Awaitable[Reply]]


class ManageSieveSession:
    """One connection. Feed bytes with :meth:`receive_data`; obey the returned :class:`Action`."""

    def __init__(
        self,
        settings: SessionSettings,
        store: Store,
        authenticator: Authenticating,
        *,
        remote_ip: str,
        tls_active: bool,
        starttls_available: bool,
        now: float,
        log: EventLog,
        trace: CommandTrace | None = None,
    ) -> None:
        self.settings = settings
        self._trace = trace
        self.store = store
        self.authenticator = authenticator
        self.tls_active = tls_active
        self._starttls_available = starttls_available
        self._remote_ip = remote_ip
        self._log = log
        self._framer = Framer(settings.framer)
        self._state = State.NOT_AUTHENTICATED
        self._account: Account | None = None
        self._sasl: _Sasl | None = None
        self._errors = 0
        self._auth_failures = 0
        self._last_activity = now
        self._login_since = now
        self._login_timed_out = False
        self._action = Action.CONTINUE

    # -- observation -------------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self._state

    @property
    def account(self) -> Account | None:
        return self._account

    def capabilities(self) -> list[tuple[str, str | None]]:
        """The capability lines for this connection in its current state (§1.7)."""
        settings = self.settings
        lines: list[tuple[str, str | None]] = [("IMPLEMENTATION", settings.implementation)]
        lines.append(("SASL", " ".join(self._offered_mechanisms())))
        lines.append(("SIEVE", " ".join(settings.sieve_extensions)))
        if (
            self._state is State.NOT_AUTHENTICATED
            and self._starttls_available
            and not self.tls_active
        ):
            lines.append(("STARTTLS", None))
        if settings.notify_methods:
            lines.append(("NOTIFY", " ".join(settings.notify_methods)))
        if settings.max_redirects is not None:
            lines.append(("MAXREDIRECTS", str(settings.max_redirects)))
        if self._account is not None:
            lines.append(("OWNER", self._account.address))
        lines.append(("UNAUTHENTICATE", None))  # §2.14: the extension's capability
        lines.append(("VERSION", "1.0"))
        return lines

    def greeting(self) -> bytes:
        """§1.7: the capabilities, then OK, as soon as the client connects."""
        return self._capability_response(r.GREETING)

    def deadline(self) -> float:
        """When :meth:`handle_timeout` is due: the idle timer, and before login the login
        deadline too."""
        idle = self._last_activity + self.settings.idle_timeout
        if self._state is State.NOT_AUTHENTICATED:
            return min(idle, self._login_since + self.settings.login_timeout)
        return idle

    @property
    def login_timed_out(self) -> bool:
        """Whether the session was ended by the login deadline (for the adapter's log)."""
        return self._login_timed_out

    def handle_timeout(self, now: float) -> bytes | None:
        """The BYE to send if the connection has been idle too long (§1.2), or has not logged
        in in time, else None."""
        if now < self.deadline() or self._state is State.CLOSED:
            return None
        late = self._state is State.NOT_AUTHENTICATED
        self._login_timed_out = late and now >= self._login_since + self.settings.login_timeout
        self._state = State.CLOSED
        return (r.BYE_LOGIN_TIMEOUT if self._login_timed_out else r.BYE_IDLE).encode()

    def shutdown(self) -> bytes:
        self._state = State.CLOSED
        return r.BYE_SHUTDOWN.encode()

    def tls_started(self) -> bytes:
        """After the STARTTLS handshake: §2.2 re-issue the capabilities (now without
        STARTTLS), then OK."""
        self.tls_active = True
        return self._capability_response(r.OK)

    # -- input ---------------------------------------------------------------------------
    async def receive_data(self, data: bytes, out: Output, now: float) -> Action:
        """Handle what the client sent; ``b""`` is its end of stream."""
        if self._state is State.CLOSED:
            return Action.CLOSE
        if not data:
            self._state = State.CLOSED
            return Action.CLOSE
        self._last_activity = now
        self._framer.receive_data(data)
        while (event := self._framer.next_event()) is not None:
            if isinstance(event, Fatal):
                self._log.info("closed: literal too large to skip", size=event.size)
                await out.write(r.BYE_INPUT.encode())
                self._state = State.CLOSED
                return Action.CLOSE
            if isinstance(event, CommandReady):
                action = await self._command(event.data, out)
            else:
                self._sasl = None
                reply = _REJECTIONS[event.reason]
                self._log.info("command refused", reason=event.reason.value, size=event.size)
                action = await self._bad(reply, out)
            if action is not Action.CONTINUE:
                return action
        return Action.CONTINUE

    async def _command(self, data: bytes, out: Output) -> Action:
        if self._trace is not None:
            self._trace(data, self._sasl is not None)
        if self._sasl is not None:
            return await self._sasl_response(data, out)
        self._action = Action.CONTINUE
        try:
            command = parse_command(data)
            handler = _HANDLERS.get(command.name)
            if handler is None:
                raise _Refused(r.UNKNOWN_COMMAND, bad_command=True)
            if command.name not in ALLOWED[self._state]:
                raise _Refused(self._wrong_state(), bad_command=True)
            reply = await handler(self, command, out)
        except GrammarError:
            return await self._bad(r.SYNTAX_ERROR, out)
        except _ChallengeSent as challenge:
            await out.write(challenge.line + b"\r\n")
            return Action.CONTINUE
        except _Refused as refusal:
            if refusal.bad_command:
                return await self._bad(refusal.reply, out)
            reply = refusal.reply
        self._errors = 0
        await out.write(reply.encode())
        if self._action is Action.START_TLS:
            dropped = self._framer.discard()
            if dropped:
                self._log.info("discarded input pipelined after STARTTLS", octets=dropped)
        return self._action

    def _wrong_state(self) -> Reply:
        if self._state is State.NOT_AUTHENTICATED:
            return r.NOT_AUTHENTICATED
        return r.ALREADY_AUTHENTICATED

    async def _bad(self, reply: Reply, out: Output) -> Action:
        """A protocol error: NO, or BYE once there have been too many in a row."""
        self._errors += 1
        if self._errors >= self.settings.max_errors:
            await out.write(r.BYE_TOO_MANY_ERRORS.encode())
            self._state = State.CLOSED
            return Action.CLOSE
        await out.write(reply.encode())
        return Action.CONTINUE

    # -- helpers -------------------------------------------------------------------------
    def _capability_lines(self) -> bytes:
        out = bytearray()
        for name, value in self.capabilities():
            out += encode_string(name)
            if value is not None:
                out += b" " + encode_string(value)
            out += b"\r\n"
        return bytes(out)

    def _capability_response(self, ending: Reply) -> bytes:
        return self._capability_lines() + ending.encode()

    @property
    def _secure(self) -> bool:
        return self.tls_active or self.settings.login_without_tls

    def _offered_mechanisms(self) -> tuple[str, ...]:
        return self.authenticator.mechanisms(secure=self._secure)

    def _account_id(self) -> int:
        assert self._account is not None  # ALLOWED admits script commands only when logged in
        return self._account.id

    @staticmethod
    def _args(command: Command, fewest: int, most: int) -> tuple[bytes | int, ...]:
        if not fewest <= len(command.args) <= most:
            raise _Refused(r.BAD_ARGUMENTS.format(verb=command.name), bad_command=True)
        return command.args

    @staticmethod
    def _string(command: Command, value: bytes | int) -> bytes:
        if isinstance(value, int):
            raise _Refused(r.BAD_ARGUMENTS.format(verb=command.name), bad_command=True)
        return value

    @staticmethod
    def _text(value: bytes) -> str:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused(r.INVALID_UTF8, bad_command=True) from None

    def _name(self, command: Command, value: bytes | int) -> str:
        return self._text(self._string(command, value))

    def _script_failure(self, exc: Exception, operation: str) -> _Refused:
        """The NO for a script operation that failed (RFC 5804 §1.3 codes)."""
        match exc:
            case sievescripts.ScriptQuotaExceeded():
                code = f"QUOTA/{exc.quota.value}"
                return _Refused(Reply(r.Status.NO, str(exc), code))
            case sievescripts.InvalidScript() | InvalidName():
                return _Refused(Reply(r.Status.NO, str(exc)))
            case sievescripts.ScriptActive():
                return _Refused(r.SCRIPT_ACTIVE)
            case NotFound():
                return _Refused(r.NO_SUCH_SCRIPT)
            case AlreadyExists():
                return _Refused(r.SCRIPT_EXISTS)
            case _:
                self._log.exception(f"{operation} failed", error=str(exc))
                return _Refused(r.SERVER_FAULT)

    # -- not authenticated (§2.1, §2.2) ---------------------------------------------------
    async def _authenticate(self, command: Command, out: Output) -> Reply:
        args = self._args(command, 1, 2)
        mechanism = self._name(command, args[0]).upper()
        initial: bytes | None = None
        if len(args) == 2:
            initial = self._base64(self._string(command, args[1]))
        try:
            exchange = self.authenticator.start_sasl(
                mechanism, remote_ip=self._remote_ip, secure=self._secure
            )
        except UnsupportedMechanism:
            if mechanism in self.authenticator.mechanisms(secure=True):
                return r.PLAINTEXT_NEEDS_TLS
            return r.UNSUPPORTED_MECHANISM
        self._sasl = _Sasl(exchange)
        return await self._sasl_step(exchange.start(initial), out)

    @staticmethod
    def _base64(data: bytes) -> bytes:
        try:
            return binascii.a2b_base64(data, strict_mode=True)
        except binascii.Error:
            raise _Refused(r.INVALID_BASE64) from None

    async def _sasl_step(self, step: Awaitable[Challenge | LoggedIn], out: Output) -> Reply:
        """Drive the exchange one step: the final reply, or :class:`_ChallengeSent` with the
        challenge to send while ``_sasl`` stays set for the client's response."""
        try:
            result = await step
        except AuthenticationFailed as exc:
            return self._auth_failed(str(exc))
        except RateLimited:
            self._sasl = None
            self._log.info("login throttled")
            return r.AUTH_THROTTLED
        except StorageError as exc:
            self._sasl = None
            self._log.exception("authentication failed: store fault", error=str(exc))
            return r.AUTH_TEMPORARY
        if isinstance(result, Challenge):
            raise _ChallengeSent(encode_string(binascii.b2a_base64(result.data, newline=False)))
        self._sasl = None
        self._account = result.account
        self._state = State.AUTHENTICATED
        self._log.info("logged in", account=result.account.address, mechanism=result.mechanism)
        return r.LOGGED_IN

    def _auth_failed(self, detail: str) -> Reply:
        self._sasl = None
        self._auth_failures += 1
        self._log.info("login failed", detail=detail)
        if self._auth_failures >= self.settings.max_auth_failures:
            self._action = Action.CLOSE
            self._state = State.CLOSED
            return r.BYE_AUTH_FAILURES
        return r.AUTH_FAILED

    async def _sasl_response(self, data: bytes, out: Output) -> Action:
        """A client's answer to a challenge (§2.1): a string with base64, or "*"."""
        assert self._sasl is not None
        self._action = Action.CONTINUE
        try:
            response = parse_string_line(data)
            if response == b"*":
                self._sasl = None
                reply = r.AUTH_CANCELLED
            else:
                reply = await self._sasl_step(
                    self._sasl.exchange.receive(self._base64(response)), out
                )
        except GrammarError:
            self._sasl = None
            reply = r.SYNTAX_ERROR
        except _Refused as refusal:
            self._sasl = None
            reply = refusal.reply
        except _ChallengeSent as challenge:
            await out.write(challenge.line + b"\r\n")
            return Action.CONTINUE
        await out.write(reply.encode())
        return self._action

    async def _starttls(self, command: Command, out: Output) -> Reply:
        self._args(command, 0, 0)
        if self.tls_active:
            return r.TLS_ACTIVE
        if not self._starttls_available:
            return r.TLS_UNAVAILABLE
        self._action = Action.START_TLS
        return r.STARTTLS_BEGIN

    # -- any state (§2.3, §2.4, §2.13) ----------------------------------------------------
    async def _logout(self, command: Command, out: Output) -> Reply:
        self._args(command, 0, 0)
        self._action = Action.CLOSE
        self._state = State.CLOSED
        return r.LOGOUT

    async def _capability(self, command: Command, out: Output) -> Reply:
        self._args(command, 0, 0)
        await out.write(self._capability_lines())
        return r.CAPABILITY_DONE

    async def _noop(self, command: Command, out: Output) -> Reply:
        args = self._args(command, 0, 1)
        if not args:
            return r.NOOP_DONE
        return Reply(r.Status.OK, r.NOOP_DONE.text, r.tag_code(self._string(command, args[0])))

    # -- authenticated (§2.5-§2.12, §2.14.1) ------------------------------------------------
    async def _unauthenticate(self, command: Command, out: Output) -> Reply:
        self._args(command, 0, 0)
        self._log.info("unauthenticated")
        self._account = None
        self._state = State.NOT_AUTHENTICATED
        self._login_since = self._last_activity  # a new login, in a new login_timeout
        return r.UNAUTHENTICATED

    async def _havespace(self, command: Command, out: Output) -> Reply:
        name, size = self._args(command, 2, 2)
        if not isinstance(size, int):
            raise _Refused(r.BAD_ARGUMENTS.format(verb=command.name), bad_command=True)
        try:
            await sievescripts.check_space(
                self.store,
                self._account_id(),
                self._name(command, name),
                size,
                self.settings.scripts,
            )
        except (sievescripts.ScriptQuotaExceeded, InvalidName, StorageError) as exc:
            raise self._script_failure(exc, "havespace") from None
        return r.HAVESPACE_DONE

    async def _putscript(self, command: Command, out: Output) -> Reply:
        name, content = self._args(command, 2, 2)
        script = self._string(command, content)
        try:
            saved = await sievescripts.put_script(
                self.store,
                self._account_id(),
                self._name(command, name),
                sievescripts.decode_script(script),
                self.settings.scripts,
            )
        except (
            sievescripts.ScriptQuotaExceeded,
            sievescripts.InvalidScript,
            InvalidName,
            StorageError,
        ) as exc:
            raise self._script_failure(exc, "putscript") from None
        self._log.info("script stored", name=saved, octets=len(script))
        return r.PUTSCRIPT_DONE

    async def _checkscript(self, command: Command, out: Output) -> Reply:
        (content,) = self._args(command, 1, 1)
        try:
            text = sievescripts.decode_script(self._string(command, content))
            await sievescripts.check_script(text, self.settings.scripts)
        except sievescripts.InvalidScript as exc:
            raise self._script_failure(exc, "checkscript") from None
        return r.CHECKSCRIPT_DONE

    async def _listscripts(self, command: Command, out: Output) -> Reply:
        self._args(command, 0, 0)
        try:
            scripts = await self.store.list_sieve_scripts(self._account_id())
        except StorageError as exc:
            raise self._script_failure(exc, "listscripts") from None
        lines = bytearray()
        for script in scripts:
            # §2.7: sieve-name [SP "ACTIVE"], the active one marked.
            lines += encode_string(script.name) + (b" ACTIVE\r\n" if script.active else b"\r\n")
        await out.write(bytes(lines))
        return r.LISTSCRIPTS_DONE

    async def _setactive(self, command: Command, out: Output) -> Reply:
        (name,) = self._args(command, 1, 1)
        text = self._name(command, name)
        try:
            # §2.8: the empty name deactivates whatever script is active.
            await sievescripts.activate(self.store, self._account_id(), text or None)
        except (NotFound, InvalidName, StorageError) as exc:
            raise self._script_failure(exc, "setactive") from None
        return r.SETACTIVE_DONE

    async def _getscript(self, command: Command, out: Output) -> Reply:
        (name,) = self._args(command, 1, 1)
        try:
            script = await sievescripts.get_script(
                self.store, self._account_id(), self._name(command, name)
            )
        except (NotFound, InvalidName, StorageError) as exc:
            raise self._script_failure(exc, "getscript") from None
        content = script.content.encode("utf-8")
        # §2.9: the script as a string; always a literal, as scripts have line ends.
        await out.write(b"{%d}\r\n" % len(content) + content + b"\r\n")
        return r.GETSCRIPT_DONE

    async def _deletescript(self, command: Command, out: Output) -> Reply:
        (name,) = self._args(command, 1, 1)
        try:
            await sievescripts.delete_script(
                self.store, self._account_id(), self._name(command, name)
            )
        except (NotFound, sievescripts.ScriptActive, InvalidName, StorageError) as exc:
            raise self._script_failure(exc, "deletescript") from None
        return r.DELETESCRIPT_DONE

    async def _renamescript(self, command: Command, out: Output) -> Reply:
        old, new = self._args(command, 2, 2)
        try:
            await sievescripts.rename_script(
                self.store, self._account_id(), self._name(command, old), self._name(command, new)
            )
        except (NotFound, AlreadyExists, InvalidName, StorageError) as exc:
            raise self._script_failure(exc, "renamescript") from None
        return r.RENAMESCRIPT_DONE


class _ChallengeSent(Exception):
    """A SASL challenge line to send instead of a final reply; the exchange goes on."""

    def __init__(self, line: bytes) -> None:
        super().__init__("challenge")
        self.line = line


_REJECTIONS = {
    RejectReason.LINE_TOO_LONG: r.LINE_TOO_LONG,
    RejectReason.LITERAL_TOO_LARGE: r.LITERAL_TOO_LARGE,
    RejectReason.COMMAND_TOO_LARGE: r.COMMAND_TOO_LARGE,
}

_HANDLERS: dict[str, Handler] = {
    "AUTHENTICATE": ManageSieveSession._authenticate,
    "STARTTLS": ManageSieveSession._starttls,
    "LOGOUT": ManageSieveSession._logout,
    "CAPABILITY": ManageSieveSession._capability,
    "NOOP": ManageSieveSession._noop,
    "UNAUTHENTICATE": ManageSieveSession._unauthenticate,
    "HAVESPACE": ManageSieveSession._havespace,
    "PUTSCRIPT": ManageSieveSession._putscript,
    "CHECKSCRIPT": ManageSieveSession._checkscript,
    "LISTSCRIPTS": ManageSieveSession._listscripts,
    "SETACTIVE": ManageSieveSession._setactive,
    "GETSCRIPT": ManageSieveSession._getscript,
    "DELETESCRIPT": ManageSieveSession._deletescript,
    "RENAMESCRIPT": ManageSieveSession._renamescript,
}
