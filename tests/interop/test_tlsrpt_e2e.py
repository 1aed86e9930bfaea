"""TLS reporting (RFC 8460) end to end: a live Pillarbox delivers submitted mail by MX to
receiving servers on loopback (aiosmtpd, the peer) whose DNSSEC-"secure" TLSA records (our
DNS server on loopback, AD set for ``signed.test``) match one server's key and not the
other's; the server's periodic job builds the TLS reports and queues them through submission;
they land in the ``rua`` mailbox (a local account) with the right counts."""

from __future__ import annotations

import contextlib
import dataclasses
import email
import gzip
import http.server
import json
import logging
import smtplib
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pillarbox import config as cfg
from pillarbox.net.tlsrpt import ReportPostError, post_report
from pillarbox.queue.dane import tlsa_for_certificate
from pillarbox.store.types import INBOX, TlsReportPost, TlsSessionResult
from pillarbox.testing.capture import Recorder, capture_peer
from pillarbox.testing.dnszone import ZoneRecord, serve_records
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, free_port, loopback_config
from pillarbox.testing.polling import wait_for
from pillarbox.testing.testca import make_ca

KEY_A_MX = "127.0.0.31"
KEY_B_MX = "127.0.0.32"
COLLECTOR_MX = "127.0.0.33"  # another domain's report collector (no TLS)
COLLECTOR_WEB = "127.0.0.34"  # a report collector taking POSTs (§5.4)
INTERVAL = 2.0
RUA = "v=TLSRPTv1; rua=mailto:tlsrpt@example.org,https://reports.collector.test:{port}/v1/tlsrpt"
REMOTE_RUA = "v=TLSRPTv1; rua=mailto:tlsrpt@collector.test"


class Peers:
    def __init__(
        self,
        port: int,
        a: Recorder,
        b: Recorder,
        collector: Recorder,
        key_a: str,
        handshakes_a: list[str],
    ) -> None:
        self.port, self.a, self.b, self.collector, self.key_a = port, a, b, collector, key_a
        #: One SNI name per TLS handshake with server A: its TLS sessions.
        self.handshakes_a = handshakes_a


def _context(
    directory: Path, name: str, handshakes: list[str] | None = None
) -> tuple[ssl.SSLContext, bytes]:
    ca = make_ca(directory / name)
    cert_path, key_path = ca.issue(name)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    if handshakes is not None:
        context.sni_callback = lambda _o, sni, _c: handshakes.append(sni or "") or None
    der = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    return context, der


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[Peers]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    handshakes: list[str] = []
    context_a, der_a = _context(tmp_path, "a", handshakes)
    context_b, _ = _context(tmp_path, "b")
    port = free_port(KEY_A_MX, KEY_B_MX, COLLECTOR_MX)
    record = tlsa_for_certificate(der_a)
    assert record is not None
    with (
        capture_peer(KEY_A_MX, port, tls=context_a) as a,
        capture_peer(KEY_B_MX, port, tls=context_b) as b,
        capture_peer(COLLECTOR_MX, port) as collector,
    ):
        yield Peers(port, a, b, collector, str(record), handshakes)


class Posted(http.server.BaseHTTPRequestHandler):
    """Keeps what is POSTed to it: (path, Content-Type, body)."""

    received: list[tuple[str, str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append((self.path, self.headers.get("Content-Type", ""), body))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def https_collector(
    directory: Path, handler: type[Posted], **attributes: object
) -> Iterator[tuple[int, list[tuple[str, str, bytes]]]]:
    """An HTTPS server on COLLECTOR_WEB answering POSTs with ``handler``; yields its port and
    what it was sent."""
    (directory / "web").mkdir(parents=True)
    context, _ = _context(directory, "web")  # a CA nobody trusts: §3 lets us not care
    received: list[tuple[str, str, bytes]] = []
    bound = type("Handler", (handler,), {"received": received, **attributes})
    server = http.server.ThreadingHTTPServer((COLLECTOR_WEB, 0), bound)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def collector_web(tmp_path: Path) -> Iterator[tuple[int, list[tuple[str, str, bytes]]]]:
    with https_collector(tmp_path / "web", Posted) as collector:
        yield collector


@pytest.fixture
def dns_records(
    peers: Peers, collector_web: tuple[int, list[tuple[str, str, bytes]]]
) -> list[ZoneRecord]:
    at = f"_{peers.port}._tcp"
    return [
        ZoneRecord("reports.collector.test", "A", COLLECTOR_WEB),
        ZoneRecord("good.signed.test", "MX", "10 mx-a.signed.test."),
        ZoneRecord("mx-a.signed.test", "A", KEY_A_MX),
        ZoneRecord(f"{at}.mx-a.signed.test", "TLSA", peers.key_a),
        ZoneRecord("_smtp._tls.good.signed.test", "TXT", RUA.format(port=collector_web[0])),
        # Key B's server under key A's record: DANE authentication fails.
        ZoneRecord("bad.signed.test", "MX", "10 mx-b.signed.test."),
        ZoneRecord("mx-b.signed.test", "A", KEY_B_MX),
        ZoneRecord(f"{at}.mx-b.signed.test", "TLSA", peers.key_a),
        # Its reports go to another domain: through the queue, DKIM-signed.
        ZoneRecord("_smtp._tls.bad.signed.test", "TXT", REMOTE_RUA),
        ZoneRecord("collector.test", "MX", "10 mx.collector.test."),
        ZoneRecord("mx.collector.test", "A", COLLECTOR_MX),
        # Delivered, but it publishes no TLS-RPT record: no report.
        ZoneRecord("quiet.test", "MX", "10 mx.quiet.test."),
        ZoneRecord("mx.quiet.test", "A", KEY_B_MX),
    ]


@pytest.fixture
def dns_secure() -> list[str]:
    return ["signed.test"]


@pytest.fixture
def server(tmp_path: Path, dns_port: int, peers: Peers) -> Iterator[LiveServer]:
    config = loopback_config(
        tmp_path / "data",
        only=("smtp", "submission"),
        dns=cfg.DnsSection(nameserver=f"127.0.0.1:{dns_port}", timeout=2.0),
        queue=cfg.QueueSection(remote_port=peers.port, connect_timeout=2.0),
        tls_reports=cfg.TlsReportSection(
            enabled=True,
            interval=INTERVAL,
            from_address="reports@example.org",
            org_name="Example Org",
            max_delay=0.0,
        ),
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        for user in ("alice", "reports", "tlsrpt"):
            live.add_account(f"{user}@example.org", TEST_PASSWORD)
        yield live


def submit(live: LiveServer, recipients: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", live.port("submission")) as client:
        client.login("alice@example.org", TEST_PASSWORD)
        for n, recipient in enumerate(recipients):
            client.sendmail(
                "alice@example.org",
                [recipient],
                f"From: alice@example.org\r\nTo: {recipient}\r\nSubject: {n}\r\n\r\nHi.\r\n",
            )


def reports(live: LiveServer, peers: Peers) -> list[tuple[Message, Message, dict[str, Any]]]:
    """Reports in the local rua mailbox and at the remote collector."""
    found = []
    local = live.mailbox_messages("tlsrpt@example.org", INBOX)
    for raw in local + [m.content for m in peers.collector.messages]:
        message = email.message_from_bytes(raw)
        for part in message.walk():
            if part.get_content_type() == "application/tlsrpt+gzip":
                payload = part.get_payload(decode=True)
                assert isinstance(payload, bytes)
                found.append((message, part, json.loads(gzip.decompress(payload))))
    return found


def totals(found: list[tuple[Message, Message, dict[str, Any]]]) -> dict[tuple[str, str], int]:
    """(policy domain, result type or "success") → sessions, over every report."""
    counted: dict[tuple[str, str], int] = {}
    for _, _, document in found:
        for entry in document["policies"]:
            domain = entry["policy"]["policy-domain"]
            key = (domain, "success")
            counted[key] = counted.get(key, 0) + entry["summary"]["total-successful-session-count"]
            for detail in entry.get("failure-details", []):
                key = (domain, detail["result-type"])
                counted[key] = counted.get(key, 0) + detail["failed-session-count"]
    return {k: v for k, v in counted.items() if v}


def test_reports_reach_the_rua_mailbox_with_the_counts(
    server: LiveServer, peers: Peers, collector_web: tuple[int, list[tuple[str, str, bytes]]]
) -> None:
    submit(
        server, ["x@good.signed.test", "y@good.signed.test", "z@bad.signed.test", "q@quiet.test"]
    )
    deadline = time.monotonic() + 6 * INTERVAL + 15
    found = reports(server, peers)
    while time.monotonic() < deadline:
        # Sessions are what is counted (§4.2): the two messages to good.signed.test may share
        # one, or a second session may open and find nothing left to send.
        sessions = len(peers.handshakes_a)
        found = reports(server, peers)
        counted = totals(found)
        # Both messages in first: a report counted after the first session alone ended the
        # wait before the second session once (a PostgreSQL CI run).
        delivered = sum(len(m.rcpt_tos) for m in peers.a.messages)
        if (
            sessions
            and delivered == 2
            and counted.get(("good.signed.test", "success")) == sessions
            and counted.get(("bad.signed.test", "tlsa-invalid"))
        ):
            break
        time.sleep(0.5)
    # The good server got its two messages; the bad one none (DANE refused it).
    assert sorted(r for m in peers.a.messages for r in m.rcpt_tos) == [
        "x@good.signed.test",
        "y@good.signed.test",
    ]
    assert [r for m in peers.b.messages for r in m.rcpt_tos] == ["q@quiet.test"]
    assert totals(found) == {
        ("good.signed.test", "success"): len(peers.handshakes_a),
        ("bad.signed.test", "tlsa-invalid"): 1,
    }
    for message, part, document in found:
        domain = message["TLS-Report-Domain"]
        assert domain in ("good.signed.test", "bad.signed.test")  # quiet.test has no record
        assert message.get_content_type() == "multipart/report"
        assert message.get_param("report-type") == "tlsrpt"
        assert message["TLS-Report-Submitter"] == "example.org"
        start = datetime.strptime(document["date-range"]["start-datetime"], "%Y-%m-%dT%H:%M:%SZ")
        begin = int(start.replace(tzinfo=UTC).timestamp())
        assert part.get_filename().startswith(f"example.org!{domain}!{begin}!")
        assert document["organization-name"] == "Example Org"
        assert document["contact-info"] == "reports@example.org"
        [entry] = document["policies"]
        assert entry["policy"]["policy-type"] == "tlsa"
        assert entry["policy"]["policy-string"] == [peers.key_a]
    # good.signed.test's went to the local mailbox; bad.signed.test's left by SMTP, signed.
    assert {m["TLS-Report-Domain"] for m, _, _ in found if m["DKIM-Signature"] is None} == {
        "good.signed.test"
    }
    [remote] = peers.collector.messages
    assert remote.rcpt_tos == ["tlsrpt@collector.test"]
    assert b"d=example.org" in remote.content  # §3: DKIM-signed by the reporting domain
    # good.signed.test's reports were also POSTed (§5.4), the same documents.
    posted = collector_web[1]
    assert posted and {(path, kind) for path, kind, _ in posted} == {
        ("/v1/tlsrpt", "application/tlsrpt+gzip")
    }
    mailed = [d for m, _, d in found if m["TLS-Report-Domain"] == "good.signed.test"]
    assert [json.loads(gzip.decompress(body)) for _, _, body in posted] == mailed
    bad = next(d for m, _, d in found if m["TLS-Report-Domain"] == "bad.signed.test")
    [detail] = bad["policies"][0]["failure-details"]
    assert detail["receiving-mx-hostname"] == "mx-b.signed.test"
    assert detail["receiving-ip"] == KEY_B_MX
    assert "matches none of the 1 usable TLSA record(s)" in detail["failure-reason-code"]


class Refusing(Posted):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()


async def test_a_post_that_fails_says_why(tmp_path: Path) -> None:
    records = [ZoneRecord("reports.collector.test", "A", COLLECTOR_WEB)]
    with https_collector(tmp_path / "refusing", Refusing) as (port, _):
        async with serve_records(records) as resolver:
            with pytest.raises(ReportPostError, match="HTTP status 500"):
                await post_report(f"https://reports.collector.test:{port}/r", b"x", resolver)
            with pytest.raises(ReportPostError, match=r"nowhere\.test has no address"):
                await post_report("https://nowhere.test/r", b"x", resolver)
            with pytest.raises(ReportPostError, match="not an https URL"):
                await post_report("http://reports.collector.test/r", b"x", resolver)


class Flaky(Posted):
    """Answers 503 to the first ``failures`` POSTs, then 201; keeps when each came."""

    failures: int
    times: list[float]

    def do_POST(self) -> None:
        self.times.append(time.time())
        if len(self.times) <= self.failures:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            super().do_POST()


class TestPostRetries:
    """§5.5 retries of a failed POST, after the §4.1 random delay: one domain's result is
    kept, its record names only the flaky collector."""

    RETRY = 0.3
    MAX_DELAY = 0.5

    @pytest.fixture
    def failures(self) -> int:
        return 2

    @pytest.fixture
    def retry_for(self) -> float:
        return 30.0

    @pytest.fixture
    def flaky(
        self, tmp_path: Path, failures: int
    ) -> Iterator[tuple[int, list[tuple[str, str, bytes]], list[float]]]:
        times: list[float] = []
        with https_collector(tmp_path / "flaky", Flaky, failures=failures, times=times) as got:
            yield got[0], got[1], times

    @pytest.fixture
    def dns_records(
        self, flaky: tuple[int, list[tuple[str, str, bytes]], list[float]]
    ) -> list[ZoneRecord]:
        url = f"https://reports.collector.test:{flaky[0]}/tlsrpt"
        return [
            ZoneRecord("reports.collector.test", "A", COLLECTOR_WEB),
            ZoneRecord("_smtp._tls.flaky.test", "TXT", f"v=TLSRPTv1; rua={url}"),
        ]

    def config(
        self, tmp_path: Path, dns_port: int, *, retry: float, retry_for: float
    ) -> cfg.Config:
        return loopback_config(
            tmp_path / "data",
            only=("submission",),
            dns=cfg.DnsSection(nameserver=f"127.0.0.1:{dns_port}", timeout=2.0),
            tls_reports=cfg.TlsReportSection(
                enabled=True,
                interval=INTERVAL,
                from_address="reports@example.org",
                max_delay=self.MAX_DELAY,
                post_retry=retry,
                post_retry_for=retry_for,
            ),
        )

    @staticmethod
    def started(config: cfg.Config) -> LiveServer:
        """A live server with one session's result kept for flaky.test."""
        live = LiveServer(config).__enter__()
        live.add_domain("example.org")
        live.add_account("reports@example.org", TEST_PASSWORD)
        result = TlsSessionResult(
            recorded=datetime.now(UTC),
            policy_domain="flaky.test",
            policy_type="no-policy-found",
            policy_strings=(),
            mx_patterns=(),
            result_type="",
            receiving_mx="mx.flaky.test",
            receiving_ip="127.0.0.35",
        )
        live.with_store(lambda store: store.record_tls_result(result))
        return live

    @pytest.fixture
    def server(
        self, tmp_path: Path, dns_port: int, retry_for: float, caplog: pytest.LogCaptureFixture
    ) -> Iterator[LiveServer]:
        caplog.set_level(logging.DEBUG, logger="pillarbox.tls-reports")
        live = self.started(self.config(tmp_path, dns_port, retry=self.RETRY, retry_for=retry_for))
        try:
            yield live
        finally:
            live.__exit__(None, None, None)

    @pytest.mark.parametrize("failures", [1])
    def test_a_post_kept_for_retry_survives_a_restart(
        self,
        tmp_path: Path,
        dns_port: int,
        flaky: tuple[int, list[tuple[str, str, bytes]], list[float]],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.INFO, logger="pillarbox.tls-reports")
        _, received, times = flaky
        # The first server fails once and would retry only after 10 minutes: stopped first.
        first = self.started(self.config(tmp_path, dns_port, retry=600.0, retry_for=3600.0))
        try:
            # Kept in the store: claimed here with the lease it had (no retry before it).
            def kept() -> TlsReportPost | None:
                later = datetime.now(UTC) + timedelta(minutes=10)
                return first.with_store(
                    lambda store: store.claim_tls_report_post(later + timedelta(days=1), later)
                )

            wait_for(kept, "the failed POST kept for retry")
        finally:
            first.__exit__(None, None, None)
        assert len(times) == 1 and not received
        # The same store; polling for due retries every RETRY seconds, not every minute.
        config = dataclasses.replace(
            first.config,
            tls_reports=dataclasses.replace(first.config.tls_reports, post_retry=self.RETRY),
        )
        second = LiveServer(config).__enter__()
        try:
            # Still in the store: claimed out of turn with a lease that ends now, it is due.
            now = datetime.now(UTC)
            post = second.with_store(
                lambda store: store.claim_tls_report_post(now + timedelta(days=1), now)
            )
            assert post is not None and (post.policy_domain, post.attempts) == ("flaky.test", 1)
            wait_for(lambda: received, "the POST from the restarted server", timeout=60)
        finally:
            second.__exit__(None, None, None)
        [(_, _, body)] = received
        assert body == post.body
        assert json.loads(gzip.decompress(body))["policies"][0]["policy"]["policy-domain"] == (
            "flaky.test"
        )
        posted = [r for r in caplog.records if r.getMessage() == "TLS report posted"]
        assert [r.fields["attempt"] for r in posted] == [2]  # type: ignore[attr-defined]

    def test_a_failed_post_is_retried_with_doubling_waits_until_taken(
        self,
        server: LiveServer,
        flaky: tuple[int, list[tuple[str, str, bytes]], list[float]],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        _, received, times = flaky
        wait_for(lambda: received, "the report, on the third POST")
        # The collector has the body before the server has read its answer and logged it.
        wait_for(
            lambda: any(r.getMessage() == "TLS report posted" for r in caplog.records),
            "the server's log of the third POST",
        )
        assert len(times) == 3
        [(path, kind, body)] = received
        assert (path, kind) == ("/tlsrpt", "application/tlsrpt+gzip")
        document = json.loads(gzip.decompress(body))
        [policy] = document["policies"]
        assert policy["policy"]["policy-domain"] == "flaky.test"
        assert policy["summary"]["total-successful-session-count"] == 1
        # §5.5: exponential backoff — the second wait is twice the first (each at least it).
        assert times[1] - times[0] >= self.RETRY
        assert times[2] - times[1] >= 2 * self.RETRY
        # §4.1: the first try came after the period's end plus the drawn delay, within bounds.
        end = datetime.fromisoformat(document["date-range"]["end-datetime"]).timestamp()
        [due] = [
            r.fields["due"]  # type: ignore[attr-defined]
            for r in caplog.get_records("setup") + caplog.records
            if r.getMessage() == "next run" and r.fields["boundary"] == end  # type: ignore[attr-defined]
        ]
        assert end <= due <= end + self.MAX_DELAY
        assert times[0] >= due - 0.01  # the timer's float rounding, not load
        outcomes = [
            (r.getMessage(), r.fields["attempt"])  # type: ignore[attr-defined]
            for r in caplog.get_records("setup") + caplog.records
            if r.getMessage().startswith("TLS report")
        ]
        assert outcomes == [
            ("TLS report not posted", 1),
            ("TLS report not posted", 2),
            ("TLS report posted", 3),
        ]

    @pytest.mark.parametrize("failures", [0])
    def test_a_failed_rua_lookup_is_retried_until_the_record_answers(
        self,
        tmp_path: Path,
        dns_port: int,
        dns_failing: set[str],
        flaky: tuple[int, list[tuple[str, str, bytes]], list[float]],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """§5.5: the record cannot be looked up when the report is due (REFUSED: a temporary
        failure); the report is kept, the lookup retried as a POST is, and once the record
        answers the report goes to its rua."""
        caplog.set_level(logging.INFO, logger="pillarbox.tls-reports")
        _, received, times = flaky
        dns_failing.add("_smtp._tls.flaky.test")

        def lookups() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.getMessage() == "TLS-RPT record lookup failed"]

        live = self.started(self.config(tmp_path, dns_port, retry=self.RETRY, retry_for=30.0))
        try:
            wait_for(lambda: len(lookups()) >= 2, "the lookup, failed and retried")
            assert not times
            dns_failing.clear()
            wait_for(lambda: received, "the report, once the record answers")
        finally:
            live.__exit__(None, None, None)
        [(path, kind, body)] = received
        assert (path, kind) == ("/tlsrpt", "application/tlsrpt+gzip")
        document = json.loads(gzip.decompress(body))
        assert document["policies"][0]["policy"]["policy-domain"] == "flaky.test"
        [found] = [r for r in caplog.records if r.getMessage() == "TLS-RPT record found"]
        assert found.fields["attempt"] == len(lookups()) + 1  # type: ignore[attr-defined]

    @pytest.mark.parametrize(("failures", "retry_for"), [(1000, 1.5)])
    def test_a_post_that_keeps_failing_is_given_up_after_post_retry_for(
        self,
        server: LiveServer,
        flaky: tuple[int, list[tuple[str, str, bytes]], list[float]],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        _, received, times = flaky

        def given_up() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.getMessage() == "TLS report given up"]

        [record] = wait_for(given_up, "the retries to end")
        # Tries after 0, 0.3, 0.9 and 1.5 s (the last wait cut short), fewer when slow.
        assert record.fields["attempts"] == len(times) >= 2  # type: ignore[attr-defined]
        assert not received
