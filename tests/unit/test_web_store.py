"""The store methods the web added (SQLite backend): sorted, filtered pages of a mailbox;
account settings; issued tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pillarbox.errors import AlreadyExists, NotFound
from pillarbox.mail.parse import parse_message
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.types import (
    AccountSettings,
    FlagOp,
    MessageQuery,
    SortKey,
    TokenKind,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "db.sqlite3")
    await store.open()
    await store.add_domain("example.org")
    yield store
    await store.close()


def raw(n: int, subject: str, sender: str, to: str = "alice@example.org", refs: str = "") -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: {(T0 + timedelta(days=10 - n)).strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\n"
        f"Message-ID: <m{n}@example.net>\r\n{refs}\r\n" + "x" * (n * 100) + "\r\n"
    ).encode()


async def filled(store: SqliteStore) -> int:
    account = await store.add_account("alice@example.org", "hash")
    inbox = await store.get_mailbox(account.id, "INBOX")
    people = ["carol@example.net", "bob@example.org", "Dave <dave@example.net>"]
    for n in range(6):
        message = raw(n, f"subject {chr(ord('f') - n)}", people[n % 3],
                      refs="In-Reply-To: <m0@example.net>\r\n" if n == 4 else "")  # fmt: skip
        await store.append(
            inbox.id, message, parse_message(message), internal_date=T0 + timedelta(hours=n)
        )
    return inbox.id


async def uids(
    store: SqliteStore, box: int, query: MessageQuery, offset: int = 0, limit: int = 50
) -> list[int]:
    page = await store.query_messages(box, query, offset=offset, limit=limit)
    return [r.uid for r in page.records]


async def test_sort_orders_and_paging(store: SqliteStore) -> None:
    box = await filled(store)
    assert await uids(store, box, MessageQuery()) == [6, 5, 4, 3, 2, 1]  # arrival, newest first
    assert await uids(store, box, MessageQuery(descending=False)) == [1, 2, 3, 4, 5, 6]
    assert await uids(store, box, MessageQuery(sort=SortKey.DATE, descending=False)) == [
        6,
        5,
        4,
        3,
        2,
        1,
    ]
    assert await uids(store, box, MessageQuery(sort=SortKey.SUBJECT, descending=False)) == [
        6,
        5,
        4,
        3,
        2,
        1,
    ]
    assert await uids(store, box, MessageQuery(sort=SortKey.SIZE)) == [6, 5, 4, 3, 2, 1]
    assert await uids(store, box, MessageQuery(sort=SortKey.FROM, descending=False)) == [
        2,
        5,
        1,
        4,
        3,
        6,
    ]
    page = await store.query_messages(box, MessageQuery(), offset=2, limit=2)
    assert page.total == 6 and [r.uid for r in page.records] == [4, 3]
    assert page.records[0].size > 0 and page.records[0].blob_id
    by_date = MessageQuery(sort=SortKey.DATE)  # indexed; late pages are read from the end
    assert await uids(store, box, by_date) == [1, 2, 3, 4, 5, 6]
    assert await uids(store, box, by_date, offset=4, limit=2) == [5, 6]
    assert await uids(store, box, by_date, offset=5, limit=5) == [6]
    oldest_first = MessageQuery(sort=SortKey.DATE, descending=False)
    assert await uids(store, box, oldest_first, offset=4, limit=10) == [2, 1]
    assert await uids(store, box, MessageQuery(sort=SortKey.DATE, unseen=True), offset=4) == [5, 6]
    beyond = await store.query_messages(box, MessageQuery(), offset=10, limit=5)
    assert beyond.total == 6 and beyond.records == ()


async def test_filters_combine(store: SqliteStore) -> None:
    box = await filled(store)
    assert await uids(store, box, MessageQuery(from_contains="BOB@")) == [5, 2]
    assert await uids(store, box, MessageQuery(subject_contains="SUBJECT E")) == [2]
    assert await uids(store, box, MessageQuery(to_contains="alice")) == [6, 5, 4, 3, 2, 1]
    since = T0 + timedelta(days=8)
    assert await uids(store, box, MessageQuery(since=since)) == [3, 2, 1]
    assert await uids(store, box, MessageQuery(since=since, before=since + timedelta(days=1))) == [
        3
    ]
    await store.store_flags(box, [1, 2], FlagOp.ADD, frozenset({"\\Seen"}))
    await store.store_flags(box, [2, 3], FlagOp.ADD, frozenset({"\\Flagged"}))
    assert await uids(store, box, MessageQuery(unseen=True)) == [6, 5, 4, 3]
    assert await uids(store, box, MessageQuery(flagged=True, unseen=True)) == [3]
    restricted = MessageQuery(uids=frozenset({1, 4, 99}), from_contains="example")
    page = await store.query_messages(box, restricted, offset=0, limit=10)
    assert page.total == 2 and [r.uid for r in page.records] == [4, 1]
    assert await uids(store, box, MessageQuery(uids=frozenset())) == []
    # A filtered page counts its matches in the same scan; past the end it still knows them.
    to_alice = MessageQuery(to_contains="alice", sort=SortKey.DATE, descending=False)
    page = await store.query_messages(box, to_alice, offset=4, limit=3)
    assert page.total == 6 and [r.uid for r in page.records] == [2, 1]
    beyond = await store.query_messages(box, to_alice, offset=10, limit=3)
    assert beyond.total == 6 and beyond.records == ()
    assert (await store.query_messages(box, to_alice, offset=0, limit=0)).total == 6
    nothing = MessageQuery(subject_contains="no such subject")
    assert (await store.query_messages(box, nothing, offset=0, limit=5)).total == 0


async def test_unknown_mailbox(store: SqliteStore) -> None:
    with pytest.raises(NotFound):
        await store.query_messages(999, MessageQuery(), offset=0, limit=10)


async def test_settings_round_trip(store: SqliteStore) -> None:
    account = await store.add_account("alice@example.org", "hash")
    assert await store.get_settings(account.id) == AccountSettings()
    settings = AccountSettings(
        vacation_enabled=True, vacation_subject="Away", vacation_body="Back soon.\nBye",
        vacation_until=datetime(2030, 1, 2, tzinfo=UTC),
        forward_to=("x@example.net", "y@example.net"),
        forward_keep_copy=False,
    )  # fmt: skip
    await store.set_settings(account.id, settings)
    assert await store.get_settings(account.id) == settings
    with pytest.raises(NotFound):
        await store.get_settings(999)
    with pytest.raises(NotFound):
        await store.set_settings(999, settings)


async def test_tokens_belong_to_their_account(store: SqliteStore) -> None:
    alice = await store.add_account("alice@example.org", "hash")
    bob = await store.add_account("bob@example.org", "hash")
    api = await store.add_token(alice.id, TokenKind.API, "script", "d1")
    app = await store.add_token(alice.id, TokenKind.APP_PASSWORD, "phone", "d2")
    assert api.kind is TokenKind.API and api.label == "script" and api.account_id == alice.id
    assert await store.list_tokens(alice.id) == [api, app]
    assert await store.list_tokens(alice.id, TokenKind.APP_PASSWORD) == [app]
    assert await store.list_tokens(bob.id) == []
    assert await store.find_token(TokenKind.API, "d1") == api
    assert await store.find_token(TokenKind.APP_PASSWORD, "d1") is None
    with pytest.raises(AlreadyExists):
        await store.add_token(bob.id, TokenKind.API, "dup", "d1")
    with pytest.raises(NotFound):
        await store.remove_token(bob.id, api.id)  # not bob's
    await store.remove_token(alice.id, api.id)
    assert await store.find_token(TokenKind.API, "d1") is None
    await store.remove_account(alice.id)
    assert await store.find_token(TokenKind.APP_PASSWORD, "d2") is None  # gone with the account
