"""The embedded store: one SQLite database in WAL mode, plus blobs (in it or beside it).

Implementation notes (the interface's invariants are in :mod:`pillarbox.store.interface`):

- **Threads.** Writes go to one :class:`~.writer.GroupCommitWriter` thread (group commit: one
  transaction and one fsync per batch of concurrent writes). Reads run on a small pool of
  reader threads, each with its own connection; WAL lets them read the last committed state
  while the writer writes. A :class:`~.writer.Checkpointer` thread copies the WAL back into
  the database beside them. The event loop only queues work and awaits futures.
- **Durability.** ``synchronous=FULL`` (see :func:`_configure_writer`); file blobs are fsync'd
  and their directory entries made durable before the row that names them commits.
- **Counters** (mailbox STATUS, account quota usage, blob reference counts) are maintained by
  triggers in the schema (:mod:`.migrations`), so no code path here can leave them stale.
- **MODSEQ.** Each write operation that changes a mailbox takes one new MODSEQ for it
  (``highestmodseq + 1``) and stamps every message it changes with it: one STORE or EXPUNGE
  command gets one value, as RFC 7162 §3.1 allows, and consecutive commands get increasing ones.
- **Times** are stored as integer microseconds since the Unix epoch (UTC), so a ``datetime``
  round-trips exactly; a naive ``datetime`` is taken to be UTC.
- **Text search**: one FTS5 trigram entry per distinct blob (rowid = ``blobs.id``); a
  message's text is indexed once however many mailboxes hold it. Trigram indexing costs about
  2 ms of CPU per 4 KB of text on the development VM (deleting costs the same: FTS5 re-tokenises
  to remove), which would cap durable deliveries near 450/s if it ran inside the delivery
  transaction. So a delivery stores the text (``blob_text``, state 0) and the writer thread
  indexes it, and purges deleted blobs' entries, in short slices whenever no write is waiting.
  Search stays exact meanwhile: indexed messages are answered by the index, the few not yet
  indexed by a scan of their stored text (the same scan that answers terms shorter than a
  trigram).
- **SELECT** reads go through :class:`~.snapshots.SnapshotCache`, patched by MODSEQ.
- **Kept lookups.** Directory lookups (:mod:`pillarbox.store.directorycache`) and the spam
  filter's evidence (:mod:`pillarbox.store.evidencecache`) are answered from memory on the event
  loop while fresh: each read costs a hand-off to a reader thread (0.2–0.3 ms of GIL time per
  message for the evidence under load, several times its SQL). This store's own writes to those
  tables forget what they change once durable (or failed); another process's writes (the command
  line, ``pillarbox spam train``) are seen after ``directory_ttl_ms`` — for the classifier's
  models that was, before the evidence was kept, the very next message.
- **One server, no migration under it** (:mod:`.serverlock`): a serving store holds the data
  directory's and the database file's locks while open; any other store takes them only to
  migrate, so a newer admin command refuses to upgrade the schema under a running server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar, cast

from pillarbox.blocking import run_blocking
from pillarbox.config import SqliteSection
from pillarbox.errors import (
    AlreadyExists,
    InvalidName,
    NotFound,
    QuotaExceeded,
    SchemaTooNew,
    StorageError,
    StoreInUse,
    UserError,
)
from pillarbox.mail.model import MessageInfo
from pillarbox.observability.log import Log
from pillarbox.store import filingrows
from pillarbox.store.aclrows import (
    acl_entries,
    allowed_flags,
    changed_rights,
    changed_row,
    flags_after,
    merge_shared,
)
from pillarbox.store.blobs import BlobMode, FileBlobStore, StagedBlob, blob_id_of, is_blob_id
from pillarbox.store.directorycache import DirectoryCache
from pillarbox.store.evidencecache import SpamEvidenceCache
from pillarbox.store.feed import ChangeHub, FeedSubscription
from pillarbox.store.sharedreads import RecentClaim, SharedReads
from pillarbox.store.spamcache import SpamModelCache
from pillarbox.store.sqlite import (
    acmedata,
    calendardata,
    contactdata,
    dkimkeys,
    dmarcdata,
    dnssecdata,
    greylistdata,
    metadata,
    receiveddata,
    sendingdata,
    sievedata,
    spamdata,
    stsdata,
    tlsdata,
    webdata,
    zonedata,
)
from pillarbox.store.sqlite.migrations import LATEST_VERSION, migrate, schema_version
from pillarbox.store.sqlite.serverlock import ServerLock
from pillarbox.store.sqlite.snapshots import InfoCache, Row, SnapshotCache
from pillarbox.store.sqlite.writer import BatchHooks, Checkpointer, GroupCommitWriter, WriteEffects
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

_log = Log("store")

T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
#: Messages at least this big are hashed (and staged) on the bounded executor, not on the loop.
_HASH_OFF_LOOP = 64 * 1024
#: Page size of a new database. Measured: 8 KB pages fit a 4 KB message in one page but double
#: the WAL bytes of every random-position index update (the blobs' SHA-256 index), and
#: deliveries at 30k messages fell to a third of the 4 KB-page rate.
PAGE_SIZE = 4096
#: Messages indexed per transaction by :meth:`SqliteStore.catch_up_index`.
_INDEX_STEP = 128
#: RFC 9051 §9 atom-specials that may not appear in a keyword (besides SP and CTLs).
_FINAL_STATES = (RecipientState.DELIVERED.value, RecipientState.FAILED.value)
_MAILBOX_COLUMNS = "id, account_id, name, special_use, uidvalidity, uidnext, highestmodseq"
#: A delivery's mailbox by account and name with a UID and a MODSEQ taken for the message:
#: the row as it was before (its ``uidnext`` is the UID), then the account's quota usage.
_DELIVERY_MAILBOX = (
    "UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1 "
    "WHERE account_id = ? AND name = ? "
    "RETURNING id, account_id, name, special_use, uidvalidity, uidnext - 1, highestmodseq - 1, "
    + ", ".join(
        f"(SELECT a.{column} FROM accounts a WHERE a.id = mailboxes.account_id)"
        for column in (
            "used_bytes",
            "used_messages",
            "quota_bytes",
            "quota_messages",
            "quota_warned",
        )
    )
)
#: RFC 4314: a mailbox's entries, accounts by address (the special identifiers by name).
_ACL_ENTRIES = (
    "SELECT coalesce(a.address, e.special) AS identifier, e.rights, e.denied "
    "FROM mailbox_acl e "
    "LEFT JOIN accounts a ON a.id = e.grantee_id WHERE e.mailbox_id = ? "
    "ORDER BY identifier"
)
#: The other accounts' mailboxes the entries may open to an account, one row per stored row
#: (an identifier's positive and negative entries; ``aclrows.merge_shared`` makes the rights).
_SHARED_WITH = (
    f"SELECT {', '.join('m.' + c for c in _MAILBOX_COLUMNS.split(', '))}, "
    "o.address, e.rights, e.denied "
    "FROM mailbox_acl e JOIN mailboxes m ON m.id = e.mailbox_id "
    "JOIN accounts o ON o.id = m.account_id "
    "WHERE (e.grantee_id = ? OR e.special IS NOT NULL) AND m.account_id <> ?"
)
_RECORD_FIELDS = "m.uid, m.modseq, m.flags, m.internal_date, m.saved_date, m.size, m.digest"
_RECORD_COLUMNS = f"{_RECORD_FIELDS} FROM messages m"
#: SELECT's read (a cold one walks the whole mailbox): the covering index only.
ROWS_BY_UID = (
    f"SELECT {_RECORD_FIELDS} FROM messages m INDEXED BY messages_records "
    "WHERE m.mailbox_id = ? AND m.uid BETWEEN ? AND ? ORDER BY m.uid"
)
_ACCOUNT_COLUMNS = (
    "id, address, display_name, password_hash, scram_sha256, is_admin, quota_bytes, "
    "quota_messages, created"
)


#: Resource knobs of this backend: the ``[store.sqlite]`` section of the config, where each is
#: documented (docs/config.md).
SqliteLimits = SqliteSection
_DEFAULT_LIMITS = SqliteLimits()


@dataclasses.dataclass(frozen=True, slots=True)
class _Blob:
    """A message's bytes and metadata, prepared off the writer thread."""

    blob_id: str
    raw: bytes
    size: int
    #: MessageInfo JSON without the text fields (those go to the full-text index).
    info_json: bytes | None
    header_text: str
    body_text: str
    staged: StagedBlob | None


@dataclasses.dataclass(frozen=True, slots=True)
class _SortKeys:
    sent_date: int | None
    subject: str
    from_addr: str
    to_addr: str
    cc_addr: str
    message_id: str
    in_reply_to: str
    #: References as a JSON array (threading reads them for a whole mailbox).
    references: str
    #: References as they are (the thread keys, .threadrows).
    reference_ids: tuple[str, ...]

    @classmethod
    def of(cls, info: MessageInfo | None) -> _SortKeys:
        if info is None:
            return cls(None, "", "", "", "", "", "", "[]", ())
        return cls(
            _to_us(info.sent_date) if info.sent_date is not None else None,
            info.subject,
            info.from_addr,
            info.to_addr,
            info.cc_addr,
            info.message_id,
            info.in_reply_to,
            json.dumps(info.references) if info.references else "[]",
            info.references,
        )


class SqliteStore:
    """The :class:`~pillarbox.store.interface.Store` on SQLite; see the module notes.

    ``server_lock`` is the data directory's and database's (:mod:`.serverlock`); ``serving``
    holds it while open (``pillarbox serve``, which may have taken it already). Without one (a
    store opened by a test or a tool on a bare database) nothing is locked."""

    def __init__(
        self,
        path: Path,
        *,
        blob_mode: BlobMode = BlobMode.DATABASE,
        blob_dir: Path | None = None,
        limits: SqliteLimits = _DEFAULT_LIMITS,
        clock: Callable[[], float] = time.time,
        server_lock: ServerLock | None = None,
        serving: bool = False,
    ) -> None:
        self.path = path
        self._lock = server_lock
        self._serving = serving
        self.blob_mode = blob_mode
        self._limits = limits
        self._clock = clock
        self._files: FileBlobStore | None = None
        if blob_mode is BlobMode.FILES:
            self._files = FileBlobStore(blob_dir or path.with_name(path.name + ".blobs"))
        self._hub = ChangeHub()
        self._writer: GroupCommitWriter | None = None
        self._orphan_sweep: asyncio.Task[None] | None = None
        self._checkpointer: Checkpointer | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._reader_local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._snapshots = SnapshotCache(limits.snapshot_records, record=_record, flags=_flag_set)
        self._infos = InfoCache(limits.info_cache_entries)
        self._spam_cache = SpamModelCache(limits.spam_cache_tokens)
        self._directory = DirectoryCache(limits.directory_ttl_ms / 1000, limits.directory_entries)
        self._evidence = SpamEvidenceCache(limits.directory_ttl_ms / 1000, limits.directory_entries)
        self._deltas = SharedReads(self._read_delta)
        self._claims = SharedReads(self._claim_write)
        self._queue_wakes: list[Callable[[], None]] = []
        #: POP3 maildrops in use: one process serves a SQLite store, so a set is the lock.
        self._maildrops: set[int] = set()

    # -- lifecycle -------------------------------------------------------------------------------
    async def open(self) -> None:
        if self._writer is not None:
            raise StorageError("the store is open already")
        await run_blocking(self._prepare_files)
        if self._serving and self._lock is not None:
            await run_blocking(self._hold_for_serving)
        try:
            await self._start_threads()
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise

    async def _start_threads(self) -> None:
        limits = self._limits
        wal_restart = threading.Event()
        checkpointer = Checkpointer(
            self._connect_checkpointer,
            interval=limits.checkpoint_interval_ms / 1000,
            wal_limit_pages=limits.wal_limit_mib * 1024 * 1024 // PAGE_SIZE,
            over_limit=wal_restart.set,
        )
        writer = GroupCommitWriter(
            self._connect_writer,
            BatchHooks(
                before_commit=self._sweep_blobs,
                publish=self._hub.publish,
                sync_dirs=FileBlobStore.sync_dirs,
                idle=self._index_slice,
                committed=checkpointer.poke,
            ),
            max_batch=limits.max_batch,
            idle_after=limits.index_idle_ms / 1000,
            restart_wanted=wal_restart,
            restart_wait=limits.wal_restart_wait_ms / 1000,
        )
        await run_blocking(writer.start)  # migrates: the checkpointer starts on a ready schema
        checkpointer.start()
        self._writer = writer
        self._checkpointer = checkpointer
        self._readers = ThreadPoolExecutor(
            max_workers=self._limits.readers, thread_name_prefix="pillarbox-sqlite-read"
        )
        if self._files is not None:
            self._orphan_sweep = asyncio.create_task(self._remove_orphan_files(self._files))

    async def _remove_orphan_files(self, files: FileBlobStore) -> None:
        """Remove the blob files a crash left without a row (see
        :meth:`FileBlobStore.remove_unknown`), one shard per write so that deliveries go on
        meanwhile; in the background, and cut short by :meth:`close` (a command's short life
        leaves the rest to the server's next start)."""

        def shard_sweep(shard: str) -> Callable[[sqlite3.Connection, WriteEffects], int]:
            def op(conn: sqlite3.Connection, fx: WriteEffects) -> int:
                def known(low: str, high: str) -> set[str]:
                    rows = conn.execute(
                        "SELECT sha256 FROM blobs WHERE sha256 >= ? AND sha256 < ?", (low, high)
                    )
                    return {sha for (sha,) in rows}

                return files.remove_unknown(shard, known)

            return op

        removed = 0
        try:
            for shard in await run_blocking(files.shards):
                removed += await self._write(shard_sweep(shard))
        except (StorageError, OSError) as exc:
            _log.warning("orphan blob files not swept", error=str(exc))
        if removed:
            _log.info("orphan blob files removed", count=removed)

    async def close(self) -> None:
        sweep, self._orphan_sweep = self._orphan_sweep, None
        if sweep is not None:
            sweep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweep
        writer, self._writer = self._writer, None
        readers, self._readers = self._readers, None
        if writer is None or readers is None:
            return
        self._hub.close()
        await run_blocking(writer.stop)
        if self._checkpointer is not None:
            await run_blocking(self._checkpointer.stop)
            self._checkpointer = None
        await run_blocking(readers.shutdown, wait=True)
        with self._reader_lock:
            conns, self._reader_conns = self._reader_conns, []
        for conn in conns:
            conn.close()
        self._reader_local = threading.local()
        self._snapshots.clear()
        self._infos.clear()
        self._spam_cache.clear()
        self._evidence.invalidate()
        if self._lock is not None:
            self._lock.release()  # last: the writer no longer writes

    @property
    def cross_process_delay(self) -> float:
        """Longest time, in seconds, before what another process wrote is seen by the lookups
        this store keeps in memory (directory, spam evidence)."""
        return self._limits.directory_ttl_ms / 1000

    @property
    def batches_committed(self) -> tuple[int, int]:
        """(transactions committed, write operations in them): the group-commit ratio."""
        if self._writer is None:
            return (0, 0)
        return (self._writer.batches, self._writer.operations)

    @property
    def writer_seconds(self) -> tuple[float, float]:
        """(wall, CPU) seconds the writer thread has spent running write batches: the bench's
        view of how busy the one writer is, and of how much of that is waiting."""
        if self._writer is None:
            return (0.0, 0.0)
        return (self._writer.busy_seconds, self._writer.busy_cpu_seconds)

    def _hold_for_serving(self) -> None:
        if self._lock is not None and not self._lock.held:
            self._lock.hold_to_serve()

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Apply pending migrations; outside a serving store, only while no server runs."""
        lock = self._lock
        current = schema_version(conn)
        if lock is None or self._serving or current >= LATEST_VERSION:
            migrate(conn)  # a newer schema is refused there
            return
        if not lock.try_hold_to_migrate():
            held, _ = lock.refusal()
            raise StoreInUse(
                f"the store needs upgrading from schema {current} to {LATEST_VERSION}, but a "
                f"server {held}: stop the server first (docs/upgrading.md)"
            )
        try:
            migrate(conn)
        finally:
            lock.release()

    def _prepare_files(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._files is not None:
            self._files.prepare(time.time())  # file ages: the real clock, not a test's

    def _connect_writer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            _configure_writer(conn, self._limits)
            self._migrate(conn)
            _thread_unthreaded(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_checkpointer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self._limits.busy_timeout_ms)}")
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._reader_local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            _configure_reader(conn, self._limits)
            self._reader_local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._readers is None:
            raise StorageError("the store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, fn)

    def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._reader()
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            raise StorageError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    async def _write(self, fn: Callable[[sqlite3.Connection, WriteEffects], T]) -> T:
        if self._writer is None:
            raise StorageError("the store is not open")
        return await self._writer.submit(fn)

    async def _write_directory(self, fn: Callable[[sqlite3.Connection, WriteEffects], T]) -> T:
        """A write to domains, accounts, aliases or settings: the lookup cache is emptied once it is
        durable (or failed: cheaper than knowing whether it changed anything)."""
        return await self._write_then_forget(fn, self._directory.invalidate)

    async def _write_then_forget(
        self, fn: Callable[[sqlite3.Connection, WriteEffects], T], *forget: Callable[[], None]
    ) -> T:
        """A write after which what is kept in memory of the tables it changes is forgotten:
        ``forget`` run once it is durable, or failed (see
        :mod:`pillarbox.store.evidencecache` for the spam filter's)."""
        try:
            return await self._write(fn)
        finally:
            for done in forget:
                done()

    async def _read_directory(
        self, key: tuple[str, str], fn: Callable[[sqlite3.Connection], T]
    ) -> T:
        """A lookup of domains, accounts, aliases or settings through :class:`DirectoryCache`."""
        hit = self._directory.get(key)  # the usual case: no coroutine and closure to make
        if hit is not None:
            return cast(T, hit[0])
        return await self._directory.lookup(key, lambda: self._read(fn))

    def _now(self) -> int:
        return int(self._clock() * 1_000_000)

    def _sweep_blobs(self, conn: sqlite3.Connection) -> Callable[[], None]:
        """Delete blobs no message or queue entry refers to any more (runs before COMMIT); their
        files go after it (:func:`_remove_freed_files`)."""
        freed = [
            row[0] for row in conn.execute("DELETE FROM blobs WHERE refcount <= 0 RETURNING sha256")
        ]
        files = self._files
        if files is None or not freed:
            return _nothing
        return functools.partial(_remove_freed_files, conn, files, freed)

    def _index_slice(self, conn: sqlite3.Connection, write_waiting: Callable[[], bool]) -> bool:
        """Index (or purge) pending text, one message at a time, until a write is waiting or
        ``index_slice_ms`` passed; True if more remains."""
        deadline = time.monotonic() + self._limits.index_slice_ms / 1000
        while not write_waiting() and time.monotonic() < deadline:
            if not _index_pending(conn, limit=1):
                return False
        return True

    async def catch_up_index(self) -> None:
        """Bring the full-text index up to date now (tests, benchmarks, ``pillarbox`` admin).

        In steps of their own transactions: one transaction over a bulk load's backlog wrote
        the whole index (858 MB for 35,000 messages) into the WAL, which no checkpoint can
        copy before the commit."""

        def step(conn: sqlite3.Connection, fx: WriteEffects) -> bool:
            return _index_pending(conn, limit=_INDEX_STEP)

        while await self._write(step):
            pass

    # -- domains ---------------------------------------------------------------------------------
    async def add_domain(self, name: str) -> Domain:
        if not name or "@" in name or any(ch.isspace() for ch in name):
            raise InvalidName(f"invalid domain name {name!r}")

        def op(conn: sqlite3.Connection, fx: WriteEffects) -> Domain:
            now = self._now()
            try:
                conn.execute("INSERT INTO domains (name, created) VALUES (?, ?)", (name, now))
            except sqlite3.IntegrityError as exc:
                raise AlreadyExists(f"domain {name} exists") from exc
            return Domain(name, _from_us(now))

        return await self._write_directory(op)

    async def get_domain(self, name: str) -> Domain | None:
        def query(conn: sqlite3.Connection) -> Domain | None:
            row = conn.execute("SELECT name, created FROM domains WHERE name = ?", (name,))
            found = row.fetchone()
            return Domain(found[0], _from_us(found[1])) if found else None

        return await self._read_directory(("domain", name), query)

    async def check_schema(self) -> None:
        version = await self._read(schema_version)
        if version > LATEST_VERSION:
            raise SchemaTooNew(version, LATEST_VERSION)

    async def list_domains(self) -> list[Domain]:
        def query(conn: sqlite3.Connection) -> tuple[Domain, ...]:
            rows = conn.execute("SELECT name, created FROM domains ORDER BY name")
            return tuple(Domain(name, _from_us(created)) for name, created in rows)

        # Intake asks per message (hosted domains); the cached tuple is copied per caller.
        return list(await self._read_directory(("domains", ""), query))

    async def remove_domain(self, name: str) -> None:
        def op(conn: sqlite3.Connection, fx: WriteEffects) -> None:
            _require_domain(conn, name)
            in_use = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM accounts WHERE domain = ?) "
                "OR EXISTS (SELECT 1 FROM aliases WHERE domain = ?)",
                (name, name),
            ).fetchone()[0]
            if in_use:
                raise UserError(f"domain {name} still has accounts or aliases")
            conn.execute("DELETE FROM domains WHERE name = ?", (name,))
            receiveddata.delete_domain(conn, name)

        await self._write_directory(op)

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

        def op(conn: sqlite3.Connection, fx: WriteEffects) -> Account:
            _require_domain(conn, domain)
            _require_address_free(conn, address)
            now = self._now()
            (account_id,) = conn.execute(
                "INSERT INTO accounts (address, domain, display_name, password_hash, "
                "scram_sha256, is_admin, quota_bytes, quota_messages, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
            ).fetchone()
            for name, special_use in DEFAULT_MAILBOXES:
                _insert_mailbox(conn, account_id, name, special_use, now)
            return _account(
                (
                    account_id,
                    address,
                    display_name,
                    password_hash,
                    scram_sha256,
                    is_admin,
                    quota_bytes,
                    quota_messages,
                    now,
                )
            )

        return await self._write_directory(op)

    async def get_account(self, address: str) -> Account | None:
        def query(conn: sqlite3.Connection) -> Account | None:
            row = conn.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE address = ?", (address,)
            ).fetchone()
            return _account(row) if row else None

        return await self._read_directory(("account", address), query)

    async def get_account_by_id(self, account_id: int) -> Account | None:
        def query(conn: sqlite3.Connection) -> Account | None:
            row = conn.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (account_id,)
            ).fetchone()
            return _account(row) if row else None

        # Read by every web request of a session: kept like the directory.
        return await self._read_directory(("account-id", str(account_id)), query)

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        def query(conn: sqlite3.Connection) -> list[Account]:
            if domain is None:
                rows = conn.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts ORDER BY address")
            else:
                rows = conn.execute(
                    f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE domain = ? ORDER BY address",
                    (domain,),
                )
            return [_account(row) for row in rows]

        return await self._read(query)

    async def list_admins(self, domain: str) -> list[Account]:
        def query(conn: sqlite3.Connection) -> list[Account]:
            rows = conn.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE is_admin AND (domain = ?1 OR "
                "NOT EXISTS (SELECT 1 FROM accounts WHERE domain = ?1 AND is_admin)) "
                "ORDER BY address",
                (domain,),
            )
            return [_account(row) for row in rows]

        return await self._read(query)

    async def _update_account(
        self, account_id: int, assignments: str, values: tuple[object, ...]
    ) -> None:
        def op(conn: sqlite3.Connection, fx: WriteEffects) -> None:
            cursor = conn.execute(
                f"UPDATE accounts SET {assignments} WHERE id = ?", (*values, account_id)
            )
            if cursor.rowcount == 0:
                raise NotFound(f"no account {account_id}")

        await self._write_directory(op)

    async def set_password(
        self, account_id: int, password_hash: str, scram_sha256: str | None
    ) -> None:
        await self._update_account(
            account_id, "password_hash = ?, scram_sha256 = ?", (password_hash, scram_sha256)
        )

    async def set_quota(
        self, account_id: int, quota_bytes: int | None, quota_messages: int | None
    ) -> None:
        await self._update_account(
            account_id, "quota_bytes = ?, quota_messages = ?", (quota_bytes, quota_messages)
        )

    async def set_display_name(self, account_id: int, display_name: str) -> None:
        await self._update_account(account_id, "display_name = ?", (display_name,))

    async def remove_account(self, account_id: int) -> None:
        def op(conn: sqlite3.Connection, fx: WriteEffects) -> None:
            mailbox_ids = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM mailboxes WHERE account_id = ?", (account_id,)
                )
            ]
            if conn.execute("DELETE FROM accounts WHERE id = ?", (account_id,)).rowcount == 0:
                raise NotFound(f"no account {account_id}")
            fx.changes.extend(
                Change(account_id, mailbox_id, ChangeKind.MAILBOXES, 0)
                for mailbox_id in mailbox_ids
            )

        # Its models, reputation and lists go with it (foreign keys and a trigger).
        await self._write_then_forget(op, self._directory.invalidate, self._evidence.invalidate)

    async def quota_usage(self, account_id: int) -> QuotaUsage:
        return await self._read(lambda conn: _quota_usage(conn, account_id))

    async def set_quota_warned(self, account_id: int, expected: int, level: int) -> bool:
        def op(conn: sqlite3.Connection, fx: WriteEffects) -> bool:
            changed = conn.execute(
                "UPDATE accounts SET quota_warned = ? WHERE id = ? AND quota_warned = ?",
                (level, account_id, expected),
            ).rowcount
            if not changed:
                _require_account(conn, account_id)
            return bool(changed)

        return await self._write(op)

    # -- aliases ---------------------------------------------------------------------------------
    async def add_alias(self, address: str, targets: Sequence[str]) -> Alias:
        _, at, domain = address.rpartition("@")
        if not at or not domain or any(ch.isspace() for ch in address):
            raise InvalidName(f"invalid alias address {address!r}")
        if not targets or any("@" not in target for target in targets):
            raise InvalidName(f"alias {address} needs one or more target addresses")
        alias = Alias(address, tuple(targets))

        def op(conn: sqlite3.Connection, fx: WriteEffects) -> Alias:
            _require_domain(conn, domain)
            _require_address_free(conn, address)
            conn.execute(
                "INSERT INTO aliases (address, domain, targets) VALUES (?, ?, ?)",
                (address, domain, json.dumps(alias.targets)),
            )
            return alias

        return await self._write_directory(op)

    async def get_alias(self, address: str) -> Alias | None:
        def query(conn: sqlite3.Connection) -> Alias | None:
            row = conn.execute(
                "SELECT address, targets FROM aliases WHERE address = ?", (address,)
            ).fetchone()
            return Alias(row[0], tuple(json.loads(row[1]))) if row else None

        return await self._read_directory(("alias", address), query)

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        def query(conn: sqlite3.Connection) -> list[Alias]:
            if domain is None:
                rows = conn.execute("SELECT address, targets FROM aliases ORDER BY address")
            else:
                rows = conn.execute(
                    "SELECT address, targets FROM aliases WHERE domain = ? ORDER BY address",
                    (domain,),
                )
            return [Alias(address, tuple(json.loads(targets))) for address, targets in rows]

        return await self._read(query)

    async def remove_alias(self, address: str) -> None:
        def op(conn: sqlite3.Connection, fx: WriteEffects) -> None:
            if conn.execute("DELETE FROM aliases WHERE address = ?", (address,)).rowcount == 0:
                raise NotFound(f"no alias {address}")

        await self._write_directory(op)

    # -- mailboxes -------------------------------------------------------------------------------
    async def list_mailboxes(self, account_id: int) -> list[Mailbox]:
        def query(conn: sqlite3.Connection) -> list[Mailbox]:
            rows = conn.execute(
                f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = ? ORDER BY name",
                (account_id,),
            )
            return [_mailbox(row) for row in rows]

        return await self._read(query)

    async def get_mailbox(self, account_id: int, name: str) -> Mailbox:
        canonical = normalize_mailbox_name(name)

        def query(conn: sqlite3.Connection) -> Mailbox:
            found = _mailbox_by_name(conn, account_id, canonical)
            if found is None:
                raise NotFound(f"no mailbox {canonical}")
            return found

        return await self._read(query)

    async def create_mailbox(
        self, account_id: int, name: str, special_use: SpecialUse | None = None
    ) -> Mailbox:
        canonical = normalize_mailbox_name(name)

        def op(conn: sqlite3.Connection, fx: WriteEffects) -> Mailbox:
            _require_account(conn, account_id)
            if _mailbox_by_name(conn, account_id, canonical) is not None:
                raise AlreadyExists(f"mailbox {canonical} exists")
            now = self._now()
            created = _create_superiors(conn, account_id, canonical, now)
            mailbox = _insert_mailbox(conn, account_id, canonical, special_use, now)
            fx.changes.extend(
                Change(account_id, box.id, ChangeKind.MAILBOXES, 0) for box in (*created, mailbox)
            )
            return mailbox

        return await self._write(op)

    async def delete_mailbox(self, mailbox_id: int) -> None:
        def op(conn: sqlite3.Connection, fx: WriteEffects) -> None:
            mailbox = _require_mailbox(conn, mailbox_id)
            if mailbox.name == INBOX:
                raise InvalidName("INBOX cannot be deleted")  # RFC 9051 §6.3.5
            threads = conn.execute(
                "SELECT DISTINCT thread FROM messages WHERE mailbox_id = ?", (mailbox_id,)
            ).fetchall()
            conn.execute("DELETE FROM mailboxes WHERE id = ?", (mailbox_id,))
            _prune_thread_keys(conn, mailbox.account_id, [thread for (thread,) in threads])
            fx.changes.append(Change(mailbox.account_id, mailbox_id, ChangeKind.MAILBOXES, 0))

        await self._write(op)

    async def rename_mailbox(self, account_id: int, old: str, new: str) -> None:
        old_name = normalize_mailbox_name(old)
        new_name = normalize_mailbox_name(new)
        # A mailbox cannot become its own inferior; INBOX can, as its messages move out.
        if new_name == old_name or (
            old_name != INBOX and new_name.startswith(old_name + DELIMITER)
        ):
            raise InvalidName(f"cannot rename {old_name} to {new_name}")

        def op(conn: sqlite3.Connection, fx: WriteEffects) -> None:
            source = _mailbox_by_name(conn, account_id, old_name)
            if source is None:
                raise NotFound(f"no mailbox {old_name}")
            if _mailbox_by_name(conn, account_id, new_name) is not None:
                raise AlreadyExists(f"mailbox {new_name} exists")
            now = self._now()
            created = list(_create_superiors(conn, account_id, new_name, now))
            if old_name == INBOX:
                # RFC 9051 §6.3.6: INBOX's messages move to a new mailbox; INBOX stays, empty,
                # and its inferiors are not renamed.
                target = _insert_mailbox(conn, account_id, new_name, None, now)
                created.append(target)
                uids = [
                    row[0]
                    for row in conn.execute(
                        "SELECT uid FROM messages WHERE mailbox_id = ? ORDER BY uid", (source.id,)
                    )
                ]
                self._transfer(conn, fx, source, uids, target=target, now=now, remove_source=True)
                metadata.copy_entries(conn, source.id, target.id)  # RFC 5464 §4.1
            else:
                prefix = old_name + DELIMITER
                try:
                    conn.execute(
                        "UPDATE mailboxes SET name = ? || substr(name, ?) "
                        "WHERE account_id = ? AND (name = ? OR substr(name, 1, ?) = ?)",
                        (new_name, len(old_name) + 1, account_id, old_name, len(prefix), prefix),
                    )
                except sqlite3.IntegrityError as exc:
                    raise AlreadyExists(f"an inferior of {new_name} exists already") from exc
                fx.changes.append(Change(account_id, source.id, ChangeKind.MAILBOXES, 0))
            fx.changes.extend(
                Change(account_id, box.id, ChangeKind.MAILBOXES, 0) for box in created
            )

        await self._write(op)

    async def list_subscriptions(self, account_id: int) -> set[str]:
        def query(conn: sqlite3.Connection) -> set[str]:
            rows = conn.execute(
                "SELECT name FROM subscriptions WHERE account_id = ?", (account_id,)
            )
            return {row[0] for row in rows}

        return await self._read(query)

    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None:
        canonical = normalize_mailbox_name(name)

        def op(conn: sqlite3.Connection, fx: WriteEffects) -> None:
            _require_account(conn, account_id)
            if subscribed:
                conn.execute(
                    "INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)",
                    (account_id, canonical),
                )
            else:
                conn.execute(
                    "DELETE FROM subscriptions WHERE account_id = ? AND name = ?",
                    (account_id, canonical),
                )
            fx.changes.append(Change(account_id, 0, ChangeKind.SUBSCRIPTIONS, 0))

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
        def op(conn: sqlite3.Connection, fx: WriteEffects) -> None:
            metadata.set_entries(conn, account_id, mailbox_id, entries, limits)
            fx.changes.append(Change(account_id, mailbox_id or 0, ChangeKind.METADATA, 0))

        await self._write(op)

    async def list_metadata(self, account_id: int) -> dict[int, dict[str, bytes]]:
        return await self._read(lambda conn: metadata.list_entries(conn, account_id))

    # -- ACL (RFC 4314; tables in migration 23) ---------------------------------------------
    async def get_acl(self, mailbox_id: int) -> list[AclEntry]:
        def query(conn: sqlite3.Connection) -> list[AclEntry]:
            _require_mailbox(conn, mailbox_id)
            return acl_entries(conn.execute(_ACL_ENTRIES, (mailbox_id,)))

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

        def op(conn: sqlite3.Connection, fx: WriteEffects) -> None:
            mailbox = _require_mailbox(conn, mailbox_id)
            if account is not None:
                _require_account(conn, account)
                where = "mailbox_id = ? AND grantee_id = ?"
            else:
                where = "mailbox_id = ? AND special = ?"
            key = (mailbox_id, account if account is not None else special)
            row = conn.execute(
                f"SELECT rights, denied FROM mailbox_acl WHERE {where}", key
            ).fetchone()
            stored = changed_row(row, rights, mode, negative)
            conn.execute(f"DELETE FROM mailbox_acl WHERE {where}", key)
            if any(stored):
                conn.execute(
                    "INSERT INTO mailbox_acl (mailbox_id, grantee_id, special, rights, denied) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (mailbox_id, account, special, *stored),
                )
            fx.changes.append(Change(mailbox.account_id, mailbox_id, ChangeKind.MAILBOXES, 0))

        await self._write(op)

    async def shared_with(self, account_id: int) -> list[SharedMailbox]:
        def query(conn: sqlite3.Connection) -> list[SharedMailbox]:
            rows = conn.execute(_SHARED_WITH, (account_id, account_id)).fetchall()
            return merge_shared((_mailbox(row[:7]), row[7], row[8], row[9]) for row in rows)

        return await self._read(query)

    async def mailbox_status(self, mailbox_id: int) -> MailboxStatus:
        return await self._read(lambda conn: _status(conn, mailbox_id))

    async def claim_recent(self, mailbox_id: int) -> int:
        return (await self._claims.get(mailbox_id)).take()

    async def lock_maildrop(self, account_id: int) -> bool:
        if account_id in self._maildrops:
            return False
        self._maildrops.add(account_id)
        return True

    async def unlock_maildrop(self, account_id: int) -> None:
        self._maildrops.discard(account_id)

    async def _claim_write(self, mailbox_id: int) -> RecentClaim:
        def op(conn: sqlite3.Connection, fx: WriteEffects) -> RecentClaim:
            row = conn.execute(
                "SELECT recent_uid, uidnext FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            conn.execute("UPDATE mailboxes SET recent_uid = uidnext WHERE id = ?", (mailbox_id,))
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
        blob = await self._prepare_blob(raw, info)
        keys = _SortKeys.of(info)
        flag_sets = [canonical_flags(target.flags) for target in targets]

        def op(conn: sqlite3.Connection, fx: WriteEffects) -> list[DeliveryResult]:
            now = self._now()
            arrived = _to_us(internal_date) if internal_date is not None else now
            blob_row = self._put_blob(conn, fx, blob)
            results: list[DeliveryResult] = []
            for target, flags in zip(targets, flag_sets, strict=True):
                try:
                    name = normalize_mailbox_name(target.mailbox)
                except InvalidName:
                    results.append(DeliveryResult(target, DeliveryStatus.NO_MAILBOX))
                    continue
                found = _delivery_mailbox(conn, target.account_id, name)
                if found is None:
                    results.append(DeliveryResult(target, DeliveryStatus.NO_MAILBOX))
                    continue
                mailbox, usage = found
                if not (target.beyond_quota or usage.fits(blob.size)):
                    _return_uid(conn, mailbox)
                    results.append(DeliveryResult(target, DeliveryStatus.OVER_QUOTA))
                else:
                    record = _add_message(
                        conn,
                        fx,
                        mailbox,
                        allocated=(mailbox.uidnext, mailbox.highestmodseq + 1),
                        blob=blob,
                        blob_row=blob_row,
                        flags=flags,
                        internal_date=arrived,
                        now=now,
                        keys=keys,
                    )
                    # The triggers have counted it; the next target of the account reads that.
                    results.append(
                        DeliveryResult(
                            target, DeliveryStatus.STORED, record, usage.added(blob.size)
                        )
                    )
                    # A message holds the blob, and a delivery frees none: nothing to sweep.
                    fx.before_commit = False
            return results

        return await self._submit_with_blob(op, blob)

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
        blob = await self._prepare_blob(raw, info)
        keys = _SortKeys.of(info)

        def op(conn: sqlite3.Connection, fx: WriteEffects) -> Appended:
            mailbox = _require_mailbox(conn, mailbox_id)
            usage = _quota_usage(conn, mailbox.account_id)
            if not usage.fits(blob.size):
                raise QuotaExceeded(f"message of {blob.size} bytes exceeds the quota")
            now = self._now()
            arrived = _to_us(internal_date) if internal_date is not None else now
            blob_row = self._put_blob(conn, fx, blob)
            record = _add_message(
                conn,
                fx,
                mailbox,
                blob=blob,
                blob_row=blob_row,
                flags=canonical,
                internal_date=arrived,
                now=now,
                keys=keys,
            )
            # A message holds the blob, and an append frees none: nothing to sweep.
            fx.before_commit = False
            # The triggers have counted it; what the row read before plus this message.
            return Appended(record, usage.added(blob.size))

        return await self._submit_with_blob(op, blob)

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
        blob = await self._prepare_blob(raw, info)
        keys = _SortKeys.of(info)

        def op(conn: sqlite3.Connection, fx: WriteEffects) -> Replaced | None:
            source = _require_mailbox(conn, mailbox_id)
            target = source if target_id == mailbox_id else _require_mailbox(conn, target_id)
            old = conn.execute(
                "SELECT size FROM messages WHERE mailbox_id = ? AND uid = ?", (mailbox_id, uid)
            ).fetchone()
            if old is None:
                return None
            size, count = replacement_change(source, target, blob.size, old[0])
            usage = _quota_usage(conn, target.account_id)
            if not usage.fits(size, count):
                raise QuotaExceeded(f"message of {blob.size} bytes exceeds the quota")
            now = self._now()
            arrived = _to_us(internal_date) if internal_date is not None else now
            record = _add_message(
                conn,
                fx,
                target,
                blob=blob,
                blob_row=self._put_blob(conn, fx, blob),
                flags=canonical,
                internal_date=arrived,
                now=now,
                keys=keys,
            )
            # After the arrival: a thread the old message leaves to the new one keeps its keys.
            same = record.modseq if source.id == target.id else None
            modseq = _remove_messages(conn, source.id, [uid], modseq=same)
            fx.changes.append(Change(source.account_id, source.id, ChangeKind.EXPUNGE, modseq))
            return Replaced(record, usage.added(size, count), size, count)

        replaced = await self._submit_with_blob(op, blob)
        if replaced is None:
            await self._discard_staged(blob)  # never published: nothing was stored
        return replaced

    async def _prepare_blob(self, raw: bytes, info: MessageInfo | None) -> _Blob:
        info_json = header_text = body_text = None
        if info is not None:
            # The text is stored once, in the full-text index; the JSON keeps the structure.
            info_json = info.to_json(text=False)
            header_text, body_text = info.header_text, info.body_text
        files = self._files
        if files is None:
            blob_id = (
                await run_blocking(blob_id_of, raw)
                if len(raw) >= _HASH_OFF_LOOP
                else blob_id_of(raw)
            )
            staged = None
        else:

            def stage() -> StagedBlob:
                return files.stage(blob_id_of(raw), raw)

            staged = await run_blocking(stage)
            blob_id = staged.blob_id
        return _Blob(blob_id, raw, len(raw), info_json, header_text or "", body_text or "", staged)

    async def _submit_with_blob(
        self, op: Callable[[sqlite3.Connection, WriteEffects], T], blob: _Blob
    ) -> T:
        try:
            return await self._write(op)
        except BaseException:
            await self._discard_staged(blob)
            raise

    async def _discard_staged(self, blob: _Blob) -> None:
        """Remove the file staged for ``blob``, which no write published."""
        staged, files = blob.staged, self._files
        if staged is not None and files is not None:
            await run_blocking(files.discard, staged)

    def _put_blob(self, conn: sqlite3.Connection, fx: WriteEffects, blob: _Blob) -> int:
        """The row id of ``blob``, inserting it (and its bytes, and its text) if it is new."""
        # Not RETURNING: reading its row is a second step, and each step costs the writer a
        # hand-back of the GIL (see _delivery_mailbox). rowcount counts this statement's rows
        # only, and lastrowid is this insert's once the statement (and any trigger) is done.
        inserted = conn.execute(
            "INSERT INTO blobs (sha256, size, info) VALUES (?, ?, ?) "
            "ON CONFLICT (sha256) DO NOTHING",
            (blob.blob_id, blob.size, blob.info_json),
        )
        if inserted.rowcount != 1:
            blob_row, lacks_info = conn.execute(
                "SELECT id, info IS NULL FROM blobs WHERE sha256 = ?", (blob.blob_id,)
            ).fetchone()
            if blob.staged is not None and self._files is not None:
                self._files.discard(blob.staged)
            if lacks_info and blob.info_json is not None:
                # Content first seen by the queue, now delivered locally: keep its metadata.
                conn.execute("UPDATE blobs SET info = ? WHERE id = ?", (blob.info_json, blob_row))
                _store_text(conn, blob_row, blob)
            return int(blob_row)
        blob_row = inserted.lastrowid
        assert blob_row is not None
        if self._files is None:
            conn.execute("INSERT INTO blob_data (id, data) VALUES (?, ?)", (blob_row, blob.raw))
        else:
            assert blob.staged is not None
            fx.dirs_to_sync.update(self._files.publish(blob.staged))
        if blob.info_json is not None:
            _store_text(conn, blob_row, blob)
        return int(blob_row)

    async def list_messages(
        self, mailbox_id: int, *, uid_min: int = 1, uid_max: int | None = None
    ) -> list[MessageRecord]:
        def query(conn: sqlite3.Connection) -> list[MessageRecord]:
            if uid_min <= 1 and uid_max is None:
                conn.execute("BEGIN")
                return list(self._table(conn, _status(conn, mailbox_id)))
            _require_mailbox(conn, mailbox_id)
            return [
                _record(mailbox_id, row)
                for row in _rows_between(conn, mailbox_id, uid_min, uid_max)
            ]

        return await self._read(query)

    async def open_mailbox(self, account_id: int, name: str) -> MailboxSnapshot:
        canonical = normalize_mailbox_name(name)

        def query(conn: sqlite3.Connection) -> MailboxSnapshot:
            conn.execute("BEGIN")
            found = _mailbox_by_name(conn, account_id, canonical)
            if found is None:
                raise NotFound(f"no mailbox {canonical}")
            status = _status(conn, found.id)
            return MailboxSnapshot(status, self._table(conn, status))

        return await self._read(query)

    def _table(self, conn: sqlite3.Connection, status: MailboxStatus) -> RecordTable:
        """Every record of the mailbox, through the snapshot cache (inside a transaction)."""
        mailbox_id = status.mailbox.id
        return self._snapshots.read(
            mailbox_id,
            modseq=status.mailbox.highestmodseq,
            messages=status.messages,
            load_all=lambda: _rows_between(conn, mailbox_id, 1, None),
            load_changes=lambda since: (
                _rows_changed(conn, mailbox_id, since),
                _uids_expunged(conn, mailbox_id, since),
            ),
        )

    async def get_message(self, mailbox_id: int, uid: int) -> MessageRecord | None:
        def query(conn: sqlite3.Connection) -> MessageRecord | None:
            row = conn.execute(
                f"SELECT {_RECORD_COLUMNS} WHERE m.mailbox_id = ? AND m.uid = ?",
                (mailbox_id, uid),
            ).fetchone()
            return _record(mailbox_id, row) if row else None

        return await self._read(query)

    async def message_infos(
        self, mailbox_id: int, uids: Sequence[int], *, with_text: bool = True
    ) -> dict[int, MessageInfo]:
        def query(conn: sqlite3.Connection) -> dict[int, MessageInfo]:
            conn.execute("BEGIN")  # the messages, their structure and text from one snapshot
            blob_of = dict(
                conn.execute(
                    "SELECT uid, blob FROM messages "
                    "WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?))",
                    (mailbox_id, json.dumps(list(uids))),
                ).fetchall()
            )
            structures = self._infos.get_many(blob_of.values())
            missing = [blob_row for blob_row in set(blob_of.values()) if blob_row not in structures]
            if missing:
                # ``blobs.info`` is stored without the text fields (see ``_prepare_blob``).
                rows = conn.execute(
                    "SELECT id, info FROM blobs "
                    "WHERE id IN (SELECT value FROM json_each(?)) AND info IS NOT NULL",
                    (json.dumps(missing),),
                )
                loaded = {blob_row: MessageInfo.from_json(info) for blob_row, info in rows}
                self._infos.put_many(loaded)
                structures.update(loaded)
            texts: dict[int, tuple[str, str]] = {}
            if with_text:
                rows = conn.execute(
                    "SELECT id, header_text, body_text FROM blob_text "
                    "WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps(list(structures)),),
                )
                texts = {blob_row: (header, body) for blob_row, header, body in rows}
            infos: dict[int, MessageInfo] = {}
            for uid, blob_row in blob_of.items():
                info = structures.get(blob_row)
                if info is None:
                    continue
                if with_text:
                    header_text, body_text = texts.get(blob_row, ("", ""))
                    info = dataclasses.replace(info, header_text=header_text, body_text=body_text)
                infos[uid] = info
            return infos

        return await self._read(query)

    async def read_blob(self, blob_id: str) -> bytes:
        if not is_blob_id(blob_id):
            raise NotFound(f"no blob {blob_id!r}")
        files = self._files
        if files is not None:
            return await self._read(lambda _conn: files.read(blob_id))

        def query(conn: sqlite3.Connection) -> bytes:
            row = conn.execute(
                "SELECT d.data FROM blobs b JOIN blob_data d ON d.id = b.id WHERE b.sha256 = ?",
                (blob_id,),
            ).fetchone()
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

        def write(conn: sqlite3.Connection, fx: WriteEffects) -> FlagUpdate:
            mailbox = _require_mailbox(conn, mailbox_id)
            rows = conn.execute(
                f"SELECT {_RECORD_COLUMNS} WHERE m.mailbox_id = ? "
                "AND m.uid IN (SELECT value FROM json_each(?)) ORDER BY m.uid",
                (mailbox_id, json.dumps(sorted(set(uids)))),
            ).fetchall()
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
                modseq = _next_modseq(conn, mailbox_id)
                for record, new_flags in to_change:
                    conn.execute(
                        "UPDATE messages SET flags = ?, modseq = ? "
                        "WHERE mailbox_id = ? AND uid = ?",
                        (" ".join(sorted(new_flags)), modseq, mailbox_id, record.uid),
                    )
                    changed.append(dataclasses.replace(record, flags=new_flags, modseq=modseq))
                fx.changes.append(Change(mailbox.account_id, mailbox_id, ChangeKind.FLAGS, modseq))
            return FlagUpdate(tuple(changed), tuple(unchanged), tuple(modified))

        return await self._write(write)

    async def saved_before(self, mailbox_id: int, before: datetime, limit: int) -> list[int]:
        def query(conn: sqlite3.Connection) -> list[int]:
            _require_mailbox(conn, mailbox_id)
            rows = conn.execute(
                "SELECT uid FROM messages INDEXED BY messages_records "
                "WHERE mailbox_id = ? AND saved_date < ? ORDER BY uid LIMIT ?",
                (mailbox_id, _to_us(before), max(0, limit)),
            )
            return [int(row[0]) for row in rows]

        return await self._read(query)

    async def expunge(self, mailbox_id: int, uids: Sequence[int] | None = None) -> list[int]:
        def op(conn: sqlite3.Connection, fx: WriteEffects) -> list[int]:
            mailbox = _require_mailbox(conn, mailbox_id)
            if uids is None:
                rows = conn.execute(
                    "SELECT uid FROM messages WHERE mailbox_id = ? AND deleted ORDER BY uid",
                    (mailbox_id,),
                )
            else:
                rows = conn.execute(
                    "SELECT uid FROM messages WHERE mailbox_id = ? AND deleted "
                    "AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid",
                    (mailbox_id, json.dumps(list(uids))),
                )
            removed = [row[0] for row in rows]
            if removed:
                modseq = _remove_messages(conn, mailbox_id, removed)
                fx.changes.append(
                    Change(mailbox.account_id, mailbox_id, ChangeKind.EXPUNGE, modseq)
                )
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
        def op(conn: sqlite3.Connection, fx: WriteEffects) -> Copied:
            source = _require_mailbox(conn, src_mailbox_id)
            target = _require_mailbox(conn, dest_mailbox_id)
            present = [
                row[0]
                for row in conn.execute(
                    "SELECT uid FROM messages WHERE mailbox_id = ? "
                    "AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid",
                    (src_mailbox_id, json.dumps(list(uids))),
                )
            ]
            return self._transfer(
                conn,
                fx,
                source,
                present,
                target=target,
                now=self._now(),
                remove_source=move,
                rights=rights,
            )

        return await self._write(op)

    def _transfer(
        self,
        conn: sqlite3.Connection,
        fx: WriteEffects,
        source: Mailbox,
        uids: list[int],
        *,
        target: Mailbox,
        now: int,
        remove_source: bool,
        rights: str | None = None,
    ) -> Copied:
        """Copy ``uids`` (ascending, present) into ``target``, flags and dates kept (only those
        ``rights`` let the user set, when given: :meth:`copy_messages`); with
        ``remove_source`` also expunge them from ``source`` (RFC 6851 MOVE)."""
        if not uids:
            return Copied([])
        (total,) = conn.execute(
            "SELECT coalesce(sum(size), 0) FROM messages WHERE mailbox_id = ? "
            "AND uid IN (SELECT value FROM json_each(?))",
            (source.id, json.dumps(uids)),
        ).fetchone()
        after: QuotaUsage | None = None
        # A move within one account leaves its usage unchanged; anything else must fit.
        if not (remove_source and source.account_id == target.account_id):
            usage = _quota_usage(conn, target.account_id)
            if not usage.fits(total, len(uids)):
                raise QuotaExceeded(f"{len(uids)} messages of {total} bytes exceed the quota")
            after = usage.added(total, len(uids))
        uid_first, modseq = _allocate_uids(conn, target.id, len(uids))
        pairs = [(uid, uid_first + index) for index, uid in enumerate(uids)]
        # RFC 8474 §5.2: a copy keeps its thread within the account; a thread belongs to its
        # account, so a copy into another account's mailbox is threaded anew there.
        threads: dict[int, int | None] = dict.fromkeys(uids)
        if target.account_id != source.account_id:
            for uid, message_id, in_reply_to, refs, digest in conn.execute(
                "SELECT uid, message_id, in_reply_to, refs, digest FROM messages "
                "WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid",
                (source.id, json.dumps(uids)),
            ).fetchall():
                keys = thread_keys(message_id, in_reply_to, json.loads(refs), digest)
                threads[uid] = _thread_of(conn, target.account_id, keys)
        conn.executemany(
            "INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, saved_date, "
            "size, blob, digest, sent_date, subject, from_addr, to_addr, cc_addr, message_id, "
            "in_reply_to, refs, thread) "
            "SELECT ?, ?, ?, flags, internal_date, ?, size, blob, digest, sent_date, subject, "
            "from_addr, to_addr, cc_addr, message_id, in_reply_to, refs, coalesce(?, thread) "
            "FROM messages WHERE mailbox_id = ? AND uid = ?",
            [(target.id, new, modseq, now, threads[old], source.id, old) for old, new in pairs],
        )
        if rights is not None:
            # RFC 4314 §4: in this write, at the copies' MODSEQ.
            rows = conn.execute(
                "SELECT uid, flags FROM messages WHERE mailbox_id = ? "
                "AND uid IN (SELECT value FROM json_each(?))",
                (target.id, json.dumps([new for _, new in pairs])),
            ).fetchall()
            conn.executemany(
                "UPDATE messages SET flags = ? WHERE mailbox_id = ? AND uid = ?",
                [
                    (" ".join(sorted(kept)), target.id, uid)
                    for uid, flags in rows
                    if (kept := allowed_flags(frozenset(flags.split()), rights))
                    != frozenset(flags.split())
                ],
            )
        fx.changes.append(Change(target.account_id, target.id, ChangeKind.EXISTS, modseq))
        if remove_source:
            # RFC 6851 §4.4: within one mailbox the copies' MODSEQ is the one the move raised
            # it to; the expunges take it too (a write takes one MODSEQ per mailbox, as
            # REPLACE, RFC 8508 §4.5), not a second.
            same = modseq if source.id == target.id else None
            removed_modseq = _remove_messages(conn, source.id, uids, modseq=same)
            fx.changes.append(
                Change(source.account_id, source.id, ChangeKind.EXPUNGE, removed_modseq)
            )
        return Copied(pairs, after, total if after is not None else 0)

    async def search_text(
        self, mailbox_id: int, terms: Sequence[str], *, body_only: bool = False
    ) -> set[int]:
        wanted = [term for term in terms if term]
        indexed = [term for term in wanted if len(term) >= 3]
        short = [term for term in wanted if len(term) < 3]

        def contains(term: str, text: str) -> tuple[str, list[object]]:
            if body_only:
                return f"pb_icontains({text}.body_text, ?)", [term]
            return (
                f"(pb_icontains({text}.header_text, ?) OR pb_icontains({text}.body_text, ?))",
                [term, term],
            )

        def query(conn: sqlite3.Connection) -> set[int]:
            _require_mailbox(conn, mailbox_id)
            params: list[object] = [mailbox_id]
            if indexed and not short:
                sql = "SELECT m.uid FROM messages m WHERE m.mailbox_id = ?"
            else:
                sql = "SELECT m.uid FROM messages m JOIN blob_text t ON t.id = m.blob "
                sql += "WHERE m.mailbox_id = ?"
            if indexed:
                # Indexed text is answered by the trigram index, the backlog not indexed yet
                # by a scan of that backlog only (the partial index ``blob_text_pending``).
                # Both give sets of blob ids, so the mailbox's compact message rows are walked
                # once with a probe each: joining ``blob_text`` (rows of whole texts, a leaf
                # page each) cost a page read per message, 35,000 at 35,000 messages.
                scans = [contains(term, "p") for term in indexed]
                sql += (
                    " AND (m.blob IN (SELECT rowid FROM message_text WHERE message_text MATCH ?)"
                    " OR m.blob IN (SELECT p.id FROM blob_text p WHERE p.state != 1 AND "
                    + " AND ".join(clause for clause, _ in scans)
                    + "))"
                )
                params.append(_fts_query(indexed, body_only=body_only))
                params.extend(value for _, values in scans for value in values)
            for term in short:
                # Trigrams cannot answer 1–2 character terms: scan this mailbox's text.
                clause, values = contains(term, "t")
                sql += " AND " + clause
                params.extend(values)
            return {row[0] for row in conn.execute(sql, params)}

        return await self._read(query)

    async def query_messages(
        self, mailbox_id: int, query: MessageQuery, *, offset: int, limit: int
    ) -> MessagePage:
        def read(conn: sqlite3.Connection) -> MessagePage:
            conn.execute("BEGIN")  # the count and the page from one snapshot
            total, uids = webdata.page_uids(conn, mailbox_id, query, offset, limit)
            rows = conn.execute(
                f"SELECT {_RECORD_COLUMNS} WHERE m.mailbox_id = ? "
                "AND m.uid IN (SELECT value FROM json_each(?))",
                (mailbox_id, json.dumps(uids)),
            )
            by_uid = {row[0]: _record(mailbox_id, row) for row in rows}
            return MessagePage(total, tuple(by_uid[uid] for uid in uids if uid in by_uid))

        return await self._read(read)

    async def thread_ids(self, mailbox_id: int, uids: Sequence[int]) -> dict[int, int]:
        def query(conn: sqlite3.Connection) -> dict[int, int]:
            return dict(
                conn.execute(
                    "SELECT uid, thread FROM messages "
                    "WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?))",
                    (mailbox_id, json.dumps(list(uids))),
                ).fetchall()
            )

        return await self._read(query)

    async def thread_uids(self, mailbox_id: int, thread: int) -> list[int]:
        def query(conn: sqlite3.Connection) -> list[int]:
            rows = conn.execute(
                "SELECT uid FROM messages WHERE mailbox_id = ? AND thread = ? ORDER BY uid",
                (mailbox_id, thread),
            )
            return [uid for (uid,) in rows]

        return await self._read(query)

    async def thread_sizes(self, mailbox_id: int) -> list[tuple[int, int]]:
        return await self._read(lambda conn: webdata.thread_sizes(conn, mailbox_id))

    async def thread_fields(self, mailbox_id: int, threads: Sequence[int]) -> list[ThreadFields]:
        return await self._read(lambda conn: webdata.thread_fields(conn, mailbox_id, threads))

    async def activity(
        self, since: datetime, step: timedelta, buckets: int
    ) -> list[ActivityCounts]:
        start, width = _to_us(since), step // timedelta(microseconds=1)
        end = start + width * buckets

        def query(conn: sqlite3.Connection) -> list[ActivityCounts]:
            conn.execute("BEGIN")
            stored = conn.execute(
                "SELECT (m.internal_date - ?) / ?, mb.special_use, count(*) "
                "FROM messages m JOIN mailboxes mb ON mb.id = m.mailbox_id "
                "WHERE m.internal_date >= ? AND m.internal_date < ? GROUP BY 1, 2",
                (start, width, start, end),
            ).fetchall()
            queued = conn.execute(
                "SELECT (queued_at - ?) / ?, count(*) FROM queue_messages "
                "WHERE queued_at >= ? AND queued_at < ? GROUP BY 1",
                (start, width, start, end),
            ).fetchall()
            return activity_series(since, step, buckets, stored, queued)

        return await self._read(query)

    async def changes_since(self, mailbox_id: int, modseq: int) -> list[MessageRecord]:
        def query(conn: sqlite3.Connection) -> list[MessageRecord]:
            _require_mailbox(conn, mailbox_id)
            return _records_changed(conn, mailbox_id, modseq)

        return await self._read(query)

    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]:
        def query(conn: sqlite3.Connection) -> list[int]:
            _require_mailbox(conn, mailbox_id)
            return _uids_expunged(conn, mailbox_id, modseq)

        return await self._read(query)

    async def mailbox_delta(self, mailbox_id: int, since: int) -> MailboxDelta:
        return await self._deltas.get((mailbox_id, since))

    async def _read_delta(self, key: tuple[int, int]) -> MailboxDelta:
        mailbox_id, since = key

        def query(conn: sqlite3.Connection) -> MailboxDelta:
            conn.execute("BEGIN")  # one snapshot for the three
            status = _status(conn, mailbox_id)
            if status.mailbox.highestmodseq <= since:
                return MailboxDelta(status, (), ())
            changed = tuple(_records_changed(conn, mailbox_id, since))
            return MailboxDelta(status, changed, tuple(_uids_expunged(conn, mailbox_id, since)))

        return await self._read(query)

    # -- account settings and tokens (see .webdata) ---------------------------------------------
    async def get_settings(self, account_id: int) -> AccountSettings:
        # Read for each local recipient of every arriving message: cached like the directory.
        return await self._read_directory(
            ("settings", str(account_id)), lambda conn: webdata.get_settings(conn, account_id)
        )

    async def set_settings(self, account_id: int, settings: AccountSettings) -> None:
        await self._write_directory(
            lambda conn, fx: webdata.set_settings(conn, account_id, settings)
        )

    async def list_identities(self, account_id: int) -> list[Identity]:
        return await self._read(lambda conn: webdata.list_identities(conn, account_id))

    async def save_identity(self, account_id: int, identity: Identity, *, limit: int) -> Identity:
        return await self._write(
            lambda conn, fx: webdata.save_identity(conn, account_id, identity, limit)
        )

    async def delete_identity(self, account_id: int, identity_id: int) -> None:
        await self._write(lambda conn, fx: webdata.delete_identity(conn, account_id, identity_id))

    async def correspondents(self, account_id: int, prefix: str, limit: int) -> list[str]:
        return await self._read(
            lambda conn: webdata.correspondents(conn, account_id, prefix, limit)
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
            lambda conn, fx: contactdata.save_contacts(conn, account_id, contacts, now, limit)
        )

    async def delete_contact(self, account_id: int, contact_id: int, *, now: datetime) -> None:
        await self._write(
            lambda conn, fx: contactdata.delete_contact(conn, account_id, contact_id, now)
        )

    async def contact_members(self, account_id: int) -> list[Member]:
        return await self._read(lambda conn: contactdata.contact_members(conn, account_id))

    async def contacts_sync_token(self, account_id: int) -> int:
        return await self._read(lambda conn: contactdata.sync_state(conn, account_id)[0])

    async def contact_changes(self, account_id: int, since: int) -> SyncChanges[Contact]:
        return await self._read(lambda conn: contactdata.contact_changes(conn, account_id, since))

    # -- calendars (see .calendardata) -------------------------------------------------------
    async def list_calendars(self, account_id: int) -> list[Calendar]:
        return await self._read(lambda conn: calendardata.list_calendars(conn, account_id))

    async def create_calendar(
        self, account_id: int, calendar: Calendar, *, now: datetime, limit: int
    ) -> Calendar:
        return await self._write(
            lambda conn, fx: calendardata.create_calendar(conn, account_id, calendar, now, limit)
        )

    async def update_calendar(self, account_id: int, calendar: Calendar) -> Calendar:
        return await self._write(
            lambda conn, fx: calendardata.update_calendar(conn, account_id, calendar)
        )

    async def delete_calendar(self, account_id: int, name: str) -> None:
        await self._write(lambda conn, fx: calendardata.delete_calendar(conn, account_id, name))

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
            lambda conn, fx: calendardata.save_calendar_object(
                conn, account_id, calendar, obj, now, limit, if_match, if_none_match
            )
        )

    async def delete_calendar_object(
        self, account_id: int, calendar: str, name: str, *, now: datetime
    ) -> None:
        await self._write(
            lambda conn, fx: calendardata.delete_calendar_object(
                conn, account_id, calendar, name, now
            )
        )

    async def move_calendar_object(
        self, account_id: int, calendar: str, name: str, target: str, obj: CalendarObject,
        *, now: datetime, limit: int,
    ) -> CalendarObject:  # fmt: skip
        return await self._write(
            lambda conn, fx: calendardata.move_calendar_object(
                conn, account_id, calendar, name, target, obj, now, limit
            )
        )

    async def calendar_changes(
        self, account_id: int, calendar: str, since: int
    ) -> SyncChanges[CalendarObject]:
        return await self._read(
            lambda conn: calendardata.calendar_changes(conn, account_id, calendar, since)
        )

    async def prune_tombstones(
        self, *, calendars_before: datetime | None, contacts_before: datetime | None
    ) -> int:
        def prune(conn: sqlite3.Connection, fx: WriteEffects) -> int:
            removed = 0
            if calendars_before is not None:
                removed += calendardata.prune_tombstones(conn, calendars_before)
            if contacts_before is not None:
                removed += contactdata.prune_tombstones(conn, contacts_before)
            return removed

        return await self._write(prune)

    async def claim_vacation_reply(
        self, account_id: int, sender: str, now: datetime, interval: timedelta
    ) -> bool:
        return await self._write(
            lambda conn, fx: webdata.claim_vacation_reply(conn, account_id, sender, now, interval)
        )

    async def add_token(
        self, account_id: int, kind: TokenKind, label: str, digest: str
    ) -> AccountToken:
        return await self._write_directory(
            lambda conn, fx: webdata.add_token(conn, account_id, kind, label, digest, self._now())
        )

    async def list_tokens(
        self, account_id: int, kind: TokenKind | None = None
    ) -> list[AccountToken]:
        return await self._read(lambda conn: webdata.list_tokens(conn, account_id, kind))

    async def remove_token(self, account_id: int, token_id: int) -> None:
        await self._write_directory(
            lambda conn, fx: webdata.remove_token(conn, account_id, token_id)
        )

    async def find_token(self, kind: TokenKind, digest: str) -> AccountToken | None:
        def query(conn: sqlite3.Connection) -> AccountToken | None:
            return webdata.find_token(conn, kind, digest)

        if kind in KEPT_TOKEN_KINDS:
            return await self._read_directory((kind.value, digest), query)
        return await self._read(query)

    # -- second factor (see .webdata) --------------------------------------------------------------
    async def enable_totp(
        self, account_id: int, sealed_secret: str, recovery_digests: Sequence[str]
    ) -> None:
        await self._write(
            lambda conn, fx: webdata.enable_totp(
                conn, account_id, sealed_secret, recovery_digests, self._now()
            )
        )

    async def get_totp(self, account_id: int) -> TotpEnrolment | None:
        return await self._read(lambda conn: webdata.get_totp(conn, account_id))

    async def disable_totp(self, account_id: int) -> bool:
        return await self._write(lambda conn, fx: webdata.disable_totp(conn, account_id))

    async def claim_totp_step(self, account_id: int, step: int) -> bool:
        return await self._write(lambda conn, fx: webdata.claim_totp_step(conn, account_id, step))

    async def use_recovery_code(self, account_id: int, digest: str) -> bool:
        return await self._write(
            lambda conn, fx: webdata.use_recovery_code(conn, account_id, digest)
        )

    async def replace_recovery_codes(self, account_id: int, digests: Sequence[str]) -> bool:
        return await self._write(
            lambda conn, fx: webdata.replace_recovery_codes(conn, account_id, digests)
        )

    async def totp_accounts(self) -> set[int]:
        return await self._read(webdata.totp_accounts)

    # -- messages two-step web logins hold between their steps (see .webdata) -----------------
    async def hold_login_message(self, hold: LoginHold, now: datetime, max_bytes: int) -> bool:
        return await self._write(
            lambda conn, fx: webdata.hold_login_message(conn, hold, now, max_bytes)
        )

    async def held_login_message(self, account_id: int, sid: str, now: datetime) -> str | None:
        return await self._read(lambda conn: webdata.held_login_message(conn, account_id, sid, now))

    async def drop_login_message(self, account_id: int, sid: str) -> None:
        await self._write(lambda conn, fx: webdata.drop_login_message(conn, account_id, sid))

    async def prune_login_messages(self, now: datetime) -> int:
        return await self._write(lambda conn, fx: webdata.prune_login_messages(conn, now))

    # -- DKIM keys (see .dkimkeys) -----------------------------------------------------------------
    async def add_dkim_key(self, key: DkimKeyRecord) -> None:
        await self._write(lambda conn, fx: dkimkeys.add_key(conn, key))

    async def list_dkim_keys(
        self, domain: str, *, include_retired: bool = False
    ) -> list[DkimKeyRecord]:
        return await self._read(lambda conn: dkimkeys.list_keys(conn, domain, include_retired))

    async def retire_dkim_key(self, domain: str, selector: str, when: datetime) -> None:
        await self._write(lambda conn, fx: dkimkeys.retire_key(conn, domain, selector, when))

    # -- ACME DNS-01 challenge records (see .acmedata) --------------------------------------------
    async def add_acme_challenge(self, record: AcmeChallengeRecord) -> None:
        await self._write(lambda conn, fx: acmedata.add_challenge(conn, record))

    async def remove_acme_challenge(self, name: str, value: str) -> None:
        await self._write(lambda conn, fx: acmedata.remove_challenge(conn, name, value))

    async def list_acme_challenges(self, domain: str, now: datetime) -> list[AcmeChallengeRecord]:
        return await self._read(lambda conn: acmedata.list_challenges(conn, domain, now))

    # -- ACME http-01 and tls-alpn-01 answers (see .acmedata) -------------------------------------
    async def add_acme_answer(self, answer: AcmeAnswer, limit: int) -> None:
        await self._write(lambda conn, fx: acmedata.add_answer(conn, answer, limit))

    async def remove_acme_answer(self, kind: str, key: str, value: str) -> None:
        await self._write(lambda conn, fx: acmedata.remove_answer(conn, kind, key, value))

    async def acme_answer(self, kind: str, key: str, now: datetime) -> str | None:
        return await self._read(lambda conn: acmedata.answer_value(conn, kind, key, now))

    async def list_acme_answers(self, kind: str, now: datetime, limit: int) -> list[AcmeAnswer]:
        return await self._read(lambda conn: acmedata.list_answers(conn, kind, now, limit))

    # -- the shared ACME certificate, its lease and account (see .acmedata) ----------------------
    async def acme_certificate(self, scope: str) -> AcmeCertificate | None:
        return await self._read(lambda conn: acmedata.certificate(conn, scope))

    async def put_acme_certificate(self, certificate: AcmeCertificate) -> bool:
        return await self._write(lambda conn, fx: acmedata.put_certificate(conn, certificate))

    async def acme_account(self, directory: str) -> AcmeAccount | None:
        return await self._read(lambda conn: acmedata.account(conn, directory))

    async def add_acme_account(self, account: AcmeAccount) -> AcmeAccount:
        return await self._write(lambda conn, fx: acmedata.add_account(conn, account))

    async def replace_acme_account(self, old_key_pem: bytes, account: AcmeAccount) -> AcmeAccount:
        return await self._write(
            lambda conn, fx: acmedata.replace_account(conn, old_key_pem, account)
        )

    async def set_acme_account_url(self, directory: str, key_pem: bytes, url: str) -> None:
        await self._write(lambda conn, fx: acmedata.set_account_url(conn, directory, key_pem, url))

    async def acme_lease(self, scope: str) -> AcmeLease | None:
        return await self._read(lambda conn: acmedata.lease(conn, scope))

    async def claim_acme_lease(
        self, scope: str, holder: str, now: datetime, until: datetime, *, force: bool = False
    ) -> AcmeLease:
        return await self._write(
            lambda conn, fx: acmedata.claim_lease(conn, scope, holder, now, until, force)
        )

    async def end_acme_lease(self, scope: str, holder: str, failures: int, until: datetime) -> None:
        await self._write(lambda conn, fx: acmedata.end_lease(conn, scope, holder, failures, until))

    # -- the zone signing keys of hosted domains (see .dnssecdata) ------------------------------
    async def dnssec_keys(self, domain: str) -> list[DnssecKey]:
        return await self._read(lambda conn: dnssecdata.keys(conn, domain))

    async def add_dnssec_key(self, key: DnssecKey) -> DnssecKey:
        return await self._write(lambda conn, fx: dnssecdata.add_key(conn, key))

    async def finish_dnssec_rollover(self, domain: str, now: datetime) -> bool:
        return await self._write(lambda conn, fx: dnssecdata.finish_rollover(conn, domain, now))

    async def remove_dnssec_key(self, key: DnssecKey) -> bool:
        return await self._write(lambda conn, fx: dnssecdata.remove_key(conn, key))

    # -- the SOA serials of the hosted zones (see .zonedata) --------------------------------------
    async def zone_serial(self, domain: str, digest: bytes, now: int) -> ZoneSerial:
        current = await self._read(lambda conn: zonedata.stored(conn, domain))
        if current is not None and current[1] == digest:
            return ZoneSerial(current[0], changed=False)
        return await self._write(lambda conn, fx: zonedata.advance(conn, domain, digest, now))

    # -- spam filter (see .spamdata) ---------------------------------------------------------------
    async def spam_model(
        self, account_id: int | None, tokens: Sequence[str]
    ) -> tuple[SpamCounts, dict[str, SpamCounts]]:
        cache = self._spam_cache
        return await self._read(lambda conn: spamdata.spam_model(conn, cache, account_id, tokens))

    async def spam_evidence(
        self, account_id: int, tokens: Sequence[str], sender_keys: Sequence[str]
    ) -> SpamEvidence:
        # From memory when every piece is kept and fresh: the hand-off to a reader thread costs
        # several times the SQL (see store.evidencecache). A closed store keeps nothing.
        cache, asked = self._spam_cache, (account_id, tokens, sender_keys)
        read = functools.partial(
            self._read, lambda conn: spamdata.spam_evidence(conn, cache, *asked)
        )
        return await self._evidence.lookup_evidence(cache, *asked, read)

    async def train_spam_model(
        self, account_id: int | None, messages: SpamCounts, tokens: Mapping[str, SpamCounts]
    ) -> None:
        await self._write_then_forget(
            lambda conn, fx: spamdata.train_spam_model(conn, account_id, messages, tokens),
            functools.partial(self._evidence.forget_model, account_id),
        )

    async def spam_training_mark(self, account_id: int, message_key: str) -> bool | None:
        return await self._read(lambda conn: spamdata.training_mark(conn, account_id, message_key))

    async def set_spam_training_mark(self, account_id: int, message_key: str, spam: bool) -> None:
        await self._write(
            lambda conn, fx: spamdata.set_training_mark(conn, account_id, message_key, spam)
        )

    async def sender_reputation(
        self, account_id: int, keys: Sequence[str]
    ) -> dict[str, SpamCounts]:
        return await self._read(lambda conn: spamdata.sender_reputation(conn, account_id, keys))

    async def record_sender_reputation(
        self, account_id: int, keys: Sequence[str], delta: SpamCounts
    ) -> None:
        await self._write_then_forget(
            lambda conn, fx: spamdata.record_sender_reputation(conn, account_id, keys, delta),
            functools.partial(self._evidence.forget_reputation, account_id, keys),
        )

    async def list_sender_entries(self, account_id: int) -> list[SenderListEntry]:
        return await self._read(lambda conn: spamdata.list_sender_entries(conn, account_id))

    async def set_sender_entry(self, account_id: int, entry: SenderListEntry) -> None:
        await self._write_then_forget(
            lambda conn, fx: spamdata.set_sender_entry(conn, account_id, entry),
            functools.partial(self._evidence.forget_senders, account_id),
        )

    async def remove_sender_entry(self, account_id: int, pattern: str) -> None:
        await self._write_then_forget(
            lambda conn, fx: spamdata.remove_sender_entry(conn, account_id, pattern),
            functools.partial(self._evidence.forget_senders, account_id),
        )

    # -- Sieve scripts (see .sievedata) ----------------------------------------------------------
    async def list_sieve_scripts(self, account_id: int) -> list[SieveScript]:
        return await self._read(lambda conn: sievedata.list_scripts(conn, account_id))

    async def get_sieve_script(self, account_id: int, name: str) -> SieveScript | None:
        return await self._read(lambda conn: sievedata.get_script(conn, account_id, name))

    async def active_sieve_script(self, account_id: int) -> SieveScript | None:
        # Read for each local recipient of every arriving message: cached like the settings,
        # and every script write below empties the cache.
        return await self._read_directory(
            ("sieve", str(account_id)), lambda conn: sievedata.active_script(conn, account_id)
        )

    async def put_sieve_script(self, account_id: int, name: str, content: str) -> None:
        await self._write_directory(
            lambda conn, fx: sievedata.put_script(conn, account_id, name, content)
        )

    async def set_active_sieve_script(self, account_id: int, name: str | None) -> None:
        await self._write_directory(lambda conn, fx: sievedata.set_active(conn, account_id, name))

    async def delete_sieve_script(self, account_id: int, name: str) -> None:
        await self._write_directory(
            lambda conn, fx: sievedata.delete_script(conn, account_id, name)
        )

    async def rename_sieve_script(self, account_id: int, old: str, new: str) -> None:
        await self._write_directory(
            lambda conn, fx: sievedata.rename_script(conn, account_id, old, new)
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
            lambda conn, fx: sievedata.track_duplicates(conn, account_id, entries, now, max_entries)
        )

    async def prune_sieve_duplicates(self, now: datetime) -> int:
        return await self._write(lambda conn, fx: sievedata.prune_duplicates(conn, now))

    # -- greylisting (see .greylistdata) -------------------------------------------------------
    async def check_greylist(
        self, triplet: GreyTriplet, now: datetime, rules: GreylistRules
    ) -> GreyOutcome:
        return await self._write(lambda conn, fx: greylistdata.check(conn, triplet, now, rules))

    async def prune_greylist(self, now: datetime) -> int:
        return await self._write(lambda conn, fx: greylistdata.prune(conn, now))

    # -- reports received about our domains (see .receiveddata) -------------------------------
    async def add_received_report(self, report: ReceivedReport) -> bool:
        return await self._write(lambda conn, fx: receiveddata.add(conn, report))

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
        return await self._write(lambda conn, fx: receiveddata.delete(conn, until))

    # -- DMARC aggregate reports (see .dmarcdata) ------------------------------------------------
    async def record_dmarc_observation(self, observation: DmarcObservation) -> None:
        await self._write(lambda conn, fx: dmarcdata.record(conn, observation))

    async def dmarc_observations(self, until: datetime) -> list[DmarcObservation]:
        return await self._read(lambda conn: dmarcdata.observations(conn, until))

    async def delete_dmarc_observations(self, ids: Sequence[int]) -> int:
        return await self._write(lambda conn, fx: dmarcdata.delete(conn, ids))

    async def claim_dmarc_report_run(self, period_end: datetime, scope: str, node: str) -> bool:
        return await self._write(
            lambda conn, fx: dmarcdata.claim_run(conn, period_end, scope, node)
        )

    # -- outbound sending limits (see .sendingdata) --------------------------------------------
    async def sending_limits(self, account_id: int) -> SendingLimits:
        return await self._read(lambda conn: sendingdata.limits(conn, account_id))

    async def set_sending_limits(self, account_id: int, limits: SendingLimits) -> None:
        await self._write(lambda conn, fx: sendingdata.set_limits(conn, account_id, limits))

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
            lambda conn, fx: sendingdata.record(
                conn, account_id, recipients, at, window_start, memory_start
            )
        )

    # -- TLS-RPT reports (see .tlsdata) ---------------------------------------------------------
    async def record_tls_result(self, result: TlsSessionResult) -> None:
        await self._write(lambda conn, fx: tlsdata.record(conn, result))

    async def tls_results(self, until: datetime) -> list[TlsSessionResult]:
        return await self._read(lambda conn: tlsdata.results(conn, until))

    async def delete_tls_results(self, ids: Sequence[int]) -> int:
        return await self._write(lambda conn, fx: tlsdata.delete(conn, ids))

    async def add_tls_report_post(self, post: TlsReportPost) -> int:
        return await self._write(lambda conn, fx: tlsdata.add_post(conn, post))

    async def claim_tls_report_post(self, now: datetime, lease: datetime) -> TlsReportPost | None:
        # Polled by every retry loop: a read first keeps the writer (and the indexer's idle
        # clock) out of it while nothing is due, which is nearly always.
        if not await self._read(lambda conn: tlsdata.post_due(conn, now)):
            return None
        return await self._write(lambda conn, fx: tlsdata.claim_post(conn, now, lease))

    async def reschedule_tls_report_post(
        self, post_id: int, next_try: datetime, attempts: int
    ) -> None:
        await self._write(
            lambda conn, fx: tlsdata.reschedule_post(conn, post_id, next_try, attempts)
        )

    async def delete_tls_report_post(self, post_id: int) -> None:
        await self._write(lambda conn, fx: tlsdata.delete_post(conn, post_id))

    # -- the MTA-STS policy cache (see .stsdata) ----------------------------------------------
    async def save_sts_policy(self, policy: StsPolicyRecord) -> None:
        await self._write(lambda conn, fx: stsdata.save(conn, policy))

    async def sts_policies(self, now: datetime) -> list[StsPolicyRecord]:
        return await self._read(lambda conn: stsdata.unexpired(conn, now))

    async def prune_sts_policies(self, now: datetime) -> int:
        return await self._write(lambda conn, fx: stsdata.prune(conn, now))

    async def save_sts_fetch_failure(self, failure: StsFetchFailure) -> None:
        await self._write(lambda conn, fx: stsdata.save_failure(conn, failure))

    async def sts_fetch_failures(self, since: datetime) -> list[StsFetchFailure]:
        return await self._read(lambda conn: stsdata.failures(conn, since))

    async def prune_sts_fetch_failures(self, before: datetime) -> int:
        return await self._write(lambda conn, fx: stsdata.prune_failures(conn, before))

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
        blob = await self._prepare_blob(raw, None)

        def op(conn: sqlite3.Connection, fx: WriteEffects) -> QueuedMessage:
            now = self._now()
            blob_row = self._put_blob(conn, fx, blob)
            (message_id,) = conn.execute(
                "INSERT INTO queue_messages (sender, blob, size, queued_at, ret, envid, "
                "requiretls) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (sender, blob_row, blob.size, now, ret, envid, int(requiretls)),
            ).fetchone()
            conn.executemany(
                "INSERT INTO queue_recipients (message_id, address, state, next_attempt, notify, "
                f"orcpt, {filingrows.COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        message_id,
                        rcpt.address,
                        RecipientState.PENDING.value,
                        now,
                        " ".join(sorted(rcpt.notify)),
                        rcpt.orcpt,
                        *filingrows.filing_row(rcpt.filing),
                    )
                    for rcpt in recipients
                ],
            )
            return _queued(conn, message_id, due_at=None)

        return await self._submit_with_blob(op, blob)

    async def claim_due(
        self, now: datetime, *, limit: int, lease_seconds: float, owner: str
    ) -> list[QueuedMessage]:
        at = _to_us(now)
        until = at + int(lease_seconds * 1_000_000)

        def op(conn: sqlite3.Connection, fx: WriteEffects) -> list[QueuedMessage]:
            rows = conn.execute(
                "SELECT r.message_id FROM queue_recipients r "
                "JOIN queue_messages q ON q.id = r.message_id "
                "WHERE r.state IN ('pending', 'deferred') AND r.next_attempt <= ? "
                "AND (q.lease_owner IS NULL OR q.lease_until <= ? OR q.lease_owner = ?) "
                "GROUP BY r.message_id ORDER BY min(r.next_attempt), r.message_id LIMIT ?",
                (at, at, owner, limit),
            ).fetchall()
            claimed = [row[0] for row in rows]
            conn.executemany(
                "UPDATE queue_messages SET lease_owner = ?, lease_until = ? WHERE id = ?",
                [(owner, until, message_id) for message_id in claimed],
            )
            return [_queued(conn, message_id, due_at=at) for message_id in claimed]

        return await self._write(op)

    async def record_attempts(self, message_id: int, outcomes: Sequence[AttemptOutcome]) -> None:
        def op(conn: sqlite3.Connection, fx: WriteEffects) -> None:
            if (
                conn.execute("SELECT 1 FROM queue_messages WHERE id = ?", (message_id,)).fetchone()
                is None
            ):
                raise NotFound(f"no queued message {message_id}")
            for outcome in outcomes:
                cursor = conn.execute(
                    "UPDATE queue_recipients SET state = ?, last_reply = ?, "
                    "attempts = attempts + 1, next_attempt = coalesce(?, next_attempt), "
                    "delay_notified = max(delay_notified, ?) WHERE id = ? AND message_id = ?",
                    (
                        outcome.state.value,
                        outcome.reply,
                        _to_us(outcome.next_attempt) if outcome.next_attempt else None,
                        outcome.delay_notified,
                        outcome.recipient_id,
                        message_id,
                    ),
                )
                if cursor.rowcount == 0:
                    raise NotFound(f"no recipient {outcome.recipient_id} in message {message_id}")
            open_recipients = conn.execute(
                "SELECT count(*) FROM queue_recipients WHERE message_id = ? "
                "AND state NOT IN (?, ?)",
                (message_id, *_FINAL_STATES),
            ).fetchone()[0]
            if open_recipients:
                conn.execute(
                    "UPDATE queue_messages SET lease_owner = NULL, lease_until = NULL WHERE id = ?",
                    (message_id,),
                )
            else:
                conn.execute("DELETE FROM queue_messages WHERE id = ?", (message_id,))

        await self._write(op)

    async def list_queue(self) -> list[QueuedMessage]:
        def query(conn: sqlite3.Connection) -> list[QueuedMessage]:
            conn.execute("BEGIN")
            ids = [row[0] for row in conn.execute("SELECT id FROM queue_messages ORDER BY id")]
            return [_queued(conn, message_id, due_at=None) for message_id in ids]

        return await self._read(query)

    async def queue_depth(self) -> QueueDepth:
        def query(conn: sqlite3.Connection) -> QueueDepth:
            conn.execute("BEGIN")  # both counts from one snapshot
            messages, oldest = conn.execute(
                "SELECT count(*), min(queued_at) FROM queue_messages"
            ).fetchone()
            states = dict(
                conn.execute(
                    "SELECT state, count(*) FROM queue_recipients "
                    "WHERE state IN ('pending', 'deferred') GROUP BY state"
                ).fetchall()
            )
            return QueueDepth(
                messages=messages,
                pending=states.get(RecipientState.PENDING.value, 0),
                deferred=states.get(RecipientState.DEFERRED.value, 0),
                oldest=None if oldest is None else _from_us(oldest),
            )

        return await self._read(query)

    async def get_queued(self, message_id: int) -> QueuedMessage | None:
        def query(conn: sqlite3.Connection) -> QueuedMessage | None:
            conn.execute("BEGIN")
            if (
                conn.execute("SELECT 1 FROM queue_messages WHERE id = ?", (message_id,)).fetchone()
                is None
            ):
                return None
            return _queued(conn, message_id, due_at=None)

        return await self._read(query)

    async def retry_queued(self, message_id: int, now: datetime) -> None:
        def op(conn: sqlite3.Connection, fx: WriteEffects) -> None:
            if (
                conn.execute("SELECT 1 FROM queue_messages WHERE id = ?", (message_id,)).fetchone()
                is None
            ):
                raise NotFound(f"no queued message {message_id}")
            conn.execute(
                "UPDATE queue_recipients SET next_attempt = ? "
                "WHERE message_id = ? AND state NOT IN (?, ?)",
                (_to_us(now), message_id, *_FINAL_STATES),
            )

        await self._write(op)

    async def remove_queued(self, message_id: int) -> None:
        def op(conn: sqlite3.Connection, fx: WriteEffects) -> None:
            if conn.execute("DELETE FROM queue_messages WHERE id = ?", (message_id,)).rowcount == 0:
                raise NotFound(f"no queued message {message_id}")

        await self._write(op)

    async def wake_queue(self) -> None:
        # No channel between processes here: another process's server is reached through its
        # control socket (pillarbox.net.control).
        for callback in self._queue_wakes:
            callback()

    def on_queue_wake(self, callback: Callable[[], None]) -> None:
        self._queue_wakes.append(callback)


# -- connections ---------------------------------------------------------------------------------
def _configure_writer(conn: sqlite3.Connection, limits: SqliteLimits) -> None:
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # only a new, empty database takes it
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL, not NORMAL: in WAL mode NORMAL fsyncs only at checkpoints, so a committed
    # transaction survives a process crash but not a power cut or kernel panic. A 250 after DATA
    # promises the message survives both (DESIGN principle 3), so every commit fsyncs the WAL;
    # group commit spreads that one fsync over every write of the batch.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA busy_timeout = {int(limits.busy_timeout_ms)}")
    conn.execute(f"PRAGMA cache_size = {-1024 * int(limits.cache_mib)}")
    conn.execute(f"PRAGMA journal_size_limit = {1024 * 1024 * int(limits.wal_limit_mib)}")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # the Checkpointer's job


def _configure_reader(conn: sqlite3.Connection, limits: SqliteLimits) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(limits.busy_timeout_ms)}")
    conn.execute(f"PRAGMA cache_size = {-1024 * int(limits.cache_mib)}")
    conn.execute("PRAGMA query_only = ON")
    conn.create_function("pb_icontains", 2, _icontains, deterministic=True)


def _icontains(text: str | None, term: str) -> bool:
    """Case-insensitive substring test where the trigram index cannot answer; ``lower`` (simple
    case mapping), as FTS5's trigram folding is, not ``casefold``."""
    return text is not None and term.lower() in text.lower()


def _nothing() -> None:
    return None


def _remove_freed_files(conn: sqlite3.Connection, files: FileBlobStore, freed: list[str]) -> None:
    """Unlink the files of the blobs a just-committed transaction freed, except those a row
    names again; on the writer thread, after the COMMIT, under the write lock taken anew.

    Not in the freeing transaction (a failed COMMIT would leave its rows naming a missing
    file), and not without the lock: between that COMMIT and this, another writer on the
    database (a ``pillarbox`` command beside the server has its own writer thread) may have
    stored the same content afresh, renaming its file over this one and committing its row. An
    unlink then would leave that acknowledged message without bytes. Files are published only
    under the write lock, so one that no row names while it is held belongs to no one.
    Without the lock (``busy_timeout`` passed) the files stay: orphans, swept after the next
    open."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        _log.warning("freed blob files left to the next open", count=len(freed), error=str(exc))
        return
    try:
        for blob_id in freed:
            if conn.execute("SELECT 1 FROM blobs WHERE sha256 = ?", (blob_id,)).fetchone() is None:
                files.remove(blob_id)
    finally:
        conn.execute("ROLLBACK")


# -- conversions ---------------------------------------------------------------------------------
def _to_us(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


@functools.lru_cache(maxsize=4096)
def _flag_set(stored: str) -> frozenset[str]:
    """Flags as stored (sorted, space-separated); mailboxes repeat few distinct combinations."""
    return frozenset(stored.split())


def _record(mailbox_id: int, row: Row) -> MessageRecord:
    # A FETCH of a whole mailbox's INTERNALDATE makes one per message: the positional
    # timedelta and sharing one datetime when both dates are equal (every delivery) halve it.
    uid, modseq, flags, internal_date, saved_date, size, blob_id = row
    internal = _EPOCH + timedelta(0, 0, internal_date)
    return MessageRecord(
        mailbox_id,
        uid,
        modseq,
        _flag_set(flags),
        internal,
        internal if saved_date == internal_date else _EPOCH + timedelta(0, 0, saved_date),
        size,
        blob_id,
    )


def _mailbox(row: tuple[int, int, str, str | None, int, int, int]) -> Mailbox:
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


def _account(
    row: tuple[int, str, str, str, str | None, int, int | None, int | None, int],
) -> Account:
    account_id, address, display_name, password_hash, scram, is_admin, qbytes, qmsgs, created = row
    return Account(
        account_id,
        address,
        display_name,
        password_hash,
        scram,
        bool(is_admin),
        qbytes,
        qmsgs,
        _from_us(created),
    )


def _fts_query(terms: list[str], *, body_only: bool) -> str:
    """An FTS5 query requiring every term as a phrase (a substring, under trigrams)."""
    phrases = " AND ".join('"' + term.replace('"', '""') + '"' for term in terms)
    return f"body_text : ({phrases})" if body_only else phrases


# -- statements used by several operations (all run on the writer thread) -----------------------
def _require_domain(conn: sqlite3.Connection, domain: str) -> None:
    if conn.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone() is None:
        raise NotFound(f"no domain {domain}")


def _require_address_free(conn: sqlite3.Connection, address: str) -> None:
    taken = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM accounts WHERE address = ?) "
        "OR EXISTS (SELECT 1 FROM aliases WHERE address = ?)",
        (address, address),
    ).fetchone()[0]
    if taken:
        raise AlreadyExists(f"{address} is an account or alias already")


def _require_account(conn: sqlite3.Connection, account_id: int) -> None:
    if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
        raise NotFound(f"no account {account_id}")


def _status(conn: sqlite3.Connection, mailbox_id: int) -> MailboxStatus:
    row = conn.execute(
        f"SELECT {_MAILBOX_COLUMNS}, messages, unseen, deleted, bytes, recent_uid "
        "FROM mailboxes WHERE id = ?",
        (mailbox_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    return MailboxStatus(_mailbox(row[:7]), *row[7:])


def _require_mailbox(conn: sqlite3.Connection, mailbox_id: int) -> Mailbox:
    row = conn.execute(
        f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE id = ?", (mailbox_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    return _mailbox(row)


def _mailbox_by_name(conn: sqlite3.Connection, account_id: int, name: str) -> Mailbox | None:
    row = conn.execute(
        f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = ? AND name = ?",
        (account_id, name),
    ).fetchone()
    return _mailbox(row) if row else None


def _insert_mailbox(
    conn: sqlite3.Connection,
    account_id: int,
    name: str,
    special_use: SpecialUse | None,
    now: int,
) -> Mailbox:
    # RFC 9051 §2.3.1.1: a new mailbox (also a re-created name) gets a UIDVALIDITY never used
    # before in this store, so no client can mistake its UIDs for a former incarnation's.
    (last,) = conn.execute(
        "SELECT coalesce((SELECT value FROM meta WHERE key = 'uidvalidity'), 0)"
    ).fetchone()
    uidvalidity = max(last + 1, now // 1_000_000)
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('uidvalidity', ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (uidvalidity,),
    )
    (mailbox_id,) = conn.execute(
        "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity) VALUES (?, ?, ?, ?) "
        "RETURNING id",
        (account_id, name, special_use.value if special_use else None, uidvalidity),
    ).fetchone()
    return Mailbox(mailbox_id, account_id, name, special_use, uidvalidity, 1, 1)


def _create_superiors(
    conn: sqlite3.Connection, account_id: int, name: str, now: int
) -> list[Mailbox]:
    """RFC 9051 §6.3.4/§6.3.6: create the missing superiors of ``name`` ("a", "a/b" of "a/b/c")."""
    levels = name.split(DELIMITER)
    created: list[Mailbox] = []
    for depth in range(1, len(levels)):
        superior = DELIMITER.join(levels[:depth])
        if _mailbox_by_name(conn, account_id, superior) is None:
            created.append(_insert_mailbox(conn, account_id, superior, None, now))
    return created


def _delivery_mailbox(
    conn: sqlite3.Connection, account_id: int, name: str
) -> tuple[Mailbox, QuotaUsage] | None:
    """The mailbox ``name`` of an account (None if either is missing), as it was before this
    took a UID and a MODSEQ for the message (``uidnext`` is the UID, ``highestmodseq + 1``
    the MODSEQ: what :func:`_allocate_uids` would return), and the account's quota usage:
    one statement where a delivery made three. Each costs ~25,000 instructions and the writer
    thread a hand-back of the GIL (docs/performance.md, "Session 6", "Session 20"). A caller
    that stores nothing gives them back with :func:`_return_uid`."""
    row = conn.execute(_DELIVERY_MAILBOX, (account_id, name)).fetchone()
    if row is None:
        return None
    return _mailbox(row[:7]), QuotaUsage(*row[7:])


def _return_uid(conn: sqlite3.Connection, mailbox: Mailbox) -> None:
    """Undo what :func:`_delivery_mailbox` took, in the same write: nothing took one since."""
    conn.execute(
        "UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?",
        (mailbox.uidnext, mailbox.highestmodseq, mailbox.id),
    )


def _quota_usage(conn: sqlite3.Connection, account_id: int) -> QuotaUsage:
    """The account's usage, read in the caller's write: what its quota check and the quota
    warnings after it (:class:`Appended`, :class:`Copied`) are judged on."""
    row = conn.execute(
        "SELECT used_bytes, used_messages, quota_bytes, quota_messages, quota_warned "
        "FROM accounts WHERE id = ?",
        (account_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no account {account_id}")
    return QuotaUsage(*row)


def _next_modseq(conn: sqlite3.Connection, mailbox_id: int) -> int:
    (modseq,) = conn.execute(
        "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ? "
        "RETURNING highestmodseq",
        (mailbox_id,),
    ).fetchone()
    return int(modseq)


def _allocate_uids(conn: sqlite3.Connection, mailbox_id: int, count: int) -> tuple[int, int]:
    """Reserve ``count`` UIDs and one new MODSEQ; returns (first UID, MODSEQ)."""
    first, modseq = conn.execute(
        "UPDATE mailboxes SET uidnext = uidnext + ?, highestmodseq = highestmodseq + 1 "
        "WHERE id = ? RETURNING uidnext - ?, highestmodseq",
        (count, mailbox_id, count),
    ).fetchone()
    return int(first), int(modseq)


def _add_message(
    conn: sqlite3.Connection,
    fx: WriteEffects,
    mailbox: Mailbox,
    *,
    blob: _Blob,
    blob_row: int,
    flags: str,
    internal_date: int,
    now: int,
    keys: _SortKeys,
    allocated: tuple[int, int] | None = None,
) -> MessageRecord:
    """Store a message in ``mailbox``, under the (UID, MODSEQ) ``allocated`` already taken for
    it, else taken here."""
    uid, modseq = allocated if allocated is not None else _allocate_uids(conn, mailbox.id, 1)
    thread = _thread_of(
        conn,
        mailbox.account_id,
        thread_keys(keys.message_id, keys.in_reply_to, keys.reference_ids, blob.blob_id),
    )
    conn.execute(
        "INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, saved_date, size, "
        "blob, digest, sent_date, subject, from_addr, to_addr, cc_addr, message_id, in_reply_to, "
        "refs, thread) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            mailbox.id,
            uid,
            modseq,
            flags,
            internal_date,
            now,
            blob.size,
            blob_row,
            blob.blob_id,
            keys.sent_date,
            keys.subject,
            keys.from_addr,
            keys.to_addr,
            keys.cc_addr,
            keys.message_id,
            keys.in_reply_to,
            keys.references,
            thread,
        ),
    )
    fx.changes.append(Change(mailbox.account_id, mailbox.id, ChangeKind.EXISTS, modseq))
    return MessageRecord(
        mailbox.id,
        uid,
        modseq,
        _flag_set(flags),
        _from_us(internal_date),
        _from_us(now),
        blob.size,
        blob.blob_id,
    )


def _thread_of(conn: sqlite3.Connection, account_id: int, keys: list[str]) -> int:
    """The thread a new message of the account joins (the rule: .threadrows), its keys
    recorded: one lookup on the key table's primary key per key."""
    encoded = json.dumps(keys)
    (thread,) = conn.execute(
        "SELECT min(thread) FROM thread_keys WHERE account_id = ? "
        "AND key IN (SELECT value FROM json_each(?))",
        (account_id, encoded),
    ).fetchone()
    if thread is None:
        (thread,) = conn.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'next_thread' RETURNING value - 1"
        ).fetchone()
    conn.execute(
        "INSERT OR IGNORE INTO thread_keys (account_id, key, thread) "
        "SELECT ?, value, ? FROM json_each(?)",
        (account_id, thread, encoded),
    )
    return int(thread)


def _thread_unthreaded(conn: sqlite3.Connection) -> None:
    """Thread the messages left at thread 0, the column's default, by the rule of a delivery,
    in arrival order: rows a Pillarbox from before migration 29 wrote while it still ran on a
    store another process had upgraded (docs/upgrading.md). Normally there are none: one probe
    of the (mailbox, thread) index per mailbox, under 1 ms over 150,000 messages (CROSS JOIN
    keeps that order; the planner's own walked the whole index, 81 ms)."""
    rows = conn.execute(
        "SELECT b.account_id, m.mailbox_id, m.uid, m.message_id, m.in_reply_to, m.refs, m.digest "
        "FROM mailboxes b CROSS JOIN messages m ON m.mailbox_id = b.id WHERE m.thread = 0 "
        "ORDER BY m.internal_date, m.mailbox_id, m.uid"
    ).fetchall()
    if not rows:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for account_id, mailbox_id, uid, message_id, in_reply_to, refs, digest in rows:
            keys = thread_keys(message_id, in_reply_to, json.loads(refs), digest)
            conn.execute(
                "UPDATE messages SET thread = ? WHERE mailbox_id = ? AND uid = ? AND thread = 0",
                (_thread_of(conn, account_id, keys), mailbox_id, uid),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    _log.warning("messages without a thread id threaded", count=len(rows))


def _remove_messages(
    conn: sqlite3.Connection, mailbox_id: int, uids: list[int], *, modseq: int | None = None
) -> int:
    """Delete messages and remember them as expunged (QRESYNC), the keys of threads left
    without a message pruned; returns the expunge MODSEQ: ``modseq`` when the write took
    one for this mailbox already (a write takes one MODSEQ per mailbox), else the next."""
    if modseq is None:
        modseq = _next_modseq(conn, mailbox_id)
    encoded = json.dumps(uids)
    threads = conn.execute(
        "DELETE FROM messages WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?)) "
        "RETURNING thread",
        (mailbox_id, encoded),
    ).fetchall()
    conn.execute(
        "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) "
        "SELECT ?, value, ? FROM json_each(?)",
        (mailbox_id, modseq, encoded),
    )
    (account_id,) = conn.execute(
        "SELECT account_id FROM mailboxes WHERE id = ?", (mailbox_id,)
    ).fetchone()
    _prune_thread_keys(conn, account_id, sorted({thread for (thread,) in threads}))
    return modseq


def _prune_thread_keys(conn: sqlite3.Connection, account_id: int, threads: list[int]) -> None:
    """Forget the keys of those of ``threads`` the account holds no message of any more
    (docs/threading.md, "Pruning"): one probe of ``messages_thread`` per mailbox of the
    account and thread. A thread with a message left keeps every key, so a late reply still
    joins it; a thread without one has no THREADID left to keep (RFC 8474 §5.2)."""
    conn.execute(
        "DELETE FROM thread_keys WHERE account_id = ? AND thread IN ("
        "SELECT t.value FROM json_each(?) AS t WHERE NOT EXISTS ("
        "SELECT 1 FROM mailboxes b JOIN messages m ON m.mailbox_id = b.id AND m.thread = t.value "
        "WHERE b.account_id = ?))",
        (account_id, json.dumps(threads), account_id),
    )


def _store_text(conn: sqlite3.Connection, blob_row: int, blob: _Blob) -> None:
    conn.execute(
        "INSERT INTO blob_text (id, header_text, body_text) VALUES (?, ?, ?)",
        (blob_row, blob.header_text, blob.body_text),
    )


def _rows_between(
    conn: sqlite3.Connection, mailbox_id: int, uid_min: int, uid_max: int | None
) -> list[Row]:
    return conn.execute(
        ROWS_BY_UID, (mailbox_id, uid_min, uid_max if uid_max is not None else 2**63 - 1)
    ).fetchall()


def _rows_changed(conn: sqlite3.Connection, mailbox_id: int, modseq: int) -> list[Row]:
    return conn.execute(
        f"SELECT {_RECORD_COLUMNS} WHERE m.mailbox_id = ? AND m.modseq > ? ORDER BY m.uid",
        (mailbox_id, modseq),
    ).fetchall()


def _records_changed(conn: sqlite3.Connection, mailbox_id: int, modseq: int) -> list[MessageRecord]:
    return [_record(mailbox_id, row) for row in _rows_changed(conn, mailbox_id, modseq)]


def _uids_expunged(conn: sqlite3.Connection, mailbox_id: int, modseq: int) -> list[int]:
    rows = conn.execute(
        "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
        (mailbox_id, modseq),
    )
    return [row[0] for row in rows]


def _index_pending(conn: sqlite3.Connection, *, limit: int) -> bool:
    """Index up to ``limit`` waiting texts and purge deleted ones; False if none was waiting."""
    rows = conn.execute(
        "SELECT id, state, header_text, body_text FROM blob_text WHERE state != 1 "
        "ORDER BY id LIMIT ?",
        (limit,),
    ).fetchall()
    for blob_row, state, header_text, body_text in rows:
        if state == 0:
            conn.execute(
                "INSERT INTO message_text (rowid, header_text, body_text) VALUES (?, ?, ?)",
                (blob_row, header_text, body_text),
            )
            conn.execute("UPDATE blob_text SET state = 1 WHERE id = ?", (blob_row,))
        else:
            # External-content FTS5 removes entries given the text they were indexed from.
            conn.execute(
                "INSERT INTO message_text (message_text, rowid, header_text, body_text) "
                "VALUES ('delete', ?, ?, ?)",
                (blob_row, header_text, body_text),
            )
            conn.execute("DELETE FROM blob_text WHERE id = ?", (blob_row,))
    return bool(rows)


def _queued(conn: sqlite3.Connection, message_id: int, *, due_at: int | None) -> QueuedMessage:
    """One queue entry with its recipients (only those due at ``due_at`` when given)."""
    sender, blob_id, size, queued_at, ret, envid, requiretls = conn.execute(
        "SELECT q.sender, b.sha256, q.size, q.queued_at, q.ret, q.envid, q.requiretls "
        "FROM queue_messages q JOIN blobs b ON b.id = q.blob WHERE q.id = ?",
        (message_id,),
    ).fetchone()
    sql = (
        "SELECT id, address, state, attempts, next_attempt, last_reply, notify, orcpt, "
        f"delay_notified, {filingrows.COLUMNS} FROM queue_recipients "
        "WHERE message_id = ?"
    )
    params: tuple[int, ...] = (message_id,)
    if due_at is not None:
        sql += " AND state IN ('pending', 'deferred') AND next_attempt <= ?"
        params = (message_id, due_at)
    recipients = tuple(
        QueuedRecipient(
            row[0],
            message_id,
            row[1],
            RecipientState(row[2]),
            row[3],
            _from_us(row[4]),
            row[5],
            frozenset(row[6].split()),
            row[7],
            bool(row[8]),
            filingrows.filing_of(row[9], row[10], row[11]),
        )
        for row in conn.execute(sql + " ORDER BY id", params)
    )
    return QueuedMessage(
        message_id,
        sender,
        blob_id,
        size,
        _from_us(queued_at),
        ret,
        envid,
        recipients,
        bool(requiretls),
    )
