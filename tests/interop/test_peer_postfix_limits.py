"""Real Postfix as the receiving server, where its limits shape our delivery: with
``smtpd_recipient_limit = 2`` it answers the third RCPT of a transaction with its own
``452 4.5.3 Error: too many recipients``; our queue sends the rest in further transactions of
the same session (RFC 5321 §4.5.3.1.10) and every recipient is delivered in one attempt.
Postfix runs as the test's own instance (``pillarbox.testing.peers.postfix_peer``; skipped
unless root); our side is the queue runner with a real store and a loopback DNS server."""

from __future__ import annotations

import asyncio
import pwd
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pillarbox.dns.authoritative import StaticZones, serve_zones
from pillarbox.dns.records import DnsRecord
from pillarbox.dns.resolver import DnsResolver
from pillarbox.net.smtp_client import SessionSettings, opportunistic_context
from pillarbox.queue.routing import Router
from pillarbox.queue.runner import QueueRunner, RunnerLimits
from pillarbox.queue.schedule import RetryPolicy
from pillarbox.smtp.client import SmtpClientSettings
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.types import NewQueueRecipient
from pillarbox.testing.live import free_port
from pillarbox.testing.peers import postfix_peer
from pillarbox.testing.polling import wait_for

FAR = "far.test"
RAW = b"From: alice@a.test\r\nTo: many@far.test\r\nSubject: limits\r\n\r\nHello.\r\n"


@pytest.fixture
async def resolver() -> AsyncIterator[DnsResolver]:
    zones = StaticZones.from_records(
        [DnsRecord(FAR, "MX", f"10 mx.{FAR}."), DnsRecord(f"mx.{FAR}", "A", "127.0.0.1")],
        origins=[FAR],
    )
    async with serve_zones(zones) as server:
        yield DnsResolver(nameserver=f"127.0.0.1:{server.port}", timeout=2.0)


def configure(directory: Path, owner: pwd.struct_passwd) -> dict[str, object]:
    return {
        "myhostname": FAR,
        "virtual_mailbox_domains": FAR,
        "virtual_mailbox_base": directory / "mail",
        "virtual_mailbox_maps": "static:maildir/",
        "virtual_uid_maps": f"static:{owner.pw_uid}",
        "virtual_gid_maps": f"static:{owner.pw_gid}",
        "smtpd_recipient_limit": 2,
    }


async def test_postfix_recipient_limit_is_met_with_more_transactions(
    store: SqliteStore, resolver: DnsResolver
) -> None:
    recipients = [f"r{n}@{FAR}" for n in range(5)]
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient(r) for r in recipients])
    port = free_port("127.0.0.1")
    with postfix_peer(port, configure) as postfix:
        queue = QueueRunner(
            store=store,
            router=Router(store),
            resolver=resolver,
            policy=RetryPolicy(schedule=(60.0,), lifetime=3600.0),
            hostname="mx.a.test",
            wakeup=asyncio.Event(),
            remote_port=port,
            session=SessionSettings(
                client=SmtpClientSettings(hostname="mx.a.test"),
                connect_timeout=5.0,
                tls=opportunistic_context(),
            ),
            limits=RunnerLimits(per_domain=1),
        )
        async with asyncio.timeout(60):
            await queue.claim()
            await queue.idle()
        assert await store.list_queue() == [], postfix.log()

        log = wait_for(
            lambda: postfix.log_showing("status=sent", times=5),
            "Postfix's five deliveries",
            timeout=20.0,
            context=postfix.log,
        )
        assert len(list((postfix.directory / "mail" / "maildir" / "new").iterdir())) == 5
    # One session (its own tally): three transactions, five RCPTs taken and four refused.
    assert "ehlo=1 mail=3 rcpt=9" in log, log
