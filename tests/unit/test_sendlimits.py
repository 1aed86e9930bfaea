"""Sending limits (pillarbox.queue.sendlimits): the sliding window, the per-transaction
arithmetic and first-time recipients, with an injected clock over a real SQLite store."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pillarbox.config import SubmissionLimitsSection
from pillarbox.errors import UserError
from pillarbox.queue.sendlimits import (
    MAX_LIMIT,
    WINDOW,
    Limit,
    Limits,
    SendingLimiter,
    checked,
    limit_reply,
)
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.types import Account, SendingLimits

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
US = timedelta(microseconds=1)


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "db.sqlite3")
    await store.open()
    await store.add_domain("example.org")
    yield store
    await store.close()


@pytest.fixture
async def account(store: SqliteStore) -> Account:
    return await store.add_account("alice@example.org", "h")


def limiter(
    store: SqliteStore,
    clock: Clock,
    messages: int = 0,
    recipients: int = 0,
    first_time: int = 0,
    memory_days: int = 365,
) -> SendingLimiter:
    settings = SubmissionLimitsSection(
        messages_per_day=messages,
        recipients_per_day=recipients,
        first_time_recipients_per_day=first_time,
        recipient_memory_days=memory_days,
    )
    return SendingLimiter(store, settings, clock)


async def admitted(limits: SendingLimiter, account: Account, *addresses: str) -> list[str]:
    """The replies' codes of one transaction to ``addresses`` ("ok" for admitted)."""
    allowance = limits.allowance(account)
    codes = []
    for address in addresses:
        reply = await allowance.admit(address)
        codes.append("ok" if reply is None else f"{reply.code} {reply.enhanced}")
    return codes


async def test_message_limit_slides_with_the_window(store: SqliteStore, account: Account) -> None:
    clock = Clock(T0)
    limits = limiter(store, clock, messages=2)
    await limits.record(account, ["a@x.org"])
    clock.now = T0 + timedelta(hours=1)
    await limits.record(account, ["b@x.org"])
    clock.now = T0 + timedelta(hours=2)
    assert await admitted(limits, account, "c@x.org", "d@x.org") == ["451 4.7.1", "451 4.7.1"]
    # The first message counts until 24 hours after it, then no more.
    clock.now = T0 + WINDOW - US
    assert await admitted(limits, account, "c@x.org") == ["451 4.7.1"]
    clock.now = T0 + WINDOW
    assert await admitted(limits, account, "c@x.org", "d@x.org") == ["ok", "ok"]


async def test_recipient_limit_counts_the_transaction(store: SqliteStore, account: Account) -> None:
    clock = Clock(T0)
    limits = limiter(store, clock, recipients=4)
    await limits.record(account, ["a@x.org", "b@x.org"])
    # Two left: a recipient given twice is one; the third distinct one is refused.
    assert await admitted(limits, account, "a@x.org", "a@x.org", "c@x.org", "d@x.org") == [
        "ok",
        "ok",
        "ok",
        "451 4.7.1",
    ]
    # Nothing of an unaccepted transaction was counted.
    usage = await store.sending_usage(account.id, T0 - WINDOW)
    assert (usage.messages, usage.recipients) == (1, 2)


async def test_first_time_limit_lets_known_recipients_pass(
    store: SqliteStore, account: Account
) -> None:
    clock = Clock(T0 - timedelta(days=3))
    limits = limiter(store, clock, first_time=2)
    await limits.record(account, ["k1@x.org", "k2@x.org", "k3@x.org"])  # known, long ago
    clock.now = T0
    await limits.record(account, ["n1@x.org"])  # one first-time in the window
    # One more new one fits; known ones always do, before and after it.
    assert await admitted(
        limits, account, "k1@x.org", "n2@x.org", "k2@x.org", "n3@x.org", "k3@x.org"
    ) == ["ok", "ok", "ok", "451 4.7.1", "ok"]


async def test_first_time_count_is_exact_when_known_ones_came_first(
    store: SqliteStore, account: Account
) -> None:
    """Recipients admitted without asking the store (they fitted even if new) are asked about
    once the limit is near: known ones among them do not use it up."""
    clock = Clock(T0 - timedelta(days=3))
    limits = limiter(store, clock, first_time=2)
    await limits.record(account, ["k1@x.org", "k2@x.org"])
    clock.now = T0
    assert await admitted(
        limits, account, "k1@x.org", "k2@x.org", "n1@x.org", "n2@x.org", "n3@x.org"
    ) == ["ok", "ok", "ok", "ok", "451 4.7.1"]


async def test_recipients_are_forgotten_after_the_memory(
    store: SqliteStore, account: Account
) -> None:
    clock = Clock(T0)
    limits = limiter(store, clock, first_time=1, memory_days=30)
    await limits.record(account, ["old@x.org"])
    clock.now = T0 + timedelta(days=15)
    await limits.record(account, ["other@x.org"])  # uses the one first-time of this window
    assert await admitted(limits, account, "old@x.org") == ["ok"]  # still known
    clock.now = T0 + timedelta(days=40)
    await limits.record(account, ["third@x.org"])  # a write prunes what is past the memory
    assert await store.known_recipients(account.id, ["old@x.org", "other@x.org"]) == {"other@x.org"}
    assert await admitted(limits, account, "old@x.org") == ["451 4.7.1"]  # first-time again


async def test_zero_is_unlimited_and_own_limits_override(
    store: SqliteStore, account: Account
) -> None:
    clock = Clock(T0)
    limits = limiter(store, clock)  # every default 0
    many = [f"r{n}@x.org" for n in range(300)]
    await limits.record(account, many)
    assert set(await admitted(limits, account, *many, "new@x.org")) == {"ok"}
    await store.set_sending_limits(account.id, SendingLimits(messages=1))
    assert await admitted(limits, account, "new@x.org") == ["451 4.7.1"]
    # An own 0 beats a configured limit.
    strict = limiter(store, clock, messages=1, recipients=1, first_time=1)
    await store.set_sending_limits(account.id, SendingLimits(0, 0, 0))
    assert await admitted(strict, account, "a@y.org", "b@y.org") == ["ok", "ok"]


def test_limits_in_force() -> None:
    defaults = SubmissionLimitsSection(
        messages_per_day=10, recipients_per_day=20, first_time_recipients_per_day=5
    )
    assert Limits.of(defaults, SendingLimits()) == Limits(10, 20, 5)
    assert Limits.of(defaults, SendingLimits(0, None, 1)) == Limits(0, 20, 1)


def test_own_limits_are_checked() -> None:
    assert checked(SendingLimits(0, MAX_LIMIT, None)) == SendingLimits(0, MAX_LIMIT, None)
    with pytest.raises(UserError, match="messages"):
        checked(SendingLimits(messages=-1))
    with pytest.raises(UserError, match="first_time"):
        checked(SendingLimits(first_time=MAX_LIMIT + 1))


def test_refusal_reply() -> None:
    reply = limit_reply(Limit.FIRST_TIME, 200)
    assert reply.render() == (
        b"451 4.7.1 this account's limit of first-time recipients per 24 hours (200) is"
        b" reached; try again later\r\n"
    )


async def test_hitting_a_limit_is_logged_once_per_transaction_as_a_warning(
    store: SqliteStore, account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    limits = limiter(store, Clock(T0), recipients=1)
    with caplog.at_level(logging.INFO, logger="pillarbox"):
        assert await admitted(limits, account, "a@x.org", "b@x.org", "c@x.org") == [
            "ok",
            "451 4.7.1",
            "451 4.7.1",
        ]
    lines = [r for r in caplog.records if r.getMessage() == "sending limit reached"]
    assert [r.levelno for r in lines] == [logging.WARNING, logging.INFO]
    fields = lines[0].__dict__["fields"]
    assert (fields["account"], fields["limit"], fields["allowed"], fields["rcpt"]) == (
        "alice@example.org",
        "recipients",
        1,
        "b@x.org",
    )
