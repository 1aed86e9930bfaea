"""DANE for outbound SMTP (RFC 7672, TLSA records of RFC 6698/7671) without I/O: which hosts
get a TLSA lookup, what its answer asks of the connection, and whether a server's certificate
matches the records.

The lookups are made by :class:`~pillarbox.dns.resolver.Resolver` (which reports whether each
answer was DNSSEC-authenticated by a trusted resolver); the runner
(:mod:`pillarbox.queue.runner`) applies :func:`plan_for` to every MX host it tries, and the
SMTP session (:mod:`pillarbox.net.smtp_client`) checks the peer's certificate with
:func:`certificate_matches`.

Implementation notes:

- **When** (§2.2.1, §2.2.2): only for a host from a "secure" MX RRset (or the domain itself as
  its implicit MX, from a secure NODATA), whose address records are secure too; the address
  lookup comes first (§2.2.2: it tells whether the TLSA lookup is worth making). The
  candidate TLSA base domains (:func:`base_domains`, §2.2.3) are the host name, or for an
  alias the CNAME-expanded name and then the host name; the first with a secure TLSA RRset
  is the base domain. An alias whose expanded addresses are insecure gets a separate CNAME
  query of its own name (§2.2.2 "Insecure CNAME", §2.1.2): a secure CNAME record makes the
  alias itself the only candidate base domain, an insecure one means no DANE, a failed
  lookup makes the host unusable (§2.2.2: errors delay delivery). Address literals and
  smart hosts get no DANE (§2.2; a smart host keeps ``queue.smarthost_verify_tls``).
- **What** (§2.2): a secure RRset with a usable record → STARTTLS mandatory and the
  certificate authenticated (:data:`DanePlanKind.AUTHENTICATE`); a secure RRset whose records
  are all unusable → STARTTLS mandatory, any certificate (:data:`DanePlanKind.ENCRYPT`); an
  insecure RRset or none → as without DANE; a failed lookup (SERVFAIL, timeout, a response the
  resolver rejects) → the host is not used (§2.1.2), never plaintext.
- **Usable** (RFC 6698 §4.1, RFC 7672 §3.1): DANE-EE(3) with selector Cert(0) or SPKI(1) and
  matching Full(0), SHA2-256(1) or SHA2-512(2), digests of their algorithm's length.
  PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP (§3.1.3). DANE-TA(2) is unusable *here*:
  it needs the certificate chain the server sent, which Python 3.11's ``ssl`` does not
  expose (``SSLObject.get_unverified_chain`` is 3.13+); a host publishing only DANE-TA
  records therefore gets mandatory but unauthenticated TLS (§2.2, "all the records are
  unusable"), and one publishing both is authenticated by its DANE-EE records alone.
- **Matching** (§3.1.1): the leaf certificate or its SubjectPublicKeyInfo against each usable
  record; names and validity dates are not checked.
"""

from __future__ import annotations

import binascii
import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pillarbox.smtp.replies import Reply

# -- parameters (RFC 6698 §2.1, names from RFC 7218) ----------------------------------------------


class Usage(enum.IntEnum):
    PKIX_TA = 0
    PKIX_EE = 1
    DANE_TA = 2
    DANE_EE = 3


class Selector(enum.IntEnum):
    CERT = 0
    SPKI = 1


class Matching(enum.IntEnum):
    FULL = 0
    SHA2_256 = 1
    SHA2_512 = 2


#: Digest lengths of the matching types (RFC 6698 §2.1.3).
_DIGEST_LENGTH: dict[int, int] = {Matching.SHA2_256: 32, Matching.SHA2_512: 64}

# -- replies the queue synthesises (RFC 3463 codes) -----------------------------------------------

#: RFC 7672 §2.1.2: a failed TLSA lookup of a securely found host; X.4.3 directory server failure.
TLSA_LOOKUP_FAILED = Reply(451, "4.4.3", "TLSA lookup failed; the host is not used without it")
#: RFC 7672 §3: no TLSA record matches the server's certificate; X.7.5 cryptographic failure.
DANE_MISMATCH = Reply(451, "4.7.5", "the server's certificate matches none of its TLSA records")
#: In the text of every DANE_MISMATCH reply (it shares X.7.5 with a failed handshake).
MISMATCH_MARKER = "matches none of the"


def is_mismatch(reply: Reply) -> bool:
    """``reply`` says the certificate matched no TLSA record (not that TLS failed)."""
    return reply.enhanced == DANE_MISMATCH.enhanced and MISMATCH_MARKER in reply.text


@dataclass(frozen=True, slots=True)
class Tlsa:
    """One TLSA record (RFC 6698 §2.1); the parameters are kept as published."""

    usage: int
    selector: int
    matching: int
    data: bytes

    @property
    def usable(self) -> bool:
        """RFC 6698 §4.1 and RFC 7672 §3.1, as this implementation can apply them (notes)."""
        if self.usage != Usage.DANE_EE or self.selector not in (Selector.CERT, Selector.SPKI):
            return False
        if self.matching == Matching.FULL:
            return bool(self.data)
        # A digest of another length can match nothing: unusable, not a failure.
        return _DIGEST_LENGTH.get(self.matching) == len(self.data)

    def __str__(self) -> str:
        return f"{self.usage} {self.selector} {self.matching} {self.data.hex()}"


def parse_tlsa(text: str) -> Tlsa | None:
    """A TLSA record in presentation format (RFC 6698 §2.2: three numbers, then hex, which may
    be split by white space); None when it is not one."""
    fields = text.split()
    if len(fields) < 4 or not all(f.isascii() and f.isdigit() for f in fields[:3]):
        return None
    usage, selector, matching = (int(f) for f in fields[:3])
    if max(usage, selector, matching) > 255:
        return None
    try:
        data = binascii.unhexlify("".join(fields[3:]))
    except (binascii.Error, ValueError):
        return None
    return Tlsa(usage, selector, matching, data)


def tlsa_name(host: str, port: int) -> str:
    """RFC 7672 §2.2.3: ``_<port>._tcp.<TLSA base domain>``."""
    return f"_{port}._tcp.{host.lower().rstrip('.')}"


# -- the plan for one host (§2.2) -----------------------------------------------------------------


class DanePlanKind(enum.Enum):
    #: No DANE for this host (insecure MX, addresses or TLSA, or no TLSA): as before.
    NONE = "none"
    #: Usable secure TLSA records: STARTTLS mandatory, the certificate must match one.
    AUTHENTICATE = "authenticate"
    #: Secure TLSA records, none usable: STARTTLS mandatory, any certificate.
    ENCRYPT = "encrypt"
    #: The TLSA lookup failed: the host is not used (§2.1.2).
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class DanePlan:
    kind: DanePlanKind
    #: The TLSA base domain: the SNI name and the name in logs (§2.2.3, §8.1).
    base: str = ""
    #: The usable records (AUTHENTICATE only).
    records: tuple[Tlsa, ...] = ()
    #: Why (UNREACHABLE: the lookup's failure; otherwise a note for the log).
    reason: str = ""
    #: Every record of the secure RRset, usable or not, in presentation format without inner
    #: spaces (the TLS report's policy strings, RFC 8460 §4.5).
    published: tuple[str, ...] = ()

    @property
    def requires_tls(self) -> bool:
        return self.kind in (DanePlanKind.AUTHENTICATE, DanePlanKind.ENCRYPT)


NO_DANE = DanePlan(DanePlanKind.NONE)


def is_alias(host: str, canonical: str) -> bool:
    return bool(canonical) and canonical != host


def needs_alias_check(
    host: str, canonical: str, *, mx_secure: bool, addresses_secure: bool
) -> bool:
    """RFC 7672 §2.2.2 "Insecure CNAME": a host from a secure MX RRset that is an alias whose
    expanded addresses are insecure; a separate CNAME query of the host tells whether the alias
    itself is secure (§2.1.2: the AD bit of the address answer covers the whole chain)."""
    return mx_secure and not addresses_secure and is_alias(host, canonical)


def base_domains(
    host: str,
    canonical: str,
    *,
    mx_secure: bool,
    addresses_secure: bool,
    alias_secure: bool = False,
) -> tuple[str, ...]:
    """The candidate TLSA base domains of ``host``, in the order to try them; none when no
    TLSA lookup is due. Only for a name from a secure MX RRset (RFC 7672 §2.2.1) with secure
    addresses (§2.2.2 "SHOULD NOT proceed" when insecure); an alias (``canonical``, its
    CNAME-expanded name) tries the expanded name first, then its own (§2.2.2 "Secure CNAME",
    §2.2.3). An alias with insecure addresses whose own CNAME record is secure
    (``alias_secure``, :func:`needs_alias_check`) tries its own name alone (§2.2.2
    "Insecure CNAME")."""
    if not mx_secure:
        return ()
    if not addresses_secure:
        return (host,) if alias_secure and is_alias(host, canonical) else ()
    if is_alias(host, canonical):
        return (canonical, host)
    return (host,)


def plan_for(host: str, records: Sequence[str], *, secure: bool) -> DanePlan:
    """The plan a successful TLSA lookup of ``host`` gives (RFC 7672 §2.2): ``records`` in
    presentation format, ``secure`` when the answer was authenticated. A failed lookup is
    :func:`lookup_failed`."""
    if not records or not secure:
        return DanePlan(DanePlanKind.NONE, host, reason="no secure TLSA records")
    parsed = [parse_tlsa(r) for r in records]
    usable = tuple(t for t in parsed if t is not None and t.usable)
    published = tuple(
        str(t) if t is not None else " ".join(r.split())
        for t, r in zip(parsed, records, strict=True)
    )
    if usable:
        return DanePlan(DanePlanKind.AUTHENTICATE, host, usable, published=published)
    # §2.2: still a commitment to STARTTLS (§2.2.3: "even if not usable").
    return DanePlan(DanePlanKind.ENCRYPT, host, reason="no usable TLSA record", published=published)


def lookup_failed(host: str, reason: str) -> DanePlan:
    return DanePlan(DanePlanKind.UNREACHABLE, host, reason=reason)


# -- matching (§3.1.1) ----------------------------------------------------------------------------


def _selected(record: Tlsa, certificate: bytes, spki: bytes | None) -> bytes | None:
    return certificate if record.selector == Selector.CERT else spki


def _digest(matching: int, data: bytes) -> bytes:
    if matching == Matching.SHA2_256:
        return hashlib.sha256(data).digest()
    if matching == Matching.SHA2_512:
        return hashlib.sha512(data).digest()
    return data


def subject_public_key_info(certificate: bytes) -> bytes | None:
    """The DER SubjectPublicKeyInfo of a DER certificate; None when it does not parse."""
    try:
        key = x509.load_der_x509_certificate(certificate).public_key()
    except ValueError:
        return None
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def certificate_matches(records: Sequence[Tlsa], certificate: bytes) -> Tlsa | None:
    """The first usable record that the server's leaf certificate (DER) matches, or None
    (RFC 7672 §3.1.1: DANE-EE binds the key alone; names and dates are ignored)."""
    spki = None
    if any(r.selector == Selector.SPKI for r in records):
        spki = subject_public_key_info(certificate)
    for record in records:
        if not record.usable:
            continue
        selected = _selected(record, certificate, spki)
        if selected is not None and _digest(record.matching, selected) == record.data:
            return record
    return None


def tlsa_for_certificate(certificate: bytes) -> Tlsa | None:
    """The "3 1 1" record (DANE-EE, SPKI, SHA2-256) of a DER certificate: the one RFC 7672
    §3.1.1 recommends publishing."""
    spki = subject_public_key_info(certificate)
    if spki is None:
        return None
    return Tlsa(Usage.DANE_EE, Selector.SPKI, Matching.SHA2_256, hashlib.sha256(spki).digest())
