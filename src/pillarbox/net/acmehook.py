"""The administrator's commands that publish and remove ACME DNS-01 records in zones our own
DNS server does not serve (``[tls] acme_dns_hook``, ``acme_dns_cleanup_hook``), like certbot's
``--manual-auth-hook`` and ``--manual-cleanup-hook``.

Implementation notes:

- The command is the configured executable (an absolute path) and its fixed arguments, then
  two more: the record's owner name and its TXT value. It is executed directly, never through
  a shell, so nothing in a name or value is interpreted.
- Its environment is built here, not inherited: ``PATH`` (a fixed system one), the record in
  ``PILLARBOX_ACME_RECORD`` and ``PILLARBOX_ACME_VALUE``, and certbot's names for the same
  facts (``CERTBOT_DOMAIN``: the identifier, ``CERTBOT_VALIDATION``: the value), so scripts
  written for certbot work unchanged. The server's own environment (which may hold
  ``PILLARBOX__…`` overrides with secrets) never reaches it.
- The hook is done when it exits: its output goes to a temporary file, not a pipe, so a
  process it leaves running with that output open does not hold the attempt up. It runs in a
  process group of its own, killed whole when the hook runs out of time or the server stops.
- The publishing command must return only once the record is visible to the CA's resolvers
  (certbot's contract too): we cannot ask name servers we do not know. Exit status 0 is
  success; anything else, or running past the timeout (the process is killed), fails the
  attempt with the command's last output.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
from collections.abc import Sequence
from typing import IO

from pillarbox.dns.acmerecords import ChallengeRecord
from pillarbox.errors import PillarboxError

#: The ``PATH`` a hook runs with.
HOOK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Characters of a failed hook's output kept for the log and ``status.json``.
OUTPUT_KEPT = 500


class HookFailed(PillarboxError):
    """A hook could not run, exited non-zero or ran out of time; the message says which."""


async def run_hook(command: Sequence[str], record: ChallengeRecord, timeout: float) -> None:
    """Run ``command`` for ``record`` (module notes: its arguments and environment)."""
    name, value = record.name, record.value
    env = {
        "PATH": HOOK_PATH,
        "PILLARBOX_ACME_RECORD": name,
        "PILLARBOX_ACME_VALUE": value,
        "CERTBOT_DOMAIN": record.identifier,
        "CERTBOT_VALIDATION": value,
    }
    # Output goes to a file, not a pipe: a pipe would keep us waiting for every process that
    # inherited it (a daemon the hook leaves behind), long after the hook itself exited.
    with tempfile.TemporaryFile() as output:
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                name,
                value,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group, killed whole (below)
            )
        except OSError as exc:
            raise HookFailed(f"{command[0]} cannot run: {exc.strerror or exc}") from None
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except (TimeoutError, asyncio.CancelledError) as exc:
            # Out of time, or the server stopping: the hook never outlives its attempt.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # with anything it started
            await asyncio.shield(process.wait())
            if isinstance(exc, TimeoutError):
                raise HookFailed(f"{command[0]} did not finish within {timeout:.0f} s") from None
            raise
        if process.returncode != 0:
            raise HookFailed(
                f"{command[0]} exited with status {process.returncode}: {_tail(output)}"
            )


def _tail(output: IO[bytes]) -> str:
    """The last :data:`OUTPUT_KEPT` characters the hook wrote (a small read, at its end)."""
    size = output.seek(0, os.SEEK_END)
    output.seek(max(0, size - 4 * OUTPUT_KEPT))
    return output.read().decode("utf-8", "replace").strip()[-OUTPUT_KEPT:]
