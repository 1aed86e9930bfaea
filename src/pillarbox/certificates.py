"""Decisions about the server's ACME certificate that need no network: which names it may
carry, what a certificate says, whether it is due for renewal, how long to wait after a failure.

:mod:`pillarbox.net.acme` and its parts do the I/O (the ACME protocol, files, reloading the TLS
context); everything here is a pure function of its arguments (the clock is an argument too).
"""

from __future__ import annotations

import base64
import datetime
import email.utils
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
    return _b64url(hashlib.sha256(key_authorization.encode("ascii")).digest())


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
    #: Its ACME renewal information identifier (RFC 9773 §4.1); "" without an authority key
    #: identifier (a self-signed certificate), which no CA's ARI can name.
    ari_id: str = ""


def ari_identifier(key_identifier: bytes, serial: int) -> str:
    """The certificate's identifier in ACME renewal information (RFC 9773 §4.1): the
    base64url (unpadded) keyIdentifier of its authority key identifier, ".", and the base64url
    of its serial's DER INTEGER content (two's complement, big-endian, so a leading zero byte
    when the top bit is set)."""
    serial_der = serial.to_bytes(serial.bit_length() // 8 + 1, "big", signed=True)
    return f"{_b64url(key_identifier)}.{_b64url(serial_der)}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


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
    try:
        authority = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
        key_identifier = authority.value.key_identifier
    except x509.ExtensionNotFound:
        key_identifier = None
    return CertificateFacts(
        names=names,
        addresses=addresses,
        serial=cert.serial_number,
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        ari_id=ari_identifier(key_identifier, cert.serial_number) if key_identifier else "",
    )


def renewal_reason(
    facts: CertificateFacts | None,
    names: Iterable[str],
    now: datetime.datetime,
    renew_days: int,
    window: RenewalWindow | None = None,
) -> str:
    """Why a new certificate is needed now, or "" when the one held will do: the lifetime rule
    (:func:`renewal_margin`), brought forward by the CA's renewal window for this certificate
    when one is known (:func:`renewal_time`)."""
    if facts is None:
        return "no certificate yet"
    missing = sorted(set(names) - {n.lower() for n in facts.names})
    if missing:
        return f"not valid for {', '.join(missing)}"
    if now < renewal_time(facts, renew_days, window):
        return ""
    if window is not None and window.ari_id == facts.ari_id and now >= window.renew_at:
        return f"the CA's renewal window (RFC 9773) is {window.shown}"
    left = facts.not_after - now
    return f"expires in {left.total_seconds() / 86400:.1f} days"


def certificate_scope(directory: str, names: Iterable[str]) -> str:
    """What the nodes of one store share a certificate by: the CA directory and the names (as a
    set). Nodes configured alike share one; a changed ``acme_directory`` or ``acme_names``
    makes another scope, its certificate ordered afresh."""
    return f"{directory} {','.join(sorted({name.lower() for name in names}))}"


#: A certificate valid this long or less is short-lived: renewed at half its lifetime rather
#: than with a third of it left (certbot's ``_default_renewal_time`` in
#: certbot/_internal/renewal.py: under 10 days; lego's ``getDueDate`` in cmd/cmd_run_renew.go:
#: 10 days or less, its lifetime rounded to days).
SHORT_LIFETIME = datetime.timedelta(days=10)


def renewal_margin(facts: CertificateFacts, renew_days: int) -> datetime.timedelta:
    """How long before its expiry a certificate is renewed by the lifetime rule: ``renew_days``,
    but no more than a third of its lifetime (half of a short-lived one's). A 90-day certificate
    is renewed with 30 days left, a 45-day one with 15, a 6-day one with 3: a lifetime shorter
    than ``renew_days`` would otherwise make every certificate due the moment it is issued."""
    # RFC 5280 §4.1.2.5: the validity period includes both notBefore and notAfter, so a
    # "90-day" certificate's notAfter is 90 days less one second after its notBefore.
    lifetime = facts.not_after - facts.not_before + datetime.timedelta(seconds=1)
    share = lifetime / 2 if lifetime <= SHORT_LIFETIME else lifetime / 3
    return min(datetime.timedelta(days=renew_days), share)


def renewal_time(
    facts: CertificateFacts, renew_days: int, window: RenewalWindow | None = None
) -> datetime.datetime:
    """When the certificate becomes due for renewal: by the lifetime rule; with the CA's
    renewal window for it (RFC 9773 §4.2), at the moment drawn in the window instead, earlier
    or later, but never later than half the lifetime rule's margin before expiry (a window
    the CA put past that, or past the expiry, is not followed all the way)."""
    margin = renewal_margin(facts, renew_days)
    if window is None or window.ari_id != facts.ari_id:
        return facts.not_after - margin
    return min(window.renew_at, facts.not_after - margin / 2)


@dataclass(frozen=True, slots=True)
class RenewalWindow:
    """The renewal window a CA suggests for one certificate (RFC 9773 §4.2), the moment drawn
    in it, and when to ask again."""

    #: The certificate's identifier (:func:`ari_identifier`): a window holds for it alone.
    ari_id: str
    start: datetime.datetime
    end: datetime.datetime
    #: The moment drawn in the window, uniformly at random (§4.2): the renewal's.
    renew_at: datetime.datetime
    #: When to fetch the window again (§4.3.2, :func:`next_renewal_info`).
    next_fetch: datetime.datetime
    #: The CA's page explaining the window (§4.2 ``explanationURL``), "" if none.
    explanation: str = ""

    @property
    def shown(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC"


def drawn_window(
    previous: RenewalWindow | None,
    ari_id: str,
    start: datetime.datetime,
    end: datetime.datetime,
    *,
    next_fetch: datetime.datetime,
    explanation: str,
    draw: float,
) -> RenewalWindow:
    """The window a fetch returned with its renewal moment: ``draw`` (uniform in [0, 1)) places
    it in the window (RFC 9773 §4.2); the same window fetched again keeps the moment drawn
    before (drawing anew at every fetch would bunch renewals at the window's start).
    ValueError for a window that ends before it starts (§4.2: malformed)."""
    if end < start:
        raise ValueError(f"the suggested window ends ({end}) before it starts ({start})")
    if previous is not None and (previous.ari_id, previous.start, previous.end) == (
        ari_id,
        start,
        end,
    ):
        renew_at = previous.renew_at
    else:
        renew_at = start + (end - start) * draw
    return RenewalWindow(ari_id, start, end, renew_at, next_fetch, explanation)


#: Bounds on the wait before fetching a certificate's renewal information again (RFC 9773
#: §4.3.2: a client "SHOULD set reasonable limits on its checking interval"): the CA's
#: Retry-After, but at least an hour and at most a day.
RENEWAL_INFO_MIN_WAIT = datetime.timedelta(hours=1)
RENEWAL_INFO_MAX_WAIT = datetime.timedelta(days=1)


def next_renewal_info(now: datetime.datetime, retry_after: datetime.datetime) -> datetime.datetime:
    """When to fetch renewal information again: the CA's ``retry_after``, within the bounds."""
    wait = min(max(retry_after - now, RENEWAL_INFO_MIN_WAIT), RENEWAL_INFO_MAX_WAIT)
    return now + wait


def retry_after(value: str | None, now: datetime.datetime) -> datetime.datetime | None:
    """The moment a ``Retry-After`` header names (RFC 9110 §10.2.3: delay-seconds, or an
    HTTP-date); None when there is none or it cannot be read."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return now + datetime.timedelta(seconds=int(text))
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def retry_delay(failures: int, first: float, ceiling: float) -> float:
    """Seconds to wait after ``failures`` consecutive failed attempts (at least 1): ``first``,
    doubling each time, never more than ``ceiling``."""
    doublings = min(max(failures - 1, 0), 32)
    return min(ceiling, first * float(1 << doublings))
