"""RFC 9394 PARTIAL as a table: which positions a range names in a result, from the first or
(negative) from the last, and what ``$`` keeps after SEARCH RETURN (SAVE …)."""

from __future__ import annotations

import pytest

from pillarbox.imap.session import _saved_result, partial_window

TEN = list(range(101, 111))


@pytest.mark.parametrize(
    ("partial", "window"),
    [
        ((1, 3), [101, 102, 103]),
        ((9, 12), [109, 110]),  # past the end: fewer
        ((11, 20), []),  # wholly past it: none, not an error
        ((-1, -1), [110]),
        ((-1, -3), [108, 109, 110]),  # the last three, still ascending
        ((3, 1), [101, 102, 103]),  # §3.1: "500:400 is the same as 400:500"
        ((-3, -1), [108, 109, 110]),
        ((-9, -12), [101, 102]),  # past the start: fewer
        ((-11, -20), []),
        ((1, 4294967295), TEN),
        ((-1, -4294967295), TEN),
    ],
)
def test_partial_window(partial: tuple[int, int], window: list[int]) -> None:
    assert partial_window(TEN, partial) == window


def test_partial_window_of_an_empty_result() -> None:
    assert partial_window([], (1, 5)) == [] == partial_window([], (-1, -5))


@pytest.mark.parametrize(
    ("shown", "partial", "saved"),
    [
        (frozenset(), None, TEN),  # RETURN (SAVE): the whole result
        (frozenset({"COUNT"}), (1, 2), TEN),  # RFC 9394 §3.2: with COUNT, all found
        (frozenset({"COUNT", "MIN"}), (1, 2), TEN),
        (frozenset(), (-1, -2), [109, 110]),  # §3.2: PARTIAL alone, what PARTIAL returned
        (frozenset({"MIN"}), (-1, -2), [101, 109, 110]),  # §3.2: and the MIN message
        (frozenset({"MIN", "MAX"}), (2, 3), [101, 102, 103, 110]),  # and both
        (frozenset({"MIN", "MAX"}), None, [101, 110]),
        (frozenset({"MAX"}), (20, 30), [110]),
    ],
)
def test_saved_result(
    shown: frozenset[str], partial: tuple[int, int] | None, saved: list[int]
) -> None:
    assert _saved_result(TEN, shown, partial) == saved
