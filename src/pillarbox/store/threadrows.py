"""Thread ids (RFC 8474 §5.2 THREADID): the rule both backends apply, shared.

Rule (documented in docs/threading.md): each account keeps a table of *thread keys* — every
Message-ID its messages carry or mention (their own Message-ID, References and In-Reply-To),
each mapped to the thread of the first message that brought it. A new message (delivery,
APPEND, a COPY or MOVE from another account) looks up its own keys: if any is known, it joins
the oldest thread among them (the lowest id), else it starts a new one; then its keys not known
yet are added for that thread. So a reply joins its parent's thread, a parent that arrives
after its reply joins the reply's thread (the reply brought the parent's Message-ID as a key),
and two replies to a parent never received share one thread.

Threads are never merged: a message linking two existing threads joins the older one and the
other keeps its id, since RFC 8474 §5.2 forbids changing a THREADID once reported (JMAP,
RFC 8621 §3, likewise keeps a message's threadId for life). A COPY or MOVE within the account
keeps the id (§5.2: the same id in every mailbox, and for the same EMAILID). Keys stay while
the account holds any message of their thread, so a late reply still finds it after its
parent was expunged; the expunge of a thread's last message prunes them (no message carries
that id any more), and all go with the account.

A message without a Message-ID gets a key from its content digest instead, so identical copies
(same EMAILID) always share a thread, as §5.2 requires.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["CONTENT_KEY", "MAX_KEY_BYTES", "ThreadAssigner", "thread_keys"]

#: A msg-id longer than a header line (RFC 5322 §2.1.1: 998 characters) is no real id; it is
#: not used as a key (it would also exceed PostgreSQL's index entry size).
MAX_KEY_BYTES = 998
#: Prefix of a content key. A msg-id may start with it: an id-left may be a quoted-string
#: (RFC 5322 §3.6.4, obs-id-left = local-part), and the parsed id keeps its blanks
#: (``<" sha256:…"@x>``); such an id is not used as a key, or a sender could put its
#: message in the thread of a message without a Message-ID.
CONTENT_KEY = " sha256:"


def thread_keys(
    message_id: str, in_reply_to: str, references: Sequence[str], digest: str
) -> list[str]:
    """The keys of one message, its own id first, duplicates, oversized ids and ids posing
    as a content key left out."""
    keys = dict.fromkeys(
        key
        for key in (message_id, *references, in_reply_to)
        if key
        and len(key.encode("utf-8", "surrogatepass")) <= MAX_KEY_BYTES
        and not key.startswith(CONTENT_KEY)
    )
    if not message_id:
        keys[CONTENT_KEY + digest] = None
    return list(keys)


class ThreadAssigner:
    """The rule run in memory over one account's messages in arrival order: what the
    migrations' backfill uses, instead of one database round trip per message."""

    def __init__(self, next_thread: int) -> None:
        #: The id the next new thread gets; read it back when done.
        self.next_thread = next_thread
        #: Every key seen so far, with its thread: the rows of the account's key table.
        self.keys: dict[str, int] = {}

    def assign(self, keys: Sequence[str]) -> int:
        known = self.keys
        found = [known[key] for key in keys if key in known]
        if found:
            thread = min(found)
        else:
            thread = self.next_thread
            self.next_thread += 1
        for key in keys:
            known.setdefault(key, thread)
        return thread
