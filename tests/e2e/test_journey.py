"""The whole journey of a message between two Pillarbox servers on loopback.

a.test is served on 127.0.0.2 and b.test on 127.0.0.3, both on one SMTP port (the remote port of
both queues). DNS is real: Pillarbox's own authoritative servers (each serving its domain) in
one set of tests, dnslib's ``DNSServer`` with its ``ZoneResolver`` (code we did not write) in
the other. alice@a.test submits with smtplib over STARTTLS and AUTH; a.test signs with DKIM,
looks up b.test's MX and delivers; the test verifies the signature with dkimpy against the DNS.
"""

from __future__ import annotations

import dataclasses
import email
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dkim as dkimpy
import dns.message
import dns.query
import dns.rdatatype
import pytest
from dnslib.server import BaseResolver
from dnslib.zoneresolver import ZoneResolver

from pillarbox import config as cfg
from pillarbox.dns.hosted import hosted_records
from pillarbox.mail.headers import raw_text, scan_header
from pillarbox.policy.authresults import authserv_id
from pillarbox.store.types import INBOX, AccountSettings
from pillarbox.testing.dnszone import dnslib_servers
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, free_port, loopback_config
from pillarbox.testing.polling import wait_for

A_IP, B_IP = "127.0.0.2", "127.0.0.3"
WAIT = 20.0


def insecure_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclasses.dataclass
class Site:
    """One Pillarbox server's config; started and stopped as the test needs."""

    domain: str
    config: cfg.Config
    server: LiveServer | None = None

    def start(self) -> LiveServer:
        self.server = LiveServer(self.config).__enter__()
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.__exit__(None, None, None)
            self.server = None

    @property
    def live(self) -> LiveServer:
        assert self.server is not None
        return self.server


def site(
    tmp: Path,
    domain: str,
    ip: str,
    port: int,
    *,
    nameserver: str,
    dns_port: int | None = None,
    policy: cfg.PolicySection | None = None,
) -> Site:
    host = f"mx.{domain}"
    dns_section = cfg.DnsSection(
        nameserver=nameserver,
        timeout=1.0,
        # Outgoing connections to another loopback address leave from 127.0.0.1: the SPF
        # record (built from these) must name it for a receiver that checks SPF.
        addresses=(ip, "127.0.0.1") if policy is not None else (ip,),
        authoritative_enabled=dns_port is not None,
        authoritative_address=ip,
        authoritative_port=dns_port or 53,
    )
    config = loopback_config(
        tmp / domain,
        only=["smtp", "submission"],
        address=ip,
        ports={"smtp": port},
        server=cfg.ServerSection(hostname=host, data_dir=str(tmp / domain), shutdown_grace=2.0),
        queue=cfg.QueueSection(remote_port=port, retry_schedule=(1.0,), poll_interval=1.0),
        dns=dns_section,
        policy=policy or cfg.PolicySection(),
    )
    return Site(domain, config)


def provision(live: LiveServer, domain: str, *users: str) -> None:
    live.add_domain(domain)
    for user in users:
        live.add_account(f"{user}@{domain}", TEST_PASSWORD)


def mailbox(live: LiveServer, address: str) -> list[bytes]:
    return live.mailbox_messages(address, INBOX)


def submit(a: LiveServer, to: str, subject: str) -> bytes:
    raw = (
        f"From: Alice <alice@a.test>\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n"
        f"Hello from the journey ({subject}).\r\n"
    ).encode()
    with smtplib.SMTP(A_IP, a.port("submission")) as client:
        client.starttls(context=insecure_context())
        client.ehlo()
        client.login("alice@a.test", TEST_PASSWORD)
        client.sendmail("alice@a.test", [to], raw)
    return raw


def dkim_dns(ip: str, port: int) -> Callable[..., bytes]:
    """dkimpy's DNS hook, asking the test's DNS server with dnspython."""

    def lookup(name: bytes | str, timeout: int = 5) -> bytes:
        qname = name.decode() if isinstance(name, bytes) else name
        reply = dns.query.udp(dns.message.make_query(qname, "TXT"), ip, 2, port)
        for rrset in reply.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                return b"".join(rrset[0].strings)
        return b""

    return lookup


def assert_dkim_verifies(stored: bytes, lookup: Callable[..., bytes]) -> None:
    verifier = dkimpy.DKIM(stored)
    signatures = [h for n, h in verifier.headers if n.lower() == b"dkim-signature"]
    assert len(signatures) == 2
    assert all(verifier.verify(i, dnsfunc=lookup) for i in range(len(signatures)))


def queue_of(live: LiveServer) -> list[Any]:
    return live.call(live.store.list_queue())


# -- with Pillarbox's own authoritative DNS -------------------------------------------------------


def own_dns_sites(
    tmp_path: Path, policy: cfg.PolicySection | None = None
) -> Iterator[tuple[Site, Site, int]]:
    smtp_port = free_port(A_IP, B_IP)
    dns_port = free_port(A_IP, B_IP)
    a = site(
        tmp_path,
        "a.test",
        A_IP,
        smtp_port,
        nameserver=f"{B_IP}:{dns_port}",
        dns_port=dns_port,
        policy=policy,
    )
    b = site(
        tmp_path,
        "b.test",
        B_IP,
        smtp_port,
        nameserver=f"{A_IP}:{dns_port}",
        dns_port=dns_port,
        policy=policy,
    )
    try:
        provision(a.start(), "a.test", "alice", "carol")
        provision(b.start(), "b.test", "bob")
        yield a, b, dns_port
    finally:
        a.stop()
        b.stop()


@pytest.fixture
def own_dns(tmp_path: Path) -> Iterator[tuple[Site, Site, int]]:
    yield from own_dns_sites(tmp_path)


@pytest.fixture
def judging_sites(tmp_path: Path) -> Iterator[tuple[Site, Site, int]]:
    """Both sites check SPF, DKIM, DMARC and ARC for each other (they talk over loopback,
    which the default ``policy.trusted_networks`` would exempt)."""
    yield from own_dns_sites(tmp_path, cfg.PolicySection(trusted_networks=()))


def test_journey_signed_delivered_and_verified(own_dns: tuple[Site, Site, int]) -> None:
    a, b, dns_port = own_dns
    raw = submit(a.live, "bob@b.test", "journey")
    [stored] = wait_for(lambda: mailbox(b.live, "bob@b.test"), "bob's message")
    assert stored.endswith(raw.split(b"\r\n\r\n", 1)[1])
    header = stored.split(b"\r\n\r\n", 1)[0]
    assert b"Return-Path: <alice@a.test>" in header
    assert b"by mx.b.test" in header and b"by mx.a.test" in header
    assert b"with ESMTPS" in header  # a.test → b.test went over STARTTLS
    assert_dkim_verifies(stored, dkim_dns(A_IP, dns_port))
    wait_for(lambda: not queue_of(a.live), "a.test's queue to empty")
    time.sleep(1.5)  # a second delivery would show up by now
    assert len(mailbox(b.live, "bob@b.test")) == 1


def test_unknown_recipient_bounces_to_alice(own_dns: tuple[Site, Site, int]) -> None:
    a, _, _ = own_dns
    submit(a.live, "nobody@b.test", "to nobody")
    [report] = wait_for(lambda: mailbox(a.live, "alice@a.test"), "the bounce")
    msg = email.message_from_bytes(report)
    assert msg["Return-Path"] == "<>"
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@mx.a.test>"
    assert msg.get_content_type() == "multipart/report"
    status = msg.get_payload()[1].get_payload()[1]
    assert status["Final-Recipient"] == "rfc822; nobody@b.test"
    assert status["Action"] == "failed" and status["Status"] == "5.1.1"
    assert status["Remote-MTA"] == "dns; mx.b.test"
    assert status["Diagnostic-Code"].startswith("smtp; 550 5.1.1")
    assert msg.get_payload()[2].get_payload()[0]["Subject"] == "to nobody"
    # The report is sent before the failure is recorded (a crash repeats it, never loses it).
    wait_for(lambda: not queue_of(a.live), "the failed recipient to leave the queue")


def test_forward_to_another_node_is_sealed_and_passes_spf(
    judging_sites: tuple[Site, Site, int],
) -> None:
    """carol@a.test forwards to bob@b.test: b.test sees SPF pass for a.test (SRS) and a valid
    ARC chain sealed by a.test, in its own Authentication-Results."""
    a, b, _ = judging_sites
    carol = a.live.call(a.live.store.get_account("carol@a.test"))
    assert carol is not None
    forwarding = AccountSettings(forward_to=("bob@b.test",), forward_keep_copy=False)
    a.live.call(a.live.store.set_settings(carol.id, forwarding))
    raw = (
        b"From: Someone <someone@outside.test>\r\nTo: carol@a.test\r\nSubject: forwarded\r\n"
        b"Message-ID: <fw1@outside.test>\r\n\r\nFrom outside, via carol.\r\n"
    )
    with smtplib.SMTP(A_IP, a.live.port("smtp"), local_hostname="client.test") as client:
        client.sendmail("someone@outside.test", ["carol@a.test"], raw)
    [stored] = wait_for(lambda: mailbox(b.live, "bob@b.test"), "the forwarded message")
    assert stored.endswith(b"From outside, via carol.\r\n")
    assert re.match(rb"Return-Path: <SRS0=\w{4}=\w{2}=outside\.test=someone@a\.test>", stored)
    block = scan_header(stored, 0, len(stored))
    [ours] = [
        raw_text(f.value)
        for f in block.fields
        if f.key == "authentication-results" and authserv_id(f.value) == "mx.b.test"
    ]
    assert "spf=pass smtp.mailfrom=a.test" in ours
    assert "arc=pass" in ours
    assert mailbox(a.live, "carol@a.test") == []


# -- same domain: no DNS at all -------------------------------------------------------------------


def test_same_domain_never_needs_dns(tmp_path: Path) -> None:
    port = free_port(A_IP)
    a = site(tmp_path, "a.test", A_IP, port, nameserver="127.0.0.1:9")  # nobody answers there
    try:
        provision(a.start(), "a.test", "alice", "carol")
        raw = submit(a.live, "carol@a.test", "next door")
        [stored] = wait_for(lambda: mailbox(a.live, "carol@a.test"), "carol's message")
        assert stored.endswith(raw.split(b"\r\n\r\n", 1)[1])
        assert b"DKIM-Signature" not in stored  # only mail leaving is signed
        assert not queue_of(a.live)
    finally:
        a.stop()


# -- with a DNS server we did not write -----------------------------------------------------------


class Zones(BaseResolver):  # type: ignore[misc]
    """dnslib's ZoneResolver, replaceable once the domains' keys exist."""

    def __init__(self) -> None:
        self.inner = ZoneResolver("")
        self.lock = threading.Lock()

    def resolve(self, request: Any, handler: Any) -> Any:
        with self.lock:
            return self.inner.resolve(request, handler)


@pytest.fixture
def dnslib_world(tmp_path: Path) -> Iterator[tuple[Site, Site, int]]:
    smtp_port = free_port(A_IP, B_IP)
    dns_port = free_port("127.0.0.1")
    zones = Zones()
    servers = dnslib_servers(zones, dns_port)
    nameserver = f"127.0.0.1:{dns_port}"
    a = site(tmp_path, "a.test", A_IP, smtp_port, nameserver=nameserver)
    b = site(tmp_path, "b.test", B_IP, smtp_port, nameserver=nameserver)
    try:
        provision(a.start(), "a.test", "alice")
        provision(b.start(), "b.test", "bob")
        text = ""
        for s in (a, b):
            records = s.live.call(
                hosted_records(
                    s.live.store,
                    s.domain,
                    mail_host=s.config.server.hostname,
                    addresses=s.config.dns.addresses,
                    now=datetime.now(UTC),
                )
            )
            text += records.zone()
        with zones.lock:
            zones.inner = ZoneResolver(text)
        yield a, b, dns_port
    finally:
        a.stop()
        b.stop()
        for server in servers:
            server.stop()


def test_journey_through_dnslib(dnslib_world: tuple[Site, Site, int]) -> None:
    a, b, dns_port = dnslib_world
    submit(a.live, "bob@b.test", "via dnslib")
    [stored] = wait_for(lambda: mailbox(b.live, "bob@b.test"), "bob's message")
    assert_dkim_verifies(stored, dkim_dns("127.0.0.1", dns_port))


def test_receiver_down_then_up_gets_the_message_once(
    dnslib_world: tuple[Site, Site, int],
) -> None:
    a, b, _ = dnslib_world
    b.stop()
    submit(a.live, "bob@b.test", "retried")
    [queued] = wait_for(
        lambda: [m for m in queue_of(a.live) if m.recipients[0].attempts >= 1], "a failed attempt"
    )
    recipient = queued.recipients[0]
    assert recipient.state.value == "deferred"
    assert "could not connect" in (recipient.last_reply or "")
    b.start()
    wait_for(lambda: mailbox(b.live, "bob@b.test"), "delivery after b.test came back")
    wait_for(lambda: not queue_of(a.live), "a.test's queue to empty")
    time.sleep(1.5)
    assert len(mailbox(b.live, "bob@b.test")) == 1


def test_queued_message_survives_a_restart_of_the_sender(
    dnslib_world: tuple[Site, Site, int],
) -> None:
    a, b, _ = dnslib_world
    b.stop()
    submit(a.live, "bob@b.test", "survivor")
    wait_for(lambda: [m for m in queue_of(a.live) if m.recipients[0].attempts >= 1], "an attempt")
    a.stop()  # the message stays queued on disk, the receiver still down
    a.start()
    assert len(queue_of(a.live)) == 1
    b.start()
    wait_for(lambda: mailbox(b.live, "bob@b.test"), "delivery after the restart")
    wait_for(lambda: not queue_of(a.live), "a.test's queue to empty")
    time.sleep(1.5)
    assert len(mailbox(b.live, "bob@b.test")) == 1
