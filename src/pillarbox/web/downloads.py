"""Responses carrying bytes someone else wrote: a message as stored, its parts, a calendar
object or a contact card (a sender's, an organizer's, a CalDAV or CardDAV client's).

Every such response, on every route (the webmail's parts and source view, the API's raw
message and parts, CalDAV and CardDAV GET, the contacts export), goes out through
:func:`foreign_content`: under :data:`CONTENT_CSP` rather than the pages' CSP, and as a
download (``Content-Disposition: attachment``) wherever a browser might otherwise render it.
``X-Content-Type-Options: nosniff`` is on every response of the app
(:class:`pillarbox.web.app.SessionMiddleware`), so a browser never guesses HTML in them.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from urllib.parse import quote

from starlette.responses import Response

from pillarbox.mail.decode import printable

#: Nothing loads, and a browser that renders it anyway runs it sandboxed: an opaque origin,
#: no script, no forms (CSP Level 3 §6.3.2: ``sandbox`` with no tokens); the pages' CSP would
#: let ``'self'`` script run, and a message is not ours to vouch for.
CONTENT_CSP = "default-src 'none'; sandbox"


#: Set in the request's task when the app ends a download with
#: :class:`pillarbox.errors.BrokenOff`.
_broken_off: ContextVar[bool] = ContextVar("pillarbox_broken_off", default=False)

#: What uvicorn logs at ERROR for any response an app leaves unfinished.
_UVICORN_UNFINISHED = "ASGI callable returned without completing response"


def ended_broken_off() -> None:
    """Record that this request's download was broken off on purpose (and logged so)."""
    _broken_off.set(True)


class BrokenOffFilter(logging.Filter):
    """Drops uvicorn's ERROR line about an unfinished response when it is one we ended with
    :class:`pillarbox.errors.BrokenOff` (logged at INFO where it happened, with why): an
    operator's alert on ERROR lines must not fire for it. uvicorn logs it in the request's
    own task, right after the app returns, so the mark set there (a context variable) is
    still seen; any other unfinished response, a fault, keeps its ERROR line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_broken_off.get() and record.getMessage().startswith(_UVICORN_UNFINISHED))


#: The one instance, so that adding it again (``logging.Filterer.addFilter``) adds nothing.
BROKEN_OFF_FILTER = BrokenOffFilter()


def disposition(kind: str, filename: str) -> str:
    """``kind; filename="…"; filename*=UTF-8''…`` (RFC 6266 §4.3: the ASCII fallback first)."""
    # A message parsed before file names lost their controls may still hold a CR LF here.
    ascii_name = printable(filename).encode("ascii", "replace").decode()
    ascii_name = ascii_name.replace('"', "'").replace("\\", "_")
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def foreign_content(response: Response, filename: str | None, *, inline: bool = False) -> Response:
    """``response`` marked as bytes someone else wrote: :data:`CONTENT_CSP`, and a download
    named ``filename`` (shown in place with ``inline``: the safe image types only); no name
    for what is meant to be shown as it is (the source view, ``text/plain``)."""
    response.headers["content-security-policy"] = CONTENT_CSP
    if filename is not None:
        response.headers["content-disposition"] = disposition(
            "inline" if inline else "attachment", filename
        )
    return response
