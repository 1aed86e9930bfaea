"""The rows of ``mta_sts_policies`` both backends write and read (the MTA-STS policy cache,
RFC 8461 §5.1): their column order, and a policy's values in it. Only the encoded columns
differ by backend (``fetched`` and ``expires``: ``timestamptz`` or microseconds since the
epoch; ``mx``: ``jsonb`` or JSON text), so each backend encodes and decodes those.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pillarbox.store.types import StsPolicyRecord

COLUMNS = "domain, policy_id, mode, mx, max_age, fetched, expires"
PLACEHOLDERS = 7


def row(p: StsPolicyRecord, mx: object, fetched: object, expires: object) -> tuple[object, ...]:
    """``p``'s values in :data:`COLUMNS` order, with the encoded ones passed in."""
    return (p.domain, p.policy_id, p.mode, mx, p.max_age, fetched, expires)


def record(row: Sequence[object], mx: Sequence[str], fetched: datetime) -> StsPolicyRecord:
    """The policy a row read in :data:`COLUMNS` order holds, with the decoded ones passed in."""
    domain, policy_id, mode, _, max_age = row[:5]
    assert isinstance(domain, str) and isinstance(policy_id, str) and isinstance(mode, str)
    assert isinstance(max_age, int)
    return StsPolicyRecord(
        domain=domain,
        policy_id=policy_id,
        mode=mode,
        mx=tuple(mx),
        max_age=max_age,
        fetched=fetched,
    )
