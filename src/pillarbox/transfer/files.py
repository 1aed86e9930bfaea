"""Importing mbox files and Maildir trees into an account, and exporting an account to them.

Layouts (the same for import and export, so ``import(export(x))`` restores ``x``):

- ``--mbox FILE`` with a mailbox named: one mbox file. Without one, a directory with one
  ``NAME.mbox`` file per mailbox, ``NAME`` being the Maildir++ folder name (``INBOX.mbox``,
  ``Archive.2024.mbox``; see :mod:`.folders`).
- ``--maildir DIR``: a Maildir++ tree (see :mod:`.maildir`).

``import gmail`` reads a Google Takeout mbox, filing each message by its Gmail labels
(:mod:`.takeout`).

Exports refuse to write over existing files; they read the store one message at a time.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pillarbox.blocking import run_blocking
from pillarbox.errors import UserError
from pillarbox.store.interface import Store
from pillarbox.store.types import INBOX, Account, Mailbox
from pillarbox.transfer import folders, maildir, mbox, takeout
from pillarbox.transfer.importer import Importer

MBOX_SUFFIX = ".mbox"


def mbox_files(
    directory: Path, prefix: tuple[str, ...] = (), *, bundle: bool = False
) -> list[tuple[list[str], Path]]:
    """The mbox files below a directory (by content: they open with ``From ``), each with the
    mailbox levels it stands for:

    - ``NAME.mbox`` (what ``export --mbox`` writes): ``NAME`` is a Maildir++ folder name
      (``Archive.2024.mbox`` → ``Archive/2024``);
    - any other file (Thunderbird, mutt, Evolution): its name is the folder's name, as is;
    - ``NAME.sbd/`` (Thunderbird): the subfolders of ``NAME``;
    - ``NAME.mbox/mbox`` (an Apple Mail export bundle): the folder ``NAME``, whose subfolders
      are the bundles inside it.

    Hidden files and Thunderbird's ``.msf`` indexes (which are not mbox) are left out."""
    found: list[tuple[list[str], Path]] = []
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            if entry.name.endswith(".sbd"):
                found += mbox_files(path, (*prefix, entry.name.removesuffix(".sbd")))
            elif entry.name.endswith(MBOX_SUFFIX):
                levels = (*prefix, entry.name.removesuffix(MBOX_SUFFIX))
                own = path / "mbox"
                if own.is_file() and not own.is_symlink() and _starts_like_mbox(own):
                    found.append((list(levels), own))
                found += mbox_files(path, levels, bundle=True)
            continue
        if bundle and entry.name == "mbox":
            continue  # the bundle's own messages, listed by the caller
        if not entry.is_file(follow_symlinks=False) or not _starts_like_mbox(path):
            continue
        if entry.name.endswith(MBOX_SUFFIX):
            levels_of = folders.mailbox_levels(entry.name.removesuffix(MBOX_SUFFIX))
        else:
            levels_of = [entry.name]
        found.append(([*prefix, *levels_of], path))
    return found


def _starts_like_mbox(path: Path) -> bool:
    with open(path, "rb") as stream:
        return mbox.is_mbox(stream.read(5))


def _open_for_reading(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")  # the caller closes it
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from exc


async def _each_message(
    importer: Importer,
    path: Path,
    handle: Callable[[mbox.MboxMessage, str], Awaitable[None]],
) -> None:
    """Every message of one mbox file to ``handle`` with where it was; one over the size limit
    is counted instead."""
    stream = await run_blocking(_open_for_reading, path)
    with stream:
        messages = mbox.read_mbox(stream, importer.max_message_size)
        while (message := await run_blocking(next, messages, None)) is not None:
            where = f"{path.name} message {message.number} (byte {message.offset})"
            if message.too_large:
                importer.too_large(message.too_large, where)
                continue
            await handle(message, where)


async def import_mbox_file(importer: Importer, path: Path, target: Mailbox) -> None:
    """Every message of one mbox file into ``target``."""
    importer.progress(f"{path} -> {target.name}")

    async def store(message: mbox.MboxMessage, where: str) -> None:
        if message.number == 1 and takeout.has_labels(message.raw):
            importer.progress(
                f"{path.name} is a Google Takeout export: `pillarbox import gmail` files its "
                "messages by their Gmail labels"
            )
        await importer.add(target, message.raw, message.flags, message.internal_date, where)

    await _each_message(importer, path, store)


async def import_mbox(importer: Importer, path: Path, mailbox: str | None) -> None:
    """An mbox file (into ``mailbox``, else INBOX) or a directory of them (each into the
    mailbox its name stands for)."""
    if await run_blocking(path.is_dir):
        if mailbox is not None:
            raise UserError("--mailbox applies to one mbox file, not to a directory of them")
        found = await run_blocking(mbox_files, path)
        if not found:
            raise UserError(f"{path} holds no mbox files")
        for levels, file in found:
            target = await importer.folder(levels, file.name)
            if target is not None:
                await import_mbox_file(importer, file, target)
        return
    if not await run_blocking(path.is_file):
        raise UserError(f"{path} is neither an mbox file nor a directory")
    target = await importer.mailbox(mailbox or INBOX)
    await import_mbox_file(importer, path, target)


async def import_gmail(importer: Importer, path: Path) -> None:
    """A Google Takeout mbox, or every mbox file below a directory, each message into the
    folders its Gmail labels stand for, with the flags they stand for (:mod:`.takeout`)."""
    if await run_blocking(path.is_dir):
        paths = [file for _, file in await run_blocking(mbox_files, path)]
        if not paths:
            raise UserError(f"{path} holds no mbox files")
    elif await run_blocking(path.is_file):
        paths = [path]
    else:
        raise UserError(f"{path} is neither an mbox file nor a directory")
    mailboxes: dict[takeout.Folder, Mailbox | None] = {}

    async def mailbox_of(folder: takeout.Folder) -> Mailbox | None:
        if folder not in mailboxes:  # a label our names refuse is reported once, not per message
            where = "Gmail label " + takeout.GMAIL_DELIMITER.join(folder.levels)
            mailboxes[folder] = await importer.folder(
                list(folder.levels), where, folder.special_use
            )
        return mailboxes[folder]

    async def store(message: mbox.MboxMessage, where: str) -> None:
        raw, labels = takeout.split_message(message.raw)
        place = takeout.placement(labels)
        targets = [box for f in place.folders if (box := await mailbox_of(f)) is not None]
        if not targets:  # its only label cannot be a folder here: kept in Archive, not lost
            archive = await mailbox_of(takeout.ARCHIVE)
            targets = [archive] if archive is not None else []
        for target in targets:
            await importer.add(target, raw, place.flags, message.internal_date, where)

    for file in paths:
        importer.progress(f"{file} -> folders by Gmail label")
        await _each_message(importer, file, store)


async def import_maildir(importer: Importer, root: Path) -> None:
    """Every folder of a Maildir++ tree, each into the mailbox its name stands for."""
    for folder in await run_blocking(maildir.read_folders, root):
        target = await importer.folder(folder.levels, folder.path.name)
        if target is None:
            continue
        importer.progress(f"{folder.path} -> {target.name}")
        for message in await run_blocking(maildir.list_messages, folder):
            where = f"{folder.name}/{message.path.parent.name}/{message.path.name}"
            try:
                raw = await run_blocking(message.path.read_bytes)
            except OSError as exc:  # vanished (a live Maildir) or unreadable
                importer.summary.failures.append((where, exc.strerror or str(exc)))
                continue
            await importer.add(target, raw, message.flags, message.internal_date, where)


# -- export ---------------------------------------------------------------------------------------


@dataclass
class ExportSummary:
    messages: int = 0
    mailboxes: int = 0


async def _mailboxes(store: Store, account: Account, name: str | None) -> list[Mailbox]:
    if name is not None:
        return [await store.get_mailbox(account.id, name)]
    return sorted(await store.list_mailboxes(account.id), key=lambda m: m.name)


def _make_directory(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {path}: {exc.strerror}") from exc


def _create_new(file: Path) -> BinaryIO:
    """A new file only the owner can read; never one that exists (a symlink included)."""
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise UserError(f"{file} exists; export into a new file or directory") from None
    except OSError as exc:
        raise UserError(f"cannot create {file}: {exc.strerror}") from exc
    return open(fd, "wb")


def _sync(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())


def _check_empty(root: Path) -> None:
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise UserError(f"{root} exists and is not an empty directory")


async def export_mbox(
    store: Store,
    account: Account,
    path: Path,
    mailbox: str | None,
    progress: Callable[[str], None],
) -> ExportSummary:
    """One mailbox to the mbox file ``path``, or every mailbox into the directory ``path``."""
    summary = ExportSummary()
    boxes = await _mailboxes(store, account, mailbox)
    if mailbox is None:
        await run_blocking(_make_directory, path)
    for box in boxes:
        file = path if mailbox is not None else path / (folders.file_name(box.name) + MBOX_SUFFIX)
        out = await run_blocking(_create_new, file)
        progress(f"{box.name} -> {file}")
        with out:
            records = await store.list_messages(box.id)
            keywords = sorted({f for r in records for f in r.flags if not f.startswith("\\")})
            first = mbox.imapbase(box.uidvalidity, box.uidnext, keywords) if keywords else b""
            for record in records:
                raw = await store.read_blob(record.blob_id)
                entry = mbox.mbox_entry(raw, record.flags, record.internal_date, first)
                first = b""
                await run_blocking(out.write, entry)
                summary.messages += 1
            await run_blocking(_sync, out)
        summary.mailboxes += 1
    return summary


async def export_maildir(
    store: Store,
    account: Account,
    root: Path,
    mailbox: str | None,
    progress: Callable[[str], None],
) -> ExportSummary:
    """Mailboxes (one, or all) into the Maildir++ tree ``root`` (which must be new or empty)."""
    await run_blocking(_check_empty, root)
    summary = ExportSummary()
    writer = maildir.MaildirWriter(root)
    await run_blocking(writer.ensure, INBOX)
    for box in await _mailboxes(store, account, mailbox):
        progress(f"{box.name} -> {root}")
        await run_blocking(writer.ensure, box.name)
        for record in await store.list_messages(box.id):
            raw = await store.read_blob(record.blob_id)
            await run_blocking(writer.add, box.name, raw, record.flags, record.internal_date)
            summary.messages += 1
        summary.mailboxes += 1
    await run_blocking(writer.close)
    if writer.dropped_keywords:
        progress(
            "keywords left out (Maildir allows 26 per folder): "
            + " ".join(sorted(writer.dropped_keywords))
        )
    return summary
