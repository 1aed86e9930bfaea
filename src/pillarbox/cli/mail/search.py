"""The ``pillarbox mail search`` query language, translated into IMAP SEARCH keys.

The words are the command line's; what they become is plain RFC 9051 §6.4.4 criteria that
:meth:`pillarbox.mailclient.imap.ImapSession.search` sends (with CHARSET UTF-8 when needed).
"""

from __future__ import annotations

import re
import shlex
from datetime import date

from pillarbox.errors import UserError

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_FIELD_KEYS = {"from": "FROM", "to": "TO", "cc": "CC", "subject": "SUBJECT", "body": "BODY"}
_DATE_KEYS = {"since": "SINCE", "before": "BEFORE", "on": "ON"}
_FLAG_WORDS = {
    "unread": ["UNSEEN"],
    "read": ["SEEN"],
    "flagged": ["FLAGGED"],
    "unflagged": ["UNFLAGGED"],
    "answered": ["ANSWERED"],
    "all": ["ALL"],
}


def search_criteria(query: str) -> list[object]:
    """Translate the query language into IMAP SEARCH keys (RFC 9051 §6.4.4), all ANDed:
    bare words → TEXT; ``from:`` ``to:`` ``cc:`` ``subject:`` ``body:`` → that key;
    ``since:``/``before:``/``on:YYYY-MM-DD`` → dates; ``unread`` ``read`` ``flagged``
    ``unflagged`` ``answered`` → flags. Quotes group words: ``subject:"two words"``."""
    try:
        tokens = shlex.split(query)
    except ValueError as exc:
        raise UserError(f"search query: {exc}") from exc
    criteria: list[object] = []
    for token in tokens:
        key, colon, value = token.partition(":")
        lowered = key.lower()
        if colon and lowered in _FIELD_KEYS:
            if not value:
                raise UserError(f"search query: {key}: needs a value")
            criteria += [_FIELD_KEYS[lowered], value]
        elif colon and lowered in _DATE_KEYS:
            if not _DATE.fullmatch(value):
                raise UserError(f"search query: {key}: needs a date as YYYY-MM-DD, got {value!r}")
            try:
                criteria += [_DATE_KEYS[lowered], date.fromisoformat(value)]
            except ValueError as exc:
                raise UserError(f"search query: {key}: {exc}") from exc
        elif not colon and lowered in _FLAG_WORDS:
            criteria += _FLAG_WORDS[lowered]
        else:
            criteria += ["TEXT", token]
    return criteria or ["ALL"]
