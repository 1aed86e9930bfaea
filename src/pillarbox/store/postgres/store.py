"""The shared store: PostgreSQL, for many stateless Pillarbox nodes over one database.

Implementation notes (the interface's invariants are in :mod:`pillarbox.store.interface`):

- **Driver**: psycopg 3, async, with ``psycopg_pool``. Chosen over asyncpg for its type hints
  (``mypy --strict`` without stubs), LISTEN/NOTIFY and binary ``bytea`` on the same API, and
  libpq's full connection-string syntax (``options``, TLS, service files) for operators.
- **One operation, one transaction.** Each write runs in its own transaction on a pooled
  connection and returns after COMMIT, with ``synchronous_commit`` on (forced on for our
  sessions if the server has it off): returned means durable. Group commit comes from
  PostgreSQL itself: concurrent transactions' commits share WAL flushes.
- **UID and MODSEQ allocation** take the mailbox row's lock (``UPDATE mailboxes … RETURNING``),
  held to COMMIT: writers to one mailbox, on any node, commit in allocation order, so a reader
  never sees UID *n+1* before UID *n*, and ``highestmodseq`` covers everything it has seen. The
  price is that one mailbox takes one commit (one WAL flush) at a time; different mailboxes run
  in parallel. Quota checks lock the account row, so they are exact across nodes too.
- **Lock order** (see :mod:`.migrations`): mailboxes by id, then accounts by id, then blobs.
  A deadlock or serialization failure that still happens (an operator's concurrent
  ``remove_account``) is retried, up to ``[store.postgres] retries`` times: operations are pure
  functions of the database state, so running one again is safe.
- **Cancellation**: a write is shielded from its caller's cancellation, so a session torn down
  mid-command never leaves the connection half-way; the result is simply dropped (as in the
  SQLite writer). :meth:`PostgresStore.close` waits for such orphaned writes before it closes
  the pool: a write left running on a closed pool, or on a loop that then ends, dies half-way
  through its pipeline instead of committing or rolling back.
- **Change feed**: NOTIFY in the write's transaction, LISTEN on every node (:mod:`.notify`).
- **Migrations** run at open only while no server runs on the store: a serving store (each
  node) holds a shared advisory lock on a connection of its own while open, re-taken when
  that connection breaks (:mod:`.servers`).
- **Kept lookups**: domains, accounts, aliases and settings
  (:mod:`pillarbox.store.directorycache`) and the spam filter's evidence
  (:mod:`pillarbox.store.evidencecache`) are answered from memory while fresh, as on SQLite:
  reading them cost intake ~0.5 ms of CPU per message (round trips), and with the policy on
  every message's ~325 token counts. A write to them names what it changed (its ``forget``
  list), sends that by NOTIFY in its transaction, and forgets it locally once it is done;
  every other node forgets it when the notification arrives. A node whose LISTEN connection
  is down hears nothing: ``directory_ttl_ms`` bounds how long it answers from memory, and
  on reconnecting it forgets everything.
- **Text search**: pg_trgm GIN indexes over the lowercased text, filled behind the writes
  (:meth:`PostgresStore._index_behind_writes`); unindexed text is scanned meanwhile.
- **Blobs** are ``bytea`` rows in the database (``blob_data``): one system to back up and to
  replicate, one transaction covering a message and its bytes on every node. See
  ``docs/scaling.md`` for the measurements and for object storage behind the same interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from pillarbox.blocking import run_blocking
from pillarbox.config import PostgresSection
from pillarbox.errors import (
    AlreadyExists,
    InvalidName,
    NotFound,
    PillarboxError,
    QuotaExceeded,
    SchemaTooNew,
    StorageError,
    UserError,
)
from pillarbox.mail.model import MessageInfo
from pillarbox.store import filingrows
from pillarbox.store.aclrows import (
    acl_entries,
    allowed_flags,
    changed_rights,
    changed_row,
    flags_after,
    merge_shared,
)
from pillarbox.store.blobs import blob_id_of, is_blob_id
from pillarbox.store.directorycache import DirectoryCache
from pillarbox.store.evidencecache import SpamEvidenceCache
from pillarbox.store.feed import ChangeHub, FeedSubscription
from pillarbox.store.postgres import (
    accountdata,
    acmedata,
    calendardata,
    contactdata,
    dmarcdata,
    dnssecdata,
    greylistdata,
    metadata,
    notify,
    receiveddata,
    sendingdata,
    servers,
    sievedata,
    spamdata,
    stsdata,
    tlsdata,
    zonedata,
)
from pillarbox.store.postgres.maildrops import MaildropLocks
from pillarbox.store.postgres.migrations import LATEST_VERSION, schema_version
from pillarbox.store.sharedreads import RecentClaim, SharedReads
from pillarbox.store.spamcache import GLOBAL_MODEL, SpamModelCache
from pillarbox.store.threadrows import thread_keys
from pillarbox.store.types import (
    ACL_SPECIAL_IDENTIFIERS,
    DEFAULT_MAILBOXES,
    DELIMITER,
    INBOX,
    KEPT_TOKEN_KINDS,
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
    ChangeKind,
    Contact,
    Copied,
    DeliveryResult,
    DeliveryStatus,
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
    QueuedRecipient,
    QuotaUsage,
    ReceivedReport,
    RecipientState,
    RecordTable,
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
    activity_series,
    canonical_flags,
    normalize_mailbox_name,
    replacement_change,
)

T = TypeVar("T")
Conn = psycopg.AsyncConnection[TupleRow]
#: A write: runs inside a transaction, appends the changes to announce, returns its result.
Operation = Callable[[Conn, list[Change]], Awaitable[T]]

log = logging.getLogger(__name__)

#: Messages at least this big are hashed on the bounded executor, not on the event loop.
_HASH_OFF_LOOP = 64 * 1024
_FINAL_STATES = [RecipientState.DELIVERED.value, RecipientState.FAILED.value]
_OPEN_STATES = [RecipientState.PENDING.value, RecipientState.DEFERRED.value]
_MAILBOX_COLUMNS = "id, account_id, name, special_use, uidvalidity, uidnext, highestmodseq"
#: RFC 4314: a mailbox's entries, accounts by address (the special identifiers by name).
_ACL_ENTRIES = (
    "SELECT coalesce(a.address, e.special) AS identifier, e.rights, e.denied "
    "FROM mailbox_acl e "
    "LEFT JOIN accounts a ON a.id = e.grantee_id WHERE e.mailbox_id = %s "
    'ORDER BY coalesce(a.address, e.special) COLLATE "C"'
)
#: The other accounts' mailboxes the entries may open to an account, one row per stored row
#: (an identifier's positive and negative entries; ``aclrows.merge_shared`` makes the rights).
_SHARED_WITH = (
    f"SELECT {', '.join('m.' + c for c in _MAILBOX_COLUMNS.split(', '))}, "
    "o.address, e.rights, e.denied "
    "FROM mailbox_acl e JOIN mailboxes m ON m.id = e.mailbox_id "
    "JOIN accounts o ON o.id = m.account_id "
    "WHERE (e.grantee_id = %s OR e.special IS NOT NULL) AND m.account_id <> %s"
)
_RECORD_COLUMNS = (
    "m.uid, m.modseq, m.flags, m.internal_date, m.saved_date, m.size, b.sha256 "
    "FROM messages m JOIN blobs b ON b.id = m.blob"
)
_ACCOUNT_COLUMNS = (
    "id, address, display_name, password_hash, scram_sha256, is_admin, quota_bytes, "
    "quota_messages, created"
)
_MESSAGE_COLUMNS = (
    "mailbox_id, uid, modseq, flags, internal_date, saved_date, size, blob, sent_date, "
    "subject, from_addr, to_addr, cc_addr, message_id, in_reply_to, refs, thread"
)
#: What a write to domains, accounts, aliases or settings makes every node forget.
_DIRECTORY = (notify.DIRECTORY,)
#: Errors after which the whole operation is run again on a fresh transaction.
_RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)


#: Resource knobs of this backend: the ``[store.postgres]`` section of the config, where each
#: is documented (docs/config.md).
PostgresLimits = PostgresSection
_DEFAULT_LIMITS = PostgresLimits()


@dataclasses.dataclass(frozen=True, slots=True)
class _Blob:
    """A message's bytes and metadata, prepared before the transaction."""

    blob_id: str
    raw: bytes
    size: int
    #: MessageInfo JSON without the text fields (those go to ``blob_text``).
    info_json: bytes | None
    header_text: str
    body_text: str


@dataclasses.dataclass(frozen=True, slots=True)
class _SortKeys:
    sent_date: datetime | None
    subject: str
    from_addr: str
    to_addr: str
    cc_addr: str
    message_id: str
    in_reply_to: str
    #: Threading reads them for a whole mailbox; they are thread keys too (.threadrows).
    references: list[str]

    @classmethod
    def of(cls, info: MessageInfo) -> _SortKeys:
        return cls(
            info.sent_date,
            info.subject,
            info.from_addr,
            info.to_addr,
            info.cc_addr,
            info.message_id,
            info.in_reply_to,
            list(info.references),
        )


class PostgresStore:
    """The :class:`~pillarbox.store.interface.Store` on PostgreSQL; see the module notes.

    ``conninfo`` is a libpq connection string or ``postgresql://`` URL; its ``options`` may set
    a ``search_path`` to keep the store in a schema of its own. ``serving`` (a node's store)
    holds the servers' lock while open (:mod:`.servers`).
    """

    def __init__(
        self,
        conninfo: str,
        *,
        limits: PostgresLimits = _DEFAULT_LIMITS,
        clock: Callable[[], float] = time.time,
        serving: bool = False,
    ) -> None:
        self.conninfo = conninfo
        self._limits = limits
        self._serving = serving
        #: The serving store's hold on the servers' shared lock.
        self._presence: servers.Presence | None = None
        self._clock = clock
        self._hub = ChangeHub()
        self._spam_cache = SpamModelCache(limits.spam_cache_tokens)
        self._directory = DirectoryCache(limits.directory_ttl_ms / 1000, limits.directory_entries)
        self._evidence = SpamEvidenceCache(limits.directory_ttl_ms / 1000, limits.directory_entries)
        self._deltas = SharedReads(self._read_delta)
        self._claims = SharedReads(self._claim_write)
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._listener: notify.ChangeListener | None = None
        self._maildrops: MaildropLocks | None = None
        self._channel = ""
        self._indexer: asyncio.Task[None] | None = None
        #: Writes running now (:meth:`_write`), which :meth:`close` lets finish.
        self._writes: set[asyncio.Task[Any]] = set()
        self._text_arrived = asyncio.Event()
        self._queue_wakes: list[Callable[[], None]] = []

    # -- lifecycle -------------------------------------------------------------------------------
    async def open(self) -> None:
        if self._pool is not None:
            raise StorageError("the store is open already")
        conn: Conn | None = None
        try:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.conninfo,
                    autocommit=True,
                    connect_timeout=max(1, int(self._limits.timeout)),
                )
                cur = await conn.execute("SELECT current_schema()")
                row = await cur.fetchone()
                if row is None or row[0] is None:
                    raise StorageError("no schema to create the store in (check search_path)")
                self._channel = notify.channel_for(str(row[0]))
                if self._serving:
                    await servers.join(conn, self._channel)  # conn kept: it holds the lock
                else:
                    await servers.migrate_unless_served(conn, self._channel)
                await _thread_unthreaded(conn)
                if not self._serving:
                    await conn.close()
                    conn = None
                pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
                    self.conninfo,
                    min_size=self._limits.min_connections,
                    max_size=self._limits.max_connections,
                    timeout=self._limits.timeout,
                    kwargs={"autocommit": True},
                    configure=_configure,
                    open=False,
                    name="pillarbox",
                )
                await pool.open(wait=True, timeout=self._limits.timeout)
                listener = notify.ChangeListener(
                    self.conninfo,
                    self._channel,
                    self._hub,
                    self._forget_kept,
                    self._queue_woken,
                    self._rehint,
                    retry_delay=self._limits.listen_retry,
                    timeout=self._limits.timeout,
                )
                try:
                    await listener.start()
                except BaseException:
                    await pool.close()
                    raise
            except (psycopg.Error, PoolTimeout) as exc:
                raise StorageError(f"cannot open the database: {exc}") from exc
        except BaseException:
            if conn is not None:
                await conn.close()
            raise
        if conn is not None:
            self._presence = servers.Presence(
                conn,
                self.conninfo,
                self._channel,
                retry=self._limits.listen_retry,
                timeout=self._limits.timeout,
            )
            self._presence.start()
        self._pool = pool
        self._listener = listener
        self._maildrops = MaildropLocks(self.conninfo, self._channel, timeout=self._limits.timeout)
        self._text_arrived = asyncio.Event()
        self._indexer = asyncio.get_running_loop().create_task(
            self._index_behind_writes(), name="pillarbox-pg-indexer"
        )

    async def close(self) -> None:
        if self._pool is None:
            return
        indexer, self._indexer = self._indexer, None
        if indexer is not None:  # first, while the pool still serves its last batch
            indexer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await indexer
        if self._writes:  # writes whose callers were cancelled still run (module notes)
            await asyncio.wait(set(self._writes), timeout=self._limits.timeout)
        pool, self._pool = self._pool, None
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.stop()
        maildrops, self._maildrops = self._maildrops, None
        if maildrops is not None:
            await maildrops.close()
        presence, self._presence = self._presence, None
        if presence is not None:
            await presence.close()  # the servers' lock goes with its connection
        self._hub.close()
        await pool.close()
        self._forget_kept(None)  # no notification reaches a closed store

    async def _rehint(self) -> None:
        """After the LISTEN connection was re-established: one hint per mailbox someone on this
        node waits for, at its MODSEQ now (notify.py's notes). Sessions take a hint at or
        below what they have as nothing; NOTIFY compares what it reads with what it reported."""
        accounts, watched = self._hub.audience()
        if not accounts and not watched:
            return

        async def query(conn: Conn) -> list[TupleRow]:
            return await _all(
                conn,
                "SELECT account_id, id, highestmodseq FROM mailboxes "
                "WHERE account_id = ANY(%s) OR id = ANY(%s)",
                (sorted(accounts), sorted(watched)),
            )

        try:
            rows = await self._read(query)
        except StorageError as exc:  # the next break or the sessions' own commands retry
            log.warning("cannot re-hint after the listener reconnected: %s", exc)
            return
        changes = [
            change
            for account_id, mailbox_id, modseq in rows
            for change in (
                Change(account_id, mailbox_id, ChangeKind.FLAGS, modseq),  # content, flags
                Change(account_id, mailbox_id, ChangeKind.MAILBOXES, 0),  # a rename
                Change(account_id, mailbox_id, ChangeKind.METADATA, 0),
            )
        ]
        # What is the account's, not a mailbox's (``mailbox_id`` 0); MAILBOXES so also for
        # the mailboxes deleted meanwhile, which have no row above (ChangeKind.MAILBOXES).
        changes += [
            Change(account_id, 0, kind, 0)
            for account_id in sorted(accounts)
            for kind in (ChangeKind.MAILBOXES, ChangeKind.SUBSCRIPTIONS, ChangeKind.METADATA)
        ]
        self._hub.publish(changes)

    def _require_pool(self) -> AsyncConnectionPool[Conn]:
        if self._pool is None:
            raise StorageError("the store is not open")
        return self._pool

    async def _read(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        pool = self._require_pool()
        try:
            async with pool.connection() as conn:
                return await fn(conn)
        except PillarboxError:
            raise
        except (psycopg.Error, PoolTimeout) as exc:
            raise StorageError(f"{type(exc).__name__}: {exc}") from exc

    async def _read_snapshot(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """:meth:`_read` in one read-only REPEATABLE READ transaction: for answers put
        together from several statements that a concurrent write must not split (a sync
        report's token, changes and oldest valid token)."""

        async def snapshot(conn: Conn) -> T:
            async with conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                return await fn(conn)

        return await self._read(snapshot)

    @property
    def cross_process_delay(self) -> float:
        """Longest time, in seconds, before another node's write is seen by the lookups this
        store keeps in memory when its notification is lost (LISTEN connection down)."""
        return self._limits.directory_ttl_ms / 1000

    async def heard_everything(self) -> None:
        """Return once this node has handled every notification (change feed, kept lookups
        to forget) committed before the call: another node's write is seen after it."""
        listener = self._listener
        if listener is None:
            raise StorageError("the store is not open")
        try:
            await self._read(lambda conn: listener.barrier(conn, self._limits.timeout))
        except TimeoutError as exc:
            raise StorageError("no notification came back (LISTEN connection down?)") from exc

    def _forget_kept(self, items: Sequence[notify.Forget] | None) -> None:
        """Forget ``items`` of the kept lookups (None: all): after this node's own write to
        them, and when another node's notification (or a lost LISTEN connection) says so."""
        if items is None:
            self._directory.invalidate()
            self._evidence.invalidate()
            return
        for item in items:
            if item == notify.DIRECTORY:
                self._directory.invalidate()
            elif item == notify.EVIDENCE:
                self._evidence.invalidate()
            else:
                self._evidence.invalidate([item])

    async def _write(
        self, fn: Operation[T], *, pipelined: bool = False, forget: Sequence[notify.Forget] = ()
    ) -> T:
        """Run ``fn`` in a transaction of its own and return once it committed.

        ``pipelined`` sends statements without waiting for the ones whose results ``fn`` does
        not read (libpq pipeline mode): the delivery path's BEGIN, bytes, text, NOTIFY and
        COMMIT ride along with the statements it must wait for, halving its round trips. Only
        for operations that catch no database error themselves: in a pipeline an error surfaces
        at the next synchronisation, not at the statement that caused it.

        ``forget`` names what the write changes of the kept lookups: announced to every node
        in the transaction, and forgotten here once the write is done, or failed (cheaper than
        knowing whether it changed anything).
        """
        pool = self._require_pool()
        write = asyncio.ensure_future(self._transact(pool, fn, pipelined, forget))
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)
        try:
            return await asyncio.shield(write)
        finally:
            if forget:
                self._forget_kept(forget)

    async def _transact(
        self,
        pool: AsyncConnectionPool[Conn],
        fn: Operation[T],
        pipelined: bool,
        forget: Sequence[notify.Forget],
    ) -> T:
        attempt = 0
        while True:
            attempt += 1
            changes: list[Change] = []
            try:
                async with (
                    pool.connection() as conn,
                    conn.pipeline() if pipelined else contextlib.nullcontext(),
                    conn.transaction(),
                ):
                    result = await fn(conn, changes)
                    if changes:
                        await notify.send(conn, self._channel, changes)
                    if forget:
                        await notify.send_forget(conn, self._channel, forget)
                return result
            except PillarboxError:
                raise
            except _RETRYABLE as exc:
                if attempt >= self._limits.retries:
                    raise StorageError(f"gave up after {attempt} attempts: {exc}") from exc
                log.info("retrying a write after %s", type(exc).__name__)
            except (psycopg.Error, PoolTimeout) as exc:
                raise StorageError(f"{type(exc).__name__}: {exc}") from exc

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # -- the trigram index, behind the writes ----------------------------------------------------
    async def _index_behind_writes(self) -> None:
        """Add stored text to the trigram indexes once deliveries pause for ``index_idle``.

        Measured (``bench/store.py``): maintaining the two trigram GIN indexes inside the
        delivery transaction cost three quarters of the durable delivery rate, as FTS5 did for
        SQLite; so a delivery stores its text unindexed and this task indexes it in batches of
        their own transactions, stopping as soon as a delivery arrives. Searches stay exact
        meanwhile (unindexed rows are scanned). Batches skip the WAL flush (derived data: a
        lost batch is indexed again) and take rows with SKIP LOCKED, so the nodes share the
        backlog; ``index_poll`` picks up what another node left.
        """
        limits = self._limits
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(limits.index_poll):
                    await self._text_arrived.wait()
            while self._text_arrived.is_set():  # wait for a pause in the writes
                self._text_arrived.clear()
                await asyncio.sleep(limits.index_idle)
            try:
                while not self._text_arrived.is_set() and await self._index_batch(durable=False):
                    pass
            except (psycopg.Error, PoolTimeout, StorageError) as exc:
                log.warning("trigram indexing failed, retrying later: %s", exc)

    async def _index_batch(self, *, durable: bool) -> int:
        """Index one batch of pending text; the number of rows indexed."""
        pool = self._require_pool()
        async with pool.connection() as conn, conn.transaction():
            if not durable:
                await conn.execute("SET LOCAL synchronous_commit = off")
            cur = await conn.execute(
                "UPDATE blob_text SET indexed = true WHERE id IN (SELECT id FROM blob_text "
                "WHERE NOT indexed ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)",
                (self._limits.index_batch,),
            )
            return cur.rowcount

    async def catch_up_index(self) -> None:
        """Bring the trigram index up to date now (tests, benchmarks)."""
        while await self._index_batch(durable=True):
            pass

    # -- domains ---------------------------------------------------------------------------------
    async def add_domain(self, name: str) -> Domain:
        if not name or "@" in name or any(ch.isspace() for ch in name):
            raise InvalidName(f"invalid domain name {name!r}")

        async def op(conn: Conn, changes: list[Change]) -> Domain:
            now = self._now()
            cur = await conn.execute(
                "INSERT INTO domains (name, created) VALUES (%s, %s) "
                "ON CONFLICT (name) DO NOTHING RETURNING name",
                (name, now),
            )
            if await cur.fetchone() is None:
                raise AlreadyExists(f"domain {name} exists")
            return Domain(name, now)

        return await self._write(op, forget=_DIRECTORY)

    async def get_domain(self, name: str) -> Domain | None:
        async def query(conn: Conn) -> Domain | None:
            row = await _one(conn, "SELECT name, created FROM domains WHERE name = %s", (name,))
            return Domain(row[0], row[1]) if row else None

        return await self._directory.lookup(("domain", name), lambda: self._read(query))

    async def check_schema(self) -> None:
        if self._presence is not None and self._presence.fault is not None:
            raise self._presence.fault
        version = await self._read(schema_version)
        if version > LATEST_VERSION:
            raise SchemaTooNew(version, LATEST_VERSION)

    async def list_domains(self) -> list[Domain]:
        async def query(conn: Conn) -> tuple[Domain, ...]:
            rows = await _all(conn, 'SELECT name, created FROM domains ORDER BY name COLLATE "C"')
            return tuple(Domain(name, created) for name, created in rows)

        # Intake asks per message (hosted domains); the kept tuple is copied per caller.
        return list(await self._directory.lookup(("domains", ""), lambda: self._read(query)))

    async def remove_domain(self, name: str) -> None:
        async def op(conn: Conn, changes: list[Change]) -> None:
            row = await _one(conn, "SELECT 1 FROM domains WHERE name = %s FOR UPDATE", (name,))
            if row is None:
                raise NotFound(f"no domain {name}")
            in_use = await _one(
                conn,
                "SELECT EXISTS (SELECT 1 FROM accounts WHERE domain = %s) "
                "OR EXISTS (SELECT 1 FROM aliases WHERE domain = %s)",
                (name, name),
            )
            if in_use is not None and in_use[0]:
                raise UserError(f"domain {name} still has accounts or aliases")
            await conn.execute("DELETE FROM domains WHERE name = %s", (name,))
            await receiveddata.delete_domain(conn, name)

        await self._write(op, forget=_DIRECTORY)

    # -- accounts --------------------------------------------------------------------------------
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
        local, _, domain = address.rpartition("@")
        if not local or not domain:
            raise InvalidName(f"invalid account address {address!r}")

        async def op(conn: Conn, changes: list[Change]) -> Account:
            if (
                await _one(conn, "SELECT 1 FROM domains WHERE name = %s FOR SHARE", (domain,))
                is None
            ):
                raise NotFound(f"no domain {domain}")
            await _require_address_free(conn, address)
            now = self._now()
            try:
                row = await _one(
                    conn,
                    "INSERT INTO accounts (address, domain, display_name, password_hash, "
                    "scram_sha256, is_admin, quota_bytes, quota_messages, created) "
                    f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_ACCOUNT_COLUMNS}",
                    (
                        address,
                        domain,
                        display_name,
                        password_hash,
                        scram_sha256,
                        is_admin,
                        quota_bytes,
                        quota_messages,
                        now,
                    ),
                )
            except pg_errors.UniqueViolation as exc:
                raise AlreadyExists(f"{address} is an account already") from exc
            assert row is not None
            account = _account(row)
            for name, special_use in DEFAULT_MAILBOXES:
                await _insert_mailbox(conn, account.id, name, special_use, now)
            return account

        return await self._write(op, forget=_DIRECTORY)

    async def get_account(self, address: str) -> Account | None:
        async def query(conn: Conn) -> Account | None:
            row = await _one(
                conn, f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE address = %s", (address,)
            )
            return _account(row) if row else None

        return await self._directory.lookup(("account", address), lambda: self._read(query))

    async def get_account_by_id(self, account_id: int) -> Account | None:
        async def query(conn: Conn) -> Account | None:
            row = await _one(
                conn, f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = %s", (account_id,)
            )
            return _account(row) if row else None

        # Read by every web request of a session: kept like the directory.
        return await self._directory.lookup(
            ("account-id", str(account_id)), lambda: self._read(query)
        )

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        async def query(conn: Conn) -> list[Account]:
            rows = await _all(
                conn,
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts "
                "WHERE %(domain)s::text IS NULL OR domain = %(domain)s "
                'ORDER BY address COLLATE "C"',
                {"domain": domain},
            )
            return [_account(row) for row in rows]

        return await self._read(query)

    async def list_admins(self, domain: str) -> list[Account]:
        async def query(conn: Conn) -> list[Account]:
            rows = await _all(
                conn,
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE is_admin AND (domain = %(d)s "
                "OR NOT EXISTS (SELECT 1 FROM accounts WHERE domain = %(d)s AND is_admin)) "
                'ORDER BY address COLLATE "C"',
                {"d": domain},
            )
            return [_account(row) for row in rows]

        return await self._read(query)

    async def _update_account(
        self, account_id: int, assignments: str, values: tuple[object, ...]
    ) -> None:
        async def op(conn: Conn, changes: list[Change]) -> None:
            cur = await conn.execute(
                f"UPDATE accounts SET {assignments} WHERE id = %s", (*values, account_id)
            )
            if cur.rowcount == 0:
                raise NotFound(f"no account {account_id}")

        await self._write(op, forget=_DIRECTORY)

    async def set_password(
        self, account_id: int, password_hash: str, scram_sha256: str | None
    ) -> None:
        await self._update_account(
            account_id, "password_hash = %s, scram_sha256 = %s", (password_hash, scram_sha256)
        )

    async def set_quota(
        self, account_id: int, quota_bytes: int | None, quota_messages: int | None
    ) -> None:
        await self._update_account(
            account_id, "quota_bytes = %s, quota_messages = %s", (quota_bytes, quota_messages)
        )

    async def set_display_name(self, account_id: int, display_name: str) -> None:
        await self._update_account(account_id, "display_name = %s", (display_name,))

    async def remove_account(self, account_id: int) -> None:
        async def op(conn: Conn, changes: list[Change]) -> None:
            # Mailboxes first, then the account: the lock order every write follows.
            rows = await _all(
                conn,
                "SELECT id FROM mailboxes WHERE account_id = %s ORDER BY id FOR UPDATE",
                (account_id,),
            )
            cur = await conn.execute("DELETE FROM accounts WHERE id = %s", (account_id,))
            if cur.rowcount == 0:
                raise NotFound(f"no account {account_id}")
            changes.extend(Change(account_id, row[0], ChangeKind.MAILBOXES, 0) for row in rows)

        # Its models, reputation and lists go with it (foreign keys).
        await self._write(op, forget=(notify.DIRECTORY, notify.EVIDENCE))

    async def quota_usage(self, account_id: int) -> QuotaUsage:
        async def query(conn: Conn) -> QuotaUsage:
            row = await _one(
                conn,
                "SELECT used_bytes, used_messages, quota_bytes, quota_messages, quota_warned "
                "FROM accounts WHERE id = %s",
                (account_id,),
            )
            if row is None:
                raise NotFound(f"no account {account_id}")
            return QuotaUsage(*row)

        return await self._read(query)

    async def set_quota_warned(self, account_id: int, expected: int, level: int) -> bool:
        async def op(conn: Conn, changes: list[Change]) -> bool:
            cur = await conn.execute(
                "UPDATE accounts SET quota_warned = %s WHERE id = %s AND quota_warned = %s",
                (level, account_id, expected),
            )
            if not cur.rowcount:
                await _require_account(conn, account_id)
            return bool(cur.rowcount)

        return await self._write(op)

    # -- aliases ---------------------------------------------------------------------------------
    async def add_alias(self, address: str, targets: Sequence[str]) -> Alias:
        _, at, domain = address.rpartition("@")
        if not at or not domain or any(ch.isspace() for ch in address):
            raise InvalidName(f"invalid alias address {address!r}")
        if not targets or any("@" not in target for target in targets):
            raise InvalidName(f"alias {address} needs one or more target addresses")
        alias = Alias(address, tuple(targets))

        async def op(conn: Conn, changes: list[Change]) -> Alias:
            if (
                await _one(conn, "SELECT 1 FROM domains WHERE name = %s FOR SHARE", (domain,))
                is None
            ):
                raise NotFound(f"no domain {domain}")
            await _require_address_free(conn, address)
            try:
                await conn.execute(
                    "INSERT INTO aliases (address, domain, targets) VALUES (%s, %s, %s)",
                    (address, domain, list(alias.targets)),
                )
            except pg_errors.UniqueViolation as exc:
                raise AlreadyExists(f"alias {address} exists") from exc
            return alias

        return await self._write(op, forget=_DIRECTORY)

    async def get_alias(self, address: str) -> Alias | None:
        async def query(conn: Conn) -> Alias | None:
            row = await _one(
                conn, "SELECT address, targets FROM aliases WHERE address = %s", (address,)
            )
            return Alias(row[0], tuple(row[1])) if row else None

        return await self._directory.lookup(("alias", address), lambda: self._read(query))

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        async def query(conn: Conn) -> list[Alias]:
            rows = await _all(
                conn,
                "SELECT address, targets FROM aliases "
                "WHERE %(domain)s::text IS NULL OR domain = %(domain)s "
                'ORDER BY address COLLATE "C"',
                {"domain": domain},
            )
            return [Alias(address, tuple(targets)) for address, targets in rows]

        return await self._read(query)

    async def remove_alias(self, address: str) -> None:
        async def op(conn: Conn, changes: list[Change]) -> None:
            cur = await conn.execute("DELETE FROM aliases WHERE address = %s", (address,))
            if cur.rowcount == 0:
                raise NotFound(f"no alias {address}")

        await self._write(op, forget=_DIRECTORY)

    # -- mailboxes -------------------------------------------------------------------------------
    async def list_mailboxes(self, account_id: int) -> list[Mailbox]:
        async def query(conn: Conn) -> list[Mailbox]:
            rows = await _all(
                conn,
                f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = %s "
                'ORDER BY name COLLATE "C"',
                (account_id,),
            )
            return [_mailbox(row) for row in rows]

        return await self._read(query)

    async def get_mailbox(self, account_id: int, name: str) -> Mailbox:
        canonical = normalize_mailbox_name(name)

        async def query(conn: Conn) -> Mailbox:
            found = await _mailbox_by_name(conn, account_id, canonical)
            if found is None:
                raise NotFound(f"no mailbox {canonical}")
            return found

        return await self._read(query)

    async def create_mailbox(
        self, account_id: int, name: str, special_use: SpecialUse | None = None
    ) -> Mailbox:
        canonical = normalize_mailbox_name(name)

        async def op(conn: Conn, changes: list[Change]) -> Mailbox:
            await _require_account(conn, account_id)
            if await _mailbox_by_name(conn, account_id, canonical) is not None:
                raise AlreadyExists(f"mailbox {canonical} exists")
            now = self._now()
            created = await _create_superiors(conn, account_id, canonical, now)
            mailbox = await _insert_mailbox(conn, account_id, canonical, special_use, now)
            changes.extend(
                Change(account_id, box.id, ChangeKind.MAILBOXES, 0) for box in (*created, mailbox)
            )
            return mailbox

        return await self._write(op)

    async def delete_mailbox(self, mailbox_id: int) -> None:
        async def op(conn: Conn, changes: list[Change]) -> None:
            mailbox = await _lock_mailbox(conn, mailbox_id)
            if mailbox.name == INBOX:
                raise InvalidName("INBOX cannot be deleted")  # RFC 9051 §6.3.5
            await _lock_accounts(conn, {mailbox.account_id})  # the thread keys' (_prune_...)
            rows = await _all(
                conn, "SELECT DISTINCT thread FROM messages WHERE mailbox_id = %s", (mailbox_id,)
            )
            await conn.execute("DELETE FROM mailboxes WHERE id = %s", (mailbox_id,))
            await _prune_thread_keys(conn, mailbox.account_id, {thread for (thread,) in rows})
            changes.append(Change(mailbox.account_id, mailbox_id, ChangeKind.MAILBOXES, 0))

        await self._write(op)

    async def rename_mailbox(self, account_id: int, old: str, new: str) -> None:
        old_name = normalize_mailbox_name(old)
        new_name = normalize_mailbox_name(new)
        # A mailbox cannot become its own inferior; INBOX can, as its messages move out.
        if new_name == old_name or (
            old_name != INBOX and new_name.startswith(old_name + DELIMITER)
        ):
            raise InvalidName(f"cannot rename {old_name} to {new_name}")

        async def op(conn: Conn, changes: list[Change]) -> None:
            source = await _mailbox_by_name(conn, account_id, old_name)
            if source is None:
                raise NotFound(f"no mailbox {old_name}")
            source = await _lock_mailbox(conn, source.id)
            if await _mailbox_by_name(conn, account_id, new_name) is not None:
                raise AlreadyExists(f"mailbox {new_name} exists")
            now = self._now()
            created = await _create_superiors(conn, account_id, new_name, now)
            if old_name == INBOX:
                # RFC 9051 §6.3.6: INBOX's messages move to a new mailbox; INBOX stays, empty,
                # and its inferiors are not renamed.
                target = await _insert_mailbox(conn, account_id, new_name, None, now)
                created.append(target)
                rows = await _all(
                    conn,
                    "SELECT uid FROM messages WHERE mailbox_id = %s ORDER BY uid",
                    (source.id,),
                )
                await _transfer(
                    conn,
                    changes,
                    source,
                    [row[0] for row in rows],
                    target=target,
                    now=now,
                    remove_source=True,
                )
                await metadata.copy_entries(conn, source.id, target.id)  # RFC 5464 §4.1
            else:
                prefix = old_name + DELIMITER
                try:
                    await conn.execute(
                        "UPDATE mailboxes SET name = %s || substr(name, %s) "
                        "WHERE account_id = %s AND (name = %s OR left(name, %s) = %s)",
                        (new_name, len(old_name) + 1, account_id, old_name, len(prefix), prefix),
                    )
                except pg_errors.UniqueViolation as exc:
                    raise AlreadyExists(f"an inferior of {new_name} exists already") from exc
                changes.append(Change(account_id, source.id, ChangeKind.MAILBOXES, 0))
            changes.extend(Change(account_id, box.id, ChangeKind.MAILBOXES, 0) for box in created)

        await self._write(op)

    async def list_subscriptions(self, account_id: int) -> set[str]:
        async def query(conn: Conn) -> set[str]:
            rows = await _all(
                conn, "SELECT name FROM subscriptions WHERE account_id = %s", (account_id,)
            )
            return {row[0] for row in rows}

        return await self._read(query)

    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None:
        canonical = normalize_mailbox_name(name)

        async def op(conn: Conn, changes: list[Change]) -> None:
            await _require_account(conn, account_id)
            if subscribed:
                await conn.execute(
                    "INSERT INTO subscriptions (account_id, name) VALUES (%s, %s) "
                    "ON CONFLICT DO NOTHING",
                    (account_id, canonical),
                )
            else:
                await conn.execute(
                    "DELETE FROM subscriptions WHERE account_id = %s AND name = %s",
                    (account_id, canonical),
                )
            changes.append(Change(account_id, 0, ChangeKind.SUBSCRIPTIONS, 0))

        await self._write(op)

    # -- METADATA (see .metadata) ------------------------------------------------------------
    async def get_metadata(
        self, account_id: int, mailbox_id: int | None, names: Sequence[str] | None = None
    ) -> dict[str, bytes]:
        return await self._read(
            lambda conn: metadata.get_entries(conn, account_id, mailbox_id, names)
        )

    async def set_metadata(
        self,
        account_id: int,
        mailbox_id: int | None,
        entries: Mapping[str, bytes | None],
        limits: MetadataLimits,
    ) -> None:
        async def op(conn: Conn, changes: list[Change]) -> None:
            await metadata.set_entries(conn, account_id, mailbox_id, entries, limits)
            changes.append(Change(account_id, mailbox_id or 0, ChangeKind.METADATA, 0))

        await self._write(op)

    async def list_metadata(self, account_id: int) -> dict[int, dict[str, bytes]]:
        return await self._read(lambda conn: metadata.list_entries(conn, account_id))

    # -- ACL (RFC 4314; tables in migration 18) ---------------------------------------------
    async def get_acl(self, mailbox_id: int) -> list[AclEntry]:
        async def query(conn: Conn) -> list[AclEntry]:
            if await _one(conn, "SELECT 1 FROM mailboxes WHERE id = %s", (mailbox_id,)) is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            rows = await _all(conn, _ACL_ENTRIES, (mailbox_id,))
            return acl_entries(rows)

        return await self._read(query)

    async def set_acl(
        self,
        mailbox_id: int,
        grantee: int | str,
        rights: str,
        mode: str = "=",
        *,
        negative: bool = False,
    ) -> None:
        changed_rights("", rights, mode)  # an unknown mode fails before the transaction
        account, special = (grantee, None) if isinstance(grantee, int) else (None, grantee)
        if special is not None and special not in ACL_SPECIAL_IDENTIFIERS:
            raise NotFound(f"no identifier {special}")

        async def op(conn: Conn, changes: list[Change]) -> None:
            mailbox = await _lock_mailbox(conn, mailbox_id)
            if account is not None:
                await _require_account(conn, account)
                where = "mailbox_id = %s AND grantee_id = %s"
            else:
                where = "mailbox_id = %s AND special = %s"
            key = (mailbox_id, account if account is not None else special)
            # The mailbox row is locked: SETACLs of one mailbox run one after the other.
            row = await _one(conn, f"SELECT rights, denied FROM mailbox_acl WHERE {where}", key)
            stored = changed_row(None if row is None else (row[0], row[1]), rights, mode, negative)
            await conn.execute(f"DELETE FROM mailbox_acl WHERE {where}".encode(), key)
            if any(stored):
                await conn.execute(
                    b"INSERT INTO mailbox_acl (mailbox_id, grantee_id, special, rights, denied) "
                    b"VALUES (%s, %s, %s, %s, %s)",
                    (mailbox_id, account, special, *stored),
                )
            changes.append(Change(mailbox.account_id, mailbox_id, ChangeKind.MAILBOXES, 0))

        await self._write(op)

    async def shared_with(self, account_id: int) -> list[SharedMailbox]:
        async def query(conn: Conn) -> list[SharedMailbox]:
            rows = await _all(conn, _SHARED_WITH, (account_id, account_id))
            return merge_shared((_mailbox(row[:7]), row[7], row[8], row[9]) for row in rows)

        return await self._read(query)

    async def mailbox_status(self, mailbox_id: int) -> MailboxStatus:
        return await self._read(lambda conn: _status(conn, mailbox_id))

    async def claim_recent(self, mailbox_id: int) -> int:
        return (await self._claims.get(mailbox_id)).take()

    async def lock_maildrop(self, account_id: int) -> bool:
        return await self._require_maildrops().acquire(account_id)

    async def unlock_maildrop(self, account_id: int) -> None:
        await self._require_maildrops().release(account_id)

    def _require_maildrops(self) -> MaildropLocks:
        if self._maildrops is None:
            raise StorageError("the store is not open")
        return self._maildrops

    async def _claim_write(self, mailbox_id: int) -> RecentClaim:
        async def op(conn: Conn, changes: list[Change]) -> RecentClaim:
            row = await _one(
                conn,
                "SELECT recent_uid, uidnext FROM mailboxes WHERE id = %s FOR NO KEY UPDATE",
                (mailbox_id,),
            )
            if row is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            await conn.execute(
                "UPDATE mailboxes SET recent_uid = uidnext WHERE id = %s", (mailbox_id,)
            )
            return RecentClaim(int(row[0]), int(row[1]))

        return await self._write(op)

    # -- messages --------------------------------------------------------------------------------
    async def deliver(
        self,
        raw: bytes,
        info: MessageInfo,
        targets: Sequence[DeliveryTarget],
        *,
        internal_date: datetime | None = None,
    ) -> list[DeliveryResult]:
        blob = await _prepare_blob(raw, info)
        keys = _SortKeys.of(info)
        flag_sets = [canonical_flags(target.flags) for target in targets]
        names: list[str | None] = []
        for target in targets:
            try:
                names.append(normalize_mailbox_name(target.mailbox))
            except InvalidName:
                names.append(None)
        wanted = {(t.account_id, n) for t, n in zip(targets, names, strict=True) if n is not None}

        async def op(conn: Conn, changes: list[Change]) -> list[DeliveryResult]:
            now = self._now()
            arrived = _utc(internal_date) if internal_date is not None else now
            found = await _lock_mailboxes_by_name(conn, wanted)
            usage = await _lock_accounts(conn, {box.account_id for box in found.values()})
            blob_row = await _put_blob(conn, blob)
            results: list[DeliveryResult] = []
            for target, name, flags in zip(targets, names, flag_sets, strict=True):
                mailbox = found.get((target.account_id, name)) if name is not None else None
                if mailbox is None:
                    results.append(DeliveryResult(target, DeliveryStatus.NO_MAILBOX))
                    continue
                quota = usage[mailbox.account_id]
                if not (target.beyond_quota or quota.fits(blob.size)):
                    results.append(DeliveryResult(target, DeliveryStatus.OVER_QUOTA))
                    continue
                record = await _add_message(
                    conn,
                    changes,
                    mailbox,
                    blob=blob,
                    blob_row=blob_row,
                    flags=flags,
                    internal_date=arrived,
                    now=now,
                    keys=keys,
                )
                usage[mailbox.account_id] = after = quota.added(blob.size)
                results.append(DeliveryResult(target, DeliveryStatus.STORED, record, after))
            if not any(r.record for r in results):
                await conn.execute("DELETE FROM blobs WHERE id = %s AND refcount <= 0", (blob_row,))
            return results

        try:
            return await self._write(op, pipelined=True)
        finally:
            self._text_arrived.set()

    async def append(
        self,
        mailbox_id: int,
        raw: bytes,
        info: MessageInfo,
        *,
        flags: frozenset[str] = frozenset(),
        internal_date: datetime | None = None,
    ) -> Appended:
        canonical = canonical_flags(flags)
        blob = await _prepare_blob(raw, info)
        keys = _SortKeys.of(info)

        async def op(conn: Conn, changes: list[Change]) -> Appended:
            mailbox = await _lock_mailbox(conn, mailbox_id)
            usage = (await _lock_accounts(conn, {mailbox.account_id}))[mailbox.account_id]
            if not usage.fits(blob.size):
                raise QuotaExceeded(f"message of {blob.size} bytes exceeds the quota")
            now = self._now()
            arrived = _utc(internal_date) if internal_date is not None else now
            blob_row = await _put_blob(conn, blob)
            record = await _add_message(
                conn,
                changes,
                mailbox,
                blob=blob,
                blob_row=blob_row,
                flags=canonical,
                internal_date=arrived,
                now=now,
                keys=keys,
            )
            return Appended(record, usage.added(blob.size))

        try:
            return await self._write(op, pipelined=True)
        finally:
            self._text_arrived.set()

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
        canonical = canonical_flags(flags)
        blob = await _prepare_blob(raw, info)
        keys = _SortKeys.of(info)

        async def op(conn: Conn, changes: list[Change]) -> Replaced | None:
            boxes = await _lock_mailboxes(conn, mailbox_id, target_id)
            source, target = boxes[mailbox_id], boxes[target_id]
            old = await _one(
                conn,
                "SELECT size FROM messages WHERE mailbox_id = %s AND uid = %s",
                (mailbox_id, uid),
            )
            if old is None:
                return None
            size, count = replacement_change(source, target, blob.size, old[0])
            usage = (await _lock_accounts(conn, {source.account_id, target.account_id}))[
                target.account_id
            ]
            if not usage.fits(size, count):
                raise QuotaExceeded(f"message of {blob.size} bytes exceeds the quota")
            now = self._now()
            record = await _add_message(
                conn,
                changes,
                target,
                blob=blob,
                blob_row=await _put_blob(conn, blob),
                flags=canonical,
                internal_date=_utc(internal_date) if internal_date is not None else now,
                now=now,
                keys=keys,
            )
            # After the arrival: a thread the old message leaves to the new one keeps its keys.
            same = record.modseq if source.id == target.id else None
            modseq = await _remove_messages(conn, source.id, [uid], modseq=same)
            changes.append(Change(source.account_id, source.id, ChangeKind.EXPUNGE, modseq))
            return Replaced(record, usage.added(size, count), size, count)

        try:
            return await self._write(op, pipelined=True)
        finally:
            self._text_arrived.set()

    async def list_messages(
        self, mailbox_id: int, *, uid_min: int = 1, uid_max: int | None = None
    ) -> list[MessageRecord]:
        async def query(conn: Conn) -> list[MessageRecord]:
            await _require_mailbox(conn, mailbox_id)
            return await _records_between(conn, mailbox_id, uid_min, uid_max)

        return await self._read(query)

    async def open_mailbox(self, account_id: int, name: str) -> MailboxSnapshot:
        canonical = normalize_mailbox_name(name)

        async def query(conn: Conn) -> MailboxSnapshot:
            found = await _mailbox_by_name(conn, account_id, canonical)
            if found is None:
                raise NotFound(f"no mailbox {canonical}")
            # The status first, as in mailbox_delta: rows newer than its HIGHESTMODSEQ are
            # read again by the session's next catch-up, harmlessly.
            status = await _status(conn, found.id)
            records = await _records_between(conn, found.id, 1, None)
            return MailboxSnapshot(status, RecordTable.of(records))

        return await self._read(query)

    async def get_message(self, mailbox_id: int, uid: int) -> MessageRecord | None:
        async def query(conn: Conn) -> MessageRecord | None:
            row = await _one(
                conn,
                f"SELECT {_RECORD_COLUMNS} WHERE m.mailbox_id = %s AND m.uid = %s",
                (mailbox_id, uid),
            )
            return _record(mailbox_id, row) if row else None

        return await self._read(query)

    async def message_infos(
        self, mailbox_id: int, uids: Sequence[int], *, with_text: bool = True
    ) -> dict[int, MessageInfo]:
        # Without the text, blob_text (most of the metadata by size) is not even joined.
        text = (
            "t.header_text, t.body_text FROM messages m JOIN blobs b ON b.id = m.blob "
            "LEFT JOIN blob_text t ON t.id = b.id"
            if with_text
            else "'', '' FROM messages m JOIN blobs b ON b.id = m.blob"
        )

        async def query(conn: Conn) -> dict[int, MessageInfo]:
            rows = await _all(
                conn,
                f"SELECT m.uid, b.info, {text} WHERE m.mailbox_id = %s AND m.uid = ANY(%s)",
                (mailbox_id, list(uids)),
            )
            return {
                uid: dataclasses.replace(
                    MessageInfo.from_json(info),
                    header_text=header_text or "",
                    body_text=body_text or "",
                )
                for uid, info, header_text, body_text in rows
                if info is not None
            }

        return await self._read(query)

    async def read_blob(self, blob_id: str) -> bytes:
        if not is_blob_id(blob_id):
            raise NotFound(f"no blob {blob_id!r}")

        async def query(conn: Conn) -> bytes:
            cur = await conn.execute(
                "SELECT d.data FROM blobs b JOIN blob_data d ON d.id = b.id WHERE b.sha256 = %s",
                (blob_id,),
                binary=True,
            )
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"no blob {blob_id}")
            return bytes(row[0])

        return await self._read(query)

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
        requested = frozenset(canonical_flags(flags).split())

        async def write(conn: Conn, changes: list[Change]) -> FlagUpdate:
            mailbox = await _lock_mailbox(conn, mailbox_id)
            rows = await _all(
                conn,
                f"SELECT {_RECORD_COLUMNS} WHERE m.mailbox_id = %s AND m.uid = ANY(%s) "
                "ORDER BY m.uid",
                (mailbox_id, sorted(set(uids))),
            )
            to_change: list[tuple[MessageRecord, frozenset[str]]] = []
            unchanged: list[int] = []
            modified: list[int] = []
            for row in rows:
                record = _record(mailbox_id, row)
                if unchanged_since is not None and record.modseq > unchanged_since:
                    modified.append(record.uid)  # RFC 7162 §3.1.3
                    continue
                new_flags = flags_after(record.flags, op, requested, rights)
                if new_flags == record.flags:
                    unchanged.append(record.uid)
                else:
                    to_change.append((record, new_flags))
            changed: list[MessageRecord] = []
            if to_change:
                modseq = await _next_modseq(conn, mailbox_id)
                await conn.execute(
                    "UPDATE messages m SET flags = string_to_array(v.flags, ' '), modseq = %s "
                    "FROM unnest(%s::bigint[], %s::text[]) AS v(uid, flags) "
                    "WHERE m.mailbox_id = %s AND m.uid = v.uid",
                    (
                        modseq,
                        [record.uid for record, _ in to_change],
                        [" ".join(sorted(new)) for _, new in to_change],
                        mailbox_id,
                    ),
                )
                changed = [
                    dataclasses.replace(record, flags=new_flags, modseq=modseq)
                    for record, new_flags in to_change
                ]
                changes.append(Change(mailbox.account_id, mailbox_id, ChangeKind.FLAGS, modseq))
            return FlagUpdate(tuple(changed), tuple(unchanged), tuple(modified))

        return await self._write(write)

    async def saved_before(self, mailbox_id: int, before: datetime, limit: int) -> list[int]:
        async def query(conn: Conn) -> list[int]:
            await _require_mailbox(conn, mailbox_id)
            rows = await _all(
                conn,
                "SELECT uid FROM messages WHERE mailbox_id = %s AND saved_date < %s "
                "ORDER BY uid LIMIT %s",
                (mailbox_id, _utc(before), max(0, limit)),
            )
            return [int(row[0]) for row in rows]

        return await self._read(query)

    async def expunge(self, mailbox_id: int, uids: Sequence[int] | None = None) -> list[int]:
        async def op(conn: Conn, changes: list[Change]) -> list[int]:
            mailbox = await _lock_mailbox(conn, mailbox_id)
            rows = await _all(
                conn,
                "SELECT uid FROM messages WHERE mailbox_id = %s AND deleted "
                "AND (%s::bigint[] IS NULL OR uid = ANY(%s::bigint[])) ORDER BY uid",
                (mailbox_id, *([None, None] if uids is None else [list(uids)] * 2)),
            )
            removed = [row[0] for row in rows]
            if removed:
                await _lock_accounts(conn, {mailbox.account_id})
                modseq = await _remove_messages(conn, mailbox_id, removed)
                changes.append(Change(mailbox.account_id, mailbox_id, ChangeKind.EXPUNGE, modseq))
            return removed

        return await self._write(op)

    async def copy_messages(
        self,
        src_mailbox_id: int,
        uids: Sequence[int],
        dest_mailbox_id: int,
        *,
        rights: str | None = None,
    ) -> Copied:
        return await self._copy_or_move(
            src_mailbox_id, uids, dest_mailbox_id, move=False, rights=rights
        )

    async def move_messages(
        self,
        src_mailbox_id: int,
        uids: Sequence[int],
        dest_mailbox_id: int,
        *,
        rights: str | None = None,
    ) -> Copied:
        return await self._copy_or_move(
            src_mailbox_id, uids, dest_mailbox_id, move=True, rights=rights
        )

    async def _copy_or_move(
        self,
        src_mailbox_id: int,
        uids: Sequence[int],
        dest_mailbox_id: int,
        *,
        move: bool,
        rights: str | None,
    ) -> Copied:
        async def op(conn: Conn, changes: list[Change]) -> Copied:
            boxes = await _lock_mailboxes(conn, src_mailbox_id, dest_mailbox_id)
            present = await _all(
                conn,
                "SELECT uid FROM messages WHERE mailbox_id = %s AND uid = ANY(%s) ORDER BY uid",
                (src_mailbox_id, list(uids)),
            )
            return await _transfer(
                conn,
                changes,
                boxes[src_mailbox_id],
                [row[0] for row in present],
                target=boxes[dest_mailbox_id],
                now=self._now(),
                remove_source=move,
                rights=rights,
            )

        return await self._write(op)

    async def search_text(
        self, mailbox_id: int, terms: Sequence[str], *, body_only: bool = False
    ) -> set[int]:
        # Python's simple case mapping, as the stored search columns (see .migrations).
        patterns = ["%" + _like_escape(term.lower()) + "%" for term in terms if term]
        clauses: list[str] = []
        params: list[object] = []
        for pattern in patterns:
            if body_only:
                clauses.append("t.search_body LIKE %s")
                params.append(pattern)
            else:
                clauses.append("(t.search_header LIKE %s OR t.search_body LIKE %s)")
                params += [pattern, pattern]
        # Indexed text is answered by the trigram indexes, text not indexed yet by a scan of
        # the few pending rows; two arms, so each can use its own partial index.
        arm = "".join(
            [
                "SELECT m.uid FROM messages m JOIN blob_text t ON t.id = m.blob ",
                "WHERE m.mailbox_id = %s AND {state}",
                *(f" AND {clause}" for clause in clauses),
            ]
        )
        sql = arm.format(state="t.indexed") + " UNION " + arm.format(state="NOT t.indexed")
        params = [mailbox_id, *params, mailbox_id, *params]

        async def query(conn: Conn) -> set[int]:
            await _require_mailbox(conn, mailbox_id)
            return {row[0] for row in await _all(conn, sql, params)}

        return await self._read(query)

    async def query_messages(
        self, mailbox_id: int, query: MessageQuery, *, offset: int, limit: int
    ) -> MessagePage:
        async def read(conn: Conn) -> MessagePage:
            async with conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                total, uids = await accountdata.page_uids(conn, mailbox_id, query, offset, limit)
                rows = await _all(
                    conn,
                    f"SELECT {_RECORD_COLUMNS} WHERE m.mailbox_id = %s AND m.uid = ANY(%s)",
                    (mailbox_id, uids),
                )
            by_uid = {row[0]: _record(mailbox_id, row) for row in rows}
            return MessagePage(total, tuple(by_uid[uid] for uid in uids if uid in by_uid))

        return await self._read(read)

    async def changes_since(self, mailbox_id: int, modseq: int) -> list[MessageRecord]:
        async def query(conn: Conn) -> list[MessageRecord]:
            await _require_mailbox(conn, mailbox_id)
            return await _records_changed(conn, mailbox_id, modseq)

        return await self._read(query)

    async def thread_ids(self, mailbox_id: int, uids: Sequence[int]) -> dict[int, int]:
        async def query(conn: Conn) -> dict[int, int]:
            rows = await _all(
                conn,
                "SELECT uid, thread FROM messages WHERE mailbox_id = %s AND uid = ANY(%s)",
                (mailbox_id, list(uids)),
            )
            return {int(uid): int(thread) for uid, thread in rows}

        return await self._read(query)

    async def thread_uids(self, mailbox_id: int, thread: int) -> list[int]:
        async def query(conn: Conn) -> list[int]:
            rows = await _all(
                conn,
                "SELECT uid FROM messages WHERE mailbox_id = %s AND thread = %s ORDER BY uid",
                (mailbox_id, thread),
            )
            return [int(uid) for (uid,) in rows]

        return await self._read(query)

    async def thread_sizes(self, mailbox_id: int) -> list[tuple[int, int]]:
        return await self._read(lambda conn: accountdata.thread_sizes(conn, mailbox_id))

    async def thread_fields(self, mailbox_id: int, threads: Sequence[int]) -> list[ThreadFields]:
        return await self._read(lambda conn: accountdata.thread_fields(conn, mailbox_id, threads))

    async def activity(
        self, since: datetime, step: timedelta, buckets: int
    ) -> list[ActivityCounts]:
        bounds = {"since": since, "step": step.total_seconds(), "end": since + step * buckets}

        async def query(conn: Conn) -> list[ActivityCounts]:
            async with conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                stored = await _all(
                    conn,
                    "SELECT floor(extract(epoch FROM m.internal_date - %(since)s) "
                    "/ %(step)s)::bigint, mb.special_use, count(*) "
                    "FROM messages m JOIN mailboxes mb ON mb.id = m.mailbox_id "
                    "WHERE m.internal_date >= %(since)s AND m.internal_date < %(end)s "
                    "GROUP BY 1, 2",
                    bounds,
                )
                queued = await _all(
                    conn,
                    "SELECT floor(extract(epoch FROM queued_at - %(since)s) / %(step)s)::bigint, "
                    "count(*) FROM queue_messages "
                    "WHERE queued_at >= %(since)s AND queued_at < %(end)s GROUP BY 1",
                    bounds,
                )
            return activity_series(
                since,
                step,
                buckets,
                [(int(i), use, int(n)) for i, use, n in stored],
                [(int(i), int(n)) for i, n in queued],
            )

        return await self._read(query)

    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]:
        async def query(conn: Conn) -> list[int]:
            await _require_mailbox(conn, mailbox_id)
            return await _uids_expunged(conn, mailbox_id, modseq)

        return await self._read(query)

    async def mailbox_delta(self, mailbox_id: int, since: int) -> MailboxDelta:
        return await self._deltas.get((mailbox_id, since))

    async def _read_delta(self, key: tuple[int, int]) -> MailboxDelta:
        mailbox_id, since = key

        async def query(conn: Conn) -> MailboxDelta:
            # The status first: a change committed between the reads is then read twice at
            # worst (harmless), never claimed by a HIGHESTMODSEQ whose rows were not read.
            status = await _status(conn, mailbox_id)
            if status.mailbox.highestmodseq <= since:
                return MailboxDelta(status, (), ())
            changed = tuple(await _records_changed(conn, mailbox_id, since))
            expunged = tuple(await _uids_expunged(conn, mailbox_id, since))
            return MailboxDelta(status, changed, expunged)

        return await self._read(query)

    # -- outbound sending limits (see .sendingdata) --------------------------------------------
    async def sending_limits(self, account_id: int) -> SendingLimits:
        return await self._read(lambda conn: sendingdata.limits(conn, account_id))

    async def set_sending_limits(self, account_id: int, limits: SendingLimits) -> None:
        await self._write(lambda conn, _: sendingdata.set_limits(conn, account_id, limits))

    async def sending_usage(self, account_id: int, since: datetime) -> SendingUsage:
        return await self._read(lambda conn: sendingdata.usage(conn, account_id, since))

    async def known_recipients(self, account_id: int, addresses: Sequence[str]) -> set[str]:
        if not addresses:
            return set()
        return await self._read(lambda conn: sendingdata.known(conn, account_id, addresses))

    async def record_sending(
        self,
        account_id: int,
        recipients: Sequence[str],
        at: datetime,
        *,
        window_start: datetime,
        memory_start: datetime,
    ) -> None:
        await self._write(
            lambda conn, _: sendingdata.record(
                conn, account_id, recipients, at, window_start, memory_start
            )
        )

    # -- TLS-RPT reports (see .tlsdata) ---------------------------------------------------------
    async def record_tls_result(self, result: TlsSessionResult) -> None:
        await self._write(lambda conn, _: tlsdata.record(conn, result))

    async def tls_results(self, until: datetime) -> list[TlsSessionResult]:
        return await self._read(lambda conn: tlsdata.results(conn, until))

    async def delete_tls_results(self, ids: Sequence[int]) -> int:
        return await self._write(lambda conn, _: tlsdata.delete(conn, ids))

    async def add_tls_report_post(self, post: TlsReportPost) -> int:
        return await self._write(lambda conn, _: tlsdata.add_post(conn, post))

    async def claim_tls_report_post(self, now: datetime, lease: datetime) -> TlsReportPost | None:
        return await self._write(lambda conn, _: tlsdata.claim_post(conn, now, lease))

    async def reschedule_tls_report_post(
        self, post_id: int, next_try: datetime, attempts: int
    ) -> None:
        await self._write(
            lambda conn, _: tlsdata.reschedule_post(conn, post_id, next_try, attempts)
        )

    async def delete_tls_report_post(self, post_id: int) -> None:
        await self._write(lambda conn, _: tlsdata.delete_post(conn, post_id))

    # -- the MTA-STS policy cache (see .stsdata) ----------------------------------------------
    async def save_sts_policy(self, policy: StsPolicyRecord) -> None:
        await self._write(lambda conn, _: stsdata.save(conn, policy))

    async def sts_policies(self, now: datetime) -> list[StsPolicyRecord]:
        return await self._read(lambda conn: stsdata.unexpired(conn, now))

    async def prune_sts_policies(self, now: datetime) -> int:
        return await self._write(lambda conn, _: stsdata.prune(conn, now))

    async def save_sts_fetch_failure(self, failure: StsFetchFailure) -> None:
        await self._write(lambda conn, _: stsdata.save_failure(conn, failure))

    async def sts_fetch_failures(self, since: datetime) -> list[StsFetchFailure]:
        return await self._read(lambda conn: stsdata.failures(conn, since))

    async def prune_sts_fetch_failures(self, before: datetime) -> int:
        return await self._write(lambda conn, _: stsdata.prune_failures(conn, before))

    async def sts_cache_entry(self, domain: str, now: datetime) -> StsCacheEntry:
        return await self._read(lambda conn: stsdata.entry(conn, domain, now))

    # -- change feed -----------------------------------------------------------------------------
    def subscribe(self, account_id: int) -> FeedSubscription:
        return self._hub.subscribe(account_id)

    # -- outbound queue --------------------------------------------------------------------------
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
        if not recipients:
            raise InvalidName("a queued message needs at least one recipient")
        blob = await _prepare_blob(raw, None)

        async def op(conn: Conn, changes: list[Change]) -> QueuedMessage:
            now = self._now()
            blob_row = await _put_blob(conn, blob)
            row = await _one(
                conn,
                "INSERT INTO queue_messages (sender, blob, size, queued_at, ret, envid, "
                "requiretls) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (sender, blob_row, blob.size, now, ret, envid, requiretls),
            )
            assert row is not None
            message_id = int(row[0])
            filings = [filingrows.filing_row(rcpt.filing) for rcpt in recipients]
            await conn.execute(
                "INSERT INTO queue_recipients (message_id, address, state, next_attempt, "
                f"notify, orcpt, {filingrows.COLUMNS}) SELECT %s, r.address, %s, %s, "
                "string_to_array(r.notify, ' '), r.orcpt, r.mailbox, r.spam, r.fields "
                "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::boolean[], "
                "%s::bytea[]) WITH ORDINALITY AS r(address, notify, orcpt, mailbox, spam, "
                "fields, n) ORDER BY r.n",
                (
                    message_id,
                    RecipientState.PENDING.value,
                    now,
                    [rcpt.address for rcpt in recipients],
                    [" ".join(sorted(rcpt.notify)) for rcpt in recipients],
                    [rcpt.orcpt for rcpt in recipients],
                    [f[0] for f in filings],
                    [f[1] for f in filings],
                    [f[2] for f in filings],
                ),
            )
            [queued] = await _queued(conn, [message_id], due_at=None)
            return queued

        return await self._write(op)

    async def claim_due(
        self, now: datetime, *, limit: int, lease_seconds: float, owner: str
    ) -> list[QueuedMessage]:
        at = _utc(now)
        until = datetime.fromtimestamp(at.timestamp() + lease_seconds, UTC)

        async def op(conn: Conn, changes: list[Change]) -> list[QueuedMessage]:
            # SKIP LOCKED: a message another node is claiming right now is passed over, not
            # waited for; once that claim commits, its live lease keeps it out of our reach.
            rows = await _all(
                conn,
                "WITH due AS ("
                " SELECT q.id FROM queue_messages q"
                " WHERE q.id IN (SELECT r.message_id FROM queue_recipients r"
                "  WHERE r.state = ANY(%(open)s) AND r.next_attempt <= %(at)s)"
                " AND (q.lease_owner IS NULL OR q.lease_until <= %(at)s"
                "  OR q.lease_owner = %(owner)s)"
                " ORDER BY q.id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
                " UPDATE queue_messages q SET lease_owner = %(owner)s, lease_until = %(until)s"
                " FROM due WHERE q.id = due.id RETURNING q.id",
                {"open": _OPEN_STATES, "at": at, "owner": owner, "limit": limit, "until": until},
            )
            return await _queued(conn, sorted(row[0] for row in rows), due_at=at)

        return await self._write(op)

    async def record_attempts(self, message_id: int, outcomes: Sequence[AttemptOutcome]) -> None:
        async def op(conn: Conn, changes: list[Change]) -> None:
            await _lock_queued(conn, message_id)
            for outcome in outcomes:
                cur = await conn.execute(
                    "UPDATE queue_recipients SET state = %s, last_reply = %s, "
                    "attempts = attempts + 1, next_attempt = coalesce(%s, next_attempt), "
                    "delay_notified = delay_notified OR %s WHERE id = %s AND message_id = %s",
                    (
                        outcome.state.value,
                        outcome.reply,
                        _utc(outcome.next_attempt) if outcome.next_attempt else None,
                        outcome.delay_notified,
                        outcome.recipient_id,
                        message_id,
                    ),
                )
                if cur.rowcount == 0:
                    raise NotFound(f"no recipient {outcome.recipient_id} in message {message_id}")
            open_row = await _one(
                conn,
                "SELECT count(*) FROM queue_recipients WHERE message_id = %s "
                "AND NOT state = ANY(%s)",
                (message_id, _FINAL_STATES),
            )
            if open_row is not None and open_row[0]:
                await conn.execute(
                    "UPDATE queue_messages SET lease_owner = NULL, lease_until = NULL "
                    "WHERE id = %s",
                    (message_id,),
                )
            else:
                await conn.execute("DELETE FROM queue_messages WHERE id = %s", (message_id,))

        await self._write(op)

    async def list_queue(self) -> list[QueuedMessage]:
        async def query(conn: Conn) -> list[QueuedMessage]:
            async with conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                ids = [row[0] for row in await _all(conn, "SELECT id FROM queue_messages")]
                return await _queued(conn, sorted(ids), due_at=None)

        return await self._read(query)

    async def queue_depth(self) -> QueueDepth:
        async def query(conn: Conn) -> QueueDepth:
            async with conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                messages, oldest = await _one(
                    conn, "SELECT count(*), min(queued_at) FROM queue_messages"
                )
                rows = await _all(
                    conn,
                    "SELECT state, count(*) FROM queue_recipients "
                    "WHERE state = ANY(%s) GROUP BY state",
                    (_OPEN_STATES,),
                )
            states = {str(state): int(count) for state, count in rows}
            return QueueDepth(
                messages=int(messages),
                pending=states.get(RecipientState.PENDING.value, 0),
                deferred=states.get(RecipientState.DEFERRED.value, 0),
                oldest=oldest,
            )

        return await self._read(query)

    async def get_queued(self, message_id: int) -> QueuedMessage | None:
        async def query(conn: Conn) -> QueuedMessage | None:
            async with conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                found = await _queued(conn, [message_id], due_at=None)
            return found[0] if found else None

        return await self._read(query)

    async def retry_queued(self, message_id: int, now: datetime) -> None:
        async def op(conn: Conn, changes: list[Change]) -> None:
            await _lock_queued(conn, message_id)
            await conn.execute(
                "UPDATE queue_recipients SET next_attempt = %s "
                "WHERE message_id = %s AND NOT state = ANY(%s)",
                (_utc(now), message_id, _FINAL_STATES),
            )

        await self._write(op)

    async def remove_queued(self, message_id: int) -> None:
        async def op(conn: Conn, changes: list[Change]) -> None:
            cur = await conn.execute("DELETE FROM queue_messages WHERE id = %s", (message_id,))
            if cur.rowcount == 0:
                raise NotFound(f"no queued message {message_id}")

        await self._write(op)

    async def wake_queue(self) -> None:
        # Every node's listener hears it, this one's included: one path for all of them.
        await self._read(lambda conn: notify.send_queue_wake(conn, self._channel))

    def on_queue_wake(self, callback: Callable[[], None]) -> None:
        self._queue_wakes.append(callback)

    def _queue_woken(self) -> None:
        for callback in self._queue_wakes:
            callback()

    # -- account settings and tokens (see .accountdata) ------------------------------------------
    async def get_settings(self, account_id: int) -> AccountSettings:
        # Read for each local recipient of every arriving message: kept like the directory.
        return await self._directory.lookup(
            ("settings", str(account_id)),
            lambda: self._read(lambda conn: accountdata.get_settings(conn, account_id)),
        )

    async def set_settings(self, account_id: int, settings: AccountSettings) -> None:
        await self._write(
            lambda conn, _: accountdata.set_settings(conn, account_id, settings), forget=_DIRECTORY
        )

    async def list_identities(self, account_id: int) -> list[Identity]:
        return await self._read(lambda conn: accountdata.list_identities(conn, account_id))

    async def save_identity(self, account_id: int, identity: Identity, *, limit: int) -> Identity:
        return await self._write(
            lambda conn, _: accountdata.save_identity(conn, account_id, identity, limit)
        )

    async def delete_identity(self, account_id: int, identity_id: int) -> None:
        await self._write(
            lambda conn, _: accountdata.delete_identity(conn, account_id, identity_id)
        )

    async def correspondents(self, account_id: int, prefix: str, limit: int) -> list[str]:
        return await self._read(
            lambda conn: accountdata.correspondents(conn, account_id, prefix, limit)
        )

    # -- address book (see .contactdata) ----------------------------------------------------
    async def list_contacts(
        self, account_id: int, search: str = "", limit: int | None = None
    ) -> list[Contact]:
        return await self._read(
            lambda conn: contactdata.list_contacts(conn, account_id, search, limit)
        )

    async def get_contact(self, account_id: int, contact_id: int) -> Contact:
        return await self._read(lambda conn: contactdata.get_contact(conn, account_id, contact_id))

    async def contact_by_uid(self, account_id: int, uid: str) -> Contact:
        return await self._read(lambda conn: contactdata.contact_by_uid(conn, account_id, uid))

    async def save_contacts(
        self, account_id: int, contacts: Sequence[Contact], *, now: datetime, limit: int
    ) -> list[Contact]:
        return await self._write(
            lambda conn, _: contactdata.save_contacts(conn, account_id, contacts, now, limit)
        )

    async def delete_contact(self, account_id: int, contact_id: int, *, now: datetime) -> None:
        await self._write(
            lambda conn, _: contactdata.delete_contact(conn, account_id, contact_id, now)
        )

    async def contact_members(self, account_id: int) -> list[Member]:
        return await self._read(lambda conn: contactdata.contact_members(conn, account_id))

    async def contacts_sync_token(self, account_id: int) -> int:
        return (await self._read(lambda conn: contactdata.sync_state(conn, account_id)))[0]

    async def contact_changes(self, account_id: int, since: int) -> SyncChanges[Contact]:
        return await self._read_snapshot(
            lambda conn: contactdata.contact_changes(conn, account_id, since)
        )

    # -- calendars (see .calendardata) -------------------------------------------------------
    async def list_calendars(self, account_id: int) -> list[Calendar]:
        return await self._read(lambda conn: calendardata.list_calendars(conn, account_id))

    async def create_calendar(
        self, account_id: int, calendar: Calendar, *, now: datetime, limit: int
    ) -> Calendar:
        return await self._write(
            lambda conn, _: calendardata.create_calendar(conn, account_id, calendar, now, limit)
        )

    async def update_calendar(self, account_id: int, calendar: Calendar) -> Calendar:
        return await self._write(
            lambda conn, _: calendardata.update_calendar(conn, account_id, calendar)
        )

    async def delete_calendar(self, account_id: int, name: str) -> None:
        await self._write(lambda conn, _: calendardata.delete_calendar(conn, account_id, name))

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
        return await self._read(
            lambda conn: calendardata.calendar_objects(
                conn, account_id, calendar, start, end, scheduling, uids, after, limit
            )
        )

    async def calendar_members(self, account_id: int, calendar: str) -> list[Member]:
        return await self._read(
            lambda conn: calendardata.calendar_members(conn, account_id, calendar)
        )

    async def calendar_object(self, account_id: int, calendar: str, name: str) -> CalendarObject:
        return await self._read(
            lambda conn: calendardata.calendar_object(conn, account_id, calendar, "name", name)
        )

    async def calendar_object_by_uid(
        self, account_id: int, calendar: str, uid: str
    ) -> CalendarObject:
        return await self._read(
            lambda conn: calendardata.calendar_object(conn, account_id, calendar, "uid", uid)
        )

    async def save_calendar_object(
        self, account_id: int, calendar: str, obj: CalendarObject, *, now: datetime, limit: int,
        if_match: str | None = None, if_none_match: bool = False,
    ) -> CalendarObject:  # fmt: skip
        return await self._write(
            lambda conn, _: calendardata.save_calendar_object(
                conn, account_id, calendar, obj, now, limit, if_match, if_none_match
            )
        )

    async def delete_calendar_object(
        self, account_id: int, calendar: str, name: str, *, now: datetime
    ) -> None:
        await self._write(
            lambda conn, _: calendardata.delete_calendar_object(
                conn, account_id, calendar, name, now
            )
        )

    async def move_calendar_object(
        self, account_id: int, calendar: str, name: str, target: str, obj: CalendarObject,
        *, now: datetime, limit: int,
    ) -> CalendarObject:  # fmt: skip
        return await self._write(
            lambda conn, _: calendardata.move_calendar_object(
                conn, account_id, calendar, name, target, obj, now, limit
            )
        )

    async def calendar_changes(
        self, account_id: int, calendar: str, since: int
    ) -> SyncChanges[CalendarObject]:
        return await self._read_snapshot(
            lambda conn: calendardata.calendar_changes(conn, account_id, calendar, since)
        )

    async def prune_tombstones(
        self, *, calendars_before: datetime | None, contacts_before: datetime | None
    ) -> int:
        async def prune(conn: Conn, _: list[Change]) -> int:
            removed = 0
            if calendars_before is not None:
                removed += await calendardata.prune_tombstones(conn, calendars_before)
            if contacts_before is not None:
                removed += await contactdata.prune_tombstones(conn, contacts_before)
            return removed

        return await self._write(prune)

    async def claim_vacation_reply(
        self, account_id: int, sender: str, now: datetime, interval: timedelta
    ) -> bool:
        return await self._write(
            lambda conn, _: accountdata.claim_vacation_reply(
                conn, account_id, sender, now, interval
            )
        )

    async def add_token(
        self, account_id: int, kind: TokenKind, label: str, digest: str
    ) -> AccountToken:
        return await self._write(
            lambda conn, _: accountdata.add_token(
                conn, account_id, kind, label, digest, self._now()
            ),
            forget=_DIRECTORY,
        )

    async def list_tokens(
        self, account_id: int, kind: TokenKind | None = None
    ) -> list[AccountToken]:
        return await self._read(lambda conn: accountdata.list_tokens(conn, account_id, kind))

    async def remove_token(self, account_id: int, token_id: int) -> None:
        await self._write(
            lambda conn, _: accountdata.remove_token(conn, account_id, token_id),
            forget=_DIRECTORY,
        )

    async def find_token(self, kind: TokenKind, digest: str) -> AccountToken | None:
        async def query(conn: Conn) -> AccountToken | None:
            return await accountdata.find_token(conn, kind, digest)

        if kind in KEPT_TOKEN_KINDS:
            return await self._directory.lookup((kind.value, digest), lambda: self._read(query))
        return await self._read(query)

    # -- second factor (see .accountdata) ---------------------------------------------------------
    async def enable_totp(
        self, account_id: int, sealed_secret: str, recovery_digests: Sequence[str]
    ) -> None:
        await self._write(
            lambda conn, _: accountdata.enable_totp(
                conn, account_id, sealed_secret, recovery_digests, self._now()
            )
        )

    async def get_totp(self, account_id: int) -> TotpEnrolment | None:
        return await self._read(lambda conn: accountdata.get_totp(conn, account_id))

    async def disable_totp(self, account_id: int) -> bool:
        return await self._write(lambda conn, _: accountdata.disable_totp(conn, account_id))

    async def claim_totp_step(self, account_id: int, step: int) -> bool:
        return await self._write(
            lambda conn, _: accountdata.claim_totp_step(conn, account_id, step)
        )

    async def use_recovery_code(self, account_id: int, digest: str) -> bool:
        return await self._write(
            lambda conn, _: accountdata.use_recovery_code(conn, account_id, digest)
        )

    async def replace_recovery_codes(self, account_id: int, digests: Sequence[str]) -> bool:
        return await self._write(
            lambda conn, _: accountdata.replace_recovery_codes(conn, account_id, digests)
        )

    async def totp_accounts(self) -> set[int]:
        return await self._read(accountdata.totp_accounts)

    # -- messages two-step web logins hold between their steps (see .accountdata) ---------------
    async def hold_login_message(self, hold: LoginHold, now: datetime, max_bytes: int) -> bool:
        return await self._write(
            lambda conn, _: accountdata.hold_login_message(conn, hold, now, max_bytes)
        )

    async def held_login_message(self, account_id: int, sid: str, now: datetime) -> str | None:
        return await self._read(
            lambda conn: accountdata.held_login_message(conn, account_id, sid, now)
        )

    async def drop_login_message(self, account_id: int, sid: str) -> None:
        await self._write(lambda conn, _: accountdata.drop_login_message(conn, account_id, sid))

    async def prune_login_messages(self, now: datetime) -> int:
        return await self._write(lambda conn, _: accountdata.prune_login_messages(conn, now))

    # -- DKIM keys (see .accountdata) ------------------------------------------------------------
    async def add_dkim_key(self, key: DkimKeyRecord) -> None:
        await self._write(lambda conn, _: accountdata.add_dkim_key(conn, key))

    async def list_dkim_keys(
        self, domain: str, *, include_retired: bool = False
    ) -> list[DkimKeyRecord]:
        return await self._read(
            lambda conn: accountdata.list_dkim_keys(conn, domain, include_retired)
        )

    async def retire_dkim_key(self, domain: str, selector: str, when: datetime) -> None:
        await self._write(
            lambda conn, _: accountdata.retire_dkim_key(conn, domain, selector, _utc(when))
        )

    # -- ACME DNS-01 challenge records (see .acmedata) ------------------------------------------
    async def add_acme_challenge(self, record: AcmeChallengeRecord) -> None:
        await self._write(lambda conn, _: acmedata.add_challenge(conn, record))

    async def remove_acme_challenge(self, name: str, value: str) -> None:
        await self._write(lambda conn, _: acmedata.remove_challenge(conn, name, value))

    async def list_acme_challenges(self, domain: str, now: datetime) -> list[AcmeChallengeRecord]:
        return await self._read(lambda conn: acmedata.list_challenges(conn, domain, _utc(now)))

    # -- ACME http-01 and tls-alpn-01 answers (see .acmedata) -------------------------------------
    async def add_acme_answer(self, answer: AcmeAnswer, limit: int) -> None:
        await self._write(lambda conn, _: acmedata.add_answer(conn, answer, limit))

    async def remove_acme_answer(self, kind: str, key: str, value: str) -> None:
        await self._write(lambda conn, _: acmedata.remove_answer(conn, kind, key, value))

    async def acme_answer(self, kind: str, key: str, now: datetime) -> str | None:
        return await self._read(lambda conn: acmedata.answer_value(conn, kind, key, _utc(now)))

    async def list_acme_answers(self, kind: str, now: datetime, limit: int) -> list[AcmeAnswer]:
        return await self._read(lambda conn: acmedata.list_answers(conn, kind, _utc(now), limit))

    # -- the shared ACME certificate, its lease and account (see .acmedata) ----------------------
    async def acme_certificate(self, scope: str) -> AcmeCertificate | None:
        return await self._read(lambda conn: acmedata.certificate(conn, scope))

    async def put_acme_certificate(self, certificate: AcmeCertificate) -> bool:
        return await self._write(lambda conn, _: acmedata.put_certificate(conn, certificate))

    async def acme_account(self, directory: str) -> AcmeAccount | None:
        return await self._read(lambda conn: acmedata.account(conn, directory))

    async def add_acme_account(self, account: AcmeAccount) -> AcmeAccount:
        return await self._write(lambda conn, _: acmedata.add_account(conn, account))

    async def replace_acme_account(self, old_key_pem: bytes, account: AcmeAccount) -> AcmeAccount:
        return await self._write(
            lambda conn, _: acmedata.replace_account(conn, old_key_pem, account)
        )

    async def set_acme_account_url(self, directory: str, key_pem: bytes, url: str) -> None:
        await self._write(lambda conn, _: acmedata.set_account_url(conn, directory, key_pem, url))

    async def acme_lease(self, scope: str) -> AcmeLease | None:
        return await self._read(lambda conn: acmedata.lease(conn, scope))

    async def claim_acme_lease(
        self, scope: str, holder: str, now: datetime, until: datetime, *, force: bool = False
    ) -> AcmeLease:
        return await self._write(
            lambda conn, _: acmedata.claim_lease(conn, scope, holder, _utc(now), _utc(until), force)
        )

    async def end_acme_lease(self, scope: str, holder: str, failures: int, until: datetime) -> None:
        await self._write(
            lambda conn, _: acmedata.end_lease(conn, scope, holder, failures, _utc(until))
        )

    # -- the zone signing keys of hosted domains (see .dnssecdata) ------------------------------
    async def dnssec_keys(self, domain: str) -> list[DnssecKey]:
        return await self._read(lambda conn: dnssecdata.keys(conn, domain))

    async def add_dnssec_key(self, key: DnssecKey) -> DnssecKey:
        return await self._write(lambda conn, _: dnssecdata.add_key(conn, key))

    async def finish_dnssec_rollover(self, domain: str, now: datetime) -> bool:
        return await self._write(lambda conn, _: dnssecdata.finish_rollover(conn, domain, now))

    async def remove_dnssec_key(self, key: DnssecKey) -> bool:
        return await self._write(lambda conn, _: dnssecdata.remove_key(conn, key))

    # -- the SOA serials of the hosted zones (see .zonedata) --------------------------------------
    async def zone_serial(self, domain: str, digest: bytes, now: int) -> ZoneSerial:
        current = await self._read(lambda conn: zonedata.stored(conn, domain))
        if current is not None and current[1] == digest:
            return ZoneSerial(current[0], changed=False)
        return await self._write(lambda conn, _: zonedata.advance(conn, domain, digest, now))

    # -- spam filter (see .spamdata) -------------------------------------------------------------
    async def spam_model(
        self, account_id: int | None, tokens: Sequence[str]
    ) -> tuple[SpamCounts, dict[str, SpamCounts]]:
        cache = self._spam_cache
        return await self._read(lambda conn: spamdata.spam_model(conn, cache, account_id, tokens))

    async def spam_evidence(
        self, account_id: int, tokens: Sequence[str], sender_keys: Sequence[str]
    ) -> SpamEvidence:
        # From memory when every piece is kept and fresh: reading it cost a round trip or two
        # and every token's count on each message (see store.evidencecache).
        cache, asked = self._spam_cache, (account_id, tokens, sender_keys)
        read = functools.partial(
            self._read, lambda conn: spamdata.spam_evidence(conn, cache, *asked)
        )
        return await self._evidence.lookup_evidence(cache, *asked, read)

    async def train_spam_model(
        self, account_id: int | None, messages: SpamCounts, tokens: Mapping[str, SpamCounts]
    ) -> None:
        model = GLOBAL_MODEL if account_id is None else account_id
        await self._write(
            lambda conn, _: spamdata.train_spam_model(conn, account_id, messages, tokens),
            forget=[("model", model)],
        )

    async def spam_training_mark(self, account_id: int, message_key: str) -> bool | None:
        return await self._read(lambda conn: spamdata.training_mark(conn, account_id, message_key))

    async def set_spam_training_mark(self, account_id: int, message_key: str, spam: bool) -> None:
        await self._write(
            lambda conn, _: spamdata.set_training_mark(conn, account_id, message_key, spam)
        )

    async def sender_reputation(
        self, account_id: int, keys: Sequence[str]
    ) -> dict[str, SpamCounts]:
        return await self._read(lambda conn: spamdata.sender_reputation(conn, account_id, keys))

    async def record_sender_reputation(
        self, account_id: int, keys: Sequence[str], delta: SpamCounts
    ) -> None:
        await self._write(
            lambda conn, _: spamdata.record_sender_reputation(conn, account_id, keys, delta),
            forget=[("reputation", account_id, key) for key in keys],
        )

    async def list_sender_entries(self, account_id: int) -> list[SenderListEntry]:
        return await self._read(lambda conn: spamdata.list_sender_entries(conn, account_id))

    async def set_sender_entry(self, account_id: int, entry: SenderListEntry) -> None:
        await self._write(
            lambda conn, _: spamdata.set_sender_entry(conn, account_id, entry),
            forget=[("senders", account_id)],
        )

    async def remove_sender_entry(self, account_id: int, pattern: str) -> None:
        await self._write(
            lambda conn, _: spamdata.remove_sender_entry(conn, account_id, pattern),
            forget=[("senders", account_id)],
        )

    # -- Sieve scripts (see .sievedata) ----------------------------------------------------------
    async def list_sieve_scripts(self, account_id: int) -> list[SieveScript]:
        return await self._read(lambda conn: sievedata.list_scripts(conn, account_id))

    async def get_sieve_script(self, account_id: int, name: str) -> SieveScript | None:
        return await self._read(lambda conn: sievedata.get_script(conn, account_id, name))

    async def active_sieve_script(self, account_id: int) -> SieveScript | None:
        # Read for each local recipient of every arriving message: kept like the settings;
        # every script write below makes each node forget the directory.
        return await self._directory.lookup(
            ("sieve", str(account_id)),
            lambda: self._read(lambda conn: sievedata.active_script(conn, account_id)),
        )

    async def put_sieve_script(self, account_id: int, name: str, content: str) -> None:
        await self._write(
            lambda conn, _: sievedata.put_script(conn, account_id, name, content),
            forget=_DIRECTORY,
        )

    async def set_active_sieve_script(self, account_id: int, name: str | None) -> None:
        await self._write(
            lambda conn, _: sievedata.set_active(conn, account_id, name), forget=_DIRECTORY
        )

    async def delete_sieve_script(self, account_id: int, name: str) -> None:
        await self._write(
            lambda conn, _: sievedata.delete_script(conn, account_id, name), forget=_DIRECTORY
        )

    async def rename_sieve_script(self, account_id: int, old: str, new: str) -> None:
        await self._write(
            lambda conn, _: sievedata.rename_script(conn, account_id, old, new),
            forget=_DIRECTORY,
        )

    async def sieve_duplicates(self, account_id: int, now: datetime) -> frozenset[str]:
        return await self._read(lambda conn: sievedata.live_duplicates(conn, account_id, now))

    async def track_sieve_duplicates(
        self,
        account_id: int,
        entries: Sequence[tuple[str, datetime]],
        now: datetime,
        max_entries: int,
    ) -> None:
        await self._write(
            lambda conn, _: sievedata.track_duplicates(conn, account_id, entries, now, max_entries)
        )

    async def prune_sieve_duplicates(self, now: datetime) -> int:
        return await self._write(lambda conn, _: sievedata.prune_duplicates(conn, now))

    # -- greylisting (see .greylistdata) -------------------------------------------------------
    async def check_greylist(
        self, triplet: GreyTriplet, now: datetime, rules: GreylistRules
    ) -> GreyOutcome:
        return await self._write(lambda conn, _: greylistdata.check(conn, triplet, now, rules))

    async def prune_greylist(self, now: datetime) -> int:
        return await self._write(lambda conn, _: greylistdata.prune(conn, now))

    # -- reports received about our domains (see .receiveddata) -------------------------------
    async def add_received_report(self, report: ReceivedReport) -> bool:
        return await self._write(lambda conn, _: receiveddata.add(conn, report))

    async def received_reports(
        self,
        since: datetime,
        *,
        domain: str | None = None,
        kind: str | None = None,
        limit: int = 1000,
    ) -> list[ReceivedReport]:
        return await self._read(lambda conn: receiveddata.reports(conn, since, domain, kind, limit))

    async def delete_received_reports(self, until: datetime) -> int:
        return await self._write(lambda conn, _: receiveddata.delete(conn, until))

    # -- DMARC aggregate reports (see .dmarcdata) ------------------------------------------------
    async def record_dmarc_observation(self, observation: DmarcObservation) -> None:
        await self._write(lambda conn, _: dmarcdata.record(conn, observation))

    async def dmarc_observations(self, until: datetime) -> list[DmarcObservation]:
        return await self._read(lambda conn: dmarcdata.observations(conn, until))

    async def delete_dmarc_observations(self, ids: Sequence[int]) -> int:
        return await self._write(lambda conn, _: dmarcdata.delete(conn, ids))

    async def claim_dmarc_report_run(self, period_end: datetime, scope: str, node: str) -> bool:
        return await self._write(lambda conn, _: dmarcdata.claim_run(conn, period_end, scope, node))


# -- connections ---------------------------------------------------------------------------------
async def _configure(conn: Conn) -> None:
    """Per pooled connection: UTC times, and durable commits even on a server configured with
    ``synchronous_commit = off`` (a 250 after DATA promises the message survives a crash)."""
    await conn.execute(
        "SELECT set_config('TimeZone', 'UTC', false), "
        "CASE WHEN current_setting('synchronous_commit') = 'off' "
        "THEN set_config('synchronous_commit', 'on', false) END"
    )


# -- conversions ---------------------------------------------------------------------------------
def _utc(value: datetime) -> datetime:
    """Aware UTC (a naive ``datetime`` is taken to be UTC, as in the SQLite backend)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@functools.lru_cache(maxsize=4096)
def _flag_set(stored: tuple[str, ...]) -> frozenset[str]:
    """Flags as stored; mailboxes repeat few distinct combinations."""
    return frozenset(stored)


def _record(mailbox_id: int, row: Sequence[Any]) -> MessageRecord:
    uid, modseq, flags, internal_date, saved_date, size, blob_id = row
    return MessageRecord(
        mailbox_id, uid, modseq, _flag_set(tuple(flags)), internal_date, saved_date, size, blob_id
    )


def _mailbox(row: Sequence[Any]) -> Mailbox:
    mailbox_id, account_id, name, special_use, uidvalidity, uidnext, highestmodseq = row
    return Mailbox(
        mailbox_id,
        account_id,
        name,
        SpecialUse(special_use) if special_use else None,
        uidvalidity,
        uidnext,
        highestmodseq,
    )


def _account(row: Sequence[Any]) -> Account:
    return Account(*row)


def _like_escape(term: str) -> str:
    """``term`` as a literal inside a LIKE pattern (``\\`` is LIKE's default escape)."""
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def _prepare_blob(raw: bytes, info: MessageInfo | None) -> _Blob:
    info_json = header_text = body_text = None
    if info is not None:
        info_json = info.to_json(text=False)
        header_text, body_text = info.header_text, info.body_text
    blob_id = await run_blocking(blob_id_of, raw) if len(raw) >= _HASH_OFF_LOOP else blob_id_of(raw)
    return _Blob(blob_id, raw, len(raw), info_json, header_text or "", body_text or "")


# -- statements used by several operations -------------------------------------------------------
async def _one(conn: Conn, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
    cur = await conn.execute(sql.encode(), params)
    return await cur.fetchone()


async def _all(conn: Conn, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[TupleRow]:
    cur = await conn.execute(sql.encode(), params)
    return await cur.fetchall()


async def _require_address_free(conn: Conn, address: str) -> None:
    row = await _one(
        conn,
        "SELECT EXISTS (SELECT 1 FROM accounts WHERE address = %s) "
        "OR EXISTS (SELECT 1 FROM aliases WHERE address = %s)",
        (address, address),
    )
    if row is not None and row[0]:
        raise AlreadyExists(f"{address} is an account or alias already")


async def _share_domain(conn: Conn, domain: str) -> None:
    """``NotFound`` unless the domain exists; its share lock keeps ``remove_domain`` from
    racing the account or alias being added."""
    if await _one(conn, "SELECT 1 FROM domains WHERE name = %s FOR SHARE", (domain,)) is None:
        raise NotFound(f"no domain {domain}")


async def _require_account(conn: Conn, account_id: int) -> None:
    if await _one(conn, "SELECT 1 FROM accounts WHERE id = %s", (account_id,)) is None:
        raise NotFound(f"no account {account_id}")


async def _status(conn: Conn, mailbox_id: int) -> MailboxStatus:
    row = await _one(
        conn,
        f"SELECT {_MAILBOX_COLUMNS}, messages, unseen, deleted, bytes, recent_uid "
        "FROM mailboxes WHERE id = %s",
        (mailbox_id,),
    )
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    return MailboxStatus(_mailbox(row[:7]), *row[7:])


async def _records_changed(conn: Conn, mailbox_id: int, modseq: int) -> list[MessageRecord]:
    rows = await _all(
        conn,
        f"SELECT {_RECORD_COLUMNS} WHERE m.mailbox_id = %s AND m.modseq > %s ORDER BY m.uid",
        (mailbox_id, modseq),
    )
    return [_record(mailbox_id, row) for row in rows]


async def _uids_expunged(conn: Conn, mailbox_id: int, modseq: int) -> list[int]:
    rows = await _all(
        conn,
        "SELECT uid FROM expunged WHERE mailbox_id = %s AND modseq > %s ORDER BY uid",
        (mailbox_id, modseq),
    )
    return [row[0] for row in rows]


async def _require_mailbox(conn: Conn, mailbox_id: int) -> None:
    if await _one(conn, "SELECT 1 FROM mailboxes WHERE id = %s", (mailbox_id,)) is None:
        raise NotFound(f"no mailbox {mailbox_id}")


async def _lock_mailbox(conn: Conn, mailbox_id: int) -> Mailbox:
    row = await _one(
        conn,
        f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE id = %s FOR NO KEY UPDATE",
        (mailbox_id,),
    )
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    return _mailbox(row)


async def _lock_mailboxes(conn: Conn, *mailbox_ids: int) -> dict[int, Mailbox]:
    """Lock the mailboxes (in id order, as every writer of several does), by id; ``NotFound``
    for one that does not exist."""
    rows = await _all(
        conn,
        f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE id = ANY(%s) "
        "ORDER BY id FOR NO KEY UPDATE",
        (list(mailbox_ids),),
    )
    boxes = {row[0]: _mailbox(row) for row in rows}
    for wanted in mailbox_ids:
        if wanted not in boxes:
            raise NotFound(f"no mailbox {wanted}")
    return boxes


async def _lock_mailboxes_by_name(
    conn: Conn, wanted: set[tuple[int, str]]
) -> dict[tuple[int, str], Mailbox]:
    if not wanted:
        return {}
    pairs = sorted(wanted)
    rows = await _all(
        conn,
        f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes "
        "WHERE (account_id, name) IN (SELECT * FROM unnest(%s::bigint[], %s::text[])) "
        "ORDER BY id FOR NO KEY UPDATE",
        ([account for account, _ in pairs], [name for _, name in pairs]),
    )
    boxes = [_mailbox(row) for row in rows]
    return {(box.account_id, box.name): box for box in boxes}


async def _lock_accounts(conn: Conn, account_ids: set[int]) -> dict[int, QuotaUsage]:
    """Lock the accounts (in id order) whose usage a write is about to change; their usage."""
    if not account_ids:
        return {}
    rows = await _all(
        conn,
        "SELECT id, used_bytes, used_messages, quota_bytes, quota_messages, quota_warned "
        "FROM accounts WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE",
        (sorted(account_ids),),
    )
    return {row[0]: QuotaUsage(*row[1:]) for row in rows}


async def _mailbox_by_name(conn: Conn, account_id: int, name: str) -> Mailbox | None:
    row = await _one(
        conn,
        f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = %s AND name = %s",
        (account_id, name),
    )
    return _mailbox(row) if row else None


async def _insert_mailbox(
    conn: Conn, account_id: int, name: str, special_use: SpecialUse | None, now: datetime
) -> Mailbox:
    # RFC 9051 §2.3.1.1: a new mailbox (also a re-created name) gets a UIDVALIDITY never used
    # before in this store. The meta row's lock makes the choice atomic across nodes.
    row = await _one(
        conn,
        "INSERT INTO meta (key, value) VALUES ('uidvalidity', %(now)s) "
        "ON CONFLICT (key) DO UPDATE SET value = greatest(meta.value + 1, %(now)s) "
        "RETURNING value",
        {"now": int(now.timestamp())},
    )
    uidvalidity = int(row[0])
    try:
        created = await _one(
            conn,
            "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity) "
            "VALUES (%s, %s, %s, %s) RETURNING id",
            (account_id, name, special_use.value if special_use else None, uidvalidity),
        )
    except pg_errors.UniqueViolation as exc:
        raise AlreadyExists(f"mailbox {name} exists") from exc
    return Mailbox(int(created[0]), account_id, name, special_use, uidvalidity, 1, 1)


async def _create_superiors(conn: Conn, account_id: int, name: str, now: datetime) -> list[Mailbox]:
    """RFC 9051 §6.3.4/§6.3.6: create the missing superiors of ``name``."""
    levels = name.split(DELIMITER)
    created: list[Mailbox] = []
    for depth in range(1, len(levels)):
        superior = DELIMITER.join(levels[:depth])
        if await _mailbox_by_name(conn, account_id, superior) is None:
            created.append(await _insert_mailbox(conn, account_id, superior, None, now))
    return created


async def _next_modseq(conn: Conn, mailbox_id: int) -> int:
    row = await _one(
        conn,
        "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = %s "
        "RETURNING highestmodseq",
        (mailbox_id,),
    )
    return int(row[0])


async def _put_blob(conn: Conn, blob: _Blob) -> int:
    """The row id of ``blob``, locked for this transaction, inserting it (with its bytes and
    text) if it is new. A row a concurrent transaction deletes under us (its last reference
    gone) is inserted afresh on the next round."""
    while True:
        inserted = await _one(
            conn,
            "INSERT INTO blobs (sha256, size, info) VALUES (%s, %s, %s) "
            "ON CONFLICT (sha256) DO NOTHING RETURNING id",
            (blob.blob_id, blob.size, blob.info_json),
        )
        if inserted is not None:
            blob_row = int(inserted[0])
            await conn.execute(
                "INSERT INTO blob_data (id, data) VALUES (%s, %s)", (blob_row, blob.raw)
            )
            if blob.info_json is not None:
                await _store_text(conn, blob_row, blob)
            return blob_row
        found = await _one(
            conn,
            "SELECT id, info IS NULL FROM blobs WHERE sha256 = %s FOR NO KEY UPDATE",
            (blob.blob_id,),
        )
        if found is None:
            continue
        blob_row, lacks_info = int(found[0]), bool(found[1])
        if lacks_info and blob.info_json is not None:
            # Content first seen by the queue, now delivered locally: keep its metadata.
            await conn.execute(
                "UPDATE blobs SET info = %s WHERE id = %s", (blob.info_json, blob_row)
            )
            await _store_text(conn, blob_row, blob)
        return blob_row


async def _store_text(conn: Conn, blob_row: int, blob: _Blob) -> None:
    await conn.execute(
        "INSERT INTO blob_text (id, header_text, body_text, search_header, search_body) "
        "VALUES (%s, %s, %s, %s, %s)",
        (
            blob_row,
            blob.header_text,
            blob.body_text,
            blob.header_text.lower(),
            blob.body_text.lower(),
        ),
    )


async def _add_message(
    conn: Conn,
    changes: list[Change],
    mailbox: Mailbox,
    *,
    blob: _Blob,
    blob_row: int,
    flags: str,
    internal_date: datetime,
    now: datetime,
    keys: _SortKeys,
) -> MessageRecord:
    # The caller holds the account's lock, so threading sees every earlier message of it.
    thread = await _thread_of(
        conn,
        mailbox.account_id,
        thread_keys(keys.message_id, keys.in_reply_to, keys.references, blob.blob_id),
    )
    # One statement: reserve the UID and MODSEQ (the mailbox row stays locked to COMMIT) and
    # insert the message with them.
    row = await _one(
        conn,
        "WITH alloc AS (UPDATE mailboxes SET uidnext = uidnext + 1, "
        "highestmodseq = highestmodseq + 1 WHERE id = %(mailbox)s "
        "RETURNING uidnext - 1 AS uid, highestmodseq AS modseq) "
        f"INSERT INTO messages ({_MESSAGE_COLUMNS}) "
        "SELECT %(mailbox)s, alloc.uid, alloc.modseq, string_to_array(%(flags)s, ' '), "
        "%(internal)s, %(now)s, %(size)s, %(blob)s, %(sent)s, %(subject)s, %(from)s, %(to)s, "
        "%(cc)s, %(message_id)s, %(in_reply_to)s, %(refs)s, %(thread)s FROM alloc "
        "RETURNING uid, modseq",
        {
            "mailbox": mailbox.id,
            "flags": flags,
            "internal": internal_date,
            "now": now,
            "size": blob.size,
            "blob": blob_row,
            "sent": keys.sent_date,
            "subject": keys.subject,
            "from": keys.from_addr,
            "to": keys.to_addr,
            "cc": keys.cc_addr,
            "message_id": keys.message_id,
            "in_reply_to": keys.in_reply_to,
            "refs": keys.references,
            "thread": thread,
        },
    )
    uid, modseq = int(row[0]), int(row[1])
    changes.append(Change(mailbox.account_id, mailbox.id, ChangeKind.EXISTS, modseq))
    return MessageRecord(
        mailbox.id,
        uid,
        modseq,
        frozenset(flags.split()),
        internal_date,
        now,
        blob.size,
        blob.blob_id,
    )


async def _thread_of(conn: Conn, account_id: int, keys: list[str]) -> int:
    """The thread a new message of the account joins (the rule: .threadrows), its keys
    recorded, in one statement: one probe of the key table's primary key per key. The caller
    holds the account's lock, so two related messages arriving together on two nodes meet."""
    row = await _one(
        conn,
        "WITH found AS (SELECT coalesce(min(thread), nextval('thread_ids')) AS thread "
        "FROM thread_keys WHERE account_id = %(account)s AND key = ANY(%(keys)s)), "
        "added AS (INSERT INTO thread_keys (account_id, key, thread) "
        "SELECT %(account)s, k, found.thread FROM found, unnest(%(keys)s::text[]) AS k "
        "ON CONFLICT (account_id, key) DO NOTHING) "
        "SELECT thread FROM found",
        {"account": account_id, "keys": keys},
    )
    return int(row[0])


async def _thread_unthreaded(conn: Conn) -> None:
    """Thread the messages left at thread 0, the column's default, by the rule of a delivery,
    in arrival order: rows a node from before migration 24 wrote while it still ran on a
    store another node had upgraded (docs/upgrading.md). Normally there are none: one read at
    open, whose answer is empty."""
    rows = await _all(
        conn,
        # Per mailbox, so that each probe is on messages_thread's leading (mailbox_id,
        # thread): ``thread = 0`` alone reads the whole index at every open. OFFSET 0 keeps
        # the planner from flattening the LATERAL subquery back into that plan.
        "SELECT b.account_id, m.mailbox_id, m.uid, m.message_id, m.in_reply_to, m.refs, "
        "s.sha256 FROM mailboxes b CROSS JOIN LATERAL (SELECT * FROM messages "
        "WHERE mailbox_id = b.id AND thread = 0 OFFSET 0) m JOIN blobs s ON s.id = m.blob "
        "ORDER BY m.internal_date, m.mailbox_id, m.uid",
    )
    if not rows:
        return
    async with conn.transaction():
        # As a delivery: the accounts' locks, so a message arriving meanwhile meets its thread.
        await _lock_accounts(conn, {row[0] for row in rows})
        for account_id, mailbox_id, uid, message_id, in_reply_to, refs, digest in rows:
            keys = thread_keys(message_id, in_reply_to, refs, digest)
            await conn.execute(
                "UPDATE messages SET thread = %s WHERE mailbox_id = %s AND uid = %s AND thread = 0",
                (await _thread_of(conn, account_id, keys), mailbox_id, uid),
            )
    log.warning("messages without a thread id threaded: %d", len(rows))


async def _remove_messages(
    conn: Conn, mailbox_id: int, uids: list[int], *, modseq: int | None = None
) -> int:
    """Delete messages and remember them as expunged (QRESYNC), the keys of threads left
    without a message pruned; returns the expunge MODSEQ: ``modseq`` when the write took one
    for this mailbox already (a write takes one MODSEQ per mailbox), else the next. The
    caller holds the mailbox and account locks."""
    if modseq is None:
        modseq = await _next_modseq(conn, mailbox_id)
    rows = await _all(
        conn,
        "DELETE FROM messages WHERE mailbox_id = %s AND uid = ANY(%s) "
        "RETURNING thread, (SELECT account_id FROM mailboxes WHERE id = %s)",
        (mailbox_id, uids, mailbox_id),
    )
    await conn.execute(
        "INSERT INTO expunged (mailbox_id, uid, modseq) SELECT %s, u, %s FROM unnest(%s::bigint[]) "
        "AS u ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = excluded.modseq",
        (mailbox_id, modseq, uids),
    )
    if rows:
        await _prune_thread_keys(conn, rows[0][1], {thread for thread, _ in rows})
    return modseq


async def _prune_thread_keys(conn: Conn, account_id: int, threads: set[int]) -> None:
    """Forget the keys of those of ``threads`` the account holds no message of any more
    (docs/threading.md, "Pruning"): one probe of ``messages_thread`` per mailbox of the
    account and thread. A thread with a message left keeps every key, so a late reply still
    joins it; a thread without one has no THREADID left to keep (RFC 8474 §5.2). The caller
    holds the account's lock, as a delivery does while it looks keys up, so a delivery cannot
    join a thread whose keys are being pruned."""
    await conn.execute(
        "DELETE FROM thread_keys WHERE account_id = %(account)s AND thread IN ("
        "SELECT t FROM unnest(%(threads)s::bigint[]) AS t WHERE NOT EXISTS ("
        "SELECT 1 FROM mailboxes b JOIN messages m ON m.mailbox_id = b.id AND m.thread = t "
        "WHERE b.account_id = %(account)s))",
        {"account": account_id, "threads": sorted(threads)},
    )


async def _transfer(
    conn: Conn,
    changes: list[Change],
    source: Mailbox,
    uids: list[int],
    *,
    target: Mailbox,
    now: datetime,
    remove_source: bool,
    rights: str | None = None,
) -> Copied:
    """Copy ``uids`` (ascending, present) into ``target``, flags and dates kept (only those
    ``rights`` let the user set, when given: ``Store.copy_messages``); with ``remove_source``
    also expunge them from ``source`` (RFC 6851 MOVE). The caller holds both mailboxes'
    locks."""
    if not uids:
        return Copied([])
    usage = await _lock_accounts(conn, {source.account_id, target.account_id})
    row = await _one(
        conn,
        "SELECT coalesce(sum(size), 0) FROM messages WHERE mailbox_id = %s AND uid = ANY(%s)",
        (source.id, uids),
    )
    total = int(row[0])
    after: QuotaUsage | None = None
    # A move within one account leaves its usage unchanged; anything else must fit.
    if not (remove_source and source.account_id == target.account_id):
        if not usage[target.account_id].fits(total, len(uids)):
            raise QuotaExceeded(f"{len(uids)} messages of {total} bytes exceed the quota")
        after = usage[target.account_id].added(total, len(uids))
    alloc = await _one(
        conn,
        "UPDATE mailboxes SET uidnext = uidnext + %s, highestmodseq = highestmodseq + 1 "
        "WHERE id = %s RETURNING uidnext - %s, highestmodseq",
        (len(uids), target.id, len(uids)),
    )
    uid_first, modseq = int(alloc[0]), int(alloc[1])
    pairs = [(uid, uid_first + index) for index, uid in enumerate(uids)]
    # RFC 8474 §5.2: a copy keeps its thread within the account; a thread belongs to its
    # account, so a copy into another account's mailbox is threaded anew there.
    threads: dict[int, int | None] = dict.fromkeys(uids)
    if target.account_id != source.account_id:
        for uid, message_id, in_reply_to, refs, digest in await _all(
            conn,
            "SELECT m.uid, m.message_id, m.in_reply_to, m.refs, b.sha256 FROM messages m "
            "JOIN blobs b ON b.id = m.blob WHERE m.mailbox_id = %s AND m.uid = ANY(%s) "
            "ORDER BY m.uid",
            (source.id, uids),
        ):
            keys = thread_keys(message_id, in_reply_to, refs, digest)
            threads[uid] = await _thread_of(conn, target.account_id, keys)
    await conn.execute(
        f"INSERT INTO messages ({_MESSAGE_COLUMNS}) "
        "SELECT %s, p.new, %s, m.flags, m.internal_date, %s, m.size, m.blob, m.sent_date, "
        "m.subject, m.from_addr, m.to_addr, m.cc_addr, m.message_id, m.in_reply_to, m.refs, "
        "coalesce(p.thread, m.thread) "
        "FROM messages m JOIN unnest(%s::bigint[], %s::bigint[], %s::bigint[]) "
        "AS p(old, new, thread) ON m.uid = p.old WHERE m.mailbox_id = %s",
        (
            target.id,
            modseq,
            now,
            [old for old, _ in pairs],
            [new for _, new in pairs],
            [threads[old] for old, _ in pairs],
            source.id,
        ),
    )
    if rights is not None:
        # RFC 4314 §4: in this write, at the copies' MODSEQ.
        rows = await _all(
            conn,
            "SELECT uid, flags FROM messages WHERE mailbox_id = %s AND uid = ANY(%s)",
            (target.id, [new for _, new in pairs]),
        )
        limited = [
            (uid, kept)
            for uid, flags in rows
            if (kept := allowed_flags(frozenset(flags), rights)) != frozenset(flags)
        ]
        if limited:
            await conn.execute(
                "UPDATE messages m SET flags = string_to_array(v.flags, ' ') "
                "FROM unnest(%s::bigint[], %s::text[]) AS v(uid, flags) "
                "WHERE m.mailbox_id = %s AND m.uid = v.uid",
                (
                    [uid for uid, _ in limited],
                    [" ".join(sorted(kept)) for _, kept in limited],
                    target.id,
                ),
            )
    changes.append(Change(target.account_id, target.id, ChangeKind.EXISTS, modseq))
    if remove_source:
        # RFC 6851 §4.4: within one mailbox the copies' MODSEQ is the one the move raised it
        # to; the expunges take it too (a write takes one MODSEQ per mailbox, as REPLACE, RFC
        # 8508 §4.5), not a second.
        same = modseq if source.id == target.id else None
        removed_modseq = await _remove_messages(conn, source.id, uids, modseq=same)
        changes.append(Change(source.account_id, source.id, ChangeKind.EXPUNGE, removed_modseq))
    return Copied(pairs, after, total if after is not None else 0)


async def _records_between(
    conn: Conn, mailbox_id: int, uid_min: int, uid_max: int | None
) -> list[MessageRecord]:
    cur = await conn.execute(
        f"SELECT {_RECORD_COLUMNS} WHERE m.mailbox_id = %s AND m.uid BETWEEN %s AND %s "
        "ORDER BY m.uid",
        (mailbox_id, uid_min, uid_max if uid_max is not None else 2**63 - 1),
        binary=True,
    )
    return [_record(mailbox_id, row) for row in await cur.fetchall()]


async def _lock_queued(conn: Conn, message_id: int) -> None:
    if (
        await _one(conn, "SELECT 1 FROM queue_messages WHERE id = %s FOR UPDATE", (message_id,))
        is None
    ):
        raise NotFound(f"no queued message {message_id}")


async def _queued(
    conn: Conn, message_ids: list[int], *, due_at: datetime | None
) -> list[QueuedMessage]:
    """Queue entries with their recipients (only those due at ``due_at`` when given), in the
    order of ``message_ids``; ids not found are left out."""
    if not message_ids:
        return []
    messages = await _all(
        conn,
        "SELECT q.id, q.sender, b.sha256, q.size, q.queued_at, q.ret, q.envid, q.requiretls "
        "FROM queue_messages q JOIN blobs b ON b.id = q.blob WHERE q.id = ANY(%s)",
        (message_ids,),
    )
    rows = await _all(
        conn,
        "SELECT id, message_id, address, state, attempts, next_attempt, last_reply, notify, "
        f"orcpt, delay_notified, {filingrows.COLUMNS} FROM queue_recipients "
        "WHERE message_id = ANY(%(ids)s) "
        "AND (%(due)s::timestamptz IS NULL OR state = ANY(%(open)s) AND next_attempt <= %(due)s) "
        "ORDER BY id",
        {"ids": message_ids, "due": due_at, "open": _OPEN_STATES},
    )
    recipients: dict[int, list[QueuedRecipient]] = {}
    for row in rows:
        recipients.setdefault(row[1], []).append(
            QueuedRecipient(
                row[0],
                row[1],
                row[2],
                RecipientState(row[3]),
                row[4],
                row[5],
                row[6],
                frozenset(row[7]),
                row[8],
                row[9],
                filingrows.filing_of(row[10], row[11], row[12]),
            )
        )
    found = {
        row[0]: QueuedMessage(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            tuple(recipients.get(row[0], ())),
            bool(row[7]),
        )
        for row in messages
    }
    return [found[message_id] for message_id in message_ids if message_id in found]
