"""SQLite queries of the TLS-RPT session results (table ``tls_results``, RFC 8460): plain
functions over a connection, as in :mod:`.dmarcdata`. Times are microseconds since the epoch;
the string lists are JSON arrays.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from pillarbox.store import tlsrows
from pillarbox.store.sqlite.dmarcdata import EPOCH, MICROSECOND, microseconds
from pillarbox.store.types import TlsSessionResult


def record(conn: sqlite3.Connection, r: TlsSessionResult) -> None:
    conn.execute(
        f"INSERT INTO tls_results ({tlsrows.COLUMNS}) "
        f"VALUES ({', '.join('?' * tlsrows.PLACEHOLDERS)})",
        tlsrows.row(
            r, microseconds(r.recorded), json.dumps(r.policy_strings), json.dumps(r.mx_patterns)
        ),
    )


def results(conn: sqlite3.Connection, until: datetime) -> list[TlsSessionResult]:
    rows = conn.execute(
        f"SELECT {tlsrows.COLUMNS} FROM tls_results WHERE recorded < ? ORDER BY recorded, id",
        (microseconds(until),),
    )
    return [
        tlsrows.result(row, EPOCH + row[0] * MICROSECOND, json.loads(row[3]), json.loads(row[4]))
        for row in rows
    ]


def delete(conn: sqlite3.Connection, until: datetime) -> int:
    return conn.execute(
        "DELETE FROM tls_results WHERE recorded < ?", (microseconds(until),)
    ).rowcount
