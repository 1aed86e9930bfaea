"""mbox as Dovecot writes and reads it: ``import mbox`` of the files a real Dovecot made (its
``Content-Length`` bodies with unquoted ``From `` lines, ``X-IMAPbase``/``X-UID``/``Status``/
``X-Status``/``X-Keywords``), and Dovecot serving the files ``export --mbox`` wrote, read over
IMAP with the same flags, keywords and dates, and the same bytes but for the ``>From `` quoting
of mboxrd, which Dovecot does not undo (it relies on Content-Length instead).

Skipped when Dovecot is not installed (``apt-get install -y dovecot-imapd``).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pillarbox.testing.command import init_site, run_pillarbox
from pillarbox.testing.dovecot import (
    DOVECOT,
    Dovecot,
    imap_client,
    served_contents,
    start_dovecot,
    stop_dovecot,
)
from pillarbox.testing.mailstore import Stored, account_contents

PASSWORD = "correct horse battery"
REMOTE = "alice@old.example"
USER = "alice@example.org"
MBOX_LOCATION = "mbox:~/mail:INBOX=~/mail/inbox"

#: (folder, message, flags): bodies with the lines mbox formats must take care of.
MESSAGES = [
    ("INBOX", b"Subject: one\r\n\r\nFrom the start of a line\r\n>From quoted\r\n", {"\\Seen"}),
    ("INBOX", b"Subject: two\r\n\r\nplain\r\n", {"\\Flagged", "\\Answered", "$Label1"}),
    ("INBOX", b"Subject: three\r\n\r\n\r\nFrom after an empty line\r\n\r\n", set()),
    ("Work", b"Subject: w\r\n\r\nw\r\n", {"\\Deleted", "\\Seen"}),
]


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    if DOVECOT is None:
        pytest.skip("dovecot not installed (apt-get install -y dovecot-imapd)")
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv to drop privileges for dovecot")
    instance = start_dovecot(PASSWORD, [REMOTE], mail_location=MBOX_LOCATION)
    yield instance
    stop_dovecot(instance)


def _when(n: int) -> datetime:
    return datetime(2021, 5, n + 1, 6, 7, 8, tzinfo=UTC)


def _expected() -> dict[str, list[tuple[bytes, frozenset[str], datetime]]]:
    out: dict[str, list[tuple[bytes, frozenset[str], datetime]]] = {}
    for n, (folder, raw, flags) in enumerate(MESSAGES):
        out.setdefault(folder, []).append((raw, frozenset(flags), _when(n)))
    return out


def _site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    init_site(site, USER, PASSWORD)
    return site


def _ours(site: Path) -> dict[str, list[Stored]]:
    return {name: messages for name, messages in account_contents(site, USER).items() if messages}


def test_import_the_mbox_files_dovecot_wrote(dovecot: Dovecot, tmp_path: Path) -> None:
    client = imap_client(dovecot, REMOTE, PASSWORD)
    try:
        client.create_folder("Work")
        for n, (folder, raw, flags) in enumerate(MESSAGES):
            client.append(folder, raw, flags=sorted(flags), msg_time=_when(n))
    finally:
        client.logout()
    mail = dovecot.directory / "home" / REMOTE / "mail"
    assert b"Content-Length:" in (mail / "inbox").read_bytes()
    assert b"\nFrom the start of a line\n" in (mail / "inbox").read_bytes()  # not quoted

    site = _site(tmp_path)
    result = run_pillarbox(site, "import", "mbox", str(mail), "--account", USER)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _ours(site) == _expected()


def test_dovecot_serves_what_export_mbox_wrote(dovecot: Dovecot, tmp_path: Path) -> None:
    site = _site(tmp_path)
    source = tmp_path / "source"
    source.mkdir()
    for n, (folder, raw, flags) in enumerate(MESSAGES):
        letters = "".join(
            {"\\Seen": "S", "\\Flagged": "F", "\\Answered": "R", "\\Deleted": "T"}[f]
            for f in sorted(flags)
            if f.startswith("\\")
        )
        keywords = sorted(f for f in flags if not f.startswith("\\"))
        directory = source if folder == "INBOX" else source / f".{folder}"
        for sub in ("cur", "new", "tmp"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        if keywords:
            (directory / "dovecot-keywords").write_text("0 " + keywords[0] + "\n")
            letters += "a"
        path = directory / "cur" / f"{n}.M1P1.h:2,{letters}"
        path.write_bytes(raw.replace(b"\r\n", b"\n"))
        os.utime(path, (_when(n).timestamp(), _when(n).timestamp()))
    imported = run_pillarbox(site, "import", "maildir", str(source), "--account", USER)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert _ours(site) == _expected()

    mail = dovecot.directory / "home" / REMOTE / "mail"
    mail.mkdir(parents=True)
    for mailbox, file in (("INBOX", "inbox"), ("Work", "Work")):
        exported = run_pillarbox(
            site, "export", "--account", USER, "--mbox", str(mail / file), "--mailbox", mailbox
        )
        assert exported.returncode == 0, exported.stderr
    if os.geteuid() == 0:  # Dovecot runs as nobody: hand it the files
        owner = (dovecot.directory / "passwd").stat()
        for path in [mail.parent, mail, *mail.iterdir()]:
            os.chown(path, owner.st_uid, owner.st_gid)
    # Dovecot reads mboxrd's ">From " quoting as it stands (it relies on Content-Length, which
    # mboxrd does not write): all else — flags, keywords, dates, the other bytes — is the same.
    quoted = {
        folder: [(re.sub(rb"(?m)^(>*From )", rb">\1", raw), flags, when) for raw, flags, when in m]
        for folder, m in _expected().items()
    }
    served = served_contents(dovecot, REMOTE, PASSWORD)
    assert set(served) == set(quoted)
    for folder, messages in quoted.items():
        assert len(served[folder]) == len(messages), folder
        for got, want in zip(served[folder], messages, strict=True):
            assert got == want
