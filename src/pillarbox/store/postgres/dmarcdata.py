"""PostgreSQL queries of the DMARC aggregate reports (table ``dmarc_observations``); async
functions over a connection, run by :class:`~.store.PostgresStore`. Semantics as in the SQLite
backend; the DKIM results are a ``jsonb`` array of ``[domain, selector, result]``.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from pillarbox.store.types import DmarcObservation

Conn = psycopg.AsyncConnection[TupleRow]

_COLUMNS = (
    "received, policy_domain, header_from, envelope_from, source_ip, disposition, "
    "dkim_aligned, spf_aligned, spf_domain, spf_result, dkim, policy_record, override, "
    "override_comment, discovery"
)


async def record(conn: Conn, o: DmarcObservation) -> None:
    await conn.execute(
        f"INSERT INTO dmarc_observations ({_COLUMNS}) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            o.received,
            o.policy_domain,
            o.header_from,
            o.envelope_from,
            o.source_ip,
            o.disposition,
            o.dkim_aligned,
            o.spf_aligned,
            o.spf_domain,
            o.spf_result,
            Jsonb([list(d) for d in o.dkim]),
            o.policy_record,
            o.override,
            o.override_comment,
            o.discovery,
        ),
    )


async def observations(conn: Conn, until: datetime) -> list[DmarcObservation]:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM dmarc_observations WHERE received < %s ORDER BY received, id",
        (until,),
    )
    return [
        DmarcObservation(
            received=row[0],
            policy_domain=row[1],
            header_from=row[2],
            envelope_from=row[3],
            source_ip=row[4],
            disposition=row[5],
            dkim_aligned=row[6],
            spf_aligned=row[7],
            spf_domain=row[8],
            spf_result=row[9],
            dkim=tuple((d, s, r) for d, s, r in row[10]),
            policy_record=row[11],
            override=row[12],
            override_comment=row[13],
            discovery=row[14],
        )
        for row in await cur.fetchall()
    ]


async def delete(conn: Conn, until: datetime, domain: str | None) -> int:
    cur = await conn.execute(
        "DELETE FROM dmarc_observations WHERE received < %s "
        "AND (%s::text IS NULL OR policy_domain = %s)",
        (until, domain, domain),
    )
    return cur.rowcount


async def claim_run(conn: Conn, period_end: datetime, scope: str, node: str) -> bool:
    cur = await conn.execute(
        "INSERT INTO dmarc_report_runs (period_end, scope, node) VALUES (%s, %s, %s) "
        "ON CONFLICT DO NOTHING",
        (period_end, scope, node),
    )
    return cur.rowcount == 1
