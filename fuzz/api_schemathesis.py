"""Run schemathesis against the JSON API of a live loopback server, from its own OpenAPI document.

Not a test, and schemathesis is not a dependency of the project: install it in a venv of its
own and name its executable (``--schemathesis``, default ``schemathesis`` on ``$PATH``)::

    python3 -m venv /tmp/st && /tmp/st/bin/pip install schemathesis
    PYTHONPATH=src .venv/bin/python fuzz/api_schemathesis.py --schemathesis /tmp/st/bin/schemathesis
    PYTHONPATH=src .venv/bin/python fuzz/api_schemathesis.py -- --max-examples 200 --phases fuzzing

The server is :class:`pillarbox.testing.live.LiveServer` with the http and smtp listeners
(SQLite in a temporary directory; ``$PILLARBOX_TEST_STORE`` puts the store on PostgreSQL as it
does for the tests). ``example.org`` is hosted; the caller is ``admin@example.org``, an
administrator (so the admin operations are reached too) with a few messages in INBOX, a
folder, a contact and a message in the outbound queue, authenticated by an API token
(``Authorization: Bearer``). A second account, ``bob@example.org``, owns mail and a contact
the caller must never reach. Anything after ``--`` goes to ``schemathesis run`` unchanged;
without it every check runs on every phase (examples, coverage, fuzzing, stateful), 100
examples an operation. Revoking a token is left out (the run would revoke its own).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import httpx

from pillarbox.auth.tokens import token_digest
from pillarbox.store.types import Contact, TokenKind
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config

CALLER = "admin@example.org"
OTHER = "bob@example.org"
DEFAULT_ARGS = ("--checks", "all", "--max-examples", "100", "--workers", "1")
#: Revoking a token the run has not made would end the run's own: everything after it is 401.
KEPT_OUT = ("--exclude-operation-id", "revoke_token")


def seed(server: LiveServer) -> str:
    """Hosted domain, the two accounts, their mail and address books; the caller's token."""
    server.add_domain("example.org")
    caller = server.add_account(CALLER, TEST_PASSWORD, is_admin=True)
    other = server.add_account(OTHER, TEST_PASSWORD)
    for n in range(3):
        server.deliver(CALLER, f"to the caller {n}")
    server.deliver(OTHER, "for bob only")
    server.create_mailbox(CALLER, "Projects")
    secret = secrets.token_urlsafe(32)

    async def fill() -> None:
        store = server.store
        for owner in (caller, other):
            contact = Contact(id=0, uid=f"uid-{owner.id}", display_name=f"Friend of {owner.id}")
            await store.save_contacts(owner.id, [contact], now=datetime.now(UTC), limit=100)
        await store.add_token(caller.id, TokenKind.API, "schemathesis", token_digest(secret))

    server.call(fill())
    return secret


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schemathesis", default=os.environ.get("SCHEMATHESIS", "schemathesis"))
    parser.add_argument("extra", nargs="*", help="arguments for `schemathesis run` (after --)")
    options = parser.parse_args()
    executable = shutil.which(options.schemathesis)
    if executable is None:
        parser.error(f"no schemathesis at {options.schemathesis!r}; see this file's docstring")
    with tempfile.TemporaryDirectory(prefix="pillarbox-schemathesis-") as data:
        config = loopback_config(Path(data), only=("http", "smtp"))
        with LiveServer(config) as server:
            secret = seed(server)
            base = f"http://127.0.0.1:{server.port('http')}/api/v1"
            # A message for the queue (the loopback config's DNS answers nothing: it stays).
            queued = httpx.post(
                f"{base}/send",
                json={"to": "someone@remote.test", "subject": "queued", "body": "b"},
                headers={"Authorization": f"Bearer {secret}"},
            )
            queued.raise_for_status()
            url = f"{base}/openapi.json"
            command = [
                executable,
                "run",
                url,
                "--header",
                f"Authorization: Bearer {secret}",
                *KEPT_OUT,
                *(options.extra or DEFAULT_ARGS),
            ]
            print("schemathesis run", url, *command[5:], flush=True)
            return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
