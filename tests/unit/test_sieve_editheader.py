"""The Sieve "editheader" extension (RFC 5293): addheader (:last), deleteheader (:index,
:last, match types, comparators, value patterns), what later tests see, the edited message
handed to delivery, protected fields and the limits."""

from __future__ import annotations

import pytest

from pillarbox.mail.parse import parse_message
from pillarbox.sieve import (
    EXTENSIONS,
    FileInto,
    Keep,
    Outcome,
    RunLimits,
    SieveError,
    SieveMessage,
    compile_script,
)

RAW = (
    b"Received: from a.example by mx.example; Sun, 1 Jun 2025 10:00:00 +0000\r\n"
    b"Auto-Submitted: auto-replied\r\n"
    b"From: Ken <ken@example.org>\r\n"
    b"X-Tag: one\r\n"
    b"Subject: weekly report\r\n"
    b"X-Tag: two\r\n"
    b"X-Tag: three\r\n"
    b"\r\n"
    b"Body text.\r\n"
)
HEAD = 'require ["editheader", "fileinto", "variables", "relational"];\n'


def run(script: str, raw: bytes = RAW, limits: RunLimits | None = None) -> Outcome:
    return compile_script(HEAD + script).run(SieveMessage.from_bytes(raw), limits)


def header(outcome: Outcome) -> list[bytes]:
    assert outcome.error is None, outcome.error
    assert outcome.message is not None
    head, _, body = outcome.message.partition(b"\r\n\r\n")
    assert body == b"Body text.\r\n"
    return head.split(b"\r\n")


def test_editheader_is_advertised() -> None:
    assert "editheader" in EXTENSIONS


def test_nothing_edited_hands_back_no_message() -> None:
    assert run('if true { fileinto "x"; }').message is None


def test_addheader_goes_first_or_last() -> None:
    lines = header(run('addheader "X-First" "1"; addheader :last "X-Last" "2";'))
    assert lines[0] == b"X-First: 1"
    assert lines[-1] == b"X-Last: 2"
    assert lines[1:-1] == RAW.split(b"\r\n\r\n")[0].split(b"\r\n")  # the rest byte for byte


def test_later_tests_see_the_edits() -> None:
    outcome = run(
        'addheader "X-Score" "7";'
        'if header :is "x-score" "7" { fileinto "added"; }'
        'deleteheader "x-tag";'
        'if not exists "x-tag" { fileinto "deleted"; }'
        'if header :count "eq" "x-score" "1" { fileinto "counted"; }'
    )
    assert [a.mailbox for a in outcome.actions if isinstance(a, FileInto)] == [
        "added",
        "deleted",
        "counted",
    ]


@pytest.mark.parametrize(
    ("command", "left"),
    [
        ('deleteheader "X-Tag";', []),
        ('deleteheader :index 1 "x-tag";', [b"two", b"three"]),
        ('deleteheader :index 2 :last "x-tag";', [b"one", b"three"]),
        ('deleteheader :index 4 "x-tag";', [b"one", b"two", b"three"]),
        ('deleteheader "x-tag" "TWO";', [b"one", b"three"]),
        ('deleteheader :comparator "i;octet" "x-tag" "TWO";', [b"one", b"two", b"three"]),
        ('deleteheader :contains "x-tag" ["o", "x"];', [b"three"]),
        ('deleteheader :matches "x-tag" "t*";', [b"one"]),
        # §5: the :index'th field is the only candidate, then the patterns
        ('deleteheader :index 1 :matches "x-tag" "t*";', [b"one", b"two", b"three"]),
        ('deleteheader :index 1 :last :matches "x-tag" "t*";', [b"one", b"two"]),
        ('deleteheader :value "gt" "x-tag" "three";', [b"one", b"three"]),
    ],
)
def test_deleteheader(command: str, left: list[bytes]) -> None:
    lines = header(run(command + 'addheader :last "X-End" "e";'))
    assert [line.partition(b": ")[2] for line in lines if line.startswith(b"X-Tag")] == left


def test_protected_fields_are_not_deleted() -> None:
    """RFC 5293 §6 and Pigeonhole: Received and Auto-Submitted stay; adding is allowed."""
    outcome = run(
        'deleteheader "received"; deleteheader "Auto-Submitted";'
        'addheader "Auto-Submitted" "no";'
        'if header :count "eq" "received" "1" { fileinto "kept"; }'
    )
    lines = header(outcome)
    assert lines[0] == b"Auto-Submitted: no"
    assert lines[1].startswith(b"Received: ") and lines[2] == b"Auto-Submitted: auto-replied"
    assert outcome.actions == (FileInto("kept"),)


def test_values_are_encoded_and_folded() -> None:
    long_value = " ".join(["word"] * 40)
    outcome = run(
        f'addheader "X-Long" "{long_value}"; addheader "X-Utf" "Café ☕";'
        'addheader "X-Broken" "a\r\nInjected: yes";'
        'if header :is "x-utf" "Café ☕" { fileinto "decoded"; }'
    )
    assert outcome.message is not None
    info = parse_message(outcome.message)
    message = SieveMessage.from_bytes(outcome.message)
    assert list(message.header_values("x-long")) == [long_value]
    assert list(message.header_values("x-broken")) == ["a Injected: yes"]
    assert not message.exists("injected")
    assert outcome.message.isascii()  # RFC 2047, RFC 5293 §4
    assert all(len(line) <= 78 for line in outcome.message.split(b"\r\n"))
    assert outcome.actions == (FileInto("decoded"),)
    assert info.body.body_start == outcome.message.index(b"\r\n\r\n") + 4


def test_size_test_sees_the_edited_size() -> None:
    small = len(RAW)
    outcome = run(
        f'addheader "X-Pad" "{"x" * 100}"; if size :over {small + 50} {{ fileinto "big"; }}'
    )
    assert outcome.actions == (FileInto("big"),)


@pytest.mark.parametrize(
    ("script", "error"),
    [
        ('set "n" "Bad Name"; addheader "${n}" "x";', "invalid header field name"),
        ('set "n" "a:b"; deleteheader "${n}";', "invalid header field name"),
        (f'addheader "X-Big" "{"y" * 3000}";', "larger than 2048 octets"),
        (f'addheader "X-Word" "{"z" * 1200}";', "longer than a line"),
    ],
)
def test_runtime_errors_keep_the_message_unedited(script: str, error: str) -> None:
    outcome = run('addheader "X-Before" "1";' + script)
    assert outcome.actions == (Keep(),) and outcome.message is None
    assert outcome.error is not None and error in outcome.error


def test_max_header_size_comes_from_the_limits() -> None:
    assert run('addheader "X-A" "12345";', limits=RunLimits(max_header_size=10)).error is None
    outcome = run('addheader "X-A" "123456";', limits=RunLimits(max_header_size=10))
    assert outcome.error is not None and "larger than 10" in outcome.error


@pytest.mark.parametrize(
    ("script", "part"),
    [
        ('addheader "X-A" "b";', "needs require 'editheader'"),
        ('require "editheader"; addheader "X A" "b";', "invalid header field name"),
        ('require "editheader"; addheader "" "b";', "invalid header field name"),
        ('require "editheader"; addheader "X-A:" "b";', "invalid header field name"),
        ('require "editheader"; addheader "X-A";', "positional"),
        ('require "editheader"; addheader :index 1 "X-A" "b";', "unknown tag"),
        ('require "editheader"; addheader :last "X-A" "b";', None),
        ('require "editheader"; deleteheader "X-A";', None),
        ('require "editheader"; deleteheader "X-A" ["a", "b"];', None),
        ('require "editheader"; deleteheader :last "X-A";', ":last needs :index"),
        ('require "editheader"; deleteheader :index 0 "X-A";', "counts from 1"),
        ('require "editheader"; deleteheader :index 2 :last :contains "X-A" "b";', None),
        ('require "editheader"; deleteheader :is :contains "X-A" "b";', "exclude each other"),
        ('require "editheader"; deleteheader :comparator "i;bogus" "X-A";', "unsupported"),
        ('require "editheader"; deleteheader "X-A" "b" "c";', "positional"),
        ('require ["editheader", "variables"]; addheader "${n}" "b";', None),
    ],
)
def test_compile_checks(script: str, part: str | None) -> None:
    if part is None:
        compile_script(script)
        return
    with pytest.raises(SieveError, match=part):
        compile_script(script)


DELIVERED = (
    b"Return-Path: <a@example.net>\r\n"
    b"Delivered-To: me@example.org\r\n"
    b"X-Pillarbox-Spam: score=1.0; action=accept\r\n"
    b"Received: from client.example by mx.example.org; Sun, 1 Jun 2025 10:00:00 +0000\r\n"
) + RAW


def test_the_fields_delivery_put_on_top_stay_there() -> None:
    """addheader adds below delivery's block, deleteheader leaves it, and its fields cannot be
    added (the web UI's verdict and spam learning trust that block)."""
    message = SieveMessage.from_bytes(DELIVERED, delivery_fields=4)
    outcome = compile_script(
        HEAD
        + 'addheader "X-Top" "t"; deleteheader "delivered-to"; deleteheader "x-pillarbox-spam";'
        'deleteheader "return-path"; addheader "X-Pillarbox-Spam" "score=-100";'
        'addheader :last "Authentication-Results" "mx.example.org; dkim=pass header.d=b.example";'
        'addheader "Delivered-To" "other@example.org"; addheader "Return-Path" "<x@y>";'
    ).run(message)
    lines = header(outcome)
    assert lines[:5] == [*DELIVERED.split(b"\r\n")[:4], b"X-Top: t"]
    assert sum(line.startswith(b"X-Pillarbox-Spam") for line in lines) == 1
    assert not any(line.startswith(b"Authentication-Results") for line in lines)
    assert sum(line.startswith(b"Delivered-To") for line in lines) == 1


def test_not_added_names_our_spam_field() -> None:
    from pillarbox.policy.verdict import SPAM_HEADER
    from pillarbox.sieve.editheader import NOT_ADDED

    assert SPAM_HEADER.lower() in NOT_ADDED
