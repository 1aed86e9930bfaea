"""Mailbox snapshots kept in memory and brought up to date by MODSEQ, for fast SELECT.

Reading a 35,000-message mailbox from SQLite and building its :class:`MessageRecord` objects
costs about 250 ms of CPU on the development VM, most of it in CPython object construction, far
over the 100 ms an IMAP SELECT may take. Dovecot answers the same problem with its index
files; here the answer is a cache that is *validated and patched by the MODSEQ truth*: a
mailbox's snapshot remembers the ``highestmodseq`` it reflects, and a later read fetches only
``changes since`` and ``expunged since`` that value (RFC 7162 semantics, the same queries
QRESYNC uses) inside one read transaction. The cache is therefore never stale, whoever wrote
the change, and a warm SELECT costs a copy of the list plus the few rows that changed.

Invariants: UIDs only grow and expunged UIDs never return, so new records always belong at the
end of a snapshot's UID-ordered dict; a record whose flags changed replaces itself in place.
Memory is bounded by :attr:`max_records` across all mailboxes (least recently used first out).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pillarbox.store.types import MessageRecord


@dataclass(slots=True)
class _Snapshot:
    modseq: int
    records: dict[int, MessageRecord]


class SnapshotCache:
    """Thread-safe: reader threads share it."""

    def __init__(self, max_records: int) -> None:
        self.max_records = max_records
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[int, _Snapshot] = OrderedDict()
        self._size = 0

    def read(
        self,
        mailbox_id: int,
        *,
        modseq: int,
        messages: int,
        load_all: Callable[[], Iterable[MessageRecord]],
        load_changes: Callable[[int], tuple[Iterable[MessageRecord], Iterable[int]]],
    ) -> list[MessageRecord]:
        """The mailbox's records in UID order as of ``modseq`` (the caller's read snapshot).

        ``load_changes(since)`` returns the records changed and the UIDs expunged after
        ``since``; ``messages`` is the count the mailbox row reports, a cross-check.
        """
        # The snapshot leaves the cache while it is patched, so the lock is never held across a
        # query; a concurrent reader of the same mailbox just loads its own.
        with self._lock:
            snapshot = self._snapshots.pop(mailbox_id, None)
            if snapshot is not None:
                self._size -= len(snapshot.records)
        if snapshot is not None and snapshot.modseq < modseq:
            changed, expunged = load_changes(snapshot.modseq)
            for uid in expunged:
                snapshot.records.pop(uid, None)
            for record in changed:
                snapshot.records[record.uid] = record
            snapshot.modseq = modseq
        if snapshot is None or snapshot.modseq != modseq or len(snapshot.records) != messages:
            # No snapshot yet, or the database changed underneath (restored): start over.
            snapshot = _Snapshot(modseq, {record.uid: record for record in load_all()})
        result = list(snapshot.records.values())
        if len(result) <= self.max_records:
            with self._lock:
                if mailbox_id not in self._snapshots:
                    self._snapshots[mailbox_id] = snapshot
                    self._size += len(result)
                while self._size > self.max_records:
                    _, evicted = self._snapshots.popitem(last=False)
                    self._size -= len(evicted.records)
        return result

    def clear(self) -> None:
        with self._lock:
            self._snapshots.clear()
            self._size = 0
