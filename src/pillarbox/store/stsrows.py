"""The rows of ``mta_sts_policies`` and ``mta_sts_failures`` both backends write and read (the
MTA-STS policy cache, RFC 8461 §5.1, and its failed fetches, §3.3): their column order, and a
policy's or failure's values in it. Only the encoded columns differ by backend (times:
``timestamptz`` or microseconds since the epoch; ``mx``: ``jsonb`` or JSON text), so each
backend encodes and decodes those.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pillarbox.store.types import StsFetchFailure, StsPolicyRecord

COLUMNS = "domain, policy_id, mode, mx, max_age, fetched, expires"
PLACEHOLDERS = 7
FAILURE_COLUMNS = "domain, policy_id, failed, result_type, reason"
FAILURE_PLACEHOLDERS = 5


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


def failure_row(f: StsFetchFailure, failed: object) -> tuple[object, ...]:
    """``f``'s values in :data:`FAILURE_COLUMNS` order, with the encoded time passed in."""
    return (f.domain, f.policy_id, failed, f.result_type, f.reason)


def failure(row: Sequence[object], failed: datetime) -> StsFetchFailure:
    """The failure a row read in :data:`FAILURE_COLUMNS` order holds, its time decoded."""
    domain, policy_id, _, result_type, reason = row
    assert isinstance(domain, str) and isinstance(policy_id, str)
    assert isinstance(result_type, str) and isinstance(reason, str)
    return StsFetchFailure(
        domain=domain, policy_id=policy_id, failed=failed, result_type=result_type, reason=reason
    )
