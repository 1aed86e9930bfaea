"""DMARC aggregate reports end to end: mail from a domain whose DMARC record (served by a
loopback DNS server) asks for reports at another domain that consents (RFC 9990 §4) arrives
at the live MX over SMTP; the server's periodic job builds the report and queues it through
submission; it lands in the rua mailbox with the right counts. A second domain, whose rua
names an address that did not consent, gets no report. With the RFC 9989 tree walk
configured, a record found below the organizational domain is reported with
``discovery_method`` treewalk, and its ``t=y`` as a ``policy_test_mode`` override."""

from __future__ import annotations

import email
import gzip
import smtplib
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Literal

import pytest

from pillarbox import config as cfg
from pillarbox.policy.dmarcreport import NAMESPACE
from pillarbox.policy.pipeline import JUNK_MAILBOX
from pillarbox.store.types import INBOX
from pillarbox.testing.dnszone import ZoneRecord
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config

NS = {"d": NAMESPACE}
REPORT_RECORDS = [
    ZoneRecord("sender.test", "TXT", "v=spf1 ip4:127.0.0.1 -all"),
    ZoneRecord("_dmarc.sender.test", "TXT", "v=DMARC1; p=none; rua=mailto:dmarc@example.org"),
    # The report consumer example.org agrees to receive sender.test's reports (§4).
    ZoneRecord("sender.test._report._dmarc.example.org", "TXT", "v=DMARC1"),
    ZoneRecord("_dmarc.pushy.test", "TXT", "v=DMARC1; p=none; rua=mailto:dmarc@example.org"),
    # Found only by the tree walk (the PSL's organizational domain is walker.test).
    ZoneRecord(
        "_dmarc.dept.walker.test", "TXT", "v=DMARC1; p=reject; t=y; rua=mailto:dmarc@example.org"
    ),
    ZoneRecord("dept.walker.test._report._dmarc.example.org", "TXT", "v=DMARC1"),
    # Two destinations, one taking reports of at most 1 KB (RFC 7489 §6.2 "!size").
    ZoneRecord(
        "_dmarc.sized.test",
        "TXT",
        "v=DMARC1; p=none; rua=mailto:dmarc@example.org!1k,mailto:reports@example.org",
    ),
    ZoneRecord("sized.test._report._dmarc.example.org", "TXT", "v=DMARC1"),
]
INTERVAL = 2.0


@pytest.fixture
def dns_records() -> list[ZoneRecord]:
    return REPORT_RECORDS


@pytest.fixture
def server(tmp_path: Path, dns_port: int) -> Iterator[LiveServer]:
    yield from live_server(tmp_path, dns_port, "psl")


@pytest.fixture
def walking_server(tmp_path: Path, dns_port: int) -> Iterator[LiveServer]:
    yield from live_server(tmp_path, dns_port, "treewalk")


@pytest.fixture
def keeping_server(tmp_path: Path, dns_port: int) -> Iterator[LiveServer]:
    """Reports due only after the test: its observations stay in the store to be counted."""
    yield from live_server(tmp_path, dns_port, "psl", interval=3600.0)


def live_server(
    tmp_path: Path,
    dns_port: int,
    discovery: Literal["psl", "treewalk"],
    interval: float = INTERVAL,
) -> Iterator[LiveServer]:
    config = loopback_config(
        tmp_path / "data",
        only=("smtp",),
        dns=cfg.DnsSection(nameserver=f"127.0.0.1:{dns_port}", timeout=2.0),
        # The test client is on loopback.
        policy=cfg.PolicySection(trusted_networks=(), dmarc_discovery=discovery),
        dmarc_reports=cfg.DmarcReportSection(
            enabled=True,
            interval=interval,
            from_address="reports@example.org",
            org_name="Example Org",
        ),
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        for user in ("bob", "dmarc", "reports"):
            live.add_account(f"{user}@example.org", TEST_PASSWORD)
        yield live


def message(sender: str, subject: str, n: int) -> bytes:
    return (
        f"From: {sender}\r\nTo: bob@example.org\r\nSubject: {subject}\r\n"
        f"Message-ID: <{n}@reports.test>\r\n\r\nMessage number {n}.\r\n"
    ).encode()


def send(live: LiveServer, mail_from: str, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", live.port("smtp"), local_hostname="client.test") as client:
        client.sendmail(mail_from, ["bob@example.org"], raw)


def reports(live: LiveServer) -> list[tuple[Message, ET.Element]]:
    found = []
    for raw in live.mailbox_messages("dmarc@example.org", INBOX):
        parsed = email.message_from_bytes(raw)
        for part in parsed.walk():
            if part.get_content_type() == "application/gzip":
                payload = part.get_payload(decode=True)
                assert isinstance(payload, bytes)
                found.append((part, ET.fromstring(gzip.decompress(payload))))
    return found


def test_aggregate_report_reaches_the_rua_mailbox(server: LiveServer) -> None:
    # Two messages whose SPF passes aligned (MAIL FROM sender.test), one whose MAIL FROM is
    # another domain (SPF none, not aligned: DMARC fails, p=none delivers it anyway).
    send(server, "alice@sender.test", message("alice@sender.test", "one", 1))
    send(server, "alice@sender.test", message("alice@sender.test", "two", 2))
    send(server, "bounce@elsewhere.test", message("alice@sender.test", "three", 3))
    send(server, "x@pushy.test", message("x@pushy.test", "four", 4))
    assert len(server.mailbox_messages("bob@example.org", INBOX)) == 4

    deadline = time.monotonic() + 6 * INTERVAL + 10
    counted: dict[tuple[str, str, str], int] = {}
    found: list[tuple[Message, ET.Element]] = []
    while time.monotonic() < deadline:
        found = reports(server)
        counted = {}
        for _, root in found:
            for record in root.findall("d:record", NS):
                key = (
                    record.findtext("d:identifiers/d:envelope_from", namespaces=NS) or "",
                    record.findtext("d:row/d:policy_evaluated/d:spf", namespaces=NS) or "",
                    record.findtext("d:auth_results/d:spf/d:result", namespaces=NS) or "",
                )
                counted[key] = counted.get(key, 0) + int(
                    record.findtext("d:row/d:count", namespaces=NS) or 0
                )
        if sum(counted.values()) >= 3:
            break
        time.sleep(0.5)
    assert counted == {("sender.test", "pass", "pass"): 2, ("elsewhere.test", "fail", "none"): 1}
    for part, root in found:
        assert root.findtext("d:policy_published/d:domain", namespaces=NS) == "sender.test"
        assert root.findtext("d:report_metadata/d:org_name", namespaces=NS) == "Example Org"
        assert root.findtext("d:report_metadata/d:email", namespaces=NS) == "reports@example.org"
        begin = root.findtext("d:report_metadata/d:date_range/d:begin", namespaces=NS)
        end = root.findtext("d:report_metadata/d:date_range/d:end", namespaces=NS)
        assert part.get_filename() == f"mx.test!sender.test!{begin}!{end}.xml.gz"
        assert {
            r.findtext("d:row/d:source_ip", namespaces=NS) for r in root.findall("d:record", NS)
        } == {"127.0.0.1"}
    # pushy.test's rua is at example.org, which did not consent to its reports.
    assert all("pushy.test" not in str(part.get_filename()) for part, _ in found)
    # What was reported is forgotten (pushy.test's evaluation may fall in the next period: its
    # run forgets it too, having nowhere to send it).
    left = server.call(server.store.dmarc_observations(datetime(2100, 1, 1, tzinfo=UTC)))
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = server.call(server.store.dmarc_observations(datetime(2100, 1, 1, tzinfo=UTC)))
    assert left == []


def wait_for_reports(live: LiveServer, count: int) -> list[tuple[Message, ET.Element]]:
    deadline = time.monotonic() + 6 * INTERVAL + 10
    found = reports(live)
    while len(found) < count and time.monotonic() < deadline:
        time.sleep(0.5)
        found = reports(live)
    return found


def test_tree_walk_discovery_and_testing_mode_are_reported(walking_server: LiveServer) -> None:
    # team.dept.walker.test: no record of its own; the walk finds dept.walker.test's (p=reject,
    # t=y), so the failing message is quarantined instead of refused.
    send(walking_server, "x@elsewhere.test", message("x@team.dept.walker.test", "walk", 5))
    assert len(walking_server.mailbox_messages("bob@example.org", JUNK_MAILBOX)) == 1
    [(part, root)] = wait_for_reports(walking_server, 1)
    assert "!dept.walker.test!" in str(part.get_filename())
    published = root.find("d:policy_published", NS)
    assert published is not None
    assert published.findtext("d:domain", namespaces=NS) == "dept.walker.test"
    assert published.findtext("d:discovery_method", namespaces=NS) == "treewalk"
    assert published.findtext("d:testing", namespaces=NS) == "y"
    evaluated = root.find("d:record/d:row/d:policy_evaluated", NS)
    assert evaluated is not None
    assert evaluated.findtext("d:disposition", namespaces=NS) == "quarantine"
    assert evaluated.findtext("d:reason/d:type", namespaces=NS) == "policy_test_mode"
    assert root.findtext("d:record/d:identifiers/d:header_from", namespaces=NS) == (
        "team.dept.walker.test"
    )


def test_a_message_for_an_account_and_a_forward_is_observed_once(
    keeping_server: LiveServer,
) -> None:
    # team@ reaches bob's mailbox and forwards to another domain: the message is assessed once,
    # so one evaluation is kept for the aggregate report (and failure reports are not doubled).
    live = keeping_server
    live.call(live.store.add_alias("team@example.org", ["bob@example.org", "dave@remote.test"]))
    with smtplib.SMTP("127.0.0.1", live.port("smtp"), local_hostname="client.test") as client:
        client.sendmail(
            "alice@sender.test", ["team@example.org"], message("alice@sender.test", "both", 9)
        )
    assert len(live.mailbox_messages("bob@example.org", INBOX)) == 1
    kept = live.call(live.store.dmarc_observations(datetime(2100, 1, 1, tzinfo=UTC)))
    assert [o.policy_domain for o in kept] == ["sender.test"]


def test_a_report_goes_only_where_its_size_is_accepted(server: LiveServer) -> None:
    send(server, "x@sized.test", message("x@sized.test", "sized", 10))
    deadline = time.monotonic() + 6 * INTERVAL + 10
    while time.monotonic() < deadline:
        got = server.mailbox_messages("reports@example.org", INBOX)
        if got:
            break
        time.sleep(0.5)
    [raw] = got
    assert len(raw) > 1024
    assert email.message_from_bytes(raw)["To"] == "reports@example.org"  # built for it alone
    assert reports(server) == []  # dmarc@ takes at most 1 KB
