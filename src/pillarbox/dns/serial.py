"""The SOA serial of a hosted zone: one number per zone content, kept in the store.

A secondary name server transfers a zone again only when the primary's SOA serial is greater,
in RFC 1982 serial number arithmetic, than the one it holds (RFC 1034 §4.3.5, RFC 1996 §3.11).
So the serial must grow whenever the zone's content changes, be the same on every node sharing
a store (a secondary may ask any of them), and never go back, not even after a restart or a
domain removed and added again.

Each zone's content is reduced to a digest (:func:`zone_digest`); the store keeps, per domain,
the serial and the digest it was given to (``Store.zone_serial``). A node that builds the zone
with another digest moves the serial on with :func:`next_serial`.

Why Unix time, not ``YYYYMMDDnn``: both are what operators recognise, but the date form allows
a hundred changes a day before it runs ahead of the calendar, and the ACME DNS-01 challenges
this zone publishes change it several times per certificate. Unix time allows one change a
second before it runs ahead, and then simply counts on (``stored + 1``) until the clock passes
it; it also tells the operator when the zone last changed. Both fit in 32 bits until 2106, and
past that RFC 1982 comparison keeps working as the numbers wrap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

SERIAL_BITS = 32  # RFC 1982 §2: the SOA SERIAL field (RFC 1035 §3.3.13)
_MODULUS = 1 << SERIAL_BITS
_HALF = 1 << (SERIAL_BITS - 1)


def serial_greater(a: int, b: int) -> bool:
    """``a`` is greater than ``b`` in serial number arithmetic (RFC 1982 §3.2); two numbers
    exactly half the space apart are neither greater nor less."""
    return (a < b and b - a > _HALF) or (a > b and a - b < _HALF)


def next_serial(stored: int | None, now: int) -> int:
    """The serial a changed zone gets: ``now`` (Unix seconds, module notes) when that is greater
    than ``stored``, else ``stored + 1`` (RFC 1982 §3.1: addition modulo 2^32, so a serial
    ahead of the clock still grows). A zone never given one before gets ``now``."""
    candidate = now % _MODULUS
    if stored is None or serial_greater(candidate, stored):
        return candidate
    return (stored + 1) % _MODULUS


def zone_digest(lines: Iterable[str]) -> bytes:
    """A digest of a zone's content given as its records in zone-file lines, in any order: the
    same records give the same digest on every node."""
    digest = hashlib.sha256()
    for line in sorted(set(lines)):
        digest.update(line.encode() + b"\n")
    return digest.digest()
