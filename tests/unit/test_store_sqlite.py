"""The SQLite backend: the storage contract (both blob modes) plus what is SQLite's own."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from itertools import pairwise
from pathlib import Path

import pytest

from pillarbox.errors import (
    ConfigError,
    NotFound,
    QuotaExceeded,
    SchemaTooNew,
    StorageError,
    StoreInUse,
)
from pillarbox.mail.model import MessageInfo
from pillarbox.mail.parse import parse_message
from pillarbox.store.blobs import STAGED_MAX_AGE, BlobMode, FileBlobStore, blob_id_of
from pillarbox.store.feed import ChangeHub
from pillarbox.store.interface import Store
from pillarbox.store.open import open_store
from pillarbox.store.sqlite import SqliteLimits, SqliteStore
from pillarbox.store.sqlite.migrations import MIGRATIONS, migrate, schema_version
from pillarbox.store.types import INBOX, Change, ChangeKind, DeliveryTarget, FlagOp
from pillarbox.testing.polling import wait_for
from pillarbox.testing.store_contract import (
    DOMAIN,
    StoreContract,
    StoreFactory,
    check_backfilled_dav,
    check_backfilled_schedule_tags,
    check_backfilled_threads,
    make_message,
    store_backfill_dav,
    store_backfill_mail,
    store_backfill_schedule_tags,
)


class _SqliteContract(StoreContract):
    async def settle(self, store: Store) -> None:
        assert isinstance(store, SqliteStore)
        await store.catch_up_index()

    async def outlast_kept(self, store: Store) -> None:
        assert isinstance(store, SqliteStore)
        await asyncio.sleep(store.cross_process_delay)


class TestSqliteStore(_SqliteContract):
    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> StoreFactory:
        return lambda: SqliteStore(tmp_path / "pillarbox.sqlite3")


class TestSqliteStoreFileBlobs(_SqliteContract):
    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> StoreFactory:
        return lambda: SqliteStore(
            tmp_path / "pillarbox.sqlite3", blob_mode=BlobMode.FILES, blob_dir=tmp_path / "blobs"
        )


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "db.sqlite3")
    await store.open()
    yield store
    await store.close()


def _schema(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"
        ).fetchall()
    finally:
        conn.close()
    return [(name, sql) for name, sql in rows]


# -- migrations ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "start", [0, *(m.version for m in MIGRATIONS[:-1])], ids=lambda k: f"from-v{k}"
)
async def test_migrates_from_every_earlier_version(tmp_path: Path, start: int) -> None:
    fresh = tmp_path / "fresh.sqlite3"
    store = SqliteStore(fresh)
    await store.open()
    await store.close()

    old = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(old, isolation_level=None)
    assert migrate(conn, target=start) == start
    assert schema_version(conn) == start
    conn.close()
    upgraded = SqliteStore(old)
    await upgraded.open()
    try:
        await upgraded.add_domain(DOMAIN)
        account = await upgraded.add_account(f"a@{DOMAIN}", "h")
        [result] = await upgraded.deliver(*make_message(1), [DeliveryTarget(account.id)])
        assert result.record is not None
    finally:
        await upgraded.close()
    assert _schema(old) == _schema(fresh)
    conn = sqlite3.connect(old)
    versions = [row[0] for row in conn.execute("SELECT version FROM schema_version")]
    conn.close()
    assert versions == [m.version for m in MIGRATIONS]


async def test_commands_opening_a_new_store_together_migrate_once(tmp_path: Path) -> None:
    """Admin commands run together on a new data directory: the first migrates under the data
    directory's lock, the others wait for it rather than take it for a server's."""
    stores = [open_store("sqlite:", tmp_path) for _ in range(3)]
    await asyncio.gather(*(store.open() for store in stores))
    for store in stores:
        await store.close()
    conn = sqlite3.connect(tmp_path / "pillarbox.sqlite3")
    assert schema_version(conn) == MIGRATIONS[-1].version
    conn.close()


async def test_a_migration_is_refused_while_a_server_holds_the_data_directory(
    tmp_path: Path,
) -> None:
    server = open_store("sqlite:", tmp_path, serving=True)
    await server.open()
    try:
        conn = sqlite3.connect(tmp_path / "other.sqlite3", isolation_level=None)
        migrate(conn, target=MIGRATIONS[-2].version)
        conn.close()
        with pytest.raises(StoreInUse, match=r"needs upgrading .* stop the server first"):
            await open_store("sqlite:other.sqlite3", tmp_path).open()
        reader = open_store("sqlite:", tmp_path)  # no migration to do: runs beside it
        await reader.open()
        await reader.close()
    finally:
        await server.close()
    upgraded = open_store("sqlite:other.sqlite3", tmp_path)
    await upgraded.open()
    await upgraded.close()


_REPORT_ROWS = {  # each report table and a row of it, as version 41 had them
    "dmarc_observations": (
        "INSERT INTO dmarc_observations (received, policy_domain, header_from, envelope_from,"
        " source_ip, disposition, dkim_aligned, spf_aligned, spf_domain, spf_result, dkim,"
        " policy_record, override) VALUES (?, 'd', 'd', '', 'ip', 'none', 0, 0, 'd', 'none',"
        " '[]', 'v=DMARC1', 'other')"
    ),
    "tls_results": (
        "INSERT INTO tls_results (recorded, policy_domain, policy_type, policy_strings,"
        " mx_patterns, result_type, receiving_mx, receiving_ip, sending_ip, failure_reason)"
        " VALUES (?, 'd', 'sts', '[]', '[]', '', 'mx', 'ip', 'ip', '')"
    ),
}


def _reused_after_deleting_the_largest(conn: sqlite3.Connection, table: str) -> bool:
    """Delete the table's largest row and add one: whether the new row took the deleted id."""
    (largest,) = conn.execute(f"SELECT max(id) FROM {table}").fetchone()
    conn.execute(f"DELETE FROM {table} WHERE id = ?", (largest,))
    added = conn.execute(_REPORT_ROWS[table], (0,)).lastrowid
    return bool(added == largest)


async def test_version_42_never_reuses_a_report_row_id(tmp_path: Path) -> None:
    """Version 41's report tables hand a deleted largest id to the next row; version 42 keeps
    their rows (ids, later columns, the time index) and never does."""
    conn = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)
    migrate(conn, target=41)
    for table, insert in _REPORT_ROWS.items():
        conn.executemany(insert, [(stamp,) for stamp in (10, 20, 30)])
        assert _reused_after_deleting_the_largest(conn, table)  # the defect
    before = {table: conn.execute(f"SELECT * FROM {table}").fetchall() for table in _REPORT_ROWS}
    migrate(conn)
    for table in _REPORT_ROWS:
        assert conn.execute(f"SELECT * FROM {table}").fetchall() == before[table]
        assert not _reused_after_deleting_the_largest(conn, table)
    plans = [
        conn.execute(f"EXPLAIN QUERY PLAN SELECT id FROM {table} WHERE {stamp} < 25").fetchall()
        for table, stamp in (("dmarc_observations", "received"), ("tls_results", "recorded"))
    ]
    conn.close()
    assert "dmarc_observations_received" in str(plans[0])
    assert "tls_results_recorded" in str(plans[1])


async def test_data_directories_sharing_a_database_share_its_lock(tmp_path: Path) -> None:
    """Two data directories naming one absolute database file (one through a symlink): one
    server between them, and no migration under it from the other."""
    database = tmp_path / "shared" / "mail.sqlite3"
    (tmp_path / "link").symlink_to(tmp_path / "shared")
    server = open_store(f"sqlite://{database}", tmp_path / "a", serving=True)
    await server.open()
    try:
        elsewhere = f"sqlite://{tmp_path / 'link' / 'mail.sqlite3'}"
        with pytest.raises(StoreInUse) as refused:
            await open_store(elsewhere, tmp_path / "b", serving=True).open()
        assert str(refused.value).endswith(
            f"runs on the database {tmp_path / 'link' / 'mail.sqlite3'}: stop it first, "
            "or give this one a database of its own"
        )
        reader = open_store(elsewhere, tmp_path / "b")  # no migration to do: runs beside it
        await reader.open()
        await reader.close()
        conn = sqlite3.connect(database, isolation_level=None)
        latest = MIGRATIONS[-1]  # as if the server were the version before
        conn.execute("DELETE FROM schema_version WHERE version = ?", (latest.version,))
        with pytest.raises(StoreInUse, match=r"but a server .* runs on the database .*: stop"):
            await open_store(elsewhere, tmp_path / "b").open()
        # The schema as it was: a migration is not for running twice.
        conn.execute(
            "INSERT INTO schema_version (version, description) VALUES (?, ?)",
            (latest.version, latest.description),
        )
        conn.close()
    finally:
        await server.close()
    # Nothing kept by the refused stores: the first refused on the database after taking b's.
    again = open_store(f"sqlite://{database}", tmp_path / "b", serving=True)
    await again.open()
    await again.close()


async def test_version_10_copies_each_message_digest(tmp_path: Path) -> None:
    """Records are read without joining ``blobs`` from version 10 on: messages stored before
    it must have their blob's digest copied beside them."""
    path = tmp_path / "db.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=9)
    conn.executescript(
        f"""
        INSERT INTO domains VALUES ('{DOMAIN}', 0);
        INSERT INTO accounts (id, address, domain, display_name, password_hash, is_admin, created)
            VALUES (1, 'a@{DOMAIN}', '{DOMAIN}', '', 'h', 0, 0);
        INSERT INTO mailboxes (id, account_id, name, uidvalidity, uidnext, highestmodseq)
            VALUES (1, 1, 'INBOX', 1, 2, 2);
        INSERT INTO blobs (id, sha256, size, refcount) VALUES (5, '{"ab" * 32}', 3, 1);
        INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, saved_date, size,
            blob, subject, from_addr, to_addr, cc_addr, message_id, in_reply_to)
            VALUES (1, 1, 2, '', 0, 0, 3, 5, '', '', '', '', '', '');
        """
    )
    conn.close()
    store = SqliteStore(path)
    await store.open()
    try:
        [record] = await store.list_messages(1)
        assert record.blob_id == "ab" * 32
    finally:
        await store.close()


THREADED = (
    b"From: ann@example.org\r\nSubject: Re: plan\r\nMessage-ID: <c@x>\r\n"
    b"In-Reply-To: <b@x>\r\nReferences: <a@x> <b@x>\r\n\r\nbody\r\n"
)


async def test_references_are_backfilled_by_migration_8(tmp_path: Path) -> None:
    """Mail stored before migration 8 gets its References column from the stored structure."""
    path = tmp_path / "db.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await store.add_domain(DOMAIN)
    account = await store.add_account(f"a@{DOMAIN}", "h")
    await store.deliver(THREADED, parse_message(THREADED), [DeliveryTarget(account.id)])
    await store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("ALTER TABLE messages DROP COLUMN refs")  # the table as version 7 had it
    conn.executescript(MIGRATIONS[8 - 1].sql)
    conn.close()
    upgraded = SqliteStore(path)
    await upgraded.open()
    try:
        inbox = await upgraded.get_mailbox(account.id, INBOX)
        [(thread, _)] = await upgraded.thread_sizes(inbox.id)
        [fields] = await upgraded.thread_fields(inbox.id, [thread])
        assert fields.references == ("a@x", "b@x") and fields.in_reply_to == "b@x"
    finally:
        await upgraded.close()


async def test_thread_ids_are_backfilled_by_migration_29(tmp_path: Path) -> None:
    """Mail stored before migration 29 is threaded by it, as delivery would have done."""
    path = tmp_path / "db.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await store_backfill_mail(store)
    await store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(  # the schema as version 28 had it: 29 undone, and those after it
        "DROP INDEX messages_thread; ALTER TABLE messages DROP COLUMN thread; "
        "DROP TABLE thread_keys; DELETE FROM meta WHERE key = 'next_thread'; "
        "ALTER TABLE contacts DROP COLUMN card; "
        "DROP TABLE contact_books; DROP TABLE contact_tombstones; DROP INDEX contacts_modseq; "
        "ALTER TABLE contacts DROP COLUMN modseq; ALTER TABLE contacts DROP COLUMN etag; "
        "DROP TABLE calendar_tombstones; DROP TABLE calendar_objects; DROP TABLE calendars; "
        "DROP TABLE acme_answers; DROP TABLE acme_certificates; DROP TABLE acme_leases; "
        "DROP TABLE sieve_duplicates; ALTER TABLE account_settings DROP COLUMN time_zone; "
        "ALTER TABLE mailbox_acl DROP COLUMN denied; "
        "ALTER TABLE account_settings DROP COLUMN shortcuts; "
        "ALTER TABLE account_settings DROP COLUMN default_calendar; "
        "DROP TABLE mta_sts_policies; DROP TABLE mta_sts_failures; DROP TABLE login_holds; "
        "DROP TABLE acme_accounts; DROP TABLE dnssec_keys; DROP TABLE zone_serials; "
        "DELETE FROM schema_version WHERE version >= 29;"
    )
    conn.close()
    upgraded = SqliteStore(path)
    await upgraded.open()
    try:
        await check_backfilled_threads(upgraded)
    finally:
        await upgraded.close()


async def test_dav_etags_and_sync_state_are_backfilled_by_migration_34(tmp_path: Path) -> None:
    """Contacts and calendar objects stored before migration 34 get their ETags (as a write
    computes them) and the address book its first sync token."""
    path = tmp_path / "db.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await store_backfill_dav(store)
    await store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(  # the schema as version 33 had it
        "DROP TABLE contact_books; DROP TABLE contact_tombstones; DROP INDEX contacts_modseq; "
        "ALTER TABLE contacts DROP COLUMN modseq; ALTER TABLE contacts DROP COLUMN etag; "
        "ALTER TABLE calendars DROP COLUMN description; "
        "ALTER TABLE calendars DROP COLUMN timezone; "
        "ALTER TABLE calendars DROP COLUMN oldest_token; "
        "ALTER TABLE calendar_objects DROP COLUMN etag; "
        "DROP INDEX calendar_tombstones_deleted; "
        "ALTER TABLE calendar_tombstones DROP COLUMN deleted; "
        "DROP TABLE acme_certificates; DROP TABLE acme_leases; DROP TABLE sieve_duplicates; "
        "ALTER TABLE account_settings DROP COLUMN time_zone; "
        "ALTER TABLE mailbox_acl DROP COLUMN denied; "
        "ALTER TABLE calendar_objects DROP COLUMN schedule_tag; "
        "ALTER TABLE account_settings DROP COLUMN shortcuts; "
        "ALTER TABLE account_settings DROP COLUMN default_calendar; "
        "DROP TABLE mta_sts_policies; DROP TABLE mta_sts_failures; DROP TABLE login_holds; "
        "DROP TABLE acme_accounts; DROP TABLE dnssec_keys; DROP TABLE zone_serials; "
        "DELETE FROM schema_version WHERE version >= 34;"
    )
    conn.close()
    upgraded = SqliteStore(path)
    await upgraded.open()
    try:
        await check_backfilled_dav(upgraded)
    finally:
        await upgraded.close()


async def test_schedule_tags_are_backfilled_by_migration_40(tmp_path: Path) -> None:
    """Scheduling objects stored before migration 40 get a first Schedule-Tag (RFC 6638)."""
    path = tmp_path / "db.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await store_backfill_schedule_tags(store)
    await store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(  # the schema as version 39 had it
        "ALTER TABLE calendar_objects DROP COLUMN schedule_tag; "
        "ALTER TABLE account_settings DROP COLUMN shortcuts; "
        "ALTER TABLE account_settings DROP COLUMN default_calendar; "
        "DROP TABLE mta_sts_policies; DROP TABLE mta_sts_failures; DROP TABLE login_holds; "
        "DROP TABLE acme_accounts; DROP TABLE dnssec_keys; DROP TABLE zone_serials; "
        "DELETE FROM schema_version WHERE version >= 40;"
    )
    conn.close()
    upgraded = SqliteStore(path)
    await upgraded.open()
    try:
        await check_backfilled_schedule_tags(upgraded)
    finally:
        await upgraded.close()


async def test_messages_an_old_server_left_without_a_thread_are_threaded_at_open(
    tmp_path: Path,
) -> None:
    """A server from before migration 29, still running while a newer process upgraded the
    store, inserts messages at the thread column's default, 0, with no thread keys: the next
    open threads them as a delivery would (seen in an upgrade, docs/upgrading.md)."""
    path = tmp_path / "db.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await store.add_domain(DOMAIN)
    account = await store.add_account(f"a@{DOMAIN}", "h")
    parent = f"From: b@{DOMAIN}\r\nSubject: s\r\nMessage-ID: <p@x>\r\n\r\nbody\r\n".encode()
    await store.deliver(parent, parse_message(parent), [DeliveryTarget(account.id)])
    await store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    for uid, message_id, in_reply_to, refs in ((2, "r@x", "p@x", '["p@x"]'), (3, "u@x", "", "[]")):
        conn.execute(  # as the old server wrote them: no thread, no thread keys
            "INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, saved_date, "
            "size, blob, digest, sent_date, subject, from_addr, to_addr, cc_addr, message_id, "
            "in_reply_to, refs) SELECT mailbox_id, ?, modseq, flags, internal_date + ?, "
            "saved_date, size, blob, digest, sent_date, subject, from_addr, to_addr, cc_addr, "
            "?, ?, ? FROM messages WHERE uid = 1",
            (uid, uid, message_id, in_reply_to, refs),
        )
    conn.execute("UPDATE mailboxes SET uidnext = 4 WHERE name = 'INBOX'")
    conn.close()
    store = SqliteStore(path)
    await store.open()
    await store.close()
    conn = sqlite3.connect(path)
    threads = dict(conn.execute("SELECT uid, thread FROM messages ORDER BY uid").fetchall())
    conn.close()
    assert 0 not in threads.values()
    assert threads[2] == threads[1] != threads[3]


async def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO schema_version (version, description) VALUES (?, 'future')", (99,))
    conn.close()
    with pytest.raises(SchemaTooNew, match="newer") as refused:
        await SqliteStore(path).open()
    assert (refused.value.found, refused.value.known) == (99, MIGRATIONS[-1].version)


async def test_each_migration_applied_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An operator upgrading reads which migrations ran and how long each took; a restart
    runs (and logs) none."""
    path = tmp_path / "db.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=28)
    conn.close()
    caplog.set_level(logging.INFO, logger="pillarbox.store")
    for _ in range(2):
        store = SqliteStore(path)
        await store.open()
        await store.close()
    logged = [
        r.fields  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "schema upgraded"
    ]
    # Each from the one before it.
    assert [(f["was"], f["version"]) for f in logged] == [
        (before.version, m.version) for before, m in pairwise(MIGRATIONS[27:])
    ]
    assert all(f["seconds"] >= 0 and f["description"] for f in logged)


async def test_an_open_store_notices_a_newer_schema(sqlite_store: SqliteStore) -> None:
    """A later Pillarbox (another process) migrating the database under an open store."""
    await sqlite_store.check_schema()
    conn = sqlite3.connect(sqlite_store.path, isolation_level=None)
    conn.execute("INSERT INTO schema_version (version, description) VALUES (?, 'later')", (99,))
    conn.close()
    with pytest.raises(SchemaTooNew, match="version 99 is newer"):
        await sqlite_store.check_schema()


async def test_durability_pragmas(sqlite_store: SqliteStore) -> None:
    conn = sqlite3.connect(sqlite_store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()

    def read(conn: sqlite3.Connection, fx: object) -> tuple[int, int]:
        return (
            conn.execute("PRAGMA synchronous").fetchone()[0],
            conn.execute("PRAGMA foreign_keys").fetchone()[0],
        )

    assert await sqlite_store._write(read) == (2, 1)  # FULL, on


# -- group commit and the writer -----------------------------------------------------------------
async def test_concurrent_writes_share_commits(sqlite_store: SqliteStore) -> None:
    await sqlite_store.add_domain(DOMAIN)
    account = await sqlite_store.add_account(f"a@{DOMAIN}", "h")
    before = sqlite_store.batches_committed
    await asyncio.gather(
        *(sqlite_store.deliver(*make_message(i), [DeliveryTarget(account.id)]) for i in range(100))
    )
    transactions = sqlite_store.batches_committed[0] - before[0]
    operations = sqlite_store.batches_committed[1] - before[1]
    assert operations == 100
    assert transactions < 50  # group commit: many writes per fsync


async def test_the_writer_accounts_for_its_time(sqlite_store: SqliteStore) -> None:
    wall, cpu = sqlite_store.writer_seconds
    await sqlite_store.add_domain(DOMAIN)
    account = await sqlite_store.add_account(f"a@{DOMAIN}", "h")
    await asyncio.gather(
        *(sqlite_store.deliver(*make_message(i), [DeliveryTarget(account.id)]) for i in range(20))
    )
    after_wall, after_cpu = sqlite_store.writer_seconds
    assert after_wall > wall and after_cpu > cpu


async def test_the_blob_sweep_runs_unless_every_write_of_the_batch_left_nothing(
    tmp_path: Path,
) -> None:
    """The sweep of unreferenced blobs before COMMIT is skipped for a batch of deliveries that
    stored their blob, and runs for a delivery nobody took and for a batch that also expunged:
    no blob row is left unreferenced after any commit."""
    store = SqliteStore(tmp_path / "db.sqlite3")
    sweeps: list[int] = []
    sweep = store._sweep_blobs

    def counted(conn: sqlite3.Connection) -> Callable[[], None]:
        sweeps.append(1)
        return sweep(conn)

    store._sweep_blobs = counted  # type: ignore[method-assign]
    await store.open()
    try:
        await store.add_domain(DOMAIN)
        account = await store.add_account(f"a@{DOMAIN}", "h")
        inbox = await store.get_mailbox(account.id, INBOX)

        def unreferenced(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM blobs WHERE refcount <= 0").fetchone()[0])

        before = len(sweeps)
        [stored] = await store.deliver(*make_message(1), [DeliveryTarget(account.id)])
        await store.append(inbox.id, *make_message(2))
        assert stored.record is not None
        assert len(sweeps) == before  # both left their blob held: nothing to sweep

        [refused] = await store.deliver(*make_message(3), [DeliveryTarget(account.id, "Nope")])
        assert refused.record is None
        assert len(sweeps) == before + 1
        assert await store._read(unreferenced) == 0

        # An expunge and a delivery in one batch: the writer is held while both queue.
        await store.store_flags(inbox.id, [stored.record.uid], FlagOp.ADD, frozenset({"\\Deleted"}))
        held, release = threading.Event(), threading.Event()

        def hold(conn: sqlite3.Connection, fx: object) -> None:
            held.set()
            assert release.wait(20)

        holding = asyncio.ensure_future(store._write(hold))
        await asyncio.to_thread(held.wait, 20)
        before = store.batches_committed[0]
        expunging = asyncio.ensure_future(store.expunge(inbox.id))
        delivering = asyncio.ensure_future(
            store.deliver(*make_message(4), [DeliveryTarget(account.id)])
        )
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(holding, expunging, delivering)
        assert store.batches_committed[0] == before + 2  # the hold's batch, then both
        assert await store._read(unreferenced) == 0
        with pytest.raises(NotFound):
            await store.read_blob(stored.record.blob_id)
    finally:
        await store.close()


async def test_a_failing_write_fails_alone_in_its_batch(sqlite_store: SqliteStore) -> None:
    await sqlite_store.add_domain(DOMAIN)
    account = await sqlite_store.add_account(f"a@{DOMAIN}", "h", quota_messages=5)
    inbox = await sqlite_store.get_mailbox(account.id, INBOX)
    results = await asyncio.gather(
        *(sqlite_store.append(inbox.id, *make_message(i)) for i in range(8)),
        return_exceptions=True,
    )
    stored = [r for r in results if not isinstance(r, BaseException)]
    assert len(stored) == 5
    assert all(isinstance(r, QuotaExceeded) for r in results if isinstance(r, BaseException))
    assert [m.uid for m in await sqlite_store.list_messages(inbox.id)] == [1, 2, 3, 4, 5]


async def test_a_broken_operation_is_a_storage_error_and_fails_alone(
    sqlite_store: SqliteStore,
) -> None:
    def broken(conn: sqlite3.Connection, fx: object) -> None:
        conn.execute("INSERT INTO domains (name, created) VALUES ('a.example', 0)")
        conn.execute("INSERT INTO domains (name, created) VALUES ('a.example', 0)")

    results = await asyncio.gather(
        sqlite_store.add_domain("b.example"),
        sqlite_store._write(broken),
        sqlite_store.add_domain("c.example"),
        return_exceptions=True,
    )
    assert isinstance(results[1], StorageError)
    assert [d.name for d in await sqlite_store.list_domains()] == ["b.example", "c.example"]


async def test_the_first_operation_of_a_batch_fails_alone_without_a_savepoint(
    sqlite_store: SqliteStore,
) -> None:
    """The first operation of a transaction runs without a savepoint: when it fails, its
    writes are rolled back with the transaction and the rest of the batch still commits; a
    batch of that operation alone leaves nothing behind either."""

    def broken(conn: sqlite3.Connection, fx: object) -> None:
        conn.execute("INSERT INTO domains (name, created) VALUES ('a.example', 0)")
        raise QuotaExceeded("after a write")

    held, release = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection, fx: object) -> None:
        held.set()
        assert release.wait(20)

    holding = asyncio.ensure_future(sqlite_store._write(hold))
    await asyncio.to_thread(held.wait, 20)
    before = sqlite_store.batches_committed
    queued = [
        asyncio.ensure_future(sqlite_store._write(broken)),
        asyncio.ensure_future(sqlite_store.add_domain("b.example")),
        asyncio.ensure_future(sqlite_store.add_domain("c.example")),
    ]
    await asyncio.sleep(0.05)
    release.set()
    await holding
    results = await asyncio.gather(*queued, return_exceptions=True)
    assert isinstance(results[0], QuotaExceeded)
    # The hold's batch, then the two domains in one transaction begun after the rollback.
    assert [a - b for a, b in zip(sqlite_store.batches_committed, before, strict=True)] == [2, 3]
    with pytest.raises(QuotaExceeded):
        await sqlite_store._write(broken)
    assert [d.name for d in await sqlite_store.list_domains()] == ["b.example", "c.example"]


async def test_checkpoints_run_beside_the_writer(sqlite_store: SqliteStore) -> None:
    await sqlite_store.add_domain(DOMAIN)
    checkpointer = sqlite_store._checkpointer
    assert checkpointer is not None
    for _ in range(200):
        if checkpointer.checkpoints:
            break
        await asyncio.sleep(0.01)
    assert checkpointer.checkpoints >= 1

    def in_commit_checkpoints(conn: sqlite3.Connection, fx: object) -> int:
        return int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])

    assert await sqlite_store._write(in_commit_checkpoints) == 0


async def test_open_twice_and_close_twice(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite3")
    await store.open()
    with pytest.raises(StorageError):
        await store.open()
    await store.close()
    await store.close()


async def test_unopenable_database_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite3").mkdir()
    with pytest.raises(StorageError):
        await SqliteStore(tmp_path / "dir.sqlite3").open()


# -- full-text index behind the writes -----------------------------------------------------------
async def test_index_catches_up_and_purges(sqlite_store: SqliteStore) -> None:
    await sqlite_store.add_domain(DOMAIN)
    account = await sqlite_store.add_account(f"a@{DOMAIN}", "h")
    inbox = await sqlite_store.get_mailbox(account.id, INBOX)
    await sqlite_store.append(inbox.id, *make_message(1, body="alpha beta"))

    def states(conn: sqlite3.Connection) -> list[int]:
        return [row[0] for row in conn.execute("SELECT state FROM blob_text ORDER BY id")]

    assert await sqlite_store._read(states) == [0]
    await sqlite_store.catch_up_index()
    assert await sqlite_store._read(states) == [1]
    await sqlite_store.store_flags(inbox.id, [1], FlagOp.ADD, frozenset({"\\Deleted"}))
    await sqlite_store.expunge(inbox.id)
    assert await sqlite_store._read(states) == [2]  # entries await their purge
    await sqlite_store.catch_up_index()
    assert await sqlite_store._read(states) == []


async def test_background_indexer_runs_when_writes_pause(tmp_path: Path) -> None:
    from pillarbox.store.sqlite import SqliteLimits

    store = SqliteStore(tmp_path / "db.sqlite3", limits=SqliteLimits(index_idle_ms=1))
    await store.open()
    try:
        await store.add_domain(DOMAIN)
        account = await store.add_account(f"a@{DOMAIN}", "h")
        inbox = await store.get_mailbox(account.id, INBOX)
        await store.append(inbox.id, *make_message(1))

        def pending(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM blob_text WHERE state = 0").fetchone()[0])

        for _ in range(200):
            if await store._read(pending) == 0:
                break
            await asyncio.sleep(0.01)
        assert await store._read(pending) == 0
    finally:
        await store.close()


# -- file blobs ----------------------------------------------------------------------------------
async def test_file_blobs_are_sharded_and_freed(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite3", blob_mode=BlobMode.FILES, blob_dir=tmp_path / "b")
    await store.open()
    try:
        await store.add_domain(DOMAIN)
        account = await store.add_account(f"a@{DOMAIN}", "h")
        inbox = await store.get_mailbox(account.id, INBOX)
        raw, info = make_message(1)
        record = (await store.append(inbox.id, raw, info)).record
        path = tmp_path / "b" / record.blob_id[:2] / record.blob_id
        assert record.blob_id == blob_id_of(raw)
        assert path.read_bytes() == raw
        assert list((tmp_path / "b" / "tmp").iterdir()) == []
        await store.append(inbox.id, raw, info)  # same content: one file
        await store.store_flags(inbox.id, [1, 2], FlagOp.ADD, frozenset({"\\Deleted"}))
        await store.expunge(inbox.id)
        assert not path.exists()
    finally:
        await store.close()


def test_file_blob_store_refuses_foreign_paths(tmp_path: Path) -> None:
    from pillarbox.errors import NotFound

    files = FileBlobStore(tmp_path)
    files.prepare(time.time())
    for bad in ("../x", "A" * 64, "0" * 63, "/etc/passwd"):
        with pytest.raises(NotFound):
            files.path_of(bad)
    staged = files.stage(blob_id_of(b"x"), b"x")
    leftover = staged.tmp_path
    files.prepare(time.time() + STAGED_MAX_AGE + 1)  # a restart removes what a crash left
    assert not leftover.exists()


def test_opening_the_store_keeps_what_another_process_staged(tmp_path: Path) -> None:
    """A ``pillarbox`` command opens the store while the server runs: the file the server has
    just staged for a delivery (fsync'd, not yet renamed into place) must survive it, else the
    delivery fails at publishing."""
    server = FileBlobStore(tmp_path)
    server.prepare(time.time())
    staged = server.stage(blob_id_of(b"x"), b"x")
    FileBlobStore(tmp_path).prepare(time.time())  # the command's store opening
    server.publish(staged)
    assert server.read(blob_id_of(b"x")) == b"x"


def test_opening_the_store_removes_what_a_dead_process_staged(tmp_path: Path) -> None:
    """A killed server's staged files go at the next start, however young."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    files = FileBlobStore(tmp_path)
    files.prepare(time.time())
    leftover = tmp_path / "tmp" / f"{blob_id_of(b'x')}.{dead.pid}.0123456789abcdef"
    leftover.write_bytes(b"x")
    files.prepare(time.time())
    assert not leftover.exists()


async def test_opening_the_store_removes_orphan_blob_files(tmp_path: Path) -> None:
    """Files a crash left without a row (published by a transaction that never committed, or
    freed by one that committed just before the unlink) are removed after the next open; files
    with rows stay."""
    blob_dir = tmp_path / "b"

    def new_store() -> SqliteStore:
        return SqliteStore(tmp_path / "db.sqlite3", blob_mode=BlobMode.FILES, blob_dir=blob_dir)

    store = new_store()
    await store.open()
    try:
        await store.add_domain(DOMAIN)
        account = await store.add_account(f"a@{DOMAIN}", "h")
        inbox = await store.get_mailbox(account.id, INBOX)
        raw, info = make_message(1)
        kept = (await store.append(inbox.id, raw, info)).record.blob_id
    finally:
        await store.close()
    orphans = [blob_id_of(b"orphan %d" % n) for n in range(5)]
    for orphan in orphans:
        (blob_dir / orphan[:2]).mkdir(exist_ok=True)
        (blob_dir / orphan[:2] / orphan).write_bytes(b"left by a crash")
    store = new_store()
    await store.open()
    try:
        for _ in range(500):
            if not any((blob_dir / o[:2] / o).exists() for o in orphans):
                break
            await asyncio.sleep(0.01)
        assert [o for o in orphans if (blob_dir / o[:2] / o).exists()] == []
        assert await store.read_blob(kept) == raw
    finally:
        await store.close()


class _FreeingCommitGate:
    """Holds a store's writer thread after a COMMIT that freed blobs, before their files go.

    Wraps the store's ``before_commit`` hook (set on the instance before ``open``, which hands
    the hook to the writer): that hook deletes the unreferenced blob rows and returns what to do
    once the COMMIT returned, and this runs that action only when the test says so. Nothing of
    the store's own is replaced; the gate only chooses when its post-commit step begins."""

    def __init__(self, store: SqliteStore) -> None:
        self._sweep = store._sweep_blobs
        self.reached = threading.Event()
        self.go = threading.Event()

    def __call__(self, conn: sqlite3.Connection) -> Callable[[], None]:
        (freeing,) = conn.execute("SELECT count(*) FROM blobs WHERE refcount <= 0").fetchone()
        after_commit = self._sweep(conn)
        if not freeing:
            return after_commit

        def held() -> None:
            self.reached.set()
            assert self.go.wait(20), "the test never released the writer"
            after_commit()

        return held


def _file_blob_store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "db.sqlite3", blob_mode=BlobMode.FILES, blob_dir=tmp_path / "b")


async def _inbox_with_one_deleted(store: SqliteStore, raw: bytes, info: MessageInfo) -> int:
    await store.add_domain(DOMAIN)
    account = await store.add_account(f"a@{DOMAIN}", "h")
    inbox = await store.get_mailbox(account.id, INBOX)
    await store.append(inbox.id, raw, info)
    await store.store_flags(inbox.id, [1], FlagOp.ADD, frozenset({"\\Deleted"}))
    return inbox.id


async def test_content_stored_again_by_another_store_outlives_its_freed_file(
    tmp_path: Path,
) -> None:
    """The server expunges a message's last copy and commits; before it removes the freed file,
    a command beside it (``pillarbox import``, its own writer on the same database and blob
    directory) stores the same content afresh: a new row, its file renamed into place, committed.
    The server's removal must then leave that file alone, else an acknowledged message has no
    bytes. The other way round (a command frees, the server stores) is the same code."""
    server = _file_blob_store(tmp_path)
    gate = _FreeingCommitGate(server)
    server._sweep_blobs = gate  # type: ignore[method-assign]
    command = _file_blob_store(tmp_path)
    await server.open()
    await command.open()
    try:
        raw, info = make_message(1)
        inbox = await _inbox_with_one_deleted(server, raw, info)
        expunging = asyncio.create_task(server.expunge(inbox))
        assert await asyncio.to_thread(gate.reached.wait, 20)
        imported = (await command.append(inbox, raw, info)).record
        gate.go.set()
        assert await expunging == [1]
        assert await command.read_blob(imported.blob_id) == raw
        assert await server.read_blob(imported.blob_id) == raw
    finally:
        gate.go.set()
        await command.close()
        await server.close()


async def test_freed_files_stay_for_the_next_open_when_another_writer_holds_the_lock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The removal after the COMMIT waits for the write lock like any write; when another
    process keeps it past ``busy_timeout`` the expunge still succeeds (it is committed) and
    its file is left as an orphan, which the sweep after the next open removes."""
    caplog.set_level(logging.INFO, logger="pillarbox.store")

    def new_store() -> SqliteStore:
        return SqliteStore(
            tmp_path / "db.sqlite3",
            blob_mode=BlobMode.FILES,
            blob_dir=tmp_path / "b",
            limits=SqliteLimits(busy_timeout_ms=50),
        )

    server = new_store()
    gate = _FreeingCommitGate(server)
    server._sweep_blobs = gate  # type: ignore[method-assign]
    await server.open()
    other = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)
    try:
        raw, info = make_message(1)
        inbox = await _inbox_with_one_deleted(server, raw, info)
        path = tmp_path / "b" / blob_id_of(raw)[:2] / blob_id_of(raw)
        expunging = asyncio.create_task(server.expunge(inbox))
        assert await asyncio.to_thread(gate.reached.wait, 20)
        other.execute("BEGIN IMMEDIATE")
        gate.go.set()
        assert await expunging == [1]
        other.execute("ROLLBACK")
        assert path.exists()
        assert "freed blob files left to the next open" in [r.getMessage() for r in caplog.records]
    finally:
        gate.go.set()
        other.close()
        await server.close()
    reopened = new_store()
    await reopened.open()
    try:
        await asyncio.to_thread(wait_for, lambda: not path.exists(), "the orphan swept")
    finally:
        await reopened.close()


async def test_content_stored_again_by_the_same_store_waits_for_the_freed_file(
    tmp_path: Path,
) -> None:
    """One store's writer removes the files a commit freed before it runs the next write, so a
    delivery of the same content queued meanwhile stores its file after the removal."""
    store = _file_blob_store(tmp_path)
    gate = _FreeingCommitGate(store)
    store._sweep_blobs = gate  # type: ignore[method-assign]
    await store.open()
    try:
        raw, info = make_message(1)
        inbox = await _inbox_with_one_deleted(store, raw, info)
        expunging = asyncio.create_task(store.expunge(inbox))
        assert await asyncio.to_thread(gate.reached.wait, 20)
        appending = asyncio.create_task(store.append(inbox, raw, info))
        gate.go.set()
        assert await expunging == [1]
        assert await store.read_blob((await appending).record.blob_id) == raw
    finally:
        gate.go.set()
        await store.close()


async def test_content_stored_again_before_the_expunge_keeps_its_file(tmp_path: Path) -> None:
    """The reverse order: the same content stored (by another store: no new file, one more
    reference) before the expunge of the first copy commits keeps the file, whose row the
    expunge's transaction finds still referenced."""
    server = _file_blob_store(tmp_path)
    command = _file_blob_store(tmp_path)
    await server.open()
    await command.open()
    try:
        raw, info = make_message(1)
        inbox = await _inbox_with_one_deleted(server, raw, info)
        imported = (await command.append(inbox, raw, info)).record
        assert await server.expunge(inbox) == [1]
        assert await server.read_blob(imported.blob_id) == raw
    finally:
        await command.close()
        await server.close()


async def test_content_stored_again_replaces_a_file_a_crash_left(tmp_path: Path) -> None:
    """A kill between the COMMIT that freed a blob and the unlink leaves its file without a row;
    the same content stored after the restart writes its own file over it (an orphan is never
    taken for stored bytes, even a damaged one), whether the sweep at open ran first or not."""
    raw, info = make_message(1)
    blob_id = blob_id_of(raw)
    (tmp_path / "b" / blob_id[:2]).mkdir(parents=True)
    (tmp_path / "b" / blob_id[:2] / blob_id).write_bytes(b"left by a crash")
    store = _file_blob_store(tmp_path)
    await store.open()
    try:
        await store.add_domain(DOMAIN)
        account = await store.add_account(f"a@{DOMAIN}", "h")
        inbox = await store.get_mailbox(account.id, INBOX)
        assert (await store.append(inbox.id, raw, info)).record.blob_id == blob_id
        assert await store.read_blob(blob_id) == raw
    finally:
        await store.close()


# -- open_store ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "expected", "mode"),
    [
        ("sqlite:", "data/pillarbox.sqlite3", BlobMode.DATABASE),
        ("sqlite://", "data/pillarbox.sqlite3", BlobMode.DATABASE),
        ("sqlite:mail.db", "data/mail.db", BlobMode.DATABASE),
        ("sqlite:///abs/mail.db?blobs=files", "/abs/mail.db", BlobMode.FILES),
        ("sqlite:?blobs=database", "data/pillarbox.sqlite3", BlobMode.DATABASE),
    ],
)
def test_open_store_urls(url: str, expected: str, mode: BlobMode) -> None:
    store = open_store(url, Path("data"))
    assert isinstance(store, SqliteStore)
    assert store.path == Path(expected)
    assert store.blob_mode is mode


@pytest.mark.parametrize(
    "url",
    ["mysql://x", "sqlite://host/x", "sqlite:?blobs=s3", "sqlite:?x=1"],
)
def test_open_store_rejects(url: str) -> None:
    with pytest.raises(ConfigError) as error:
        open_store(url, Path("data"))
    assert error.value.key == "store.url"


# -- change hub ------------------------------------------------------------------------------------
async def test_hub_publishes_from_other_threads() -> None:
    hub = ChangeHub()
    mine, other = hub.subscribe(1), hub.subscribe(2)
    changes = [
        Change(1, 10, ChangeKind.EXISTS, 5),
        Change(1, 10, ChangeKind.EXISTS, 7),
        Change(1, 10, ChangeKind.FLAGS, 6),
        Change(2, 20, ChangeKind.EXPUNGE, 3),
    ]
    thread = threading.Thread(target=hub.publish, args=(changes,))
    thread.start()
    thread.join()
    feed = aiter(mine)
    assert await asyncio.wait_for(anext(feed), 5) == Change(1, 10, ChangeKind.EXISTS, 7)
    assert await asyncio.wait_for(anext(feed), 5) == Change(1, 10, ChangeKind.FLAGS, 6)
    waiting = asyncio.ensure_future(anext(feed))
    await asyncio.sleep(0)
    hub.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 5)
    assert await asyncio.wait_for(anext(aiter(other)), 5) == changes[3]
    hub.publish(changes)  # after close: nobody listens, nothing breaks


def test_background_work_commits_wake_the_checkpointer(tmp_path: Path) -> None:
    """Idle work's unsynced frames are left to a checkpoint, not to the next durable commit (a
    message's latency): its commits report like a batch's."""
    from pillarbox.store.sqlite.writer import BatchHooks, GroupCommitWriter

    committed = threading.Event()
    idle_ran = threading.Event()

    def idle(conn: sqlite3.Connection, write_waiting: object) -> bool:
        conn.execute("CREATE TABLE IF NOT EXISTS derived (n INTEGER)")
        conn.execute("INSERT INTO derived VALUES (1)")
        idle_ran.set()
        return False  # nothing more to do: the writer then waits for writes only

    path = tmp_path / "db.sqlite3"
    writer = GroupCommitWriter(
        lambda: sqlite3.connect(path, isolation_level=None, check_same_thread=False),
        BatchHooks(
            before_commit=lambda conn: lambda: None,
            publish=lambda changes: None,
            sync_dirs=lambda dirs: None,
            idle=idle,
            committed=committed.set,
        ),
        max_batch=10,
        idle_after=0.001,
        restart_wanted=threading.Event(),
        restart_wait=0.1,
    )
    writer.start()
    try:
        assert idle_ran.wait(5)
        assert committed.wait(5)
    finally:
        writer.stop()
