"""Replacing a small file so that a crash leaves the old one or the new one, whole.

Keys, certificates, the mail client's account list: a reader (or the next start) must never
see half a file, and a key must never be readable by others, not even for a moment.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data``: written to a temporary file in the same directory
    created with ``mode``, synced, renamed over ``path``, and the directory synced (so the
    rename itself survives a crash)."""
    with StagedFile(path, mode) as staged:
        staged.write(data)
        staged.replace()


def create_exclusively(path: Path, data: bytes, mode: int = 0o644) -> bool:
    """Create ``path`` with ``data`` unless it exists: written and synced as
    :func:`write_atomically` does, then linked into place, which fails if another process
    created it first (never replaced). Whether this call created it."""
    with StagedFile(path, mode) as staged:
        staged.write(data)
        return staged.create()


class StagedFile:
    """A file written in pieces beside ``path`` (a temporary file in its directory, made
    with ``mode``), then put in place whole: :meth:`replace` or :meth:`create`. Left
    without either (an error, a crash), it is removed (:meth:`discard`; the context
    manager's exit): ``path`` is never seen half written. Each method blocks (an async
    caller runs them off its loop)."""

    def __init__(self, path: Path, mode: int = 0o644) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, self._temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        self.path = path
        try:
            os.fchmod(fd, mode)
            self._file = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            os.unlink(self._temporary)
            raise
        self._done = False

    def __enter__(self) -> StagedFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.discard()

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def replace(self) -> None:
        """Synced, then renamed over ``path`` (whatever is there), the directory synced."""
        self._synced()
        os.replace(self._temporary, self.path)
        self._done = True
        _sync_directory(self.path.parent)

    def create(self) -> bool:
        """Synced, then linked as ``path`` unless that exists (never replaced: another
        process's file stays); whether it was created. The temporary file goes either way."""
        self._synced()
        try:
            os.link(self._temporary, self.path)
        except FileExistsError:
            return False
        finally:
            self.discard()
        _sync_directory(self.path.parent)
        return True

    def discard(self) -> None:
        """The temporary file closed and removed (once it is placed: nothing to do)."""
        if not self._file.closed:
            self._file.close()
        if not self._done:
            self._done = True
            with contextlib.suppress(OSError):
                os.unlink(self._temporary)

    def _synced(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
