"""The change feed across nodes: NOTIFY inside each write transaction, LISTEN on every node.

A write that changes mailboxes sends its :class:`~pillarbox.store.types.Change` values with
``pg_notify`` in the same transaction, so PostgreSQL delivers them at COMMIT and only if the
transaction committed: a node never announces a write that was rolled back, and a subscriber
that reads ``changes_since`` after the wake-up finds the change. Every node, the writer's own
included, receives them on one dedicated ``LISTEN`` connection and publishes them into its
in-process :class:`~pillarbox.store.feed.ChangeHub` (feed.py's notes: hence no direct publish
of a node's own writes).

Implementation notes:

- **Payload**: one line per change, ``account mailbox kind-letter modseq``; a transaction's
  changes are split into notifications under PostgreSQL's 8,000-byte payload limit.
- **Channel**: one per schema (``pillarbox`` plus the schema name), so several stores in one
  database (tests use a schema each) never wake each other's subscribers.
- **Loss**: notifications are hints (``Change``). If the LISTEN connection breaks, it is
  re-established after ``retry_delay``; what was sent meanwhile is lost, so on reconnecting the
  listener publishes nothing it cannot know, and IMAP sessions fall back on their own periodic
  checks (NOOP, IDLE's re-check). PostgreSQL itself drops nothing on a live connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Iterable, Iterator

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from pillarbox.store.feed import ChangeHub
from pillarbox.store.types import Change, ChangeKind

log = logging.getLogger(__name__)

#: PostgreSQL refuses NOTIFY payloads of 8,000 bytes or more; keep a margin.
MAX_PAYLOAD = 7_900

_LETTER = {
    ChangeKind.EXISTS: "e",
    ChangeKind.FLAGS: "f",
    ChangeKind.EXPUNGE: "x",
    ChangeKind.MAILBOXES: "m",
    ChangeKind.SUBSCRIPTIONS: "s",
}
_KIND = {letter: kind for kind, letter in _LETTER.items()}


def channel_for(schema: str) -> str:
    """The channel of a schema's changes; a digest where the name would pass PostgreSQL's
    63-byte identifier limit (LISTEN would truncate it, pg_notify refuse it)."""
    name = f"pillarbox.{schema}"
    if len(name.encode()) > 63:
        name = "pillarbox." + hashlib.sha256(schema.encode()).hexdigest()[:32]
    return name


def encode(changes: Iterable[Change]) -> Iterator[str]:
    """Payloads carrying ``changes``, each under :data:`MAX_PAYLOAD` bytes."""
    lines: list[str] = []
    size = 0
    for change in changes:
        line = f"{change.account_id} {change.mailbox_id} {_LETTER[change.kind]} {change.modseq}"
        if lines and size + len(line) + 1 > MAX_PAYLOAD:
            yield "\n".join(lines)
            lines, size = [], 0
        lines.append(line)
        size += len(line) + 1
    if lines:
        yield "\n".join(lines)


def decode(payload: str) -> list[Change]:
    """The changes of one payload; malformed lines (another program on the channel) are
    skipped, never trusted."""
    changes: list[Change] = []
    for line in payload.splitlines():
        parts = line.split(" ")
        if len(parts) != 4 or parts[2] not in _KIND:
            continue
        try:
            account_id, mailbox_id, modseq = int(parts[0]), int(parts[1]), int(parts[3])
        except ValueError:
            continue
        changes.append(Change(account_id, mailbox_id, _KIND[parts[2]], modseq))
    return changes


async def send(
    conn: psycopg.AsyncConnection[TupleRow], channel: str, changes: Iterable[Change]
) -> None:
    """NOTIFY ``changes`` inside the caller's transaction (delivered at COMMIT)."""
    for payload in encode(changes):
        await conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))


class ChangeListener:
    """One LISTEN connection feeding a :class:`ChangeHub`; reconnects when it breaks."""

    def __init__(
        self, conninfo: str, channel: str, hub: ChangeHub, *, retry_delay: float, timeout: float
    ) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._hub = hub
        self._retry_delay = retry_delay
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen before returning: a subscriber that subscribes after ``open()`` misses
        nothing committed after it subscribed."""
        conn = await self._connect()
        self._task = asyncio.get_running_loop().create_task(
            self._run(conn), name="pillarbox-pg-listen"
        )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _connect(self) -> psycopg.AsyncConnection[TupleRow]:
        conn = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, connect_timeout=max(1, int(self._timeout))
        )
        try:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _run(self, conn: psycopg.AsyncConnection[TupleRow] | None) -> None:
        while True:
            try:
                if conn is None:
                    conn = await self._connect()
                    log.warning("change feed listener reconnected; changes meanwhile are lost")
                async for notify in conn.notifies():
                    changes = decode(notify.payload)
                    if changes:
                        self._hub.publish(changes)
            except psycopg.Error as exc:
                log.warning("change feed listener lost its connection: %s", exc)
            finally:
                if conn is not None:
                    with contextlib.suppress(psycopg.Error):
                        await conn.close()
                    conn = None
            await asyncio.sleep(self._retry_delay)
