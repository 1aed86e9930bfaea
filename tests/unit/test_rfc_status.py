"""docs/rfc-status.md speaks one vocabulary: its opening paragraph defines "implemented",
"partial" and "not", and every row's status is one of them (a reader filters on the word)."""

from __future__ import annotations

from pathlib import Path

STATUS_TABLE = Path(__file__).parents[2] / "docs" / "rfc-status.md"
WORDS = {"implemented", "partial", "not"}


def rows() -> list[list[str]]:
    cells = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in STATUS_TABLE.read_text().splitlines()
        if line.startswith("|")
    ]
    # Not the header, its rule, nor the bold area rows.
    return [row for row in cells[2:] if not row[0].startswith("**")]


def test_every_row_uses_a_defined_status_word() -> None:
    table = rows()
    assert len(table) > 100
    assert [(row[0], row[2]) for row in table if row[2] not in WORDS] == []
