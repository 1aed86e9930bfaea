"""THREAD (RFC 5256 §3): ORDEREDSUBJECT and REFERENCES over stored headers.

Implementation notes:

- **Input** is what ingest stored (DESIGN principle 4): Message-ID, In-Reply-To and
  References already normalised to bare msg-ids (quoting removed, so
  ``<"a"@b>`` and ``<a@b>`` are one id, as §3 REFERENCES requires), the decoded subject, and
  the sent date (§2.2: the internal date when Date: is missing or unparsable).
- **Order.** "Sorted by sent date" leaves ties open; they fall back to the mailbox order (UID),
  as SORT's implicit last criterion does, so results are deterministic.
- **REFERENCES** follows the six steps of §3 literally, on mutable containers (one per
  message id, dummies for referenced ids not in the result); loops are refused at every link
  (1A, 1B). A missing or duplicate Message-ID gets a unique id of its own (1A).
- **ORDEREDSUBJECT**: messages sorted by (base subject, sent date); one thread per base
  subject, ordered by its first message's date; the rest are that message's children.
- Output is :class:`~pillarbox.imap.responses.ThreadNode` trees numbered by UID;
  :func:`renumber` maps them to sequence numbers for THREAD (as opposed to UID THREAD).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pillarbox.imap.basesubject import base_subject, casemap
from pillarbox.imap.responses import ThreadNode
from pillarbox.imap.sort import sent_date
from pillarbox.mail.model import MessageInfo
from pillarbox.store.types import MessageRecord

__all__ = [
    "ALGORITHMS",
    "ThreadMessage",
    "renumber",
    "thread_message",
    "thread_orderedsubject",
    "thread_references",
]


@dataclass(frozen=True, slots=True)
class ThreadMessage:
    uid: int
    date: datetime
    #: Base subject under i;unicode-casemap (§2.1, "Internationalization Considerations").
    subject: str
    reply_or_forward: bool
    message_id: str
    #: References, or the first In-Reply-To id when there are none (§3 REFERENCES).
    references: tuple[str, ...]


def thread_message(uid: int, info: MessageInfo | None, record: MessageRecord) -> ThreadMessage:
    """What threading needs of one message; a message expunged meanwhile (no metadata) is
    threaded by its record alone."""
    if info is None:
        return ThreadMessage(uid, record.internal_date, "", False, "", ())
    subject = base_subject(info.subject)
    references = info.references or ((info.in_reply_to,) if info.in_reply_to else ())
    return ThreadMessage(
        uid,
        sent_date(info, record),
        casemap(subject.text),
        subject.reply_or_forward,
        info.message_id,
        references,
    )


def thread_orderedsubject(messages: Iterable[ThreadMessage]) -> list[ThreadNode]:
    """RFC 5256 §3 ORDEREDSUBJECT ("poor man's threading")."""
    ordered = sorted(messages, key=lambda m: (m.subject, m.date, m.uid))
    threads: list[list[ThreadMessage]] = []
    for message in ordered:
        if threads and threads[-1][0].subject == message.subject:
            threads[-1].append(message)
        else:
            threads.append([message])
    threads.sort(key=lambda thread: (thread[0].date, thread[0].uid))
    return [
        ThreadNode(first.uid, tuple(ThreadNode(m.uid) for m in rest)) for first, *rest in threads
    ]


class _Container:
    __slots__ = ("children", "message", "parent")

    def __init__(self, message: ThreadMessage | None = None) -> None:
        self.message = message  # None: a dummy
        self.parent: _Container | None = None
        self.children: list[_Container] = []

    def is_ancestor_of(self, other: _Container) -> bool:
        node: _Container | None = other
        while node is not None:
            if node is self:
                return True
            node = node.parent
        return False

    def adopt(self, child: _Container) -> None:
        if child.parent is not None:
            child.parent.children.remove(child)
        child.parent = self
        self.children.append(child)

    def sort_key(self) -> tuple[datetime, int]:
        """§3 steps 4 and 6: a dummy sorts by its first child (it has one by then)."""
        node = self
        while node.message is None:
            node = node.children[0]
        return node.message.date, node.message.uid

    def subject(self) -> str:
        """§3 step 5.B.i: the thread subject."""
        node = self if self.message is not None or not self.children else self.children[0]
        return node.message.subject if node.message is not None else ""

    @property
    def reply(self) -> bool:
        return self.message is not None and self.message.reply_or_forward


def thread_references(messages: Sequence[ThreadMessage]) -> list[ThreadNode]:
    """RFC 5256 §3 REFERENCES; ``messages`` in mailbox (UID) order."""
    table: dict[str, _Container] = {}

    def container(message_id: str) -> _Container:
        found = table.get(message_id)
        if found is None:
            found = table[message_id] = _Container()
        return found

    every: list[_Container] = []
    for message in sorted(messages, key=lambda m: m.uid):
        # (1A) a message without a (unique) Message-ID gets an id of its own.
        key = message.message_id
        if not key or (key in table and table[key].message is not None):
            key = f"\x00{message.uid}"
        this = container(key)
        this.message = message
        every.append(this)
        refs = [container(ref) for ref in message.references]
        for parent, child in itertools.pairwise(refs):
            if child.parent is None and parent is not child and not child.is_ancestor_of(parent):
                parent.adopt(child)
        # (1B) the last reference is the parent, replacing any link made by 1A.
        if this.parent is not None:
            this.parent.children.remove(this)
            this.parent = None
        if refs and not this.is_ancestor_of(refs[-1]):
            refs[-1].adopt(this)
    # (2) the root set: every container without a parent (dummies included).
    roots = [c for c in table.values() if c.parent is None]
    roots = _prune(roots, at_root=True)  # (3)
    roots.sort(key=_Container.sort_key)  # (4)
    roots = _merge_subjects(roots)  # (5)
    _sort_siblings(roots)  # (6)
    return [_node(c) for c in roots]


def _prune(siblings: list[_Container], *, at_root: bool) -> list[_Container]:
    """§3 step 3: drop childless dummies, splice the children of the others in their place
    (at the root only when there is just one child)."""
    kept: list[_Container] = []
    for node in siblings:
        node.children = _prune(node.children, at_root=False)
        for child in node.children:
            child.parent = node
        if node.message is None:
            if not node.children:
                continue
            if not at_root or len(node.children) == 1:
                for child in node.children:
                    child.parent = node.parent
                kept.extend(node.children)
                continue
        kept.append(node)
    return kept


def _merge_subjects(roots: list[_Container]) -> list[_Container]:
    """§3 step 5: threads whose subjects match are gathered under one root."""
    table: dict[str, _Container] = {}
    for node in roots:  # (5B)
        subject = node.subject()
        if not subject:
            continue
        current = table.get(subject)
        replaces = current is not None and (
            current.message is not None
            and (node.message is None or (current.reply and not node.reply))
        )
        if current is None or replaces:
            table[subject] = node
    result = list(roots)
    for node in roots:  # (5C)
        subject = node.subject()
        if not subject:
            continue
        target = table[subject]
        if target is node:
            continue
        result.remove(node)
        if target.message is None and node.message is None:
            for child in list(node.children):
                target.adopt(child)
        elif target.message is None or (node.reply and not target.reply):
            target.adopt(node)
        else:
            dummy = _Container()
            result[result.index(target)] = dummy
            dummy.adopt(target)
            dummy.adopt(node)
            table[subject] = dummy
    return result


def _sort_siblings(siblings: list[_Container]) -> None:
    """§3 step 6: the youngest sets of siblings first, so dummies sort by a sorted child."""
    for node in siblings:
        _sort_siblings(node.children)
    siblings.sort(key=_Container.sort_key)


def _node(container: _Container) -> ThreadNode:
    uid = None if container.message is None else container.message.uid
    return ThreadNode(uid, tuple(_node(child) for child in container.children))


def renumber(nodes: Iterable[ThreadNode], number: Callable[[int], int]) -> list[ThreadNode]:
    """The same trees with each UID replaced by ``number(uid)`` (its sequence number)."""
    return [
        ThreadNode(
            None if node.number is None else number(node.number),
            tuple(renumber(node.children, number)),
        )
        for node in nodes
    ]


#: THREAD algorithms offered (RFC 5256 §3), each advertised as ``THREAD=<name>``.
ALGORITHMS: dict[str, Callable[[Sequence[ThreadMessage]], list[ThreadNode]]] = {
    "ORDEREDSUBJECT": thread_orderedsubject,
    "REFERENCES": thread_references,
}
