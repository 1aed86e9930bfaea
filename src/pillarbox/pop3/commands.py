"""POP3 command grammar: one line in, one :class:`Command` (or a :class:`CommandError`) out.

RFC 1939 §3 and RFC 2449 §3: ``command = keyword *(SP param) CRLF``, keywords case-insensitive.
The parser is lenient where leniency is harmless (runs of spaces between arguments, a bare LF as
line end, handled by the server's line splitter) and strict where it is not: control characters
are refused, and the argument count of every command is checked here, once, from :data:`ARITY`.

Arguments stay bytes: only the server decides which ones are text (USER, PASS, APOP name: UTF-8)
and which are numbers.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from pillarbox.pop3 import responses
from pillarbox.pop3.errors import CommandError


class Verb(enum.Enum):
    USER = "USER"
    PASS = "PASS"
    APOP = "APOP"
    AUTH = "AUTH"
    STLS = "STLS"
    CAPA = "CAPA"
    QUIT = "QUIT"
    STAT = "STAT"
    LIST = "LIST"
    RETR = "RETR"
    DELE = "DELE"
    NOOP = "NOOP"
    RSET = "RSET"
    TOP = "TOP"
    UIDL = "UIDL"


#: (fewest, most) arguments of each command: RFC 1939 §4-7, RFC 2449 §5, RFC 2595 §4,
#: RFC 5034 §4 (``AUTH mechanism [initial-response]``; a bare ``AUTH`` lists the mechanisms,
#: as RFC 1734 clients such as Outlook expect).
ARITY: dict[Verb, tuple[int, int]] = {
    Verb.USER: (1, 1),
    Verb.PASS: (1, 1),
    Verb.APOP: (2, 2),
    Verb.AUTH: (0, 2),
    Verb.STLS: (0, 0),
    Verb.CAPA: (0, 0),
    Verb.QUIT: (0, 0),
    Verb.STAT: (0, 0),
    Verb.LIST: (0, 1),
    Verb.RETR: (1, 1),
    Verb.DELE: (1, 1),
    Verb.NOOP: (0, 0),
    Verb.RSET: (0, 0),
    Verb.TOP: (2, 2),
    Verb.UIDL: (0, 1),
}

_VERBS = {verb.value.encode("ascii"): verb for verb in Verb}
# RFC 2449 §3 allows VCHAR; octets >= 0x80 are let through for UTF-8 user names and passwords.
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_DIGITS = re.compile(rb"[0-9]+")


@dataclass(frozen=True, slots=True)
class Command:
    verb: Verb
    args: tuple[bytes, ...] = ()


def parse_command(line: bytes) -> Command:
    """Parse one command line (without its line end); ``CommandError`` says what is wrong."""
    if _CONTROL.search(line):
        raise CommandError(responses.INVALID_CHARACTERS)
    keyword, _, rest = line.partition(b" ")
    verb = _VERBS.get(keyword.upper())
    if verb is None:
        raise CommandError(responses.UNKNOWN_COMMAND)
    if verb is Verb.PASS:
        # RFC 1939 §7 PASS: "a POP3 server may treat spaces in the argument as part of the
        # password, instead of as argument separators" -- the rest of the line is the password.
        args: tuple[bytes, ...] = (rest,) if rest else ()
    else:
        args = tuple(arg for arg in rest.split(b" ") if arg)
    fewest, most = ARITY[verb]
    if not fewest <= len(args) <= most:
        raise CommandError(responses.WRONG_ARGUMENTS.format(verb=verb.value))
    return Command(verb, args)


def parse_message_number(arg: bytes) -> int:
    """A message-number argument: decimal, 1 or more (RFC 1939 §4)."""
    if not _DIGITS.fullmatch(arg) or int(arg) == 0:
        raise CommandError(responses.INVALID_MESSAGE_NUMBER)
    return int(arg)


def parse_line_count(arg: bytes) -> int:
    """TOP's line count: "a non-negative number of lines" (RFC 1939 §7)."""
    if not _DIGITS.fullmatch(arg):
        raise CommandError(responses.INVALID_LINE_COUNT)
    return int(arg)
