"""Greylisting (RFC 6647) on the live MX with Python's smtplib: a new triplet is deferred with
451 4.7.1 at RCPT, a retry before the delay too, a retry after it passes and the message is
stored; each recipient is answered on its own; trusted clients, allow-listed senders (the
site's, or a recipient's own) and authenticated submission are never greylisted; nor, with
the opt-outs, a sender whose SPF passes (asked of a loopback DNS server) or a recipient of a
skipped domain. Each decision is logged and counted.

The delay is a second; the client is 127.0.0.1 and ``policy.trusted_networks`` names
127.0.0.2 only, so the same machine is a stranger or a trusted client by its source address.
Runs on PostgreSQL too with ``PILLARBOX_TEST_STORE`` set (see :func:`loopback_config`).
"""

from __future__ import annotations

import logging
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox import provisioning
from pillarbox.policy import senderlists
from pillarbox.store.interface import Store
from pillarbox.store.types import INBOX, SenderListKind
from pillarbox.testing.dnszone import ZoneRecord
from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.live import LiveServer, loopback_config

ALICE = "alice@example.org"
BOB = "bob@example.org"
CAROL = "carol@example.org"
SENDER = "someone@example.net"
DELAY = 1.0
GREYLISTED = (451, b"4.7.1 greylisted, please try again later")


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    config = loopback_config(
        tmp_path / "data",
        only=["smtp", "submission"],
        policy=cfg.PolicySection(enabled=False, trusted_networks=("127.0.0.2/32",)),
        greylisting=cfg.GreylistingSection(
            enabled=True,
            delay=DELAY,
            retry_window=60.0,
            auto_allow_clients=0,
            allow_sender_domains=("partner.example",),
        ),
    )
    with LiveServer(config) as server:
        server.add_domain("example.org")
        for address in (ALICE, BOB, CAROL):
            server.add_account(address, PASSWORD)
        yield server


def mx(live: LiveServer, source: str = "127.0.0.1") -> smtplib.SMTP:
    client = smtplib.SMTP(
        "127.0.0.1",
        live.port("smtp"),
        local_hostname="client.example.net",
        source_address=(source, 0),
    )
    client.ehlo()
    return client


def message(subject: str, sender: str = SENDER) -> bytes:
    return f"From: {sender}\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\nHello.\r\n".encode()


def subjects(live: LiveServer, address: str) -> list[str]:
    return [
        raw.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode()
        for raw in live.mailbox_messages(address, INBOX)
    ]


def decisions(live: LiveServer, outcome: str) -> float:
    assert live.server.context is not None
    registry = live.server.context.metrics.registry
    value = registry.get_sample_value("pillarbox_greylisting_decisions_total", {"outcome": outcome})
    assert value is not None
    return value


def test_deferred_until_a_retry_after_the_delay_then_delivered(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pillarbox.smtp")
    with mx(live) as client:
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt(ALICE) == GREYLISTED
        assert client.rcpt(BOB) == GREYLISTED
        # An unknown recipient is refused as before: a deferral tells nothing about who exists.
        assert client.rcpt("nobody@example.org")[0] == 550
        assert client.rcpt("someone@elsewhere.example")[0] == 554
        assert client.rset()[0] == 250
        # Retried at once: still deferred, the delay runs from the first attempt.
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt(ALICE) == GREYLISTED
    time.sleep(DELAY + 0.2)
    with mx(live) as client:
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt(ALICE)[0] == 250
        assert client.rcpt(BOB)[0] == 250
        # A recipient new to this sender is deferred alone; the others take the message.
        assert client.rcpt(CAROL) == GREYLISTED
        assert client.data(message("after the delay"))[0] == 250
        # Passed triplets are not greylisted again: the next message goes straight in.
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt(ALICE)[0] == 250
        assert client.data(message("known"))[0] == 250
    assert subjects(live, ALICE) == ["after the delay", "known"]
    assert subjects(live, BOB) == ["after the delay"]
    assert subjects(live, CAROL) == []
    # The sender's VERP counter does not make each message a new triplet.
    with mx(live) as client:
        verp = "bounce-1234@example.net"
        assert client.mail(verp)[0] == 250
        assert client.rcpt(ALICE) == GREYLISTED
    time.sleep(DELAY + 0.2)
    with mx(live) as client:
        assert client.mail("bounce-5678@example.net")[0] == 250
        assert client.rcpt(ALICE)[0] == 250
    assert decisions(live, "new") == 4  # alice, bob, carol; alice from bounce-#
    assert decisions(live, "early") == 1
    assert decisions(live, "retried") == 3
    assert decisions(live, "known") == 1
    logged = [
        (r.fields["outcome"], r.fields["rcpt"], r.fields["sender"])  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "greylisting"
    ]
    assert logged[:3] == [("new", ALICE, SENDER), ("new", BOB, SENDER), ("early", ALICE, SENDER)]
    assert ("new", ALICE, "bounce-#@example.net") in logged


def test_trusted_clients_allowed_senders_and_submission_are_not_greylisted(
    live: LiveServer,
) -> None:
    with mx(live, source="127.0.0.2") as client:  # in policy.trusted_networks
        assert client.sendmail(SENDER, [ALICE], message("trusted")) == {}
    with mx(live) as client:
        partner = "news@mail.partner.example"  # a subdomain of allow_sender_domains
        assert client.sendmail(partner, [ALICE], message("partner", partner)) == {}
    with smtplib.SMTP("127.0.0.1", live.port("submission")) as client:
        client.login(BOB, PASSWORD)
        assert client.sendmail(BOB, [ALICE], message("submitted", BOB)) == {}
    assert subjects(live, ALICE) == ["trusted", "partner", "submitted"]
    assert decisions(live, "allowed") == 1
    assert decisions(live, "new") == 0


def test_a_sender_on_a_recipients_own_allow_list_is_not_greylisted(live: LiveServer) -> None:
    """Dora allowed ``shop.example`` in her settings (the lists the verdict overrides the
    classifier with): its mail reaches her at once, and an alias reaching her and Bob too;
    Bob alone is greylisted as before, and so is an address Dora blocked under the domain."""
    dora = live.add_account("dora@example.org", PASSWORD)

    async def lists(store: Store) -> None:
        await senderlists.put(store, dora.id, "shop.example", SenderListKind.ALLOW, limit=10)
        await senderlists.put(store, dora.id, "spammy@shop.example", SenderListKind.BLOCK, limit=10)
        await provisioning.add_alias(store, "team@example.org", ["dora@example.org", BOB])

    live.with_store(lists)
    news = "news@mail.shop.example"  # the envelope sender, under the allowed domain
    with mx(live) as client:
        assert client.mail(news)[0] == 250
        assert client.rcpt("dora@example.org")[0] == 250
        assert client.rcpt("team@example.org")[0] == 250
        assert client.rcpt(BOB) == GREYLISTED
        assert client.data(message("from the shop", news))[0] == 250
        assert client.mail("spammy@shop.example")[0] == 250
        assert client.rcpt("dora@example.org") == GREYLISTED
    assert subjects(live, "dora@example.org") == ["from the shop"]  # one copy for both routes
    assert subjects(live, BOB) == ["from the shop"]
    assert decisions(live, "listed") == 2
    assert decisions(live, "new") == 2


@pytest.fixture
def dns_records() -> list[ZoneRecord]:
    return [
        ZoneRecord("spf-pass.test", "TXT", "v=spf1 ip4:127.0.0.1 -all"),
        ZoneRecord("spf-fail.test", "TXT", "v=spf1 -all"),
    ]


@pytest.fixture
def opt_outs(tmp_path: Path, dns_port: int) -> Iterator[LiveServer]:
    config = loopback_config(
        tmp_path / "data",
        only=["smtp"],
        dns=cfg.DnsSection(nameserver=f"127.0.0.1:{dns_port}", timeout=2.0),
        policy=cfg.PolicySection(enabled=False, trusted_networks=("127.0.0.2/32",)),
        greylisting=cfg.GreylistingSection(
            enabled=True,
            delay=60.0,
            auto_allow_clients=0,
            allow_spf_pass=True,
            skip_recipient_domains=("nodelay.example",),
        ),
    )
    with LiveServer(config) as server:
        server.add_domain("example.org")
        server.add_domain("nodelay.example")
        server.add_account(ALICE, PASSWORD)
        server.add_account("dora@nodelay.example", PASSWORD)
        yield server


def test_a_sender_whose_spf_passes_and_a_skipped_domains_recipient_are_not_delayed(
    opt_outs: LiveServer,
) -> None:
    passing, failing = "news@spf-pass.test", "offers@spf-fail.test"
    with mx(opt_outs) as client:
        # The envelope domain authorises 127.0.0.1: delivered at the first attempt.
        assert client.sendmail(passing, [ALICE], message("spf passes", passing)) == {}
        # Its SPF fails: deferred as before ...
        assert client.mail(failing)[0] == 250
        assert client.rcpt(ALICE) == GREYLISTED
        # ... but not for a recipient of a domain that wants no delay.
        assert client.rcpt("dora@nodelay.example")[0] == 250
        assert client.data(message("no delay", failing))[0] == 250
    assert subjects(opt_outs, ALICE) == ["spf passes"]
    assert subjects(opt_outs, "dora@nodelay.example") == ["no delay"]
    assert decisions(opt_outs, "spf") == 1
    assert decisions(opt_outs, "recipient") == 1
    assert decisions(opt_outs, "new") == 1


def test_with_only_listed_clients_a_client_on_no_list_is_not_delayed(
    tmp_path: Path, dns_port: int
) -> None:
    """Selective greylisting on the live MX: the client (loopback, which no DNSBL lists, so
    never looked up) passes at once; its triplet is not remembered."""
    config = loopback_config(
        tmp_path / "data",
        only=["smtp"],
        dns=cfg.DnsSection(nameserver=f"127.0.0.1:{dns_port}", timeout=2.0),
        policy=cfg.PolicySection(
            enabled=False, trusted_networks=("127.0.0.2/32",), dnsbl_ip_zones=("bl.test=3",)
        ),
        greylisting=cfg.GreylistingSection(enabled=True, delay=60.0, only_listed_clients=True),
    )
    with LiveServer(config) as server:
        server.add_domain("example.org")
        server.add_account(ALICE, PASSWORD)
        with mx(server) as client:
            assert client.sendmail(SENDER, [ALICE], message("unlisted")) == {}
            assert client.sendmail(SENDER, [ALICE], message("again")) == {}
        assert subjects(server, ALICE) == ["unlisted", "again"]
        assert decisions(server, "unlisted") == 2
        assert decisions(server, "new") == 0
