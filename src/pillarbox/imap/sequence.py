"""Sequence sets (RFC 9051 §9 ``sequence-set``, RFC 5182 ``$``): parse, format, resolve.

A :class:`SequenceSet` is what the client wrote: ranges in the order given, either end possibly
``*`` (:data:`STAR`), or the saved search result ``$``. It only means numbers once resolved
against the mailbox: :meth:`SequenceSet.resolve` gives a :class:`NumberSet`, sorted disjoint
intervals with O(log n) membership, iteration and a length — never a materialised list, so
``1:4294967295`` costs two integers.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from pillarbox.imap.errors import ParseError

#: Stands for ``*`` in a range end: no nz-number is 0 (RFC 9051 §9 seq-number).
STAR: Final = 0
#: nz-number is an unsigned 32-bit integer (RFC 9051 §9).
MAX_NUMBER: Final = 0xFFFF_FFFF


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """``ranges`` as written, each ``(first, last)`` (a single number is ``(n, n)``).

    ``saved`` is the RFC 5182 ``$`` marker ("the result of the last SEARCH ... SAVE"); it stands
    alone (``seq-last-command``), so ``ranges`` is then empty.
    """

    ranges: tuple[tuple[int, int], ...]
    saved: bool = False

    def __post_init__(self) -> None:
        if self.saved:
            if self.ranges:
                raise ValueError("'$' cannot be combined with other ranges")
            return
        if not self.ranges:
            raise ValueError("a sequence set needs at least one number")
        for first, last in self.ranges:
            if not (0 <= first <= MAX_NUMBER and 0 <= last <= MAX_NUMBER):
                raise ValueError(f"sequence number out of range: {first}:{last}")

    @classmethod
    def parse(cls, text: bytes | str) -> SequenceSet:
        """Parse RFC 9051 ``sequence-set`` (or ``$``); raise :class:`ParseError` if malformed."""
        raw = text.decode("ascii", "replace") if isinstance(text, bytes) else text
        if raw == "$":
            return LAST_RESULT
        ranges: list[tuple[int, int]] = []
        for item in raw.split(","):
            first, colon, last = item.partition(":")
            start = _seq_number(first)
            ranges.append((start, _seq_number(last) if colon else start))
        return cls(tuple(ranges))

    @classmethod
    def from_numbers(cls, numbers: Iterable[int]) -> SequenceSet:
        """The most compact set of ascending ranges covering ``numbers`` (for COPYUID, VANISHED,
        ESEARCH ALL, MODIFIED); ``numbers`` need not be sorted and may repeat."""
        ordered = sorted(set(numbers))
        if not ordered:
            raise ValueError("a sequence set needs at least one number")
        ranges: list[tuple[int, int]] = []
        start = prev = ordered[0]
        for number in ordered[1:]:
            if number != prev + 1:
                ranges.append((start, prev))
                start = number
            prev = number
        ranges.append((start, prev))
        return cls(tuple(ranges))

    def format(self) -> bytes:
        return str(self).encode("ascii")

    def __str__(self) -> str:
        if self.saved:
            return "$"
        return ",".join(
            _number_text(first) if first == last else f"{_number_text(first)}:{_number_text(last)}"
            for first, last in self.ranges
        )

    def explicit_max(self) -> int:
        """The largest number written out (``*`` ignored), 0 if none.

        RFC 9051 §9 seq-number: a message sequence number above the mailbox size gets BAD; the
        session compares this with EXISTS (``*`` on an empty mailbox is its own check)."""
        return max((max(first, last) for first, last in self.ranges), default=0)

    def uses_star(self) -> bool:
        return any(STAR in pair for pair in self.ranges)

    def resolve(self, largest: int) -> NumberSet:
        """The numbers meant, with ``*`` = ``largest``, clipped to ``1..largest``.

        Clipping is exact for sequence numbers (nothing exists above EXISTS) and for UIDs when
        ``largest`` is the highest UID in use: ``3291:*`` then includes it even if below 3291
        (RFC 9051 §9 seq-range). A saved set (``$``) cannot be resolved here: the session holds
        the saved result.
        """
        if self.saved:
            raise ValueError("'$' is resolved by the session's saved search result")
        intervals: list[tuple[int, int]] = []
        for first, last in self.ranges:
            low = largest if first == STAR else first
            high = largest if last == STAR else last
            if low > high:
                low, high = high, low
            low = max(low, 1)
            high = min(high, largest)
            if low <= high:
                intervals.append((low, high))
        return NumberSet.from_intervals(intervals)


#: RFC 5182 ``$``.
LAST_RESULT: Final = SequenceSet((), saved=True)


def _seq_number(text: str) -> int:
    if text == "*":
        return STAR
    if not text or not text.isascii() or not text.isdigit() or text[0] == "0":
        raise ParseError(f"invalid sequence number {text!r}")
    if len(text) > 10 or int(text) > MAX_NUMBER:
        raise ParseError(f"sequence number {text} exceeds 32 bits")
    return int(text)


def _number_text(number: int) -> str:
    return "*" if number == STAR else str(number)


class NumberSet:
    """Sorted, disjoint, non-adjacent inclusive intervals of positive integers."""

    __slots__ = ("_ends", "_starts")

    def __init__(self, starts: list[int], ends: list[int]) -> None:
        self._starts = starts
        self._ends = ends

    @classmethod
    def from_intervals(cls, intervals: Iterable[tuple[int, int]]) -> NumberSet:
        starts: list[int] = []
        ends: list[int] = []
        for low, high in sorted(intervals):
            if starts and low <= ends[-1] + 1:
                ends[-1] = max(ends[-1], high)
            else:
                starts.append(low)
                ends.append(high)
        return cls(starts, ends)

    @property
    def intervals(self) -> tuple[tuple[int, int], ...]:
        return tuple(zip(self._starts, self._ends, strict=True))

    def __contains__(self, number: object) -> bool:
        if not isinstance(number, int):
            return False
        index = bisect.bisect_right(self._starts, number) - 1
        return index >= 0 and number <= self._ends[index]

    def __iter__(self) -> Iterator[int]:
        for low, high in zip(self._starts, self._ends, strict=True):
            yield from range(low, high + 1)

    def __len__(self) -> int:
        return sum(high - low + 1 for low, high in zip(self._starts, self._ends, strict=True))

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NumberSet):
            return NotImplemented
        return self._starts == other._starts and self._ends == other._ends

    def __hash__(self) -> int:
        return hash(self.intervals)

    def __repr__(self) -> str:
        return f"NumberSet({self.intervals!r})"

    def min(self) -> int:
        """Smallest member; ``ValueError`` if empty."""
        if not self._starts:
            raise ValueError("empty set")
        return self._starts[0]

    def max(self) -> int:
        """Largest member; ``ValueError`` if empty."""
        if not self._ends:
            raise ValueError("empty set")
        return self._ends[-1]

    def select(self, sorted_numbers: list[int]) -> list[int]:
        """The members of ``sorted_numbers`` (ascending, e.g. a mailbox's UIDs) in this set.

        Cost is O(intervals × log n + matches): a ``1:*`` over 35,000 UIDs is one slice.
        """
        selected: list[int] = []
        for low, high in zip(self._starts, self._ends, strict=True):
            left = bisect.bisect_left(sorted_numbers, low)
            right = bisect.bisect_right(sorted_numbers, high)
            selected.extend(sorted_numbers[left:right])
        return selected

    def to_sequence_set(self) -> SequenceSet:
        """The compact wire form; ``ValueError`` if empty (IMAP has no empty sequence set)."""
        return SequenceSet(self.intervals)
