"""The serving lock: one ``pillarbox serve`` per SQLite data directory and per database file,
and no migration under it.

A SQLite store has one server: its change feed (IDLE, NOTIFY) and its queue runner live in
that process, so a second server on the same file would never see the first one's deliveries
and both would run the queue. The server holds an exclusive ``flock`` on ``server.lock`` in the
data directory and on a sidecar beside the database file (``<database>-server.lock``) for its
lifetime: two data directories whose ``store.url`` name one absolute ``sqlite:///`` file are
one store. A second server fails to take either and refuses to start. An admin command takes
the same locks only for a migration, so every other command runs beside the server while an
upgrade's admin command cannot change the schema under it.

``pillarbox serve`` takes the locks before importing the server
(:meth:`ServerLock.hold_to_serve`), so a refusal comes at once, and hands them to its store.

Implementation notes:

- **flock, not fcntl locks**: an ``fcntl`` (POSIX) lock belongs to the process and is dropped
  when *any* descriptor of the file is closed, which SQLite and the tests' several stores in
  one process would do; a ``flock`` belongs to the open file description taken here.
- **A sidecar, not the database file**: SQLite takes its own ``fcntl`` locks on the database
  and closes descriptors of it, and a ``flock`` on it would block nothing SQLite does anyway.
  The sidecar sits beside the database's real path (symlinks resolved), so every way of
  naming the file meets the same lock.
- **No stale lock**: the kernel drops a ``flock`` when its holder dies, ``kill -9`` included,
  so there is nothing to clean up and no pid to check for liveness. The files stay; their
  content (the holder's pid and role, written once the lock is held) is read only to name the
  holder in the refusal, so a stale content is never believed.
- **Never waits for a server**: a refusal is the answer; waiting would hang an upgrade behind
  a server that runs for months. Another command's migration (commands run together on a new
  store) is waited for, by polling: ``flock`` cannot wait for one holder and not another.
  The files are taken in one order (data directory, then database) and none is waited for,
  so two takers never deadlock; one refused releases what it took.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from pillarbox.errors import StoreInUse

#: The lock file's name in the data directory.
LOCK_NAME = "server.lock"
#: What the database file's name gets for its lock file's (SQLite's own are ``-wal``, ``-shm``).
DATABASE_LOCK_SUFFIX = "-server.lock"
#: The role a server records (the only one a refusal need not spell out).
SERVING = "serve"
#: The role of a command migrating the store.
MIGRATING = "migrating"
#: Seconds between two looks at a lock another command's migration holds.
_POLL = 0.05
#: Longest holder line read back; a pid and a role fit many times over.
_MAX_HOLDER = 64


class LockFile:
    """One lock file at ``path``, guarding the ``kind`` (``data directory``, ``database``) at
    ``guarded``: :meth:`try_hold` takes it, :meth:`release` gives it back."""

    def __init__(self, path: Path, kind: str, guarded: Path) -> None:
        self.path = path
        self.kind = kind
        self.guarded = guarded
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_hold(self, role: str) -> bool:
        """Take the lock without waiting and record ``role`` (:data:`SERVING`, :data:`MIGRATING`)
        with this process's pid; False if another open file description holds it."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is held already")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        line = f"{os.getpid()} {role}\n".encode()
        os.pwrite(fd, line, 0)  # then cut: a reader sees the old line or the new, never none
        os.ftruncate(fd, len(line))
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor drops the flock

    def holder(self) -> str:
        """Who holds the lock, for a refusal: ``pid 123`` (a server), ``pid 123, migrating``,
        or ``unknown pid`` when the holder had not written its line yet."""
        pid, role = self.holder_fields()
        if not pid:
            return "unknown pid"
        return f"pid {pid}" if role in {SERVING, ""} else f"pid {pid}, {role}"

    def holder_fields(self) -> tuple[str, str]:
        """(pid, role) as the holder wrote them; empty strings for what cannot be read."""
        with contextlib.suppress(OSError):
            with self.path.open("rb") as file:
                first = file.read(_MAX_HOLDER).decode("ascii", "replace").partition("\n")[0]
            pid, _, role = first.partition(" ")
            if pid.isdigit():
                return pid, role.strip()
        return "", ""


class ServerLock:
    """The lock files of a data directory and of the database its store names, taken and
    given back together; :attr:`refused_by` is the one a failed :meth:`try_hold` met."""

    def __init__(self, data_dir: Path, database: Path) -> None:
        real = database.resolve()
        self.files = (
            LockFile(data_dir / LOCK_NAME, "data directory", data_dir),
            LockFile(real.with_name(real.name + DATABASE_LOCK_SUFFIX), "database", database),
        )
        self.refused_by: LockFile | None = None

    @property
    def held(self) -> bool:
        return self.files[0].held

    def try_hold(self, role: str) -> bool:
        """Take every file without waiting, recording ``role``; False (and none kept) if
        another holder has one of them, named by :attr:`refused_by`."""
        self.refused_by = None
        for taken, file in enumerate(self.files):
            if not file.try_hold(role):
                for earlier in self.files[:taken]:
                    earlier.release()
                self.refused_by = file
                return False
        return True

    def try_hold_to_migrate(self) -> bool:
        """Take the locks for a migration, once another command's migration (if one runs) is
        over; False while a server holds one of them."""
        while not self.try_hold(MIGRATING):
            assert self.refused_by is not None
            if self.refused_by.holder_fields()[1] not in {MIGRATING, ""}:  # "": not yet written
                return False
            time.sleep(_POLL)
        return True

    def hold_to_serve(self) -> None:
        """Take the locks for a server; :class:`StoreInUse` if another server (or a
        migration) holds one of them."""
        if not self.try_hold(SERVING):
            held, kind = self.refusal()
            raise StoreInUse(
                f"another server {held}: stop it first, or give this one a {kind} of its own"
            )

    def release(self) -> None:
        for file in reversed(self.files):
            file.release()

    def refusal(self) -> tuple[str, str]:
        """After a refused :meth:`try_hold`: who holds what, as ``(pid 123) runs on the data
        directory /var/lib/pillarbox``, and the kind of thing it holds."""
        file = self.refused_by
        assert file is not None, "no refusal to describe"
        return f"({file.holder()}) runs on the {file.kind} {file.guarded}", file.kind
