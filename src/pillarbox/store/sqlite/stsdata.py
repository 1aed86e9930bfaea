"""SQLite queries of the MTA-STS policy cache (table ``mta_sts_policies``, RFC 8461 §5.1):
plain functions over a connection, as in :mod:`.tlsdata`. Times are microseconds since the
epoch; the MX patterns a JSON array."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from pillarbox.store import stsrows
from pillarbox.store.sqlite.dmarcdata import EPOCH, MICROSECOND, microseconds
from pillarbox.store.types import StsPolicyRecord


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


def unexpired(conn: sqlite3.Connection, now: datetime) -> list[StsPolicyRecord]:
    rows = conn.execute(
        f"SELECT {stsrows.COLUMNS} FROM mta_sts_policies WHERE expires > ? "
        "ORDER BY fetched DESC, domain",
        (microseconds(now),),
    )
    return [stsrows.record(r, json.loads(r[3]), EPOCH + r[5] * MICROSECOND) for r in rows]


def prune(conn: sqlite3.Connection, now: datetime) -> int:
    return conn.execute(
        "DELETE FROM mta_sts_policies WHERE expires <= ?", (microseconds(now),)
    ).rowcount
