"""An operator's mistakes with running servers, played with real ``pillarbox serve`` processes:
a second server started on a SQLite data directory, and a newer version's command run before
the old server was stopped (docs/upgrading.md).

The "older version" is this Pillarbox with its last migration cut off (:data:`OLDER`): it
holds the servers' lock as any version from this one on does, on a schema one step behind
the current code's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from pillarbox import config as cfg
from pillarbox.store.postgres import migrations as pg_migrations
from pillarbox.store.sqlite import migrations as sqlite_migrations
from pillarbox.testing.live import TEST_STORE_ENV
from pillarbox.testing.nodes import Node
from pillarbox.testing.postgres import TestDatabase, unreachable_reason

#: ``python OLDER --config PATH serve|…``: this Pillarbox as the version before it.
OLDER = """
import sys

from pillarbox.store.postgres import migrations as pg_migrations
from pillarbox.store.postgres import servers as pg_servers
from pillarbox.store.postgres import store as pg_store
from pillarbox.store.sqlite import migrations as sqlite_migrations
from pillarbox.store.sqlite import store as sqlite_store

for module in (sqlite_migrations, pg_migrations):
    module.MIGRATIONS = module.MIGRATIONS[:-1]
    module.LATEST_VERSION = module.MIGRATIONS[-1].version
sqlite_store.LATEST_VERSION = sqlite_migrations.LATEST_VERSION
pg_store.LATEST_VERSION = pg_servers.LATEST_VERSION = pg_migrations.LATEST_VERSION

from pillarbox.cli.main import main

sys.argv[0] = "pillarbox"
main()
"""


def pillarbox(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """A ``pillarbox`` command of this version, as its own process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PILLARBOX")}
    env.pop(TEST_STORE_ENV, None)
    return subprocess.run(
        [sys.executable, "-m", "pillarbox.cli", "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused command printed (log lines before it aside)."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    [line] = [x for x in result.stderr.splitlines() if x.startswith("pillarbox: ")]
    assert "Traceback" not in result.stderr
    return line


def beside(node: Node, root: Path, name: str) -> Node:
    """Another server on ``node``'s data directory, with ports of its own."""
    other = Node(root, name, node.config.store.url, listeners=node.ports)
    data_dir = node.config.server.data_dir
    other.config = dataclasses.replace(
        other.config, server=dataclasses.replace(other.config.server, data_dir=data_dir)
    )
    other.config_path.write_text(cfg.render_toml(other.config), encoding="utf-8")
    return other


def test_a_second_server_on_a_sqlite_data_directory_is_refused_until_the_first_dies(
    tmp_path: Path,
) -> None:
    first = Node(tmp_path, "first", "sqlite:", listeners=["smtp"])
    second = beside(first, tmp_path, "second")
    with first:
        line = refusal(pillarbox(second.config_path, "serve"))
        data_dir = first.config.data_dir
        assert line == (
            f"pillarbox: another server (pid {first.pid}) runs on the data directory "
            f"{data_dir}: stop it first, or give this one a data directory of its own"
        )
        # Admin commands run beside the server.
        assert pillarbox(first.config_path, "domain", "add", "example.org").returncode == 0
        added = pillarbox(
            first.config_path,
            "user",
            "add",
            "a@example.org",
            "--password-stdin",
            stdin="a good password\n",
        )
        assert added.returncode == 0, added.stderr
        assert pillarbox(first.config_path, "queue", "list").returncode == 0
        # kill -9 leaves no stale lock: the kernel drops it with the process.
        first.kill()
        with second:
            line = refusal(pillarbox(first.config_path, "serve"))
            assert f"(pid {second.pid})" in line


def test_a_server_on_another_data_directory_with_the_same_database_is_refused(
    tmp_path: Path,
) -> None:
    """Two data directories whose ``store.url`` names one absolute database file are one
    store: the second server is refused by the database's lock, and so is a migration from
    the other data directory."""
    database = tmp_path / "shared" / "mail.sqlite3"
    first = Node(tmp_path, "first", f"sqlite://{database}", listeners=["smtp"])
    second = Node(tmp_path, "second", f"sqlite://{database}", listeners=["smtp"])
    second.config_path.write_text(cfg.render_toml(second.config), encoding="utf-8")
    with first:
        line = refusal(pillarbox(second.config_path, "serve"))
        assert line == (
            f"pillarbox: another server (pid {first.pid}) runs on the database {database}: "
            "stop it first, or give this one a database of its own"
        )
        assert not (second.config.data_dir / "tls").exists()  # refused before writing
        assert pillarbox(second.config_path, "domain", "add", "example.org").returncode == 0
    with second:
        assert f"(pid {second.pid}) runs on the database" in refusal(
            pillarbox(first.config_path, "serve")
        )


def test_restore_force_is_refused_while_a_server_runs_on_the_data_directory(
    tmp_path: Path,
) -> None:
    """``restore --force`` moves the data directory aside: under a running server, which would
    go on serving (and accepting mail) from the directory moved aside."""
    node = Node(tmp_path, "site", "sqlite:", listeners=["smtp"])
    saved = tmp_path / "saved"
    with node:
        made = pillarbox(node.config_path, "backup", str(saved))
        assert made.returncode == 0, made.stderr
        # Lock files name a process of this machine: not backed up.
        assert sorted((saved / "data").glob("*server.lock")) == []
        line = refusal(pillarbox(node.config_path, "restore", str(saved), "--force"))
        assert line == (
            f"pillarbox: a server (pid {node.pid}) runs on the data directory "
            f"{node.config.data_dir}: stop it before restoring"
        )
        assert not list(tmp_path.glob("site.before-restore-*"))
    restored = pillarbox(node.config_path, "restore", str(saved), "--force")
    assert restored.returncode == 0, restored.stderr
    assert len(list(tmp_path.glob("site.before-restore-*"))) == 1


@pytest.fixture(params=["sqlite", "postgresql"])
def behind(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, int]:
    """A store URL whose schema is one migration behind this code, and that version."""
    if request.param == "sqlite":
        data_dir = tmp_path / "older"
        data_dir.mkdir()
        conn = sqlite3.connect(data_dir / "pillarbox.sqlite3", isolation_level=None)
        version = sqlite_migrations.migrate(conn, target=sqlite_migrations.MIGRATIONS[-2].version)
        conn.close()
        return "sqlite:", version
    reason = unreachable_reason()
    if reason is not None:
        pytest.skip(reason)
    database: TestDatabase = request.getfixturevalue("database")
    url = database.new_store_url()

    async def migrate() -> int:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await pg_migrations.migrate(conn, target=pg_migrations.MIGRATIONS[-2].version)

    return url, asyncio.run(migrate())


def schema_of(node: Node) -> int:
    url = node.config.store.url
    if url == "sqlite:":
        with sqlite3.connect(node.config.data_dir / "pillarbox.sqlite3") as conn:
            return sqlite_migrations.schema_version(conn)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    assert row is not None
    return int(row[0])


def test_a_newer_version_does_not_migrate_under_a_running_server(
    tmp_path: Path, behind: tuple[str, int]
) -> None:
    url, version = behind
    script = tmp_path / "older_pillarbox.py"
    script.write_text(OLDER, encoding="utf-8")
    old = Node(tmp_path, "older", url, listeners=["smtp"], program=[str(script)])
    new = Node(tmp_path, "newer", url, listeners=["smtp"])
    new.config = dataclasses.replace(
        new.config, server=dataclasses.replace(new.config.server, data_dir=str(old.config.data_dir))
    )
    new.config_path.write_text(cfg.render_toml(new.config), encoding="utf-8")
    # The number of the migration after the latest.
    migrations = sqlite_migrations if url == "sqlite:" else pg_migrations
    latest = migrations.LATEST_VERSION
    with old:
        # The newer version's admin command: refused, the schema untouched.
        line = refusal(pillarbox(new.config_path, "status"))
        assert line.startswith(
            f"pillarbox: the store needs upgrading from schema {version} to {latest}, but "
        )
        assert "stop the server" in line
        assert line.endswith("(docs/upgrading.md)")
        # The newer server: refused as well (on SQLite, as the data directory's second server).
        line = refusal(pillarbox(new.config_path, "serve"))
        if url == "sqlite:":
            assert f"another server (pid {old.pid})" in line
        else:
            assert "other servers run on it: stop every node first" in line
        assert schema_of(old) == version
    # Once the old server is stopped the newer one migrates at its start, and runs.
    with new:
        assert schema_of(new) == latest
        assert pillarbox(new.config_path, "status").returncode == 0
