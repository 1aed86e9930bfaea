"""The data directory's server lock: one ``pillarbox serve`` per SQLite store, and no migration
under it.

A SQLite store has one server: its change feed (IDLE, NOTIFY) and its queue runner live in
that process, so a second server on the same file would never see the first one's deliveries
and both would run the queue. The server holds an exclusive ``flock`` on ``server.lock`` in the
data directory for its lifetime; a second server fails to take it and refuses to start. An
admin command takes the same lock only for a migration, so every other command runs beside the
server while an upgrade's admin command cannot change the schema under it.

Implementation notes:

- **flock, not fcntl locks**: an ``fcntl`` (POSIX) lock belongs to the process and is dropped
  when *any* descriptor of the file is closed, which SQLite and the tests' several stores in
  one process would do; a ``flock`` belongs to the open file description taken here.
- **No stale lock**: the kernel drops a ``flock`` when its holder dies, ``kill -9`` included,
  so there is nothing to clean up and no pid to check for liveness. The file stays; its
  content (the holder's pid and role, written once the lock is held) is read only to name the
  holder in the refusal, so a stale content is never believed.
- **Never waits for a server**: a refusal is the answer; waiting would hang an upgrade behind
  a server that runs for months. Another command's migration (commands run together on a new
  store) is waited for, by polling: ``flock`` cannot wait for one holder and not another.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

#: The lock file's name in the data directory.
LOCK_NAME = "server.lock"
#: The role a server records (the only one a refusal need not spell out).
SERVING = "serve"
#: The role of a command migrating the store.
MIGRATING = "migrating"
#: Seconds between two looks at a lock another command's migration holds.
_POLL = 0.05
#: Longest holder line read back; a pid and a role fit many times over.
_MAX_HOLDER = 64


class ServerLock:
    """The lock file at ``path``; :meth:`try_hold` takes it, :meth:`release` gives it back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

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

    def try_hold_to_migrate(self) -> bool:
        """Take the lock for a migration, once another command's migration (if one runs) is
        over; False while a server holds it."""
        while not self.try_hold(MIGRATING):
            if self._holder()[1] not in {MIGRATING, ""}:  # "": a new file, its line not yet in
                return False
            time.sleep(_POLL)
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor drops the flock

    def holder(self) -> str:
        """Who holds the lock, for a refusal: ``pid 123`` (a server), ``pid 123, migrating``,
        or ``unknown pid`` when the holder had not written its line yet."""
        pid, role = self._holder()
        if not pid:
            return "unknown pid"
        return f"pid {pid}" if role in {SERVING, ""} else f"pid {pid}, {role}"

    def _holder(self) -> tuple[str, str]:
        """(pid, role) as the holder wrote them; empty strings for what cannot be read."""
        with contextlib.suppress(OSError):
            with self.path.open("rb") as file:
                first = file.read(_MAX_HOLDER).decode("ascii", "replace").partition("\n")[0]
            pid, _, role = first.partition(" ")
            if pid.isdigit():
                return pid, role.strip()
        return "", ""
