"""Command parser: one complete command (as the lexer delivers it) → a command value.

Implementation notes
- Grammar: RFC 9051 §9 and RFC 3501 §9, with RFC 4466 (collected extensions), RFC 2971 (ID),
  RFC 3502 (MULTIAPPEND), RFC 3516 (BINARY), RFC 4731/5182 (ESEARCH, SEARCHRES), RFC 4978
  (COMPRESS), RFC 5032 (WITHIN), RFC 5161 (ENABLE), RFC 5256 (SORT, THREAD), RFC 5258/5819/6154
  (LIST-EXTENDED, LIST-STATUS, SPECIAL-USE), RFC 6851 (MOVE), RFC 7162 (CONDSTORE, QRESYNC),
  RFC 8474 (OBJECTID), RFC 8514 (SAVEDATE), RFC 8970 (PREVIEW), RFC 9208 (QUOTA), RFC 5464
  (METADATA: the §4.4.1 examples' unparenthesised entry lists accepted), RFC 6855 APPEND
  UTF8 (withdrawn by RFC 9755, still accepted).
- Input is what :class:`pillarbox.imap.lexer.Lexer` yields: the command without its final CRLF,
  every literal as ``{n}`` CRLF followed by exactly n octets.
- Every failure is a :class:`ParseError` carrying the tag once it has been read; nothing else
  escapes for any input (a property test feeds arbitrary bytes). Recursion (search keys) is
  bounded by ``max_depth``.
- Keywords are case-insensitive (RFC 9051 §9 note 1); SP is exactly one space (note 2).
- Unknown selection, return, status, fetch and search options are BAD: RFC 5258 §3.1/§3.2 and
  RFC 4466 §2.2 require rejecting what is not understood rather than ignoring it.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from datetime import date, datetime
from typing import Final

from pillarbox.imap import commands as c
from pillarbox.imap import fetch as f
from pillarbox.imap import mutf7, strings
from pillarbox.imap import search as s
from pillarbox.imap.dates import parse_date, parse_date_time
from pillarbox.imap.errors import Mutf7Error, ParseError
from pillarbox.imap.metadata import BadEntry, entry_name
from pillarbox.imap.sequence import MAX_NUMBER, SequenceSet
from pillarbox.store.types import FlagOp

#: RFC 9051 §9: number64 is at most 2^63 - 1.
MAX_NUMBER64: Final = 2**63 - 1
#: Nesting of parenthesised/NOT/OR search keys accepted before BAD (a bound on recursion).
DEFAULT_MAX_DEPTH: Final = 64
#: RFC 2971 §3.3: at most 30 field-value pairs; fields ≤ 30 octets, values ≤ 1024 octets.
ID_MAX_PAIRS: Final = 30
ID_MAX_FIELD: Final = 30
ID_MAX_VALUE: Final = 1024
#: RFC 8474 §4: objectid = 1*255(ALPHA / DIGIT / "_" / "-").
_OBJECTID_CHARS: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_BASE64_CHARS: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_DIGITS: Final = b"0123456789"
#: Characters of a fetch attribute name before "[" or "<" (BODY.PEEK, RFC822.SIZE …).
_FETCH_NAME_CHARS: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-"
#: Charsets accepted for SEARCH/SORT/THREAD (RFC 9051 §6.4.4: US-ASCII and UTF-8 required),
#: mapped to Python codecs; others get NO [BADCHARSET (...)].
SEARCH_CHARSETS: Final = {
    "US-ASCII": "ascii",
    "UTF-8": "utf-8",
    **{f"ISO-8859-{n}": f"iso8859-{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15, 16)},
    **{f"WINDOWS-125{n}": f"cp125{n}" for n in range(9)},
    "KOI8-R": "koi8-r",
    "KOI8-U": "koi8-u",
    "ISO-2022-JP": "iso2022-jp",
    "SHIFT_JIS": "shift-jis",
    "EUC-JP": "euc-jp",
    "EUC-KR": "euc-kr",
    "GB2312": "gb2312",
    "GBK": "gbk",
    "GB18030": "gb18030",
    "BIG5": "big5",
}
_BADCHARSET: Final = "BADCHARSET (" + " ".join(SEARCH_CHARSETS) + ")"
#: RFC 9755 §3: mailbox names exclude C0/C1 controls, DEL, U+2028 and U+2029.
_MAILBOX_FORBIDDEN: Final = frozenset(
    [chr(n) for n in range(0x20)] + [chr(n) for n in range(0x7F, 0xA0)] + ["\u2028", "\u2029"]
)
_SYSTEM_FLAGS: Final = {
    flag.upper(): flag
    for flag in (
        "\\Answered",
        "\\Flagged",
        "\\Deleted",
        "\\Seen",
        "\\Draft",
        "\\Recent",
        # RFC 6154 §2 special-use attributes, for CREATE (USE (...)).
        "\\All",
        "\\Archive",
        "\\Drafts",
        "\\Junk",
        "\\Sent",
        "\\Trash",
    )
}


class _Cursor:
    """A position in one command, with one method per grammar terminal."""

    __slots__ = ("data", "depth", "max_depth", "pos", "utf8")

    def __init__(self, data: bytes, *, utf8: bool, max_depth: int) -> None:
        self.data = data
        self.pos = 0
        self.utf8 = utf8
        self.depth = 0
        self.max_depth = max_depth

    # -- low level ------------------------------------------------------------------------

    def error(self, message: str) -> ParseError:
        return ParseError(f"{message} at octet {self.pos}")

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def peek(self) -> int:
        """The next octet, or 0 at the end (NUL is never valid outside a literal)."""
        return self.data[self.pos] if self.pos < len(self.data) else 0

    def startswith(self, prefix: bytes) -> bool:
        return self.data.startswith(prefix, self.pos)

    def take(self, allowed: bytes) -> bytes:
        """The longest run of octets from ``allowed`` (possibly empty)."""
        start = end = self.pos
        data = self.data
        length = len(data)
        while end < length and data[end] in allowed:
            end += 1
        self.pos = end
        return data[start:end]

    def expect(self, literal: bytes, what: str | None = None) -> None:
        if not self.data.startswith(literal, self.pos):
            raise self.error(f"expected {what or literal.decode('ascii')!r}")
        self.pos += len(literal)

    def sp(self) -> None:
        self.expect(b" ", "SP")

    def skip(self, literal: bytes) -> bool:
        """Consume ``literal`` if it is next."""
        if self.data.startswith(literal, self.pos):
            self.pos += len(literal)
            return True
        return False

    def skip_keyword(self, word: bytes) -> bool:
        """Consume ``word`` (uppercase) case-insensitively if it is next as a whole atom."""
        end = self.pos + len(word)
        if self.data[self.pos : end].upper() != word:
            return False
        if end < len(self.data) and self.data[end] in strings.ATOM_CHARS:
            return False
        self.pos = end
        return True

    def end(self) -> None:
        if not self.at_end():
            raise self.error("unexpected characters after the command")

    def enter(self) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise self.error("nesting too deep")

    def leave(self) -> None:
        self.depth -= 1

    # -- terminals ------------------------------------------------------------------------

    def atom(self, what: str = "atom") -> bytes:
        value = self.take(strings.ATOM_CHARS)
        if not value:
            raise self.error(f"expected {what}")
        return value

    def word(self, what: str = "keyword") -> str:
        """An atom as an uppercase ASCII keyword."""
        return self.atom(what).decode("ascii").upper()

    def number(self, *, limit: int = MAX_NUMBER, nonzero: bool = False) -> int:
        digits = self.take(_DIGITS)
        if not digits:
            raise self.error("expected a number")
        if len(digits) > 19 or int(digits) > limit:
            raise self.error("number too large")
        value = int(digits)
        if nonzero and (value == 0 or digits[0] == 0x30):
            raise self.error("expected a non-zero number")
        return value

    def number64(self, *, nonzero: bool = False) -> int:
        return self.number(limit=MAX_NUMBER64, nonzero=nonzero)

    def quoted(self) -> bytes:
        self.expect(b'"')
        data = self.data
        out = bytearray()
        pos = self.pos
        length = len(data)
        while True:
            end = pos
            while end < length and data[end] not in b'"\\\r\n\x00':
                end += 1
            out += data[pos:end]
            if end >= length:
                self.pos = end
                raise self.error("unterminated quoted string")
            char = data[end]
            if char == 0x22:  # closing DQUOTE
                self.pos = end + 1
                break
            if char != 0x5C or end + 1 >= length or data[end + 1] not in b'"\\':
                self.pos = end
                raise self.error("invalid character or escape in quoted string")
            out.append(data[end + 1])
            pos = end + 2
        if self.utf8 and not out.isascii():
            # RFC 9755 §3 / RFC 9051 §9 QUOTED-CHAR: 8-bit only as UTF-8. Before UTF-8 is
            # enabled 8-bit is tolerated (old clients send charset text quoted); mailbox names
            # are held to modified UTF-7 separately.
            try:
                out.decode("utf-8")
            except UnicodeDecodeError:
                raise self.error("8-bit quoted string is not UTF-8") from None
        return bytes(out)

    def literal(self, *, binary: bool = False) -> bytes:
        """``{n}`` / ``{n+}`` CRLF n*CHAR8, or with ``binary`` also ``~{n}`` n*OCTET."""
        is_literal8 = self.skip(b"~")
        if is_literal8 and not binary:
            raise self.error("literal8 not allowed here")
        self.expect(b"{")
        size = self.number64()
        self.skip(b"+")
        self.expect(b"}\r\n", "}CRLF")
        end = self.pos + size
        if end > len(self.data):
            raise self.error("literal is shorter than announced")
        value = self.data[self.pos : end]
        self.pos = end
        if not is_literal8 and b"\x00" in value:
            raise self.error("NUL in a literal (only literal8 may carry it)")
        return value

    def string(self) -> bytes:
        if self.peek() == 0x22:
            return self.quoted()
        if self.peek() == 0x7B:
            return self.literal()
        raise self.error("expected a string")

    def nstring(self) -> bytes | None:
        if self.skip_keyword(b"NIL"):
            return None
        return self.string()

    def astring(self) -> bytes:
        if self.peek() in (0x22, 0x7B):
            return self.string()
        value = self.take(strings.ASTRING_CHARS)
        if not value:
            raise self.error("expected an astring")
        return value

    def ascii_astring(self, what: str) -> str:
        value = self.astring()
        if not value.isascii():
            raise self.error(f"{what} must be US-ASCII")
        return value.decode("ascii")

    def list_mailbox(self) -> bytes:
        if self.peek() in (0x22, 0x7B):
            return self.string()
        value = self.take(strings.LIST_CHARS)
        if not value:
            raise self.error("expected a mailbox pattern")
        return value

    def mailbox_name(self, raw: bytes) -> str:
        """Decode a mailbox name or pattern: UTF-8 once enabled, modified UTF-7 before."""
        if self.utf8:
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise self.error("mailbox name is not UTF-8") from None
        else:
            try:
                name = mutf7.decode(raw)
            except Mutf7Error as exc:
                raise self.error(f"mailbox name is not modified UTF-7: {exc}") from None
        if not _MAILBOX_FORBIDDEN.isdisjoint(name):
            raise self.error("control character in mailbox name")
        return name

    def mailbox(self) -> str:
        name = self.mailbox_name(self.astring())
        # RFC 9051 §5.1: every case variant of INBOX is INBOX.
        return "INBOX" if name.upper() == "INBOX" else name

    def sequence_set(self) -> SequenceSet:
        raw = self.take(b"0123456789:,*$")
        if not raw:
            raise self.error("expected a sequence set")
        return SequenceSet.parse(raw)

    def flag(self) -> str:
        if self.skip(b"\\"):
            if self.skip(b"*"):
                raise self.error("\\* is not a flag in a command")
            name = "\\" + self.atom("flag").decode("ascii")
            return _SYSTEM_FLAGS.get(name.upper(), name)
        return self.atom("flag").decode("ascii")

    def flag_list(self) -> tuple[str, ...]:
        """``"(" [flag *(SP flag)] ")"``."""
        self.expect(b"(")
        flags: list[str] = []
        if not self.skip(b")"):
            flags.append(self.flag())
            while self.skip(b" "):
                flags.append(self.flag())
            self.expect(b")")
        return tuple(flags)

    def date(self) -> date:
        quoted = self.skip(b'"')
        raw = self.take(b"0123456789-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
        if quoted:
            self.expect(b'"')
        try:
            return parse_date(raw)
        except ValueError:
            raise self.error(f"invalid date {raw.decode('ascii', 'replace')!r}") from None

    def date_time(self) -> datetime:
        self.expect(b'"')
        close = self.data.find(b'"', self.pos)
        if close < 0:
            raise self.error("unterminated date-time")
        raw = self.data[self.pos : close]
        try:
            value = parse_date_time(raw)
        except ValueError:
            raise self.error(f"invalid date-time {raw.decode('ascii', 'replace')!r}") from None
        self.pos = close + 1
        return value

    def parenthesised_words(self) -> list[str]:
        """``"(" [atom *(SP atom)] ")"`` as uppercase keywords."""
        self.expect(b"(")
        words: list[str] = []
        if not self.skip(b")"):
            words.append(self.word())
            while self.skip(b" "):
                words.append(self.word())
            self.expect(b")")
        return words


# -- commands -----------------------------------------------------------------------------


def _no_arguments(factory: Callable[[str], c.Command]) -> Callable[[_Cursor, str], c.Command]:
    def parse(cur: _Cursor, tag: str) -> c.Command:
        return factory(tag)

    return parse


def _authenticate(cur: _Cursor, tag: str) -> c.Command:
    cur.sp()
    mechanism = cur.word("mechanism")
    initial = None
    if cur.skip(b" "):
        initial = cur.take(_BASE64_CHARS)
        if not initial or (initial != b"=" and not _is_base64(initial)):
            raise cur.error("initial response is not base64")
    return c.Authenticate(tag, mechanism, initial)


def _is_base64(data: bytes) -> bool:
    try:
        binascii.a2b_base64(data, strict_mode=True)
    except binascii.Error:
        return False
    return True


def _login(cur: _Cursor, tag: str) -> c.Command:
    cur.sp()
    userid = cur.astring()
    cur.sp()
    return c.Login(tag, userid, cur.astring())


def _enable(cur: _Cursor, tag: str) -> c.Command:
    capabilities = []
    cur.sp()
    capabilities.append(cur.word("capability"))
    while cur.skip(b" "):
        capabilities.append(cur.word("capability"))
    return c.Enable(tag, tuple(capabilities))


def _select(read_only: bool) -> Callable[[_Cursor, str], c.Command]:
    def parse(cur: _Cursor, tag: str) -> c.Command:
        cur.sp()
        mailbox = cur.mailbox()
        condstore = False
        qresync = None
        if cur.skip(b" ("):
            # RFC 4466 §2.1 select-params; RFC 7162 §3.1.8 CONDSTORE, §3.2.5 QRESYNC.
            while True:
                param = cur.word("select parameter")
                if param == "CONDSTORE" and not condstore:
                    condstore = True
                elif param == "QRESYNC" and qresync is None:
                    cur.sp()
                    qresync = _qresync(cur)
                else:
                    raise cur.error(f"unknown or repeated select parameter {param}")
                if not cur.skip(b" "):
                    break
            cur.expect(b")")
        return c.Select(tag, mailbox, read_only, condstore, qresync)

    return parse


def _qresync(cur: _Cursor) -> c.Qresync:
    cur.expect(b"(")
    uidvalidity = cur.number(nonzero=True)
    cur.sp()
    modseq = cur.number64(nonzero=True)
    known_uids = None
    seq_match = None
    if cur.skip(b" "):
        if cur.peek() != 0x28:
            known_uids = cur.sequence_set()
            if cur.skip(b" "):
                seq_match = _seq_match(cur)
        else:
            seq_match = _seq_match(cur)
    cur.expect(b")")
    if (known_uids is not None and known_uids.saved) or (
        seq_match is not None and (seq_match[0].saved or seq_match[1].saved)
    ):
        raise cur.error("'$' is not allowed in QRESYNC")
    return c.Qresync(uidvalidity, modseq, known_uids, seq_match)


def _seq_match(cur: _Cursor) -> tuple[SequenceSet, SequenceSet]:
    cur.expect(b"(")
    known_seqs = cur.sequence_set()
    cur.sp()
    known_uids = cur.sequence_set()
    cur.expect(b")")
    return known_seqs, known_uids


def _create(cur: _Cursor, tag: str) -> c.Command:
    cur.sp()
    mailbox = cur.mailbox()
    special_use: tuple[str, ...] = ()
    if cur.skip(b" ("):
        # RFC 6154 §3 create-param "USE" SP "(" [use-attr *(SP use-attr)] ")".
        if not cur.skip_keyword(b"USE"):
            raise cur.error("unknown CREATE parameter")
        cur.sp()
        special_use = cur.flag_list()
        if not all(flag.startswith("\\") for flag in special_use):
            raise cur.error("special-use attributes start with a backslash")
        cur.expect(b")")
    return c.Create(tag, mailbox, special_use)


def _one_mailbox(factory: Callable[[str, str], c.Command]) -> Callable[[_Cursor, str], c.Command]:
    def parse(cur: _Cursor, tag: str) -> c.Command:
        cur.sp()
        return factory(tag, cur.mailbox())

    return parse


def _identifier(cur: _Cursor) -> str:
    """An RFC 4314 §3 identifier (an astring): an account address or a special name."""
    raw = cur.astring()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise cur.error("identifier is not UTF-8") from None


def _mailbox_identifier(
    factory: Callable[[str, str, str], c.Command],
) -> Callable[[_Cursor, str], c.Command]:
    """DELETEACL and LISTRIGHTS (RFC 4314 §3.2, §3.4): a mailbox and an identifier."""

    def parse(cur: _Cursor, tag: str) -> c.Command:
        cur.sp()
        name = cur.mailbox()
        cur.sp()
        return factory(tag, name, _identifier(cur))

    return parse


def _setacl(cur: _Cursor, tag: str) -> c.Command:
    """SETACL mailbox identifier mod-rights (RFC 4314 §3.1); the rights are checked by the
    session (an unknown right is a BAD there, with the command understood)."""
    cur.sp()
    name = cur.mailbox()
    cur.sp()
    identifier = _identifier(cur)
    cur.sp()
    return c.SetAcl(tag, name, identifier, cur.astring().decode("utf-8", "surrogateescape"))


def _rename(cur: _Cursor, tag: str) -> c.Command:
    cur.sp()
    old = cur.mailbox()
    cur.sp()
    return c.Rename(tag, old, cur.mailbox())


def _list(cur: _Cursor, tag: str) -> c.Command:
    cur.sp()
    extended = False
    selection: set[str] = set()
    if cur.peek() == 0x28:
        extended = True
        selection.update(cur.parenthesised_words())
        unknown = selection - c.LIST_SELECTION
        if unknown:
            raise cur.error(f"unknown LIST selection option {sorted(unknown)[0]}")
        # RFC 5258 §3.1: RECURSIVEMATCH needs a base option (SUBSCRIBED).
        if "RECURSIVEMATCH" in selection and "SUBSCRIBED" not in selection:
            raise cur.error("RECURSIVEMATCH requires SUBSCRIBED")
        cur.sp()
    reference = cur.mailbox_name(cur.astring())
    cur.sp()
    patterns = []
    if cur.skip(b"("):
        extended = True
        patterns.append(cur.mailbox_name(cur.list_mailbox()))
        while cur.skip(b" "):
            patterns.append(cur.mailbox_name(cur.list_mailbox()))
        cur.expect(b")")
    else:
        patterns.append(cur.mailbox_name(cur.list_mailbox()))
    options: set[str] = set()
    status = None
    if cur.skip(b" "):
        if not cur.skip_keyword(b"RETURN"):
            raise cur.error("expected RETURN")
        extended = True
        cur.expect(b" (")
        if not cur.skip(b")"):
            while True:
                option = cur.word("return option")
                if option == "STATUS" and status is None:
                    cur.sp()
                    status = _status_items(cur)
                elif option in c.LIST_RETURN:
                    options.add(option)
                else:
                    raise cur.error(f"unknown or repeated LIST return option {option}")
                if not cur.skip(b" "):
                    break
            cur.expect(b")")
    return c.List(
        tag, reference, tuple(patterns), frozenset(selection), frozenset(options), status, extended
    )


def _lsub(cur: _Cursor, tag: str) -> c.Command:
    cur.sp()
    reference = cur.mailbox_name(cur.astring())
    cur.sp()
    return c.Lsub(tag, reference, cur.mailbox_name(cur.list_mailbox()))


def _status_items(cur: _Cursor) -> tuple[str, ...]:
    items = cur.parenthesised_words()
    if not items:
        raise cur.error("STATUS needs at least one item")
    for item in items:
        if item not in c.STATUS_ITEMS:
            raise cur.error(f"unknown STATUS item {item}")
    return tuple(items)


def _status(cur: _Cursor, tag: str) -> c.Command:
    cur.sp()
    mailbox = cur.mailbox()
    cur.sp()
    return c.Status(tag, mailbox, _status_items(cur))


def _append(cur: _Cursor, tag: str) -> c.Command:
    cur.sp()
    mailbox = cur.mailbox()
    messages = []
    # RFC 4466 §2.1: append = "APPEND" SP mailbox 1*append-message (RFC 3502 MULTIAPPEND).
    while cur.skip(b" "):
        messages.append(_append_message(cur))
    if not messages:
        raise cur.error("APPEND needs a message")
    return c.Append(tag, mailbox, tuple(messages))


def _append_message(cur: _Cursor) -> c.AppendMessage:
    """RFC 4466 §2.1 ``append-message`` after its leading SP: [flag-list SP] [date-time SP]
    then the data, a literal or literal8 (RFC 3516 §4.4), bare or in RFC 6855 ``UTF8 (…)``."""
    flags: tuple[str, ...] = ()
    internal_date = None
    if cur.peek() == 0x28:
        flags = cur.flag_list()
        cur.sp()
    if cur.peek() == 0x22:
        internal_date = cur.date_time()
        cur.sp()
    utf8 = cur.skip_keyword(b"UTF8")
    if utf8:
        cur.expect(b" (")
    binary = cur.peek() == 0x7E
    data = cur.literal(binary=True)
    if utf8:
        cur.expect(b")")
    return c.AppendMessage(data, flags, internal_date, binary, utf8)


def _replace(uid: bool) -> Callable[[_Cursor, str], c.Command]:
    """RFC 8508 §5: ``replace = "REPLACE" SP seq-number SP mailbox append-message``, and
    ``uid-replace = "UID" SP replace``: one message (§4.7) and one number (or ``*``)."""

    def parse(cur: _Cursor, tag: str) -> c.Command:
        cur.sp()
        if cur.skip(b"*"):
            target = SequenceSet.parse(b"*")
        else:
            target = SequenceSet.from_numbers([cur.number(nonzero=True)])
        cur.sp()
        mailbox = cur.mailbox()
        cur.sp()
        return c.Replace(tag, target, mailbox, _append_message(cur), uid)

    return parse


def _expunge(cur: _Cursor, tag: str) -> c.Command:
    return c.Expunge(tag)


def _uid_expunge(cur: _Cursor, tag: str) -> c.Command:
    cur.sp()
    return c.Expunge(tag, cur.sequence_set())


def _charset(cur: _Cursor) -> tuple[str, str]:
    """``charset = atom / quoted`` → (name as given uppercased, Python codec)."""
    raw = cur.quoted() if cur.peek() == 0x22 else cur.atom("charset")
    name = raw.decode("ascii", "replace").upper()
    codec = SEARCH_CHARSETS.get(name)
    if codec is None:
        raise ParseError(f"unsupported charset {name}", code=_BADCHARSET, condition="NO")
    return name, codec


def _return_options(
    cur: _Cursor, allowed: frozenset[str], what: str
) -> tuple[frozenset[str] | None, tuple[int, int] | None]:
    """RFC 4731 §3.1 search-return-opts (RFC 5267 §3 for SORT), with the space after it, and
    RFC 9394 §4 ``PARTIAL partial-range`` (once; never beside ALL, RFC 5267 §4.4)."""
    if not cur.skip_keyword(b"RETURN"):
        return None, None
    cur.sp()
    cur.expect(b"(")
    words: list[str] = []
    window: tuple[int, int] | None = None
    if not cur.skip(b")"):
        while True:
            word = cur.word()
            if word == "PARTIAL" and window is None:
                cur.sp()
                window = _partial_range(cur)
            elif word in allowed:
                words.append(word)
            else:
                raise cur.error(f"unknown {what} return option {word}")
            if not cur.skip(b" "):
                break
        cur.expect(b")")
    if window is not None and "ALL" in words:
        # RFC 5267 §4.4: "either one PARTIAL, one ALL, or neither".
        raise cur.error("PARTIAL and ALL cannot be combined")
    cur.sp()
    return frozenset(words), window


def _partial_range(cur: _Cursor) -> tuple[int, int]:
    """RFC 9394 §4 ``partial-range-first = nz-number ":" nz-number`` or
    ``partial-range-last = MINUS nz-number ":" MINUS nz-number``: ``(1, 100)``, or
    ``(-1, -100)`` for the last hundred. The ends stay in the client's order: "500:400 is the
    same as 400:500" (§3.1) to :func:`~pillarbox.imap.session.partial_window`, but the
    PARTIAL return data carries "the original range" (§3.1)."""
    last = cur.skip(b"-")
    first = cur.number(nonzero=True)
    cur.expect(b":")
    if cur.skip(b"-") != last:
        raise cur.error("PARTIAL range ends must have the same sign")
    second = cur.number(nonzero=True)
    return (-first, -second) if last else (first, second)


def _search(uid: bool) -> Callable[[_Cursor, str], c.Command]:
    def parse(cur: _Cursor, tag: str) -> c.Command:
        cur.sp()
        options, partial = _return_options(cur, c.SEARCH_RETURN, "SEARCH")
        charset = None
        codec = "utf-8"
        if cur.skip_keyword(b"CHARSET"):
            cur.sp()
            charset, codec = _charset(cur)
            cur.sp()
        key = _search_program(cur, codec)
        return c.Search(tag, key, charset, uid, options, partial)

    return parse


_NOTIFY_EVENT_NAMES: Final = {name.upper(): name for name in c.NOTIFY_EVENTS}


def _notify(cur: _Cursor, tag: str) -> c.Command:
    """RFC 5465 §8 ``notify``. The §5/§6.1 rules on which events go together are the
    session's (:mod:`.notify`), so that every grammatical command round-trips."""
    cur.sp()
    if cur.skip_keyword(b"NONE"):
        return c.Notify(tag, None)
    if not cur.skip_keyword(b"SET"):
        raise cur.error("expected SET or NONE")
    status = cur.skip_keyword(b" STATUS")
    groups = []
    while cur.skip(b" "):
        groups.append(_notify_group(cur))
    if not groups:
        raise cur.error("expected an event group")
    return c.Notify(tag, tuple(groups), status)


def _notify_group(cur: _Cursor) -> c.NotifyGroup:
    cur.expect(b"(")
    cur.enter()
    name = cur.word("mailbox filter")
    mailboxes: list[str] = []
    if name in c.NOTIFY_NAMED_FILTERS:
        cur.sp()
        if cur.skip(b"("):  # many-mailboxes
            mailboxes.append(cur.mailbox())
            while cur.skip(b" "):
                mailboxes.append(cur.mailbox())
            cur.expect(b")")
        else:
            mailboxes.append(cur.mailbox())
    elif name not in c.NOTIFY_FILTERS:
        raise cur.error(f"unknown mailbox filter {name}")
    cur.sp()
    events: list[str] = []
    fetch_atts: tuple[f.FetchAtt, ...] = ()
    if not cur.skip_keyword(b"NONE"):
        # §8 wants the events parenthesised; every example in the RFC leaves them bare
        # ("(selected MessageNew (uid) MessageExpunge)"), which is accepted too.
        listed = cur.skip(b"(")
        while True:
            word = cur.word("event")
            event = _NOTIFY_EVENT_NAMES.get(word, word)
            if event == "MessageNew" and cur.skip(b" ("):
                items = [_fetch_att(cur)]
                while cur.skip(b" "):
                    items.append(_fetch_att(cur))
                cur.expect(b")")
                fetch_atts = tuple(items)
            events.append(event)
            if not cur.skip(b" "):
                break
        if listed:
            cur.expect(b")")
    cur.expect(b")")
    cur.leave()
    return c.NotifyGroup(name, tuple(events), tuple(mailboxes), fetch_atts)


def _search_program(cur: _Cursor, codec: str) -> s.SearchKey:
    keys = [_search_key(cur, codec)]
    while cur.skip(b" "):
        keys.append(_search_key(cur, codec))
    return keys[0] if len(keys) == 1 else s.And(tuple(keys))


def _sort(uid: bool) -> Callable[[_Cursor, str], c.Command]:
    def parse(cur: _Cursor, tag: str) -> c.Command:
        cur.sp()
        options, partial = _return_options(cur, c.SORT_RETURN, "SORT")
        words = cur.parenthesised_words()
        criteria = []
        reverse = False
        for word in words:
            if word == "REVERSE" and not reverse:
                reverse = True
                continue
            if word not in c.SORT_KEYS:
                raise cur.error(f"unknown sort key {word}")
            criteria.append(c.SortCriterion(word, reverse))
            reverse = False
        if reverse or not criteria:
            raise cur.error("incomplete sort criteria")
        cur.sp()
        charset, codec = _charset(cur)
        cur.sp()
        key = _search_program(cur, codec)
        return c.Sort(tag, tuple(criteria), charset, key, uid, options, partial)

    return parse


def _thread(uid: bool) -> Callable[[_Cursor, str], c.Command]:
    def parse(cur: _Cursor, tag: str) -> c.Command:
        cur.sp()
        algorithm = cur.word("thread algorithm")
        cur.sp()
        charset, codec = _charset(cur)
        cur.sp()
        return c.Thread(tag, algorithm, charset, _search_program(cur, codec), uid)

    return parse


def _fetch(uid: bool) -> Callable[[_Cursor, str], c.Command]:
    def parse(cur: _Cursor, tag: str) -> c.Command:
        cur.sp()
        sequence = cur.sequence_set()
        cur.sp()
        atts: tuple[f.FetchAtt, ...]
        if cur.skip(b"("):
            items = [_fetch_att(cur)]
            while cur.skip(b" "):
                items.append(_fetch_att(cur))
            cur.expect(b")")
            atts = tuple(items)
        else:
            mark = cur.pos
            macro = f.MACROS.get(cur.take(_FETCH_NAME_CHARS).decode("ascii").upper())
            if macro is None:
                cur.pos = mark
                atts = (_fetch_att(cur),)
            else:
                atts = macro
        changed_since = None
        vanished = False
        partial = None
        if cur.skip(b" "):
            # RFC 4466 §2.4 fetch-modifiers; RFC 7162 §3.1.4 CHANGEDSINCE, §3.2.6 VANISHED;
            # RFC 9394 §4 PARTIAL.
            cur.expect(b"(")
            while True:
                modifier = cur.word("fetch modifier")
                if modifier == "CHANGEDSINCE" and changed_since is None:
                    cur.sp()
                    changed_since = cur.number64(nonzero=True)
                elif modifier == "VANISHED" and not vanished:
                    vanished = True
                elif modifier == "PARTIAL" and partial is None:
                    cur.sp()
                    partial = _partial_range(cur)
                else:
                    raise cur.error(f"unknown or repeated fetch modifier {modifier}")
                if not cur.skip(b" "):
                    break
            cur.expect(b")")
        if vanished and (changed_since is None or not uid):
            # RFC 7162 §3.2.6: VANISHED only in UID FETCH, and only with CHANGEDSINCE.
            raise cur.error("VANISHED requires UID FETCH and CHANGEDSINCE")
        return c.Fetch(tag, sequence, atts, uid, changed_since, vanished, partial)

    return parse


_SIMPLE_FETCH: Final = {item.value: item for item in f.FetchItem}


def _fetch_att(cur: _Cursor) -> f.FetchAtt:
    name = cur.take(_FETCH_NAME_CHARS).decode("ascii").upper()
    if not name:
        raise cur.error("expected a fetch attribute")
    if cur.peek() == 0x5B:  # "["
        if name in ("BODY", "BODY.PEEK"):
            section = _section(cur)
            return f.BodySection(section, name == "BODY.PEEK", _partial(cur))
        if name in ("BINARY", "BINARY.PEEK", "BINARY.SIZE"):
            cur.expect(b"[")
            part = _section_part(cur) if cur.peek() != 0x5D else ()
            cur.expect(b"]")
            if name == "BINARY.SIZE":
                return f.BinarySize(part)
            return f.BinarySection(part, name == "BINARY.PEEK", _partial(cur))
        raise cur.error(f"{name} takes no section")
    if name == "PREVIEW":
        # RFC 8970 §3.1: "PREVIEW" [SP "(" preview-mod *(SP preview-mod) ")"], mod = "LAZY".
        mark = cur.pos
        if cur.skip(b" (") and cur.skip_keyword(b"LAZY"):
            while cur.skip(b" "):
                if not cur.skip_keyword(b"LAZY"):
                    raise cur.error("unknown PREVIEW modifier")
            cur.expect(b")")
            return f.Preview(lazy=True)
        cur.pos = mark
        return f.Preview()
    item = _SIMPLE_FETCH.get(name)
    if item is None:
        raise cur.error(f"unknown fetch attribute {name}")
    return item


def _section_part(cur: _Cursor) -> tuple[int, ...]:
    part = [cur.number(nonzero=True)]
    while cur.peek() == 0x2E and cur.pos + 1 < len(cur.data) and cur.data[cur.pos + 1] in _DIGITS:
        cur.pos += 1
        part.append(cur.number(nonzero=True))
    return tuple(part)


def _section(cur: _Cursor) -> f.Section:
    cur.expect(b"[")
    part: tuple[int, ...] = ()
    text = None
    fields: tuple[str, ...] = ()
    if cur.peek() in _DIGITS:
        part = _section_part(cur)
        if cur.skip(b"."):
            text = cur.take(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.").decode()
    elif cur.peek() != 0x5D:
        text = cur.take(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.").decode()
    if text is not None:
        text = text.upper()
        if text not in f.SECTION_TEXTS or (text == "MIME" and not part):
            raise cur.error(f"invalid section text {text!r}")
        if text.startswith("HEADER.FIELDS"):
            cur.expect(b" (")
            names = [cur.ascii_astring("header field name")]
            while cur.skip(b" "):
                names.append(cur.ascii_astring("header field name"))
            cur.expect(b")")
            fields = tuple(names)
    cur.expect(b"]")
    return f.Section(part, text, fields)


def _partial(cur: _Cursor) -> tuple[int, int] | None:
    if not cur.skip(b"<"):
        return None
    offset = cur.number64()
    cur.expect(b".")
    length = cur.number64(nonzero=True)
    cur.expect(b">")
    return offset, length


def _store(uid: bool) -> Callable[[_Cursor, str], c.Command]:
    def parse(cur: _Cursor, tag: str) -> c.Command:
        cur.sp()
        sequence = cur.sequence_set()
        cur.sp()
        unchanged_since = None
        if cur.skip(b"("):
            # RFC 4466 §2.5 store-modifiers; RFC 7162 §3.1.3 UNCHANGEDSINCE.
            if not cur.skip_keyword(b"UNCHANGEDSINCE"):
                raise cur.error("unknown STORE modifier")
            cur.sp()
            unchanged_since = cur.number64()
            cur.expect(b")")
            cur.sp()
        mode = FlagOp.ADD if cur.skip(b"+") else FlagOp.REMOVE if cur.skip(b"-") else FlagOp.REPLACE
        if cur.skip_keyword(b"FLAGS"):
            silent = False
        elif cur.skip_keyword(b"FLAGS.SILENT"):
            silent = True
        else:
            raise cur.error("expected FLAGS or FLAGS.SILENT")
        cur.sp()
        if cur.peek() == 0x28:
            flags = cur.flag_list()
        else:
            items = [cur.flag()]
            while cur.skip(b" "):
                items.append(cur.flag())
            flags = tuple(items)
        return c.Store(tag, sequence, mode, flags, silent, uid, unchanged_since)

    return parse


def _copy_or_move(
    factory: type[c.Copy] | type[c.Move], uid: bool
) -> Callable[[_Cursor, str], c.Command]:
    def parse(cur: _Cursor, tag: str) -> c.Command:
        cur.sp()
        sequence = cur.sequence_set()
        cur.sp()
        return factory(tag, sequence, cur.mailbox(), uid)

    return parse


def _id(cur: _Cursor, tag: str) -> c.Command:
    cur.sp()
    if cur.skip_keyword(b"NIL"):
        return c.Id(tag, None)
    cur.expect(b"(")
    params: list[tuple[str, str | None]] = []
    if not cur.skip(b")"):
        while True:
            field = cur.string()
            cur.sp()
            value = cur.nstring()
            if len(field) > ID_MAX_FIELD or (value is not None and len(value) > ID_MAX_VALUE):
                raise cur.error("ID field or value too long (RFC 2971 §3.3)")
            params.append(
                (
                    field.decode("utf-8", "replace"),
                    None if value is None else value.decode("utf-8", "replace"),
                )
            )
            if len(params) > ID_MAX_PAIRS:
                raise cur.error("too many ID pairs (RFC 2971 §3.3)")
            if not cur.skip(b" "):
                break
        cur.expect(b")")
    return c.Id(tag, tuple(params))


def _compress(cur: _Cursor, tag: str) -> c.Command:
    cur.sp()
    return c.Compress(tag, cur.word("compression mechanism"))


def _getquota(cur: _Cursor, tag: str) -> c.Command:
    cur.sp()
    return c.GetQuota(tag, cur.astring().decode("utf-8", "surrogateescape"))


def _setquota(cur: _Cursor, tag: str) -> c.Command:
    cur.sp()
    root = cur.astring().decode("utf-8", "surrogateescape")
    cur.sp()
    cur.expect(b"(")
    limits: list[tuple[str, int]] = []
    if not cur.skip(b")"):
        while True:
            name = cur.word("resource name")
            cur.sp()
            limits.append((name, cur.number64()))
            if not cur.skip(b" "):
                break
        cur.expect(b")")
    return c.SetQuota(tag, root, tuple(limits))


def _entry(cur: _Cursor, *, settable: bool = False) -> str:
    """RFC 5464 §5 ``entry = astring``, held to §3.2 (BAD otherwise)."""
    try:
        return entry_name(cur.astring(), settable=settable)
    except BadEntry as exc:
        raise cur.error(str(exc)) from None


def _getmetadata_options(cur: _Cursor) -> tuple[int | None, int | None]:
    """RFC 5464 §5 getmetadata-options: (MAXSIZE, DEPTH; None is infinity). RFC 4466 §2.1:
    unknown options are BAD."""
    maxsize: int | None = None
    depth: int | None = 0
    seen: set[str] = set()
    cur.expect(b"(")
    while True:
        option = cur.word("GETMETADATA option")
        if option in seen or option not in ("MAXSIZE", "DEPTH"):
            raise cur.error(f"unknown or repeated GETMETADATA option {option}")
        seen.add(option)
        cur.sp()
        if option == "MAXSIZE":
            maxsize = cur.number()
        elif cur.skip_keyword(b"INFINITY"):
            depth = None
        elif cur.skip(b"0"):
            depth = 0
        elif cur.skip(b"1"):
            depth = 1
        else:
            raise cur.error("DEPTH is 0, 1 or infinity")
        if not cur.skip(b" "):
            break
    cur.expect(b")")
    return maxsize, depth


def _getmetadata(cur: _Cursor, tag: str) -> c.Command:
    cur.sp()
    options: tuple[int | None, int | None] | None = None
    if cur.peek() == 0x28:
        options = _getmetadata_options(cur)
        cur.sp()
    mailbox = cur.mailbox()
    cur.sp()
    # RFC 5464's §4.2.1/§4.2.2 examples put the options after the mailbox: accepted too (an
    # entry list starts with "/" or a quote, an option list with a letter).
    if options is None and cur.peek() == 0x28 and cur.data[cur.pos + 1 : cur.pos + 2].isalpha():
        options = _getmetadata_options(cur)
        cur.sp()
    maxsize, depth = options if options is not None else (None, 0)
    entries = []
    parenthesised = cur.skip(b"(")
    entries.append(_entry(cur))
    while cur.skip(b" "):  # RFC 5464 §4.4.1's examples list entries without parentheses
        entries.append(_entry(cur))
    if parenthesised:
        cur.expect(b")")
    return c.GetMetadata(tag, mailbox, tuple(entries), maxsize, depth)


def _setmetadata(cur: _Cursor, tag: str) -> c.Command:
    cur.sp()
    mailbox = cur.mailbox()
    cur.sp()
    cur.expect(b"(")
    pairs: list[tuple[str, bytes | None]] = []
    while True:
        name = _entry(cur, settable=True)
        cur.sp()
        # RFC 5464 §5 value = nstring / literal8
        value = cur.literal(binary=True) if cur.peek() == 0x7E else cur.nstring()
        pairs.append((name, value))
        if not cur.skip(b" "):
            break
    cur.expect(b")")
    return c.SetMetadata(tag, mailbox, tuple(pairs))


# -- search keys --------------------------------------------------------------------------

_DATE_KEYS: Final = {
    (field.value + op.value): (field, op) for field in s.DateField for op in s.DateOp
}
_NO_ARGUMENT_KEYS: Final[dict[str, s.SearchKey]] = {
    "ALL": s.AllKey(),
    "NEW": s.NewKey(),
    "SAVEDATESUPPORTED": s.SaveDateSupportedKey(),
    **{word: s.FlagKey(flag, present) for word, (flag, present) in s.FLAG_KEYWORDS.items()},
}


_ARGUMENT_KEYS: Final = frozenset(
    {
        *_DATE_KEYS,
        *s.STRING_FIELDS,
        "KEYWORD",
        "UNKEYWORD",
        "HEADER",
        "LARGER",
        "SMALLER",
        "UID",
        "NOT",
        "OR",
        "MODSEQ",
        "OLDER",
        "YOUNGER",
        "EMAILID",
        "THREADID",
    }
)


def _search_key(cur: _Cursor, codec: str) -> s.SearchKey:
    cur.enter()
    try:
        return _search_key_inner(cur, codec)
    finally:
        cur.leave()


def _decoded(cur: _Cursor, raw: bytes, codec: str) -> str:
    try:
        return raw.decode(codec)
    except UnicodeDecodeError:
        raise cur.error(f"search string is not valid {codec}") from None


def _search_key_inner(cur: _Cursor, codec: str) -> s.SearchKey:
    first = cur.peek()
    if first == 0x28:  # "("
        cur.pos += 1
        keys = [_search_key(cur, codec)]
        while cur.skip(b" "):
            keys.append(_search_key(cur, codec))
        cur.expect(b")")
        return s.And(tuple(keys))
    if first in b"0123456789*$":
        return s.SequenceKey(cur.sequence_set())
    word = cur.word("search key")
    simple = _NO_ARGUMENT_KEYS.get(word)
    if simple is not None:
        return simple
    if word not in _ARGUMENT_KEYS:
        raise cur.error(f"unknown search key {word}")
    cur.sp()
    date_key = _DATE_KEYS.get(word)
    if date_key is not None:
        return s.DateKey(date_key[0], date_key[1], cur.date())
    if word in s.STRING_FIELDS:
        return s.StringKey(word, _decoded(cur, cur.astring(), codec))
    if word in ("KEYWORD", "UNKEYWORD"):
        return s.FlagKey(cur.atom("keyword").decode("ascii"), word == "KEYWORD")
    if word == "HEADER":
        name = cur.ascii_astring("header field name")
        cur.sp()
        return s.HeaderKey(name, _decoded(cur, cur.astring(), codec))
    if word in ("LARGER", "SMALLER"):
        return s.SizeKey(word == "LARGER", cur.number64())
    if word == "UID":
        return s.SequenceKey(cur.sequence_set(), uid=True)
    if word == "NOT":
        return s.Not(_search_key(cur, codec))
    if word == "OR":
        left = _search_key(cur, codec)
        cur.sp()
        return s.Or(left, _search_key(cur, codec))
    if word == "MODSEQ":
        return _modseq_key(cur)
    if word in ("OLDER", "YOUNGER"):
        return s.WithinKey(word == "OLDER", cur.number(nonzero=True))
    if word in ("EMAILID", "THREADID"):
        object_id = cur.take(_OBJECTID_CHARS)
        if not 1 <= len(object_id) <= 255:
            raise cur.error("invalid object id")
        return s.ObjectIdKey(word == "THREADID", object_id.decode("ascii"))
    raise AssertionError(word)  # pragma: no cover - _ARGUMENT_KEYS lists the cases above


def _modseq_key(cur: _Cursor) -> s.SearchKey:
    # RFC 7162 §3.1.5: "MODSEQ" [SP entry-name SP entry-type-req] SP mod-sequence-valzer.
    entry = entry_type = None
    if cur.peek() == 0x22:
        name = cur.quoted()
        if not name.lower().startswith(b"/flags/") or not name.isascii() or len(name) == 7:
            raise cur.error("MODSEQ entry name must be /flags/<flag>")
        entry = name[7:].decode("ascii")
        cur.sp()
        entry_type = cur.word("entry type").lower()
        if entry_type not in ("priv", "shared", "all"):
            raise cur.error("MODSEQ entry type must be priv, shared or all")
        cur.sp()
    return s.ModSeqKey(cur.number64(), entry, entry_type)


# -- dispatch -----------------------------------------------------------------------------

_Parser = Callable[[_Cursor, str], c.Command]

_COMMANDS: Final[dict[str, _Parser]] = {
    "CAPABILITY": _no_arguments(c.Capability),
    "NOOP": _no_arguments(c.Noop),
    "LOGOUT": _no_arguments(c.Logout),
    "STARTTLS": _no_arguments(c.StartTLS),
    "NAMESPACE": _no_arguments(c.Namespace),
    "IDLE": _no_arguments(c.Idle),
    "CHECK": _no_arguments(c.Check),
    "CLOSE": _no_arguments(c.Close),
    "UNSELECT": _no_arguments(c.Unselect),
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "ENABLE": _enable,
    "SELECT": _select(read_only=False),
    "EXAMINE": _select(read_only=True),
    "CREATE": _create,
    "DELETE": _one_mailbox(c.Delete),
    "RENAME": _rename,
    "SUBSCRIBE": _one_mailbox(c.Subscribe),
    "UNSUBSCRIBE": _one_mailbox(c.Unsubscribe),
    "LIST": _list,
    "LSUB": _lsub,
    "STATUS": _status,
    "APPEND": _append,
    "REPLACE": _replace(uid=False),
    "EXPUNGE": _expunge,
    "SEARCH": _search(uid=False),
    "SORT": _sort(uid=False),
    "THREAD": _thread(uid=False),
    "FETCH": _fetch(uid=False),
    "STORE": _store(uid=False),
    "COPY": _copy_or_move(c.Copy, uid=False),
    "MOVE": _copy_or_move(c.Move, uid=False),
    "ID": _id,
    "COMPRESS": _compress,
    "NOTIFY": _notify,
    "GETQUOTA": _getquota,
    "GETQUOTAROOT": _one_mailbox(c.GetQuotaRoot),
    "SETQUOTA": _setquota,
    "GETMETADATA": _getmetadata,
    "SETMETADATA": _setmetadata,
    "SETACL": _setacl,
    "DELETEACL": _mailbox_identifier(c.DeleteAcl),
    "GETACL": _one_mailbox(c.GetAcl),
    "LISTRIGHTS": _mailbox_identifier(c.ListRights),
    "MYRIGHTS": _one_mailbox(c.MyRights),
}
#: RFC 9051 §6.4.9 UID command, with RFC 4315 UID EXPUNGE, RFC 6851 UID MOVE, RFC 5256,
#: RFC 8508 §3.3 UID REPLACE.
_UID_COMMANDS: Final[dict[str, _Parser]] = {
    "COPY": _copy_or_move(c.Copy, uid=True),
    "MOVE": _copy_or_move(c.Move, uid=True),
    "FETCH": _fetch(uid=True),
    "SEARCH": _search(uid=True),
    "STORE": _store(uid=True),
    "EXPUNGE": _uid_expunge,
    "SORT": _sort(uid=True),
    "THREAD": _thread(uid=True),
    "REPLACE": _replace(uid=True),  # RFC 8508 §3.3
}


def read_tag(data: bytes) -> str | None:
    """The tag at the start of a command line, or None if there is no valid one.

    The lexer uses it to tag an early rejection (literal too large) before the command is whole.
    """
    end = 0
    length = len(data)
    while end < length and data[end] in strings.TAG_CHARS:
        end += 1
    if end == 0 or (end < length and data[end] != 0x20):
        return None
    return data[:end].decode("ascii")


def is_idle_done(data: bytes) -> bool:
    """Whether a line received during IDLE is the ``DONE`` that ends it (RFC 9051 §6.3.13)."""
    return data.upper() == b"DONE"


def parse_sasl_response(data: bytes) -> bytes | None:
    """A client line during AUTHENTICATE (RFC 9051 §6.2.2): the decoded response, or None when
    the client cancels with ``*``; :class:`ParseError` (untagged) if it is not base64."""
    if data == b"*":
        return None
    try:
        return binascii.a2b_base64(data, strict_mode=True) if data else b""
    except binascii.Error:
        raise ParseError("SASL response is not base64") from None


def parse_command(
    data: bytes, *, utf8: bool = False, max_depth: int = DEFAULT_MAX_DEPTH
) -> c.Command:
    """Parse one command (without its final CRLF) or raise :class:`ParseError`.

    ``utf8`` is True once UTF-8 is in use (``ENABLE UTF8=ACCEPT`` or ``ENABLE IMAP4rev2``):
    mailbox names are then UTF-8 instead of modified UTF-7 (RFC 9051 §5.1, RFC 9755 §3).
    """
    tag = read_tag(data)
    if tag is None:
        raise ParseError("missing or invalid tag")
    cur = _Cursor(data, utf8=utf8, max_depth=max_depth)
    cur.pos = len(tag)
    try:
        cur.sp()
        name = cur.word("command name")
        table = _COMMANDS
        if name == "UID":
            cur.sp()
            name = cur.word("command name")
            table = _UID_COMMANDS
        parser = table.get(name)
        if parser is None:
            raise ParseError(f"unknown command {'UID ' if table is _UID_COMMANDS else ''}{name}")
        command = parser(cur, tag)
        cur.end()
    except ParseError as exc:
        raise exc.with_tag(tag) from None
    except ValueError as exc:  # a value object's own invariant (e.g. a Section's)
        raise ParseError(str(exc), tag=tag) from None
    return command
