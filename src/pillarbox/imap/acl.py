"""IMAP ACL (RFC 4314) rights and the other users' namespace (RFC 2342 §5) — the pure part.

Decisions (docs/shared-mailboxes.md says them to users):

- **Rights.** The RFC 4314 §2.1 set ``lrswipkxtea``; ``RIGHTS=texk`` (§2.1.1's extra rights).
  The obsolete "c" and "d" (§2.1.1) take the first reading, as the RFC's own examples do
  (``+cda`` gives ``…cdakxet``): "c" is "k" and "x", "d" is "e" and "t". Either is added to
  every rights list that holds one of its members.
- **Owner.** A mailbox's owner has every right, always (§2: an implicit, unremovable entry);
  GETACL shows it first, SETACL on the owner is refused.
- **Identifiers.** Account addresses of this server, and ``anyone``/``authenticated`` (the
  same thing here: every IMAP user has logged in; there are no groups). Each may also have a
  negative entry (``-address``, ``-anyone``; §2), kept beside its positive one: a user's
  rights are the union of the positive entries naming them, "anyone" and "authenticated",
  less the union of the negative ones (``aclrows.effective_rights``, the one computation,
  used by IMAP, the webmail and the stores). The owner's rights are not taken: SETACL on
  ``-owner`` is refused as on the owner.
- **Namespace.** Another user's mailbox appears as ``Other Users/<address>/<name>`` (the
  prefix Cyrus uses and Dovecot's documentation shows), advertised in NAMESPACE. A personal
  mailbox cannot be called ``Other Users`` or live below it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pillarbox.store.aclrows import STORED_RIGHTS, canonical_rights
from pillarbox.store.types import DELIMITER

#: RFC 2342 §5 prefix of the "Other Users' Namespace".
OTHER_USERS: Final = "Other Users"
OTHER_PREFIX: Final = OTHER_USERS + DELIMITER
#: Every right; what an owner has (RFC 4314 §2).
ALL_RIGHTS: Final = frozenset(STORED_RIGHTS)
#: RFC 4314 §2.1.1, the reading of its examples: "c" is "kx", "d" is "et".
_VIRTUAL: Final = {"c": "kx", "d": "et"}
#: RFC 4314 §5.1.1: the rights beyond RFC 2086's, advertised as RIGHTS=texk.
RIGHTS_CAPABILITY: Final = "RIGHTS=texk"
#: RFC 4314 §3.7: what LISTRIGHTS offers a grantee (nothing required; each right, and the
#: virtual ones, grantable alone — §2.1.1 asks for "c" and "d" by themselves).
GRANTABLE: Final = (*STORED_RIGHTS, "c", "d")


class BadRights(ValueError):
    """A SETACL rights string with a character that is no right (RFC 4314 §3.1: BAD)."""


@dataclass(frozen=True, slots=True)
class RightsChange:
    """A parsed SETACL third argument: "+" adds, "-" removes, neither replaces (§3.1)."""

    mode: str  # "+", "-" or "=": applied by the store (``aclrows.changed_rights``)
    rights: frozenset[str]


def parse_rights(text: str) -> RightsChange:
    """RFC 4314 §3.1; "c" and "d" expand to their members (§2.1.1)."""
    mode = "="
    if text[:1] in ("+", "-"):
        mode, text = text[0], text[1:]
    rights: set[str] = set()
    for letter in text:
        if letter in _VIRTUAL:
            rights.update(_VIRTUAL[letter])
        elif letter in ALL_RIGHTS:
            rights.add(letter)
        else:
            raise BadRights(letter)
    return RightsChange(mode, frozenset(rights))


def format_rights(rights: frozenset[str] | str) -> str:
    """Rights as ACL and MYRIGHTS responses show them: §2.1 order, then "c" and "d" when one
    of their members is there (§2.1.1)."""
    given = set(rights)
    text = canonical_rights(given)
    for virtual, members in _VIRTUAL.items():
        if given & set(members):
            text += virtual
    return text


def split_negative(identifier: str) -> tuple[str, bool]:
    """RFC 4314 §2: ``-identifier`` names the identifier's negative entry → (identifier,
    True); any other → (identifier, False)."""
    if identifier.startswith("-"):
        return identifier[1:], True
    return identifier, False


def is_special(identifier: str) -> bool:
    return identifier.lower() in ("anyone", "authenticated")


def is_other_users(name: str) -> bool:
    """Whether a mailbox name lies in the other users' namespace (or is its root)."""
    return name == OTHER_USERS or name.startswith(OTHER_PREFIX)


def split_shared(name: str) -> tuple[str, str] | None:
    """``Other Users/<address>/<mailbox>`` → (address, mailbox); None when either is missing."""
    if not name.startswith(OTHER_PREFIX):
        return None
    owner, sep, mailbox = name[len(OTHER_PREFIX) :].partition(DELIMITER)
    if not owner or not sep or not mailbox:
        return None
    return owner, mailbox


def shared_name(owner: str, mailbox: str) -> str:
    return f"{OTHER_PREFIX}{owner}{DELIMITER}{mailbox}"
