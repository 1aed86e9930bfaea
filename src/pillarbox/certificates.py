"""Decisions about the server's ACME certificate that need no network: which names it may
carry, what a certificate says, whether it is due for renewal, how long to wait after a failure.

:mod:`pillarbox.net.acme` does the I/O (the ACME protocol, files, reloading the TLS context);
everything here is a pure function of its arguments (the clock is an argument too).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from pillarbox.errors import InvalidName

MAX_NAME = 253  # RFC 1035 §2.3.4, in text form
MAX_LABEL = 63  # RFC 1035 §2.3.4
_LDH = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def acme_name(name: str, *, wildcard: bool = False) -> str:
    """``name`` in canonical form (lowercase, no final dot) if a certificate can be issued for
    it, else :class:`InvalidName` saying why.

    A host name of letters, digits and hyphens (RFC 1123 §2.1), at least two labels (CAs do
    not issue for single-label names), no IP literal (RFC 8738 validates those differently).
    A wildcard (``*.`` as the whole leftmost label, then a host name) only with ``wildcard``:
    HTTP-01 cannot prove one (RFC 8555 §8.3), only DNS-01 can (§7.1.3, §8.4).
    """
    text = name.strip().rstrip(".").lower()
    host = text
    if text.startswith("*."):
        if not wildcard:
            raise InvalidName(f"{name!r}: a wildcard can be validated only over dns-01")
        host = text[2:]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        raise InvalidName(f"{name!r}: an IP address, not a host name")
    labels = host.split(".")
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


def acme_names(
    configured: Iterable[str], hostname: str, *, wildcards: bool = False
) -> tuple[str, ...]:
    """The names to request, validated and without repeats: ``configured``, else the server's
    own host name (the name every hosted domain's MX record points to); wildcards only with
    ``wildcards`` (DNS-01 among the challenge types)."""
    wanted = tuple(configured) or (hostname,)
    return tuple(dict.fromkeys(acme_name(name, wildcard=wildcards) for name in wanted))


def acme_identifier(name: str) -> str:
    """The DNS identifier an authorization for ``name`` carries: a wildcard's is its base
    domain, flagged ``"wildcard": true`` (RFC 8555 §7.1.3, §7.1.4)."""
    return name[2:] if name.startswith("*.") else name


#: RFC 8555 §8.4: the label a DNS-01 TXT record is published under.
DNS01_LABEL = "_acme-challenge"


def dns01_record_name(identifier: str) -> str:
    """Owner name of the DNS-01 TXT record for an identifier (RFC 8555 §8.4)."""
    return f"{DNS01_LABEL}.{identifier}"


def dns01_txt_value(key_authorization: str) -> str:
    """The DNS-01 TXT value: the base64url SHA-256 digest of the key authorization, without
    padding (RFC 8555 §8.4; §8.1 defines the key authorization, ``token.thumbprint``)."""
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    """What the renewal decision and ``pillarbox tls status`` need of a certificate."""

    names: tuple[str, ...]
    #: The IP addresses it names (a self-signed certificate's; rare in a CA's).
    addresses: tuple[str, ...]
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
        addresses = tuple(str(a) for a in alt_names.value.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        names = addresses = ()
    return CertificateFacts(
        names=names,
        addresses=addresses,
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


def certificate_scope(directory: str, names: Iterable[str]) -> str:
    """What the nodes of one store share a certificate by: the CA directory and the names (as a
    set). Nodes configured alike share one; a changed ``acme_directory`` or ``acme_names``
    makes another scope, its certificate ordered afresh."""
    return f"{directory} {','.join(sorted({name.lower() for name in names}))}"


def renewal_time(facts: CertificateFacts, renew_days: int) -> datetime.datetime:
    """When the certificate becomes due for renewal."""
    return facts.not_after - datetime.timedelta(days=renew_days)


def retry_delay(failures: int, first: float, ceiling: float) -> float:
    """Seconds to wait after ``failures`` consecutive failed attempts (at least 1): ``first``,
    doubling each time, never more than ``ceiling``."""
    doublings = min(max(failures - 1, 0), 32)
    return min(ceiling, first * float(1 << doublings))
