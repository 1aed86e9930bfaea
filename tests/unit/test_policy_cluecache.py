"""The policy's clues kept between messages: the same verdicts as working them out afresh,
before and after a training by this or another process."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pillarbox.dns.resolver import DnsResolver
from pillarbox.mail.parse import parse_message
from pillarbox.policy.classifier import DEFAULT_SETTINGS, message_tokens
from pillarbox.policy.cluecache import ClueCache, ModelsState
from pillarbox.policy.pipeline import InboundPolicy, PolicySettings
from pillarbox.policy.verdict import Verdict
from pillarbox.store.spamcache import GLOBAL_MODEL
from pillarbox.store.sqlite.store import SqliteStore
from pillarbox.store.types import SpamCounts, SpamEvidence

MESSAGE = (
    b"From: Promo <promo@shop.test>\r\nTo: bob@example.org\r\nSubject: weekly offers\r\n\r\n"
    b"Discounts on garden furniture this week only, cheap prices and free delivery.\r\n"
)
OTHER = (
    b"From: Ann <ann@lists.test>\r\nTo: bob@example.org\r\nSubject: meeting notes\r\n\r\n"
    b"The agenda for the meeting: cheap garden furniture for the office terrace.\r\n"
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "store.db")
    await s.open()
    await s.add_domain("example.org")
    await s.add_account("bob@example.org", "!")
    yield s
    await s.close()


def policy(store: SqliteStore) -> InboundPolicy:
    # No DNS is asked: messages without an arrival are judged on content only.
    return InboundPolicy(
        PolicySettings(), store, DnsResolver(nameserver="127.0.0.1:9"), hostname="mx.test"
    )


async def verdict(p: InboundPolicy, raw: bytes, account_id: int) -> Verdict:
    return await p.verdict(await p.assess(None, raw, parse_message(raw)), account_id)


def tallies(raw: bytes, counts: SpamCounts) -> dict[str, SpamCounts]:
    return dict.fromkeys(message_tokens(raw, parse_message(raw)), counts)


async def test_kept_clues_give_fresh_verdicts_across_trainings(
    store: SqliteStore, tmp_path: Path
) -> None:
    bob = await store.get_account("bob@example.org")
    assert bob is not None
    kept = policy(store)
    await store.train_spam_model(None, SpamCounts(10, 10), tallies(MESSAGE, SpamCounts(4, 0)))
    first = await verdict(kept, MESSAGE, bob.id)
    assert first == await verdict(policy(store), MESSAGE, bob.id)
    assert "BAYES" in [r.code for r in first.reasons] and first.score < 0
    # Another message shares some tokens: their kept clues, the rest read.
    assert await verdict(kept, OTHER, bob.id) == await verdict(policy(store), OTHER, bob.id)

    # The account's own training (this process): its clues outweigh the global ones.
    await store.train_spam_model(bob.id, SpamCounts(0, 10), tallies(MESSAGE, SpamCounts(0, 10)))
    second = await verdict(kept, MESSAGE, bob.id)
    assert second == await verdict(policy(store), MESSAGE, bob.id)
    assert second.score > 0

    # A training by another process on the same database that keeps the totals as they
    # were: every token of the message is kept, and every one is stale. The store sees it
    # once the evidence it keeps has expired.
    other = SqliteStore(tmp_path / "store.db")
    await other.open()
    try:
        await other.train_spam_model(None, SpamCounts(0, 0), tallies(MESSAGE, SpamCounts(50, 0)))
    finally:
        await other.close()
    await asyncio.sleep(store.cross_process_delay)
    third = await verdict(kept, MESSAGE, bob.id)
    assert third == await verdict(policy(store), MESSAGE, bob.id)
    assert third.score < 0


def test_tables_are_bounded_and_replaced_by_state() -> None:
    cache = ClueCache(max_clues=3)
    empty = SpamEvidence((SpamCounts(2, 2), {}), (SpamCounts(), {}), {}, [], (1, 0))
    state = ModelsState.of(empty, DEFAULT_SETTINGS)
    table = cache.table(1, state)
    assert cache.table(1, state) is table and cache.current(1) is table
    cache.add(table, ["a", "b", "c"], {"a": SpamCounts(0, 2)}, {})
    assert table.missing(frozenset("abd")) == {"d"}
    # Past the bound every table is dropped.
    assert cache.table(2, state) is not table and cache.current(1) is None
    # A new generation of the same totals is a new state: a new, empty table.
    trained = ModelsState.of(
        SpamEvidence((SpamCounts(2, 2), {}), (SpamCounts(), {}), {}, [], (2, 0)), DEFAULT_SETTINGS
    )
    assert len(cache.table(2, trained)) == 0 and cache.table(2, trained) is not cache.table(
        2, state
    )


async def test_judge_gives_each_account_its_verdict(store: SqliteStore) -> None:
    """One account (awaited directly) and several (concurrently) are judged alike."""
    bob = await store.get_account("bob@example.org")
    carol = await store.add_account("carol@example.org", "!")
    assert bob is not None
    await store.train_spam_model(None, SpamCounts(10, 10), tallies(MESSAGE, SpamCounts(0, 4)))
    await store.train_spam_model(bob.id, SpamCounts(10, 0), tallies(MESSAGE, SpamCounts(10, 0)))
    p = policy(store)
    assessment = await p.assess(None, MESSAGE, parse_message(MESSAGE))
    expected = {a: await p.verdict(assessment, a) for a in (bob.id, carol.id)}
    assert expected[bob.id].action != expected[carol.id].action
    for accounts in ([bob.id], [carol.id], [bob.id, carol.id]):
        judgement = await p.judge(assessment, accounts)
        assert judgement.refusal == ""
        assert {a: c.verdict for a, c in judgement.copies.items()} == {
            a: expected[a] for a in accounts
        }


async def test_warm_up_reads_the_global_model_before_the_first_message(
    store: SqliteStore, tmp_path: Path
) -> None:
    await store.train_spam_model(None, SpamCounts(3, 2), tallies(MESSAGE, SpamCounts(0, 2)))
    conn = sqlite3.connect(tmp_path / "store.db")
    try:
        (version,) = conn.execute(
            "SELECT generation, ham, spam FROM spam_models WHERE account_id = ?", (GLOBAL_MODEL,)
        ).fetchall()
    finally:
        conn.close()
    tokens = sorted(tallies(OTHER, SpamCounts()))
    assert store._spam_cache.known(GLOBAL_MODEL, version, tokens)[1] == tokens  # nothing kept
    await policy(store).warm_up()
    # Kept whole: every token of the next message is known, present or absent, without a read.
    counts, missing = store._spam_cache.known(GLOBAL_MODEL, version, tokens)
    assert missing == []
    assert set(counts) == set(tokens) & set(tallies(MESSAGE, SpamCounts()))
