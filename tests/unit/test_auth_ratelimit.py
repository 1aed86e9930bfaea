"""Authentication failure limits (pillarbox.auth.ratelimit), driven with explicit times."""

from __future__ import annotations

import pytest

from pillarbox.auth.ratelimit import RateLimiter, RateLimits
from pillarbox.errors import ConfigError

LIMITS = RateLimits(
    window=100.0,
    free_failures=2,
    base_delay=1.0,
    max_delay=4.0,
    lockout_failures=6,
    lockout=50.0,
    max_keys=1000,
)


def test_unknown_key_is_allowed() -> None:
    assert RateLimiter(LIMITS).check("198.51.100.7", 0.0) is None


# Each row: failures at these times, then check at ``at`` → expected wait (None = allowed).
@pytest.mark.parametrize(
    ("failures", "at", "wait"),
    [
        ([0.0], 0.0, None),  # free
        ([0.0, 1.0], 1.0, None),  # free
        ([0.0, 1.0, 2.0], 2.0, 1.0),  # 1st beyond free: base_delay
        ([0.0, 1.0, 2.0], 2.5, 0.5),
        ([0.0, 1.0, 2.0], 3.0, None),  # delay over
        ([0.0, 1.0, 2.0, 3.0], 3.0, 2.0),  # doubles
        ([0.0, 1.0, 2.0, 3.0, 4.0], 4.0, 4.0),  # doubles again
        ([0.0, 1.0, 2.0, 3.0, 4.0], 10.0, None),
        ([0.0, 0.0, 0.0, 0.0, 0.0], 0.0, 4.0),  # 8 capped at max_delay 4
        ([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], 5.0, 50.0),  # 6th failure: lockout
        ([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], 30.0, 25.0),  # lockout counts from the 6th failure
        ([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], 55.0, None),  # lockout over, last delay long past
        ([0.0, 1.0, 2.0], 101.0, None),  # first failure left the window: 2 in window, free
        ([0.0, 50.0, 99.0], 99.5, 0.5),  # three within the window
        ([0.0, 50.0, 99.0], 100.5, None),  # t=0 left the window
    ],
)
def test_delay_and_lockout_table(failures: list[float], at: float, wait: float | None) -> None:
    limiter = RateLimiter(LIMITS)
    for t in failures:
        limiter.record_failure("k", t)
    assert limiter.check("k", at) == wait


def test_failures_after_lockout_within_window_lock_again() -> None:
    limiter = RateLimiter(LIMITS)
    for t in range(6):
        limiter.record_failure("k", float(t))
    assert limiter.check("k", 60.0) is None
    limiter.record_failure("k", 60.0)  # six failures still within the 100 s window
    assert limiter.check("k", 60.0) == 50.0


def test_keys_are_independent() -> None:
    limiter = RateLimiter(LIMITS)
    for t in range(3):
        limiter.record_failure("a", float(t))
    assert limiter.check("a", 2.0) == 1.0
    assert limiter.check("b", 2.0) is None


def test_success_forgets_the_key() -> None:
    limiter = RateLimiter(LIMITS)
    for t in range(6):
        limiter.record_failure("k", float(t))
    limiter.record_success("k")
    assert limiter.check("k", 5.0) is None
    assert len(limiter) == 0


def test_memory_bounded_by_max_keys_least_recent_first() -> None:
    limiter = RateLimiter(RateLimits(max_keys=3, free_failures=0, lockout_failures=5))
    for i, key in enumerate(["a", "b", "c", "a", "d"]):
        limiter.record_failure(key, float(i))
    assert len(limiter) == 3
    assert limiter.check("b", 4.0) is None  # "b" failed least recently and was forgotten
    assert limiter.check("a", 4.0) is not None
    assert limiter.check("d", 4.0) is not None


def test_stale_keys_dropped_as_time_passes() -> None:
    limiter = RateLimiter(LIMITS)
    for i in range(50):
        limiter.record_failure(f"old{i}", 0.0)
    limiter.record_failure("new", 200.0)  # every "old" key's window has passed
    assert len(limiter) == 1


def test_locked_key_kept_while_locked() -> None:
    limits = RateLimits(window=10.0, free_failures=0, lockout_failures=1, lockout=100.0)
    limiter = RateLimiter(limits)
    limiter.record_failure("locked", 0.0)
    limiter.record_failure("other", 50.0)  # window of "locked" is over, its lockout is not
    assert limiter.check("locked", 50.0) == 50.0


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"window": -1.0}, "window"),
        ({"lockout_failures": 0, "free_failures": 0}, "lockout_failures"),
        ({"max_keys": 0}, "max_keys"),
        ({"free_failures": 10, "lockout_failures": 10}, "free_failures"),
    ],
)
def test_invalid_limits_name_the_field(kwargs: dict[str, float], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        RateLimits(**kwargs)  # type: ignore[arg-type]
    assert info.value.key == key
