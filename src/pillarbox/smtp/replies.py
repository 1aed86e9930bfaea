"""Every SMTP reply Pillarbox sends, as a named constant with its enhanced status code.

A :class:`Reply` is a basic code (RFC 5321 §4.2), an optional enhanced status code
(RFC 3463, advertised as ENHANCEDSTATUSCODES, RFC 2034) and text; text with ``\\n`` in it is a
multi-line reply. RFC 2034 §4 exempts the greeting and the HELO/EHLO replies from enhanced codes,
and 3xx replies carry none either, so those constants have ``enhanced=None``.

Adapters and applications never spell a reply literally: they use these constants, or
:meth:`Reply.with_text` on one of them when the text must name something (a queue id, a host).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
#: What reply text must not hold: control characters other than the line break, and DEL.
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: ``code`` 200–599, ``enhanced`` like ``"5.1.1"`` or None, ``text``."""

    code: int
    enhanced: str | None
    text: str
    #: The wire form, made at the first :meth:`render`: most replies are module constants sent
    #: once per command of every session, and formatting them was paid each time.
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"reply code out of range: {self.code}")
        if self.enhanced is not None and (
            not _ENHANCED.fullmatch(self.enhanced) or self.enhanced[0] != str(self.code)[0]
        ):
            # RFC 3463 §2: the class digit of the enhanced code matches the basic code's.
            raise ValueError(f"enhanced code {self.enhanced!r} does not fit {self.code}")
        if _CONTROL.search(self.text):
            raise ValueError("reply text contains control characters")

    @property
    def lines(self) -> tuple[str, ...]:
        return tuple(self.text.split("\n"))

    @property
    def is_positive(self) -> bool:
        """2xx or 3xx: the command was accepted (RFC 5321 §4.2.1)."""
        return self.code < 400

    @property
    def is_transient(self) -> bool:
        """4xx: try again later (RFC 5321 §4.2.1)."""
        return 400 <= self.code < 500

    def with_text(self, text: str) -> Reply:
        return Reply(self.code, self.enhanced, text)  # dataclasses.replace took twice as long

    def render(self) -> bytes:
        """The reply on the wire; RFC 2034 §4 puts the enhanced code on every line."""
        wire = self._wire
        if wire is None:
            wire = self._format().encode("utf-8")
            object.__setattr__(self, "_wire", wire)  # frozen: a cache, not a change of value
        return wire

    def _format(self) -> str:
        prefix = f"{self.enhanced} " if self.enhanced else ""
        if "\n" not in self.text:
            return f"{self.code} {prefix}{self.text}\r\n"  # one line, as nearly every reply is
        lines = self.lines
        return "".join(
            f"{self.code}{'-' if i < len(lines) - 1 else ' '}{prefix}{line}\r\n"
            for i, line in enumerate(lines)
        )


@functools.lru_cache(maxsize=16)
def service_ready(hostname: str) -> Reply:
    """The greeting; RFC 5321 §4.3.1 wants the server's name first. One value per name, so
    each connection sends it already rendered."""
    return Reply(220, None, f"{hostname} ESMTP Pillarbox")


@functools.lru_cache(maxsize=16)
def lmtp_ready(hostname: str) -> Reply:
    """The LMTP greeting (RFC 2033 §4: as SMTP's, naming the protocol spoken)."""
    return Reply(220, None, f"{hostname} LMTP Pillarbox")


# -- connection ------------------------------------------------------------------------------
#: RFC 5321 §3.1: refuse service at connect but stay for QUIT.
SERVICE_REFUSED = Reply(554, None, "no SMTP service here")
#: RFC 2920 §3.1: a command sent before the reply it had to wait for (after HELO, EHLO or
#: DATA, or any command without PIPELINING); the session ends (RFC 5321 §7.8).
SYNC_ERROR = Reply(554, "5.5.0", "synchronization error: sent without waiting for our reply")
#: The same to a client that sent before the greeting (RFC 5321 §3.1, §4.3.1: it must wait
#: for the 220): ``smtp.greet_pause``.
TALKED_FIRST = Reply(554, None, "no SMTP service here: talked before the greeting")
SERVICE_UNAVAILABLE = Reply(421, "4.3.2", "service not available, closing transmission channel")
#: A mail filter (milter.mx) refused the connection: 554 to serve nothing but QUIT, or 421 to
#: close (RFC 5321 §3.1; a greeting carries no enhanced code, RFC 2034 §3).
FILTER_REFUSED_SERVICE = Reply(554, None, "no SMTP service here: refused by a mail filter")
FILTER_DEFERRED_SERVICE = Reply(421, None, "service not available, try again later")
#: A mail filter's REJECT and TEMPFAIL without a reply of its own (Postfix's texts).
FILTER_REJECTED = Reply(550, "5.7.1", "command rejected by a mail filter")
FILTER_TEMPFAIL = Reply(451, "4.7.1", "service unavailable, try again later")
#: ``milter.default_action`` for a filter that cannot be reached or breaks the protocol.
FILTER_UNAVAILABLE = Reply(451, "4.3.0", "mail filter unavailable, try again later")
FILTER_FAILED_REJECT = Reply(550, "5.7.1", "mail filter failure")
#: A quarantined message (milter ``q``) for another server, where no Junk of ours can hold it.
FILTER_QUARANTINED = Reply(550, "5.7.1", "message quarantined by a mail filter")
CLOSING = Reply(221, "2.0.0", "bye")
#: RFC 5321 §4.5.3.2.7 server timeout; RFC 3463 X.4.2 "bad connection".
TIMEOUT = Reply(421, "4.4.2", "timeout exceeded, closing connection")
#: Submission: no AUTH within the login deadline (X.4.2 as for any timeout).
LOGIN_TIMEOUT = Reply(421, "4.4.2", "no authentication in time, closing connection")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "too many errors, closing connection")

# -- positive --------------------------------------------------------------------------------
OK = Reply(250, "2.0.0", "OK")
SENDER_OK = Reply(250, "2.1.0", "sender OK")
RECIPIENT_OK = Reply(250, "2.1.5", "recipient OK")
MESSAGE_ACCEPTED = Reply(250, "2.0.0", "message accepted")
#: RFC 3030 §2: every BDAT chunk but the last is acknowledged once all its octets arrived.
CHUNK_RECEIVED = Reply(250, "2.0.0", "chunk received")
START_MAIL_INPUT = Reply(354, None, "end data with <CR><LF>.<CR><LF>")
HELP = Reply(214, "2.0.0", "Pillarbox SMTP, see RFC 5321")
#: RFC 5321 §3.5.3: neither confirm nor deny a mailbox.
CANNOT_VRFY = Reply(252, "2.5.0", "cannot VRFY user, but will accept message and attempt delivery")
#: RFC 3207 §4.
READY_TO_START_TLS = Reply(220, "2.0.0", "ready to start TLS")
#: RFC 4954 §6.
AUTH_SUCCEEDED = Reply(235, "2.7.0", "authentication successful")

# -- syntax (RFC 5321 §4.2.2, RFC 3463 X.5.x) ------------------------------------------------
COMMAND_UNRECOGNIZED = Reply(500, "5.5.2", "command unrecognized")
#: RFC 5321 §4.5.3.1.10 "500 Line too long".
LINE_TOO_LONG = Reply(500, "5.5.2", "line too long")
#: RFC 5321 §4.5.3.1.6: a text line of DATA longer than the limit fails the whole message.
TEXT_LINE_TOO_LONG = Reply(500, "5.5.2", "message text line too long")
#: RFC 4954 §4: an AUTH exchange line longer than the buffer gets 500 5.5.6.
AUTH_LINE_TOO_LONG = Reply(500, "5.5.6", "authentication exchange line too long")
SYNTAX_ERROR = Reply(501, "5.5.2", "syntax error in parameters or arguments")
INVALID_ARGUMENTS = Reply(501, "5.5.4", "invalid command arguments")
#: RFC 3463 X.1.7 / X.1.3: bad sender / destination mailbox address syntax.
BAD_SENDER_SYNTAX = Reply(501, "5.1.7", "bad sender address syntax")
BAD_RECIPIENT_SYNTAX = Reply(501, "5.1.3", "bad recipient address syntax")
NOT_IMPLEMENTED = Reply(502, "5.5.1", "command not implemented")
#: An XFORWARD attribute not offered (Postfix's smtpd says 501 5.5.4 too).
XFORWARD_BAD_ATTRIBUTE = Reply(501, "5.5.4", "bad XFORWARD attribute name")
#: RFC 5321 §4.1.1.11 / §4.3.2: 555 for MAIL/RCPT parameters not recognised or not offered.
PARAMETER_NOT_IMPLEMENTED = Reply(555, "5.5.4", "parameter not recognized or not implemented")

# -- sequence (RFC 5321 §4.3.2) ----------------------------------------------------------------
BAD_SEQUENCE = Reply(503, "5.5.1", "bad sequence of commands")
HELLO_FIRST = Reply(503, "5.5.1", "send EHLO first")
#: RFC 2033 §4.1: an LMTP session starts with LHLO.
LHLO_FIRST = Reply(503, "5.5.1", "send LHLO first")
MAIL_FIRST = Reply(503, "5.5.1", "need MAIL command first")
RCPT_FIRST = Reply(503, "5.5.1", "need RCPT command first")
NESTED_MAIL = Reply(503, "5.5.1", "sender already given")
#: RFC 5321 §3.3 and RFC 2920 §3.1: DATA after every RCPT failed.
NO_VALID_RECIPIENTS = Reply(554, "5.5.1", "no valid recipients")
#: RFC 2033 §4.2: LMTP's DATA without a successful RCPT MUST fail with 503.
NO_VALID_RECIPIENTS_LMTP = Reply(503, "5.5.1", "no valid recipients")
#: RFC 4954 §4: no AUTH during a transaction or once authenticated.
AUTH_NOT_NOW = Reply(503, "5.5.1", "AUTH not allowed now")
TLS_ALREADY_ACTIVE = Reply(503, "5.5.1", "TLS already active")

# -- authentication and TLS ------------------------------------------------------------------
#: RFC 4954 §6.
MECHANISM_UNKNOWN = Reply(504, "5.5.4", "unrecognized authentication type")
#: RFC 4954 §4: the client answered "*".
AUTH_CANCELLED = Reply(501, "5.0.0", "authentication cancelled")
#: RFC 4954 §4: a response that is not valid base64.
AUTH_BAD_BASE64 = Reply(501, "5.5.2", "cannot decode base64")
#: RFC 4954 §6.
AUTH_FAILED = Reply(535, "5.7.8", "authentication credentials invalid")
AUTH_REQUIRED = Reply(530, "5.7.0", "authentication required")
#: RFC 4954 §6: temporary failure (here: too many failed attempts, try again later).
AUTH_TEMPORARY = Reply(454, "4.7.0", "temporary authentication failure, try again later")
#: RFC 3207 §4.
TLS_REQUIRED = Reply(530, "5.7.0", "must issue a STARTTLS command first")
TLS_NOT_AVAILABLE = Reply(454, "4.7.0", "TLS not available due to temporary reason")
#: RFC 8689 §2: MAIL ... REQUIRETLS outside TLS (RFC 3463 5.7.10 "Encryption needed").
REQUIRETLS_WITHOUT_TLS = Reply(530, "5.7.10", "REQUIRETLS needs TLS: issue STARTTLS first")

# -- envelope decisions (used by the application) --------------------------------------------
MAILBOX_UNKNOWN = Reply(550, "5.1.1", "mailbox unavailable")
RELAY_DENIED = Reply(554, "5.7.1", "relay access denied")
POLICY_REJECTED = Reply(550, "5.7.1", "message rejected by policy")
MAILBOX_FULL = Reply(452, "4.2.2", "mailbox full")
#: RFC 3463 X.2.2 as a permanent failure (LMTP ``quota_full = "reject"``, Dovecot's default;
#: RFC 5321 §4.5.3.1.10 notes 552 "exceeded storage allocation").
MAILBOX_FULL_PERMANENT = Reply(552, "5.2.2", "mailbox full")
LOCAL_ERROR = Reply(451, "4.3.0", "local error in processing")
#: An account's sending limit (pillarbox.queue.sendlimits), refused at RCPT as RFC 6409 §6.2
#: permits; temporary where §6.2 suggests 550, so the client retries once the 24-hour window
#: has moved on (as Mox); RFC 3463 §3.8 X.7.1 (delivery not authorized).
SENDING_LIMIT = Reply(451, "4.7.1", "sending limit reached, try again later")
#: Greylisting (pillarbox.policy.greylisting) defers an unknown triplet at RCPT (RFC 6647 §2.2);
#: RFC 3463 §3.8 X.7.1 (delivery not authorized), temporary, with a text that says what to do.
GREYLISTED = Reply(451, "4.7.1", "greylisted, please try again later")
#: The server is shutting down and ends idle sessions (RFC 5321 §3.8).
SHUTTING_DOWN = Reply(421, "4.3.2", "server shutting down, try again later")
#: RFC 5321 §4.5.3.1.10 and RFC 3463 X.5.3.
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "too many recipients")
#: RFC 1870 §6.1 (at MAIL with SIZE=) and §6.2 (as octets arrive).
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "message size exceeds fixed maximum message size")
#: RFC 6531 §3.5: 550 for the sender, 553 for a recipient, X.6.7 for both.
NON_ASCII_SENDER = Reply(550, "5.6.7", "non-ASCII addresses not permitted for that sender")
NON_ASCII_RECIPIENT = Reply(553, "5.6.7", "non-ASCII addresses not permitted for that recipient")
#: SMTP smuggling (CVE-2023-51764/51765/51766): RFC 5321 §2.3.8 lets CR and LF appear only as
#: CRLF. The code follows Postfix's smtpd_forbid_bare_newline (550, X.5.2 "syntax error"): the
#: fault is the client's framing, not the content, so X.6.x (media) would mislead the sender.
BARE_LINEBREAK = Reply(550, "5.5.2", "message contains bare CR or LF")

# -- synthetic replies of the client role (no server sent them) ------------------------------
#: The server did not answer within the RFC 5321 §4.5.3.2 client timeout.
CLIENT_TIMEOUT = Reply(451, "4.4.2", "timed out waiting for the server")
#: The connection closed or broke before the server answered.
CONNECTION_LOST = Reply(451, "4.4.2", "connection lost before the server answered")
