"""``pillarbox import gmail`` of a Google Takeout mbox the test writes the way Takeout does (the
``From <id>@xxx`` line with its ``+0000`` date, ``X-GM-THRID`` and ``X-Gmail-Labels`` above
the message, CRLF lines), run as an operator runs it into a serving site, then read the way a
user does: over IMAP with imapclient (folders, hierarchy, flags, bytes, dates), and a re-run
that adds nothing; and a Takeout after an IMAP import of the same account (a Dovecot set up
like Gmail), which finds every message there already."""

from __future__ import annotations

import json
import os
import shutil
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from imapclient import IMAPClient

from pillarbox import config as cfg
from pillarbox.testing.command import init_site, run_pillarbox
from pillarbox.testing.dovecot import DOVECOT, start_dovecot, stop_dovecot
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.mailstore import account_contents

USER = "alice@example.org"


def _when(n: int) -> datetime:
    return datetime(2020, 1, n, 12, 0, 0, tzinfo=UTC)


def _body(n: int) -> bytes:
    """Message ``n`` as Gmail's IMAP would serve it (what must be stored)."""
    return (
        f"From: sender{n}@example.net\r\nTo: {USER}\r\nSubject: message {n}\r\n"
        f"Message-ID: <{n}@example.net>\r\nDate: Wed, {n} Jan 2020 12:00:00 +0000\r\n"
        f"\r\nbody {n}\r\n"
    ).encode()


def _entry(n: int, labels: bytes | None) -> bytes:
    """Message ``n`` as a Takeout mbox entry (``labels`` is the raw header value, folding and
    all; None for a message without the field, as about 2% of real ones are)."""
    when = _when(n)
    head = f"From 17900000000000000{n:02d}@xxx {when:%a %b %d %H:%M:%S} +0000 {when:%Y}\r\n"
    takeout = f"X-GM-THRID: 17900000000000000{n:02d}\r\n".encode()
    if labels is not None:
        takeout += b"X-Gmail-Labels: " + labels + b"\r\n"
    return head.encode() + takeout + _body(n) + b"\r\n"


#: message number → its X-Gmail-Labels value.
LABELS: dict[int, bytes | None] = {
    1: b"Inbox,Important,Opened,Category Updates",
    2: b"Inbox,Unread,Starred,\r\n Work/2024",  # folded, and a nested label
    3: b'Sent,Opened,"Clients, big"',  # a quoted label holding a comma
    4: b"Spam,Inbox,Unread",  # spam must not reach INBOX
    5: b"Trash,Work/2024,Opened",
    6: b"Opened,Archived",  # archived
    7: b"Drafts,Opened",
    8: b"=?UTF-8?Q?Opened,Reise/Norw=C3=A9gien?=",  # RFC 2047, the commas inside
    9: None,
    10: b"Opened,100%",  # a name our mailboxes refuse (a wildcard): kept in Archive
}


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    """A serving site (IMAP) with the account; its config in ``tmp_path/site`` for the CLI."""
    site = tmp_path / "site"
    site.mkdir()
    config = loopback_config(Path("data"), only=["imap"])
    (site / "pillarbox.toml").write_text(cfg.render_toml(config), "utf-8")
    (site / "data").mkdir()
    with LiveServer(cfg.load(site / "pillarbox.toml")) as server:
        server.add_domain("example.org")
        server.add_account(USER, TEST_PASSWORD)
        yield server


def _import(site: Path, path: Path, code: int) -> dict[str, object]:
    result = run_pillarbox(site, "import", "gmail", str(path), "--account", USER, "--json")
    assert result.returncode == code, result.stdout + result.stderr
    summary: dict[str, object] = json.loads(result.stdout)
    return summary


def test_takeout_filed_by_label_read_over_imap_and_a_rerun_adds_nothing(
    live: LiveServer, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    export = tmp_path / "Takeout" / "Mail"
    export.mkdir(parents=True)
    mbox = export / "All mail Including Spam and Trash.mbox"
    mbox.write_bytes(b"".join(_entry(n, labels) for n, labels in LABELS.items()))

    summary = _import(site, mbox, code=1)  # 1: the label "100%" could not be a folder
    assert summary["failures"] == [
        {
            "where": "Gmail label 100%",
            "reason": "folder skipped: mailbox name '100%' contains a control or wildcard "
            "character",
        }
    ]
    # Message 2 is stored twice (INBOX, Work/2024), 3 twice (Sent, "Clients, big").
    assert (summary["imported"], summary["skipped"]) == (12, 0)

    client = IMAPClient("127.0.0.1", port=live.port("imap"), ssl=False, timeout=10)
    client.normalise_times = False  # INTERNALDATE as sent, with its zone
    client.login(USER, TEST_PASSWORD)
    try:
        listed = {name: (flags, delimiter) for flags, delimiter, name in client.list_folders()}
        assert {d for _, d in listed.values()} == {b"/"}
        seen: dict[str, list[tuple[int, set[bytes], bytes, datetime]]] = {}
        for name in listed:
            if b"\\Noselect" in listed[name][0]:
                continue
            client.select_folder(name, readonly=True)
            ids = client.search(["ALL"])
            fetched = client.fetch(ids, ["FLAGS", "BODY.PEEK[]", "INTERNALDATE"]) if ids else {}
            seen[name] = [
                (
                    int(data[b"BODY[]"].split(b"Subject: message ")[1].split(b"\r\n")[0]),
                    set(data[b"FLAGS"]),
                    data[b"BODY[]"],
                    data[b"INTERNALDATE"],
                )
                for _, data in sorted(fetched.items())
            ]
        numbers = {name: [m[0] for m in messages] for name, messages in seen.items() if messages}
        assert numbers == {
            "INBOX": [1, 2],
            "Work/2024": [2],
            "Sent": [3],
            "Clients, big": [3],
            "Junk": [4],
            "Trash": [5],
            "Archive": [6, 9, 10],
            "Drafts": [7],
            "Reise/Norwégien": [8],
        }
        assert "Work" in listed and "Reise" in listed  # the hierarchy above nested labels
        flags = {(name, n): f for name, messages in seen.items() for n, f, _, _ in messages}
        assert flags[("INBOX", 1)] == {b"\\Seen", b"$Important", b"$Category-Updates"}
        assert flags[("INBOX", 2)] == flags[("Work/2024", 2)] == {b"\\Flagged"}
        assert flags[("Junk", 4)] == set()
        assert flags[("Trash", 5)] == flags[("Archive", 6)] == flags[("Archive", 9)] == {b"\\Seen"}
        assert flags[("Drafts", 7)] == {b"\\Seen", b"\\Draft"}
        # The bytes Gmail's IMAP would serve: Takeout's two fields gone; the From line's date.
        for messages in seen.values():
            for n, _, raw, when in messages:
                assert (raw, when) == (_body(n), _when(n))
        # What a client lists in its folder pane, with special-use attributes (RFC 6154).
        specials = {
            name: {a for a in attrs if a in (b"\\Sent", b"\\Junk", b"\\Trash", b"\\Drafts")}
            for name, (attrs, _) in listed.items()
        }
        assert specials["Junk"] == {b"\\Junk"} and specials["Sent"] == {b"\\Sent"}
    finally:
        client.logout()

    stored = account_contents(site, USER)
    again = _import(site, export, code=1)  # the directory: its one mbox file
    assert (again["imported"], again["skipped"]) == (0, 12)
    assert {name: len(messages) for name, messages in account_contents(site, USER).items()} == {
        name: len(messages) for name, messages in stored.items()
    }


def test_import_mbox_of_a_takeout_file_points_to_import_gmail(
    live: LiveServer, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    mbox = tmp_path / "takeout.mbox"
    mbox.write_bytes(_entry(1, LABELS[1]) + _entry(4, LABELS[4]))
    result = run_pillarbox(site, "import", "mbox", str(mbox), "--account", USER)
    assert result.returncode == 0, result.stderr
    assert "is a Google Takeout export: `pillarbox import gmail`" in result.stderr
    # Everything in the one mailbox, as asked, the fields left as they are.
    inbox = account_contents(site, USER)["INBOX"]
    assert [raw.startswith(b"X-GM-THRID: ") for raw, _, _ in inbox] == [True, True]


def test_a_takeout_after_an_imap_import_of_the_same_account_adds_nothing(tmp_path: Path) -> None:
    """Gmail's IMAP serves a message without Takeout's two fields; with them removed, the
    Takeout of the same account finds each message in its folder already (Dovecot set up like
    Gmail: ``[Gmail]/All Mail`` as ``\\All``)."""
    if DOVECOT is None:
        pytest.skip("dovecot not installed (apt-get install -y dovecot-imapd)")
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv to drop privileges for dovecot")
    remote = "alice@gmail.example"
    all_mail = 'mailbox "[Gmail]/All Mail" {\n  auto = create\n  special_use = \\All\n}\n'
    dovecot = start_dovecot(TEST_PASSWORD, [remote], separator="/", mailboxes=all_mail)
    try:
        context = ssl.create_default_context(cafile=str(dovecot.directory / "cert.pem"))
        client = IMAPClient("127.0.0.1", port=dovecot.imaps_port, ssl_context=context)
        client.login(remote, TEST_PASSWORD)
        try:
            client.create_folder("Work/2024")
            for folder, n in (("INBOX", 1), ("INBOX", 2), ("Work/2024", 2)):
                client.append(folder, _body(n), flags=["\\Seen"], msg_time=_when(n))
            for n in (1, 2, 6):  # 6 is archived: in All Mail only
                client.append("[Gmail]/All Mail", _body(n), flags=["\\Seen"], msg_time=_when(n))
        finally:
            client.logout()
        site = tmp_path / "site"
        site.mkdir()
        init_site(site, USER, TEST_PASSWORD)
        copied = run_pillarbox(
            site,
            "import",
            "imap",
            "--host",
            "127.0.0.1",
            "--port",
            str(dovecot.imaps_port),
            "--cafile",
            str(dovecot.directory / "cert.pem"),
            "--user",
            remote,
            "--password-stdin",
            "--account",
            USER,
            stdin=TEST_PASSWORD + "\n",
        )
        assert copied.returncode == 0, copied.stdout + copied.stderr
    finally:
        stop_dovecot(dovecot)
    before = account_contents(site, USER)
    mbox = tmp_path / "takeout.mbox"
    mbox.write_bytes(
        _entry(1, b"Inbox,Opened") + _entry(2, b"Inbox,Work/2024,Opened") + _entry(6, b"Opened")
    )
    summary = _import(site, mbox, code=0)
    assert (summary["imported"], summary["skipped"]) == (0, 4)
    assert account_contents(site, USER) == before
