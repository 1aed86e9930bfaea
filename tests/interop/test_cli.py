"""The admin CLI, run as operators and scripts run it: a subprocess per command."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.cli.main import run_store
from pillarbox.store.interface import Store
from pillarbox.store.types import INBOX, DmarcObservation
from pillarbox.testing.command import init_site, run_pillarbox
from pillarbox.web import totpseal

PASSWORD = "correct horse battery"


@pytest.fixture
def initialised(tmp_path: Path) -> Path:
    init_site(tmp_path, "alice@example.org", PASSWORD)
    return tmp_path


def test_init_creates_config_store_certificate_and_account(initialised: Path) -> None:
    assert (initialised / "pillarbox.toml").is_file()
    assert (initialised / "data" / "tls" / "cert.pem").is_file()
    assert (initialised / "data" / "tls" / "key.pem").stat().st_mode & 0o077 == 0
    listed = run_pillarbox(initialised, "user", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    users = json.loads(listed.stdout)
    assert [u["address"] for u in users] == ["alice@example.org"]
    assert users[0]["admin"] is True


def test_init_refuses_to_overwrite(initialised: Path) -> None:
    result = run_pillarbox(initialised, "init", "--dev")
    assert result.returncode == 1
    assert "exists already" in result.stderr


def test_domain_lifecycle(initialised: Path) -> None:
    assert run_pillarbox(initialised, "domain", "add", "Example.NET.").returncode == 0
    listed = json.loads(run_pillarbox(initialised, "domain", "list", "--json").stdout)
    assert sorted(d["name"] for d in listed) == ["example.net", "example.org"]
    duplicate = run_pillarbox(initialised, "domain", "add", "example.net")
    assert duplicate.returncode == 1
    assert duplicate.stderr.count("\n") == 1
    in_use = run_pillarbox(initialised, "domain", "remove", "example.org")
    assert in_use.returncode == 1
    assert run_pillarbox(initialised, "domain", "remove", "example.net").returncode == 0
    unknown = run_pillarbox(initialised, "domain", "remove", "example.net")
    assert unknown.returncode == 1
    assert "no such domain" in unknown.stderr


def test_idn_domain_is_stored_as_a_labels(initialised: Path) -> None:
    assert run_pillarbox(initialised, "domain", "add", "bücher.example").returncode == 0
    names = [
        d["name"] for d in json.loads(run_pillarbox(initialised, "domain", "list", "--json").stdout)
    ]
    assert "xn--bcher-kva.example" in names


@pytest.mark.parametrize(
    ("address", "password", "message"),
    [
        ("bob@unknown.example", PASSWORD, "not hosted"),
        ("alice@example.org", PASSWORD, "exists already"),
        ("not an address", PASSWORD, "invalid"),
        ("bob@example.org", "short", "password rejected"),
    ],
)
def test_user_add_refusals(initialised: Path, address: str, password: str, message: str) -> None:
    result = run_pillarbox(
        initialised, "user", "add", address, "--password-stdin", stdin=password + "\n"
    )
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_user_add_refuses_a_negative_quota(initialised: Path) -> None:
    for option in ("--quota", "--quota-messages"):
        result = run_pillarbox(
            initialised,
            "user",
            "add",
            "bob@example.org",
            option,
            "-1",
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )
        assert (result.returncode, result.stderr.strip()) == (
            1,
            "pillarbox: quotas cannot be negative",
        )
    listed = json.loads(run_pillarbox(initialised, "user", "list", "--json").stdout)
    assert [u["address"] for u in listed] == ["alice@example.org"]


def test_user_2fa_shown_and_disabled_by_the_admin(initialised: Path) -> None:
    config = cfg.load(initialised / "pillarbox.toml")

    async def enrol(store: Store) -> None:
        account = await store.get_account("alice@example.org")
        assert account is not None
        await store.enable_totp(account.id, "sealed", ["d1", "d2"])

    off = run_pillarbox(initialised, "user", "2fa", "alice@example.org")
    assert off.stdout.strip() == "alice@example.org: two-factor login off"
    run_store(config, enrol)
    on = run_pillarbox(initialised, "user", "2fa", "Alice@Example.org", "--json")
    assert json.loads(on.stdout) == {
        "address": "alice@example.org", "enabled": True, "recovery_codes_left": 2,
        "secret_readable": None,  # no data_dir/totp-key yet: nothing to tell
    }  # fmt: skip
    # With the server's key: a secret that does not open under it is named, with the way out.
    sealer = totpseal.TotpSealer(totpseal.load_key(config.data_dir))
    unreadable = run_pillarbox(initialised, "user", "2fa", "alice@example.org")
    assert "its secret does not open under" in unreadable.stdout
    assert "--disable" in unreadable.stdout

    async def seal_properly(store: Store) -> None:
        account = await store.get_account("alice@example.org")
        assert account is not None
        await store.disable_totp(account.id)
        await store.enable_totp(account.id, sealer.seal(account.id, b"k" * 20), ["d1"])

    run_store(config, seal_properly)
    readable = run_pillarbox(initialised, "user", "2fa", "alice@example.org", "--json")
    assert json.loads(readable.stdout)["secret_readable"] is True
    removed = run_pillarbox(initialised, "user", "2fa", "alice@example.org", "--disable")
    assert removed.stdout.strip() == "two-factor login removed for alice@example.org"
    assert run_store(config, lambda store: store.totp_accounts()) == set()
    again = run_pillarbox(initialised, "user", "2fa", "alice@example.org", "--disable")
    assert again.stdout.strip() == "alice@example.org had no second factor"
    unknown = run_pillarbox(initialised, "user", "2fa", "nobody@example.org")
    assert unknown.returncode == 1


def test_user_passwd_and_remove(initialised: Path) -> None:
    changed = run_pillarbox(
        initialised,
        "user",
        "passwd",
        "Alice@Example.org",
        "--password-stdin",
        stdin="another fine password\n",
    )
    assert changed.returncode == 0, changed.stderr
    assert (
        run_pillarbox(initialised, "user", "remove", "alice@example.org", "--yes").returncode == 0
    )
    assert json.loads(run_pillarbox(initialised, "user", "list", "--json").stdout) == []


def test_password_is_never_taken_from_a_terminalless_prompt(initialised: Path) -> None:
    result = run_pillarbox(initialised, "user", "add", "carol@example.org", stdin="")
    assert result.returncode == 1
    assert "--password-stdin" in result.stderr


def test_alias_lifecycle(initialised: Path) -> None:
    added = run_pillarbox(initialised, "alias", "add", "sales@example.org", "alice@example.org")
    assert added.returncode == 0, added.stderr
    assert "warning" not in added.stderr
    # A target here that reaches nobody (a typo): the alias is kept, the operator warned.
    typo = run_pillarbox(initialised, "alias", "add", "info@example.org", "alcie@example.org")
    assert typo.returncode == 0, typo.stderr
    assert "warning: alcie@example.org is no account or alias here" in typo.stderr
    assert run_pillarbox(initialised, "alias", "remove", "info@example.org").returncode == 0
    catch_all = run_pillarbox(initialised, "alias", "add", "@example.org", "alice@example.org")
    assert catch_all.returncode == 0, catch_all.stderr
    aliases = json.loads(run_pillarbox(initialised, "alias", "list", "--json").stdout)
    assert {a["address"]: a["targets"] for a in aliases} == {
        "sales@example.org": ["alice@example.org"],
        "@example.org": ["alice@example.org"],
    }
    clash = run_pillarbox(initialised, "alias", "add", "alice@example.org", "bob@example.net")
    assert clash.returncode == 1
    assert run_pillarbox(initialised, "alias", "remove", "sales@example.org").returncode == 0
    assert run_pillarbox(initialised, "alias", "remove", "sales@example.org").returncode == 1


def test_status_json(initialised: Path) -> None:
    result = run_pillarbox(initialised, "status", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["accounts"] == 1
    assert data["domains"] == 1
    assert data["listeners"]["imap"]["port"] == 2143
    # The default store shown with the file it names (tests/unit/test_store_open.py).
    assert data["store"] == f"sqlite: ({Path(data['data_dir']) / 'pillarbox.sqlite3'})"


def test_status_brackets_an_ipv6_listener_address(tmp_path: Path) -> None:
    assert run_pillarbox(tmp_path, "init", "--hostname", "mail.example.org").returncode == 0
    result = run_pillarbox(tmp_path, "status")
    assert result.returncode == 0, result.stderr
    assert "  smtp         [::]:25\n" in result.stdout  # init's standard ports, every address
    assert "  lmtp         127.0.0.1:24 (disabled)\n" in result.stdout


def test_an_import_stopped_by_the_quota_goes_on_once_user_quota_raises_it(
    initialised: Path,
) -> None:
    """docs/migration.md's step: the import stops at the quota, the admin raises it from the
    shell, the same import continues."""
    body = "x" * 300
    (initialised / "old.mbox").write_text(
        "".join(
            f"From a@example.net Mon Nov 30 10:00:00 2026\nSubject: {n}\n\n{body}\n\n"
            for n in ("one", "two")
        )
    )
    quota = run_pillarbox(initialised, "user", "quota", "alice@example.org", "--bytes", "400")
    assert quota.returncode == 0, quota.stderr
    assert "  bytes: 0 of 400 (0%)\n  messages: 0 of unlimited\n" in quota.stdout
    importing = ("import", "mbox", "old.mbox", "--account", "alice@example.org")
    stopped = run_pillarbox(initialised, *importing)
    assert stopped.returncode == 1 and "raise the quota" in stopped.stderr

    raised = run_pillarbox(
        initialised, "user", "quota", "alice@example.org", "--bytes", "unlimited", "--json"
    )
    assert raised.returncode == 0, raised.stderr
    shown = json.loads(raised.stdout)
    assert shown["bytes"]["limit"] is None and shown["messages"] == {"used": 1, "limit": None}
    resumed = run_pillarbox(initialised, *importing)
    assert resumed.returncode == 0, resumed.stderr
    assert "imported 1, skipped 1" in resumed.stdout

    bad = run_pillarbox(initialised, "user", "quota", "alice@example.org", "--messages", "lots")
    assert bad.returncode == 2 and "Invalid value for '--messages'" in bad.stderr


def test_invalid_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "pillarbox.toml").write_text("[listeners.imap]\nport = 'abc'\n")
    result = run_pillarbox(tmp_path, "status")
    assert result.returncode == 2
    assert "listeners.imap.port" in result.stderr


@pytest.mark.parametrize("command", [("status",), ("serve",), ("domain", "add", "example.net")])
def test_a_database_from_a_later_version_is_refused_in_one_line(
    initialised: Path, command: tuple[str, ...]
) -> None:
    """A downgrade attempt (this code on a database a later version upgraded) says what
    happened and what to do, once, instead of a traceback, and leaves the database as it was."""
    database = initialised / "data" / "pillarbox.sqlite3"
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("INSERT INTO schema_version (version, description) VALUES (?, 'later')", (999,))
    conn.close()
    before = database.read_bytes()
    result = run_pillarbox(initialised, *command)
    assert result.returncode == 1
    assert result.stderr.startswith("pillarbox: database schema version 999 is newer than this ")
    assert "restore the backup taken before the upgrade" in result.stderr
    assert "Traceback" not in result.stderr
    assert database.read_bytes() == before


def test_missing_config_is_a_configuration_error(tmp_path: Path) -> None:
    result = run_pillarbox(tmp_path, "domain", "list")
    assert result.returncode == 2
    assert "pillarbox init" in result.stderr


def test_config_env_variable_is_used(initialised: Path) -> None:
    env = {**os.environ, "PILLARBOX_CONFIG": str(initialised / "pillarbox.toml")}
    result = subprocess.run(
        [sys.executable, "-m", "pillarbox.cli", "domain", "list"],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "example.org"


def test_config_doc_matches_committed_reference(tmp_path: Path) -> None:
    result = run_pillarbox(tmp_path, "config-doc", config=False)
    assert result.returncode == 0
    committed = Path(__file__).parents[2] / "docs" / "config.md"
    assert committed.read_text() == result.stdout, (
        "regenerate: pillarbox config-doc > docs/config.md"
    )


def test_dmarc_report_prints_then_sends(initialised: Path) -> None:
    config = cfg.load(initialised / "pillarbox.toml")
    observation = DmarcObservation(
        received=datetime(2026, 1, 1, tzinfo=UTC),
        policy_domain="example.org",
        header_from="example.org",
        envelope_from="example.org",
        source_ip="192.0.2.7",
        disposition="none",
        dkim_aligned=False,
        spf_aligned=True,
        spf_domain="example.org",
        spf_result="pass",
        dkim=(),
        policy_record="v=DMARC1; p=none; rua=mailto:alice@example.org",
    )
    run_store(config, lambda store: store.record_dmarc_observation(observation))
    shown = run_pillarbox(initialised, "dmarc", "report")
    assert shown.returncode == 0, shown.stderr
    assert "!example.org!" in shown.stdout and "→ alice@example.org" in shown.stdout
    assert "<source_ip>192.0.2.7</source_ip>" in shown.stdout

    refused = run_pillarbox(initialised, "dmarc", "report", "--send")
    assert refused.returncode != 0 and "from_address" in refused.stderr
    env_run = run_pillarbox(initialised, "dmarc", "report", "--send", env_extra=_FROM_ALICE)
    assert env_run.returncode == 0, env_run.stderr
    assert ": 1 messages → alice@example.org" in env_run.stdout

    async def inbox(store: Store) -> list[bytes]:
        account = await store.get_account("alice@example.org")
        box = await store.get_mailbox(account.id, INBOX)
        return [await store.read_blob(r.blob_id) for r in await store.list_messages(box.id)]

    [delivered] = run_store(config, inbox)
    assert b"Report Domain: example.org" in delivered
    assert (
        run_pillarbox(initialised, "dmarc", "report").stdout.strip()
        == "no DMARC evaluations to report"
    )


_FROM_ALICE = {"PILLARBOX__DMARC_REPORTS__FROM_ADDRESS": "alice@example.org"}
