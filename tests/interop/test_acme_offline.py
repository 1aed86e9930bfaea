"""ACME on a live server whose CA cannot be reached, and with a broken stored pair: the
server starts, keeps a working certificate, and reports why it has no new one."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import socket
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pillarbox import config as cfg
from pillarbox.testing.live import LiveServer, free_port, loopback_config

NAME = "mail.pillarbox.test"


def offline_config(tmp_path: Path) -> cfg.Config:
    base = loopback_config(tmp_path / "data", only=("imaps",))
    # Nothing listens on the CA's port: every attempt fails at once (connection refused).
    tls = cfg.TlsSection(
        acme=True,
        acme_directory=f"https://127.0.0.1:{free_port('127.0.0.1')}/dir",
        acme_http_address="127.0.0.1",
        acme_http_port=0,
    )
    return dataclasses.replace(
        base, server=dataclasses.replace(base.server, hostname=NAME), tls=tls
    )


def served_serial(port: int) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=NAME) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def self_signed_serial(config: cfg.Config) -> int:
    pem = (config.data_dir / "tls" / "cert.pem").read_bytes()
    return x509.load_pem_x509_certificate(pem).serial_number


def last_attempt(config: cfg.Config, timeout: float = 30.0) -> dict[str, object]:
    path = config.data_dir / "tls" / "acme" / "status.json"
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, "no attempt recorded"
        time.sleep(0.05)
    status: dict[str, object] = json.loads(path.read_text())
    return status


def test_unreachable_ca_is_logged_and_the_server_serves_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pillarbox.acme")
    config = offline_config(tmp_path)
    with LiveServer(config) as server:
        status = last_attempt(config)
        assert status["result"] == "failed"
        assert "Connection refused" in str(status["error"])
        assert any(r.getMessage() == "certificate not obtained" for r in caplog.records)
        assert served_serial(server.port("imaps")) == self_signed_serial(config)


def test_a_stored_key_that_does_not_match_its_certificate_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A crash between writing the new key and the new certificate leaves a mismatched pair:
    loading it into the shared context would leave that context with no usable key (every
    handshake failing); it is refused and the self-signed certificate stays."""
    caplog.set_level(logging.INFO, logger="pillarbox.acme")
    config = offline_config(tmp_path)
    acme_dir = config.data_dir / "tls" / "acme"
    acme_dir.mkdir(parents=True)
    now = datetime.datetime.now(datetime.UTC)
    signing_key, other_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(signing_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
        .sign(signing_key, hashes.SHA256())
    )
    (acme_dir / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (acme_dir / "key.pem").write_bytes(
        other_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with LiveServer(config) as server:
        assert server.server.acme is not None and server.server.acme.facts is None
        assert any(r.getMessage() == "stored certificate not loaded" for r in caplog.records)
        assert served_serial(server.port("imaps")) == self_signed_serial(config)
