"""Configured certificate files (``[tls] cert``/``key``) followed while the server runs.

Implementation notes:

- A certificate someone else renews (certbot, an internal CA's agent) is replaced on disk
  under the running server; loaded only at start, the old one would go on being presented
  until it expired, while ``pillarbox tls status`` (which reads the files) showed the new one.
  So every ``tls.files_check_interval`` seconds both files are looked at (inode, size, mtime)
  and, when either changed, the pair is loaded into the context every listener shares, as an
  ACME renewal is (:func:`~pillarbox.net.tls.load_pair`): new connections present it, open
  ones keep theirs.
- A renewer writes the certificate and the key one after the other, so a check may find a
  pair that does not match yet: the context keeps the old pair, one warning per distinct
  pair of files, and the next check tries again; nothing is logged for it once it loads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from pathlib import Path

from cryptography import x509

from pillarbox.net.tls import load_pair
from pillarbox.observability.log import Log

#: What identifies one version of a file: (inode, size, mtime in ns); None while it is absent.
Signature = tuple[int, int, int] | None


def _signature(path: Path) -> Signature:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


class CertificateFiles:
    """Reloads ``cert`` and ``key`` into ``context`` when they change on disk."""

    def __init__(self, context: ssl.SSLContext, cert: Path, key: Path) -> None:
        self._context = context
        self.cert = cert
        self.key = key
        self.log = Log("tls")
        #: The pair of files the context presents (what the server loaded at start).
        self._loaded = self._current()
        self._refused: tuple[Signature, Signature] | None = None

    def _current(self) -> tuple[Signature, Signature]:
        return (_signature(self.cert), _signature(self.key))

    def check(self) -> bool:
        """Load the files if they changed since they were last loaded; True if loaded."""
        current = self._current()
        if current == self._loaded:
            return False
        try:
            load_pair(self._context, self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            if current != self._refused:
                self._refused = current
                self.log.warning(
                    "the certificate files changed but cannot be loaded; still presenting "
                    "the previous certificate",
                    cert=str(self.cert),
                    key=str(self.key),
                    error=str(exc),
                )
            return False
        self._loaded = current
        self._refused = None
        self.log.info("certificate files changed; reloaded", cert=str(self.cert), **self._facts())
        return True

    def _facts(self) -> dict[str, str]:
        try:
            leaf = x509.load_pem_x509_certificate(self.cert.read_bytes())
        except (OSError, ValueError):
            return {}
        return {
            "serial": format(leaf.serial_number, "x"),
            "not_after": leaf.not_valid_after_utc.isoformat(),
        }

    async def follow(self, interval: float, shutdown: asyncio.Event) -> None:
        """Check every ``interval`` seconds until ``shutdown``."""
        while not shutdown.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(shutdown.wait(), interval)
            if not shutdown.is_set():
                self.check()
