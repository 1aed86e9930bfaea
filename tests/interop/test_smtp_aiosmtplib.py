"""SMTP under concurrency with aiosmtplib: 100 parallel clients, every message stored
byte-identical; connection limits answered with 421."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import smtplib
from pathlib import Path

import aiosmtplib
import pytest

from pillarbox.store.types import INBOX
from pillarbox.testing.live import LiveServer, loopback_config

pytestmark = pytest.mark.listeners("smtp")

CLIENTS = 100
MESSAGES_EACH = 2


def body(client: int, n: int) -> bytes:
    rng = random.Random(client * 1000 + n)
    lines = [
        "".join(rng.choice("abcdefghij .,-") for _ in range(rng.randrange(0, 120)))
        for _ in range(rng.randrange(1, 40))
    ]
    lines.insert(rng.randrange(len(lines)), ".line that starts with a dot")
    text = "\r\n".join(lines)
    return (
        f"From: c{client}@example.net\r\nTo: alice@example.org\r\n"
        f"Subject: {client}-{n}\r\nMessage-ID: <{client}.{n}@example.net>\r\n\r\n{text}\r\n"
    ).encode()


def test_hundred_parallel_clients_store_every_message_byte_identical(live: LiveServer) -> None:
    port = live.port("smtp")

    async def one_client(client: int) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await smtp.connect()
        for n in range(MESSAGES_EACH):
            errors, _ = await smtp.sendmail(
                f"c{client}@example.net", ["alice@example.org"], body(client, n)
            )
            assert errors == {}
        await smtp.quit()

    async def all_clients() -> None:
        await asyncio.gather(*(one_client(c) for c in range(CLIENTS)))

    asyncio.run(all_clients())

    async def stored() -> list[bytes]:
        account = await live.store.get_account("alice@example.org")
        assert account is not None
        inbox = await live.store.get_mailbox(account.id, INBOX)
        records = await live.store.list_messages(inbox.id)
        assert [r.uid for r in records] == sorted({r.uid for r in records})
        return [await live.store.read_blob(r.blob_id) for r in records]

    messages = live.call(stored())
    assert len(messages) == CLIENTS * MESSAGES_EACH
    expected = {body(c, n) for c in range(CLIENTS) for n in range(MESSAGES_EACH)}
    received = set()
    for raw in messages:
        # The MX prepends exactly Return-Path, Delivered-To and one Received field.
        start = raw.index(b"\r\nFrom: c") + 2
        assert raw[:start].count(b"\r\nReceived: ") + raw[:start].startswith(b"Received") <= 1
        received.add(raw[start:])
    assert received == expected


def test_connections_per_address_are_limited(tmp_path: Path) -> None:
    config = loopback_config(tmp_path, only=["smtp"])
    config = dataclasses.replace(
        config, smtp=dataclasses.replace(config.smtp, max_connections_per_ip=2)
    )
    with LiveServer(config) as live:
        port = live.port("smtp")
        first = smtplib.SMTP("127.0.0.1", port)
        second = smtplib.SMTP("127.0.0.1", port)
        with pytest.raises(smtplib.SMTPConnectError) as info:
            smtplib.SMTP("127.0.0.1", port)
        assert info.value.smtp_code == 421
        first.quit()
        # a slot is free again once a connection has ended
        for _ in range(50):
            try:
                third = smtplib.SMTP("127.0.0.1", port)
                break
            except smtplib.SMTPConnectError:
                import time

                time.sleep(0.05)
        else:
            pytest.fail("connection slot never freed")
        third.quit()
        second.quit()
