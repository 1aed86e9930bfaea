"""The IMAP session: one connection's protocol state machine, IMAP4rev2 and IMAP4rev1.

Implementation notes (RFC 9051, RFC 3501 and the extensions in :mod:`.capabilities`):

- **Shape.** Sans-I/O in the sense that matters here: no sockets, no TLS, no timers, no clock.
  Bytes come in through :meth:`ImapSession.receive_data` (the session owns the framing
  :class:`~pillarbox.imap.lexer.Lexer`), responses go out through an :class:`Output` whose
  ``write`` the adapter implements with back-pressure, and time is an argument. Command
  handlers are ``async`` because they call the :class:`~pillarbox.store.interface.Store`
  Protocol directly — a session is the store's client; a "request/fulfil" indirection would
  add a second state machine for no gain in testability (tests pass a real SQLite store).
  Authentication goes through the small :class:`Authenticating` Protocol; message parsing
  (CPU-heavy) through an injected ``parse`` coroutine the adapter runs off the event loop.
- **States** (RFC 9051 §3) are a table: :data:`ALLOWED` says which commands each state
  accepts (anything else is BAD), :data:`TRANSITIONS` which (state, command, condition) moves
  where. One invariant completes it: SELECTED holds a :class:`SelectedView` and nothing else
  does — deleting the selected mailbox deselects it. Deleted by anyone else, it ends the
  session with ``BYE`` (as Dovecot; RFC 9051 has no response that deselects) wherever that is
  found: a hint naming it or saying any mailbox may be gone (``Change``), pushed at once in
  IDLE or under NOTIFY, else at the next command; a store read that finds it gone.
- **One command at a time**, in the order received (RFC 9051 §5.5 allows no more: commands
  here may affect each other). Pipelined commands wait in the lexer.
- **Mailbox views stay consistent** (:mod:`.selected`): at the start of a command in SELECTED
  state the view takes in the store's changes if the change feed hinted at any (NOOP, CHECK
  and IDLE always look); the command runs on the visible state; pending changes are
  announced after its output and before its tagged reply — EXPUNGE never for FETCH, STORE or
  SEARCH (RFC 9051 §7.5.1), no flag change its own FETCH or STORE response showed (§7.5.2).
  During IDLE the adapter calls :meth:`ImapSession.push_updates`
  whenever the feed wakes it, so updates reach an idling client at once (RFC 9051 §6.3.13).
- **IMAP4rev1 vs IMAP4rev2** (RFC 9051 Appendix E): until ``ENABLE IMAP4rev2`` the session
  speaks IMAP4rev1: \\Recent and RECENT, ``[UNSEEN n]``, ``* SEARCH``, modified UTF-7 names.
  After it: SEARCH answers ESEARCH, SELECT sends its LIST line, names and quoted strings are
  UTF-8, no \\Recent. Unsolicited FETCH always carries UID (harmless for rev1, required by
  rev2). ``ENABLE UTF8=ACCEPT`` switches only the UTF-8 part.
- **Errors.** Malformed or unknown command: tagged BAD (untagged if no tag was read); wrong
  state: BAD; a command of an extension not offered: BAD. ``max_errors`` BADs in a row end
  the connection with BYE. An oversize literal is refused by the lexer before it is read,
  with ``[TOOBIG]``. A store fault is ``NO [SERVERBUG]`` and logged; the session goes on.
- **CONDSTORE/QRESYNC** (RFC 7162). A session becomes CONDSTORE-aware at its first
  "CONDSTORE enabling command" (§3.1: ENABLE, SELECT (CONDSTORE), STATUS HIGHESTMODSEQ,
  FETCH MODSEQ/CHANGEDSINCE, SEARCH MODSEQ, STORE UNCHANGEDSINCE) and stays so: HIGHESTMODSEQ
  at every SELECT, MODSEQ in every FETCH that carries FLAGS. ``ENABLE QRESYNC`` (§3.2.3)
  implies CONDSTORE, allows SELECT (QRESYNC …) and UID FETCH (VANISHED), and turns EXPUNGE
  responses into VANISHED. The store keeps every expunged UID with its MODSEQ, so a resync
  after any disconnection is exact: seq-match (§3.2.5.2, a hint for servers that forget) is
  accepted and not needed.
- **SORT/THREAD** (RFC 5256, ESORT of RFC 5267 §3) run the SEARCH engine, then order or
  thread the matches on metadata stored at ingest (:mod:`.sort`, :mod:`.thread`).
  PARTIAL (RFC 9394) pages a SEARCH or SORT result, or the messages a FETCH set names, by
  position from either end (:func:`partial_window`).
- **REPLACE** (RFC 8508) stores one message as APPEND would and expunges the old one alone,
  in one store transaction (:meth:`Store.replace_message`): both or neither, the quota judged
  on the net change.
- **UIDONLY** (RFC 9586): once enabled, a command that names a message by number is BAD
  [UIDREQUIRED] before it runs (:func:`uidonly_refuses`); FETCH responses become
  UIDFETCH and expunges VANISHED, wherever they are made.
- **QUOTA** (RFC 9208): one quota root per account, named ``""``, with the STORAGE (KiB)
  and MESSAGE resources the account's limits set; SETQUOTA is refused (limits are the
  administrator's). An APPEND, COPY or MOVE over quota is ``NO [OVERQUOTA]``; one that
  added to an account's usage is reported to the :class:`QuotaWatch` with the usage the
  store's write returned (quota warnings), after it is stored and before its ``OK``.
- **COMPRESS=DEFLATE** (RFC 4978): the core answers and returns
  :attr:`Action.START_COMPRESS`; the adapter puts the :mod:`.compress` streams under TLS.
- **METADATA** (RFC 5464, :mod:`.metadata`): GETMETADATA and SETMETADATA on a mailbox or,
  with the name "", on the server entries (kept per account); the limits are the store's, in
  the write's transaction, so two sessions cannot pass them together. ENABLE METADATA turns
  nothing on: unsolicited METADATA responses (§4.4.2) go out only for NOTIFY's
  MailboxMetadataChange and ServerMetadataChange (RFC 5465 §5.6, §5.7).
- **ACL** (RFC 4314, :mod:`.acl`): another user's mailbox is named
  ``Other Users/<address>/<name>`` (RFC 2342 §5); :meth:`ImapSession._locate` resolves a name
  to the store's (account, name) with the user's rights (negative entries subtracted, §2:
  ``aclrows.effective_rights``), and answers for a mailbox the user may not see exactly as
  for one that does not exist (§4). Rights are read at SELECT and kept
  on the view (§5.1.1 allows it); the adapter adds the selected shared mailbox to the change
  feed (:attr:`ImapSession.watched_mailbox`), so IDLE hears the owner's changes. A STORE
  changes only the flags the rights cover and keeps the others, in the store's transaction
  (§4: it "SHOULD NOT fail" if one flag may change); NO [NOPERM] when none may.
- **NOTIFY** (RFC 5465, :mod:`.notify`): once used, :meth:`ImapSession.push_updates` sends
  exactly the events the client asked for, whether it idles or not (§3.1, §4), and the
  adapter calls it whenever :attr:`ImapSession.wants_push`. Before any NOTIFY only IDLE
  pushes, and only the selected mailbox's changes (§3.1). What a command itself announces at
  its end is base IMAP and does not depend on NOTIFY; flag changes of the selected mailbox go
  out with its other pushed events even when FlagChange was not asked for.
"""

from __future__ import annotations

import binascii
import contextlib
import dataclasses
import enum
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from pillarbox.auth.authenticating import Authenticating, LoggedIn, SaslExchange
from pillarbox.auth.sasl import Challenge, UnsupportedMechanism
from pillarbox.errors import (
    AlreadyExists,
    AuthenticationFailed,
    InvalidName,
    NotFound,
    QuotaExceeded,
    RateLimited,
    StorageError,
    TooManyEntries,
)
from pillarbox.imap import acl, responses
from pillarbox.imap import commands as c
from pillarbox.imap import metadata as md
from pillarbox.imap import replies as r
from pillarbox.imap.capabilities import ENABLEABLE, capabilities
from pillarbox.imap.errors import ParseError
from pillarbox.imap.fetch import FetchItem
from pillarbox.imap.fetchengine import FetchEngine, Output
from pillarbox.imap.lexer import CommandReady, ContinueLiteral, Fatal, Lexer, LexerLimits
from pillarbox.imap.listing import NOSELECT, list_mailboxes, list_subscribed
from pillarbox.imap.notify import OK_NOTIFY, Notifier, NotifyRefused, plan
from pillarbox.imap.objectid import mailbox_id
from pillarbox.imap.parser import is_idle_done, parse_command, parse_sasl_response
from pillarbox.imap.responses import Code, Condition, Reply
from pillarbox.imap.search import SearchKey
from pillarbox.imap.searchengine import (
    INFO_BATCH,
    SearchEngine,
    uses_message_numbers,
    uses_modseq,
)
from pillarbox.imap.selected import SelectedView
from pillarbox.imap.sequence import SequenceSet
from pillarbox.imap.sort import needs_metadata, sort_uids
from pillarbox.imap.thread import ALGORITHMS, renumber, thread_message
from pillarbox.mail.model import MessageInfo
from pillarbox.policy import learning
from pillarbox.store.aclrows import (
    allowed_flags,
    canonical_rights,
    effective_rights,
    flag_right,
    flags_after,
)
from pillarbox.store.interface import Store
from pillarbox.store.types import (
    DELIMITER,
    INBOX,
    Account,
    Change,
    ChangeKind,
    FlagOp,
    Mailbox,
    MessageRecord,
    MetadataLimits,
    QuotaUsage,
    SpecialUse,
)

__all__ = [
    "ALLOWED",
    "TRANSITIONS",
    "Action",
    "Authenticating",
    "ImapSession",
    "Output",
    "SessionSettings",
    "State",
    "normalise_line_endings",
]


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


class Action(enum.Enum):
    """What the adapter must do after feeding data."""

    CONTINUE = "continue"
    START_TLS = "start-tls"  # handshake now, then call :meth:`ImapSession.tls_started`
    CLOSE = "close"  # everything to send has been written; close the connection
    #: Compress from the next octet on (RFC 4978 §3); call :meth:`ImapSession.compression_started`.
    START_COMPRESS = "start-compress"


_ANY: Final = frozenset({c.Capability, c.Noop, c.Logout, c.Id})
_AUTHENTICATED: Final = _ANY | {
    c.Enable,
    c.Select,
    c.Create,
    c.Delete,
    c.Rename,
    c.Subscribe,
    c.Unsubscribe,
    c.List,
    c.Lsub,
    c.Namespace,
    c.Status,
    c.Append,
    c.Idle,
    c.GetQuota,
    c.GetQuotaRoot,
    c.SetQuota,
    c.Compress,
    c.Notify,
    c.GetMetadata,
    c.SetMetadata,
    c.SetAcl,
    c.DeleteAcl,
    c.GetAcl,
    c.ListRights,
    c.MyRights,
}
#: RFC 9051 §6: the commands each state accepts. ENABLE is for the authenticated state only
#: (RFC 5161 §3.1); CHECK stays for IMAP4rev1 clients (RFC 3501 §6.4.1).
ALLOWED: Final[dict[State, frozenset[type]]] = {
    State.NOT_AUTHENTICATED: _ANY | {c.StartTLS, c.Authenticate, c.Login},
    State.AUTHENTICATED: _AUTHENTICATED,
    State.SELECTED: (_AUTHENTICATED - {c.Enable})
    | {c.Check, c.Close, c.Unselect, c.Expunge, c.Search, c.Fetch, c.Store, c.Copy, c.Move}
    | {c.Sort, c.Thread, c.Replace},
    State.LOGOUT: frozenset(),
}

_OK, _NO = Condition.OK, Condition.NO
#: (state, command, condition of its tagged reply) → next state; absent means unchanged.
TRANSITIONS: Final[dict[tuple[State, type, Condition], State]] = {
    (State.NOT_AUTHENTICATED, c.Login, _OK): State.AUTHENTICATED,
    (State.NOT_AUTHENTICATED, c.Authenticate, _OK): State.AUTHENTICATED,
    (State.AUTHENTICATED, c.Select, _OK): State.SELECTED,
    (State.SELECTED, c.Select, _NO): State.AUTHENTICATED,  # RFC 9051 §6.3.2
    (State.SELECTED, c.Close, _OK): State.AUTHENTICATED,
    (State.SELECTED, c.Unselect, _OK): State.AUTHENTICATED,
    **{(state, c.Logout, _OK): State.LOGOUT for state in State if state is not State.LOGOUT},
}

#: Commands that look for changes even without a hint from the change feed (RFC 9051 §6.1.2;
#: RFC 5465 §3.1: NOTIFY implies a NOOP).
_POLLING: Final = frozenset({c.Noop, c.Check, c.Idle, c.Notify})
#: Commands that leave the selected mailbox: what happened to it no longer matters.
_LEAVING: Final = frozenset({c.Select, c.Close, c.Unselect, c.Logout})
#: RFC 9051 §7.5.1, RFC 5256 §3: no EXPUNGE while these (non-UID) commands are in progress.
_NO_EXPUNGE: Final = frozenset({c.Fetch, c.Store, c.Search, c.Sort, c.Thread})
#: RFC 9208 §5.1: the one quota root, the account's.
QUOTA_ROOT: Final = ""
_BARE_LF: Final = re.compile(rb"(?<!\r)\n")
_NAMESPACE: Final = (("", DELIMITER),)
#: RFC 2342 §5 / RFC 4314: other users' mailboxes shared with this user (:mod:`.acl`).
_OTHER_NAMESPACE: Final = ((acl.OTHER_PREFIX, DELIMITER),)
_SPECIAL_USES: Final = {use.value.upper(): use for use in SpecialUse}


def ordered_set(numbers: Sequence[int]) -> SequenceSet:
    """``numbers`` in their given order, runs of consecutive ascending numbers as ranges
    (RFC 5267 §3.2: an ESORT ALL keeps the sort order)."""
    ranges: list[tuple[int, int]] = []
    for number in numbers:
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], number)
        else:
            ranges.append((number, number))
    return SequenceSet(tuple(ranges))


def partial_window(numbers: Sequence[int], partial: tuple[int, int]) -> list[int]:
    """The positions ``partial`` names in ``numbers`` (RFC 9394 §3.1, RFC 5267 §4.4): 1-based,
    or counted back from the last (-1) when negative, the ends in either order ("A range
    500:400 is the same as 400:500"); positions past either end are simply not there, so a
    window wholly outside is empty, not an error."""
    near, far = sorted((abs(partial[0]), abs(partial[1])))
    if partial[0] > 0:
        return list(numbers[near - 1 : far])
    count = len(numbers)
    stop = count - near + 1  # -1 is the last message
    return list(numbers[max(count - far, 0) : stop]) if stop > 0 else []


def normalise_line_endings(data: bytes) -> bytes:
    """What IMAP APPEND stores: bare LF made CRLF, and a final CRLF added if missing.

    Stored bytes are otherwise kept as received. This one normalisation exists because POP3
    lists stored sizes and must then send exactly that many octets of CRLF-terminated lines
    (RFC 1939 §11), and because RFC 5322 §2.3 only knows CRLF.
    """
    if b"\n" in data:
        data = _BARE_LF.sub(b"\r\n", data)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def _message_bytes(messages: Sequence[c.AppendMessage]) -> list[bytes]:
    """What APPEND and REPLACE store of each message (:func:`normalise_line_endings`);
    ``NO [CANNOT]`` for an empty one."""
    raws = [normalise_line_endings(m.data) for m in messages]
    if not all(raws):
        raise _Abort(r.NO_EMPTY_MESSAGE)
    return raws


def _allowed_flags(target: _Target, message: c.AppendMessage) -> frozenset[str]:
    """The message's flags the user's rights on ``target`` let it keep (RFC 4314 §4: "s",
    "w", "t")."""
    rights = acl.ALL_RIGHTS if target.rights is None else target.rights
    return allowed_flags(frozenset(message.flags), rights)


class FaultLog(Protocol):
    def exception(self, msg: str, **fields: object) -> None: ...


MessageParser = Callable[[bytes], Awaitable[MessageInfo]]


class QuotaWatch(Protocol):
    """Told of each APPEND, COPY and MOVE that added to an account's usage, with the usage
    the store read in that write (:class:`~pillarbox.queue.quotawarning.QuotaWarnings`). It
    logs its own store failures: what was saved stands whatever it does."""

    async def after_saving(
        self, account_id: int, usage: QuotaUsage | None, size: int, count: int
    ) -> bool: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSettings:
    """Every limit of a session; the adapter fills it from ``config.imap``."""

    lexer: LexerLimits = field(default_factory=LexerLimits)
    #: Consecutive BAD replies before BYE.
    max_errors: int = 20
    #: RFC 9051 §5.4: the autologout timer is at least 30 minutes.
    idle_timeout: float = 1800.0
    #: Seconds from connecting within which the client must log in, busy or not. §5.4's
    #: 30 minutes protect an authenticated user's session; one that never logs in only holds
    #: a connection slot (Dovecot's imap-login gives it 3 minutes).
    login_timeout: float = 180.0
    #: LOGIN and PLAIN before TLS (loopback tests only).
    login_without_tls: bool = False
    #: RFC 2971 §3.3 server identification.
    server_id: tuple[tuple[str, str | None], ...] = (("name", "Pillarbox"),)
    #: This server's name (the spam filter trusts only its own Authentication-Results).
    hostname: str = "localhost"
    #: Messages one MOVE, COPY or STORE teaches the spam filter at most (policy section).
    learn_max_messages: int = 1000
    #: Mailboxes one NOTIFY may watch for message events (RFC 5465 §5.8 overflow beyond).
    notify_max_mailboxes: int = 1000
    #: RFC 5464 §4.3: the largest entry value SETMETADATA accepts ([METADATA MAXSIZE]).
    metadata_max_value_size: int = 16 * 1024
    #: What the store enforces per write (TOOMANY, OVERQUOTA).
    metadata_limits: MetadataLimits = field(
        default_factory=lambda: MetadataLimits(max_entries=100, max_total=1024 * 1024)
    )
    #: RFC 5464 §3.2.1.1: the server's /shared/admin URI (none when empty).
    metadata_admin: str = ""


@dataclass(slots=True)
class _Sasl:
    tag: str
    exchange: SaslExchange


class _MailboxGone(Exception):
    """The selected mailbox no longer exists (deleted by another session)."""


class _Abort(Exception):
    """A handler's early answer."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.text)
        self.reply = reply


@dataclass(frozen=True, slots=True)
class _Target:
    """A mailbox a command names, resolved through the namespaces: the store's (account,
    name) and, for another user's mailbox (RFC 4314), the owner's address and the user's
    rights (None for the user's own: every right)."""

    account_id: int
    name: str
    owner: str | None = None
    rights: frozenset[str] | None = None

    def display(self, name: str) -> str:
        """``name`` (the store's) as this user sees it."""
        return name if self.owner is None else acl.shared_name(self.owner, name)

    def has(self, rights: str) -> bool:
        return self.rights is None or set(rights) <= self.rights


Handler = Callable[["ImapSession", c.Command, Output], Awaitable[Reply | None]]


class ImapSession:
    """One connection. Feed bytes with :meth:`receive_data`; obey the returned :class:`Action`."""

    def __init__(
        self,
        settings: SessionSettings,
        store: Store,
        authenticator: Authenticating,
        *,
        parse: MessageParser,
        remote_ip: str,
        tls_active: bool,
        starttls_available: bool,
        now: float,
        log: FaultLog | None = None,
        quota_watch: QuotaWatch | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.authenticator = authenticator
        self.state = State.NOT_AUTHENTICATED
        self.account: Account | None = None
        self.tls_active = tls_active
        self._parse = parse
        self._remote_ip = remote_ip
        self._starttls_available = starttls_available
        self._log = log
        self._quota_watch = quota_watch
        self._lexer = Lexer(limits=settings.lexer)
        self._last_activity = now
        self._connected_at = now
        self._now = now
        self._errors = 0
        self._utf8 = False
        self._rev2 = False
        self._condstore = False  # RFC 7162 §3.1: a CONDSTORE-aware client
        self._qresync = False  # RFC 7162 §3.2.3: ENABLE QRESYNC was issued
        self._uidonly = False  # RFC 9586 §3: ENABLE UIDONLY was issued
        self._compressing = False
        self._selected: SelectedView | None = None
        #: How the selected mailbox was reached (another user's, RFC 4314, or the user's own).
        self._target: _Target | None = None
        #: A hint said the selected mailbox was renamed or deleted (no MODSEQ tells that;
        #: a rename changes nothing the session holds, a deletion ends it).
        self._dirty = False
        #: The highest MODSEQ a hint reported for the selected mailbox's messages.
        self._hinted = 0
        self._saved: list[int] = []
        self._idle_tag: str | None = None
        self._sasl: _Sasl | None = None
        self._notifier: Notifier | None = None  # RFC 5465: None until the first NOTIFY
        self._own_arrivals: set[int] = set()  # RFC 5465 §5.2: no MessageNew FETCH for these

    # -- adapter interface -----------------------------------------------------------------

    def greeting(self) -> bytes:
        """``* OK [CAPABILITY ...]`` (RFC 9051 §7.1.1; the code spares clients a round trip)."""
        return r.GREETING.with_code(responses.capability_code(self._capabilities())).untagged()

    @property
    def idling(self) -> bool:
        return self._idle_tag is not None

    @property
    def in_literal(self) -> bool:
        return self._lexer.in_literal

    def deadline(self) -> float:
        """When the autologout timer fires (RFC 9051 §5.4); any received byte resets it.
        Before login, the login deadline too (no byte moves it)."""
        idle = self._last_activity + self.settings.idle_timeout
        if self.state is State.NOT_AUTHENTICATED:
            return min(idle, self._login_deadline)
        return idle

    @property
    def _login_deadline(self) -> float:
        return self._connected_at + self.settings.login_timeout

    def handle_timeout(self, now: float) -> bytes | None:
        """The BYE to send if the deadline has passed (then close), else None."""
        if now < self.deadline():
            return None
        login = self.state is State.NOT_AUTHENTICATED and now >= self._login_deadline
        self.state = State.LOGOUT
        return (r.BYE_LOGIN_TIMEOUT if login else r.BYE_AUTOLOGOUT).untagged()

    def shutdown(self) -> bytes:
        self.state = State.LOGOUT
        return r.BYE_SHUTDOWN.untagged()

    @property
    def wants_push(self) -> bool:
        """Whether the adapter should call :meth:`push_updates` on change-feed wake-ups now:
        during IDLE, and between commands once NOTIFY asked for events (RFC 5465 §3.1) — not
        while a literal or a SASL exchange is under way."""
        if self._idle_tag is not None:
            return True
        notifier = self._notifier
        return (
            notifier is not None
            and notifier.active
            and self._sasl is None
            and not self._lexer.in_literal
        )

    @property
    def watched_mailbox(self) -> int | None:
        """The selected mailbox when it is another user's (RFC 4314): the adapter adds it to
        the change feed, which otherwise carries the user's own account only."""
        target = self._target
        if self._selected is None or target is None or target.owner is None:
            return None
        return self._selected.mailbox_id

    def notify(self, change: Change) -> None:
        """A change-feed hint: the selected mailbox may have changed (the truth is re-read)."""
        view = self._selected
        account = self.account
        if view is not None and change.mailbox_id == view.mailbox_id:
            if change.kind is ChangeKind.MAILBOXES:
                self._dirty = True
            else:
                self._hinted = max(self._hinted, change.modseq)
        elif (
            view is not None
            and change.mailbox_id == 0
            and change.kind is ChangeKind.MAILBOXES
            and account is not None
            and change.account_id == account.id
        ):
            # Any mailbox may have been renamed or deleted (``ChangeKind.MAILBOXES``): after
            # lost hints no store can name one it no longer has, so the view looks for its own.
            self._dirty = True
        # NOTIFY watches the user's own mailboxes; a watched shared one only wakes the view.
        if self._notifier is not None and account is not None and change.account_id == account.id:
            self._notifier.hint(change)

    @property
    def _stale(self) -> bool:
        """Whether a hint reported what the view lacks. A hint at or below the view's MODSEQ
        is taken in already: the session's own write, or one a read raced ahead of."""
        view = self._selected
        return view is not None and (self._dirty or self._hinted > view.modseq)

    def compression_started(self) -> bytes:
        """COMPRESS succeeded: returns the octets received after it, which are compressed
        (RFC 4978 §3) and must be inflated and fed back through :meth:`receive_data`."""
        self._compressing = True
        return self._lexer.take_unread()

    def tls_started(self) -> None:
        """The STARTTLS handshake completed: nothing received before it is kept."""
        self.tls_active = True
        self._lexer = Lexer(limits=self.settings.lexer)

    async def receive_data(self, data: bytes, out: Output, now: float) -> Action:
        """Frame and execute every complete command in ``data`` (b"" is end of stream)."""
        self._last_activity = self._now = now
        if not data:
            self.state = State.LOGOUT
            return Action.CLOSE
        self._lexer.receive_data(data)
        while True:
            event = self._lexer.next_event()
            if event is None:
                return Action.CONTINUE
            if isinstance(event, ContinueLiteral):
                await out.write(responses.continuation("Ready for literal data"))
                continue
            if isinstance(event, CommandReady):
                action = await self._line(event.data, out)
            else:
                await out.write(responses.rejection(event))
                if isinstance(event, Fatal):
                    self.state = State.LOGOUT
                    return Action.CLOSE
                action = await self._count_error(out)
            if action is not Action.CONTINUE:
                return action

    async def push_updates(self, out: Output, now: float) -> Action:
        """After a change-feed wake-up, between commands: send what changed — during IDLE
        (RFC 9051 §6.3.13), or whenever NOTIFY asked for it (RFC 5465 §3.1, §4)."""
        self._now = now
        idling = self._idle_tag is not None
        notifier = self._notifier
        if notifier is None and not idling:
            return Action.CONTINUE
        selected = notifier.plan.selected if notifier is not None else True
        try:
            if self._stale and not selected and self._dirty:
                # NOTIFY asked for nothing of the selected mailbox, but a rename or deletion
                # is looked at all the same: a deleted one ends the session now (_MailboxGone),
                # not at the client's next command; what changed waits for that command.
                await self._sync()
            if self._stale and selected:
                await self._sync()
                # RFC 5465 §6.1.2: SELECTED-DELAYED holds expunges back until a command
                # that may carry them (IDLE is one); SELECTED sends them at once (§6.1.1).
                delayed = notifier is not None and notifier.plan.delayed
                flags = idling or notifier is None or notifier.plan.selected_flags
                await self._announce(out, allow_expunge=idling or not delayed, allow_flags=flags)
                await self._held_back(out)
            if notifier is not None and notifier.pending:
                lines = await notifier.updates(
                    self.store, self._selected_id(), condstore=self._condstore, utf8=self._utf8
                )
                if lines:
                    await out.write(b"".join(lines))
        except _MailboxGone:
            return await self._mailbox_gone(out)
        except StorageError as exc:  # the next wake-up or command tries again
            if self._log is not None:
                self._log.exception("store failure", command="push", error=str(exc))
        return Action.CONTINUE

    # -- dispatch ----------------------------------------------------------------------------

    async def _line(self, data: bytes, out: Output) -> Action:
        if self._idle_tag is not None:
            tag, self._idle_tag = self._idle_tag, None
            reply = r.OK_IDLE_DONE if is_idle_done(data) else r.BAD_IDLE_DONE
            return await self._finish(tag, c.Idle, reply, out)
        if self._sasl is not None:
            return await self._sasl_line(data, out)
        try:
            command = parse_command(data, utf8=self._utf8)
        except ParseError as exc:
            await out.write(responses.parse_error(exc))
            if exc.condition == "BAD":
                return await self._count_error(out)
            return Action.CONTINUE
        return await self._dispatch(command, out)

    async def _dispatch(self, command: c.Command, out: Output) -> Action:
        kind = type(command)
        if kind not in ALLOWED[self.state]:
            return await self._finish(command.tag, kind, r.BAD_WRONG_STATE, out)
        if self._uidonly and uidonly_refuses(command):
            return await self._finish(command.tag, kind, r.BAD_UID_REQUIRED, out)
        try:
            looks = self._stale or kind in _POLLING
            if self._selected is not None and looks and kind not in _LEAVING:
                await self._sync()
                # A keyword learned here is listed before this command's own FETCH responses
                # can show it (the rest of what changed waits for the announcement).
                await self._list_new_flags(out)
            reply = await _HANDLERS[kind](self, command, out)
            if reply is None:  # continues with the client's next line (IDLE, AUTHENTICATE)
                return Action.CONTINUE
            if self._selected is not None and kind is not c.Logout:
                uid = getattr(command, "uid", None)
                allow = kind not in _NO_EXPUNGE or bool(uid)
                await self._announce(out, allow_expunge=allow)
                await self._held_back(out)
        except _Abort as abort:
            reply = abort.reply
        except _MailboxGone:
            return await self._mailbox_gone(out)
        except NotFound:
            # A mailbox vanished between the last look and this command's reads or writes.
            if self._selected is not None and kind not in _LEAVING:
                return await self._mailbox_gone(out)
            reply = r.NO_NO_MAILBOX
        except StorageError as exc:
            if self._log is not None:
                self._log.exception("store failure", command=kind.__name__, error=str(exc))
            reply = r.NO_SERVER_FAULT
        return await self._finish(command.tag, kind, reply, out)

    async def _finish(self, tag: str, kind: type, reply: Reply, out: Output) -> Action:
        await out.write(reply.tagged(tag))
        self.state = TRANSITIONS.get((self.state, kind, reply.condition), self.state)
        if self.state is State.SELECTED and self._selected is None:
            self.state = State.AUTHENTICATED  # the selected mailbox was deleted by us
        if self.state is State.LOGOUT:
            return Action.CLOSE
        if kind is c.StartTLS and reply.condition is Condition.OK:
            return Action.START_TLS
        if kind is c.Compress and reply.condition is Condition.OK:
            return Action.START_COMPRESS
        if reply.condition is Condition.BAD:
            return await self._count_error(out)
        self._errors = 0
        return Action.CONTINUE

    async def _count_error(self, out: Output) -> Action:
        self._errors += 1
        if self._errors < self.settings.max_errors:
            return Action.CONTINUE
        await out.write(r.BYE_TOO_MANY_ERRORS.untagged())
        self.state = State.LOGOUT
        return Action.CLOSE

    async def _mailbox_gone(self, out: Output) -> Action:
        await out.write(r.BYE_MAILBOX_GONE.untagged())
        self.state = State.LOGOUT
        return Action.CLOSE

    # -- the selected view -----------------------------------------------------------------

    @property
    def _view(self) -> SelectedView:
        assert self._selected is not None
        return self._selected

    async def _sync(self) -> None:
        """Take in the store's changes to the selected mailbox since the view's MODSEQ."""
        view = self._view
        self._dirty = False  # a deletion hint arriving during the read marks it again
        try:
            delta = await self.store.mailbox_delta(view.mailbox_id, view.modseq)
        except NotFound:
            raise _MailboxGone from None
        highest = delta.status.mailbox.highestmodseq
        if highest > view.modseq:
            view.apply(delta.changed, delta.expunged, highest)

    async def _announce(
        self, out: Output, *, allow_expunge: bool, allow_flags: bool = True
    ) -> None:
        view = self._view
        arrivals = view.arrivals()
        if arrivals and self._claims_recent(view):
            first = await self.store.claim_recent(view.mailbox_id)
            view.recent.update(uid for uid in arrivals if uid >= first)
        announcement = view.announce(
            allow_expunge=allow_expunge,
            rev1=not self._rev2,
            modseq=self._condstore,
            vanished=self._qresync or self._uidonly,  # RFC 9586 §3: VANISHED, never EXPUNGE
            allow_flags=allow_flags,
            uid_only=self._uidonly,
        )
        if announcement.expunged and self._saved:
            gone = set(announcement.expunged)
            self._saved = [uid for uid in self._saved if uid not in gone]
        if announcement.lines:
            await out.write(b"".join(announcement.lines))
        if arrivals:
            await self._message_new(view, arrivals, out)

    async def _list_new_flags(self, out: Output) -> None:
        """RFC 9051 §7.3.5: a new ``* FLAGS`` (and PERMANENTFLAGS) if the view learned of a
        keyword the client was not given yet (:meth:`SelectedView.flag_list_update`)."""
        listing = self._view.flag_list_update()
        if listing:
            await out.write(b"".join(listing))

    async def _held_back(self, out: Output) -> None:
        """RFC 7162 §3.2: when a response ends with a VANISHED still withheld (RFC 9051 §7.5.1),
        the MODSEQs it carried (FETCH/STORE replies, flag changes) may run past the expunge's;
        a client that takes the highest as its HIGHESTMODSEQ (§6) and drops the connection
        before the VANISHED would resync from beyond it and keep the message for good. The
        code sent here is below the withheld expunge's, and §6 has the client take it."""
        view = self._view
        if self._qresync and view.expunges_withheld:
            code = responses.highestmodseq(view.announced_modseq)
            await out.write(r.OK_HIGHESTMODSEQ_HELD_BACK.with_code(code).untagged())

    async def _message_new(self, view: SelectedView, arrivals: list[int], out: Output) -> None:
        """RFC 5465 §5.2: after EXISTS, a FETCH of what NOTIFY asked for, for each new message
        not created by this session itself."""
        own, self._own_arrivals = self._own_arrivals, set()
        notifier = self._notifier
        if notifier is None or not notifier.plan.selected or not notifier.plan.fetch_atts:
            return
        news = [uid for uid in arrivals if uid not in own]
        if news:
            engine = FetchEngine(
                view,
                self.store,
                out,
                uid_command=True,  # every unsolicited FETCH carries UID (RFC 9051 App. E)
                utf8=self._utf8,
                with_recent=not self._rev2,
                condstore=self._condstore,
                uid_only=self._uidonly,
            )
            await engine.run(news, notifier.plan.fetch_atts)

    def _selected_id(self) -> int | None:
        return None if self._selected is None else self._selected.mailbox_id

    async def _absorb(self, mailbox_id: int | None = None) -> None:
        """This session's own change, which NOTIFY does not echo (RFC 5465 §5): a mailbox's
        content (``mailbox_id``) or the mailbox list and subscriptions (None)."""
        if self._notifier is not None:
            await self._notifier.absorb(self.store, mailbox_id=mailbox_id)

    def _claims_recent(self, view: SelectedView) -> bool:
        """\\Recent is IMAP4rev1's; EXAMINE must not take it (RFC 3501 §6.3.2)."""
        return not self._rev2 and not view.read_only

    def _resolve(self, sequence: SequenceSet, *, uid: bool) -> list[int]:
        view = self._view
        if not uid and not view.seq_in_range(sequence):
            raise _Abort(r.BAD_BAD_SEQUENCE)
        return view.resolve(sequence, uid=uid, saved=self._saved)

    @staticmethod
    def _require(view: SelectedView, rights: str) -> None:
        """NO [NOPERM] unless the user has ``rights`` on the selected mailbox (RFC 4314 §4;
        rights are read at SELECT, which §5.1.1 allows)."""
        if view.rights is not None and not set(rights) <= view.rights:
            raise _Abort(r.NO_PERMISSION)

    @staticmethod
    def _flag_rights(view: SelectedView, mode: FlagOp, flags: frozenset[str]) -> str | None:
        """Which of "s", "t" and "w" a STORE may use (None: all). RFC 4314 §4: \\Seen needs
        "s", \\Deleted "t", the others "w"; the STORE "SHOULD NOT fail if the user has rights
        to modify at least one flag specified", so the flags it may not change are left as
        they are, and only a STORE that could change none answers NO [NOPERM]. A replace
        specifies every flag: it needs one of the three."""
        if view.rights is None or set("stw") <= view.rights:
            return None
        limit = "".join(right for right in "stw" if right in view.rights)
        if mode is FlagOp.REPLACE:
            usable = bool(limit)
        else:
            usable = not flags or any(flag_right(flag) in limit for flag in flags)
        if not usable:
            raise _Abort(r.NO_PERMISSION)
        return limit

    def _fetch_line(self, view: SelectedView, uid: int, items: list[bytes]) -> bytes:
        """A FETCH response the server sends of its own, UID first (RFC 9051 §7.5.2, App. E),
        or under UIDONLY the UIDFETCH that replaces it (RFC 9586 §3)."""
        if self._uidonly:
            return responses.uidfetch(uid, items)
        return responses.fetch(view.seq_of(uid), [responses.uid_item(uid), *items])

    def _writable(self) -> SelectedView:
        view = self._view
        if view.read_only:
            raise _Abort(r.NO_READ_ONLY)
        return view

    # -- helpers -------------------------------------------------------------------------------

    def _capabilities(self) -> tuple[str, ...]:
        secure = self.tls_active or self.settings.login_without_tls
        return capabilities(
            authenticated=self.state is not State.NOT_AUTHENTICATED,
            tls_active=self.tls_active,
            starttls_available=self._starttls_available,
            login_allowed=secure,
            mechanisms=self.authenticator.mechanisms(secure=secure),
            append_limit=self.settings.lexer.max_append_literal,
            compress=not self._compressing,
        )

    def _logged_in(self, account: Account) -> Reply:
        self.account = account
        caps = capabilities(
            authenticated=True,
            tls_active=self.tls_active,
            starttls_available=False,
            login_allowed=True,
            mechanisms=(),
            append_limit=self.settings.lexer.max_append_literal,
            compress=not self._compressing,
        )
        return r.OK_LOGGED_IN.with_code(responses.capability_code(caps))

    @property
    def _account(self) -> Account:
        assert self.account is not None
        return self.account

    async def _mailbox(self, name: str, missing: Reply = r.NO_NO_MAILBOX) -> Mailbox:
        try:
            return await self.store.get_mailbox(self._account.id, name)
        except (NotFound, InvalidName):
            raise _Abort(missing) from None

    async def _rights_on(self, mailbox: Mailbox) -> frozenset[str]:
        """RFC 4314 §2: what the entries naming the user, "anyone" and "authenticated" give,
        less what their negative entries take (``aclrows.effective_rights``)."""
        me = self._account.address.lower()
        return frozenset(
            effective_rights(
                (entry.rights, entry.negative)
                for entry in await self.store.get_acl(mailbox.id)
                if entry.identifier.lower() == me or acl.is_special(entry.identifier)
            )
        )

    async def _owner(self, address: str) -> Account | None:
        owner = await self.store.get_account(address)
        if owner is None and address != address.lower():
            owner = await self.store.get_account(address.lower())
        return owner

    async def _locate(self, name: str, needs: str, missing: Reply = r.NO_NO_MAILBOX) -> _Target:
        """Where ``name`` is, if the user may do what needs ``needs`` there (RFC 4314 §4).

        The user's own names are not looked up here (the store says NotFound). Another
        user's mailbox on which the user has no right at all, or lacks a needed right and
        "l", answers exactly as a mailbox that does not exist (§4: no information leak);
        one the user can see but not use answers NO [NOPERM] (RFC 5530)."""
        if not acl.is_other_users(name):
            return _Target(self._account.id, name)
        parts = acl.split_shared(name)
        if parts is None:
            raise _Abort(missing)
        owner = await self._owner(parts[0])
        if owner is None or owner.id == self._account.id:
            raise _Abort(missing)
        try:
            mailbox = await self.store.get_mailbox(owner.id, parts[1])
        except (NotFound, InvalidName):
            raise _Abort(missing) from None
        rights = await self._rights_on(mailbox)
        if not rights or not set(needs) <= rights:
            raise _Abort(r.NO_PERMISSION if "l" in rights else missing)
        return _Target(owner.id, mailbox.name, owner.address, rights)

    async def _located(
        self, name: str, needs: str, missing: Reply = r.NO_NO_MAILBOX
    ) -> tuple[_Target, Mailbox]:
        target = await self._locate(name, needs, missing)
        try:
            return target, await self.store.get_mailbox(target.account_id, target.name)
        except (NotFound, InvalidName):
            raise _Abort(missing) from None

    async def _status_line(
        self, mailbox: Mailbox, items: Sequence[str], name: str | None = None
    ) -> bytes:
        status = await self.store.mailbox_status(mailbox.id)
        box = status.mailbox
        view = self._selected
        recent = len(view.recent) if view is not None and view.mailbox_id == box.id else 0
        values: dict[str, int | str] = {
            "MESSAGES": status.messages,
            "UIDNEXT": box.uidnext,
            "UIDVALIDITY": box.uidvalidity,
            "UNSEEN": status.unseen,
            "DELETED": status.deleted,  # RFC 9051 §6.3.11
            "SIZE": status.size,  # RFC 8438
            "RECENT": recent,  # only this session's \Recent is known (RFC 3501 §6.3.10)
            "APPENDLIMIT": self.settings.lexer.max_append_literal,  # RFC 7889 §3.2
            "HIGHESTMODSEQ": box.highestmodseq,  # RFC 7162 §3.1.8
            "MAILBOXID": mailbox_id(box),  # RFC 8474 §4.2
        }
        if "DELETED-STORAGE" in items:  # RFC 9208 §4.3: the octets EXPUNGE would free
            values["DELETED-STORAGE"] = sum(
                record.size
                for record in await self.store.list_messages(box.id)
                if "\\Deleted" in record.flags
            )
        shown = box.name if name is None else name
        return responses.status(shown, [(item, values[item]) for item in items], utf8=self._utf8)

    async def _check_status_items(self, items: Sequence[str], out: Output) -> None:
        """STATUS (HIGHESTMODSEQ) is a CONDSTORE enabling command (RFC 7162 §3.1)."""
        if "HIGHESTMODSEQ" in items:
            await self._enable_condstore(out)

    async def _enable_condstore(self, out: Output) -> None:
        """RFC 7162 §3.1: the first CONDSTORE enabling command with a mailbox selected
        reports its HIGHESTMODSEQ."""
        if self._condstore:
            return
        self._condstore = True
        if self._selected is not None:
            code = responses.highestmodseq(self._selected.announced_modseq)
            await out.write(r.OK_HIGHESTMODSEQ.with_code(code).untagged())

    # -- any state (RFC 9051 §6.1) -----------------------------------------------------------

    async def _capability(self, cmd: c.Command, out: Output) -> Reply:
        await out.write(responses.capability(self._capabilities()))
        return r.OK_CAPABILITY

    async def _noop(self, cmd: c.Command, out: Output) -> Reply:
        return r.OK_CHECK if isinstance(cmd, c.Check) else r.OK_NOOP

    async def _logout(self, cmd: c.Command, out: Output) -> Reply:
        await out.write(r.BYE_LOGOUT.untagged())  # RFC 9051 §6.1.3: BYE, then the tagged OK
        return r.OK_LOGOUT

    async def _id(self, cmd: c.Command, out: Output) -> Reply:
        await out.write(responses.id_response(self.settings.server_id))
        return r.OK_ID

    # -- not authenticated (RFC 9051 §6.2) ---------------------------------------------------

    async def _starttls(self, cmd: c.Command, out: Output) -> Reply:
        if self.tls_active:
            return r.BAD_TLS_ACTIVE
        if not self._starttls_available:
            return r.BAD_NO_TLS
        return r.OK_STARTTLS

    async def _login(self, cmd: c.Command, out: Output) -> Reply:
        assert isinstance(cmd, c.Login)
        if not (self.tls_active or self.settings.login_without_tls):
            return r.NO_LOGIN_DISABLED  # RFC 9051 §6.2.3 LOGINDISABLED
        try:
            username = cmd.userid.decode("utf-8")
            password = cmd.password.decode("utf-8")
        except UnicodeDecodeError:
            return r.NO_BAD_CREDENTIALS_ENCODING
        try:
            account = await self.authenticator.check_password(username, password, self._remote_ip)
        except AuthenticationFailed:
            return r.NO_AUTH_FAILED
        except RateLimited:
            return r.NO_AUTH_THROTTLED
        return self._logged_in(account)

    async def _authenticate(self, cmd: c.Command, out: Output) -> Reply | None:
        assert isinstance(cmd, c.Authenticate)
        secure = self.tls_active or self.settings.login_without_tls
        try:
            exchange = self.authenticator.start_sasl(
                cmd.mechanism, remote_ip=self._remote_ip, secure=secure
            )
        except UnsupportedMechanism:
            return r.NO_MECHANISM
        initial: bytes | None = None
        if cmd.initial_response is not None:  # RFC 4959 §3: "=" is an empty response
            try:
                initial = (
                    b""
                    if cmd.initial_response == b"="
                    else binascii.a2b_base64(cmd.initial_response, strict_mode=True)
                )
            except binascii.Error:
                return r.BAD_SASL_RESPONSE
        self._sasl = _Sasl(cmd.tag, exchange)
        return await self._sasl_step(exchange.start(initial), out)

    async def _sasl_step(self, step: Awaitable[Challenge | LoggedIn], out: Output) -> Reply | None:
        try:
            result = await step
        except AuthenticationFailed:
            self._sasl = None
            return r.NO_AUTH_FAILED
        except RateLimited:
            self._sasl = None
            return r.NO_AUTH_THROTTLED
        if isinstance(result, Challenge):
            await out.write(responses.continuation_data(binascii.b2a_base64(result.data)[:-1]))
            return None
        self._sasl = None
        return self._logged_in(result.account)

    async def _sasl_line(self, data: bytes, out: Output) -> Action:
        assert self._sasl is not None
        sasl = self._sasl
        try:
            response = parse_sasl_response(data)
        except ParseError:
            self._sasl = None
            return await self._finish(sasl.tag, c.Authenticate, r.BAD_SASL_RESPONSE, out)
        if response is None:  # RFC 9051 §6.2.2: "*" cancels, answered BAD
            self._sasl = None
            return await self._finish(sasl.tag, c.Authenticate, r.BAD_AUTH_CANCELLED, out)
        reply = await self._sasl_step(sasl.exchange.receive(response), out)
        if reply is None:
            return Action.CONTINUE
        return await self._finish(sasl.tag, c.Authenticate, reply, out)

    # -- authenticated (RFC 9051 §6.3) -------------------------------------------------------

    async def _enable(self, cmd: c.Command, out: Output) -> Reply:
        assert isinstance(cmd, c.Enable)
        enabled = []
        for name in cmd.capabilities:  # RFC 5161 §3.1: unknown names are ignored
            if name not in ENABLEABLE:
                continue
            if name == "IMAP4REV2" and not self._rev2:
                self._rev2 = self._utf8 = True
                enabled.append("IMAP4rev2")
            elif name == "UTF8=ACCEPT" and "UTF8=ACCEPT" not in enabled:
                self._utf8 = True
                enabled.append("UTF8=ACCEPT")
            elif name == "CONDSTORE" and "CONDSTORE" not in enabled:
                self._condstore = True  # no mailbox is selected: ENABLE is not for SELECTED
                enabled.append("CONDSTORE")
            elif name == "QRESYNC" and not self._qresync:
                self._qresync = self._condstore = True  # RFC 7162 §3.2.3 implies CONDSTORE
                enabled.append("QRESYNC")
            elif name == "UIDONLY" and not self._uidonly:
                self._uidonly = True
                enabled.append("UIDONLY")
        await out.write(responses.enabled(enabled))
        return r.OK_ENABLE

    async def _select(self, cmd: c.Command, out: Output) -> Reply:
        assert isinstance(cmd, c.Select)
        if cmd.qresync is not None and not self._qresync:
            return r.BAD_QRESYNC_NOT_ENABLED  # RFC 7162 §3.2.5
        if cmd.condstore:
            self._condstore = True  # RFC 7162 §3.1.8; HIGHESTMODSEQ comes with the SELECT
        if self._selected is not None:
            self._selected = None
            await out.write(r.CLOSED_PREVIOUS.untagged())  # RFC 9051 §7.1 CLOSED
        self._saved = []  # RFC 5182 §2.1
        self._target = None
        target = await self._locate(cmd.mailbox, "r")  # RFC 4314 §4
        try:
            snapshot = await self.store.open_mailbox(target.account_id, target.name)
        except (NotFound, InvalidName):
            return r.NO_NO_MAILBOX
        status, mailbox = snapshot.status, snapshot.status.mailbox
        view = SelectedView(
            mailbox, snapshot.records, read_only=cmd.read_only, modseq=mailbox.highestmodseq
        )
        view.rights = target.rights
        if self._claims_recent(view) and view.uids and view.uids[-1] >= status.recent_uid:
            first = await self.store.claim_recent(mailbox.id)
            view.recent = {uid for uid in view.uids if uid >= first}
        lines = view.flag_lines()
        lines.append(responses.exists(view.exists))
        if not self._rev2:
            lines.append(responses.recent(len(view.recent)))
            unseen = None if self._uidonly else view.first_unseen()  # a message number
            if unseen is not None:
                lines.append(r.OK_UNSEEN.with_code(Code("UNSEEN", b"%d" % unseen)).untagged())
        lines.append(r.OK_UIDVALIDITY.with_code(responses.uidvalidity(view.uidvalidity)).untagged())
        lines.append(r.OK_UIDNEXT.with_code(responses.uidnext(view.uidnext)).untagged())
        if self._condstore:  # RFC 7162 §3.1.2.1
            code = responses.highestmodseq(view.modseq)
            lines.append(r.OK_HIGHESTMODSEQ.with_code(code).untagged())
        lines.append(
            r.OK_MAILBOXID.with_code(responses.mailboxid(mailbox_id(status.mailbox))).untagged()
        )
        if self._rev2:  # RFC 9051 §6.3.2: an untagged LIST for the selected mailbox
            shown = target.display(mailbox.name)
            lines.append(responses.list_item((), DELIMITER, shown, utf8=True))
        await out.write(b"".join(lines))
        if cmd.qresync is not None and cmd.qresync.uidvalidity == view.uidvalidity:
            await self._resync(view, cmd.qresync, out)
        self._selected = view
        self._target = target
        self._dirty = False
        self._hinted = 0
        return r.OK_EXAMINE_RO if view.read_only else r.OK_SELECT_RW

    async def _resync(self, view: SelectedView, params: c.Qresync, out: Output) -> None:
        """RFC 7162 §3.2.5.1: what changed since the client's MODSEQ, as ``VANISHED (EARLIER)``
        and then one FETCH per changed message, both limited to the client's known UIDs.

        Every expunge is remembered, so the answer is exact and seq-match is not needed."""
        known = None
        if params.known_uids is not None:
            known = params.known_uids.resolve(max(view.uidnext - 1, 1))
        visible = set(view.uids)
        gone = [
            uid
            for uid in await self.store.expunged_since(view.mailbox_id, params.modseq)
            if uid not in visible and (known is None or uid in known)
        ]
        if gone:
            await out.write(responses.vanished(SequenceSet.from_numbers(gone), earlier=True))
        # From the view, not the store: its MODSEQs are what SELECT reported, and changes
        # after its snapshot reach the client later as unsolicited FETCH, in order.
        with_recent = not self._rev2
        lines = [
            self._fetch_line(
                view,
                uid,
                [
                    responses.flags_item(view.flags(uid, with_recent=with_recent)),
                    responses.modseq_item(view.record(uid).modseq),
                ],
            )
            for uid in view.uids
            if view.record(uid).modseq > params.modseq and (known is None or uid in known)
        ]
        if lines:
            await out.write(b"".join(lines))

    async def _create(self, cmd: c.Command, out: Output) -> Reply:
        assert isinstance(cmd, c.Create)
        # RFC 9051 §6.3.4: a trailing delimiter declares intent to create inferiors.
        name = cmd.mailbox.rstrip(DELIMITER) or cmd.mailbox
        use: SpecialUse | None = None
        if cmd.special_use:  # RFC 6154 §3: one special use per mailbox here
            known = [_SPECIAL_USES.get(attr.upper()) for attr in cmd.special_use]
            if len(known) != 1 or known[0] is None:
                return r.NO_USEATTR
            use = known[0]
        target = await self._creation_target(name)
        try:
            created = await self.store.create_mailbox(target.account_id, target.name, use)
        except AlreadyExists:
            return r.NO_EXISTS
        except InvalidName:
            return r.NO_BAD_NAME
        await self._inherit_acl(created)
        await self._absorb()
        return r.OK_CREATE.with_code(responses.mailboxid(mailbox_id(created)))  # RFC 8474 §4.1

    async def _creation_target(self, name: str) -> _Target:
        """Where CREATE (or RENAME's new name) puts ``name``: the user's own account, or
        another user's below a mailbox on which the user has "k" (RFC 4314 §4: the right on
        the nearest existing parent; here the parent itself must exist, the top level of
        another user's account being theirs alone)."""
        if not acl.is_other_users(name):
            return _Target(self._account.id, name)
        parent, _, leaf = name.rpartition(DELIMITER)
        if acl.split_shared(parent) is None or not leaf:
            raise _Abort(r.NO_OTHER_USERS_NAME)
        above = await self._locate(parent, "k", r.NO_PERMISSION)
        return _Target(above.account_id, above.name + DELIMITER + leaf, above.owner, above.rights)

    async def _inherit_acl(self, created: Mailbox) -> None:
        """RFC 4314 §4: a new mailbox SHOULD inherit its parent's ACL, so that what a team
        shares stays shared as it grows, and a grantee sees what they create."""
        parent, _, _ = created.name.rpartition(DELIMITER)
        if not parent:
            return
        try:
            superior = await self.store.get_mailbox(created.account_id, parent)
            entries = await self.store.get_acl(superior.id)
        except NotFound:
            return
        for entry in entries:
            grantee: int | str = entry.identifier
            if not acl.is_special(entry.identifier):
                account = await self.store.get_account(entry.identifier)
                if account is None:
                    continue
                grantee = account.id
            await self.store.set_acl(created.id, grantee, entry.rights, negative=entry.negative)

    async def _delete(self, cmd: c.Command, out: Output) -> Reply:
        assert isinstance(cmd, c.Delete)
        if cmd.mailbox == INBOX:
            return r.NO_DELETE_INBOX
        _, mailbox = await self._located(cmd.mailbox, "x")  # RFC 4314 §4
        if mailbox.name == INBOX:  # another user's INBOX, named through Other Users
            return r.NO_DELETE_INBOX
        prefix = mailbox.name + DELIMITER
        # RFC 9051 §6.3.5: inferiors would be left without their superior; refuse instead.
        if any(
            m.name.startswith(prefix) for m in await self.store.list_mailboxes(mailbox.account_id)
        ):
            return r.NO_HAS_CHILDREN
        try:
            await self.store.delete_mailbox(mailbox.id)
        except NotFound:
            return r.NO_NO_MAILBOX
        if self._selected is not None and self._selected.mailbox_id == mailbox.id:
            self._selected = None
            self._saved = []
        await self._absorb()
        return r.OK_DELETE

    async def _rename(self, cmd: c.Command, out: Output) -> Reply:
        assert isinstance(cmd, c.Rename)
        new_name = cmd.new_name.rstrip(DELIMITER) or cmd.new_name
        # RFC 4314 §4: "x" on the mailbox, "k" on the new parent; within one owner only.
        source = await self._locate(cmd.mailbox, "x")
        if acl.is_other_users(new_name) and source.owner is None:
            return r.NO_OTHER_USERS_NAME
        destination = await self._creation_target(new_name)
        if destination.account_id != source.account_id:
            return r.NO_SHARED_RENAME
        try:
            await self.store.rename_mailbox(source.account_id, source.name, destination.name)
        except NotFound:
            return r.NO_NO_MAILBOX
        except AlreadyExists:
            return r.NO_EXISTS
        except InvalidName:
            return r.NO_BAD_NAME
        await self._absorb()
        if self._selected is not None:
            await self._sync()  # RENAME INBOX moves INBOX's messages out (RFC 9051 §6.3.6)
        return r.OK_RENAME

    async def _subscribe(self, cmd: c.Command, out: Output) -> Reply:
        assert isinstance(cmd, c.Subscribe | c.Unsubscribe)
        subscribe = isinstance(cmd, c.Subscribe)
        try:
            await self.store.set_subscribed(self._account.id, cmd.mailbox, subscribe)
        except InvalidName:
            return r.NO_BAD_NAME
        await self._absorb()
        return r.OK_SUBSCRIBE if subscribe else r.OK_UNSUBSCRIBE

    async def _list(self, cmd: c.Command, out: Output) -> Reply:
        assert isinstance(cmd, c.List)
        if cmd.return_status is not None:
            await self._check_status_items(cmd.return_status, out)
        patterns = [p for p in cmd.patterns if p]
        if not patterns:
            # RFC 9051 §6.3.9: an empty pattern asks for the delimiter and the root.
            await out.write(responses.list_item((NOSELECT,), DELIMITER, "", utf8=self._utf8))
            return r.OK_LIST
        account_id = self._account.id
        mailboxes = [
            m for m in await self.store.list_mailboxes(account_id) if not acl.is_other_users(m.name)
        ]
        shared = await self._shared_mailboxes()
        subscriptions: set[str] = set()
        if "SUBSCRIBED" in cmd.selection or "SUBSCRIBED" in cmd.return_options:
            subscriptions = await self.store.list_subscriptions(account_id)
        readable = {mailbox.id for mailbox, rights in shared.values() if "r" in rights}
        entries = list_mailboxes(
            [*mailboxes, *(mailbox for mailbox, _ in shared.values())],
            subscriptions,
            reference=cmd.reference,
            patterns=patterns,
            selection=cmd.selection,
            return_options=cmd.return_options,
            placeholders=_placeholders(shared),
        )
        for entry in entries:
            line = responses.list_item(
                entry.attributes,
                DELIMITER,
                entry.name,
                utf8=self._utf8,
                childinfo=entry.childinfo,
            )
            box = entry.mailbox
            # RFC 5819; RFC 4314 §4: another user's mailbox only with "r".
            if (
                cmd.return_status is not None
                and box is not None
                and (entry.name not in shared or box.id in readable)
            ):
                line += await self._status_line(box, cmd.return_status, entry.name)
            await out.write(line)
        return r.OK_LIST

    async def _shared_mailboxes(self) -> dict[str, tuple[Mailbox, frozenset[str]]]:
        """Other users' mailboxes this user may list (RFC 4314 "l"), by their name here; each
        Mailbox carries that name."""
        return {
            name: (dataclasses.replace(s.mailbox, name=name), frozenset(s.rights))
            for s in await self.store.shared_with(self._account.id)
            if "l" in s.rights
            for name in (acl.shared_name(s.owner, s.mailbox.name),)
        }

    async def _lsub(self, cmd: c.Command, out: Output) -> Reply:
        assert isinstance(cmd, c.Lsub)
        account_id = self._account.id
        subscriptions = await self.store.list_subscriptions(account_id)
        existing = {
            m.name
            for m in await self.store.list_mailboxes(account_id)
            if not acl.is_other_users(m.name)
        }
        existing.update(await self._shared_mailboxes())  # RFC 4314 §4: LSUB needs "l"
        for entry in list_subscribed(
            subscriptions, existing, reference=cmd.reference, pattern=cmd.pattern
        ):
            await out.write(
                responses.list_item(
                    entry.attributes, DELIMITER, entry.name, utf8=self._utf8, lsub=True
                )
            )
        return r.OK_LSUB

    async def _namespace(self, cmd: c.Command, out: Output) -> Reply:
        await out.write(responses.namespace(_NAMESPACE, _OTHER_NAMESPACE, None, utf8=self._utf8))
        return r.OK_NAMESPACE

    async def _status(self, cmd: c.Command, out: Output) -> Reply:
        assert isinstance(cmd, c.Status)
        await self._check_status_items(cmd.items, out)
        target, mailbox = await self._located(cmd.mailbox, "r")  # RFC 4314 §4
        await out.write(await self._status_line(mailbox, cmd.items, target.display(mailbox.name)))
        return r.OK_STATUS

    async def _append(self, cmd: c.Command, out: Output) -> Reply:
        """APPEND / MULTIAPPEND (RFC 9051 §6.3.12, RFC 3502, RFC 4315 APPENDUID).

        Each message is stored as received except for :func:`normalise_line_endings`. A
        MULTIAPPEND is all or nothing (RFC 3502 §6.3.11): if a later message fails, the ones
        already stored are expunged again before the NO.
        """
        assert isinstance(cmd, c.Append)
        if any("\\Recent" in m.flags for m in cmd.messages):
            return r.BAD_RECENT_FLAG
        # RFC 9051 §6.3.12 TRYCREATE; RFC 4314 §4: "i".
        target, mailbox = await self._located(cmd.mailbox, "i", r.NO_TRYCREATE)
        records, usage = await self._store_messages(target, mailbox, cmd.messages)
        stored = [record.uid for record in records]
        await self._take_own_arrivals(mailbox, records)
        await self._absorb(mailbox.id)
        # The owner's usage (another user's mailbox: theirs), as the last append left it.
        await self._watch_quota(
            mailbox.account_id, usage, sum(record.size for record in records), len(records)
        )
        code = responses.appenduid(mailbox.uidvalidity, SequenceSet.from_numbers(stored))
        return r.OK_APPEND.with_code(code)

    async def _store_messages(
        self, target: _Target, mailbox: Mailbox, messages: Sequence[c.AppendMessage]
    ) -> tuple[list[MessageRecord], QuotaUsage | None]:
        """Store ``messages`` in ``mailbox``, all or nothing: if one fails, the ones already
        stored are expunged again (RFC 3502 §6.3.11); over quota is ``NO [OVERQUOTA]``.
        Flags are kept only as the user's rights there allow (RFC 4314 §4: "s", "w", "t")."""
        raws = _message_bytes(messages)
        records: list[MessageRecord] = []
        usage: QuotaUsage | None = None
        try:
            for message, raw in zip(messages, raws, strict=True):
                info = await self._parse(raw)
                appended = await self.store.append(
                    mailbox.id,
                    raw,
                    info,
                    flags=_allowed_flags(target, message),
                    internal_date=message.internal_date,
                )
                records.append(appended.record)
                usage = appended.usage
        except QuotaExceeded:
            await self._undo_append(mailbox.id, [record.uid for record in records])
            raise _Abort(r.NO_OVERQUOTA) from None
        except BaseException:
            await self._undo_append(mailbox.id, [record.uid for record in records])
            raise
        return records, usage

    async def _take_own_arrivals(self, mailbox: Mailbox, records: list[MessageRecord]) -> None:
        """Messages this session stored in the selected mailbox join its view at once, to be
        announced as EXISTS (RFC 9051 §6.3.12) and not echoed by NOTIFY (RFC 5465 §5)."""
        view = self._selected
        if view is None or view.mailbox_id != mailbox.id:
            return
        self._own_arrivals.update(record.uid for record in records)
        # Joined without a read only when each took the view's next MODSEQ: else another
        # session's message may lie below them (UIDs go in commit order), and the view, which
        # takes a UID below its highest for one expunged already, would never show it.
        following = range(view.modseq + 1, view.modseq + 1 + len(records))
        if [record.modseq for record in records] == list(following):
            view.apply(records, (), view.modseq)
            for record in records:
                view.own_write(record.modseq)
        else:
            await self._sync()

    async def _replace(self, cmd: c.Command, out: Output) -> Reply:
        """REPLACE / UID REPLACE (RFC 8508): the new message stored and the old one expunged
        in one store transaction (:meth:`Store.replace_message`), so either both happen or
        neither does (§3.4), even across a crash, and the quota is judged on the net change.

        The new message is prepared as APPEND prepares one (§3.2: TRYCREATE, OVERQUOTA, and
        APPENDLIMIT's TOOBIG from the lexer); one message only, even with MULTIAPPEND (§4.7,
        the grammar's). The old one is expunged alone, whatever its flags, as UID EXPUNGE of
        its UID would (§4.5); one that another session expunged meanwhile is ``NO
        [EXPUNGEISSUED]`` with nothing stored. Responses in the §4.3 order: ``* OK
        [APPENDUID …]``, EXISTS when the target is the selected mailbox, then EXPUNGE —
        VANISHED under QRESYNC, with HIGHESTMODSEQ on the tagged OK (§4.5, RFC 7162 §3.2.9).
        Rights (§4.1 with RFC 4314 §4): "i" on the target, "t" and "e" on the selected
        mailbox. The replies follow the commit, as APPEND's (DESIGN principle 3).
        """
        assert isinstance(cmd, c.Replace)
        view = self._writable()
        if "\\Recent" in cmd.message.flags:
            return r.BAD_RECENT_FLAG
        self._require(view, "te")
        found = self._resolve(cmd.target, uid=cmd.uid)  # a message number out of range: BAD
        if not found:
            return r.NO_REPLACE_NO_MESSAGE  # a UID not (or no longer) in the mailbox
        old = found[0]
        target, mailbox = await self._located(cmd.mailbox, "i", r.NO_TRYCREATE)
        [raw] = _message_bytes((cmd.message,))
        try:
            replaced = await self.store.replace_message(
                view.mailbox_id,
                old,
                mailbox.id,
                raw,
                await self._parse(raw),
                flags=_allowed_flags(target, cmd.message),
                internal_date=cmd.message.internal_date,
            )
        except QuotaExceeded:
            return r.NO_OVERQUOTA
        if replaced is None:  # expunged by another session meanwhile: nothing was replaced
            await self._sync()
            return r.NO_REPLACE_EXPUNGED
        new = replaced.record
        code = responses.appenduid(mailbox.uidvalidity, SequenceSet.from_numbers([new.uid]))
        await out.write(r.OK_REPLACE_READY.with_code(code).untagged())
        if mailbox.id == view.mailbox_id:
            # One write took the old message away with the new one's MODSEQ: the view learns
            # both, so that MODSEQ counts as its own write (nothing to read back).
            view.apply((), (old,), view.modseq)
            await self._take_own_arrivals(mailbox, [new])
            await self._announce(out, allow_expunge=False)  # the EXISTS before the EXPUNGE
        await self._absorb(mailbox.id)
        await self._absorb(view.mailbox_id)
        await self._watch_quota(mailbox.account_id, replaced.usage, replaced.size, replaced.count)
        await self._sync()  # the dispatcher announces the old message's EXPUNGE / VANISHED
        if self._qresync:
            return r.OK_REPLACE.with_code(responses.highestmodseq(view.modseq))
        return r.OK_REPLACE

    async def _watch_quota(
        self, account_id: int, usage: QuotaUsage | None, size: int, count: int
    ) -> None:
        if self._quota_watch is not None:
            await self._quota_watch.after_saving(account_id, usage, size, count)

    async def _undo_append(self, mailbox_id: int, uids: list[int]) -> None:
        if uids:
            await self.store.store_flags(mailbox_id, uids, FlagOp.ADD, frozenset({"\\Deleted"}))
            await self.store.expunge(mailbox_id, uids)

    # -- QUOTA (RFC 9208) and COMPRESS (RFC 4978) ----------------------------------------------

    async def _quota_resources(self) -> list[tuple[str, int, int]]:
        """RFC 9208 §5.1: (resource, usage, limit) for each limit the account has; STORAGE in
        units of 1024 octets. The limit is rounded down and the usage up, so a full quota never
        reads as room left; an account within its quota never reads as over it, so its usage
        is capped at the limit (less than 1 KiB of room reads as full, which it is for any
        message)."""
        usage = await self.store.quota_usage(self._account.id)
        resources = []
        if usage.bytes_limit is not None:
            limit = usage.bytes_limit // 1024
            used = -(-usage.bytes_used // 1024)
            if usage.bytes_used <= usage.bytes_limit:
                used = min(used, limit)
            resources.append(("STORAGE", used, limit))
        if usage.messages_limit is not None:
            resources.append(("MESSAGE", usage.messages, usage.messages_limit))
        return resources

    async def _getquota(self, cmd: c.Command, out: Output) -> Reply:
        assert isinstance(cmd, c.GetQuota)
        resources = await self._quota_resources()
        if cmd.root != QUOTA_ROOT or not resources:
            return r.NO_NO_QUOTA_ROOT
        await out.write(responses.quota(QUOTA_ROOT, resources))
        return r.OK_GETQUOTA

    async def _getquotaroot(self, cmd: c.Command, out: Output) -> Reply:
        """RFC 9208 §4.3: every mailbox of the account shares its one root (none when the
        account is unlimited)."""
        assert isinstance(cmd, c.GetQuotaRoot)
        target, mailbox = await self._located(cmd.mailbox, "r")
        if target.owner is not None:  # the owner's quota is not the user's to see
            shown = target.display(mailbox.name)
            await out.write(responses.quotaroot(shown, [], utf8=self._utf8))
            return r.OK_GETQUOTAROOT
        resources = await self._quota_resources()
        roots = [QUOTA_ROOT] if resources else []
        lines = [responses.quotaroot(mailbox.name, roots, utf8=self._utf8)]
        if resources:
            lines.append(responses.quota(QUOTA_ROOT, resources))
        await out.write(b"".join(lines))
        return r.OK_GETQUOTAROOT

    async def _setquota(self, cmd: c.Command, out: Output) -> Reply:
        return r.NO_SETQUOTA  # RFC 9208 §4.2: limits are set by the administrator

    # -- METADATA (RFC 5464) ---------------------------------------------------------------

    async def _metadata_target(self, name: str) -> tuple[_Target | None, Mailbox | None]:
        """The mailbox a METADATA command names, None for the server (""); NO [NONEXISTENT]
        for a mailbox that does not exist (§3.3), NO [NOPERM] for another user's mailbox
        without "l" and one of "rswip" (§3.3 with RFC 4314)."""
        if name == "":
            return None, None
        target, mailbox = await self._located(name, "l")
        if target.rights is not None and not target.rights & set("rswip"):
            raise _Abort(r.NO_PERMISSION)
        return target, mailbox

    async def _getmetadata(self, cmd: c.Command, out: Output) -> Reply:
        assert isinstance(cmd, c.GetMetadata)
        target, mailbox = await self._metadata_target(cmd.mailbox)
        account_id = self._account.id if target is None else target.account_id
        try:
            stored = await self.store.get_metadata(
                account_id, None if mailbox is None else mailbox.id, cmd.entries
            )
        except NotFound:  # deleted since the lookup: not the selected mailbox's BYE
            return r.NO_NO_MAILBOX
        if target is not None and target.owner is not None:
            # The owner's /private entries are the owner's (module notes of .metadata); a
            # grantee reads the /shared ones (RFC 5464 §3.3 with RFC 4314).
            stored = {n: v for n, v in stored.items() if n.startswith(md.SHARED_PREFIX)}
        entries = {**stored, **md.computed_entries(mailbox, self.settings.metadata_admin)}
        items = md.select(entries, cmd.entries, cmd.depth)
        longest = 0
        if cmd.maxsize is not None:  # §4.2.1
            longest = max(
                (len(v) for _, v in items if v is not None and len(v) > cmd.maxsize), default=0
            )
            items = [(n, v) for n, v in items if v is None or len(v) <= cmd.maxsize]
        if items:
            await out.write(
                responses.metadata(
                    cmd.mailbox, md.entry_values(items, utf8=self._utf8), utf8=self._utf8
                )
            )
        if longest:
            return r.OK_GETMETADATA.with_code(responses.metadata_longentries(longest))
        return r.OK_GETMETADATA

    async def _setmetadata(self, cmd: c.Command, out: Output) -> Reply:
        assert isinstance(cmd, c.SetMetadata)
        target, mailbox = await self._metadata_target(cmd.mailbox)
        if target is not None and target.owner is not None:
            return r.NO_PERMISSION  # another user's entries are read-only here
        entries = dict(cmd.entries)  # a name given twice: the last value stands
        read_only = md.SPECIALUSE if mailbox is not None else md.ADMIN
        if read_only in entries:
            return r.NO_METADATA_READ_ONLY
        limit = self.settings.metadata_max_value_size
        if any(value is not None and len(value) > limit for value in entries.values()):
            return r.NO_METADATA_MAXSIZE.with_code(responses.metadata_maxsize(limit))  # §4.3
        mailbox_id = None if mailbox is None else mailbox.id
        try:
            await self.store.set_metadata(
                self._account.id, mailbox_id, entries, self.settings.metadata_limits
            )
        except NotFound:  # deleted since the lookup: not the selected mailbox's BYE
            return r.NO_NO_MAILBOX
        except TooManyEntries:
            return r.NO_METADATA_TOOMANY
        except QuotaExceeded:
            return r.NO_METADATA_OVERQUOTA
        if self._notifier is not None:  # RFC 5465 §5: the session's own change is not echoed
            await self._notifier.absorb_metadata(self.store, mailbox_id or 0)
        return r.OK_SETMETADATA

    # -- ACL (RFC 4314, :mod:`.acl`) ---------------------------------------------------------

    async def _grantee(self, identifier: str) -> int | str:
        """An identifier's store form: an account id, or "anyone"/"authenticated"."""
        if acl.is_special(identifier):
            return identifier.lower()
        account = await self._owner(identifier)
        if account is None:
            raise _Abort(r.NO_UNKNOWN_IDENTIFIER)
        return account.id

    async def _setacl(self, cmd: c.Command, out: Output) -> Reply:
        """SETACL and DELETEACL (RFC 4314 §3.1, §3.2): "a" on the mailbox (§4)."""
        assert isinstance(cmd, c.SetAcl | c.DeleteAcl)
        change = acl.RightsChange("=", frozenset())  # DELETEACL: no rights, no entry
        if isinstance(cmd, c.SetAcl):
            try:
                change = acl.parse_rights(cmd.rights)
            except acl.BadRights:
                return r.BAD_RIGHTS
        _, mailbox = await self._located(cmd.mailbox, "a")
        identifier, negative = acl.split_negative(cmd.identifier)
        grantee = await self._grantee(identifier)
        if grantee == mailbox.account_id:
            return r.NO_OWNER_RIGHTS  # "-owner" too: the owner's rights are not taken (§2)
        # "+" and "-" apply in the store's transaction: concurrent SETACLs lose nothing.
        await self.store.set_acl(
            mailbox.id, grantee, "".join(change.rights), change.mode, negative=negative
        )
        return r.OK_SETACL if isinstance(cmd, c.SetAcl) else r.OK_DELETEACL

    async def _getacl(self, cmd: c.Command, out: Output) -> Reply:
        """GETACL (RFC 4314 §3.3): the owner's implicit entry first, then the stored ones."""
        assert isinstance(cmd, c.GetAcl)
        target, mailbox = await self._located(cmd.mailbox, "a")
        owner = self._account.address if target.owner is None else target.owner
        entries = [(owner, acl.format_rights(acl.ALL_RIGHTS))]
        entries += [
            (entry.listed_identifier, acl.format_rights(entry.rights))
            for entry in await self.store.get_acl(mailbox.id)
        ]
        await out.write(responses.acl(target.display(mailbox.name), entries, utf8=self._utf8))
        return r.OK_GETACL

    async def _listrights(self, cmd: c.Command, out: Output) -> Reply:
        """LISTRIGHTS (RFC 4314 §3.4): the owner has every right, required, and none can be
        taken from them ("-owner": nothing); anyone else may be granted, or denied, each right
        alone (and "c", "d", §2.1.1)."""
        assert isinstance(cmd, c.ListRights)
        target, mailbox = await self._located(cmd.mailbox, "a")
        identifier, negative = acl.split_negative(cmd.identifier)
        grantee = await self._grantee(identifier)
        shown = target.display(mailbox.name)
        if grantee == mailbox.account_id:
            required = "" if negative else acl.format_rights(acl.ALL_RIGHTS)
            line = responses.listrights(shown, cmd.identifier, required, (), utf8=self._utf8)
        else:
            line = responses.listrights(shown, cmd.identifier, "", acl.GRANTABLE, utf8=self._utf8)
        await out.write(line)
        return r.OK_LISTRIGHTS

    async def _myrights(self, cmd: c.Command, out: Output) -> Reply:
        """MYRIGHTS (RFC 4314 §3.5): any right at all lets the user ask (§4)."""
        assert isinstance(cmd, c.MyRights)
        target, mailbox = await self._located(cmd.mailbox, "")
        rights = acl.ALL_RIGHTS if target.rights is None else target.rights
        shown = target.display(mailbox.name)
        await out.write(responses.myrights(shown, acl.format_rights(rights), utf8=self._utf8))
        return r.OK_MYRIGHTS

    async def _compress(self, cmd: c.Command, out: Output) -> Reply:
        assert isinstance(cmd, c.Compress)
        if cmd.mechanism != "DEFLATE":
            return r.BAD_COMPRESS_MECHANISM
        if self._compressing:
            return r.NO_COMPRESSION_ACTIVE
        return r.OK_COMPRESS

    async def _notify(self, cmd: c.Command, out: Output) -> Reply:
        """NOTIFY SET / NONE (RFC 5465 §3.1); the pending changes of the selected mailbox
        follow as for NOOP (it is in :data:`_POLLING`)."""
        assert isinstance(cmd, c.Notify)
        try:
            notifier = Notifier(
                self._account.id, plan(cmd), max_mailboxes=self.settings.notify_max_mailboxes
            )
            lines = await notifier.start(
                self.store, self._selected_id(), condstore=self._condstore, utf8=self._utf8
            )
        except NotifyRefused as refused:
            return refused.reply  # §3.1: a refused NOTIFY changes nothing
        self._notifier = notifier
        if lines:
            await out.write(b"".join(lines))
        return OK_NOTIFY

    async def _idle(self, cmd: c.Command, out: Output) -> None:
        await out.write(responses.continuation("idling"))
        if self._selected is not None:
            await self._announce(out, allow_expunge=True)
        self._idle_tag = cmd.tag

    # -- selected (RFC 9051 §6.4) ------------------------------------------------------------

    async def _close(self, cmd: c.Command, out: Output) -> Reply:
        view = self._view
        # RFC 4314 §4: without "e", CLOSE closes without expunging, and still answers OK.
        may_expunge = view.rights is None or "e" in view.rights
        if isinstance(cmd, c.Close) and not view.read_only and may_expunge:
            with contextlib.suppress(NotFound):  # deleted meanwhile: nothing left to expunge
                await self.store.expunge(view.mailbox_id)  # RFC 9051 §6.4.1: silently
        self._selected = None
        self._saved = []
        return r.OK_CLOSE if isinstance(cmd, c.Close) else r.OK_UNSELECT

    async def _expunge(self, cmd: c.Command, out: Output) -> Reply:
        assert isinstance(cmd, c.Expunge)
        view = self._writable()
        self._require(view, "e")  # RFC 4314 §4
        uids = None if cmd.uids is None else self._resolve(cmd.uids, uid=True)
        if uids == [] or not await self.store.expunge(view.mailbox_id, uids):
            return r.OK_EXPUNGE
        await self._sync()
        if self._qresync:
            # RFC 7162 §3.2.7, §3.2.9: at least one expunged under QRESYNC, the new
            # HIGHESTMODSEQ in the tagged OK (a client keeps it as its resync point).
            return r.OK_EXPUNGE.with_code(responses.highestmodseq(view.modseq))
        return r.OK_EXPUNGE

    async def _search(self, cmd: c.Command, out: Output) -> Reply:
        assert isinstance(cmd, c.Search)
        view = self._view
        options = cmd.return_options
        if options is None and self._rev2:
            options = frozenset({"ALL"})  # RFC 9051 §6.4.4: IMAP4rev2 answers ESEARCH
        uids = await self._matching(cmd.key, out)
        numbers = uids if cmd.uid else [seq for seq, _ in view.numbered(uids)]
        modseq = self._result_modseq(cmd.key, uids)
        if options is None:
            await out.write(responses.search(numbers, modseq=modseq))
            return r.OK_SEARCH
        partial = cmd.partial
        shown = options - {"SAVE"}
        if not shown and partial is None and "SAVE" not in options:
            shown = frozenset({"ALL"})  # RFC 4731 §3.1: RETURN () is ALL
        if "SAVE" in options:
            self._saved = _saved_result(uids, shown, partial)
        if not shown and partial is None:
            return r.OK_SEARCH
        window = None
        if partial is not None:
            # RFC 9394 §3.1: the positions asked for, of the result in ascending order.
            found = partial_window(numbers, partial)
            window = (partial, SequenceSet.from_numbers(found) if found else None)
        await out.write(
            responses.esearch(
                cmd.tag,
                uid=cmd.uid,
                minimum=numbers[0] if "MIN" in shown and numbers else None,
                maximum=numbers[-1] if "MAX" in shown and numbers else None,
                all_numbers=(
                    SequenceSet.from_numbers(numbers) if "ALL" in shown and numbers else None
                ),
                count=len(numbers) if "COUNT" in shown else None,
                modseq=modseq,
                partial=window,
            )
        )
        return r.OK_SEARCH

    def _search_engine(self) -> SearchEngine:
        return SearchEngine(
            self._view,
            self.store,
            now=self._now,
            saved=self._saved,
            with_recent=not self._rev2,
        )

    async def _matching(self, key: SearchKey, out: Output) -> list[int]:
        """The visible UIDs ``key`` matches; a MODSEQ key makes the client CONDSTORE-aware."""
        if uses_modseq(key):
            await self._enable_condstore(out)
        return await self._search_engine().run(key)

    def _result_modseq(self, key: SearchKey, uids: list[int]) -> int | None:
        """RFC 7162 §3.1.5/§3.1.6: with a MODSEQ key, the highest MODSEQ of a non-empty result."""
        if not uids or not uses_modseq(key):
            return None
        record = self._view.record
        return max(record(uid).modseq for uid in uids)

    async def _fetch(self, cmd: c.Command, out: Output) -> Reply:
        assert isinstance(cmd, c.Fetch)
        if cmd.vanished and not self._qresync:
            return r.BAD_QRESYNC_NOT_ENABLED  # RFC 7162 §3.2.6
        view = self._view
        uids = self._resolve(cmd.sequence, uid=cmd.uid)
        atts = cmd.atts
        if cmd.changed_since is not None or FetchItem.MODSEQ in atts:
            await self._enable_condstore(out)  # RFC 7162 §3.1
        if cmd.changed_since is not None:
            # RFC 7162 §3.1.4.1: only messages changed since, and MODSEQ is implied.
            since = cmd.changed_since
            if cmd.vanished:  # §3.2.6: expunged since, within the UIDs asked about
                await self._vanished_earlier(cmd.sequence, since, out)
            uids = [uid for uid in uids if view.record(uid).modseq > since]
            if FetchItem.MODSEQ not in atts:
                atts = (*atts, FetchItem.MODSEQ)
        if cmd.partial is not None:
            # RFC 9394 §3 (FETCH): a page of the messages the set names (after CHANGEDSINCE's
            # filter, so that a client pages through what changed), in UID order.
            uids = partial_window(uids, cmd.partial)
        engine = FetchEngine(
            view,
            self.store,
            out,
            uid_command=cmd.uid,
            utf8=self._utf8,
            with_recent=not self._rev2,
            condstore=self._condstore,
            uid_only=self._uidonly,
        )
        outcome = await engine.run(uids, atts)
        if outcome.unknown_cte:
            return r.NO_UNKNOWN_CTE
        if outcome.expunged:
            return r.NO_FETCH_EXPUNGED
        return r.OK_FETCH

    async def _store(self, cmd: c.Command, out: Output) -> Reply:
        """STORE / UID STORE (RFC 9051 §6.4.6) with UNCHANGEDSINCE (RFC 7162 §3.1.3)."""
        assert isinstance(cmd, c.Store)
        view = self._writable()
        uids = self._resolve(cmd.sequence, uid=cmd.uid)
        conditional = cmd.unchanged_since is not None
        if conditional:
            await self._enable_condstore(out)
        # \Recent is the server's (RFC 3501 §2.3.2): a client cannot set or clear it.
        flags = frozenset(cmd.flags) - {"\\Recent"}
        limit = self._flag_rights(view, cmd.mode, flags)
        if limit is not None:
            flags = allowed_flags(flags, frozenset(limit))
        refused: tuple[int, ...] = ()
        if uids and (flags or cmd.mode is FlagOp.REPLACE or conditional):
            update = await self.store.store_flags(
                view.mailbox_id,
                uids,
                cmd.mode,
                flags,
                unchanged_since=cmd.unchanged_since,
                rights=limit,
            )
            # $Junk / $NotJunk set: the spam filter learns, as from a move (.learning); what
            # each message had before is the view's, until own_flags below.
            judged = None if cmd.mode is FlagOp.REMOVE else learning.keyword_judgement(flags)
            changes = [
                (view.flags(record.uid, with_recent=False), record)
                for record in (update.changed if judged is not None else ())
            ]
            view.own_flags(update.changed, cmd.mode, flags, limit)
            refused = update.modified
            if changes:
                await learning.on_flagged(
                    self.store,
                    self._account.id,
                    flags,
                    changes,
                    hostname=self.settings.hostname,
                    limit=self.settings.learn_max_messages,
                )
            if not cmd.silent and any(
                flags_after(known, cmd.mode, flags, limit) != known
                for known in (view.flags(uid, with_recent=False) for uid in update.unchanged)
            ):
                # The store found a message already as the write would make it, unlike the
                # view: another session's change whose hint is still on its way. Read it, so
                # the answer shows the flags as they are (RFC 9051 §6.4.6), not as they were.
                await self._sync()
            await self._list_new_flags(out)  # before the FETCH responses below show them
        # RFC 9051 §6.4.6: the new flags of every message in the set (UID as §7.5.2 wants of
        # every FETCH a UID command causes, and IMAP4rev2 of every unsolicited one); RFC 7162
        # §3.1.3: a conditional STORE reports MODSEQ even when .SILENT.
        if not cmd.silent or conditional:
            with_recent = not self._rev2
            skip = set(refused)
            lines = []
            for uid in uids:
                if uid in skip:
                    continue
                items = []
                if not cmd.silent:
                    items.append(responses.flags_item(view.flags(uid, with_recent=with_recent)))
                if self._condstore:
                    items.append(responses.modseq_item(view.record(uid).modseq))
                lines.append(self._fetch_line(view, uid, items))
            if lines:
                await out.write(b"".join(lines))
            if not cmd.silent:  # RFC 9051 §7.5.2: shown here, not again unsolicited
                view.shown(uid for uid in uids if uid not in skip)
        if not refused:
            return r.OK_STORE
        # RFC 7162 §3.1.3 (Example 10): the refused messages' current state follows as
        # unsolicited FETCH, so the client need not ask why.
        await self._sync()
        numbers = refused if cmd.uid else [seq for seq, _ in view.numbered(sorted(refused))]
        return r.OK_STORE_MODIFIED.with_code(responses.modified(SequenceSet.from_numbers(numbers)))

    async def _vanished_earlier(self, sequence: SequenceSet, since: int, out: Output) -> None:
        """RFC 7162 §3.2.6: ``VANISHED (EARLIER)`` for the UIDs of ``sequence`` expunged after
        MODSEQ ``since``. ``*`` reaches the highest UID ever assigned, not only the highest
        present, so a client asking ``1:*`` hears of an expunged last message too."""
        view = self._view
        if sequence.saved:
            return  # "$" names visible messages only
        asked = sequence.resolve(max(view.uidnext - 1, 1))
        visible = set(view.uids)
        gone = [
            uid
            for uid in await self.store.expunged_since(view.mailbox_id, since)
            if uid in asked and uid not in visible
        ]
        if gone:
            await out.write(responses.vanished(SequenceSet.from_numbers(gone), earlier=True))

    async def _sort(self, cmd: c.Command, out: Output) -> Reply:
        """SORT / UID SORT (RFC 5256 §3); with RETURN, ESORT (RFC 5267 §3)."""
        assert isinstance(cmd, c.Sort)
        view = self._view
        uids = await self._matching(cmd.key, out)
        infos = await self._infos(uids) if needs_metadata(cmd.criteria) else {}
        ordered = sort_uids(uids, cmd.criteria, view.record, infos)
        numbers = ordered if cmd.uid else [view.seq_of(uid) for uid in ordered]
        modseq = self._result_modseq(cmd.key, uids)
        options = cmd.return_options
        if options is None:
            await out.write(responses.sort(numbers, modseq=modseq))
            return r.OK_SORT
        shown = options or ({"ALL"} if cmd.partial is None else set())
        partial = None
        if cmd.partial is not None:
            # RFC 5267 §4.4, RFC 9394 §3.1: positions of the sorted result, in sort order.
            window = partial_window(numbers, cmd.partial)
            partial = (cmd.partial, ordered_set(window) if window else None)
        # RFC 5267 §3.1: MIN and MAX are the first and last in sort order; ALL keeps the order.
        await out.write(
            responses.esearch(
                cmd.tag,
                uid=cmd.uid,
                minimum=numbers[0] if "MIN" in shown and numbers else None,
                maximum=numbers[-1] if "MAX" in shown and numbers else None,
                all_numbers=ordered_set(numbers) if "ALL" in shown and numbers else None,
                count=len(numbers) if "COUNT" in shown else None,
                modseq=modseq,
                partial=partial,
            )
        )
        return r.OK_SORT

    async def _thread(self, cmd: c.Command, out: Output) -> Reply:
        """THREAD / UID THREAD (RFC 5256 §3)."""
        assert isinstance(cmd, c.Thread)
        algorithm = ALGORITHMS.get(cmd.algorithm)
        if algorithm is None:
            return r.BAD_THREAD_ALGORITHM
        view = self._view
        uids = await self._matching(cmd.key, out)
        infos = await self._infos(uids)
        threads = algorithm([thread_message(uid, infos.get(uid), view.record(uid)) for uid in uids])
        if not cmd.uid:
            threads = renumber(threads, view.seq_of)
        await out.write(responses.thread(threads))
        return r.OK_THREAD

    async def _infos(self, uids: list[int]) -> dict[int, MessageInfo]:
        """Parsed metadata of ``uids``, in batches (one expunged meanwhile is left out)."""
        infos: dict[int, MessageInfo] = {}
        mailbox = self._view.mailbox_id
        for start in range(0, len(uids), INFO_BATCH):
            infos.update(await self.store.message_infos(mailbox, uids[start : start + INFO_BATCH]))
        return infos

    async def _copy(self, cmd: c.Command, out: Output) -> Reply:
        """COPY / MOVE and their UID forms (RFC 9051 §6.4.7, §6.4.8; RFC 4315 COPYUID)."""
        assert isinstance(cmd, c.Copy | c.Move)
        move = isinstance(cmd, c.Move)
        view = self._writable() if move else self._view
        if move:
            self._require(view, "te")  # RFC 6851 §3.3 with RFC 4314 §4
        uids = self._resolve(cmd.sequence, uid=cmd.uid)
        # RFC 9051 §6.4.7 TRYCREATE; RFC 4314 §4: "i" on the target.
        where, target = await self._located(cmd.mailbox, "i", r.NO_TRYCREATE)
        done = r.OK_MOVE if move else r.OK_COPY
        if not uids:
            return done
        # RFC 4314 §4: into another user's mailbox a copy keeps only the flags the user's
        # rights there allow (the copy itself does not fail), dropped in the copying write.
        rights = None if where.rights is None else canonical_rights(where.rights)
        try:
            if move:
                copied = await self.store.move_messages(
                    view.mailbox_id, uids, target.id, rights=rights
                )
            else:
                copied = await self.store.copy_messages(
                    view.mailbox_id, uids, target.id, rights=rights
                )
        except QuotaExceeded:
            return r.NO_OVERQUOTA
        except NotFound:
            await self._sync()  # raises _MailboxGone if it was the source that went
            return r.NO_TRYCREATE
        pairs = copied.pairs
        if not pairs:
            return done
        await self._watch_quota(target.account_id, copied.usage, copied.size, copied.count)
        if target.id == view.mailbox_id:
            self._own_arrivals.update(new for _, new in pairs)
        await self._absorb(target.id)
        await self._learn(view.mailbox_id, target, pairs)
        code = responses.copyuid(
            target.uidvalidity,
            SequenceSet.from_numbers(old for old, _ in pairs),
            SequenceSet.from_numbers(new for _, new in pairs),
        )
        if move:
            # RFC 6851 §4.3: COPYUID in an untagged OK before the EXPUNGE responses.
            await out.write(r.OK_MOVE_UIDS.with_code(code).untagged())
            await self._sync()
            if self._qresync:
                # RFC 6851 §4.4: messages moved, the source's new HIGHESTMODSEQ in the OK.
                return done.with_code(responses.highestmodseq(view.modseq))
            return done
        if target.id == view.mailbox_id:
            await self._sync()
        return done.with_code(code)

    async def _learn(self, source_id: int, target: Mailbox, pairs: list[tuple[int, int]]) -> None:
        """Moving or copying into Junk teaches the spam filter "spam", out of it "ham"."""
        sources = [
            m for m in await self.store.list_mailboxes(self._account.id) if m.id == source_id
        ]
        if not sources or learning.move_judgement(sources[0], target) is None:
            return  # nothing to learn: no reads
        # One past the limit: enough for learning to know (and log) that it stopped short.
        read = pairs[: self.settings.learn_max_messages + 1]
        records = [await self.store.get_message(target.id, new) for _, new in read]
        await learning.on_moved(
            self.store,
            self._account.id,
            sources[0],
            target,
            [record for record in records if record is not None],
            hostname=self.settings.hostname,
            limit=self.settings.learn_max_messages,
        )


#: Commands whose non-UID form names messages by number (RFC 9586 §3: BAD [UIDREQUIRED]).
_NUMBERED: Final = (c.Fetch, c.Store, c.Copy, c.Move, c.Search, c.Sort, c.Thread, c.Replace)


def uidonly_refuses(command: c.Command) -> bool:
    """Whether ``command`` names a message by number: a non-UID form of a command that has
    a UID one, a message-number set in a search program, or QRESYNC's seq-match data
    (RFC 7162 §3.2.5.2), all refused once UIDONLY is enabled (RFC 9586 §3)."""
    if isinstance(command, _NUMBERED) and not command.uid:
        return True
    if isinstance(command, c.Search | c.Sort | c.Thread):
        return uses_message_numbers(command.key)
    if isinstance(command, c.Select):
        return command.qresync is not None and command.qresync.seq_match is not None
    return False


def _saved_result(
    uids: list[int], shown: frozenset[str], partial: tuple[int, int] | None
) -> list[int]:
    """What ``$`` holds after SEARCH RETURN (SAVE …): RFC 5182 §2.4 — the whole result with
    ALL or COUNT or nothing else asked; else only what MIN and MAX return; RFC 9394 §3.2 (its
    Table 1) — with PARTIAL, the messages PARTIAL returns and the MIN/MAX ones, or with
    COUNT every message found."""
    if not uids or shown & {"ALL", "COUNT"} or (not shown and partial is None):
        return uids
    kept = set(partial_window(uids, partial)) if partial is not None else set()
    if "MIN" in shown:
        kept.add(uids[0])
    if "MAX" in shown:
        kept.add(uids[-1])
    return sorted(kept)


def _placeholders(shared: Iterable[str]) -> frozenset[str]:
    """The \\Noselect levels above other users' mailboxes (RFC 2342 §5): the namespace
    root and one per owner."""
    names: set[str] = set()
    for name in shared:
        parts = acl.split_shared(name)
        if parts is not None:
            names.update((acl.OTHER_USERS, acl.OTHER_PREFIX + parts[0]))
    return frozenset(names)


def _handlers() -> dict[type, Handler]:
    s = ImapSession
    table: dict[type, Callable[..., Awaitable[Reply | None]]] = {
        c.Capability: s._capability,
        c.Noop: s._noop,
        c.Check: s._noop,
        c.Logout: s._logout,
        c.Id: s._id,
        c.StartTLS: s._starttls,
        c.Login: s._login,
        c.Authenticate: s._authenticate,
        c.Enable: s._enable,
        c.Select: s._select,
        c.Create: s._create,
        c.Delete: s._delete,
        c.Rename: s._rename,
        c.Subscribe: s._subscribe,
        c.Unsubscribe: s._subscribe,
        c.List: s._list,
        c.Lsub: s._lsub,
        c.Namespace: s._namespace,
        c.Status: s._status,
        c.Append: s._append,
        c.Replace: s._replace,
        c.Idle: s._idle,
        c.Close: s._close,
        c.Unselect: s._close,
        c.Expunge: s._expunge,
        c.Search: s._search,
        c.Fetch: s._fetch,
        c.Store: s._store,
        c.Copy: s._copy,
        c.Move: s._copy,
        c.Sort: s._sort,
        c.Thread: s._thread,
        c.GetQuota: s._getquota,
        c.GetQuotaRoot: s._getquotaroot,
        c.SetQuota: s._setquota,
        c.Compress: s._compress,
        c.Notify: s._notify,
        c.GetMetadata: s._getmetadata,
        c.SetMetadata: s._setmetadata,
        c.SetAcl: s._setacl,
        c.DeleteAcl: s._setacl,
        c.GetAcl: s._getacl,
        c.ListRights: s._listrights,
        c.MyRights: s._myrights,
    }
    return table


_HANDLERS: Final = _handlers()
