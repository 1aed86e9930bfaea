"""Milter packets: framing, the commands an MTA sends and the replies a filter sends back.

Implementation notes (there is no RFC; the reference is Sendmail's libmilter, ``mfdef.h`` and
``engine.c``, protocol version 6, which Postfix's ``milter8.c`` also speaks):

- A packet is a 4-byte big-endian length of what follows, then one command (MTA) or reply
  (filter) byte, then its data. Strings in the data are NUL-terminated.
- Option negotiation (``O``) carries three 32-bit words: the version, the actions the MTA
  allows (``SMFIF_*``) and the protocol steps (``SMFIP_*``). The filter answers with the
  subset it wants, optionally followed by macro lists per stage (ignored here: this client
  always sends the same small set of macros).
- A reply packet larger than the configured bound is a protocol error, never buffered.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pillarbox.errors import PillarboxError

#: The protocol version this client speaks (libmilter's SMFI_PROT_VERSION).
VERSION = 6
#: Sendmail's MILTER_CHUNK_SIZE: the largest body chunk sent in one packet.
BODY_CHUNK = 65535
_LENGTH = struct.Struct(">I")
_WORDS = struct.Struct(">III")


class MilterProtocolError(PillarboxError):
    """The filter broke the protocol: a malformed or unexpected reply, or one too large."""


class ActionFlag(enum.IntFlag):
    """What a filter may do to a message (``SMFIF_*``)."""

    ADDHDRS = 0x01
    CHGBODY = 0x02
    ADDRCPT = 0x04
    DELRCPT = 0x08
    CHGHDRS = 0x10
    QUARANTINE = 0x20
    CHGFROM = 0x40
    ADDRCPT_PAR = 0x80
    SETSYMLIST = 0x100


class ProtocolFlag(enum.IntFlag):
    """Steps a filter asks the MTA to leave out (``NO*``) or not to wait for (``NR_*``)."""

    NOCONNECT = 0x01
    NOHELO = 0x02
    NOMAIL = 0x04
    NORCPT = 0x08
    NOBODY = 0x10
    NOHDRS = 0x20
    NOEOH = 0x40
    NR_HDR = 0x80
    NOUNKNOWN = 0x100
    NODATA = 0x200
    SKIP = 0x400
    RCPT_REJ = 0x800
    NR_CONN = 0x1000
    NR_HELO = 0x2000
    NR_MAIL = 0x4000
    NR_RCPT = 0x8000
    NR_DATA = 0x10000
    NR_UNKN = 0x20000
    NR_EOH = 0x40000
    NR_BODY = 0x80000
    HDR_LEADSPC = 0x100000


#: Every action: the MTA side of ``milter8.c`` offers them all too.
OFFERED_ACTIONS = (
    ActionFlag.ADDHDRS
    | ActionFlag.CHGBODY
    | ActionFlag.ADDRCPT
    | ActionFlag.DELRCPT
    | ActionFlag.CHGHDRS
    | ActionFlag.QUARANTINE
    | ActionFlag.CHGFROM
    | ActionFlag.ADDRCPT_PAR
    | ActionFlag.SETSYMLIST
)
#: Every step may be left out or left unanswered, but RCPT_REJ: recipients this server refused
#: are never shown to a filter. SETSYMLIST is accepted and its lists ignored.
OFFERED_PROTOCOL = ProtocolFlag(0x1FFFFF) & ~ProtocolFlag.RCPT_REJ


class Stage(enum.Enum):
    """The SMTP stage a command belongs to, with its command byte and its two flags: the one
    that leaves the command out and the one that leaves its reply out (0: always sent, or
    always answered)."""

    CONNECT = (b"C", ProtocolFlag.NOCONNECT, ProtocolFlag.NR_CONN)
    HELO = (b"H", ProtocolFlag.NOHELO, ProtocolFlag.NR_HELO)
    MAIL = (b"M", ProtocolFlag.NOMAIL, ProtocolFlag.NR_MAIL)
    RCPT = (b"R", ProtocolFlag.NORCPT, ProtocolFlag.NR_RCPT)
    DATA = (b"T", ProtocolFlag.NODATA, ProtocolFlag.NR_DATA)
    HEADER = (b"L", ProtocolFlag.NOHDRS, ProtocolFlag.NR_HDR)
    EOH = (b"N", ProtocolFlag.NOEOH, ProtocolFlag.NR_EOH)
    BODY = (b"B", ProtocolFlag.NOBODY, ProtocolFlag.NR_BODY)
    EOM = (b"E", ProtocolFlag(0), ProtocolFlag(0))

    @property
    def command(self) -> bytes:
        return self.value[0]

    @property
    def left_out(self) -> ProtocolFlag:
        return self.value[1]

    @property
    def unanswered(self) -> ProtocolFlag:
        return self.value[2]


#: The macro stage byte of ``D`` packets is the command the macros go with.
MACRO = b"D"
OPTNEG = b"O"
ABORT = b"A"
QUIT = b"Q"


def packet(code: bytes, data: bytes = b"") -> bytes:
    """One framed packet."""
    return _LENGTH.pack(len(data) + 1) + code + data


def c_string(text: str | bytes) -> bytes:
    """A NUL-terminated string. A NUL inside would end it early and shift every later field,
    so none is passed on (SMTP and message headers never carry one legitimately)."""
    raw = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    return raw.replace(b"\0", b"") + b"\0"


def negotiation(actions: ActionFlag, protocol: ProtocolFlag) -> bytes:
    return packet(OPTNEG, _WORDS.pack(VERSION, actions, protocol))


def macros(stage: Stage, pairs: Sequence[tuple[str, str]]) -> bytes:
    """A ``D`` packet: names of more than one letter go in braces, as Sendmail writes them."""
    data = bytearray(stage.command)
    for name, value in pairs:
        data += c_string(name if len(name) == 1 else "{" + name + "}")
        data += c_string(value)
    return packet(MACRO, bytes(data))


def connect_data(hostname: str, address: str, port: int) -> bytes:
    """``C``: the client's name, its address family ('4', '6'), port and address."""
    family = b"6" if ":" in address else b"4"
    return c_string(hostname) + family + struct.pack(">H", port) + c_string(address)


def arguments(args: Sequence[str]) -> bytes:
    """``M`` and ``R``: the address in angle brackets, then each ESMTP parameter."""
    return b"".join(c_string(a) for a in args)


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The filter's answer to ``O``."""

    version: int
    actions: ActionFlag
    protocol: ProtocolFlag


class Verdict(enum.Enum):
    """What a filter's final reply to a command means."""

    CONTINUE = b"c"
    ACCEPT = b"a"
    REJECT = b"r"
    TEMPFAIL = b"t"
    DISCARD = b"d"
    #: ``f``: "cause a connection failure"; ``4``: the filter is shutting down.
    CONN_FAIL = b"f"
    SHUTDOWN = b"4"
    #: ``s``: no more body chunks (SMFIP_SKIP).
    SKIP = b"s"
    #: ``y``: reject or tempfail with the filter's own SMTP reply (its code says which).
    REPLYCODE = b"y"


PROGRESS = b"p"
_VERDICTS = {v.value: v for v in Verdict}


@dataclass(frozen=True, slots=True)
class Final:
    """A final reply: its verdict and, for ``y``, the SMTP reply text as the filter sent it."""

    verdict: Verdict
    reply: bytes = b""


@dataclass(frozen=True, slots=True)
class AddHeader:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class InsertHeader:
    #: 0 is above every field of the message.
    index: int
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class ChangeHeader:
    #: The ``index``-th field of that name (from 1); an empty value removes it.
    index: int
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class ReplaceBody:
    """One piece of the new body; a filter sends the body as several."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ChangeFrom:
    address: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AddRecipient:
    address: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DeleteRecipient:
    address: str


@dataclass(frozen=True, slots=True)
class Quarantine:
    reason: str


Edit = (
    AddHeader
    | InsertHeader
    | ChangeHeader
    | ReplaceBody
    | ChangeFrom
    | AddRecipient
    | DeleteRecipient
    | Quarantine
)


def edit_size(edit: Edit) -> int:
    """Roughly the bytes an edit adds to a message (its texts), for the bound on them."""
    match edit:
        case ReplaceBody(data=data):
            return len(data)
        case AddHeader(name=name, value=value) | InsertHeader(name=name, value=value):
            return len(name) + len(value)
        case ChangeHeader(name=name, value=value):
            return len(name) + len(value)
        case ChangeFrom(address=address) | AddRecipient(address=address):
            return len(address)
        case DeleteRecipient(address=address):
            return len(address)
        case Quarantine(reason=reason):
            return len(reason)


#: Which negotiated action each edit needs.
EDIT_ACTIONS: dict[bytes, ActionFlag] = {
    b"h": ActionFlag.ADDHDRS,
    b"i": ActionFlag.ADDHDRS,
    b"m": ActionFlag.CHGHDRS,
    b"b": ActionFlag.CHGBODY,
    b"e": ActionFlag.CHGFROM,
    b"+": ActionFlag.ADDRCPT,
    b"2": ActionFlag.ADDRCPT_PAR,
    b"-": ActionFlag.DELRCPT,
    b"q": ActionFlag.QUARANTINE,
}

Answer = Negotiated | Final | Edit | None
"""A decoded reply packet; None for ``p`` (progress: the filter is still working)."""


def _strings(data: bytes, code: bytes) -> list[str]:
    """The NUL-terminated strings of a reply's data, as text."""
    if not data.endswith(b"\0"):
        raise MilterProtocolError(f"reply {code!r}: strings not NUL-terminated")
    return [s.decode("utf-8", "replace") for s in data[:-1].split(b"\0")]


def _indexed(data: bytes, code: bytes) -> tuple[int, str, str]:
    if len(data) < 4:
        raise MilterProtocolError(f"reply {code!r}: no index")
    fields = _strings(data[4:], code)
    if len(fields) != 2:
        raise MilterProtocolError(f"reply {code!r}: expected a name and a value")
    return _LENGTH.unpack_from(data)[0], fields[0], fields[1]


def decode(code: bytes, data: bytes) -> Answer:
    """One reply packet as a value; :class:`MilterProtocolError` for anything malformed."""
    verdict = _VERDICTS.get(code)
    if verdict is not None:
        if verdict is Verdict.REPLYCODE:
            return Final(verdict, data.rstrip(b"\0"))
        return Final(verdict)
    if code == PROGRESS:
        return None
    if code == OPTNEG:
        if len(data) < _WORDS.size:
            raise MilterProtocolError("negotiation reply too short")
        version, actions, protocol = _WORDS.unpack_from(data)
        return Negotiated(version, ActionFlag(actions), ProtocolFlag(protocol & 0x1FFFFF))
    if code == b"b":
        return ReplaceBody(data)
    if code == b"i":
        return InsertHeader(*_indexed(data, code))
    if code == b"m":
        return ChangeHeader(*_indexed(data, code))
    fields = _strings(data, code)
    if code == b"h" and len(fields) == 2:
        return AddHeader(fields[0], fields[1])
    if code == b"e" and fields:
        return ChangeFrom(fields[0], tuple(fields[1:]))
    if code in (b"+", b"2") and fields:
        return AddRecipient(fields[0], tuple(fields[1:]))
    if code == b"-" and len(fields) == 1:
        return DeleteRecipient(fields[0])
    if code == b"q" and len(fields) == 1:
        return Quarantine(fields[0])
    raise MilterProtocolError(f"unknown or malformed reply {code!r}")


class Framer:
    """Cuts received bytes into (code, data) packets; packets over ``max_packet`` bytes are a
    protocol error as soon as their length is read."""

    def __init__(self, max_packet: int) -> None:
        self._buffer = bytearray()
        self._max = max_packet

    def feed(self, data: bytes) -> Iterator[tuple[bytes, bytes]]:
        self._buffer += data
        buffer = self._buffer
        while len(buffer) >= 4:
            (length,) = _LENGTH.unpack_from(buffer)
            if length == 0 or length > self._max:
                raise MilterProtocolError(f"reply packet of {length} bytes")
            if len(buffer) < 4 + length:
                return
            code, body = bytes(buffer[4:5]), bytes(buffer[5 : 4 + length])
            del buffer[: 4 + length]
            yield code, body
