"""Decisions about the server's ACME certificate that need no network: which names it may
carry, what a certificate says, whether it is due for renewal, how long to wait after a failure.

:mod:`pillarbox.net.acme` does the I/O (the ACME protocol, files, reloading the TLS context);
everything here is a pure function of its arguments (the clock is an argument too).
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from pillarbox.errors import InvalidName

MAX_NAME = 253  # RFC 1035 §2.3.4, in text form
MAX_LABEL = 63  # RFC 1035 §2.3.4
_LDH = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def acme_name(name: str) -> str:
    """``name`` in canonical form (lowercase, no final dot) if an HTTP-01 certificate can be
    issued for it, else :class:`InvalidName` saying why.

    A host name of letters, digits and hyphens (RFC 1123 §2.1), at least two labels (CAs do
    not issue for single-label names), no IP literal (RFC 8738 validates those differently)
    and no wildcard (RFC 8555 §8.3: HTTP-01 cannot prove a wildcard).
    """
    text = name.strip().rstrip(".").lower()
    if text.startswith("*."):
        raise InvalidName(f"{name!r}: a wildcard cannot be validated over HTTP-01")
    try:
        ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        raise InvalidName(f"{name!r}: an IP address, not a host name")
    labels = text.split(".")
    if len(labels) < 2:
        raise InvalidName(f"{name!r}: needs at least two labels (e.g. mail.example.org)")
    if len(text) > MAX_NAME or any(
        not label
        or len(label) > MAX_LABEL
        or not set(label) <= _LDH
        or label.startswith("-")
        or label.endswith("-")
        for label in labels
    ):
        raise InvalidName(f"{name!r} is not a valid host name")
    return text


def acme_names(configured: Iterable[str], hostname: str) -> tuple[str, ...]:
    """The names to request, validated and without repeats: ``configured``, else the server's
    own host name (the name every hosted domain's MX record points to)."""
    wanted = tuple(configured) or (hostname,)
    return tuple(dict.fromkeys(acme_name(name) for name in wanted))


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    """What the renewal decision and ``pillarbox tls status`` need of a certificate."""

    names: tuple[str, ...]
    serial: int
    issuer: str
    not_before: datetime.datetime
    not_after: datetime.datetime


def certificate_facts(pem: bytes) -> CertificateFacts:
    """The facts of the first (leaf) certificate of a PEM chain; ValueError if there is none."""
    # Imported here: config.py imports this module, and most commands never read a certificate.
    from cryptography import x509

    cert = x509.load_pem_x509_certificates(pem)[0]
    try:
        alt_names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = tuple(alt_names.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return CertificateFacts(
        names=names,
        serial=cert.serial_number,
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def renewal_reason(
    facts: CertificateFacts | None,
    names: Iterable[str],
    now: datetime.datetime,
    renew_days: int,
) -> str:
    """Why a new certificate is needed now, or "" when the one held will do."""
    if facts is None:
        return "no certificate yet"
    missing = sorted(set(names) - {n.lower() for n in facts.names})
    if missing:
        return f"not valid for {', '.join(missing)}"
    left = facts.not_after - now
    if left < datetime.timedelta(days=renew_days):
        return f"expires in {left.total_seconds() / 86400:.1f} days"
    return ""


def renewal_time(facts: CertificateFacts, renew_days: int) -> datetime.datetime:
    """When the certificate becomes due for renewal."""
    return facts.not_after - datetime.timedelta(days=renew_days)


def retry_delay(failures: int, first: float, ceiling: float) -> float:
    """Seconds to wait after ``failures`` consecutive failed attempts (at least 1): ``first``,
    doubling each time, never more than ``ceiling``."""
    doublings = min(max(failures - 1, 0), 32)
    return min(ceiling, first * float(1 << doublings))
