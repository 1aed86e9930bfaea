"""A trusted ARC sealer exempts mail failing DMARC from its policy (RFC 8617 §7.2.1), on the
live MX with a loopback DNS server: a mailing list (list.test) re-sends a p=reject domain's
mail, breaking its authentication but sealing an ARC set. Trusted and intact: delivered, and
the evaluation kept for the aggregate report says ``local_policy``; an untrusted sealer or a
broken chain: refused as the policy asks."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.policy import arc
from pillarbox.queue.dkim import DkimAlgorithm, generate_key, public_record
from pillarbox.store.types import INBOX
from pillarbox.testing.dnszone import ZoneRecord
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config

KEY = generate_key(DkimAlgorithm.RSA_SHA256, now=datetime(2025, 1, 1, tzinfo=UTC), selector="a1")
RECORDS = [
    ZoneRecord("_dmarc.strict.test", "TXT", "v=DMARC1; p=reject; rua=mailto:dmarc@strict.test"),
    ZoneRecord("a1._domainkey.list.test", "TXT", public_record(KEY)),
    ZoneRecord("a1._domainkey.other.test", "TXT", public_record(KEY)),
]


@pytest.fixture
def dns_records() -> list[ZoneRecord]:
    return RECORDS


@pytest.fixture
def server(tmp_path: Path, dns_port: int) -> Iterator[LiveServer]:
    config = loopback_config(
        tmp_path / "data",
        only=("smtp",),
        dns=cfg.DnsSection(nameserver=f"127.0.0.1:{dns_port}", timeout=2.0),
        policy=cfg.PolicySection(trusted_networks=(), arc_trusted_sealers=("List.Test",)),
        dmarc_reports=cfg.DmarcReportSection(enabled=True, from_address="reports@example.org"),
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        for user in ("bob", "reports"):
            live.add_account(f"{user}@example.org", TEST_PASSWORD)
        yield live


PASSED = "dkim=pass header.d=strict.test; dmarc=pass header.from=strict.test"


def sealed(sealer: str, n: int, results: str = PASSED) -> bytes:
    """strict.test's message as a list re-sends it, with the list's ARC set recording
    ``results`` (what the list found when the message reached it)."""
    stamped = (
        f"Authentication-Results: {sealer}; {results}\r\n"
        f"From: alice@strict.test\r\nTo: list@{sealer}\r\nSubject: [list] hello {n}\r\n"
        f"Message-ID: <{n}@strict.test>\r\n\r\nPosted to the list.\r\n"
    ).encode()
    seal = arc.seal(
        stamped, domain=sealer, selector="a1", private_pem=KEY.private_pem, authserv_id=sealer
    )
    return seal + stamped


def send(server: LiveServer, raw: bytes) -> int:
    """The reply code to the message (250, or the refusal's)."""
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), local_hostname="list.test") as client:
        try:
            client.sendmail("bounces@list.test", ["bob@example.org"], raw)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code
    return 250


def test_trusted_arc_sealer_overrides_dmarc_reject(server: LiveServer) -> None:
    assert send(server, sealed("list.test", 1)) == 250
    assert send(server, sealed("other.test", 2)) == 550  # a valid chain, but not trusted
    broken = sealed("list.test", 3).replace(b"Posted to the list.", b"Changed after sealing.")
    assert send(server, broken) == 550  # trusted sealer, chain fails
    [delivered] = server.mailbox_messages("bob@example.org", INBOX)
    assert b"hello 1" in delivered
    assert b"dmarc=fail" in delivered  # the result stays fail; only the policy was lifted
    kept = server.call(server.store.dmarc_observations(datetime(2100, 1, 1, tzinfo=UTC)))
    assert [(o.disposition, o.override, o.override_comment) for o in kept] == [
        ("none", "local_policy", "arc=pass as[1].d=list.test"),
        ("reject", "", ""),
        ("reject", "", ""),
    ]


def test_a_trusted_sealer_that_saw_dmarc_fail_exempts_nothing(server: LiveServer) -> None:
    # RFC 8617 §7.2.1: what is trusted is the sealer's assessment. A forgery of strict.test
    # that the list itself found failing stays refused under p=reject, its chain valid or not.
    failed = "dkim=none; spf=fail smtp.mailfrom=strict.test; dmarc=fail header.from=strict.test"
    assert send(server, sealed("list.test", 4, failed)) == 550
    assert server.mailbox_messages("bob@example.org", INBOX) == []
