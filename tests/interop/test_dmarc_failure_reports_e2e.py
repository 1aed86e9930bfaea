"""DMARC failure reports (RFC 9991) end to end: mail failing DMARC for domains whose records
(served by a loopback DNS server) ask for failure reports arrives at the live MX over SMTP;
the reports are queued through submission and land in the ``ruf`` mailbox. Covered: the
report's structure, ``fo`` options (0, 1, s, d), a destination that did not consent (none
sent), the rate limit per policy domain, and the switch (off: nothing)."""

from __future__ import annotations

import email
import email.policy
import smtplib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.queue.dkim import DkimAlgorithm, generate_key, public_record, sign
from pillarbox.store.types import INBOX
from pillarbox.testing.dnszone import ZoneRecord
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config

RUF = "ruf=mailto:ruf@example.org"
KEY = generate_key(DkimAlgorithm.RSA_SHA256, now=datetime(2025, 1, 1, tzinfo=UTC), selector="k1")


def consenting(domain: str, record: str) -> list[ZoneRecord]:
    """A sender domain whose SPF authorises no one, its DMARC record, and example.org's
    consent to receive its reports (RFC 9991 §5 → RFC 9990 §4)."""
    return [
        ZoneRecord(domain, "TXT", "v=spf1 -all"),
        ZoneRecord(f"_dmarc.{domain}", "TXT", record),
        ZoneRecord(f"{domain}._report._dmarc.example.org", "TXT", "v=DMARC1"),
    ]


RECORDS = [
    *consenting("fails.test", f"v=DMARC1; p=reject; {RUF}"),
    *consenting("quiet.test", "v=DMARC1; p=none; fo=1"),  # no ruf
    # Passes DMARC by aligned SPF; fo=1 still asks about the missing aligned DKIM.
    ZoneRecord("passes.test", "TXT", "v=spf1 ip4:127.0.0.1 -all"),
    ZoneRecord("_dmarc.passes.test", "TXT", f"v=DMARC1; p=reject; fo=1; {RUF}"),
    ZoneRecord("passes.test._report._dmarc.example.org", "TXT", "v=DMARC1"),
    ZoneRecord("zero.test", "TXT", "v=spf1 ip4:127.0.0.1 -all"),
    ZoneRecord("_dmarc.zero.test", "TXT", f"v=DMARC1; p=reject; fo=0; {RUF}"),
    ZoneRecord("zero.test._report._dmarc.example.org", "TXT", "v=DMARC1"),
    *consenting("spf.test", f"v=DMARC1; p=none; fo=s; {RUF}"),
    # Passes DMARC by SPF; fo=d asks about its broken DKIM signature all the same.
    ZoneRecord("signed.test", "TXT", "v=spf1 ip4:127.0.0.1 -all"),
    ZoneRecord("_dmarc.signed.test", "TXT", f"v=DMARC1; p=reject; fo=d; {RUF}"),
    ZoneRecord("signed.test._report._dmarc.example.org", "TXT", "v=DMARC1"),
    ZoneRecord("k1._domainkey.signed.test", "TXT", public_record(KEY)),
    *consenting("flood.test", f"v=DMARC1; p=none; {RUF}"),
    # example.org never agreed to receive refused.test's reports.
    ZoneRecord("refused.test", "TXT", "v=spf1 -all"),
    ZoneRecord("_dmarc.refused.test", "TXT", f"v=DMARC1; p=none; {RUF}"),
]
PER_DOMAIN = 2


@pytest.fixture
def dns_records() -> list[ZoneRecord]:
    return RECORDS


def live(tmp_path: Path, dns_port: int, *, enabled: bool) -> Iterator[LiveServer]:
    config = loopback_config(
        tmp_path / "data",
        only=("smtp",),
        dns=cfg.DnsSection(nameserver=f"127.0.0.1:{dns_port}", timeout=2.0),
        policy=cfg.PolicySection(trusted_networks=()),  # the test client is on loopback
        dmarc_failure_reports=cfg.DmarcFailureReportSection(
            enabled=enabled, from_address="reports@example.org", max_per_domain=PER_DOMAIN
        ),
    )
    with LiveServer(config) as server:
        server.add_domain("example.org")
        for user in ("bob", "ruf", "reports"):
            server.add_account(f"{user}@example.org", TEST_PASSWORD)
        yield server


@pytest.fixture
def server(tmp_path: Path, dns_port: int) -> Iterator[LiveServer]:
    yield from live(tmp_path, dns_port, enabled=True)


@pytest.fixture
def server_off(tmp_path: Path, dns_port: int) -> Iterator[LiveServer]:
    yield from live(tmp_path, dns_port, enabled=False)


def send(server: LiveServer, author: str, n: int, *, broken_signature: bool = False) -> bool:
    """Mail from ``author`` (also the MAIL FROM); whether it was accepted."""
    raw = (
        f"From: {author}\r\nTo: bob@example.org\r\nSubject: report test {n}\r\n"
        f"Date: Mon, 3 Jun 2024 10:00:00 +0000\r\n"
        f"Message-ID: <{n}@client.test>\r\n\r\nBody {n}, not to be reported.\r\n"
    ).encode()
    if broken_signature:
        signature = sign(raw, author.rpartition("@")[2], [KEY])
        raw = signature + raw.replace(b"not to be", b"never to be")
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), local_hostname="client.test") as client:
        try:
            client.sendmail(author, ["bob@example.org"], raw)
        except smtplib.SMTPDataError:
            return False
    return True


def reports(server: LiveServer) -> list[Message]:
    return [
        email.message_from_bytes(raw, policy=email.policy.compat32)
        for raw in server.mailbox_messages("ruf@example.org", INBOX)
    ]


def fields(report: Message) -> Message:
    payload = report.get_payload()
    assert isinstance(payload, list)
    inner = payload[1].get_payload()
    assert isinstance(inner, list)
    [block] = inner
    assert isinstance(block, Message)
    return block


def by_domain(found: list[Message]) -> dict[str, list[Message]]:
    out: dict[str, list[Message]] = {}
    for report in found:
        out.setdefault(str(fields(report)["Reported-Domain"]), []).append(report)
    return out


def wait_for(server: LiveServer, predicate: object, timeout: float = 20.0) -> list[Message]:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    found = reports(server)
    while not predicate(found) and time.monotonic() < deadline:
        time.sleep(0.3)
        found = reports(server)
    return found


def test_failure_reports_end_to_end(server: LiveServer) -> None:
    # Sent first, so their reports (if any were wrongly made) would arrive before the others.
    assert send(server, "x@refused.test", 1)
    assert send(server, "x@quiet.test", 2)
    assert send(server, "x@zero.test", 3)  # passes; fo=0 asks nothing
    assert not send(server, "x@fails.test", 4)  # p=reject: refused at DATA, still reported
    assert send(server, "x@passes.test", 5)
    assert send(server, "x@spf.test", 6)
    assert send(server, "x@signed.test", 7, broken_signature=True)
    for n in range(PER_DOMAIN + 2):
        assert send(server, "x@flood.test", 10 + n)

    wanted = {
        "fails.test": 1,
        "passes.test": 1,
        "spf.test": 1,
        "signed.test": 1,
        "flood.test": PER_DOMAIN,
    }
    found = wait_for(server, lambda f: {d: len(r) for d, r in by_domain(f).items()} == wanted)
    time.sleep(1.0)  # room for a report that should not come
    found = reports(server)
    grouped = by_domain(found)
    assert {d: len(r) for d, r in grouped.items()} == wanted

    [report] = grouped["fails.test"]
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "feedback-report"
    assert report["From"] == "reports@example.org"
    # Queued through submission (local delivery here; mail leaving is DKIM-signed there).
    assert report["Auto-Submitted"] == "auto-generated"
    payload = report.get_payload()
    assert isinstance(payload, list)
    assert [p.get_content_type() for p in payload] == [
        "text/plain",
        "message/feedback-report",
        "text/rfc822-headers",
    ]
    block = fields(report)
    assert block["Feedback-Type"] == "auth-failure"
    assert block["Auth-Failure"] == "dmarc"
    assert block["Identity-Alignment"] == "dkim, spf"
    assert block["Source-IP"] == "127.0.0.1"
    assert block["Delivery-Result"] == "reject"
    assert "dmarc=fail" in str(block["Authentication-Results"])
    assert str(block["SPF-DNS"]) == "txt : fails.test : v=spf1 -all"
    headers = payload[2].get_payload()
    assert isinstance(headers, str)
    assert "Subject: report test 4" in headers
    assert "not to be reported" not in headers  # headers only by default
    assert "x@fails.test" not in headers and "@fails.test" in headers  # local part redacted

    [passing] = grouped["passes.test"]  # fo=1
    assert fields(passing)["Identity-Alignment"] == "dkim"
    assert fields(passing)["Delivery-Result"] is None
    [spf_report] = grouped["spf.test"]  # fo=s
    assert fields(spf_report)["Auth-Failure"] == "spf"
    [signature_report] = grouped["signed.test"]  # fo=d
    signature = fields(signature_report)
    assert (signature["Auth-Failure"], signature["DKIM-Domain"], signature["DKIM-Selector"]) == (
        "signature",
        "signed.test",
        "k1",
    )


def test_nothing_is_sent_unless_enabled(server_off: LiveServer) -> None:
    assert not send(server_off, "x@fails.test", 1)
    assert send(server_off, "x@spf.test", 2)
    time.sleep(2.0)
    assert reports(server_off) == []
    assert len(server_off.mailbox_messages("bob@example.org", INBOX)) == 1
