"""The queue runner against servers we did not write (aiosmtpd) and against our own submission
server as a smart host, with real DNS (the authoritative server on loopback) and a real store."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pillarbox import provisioning
from pillarbox.dns.authoritative import StaticZones, serve_zones
from pillarbox.dns.records import DnsRecord
from pillarbox.dns.resolver import DnsResolver
from pillarbox.net.smtp_client import SessionSettings, opportunistic_context
from pillarbox.queue.routing import Router
from pillarbox.queue.runner import QueueRunner, Relay, RunnerLimits
from pillarbox.queue.schedule import RetryPolicy
from pillarbox.smtp.client import SmtpClientSettings
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.types import NewQueueRecipient, RecipientState
from pillarbox.testing.capture import Recorder, capture_peer
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, free_port, loopback_config
from pillarbox.testing.outbound import inbox

RECEIVER = "127.0.0.4"
NOBODY_HOME = "127.0.0.5"  # nothing listens there: connections are refused
LIMITED = "127.0.0.8"  # our own MX, announcing LIMITS RCPTMAX=2
RAW = b"From: alice@a.test\r\nTo: x@b.test\r\nSubject: queued\r\n\r\nHello.\r\n"


@pytest.fixture
def port() -> int:
    return free_port(RECEIVER, NOBODY_HOME, LIMITED)


@pytest.fixture
def receiver(port: int) -> Iterator[Recorder]:
    with capture_peer(RECEIVER, port) as handler:
        yield handler


ZONES = StaticZones.from_records(
    [
        DnsRecord("b.test", "MX", "10 mx.b.test."),
        DnsRecord("mx.b.test", "A", RECEIVER),
        # Two MX hosts: the preferred one refuses connections, the second answers.
        DnsRecord("c.test", "MX", "10 down.c.test."),
        DnsRecord("c.test", "MX", "20 mx.b.test."),
        DnsRecord("down.c.test", "A", NOBODY_HOME),
        DnsRecord("null.test", "MX", "0 ."),
        DnsRecord("limited.test", "MX", "10 mx.limited.test."),
        DnsRecord("mx.limited.test", "A", LIMITED),
    ],
    origins=["b.test", "c.test", "null.test", "limited.test"],
)


@pytest.fixture
async def resolver() -> AsyncIterator[DnsResolver]:
    async with serve_zones(ZONES) as server:
        yield DnsResolver(nameserver=f"127.0.0.1:{server.port}", timeout=2.0)


RETRY = RetryPolicy(schedule=(60.0,), lifetime=3600.0)


def runner(
    store: SqliteStore,
    resolver: DnsResolver,
    port: int,
    *,
    relay: Relay | None = None,
    policy: RetryPolicy = RETRY,
) -> QueueRunner:
    return QueueRunner(
        store=store,
        router=Router(store),
        resolver=resolver,
        policy=policy,
        hostname="mx.a.test",
        wakeup=asyncio.Event(),
        remote_port=port,
        session=SessionSettings(
            client=SmtpClientSettings(hostname="mx.a.test"),
            connect_timeout=2.0,
            tls=opportunistic_context(),
        ),
        relay=relay,
        limits=RunnerLimits(per_domain=1),
    )


async def run_once(queue: QueueRunner) -> None:
    await queue.claim()
    await queue.idle()


async def test_several_messages_share_one_connection(
    store: SqliteStore, resolver: DnsResolver, port: int, receiver: Recorder
) -> None:
    for n in range(3):
        await store.enqueue("alice@a.test", RAW, [NewQueueRecipient(f"r{n}@b.test")])
    await run_once(runner(store, resolver, port))
    assert sorted(rcpts[0] for _, _, rcpts, _ in receiver.messages) == [
        "r0@b.test",
        "r1@b.test",
        "r2@b.test",
    ]
    assert len({peer for peer, _, _, _ in receiver.messages}) == 1  # one session
    assert all(content.endswith(RAW) or content == RAW for *_, content in receiver.messages)
    assert await store.list_queue() == []


class SlowReads(SqliteStore):
    """The real store, whose message reads after the first take ``delay`` seconds: a loaded
    machine, where the first message's session would finish before the next is read."""

    delay = 0.3
    reads = 0

    async def read_blob(self, blob_id: int) -> bytes:
        self.reads += 1
        if self.reads > 1:
            await asyncio.sleep(self.delay)
        return await super().read_blob(blob_id)


async def test_a_session_waits_for_messages_claimed_with_it(
    tmp_path: Path, resolver: DnsResolver, port: int, receiver: Recorder
) -> None:
    store = SlowReads(tmp_path / "slow.sqlite3")
    await store.open()
    try:
        await provisioning.add_domain(store, "a.test")
        for n in range(3):
            await store.enqueue("alice@a.test", RAW, [NewQueueRecipient(f"r{n}@b.test")])
        await run_once(runner(store, resolver, port))
        assert len(receiver.messages) == 3
        assert len({peer for peer, _, _, _ in receiver.messages}) == 1  # one session
        assert await store.list_queue() == []
    finally:
        await store.close()


async def test_transient_refusal_is_retried_and_permanent_one_bounces(
    store: SqliteStore, resolver: DnsResolver, port: int, receiver: Recorder
) -> None:
    receiver.refuse = {
        "later@b.test": "451 4.7.1 greylisted, try later",
        "gone@b.test": "550 5.1.1 no such user",
    }
    await store.enqueue(
        "alice@a.test",
        RAW,
        [NewQueueRecipient(a) for a in ("ok@b.test", "later@b.test", "gone@b.test")],
    )
    queue = runner(store, resolver, port)
    await run_once(queue)
    [queued] = await store.list_queue()
    [later] = [r for r in queued.recipients if r.state is RecipientState.DEFERRED]
    assert later.address == "later@b.test"
    assert {r.state for r in queued.recipients} == set(RecipientState) - {RecipientState.PENDING}
    assert later.last_reply == "mx.b.test: 451 4.7.1 greylisted, try later"
    assert later.next_attempt > datetime.now(UTC)
    [bounce] = await inbox(store, "alice@a.test")
    status = email.message_from_bytes(bounce).get_payload()[1].get_payload()[1]  # type: ignore[index]
    assert status["Final-Recipient"] == "rfc822; gone@b.test"
    await store.retry_queued(queued.id, datetime.now(UTC))
    await run_once(queue)
    assert await store.list_queue() == []
    assert sorted(r for _, _, rcpts, _ in receiver.messages for r in rcpts) == [
        "later@b.test",
        "ok@b.test",
    ]


async def test_a_report_is_given_up_at_the_bounce_lifetime(
    store: SqliteStore, resolver: DnsResolver, port: int, receiver: Recorder
) -> None:
    """``queue.bounce_lifetime`` (Postfix's bounce_queue_lifetime; 0: one attempt): a report
    (the null reverse-path) that is refused for now leaves the queue, and nobody is told
    (RFC 3461 §6.1); the same refusal keeps a sender's message queued."""
    receiver.refuse = {  # once each
        "later@b.test": "451 4.7.1 greylisted, try later",
        "wait@b.test": "451 4.7.1 greylisted, try later",
    }
    report = await store.enqueue("", RAW, [NewQueueRecipient("later@b.test")])
    message = await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("wait@b.test")])
    policy = RetryPolicy(schedule=(60.0,), lifetime=3600.0, bounce_lifetime=0.0)
    await run_once(runner(store, resolver, port, policy=policy))
    assert await store.get_queued(report.id) is None
    left = await store.get_queued(message.id)
    assert left is not None and left.recipients[0].state is RecipientState.DEFERRED
    assert await inbox(store, "alice@a.test") == []
    assert receiver.messages == []


async def test_next_mx_when_the_first_refuses_connections(
    store: SqliteStore, resolver: DnsResolver, port: int, receiver: Recorder
) -> None:
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("someone@c.test")])
    await run_once(runner(store, resolver, port))
    [(_, _, rcpts, _)] = receiver.messages
    assert rcpts == ["someone@c.test"]


async def test_null_mx_fails_at_once(
    store: SqliteStore, resolver: DnsResolver, port: int, receiver: Recorder
) -> None:
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("x@null.test")])
    await run_once(runner(store, resolver, port))
    assert receiver.messages == [] and await store.list_queue() == []
    [bounce] = await inbox(store, "alice@a.test")
    assert b"Status: 5.1.10" in bounce and b"null MX" in bounce


async def test_no_report_for_a_report(
    store: SqliteStore, resolver: DnsResolver, port: int, receiver: Recorder
) -> None:
    await store.enqueue("", RAW, [NewQueueRecipient("x@null.test")])
    await run_once(runner(store, resolver, port))
    assert await store.list_queue() == [] and await inbox(store, "alice@a.test") == []


async def test_success_report_when_the_server_cannot_send_one(
    store: SqliteStore, resolver: DnsResolver, port: int, receiver: Recorder
) -> None:
    # aiosmtpd does not offer DSN: NOTIFY=SUCCESS is ours to honour, as "relayed".
    await store.enqueue(
        "alice@a.test", RAW, [NewQueueRecipient("ok@b.test", frozenset({"SUCCESS"}))]
    )
    await run_once(runner(store, resolver, port))
    [report] = await inbox(store, "alice@a.test")
    assert b"Action: relayed" in report and b"Subject: Mail Relayed" in report


@pytest.fixture
def smarthost(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(loopback_config(tmp_path / "relay", only=["submission"])) as live:
        live.add_domain("a.test")
        live.add_account("alice@a.test", TEST_PASSWORD)
        yield live


@pytest.mark.parametrize(("password", "delivered"), [(TEST_PASSWORD, True), ("wrong", False)])
async def test_smarthost_with_auth_over_starttls(
    store: SqliteStore,
    resolver: DnsResolver,
    smarthost: LiveServer,
    password: str,
    delivered: bool,
) -> None:
    session = SessionSettings(
        client=SmtpClientSettings(hostname="mx.a.test"),
        connect_timeout=2.0,
        tls=opportunistic_context(),  # the relay's certificate is self-signed
        require_tls=True,
        credentials=("alice@a.test", password),
    )
    relay = Relay("127.0.0.1", smarthost.port("submission"), session)
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("friend@far.test")])
    await run_once(runner(store, resolver, 1, relay=relay))
    relayed = await asyncio.to_thread(smarthost.call, smarthost.store.list_queue())
    if delivered:
        assert await store.list_queue() == []
        [message] = relayed
        assert [r.address for r in message.recipients] == ["friend@far.test"]
    else:
        [queued] = await store.list_queue()
        assert queued.recipients[0].state is RecipientState.DEFERRED
        assert "4.7.8" in (queued.recipients[0].last_reply or "")
        assert relayed == []


async def test_full_local_mailbox_is_retried_through_the_store(
    store: SqliteStore, resolver: DnsResolver, port: int
) -> None:
    alice = await store.get_account("alice@a.test")
    assert alice is not None
    await store.set_quota(alice.id, 10, None)
    await store.enqueue("someone@far.test", RAW, [NewQueueRecipient("alice@a.test")])
    queue = runner(store, resolver, port)
    await run_once(queue)
    [queued] = await store.list_queue()
    assert queued.recipients[0].state is RecipientState.DEFERRED
    assert queued.recipients[0].last_reply == "452 4.2.2 mailbox full"
    await store.set_quota(alice.id, None, None)
    await store.retry_queued(queued.id, datetime.now(UTC))
    await run_once(queue)
    [stored] = await inbox(store, "alice@a.test")
    assert stored.startswith(b"Return-Path: <someone@far.test>\r\nDelivered-To: alice@a.test\r\n")
    assert await store.list_queue() == []


@pytest.fixture
def limited(tmp_path: Path, port: int) -> Iterator[LiveServer]:
    """Our MX taking 2 recipients per transaction (RFC 9422 LIMITS RCPTMAX=2), and closing the
    session at the first error: a 452 to a third RCPT would end it with 421."""
    config = loopback_config(
        tmp_path / "limited", only=["smtp"], address=LIMITED, ports={"smtp": port}
    )
    smtp = dataclasses.replace(config.smtp, max_recipients=2, max_errors=1)
    with LiveServer(dataclasses.replace(config, smtp=smtp)) as live:
        live.add_domain("limited.test")
        for n in range(5):
            live.add_account(f"r{n}@limited.test", TEST_PASSWORD)
        yield live


async def test_rcptmax_splits_the_recipients_over_transactions(
    store: SqliteStore, resolver: DnsResolver, port: int, limited: LiveServer
) -> None:
    """RFC 9422 §4.2: five recipients for a server announcing RCPTMAX=2 go in transactions of
    2, 2 and 1 on one connection, none refused, all in one queue run."""
    addresses = [f"r{n}@limited.test" for n in range(5)]
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient(a) for a in addresses])
    await run_once(runner(store, resolver, port))
    assert await store.list_queue() == []
    by_transaction: dict[str, list[str]] = {}
    for address in addresses:
        [copy] = limited.mailbox_messages(address, "INBOX")
        found = re.search(rb"\bid ([^\s;]+)", copy)  # the Received field's queue id
        assert found is not None
        by_transaction.setdefault(found.group(1).decode(), []).append(address)
    assert sorted(by_transaction.values()) == [addresses[:2], addresses[2:4], addresses[4:]]
