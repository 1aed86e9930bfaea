"""SQLite queries for ACME DNS-01 challenge records (table ``acme_challenges``, schema version
17), http-01/tls-alpn-01 answers (table ``acme_answers``, schema version 33) and the shared
certificate and its lease (``acme_certificates``, ``acme_leases``, schema version 35) and the
shared account (``acme_accounts``, schema version 47): plain functions over a connection, run by
:class:`~.store.SqliteStore` on its reader threads or its writer.

A record (or an answer) lives from the attempt that publishes it to the end of that attempt, or
to its expiry if the attempt never ends (a crash): expired rows are left out of every read and
deleted by the next write. Removing the domain removes its records (``ON DELETE CASCADE``).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from pillarbox.errors import AlreadyExists, NotFound, TooManyEntries
from pillarbox.store.types import (
    AcmeAccount,
    AcmeAnswer,
    AcmeCertificate,
    AcmeChallengeRecord,
    AcmeLease,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _us(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND


def add_challenge(conn: sqlite3.Connection, record: AcmeChallengeRecord) -> None:
    if conn.execute("SELECT 1 FROM domains WHERE name = ?", (record.domain,)).fetchone() is None:
        raise NotFound(f"no domain {record.domain}")
    expires = _us(record.expires)
    conn.execute("DELETE FROM acme_challenges WHERE expires <= ?", (_us(datetime.now(UTC)),))
    conn.execute(
        "INSERT INTO acme_challenges (domain, name, value, expires) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name, value) DO UPDATE SET domain = excluded.domain, "
        "expires = excluded.expires",
        (record.domain, record.name, record.value, expires),
    )


def remove_challenge(conn: sqlite3.Connection, name: str, value: str) -> None:
    conn.execute("DELETE FROM acme_challenges WHERE name = ? AND value = ?", (name, value))


def list_challenges(
    conn: sqlite3.Connection, domain: str, now: datetime
) -> list[AcmeChallengeRecord]:
    rows = conn.execute(
        "SELECT domain, name, value, expires FROM acme_challenges "
        "WHERE domain = ? AND expires > ? ORDER BY name, value",
        (domain, _us(now)),
    )
    return [
        AcmeChallengeRecord(domain, name, value, _EPOCH + expires * _MICROSECOND)
        for domain, name, value, expires in rows
    ]


def add_answer(conn: sqlite3.Connection, answer: AcmeAnswer, limit: int) -> None:
    conn.execute("DELETE FROM acme_answers WHERE expires <= ?", (_us(datetime.now(UTC)),))
    row = conn.execute(
        "SELECT value FROM acme_answers WHERE kind = ? AND key = ?", (answer.kind, answer.key)
    ).fetchone()
    if row is None:
        (pending,) = conn.execute(
            "SELECT count(*) FROM acme_answers WHERE kind = ?", (answer.kind,)
        ).fetchone()
        if pending >= limit:
            raise TooManyEntries(f"{pending} {answer.kind} answers pending (limit {limit})")
    elif row[0] != answer.value:
        raise AlreadyExists(f"another attempt's {answer.kind} answer for {answer.key} is pending")
    conn.execute(
        "INSERT INTO acme_answers (kind, key, value, expires) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (kind, key) DO UPDATE SET expires = excluded.expires",
        (answer.kind, answer.key, answer.value, _us(answer.expires)),
    )


def remove_answer(conn: sqlite3.Connection, kind: str, key: str, value: str) -> None:
    conn.execute(
        "DELETE FROM acme_answers WHERE kind = ? AND key = ? AND value = ?", (kind, key, value)
    )


def answer_value(conn: sqlite3.Connection, kind: str, key: str, now: datetime) -> str | None:
    row = conn.execute(
        "SELECT value FROM acme_answers WHERE kind = ? AND key = ? AND expires > ?",
        (kind, key, _us(now)),
    ).fetchone()
    return None if row is None else str(row[0])


def list_answers(
    conn: sqlite3.Connection, kind: str, now: datetime, limit: int
) -> list[AcmeAnswer]:
    rows = conn.execute(
        "SELECT key, value, expires FROM acme_answers WHERE kind = ? AND expires > ? "
        "ORDER BY key LIMIT ?",
        (kind, _us(now), limit),
    )
    return [
        AcmeAnswer(kind, key, value, _EPOCH + expires * _MICROSECOND)
        for key, value, expires in rows
    ]


def _time(us: int) -> datetime:
    return _EPOCH + us * _MICROSECOND


def certificate(conn: sqlite3.Connection, scope: str) -> AcmeCertificate | None:
    row = conn.execute(
        "SELECT chain, key, not_after FROM acme_certificates WHERE scope = ?", (scope,)
    ).fetchone()
    if row is None:
        return None
    return AcmeCertificate(scope, bytes(row[0]), bytes(row[1]), _time(row[2]))


def put_certificate(conn: sqlite3.Connection, cert: AcmeCertificate) -> bool:
    row = conn.execute(
        "INSERT INTO acme_certificates (scope, chain, key, not_after) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (scope) DO UPDATE SET chain = excluded.chain, key = excluded.key, "
        "not_after = excluded.not_after WHERE acme_certificates.not_after < excluded.not_after "
        "RETURNING 1",
        (cert.scope, cert.chain_pem, cert.key_pem, _us(cert.not_after)),
    ).fetchone()
    return row is not None


def account(conn: sqlite3.Connection, directory: str) -> AcmeAccount | None:
    row = conn.execute(
        "SELECT key, url FROM acme_accounts WHERE directory = ?", (directory,)
    ).fetchone()
    return None if row is None else AcmeAccount(directory, bytes(row[0]), row[1])


def add_account(conn: sqlite3.Connection, acct: AcmeAccount) -> AcmeAccount:
    # Insert if absent, then read back: a stored key is replaced only by replace_account.
    conn.execute(
        "INSERT INTO acme_accounts (directory, key, url) VALUES (?, ?, ?) "
        "ON CONFLICT (directory) DO NOTHING",
        (acct.directory, acct.key_pem, acct.url),
    )
    stored = account(conn, acct.directory)
    assert stored is not None  # written or kept just above, in this transaction
    return stored


def replace_account(conn: sqlite3.Connection, old_key_pem: bytes, acct: AcmeAccount) -> AcmeAccount:
    # Compare-and-swap on the old key: a node that replaced it first keeps its replacement.
    conn.execute(
        "UPDATE acme_accounts SET key = ?, url = ? WHERE directory = ? AND key = ?",
        (acct.key_pem, acct.url, acct.directory, old_key_pem),
    )
    return add_account(conn, acct)


def set_account_url(conn: sqlite3.Connection, directory: str, key_pem: bytes, url: str) -> None:
    conn.execute(
        "UPDATE acme_accounts SET url = ? WHERE directory = ? AND key = ?",
        (url, directory, key_pem),
    )


def claim_lease(
    conn: sqlite3.Connection,
    scope: str,
    holder: str,
    now: datetime,
    until: datetime,
    force: bool,
) -> AcmeLease:
    conn.execute(
        "INSERT INTO acme_leases (scope, holder, expires, failures) VALUES (?, ?, ?, 0) "
        "ON CONFLICT (scope) DO UPDATE SET holder = excluded.holder, expires = excluded.expires "
        "WHERE acme_leases.expires <= ? OR acme_leases.holder = excluded.holder "
        "OR (? AND acme_leases.holder = '')",
        (scope, holder, _us(until), _us(now), force),
    )
    stands = lease(conn, scope)
    assert stands is not None  # written or kept just above, in this transaction
    return stands


def lease(conn: sqlite3.Connection, scope: str) -> AcmeLease | None:
    row = conn.execute(
        "SELECT holder, expires, failures FROM acme_leases WHERE scope = ?", (scope,)
    ).fetchone()
    return None if row is None else AcmeLease(scope, row[0], _time(row[1]), row[2])


def end_lease(
    conn: sqlite3.Connection, scope: str, holder: str, failures: int, until: datetime
) -> None:
    if failures == 0:
        conn.execute("DELETE FROM acme_leases WHERE scope = ? AND holder = ?", (scope, holder))
        return
    conn.execute(
        "UPDATE acme_leases SET holder = '', expires = ?, failures = ? "
        "WHERE scope = ? AND holder = ?",
        (_us(until), failures, scope, holder),
    )
