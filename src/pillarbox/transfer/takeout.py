"""Gmail's labels in a Google Takeout export, as our folders and flags.

Takeout writes a Gmail account as one mbox (``All mail Including Spam and Trash.mbox``; or one
file per label when the user picked labels), each message once, with two header fields put
above the message: ``X-GM-THRID`` (Gmail's thread id) and ``X-Gmail-Labels``, the message's
labels in CSV form: comma-separated, a label holding a comma or a quote in double quotes (a
quote doubled). A long list is folded like any header field; a list with a non-ASCII label is
RFC 2047 encoded words, the commas inside them (``=?UTF-8?Q?=C3=85pnet,Kategori:_Reklame?=``).
So the value is unfolded, then decoded, then split. About 2% of real messages carry no labels
header at all: they are archived mail.

Both fields are removed from the message: they are Gmail's storage, not part of the message
(its IMAP server shows neither), so the stored bytes are those a ``pillarbox import imap`` from
the same account stores, and the two imports skip each other's messages.

Labels become what Gmail's own IMAP server shows (so both imports give the same account):

- ``Inbox`` → INBOX, ``Sent`` → Sent, ``Drafts`` → Drafts (with ``\\Draft``), and every user
  label → the folder of its name, ``a/b`` nested. A message with several is stored once in each
  (Gmail's IMAP lists it in each, and imapsync and our ``import imap`` copy it so); the store
  keeps its content once.
- ``Spam`` → Junk only and ``Trash`` → Trash only, whatever other labels the message has:
  Gmail's IMAP shows spam and trash in no other folder, and spam must never reach INBOX.
- A message with none of these (archived) → Archive, once.
- ``Unread`` leaves a message unread; every other message is ``\\Seen`` (``Opened`` says so
  explicitly). ``Starred`` → ``\\Flagged``. ``Important`` → the ``$Important`` keyword
  (RFC 8457). ``Category Social`` and the other inbox tabs → the keyword ``$Category-Social``
  (an IMAP atom, RFC 3501 §9 ``flag-keyword``): not folders, since Gmail's IMAP shows them as
  none, but kept, so that a search (``SEARCH KEYWORD``) can still find them. ``Archived``
  (written on some messages and not others) is ignored: archiving is having no folder label.
- ``Chat`` (old Hangouts transcripts) is a user label like any other: a folder ``Chat``.

System labels are matched in English, in any case. Takeout writes them in the account's
language (``Posteingang``, ``Odesláno``): such an export must be made in English
(``takeout.google.com/?hl=en``), else its system labels arrive as folders.
"""

from __future__ import annotations

import contextlib
import csv
import re
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import decode_header, make_header

from pillarbox.store.types import INBOX, SpecialUse
from pillarbox.transfer.mbox import take_headers

LABELS_HEADER = b"x-gmail-labels"
THREAD_HEADER = b"x-gm-thrid"
#: The header fields Takeout adds to each message (removed: see the module docstring).
TAKEOUT_HEADERS = (LABELS_HEADER, THREAD_HEADER)

#: ``Important``'s keyword: RFC 8457 registers ``$Important`` for what a user (or a server's
#: heuristics) finds important, which is what Gmail's label means.
IMPORTANT_KEYWORD = "$Important"
#: Gmail's inbox tabs ("Category Promotions"), one word after the prefix.
_CATEGORY = re.compile(r"category ([A-Za-z]+)", re.IGNORECASE)
#: Gmail nests labels with a slash ("Work/2024"), whatever the IMAP delimiter.
GMAIL_DELIMITER = "/"
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_HEADER_END = re.compile(rb"\n\r?\n")


@dataclass(frozen=True, slots=True)
class Folder:
    """Where a label files a message: hierarchy levels, and the special use that picks our
    mailbox first (its name, ``levels``, is used if the account has no mailbox of that use)."""

    levels: tuple[str, ...]
    special_use: SpecialUse | None = None


INBOX_FOLDER = Folder((INBOX,))
SENT = Folder(("Sent",), SpecialUse.SENT)
DRAFTS = Folder(("Drafts",), SpecialUse.DRAFTS)
JUNK = Folder(("Junk",), SpecialUse.JUNK)
TRASH = Folder(("Trash",), SpecialUse.TRASH)
ARCHIVE = Folder(("Archive",), SpecialUse.ARCHIVE)

#: System labels that are folders; ``Spam`` and ``Trash`` exclude every other folder.
_FOLDER_LABELS = {"inbox": INBOX_FOLDER, "sent": SENT, "drafts": DRAFTS}
_ONLY_FOLDER_LABELS = {"spam": JUNK, "trash": TRASH}
#: System labels that are flags or keywords, or nothing.
_FLAG_LABELS = {"starred": "\\Flagged", "important": IMPORTANT_KEYWORD}
_IGNORED_LABELS = frozenset({"unread", "opened", "archived"})


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one message goes (each folder once, in label order) and with which flags."""

    folders: tuple[Folder, ...]
    flags: frozenset[str]


def parse_labels(value: bytes) -> list[str]:
    """The labels of an ``X-Gmail-Labels`` value (as it stands after the colon, folding and
    all): unfolded (RFC 5322 §2.2.3), RFC 2047 words decoded, then split as one CSV record;
    empty labels are left out."""
    text = _FOLD.sub("", value.decode("utf-8", "replace")).strip()
    # Not valid encoded words (an unknown charset…): the text as it stands. RFC 2047 §6.2:
    # white space between adjacent encoded words is not part of the text.
    with contextlib.suppress(HeaderParseError, LookupError, UnicodeDecodeError, ValueError):
        text = str(make_header(decode_header(text)))
    record = next(csv.reader([text], skipinitialspace=True), [])
    return [label.strip() for label in record if label.strip()]


def _header_length(raw: bytes) -> int:
    """Where the header ends (before the empty line): only the header is split into lines."""
    end = _HEADER_END.search(raw)
    return end.start() + 1 if end is not None else len(raw)


def split_message(raw: bytes) -> tuple[bytes, list[str]]:
    """A Takeout message without its ``X-Gmail-Labels`` and ``X-GM-THRID`` fields, and its
    labels (none when it has no labels field)."""
    cut = _header_length(raw)
    kept, taken = take_headers(raw[:cut].splitlines(keepends=True), TAKEOUT_HEADERS)
    labels = [
        label for name, value in taken if name == LABELS_HEADER for label in parse_labels(value)
    ]
    return b"".join(kept) + raw[cut:], labels


def has_labels(raw: bytes) -> bool:
    """Whether a message carries Takeout's labels field (the hint that a file is a Takeout
    export)."""
    return any(
        line.split(b":", 1)[0].strip().lower() == LABELS_HEADER
        for line in raw[: _header_length(raw)].splitlines()
        if b":" in line
    )


def category_keyword(label: str) -> str | None:
    """``$Category-Social`` for ``Category Social`` (any inbox tab); None for another label."""
    match = _CATEGORY.fullmatch(label)
    return None if match is None else "$Category-" + match.group(1).capitalize()


def placement(labels: list[str]) -> Placement:
    """Where a message with these labels goes, and its flags (see the module docstring)."""
    lowered = [label.lower() for label in labels]
    flags = {"\\Seen"} if "unread" not in lowered else set()
    folders: list[Folder] = []
    only: Folder | None = None
    for label, lower in zip(labels, lowered, strict=True):
        keyword = category_keyword(label)
        if keyword is not None:
            flags.add(keyword)
        elif lower in _FLAG_LABELS:
            flags.add(_FLAG_LABELS[lower])
        elif lower in _ONLY_FOLDER_LABELS:
            # Spam wins over Trash: a message marked as spam stays marked as spam.
            if only is None or only is TRASH:
                only = _ONLY_FOLDER_LABELS[lower]
        elif lower in _FOLDER_LABELS:
            folders.append(_FOLDER_LABELS[lower])
        elif lower not in _IGNORED_LABELS:
            folders.append(Folder(tuple(label.split(GMAIL_DELIMITER))))
    if DRAFTS in folders:
        flags.add("\\Draft")
    if only is not None:
        chosen: tuple[Folder, ...] = (only,)
    else:
        chosen = tuple(dict.fromkeys(folders)) or (ARCHIVE,)
    return Placement(chosen, frozenset(flags))
