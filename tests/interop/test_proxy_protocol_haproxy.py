"""HAProxy as the TCP load balancer in front of our listeners (DESIGN: N nodes behind a TCP
load balancer), sending the PROXY protocol header (``send-proxy``: version 1,
``send-proxy-v2``: version 2) to listeners with ``proxy_protocol`` on.

HAProxy runs as the test's own process (its configuration in the test's directory, ``-db`` in
the foreground) and connects to us from 127.0.0.3, the one address in ``proxy_networks``;
clients connect to HAProxy from 127.0.0.1, or from 127.0.0.2 where the client can choose
(smtplib). Without the header the server would see every client as 127.0.0.3.

(a) Mail through HAProxy to the MX (v1 and v2) carries a Received field naming the client.
(b) Submission over implicit TLS through HAProxy: the TLS handshake is made after the header,
    and the Received field names the client (ESMTPSA).
(c) Every other mail listener — LMTP, IMAP and POP3 with STARTTLS/STLS, IMAPS, POP3S,
    ManageSieve — logs the client's address for the session, over either version.
(d) HAProxy's health check (``check check-send-proxy`` with v2) sends a LOCAL header: a
    session from the balancer's own address, not a refused connection.
(e) The web listener behind HAProxy in HTTP mode, which appends a ``Forwarded`` element
    (RFC 7239) naming the client: the login rate limit and the logs see the client, not the
    balancer, nor what the client claimed in a ``Forwarded`` field of its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email
import imaplib
import logging
import poplib
import re
import smtplib
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping
from email import policy
from pathlib import Path

import httpx
import pytest
import uvloop

from pillarbox import config as cfg
from pillarbox.store.types import INBOX
from pillarbox.testing.live import (
    TEST_AUTH,
    TEST_PASSWORD,
    LiveServer,
    free_port,
    loopback_config,
)
from pillarbox.testing.peers import require
from pillarbox.testing.polling import wait_for
from pillarbox.testing.webclient import server_trust

BALANCER = "127.0.0.3"
CLIENT = "127.0.0.2"
LISTENERS = (
    "smtp",
    "submission",
    "submissions",
    "lmtp",
    "imap",
    "imaps",
    "pop3",
    "pop3s",
    "managesieve",
)
#: HAProxy's name for each PROXY protocol version.
SEND_PROXY = {1: "send-proxy", 2: "send-proxy-v2"}


def behind_balancer(config: cfg.Config, names: tuple[str, ...]) -> cfg.Config:
    """``config`` with ``proxy_protocol`` on for ``names``, trusting :data:`BALANCER` alone."""
    changed = {
        name: dataclasses.replace(
            getattr(config.listeners, name),
            proxy_protocol=True,
            proxy_networks=(f"{BALANCER}/32",),
        )
        for name in names
    }
    return dataclasses.replace(config, listeners=dataclasses.replace(config.listeners, **changed))


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    config = behind_balancer(loopback_config(tmp_path / "data", only=LISTENERS), LISTENERS)
    with LiveServer(config) as server:
        server.add_domain("example.org")
        server.add_account("alice@example.org", TEST_PASSWORD)
        yield server


def listening(ports: Iterable[int]) -> bool:
    """Whether every one of ``ports`` is listening on IPv4 (Linux's /proc/net/tcp): asked
    there rather than by connecting, since HAProxy would relay a probe to us as a session."""
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    bound = {int(row[1].rsplit(":", 1)[1], 16) for row in rows if row[3] == "0A"}
    return set(ports) <= bound


class PortTaken(Exception):
    """A frontend's port, free when chosen, was bound by another test before HAProxy bound it."""


@contextlib.contextmanager
def running_haproxy(directory: Path, config: list[str], ports: Iterable[int]) -> Iterator[None]:
    """HAProxy in the foreground with ``config`` (its lines), until its frontends on
    ``ports`` listen; stopped on exit. :class:`PortTaken` when one was taken meanwhile."""
    binary = require("haproxy", "haproxy")
    (directory / "haproxy.cfg").write_text("\n".join(config) + "\n")
    log = directory / "haproxy.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [binary, "-db", "-f", str(directory / "haproxy.cfg")],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: process.poll() is not None or listening(ports),
            "HAProxy's frontends",
            context=log.read_text,
        )
        if process.poll() is not None:
            if "Address already in use" in log.read_text():
                raise PortTaken(log.read_text())
            pytest.fail(f"haproxy exited {process.returncode}:\n{log.read_text()}")
        yield
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def haproxy(
    directory: Path, backends: Mapping[str, int], server_options: str = ""
) -> Iterator[dict[str, int]]:
    """HAProxy in TCP mode with one frontend per entry of ``backends`` ("smtp-1": our port;
    the number is the PROXY protocol version it sends), ``server_options`` added to each
    server line; yields each frontend's port. Ports are chosen again when one was taken
    between its choice and HAProxy's bind (test workers beside this one choose too)."""
    with contextlib.ExitStack() as stack:
        for attempt in range(3):
            ports = {name: free_port("127.0.0.1") for name in backends}
            try:
                stack.enter_context(
                    running_haproxy(
                        directory, _config(backends, ports, server_options), ports.values()
                    )
                )
            except PortTaken:
                if attempt == 2:
                    raise
                continue
            break
        yield ports


def _config(
    backends: Mapping[str, int], ports: Mapping[str, int], server_options: str
) -> list[str]:
    lines = [
        "global",
        "    maxconn 256",
        "defaults",
        "    mode tcp",
        "    timeout connect 5s",
        "    timeout client 30s",
        "    timeout server 30s",
    ]
    for name, backend in backends.items():
        version = int(name.rsplit("-", 1)[1])
        lines += [
            f"listen {name}",
            f"    bind 127.0.0.1:{ports[name]}",
            f"    server pillarbox 127.0.0.1:{backend} {SEND_PROXY[version]} source {BALANCER}"
            f" {server_options}",
        ]
    return lines


@pytest.fixture
def balancer(tmp_path: Path, live: LiveServer) -> Iterator[dict[str, int]]:
    """HAProxy with a v1 and a v2 frontend for each listener: ``balancer["imaps-2"]``."""
    directory = tmp_path / "haproxy"
    directory.mkdir()
    backends = {f"{name}-{v}": live.port(name) for name in LISTENERS for v in SEND_PROXY}
    with haproxy(directory, backends) as ports:
        yield ports


def trusting(live: LiveServer) -> ssl.SSLContext:
    """Our certificate verified; its name (mx.test) is not the 127.0.0.1 the clients dial."""
    context = server_trust(live)
    context.check_hostname = False
    return context


def received_fields(live: LiveServer) -> list[str]:
    [raw] = live.mailbox_messages("alice@example.org", INBOX)
    message = email.message_from_bytes(raw, policy=policy.default)
    return [str(field) for field in message.get_all("Received", [])]


MESSAGE = b"From: <friend@example.net>\r\nTo: <alice@example.org>\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.mark.parametrize("version", [1, 2])
def test_mx_received_field_names_the_client(
    live: LiveServer, balancer: dict[str, int], version: int
) -> None:
    port = balancer[f"smtp-{version}"]
    with smtplib.SMTP("127.0.0.1", port, source_address=(CLIENT, 0), timeout=30) as client:
        client.ehlo("client.example.net")
        assert client.sendmail("friend@example.net", ["alice@example.org"], MESSAGE) == {}
    [ours] = received_fields(live)
    assert ours.startswith(f"from client.example.net ([{CLIENT}])"), ours
    assert BALANCER not in ours


def test_submission_over_implicit_tls_through_haproxy(
    live: LiveServer, balancer: dict[str, int]
) -> None:
    port = balancer["submissions-2"]
    with smtplib.SMTP_SSL(
        "127.0.0.1", port, source_address=(CLIENT, 0), context=trusting(live), timeout=30
    ) as client:
        client.ehlo("laptop.example.org")
        client.login("alice@example.org", TEST_PASSWORD)
        sent = MESSAGE.replace(b"friend@example.net", b"alice@example.org")
        assert client.sendmail("alice@example.org", ["alice@example.org"], sent) == {}
    [ours] = received_fields(live)
    assert ours.startswith(f"from laptop.example.org ([{CLIENT}])"), ours
    assert "with ESMTPSA" in ours


def _lmtp(live: LiveServer, port: int) -> None:
    with smtplib.LMTP("127.0.0.1", port) as client:
        assert client.ehlo("front.example.org")[0] == 250  # smtplib's LMTP sends LHLO


def _imap(live: LiveServer, port: int) -> None:
    client = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    client.starttls(ssl_context=trusting(live))
    client.login("alice@example.org", TEST_PASSWORD)
    client.logout()


def _imaps(live: LiveServer, port: int) -> None:
    client = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=trusting(live), timeout=30)
    client.login("alice@example.org", TEST_PASSWORD)
    client.logout()


def _pop3(live: LiveServer, port: int) -> None:
    client = poplib.POP3("127.0.0.1", port, timeout=30)
    client.stls(context=trusting(live))
    client.user("alice@example.org")
    client.pass_(TEST_PASSWORD)
    client.quit()


def _pop3s(live: LiveServer, port: int) -> None:
    client = poplib.POP3_SSL("127.0.0.1", port, context=trusting(live), timeout=30)
    client.user("alice@example.org")
    client.pass_(TEST_PASSWORD)
    client.quit()


def _managesieve(live: LiveServer, port: int) -> None:
    """The greeting (capabilities, then OK), then LOGOUT (RFC 5804 §1.7, §2.3)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        reader = sock.makefile("rb")
        while not reader.readline().startswith(b"OK"):
            pass
        sock.sendall(b"LOGOUT\r\n")
        assert reader.readline().startswith(b"OK")


#: listener → (the logger of its sessions, a client's visit, TLS at "connected"?)
SESSIONS: dict[str, tuple[str, Callable[[LiveServer, int], None], bool]] = {
    "lmtp": ("lmtp", _lmtp, False),
    "imap": ("imap", _imap, False),
    "imaps": ("imap", _imaps, True),
    "pop3": ("pop3", _pop3, False),
    "pop3s": ("pop3", _pop3s, True),
    "managesieve": ("managesieve", _managesieve, False),
}


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("listener", list(SESSIONS))
def test_sessions_log_the_client_address(
    live: LiveServer,
    balancer: dict[str, int],
    caplog: pytest.LogCaptureFixture,
    listener: str,
    version: int,
) -> None:
    caplog.set_level(logging.INFO, logger="pillarbox")
    logger, visit, implicit_tls = SESSIONS[listener]
    visit(live, balancer[f"{listener}-{version}"])
    connected = [
        getattr(r, "fields", {})
        for r in caplog.records
        if r.name == f"pillarbox.{logger}" and r.getMessage() == "connected"
    ]
    assert [(c["remote"], c["tls"]) for c in connected] == [("127.0.0.1", implicit_tls)]


def test_health_check_is_the_balancers_own_session(
    tmp_path: Path, live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pillarbox")
    directory = tmp_path / "haproxy"
    directory.mkdir()
    checked = {"smtp-2": live.port("smtp")}
    with haproxy(directory, checked, "check check-send-proxy inter 200"):
        wait_for(
            lambda: [r for r in caplog.records if r.getMessage() == "connected"],
            "a health check's session",
            context=(directory / "haproxy.log").read_text,
        )
    sessions = [
        getattr(r, "fields", {})["remote"]
        for r in caplog.records
        if r.name == "pillarbox.smtp" and r.getMessage() == "connected"
    ]
    assert sessions and set(sessions) == {BALANCER}
    assert [
        getattr(r, "fields", {})["reason"]
        for r in caplog.records
        if r.getMessage() == "PROXY header names no client"
    ][:1] == ["LOCAL"]
    assert not [r for r in caplog.records if r.getMessage().startswith("connection refused")]


def test_health_checks_reset_before_uvloop_reads_them_are_no_refusals(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Under uvloop (what `pillarbox serve` runs on) the peer's address is read when the
    connection is made, and HAProxy's checks, ended with a RST, are often gone by then: each
    was once logged as a stranger refused (`remote=""`, "not from proxy_networks")."""
    caplog.set_level(logging.DEBUG, logger="pillarbox")
    config = behind_balancer(loopback_config(tmp_path / "data", only=["smtp"]), ("smtp",))
    directory = tmp_path / "haproxy"
    directory.mkdir()
    seen = (
        "connected",
        "connection gone before its address was read",
        "connection refused: PROXY protocol",
    )
    with (
        LiveServer(config, loop_factory=uvloop.new_event_loop) as live,
        haproxy(directory, {"smtp-2": live.port("smtp")}, "check check-send-proxy inter 100"),
    ):
        wait_for(
            lambda: len([r for r in caplog.records if r.getMessage() in seen]) >= 10,
            "ten health checks",
            context=(directory / "haproxy.log").read_text,
        )
    assert not [r for r in caplog.records if r.getMessage().startswith("connection refused")]
    sessions = [
        getattr(r, "fields", {})["remote"]
        for r in caplog.records
        if r.name == "pillarbox.smtp" and r.getMessage() == "connected"
    ]
    assert set(sessions) <= {BALANCER}


# -- the web listener behind HAProxy in HTTP mode, with Forwarded (RFC 7239) --------------------

_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@pytest.fixture
def web_live(tmp_path: Path) -> Iterator[LiveServer]:
    """The http listener believing forwarded headers from :data:`BALANCER` alone; one free
    login failure per client address, then a long delay (the third try is refused, 429)."""
    base = loopback_config(
        tmp_path / "data",
        only=["http"],
        auth=dataclasses.replace(TEST_AUTH, free_failures=1, base_delay=600.0),
    )
    web = dataclasses.replace(
        base.listeners.http, forwarded_headers=True, proxy_networks=(f"{BALANCER}/32",)
    )
    config = dataclasses.replace(base, listeners=dataclasses.replace(base.listeners, http=web))
    with LiveServer(config) as server:
        server.add_domain("example.org")
        server.add_account("alice@example.org", TEST_PASSWORD)
        yield server


@pytest.fixture
def web_balancer(tmp_path: Path, web_live: LiveServer) -> Iterator[int]:
    """HAProxy in HTTP mode in front of the web listener, appending a ``Forwarded`` element
    naming the client (HAProxy 2.6 has no ``option forwarded``, which came in 2.7); yields its
    port."""
    directory = tmp_path / "haproxy"
    directory.mkdir()
    port = free_port("127.0.0.1")
    lines = [
        "global",
        "    maxconn 256",
        "defaults",
        "    mode http",
        "    timeout connect 5s",
        "    timeout client 30s",
        "    timeout server 30s",
        "listen web",
        f"    bind 127.0.0.1:{port}",
        '    http-request add-header Forwarded "for=%[src];proto=http"',
        f"    server pillarbox 127.0.0.1:{web_live.port('http')} source {BALANCER}",
    ]
    with running_haproxy(directory, lines, [port]):
        yield port


def through(port: int, source: str) -> httpx.Client:
    """A web client on ``source`` talking to HAProxy."""
    return httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        transport=httpx.HTTPTransport(local_address=source),
        timeout=30,
    )


def failed_login(client: httpx.Client, attempt: int) -> int:
    """A wrong password for a different account each time (only the address limit applies),
    with a ``Forwarded`` field of the client's own naming someone else; the answer's status."""
    claim = {"Forwarded": "for=198.51.100.66"}
    page = client.get("/login", headers=claim)
    match = _CSRF.search(page.text)
    assert match is not None, page.text[:500]
    form = {"csrf": match.group(1), "username": f"u{attempt}@example.org", "password": "wrong"}
    return client.post("/login", data=form, headers=claim).status_code


def test_web_sees_the_client_haproxy_names_in_forwarded(
    web_live: LiveServer, web_balancer: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Every request reaches the server from the balancer (127.0.0.3); the element HAProxy
    appends names the client, the one the client sent itself (left of it) is not believed
    (RFC 7239 §5.2, read from the right). So the login limit holds back that client alone,
    and the DAV failure log names it."""
    with through(web_balancer, CLIENT) as client:
        assert [failed_login(client, n) for n in range(3)] == [401, 401, 429]
    with through(web_balancer, "127.0.0.4") as other:
        assert failed_login(other, 3) == 401  # another client behind the same balancer
    with caplog.at_level(logging.INFO, logger="pillarbox"):
        with through(web_balancer, "127.0.0.5") as dav:
            answer = dav.request("PROPFIND", "/dav/", auth=("alice@example.org", "wrong"))
        assert answer.status_code == 401
    assert [
        getattr(r, "fields", {})["ip"]
        for r in caplog.records
        if r.getMessage() == "dav authentication failed"
    ] == ["127.0.0.5"]
