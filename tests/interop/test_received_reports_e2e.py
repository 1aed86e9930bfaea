"""Reports other providers send about our domains, end to end: DMARC aggregate reports
(gzip attachment, single-part zip) and a TLS report (the RFC 8460 §4.4 example, gzipped)
arrive over SMTP at the live MX for the report addresses the generated DNS records name;
their summaries are kept once each and shown on the admin page, by the API and by the CLI.
A decompression bomb and a malformed report are refused with a log line, and every message
is delivered as usual."""

from __future__ import annotations

import gzip
import json
import logging
import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.store.types import INBOX, ReceivedReport
from pillarbox.testing import reports
from pillarbox.testing.command import run_pillarbox
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.polling import wait_for
from pillarbox.testing.webclient import WebSession

MAX_SIZE = 64 * 1024
DMARC_TO = "dmarc-reports@example.org"
TLS_TO = "tls-reports@example.org"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    config = loopback_config(
        tmp_path / "data",
        only=("smtp", "http"),
        received_reports=cfg.ReceivedReportSection(max_size=MAX_SIZE),
    )
    with LiveServer(config) as server:
        server.add_domain("example.org")
        server.add_account(DMARC_TO, TEST_PASSWORD)
        server.add_account("postmaster@example.org", TEST_PASSWORD)
        server.add_account("root@example.org", TEST_PASSWORD, is_admin=True)
        # The TLS address is an alias: reports are read from what the RCPT named.
        server.call(server.store.add_alias(TLS_TO, ["postmaster@example.org"]))
        yield server


def send(live: LiveServer, rcpt: str, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", live.port("smtp"), local_hostname="reporter.test") as client:
        client.sendmail("noreply-dmarc-support@google.com", [rcpt], raw)


def kept(live: LiveServer) -> list[ReceivedReport]:
    since = datetime(2000, 1, 1, tzinfo=UTC)
    return live.call(live.store.received_reports(since))


def test_reports_are_read_kept_once_and_shown(
    live: LiveServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pillarbox")
    now = int(datetime.now(UTC).timestamp())
    google = reports.dmarc_xml(begin=now - 86400 * 2)
    microsoft = reports.dmarc_xml(
        org="Enterprise Outlook",
        report_id="a1b2c3",
        begin=now - 86400,
        rows=(
            ("192.0.2.25", 5, "none", "pass", "fail"),
            ("203.0.113.66", 2, "reject", "fail", "fail"),
        ),
    )
    gz = reports.report_message(DMARC_TO, reports.gzipped(google), "application/gzip", "g.xml.gz")
    send(live, DMARC_TO, gz)
    send(live, DMARC_TO, gz)  # a resend: kept once
    send(
        live,
        DMARC_TO,
        reports.report_message(
            DMARC_TO,
            reports.zipped("microsoft.xml", microsoft),
            "application/zip",
            "m.zip",
            single_part=True,
        ),
    )
    tls = json.loads(reports.tls_json())
    tls["date-range"] = {
        "start-datetime": datetime.fromtimestamp(now - 86400, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end-datetime": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    send(
        live,
        TLS_TO,
        reports.report_message(
            TLS_TO,
            reports.gzipped(json.dumps(tls).encode()),
            "application/tlsrpt+gzip",
            "company-x.example!example.org!1!2.json.gz",
            sender="sts-reporting@company-x.example",
        ),
    )
    # A bomb (about 1 KB expanding past the cap) and a malformed report: refused, delivered.
    bomb = gzip.compress(b"<" + b" " * (MAX_SIZE * 16))
    assert len(bomb) < 2048
    send(live, DMARC_TO, reports.report_message(DMARC_TO, bomb, "application/gzip", "b.xml.gz"))
    broken = reports.gzipped(b"<feedback><report_metadata><org_name>x</org_name>")
    send(live, DMARC_TO, reports.report_message(DMARC_TO, broken, "application/gzip", "x.xml.gz"))

    # Every message is in its mailbox, read or not.
    assert len(live.mailbox_messages(DMARC_TO, INBOX)) == 5
    assert len(live.mailbox_messages("postmaster@example.org", INBOX)) == 1
    found = wait_for(lambda: r if len(r := kept(live)) >= 3 else None, "three reports kept")
    assert sorted((r.kind, r.org_name, r.messages, r.failed) for r in found) == [
        ("dmarc", "Enterprise Outlook", 7, 2),
        ("dmarc", "google.com", 15, 3),
        ("tlsrpt", "Company-X", 5629, 303),
    ]
    refused = wait_for(
        lambda: (
            [
                r.__dict__["fields"]["reason"]
                for r in caplog.records
                if r.getMessage() == "received report refused"
            ]
            or None
        ),
        "refusals logged",
    )
    wait_for(lambda: len(refused) >= 2 or None, "both refusals")
    assert f"report decompresses past {MAX_SIZE} bytes" in refused
    assert any(reason.startswith("malformed XML") for reason in refused)
    assert [r for r in caplog.records if r.getMessage() == "received report already kept"]

    # The admin page: per source IP, pass/fail, and the report list.
    admin = WebSession(live)
    try:
        assert admin.login("root@example.org").status_code == 303
        page = admin.get("/admin/domains/example.org/reports")
        assert page.status_code == 200
        text = page.text
        assert "Reports received about example.org" in text
        assert '<th scope="row">192.0.2.25</th><td>17</td><td>17</td><td>0</td><td>2</td>' in text
        assert '<th scope="row">203.0.113.66</th><td>2</td><td>0</td><td><strong>2</strong>' in text
        assert "sts example.org" in text and "Company-X" in text and "Enterprise Outlook" in text
        assert "certificate-expired ×100" in text
        assert admin.get("/admin/domains/nowhere.example/reports").status_code == 404
        recent = admin.get("/admin/domains/example.org/reports", params={"days": "1"}).text
        assert '<option value="30">' in recent and "Enterprise Outlook" in recent
        assert "10387712312983794876" not in recent  # google's report ended two days ago
        # The domain page links there, and its DNS records name the addresses read.
        domain_page = admin.get("/admin/domains/example.org").text
        assert "/admin/domains/example.org/reports" in domain_page
        assert "rua=mailto:dmarc-reports@example.org" in domain_page
        assert "v=TLSRPTv1; rua=mailto:tls-reports@example.org" in domain_page

        api = admin.api("GET", "/admin/domains/example.org/reports", params={"days": "30"})
        assert api.status_code == 200
        body = api.json()
        assert body["domain"] == "example.org" and body["days"] == 30
        assert {(s["kind"], s["source"], s["failed"]) for s in body["sources"]} >= {
            ("dmarc", "198.51.100.7", 3),
            ("tlsrpt", "sts example.org", 303),
        }
        assert sorted(r["report_id"] for r in body["reports"]) == sorted(
            ["10387712312983794876", "a1b2c3", "5065427c-23d3"]
        )
        short = admin.api("GET", "/admin/domains/example.org/reports", params={"days": "1"})
        assert [r["organization"] for r in short.json()["reports"]] == [
            "Company-X",
            "Enterprise Outlook",
        ]
        assert (
            admin.api("GET", "/admin/domains/example.org/reports", params={"days": "x"}).status_code
            == 400
        )
    finally:
        admin.close()

    # The CLI, over the same store.
    site = tmp_path / "site"
    site.mkdir()
    (site / "pillarbox.toml").write_text(
        f'[server]\nhostname = "mx.test"\ndata_dir = "{live.config.data_dir}"\n'
        f'[store]\nurl = "{live.config.store.url}"\n'
    )
    dmarc = run_pillarbox(site, "dmarc", "received", "--domain", "example.org", "--json")
    assert dmarc.returncode == 0, dmarc.stderr
    listed = json.loads(dmarc.stdout)
    assert [(r["organization"], r["messages"], r["failed"]) for r in listed] == [
        ("Enterprise Outlook", 7, 2),
        ("google.com", 15, 3),
    ]
    assert listed[1]["rows"][1] == {
        "source": "198.51.100.7",
        "messages": 3,
        "failed": 3,
        "disposition": "quarantine",
        "dkim": "fail",
        "spf": "fail",
        "header_from": "example.org",
        "detail": "dkim example.org/s1 fail; spf example.org fail",
    }
    tls_cli = run_pillarbox(site, "tls", "reports", "--json")
    assert tls_cli.returncode == 0, tls_cli.stderr
    [tls_report] = json.loads(tls_cli.stdout)
    assert (tls_report["organization"], tls_report["failed"]) == ("Company-X", 303)
    table = run_pillarbox(site, "dmarc", "received")
    assert "example.org from google.com (10387712312983794876): 15 messages, 3 failed" in (
        table.stdout
    )
    recent = run_pillarbox(site, "dmarc", "received", "--days", "1", "--json")
    assert [r["organization"] for r in json.loads(recent.stdout)] == ["Enterprise Outlook"]
    unknown = run_pillarbox(site, "tls", "reports", "--domain", "elsewhere.example")
    assert unknown.stdout.strip() == "no TLS reports received in the last 30 days"


def test_reports_about_other_domains_are_not_kept(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pillarbox")
    xml = reports.dmarc_xml("victim.example", begin=int(datetime.now(UTC).timestamp()))
    send(live, DMARC_TO, reports.report_message(DMARC_TO, xml, "text/xml", "r.xml"))
    assert len(live.mailbox_messages(DMARC_TO, INBOX)) == 1
    wait_for(
        lambda: [r for r in caplog.records if r.getMessage() == "received report refused"] or None,
        "refusal logged",
    )
    assert kept(live) == []
    # A report older than keep_days (400) is not kept either.
    old = reports.dmarc_xml(report_id="old", begin=1_000_000_000)
    send(live, DMARC_TO, reports.report_message(DMARC_TO, old, "text/xml", "o.xml"))
    wait_for(
        lambda: (
            [
                r
                for r in caplog.records
                if r.getMessage() == "received report refused"
                and r.__dict__["fields"]["reason"] == "older than received_reports.keep_days"
            ]
            or None
        ),
        "old report refused",
    )
    assert len(live.mailbox_messages(DMARC_TO, INBOX)) == 2
    # A subdomain of ours is ours.
    sub = reports.dmarc_xml(
        "mail.example.org", report_id="sub", begin=int(datetime.now(UTC).timestamp())
    )
    send(live, DMARC_TO, reports.report_message(DMARC_TO, sub, "text/xml", "s.xml"))
    [report] = wait_for(lambda: kept(live) or None, "subdomain report kept")
    assert report.domain == "mail.example.org"
    assert report.end < datetime.now(UTC) + timedelta(days=1)


def test_a_plus_tagged_report_address_is_read(live: LiveServer) -> None:
    """``rua=mailto:dmarc-reports+google@…`` reaches the same account, and is read too."""
    tagged = "dmarc-reports+google@example.org"
    xml = reports.dmarc_xml(report_id="tagged", begin=int(datetime.now(UTC).timestamp()))
    send(live, tagged, reports.report_message(tagged, xml, "text/xml", "t.xml"))
    [report] = wait_for(lambda: kept(live) or None, "tagged report kept")
    assert report.report_id == "tagged"
    assert len(live.mailbox_messages(DMARC_TO, INBOX)) == 1
