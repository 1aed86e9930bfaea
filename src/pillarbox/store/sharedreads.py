"""Concurrent identical reads share one trip to the database, without ever answering stale.

Why: a delivery to a mailbox wakes every session that has it selected (IMAP IDLE), and each
asks the store for the same thing at the same moment — what changed since the MODSEQ they all
hold. Ten thousand idling sessions over a hundred mailboxes made a hundred identical reads per
delivery, each an executor round trip; the fan-out's latency grew with the number of idlers.

The rule that keeps this correct: a caller may only share a read that *began after its call*.
A read already running when a caller arrives may predate the change that woke it, so the
caller waits for the next read of that key instead, which starts as soon as the running one
ends and serves everyone who queued meanwhile. A burst of callers therefore costs at most two
reads per key, and every caller's answer reflects everything committed before it asked.

Sharers get the same result object, so results must be immutable (:class:`RecentClaim` is
the one deliberate exception). The same rule serves a write whose effect callers may share:
``\\Recent`` claims (RFC 3501 §2.3.2), which every IMAP4rev1 session idling on a mailbox makes
when a delivery wakes them all. One instance serves one event loop at a time per key (futures
belong to a loop; keys are kept per loop).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SharedReads(Generic[K, V]):
    """``await get(key)`` runs ``read(key)``, or shares a read of ``key`` begun after the call."""

    def __init__(self, read: Callable[[K], Coroutine[Any, Any, V]]) -> None:
        self._read = read
        #: The read in progress for each key.
        self._running: dict[tuple[asyncio.AbstractEventLoop, K], asyncio.Task[V]] = {}
        #: Callers that arrived while it ran: they share the read that follows it.
        self._queued: dict[tuple[asyncio.AbstractEventLoop, K], asyncio.Future[V]] = {}

    async def get(self, key: K) -> V:
        loop = asyncio.get_running_loop()
        slot = (loop, key)
        shared: asyncio.Future[V] | None
        if slot not in self._running:
            shared = self._launch(slot)
        else:
            shared = self._queued.get(slot)
            if shared is None:
                shared = self._queued[slot] = loop.create_future()
        # A caller cancelled while waiting leaves the read to the others.
        return await asyncio.shield(shared)

    def _launch(self, slot: tuple[asyncio.AbstractEventLoop, K]) -> asyncio.Task[V]:
        task = slot[0].create_task(self._read(slot[1]))
        self._running[slot] = task
        task.add_done_callback(functools.partial(self._landed, slot))
        return task

    def _landed(self, slot: tuple[asyncio.AbstractEventLoop, K], task: asyncio.Task[V]) -> None:
        del self._running[slot]
        if not task.cancelled():
            task.exception()  # retrieved here: every caller may have been cancelled meanwhile
        queued = self._queued.pop(slot, None)
        if queued is not None:
            self._launch(slot).add_done_callback(functools.partial(_settle, queued))


def _settle(future: asyncio.Future[V], task: asyncio.Task[V]) -> None:
    """Hand ``task``'s outcome to ``future`` (the queued callers' shared answer)."""
    if future.done():
        return
    if task.cancelled():
        future.cancel()
    elif (error := task.exception()) is not None:
        future.set_exception(error)
        future.exception()  # as in _landed: the queued callers may all be gone
    else:
        future.set_result(task.result())


class RecentClaim:
    """One ``\\Recent`` claim write, shared by the sessions that asked for one at once.

    The write moved the mailbox's mark from ``old`` to ``new`` (its UIDNEXT then). The first
    sharer to take it gets ``old``: the messages from there on are recent to it alone; every
    other sharer gets ``new``, nothing recent, as if it had claimed right after (RFC 3501
    §2.3.2: only one session sees a message as recent). Each began after its caller asked, so
    it covers every message the caller had seen.
    """

    __slots__ = ("_taken", "new", "old")

    def __init__(self, old: int, new: int) -> None:
        self.old = old
        self.new = new
        self._taken = False

    def take(self) -> int:
        """The lowest UID recent to the caller (see the class notes)."""
        if self._taken:
            return self.new
        self._taken = True
        return self.old
