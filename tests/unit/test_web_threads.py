"""The web's conversations (pillarbox.web.threads): grouped by the stored thread (RFC 8474
THREADID), never by subject; replies indented by RFC 5256 REFERENCES inside each; newest
activity first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pillarbox.store.types import ThreadFields
from pillarbox.web.threads import Line, conversations, thread_input

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def fields(uid: int, thread: int, subject: str, message_id: str, *refs: str) -> ThreadFields:
    return ThreadFields(
        uid, T0, T0 + timedelta(hours=uid), subject, message_id, "", tuple(refs), thread
    )


def shape(messages: list[ThreadFields]) -> list[tuple[int, list[tuple[int, int]]]]:
    """(thread, [(uid, depth)]) of each conversation, in list order."""
    found = conversations([thread_input(f) for f in messages], {f.uid: f.thread for f in messages})
    return [(c.thread, [(line.uid, line.depth) for line in c.lines]) for c in found]


def test_conversations_are_the_stored_threads_not_subjects() -> None:
    """Two messages of one subject in two stored threads stay apart (REFERENCES §3 step 5
    would merge them); a reply is indented under its parent; newest activity first."""
    assert shape(
        [
            fields(1, 7, "Lunch", "a@x"),
            fields(2, 8, "Re: Lunch", "b@x"),
            fields(3, 7, "Re: Lunch", "c@x", "a@x"),
        ]
    ) == [(7, [(1, 0), (3, 1)]), (8, [(2, 0)])]


def test_a_conversation_linked_outside_the_folder_shows_each_tree() -> None:
    """Messages of one thread linked only through a message in another folder: one
    conversation, its trees one after the other by date."""
    assert shape(
        [
            fields(1, 5, "Plan", "a@x"),
            fields(2, 6, "Other", "o@x"),
            fields(3, 5, "Budget", "c@x", "b@x"),
            fields(4, 5, "Re: Budget", "d@x", "b@x", "c@x"),
        ]
    ) == [(5, [(1, 0), (3, 0), (4, 1)]), (6, [(2, 0)])]


def test_lines_carry_uid_and_depth() -> None:
    [conversation] = conversations([thread_input(fields(4, 1, "s", "a@x"))], {4: 1})
    assert conversation.lines == (Line(4, 0),)
    assert conversation.latest == T0 + timedelta(hours=4)
