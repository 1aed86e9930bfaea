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
  re-established after ``retry_delay``; what was sent meanwhile is lost, so once listening
  again the listener has the store hint every mailbox someone on this node waits for
  (``rehint``: its MODSEQ as it stands, read after the LISTEN, so nothing falls between): a
  session idling since before the break re-reads what changed in the gap at once, instead of
  at the client's next command — up to the 29 minutes of an IDLE (RFC 2177). PostgreSQL
  itself drops nothing on a live connection.
- **Kept lookups**: a write to what nodes keep in memory (domains, accounts, aliases,
  settings: :mod:`pillarbox.store.directorycache`; models, reputation, lists:
  :mod:`pillarbox.store.evidencecache`) sends, on the same channel and in its transaction, a
  payload ``~`` + a JSON list of :data:`Forget` items naming what it changed; every node's
  listener has its store forget them. On reconnecting, the listener has it forget everything
  (what was announced meanwhile is lost); while the connection is down the caches' TTL
  (``directory_ttl_ms``) bounds how long a node answers from what it kept. A payload that
  does not parse (another program on the channel) forgets everything: a wasted read, never a
  stale answer.
- **Queue wake-up** (``pillarbox queue flush``/``retry``, :meth:`Store.wake_queue`): the
  payload ``!``; every node's listener calls its store's ``queue_wake`` and so wakes its queue
  runner at once instead of at its next ``poll_interval`` scan. Sent outside any transaction
  after the retry committed, so a runner woken by it finds the recipients due. A lost one
  (LISTEN connection down) costs that wait, nothing more.
- **Barrier** (:meth:`ChangeListener.barrier`): PostgreSQL delivers notifications in commit
  order, so once a node hears a notification it sent itself, it has handled every one
  committed before it (tests use this to wait for another node's write without sleeping).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence

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
    ChangeKind.METADATA: "d",
}
_KIND = {letter: kind for kind, letter in _LETTER.items()}


#: What a write makes every node forget of its kept lookups: ``("directory",)`` all of the
#: directory cache, ``("evidence",)`` all kept spam evidence, or one key of the evidence cache
#: (``("model", model)``, ``("senders", account)``, ``("reputation", account, key)``).
Forget = tuple[str | int, ...]
DIRECTORY: Forget = ("directory",)
EVIDENCE: Forget = ("evidence",)
#: A Forget payload begins with this, a barrier with the other (a change line with a digit).
_FORGET_MARK = "~"
_BARRIER_MARK = "?"
_QUEUE_WAKE = "!"


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


def encode_forget(items: Sequence[Forget]) -> str:
    """One payload naming ``items``; everything they could belong to where they would pass
    :data:`MAX_PAYLOAD` (many reputation keys: a wasted read on each node, never a lost one)."""
    payload = _FORGET_MARK + json.dumps(items, separators=(",", ":"))
    if len(payload.encode()) <= MAX_PAYLOAD:
        return payload
    directory = DIRECTORY if DIRECTORY in items else None
    return _FORGET_MARK + json.dumps([item for item in (directory, EVIDENCE) if item])


def decode_forget(payload: str) -> list[Forget] | None:
    """The items of a Forget payload; None (forget everything) if it does not parse."""
    try:
        items = json.loads(payload[len(_FORGET_MARK) :])
    except ValueError:
        return None
    if not isinstance(items, list):
        return None
    decoded: list[Forget] = []
    for item in items:
        if (
            not isinstance(item, list)
            or not item
            or not all(isinstance(part, str | int) and not isinstance(part, bool) for part in item)
        ):
            return None
        decoded.append(tuple(item))
    return decoded


async def send_forget(
    conn: psycopg.AsyncConnection[TupleRow], channel: str, items: Sequence[Forget]
) -> None:
    """NOTIFY every node to forget ``items``, inside the caller's transaction (so only if and
    once it commits)."""
    await conn.execute("SELECT pg_notify(%s, %s)", (channel, encode_forget(items)))


async def send_queue_wake(conn: psycopg.AsyncConnection[TupleRow], channel: str) -> None:
    """NOTIFY every node's queue runner to scan for due work now."""
    await conn.execute("SELECT pg_notify(%s, %s)", (channel, _QUEUE_WAKE))


class ChangeListener:
    """One LISTEN connection feeding a :class:`ChangeHub`, the store's ``forget`` (None:
    everything) with what other nodes' writes changed of its kept lookups, and its
    ``queue_wake`` with each queue wake-up; reconnects when it breaks."""

    def __init__(
        self,
        conninfo: str,
        channel: str,
        hub: ChangeHub,
        forget: Callable[[Sequence[Forget] | None], None],
        queue_wake: Callable[[], None],
        rehint: Callable[[], Awaitable[None]],
        *,
        retry_delay: float,
        timeout: float,
    ) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._hub = hub
        self._forget = forget
        self._queue_wake = queue_wake
        self._rehint = rehint
        self._barriers: dict[str, asyncio.Future[None]] = {}
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

    async def barrier(self, conn: psycopg.AsyncConnection[TupleRow], timeout: float) -> None:
        """Return once this listener handled every notification committed before the call:
        ``conn`` (autocommit) sends a barrier notification, which arrives after them."""
        token = _BARRIER_MARK + secrets.token_hex(8)  # other nodes hear it too: unique
        heard = asyncio.get_running_loop().create_future()
        self._barriers[token] = heard
        try:
            await conn.execute("SELECT pg_notify(%s, %s)", (self._channel, token))
            async with asyncio.timeout(timeout):
                await heard
        finally:
            self._barriers.pop(token, None)

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
                    log.warning("change feed listener reconnected; re-hinting its subscribers")
                    self._forget(None)  # what other nodes announced meanwhile is lost
                    await self._rehint()
                async for notify in conn.notifies():
                    if notify.payload.startswith(_BARRIER_MARK):
                        heard = self._barriers.get(notify.payload)
                        if heard is not None and not heard.done():
                            heard.set_result(None)
                        continue
                    if notify.payload == _QUEUE_WAKE:
                        self._queue_wake()
                        continue
                    if notify.payload.startswith(_FORGET_MARK):
                        self._forget(decode_forget(notify.payload))
                        continue
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
