"""Real Postfix as the front MTA, delivering to our lmtp listener: the Dovecot-LMTP deployment
(``virtual_transport = lmtp:inet:127.0.0.1:PORT``, docs/lmtp.md). Mail is sent to Postfix's
smtpd with smtplib and read back over our IMAP with imaplib; Postfix's log shows what it was
told per recipient. On PostgreSQL too with ``PILLARBOX_TEST_STORE``.

One message to three recipients goes to us in one LMTP transaction: alice's copy is stored
(250), full@'s mailbox is over quota (452 4.2.2: Postfix defers that recipient alone and keeps
it in its queue), nobody@ is unknown (550 5.1.1 at RCPT: Postfix bounces it). Postfix sends
``SIZE=``, so the quota is answered at RCPT already; with ``lmtp_discard_lhlo_keywords = size``
it is answered after the data, in full@'s own reply of the per-recipient ones (RFC 2033 §4.2).
Postfix's virtual map accepts every address of example.org, so our replies are what decide.
The same over a UNIX socket (``virtual_transport = lmtp:unix:/path``, ``[lmtp] socket``), and
with ``[lmtp] policy = "full"`` and Postfix's ``lmtp_send_xforward_command = yes``: the sending
client (made to look remote with XFORWARD to Postfix's smtpd) is passed on to us, and SPF is
checked on its address (our loopback DNS server holds the sender domain's record). And as
from another host (``[lmtp] trusted_networks`` empty): Postfix must use STARTTLS
(``lmtp_tls_security_level = encrypt``) and AUTH (``lmtp_sasl_auth_enable``, Cyrus SASL) as
the one ``[lmtp] auth_accounts`` account, or nothing is delivered.
"""

from __future__ import annotations

import dataclasses
import email
import imaplib
import logging
import pwd
import re
import shutil
import smtplib
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.testing.dnszone import ZoneRecord
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, free_port, loopback_config
from pillarbox.testing.peers import PostfixPeer, postfix_peer, reachable_dir
from pillarbox.testing.polling import wait_for

FRONT = "front.test"  # Postfix's name
ALICE = "alice@example.org"
FULL = "full@example.org"
NOBODY = "nobody@example.org"
WAIT = 20.0
SENDER = "someone@outside.test"
#: The sending client's address, as Postfix's smtpd is told it and passes it on to us.
CLIENT = "192.0.2.7"
#: The account Postfix's lmtp logs in as (variant "tls-auth").
FRONT_LOGIN = "front@example.org"


@pytest.fixture
def dns_records() -> list[ZoneRecord]:
    return [ZoneRecord("outside.test", "TXT", f"v=spf1 ip4:{CLIENT} -all")]


@pytest.fixture
def ports() -> tuple[int, int]:
    """Our lmtp listener's port and Postfix's smtpd's, known before either starts."""
    return free_port("127.0.0.1"), free_port("127.0.0.1")


@pytest.fixture(params=["size", "no-size", "unix", "xforward", "tls-auth"])
def variant(request: pytest.FixtureRequest) -> str:
    """How Postfix reaches us: over TCP (announcing SIZE= or not), over a UNIX socket, over
    TCP passing its client with XFORWARD, or over TCP as if from another host (STARTTLS and
    AUTH required)."""
    return str(request.param)


@pytest.fixture
def socket_dir(variant: str) -> Iterator[Path | None]:
    """Where our UNIX socket goes: a directory Postfix's lmtp (user postfix) can reach."""
    if variant != "unix":
        yield None
        return
    directory = reachable_dir("pb-lmtp-")
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def server(
    tmp_path: Path, ports: tuple[int, int], socket_dir: Path | None, variant: str, dns_port: int
) -> Iterator[LiveServer]:
    config = loopback_config(
        tmp_path / "data",
        only=["lmtp", "imap"],
        ports={"lmtp": ports[0]},
        dns=cfg.DnsSection(nameserver=f"127.0.0.1:{dns_port}", timeout=2.0),
        lmtp=cfg.LmtpSection(policy="full" if variant == "xforward" else "content"),
    )
    if variant == "tls-auth":
        section = cfg.LmtpSection(trusted_networks=(), auth_accounts=(FRONT_LOGIN,))
        config = dataclasses.replace(config, lmtp=section)
    if socket_dir is not None:
        # The socket only (Postfix's lmtp runs as postfix, this test as root: 0666).
        section = cfg.LmtpSection(socket=str(socket_dir / "lmtp"), socket_mode="0666")
        listeners = dataclasses.replace(config.listeners, lmtp=cfg.Listener(enabled=False))
        config = dataclasses.replace(config, lmtp=section, listeners=listeners)
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account(ALICE, TEST_PASSWORD)
        live.add_account(FULL, TEST_PASSWORD, quota_bytes=1)
        live.add_account(FRONT_LOGIN, TEST_PASSWORD)
        yield live


def postfix_settings(transport: str) -> dict[str, object]:
    """The front MTA's main.cf, as docs/lmtp.md has it (with this test's transport)."""
    return {
        "myhostname": FRONT,
        "mydomain": FRONT,
        "virtual_mailbox_domains": "example.org",
        "virtual_mailbox_maps": "static:ok",
        "virtual_transport": transport,
        "smtpd_recipient_restrictions": "permit_mynetworks, reject_unauth_destination",
        "lmtp_lhlo_name": FRONT,
    }


def tls_auth_settings(conf: Path, port: int) -> dict[str, object]:
    """main.cf for a front MTA on another host (docs/lmtp.md): TLS without verifying our
    (self-signed) certificate, and SASL with the password from a map keyed by our host and
    port, in Postfix's configuration directory ``conf``."""
    passwords = conf / "lmtp_passwd"
    passwords.write_text(f"127.0.0.1:{port} {FRONT_LOGIN}:{TEST_PASSWORD}\n")
    passwords.chmod(0o600)
    return {
        "lmtp_tls_security_level": "encrypt",
        "lmtp_tls_loglevel": 1,
        "lmtp_sasl_auth_enable": "yes",
        "lmtp_sasl_password_maps": f"texthash:{passwords}",
    }


@pytest.fixture
def postfix(
    variant: str, ports: tuple[int, int], server: LiveServer, socket_dir: Path | None
) -> Iterator[PostfixPeer]:
    def configure(directory: Path, owner: pwd.struct_passwd) -> dict[str, object]:
        if socket_dir is not None:
            settings = postfix_settings(f"lmtp:unix:{socket_dir / 'lmtp'}")
        else:
            settings = postfix_settings(f"lmtp:inet:127.0.0.1:{ports[0]}")
        if variant == "no-size":
            settings["lmtp_discard_lhlo_keywords"] = "size"
        if variant == "xforward":
            settings["lmtp_send_xforward_command"] = "yes"
            settings["smtpd_authorized_xforward_hosts"] = "127.0.0.0/8"  # the test client
        if variant == "tls-auth":
            settings.update(tls_auth_settings(directory / "conf", ports[0]))
        return settings

    with postfix_peer(ports[1], configure) as peer:
        yield peer


def imap_messages(server: LiveServer, address: str) -> list[bytes]:
    with imaplib.IMAP4("127.0.0.1", server.port("imap")) as client:
        client.login(address, TEST_PASSWORD)
        client.select("INBOX", readonly=True)
        _, data = client.search(None, "ALL")
        found: list[bytes] = []
        for number in data[0].split():
            _, parts = client.fetch(number, "(BODY.PEEK[])")
            item = parts[0]
            assert isinstance(item, tuple)
            found.append(item[1])
        return found


def test_postfix_delivers_over_lmtp_with_per_recipient_outcomes(
    server: LiveServer,
    postfix: PostfixPeer,
    variant: str,
    socket_dir: Path | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pillarbox.lmtp")
    after_data = variant == "no-size"
    raw = (
        f"From: {SENDER}\r\nTo: {ALICE}, {FULL}, {NOBODY}\r\n"
        "Subject: through the front MTA\r\n\r\nHello over LMTP.\r\n"
    )
    with smtplib.SMTP("127.0.0.1", postfix.port) as client:
        if variant == "xforward":
            client.ehlo("client.example")
            reply = client.docmd(
                "XFORWARD", f"ADDR={CLIENT} NAME=[UNAVAILABLE] HELO=mx.outside.test"
            )
            assert reply[0] == 250, reply
        refused = client.sendmail(SENDER, [ALICE, FULL, NOBODY], raw)
    assert refused == {}  # Postfix took all three: our replies decide

    [stored] = wait_for(
        lambda: imap_messages(server, ALICE),
        "the message in alice's INBOX over IMAP",
        timeout=WAIT,
        context=postfix.log,
    )
    message = email.message_from_bytes(stored, policy=policy.default)
    assert isinstance(message, EmailMessage)
    ours, theirs = message.get_all("Received")[:2]
    # RFC 5321 §4.4: TCP-info is the client's address; a UNIX socket has none.
    assert ours.startswith(
        f"from {FRONT} ([127.0.0.1])" if variant != "unix" else f"from {FRONT}\tby mx.test"
    )
    protocol = "LMTPSA" if variant == "tls-auth" else "LMTP"  # RFC 3848 §2
    assert f"by mx.test (Pillarbox) with {protocol} id" in ours
    assert f"by {FRONT} (Postfix) with ESMTP" in theirs
    assert message["Delivered-To"] == ALICE
    assert message.get_content().strip() == "Hello over LMTP."
    assert "X-Pillarbox-Spam" in message  # the content policy ran
    results = str(message["Authentication-Results"])
    if variant == "xforward":
        assert "spf=pass smtp.mailfrom=outside.test" in results, results
    else:
        assert results == "mx.test; none"  # the sender's connection was Postfix's

    # Alice's copy is in the store before our 250 reaches Postfix, so its log line for her can
    # come after the message is read above: wait for all three.
    wait_for(
        lambda: all(f"to=<{a}>" in postfix.log() for a in (ALICE, FULL, NOBODY)),
        "Postfix's outcomes for alice@, full@ and nobody@",
        timeout=WAIT,
        context=postfix.log,
    )
    log = postfix.log()
    lines = {
        address: next(line for line in log.splitlines() if f"to=<{address}>" in line)
        for address in (ALICE, FULL, NOBODY)
    }
    relay = f"[{socket_dir / 'lmtp'}]" if socket_dir else "relay=127.0.0.1[127.0.0.1]"
    assert relay in lines[ALICE] and "status=sent" in lines[ALICE], lines[ALICE]
    assert re.search(r"status=sent \(250 2\.0\.0 message accepted as [0-9a-f]+\)", lines[ALICE])
    assert "status=deferred" in lines[FULL], lines[FULL]
    stage = "end of DATA command" if after_data else "RCPT TO command"
    assert f"452 4.2.2 mailbox full (in reply to {stage})" in lines[FULL]
    assert "status=bounced" in lines[NOBODY], lines[NOBODY]
    assert "550 5.1.1 mailbox unavailable (in reply to RCPT TO command)" in lines[NOBODY]
    assert server.mailbox_messages(FULL, "INBOX") == []
    assert server.call(server.store.list_queue()) == []  # the retry is Postfix's
    if variant == "tls-auth":
        assert "Untrusted TLS connection established to 127.0.0.1[127.0.0.1]" in log, log
        logins = [r for r in caplog.records if r.getMessage() == "authenticated"]
        assert logins and logins[0].fields["account"] == FRONT_LOGIN  # type: ignore[attr-defined]
        # Cyrus picks the strongest mechanism offered, which Postfix's defaults allow.
        assert logins[0].fields["mechanism"] == "SCRAM-SHA-256"  # type: ignore[attr-defined]
