"""RFC 7352 duplicate: which id a test tracks, what it answers from the keys delivery read,
and which keys a run hands back to record."""

from __future__ import annotations

import pytest

from pillarbox.sieve import (
    FileInto,
    Keep,
    Outcome,
    SieveError,
    SieveMessage,
    Tracked,
    compile_script,
)
from pillarbox.sieve.duplicate import key

RAW = b"Message-ID: <one@example.net>\r\nList-Id: <dev.example.net>\r\nSubject: hi\r\n\r\nbody\r\n"


def run(script: str, seen: frozenset[str] = frozenset(), raw: bytes = RAW) -> Outcome:
    outcome = compile_script('require ["duplicate", "fileinto"];\n' + script).run(
        SieveMessage.from_bytes(raw, duplicates=seen)
    )
    assert outcome.error is None or outcome.actions == (Keep(),)
    return outcome


MESSAGE_ID = key("", "<one@example.net>")


def test_the_message_id_by_default() -> None:
    first = run('if duplicate { fileinto "Dups"; }')
    assert first.actions == (Keep(),)
    assert first.duplicates == (Tracked(MESSAGE_ID),)
    again = run('if duplicate { fileinto "Dups"; }', frozenset({MESSAGE_ID}))
    assert again.actions == (FileInto("Dups"),)
    assert again.duplicates == ()  # seen, without :last: the expiry stays (§3.3)


def test_last_refreshes_the_expiry_and_seconds_are_handed_over() -> None:
    outcome = run('if duplicate :last :seconds 60 { fileinto "Dups"; }', frozenset({MESSAGE_ID}))
    assert outcome.actions == (FileInto("Dups"),)
    assert outcome.duplicates == (Tracked(MESSAGE_ID, 60),)


def test_header_uniqueid_and_handle_name_other_ids() -> None:
    outcome = run(
        'if duplicate :header "list-id" {}\n'
        'if duplicate :uniqueid "x" :handle "h" {}\n'
        'if duplicate :uniqueid "x" {}\n'
    )
    assert outcome.duplicates == (
        Tracked(key("", "<dev.example.net>")),
        Tracked(key("h", "x")),
        Tracked(key("", "x")),
    )
    assert key("a", "bc") != key("ab", "c")  # counted, not concatenated


def test_a_missing_header_is_false_and_tracks_nothing() -> None:
    outcome = run('if duplicate :header "x-none" { fileinto "Dups"; }')
    assert outcome.actions == (Keep(),) and outcome.duplicates == ()
    no_id = run('if duplicate { fileinto "Dups"; }', raw=b"Subject: hi\r\n\r\nbody\r\n")
    assert no_id.duplicates == ()


def test_a_second_test_in_the_run_answers_as_the_first() -> None:
    outcome = run('if duplicate {} if duplicate { fileinto "Dups"; }')
    assert outcome.actions == (Keep(),)
    assert outcome.duplicates == (Tracked(MESSAGE_ID),)


def test_a_failed_run_records_nothing() -> None:
    """§3.1: only a run that finishes updates the tracking."""
    outcome = compile_script('require ["duplicate", "ihave"]; if duplicate {} error "no";').run(
        SieveMessage.from_bytes(RAW)
    )
    assert outcome.error is not None and outcome.duplicates == ()


@pytest.mark.parametrize(
    "script",
    [
        'if duplicate :header "a" :uniqueid "b" {}',
        'if duplicate :seconds "5" {}',
        'if duplicate "x" {}',
    ],
)
def test_compile_errors(script: str) -> None:
    with pytest.raises(SieveError):
        compile_script('require "duplicate"; ' + script)
    with pytest.raises(SieveError, match="duplicate"):
        compile_script("if duplicate {}")
