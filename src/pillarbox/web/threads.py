"""The threaded message list: a folder's conversations, paged.

Implementation notes:

- Conversations are the store's threads (RFC 8474 THREADID, :mod:`pillarbox.store.threadrows`):
  the messages of the folder sharing a thread id, the conversations an IMAP client sees
  through ``FETCH THREADID`` / ``SEARCH THREADID``, account wide and never re-split, so the
  web and IMAP clients group mail alike (no grouping by subject: a new message with an old
  subject and no References is a conversation of its own, as for THREADID). Inside a
  conversation, who answers whom (the indentation) is RFC 5256 §3 REFERENCES
  (:func:`pillarbox.imap.thread.thread_references`) run over its messages alone, in the RFC's
  order (depth first, siblings by sent date); a conversation whose messages link only through
  one held in another folder shows as several trees, one after the other. Conversations are
  ordered by latest activity first, as people read mail.
- Threading needs every message of the folder, so the inputs are cached per mailbox in
  :class:`ThreadCache`, keyed by UIDVALIDITY. A change of UIDNEXT or of the message count is
  caught up incrementally: new UIDs from :meth:`Store.thread_fields` (``uid_min``), removed ones
  from :meth:`Store.expunged_since` (the QRESYNC record); then the algorithm re-runs over the
  cached inputs. Base subjects and threading both run off the event loop. A flag change (new
  MODSEQ only) reuses the threads.
  Measured on the 35,000-message linux-mips archive: the first threading takes about 2 s of
  CPU (reading 0.3 s, base subjects 1 s, REFERENCES 1 s), a re-run after new mail about 1 s,
  a page from the cache a few milliseconds (before the grouping by stored thread; running
  REFERENCES once per conversation instead of once over the folder cost the same on
  bench/threadid.py's 35,000-message corpus, three alternating runs each, within the noise
  of a loaded VM). The algorithm is not incremental; the stored ids would let a page build
  only its own conversations (docs/threading.md), the next step if folders that large get
  mail every few seconds.
- A page is a run of whole threads holding about ``page_size`` messages (one long thread may
  fill a page alone, shown up to :data:`MAX_THREAD_LINES` lines); only that page's messages are
  read from the store.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pillarbox.blocking import run_blocking
from pillarbox.imap.basesubject import base_subject, casemap
from pillarbox.imap.responses import ThreadNode
from pillarbox.imap.thread import ThreadMessage, thread_references
from pillarbox.store.interface import Store
from pillarbox.store.types import MailboxStatus, ThreadFields

#: Mailboxes whose threads are kept (a 35,000-message mailbox takes about 8 MB).
CACHED_MAILBOXES = 8
#: Lines shown of one thread on a page; the rest is one "more" line (the message view lists
#: the whole conversation).
MAX_THREAD_LINES = 200
#: Indentation levels told apart on screen; deeper replies line up with the last.
MAX_DEPTH = 8


def thread_input(fields: ThreadFields) -> ThreadMessage:
    """What :func:`thread_references` needs of one message, as
    :func:`pillarbox.imap.thread.thread_message` builds it from a full MessageInfo."""
    subject = base_subject(fields.subject)
    references = fields.references or ((fields.in_reply_to,) if fields.in_reply_to else ())
    return ThreadMessage(
        fields.uid,
        fields.sent_date or fields.internal_date,  # RFC 5256 §2.2
        casemap(subject.text),
        subject.reply_or_forward,
        fields.message_id,
        references,
    )


@dataclass(frozen=True, slots=True)
class Line:
    """One message of a threaded list and how deep it replies."""

    uid: int
    depth: int


@dataclass(frozen=True, slots=True)
class Conversation:
    #: The store's thread (RFC 8474 THREADID) of its messages.
    thread: int
    lines: tuple[Line, ...]
    #: Date of its newest message: the order of the list.
    latest: datetime

    @property
    def size(self) -> int:
        return len(self.lines)


def _lines(root: ThreadNode) -> list[Line]:
    """The thread depth first; a dummy (a referenced message not in the folder) shows no line,
    its children stand at its depth. Iterative: a long chain of replies is deep."""
    lines: list[Line] = []
    stack = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if node.number is not None:
            lines.append(Line(node.number, min(depth, MAX_DEPTH)))
            depth += 1
        stack.extend((child, depth) for child in reversed(node.children))
    return lines


def conversations(
    messages: Sequence[ThreadMessage], thread_of: Mapping[int, int]
) -> list[Conversation]:
    """The folder's conversations (``messages`` grouped by their stored thread,
    ``thread_of``), newest activity first. CPU work: run it off the loop."""
    groups: dict[int, list[ThreadMessage]] = {}
    for message in messages:
        groups.setdefault(thread_of[message.uid], []).append(message)
    result = []
    for thread, members in groups.items():
        lines = tuple(line for root in thread_references(members) for line in _lines(root))
        result.append(Conversation(thread, lines, max(m.date for m in members)))
    # Equal dates: the thread that got mail last (highest UID) first.
    result.sort(key=lambda c: (c.latest, max(line.uid for line in c.lines)), reverse=True)
    return result


@dataclass
class Forest:
    """The threads of one mailbox at one state (see the module notes)."""

    uidvalidity: int
    uidnext: int
    messages: int
    highestmodseq: int
    inputs: dict[int, ThreadMessage]
    #: The stored thread of each message (RFC 8474 THREADID: never changes, so kept).
    thread_of: dict[int, int]
    threads: list[Conversation]
    #: Start index of each page, by page size.
    _pages: dict[int, list[int]] = field(default_factory=dict)

    def page_starts(self, page_size: int) -> list[int]:
        starts = self._pages.get(page_size)
        if starts is None:
            starts, count = [0], 0
            for index, thread in enumerate(self.threads):
                shown = min(thread.size, MAX_THREAD_LINES)
                if count and count + shown > page_size:
                    starts.append(index)
                    count = 0
                count += shown
            self._pages[page_size] = starts
        return starts

    def page(self, number: int, page_size: int) -> list[Conversation]:
        """Threads of page ``number`` (from 1); empty past the last."""
        starts = self.page_starts(page_size)
        if not self.threads or number > len(starts):
            return []
        end = starts[number] if number < len(starts) else len(self.threads)
        return self.threads[starts[number - 1] : end]


def _taken_in(
    inputs: dict[int, ThreadMessage], thread_of: dict[int, int], new: Sequence[ThreadFields]
) -> None:
    """Add ``new`` to ``inputs`` and ``thread_of``. CPU work (base subjects, a second for
    35,000 messages): run it off the loop."""
    inputs.update((fields.uid, thread_input(fields)) for fields in new)
    thread_of.update((fields.uid, fields.thread) for fields in new)


def _threads_of(inputs: dict[int, ThreadMessage], thread_of: dict[int, int]) -> list[Conversation]:
    return conversations([inputs[uid] for uid in sorted(inputs)], thread_of)


class ThreadCache:
    """Threads of the mailboxes listed lately; shared by every request of the web app."""

    def __init__(self, entries: int = CACHED_MAILBOXES) -> None:
        self.entries = entries
        self._forests: OrderedDict[int, Forest] = OrderedDict()
        self._locks: dict[int, asyncio.Lock] = {}

    async def forest(self, store: Store, status: MailboxStatus) -> Forest:
        """The threads of ``status.mailbox`` as of ``status`` (read just before)."""
        mailbox = status.mailbox
        lock = self._locks.setdefault(mailbox.id, asyncio.Lock())
        async with lock:  # one computation per mailbox; concurrent readers wait for it
            forest = await self._current(store, status)
            self._forests[mailbox.id] = forest
            self._forests.move_to_end(mailbox.id)
            while len(self._forests) > self.entries:
                gone, _ = self._forests.popitem(last=False)
                self._locks.pop(gone, None)
            return forest

    async def _current(self, store: Store, status: MailboxStatus) -> Forest:
        mailbox = status.mailbox
        cached = self._forests.get(mailbox.id)
        if cached is not None and cached.uidvalidity == mailbox.uidvalidity:
            if (cached.uidnext, cached.messages) == (mailbox.uidnext, status.messages):
                return cached
            inputs, thread_of = dict(cached.inputs), dict(cached.thread_of)
            for uid in await store.expunged_since(mailbox.id, cached.highestmodseq):
                inputs.pop(uid, None)
                thread_of.pop(uid, None)
            new = await store.thread_fields(mailbox.id, uid_min=cached.uidnext)
        else:
            inputs, thread_of = {}, {}
            new = await store.thread_fields(mailbox.id)
        await run_blocking(_taken_in, inputs, thread_of, new)
        uidnext = max(mailbox.uidnext, new[-1].uid + 1 if new else 0)
        if len(inputs) != status.messages:
            # Expunges the record no longer holds, or writes between the two reads: read all.
            inputs, thread_of = {}, {}
            await run_blocking(_taken_in, inputs, thread_of, await store.thread_fields(mailbox.id))
        threads = await run_blocking(_threads_of, inputs, thread_of)
        return Forest(
            mailbox.uidvalidity,
            uidnext,
            len(inputs),
            mailbox.highestmodseq,
            inputs,
            thread_of,
            threads,
        )
