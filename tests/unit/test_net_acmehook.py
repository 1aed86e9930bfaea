"""The dns-01 hook runner (``pillarbox.net.acmehook``): arguments, environment, failures, and
that a hook past its time is killed with everything it started."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
from pathlib import Path

import pytest

from pillarbox.dns.acmerecords import ChallengeRecord
from pillarbox.net.acmehook import HookFailed, run_hook
from pillarbox.testing.polling import wait_for

RECORD = ChallengeRecord(
    "", "_acme-challenge.example.org", "ZTRx1Ckl1-tM05o5zaizTTA0yUy5AGereMgSNWC6Ll8"
)


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "hook"
    path.write_text(f"#!{sys.executable}\nimport json, os, sys, subprocess, time\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


async def test_arguments_and_a_clean_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PILLARBOX__STORE__URL", "postgresql://user:secret@db/mail")
    out = tmp_path / "out"
    hook = script(
        tmp_path,
        f"open({str(out)!r}, 'w').write(json.dumps([sys.argv[1:], dict(os.environ)]))",
    )
    await run_hook((hook, "add", "--zone=example.org"), RECORD, 30)
    argv, env = json.loads(out.read_text())
    assert argv == ["add", "--zone=example.org", RECORD.name, RECORD.value]
    assert env["CERTBOT_DOMAIN"] == "example.org" and env["CERTBOT_VALIDATION"] == RECORD.value
    assert env["PILLARBOX_ACME_RECORD"] == RECORD.name
    assert "PILLARBOX__STORE__URL" not in env


async def test_failures_name_the_command_and_its_output(tmp_path: Path) -> None:
    hook = script(tmp_path, "print('zone locked'); sys.exit(2)")
    with pytest.raises(HookFailed, match="exited with status 2: zone locked"):
        await run_hook((hook,), RECORD, 30)
    with pytest.raises(HookFailed, match="cannot run"):
        await run_hook((str(tmp_path / "missing"),), RECORD, 30)


async def test_a_hook_past_its_time_is_killed_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    hook = script(
        tmp_path,
        "child = subprocess.Popen(['sleep', '600'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(600)\n",
    )
    with pytest.raises(HookFailed, match="did not finish within"):
        # Long enough for the script to start its child even on a loaded machine.
        await run_hook((hook,), RECORD, 8)
    child = int(pid_file.read_text())

    def gone() -> bool:
        try:
            status = Path(f"/proc/{child}/status").read_text()
        except FileNotFoundError:
            return True
        return "\nState:\tZ" in status  # killed, not yet reaped by init

    wait_for(gone, "the hook's child to be killed", timeout=10)


async def test_a_daemon_left_behind_does_not_hold_the_hook_up(tmp_path: Path) -> None:
    """The hook exits at once, leaving a process in a session of its own that still has the
    hook's output open: the hook counts as finished when it exits."""
    pid_file = tmp_path / "daemon.pid"
    hook = script(
        tmp_path,
        "daemon = subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
        f"open({str(pid_file)!r}, 'w').write(str(daemon.pid))\n",
    )
    try:
        await run_hook((hook,), RECORD, 60)  # a wait for the output's end would time out
    finally:
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
