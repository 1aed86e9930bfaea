"""The time zone the webmail shows times in, and the one way its pages write a time.

Implementation notes:

- **Which zone**: the account's setting (Settings → Time zone, an IANA name kept in
  :attr:`AccountSettings.time_zone`) when it has one; else the browser's, which ``static/app.js``
  reports in the ``tz`` cookie (``Intl.DateTimeFormat().resolvedOptions().timeZone``); else UTC.
  It is resolved once per request, when :func:`pillarbox.web.app.require_account` has the
  session's account, and kept on ``request.state``; a page without an account (login, errors)
  uses the browser's.
- **Names are checked** against the zones this system knows (:func:`zoneinfo.available_timezones`,
  the system's tz database or the ``tzdata`` package): a cookie naming anything else is ignored
  (logged at debug: a browser newer than our tz database, or a forged cookie), and the Settings
  form refuses it. Reading them walks the tz directories (about 15 ms), so the server reads
  them once at start-up, on the executor (:func:`load_zone_names`, from
  :meth:`pillarbox.net.serve.Server` before the web listeners accept), never on the event loop
  at a request; importing this module reads nothing (the CLI's start stays light).
- **Pages only**: the JSON API keeps ISO 8601 in UTC with its offset (clients convert), and the
  ``<time datetime>`` attributes of the pages stay in UTC too; only the text a reader sees is
  local. Where a page shows a full timestamp it carries the zone's abbreviation
  (``tzname()``: "CET", "EST"; "UTC-03" for a zone the tz database gives no letters).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from functools import cache
from typing import Literal
from zoneinfo import ZoneInfo, available_timezones

from starlette.requests import Request

from pillarbox.blocking import run_blocking
from pillarbox.observability.log import Log

_log = Log("web.zone")

#: The cookie ``static/app.js`` sets to the browser's IANA zone name.
ZONE_COOKIE = "tz"
#: The longest zone name taken (the longest IANA name today has 32 characters).
MAX_ZONE_NAME = 64

#: How :func:`when` writes a time: ``short`` (a list's column: the time today, else the day),
#: ``full`` (a message's Date), ``stamp`` (a log-like row), ``day``, ``time``.
Style = Literal["short", "full", "stamp", "day", "time"]


class Source(enum.Enum):
    """Where the zone of a request came from."""

    SETTING = "setting"
    BROWSER = "browser"
    DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class ReaderZone:
    """The zone a request's pages are written in."""

    name: str
    tz: tzinfo
    source: Source


_DEFAULT = ReaderZone("UTC", UTC, Source.DEFAULT)


#: Files of the tz directories that are not zones a reader lives in: the server's own zone (a
#: Debian symlink to /etc/localtime) and the tz database's "zone not set" placeholder.
_NOT_ZONES = frozenset({"localtime", "Factory"})


@cache
def zone_names() -> tuple[str, ...]:
    """Every IANA zone name this system knows, sorted (the Settings choice)."""
    return tuple(sorted(available_timezones() - _NOT_ZONES))


@cache
def _names() -> frozenset[str]:
    return frozenset(zone_names())


async def load_zone_names() -> None:
    """Read the known names (:func:`zone_names`) on the executor, so that no request pays
    for the walk of the tz directories on the event loop."""
    await run_blocking(_names)


def known_zone(name: str) -> ZoneInfo | None:
    """The zone called ``name``, or None when it is not one this system knows. Membership in
    the known names comes first: ``ZoneInfo`` alone would also open any file under the tz
    directories (``posixrules``, ``zone.tab``'s neighbours) and caches every name it is given."""
    if not name or len(name) > MAX_ZONE_NAME or name not in _names():
        return None
    return ZoneInfo(name)


def chosen_zone(setting: str, cookie: str) -> ReaderZone:
    """The zone for an account whose setting is ``setting`` ("": automatic) and whose browser
    sent ``cookie`` ("": none): the setting, else the browser's, else UTC."""
    if setting:
        zone = known_zone(setting)
        if zone is not None:
            return ReaderZone(setting, zone, Source.SETTING)
        # Only a tz database that lost a name (an upgrade) gets here: the form checks it.
        _log.debug("unknown time zone setting ignored", zone=setting[:MAX_ZONE_NAME])
    if cookie:
        zone = known_zone(cookie)
        if zone is not None:
            return ReaderZone(cookie, zone, Source.BROWSER)
        _log.debug("unknown time zone cookie ignored", zone=cookie[:MAX_ZONE_NAME])
    return _DEFAULT


def remember_zone(request: Request, setting: str) -> ReaderZone:
    """Resolve the request's zone with the account's ``setting`` and keep it for the request."""
    zone = chosen_zone(setting, request.cookies.get(ZONE_COOKIE, ""))
    request.state.reader_zone = zone
    return zone


def zone_remembered(request: Request) -> bool:
    return getattr(request.state, "reader_zone", None) is not None


def zone_of(request: Request) -> ReaderZone:
    """The zone of this request: as :func:`remember_zone` resolved it for the session's account,
    or for a visitor without one the browser's, else UTC."""
    zone: ReaderZone | None = getattr(request.state, "reader_zone", None)
    return zone if zone is not None else chosen_zone("", request.cookies.get(ZONE_COOKIE, ""))


def reader_zone(request: Request) -> tzinfo:
    """The ``tzinfo`` of :func:`zone_of` (the calendar computes with it)."""
    return zone_of(request).tz


def when(value: datetime, zone: tzinfo, style: Style = "short", *, now: datetime) -> str:
    """``value`` as the reader reads it in ``zone``; ``short`` measures "today" and "this year"
    in that zone from ``now``. A naive ``value`` is taken as UTC (what the store returns is
    aware; this only guards a caller's mistake from shifting by the server's own zone)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    local = value.astimezone(zone)
    match style:
        case "short":
            today = now.astimezone(zone).date()
            if local.date() == today:
                return local.strftime("%H:%M")
            if local.year == today.year:
                return local.strftime("%d %b")
            return local.strftime("%d %b %Y")
        case "full":
            return local.strftime("%a, %d %b %Y %H:%M ") + _abbreviation(local)
        case "stamp":
            return local.strftime("%Y-%m-%d %H:%M ") + _abbreviation(local)
        case "day":
            return local.strftime("%Y-%m-%d")
        case "time":
            return local.strftime("%H:%M:%S ") + _abbreviation(local)


def _abbreviation(local: datetime) -> str:
    """The zone's abbreviation at that instant; the tz database writes "-03" where a zone has
    no letters, shown as "UTC-03" so that it reads as an offset."""
    name = local.tzname() or ""
    return f"UTC{name}" if name.startswith(("+", "-")) else name
