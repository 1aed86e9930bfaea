"""``pillarbox sieve …``: an administrator's view of the accounts' Sieve filter scripts.

The same rules as ManageSieve (:mod:`pillarbox.sievescripts`): a script is stored only if it
is UTF-8, compiles, and fits the ``[sieve]`` quotas; the active script cannot be deleted.
``check`` compiles a file without touching a store (no config needed).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pillarbox import sievescripts
from pillarbox.auth.directory import normalize_username
from pillarbox.config import Config
from pillarbox.errors import NotFound, UserError
from pillarbox.sievescripts import ScriptLimits
from pillarbox.store.interface import Store
from pillarbox.store.types import SieveScript

if TYPE_CHECKING:
    from pillarbox.cli.main import CliState


def _limits(config: Config) -> ScriptLimits:
    return ScriptLimits.of(config.sieve)


async def _account_id(store: Store, address: str) -> int:
    account = await store.get_account(normalize_username(address) or address)
    if account is None:
        raise NotFound(f"no account {address}")
    return account.id


def _read(source: str) -> str:
    """The script text from a file, or standard input for ``-``."""
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {source}: {exc.strerror}") from None
    return sievescripts.decode_script(data)


@click.group()
def sieve() -> None:
    """Accounts' Sieve filter scripts (what ManageSieve clients upload)."""


@sieve.command("list")
@click.argument("account")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def sieve_list(state: CliState, account: str, as_json: bool) -> None:
    """List ACCOUNT's scripts; the active one is marked."""
    from pillarbox.cli.main import emit, run_store

    async def go(store: Store) -> list[SieveScript]:
        return await store.list_sieve_scripts(await _account_id(store, account))

    scripts = run_store(state.load(), go)
    emit(
        [{"name": s.name, "active": s.active, "size": len(s.content.encode())} for s in scripts],
        as_json,
        [s.name + (" (active)" if s.active else "") for s in scripts] or ["(no scripts)"],
    )


@sieve.command("get")
@click.argument("account")
@click.argument("name")
@click.pass_obj
def sieve_get(state: CliState, account: str, name: str) -> None:
    """Print script NAME of ACCOUNT as stored."""
    from pillarbox.cli.main import run_store

    async def go(store: Store) -> SieveScript:
        return await sievescripts.get_script(store, await _account_id(store, account), name)

    click.echo(run_store(state.load(), go).content, nl=False)


@sieve.command("put")
@click.argument("account")
@click.argument("name")
@click.argument("source", metavar="FILE|-")
@click.option("--activate", is_flag=True, help="Also make it the active script.")
@click.pass_obj
def sieve_put(state: CliState, account: str, name: str, source: str, activate: bool) -> None:
    """Store FILE (or standard input) as script NAME of ACCOUNT, replacing one of that name;
    refused if it does not compile or breaks the [sieve] quotas."""
    from pillarbox.cli.main import run_store

    text = _read(source)
    config = state.load()

    async def go(store: Store) -> str:
        account_id = await _account_id(store, account)
        saved = await sievescripts.put_script(store, account_id, name, text, _limits(config))
        if activate:
            await sievescripts.activate(store, account_id, saved)
        return saved

    saved = run_store(config, go)
    click.echo(f"stored script {saved}" + (" (active)" if activate else ""))


@sieve.command("activate")
@click.argument("account")
@click.argument("name")
@click.pass_obj
def sieve_activate(state: CliState, account: str, name: str) -> None:
    """Make NAME ACCOUNT's active script (the one delivery runs)."""
    from pillarbox.cli.main import run_store

    async def go(store: Store) -> None:
        await sievescripts.activate(store, await _account_id(store, account), name)

    run_store(state.load(), go)
    click.echo(f"activated script {name}")


@sieve.command("deactivate")
@click.argument("account")
@click.pass_obj
def sieve_deactivate(state: CliState, account: str) -> None:
    """Leave ACCOUNT with no active script (mail is delivered unfiltered)."""
    from pillarbox.cli.main import run_store

    async def go(store: Store) -> None:
        await sievescripts.activate(store, await _account_id(store, account), None)

    run_store(state.load(), go)
    click.echo(f"no active script for {account}")


@sieve.command("delete")
@click.argument("account")
@click.argument("name")
@click.pass_obj
def sieve_delete(state: CliState, account: str, name: str) -> None:
    """Delete script NAME of ACCOUNT (not the active one: deactivate it first)."""
    from pillarbox.cli.main import run_store

    async def go(store: Store) -> None:
        await sievescripts.delete_script(store, await _account_id(store, account), name)

    run_store(state.load(), go)
    click.echo(f"deleted script {name}")


@sieve.command("rename")
@click.argument("account")
@click.argument("old")
@click.argument("new")
@click.pass_obj
def sieve_rename(state: CliState, account: str, old: str, new: str) -> None:
    """Rename script OLD of ACCOUNT to NEW (it stays active if it was)."""
    from pillarbox.cli.main import run_store

    async def go(store: Store) -> None:
        await sievescripts.rename_script(store, await _account_id(store, account), old, new)

    run_store(state.load(), go)
    click.echo(f"renamed script {old} to {new}")


@sieve.command("check")
@click.argument("source", metavar="FILE|-")
def sieve_check(source: str) -> None:
    """Compile FILE (or standard input) and report the first error; stores nothing."""
    sievescripts.compile_checked(_read(source), ScriptLimits())
    click.echo("script is valid")
