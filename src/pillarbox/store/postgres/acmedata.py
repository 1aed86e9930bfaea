"""PostgreSQL queries for ACME DNS-01 challenge records (table ``acme_challenges``, migration
12), http-01/tls-alpn-01 answers (table ``acme_answers``, migration 28) and the shared
certificate and its lease (``acme_certificates``, ``acme_leases``, migration 30) and the
shared account (``acme_accounts``, migration 41): plain async functions over a connection, run
by :class:`~.store.PostgresStore`. The life of a record is
that of the SQLite backend's (its ``acmedata`` notes): read while unexpired, deleted by its
attempt or by the next write after it expired. Adds of answers take an advisory lock per kind,
so that two nodes adding at once cannot both pass the limit or both claim one key. A lease
(or a certificate) is claimed (stored) by one upsert whose condition PostgreSQL checks on the
row it locks: of two nodes at once, the second sees the first's row. An account is inserted
if absent and then read back: of two nodes at once, the second's insert waits for the first's
row and does nothing, and its read (a statement of its own, so under READ COMMITTED a snapshot
taken after that row committed) returns the first node's account. A deactivated account is
replaced by a compare-and-swap on its key (``replace_account``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from psycopg.rows import TupleRow

from pillarbox.errors import AlreadyExists, NotFound, TooManyEntries
from pillarbox.store.types import (
    AcmeAccount,
    AcmeAnswer,
    AcmeCertificate,
    AcmeChallengeRecord,
    AcmeLease,
)

Conn = psycopg.AsyncConnection[TupleRow]

#: ``pg_advisory_xact_lock`` class of the answers' adds ("acme" in ASCII).
_ANSWER_LOCK = 0x61636D65


async def add_challenge(conn: Conn, record: AcmeChallengeRecord) -> None:
    cur = await conn.execute("SELECT 1 FROM domains WHERE name = %s FOR SHARE", (record.domain,))
    if await cur.fetchone() is None:
        raise NotFound(f"no domain {record.domain}")
    await conn.execute("DELETE FROM acme_challenges WHERE expires <= %s", (datetime.now(UTC),))
    await conn.execute(
        "INSERT INTO acme_challenges (domain, name, value, expires) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (name, value) DO UPDATE SET domain = excluded.domain, "
        "expires = excluded.expires",
        (record.domain, record.name, record.value, record.expires),
    )


async def remove_challenge(conn: Conn, name: str, value: str) -> None:
    await conn.execute("DELETE FROM acme_challenges WHERE name = %s AND value = %s", (name, value))


async def list_challenges(conn: Conn, domain: str, now: datetime) -> list[AcmeChallengeRecord]:
    cur = await conn.execute(
        "SELECT domain, name, value, expires FROM acme_challenges "
        'WHERE domain = %s AND expires > %s ORDER BY name COLLATE "C", value COLLATE "C"',
        (domain, now),
    )
    return [AcmeChallengeRecord(*row) for row in await cur.fetchall()]


async def add_answer(conn: Conn, answer: AcmeAnswer, limit: int) -> None:
    lock = (_ANSWER_LOCK, answer.kind)
    await conn.execute("SELECT pg_advisory_xact_lock(%s::integer, hashtext(%s))", lock)
    await conn.execute("DELETE FROM acme_answers WHERE expires <= %s", (datetime.now(UTC),))
    cur = await conn.execute(
        "SELECT value FROM acme_answers WHERE kind = %s AND key = %s", (answer.kind, answer.key)
    )
    row = await cur.fetchone()
    if row is None:
        cur = await conn.execute(
            "SELECT count(*) FROM acme_answers WHERE kind = %s", (answer.kind,)
        )
        counted = await cur.fetchone()
        pending = counted[0] if counted else 0
        if pending >= limit:
            raise TooManyEntries(f"{pending} {answer.kind} answers pending (limit {limit})")
    elif row[0] != answer.value:
        raise AlreadyExists(f"another attempt's {answer.kind} answer for {answer.key} is pending")
    await conn.execute(
        "INSERT INTO acme_answers (kind, key, value, expires) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (kind, key) DO UPDATE SET expires = excluded.expires",
        (answer.kind, answer.key, answer.value, answer.expires),
    )


async def remove_answer(conn: Conn, kind: str, key: str, value: str) -> None:
    await conn.execute(
        "DELETE FROM acme_answers WHERE kind = %s AND key = %s AND value = %s", (kind, key, value)
    )


async def answer_value(conn: Conn, kind: str, key: str, now: datetime) -> str | None:
    cur = await conn.execute(
        "SELECT value FROM acme_answers WHERE kind = %s AND key = %s AND expires > %s",
        (kind, key, now),
    )
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def list_answers(conn: Conn, kind: str, now: datetime, limit: int) -> list[AcmeAnswer]:
    cur = await conn.execute(
        "SELECT kind, key, value, expires FROM acme_answers WHERE kind = %s AND expires > %s "
        'ORDER BY key COLLATE "C" LIMIT %s',
        (kind, now, limit),
    )
    return [AcmeAnswer(*row) for row in await cur.fetchall()]


async def certificate(conn: Conn, scope: str) -> AcmeCertificate | None:
    cur = await conn.execute(
        "SELECT chain, key, not_after FROM acme_certificates WHERE scope = %s", (scope,)
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return AcmeCertificate(scope, bytes(row[0]), bytes(row[1]), row[2])


async def put_certificate(conn: Conn, cert: AcmeCertificate) -> bool:
    cur = await conn.execute(
        "INSERT INTO acme_certificates (scope, chain, key, not_after) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (scope) DO UPDATE SET chain = excluded.chain, key = excluded.key, "
        "not_after = excluded.not_after WHERE acme_certificates.not_after < excluded.not_after "
        "RETURNING 1",
        (cert.scope, cert.chain_pem, cert.key_pem, cert.not_after),
    )
    return await cur.fetchone() is not None


async def account(conn: Conn, directory: str) -> AcmeAccount | None:
    cur = await conn.execute(
        "SELECT key, url FROM acme_accounts WHERE directory = %s", (directory,)
    )
    row = await cur.fetchone()
    return None if row is None else AcmeAccount(directory, bytes(row[0]), row[1])


async def add_account(conn: Conn, acct: AcmeAccount) -> AcmeAccount:
    # Insert if absent, then read back: a stored key is replaced only by replace_account.
    await conn.execute(
        "INSERT INTO acme_accounts (directory, key, url) VALUES (%s, %s, %s) "
        "ON CONFLICT (directory) DO NOTHING",
        (acct.directory, acct.key_pem, acct.url),
    )
    stored = await account(conn, acct.directory)
    assert stored is not None  # written just above, or another node's row it waited for
    return stored


async def replace_account(conn: Conn, old_key_pem: bytes, acct: AcmeAccount) -> AcmeAccount:
    # Compare-and-swap on the old key: of two nodes at once, the second's UPDATE waits for the
    # first's row, finds its key no longer the old one (READ COMMITTED re-checks the condition
    # on the row it locked) and changes nothing; add_account then reads the first's back.
    await conn.execute(
        "UPDATE acme_accounts SET key = %s, url = %s WHERE directory = %s AND key = %s",
        (acct.key_pem, acct.url, acct.directory, old_key_pem),
    )
    return await add_account(conn, acct)


async def set_account_url(conn: Conn, directory: str, key_pem: bytes, url: str) -> None:
    await conn.execute(
        "UPDATE acme_accounts SET url = %s WHERE directory = %s AND key = %s",
        (url, directory, key_pem),
    )


async def claim_lease(
    conn: Conn, scope: str, holder: str, now: datetime, until: datetime, force: bool
) -> AcmeLease:
    await conn.execute(
        "INSERT INTO acme_leases (scope, holder, expires, failures) VALUES (%s, %s, %s, 0) "
        "ON CONFLICT (scope) DO UPDATE SET holder = excluded.holder, expires = excluded.expires "
        "WHERE acme_leases.expires <= %s OR acme_leases.holder = excluded.holder "
        "OR (%s AND acme_leases.holder = '')",
        (scope, holder, until, now, force),
    )
    stands = await lease(conn, scope)
    assert stands is not None  # written or kept just above, in this transaction
    return stands


async def lease(conn: Conn, scope: str) -> AcmeLease | None:
    cur = await conn.execute(
        "SELECT holder, expires, failures FROM acme_leases WHERE scope = %s", (scope,)
    )
    row = await cur.fetchone()
    return None if row is None else AcmeLease(scope, row[0], row[1], row[2])


async def end_lease(conn: Conn, scope: str, holder: str, failures: int, until: datetime) -> None:
    if failures == 0:
        await conn.execute(
            "DELETE FROM acme_leases WHERE scope = %s AND holder = %s", (scope, holder)
        )
        return
    await conn.execute(
        "UPDATE acme_leases SET holder = '', expires = %s, failures = %s "
        "WHERE scope = %s AND holder = %s",
        (until, failures, scope, holder),
    )
