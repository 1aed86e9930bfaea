"""Local destinations for fetched mail: a Maildir or an mbox file, each write durable.

``fetch`` deletes a message from the server only after :meth:`Destination.add` returned, so
``add`` returns only once the message is on stable storage: Maildir writes ``tmp/``, fsyncs,
renames into ``new/`` and fsyncs the directory (the qmail/Dovecot delivery protocol); mbox
appends under an exclusive ``flock`` and fsyncs.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import re
import socket
import time
from pathlib import Path
from typing import Protocol

from pillarbox.errors import UserError


class Destination(Protocol):
    def add(self, raw: bytes) -> None: ...


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Maildir:
    """A Maildir (``tmp``/``new``/``cur``), created 0700 if absent."""

    _counter = itertools.count()

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            for sub in ("tmp", "new", "cur"):
                (path / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise UserError(f"cannot use {path} as a Maildir: {exc.strerror}") from exc

    def _unique_name(self) -> str:
        # Maildir's unique name: seconds, then microseconds, pid and a counter, then host.
        now = time.time()
        seconds, micros = int(now), int((now % 1) * 1_000_000)
        host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
        return f"{seconds}.M{micros}P{os.getpid()}Q{next(self._counter)}.{host}"

    def add(self, raw: bytes) -> None:
        name = self._unique_name()
        tmp = self.path / "tmp" / name
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            out.write(raw)
            out.flush()
            os.fsync(out.fileno())
        os.rename(tmp, self.path / "new" / name)
        _fsync_directory(self.path / "new")


# mboxrd (the variant that round-trips): quote every "From " line, however many ">" precede it.
_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)


class Mbox:
    """An mboxrd file, appended to under ``flock`` (what mutt and Dovecot lock with too)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.parent.is_dir():
            raise UserError(f"cannot write {path}: {path.parent} is not a directory")

    def add(self, raw: bytes) -> None:
        text = raw.replace(b"\r\n", b"\n")
        if not text.endswith(b"\n"):
            text += b"\n"
        stamp = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime()).encode("ascii")
        entry = b"From MAILER-DAEMON " + stamp + b"\n" + _FROM_LINE.sub(rb">\1", text) + b"\n"
        with open(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as out:
            fcntl.flock(out.fileno(), fcntl.LOCK_EX)
            size = os.fstat(out.fileno()).st_size
            try:
                out.write(entry)
                out.flush()
                os.fsync(out.fileno())
            except OSError:
                os.ftruncate(out.fileno(), size)  # never leave half a message behind
                raise
