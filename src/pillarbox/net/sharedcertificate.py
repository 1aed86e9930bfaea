"""One ACME certificate for every node of a PostgreSQL store (``[tls]
acme_shared_certificate``): the store's lease on renewing it, and its copy in the store, which
every node takes up or offers its own to.

Implementation notes:

- **The lease**: a node renews only while it holds the store's lease for the certificate's
  scope (CA directory and names), which lapses at its expiry if the node dies; a failed attempt
  leaves the lease as the cluster's back-off (no holder, the failures in a row, the retry's
  time), so the CA sees one attempt per back-off, not one per node.
- **The copy in the store** (``acme_certificates``): the chain and its key. Every node's
  :meth:`SharedCertificate.sync` takes a later-expiring one up (its files, then the context) or
  offers its own when that is the later one; two that expire in the same second are settled by
  the store, which keeps the one stored first.
- The certificate a node presents, its files and its attempts are its
  :class:`~pillarbox.net.acme.CertificateManager`'s; this module decides with the store which
  certificate that is and when the node may order one. Without sharing (or with SQLite) every
  node holds its own certificate (``data_dir``) and runs its own attempts.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from pillarbox.blocking import run_blocking
from pillarbox.certificates import (
    CertificateFacts,
    certificate_facts,
    certificate_scope,
    renewal_reason,
)
from pillarbox.config import Config
from pillarbox.errors import StorageError
from pillarbox.net.acmefiles import AcmeFiles, utc_text
from pillarbox.observability.log import Log
from pillarbox.store.interface import Store
from pillarbox.store.types import AcmeCertificate, AcmeLease

if TYPE_CHECKING:
    from pillarbox.net.acme import CertificateManager


def _serial(stored: AcmeCertificate) -> int | None:
    """The stored certificate's serial; None if its chain cannot be read (``_adopt`` then
    logs why it is not used)."""
    try:
        return certificate_facts(stored.chain_pem).serial
    except ValueError:
        return None


def _read_pair(files: AcmeFiles) -> tuple[bytes, bytes]:
    return files.key.read_bytes(), files.cert.read_bytes()


class SharedCertificate:
    """The cluster's certificate as one node (``node``) shares it through the store: the store's
    copy taken up or offered (:meth:`sync`), renewals under the store's lease
    (:meth:`attempt`)."""

    def __init__(
        self, node: CertificateManager, config: Config, names: tuple[str, ...], log: Log
    ) -> None:
        self._node = node
        self._tls = config.tls
        self._names = names
        self._log = log
        #: The certificate's row in the store: its CA directory and names.
        self.scope = certificate_scope(config.tls.acme_directory, names)
        #: This node, as the lease names it (the host name alone may be every node's).
        self._holder = f"{config.server.hostname} {socket.gethostname()} pid {os.getpid()}"
        #: The lease as this node last found it held by another (logged once per change).
        self._lease_seen: AcmeLease | None = None

    @property
    def _store(self) -> Store:
        assert self._node.store is not None  # shared only once serve has set it
        return self._node.store

    async def stored_key(self) -> bytes | None:
        """The private key of the store's certificate; None when none is stored."""
        stored = await self._store.acme_certificate(self.scope)
        return None if stored is None else stored.key_pem

    async def put(self, key_pem: bytes, chain: bytes, facts: CertificateFacts) -> None:
        """Share this node's certificate through the store; one that cannot be written now is
        logged, and the next :meth:`sync` offers it again (the certificate is this node's
        meanwhile, and the attempt did obtain it)."""
        certificate = AcmeCertificate(self.scope, chain, key_pem, facts.not_after)
        try:
            stored = await self._store.put_acme_certificate(certificate)
        except StorageError as exc:
            self._log.warning("certificate not shared", error=str(exc))
            return
        if stored:
            self._log.info("certificate shared", serial=f"{facts.serial:x}")

    async def sync(self) -> None:
        """Present the store's certificate when it expires later than this node's (another
        node renewed it), or share this node's when it is the later one (a node upgraded from
        certificates of its own, or a share that failed). One small read when both are the
        same.

        Two certificates that expire in the same second (nodes that ordered their own at
        once) are settled by the store: it keeps the one stored first, so the other node
        takes that one up rather than both keeping their own for good.
        """
        stored = await self._store.acme_certificate(self.scope)
        mine = self._node.facts
        if stored is not None and (
            mine is None
            or stored.not_after > mine.not_after
            or (stored.not_after == mine.not_after and _serial(stored) != mine.serial)
        ):
            await self._adopt(stored)
            return
        if mine is None or not self._node.from_current_directory:
            return
        now = datetime.datetime.now(datetime.UTC)
        if renewal_reason(mine, self._names, now, 0):
            return  # expired, or not for the names: not worth sharing
        if stored is None or mine.not_after > stored.not_after:
            try:
                key_pem, chain = await run_blocking(_read_pair, self._node.files)
            except OSError as exc:
                self._log.warning("certificate not shared", error=str(exc))
                return
            if certificate_facts(chain).serial == mine.serial:  # not replaced meanwhile
                await self.put(key_pem, chain, mine)

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
        try:
            await self._node.install(stored.key_pem, stored.chain_pem, facts)
        except ssl.SSLError as exc:
            self._log.warning("stored certificate not loaded", error=str(exc))
            return
        self._log.info(
            "certificate installed from the store",
            serial=f"{facts.serial:x}",
            not_after=utc_text(facts.not_after),
        )

    async def attempt(self, reason: str, *, requested: bool, due: Callable[[], str]) -> None:
        """The node's :meth:`~pillarbox.net.acme.CertificateManager.attempt` if it gets the
        store's lease (a renewal asked for by hand overrides a back-off, not another node's
        attempt under way) and the certificate is still ``due`` once the store's is taken up,
        then the lease given back (a failure leaving the cluster's back-off in it); otherwise
        another node is renewing, or every node waits out the back-off, and this one looks
        again at its next :meth:`sync`."""
        store, scope, holder, node = self._store, self.scope, self._holder, self._node
        now = datetime.datetime.now(datetime.UTC)
        until = now + datetime.timedelta(seconds=self._tls.acme_lease)
        lease = await store.claim_acme_lease(scope, holder, now, until, force=requested)
        if lease.holder != holder:
            if lease != self._lease_seen:
                self._log.info(
                    "renewal left to another node" if lease.holder else "renewal backing off",
                    holder=lease.holder,
                    until=utc_text(lease.expires),
                    failures=lease.failures,
                )
            self._lease_seen = lease
            if requested:
                await node.record(
                    {
                        "reason": reason,
                        "started": utc_text(now),
                        "result": "failed",
                        "error": f"another node is renewing ({lease.holder}) until "
                        f"{utc_text(lease.expires)}",
                    }
                )
            return
        self._lease_seen = None
        node.failures = lease.failures
        ok = False
        try:
            # Another node may have stored a certificate since this node last looked.
            await self.sync()
            if requested or due():
                ok = await node.attempt(reason)
            else:
                ok = True
        finally:
            retry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
                seconds=node.retry_delay()
            )
            try:
                # Shielded: a stop arriving meanwhile does not leave the lease to lapse.
                await asyncio.shield(
                    store.end_acme_lease(scope, holder, 0 if ok else node.failures, retry)
                )
            except StorageError as exc:
                self._log.warning("renewal lease left to lapse", error=str(exc))
