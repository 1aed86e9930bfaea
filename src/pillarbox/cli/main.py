"""``pillarbox``: the admin command line.

Conventions scripts rely on: ``--config PATH`` (else ``$PILLARBOX_CONFIG``, else
``./pillarbox.toml``); passwords from a prompt or ``--password-stdin``, never from argv alone;
``--json`` on every listing; exit 0 on success, 1 with a one-line reason when the request cannot
be done (unknown domain, duplicate user, weak password…), 2 for usage and configuration errors.
"""

from __future__ import annotations

import gc
import importlib
import json
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import click

from pillarbox.errors import ConfigError, SchemaTooNew, UserError

if TYPE_CHECKING:
    from pillarbox import config as cfg
    from pillarbox.store.interface import Store
    from pillarbox.store.types import AccountSettings, Alias, QuotaUsage

T = TypeVar("T")


@dataclass
class CliState:
    """``--config`` as given; the config module is imported when a command asks for the path
    or the config (``--help`` and ``pillarbox mail`` never do)."""

    given_path: Path | None

    @property
    def config_path(self) -> Path:
        from pillarbox import config as cfg

        return cfg.config_path(self.given_path)

    def load(self) -> cfg.Config:
        from pillarbox import config as cfg

        return cfg.load(self.config_path)


def run_store(config: cfg.Config, action: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store, run one coroutine against it, close it."""
    import asyncio

    from pillarbox.store.open import open_store

    async def go() -> T:
        store = open_store(config.store.url, config.data_dir, config.store)
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(go())


def read_password(password_stdin: bool, confirm: bool = True) -> str:
    if password_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise UserError("no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise UserError("no terminal to prompt for a password; use --password-stdin")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    return value


def emit(data: Any, as_json: bool, lines: Sequence[str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        for line in lines:
            click.echo(line)


@dataclass(frozen=True, slots=True)
class LazyCommand:
    """A subcommand imported only when it is run: ``target`` is ``module:attribute``;
    ``short_help`` is its line in ``pillarbox --help``, so that listing the commands imports
    none of them (a test holds it equal to what the command itself would print)."""

    target: str
    short_help: str


LAZY_COMMANDS: Mapping[str, LazyCommand] = {
    "backup": LazyCommand(
        "pillarbox.cli.transfer:backup_command",
        "Copy the store (a consistent snapshot, also while serving), config and keys into "
        "DIRECTORY (new or empty).",
    ),
    "dkim": LazyCommand("pillarbox.cli.dns:dkim", "DKIM signing keys of hosted domains."),
    "dmarc": LazyCommand("pillarbox.cli.dmarc:dmarc", "DMARC aggregate reports (RFC 9990)."),
    "dns": LazyCommand("pillarbox.cli.dns:dns", "DNS records of hosted domains."),
    "export": LazyCommand(
        "pillarbox.cli.transfer:export",
        "Write an account's mail (flags, internal dates, folders) as mbox or Maildir, its "
        "calendars as .ics or its contacts as .vcf.",
    ),
    "import": LazyCommand(
        "pillarbox.cli.transfer:import_group",
        "Import mail (mbox, Gmail's Takeout, Maildir, another IMAP server), calendars (.ics) "
        "and contacts (.vcf) into an account; re-runs skip what is there already.",
    ),
    "mail": LazyCommand(
        "pillarbox.cli.mail:mail",
        "Send, read, search and fetch mail on any SMTP/IMAP/POP3 server.",
    ),
    "queue": LazyCommand("pillarbox.cli.queue:queue", "The outbound queue."),
    "restore": LazyCommand(
        "pillarbox.cli.transfer:restore_command",
        "Restore a backup: the config to --config's path, the data directory where it says.",
    ),
    "sieve": LazyCommand(
        "pillarbox.cli.sieve:sieve",
        "Accounts' Sieve filter scripts (what ManageSieve clients upload).",
    ),
    "spam": LazyCommand(
        "pillarbox.cli.spam:spam",
        "Train, measure and explain the spam filter; accounts' allowed and blocked senders.",
    ),
    "store": LazyCommand(
        "pillarbox.cli.store:store",
        "The store itself: move it to another backend, expunge old Junk and Trash.",
    ),
    "tls": LazyCommand(
        "pillarbox.cli.tls:tls", "The server's TLS certificate (self-signed, configured, or ACME)."
    ),
}


class PillarboxGroup(click.Group):
    """Turns the error tree into exit codes and one-line messages, and loads the
    :data:`LAZY_COMMANDS` on demand (click's lazy-loading pattern): importing every command's
    dependencies (the PostgreSQL driver, DKIM, the policy reports…) was most of the time every
    ``pillarbox`` run took, and scripts and the tests run it many times."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*self.commands, *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        lazy = LAZY_COMMANDS.get(cmd_name)
        if lazy is None:
            return super().get_command(ctx, cmd_name)
        module, _, attribute = lazy.target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing, with a lazy command's line taken from its table entry."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))  # click's spacing
        rows = []
        for name in names:
            lazy = LAZY_COMMANDS.get(name)
            command = (
                self.commands[name] if lazy is None else click.Command(name, help=lazy.short_help)
            )
            if not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"pillarbox: configuration error: {exc}", err=True)
            ctx.exit(2)
        except UserError as exc:
            click.echo(f"pillarbox: {exc}", err=True)
            ctx.exit(1)
        except SchemaTooNew as exc:
            # A downgrade attempt: the refusal is the answer, not a fault to trace.
            click.echo(f"pillarbox: {exc}", err=True)
            ctx.exit(1)


@click.group(cls=PillarboxGroup)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Config file (default: $PILLARBOX_CONFIG, else ./pillarbox.toml).",
)
@click.version_option(package_name="pillarbox")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """Pillarbox: a complete mail system (SMTP, IMAP, POP3, webmail)."""
    ctx.obj = CliState(config_path)


# -- init / serve / demo / status --------------------------------------------------------------


@cli.command()
@click.option("--data-dir", default="data", show_default=True, help="Data directory.")
@click.option("--hostname", default=None, help="This server's host name (default: localhost).")
@click.option("--dev", is_flag=True, help="Loopback, unprivileged ports (2525, 2587, 2143, …).")
@click.option(
    "--store", "store_url", default=None, help="Store URL (default: sqlite: in data-dir)."
)
@click.option("--domain", default=None, help="Also create this first hosted domain.")
@click.option("--user", "user", default=None, help="Also create this first account (an address).")
@click.option("--admin/--no-admin", default=True, help="Make the first account an admin.")
@click.option("--password-stdin", is_flag=True, help="Read the account's password from stdin.")
@click.option("--force", is_flag=True, help="Overwrite an existing config file.")
@click.pass_obj
def init(
    state: CliState,
    data_dir: str,
    hostname: str | None,
    dev: bool,
    store_url: str | None,
    domain: str | None,
    user: str | None,
    admin: bool,
    password_stdin: bool,
    force: bool,
) -> None:
    """Write a commented config, create the data directory, store and TLS certificate."""
    from pillarbox.cli.setup import initialise

    password = read_password(password_stdin) if user else None
    result = initialise(
        state.config_path,
        data_dir=data_dir,
        hostname=hostname,
        dev=dev,
        store_url=store_url,
        domain=domain,
        user=user,
        password=password,
        admin=admin,
        force=force,
    )
    for line in result:
        click.echo(line)


@cli.command()
@click.pass_obj
def serve(state: CliState) -> None:
    """Run every configured listener in one process until SIGTERM/SIGINT."""
    run_locked(state.load())


@cli.command()
@click.option("--data-dir", default="pillarbox-demo", show_default=True)
@click.pass_obj
def demo(state: CliState, data_dir: str) -> None:
    """Set up (first time) and run a demo server on loopback with a demo account."""
    from pillarbox.cli.setup import prepare_demo

    config, lines = prepare_demo(Path(data_dir))
    run_locked(config, banner=lines)


def run_locked(config: cfg.Config, banner: Sequence[str] = ()) -> None:
    """Run the server once it holds its SQLite store's lock, taken before the server's modules
    load (seconds on a small machine): a second server is refused at once, and before it
    writes anything (its TLS certificate). PostgreSQL nodes lock in the database, at start."""
    from pillarbox.store.open import server_lock

    lock = server_lock(config.store.url, config.data_dir)
    if lock is not None:
        lock.hold_to_serve()
    # What the server's modules build lives as long as the process and is frozen once it
    # listens (net/serve.py): the ~150 collections that ran while they loaded freed ~600 objects
    # and cost 8 % of the load (docs/performance.md, "CLI start-up").
    gc.disable()
    try:
        from pillarbox.net.serve import run_server
    finally:
        gc.enable()
    run_server(config, banner, held=lock)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(state: CliState, as_json: bool) -> None:
    """Show the configuration in force and what the store holds."""
    from pillarbox import config as cfg
    from pillarbox.store.open import shown_url

    config = state.load()

    async def gather(store: Store) -> dict[str, Any]:
        domains = await store.list_domains()
        accounts = await store.list_accounts()
        queue = await store.list_queue()
        return {"domains": len(domains), "accounts": len(accounts), "queued": len(queue)}

    counts = run_store(config, gather)
    listeners = {
        name: {"address": lst.address, "port": lst.port, "enabled": lst.enabled}
        for name in cfg.LISTENER_DOCS
        for lst in [getattr(config.listeners, name)]
    }
    data = {
        "config": str(config.source),
        "hostname": config.server.hostname,
        "data_dir": str(config.data_dir),
        "store": shown_url(config.store.url, config.data_dir),
        "listeners": listeners,
        **counts,
    }
    lines = [
        f"config      {config.source}",
        f"hostname    {config.server.hostname}",
        f"data dir    {config.data_dir}",
        f"store       {data['store']}",
        f"domains     {counts['domains']}",
        f"accounts    {counts['accounts']}",
        f"queued      {counts['queued']}",
        "listeners:",
        *(
            f"  {name:<12} {_host_port(v['address'], v['port'])}"
            + ("" if v["enabled"] else " (disabled)")
            for name, v in listeners.items()
        ),
    ]
    emit(data, as_json, lines)


def _host_port(address: str, port: int) -> str:
    """``host:port``, an IPv6 address bracketed (RFC 3986 §3.2.2): ``[::]:25``, not ``:::25``."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@cli.command("config-doc")
def config_doc() -> None:
    """Print the configuration reference (docs/config.md) generated from the config fields."""
    from pillarbox import config as cfg

    click.echo(cfg.render_markdown(), nl=False)


# -- domains -----------------------------------------------------------------------------------


@cli.group()
def domain() -> None:
    """Hosted domains."""


@domain.command("add")
@click.argument("name")
@click.pass_obj
def domain_add(state: CliState, name: str) -> None:
    """Host mail for NAME."""
    from pillarbox import provisioning

    added = run_store(state.load(), lambda s: provisioning.add_domain(s, name))
    click.echo(f"added domain {added.name}")


@domain.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def domain_list(state: CliState, as_json: bool) -> None:
    """List hosted domains."""
    domains = run_store(state.load(), lambda s: s.list_domains())
    emit(
        [{"name": d.name, "created": d.created.isoformat()} for d in domains],
        as_json,
        [d.name for d in domains] or ["(no domains)"],
    )


@domain.command("remove")
@click.argument("name")
@click.pass_obj
def domain_remove(state: CliState, name: str) -> None:
    """Stop hosting NAME (refused while accounts or aliases use it)."""
    from pillarbox import provisioning

    run_store(state.load(), lambda s: provisioning.remove_domain(s, name))
    click.echo(f"removed domain {name}")


# -- users -------------------------------------------------------------------------------------


@cli.group()
def user() -> None:
    """Mail accounts."""


@user.command("add")
@click.argument("address")
@click.option("--name", "display_name", default="", help="Display name.")
@click.option("--admin", is_flag=True, help="May use the web admin.")
@click.option("--quota", "quota_bytes", type=int, default=None, help="Quota in bytes.")
@click.option("--quota-messages", type=int, default=None, help="Quota in messages.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.pass_obj
def user_add(
    state: CliState,
    address: str,
    display_name: str,
    admin: bool,
    quota_bytes: int | None,
    quota_messages: int | None,
    password_stdin: bool,
) -> None:
    """Create an account for ADDRESS (its domain must be hosted)."""
    from pillarbox import provisioning

    config = state.load()
    provisioning.account_key(address)  # refuse a bad address before asking for a password
    password = read_password(password_stdin)
    account = run_store(
        config,
        lambda s: provisioning.add_account(
            s,
            config,
            address,
            password,
            display_name=display_name,
            is_admin=admin,
            quota_bytes=quota_bytes,
            quota_messages=quota_messages,
        ),
    )
    click.echo(f"added account {account.address}")


@user.command("list")
@click.option("--domain", "domain_name", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def user_list(state: CliState, domain_name: str | None, as_json: bool) -> None:
    """List accounts."""
    accounts = run_store(state.load(), lambda s: s.list_accounts(domain_name))
    emit(
        [
            {
                "address": a.address,
                "display_name": a.display_name,
                "admin": a.is_admin,
                "quota_bytes": a.quota_bytes,
                "quota_messages": a.quota_messages,
            }
            for a in accounts
        ],
        as_json,
        [f"{a.address}{' (admin)' if a.is_admin else ''}" for a in accounts] or ["(no accounts)"],
    )


def _limit_option(value: str | None) -> int | Literal["keep"] | None:
    """A ``--messages``-style value: a count, 0 (unlimited) or ``default``; absent: keep."""
    if value is None:
        return "keep"
    if value == "default":
        return None
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a count, 0 or 'default'") from None


@user.command("limits")
@click.argument("address")
@click.option("--messages", default=None, metavar="N|default", help="Messages per 24 hours.")
@click.option("--recipients", default=None, metavar="N|default", help="Recipients per 24 h.")
@click.option(
    "--first-time", default=None, metavar="N|default", help="First-time recipients per 24 h."
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def user_limits(
    state: CliState,
    address: str,
    messages: str | None,
    recipients: str | None,
    first_time: str | None,
    as_json: bool,
) -> None:
    """Show or set ADDRESS's sending limits (0: unlimited; default: [submission_limits])."""
    from pillarbox import provisioning
    from pillarbox.queue import sendlimits

    config = state.load()
    given = {
        "messages": _limit_option(messages),
        "recipients": _limit_option(recipients),
        "first_time": _limit_option(first_time),
    }

    async def go(store: Store) -> sendlimits.SendingState:
        account = await provisioning.get_account(store, address)
        if any(v != "keep" for v in given.values()):
            own = await store.sending_limits(account.id)
            changed = {k: v for k, v in given.items() if v != "keep"}
            await provisioning.set_sending_limits(store, address, replace(own, **changed))
        return await sendlimits.sending_state(
            store, account, config.submission_limits, datetime.now(UTC)
        )

    shown = run_store(config, go)
    own, limits, sent = shown.own, shown.limits, shown.usage

    def line(label: str, mine: int | None, value: int, used: int) -> str:
        source = "default" if mine is None else "own"
        return f"{label}: {used} sent of {value or 'unlimited'} ({source})"

    emit(
        shown.as_json(),
        as_json,
        [
            f"{shown.address}, the last 24 hours:",
            line("  messages", own.messages, limits.messages, sent.messages),
            line("  recipients", own.recipients, limits.recipients, sent.recipients),
            line("  first-time recipients", own.first_time, limits.first_time, sent.first_time),
        ],
    )


@user.command("retention")
@click.argument("address")
@click.option("--junk-days", default=None, metavar="N|default", help="Days mail stays in Junk.")
@click.option("--trash-days", default=None, metavar="N|default", help="Days mail stays in Trash.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def user_retention(
    state: CliState, address: str, junk_days: str | None, trash_days: str | None, as_json: bool
) -> None:
    """Show or set how long ADDRESS's Junk and Trash keep mail (days after it was saved there;
    0: until deleted; default: [retention])."""
    from pillarbox import provisioning, retention
    from pillarbox.store.types import SpecialUse

    config = state.load()
    junk, trash = _limit_option(junk_days), _limit_option(trash_days)
    try:
        for days, what in ((junk, "Junk"), (trash, "Trash")):
            if days != "keep":
                retention.checked_days(config.retention, days, what)
    except UserError as exc:
        raise click.BadParameter(str(exc)) from None

    async def go(store: Store) -> tuple[str, AccountSettings]:
        account = await provisioning.get_account(store, address)
        settings = before = await store.get_settings(account.id)
        if junk != "keep":
            settings = replace(settings, junk_days=junk)
        if trash != "keep":
            settings = replace(settings, trash_days=trash)
        if settings != before:
            await store.set_settings(account.id, settings)
        return account.address, settings

    key, settings = run_store(config, go)
    shown = {}
    for name, special_use in (("junk", SpecialUse.JUNK), ("trash", SpecialUse.TRASH)):
        own = getattr(settings, f"{name}_days")
        shown[name] = {
            "days": retention.retention_days(config.retention, settings, special_use),
            "source": "default" if own is None else "own",
        }

    lines = [
        f"  {name}: {retention.described(config.retention, settings, special_use)}"
        for name, special_use in (("junk", SpecialUse.JUNK), ("trash", SpecialUse.TRASH))
    ]
    emit({"address": key, **shown}, as_json, [f"{key}:", *lines])


def _quota_option(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> int | Literal["keep"] | None:
    """A ``--bytes``/``--messages`` quota: a number (0 allows nothing), ``unlimited``; absent:
    keep the account's. Parsed as the option is (a bad one is named in the usage error)."""
    if value is None:
        return "keep"
    if value == "unlimited":
        return None
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number or 'unlimited'") from None


def _quota_line(what: str, used: int, limit: int | None) -> str:
    if limit is None:
        return f"  {what}: {used} of unlimited"
    share = f" ({used * 100 // limit}%)" if limit else ""
    return f"  {what}: {used} of {limit}{share}"


@user.command("quota")
@click.argument("address")
@click.option(
    "--bytes",
    "new_bytes",
    default=None,
    callback=_quota_option,
    metavar="N|unlimited",
    help="Quota in bytes.",
)
@click.option(
    "--messages",
    "new_messages",
    default=None,
    callback=_quota_option,
    metavar="N|unlimited",
    help="Quota in messages.",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def user_quota(
    state: CliState,
    address: str,
    new_bytes: int | Literal["keep"] | None,
    new_messages: int | Literal["keep"] | None,
    as_json: bool,
) -> None:
    """Show ADDRESS's quota and usage, or set it (what the web admin's Accounts page sets): an
    import stopped by the quota goes on once it is raised (docs/migration.md)."""
    from pillarbox import provisioning

    config = state.load()

    async def go(store: Store) -> tuple[str, QuotaUsage]:
        account = await provisioning.get_account(store, address)
        usage = await store.quota_usage(account.id)
        if new_bytes != "keep" or new_messages != "keep":
            limits = provisioning.checked_quotas(
                usage.bytes_limit if new_bytes == "keep" else new_bytes,
                usage.messages_limit if new_messages == "keep" else new_messages,
            )
            await store.set_quota(account.id, *limits)
            usage = await store.quota_usage(account.id)
        return account.address, usage

    key, usage = run_store(config, go)
    data = {
        "address": key,
        "bytes": {"used": usage.bytes_used, "limit": usage.bytes_limit},
        "messages": {"used": usage.messages, "limit": usage.messages_limit},
    }
    lines = [
        f"{key}:",
        _quota_line("bytes", usage.bytes_used, usage.bytes_limit),
        _quota_line("messages", usage.messages, usage.messages_limit),
    ]
    emit(data, as_json, lines)


@user.command("passwd")
@click.argument("address")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.pass_obj
def user_passwd(state: CliState, address: str, password_stdin: bool) -> None:
    """Set a new password for ADDRESS."""
    from pillarbox import provisioning

    config = state.load()
    password = read_password(password_stdin)
    run_store(config, lambda s: provisioning.set_password(s, config, address, password))
    click.echo(f"password changed for {provisioning.account_key(address)}")


@user.command("2fa")
@click.argument("address")
@click.option(
    "--disable", is_flag=True, help="Remove the second factor (the owner lost the device)."
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def user_2fa(state: CliState, address: str, disable: bool, as_json: bool) -> None:
    """Show ADDRESS's two-factor login, or remove it (account recovery by the admin: the
    owner then logs in with the password alone and may enrol a new device). The JSON's
    secret_readable says whether the secret opens under the data directory's totp-key (null:
    no key file there, or nothing enrolled)."""
    from pillarbox import provisioning
    from pillarbox.web import totpseal

    config = state.load()
    key_file = None if disable else totpseal.read_key(config.data_dir)
    sealer = None if key_file is None else totpseal.TotpSealer(key_file)

    async def go(store: Store) -> tuple[str, bool, int, bool | None]:
        if disable:
            account, removed = await provisioning.remove_second_factor(store, address)
            return account.address, removed, 0, None
        account = await provisioning.get_account(store, address)
        enrolment = await store.get_totp(account.id)
        if enrolment is None:
            return account.address, False, 0, None
        readable = None if sealer is None else sealer.opens(enrolment)
        return account.address, True, enrolment.recovery_left, readable

    key, enrolled, left, readable = run_store(config, go)
    if disable:
        text = f"two-factor login removed for {key}" if enrolled else f"{key} had no second factor"
    elif enrolled:
        text = f"{key}: two-factor login on, {left} recovery codes left"
        if readable is False:
            text += (
                f"; its secret does not open under {config.data_dir / totpseal.KEY_FILE}: "
                "restore that file, or remove the enrolment with --disable"
            )
    else:
        text = f"{key}: two-factor login off"
    emit({"address": key, "enabled": enrolled and not disable, "recovery_codes_left": left,
          "secret_readable": readable}, as_json, [text])  # fmt: skip


@user.command("remove")
@click.argument("address")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def user_remove(state: CliState, address: str, yes: bool) -> None:
    """Delete ADDRESS with all its mail."""
    from pillarbox import provisioning

    if not yes and sys.stdin.isatty():
        click.confirm(f"Delete {address} and all its mail?", abort=True)
    run_store(state.load(), lambda s: provisioning.remove_account(s, address))
    click.echo(f"removed account {provisioning.account_key(address)}")


# -- aliases -----------------------------------------------------------------------------------


@cli.group()
def alias() -> None:
    """Aliases (incl. catch-all ``@domain``)."""


@alias.command("add")
@click.argument("address")
@click.argument("targets", nargs=-1, required=True)
@click.pass_obj
def alias_add(state: CliState, address: str, targets: tuple[str, ...]) -> None:
    """Deliver mail for ADDRESS (or @DOMAIN for a catch-all) to TARGETS."""
    from pillarbox import provisioning
    from pillarbox.mail.address import parse_address
    from pillarbox.queue.routing import Router

    async def go(store: Store) -> tuple[Alias, list[str]]:
        added = await provisioning.add_alias(store, address, targets)
        router = Router(store)
        nowhere = []
        for target in added.targets:
            resolution = await router.resolve(parse_address(target))
            if resolution.hosted and resolution.unknown:
                nowhere.append(target)
        return added, nowhere

    added, nowhere = run_store(state.load(), go)
    click.echo(f"added alias {added.address} -> {', '.join(added.targets)}")
    for target in nowhere:  # a typo, or an account still to be made: say so, keep the alias
        click.echo(
            f"pillarbox: warning: {target} is no account or alias here: its share of the mail "
            "goes nowhere (refused when no other target takes it) until it is one",
            err=True,
        )


@alias.command("list")
@click.option("--domain", "domain_name", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def alias_list(state: CliState, domain_name: str | None, as_json: bool) -> None:
    """List aliases."""
    aliases = run_store(state.load(), lambda s: s.list_aliases(domain_name))
    emit(
        [{"address": a.address, "targets": list(a.targets)} for a in aliases],
        as_json,
        [f"{a.address} -> {', '.join(a.targets)}" for a in aliases] or ["(no aliases)"],
    )


@alias.command("remove")
@click.argument("address")
@click.pass_obj
def alias_remove(state: CliState, address: str) -> None:
    """Remove an alias."""
    from pillarbox import provisioning

    run_store(state.load(), lambda s: provisioning.remove_alias(s, address))
    click.echo(f"removed alias {address}")


def generated_password() -> str:
    """A password for demo accounts: 16 URL-safe characters (~96 bits)."""
    # Imported here: only ``demo`` makes one, and ``secrets`` loads OpenSSL's hashes, a tenth
    # of ``--help``'s start-up (docs/performance.md).
    import secrets

    return secrets.token_urlsafe(12)


def main() -> None:
    cli(prog_name="pillarbox")
