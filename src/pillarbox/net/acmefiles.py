"""The ACME files of a data directory (``data_dir/tls/acme/``), and what the command line reads
and asks of the running server through them.

Kept apart from the ACME client so that ``pillarbox tls status``, ``tls renew`` and ``dns``
read the files without importing the client library. Each file is written to a temporary file
in the same directory, synced and renamed over the old one (:func:`write_atomically`).
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pillarbox.atomicfile import write_atomically
from pillarbox.certificates import CertificateFacts, certificate_facts
from pillarbox.config import Config
from pillarbox.dns.records import DnsRecord, tlsa_record
from pillarbox.net.tls import tls_paths


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
    """A JSON object the ACME modules wrote; {} if there is none (or it cannot be read)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def utc_text(moment: datetime.datetime) -> str:
    """A moment as the ACME files and log lines write it: ISO 8601 in UTC, to the millisecond."""
    return moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds")


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


def request_renewal(files: AcmeFiles) -> datetime.datetime:
    """Ask the running server for a renewal (what ``pillarbox tls renew`` does); the time of
    the request, to wait for an attempt started after it."""
    now = datetime.datetime.now(datetime.UTC)
    write_atomically(files.request, utc_text(now).encode())
    return now
