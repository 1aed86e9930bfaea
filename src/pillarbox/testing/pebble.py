"""Pebble, Let's Encrypt's ACME test server (Debian's ``pebble``), on loopback for tests.

Pebble validates HTTP-01 challenges by connecting to the name's address on its ``httpPort``,
TLS-ALPN-01 ones on its ``tlsPort`` (where a CA connects to 443), and resolves names through
the DNS server given with ``-dnsserver``: tests point it at a loopback server of ours
(:mod:`pillarbox.testing.dnszone`) answering A 127.0.0.1. Its directory
is served over HTTPS with a certificate made here (Debian's package ships none), from a CA the
ACME client is told to trust (``[tls] acme_ca_bundle``). It issues from a root it generates at
each start; :attr:`Pebble.root_pem` is that root, fetched from its management port.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from acme import client, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from pillarbox.testing.live import free_port
from pillarbox.testing.testca import make_ca

PEBBLE = "pebble"


def available() -> bool:
    return shutil.which(PEBBLE) is not None


def write_https_identity(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate it signed for localhost/127.0.0.1: (ca, cert, key) files."""
    ca = make_ca(directory, "pillarbox test CA for pebble")
    cert, key = ca.issue("localhost", "127.0.0.1")
    return Path(ca.bundle), cert, key


def presented_certificate(port: int, root_pem: bytes | None, name: str) -> x509.Certificate:
    """The certificate a loopback implicit-TLS listener presents for ``name`` (SNI); verified
    against ``root_pem`` for ``name`` when given, taken unverified otherwise."""
    if root_pem is None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cadata=root_pem.decode())
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


class Pebble:
    """``with Pebble(workdir, http_port=…, dns_port=…) as pebble:`` — started and ready on
    enter (its directory at :attr:`directory_url`), stopped on exit. ``tls_port``: where it
    validates TLS-ALPN-01 (default: a port nothing listens on); ``restarting``: a stopped
    Pebble this one stands for restarted, at its directory URL with its HTTPS identity, and
    having forgotten every account (Pebble keeps them in memory); ``validity``: the seconds its
    certificates are valid (default Pebble's, five years)."""

    def __init__(
        self,
        workdir: Path,
        *,
        http_port: int,
        dns_port: int,
        tls_port: int | None = None,
        restarting: Pebble | None = None,
        validity: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.validity = validity
        self.http_port = http_port
        self.tls_port = free_port("127.0.0.1") if tls_port is None else tls_port
        self.dns_port = dns_port
        self.port: int = free_port("127.0.0.1") if restarting is None else restarting.port
        self.management_port = free_port("127.0.0.1")
        if restarting is None:
            self.ca_bundle, self._cert, self._key = write_https_identity(workdir)
        else:
            self.ca_bundle, self._cert, self._key = (
                restarting.ca_bundle,
                restarting._cert,
                restarting._key,
            )
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
                "tlsPort": self.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
                **({} if self.validity is None else {"certificateValidityPeriod": self.validity}),
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

    def accounts_created(self) -> int:
        """How many accounts Pebble created (it logs its count after each new one)."""
        return self.log_path.read_text().count(" accounts in memory")

    def account_requests(self) -> int:
        """How many new-account requests reached Pebble: each creates an account, or finds the
        one of its key (RFC 8555 §7.3.1)."""
        return self.log_path.read_text().count("POST /sign-me-up")

    def client(self, key_pem: bytes) -> client.ClientV2:
        """certbot's ACME client for this Pebble, signing with ``key_pem`` (an EC key): an
        operator's own tool, or an earlier Pillarbox."""
        key = serialization.load_pem_private_key(key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        network = client.ClientNetwork(
            JWKEC(key=key),
            alg=ES256,
            # requests' ``verify`` takes a CA bundle's path as well as a bool.
            verify_ssl=str(self.ca_bundle),  # type: ignore[arg-type]
            user_agent="test",
        )
        directory = client.ClientV2.get_directory(self.directory_url, network)
        return client.ClientV2(directory, network)

    def register(self, key_pem: bytes) -> str:
        """Register an account for ``key_pem`` (RFC 8555 §7.3); the account's URL."""
        registration = messages.NewRegistration.from_data(terms_of_service_agreed=True)
        return str(self.client(key_pem).new_account(registration).uri)

    def deactivate(self, key_pem: bytes, url: str) -> None:
        """Deactivate the account at ``url`` of ``key_pem`` (RFC 8555 §7.3.6), as its
        operator may, or the CA itself: Pebble refuses it for good afterwards."""
        registered = messages.RegistrationResource(uri=url, body=messages.Registration())
        done = self.client(key_pem).deactivate_registration(registered)
        assert done.body.status == "deactivated", done

    @property
    def https_identity(self) -> tuple[Path, Path]:
        """The certificate and key Pebble serves its directory with (for localhost and
        127.0.0.1, from :attr:`ca_bundle`): a front in a test may present them too."""
        return self._cert, self._key

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
