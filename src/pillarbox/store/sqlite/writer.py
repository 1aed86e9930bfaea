"""The one writer thread of a SQLite store, and its group commit.

SQLite allows one writer at a time, and a durable commit costs an fsync. Serialising every write
through one thread that owns the only write connection turns that constraint into throughput:
callers queue operations; the thread takes *everything* queued, runs each operation inside its
own SAVEPOINT of one transaction, commits once (one fsync for the whole batch), and only then
resolves each caller's future. While it waits on the fsync, the next batch is already queuing.

Invariants:

- A caller's future resolves only after the COMMIT that contains its operation returned, so
  "returned" means "durable" (interface notes). A failed operation is rolled back to its own
  savepoint and fails alone (the first of a transaction has none: the transaction is rolled
  back and begun again for the rest); a failed COMMIT fails the whole batch with
  ``StorageError``.
- Post-commit effects (change notifications, unlinking freed blob files) are collected per
  operation and applied only for operations that committed.
- Operations run strictly in submission order, one at a time, on this thread: an operation sees
  the effects of every earlier one, including post-commit effects of earlier batches.
- A caller cancelled while waiting does not undo its write; the result is simply dropped.
- Checkpoints (copying the WAL back into the database file, with its fsync) never run on
  this thread: :class:`Checkpointer` does them on its own connection, concurrently with the
  writes (WAL permits that), at most once per interval. Measured on the development VM, the
  automatic in-commit checkpoint cost a third of the group-commit throughput.
- One exception bounds the WAL. A concurrent checkpoint copies the frames that existed when it
  started; under sustained writes new frames always follow, so the WAL is never wholly copied,
  never starts over, and grew to 858 MB in a bulk load (every reader then searched a wal-index
  of 200,000 frames). When the checkpointer finds the WAL over its limit it asks this thread,
  which holds no lock between batches, for a RESTART checkpoint: it copies the few frames the
  last checkpoint missed and waits, at most ``restart_wait``, for readers to leave the WAL, so
  the next commit writes from the WAL's start (and ``journal_size_limit`` truncates the file).
  Writes pause for that one step, once per limit's worth of WAL.
- Background work (the full-text indexer) runs only once no write has arrived for
  ``idle_after`` seconds (so it does not compete with a burst for the CPU), in slices of
  its own transactions that stop as soon as a write arrives: it delays a write by at most one
  step (one message's indexing), never starves it. Its commits skip the fsync
  (``synchronous=NORMAL`` for that transaction only): the work is derived data. They wake the
  checkpointer like any commit, whose checkpoint syncs the WAL while the writer is idle;
  otherwise the next durable commit synced every frame the indexer had written since: 88–103 ms
  for the first message after the backlog of 2,000 bench messages was indexed
  (docs/performance.md, "Session 7").
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pillarbox.errors import PillarboxError, SchemaTooNew, StorageError, StoreInUse
from pillarbox.store.types import Change

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(slots=True)
class WriteEffects:
    """What one operation asks to happen once its transaction is durable (or just before)."""

    changes: list[Change] = field(default_factory=list)
    #: Directories whose new entries must be fsync'd before COMMIT (file blobs renamed in).
    dirs_to_sync: set[Path] = field(default_factory=set)
    #: Whether the batch's ``before_commit`` step (the store's sweep of blobs no row refers
    #: to) must run for this operation's sake. Only an operation that knows it left nothing
    #: for it to do sets it False (a delivery whose blob a message now holds): the step is
    #: skipped for a batch only when every operation that committed did so.
    before_commit: bool = True


@dataclass(frozen=True, slots=True)
class BatchHooks:
    """Backend callbacks around each batch, all called on the writer thread."""

    #: Runs inside the transaction after the last operation, unless no committed operation
    #: asked for it (:attr:`WriteEffects.before_commit`); returns a post-commit action, which
    #: runs on this thread before the next batch and may use the connection (no transaction is
    #: open then).
    before_commit: Callable[[sqlite3.Connection], Callable[[], None]]
    #: Receives the changes of every committed operation of a batch, in order.
    publish: Callable[[list[Change]], None]
    #: fsyncs the given directories (file blob mode), before COMMIT.
    sync_dirs: Callable[[set[Path]], None]
    #: Background work inside its own transaction; it stops when the second argument (a write
    #: is waiting) returns True, and returns whether more work remains.
    idle: Callable[[sqlite3.Connection, Callable[[], bool]], bool]
    #: Called after every COMMIT, background work's included (wakes the checkpointer).
    committed: Callable[[], None]


Operation = Callable[[sqlite3.Connection, WriteEffects], T]


@dataclass(slots=True)
class _Request(Generic[T]):
    operation: Operation[T]
    future: asyncio.Future[T]
    loop: asyncio.AbstractEventLoop
    effects: WriteEffects = field(default_factory=WriteEffects)
    result: Any = None
    error: BaseException | None = None


_STOP = object()


class GroupCommitWriter:
    """Owns the write connection and the thread that batches operations into transactions."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        hooks: BatchHooks,
        *,
        max_batch: int,
        idle_after: float,
        restart_wanted: threading.Event,
        restart_wait: float,
        name: str = "pillarbox-sqlite-writer",
    ) -> None:
        self._connect = connect
        self._hooks = hooks
        self._max_batch = max_batch
        self._idle_after = idle_after
        #: Set (by the :class:`Checkpointer`) to ask for a RESTART checkpoint before the next
        #: batch; see the module notes.
        self._restart_wanted = restart_wanted
        self._restart_wait = restart_wait
        self._queue: queue.SimpleQueue[_Request[Any] | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._closed = False
        #: Batches committed and operations run, for the bench and tests.
        self.batches = 0
        self.operations = 0
        #: Wall-clock and this thread's CPU seconds spent running batches, for the bench: wall
        #: well above CPU is waiting, for the fsync or for the GIL.
        self.busy_seconds = 0.0
        self.busy_cpu_seconds = 0.0
        #: RESTART checkpoints that reset the WAL, for tests.
        self.wal_restarts = 0

    def start(self) -> None:
        self._thread.start()
        self._started.wait()
        if isinstance(self._start_error, SchemaTooNew | StoreInUse):
            raise self._start_error  # its message already says what to do
        if self._start_error is not None:
            raise StorageError(f"cannot open the database: {self._start_error}")

    async def submit(self, operation: Operation[T]) -> T:
        """Queue ``operation`` for the next batch; returns its result once it is durable."""
        if self._closed:
            raise StorageError("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Request(operation, future, loop))
        return await future

    def stop(self) -> None:
        """Finish every queued operation, then close the connection (blocking; call off-loop)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()

    # -- writer thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        try:
            stopping = False
            idle_work = True
            while not stopping:
                if self._restart_wanted.is_set():
                    self._restart_wanted.clear()
                    self._restart(conn)
                try:
                    first = self._queue.get(timeout=self._idle_after if idle_work else None)
                except queue.Empty:
                    idle_work = self._run_idle(conn)
                    continue
                batch, stopping = self._take_batch(first)
                if batch:
                    self._run_batch(conn, batch)
                    idle_work = True
        finally:
            conn.close()

    def _run_idle(self, conn: sqlite3.Connection) -> bool:
        conn.execute("PRAGMA synchronous = NORMAL")
        try:
            conn.execute("BEGIN IMMEDIATE")
            more = self._hooks.idle(conn, self._write_waiting)
            conn.execute("COMMIT")
        except Exception:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            log.exception("background store work failed; retrying after the next write")
            return False
        finally:
            conn.execute("PRAGMA synchronous = FULL")
        self._hooks.committed()
        return more

    def _restart(self, conn: sqlite3.Connection) -> None:
        wait_ms = int(self._restart_wait * 1000)
        (busy_ms,) = conn.execute("PRAGMA busy_timeout").fetchone()
        conn.execute(f"PRAGMA busy_timeout = {wait_ms}")
        try:
            (busy, _, _) = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        except sqlite3.Error:
            log.exception("WAL restart failed; retrying after the next checkpoint")
            return
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
        if busy:
            # A reader kept the WAL past ``restart_wait``: the next checkpoint asks again.
            log.info("WAL restart waited %d ms for readers; retrying later", wait_ms)
        else:
            self.wal_restarts += 1

    def _write_waiting(self) -> bool:
        return not self._queue.empty()

    def _take_batch(self, first: _Request[Any] | object) -> tuple[list[_Request[Any]], bool]:
        if first is _STOP:
            return [], True
        assert isinstance(first, _Request)
        batch: list[_Request[Any]] = [first]
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            assert isinstance(item, _Request)
            batch.append(item)
        return batch, False

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Request[Any]]) -> None:
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            self._run_pending(conn, batch)
        finally:
            self.busy_seconds += time.perf_counter() - started
            self.busy_cpu_seconds += time.thread_time() - cpu

    def _run_pending(self, conn: sqlite3.Connection, batch: list[_Request[Any]]) -> None:
        pending = batch
        while pending:
            try:
                pending = self._run_transaction(conn, pending)
            except Exception as exc:
                # The batch machinery itself failed (SAVEPOINT, ROLLBACK TO): fail the batch,
                # keep the thread alive for the next one.
                log.exception("write batch failed")
                try:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("rollback failed")
                self._finish(pending, StorageError(f"write batch failed: {exc}"))
                return

    def _run_transaction(
        self, conn: sqlite3.Connection, batch: list[_Request[Any]]
    ) -> list[_Request[Any]]:
        """Run ``batch`` in one transaction; returns the requests still to run if SQLite aborted
        the transaction midway (those already run are failed, their effects are gone)."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._finish(batch, StorageError(f"cannot begin a write transaction: {exc}"))
            return []
        for index, request in enumerate(batch):
            # The first operation runs without a savepoint: the transaction holds nothing else
            # yet, so rolling all of it back undoes that operation alone, and the rest of the
            # batch runs in a transaction begun anew. A batch of one then takes three
            # statements (BEGIN, COMMIT and its own), not five.
            first = index == 0
            if not first:
                conn.execute("SAVEPOINT op")
            try:
                request.result = request.operation(conn, request.effects)
                if not first:
                    conn.execute("RELEASE op")
            except BaseException as exc:
                request.error = _storage_error(exc)
                request.effects = WriteEffects()
                if first:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    self._resolve([request])
                    return batch[1:]
                if not conn.in_transaction:
                    # SQLite rolled the whole transaction back (disk full, I/O error, …).
                    lost = StorageError(f"write transaction aborted: {exc}")
                    self._finish(batch[:index], lost)
                    self._resolve([request])
                    return batch[index + 1 :]
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
        try:
            wanted = any(r.effects.before_commit for r in batch if r.error is None)
            after_commit = self._hooks.before_commit(conn) if wanted else _nothing
            dirs = set().union(*(r.effects.dirs_to_sync for r in batch if r.error is None))
            if dirs:
                self._hooks.sync_dirs(dirs)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._finish(batch, StorageError(f"commit failed: {exc}"))
            return []
        self.batches += 1
        self.operations += len(batch)
        try:
            self._hooks.committed()
            after_commit()
            changes = [c for r in batch if r.error is None for c in r.effects.changes]
            if changes:
                self._hooks.publish(changes)
        except Exception:
            # The data is committed; a failed cleanup or notification must not report failure.
            log.exception("post-commit action failed")
        self._resolve(batch)
        return []

    def _finish(self, requests: list[_Request[Any]], error: BaseException) -> None:
        for request in requests:
            request.error = error
        self._resolve(requests)

    @staticmethod
    def _resolve(requests: list[_Request[Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Request[Any]]] = {}
        for request in requests:
            by_loop.setdefault(request.loop, []).append(request)
        for loop, group in by_loop.items():
            # One wake-up per loop and batch, not one per request.
            try:
                loop.call_soon_threadsafe(_set_results, group)
            except RuntimeError:
                log.warning("event loop closed before %d store results arrived", len(group))


def _nothing() -> None:
    pass


def _set_results(requests: list[_Request[Any]]) -> None:
    for request in requests:
        if request.future.done():
            continue
        if request.error is not None:
            request.future.set_exception(request.error)
        else:
            request.future.set_result(request.result)


def _storage_error(exc: BaseException) -> BaseException:
    """Our own errors pass through; anything else from SQLite is a server fault."""
    if isinstance(exc, PillarboxError):
        return exc
    if isinstance(exc, sqlite3.Error):
        return StorageError(f"{type(exc).__name__}: {exc}")
    return exc


class Checkpointer:
    """A thread that checkpoints the WAL (PASSIVE: never blocks the writer or readers), woken
    after commits and running at most once per ``interval`` seconds; when the WAL holds more
    than ``wal_limit_pages`` frames it calls ``over_limit`` (which asks the writer for a
    RESTART checkpoint)."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        interval: float,
        wal_limit_pages: int,
        over_limit: Callable[[], None],
        name: str = "pillarbox-sqlite-checkpoint",
    ) -> None:
        self._connect = connect
        self._interval = interval
        self._wal_limit_pages = wal_limit_pages
        self._over_limit = over_limit
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        #: Checkpoints run, for tests.
        self.checkpoints = 0

    def start(self) -> None:
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        conn = self._connect()
        try:
            while True:
                self._wake.wait()
                if self._stopping.is_set():
                    return
                self._wake.clear()
                try:
                    (_, frames, _) = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                    if frames > self._wal_limit_pages:
                        self._over_limit()
                except sqlite3.Error:
                    log.exception("WAL checkpoint failed; retrying after the next commit")
                if self._stopping.wait(self._interval):
                    return
        finally:
            conn.close()
