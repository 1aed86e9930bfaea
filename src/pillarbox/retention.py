"""The retention job: mail kept in Junk and Trash longer than ``[retention]`` allows is
expunged (Dovecot's ``autoexpunge``, Stalwart's trash and junk retention), the tombstones
of deleted calendar objects and contacts older than ``[calendars]`` and ``[contacts]
sync_history_days`` are pruned (:func:`prune_sync_history`), and the expired ids of the Sieve
"duplicate" test and the expired messages two-step logins held (``pillarbox.web.loginhold``)
are forgotten. docs/retention.md.

Implementation notes:

- **Age is the save date** (RFC 8514 §3: when the message entered that mailbox; a move gives
  it a new one), never its Date field or INTERNALDATE: a year-old message deleted today stays
  its full time in Trash. The mailboxes are found by special use (RFC 6154 ``\\Junk``,
  ``\\Trash``), so a renamed Trash is still the Trash.
- **Per account**: the account's own days (:attr:`AccountSettings.junk_days`,
  ``trash_days``; ``pillarbox user retention``) before the server's; 0 keeps mail until
  the user deletes it.
- **The normal expunge path**: each batch of at most ``batch_size`` old messages is flagged
  ``\\Deleted`` and expunged by UID (UID EXPUNGE's two writes), so IMAP sessions (IDLE,
  NOTIFY, QRESYNC's VANISHED) and the webmail see an expunge like any other, the quota
  usage drops and blobs no other mailbox holds are freed. A message whose ``\\Deleted`` a
  client took back between the two writes stays (it is found again next run).
- **Sync history** (RFC 6578): a tombstone tells a syncing client what was deleted since its
  token; once pruned, the store refuses tokens older than the last pruned change (§3.7
  ``valid-sync-token``) and the client syncs in full, so nothing deleted is missed.
- **Sieve duplicate ids** (RFC 7352 §3.1) are forgotten once expired: a delivery only sweeps
  its own account's, so an account whose scripts record nothing new would keep its expired
  ids for good without this sweep.
- **Login holds** (a user's unsent message, sealed, for five minutes between a login's two
  steps) go at the next hold of any account too; this sweep bounds how long one outlives its
  login when nobody logs in after (an hour by default).
- **Time is an argument** (:func:`expunge_old`'s ``now``); the server's task runs it every
  ``interval`` seconds with the clock. Every node of a cluster runs it: the work is
  idempotent (what one node expunged the other no longer finds), only the reads repeat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pillarbox.config import Config, RetentionSection
from pillarbox.errors import NotFound, UserError
from pillarbox.observability.log import Log
from pillarbox.observability.metrics import Metrics
from pillarbox.periodic import run_periodically
from pillarbox.store.interface import Store
from pillarbox.store.types import AccountSettings, FlagOp, SpecialUse

if TYPE_CHECKING:
    from pillarbox.services import Services

_log = Log("retention")
_DELETED = frozenset({"\\Deleted"})
#: The mailboxes the job empties, by special use, with their metrics label.
RETAINED = {SpecialUse.JUNK: "junk", SpecialUse.TRASH: "trash"}


def retention_days(
    section: RetentionSection, settings: AccountSettings, special_use: SpecialUse
) -> int:
    """Days mail stays in the account's mailbox of ``special_use`` (Junk or Trash); 0: until
    deleted."""
    if special_use is SpecialUse.JUNK:
        own, default = settings.junk_days, section.junk_days
    else:
        own, default = settings.trash_days, section.trash_days
    return default if own is None else own


def described(section: RetentionSection, settings: AccountSettings, special_use: SpecialUse) -> str:
    """The days in force for the account's Junk or Trash and where they come from, as
    ``pillarbox user retention`` and the admin's account list show them."""
    days = retention_days(section, settings, special_use)
    own = settings.junk_days if special_use is SpecialUse.JUNK else settings.trash_days
    source = "default" if own is None else "own"
    return f"{f'{days} days' if days else 'kept until deleted'} ({source})"


def checked_days(section: RetentionSection, days: int | None, what: str) -> int | None:
    """An account's own ``days`` for its ``what`` ("Junk", "Trash") as given, None (the
    server's) included; ``UserError`` beyond 0–``max_days`` (the webmail, the API and the
    CLI take the same bounds, so no account's setting breaks the job's date arithmetic)."""
    if days is not None and not 0 <= days <= section.max_days:
        raise UserError(
            f"days for {what} must be 0 (keep until deleted) to {section.max_days}, got {days}"
        )
    return days


def cutoff(now: datetime, days: int) -> datetime | None:
    """What was saved (or deleted) before this goes; None when ``days`` keeps it."""
    return now - timedelta(days=days) if days > 0 else None


@dataclass
class Expunged:
    """What one run removed: messages by mailbox label (``junk``, ``trash``), the sync
    tombstones pruned, the expired Sieve duplicate ids and login holds forgotten
    (:func:`run_once`)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RETAINED.values(), 0))
    accounts: int = 0
    tombstones: int = 0
    duplicates: int = 0
    login_holds: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


async def expunge_old(
    store: Store, section: RetentionSection, now: datetime, *, metrics: Metrics | None = None
) -> Expunged:
    """One run over every account (see the module notes)."""
    result = Expunged()
    for account in await store.list_accounts():
        try:
            removed = await _expunge_account(store, section, account.id, now, metrics)
        except NotFound:
            continue  # the account (or a mailbox) went meanwhile
        if removed:
            result.accounts += 1
            _log.info("expunged old mail", account=account.address, **removed)
            for label, count in removed.items():
                result.counts[label] += count
    return result


async def _expunge_account(
    store: Store,
    section: RetentionSection,
    account_id: int,
    now: datetime,
    metrics: Metrics | None,
) -> dict[str, int]:
    settings: AccountSettings | None = None
    removed: dict[str, int] = {}
    for mailbox in await store.list_mailboxes(account_id):
        if mailbox.special_use not in RETAINED:
            continue
        if settings is None:
            settings = await store.get_settings(account_id)
        before = cutoff(now, retention_days(section, settings, mailbox.special_use))
        if before is None:
            continue
        label = RETAINED[mailbox.special_use]
        while uids := await store.saved_before(mailbox.id, before, section.batch_size):
            await store.store_flags(mailbox.id, uids, FlagOp.ADD, _DELETED)
            gone = await store.expunge(mailbox.id, uids)
            if gone:
                removed[label] = removed.get(label, 0) + len(gone)
                if metrics is not None:
                    metrics.retention_expunged.labels(label).inc(len(gone))
            if len(gone) < section.batch_size:
                break  # the last batch, or one a client kept (no progress to repeat)
    return removed


async def prune_sync_history(store: Store, config: Config, now: datetime) -> int:
    """Remove the calendar and contact tombstones older than their ``sync_history_days`` (0
    keeps them); how many went."""
    return await store.prune_tombstones(
        calendars_before=cutoff(now, config.calendars.sync_history_days),
        contacts_before=cutoff(now, config.contacts.sync_history_days),
    )


async def run_once(
    store: Store, config: Config, now: datetime, *, metrics: Metrics | None = None
) -> Expunged:
    """One whole run, :func:`expunge_old`, :func:`prune_sync_history`, then the expired
    Sieve duplicate ids and login holds: what the server's task does each interval and
    ``pillarbox store expunge-old`` does now."""
    result = await expunge_old(store, config.retention, now, metrics=metrics)
    result.tombstones = await prune_sync_history(store, config, now)
    result.duplicates = await store.prune_sieve_duplicates(now)
    result.login_holds = await store.prune_login_messages(now)
    _log.info(
        "retention run",
        expunged=result.total,
        accounts=result.accounts,
        tombstones=result.tombstones,
        sieve_duplicates=result.duplicates,
        login_holds=result.login_holds,
        **result.counts,
    )
    return result


async def run(services: Services) -> None:
    """The background task: :func:`run_once` every ``[retention] interval`` seconds."""

    async def once(boundary: int) -> None:
        await run_once(services.store, services.config, datetime.now(UTC), metrics=services.metrics)

    await run_periodically(services, services.config.retention.interval, once, _log)
