"""Live updates: the store's change feed as server-sent events (HTML Living Standard §9.2).

Each open page holds one ``GET /events`` stream. A change to any of the account's mailboxes
becomes one ``change`` event naming the mailbox and kind; the page then re-reads what it shows
(changes are hints, see ``store.types.Change``). Kinds no page shows (IMAP METADATA entries)
are not sent: each event costs the page a reload. A comment line every ``sse_keepalive``
seconds keeps proxies from closing an idle stream and lets the server notice a gone client.
The stream ends when the server shuts down, so a graceful stop is not held up by open pages.

The stream is no activity of the person (:func:`.app.activity`): opening it refreshes no
session, and it ends when the session it was opened with ends. The browser then reopens it
(``retry``) with the cookie it holds now: refreshed meanwhile by the person's use of any tab,
the feed goes on; not, it is refused (401) and the browser stops, so a page left alone is
logged out at its idle limit however long its feed stays connected.

A page showing a folder another account shares with this one (RFC 4314) names it
(``/events?mailbox=ID``): the stream then carries that folder's changes too (the feed's
``watch``, as an IMAP session's IDLE on a selected shared mailbox), if the account may read it
when the stream opens — rights are read then, as IMAP reads them at SELECT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from pillarbox.errors import NotFound, PermissionDenied, RateLimited
from pillarbox.store.types import Account, Change, ChangeKind
from pillarbox.web.app import current_account, field_number, web
from pillarbox.web.mailaccess import MailAccess
from pillarbox.web.session import LIVE_FEED_PATH

#: Changes of things no page shows.
UNSHOWN = frozenset({ChangeKind.METADATA})


def event(change: Change) -> str:
    data = json.dumps({"mailbox": change.mailbox_id, "kind": change.kind.value})
    return f"event: change\ndata: {data}\n\n"


async def _shared_shown(request: Request, account: Account) -> int | None:
    """The shared folder the page shows (``?mailbox=``), if the account may read it; None for
    its own folders, whose changes the stream carries anyway."""
    mailbox_id = field_number(request.query_params.get("mailbox"))
    if mailbox_id is None:
        return None
    try:
        place = await MailAccess(web(request).services, account).place(mailbox_id)
    except (NotFound, PermissionDenied):
        return None
    return None if place.owner is None else mailbox_id


async def events(request: Request) -> Response:
    app = web(request)
    account = await current_account(request)
    if account is None:
        # Not a login redirect: EventSource would follow it and retry forever; a 401 makes it
        # give up until the page is reloaded.
        return Response("authentication required", status_code=401)
    if app.streams.get(account.id, 0) >= app.limits.sse_per_account:
        raise RateLimited("too many open live-update streams", retry_after=30)
    shared = await _shared_shown(request, account)
    app.streams[account.id] = app.streams.get(account.id, 0) + 1
    shutdown = app.services.shutdown
    keepalive = app.limits.sse_keepalive
    session_ends = app.codec.ends(request.state.session)

    async def stream() -> AsyncIterator[str]:
        subscription = app.services.store.subscribe(account.id)
        subscription.watch(shared)
        changes = aiter(subscription)
        stop = asyncio.ensure_future(shutdown.wait())
        following: asyncio.Task[Change] | None = None
        try:
            yield "retry: 3000\n\n"
            while not shutdown.is_set():
                left = session_ends - time.time()
                if left <= 0:
                    return
                if following is None:
                    following = asyncio.ensure_future(anext(changes))
                waiting: set[asyncio.Future[Any]] = {following, stop}
                done, _ = await asyncio.wait(
                    waiting, timeout=min(keepalive, left), return_when=asyncio.FIRST_COMPLETED
                )
                if following in done:
                    try:
                        change = following.result()
                    except StopAsyncIteration:
                        return  # the store closed
                    following = None
                    if change.kind not in UNSHOWN:
                        yield event(change)
                elif not done:
                    yield ": keep-alive\n\n"
        finally:
            pending: list[asyncio.Future[Any]] = [stop]
            if following is not None:
                pending.append(following)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await task
            await subscription.close()
            app.streams[account.id] -= 1
            if app.streams[account.id] <= 0:
                del app.streams[account.id]

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


def routes() -> list[BaseRoute]:
    return [Route(LIVE_FEED_PATH, events)]
