"""Mutt sending through our submission port and reading over IMAPS, without a person.

Sending is mutt's batch mode (message on stdin): SMTP with STARTTLS (``ssl_force_tls``, the
certificate verified against our self-signed one) and SASL through GNU SASL, then the copy in
the IMAP Sent folder (``record``, by APPEND). Reading needs mutt's
screen, so mutt runs on a pseudo-terminal (``script``) with keys pushed by ``-e 'push …'``: it
opens the IMAPS INBOX, tags by a body search that runs on the server (``=B``: IMAP SEARCH), saves
the tagged messages to a local mbox, flags them, moves them to the Archive folder and quits.
What it saved and what the server's folders then hold are the outcome; what mutt drew on the
screen is not looked at.
"""

from __future__ import annotations

import imaplib
import shlex
import smtplib
import ssl
from pathlib import Path

import pytest

from pillarbox.net.tls import tls_paths
from pillarbox.testing.live import TEST_PASSWORD, LiveServer
from pillarbox.testing.peers import require, run

pytestmark = pytest.mark.listeners("smtp", "submission", "imaps")

TOKEN = "walrus-7f3a"


def muttrc(live: LiveServer, home: Path, user: str) -> Path:
    home.mkdir(exist_ok=True)
    rc = home / "muttrc"
    quoted_user = user.replace("@", "%40")
    rc.write_text(
        f'set from = "{user}"\nset realname = "Mutt User"\n'
        f'set smtp_url = "smtp://{quoted_user}@localhost:{live.port("submission")}/"\n'
        f'set smtp_pass = "{TEST_PASSWORD}"\nset imap_user = "{user}"\n'
        f'set imap_pass = "{TEST_PASSWORD}"\n'
        f'set folder = "imaps://localhost:{live.port("imaps")}/"\nset spoolfile = "+INBOX"\n'
        "set ssl_starttls = yes\nset ssl_force_tls = yes\n"
        f'set ssl_ca_certificates_file = "{tls_paths(live.config)[0]}"\n'
        # The copy of what is sent goes to the IMAP Sent folder (APPEND).
        'set record = "+Sent"\nset header_cache = ""\nset message_cachedir = ""\n'
        "set mbox_type = mbox\nset confirmappend = no\nset confirmcreate = no\n"
        "set quit = yes\nset delete = yes\nset move = no\nset wait_key = no\nset sleep_time = 0\n"
    )
    return rc


def mutt(rc: Path, *args: str, stdin: str | None = None) -> None:
    command = [require("mutt", "mutt"), "-n", "-F", str(rc), *args]
    env = {"HOME": str(rc.parent), "TERM": "xterm"}
    if stdin is None:  # interactive: give mutt a terminal it can draw on
        command = [require("script", "bsdutils"), "-qec", shlex.join(command), "/dev/null"]
    run(command, env=env, stdin=stdin, timeout=30)


def folder(live: LiveServer, user: str, name: str) -> dict[str, set[str]]:
    """{subject: system flags} of one IMAP folder."""
    context = ssl.create_default_context(cafile=str(tls_paths(live.config)[0]))
    with imaplib.IMAP4_SSL("localhost", live.port("imaps"), ssl_context=context) as imap:
        imap.login(user, TEST_PASSWORD)
        typ, count = imap.select(name, readonly=True)
        assert typ == "OK"
        if count == [b"0"]:
            return {}
        typ, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        return {
            item[1].decode().removeprefix("Subject: ").strip(): {
                f.decode() for f in imaplib.ParseFlags(item[0]) if f.startswith(b"\\")
            }
            - {"\\Recent"}
            for item in data
            if isinstance(item, tuple)
        }


def test_send_by_submission_then_search_save_and_flag_over_imaps(
    tls_live: LiveServer, tmp_path: Path
) -> None:
    # A decoy first: mutt's cursor starts on it, so an untagged save or flag would hit it.
    with smtplib.SMTP("127.0.0.1", tls_live.port("smtp")) as client:
        client.sendmail(
            "friend@example.net",
            ["bob@example.org"],
            "From: friend@example.net\r\nSubject: decoy\r\n\r\nNothing to see.\r\n",
        )
    mutt(
        muttrc(tls_live, tmp_path / "alice", "alice@example.org"),
        "-s",
        "sent with mutt",
        "--",
        "bob@example.org",
        stdin=f"The password is {TOKEN}.\n",
    )

    saved = tmp_path / "saved.mbox"
    keys = (
        f"<tag-pattern>=B {TOKEN}<enter>"
        f"<tag-prefix><copy-message>{saved}<enter>"
        "<tag-prefix><flag-message><sync-mailbox>"
        "<tag-prefix><save-message>=Archive<enter><sync-mailbox><quit>"
    )
    mutt(muttrc(tls_live, tmp_path / "bob", "bob@example.org"), "-e", f'push "{keys}"')

    mbox = saved.read_bytes()
    assert mbox.count(b"\nFrom ") + mbox.startswith(b"From ") == 1
    assert b"Subject: sent with mutt" in mbox and TOKEN.encode() in mbox
    assert b"From: Mutt User <alice@example.org>" in mbox
    assert b"with ESMTPSA" in mbox  # our Received: submitted over TLS, authenticated
    assert folder(tls_live, "bob@example.org", "INBOX") == {"decoy": set()}
    assert folder(tls_live, "bob@example.org", "Archive") == {"sent with mutt": {"\\Flagged"}}
    assert folder(tls_live, "alice@example.org", "Sent") == {"sent with mutt": {"\\Seen"}}
