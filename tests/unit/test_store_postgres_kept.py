"""The PostgreSQL store's kept lookups (directory, settings, spam evidence) across nodes: two
store instances on one schema stand for two nodes. A write on one is seen by the other once its
notification arrived (:meth:`PostgresStore.heard_everything`; the TTL here is ten minutes, so
nothing else could refresh it); a write nobody announced, at the latest after
``directory_ttl_ms``, and at once when a lost LISTEN connection comes back.

Skipped when no server is reachable (see ``pillarbox.testing.postgres``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
import pytest

from pillarbox.store.postgres import PostgresLimits, PostgresStore
from pillarbox.store.postgres import notify as pg_notify
from pillarbox.store.types import (
    AccountSettings,
    DeliveryStatus,
    DeliveryTarget,
    SenderListEntry,
    SenderListKind,
    SpamCounts,
)
from pillarbox.testing.postgres import TestDatabase, unreachable_reason
from pillarbox.testing.store_contract import DOMAIN, make_message

_UNREACHABLE = unreachable_reason()
pytestmark = pytest.mark.skipif(_UNREACHABLE is not None, reason=_UNREACHABLE or "")

#: Kept ten minutes: within a test only a notification (or a reconnection) refreshes a lookup.
LONG = PostgresLimits(directory_ttl_ms=600_000)


async def _opened(url: str, limits: PostgresLimits) -> PostgresStore:
    store = PostgresStore(url, limits=limits)
    await store.open()
    return store


@pytest.fixture
async def nodes(database: TestDatabase) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    url = database.new_store_url()
    a, b = await _opened(url, LONG), await _opened(url, LONG)
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
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = nodes
    await a.add_domain(DOMAIN)
    bob = await a.add_account(f"bob@{DOMAIN}", "h")
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
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    """Without the barrier: the other node sees an alias well before the ten-minute TTL."""
    a, b = nodes
    await a.add_domain(DOMAIN)
    await a.add_account(f"bob@{DOMAIN}", "h")
    await b.heard_everything()
    assert await b.get_alias(f"sales@{DOMAIN}") is None
    await a.add_alias(f"sales@{DOMAIN}", [f"bob@{DOMAIN}"])

    async def seen() -> bool:
        return await b.get_alias(f"sales@{DOMAIN}") is not None

    await _eventually(seen, deadline=5.0)


async def test_spam_filter_writes_reach_the_other_node(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = nodes
    await a.add_domain(DOMAIN)
    bob = await a.add_account(f"bob@{DOMAIN}", "h")
    tokens, keys = ["cheap", "hello"], ["from:ann@example.org"]
    await b.heard_everything()
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
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    """b still holds bob (it has not heard yet, or its LISTEN connection is down): the delivery
    transaction finds no mailbox, as on SQLite, and stores nothing."""
    a, b = nodes
    await a.add_domain(DOMAIN)
    bob = await a.add_account(f"bob@{DOMAIN}", "h")
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


async def test_an_unannounced_write_is_seen_after_the_ttl(database: TestDatabase) -> None:
    url = database.new_store_url()
    ttl_ms = 300
    store = await _opened(url, PostgresLimits(directory_ttl_ms=ttl_ms))
    try:
        await store.add_domain(DOMAIN)
        await store.add_account(f"bob@{DOMAIN}", "h")
        await store.heard_everything()  # its own writes' notifications come back too
        assert await store.get_alias(f"info@{DOMAIN}") is None
        await _insert_alias_unannounced(url, f"info@{DOMAIN}", f"bob@{DOMAIN}")

        async def seen() -> bool:
            return await store.get_alias(f"info@{DOMAIN}") is not None

        await _eventually(seen, deadline=ttl_ms / 1000 + 2.0)
    finally:
        await store.close()


async def test_a_reconnected_listener_forgets_everything(database: TestDatabase) -> None:
    """What was announced while LISTEN was down is lost: on reconnecting a node forgets all it
    kept (here an unannounced write stands for it; the TTL is ten minutes)."""
    url = database.new_store_url()
    store = await _opened(url, PostgresLimits(directory_ttl_ms=600_000, listen_retry=0.05))
    try:
        await store.add_domain(DOMAIN)
        await store.add_account(f"bob@{DOMAIN}", "h")
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
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    """A small model is read whole once per generation, so a later message's tokens never
    asked before are known (absent) without a read, and its evidence comes from memory."""
    a, _ = nodes
    await a.add_domain(DOMAIN)
    bob = await a.add_account(f"bob@{DOMAIN}", "h")
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
