"""LIST and LSUB: which names match, with which attributes (RFC 9051 §6.3.9, RFC 5258,
RFC 6154, RFC 3348, RFC 3501 §6.3.9).

Pure functions over the account's mailboxes and subscriptions; the session turns the result
into ``* LIST``/``* LSUB`` lines (and ``* STATUS`` for LIST-STATUS).

- Wildcards: ``*`` matches anything, ``%`` anything but the hierarchy delimiter (§6.3.9). The
  reference and the pattern are joined before matching. A first level spelling INBOX in any
  case means INBOX (RFC 9051 §5.1).
- The store creates every superior of a mailbox, so the hierarchy has no holes; \\Noselect
  only appears for the empty-pattern delimiter query, for LSUB's implied parents, and for the
  ``placeholders`` of the other users' namespace (RFC 2342 §5: ``Other Users`` and one level
  per owner; RFC 4314 §4: a mailbox without "l" is as absent as one that does not exist).
- \\HasChildren/\\HasNoChildren (RFC 3348, RFC 5258 §4) and the special-use attributes
  (RFC 6154 §2) are always returned: RFC 5258 allows it, clients use them, they cost nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pillarbox.store.types import DELIMITER, INBOX, Mailbox

HAS_CHILDREN = "\\HasChildren"
HAS_NO_CHILDREN = "\\HasNoChildren"
SUBSCRIBED = "\\Subscribed"
NON_EXISTENT = "\\NonExistent"  # RFC 5258 §3.4; implies \Noselect
NOSELECT = "\\Noselect"


@dataclass(frozen=True, slots=True)
class ListEntry:
    name: str
    attributes: tuple[str, ...]
    #: RFC 5258 §3.5 CHILDINFO extended data (``("SUBSCRIBED",)``).
    childinfo: tuple[str, ...] = ()
    #: The mailbox, when it exists (LIST-STATUS reports only on these).
    mailbox: Mailbox | None = None


def pattern_regex(reference: str, pattern: str) -> re.Pattern[str]:
    """The compiled matcher of ``reference`` + ``pattern`` (RFC 9051 §6.3.9)."""
    full = reference + pattern
    first, sep, rest = full.partition(DELIMITER)
    if first.upper() == INBOX:
        full = INBOX + sep + rest
    parts = []
    for char in full:
        if char == "*":
            parts.append(".*")
        elif char == "%":
            parts.append(f"[^{re.escape(DELIMITER)}]*")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


def _ancestors(name: str) -> list[str]:
    levels = name.split(DELIMITER)
    return [DELIMITER.join(levels[:n]) for n in range(1, len(levels))]


def _order(name: str) -> tuple[bool, str]:
    return (name != INBOX and not name.startswith(INBOX + DELIMITER), name)


def list_mailboxes(
    mailboxes: Iterable[Mailbox],
    subscriptions: set[str],
    *,
    reference: str,
    patterns: Iterable[str],
    selection: frozenset[str] = frozenset(),
    return_options: frozenset[str] = frozenset(),
    placeholders: frozenset[str] = frozenset(),
) -> list[ListEntry]:
    """The LIST response entries, INBOX first, then by name."""
    existing = {box.name: box for box in mailboxes}
    parents = {ancestor for name in existing for ancestor in _ancestors(name)}
    matchers = [pattern_regex(reference, p) for p in patterns]

    def matches(name: str) -> bool:
        return any(m.fullmatch(name) for m in matchers)

    only_subscribed = "SUBSCRIBED" in selection
    show_subscribed = only_subscribed or "SUBSCRIBED" in return_options
    candidates = set(subscriptions) if only_subscribed else set(existing) | placeholders
    if "SPECIAL-USE" in selection:  # RFC 6154 §3: only mailboxes with a special use
        candidates = {n for n in candidates if n in existing and existing[n].special_use}
    entries: dict[str, ListEntry] = {}
    for name in candidates:
        if not matches(name):
            continue
        box = existing.get(name)
        attributes: list[str] = []
        if box is None and name in placeholders:
            attributes.extend((NOSELECT, HAS_CHILDREN))
        elif box is None:
            attributes.append(NON_EXISTENT)
        else:
            attributes.append(HAS_CHILDREN if name in parents else HAS_NO_CHILDREN)
            if box.special_use is not None:
                attributes.append(box.special_use.value)
        if show_subscribed and name in subscriptions:
            attributes.append(SUBSCRIBED)
        entries[name] = ListEntry(name, tuple(attributes), mailbox=box)
    if "RECURSIVEMATCH" in selection and only_subscribed:
        # RFC 5258 §3.5: a matching name with subscribed inferiors that do not match is
        # listed (with its own attributes) and CHILDINFO ("SUBSCRIBED").
        for name in subscriptions:
            if matches(name):
                continue
            for ancestor in _ancestors(name):
                if ancestor in entries or not matches(ancestor):
                    continue
                box = existing.get(ancestor)
                attributes = [NON_EXISTENT] if box is None else [HAS_CHILDREN]
                entries[ancestor] = ListEntry(
                    ancestor, tuple(attributes), childinfo=("SUBSCRIBED",), mailbox=box
                )
    return [entries[name] for name in sorted(entries, key=_order)]


def list_subscribed(
    subscriptions: set[str], existing: set[str], *, reference: str, pattern: str
) -> list[ListEntry]:
    """LSUB (RFC 3501 §6.3.9): subscribed names matching; a name that does not match but
    whose superior matches a ``%`` is represented by that superior with \\Noselect."""
    matcher = pattern_regex(reference, pattern)
    entries: dict[str, ListEntry] = {}
    for name in subscriptions:
        if matcher.fullmatch(name):
            attributes = () if name in existing else (NOSELECT,)
            entries[name] = ListEntry(name, attributes)
    for name in subscriptions:
        if name in entries:
            continue
        for ancestor in _ancestors(name):
            if ancestor not in entries and matcher.fullmatch(ancestor):
                entries[ancestor] = ListEntry(ancestor, (NOSELECT,))
    return [entries[name] for name in sorted(entries, key=_order)]
