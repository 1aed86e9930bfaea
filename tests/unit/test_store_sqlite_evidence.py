"""The SQLite backend's spam evidence kept in memory (pillarbox.store.evidencecache):
the same answers as a read, this store's own writes seen at once, other processes' after the
TTL."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from pillarbox.errors import NotFound
from pillarbox.store.evidencecache import SpamEvidenceCache
from pillarbox.store.spamcache import SpamModelCache
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.sqlite.store import SqliteLimits
from pillarbox.store.types import SenderListEntry, SenderListKind, SpamCounts, SpamEvidence
from pillarbox.testing.store_contract import DOMAIN

KEYS = ["from:a@b.test", "b.test"]
BLOCK = SenderListEntry("b.test", SenderListKind.BLOCK)
LONG = SqliteLimits(directory_ttl_ms=60_000)


async def _opened(path: Path, limits: SqliteLimits | None = None) -> SqliteStore:
    store = SqliteStore(path, limits=limits or SqliteLimits())
    await store.open()
    return store


async def _with_account(path: Path, limits: SqliteLimits) -> tuple[SqliteStore, int]:
    store = await _opened(path, limits)
    await store.add_domain(DOMAIN)
    return store, (await store.add_account(f"a@{DOMAIN}", "h")).id


def _outside(path: Path, sql: str, *args: object) -> None:
    """A write behind the store's back, as another process makes it."""
    conn = sqlite3.connect(path)
    conn.execute(sql, args)
    conn.commit()
    conn.close()


def _kept(store: SqliteStore, account: int, tokens: list[str], keys: list[str]) -> object:
    """What the store would answer from memory now (None: it would read)."""
    return store._evidence.answer(store._spam_cache, account, tokens, keys)


async def test_own_writes_are_seen_by_the_next_answer(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store, account = await _with_account(path, LONG)
    tokens = ["cheap", "meeting"]
    try:
        await store.train_spam_model(None, SpamCounts(1, 1), {"cheap": SpamCounts(0, 1)})
        first = await store.spam_evidence(account, tokens, KEYS)
        # Kept: a change behind the store's back is not seen within the TTL…
        _outside(path, "INSERT INTO sender_reputation VALUES (?, 'from:a@b.test', 5, 0)", account)
        assert await store.spam_evidence(account, tokens, KEYS) == first
        # …but a write of the store's own forgets what it changes, even one that failed (and
        # the read that follows refreshes every piece).
        with pytest.raises(NotFound):
            await store.remove_sender_entry(account, "nobody.test")
        seen = await store.spam_evidence(account, tokens, KEYS)
        assert seen.reputation == {"from:a@b.test": SpamCounts(5, 0)}

        await store.record_sender_reputation(account, KEYS[:1], SpamCounts(spam=1))
        seen = await store.spam_evidence(account, tokens, KEYS)
        assert seen.reputation == {"from:a@b.test": SpamCounts(5, 1)}
        await store.train_spam_model(account, SpamCounts(1, 0), {"meeting": SpamCounts(1, 0)})
        seen = await store.spam_evidence(account, tokens, KEYS)
        assert seen.account_model == (SpamCounts(1, 0), {"meeting": SpamCounts(1, 0)})
        assert seen.generations == (1, 1)
        # The global model trained with the same totals: only the generation tells.
        await store.train_spam_model(
            None, SpamCounts(), {"cheap": SpamCounts(0, -1), "meeting": SpamCounts(0, 1)}
        )
        seen = await store.spam_evidence(account, tokens, KEYS)
        assert seen.global_model == (SpamCounts(1, 1), {"meeting": SpamCounts(0, 1)})
        assert seen.generations == (2, 1)
        await store.set_sender_entry(account, BLOCK)
        assert (await store.spam_evidence(account, tokens, KEYS)).sender_entries == [BLOCK]
        await store.remove_sender_entry(account, BLOCK.pattern)
        assert (await store.spam_evidence(account, tokens, KEYS)).sender_entries == []
        assert _kept(store, account, tokens, KEYS) is not None
        await store.remove_account(account)
        gone = await store.spam_evidence(account, tokens, KEYS)
        assert gone.account_model == (SpamCounts(), {}) and gone.reputation == {}
    finally:
        await store.close()


async def test_own_writes_forget_only_what_they_change(tmp_path: Path) -> None:
    """Mail sent by any user records reputation: another account's kept evidence stays."""
    path = tmp_path / "db.sqlite3"
    store, ann = await _with_account(path, LONG)
    bob = (await store.add_account(f"bob@{DOMAIN}", "h")).id
    try:
        kept = await store.spam_evidence(bob, ["x"], KEYS)
        _outside(path, "INSERT INTO sender_lists VALUES (?, 'b.test', 'block')", bob)
        await store.record_sender_reputation(ann, KEYS, SpamCounts(ham=1))
        await store.set_sender_entry(ann, BLOCK)
        await store.train_spam_model(ann, SpamCounts(1, 0), {"x": SpamCounts(1, 0)})
        assert await store.spam_evidence(bob, ["x"], KEYS) == kept
        assert (await store.spam_evidence(ann, ["x"], KEYS)).reputation == {
            key: SpamCounts(1, 0) for key in KEYS
        }
        # The global model is every account's: its training is.
        await store.train_spam_model(None, SpamCounts(0, 1), {"x": SpamCounts(0, 1)})
        seen = await store.spam_evidence(bob, ["x"], KEYS)
        assert seen.global_model == (SpamCounts(0, 1), {"x": SpamCounts(0, 1)})
        assert seen.sender_entries == [BLOCK]  # the read refreshed every piece
    finally:
        await store.close()


async def test_other_writers_are_seen_after_the_ttl_not_before(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    slow, account = await _with_account(path, LONG)
    quick = await _opened(path, SqliteLimits(directory_ttl_ms=50))
    other = await _opened(path)  # `pillarbox spam train` beside the server
    tokens = ["cheap", "pills"]
    try:
        await slow.train_spam_model(None, SpamCounts(1, 1), {"cheap": SpamCounts(0, 1)})
        before = await slow.spam_evidence(account, tokens, KEYS)
        assert await quick.spam_evidence(account, tokens, KEYS) == before
        # The same totals, other counts; and a block entry.
        await other.train_spam_model(
            None, SpamCounts(), {"cheap": SpamCounts(0, -1), "pills": SpamCounts(0, 1)}
        )
        await other.set_sender_entry(account, BLOCK)
        assert await slow.spam_evidence(account, tokens, KEYS) == before  # within a minute
        await asyncio.sleep(0.05)
        assert await quick.spam_evidence(account, tokens, KEYS) == SpamEvidence(
            (SpamCounts(1, 1), {"pills": SpamCounts(0, 1)}),
            (SpamCounts(), {}),
            {},
            [BLOCK],
            (2, 0),
        )
    finally:
        for store in (slow, quick, other):
            await store.close()


@pytest.mark.parametrize("tokens_kept", [200_000, 8], ids=["whole-models", "token-by-token"])
async def test_memory_answers_are_the_reads_answers(tmp_path: Path, tokens_kept: int) -> None:
    """Against a store that keeps nothing (TTL 0) on the same database; with models read
    whole (every absence known) and with models too big for that (limit 2 tokens)."""
    path = tmp_path / "db.sqlite3"
    kept, bob = await _with_account(path, SqliteLimits(spam_cache_tokens=tokens_kept))
    uncached = await _opened(path, SqliteLimits(directory_ttl_ms=0))
    try:
        ann = (await kept.add_account(f"ann@{DOMAIN}", "h")).id  # never trained
        words = {w: SpamCounts(n, 5 - n) for n, w in enumerate("abcdef")}
        await kept.train_spam_model(None, SpamCounts(7, 3), words)
        await kept.train_spam_model(bob, SpamCounts(2, 0), {"a": SpamCounts(2, 0)})
        await kept.record_sender_reputation(bob, KEYS[:1], SpamCounts(ham=2))
        await kept.set_sender_entry(bob, BLOCK)
        await kept.set_sender_entry(bob, SenderListEntry("c@d.test", SenderListKind.ALLOW))
        asks = [
            (bob, ["a", "b", "zz"], KEYS),
            (bob, ["a", "c"], KEYS),
            (bob, [], KEYS[1:]),
            (bob, ["f"], []),
            (ann, ["a", "b"], KEYS),
            (ann, [], []),
        ]
        for account, tokens, keys in asks:
            read = await uncached.spam_evidence(account, tokens, keys)
            assert await kept.spam_evidence(account, tokens, keys) == read
            memory = await kept.spam_evidence(account, tokens, keys)
            assert _kept(kept, account, tokens, keys) == read == memory
            # A caller's lists and dicts are its own.
            memory.sender_entries.clear()
            memory.reputation.clear()
            assert await kept.spam_evidence(account, tokens, keys) == read
        # A token never asked for: known absent where the model is kept whole.
        novel = _kept(kept, bob, ["a", "never-seen"], KEYS)
        if tokens_kept == 8:
            assert novel is None
        else:
            assert novel == await uncached.spam_evidence(bob, ["a", "never-seen"], KEYS)
        assert _kept(kept, bob, ["a"], ["sent:x@y.test"]) is None  # a key never asked for
    finally:
        await kept.close()
        await uncached.close()


def test_a_read_begun_before_an_own_write_is_not_kept() -> None:
    models = SpamModelCache(100)
    cache = SpamEvidenceCache(ttl=60.0, max_entries=100)
    evidence = SpamEvidence((SpamCounts(), {}), (SpamCounts(), {}), {}, [BLOCK])
    began = cache.generation
    cache.invalidate()  # the write became durable while the read ran
    cache.keep(began, 1, {}, [], evidence)
    assert cache.answer(models, 1, [], []) is None
    cache.keep(cache.generation, 1, {}, [], evidence)
    assert cache.answer(models, 1, [], []) == evidence
    # The bound: past it, expired entries go, and if none had expired, all.
    small = SpamEvidenceCache(ttl=60.0, max_entries=3)
    small.keep(small.generation, 1, {}, ["k1", "k2"], evidence)  # 2 models + list + 2 keys
    assert small.answer(models, 1, [], ["k1", "k2"]) is None
