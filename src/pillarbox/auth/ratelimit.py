"""Authentication failure limits: exponential delay, then lockout, per key (sans-I/O).

A key is whatever the caller limits on — a client address, an account name. Time is an argument
(``now``, seconds on a monotonic clock), so the limiter is a plain table that tests drive with
explicit times.

The rule, per key, counting failures within the last ``window`` seconds:

- the first ``free_failures`` failures cost nothing (typos happen);
- each further failure makes the key wait ``base_delay · 2^k`` seconds after it (k = 0, 1, …),
  capped at ``max_delay`` — password guessing slows down geometrically;
- ``lockout_failures`` failures lock the key for ``lockout`` seconds, whatever the delay says.

Memory is bounded: at most ``max_keys`` keys are tracked, and the key whose last failure is the
oldest is forgotten first (keys are kept in that order, so stale ones are also dropped cheaply).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, fields

from pillarbox.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimits:
    """Limits for one kind of key (client address, account)."""

    #: Seconds a failure counts against its key.
    window: float = 900.0
    #: Failures within the window answered without any delay.
    free_failures: int = 3
    #: Seconds to wait after the first failure beyond the free ones; doubles with each more.
    base_delay: float = 2.0
    #: Upper bound of the per-failure delay, in seconds.
    max_delay: float = 60.0
    #: Failures within the window that lock the key out.
    lockout_failures: int = 10
    #: Seconds a locked-out key is refused.
    lockout: float = 900.0
    #: Keys remembered at most; the least recently failing ones are forgotten first.
    max_keys: int = 65536

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise ConfigError(f.name, "must not be negative")
        if self.lockout_failures < 1:
            raise ConfigError("lockout_failures", "must be at least 1")
        if self.max_keys < 1:
            raise ConfigError("max_keys", "must be at least 1")
        if self.free_failures >= self.lockout_failures:
            raise ConfigError("free_failures", "must be smaller than lockout_failures")


class _Entry:
    __slots__ = ("failures", "locked_until")

    def __init__(self, limit: int) -> None:
        # Only the most recent lockout_failures times can matter to any rule.
        self.failures: deque[float] = deque(maxlen=limit)
        self.locked_until = 0.0


class RateLimiter:
    """Tracks failures per key under one :class:`RateLimits`."""

    def __init__(self, limits: RateLimits) -> None:
        self._limits = limits
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, key: str, now: float) -> float | None:
        """``None`` if ``key`` may try now, else the seconds until it may."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._expire(entry, now)
        if entry.locked_until > now:
            return entry.locked_until - now
        extra = len(entry.failures) - self._limits.free_failures
        if extra > 0:
            delay = min(self._limits.max_delay, self._limits.base_delay * 2.0 ** (extra - 1))
            ready = entry.failures[-1] + delay
            if ready > now:
                return ready - now
        return None

    def record_failure(self, key: str, now: float) -> None:
        """Count a failed attempt by ``key`` at ``now``."""
        self._forget_stale(now)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(self._limits.lockout_failures)
        else:
            self._entries.move_to_end(key)
        self._expire(entry, now)
        entry.failures.append(now)
        if len(entry.failures) >= self._limits.lockout_failures:
            entry.locked_until = max(entry.locked_until, now + self._limits.lockout)
        while len(self._entries) > self._limits.max_keys:
            self._entries.popitem(last=False)

    def record_success(self, key: str) -> None:
        """Forget ``key``'s failures (the account's owner got in)."""
        self._entries.pop(key, None)

    def _expire(self, entry: _Entry, now: float) -> None:
        horizon = now - self._limits.window
        while entry.failures and entry.failures[0] <= horizon:
            entry.failures.popleft()

    def _forget_stale(self, now: float) -> None:
        """Drop keys, oldest first, whose failures have all expired and whose lockout is over."""
        horizon = now - self._limits.window
        while self._entries:
            entry = next(iter(self._entries.values()))
            if entry.locked_until > now or (entry.failures and entry.failures[-1] > horizon):
                return
            self._entries.popitem(last=False)
