"""Every line the POP3 core puts on the wire, as a named constant or a one-line formatter.

A :class:`Reply` is a single-line response (RFC 2449 §3 ``single-line``): a status, an optional
extended response code (RFC 2449 §8) and a text template. Templates with ``{fields}`` are filled
with :meth:`Reply.format`, which validates the result again, so no reply can carry a CR, an LF or
more than 512 octets (RFC 2449 §4). Only numbers, UIDL values and configured names are ever
formatted in: nothing a client sent is echoed back.

The response codes used are those of RFC 2449 §8.1 (``IN-USE``, ``LOGIN-DELAY``) and RFC 3206
(``SYS/TEMP``, ``AUTH``); the server advertises RESP-CODES and AUTH-RESP-CODE.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

#: RFC 2449 §4: the first line of a response, CRLF included, is at most 512 octets.
MAX_RESPONSE_LINE = 512

# RFC 2449 §3: resp-code = "[" resp-level *("/" resp-level) "]", resp-level = 1*rchar.
_RESP_CODE = re.compile(r"[\x21-\x2e\x30-\x5c\x5e-\x7f]+(?:/[\x21-\x2e\x30-\x5c\x5e-\x7f]+)*")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")


@dataclass(frozen=True, slots=True)
class Reply:
    """One single-line response: ``+OK``/``-ERR``, then ``[code]`` if any, then the text."""

    ok: bool
    text: str
    code: str | None = None

    def __post_init__(self) -> None:
        if self.code is not None and not _RESP_CODE.fullmatch(self.code):
            raise ValueError(f"invalid POP3 response code {self.code!r}")
        if not _PRINTABLE.fullmatch(self.text):
            raise ValueError(f"POP3 reply text must be printable ASCII: {self.text!r}")
        # RFC 2449 §3: text = *schar / resp-code *CHAR; without a code it must not open with "[".
        if self.code is None and self.text.startswith("["):
            raise ValueError("reply text without a response code must not start with '['")
        if len(self.encode()) > MAX_RESPONSE_LINE:
            raise ValueError("POP3 reply exceeds 512 octets (RFC 2449 §4)")

    def format(self, **fields: object) -> Reply:
        """This reply with the ``{field}`` placeholders of its text filled in."""
        return Reply(self.ok, self.text.format(**fields), self.code)

    def encode(self) -> bytes:
        words = ["+OK" if self.ok else "-ERR"]
        if self.code is not None:
            words.append(f"[{self.code}]")
        if self.text:
            words.append(self.text)
        return " ".join(words).encode("ascii") + b"\r\n"


# -- response codes (RFC 2449 §8.1, RFC 3206) --------------------------------------------
CODE_IN_USE = "IN-USE"
CODE_LOGIN_DELAY = "LOGIN-DELAY"
CODE_AUTH = "AUTH"
CODE_SYS_TEMP = "SYS/TEMP"

# -- greeting and sign-off (RFC 1939 §4, §6) --------------------------------------------------
GREETING = Reply(True, "{hostname} POP3 server ready")
#: RFC 1939 §7 APOP: the banner carries the timestamp the digest is computed over.
GREETING_APOP = Reply(True, "{hostname} POP3 server ready {timestamp}")
SIGN_OFF = Reply(True, "{hostname} POP3 server signing off")
SIGN_OFF_EMPTY = Reply(True, "{hostname} POP3 server signing off (maildrop empty)")
SIGN_OFF_LEFT = Reply(True, "{hostname} POP3 server signing off ({count} messages left)")
#: RFC 1939 §6: "-ERR some deleted messages not removed".
UPDATE_FAILED = Reply(False, "some deleted messages not removed", CODE_SYS_TEMP)

# -- AUTHORIZATION (RFC 1939 §4, §7; RFC 2595 §4; RFC 5034 §4) ---------------------------------
USER_ACCEPTED = Reply(True, "send PASS")
PASS_WITHOUT_USER = Reply(False, "PASS must follow a successful USER")
#: RFC 5034 §4 / RFC 2595 §2.3: no plaintext password before TLS unless configured.
PLAINTEXT_DISALLOWED = Reply(False, "plaintext authentication requires TLS, use STLS", CODE_AUTH)
APOP_UNAVAILABLE = Reply(False, "APOP is not available")
INVALID_APOP_DIGEST = Reply(False, "APOP digest must be 32 hexadecimal digits")
INVALID_UTF8 = Reply(False, "user name and password must be UTF-8")
#: The maildrop listing (RFC 1939 §5 drop listing form) after login and RSET.
MAILDROP_SUMMARY = Reply(True, "maildrop has {count} messages ({size} octets)")
AUTH_FAILED = Reply(False, "authentication failed", CODE_AUTH)
#: RFC 2449 §8.1.2: credentials were right, but another session holds the maildrop.
IN_USE = Reply(False, "maildrop is in use by another POP3 session", CODE_IN_USE)
#: RFC 2449 §8.1.1: logged in too recently.
LOGIN_DELAY = Reply(False, "logged in too recently, try again later", CODE_LOGIN_DELAY)
#: RFC 3206 §4: a temporary failure, e.g. the store is unavailable.
SYS_TEMP = Reply(False, "temporary server failure, try again later", CODE_SYS_TEMP)
MECHANISMS_FOLLOW = Reply(True, "SASL mechanisms follow")
UNSUPPORTED_MECHANISM = Reply(False, "unsupported authentication mechanism")
#: RFC 5034 §4: an undecodable client response rejects the AUTH command.
INVALID_BASE64 = Reply(False, "invalid base64 data")
#: RFC 5034 §4: a "*" line cancels the exchange with an -ERR.
AUTH_CANCELLED = Reply(False, "authentication cancelled")
STLS_BEGIN = Reply(True, "begin TLS negotiation")
#: RFC 2595 §4 example text.
TLS_ALREADY_ACTIVE = Reply(False, "command not permitted when TLS active")
STLS_UNAVAILABLE = Reply(False, "TLS is not available")

# -- TRANSACTION (RFC 1939 §5, §7) -------------------------------------------------------------
STAT = Reply(True, "{count} {size}")
LIST_FOLLOWS = Reply(True, "{count} messages ({size} octets)")
SCAN_LISTING = Reply(True, "{number} {size}")
UIDL_FOLLOWS = Reply(True, "unique-id listing follows")
UNIQUE_ID_LISTING = Reply(True, "{number} {unique_id}")
RETR_FOLLOWS = Reply(True, "{size} octets")
TOP_FOLLOWS = Reply(True, "top of message follows")
DELETED = Reply(True, "message {number} deleted")
NOOP = Reply(True, "")
NO_SUCH_MESSAGE = Reply(False, "no such message, only {count} messages in maildrop")
MESSAGE_DELETED = Reply(False, "message {number} already deleted")
INVALID_MESSAGE_NUMBER = Reply(False, "message number must be a positive decimal number")
INVALID_LINE_COUNT = Reply(False, "line count must be a non-negative decimal number")
#: The message was expunged (e.g. over IMAP) after this session's listing was taken.
MESSAGE_GONE = Reply(False, "message was removed by another session")
MESSAGE_UNAVAILABLE = Reply(False, "message temporarily unavailable", CODE_SYS_TEMP)
CAPA_FOLLOWS = Reply(True, "capability list follows")

# -- any state (RFC 1939 §3) -------------------------------------------------------------------
UNKNOWN_COMMAND = Reply(False, "unknown command")
WRONG_STATE = Reply(False, "command not valid in this state")
WRONG_ARGUMENTS = Reply(False, "wrong number of arguments for {verb}")
INVALID_CHARACTERS = Reply(False, "command contains control characters")
LINE_TOO_LONG = Reply(False, "line too long")
TOO_MANY_ERRORS = Reply(False, "too many errors, closing connection")
LOGIN_TIMEOUT = Reply(False, "no login in time, closing connection")

#: Ends every multi-line response (RFC 1939 §3).
END_OF_MULTILINE = b".\r\n"


def listing_line(number: int, value: int | str) -> bytes:
    """One line of a multi-line LIST or UIDL answer: ``number SP value`` (RFC 1939 §5, §7)."""
    return f"{number} {value}\r\n".encode("ascii")


def sasl_challenge(data: bytes) -> bytes:
    """A server challenge: "+" SP base64, and just "+ " when empty (RFC 5034 §4)."""
    return b"+ " + base64.b64encode(data) + b"\r\n"
