"""Postfix as the other MTA on the internet: it relays to our MX, and our queue delivers to it.

Postfix runs as the test's own instance: its own configuration, queue and data directories,
``master -d`` on an unprivileged loopback port, stopped with the test. Postfix's master must
start as root (it runs its daemons as ``mail_owner``, the ``postfix`` user of the Debian
package), so the tests skip when not run as root. Postfix asks the system resolver, which
cannot be pointed at a test's DNS server on another port without changing the machine's
configuration: it reaches our MX through a transport map (``smtp:[127.0.0.1]:PORT``) and
verifies our certificate by name (``verify match=mx.test``). Our side uses DNS: a loopback DNS
server gives the destination domain an MX record naming Postfix's address.

(a) Postfix relays a message to our MX over verified STARTTLS; it lands in the mailbox with our
    Received header (ESMTPS) and Authentication-Results (SPF pass for Postfix's domain).
(b) A message submitted to us is delivered by our queue to Postfix, over STARTTLS (Postfix's
    Received header says so), DKIM-signed, into Postfix's Maildir; the recipient Postfix
    refuses at RCPT gets a bounce of its own.
"""

from __future__ import annotations

import email
import pwd
import shutil
import smtplib
import ssl
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import TypeVar

import pytest

from pillarbox import config as cfg
from pillarbox.net.tls import ensure_self_signed, tls_paths
from pillarbox.store.types import INBOX
from pillarbox.testing.dnszone import ZoneRecord
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, free_port, loopback_config
from pillarbox.testing.peers import PostfixPeer, postfix_peer
from pillarbox.testing.polling import wait_for

POSTFIX_DOMAIN = "postfix.test"  # Postfix's own name and the senders it relays for
FAR_DOMAIN = "elsewhere.test"  # the domain whose mail Postfix receives
WAIT = 15.0

T = TypeVar("T")


@pytest.fixture
def dns_records() -> list[ZoneRecord]:
    """What our server's resolver sees (``dns_port`` in conftest)."""
    return [
        ZoneRecord(FAR_DOMAIN, "MX", f"10 mx.{FAR_DOMAIN}."),
        ZoneRecord(f"mx.{FAR_DOMAIN}", "A", "127.0.0.1"),
        ZoneRecord(POSTFIX_DOMAIN, "TXT", "v=spf1 ip4:127.0.0.1 -all"),
    ]


class Postfix(PostfixPeer):
    def delivered(self) -> list[bytes]:
        """Messages in the Maildir that every recipient of ``FAR_DOMAIN`` shares."""
        return [p.read_bytes() for p in sorted((self.directory / "mail").glob("maildir/*/*"))]


@pytest.fixture
def ports() -> tuple[int, int]:
    """Our MX's port and Postfix's, known before either starts (each names the other)."""
    return free_port("127.0.0.1"), free_port("127.0.0.1")


@pytest.fixture
def server(tmp_path: Path, ports: tuple[int, int], dns_port: int) -> Iterator[LiveServer]:
    """Our server: MX on its fixed port, remote MX hosts on Postfix's port, DNS on loopback,
    and no trusted network (Postfix on 127.0.0.1 is a stranger whose SPF gets checked)."""
    config = loopback_config(
        tmp_path / "data",
        only=["smtp", "submission"],
        ports={"smtp": ports[0]},
        dns=cfg.DnsSection(nameserver=f"127.0.0.1:{dns_port}", timeout=2.0),
        queue=cfg.QueueSection(remote_port=ports[1]),
        policy=cfg.PolicySection(trusted_networks=()),
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account("alice@example.org", TEST_PASSWORD)
        yield live


@pytest.fixture
def postfix(ports: tuple[int, int], server: LiveServer) -> Iterator[Postfix]:
    ca = tls_paths(server.config)[0]

    def configure(directory: Path, owner: pwd.struct_passwd) -> dict[str, object]:
        """Relay example.org to our MX on its port, trusting our certificate there."""
        conf = directory / "conf"
        shutil.copy(ca, conf / "pillarbox-ca.pem")
        ensure_self_signed(conf / "cert.pem", conf / "key.pem", POSTFIX_DOMAIN)
        (conf / "transport").write_text(f"example.org smtp:[127.0.0.1]:{ports[0]}\n")
        (conf / "access").write_text(f"gone@{FAR_DOMAIN} 550 5.1.1 no such user here\n")
        (conf / "tls_policy").write_text(f"[127.0.0.1]:{ports[0]} verify match=mx.test\n")
        return {
            "myhostname": POSTFIX_DOMAIN,
            "mydomain": POSTFIX_DOMAIN,
            "virtual_mailbox_domains": FAR_DOMAIN,
            "virtual_mailbox_base": directory / "mail",
            "virtual_mailbox_maps": "static:maildir/",
            "virtual_uid_maps": f"static:{owner.pw_uid}",
            "virtual_gid_maps": f"static:{owner.pw_gid}",
            "transport_maps": f"texthash:{conf / 'transport'}",
            "smtpd_recipient_restrictions": (
                f"check_recipient_access texthash:{conf / 'access'}, permit_mynetworks, "
                "reject_unauth_destination"
            ),
            "smtpd_tls_security_level": "may",
            "smtpd_tls_cert_file": conf / "cert.pem",
            "smtpd_tls_key_file": conf / "key.pem",
            "smtpd_tls_received_header": "yes",
            "smtp_tls_security_level": "encrypt",
            "smtp_tls_policy_maps": f"texthash:{conf / 'tls_policy'}",
            "smtp_tls_CAfile": conf / "pillarbox-ca.pem",
            "smtp_tls_loglevel": "1",
        }

    with postfix_peer(ports[1], configure) as peer:
        yield Postfix(peer.directory, peer.port, peer.process)


def headers(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_postfix_relays_to_our_mx_over_verified_starttls(
    server: LiveServer, postfix: Postfix
) -> None:
    raw = (
        f"From: someone@{POSTFIX_DOMAIN}\r\nTo: alice@example.org\r\n"
        "Subject: relayed by Postfix\r\n\r\nHello through Postfix.\r\n"
    )
    with smtplib.SMTP("127.0.0.1", postfix.port) as client:
        client.sendmail(f"someone@{POSTFIX_DOMAIN}", ["alice@example.org"], raw)
    [stored] = wait_for(
        lambda: server.mailbox_messages("alice@example.org", INBOX),
        "the message in alice's INBOX",
        timeout=WAIT,
        context=postfix.log,
    )
    message = headers(stored)
    ours, theirs = message.get_all("Received")[:2]
    assert ours.startswith(f"from {POSTFIX_DOMAIN} ([127.0.0.1])")
    assert "by mx.test (Pillarbox) with ESMTPS" in ours and "using TLSv1.3" in ours
    assert f"by {POSTFIX_DOMAIN} (Postfix)" in theirs
    assert f"spf=pass smtp.mailfrom={POSTFIX_DOMAIN}" in str(message["Authentication-Results"])
    assert message.get_content().strip() == "Hello through Postfix."
    log = wait_for(
        lambda: postfix.log_showing("status=sent"),
        "Postfix's log of the delivery",
        timeout=WAIT,
        context=postfix.log,
    )
    assert "Verified TLS connection established to 127.0.0.1" in log, log
    assert "status=sent (250 2.0.0 message accepted as" in log, log


def test_our_queue_delivers_to_postfix_by_mx_and_bounces_what_it_refuses(
    server: LiveServer, postfix: Postfix
) -> None:
    raw = (
        f"From: alice@example.org\r\nTo: carol@{FAR_DOMAIN}, gone@{FAR_DOMAIN}\r\n"
        "Subject: to Postfix\r\n\r\nHello from Pillarbox.\r\n"
    )
    with smtplib.SMTP("localhost", server.port("submission")) as client:
        client.starttls(context=ssl.create_default_context(cafile=tls_paths(server.config)[0]))
        client.login("alice@example.org", TEST_PASSWORD)
        client.sendmail("alice@example.org", [f"carol@{FAR_DOMAIN}", f"gone@{FAR_DOMAIN}"], raw)
    [delivered] = wait_for(
        postfix.delivered, "the message in Postfix's Maildir", timeout=WAIT, context=postfix.log
    )
    message = headers(delivered)
    assert message["Delivered-To"] == f"carol@{FAR_DOMAIN}"
    theirs, ours = message.get_all("Received")[:2]
    # Postfix's header (smtpd_tls_received_header) shows our queue chose STARTTLS.
    assert theirs.startswith("from mx.test (") and "with ESMTPS" in theirs
    assert "using TLSv1.3" in theirs
    assert "by mx.test (Pillarbox) with ESMTPSA" in ours
    assert "d=example.org" in str(message["DKIM-Signature"])
    assert message.get_content().strip() == "Hello from Pillarbox."

    # Postfix refused one recipient at RCPT: a bounce for it alone (RFC 3464), to alice.
    [bounce] = wait_for(
        lambda: server.mailbox_messages("alice@example.org", INBOX),
        "a bounce",
        timeout=WAIT,
        context=postfix.log,
    )
    report = headers(bounce)
    assert report.get_content_type() == "multipart/report"
    status = bounce.decode()
    assert f"Final-Recipient: rfc822; gone@{FAR_DOMAIN}" in status
    assert "Status: 5.1.1" in status and "no such user here" in status
    assert status.count("Final-Recipient:") == 1
    wait_for(
        lambda: server.call(server.store.list_queue()) == [],
        "an empty queue",
        timeout=WAIT,
        context=postfix.log,
    )
