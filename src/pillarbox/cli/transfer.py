"""``pillarbox import …`` and ``pillarbox export …``: an account's mail in and out; ``pillarbox
backup`` and ``restore``: the whole site (see :mod:`pillarbox.transfer.backup`).

``pillarbox import ics`` and ``import vcard`` run the imports the Calendar and Contacts pages
run (:mod:`pillarbox.transfer.ics`, :mod:`pillarbox.transfer.vcf`); ``export --ics`` and
``--vcard`` write their exports (:mod:`pillarbox.transfer.davfiles`). None loads the web app.

Progress goes to standard error, the summary to standard output (``--json``: one object).
Exit 0 when every message (event, card) was imported or was there already; 1 when some failed
or were skipped (each named in the summary) or the run stopped (quota: the message says how
far it got; run the same command again to continue); 2 for usage errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from pillarbox import provisioning
from pillarbox.errors import ConfigError, UserError
from pillarbox.store.interface import Store
from pillarbox.store.open import open_store

if TYPE_CHECKING:
    from pillarbox.cli.main import CliState
    from pillarbox.config import Config
    from pillarbox.services import Services
    from pillarbox.store.types import Account
    from pillarbox.transfer import files
    from pillarbox.transfer.importer import Importer

T = TypeVar("T")


def _progress(line: str) -> None:
    click.echo(line, err=True)


def run_import(
    config: Config,
    address: str,
    as_json: bool,
    work: Callable[[Importer], Awaitable[None]],
) -> None:
    """Open the store, run ``work`` with an importer for ``address``, print the summary; exit
    1 if anything failed or the run stopped."""
    # Imported here: the mail import machinery (the IMAP session's parsing) is a fifth of a
    # second that the calendar and contact commands do not need.
    from pillarbox.cli.main import emit
    from pillarbox.transfer.importer import Importer, ImportStopped

    async def go() -> tuple[Importer, ImportStopped | None]:
        store = open_store(config.store.url, config.data_dir, config.store)
        await store.open()
        try:
            account = await provisioning.get_account(store, address)
            importer = Importer(
                store,
                account,
                max_message_size=config.smtp.max_message_size,
                progress=_progress,
            )
            await importer.start()
            try:
                await work(importer)
            except ImportStopped as exc:
                return importer, exc
            return importer, None
        finally:
            await store.close()

    importer, stopped = asyncio.run(go())
    summary = importer.summary
    data = summary.as_json()
    if stopped is not None:
        data["stopped"] = str(stopped)
    emit(data, as_json, summary.lines())
    if stopped is not None:
        raise stopped
    if summary.failed:
        raise UserError(f"{summary.failed} message(s) could not be imported (listed above)")


@click.group("import")
def import_group() -> None:
    """Import mail (mbox, Gmail's Takeout, Maildir, another IMAP server), calendars (.ics) and
    contacts (.vcf) into an account; re-runs skip what is there already."""


@import_group.command("mbox")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--account", "address", required=True, help="The account to import into.")
@click.option("--mailbox", default=None, help="Target mailbox for one file (default INBOX).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@click.pass_obj
def import_mbox(
    state: CliState, path: Path, address: str, mailbox: str | None, as_json: bool
) -> None:
    """Import an mbox file, or a directory of NAME.mbox files (one per mailbox)."""
    from pillarbox.transfer import files

    run_import(state.load(), address, as_json, lambda imp: files.import_mbox(imp, path, mailbox))


@import_group.command("gmail")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--account", "address", required=True, help="The account to import into.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@click.pass_obj
def import_gmail(state: CliState, path: Path, address: str, as_json: bool) -> None:
    """Import a Google Takeout mbox (or a directory of them): folders and flags from each
    message's Gmail labels."""
    from pillarbox.transfer import files

    run_import(state.load(), address, as_json, lambda imp: files.import_gmail(imp, path))


@import_group.command("maildir")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--account", "address", required=True, help="The account to import into.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@click.pass_obj
def import_maildir(state: CliState, directory: Path, address: str, as_json: bool) -> None:
    """Import a Maildir++ tree (INBOX and its .Folder.Sub directories)."""
    from pillarbox.transfer import files

    run_import(state.load(), address, as_json, lambda imp: files.import_maildir(imp, directory))


@import_group.command("imap")
@click.option("--host", required=True, help="The server to copy from.")
@click.option("--port", type=int, default=None, help="Default: 993 (implicit TLS), 143.")
@click.option(
    "--tls",
    "tls_mode",
    type=click.Choice(["implicit", "starttls"]),
    default="implicit",
    show_default=True,
)
@click.option("--user", "remote_user", required=True, help="Login name on that server.")
@click.option("--password-stdin", is_flag=True, help="Read its password from stdin.")
@click.option("--account", "address", required=True, help="The account to import into.")
@click.option("--mailbox", "mailboxes", multiple=True, help="Only this remote folder (repeatable).")
@click.option("--cafile", type=click.Path(path_type=Path), default=None, help="Trust this CA.")
@click.option("--insecure", is_flag=True, help="Do not check the server's certificate.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@click.pass_obj
def import_imap(
    state: CliState,
    host: str,
    port: int | None,
    tls_mode: str,
    remote_user: str,
    password_stdin: bool,
    address: str,
    mailboxes: tuple[str, ...],
    cafile: Path | None,
    insecure: bool,
    as_json: bool,
) -> None:
    """Copy every folder of a remote IMAP account, with flags and dates; a re-run copies only
    what arrived since."""
    from pillarbox.cli.main import read_password
    from pillarbox.mailclient.transport import ConnectionFailed, Endpoint, TlsMode, TlsPolicy
    from pillarbox.transfer.imapsource import ImportState, Remote, import_imap

    config = state.load()
    mode = TlsMode(tls_mode)
    endpoint = Endpoint(host, port or (993 if mode is TlsMode.IMPLICIT else 143), mode)
    context = TlsPolicy(cafile=cafile, insecure=insecure).context()
    password = read_password(password_stdin, confirm=False)
    remote = Remote(endpoint, remote_user, password, context)
    progress = ImportState(
        ImportState.path_for(config.data_dir, remote, provisioning.account_key(address))
    )
    try:
        run_import(
            config, address, as_json, lambda imp: import_imap(imp, remote, progress, mailboxes)
        )
    except ConnectionFailed as exc:
        raise UserError(str(exc)) from exc


def _run_services(
    config: Config, address: str, work: Callable[[Services, Account], Awaitable[T]]
) -> T:
    """Open the store and run ``work`` for ``address`` with the parts the web's import
    functions use (nothing is listened on; nothing is sent)."""
    from pillarbox.cli.main import run_store
    from pillarbox.services import command_services

    async def go(store: Store) -> T:
        account = await provisioning.get_account(store, address)
        return await work(command_services(config, store), account)

    return run_store(config, go)


def _read_limited(path: Path, limit: int, what: str) -> bytes:
    if path.stat().st_size > limit:
        raise UserError(f"{path} is larger than {limit} bytes, the most {what} takes")
    return path.read_bytes()


@import_group.command("ics")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--account", "address", required=True, help="The account to import into.")
@click.option(
    "--calendar",
    default=None,
    help="The calendar's name (default: the default one); made when the account lacks it.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@click.pass_obj
def import_ics(
    state: CliState, path: Path, address: str, calendar: str | None, as_json: bool
) -> None:
    """Import an .ics file's events and to-dos into a calendar (one per UID; one already there
    is replaced); no invitations are sent. A calendar the account lacks is made, as a CalDAV
    client's MKCALENDAR makes one, named as the file names its calendar (else NAME)."""
    from pillarbox.calendars import calendars_of, default_calendar
    from pillarbox.cli.main import emit
    from pillarbox.transfer.ics import import_ics as run
    from pillarbox.transfer.imported import Imported

    config = state.load()
    data = _read_limited(path, config.calendars.max_import_bytes, "[calendars] max_import_bytes")

    async def work(services: Services, account: Account) -> tuple[str, bool, Imported]:
        calendars = await calendars_of(services, account)
        chosen = calendar or await default_calendar(services, account, calendars)
        made = chosen not in {c.name for c in calendars}
        return chosen, made, await run(services, account, chosen, data, create=True)

    chosen, made, done = _run_services(config, address, work)
    lines = [f"made the calendar {chosen}"] if made else []
    emit({"calendar": chosen, "created": made, **done.as_json()}, as_json, lines + done.lines())
    if done.skipped:
        raise UserError(f"{done.skipped} component(s) could not be imported (listed above)")


@import_group.command("vcard")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--account", "address", required=True, help="The account to import into.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@click.pass_obj
def import_vcard(state: CliState, path: Path, address: str, as_json: bool) -> None:
    """Import a .vcf file's contacts (vCard 2.1, 3.0 or 4.0); a card whose UID is there
    already replaces that contact (a card without one is given one derived from its text,
    so a re-run replaces it too), unless it is stored as it is: that one is left alone."""
    from pillarbox.cli.main import emit
    from pillarbox.transfer.vcf import import_vcards

    config = state.load()
    data = _read_limited(path, config.contacts.max_import_bytes, "[contacts] max_import_bytes")
    done = _run_services(
        config, address, lambda services, account: import_vcards(services, account, data)
    )
    emit(done.as_json(), as_json, done.lines())
    if done.skipped:
        raise UserError(f"{done.skipped} card(s) could not be imported (listed above)")


@click.command("export")
@click.option("--account", "address", required=True, help="The account to export.")
@click.option(
    "--mbox",
    "mbox_path",
    type=click.Path(path_type=Path),
    default=None,
    help="mbox file (with --mailbox), else a directory of NAME.mbox files.",
)
@click.option(
    "--maildir",
    "maildir_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Maildir++ directory (new or empty).",
)
@click.option(
    "--ics",
    "ics_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Calendar file (with --calendar), else a directory of NAME.ics files.",
)
@click.option(
    "--vcard",
    "vcard_path",
    type=click.Path(path_type=Path),
    default=None,
    help="vCard file (.vcf) of the address book.",
)
@click.option("--mailbox", default=None, help="Only this mailbox (--mbox, --maildir).")
@click.option("--calendar", default=None, help="Only this calendar (--ics).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@click.pass_obj
def export(
    state: CliState,
    address: str,
    mbox_path: Path | None,
    maildir_path: Path | None,
    ics_path: Path | None,
    vcard_path: Path | None,
    mailbox: str | None,
    calendar: str | None,
    as_json: bool,
) -> None:
    """Write an account's mail (flags, internal dates, folders) as mbox or Maildir, its
    calendars as .ics or its contacts as .vcf. Each file is new, put in place whole; the
    server may run meanwhile."""
    from pillarbox.cli.main import emit, run_store

    targets = [p for p in (mbox_path, maildir_path, ics_path, vcard_path) if p is not None]
    if len(targets) != 1:
        raise ConfigError(
            "", "give exactly one of --mbox FILE, --maildir DIR, --ics FILE|DIR and --vcard FILE"
        )
    if mailbox is not None and mbox_path is None and maildir_path is None:
        raise ConfigError("", "--mailbox goes with --mbox or --maildir")
    if calendar is not None and ics_path is None:
        raise ConfigError("", "--calendar goes with --ics")
    config = state.load()
    if ics_path is not None:
        _export_calendars(config, address, ics_path, calendar, as_json)
        return
    if vcard_path is not None:
        _export_contacts(config, address, vcard_path, as_json)
        return
    from pillarbox.transfer import files

    async def go(store: Store) -> files.ExportSummary:
        account = await provisioning.get_account(store, address)
        if mbox_path is not None:
            return await files.export_mbox(store, account, mbox_path, mailbox, _progress)
        assert maildir_path is not None
        return await files.export_maildir(store, account, maildir_path, mailbox, _progress)

    summary = run_store(config, go)
    target = mbox_path or maildir_path
    emit(
        {"messages": summary.messages, "mailboxes": summary.mailboxes, "path": str(target)},
        as_json,
        [f"exported {summary.messages} messages from {summary.mailboxes} mailbox(es) to {target}"],
    )


def _export_calendars(
    config: Config, address: str, path: Path, calendar: str | None, as_json: bool
) -> None:
    from pillarbox.cli.main import emit
    from pillarbox.transfer.davfiles import export_calendars

    done = _run_services(
        config,
        address,
        lambda services, account: export_calendars(services, account, path, calendar, _progress),
    )
    lines = [f"exported {done.objects} object(s) from {len(done.files)} calendar(s) to {path}"]
    lines += [f"left out: the calendar {name} was deleted meanwhile" for name in done.deleted]
    emit(
        {
            "objects": done.objects,
            "calendars": len(done.files),
            "path": str(path),
            "files": [{"path": str(file), "objects": count} for file, count in done.files],
            "deleted": done.deleted,
        },
        as_json,
        lines,
    )


def _export_contacts(config: Config, address: str, path: Path, as_json: bool) -> None:
    from pillarbox.cli.main import emit
    from pillarbox.transfer.davfiles import export_contacts

    count = _run_services(
        config, address, lambda services, account: export_contacts(services, account, path)
    )
    emit(
        {"contacts": count, "path": str(path)},
        as_json,
        [f"exported {count} contact(s) to {path}"],
    )


@click.command("backup")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@click.pass_obj
def backup_command(state: CliState, directory: Path, as_json: bool) -> None:
    """Copy the store (a consistent snapshot, also while serving), config and keys into
    DIRECTORY (new or empty)."""
    from pillarbox.cli.main import emit
    from pillarbox.transfer import backup

    config = state.load()
    result = backup.backup(config, directory, progress=_progress)
    if not result.store_copied:
        raise UserError(backup.postgres_advice(config, directory))
    emit(
        {
            "path": str(result.path),
            "messages": result.messages,
            "blob_files": result.blobs,
            "files": result.files,
            "snapshots": result.snapshots,
        },
        as_json,
        [
            f"backed up {result.messages} messages ({result.blobs} blob files), the config "
            f"and {result.files} data file(s) to {result.path}"
        ],
    )


@click.command("restore")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Move an existing config and data directory aside.")
@click.pass_obj
def restore_command(state: CliState, directory: Path, force: bool) -> None:
    """Restore a backup: the config to --config's path, the data directory where it says."""
    from pillarbox.transfer import backup

    result = backup.restore(directory, state.config_path, force=force)
    for moved in result.moved_aside:
        click.echo(f"moved aside: {moved}")
    click.echo(
        f"restored {result.messages} messages ({result.blobs} blob files) into "
        f"{result.data_dir}, config {result.config}"
    )
    for item in result.external:
        click.echo(
            f"not restored (outside the data directory): {item['original']}; "
            f"the copy is {directory / item['saved']}"
        )
