"""``pillarbox store migrate --to postgresql://…``: move a SQLite store into PostgreSQL.

Stop the server first: the copy reads a consistent snapshot of the SQLite file, and mail that
arrives after it would stay behind. The target must be empty (a new database, or a schema of
its own); its schema is created first. Everything is copied — domains, accounts with their
password hashes, aliases, mailboxes with UIDVALIDITY/UIDNEXT/HIGHESTMODSEQ and expunge history,
messages with flags and dates and byte-identical raw bytes, subscriptions, the queue, settings,
tokens and DKIM keys — in one transaction, then verified. Afterwards set ``store.url`` to the
new URL and start the nodes.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from pillarbox import retention
from pillarbox.errors import ConfigError, UserError
from pillarbox.store.blobs import BlobMode
from pillarbox.store.open import open_store
from pillarbox.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from pillarbox.cli.main import CliState


@click.group("store")
def store() -> None:
    """The store itself: move it to another backend, expunge old Junk and Trash."""


@store.command("expunge-old")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def expunge_old(state: CliState, as_json: bool) -> None:
    """Run the retention job once now: expunge the Junk and Trash mail older than
    [retention] (or each account's own days) allows, prune the calendar and contact
    sync history older than sync_history_days, and forget the expired Sieve duplicate
    ids and two-step login holds."""
    from pillarbox.cli.main import emit, run_store

    config = state.load()
    now = datetime.now(UTC)
    result = run_store(config, lambda s: retention.run_once(s, config, now))
    emit(
        {
            "accounts": result.accounts,
            **result.counts,
            "tombstones": result.tombstones,
            "duplicates": result.duplicates,
            "login_holds": result.login_holds,
        },
        as_json,
        [
            f"expunged {result.counts['junk']} from Junk and {result.counts['trash']} from "
            f"Trash in {result.accounts} accounts; pruned {result.tombstones} sync tombstones; "
            f"forgot {result.duplicates} Sieve duplicate ids and {result.login_holds} login holds"
        ],
    )


@store.command("migrate")
@click.option("--to", "target", required=True, help="Target store URL (postgresql://…).")
@click.pass_obj
def migrate(state: CliState, target: str) -> None:
    """Copy the configured SQLite store into an empty PostgreSQL store, then verify it."""
    from pillarbox.store.postgres import PostgresStore, importer

    config = state.load()
    source = open_store(config.store.url, config.data_dir, config.store)
    if not isinstance(source, SqliteStore):
        raise UserError(f"the configured store {config.store.url} is not a SQLite store")
    destination = open_store(target, config.data_dir, config.store)
    if not isinstance(destination, PostgresStore):
        raise ConfigError("--to", "the target must be a postgresql:// URL")

    async def prepare() -> None:
        # Opening brings both schemas to this Pillarbox's latest version.
        for each in (source, destination):
            await each.open()
            await each.close()

    asyncio.run(prepare())
    blob_dir = config.data_dir / "blobs" if source.blob_mode is BlobMode.FILES else None
    copied = importer.copy_sqlite_store(
        source.path,
        target,
        blob_dir=blob_dir,
        progress=lambda table, rows: click.echo(f"copied {rows:>8} rows of {table}"),
    )
    problems = importer.verify(source.path, target, blob_dir=blob_dir)
    if problems:
        for problem in problems:
            click.echo(f"verification: {problem}", err=True)
        raise UserError("the copy does not match the source; do not switch to it")
    messages = dict(copied.counts).get("messages", 0)
    click.echo(f"verified: {messages} messages byte-identical, UIDs and MODSEQs kept")
    click.echo(f'now set store.url = "{target}" in {config.source} and start the server')
