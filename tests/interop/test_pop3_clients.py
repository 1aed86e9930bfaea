"""POP3 with clients we did not write, and the whole SMTP → POP3 path.

fetchmail in leave-on-server mode (``--keep``) tracks UIDL values across runs: a second run
must download nothing, and a new message only once — which only works if our UIDLs are stable.
"""

from __future__ import annotations

import os
import poplib
import shutil
import smtplib
import subprocess
from pathlib import Path

import pytest

from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.live import LiveServer

pytestmark = pytest.mark.listeners("smtp", "pop3")


def send(live: LiveServer, subject: str) -> bytes:
    raw = (
        f"From: someone@example.net\r\nTo: alice@example.org\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@example.net>\r\n\r\nBody of {subject}.\r\n..dot line\r\n"
    ).encode()
    with smtplib.SMTP("127.0.0.1", live.port("smtp")) as client:
        client.sendmail("someone@example.net", ["alice@example.org"], raw)
    return raw


def test_smtp_to_pop3_byte_identical(live: LiveServer) -> None:
    raw = send(live, "first")
    pop = poplib.POP3("127.0.0.1", live.port("pop3"), timeout=10)
    pop.user("alice@example.org")
    pop.pass_(PASSWORD)
    _, lines, octets = pop.retr(1)
    retrieved = b"\r\n".join(lines) + b"\r\n"
    assert retrieved.endswith(raw)
    assert octets == len(retrieved)  # poplib counts what it read, dot-unstuffed: the listed size
    assert pop.list(1).split()[2] == str(len(retrieved)).encode()
    pop.quit()


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail not installed")
def test_fetchmail_keep_downloads_each_message_once(live: LiveServer, tmp_path: Path) -> None:
    send(live, "one")
    send(live, "two")
    home = tmp_path / "home"
    home.mkdir()
    rc = home / ".fetchmailrc"
    rc.write_text(
        f"poll 127.0.0.1 service {live.port('pop3')} protocol pop3 uidl\n"
        f"  user alice@example.org password '{PASSWORD}' sslproto '' keep\n"
    )
    rc.chmod(0o600)
    mbox = tmp_path / "mbox"
    env = {**os.environ, "HOME": str(home), "FETCHMAILHOME": str(home)}

    def fetch() -> int:
        result = subprocess.run(
            [
                "fetchmail",
                "--nodetach",
                "--fetchmailrc",
                str(rc),
                "--idfile",
                str(home / ".fetchids"),
                "--mda",
                f"cat >> {mbox}",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        # exit 0: mail fetched; 1: no new mail (fetchmail's documented codes)
        assert result.returncode in (0, 1), result.stdout + result.stderr
        return result.returncode

    assert fetch() == 0
    first = mbox.read_bytes()
    assert first.count(b"Subject: one") == 1 and first.count(b"Subject: two") == 1
    assert fetch() == 1  # nothing new
    assert mbox.read_bytes() == first
    send(live, "three")
    assert fetch() == 0
    final = mbox.read_bytes()
    assert final.count(b"Subject: three") == 1 and final.count(b"Subject: one") == 1


@pytest.mark.listeners("smtp", "pop3", "imap")
def test_pop3_delete_is_an_expunge_an_idling_imap_session_sees(live: LiveServer) -> None:
    import imaplib
    import time

    send(live, "keep")
    send(live, "remove")
    imap = imaplib.IMAP4("127.0.0.1", live.port("imap"))
    imap.login("alice@example.org", PASSWORD)
    typ, data = imap.select("INBOX")
    assert typ == "OK" and data == [b"2"]
    imap.send(b"a1 IDLE\r\n")
    assert imap.readline().startswith(b"+")

    pop = poplib.POP3("127.0.0.1", live.port("pop3"), timeout=10)
    pop.user("alice@example.org")
    pop.pass_(PASSWORD)
    assert b"Subject: remove" in b"\r\n".join(pop.top(2, 0)[1])
    pop.dele(2)
    pop.quit()

    imap.sock.settimeout(5)
    started = time.monotonic()
    line = imap.readline()
    for _ in range(5):
        if not line.startswith(b"* 2 FETCH ("):
            break
        # POP3's UPDATE flags \Deleted, then expunges: a session may hear of the first change
        # (even twice) before the second; RFC 9051 §7.5.1 allows the FETCH.
        line = imap.readline()
    assert line == b"* 2 EXPUNGE\r\n"
    assert time.monotonic() - started < 2
    imap.send(b"DONE\r\n")
    assert imap.readline().startswith(b"a1 OK")
    typ, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK" and len([d for d in data if isinstance(d, tuple)]) == 1
    assert b"Subject: keep" in data[0][1]
    imap.logout()
