"""SQLite queries of the MTA-STS policy cache (table ``mta_sts_policies``, RFC 8461 §5.1) and
its failed fetches (``mta_sts_failures``, §3.3): plain functions over a connection, as in
:mod:`.tlsdata`. Times are microseconds since the epoch; the MX patterns a JSON array."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime

from pillarbox.store import stsrows
from pillarbox.store.sqlite.dmarcdata import EPOCH, MICROSECOND, microseconds
from pillarbox.store.types import StsCacheEntry, StsFetchFailure, StsPolicyRecord


def save(conn: sqlite3.Connection, p: StsPolicyRecord) -> None:
    conn.execute(
        f"INSERT INTO mta_sts_policies ({stsrows.COLUMNS}) "
        f"VALUES ({', '.join('?' * stsrows.PLACEHOLDERS)}) "
        "ON CONFLICT (domain) DO UPDATE SET policy_id = excluded.policy_id, "
        "mode = excluded.mode, mx = excluded.mx, max_age = excluded.max_age, "
        "fetched = excluded.fetched, expires = excluded.expires "
        "WHERE excluded.fetched >= mta_sts_policies.fetched",
        stsrows.row(p, json.dumps(p.mx), microseconds(p.fetched), microseconds(p.expires)),
    )
    conn.execute(
        "DELETE FROM mta_sts_failures WHERE domain = ? AND failed <= ?",
        (p.domain, microseconds(p.fetched)),
    )


def _policy(row: Sequence[object]) -> StsPolicyRecord:
    mx, fetched = row[3], row[5]
    assert isinstance(mx, str) and isinstance(fetched, int)
    return stsrows.record(row, json.loads(mx), EPOCH + fetched * MICROSECOND)


def _failure(row: Sequence[object]) -> StsFetchFailure:
    failed = row[2]
    assert isinstance(failed, int)
    return stsrows.failure(row, EPOCH + failed * MICROSECOND)


def unexpired(conn: sqlite3.Connection, now: datetime) -> list[StsPolicyRecord]:
    rows = conn.execute(
        f"SELECT {stsrows.COLUMNS} FROM mta_sts_policies WHERE expires > ? "
        "ORDER BY fetched DESC, domain",
        (microseconds(now),),
    )
    return [_policy(r) for r in rows]


def prune(conn: sqlite3.Connection, now: datetime) -> int:
    return conn.execute(
        "DELETE FROM mta_sts_policies WHERE expires <= ?", (microseconds(now),)
    ).rowcount


def save_failure(conn: sqlite3.Connection, f: StsFetchFailure) -> None:
    conn.execute(
        f"INSERT INTO mta_sts_failures ({stsrows.FAILURE_COLUMNS}) "
        f"VALUES ({', '.join('?' * stsrows.FAILURE_PLACEHOLDERS)}) "
        "ON CONFLICT (domain) DO UPDATE SET policy_id = excluded.policy_id, "
        "failed = excluded.failed, result_type = excluded.result_type, reason = excluded.reason "
        "WHERE excluded.failed >= mta_sts_failures.failed",
        stsrows.failure_row(f, microseconds(f.failed)),
    )


def failures(conn: sqlite3.Connection, since: datetime) -> list[StsFetchFailure]:
    rows = conn.execute(
        f"SELECT {stsrows.FAILURE_COLUMNS} FROM mta_sts_failures WHERE failed >= ? "
        "ORDER BY failed DESC, domain",
        (microseconds(since),),
    )
    return [_failure(r) for r in rows]


def prune_failures(conn: sqlite3.Connection, before: datetime) -> int:
    return conn.execute(
        "DELETE FROM mta_sts_failures WHERE failed < ?", (microseconds(before),)
    ).rowcount


def entry(conn: sqlite3.Connection, domain: str, now: datetime) -> StsCacheEntry:
    policy = conn.execute(
        f"SELECT {stsrows.COLUMNS} FROM mta_sts_policies WHERE domain = ? AND expires > ?",
        (domain, microseconds(now)),
    ).fetchone()
    failure = conn.execute(
        f"SELECT {stsrows.FAILURE_COLUMNS} FROM mta_sts_failures WHERE domain = ?", (domain,)
    ).fetchone()
    return StsCacheEntry(
        _policy(policy) if policy is not None else None,
        _failure(failure) if failure is not None else None,
    )
