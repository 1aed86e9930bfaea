"""IMAP dates (RFC 9051 §9 ``date``, ``date-time``): parse and format without locale or clock.

``date`` (SEARCH BEFORE/ON/SINCE…) is a calendar day; ``date-time`` (APPEND, INTERNALDATE,
SAVEDATE) carries a numeric zone and maps to an aware :class:`datetime`. Month names are
matched case-insensitively (RFC 9051 §9 note 1) but always sent in the RFC's case.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from typing import Final

MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER: Final = {name.upper(): index + 1 for index, name in enumerate(MONTHS)}

# date-text = date-day "-" date-month "-" date-year ; date-day = 1*2DIGIT
_DATE_TEXT: Final = re.compile(rb"(\d{1,2})-([A-Za-z]{3})-(\d{4})")
# date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE
_DATE_TIME: Final = re.compile(
    rb"( \d|\d\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"
)


def parse_date(text: bytes) -> date:
    """Parse ``date-text`` (quotes already removed); ``ValueError`` if malformed or impossible."""
    match = _DATE_TEXT.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid date {text!r}")
    day, month_name, year = match.groups()
    month = _MONTH_NUMBER.get(month_name.decode("ascii").upper())
    if month is None:
        raise ValueError(f"invalid month {month_name!r}")
    return date(int(year), month, int(day))


def parse_date_time(text: bytes) -> datetime:
    """Parse the inside of a quoted ``date-time``; ``ValueError`` if malformed or impossible."""
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid date-time {text!r}")
    day, month_name, year, hour, minute, second, sign, zone_h, zone_m = match.groups()
    month = _MONTH_NUMBER.get(month_name.decode("ascii").upper())
    if month is None:
        raise ValueError(f"invalid month {month_name!r}")
    offset = timedelta(hours=int(zone_h), minutes=int(zone_m))
    if offset >= timedelta(hours=24):
        raise ValueError(f"invalid zone in {text!r}")
    zone = timezone(-offset if sign == b"-" else offset)
    return datetime(int(year), month, int(day), int(hour), int(minute), int(second), tzinfo=zone)


def format_date(value: date) -> bytes:
    """``date-text`` as SEARCH wants it, e.g. ``1-Feb-1994``."""
    return b"%d-%s-%04d" % (value.day, MONTHS[value.month - 1].encode("ascii"), value.year)


def format_date_time(value: datetime) -> bytes:
    """Quoted ``date-time``, e.g. ``"17-Jul-1996 02:44:25 -0700"``; naive means UTC."""
    offset = value.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = b"-" if minutes < 0 else b"+"
    minutes = abs(minutes)
    return b'"%2d-%s-%04d %02d:%02d:%02d %s%02d%02d"' % (
        value.day,
        MONTHS[value.month - 1].encode("ascii"),
        value.year,
        value.hour,
        value.minute,
        value.second,
        sign,
        minutes // 60,
        minutes % 60,
    )
