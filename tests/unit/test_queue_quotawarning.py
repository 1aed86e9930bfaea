"""Quota warnings' decisions (pillarbox.queue.quotawarning): which threshold usage reached,
when a delivery's usage calls for a warning (once per upward crossing), and the warning's
text; what an APPEND or COPY's usage leads to, on a real SQLite store. Usage is an argument;
the live server's side is tests/interop/test_quota_warnings.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pillarbox.mail.parse import parse_message
from pillarbox.queue.quotawarning import (
    QuotaStep,
    QuotaWarnings,
    quota_step,
    reached,
    warning_message,
)
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.types import INBOX, Account, Appended, QuotaUsage

THRESHOLDS = (80, 95)
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def bytes_usage(used: int, warned: int = 0, limit: int = 1000) -> QuotaUsage:
    return QuotaUsage(used, 1, limit, None, warned)


@pytest.mark.parametrize(
    ("usage", "level"),
    [
        (QuotaUsage(10**9, 10**6, None, None), 0),  # no quota: nothing to reach
        (bytes_usage(799), 0),
        (bytes_usage(800), 80),  # the threshold itself counts
        (bytes_usage(949), 80),
        (bytes_usage(950), 95),
        (bytes_usage(1200), 95),  # past the quota (a warning stored beyond it)
        (QuotaUsage(100, 19, 1000, 20), 95),  # the fuller of the two limits
        (QuotaUsage(900, 1, 1000, 20), 80),
        (QuotaUsage(0, 0, None, 0), 95),  # a zero quota is full
    ],
)
def test_reached_is_the_highest_threshold_of_the_fuller_limit(
    usage: QuotaUsage, level: int
) -> None:
    assert reached(usage.bytes_used, usage.messages, usage, THRESHOLDS) == level


@pytest.mark.parametrize(
    ("after", "added", "step"),
    [
        # Below every threshold, nothing warned: nothing to do (no store write either).
        (bytes_usage(700), 100, None),
        # Crossing 80: warn once; the next delivery above it does not warn again.
        (bytes_usage(810), 20, QuotaStep(80, warn=True)),
        (bytes_usage(830, warned=80), 20, None),
        # Past 80 and 95 at once: one warning, of the higher.
        (bytes_usage(960), 300, QuotaStep(95, warn=True)),
        (bytes_usage(960, warned=80), 20, QuotaStep(95, warn=True)),
        # Usage fell below (an expunge) and a delivery finds it so: the level drops, silently.
        (bytes_usage(500, warned=95), 10, QuotaStep(0, warn=False)),
        (bytes_usage(850, warned=95), 10, QuotaStep(80, warn=False)),
        # ... and rises past 80 again: warned again.
        (bytes_usage(810, warned=0), 20, QuotaStep(80, warn=True)),
        # Fell and rose again between two deliveries, the second crossing 80 itself: warned,
        # though the level kept is still 80 (no write needed).
        (bytes_usage(820, warned=80), 400, QuotaStep(80, warn=True)),
        # Pushed past 80 by an IMAP APPEND (not checked): the next delivery warns.
        (bytes_usage(860, warned=0), 10, QuotaStep(80, warn=True)),
    ],
)
def test_quota_step_warns_once_per_upward_crossing(
    after: QuotaUsage, added: int, step: QuotaStep | None
) -> None:
    assert quota_step(after, added, 1, THRESHOLDS) == step


def test_deliveries_racing_past_a_threshold() -> None:
    """Deliveries are ordered by their transactions: of two that together cross 80, the first
    ends below it and the second starts below it, so only the second warns. When the first
    crossed alone and its level is not written yet, both call for the warning: the store's
    compare-and-set of the level (0 → 80) lets one through (the contract suite's
    ``test_quota_warned_is_compared_and_set``)."""
    first, second = bytes_usage(790), bytes_usage(810)
    assert quota_step(first, 20, 1, THRESHOLDS) is None
    assert quota_step(second, 20, 1, THRESHOLDS) == QuotaStep(80, warn=True)
    assert quota_step(bytes_usage(800), 20, 1, THRESHOLDS) == QuotaStep(80, warn=True)
    assert quota_step(bytes_usage(820), 20, 1, THRESHOLDS) == QuotaStep(80, warn=True)
    # Once the level is written, the later one is quiet.
    assert quota_step(bytes_usage(820, warned=80), 20, 1, THRESHOLDS) is None


def test_messages_count_like_bytes() -> None:
    usage = QuotaUsage(10, 16, None, 20)
    assert quota_step(usage, 10, 1, THRESHOLDS) == QuotaStep(80, warn=True)
    assert quota_step(QuotaUsage(10, 17, None, 20, 80), 10, 1, THRESHOLDS) is None


def test_warning_message_says_who_what_and_how_to_make_room() -> None:
    account = Account(
        id=1,
        address="alice@example.org",
        display_name="Alice",
        password_hash="h",
        scram_sha256=None,
        is_admin=False,
        quota_bytes=10 * 1024 * 1024,
        quota_messages=1000,
        created=NOW,
    )
    usage = QuotaUsage(8_600_000, 120, 10 * 1024 * 1024, 1000, 0)
    raw = warning_message(account, usage, 80, now=NOW)
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    info = parse_message(raw)
    assert info.envelope.subject == "Your mailbox is 80% full"
    assert info.from_addr == "postmaster@example.org"
    assert info.to_addr == "alice@example.org"
    header = raw[: info.header_end].decode()
    assert "Auto-Submitted: auto-generated\r\n" in header  # RFC 3834 §5
    assert "Message-ID: <" in header and "@example.org>" in header
    text = info.body_text
    assert "alice@example.org has reached 80% of its quota" in text
    assert "8.2 MB of 10.0 MB (82%)" in text
    assert "120 of 1000 (12%)" in text
    assert "empty" in text and "Trash and Junk" in text and "larger quota" in text


@pytest.mark.parametrize(
    ("usage", "percents"),
    [
        (QuotaUsage(10**9, 10**6, None, None), (None, None, None)),
        (QuotaUsage(999, 3, 1000, None), (99, None, 99)),  # whole percent, rounded down
        (QuotaUsage(100, 15, 1000, 20), (10, 75, 75)),  # the fuller limit
        (QuotaUsage(0, 0, 0, None), (100, None, 100)),  # a zero quota is full
    ],
)
def test_usage_percentages(usage: QuotaUsage, percents: tuple[int | None, ...]) -> None:
    assert (usage.bytes_percent, usage.messages_percent, usage.percent) == percents


async def test_after_saving_warns_the_owner_once_and_never_raises(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite3")
    await store.open()
    try:
        await store.add_domain("example.org")
        account = await store.add_account("alice@example.org", "h", quota_messages=10)
        warnings = QuotaWarnings(store, THRESHOLDS)
        inbox = await store.get_mailbox(account.id, INBOX)
        raw = b"Subject: mine\r\n\r\nkept\r\n"
        saved = [await store.append(inbox.id, raw, parse_message(raw)) for _ in range(8)]
        assert not await warnings.after_saving(account.id, None, 0, 0)  # nothing added
        for appended in saved[:-1]:  # up to 7 of 10
            assert not await warnings.after_saving(account.id, *_added(appended))
        assert await warnings.after_saving(account.id, *_added(saved[-1]))  # 8 of 10: 80 %
        assert not await warnings.after_saving(account.id, *_added(saved[-1]))  # told once
        assert len(await store.list_messages(inbox.id)) == 9
        # A REPLACE within the account adds octets, no message: past 95 % of the size, warned.
        used = (await store.quota_usage(account.id)).bytes_used
        await store.set_quota(account.id, used + 100, None)  # under 95 % while used < 1900
        bigger = raw + b"x" * 100
        grown = await store.replace_message(inbox.id, 1, inbox.id, bigger, parse_message(bigger))
        assert grown is not None and (grown.size, grown.count) == (100, 0)
        assert await warnings.after_saving(account.id, grown.usage, grown.size, grown.count)
        # An account gone meanwhile: logged, not raised into the APPEND that called.
        gone = QuotaUsage(9, 9, None, 10)
        assert not await warnings.after_saving(10**9, gone, 1, 1)
    finally:
        await store.close()


def _added(appended: Appended) -> tuple[QuotaUsage, int, int]:
    return appended.usage, appended.size, appended.count
