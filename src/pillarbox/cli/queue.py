"""``pillarbox queue list|show|retry|remove|flush``: the outbound queue, recipient by recipient.

These commands work on the store directly, so they work whether or not the server runs.
``retry`` and ``flush`` then wake the running server's queue runner, so it starts at once:
on PostgreSQL by NOTIFY to every node, on SQLite through the server's control socket
(:mod:`pillarbox.net.control`, which says why not a signal); a server that cannot be reached
notices the retries at its next scan (``queue.poll_interval``), one that is not running when
it starts. ``remove`` takes effect at once (a delivery already under way finishes, and its
result is then dropped).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from pillarbox.errors import NotFound
from pillarbox.mail.headers import raw_text, scan_header
from pillarbox.store.interface import Store
from pillarbox.store.open import is_postgresql
from pillarbox.store.types import QueuedMessage

if TYPE_CHECKING:
    from pillarbox.cli.main import CliState
    from pillarbox.config import Config

#: Header fields ``queue show`` prints from the queued message.
SHOWN_FIELDS = ("from", "to", "subject", "date", "message-id")


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def message_data(message: QueuedMessage) -> dict[str, Any]:
    """A queued message as JSON-ready data (``--json``)."""
    return {
        "id": message.id,
        "sender": message.sender,
        "size": message.size,
        "queued_at": message.queued_at.isoformat(),
        "ret": message.ret,
        "envid": message.envid,
        "requiretls": message.requiretls,
        "recipients": [
            {
                "id": r.id,
                "address": r.address,
                "state": r.state.value,
                "attempts": r.attempts,
                "next_attempt": r.next_attempt.isoformat(),
                "last_reply": r.last_reply,
                "notify": sorted(r.notify),
                "orcpt": r.orcpt,
                "delay_notified": r.delay_notified,
            }
            for r in message.recipients
        ],
    }


def message_lines(message: QueuedMessage, *, detail: bool) -> list[str]:
    lines = [
        f"{message.id:>6}  {_time(message.queued_at)}  <{message.sender}>  {message.size} bytes"
        + ("  REQUIRETLS" if message.requiretls else "")
    ]
    for r in message.recipients:
        line = f"        {r.state.value:<9} {r.address}  attempts={r.attempts}"
        if r.state.value in ("pending", "deferred"):
            line += f"  next={_time(r.next_attempt)}"
        lines.append(line)
        if r.last_reply and (detail or r.state.value == "deferred"):
            lines.append(f"                  last reply: {r.last_reply}")
    return lines


async def _get(store: Store, message_id: int) -> QueuedMessage:
    message = await store.get_queued(message_id)
    if message is None:
        raise NotFound(f"no queued message {message_id}")
    return message


@click.group()
def queue() -> None:
    """The outbound queue."""


@queue.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def queue_list(state: CliState, as_json: bool) -> None:
    """List queued messages with each recipient's state."""
    from pillarbox.cli.main import emit, run_store

    messages = run_store(state.load(), lambda s: s.list_queue())
    lines = [line for m in messages for line in message_lines(m, detail=False)]
    emit([message_data(m) for m in messages], as_json, lines or ["(queue is empty)"])


@queue.command("show")
@click.argument("message_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def queue_show(state: CliState, message_id: int, as_json: bool) -> None:
    """Show one queued message: envelope, header summary, each recipient's last reply."""
    from pillarbox.cli.main import emit, run_store

    async def go(store: Store) -> tuple[QueuedMessage, bytes]:
        message = await _get(store, message_id)
        return message, await store.read_blob(message.blob_id)

    message, raw = run_store(state.load(), go)
    block = scan_header(raw, 0, len(raw))
    headers = [(f.name, raw_text(f.value)) for f in block.fields if f.key in SHOWN_FIELDS]
    data = message_data(message) | {"headers": [{"name": n, "value": v} for n, v in headers]}
    lines = message_lines(message, detail=True)
    lines += [f"        {name}: {value}" for name, value in headers]
    if message.ret or message.envid:
        lines.append(f"        DSN: RET={message.ret or '-'} ENVID={message.envid or '-'}")
    emit(data, as_json, lines)


def _woken(config: Config) -> str:
    """Whether the running server was woken to act on a retry made here: on PostgreSQL the
    NOTIFY of ``store.wake_queue()`` reached every node; on SQLite the server is asked on its
    control socket, and a server that is not running finds the retry when it starts."""
    if is_postgresql(config.store.url):
        return " (every running node woken)"
    from pillarbox.net import control  # the listener's imports (TLS) only when it is used

    why = control.wake_queue(config.data_dir)
    if why is None:
        return " (the running server woken)"
    if why == control.NOT_RUNNING:
        return f" ({why}: it starts them when it starts)"
    return (
        f" ({why}: a running server starts within {config.queue.poll_interval:g} s:"
        " queue.poll_interval)"
    )


@queue.command("retry")
@click.argument("message_ids", type=int, nargs=-1, required=True)
@click.pass_obj
def queue_retry(state: CliState, message_ids: tuple[int, ...]) -> None:
    """Make the open recipients of MESSAGE_IDS due now, and wake the running server."""
    from pillarbox.cli.main import run_store

    async def go(store: Store) -> None:
        now = datetime.now(UTC)
        for message_id in message_ids:
            await store.retry_queued(message_id, now)
        await store.wake_queue()

    config = state.load()
    run_store(config, go)
    click.echo(f"retrying {', '.join(map(str, message_ids))}{_woken(config)}")


@queue.command("flush")
@click.pass_obj
def queue_flush(state: CliState) -> None:
    """Make every open recipient of every queued message due now, and wake the running
    server (as Postfix's ``postqueue -f``)."""
    from pillarbox.cli.main import run_store

    async def go(store: Store) -> int:
        now = datetime.now(UTC)
        messages = await store.list_queue()
        for message in messages:
            await store.retry_queued(message.id, now)
        await store.wake_queue()
        return len(messages)

    config = state.load()
    count = run_store(config, go)
    click.echo(f"retrying {count} message{'s' if count != 1 else ''}{_woken(config)}")


@queue.command("remove")
@click.argument("message_ids", type=int, nargs=-1, required=True)
@click.pass_obj
def queue_remove(state: CliState, message_ids: tuple[int, ...]) -> None:
    """Delete MESSAGE_IDS from the queue without delivering or bouncing them."""
    from pillarbox.cli.main import run_store

    async def go(store: Store) -> None:
        for message_id in message_ids:
            await store.remove_queued(message_id)

    run_store(state.load(), go)
    click.echo(f"removed {', '.join(map(str, message_ids))}")
