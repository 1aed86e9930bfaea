"""The spam filter's store additions (SQLite) and learning from moves into and out of Junk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pillarbox.errors import NotFound
from pillarbox.mail.parse import parse_message
from pillarbox.policy import learning
from pillarbox.policy.verdict import Thresholds, decide
from pillarbox.store.sqlite.store import SqliteStore
from pillarbox.store.types import (
    DeliveryTarget,
    SenderListEntry,
    SenderListKind,
    SpamCounts,
)

MESSAGE = (
    b"From: Promo <promo@shop.test>\r\nTo: bob@example.org\r\nSubject: weekly offers\r\n\r\n"
    b"Discounts on garden furniture this week only.\r\n"
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "store.db")
    await s.open()
    await s.add_domain("example.org")
    await s.add_account("bob@example.org", "!")
    yield s
    await s.close()


async def test_training_counts_clamp_at_zero_and_vanish(store: SqliteStore) -> None:
    await store.train_spam_model(
        None, SpamCounts(2, 1), {"a": SpamCounts(2, 0), "b": SpamCounts(0, 1)}
    )
    totals, counts = await store.spam_model(None, ["a", "b", "c"])
    assert (totals, counts) == (SpamCounts(2, 1), {"a": SpamCounts(2, 0), "b": SpamCounts(0, 1)})
    await store.train_spam_model(
        None, SpamCounts(-5, 0), {"a": SpamCounts(-9, 0), "b": SpamCounts(0, -1)}
    )
    totals, counts = await store.spam_model(None, ["a", "b"])
    assert (totals, counts) == (SpamCounts(0, 1), {})


async def test_account_models_are_separate_and_removed_with_the_account(
    store: SqliteStore,
) -> None:
    bob = await store.get_account("bob@example.org")
    assert bob is not None
    await store.train_spam_model(bob.id, SpamCounts(1, 0), {"a": SpamCounts(1, 0)})
    assert await store.spam_model(None, ["a"]) == (SpamCounts(), {})
    await store.record_sender_reputation(bob.id, ["from:x@y.test"], SpamCounts(spam=2))
    await store.set_sender_entry(bob.id, SenderListEntry("Friend.test", SenderListKind.ALLOW))
    assert await store.sender_reputation(bob.id, ["from:x@y.test", "z"]) == {
        "from:x@y.test": SpamCounts(0, 2)
    }
    assert await store.list_sender_entries(bob.id) == [
        SenderListEntry("friend.test", SenderListKind.ALLOW)
    ]
    await store.remove_account(bob.id)
    assert await store.spam_model(bob.id, ["a"]) == (SpamCounts(), {})
    with pytest.raises(NotFound):
        await store.train_spam_model(bob.id, SpamCounts(1, 0), {})


async def test_sender_entries_replace_and_remove(store: SqliteStore) -> None:
    bob = await store.get_account("bob@example.org")
    assert bob is not None
    await store.set_sender_entry(bob.id, SenderListEntry("a@b.test", SenderListKind.ALLOW))
    await store.set_sender_entry(bob.id, SenderListEntry("a@b.test", SenderListKind.BLOCK))
    assert [e.kind for e in await store.list_sender_entries(bob.id)] == [SenderListKind.BLOCK]
    await store.remove_sender_entry(bob.id, "A@B.test")
    with pytest.raises(NotFound):
        await store.remove_sender_entry(bob.id, "a@b.test")


async def test_moves_into_and_out_of_junk_train_and_untrain(store: SqliteStore) -> None:
    bob = await store.get_account("bob@example.org")
    assert bob is not None
    inbox = await store.get_mailbox(bob.id, "INBOX")
    junk = await store.get_mailbox(bob.id, "Junk")
    trash = await store.get_mailbox(bob.id, "Trash")
    [delivered] = await store.deliver(MESSAGE, parse_message(MESSAGE), [DeliveryTarget(bob.id)])
    assert delivered.record is not None
    record = delivered.record
    moved = await learning.on_moved(
        store, bob.id, inbox, junk, [record], hostname="mx.test", limit=10
    )
    again = await learning.on_moved(
        store, bob.id, inbox, junk, [record], hostname="mx.test", limit=10
    )
    assert (moved, again) == (1, 0)  # a message is trained once per judgement
    totals, counts = await store.spam_model(bob.id, ["subject:offers"])
    assert (totals, counts) == (SpamCounts(0, 1), {"subject:offers": SpamCounts(0, 1)})
    tallies = await store.sender_reputation(bob.id, ["from:promo@shop.test"])
    assert tallies == {"from:promo@shop.test": SpamCounts(0, 1)}

    assert (
        await learning.on_moved(store, bob.id, junk, trash, [record], hostname="mx.test", limit=10)
        == 0
    )
    assert (
        await learning.on_moved(store, bob.id, junk, inbox, [record], hostname="mx.test", limit=10)
        == 1
    )
    totals, counts = await store.spam_model(bob.id, ["subject:offers"])
    assert (totals, counts) == (SpamCounts(1, 0), {"subject:offers": SpamCounts(1, 0)})
    tallies = await store.sender_reputation(bob.id, ["from:promo@shop.test"])
    assert tallies == {"from:promo@shop.test": SpamCounts(1, 0)}


def test_observe_skips_our_delivery_fields() -> None:
    verdict = decide([], Thresholds())
    stored = (
        b"Return-Path: <promo@shop.test>\r\nDelivered-To: bob@example.org\r\n"
        + verdict.header()
        + b"Authentication-Results: mx.test;\r\n\tdkim=pass header.d=shop.test;\r\n"
        b"\tdmarc=pass (p=none) header.from=shop.test\r\n"
        b"Received: from relay.shop.test (relay.shop.test [192.0.2.7])\r\n\tby mx.test\r\n"
        + MESSAGE
    )
    stored_view = learning.observe(stored, "mx.test")
    arrived = learning.observe(MESSAGE, "mx.test")
    assert stored_view.tokens == arrived.tokens
    assert stored_view.sender.from_verified and not arrived.sender.from_verified
    assert stored_view.sender.verified_domains == ("shop.test",)
    assert stored_view.sender.client_ip == "192.0.2.7"


@pytest.mark.parametrize(
    ("flags", "judgement"),
    [
        ({"$Junk"}, True),
        ({"\\Seen", "$junk"}, True),
        ({"$NotJunk"}, False),
        ({"$NOTJUNK", "\\Flagged"}, False),
        ({"$Junk", "$NotJunk"}, None),  # both at once: no judgement
        ({"Junk", "NonJunk", "\\Seen"}, None),  # not the registered keywords
        (set(), None),
    ],
)
def test_keyword_judgement(flags: set[str], judgement: bool | None) -> None:
    assert learning.keyword_judgement(flags) is judgement


async def test_one_move_teaches_at_most_the_limit(store: SqliteStore) -> None:
    bob = await store.get_account("bob@example.org")
    assert bob is not None
    inbox = await store.get_mailbox(bob.id, "INBOX")
    junk = await store.get_mailbox(bob.id, "Junk")
    records = []
    for n in range(3):
        raw = MESSAGE.replace(b"weekly offers", f"offers {n}".encode())
        [delivered] = await store.deliver(raw, parse_message(raw), [DeliveryTarget(bob.id)])
        assert delivered.record is not None
        records.append(delivered.record)
    assert await learning.on_moved(store, bob.id, inbox, junk, records, hostname="h", limit=0) == 0
    assert await learning.on_moved(store, bob.id, inbox, junk, records, hostname="h", limit=2) == 2
    totals, _ = await store.spam_model(bob.id, [])
    assert totals == SpamCounts(0, 2)
    # The same limit for keywords; the first two are trained already, so one more is.
    changes = [(frozenset[str](), record) for record in records]
    assert await learning.on_flagged(store, bob.id, {"$Junk"}, changes, hostname="h", limit=3) == 1
    totals, _ = await store.spam_model(bob.id, [])
    assert totals == SpamCounts(0, 3)


async def test_a_keyword_already_set_teaches_nothing(store: SqliteStore) -> None:
    # What a client sends to mark read a message our delivery filed in Junk with $Junk:
    # the whole set again. It restates our judgement; the user made none.
    bob = await store.get_account("bob@example.org")
    assert bob is not None
    target = DeliveryTarget(bob.id, "Junk", frozenset({"$Junk"}))
    [delivered] = await store.deliver(MESSAGE, parse_message(MESSAGE), [target])
    assert delivered.record is not None
    restated = [(frozenset({"$Junk"}), delivered.record)]
    flags = {"\\Seen", "$Junk"}
    assert await learning.on_flagged(store, bob.id, flags, restated, hostname="h", limit=9) == 0
    assert await store.spam_model(bob.id, []) == (SpamCounts(), {})
    newly = [(frozenset({"\\Seen"}), delivered.record)]
    assert await learning.on_flagged(store, bob.id, flags, newly, hostname="h", limit=9) == 1
