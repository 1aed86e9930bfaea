"""The METADATA limits both backends check inside their write transaction (RFC 5464 §4.1,
§4.3), on what they read of the entries a SETMETADATA touches.

An entry's size is its name's octets plus its value's: the name is stored too, and counting
it keeps a client from filling the store with many long-named empty values.
"""

from __future__ import annotations

from collections.abc import Mapping

from pillarbox.errors import QuotaExceeded, TooManyEntries
from pillarbox.store.types import MetadataLimits


def entry_size(name: str, value: bytes) -> int:
    return len(name.encode("utf-8")) + len(value)


def check_limits(
    *,
    count: int,
    total: int,
    existing: Mapping[str, int],
    entries: Mapping[str, bytes | None],
    limits: MetadataLimits,
) -> None:
    """Raise if writing ``entries`` breaks ``limits``.

    ``count``: entries the mailbox (or the server) has now; ``total``: octets of all the
    account's entries now; ``existing``: the current size of each touched entry that exists.
    Only growth is refused, so an account above a lowered limit can still shrink.
    """
    new_count = count
    new_total = total
    for name, value in entries.items():
        old = existing.get(name)
        if value is None:
            if old is not None:
                new_count -= 1
                new_total -= old
            continue
        if old is None:
            new_count += 1
        new_total += entry_size(name, value) - (old or 0)
    if new_count > max(count, limits.max_entries):
        raise TooManyEntries(f"more than {limits.max_entries} entries")
    if new_total > max(total, limits.max_total):
        raise QuotaExceeded(f"more than {limits.max_total} octets of entries")
