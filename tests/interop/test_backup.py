"""``pillarbox backup`` of a live site while mail arrives and is deleted, ``pillarbox restore``
into a fresh directory, and a server on the restored site read over IMAP.

The store keeps message bytes as files (``?blobs=files``): the case where the database
snapshot and the blob files must agree.
"""

from __future__ import annotations

import imaplib
import json
import threading
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.store.types import INBOX, FlagOp
from pillarbox.testing.command import run_pillarbox
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.polling import wait_for
from pillarbox.transfer import backup

USER = "alice@example.org"


def _site(site: Path, data_dir: str = "data") -> cfg.Config:
    """A loopback site whose config file names its data directory relatively (``data``), as
    ``pillarbox init`` writes it, so that the site can move (``"."``: the config in the data
    directory, as ``pillarbox demo`` keeps it)."""
    site.mkdir()
    config = loopback_config(
        Path(data_dir), only=["smtp", "imap"], store=cfg.StoreSection(url="sqlite:?blobs=files")
    )
    (site / "pillarbox.toml").write_text(cfg.render_toml(config), "utf-8")
    return cfg.load(site / "pillarbox.toml")


def _imap_messages(live: LiveServer) -> list[bytes]:
    client = imaplib.IMAP4("127.0.0.1", live.port("imap"))
    try:
        client.login(USER, TEST_PASSWORD)
        client.select(INBOX, readonly=True)
        _, data = client.uid("FETCH", "1:*", "(BODY.PEEK[])")
        return [item[1] for item in data if isinstance(item, tuple)]
    finally:
        client.logout()


def test_backup_while_serving_then_restore_and_read_over_imap(tmp_path: Path) -> None:
    config = _site(tmp_path / "site")
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account(USER, TEST_PASSWORD)
        for n in range(5):
            live.deliver(USER, f"before {n}")
        stop = threading.Event()
        sent: list[int] = []

        def keep_delivering() -> None:
            while not stop.is_set() and len(sent) < 200:
                live.deliver(USER, f"during {len(sent)}")
                sent.append(1)

        deleted: list[int] = []

        def delete_one(attempt: int) -> None:
            """After the first snapshot: expunge a message it holds, so that its blob file is
            deleted before the copy reaches it; the backup must take a new snapshot."""
            if attempt != 1:
                return
            account = live.call(live.store.get_account(USER))
            assert account is not None
            inbox = live.call(live.store.get_mailbox(account.id, INBOX))
            first = live.call(live.store.list_messages(inbox.id))[0]
            live.call(
                live.store.store_flags(inbox.id, [first.uid], FlagOp.ADD, frozenset({"\\Deleted"}))
            )
            live.call(live.store.expunge(inbox.id, [first.uid]))
            blob = config.data_dir / "blobs" / first.blob_id[:2] / first.blob_id
            wait_for(lambda: not blob.exists(), what="the expunged message's blob file removed")
            deleted.append(first.uid)

        delivering = threading.Thread(target=keep_delivering)
        delivering.start()
        try:
            wait_for(lambda: len(sent) >= 3, what="deliveries under way")
            result = backup.backup(config, tmp_path / "backup", after_snapshot=delete_one)
        finally:
            stop.set()
            delivering.join(60)
        assert deleted and result.snapshots == 2
        live_messages = live.mailbox_messages(USER, INBOX)

    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert manifest["store"]["snapshots"] == 2
    assert (tmp_path / "backup" / "data" / "tls" / "key.pem").stat().st_mode & 0o777 == 0o600
    # The snapshot is one self-contained file: no -wal or -shm beside it.
    assert not list((tmp_path / "backup" / "data").glob("*.sqlite3-*"))
    backed = sorted((tmp_path / "backup" / "data" / "blobs").glob("*/*"))
    assert len(backed) == result.blobs >= result.messages >= 4

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    restored = run_pillarbox(fresh, "restore", str(tmp_path / "backup"))
    assert restored.returncode == 0, restored.stderr
    assert f"restored {result.messages} messages" in restored.stdout
    again = run_pillarbox(fresh, "restore", str(tmp_path / "backup"))
    assert again.returncode == 1 and "in the way" in again.stderr

    restored_config = cfg.load(fresh / "pillarbox.toml")
    assert restored_config.data_dir == fresh / "data"
    assert (fresh / "data" / "tls" / "key.pem").stat().st_mode & 0o777 == 0o600
    with LiveServer(restored_config) as server:
        read = _imap_messages(server)
    assert len(read) == result.messages
    # Every restored message is one the live server had, byte for byte, in order: the
    # snapshot is a prefix of what arrived (after the expunged first one).
    assert read == live_messages[: len(read)]
    assert all(b"Subject: before 0" not in m for m in read)


def test_restore_refuses_a_non_empty_data_dir_unless_forced(tmp_path: Path) -> None:
    config = _site(tmp_path / "site")
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account(USER, TEST_PASSWORD)
        live.deliver(USER, "one")
    made = run_pillarbox(tmp_path / "site", "backup", str(tmp_path / "b"), "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["messages"] == 1
    inside = run_pillarbox(tmp_path / "site", "backup", str(config.data_dir / "b"))
    assert inside.returncode == 1 and "inside the data directory" in inside.stderr

    target = tmp_path / "target"
    (target / "data").mkdir(parents=True)
    (target / "data" / "something").write_text("x")
    refused = run_pillarbox(target, "restore", str(tmp_path / "b"))
    assert refused.returncode == 1 and f"{target / 'data'}: in the way" in refused.stderr
    assert not (target / "pillarbox.toml").exists()
    forced = run_pillarbox(target, "restore", str(tmp_path / "b"), "--force")
    assert forced.returncode == 0, forced.stderr
    assert "moved aside" in forced.stdout
    (aside,) = target.glob("data.before-restore-*")
    assert (aside / "something").read_text() == "x"


def test_backup_of_a_postgres_site_says_what_to_do(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    config = loopback_config(
        Path("data"), store=cfg.StoreSection(url="postgresql://postgres@127.0.0.1:1/none")
    )
    (site / "pillarbox.toml").write_text(cfg.render_toml(config), "utf-8")
    result = run_pillarbox(site, "backup", str(tmp_path / "b"))
    assert result.returncode == 1
    assert "pg_dump" in result.stderr
    assert (tmp_path / "b" / "pillarbox.toml").is_file()
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["store"] == {"kind": "postgresql", "included": False}
    (tmp_path / "elsewhere").mkdir()
    refused = run_pillarbox(tmp_path / "elsewhere", "restore", str(tmp_path / "b"))
    assert refused.returncode == 1 and "holds no mail" in refused.stderr


@pytest.fixture(autouse=True)
def _no_test_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """These sites choose their store themselves (SQLite with blob files)."""
    monkeypatch.delenv("PILLARBOX_TEST_STORE", raising=False)


def test_a_database_outside_the_data_dir_is_backed_up_and_put_back(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    database = tmp_path / "db" / "mail.sqlite3"
    config = loopback_config(
        Path("data"), only=["imap"], store=cfg.StoreSection(url=f"sqlite://{database}")
    )
    (site / "pillarbox.toml").write_text(cfg.render_toml(config), "utf-8")
    with LiveServer(cfg.load(site / "pillarbox.toml")) as live:
        live.add_domain("example.org")
        live.add_account(USER, TEST_PASSWORD)
        live.create_mailbox(USER, "Kept")
    made = run_pillarbox(site, "backup", str(tmp_path / "b"))
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "b" / "store" / "mail.sqlite3").is_file()
    assert not (tmp_path / "b" / "data" / "mail.sqlite3").exists()

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    refused = run_pillarbox(fresh, "restore", str(tmp_path / "b"))
    assert refused.returncode == 1 and f"{database}: in the way" in refused.stderr
    assert list(fresh.iterdir()) == []  # nothing written
    database.unlink()
    restored = run_pillarbox(fresh, "restore", str(tmp_path / "b"))
    assert restored.returncode == 0, restored.stderr
    with LiveServer(cfg.load(fresh / "pillarbox.toml")) as server:
        client = imaplib.IMAP4("127.0.0.1", server.port("imap"))
        try:
            client.login(USER, TEST_PASSWORD)
            _, listed = client.list()
        finally:
            client.logout()
    assert any(b'"Kept"' in line or b" Kept" in line for line in listed if isinstance(line, bytes))


def test_a_site_whose_config_is_in_its_data_dir_restores_into_an_empty_directory(
    tmp_path: Path,
) -> None:
    """`pillarbox demo` keeps its config in the data directory (``data_dir = "."``): the
    restore's own config must not count as something in the way of an empty directory."""
    site = tmp_path / "site"
    with LiveServer(_site(site, data_dir=".")) as live:
        live.add_domain("example.org")
        live.add_account(USER, TEST_PASSWORD)
        live.deliver(USER, "one")
    made = run_pillarbox(site, "backup", str(tmp_path / "b"))
    assert made.returncode == 0, made.stderr

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    restored = run_pillarbox(fresh, "restore", str(tmp_path / "b"))
    assert restored.returncode == 0, restored.stderr
    assert "restored 1 messages (1 blob files)" in restored.stdout
    assert cfg.load(fresh / "pillarbox.toml").data_dir == fresh

    forced = run_pillarbox(fresh, "restore", str(tmp_path / "b"), "--force")
    assert forced.returncode == 0, forced.stderr
    (aside,) = tmp_path.glob("fresh.before-restore-*")
    assert f"moved aside: {aside}\n" in forced.stdout  # the config went with it, not apart
    assert (aside / "pillarbox.toml").is_file() and (fresh / "pillarbox.toml").is_file()
    assert "restored 1 messages" in forced.stdout
