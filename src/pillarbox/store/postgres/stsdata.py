"""PostgreSQL queries of the MTA-STS policy cache (table ``mta_sts_policies``, RFC 8461 §5.1)
and its failed fetches (``mta_sts_failures``, §3.3); async functions over a connection, as in
:mod:`.tlsdata`; the MX patterns a ``jsonb`` array."""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from pillarbox.store import stsrows
from pillarbox.store.types import StsCacheEntry, StsFetchFailure, StsPolicyRecord

Conn = psycopg.AsyncConnection[TupleRow]


async def save(conn: Conn, p: StsPolicyRecord) -> None:
    await conn.execute(
        f"INSERT INTO mta_sts_policies ({stsrows.COLUMNS}) "
        f"VALUES ({', '.join(['%s'] * stsrows.PLACEHOLDERS)}) "
        "ON CONFLICT (domain) DO UPDATE SET policy_id = excluded.policy_id, "
        "mode = excluded.mode, mx = excluded.mx, max_age = excluded.max_age, "
        "fetched = excluded.fetched, expires = excluded.expires "
        "WHERE excluded.fetched >= mta_sts_policies.fetched",
        stsrows.row(p, Jsonb(list(p.mx)), p.fetched, p.expires),
    )
    await conn.execute(
        "DELETE FROM mta_sts_failures WHERE domain = %s AND failed <= %s", (p.domain, p.fetched)
    )


async def unexpired(conn: Conn, now: datetime) -> list[StsPolicyRecord]:
    cur = await conn.execute(
        f"SELECT {stsrows.COLUMNS} FROM mta_sts_policies WHERE expires > %s "
        "ORDER BY fetched DESC, domain",
        (now,),
    )
    return [_policy(r) for r in await cur.fetchall()]


def _policy(row: TupleRow) -> StsPolicyRecord:
    return stsrows.record(row, row[3], row[5])


def _failure(row: TupleRow) -> StsFetchFailure:
    return stsrows.failure(row, row[2])


async def prune(conn: Conn, now: datetime) -> int:
    cur = await conn.execute("DELETE FROM mta_sts_policies WHERE expires <= %s", (now,))
    return cur.rowcount


async def save_failure(conn: Conn, f: StsFetchFailure) -> None:
    await conn.execute(
        f"INSERT INTO mta_sts_failures ({stsrows.FAILURE_COLUMNS}) "
        f"VALUES ({', '.join(['%s'] * stsrows.FAILURE_PLACEHOLDERS)}) "
        "ON CONFLICT (domain) DO UPDATE SET policy_id = excluded.policy_id, "
        "failed = excluded.failed, result_type = excluded.result_type, reason = excluded.reason "
        "WHERE excluded.failed >= mta_sts_failures.failed",
        stsrows.failure_row(f, f.failed),
    )


async def failures(conn: Conn, since: datetime) -> list[StsFetchFailure]:
    cur = await conn.execute(
        f"SELECT {stsrows.FAILURE_COLUMNS} FROM mta_sts_failures WHERE failed >= %s "
        "ORDER BY failed DESC, domain",
        (since,),
    )
    return [_failure(r) for r in await cur.fetchall()]


async def prune_failures(conn: Conn, before: datetime) -> int:
    cur = await conn.execute("DELETE FROM mta_sts_failures WHERE failed < %s", (before,))
    return cur.rowcount


async def entry(conn: Conn, domain: str, now: datetime) -> StsCacheEntry:
    # One statement, one round trip: this read comes before most deliveries (net.mtasts).
    policy_columns = ", ".join(f"p.{c}" for c in stsrows.COLUMNS.split(", "))
    failure_columns = ", ".join(f"f.{c}" for c in stsrows.FAILURE_COLUMNS.split(", "))
    cur = await conn.execute(
        f"SELECT {policy_columns}, {failure_columns} FROM (SELECT %s::text AS domain) d "
        "LEFT JOIN mta_sts_policies p ON p.domain = d.domain AND p.expires > %s "
        "LEFT JOIN mta_sts_failures f ON f.domain = d.domain",
        (domain, now),
    )
    row = await cur.fetchone()
    assert row is not None
    policy, failure = row[: stsrows.PLACEHOLDERS], row[stsrows.PLACEHOLDERS :]
    return StsCacheEntry(
        _policy(policy) if policy[0] is not None else None,
        _failure(failure) if failure[0] is not None else None,
    )
