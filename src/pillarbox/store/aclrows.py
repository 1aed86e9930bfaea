"""Backend-neutral pieces of the mailbox ACL tables (``mailbox_acl``, RFC 4314): the rights
letters a store keeps, and a user's rights from the entries on one mailbox.

A row holds one identifier's entries on one mailbox: ``rights`` its positive entry, ``denied``
its negative one (RFC 4314 §2, ``-identifier``); either may be empty, never both."""

from __future__ import annotations

from collections.abc import Container, Iterable
from typing import Final

from pillarbox.store.types import AclEntry, FlagOp, Mailbox, SharedMailbox

#: RFC 4314 §2.1: the standard rights, in the order ACL and MYRIGHTS responses list them.
STORED_RIGHTS: Final = "lrswipkxtea"


def canonical_rights(rights: Iterable[str]) -> str:
    """``rights`` as stored: each standard letter once, in :data:`STORED_RIGHTS` order
    (anything else — the IMAP layer validated and mapped it — is dropped)."""
    given = set(rights)
    return "".join(letter for letter in STORED_RIGHTS if letter in given)


def flag_right(flag: str) -> str:
    """RFC 4314 §4: the right that changes ``flag`` — "s" for \\Seen, "t" for \\Deleted, "w"
    for every other flag."""
    if flag == "\\Seen":
        return "s"
    if flag == "\\Deleted":
        return "t"
    return "w"


def allowed_flags(flags: frozenset[str], rights: Container[str]) -> frozenset[str]:
    """RFC 4314 §4 (COPY/APPEND): the flags the user may set on a new message; the others
    are dropped without failing the command."""
    return frozenset(flag for flag in flags if flag_right(flag) in rights)


def flags_after(
    current: frozenset[str], op: FlagOp, flags: frozenset[str], rights: str | None
) -> frozenset[str]:
    """A message's flags after STORE's ``op`` with ``flags`` (RFC 9051 §6.4.6). With
    ``rights`` (RFC 4314 §4), a flag those rights do not cover keeps its state: a replace by
    a user who may change only \\Seen sets or clears \\Seen and leaves every other flag."""
    if op is FlagOp.ADD:
        wanted = current | flags
    elif op is FlagOp.REMOVE:
        wanted = current - flags
    else:
        wanted = flags
    if rights is None:
        return wanted
    return frozenset(
        {flag for flag in wanted if flag_right(flag) in rights}
        | {flag for flag in current if flag_right(flag) not in rights}
    )


def changed_rights(current: str, rights: str, mode: str) -> str:
    """What an entry holds after SETACL's modification (RFC 4314 §3.1): "+" adds, "-"
    removes, "=" replaces."""
    if mode == "+":
        return canonical_rights(set(current) | set(rights))
    if mode == "-":
        return canonical_rights(set(current) - set(rights))
    if mode != "=":
        raise ValueError(f"unknown ACL modification {mode!r}")
    return canonical_rights(rights)


def effective_rights(entries: Iterable[tuple[str, bool]]) -> str:
    """RFC 4314 §2: a user's rights from the (rights, negative) entries that apply to them —
    the union of the positive entries' rights minus the union of the negative entries'. The one
    computation of rights from entries: IMAP, the webmail and both stores' sharing lists use it."""
    granted: set[str] = set()
    denied: set[str] = set()
    for rights, negative in entries:
        (denied if negative else granted).update(rights)
    return canonical_rights(granted - denied)


def changed_row(
    current: tuple[str, str] | None, rights: str, mode: str, negative: bool
) -> tuple[str, str]:
    """A row's (rights, denied) after SETACL changes its positive entry, or with ``negative``
    its negative one (:func:`changed_rights`); ("", "") means no entry is left."""
    granted, denied = current or ("", "")
    if negative:
        return granted, changed_rights(denied, rights, mode)
    return changed_rights(granted, rights, mode), denied


def acl_entries(rows: Iterable[tuple[str, str, str]]) -> list[AclEntry]:
    """Rows of (identifier, rights, denied), ordered by identifier, as the entries they hold:
    each identifier's positive entry, then its negative one."""
    return [
        AclEntry(identifier, letters, negative)
        for identifier, rights, denied in rows
        for letters, negative in ((rights, False), (denied, True))
        if letters
    ]


def merge_shared(rows: Iterable[tuple[Mailbox, str, str, str]]) -> list[SharedMailbox]:
    """Rows of (mailbox, owner address, granted rights, denied rights) of one stored entry,
    possibly several per mailbox (the user's own entry, "anyone", "authenticated"), as one
    :class:`SharedMailbox` per mailbox with :func:`effective_rights`, ordered by owner then
    mailbox name; a mailbox left with no right is not shared."""
    merged: dict[int, tuple[Mailbox, str, list[tuple[str, bool]]]] = {}
    for mailbox, owner, granted, denied in rows:
        known = merged.setdefault(mailbox.id, (mailbox, owner, []))
        known[2].extend(((granted, False), (denied, True)))
    shared = [
        SharedMailbox(mailbox, owner, effective_rights(entries))
        for mailbox, owner, entries in merged.values()
    ]
    shared.sort(key=lambda s: (s.owner, s.mailbox.name))
    return [s for s in shared if s.rights]
