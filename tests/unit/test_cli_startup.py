"""``pillarbox`` imports only what the command run needs: scripts and the test suite start it
hundreds of times, and importing every command's dependencies was most of each run's time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from pillarbox import config as cfg
from pillarbox.cli.main import LAZY_COMMANDS, cli
from pillarbox.store.open import server_lock
from pillarbox.testing.command import init_site
from pillarbox.testing.icalendars import WEEKLY
from pillarbox.testing.vcards import RICH_CARD

# What only some commands need: the PostgreSQL driver and backend, the report machinery, DKIM,
# the web app, the provisioning layer (hashing, DKIM keys), the certificate parser, the
# iCalendar library and the vCard parser (a contact's save, an old store's upgrade).
HEAVY = (
    "psycopg",
    "pillarbox.store.postgres",
    "pillarbox.policy.reporting",
    "dkim",
    "pillarbox.web.app",
    "pillarbox.provisioning",
    "cryptography.x509",
    "icalendar",
    "pillarbox.vcard",
)

# The web app and the web modules that load it. ``import ics|vcard`` and ``export --ics|--vcard``
# run the Calendar and Contacts pages' own imports and exports (pillarbox.transfer.ics, .vcf)
# without them: importing them was 0.5–0.7 s of each such command.
WEB_APP = (
    "starlette",
    "pillarbox.web.app",
    "pillarbox.web.caldav",
    "pillarbox.web.calendarimport",
    "pillarbox.web.contacts",
)
# What only the mail imports and exports use: the importer and the IMAP session's parsing.
MAIL_TRANSFER = (
    "pillarbox.transfer.files",
    "pillarbox.transfer.importer",
    "pillarbox.imap.session",
)

# Runs the command in the child, as the console script would, then reports what it imported.
_PROBE = """
import json, sys
from pillarbox.cli.main import cli
try:
    cli.main(sys.argv[1:], prog_name="pillarbox")
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def imported_by(site: Path, *args: str, refused: bool = False) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, "--config", str(site / "pillarbox.toml"), *args],
        capture_output=True,
        text=True,
        cwd=site,
        timeout=60,
        check=False,
    )
    report = json.loads(result.stderr.splitlines()[-1])
    assert report["code"] in ((1,) if refused else (0, None)), result.stderr
    return set(report["modules"])


@pytest.mark.parametrize(
    "args", [["--version"], ["--help"], ["user", "--help"], ["queue", "--help"], ["mail", "--help"]]
)
def test_light_commands_import_nothing_heavy(tmp_path: Path, args: list[str]) -> None:
    assert sorted(imported_by(tmp_path, *args) & set(HEAVY)) == []


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["user", "--help"]])
def test_the_command_list_loads_no_hashing(tmp_path: Path, args: list[str]) -> None:
    """``secrets`` loads OpenSSL's hashes: a tenth of ``--help``, which makes no password."""
    assert "secrets" not in imported_by(tmp_path, *args)


def test_listing_users_imports_the_store_it_uses_and_nothing_heavy(tmp_path: Path) -> None:
    init_site(tmp_path, "alice@example.org", "correct horse battery")
    modules = imported_by(tmp_path, "user", "list")
    assert {"pillarbox.config", "pillarbox.store.sqlite"} <= modules
    assert sorted(modules & set(HEAVY)) == []


def test_adding_an_alias_provisions_without_loading_dkim(tmp_path: Path) -> None:
    """Provisioning loads dkimpy (and through it dnspython's resolver) only to make a domain's
    keys: adding an alias or a user signs nothing."""
    init_site(tmp_path, "alice@example.org", "correct horse battery")
    modules = imported_by(tmp_path, "alias", "add", "team@example.org", "alice@example.org")
    assert "pillarbox.provisioning" in modules
    assert sorted(modules & {"dkim", "pillarbox.queue.dkim", "dns.resolver"}) == []


def test_a_lazy_command_is_loaded_when_run(tmp_path: Path) -> None:
    modules = imported_by(tmp_path, "dkim", "--help")
    assert "pillarbox.cli.dns" in modules
    assert "pillarbox.cli.transfer" not in modules


@pytest.mark.parametrize("width", [40, 80, 200])
def test_help_lists_lazy_commands_as_click_does_after_importing_them(width: int) -> None:
    """The table's short help is what the command's own docstring gives, at any width."""
    ctx = click.Context(cli, info_name="pillarbox")
    lazy, eager = click.HelpFormatter(width=width), click.HelpFormatter(width=width)
    cli.format_commands(ctx, lazy)
    click.Group.format_commands(cli, ctx, eager)  # imports every command for its docstring
    assert lazy.getvalue() == eager.getvalue()


def test_every_lazy_command_is_found_under_its_own_name() -> None:
    ctx = click.Context(cli, info_name="pillarbox")
    for name in LAZY_COMMANDS:
        command = cli.get_command(ctx, name)
        assert isinstance(command, click.Command)
        assert command.name == name
    assert not set(LAZY_COMMANDS) & set(cli.commands)


def test_calendar_and_contact_transfers_load_no_web_app_nor_mail_transfer(tmp_path: Path) -> None:
    """Each command run for real (it succeeds, through the module named) and no module of
    ``pillarbox.web`` loaded: what they share with the pages lives outside it; nor the mail
    import machinery, which ``pillarbox.cli.transfer`` loads for the mail commands only."""
    init_site(tmp_path, "alice@example.org", "correct horse battery")
    (tmp_path / "in.ics").write_text(WEEKLY, encoding="utf-8")
    (tmp_path / "in.vcf").write_text(RICH_CARD, encoding="utf-8")
    account = ("--account", "alice@example.org")
    commands = [
        (("import", "ics", "in.ics", *account), "pillarbox.transfer.ics"),
        (("import", "vcard", "in.vcf", *account), "pillarbox.transfer.vcf"),
        (("export", "--ics", "calendars", *account), "pillarbox.transfer.davfiles"),
        (("export", "--vcard", "contacts.vcf", *account), "pillarbox.transfer.davfiles"),
    ]
    loaded = {}
    for args, through in commands:
        modules = imported_by(tmp_path, *args)
        assert through in modules, args
        web = {m for m in modules if m == "pillarbox.web" or m.startswith("pillarbox.web.")}
        loaded[args[:2]] = sorted((modules & {*WEB_APP, *MAIL_TRANSFER}) | web)
    assert (tmp_path / "calendars" / "personal.ics").exists()
    assert "FN:" in (tmp_path / "contacts.vcf").read_text(encoding="utf-8")
    assert loaded == {args[:2]: [] for args, _ in commands}


def test_the_retention_run_loads_no_report_machinery(tmp_path: Path) -> None:
    """``store expunge-old`` is the retention job, which shares only the schedule
    (``pillarbox.periodic``) with the DMARC and TLS reports."""
    init_site(tmp_path, "alice@example.org", "correct horse battery")
    modules = imported_by(tmp_path, "store", "expunge-old")
    assert {"pillarbox.retention", "pillarbox.periodic"} <= modules
    assert sorted(modules & set(HEAVY)) == []


def test_a_second_server_is_refused_before_the_server_loads(tmp_path: Path) -> None:
    """The refusal of a second ``serve`` on a SQLite store comes from its lock, taken before
    the server's modules and the SQLite backend load (seconds on a small machine)."""
    init_site(tmp_path, "alice@example.org", "correct horse battery")
    config = cfg.load(tmp_path / "pillarbox.toml")
    lock = server_lock(config.store.url, config.data_dir)
    assert lock is not None
    lock.hold_to_serve()  # the running server
    try:
        modules = imported_by(tmp_path, "serve", refused=True)
    finally:
        lock.release()
    assert "pillarbox.store.sqlite.serverlock" in modules
    assert sorted(modules & {"pillarbox.net.serve", "pillarbox.store.sqlite.store"}) == []
