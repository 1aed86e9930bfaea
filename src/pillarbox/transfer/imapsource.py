"""Copying a remote IMAP account (Dovecot, Gmail, Exchange, another Pillarbox) into an account.

Every selectable folder is copied with its messages' flags and internal dates (``FETCH FLAGS
INTERNALDATE BODY.PEEK[]``, so nothing is marked read on the source). Folders are filed by
their RFC 6154 SPECIAL-USE attribute first (Gmail's ``[Gmail]/Sent Mail`` is ``\\Sent``), then
by name (:mod:`.folders`). Two kinds of folder are views, not places: ``\\Flagged`` (Gmail's
Starred) and Gmail's ``\\Important`` are skipped, since their messages live elsewhere and the
flag travels with them. ``\\All`` (Gmail's All Mail, where every message is) is copied last,
into Archive, and only what the account does not hold yet in any mailbox: what Gmail shows as
archived (no label) arrives, nothing is doubled.

Resuming: per remote folder, the UIDVALIDITY and the highest UID copied are kept in a small
JSON file under the data directory (``imports/<hash>.json``, named by a hash of server, user and
account, never by their text), saved after every batch. A re-run asks only for UIDs above it
(RFC 9051 §2.3.1.1: UIDs grow); a new UIDVALIDITY starts the folder over, and the content check
of :class:`~.importer.Importer` skips what is there already.

Messages are fetched in batches bounded by count and total size, read first with
``RFC822.SIZE``: a 10 GB account is never in memory at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pillarbox.atomicfile import write_atomically
from pillarbox.blocking import run_blocking
from pillarbox.mailclient.imap import FullMessage, ImapSession, Listed, open_imap
from pillarbox.mailclient.transport import (
    ConnectionFailed,
    Endpoint,
    ServerRefused,
    translated_errors,
)
from pillarbox.store.types import INBOX, SpecialUse
from pillarbox.transfer.importer import Importer, ImportStopped

#: RFC 6154 §2 attributes of the folders we have one of.
SPECIAL_ATTRIBUTES = {
    "\\sent": SpecialUse.SENT,
    "\\drafts": SpecialUse.DRAFTS,
    "\\trash": SpecialUse.TRASH,
    "\\junk": SpecialUse.JUNK,
    "\\archive": SpecialUse.ARCHIVE,
}
#: Views whose messages are all in other folders (Gmail's Starred and Important).
VIEW_ATTRIBUTES = frozenset({"\\flagged", "\\important"})
UNSELECTABLE = frozenset({"\\noselect", "\\nonexistent"})
ALL_MAIL = "\\all"
#: A batch is at most this many messages …
BATCH_MESSAGES = 100
#: … and at most this many bytes (a larger message is a batch of its own).
BATCH_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Remote:
    endpoint: Endpoint
    user: str
    password: str
    context: ssl.SSLContext
    timeout: float = 60.0


class ImportState:
    """What was copied from one remote account into one account: per remote folder, its
    UIDVALIDITY and the highest UID done."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._folders: dict[str, dict[str, int]] = {}
        try:
            data: Any = json.loads(path.read_text("utf-8"))
            folders = data.get("folders", {}) if isinstance(data, dict) else {}
            self._folders = {
                str(name): {"uidvalidity": int(v["uidvalidity"]), "uid": int(v["uid"])}
                for name, v in folders.items()
            }
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self._folders = {}  # unreadable: start over; the content check prevents doubles

    @staticmethod
    def path_for(data_dir: Path, remote: Remote, account: str) -> Path:
        key = f"{remote.endpoint.host}:{remote.endpoint.port}\0{remote.user}\0{account}"
        return data_dir / "imports" / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")

    def done_up_to(self, folder: str, uidvalidity: int) -> int:
        known = self._folders.get(folder)
        if known is None or known["uidvalidity"] != uidvalidity:
            return 0
        return known["uid"]

    def record(self, folder: str, uidvalidity: int, uid: int) -> None:
        self._folders[folder] = {"uidvalidity": uidvalidity, "uid": uid}
        data = json.dumps({"version": 1, "folders": self._folders}, indent=1, sort_keys=True)
        write_atomically(self.path, data.encode(), mode=0o600)


class _Connection:
    """The blocking IMAP session, every call translated into our errors (run off the loop)."""

    def __init__(self, remote: Remote) -> None:
        self.remote = remote
        self._stack = contextlib.ExitStack()
        self.session: ImapSession | None = None

    def open(self) -> None:
        self.session = self._stack.enter_context(
            open_imap(
                self.remote.endpoint,
                self.remote.user,
                self.remote.password,
                context=self.remote.context,
                timeout=self.remote.timeout,
            )
        )

    def close(self, exc: BaseException | None) -> None:
        if exc is None:
            self._stack.close()
        else:
            self._stack.__exit__(type(exc), exc, exc.__traceback__)

    def _session(self) -> ImapSession:
        assert self.session is not None
        return self.session

    def listing(self) -> tuple[str, list[Listed]]:
        """The personal namespace's prefix and every folder."""
        with translated_errors(f"IMAP server {self.remote.endpoint}"):
            session = self._session()
            return session.personal_prefix(), session.listing()

    def folder_state(self, folder: str) -> tuple[int, int]:
        with translated_errors(f"IMAP server {self.remote.endpoint}"):
            return self._session().folder_state(folder)

    def sizes_after(self, folder: str, uid: int) -> dict[int, int]:
        with translated_errors(f"IMAP server {self.remote.endpoint}"):
            return self._session().sizes_after(folder, uid)

    def full_messages(self, folder: str, uids: Sequence[int]) -> list[FullMessage]:
        with translated_errors(f"IMAP server {self.remote.endpoint}"):
            return self._session().full_messages(folder, uids)


def _batches(sizes: dict[int, int]) -> list[list[int]]:
    batches: list[list[int]] = []
    current: list[int] = []
    total = 0
    for uid in sorted(sizes):
        if current and (len(current) >= BATCH_MESSAGES or total + sizes[uid] > BATCH_BYTES):
            batches.append(current)
            current, total = [], 0
        current.append(uid)
        total += sizes[uid]
    if current:
        batches.append(current)
    return batches


def _plan(listed: list[Listed], only: Sequence[str]) -> list[Listed]:
    """The folders to copy, in order: all but views and unselectable ones (or just ``only``),
    ``\\All`` last."""
    wanted = {name.lower() for name in only}
    chosen = [
        folder
        for folder in listed
        if not ({a.lower() for a in folder.attributes} & (UNSELECTABLE | VIEW_ATTRIBUTES))
        and (not wanted or folder.name.lower() in wanted)
    ]
    return sorted(chosen, key=lambda f: ALL_MAIL in {a.lower() for a in f.attributes})


async def import_imap(
    importer: Importer, remote: Remote, state: ImportState, only: Sequence[str] = ()
) -> None:
    """Copy the remote account's folders (all, or those named in ``only``) into the account."""
    connection = _Connection(remote)
    await run_blocking(connection.open)  # a refused login or bad certificate: nothing began
    try:
        await _copy(importer, connection, state, only)
    except (ConnectionFailed, ServerRefused) as exc:
        with contextlib.suppress(ConnectionFailed, ServerRefused):
            await run_blocking(connection.close, exc)
        summary = importer.summary
        raise ImportStopped(
            f"{exc}; stopped after importing {summary.imported} message(s), skipping "
            f"{summary.skipped}; run the same command again to continue"
        ) from exc
    except BaseException as exc:
        await run_blocking(connection.close, exc)
        raise
    await run_blocking(connection.close, None)


async def _copy(
    importer: Importer, connection: _Connection, state: ImportState, only: Sequence[str]
) -> None:
    prefix, listed = await run_blocking(connection.listing)
    plan = _plan(listed, only)
    present = {f.name.lower() for f in plan}
    for name in only:
        if name.lower() not in present:
            importer.summary.failures.append((name, "no such folder on the server"))
    for folder in plan:
        attributes = {a.lower() for a in folder.attributes}
        everything = ALL_MAIL in attributes
        special = SpecialUse.ARCHIVE if everything else None
        for attribute, use in SPECIAL_ATTRIBUTES.items():
            if attribute in attributes:
                special = use
        name = folder.name
        if prefix and name.upper() != INBOX and name.startswith(prefix):
            name = name[len(prefix) :]  # Courier, Cyrus: "INBOX.Sent" is the folder Sent
        levels = name.split(folder.delimiter) if folder.delimiter else [name]
        target = await importer.folder(levels, folder.name, special)
        if target is None:
            continue
        uidvalidity, uidnext = await run_blocking(connection.folder_state, folder.name)
        done = state.done_up_to(folder.name, uidvalidity)
        if uidnext - 1 <= done:
            importer.progress(f"{folder.name}: nothing new")
            continue
        sizes = await run_blocking(connection.sizes_after, folder.name, done)
        importer.progress(f"{folder.name} -> {target.name}: {len(sizes)} message(s) to copy")
        for batch in _batches(sizes):
            for message in await run_blocking(connection.full_messages, folder.name, batch):
                if everything and await importer.present_anywhere(message.raw):
                    importer.summary.skipped += 1
                    continue
                await importer.add(
                    target,
                    message.raw,
                    message.flags,
                    message.internal_date,
                    f"{folder.name} UID {message.uid}",
                )
            await run_blocking(state.record, folder.name, uidvalidity, batch[-1])
