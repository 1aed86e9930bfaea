"""Lookups kept in memory between requests, each for at most a time to live: what intake
asks per recipient and message (domains, accounts, aliases, settings), and the base of the spam
filter's kept evidence (:mod:`.evidencecache`). Backend-neutral: each store decides when to
forget (its own writes, and on PostgreSQL other nodes' notifications; :meth:`invalidate`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import TypeVar, cast

T = TypeVar("T")


class DirectoryCache:
    """Domains, accounts and aliases by name, and accounts' settings (vacation, forwarding) by
    id: the lookups SMTP intake makes per recipient.

    Each lookup is otherwise a hop to a reader thread and back (SQLite, tens of µs of CPU) or
    a round trip to the server (PostgreSQL, ~0.1 ms of CPU); intake makes several per
    recipient and message. The store empties the cache after each of its own writes to these
    tables (:meth:`invalidate`, called once the write committed), and a lookup that began
    before such a write does not store its possibly older answer (the generation check).
    PostgreSQL also invalidates on other nodes' writes, announced by NOTIFY
    (:mod:`.postgres.notify`). A write nobody announces (another process on an SQLite file, a
    node whose notification was lost with its LISTEN connection) is seen once the entry
    expires: entries live at most ``ttl`` seconds. At most ``max_entries`` names are kept (a
    client probing random addresses fills it with misses): past that, expired entries go, and
    if none had expired, all. The spam filter's evidence is kept the same way, in a cache of
    its own (:class:`~.evidencecache.SpamEvidenceCache`).
    """

    def __init__(
        self, ttl: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[Hashable, tuple[float, object]] = {}
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

    def get(self, key: Hashable) -> tuple[object] | None:
        """``(value,)`` if cached and fresh (the value may be None: "no such name")."""
        entry = self._entries.get(key)
        if entry is None or self._clock() >= entry[0]:
            return None
        return (entry[1],)

    async def lookup(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        """The kept answer for ``key`` if fresh, else ``read()``'s, kept unless something was
        invalidated while it ran."""
        hit = self.get(key)
        if hit is not None:
            return cast(T, hit[0])
        began = self._generation
        value = await read()
        self.put(key, value, began)
        return value

    def put(self, key: Hashable, value: object, generation: int) -> None:
        if self.ttl <= 0 or self.max_entries <= 0:
            return
        now = self._clock()
        with self._lock:
            if generation != self._generation:
                return
            if len(self._entries) >= self.max_entries:
                self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
            self._entries[key] = (now + self.ttl, value)

    def invalidate(self, keys: Iterable[Hashable] | None = None) -> None:
        """Forget ``keys`` (None: everything); a lookup begun before keeps nothing."""
        with self._lock:
            self._generation += 1
            if keys is None:
                self._entries.clear()
            else:
                for key in keys:
                    self._entries.pop(key, None)
