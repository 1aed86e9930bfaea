"""SQLite queries of the DMARC aggregate reports (table ``dmarc_observations``): plain
functions over a connection, run by :class:`~.store.SqliteStore` on its reader threads or its
writer. Times are microseconds since the epoch, as in the other tables; the DKIM results are a
JSON array of ``[domain, selector, result]``.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

from pillarbox.store.types import DmarcObservation

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_COLUMNS = (
    "received, policy_domain, header_from, envelope_from, source_ip, disposition, "
    "dkim_aligned, spf_aligned, spf_domain, spf_result, dkim, policy_record, override, "
    "override_comment, discovery"
)


def _us(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND


def record(conn: sqlite3.Connection, o: DmarcObservation) -> None:
    conn.execute(
        f"INSERT INTO dmarc_observations ({_COLUMNS}) VALUES ({', '.join('?' * 15)})",
        (
            _us(o.received),
            o.policy_domain,
            o.header_from,
            o.envelope_from,
            o.source_ip,
            o.disposition,
            o.dkim_aligned,
            o.spf_aligned,
            o.spf_domain,
            o.spf_result,
            json.dumps([list(d) for d in o.dkim]),
            o.policy_record,
            o.override,
            o.override_comment,
            o.discovery,
        ),
    )


def observations(conn: sqlite3.Connection, until: datetime) -> list[DmarcObservation]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM dmarc_observations WHERE received < ? ORDER BY received, id",
        (_us(until),),
    )
    return [
        DmarcObservation(
            received=_EPOCH + received * _MICROSECOND,
            policy_domain=policy_domain,
            header_from=header_from,
            envelope_from=envelope_from,
            source_ip=source_ip,
            disposition=disposition,
            dkim_aligned=bool(dkim_aligned),
            spf_aligned=bool(spf_aligned),
            spf_domain=spf_domain,
            spf_result=spf_result,
            dkim=tuple((d, s, r) for d, s, r in json.loads(dkim)),
            policy_record=policy_record,
            override=override,
            override_comment=override_comment,
            discovery=discovery,
        )
        for (
            received,
            policy_domain,
            header_from,
            envelope_from,
            source_ip,
            disposition,
            dkim_aligned,
            spf_aligned,
            spf_domain,
            spf_result,
            dkim,
            policy_record,
            override,
            override_comment,
            discovery,
        ) in rows
    ]


def delete(conn: sqlite3.Connection, until: datetime, domain: str | None) -> int:
    if domain is None:
        cursor = conn.execute("DELETE FROM dmarc_observations WHERE received < ?", (_us(until),))
    else:
        cursor = conn.execute(
            "DELETE FROM dmarc_observations WHERE received < ? AND policy_domain = ?",
            (_us(until), domain),
        )
    return cursor.rowcount


def claim_run(conn: sqlite3.Connection, period_end: datetime, scope: str, node: str) -> bool:
    cursor = conn.execute(
        "INSERT INTO dmarc_report_runs (period_end, scope, node) VALUES (?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        (_us(period_end), scope, node),
    )
    return cursor.rowcount == 1
