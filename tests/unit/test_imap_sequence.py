"""Sequence sets (RFC 9051 §9, RFC 5182 ``$``)."""

from __future__ import annotations

import pytest

from pillarbox.imap.errors import ParseError
from pillarbox.imap.sequence import LAST_RESULT, STAR, NumberSet, SequenceSet


def test_parse_and_format() -> None:
    parsed = SequenceSet.parse(b"2,4:7,9,12:*")
    assert parsed.ranges == ((2, 2), (4, 7), (9, 9), (12, STAR))
    assert str(parsed) == "2,4:7,9,12:*"
    assert SequenceSet.parse("$") is LAST_RESULT
    assert LAST_RESULT.format() == b"$"


def test_rfc_examples_resolve() -> None:
    # RFC 9051 §9: 2,4:7,9,12:* over 15 messages.
    resolved = SequenceSet.parse("2,4:7,9,12:*").resolve(15)
    assert list(resolved) == [2, 4, 5, 6, 7, 9, 12, 13, 14, 15]
    # *:4,5:7 over 10 messages is 4..10; reversed ranges are the same set.
    assert list(SequenceSet.parse("*:4,5:7").resolve(10)) == [4, 5, 6, 7, 8, 9, 10]
    # 3291:* includes the last UID even when it is below 3291.
    assert list(SequenceSet.parse("3291:*").resolve(3000)) == [3000]


def test_resolution_clips_and_is_cheap() -> None:
    everything = SequenceSet.parse("1:4294967295").resolve(35_000)
    assert len(everything) == 35_000
    assert everything.intervals == ((1, 35_000),)
    assert 35_000 in everything
    assert 35_001 not in everything
    assert not SequenceSet.parse("*").resolve(0)


def test_membership_and_select() -> None:
    numbers = SequenceSet.parse("1:3,10,20:25").resolve(100)
    assert [n for n in range(30) if n in numbers] == [1, 2, 3, 10, 20, 21, 22, 23, 24, 25]
    assert numbers.select([2, 5, 10, 11, 24, 99]) == [2, 10, 24]
    assert (numbers.min(), numbers.max(), len(numbers)) == (1, 25, 10)


def test_from_numbers_compacts() -> None:
    assert str(SequenceSet.from_numbers([5, 1, 2, 3, 9, 10, 3])) == "1:3,5,9:10"
    with pytest.raises(ValueError, match="at least one"):
        SequenceSet.from_numbers([])
    assert NumberSet.from_intervals([(5, 6), (1, 4)]).to_sequence_set() == SequenceSet(((1, 6),))


def test_explicit_max_and_star() -> None:
    parsed = SequenceSet.parse("1:5,*,9")
    assert parsed.explicit_max() == 9
    assert parsed.uses_star()
    assert not SequenceSet.parse("3:4").uses_star()


@pytest.mark.parametrize(
    "text", ["", "0", "1:", ":2", "1,,2", "01", "1:0", "$,1", "a", "4294967296"]
)
def test_invalid(text: str) -> None:
    with pytest.raises(ParseError):
        SequenceSet.parse(text)


def test_saved_result_cannot_be_resolved_here() -> None:
    with pytest.raises(ValueError, match="session"):
        LAST_RESULT.resolve(10)
