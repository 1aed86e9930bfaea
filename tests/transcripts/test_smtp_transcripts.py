"""Every SMTP transcript replayed on the sans-I/O core, whole and byte by byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from pillarbox.testing.transcript import (
    TranscriptMismatch,
    match_line,
    parse_transcript,
    run_on_core,
)

FILES = sorted((Path(__file__).parent / "smtp").glob("*.txt"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
@pytest.mark.parametrize("chunk_size", [None, 1], ids=["whole", "bytewise"])
def test_transcript(path: Path, chunk_size: int | None) -> None:
    run_on_core(parse_transcript(path.read_text("utf-8"), path.stem), chunk_size=chunk_size)


def test_every_transcript_checks_something() -> None:
    assert len(FILES) >= 20
    for path in FILES:
        transcript = parse_transcript(path.read_text("utf-8"), path.stem)
        assert any(step.expect for step in transcript.steps), path


def test_runner_detects_a_wrong_reply() -> None:
    transcript = parse_transcript("S: 220 *\nC: NOOP\nS: 500 *\n", "wrong")
    with pytest.raises(TranscriptMismatch, match="expected '500 \\*'"):
        run_on_core(transcript)


def test_runner_detects_unexpected_output() -> None:
    with pytest.raises(TranscriptMismatch, match="unexpected output"):
        run_on_core(parse_transcript("S: 220 *\nC: NOOP\n", "extra"))


def test_runner_detects_a_wrong_message() -> None:
    text = (
        "S: 220 *\nC: HELO c\nS: 250 *\nC: MAIL FROM:<a@b>\nS: 250 *\nC: RCPT TO:<c@d>\n"
        "S: 250 *\nC: DATA\nS: 354 *\nC: x\nC: .\nS: 250 *\nM> y\\r\\n\n"
    )
    with pytest.raises(TranscriptMismatch, match="message"):
        run_on_core(parse_transcript(text, "message"))


@pytest.mark.parametrize(
    ("pattern", "line", "matches"),
    [
        ("250 *", "250 2.0.0 OK", True),
        ("250-*", "250 DSN", False),
        ("354 end data with <CR><LF>.<CR><LF>", "354 end data with <CR><LF>.<CR><LF>", True),
        ("550 5.1.1 [x]", "550 5.1.1 x", False),
    ],
)
def test_match_line(pattern: str, line: str, matches: bool) -> None:
    assert match_line(pattern, line) is matches
