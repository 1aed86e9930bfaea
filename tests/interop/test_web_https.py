"""The web interface over HTTPS (the "https" listener) against the live server, with httpx
verifying the server's certificate: HSTS and the ``Secure`` cookie on HTTPS only, webmail and
the MTA-STS policy over TLS, the optional redirect from plain HTTP, autoconfig naming the
HTTPS address, and a certificate reloaded into the shared TLS context (what an ACME renewal
does) presented by the next handshake without a restart."""

from __future__ import annotations

import dataclasses
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pillarbox import config as cfg
from pillarbox.dns.records import required_records
from pillarbox.errors import ConfigError
from pillarbox.net.tls import ensure_self_signed
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, free_port, loopback_config
from pillarbox.testing.webclient import WebSession, deliver, server_trust, simple_message

pytestmark = pytest.mark.listeners("http", "https")

ALICE = "alice@example.org"
ONE_YEAR = 365 * 86400


@pytest.fixture
def alice(live: LiveServer) -> Iterator[WebSession]:
    session = WebSession(live, "https")
    assert session.login(ALICE).status_code == 303
    yield session
    session.close()


def test_login_page_over_https_sends_hsts_and_a_secure_cookie(live: LiveServer) -> None:
    web = WebSession(live, "https")
    page = web.get("/login")
    assert page.status_code == 200 and page.url.scheme == "https"
    assert page.headers["strict-transport-security"] == f"max-age={ONE_YEAR}"
    cookie = page.headers["set-cookie"]
    assert "; Secure" in cookie and "HttpOnly" in cookie
    login = web.login(ALICE)
    assert login.status_code == 303 and "; Secure" in login.headers["set-cookie"]


def test_plain_http_sends_no_hsts_and_no_secure_cookie(live: LiveServer) -> None:
    page = WebSession(live, "http").get("/login")
    assert page.status_code == 200  # not redirected: [web] redirect_http is off by default
    assert "strict-transport-security" not in page.headers
    assert "Secure" not in page.headers["set-cookie"]


def test_log_in_and_read_a_message_over_https(live: LiveServer, alice: WebSession) -> None:
    box, uid = deliver(live, ALICE, simple_message("Over TLS", "Sealed in transit."))
    page = alice.get(f"/mail/{box}/{uid}")
    assert page.status_code == 200
    assert "Over TLS" in page.text and "Sealed in transit." in page.text
    listed = alice.api("GET", f"/mailboxes/{box}/messages")
    assert listed.status_code == 200 and "Over TLS" in listed.text


def test_the_mta_sts_policy_over_https_for_the_policy_host(tmp_path: Path) -> None:
    """A sender fetching ``https://mta-sts.example.org/.well-known/mta-sts.txt`` (RFC 8461
    §3.3) verifies the certificate for that name (SNI and Host both name it)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    ensure_self_signed(cert, key, "mta-sts.example.org")
    config = loopback_config(
        tmp_path / "data", only=["https"], tls=cfg.TlsSection(cert=str(cert), key=str(key))
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        trust = ssl.create_default_context(cafile=cert)
        with httpx.Client(verify=trust, timeout=10) as client:
            response = client.get(
                f"https://127.0.0.1:{live.port('https')}/.well-known/mta-sts.txt",
                headers={"Host": "mta-sts.example.org"},
                extensions={"sni_hostname": "mta-sts.example.org"},
            )
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] == "text/plain"
        expected = required_records("example.org", mail_host=live.config.server.hostname)
        assert response.text == expected.mta_sts_policy


def test_autoconfig_names_the_https_webmail(live: LiveServer, alice: WebSession) -> None:
    xml = alice.get("/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=" + ALICE).text
    assert f'<loginPage url="https://mx.test:{live.port("https")}/login"/>' in xml


@pytest.mark.listeners("http")
def test_autoconfig_names_the_http_webmail_without_https(live: LiveServer) -> None:
    web = WebSession(live, "http")
    xml = web.get("/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=" + ALICE).text
    assert f'<loginPage url="http://mx.test:{live.port("http")}/login"/>' in xml


def test_serve_prints_the_https_webmail_address(live: LiveServer) -> None:
    lines = live.server.endpoints()
    assert f"webmail      https://127.0.0.1:{live.port('https')}/" in lines
    assert f"https        127.0.0.1:{live.port('https')}  (TLS)" in lines


# -- redirect from plain HTTP ---------------------------------------------------------------------


@pytest.fixture
def redirecting(tmp_path: Path) -> Iterator[LiveServer]:
    config = loopback_config(
        tmp_path / "data", only=["http", "https"], web=cfg.WebSection(redirect_http=True)
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account(ALICE, TEST_PASSWORD)
        yield live


def test_plain_http_pages_redirect_to_https(redirecting: LiveServer) -> None:
    http = f"http://127.0.0.1:{redirecting.port('http')}"
    https = f"https://127.0.0.1:{redirecting.port('https')}"
    with httpx.Client(verify=server_trust(redirecting), timeout=10) as client:
        page = client.get(http + "/mail/3?page=2&q=a%20b")
        assert page.status_code == 308
        assert page.headers["location"] == https + "/mail/3?page=2&q=a%20b"
        assert "set-cookie" not in page.headers and "strict-transport-security" not in page.headers
        # A form posted over HTTP keeps its method (308), the API too.
        assert client.post(http + "/login", data={"a": "b"}).headers["location"] == (
            https + "/login"
        )
        # A Host unfit for a URL is replaced by this server's name.
        odd = client.get(http + "/login", headers={"Host": "evil.test/x@y"})
        assert odd.headers["location"] == f"https://mx.test:{redirecting.port('https')}/login"
        ipv6 = client.get(http + "/login", headers={"Host": "[::1]:8080"})
        assert ipv6.headers["location"] == f"https://[::1]:{redirecting.port('https')}/login"
        # Following the redirect lands on the working HTTPS page, which does not redirect.
        landed = client.get(http + "/login", follow_redirects=True)
        assert landed.status_code == 200 and str(landed.url) == https + "/login"
        assert landed.headers["strict-transport-security"] == f"max-age={ONE_YEAR}"


def test_well_known_paths_are_not_redirected(redirecting: LiveServer) -> None:
    http = f"http://127.0.0.1:{redirecting.port('http')}"
    with httpx.Client(timeout=10) as client:
        policy = client.get(
            http + "/.well-known/mta-sts.txt", headers={"Host": "mta-sts.example.org"}
        )
        assert policy.status_code == 200 and "version: STSv1" in policy.text
        # RFC 8555 §8.3: the CA fetches challenges over plain HTTP; unknown tokens are 404.
        assert client.get(http + "/.well-known/acme-challenge/abc").status_code == 404
        autoconfig = client.get(
            http + "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=" + ALICE
        )
        assert autoconfig.status_code == 200


# -- certificate reload (ACME renewal) -----------------------------------------------------------


def served_certificate(port: int) -> bytes:
    """The DER certificate the listener presents in a new handshake."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        certificate = tls.getpeercert(binary_form=True)
    assert certificate is not None
    return certificate


def der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


@pytest.mark.listeners("https")
def test_a_certificate_loaded_into_the_shared_context_is_served_at_once(
    live: LiveServer, tmp_path: Path
) -> None:
    port = live.port("https")
    first = served_certificate(port)
    renewed_cert, renewed_key = tmp_path / "renewed-cert.pem", tmp_path / "renewed-key.pem"
    ensure_self_signed(renewed_cert, renewed_key, "renewed.test")
    assert first != der(renewed_cert)

    async def reload() -> None:  # what CertificateManager does on renewal, on the server's loop
        assert live.server.context is not None
        live.server.context.tls.load_cert_chain(renewed_cert, renewed_key)

    live.call(reload())
    assert served_certificate(port) == der(renewed_cert)
    trust = ssl.create_default_context(cafile=renewed_cert)
    with httpx.Client(verify=trust, timeout=10) as client:
        assert client.get(f"https://127.0.0.1:{port}/login").status_code == 200


def test_the_standard_config_serves_https_on_443_and_redirects() -> None:
    config = cfg.production_config("/var/lib/pillarbox", "mail.example.org")
    assert config.listeners.https == cfg.Listener(address="::", port=443)
    assert config.web.redirect_http
    assert cfg.dev_config("d").listeners.https == cfg.Listener(port=8443)
    assert not cfg.dev_config("d").web.redirect_http


def test_hsts_max_age_zero_sends_no_header(tmp_path: Path) -> None:
    config = loopback_config(tmp_path / "data", only=["https"], web=cfg.WebSection(hsts_max_age=0))
    with LiveServer(config) as live:
        page = WebSession(live, "https").get("/login")
        assert page.status_code == 200 and "strict-transport-security" not in page.headers
    path = tmp_path / "pillarbox.toml"
    path.write_text("[web]\nhsts_max_age = -1\n")
    with pytest.raises(ConfigError) as refused:
        cfg.load(path, environ={})
    assert refused.value.key == "web.hsts_max_age"


@pytest.mark.parametrize("redirect", [True, False], ids=["redirect_http", "no_redirect"])
def test_the_acme_challenge_listener_sends_browsers_to_https(
    tmp_path: Path, redirect: bool
) -> None:
    """Port 80 belongs to the challenge listener when ACME is on; a browser given the bare
    host name lands there and, with ``redirect_http``, is sent on to the https listener."""
    base = loopback_config(
        tmp_path / "data", only=["https"], web=cfg.WebSection(redirect_http=redirect)
    )
    unreachable_ca = f"https://127.0.0.1:{free_port('127.0.0.1')}/dir"
    tls = cfg.TlsSection(
        acme=True, acme_directory=unreachable_ca, acme_http_address="127.0.0.1", acme_http_port=0
    )
    config = dataclasses.replace(
        base, server=dataclasses.replace(base.server, hostname="mail.pillarbox.test"), tls=tls
    )
    with LiveServer(config) as live, httpx.Client(timeout=10) as client:
        port80 = f"http://127.0.0.1:{live.port('acme-http')}"
        page = client.get(port80 + "/mail?q=1", headers={"Host": "mail.pillarbox.test"})
        if redirect:
            assert page.status_code == 308
            https = live.port("https")
            assert page.headers["location"] == f"https://mail.pillarbox.test:{https}/mail?q=1"
        else:
            assert page.status_code == 404
        # Challenges are answered (or 404) over HTTP, never redirected.
        assert client.get(port80 + "/.well-known/acme-challenge/unknown").status_code == 404
        assert client.get(port80 + "/.well-known/mta-sts.txt").status_code == 404


@pytest.mark.parametrize("listener", ["https", "imaps"])
def test_a_client_silent_after_connecting_is_closed_after_the_handshake_timeout(
    tmp_path: Path, listener: str
) -> None:
    """``tls.handshake_timeout`` bounds the TLS handshake on the https listener (uvicorn
    leaves asyncio's 60 s) as on the implicit-TLS mail ports."""
    config = loopback_config(
        tmp_path / "data", only=[listener], tls=cfg.TlsSection(handshake_timeout=0.5)
    )
    with LiveServer(config) as live:
        port = live.port(listener)
        # Timed from before the connection: the server's timer may start before this
        # thread runs again after connect() (by 0.1 s and more on a loaded machine).
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=20) as silent:
            try:
                received = silent.recv(1024)
            except ConnectionResetError:
                received = b""
            waited = time.monotonic() - started
        assert received == b""  # closed, and not after asyncio's 60 s (the socket's 20 s)
        assert waited >= 0.4  # not before the timeout
        # A client that does the handshake is served.
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with (
            socket.create_connection(("127.0.0.1", port), timeout=20) as raw,
            context.wrap_socket(raw, server_hostname="mx.test") as tls,
        ):
            assert tls.version() is not None
