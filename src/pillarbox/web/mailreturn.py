"""Where a form posted from a webmail page returns to, and the notice it carries there: only
this site's folder and message pages (never another site: no open redirect), an earlier
notice's query fields dropped so that one action's notice does not stand beside the last's."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

from pillarbox.web.app import next_target

#: The folder and message pages, where sending returns to (they show its notice).
MAIL_PAGE = re.compile(r"/mail(?:/\d+){0,2}")
#: Query fields of an earlier notice, dropped from the page an action returns to.
NOTICE_PARAMS = frozenset({"done", "count", "to", "sent", "warning", "warning_seal"})


def noticed(back: str, added: list[tuple[str, str]]) -> str:
    """``back`` with the ``added`` notice fields in its query, an earlier notice's dropped."""
    path, _, query = back.partition("?")
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in NOTICE_PARAMS]
    return f"{path}?{urlencode(kept + added)}" if kept + added else path


def mail_page(value: str) -> str:
    """The page a form returns to (a sent message, a sender blocked from a message): one of
    the mail pages the form names, else ""."""
    path = value.partition("?")[0]
    return value if MAIL_PAGE.fullmatch(path) and next_target(value) == value else ""
