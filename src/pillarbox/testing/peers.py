"""Programs we did not write, run as interop peers: mail clients and servers from Debian.

A test finds its program with :func:`require` (the test is skipped, with the package to install,
when the program is absent), runs a client with :func:`run` (a deadline guards against a hang,
and a failure shows what the program printed), and waits for a daemon with
:func:`wait_for_port` instead of sleeping. Daemons that drop privileges, and clients that refuse
to work as root, need a directory their user can reach: pytest's ``tmp_path`` is private to the
user running the tests, so :func:`reachable_dir` makes one under the system's temporary
directory.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

#: Where Debian keeps programs that are not on an ordinary user's PATH.
_SYSTEM_DIRS = ("/usr/sbin", "/sbin", "/usr/lib/postfix/sbin")


def require(program: str, package: str) -> str:
    """The path of ``program`` (on PATH or in the system directories); skips the calling test,
    naming the Debian ``package`` to install, when it is absent."""
    path = shutil.which(program) or shutil.which(program, path=os.pathsep.join(_SYSTEM_DIRS))
    if path is None:
        pytest.skip(f"{program} not installed (apt-get install {package})")
    return path


def run(
    args: Sequence[str],
    *,
    timeout: float = 30,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    ok: Sequence[int] = (0,),
) -> subprocess.CompletedProcess[str]:
    """Run a client to completion; fails the test unless it exits with a code in ``ok``."""
    result = subprocess.run(
        list(args),
        input=stdin,
        capture_output=True,
        text=True,
        env=None if env is None else {**os.environ, **env},
        timeout=timeout,
        check=False,
    )
    if result.returncode not in ok:
        pytest.fail(
            f"{args[0]} exited {result.returncode}\n--- stdout\n{result.stdout}"
            f"\n--- stderr\n{result.stderr}"
        )
    return result


def wait_for_port(
    port: int,
    process: subprocess.Popen[bytes],
    log: Path,
    *,
    host: str = "127.0.0.1",
    timeout: float = 15,
) -> None:
    """Return once ``host:port`` accepts connections; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    shown = log.read_text(errors="replace") if log.exists() else "(no log)"
    pytest.fail(f"{process.args!r} is not listening on {host}:{port}:\n{shown}")


def unprivileged_user() -> pwd.struct_passwd:
    """Whom a peer that refuses root runs as: ``nobody`` under root, else the current user."""
    return pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())


def reachable_dir(prefix: str) -> Path:
    """A fresh directory that every user may traverse (the caller removes it)."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    directory.chmod(0o755)
    return directory
