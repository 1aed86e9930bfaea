"""Mailbox snapshots kept in memory and brought up to date by MODSEQ, for fast SELECT; and
the decoded message structures that FETCH reads (:class:`InfoCache`).

Reading a 35,000-message mailbox from SQLite and building its :class:`MessageRecord` objects
costs about 250 ms of CPU on the development VM, most of it in CPython object construction, far
over the 100 ms an IMAP SELECT may take. Dovecot answers the same problem with its index
files; here the answer is twofold. A cold read keeps the rows as SQLite returns them (read
through a covering index) and hands out a :class:`RecordTable`, which makes a record only when
one is used. And the rows stay in a cache that is *validated and patched by the MODSEQ truth*:
a mailbox's snapshot remembers the ``highestmodseq`` it reflects, and a later read fetches only
``changes since`` and ``expunged since`` that value (RFC 7162 semantics, the same queries
QRESYNC uses) inside one read transaction. The cache is therefore never stale, whoever wrote
the change, and a warm SELECT with nothing changed shares the table the last one got.

Invariants: UIDs only grow and expunged UIDs never return, so new rows always belong at the
end of a snapshot's UID-ordered dict; a row whose flags changed replaces itself in place, and
the table made from the rows is made anew (tables are immutable: sessions hold them).
Memory is bounded by :attr:`max_records` across all mailboxes (least recently used first out).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from pillarbox.mail.model import MessageInfo
from pillarbox.store.types import MessageRecord, RecordTable

#: A message as the record query returns it: uid, modseq, flags (as stored), internal and
#: saved dates (µs), size, blob id.
Row = tuple[int, int, str, int, int, int, str]


@dataclass(slots=True)
class _Snapshot:
    modseq: int
    rows: dict[int, Row]
    #: Made from ``rows`` when first asked for; None again once they change.
    table: RecordTable | None = None


class SnapshotCache:
    """Thread-safe: reader threads share it. ``record(mailbox_id, row)`` makes a record and
    ``flags(stored)`` a flag set, for the tables handed out."""

    def __init__(
        self,
        max_records: int,
        *,
        record: Callable[[int, Row], MessageRecord],
        flags: Callable[[str], frozenset[str]],
    ) -> None:
        self.max_records = max_records
        self._record = record
        self._flags = flags
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[int, _Snapshot] = OrderedDict()
        self._size = 0

    def read(
        self,
        mailbox_id: int,
        *,
        modseq: int,
        messages: int,
        load_all: Callable[[], Iterable[Row]],
        load_changes: Callable[[int], tuple[Iterable[Row], Iterable[int]]],
    ) -> RecordTable:
        """The mailbox's records in UID order as of ``modseq`` (the caller's read snapshot).

        ``load_changes(since)`` returns the rows changed and the UIDs expunged after
        ``since``; ``messages`` is the count the mailbox row reports, a cross-check.
        """
        # The snapshot leaves the cache while it is patched, so the lock is never held across a
        # query; a concurrent reader of the same mailbox just loads its own.
        with self._lock:
            snapshot = self._snapshots.pop(mailbox_id, None)
            if snapshot is not None:
                self._size -= len(snapshot.rows)
        if snapshot is not None and snapshot.modseq < modseq:
            changed, expunged = load_changes(snapshot.modseq)
            for uid in expunged:
                snapshot.rows.pop(uid, None)
            for row in changed:
                snapshot.rows[row[0]] = row
            snapshot.modseq = modseq
            snapshot.table = None
        if snapshot is None or snapshot.modseq != modseq or len(snapshot.rows) != messages:
            # No snapshot yet, or the database changed underneath (restored): start over.
            snapshot = _Snapshot(modseq, {row[0]: row for row in load_all()})
        if snapshot.table is None:
            snapshot.table = self._table(mailbox_id, list(snapshot.rows.values()))
        size = len(snapshot.rows)
        if size <= self.max_records:
            with self._lock:
                if mailbox_id not in self._snapshots:
                    self._snapshots[mailbox_id] = snapshot
                    self._size += size
                while self._size > self.max_records:
                    _, evicted = self._snapshots.popitem(last=False)
                    self._size -= len(evicted.rows)
        return snapshot.table

    def _table(self, mailbox_id: int, rows: list[Row]) -> RecordTable:
        flags = self._flags
        make = self._record
        return RecordTable(
            [row[0] for row in rows],
            [flags(row[2]) for row in rows],
            lambda index: make(mailbox_id, rows[index]),
        )

    def clear(self) -> None:
        with self._lock:
            self._snapshots.clear()
            self._size = 0


class InfoCache:
    """Decoded :class:`MessageInfo` structures (their text fields empty) by blob row id.

    Decoding the stored JSON is most of the cost of ENVELOPE and BODYSTRUCTURE: about 150 µs a
    message for mailing-list mail on the development VM, against 7 µs to read it. A blob's
    content never changes and its id is never reused (AUTOINCREMENT), so an entry can never be
    stale and nothing invalidates it; least recently used entries leave past ``max_entries``
    (a mailing-list message's structure takes about 7 KB). Thread-safe: reader threads share it.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._infos: OrderedDict[int, MessageInfo] = OrderedDict()

    def get_many(self, blob_rows: Iterable[int]) -> dict[int, MessageInfo]:
        found: dict[int, MessageInfo] = {}
        with self._lock:
            for blob_row in blob_rows:
                info = self._infos.get(blob_row)
                if info is not None:
                    self._infos.move_to_end(blob_row)
                    found[blob_row] = info
        return found

    def put_many(self, infos: Mapping[int, MessageInfo]) -> None:
        if self.max_entries <= 0:
            return
        with self._lock:
            self._infos.update(infos)
            while len(self._infos) > self.max_entries:
                self._infos.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._infos.clear()
