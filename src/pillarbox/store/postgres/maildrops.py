"""POP3 maildrop locks across nodes (RFC 1939 §4): PostgreSQL advisory locks.

A POP3 session holds its account's maildrop exclusively from login to QUIT, whichever node
it reached: two sessions would each number the messages and each delete at QUIT by those
numbers. The lock is PostgreSQL's session-level advisory lock, taken on one connection per
node kept for the purpose.

Implementation notes:

- **A crashed node frees its locks**: its connection ends and PostgreSQL releases what it held,
  with no lease to expire and nothing to clean up.
- **Keys** are (store key, account id): advisory locks are per database, and several stores may
  share one database in schemas of their own (tests do); the store key is derived from the
  store's notification channel, which names its schema.
- **This node's own sessions** are counted here first: a session-level advisory lock is
  re-entrant on its connection, so the database would grant this node's second session too.
- **A broken connection** loses the locks it held: the node's own sessions stay guarded by
  the count, and the next lock or unlock reconnects and takes the remaining ones again (one
  another node took meanwhile is that node's; both sessions then run, as before this module).
"""

from __future__ import annotations

import asyncio
import logging
import zlib

import psycopg
from psycopg.rows import TupleRow

from pillarbox.errors import StorageError

log = logging.getLogger(__name__)


def store_key(channel: str) -> int:
    """The first half of every lock key of the store listening on ``channel``: a signed 32-bit
    integer, as ``pg_try_advisory_lock(int4, int4)`` takes."""
    return zlib.crc32(channel.encode()) - 2**31


class MaildropLocks:
    """One node's maildrop locks on one dedicated connection, made when first needed."""

    def __init__(self, conninfo: str, channel: str, *, timeout: float) -> None:
        self._conninfo = conninfo
        self._key = store_key(channel)
        self._timeout = timeout
        self._held: set[int] = set()
        self._conn: psycopg.AsyncConnection[TupleRow] | None = None
        self._lock = asyncio.Lock()

    async def acquire(self, account_id: int) -> bool:
        async with self._lock:
            if account_id in self._held:
                return False
            conn = await self._connection()
            try:
                cur = await conn.execute(
                    "SELECT pg_try_advisory_lock(%s, %s)", (self._key, account_id)
                )
                row = await cur.fetchone()
            except psycopg.Error as exc:
                await self._lost(exc)
                raise StorageError(f"cannot lock the maildrop: {exc}") from exc
            if row is None or not row[0]:
                return False
            self._held.add(account_id)
            return True

    async def release(self, account_id: int) -> None:
        async with self._lock:
            if account_id not in self._held:
                return
            self._held.discard(account_id)
            if self._conn is None:
                return  # the connection that held it is gone, and the lock with it
            try:
                await self._conn.execute(
                    "SELECT pg_advisory_unlock(%s, %s)", (self._key, account_id)
                )
            except psycopg.Error as exc:
                await self._lost(exc)

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
            self._held.clear()
            if conn is not None:
                await conn.close()

    async def _connection(self) -> psycopg.AsyncConnection[TupleRow]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=max(1, int(self._timeout))
            )
        except psycopg.Error as exc:
            raise StorageError(f"cannot lock the maildrop: {exc}") from exc
        self._conn = conn
        for account_id in sorted(self._held):  # taken again after a broken connection
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (self._key, account_id))
            row = await cur.fetchone()
            if row is None or not row[0]:
                log.warning("maildrop lock of account %d taken by another node", account_id)
        return conn

    async def _lost(self, exc: psycopg.Error) -> None:
        log.warning("maildrop lock connection lost: %s", exc)
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
