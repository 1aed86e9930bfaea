"""ACME certificates (RFC 8555) for every TLS listener: obtained with HTTP-01, DNS-01 or
TLS-ALPN-01 (RFC 8737), renewed in the background, swapped into the shared TLS context without
a restart.

Implementation notes:

- **The parts**: this module holds the certificate and the renewal task; the account is
  :mod:`pillarbox.net.acmeaccount`'s, an order's exchange with the CA
  :mod:`pillarbox.net.acmeorder`'s, the challenges and their answers
  :mod:`pillarbox.net.acmechallenge`'s, the CA's renewal window (RFC 9773)
  :mod:`pillarbox.net.renewalinfo`'s, the files :mod:`pillarbox.net.acmefiles`', the
  cluster's one certificate :mod:`pillarbox.net.sharedcertificate`'s; decisions without I/O
  are :mod:`pillarbox.certificates`'.
- **Protocol client**: certbot's ``acme`` package. It is synchronous (``requests``), so its
  calls run on the bounded pool (:func:`pillarbox.blocking.run_blocking`); an attempt is two
  blocking steps (order and challenges; answers, validation and issuance) with the challenge
  answers offered on the event loop between them.
- **One certificate per cluster** (``[tls] acme_shared_certificate`` on a PostgreSQL store):
  the store's lease on renewing it and its copy in the store are
  :mod:`pillarbox.net.sharedcertificate`'s; each check of the renewal task first takes up the
  store's certificate if newer, and only the lease's holder orders. Without sharing (or with
  SQLite) every node holds its own certificate (``data_dir``) and runs its own attempts.
- **The certificate's key**: new at every order, unless ``[tls] acme_reuse_key``: then the
  key of the certificate held now (the store's when shared, else the node's ``key.pem``), so
  a DANE ``3 1 1`` record stays valid; a ``key.pem`` that is not its certificate's was put
  there by hand as the next key of a rollover, and wins (:meth:`_certificate_key`).
- **Files** under ``data_dir/tls/acme/`` (:class:`~pillarbox.net.acmefiles.AcmeFiles`):
  ``key.pem`` (mode 0600), ``cert.pem`` (leaf and chain), ``cert.directory`` (the CA
  directory it came from: a certificate from another directory, say staging's, is replaced at
  once), ``status.json`` (the last attempt, for ``pillarbox tls status``), ``renew.request`` (a
  renewal asked for by ``pillarbox tls renew``). Each is written to a temporary file in the
  same directory, synced and renamed over the old one. The key goes first: a crash between
  the two leaves a pair that does not match, which :meth:`CertificateManager.install_stored`
  refuses, so the next attempt replaces both. Shared, the files are this node's copy of the
  store's certificate, what it presents from its start until the store answers.
- **Hot reload**: ``SSLContext.load_cert_chain`` on the context every listener shares (implicit
  TLS and STARTTLS alike), on the loop's thread: connections accepted afterwards present the
  new certificate, open ones keep theirs. Every certificate here (self-signed and ACME) has a
  P-256 key, so a new one replaces the old in OpenSSL's one slot per key type.
- **Renewal timing** (:func:`~pillarbox.certificates.renewal_time`): the lifetime rule
  (``acme_renew_days``, at most a third of the lifetime, half of a short-lived one's), or the
  CA's renewal window (RFC 9773) for the certificate presented, fetched by
  :class:`~pillarbox.net.renewalinfo.RenewalInfoFetcher`. A fetch only informs the decision;
  ordering is still :meth:`CertificateManager._renewal_reason`'s, and shared, the lease
  holder's. A renewal's order names the certificate it replaces (RFC 9773 §5,
  :meth:`CertificateManager._replaced`); refused for it, it is placed again without.
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
import functools
import json
import ssl
import threading
from collections.abc import MutableMapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pillarbox.atomicfile import write_atomically
from pillarbox.blocking import run_blocking
from pillarbox.certificates import (
    CertificateFacts,
    acme_names,
    certificate_facts,
    renewal_reason,
    renewal_time,
    retry_delay,
)
from pillarbox.config import Config
from pillarbox.dns.acmerecords import AcmeChallengeRecords
from pillarbox.errors import StorageError
from pillarbox.net.acmeaccount import AccountGone, AcmeAccounts
from pillarbox.net.acmechallenge import DNS01, TLS_ALPN01, ChallengeAnswers
from pillarbox.net.acmeclient import CA_ERRORS, AcmeError, failure_reason
from pillarbox.net.acmefiles import AcmeFiles, utc_text
from pillarbox.net.acmekeys import file_key, new_key_pem
from pillarbox.net.acmeorder import ReplacementRefused, finish_order, place_order
from pillarbox.net.renewalinfo import RenewalInfoFetcher
from pillarbox.net.sharedcertificate import SharedCertificate
from pillarbox.net.tls import load_pair
from pillarbox.net.tlsalpn import TlsAlpnAnswers
from pillarbox.observability.log import Log
from pillarbox.store.interface import Store
from pillarbox.store.open import is_postgresql
from pillarbox.store.types import AcmeAccount

#: How often the renewal task looks for a ``renew.request`` left by ``pillarbox tls renew``.
REQUEST_POLL = 2.0
#: The reason of an attempt ``pillarbox tls renew`` asked for.
REQUESTED = "renewal requested (pillarbox tls renew)"


#: What the ACME exchange raises for a failed attempt (the I/O boundary, STYLE §6): the CA's,
#: and the store's in publishing dns-01 records.
_ATTEMPT_ERRORS = (*CA_ERRORS, StorageError)


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
        #: The certificate the context presents, when it is an ACME one.
        self.facts: CertificateFacts | None = None
        #: The CA directory :attr:`facts` came from ("" when not known).
        self._issuer_directory = ""
        #: Failed attempts in a row (shared: the lease's count, whichever node made them).
        self.failures = 0
        self._log = Log("acme")
        #: The cluster's certificate in the store (:attr:`shared`).
        self.cluster = SharedCertificate(self, config, self._names, self._log)
        #: The CA's renewal window (RFC 9773) for :attr:`facts`' certificate.
        self._renewal_info = RenewalInfoFetcher(self._tls, self._ca_bundle, self.files, self._log)

    def install_stored(self) -> None:
        """Present the stored certificate if it is usable (valid for the names, not expired,
        key matching); otherwise the context keeps its certificate until one is obtained."""
        facts = self.files.facts()
        if facts is None:
            return
        now = datetime.datetime.now(datetime.UTC)
        if facts.not_after <= now or renewal_reason(facts, self._names, now, 0):
            self._log.info("stored certificate not used", not_after=utc_text(facts.not_after))
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
        """One attempt: order, offer the challenge answers, finish, store, reload. An account
        the CA no longer takes, found at the order or while it is under way, is replaced and
        the order placed again, once (RFC 8555 §7.3.6; :mod:`pillarbox.net.acmeaccount`)."""
        log = self._log.bind(names=",".join(self._names))
        log.info("requesting certificate", reason=reason, ca=self._tls.acme_directory)
        answers = ChallengeAnswers(
            self._tls, self._responses, self.tls_alpn, self.dns_records, self.store, self._log
        )
        dns_domains = await answers.dns_domains(self._names)
        accounts = self._accounts()
        account = await accounts.current()
        key_pem = await self._certificate_key()
        try:
            chain = await self._order(answers, accounts, account, dns_domains, key_pem)
        except AccountGone as gone:
            account = await accounts.replace(account, gone)
            chain = await self._order(answers, accounts, account, dns_domains, key_pem)
        facts = certificate_facts(chain)
        try:
            await self.install(key_pem, chain, facts)
        except ssl.SSLError as exc:
            raise AcmeError(f"the new certificate does not load: {exc}") from exc
        log.info(
            "certificate installed",
            serial=f"{facts.serial:x}",
            not_after=utc_text(facts.not_after),
        )
        if self.shared:
            await self.cluster.put(key_pem, chain, facts)
        return facts

    async def install(self, key_pem: bytes, chain: bytes, facts: CertificateFacts) -> None:
        """Present ``chain`` (whose leaf's facts are ``facts``) and its key, from the configured
        CA directory: written to this node's files (the key first: the module's notes), then
        loaded into the shared context. ``ssl.SSLError`` if it does not load; the context
        then keeps the certificate it had."""
        await run_blocking(self._store, key_pem, chain)
        load_pair(self._context, self.files.cert, self.files.key)
        self.facts = facts
        self._issuer_directory = self._tls.acme_directory

    @property
    def from_current_directory(self) -> bool:
        """Whether the certificate presented came from the configured CA directory."""
        return self._issuer_directory == self._tls.acme_directory

    async def _order(
        self,
        answers: ChallengeAnswers,
        accounts: AcmeAccounts,
        account: AcmeAccount,
        dns_domains: dict[str, str],
        key_pem: bytes,
    ) -> bytes:
        """One order under ``account`` for ``key_pem``: placed, its answers offered while the
        CA validates (withdrawn however it ends), finalized; the PEM chain.
        :class:`AccountGone` when the CA no longer takes the account, at any step.

        The order names the certificate it replaces (:meth:`_replaced`); one the CA refuses
        because of that is placed again without it, once, and the reason logged: the
        renewal matters more than the CA's knowing what it replaces (RFC 9773 §5 makes the
        field a SHOULD), and a second refusal has another cause."""
        order = functools.partial(
            place_order, self._tls, self._ca_bundle, self._names, account, dns_domains, key_pem
        )
        replaces = self._replaced()
        try:
            placed = await run_blocking(order, replaces)
        except ReplacementRefused as refused:
            self._log.warning(
                "order refused as a replacement: ordering without replaces",
                replaces=replaces,
                reason=str(refused),
            )
            placed = await run_blocking(order, "")
        if placed.replaces:
            self._log.info("order names the certificate it replaces", replaces=placed.replaces)
        if placed.account_url and placed.account_url != account.url:
            await accounts.note_url(account, placed.account_url)
        stop = threading.Event()
        async with answers.offered(placed.challenges):
            try:
                return await run_blocking(finish_order, placed, self._tls.acme_timeout, stop)
            except asyncio.CancelledError:
                stop.set()
                raise

    def _replaced(self) -> str:
        """The ARI identifier of the certificate a new order replaces (RFC 9773 §5: named
        "if there is a clear predecessor certificate"): the one presented, when it came from
        this CA directory and shares a name with the order. "" for a first certificate, one of
        another CA directory (its identifier names nothing there, and the order is under
        another account), and one for other names altogether (§5: the CA checks that the two
        share at least one identifier, and the new certificate replaces nothing)."""
        facts = self.facts
        if (
            facts is None
            or not self.from_current_directory
            or not set(facts.names) & set(self._names)
        ):
            return ""
        return facts.ari_id

    async def _certificate_key(self) -> bytes:
        """The private key to order the next certificate for. With ``acme_reuse_key``, the one
        of the certificate held now (the store's when shared, else this node's key file), so
        the SubjectPublicKeyInfo and a DANE-EE(3) SPKI(1) record of it stay valid; or a key
        file that is not the certificate's, put there by hand as the next key (RFC 7671 §8.1:
        the key changes only once the next one's record is published; docs/dane.md). Without
        key reuse, or when there is no key yet, a new one."""
        if self._tls.acme_reuse_key:
            held, by_hand = await run_blocking(self._held_key)
            if self.shared and not by_hand and (stored := await self.cluster.stored_key()):
                return stored
            if held is not None:
                return held
        return await run_blocking(new_key_pem)

    def _held_key(self) -> tuple[bytes | None, bool]:
        """Blocking: this node's key file (None: none usable), and whether it was put there by
        hand: a key that is not the one of the certificate beside it."""
        key_pem = file_key(self.files.key)
        if key_pem is None:
            return None, False
        try:
            certificate = x509.load_pem_x509_certificate(self.files.cert.read_bytes())
        except (OSError, ValueError):
            return key_pem, False
        key = serialization.load_pem_private_key(key_pem, password=None)
        return key_pem, key.public_key() != certificate.public_key()

    def _accounts(self) -> AcmeAccounts:
        assert self.store is not None  # serve sets it before the renewal task starts
        return AcmeAccounts(self.store, self._tls, self._ca_bundle, self.files, self._log)

    async def account(self) -> AcmeAccount:
        """The account to order under: the store's for the CA directory
        (:meth:`~pillarbox.net.acmeaccount.AcmeAccounts.current`)."""
        return await self._accounts().current()

    def _store(self, key_pem: bytes, chain: bytes) -> None:
        write_atomically(self.files.key, key_pem, 0o600)
        write_atomically(self.files.cert, chain)
        write_atomically(self.files.issuer_directory, self._tls.acme_directory.encode())

    async def sync(self) -> None:
        """Present the store's certificate if it is the later, or share this node's
        (:meth:`~pillarbox.net.sharedcertificate.SharedCertificate.sync`)."""
        await self.cluster.sync()

    async def attempt(self, reason: str) -> bool:
        """:meth:`obtain`, its failure logged and counted; the outcome goes to status.json.

        Any exception counts as a failed attempt, retried with back-off: one the library was
        not known to raise (logged with its traceback) must not end the renewal task for the
        rest of the server's life.
        """
        started = datetime.datetime.now(datetime.UTC)
        status: dict[str, Any] = {"reason": reason, "started": utc_text(started)}
        try:
            facts = await self.obtain(reason)
        except Exception as exc:
            self.failures += 1
            error = str(exc) if isinstance(exc, AcmeError) else failure_reason(exc)
            fields = {
                "reason": error,
                "failures": self.failures,
                "retry_in": f"{self.retry_delay():.0f}s",
            }
            if isinstance(exc, (AcmeError, *_ATTEMPT_ERRORS)):
                self._log.warning("certificate not obtained", **fields)
            else:
                self._log.exception("certificate not obtained", **fields)
            status.update(result="failed", error=error, failures=self.failures)
            ok = False
        else:
            self.failures = 0
            status.update(result="ok", serial=f"{facts.serial:x}")
            ok = True
        await self.record(status)
        return ok

    async def record(self, status: dict[str, Any]) -> None:
        """Write an attempt's outcome to status.json (``pillarbox tls status`` and ``renew``)."""
        status["finished"] = utc_text(datetime.datetime.now(datetime.UTC))
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
            await self.cluster.sync()
            await self._renewal_info.check(self.facts, self._issuer_directory)
            reason = REQUESTED if requested else self._renewal_reason()
            if reason:
                await self.cluster.attempt(reason, requested=requested, due=self._renewal_reason)
        except StorageError as exc:
            self._log.warning("shared certificate not checked", error=str(exc))

    def _renewal_reason(self) -> str:
        """Why this node needs a certificate now; "" when the one it presents will do."""
        now = datetime.datetime.now(datetime.UTC)
        reason = renewal_reason(
            self.facts, self._names, now, self._tls.acme_renew_days, self._renewal_info.window
        )
        if not reason and not self.from_current_directory:
            reason = "issued through another CA directory"
        return reason

    def retry_delay(self) -> float:
        """Seconds before the next attempt after :attr:`failures` failed ones in a row."""
        return retry_delay(self.failures, self._tls.acme_retry, self._tls.acme_check_interval)

    def _next_check(self, now: datetime.datetime) -> float:
        """Seconds to the next look: after a failure, the back-off; else the check interval,
        or less when the certificate falls due or its renewal information is to be fetched
        before it. Shared, at most ``acme_store_poll``: the back-off is the lease's, and
        another node's certificate is looked for."""
        if self.shared:
            return min(self._tls.acme_store_poll, self._due_in(now))
        if self.failures:
            return self.retry_delay()
        return self._due_in(now)

    def _due_in(self, now: datetime.datetime) -> float:
        interval = self._tls.acme_check_interval
        if self.facts is None:
            return interval
        due = renewal_time(self.facts, self._tls.acme_renew_days, self._renewal_info.window)
        fetch = self._renewal_info.due(self.facts, self._issuer_directory, now)
        if fetch is not None:
            due = min(due, fetch)
        return max(0.0, min(interval, (due - now).total_seconds()))

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
                await self._renewal_info.check(self.facts, self._issuer_directory)
                if reason := REQUESTED if requested else self._renewal_reason():
                    await self.attempt(reason)
            loop = asyncio.get_running_loop()
            wake = loop.time() + self._next_check(datetime.datetime.now(datetime.UTC))
            requested = False
            while not requested and loop.time() < wake:
                await asyncio.sleep(min(REQUEST_POLL, max(0.0, wake - loop.time())))
                requested = await self._requested()
