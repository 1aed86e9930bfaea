"""Maildir as Dovecot writes and reads it: ``import maildir`` of the tree a real Dovecot made
(file names with ``,S=``/``,W=``, ``dovecot-keywords``, modified UTF-7 folder names, mtimes as
internal dates), and ``export --maildir`` served by Dovecot to an IMAP client with the same
folders, flags, keywords, dates and bytes.

Skipped when Dovecot is not installed (``apt-get install -y dovecot-imapd``).
"""

from __future__ import annotations

import os
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
FOLDERS = ("INBOX", "Entwürfe", "Work.2024")  # Dovecot's separator here is "."


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    if DOVECOT is None:
        pytest.skip("dovecot not installed (apt-get install -y dovecot-imapd)")
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv to drop privileges for dovecot")
    instance = start_dovecot(PASSWORD, [REMOTE])
    yield instance
    stop_dovecot(instance)


def _message(n: int) -> bytes:
    return f"From: x{n}@example.net\r\nSubject: m{n}\r\n\r\nbody {n}\r\n".encode()


def _when(n: int) -> datetime:
    return datetime(2022, 2, n, 8, 30, tzinfo=UTC)


#: (folder, message, flags) as put into Dovecot and expected back.
MESSAGES = [
    ("INBOX", 1, {"\\Seen", "$Label1"}),
    ("INBOX", 2, {"\\Flagged", "\\Answered"}),
    ("Entwürfe", 3, {"\\Draft", "\\Seen"}),
    ("Work.2024", 4, {"\\Deleted", "Project-X"}),
]
OURS = {"INBOX": "INBOX", "Entwürfe": "Drafts", "Work.2024": "Work/2024"}


def _site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    init_site(site, USER, PASSWORD)
    return site


def _contents(site: Path) -> dict[str, list[Stored]]:
    return account_contents(site, USER)


def test_import_the_maildir_dovecot_wrote(dovecot: Dovecot, tmp_path: Path) -> None:
    client = imap_client(dovecot, REMOTE, PASSWORD)
    try:
        for folder in FOLDERS[1:]:
            client.create_folder(folder)
        for folder, n, flags in MESSAGES:
            client.append(folder, _message(n), flags=sorted(flags), msg_time=_when(n))
    finally:
        client.logout()
    maildir = dovecot.directory / "home" / REMOTE / "Maildir"
    assert (maildir / ".Entw&APw-rfe").is_dir()  # Dovecot's on-disk name, as we read it
    assert any(maildir.glob("dovecot-keywords")) or any(maildir.glob(".*/dovecot-keywords"))

    site = _site(tmp_path)
    result = run_pillarbox(site, "import", "maildir", str(maildir), "--account", USER)
    assert result.returncode == 0, result.stdout + result.stderr
    got = _contents(site)
    for folder, n, flags in MESSAGES:
        assert (_message(n), frozenset(flags), _when(n)) in got[OURS[folder]], (folder, n)


def test_dovecot_serves_what_export_maildir_wrote(dovecot: Dovecot, tmp_path: Path) -> None:
    site = _site(tmp_path)
    source = tmp_path / "source"
    for folder, n, flags in MESSAGES:
        letters = "".join(
            {
                "\\Seen": "S",
                "\\Flagged": "F",
                "\\Answered": "R",
                "\\Draft": "D",
                "\\Deleted": "T",
            }.get(f, "")
            for f in sorted(flags)
        )
        keywords = sorted(f for f in flags if not f.startswith("\\"))
        directory = (
            source
            if folder == "INBOX"
            else source
            / (
                "."
                + {
                    "Entwürfe": "R&AOk-sum&AOk-",
                    "Work.2024": "Work.2024",
                }[folder]
            )
        )
        for sub in ("cur", "new", "tmp"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        if keywords:
            (directory / "dovecot-keywords").write_text(
                "".join(f"{i} {k}\n" for i, k in enumerate(keywords))
            )
            letters += "".join(chr(ord("a") + i) for i in range(len(keywords)))
        path = directory / "cur" / f"{n}.M1P1.h:2,{letters}"
        path.write_bytes(_message(n).replace(b"\r\n", b"\n"))
        os.utime(path, (_when(n).timestamp(), _when(n).timestamp()))
    imported = run_pillarbox(site, "import", "maildir", str(source), "--account", USER)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    ours = {name: msgs for name, msgs in _contents(site).items() if msgs}

    home = dovecot.directory / "home" / REMOTE
    exported = run_pillarbox(site, "export", "--account", USER, "--maildir", str(home / "Maildir"))
    assert exported.returncode == 0, exported.stderr
    if os.geteuid() == 0:  # Dovecot runs as nobody: hand it the tree
        owner = (dovecot.directory / "passwd").stat()
        for path in [home, *home.rglob("*")]:
            os.chown(path, owner.st_uid, owner.st_gid)
    served = served_contents(dovecot, REMOTE, PASSWORD)
    assert set(served) == {"INBOX", "Résumé", "Work.2024"}
    assert set(ours) == {"INBOX", "Résumé", "Work/2024"}
    for name, messages in ours.items():
        assert served[name.replace("/", ".")] == messages, name
