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
  ordered by latest activity first, as people read mail: the latest date of their messages
  (the sent date, else INTERNALDATE), a tie by the highest UID.
- A page is built from the store, never from the whole folder: the folder's conversations and
  their sizes come from one grouped read of the ``(mailbox, thread)`` index, already in list
  order (:meth:`Store.thread_sizes`, a pair of integers per conversation, no message read);
  the page is cut from that list; only its conversations' messages are read
  (:meth:`Store.thread_fields`) and threaded, off the event loop. Nothing is cached, so new
  mail, a deletion or a flag change costs the next view no more than any other.
  Measured on the 35,000-message linux-mips archive (docs/threading.md, SQLite): about 15 ms
  of server CPU a view, first or not, 27 ms right after new mail; threading the whole folder
  (the list before) cost about 0.9–1.0 s on a first view and 0.27 s after new mail, and 5 ms
  a view from its cache.
- A page is a run of whole conversations holding about ``page_size`` messages (one long
  conversation may fill a page alone, shown up to :data:`MAX_THREAD_LINES` lines): the
  page boundaries are counted over every conversation's size, integers only.
- The sizes and the page's messages are two reads: a message stored or removed between them
  shows in its conversation or not, and a conversation that lost all its messages meanwhile is
  left out of the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pillarbox.imap.basesubject import base_subject, casemap
from pillarbox.imap.responses import ThreadNode
from pillarbox.imap.thread import ThreadMessage, thread_references
from pillarbox.store.types import ThreadFields

#: Lines shown of one conversation on a page; the rest is one "more" line (the message view
#: lists the whole conversation).
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
    #: Its messages without ``\Seen``.
    unread: int

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


def conversations(messages: Sequence[ThreadFields], threads: Sequence[int]) -> list[Conversation]:
    """The conversations ``threads``, in that order, of ``messages`` (theirs, in UID order),
    each indented by REFERENCES over its own messages; a thread with none of ``messages`` is
    left out. CPU work (base subjects, threading): run it off the loop."""
    groups: dict[int, list[ThreadFields]] = {thread: [] for thread in threads}
    for message in messages:
        groups[message.thread].append(message)
    return [
        Conversation(
            thread,
            tuple(
                line
                for root in thread_references([thread_input(m) for m in members])
                for line in _lines(root)
            ),
            sum(not m.seen for m in members),
        )
        for thread, members in groups.items()
        if members
    ]


@dataclass(frozen=True, slots=True)
class FolderPage:
    """Which conversations page ``number`` shows, of how many pages."""

    threads: tuple[int, ...]
    pages: int


def folder_page(sizes: Sequence[tuple[int, int]], number: int, page_size: int) -> FolderPage:
    """Page ``number`` (from 1; none past the last) of a folder whose conversations are
    ``sizes`` (:meth:`Store.thread_sizes`, in list order): each page takes conversations
    until the next would take it past ``page_size`` shown lines, and at least one."""
    starts: list[int] = []
    count = 0
    for index, (_, size) in enumerate(sizes):
        shown = min(size, MAX_THREAD_LINES)
        if not starts or count + shown > page_size:
            starts.append(index)
            count = 0
        count += shown
    if not 1 <= number <= len(starts):
        return FolderPage((), len(starts))
    end = starts[number] if number < len(starts) else len(sizes)
    return FolderPage(tuple(thread for thread, _ in sizes[starts[number - 1] : end]), len(starts))
