"""Raw message bytes: content-addressed, immutable, shared, durable before they are referenced.

A blob's id is the lowercase hex SHA-256 of its bytes, so identical content (one message to many
local recipients, a queued copy of a delivered message) is stored once and reference-counted by
the store's metadata. Two places can hold the bytes (:class:`BlobMode`):

- ``DATABASE``: a row in the metadata database, written in the same transaction as the message
  that refers to it. One fsync (the WAL commit) covers both, for the whole group-commit batch.
- ``FILES``: one file per blob under ``blobs/ab/<sha256>``. Durable before its row commits:
  written to a unique temporary name and fsync'd by the caller's worker thread (in parallel with
  other writers), renamed into place by the writer thread, whose batch fsyncs each touched shard
  directory once before COMMIT. Paths are built only from the validated hex digest, never from
  input. A file comes to or leaves its final name only under the database's write lock, which
  every writer on the database (the server, a ``pillarbox`` command beside it) takes: renamed
  in by the transaction that inserts its row; unlinked, freed or orphaned, only once no row
  names it while the lock is held. So no file is removed under a row that names it, whichever
  writer stored that row.

Why ``DATABASE`` is the default — measured by ``bench/store.py`` on the 2-core development VM
(ext4 on virtio; other work sharing the CPUs, load average about 3), distinct 4 KB messages into
one mailbox, durable deliveries per second and process CPU per delivery:

============  ===============  ===============  ===============
blobs         1 writer         10 writers       100 writers
============  ===============  ===============  ===============
database      432 (1,463 µs)   948 (790 µs)     1,530 (515 µs)
files         270 (2,181 µs)   427 (1,458 µs)   530 (1,260 µs)
============  ===============  ===============  ===============

Group commit amortises the database store's one WAL fsync over the batch (about 50 deliveries
per commit at 100 writers); the file store still pays one file fsync per message, plus a trip
through the executor to stage it and a directory fsync per batch, so it costs 2.4 times the CPU
and delivers a third of the rate. Files win on other axes — very large messages do not churn the
WAL, and blobs can move to object storage (DESIGN "beyond one machine") — so the mode stays a
configuration choice (``sqlite:...?blobs=files``), not a code fork.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pillarbox.errors import NotFound, StorageError

_BLOB_ID = re.compile(r"[0-9a-f]{64}")

#: Seconds after which a staged file nobody published is a crash's leftover: staging and
#: publishing are a write-queue wait apart (milliseconds, seconds under load), never this long.
STAGED_MAX_AGE = 3600.0


class BlobMode(enum.StrEnum):
    DATABASE = "database"
    FILES = "files"


def blob_id_of(raw: bytes) -> str:
    """The content address of ``raw`` (hashlib releases the GIL for large inputs)."""
    return hashlib.sha256(raw).hexdigest()


def is_blob_id(value: str) -> bool:
    return _BLOB_ID.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class StagedBlob:
    """Bytes written and fsync'd under a temporary name, waiting to be renamed into place."""

    blob_id: str
    tmp_path: Path


class FileBlobStore:
    """Content-addressed files under ``root``, sharded by the first two hex digits.

    Every method blocks; callers run them off the event loop (the staging on the shared bounded
    executor, the publishing on the store's writer thread).
    """

    def __init__(self, root: Path) -> None:
        self._root = root
        self._tmp = root / "tmp"

    def prepare(self, now: float) -> None:
        """Create the directory layout; remove temporaries a crash left behind.

        Not another live process's: a ``pillarbox`` command opens the store beside the server,
        and a file the server staged may be about to be published. So a file goes when the
        process named in it is gone, or (a process of another PID namespace, a reused PID)
        once it is older than :data:`STAGED_MAX_AGE`."""
        self._tmp.mkdir(parents=True, exist_ok=True)
        for leftover in self._tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                owner = _staging_pid(leftover.name)
                if (owner is not None and not _alive(owner)) or (
                    leftover.stat().st_mtime < now - STAGED_MAX_AGE
                ):
                    leftover.unlink(missing_ok=True)

    def shards(self) -> list[str]:
        """The two-digit prefixes that have a directory."""
        return sorted(p.name for p in self._root.glob("[0-9a-f][0-9a-f]") if p.is_dir())

    def remove_unknown(self, shard: str, known: Callable[[str, str], set[str]]) -> int:
        """Remove the files of one shard that ``known(low, high)`` (the blob ids in the store
        between ``low`` inclusive and ``high`` exclusive) does not list; how many went.

        Such files are orphans a crash left: published by a transaction that never committed,
        or freed by one that committed just before the process died, before the unlink. The
        caller holds the store's write lock, under which alone blobs are published, so no file
        can be between its rename and its row's commit meanwhile."""
        removed = 0
        names = {p.name for p in (self._root / shard).iterdir() if is_blob_id(p.name)}
        for name in names - known(shard, shard + "g"):  # "g" sorts after every hex digit
            self.path_of(name).unlink(missing_ok=True)
            removed += 1
        return removed

    def path_of(self, blob_id: str) -> Path:
        if not is_blob_id(blob_id):
            raise NotFound(f"no blob {blob_id!r}")
        return self._root / blob_id[:2] / blob_id

    def stage(self, blob_id: str, raw: bytes) -> StagedBlob:
        """Write ``raw`` to a fresh temporary file and fsync it."""
        tmp_path = self._tmp / f"{blob_id}.{os.getpid()}.{secrets.token_hex(8)}"
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(raw)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            tmp_path.unlink(missing_ok=True)
            raise StorageError(f"cannot write blob {blob_id}: {exc}") from exc
        os.close(fd)
        return StagedBlob(blob_id, tmp_path)

    def publish(self, staged: StagedBlob) -> list[Path]:
        """Rename a staged blob into place; returns the directories the caller must fsync before
        the blob's row commits (the rename, and a new shard's entry, are not durable until then)."""
        final = self.path_of(staged.blob_id)
        dirs = [final.parent]
        try:
            if not final.parent.is_dir():
                final.parent.mkdir(exist_ok=True)
                dirs.append(self._root)
            os.replace(staged.tmp_path, final)
        except OSError as exc:
            raise StorageError(f"cannot store blob {staged.blob_id}: {exc}") from exc
        return dirs

    def discard(self, staged: StagedBlob) -> None:
        """Drop a staged blob that was not needed (the content was stored already)."""
        staged.tmp_path.unlink(missing_ok=True)

    def read(self, blob_id: str) -> bytes:
        try:
            return self.path_of(blob_id).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"no blob {blob_id}") from exc
        except OSError as exc:
            raise StorageError(f"cannot read blob {blob_id}: {exc}") from exc

    def remove(self, blob_id: str) -> None:
        """Delete a blob no row names; the caller holds the write lock and has looked (a row
        dropped by a committed transaction may have been inserted again since, by another
        writer)."""
        self.path_of(blob_id).unlink(missing_ok=True)

    @staticmethod
    def sync_dirs(dirs: set[Path]) -> None:
        """fsync directories so that renames into them survive a power failure."""
        for directory in dirs:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _staging_pid(name: str) -> int | None:
    """The PID in a staged file's name (``<sha256>.<pid>.<random>``), if it has one."""
    parts = name.split(".")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # this process's own (a store reopened in-process)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True
