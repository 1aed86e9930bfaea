"""mbox files (RFC 4155), read as a stream and written as mboxrd.

Reading: a message starts at a ``From `` line that opens the file, follows an empty line, or
carries a valid date (mutt's ``is_from`` rule; an unquoted ``From `` in an mboxo body that is
not preceded by an empty line stays body). ``>From `` quoting is undone the mboxrd way (one
``>`` removed from every ``>…>From `` line), which is also right for every line an mboxo writer
quoted. A ``Content-Length`` header that holds (the file ends, or an empty line and a ``From ``
line follow that many body bytes: Dovecot's own check) makes the body verbatim: Dovecot writes
its mboxes so, without quoting ``From `` lines. The empty line a writer puts between messages
is removed. Mail-store headers that describe the message's state in *that* mailbox
(``Status``, ``X-Status``, ``X-Keywords``, ``X-UID``, ``X-IMAP``, ``X-IMAPbase``,
``Content-Length``: what Dovecot, mutt, Pine and Thunderbird write, and Dovecot hides from its
clients) become flags and are removed from the header: ``Status: R`` → ``\\Seen``,
``X-Status`` ``A`` / ``F`` / ``D`` / ``T`` → ``\\Answered`` / ``\\Flagged`` / ``\\Deleted`` /
``\\Draft``, ``X-Keywords`` → keywords. The date of the ``From `` line (UTC, asctime format) is
the internal date, unless it is a known placeholder (:data:`PLACEHOLDER_DATES`) or missing:
then the Date header is.

The file is read line by line; only one message is held in memory at a time.

Writing is the inverse: a ``From MAILER-DAEMON <asctime>`` line, the message with LF line
endings, the state headers added at the end of the header (the mailbox's first message also
carries ``X-IMAPbase`` with the keywords used, which Dovecot needs to take ``X-Keywords``),
every ``>*From `` line quoted with one more ``>``, and an empty line. Dovecot does not undo
that quoting (it relies on Content-Length): to move mail into Dovecot, Maildir is exact.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

#: The state headers an mbox writer keeps in the message (see the module docstring).
STATE_HEADERS = (
    b"status",
    b"x-status",
    b"x-keywords",
    b"x-uid",
    b"x-imap",
    b"x-imapbase",
    b"content-length",
)
_X_STATUS_FLAGS = {"A": "\\Answered", "F": "\\Flagged", "D": "\\Deleted", "T": "\\Draft"}
_QUOTED_FROM = re.compile(rb"^>+From ")
_ANY_FROM = re.compile(rb"^(>*From )", re.MULTILINE)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# "Mon Mar  3 10:00:00 2025", optionally a zone before or after the year (Pine, old UUCP).
_ASCTIME = re.compile(
    rb"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),?\s+)?"
    rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+(\d{1,2})\s+"
    rb"(\d{1,2}):(\d{2})(?::(\d{2}))?\s+"
    rb"(?:([A-Z]{1,5}|[+-]\d{4})\s+)?(\d{4})(?:\s+([A-Z]{1,5}|[+-]\d{4}))?\s*$"
)


@dataclass(frozen=True, slots=True)
class MboxMessage:
    """One message read from an mbox: the bytes as they were before quoting (LF line ends, as
    in the file), its flags, the ``From `` line's date, and its 1-based position."""

    raw: bytes
    flags: frozenset[str]
    internal_date: datetime | None
    number: int
    offset: int
    #: The message's size when it was larger than ``max_size``: then ``raw`` is empty (the
    #: message was read past, never held in memory).
    too_large: int = 0


#: ``From `` line dates that are fixed placeholders, not the date of the message: public-inbox
#: and lore archives write the epoch, ``git format-patch`` a date of its own. The message's
#: Date header is the better internal date then.
PLACEHOLDER_DATES = frozenset({datetime(1970, 1, 1, tzinfo=UTC), datetime(2001, 9, 17, tzinfo=UTC)})


def message_date(line: bytes) -> datetime | None:
    """The internal date a ``From `` line gives: its date unless none or a placeholder."""
    when = parse_from_line(line)
    return None if when in PLACEHOLDER_DATES else when


def parse_from_line(line: bytes) -> datetime | None:
    """The date of a ``From sender date`` line (UTC), or None if it has no valid one."""
    rest = line[5:].strip()
    parts = rest.split(None, 1)
    if len(parts) < 2:
        return None
    match = _ASCTIME.search(parts[1])
    if match is None:
        return None
    month, day, hour, minute, second, zone1, year, zone2 = match.groups()
    try:
        when = datetime(
            int(year),
            _MONTHS.index(month.decode()) + 1,
            int(day),
            int(hour),
            int(minute),
            int(second or b"0"),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    zone = zone1 or zone2
    if zone is not None and zone[:1] in (b"+", b"-"):
        sign = 1 if zone[:1] == b"+" else -1
        offset = sign * (int(zone[1:3]) * 60 + int(zone[3:5]))
        when = when.fromtimestamp(when.timestamp() - offset * 60, UTC)
    return when


def _state_flags(name: bytes, value: bytes) -> set[str]:
    text = value.decode("ascii", "replace").strip()
    if name == b"status":
        return {"\\Seen"} if "R" in text else set()
    if name == b"x-status":
        return {flag for letter, flag in _X_STATUS_FLAGS.items() if letter in text}
    if name == b"x-keywords":
        return {word for word in re.split(r"[\s,]+", text) if word}
    return set()


def take_headers(
    lines: list[bytes], names: tuple[bytes, ...]
) -> tuple[list[bytes], list[tuple[bytes, bytes]]]:
    """Remove the header fields named in ``names`` (lower-case), with their continuation lines,
    from a message's lines; return the remaining lines and each removed field as (lower-case
    name, value with its folding kept), in order."""
    kept: list[bytes] = []
    taken: list[tuple[bytes, bytes]] = []
    current: bytes | None = None  # the field being removed, with its value so far
    current_name = b""
    in_header = True
    for line in lines:
        if not in_header:
            kept.append(line)
            continue
        if line in (b"\n", b"\r\n"):
            in_header = False
            if current is not None:
                taken.append((current_name, current))
                current = None
            kept.append(line)
            continue
        if line[:1] in (b" ", b"\t") and current is not None:
            current += line
            continue
        if current is not None:
            taken.append((current_name, current))
            current = None
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in names:
            current_name, current = name.strip().lower(), value
            continue
        kept.append(line)
    if current is not None:
        taken.append((current_name, current))
    return kept, taken


def strip_state(lines: list[bytes]) -> tuple[list[bytes], frozenset[str]]:
    """Remove the state headers from a message's header and return the remaining lines and
    the flags they stood for."""
    kept, taken = take_headers(lines, STATE_HEADERS)
    flags: set[str] = set()
    for name, value in taken:
        flags |= _state_flags(name, value)
    return kept, frozenset(flags)


def _unquote(line: bytes) -> bytes:
    return line[1:] if _QUOTED_FROM.match(line) else line


def _content_length(header: list[bytes]) -> int | None:
    for line in header:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() == b"content-length":
            text = value.strip()
            return int(text) if text.isdigit() else None
    return None


def _length_holds(stream: BinaryIO, length: int) -> bool:
    """Whether ``length`` bytes from here end the message: then the file ends, or an empty
    line and a ``From `` line follow (Dovecot's check; a wrong Content-Length is ignored)."""
    if not stream.seekable():
        return False
    here = stream.tell()
    try:
        stream.seek(here + length)
        after = stream.read(8)
    finally:
        stream.seek(here)
    return after in (b"", b"\n", b"\r\n") or after.startswith((b"\nFrom ", b"\r\nFrom "))


def read_mbox(stream: BinaryIO, max_size: int | None = None) -> Iterator[MboxMessage]:
    """Every message of an mbox file, in order (see the module docstring). A message larger
    than ``max_size`` bytes comes with ``too_large`` set and no bytes."""
    lines: list[bytes] = []
    size = 0
    date: datetime | None = None
    number = 0
    offset = 0
    start = 0
    previous_blank = True
    seen_any = False
    in_header = False
    #: Body bytes still covered by a Content-Length that holds: taken verbatim.
    counted = 0

    def finish() -> MboxMessage:
        if max_size is not None and size > max_size:
            return MboxMessage(b"", frozenset(), date, number, start, too_large=size)
        body = lines
        if body and body[-1] in (b"\n", b"\r\n"):
            body = body[:-1]  # the separator before the next From line
        kept, flags = strip_state(body)
        return MboxMessage(b"".join(kept), flags, date, number, start)

    for line in iter(stream.readline, b""):
        at = offset
        offset += len(line)
        if counted > 0:
            counted -= len(line)
            size += len(line)
            if max_size is None or size <= max_size:
                lines.append(line)
            elif lines:
                lines = []
            previous_blank = False
            continue
        if line.startswith(b"From ") and (
            previous_blank or not seen_any or parse_from_line(line) is not None
        ):
            if seen_any:
                yield finish()
            seen_any = True
            number += 1
            start = at
            lines = []
            size = 0
            in_header = True
            date = message_date(line.rstrip(b"\r\n"))
            previous_blank = False
            continue
        previous_blank = line in (b"\n", b"\r\n")
        if not seen_any:
            continue
        if in_header and previous_blank:
            in_header = False
            length = _content_length(lines)
            if length and _length_holds(stream, length):
                counted = length
        size += len(line)
        if max_size is None or size <= max_size:
            lines.append(_unquote(line))
        elif lines:
            lines = []  # too large: count the rest, keep nothing
    if seen_any:
        yield finish()


def is_mbox(path_head: bytes) -> bool:
    """Whether a file starting with these bytes is an mbox (it opens with a ``From `` line)."""
    return path_head.startswith(b"From ")


def asctime(when: datetime) -> str:
    """``Mon Mar  3 10:00:00 2025`` in UTC: the date of a ``From `` line (RFC 4155 §2)."""
    utc = when.astimezone(UTC)
    return (
        f"{_DAYS[utc.weekday()]} {_MONTHS[utc.month - 1]} {utc.day:2d} "
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d} {utc.year}"
    )


def imapbase(uidvalidity: int, uidnext: int, keywords: list[str]) -> bytes:
    """The ``X-IMAPbase`` line of a mailbox's first message (UIDVALIDITY, UIDNEXT and every
    keyword the mailbox uses): Dovecot takes an ``X-Keywords`` word only if it is listed
    there, and UW-IMAP wrote it so."""
    words = " ".join([str(uidvalidity), f"{uidnext:010d}", *keywords])
    return b"X-IMAPbase: " + words.encode("utf-8") + b"\n"


def state_headers(flags: frozenset[str], first: bytes = b"") -> bytes:
    """The Status / X-Status / X-Keywords lines that stand for ``flags`` (empty for none),
    after ``first`` (a mailbox's :func:`imapbase` line)."""
    out = first
    if "\\Seen" in flags:
        out += b"Status: RO\n"
    letters = "".join(letter for letter, flag in sorted(_X_STATUS_FLAGS.items()) if flag in flags)
    if letters:
        out += b"X-Status: " + letters.encode() + b"\n"
    keywords = sorted(flag for flag in flags if not flag.startswith("\\"))
    if keywords:
        out += b"X-Keywords: " + " ".join(keywords).encode("utf-8") + b"\n"
    return out


def with_state(text: bytes, flags: frozenset[str], first: bytes = b"") -> bytes:
    """``text`` (LF line ends) with the state headers added at the end of its header."""
    extra = state_headers(flags, first)
    if not extra:
        return text
    if text.startswith(b"\n"):  # no header at all
        return extra + text
    end = text.find(b"\n\n")
    if end < 0:  # a message that is all header
        if not text.endswith(b"\n"):
            text += b"\n"
        return text + extra
    return text[: end + 1] + extra + text[end + 1 :]


def mbox_entry(
    raw: bytes, flags: frozenset[str], internal_date: datetime, first: bytes = b""
) -> bytes:
    """One message as an mboxrd entry: From line, quoted text with LF line ends, empty line;
    ``first`` is the :func:`imapbase` line a mailbox's first message carries."""
    text = raw.replace(b"\r\n", b"\n")
    if not text.endswith(b"\n"):
        text += b"\n"
    text = with_state(text, flags, first)
    text = _ANY_FROM.sub(rb">\1", text)
    return b"From MAILER-DAEMON " + asctime(internal_date).encode() + b"\n" + text + b"\n"
