"""Every IMAP command the server understands, as a frozen value, and its wire form.

One dataclass per command (RFC 9051 §6, RFC 3501 §6 and the extensions in ``parser``), each
carrying its ``tag``. Commands with a UID form carry ``uid``. Mailbox names are Unicode
``str`` — already decoded from modified UTF-7 or UTF-8 by the parser, with every case variant
of INBOX spelled ``INBOX`` (RFC 9051 §5.1). Credentials stay ``bytes``: only the
authenticator knows how to read them.

:func:`format_command` is the inverse of :func:`pillarbox.imap.parser.parse_command` (the
property tests hold it to ``parse(format(cmd)) == cmd``); a client may use it to send commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from pillarbox.imap import mutf7, strings
from pillarbox.imap.dates import format_date_time
from pillarbox.imap.fetch import FetchAtt, format_atts
from pillarbox.imap.search import SearchKey, format_program
from pillarbox.imap.sequence import SequenceSet
from pillarbox.store.types import FlagOp

#: STATUS data items (RFC 9051 §6.3.11; RECENT: RFC 3501; HIGHESTMODSEQ: RFC 7162 §3.1.8;
#: APPENDLIMIT: RFC 7889 §3.2; SIZE: RFC 8438; DELETED-STORAGE: RFC 9208 §4.3;
#: MAILBOXID: RFC 8474 §4.2).
STATUS_ITEMS: Final = frozenset(
    {
        "MESSAGES",
        "UIDNEXT",
        "UIDVALIDITY",
        "UNSEEN",
        "DELETED",
        "SIZE",
        "RECENT",
        "HIGHESTMODSEQ",
        "APPENDLIMIT",
        "DELETED-STORAGE",
        "MAILBOXID",
    }
)
#: LIST selection options (RFC 5258 §3.1, RFC 6154 §3).
LIST_SELECTION: Final = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
#: LIST return options other than STATUS (RFC 5258 §3.2, RFC 6154 §3; STATUS: RFC 5819).
LIST_RETURN: Final = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE"})
#: ESEARCH return options (RFC 4731 §3.1, RFC 5182 §2 for SAVE).
SEARCH_RETURN: Final = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})
#: ESORT return options (RFC 5267 §3.1; SAVE of a sort result is not offered).
SORT_RETURN: Final = frozenset({"MIN", "MAX", "ALL", "COUNT"})
#: NOTIFY mailbox filters (RFC 5465 §6); the first two name the selected mailbox (§6.1).
NOTIFY_SELECTED: Final = frozenset({"SELECTED", "SELECTED-DELAYED"})
NOTIFY_FILTERS: Final = NOTIFY_SELECTED | {"INBOXES", "PERSONAL", "SUBSCRIBED"}
#: ... and the two that take mailbox names (RFC 5465 §6.5, §6.6).
NOTIFY_NAMED_FILTERS: Final = frozenset({"SUBTREE", "MAILBOXES"})
#: RFC 5465 §8 event names as the RFC spells them (matched case-insensitively).
NOTIFY_EVENTS: Final = (
    "MessageNew",
    "MessageExpunge",
    "FlagChange",
    "AnnotationChange",
    "MailboxName",
    "SubscriptionChange",
    "MailboxMetadataChange",
    "ServerMetadataChange",
)
#: SORT keys (RFC 5256 §3; DISPLAYFROM/DISPLAYTO: RFC 5957 §3).
SORT_KEYS: Final = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)


@dataclass(frozen=True, slots=True)
class Capability:
    tag: str


@dataclass(frozen=True, slots=True)
class Noop:
    tag: str


@dataclass(frozen=True, slots=True)
class Logout:
    tag: str


@dataclass(frozen=True, slots=True)
class StartTLS:
    tag: str


@dataclass(frozen=True, slots=True)
class Authenticate:
    """``initial_response`` is the RFC 4959 token as sent: base64, or ``b"="`` for empty."""

    tag: str
    mechanism: str
    initial_response: bytes | None = None


@dataclass(frozen=True, slots=True)
class Login:
    tag: str
    userid: bytes
    password: bytes


@dataclass(frozen=True, slots=True)
class Enable:
    """ENABLE (RFC 5161 §3.1); capability names uppercased."""

    tag: str
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Qresync:
    """The QRESYNC select parameter (RFC 7162 §3.2.5)."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    seq_match: tuple[SequenceSet, SequenceSet] | None = None


@dataclass(frozen=True, slots=True)
class Select:
    """SELECT, or EXAMINE when ``read_only``; CONDSTORE/QRESYNC parameters (RFC 7162 §3)."""

    tag: str
    mailbox: str
    read_only: bool = False
    condstore: bool = False
    qresync: Qresync | None = None


@dataclass(frozen=True, slots=True)
class Create:
    """CREATE, with the RFC 6154 §3 ``USE (...)`` special-use attributes if given."""

    tag: str
    mailbox: str
    special_use: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Delete:
    tag: str
    mailbox: str


@dataclass(frozen=True, slots=True)
class Rename:
    tag: str
    mailbox: str
    new_name: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    tag: str
    mailbox: str


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    tag: str
    mailbox: str


@dataclass(frozen=True, slots=True)
class List:
    """LIST, basic or extended (RFC 9051 §6.3.9, RFC 5258).

    ``return_status`` is the RFC 5819 ``STATUS (...)`` return option's items, None if absent.
    ``extended`` is True when the command used any extended syntax (a selection list, several
    patterns or a RETURN list, even empty), which the response format depends on.
    """

    tag: str
    reference: str
    patterns: tuple[str, ...]
    selection: frozenset[str] = frozenset()
    return_options: frozenset[str] = frozenset()
    return_status: tuple[str, ...] | None = None
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Lsub:
    """LSUB (RFC 3501 §6.3.9; gone from IMAP4rev2)."""

    tag: str
    reference: str
    pattern: str


@dataclass(frozen=True, slots=True)
class Namespace:
    tag: str


@dataclass(frozen=True, slots=True)
class Status:
    """STATUS; ``items`` uppercased, in the order asked (the response keeps it)."""

    tag: str
    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of a (MULTI)APPEND (RFC 3502 §6.3.11, RFC 4466 §2.1).

    ``binary`` if sent as ``literal8`` (RFC 3516 §4.4); ``utf8`` if wrapped in the RFC 6855
    ``UTF8 (...)`` data item, which RFC 9755 Appendix B.1 withdrew but which clients still send.
    """

    data: bytes
    flags: tuple[str, ...] = ()
    internal_date: datetime | None = None
    binary: bool = False
    utf8: bool = False


@dataclass(frozen=True, slots=True)
class Append:
    tag: str
    mailbox: str
    messages: tuple[AppendMessage, ...]


@dataclass(frozen=True, slots=True)
class Replace:
    """REPLACE / UID REPLACE (RFC 8508 §3.2, §3.3): ``message`` (one message, as one of an
    APPEND's) takes the place of the selected mailbox's message ``target`` — one
    ``seq-number``, a message number or UID, ``*`` allowed (§5 ABNF) — stored in ``mailbox``."""

    tag: str
    target: SequenceSet
    mailbox: str
    message: AppendMessage
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Idle:
    tag: str


@dataclass(frozen=True, slots=True)
class Check:
    """CHECK (RFC 3501 §6.4.1; gone from IMAP4rev2, where it is a NOOP)."""

    tag: str


@dataclass(frozen=True, slots=True)
class Close:
    tag: str


@dataclass(frozen=True, slots=True)
class Unselect:
    tag: str


@dataclass(frozen=True, slots=True)
class Expunge:
    """EXPUNGE, or UID EXPUNGE (RFC 9051 §6.4.9, RFC 4315 §2.1) when ``uids`` is given."""

    tag: str
    uids: SequenceSet | None = None


@dataclass(frozen=True, slots=True)
class Search:
    """SEARCH / UID SEARCH.

    ``return_options`` is None for a plain SEARCH (answered with ``* SEARCH``) and the set of
    ESEARCH options otherwise (RFC 4731 §3.1; an empty set means ALL). ``charset`` is the
    CHARSET argument uppercased, None if absent; string keys are already decoded with it.
    """

    tag: str
    key: SearchKey
    charset: str | None = None
    uid: bool = False
    return_options: frozenset[str] | None = None
    #: RFC 9394 §3.1 ``PARTIAL``: positions (1-based) in the result, counted from its end when
    #: negative (``(-1, -100)``: the last hundred), the ends as the client wrote them (the
    #: response echoes "the original range"; :func:`~pillarbox.imap.session.partial_window`
    #: reads either order).
    partial: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class SortCriterion:
    key: str
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class Sort:
    """SORT / UID SORT (RFC 5256 §3); CHARSET is mandatory there. ``return_options`` is None
    for a plain SORT, else the ESORT options (RFC 5267 §3: ``SORT RETURN (...)``)."""

    tag: str
    criteria: tuple[SortCriterion, ...]
    charset: str
    key: SearchKey
    uid: bool = False
    return_options: frozenset[str] | None = None
    #: RFC 5267 §4.4 ``PARTIAL``, as :attr:`Search.partial`, in the sorted result (RFC 9394).
    partial: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Thread:
    """THREAD / UID THREAD (RFC 5256 §3); ``algorithm`` uppercased."""

    tag: str
    algorithm: str
    charset: str
    key: SearchKey
    uid: bool = False


@dataclass(frozen=True, slots=True)
class NotifyGroup:
    """One RFC 5465 event group: a mailbox filter and its events.

    ``filter`` is uppercased (:data:`NOTIFY_FILTERS` or :data:`NOTIFY_NAMED_FILTERS`, the
    latter with ``mailboxes``); ``events`` are spelled as in :data:`NOTIFY_EVENTS` when known,
    any other atom uppercased (``event-ext``, refused later with BADEVENT); an empty tuple is
    ``NONE``. ``fetch_atts`` are MessageNew's attributes (§5.2).
    """

    filter: str
    events: tuple[str, ...]
    mailboxes: tuple[str, ...] = ()
    fetch_atts: tuple[FetchAtt, ...] = ()


@dataclass(frozen=True, slots=True)
class Notify:
    """NOTIFY SET [STATUS] groups, or NOTIFY NONE when ``groups`` is None (RFC 5465 §3.1)."""

    tag: str
    groups: tuple[NotifyGroup, ...] | None
    status: bool = False


@dataclass(frozen=True, slots=True)
class Fetch:
    """FETCH / UID FETCH with the RFC 7162 §3.1.4/§3.2.6 modifiers and RFC 9394's PARTIAL
    (positions among the messages the set names, as :attr:`Search.partial`)."""

    tag: str
    sequence: SequenceSet
    atts: tuple[FetchAtt, ...]
    uid: bool = False
    changed_since: int | None = None
    vanished: bool = False
    partial: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Store:
    """STORE / UID STORE; ``unchanged_since`` is the RFC 7162 §3.1.3 modifier."""

    tag: str
    sequence: SequenceSet
    mode: FlagOp
    flags: tuple[str, ...]
    silent: bool = False
    uid: bool = False
    unchanged_since: int | None = None


@dataclass(frozen=True, slots=True)
class Copy:
    tag: str
    sequence: SequenceSet
    mailbox: str
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Move:
    """MOVE / UID MOVE (RFC 6851 §3)."""

    tag: str
    sequence: SequenceSet
    mailbox: str
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Id:
    """ID (RFC 2971 §3.1): field/value pairs, or None for ``ID NIL``."""

    tag: str
    params: tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True, slots=True)
class Compress:
    """COMPRESS (RFC 4978 §3); ``mechanism`` uppercased (only DEFLATE is defined)."""

    tag: str
    mechanism: str


@dataclass(frozen=True, slots=True)
class GetQuota:
    tag: str
    root: str


@dataclass(frozen=True, slots=True)
class GetQuotaRoot:
    tag: str
    mailbox: str


@dataclass(frozen=True, slots=True)
class SetQuota:
    """SETQUOTA (RFC 9208 §4.3): resource names uppercased, with their limits."""

    tag: str
    root: str
    limits: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class SetAcl:
    """SETACL (RFC 4314 §3.1): ``rights`` as sent, with its "+" or "-" modifier if any."""

    tag: str
    mailbox: str
    identifier: str
    rights: str


@dataclass(frozen=True, slots=True)
class DeleteAcl:
    """DELETEACL (RFC 4314 §3.2)."""

    tag: str
    mailbox: str
    identifier: str


@dataclass(frozen=True, slots=True)
class GetAcl:
    """GETACL (RFC 4314 §3.3)."""

    tag: str
    mailbox: str


@dataclass(frozen=True, slots=True)
class ListRights:
    """LISTRIGHTS (RFC 4314 §3.4)."""

    tag: str
    mailbox: str
    identifier: str


@dataclass(frozen=True, slots=True)
class MyRights:
    """MYRIGHTS (RFC 4314 §3.5)."""

    tag: str
    mailbox: str


@dataclass(frozen=True, slots=True)
class GetMetadata:
    """GETMETADATA (RFC 5464 §4.2): ``mailbox`` "" names the server; ``entries`` are
    canonical (:func:`pillarbox.imap.metadata.entry_name`); ``depth`` None is "infinity"."""

    tag: str
    mailbox: str
    entries: tuple[str, ...]
    maxsize: int | None = None
    depth: int | None = 0


@dataclass(frozen=True, slots=True)
class SetMetadata:
    """SETMETADATA (RFC 5464 §4.3): (entry, value) pairs, None to remove the entry."""

    tag: str
    mailbox: str
    entries: tuple[tuple[str, bytes | None], ...]


Command = (
    Capability
    | Noop
    | Logout
    | StartTLS
    | Authenticate
    | Login
    | Enable
    | Select
    | Create
    | Delete
    | Rename
    | Subscribe
    | Unsubscribe
    | List
    | Lsub
    | Namespace
    | Status
    | Append
    | Replace
    | Idle
    | Check
    | Close
    | Unselect
    | Expunge
    | Search
    | Sort
    | Thread
    | Notify
    | Fetch
    | Store
    | Copy
    | Move
    | Id
    | Compress
    | GetQuota
    | GetQuotaRoot
    | SetQuota
    | GetMetadata
    | SetMetadata
    | SetAcl
    | DeleteAcl
    | GetAcl
    | ListRights
    | MyRights
)

_NO_ARGUMENTS: Final = {
    Capability: b"CAPABILITY",
    Noop: b"NOOP",
    Logout: b"LOGOUT",
    StartTLS: b"STARTTLS",
    Namespace: b"NAMESPACE",
    Idle: b"IDLE",
    Check: b"CHECK",
    Close: b"CLOSE",
    Unselect: b"UNSELECT",
}
_ONE_MAILBOX: Final = {
    Delete: b"DELETE",
    Subscribe: b"SUBSCRIBE",
    Unsubscribe: b"UNSUBSCRIBE",
    GetQuotaRoot: b"GETQUOTAROOT",
    GetAcl: b"GETACL",
    MyRights: b"MYRIGHTS",
}


def encode_mailbox(name: str, *, utf8: bool = False) -> bytes:
    """A mailbox name as an astring: UTF-8 after ENABLE UTF8=ACCEPT / IMAP4rev2 (RFC 9755 §3),
    modified UTF-7 otherwise (RFC 3501 §5.1.3)."""
    if utf8:
        return strings.astring(name.encode("utf-8"), utf8=True)
    return strings.astring(mutf7.encode(name).encode("ascii"))


def _pattern(name: str, *, utf8: bool) -> bytes:
    raw = name.encode("utf-8") if utf8 else mutf7.encode(name).encode("ascii")
    if strings.only(raw, strings.LIST_CHARS) and raw:
        return raw
    return strings.string(raw, utf8=utf8)


def _flags(flags: tuple[str, ...]) -> bytes:
    return b"(" + b" ".join(flag.encode("ascii") for flag in flags) + b")"


def _status_items(items: tuple[str, ...]) -> bytes:
    return b"(" + " ".join(items).encode("ascii") + b")"


def _append_message(message: AppendMessage, *, literal_plus: bool) -> bytes:
    """RFC 4466 §2.1 ``append-message``: flags, date and data, space-separated."""
    parts = []
    if message.flags:
        parts.append(_flags(message.flags))
    if message.internal_date is not None:
        parts.append(format_date_time(message.internal_date))
    form = strings.literal8 if message.binary else strings.literal
    data = form(message.data, non_sync=literal_plus)
    parts.append(b"UTF8 (" + data + b")" if message.utf8 else data)
    return b" ".join(parts)


def _return(options: frozenset[str], partial: tuple[int, int] | None) -> bytes:
    """``RETURN (…)`` of SEARCH and SORT, with RFC 9394's ``PARTIAL range`` last."""
    words = sorted(options)
    if partial is not None:
        words.append(f"PARTIAL {partial[0]}:{partial[1]}")
    return b"RETURN (" + " ".join(words).encode("ascii") + b")"


def _uid(command: bytes, uid: bool) -> bytes:
    return b"UID " + command if uid else command


def _body(cmd: Command, *, utf8: bool, literal_plus: bool) -> bytes:
    """Everything after ``tag SP``."""
    keyword = _NO_ARGUMENTS.get(type(cmd))
    if keyword is not None:
        return keyword
    keyword = _ONE_MAILBOX.get(type(cmd))
    if keyword is not None:
        return keyword + b" " + encode_mailbox(cmd.mailbox, utf8=utf8)  # type: ignore[union-attr]

    def mailbox(value: str) -> bytes:
        return encode_mailbox(value, utf8=utf8)

    match cmd:
        case Authenticate(mechanism=mechanism, initial_response=initial):
            out = b"AUTHENTICATE " + mechanism.encode("ascii")
            return out + b" " + initial if initial is not None else out
        case Login(userid=userid, password=password):
            return b"LOGIN " + strings.astring(userid) + b" " + strings.astring(password)
        case Enable(capabilities=capabilities):
            return b"ENABLE " + " ".join(capabilities).encode("ascii")
        case Select(mailbox=name, read_only=read_only, condstore=condstore, qresync=qresync):
            out = (b"EXAMINE " if read_only else b"SELECT ") + mailbox(name)
            params = [b"CONDSTORE"] if condstore else []
            if qresync is not None:
                params.append(_qresync(qresync))
            return out + b" (" + b" ".join(params) + b")" if params else out
        case Create(mailbox=name, special_use=special_use):
            out = b"CREATE " + mailbox(name)
            return out + b" (USE " + _flags(special_use) + b")" if special_use else out
        case Rename(mailbox=name, new_name=new_name):
            return b"RENAME " + mailbox(name) + b" " + mailbox(new_name)
        case List():
            return _list(cmd, utf8=utf8)
        case Lsub(reference=reference, pattern=pattern):
            return b"LSUB " + mailbox(reference) + b" " + _pattern(pattern, utf8=utf8)
        case Status(mailbox=name, items=items):
            return b"STATUS " + mailbox(name) + b" " + _status_items(items)
        case Append(mailbox=name, messages=messages):
            parts = [b"APPEND " + mailbox(name)]
            parts.extend(_append_message(m, literal_plus=literal_plus) for m in messages)
            return b" ".join(parts)
        case Replace(target=target, mailbox=name, message=message, uid=uid):
            out = b"REPLACE " + target.format() + b" " + mailbox(name) + b" "
            return _uid(out + _append_message(message, literal_plus=literal_plus), uid)
        case Expunge(uids=uids):
            return b"EXPUNGE" if uids is None else b"UID EXPUNGE " + uids.format()
        case Search(key=key, charset=charset, uid=uid, return_options=options, partial=partial):
            out = b"SEARCH"
            if options is not None:
                out += b" " + _return(options, partial)
            if charset is not None:
                out += b" CHARSET " + strings.astring(charset.encode("ascii"))
            program = format_program(key, utf8=utf8, charset=charset or "utf-8")
            return _uid(out + b" " + program, uid)
        case Sort(
            criteria=criteria,
            charset=charset,
            key=key,
            uid=uid,
            return_options=options,
            partial=partial,
        ):
            sort = " ".join(("REVERSE " if c.reverse else "") + c.key for c in criteria)
            program = format_program(key, utf8=utf8, charset=charset)
            out = b"SORT "
            if options is not None:
                out += _return(options, partial) + b" "
            out += b"(%s) %s %s" % (sort.encode("ascii"), charset.encode("ascii"), program)
            return _uid(out, uid)
        case Thread(algorithm=algorithm, charset=charset, key=key, uid=uid):
            program = format_program(key, utf8=utf8, charset=charset)
            out = b"THREAD %s %s %s" % (algorithm.encode("ascii"), charset.encode("ascii"), program)
            return _uid(out, uid)
        case Fetch(sequence=sequence, atts=atts, uid=uid, changed_since=since, vanished=vanished):
            out = b"FETCH " + sequence.format() + b" " + format_atts(atts)
            modifiers = [] if since is None else [b"CHANGEDSINCE %d" % since]
            if vanished:
                modifiers.append(b"VANISHED")
            if cmd.partial is not None:
                modifiers.append(b"PARTIAL %d:%d" % cmd.partial)
            if modifiers:
                out += b" (" + b" ".join(modifiers) + b")"
            return _uid(out, uid)
        case Store(sequence=sequence, mode=mode, flags=flags, silent=silent, uid=uid):
            out = b"STORE " + sequence.format()
            if cmd.unchanged_since is not None:
                out += b" (UNCHANGEDSINCE %d)" % cmd.unchanged_since
            item = mode.value + "FLAGS" + (".SILENT" if silent else "")
            return _uid(out + b" " + item.encode("ascii") + b" " + _flags(flags), uid)
        case Copy(sequence=sequence, mailbox=name, uid=uid):
            return _uid(b"COPY " + sequence.format() + b" " + mailbox(name), uid)
        case Move(sequence=sequence, mailbox=name, uid=uid):
            return _uid(b"MOVE " + sequence.format() + b" " + mailbox(name), uid)
        case Id(params=params):
            if params is None:
                return b"ID NIL"
            pairs = (strings.string(k) + b" " + strings.nstring(v) for k, v in params)
            return b"ID (" + b" ".join(pairs) + b")"
        case Notify(groups=groups, status=status):
            if groups is None:
                return b"NOTIFY NONE"
            out = b"NOTIFY SET STATUS" if status else b"NOTIFY SET"
            return out + b"".join(b" " + _notify_group(g, utf8=utf8) for g in groups)
        case Compress(mechanism=mechanism):
            return b"COMPRESS " + mechanism.encode("ascii")
        case GetQuota(root=root):
            return b"GETQUOTA " + strings.astring(root)
        case SetQuota(root=root, limits=limits):
            resources = b" ".join(b"%s %d" % (n.encode("ascii"), v) for n, v in limits)
            return b"SETQUOTA " + strings.astring(root) + b" (" + resources + b")"
        case GetMetadata(mailbox=name, entries=entries, maxsize=maxsize, depth=depth):
            out = b"GETMETADATA "
            wanted = [] if maxsize is None else [b"MAXSIZE %d" % maxsize]
            if depth != 0:
                wanted.append(b"DEPTH " + (b"infinity" if depth is None else b"%d" % depth))
            if wanted:
                out += b"(" + b" ".join(wanted) + b") "
            names = [strings.astring(entry) for entry in entries]
            listed = names[0] if len(names) == 1 else b"(" + b" ".join(names) + b")"
            return out + mailbox(name) + b" " + listed
        case SetMetadata(mailbox=name, entries=pairs):
            values = (
                strings.astring(entry)
                + b" "
                + (
                    strings.NIL
                    if value is None
                    else strings.literal8(value, non_sync=literal_plus)
                    if b"\x00" in value
                    else strings.string(value, utf8=utf8)
                )
                for entry, value in pairs
            )
            return b"SETMETADATA " + mailbox(name) + b" (" + b" ".join(values) + b")"
        case SetAcl(mailbox=name, identifier=identifier, rights=rights):
            ident = strings.astring(identifier, utf8=utf8)
            return (
                b"SETACL "
                + mailbox(name)
                + b" "
                + ident
                + b" "
                + strings.astring(rights, utf8=utf8)
            )
        case DeleteAcl(mailbox=name, identifier=identifier):
            return b"DELETEACL " + mailbox(name) + b" " + strings.astring(identifier, utf8=utf8)
        case ListRights(mailbox=name, identifier=identifier):
            return b"LISTRIGHTS " + mailbox(name) + b" " + strings.astring(identifier, utf8=utf8)
    raise TypeError(f"not a command: {cmd!r}")  # pragma: no cover - the match is exhaustive


def _notify_group(group: NotifyGroup, *, utf8: bool) -> bytes:
    out = group.filter.encode("ascii")
    if group.filter in NOTIFY_NAMED_FILTERS:
        names = [encode_mailbox(name, utf8=utf8) for name in group.mailboxes]
        out += b" " + (names[0] if len(names) == 1 else b"(" + b" ".join(names) + b")")
    if not group.events:
        return b"(" + out + b" NONE)"
    events = []
    for event in group.events:
        word = event.encode("ascii")
        if event == "MessageNew" and group.fetch_atts:
            word += b" " + format_atts(group.fetch_atts)
        events.append(word)
    return b"(" + out + b" (" + b" ".join(events) + b"))"


def _qresync(params: Qresync) -> bytes:
    out = b"QRESYNC (%d %d" % (params.uidvalidity, params.modseq)
    if params.known_uids is not None:
        out += b" " + params.known_uids.format()
    if params.seq_match is not None:
        known_seqs, known_uids = params.seq_match
        out += b" (" + known_seqs.format() + b" " + known_uids.format() + b")"
    return out + b")"


def _list(cmd: List, *, utf8: bool) -> bytes:
    out = [b"LIST"]
    if cmd.extended or cmd.selection:
        out.append(b"(" + " ".join(sorted(cmd.selection)).encode("ascii") + b")")
    out.append(encode_mailbox(cmd.reference, utf8=utf8))
    patterns = [_pattern(p, utf8=utf8) for p in cmd.patterns]
    out.append(patterns[0] if len(patterns) == 1 else b"(" + b" ".join(patterns) + b")")
    options = sorted(cmd.return_options)
    if cmd.return_status is not None:
        options.append("STATUS " + _status_items(cmd.return_status).decode("ascii"))
    if options:
        out.append(b"RETURN (" + " ".join(options).encode("ascii") + b")")
    return b" ".join(out)


def format_command(cmd: Command, *, utf8: bool = False, literal_plus: bool = False) -> bytes:
    """The command line(s) for ``cmd``, CRLF-terminated.

    Strings that cannot be atoms or quoted go as synchronising literals: the sender waits for
    ``+`` after each line ending in ``{n}``. APPEND message data goes as RFC 7888 ``{n+}`` when
    ``literal_plus`` (only if the server advertises LITERAL+, or LITERAL- for at most 4096
    octets). ``utf8`` says UTF-8 was enabled, for mailbox names and quoted strings.
    """
    body = _body(cmd, utf8=utf8, literal_plus=literal_plus)
    return cmd.tag.encode("ascii") + b" " + body + b"\r\n"
