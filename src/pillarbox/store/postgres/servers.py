"""Which Pillarbox may migrate a PostgreSQL store: one with no server running on it.

Every server (``pillarbox serve``, each node) holds a session-level *shared* advisory lock on
one connection kept for its lifetime; a migration needs the *exclusive* one and only tries it.
So an admin command of a newer version refuses to upgrade the schema under running nodes (they
would go on writing rows without what the new migrations added, docs/upgrading.md), and a new
server migrates at start only when it is the only one.

Implementation notes:

- **A crashed node frees its lock**: its connection ends and PostgreSQL drops what it held.
- **Key**: (store key, :data:`SERVERS`) in the two-integer key space the maildrop locks use
  (:mod:`.maildrops`), so stores in schemas of one database keep apart; their second half is
  an account id, never negative, so :data:`SERVERS` cannot meet one.
- **Nodes (or commands) starting together**: the first to get the exclusive lock migrates (a
  node then holds the shared one like the rest); the others wait for the shared lock, which a
  migration holds off, and find the schema current. A node or command that finds it behind
  while others hold the shared lock (nodes of an older version) refuses rather than migrate
  under them.
- **Servers of a version before this one** hold no lock: nothing here can see them
  (docs/upgrading.md says to stop every node first all the same).
- **A lost connection** (the database restarted, the backend terminated, the network cut)
  loses the node's shared lock. :class:`Presence` notices at once (the connection's socket
  reports it) and re-takes it on a new connection, retrying after ``postgres.listen_retry``
  seconds, doubled after each failure up to :data:`RETAKE_MAX`. Meanwhile nothing keeps a
  migration out, so the lock is only *tried* on return: held exclusively (a migration in
  progress, or a node starting alone and checking the schema) or taken with a schema newer
  than this code's, the node is refused as a starting one would be — :attr:`Presence.fault`,
  raised by the store's ``check_schema``, stops the server cleanly at its next check
  (``server.schema_check_interval``) and ``pillarbox serve`` exits 1 (docs/upgrading.md).
"""

from __future__ import annotations

import asyncio
import contextlib

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from pillarbox.errors import SchemaTooNew, StoreInUse
from pillarbox.observability.log import Log
from pillarbox.store.postgres.maildrops import store_key
from pillarbox.store.postgres.migrations import LATEST_VERSION, migrate, schema_version

Conn = AsyncConnection[TupleRow]

#: Second half of the servers' lock key: below every account id (the maildrop locks' half).
SERVERS = -1
#: Longest wait, in seconds, between two attempts to re-take a lost lock.
RETAKE_MAX = 30.0

_log = Log("store")


async def join(conn: Conn, channel: str) -> None:
    """Hold the servers' shared lock on ``conn`` (autocommit, kept open by the caller for the
    server's lifetime), after migrating the schema if this is the only server."""
    key = (store_key(channel), SERVERS)
    if await _try(conn, "SELECT pg_try_advisory_lock(%s, %s)", key):
        await migrate(conn)  # alone: no server runs on an older schema
        await conn.execute("SELECT pg_advisory_lock_shared(%s, %s)", key)
        await conn.execute("SELECT pg_advisory_unlock(%s, %s)", key)
        return
    if not await _try(conn, "SELECT pg_try_advisory_lock_shared(%s, %s)", key):
        _log.info("waiting for another Pillarbox's migration of the store")
        await conn.execute("SELECT pg_advisory_lock_shared(%s, %s)", key)
    current = await schema_version(conn)
    if current < LATEST_VERSION:
        raise StoreInUse(_refusal(current, "other servers run on it: stop every node first"))
    await migrate(conn)  # nothing to apply; refuses a schema newer than this code


async def migrate_unless_served(conn: Conn, channel: str) -> None:
    """Migrate the schema on ``conn`` (autocommit) if it is behind, only while no server holds
    the shared lock; the exclusive lock goes with ``conn``'s session. Another command's or
    node's migration in progress (the exclusive lock held) is waited for, then looked at."""
    key = (store_key(channel), SERVERS)
    while (current := await schema_version(conn)) < LATEST_VERSION:
        if await _try(conn, "SELECT pg_try_advisory_lock(%s, %s)", key):
            break
        if await _try(conn, "SELECT pg_try_advisory_lock_shared(%s, %s)", key):
            # No migration holds it, so servers do; one may have just migrated and started.
            behind = await schema_version(conn) < LATEST_VERSION
            await conn.execute("SELECT pg_advisory_unlock_shared(%s, %s)", key)
            if behind:
                raise StoreInUse(
                    _refusal(current, "a server runs on it: stop the server (every node) first")
                )
            continue
        await conn.execute("SELECT pg_advisory_lock_shared(%s, %s)", key)  # its end
        await conn.execute("SELECT pg_advisory_unlock_shared(%s, %s)", key)
    await migrate(conn)  # also the refusal of a schema newer than this code


class Presence:
    """A serving store's hold on the servers' shared lock: ``conn`` (autocommit) took it by
    :func:`join`; :meth:`start` watches it and re-takes the lock when the connection breaks."""

    def __init__(
        self, conn: Conn, conninfo: str, channel: str, *, retry: float, timeout: float
    ) -> None:
        self._conn: Conn | None = conn
        self._conninfo = conninfo
        self._key = (store_key(channel), SERVERS)
        self._retry = retry
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None
        #: Why this node must stop: the lock lost to a migration, or a newer schema found.
        self.fault: StoreInUse | SchemaTooNew | None = None

    @property
    def held(self) -> bool:
        """Whether a connection holds the lock now (False while it is being re-taken)."""
        return self._conn is not None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._keep(), name="pillarbox-pg-presence"
        )

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        conn, self._conn = self._conn, None
        if conn is not None:
            # Released here, not left to go with the connection: the server ends the closed
            # connection's backend, and frees its locks, in its own time after close()
            # returned; a migration waiting for the exclusive lock then waited on that.
            # Bounded: a connection cut without a reset (the network gone) would otherwise
            # hold close(), and the server's stop, until TCP gave up.
            with contextlib.suppress(psycopg.Error, TimeoutError):
                async with asyncio.timeout(self._timeout):
                    await conn.execute("SELECT pg_advisory_unlock_shared(%s, %s)", self._key)
            await conn.close()

    async def _keep(self) -> None:
        delay = self._retry
        while True:
            conn = self._conn
            if conn is not None:
                try:
                    # Nothing is LISTENed to here: the wait ends only when the connection does.
                    async for _ in conn.notifies():
                        pass
                except psycopg.Error as exc:
                    _log.warning("the servers' lock was lost with its connection", error=str(exc))
                self._conn = None
                with contextlib.suppress(psycopg.Error):
                    await conn.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETAKE_MAX)
            try:
                self._conn = await self._retake()
            except psycopg.Error as exc:
                _log.warning("cannot re-take the servers' lock yet", error=str(exc), retry=delay)
                continue
            if self.fault is not None:
                _log.error(
                    "the store changed hands while the servers' lock was lost; stopping",
                    error=str(self.fault),
                )
                return
            _log.info("the servers' lock was re-taken")
            delay = self._retry

    async def _retake(self) -> Conn | None:
        """A new connection holding the shared lock; None with :attr:`fault` set when the
        node must not go on."""
        conn = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, connect_timeout=max(1, int(self._timeout))
        )
        try:
            held = await _try(conn, "SELECT pg_try_advisory_lock_shared(%s, %s)", self._key)
            current = await schema_version(conn) if held else 0
        except BaseException:
            await conn.close()
            raise
        if held and current <= LATEST_VERSION:
            return conn
        await conn.close()
        self.fault = (
            SchemaTooNew(current, LATEST_VERSION)
            if held
            else StoreInUse(
                "a migration took the store while this server's lock was lost (its database "
                "connection broke): start the server again once the migration is over "
                "(docs/upgrading.md)"
            )
        )
        return None


def _refusal(current: int, why: str) -> str:
    return (
        f"the store needs upgrading from schema {current} to {LATEST_VERSION}, but {why} "
        "(docs/upgrading.md)"
    )


async def _try(conn: Conn, query: str, key: tuple[int, int]) -> bool:
    cur = await conn.execute(query, key)
    row = await cur.fetchone()
    return row is not None and bool(row[0])
