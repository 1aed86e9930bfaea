"""The in-process change feed: committed writes in, per-account wake-ups out (IMAP IDLE, web).

A backend calls :meth:`ChangeHub.publish` once a write is durable. The SQLite backend does so
from its writer thread after each COMMIT; the PostgreSQL backend will do so from its LISTEN
connection, turning each NOTIFY payload back into :class:`~pillarbox.store.types.Change` values
(and not publishing its own writes directly, since NOTIFY echoes them to every node, this one
included). Hence :meth:`publish` may be called from any thread, and each subscription wakes its
own event loop.

Changes are hints (see ``Change``), which lets a slow subscriber cost bounded memory: pending
changes are coalesced per ``(mailbox, kind)`` keeping the highest MODSEQ, so a subscriber holds
at most four entries per mailbox however far behind it falls, and still learns that something
happened where. The reader re-reads the truth by MODSEQ.

A subscription may also **watch one mailbox of another account** (:meth:`FeedSubscription.watch`):
an IMAP session that selected a mailbox shared with its user (RFC 4314) hears that mailbox's
changes as if they were its own account's. The hub indexes watchers by mailbox id, so a publish
costs one dictionary look-up per changed mailbox whoever watches; on PostgreSQL the LISTEN
connection publishes every node's changes here, so a grantee on one node hears the owner's
writes on another.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable

from pillarbox.store.types import Change, ChangeKind


class FeedSubscription:
    """One account's changes from the moment of subscribing; an async iterator until closed."""

    def __init__(self, hub: ChangeHub, account_id: int) -> None:
        self.account_id = account_id
        self._hub = hub
        self._lock = threading.Lock()
        self._pending: dict[tuple[int, ChangeKind], Change] = {}
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        #: The other account's mailbox watched (:meth:`watch`), if any.
        self.watched: int | None = None

    def __aiter__(self) -> FeedSubscription:
        return self

    async def __anext__(self) -> Change:
        while True:
            with self._lock:
                if self._pending:
                    key = next(iter(self._pending))
                    return self._pending.pop(key)
                if self._closed:
                    raise StopAsyncIteration
                waiter = asyncio.get_running_loop().create_future()
                self._waiter = waiter
            await waiter

    async def close(self) -> None:
        self._hub.unsubscribe(self)
        self.end()

    def watch(self, mailbox_id: int | None) -> None:
        """Hear the changes of ``mailbox_id`` too, whoever owns it (None: stop); one at a
        time — the selected mailbox."""
        if mailbox_id != self.watched:
            self._hub.watch(self, mailbox_id)

    def end(self) -> None:
        """Finish iteration once the pending changes are consumed (also called by the hub)."""
        with self._lock:
            self._closed = True
            waiter, self._waiter = self._waiter, None
        _wake(waiter)

    def push(self, changes: Iterable[Change]) -> asyncio.Future[None] | None:
        """Queue ``changes``; returns the waiter the caller must wake (:func:`_wake_all`)."""
        with self._lock:
            if self._closed:
                return None
            for change in changes:
                key = (change.mailbox_id, change.kind)
                known = self._pending.get(key)
                if known is None or known.modseq <= change.modseq:
                    self._pending[key] = change
            waiter, self._waiter = self._waiter, None
        return waiter


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None:
        _wake_all([waiter])


def _wake_all(waiters: Iterable[asyncio.Future[None]]) -> None:
    """Wake waiters, with one thread-safe call per event loop: each such call writes to the
    loop's self-pipe, and a delivery to a mailbox with a thousand idling sessions would
    otherwise make a thousand system calls and loop wake-ups."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for waiter in waiters:
        by_loop.setdefault(waiter.get_loop(), []).append(waiter)
    for loop, batch in by_loop.items():
        if not loop.is_closed():
            loop.call_soon_threadsafe(_set_done, batch)


def _set_done(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


class ChangeHub:
    """Fans published changes out to the subscriptions of their account; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: dict[int, set[FeedSubscription]] = {}
        self._watchers: dict[int, set[FeedSubscription]] = {}

    def subscribe(self, account_id: int) -> FeedSubscription:
        subscription = FeedSubscription(self, account_id)
        with self._lock:
            self._subscriptions.setdefault(account_id, set()).add(subscription)
        return subscription

    def watch(self, subscription: FeedSubscription, mailbox_id: int | None) -> None:
        with self._lock:
            self._unwatch(subscription)
            subscription.watched = mailbox_id
            if mailbox_id is not None:
                self._watchers.setdefault(mailbox_id, set()).add(subscription)

    def _unwatch(self, subscription: FeedSubscription) -> None:
        """Under the lock: forget what ``subscription`` watches."""
        old = subscription.watched
        if old is not None:
            watchers = self._watchers.get(old)
            if watchers is not None:
                watchers.discard(subscription)
                if not watchers:
                    del self._watchers[old]
        subscription.watched = None

    def unsubscribe(self, subscription: FeedSubscription) -> None:
        with self._lock:
            self._unwatch(subscription)
            subscribers = self._subscriptions.get(subscription.account_id)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscriptions[subscription.account_id]

    def audience(self) -> tuple[set[int], set[int]]:
        """The accounts with a subscription, and the mailboxes watched (:meth:`watch`): whose
        changes someone here waits for."""
        with self._lock:
            return set(self._subscriptions), set(self._watchers)

    def publish(self, changes: Iterable[Change]) -> None:
        by_account: dict[int, list[Change]] = {}
        by_mailbox: dict[int, list[Change]] = {}
        for change in changes:
            by_account.setdefault(change.account_id, []).append(change)
            by_mailbox.setdefault(change.mailbox_id, []).append(change)
        with self._lock:
            targets = [
                (subscription, batch)
                for account_id, batch in by_account.items()
                for subscription in self._subscriptions.get(account_id, ())
            ]
            if self._watchers:
                targets += [
                    (subscription, batch)
                    for mailbox_id, batch in by_mailbox.items()
                    for subscription in self._watchers.get(mailbox_id, ())
                ]
        waiters = [subscription.push(batch) for subscription, batch in targets]
        _wake_all(waiter for waiter in waiters if waiter is not None)

    def close(self) -> None:
        """End every subscription (the store is closing)."""
        with self._lock:
            subscriptions = [s for group in self._subscriptions.values() for s in group]
            self._subscriptions.clear()
            self._watchers.clear()
        for subscription in subscriptions:
            subscription.end()
