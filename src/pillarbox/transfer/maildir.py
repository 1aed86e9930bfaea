"""Maildir++ trees (Courier, Dovecot ``LAYOUT=maildir++``), read and written.

A tree is the INBOX (``cur/``, ``new/``, ``tmp/`` at the top) and one directory per other
folder, ``.Name.Sub`` (see :mod:`.folders` for the name encoding). A message is one file; its
name ends in ``:2,`` and the flag letters (``D`` draft, ``F`` flagged, ``P`` passed, ``R``
replied, ``S`` seen, ``T`` trashed, and ``a``–``z`` for the keywords listed in the folder's
``dovecot-keywords`` file). The internal date is the file's mtime (what Dovecot reads and
sets). ``tmp/`` holds deliveries in progress and is never read.

Written trees have the same shape: files in ``cur/`` with their flags, mtime set to the
internal date, LF line endings (what Dovecot and mutt write), ``maildirfolder`` marker files
and a ``dovecot-keywords`` file where keywords are used.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pillarbox.errors import UserError
from pillarbox.store.types import DELIMITER, INBOX
from pillarbox.transfer import folders

_LETTER_FLAGS = {
    "D": "\\Draft",
    "F": "\\Flagged",
    "P": "$Forwarded",
    "R": "\\Answered",
    "S": "\\Seen",
    "T": "\\Deleted",
}
_FLAG_LETTERS = {flag: letter for letter, flag in _LETTER_FLAGS.items()}
KEYWORDS_FILE = "dovecot-keywords"
#: Dovecot's limit: one lower-case letter per keyword.
MAX_KEYWORDS = 26


@dataclass(frozen=True, slots=True)
class MaildirFolder:
    """One folder of a tree: its name as hierarchy levels (``[]`` for the INBOX) and place."""

    levels: list[str]
    path: Path

    @property
    def name(self) -> str:
        return DELIMITER.join(self.levels) if self.levels else INBOX


@dataclass(frozen=True, slots=True)
class MaildirMessage:
    path: Path
    flags: frozenset[str]
    internal_date: datetime


def is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() or (path / "new").is_dir()


def read_folders(root: Path) -> list[MaildirFolder]:
    """The INBOX (if ``root`` is a Maildir itself) and every ``.Folder`` below it."""
    if not root.is_dir():
        raise UserError(f"{root} is not a directory")
    found: list[MaildirFolder] = []
    if is_maildir(root):
        found.append(MaildirFolder([], root))
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if (
            entry.name.startswith(".")
            and entry.name not in (".", "..")
            and len(entry.name) > 1
            and entry.is_dir(follow_symlinks=False)
            and is_maildir(Path(entry.path))
        ):
            found.append(MaildirFolder(folders.mailbox_levels(entry.name[1:]), Path(entry.path)))
    if not found:
        raise UserError(f"{root} is not a Maildir (no cur/ or new/, no .Folder directories)")
    return found


def read_keywords(folder: Path) -> dict[str, str]:
    """A folder's ``dovecot-keywords`` (``index keyword`` per line) as letter → keyword."""
    try:
        text = (folder / KEYWORDS_FILE).read_text("utf-8", errors="replace")
    except OSError:
        return {}
    letters: dict[str, str] = {}
    for line in text.splitlines():
        index, _, keyword = line.strip().partition(" ")
        if index.isdigit() and int(index) < MAX_KEYWORDS and keyword:
            letters[chr(ord("a") + int(index))] = keyword
    return letters


def flags_of(name: str, keywords: dict[str, str]) -> frozenset[str]:
    """The flags of a message file name's info part (``…:2,FRS``; ``!`` on systems without
    ``:`` in file names)."""
    for separator in (":2,", "!2,"):
        _, found, info = name.rpartition(separator)
        if found:
            break
    else:
        return frozenset()
    flags: set[str] = set()
    for letter in info:
        if letter in _LETTER_FLAGS:
            flags.add(_LETTER_FLAGS[letter])
        elif letter in keywords:
            flags.add(keywords[letter])
    return frozenset(flags)


def list_messages(folder: MaildirFolder) -> list[MaildirMessage]:
    """The folder's messages (``new/`` and ``cur/``), oldest first."""
    return list(read_messages(folder))


def read_messages(folder: MaildirFolder) -> Iterator[MaildirMessage]:
    """The folder's messages (``new/`` and ``cur/``), oldest first."""
    keywords = read_keywords(folder.path)
    entries: list[tuple[float, str, Path]] = []
    for sub in ("new", "cur"):
        directory = folder.path / sub
        if not directory.is_dir():
            continue
        for entry in os.scandir(directory):
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            entries.append(
                (entry.stat(follow_symlinks=False).st_mtime, entry.name, Path(entry.path))
            )
    entries.sort()
    for mtime, name, path in entries:
        yield MaildirMessage(
            path, flags_of(name, keywords), datetime.fromtimestamp(int(mtime), UTC)
        )


# -- writing ------------------------------------------------------------------------------------


@dataclass
class _OutFolder:
    path: Path
    keywords: list[str] = field(default_factory=list)


class MaildirWriter:
    """Writes a Maildir++ tree; call :meth:`close` at the end (it writes the keyword files)."""

    _counter = itertools.count()

    def __init__(self, root: Path) -> None:
        self.root = root
        self._folders: dict[str, _OutFolder] = {}
        self._host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
        #: Keywords left out because a folder had more than Dovecot's 26.
        self.dropped_keywords: set[str] = set()

    def _folder(self, mailbox: str) -> _OutFolder:
        out = self._folders.get(mailbox)
        if out is not None:
            return out
        path = self.root if mailbox == INBOX else self.root / ("." + folders.file_name(mailbox))
        try:
            for sub in ("tmp", "new", "cur"):
                (path / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
            if mailbox != INBOX:
                (path / "maildirfolder").touch(mode=0o600)
        except OSError as exc:
            raise UserError(f"cannot write the Maildir {path}: {exc.strerror}") from exc
        out = self._folders[mailbox] = _OutFolder(path)
        return out

    def ensure(self, mailbox: str) -> None:
        """Create a folder even if no message goes into it."""
        self._folder(mailbox)

    def add(self, mailbox: str, raw: bytes, flags: frozenset[str], internal_date: datetime) -> Path:
        folder = self._folder(mailbox)
        letters = sorted(_FLAG_LETTERS[f] for f in flags if f in _FLAG_LETTERS)
        for flag in sorted(f for f in flags if f not in _FLAG_LETTERS and not f.startswith("\\")):
            if flag not in folder.keywords:
                if len(folder.keywords) >= MAX_KEYWORDS:
                    self.dropped_keywords.add(flag)
                    continue
                folder.keywords.append(flag)
            letters.append(chr(ord("a") + folder.keywords.index(flag)))
        text = raw.replace(b"\r\n", b"\n")
        stamp = internal_date.timestamp()
        base = (
            f"{int(stamp)}.M{int((stamp % 1) * 1_000_000)}P{os.getpid()}"
            f"Q{next(self._counter)}.{self._host},S={len(text)}"
        )
        name = f"{base}:2,{''.join(letters)}"
        tmp = folder.path / "tmp" / base
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            out.write(text)
        os.utime(tmp, (stamp, stamp))
        final = folder.path / "cur" / name
        os.rename(tmp, final)
        return final

    def close(self) -> None:
        for folder in self._folders.values():
            if folder.keywords:
                (folder.path / KEYWORDS_FILE).write_text(
                    "".join(f"{i} {k}\n" for i, k in enumerate(folder.keywords)), "utf-8"
                )
