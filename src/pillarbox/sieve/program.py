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
#: A METADATA entry a test reads (RFC 5490 §3.3–§3.6): (the mailbox, None for the server's
#: entries; the entry name).
MetadataKey = tuple[str | None, str]
#: The tests that read entries, with whether they name a mailbox (the first argument).
METADATA_TESTS = {
    "metadata": True,
    "metadataexists": True,
    "servermetadata": False,
    "servermetadataexists": False,
}


@dataclass(frozen=True, slots=True)
class Match:
    """How a test compares (RFC 5228 §2.7): match type, comparator, address part."""

    #: "is", "contains", "matches", "value", "count" or "regex".
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


def metadata_targets(nodes: tuple[Node, ...]) -> frozenset[MetadataKey] | None:
    """The entries the metadata tests of ``nodes`` name, as written (delivery reads only
    those); None when a mailbox or entry name refers to a variable (``${`` in it): known
    only when the script runs, so every entry of the account may be asked for."""
    found: set[MetadataKey] = set()
    pending = list(nodes)
    while pending:
        node = pending.pop()
        pending.extend(node.tests)
        for test, block in node.branches:
            pending.extend(block)
            if test is not None:
                pending.append(test)
        named = METADATA_TESTS.get(node.name)
        if named is None:
            continue
        mailbox = node.string(0) if named else None
        names = node.strings(1 if named else 0)
        if any("${" in s for s in (*names, mailbox or "")):
            return None
        found.update((mailbox, name) for name in names)
    return frozenset(found)
