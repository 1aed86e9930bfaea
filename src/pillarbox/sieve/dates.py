"""The "date" extension (RFC 5260 §4–§5): time zones, date-parts, and the date a header
field holds.

Time is an argument: ``currentdate`` reads the ``now`` the caller hands to the run (delivery
passes the server's clock, in its local zone), never the clock itself; "the local time zone"
of §4.1 is the zone of that ``now`` (UTC when none is given).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from email.utils import format_datetime

from pillarbox.mail.headers import parse_date

#: RFC 5260 §4.1: time-zone = ("+" / "-") 4DIGIT (hhmm).
_ZONE = re.compile(r"([+-])([0-9]{2})([0-5][0-9])")
#: §4.2: the date-parts, compared without case.
DATE_PARTS = frozenset(
    {
        "year",
        "month",
        "day",
        "date",
        "julian",
        "hour",
        "minute",
        "second",
        "time",
        "iso8601",
        "std11",
        "zone",
        "weekday",
    }
)
#: §4.2 "julian": the Modified Julian Day counts from 1858-11-17.
_MJD_EPOCH = date(1858, 11, 17).toordinal()


def zone(text: str) -> timezone | None:
    """The ``+hhmm``/``-hhmm`` zone, or None if ``text`` is not one (§4.1)."""
    m = _ZONE.fullmatch(text)
    if m is None:
        return None
    sign, hours, minutes = m.groups()
    offset = timedelta(hours=int(hours), minutes=int(minutes))
    if offset >= timedelta(hours=24):
        return None
    return timezone(-offset if sign == "-" else offset)


def header_date(name: str, value: str) -> datetime | None:
    """The date-time a header field holds (RFC 5322 §3.3), or None. ``Received`` holds it
    after its last ";" (RFC 5321 §4.4), as Pigeonhole reads it."""
    if name.lower() == "received":
        value = value.rpartition(";")[2]
    return parse_date(value.strip())


def part(moment: datetime, name: str) -> str | None:
    """The §4.2 date-part ``name`` of ``moment`` (already in the zone wanted), or None for a
    name §4.2 does not define."""
    name = name.lower()
    if name == "year":
        return f"{moment.year:04d}"
    if name == "month":
        return f"{moment.month:02d}"
    if name == "day":
        return f"{moment.day:02d}"
    if name == "date":
        return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
    if name == "julian":
        return str(moment.date().toordinal() - _MJD_EPOCH)
    if name == "hour":
        return f"{moment.hour:02d}"
    if name == "minute":
        return f"{moment.minute:02d}"
    if name == "second":
        return f"{moment.second:02d}"
    if name == "time":
        return f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    if name == "iso8601":
        # RFC 3339 §5.6 (which §4.2 points to): "Z" for UTC, else +hh:mm.
        text = moment.replace(microsecond=0).isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if name == "std11":
        return format_datetime(moment.replace(microsecond=0))
    if name == "zone":
        offset = moment.utcoffset() or timedelta()
        minutes = int(offset.total_seconds()) // 60
        sign = "-" if minutes < 0 else "+"
        return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    if name == "weekday":
        return str((moment.weekday() + 1) % 7)  # §4.2: 0 is Sunday
    return None
