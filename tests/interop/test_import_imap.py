"""``pillarbox import imap`` copying a real remote account: Dovecot from Debian set up like Gmail
(``[Gmail]/Sent Mail`` as ``\\Sent``, ``[Gmail]/All Mail`` as ``\\All``, ``[Gmail]/Starred`` as
``\\Flagged``, ``[Gmail]/Important`` as ``\\Important``, ``Spam`` as ``\\Junk``; a message with
two labels in both folders and in All Mail, as Gmail lists it), then read back from our store:
bytes, flags, internal dates, folders; a re-run that copies only what arrived since; the
source left unread.

Skipped when Dovecot is not installed (``apt-get install -y dovecot-imapd``).
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from imapclient import IMAPClient

from pillarbox.store.interface import Store
from pillarbox.testing.command import init_site, run_pillarbox
from pillarbox.testing.dovecot import DOVECOT, Dovecot, start_dovecot, stop_dovecot
from pillarbox.testing.mailstore import Stored, account_contents

PASSWORD = "correct horse battery"
REMOTE = "alice@gmail.example"
USER = "alice@example.org"

GMAIL_FOLDERS = r"""
mailbox "[Gmail]/Sent Mail" {
  auto = create
  special_use = \Sent
}
mailbox "[Gmail]/All Mail" {
  auto = create
  special_use = \All
}
mailbox "[Gmail]/Starred" {
  auto = create
  special_use = \Flagged
}
mailbox "[Gmail]/Important" {
  auto = create
  special_use = \Important
}
mailbox Spam {
  auto = create
  special_use = \Junk
}
"""


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    if DOVECOT is None:
        pytest.skip("dovecot not installed (apt-get install -y dovecot-imapd)")
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv to drop privileges for dovecot")
    instance = start_dovecot(PASSWORD, [REMOTE], separator="/", mailboxes=GMAIL_FOLDERS)
    yield instance
    stop_dovecot(instance)


def _remote(dovecot: Dovecot) -> IMAPClient:
    context = ssl.create_default_context(cafile=str(dovecot.directory / "cert.pem"))
    client = IMAPClient("127.0.0.1", port=dovecot.imaps_port, ssl_context=context, timeout=10)
    client.login(REMOTE, PASSWORD)
    return client


def _message(n: int) -> bytes:
    return (
        f"From: sender{n}@example.net\r\nTo: {REMOTE}\r\nSubject: message {n}\r\n"
        f"Message-ID: <{n}@example.net>\r\n\r\nbody {n}\r\n"
    ).encode()


def _when(n: int) -> datetime:
    return datetime(2023, 1, n, 12, 0, 0, tzinfo=UTC)


def _contents(site: Path) -> dict[str, list[Stored]]:
    return account_contents(site, USER)


def _run_import(
    site: Path, port: int, *options: str, password: str = PASSWORD
) -> subprocess.CompletedProcess[str]:
    """``pillarbox import imap`` of the remote ``REMOTE`` into ``USER``, password on stdin."""
    return run_pillarbox(
        site,
        "import",
        "imap",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--user",
        REMOTE,
        "--password-stdin",
        "--account",
        USER,
        *options,
        stdin=password + "\n",
    )


def _import(site: Path, dovecot: Dovecot, *extra: str, code: int = 0) -> dict[str, object]:
    cafile = str(dovecot.directory / "cert.pem")
    result = _run_import(site, dovecot.imaps_port, "--cafile", cafile, "--json", *extra)
    assert result.returncode == code, result.stdout + result.stderr
    summary: dict[str, object] = json.loads(result.stdout)
    return summary


def test_import_a_gmail_like_account_from_dovecot_then_only_what_is_new(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    client = _remote(dovecot)
    try:
        client.create_folder("Work/2024")
        client.append("INBOX", _message(1), flags=["\\Seen"], msg_time=_when(1))
        client.append("INBOX", _message(2), flags=["\\Flagged", "$Label"], msg_time=_when(2))
        client.append("[Gmail]/Sent Mail", _message(3), flags=["\\Seen"], msg_time=_when(3))
        client.append("Spam", _message(4), msg_time=_when(4))
        client.append("Work/2024", _message(5), flags=["\\Answered"], msg_time=_when(5))
        # Gmail: every message is in All Mail too; 6 is archived (in All Mail only).
        client.append("[Gmail]/All Mail", _message(1), flags=["\\Seen"], msg_time=_when(1))
        client.append("[Gmail]/All Mail", _message(6), flags=["\\Seen"], msg_time=_when(6))
        client.append("[Gmail]/Starred", _message(2), flags=["\\Flagged"], msg_time=_when(2))
        client.append("[Gmail]/Important", _message(1), flags=["\\Seen"], msg_time=_when(1))
        # 8 has two labels (INBOX and Work/2024): Gmail lists it in both, and in All Mail.
        client.append("INBOX", _message(8), flags=["\\Seen"], msg_time=_when(8))
        client.append("Work/2024", _message(8), flags=["\\Seen"], msg_time=_when(8))
        client.append("[Gmail]/All Mail", _message(8), flags=["\\Seen"], msg_time=_when(8))
        listed = {name: set(flags) for flags, _, name in client.list_folders()}
        assert "\\Important" in {f.decode() for f in listed["[Gmail]/Important"]}
    finally:
        client.logout()

    site = tmp_path / "site"
    site.mkdir()
    init_site(site, USER, PASSWORD)
    summary = _import(site, dovecot)
    # All Mail's 1 and 8 skipped (filed already); Starred and Important never read.
    assert (summary["imported"], summary["skipped"], summary["failed"]) == (8, 2, 0)
    got = _contents(site)
    assert got["INBOX"] == [
        (_message(1), frozenset({"\\Seen"}), _when(1)),
        (_message(2), frozenset({"\\Flagged", "$Label"}), _when(2)),
        (_message(8), frozenset({"\\Seen"}), _when(8)),
    ]
    assert got["Sent"] == [(_message(3), frozenset({"\\Seen"}), _when(3))]
    assert got["Junk"] == [(_message(4), frozenset(), _when(4))]
    assert got["Work/2024"] == [
        (_message(5), frozenset({"\\Answered"}), _when(5)),
        (_message(8), frozenset({"\\Seen"}), _when(8)),
    ]
    assert got["Archive"] == [(_message(6), frozenset({"\\Seen"}), _when(6))]
    assert not any(name.startswith("[Gmail]") for name in got)
    assert sum(len(messages) for messages in got.values()) == 8  # nothing twice in a folder
    (state,) = (site / "data" / "imports").iterdir()
    assert state.stat().st_mode & 0o777 == 0o600
    assert REMOTE not in state.name and "INBOX" in json.loads(state.read_text())["folders"]

    client = _remote(dovecot)
    try:
        client.select_folder("INBOX", readonly=True)
        unseen_on_source = client.search(["UNSEEN"])
        assert len(unseen_on_source) == 1  # BODY.PEEK: message 2 is still unread there
        client.append("INBOX", _message(7), msg_time=_when(7))
    finally:
        client.logout()
    again = _import(site, dovecot)
    assert (again["imported"], again["skipped"], again["failed"]) == (1, 0, 0)
    assert [m[0] for m in _contents(site)["INBOX"]] == [_message(n) for n in (1, 2, 8, 7)]

    only = _import(site, dovecot, "--mailbox", "Nope", code=1)
    assert only["failures"] == [{"where": "Nope", "reason": "no such folder on the server"}]


def test_wrong_password_is_refused_with_exit_1(dovecot: Dovecot, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    init_site(site, USER, PASSWORD)
    cafile = str(dovecot.directory / "cert.pem")
    result = _run_import(site, dovecot.imaps_port, "--cafile", cafile, password="wrong")
    assert result.returncode == 1
    assert "IMAP server 127.0.0.1" in result.stderr
    untrusted = _run_import(site, dovecot.imaps_port)
    assert untrusted.returncode == 1
    assert "certificate not trusted" in untrusted.stderr


def test_a_courier_style_inbox_prefix_is_not_kept(tmp_path: Path) -> None:
    """Courier and Cyrus put every folder below INBOX (NAMESPACE prefix ``INBOX.``): their
    ``INBOX.Projects.2025`` is our ``Projects/2025``, ``INBOX.Junk E-mail`` our Junk."""
    if DOVECOT is None:
        pytest.skip("dovecot not installed (apt-get install -y dovecot-imapd)")
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv to drop privileges for dovecot")
    dovecot = start_dovecot(
        PASSWORD,
        [REMOTE],
        separator=".",
        prefix="INBOX.",
        mailboxes="mailbox Sent {\n  auto = create\n  special_use = \\Sent\n}\n",
    )
    try:
        client = _remote(dovecot)
        try:
            folders = {name for _, _, name in client.list_folders()}
            assert "INBOX.Sent" in folders
            client.create_folder("INBOX.Projects.2025")
            client.create_folder("INBOX.Junk E-mail")
            client.append("INBOX", _message(1), msg_time=_when(1))
            client.append("INBOX.Sent", _message(2), msg_time=_when(2))
            client.append("INBOX.Projects.2025", _message(3), msg_time=_when(3))
            client.append("INBOX.Junk E-mail", _message(4), msg_time=_when(4))
        finally:
            client.logout()
        site = tmp_path / "site"
        site.mkdir()
        init_site(site, USER, PASSWORD)
        summary = _import(site, dovecot)
        assert summary["imported"] == 4
        got = {name: [m[0] for m in msgs] for name, msgs in _contents(site).items() if msgs}
        assert got == {
            "INBOX": [_message(1)],
            "Sent": [_message(2)],
            "Projects/2025": [_message(3)],
            "Junk": [_message(4)],
        }
    finally:
        stop_dovecot(dovecot)


def test_import_from_another_pillarbox_over_starttls(tmp_path: Path) -> None:
    """Our own server as the source: STARTTLS with its certificate as the CA, special-use
    folders, a nested folder, flags, keywords and dates."""
    from pillarbox.net.tls import tls_paths
    from pillarbox.store.types import SpecialUse
    from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config

    source = loopback_config(tmp_path / "source-data", only=["imap"])
    with LiveServer(source) as live:
        live.add_domain("gmail.example")
        account = live.add_account(REMOTE, TEST_PASSWORD)
        live.create_mailbox(REMOTE, "Projects/2025")

        async def fill(store: Store) -> None:
            from pillarbox.mail.parse import parse_message

            boxes = {m.name: m for m in await store.list_mailboxes(account.id)}
            assert boxes["Sent"].special_use is SpecialUse.SENT
            for name, n, flags in (
                ("INBOX", 1, {"\\Seen", "$Label"}),
                ("Sent", 2, {"\\Seen"}),
                ("Projects/2025", 3, {"\\Flagged"}),
            ):
                raw = _message(n)
                await store.append(
                    boxes[name].id,
                    raw,
                    parse_message(raw),
                    flags=frozenset(flags),
                    internal_date=_when(n),
                )

        live.with_store(fill)
        site = tmp_path / "site"
        site.mkdir()
        init_site(site, USER, PASSWORD)
        result = _run_import(
            site,
            live.port("imap"),
            "--tls",
            "starttls",
            "--cafile",
            str(tls_paths(live.config)[0]),
            password=TEST_PASSWORD,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    got = {name: msgs for name, msgs in _contents(site).items() if msgs}
    assert got == {
        "INBOX": [(_message(1), frozenset({"\\Seen", "$Label"}), _when(1))],
        "Sent": [(_message(2), frozenset({"\\Seen"}), _when(2))],
        "Projects/2025": [(_message(3), frozenset({"\\Flagged"}), _when(3))],
    }
