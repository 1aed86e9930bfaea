"""Programs we did not write, run as interop peers: mail clients and servers from Debian.

A test finds its program with :func:`require` (the test is skipped, with the package to install,
when the program is absent), runs a client with :func:`run` (a deadline guards against a hang,
and a failure shows what the program printed), and waits for a daemon with
:func:`wait_for_port` instead of sleeping. Daemons that drop privileges, and clients that refuse
to work as root, need a directory their user can reach: pytest's ``tmp_path`` is private to the
user running the tests, so :func:`reachable_dir` makes one under the system's temporary
directory. :func:`postfix_peer` runs a private Postfix instance (the MTA beside us in the
Postfix peer and LMTP tests).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
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


@dataclass
class PostfixPeer:
    """A running private Postfix: its directory (``conf``, ``queue``, ``data``, ``mail``), the
    port of its smtpd, its master process and the user its daemons run as."""

    directory: Path
    port: int
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        path = self.directory / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_showing(self, text: str, times: int = 1) -> str:
        """The log once ``text`` is in it ``times`` times, else "" (for ``wait_for``): Postfix
        logs a delivery after it reads our 250, which can be after the mailbox shows it."""
        log = self.log()
        return log if log.count(text) >= times else ""


#: master.cf's services besides smtpd: (name, private, unprivileged, limit, command). The
#: delivery agent ``virtual`` is privileged (it switches to the mailbox owner).
_POSTFIX_DAEMONS = (
    ("pickup", "n", "-", "1", "pickup"),
    ("cleanup", "n", "-", "0", "cleanup"),
    ("qmgr", "n", "-", "1", "qmgr"),
    ("rewrite", "-", "-", "-", "trivial-rewrite"),
    ("bounce", "-", "-", "0", "bounce"),
    ("defer", "-", "-", "0", "bounce"),
    ("trace", "-", "-", "0", "bounce"),
    ("verify", "-", "-", "1", "verify"),
    ("proxymap", "-", "-", "-", "proxymap"),
    ("smtp", "-", "-", "-", "smtp"),
    ("relay", "-", "-", "-", "smtp"),
    ("lmtp", "-", "-", "-", "lmtp"),
    ("showq", "n", "-", "-", "showq"),
    ("error", "-", "-", "-", "error"),
    ("retry", "-", "-", "-", "error"),
    ("discard", "-", "-", "-", "discard"),
    ("virtual", "-", "n", "-", "virtual"),
    ("anvil", "-", "-", "1", "anvil"),
    ("scache", "-", "-", "1", "scache"),
    ("tlsmgr", "-", "-", "1", "tlsmgr"),
)


@contextlib.contextmanager
def postfix_peer(
    port: int,
    configure: Callable[[Path, pwd.struct_passwd], Mapping[str, object]],
) -> Iterator[PostfixPeer]:
    """A Postfix instance of the test's own (configuration, queue and data directories) with
    smtpd on ``127.0.0.1:port``, ``master -d`` as a child process stopped on exit.

    ``configure(directory, owner)`` writes any map files it needs under ``directory/conf``
    and returns the ``main.cf`` settings of the test (host names, domains, transports, TLS)
    on top of the common ones here. Postfix's master must start as root (its daemons then
    run as ``mail_owner``, the Debian package's ``postfix`` user): the test is skipped
    otherwise, as it is without Postfix.
    """
    master = require("master", "postfix")
    if os.geteuid() != 0:
        pytest.skip("Postfix's master must start as root (its daemons then run as postfix)")
    try:
        owner = pwd.getpwnam("postfix")
    except KeyError:
        pytest.skip("no postfix user (the Debian package creates it)")
    directory = reachable_dir("pb-postfix-")
    try:
        conf = directory / "conf"
        conf.mkdir()
        for name in ("queue", "data", "mail"):
            (directory / name).mkdir()
        for name in ("data", "mail"):
            os.chown(directory / name, owner.pw_uid, owner.pw_gid)
        settings: dict[str, object] = {
            "compatibility_level": "3.6",
            "config_directory": conf,
            "queue_directory": directory / "queue",
            "data_directory": directory / "data",
            "maillog_file": directory / "maillog",
            "maillog_file_prefixes": directory,
            "mail_owner": owner.pw_name,
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtp_dns_support_level": "disabled",
            "smtpd_peername_lookup": "no",
            "biff": "no",
        }
        settings.update(configure(directory, owner))
        (conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        services = [
            f"127.0.0.1:{port} inet n - n - - smtpd",
            *(
                f"{name} unix {private} {unprivileged} n - {limit} {command}"
                for name, private, unprivileged, limit, command in _POSTFIX_DAEMONS
            ),
            "postlog unix-dgram n - n - 1 postlogd",
        ]
        (conf / "master.cf").write_text("\n".join(services) + "\n")
        # ``postfix check`` makes the queue's directories; ``master -d`` stays in the
        # foreground.
        run([require("postfix", "postfix"), "-c", str(conf), "check"], timeout=30)
        process = subprocess.Popen(
            [master, "-c", str(conf), "-d"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_for_port(port, process, directory / "maillog")
            yield PostfixPeer(directory, port, process)
        finally:
            process.terminate()
            process.wait(timeout=10)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
