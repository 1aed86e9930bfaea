"""DANE for mail coming in, end to end: Unbound validates our authoritative server's signed
zone from the DS that ``pillarbox dns records`` prints (the registrar's part, as a trust
anchor), and our queue runner, asking Unbound with ``[queue] dane``, authenticates the live
server's MX by the TLSA record that server serves (RFC 7672 §2.2).

The receiving server listens on port 25 of its own loopback address: the TLSA record is the
one of ``_25._tcp`` (§2.2.3 names the port connected to). Skipped without Unbound, or where
port 25 cannot be bound (not root).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.dns.resolver import DnsResolver, MxStatus
from pillarbox.dns.signing import ZoneKey, new_key_pem
from pillarbox.queue.runner import QueueRunner
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.types import RecipientState
from pillarbox.testing.command import run_pillarbox
from pillarbox.testing.live import LiveServer, free_port, loopback_config
from pillarbox.testing.outbound import deliver_once, mx_runner
from pillarbox.testing.testca import make_ca
from pillarbox.testing.unbound import Unbound

DOMAIN = "pillarbox.test"
HOST = f"mail.{DOMAIN}"
MX_ADDRESS = "127.0.0.153"
SMTP_PORT = 25
RAW = b"From: alice@a.test\r\nTo: bob@pillarbox.test\r\nSubject: dane in\r\n\r\nHello.\r\n"


def _port_25_bindable() -> bool:
    try:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((MX_ADDRESS, SMTP_PORT))
    except OSError:
        return False
    return True


pytestmark = [
    pytest.mark.skipif(
        shutil.which("unbound") is None, reason="Unbound not installed (apt-get install unbound)"
    ),
    pytest.mark.skipif(not _port_25_bindable(), reason=f"cannot bind {MX_ADDRESS}:25 (not root?)"),
]


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[LiveServer, str]]:
    """The live server hosting ``DOMAIN`` with a signed zone, and the DS it asks the
    registrar to publish."""
    dns_port = free_port("127.0.0.1")
    cert, key = make_ca(tmp_path).issue(HOST)
    base = loopback_config(
        tmp_path / "data", only=("smtp",), address=MX_ADDRESS, ports={"smtp": SMTP_PORT}
    )
    config = dataclasses.replace(
        base,
        server=dataclasses.replace(base.server, hostname=HOST),
        tls=cfg.TlsSection(cert=str(cert), key=str(key)),
        policy=cfg.PolicySection(enabled=False),
        dns=dataclasses.replace(
            base.dns,
            addresses=(MX_ADDRESS,),
            authoritative_enabled=True,
            authoritative_address="127.0.0.1",
            authoritative_port=dns_port,
            dnssec=True,
        ),
    )
    (tmp_path / "pillarbox.toml").write_text(cfg.render_toml(config))
    added = run_pillarbox(tmp_path, "domain", "add", DOMAIN)
    assert added.returncode == 0, added.stderr
    shown = run_pillarbox(tmp_path, "dns", "records", DOMAIN)
    assert shown.returncode == 0, shown.stderr
    (ds_line,) = [line[1:].strip() for line in shown.stdout.splitlines() if "\tDS\t" in line]
    with LiveServer(config) as server:
        server.add_account(f"bob@{DOMAIN}", "correct horse battery")
        yield server, ds_line


def runner(store: SqliteStore, resolver: DnsResolver) -> QueueRunner:
    return mx_runner(store, resolver, remote_port=SMTP_PORT, dane=True, connect_timeout=5.0)


async def test_dane_delivery_to_our_mx_through_unbound(
    tmp_path: Path,
    store: SqliteStore,
    receiver: tuple[LiveServer, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, ds = receiver
    assert server.server.dns is not None
    authoritative = server.server.dns.port

    # A parent vouching for another key: Unbound finds the zone bogus and answers SERVFAIL,
    # so the message waits (a temporary failure), and nothing reaches the MX.
    other = ZoneKey(DOMAIN, new_key_pem()).ds_record(3600).zone_line().replace("\t", " ")
    with Unbound(tmp_path / "bogus", DOMAIN, [other], authoritative) as unbound:
        assert (await unbound.resolver().mx(DOMAIN)).status is MxStatus.TEMPORARY
        left = await deliver_once(store, runner(store, unbound.resolver()), f"bob@{DOMAIN}", RAW)
        assert left is not None and left.state is RecipientState.DEFERRED
    assert server.mailbox_messages(f"bob@{DOMAIN}", "INBOX") == []

    caplog.set_level(logging.INFO, logger="pillarbox.delivery")
    with Unbound(tmp_path / "valid", DOMAIN, [ds], authoritative) as unbound:
        resolver = unbound.resolver()
        assert resolver.trusts_ad
        mx = await resolver.mx(DOMAIN)
        assert mx.authentic  # validated by Unbound: the AD bit
        tlsa = await resolver.records(f"_25._tcp.{HOST}", "TLSA")
        assert tlsa.authentic and len(tlsa.records) == 1
        assert await deliver_once(store, runner(store, resolver), f"bob@{DOMAIN}", RAW) is None
    (delivered,) = server.mailbox_messages(f"bob@{DOMAIN}", "INBOX")
    assert b"Subject: dane in" in delivered
    authenticated = [r for r in caplog.records if r.getMessage() == "DANE authenticated"]
    assert [getattr(r, "fields", {}).get("base") for r in authenticated] == [HOST], caplog.text
