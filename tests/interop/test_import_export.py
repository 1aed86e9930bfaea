"""``pillarbox import mbox|maildir`` and ``pillarbox export`` as an operator runs them: files the
test writes the way mutt, Dovecot and Outlook exports look, checked through the store (bytes,
flags, internal dates, folders, full-text index), re-runs that skip what is there, the quota
stop, and the round trip import(export(x)) == x."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest

from pillarbox import config as cfg
from pillarbox.store.interface import Store
from pillarbox.testing.command import backend_site, run_pillarbox
from pillarbox.testing.mailstore import account_contents, with_site_store

T = TypeVar("T")

PASSWORD = "correct horse battery"
USER = "alice@example.org"
OTHER = "bob@example.org"


def _contents(site: Path, address: str) -> dict[str, list[tuple[bytes, frozenset[str], int]]]:
    """Every mailbox of ``address`` with (bytes, flags, internal date in seconds) per message."""
    return {
        name: [(raw, flags, int(when.timestamp())) for raw, flags, when in messages]
        for name, messages in account_contents(site, address).items()
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A site with two accounts, on each store backend (PostgreSQL skipped when unreachable)."""
    site = backend_site(request, tmp_path / "site", USER, PASSWORD)
    added = run_pillarbox(site, "user", "add", OTHER, "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    return site


MBOX = (
    b"From alice@example.org Mon Mar  3 10:00:00 2025\n"
    b"From: Alice <alice@example.org>\n"
    b"Subject: quoted lines\n"
    b"Status: RO\n"
    b"X-Status: A\n"
    b"\n"
    b">From the start of a line\n"
    b"zanzibar appears in the body\n"
    b"\n"
    b"From nobody Mon Mar  3 10:05:00 2025\n"
    b"\n"
    b"From carol@example.net Tue Mar  4 08:00:00 2025\n"
    b"From: carol@example.net\n"
    b"Subject: flagged, unread\n"
    b"X-Status: F\n"
    b"\n"
    b"second\n"
)


def test_import_mbox_with_flags_dates_a_bad_message_and_a_rerun(site: Path, tmp_path: Path) -> None:
    path = tmp_path / "old.mbox"
    path.write_bytes(MBOX)
    result = run_pillarbox(site, "import", "mbox", str(path), "--account", USER, "--json")
    assert result.returncode == 1, result.stderr  # one message failed, and says so
    summary = json.loads(result.stdout)
    assert (summary["imported"], summary["skipped"], summary["failed"]) == (2, 0, 1)
    assert summary["failures"] == [
        {"where": "old.mbox message 2 (byte 182)", "reason": "empty message"}
    ]
    assert "1 message(s) could not be imported" in result.stderr

    inbox = _contents(site, USER)["INBOX"]
    assert inbox == [
        (
            b"From: Alice <alice@example.org>\r\nSubject: quoted lines\r\n\r\n"
            b"From the start of a line\r\nzanzibar appears in the body\r\n",
            frozenset({"\\Seen", "\\Answered"}),
            int(datetime(2025, 3, 3, 10, tzinfo=UTC).timestamp()),
        ),
        (
            b"From: carol@example.net\r\nSubject: flagged, unread\r\n\r\nsecond\r\n",
            frozenset({"\\Flagged"}),
            int(datetime(2025, 3, 4, 8, tzinfo=UTC).timestamp()),
        ),
    ]

    async def searched(store: Store) -> tuple[set[int], str]:
        account = await store.get_account(USER)
        assert account is not None
        box = await store.get_mailbox(account.id, "INBOX")
        infos = await store.message_infos(box.id, [1, 2])
        return await store.search_text(box.id, ["ZANZIBAR"]), infos[2].subject

    assert with_site_store(site, searched) == ({1}, "flagged, unread")

    again = run_pillarbox(
        site, "import", "mbox", str(path), "--account", USER, "--mailbox", "INBOX"
    )
    assert "imported 0, skipped 2 (already present), failed 1" in again.stdout
    assert len(_contents(site, USER)["INBOX"]) == 2


def _maildir_file(folder: Path, sub: str, name: str, text: bytes, mtime: int) -> None:
    (folder / sub).mkdir(parents=True, exist_ok=True)
    for other in ("cur", "new", "tmp"):
        (folder / other).mkdir(exist_ok=True)
    (folder / sub / name).write_bytes(text)
    os.utime(folder / sub / name, (mtime, mtime))


def test_import_maildir_maps_special_folders_and_hierarchy(site: Path, tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    _maildir_file(root, "new", "1000.M1P1.h", b"Subject: new one\n\nhi\n", 1000)
    _maildir_file(root, "cur", "1001.M1P1.h:2,RSa", b"Subject: replied\n\nhi\n", 1001)
    (root / "dovecot-keywords").write_text("0 $Label1\n")
    _maildir_file(root / ".Sent Items", "cur", "1.M1P1.h:2,S", b"Subject: sent\n\n", 2000)
    _maildir_file(root / ".Deleted Items", "cur", "2.M1P1.h:2,ST", b"Subject: bin\n\n", 2001)
    _maildir_file(root / ".Archive.2024", "cur", "3.M1P1.h:2,", b"Subject: old\n\n", 2002)
    _maildir_file(root / ".Entw&APw-rfe", "cur", "4.M1P1.h:2,D", b"Subject: draft\n\n", 2003)
    _maildir_file(root / ".R&AOk-sum&AOk-", "cur", "5.M1P1.h:2,", b"Subject: cv\n\n", 2004)

    result = run_pillarbox(site, "import", "maildir", str(root), "--account", USER)
    assert result.returncode == 0, result.stderr
    assert "imported 7, skipped 0 (already present), failed 0" in result.stdout
    got = _contents(site, USER)
    assert [(m[1], m[2]) for m in got["INBOX"]] == [
        (frozenset(), 1000),
        (frozenset({"\\Answered", "\\Seen", "$Label1"}), 1001),
    ]
    assert got["Sent"] == [(b"Subject: sent\r\n\r\n", frozenset({"\\Seen"}), 2000)]
    assert got["Trash"] == [(b"Subject: bin\r\n\r\n", frozenset({"\\Seen", "\\Deleted"}), 2001)]
    assert got["Archive/2024"] == [(b"Subject: old\r\n\r\n", frozenset(), 2002)]
    assert got["Drafts"] == [(b"Subject: draft\r\n\r\n", frozenset({"\\Draft"}), 2003)]
    assert got["Résumé"] == [(b"Subject: cv\r\n\r\n", frozenset(), 2004)]
    assert "Sent Items" not in got and "Entwürfe" not in got

    async def subscribed(store: Store) -> set[str]:
        account = await store.get_account(USER)
        assert account is not None
        return await store.list_subscriptions(account.id)

    assert {"Archive/2024", "Résumé"} <= with_site_store(site, subscribed)


def test_import_stops_at_the_quota_and_continues_when_run_again(site: Path, tmp_path: Path) -> None:
    quota = run_pillarbox(site, "user", "remove", OTHER, "--yes")
    assert quota.returncode == 0
    added = run_pillarbox(
        site,
        "user",
        "add",
        OTHER,
        "--quota-messages",
        "2",
        "--password-stdin",
        stdin="pw-x1-long\n",
    )
    assert added.returncode == 0, added.stderr
    path = tmp_path / "four.mbox"
    path.write_bytes(
        b"".join(
            b"From x Mon Mar  3 10:00:00 2025\nSubject: %d\n\nbody %d\n\n" % (n, n)
            for n in range(4)
        )
    )
    result = run_pillarbox(site, "import", "mbox", str(path), "--account", OTHER)
    assert result.returncode == 1
    assert "over quota" in result.stderr
    assert "stopped at four.mbox message 3" in result.stderr
    assert "after importing 2 message(s)" in result.stderr
    assert len(_contents(site, OTHER)["INBOX"]) == 2

    async def raise_quota(store: Store) -> None:
        account = await store.get_account(OTHER)
        assert account is not None
        await store.set_quota(account.id, None, None)

    with_site_store(site, raise_quota)
    again = run_pillarbox(site, "import", "mbox", str(path), "--account", OTHER)
    assert again.returncode == 0, again.stderr
    assert "imported 2, skipped 2" in again.stdout
    assert [m[0] for m in _contents(site, OTHER)["INBOX"]] == [
        b"Subject: %d\r\n\r\nbody %d\r\n" % (n, n) for n in range(4)
    ]


def _populate(site: Path, tmp_path: Path) -> None:
    """A lived-in account: every special folder, hierarchy, odd names, keywords, \\Deleted,
    lines that need mbox quoting, a header-only message, 8-bit text."""
    root = tmp_path / "source"
    samples = [
        ("", "cur", b"Subject: plain\n\nFrom here\n>From there\n>>From everywhere\n", "S"),
        ("", "new", b"Subject: unread\n\n\xc3\xa9t\xc3\xa9 8-bit\n", ""),
        ("", "cur", b"Subject: header only\n", "FRT"),
        (".Sent", "cur", b"Subject: sent\n\nbye\n", "S"),
        (".Archive.2024", "cur", b"Subject: deep\n\n", "Sa"),
        (".a%2edot.%7etilde", "cur", b"Subject: odd name\n\nFrom x\n", ""),
        (".R&AOk-sum&AOk-", "cur", b"Subject: cv\n\n", "D"),
    ]
    for index, (folder, sub, text, letters) in enumerate(samples):
        _maildir_file(
            root / folder if folder else root,
            sub,
            f"{1_700_000_000 + index}.M{index}P1.h" + (f":2,{letters}" if sub == "cur" else ""),
            text,
            1_700_000_000 + index * 3600,
        )
    (root / ".Archive.2024" / "dovecot-keywords").write_text("0 $Important\n")
    result = run_pillarbox(site, "import", "maildir", str(root), "--account", USER)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("form", ["maildir", "mbox"])
def test_round_trip_keeps_bytes_flags_dates_and_folders(
    site: Path, tmp_path: Path, form: str
) -> None:
    _populate(site, tmp_path)
    original = _contents(site, USER)
    assert original["a.dot/~tilde"] and original["Archive/2024"][0][1] == {"\\Seen", "$Important"}
    out = tmp_path / "export"
    result = run_pillarbox(site, "export", "--account", USER, f"--{form}", str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["messages"] == sum(len(m) for m in original.values())
    if form == "mbox":
        assert sorted(p.name for p in out.iterdir()) == sorted(
            f"{n}.mbox"
            for n in (
                "INBOX",
                "Archive",
                "Archive.2024",
                "Drafts",
                "R&AOk-sum&AOk-",
                "Junk",
                "Sent",
                "Trash",
                "a%2edot",
                "a%2edot.%7etilde",
            )
        )
    back = run_pillarbox(site, "import", form, str(out), "--account", OTHER)
    assert back.returncode == 0, back.stderr
    copied = _contents(site, OTHER)
    assert {k: v for k, v in copied.items() if v} == {k: v for k, v in original.items() if v}

    again = run_pillarbox(site, "export", "--account", USER, f"--{form}", str(out))
    assert again.returncode == 1
    assert "exists" in again.stderr


def test_export_one_mailbox_to_an_mbox_file(site: Path, tmp_path: Path) -> None:
    _populate(site, tmp_path)
    file = tmp_path / "sent.mbox"
    result = run_pillarbox(
        site, "export", "--account", USER, "--mbox", str(file), "--mailbox", "Sent"
    )
    assert result.returncode == 0, result.stderr
    assert file.read_bytes() == (
        b"From MAILER-DAEMON Wed Nov 15 01:13:20 2023\nSubject: sent\nStatus: RO\n\nbye\n\n"
    )
    assert file.stat().st_mode & 0o777 == 0o600
    both = run_pillarbox(site, "export", "--account", USER, "--mbox", "x", "--maildir", "y")
    assert both.returncode == 2
    missing = run_pillarbox(site, "export", "--account", USER, "--mbox", "z", "--mailbox", "Nope")
    assert missing.returncode == 1


def test_a_placeholder_from_line_date_gives_way_to_the_date_header(
    site: Path, tmp_path: Path
) -> None:
    path = tmp_path / "lore.mbox"
    path.write_bytes(
        b"From mboxrd@z Thu Jan  1 00:00:00 1970\n"
        b"Date: Wed, 5 Jun 2024 14:30:00 +0200\nSubject: patch\n\n>From a quoted line\n\n"
    )
    result = run_pillarbox(site, "import", "mbox", str(path), "--account", USER)
    assert result.returncode == 0, result.stderr
    ((raw, _, when),) = _contents(site, USER)["INBOX"]
    assert when == int(datetime(2024, 6, 5, 12, 30, tzinfo=UTC).timestamp())
    assert raw.endswith(b"\r\n\r\nFrom a quoted line\r\n")


def test_import_while_the_server_runs_shows_up_over_imap(tmp_path: Path) -> None:
    """The importer is one more writer of the store the server uses: a session that has the
    mailbox selected sees the imported messages arrive (EXISTS on NOOP)."""
    import imaplib

    from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config

    site = tmp_path / "live"
    site.mkdir()
    config = loopback_config(Path("data"), only=["imap"], store=cfg.StoreSection(url="sqlite:"))
    (site / "pillarbox.toml").write_text(cfg.render_toml(config), "utf-8")
    with LiveServer(cfg.load(site / "pillarbox.toml")) as live:
        live.add_domain("example.org")
        live.add_account(USER, TEST_PASSWORD)
        client = imaplib.IMAP4("127.0.0.1", live.port("imap"))
        try:
            client.login(USER, TEST_PASSWORD)
            assert client.select("INBOX")[1] == [b"0"]
            path = tmp_path / "in.mbox"
            path.write_bytes(MBOX)
            result = run_pillarbox(site, "import", "mbox", str(path), "--account", USER)
            assert result.returncode == 1, result.stderr  # the empty message
            client.noop()
            assert client.untagged_responses["EXISTS"][-1] == b"2"
            _, data = client.uid("FETCH", "1:*", "(FLAGS)")
            assert b"\\Seen" in data[0] and b"\\Flagged" in data[1]
        finally:
            client.logout()
