"""RFC 5256 base subject (§2.1), RFC 5051 i;unicode-casemap, SORT criteria and both THREAD
algorithms on small corpora with answers worked out by hand from the RFC's steps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pillarbox.imap.basesubject import base_subject, casemap
from pillarbox.imap.commands import SortCriterion
from pillarbox.imap.compress import CompressionError, Deflate
from pillarbox.imap.responses import thread
from pillarbox.imap.sort import sort_uids
from pillarbox.imap.thread import (
    ThreadMessage,
    renumber,
    thread_orderedsubject,
    thread_references,
)
from pillarbox.mail.parse import parse_message
from pillarbox.store.types import MessageRecord


@pytest.mark.parametrize(
    ("subject", "base", "reply"),
    [
        ("Hello", "Hello", False),
        ("Re: Hello", "Hello", True),
        ("RE: [list] re:  Hello (fwd)", "Hello", True),
        ("Fwd: FW: fw : x", "x", True),
        ("Re[2]: test", "test", True),  # a blob before the colon of subj-refwd
        ("[list] [tag] topic", "topic", False),  # (4) blobs removed while text remains
        ("[list]", "[list]", False),  # (4) not when nothing would remain
        ("[Fwd: Re: inner]", "inner", True),  # (6) unwrapped, then again from (2)
        ("  many\t  spaces  ", "many spaces", False),  # (1) and (2)
        ("report (FWD)(fwd)", "report", True),  # (2) repeated
        ("Re:", "", True),
        ("Reply to all", "Reply to all", False),  # "re" needs its colon
    ],
)
def test_base_subject(subject: str, base: str, reply: bool) -> None:
    extracted = base_subject(subject)
    assert (extracted.text, extracted.reply_or_forward) == (base, reply)


def test_casemap_is_the_rfc_5051_titlecase_then_nfkd() -> None:
    assert casemap("hello") == casemap("HELLO") == "HELLO"
    # Titlecase, not uppercase: U+01C6 and U+01C4 both map to U+01C5, then NFKD splits it.
    assert casemap("ǆ") == casemap("Ǆ") == "Dz\u030c"
    assert casemap("ｆｕｌｌ") == "FULL"  # NFKD folds width
    assert casemap("é") == casemap("É") == "E\u0301"
    assert casemap("ß") == "ß"  # no simple titlecase mapping: kept (full would be "Ss")
    assert casemap("") < casemap("a")  # the empty string collates first (RFC 5256 §3)


def _day(day: int) -> datetime:
    return datetime(2024, 1, day, 12, tzinfo=UTC)


def _record(uid: int, size: int, arrived: int) -> MessageRecord:
    return MessageRecord(1, uid, uid, frozenset(), _day(arrived), _day(arrived), size, "0" * 64)


def test_sort_criteria_reverse_and_the_implicit_mailbox_order() -> None:
    heads = {
        1: ("Bob <bob@x.example>", "b", "Wed, 3 Jan 2024 10:00:00 +0000"),
        2: ("Ann <ann@x.example>", "Re: A", "Tue, 2 Jan 2024 10:00:00 +0000"),
        3: ("zed@x.example", "a", ""),  # no Date: the internal date stands in (§2.2)
        4: ("Bob <bob@y.example>", "B", "Thu, 4 Jan 2024 10:00:00 +0100"),
    }
    infos = {}
    for uid, (sender, subject, date) in heads.items():
        raw = f"From: {sender}\r\nSubject: {subject}\r\n"
        raw += f"Date: {date}\r\n" if date else ""
        infos[uid] = parse_message((raw + "\r\nx\r\n").encode())
    records = {
        1: _record(1, 30, 9),
        2: _record(2, 10, 8),
        3: _record(3, 20, 1),
        4: _record(4, 10, 7),
    }

    def order(*keys: str) -> list[int]:
        criteria = [SortCriterion(k.removeprefix("-"), k.startswith("-")) for k in keys]
        return sort_uids([1, 2, 3, 4], criteria, records.__getitem__, infos)

    assert order("SUBJECT") == [2, 3, 1, 4]  # a, a, b, b: ties keep the mailbox order
    assert order("-SUBJECT") == [1, 4, 2, 3]  # REVERSE does not reverse the tie-break
    assert order("DATE") == [3, 2, 1, 4]
    assert order("ARRIVAL") == [3, 4, 2, 1]
    assert order("SIZE", "-ARRIVAL") == [2, 4, 3, 1]
    assert order("FROM") == [2, 1, 4, 3]  # the local part only: ann, bob, bob, zed
    assert order("DISPLAYFROM") == [2, 1, 4, 3]  # Ann, Bob, Bob, zed@x.example


def _message(uid: int, day: int, subject: str, mid: str = "", *refs: str) -> ThreadMessage:
    base = base_subject(subject)
    return ThreadMessage(uid, _day(day), casemap(base.text), base.reply_or_forward, mid, refs)


def test_references_threads_by_ids_then_by_subject() -> None:
    messages = [
        _message(1, 1, "Plan", "a"),
        _message(2, 3, "Re: Plan", "b", "a"),
        _message(3, 2, "Re: Plan", "c", "a", "b"),  # 1A keeps b under a; 1B puts 3 under b
        _message(4, 4, "Re: Lost", "d", "gone"),  # parent missing: a dummy, pruned (step 3)
        _message(5, 5, "Re: Lost", "e", "gone2"),  # same subject as 4: merged (step 5)
        _message(6, 6, "Solo"),  # no Message-ID: gets its own (1A)
        _message(7, 7, "Loop", "x", "x"),  # a reference to itself makes no loop
    ]
    result = thread_references(messages)
    assert thread(result) == b"* THREAD (1 2 3)((4)(5))(6)(7)\r\n"
    seq = {1: 10, 2: 20, 3: 30, 4: 40, 5: 50, 6: 60, 7: 70}
    assert thread(renumber(result, seq.__getitem__)).startswith(b"* THREAD (10 20 30)")


def test_references_dummy_parent_with_two_children_stays() -> None:
    messages = [_message(1, 2, "One", "a", "root"), _message(2, 1, "Two", "b", "root")]
    assert thread(thread_references(messages)) == b"* THREAD ((2)(1))\r\n"


def test_orderedsubject_has_no_grandchildren() -> None:
    messages = [
        _message(1, 5, "beta"),
        _message(2, 1, "Re: alpha"),
        _message(3, 3, "alpha"),
        _message(4, 2, "Fwd: ALPHA"),
        _message(5, 4, "Re: beta"),
    ]
    assert thread(thread_orderedsubject(messages)) == b"* THREAD (2 (4)(3))(5 1)\r\n"


def test_deflate_round_trip_and_bounded_inflation() -> None:
    server, client = Deflate(), Deflate(max_chunk=1000)
    wire = server.deflate(b"* OK hello\r\n")
    assert b"".join(client.inflate(wire)) == b"* OK hello\r\n"  # each write is complete
    bomb = server.deflate(b"A" * 100_000)
    pieces = list(client.inflate(bomb))
    assert len(bomb) < 1000 and all(len(p) <= 1000 for p in pieces)
    assert b"".join(pieces) == b"A" * 100_000
    with pytest.raises(CompressionError):
        list(Deflate().inflate(b"\xff\xff\xff\xff"))
