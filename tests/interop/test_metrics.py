"""The metrics listener on a live server: mail in over SMTP (accepted and refused), a wrong
IMAP password, a submission deferred by the queue; then ``/metrics`` scraped over real HTTP and
parsed with prometheus_client's own parser. Runs on both stores (``PILLARBOX_TEST_STORE``)."""

from __future__ import annotations

import asyncio
import base64
import http.client
import imaplib
import poplib
import smtplib
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop

from pillarbox import config as cfg
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.polling import wait_for
from pillarbox.testing.scrape import Samples, get_metrics, moved, parse, value
from pillarbox.testing.scrape import scrape as scrape_metrics
from pillarbox.testing.webclient import WebSession

TOKEN = "scrape-token-0123456789"
BASIC_PASSWORD = "basic-password-9876"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    config = loopback_config(
        tmp_path / "data",
        only=("smtp", "submission", "imap", "pop3", "managesieve", "metrics"),
        smtp=cfg.SmtpSection(
            auth_without_tls=True, max_connections_per_ip=1000, max_message_size=10_000
        ),
        metrics=cfg.MetricsSection(bearer_token=TOKEN, basic_auth_password=BASIC_PASSWORD),
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account("alice@example.org", TEST_PASSWORD)
        yield live


def scrape(server: LiveServer) -> Samples:
    return scrape_metrics(server, Authorization=f"Bearer {TOKEN}")


def test_counters_move_with_mail_and_logins(server: LiveServer) -> None:
    before = scrape(server)
    assert value(before, "pillarbox_sessions_active", protocol="smtp") == 0
    # Accepted at the MX, then one refused at the end of DATA (552: over max_message_size).
    server.deliver("alice@example.org", "counted")
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as client:
        client.ehlo("client.test")
        assert client.mail("friend@example.net")[0] == 250
        assert client.rcpt("alice@example.org")[0] == 250
        code, _ = client.data(b"Subject: big\r\n\r\n" + (b"x" * 80 + b"\r\n") * 200)
        assert code == 552
    # Submitted to a domain no DNS answers for: the queue defers it.
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30) as client:
        client.login("alice@example.org", TEST_PASSWORD)
        client.sendmail("alice@example.org", ["bob@elsewhere.test"], b"Subject: out\r\n\r\nhi\r\n")
    # Wrong passwords, one per protocol (the default auth.free_failures lets a fourth through,
    # then throttles the address); a second IMAP session held open while scraping.
    with pytest.raises(imaplib.IMAP4.error):
        imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=30).login(
            "alice@example.org", "wrong password"
        )
    held = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=30)
    try:
        during = scrape(server)
        assert value(during, "pillarbox_sessions_active", protocol="imap") == 1
    finally:
        held.logout()
    # A wrong password over SMTP AUTH and over POP3.
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30) as client:
        client.ehlo("client.test")
        client.user, client.password = "alice@example.org", "wrong password"
        with pytest.raises(smtplib.SMTPAuthenticationError):  # one AUTH (login() tries all)
            client.auth("PLAIN", client.auth_plain)
    pop = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=30)
    try:
        pop.user("alice@example.org")
        with pytest.raises(poplib.error_proto):
            pop.pass_("wrong password")
    finally:
        pop.quit()
    with socket.create_connection(("127.0.0.1", server.port("managesieve")), timeout=30) as sock:
        reader = sock.makefile("rb")
        while not reader.readline().startswith(b"OK"):
            pass
        plain = base64.b64encode(b"\0alice@example.org\0wrong password").decode()
        sock.sendall(f'AUTHENTICATE "PLAIN" "{plain}"\r\n'.encode())
        assert reader.readline().startswith(b"NO")
    # The address is throttled now: the next login is refused before its password is checked.
    with pytest.raises(imaplib.IMAP4.error):
        imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=30).login(
            "alice@example.org", "wrong password"
        )

    def deferred() -> Samples | None:
        # The queue gauges are read at most once a second: they may lag the counter. The
        # refused IMAP client's connection ends when the server reads its close, a moment
        # after the client let it go (the queue may have deferred the message long before).
        now = scrape(server)
        attempts = moved(before, now, "pillarbox_delivery_attempts_total", result="deferred")
        waiting = value(now, "pillarbox_queue_recipients", state="deferred")
        closed = value(now, "pillarbox_sessions_active", protocol="imap") == 0
        return now if attempts >= 1 and waiting and closed else None

    after = wait_for(deferred, "the queue's first attempt deferred and the IMAP sessions ended")
    smtp = {"listener": "smtp"}
    assert moved(before, after, "pillarbox_sessions_total", **smtp) == 2
    assert moved(before, after, "pillarbox_sessions_total", listener="submission") == 2
    assert moved(before, after, "pillarbox_sessions_total", listener="imap") == 3
    messages = "pillarbox_smtp_messages_total"
    assert moved(before, after, messages, outcome="accepted", **smtp) == 1
    assert moved(before, after, messages, outcome="refused_5xx", **smtp) == 1
    assert moved(before, after, messages, outcome="refused_4xx", **smtp) == 0
    assert moved(before, after, messages, outcome="accepted", listener="submission") == 1
    assert moved(before, after, "pillarbox_smtp_data_seconds_count", **smtp) == 1
    assert moved(before, after, "pillarbox_policy_verdicts_total", action="inbox") == 1
    failures = "pillarbox_auth_failures_total"
    assert moved(before, after, failures, protocol="imap", reason="credentials") == 1
    assert moved(before, after, failures, protocol="smtp", reason="credentials") == 1
    assert moved(before, after, failures, protocol="pop3", reason="credentials") == 1
    assert moved(before, after, failures, protocol="imap", reason="rate_limited") == 1
    assert moved(before, after, failures, protocol="managesieve", reason="credentials") == 1
    assert moved(before, after, "pillarbox_delivery_attempts_total", result="delivered") == 0
    assert value(after, "pillarbox_queue_messages") == 1
    assert value(after, "pillarbox_queue_recipients", state="deferred") == 1
    assert value(after, "pillarbox_queue_recipients", state="pending") == 0
    assert value(after, "pillarbox_queue_oldest_message_age_seconds") >= 0
    assert value(after, "pillarbox_sessions_active", protocol="imap") == 0
    assert value(after, "process_cpu_seconds_total") > 0  # prometheus_client's collectors


def test_the_endpoint_asks_for_credentials(server: LiveServer) -> None:
    status, headers, _ = get_metrics(server)
    assert status == 401
    assert headers["www-authenticate"].startswith('Bearer realm="pillarbox metrics"')
    assert get_metrics(server, Authorization="Bearer not-the-token")[0] == 401
    assert get_metrics(server, Authorization=f"Bearer {TOKEN}x")[0] == 401
    basic = base64.b64encode(f"prometheus:{BASIC_PASSWORD}".encode()).decode()
    assert get_metrics(server, Authorization=f"Basic {basic}")[0] == 200
    wrong_user = base64.b64encode(f"admin:{BASIC_PASSWORD}".encode()).decode()
    assert get_metrics(server, Authorization=f"Basic {wrong_user}")[0] == 401
    assert get_metrics(server, Authorization="Basic !!!")[0] == 401
    token = {"Authorization": f"Bearer {TOKEN}"}
    assert get_metrics(server, "/", **token)[0] == 404
    assert get_metrics(server, method="POST", **token)[0] == 405
    status, headers, body = get_metrics(server, method="HEAD", **token)
    assert (status, body) == (200, "")
    assert int(headers["content-length"]) > 0


def test_an_oversized_request_head_is_refused(server: LiveServer) -> None:
    status, _, _ = get_metrics(server, Authorization=f"Bearer {TOKEN}", Padding="x" * 20_000)
    assert status == 431


def test_keep_alive_serves_several_scrapes(server: LiveServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port("metrics"), timeout=30)
    try:
        for _ in range(3):
            connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            response = connection.getresponse()
            assert response.status == 200
            assert b"pillarbox_sessions_total" in response.read()
    finally:
        connection.close()


def test_the_endpoint_is_listed_without_tls(server: LiveServer) -> None:
    lines = server.server.endpoints()
    assert f"metrics      127.0.0.1:{server.port('metrics')}" in lines


def test_a_stalled_scraper_is_cut_off_and_others_still_served(tmp_path: Path) -> None:
    """Connections that send nothing hold their slots only until request_timeout; past the
    per-address limit (4) a connection is answered 503 at once; a good scrape still works."""
    config = loopback_config(
        tmp_path / "data",
        only=("smtp", "metrics"),
        metrics=cfg.MetricsSection(request_timeout=0.5),
    )
    with LiveServer(config) as live:
        port = live.port("metrics")
        stalled = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(4)]
        try:
            stalled[0].sendall(b"GET /metr")  # half a request line, never finished

            def answered_busy() -> bytes | None:
                with socket.create_connection(("127.0.0.1", port), timeout=30) as extra:
                    reply = extra.recv(4096)
                return reply if reply.startswith(b"HTTP/1.1 503") else None

            # The four are admitted once the server has accepted them; then a fifth is refused.
            wait_for(answered_busy, "a fifth connection from one address answered 503")
            for sock in stalled:
                assert sock.recv(4096) == b""  # closed by the server, with no answer
        finally:
            for sock in stalled:
                sock.close()
        status, _, body = get_metrics(live)  # no credentials configured: none needed
        assert status == 200
        refused = value(parse(body), "pillarbox_connections_refused_total", listener="metrics")
        assert refused >= 1


def test_a_failed_starttls_handshake_is_counted(server: LiveServer) -> None:
    before = scrape(server)
    with socket.create_connection(("127.0.0.1", server.port("smtp")), timeout=30) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220 ")
        sock.sendall(b"EHLO client.test\r\n")
        while not reader.readline().startswith(b"250 "):
            pass
        sock.sendall(b"STARTTLS\r\n")
        assert reader.readline().startswith(b"220 ")
        sock.sendall(b"this is no TLS ClientHello\r\n" * 4)
        assert reader.read() == b""  # the server gives up on the handshake and closes

    def counted() -> Samples | None:
        now = scrape(server)
        failures = moved(before, now, "pillarbox_tls_handshake_failures_total", listener="smtp")
        return now if failures == 1 else None

    after = wait_for(counted, "the failed handshake counted")
    assert moved(before, after, "pillarbox_tls_handshake_failures_total", listener="imap") == 0


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_failed_implicit_tls_handshakes_are_counted(tmp_path: Path, loop: str) -> None:
    """On 993/995/465 the handshake comes first: bytes that are no TLS, and a client refusing
    our certificate, count on their listener; a good handshake does not. On both event loops
    (each runs that handshake itself, before the connection reaches Pillarbox)."""
    config = loopback_config(
        tmp_path / "data",
        only=("imaps", "pop3s", "submissions", "metrics"),
        metrics=cfg.MetricsSection(bearer_token=TOKEN),
    )
    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with LiveServer(config, loop_factory=factory) as live:
        before = scrape(live)
        for name in ("imaps", "pop3s", "submissions"):
            with socket.create_connection(("127.0.0.1", live.port(name)), timeout=30) as sock:
                sock.sendall(b"this is no TLS ClientHello\r\n" * 4)
                while sock.recv(4096):  # an alert, perhaps; then the server closes
                    pass
        verifying = ssl.create_default_context()  # our certificate is self-signed
        with pytest.raises(ssl.SSLCertVerificationError):
            imaplib.IMAP4_SSL("127.0.0.1", live.port("imaps"), ssl_context=verifying, timeout=30)
        trusting = ssl.create_default_context()
        trusting.check_hostname, trusting.verify_mode = False, ssl.CERT_NONE
        imaplib.IMAP4_SSL("127.0.0.1", live.port("imaps"), ssl_context=trusting).logout()

        def counted() -> Samples | None:
            now = scrape(live)
            imaps = moved(before, now, "pillarbox_tls_handshake_failures_total", listener="imaps")
            return now if imaps == 2 else None

        after = wait_for(counted, "the failed imaps handshakes counted")
        failures = "pillarbox_tls_handshake_failures_total"
        assert moved(before, after, failures, listener="pop3s") == 1
        assert moved(before, after, failures, listener="submissions") == 1
        assert moved(before, after, "pillarbox_sessions_total", listener="imaps") == 1


def test_web_requests_are_counted_by_route_template(tmp_path: Path) -> None:
    """Web requests by the route that took them (its template, never the raw path a client
    chose) and status class, with their time to the response head."""
    config = loopback_config(
        tmp_path / "data", only=("http", "metrics"), metrics=cfg.MetricsSection(bearer_token=TOKEN)
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account("alice@example.org", TEST_PASSWORD)
        before = scrape(live)
        web = WebSession(live)
        assert web.get("/login").status_code == 200
        assert web.login("alice@example.org", "wrong password").status_code == 401
        assert web.login("alice@example.org").status_code == 303
        for mailbox in (424242, 434343):  # two paths, one route: no such folder
            assert web.get(f"/mail/{mailbox}").status_code == 404
        assert web.get("/no/such/page-4711").status_code == 404
        assert web.client.put("/login").status_code == 405
        # CardDAV and CalDAV: a request without credentials (every client's first) is no failed
        # login.
        assert web.client.request("PROPFIND", "/dav/").status_code == 401
        wrong = base64.b64encode(b"alice@example.org:wrong password").decode()
        dav = web.client.request("PROPFIND", "/dav/", headers={"Authorization": f"Basic {wrong}"})
        assert dav.status_code == 401
        after = scrape(live)

    failures = "pillarbox_auth_failures_total"
    assert moved(before, after, failures, protocol="web", reason="credentials") == 1
    assert moved(before, after, failures, protocol="dav", reason="credentials") == 1
    requests = "pillarbox_web_requests_total"
    assert moved(before, after, requests, route="/login", status="2xx") == 3  # + each login's form
    assert moved(before, after, requests, route="/login", status="3xx") == 1
    assert moved(before, after, requests, route="/login", status="4xx") == 2  # 401, 405
    assert moved(before, after, requests, route="/mail/{mailbox:int}", status="4xx") == 2
    assert moved(before, after, requests, route="unmatched", status="4xx") == 1
    seconds = "pillarbox_web_request_seconds"
    assert moved(before, after, f"{seconds}_count", route="/login") == 6
    assert moved(before, after, f"{seconds}_sum", route="/login") > 0
    assert moved(before, after, f"{seconds}_bucket", route="/login", le="+Inf") == 6
    raw = {v for _, labels in after for _, v in labels}
    assert not any("4242" in v or "4711" in v for v in raw)  # bounded labels


def test_lmtp_messages_are_counted_on_their_listener(tmp_path: Path) -> None:
    """An LMTP transaction is one message: accepted when any recipient took it, else
    refused by its first recipient's reply."""
    config = loopback_config(
        tmp_path / "data",
        only=("lmtp", "metrics"),
        metrics=cfg.MetricsSection(bearer_token=TOKEN),
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account("alice@example.org", TEST_PASSWORD)
        live.add_account("full@example.org", TEST_PASSWORD, quota_bytes=100)
        before = scrape(live)
        # Both series exist from start-up, at 0 (``value`` would read an absent one as 0).
        active = ("pillarbox_sessions_active", frozenset({("protocol", "lmtp")}))
        failures = frozenset({("protocol", "lmtp"), ("reason", "credentials")})
        assert before[active] == 0
        assert before[("pillarbox_auth_failures_total", failures)] == 0
        message = b"From: a@example.net\r\nSubject: lmtp\r\n\r\n" + b"x" * 500 + b"\r\n"
        with smtplib.LMTP("127.0.0.1", live.port("lmtp")) as client:
            assert client.ehlo("front.example")[0] == 250  # LHLO
            assert value(scrape(live), "pillarbox_sessions_active", protocol="lmtp") == 1
            # smtplib reads one reply after the data; LMTP sends one per recipient.
            assert client.mail("a@example.net")[0] == 250
            assert client.rcpt("alice@example.org")[0] == 250
            assert client.rcpt("full@example.org")[0] == 250
            assert [client.data(message)[0], client.getreply()[0]] == [250, 452]
            assert client.mail("a@example.net")[0] == 250
            assert client.rcpt("full@example.org")[0] == 250
            assert client.data(message)[0] == 452
        after = scrape(live)
    messages = "pillarbox_smtp_messages_total"
    assert moved(before, after, "pillarbox_sessions_total", listener="lmtp") == 1
    assert moved(before, after, messages, listener="lmtp", outcome="accepted") == 1
    assert moved(before, after, messages, listener="lmtp", outcome="refused_4xx") == 1
    assert moved(before, after, "pillarbox_smtp_data_seconds_count", listener="lmtp") == 2


def test_a_server_without_the_listener_counts_nothing_on_the_smtp_path(tmp_path: Path) -> None:
    """No metrics listener: the message is accepted and judged as ever, and none of the SMTP
    path's series moves (nothing could scrape them)."""
    with LiveServer(loopback_config(tmp_path / "data", only=("smtp",))) as live:
        live.add_domain("example.org")
        live.add_account("alice@example.org", TEST_PASSWORD)
        live.deliver("alice@example.org", "not counted")
        assert live.server.context is not None
        metrics = live.server.context.metrics
        assert not metrics.counting
        sample = metrics.registry.get_sample_value
        accepted = {"listener": "smtp", "outcome": "accepted"}
        assert sample("pillarbox_smtp_messages_total", accepted) is None
        assert sample("pillarbox_sessions_total", {"listener": "smtp"}) is None
        assert (
            sum(
                sample("pillarbox_policy_verdicts_total", {"action": action}) or 0
                for action in ("inbox", "junk", "reject")
            )
            == 0
        )
        assert len(live.mailbox_messages("alice@example.org", "INBOX")) == 1
