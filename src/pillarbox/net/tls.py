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

ACME tls-alpn-01 (RFC 8737) is answered in the same hook: the https listener sets
:data:`ACME_TLS_ALPN` while it starts serving, and each of its handshakes first reads the
ClientHello from the incoming buffer (:meth:`ServerContext.wrap_bio` hands the buffer to the
object); one offering ``acme-tls/1`` is switched to the context answering the challenge for
its SNI name (:mod:`pillarbox.net.tlsalpn`), or refused when there is none. Other listeners,
and the https listener without tls-alpn-01, never read the hello.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pillarbox.atomicfile import write_atomically
from pillarbox.config import LISTENER_DOCS, Config
from pillarbox.net.clienthello import parse_client_hello

SELF_SIGNED_DAYS = 825


def tls_paths(config: Config) -> tuple[Path, Path]:
    """The certificate and key files in use: configured ones, else the self-signed pair."""
    if config.tls.cert:
        return config.resolve_path(config.tls.cert), config.resolve_path(config.tls.key)
    tls_dir = config.data_dir / "tls"
    return tls_dir / "cert.pem", tls_dir / "key.pem"


def certificate_addresses(config: Config) -> tuple[str, ...]:
    """The addresses a self-signed certificate names besides loopback: the listeners' bound
    addresses (not the wildcards) and ``dns.addresses``, so that a client reaching the server
    by one of them and trusting the certificate (``pillarbox mail --cafile``) accepts it."""
    found: dict[str, None] = {}
    for name in LISTENER_DOCS:
        listener = getattr(config.listeners, name)
        if listener.enabled:
            found[listener.address] = None
    for address in config.dns.addresses:
        found[address] = None
    return tuple(a for a in found if _is_ip(a) and not ipaddress.ip_address(a).is_unspecified)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _names_all(cert_path: Path, hostname: str, addresses: Sequence[str]) -> bool:
    """Whether the certificate at ``cert_path`` names ``hostname`` and ``addresses``; also
    True for one that is not self-signed (placed there by hand: never replaced)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return True  # unreadable: the server context reports it
    if cert.issuer != cert.subject:
        return True
    names = {n.lower() for n in alt.get_values_for_type(x509.DNSName)}
    ips = set(alt.get_values_for_type(x509.IPAddress))
    return hostname.lower() in names and all(ipaddress.ip_address(a) in ips for a in addresses)


def ensure_self_signed(
    cert_path: Path, key_path: Path, hostname: str, addresses: Sequence[str] = ()
) -> bool:
    """Create a self-signed certificate for ``hostname`` (and ``addresses``, with loopback's)
    unless one exists that names them; True if written. One made before the host name or an
    address changed in the config is replaced: clients would refuse it for the new name."""
    if cert_path.exists() and key_path.exists() and _names_all(cert_path, hostname, addresses):
        return False
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(hostname)]
    if hostname != "localhost":
        alt_names.append(x509.DNSName("localhost"))
    ips = dict.fromkeys(ipaddress.ip_address(a) for a in ("127.0.0.1", "::1", *addresses))
    alt_names += [x509.IPAddress(ip) for ip in ips]
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


#: RFC 8737 §6.2: the ALPN protocol name of an ACME tls-alpn-01 validation handshake.
ACME_TLS_1 = "acme-tls/1"

#: For the https listener answering tls-alpn-01: SNI name → the context presenting that name's
#: validation certificate, or None to refuse the handshake (see the module notes).
ACME_TLS_ALPN: ContextVar[Callable[[str], ssl.SSLContext | None] | None] = ContextVar(
    "acme_tls_alpn", default=None
)


class TlsAlpnRefused(ssl.SSLError):
    """A handshake offering ``acme-tls/1`` for a name without a pending challenge."""


class _CountedSSLObject(ssl.SSLObject):
    """An ``SSLObject`` whose failed handshake (a TLS error: not TLS at all, no common version
    or cipher, the client refusing our certificate) is reported to :data:`HANDSHAKE_FAILED`,
    and which answers tls-alpn-01 where :data:`ACME_TLS_ALPN` is set."""

    #: Set by :meth:`ServerContext.wrap_bio` where tls-alpn-01 is answered, until the
    #: ClientHello has been read.
    _incoming: ssl.MemoryBIO | None = None
    _answers: Callable[[str], ssl.SSLContext | None] | None = None

    def do_handshake(self) -> None:
        try:
            if self._incoming is not None:
                self._read_hello(self._incoming)
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise  # more bytes to come: not a failure
        except TlsAlpnRefused:
            raise  # a validation nobody asked for: logged where refused, not a TLS failure
        except ssl.SSLError:
            report = HANDSHAKE_FAILED.get()
            if report is not None:
                report()
            raise

    def _read_hello(self, incoming: ssl.MemoryBIO) -> None:
        """Hold the handshake until the whole ClientHello is in ``incoming``, then switch to
        the tls-alpn-01 context if it asks for one (module notes)."""
        # The whole buffer read and written back: the bytes stay for OpenSSL, in order.
        data = incoming.read()
        incoming.write(data)
        try:
            hello = parse_client_hello(data)
        except ValueError:
            hello = None  # not a hello we read: OpenSSL refuses it with the proper alert
        else:
            if hello is None:
                raise ssl.SSLWantReadError("the ClientHello is incomplete")
        self._incoming = None
        answers = self._answers
        if hello is None or answers is None or ACME_TLS_1 not in hello.alpn:
            return
        context = answers(hello.server_name)
        if context is None:
            raise TlsAlpnRefused(f"no tls-alpn-01 challenge pending for {hello.server_name!r}")
        self.context = context


class ServerContext(ssl.SSLContext):
    """The server context: each ``SSLObject`` it makes where :data:`ACME_TLS_ALPN` is set is
    given its incoming buffer, to read the ClientHello from (module notes)."""

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        wrapped = super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        answers = ACME_TLS_ALPN.get()
        if server_side and answers is not None and isinstance(wrapped, _CountedSSLObject):
            wrapped._incoming = incoming
            wrapped._answers = answers
        return wrapped


def server_context(config: Config) -> ssl.SSLContext:
    """The server-side context every listener shares."""
    cert, key = tls_paths(config)
    context = ServerContext(ssl.PROTOCOL_TLS_SERVER)
    context.sslobject_class = _CountedSSLObject
    context.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if config.tls.min_version == "TLSv1.3" else ssl.TLSVersion.TLSv1_2
    )
    context.load_cert_chain(cert, key)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    return context


def load_pair(context: ssl.SSLContext, cert: Path, key: Path) -> None:
    """Make ``context`` present ``cert`` with ``key``, or leave it as it was.

    The pair is tried on a scratch context first: OpenSSL takes a certificate into the context
    before it checks the key against it, so a mismatched pair loaded directly would leave the
    shared context with the new certificate and no key, and every handshake failing.
    """
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    context.load_cert_chain(cert, key)


def describe(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """``TLSv1.3 TLS_AES_256_GCM_SHA384`` for logs and Received headers; None without TLS."""
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    version = ssl_object.version() or "TLS"
    return f"{version} {cipher[0]}" if cipher else version
