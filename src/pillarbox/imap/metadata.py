"""METADATA (RFC 5464) entry names and what GETMETADATA returns, with RFC 6154 §4's
``/private/specialuse``.

Implementation notes:

- **Names** (§3.2): ``/`` + components, ASCII, no ``*`` or ``%``, no octet 0x00-0x19, no
  ``//``, no trailing ``/``, first component ``private`` or ``shared``; anything else is BAD
  in every command (§3.2). Names are case-insensitive and kept lowercase (as Dovecot), so a
  client reads back ``/private/comment`` whatever case it wrote. SETMETADATA also needs a
  name a value can have (§3.2): two components at least, four under ``/…/vendor/``.
  GETMETADATA accepts the bare ``/private`` and ``/shared`` too, whose DEPTH lists a scope.
- **Who owns what.** There are no ACLs (RFC 4314), so a personal mailbox's ``/private`` and
  ``/shared`` entries are both its owner's: two separate values, neither visible to anyone
  else (§3.3 asks no more of a mailbox only its owner can LIST). Server entries are kept per
  account too (as Dovecot keeps them with the user's INBOX), so one user's ``/shared/comment``
  never shows up for another; so NOPRIVATE never applies.
- **Computed, read-only entries** (§4.1): the server's ``/shared/admin`` (the administrator's
  contact URI, ``imap.metadata_admin``, §3.2.1.1) and a mailbox's ``/private/specialuse``
  (its special-use attribute as LIST shows it, RFC 6154 §4; set with CREATE (USE …)).
  Writing either is ``NO [NOPERM]``: RFC 6154 §4 only MAYs changing special uses this way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from pillarbox.imap import strings
from pillarbox.store.types import Mailbox

#: Longest entry name accepted (octets); RFC 5464 sets none, a bound keeps every read small.
MAX_NAME: Final = 1024
#: RFC 5464 §3.2.1.1: the server administrator's contact, a URI; always read-only.
ADMIN: Final = "/shared/admin"
#: RFC 6154 §4: a mailbox's special-use attributes as metadata.
SPECIALUSE: Final = "/private/specialuse"
#: RFC 5464 §3.2: the entries every user of a mailbox shares (all a grantee may read).
SHARED_PREFIX: Final = "/shared/"
#: RFC 5464 §4.2.2 DEPTH "infinity".
INFINITY: Final = None
#: RFC 5464 §3.2: 0x00-0x19, "*" and "%" are never part of a name; nor is non-ASCII.
_FORBIDDEN: Final = bytes(range(0x1A)) + b"*%"
_SCOPES: Final = ("private", "shared")


class BadEntry(ValueError):
    """An entry name RFC 5464 §3.2 does not allow: the command is BAD."""


def entry_name(raw: bytes, *, settable: bool = False) -> str:
    """The canonical (lowercase) form of an entry name, or :class:`BadEntry`.

    ``settable``: the name must be one a value can be given to (SETMETADATA)."""
    if (
        not raw
        or len(raw) > MAX_NAME
        or not raw.isascii()
        or raw.translate(None, _FORBIDDEN) != raw
    ):
        raise BadEntry("invalid entry name")
    name = raw.decode("ascii").lower()
    parts = name.split("/")
    if parts[0] != "" or "" in parts[1:] or parts[1] not in _SCOPES:
        raise BadEntry("entry names are /private/... or /shared/..., no // or final /")
    if settable and (len(parts) < 3 or (parts[2] == "vendor" and len(parts) < 5)):
        raise BadEntry("entry name too short (RFC 5464 §3.2)")
    return name


def computed_entries(mailbox: Mailbox | None, admin: str) -> dict[str, bytes]:
    """The read-only entries the server provides (module notes): a mailbox's
    ``/private/specialuse``, or the server's ``/shared/admin`` (``admin``, "" for none)."""
    if mailbox is None:
        return {ADMIN: admin.encode("utf-8")} if admin else {}
    if mailbox.special_use is None:
        return {}
    return {SPECIALUSE: mailbox.special_use.value.encode("ascii")}


def _below(name: str, base: str, depth: int | None) -> bool:
    """Whether ``name`` lies below ``base`` within ``depth`` (§4.2.2; None is infinity)."""
    if not name.startswith(base + "/"):
        return False
    return depth is None or name.count("/") - base.count("/") <= depth


def select(
    entries: Mapping[str, bytes], requested: Sequence[str], depth: int | None
) -> list[tuple[str, bytes | None]]:
    """GETMETADATA's answer (§4.2, §4.2.2): each requested name with its value (NIL when
    it has none: the response is required, §4.2), then the entries below it up to ``depth``
    in name order; each entry once."""
    result: dict[str, bytes | None] = {}
    for base in requested:
        if base not in result:
            result[base] = entries.get(base)
        if depth != 0:
            for name in sorted(entries):
                if name not in result and _below(name, base, depth):
                    result[name] = entries[name]
    return list(result.items())


def value(data: bytes | None, *, utf8: bool = False) -> bytes:
    """RFC 5464 §5 ``value = nstring / literal8``: literal8 only when NUL demands it; UTF-8
    text quoted once the client enabled UTF-8 (RFC 9755 §3), a literal before."""
    if data is None:
        return strings.NIL
    if b"\x00" in data:
        return strings.literal8(data)
    return strings.string(data, utf8=utf8)


def entry_values(items: Iterable[tuple[str, bytes | None]], *, utf8: bool = False) -> bytes:
    """``(entry value entry value …)`` (RFC 5464 §5 entry-values)."""
    pairs = (strings.astring(n) + b" " + value(v, utf8=utf8) for n, v in items)
    return b"(" + b" ".join(pairs) + b")"
