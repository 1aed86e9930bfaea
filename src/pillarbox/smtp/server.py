"""The server role of the sans-I/O SMTP core (SMTP, and LMTP as a mode).

Implementation notes
--------------------
RFCs: 5321 (SMTP), 2920 (PIPELINING), 1870 (SIZE), 6152 (8BITMIME), 6531 (SMTPUTF8),
2034/3463 (enhanced status codes), 3207 (STARTTLS), 3030 (CHUNKING), 3461 (DSN parameters),
4954 (AUTH), 2033 (LMTP), 8689 (REQUIRETLS, offered under TLS only), 9422 (LIMITS: RCPTMAX, the
``max_recipients`` in force); Postfix's XFORWARD (offered only when the settings say so).

Invariants:

* Replies leave in the order of the commands they answer (RFC 2920 §3.2). Input is processed
  one command at a time; a command that needs the application (hello, MAIL, RCPT, STARTTLS,
  AUTH, end of message) makes :meth:`ServerConnection.next_event` return :data:`PAUSED` until
  the application answers it, and nothing after it is even parsed before that.
* The state machine is :data:`TRANSITIONS`; a (state, verb) pair missing from it is answered
  503 5.5.1 (or the RFC's more specific reply) and changes nothing.
* Message content streams: :class:`DataChunk` events carry decoded bytes as they arrive; the
  core holds at most two undecided octets of a DATA body and never a whole message.
* Lines end at CRLF only. A bare CR or LF never ends DATA nor forms part of ``CRLF.CRLF``
  (SMTP smuggling, CVE-2023-51764/51765/51766); by policy such a message is refused
  (``550 5.5.2``) or its bare line breaks are normalised to CRLF.
* After ``220`` to STARTTLS everything already buffered is discarded and the session forgets
  its hello (RFC 3207 §4.2, CVE-2011-0411 command injection).
* With ``enforce_sync`` (the MX, for clients outside its trusted networks), a command parsed
  while bytes sent after it already wait in the buffer, where the client had to wait for our
  reply first, ends the session with ``554 5.5.0``: HELO, EHLO, LHLO and DATA end a pipelined
  group (RFC 2920 §3.1), and without PIPELINING in effect every command does. Since nothing
  after a command is parsed before it is answered, those bytes were sent before the reply;
  a client that waits can never trip it (it may miss a burst split across reads). Spam
  engines fire whole sessions at once (Exim's ``smtp_enforce_sync``, Postfix's
  ``reject_unauth_pipelining``); RFC 5321 §7.8 lets a server end such a session. QUIT, the
  message content and BDAT chunks are exempt (§3.1 lets content start a group; RFC 3030).
* MAIL is refused with 530 5.7.0 until STARTTLS and AUTH where the settings require them
  (``require_tls``, ``require_auth``: submission, and an LMTP client outside the trusted
  networks); the same in SMTP and LMTP mode, as STARTTLS and AUTH are.
* The octets announced by a syntactically valid BDAT are always consumed, even when the
  command is refused, so message content is never read as commands (RFC 3030 §2).
* Every limit is in :class:`SmtpServerSettings`; the session is closed with 421 after
  ``max_errors`` 4xx/5xx replies. Time is an argument: :meth:`ServerConnection.deadline`
  says when :meth:`ServerConnection.handle_timeout` is due.
* Nothing raised by parsing peer input escapes: bad input becomes a reply. Only misuse by the
  application raises (:class:`~pillarbox.smtp.errors.LocalProtocolError`).
"""

from __future__ import annotations

import base64
import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from pillarbox.mail.dotstuff import Unstuffer
from pillarbox.smtp import replies as R
from pillarbox.smtp.errors import CommandError, LocalProtocolError
from pillarbox.smtp.extensions import LIMIT_MAX, Capabilities, Extension, Limits
from pillarbox.smtp.grammar import (
    Auth,
    Bdat,
    Command,
    Data,
    Expn,
    Hello,
    Help,
    MailFrom,
    Noop,
    Path,
    Quit,
    RcptTo,
    Rset,
    StartTls,
    Vrfy,
    Xforward,
    decode_sasl,
    parse_command,
)
from pillarbox.smtp.replies import Reply
from pillarbox.smtp.sentinels import CLOSED, NEED_DATA, PAUSED, Sentinel


class Mode(enum.StrEnum):
    SMTP = "smtp"
    #: RFC 2033: LHLO instead of HELO/EHLO, one reply per accepted recipient after the data.
    LMTP = "lmtp"


class BareLinebreakPolicy(enum.StrEnum):
    """What to do with a message containing a bare CR or LF (RFC 5321 §2.3.8)."""

    #: Refuse it with :data:`~pillarbox.smtp.replies.BARE_LINEBREAK` (Postfix
    #: ``smtpd_forbid_bare_newline = reject``).
    REJECT = "reject"
    #: Accept it with every bare CR or LF turned into CRLF (they still never end the data).
    NORMALISE = "normalise"


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpServerSettings:
    """Limits and offers of one SMTP listener; every field is configurable."""

    #: Our name, first word of the greeting and of the EHLO reply (RFC 5321 §4.1.1.1).
    hostname: str
    mode: Mode = Mode.SMTP
    #: Largest message in octets, advertised with SIZE and enforced as octets arrive (RFC 1870).
    max_message_size: int = 50 * 1024 * 1024
    #: Accepted recipients per message; RFC 5321 §4.5.3.1.8 asks for at least 100. Announced
    #: as LIMITS RCPTMAX (RFC 9422 §4.2), which counts RCPT commands: a client that keeps to
    #: it never sends more than this, so never meets the 452.
    max_recipients: int = 100
    #: Longest command line with its CRLF. RFC 5321 §4.5.3.1.4 says 512, and lets extensions
    #: raise it (SIZE, DSN and SMTPUTF8 parameters make lines longer).
    max_command_line: int = 4096
    #: Longest AUTH command or SASL response line (RFC 4954 §4 suggests 12288).
    max_auth_line: int = 12288
    #: Longest DATA text line with its CRLF (RFC 5321 §4.5.3.1.6); None for no limit.
    max_text_line: int | None = 1000
    #: 4xx/5xx replies in one session before ``421`` and close (Postfix hard_error_limit).
    max_errors: int = 20
    bare_linebreaks: BareLinebreakPolicy = BareLinebreakPolicy.REJECT
    #: Seconds of client silence while a command is awaited (RFC 5321 §4.5.3.2.7).
    command_timeout: float = 300.0
    #: Seconds of client silence inside DATA or a BDAT chunk (RFC 5321 §4.5.3.2.5).
    data_timeout: float = 180.0
    #: Submission: seconds from the greeting within which the client must authenticate, busy
    #: or not, else ``421 4.4.2``; None (an MX, where nobody logs in): no such deadline.
    login_timeout: float | None = None
    #: Offer STARTTLS on plaintext connections (a certificate is configured).
    starttls: bool = False
    #: SASL mechanisms offered with AUTH (uppercase); empty: no AUTH (an MX).
    auth_mechanisms: tuple[str, ...] = ()
    #: Offer AUTH before TLS (RFC 4954 §4 lets servers refuse; only for trusted networks).
    auth_without_tls: bool = False
    #: Refuse MAIL with ``530 5.7.0`` until STARTTLS (RFC 3207 §4: a server may require TLS
    #: before accepting mail; an LMTP client outside ``[lmtp] trusted_networks``).
    require_tls: bool = False
    #: Refuse MAIL with ``530 5.7.0`` until AUTH succeeded (RFC 4954 §6: submission, and an
    #: LMTP client outside ``[lmtp] trusted_networks``).
    require_auth: bool = False
    pipelining: bool = True
    #: End the session with ``554 5.5.0`` when a command arrives before the reply it had to
    #: wait for (module notes; the MX's ``smtp.enforce_sync``).
    enforce_sync: bool = False
    eightbitmime: bool = True
    smtputf8: bool = True
    chunking: bool = True
    dsn: bool = True
    #: Offer XFORWARD (a trusted front MTA passes its client's attributes; LMTP listener).
    xforward: bool = False
    #: Offer REQUIRETLS (RFC 8689) once TLS is in effect: the promise that mail given with it
    #: leaves only over authenticated TLS to servers that offer it in turn.
    requiretls: bool = True
    #: What these settings offer, by whether the session is encrypted (:func:`_offers`): a
    #: cache, not part of the value, as :class:`Reply`'s wire form is.
    _offers: dict[bool, _Offered] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        for name in ("max_message_size", "max_recipients", "max_errors", "max_text_line"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive")
        if min(self.max_command_line, self.max_auth_line) < 512:
            raise ValueError("command lines of 512 octets must fit (RFC 5321 §4.5.3.1.4)")


class State(enum.Enum):
    UNGREETED = "ungreeted"  # the application has not sent the greeting yet
    REFUSED = "refused"  # greeted with 554: only QUIT is served (RFC 5321 §3.1)
    GREETED = "greeted"  # no (accepted) hello yet
    READY = "ready"  # hello accepted, no transaction
    MAIL = "mail"  # sender accepted, no recipient yet
    RCPT = "rcpt"  # at least one recipient accepted
    DATA = "data"  # reading a DATA body
    BDAT = "bdat"  # between the chunks of a BDAT transaction
    CHUNK = "chunk"  # reading the octets of one BDAT chunk
    AUTH = "auth"  # awaiting a SASL response line
    TLS = "tls"  # 220 sent to STARTTLS, the adapter is doing the handshake
    CLOSED = "closed"

    # Enum's own ``__hash__`` is a Python function (``hash(self._name_)``), paid by every
    # command's TRANSITIONS look-up and the adapter's idle-state test; members are singletons
    # compared by identity, so the object's C-level hash agrees with equality as well.
    __hash__ = object.__hash__


# The members as names of this module, for the core's hot paths: Python 3.11's EnumType has a
# ``__getattr__``, so each ``State.X`` is looked up through the type's slow attribute hook
# (~900 instructions under callgrind), and the core made ~100 such lookups a message.
_UNGREETED, _REFUSED, _GREETED, _READY, _MAIL, _RCPT = (
    State.UNGREETED,
    State.REFUSED,
    State.GREETED,
    State.READY,
    State.MAIL,
    State.RCPT,
)
_DATA, _BDAT, _CHUNK, _AUTH, _TLS, _CLOSED = (
    State.DATA,
    State.BDAT,
    State.CHUNK,
    State.AUTH,
    State.TLS,
    State.CLOSED,
)
_COMMAND_STATES = (_GREETED, _READY, _MAIL, _RCPT, _BDAT)

#: (state, verb) → state once the command succeeded. Pairs not listed are out of sequence.
TRANSITIONS: dict[tuple[State, str], State] = {
    # RFC 5321 §4.1.4: a hello may come at any time and resets any transaction.
    **{(s, v): _READY for s in _COMMAND_STATES for v in ("EHLO", "HELO", "LHLO")},
    # RFC 5321 §4.1.1.5, §4.1.1.6, §4.1.1.8, §4.1.1.9: allowed anywhere between commands.
    **{(s, "RSET"): _GREETED if s is _GREETED else _READY for s in _COMMAND_STATES},
    **{(s, v): s for s in _COMMAND_STATES for v in ("NOOP", "HELP", "VRFY", "EXPN")},
    # RFC 5321 §4.1.1.10; §3.1: after a 554 greeting only QUIT.
    **{(s, "QUIT"): _CLOSED for s in (*_COMMAND_STATES, _REFUSED)},
    # RFC 3207 §4: STARTTLS outside a transaction.
    (_GREETED, "STARTTLS"): _TLS,
    (_READY, "STARTTLS"): _TLS,
    # RFC 4954 §4: AUTH after EHLO, not during a transaction.
    (_READY, "AUTH"): _READY,
    # XFORWARD_README: any time after EHLO/LHLO but inside a transaction (MAIL to the dot).
    (_READY, "XFORWARD"): _READY,
    (_READY, "MAIL"): _MAIL,
    (_MAIL, "RCPT"): _RCPT,
    (_RCPT, "RCPT"): _RCPT,
    (_RCPT, "DATA"): _DATA,
    # RFC 3030 §2: BDAT chunks follow the recipients; DATA and BDAT never mix.
    (_RCPT, "BDAT"): _CHUNK,
    (_BDAT, "BDAT"): _CHUNK,
}

_VERBS = frozenset(
    {"MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "STARTTLS", "HELP", "VRFY", "EXPN"}
    | {"AUTH", "XFORWARD"}
)
_HELLO_VERBS = {Mode.SMTP: frozenset({"HELO", "EHLO"}), Mode.LMTP: frozenset({"LHLO"})}


# -- events -----------------------------------------------------------------------------------
# Commands from :mod:`pillarbox.smtp.grammar` are events too: Hello, MailFrom, RcptTo, StartTls
# and Auth wait for a decision; Rset, Noop, Help, Vrfy and Quit are already answered.


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """A SASL response line, base64-decoded; answer with challenge/accept/reject."""

    data: bytes


@dataclass(frozen=True, slots=True)
class AuthAborted:
    """The SASL exchange ended without a decision (client sent ``*``, or a bad line); the core
    already answered with ``reply``."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class DataStart:
    """Message content begins (after 354 to DATA, or with the first BDAT chunk)."""

    chunking: bool


@dataclass(frozen=True, slots=True)
class DataChunk:
    """Message content as it arrives: dot-unstuffed for DATA, raw for BDAT."""

    data: bytes


@dataclass(frozen=True, slots=True)
class DataEnd:
    """The message is complete; the application answers it (accept/reject, or one reply per
    recipient in LMTP mode). ``recipients`` are the accepted ones, in order."""

    size: int
    recipients: tuple[Path, ...]


@dataclass(frozen=True, slots=True)
class DataAborted:
    """The core refused the message (``reply``): the transaction is void, drop the spool."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """The core refused a command with ``reply`` (for logging; nothing to decide)."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class Shutdown:
    """The core closes the session after sending ``reply`` (timeout, too many errors)."""

    reply: Reply


Event = (
    Hello
    | MailFrom
    | RcptTo
    | StartTls
    | Auth
    | AuthResponse
    | AuthAborted
    | DataStart
    | DataChunk
    | DataEnd
    | DataAborted
    | Rset
    | Noop
    | Help
    | Vrfy
    | Quit
    | Xforward
    | ProtocolError
    | Shutdown
)
_Decision = Hello | MailFrom | RcptTo | StartTls | Auth | AuthResponse | DataEnd


def _auth_offered(settings: SmtpServerSettings, tls: bool) -> bool:
    return bool(settings.auth_mechanisms) and (tls or settings.auth_without_tls)


@dataclass(frozen=True, slots=True)
class Offer(Capabilities):
    """What EHLO/LHLO offers, and ``parsed``: the keywords whose MAIL/RCPT parameters are
    taken (RFC 5321 §4.1.1.11), which every such command asks for."""

    parsed: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class _Offered:
    """What one settings value offers on a connection encrypted or not, with its hello replies."""

    offer: Offer
    #: The 250 to EHLO/LHLO: our name, then the extension lines.
    ehlo: Reply
    #: The 250 to HELO: our name alone (RFC 5321 §4.1.1.1).
    helo: Reply


def _offers(settings: SmtpServerSettings, tls: bool) -> _Offered:
    """:class:`_Offered` for ``settings``, made at their first session (encrypted or not) and
    kept on them: the same for every session of a listener, and working it out with the
    replies rendered was ~10 µs of a one-message session. Kept by value in an
    ``lru_cache``, each session paid for hashing the settings and the offer (dataclass hashes,
    in Python)."""
    offered = settings._offers.get(tls)
    if offered is None:
        offer = _offer(settings, tls)
        offered = _Offered(
            offer, _hello_reply(settings.hostname, offer), _hello_reply(settings.hostname, None)
        )
        settings._offers[tls] = offered
    return offered


def _offer(settings: SmtpServerSettings, tls: bool) -> Offer:
    """What EHLO offers under ``settings``, on a connection encrypted or not."""
    keywords = {Extension.SIZE.value, Extension.ENHANCEDSTATUSCODES.value}
    optional = (
        (settings.pipelining, Extension.PIPELINING),
        (settings.eightbitmime, Extension.EIGHTBITMIME),
        (settings.smtputf8, Extension.SMTPUTF8),
        (settings.chunking, Extension.CHUNKING),
        (settings.dsn, Extension.DSN),
        (settings.starttls and not tls, Extension.STARTTLS),
        (_auth_offered(settings, tls), Extension.AUTH),
        (settings.xforward, Extension.XFORWARD),
        # RFC 8689 §2: the option is only for a TLS session, and the server advertises it
        # in the EHLO reply that follows STARTTLS (Appendix A): never in the clear.
        (settings.requiretls and tls, Extension.REQUIRETLS),
    )
    keywords.update(ext.value for on, ext in optional if on)
    # RFC 9422 §3.4: only the limits this session applies, from settings that never change
    # within it, so every EHLO of the session announces the same (§3.6). No MAILMAX: a session
    # takes any number of transactions; no RCPTDOMAINMAX: recipients of any domains.
    limits = Limits()
    if settings.max_recipients <= LIMIT_MAX:  # §4.2: six digits at most
        keywords.add(Extension.LIMITS.value)
        limits = Limits(rcpt_max=settings.max_recipients)
    offered = frozenset(keywords)
    # REQUIRETLS is parsed in the clear too, so that MAIL can say why it is refused
    # (RFC 8689 §2: TLS first).
    parsed = offered | {Extension.REQUIRETLS.value} if settings.requiretls else offered
    return Offer(
        offered, settings.max_message_size, settings.auth_mechanisms, limits, parsed=parsed
    )


def _hello_reply(hostname: str, capabilities: Capabilities | None) -> Reply:
    """The 250 to a hello: our name, then the extension lines for EHLO/LHLO (``capabilities``
    None for HELO, RFC 5321 §4.1.1.1)."""
    lines = [hostname]
    if capabilities is not None:
        lines += capabilities.ehlo_lines()
    return Reply(250, None, "\n".join(lines))


@dataclass(slots=True)
class _Transaction:
    mail: MailFrom
    recipients: list[Path] = field(default_factory=list)
    size: int = 0


class ServerConnection:
    """One SMTP (or LMTP) session, server side. See the module notes for the invariants.

    Drive it: :meth:`greet`; then loop over :meth:`receive_data` / :meth:`next_event`, answer
    decision events with :meth:`accept`, :meth:`reject` (or :meth:`challenge` during AUTH,
    :meth:`respond_per_recipient` in LMTP), and after each call write :meth:`data_to_send`.
    """

    def __init__(self, settings: SmtpServerSettings, *, tls: bool = False) -> None:
        self.settings = settings
        #: The connection is encrypted (implicit TLS, or after :meth:`tls_established`).
        self.tls = tls
        self.authenticated = False
        #: The accepted hello of this session, None before (and after STARTTLS).
        self.hello: Hello | None = None
        self._state = _UNGREETED
        self._buf = bytearray()
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._pending: _Decision | None = None
        self._txn: _Transaction | None = None
        self._unstuffer: Unstuffer | None = None
        self._failure: Reply | None = None  # the reply the current message will get
        self._discarding_line = False
        self._chunk_left = 0
        self._chunk_last = False
        self._chunk_refusal: tuple[Reply, State] | None = None
        self._errors = 0
        self._last_activity: float | None = None
        self._login_deadline: float | None = None
        #: :func:`_offers` for this connection, looked up at its first need (and again after
        #: STARTTLS).
        self._offered_now: _Offered | None = None

    # -- inspection ---------------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self._state

    @property
    def pending(
        self,
    ) -> Hello | MailFrom | RcptTo | StartTls | Auth | AuthResponse | DataEnd | None:
        """The event awaiting the application's decision, if any."""
        return self._pending

    @property
    def capabilities(self) -> Offer:
        """What EHLO offers on this connection now (STARTTLS and AUTH depend on TLS). Every
        command line asks (its parameters must belong to an offered extension), so it is
        looked up once per connection and again after STARTTLS."""
        return self._offered_here.offer

    @property
    def _offered_here(self) -> _Offered:
        if self._offered_now is None:
            self._offered_now = _offers(self.settings, self.tls)
        return self._offered_now

    @property
    def _auth_offered(self) -> bool:
        return _auth_offered(self.settings, self.tls)

    # -- I/O-facing API -----------------------------------------------------------------------
    def greet(self, reply: Reply) -> None:
        """Send the greeting: 220 to serve, 554 to refuse but await QUIT (RFC 5321 §3.1), or
        421 to close at once."""
        if self._state is not _UNGREETED:
            raise LocalProtocolError("greeting already sent")
        self._out += reply.render()
        if reply.code == 220:
            self._state = _GREETED
        elif reply.code == 554:
            self._state = _REFUSED
        elif reply.code == 421:
            self._state = _CLOSED
        else:
            raise LocalProtocolError(f"a greeting is 220, 554 or 421, not {reply.code}")

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from the client; any bytes refresh the inactivity timer (STYLE §8)."""
        if self._state in (_CLOSED, _TLS):
            return  # RFC 3207 §4.2: plaintext arriving around the handshake is discarded
        if data:
            self._buf += data
            self._last_activity = now

    def data_to_send(self, now: float) -> bytes:
        """Bytes to write to the client; the inactivity timer restarts when a reply leaves."""
        out = bytes(self._out)
        self._out.clear()
        if out:
            self._last_activity = now
            if self._login_deadline is None and self.settings.login_timeout is not None:
                self._login_deadline = now + self.settings.login_timeout  # from the greeting
        return out

    def next_event(self) -> Event | Sentinel:
        """The next event, or :data:`NEED_DATA`, :data:`PAUSED`, :data:`CLOSED`.

        Read more from the socket only after :data:`NEED_DATA`: that is the backpressure which
        keeps the input buffer bounded.
        """
        while True:
            if self._events:
                return self._events.popleft()
            if self._state is _CLOSED:
                return CLOSED
            if self._pending is not None or self._state in (_UNGREETED, _TLS):
                return PAUSED
            if not self._advance():
                return NEED_DATA

    def deadline(self) -> float | None:
        """When :meth:`handle_timeout` is due, or None while nothing is awaited from the client."""
        if (
            self._pending is not None
            or self._last_activity is None
            or self._state in (_UNGREETED, _TLS, _CLOSED)
        ):
            return None
        in_data = self._state in (_DATA, _CHUNK)
        s = self.settings
        idle = self._last_activity + (s.data_timeout if in_data else s.command_timeout)
        login = self._pending_login_deadline
        return idle if login is None else min(idle, login)

    @property
    def _pending_login_deadline(self) -> float | None:
        return None if self.authenticated else self._login_deadline

    def handle_timeout(self, now: float) -> None:
        """Close with 421 4.4.2 if the client has been silent past the deadline, or has not
        authenticated by the login deadline."""
        deadline = self.deadline()
        if deadline is not None and now >= deadline:
            login = self._pending_login_deadline
            self._shutdown(R.LOGIN_TIMEOUT if login is not None and now >= login else R.TIMEOUT)

    def tls_established(self) -> None:
        """The adapter finished the TLS handshake after 220 to STARTTLS: the session starts
        over, forgetting the hello and a login made in plain text (RFC 3207 §4.2), so that
        ``require_auth`` wants an AUTH under TLS. The login deadline still counts from the
        greeting."""
        if self._state is not _TLS:
            raise LocalProtocolError("no STARTTLS in progress")
        self.tls = True
        # RFC 3207 §4.2: "The server MUST discard any knowledge obtained from the client ...
        # which was not obtained from the TLS negotiation itself."
        self.authenticated = False
        self._offered_now = None
        self.hello = None
        self._buf.clear()
        self._state = _GREETED

    # -- decisions ----------------------------------------------------------------------------
    def accept(self, reply: Reply | None = None) -> None:
        """Accept the pending event with ``reply`` (a 2xx), or its default: the EHLO reply with
        our capabilities, 250 to MAIL/RCPT/end of message, 220 to STARTTLS, 235 to AUTH.
        In LMTP mode, accepting the end of message gives ``reply`` to every recipient."""
        if reply is not None and not 200 <= reply.code < 300:
            raise LocalProtocolError(f"accepting with a {reply.code} reply")
        if reply is not None and isinstance(self._pending, Hello):
            raise LocalProtocolError("the hello reply is built by the core")
        event = self._take_pending()
        match event:
            case Hello():
                self.hello = event
                self._state = _READY
                offered = self._offered_here
                self._reply(offered.ehlo if event.extended else offered.helo)
            case MailFrom():
                self._txn = _Transaction(event)
                self._state = _MAIL
                self._reply(reply or R.SENDER_OK)
            case RcptTo():
                assert self._txn is not None
                self._txn.recipients.append(event.path)
                self._state = _RCPT
                self._reply(reply or R.RECIPIENT_OK)
            case DataEnd():
                self._end_transaction()
                final = reply or R.MESSAGE_ACCEPTED
                for _ in self._per_recipient(event):
                    self._reply(final)
            case StartTls():
                self._state = _TLS
                self._buf.clear()  # RFC 3207 §4.2: pipelined plaintext after STARTTLS is void
                self._reply(reply or R.READY_TO_START_TLS)
            case Auth() | AuthResponse():
                self.authenticated = True
                self._state = _READY
                self._reply(reply or R.AUTH_SUCCEEDED)

    def reject(self, reply: Reply) -> None:
        """Refuse the pending event with ``reply`` (4xx or 5xx)."""
        if reply.code < 400:
            raise LocalProtocolError(f"rejecting with a {reply.code} reply")
        event = self._take_pending()
        match event:
            case Auth() | AuthResponse():
                self._state = _READY
            case DataEnd():
                self._end_transaction()
                for _ in self._per_recipient(event):
                    self._reply(reply, counted=self._counts_refusals)
                return
            case RcptTo():
                self._reply(reply, counted=self._counts_refusals)
                return
        self._reply(reply)

    def answer(self, reply: Reply) -> None:
        """:meth:`accept` a 2xx ``reply``, :meth:`reject` with anything 4xx/5xx: for
        applications whose policy already returns a reply constant."""
        if reply.code < 400:
            self.accept(reply)
        else:
            self.reject(reply)

    def challenge(self, data: bytes) -> None:
        """Send a SASL challenge (``334`` + base64, RFC 4954 §4) for the pending AUTH."""
        if not isinstance(self._pending, Auth | AuthResponse):
            raise LocalProtocolError("no AUTH exchange pending")
        self._pending = None
        self._state = _AUTH
        self._reply(Reply(334, None, base64.b64encode(data).decode("ascii")))

    def respond_per_recipient(self, replies: Sequence[Reply]) -> None:
        """LMTP (RFC 2033 §4.2): one reply per accepted recipient, in RCPT order."""
        if self.settings.mode is not Mode.LMTP:
            raise LocalProtocolError("per-recipient replies are for LMTP")
        event = self._pending
        if not isinstance(event, DataEnd) or len(replies) != len(event.recipients):
            raise LocalProtocolError("need one reply per accepted recipient to a DataEnd")
        self._pending = None
        self._end_transaction()
        for reply in replies:
            self._reply(reply, counted=self._counts_refusals)

    # -- internals ----------------------------------------------------------------------------
    def _take_pending(self) -> _Decision:
        event = self._pending
        if event is None:
            raise LocalProtocolError("no decision pending")
        self._pending = None
        return event

    def _per_recipient(self, event: DataEnd) -> Sequence[Path]:
        """The recipients that get a reply: all in LMTP, one "message" reply in SMTP."""
        return event.recipients if self.settings.mode is Mode.LMTP else event.recipients[:1]

    def _end_transaction(self) -> None:
        self._txn = None
        self._state = _READY

    @property
    def _counts_refusals(self) -> bool:
        """Whether the application's refusal of a recipient or a message counts towards
        ``max_errors``. Not in LMTP: a front MTA relays what its senders wrote, and a mailbox
        over quota or an unknown recipient says nothing about the client; closing its cached
        connection after a few would only make it reconnect."""
        return self.settings.mode is Mode.SMTP

    def _reply(self, reply: Reply, *, counted: bool = True) -> None:
        self._out += reply.render()
        if counted and reply.code >= 400 and self._state is not _CLOSED:
            self._errors += 1
            if self._errors >= self.settings.max_errors:
                self._shutdown(R.TOO_MANY_ERRORS)

    def _refuse(self, reply: Reply) -> None:
        """The core answers a command with an error of its own."""
        self._events.append(ProtocolError(reply))
        self._reply(reply)

    def _shutdown(self, reply: Reply) -> None:
        self._out += reply.render()
        self._state = _CLOSED
        self._pending = None
        self._buf.clear()
        self._events.append(Shutdown(reply))

    def _advance(self) -> bool:
        """Consume some buffered input; False when more bytes are needed to progress."""
        if self._state is _DATA:
            return self._advance_data()
        if self._state is _CHUNK:
            return self._advance_chunk()
        return self._advance_line()

    def _advance_line(self) -> bool:
        auth_line = self._state is _AUTH or self._buf[:5].upper() == b"AUTH "
        limit = self.settings.max_auth_line if auth_line else self.settings.max_command_line
        end = self._buf.find(b"\r\n")
        if end < 0:
            if not self._discarding_line and len(self._buf) <= limit:
                return False
            # Over-long: drop what we have (keeping a CR that may start the CRLF) and skip to
            # the end of the line, which RFC 5321 §4.5.3.1.10 answers with 500.
            before, was_discarding = len(self._buf), self._discarding_line
            self._buf = bytearray(b"\r" if self._buf.endswith(b"\r") else b"")
            self._discarding_line = True
            return not was_discarding or len(self._buf) < before
        line = bytes(self._buf[:end])
        del self._buf[: end + 2]
        if self._discarding_line or end + 2 > limit:
            self._discarding_line = False
            if self._state is _AUTH:
                self._abort_auth(R.AUTH_LINE_TOO_LONG)
            else:
                self._refuse(R.AUTH_LINE_TOO_LONG if auth_line else R.LINE_TOO_LONG)
            return True
        if self._state is _AUTH:
            self._auth_line(line)
        else:
            self._command_line(line)
        return True

    def _abort_auth(self, reply: Reply) -> None:
        self._state = _READY
        self._events.append(AuthAborted(reply))
        self._reply(reply)

    def _auth_line(self, line: bytes) -> None:
        if line == b"*":
            self._abort_auth(R.AUTH_CANCELLED)  # RFC 4954 §4
            return
        try:
            self._pause(AuthResponse(decode_sasl(line.decode("ascii"))))
        except (CommandError, UnicodeDecodeError):
            self._abort_auth(R.AUTH_BAD_BASE64)

    def _pause(self, event: _Decision) -> None:
        self._pending = event
        self._events.append(event)

    def _command_line(self, line: bytes) -> None:
        verb = line.partition(b" ")[0].upper().decode("ascii", "replace")
        if verb == "BDAT":
            self._bdat(line)
            return
        if verb not in _VERBS and verb not in _HELLO_VERBS[self.settings.mode]:
            self._refuse(R.COMMAND_UNRECOGNIZED)
            return
        target = TRANSITIONS.get((self._state, verb))
        if target is None:
            self._refuse(self._out_of_sequence(verb))
            return
        try:
            command = parse_command(line, offered=self._offered, smtputf8=self._txn_smtputf8)
        except CommandError as exc:
            self._refuse(exc.reply)
            return
        if self._buf and self.settings.enforce_sync and self._must_wait(command):
            self._events.append(ProtocolError(R.SYNC_ERROR))
            self._shutdown(R.SYNC_ERROR)
            return
        self._dispatch(command, target)

    def _must_wait(self, command: Command) -> bool:
        """Whether the client had to wait for the reply to ``command`` before sending more
        (RFC 2920 §3.1; module notes)."""
        if isinstance(command, Quit):
            return False  # nothing after QUIT matters
        if isinstance(command, Hello | Data):
            return True
        hello = self.hello
        return not (self.settings.pipelining and hello is not None and hello.extended)

    @property
    def _offered(self) -> frozenset[str]:
        """Parameters are only valid for extensions offered by an EHLO/LHLO (RFC 5321 §4.1.1.11)."""
        if not (self.hello and self.hello.extended):
            return frozenset()
        return self.capabilities.parsed

    @property
    def _hello_first(self) -> Reply:
        return R.LHLO_FIRST if self.settings.mode is Mode.LMTP else R.HELLO_FIRST

    @property
    def _no_valid_recipients(self) -> Reply:
        # RFC 2033 §4.2: in LMTP, DATA without a successful RCPT MUST fail with 503.
        if self.settings.mode is Mode.LMTP:
            return R.NO_VALID_RECIPIENTS_LMTP
        return R.NO_VALID_RECIPIENTS

    @property
    def _txn_smtputf8(self) -> bool:
        return self._txn is not None and self._txn.mail.params.smtputf8

    def _out_of_sequence(self, verb: str) -> Reply:
        state = self._state
        if state is _REFUSED:
            return R.BAD_SEQUENCE
        if verb in ("MAIL", "RCPT", "DATA", "AUTH") and state is _GREETED:
            return self._hello_first
        if verb == "MAIL":
            return R.NESTED_MAIL
        if verb == "AUTH":
            return R.AUTH_NOT_NOW
        if verb == "STARTTLS":
            return R.TLS_ALREADY_ACTIVE if self.tls else R.BAD_SEQUENCE
        if verb in ("RCPT", "DATA") and state is _READY:
            return R.MAIL_FIRST
        if verb == "DATA" and state is _MAIL:
            return self._no_valid_recipients  # RFC 2920 §3.1: every RCPT failed
        return R.BAD_SEQUENCE

    def _dispatch(
        self,
        command: Command,
        target: State,
    ) -> None:
        # Arms in the order commands come (each a class test paid by the commands after it).
        match command:
            case Hello():
                if self._state in (_MAIL, _RCPT, _BDAT):
                    self._txn = None  # RFC 5321 §4.1.4: a hello implies RSET
                    self._state = _READY
                self._pause(command)
            case MailFrom(params=params):
                if params.size is not None and params.size > self.settings.max_message_size:
                    self._refuse(R.MESSAGE_TOO_BIG)  # RFC 1870 §6.1
                elif params.requiretls and not self.tls:
                    self._refuse(R.REQUIRETLS_WITHOUT_TLS)  # RFC 8689 §2: the session MUST be TLS
                elif self.settings.require_tls and not self.tls:
                    self._refuse(R.TLS_REQUIRED)  # RFC 3207 §4
                elif self.settings.require_auth and not self.authenticated:
                    self._refuse(R.AUTH_REQUIRED)  # RFC 4954 §6
                else:
                    self._pause(command)
            case RcptTo():
                assert self._txn is not None
                if len(self._txn.recipients) >= self.settings.max_recipients:
                    self._refuse(R.TOO_MANY_RECIPIENTS)  # RFC 5321 §4.5.3.1.10
                else:
                    self._pause(command)
            case Data():
                self._state = target
                self._failure = None
                self._unstuffer = Unstuffer(
                    normalise_bare_linebreaks=(
                        self.settings.bare_linebreaks is BareLinebreakPolicy.NORMALISE
                    )
                )
                self._events.append(DataStart(chunking=False))
                self._reply(R.START_MAIL_INPUT)
            case Quit():
                self._out += R.CLOSING.render()
                self._state = _CLOSED
                self._events.append(command)
            case StartTls():
                if not self.settings.starttls:
                    self._refuse(R.NOT_IMPLEMENTED)
                elif self.tls:
                    self._refuse(R.TLS_ALREADY_ACTIVE)
                else:
                    self._pause(command)
            case Auth(mechanism=mechanism):
                if not self.settings.auth_mechanisms:
                    self._refuse(R.NOT_IMPLEMENTED)
                elif not self._auth_offered:
                    self._refuse(R.TLS_REQUIRED)  # RFC 3207 §4
                elif self.authenticated or not (self.hello and self.hello.extended):
                    self._refuse(R.AUTH_NOT_NOW)  # RFC 4954 §4
                elif mechanism not in self.settings.auth_mechanisms:
                    self._refuse(R.MECHANISM_UNKNOWN)  # RFC 4954 §6
                else:
                    self._pause(command)
            case Rset():
                self._txn = None
                self._state = target
                self._events.append(command)
                self._reply(R.OK)
            case Noop() | Help() | Vrfy():
                self._events.append(command)
                reply = {Noop: R.OK, Help: R.HELP, Vrfy: R.CANNOT_VRFY}[type(command)]
                self._reply(reply)
            case Expn():
                self._refuse(R.NOT_IMPLEMENTED)  # mailing lists are not expanded
            case Xforward():
                if not (self.settings.xforward and self.hello and self.hello.extended):
                    self._refuse(R.NOT_IMPLEMENTED)
                else:
                    self._events.append(command)  # the application keeps the attributes
                    self._reply(R.OK)
            case Bdat():
                raise AssertionError("BDAT is handled by _bdat")

    # -- DATA -----------------------------------------------------------------------------------
    def _advance_data(self) -> bool:
        unstuffer = self._unstuffer
        assert unstuffer is not None
        assert self._txn is not None
        if not self._buf:
            return False
        body = unstuffer.feed(bytes(self._buf))
        self._buf = bytearray(unstuffer.unused)
        self._txn.size += len(body)
        if self._failure is None:
            self._failure = self._data_failure(unstuffer)
            if self._failure is not None:
                self._events.append(DataAborted(self._failure))
            elif body:
                self._events.append(DataChunk(body))
        if unstuffer.finished:
            self._unstuffer = None
            self._finish_message()
        return True

    def _data_failure(self, unstuffer: Unstuffer) -> Reply | None:
        s = self.settings
        assert self._txn is not None
        if self._txn.size > s.max_message_size:
            return R.MESSAGE_TOO_BIG  # RFC 1870 §6.2, checked as octets arrive
        if s.max_text_line is not None and unstuffer.longest_line > s.max_text_line:
            return R.TEXT_LINE_TOO_LONG
        if unstuffer.saw_bare_linebreak and s.bare_linebreaks is BareLinebreakPolicy.REJECT:
            return R.BARE_LINEBREAK
        return None

    def _finish_message(self) -> None:
        txn = self._txn
        assert txn is not None
        if self._failure is not None:
            self._end_transaction()
            self._reply(self._failure)
            return
        self._pause(DataEnd(txn.size, tuple(txn.recipients)))

    # -- BDAT (RFC 3030) ------------------------------------------------------------------------
    def _bdat(self, line: bytes) -> None:
        try:
            command = parse_command(line, offered=self._offered)
        except CommandError as exc:
            self._refuse(exc.reply)  # no size known: nothing can be skipped
            return
        assert isinstance(command, Bdat)
        refusal = self._bdat_refusal(command)
        after = self._state
        if refusal is not None and self._txn is not None and self._state is not _MAIL:
            # The transaction dies with this chunk (RFC 3030 §2: state is indeterminate until
            # RSET; we settle it as reset).
            self._events.append(DataAborted(refusal))
            self._txn = None
            after = _READY
        elif refusal is not None:
            self._events.append(ProtocolError(refusal))
        elif self._state is _RCPT:
            self._events.append(DataStart(chunking=True))
        self._chunk_left = command.size
        self._chunk_last = command.last
        self._chunk_refusal = None if refusal is None else (refusal, after)
        self._state = _CHUNK

    def _bdat_refusal(self, command: Bdat) -> Reply | None:
        if not self.settings.chunking:
            return R.NOT_IMPLEMENTED
        if (self._state, "BDAT") not in TRANSITIONS:
            if self._state is _MAIL:
                return self._no_valid_recipients
            return self._hello_first if self._state is _GREETED else R.MAIL_FIRST
        assert self._txn is not None
        if self._txn.size + command.size > self.settings.max_message_size:
            return R.MESSAGE_TOO_BIG  # RFC 1870 §6.2 with the size known in advance
        return None

    def _advance_chunk(self) -> bool:
        if self._chunk_left:
            if not self._buf:
                return False
            data = bytes(self._buf[: self._chunk_left])
            del self._buf[: len(data)]
            self._chunk_left -= len(data)
            if self._chunk_refusal is None:
                assert self._txn is not None
                self._txn.size += len(data)
                self._events.append(DataChunk(data))
            if self._chunk_left:
                return True
        if self._chunk_refusal is not None:
            reply, self._state = self._chunk_refusal
            self._chunk_refusal = None
            self._reply(reply)  # RFC 3030 §2: the refusal follows the discarded octets
        elif self._chunk_last:
            self._finish_message()
        else:
            self._state = _BDAT
            self._reply(R.CHUNK_RECEIVED)
        return True
