"""Retrieval with getmail6 over POP3S and IMAPS into a Maildir, leaving mail on the server.

getmail remembers what it fetched by the server's identifiers (POP3 UIDL; IMAP UIDVALIDITY and
UID): run twice with ``delete = false`` it must fetch nothing the second time, and a message
that arrives in between exactly once. A last run with ``delete = true`` empties the mailbox.
getmail refuses to deliver as root, so under root the Maildir belongs to ``nobody``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from email.parser import BytesHeaderParser
from pathlib import Path

import pytest

from pillarbox.net.tls import tls_paths
from pillarbox.store.types import INBOX
from pillarbox.testing.live import TEST_PASSWORD, LiveServer
from pillarbox.testing.peers import reachable_dir, require, run, unprivileged_user

pytestmark = pytest.mark.listeners("smtp", "pop3s", "imaps")

USER = "alice@example.org"
RETRIEVERS = {"pop3s": "SimplePOP3SSLRetriever", "imaps": "SimpleIMAPSSLRetriever"}


@pytest.fixture
def maildir() -> Iterator[Path]:
    root = reachable_dir("pb-getmail-")
    user = unprivileged_user()
    for sub in ("cur", "new", "tmp"):
        (root / "Maildir" / sub).mkdir(parents=True)
    for path in [root / "Maildir", *(root / "Maildir").iterdir()]:
        os.chown(path, user.pw_uid, user.pw_gid)
    yield root / "Maildir"
    shutil.rmtree(root, ignore_errors=True)


def getmail(live: LiveServer, listener: str, maildir: Path, state: Path, *, delete: bool) -> str:
    state.mkdir(exist_ok=True)
    rc = state / f"{listener}.rc"
    rc.write_text(
        f"[retriever]\ntype = {RETRIEVERS[listener]}\nserver = localhost\n"
        f"port = {live.port(listener)}\nusername = {USER}\npassword = {TEST_PASSWORD}\n"
        f"ca_certs = {tls_paths(live.config)[0]}\n"
        f"\n[destination]\ntype = Maildir\npath = {maildir}/\n"
        f"user = {unprivileged_user().pw_name}\n"
        f"\n[options]\ndelete = {str(delete).lower()}\nread_all = false\nverbose = 2\n"
    )
    command = [require("getmail", "getmail6"), "--getmaildir", str(state), "--rcfile", str(rc)]
    result = run(command, timeout=30)
    assert "error" not in result.stdout.lower() + result.stderr.lower(), result.stdout
    return result.stdout


def subjects(maildir: Path) -> list[str]:
    return sorted(
        str(BytesHeaderParser().parsebytes(path.read_bytes())["Subject"])
        for path in maildir.glob("*/*")
    )


@pytest.mark.parametrize("listener", ["pop3s", "imaps"])
def test_leave_on_server_fetches_each_message_once(
    tls_live: LiveServer, maildir: Path, tmp_path: Path, listener: str
) -> None:
    tls_live.deliver(USER, "one")
    tls_live.deliver(USER, "two")
    getmail(tls_live, listener, maildir, tmp_path / "state", delete=False)
    assert subjects(maildir) == ["one", "two"]
    second = getmail(tls_live, listener, maildir, tmp_path / "state", delete=False)
    assert "0 messages (0 bytes) retrieved, 2 skipped" in second
    assert subjects(maildir) == ["one", "two"]
    tls_live.deliver(USER, "three")
    getmail(tls_live, listener, maildir, tmp_path / "state", delete=False)
    assert subjects(maildir) == ["one", "three", "two"]
    assert len(tls_live.mailbox_messages(USER, INBOX)) == 3

    getmail(tls_live, listener, maildir, tmp_path / "state", delete=True)
    assert tls_live.mailbox_messages(USER, INBOX) == []
    assert subjects(maildir) == ["one", "three", "two"]
