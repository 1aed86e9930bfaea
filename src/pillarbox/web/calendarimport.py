"""A calendar's .ics files over HTTP: the Calendar page's Export link and the API's
``/calendars/{name}/export`` download. What an export holds, and what an import (the page's
"Import .ics" form, the API's ``/import``) stores, are :mod:`pillarbox.transfer.ics`'s, the
path ``pillarbox import ics`` and ``export --ics`` take too (without loading the web app).

Implementation notes:

- **An uploaded file past** ``[calendars] max_import_bytes`` is refused before it is cut:
  413, as a body past its limit (:func:`.app.within_limit`, by the page and the API).
- **The export is a download** ``<calendar>.ics``, streamed as it is read
  (:meth:`pillarbox.transfer.ics.IcsExport.chunks`), never cached; a calendar deleted while
  it streams breaks it off (:class:`pillarbox.errors.BrokenOff`: no last chunk, incomplete
  by RFC 9112 §8) rather than end a partial file as if whole.
"""

from __future__ import annotations

from starlette.responses import Response, StreamingResponse

from pillarbox.services import Services
from pillarbox.store.types import Account
from pillarbox.transfer import ics
from pillarbox.web.downloads import foreign_content

ICS_TYPE = "text/calendar; charset=utf-8"  # RFC 5545 §8.1


async def export_download(services: Services, account: Account, calendar: str) -> Response:
    """:func:`pillarbox.transfer.ics.export_ics` as a download ``<calendar>.ics`` (the page's
    Export link, the API's ``/export``), streamed."""
    chunks = (await ics.export_ics(services, account, calendar)).chunks()
    response = foreign_content(StreamingResponse(chunks, media_type=ICS_TYPE), f"{calendar}.ics")
    response.headers["cache-control"] = "private, no-store"
    return response
