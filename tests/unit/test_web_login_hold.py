"""The message a two-step login holds between its steps (:mod:`pillarbox.web.loginhold`), over
a real SQLite store: found only under its account and session, until the password step
expires, by any holder over the same store, one per account, within its byte limit, and
sealed: the database holds no text of it, and a sealed hold moved to another account's or
session's row, or read under another key, opens to nothing. (The store's side on both
backends: the contract suite's ``test_login_holds_…``.)"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.types import Account
from pillarbox.testing.store_contract import DOMAIN
from pillarbox.web.loginhold import LoginHolds, held_size
from pillarbox.web.session import PENDING_SECONDS
from pillarbox.web.totpseal import TotpSealer

T = 1_000_000.0
SEALER = TotpSealer(b"k" * 32)
MESSAGE = (("to", "bob@example.org"), ("body", "Grüße, \r\nBob, a secret plan"))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "db.sqlite3")
    await store.open()
    await store.add_domain(DOMAIN)
    yield store
    await store.close()


async def accounts(store: SqliteStore, count: int) -> list[Account]:
    return [await store.add_account(f"u{n}@{DOMAIN}", "h") for n in range(count)]


def database_bytes(directory: Path) -> bytes:
    """Every byte of the database's files (a dump could show no more)."""
    return b"".join(path.read_bytes() for path in directory.glob("db.sqlite3*"))


async def test_found_only_under_its_account_and_session_until_the_step_expires(
    store: SqliteStore,
) -> None:
    one, two = await accounts(store, 2)
    holds = LoginHolds(store, SEALER, 1024)
    await holds.keep(one.id, "sid-a", MESSAGE, T)
    assert await holds.held(one.id, "sid-a", T) == MESSAGE
    assert await holds.held(one.id, "sid-a", T + PENDING_SECONDS - 1) == MESSAGE  # a reload
    # Another node: the same store, its own holder (the same key file).
    assert await LoginHolds(store, TotpSealer(b"k" * 32), 1024).held(one.id, "sid-a", T) == (
        MESSAGE
    )
    assert await holds.held(one.id, "sid-b", T) == ()
    assert await holds.held(two.id, "sid-a", T) == ()
    assert await holds.held(one.id, "sid-a", T + PENDING_SECONDS) == ()
    # One per account; dropped only by its session.
    await holds.keep(one.id, "sid-b", (("subject", "newer"),), T + 1)
    assert await holds.held(one.id, "sid-a", T + 1) == ()
    await holds.drop(one.id, "sid-a")
    assert await holds.held(one.id, "sid-b", T + 1) == (("subject", "newer"),)
    await holds.drop(one.id, "sid-b")
    assert await holds.held(one.id, "sid-b", T + 1) == ()


async def test_sealed_at_rest_and_bound_to_its_account_session_and_key(
    store: SqliteStore, tmp_path: Path
) -> None:
    one, two = await accounts(store, 2)
    holds = LoginHolds(store, SEALER, 1024)
    await holds.keep(one.id, "sid-a", MESSAGE, T)
    await store.close()
    raw = database_bytes(tmp_path)
    assert b"sid-a" in raw  # the row is there
    assert b"secret plan" not in raw and b"bob@example.org" not in raw
    conn = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)
    # The sealed text copied onto another account's row, and onto another session's.
    conn.execute(
        "INSERT INTO login_holds (account_id, sid, sealed, size, expires) "
        "SELECT ?, sid, sealed, size, expires FROM login_holds WHERE account_id = ?",
        (two.id, one.id),
    )
    conn.close()
    await store.open()
    assert await holds.held(two.id, "sid-a", T) == ()
    await holds.keep(one.id, "sid-b", MESSAGE, T)
    sealed_b = await store.held_login_message(one.id, "sid-b", datetime.fromtimestamp(T, UTC))
    assert sealed_b is not None
    conn = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)
    conn.execute("UPDATE login_holds SET sid = 'sid-c' WHERE account_id = ?", (one.id,))
    conn.close()
    assert await holds.held(one.id, "sid-c", T) == ()
    await holds.keep(one.id, "sid-d", MESSAGE, T)
    assert await LoginHolds(store, TotpSealer(b"x" * 32), 1024).held(one.id, "sid-d", T) == ()
    assert await holds.held(one.id, "sid-d", T) == MESSAGE


async def test_the_limit_lets_the_oldest_go_first(store: SqliteStore) -> None:
    size = held_size(MESSAGE)
    assert size == len("to") + 15 + len("body") + len("Grüße, \r\nBob, a secret plan".encode())
    users = await accounts(store, 5)
    holds = LoginHolds(store, SEALER, 3 * size)
    for n, user in enumerate(users[:3]):
        await holds.keep(user.id, f"sid-{n}", MESSAGE, T + n)
    await holds.keep(users[3].id, "sid-3", MESSAGE, T + 3)  # a fourth: the first goes
    assert await holds.held(users[0].id, "sid-0", T + 3) == ()
    for n in (1, 2, 3):
        assert await holds.held(users[n].id, f"sid-{n}", T + 3) == MESSAGE
    # Larger than the whole limit: not held, and nothing else goes for it.
    await holds.keep(users[4].id, "sid-4", (("body", "x" * 4 * size),), T + 4)
    assert await holds.held(users[4].id, "sid-4", T + 4) == ()
    for n in (1, 2, 3):
        assert await holds.held(users[n].id, f"sid-{n}", T + 4) == MESSAGE
