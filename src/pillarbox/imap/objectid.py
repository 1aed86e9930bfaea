"""Object identifiers (RFC 8474 OBJECTID): stable ids a client may cache across sessions.

- **EMAILID** (§5.1) is derived from the content-addressed blob (SHA-256 of the bytes), so
  every copy of a message — COPY, MOVE, one delivery to several mailboxes — has the same id,
  as §5.1 asks, and an id is never reused for other content.
- **MAILBOXID** (§4) is the store's mailbox id with its UIDVALIDITY: RENAME keeps both (§4.1:
  the id survives a rename), a mailbox deleted and created again under the same name gets a
  new UIDVALIDITY and so a new id, even if a backend reuses the row id.
- **THREADID** (§5.2) is the store's thread number, assigned when the message is stored and
  never changed, shared by the related messages of the account in every mailbox
  (:mod:`pillarbox.store.threadrows` has the rule). Its ``T`` prefix keeps it apart from every
  EMAILID (§5.2: the two must never share a value).

Every id is 1 to 255 characters of ``[A-Za-z0-9_-]`` starting with a letter (§3).
"""

from __future__ import annotations

from pillarbox.store.types import Mailbox, MessageRecord

__all__ = ["email_id", "mailbox_id", "thread_id", "thread_number"]

#: Thread numbers are the stores' 64-bit integers (SQLite INTEGER, PostgreSQL bigint).
_MAX_THREAD = 2**63 - 1


def email_id(record: MessageRecord) -> str:
    return "E" + record.blob_id[:24]


def mailbox_id(mailbox: Mailbox) -> str:
    return f"F{mailbox.id}-{mailbox.uidvalidity}"


def thread_id(thread: int) -> str:
    return f"T{thread}"


def thread_number(object_id: str) -> int | None:
    """The thread :func:`thread_id` made ``object_id`` from; None when it made no such id
    (another spelling of a number, ``T017``, names no thread: ids compare as strings, §3)."""
    digits = object_id[1:]
    if not object_id.startswith("T") or not digits.isascii() or not digits.isdigit():
        return None
    thread = int(digits)
    return thread if thread <= _MAX_THREAD and thread_id(thread) == object_id else None
