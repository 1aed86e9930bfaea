"""Storing foreign messages into one account, as IMAP APPEND would, resumably.

Each message is normalised (:func:`~pillarbox.imap.session.normalise_line_endings`, the one
change APPEND makes), parsed once and appended with its flags and internal date; the store
checks the quota. A message whose content is already in the target mailbox (same SHA-256, the
blob id) is skipped, so an interrupted import is simply run again. A message that cannot be
stored (empty, too large, a flag the store refuses) is counted with its reason and the run
goes on; running out of quota stops the run (:class:`ImportStopped`), saying how far it got.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pillarbox.blocking import run_sized
from pillarbox.errors import InvalidName, NotFound, QuotaExceeded, UserError
from pillarbox.imap.session import normalise_line_endings
from pillarbox.mail.parse import parse_message
from pillarbox.store.blobs import blob_id_of
from pillarbox.store.interface import Store
from pillarbox.store.types import Account, Mailbox, SpecialUse, canonical_flags
from pillarbox.transfer.folders import map_folder

#: Progress is reported every this many messages.
PROGRESS_EVERY = 1000


class ImportStopped(UserError):
    """The run could not go on (the account is full); what was imported stays."""


@dataclass
class Summary:
    """What a run did; ``failures`` lists ``(where, reason)`` of each message not stored."""

    imported: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    mailboxes: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def as_json(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "skipped": self.skipped,
            "failed": self.failed,
            "failures": [{"where": w, "reason": r} for w, r in self.failures],
            "mailboxes": self.mailboxes,
        }

    def lines(self) -> list[str]:
        out = [
            f"imported {self.imported}, skipped {self.skipped} (already present), "
            f"failed {self.failed}"
        ]
        out += [f"  {name}: {count} imported" for name, count in sorted(self.mailboxes.items())]
        out += [f"  failed: {where}: {reason}" for where, reason in self.failures]
        return out


def _valid_flags(flags: frozenset[str]) -> tuple[frozenset[str], list[str]]:
    """Flags the store accepts, and those dropped (``\\Recent``, malformed keywords)."""
    kept: set[str] = set()
    dropped: list[str] = []
    for flag in flags:
        try:
            canonical_flags(frozenset({flag}))
        except InvalidName:
            dropped.append(flag)
            continue
        kept.add(flag)
    return frozenset(kept), dropped


class Importer:
    """Imports into one account; ``progress`` receives a line now and then (stderr)."""

    def __init__(
        self,
        store: Store,
        account: Account,
        *,
        max_message_size: int,
        progress: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.store = store
        self.account = account
        self.max_message_size = max_message_size
        self.progress = progress
        self.summary = Summary()
        self._mailboxes: dict[str, Mailbox] = {}
        self._present: dict[int, set[str]] = {}
        self._specials: dict[SpecialUse, str] = {}
        self._seen = 0

    async def start(self) -> None:
        for mailbox in await self.store.list_mailboxes(self.account.id):
            self._mailboxes[mailbox.name] = mailbox
            if mailbox.special_use is not None:
                self._specials.setdefault(mailbox.special_use, mailbox.name)

    def target_name(self, levels: list[str], special_use: SpecialUse | None = None) -> str:
        """Our mailbox name for a foreign folder (see :func:`map_folder`)."""
        return map_folder(levels, self._specials, special_use)

    async def folder(
        self, levels: list[str], where: str, special_use: SpecialUse | None = None
    ) -> Mailbox | None:
        """Our mailbox for a foreign folder, created if absent; None (and a failure counted)
        if its name cannot be ours (too long, a control character…)."""
        try:
            return await self.mailbox(self.target_name(levels, special_use))
        except InvalidName as exc:
            self.summary.failures.append((where, f"folder skipped: {exc}"))
            return None

    async def mailbox(self, name: str) -> Mailbox:
        """The mailbox ``name``, created (and subscribed) if absent."""
        mailbox = self._mailboxes.get(name)
        if mailbox is None:
            try:
                mailbox = await self.store.get_mailbox(self.account.id, name)
            except NotFound:
                mailbox = await self.store.create_mailbox(self.account.id, name)
                await self.store.set_subscribed(self.account.id, mailbox.name, True)
            self._mailboxes[name] = mailbox
        return mailbox

    async def _present_in(self, mailbox: Mailbox) -> set[str]:
        present = self._present.get(mailbox.id)
        if present is None:
            records = await self.store.list_messages(mailbox.id)
            present = self._present[mailbox.id] = {record.blob_id for record in records}
        return present

    async def present_anywhere(self, raw: bytes) -> bool:
        """Whether the account holds this content in any mailbox (Gmail's All Mail)."""
        blob_id = blob_id_of(normalise_line_endings(raw))
        for mailbox in list(self._mailboxes.values()):
            if blob_id in await self._present_in(mailbox):
                return True
        return False

    def too_large(self, size: int, where: str) -> None:
        """Count a message over ``smtp.max_message_size`` (what SMTP and APPEND refuse too)."""
        self.summary.failures.append(
            (where, f"{size} bytes, larger than the limit of {self.max_message_size}")
        )

    async def add(
        self,
        mailbox: Mailbox,
        raw: bytes,
        flags: frozenset[str],
        internal_date: datetime | None,
        where: str,
    ) -> bool:
        """Store one message; False if it was skipped or failed (counted either way)."""
        self._seen += 1
        if self._seen % PROGRESS_EVERY == 0:
            self.progress(
                f"{self._seen} messages read: {self.summary.imported} imported, "
                f"{self.summary.skipped} skipped, {self.summary.failed} failed"
            )
        data = normalise_line_endings(raw)
        if not data.strip():
            self.summary.failures.append((where, "empty message"))
            return False
        if len(data) > self.max_message_size:
            self.too_large(len(data), where)
            return False
        present = await self._present_in(mailbox)
        blob_id = blob_id_of(data)
        if blob_id in present:
            self.summary.skipped += 1
            return False
        kept, dropped = _valid_flags(flags - {"\\Recent"})
        if dropped:
            self.progress(f"{where}: flags left out: {' '.join(sorted(dropped))}")
        info = await run_sized(len(data), parse_message, data)
        if internal_date is None:  # an mbox From line without a date: the Date header, else now
            internal_date = info.sent_date
        try:
            await self.store.append(mailbox.id, data, info, flags=kept, internal_date=internal_date)
        except QuotaExceeded as exc:
            raise ImportStopped(
                f"{self.account.address} is over quota ({exc}); stopped at {where} after "
                f"importing {self.summary.imported} message(s), skipping "
                f"{self.summary.skipped}; make room or raise the quota, then run the same "
                "import again to continue"
            ) from exc
        except (InvalidName, NotFound) as exc:
            self.summary.failures.append((where, str(exc)))
            return False
        present.add(blob_id)
        self.summary.imported += 1
        self.summary.mailboxes[mailbox.name] = self.summary.mailboxes.get(mailbox.name, 0) + 1
        return True
