"""Pebble, Let's Encrypt's ACME test server (Debian's ``pebble``), on loopback for tests.

Pebble validates HTTP-01 challenges by connecting to the name's address on its ``httpPort``
and resolves names through the DNS server given with ``-dnsserver``: tests point it at a
loopback server of ours (:mod:`pillarbox.testing.dnszone`) answering A 127.0.0.1. Its directory
is served over HTTPS with a certificate made here (Debian's package ships none), from a CA the
ACME client is told to trust (``[tls] acme_ca_bundle``). It issues from a root it generates at
each start; :attr:`Pebble.root_pem` is that root, fetched from its management port.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pillarbox.testing.live import free_port

PEBBLE = "pebble"


def available() -> bool:
    return shutil.which(PEBBLE) is not None


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def write_https_identity(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate it signed for 127.0.0.1/localhost: (ca, cert, key) files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("pillarbox test CA for pebble"))
        .issuer_name(_name("pillarbox test CA for pebble"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class Pebble:
    """``with Pebble(workdir, http_port=…, dns_port=…) as pebble:`` — started and ready on
    enter (its directory at :attr:`directory_url`), stopped on exit."""

    def __init__(self, workdir: Path, *, http_port: int, dns_port: int) -> None:
        self.workdir = workdir
        self.http_port = http_port
        self.dns_port = dns_port
        self.port = free_port("127.0.0.1")
        self.management_port = free_port("127.0.0.1")
        self.ca_bundle, self._cert, self._key = write_https_identity(workdir)
        self.root_pem = b""
        self._process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "pebble.log"

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def _https(self, url: str) -> bytes:
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        with urllib.request.urlopen(url, context=context, timeout=5) as response:
            body: bytes = response.read()
        return body

    def __enter__(self) -> Pebble:
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": str(self._cert),
                "privateKey": str(self._key),
                "httpPort": self.http_port,
                "tlsPort": free_port("127.0.0.1"),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        config_path = self.workdir / "pebble-config.json"
        config_path.write_text(json.dumps(config))
        env = {
            **os.environ,
            "PEBBLE_VA_NOSLEEP": "1",  # validate at once, not after a random 0-15 s
            "PEBBLE_WFE_NONCEREJECT": "0",  # no deliberately refused nonces
        }
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    PEBBLE,
                    "-config",
                    str(config_path),
                    "-dnsserver",
                    f"127.0.0.1:{self.dns_port}",
                    "-strict=false",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        try:
            self._wait_ready()
            self.root_pem = self._https(f"https://127.0.0.1:{self.management_port}/roots/0")
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"pebble exited: {self.log_path.read_text()}")
            try:
                self._https(self.directory_url)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        self._process = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
