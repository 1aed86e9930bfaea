"""Configured certificate files (``[tls] cert``/``key``) renewed under a running server: new
connections present the new certificate without a restart, once the key matches it."""

from __future__ import annotations

import shutil
import ssl
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from pillarbox import config as cfg
from pillarbox.errors import ConfigError
from pillarbox.testing.live import LiveServer, loopback_config
from pillarbox.testing.pebble import presented_certificate
from pillarbox.testing.polling import wait_for
from pillarbox.testing.testca import make_ca

INTERVAL = 0.2


def presented(port: int, ca_bundle: str) -> bytes:
    """The DER certificate a new implicit-TLS connection is shown, verified against the CA."""
    certificate = presented_certificate(port, Path(ca_bundle).read_bytes(), "mail.example.org")
    return certificate.public_bytes(serialization.Encoding.DER)


def der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def test_renewed_files_are_presented_once_cert_and_key_match(tmp_path: Path) -> None:
    (tmp_path / "ca").mkdir()
    ca = make_ca(tmp_path / "ca")
    issued_cert, issued_key = ca.issue("mail.example.org", "127.0.0.1")
    cert, key = tmp_path / "live" / "fullchain.pem", tmp_path / "live" / "privkey.pem"
    cert.parent.mkdir()
    shutil.copy(issued_cert, cert)
    shutil.copy(issued_key, key)
    tls = cfg.TlsSection(cert=str(cert), key=str(key), files_check_interval=INTERVAL)
    config = loopback_config(tmp_path / "data", only=["imaps"], tls=tls)
    with LiveServer(config) as live:
        port = live.port("imaps")
        first = presented(port, ca.bundle)
        assert first == der(cert)

        renewed_cert, renewed_key = ca.issue("mail.example.org", "127.0.0.1")  # a new key too
        assert der(renewed_cert) != first
        # A renewer writing the certificate before the key: the pair does not match yet, and
        # the server keeps presenting the old pair rather than breaking every handshake.
        shutil.copy(renewed_cert, cert)
        time.sleep(INTERVAL * 5)
        assert presented(port, ca.bundle) == first

        shutil.copy(renewed_key, key)
        wait_for(lambda: presented(port, ca.bundle) == der(renewed_cert), "the renewed cert")


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"tls\.files_check_interval"):
        cfg.from_mapping({"tls": {"files_check_interval": 0}})
