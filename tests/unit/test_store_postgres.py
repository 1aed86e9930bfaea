"""The PostgreSQL backend: the storage contract, plus what sharing one database between nodes
demands (two store instances stand for two nodes): the change feed crosses them, UIDs and
MODSEQs stay unique and ordered under concurrent writers, queue claims never overlap and a dead
node's claims are taken over after the lease.

Each store is a fresh schema in one database made for this module (see
``pillarbox.testing.postgres``); the module is skipped when no server is reachable at
``$PILLARBOX_TEST_POSTGRES`` or 127.0.0.1:5432.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from psycopg.rows import TupleRow

from pillarbox.errors import (
    ConfigError,
    NotFound,
    SchemaTooNew,
    StorageError,
    StoreInUse,
    TooManyEntries,
)
from pillarbox.mail.parse import parse_message
from pillarbox.store.interface import Store
from pillarbox.store.open import open_store
from pillarbox.store.postgres import PostgresLimits, PostgresStore
from pillarbox.store.postgres import notify as pg_notify
from pillarbox.store.postgres.maildrops import store_key
from pillarbox.store.postgres.migrations import MIGRATIONS
from pillarbox.store.postgres.servers import SERVERS
from pillarbox.store.types import (
    INBOX,
    Account,
    AccountSettings,
    Change,
    ChangeKind,
    DeliveryStatus,
    DeliveryTarget,
    FlagOp,
    Mailbox,
    MetadataLimits,
    NewQueueRecipient,
    SenderListEntry,
    SenderListKind,
    SpamCounts,
)
from pillarbox.testing.postgres import TestDatabase, needs_postgres
from pillarbox.testing.push import PUSH_WAIT
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
    store_state_machine,
)

pytestmark = needs_postgres()


async def add_bob(store: Store, quota_messages: int | None = None) -> tuple[Account, Mailbox]:
    """Bob's account on ``DOMAIN``, made through ``store``, and his INBOX."""
    await store.add_domain(DOMAIN)
    account = await store.add_account(f"bob@{DOMAIN}", "h", quota_messages=quota_messages)
    return account, await store.get_mailbox(account.id, INBOX)


@pytest.fixture(scope="module")
def spare_urls() -> list[str]:
    """Migrated, emptied stores that earlier tests gave back."""
    return []


@pytest.fixture
def migrated_url(database: TestDatabase, spare_urls: list[str]) -> Iterator[str]:
    """A store URL of this test alone; reused (emptied) by a later test."""
    url = spare_urls.pop() if spare_urls else database.new_store_url()
    yield url
    database.wipe(url)
    spare_urls.append(url)


THREADED = (
    b"From: ann@example.org\r\nSubject: Re: plan\r\nMessage-ID: <c@x>\r\n"
    b"In-Reply-To: <b@x>\r\nReferences: <a@x> <b@x>\r\n\r\nbody\r\n"
)


async def test_references_are_backfilled_by_migration_4(migrated_url: str) -> None:
    """Mail stored before migration 4 gets its References column from the stored structure."""
    store = PostgresStore(migrated_url)
    await store.open()
    await store.add_domain(DOMAIN)
    account = await store.add_account(f"a@{DOMAIN}", "h")
    await store.deliver(THREADED, parse_message(THREADED), [DeliveryTarget(account.id)])
    await store.close()
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        await conn.execute("ALTER TABLE messages DROP COLUMN refs")  # as version 3 had it
        await conn.execute(MIGRATIONS[4 - 1].sql.encode())
    upgraded = PostgresStore(migrated_url)
    await upgraded.open()
    try:
        inbox = await upgraded.get_mailbox(account.id, INBOX)
        [(thread, _)] = await upgraded.thread_sizes(inbox.id)
        [fields] = await upgraded.thread_fields(inbox.id, [thread])
        assert fields.references == ("a@x", "b@x") and fields.in_reply_to == "b@x"
    finally:
        await upgraded.close()


async def test_thread_ids_are_backfilled_by_migration_24(migrated_url: str) -> None:
    """Mail stored before migration 24 is threaded by it, as delivery would have done."""
    store = PostgresStore(migrated_url)
    await store.open()
    await store_backfill_mail(store)
    await store.close()
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        await conn.execute(  # the schema as version 23 had it: 24 undone, and those after it
            "ALTER TABLE messages DROP COLUMN thread; DROP TABLE thread_keys; "
            "DROP SEQUENCE thread_ids; ALTER TABLE contacts DROP COLUMN card; "
            "DROP TABLE contact_books, contact_tombstones; "
            "ALTER TABLE contacts DROP COLUMN modseq, DROP COLUMN etag; "
            "DROP TABLE calendar_tombstones, calendar_objects, calendars; "
            "DROP TABLE acme_answers, acme_certificates, acme_leases, sieve_duplicates; "
            "ALTER TABLE account_settings DROP COLUMN time_zone; "
            "ALTER TABLE mailbox_acl DROP COLUMN denied; "
            "ALTER TABLE account_settings DROP COLUMN shortcuts; "
            "ALTER TABLE account_settings DROP COLUMN default_calendar; "
            "DROP TABLE mta_sts_policies, mta_sts_failures, login_holds, acme_accounts; "
            "DROP TABLE dnssec_keys, zone_serials; "
            "DELETE FROM schema_version WHERE version >= 24"
        )
    upgraded = PostgresStore(migrated_url)
    await upgraded.open()
    try:
        await check_backfilled_threads(upgraded)
    finally:
        await upgraded.close()


async def test_dav_etags_and_sync_state_are_backfilled_by_migration_29(migrated_url: str) -> None:
    """Contacts and calendar objects stored before migration 29 get their ETags (as a write
    computes them) and the address book its first sync token."""
    store = PostgresStore(migrated_url)
    await store.open()
    await store_backfill_dav(store)
    await store.close()
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        await conn.execute(  # the schema as version 28 had it
            "DROP TABLE contact_books, contact_tombstones; "
            "ALTER TABLE contacts DROP COLUMN modseq, DROP COLUMN etag; "
            "ALTER TABLE calendars DROP COLUMN description, DROP COLUMN timezone, "
            "DROP COLUMN oldest_token; ALTER TABLE calendar_objects DROP COLUMN etag; "
            "ALTER TABLE calendar_tombstones DROP COLUMN deleted; "
            "DROP TABLE acme_certificates, acme_leases, sieve_duplicates; "
            "ALTER TABLE account_settings DROP COLUMN time_zone; "
            "ALTER TABLE mailbox_acl DROP COLUMN denied; "
            "ALTER TABLE calendar_objects DROP COLUMN schedule_tag; "
            "ALTER TABLE account_settings DROP COLUMN shortcuts; "
            "ALTER TABLE account_settings DROP COLUMN default_calendar; "
            "DROP TABLE mta_sts_policies, mta_sts_failures, login_holds, acme_accounts; "
            "DROP TABLE dnssec_keys, zone_serials; "
            "DELETE FROM schema_version WHERE version >= 29"
        )
    upgraded = PostgresStore(migrated_url)
    await upgraded.open()
    try:
        await check_backfilled_dav(upgraded)
    finally:
        await upgraded.close()


async def test_schedule_tags_are_backfilled_by_migration_35(migrated_url: str) -> None:
    """Scheduling objects stored before migration 35 get a first Schedule-Tag (RFC 6638)."""
    store = PostgresStore(migrated_url)
    await store.open()
    await store_backfill_schedule_tags(store)
    await store.close()
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        await conn.execute(  # the schema as version 34 had it
            "ALTER TABLE calendar_objects DROP COLUMN schedule_tag; "
            "ALTER TABLE account_settings DROP COLUMN shortcuts; "
            "ALTER TABLE account_settings DROP COLUMN default_calendar; "
            "DROP TABLE mta_sts_policies, mta_sts_failures, login_holds, acme_accounts; "
            "DROP TABLE dnssec_keys, zone_serials; "
            "DELETE FROM schema_version WHERE version >= 35"
        )
    upgraded = PostgresStore(migrated_url)
    await upgraded.open()
    try:
        await check_backfilled_schedule_tags(upgraded)
    finally:
        await upgraded.close()


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store_factory(self, migrated_url: str) -> StoreFactory:
        return lambda: PostgresStore(migrated_url)

    async def settle(self, store: Store) -> None:
        assert isinstance(store, PostgresStore)
        await store.catch_up_index()

    async def outlast_kept(self, store: Store) -> None:
        assert isinstance(store, PostgresStore)
        await store.heard_everything()


def test_store_invariants(database: TestDatabase, migrated_url: str) -> None:
    def fresh() -> PostgresStore:
        # Examples run one after another: the previous example's store is closed by now.
        database.wipe(migrated_url)
        return PostgresStore(migrated_url)

    run_state_machine_as_test(
        store_state_machine(fresh),
        settings=settings(
            max_examples=10,
            stateful_step_count=10,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


@pytest.fixture
def url(database: TestDatabase) -> str:
    return database.new_store_url()


@pytest.fixture
async def nodes(migrated_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores over one schema: two nodes."""
    a, b = PostgresStore(migrated_url), PostgresStore(migrated_url)
    await a.open()
    await b.open()
    yield a, b
    await a.close()
    await b.close()


# -- schema and connections ------------------------------------------------------------------------
async def test_nodes_opening_together_migrate_once(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pillarbox.store")
    stores = [PostgresStore(url) for _ in range(3)]
    await asyncio.gather(*(store.open() for store in stores))
    for store in stores:
        await store.close()
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT version FROM schema_version ORDER BY version")
        assert [row[0] for row in await cur.fetchall()] == [m.version for m in MIGRATIONS]
    # The node that applied a migration logs it, the others found it done: one line each.
    logged = [
        r.fields  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "schema upgraded"
    ]
    assert sorted(f["version"] for f in logged) == [m.version for m in MIGRATIONS]


async def test_servers_starting_together_on_a_new_store_one_migrates(url: str) -> None:
    """Nodes (serving stores) started together: the first takes the exclusive lock and
    migrates, the others wait for their shared lock and find the schema current; a command's
    store opens beside them (nothing to migrate)."""
    nodes = [PostgresStore(url, serving=True) for _ in range(3)]
    await asyncio.gather(*(node.open() for node in nodes))
    try:
        command = PostgresStore(url)
        await command.open()
        await command.close()
    finally:
        for node in nodes:
            await node.close()


async def test_messages_an_old_node_left_without_a_thread_are_threaded_at_open(
    migrated_url: str,
) -> None:
    """A node from before migration 24, still running while another node upgraded the store,
    inserts messages at the thread column's default, 0, with no thread keys: the next open
    threads them as a delivery would (docs/upgrading.md)."""
    store = PostgresStore(migrated_url)
    await store.open()
    await store.add_domain(DOMAIN)
    account = await store.add_account(f"a@{DOMAIN}", "h")
    parent = f"From: b@{DOMAIN}\r\nSubject: s\r\nMessage-ID: <p@x>\r\n\r\nbody\r\n".encode()
    await store.deliver(parent, parse_message(parent), [DeliveryTarget(account.id)])
    await store.close()
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT string_agg(column_name, ', ') FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = 'messages' "
            "AND is_generated = 'NEVER'"
        )
        columns = psycopg.sql.SQL(str((await cur.fetchall())[0][0]))
        for uid, message_id, in_reply_to, refs in ((2, "r@x", "p@x", ["p@x"]), (3, "u@x", "", [])):
            # As the old node wrote them: no thread, no thread keys.
            await conn.execute("CREATE TEMP TABLE old_row AS SELECT * FROM messages WHERE uid = 1")
            await conn.execute(
                "UPDATE old_row SET uid = %s, message_id = %s, in_reply_to = %s, refs = %s, "
                "thread = 0",
                (uid, message_id, in_reply_to, refs),
            )
            await conn.execute(
                psycopg.sql.SQL("INSERT INTO messages ({0}) SELECT {0} FROM old_row").format(
                    columns
                )
            )
            await conn.execute("DROP TABLE old_row")
        await conn.execute("UPDATE mailboxes SET uidnext = 4 WHERE name = 'INBOX'")
    store = PostgresStore(migrated_url)
    await store.open()
    await store.close()
    async with await psycopg.AsyncConnection.connect(migrated_url) as conn:
        cur = await conn.execute("SELECT uid, thread FROM messages ORDER BY uid")
        threads = dict(await cur.fetchall())
    assert 0 not in threads.values()
    assert threads[2] == threads[1] != threads[3]


async def test_refuses_a_newer_schema(url: str) -> None:
    store = PostgresStore(url)
    await store.open()
    await store.close()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("INSERT INTO schema_version (version, description) VALUES (99, 'x')")
    with pytest.raises(SchemaTooNew, match="newer") as refused:
        await PostgresStore(url).open()
    assert (refused.value.found, refused.value.known) == (99, MIGRATIONS[-1].version)


async def test_an_open_store_notices_a_newer_schema(url: str) -> None:
    """A later Pillarbox (another node) migrating the database under an open store."""
    store = PostgresStore(url)
    await store.open()
    try:
        await store.check_schema()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("INSERT INTO schema_version (version, description) VALUES (99, 'x')")
        with pytest.raises(SchemaTooNew, match="version 99 is newer"):
            await store.check_schema()
    finally:
        await store.close()


async def test_sessions_commit_durably_in_utc(database: TestDatabase) -> None:
    # A server (here: the database) with synchronous_commit off still gets durable commits.
    async with await psycopg.AsyncConnection.connect(database.url, autocommit=True) as conn:
        await conn.execute(
            psycopg.sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(
                psycopg.sql.Identifier(database.name)
            )
        )
    store = PostgresStore(database.new_store_url())
    await store.open()
    try:

        async def read(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> tuple[object, ...]:
            cur = await conn.execute(
                "SELECT current_setting('synchronous_commit'), current_setting('TimeZone')"
            )
            row = await cur.fetchone()
            assert row is not None
            return row

        assert await store._read(read) == ("on", "UTC")
    finally:
        await store.close()
        async with await psycopg.AsyncConnection.connect(database.url, autocommit=True) as conn:
            await conn.execute(
                psycopg.sql.SQL("ALTER DATABASE {} RESET synchronous_commit").format(
                    psycopg.sql.Identifier(database.name)
                )
            )


async def test_unreachable_server_is_a_storage_error() -> None:
    store = PostgresStore(
        "postgresql://postgres@127.0.0.1:9/none", limits=PostgresLimits(timeout=1)
    )
    with pytest.raises(StorageError):
        await store.open()


@pytest.mark.parametrize(
    "url", ["postgresql://db.example/mail", "postgres://u@h:5433/m?sslmode=require"]
)
def test_open_store_postgres_urls(url: str) -> None:
    store = open_store(url, Path("data"))
    assert isinstance(store, PostgresStore) and store.conninfo == url


@pytest.mark.parametrize("url", ["postgresql://db.example", "postgresql://db.example/"])
def test_open_store_wants_a_database_name(url: str) -> None:
    with pytest.raises(ConfigError) as error:
        open_store(url, Path("data"))
    assert error.value.key == "store.url"


async def test_a_cancelled_write_still_completes(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    store, _ = nodes
    await store.add_domain(DOMAIN)
    account = await store.add_account(f"a@{DOMAIN}", "h")
    task = asyncio.ensure_future(store.deliver(*make_message(1), [DeliveryTarget(account.id)]))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    inbox = await store.get_mailbox(account.id, INBOX)
    for _ in range(50):
        if (await store.mailbox_status(inbox.id)).messages == 1:
            break
        await asyncio.sleep(0.05)
    assert [r.uid for r in await store.list_messages(inbox.id)] == [1]


async def test_close_waits_for_a_cancelled_write(migrated_url: str) -> None:
    """A write whose caller was cancelled runs on (shielded); closing the store lets it end
    first, so it commits instead of dying with the loop half-way through its pipeline."""
    store = PostgresStore(migrated_url)
    await store.open()
    async with await psycopg.AsyncConnection.connect(migrated_url) as blocker:
        # The write waits behind this transaction's lock until it ends.
        await blocker.execute("LOCK TABLE domains IN EXCLUSIVE MODE")
        task = asyncio.ensure_future(store.add_domain(DOMAIN))
        await asyncio.sleep(0.2)  # the write is inside its transaction, waiting on the lock
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        closing = asyncio.ensure_future(store.close())
        await asyncio.sleep(0.3)
        assert not closing.done()  # still waiting for the write
        await blocker.rollback()
    await closing
    reopened = PostgresStore(migrated_url)
    await reopened.open()
    try:
        assert DOMAIN in [d.name for d in await reopened.list_domains()]
    finally:
        await reopened.close()


# -- the change feed across nodes ----------------------------------------------------------------
def test_notify_payloads_split_under_the_limit() -> None:
    changes = [Change(10**6 + i, 10**7 + i, ChangeKind.EXISTS, 10**9 + i) for i in range(1000)]
    payloads = list(pg_notify.encode(changes))
    assert len(payloads) > 1
    assert all(len(p.encode()) < 8000 for p in payloads)
    assert [c for p in payloads for c in pg_notify.decode(p)] == changes
    assert pg_notify.decode("1 2 e 3\nbogus\n1 x e 2\n4 5 q 6\n7 8 m 9") == [
        Change(1, 2, ChangeKind.EXISTS, 3),
        Change(7, 8, ChangeKind.MAILBOXES, 9),
    ]
    assert len(pg_notify.channel_for("s" * 80).encode()) <= 63


async def test_change_feed_crosses_nodes(nodes: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = nodes
    account, inbox = await add_bob(a)
    subscription = b.subscribe(account.id)
    feed = aiter(subscription)
    [result] = await a.deliver(*make_message(1), [DeliveryTarget(account.id)])
    change = await asyncio.wait_for(anext(feed), PUSH_WAIT)
    assert result.record is not None
    assert change == Change(account.id, inbox.id, ChangeKind.EXISTS, result.record.modseq)
    await subscription.close()


async def test_a_change_made_while_listen_was_down_is_hinted_after_it(
    nodes: tuple[PostgresStore, PostgresStore], migrated_url: str
) -> None:
    """The LISTEN connections break (killed here, as a database failover or a network cut
    would); a delivery commits before they are back, and its NOTIFY reaches no one. Once
    listening again, a node hints what its subscribers wait for: the IMAP session idling on
    node b since before the break hears of the delivery without waiting for its client's
    next command (up to 29 minutes in IDLE, RFC 2177)."""
    a, b = nodes
    account, inbox = await add_bob(a)
    subscription = b.subscribe(account.id)
    feed = aiter(subscription)
    with psycopg.connect(migrated_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query = %s",
            (f'LISTEN "{b._channel}"',),
        ).fetchall()
    assert len(killed) == 2  # a's and b's
    [result] = await a.deliver(*make_message(1), [DeliveryTarget(account.id)])
    assert result.record is not None
    while True:  # listen_retry (1 s) later, b's listener is back and hints
        change = await asyncio.wait_for(anext(feed), 5.0)
        if change.mailbox_id == inbox.id and change.modseq >= result.record.modseq:
            break
    await subscription.close()


async def test_metadata_changes_cross_nodes(nodes: tuple[PostgresStore, PostgresStore]) -> None:
    """IMAP NOTIFY's MailboxMetadataChange/ServerMetadataChange (RFC 5465 §5.6, §5.7) on
    another node hang on these hints."""
    a, b = nodes
    account, inbox = await add_bob(a)
    subscription = b.subscribe(account.id)
    feed = aiter(subscription)
    limits = MetadataLimits(max_entries=10, max_total=10_000)
    await a.set_metadata(account.id, inbox.id, {"/shared/comment": b"x"}, limits)
    change = await asyncio.wait_for(anext(feed), 2)
    assert change == Change(account.id, inbox.id, ChangeKind.METADATA, 0)
    await a.set_metadata(account.id, None, {"/private/vendor/v/t": b"y"}, limits)
    assert await asyncio.wait_for(anext(feed), 2) == Change(account.id, 0, ChangeKind.METADATA, 0)
    await subscription.close()


async def test_shared_mailbox_changes_cross_nodes(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    """RFC 4314: a grantee idling on node b hears the owner's delivery on node a to the shared
    mailbox it watches."""
    a, b = nodes
    owner, _ = await add_bob(a)
    grantee = await a.add_account(f"carol@{DOMAIN}", "h")
    support = await a.create_mailbox(owner.id, "Support")
    await a.set_acl(support.id, grantee.id, "lr")
    subscription = b.subscribe(grantee.id)
    subscription.watch(support.id)
    feed = aiter(subscription)
    record = (await a.append(support.id, *make_message(1))).record
    change = await asyncio.wait_for(anext(feed), 5)
    while change.kind is ChangeKind.MAILBOXES:  # earlier writes' hints may come late
        change = await asyncio.wait_for(anext(feed), 5)
    assert change == Change(owner.id, support.id, ChangeKind.EXISTS, record.modseq)
    await subscription.close()


async def test_metadata_limits_are_exact_across_nodes(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    """Writers on two nodes take turns on the account's row: never more entries than allowed."""
    a, b = nodes
    account, inbox = await add_bob(a)
    limits = MetadataLimits(max_entries=10, max_total=10**6)
    results = await asyncio.gather(
        *(
            (a if i % 2 else b).set_metadata(account.id, inbox.id, {f"/private/e{i}": b"v"}, limits)
            for i in range(30)
        ),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 10
    assert all(r is None or isinstance(r, TooManyEntries) for r in results)
    assert len(await b.get_metadata(account.id, inbox.id)) == 10


async def test_a_rolled_back_write_announces_nothing(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = nodes
    account, inbox = await add_bob(a, quota_messages=0)
    subscription = b.subscribe(account.id)
    feed = aiter(subscription)
    [refused] = await a.deliver(*make_message(1), [DeliveryTarget(account.id)])
    assert refused.record is None
    await a.set_quota(account.id, None, None)
    record = (await a.append(inbox.id, *make_message(2))).record
    assert await asyncio.wait_for(anext(feed), 2) == Change(
        account.id, inbox.id, ChangeKind.EXISTS, record.modseq
    )
    await subscription.close()


# -- concurrent writers on two nodes -------------------------------------------------------------
async def test_uids_and_modseqs_under_writers_on_two_nodes(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = nodes
    account, inbox = await add_bob(a)
    archive = await a.get_mailbox(account.id, "Archive")
    appends = [(a if i % 2 else b).append(inbox.id, *make_message(i)) for i in range(60)]
    deliveries = [
        (b if i % 2 else a).deliver(
            *make_message(1000 + i),
            [DeliveryTarget(account.id), DeliveryTarget(account.id, "Archive")],
        )
        for i in range(20)
    ]
    flags = [
        (a if i % 2 else b).store_flags(inbox.id, [i + 1], FlagOp.ADD, frozenset({"\\Seen"}))
        for i in range(20)
    ]
    await asyncio.gather(*appends, *deliveries, *flags)
    records = await b.list_messages(inbox.id)
    assert [r.uid for r in records] == list(range(1, 81))  # unique, no gaps, ascending
    status = await a.mailbox_status(inbox.id)
    assert status.mailbox.uidnext == 81 and status.messages == 80
    assert status.mailbox.highestmodseq == max(r.modseq for r in records)
    # Allocation order is commit order: every arrival's MODSEQ exceeds the one before it
    # (a flag change re-stamps a record, so only the untouched ones show arrival stamps).
    arrivals = sorted((r.uid, r.modseq) for r in records if "\\Seen" not in r.flags)
    assert [m for _, m in arrivals] == sorted({m for _, m in arrivals})
    assert [r.uid for r in await a.list_messages(archive.id)] == list(range(1, 21))
    usage = await a.quota_usage(account.id)
    assert (usage.messages, usage.bytes_used) == (
        100,
        sum(r.size for r in records) + sum(r.size for r in await a.list_messages(archive.id)),
    )


async def _blocked_by(watch: psycopg.AsyncConnection[TupleRow], pid: int) -> tuple[int, str]:
    """The backend (pid, query) waiting for a lock ``pid`` holds, polled with a deadline."""
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        cursor = await watch.execute(
            "SELECT pid, query FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
            (pid,),
        )
        found = await cursor.fetchone()
        if found is not None:
            return int(found[0]), str(found[1])
        assert asyncio.get_running_loop().time() < deadline, f"nothing waits for backend {pid}"
        await asyncio.sleep(0.02)


async def test_content_stored_on_one_node_while_another_frees_it(
    nodes: tuple[PostgresStore, PostgresStore], migrated_url: str
) -> None:
    """No file, no unlink: the bytes are a ``blob_data`` row that goes with its ``blobs`` row
    in the freeing transaction. Node A's expunge has deleted the last copy's blob row and not
    committed (held here, after that, on the QRESYNC row it writes next); node B stores the
    same content into another mailbox meanwhile. B's insert waits on A's deleted row and,
    once A commits, inserts the content afresh: B's message keeps its bytes."""
    a, b = nodes
    _, bobs = await add_bob(a)
    ann = await a.add_account(f"ann@{DOMAIN}", "h")
    anns = await a.get_mailbox(ann.id, INBOX)
    raw, info = make_message(1)
    await a.append(anns.id, raw, info)
    await a.store_flags(anns.id, [1], FlagOp.ADD, frozenset({"\\Deleted"}))
    hold = await psycopg.AsyncConnection.connect(migrated_url)
    watch = await psycopg.AsyncConnection.connect(migrated_url, autocommit=True)
    try:
        await hold.execute(
            "INSERT INTO expunged (mailbox_id, uid, modseq) VALUES (%s, 1, 0)", (anns.id,)
        )
        expunging = asyncio.create_task(a.expunge(anns.id))
        expunger, held_at = await _blocked_by(watch, hold.info.backend_pid)
        assert "INSERT INTO expunged" in held_at  # after the DELETE that freed the blob
        storing = asyncio.create_task(b.append(bobs.id, raw, info))
        _, waits_at = await _blocked_by(watch, expunger)
        assert "INSERT INTO blobs" in waits_at
        await hold.rollback()
        assert await expunging == [1]
        stored = (await storing).record
        assert await a.read_blob(stored.blob_id) == raw
        cursor = await watch.execute(
            "SELECT refcount FROM blobs WHERE sha256 = %s", (stored.blob_id,)
        )
        assert await cursor.fetchall() == [(1,)]
    finally:
        await hold.close()
        await watch.close()


async def test_quota_is_exact_across_nodes(nodes: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = nodes
    account, _ = await add_bob(a, quota_messages=25)
    results = await asyncio.gather(
        *(
            (a if i % 2 else b).deliver(*make_message(i), [DeliveryTarget(account.id)])
            for i in range(60)
        )
    )
    assert sum(r[0].record is not None for r in results) == 25
    assert (await b.quota_usage(account.id)).messages == 25


async def test_maildrop_locks_cross_nodes_and_go_with_a_node(
    nodes: tuple[PostgresStore, PostgresStore], migrated_url: str
) -> None:
    """RFC 1939 §4 across nodes: a maildrop one node holds is in use on the other; a node whose
    database connection ends (closed here; a crash's in the e2e test) holds nothing any more."""
    a, b = nodes
    account, _ = await add_bob(a)
    assert await a.lock_maildrop(account.id)
    assert not await b.lock_maildrop(account.id)
    await a.unlock_maildrop(account.id)
    assert await b.lock_maildrop(account.id)
    assert not await a.lock_maildrop(account.id)
    third = PostgresStore(migrated_url)
    await third.open()
    await b.unlock_maildrop(account.id)
    assert await third.lock_maildrop(account.id)
    assert not await a.lock_maildrop(account.id)
    await third.close()
    # The server releases the closed session's locks as its backend exits, just after.
    for _ in range(100):
        if await a.lock_maildrop(account.id):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the closed node's maildrop lock stayed")


# -- the queue across nodes ------------------------------------------------------------------------
async def test_claims_never_overlap_and_expire(nodes: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = nodes
    queued = [
        await a.enqueue("s@x.org", f"message {i}".encode(), [NewQueueRecipient(f"r{i}@y.org")])
        for i in range(40)
    ]
    now = queued[-1].queued_at + timedelta(seconds=1)
    # Thirty claimers (a claimer re-claims its own messages, so each has its own name).
    claims = await asyncio.gather(
        *(
            (a if i % 2 else b).claim_due(now, limit=3, lease_seconds=60, owner=f"worker-{i}")
            for i in range(30)
        )
    )
    claimed = [m.id for batch in claims for m in batch]
    assert sorted(claimed) == sorted(m.id for m in queued)  # every message, each exactly once
    assert await a.claim_due(now, limit=100, lease_seconds=60, owner="late") == []
    # Every claimer is killed: once the leases run out, another node takes all over.
    later = now + timedelta(seconds=61)
    taken = await b.claim_due(later, limit=100, lease_seconds=60, owner="survivor")
    assert sorted(m.id for m in taken) == sorted(m.id for m in queued)
    assert await a.claim_due(later, limit=100, lease_seconds=60, owner="worker-1") == []


async def test_store_level_search_is_shared(nodes: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = nodes
    _, inbox = await add_bob(a)
    await a.append(inbox.id, *make_message(1, body="50% off_today \\o/"))
    await a.append(inbox.id, *make_message(2, body="500 offXtoday"))
    assert await b.search_text(inbox.id, ["50% off_"]) == {1}  # LIKE wildcards are literals
    assert await b.search_text(inbox.id, ["\\O/"]) == {1}


# -- the spam filter's tallies (not in the shared contract yet) ---------------------------------
async def test_spam_tallies_clamp_and_follow_the_account(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = nodes
    account, _ = await add_bob(a)
    assert await a.spam_model(account.id, ["x"]) == (SpamCounts(), {})
    await asyncio.gather(
        *(
            node.train_spam_model(account.id, SpamCounts(0, 1), {"cheap": SpamCounts(0, 1)})
            for node in (a, b) * 5
        )
    )
    assert await b.spam_model(account.id, ["cheap", "new"]) == (
        SpamCounts(0, 10),
        {"cheap": SpamCounts(0, 10)},
    )
    await a.train_spam_model(account.id, SpamCounts(0, -20), {"cheap": SpamCounts(0, -20)})
    assert await a.spam_model(account.id, ["cheap"]) == (SpamCounts(0, 0), {})  # dropped
    await a.train_spam_model(None, SpamCounts(1, 0), {"hello": SpamCounts(1, 0)})
    assert await a.spam_model(None, ["hello"]) == (SpamCounts(1, 0), {"hello": SpamCounts(1, 0)})
    assert await a.spam_training_mark(account.id, "k") is None
    await a.set_spam_training_mark(account.id, "k", spam=True)
    await b.set_spam_training_mark(account.id, "k", spam=False)
    assert await a.spam_training_mark(account.id, "k") is False
    await a.record_sender_reputation(account.id, ["s.example", "s.example"], SpamCounts(2, 0))
    await b.record_sender_reputation(account.id, ["s.example"], SpamCounts(-5, 1))
    assert await a.sender_reputation(account.id, ["s.example", "t"]) == {
        "s.example": SpamCounts(0, 1)
    }
    await a.set_sender_entry(account.id, SenderListEntry("B.example", SenderListKind.ALLOW))
    await a.set_sender_entry(account.id, SenderListEntry("b.example", SenderListKind.BLOCK))
    await a.set_sender_entry(account.id, SenderListEntry("a@c.example", SenderListKind.ALLOW))
    assert await b.list_sender_entries(account.id) == [
        SenderListEntry("a@c.example", SenderListKind.ALLOW),
        SenderListEntry("b.example", SenderListKind.BLOCK),
    ]
    await a.remove_sender_entry(account.id, "a@c.example")
    with pytest.raises(NotFound):
        await a.remove_sender_entry(account.id, "a@c.example")
    with pytest.raises(NotFound):
        await a.train_spam_model(10**9, SpamCounts(1, 0), {})
    await a.remove_account(account.id)
    assert await a.spam_model(account.id, ["hello"]) == (SpamCounts(), {})
    assert await a.spam_model(None, ["hello"]) == (SpamCounts(1, 0), {"hello": SpamCounts(1, 0)})


async def test_text_is_indexed_behind_the_writes(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = nodes
    _, inbox = await add_bob(a)
    for i in range(5):
        await a.append(inbox.id, *make_message(i, body=f"needle {i}"))
    assert await b.search_text(inbox.id, ["needle"]) == {1, 2, 3, 4, 5}  # scanned meanwhile

    async def pending(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> object:
        cur = await conn.execute("SELECT count(*) FROM blob_text WHERE NOT indexed")
        row = await cur.fetchone()
        return row[0] if row else None

    for _ in range(100):  # the writer's node indexes once its writes pause
        if await a._read(pending) == 0:
            break
        await asyncio.sleep(0.05)
    assert await a._read(pending) == 0
    assert await b.search_text(inbox.id, ["NEEDLE 3"]) == {4}


async def test_message_infos_without_text(nodes: tuple[PostgresStore, PostgresStore]) -> None:
    a, _ = nodes
    _, inbox = await add_bob(a)
    raw, info = make_message(1, body="the text")
    record = (await a.append(inbox.id, raw, info)).record
    assert await a.message_infos(inbox.id, [record.uid]) == {record.uid: info}
    bare = await a.message_infos(inbox.id, [record.uid], with_text=False)
    assert bare == {record.uid: dataclasses.replace(info, header_text="", body_text="")}


# -- kept lookups across nodes -------------------------------------------------------------------
# A write on one node is seen by the other once its notification arrived
# (PostgresStore.heard_everything; with a TTL of ten minutes nothing else could refresh it); a
# write nobody announced, at the latest after directory_ttl_ms, and at once when a lost LISTEN
# connection comes back.
#: Kept ten minutes: within a test only a notification (or a reconnection) refreshes a lookup.
LONG = PostgresLimits(directory_ttl_ms=600_000)


async def _opened(url: str, limits: PostgresLimits) -> PostgresStore:
    store = PostgresStore(url, limits=limits)
    await store.open()
    return store


@pytest.fixture
async def kept_nodes(migrated_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two nodes that keep lookups ten minutes."""
    a, b = await _opened(migrated_url, LONG), await _opened(migrated_url, LONG)
    yield a, b
    await a.close()
    await b.close()


async def _eventually(check: Callable[[], Awaitable[bool]], deadline: float) -> float:
    """Seconds until ``check()`` held, polled every 20 ms; fails past ``deadline`` seconds."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not await check():
        assert loop.time() - started < deadline, "not seen before the deadline"
        await asyncio.sleep(0.02)
    return loop.time() - started


async def test_directory_writes_reach_the_other_node(
    kept_nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = kept_nodes
    bob, _ = await add_bob(a)
    await b.heard_everything()  # past the notifications of the set-up
    # b keeps its answers: the domain list, a missing alias, bob, bob's settings.
    assert [d.name for d in await b.list_domains()] == [DOMAIN]
    assert await b.get_alias(f"info@{DOMAIN}") is None
    assert await b.get_account(f"bob@{DOMAIN}") == bob
    assert await b.get_settings(bob.id) == AccountSettings()

    await a.add_domain("other.test")
    alias = await a.add_alias(f"info@{DOMAIN}", [f"bob@{DOMAIN}"])
    forwarding = AccountSettings(forward_to=("bob@elsewhere.test",), forward_keep_copy=False)
    await a.set_settings(bob.id, forwarding)
    await a.set_display_name(bob.id, "Bob")
    await b.heard_everything()
    assert [d.name for d in await b.list_domains()] == [DOMAIN, "other.test"]
    assert await b.get_alias(f"info@{DOMAIN}") == alias
    assert await b.get_settings(bob.id) == forwarding
    renamed = await b.get_account(f"bob@{DOMAIN}")
    assert renamed is not None and renamed.display_name == "Bob"

    await a.remove_alias(f"info@{DOMAIN}")
    await a.remove_account(bob.id)
    await b.heard_everything()
    assert await b.get_alias(f"info@{DOMAIN}") is None
    assert await b.get_account(f"bob@{DOMAIN}") is None


async def test_a_notification_alone_refreshes_within_a_deadline(
    kept_nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    """Without the barrier: the other node sees an alias well before the ten-minute TTL."""
    a, b = kept_nodes
    await add_bob(a)
    await b.heard_everything()
    assert await b.get_alias(f"sales@{DOMAIN}") is None
    await a.add_alias(f"sales@{DOMAIN}", [f"bob@{DOMAIN}"])

    async def seen() -> bool:
        return await b.get_alias(f"sales@{DOMAIN}") is not None

    await _eventually(seen, deadline=5.0)


async def test_spam_filter_writes_reach_the_other_node(
    kept_nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = kept_nodes
    bob, _ = await add_bob(a)
    await b.heard_everything()
    tokens, keys = ["cheap", "hello"], ["from:ann@example.org"]
    before = await b.spam_evidence(bob.id, tokens, keys)  # kept by b
    assert before.sender_entries == [] and before.reputation == {}

    block = SenderListEntry("spam.test", SenderListKind.BLOCK)
    await a.set_sender_entry(bob.id, block)
    await a.train_spam_model(None, SpamCounts(0, 1), {"cheap": SpamCounts(0, 1)})
    await a.train_spam_model(bob.id, SpamCounts(1, 0), {"hello": SpamCounts(1, 0)})
    await a.record_sender_reputation(bob.id, keys, SpamCounts(0, 2))
    await b.heard_everything()
    after = await b.spam_evidence(bob.id, tokens, keys)
    assert after.sender_entries == [block]
    assert after.global_model == (SpamCounts(0, 1), {"cheap": SpamCounts(0, 1)})
    assert after.account_model == (SpamCounts(1, 0), {"hello": SpamCounts(1, 0)})
    assert after.reputation == {keys[0]: SpamCounts(0, 2)}
    assert after.generations == (before.generations[0] + 1, before.generations[1] + 1)

    await a.remove_sender_entry(bob.id, "spam.test")
    await b.heard_everything()
    assert (await b.spam_evidence(bob.id, tokens, keys)).sender_entries == []


async def test_no_delivery_to_an_account_removed_on_another_node(
    kept_nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    """b still holds bob (it has not heard yet, or its LISTEN connection is down): the delivery
    transaction finds no mailbox, as on SQLite, and stores nothing."""
    a, b = kept_nodes
    bob, _ = await add_bob(a)
    await b.heard_everything()
    kept = await b.get_account(f"bob@{DOMAIN}")
    assert kept == bob
    await a.remove_account(bob.id)
    [result] = await b.deliver(*make_message(1), [DeliveryTarget(kept.id)])
    assert result.status is DeliveryStatus.NO_MAILBOX and result.record is None
    await b.heard_everything()
    assert await b.get_account(f"bob@{DOMAIN}") is None


async def _insert_alias_unannounced(url: str, address: str, target: str) -> None:
    """A write no node announces (another program on the database)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO aliases (address, domain, targets) VALUES (%s, %s, %s)",
            (address, address.rpartition("@")[2], [target]),
        )


async def test_an_unannounced_write_is_seen_after_the_ttl(migrated_url: str) -> None:
    url = migrated_url
    ttl_ms = 300
    store = await _opened(url, PostgresLimits(directory_ttl_ms=ttl_ms))
    try:
        await add_bob(store)
        await store.heard_everything()  # its own writes' notifications come back too
        assert await store.get_alias(f"info@{DOMAIN}") is None
        await _insert_alias_unannounced(url, f"info@{DOMAIN}", f"bob@{DOMAIN}")

        async def seen() -> bool:
            return await store.get_alias(f"info@{DOMAIN}") is not None

        await _eventually(seen, deadline=ttl_ms / 1000 + 2.0)
    finally:
        await store.close()


async def test_a_reconnected_listener_forgets_everything(migrated_url: str) -> None:
    """What was announced while LISTEN was down is lost: on reconnecting a node forgets all it
    kept (here an unannounced write stands for it; the TTL is ten minutes)."""
    url = migrated_url
    store = await _opened(url, PostgresLimits(directory_ttl_ms=600_000, listen_retry=0.05))
    try:
        await add_bob(store)
        await store.heard_everything()  # its own writes' notifications come back too
        assert await store.get_alias(f"info@{DOMAIN}") is None
        await _insert_alias_unannounced(url, f"info@{DOMAIN}", f"bob@{DOMAIN}")
        await store.heard_everything()
        assert await store.get_alias(f"info@{DOMAIN}") is None  # kept, and nobody said
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            cur = await conn.execute("SELECT current_schema()")
            row = await cur.fetchone()
            assert row is not None
            channel = pg_notify.channel_for(str(row[0]))
            # Only this store's LISTEN connection: other test runs share the server.
            cur = await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query = %s AND pid <> pg_backend_pid()",
                (f'LISTEN "{channel}"',),
            )
            assert [r[0] for r in await cur.fetchall()] == [True]

        async def seen() -> bool:
            return await store.get_alias(f"info@{DOMAIN}") is not None

        await _eventually(seen, deadline=10.0)
        await store.heard_everything()  # listening again
    finally:
        await store.close()


def test_forget_payloads() -> None:
    items: list[pg_notify.Forget] = [pg_notify.DIRECTORY, ("reputation", 7, "from:a b@x")]
    assert pg_notify.decode_forget(pg_notify.encode_forget(items)) == items
    # Too many keys for one payload: everything they could belong to, never nothing.
    many: list[pg_notify.Forget] = [("reputation", 7, f"k{i:05}" * 20) for i in range(100)]
    assert pg_notify.decode_forget(pg_notify.encode_forget(many)) == [pg_notify.EVIDENCE]
    big = pg_notify.encode_forget([pg_notify.DIRECTORY, *many])
    assert len(big.encode()) < 8000
    assert pg_notify.decode_forget(big) == [pg_notify.DIRECTORY, pg_notify.EVIDENCE]
    # Another program's payload on the channel: forget everything (None).
    for junk in ("~", "~{}", "~[1]", "~[[]]", '~[["model", true]]', '~[["x", 1.5]]'):
        assert pg_notify.decode_forget(junk) is None, junk


async def test_evidence_is_answered_from_memory_new_tokens_included(
    kept_nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    """A small model is read whole once per generation, so a later message's tokens never
    asked before are known (absent) without a read, and its evidence comes from memory."""
    a, _ = kept_nodes
    bob, _ = await add_bob(a)
    await a.train_spam_model(None, SpamCounts(0, 1), {"cheap": SpamCounts(0, 1)})
    await a.train_spam_model(bob.id, SpamCounts(1, 0), {"hello": SpamCounts(1, 0)})
    await a.heard_everything()
    keys = ["from:ann@example.org"]
    first = await a.spam_evidence(bob.id, ["cheap", "subject-1"], keys)
    tokens = ["cheap", "hello", "subject-2"]
    kept = a._evidence.answer(a._spam_cache, bob.id, tokens, keys)
    assert kept is not None
    assert kept.global_model == (SpamCounts(0, 1), {"cheap": SpamCounts(0, 1)})
    assert kept.account_model == (SpamCounts(1, 0), {"hello": SpamCounts(1, 0)})
    assert kept.generations == first.generations
    assert await a.spam_evidence(bob.id, tokens, keys) == kept


async def test_moves_both_ways_at_once_do_not_deadlock(
    migrated_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The contract's two opposite moves at once, here without one aborted as a deadlock and
    retried (each cost ``deadlock_timeout``, a second): both calendars are locked in one order."""
    store = await _opened(migrated_url, PostgresLimits())
    try:
        account, _ = await add_bob(store)
        with caplog.at_level(logging.INFO, logger="pillarbox.store.postgres.store"):
            await StoreContract().test_calendar_objects_moved_both_ways_at_once(store, account)
        assert not [r for r in caplog.records if "Deadlock" in r.getMessage()]
    finally:
        await store.close()


async def _lock_holders(url: str, node: PostgresStore, mode: str) -> list[int]:
    """Backend pids holding the servers' advisory lock of ``node``'s store in ``mode``."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND objsubid = 2 AND classid::int = %s AND objid::int = %s AND mode = %s",
            (store_key(node._channel), SERVERS, mode),
        )
        return [row[0] for row in await cur.fetchall()]


async def _terminate(url: str, pid: int) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def _until(probe: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(200):
        if await probe():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not {what} within 10 s")


async def test_a_node_re_takes_the_servers_lock_when_its_connection_breaks(
    migrated_url: str,
) -> None:
    """The lock connection's backend terminated: the node takes the shared lock again on a
    new connection, and goes on."""
    node = PostgresStore(migrated_url, serving=True, limits=PostgresLimits(listen_retry=0.05))
    await node.open()
    try:
        [first] = await _lock_holders(migrated_url, node, "ShareLock")
        await _terminate(migrated_url, first)

        async def retaken() -> bool:
            holders = await _lock_holders(migrated_url, node, "ShareLock")
            return len(holders) == 1 and first not in holders

        await _until(retaken, "re-taken")
        await node.check_schema()  # nothing wrong: the node goes on
    finally:
        await node.close()
    assert await _lock_holders(migrated_url, node, "ShareLock") == []


async def test_a_node_that_lost_its_lock_to_a_migration_must_stop(migrated_url: str) -> None:
    """While the node's lock connection was down a migration took the exclusive lock: the node
    does not re-take it under the migration, and its schema check says it must stop."""
    node = PostgresStore(migrated_url, serving=True, limits=PostgresLimits(listen_retry=0.05))
    await node.open()
    try:
        [first] = await _lock_holders(migrated_url, node, "ShareLock")
        key = (store_key(node._channel), SERVERS)
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as mig:
            await _terminate(migrated_url, first)

            async def migrating() -> bool:
                cur = await mig.execute("SELECT pg_try_advisory_lock(%s, %s)", key)
                row = await cur.fetchone()
                return row is not None and bool(row[0])

            async def refused() -> bool:
                try:
                    await node.check_schema()
                except StoreInUse:
                    return True
                return False

            await _until(migrating, "the exclusive lock taken")
            await _until(refused, "refused")
            with pytest.raises(StoreInUse, match="a migration took the store while"):
                await node.check_schema()
            assert await _lock_holders(migrated_url, node, "ShareLock") == []
    finally:
        await node.close()
