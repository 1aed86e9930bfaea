"""The web's conversations (pillarbox.web.threads): grouped by the stored thread (RFC 8474
THREADID), never by subject; replies indented by RFC 5256 REFERENCES inside each; pages of
whole conversations cut from the store's list of thread sizes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pillarbox.store.types import ThreadFields
from pillarbox.web.threads import (
    MAX_THREAD_LINES,
    Conversation,
    FolderPage,
    Line,
    conversations,
    folder_page,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def fields(
    uid: int, thread: int, subject: str, message_id: str, *refs: str, seen: bool = False
) -> ThreadFields:
    return ThreadFields(
        uid, T0, T0 + timedelta(hours=uid), subject, message_id, "", tuple(refs), thread, seen
    )


def shape(
    messages: list[ThreadFields], threads: list[int]
) -> list[tuple[int, list[tuple[int, int]]]]:
    """(thread, [(uid, depth)]) of each conversation, in list order."""
    found = conversations(messages, threads)
    return [(c.thread, [(line.uid, line.depth) for line in c.lines]) for c in found]


def test_conversations_are_the_stored_threads_not_subjects() -> None:
    """Two messages of one subject in two stored threads stay apart (REFERENCES §3 step 5
    would merge them); a reply is indented under its parent; the order is the one asked."""
    messages = [
        fields(1, 7, "Lunch", "a@x"),
        fields(2, 8, "Re: Lunch", "b@x"),
        fields(3, 7, "Re: Lunch", "c@x", "a@x"),
    ]
    assert shape(messages, [7, 8]) == [(7, [(1, 0), (3, 1)]), (8, [(2, 0)])]
    assert shape(messages, [8, 7]) == [(8, [(2, 0)]), (7, [(1, 0), (3, 1)])]


def test_a_conversation_linked_outside_the_folder_shows_each_tree() -> None:
    """Messages of one thread linked only through a message in another folder: one
    conversation, its trees one after the other by date."""
    assert shape(
        [
            fields(1, 5, "Plan", "a@x"),
            fields(3, 5, "Budget", "c@x", "b@x"),
            fields(4, 5, "Re: Budget", "d@x", "b@x", "c@x"),
        ],
        [5],
    ) == [(5, [(1, 0), (3, 0), (4, 1)])]


def test_lines_unread_and_threads_gone_meanwhile() -> None:
    """A conversation counts its messages without \\Seen; a thread whose messages all went
    between the store's two reads is left out."""
    found = conversations(
        [fields(4, 1, "s", "a@x"), fields(6, 1, "Re: s", "b@x", "a@x", seen=True)], [2, 1]
    )
    assert found == [Conversation(1, (Line(4, 0), Line(6, 1)), unread=1)]


def test_pages_hold_whole_conversations() -> None:
    """A page takes conversations until the next would pass the page size, and at least
    one; a conversation counts as the lines it shows (MAX_THREAD_LINES at most)."""
    sizes = [(10, 1), (11, 3), (12, 1), (13, 1), (14, 5000), (15, 1)]
    assert [folder_page(sizes, n, 2) for n in (1, 2, 3, 4, 5, 6)] == [
        FolderPage((10,), 5),
        FolderPage((11,), 5),
        FolderPage((12, 13), 5),
        FolderPage((14,), 5),
        FolderPage((15,), 5),
        FolderPage((), 5),  # past the last
    ]
    # The long conversation counts MAX_THREAD_LINES: it fits beside the four before it.
    assert folder_page(sizes, 1, MAX_THREAD_LINES + 6) == FolderPage((10, 11, 12, 13, 14), 2)
    assert folder_page(sizes, 1, 50) == FolderPage((10, 11, 12, 13), 3)
    assert folder_page([], 1, 50) == FolderPage((), 0)
    assert folder_page(sizes, 0, 50) == FolderPage((), 3)
