"""ACME tls-alpn-01 (RFC 8737): the CA opens TLS to port 443 offering ALPN ``acme-tls/1``
with the name being validated as SNI, and expects a self-signed certificate proving the key
authorization; the https listener answers it.

Implementation notes:

- **Which handshakes**: only those whose ClientHello offers ``acme-tls/1`` (read from the
  bytes before OpenSSL takes them, :mod:`pillarbox.net.clienthello`) and names as SNI a name
  with a pending challenge. They are switched to a context of their own presenting the
  validation certificate and negotiating only ``acme-tls/1`` (RFC 8737 §3); every other
  handshake keeps the shared context, its certificate and its ALPN untouched. A hello offering
  ``acme-tls/1`` for a name without a pending challenge is refused (logged).
- **Nothing after the handshake** (RFC 8737 §4: the protocol carries no application
  data): the https listener closes such a connection once the handshake is done, and the web
  app never sees it (:class:`pillarbox.net.http.ValidationGuard`).
- **The certificate**: self-signed, a P-256 key of its own, one dNSName SAN (the name), and
  the critical id-pe-acmeIdentifier extension holding the SHA-256 digest of the key
  authorization as a DER OCTET STRING (RFC 8737 §3). Built once per challenge.
- **Every node answers**: the handshake cannot wait for the store, so each node keeps a local
  copy of the cluster's pending answers (name and key authorization, from the store's
  ``acme_answers``; never a private key), read every :data:`REFRESH_SECONDS` and turned into
  validation contexts of its own (the CA checks only the SAN and the extension's digest, not
  which key signed). The node running the attempt answers from its own entry at once, and tells
  the CA to validate only two :data:`REFRESH_SECONDS` after sharing it, when every other node
  has read it (one interval, and one more for a refresh under way as it was written). At most
  ``[tls] acme_shared_answers_max`` answers are read; with none pending a refresh is one
  indexed query that returns nothing.
- The ``acme`` library no longer knows tls-alpn-01 (certbot dropped it); :class:`TLSALPN01`
  registers it through the library's own registry, as its http-01 and dns-01 are.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ssl
import tempfile
from pathlib import Path
from typing import Any

from acme import challenges
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier
from josepy.jwk import JWK

from pillarbox.blocking import run_blocking
from pillarbox.errors import StorageError
from pillarbox.net.tls import ACME_TLS_1
from pillarbox.observability.log import Log
from pillarbox.store.interface import Store
from pillarbox.store.types import ACME_ANSWER_LAG, ACME_TLS_ALPN01

#: RFC 8737 §6.1: id-pe-acmeIdentifier, { id-pe 31 }.
ID_PE_ACME_IDENTIFIER = ObjectIdentifier("1.3.6.1.5.5.7.1.31")
#: How long a validation certificate is valid: the CA checks it within the attempt.
VALIDATION_CERT_DAYS = 7
#: Seconds between two reads of the cluster's pending answers (the node running an attempt
#: waits two before the CA may connect to another node).
REFRESH_SECONDS = ACME_ANSWER_LAG


@challenges.ChallengeResponse.register
class TLSALPN01Response(challenges.KeyAuthorizationChallengeResponse):
    """The answer posted to a tls-alpn-01 challenge (RFC 8555 §7.5.1: an empty object)."""

    typ = ACME_TLS_ALPN01


@challenges.Challenge.register
class TLSALPN01(challenges.KeyAuthorizationChallenge):
    """The tls-alpn-01 challenge (RFC 8737 §3)."""

    response_cls = TLSALPN01Response
    typ = response_cls.typ

    def validation(self, account_key: JWK, **unused: Any) -> bytes:
        """The SHA-256 digest of the key authorization, the acmeIdentifier's content."""
        return acme_identifier_digest(self.key_authorization(account_key))


def acme_identifier_digest(key_authorization: str) -> bytes:
    """RFC 8737 §3: the SHA-256 digest of the key authorization (RFC 8555 §8.1)."""
    return hashlib.sha256(key_authorization.encode("ascii")).digest()


def validation_certificate(name: str, key_authorization: str) -> tuple[bytes, bytes]:
    """The self-signed validation certificate for ``name`` and its key, PEM: (cert, key)."""
    digest = acme_identifier_digest(key_authorization)
    # RFC 8737 §3: extnValue is the DER of Authorization ::= OCTET STRING (SIZE (32)):
    # tag 0x04, length 32, the digest. cryptography has no public OCTET STRING encoder.
    value = bytes((0x04, len(digest))) + digest
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALIDATION_CERT_DAYS))
        # RFC 8737 §3: one dNSName, the name validated, and nothing else.
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        # RFC 8737 §3: critical, so no other software takes the certificate for its own.
        .add_extension(x509.UnrecognizedExtension(ID_PE_ACME_IDENTIFIER, value), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def validation_context(name: str, key_authorization: str) -> ssl.SSLContext:
    """A server context presenting the validation certificate for ``name`` and negotiating
    only ``acme-tls/1`` (a handshake switched to it keeps the shared context's TLS versions,
    which meet RFC 8737 §4's floor of 1.2). Blocking (key generation, a private temporary
    file: ``ssl`` loads certificates from files only)."""
    cert, key = validation_certificate(name, key_authorization)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_alpn_protocols([ACME_TLS_1])
    with tempfile.TemporaryDirectory(prefix="pillarbox-tlsalpn-") as scratch:
        pair = Path(scratch) / "pair.pem"  # the directory is the creator's only (0700)
        pair.write_bytes(key + cert)
        context.load_cert_chain(pair)
    return context


class TlsAlpnAnswers:
    """The pending tls-alpn-01 challenges this node answers: name → the context answering it.
    Its own attempt's are added and removed by the attempt; the other nodes' are copied from
    the store by :meth:`follow`. Read by the https listener's handshakes."""

    def __init__(self) -> None:
        self._contexts: dict[str, ssl.SSLContext] = {}
        #: Other attempts' answers read from the store: name → (key authorization, context).
        self._shared: dict[str, tuple[str, ssl.SSLContext]] = {}
        self._log = Log("acme")

    def add(self, name: str, context: ssl.SSLContext) -> None:
        self._contexts[name.lower()] = context

    def remove(self, name: str) -> None:
        self._contexts.pop(name.lower(), None)

    def __len__(self) -> int:
        return len(self._contexts.keys() | self._shared.keys())

    async def refresh(self, store: Store, limit: int) -> None:
        """Copy the store's pending answers: a context made (off the loop) for each new name or
        key authorization, those no longer pending dropped; names this node's own attempt
        answers are skipped (it has their context already)."""
        rows = await store.list_acme_answers(
            ACME_TLS_ALPN01, datetime.datetime.now(datetime.UTC), limit
        )
        shared: dict[str, tuple[str, ssl.SSLContext]] = {}
        for row in rows:
            if row.key in self._contexts:
                continue
            known = self._shared.get(row.key)
            if known is not None and known[0] == row.value:
                shared[row.key] = known
            else:
                context = await run_blocking(validation_context, row.key, row.value)
                shared[row.key] = (row.value, context)
        self._shared = shared

    async def follow(self, store: Store, limit: int) -> None:
        """The task of ``pillarbox serve``: :meth:`refresh` every :data:`REFRESH_SECONDS`; a
        store that cannot be read keeps the last copy (logged)."""
        while True:
            try:
                await self.refresh(store, limit)
            except StorageError as exc:
                self._log.warning("tls-alpn-01 answers not refreshed", error=str(exc))
            await asyncio.sleep(REFRESH_SECONDS)

    def context_for(self, server_name: str) -> ssl.SSLContext | None:
        """The context for a handshake offering ``acme-tls/1`` with SNI ``server_name``; None
        (logged) when no challenge for it is pending: the handshake is then refused."""
        context = self._contexts.get(server_name)
        if context is None and (shared := self._shared.get(server_name)) is not None:
            context = shared[1]
        if context is None:
            self._log.info("tls-alpn-01 handshake refused: no pending challenge", sni=server_name)
        else:
            self._log.info("tls-alpn-01 validation handshake", sni=server_name)
        return context
