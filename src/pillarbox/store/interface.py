"""The one store interface every server uses (DESIGN principle 2).

Implementation notes, binding on every backend:

- **Durable before return.** Every method that writes returns only after the change is on
  stable storage (fsync'd). Backends batch concurrent writers into one transaction/fsync
  (group commit) to stay fast; callers never batch.
- **UIDs** (RFC 9051 §2.3.1.1) are allocated per mailbox, strictly ascending, never reused within
  a UIDVALIDITY; ``uidnext`` only grows. Expunged UIDs never come back.
- **MODSEQ** (RFC 7162 §3) is per mailbox and strictly increases on every change to a message
  (arrival, flag change, expunge); ``highestmodseq`` is the largest assigned. Each write that
  changes a mailbox's messages takes exactly ``highestmodseq + 1`` for all of them, so a writer
  that knew the mailbox up to ``m`` and got ``m + 1`` knows nothing else happened between (an
  IMAP session then skips reading its own change back). Expunges are
  remembered (UID + MODSEQ) so :meth:`Store.expunged_since` can answer QRESYNC after long
  disconnections.
- **Raw bytes are returned byte-identical.** A message blob is immutable and shared by every
  mailbox that holds a copy; it is freed when no mailbox or queue entry refers to it.
- **No backend-specific semantics leak**: callers see value types from :mod:`.types` and errors
  from :mod:`pillarbox.errors` (``NotFound``, ``AlreadyExists``, ``QuotaExceeded``, ``InvalidName``,
  ``StorageError``) only.
- The change feed is a hint (see :class:`~.types.Change`); the MODSEQ queries are the truth.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from pillarbox.mail.model import MessageInfo
from pillarbox.store.types import (
    Account,
    AccountSettings,
    AccountToken,
    AclEntry,
    AcmeAccount,
    AcmeAnswer,
    AcmeCertificate,
    AcmeChallengeRecord,
    AcmeLease,
    ActivityCounts,
    Alias,
    Appended,
    AttemptOutcome,
    Calendar,
    CalendarObject,
    Change,
    Contact,
    Copied,
    DeliveryResult,
    DeliveryTarget,
    DkimKeyRecord,
    DmarcObservation,
    DnssecKey,
    Domain,
    FlagOp,
    FlagUpdate,
    GreylistRules,
    GreyOutcome,
    GreyTriplet,
    Identity,
    LoginHold,
    Mailbox,
    MailboxDelta,
    MailboxSnapshot,
    MailboxStatus,
    Member,
    MessagePage,
    MessageQuery,
    MessageRecord,
    MetadataLimits,
    NewQueueRecipient,
    QueueDepth,
    QueuedMessage,
    QuotaUsage,
    ReceivedReport,
    Replaced,
    SenderListEntry,
    SendingLimits,
    SendingUsage,
    SharedMailbox,
    SieveScript,
    SpamCounts,
    SpamEvidence,
    SpecialUse,
    StsCacheEntry,
    StsFetchFailure,
    StsPolicyRecord,
    SyncChanges,
    ThreadFields,
    TlsReportPost,
    TlsSessionResult,
    TokenKind,
    TotpEnrolment,
    ZoneSerial,
)


class ChangeSubscription(Protocol):
    """An open subscription to one account's changes; iterate it, then close it."""

    def __aiter__(self) -> AsyncIterator[Change]: ...

    async def close(self) -> None: ...

    def watch(self, mailbox_id: int | None) -> None:
        """Also carry the changes of this mailbox of another account (RFC 4314 sharing);
        None stops. One mailbox at a time."""


class Store(Protocol):
    """Everything that persists. Backends: :mod:`.sqlite` (embedded default), PostgreSQL (later)."""

    async def open(self) -> None:
        """Connect and apply pending migrations (numbered, forward-only): ``StoreInUse`` when
        a migration is due while a server runs on the store, unless this store is that server's
        (``open_store(serving=True)``) and the only one (docs/upgrading.md)."""

    async def close(self) -> None:
        """Finish in-flight writes and release every resource."""

    async def check_schema(self) -> None:
        """``SchemaTooNew`` if the database has been upgraded past this code since it was
        opened: a newer Pillarbox (another node, or its admin command) migrated it, and this
        process would go on writing rows without what the new migrations added. ``StoreInUse``
        if a serving PostgreSQL store lost its servers' lock to a migration
        (:mod:`pillarbox.store.postgres.servers`)."""

    # -- domains -------------------------------------------------------------------------------
    async def add_domain(self, name: str) -> Domain: ...
    async def get_domain(self, name: str) -> Domain | None: ...
    async def list_domains(self) -> list[Domain]: ...
    async def remove_domain(self, name: str) -> None:
        """Remove a domain, with its ACME challenge records and the received reports about it
        and its subdomains that no other hosted domain covers (a hosted subdomain or parent
        keeps its own); refused with ``UserError`` while accounts or aliases use it."""

    # -- accounts ------------------------------------------------------------------------------
    async def add_account(
        self,
        address: str,
        password_hash: str,
        *,
        scram_sha256: str | None = None,
        display_name: str = "",
        is_admin: bool = False,
        quota_bytes: int | None = None,
        quota_messages: int | None = None,
    ) -> Account:
        """Create an account with its default mailboxes (``types.DEFAULT_MAILBOXES``)."""

    async def get_account(self, address: str) -> Account | None: ...
    async def get_account_by_id(self, account_id: int) -> Account | None: ...
    async def list_accounts(self, domain: str | None = None) -> list[Account]: ...
    async def list_admins(self, domain: str) -> list[Account]:
        """Who reads ``domain``'s role mailboxes (postmaster@, hostmaster@) that no alias
        names: its admin accounts, else every admin account; by address. One query, not a
        scan of every account."""

    async def set_password(
        self, account_id: int, password_hash: str, scram_sha256: str | None
    ) -> None: ...
    async def set_quota(
        self, account_id: int, quota_bytes: int | None, quota_messages: int | None
    ) -> None: ...
    async def set_display_name(self, account_id: int, display_name: str) -> None: ...
    async def remove_account(self, account_id: int) -> None:
        """Remove an account with its mailboxes and messages."""

    async def quota_usage(self, account_id: int) -> QuotaUsage: ...
    async def set_quota_warned(self, account_id: int, expected: int, level: int) -> bool:
        """Set the account's quota warning level (:attr:`QuotaUsage.warned`) to ``level`` if
        it is still ``expected``; True if it was: of deliveries racing to announce the same
        crossing, one wins. ``NotFound`` for an unknown account."""

    # -- aliases -------------------------------------------------------------------------------
    # -- outbound sending limits (pillarbox.queue.sendlimits) --------------------------------
    async def sending_limits(self, account_id: int) -> SendingLimits:
        """The account's own limits (all ``None`` when it has none)."""
        ...

    async def set_sending_limits(self, account_id: int, limits: SendingLimits) -> None:
        """Replace the account's own limits; ``NotFound`` for an unknown account."""
        ...

    async def sending_usage(self, account_id: int, since: datetime) -> SendingUsage:
        """Messages, recipients and first-time recipients the account sent after ``since``,
        with its own limits: one indexed read."""
        ...

    async def known_recipients(self, account_id: int, addresses: Sequence[str]) -> set[str]:
        """Those of ``addresses`` (store keys) the account has sent to before and still
        remembers."""
        ...

    async def record_sending(
        self,
        account_id: int,
        recipients: Sequence[str],
        at: datetime,
        *,
        window_start: datetime,
        memory_start: datetime,
    ) -> None:
        """One message the account sent to ``recipients`` at ``at`` (counted once each);
        forgets the account's messages sent before ``window_start`` and the recipients last
        sent to before ``memory_start``."""
        ...

    async def add_alias(self, address: str, targets: Sequence[str]) -> Alias: ...
    async def get_alias(self, address: str) -> Alias | None: ...
    async def list_aliases(self, domain: str | None = None) -> list[Alias]: ...
    async def remove_alias(self, address: str) -> None: ...

    # -- mailboxes -----------------------------------------------------------------------------
    async def list_mailboxes(self, account_id: int) -> list[Mailbox]: ...
    async def get_mailbox(self, account_id: int, name: str) -> Mailbox:
        """Look a mailbox up by name (``INBOX`` in any case); ``NotFound`` if absent."""

    async def create_mailbox(
        self, account_id: int, name: str, special_use: SpecialUse | None = None
    ) -> Mailbox: ...
    async def delete_mailbox(self, mailbox_id: int) -> None: ...
    async def rename_mailbox(self, account_id: int, old: str, new: str) -> None:
        """Rename a mailbox and its inferiors; UIDVALIDITY is kept (RFC 9051 §6.3.6).

        Renaming INBOX moves its messages to a new mailbox and leaves INBOX empty.
        """

    async def list_subscriptions(self, account_id: int) -> set[str]: ...
    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None:
        """Subscriptions may name mailboxes that do not exist (RFC 9051 §6.3.7)."""

    # -- METADATA (RFC 5464): entries of a mailbox, or the account's server entries ----------
    # ``mailbox_id`` None names the server entries. Names are canonical (lowercase, checked by
    # the caller: ``pillarbox.imap.metadata``); values are octets. A mailbox's entries go with
    # it when it is deleted and follow it when renamed (§4.1); renaming INBOX copies INBOX's
    # entries to the new mailbox and INBOX keeps them. Each write publishes one
    # ``ChangeKind.METADATA`` change (``mailbox_id`` 0 for server entries).
    async def get_metadata(
        self, account_id: int, mailbox_id: int | None, names: Sequence[str] | None = None
    ) -> dict[str, bytes]:
        """The entries named in ``names`` and every entry below one of them (``/a`` covers
        ``/a/b``), all of them with None; ``NotFound`` if the account has no such mailbox."""

    async def set_metadata(
        self,
        account_id: int,
        mailbox_id: int | None,
        entries: Mapping[str, bytes | None],
        limits: MetadataLimits,
    ) -> None:
        """Set each entry (None removes it), all or none (RFC 5464 §4.3): ``TooManyEntries``
        when a new entry would pass ``limits.max_entries`` for its mailbox or server,
        ``QuotaExceeded`` when the account's entries would grow past ``limits.max_total``
        octets (writes that do not grow them pass even above it); ``NotFound`` for a missing
        mailbox or account."""

    async def list_metadata(self, account_id: int) -> dict[int, dict[str, bytes]]:
        """Every entry of the account by mailbox id (0: server entries); mailboxes without
        entries are left out (IMAP NOTIFY's picture of what the client knows)."""

    # -- access control lists (RFC 4314) ---------------------------------------------------
    async def get_acl(self, mailbox_id: int) -> list[AclEntry]:
        """A mailbox's ACL entries, accounts by address, ordered by identifier; the owner's
        implicit rights are not stored (RFC 4314 §2). NotFound if the mailbox is gone."""

    async def set_acl(
        self,
        mailbox_id: int,
        grantee: int | str,
        rights: str,
        mode: str = "=",
        *,
        negative: bool = False,
    ) -> None:
        """Set the entry of ``grantee`` (an account id, or one of ``ACL_SPECIAL_IDENTIFIERS``)
        to ``rights`` (letters of ``aclrows.STORED_RIGHTS``), or with ``mode`` "+" or "-" add
        or remove them, in one transaction (RFC 4314 §3.1); no rights left removes the entry.
        With ``negative``, the grantee's negative entry (RFC 4314 §2, ``-identifier``): its
        positive one, if any, stays as it was, and the other way round.
        NotFound if the mailbox or the account is gone. Entries go with their mailbox or
        grantee account and stay through a rename (the mailbox id is kept)."""

    async def shared_with(self, account_id: int) -> list[SharedMailbox]:
        """The other accounts' mailboxes on which the entries give this account any right,
        directly or through "anyone"/"authenticated"; one per mailbox, with the rights
        ``aclrows.effective_rights`` makes of those entries (negative ones subtract)."""

    async def mailbox_status(self, mailbox_id: int) -> MailboxStatus: ...
    async def claim_recent(self, mailbox_id: int) -> int:
        """Claim ``\\Recent`` for one IMAP4rev1 session: returns the lowest UID that is recent to
        the caller and moves the mailbox's recent mark past every current message, so no other
        session sees them as recent (RFC 3501 §2.3.2). Concurrent claims of one mailbox may
        share one write (:class:`~pillarbox.store.sharedreads.RecentClaim`): one caller gets
        the messages, the others the new mark."""

    async def lock_maildrop(self, account_id: int) -> bool:
        """Take the account's POP3 maildrop for one session (RFC 1939 §4): False if a session
        holds it already, on this node or on any other sharing the store. Held until
        :meth:`unlock_maildrop` — or, on PostgreSQL, until this node's connection to the
        database ends, so a crashed node's sessions hold nothing."""

    async def unlock_maildrop(self, account_id: int) -> None:
        """Give back what :meth:`lock_maildrop` took (nothing if it was not taken)."""

    # -- messages ------------------------------------------------------------------------------
    async def deliver(
        self,
        raw: bytes,
        info: MessageInfo,
        targets: Sequence[DeliveryTarget],
        *,
        internal_date: datetime | None = None,
    ) -> list[DeliveryResult]:
        """Store one incoming message into several mailboxes with one shared blob.

        One result per target, in order; a target over quota (unless ``beyond_quota``) or
        without the mailbox fails alone. A stored one carries the account's usage after it.
        """

    async def append(
        self,
        mailbox_id: int,
        raw: bytes,
        info: MessageInfo,
        *,
        flags: frozenset[str] = frozenset(),
        internal_date: datetime | None = None,
    ) -> Appended:
        """Append one message; ``QuotaExceeded`` if it does not fit. With the record, the
        account's usage after it (what a quota warning is judged on)."""

    async def replace_message(
        self,
        mailbox_id: int,
        uid: int,
        target_id: int,
        raw: bytes,
        info: MessageInfo,
        *,
        flags: frozenset[str] = frozenset(),
        internal_date: datetime | None = None,
    ) -> Replaced | None:
        """Append one message to ``target_id`` and expunge message ``uid`` of ``mailbox_id``,
        whatever its flags, in one transaction (RFC 8508 REPLACE): both or neither, even
        across a crash. None, with nothing stored, when ``uid`` is no longer there.

        The quota is judged on the net change (:attr:`Replaced.size`, :attr:`Replaced.count`):
        a replacement within one account adds no message, and only the octets the new one has
        beyond the old; ``QuotaExceeded`` stores nothing. Within one mailbox the arrival and
        the expunge take the same MODSEQ (one write, module notes)."""

    async def list_messages(
        self, mailbox_id: int, *, uid_min: int = 1, uid_max: int | None = None
    ) -> list[MessageRecord]:
        """Records in UID order; the whole mailbox by default (SELECT's snapshot)."""

    async def open_mailbox(self, account_id: int, name: str) -> MailboxSnapshot:
        """A mailbox by name (as :meth:`get_mailbox`) with its status and every record, in one
        read: what SELECT needs. Records are made as they are used (:class:`RecordTable`)."""

    async def get_message(self, mailbox_id: int, uid: int) -> MessageRecord | None: ...
    async def message_infos(
        self, mailbox_id: int, uids: Sequence[int], *, with_text: bool = True
    ) -> dict[int, MessageInfo]:
        """Parsed metadata of the given messages (absent UIDs are left out).

        ``with_text=False`` leaves ``header_text`` and ``body_text`` empty: the decoded text is
        most of a message's metadata by size, and ENVELOPE, BODYSTRUCTURE or a list page never
        read it (a HEADER search or the policy's classifier does)."""

    async def read_blob(self, blob_id: str) -> bytes:
        """The raw bytes of a message, byte-identical to what was stored."""

    async def store_flags(
        self,
        mailbox_id: int,
        uids: Sequence[int],
        op: FlagOp,
        flags: frozenset[str],
        *,
        unchanged_since: int | None = None,
        rights: str | None = None,
    ) -> FlagUpdate:
        """Add, remove or replace flags (``aclrows.flags_after``); with ``rights``, the ACL
        rights of a user other than the owner (RFC 4314 §4), flags they do not cover keep
        their state, within the same transaction."""

    async def saved_before(self, mailbox_id: int, before: datetime, limit: int) -> list[int]:
        """UIDs of the mailbox's messages saved into it before ``before`` (their RFC 8514
        SAVEDATE, not their Date or INTERNALDATE), ascending, at most ``limit``: what the
        retention job expunges. ``NotFound`` for an unknown mailbox."""

    async def expunge(self, mailbox_id: int, uids: Sequence[int] | None = None) -> list[int]:
        """Remove messages flagged ``\\Deleted`` (only those in ``uids`` when given, as UID
        EXPUNGE does); returns the UIDs removed, ascending."""

    async def copy_messages(
        self,
        src_mailbox_id: int,
        uids: Sequence[int],
        dest_mailbox_id: int,
        *,
        rights: str | None = None,
    ) -> Copied:
        """Copy messages (flags kept): ``(source uid, new uid)`` pairs in source order, and the
        target account's usage after. ``QuotaExceeded`` stores nothing. With ``rights``, the
        user's on the target (RFC 4314 §4), each copy keeps only the flags they let the user
        set (:func:`~pillarbox.store.aclrows.allowed_flags`), in the same write: no other
        session sees a copy with the others, and the copies take one MODSEQ."""

    async def move_messages(
        self,
        src_mailbox_id: int,
        uids: Sequence[int],
        dest_mailbox_id: int,
        *,
        rights: str | None = None,
    ) -> Copied:
        """Atomic copy + expunge from the source (RFC 6851), ``rights`` as for
        :meth:`copy_messages`; a move within one account changes no usage
        (:attr:`Copied.usage` None). The source's MODSEQ is raised once for the expunges;
        within one mailbox that is the copies' MODSEQ (RFC 6851 §4.4, one per write)."""

    async def search_text(
        self, mailbox_id: int, terms: Sequence[str], *, body_only: bool = False
    ) -> set[int]:
        """UIDs whose decoded text contains every term as a case-insensitive substring
        (RFC 9051 §6.4.4 TEXT; BODY when ``body_only``), answered from the full-text index."""

    async def query_messages(
        self, mailbox_id: int, query: MessageQuery, *, offset: int, limit: int
    ) -> MessagePage:
        """One page (``offset``, at most ``limit`` records) of the messages matching ``query``,
        in its order, with the number matching in all; answered by the database, so a page of a
        35,000-message mailbox costs no more than reading its keys once. ``NotFound`` for an
        unknown mailbox."""

    async def thread_ids(self, mailbox_id: int, uids: Sequence[int]) -> dict[int, int]:
        """The thread of each given message (absent UIDs are left out): a number shared by
        the related messages of the mailbox's account, assigned when each was stored and
        never changed (RFC 8474 §5.2; the rule: :mod:`pillarbox.store.threadrows`)."""

    async def thread_uids(self, mailbox_id: int, thread: int) -> list[int]:
        """UIDs of the mailbox's messages in ``thread``, ascending: RFC 8474 §6 SEARCH
        THREADID and the web's conversation view, one probe of the ``(mailbox, thread)``
        index however large the mailbox (empty for an unknown mailbox or thread)."""

    async def thread_sizes(self, mailbox_id: int) -> list[tuple[int, int]]:
        """The mailbox's threads as ``(thread, messages of the mailbox in it)``, newest
        activity first: by the latest date of their messages (the sent date, else the
        INTERNALDATE, as RFC 5256 §2.2 dates a message), a tie by the highest UID. One grouped
        pass over the ``(mailbox, thread)`` index, which holds the dates (no message row is
        read): what the web's threaded list pages over. Empty for an unknown mailbox."""

    async def thread_fields(self, mailbox_id: int, threads: Sequence[int]) -> list[ThreadFields]:
        """Threading inputs of the mailbox's messages in ``threads``, in UID order, read from
        the ingest metadata without decoding whole structures: the conversations of one page
        of the web's threaded list. Empty for an unknown mailbox."""

    async def activity(
        self, since: datetime, step: timedelta, buckets: int
    ) -> list[ActivityCounts]:
        """Mail per interval (``buckets`` intervals of ``step`` from ``since``), all accounts,
        for the admin dashboard: counted from the messages and the queue entries the store
        holds now (mail deleted for good is not counted; see :class:`ActivityCounts`). One
        scan of the recent messages; not meant for every request."""

    async def changes_since(self, mailbox_id: int, modseq: int) -> list[MessageRecord]:
        """Live messages whose MODSEQ is greater than ``modseq``, in UID order."""

    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]:
        """UIDs expunged with a MODSEQ greater than ``modseq``, ascending."""

    async def mailbox_delta(self, mailbox_id: int, since: int) -> MailboxDelta:
        """The mailbox's status with :meth:`changes_since` and :meth:`expunged_since` of
        ``since``, in one read (``NotFound`` for an unknown mailbox).

        Concurrent calls with the same arguments may share one read, but never one that began
        before the call: the answer reflects every change committed before the call. This is
        how a delivery to a mailbox that a thousand sessions idle on costs one read, not a
        thousand (see :class:`~pillarbox.store.sharedreads.SharedReads`)."""

    # -- DMARC aggregate reports (pillarbox.policy.dmarcreport) --------------------------------
    async def record_dmarc_observation(self, observation: DmarcObservation) -> None:
        """Keep one message's DMARC evaluation for the next aggregate report."""

    async def dmarc_observations(self, until: datetime) -> list[DmarcObservation]:
        """Every kept evaluation received before ``until``, oldest first."""

    async def delete_dmarc_observations(self, ids: Sequence[int]) -> int:
        """Drop the evaluations of these row ids (:attr:`DmarcObservation.id`: those a report
        counted); returns how many. By id, not by time: an evaluation received before a
        report's end but committed after the report read them waits for the next report."""

    # -- reports received about our domains (pillarbox.policy.receivedreports) ---------------
    async def add_received_report(self, report: ReceivedReport) -> bool:
        """Keep ``report``'s summary; False (and nothing changed) if a report of the same
        kind, organization and report id is already kept: one received twice counts once."""
        ...

    async def received_reports(
        self,
        since: datetime,
        *,
        domain: str | None = None,
        kind: str | None = None,
        limit: int = 1000,
    ) -> list[ReceivedReport]:
        """The kept reports whose period ends at or after ``since`` (of ``domain`` or its
        subdomains, and of ``kind``, if given), newest end first, at most ``limit``."""
        ...

    async def delete_received_reports(self, until: datetime) -> int:
        """Forget the reports whose period ended before ``until``; how many."""
        ...

    # -- greylisting (pillarbox.policy.greylisting) ---------------------------------------------
    async def check_greylist(
        self, triplet: GreyTriplet, now: datetime, rules: GreylistRules
    ) -> GreyOutcome:
        """Decide one attempt of ``triplet`` at ``now`` by :meth:`GreylistRules.step` and
        record its memory, atomically: two attempts at once (two nodes) are decided one after
        the other. The step's client count is of the client network's passed, unexpired
        triplets, counted up to ``rules.auto_allow_clients`` (not at all when that is 0)."""
        ...

    async def prune_greylist(self, now: datetime) -> int:
        """Forget the triplets whose memory expired before ``now``; how many."""
        ...

    async def claim_dmarc_report_run(self, period_end: datetime, scope: str, node: str) -> bool:
        """Claim the report run of ``period_end`` for ``scope`` (a policy domain, or ``*`` for
        all) on behalf of ``node``: True for the first caller only, on any node, so a period's
        reports are sent once however many nodes run the job. Other periodic reports claim
        their runs here too, under a scope of their own (TLS-RPT: ``tlsrpt:*``)."""

    # -- TLS-RPT reports (pillarbox.queue.tlsrpt) ----------------------------------------------
    async def record_tls_result(self, result: TlsSessionResult) -> None:
        """Keep one outbound session's TLS outcome for the next TLS-RPT report."""

    async def tls_results(self, until: datetime) -> list[TlsSessionResult]:
        """Every kept result recorded before ``until``, oldest first."""

    async def delete_tls_results(self, ids: Sequence[int]) -> int:
        """Drop the results of these row ids (:attr:`TlsSessionResult.id`: those a report
        counted); returns how many. By id, as :meth:`delete_dmarc_observations`."""

    async def add_tls_report_post(self, post: TlsReportPost) -> int:
        """Keep a report whose POST failed, for retries (RFC 8460 §5.5); returns its id."""

    async def claim_tls_report_post(self, now: datetime, lease: datetime) -> TlsReportPost | None:
        """The pending POST due first (``next_try`` at or before ``now``), its ``next_try``
        moved to ``lease`` in the same step: another node (or this one) does not take it
        again before then, and one that dies while trying leaves it to be retried after.
        None when nothing is due."""

    async def reschedule_tls_report_post(
        self, post_id: int, next_try: datetime, attempts: int
    ) -> None:
        """After a failed try: try again at ``next_try``; ``attempts`` tries made."""

    async def delete_tls_report_post(self, post_id: int) -> None:
        """The POST succeeded or was given up."""

    # -- the MTA-STS policy cache (pillarbox.net.mtasts) ----------------------------------------
    async def save_sts_policy(self, policy: StsPolicyRecord) -> None:
        """Keep the domain's policy as fetched, in place of one fetched before it; one fetched
        after it (by another node) stays. A failed fetch of the domain no later than it is
        forgotten in the same write."""

    async def sts_policies(self, now: datetime) -> list[StsPolicyRecord]:
        """Every kept policy not expired at ``now`` (:attr:`StsPolicyRecord.expires` later),
        the latest fetched first."""

    async def prune_sts_policies(self, now: datetime) -> int:
        """Forget the policies expired at ``now``; how many."""

    async def save_sts_fetch_failure(self, failure: StsFetchFailure) -> None:
        """Keep the domain's failed fetch in place of an earlier one; a later one (another
        node's) stays."""

    async def sts_fetch_failures(self, since: datetime) -> list[StsFetchFailure]:
        """The kept failed fetches at ``since`` or later, the latest first."""

    async def prune_sts_fetch_failures(self, before: datetime) -> int:
        """Forget the failed fetches before ``before``; how many."""

    async def sts_cache_entry(self, domain: str, now: datetime) -> StsCacheEntry:
        """The domain's policy unexpired at ``now`` and its failed fetch, as kept (one read:
        a node looks before it fetches, :mod:`pillarbox.net.mtasts`)."""

    # -- change feed ---------------------------------------------------------------------------
    def subscribe(self, account_id: int) -> ChangeSubscription:
        """Changes to this account's mailboxes from now on (IMAP IDLE, web live updates)."""

    # -- outbound queue ------------------------------------------------------------------------
    async def enqueue(
        self,
        sender: str,
        raw: bytes,
        recipients: Sequence[NewQueueRecipient],
        *,
        ret: str | None = None,
        envid: str | None = None,
        requiretls: bool = False,
    ) -> QueuedMessage:
        """Queue ``raw`` for ``recipients``; ``requiretls``: the RFC 8689 tag (kept with the
        message, read back in :attr:`QueuedMessage.requiretls`)."""

    async def claim_due(
        self, now: datetime, *, limit: int, lease_seconds: float, owner: str
    ) -> list[QueuedMessage]:
        """Claim messages with recipients due at ``now`` (pending or deferred, next attempt
        reached, no live lease held by another owner). Only the due recipients are listed."""

    async def record_attempts(self, message_id: int, outcomes: Sequence[AttemptOutcome]) -> None:
        """Record per-recipient outcomes and release the claim; a message whose recipients are
        all final is removed from the queue."""

    async def list_queue(self) -> list[QueuedMessage]: ...
    async def queue_depth(self) -> QueueDepth:
        """How much waits in the outbound queue: two aggregate queries, no message read
        (cheap enough for every metrics scrape)."""

    async def get_queued(self, message_id: int) -> QueuedMessage | None: ...
    async def retry_queued(self, message_id: int, now: datetime) -> None:
        """Make every non-final recipient due at ``now``."""

    async def remove_queued(self, message_id: int) -> None: ...

    async def wake_queue(self) -> None:
        """Have every queue runner that hears this store (:meth:`on_queue_wake`) scan for due
        work now, as after ``pillarbox queue flush``: on PostgreSQL every node's, by NOTIFY;
        on SQLite only this process's (a server in another process is reached through its
        control socket, :mod:`pillarbox.net.control`)."""

    def on_queue_wake(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the event loop) at each :meth:`wake_queue` this store hears,
        its own included."""

    # -- account settings and issued secrets ---------------------------------------------------
    async def get_settings(self, account_id: int) -> AccountSettings:
        """The account's settings (the defaults until first set); ``NotFound`` for no account."""

    async def set_settings(self, account_id: int, settings: AccountSettings) -> None: ...

    async def list_identities(self, account_id: int) -> list[Identity]:
        """The account's sending identities, the default first, then by address."""

    async def save_identity(self, account_id: int, identity: Identity, *, limit: int) -> Identity:
        """Add (``id`` 0) or replace one of the account's identities and return it as stored;
        one made the default takes that from the others in the same transaction. ``NotFound``
        for no such account or an id that is not the account's; ``UserError`` when adding one
        would pass ``limit`` identities."""

    async def delete_identity(self, account_id: int, identity_id: int) -> None:
        """``NotFound`` unless the identity is the account's."""

    async def correspondents(self, account_id: int, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` addresses the account sent mail to that start with ``prefix``
        (case-insensitive), most recent first: the recipients remembered for sending limits,
        then those of the reputation's correspondent tallies, most written to first. Only the
        account's own rows are read (recipient completion must not enumerate other data)."""

    async def list_contacts(
        self, account_id: int, search: str = "", limit: int | None = None
    ) -> list[Contact]:
        """The account's contacts ordered by label (name, else first address; case-folded),
        only those whose name, addresses or organisation contain ``search`` (case-insensitive)
        when it is given; at most ``limit``."""

    async def get_contact(self, account_id: int, contact_id: int) -> Contact:
        """``NotFound`` unless the contact is the account's."""

    async def contact_by_uid(self, account_id: int, uid: str) -> Contact:
        """The account's contact with that vCard UID (what a CardDAV path names);
        ``NotFound`` when it has none."""

    async def save_contacts(
        self, account_id: int, contacts: Sequence[Contact], *, now: datetime, limit: int
    ) -> list[Contact]:
        """Store ``contacts`` in one transaction and return them as stored. One with ``id`` 0
        is added, or replaces the account's contact with the same ``uid`` (its id and creation
        time kept: a re-imported card updates, RFC 6350 §6.7.6); one with an id replaces that
        contact, keeping its uid. The address book's sync token is raised once and each
        contact stamped with it (``modseq``), with its ETag (:func:`pillarbox.vcard.etag`).
        ``NotFound`` for no such account or an id that is not the account's; ``UserError``
        when the account would pass ``limit`` contacts (nothing is stored then)."""

    async def delete_contact(self, account_id: int, contact_id: int, *, now: datetime) -> None:
        """Remove the contact, leaving a tombstone of its UID (dated ``now``) for
        :meth:`contact_changes`; ``NotFound`` unless the contact is the account's."""

    async def contact_members(self, account_id: int) -> list[Member]:
        """The account's contacts as the address book lists them (UID, ETag, label), by UID,
        without reading their cards."""

    async def contacts_sync_token(self, account_id: int) -> int:
        """The address book's change counter (RFC 6578 §3.2; also its ctag): raised by every
        contact saved or deleted; 0 before the first."""

    async def contact_changes(self, account_id: int, since: int) -> SyncChanges[Contact]:
        """The contacts changed and the UIDs deleted after sync token ``since`` (0: every
        contact), the book's current token and the oldest it still answers."""

    async def list_calendars(self, account_id: int) -> list[Calendar]:
        """The account's calendar collections, by name."""

    async def create_calendar(
        self, account_id: int, calendar: Calendar, *, now: datetime, limit: int
    ) -> Calendar:
        """Add a calendar and return it as stored. ``AlreadyExists`` for a name the account
        has, ``TooManyEntries`` past ``limit`` calendars, ``NotFound`` for no such account."""

    async def update_calendar(self, account_id: int, calendar: Calendar) -> Calendar:
        """Set the display name, colour, description and time zone of the account's calendar
        of that name (its sync token is raised: clients see the change); ``NotFound`` when it
        has none."""

    async def delete_calendar(self, account_id: int, name: str) -> None:
        """Remove the calendar and every object in it; ``NotFound`` unless it is the
        account's."""

    async def calendar_objects(
        self,
        account_id: int,
        calendar: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        scheduling: bool = False,
        uids: Sequence[str] | None = None,
        after: str = "",
        limit: int | None = None,
    ) -> list[CalendarObject]:
        """The calendar's objects by name; with ``start`` or ``end``, only those whose bounds
        (:attr:`CalendarObject.starts`, ``ends``) meet ``[start, end)``; with ``scheduling``,
        only scheduling object resources (RFC 6638 §3.1: those with a Schedule-Tag, told by
        the tag kept beside each object, not by reading the others' bytes); with ``uids``,
        only those of these UIDs (one read for many lookups); at most ``limit``, those named
        after ``after`` (a page: the next begins after the last name of this one; pages go
        in the store's order of names, by code point on SQLite, the database's collation on
        PostgreSQL, where the name index is). ``NotFound`` for no such calendar of the
        account."""

    async def calendar_members(self, account_id: int, calendar: str) -> list[Member]:
        """The calendar's objects as a listing shows them (name, UID, ETag, component, size),
        by name, without reading their bytes. ``NotFound`` for no such calendar."""

    async def calendar_object(self, account_id: int, calendar: str, name: str) -> CalendarObject:
        """``NotFound`` unless the account's calendar holds an object of that name."""

    async def calendar_object_by_uid(
        self, account_id: int, calendar: str, uid: str
    ) -> CalendarObject:
        """The calendar's object with that UID; ``NotFound`` when it has none."""

    async def save_calendar_object(
        self, account_id: int, calendar: str, obj: CalendarObject, *, now: datetime, limit: int,
        if_match: str | None = None, if_none_match: bool = False,
    ) -> CalendarObject:  # fmt: skip
        """Add the object, or replace the calendar's object of the same name, and return it
        as stored (the calendar's sync token raised, and the object's ``modseq`` set to it).
        ``AlreadyExists`` when another object of the calendar has its UID (RFC 4791 §4.1),
        ``TooManyEntries`` when the calendar would pass ``limit`` objects, ``NotFound`` for no
        such calendar of the account; nothing is stored then. Conditional, in the same
        transaction as the write (RFC 9110 §13.1): ``PreconditionFailed`` unless the object
        of that name has the ETag ``if_match`` (when given) or, with ``if_none_match``, there
        is none — a writer that decided from an earlier read writes over nothing it did not
        see."""

    async def delete_calendar_object(
        self, account_id: int, calendar: str, name: str, *, now: datetime
    ) -> None:
        """Remove the object, leaving a tombstone (dated ``now``) for :meth:`calendar_changes`;
        ``NotFound`` unless the account's calendar holds it."""

    async def move_calendar_object(
        self, account_id: int, calendar: str, name: str, target: str, obj: CalendarObject,
        *, now: datetime, limit: int,
    ) -> CalendarObject:  # fmt: skip
        """Move the object ``name`` of ``calendar`` to the account's calendar ``target`` as
        ``obj``, in one transaction: removed from ``calendar`` as
        :meth:`delete_calendar_object` removes it (a tombstone: a client syncing it drops the
        object, RFC 6578 §3.5.1) and stored in ``target`` as :meth:`save_calendar_object`
        stores it (its token raised: a client syncing it fetches the object). Its errors, and
        nothing moved then: ``NotFound`` (no such object or calendar), ``AlreadyExists``
        (``target`` has another object with the UID), ``TooManyEntries``."""

    async def calendar_changes(
        self, account_id: int, calendar: str, since: int
    ) -> SyncChanges[CalendarObject]:
        """The objects changed and the names deleted after sync token ``since`` (0: every
        object), the calendar's current token and the oldest it still answers. ``NotFound``
        for no such calendar."""

    async def prune_tombstones(
        self, *, calendars_before: datetime | None, contacts_before: datetime | None
    ) -> int:
        """Remove the tombstones of calendar objects deleted before ``calendars_before`` and of
        contacts deleted before ``contacts_before`` (None: keep that kind); each collection
        that lost one then refuses tokens older than the last change pruned (RFC 6578 §3.7).
        Returns how many were removed."""

    async def claim_vacation_reply(
        self, account_id: int, sender: str, now: datetime, interval: timedelta
    ) -> bool:
        """Record that the account auto-replies to ``sender`` (compared without case) at
        ``now``, unless it did less than ``interval`` before; True if recorded — the reply is
        due. Atomic, so two deliveries at once send one reply (RFC 3834 §2). Memories older
        than ``interval`` are forgotten. ``NotFound`` for an unknown account."""

    async def add_token(
        self, account_id: int, kind: TokenKind, label: str, digest: str
    ) -> AccountToken:
        """Record a secret by its SHA-256 hex ``digest``; ``AlreadyExists`` if the digest is
        known (a collision means a broken random source, never a coincidence)."""

    async def list_tokens(
        self, account_id: int, kind: TokenKind | None = None
    ) -> list[AccountToken]: ...

    async def remove_token(self, account_id: int, token_id: int) -> None:
        """``NotFound`` unless the token exists *and* belongs to ``account_id``."""

    async def find_token(self, kind: TokenKind, digest: str) -> AccountToken | None:
        """The token of that kind with that digest (a login by app password or API token).

        The answers for :data:`~pillarbox.store.types.KEPT_TOKEN_KINDS` (an ended web session,
        asked on every request) may come from memory: this store's own token writes are seen
        at once, another node's once its notification arrives, and a write nobody announced
        within ``cross_process_delay``."""

    # -- second factor (web login, RFC 6238) ---------------------------------------------------
    async def enable_totp(
        self, account_id: int, sealed_secret: str, recovery_digests: Sequence[str]
    ) -> None:
        """Turn on the account's second factor with this secret and these recovery code
        digests, replacing any earlier enrolment (and its codes) in one write; the last used
        step starts at 0. ``NotFound`` for an unknown account."""

    async def get_totp(self, account_id: int) -> TotpEnrolment | None:
        """The account's enrolment, or None when it has no second factor."""

    async def disable_totp(self, account_id: int) -> bool:
        """Remove the enrolment and its recovery codes; False if there was none."""

    async def claim_totp_step(self, account_id: int, step: int) -> bool:
        """Record that a code of time ``step`` was accepted, unless a code of this step or a
        later one already was (atomic: of two logins racing with one code, one wins). False
        also when the account has no enrolment."""

    async def use_recovery_code(self, account_id: int, digest: str) -> bool:
        """Consume the account's recovery code with this digest; False if it has none such
        (never issued, or used already)."""

    async def replace_recovery_codes(self, account_id: int, digests: Sequence[str]) -> bool:
        """Replace the account's recovery codes (the secret and last used step stay); False
        if the account has no enrolment."""

    async def totp_accounts(self) -> set[int]:
        """The ids of the accounts with a second factor (the admin's account list)."""

    # -- messages two-step web logins hold between their steps (pillarbox.web.loginhold) -------
    async def hold_login_message(self, hold: LoginHold, now: datetime, max_bytes: int) -> bool:
        """Keep ``hold`` in place of any its account held. The unexpired holds of every account
        stay within ``max_bytes`` together (by ``size``; one bound for all nodes): those
        expired at ``now`` go, then those expiring first until this one fits. False, with
        nothing held for the account, when ``hold.size`` alone is over it. ``NotFound`` for an
        unknown account."""

    async def held_login_message(self, account_id: int, sid: str, now: datetime) -> str | None:
        """The sealed text the account holds for session ``sid``; None when it holds none for
        it unexpired at ``now`` (none held, another session's, or expired)."""

    async def drop_login_message(self, account_id: int, sid: str) -> None:
        """Forget what the account holds for session ``sid`` (another session's stays)."""

    async def prune_login_messages(self, now: datetime) -> int:
        """Forget the holds expired at ``now`` (the retention job's sweep); how many."""

    # -- DKIM keys -----------------------------------------------------------------------------
    async def add_dkim_key(self, key: DkimKeyRecord) -> None:
        """Store a new key of a hosted domain; ``NotFound`` for an unknown domain,
        ``AlreadyExists`` if the domain has a key with that selector (selectors are never
        reused: a verifier may still hold the old record)."""

    async def list_dkim_keys(
        self, domain: str, *, include_retired: bool = False
    ) -> list[DkimKeyRecord]:
        """The domain's keys, oldest first; only active ones unless ``include_retired``."""

    async def retire_dkim_key(self, domain: str, selector: str, when: datetime) -> None:
        """Stop signing with a key (it stays listed as retired); ``NotFound`` if absent.
        Retiring a retired key keeps its first retirement time."""

    # -- ACME DNS-01 challenge records (pillarbox.net.acmechallenge; served by pillarbox.dns.hosted)
    async def add_acme_challenge(self, record: AcmeChallengeRecord) -> None:
        """Publish a challenge record; ``NotFound`` for an unknown domain. The same name and
        value again only moves its expiry. Records already expired go meanwhile."""

    async def remove_acme_challenge(self, name: str, value: str) -> None:
        """Withdraw a challenge record; nothing happens if it is not there."""

    async def list_acme_challenges(self, domain: str, now: datetime) -> list[AcmeChallengeRecord]:
        """The records of ``domain``'s zone not expired at ``now``, by name and value."""

    # -- ACME http-01 and tls-alpn-01 answers (pillarbox.net.acmechallenge; every node answers them)
    async def add_acme_answer(self, answer: AcmeAnswer, limit: int) -> None:
        """Share an answer until ``answer.expires``; the same kind, key and value again only
        moves its expiry. ``AlreadyExists`` when the key holds another unexpired value (another
        attempt's), ``TooManyEntries`` when ``limit`` answers of the kind are pending. Answers
        already expired go meanwhile."""

    async def remove_acme_answer(self, kind: str, key: str, value: str) -> None:
        """Withdraw an answer (only with that value: another attempt's is left alone); nothing
        happens if it is not there."""

    async def acme_answer(self, kind: str, key: str, now: datetime) -> str | None:
        """The value under ``kind`` and ``key`` unexpired at ``now``; None if there is none."""

    async def list_acme_answers(self, kind: str, now: datetime, limit: int) -> list[AcmeAnswer]:
        """At most ``limit`` answers of ``kind`` unexpired at ``now``, by key."""

    # -- the cluster's ACME certificate and who renews it (pillarbox.net.acme) -----------------
    async def acme_certificate(self, scope: str) -> AcmeCertificate | None:
        """The certificate stored for ``scope``; None if there is none."""

    async def put_acme_certificate(self, certificate: AcmeCertificate) -> bool:
        """Store ``certificate`` unless the scope's stored one expires as late or later (two
        nodes storing at once: the later expiry stays); whether it was stored."""

    async def acme_account(self, directory: str) -> AcmeAccount | None:
        """The account stored for the CA of ``directory``; None if there is none."""

    async def add_acme_account(self, account: AcmeAccount) -> AcmeAccount:
        """Store ``account`` unless its directory has one already, which this never replaces
        (the CA knows the cluster by that key); the account stored afterwards: this one, or the
        one another node stored first."""

    async def replace_acme_account(self, old_key_pem: bytes, account: AcmeAccount) -> AcmeAccount:
        """Store ``account`` in place of its directory's account of ``old_key_pem`` (one the CA
        deactivated, RFC 8555 §7.3.6), unless that account is no longer the stored one: another
        node replaced it first, and its replacement stays. The account stored afterwards: this
        one, or the one another node put in. A directory with none stored gets ``account``."""

    async def set_acme_account_url(self, directory: str, key_pem: bytes, url: str) -> None:
        """Record the URL the CA named for the account of ``key_pem``; nothing happens if the
        directory's stored account has another key (or there is none)."""

    async def acme_lease(self, scope: str) -> AcmeLease | None:
        """The scope's lease as it stands (expired or not), without taking it; None if there is
        none. For ``pillarbox tls status``: the renewal's own path claims."""

    async def claim_acme_lease(
        self, scope: str, holder: str, now: datetime, until: datetime, *, force: bool = False
    ) -> AcmeLease:
        """Take the scope's lease for ``holder`` until ``until`` if there is none, it expired
        at ``now``, ``holder`` has it, or (``force``) it is only a back-off; the lease as it
        stands afterwards (taken when its holder is ``holder``; its failures are kept)."""

    async def end_acme_lease(self, scope: str, holder: str, failures: int, until: datetime) -> None:
        """``holder``'s attempt ended: with ``failures`` 0 the lease goes; otherwise it becomes
        a back-off until ``until`` counting ``failures``. Nothing happens if ``holder`` no
        longer has it (it lapsed and another node took it)."""

    # -- the zone signing keys of hosted domains (pillarbox.dns.signing) -------------------------
    async def dnssec_keys(self, domain: str) -> list[DnssecKey]:
        """``domain``'s zone keys, one per state at most: active, published, retired (in that
        order); empty if none was made yet."""

    async def add_dnssec_key(self, key: DnssecKey) -> DnssecKey:
        """Store ``key`` unless its domain has a key in its state already, which this never
        replaces (an active key's DS is at the registrar); the key stored in that state
        afterwards: this one, or the one another node stored first. ``NotFound`` if the
        domain is not hosted."""

    async def finish_dnssec_rollover(self, domain: str, now: datetime) -> bool:
        """In one step, ``domain``'s active key becomes retired and its published key active,
        both ``changed`` at ``now`` (:mod:`pillarbox.dns.rollover`); False (and nothing
        changed) unless it has a published key and no retired one."""

    async def remove_dnssec_key(self, key: DnssecKey) -> bool:
        """Remove the stored key equal to ``key`` (same domain, state and key); False if there
        is none (another node removed it, or it changed state)."""

    # -- the SOA serials of the hosted zones (pillarbox.dns.serial) -----------------------------
    async def zone_serial(self, domain: str, digest: bytes, now: int) -> ZoneSerial:
        """The serial of ``domain``'s zone when its content has ``digest``: the stored one if
        it was stored with that digest, else the next one (``dns.serial.next_serial`` at
        ``now``, Unix seconds) stored with it, ``changed``. Of nodes asking at once with one
        new digest, one moves the serial on and the others get it unchanged. Kept when the
        domain is removed: added again, its serial goes on from there."""

    # -- spam filter (pillarbox.policy) ---------------------------------------------------------
    async def spam_model(
        self, account_id: int | None, tokens: Sequence[str]
    ) -> tuple[SpamCounts, dict[str, SpamCounts]]:
        """A classifier model's totals and the counts of those of ``tokens`` it has seen
        (unseen ones are left out); ``account_id`` None is the global model. A model never
        trained has zero totals. One indexed lookup, whatever the model's size."""

    async def spam_evidence(
        self, account_id: int, tokens: Sequence[str], sender_keys: Sequence[str]
    ) -> SpamEvidence:
        """What judging a message for ``account_id`` reads — the global and the account's
        models for ``tokens`` (as :meth:`spam_model`), the account's tallies for
        ``sender_keys`` (as :meth:`sender_reputation`) and its allow/block entries — in one
        round trip. Token counts come from an in-memory cache checked against the model's
        generation. A write by this store is seen by the next call. Another node's (on
        PostgreSQL) once its notification arrived; another process's on SQLite, or a node's
        whose notification was lost, after ``directory_ttl_ms`` (plus at most one read's
        duration), since both stores answer from memory while what they keep is fresh (each
        piece as of the read that kept it)."""

    async def train_spam_model(
        self, account_id: int | None, messages: SpamCounts, tokens: Mapping[str, SpamCounts]
    ) -> None:
        """Add ``messages`` to the model's totals and each token's counts to the token's, in
        one transaction (negative values untrain); no tally goes below zero, and a token whose
        tallies both reach zero is dropped."""

    async def spam_training_mark(self, account_id: int, message_key: str) -> bool | None:
        """How a message (``message_key``: its blob id) was last trained for the account:
        True as spam, False as ham, None never."""

    async def set_spam_training_mark(
        self, account_id: int, message_key: str, spam: bool
    ) -> None: ...

    async def sender_reputation(
        self, account_id: int, keys: Sequence[str]
    ) -> dict[str, SpamCounts]:
        """The account's ham/spam tallies for those sender ``keys`` it has (see
        ``pillarbox.policy.reputation`` for the keys); unknown keys are left out."""

    async def record_sender_reputation(
        self, account_id: int, keys: Sequence[str], delta: SpamCounts
    ) -> None:
        """Add ``delta`` to each key's tallies (a new key starts at zero); none goes below
        zero."""

    async def list_sender_entries(self, account_id: int) -> list[SenderListEntry]:
        """The account's allow and block entries, ordered by pattern."""

    async def set_sender_entry(self, account_id: int, entry: SenderListEntry) -> None:
        """Add the entry, or change the kind of the existing one for ``entry.pattern``;
        ``NotFound`` for an unknown account."""

    async def remove_sender_entry(self, account_id: int, pattern: str) -> None:
        """``NotFound`` if the account has no entry for ``pattern``."""

    # -- Sieve filter scripts (RFC 5228; managed over ManageSieve, RFC 5804) ------------------
    # Names are canonical (``types.sieve_script_name``); the store checks neither the scripts
    # nor the ``[sieve]`` quotas.
    async def list_sieve_scripts(self, account_id: int) -> list[SieveScript]:
        """The account's scripts, ordered by name (code point order)."""

    async def get_sieve_script(self, account_id: int, name: str) -> SieveScript | None: ...

    async def active_sieve_script(self, account_id: int) -> SieveScript | None:
        """The script delivery runs for the account, if one is active."""

    async def put_sieve_script(self, account_id: int, name: str, content: str) -> None:
        """Create the script or replace its content (a replaced script stays active if it
        was); ``NotFound`` for an unknown account."""

    async def set_active_sieve_script(self, account_id: int, name: str | None) -> None:
        """Make ``name`` the one active script (RFC 5804 §2.8), or none with ``None``;
        ``NotFound`` if the account has no such script."""

    async def delete_sieve_script(self, account_id: int, name: str) -> None:
        """``NotFound`` if the account has no such script. Deleting the active one is allowed
        here (the account then has none); ManageSieve refuses it (§2.10)."""

    async def rename_sieve_script(self, account_id: int, old: str, new: str) -> None:
        """``NotFound`` for a missing ``old``, ``AlreadyExists`` for a taken ``new``; the
        active flag moves with the script (§2.11.1)."""

    async def sieve_duplicates(self, account_id: int, now: datetime) -> frozenset[str]:
        """The keys the account's Sieve "duplicate" tests recorded (RFC 7352 §3) that have
        not expired at ``now``."""

    async def track_sieve_duplicates(
        self,
        account_id: int,
        entries: Sequence[tuple[str, datetime]],
        now: datetime,
        max_entries: int,
    ) -> None:
        """Record each (key, expiry) of a Sieve run that finished (RFC 7352 §3.1), a key
        already there getting the new expiry; entries expired at ``now`` are forgotten, and
        past ``max_entries`` those expiring first. ``NotFound`` for an unknown account."""

    async def prune_sieve_duplicates(self, now: datetime) -> int:
        """Forget every account's "duplicate" entries expired at ``now`` (RFC 7352 §3.1: an
        expired one is no duplicate any more), also those of accounts that record nothing
        new (the retention job's sweep); how many went."""
