"""Replacing a small file so that a crash leaves the old one or the new one, whole.

Keys, certificates, the mail client's account list: a reader (or the next start) must never
see half a file, and a key must never be readable by others, not even for a moment.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data``: written to a temporary file in the same directory
    created with ``mode``, synced, renamed over ``path``, and the directory synced (so the
    rename itself survives a crash)."""
    with _written(path, data, mode) as temporary:
        os.replace(temporary, path)
    _sync_directory(path.parent)


def create_exclusively(path: Path, data: bytes, mode: int = 0o644) -> bool:
    """Create ``path`` with ``data`` unless it exists: written and synced as
    :func:`write_atomically` does, then linked into place, which fails if another process
    created it first (never replaced). Whether this call created it."""
    with _written(path, data, mode) as temporary:
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(temporary)
    _sync_directory(path.parent)
    return True


@contextlib.contextmanager
def _written(path: Path, data: bytes, mode: int) -> Iterator[str]:
    """A synced temporary file holding ``data`` beside ``path``, removed if the body fails."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        yield temporary
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
