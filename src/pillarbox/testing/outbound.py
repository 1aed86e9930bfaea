"""Outbound delivery in tests: one queue attempt for one recipient, what a receiving peer
(:mod:`.capture`) got, the reports the sender got back, and receiving peers' TLS contexts
that record the SNI names asked for (the queue, DANE, MTA-STS and TLS policy delivery tests
share them)."""

from __future__ import annotations

import asyncio
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pillarbox.dns.resolver import Resolver
from pillarbox.net.smtp_client import SessionSettings, opportunistic_context
from pillarbox.queue.routing import Router
from pillarbox.queue.runner import QueueRunner, RunnerLimits
from pillarbox.queue.schedule import RetryPolicy
from pillarbox.smtp.client import SmtpClientSettings
from pillarbox.store.interface import Store
from pillarbox.store.types import INBOX, NewQueueRecipient, QueuedRecipient
from pillarbox.testing.capture import Recorder
from pillarbox.testing.testca import CertAuthority

#: The sender of the delivery tests (an account of the interop ``store`` fixture).
SENDER = "alice@a.test"
#: The sending host's name in the delivery tests (EHLO).
SENDING_HOST = "mx.a.test"


def mx_runner(
    store: Store,
    resolver: Resolver,
    *,
    remote_port: int,
    dane: bool,
    tls_reports: bool = False,
    connect_timeout: float = 2.0,
) -> QueueRunner:
    """A queue runner delivering by MX to ``remote_port`` with opportunistic TLS (no CA: what
    DANE or a policy asks decides), one retry a minute later, one connection per domain."""
    client = SmtpClientSettings(hostname=SENDING_HOST)
    return QueueRunner(
        store=store,
        router=Router(store),
        resolver=resolver,
        policy=RetryPolicy(schedule=(60.0,), lifetime=3600.0),
        hostname=SENDING_HOST,
        wakeup=asyncio.Event(),
        remote_port=remote_port,
        session=SessionSettings(
            client=client, connect_timeout=connect_timeout, tls=opportunistic_context()
        ),
        dane=dane,
        tls_reports=tls_reports,
        limits=RunnerLimits(per_domain=1),
    )


async def deliver_once(
    store: Store, queue: QueueRunner, recipient: str, raw: bytes, *, sender: str = SENDER
) -> QueuedRecipient | None:
    """Queue one message to ``recipient`` and run one attempt; the recipient if it is still
    queued (deferred), None when the attempt settled it. Messages left by earlier calls are
    not due again yet (the retry schedule), so each call sees its own."""
    message = await store.enqueue(sender, raw, [NewQueueRecipient(recipient)])
    await queue.claim()
    await queue.idle()
    left = await store.get_queued(message.id)
    return left.recipients[0] if left is not None else None


async def inbox(store: Store, address: str) -> list[bytes]:
    """The messages in the INBOX of the account ``address`` (the sender's reports)."""
    account = await store.get_account(address)
    assert account is not None
    box = await store.get_mailbox(account.id, INBOX)
    return [await store.read_blob(r.blob_id) for r in await store.list_messages(box.id)]


def rcpts(recorder: Recorder) -> list[str]:
    """Every recipient of every transaction the peer accepted, in order."""
    return [r for received in recorder.messages for r in received.rcpt_tos]


def tls_peer_context(ca: CertAuthority, name: str, sni: list[str]) -> tuple[ssl.SSLContext, bytes]:
    """A receiving server's context presenting a certificate for ``name`` from ``ca``, which
    appends each handshake's SNI name to ``sni``; and that certificate (DER)."""
    cert_path, key_path = ca.issue(name)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)

    def record(_obj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        sni.append(server_name or "")

    context.sni_callback = record
    der = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    return context, der
