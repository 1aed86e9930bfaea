"""The Sender Rewriting Scheme: the envelope sender of mail we forward, and its way back.

Why: a forwarded message leaves from our IP with the original MAIL FROM, and the original
domain's SPF record (RFC 7208) does not list us, so the next hop sees ``spf=fail``. SRS (Shevek's
scheme, as libsrs2, postsrsd and Postfix set-ups use it) rewrites the sender into an address at
our domain that encodes the original one, signed with a keyed hash, so that bounces come back to
us and nobody else can use the address as an open relay.

Implementation notes:

- ``SRS0=HHHH=TT=orig-domain=orig-local@our-domain``: ``TT`` is the day (mod 1024, two base32
  characters) and ``HHHH`` the first four base32 characters of an HMAC-SHA256 over
  ``TT``, the domain and the local part, case-folded — mail systems may change an address's
  case on the way back, and base32 has one case, so the comparison is case-insensitive without
  weakening the hash the way base64 compared without case does in libsrs2.
- Forwarding an address that is already SRS (a second forwarder): ``SRS0=…@first`` becomes
  ``SRS1=HHHH=first==HHHH=TT=orig-domain=orig-local@us`` and an ``SRS1`` keeps its first
  forwarder; reversing an SRS1 gives the SRS0 address at the first forwarder, which reverses it
  in turn. Address lengths therefore grow by one hop at most.
- An address is accepted back for :attr:`SrsSettings.max_age_days` days (libsrs2's default 21)
  and only with its hash; the separator after ``SRS0``/``SRS1`` may be ``=``, ``+`` or ``-``
  as libsrs2 accepts.
- Pure: the day is an argument, no clock is read here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from pillarbox.errors import UserError

_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
HASH_LENGTH = 4
TIME_SLOTS = 1024  # two base32 characters of days
SEPARATORS = "=+-"


class SrsError(UserError):
    """An address that looks like SRS but is not one of ours: bad hash, too old, malformed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SrsSettings:
    secret: bytes
    #: Days an SRS address is accepted back (``forwarding.srs_max_age_days``).
    max_age_days: int = 21


def day_number(now: datetime) -> int:
    """Days since the epoch, the clock SRS timestamps count."""
    return int(now.timestamp() // 86400)


def _stamp(day: int) -> str:
    slot = day % TIME_SLOTS
    return _BASE32[slot // 32] + _BASE32[slot % 32]


def _hash(settings: SrsSettings, *parts: str) -> str:
    message = "\x00".join(parts).casefold().encode("utf-8")
    digest = hmac.new(settings.secret, message, hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii")[:HASH_LENGTH]


def is_srs(local: str) -> bool:
    return len(local) > 5 and local[:4].upper() in ("SRS0", "SRS1") and local[4] in SEPARATORS


def forward(settings: SrsSettings, sender: str, our_domain: str, day: int) -> str:
    """The envelope sender for ``sender``'s mail forwarded from ``our_domain``."""
    local, _, domain = sender.rpartition("@")
    if is_srs(local) and local[:4].upper() == "SRS1":
        # SRS1=HHHH=first==rest: keep the first forwarder, re-sign for us.
        fields = local[5:].split("=", 2)
        if len(fields) == 3 and fields[2].startswith("="):
            first, rest = fields[1], fields[2][1:]
            return f"SRS1={_hash(settings, first, rest)}={first}=={rest}@{our_domain}"
    if is_srs(local):  # SRS0 at another forwarder
        rest = local[5:]
        return f"SRS1={_hash(settings, domain, rest)}={domain}=={rest}@{our_domain}"
    stamp = _stamp(day)
    return f"SRS0={_hash(settings, stamp, domain, local)}={stamp}={domain}={local}@{our_domain}"


def reverse(settings: SrsSettings, local: str, day: int) -> str:
    """The address an SRS local part of ours stands for; :class:`SrsError` if it is not
    valid (wrong hash, expired, malformed)."""
    if not is_srs(local):
        raise SrsError("not an SRS address")
    body = local[5:]
    if local[:4].upper() == "SRS1":
        first, sep, rest = body.partition("==")
        given, eq, first_domain = first.partition("=")
        if not sep or not eq or not first_domain or not rest:
            raise SrsError("malformed SRS1 address")
        _check(given, _hash(settings, first_domain, rest))
        return f"SRS0={rest}@{first_domain}"
    fields = body.split("=", 3)
    if len(fields) != 4 or not all(fields):
        raise SrsError("malformed SRS0 address")
    given, stamp, domain, orig_local = fields
    _check(given, _hash(settings, stamp, domain, orig_local))
    _check_age(stamp.upper(), day, settings.max_age_days)
    return f"{orig_local}@{domain}"


def _check(given: str, expected: str) -> None:
    if not hmac.compare_digest(given.upper().encode(), expected.encode()):
        raise SrsError("SRS hash does not match")


def _check_age(stamp: str, day: int, max_age: int) -> None:
    if len(stamp) != 2 or any(c not in _BASE32 for c in stamp):
        raise SrsError("malformed SRS timestamp")
    slot = _BASE32.index(stamp[0]) * 32 + _BASE32.index(stamp[1])
    if (day - slot) % TIME_SLOTS > max_age:
        raise SrsError("SRS address expired")
