"""A certificate authority of a test's own: a CA certificate (its bundle file for clients to
trust) and certificates it signs for host names and addresses, written as PEM files beside it.
Tests of verified TLS (MTA-STS policy and MX hosts, an ACME CA's directory) use it in place of
the system's roots."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _alternative_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


@dataclass(frozen=True)
class CertAuthority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    directory: Path

    @property
    def bundle(self) -> str:
        """The CA certificate's PEM file, for a client's ``cafile``."""
        return str(self.directory / "ca.pem")

    def issue(self, *names: str, expired: bool = False) -> tuple[Path, Path]:
        """A server certificate for ``names`` (host names or IP addresses) signed by this CA,
        and its key: the files ``<first name>.crt`` and ``.key`` in the CA's directory.
        ``expired``: one whose validity ended yesterday."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        start, end = (-30, -1) if expired else (0, 2)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + dt.timedelta(days=start, hours=-1))
            .not_valid_after(now + dt.timedelta(days=end))
            .add_extension(
                x509.SubjectAlternativeName([_alternative_name(n) for n in names]), False
            )
            .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        cert_path = self.directory / f"{names[0]}.crt"
        key_path = self.directory / f"{names[0]}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path

    def server_context(self, *names: str, expired: bool = False) -> ssl.SSLContext:
        """A server context presenting a certificate for ``names`` (:meth:`issue`)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*self.issue(*names, expired=expired))
        return context


def make_ca(directory: Path, common_name: str = "Pillarbox test CA") -> CertAuthority:
    """A new CA whose files go in ``directory`` (its bundle written at once)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    ca = CertAuthority(key, cert, directory)
    Path(ca.bundle).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return ca
