"""Folder names: another system's folders onto ours, and ours onto file names.

**Special folders.** Every account has one mailbox of each special use
(``types.DEFAULT_MAILBOXES``). A foreign folder whose name is a common name of one (any case:
"Sent Items", "Deleted Items", "Spam", "[Gmail]/Sent Mail" …) is filed into ours, and so are its
subfolders ("Sent Items/2023" becomes "Sent/2023"). Over IMAP the RFC 6154 SPECIAL-USE
attribute decides first.

**File names** follow Dovecot's Maildir++ layout (its ``LAYOUT=maildir++`` with
``STORAGE_ESCAPE_CHAR=%``): a mailbox ``a/b`` is the directory ``.a.b``; each level is written
in modified UTF-7 (RFC 3501 §5.1.3, what Dovecot stores on disk by default), then ``%``, ``.``,
``/`` and a leading ``~`` are escaped as ``%`` and two lowercase hex digits. A level is then
never empty, never ``.`` or ``..``, and never contains a path separator: a file name is made
from a mailbox name only through :func:`file_name`, and never from message content.
"""

from __future__ import annotations

import re

from pillarbox.imap import mutf7
from pillarbox.imap.errors import Mutf7Error
from pillarbox.store.types import DELIMITER, INBOX, SpecialUse

#: Common names of special folders, lower-case (Outlook/Exchange, Thunderbird, Apple Mail,
#: Gmail, Dovecot and Courier defaults, and a few frequent translations).
SPECIAL_NAMES: dict[str, SpecialUse] = {
    **dict.fromkeys(
        (
            "sent",
            "sent items",
            "sent messages",
            "sent mail",
            "sent-mail",
            "[gmail]/sent mail",
            "[google mail]/sent mail",
            "gesendet",
            "gesendete elemente",
            "gesendete objekte",
            "envoyés",
            "éléments envoyés",
            "enviados",
        ),
        SpecialUse.SENT,
    ),
    **dict.fromkeys(
        (
            "drafts",
            "draft",
            "[gmail]/drafts",
            "[google mail]/drafts",
            "entwürfe",
            "brouillons",
            "borradores",
        ),
        SpecialUse.DRAFTS,
    ),
    **dict.fromkeys(
        (
            "trash",
            "deleted items",
            "deleted messages",
            "deleted",
            "bin",
            "[gmail]/trash",
            "[gmail]/bin",
            "[google mail]/trash",
            "[google mail]/bin",
            "papierkorb",
            "gelöschte elemente",
            "corbeille",
            "papelera",
        ),
        SpecialUse.TRASH,
    ),
    **dict.fromkeys(
        (
            "junk",
            "spam",
            "junk e-mail",
            "junk email",
            "junk mail",
            "bulk mail",
            "[gmail]/spam",
            "[google mail]/spam",
            "junk-e-mail",
        ),
        SpecialUse.JUNK,
    ),
    **dict.fromkeys(("archive", "archives", "archiv", "archivo"), SpecialUse.ARCHIVE),
}


def special_use_of_name(name: str) -> SpecialUse | None:
    """The special use a folder's name suggests, if any (whole name, any case)."""
    return SPECIAL_NAMES.get(name.strip().lower())


def map_folder(
    levels: list[str], ours: dict[SpecialUse, str], special_use: SpecialUse | None = None
) -> str:
    """Our mailbox name for a foreign folder given by its hierarchy ``levels``.

    ``ours`` names our special mailboxes. ``special_use`` is the folder's own attribute (IMAP);
    otherwise the longest leading part of the name that is a special folder's common name is
    replaced by ours ("[Gmail]/Sent Mail/2023" → "Sent/2023"). ``INBOX`` in any case is INBOX.
    """
    if special_use is not None and special_use in ours:
        return ours[special_use]
    if not levels:
        return INBOX
    if levels[0].upper() == INBOX:
        levels = [INBOX, *levels[1:]]
    for cut in range(len(levels), 0, -1):
        use = special_use_of_name(DELIMITER.join(levels[:cut]))
        if use is not None and use in ours:
            return DELIMITER.join([ours[use], *levels[cut:]])
    return DELIMITER.join(levels)


# -- file names ---------------------------------------------------------------------------------

_ESCAPE_CHAR = "%"
_ESCAPED = re.compile(r"%([0-9a-fA-F]{2})")


def _escape_level(level: str) -> str:
    encoded = mutf7.encode(level)
    out = []
    for index, char in enumerate(encoded):
        if char in "%./" or (char == "~" and index == 0):
            out.append(f"%{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)


def _unescape_level(level: str) -> str:
    text = _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), level)
    try:
        return mutf7.decode(text)
    except Mutf7Error:
        return text  # Dovecot with the UTF8 option stores names as UTF-8: take them as they are


def file_name(mailbox: str) -> str:
    """The Maildir++ folder name of a mailbox, without the leading dot (``Archive/2024`` →
    ``Archive.2024``); a single path component, safe to join to a directory."""
    return ".".join(_escape_level(level) for level in mailbox.split(DELIMITER))


def mailbox_levels(name: str) -> list[str]:
    """The inverse of :func:`file_name`: a Maildir++ folder name (leading dot removed) as its
    hierarchy levels."""
    return [_unescape_level(level) for level in name.split(".")]
