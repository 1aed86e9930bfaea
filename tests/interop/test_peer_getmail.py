"""Retrieval with getmail6 over POP3S and IMAPS, leaving mail on the server.

getmail remembers what it fetched by the server's identifiers (POP3 UIDL; IMAP UIDVALIDITY and
UID): run twice with ``delete = false`` it must fetch nothing the second time, and a message
that arrives in between exactly once. A last run with ``delete = true`` empties the mailbox.

getmail hands what it fetches to our own lmtp listener, into bob's INBOX, and not to a Maildir:
its Maildir (and mbox, and external MDA) delivery forks a child and only then installs the
SIGCHLD handler it waits on, so a child that exits first is never heard of and getmail hangs
for its whole socket timeout (getmail6 issue #226; the CI run that timed out after the first
message). Its LMTP delivery forks nothing.
"""

from __future__ import annotations

from email.parser import BytesHeaderParser
from pathlib import Path

import pytest

from pillarbox.net.tls import tls_paths
from pillarbox.store.types import INBOX
from pillarbox.testing.live import TEST_PASSWORD, LiveServer
from pillarbox.testing.peers import require, run

pytestmark = pytest.mark.listeners("smtp", "lmtp", "pop3s", "imaps")

USER = "alice@example.org"
#: Whose INBOX getmail delivers what it fetched to.
FETCHED = "bob@example.org"
RETRIEVERS = {"pop3s": "SimplePOP3SSLRetriever", "imaps": "SimpleIMAPSSLRetriever"}


def getmail(live: LiveServer, listener: str, state: Path, *, delete: bool) -> str:
    state.mkdir(exist_ok=True)
    rc = state / f"{listener}.rc"
    rc.write_text(
        f"[retriever]\ntype = {RETRIEVERS[listener]}\nserver = localhost\n"
        f"port = {live.port(listener)}\nusername = {USER}\npassword = {TEST_PASSWORD}\n"
        f"ca_certs = {tls_paths(live.config)[0]}\n"
        f"\n[destination]\ntype = MDA_lmtp\nhost = 127.0.0.1\nport = {live.port('lmtp')}\n"
        f"override = {FETCHED}\n"
        f"\n[options]\ndelete = {str(delete).lower()}\nread_all = false\nverbose = 2\n"
    )
    command = [require("getmail", "getmail6"), "--getmaildir", str(state), "--rcfile", str(rc)]
    result = run(command, timeout=30)
    assert "error" not in result.stdout.lower() + result.stderr.lower(), result.stdout
    return result.stdout


def fetched(live: LiveServer) -> list[str]:
    return sorted(
        str(BytesHeaderParser().parsebytes(raw)["Subject"])
        for raw in live.mailbox_messages(FETCHED, INBOX)
    )


@pytest.mark.parametrize("listener", ["pop3s", "imaps"])
def test_leave_on_server_fetches_each_message_once(
    tls_live: LiveServer, tmp_path: Path, listener: str
) -> None:
    tls_live.deliver(USER, "one")
    tls_live.deliver(USER, "two")
    getmail(tls_live, listener, tmp_path / "state", delete=False)
    assert fetched(tls_live) == ["one", "two"]
    second = getmail(tls_live, listener, tmp_path / "state", delete=False)
    assert "0 messages (0 bytes) retrieved, 2 skipped" in second
    assert fetched(tls_live) == ["one", "two"]
    tls_live.deliver(USER, "three")
    getmail(tls_live, listener, tmp_path / "state", delete=False)
    assert fetched(tls_live) == ["one", "three", "two"]
    assert len(tls_live.mailbox_messages(USER, INBOX)) == 3

    getmail(tls_live, listener, tmp_path / "state", delete=True)
    assert tls_live.mailbox_messages(USER, INBOX) == []
    assert fetched(tls_live) == ["one", "three", "two"]
