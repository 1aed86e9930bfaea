"""A compiled script: validated commands in the shape the interpreter runs.

Arguments are resolved at compile time — tags by name, match type and comparator checked and
bundled in :class:`Match` — so a delivery only walks the tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

TagValue = tuple[str, ...] | int | bool
Positional = tuple[str, ...] | int
#: An ``include``'s target (RFC 6609 §3.2): ("personal" or "global", the script's name).
IncludeKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Match:
    """How a test compares (RFC 5228 §2.7): match type, comparator, address part."""

    #: "is", "contains", "matches", "value" or "count".
    kind: str = "is"
    comparator: str = "i;ascii-casemap"
    #: The RFC 5231 relational operator for :value and :count ("gt", "ge", …).
    relation: str = ""
    #: "all", "localpart", "domain", "user" or "detail".
    address_part: str = "all"


@dataclass(frozen=True, slots=True)
class Node:
    """A command or test. ``tags`` maps tag names (no colon) to their argument (True for a
    tag without one); ``args`` are the positional arguments; ``branches`` holds an ``if``'s
    (test, block) pairs with its elsif and else folded in (else has no test)."""

    name: str
    line: int
    tags: dict[str, TagValue] = field(default_factory=dict)
    args: tuple[Positional, ...] = ()
    tests: tuple[Node, ...] = ()
    branches: tuple[tuple[Node | None, tuple[Node, ...]], ...] = ()
    match: Match = Match()

    def strings(self, index: int) -> tuple[str, ...]:
        value = self.args[index]
        assert isinstance(value, tuple)
        return value

    def string(self, index: int) -> str:
        return self.strings(index)[0]

    def tag_strings(self, name: str) -> tuple[str, ...] | None:
        value = self.tags.get(name)
        return value if isinstance(value, tuple) else None

    def tag_number(self, name: str) -> int | None:
        value = self.tags.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None


class Compiled(Protocol):
    """A compiled script as the interpreter runs it (:class:`pillarbox.sieve.Script`)."""

    @property
    def requires(self) -> frozenset[str]: ...

    @property
    def commands(self) -> tuple[Node, ...]: ...


def include_targets(nodes: tuple[Node, ...]) -> frozenset[IncludeKey]:
    """The scripts ``nodes`` may include (RFC 6609 §3.2: names are constant strings), so
    delivery can fetch them before the run."""
    found: set[IncludeKey] = set()
    pending = list(nodes)
    while pending:
        node = pending.pop()
        if node.name == "include":
            found.add(("global" if "global" in node.tags else "personal", node.string(0)))
        for _, block in node.branches:
            pending.extend(block)
    return frozenset(found)
