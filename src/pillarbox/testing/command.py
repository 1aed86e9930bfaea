"""The ``pillarbox`` command run as operators and scripts run it: one subprocess per command,
configured only by the site directory's ``pillarbox.toml`` (never by the calling test's
environment) and hashing passwords cheaply so that a test may add many users.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from pillarbox.testing.live import TEST_STORE_ENV
from pillarbox.testing.postgres import TestDatabase, unreachable_reason


def run_pillarbox(
    site: Path,
    *args: str,
    stdin: str | None = None,
    config: bool = True,
    env_extra: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``pillarbox --config SITE/pillarbox.toml ARGS`` in ``site`` (without ``--config`` when
    ``config`` is false); ``env_extra`` is added to the environment. Never raises on a failed
    command: the caller checks ``returncode``. The timeout only guards against a hang."""
    env = {**os.environ, "PILLARBOX__AUTH__ARGON2_MEMORY_COST": "1024", **(env_extra or {})}
    env.pop("PILLARBOX_CONFIG", None)
    env.pop(TEST_STORE_ENV, None)
    prefix = ["--config", str(site / "pillarbox.toml")] if config else []
    return subprocess.run(
        [sys.executable, "-m", "pillarbox.cli", *prefix, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=site,
        timeout=120,
        check=False,
    )


def start_serve(path: Path) -> tuple[subprocess.Popen[str], dict[str, int]]:
    """``pillarbox --config PATH serve`` started, once it says where it listens: the process
    (the caller stops it) and each listener's port, as its start-up lines print them."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pillarbox.cli", "--config", str(path), "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    ports: dict[str, int] = {}
    for line in process.stdout:
        match = re.match(r"\s+(\w+)\s+127\.0\.0\.1:(\d+)", line)
        if match:
            ports[match.group(1)] = int(match.group(2))
        if line.startswith("Stop with"):
            break
    return process, ports


def init_site(site: Path, address: str, password: str, *extra: str) -> None:
    """``pillarbox init --dev`` in ``site`` hosting ``address``'s domain with that one account;
    ``extra`` are more ``init`` options. Fails the test if ``init`` fails."""
    result = run_pillarbox(
        site,
        "init",
        "--dev",
        "--data-dir",
        "data",
        "--domain",
        address.rpartition("@")[2],
        "--user",
        address,
        "--password-stdin",
        *extra,
        stdin=password + "\n",
    )
    assert result.returncode == 0, result.stderr


def backend_site(request: pytest.FixtureRequest, site: Path, address: str, password: str) -> Path:
    """:func:`init_site` in ``site`` on the backend ``request.param`` names ("sqlite" or
    "postgresql": a new database of the ``database`` fixture's server, the test skipped when
    that server cannot be reached), for fixtures parametrized over both."""
    site.mkdir()
    if request.param == "postgresql":
        reason = unreachable_reason()
        if reason is not None:
            pytest.skip(reason)
        database: TestDatabase = request.getfixturevalue("database")
        init_site(site, address, password, "--store", database.new_store_url())
    else:
        init_site(site, address, password)
    return site
