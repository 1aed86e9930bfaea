"""ACME tls-alpn-01 (RFC 8737) on a live https listener: a real CA (Pebble) validating it, and
real TLS clients checking that only ``acme-tls/1`` handshakes for a pending name see the
validation certificate, that nothing is served after one, and that every other handshake
(ALPN h2/http/1.1, no ALPN, other listeners) is untouched.

Pebble connects to its ``tlsPort`` where a CA connects to 443: the https listener's port here.
It resolves the name through a loopback DNS server of ours (A 127.0.0.1). No HTTP-01 listener
runs and our preference names only tls-alpn-01, so a certificate can come no other way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvloop
from cryptography import x509

from pillarbox import config as cfg
from pillarbox.net.acmefiles import AcmeFiles
from pillarbox.net.tls import ACME_TLS_1
from pillarbox.net.tlsalpn import ID_PE_ACME_IDENTIFIER, validation_context
from pillarbox.testing import pebble as pebble_server
from pillarbox.testing.dnszone import ZoneRecord
from pillarbox.testing.live import LiveServer, free_port, loopback_config
from pillarbox.testing.pebble import Pebble, presented_certificate
from pillarbox.testing.polling import wait_for

NAME = "mail.pillarbox.test"
KEY_AUTHORIZATION = "token-of-the-challenge.thumbprint-of-the-account-key"
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}
needs_pebble = pytest.mark.skipif(
    not pebble_server.available(), reason="Pebble not installed (apt-get install pebble)"
)


@pytest.fixture
def dns_records() -> list[ZoneRecord]:
    return [ZoneRecord(NAME, "A", "127.0.0.1")]


@pytest.fixture
def https_port() -> int:
    return free_port("127.0.0.1")


def tls_alpn_config(
    tmp_path: Path, https_port: int, directory: str, ca_bundle: str = ""
) -> cfg.Config:
    base = loopback_config(tmp_path / "data", only=("https", "imaps"), ports={"https": https_port})
    return dataclasses.replace(
        base,
        server=dataclasses.replace(base.server, hostname=NAME),
        tls=cfg.TlsSection(
            acme=True,
            acme_directory=directory,
            acme_ca_bundle=ca_bundle,
            acme_challenges=("tls-alpn-01",),
        ),
    )


def client_context(
    alpn: list[str] | None, root_pem: bytes | None = None, *, tls12: bool = False
) -> ssl.SSLContext:
    if root_pem is None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cadata=root_pem.decode())
    if alpn:
        context.set_alpn_protocols(alpn)
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def handshake(
    port: int,
    alpn: list[str] | None,
    name: str = NAME,
    root_pem: bytes | None = None,
    *,
    tls12: bool = False,
) -> tuple[str | None, x509.Certificate, bytes]:
    """A handshake offering ``alpn`` with SNI ``name``, then an HTTP request: the ALPN agreed,
    the certificate presented, and what came back (b"" when the server closed)."""
    context = client_context(alpn, root_pem, tls12=tls12)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        agreed = tls.selected_alpn_protocol()
        try:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\n\r\n".encode())
            answer = tls.recv(100)
        except (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError):
            answer = b""
    return agreed, x509.load_der_x509_certificate(der), answer


def handshake_in_pieces(port: int, pieces: int) -> tuple[str | None, x509.Certificate]:
    """An ``acme-tls/1`` handshake whose ClientHello arrives in ``pieces`` writes, apart."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context([ACME_TLS_1]).wrap_bio(incoming, outgoing, server_hostname=NAME)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            try:
                client.do_handshake()
                break
            except ssl.SSLWantReadError:
                data = outgoing.read()
                step = max(1, -(-len(data) // pieces))
                for at in range(0, len(data), step):
                    raw.sendall(data[at : at + step])
                    time.sleep(0.05)
                pieces = 1  # only the hello is cut up
                received = raw.recv(65536)
                assert received, "the server closed during the handshake"
                incoming.write(received)
        raw.sendall(outgoing.read())
        der = client.getpeercert(binary_form=True)
    assert der is not None
    return client.selected_alpn_protocol(), x509.load_der_x509_certificate(der)


def is_validation(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_oid(ID_PE_ACME_IDENTIFIER).critical
    except x509.ExtensionNotFound:
        return False


@pytest.mark.parametrize("loop", list(LOOPS))
def test_only_acme_tls_1_handshakes_for_a_pending_name_see_the_validation_certificate(
    tmp_path: Path, https_port: int, loop: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A challenge made pending on the running server (no CA: its directory does not answer,
    the attempt fails and waits acme_retry); then real clients, on both event loops."""
    caplog.set_level(logging.INFO, logger="pillarbox.acme")
    config = tls_alpn_config(tmp_path, https_port, f"http://127.0.0.1:{free_port('127.0.0.1')}/")
    with LiveServer(config, loop_factory=LOOPS[loop]) as server:
        normal = x509.load_pem_x509_certificate((config.data_dir / "tls" / "cert.pem").read_bytes())
        manager = server.server.acme
        assert manager is not None and manager.tls_alpn is not None
        answers = manager.tls_alpn
        context = validation_context(NAME, KEY_AUTHORIZATION)

        async def make_pending() -> None:
            answers.add(NAME, context)

        server.call(make_pending())

        # The CA's handshake: the validation certificate, acme-tls/1 agreed, and nothing
        # served after it (RFC 8737 §4): the request gets no HTTP answer.
        agreed, cert, answer = handshake(https_port, [ACME_TLS_1])
        assert agreed == ACME_TLS_1 and is_validation(cert)
        assert answer == b""
        # A validator speaking TLS 1.2 (RFC 8737 §4's floor): the server's Finished, written
        # as the server's side completes, still goes out before the close.
        agreed, cert, answer = handshake(https_port, [ACME_TLS_1], tls12=True)
        assert agreed == ACME_TLS_1 and is_validation(cert)
        assert answer == b""
        # The same, its ClientHello arriving in pieces.
        agreed, cert = handshake_in_pieces(https_port, pieces=4)
        assert agreed == ACME_TLS_1 and is_validation(cert)

        # Everyone else, the same name meanwhile included: the normal certificate, no ALPN
        # agreed (the listener offers none), and the web app answering.
        for alpn in (["h2", "http/1.1"], ["http/1.1"], None):
            agreed, cert, answer = handshake(https_port, alpn)
            assert agreed is None, alpn
            assert cert.serial_number == normal.serial_number, alpn
            assert answer.startswith(b"HTTP/1.1 "), (alpn, answer)
        # Another listener on the same context does not answer tls-alpn-01 at all.
        imaps = presented_certificate(server.port("imaps"), None, NAME)
        assert imaps.serial_number == normal.serial_number
        with (
            socket.create_connection(("127.0.0.1", server.port("imaps")), timeout=10) as raw,
            client_context([ACME_TLS_1]).wrap_socket(raw, server_hostname=NAME) as tls,
        ):
            assert tls.selected_alpn_protocol() is None
            assert tls.recv(100).startswith(b"* OK")

        # acme-tls/1 for a name with no pending challenge: refused cleanly and logged.
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            handshake(https_port, [ACME_TLS_1], name="other.pillarbox.test")
        wait_for(
            lambda: any(
                r.getMessage() == "tls-alpn-01 handshake refused: no pending challenge"
                for r in caplog.records
            ),
            "the refusal's log line",
        )

        # The challenge over: the name's acme-tls/1 handshakes are refused too, and the
        # listener goes on serving.
        async def withdraw() -> None:
            answers.remove(NAME)

        server.call(withdraw())
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            handshake(https_port, [ACME_TLS_1])
        agreed, cert, answer = handshake(https_port, ["h2", "http/1.1"])
        assert cert.serial_number == normal.serial_number and answer.startswith(b"HTTP/1.1 ")


@pytest.fixture
def pebble(tmp_path: Path, dns_port: int, https_port: int) -> Iterator[Pebble]:
    workdir = tmp_path / "pebble"
    workdir.mkdir()
    # Nothing listens on its HTTP-01 port: the certificate can only come through tls-alpn-01.
    with Pebble(
        workdir, http_port=free_port("127.0.0.1"), dns_port=dns_port, tls_port=https_port
    ) as server:
        yield server


@needs_pebble
def test_pebble_validates_tls_alpn_01_and_the_listener_then_presents_the_certificate(
    tmp_path: Path, pebble: Pebble, https_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pillarbox.acme")
    config = tls_alpn_config(tmp_path, https_port, pebble.directory_url, str(pebble.ca_bundle))
    with LiveServer(config) as server:
        manager = server.server.acme
        assert manager is not None and manager.tls_alpn is not None
        wait_for(lambda: manager.facts is not None, "the certificate", timeout=60)
        assert manager.facts is not None and manager.facts.names == (NAME,)
        # Pebble's validation was the https listener's acme-tls/1 handshake.
        validations = [
            r for r in caplog.records if r.getMessage() == "tls-alpn-01 validation handshake"
        ]
        assert validations, caplog.text
        assert len(manager.tls_alpn) == 0  # the answer withdrawn with the attempt
        # A normal handshake on the same listener: the new certificate, verified for the
        # name against Pebble's root, and the web app behind it.
        agreed, cert, answer = handshake(https_port, ["h2", "http/1.1"], root_pem=pebble.root_pem)
        assert agreed is None and cert.serial_number == manager.facts.serial
        assert answer.startswith(b"HTTP/1.1 ")
        # The attempt's outcome is written after the certificate is in place.
        files = AcmeFiles.of(server.config)
        wait_for(lambda: "result" in files.read_status(), "status.json", timeout=10)
        assert files.read_status()["result"] == "ok"
