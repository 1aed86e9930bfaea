"""TLS for every listener: the server context, and the self-signed certificate of a first run.

Only public ``ssl`` APIs are used (STYLE: no ``asyncio.sslproto``). TLS 1.2 is the floor
(RFC 8996 deprecates 1.0/1.1; RFC 8314 §4.1 asks for current versions).

Failed handshakes on the implicit-TLS listeners are counted here, not in the listener: asyncio
and uvloop do that handshake before the connection reaches Pillarbox and tell no one when it
fails, and taking it over in Pillarbox's own task would race the client's ClientHello under
uvloop (it starts reading right after ``connection_made``). So the server context's
``sslobject_class`` (a public ``ssl`` hook) is :class:`_CountedSSLObject`, whose handshake
reports a TLS error to whatever :data:`HANDSHAKE_FAILED` holds in the running context; an
implicit-TLS listener sets it while it starts serving, so the connections it accepts (their
callbacks run in a copy of that context, on both loops) report to its counter. STARTTLS
upgrades run where it is unset: the channel counts those itself.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pillarbox.atomicfile import write_atomically
from pillarbox.config import Config

SELF_SIGNED_DAYS = 825


def tls_paths(config: Config) -> tuple[Path, Path]:
    """The certificate and key files in use: configured ones, else the self-signed pair."""
    if config.tls.cert:
        return config.resolve_path(config.tls.cert), config.resolve_path(config.tls.key)
    tls_dir = config.data_dir / "tls"
    return tls_dir / "cert.pem", tls_dir / "key.pem"


def ensure_self_signed(cert_path: Path, key_path: Path, hostname: str) -> bool:
    """Create a self-signed certificate for ``hostname`` unless one exists; True if created."""
    if cert_path.exists() and key_path.exists():
        return False
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(hostname)]
    if hostname != "localhost":
        alt_names.append(x509.DNSName("localhost"))
    alt_names += [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Whole files or none: a start killed half-way must not leave a torn key, which every
    # later start would load and fail on.
    write_atomically(key_path, key_bytes, 0o600)
    write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return True


#: What a failed server-side handshake reports to (see the module notes); None: nothing.
HANDSHAKE_FAILED: ContextVar[Callable[[], None] | None] = ContextVar(
    "handshake_failed", default=None
)


class _CountedSSLObject(ssl.SSLObject):
    """An ``SSLObject`` whose failed handshake (a TLS error: not TLS at all, no common version
    or cipher, the client refusing our certificate) is reported to :data:`HANDSHAKE_FAILED`."""

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise  # more bytes to come: not a failure
        except ssl.SSLError:
            report = HANDSHAKE_FAILED.get()
            if report is not None:
                report()
            raise


def server_context(config: Config) -> ssl.SSLContext:
    """The server-side context every listener shares."""
    cert, key = tls_paths(config)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.sslobject_class = _CountedSSLObject
    context.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if config.tls.min_version == "TLSv1.3" else ssl.TLSVersion.TLSv1_2
    )
    context.load_cert_chain(cert, key)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    return context


def describe(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """``TLSv1.3 TLS_AES_256_GCM_SHA384`` for logs and Received headers; None without TLS."""
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    version = ssl_object.version() or "TLS"
    return f"{version} {cipher[0]}" if cipher else version
