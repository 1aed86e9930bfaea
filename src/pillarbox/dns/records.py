"""The DNS records a domain hosted on Pillarbox needs, as data and as a zone-file fragment.

Pure functions: no lookups. The same :class:`DnsRecord` values feed the admin UI, ``pillarbox dns
records``, ``pillarbox dns check`` (:mod:`pillarbox.dns.check`) and the optional authoritative
server (:mod:`pillarbox.dns.authoritative`).

Defaults and why:

* **MX** ``10 <mail host>``: one host; 10 leaves room to add a backup below or above it.
* **SPF** (RFC 7208): with the mail host's addresses known, ``v=spf1 ip4:… ip6:… -all`` (no DNS
  lookups at the verifier, so nothing counts against the limit of ten, §4.6.4); otherwise
  ``v=spf1 mx -all`` (the MX host is the host that sends). ``-all``: nobody else sends for the
  domain, and DMARC decides what a failure costs.
* **DMARC** (RFC 7489) ``p=quarantine``: a forged message lands in Junk rather than the inbox;
  ``reject`` would also bounce legitimate mail that a forwarder or mailing list broke, and ``none``
  protects nothing. Aggregate reports go to ``dmarc-reports@<domain>`` (a mailbox or alias the
  operator must create; same domain, so no external authorisation record, RFC 7489 §7.1).
* **MTA-STS** (RFC 8461) in ``testing`` mode with ``max_age`` one day: senders report TLS problems
  (via TLS-RPT) but still deliver, and a mistake expires within a day. The policy ``id`` is a
  digest of the policy text, so it changes exactly when the policy does (§3.1) and a check can
  compare it. ``mta-sts.<domain>`` is a CNAME to the mail host, which serves the policy file over
  HTTPS (it needs a certificate for that name).
* **TLS-RPT** (RFC 8460) reports to ``tls-reports@<domain>``.
* **SRV** (RFC 6186, updated by RFC 8314 §5.1): implicit TLS preferred over STARTTLS, IMAP over POP3
  (RFC 6186 §3.4), by priority; and ``_sieve._tcp`` for ManageSieve clients (RFC 5804 §1.8).
* ``autoconfig``/``autodiscover`` CNAMEs to the mail host, where clients fetch setup documents.
* A/AAAA of the mail host only when it lies inside the domain: otherwise they belong to another
  zone.
* **TLSA** (RFC 7672 §3.1.1) ``_25._tcp.<mail host>`` ``3 1 1``: DANE-EE, the certificate's
  SubjectPublicKeyInfo, SHA2-256 — names and dates are not checked, so only a key change breaks
  it. Not part of the domain's records: it belongs to the mail host's zone, and the CLI offers
  it only for a certificate whose key stays (:func:`tlsa_record`).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pillarbox.errors import InvalidName
from pillarbox.mail.address import domain_to_ascii
from pillarbox.queue.dane import tlsa_for_certificate, tlsa_name

#: RFC 1035 §3.3: a <character-string> is one length octet and at most 255 octets.
MAX_CHARACTER_STRING = 255
MAX_LABEL = 63  # RFC 1035 §2.3.4
MAX_NAME = 253  # RFC 1035 §2.3.4: 255 octets on the wire, 253 characters in text form
DEFAULT_TTL = 3600


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """One resource record.

    ``value`` is what a person types into a DNS provider's form: for TXT the text itself (neither
    quoted nor split), for every other type the presentation format of RFC 1035 §5.1 with absolute
    names (``10 mail.example.com.``).
    """

    #: Owner name: lowercase, without the final dot.
    name: str
    type: str
    value: str
    ttl: int = DEFAULT_TTL
    purpose: str = ""

    @property
    def rdata(self) -> str:
        """The value as a zone file writes it (TXT quoted and split into character-strings)."""
        if self.type == "TXT":
            return " ".join(quote_character_string(s) for s in character_strings(self.value))
        return self.value

    def zone_line(self) -> str:
        return f"{self.name}.\t{self.ttl}\tIN\t{self.type}\t{self.rdata}"


def character_strings(text: str | bytes) -> tuple[bytes, ...]:
    """Split TXT data into <character-string>s of at most 255 octets (RFC 1035 §3.3.14).

    Splitting at any octet is safe for the records here: SPF, DKIM, DMARC, MTA-STS and TLS-RPT
    all concatenate the strings without separators (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
    """
    data = text.encode() if isinstance(text, str) else text
    if not data:
        return (b"",)
    return tuple(
        data[i : i + MAX_CHARACTER_STRING] for i in range(0, len(data), MAX_CHARACTER_STRING)
    )


def quote_character_string(data: bytes) -> str:
    """A <character-string> in zone-file syntax: quoted, with ``"`` and ``\\`` escaped and
    octets outside printable ASCII as ``\\DDD`` (RFC 1035 §5.1)."""
    out = []
    for octet in data:
        if octet in (0x22, 0x5C):
            out.append("\\" + chr(octet))
        elif 0x20 <= octet < 0x7F:
            out.append(chr(octet))
        else:
            out.append(f"\\{octet:03d}")
    return '"' + "".join(out) + '"'


def normalise_name(name: str) -> str:
    """A host or domain name in canonical text form (lowercase A-labels, no final dot).

    Letters, digits, hyphen and underscore (``_dmarc``, ``_domainkey``) only; a Unicode name is
    converted label by label as addresses' domains are (IDNA 2008, ``mail.address``), so an
    underscore label beside it stays as written.
    """
    text = name.strip().rstrip(".").lower()
    if not text.isascii():
        try:
            text = ".".join(
                label if label.isascii() else domain_to_ascii(label) for label in text.split(".")
            )
        except InvalidName:
            raise InvalidName(f"{name!r} is not a valid domain name") from None
    labels = text.split(".")
    if (
        not text
        or len(text) > MAX_NAME
        or any(not label or len(label) > MAX_LABEL for label in labels)
        or not set(text) <= _NAME_CHARACTERS
    ):
        raise InvalidName(f"{name!r} is not a valid domain name")
    return text


_NAME_CHARACTERS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")


@dataclass(frozen=True, slots=True, kw_only=True)
class SrvService:
    """One RFC 6186 service label and where it is offered."""

    label: str
    #: The listener (``[listeners.NAME]``) that offers it.
    listener: str
    port: int
    priority: int
    purpose: str


def _srv(label: str, listener: str, port: int, priority: int, purpose: str) -> SrvService:
    return SrvService(label=label, listener=listener, port=port, priority=priority, purpose=purpose)


DEFAULT_SRV_SERVICES = (
    _srv("_submissions._tcp", "submissions", 465, 0, "submission, TLS"),
    _srv("_submission._tcp", "submission", 587, 10, "submission, STARTTLS"),
    _srv("_imaps._tcp", "imaps", 993, 0, "IMAP, TLS"),
    _srv("_imap._tcp", "imap", 143, 10, "IMAP, STARTTLS"),
    _srv("_pop3s._tcp", "pop3s", 995, 20, "POP3, TLS"),
    _srv("_pop3._tcp", "pop3", 110, 30, "POP3, STARTTLS"),
    # RFC 5804 §1.8: ManageSieve clients look up "_sieve._tcp" (not an RFC 6186 label).
    _srv("_sieve._tcp", "managesieve", 4190, 0, "ManageSieve (RFC 5804)"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordPolicy:
    """Choices an operator may change; the defaults are argued in the module docstring."""

    ttl: int = DEFAULT_TTL
    mx_preference: int = 10
    dmarc_policy: Literal["none", "quarantine", "reject"] = "quarantine"
    #: Local part at the domain receiving DMARC aggregate reports; empty: ask for none.
    dmarc_reports: str = "dmarc-reports"
    #: Local part at the domain receiving TLS-RPT reports; empty: publish no TLS-RPT record.
    tls_reports: str = "tls-reports"
    mta_sts_mode: Literal["testing", "enforce", "none"] = "testing"
    #: RFC 8461 §3.2: seconds a sender caches the policy (at most 31557600).
    mta_sts_max_age: int = 86_400
    #: RFC 6186 services offered; :func:`pillarbox.dns.hosted.record_policy` gives the
    #: configured listeners' ports and leaves out the listeners that are off.
    srv_services: tuple[SrvService, ...] = DEFAULT_SRV_SERVICES


DEFAULT_POLICY = RecordPolicy()


@dataclass(frozen=True, slots=True)
class DomainRecords:
    """Everything to publish for one hosted domain."""

    domain: str
    records: tuple[DnsRecord, ...]
    #: Body of ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` (RFC 8461 §3.2).
    mta_sts_policy: str

    @property
    def mta_sts_url(self) -> str:
        return f"https://mta-sts.{self.domain}/.well-known/mta-sts.txt"

    def zone(self) -> str:
        """A zone-file fragment with absolute names, each record under a comment of its purpose."""
        lines = [f"; DNS records for {self.domain} (generated by Pillarbox)"]
        for record in self.records:
            lines.append(f"; {record.purpose}")
            lines.append(record.zone_line())
        return "\n".join(lines) + "\n"


def mta_sts_policy_text(mx_hosts: Sequence[str], *, mode: str, max_age: int) -> str:
    """The policy file of RFC 8461 §3.2, CRLF-separated."""
    lines = ["version: STSv1", f"mode: {mode}"]
    lines += [f"mx: {host}" for host in mx_hosts]
    lines.append(f"max_age: {max_age}")
    return "".join(line + "\r\n" for line in lines)


def mta_sts_id(policy_text: str) -> str:
    """RFC 8461 §3.1 ``id`` (1–32 letters/digits): a digest, so it changes with the policy."""
    return hashlib.sha256(policy_text.encode()).hexdigest()[:20]


def spf_value(mail_host_addresses: Sequence[str]) -> str:
    """The SPF record: our own addresses when known, else the MX hosts (see module notes)."""
    if not mail_host_addresses:
        return "v=spf1 mx -all"
    terms = []
    for address in mail_host_addresses:
        ip = ipaddress.ip_address(address)
        terms.append(f"ip{ip.version}:{ip.compressed}")
    return "v=spf1 " + " ".join(terms) + " -all"


#: RFC 7672 §2.2.3: senders look TLSA up at the MX host's name, for the SMTP port.
SMTP_PORT = 25


def tlsa_record(mail_host: str, certificate_der: bytes, ttl: int = DEFAULT_TTL) -> DnsRecord:
    """The ``3 1 1`` record of ``certificate_der`` (DER) for ``mail_host``'s SMTP service;
    :class:`ValueError` if the certificate does not parse."""
    tlsa = tlsa_for_certificate(certificate_der)
    if tlsa is None:
        raise ValueError("the certificate does not parse")
    name = tlsa_name(normalise_name(mail_host), SMTP_PORT)
    return DnsRecord(name, "TLSA", str(tlsa), ttl, "DANE TLSA of the MX host (RFC 7672)")


def required_records(
    domain: str,
    *,
    mail_host: str,
    addresses: Iterable[str] = (),
    dkim: Mapping[str, str] | None = None,
    policy: RecordPolicy = DEFAULT_POLICY,
) -> DomainRecords:
    """The records ``domain`` needs when ``mail_host`` receives and sends its mail.

    ``addresses`` are the mail host's IPs (v4 and v6), when known; ``dkim`` maps each published
    selector to its TXT value (``pillarbox.queue.dkim.public_record``). Raises
    :class:`~pillarbox.errors.InvalidName` for a bad name, address or selector.
    """
    domain = normalise_name(domain)
    host = normalise_name(mail_host)
    ips = _addresses(addresses)
    ttl = policy.ttl
    fqdn = host + "."
    records: list[DnsRecord] = [
        DnsRecord(domain, "MX", f"{policy.mx_preference} {fqdn}", ttl, "mail exchanger"),
    ]
    if host == domain or host.endswith("." + domain):
        for ip in ips:
            rtype = "A" if ip.version == 4 else "AAAA"
            records.append(DnsRecord(host, rtype, ip.compressed, ttl, "address of the mail host"))
    records.append(DnsRecord(domain, "TXT", spf_value([ip.compressed for ip in ips]), ttl, "SPF"))
    for selector, value in sorted((dkim or {}).items()):
        name = normalise_name(f"{selector}._domainkey.{domain}")
        records.append(DnsRecord(name, "TXT", value, ttl, f"DKIM public key, selector {selector}"))
    dmarc = f"v=DMARC1; p={policy.dmarc_policy}"
    if policy.dmarc_reports:
        dmarc += f"; rua=mailto:{policy.dmarc_reports}@{domain}"
    records.append(DnsRecord(f"_dmarc.{domain}", "TXT", dmarc, ttl, "DMARC policy"))

    sts_policy = mta_sts_policy_text(
        [host], mode=policy.mta_sts_mode, max_age=policy.mta_sts_max_age
    )
    records.append(
        DnsRecord(
            f"_mta-sts.{domain}",
            "TXT",
            f"v=STSv1; id={mta_sts_id(sts_policy)}",
            ttl,
            "MTA-STS policy version (RFC 8461)",
        )
    )
    if policy.tls_reports:
        records.append(
            DnsRecord(
                f"_smtp._tls.{domain}",
                "TXT",
                f"v=TLSRPTv1; rua=mailto:{policy.tls_reports}@{domain}",
                ttl,
                "SMTP TLS reporting (RFC 8460)",
            )
        )
    for service in policy.srv_services:
        records.append(
            DnsRecord(
                f"{service.label}.{domain}",
                "SRV",
                f"{service.priority} 1 {service.port} {fqdn}",
                ttl,
                f"client setup (RFC 6186): {service.purpose}",
            )
        )
    for label, purpose in _CNAMES:
        name = f"{label}.{domain}"
        if name != host:  # a CNAME to itself would be a loop
            records.append(DnsRecord(name, "CNAME", fqdn, ttl, purpose))
    return DomainRecords(domain, tuple(records), sts_policy)


_CNAMES = (
    ("mta-sts", "MTA-STS policy host (HTTPS; its certificate must cover this name)"),
    ("autoconfig", "client autoconfiguration (Thunderbird)"),
    ("autodiscover", "client autoconfiguration (Outlook)"),
)


def _addresses(addresses: Iterable[str]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    result = []
    for text in addresses:
        try:
            result.append(ipaddress.ip_address(text))
        except ValueError:
            raise InvalidName(f"{text!r} is not an IP address") from None
    # IPv6 first, then IPv4, each in the order given; duplicates dropped.
    return sorted(dict.fromkeys(result), key=lambda ip: -ip.version)
