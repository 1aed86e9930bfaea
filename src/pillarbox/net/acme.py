"""ACME certificates (RFC 8555) for every TLS listener: obtained with HTTP-01, DNS-01 or
TLS-ALPN-01 (RFC 8737), renewed in the background, swapped into the shared TLS context without
a restart.

Implementation notes:

- **Protocol client**: certbot's ``acme`` package. It is synchronous (``requests``), so its
  calls run on the bounded pool (:func:`pillarbox.blocking.run_blocking`); an attempt is two
  blocking steps (order and challenges; answers, validation and issuance) with the challenge
  table filled on the event loop between them.
- **Challenge responses** (http-01) live in one dict, token → key authorization
  (``Services.acme_challenges``), that the web app's ``/.well-known/acme-challenge/`` route
  and the dedicated challenge listener look tokens up in, and in the store (``acme_answers``),
  where those of every other node look a token they do not hold up: behind a balancer the
  CA's request may reach any node. A token never becomes a path. Each attempt removes its
  tokens when it ends; their expiry (the attempt's timeout and
  :data:`~pillarbox.dns.acmerecords.EXPIRY_MARGIN`) is the backstop after a crash.
- **Challenge choice** (``[tls] acme_challenges``, in order of preference), per authorization:
  http-01 or tls-alpn-01 for a name that is not a wildcard (each proves the one name it is
  asked under), tls-alpn-01 answered by the https listener, which ``pillarbox serve`` hands
  :attr:`CertificateManager.tls_alpn`; dns-01 when our authoritative DNS server serves the
  hosted domain whose zone holds ``_acme-challenge.<name>``, or else when ``acme_dns_hook`` is
  set. A wildcard's authorization is for its base name and only dns-01 can prove it (RFC 8555
  §7.1.3, §8.4). No choice left fails the attempt naming the name and each type's reason.
- **TLS-ALPN-01 answers** are a context per name presenting its validation certificate
  (:mod:`pillarbox.net.tlsalpn`), made off the loop before the CA is told to validate and
  dropped when the attempt ends; the name and key authorization go to the store too, where
  every other node's copy picks them up, and the CA is told to validate once they have (twice
  :data:`~pillarbox.store.types.ACME_ANSWER_LAG`: a refresh may have read the store just
  before). http-01 answers wait as long: a node remembers "none pending" that long.
- **One certificate per cluster** (``[tls] acme_shared_certificate`` on a PostgreSQL store):
  a node renews only while it holds the store's lease for the certificate's scope (CA
  directory and names), which lapses at its expiry if the node dies; a failed attempt leaves
  the lease as the cluster's back-off. The chain and its key go to the store
  (``acme_certificates``), and every node's :meth:`CertificateManager.sync` takes a
  later-expiring one up (its files, then the context) or offers its own when that is the later
  one. Without sharing (or with SQLite) every node holds its own certificate (``data_dir``)
  and runs its own attempts.
- **The certificate's key**: new at every order, unless ``[tls] acme_reuse_key``: then the
  key of the certificate held now (the store's when shared, else the node's ``key.pem``), so
  a DANE ``3 1 1`` record stays valid; a ``key.pem`` that is not its certificate's was put
  there by hand as the next key of a rollover, and wins (:meth:`_certificate_key`).
- **One account per cluster**, per CA directory, in the store (``acme_accounts``, any backend):
  its key is made by the first attempt and stored if no node stored one first, then read back,
  so that two nodes at once both use the one that was stored. The account is registered with
  it (RFC 8555 §7.3; a key the CA knows already has it name the account's URL, §7.3.1) and its
  URL stored, after which attempts go straight to ordering (a CA answering that URL with
  accountDoesNotExist, §6.7, gets the key registered again).
- **A deactivated account is replaced** (§7.3.6: deactivated by us or by the CA, or revoked,
  it is refused for good, ``unauthorized``): on an ``unauthorized`` order (or registration)
  the account is looked at (:func:`gone_status`), and only when it is deactivated or revoked
  a new key takes the old one's place in the store, by a compare-and-swap on the old key, and
  is registered; of two nodes at once one key is stored and both register it, which makes one
  account. Any other ``unauthorized`` (a name, a CAA record) fails the attempt as before.
  Another directory (another CA, or staging) is another account. A node of an earlier version
  has ``account.key`` in its data directory: its first attempt takes that key into the store
  when the store holds none for the directory yet (the CA's account goes on), and renames the
  file ``account.key.old``, whichever key the store kept.
- **Concurrent attempts**: a name's tls-alpn-01 answer can be only one key authorization at a
  time: the store refuses a second node's while the first is pending, and that attempt fails
  and is retried with the back-off (http-01 tokens differ per attempt and never collide; dns-01
  names carry several values).
- **DNS-01 answers** in our zones are TXT records published through the store
  (:mod:`pillarbox.dns.acmerecords`), so every node's DNS server serves them; the CA is told to
  validate only once our own server answers them (§8.4). Elsewhere the administrator's command
  publishes them (:mod:`pillarbox.net.acmehook`) and must return once they are visible. Either
  way they are withdrawn when the attempt ends, validated or not.
- **Files** under ``data_dir/tls/acme/``: ``key.pem`` (mode 0600),
  ``cert.pem`` (leaf and chain), ``cert.directory`` (the CA directory it came from: a
  certificate from another directory, say staging's, is replaced at once), ``status.json``
  (the last attempt, for ``pillarbox tls status``), ``renew.request`` (a renewal asked for by
  ``pillarbox tls renew``). Each is written to a temporary file in the same directory, synced
  and renamed over the old one. The key goes first: a crash between the two leaves a pair
  that does not match, which :meth:`CertificateManager.install_stored` refuses, so the next
  attempt replaces both. Shared, the files are this node's copy of the store's certificate,
  what it presents from its start until the store answers.
- **Hot reload**: ``SSLContext.load_cert_chain`` on the context every listener shares (implicit
  TLS and STARTTLS alike), on the loop's thread: connections accepted afterwards present the
  new certificate, open ones keep theirs. Every certificate here (self-signed and ACME) has a
  P-256 key, so a new one replaces the old in OpenSSL's one slot per key type.
- **Renewal timing** (:func:`~pillarbox.certificates.renewal_time`): the lifetime rule
  (``acme_renew_days``, at most a third of the lifetime, half of a short-lived one's), or the
  CA's renewal window (RFC 9773) for the certificate presented, fetched by
  :meth:`CertificateManager._check_renewal_info` with the library's HTTP client (its moment
  drawn once per window). A fetch only informs the decision; ordering is still
  :meth:`CertificateManager._renewal_reason`'s, and shared, the lease holder's. The new order
  carries no ``replaces`` (§5): the library's ``new_order`` takes none.
- **Failures** (CA unreachable, challenge not validated, timeout) are logged with the CA's
  reason, as soon as any authorization is invalid (all pending ones are polled each round),
  and retried after ``acme_retry`` seconds, doubling up to ``acme_check_interval``;
  meanwhile the context keeps the certificate it had (an older ACME one, or the self-signed
  one of the first run).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import josepy
import requests
from acme import challenges, client, crypto_util, messages
from acme import errors as acme_errors
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from pillarbox.atomicfile import write_atomically
from pillarbox.blocking import run_blocking
from pillarbox.certificates import (
    CertificateFacts,
    RenewalWindow,
    acme_identifier,
    acme_names,
    certificate_facts,
    certificate_scope,
    dns01_record_name,
    dns01_txt_value,
    drawn_window,
    next_renewal_info,
    renewal_reason,
    renewal_time,
    retry_after,
    retry_delay,
)
from pillarbox.config import Config, TlsSection
from pillarbox.dns.acmerecords import (
    EXPIRY_MARGIN,
    AcmeChallengeRecords,
    ChallengeRecord,
    NotAnswerable,
)
from pillarbox.dns.records import DnsRecord, tlsa_record
from pillarbox.errors import AlreadyExists, PillarboxError, StorageError, TooManyEntries
from pillarbox.net.acmehook import HookFailed, run_hook
from pillarbox.net.tls import tls_paths
from pillarbox.net.tlsalpn import TlsAlpnAnswers, validation_context
from pillarbox.observability.log import Log
from pillarbox.store.interface import Store
from pillarbox.store.open import is_postgresql
from pillarbox.store.types import (
    ACME_ANSWER_LAG,
    ACME_HTTP01,
    ACME_TLS_ALPN01,
    AcmeAccount,
    AcmeAnswer,
    AcmeCertificate,
    AcmeLease,
)

#: How often the renewal task looks for a ``renew.request`` left by ``pillarbox tls renew``.
REQUEST_POLL = 2.0
#: The reason of an attempt ``pillarbox tls renew`` asked for.
REQUESTED = "renewal requested (pillarbox tls renew)"
#: Seconds one HTTP request to the CA may take.
CA_REQUEST_TIMEOUT = 30
USER_AGENT = "pillarbox"


class AcmeError(PillarboxError):
    """An attempt to obtain a certificate failed; the message is the reason (the CA's own
    problem detail where it gave one). Neither the operator's mistake nor ours as such (DNS,
    port 80, the CA), so logged as a warning and retried."""


@dataclass(frozen=True, slots=True)
class AcmeFiles:
    """Where the ACME account and certificate of one data directory live."""

    directory: Path

    @classmethod
    def of(cls, config: Config) -> AcmeFiles:
        return cls(config.data_dir / "tls" / "acme")

    @property
    def account_key(self) -> Path:
        """The account's key as versions before the store kept it had it: taken into the store
        by the first attempt, then renamed :attr:`old_account_key`."""
        return self.directory / "account.key"

    @property
    def old_account_key(self) -> Path:
        return self.directory / "account.key.old"

    @property
    def key(self) -> Path:
        return self.directory / "key.pem"

    @property
    def cert(self) -> Path:
        return self.directory / "cert.pem"

    @property
    def status(self) -> Path:
        return self.directory / "status.json"

    @property
    def request(self) -> Path:
        return self.directory / "renew.request"

    @property
    def renewal_info(self) -> Path:
        """The CA's renewal window for ``cert.pem`` as last fetched (RFC 9773), or why none."""
        return self.directory / "renewal-info.json"

    @property
    def issuer_directory(self) -> Path:
        """The directory URL of the CA that issued ``cert.pem``."""
        return self.directory / "cert.directory"

    def facts(self) -> CertificateFacts | None:
        """The stored certificate's facts; None if there is none or it cannot be read."""
        try:
            return certificate_facts(self.cert.read_bytes())
        except (OSError, ValueError):
            return None

    def read_status(self) -> dict[str, Any]:
        return _read_json(self.status)

    def read_renewal_info(self) -> dict[str, Any]:
        return _read_json(self.renewal_info)


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object this module wrote; {} if there is none (or it cannot be read)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def stored_window(info: Mapping[str, Any], facts: CertificateFacts) -> RenewalWindow | None:
    """The renewal window ``renewal-info.json`` holds, if it is ``facts``' certificate's."""
    window = info.get("window")
    if info.get("certificate") != facts.ari_id or not isinstance(window, dict):
        return None
    try:
        return RenewalWindow(
            facts.ari_id,
            datetime.datetime.fromisoformat(window["start"]),
            datetime.datetime.fromisoformat(window["end"]),
            datetime.datetime.fromisoformat(window["renew_at"]),
            datetime.datetime.fromisoformat(info["next_check"]),
            str(window.get("explanation_url") or ""),
        )
    except (KeyError, TypeError, ValueError):
        return None


def certificate_in_use(config: Config) -> tuple[Path, str]:
    """The certificate file the listeners present and where it came from: "acme" once one was
    obtained (until then the self-signed one stands in), else "configured" or "self-signed"."""
    files = AcmeFiles.of(config)
    if config.tls.acme and files.facts() is not None:
        return files.cert, "acme"
    return tls_paths(config)[0], "configured" if config.tls.cert else "self-signed"


def served_certificate(config: Config) -> tuple[bytes | None, str]:
    """The certificate the listeners present (DER; None when none is readable), and why a TLSA
    record of its key would not last ("" when it would: a configured certificate changes only
    when the admin changes it, an ACME one with ``acme_reuse_key`` keeps its key)."""
    path, source = certificate_in_use(config)
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        der = None
    else:
        der = certificate.public_bytes(serialization.Encoding.DER)
    if config.tls.acme and not config.tls.acme_reuse_key:
        return der, "each ACME renewal makes a new key (tls.acme_reuse_key is off)"
    if config.tls.acme and source != "acme":
        return der, "no ACME certificate obtained yet"
    if source == "self-signed":
        return der, (
            "the self-signed certificate is made anew when the host's names or addresses "
            "change (configure tls.cert/tls.key, or ACME with tls.acme_reuse_key)"
        )
    return der, "" if der is not None else f"no certificate readable at {path}"


def lasting_tlsa(config: Config) -> DnsRecord | None:
    """The TLSA record of the mail host's certificate when its key stays
    (:func:`served_certificate`), for the authoritative server to serve; None otherwise."""
    der, unstable = served_certificate(config)
    if der is None or unstable:
        return None
    return tlsa_record(config.server.hostname, der)


def load_pair(context: ssl.SSLContext, cert: Path, key: Path) -> None:
    """Make ``context`` present ``cert`` with ``key``, or leave it as it was.

    The pair is tried on a scratch context first: OpenSSL takes a certificate into the context
    before it checks the key against it, so a mismatched pair loaded directly would leave the
    shared context with the new certificate and no key, and every handshake failing.
    """
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    context.load_cert_chain(cert, key)


def _new_key_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _account_jwk(account: AcmeAccount) -> JWKEC:
    """The account's key as the ACME client signs with it."""
    try:
        key = serialization.load_pem_private_key(account.key_pem, password=None)
    except ValueError as exc:
        raise AcmeError(f"the stored ACME account key does not load: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise AcmeError("the stored ACME account key is not an EC key")
    return JWKEC(key=key)


def _file_key(path: Path) -> bytes | None:
    """Blocking: the EC key in ``path`` (an earlier version's ``account.key``, or the key of
    the certificate held now) as PKCS#8 PEM; None if there is no such file, or it holds no EC
    key (then a new key is made, as that version would have done)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


HTTP01 = ACME_HTTP01
DNS01 = "dns-01"
TLS_ALPN01 = ACME_TLS_ALPN01  # registered with the acme library by pillarbox.net.tlsalpn
#: The ``domain`` of a dns-01 record our DNS server does not serve: ``acme_dns_hook`` publishes it.
EXTERNAL_ZONE = ""


@dataclass(frozen=True, slots=True)
class _Challenge:
    """One challenge chosen and its answer: for http-01 the token and key authorization the
    challenge route serves, for tls-alpn-01 the name and key authorization the validation
    certificate is made of, for dns-01 the TXT record to publish."""

    body: messages.ChallengeBody
    response: challenges.ChallengeResponse
    kind: str
    name: str
    token: str
    key_authorization: str
    record: ChallengeRecord | None = None


@dataclass(frozen=True, slots=True)
class _Order:
    """An order placed, its challenges not yet answered."""

    client: client.ClientV2
    order: messages.OrderResource
    challenges: tuple[_Challenge, ...]
    key_pem: bytes
    #: The account's URL, as stored or as the CA named it now.
    account_url: str

    @property
    def records(self) -> tuple[ChallengeRecord, ...]:
        return tuple(c.record for c in self.challenges if c.record is not None)


def _network(key: JWKEC | None, ca_bundle: str) -> client.ClientNetwork:
    """Blocking: the library's HTTP client for the CA, signing with ``key`` (None: for GETs
    only), trusting ``ca_bundle`` (a path; empty: the system's CAs) for the CA's HTTPS."""
    verify: bool | str = ca_bundle or True
    return client.ClientNetwork(
        key,
        alg=ES256,
        # requests' ``verify`` takes a CA bundle's path as well as a bool.
        verify_ssl=verify,  # type: ignore[arg-type]
        user_agent=USER_AGENT,
        timeout=CA_REQUEST_TIMEOUT,
    )


def _client(tls: TlsSection, account_key: JWKEC, ca_bundle: str) -> client.ClientV2:
    """Blocking: a client signing with ``account_key``, not logged in to an account yet."""
    network = _network(account_key, ca_bundle)
    return client.ClientV2(client.ClientV2.get_directory(tls.acme_directory, network), network)


@dataclass(frozen=True, slots=True)
class _FetchedWindow:
    """A renewal window as the CA answered it (RFC 9773 §4.2)."""

    url: str
    start: datetime.datetime
    end: datetime.datetime
    explanation: str
    #: The response's Retry-After (§4.3.2); None without one.
    retry_after: datetime.datetime | None


def _fetch_renewal_info(tls: TlsSection, ca_bundle: str, ari_id: str) -> _FetchedWindow | None:
    """Blocking: the CA's suggested renewal window for the certificate ``ari_id`` names (RFC
    9773 §4.2: a GET, unauthenticated, of the directory's ``renewalInfo`` URL with the
    identifier appended); None when the directory has no ``renewalInfo``.

    The library's ``ClientV2.renewal_time`` makes the same request, but returns only a moment
    it drew in the window, not the window (which ``tls status`` shows, and which tells a window
    the CA moved from the same one fetched again: :func:`drawn_window`), and the Retry-After as
    a naive local time.
    """
    network = _network(None, ca_bundle)
    directory = client.ClientV2.get_directory(tls.acme_directory, network)
    try:
        base = str(directory["renewalInfo"])
    except KeyError:
        return None
    url = f"{base.rstrip('/')}/{ari_id}"
    response = network.get(url, content_type="application/json")
    body = response.json()
    window = messages.RenewalInfo.from_json(body).suggested_window
    if window.start is None or window.end is None:
        raise ValueError("the renewal information has no suggestedWindow start and end")
    explanation = body.get("explanationURL") if isinstance(body, dict) else None
    return _FetchedWindow(
        url,
        window.start.astimezone(datetime.UTC),
        window.end.astimezone(datetime.UTC),
        explanation if isinstance(explanation, str) else "",
        retry_after(response.headers.get("Retry-After"), datetime.datetime.now(datetime.UTC)),
    )


#: What fetching renewal information raises when it fails (the CA down, a problem document, a
#: body that is not renewal information).
_RENEWAL_INFO_ERRORS = (
    acme_errors.Error,
    messages.Error,
    requests.RequestException,
    OSError,
    ValueError,
    josepy.errors.Error,
)
#: When to fetch renewal information again after a fetch failed, or without a Retry-After: the
#: library's default (RFC 9773 §4.3.3 leaves it to the client).
RENEWAL_INFO_RETRY = datetime.timedelta(hours=6)


def _register(acme: client.ClientV2, tls: TlsSection) -> None:
    """Blocking: register the client's key with the CA, or find the account it has (RFC 8555
    §7.3.1: the CA names its URL), and log the client in to it."""
    registration = messages.NewRegistration.from_data(
        email=tls.acme_email or None, terms_of_service_agreed=True
    )
    try:
        acme.new_account(registration)
    except acme_errors.ConflictError as exc:
        acme.net.account = messages.RegistrationResource(
            uri=exc.location, body=messages.Registration()
        )


def _registered_url(tls: TlsSection, ca_bundle: str, account: AcmeAccount) -> str:
    """Blocking: register ``account``'s key with the CA (or find the account it has, §7.3.1);
    the account's URL."""
    acme = _client(tls, _account_jwk(account), ca_bundle)
    _register(acme, tls)
    registered = acme.net.account
    return registered.uri if registered is not None else ""


#: RFC 8555 §7.1.6: the account statuses that never become valid again: "deactivated" (by the
#: client, or by the CA, §7.3.6) and "revoked" (by the CA).
ACCOUNT_GONE = (messages.STATUS_DEACTIVATED.name, messages.STATUS_REVOKED.name)
_GONE_NAMED = re.compile(rf"\b({'|'.join(ACCOUNT_GONE)})\b", re.IGNORECASE)


class AccountGone(AcmeError):
    """The CA will never take requests under the account at ``url`` (``""``: its key's
    registration was refused) again: it is ``status`` (:data:`ACCOUNT_GONE`). Raised by an
    order; the attempt replaces the account and orders again."""

    def __init__(self, url: str, status: str) -> None:
        super().__init__(f"the CA says the ACME account {url or '(its key)'} is {status}")
        self.status = status


def refused_account_status(refusal: messages.Error) -> str:
    """The status of :data:`ACCOUNT_GONE` an ``unauthorized`` refusal names as the account's
    (Pebble: "Account has been deactivated"; Boulder: 'Account is not valid, has status
    "deactivated"', and for a registration "An account with the provided public key exists
    but is deactivated"); "" for any other refusal."""
    if refusal.code != "unauthorized":
        return ""
    named = _GONE_NAMED.search(refusal.detail or "")
    return named.group(1).lower() if named is not None else ""


def gone_status(acme: client.ClientV2, url: str, refusal: messages.Error) -> str:
    """Blocking: the account's status when ``refusal`` (of a request under the account at
    ``url``, or with ``url`` empty of its key's registration) is the CA's answer to an account
    it will never take again (RFC 8555 §7.3.6: "the server MUST NOT accept further requests
    authorized by that account's key"); "" for any other refusal (an ``unauthorized`` for a
    name, a CAA record, a policy) and when the account cannot be looked at now.

    The account is looked at rather than the refusal believed: a POST-as-GET of its URL
    (§7.3) answers an account object, whose status is the CA's word, or is refused in turn,
    the refusal then naming the status (:func:`refused_account_status`: a CA refuses a
    deactivated account even that). A registration refused has no URL to look at; its
    refusal names the status the same way.
    """
    if refusal.code != "unauthorized":
        return ""
    if not url:
        return refused_account_status(refusal)
    try:
        response = acme.net.post(url, None, new_nonce_url=acme.directory["newNonce"])
        body = response.json()
    except messages.Error as exc:
        return refused_account_status(exc)
    except (acme_errors.Error, requests.RequestException, ValueError):
        return ""
    status = body.get("status") if isinstance(body, dict) else None
    return status if status in ACCOUNT_GONE else ""


def _new_order(
    acme: client.ClientV2, tls: TlsSection, url: str, csr: bytes
) -> messages.OrderResource:
    """Blocking: log ``acme`` in to the account at ``url`` (when empty, registered now, or
    found by its key) and order the certificate of ``csr``."""
    if not url:
        _register(acme, tls)
        return acme.new_order(csr)
    # RFC 8555 §6.2: requests name the account by its URL ("kid"); nothing to register.
    acme.net.account = messages.RegistrationResource(uri=url, body=messages.Registration())
    try:
        return acme.new_order(csr)
    except messages.Error as exc:
        # RFC 8555 §6.7: the CA knows no account at the stored URL (a test CA restarted, a
        # staging CA reset): the same key registered again, never a new key.
        if exc.code != "accountDoesNotExist":
            raise
        acme.net.account = None  # §7.3: a new-account request carries the key, not a URL
        _register(acme, tls)
        return acme.new_order(csr)


def choose_challenge(
    authorization: messages.Authorization,
    account_key: JWKEC,
    preference: tuple[str, ...],
    dns_domains: Mapping[str, str],
) -> _Challenge:
    """The first challenge type of ``preference`` the CA offers and we can answer for this
    authorization, with its answer; :class:`AcmeError` naming why when there is none."""
    name = authorization.identifier.value
    shown = f"*.{name}" if authorization.wildcard else name
    offered = {getattr(body.chall, "typ", ""): body for body in authorization.challenges}
    reasons = []
    for kind in preference:
        body = offered.get(kind)
        if body is None:
            reasons.append(f"the CA offers no {kind}")
        elif kind == HTTP01 and authorization.wildcard:
            reasons.append("http-01 cannot prove a wildcard (RFC 8555 §8.3)")
        elif kind == TLS_ALPN01 and authorization.wildcard:
            reasons.append("tls-alpn-01 cannot prove a wildcard (CAs take dns-01 only)")
        elif kind == DNS01 and name not in dns_domains:
            reasons.append(
                f"dns-01 needs our DNS server to serve {dns01_record_name(name)} "
                "(no hosted domain's zone holds it) or tls.acme_dns_hook"
            )
        else:
            response, _ = body.response_and_validation(account_key)
            key_authorization = response.key_authorization
            record = None
            if kind == DNS01:
                # RFC 8555 §8.4: the TXT record under _acme-challenge.<identifier>.
                record = ChallengeRecord(
                    dns_domains[name], dns01_record_name(name), dns01_txt_value(key_authorization)
                )
            token = body.chall.encode("token")
            return _Challenge(body, response, kind, name, token, key_authorization, record)
    raise AcmeError(f"no challenge for {shown} can be answered: {'; '.join(reasons)}")


def _place_order(
    tls: TlsSection,
    ca_bundle: str,
    names: tuple[str, ...],
    account: AcmeAccount,
    dns_domains: Mapping[str, str],
    key_pem: bytes,
) -> _Order:
    """Blocking: log in, order a certificate for ``names`` and the private key ``key_pem``,
    choose a challenge per pending authorization and prepare its answer (``dns_domains``:
    identifier → the hosted domain whose zone our DNS server serves its record in, for those
    dns-01 can answer)."""
    account_key = _account_jwk(account)
    acme = _client(tls, account_key, ca_bundle)
    csr = crypto_util.make_csr(key_pem, list(names))
    try:
        order = _new_order(acme, tls, account.url, csr)
    except messages.Error as exc:
        if status := gone_status(acme, account.url, exc):
            raise AccountGone(account.url, status) from exc
        raise
    prepared: list[_Challenge] = []
    for authorization in order.authorizations:
        if authorization.body.status == messages.STATUS_VALID:
            continue  # RFC 8555 §7.1.3: the CA may reuse an authorization already proven
        prepared.append(
            choose_challenge(authorization.body, account_key, tls.acme_challenges, dns_domains)
        )
    registered = acme.net.account
    account_url = registered.uri if registered is not None else ""
    return _Order(acme, order, tuple(prepared), key_pem, account_url)


#: Seconds between two looks at the authorizations the CA is still validating.
POLL_INTERVAL = 1.0


def _unsettled(authorization: messages.AuthorizationResource) -> bool:
    return authorization.body.status in (messages.STATUS_PENDING, messages.STATUS_PROCESSING)


def _finish_order(placed: _Order, timeout: float, stop: threading.Event) -> bytes:
    """Blocking: answer the challenges, wait for validation and issuance; the PEM chain.

    Every authorization still pending is looked at in each round, and the first one the CA
    calls invalid ends the wait: one authorization's validation may take the CA long (a
    name whose server holds the connection open; Pebble gives up after 15 s, a real CA's
    validation from several places may take longer, one never processed lasts to ``timeout``)
    while another's already failed, and a failure is reported as soon as the CA knows it.
    The wait is polled here rather than by the library, so that ``stop`` (set when the server
    shuts down) ends it within :data:`POLL_INTERVAL`: the pool's threads are waited for at
    shutdown.
    """
    acme = placed.client
    for challenge in placed.challenges:
        acme.answer_challenge(challenge.body, challenge.response)
    deadline = time.monotonic() + timeout
    authorizations = list(placed.order.authorizations)
    while True:
        # RFC 8555 §7.1.6: pending until the CA has validated, then valid or invalid (or
        # deactivated, expired, revoked: none of them will become valid either).
        waiting = [i for i, a in enumerate(authorizations) if _unsettled(a)]
        failed = [
            a
            for a in authorizations
            if not _unsettled(a) and a.body.status != messages.STATUS_VALID
        ]
        if failed:
            raise acme_errors.ValidationError(failed)
        if not waiting:
            break
        if stop.wait(POLL_INTERVAL):
            raise AcmeError("stopped while the CA was validating")
        if time.monotonic() > deadline:
            raise acme_errors.TimeoutError()
        for i in waiting:
            authorizations[i], _ = acme.poll(authorizations[i])
    # The library compares with naive local time.
    left = max(1.0, deadline - time.monotonic())
    order = acme.finalize_order(
        placed.order.update(authorizations=authorizations),
        datetime.datetime.now() + datetime.timedelta(seconds=left),
    )
    if not order.fullchain_pem:
        raise AcmeError("the CA issued no certificate")
    return order.fullchain_pem.encode()


def _failure_reason(exc: Exception) -> str:
    """The most specific reason an exception of the ACME exchange carries."""
    if isinstance(exc, acme_errors.ValidationError):
        details = [
            f"{authz.body.identifier.value}: {challenge.error.detail or challenge.error.typ}"
            for authz in exc.failed_authzrs
            for challenge in authz.body.challenges
            if challenge.error is not None
        ]
        return "challenge failed: " + "; ".join(details)
    if isinstance(exc, acme_errors.TimeoutError):
        return "the CA did not validate and issue in time"
    if isinstance(exc, messages.Error):
        return f"the CA refused: {exc.detail or exc.typ}"
    return f"{type(exc).__name__}: {exc}"


#: What the ACME exchange raises for a failed attempt (the I/O boundary, STYLE §6).
_ATTEMPT_ERRORS = (
    acme_errors.Error,
    messages.Error,
    requests.RequestException,
    OSError,
    ValueError,
    StorageError,  # publishing dns-01 records
)


def _renewal_info_failure(exc: Exception) -> str:
    """Why renewal information was not fetched: an HTTP error without a problem document (the
    library raises ``ClientError`` holding the response) named by its status and URL."""
    response = exc.args[0] if isinstance(exc, acme_errors.ClientError) and exc.args else None
    if isinstance(response, requests.Response):
        return f"HTTP {response.status_code} {response.reason} from {response.url}"
    return _failure_reason(exc)


def _utc_text(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds")


def _serial(stored: AcmeCertificate) -> int | None:
    """The stored certificate's serial; None if its chain cannot be read (``_adopt`` then
    logs why it is not used)."""
    try:
        return certificate_facts(stored.chain_pem).serial
    except ValueError:
        return None


class CertificateManager:
    """Holds the server's ACME certificate: installs the stored one at start, obtains and
    renews it, and reloads the shared TLS context when a new one arrives. Orders under the
    store's account for the CA directory, which it replaces when the CA deactivated it
    (RFC 8555 §7.3.6; the module's notes)."""

    def __init__(
        self, config: Config, context: ssl.SSLContext, responses: MutableMapping[str, str]
    ) -> None:
        self._tls = config.tls
        self._ca_bundle = (
            str(config.resolve_path(config.tls.acme_ca_bundle)) if config.tls.acme_ca_bundle else ""
        )
        self._names = acme_names(
            config.tls.acme_names,
            config.server.hostname,
            wildcards=DNS01 in config.tls.acme_challenges,
        )
        self._context = context
        self._responses = responses
        #: The tls-alpn-01 answers the https listener presents (None: not wanted).
        self.tls_alpn = TlsAlpnAnswers() if TLS_ALPN01 in config.tls.acme_challenges else None
        #: Where dns-01 answers are published: set by ``pillarbox serve`` once the
        #: authoritative DNS server runs (None: dns-01 cannot be answered).
        self.dns_records: AcmeChallengeRecords | None = None
        #: Where http-01 and tls-alpn-01 answers are shared with the other nodes: set by
        #: ``pillarbox serve`` once the store is open (None: this node alone answers).
        self.store: Store | None = None
        self.files = AcmeFiles.of(config)
        #: One certificate for every node of the store (``acme_shared_certificate`` with
        #: PostgreSQL): renewed under the store's lease, kept there, adopted from there.
        self.shared = config.tls.acme_shared_certificate and is_postgresql(config.store.url)
        self._scope = certificate_scope(config.tls.acme_directory, self._names)
        #: This node, as the lease names it (the host name alone may be every node's).
        self._holder = f"{config.server.hostname} {socket.gethostname()} pid {os.getpid()}"
        #: The lease as this node last found it held by another (logged once per change).
        self._lease_seen: AcmeLease | None = None
        #: The certificate the context presents, when it is an ACME one.
        self.facts: CertificateFacts | None = None
        #: The CA directory :attr:`facts` came from ("" when not known).
        self._issuer_directory = ""
        #: The CA's renewal window (RFC 9773) last fetched; it holds only for the certificate
        #: whose identifier it carries (:func:`renewal_time` checks).
        self._window: RenewalWindow | None = None
        #: The certificate (ARI identifier) renewal information was last fetched for, and when
        #: to fetch it again.
        self._ari_for = ""
        self._ari_next = datetime.datetime.now(datetime.UTC)
        #: Whether the CA's directory had ``renewalInfo`` at the last fetch (None: not known).
        self._ari_offered: bool | None = None
        self._failures = 0
        self._log = Log("acme")

    def install_stored(self) -> None:
        """Present the stored certificate if it is usable (valid for the names, not expired,
        key matching); otherwise the context keeps its certificate until one is obtained."""
        facts = self.files.facts()
        if facts is None:
            return
        now = datetime.datetime.now(datetime.UTC)
        if facts.not_after <= now or renewal_reason(facts, self._names, now, 0):
            self._log.info("stored certificate not used", not_after=_utc_text(facts.not_after))
            return
        try:
            load_pair(self._context, self.files.cert, self.files.key)
        except (OSError, ssl.SSLError) as exc:
            self._log.warning("stored certificate not loaded", error=str(exc))
            return
        self.facts = facts
        with contextlib.suppress(OSError):
            self._issuer_directory = self.files.issuer_directory.read_text().strip()
        self._log.info("certificate installed", serial=f"{facts.serial:x}")

    async def obtain(self, reason: str) -> CertificateFacts:
        """One attempt: order, publish the challenge answers, finish, store, reload."""
        names = self._names
        log = self._log.bind(names=",".join(names))
        log.info("requesting certificate", reason=reason, ca=self._tls.acme_directory)
        dns_domains = await self._dns_domains()
        account = await self.account()
        key_pem = await self._certificate_key()
        try:
            placed = await run_blocking(
                _place_order, self._tls, self._ca_bundle, names, account, dns_domains, key_pem
            )
        except AccountGone as gone:
            account = await self._replace_account(account, gone)
            placed = await run_blocking(
                _place_order, self._tls, self._ca_bundle, names, account, dns_domains, key_pem
            )
        if placed.account_url and placed.account_url != account.url:
            await self._note_account_url(account, placed.account_url)
        stop = threading.Event()
        published: list[ChallengeRecord] = []
        shared: list[AcmeAnswer] = []
        try:
            for challenge in placed.challenges:
                if challenge.kind == HTTP01:
                    self._responses[challenge.token] = challenge.key_authorization
                elif challenge.kind == TLS_ALPN01:
                    await self._present(challenge)
            await self._share(placed.challenges, shared)
            await self._publish(placed.records, published)
            chain = await run_blocking(_finish_order, placed, self._tls.acme_timeout, stop)
        except asyncio.CancelledError:
            stop.set()
            raise
        finally:
            # Out of the store first: a node's refresh skips the names it answers itself.
            await self._unshare(shared)
            for challenge in placed.challenges:
                self._responses.pop(challenge.token, None)
                if self.tls_alpn is not None:
                    self.tls_alpn.remove(challenge.name)
            await self._withdraw(published)
        facts = certificate_facts(chain)
        await run_blocking(self._store, placed.key_pem, chain)
        try:
            load_pair(self._context, self.files.cert, self.files.key)
        except ssl.SSLError as exc:
            raise AcmeError(f"the new certificate does not load: {exc}") from exc
        self.facts = facts
        self._issuer_directory = self._tls.acme_directory
        log.info(
            "certificate installed",
            serial=f"{facts.serial:x}",
            not_after=_utc_text(facts.not_after),
        )
        if self.shared:
            await self._put(placed.key_pem, chain, facts)
        return facts

    async def _certificate_key(self) -> bytes:
        """The private key to order the next certificate for. With ``acme_reuse_key``, the one
        of the certificate held now (the store's when shared, else this node's key file), so
        the SubjectPublicKeyInfo and a DANE-EE(3) SPKI(1) record of it stay valid; or a key
        file that is not the certificate's, put there by hand as the next key (RFC 7671 §8.1:
        the key changes only once the next one's record is published; docs/dane.md). Without
        key reuse, or when there is no key yet, a new one."""
        if self._tls.acme_reuse_key:
            held, by_hand = await run_blocking(self._held_key)
            if self.shared and not by_hand:
                assert self.store is not None  # shared only once serve has set it
                stored = await self.store.acme_certificate(self._scope)
                if stored is not None:
                    return stored.key_pem
            if held is not None:
                return held
        return await run_blocking(_new_key_pem)

    def _held_key(self) -> tuple[bytes | None, bool]:
        """Blocking: this node's key file (None: none usable), and whether it was put there by
        hand: a key that is not the one of the certificate beside it."""
        key_pem = _file_key(self.files.key)
        if key_pem is None:
            return None, False
        try:
            certificate = x509.load_pem_x509_certificate(self.files.cert.read_bytes())
        except (OSError, ValueError):
            return key_pem, False
        key = serialization.load_pem_private_key(key_pem, password=None)
        return key_pem, key.public_key() != certificate.public_key()

    async def account(self) -> AcmeAccount:
        """The account to order under: the store's for the CA directory. At the first attempt
        (none stored) this node's ``account.key`` of an earlier version, if it has one, else a
        new key, goes to the store unless another node's went first; either way the one the
        store holds is used, and the file is renamed (:meth:`_retire_key_file`)."""
        assert self.store is not None  # serve sets it before the renewal task starts
        directory = self._tls.acme_directory
        account = await self.store.acme_account(directory)
        if account is None:
            from_file = await run_blocking(_file_key, self.files.account_key)
            pem = from_file if from_file is not None else await run_blocking(_new_key_pem)
            account = await self.store.add_acme_account(AcmeAccount(directory, pem, ""))
            if account.key_pem != pem:
                self._log.info("ACME account key of another node used", ca=directory)
            elif from_file is not None:
                self._log.info(
                    "ACME account key taken into the store",
                    path=str(self.files.account_key),
                    ca=directory,
                )
            else:
                self._log.info("ACME account key made and stored", ca=directory)
        await self._retire_key_file()
        return account

    async def _replace_account(self, old: AcmeAccount, gone: AccountGone) -> AcmeAccount:
        """Put a new account in place of ``old``, which the CA deactivated (RFC 8555 §7.3.6:
        never to be used again): a new key in the store unless another node replaced ``old``
        first (then its key is used, and registering it finds its account, §7.3.1: one new
        account for the cluster), registered (§7.3) and its URL stored. The registration's
        failure fails the attempt; the next one registers the stored key as any new one."""
        assert self.store is not None  # as in account
        pem = await run_blocking(_new_key_pem)
        new = AcmeAccount(old.directory, pem, "")
        account = await self.store.replace_acme_account(old.key_pem, new)
        url = account.url or await run_blocking(
            _registered_url, self._tls, self._ca_bundle, account
        )
        self._log.warning(
            "ACME account replaced: the CA no longer takes the old one",
            old_url=old.url or "(its URL never stored)",
            new_url=url,
            status=gone.status,
            by="this node" if account.key_pem == pem else "another node",
            ca=old.directory,
        )
        if url != account.url:
            await self._note_account_url(account, url)
        return replace(account, url=url)

    async def _retire_key_file(self) -> None:
        """Rename an earlier version's ``account.key`` to ``account.key.old`` once the store
        holds the account: never read again (another CA directory gets an account of its
        own), kept for the operator (the key of an account the CA still has; when another
        node's key was stored first, of one the cluster no longer uses)."""
        try:
            await run_blocking(self.files.account_key.rename, self.files.old_account_key)
        except FileNotFoundError:
            return
        except OSError as exc:
            self._log.warning("account.key not renamed", error=str(exc))
            return
        self._log.info(
            "account.key no longer used (the account is in the store)",
            path=str(self.files.old_account_key),
        )

    async def _note_account_url(self, account: AcmeAccount, url: str) -> None:
        """Store the account's URL the CA named; one that cannot be stored now is logged (the
        next attempt finds the account again by its key, RFC 8555 §7.3.1)."""
        assert self.store is not None  # as in account
        try:
            await self.store.set_acme_account_url(account.directory, account.key_pem, url)
        except StorageError as exc:
            self._log.warning("ACME account URL not stored", url=url, error=str(exc))
            return
        self._log.info("ACME account URL stored", url=url, ca=account.directory)

    async def _present(self, challenge: _Challenge) -> None:
        """Make the https listener answer ``challenge`` (tls-alpn-01)."""
        assert self.tls_alpn is not None  # chosen only when wanted
        context = await run_blocking(
            validation_context, challenge.name, challenge.key_authorization
        )
        self.tls_alpn.add(challenge.name, context)

    async def _share(self, chosen: tuple[_Challenge, ...], shared: list[AcmeAnswer]) -> None:
        """Put the http-01 and tls-alpn-01 answers in the store for the other nodes, each added
        to ``shared`` once written; return only once every node sees them (its tls-alpn-01
        copy refreshed, its memory of "no http-01 answer pending" lapsed)."""
        if self.store is None:
            return
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
            seconds=self._tls.acme_timeout + EXPIRY_MARGIN
        )
        for challenge in chosen:
            if challenge.kind == HTTP01:
                key = challenge.token
            elif challenge.kind == TLS_ALPN01:
                key = challenge.name.lower()
            else:
                continue
            answer = AcmeAnswer(challenge.kind, key, challenge.key_authorization, expires)
            try:
                await self.store.add_acme_answer(answer, self._tls.acme_shared_answers_max)
            except AlreadyExists:
                raise AcmeError(
                    f"another node's {challenge.kind} attempt for {challenge.name} is pending"
                ) from None
            except TooManyEntries as exc:
                raise AcmeError(f"{challenge.kind} answer for {challenge.name}: {exc}") from None
            shared.append(answer)
        if shared:
            # One lag, and one more for a read of the store just before the write: every
            # node's tls-alpn-01 copy has it, and none still believes no http-01 is pending.
            await asyncio.sleep(2 * ACME_ANSWER_LAG)

    async def _unshare(self, shared: list[AcmeAnswer]) -> None:
        """Remove an attempt's answers from the store; one that cannot be removed now is logged
        (it lapses at its expiry) and does not fail the attempt."""
        if self.store is None or not shared:
            return
        store = self.store

        async def remove_all() -> None:
            for answer in shared:
                await store.remove_acme_answer(answer.kind, answer.key, answer.value)

        try:
            # Shielded: a stop arriving meanwhile does not cut the removal short.
            await asyncio.shield(remove_all())
        except StorageError as exc:
            self._log.warning("shared answers left to expire", error=str(exc))

    async def _dns_domains(self) -> dict[str, str]:
        """Identifier → where dns-01 can publish its record: the hosted domain whose zone our
        DNS server holds it in, else "" for the hook (``acme_dns_hook``); identifiers neither
        can serve are left out (none at all when dns-01 is not wanted)."""
        if DNS01 not in self._tls.acme_challenges:
            return {}
        found: dict[str, str] = {}
        for name in self._names:
            identifier = acme_identifier(name)
            domain = None
            if self.dns_records is not None:
                domain = await self.dns_records.hosted_domain_of(dns01_record_name(identifier))
            if domain is not None:
                found[identifier] = domain
            elif self._tls.acme_dns_hook:
                found[identifier] = EXTERNAL_ZONE
        return found

    async def _publish(
        self, records: tuple[ChallengeRecord, ...], published: list[ChallengeRecord]
    ) -> None:
        """Publish the dns-01 records (ours through our DNS server, others by the hook), each
        added to ``published`` as it goes out; return once all are answerable (RFC 8555 §8.4)."""
        if not records:
            return
        ours = tuple(r for r in records if r.domain != EXTERNAL_ZONE)
        self._log.info(
            "publishing dns-01 records",
            names=",".join(r.name for r in records),
            records=len(records),
            by_hook=len(records) - len(ours),
        )
        for record in records:
            if record.domain == EXTERNAL_ZONE:
                published.append(record)  # a hook that fails halfway may have published it
                try:
                    await run_hook(self._tls.acme_dns_hook, record, self._tls.acme_dns_hook_timeout)
                except HookFailed as exc:
                    raise AcmeError(f"dns hook for {record.name}: {exc}") from None
        if ours:
            assert self.dns_records is not None  # no hosted domain was found otherwise
            published.extend(ours)
            try:
                await self.dns_records.publish_and_wait(ours, self._tls.acme_timeout)
            except NotAnswerable as exc:
                raise AcmeError(str(exc)) from None

    async def _withdraw(self, records: list[ChallengeRecord]) -> None:
        """Withdraw an attempt's dns-01 records; one that cannot be removed now is logged (ours
        lapse at their expiry) and does not fail the attempt."""
        ours = tuple(r for r in records if r.domain != EXTERNAL_ZONE)
        if ours and self.dns_records is not None:
            try:
                # Shielded: a stop arriving meanwhile does not cut the removal short.
                await asyncio.shield(self.dns_records.withdraw(ours))
            except StorageError as exc:
                self._log.warning("dns-01 records left to expire", error=str(exc))
        cleanup = self._tls.acme_dns_cleanup_hook
        for record in records:
            if record.domain != EXTERNAL_ZONE or not cleanup:
                continue
            try:
                await run_hook(cleanup, record, self._tls.acme_dns_hook_timeout)
            except HookFailed as exc:
                self._log.warning("dns cleanup hook failed", record=record.name, error=str(exc))

    def _store(self, key_pem: bytes, chain: bytes) -> None:
        write_atomically(self.files.key, key_pem, 0o600)
        write_atomically(self.files.cert, chain)
        write_atomically(self.files.issuer_directory, self._tls.acme_directory.encode())

    async def _put(self, key_pem: bytes, chain: bytes, facts: CertificateFacts) -> None:
        """Share this node's certificate through the store; one that cannot be written now is
        logged, and the next :meth:`sync` offers it again (the certificate is this node's
        meanwhile, and the attempt did obtain it)."""
        assert self.store is not None  # shared only once serve has set it
        certificate = AcmeCertificate(self._scope, chain, key_pem, facts.not_after)
        try:
            stored = await self.store.put_acme_certificate(certificate)
        except StorageError as exc:
            self._log.warning("certificate not shared", error=str(exc))
            return
        if stored:
            self._log.info("certificate shared", serial=f"{facts.serial:x}")

    async def sync(self) -> None:
        """Shared mode: present the store's certificate when it expires later than this node's
        (another node renewed it), or share this node's when it is the later one (a node
        upgraded from certificates of its own, or a share that failed). One small read when
        both are the same.

        Two certificates that expire in the same second (nodes that ordered their own at
        once) are settled by the store: it keeps the one stored first, so the other node
        takes that one up rather than both keeping their own for good.
        """
        assert self.store is not None  # shared only once serve has set it
        stored = await self.store.acme_certificate(self._scope)
        mine = self.facts
        if stored is not None and (
            mine is None
            or stored.not_after > mine.not_after
            or (stored.not_after == mine.not_after and _serial(stored) != mine.serial)
        ):
            await self._adopt(stored)
            return
        if mine is None or self._issuer_directory != self._tls.acme_directory:
            return
        now = datetime.datetime.now(datetime.UTC)
        if renewal_reason(mine, self._names, now, 0):
            return  # expired, or not for the names: not worth sharing
        if stored is None or mine.not_after > stored.not_after:
            try:
                key_pem, chain = await run_blocking(self._read_pair)
            except OSError as exc:
                self._log.warning("certificate not shared", error=str(exc))
                return
            if certificate_facts(chain).serial == mine.serial:  # not replaced meanwhile
                await self._put(key_pem, chain, mine)

    def _read_pair(self) -> tuple[bytes, bytes]:
        return self.files.key.read_bytes(), self.files.cert.read_bytes()

    async def _adopt(self, stored: AcmeCertificate) -> None:
        """Present the store's certificate (another node obtained it): written to this node's
        files (its copy for the next start, and what ``ssl`` loads from), then swapped into
        the shared context."""
        try:
            facts = certificate_facts(stored.chain_pem)
        except ValueError as exc:
            self._log.warning("stored certificate not used", error=str(exc))
            return
        now = datetime.datetime.now(datetime.UTC)
        if reason := renewal_reason(facts, self._names, now, 0):
            self._log.warning("stored certificate not used", reason=reason)
            return
        await run_blocking(self._store, stored.key_pem, stored.chain_pem)
        try:
            load_pair(self._context, self.files.cert, self.files.key)
        except ssl.SSLError as exc:
            self._log.warning("stored certificate not loaded", error=str(exc))
            return
        self.facts = facts
        self._issuer_directory = self._tls.acme_directory
        self._log.info(
            "certificate installed from the store",
            serial=f"{facts.serial:x}",
            not_after=_utc_text(facts.not_after),
        )

    async def attempt(self, reason: str) -> bool:
        """:meth:`obtain`, its failure logged and counted; the outcome goes to status.json.

        Any exception counts as a failed attempt, retried with back-off: one the library was
        not known to raise (logged with its traceback) must not end the renewal task for the
        rest of the server's life.
        """
        started = datetime.datetime.now(datetime.UTC)
        status: dict[str, Any] = {"reason": reason, "started": _utc_text(started)}
        try:
            facts = await self.obtain(reason)
        except Exception as exc:
            self._failures += 1
            error = str(exc) if isinstance(exc, AcmeError) else _failure_reason(exc)
            fields = {
                "reason": error,
                "failures": self._failures,
                "retry_in": f"{self._retry_delay():.0f}s",
            }
            if isinstance(exc, (AcmeError, *_ATTEMPT_ERRORS)):
                self._log.warning("certificate not obtained", **fields)
            else:
                self._log.exception("certificate not obtained", **fields)
            status.update(result="failed", error=error, failures=self._failures)
            ok = False
        else:
            self._failures = 0
            status.update(result="ok", serial=f"{facts.serial:x}")
            ok = True
        await self._record(status)
        return ok

    async def _record(self, status: dict[str, Any]) -> None:
        """Write an attempt's outcome to status.json (``pillarbox tls status`` and ``renew``)."""
        status["finished"] = _utc_text(datetime.datetime.now(datetime.UTC))
        try:
            await run_blocking(
                write_atomically, self.files.status, json.dumps(status, indent=2).encode()
            )
        except OSError as exc:
            self._log.warning("attempt not recorded", path=str(self.files.status), error=str(exc))

    async def _check_shared(self, *, requested: bool) -> None:
        """One look in shared mode: the store's certificate taken up if newer, then a renewal
        if one is still needed (and this node gets the lease). A store that cannot be read
        now is logged and looked at again at the next check."""
        try:
            await self.sync()
            await self._check_renewal_info()
            reason = REQUESTED if requested else self._renewal_reason()
            if reason:
                await self.attempt_shared(reason, requested=requested)
        except StorageError as exc:
            self._log.warning("shared certificate not checked", error=str(exc))

    async def attempt_shared(self, reason: str, *, requested: bool) -> None:
        """Shared mode: :meth:`attempt` if this node gets the store's lease (a renewal asked
        for by hand overrides a back-off, not another node's attempt under way), then the
        lease given back (a failure leaving the cluster's back-off in it); otherwise another
        node is renewing, or every node waits out the back-off, and this one looks again at
        its next :meth:`sync`."""
        assert self.store is not None  # shared only once serve has set it
        store, scope, holder = self.store, self._scope, self._holder
        now = datetime.datetime.now(datetime.UTC)
        until = now + datetime.timedelta(seconds=self._tls.acme_lease)
        lease = await store.claim_acme_lease(scope, holder, now, until, force=requested)
        if lease.holder != holder:
            if lease != self._lease_seen:
                self._log.info(
                    "renewal left to another node" if lease.holder else "renewal backing off",
                    holder=lease.holder,
                    until=_utc_text(lease.expires),
                    failures=lease.failures,
                )
            self._lease_seen = lease
            if requested:
                await self._record(
                    {
                        "reason": reason,
                        "started": _utc_text(now),
                        "result": "failed",
                        "error": f"another node is renewing ({lease.holder}) until "
                        f"{_utc_text(lease.expires)}",
                    }
                )
            return
        self._lease_seen = None
        self._failures = lease.failures
        ok = False
        try:
            # Another node may have stored a certificate since this node last looked.
            await self.sync()
            if requested or self._renewal_reason():
                ok = await self.attempt(reason)
            else:
                ok = True
        finally:
            retry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
                seconds=self._retry_delay()
            )
            try:
                # Shielded: a stop arriving meanwhile does not leave the lease to lapse.
                await asyncio.shield(
                    store.end_acme_lease(scope, holder, 0 if ok else self._failures, retry)
                )
            except StorageError as exc:
                self._log.warning("renewal lease left to lapse", error=str(exc))

    def _renewal_reason(self) -> str:
        """Why this node needs a certificate now; "" when the one it presents will do."""
        now = datetime.datetime.now(datetime.UTC)
        reason = renewal_reason(
            self.facts, self._names, now, self._tls.acme_renew_days, self._window
        )
        if not reason and self._issuer_directory != self._tls.acme_directory:
            reason = "issued through another CA directory"
        return reason

    def _retry_delay(self) -> float:
        return retry_delay(self._failures, self._tls.acme_retry, self._tls.acme_check_interval)

    def _next_check(self, now: datetime.datetime) -> float:
        """Seconds to the next look: after a failure, the back-off; else the check interval,
        or less when the certificate falls due or its renewal information is to be fetched
        before it. Shared, at most ``acme_store_poll``: the back-off is the lease's, and
        another node's certificate is looked for."""
        if self.shared:
            return min(self._tls.acme_store_poll, self._due_in(now))
        if self._failures:
            return self._retry_delay()
        return self._due_in(now)

    def _due_in(self, now: datetime.datetime) -> float:
        interval = self._tls.acme_check_interval
        if self.facts is None:
            return interval
        due = renewal_time(self.facts, self._tls.acme_renew_days, self._window)
        fetch = self._renewal_info_due(now)
        if fetch is not None:
            due = min(due, fetch)
        return max(0.0, min(interval, (due - now).total_seconds()))

    def _renewal_info_due(self, now: datetime.datetime) -> datetime.datetime | None:
        """When to fetch the CA's renewal window for the certificate presented (RFC 9773
        §4.3): at once for one not asked about yet (just issued, taken from the store, or at
        start), else when the last fetch said. None when it is not to be fetched: no
        certificate, one without an identifier (not a CA's), an expired one (§4.2: never
        after it expired), one of another CA directory (replaced at once anyway)."""
        facts = self.facts
        if (
            facts is None
            or not facts.ari_id
            or facts.not_after <= now
            or self._issuer_directory != self._tls.acme_directory
        ):
            return None
        return now if self._ari_for != facts.ari_id else self._ari_next

    async def _check_renewal_info(self) -> None:
        """Fetch the CA's renewal window for the certificate presented when it is time
        (:meth:`_renewal_info_due`); the renewal then falls at a moment drawn in it (§4.2).
        A failed fetch is logged and tried again after :data:`RENEWAL_INFO_RETRY`; meanwhile
        the window fetched last for the certificate holds, or without one the lifetime rule
        alone. Only the fetch happens here: with a shared certificate, ordering is still left
        to the holder of the store's lease (:meth:`attempt_shared`)."""
        now = datetime.datetime.now(datetime.UTC)
        due = self._renewal_info_due(now)
        facts = self.facts
        if due is None or now < due or facts is None:
            return
        if self._ari_for != facts.ari_id:
            self._window = None  # another certificate's
        self._ari_for = facts.ari_id
        info: dict[str, Any] = {
            "certificate": facts.ari_id,
            "serial": f"{facts.serial:x}",
            "checked": _utc_text(now),
        }
        try:
            fetched = await run_blocking(
                _fetch_renewal_info, self._tls, self._ca_bundle, facts.ari_id
            )
            window = None
            if fetched is not None:
                # RFC 9773 §4.3.2: ask again after the response's Retry-After, bounded.
                retry = fetched.retry_after or now + RENEWAL_INFO_RETRY
                window = drawn_window(
                    self._window,
                    facts.ari_id,
                    fetched.start,
                    fetched.end,
                    next_fetch=next_renewal_info(now, retry),
                    explanation=fetched.explanation,
                    draw=random.random(),  # §4.2: uniform in the window
                )
        except Exception as exc:
            # Any exception: one the library was not known to raise (logged with its
            # traceback) must not end the renewal task over a fetch that only informs it.
            self._ari_next = now + RENEWAL_INFO_RETRY
            error = _renewal_info_failure(exc)
            fields = {
                "error": error,
                "retry_at": _utc_text(self._ari_next),
                "renewal": "in the window fetched before"
                if self._window is not None
                else "by the lifetime rule",
            }
            if isinstance(exc, _RENEWAL_INFO_ERRORS):
                self._log.warning("renewal information not fetched", **fields)
            else:
                self._log.exception("renewal information not fetched", **fields)
            info.update(error=error)
        else:
            if fetched is None or window is None:
                # Asked again with the next certificate (or at the next start): a CA without
                # renewal information costs one look at its directory per certificate.
                self._ari_next = facts.not_after
                if self._ari_offered is not False:
                    self._log.info(
                        "the CA offers no renewal information (RFC 9773): "
                        "renewal by the lifetime rule",
                        ca=self._tls.acme_directory,
                    )
                self._ari_offered = False
                info.update(offered=False)
            else:
                if window.renew_at != (self._window.renew_at if self._window else None):
                    self._log.info(
                        "renewal window",
                        serial=f"{facts.serial:x}",
                        window=window.shown,
                        renew_at=_utc_text(window.renew_at),
                        explanation=window.explanation or None,
                    )
                self._ari_offered = True
                self._window = window
                self._ari_next = window.next_fetch
                info.update(url=fetched.url)
        await self._record_renewal_info(info)

    async def _record_renewal_info(self, info: dict[str, Any]) -> None:
        """Write the outcome of a fetch, with the window that holds for the certificate and the
        next fetch, to ``renewal-info.json`` (for ``pillarbox tls status``)."""
        if self._window is not None:
            info["window"] = {
                "start": _utc_text(self._window.start),
                "end": _utc_text(self._window.end),
                "renew_at": _utc_text(self._window.renew_at),
                "explanation_url": self._window.explanation or None,
            }
        info["next_check"] = _utc_text(self._ari_next)
        try:
            await run_blocking(
                write_atomically, self.files.renewal_info, json.dumps(info, indent=2).encode()
            )
        except OSError as exc:
            self._log.warning(
                "renewal information not recorded",
                path=str(self.files.renewal_info),
                error=str(exc),
            )

    async def _requested(self) -> bool:
        """Whether ``pillarbox tls renew`` asked for a renewal (the request is consumed)."""
        try:
            await run_blocking(self.files.request.unlink)
        except FileNotFoundError:
            return False
        return True

    async def run(self) -> None:
        """The renewal task of ``pillarbox serve``: a check at start, then at every
        :meth:`_next_check`, and whenever a renewal is requested; shared, each check first
        takes up a newer certificate from the store, and only the lease's holder renews."""
        requested = await self._requested()
        while True:
            if self.shared:
                await self._check_shared(requested=requested)
            else:
                await self._check_renewal_info()
                if reason := REQUESTED if requested else self._renewal_reason():
                    await self.attempt(reason)
            loop = asyncio.get_running_loop()
            wake = loop.time() + self._next_check(datetime.datetime.now(datetime.UTC))
            requested = False
            while not requested and loop.time() < wake:
                await asyncio.sleep(min(REQUEST_POLL, max(0.0, wake - loop.time())))
                requested = await self._requested()


def request_renewal(files: AcmeFiles) -> datetime.datetime:
    """Ask the running server for a renewal (what ``pillarbox tls renew`` does); the time of
    the request, to wait for an attempt started after it."""
    now = datetime.datetime.now(datetime.UTC)
    write_atomically(files.request, _utc_text(now).encode())
    return now
