"""The "duplicate" test (RFC 7352): which id a test tracks, and the key it is kept under.

The core keeps no list: delivery hands over the keys the account's earlier runs recorded and
not yet expired (``SieveMessage.duplicates``), and takes back those a run that finished
records (``Outcome.duplicates``, §3.1: only then) — the store keeps them per account,
expiring and bounded (``[sieve] duplicate_*``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Tracked:
    """A key a run records (§3): new, or seen again by a test with :last (§3.3: its expiry
    counts from now). ``seconds`` is the test's :seconds, None for the site default."""

    key: str
    seconds: int | None = None


def key(handle: str, unique_id: str) -> str:
    """§3.1: the tracking of one :handle is apart from another's — the two hashed as counted
    strings, so that no handle and id pose as another pair."""
    digest = hashlib.sha256()
    for part in (handle, unique_id):
        data = part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()
