"""Every response the ManageSieve core sends, as named constants and a few formatters.

RFC 5804 §1.2, §4: a response is ``OK`` / ``NO`` / ``BYE``, an optional response code in
parentheses (§1.3), and an optional human-readable string. Strings go out quoted when they can
(``quoted = DQUOTE *1024QUOTED-CHAR DQUOTE``, with ``"`` and ``\\`` escaped) and as a
server-to-client literal ``{n}`` otherwise (a CR, an LF, a NUL, or more than 1024 octets), so a
reply can carry any text, including an error message that quotes a client's script.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

#: RFC 5804 §4 ``quoted``: at most 1024 octets between the quotes.
MAX_QUOTED = 1024


class Status(enum.Enum):
    OK = "OK"
    NO = "NO"
    BYE = "BYE"


def encode_string(value: str | bytes) -> bytes:
    """A ManageSieve string (§4): quoted when the grammar allows, else a literal-s2c."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    if len(data) <= MAX_QUOTED and not any(octet in data for octet in b"\r\n\0"):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(data) + data


@dataclass(frozen=True, slots=True)
class Reply:
    """One response line. ``code`` is the response code as it appears between the
    parentheses, its arguments already encoded (``TAG "x"``, ``SASL "..."``)."""

    status: Status
    text: str = ""
    code: str | None = None

    def encode(self) -> bytes:
        out = self.status.value.encode("ascii")
        if self.code is not None:
            out += b" (" + self.code.encode("utf-8") + b")"
        if self.text:
            out += b" " + encode_string(self.text)
        return out + b"\r\n"

    def format(self, **fields: object) -> Reply:
        """This reply with the ``{field}`` placeholders of its text filled in."""
        return Reply(self.status, self.text.format(**fields), self.code)


# -- response codes (§1.3) ------------------------------------------------------------------
AUTH_TOO_WEAK = "AUTH-TOO-WEAK"
ENCRYPT_NEEDED = "ENCRYPT-NEEDED"
QUOTA_MAXSCRIPTS = "QUOTA/MAXSCRIPTS"
QUOTA_MAXSIZE = "QUOTA/MAXSIZE"
TRYLATER = "TRYLATER"
ACTIVE = "ACTIVE"
NONEXISTENT = "NONEXISTENT"
ALREADYEXISTS = "ALREADYEXISTS"


def tag_code(tag: bytes) -> str:
    """§2.13 NOOP: ``(TAG string)`` echoes the client's tag (a string, so it can be anything)."""
    return "TAG " + encode_string(tag).decode("utf-8", "replace")


# -- greeting, session ----------------------------------------------------------------------
GREETING = Reply(Status.OK, "Pillarbox ManageSieve ready")
OK = Reply(Status.OK)
LOGOUT = Reply(Status.OK, "Logout complete")
BYE_IDLE = Reply(Status.BYE, "Idle for too long, disconnecting")
BYE_LOGIN_TIMEOUT = Reply(Status.BYE, "No login in time, disconnecting")
BYE_SHUTDOWN = Reply(Status.BYE, "Server shutting down", TRYLATER)
BYE_BUSY = Reply(Status.BYE, "Too many connections, try again later", TRYLATER)
BYE_TOO_MANY_ERRORS = Reply(Status.BYE, "Too many errors, disconnecting")
BYE_AUTH_FAILURES = Reply(Status.BYE, "Too many failed logins, disconnecting")
BYE_INPUT = Reply(Status.BYE, "Literal too large to skip, disconnecting")
NOOP_DONE = Reply(Status.OK, "Done")
CAPABILITY_DONE = Reply(Status.OK, "Capability completed")

# -- grammar and state ----------------------------------------------------------------------
UNKNOWN_COMMAND = Reply(Status.NO, "Unknown command")
SYNTAX_ERROR = Reply(Status.NO, "Syntax error")
BAD_ARGUMENTS = Reply(Status.NO, "Wrong arguments for {verb}")
LINE_TOO_LONG = Reply(Status.NO, "Line too long")
COMMAND_TOO_LARGE = Reply(Status.NO, "Command too large")
#: A literal over the limit can only be a script over the size quota (names are short).
LITERAL_TOO_LARGE = Reply(Status.NO, "Literal larger than allowed", QUOTA_MAXSIZE)
NOT_AUTHENTICATED = Reply(Status.NO, "Authenticate first")
ALREADY_AUTHENTICATED = Reply(Status.NO, "Already authenticated")
INVALID_UTF8 = Reply(Status.NO, "Strings must be UTF-8")

# -- authentication (§2.1) ------------------------------------------------------------------
LOGGED_IN = Reply(Status.OK, "Logged in")
AUTH_FAILED = Reply(Status.NO, "Authentication failed")
AUTH_THROTTLED = Reply(Status.NO, "Too many failed logins, try again later", TRYLATER)
UNSUPPORTED_MECHANISM = Reply(Status.NO, "Unsupported authentication mechanism")
#: §1.3 ENCRYPT-NEEDED: a mechanism that shows the password, before TLS.
PLAINTEXT_NEEDS_TLS = Reply(Status.NO, "Use STARTTLS before this mechanism", ENCRYPT_NEEDED)
AUTH_CANCELLED = Reply(Status.NO, "Authentication cancelled")
INVALID_BASE64 = Reply(Status.NO, "Invalid base64 in SASL response")
AUTH_TEMPORARY = Reply(Status.NO, "Authentication temporarily unavailable", TRYLATER)
UNAUTHENTICATED = Reply(Status.OK, "Unauthenticate completed")

# -- STARTTLS (§2.2) ------------------------------------------------------------------------
STARTTLS_BEGIN = Reply(Status.OK, "Begin TLS negotiation now")
TLS_ACTIVE = Reply(Status.NO, "TLS is already active")
TLS_UNAVAILABLE = Reply(Status.NO, "TLS is not available")

# -- scripts (§2.5-§2.12) -------------------------------------------------------------------
PUTSCRIPT_DONE = Reply(Status.OK, "Putscript completed")
CHECKSCRIPT_DONE = Reply(Status.OK, "Script is valid")
SETACTIVE_DONE = Reply(Status.OK, "Setactive completed")
DELETESCRIPT_DONE = Reply(Status.OK, "Deletescript completed")
RENAMESCRIPT_DONE = Reply(Status.OK, "Renamescript completed")
GETSCRIPT_DONE = Reply(Status.OK, "Getscript completed")
LISTSCRIPTS_DONE = Reply(Status.OK, "Listscripts completed")
HAVESPACE_DONE = Reply(Status.OK, "Putscript would succeed")
NO_SUCH_SCRIPT = Reply(Status.NO, "There is no script by that name", NONEXISTENT)
SCRIPT_EXISTS = Reply(Status.NO, "A script by that name already exists", ALREADYEXISTS)
SCRIPT_ACTIVE = Reply(Status.NO, "You may not delete an active script", ACTIVE)
TOO_MANY_SCRIPTS = Reply(Status.NO, "Too many scripts", QUOTA_MAXSCRIPTS)
SCRIPT_TOO_LARGE = Reply(Status.NO, "Script is larger than allowed", QUOTA_MAXSIZE)
INVALID_NAME = Reply(Status.NO, "Invalid script name")
SCRIPT_NOT_UTF8 = Reply(Status.NO, "Script is not UTF-8")
#: A store fault: the command may be retried later (§1.3 TRYLATER).
SERVER_FAULT = Reply(Status.NO, "Temporary server failure, try again later", TRYLATER)
