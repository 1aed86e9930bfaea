"""Backend-neutral pieces of the mailbox ACL tables (``mailbox_acl``, RFC 4314): the rights
letters a store keeps, and the union of a user's entries on one mailbox."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from pillarbox.store.types import Mailbox, SharedMailbox

#: RFC 4314 §2.1: the standard rights, in the order ACL and MYRIGHTS responses list them.
STORED_RIGHTS: Final = "lrswipkxtea"


def canonical_rights(rights: Iterable[str]) -> str:
    """``rights`` as stored: each standard letter once, in :data:`STORED_RIGHTS` order
    (anything else — the IMAP layer validated and mapped it — is dropped)."""
    given = set(rights)
    return "".join(letter for letter in STORED_RIGHTS if letter in given)


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


def merge_shared(rows: Iterable[tuple[Mailbox, str, str]]) -> list[SharedMailbox]:
    """Rows of (mailbox, owner address, rights of one entry), possibly several per mailbox
    (the user's own entry, "anyone", "authenticated"), as one :class:`SharedMailbox` per
    mailbox with the union of the rights, ordered by owner then mailbox name."""
    merged: dict[int, tuple[Mailbox, str, set[str]]] = {}
    for mailbox, owner, rights in rows:
        known = merged.setdefault(mailbox.id, (mailbox, owner, set()))
        known[2].update(rights)
    shared = [
        SharedMailbox(mailbox, owner, canonical_rights(rights))
        for mailbox, owner, rights in merged.values()
    ]
    shared.sort(key=lambda s: (s.owner, s.mailbox.name))
    return [s for s in shared if s.rights]
