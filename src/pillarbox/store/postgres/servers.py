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
- **A lost connection** (the database restarted) loses the node's shared lock, and the node
  runs on without it until it restarts: a migration may then run under it, which its schema
  check (``server.schema_check_interval``) notices.
"""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from pillarbox.errors import StoreInUse
from pillarbox.observability.log import Log
from pillarbox.store.postgres.maildrops import store_key
from pillarbox.store.postgres.migrations import LATEST_VERSION, migrate, schema_version

Conn = AsyncConnection[TupleRow]

#: Second half of the servers' lock key: below every account id (the maildrop locks' half).
SERVERS = -1

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


def _refusal(current: int, why: str) -> str:
    return (
        f"the store needs upgrading from schema {current} to {LATEST_VERSION}, but {why} "
        "(docs/upgrading.md)"
    )


async def _try(conn: Conn, query: str, key: tuple[int, int]) -> bool:
    cur = await conn.execute(query, key)
    row = await cur.fetchone()
    return row is not None and bool(row[0])
