"""Server responses (RFC 9051 §7): status replies, response codes, data, FETCH items.

Everything here returns wire ``bytes`` ready to send, built directly with ``%``-formatting and
``bytes.join``: a ``UID FETCH 1:* (FLAGS)`` over tens of thousands of messages is one
:func:`fetch` call per message around two cached item encodings, with no intermediate objects.

Strings go out as :mod:`pillarbox.imap.strings` decides (atom, quoted or literal); ``utf8``
parameters say whether the client enabled UTF-8 (RFC 9755 §3, RFC 9051 §6.3.1), which allows
8-bit UTF-8 inside quoted strings. Status texts are ASCII (anything else is replaced).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from pillarbox.imap import strings
from pillarbox.imap.commands import encode_mailbox
from pillarbox.imap.dates import format_date_time
from pillarbox.imap.errors import ParseError
from pillarbox.imap.fetch import BinarySection, BinarySize, BodySection, FetchItem
from pillarbox.imap.lexer import Fatal, Rejected, RejectReason
from pillarbox.imap.sequence import SequenceSet
from pillarbox.mail.model import BodyPart, Envelope, EnvelopeAddress

CRLF: Final = b"\r\n"


class Condition(enum.StrEnum):
    """RFC 9051 §7.1 status conditions."""

    OK = "OK"
    NO = "NO"
    BAD = "BAD"
    BYE = "BYE"
    PREAUTH = "PREAUTH"


@dataclass(frozen=True, slots=True)
class Code:
    """A response code (RFC 9051 §7.1): ``[NAME args]``; ``args`` already in wire form."""

    name: str
    args: bytes = b""

    def encode(self) -> bytes:
        if self.args:
            return b"[%s %s]" % (self.name.encode("ascii"), self.args)
        return b"[%s]" % self.name.encode("ascii")


# RFC 9051 §7.1 response codes without arguments (RFC 5530 names included there).
ALERT: Final = Code("ALERT")
PARSE: Final = Code("PARSE")
READ_ONLY: Final = Code("READ-ONLY")
READ_WRITE: Final = Code("READ-WRITE")
TRYCREATE: Final = Code("TRYCREATE")
UIDNOTSTICKY: Final = Code("UIDNOTSTICKY")  # RFC 4315 §3
UNAVAILABLE: Final = Code("UNAVAILABLE")
AUTHENTICATIONFAILED: Final = Code("AUTHENTICATIONFAILED")
AUTHORIZATIONFAILED: Final = Code("AUTHORIZATIONFAILED")
EXPIRED: Final = Code("EXPIRED")
PRIVACYREQUIRED: Final = Code("PRIVACYREQUIRED")
CONTACTADMIN: Final = Code("CONTACTADMIN")
NOPERM: Final = Code("NOPERM")
INUSE: Final = Code("INUSE")
EXPUNGEISSUED: Final = Code("EXPUNGEISSUED")
CORRUPTION: Final = Code("CORRUPTION")
SERVERBUG: Final = Code("SERVERBUG")
CLIENTBUG: Final = Code("CLIENTBUG")
CANNOT: Final = Code("CANNOT")
LIMIT: Final = Code("LIMIT")
OVERQUOTA: Final = Code("OVERQUOTA")
ALREADYEXISTS: Final = Code("ALREADYEXISTS")
NONEXISTENT: Final = Code("NONEXISTENT")
NOTSAVED: Final = Code("NOTSAVED")
HASCHILDREN: Final = Code("HASCHILDREN")
CLOSED: Final = Code("CLOSED")  # RFC 7162 §3.2.11, RFC 9051 §7.1
UNKNOWN_CTE: Final = Code("UNKNOWN-CTE")  # RFC 3516 §4.3
TOOBIG: Final = Code("TOOBIG")  # RFC 4469 §5, RFC 7888 §5, RFC 7889 §3
NOMODSEQ: Final = Code("NOMODSEQ")  # RFC 7162 §3.1.2
USEATTR: Final = Code("USEATTR")  # RFC 6154 §6
COMPRESSIONACTIVE: Final = Code("COMPRESSIONACTIVE")  # RFC 4978 §3
UIDREQUIRED: Final = Code("UIDREQUIRED")  # RFC 9586 §3


#: RFC 5464 §4.3 SETMETADATA failures.
METADATA_TOOMANY: Final = Code("METADATA", b"TOOMANY")


def metadata_maxsize(octets: int) -> Code:
    """RFC 5464 §4.3 ``[METADATA MAXSIZE n]``: the largest value the server accepts."""
    return Code("METADATA", b"MAXSIZE %d" % octets)


def metadata_longentries(octets: int) -> Code:
    """RFC 5464 §4.2.1 ``[METADATA LONGENTRIES n]``: the largest value MAXSIZE left out."""
    return Code("METADATA", b"LONGENTRIES %d" % octets)


def capability_code(capabilities: Iterable[str]) -> Code:
    return Code("CAPABILITY", " ".join(capabilities).encode("ascii"))


def permanent_flags(flags: Iterable[str], *, new_keywords: bool = True) -> Code:
    """``[PERMANENTFLAGS (...)]``; ``new_keywords`` adds ``\\*`` (RFC 9051 §7.1)."""
    listed = sorted(flags) + (["\\*"] if new_keywords else [])
    return Code("PERMANENTFLAGS", b"(" + " ".join(listed).encode("ascii") + b")")


def uidnext(uid: int) -> Code:
    return Code("UIDNEXT", b"%d" % uid)


def uidvalidity(value: int) -> Code:
    return Code("UIDVALIDITY", b"%d" % value)


def highestmodseq(modseq: int) -> Code:
    """RFC 7162 §3.1.2.1."""
    return Code("HIGHESTMODSEQ", b"%d" % modseq)


def appenduid(validity: int, uids: SequenceSet) -> Code:
    """RFC 4315 §3 ``[APPENDUID validity uid-set]`` (a set after MULTIAPPEND)."""
    return Code("APPENDUID", b"%d %s" % (validity, uids.format()))


def copyuid(validity: int, source: SequenceSet, destination: SequenceSet) -> Code:
    """RFC 4315 §3 ``[COPYUID validity source-uids destination-uids]``, in matching order."""
    return Code("COPYUID", b"%d %s %s" % (validity, source.format(), destination.format()))


def modified(numbers: SequenceSet) -> Code:
    """RFC 7162 §3.1.3 ``[MODIFIED set]``: messages STORE UNCHANGEDSINCE did not change."""
    return Code("MODIFIED", numbers.format())


def badcharset(charsets: Iterable[str]) -> Code:
    return Code("BADCHARSET", b"(" + b" ".join(strings.astring(c) for c in charsets) + b")")


def mailboxid(object_id: str) -> Code:
    """RFC 8474 §4.1 ``[MAILBOXID (id)]``."""
    return Code("MAILBOXID", b"(" + object_id.encode("ascii") + b")")


def _text(text: str) -> bytes:
    """resp-text's ``text``: one line of ASCII, never empty (RFC 3501 requires it)."""
    line = text.replace("\r", " ").replace("\n", " ") or "done"
    return line.encode("ascii", "replace")


@dataclass(frozen=True, slots=True)
class Reply:
    """A status response: ``OK``/``NO``/``BAD`` (tagged or not), ``BYE``, ``PREAUTH``.

    Servers name their replies as constants and send ``REPLY.tagged(tag)``; a variant with a
    dynamic code is ``REPLY.with_code(uidnext(n))``.
    """

    condition: Condition
    text: str
    code: Code | None = None

    def _body(self) -> bytes:
        code = b"" if self.code is None else self.code.encode() + b" "
        return b"%s %s%s\r\n" % (self.condition.value.encode("ascii"), code, _text(self.text))

    def tagged(self, tag: str) -> bytes:
        return tag.encode("ascii") + b" " + self._body()

    def untagged(self) -> bytes:
        return b"* " + self._body()

    def with_code(self, code: Code | None) -> Reply:
        return replace(self, code=code)

    def with_text(self, text: str) -> Reply:
        return replace(self, text=text)


#: Answers to the framer's early rejections (``pillarbox.imap.lexer``).
LINE_TOO_LONG: Final = Reply(Condition.BAD, "Command line too long")
COMMAND_TOO_LARGE: Final = Reply(Condition.BAD, "Command too large", TOOBIG)
#: A synchronising literal over the limit: the client has not sent it (RFC 7889 §4).
LITERAL_REFUSED: Final = Reply(Condition.NO, "Literal too large", TOOBIG)
#: A non-synchronising literal over the limit: BAD with TOOBIG (RFC 7888 §5).
LITERAL_DISCARDED: Final = Reply(Condition.BAD, "Non-synchronizing literal too large", TOOBIG)
#: A literal too large even to skip: the connection closes (RFC 7888 §4 option 2).
LITERAL_FATAL: Final = Reply(Condition.BYE, "Literal too large, closing connection", TOOBIG)


def _tagged_or_not(reply: Reply, tag: str | None) -> bytes:
    return reply.untagged() if tag is None else reply.tagged(tag)


def rejection(event: Rejected | Fatal) -> bytes:
    """The response to a framing rejection; for :class:`Fatal` the BYE before closing."""
    if isinstance(event, Fatal):
        return LITERAL_FATAL.untagged()
    if event.reason is RejectReason.LINE_TOO_LONG:
        reply = LINE_TOO_LONG
    elif event.reason is RejectReason.COMMAND_TOO_LARGE:
        reply = COMMAND_TOO_LARGE
    else:
        reply = LITERAL_REFUSED if event.synchronizing else LITERAL_DISCARDED
    return _tagged_or_not(reply, event.tag)


def parse_error(error: ParseError) -> bytes:
    """``tag BAD message`` (or ``NO [BADCHARSET …]``); untagged when no tag could be read."""
    code = None if error.code is None else Code(*_split_code(error.code))
    reply = Reply(Condition(error.condition), error.message, code)
    return _tagged_or_not(reply, error.tag)


def _split_code(code: str) -> tuple[str, bytes]:
    name, _, args = code.partition(" ")
    return name, args.encode("ascii")


def continuation(text: str = "Ready") -> bytes:
    """``+ text`` (RFC 9051 §7.5 continue-req), e.g. for a synchronising literal or IDLE."""
    return b"+ " + _text(text) + CRLF


def continuation_data(data: bytes) -> bytes:
    """``+ base64`` for a SASL challenge; ``data`` is already base64 (may be empty)."""
    return b"+ " + data + CRLF


# -- mailbox and server data (RFC 9051 §7.2-§7.4) -----------------------------------------


def capability(capabilities: Iterable[str]) -> bytes:
    return b"* CAPABILITY " + " ".join(capabilities).encode("ascii") + CRLF


def enabled(capabilities: Iterable[str]) -> bytes:
    """RFC 5161 §3.2 ``* ENABLED`` (possibly with nothing after it)."""
    names = " ".join(capabilities).encode("ascii")
    return b"* ENABLED" + (b" " + names if names else b"") + CRLF


def flags(names: Iterable[str]) -> bytes:
    return b"* FLAGS " + _flag_list(frozenset(names)) + CRLF


def exists(count: int) -> bytes:
    return b"* %d EXISTS\r\n" % count


def recent(count: int) -> bytes:
    """RFC 3501 §7.3.2; IMAP4rev2 dropped it."""
    return b"* %d RECENT\r\n" % count


def expunge(number: int) -> bytes:
    return b"* %d EXPUNGE\r\n" % number


def vanished(uids: SequenceSet, *, earlier: bool = False) -> bytes:
    """RFC 7162 §3.2.10 ``* VANISHED [(EARLIER)] uids``."""
    return b"* VANISHED %s%s\r\n" % (b"(EARLIER) " if earlier else b"", uids.format())


def _delimiter(delimiter: str | None) -> bytes:
    return strings.NIL if delimiter is None else strings.quoted(delimiter.encode("ascii"))


def list_item(
    attributes: Iterable[str],
    delimiter: str | None,
    name: str,
    *,
    utf8: bool = False,
    childinfo: Sequence[str] = (),
    oldname: str | None = None,
    lsub: bool = False,
) -> bytes:
    """``* LIST (attrs) "/" name`` with RFC 5258 §3.5 CHILDINFO / RFC 9051 OLDNAME items."""
    extended: list[bytes] = []
    if childinfo:
        options = b" ".join(strings.quoted(o.encode("ascii")) for o in childinfo)
        extended.append(b"CHILDINFO (" + options + b")")
    if oldname is not None:
        extended.append(b"OLDNAME (" + encode_mailbox(oldname, utf8=utf8) + b")")
    return b"* %s (%s) %s %s%s\r\n" % (
        b"LSUB" if lsub else b"LIST",
        " ".join(attributes).encode("ascii"),
        _delimiter(delimiter),
        encode_mailbox(name, utf8=utf8),
        b" (" + b" ".join(extended) + b")" if extended else b"",
    )


def status(mailbox: str, items: Iterable[tuple[str, int | str]], *, utf8: bool = False) -> bytes:
    """``* STATUS name (ITEM value ...)``; a str value is an object id in parentheses
    (MAILBOXID, RFC 8474 §4.2)."""
    values = b" ".join(
        b"%s %d" % (name.encode("ascii"), value)
        if isinstance(value, int)
        else b"%s (%s)" % (name.encode("ascii"), value.encode("ascii"))
        for name, value in items
    )
    return b"* STATUS %s (%s)\r\n" % (encode_mailbox(mailbox, utf8=utf8), values)


def _modseq_suffix(modseq: int | None) -> bytes:
    return b"" if modseq is None else b" (MODSEQ %d)" % modseq


def search(numbers: Iterable[int], *, modseq: int | None = None) -> bytes:
    """``* SEARCH n ...`` with RFC 7162 §3.1.5's ``(MODSEQ n)`` when asked for."""
    listed = b" ".join(b"%d" % n for n in numbers)
    suffix = _modseq_suffix(modseq) if listed else b""
    return b"* SEARCH" + (b" " + listed if listed else b"") + suffix + CRLF


def sort(numbers: Iterable[int], *, modseq: int | None = None) -> bytes:
    """``* SORT n ...`` (RFC 5256 §4)."""
    listed = b" ".join(b"%d" % n for n in numbers)
    suffix = _modseq_suffix(modseq) if listed else b""
    return b"* SORT" + (b" " + listed if listed else b"") + suffix + CRLF


def esearch(
    tag: str | None,
    *,
    uid: bool,
    minimum: int | None = None,
    maximum: int | None = None,
    all_numbers: SequenceSet | None = None,
    count: int | None = None,
    modseq: int | None = None,
    partial: tuple[tuple[int, int], SequenceSet | None] | None = None,
) -> bytes:
    """RFC 4731 §3.1 / RFC 9051 §7.3.4 ``* ESEARCH (TAG "t") UID MIN n ...``.

    Only the requested items are passed; an empty result has no MIN/MAX/ALL (RFC 4731 §3.1).
    ``partial`` is RFC 5267 §4.4's ``PARTIAL (low:high set)``, with NIL for an empty window.
    """
    out = b"* ESEARCH"
    if tag is not None:
        out += b" (TAG " + strings.string(tag) + b")"
    if uid:
        out += b" UID"
    if minimum is not None:
        out += b" MIN %d" % minimum
    if maximum is not None:
        out += b" MAX %d" % maximum
    if all_numbers is not None:
        out += b" ALL " + all_numbers.format()
    if partial is not None:
        (low, high), window = partial
        shown = b"NIL" if window is None else window.format()
        out += b" PARTIAL (%d:%d %s)" % (low, high, shown)
    if count is not None:
        out += b" COUNT %d" % count
    if modseq is not None:
        out += b" MODSEQ %d" % modseq
    return out + CRLF


@dataclass(frozen=True, slots=True)
class ThreadNode:
    """A THREAD result node (RFC 5256 §4): a message, or a dummy parent (``number`` None)."""

    number: int | None
    children: tuple[ThreadNode, ...] = ()


def _thread_list(node: ThreadNode) -> bytes:
    numbers: list[bytes] = []
    while True:
        if node.number is not None:
            numbers.append(b"%d" % node.number)
        if len(node.children) == 1:
            node = node.children[0]
            continue
        break
    nested = b"".join(_thread_list(child) for child in node.children)
    separator = b" " if numbers and nested else b""
    return b"(" + b" ".join(numbers) + separator + nested + b")"


def thread(threads: Iterable[ThreadNode]) -> bytes:
    """``* THREAD (2)(3 6 (4 23)(44 7 96))`` (RFC 5256 §4)."""
    body = b"".join(_thread_list(node) for node in threads)
    return b"* THREAD" + (b" " + body if body else b"") + CRLF


Namespace = Sequence[tuple[str, str | None]] | None


def namespace(
    personal: Namespace, other: Namespace, shared: Namespace, *, utf8: bool = False
) -> bytes:
    """``* NAMESPACE (("" "/")) NIL NIL`` (RFC 9051 §7.2.5): (prefix, delimiter) lists."""

    def one(entries: Namespace) -> bytes:
        if not entries:
            return strings.NIL
        described = (
            b"(%s %s)" % (strings.string(prefix, utf8=utf8), _delimiter(delimiter))
            for prefix, delimiter in entries
        )
        return b"(" + b"".join(described) + b")"

    return b"* NAMESPACE %s %s %s\r\n" % (one(personal), one(other), one(shared))


def id_response(params: Sequence[tuple[str, str | None]] | None) -> bytes:
    """``* ID ("name" "Pillarbox" ...)`` or ``* ID NIL`` (RFC 2971 §3.2)."""
    if not params:
        return b"* ID NIL\r\n"
    pairs = b" ".join(strings.string(k) + b" " + strings.nstring(v) for k, v in params)
    return b"* ID (" + pairs + b")\r\n"


def quota(root: str, resources: Iterable[tuple[str, int, int]]) -> bytes:
    """``* QUOTA root (STORAGE used limit ...)`` (RFC 9208 §5.1); STORAGE is in KiB."""
    listed = b" ".join(
        b"%s %d %d" % (name.encode("ascii"), used, limit) for name, used, limit in resources
    )
    return b"* QUOTA %s (%s)\r\n" % (strings.astring(root), listed)


def quotaroot(mailbox: str, roots: Iterable[str], *, utf8: bool = False) -> bytes:
    """``* QUOTAROOT mailbox root ...`` (RFC 9208 §5.2)."""
    out = b"* QUOTAROOT " + encode_mailbox(mailbox, utf8=utf8)
    for root in roots:
        out += b" " + strings.astring(root)
    return out + CRLF


def acl(mailbox: str, entries: Iterable[tuple[str, str]], *, utf8: bool = False) -> bytes:
    """``* ACL mailbox identifier rights ...`` (RFC 4314 §3.6)."""
    out = b"* ACL " + encode_mailbox(mailbox, utf8=utf8)
    for identifier, rights in entries:
        out += b" " + strings.astring(identifier, utf8=utf8) + b" " + strings.astring(rights)
    return out + CRLF


def listrights(
    mailbox: str, identifier: str, required: str, optional: Iterable[str], *, utf8: bool = False
) -> bytes:
    """``* LISTRIGHTS mailbox identifier required optional ...`` (RFC 4314 §3.7)."""
    out = b"* LISTRIGHTS %s %s %s" % (
        encode_mailbox(mailbox, utf8=utf8),
        strings.astring(identifier, utf8=utf8),
        strings.astring(required),
    )
    for rights in optional:
        out += b" " + strings.astring(rights)
    return out + CRLF


def myrights(mailbox: str, rights: str, *, utf8: bool = False) -> bytes:
    """``* MYRIGHTS mailbox rights`` (RFC 4314 §3.8)."""
    return b"* MYRIGHTS %s %s\r\n" % (encode_mailbox(mailbox, utf8=utf8), strings.astring(rights))


def metadata(mailbox: str, entries: bytes, *, utf8: bool = False) -> bytes:
    """``* METADATA mailbox entries`` (RFC 5464 §4.4): ``entries`` is the parenthesised
    entry-values of :func:`pillarbox.imap.metadata.entry_values`, or names alone (§4.4.2)."""
    return b"* METADATA %s %s\r\n" % (encode_mailbox(mailbox, utf8=utf8), entries)


def metadata_names(mailbox: str, names: Iterable[str], *, utf8: bool = False) -> bytes:
    """Unsolicited ``* METADATA mailbox entry …`` without values (RFC 5464 §4.4.2)."""
    return metadata(mailbox, b" ".join(strings.astring(name) for name in names), utf8=utf8)


# -- FETCH (RFC 9051 §7.5.2) ---------------------------------------------------------------


def fetch(number: int, items: Iterable[bytes]) -> bytes:
    """``* n FETCH (item item ...)``; each item from the ``*_item`` functions below."""
    return b"* %d FETCH (%s)\r\n" % (number, b" ".join(items))


def uidfetch(uid: int, items: Iterable[bytes]) -> bytes:
    """RFC 9586 §3 ``* uid UIDFETCH (item ...)``: FETCH once UIDONLY is enabled, numbered by
    UID, without the UID item unless asked for."""
    return b"* %d UIDFETCH (%s)\r\n" % (uid, b" ".join(items))


@functools.lru_cache(maxsize=4096)
def _flag_list(names: frozenset[str]) -> bytes:
    return b"(" + " ".join(sorted(names)).encode("ascii") + b")"


def flags_item(names: frozenset[str]) -> bytes:
    """``FLAGS (...)``; cached per distinct flag set, so a mailbox costs a handful of encodings."""
    return b"FLAGS " + _flag_list(names)


def uid_item(uid: int) -> bytes:
    return b"UID %d" % uid


def modseq_item(modseq: int) -> bytes:
    """RFC 7162 §3.1.4.1 ``MODSEQ (n)``."""
    return b"MODSEQ (%d)" % modseq


def internaldate_item(value: datetime) -> bytes:
    return b"INTERNALDATE " + format_date_time(value)


def rfc822_size_item(size: int) -> bytes:
    return b"RFC822.SIZE %d" % size


def savedate_item(value: datetime | None) -> bytes:
    """RFC 8514 §4.3 ``SAVEDATE date-time`` or ``SAVEDATE NIL``."""
    return b"SAVEDATE " + (strings.NIL if value is None else format_date_time(value))


def emailid_item(object_id: str) -> bytes:
    """RFC 8474 §5.1."""
    return b"EMAILID (" + object_id.encode("ascii") + b")"


def threadid_item(object_id: str) -> bytes:
    """RFC 8474 §5.3 (never NIL here: every stored message has a thread)."""
    return b"THREADID (" + object_id.encode("ascii") + b")"


def preview_item(text: str | None, *, utf8: bool = False) -> bytes:
    """RFC 8970 §3.2 ``PREVIEW nstring`` (at most 256 characters, produced at ingest)."""
    return b"PREVIEW " + strings.nstring(text, utf8=utf8)


def literal_prefix(size: int, *, binary: bool = False) -> bytes:
    """The ``{n}`` CRLF (``~{n}`` for binary) that precedes streamed data of ``size`` octets."""
    return b"%s%d}\r\n" % (b"~{" if binary else b"{", size)


def section_item(att: BodySection | BinarySection | FetchItem, data: bytes | None) -> bytes:
    """``BODY[section]<origin> {n}`` + data, ``BINARY[…]`` (literal8 when data holds NUL,
    RFC 3516 §4.2), or ``RFC822``/``RFC822.HEADER``/``RFC822.TEXT`` (RFC 3501 §7.4.2); None is
    NIL (e.g. a section that does not exist)."""
    label = att.value.encode("ascii") if isinstance(att, FetchItem) else att.label()
    if data is None:
        return label + b" NIL"
    if isinstance(att, BinarySection) and b"\x00" in data:
        return label + b" " + strings.literal8(data)
    return label + b" " + strings.literal(data)


def binary_size_item(att: BinarySize, size: int) -> bytes:
    return att.label() + b" %d" % size


def envelope_item(envelope: Envelope, *, utf8: bool = False) -> bytes:
    return b"ENVELOPE " + format_envelope(envelope, utf8=utf8)


def body_item(part: BodyPart, *, utf8: bool = False, message_global: bool = True) -> bytes:
    """``BODY (...)``: the non-extensible structure."""
    return b"BODY " + format_body(part, extensible=False, utf8=utf8, message_global=message_global)


def bodystructure_item(part: BodyPart, *, utf8: bool = False, message_global: bool = True) -> bytes:
    """``BODYSTRUCTURE (...)``: with extension data."""
    return b"BODYSTRUCTURE " + format_body(
        part, extensible=True, utf8=utf8, message_global=message_global
    )


# -- ENVELOPE and BODYSTRUCTURE ------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _address_list(addresses: tuple[EnvelopeAddress, ...], utf8: bool) -> bytes:
    """Cached: on a mailing list the same From/To/Cc lists recur across thousands of messages."""
    if not addresses:
        return strings.NIL
    return (
        b"("
        + b"".join(
            b"(%s %s %s %s)"
            % (
                strings.nstring(a.name, utf8=utf8),
                strings.nstring(a.adl, utf8=utf8),
                strings.nstring(a.mailbox, utf8=utf8),
                strings.nstring(a.host, utf8=utf8),
            )
            for a in addresses
        )
        + b")"
    )


def format_envelope(envelope: Envelope, *, utf8: bool = False) -> bytes:
    """RFC 9051 §7.5.2 ENVELOPE: ten fields; Sender and Reply-To default to From."""
    sender = envelope.sender or envelope.from_
    reply_to = envelope.reply_to or envelope.from_
    return b"(%s %s %s %s %s %s %s %s %s %s)" % (
        strings.nstring(envelope.date, utf8=utf8),
        strings.nstring(envelope.subject, utf8=utf8),
        _address_list(envelope.from_, utf8),
        _address_list(sender, utf8),
        _address_list(reply_to, utf8),
        _address_list(envelope.to, utf8),
        _address_list(envelope.cc, utf8),
        _address_list(envelope.bcc, utf8),
        strings.nstring(envelope.in_reply_to, utf8=utf8),
        strings.nstring(envelope.message_id, utf8=utf8),
    )


def _params(params: tuple[tuple[str, str], ...], utf8: bool) -> bytes:
    """body-fld-param: ``("name" "value" ...)`` or NIL when there are none."""
    if not params:
        return strings.NIL
    return (
        b"("
        + b" ".join(
            strings.string(k, utf8=utf8) + b" " + strings.string(v, utf8=utf8) for k, v in params
        )
        + b")"
    )


def _extension_tail(part: BodyPart, utf8: bool) -> bytes:
    """body-fld-dsp SP body-fld-lang SP body-fld-loc, shared by single parts and multiparts."""
    if part.disposition is None:
        disposition = strings.NIL
    else:
        kind, params = part.disposition
        disposition = b"(%s %s)" % (strings.string(kind, utf8=utf8), _params(params, utf8))
    if not part.language:
        language = strings.NIL
    else:
        language = b"(" + b" ".join(strings.string(t, utf8=utf8) for t in part.language) + b")"
    return b"%s %s %s" % (disposition, language, strings.nstring(part.location, utf8=utf8))


#: What a multipart with no parts, or a message/rfc822 without its message, shows instead
#: (the grammar needs 1*body; Dovecot shows the same empty text/plain part).
_EMPTY_TEXT: Final = BodyPart(type="text", subtype="plain", params=(("charset", "us-ascii"),))
_EMPTY_ENVELOPE: Final = Envelope()


def format_body(
    part: BodyPart, *, extensible: bool, utf8: bool = False, message_global: bool = True
) -> bytes:
    """RFC 9051 §7.5.2 ``body``: BODY (``extensible`` False) or BODYSTRUCTURE (True).

    Layouts: multipart = its parts back to back (no SP between, ``1*body``), then the subtype
    [, params disposition language location]; text = basic fields + lines; message/rfc822
    (and message/global when ``message_global``, RFC 9051/RFC 9755 §6) = basic fields +
    envelope + body + lines; anything else = basic fields. Single-part extension data is
    md5 disposition language location. Type and subtype are sent as stored.
    """
    kind = part.type.lower()
    if kind == "multipart":
        children = part.parts or (_EMPTY_TEXT,)
        out = b"(" + b"".join(
            format_body(child, extensible=extensible, utf8=utf8, message_global=message_global)
            for child in children
        )
        out += b" " + strings.string(part.subtype, utf8=utf8)
        if extensible:
            out += b" " + _params(part.params, utf8) + b" " + _extension_tail(part, utf8)
        return out + b")"
    out = b"(%s %s %s %s %s %s %d" % (
        strings.string(part.type, utf8=utf8),
        strings.string(part.subtype, utf8=utf8),
        _params(part.params, utf8),
        strings.nstring(part.content_id, utf8=utf8),
        strings.nstring(part.description, utf8=utf8),
        strings.string(part.encoding or "7BIT", utf8=utf8),
        part.size,
    )
    subtype = part.subtype.lower()
    if kind == "message" and (subtype == "rfc822" or (subtype == "global" and message_global)):
        inner = format_body(
            part.message or _EMPTY_TEXT,
            extensible=extensible,
            utf8=utf8,
            message_global=message_global,
        )
        envelope = format_envelope(part.envelope or _EMPTY_ENVELOPE, utf8=utf8)
        out += b" %s %s %d" % (envelope, inner, part.lines)
    elif kind == "text":
        out += b" %d" % part.lines
    if extensible:
        out += b" " + strings.nstring(part.md5, utf8=utf8) + b" " + _extension_tail(part, utf8)
    return out + b")"
