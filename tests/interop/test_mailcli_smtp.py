"""pillarbox mail send against aiosmtpd: implicit TLS (RFC 8314), cleartext for loopback,
refusing to log in when STARTTLS is required but missing, per-recipient refusals."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from click.testing import CliRunner, Result

from pillarbox.cli.main import cli
from pillarbox.net.tls import ensure_self_signed
from pillarbox.testing.testca import make_ca

PASSWORD = "sink password"

# aiosmtpd cannot see implicit TLS, and cleartext AUTH is the point of the loopback test.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


class Sink:
    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(
            (envelope.mail_from or "", list(envelope.rcpt_tos), envelope.original_content or b"")
        )
        return "250 2.0.0 queued"


def authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.password.decode() == PASSWORD
    return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    ensure_self_signed(tmp_path / "cert.pem", tmp_path / "key.pem", "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return tmp_path / "cert.pem", context


def sink(**options: Any) -> Iterator[tuple[Sink, int]]:
    handler = Sink()
    controller = Controller(
        handler, hostname="127.0.0.1", port=free_port(), authenticator=authenticator, **options
    )
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()


def run(home: Path, *args: str, stdin: str = "") -> Result:
    return CliRunner().invoke(
        cli, ["mail", *args], input=stdin, env={"PILLARBOX_MAIL_HOME": str(home)}
    )


def account(home: Path, port: int, tls: str) -> None:
    result = run(
        home, "account", "add", "sink", "--address", "me@example.org", "--smtp-host",
        "127.0.0.1", "--smtp-port", str(port), "--tls", tls, "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_implicit_tls(tmp_path: Path, cert: tuple[Path, ssl.SSLContext]) -> None:
    cafile, context = cert
    for handler, port in sink(ssl_context=context, auth_required=True, auth_require_tls=False):
        account(tmp_path, port, "implicit")
        result = run(
            tmp_path, "--cafile", str(cafile), "send", "--to", "you@example.net",
            "--cc", "nobody@example.net, other@example.net", "--bcc", "hidden@example.net",
            "--subject", "über", stdin="hi\n",
        )  # fmt: skip
        # one refused recipient: the rest got it, the refusal is reported with exit 1
        assert result.exit_code == 1, result.output
        assert "refused nobody@example.net: 550" in result.output
        [(sender, rcpts, raw)] = handler.received
        assert sender == "me@example.org"
        assert rcpts == ["you@example.net", "other@example.net", "hidden@example.net"]
        parsed = message_from_bytes(raw, policy=policy.default)
        assert parsed["Subject"] == "über"
        assert "hidden" not in raw.decode()


def test_a_certificate_for_other_names_says_so(tmp_path: Path) -> None:
    """A trusted chain whose certificate does not name the host: the reason, and no advice to
    trust a CA that is trusted already."""
    (tmp_path / "ca").mkdir()
    authority = make_ca(tmp_path / "ca")
    context = authority.server_context("mx.example.org")
    for _, port in sink(ssl_context=context, auth_required=True, auth_require_tls=False):
        account(tmp_path, port, "implicit")
        args = ("--cafile", authority.bundle, "send", "--to", "you@example.net")
        result = run(tmp_path, *args, stdin="hi\n")
        assert result.exit_code == 3, result.output
        assert "certificate is for other names: IP address mismatch" in result.output
        assert "--cafile" not in result.output


def test_cleartext_for_loopback(tmp_path: Path) -> None:
    for handler, port in sink(auth_required=True, auth_require_tls=False):
        account(tmp_path, port, "none")
        result = run(tmp_path, "send", "--to", "you@example.net", stdin="hi\n")
        assert result.exit_code == 0, result.output
        assert len(handler.received) == 1


def test_starttls_required_but_missing(tmp_path: Path) -> None:
    for handler, port in sink(auth_required=True, auth_require_tls=False):
        account(tmp_path, port, "starttls")
        result = run(tmp_path, "send", "--to", "you@example.net", stdin="hi\n")
        assert result.exit_code == 3
        assert "does not offer STARTTLS" in result.output
        assert handler.received == []


def test_implicit_tls_to_a_cleartext_port_fails_cleanly(tmp_path: Path) -> None:
    for _, port in sink(auth_required=True, auth_require_tls=False):
        account(tmp_path, port, "implicit")
        result = run(tmp_path, "--io-timeout", "5", "send", "--to", "you@example.net", stdin="x")
        assert result.exit_code == 3
        assert "(implicit): TLS failed: WRONG_VERSION_NUMBER" in result.output


def test_require_tls_refused_where_not_offered(
    tmp_path: Path, cert: tuple[Path, ssl.SSLContext]
) -> None:
    """RFC 8689 §4.3: aiosmtpd offers no REQUIRETLS: nothing is sent (nor the password)."""
    cafile, context = cert
    for handler, port in sink(ssl_context=context, auth_required=True, auth_require_tls=False):
        account(tmp_path, port, "implicit")
        result = run(
            tmp_path, "--cafile", str(cafile), "send", "--require-tls", "--to", "you@example.net",
            stdin="hi\n",
        )  # fmt: skip
        assert result.exit_code == 3, result.output
        assert "does not offer REQUIRETLS (RFC 8689)" in result.output
        assert handler.received == []
    for handler, port in sink(auth_required=True, auth_require_tls=False):
        account(tmp_path / "plain", port, "none")
        result = run(
            tmp_path / "plain", "send", "--require-tls", "--to", "you@example.net", stdin="hi\n"
        )
        assert result.exit_code == 3, result.output
        assert "REQUIRETLS needs TLS" in result.output
        assert handler.received == []
