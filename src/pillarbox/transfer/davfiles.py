"""An account's calendars (.ics) and address book (.vcf) written to files: ``pillarbox
export --ics`` and ``--vcard``, the copies an administrator takes or moves to another
account (``pillarbox import ics`` and ``import vcard`` read them back).

Layouts, as ``--mbox`` has them:

- ``--ics FILE --calendar NAME``: that calendar as one .ics file. Without ``--calendar``, a
  directory (made when missing) with one ``NAME.ics`` per calendar: each imports back with
  ``import ics DIR/NAME.ics --calendar NAME``, titled as it was (its X-WR-CALNAME).
- ``--vcard FILE``: every contact as one .vcf file (each card as kept, a contact made in the
  webmail as vCard 4.0).

Implementation notes:

- **The web's own files**: the .ics is the Calendar page's Export
  (:class:`pillarbox.transfer.ics.IcsExport`: streamed a page of objects at a time, each
  VTIMEZONE once), the .vcf the Contacts page's (:func:`pillarbox.transfer.vcf.
  exported_vcards`), without the web app loaded; an export imported into a fresh account
  gives the same objects and contacts back.
- **Whole or not at all**: each file is written beside its name and put in place when
  complete (:class:`pillarbox.atomicfile.StagedFile`), readable by its owner only, never
  over a file there (a second export into the same place is refused, as ``--mbox`` is).
- **Beside a running server**: the store is read as the server's own requests read it (one
  more client of SQLite's WAL, or of PostgreSQL). A calendar deleted while it is written
  leaves no file (:class:`pillarbox.errors.BrokenOff`); in a directory export, one
  deleted before its turn is left out and named.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from pillarbox.atomicfile import StagedFile
from pillarbox.blocking import run_blocking
from pillarbox.errors import BrokenOff, NotFound, UserError
from pillarbox.services import Services
from pillarbox.store.types import Account, Calendar
from pillarbox.transfer.ics import IcsExport
from pillarbox.transfer.vcf import exported_vcards

ICS_SUFFIX = ".ics"


@dataclass(slots=True)
class CalendarsExported:
    """The files written (path, objects in it), and the calendars deleted before their
    turn (a directory export)."""

    files: list[tuple[Path, int]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def objects(self) -> int:
        return sum(count for _, count in self.files)


async def export_calendars(
    services: Services,
    account: Account,
    path: Path,
    calendar: str | None,
    progress: Callable[[str], None],
) -> CalendarsExported:
    """The calendar ``calendar`` to the file ``path``, or every calendar of the account
    into the directory ``path`` (see the layouts). ``NotFound`` for a calendar named that
    the account lacks, ``UserError`` for a file there already or one that cannot be made,
    or a calendar deleted while it was written."""
    done = CalendarsExported()
    # The store's listing, once: an export writes nothing into the account (the webmail's
    # listing would make the default calendar of an account without one).
    calendars = await services.store.list_calendars(account.id)
    if calendar is not None:
        missing = NotFound(f"no calendar named {calendar!r}")
        named = next((found for found in calendars if found.name == calendar), None)
        if named is None:
            raise missing
        try:
            done.files.append((path, await _calendar_file(services, account, named, path)))
        except _DeletedBeforeItsTurn:
            raise missing from None
        return done
    await run_blocking(_directory, path)
    for found in calendars:
        file = path / (found.name + ICS_SUFFIX)
        progress(f"{found.name} -> {file}")
        try:
            done.files.append((file, await _calendar_file(services, account, found, file)))
        except _DeletedBeforeItsTurn:  # no calendar, no file
            done.deleted.append(found.name)
    return done


class _DeletedBeforeItsTurn(Exception):
    """A listed calendar found gone before any of it was written."""


async def _calendar_file(
    services: Services, account: Account, calendar: Calendar, path: Path
) -> int:
    """The calendar written to the new file ``path``; how many objects it holds."""
    export = IcsExport.of(services, account, calendar)
    try:
        await _write_new(path, export.chunks())
    except BrokenOff as exc:
        if export.objects == 0:
            raise _DeletedBeforeItsTurn from None
        raise UserError(f"{exc}; nothing written to {path}") from None
    return export.objects


async def export_contacts(services: Services, account: Account, path: Path) -> int:
    """Every contact of the account to the new file ``path``; how many."""
    data, count = await exported_vcards(services, account)

    async def once() -> AsyncIterator[bytes]:
        yield data

    await _write_new(path, once())
    return count


async def _write_new(path: Path, chunks: AsyncIterator[bytes]) -> None:
    """``chunks`` as the file ``path``, put in place whole once the last is written (only
    its owner may read it: a calendar, an address book); ``UserError`` when a file is there
    (never replaced) or cannot be made there."""
    exists = f"{path} exists; export into a new file or directory"
    if await run_blocking(os.path.lexists, path):
        raise UserError(exists)
    try:
        staged = await run_blocking(StagedFile, path, 0o600)
    except OSError as exc:
        raise UserError(f"cannot create {path}: {exc.strerror}") from exc
    try:
        async for chunk in chunks:
            await run_blocking(staged.write, chunk)
        if not await run_blocking(staged.create):
            raise UserError(exists)  # made meanwhile, by another
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from exc
    finally:
        await run_blocking(staged.discard)


def _directory(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {path}: {exc.strerror}") from exc
