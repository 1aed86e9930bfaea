"""Value types that cross the store interface: frozen, slotted, backend-neutral.

Times are timezone-aware UTC ``datetime``s. Names are normalised by the callers' rules before they
reach the store (domains lowercase IDNA A-labels; addresses ``local@domain`` with the domain
normalised and the local part lowercased, as Pillarbox treats local parts case-insensitively).
"""

from __future__ import annotations

import bisect
import enum
import hashlib
import secrets
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, TypeVar, overload

from pillarbox.errors import InvalidName, PreconditionFailed

#: RFC 9051 §2.3.2 system flags. ``\\Recent`` is not stored here: it is a per-session notion
#: (see :meth:`pillarbox.store.interface.Store.claim_recent`).
SYSTEM_FLAGS = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"})

INBOX = "INBOX"
#: Hierarchy delimiter of mailbox names (RFC 9051 §5.1.1).
DELIMITER = "/"
#: Longest mailbox name accepted, in characters (after NFC normalisation).
MAX_MAILBOX_NAME = 255


def normalize_mailbox_name(name: str) -> str:
    """The canonical form of a mailbox name, or ``InvalidName``; every backend applies it.

    NFC (RFC 9051 §5.1: Net-Unicode; SELECT must find what CREATE made from a denormalised
    name); ``INBOX`` in any case as the first level is ``INBOX`` (§5.1). Refused: empty names and
    empty levels (leading, trailing or doubled ``/``), control characters (§5.1 item 2), and the
    LIST wildcards ``%`` and ``*`` (§5.1 item 3: such names could not be listed unambiguously).
    """
    name = unicodedata.normalize("NFC", name)
    if not name or len(name) > MAX_MAILBOX_NAME:
        raise InvalidName(f"mailbox name must be 1 to {MAX_MAILBOX_NAME} characters")
    levels = name.split(DELIMITER)
    if any(not level for level in levels):
        raise InvalidName(f"mailbox name {name!r} has an empty hierarchy level")
    if any(ch in "%*" or unicodedata.category(ch) == "Cc" for ch in name):
        raise InvalidName(f"mailbox name {name!r} contains a control or wildcard character")
    if levels[0].upper() == INBOX:
        levels[0] = INBOX
    return DELIMITER.join(levels)


class SpecialUse(enum.StrEnum):
    """RFC 6154 special-use attributes; every account has one mailbox of each but ALL/FLAGGED."""

    ARCHIVE = "\\Archive"
    DRAFTS = "\\Drafts"
    JUNK = "\\Junk"
    SENT = "\\Sent"
    TRASH = "\\Trash"


#: The mailboxes every new account gets (name, special use).
DEFAULT_MAILBOXES: tuple[tuple[str, SpecialUse | None], ...] = (
    (INBOX, None),
    ("Drafts", SpecialUse.DRAFTS),
    ("Sent", SpecialUse.SENT),
    ("Junk", SpecialUse.JUNK),
    ("Trash", SpecialUse.TRASH),
    ("Archive", SpecialUse.ARCHIVE),
)


_FLAG_SPECIALS = frozenset('(){%*"\\]')
_SYSTEM_FLAG_BY_LOWER = {flag.lower(): flag for flag in SYSTEM_FLAGS}


def canonical_flags(flags: frozenset[str]) -> str:
    """Every backend's rule: validate flags and spell system flags canonically (flags are
    case-insensitive, RFC 9051 §2.3.2); returns the stored form (sorted, space-separated).
    Unknown ``\\`` flags cannot be set by clients (§2.3.2)."""
    canonical: set[str] = set()
    for flag in flags:
        if flag.startswith("\\"):
            system = _SYSTEM_FLAG_BY_LOWER.get(flag.lower())
            if system is None:
                raise InvalidName(f"{flag} is not a settable system flag")
            canonical.add(system)
            continue
        if not flag or any(
            ch.isspace() or ch in _FLAG_SPECIALS or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in flag
        ):
            raise InvalidName(f"invalid keyword {flag!r}")
        canonical.add(flag)
    return " ".join(sorted(canonical))


@dataclass(frozen=True, slots=True)
class Domain:
    name: str
    created: datetime


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    address: str
    display_name: str
    #: argon2id PHC string (RFC 9106), for PLAIN/LOGIN/USER-PASS checks.
    password_hash: str
    #: SCRAM-SHA-256 verifier (RFC 5802 §3 StoredKey/ServerKey), see ``pillarbox.auth.passwords``.
    scram_sha256: str | None
    is_admin: bool
    #: ``None`` means unlimited.
    quota_bytes: int | None
    quota_messages: int | None
    created: datetime

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


@dataclass(frozen=True, slots=True)
class Alias:
    """``address`` is ``local@domain``, or ``@domain`` for the domain's catch-all."""

    address: str
    targets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Mailbox:
    id: int
    account_id: int
    name: str
    special_use: SpecialUse | None
    uidvalidity: int
    uidnext: int
    highestmodseq: int


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """The counters STATUS and SELECT report (RFC 9051 §6.3.11), read in one consistent snapshot."""

    mailbox: Mailbox
    messages: int
    unseen: int
    deleted: int
    size: int
    #: The lowest UID not yet claimed as ``\\Recent`` (RFC 3501 §2.3.2): a session whose
    #: messages all lie below it has nothing to claim, and skips the write a claim costs.
    recent_uid: int


@dataclass(frozen=True, slots=True)
class MailboxDelta:
    """What changed in a mailbox after a MODSEQ, with its status, read in one snapshot: how a
    selected IMAP session catches up (RFC 7162 semantics). Shared by every session that asked
    for the same delta at once, hence tuples: nobody may modify it."""

    status: MailboxStatus
    #: Live messages whose MODSEQ is above the one asked about, in UID order.
    changed: tuple[MessageRecord, ...]
    #: UIDs expunged with a MODSEQ above it, ascending.
    expunged: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    bytes_used: int
    messages: int
    bytes_limit: int | None
    messages_limit: int | None
    #: The ``[quota] warning_thresholds`` percentage the account was last warned of; 0: none
    #: (kept by :meth:`Store.set_quota_warned`, read by :mod:`pillarbox.queue.quotawarning`).
    warned: int = 0

    def fits(self, size: int, count: int = 1) -> bool:
        """Whether ``count`` more messages of ``size`` octets in total stay within the quota.
        A change that adds nothing to a resource (a replacement no larger than the message
        it replaces: ``size`` ≤ 0, ``count`` 0) never exceeds that one, even in an account
        already past it (RFC 9208 §4.3.1: refused is what "puts" a mailbox over a limit)."""
        if self.bytes_limit is not None and size > 0 and self.bytes_used + size > self.bytes_limit:
            return False
        return (
            self.messages_limit is None
            or count <= 0
            or self.messages + count <= self.messages_limit
        )

    def added(self, size: int, count: int = 1) -> QuotaUsage:
        """This usage with ``count`` more messages of ``size`` octets in total."""
        # Not dataclasses.replace: that costs ~2 µs, on every append and delivery.
        return QuotaUsage(
            self.bytes_used + size,
            self.messages + count,
            self.bytes_limit,
            self.messages_limit,
            self.warned,
        )

    @property
    def bytes_percent(self) -> int | None:
        """Whole percent of the size limit used (None without one; 100 for a zero limit)."""
        return _percent(self.bytes_used, self.bytes_limit)

    @property
    def messages_percent(self) -> int | None:
        """Whole percent of the message limit used (None without one)."""
        return _percent(self.messages, self.messages_limit)

    @property
    def percent(self) -> int | None:
        """How full the quota is: the fuller of the two limits; None without limits."""
        shares = [p for p in (self.bytes_percent, self.messages_percent) if p is not None]
        return max(shares) if shares else None


def _percent(used: int, limit: int | None) -> int | None:
    if limit is None:
        return None
    return used * 100 // limit if limit else 100


@dataclass(frozen=True, slots=True)
class SendingLimits:
    """An account's own outbound sending limits over the sliding window (24 hours, see
    :mod:`pillarbox.queue.sendlimits`): ``None`` takes the configured default
    (``[submission_limits]``), 0 is unlimited."""

    #: Messages accepted from the account.
    messages: int | None = None
    #: Recipients of those messages (each distinct address once per message).
    recipients: int | None = None
    #: Recipients the account had never sent to before (within its memory of them).
    first_time: int | None = None


@dataclass(frozen=True, slots=True)
class SendingUsage:
    """What an account sent since the start of the window, and its own limits, read together
    (one query per SMTP transaction)."""

    messages: int
    recipients: int
    #: Distinct recipients first sent to in the window.
    first_time: int
    limits: SendingLimits


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One message as it sits in one mailbox. The same blob may sit in several mailboxes."""

    mailbox_id: int
    uid: int
    modseq: int
    flags: frozenset[str]
    internal_date: datetime
    saved_date: datetime
    size: int
    blob_id: str


class RecordTable(Sequence[MessageRecord]):
    """A mailbox's records in UID order, each made on first access (SELECT's snapshot).

    Why: SELECT needs every UID and flag set of the mailbox, but making 35,000
    :class:`MessageRecord` objects costs about 70 ms of CPU on the development VM (frozen
    dataclass construction), most of the 100 ms a SELECT may take. A table holds the UIDs and
    flag sets as lists and makes a record only when one is asked for (FETCH INTERNALDATE, a
    body, SEARCH on dates), keeping it. Immutable to its readers, so sessions may share one.
    """

    __slots__ = ("_made", "_make", "flags", "uids")

    def __init__(
        self, uids: list[int], flags: list[frozenset[str]], make: Callable[[int], MessageRecord]
    ) -> None:
        #: UIDs, ascending; do not modify.
        self.uids = uids
        #: The flags of each, by position; do not modify.
        self.flags = flags
        self._make = make
        self._made: list[MessageRecord | None] = [None] * len(uids)

    @classmethod
    def of(cls, records: Iterable[MessageRecord]) -> RecordTable:
        """A table of records made already (in UID order)."""
        made = list(records)
        return cls([r.uid for r in made], [r.flags for r in made], made.__getitem__)

    def position(self, uid: int) -> int | None:
        index = bisect.bisect_left(self.uids, uid)
        return index if index < len(self.uids) and self.uids[index] == uid else None

    def __len__(self) -> int:
        return len(self.uids)

    @overload
    def __getitem__(self, index: int) -> MessageRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[MessageRecord]: ...
    def __getitem__(self, index: int | slice) -> MessageRecord | list[MessageRecord]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self.uids)))]
        record = self._made[index]
        if record is None:
            record = self._made[index] = self._make(index)
        return record


@dataclass(frozen=True, slots=True)
class MailboxSnapshot:
    """What SELECT reads, in one snapshot: the status and every message."""

    status: MailboxStatus
    records: RecordTable


class FlagOp(enum.Enum):
    """STORE's three modes (RFC 9051 §6.4.6)."""

    ADD = "+"
    REMOVE = "-"
    REPLACE = ""


@dataclass(frozen=True, slots=True)
class FlagUpdate:
    """Result of :meth:`Store.store_flags`.

    ``changed`` are the records whose flags changed (with their new MODSEQ); ``unchanged`` are
    the UIDs that matched but already had the flags; ``modified`` the UIDs refused because their
    MODSEQ exceeded ``unchanged_since`` (RFC 7162 §3.1.3 MODIFIED response code).
    """

    changed: tuple[MessageRecord, ...]
    unchanged: tuple[int, ...]
    modified: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DeliveryTarget:
    """Where one copy of an incoming message goes: an account's mailbox, with initial flags."""

    account_id: int
    mailbox: str = INBOX
    flags: frozenset[str] = frozenset()
    #: Stored even past the account's quota: only for the server's own notice about that
    #: quota (a quota warning must reach the full mailbox it warns about).
    beyond_quota: bool = False


class DeliveryStatus(enum.Enum):
    STORED = "stored"
    OVER_QUOTA = "over-quota"
    NO_MAILBOX = "no-mailbox"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """Per-target outcome of :meth:`Store.deliver`: one full mailbox never fails the others."""

    target: DeliveryTarget
    status: DeliveryStatus
    record: MessageRecord | None = None
    #: The account's usage right after this copy was stored (STORED only), read in the
    #: delivery's own transaction: what quota warnings are judged on, at no extra read.
    usage: QuotaUsage | None = None


@dataclass(frozen=True, slots=True)
class Appended:
    """What :meth:`Store.append` stored: the record, and the account's usage right after it,
    read in the append's own transaction (as :attr:`DeliveryResult.usage`)."""

    record: MessageRecord
    usage: QuotaUsage

    @property
    def size(self) -> int:
        """Octets added to the usage."""
        return self.record.size

    @property
    def count(self) -> int:
        """Messages added to the usage."""
        return 1


@dataclass(frozen=True, slots=True)
class Replaced:
    """What :meth:`Store.replace_message` did: the new message's record, and its account's
    usage right after, read in the replacement's own transaction (as :class:`Appended`)."""

    record: MessageRecord
    usage: QuotaUsage
    #: Octets the replacement added to that usage: the new message's size, less the old
    #: one's when both are that account's (then possibly negative).
    size: int
    #: Messages it added to that usage: 0 within one account, else 1.
    count: int


def replacement_change(source: Mailbox, target: Mailbox, new: int, old: int) -> tuple[int, int]:
    """(octets, messages) that replacing an ``old``-octet message of ``source`` by a
    ``new``-octet one in ``target`` adds to the target account's usage: the net change
    within one account, the whole new message in another's."""
    if source.account_id == target.account_id:
        return new - old, 0
    return new, 1


@dataclass(frozen=True, slots=True)
class Copied:
    """What :meth:`Store.copy_messages` or ``move_messages`` did: ``(source uid, new uid)``
    pairs in source order, and what it added to the target account's usage, read in the
    copy's own transaction (as :attr:`DeliveryResult.usage`)."""

    pairs: list[tuple[int, int]]
    #: The target account's usage right after; None when the copy added nothing to it (no
    #: message copied, or a move within one account).
    usage: QuotaUsage | None = None
    #: Octets the copy added to that usage.
    size: int = 0

    @property
    def count(self) -> int:
        """Messages added to the usage (0 without :attr:`usage`)."""
        return len(self.pairs) if self.usage is not None else 0


class RecipientState(enum.Enum):
    PENDING = "pending"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Filing:
    """The inbound policy's decision on one account's copy, kept with a queued local recipient
    (its mailbox was full at intake) so the retry delivers it as intake would have: to this
    mailbox, with these fields on top, spam or not (spam is never redirected or answered).
    Kept in the store, not read back from the message, so a sender cannot write it."""

    #: INBOX, or Junk for spam (``pillarbox.policy.pipeline.Copy.mailbox``).
    mailbox: str
    spam: bool
    #: ``X-Pillarbox-Spam`` and ``Authentication-Results``, CRLF-terminated.
    fields: bytes


@dataclass(frozen=True, slots=True)
class NewQueueRecipient:
    address: str
    #: RFC 3461 NOTIFY values (``SUCCESS``, ``FAILURE``, ``DELAY``, or ``NEVER``); empty = default.
    notify: frozenset[str] = frozenset()
    orcpt: str | None = None
    #: For a hosted account judged at intake: the policy's decision on its copy.
    filing: Filing | None = None


@dataclass(frozen=True, slots=True)
class QueuedRecipient:
    id: int
    message_id: int
    address: str
    state: RecipientState
    attempts: int
    next_attempt: datetime
    last_reply: str | None
    notify: frozenset[str]
    orcpt: str | None
    delay_notified: bool
    filing: Filing | None = None


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    id: int
    sender: str
    blob_id: str
    size: int
    queued_at: datetime
    #: RFC 3461 RET (``FULL``/``HDRS``) and ENVID, as received.
    ret: str | None
    envid: str | None
    recipients: tuple[QueuedRecipient, ...]
    #: Received with the REQUIRETLS MAIL parameter (RFC 8689 §4.1: the message is tagged):
    #: relayed only over authenticated TLS to servers offering REQUIRETLS (queue.runner).
    requiretls: bool = False


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What one delivery attempt to one recipient came to; recorded by :meth:`record_attempts`."""

    recipient_id: int
    state: RecipientState
    reply: str | None
    #: When to try again (only for ``DEFERRED``).
    next_attempt: datetime | None = None
    delay_notified: bool = False


class ChangeKind(enum.Enum):
    EXISTS = "exists"
    FLAGS = "flags"
    EXPUNGE = "expunge"
    #: A mailbox was created, renamed or deleted; with ``mailbox_id`` 0, any of the account's
    #: may have been (the PostgreSQL feed's re-hint after lost notifications: a deleted
    #: mailbox has no row left to hint by id, so whoever holds one checks that it is there).
    MAILBOXES = "mailboxes"
    #: The account's subscription list changed (``mailbox_id`` 0: subscriptions are by name,
    #: RFC 9051 §6.3.7, and may name no mailbox). IMAP NOTIFY's SubscriptionChange (RFC 5465
    #: §5.5) and its "subscribed" mailbox set (§6.4) follow it.
    SUBSCRIPTIONS = "subscriptions"
    #: A mailbox's METADATA entries changed (RFC 5464), or the account's server entries
    #: (``mailbox_id`` 0). IMAP NOTIFY's MailboxMetadataChange and ServerMetadataChange (RFC
    #: 5465 §5.6, §5.7) follow it.
    METADATA = "metadata"


@dataclass(frozen=True, slots=True)
class Change:
    """A hint that something in an account changed.

    Subscribers treat it as a wake-up, not as the truth: the truth is read back with
    :meth:`Store.changes_since` by MODSEQ, so a lost or coalesced notification (across nodes,
    under load) can never desynchronise a session.
    """

    account_id: int
    mailbox_id: int
    kind: ChangeKind
    modseq: int


#: RFC 4314 §2: the identifiers an ACL entry may name besides an account ("anyone" is every
#: user, anonymous ones too; here every IMAP user has logged in, so both mean the same).
ACL_SPECIAL_IDENTIFIERS = ("anyone", "authenticated")


@dataclass(frozen=True, slots=True)
class AclEntry:
    """One entry of a mailbox's access control list (RFC 4314 §2).

    ``identifier`` is the grantee account's address, or one of
    :data:`ACL_SPECIAL_IDENTIFIERS`; ``rights`` the stored rights letters (the RFC 4314 §2.1
    set, in its order, without the virtual "c" and "d" of §2.1.1: the IMAP layer maps those).
    A ``negative`` entry (RFC 4314 §2, ``-identifier``) takes its rights away from whatever
    the positive entries give; one identifier may have both."""

    identifier: str
    rights: str
    negative: bool = False

    @property
    def listed_identifier(self) -> str:
        """The identifier as RFC 4314 §2 writes the entry: with "-" before a negative one."""
        return "-" + self.identifier if self.negative else self.identifier


@dataclass(frozen=True, slots=True)
class SharedMailbox:
    """A mailbox of another account that an ACL opens to a user (RFC 4314 §2, the "l" right
    and others): the mailbox, its owner's address and the user's rights on it
    (``aclrows.effective_rights`` of the entries naming the user, "anyone" or
    "authenticated")."""

    mailbox: Mailbox
    owner: str
    rights: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataLimits:
    """What :meth:`Store.set_metadata` enforces in its transaction (RFC 5464 §4.1 allows a
    server to bound the number and size of annotations; ``[imap]`` sets them)."""

    #: Entries of one mailbox, and server entries of one account.
    max_entries: int
    #: Octets of entry names and values together, over all of an account's entries.
    max_total: int


# -- web list, account settings and tokens ---------------------------------------------------


class SortKey(enum.Enum):
    """Orders of :meth:`Store.query_messages`; ties are broken by UID in the same direction."""

    ARRIVAL = "arrival"  # internal date (RFC 5256 ARRIVAL)
    DATE = "date"  # Date header, the internal date when absent or unparsable (RFC 5256 §3)
    FROM = "from"
    SUBJECT = "subject"
    SIZE = "size"


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageQuery:
    """Filters and order for one page of a mailbox (the web list, search results, threads).

    Every filter narrows (they combine with AND). ``*_contains`` are case-insensitive
    substrings of the stored sort keys (first From/To/Cc address, decoded subject); ``uids``
    restricts to a set computed elsewhere (e.g. by :meth:`Store.search_text`,
    :meth:`Store.thread_uids`).
    """

    sort: SortKey = SortKey.ARRIVAL
    descending: bool = True
    from_contains: str = ""
    to_contains: str = ""
    subject_contains: str = ""
    since: datetime | None = None
    before: datetime | None = None
    unseen: bool = False
    flagged: bool = False
    uids: frozenset[int] | None = None


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """The outbound queue at one moment (:meth:`Store.queue_depth`), for the metrics
    listener: messages waiting, their recipients not yet final by state, and when the oldest
    message was queued (None for an empty queue). Read from the shared store, so with several
    nodes on one PostgreSQL it is the cluster's queue, not one node's."""

    messages: int = 0
    pending: int = 0
    deferred: int = 0
    oldest: datetime | None = None


@dataclass(frozen=True, slots=True)
class ActivityCounts:
    """Mail in one interval of time, as far as the store still holds it (see
    :meth:`Store.activity`): copies delivered into mailboxes (by arrival), the part of them
    filed in Junk, copies kept in Sent, and outbound messages still queued (by queueing time)."""

    start: datetime
    delivered: int = 0
    junk: int = 0
    sent: int = 0
    queued: int = 0


def activity_series(
    since: datetime,
    step: timedelta,
    buckets: int,
    stored: Iterable[tuple[int, str | None, int]],
    queued: Iterable[tuple[int, int]],
) -> list[ActivityCounts]:
    """Both backends' :meth:`Store.activity`: counts per (interval index, special use) of
    stored messages and per interval of queued ones, as one dense series. Drafts are not mail
    that moved; Junk counts as delivered too (it was accepted and filed)."""
    rows = [{"delivered": 0, "junk": 0, "sent": 0, "queued": 0} for _ in range(buckets)]
    for index, special_use, count in stored:
        if not 0 <= index < buckets or special_use == SpecialUse.DRAFTS:
            continue
        if special_use == SpecialUse.SENT:
            rows[index]["sent"] += count
            continue
        rows[index]["delivered"] += count
        if special_use == SpecialUse.JUNK:
            rows[index]["junk"] += count
    for index, count in queued:
        if 0 <= index < buckets:
            rows[index]["queued"] += count
    return [ActivityCounts(since + step * i, **row) for i, row in enumerate(rows)]


@dataclass(frozen=True, slots=True)
class ThreadFields:
    """What threading (RFC 5256 §3 REFERENCES) reads of one message, as parsed at ingest:
    the ids normalised (no angle brackets), the decoded subject; and whether it is read (a
    conversation's unread count)."""

    uid: int
    internal_date: datetime
    sent_date: datetime | None
    subject: str
    message_id: str
    in_reply_to: str
    references: tuple[str, ...]
    #: The stored thread (RFC 8474 THREADID): the conversation the message belongs to.
    thread: int
    #: It has ``\Seen``.
    seen: bool


@dataclass(frozen=True, slots=True)
class MessagePage:
    """One page of a :class:`MessageQuery`: how many messages match, and the page's records."""

    total: int
    records: tuple[MessageRecord, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountSettings:
    """Per-account preferences kept by the store; delivery applies vacation and forwarding."""

    vacation_enabled: bool = False
    vacation_subject: str = ""
    vacation_body: str = ""
    #: Last day the auto-reply is sent (UTC midnight ends it); None: until switched off.
    vacation_until: datetime | None = None
    forward_to: tuple[str, ...] = ()
    #: Keep a copy in the account's INBOX when forwarding.
    forward_keep_copy: bool = True
    #: Days a message stays in the Junk mailbox after it was saved there; None: the server's
    #: ``[retention] junk_days``; 0: kept until deleted (:mod:`pillarbox.retention`).
    junk_days: int | None = None
    #: The same for the Trash mailbox (``[retention] trash_days``).
    trash_days: int | None = None
    #: The IANA zone the webmail shows times in; "": the browser's (:mod:`pillarbox.web.zone`).
    time_zone: str = ""
    #: The webmail's single-key shortcuts are on (WCAG 2.1.4: off for speech input); kept
    #: with the account so the choice follows its user from browser to browser.
    shortcuts: bool = True
    #: The name of the calendar a client chose as the default (RFC 6638 §9.2
    #: ``schedule-default-calendar-URL``); "": the server's choice
    #: (:func:`pillarbox.calendars.default_calendar`).
    default_calendar: str = ""


def vacation_renewed(before: AccountSettings, after: AccountSettings) -> bool:
    """Whether ``after`` starts a new auto-reply (switched on, or its text changed): senders
    who had the old one get the new one (Sieve's ``:handle``, RFC 5230 §4.2, by default
    derives from the text the same way)."""
    return after.vacation_enabled and (
        not before.vacation_enabled
        or (before.vacation_subject, before.vacation_body)
        != (after.vacation_subject, after.vacation_body)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """A "send as" choice of the webmail (Roundcube's and SOGo's identities): the From address
    and name, an optional Reply-To and a plain-text signature. Which addresses an account may
    use is decided when it sends (the submission From check), not by the store."""

    #: 0 for one not yet stored (:meth:`Store.save_identity` gives it an id).
    id: int = 0
    address: str
    display_name: str = ""
    reply_to: str = ""
    signature: str = ""
    #: Preselected in a new message; at most one of an account's identities.
    is_default: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Contact:
    """One entry of an account's address book (the webmail's Contacts, vCard's FN, EMAIL,
    TEL, ORG, NOTE and UID). The store keeps what it is given; lengths and counts are checked
    by the web layer against ``[contacts]``."""

    #: 0 for one not yet stored (:meth:`Store.save_contacts` gives it an id).
    id: int = 0
    #: RFC 6350 §6.7.6: the card's stable identity; an import with the same UID replaces it.
    uid: str
    display_name: str = ""
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    organization: str = ""
    note: str = ""
    #: The vCard as last received (a CardDAV PUT or an import), kept so that what the
    #: fields above do not hold (ADR, BDAY, PHOTO, types, groups…) survives; None for a
    #: contact made in the webmail. :mod:`pillarbox.vcard` keeps it in step with the fields.
    card: str | None = None
    #: Set by the store: when first saved, and when last replaced.
    created: datetime | None = None
    updated: datetime | None = None
    #: Set by the store on every write: the address book's sync token of the change (RFC 6578),
    #: and the card's strong ETag (:func:`pillarbox.vcard.etag`), kept so that a listing of
    #: the book neither writes nor hashes a card.
    modseq: int = 0
    etag: str = ""

    @property
    def label(self) -> str:
        """What a list shows and sorts by: the name, else the first address."""
        return self.display_name or (self.emails[0] if self.emails else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class Calendar:
    """One of an account's calendar collections (CalDAV, RFC 4791 §4.2). The store keeps what
    it is given; names, lengths and counts are checked by the web layer against
    ``[calendars]``."""

    #: 0 for one not yet stored (:meth:`Store.create_calendar` gives it an id).
    id: int = 0
    #: The collection's path segment, unique per account.
    name: str
    display_name: str = ""
    #: Apple's ``calendar-color`` as the client set it ("#RRGGBB" or "#RRGGBBAA"), or "".
    color: str = ""
    #: RFC 4791 §5.2.1 ``calendar-description`` and §5.2.2 ``calendar-timezone`` (a
    #: VCALENDAR holding one VTIMEZONE), as the client set them, or "".
    description: str = ""
    timezone: str = ""
    #: RFC 6578 §3.2: raised by every change to the calendar or its objects (also its ctag).
    sync_token: int = 0
    created: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CalendarObject:
    """One calendar object resource (RFC 4791 §4.1): the iCalendar object kept as received,
    byte for byte, with what the web layer read from it once, on PUT."""

    id: int = 0
    #: The resource's name in its calendar (the last path segment, e.g. ``<uid>.ics``).
    name: str
    #: RFC 4791 §4.1: the one UID of the object's components, unique in its calendar.
    uid: str
    #: "VEVENT" or "VTODO": the object's one kind of component.
    component: str
    data: bytes
    #: The earliest start and latest end of any instance (UTC), None when unbounded that way
    #: (an infinite RRULE, a to-do without dates): a time-range query (RFC 4791 §9.9) keeps
    #: only objects whose bounds meet its range, before the exact check.
    starts: datetime | None = None
    ends: datetime | None = None
    #: The calendar's ``sync_token`` when the object last changed (set by the store).
    modseq: int = 0
    updated: datetime | None = None
    #: RFC 6638 §3.2.10: the Schedule-Tag of a scheduling object resource (a quoted opaque
    #: string, :func:`new_schedule_tag`), "" for any other object. Kept as the caller gives
    #: it: :func:`pillarbox.calendars.schedule_tag` decides when it changes.
    schedule_tag: str = ""

    @property
    def etag(self) -> str:
        """A strong ETag (RFC 9110 §8.8.3): the digest of the bytes served (also kept beside
        them, for listings: :class:`Member`)."""
        return data_etag(self.data)


def data_etag(data: bytes) -> str:
    """A strong ETag (RFC 9110 §8.8.3) of a resource served as ``data``."""
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def require_precondition(
    name: str, etag: str | None, if_match: str | None, if_none_match: bool
) -> None:
    """RFC 9110 §13.1.1 If-Match, §13.1.2 If-None-Match for a store's conditional write:
    ``PreconditionFailed`` unless the resource ``name`` (its ``etag``, None when there is
    none) is as the writer expects it."""
    if (if_none_match and etag is not None) or (if_match is not None and etag != if_match):
        raise PreconditionFailed(f"{name!r} changed meanwhile")


def new_schedule_tag() -> str:
    """A Schedule-Tag never given before (RFC 6638 §8.2: an opaque quoted string, like an
    ETag): random, not a digest, so an event changed back to an earlier text still gets a
    tag a client holding the earlier one does not match."""
    return '"' + secrets.token_hex(16) + '"'


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """A calendar object or a contact as a collection's Depth-1 PROPFIND lists it (RFC 4918
    §9.1): what its properties need, read from the store without the object's bytes."""

    #: The calendar object's resource name; the contact's UID.
    name: str
    #: The ETag stored beside the object at its last write.
    etag: str
    #: The calendar object's component ("VEVENT", "VTODO"); "" for a contact.
    component: str = ""
    #: The contact's label (:attr:`Contact.label`); "" for a calendar object.
    label: str = ""
    #: The calendar object's size in bytes; None for a contact (one made in the webmail is
    #: written when served).
    size: int | None = None
    #: The calendar object's :attr:`CalendarObject.schedule_tag`; "" for a contact.
    schedule_tag: str = ""
    #: The calendar object's UID; "" for a contact (its UID is :attr:`name`).
    uid: str = ""


_Changed = TypeVar("_Changed")


@dataclass(frozen=True, slots=True)
class SyncChanges(Generic[_Changed]):
    """What changed in a collection after a sync token (RFC 6578 §3.2): the members added or
    changed, the names of those deleted (a calendar object's name, a contact's UID), the
    token that covers them, and the oldest token the collection still answers (a client
    presenting an older one missed pruned deletions: §3.7 ``valid-sync-token``)."""

    changed: list[_Changed]
    deleted: list[str]
    token: int
    oldest: int = 0

    def answers(self, since: int) -> bool:
        """Whether a client's token ``since`` is one this collection can sync from."""
        return self.oldest <= since <= self.token


class TokenKind(enum.Enum):
    """What a random secret issued to an account may be used for."""

    APP_PASSWORD = "app-password"  # IMAP/POP3/SMTP login of one mail client
    API = "api"  # ``Authorization: Bearer`` on the JSON API
    #: A web session its owner logged out of, by the digest of its id: the signed cookie
    #: would otherwise stay good until it expires (``pillarbox.web.session``). Never a login.
    ENDED_SESSION = "ended-session"


#: The kinds a user issues, lists and revokes; the others are the server's own records.
CREDENTIAL_KINDS = (TokenKind.APP_PASSWORD, TokenKind.API)
#: The kinds whose lookups a store keeps in memory like the directory
#: (:mod:`pillarbox.store.directorycache`; every write to tokens forgets them): an ended
#: session is asked about on every request of every web session, and only by the digest of a
#: signed session id, so a client cannot fill the cache with guesses (a login's app password
#: or API token can be anything).
KEPT_TOKEN_KINDS = frozenset({TokenKind.ENDED_SESSION})


@dataclass(frozen=True, slots=True)
class AccountToken:
    """A secret issued to an account; only its SHA-256 digest is stored, never the secret."""

    id: int
    account_id: int
    kind: TokenKind
    label: str
    created: datetime


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    """An account's second factor for the web login (RFC 6238 TOTP). The secret is kept
    sealed (encrypted by the web app under ``data_dir/totp-key``, see
    ``pillarbox.web.totpseal``); recovery codes only as SHA-256 digests."""

    account_id: int
    sealed_secret: str
    #: The last RFC 6238 time step a code was accepted for: no code of it or before is taken
    #: again (replay protection).
    last_step: int
    #: Recovery codes not yet used.
    recovery_left: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginHold:
    """A message being written that a two-step web login holds between its password and code
    steps (``pillarbox.web.loginhold``), so that whichever node serves the code page finds it:
    one per account, for the pending session ``sid``, until ``expires``. Sealed by the web app
    (the store never sees the text)."""

    account_id: int
    sid: str
    sealed: str
    #: What it counts against the holds' bound (the caller's measure of the text it sealed).
    size: int
    expires: datetime


# -- DKIM signing keys (outbound delivery) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AcmeChallengeRecord:
    """A TXT record answering an ACME DNS-01 challenge (RFC 8555 §8.4), published in the zone of
    the hosted ``domain`` by every node's authoritative DNS server until it is removed or
    ``expires`` (a crashed attempt leaves nothing published for long).

    ``name`` is ``_acme-challenge.<identifier>`` (lowercase, no final dot), at or below
    ``domain``; ``value`` is the base64url SHA-256 digest of the key authorization. One name may
    carry several values at once (``example.org`` and ``*.example.org`` share one name).
    """

    domain: str
    name: str
    value: str
    expires: datetime


#: :attr:`AcmeAnswer.kind` of an http-01 token and of a tls-alpn-01 name: the challenge types'
#: own names, the one spelling the attempting node writes and every other node reads.
ACME_HTTP01 = "http-01"
ACME_TLS_ALPN01 = "tls-alpn-01"
#: Seconds a node may take to see an answer another node shared (its tls-alpn-01 copies are
#: refreshed this often; "no http-01 answer pending" is believed this long): the attempt
#: shares its answers and waits twice this before the CA may ask any node.
ACME_ANSWER_LAG = 1.0


@dataclass(frozen=True, slots=True)
class AcmeAnswer:
    """An answer to an ACME http-01 or tls-alpn-01 challenge, shared through the store so that
    whichever node the CA's validation reaches answers it, until removed or ``expires``.

    ``kind`` is ``"http-01"`` (``key`` the token, RFC 8555 §8.3) or ``"tls-alpn-01"`` (``key``
    the lowercase name validated, RFC 8737 §3); ``value`` is the key authorization. A key
    holds one value at a time: a second attempt's different value is refused while the first
    one's is pending.
    """

    kind: str
    key: str
    value: str
    expires: datetime


@dataclass(frozen=True, slots=True)
class AcmeCertificate:
    """The certificate the nodes sharing a store present (``[tls] acme_shared_certificate``):
    obtained by whichever node held the :class:`AcmeLease`, loaded by every other.

    ``scope`` names what it was ordered for, the CA directory and the names (nodes configured
    alike share one); ``chain_pem`` is the leaf and its chain, ``key_pem`` its private key
    (unencrypted PKCS#8 PEM: whoever reads this table can impersonate the server, as with
    :class:`DkimKeyRecord`); ``not_after`` the leaf's expiry, which orders two certificates
    of one scope (the later one wins).
    """

    scope: str
    chain_pem: bytes
    key_pem: bytes
    not_after: datetime


@dataclass(frozen=True, slots=True)
class AcmeAccount:
    """The account the nodes sharing a store hold with one CA (RFC 8555 §7.3): one contact, one
    place to revoke or deactivate, one account against the CA's limit on new ones.

    ``directory`` is the CA's directory URL (another CA, or its staging directory, is another
    account); ``key_pem`` the account's private key (unencrypted PKCS#8 PEM, as
    :attr:`AcmeCertificate.key_pem`: whoever reads this table can order and revoke the
    cluster's certificates), replaced only once the CA deactivated its account (RFC 8555
    §7.3.6); ``url`` the account's URL the CA named when it was registered (§7.3), ``""``
    until then.
    """

    directory: str
    key_pem: bytes
    url: str


class DnssecKeyState(enum.StrEnum):
    """Where a zone key stands in a rollover (:mod:`pillarbox.dns.rollover`): a zone has one
    key in each state at most, and always one ``ACTIVE``."""

    #: In the DNSKEY RRset and signing it, not yet the data: the next key, whose DS goes to
    #: the registrar once every cache holds its DNSKEY.
    PUBLISHED = "published"
    #: Signs everything.
    ACTIVE = "active"
    #: The previous key: still in the DNSKEY RRset and signing it, for validators holding
    #: the parent's old DS, until it is removed.
    RETIRED = "retired"


#: The key states' transitions at a rollover's finish (:mod:`pillarbox.dns.rollover`), in the
#: order a backend applies them (a zone holds one key per state): the active key retires, the
#: published one becomes active. A key is made published (or, a zone's first, active) and
#: leaves retired by being removed; no other transition exists.
DNSSEC_FINISH: tuple[tuple[DnssecKeyState, DnssecKeyState], ...] = (
    (DnssecKeyState.ACTIVE, DnssecKeyState.RETIRED),
    (DnssecKeyState.PUBLISHED, DnssecKeyState.ACTIVE),
)


@dataclass(frozen=True, slots=True)
class DnssecKey:
    """A key a hosted domain's zone is signed with (:mod:`pillarbox.dns.signing`), kept in the
    store so that every node serving the zone signs with the keys whose DS the registrar
    holds. ``key_pem`` is the private key (unencrypted PKCS#8 PEM, ECDSA P-256: whoever reads
    this table can sign the zone); ``created`` when a node made it, ``changed`` when it
    entered ``state`` (``created`` for a key that never changed state).
    """

    domain: str
    key_pem: bytes
    created: datetime
    state: DnssecKeyState
    changed: datetime


@dataclass(frozen=True, slots=True)
class ZoneSerial:
    """A hosted zone's SOA serial (:mod:`pillarbox.dns.serial`), and whether this call moved it
    on: only the node that moved it tells the secondaries (NOTIFY, RFC 1996)."""

    serial: int
    changed: bool


@dataclass(frozen=True, slots=True)
class AcmeLease:
    """Who may ask the CA for a scope's certificate: one node at a time, cluster-wide.

    ``holder`` is the node running an attempt until ``expires`` (a crashed node's lease lapses
    then), or ``""`` after a failed attempt: then no node asks before ``expires`` (the
    back-off, ``failures`` attempts in a row having failed), except for a renewal asked for
    by hand. No lease at all: any node may ask.
    """

    scope: str
    holder: str
    expires: datetime
    failures: int


@dataclass(frozen=True, slots=True)
class DkimKeyRecord:
    """One stored DKIM key of a hosted domain (``pillarbox.queue.dkim.DkimKey`` plus its life).

    ``algorithm`` is the ``a=`` value (``rsa-sha256``, ``ed25519-sha256``); ``retired`` is set
    when a rotation replaced the key: it no longer signs, but its public record stays published
    for a while so mail signed just before the rotation still verifies.
    """

    domain: str
    selector: str
    algorithm: str
    #: Unencrypted PKCS#8 PEM; as sensitive as a password hash.
    private_pem: bytes
    created: datetime
    retired: datetime | None = None

    @property
    def active(self) -> bool:
        return self.retired is None


# -- spam filter (pillarbox.policy) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpamCounts:
    """Ham and spam tallies: the messages a classifier model was trained on, the messages a
    token occurred in, or the messages an account received from one sender. As a delta
    (training, untraining) the values may be negative; stored tallies never are."""

    ham: int = 0
    spam: int = 0


class SenderListKind(enum.Enum):
    """An account's own rule for a sender: always INBOX, or always Junk."""

    ALLOW = "allow"
    BLOCK = "block"


@dataclass(frozen=True, slots=True)
class SenderListEntry:
    """``pattern`` is an address (``a@b.example``) or a domain (``b.example``, which also
    covers its subdomains), lowercase."""

    pattern: str
    kind: SenderListKind


#: Longest Sieve script name accepted, in characters (RFC 5804 §1.6: at least 128 must be allowed).
MAX_SIEVE_SCRIPT_NAME = 128
#: Characters RFC 5804 §1.6 prohibits in script names besides C0/C1 controls and DEL.
_SIEVE_NAME_SEPARATORS = frozenset("\u2028\u2029")


def sieve_script_name(name: str) -> str:
    """The canonical form of a Sieve script name, or ``InvalidName``; every caller (ManageSieve,
    the web, the CLI) applies it before the store sees a name.

    NFC (Net-Unicode, RFC 5198 §2, which RFC 5804 §1.6 requires); refused: the empty name
    (it means "no script" to SETACTIVE, §2.8), names longer than
    :data:`MAX_SIEVE_SCRIPT_NAME` (never truncated, §1.6), control characters (0000–001F,
    007F, 0080–009F) and the line and paragraph separators.
    """
    name = unicodedata.normalize("NFC", name)
    if not name or len(name) > MAX_SIEVE_SCRIPT_NAME:
        raise InvalidName(f"script name must be 1 to {MAX_SIEVE_SCRIPT_NAME} characters")
    if any(unicodedata.category(ch) == "Cc" or ch in _SIEVE_NAME_SEPARATORS for ch in name):
        raise InvalidName(f"script name {name!r} contains a control or separator character")
    return name


@dataclass(frozen=True, slots=True)
class SieveScript:
    """An account's Sieve filter script (RFC 5228) as uploaded; at most one per account is
    ``active``, the one delivery runs. The store keeps the text as given: callers compile it
    (``pillarbox.sieve``) and apply the ``[sieve]`` quotas before storing."""

    name: str
    content: str
    active: bool


#: A classifier model as the store returns it: its totals, and the counts of the tokens asked
#: for that it has seen (unseen ones are left out).
ModelCounts = tuple[SpamCounts, dict[str, SpamCounts]]


@dataclass(frozen=True, slots=True)
class SpamEvidence:
    """Everything the inbound policy reads from the store to judge one message for one
    account, fetched together (``Store.spam_evidence``)."""

    global_model: ModelCounts
    account_model: ModelCounts
    #: The account's tallies for the sender keys asked for that it has.
    reputation: dict[str, SpamCounts]
    #: The account's allow and block entries, ordered by pattern.
    sender_entries: list[SenderListEntry]
    #: The generations of the global and the account's model that the counts were read at
    #: (0: never trained). Each training raises its model's generation, so a caller may keep
    #: what it derived from the counts for as long as these and the totals stay the same.
    generations: tuple[int, int] = (0, 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsSessionResult:
    """One outbound session's TLS outcome, kept until the TLS-RPT report that counts it
    (RFC 8460 §4): the policy that applied and whether a policy-compliant TLS session came of
    it."""

    recorded: datetime
    #: The recipient domain: the Policy Domain the report goes to (§4.4 ``policy-domain``).
    policy_domain: str
    #: ``sts``, ``tlsa`` or ``no-policy-found`` (§4.4 ``policy-type``).
    policy_type: str
    #: §4.5: the MTA-STS policy's lines, or the TLSA records in presentation format.
    policy_strings: tuple[str, ...]
    #: §4.4 ``mx-host``: the MTA-STS policy's MX patterns (empty for other policy types).
    mx_patterns: tuple[str, ...]
    #: "" for a successful session, else a §4.3 result type.
    result_type: str
    receiving_mx: str
    receiving_ip: str
    #: Our address on the connection ("" when no connection was made).
    sending_ip: str = ""
    #: §4.4 ``failure-reason-code``: the error text ("" on success).
    failure_reason: str = ""
    #: The store's row (0 until stored): what a sent report forgets, and no part of its value.
    id: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class StsPolicyRecord:
    """A domain's MTA-STS policy as last fetched (RFC 8461 §3.2, §5.1), kept in the store so
    that a restart does not forget it before its ``max_age`` ends: an attacker who can strip
    the TXT record or block the policy host must not get plaintext delivery by waiting for one
    (§3.3, §10.2). Parsed by :mod:`pillarbox.queue.mtasts`; here only its fields."""

    #: The Policy Domain (a recipient domain, or a smart host's name, §3.4).
    domain: str
    #: The TXT record's ``id`` the policy was fetched under (§3.1).
    policy_id: str
    #: ``enforce``, ``testing`` or ``none``.
    mode: str
    #: The policy's ``mx`` patterns, lowercase.
    mx: tuple[str, ...]
    #: Seconds from ``fetched`` the policy may be cached (§3.2).
    max_age: int
    fetched: datetime

    @property
    def expires(self) -> datetime:
        """The end of its ``max_age`` (§3.2): no longer applied from then on."""
        return self.fetched + timedelta(seconds=self.max_age)


@dataclass(frozen=True, slots=True, kw_only=True)
class StsFetchFailure:
    """A domain's last failed MTA-STS policy fetch (RFC 8461 §3.3), kept in the store so that
    neither a restart nor another node (PostgreSQL) asks the policy host again before the
    retry wait is over, and so that TLS reports still name the failure (RFC 8460 §4.3.2.2).
    A successful fetch after it forgets it."""

    #: The Policy Domain.
    domain: str
    #: The TXT record's ``id`` the fetch was under (a new id is fetched at once).
    policy_id: str
    failed: datetime
    #: RFC 8460 §4.3.2.2 result type (``sts-policy-fetch-error``, ...).
    result_type: str
    #: What went wrong, for the log and the report's ``failure-reason-code``.
    reason: str


@dataclass(frozen=True, slots=True)
class StsCacheEntry:
    """What the store holds of one Policy Domain: its unexpired policy and its last failed
    fetch, either or both absent."""

    policy: StsPolicyRecord | None
    failure: StsFetchFailure | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsReportPost:
    """A TLS-RPT report whose POST to an ``https:`` rua failed, or whose rua could not be
    looked up, kept to be tried again (RFC 8460 §5.5: for up to 24 hours after the first try)
    by whichever node comes first."""

    #: The store's id (0 before it is added).
    id: int = 0
    #: Where to POST; empty while the rua is still to be looked up
    #: (:data:`pillarbox.queue.tlsreporting.LOOKUP_PENDING`).
    url: str
    policy_domain: str
    #: The gzipped report, as first POSTed: every try sends the same bytes.
    body: bytes
    first_try: datetime
    #: Not to be tried before; a claim moves it on by the claim's lease.
    next_try: datetime
    #: Tries made so far.
    attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DmarcObservation:
    """One arriving message's DMARC evaluation, kept until it is reported to the domain owner
    (RFC 9990 §3.1: aggregate reports count messages by source, identifiers and results)."""

    received: datetime
    #: The DMARC Policy Domain: where the record was found (the report is about it).
    policy_domain: str
    #: RFC5322.From domain.
    header_from: str
    #: RFC5321.MailFrom domain ("" for the null reverse-path).
    envelope_from: str
    source_ip: str
    #: What was applied: none, quarantine or reject (RFC 9990 ``ActionDispositionType``).
    disposition: str
    dkim_aligned: bool
    spf_aligned: bool
    #: The SPF result of the MAIL FROM identity, uninterpreted ("" if none was checked).
    spf_domain: str
    spf_result: str
    #: Each DKIM signature checked: (d=, s=, result).
    dkim: tuple[tuple[str, str, str], ...]
    #: The policy record as evaluated, in canonical ``v=DMARC1; …`` form (with its rua).
    policy_record: str
    #: Why a failing message got less than the published policy: an RFC 9990 §3.1.6
    #: ``PolicyOverrideType`` (``policy_test_mode``, ``other``, ``local_policy``…), or "".
    override: str = ""
    #: A comment on ``override`` for the report.
    override_comment: str = ""
    #: How the record was found: ``psl`` or ``treewalk`` (RFC 9990 §3.1.1.5).
    discovery: str = "psl"
    #: The store's row (0 until stored): what a sent report forgets, and no part of its value.
    id: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedReportRow:
    """One line of a report another provider sent about one of our domains.

    A DMARC aggregate report's record: ``source`` the sending IP, ``messages`` its count,
    ``failed`` the messages failing DMARC (neither aligned DKIM nor aligned SPF passed),
    ``disposition``/``dkim``/``spf`` the policy evaluated (RFC 7489 Appendix C), ``detail``
    the raw authentication results. A TLS report's policy: ``source`` the policy type and
    its domain, ``messages`` the sessions, ``failed`` the failed sessions, ``detail`` the
    failure details (RFC 8460 §4.4)."""

    source: str
    messages: int
    failed: int
    disposition: str = ""
    dkim: str = ""
    spf: str = ""
    header_from: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedReport:
    """The summary kept of one received report (:mod:`pillarbox.policy.receivedreports`);
    ``(kind, org_name, report_id)`` names it: a report received twice is kept once."""

    #: ``dmarc`` (aggregate, RFC 7489 §7.2) or ``tlsrpt`` (RFC 8460).
    kind: str
    org_name: str
    report_id: str
    #: The policy domain the report is about (ours).
    domain: str
    begin: datetime
    end: datetime
    received: datetime
    #: Who sent it: the reporter's contact address from the report.
    contact: str = ""
    #: DMARC: the policy published as the reporter saw it (``p=reject``), else "".
    policy: str = ""
    rows: tuple[ReceivedReportRow, ...] = ()

    @property
    def messages(self) -> int:
        return sum(r.messages for r in self.rows)

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.rows)


@dataclass(frozen=True, slots=True)
class GreyTriplet:
    """What greylisting remembers (RFC 6647 §2.2), already normalised by
    :mod:`pillarbox.policy.greylisting`: the client's network (``192.0.2.0/24``), the envelope
    sender ("" for the null sender) and the recipient."""

    client: str
    sender: str
    recipient: str


class GreyOutcome(enum.Enum):
    """What :meth:`~pillarbox.store.interface.Store.check_greylist` decided for a triplet."""

    #: Never seen, or its memory expired: recorded now, deferred.
    NEW = "new"
    #: Seen, but the retry came before the delay was over: deferred again.
    EARLY = "early"
    #: The retry came after the delay, within the retry window: passes, and is remembered.
    RETRIED = "retried"
    #: Passed before and still remembered: passes, and its memory is renewed.
    KNOWN = "known"
    #: Its client network has passed enough other triplets: passes, and is remembered.
    CLIENT = "client"

    @property
    def passes(self) -> bool:
        return self not in (GreyOutcome.NEW, GreyOutcome.EARLY)


@dataclass(frozen=True, slots=True)
class Sighting:
    """A triplet's memory in the store: when it was first tried, whether it passed, and when
    the memory ends (the retry window for one that has not passed, else its lifetime)."""

    first_seen: datetime
    passed: bool
    expires: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class GreylistRules:
    """The timing of greylisting (``[greylisting]``); :meth:`step` is the whole rule, run by
    both backends inside the transaction that reads and writes the triplet."""

    delay: timedelta
    retry_window: timedelta
    lifetime: timedelta
    #: Passed triplets that make a client network pass everything; 0: never.
    auto_allow_clients: int = 0

    def step(
        self, seen: Sighting | None, client_passes: int, now: datetime
    ) -> tuple[GreyOutcome, Sighting]:
        """The outcome of one attempt of a triplet whose memory is ``seen`` (None: none) from a
        client network with ``client_passes`` live passed triplets, and its memory after it."""
        live = seen if seen is not None and seen.expires >= now else None
        if live is not None and live.passed:
            # Renewed at most once per slack (a day, or half a short lifetime), so a sender
            # that keeps writing costs the store one write a day, not one per recipient.
            slack = min(timedelta(days=1), self.lifetime / 2)
            if live.expires - now > self.lifetime - slack:
                return GreyOutcome.KNOWN, live
            return GreyOutcome.KNOWN, Sighting(live.first_seen, True, now + self.lifetime)
        if self.auto_allow_clients and client_passes >= self.auto_allow_clients:
            return GreyOutcome.CLIENT, Sighting(now, True, now + self.lifetime)
        if live is None:
            return GreyOutcome.NEW, Sighting(now, False, now + self.retry_window)
        if now - live.first_seen < self.delay:
            # The delay runs from the first attempt, not the last (postgrey's).
            return GreyOutcome.EARLY, live
        return GreyOutcome.RETRIED, Sighting(live.first_seen, True, now + self.lifetime)
