"""Our report sender and our report reader agree: mail from a hosted domain whose DMARC
record (loopback DNS) asks for aggregate reports at its own ``dmarc-reports`` address arrives
at the live MX; the periodic job (pillarbox.policy.reporting) builds the gzipped report and
submits it; final delivery to the report address reads it back
(pillarbox.policy.receivedreports) into the summary the admin page shows."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.store.types import INBOX, ReceivedReport
from pillarbox.testing.dnszone import ZoneRecord
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.polling import wait_for

INTERVAL = 2.0


@pytest.fixture
def dns_records() -> list[ZoneRecord]:
    return [
        ZoneRecord("example.org", "TXT", "v=spf1 ip4:127.0.0.1 -all"),
        ZoneRecord(
            "_dmarc.example.org", "TXT", "v=DMARC1; p=none; rua=mailto:dmarc-reports@example.org"
        ),
    ]


@pytest.fixture
def live(tmp_path: Path, dns_port: int) -> Iterator[LiveServer]:
    config = loopback_config(
        tmp_path / "data",
        only=("smtp",),
        dns=cfg.DnsSection(nameserver=f"127.0.0.1:{dns_port}", timeout=2.0),
        policy=cfg.PolicySection(trusted_networks=()),
        dmarc_reports=cfg.DmarcReportSection(
            enabled=True,
            interval=INTERVAL,
            from_address="reports@example.org",
            org_name="Example Org",
        ),
    )
    with LiveServer(config) as server:
        server.add_domain("example.org")
        for user in ("bob", "dmarc-reports", "reports"):
            server.add_account(f"{user}@example.org", TEST_PASSWORD)
        yield server


def kept(live: LiveServer) -> list[ReceivedReport]:
    return live.call(live.store.received_reports(datetime(2000, 1, 1, tzinfo=UTC)))


def test_our_aggregate_report_is_read_by_our_receiver(live: LiveServer) -> None:
    raw = (
        b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: hi\r\n"
        b"Message-ID: <own-1@example.org>\r\n\r\nHello.\r\n"
    )
    with smtplib.SMTP("127.0.0.1", live.port("smtp"), local_hostname="client.test") as client:
        client.sendmail("alice@example.org", ["bob@example.org"], raw)
    assert len(live.mailbox_messages("bob@example.org", INBOX)) == 1
    [report] = wait_for(lambda: kept(live) or None, "our report read back", timeout=60)
    assert (report.kind, report.org_name, report.domain) == ("dmarc", "Example Org", "example.org")
    assert report.report_id.endswith(".example.org@mx.test")
    assert report.contact == "reports@example.org"
    assert report.policy == "p=none"
    [row] = report.rows
    assert (row.source, row.messages, row.failed, row.spf) == ("127.0.0.1", 1, 0, "pass")
    # The report itself is in the report mailbox too.
    assert len(live.mailbox_messages("dmarc-reports@example.org", INBOX)) == 1
