"""``pillarbox dns check DOMAIN``: what the DNS publishes against what the domain needs.

Pure logic over the :class:`~pillarbox.dns.resolver.Resolver` protocol: the expected records come
from :func:`pillarbox.dns.records.required_records`, the found ones from lookups, and each
expected RRset yields one :class:`Finding`.

Comparison rules:

* A, AAAA, MX, SRV, CNAME: the set found at the name must equal the set expected (names compared
  case-insensitively, addresses in canonical form). A backup MX or an extra address is reported
  as WRONG with what differs: the operator decides whether it is intended.
* TXT records share names with unrelated TXT records (site verifications), so only the records of
  the same kind are compared: SPF records (``v=spf1``), or those with the expected ``v=`` tag; at
  a DKIM selector name, every record. Two records of one kind are WRONG (RFC 7208 §4.5, RFC 7489
  §6.6.3: receivers then ignore both). SPF compares terms in order, case-insensitively;
  tag-value records compare their tags, ignoring order and whitespace.
* A lookup that fails temporarily gives ERROR: nothing can be said about that record.
* The MX host's TLSA RRset (:func:`check_tlsa`) is compared with the certificate served, not
  with one expected value: any record of it matching is OK (RFC 7671 §8.1: during a key
  rollover the next key's record stands beside the current one). None matching is WRONG, and
  said loudly: every DANE sender then defers mail to us (RFC 7672 §2.2). A matching record for
  a key the next ACME renewal replaces is WRONG too, before it breaks. So is a matching RRset
  that is not DNSSEC-authenticated when the resolver's AD bit is trusted (``dns.trust_ad``):
  senders apply DANE only to a secure TLSA RRset (RFC 7672 §2.2), so an insecure one is a
  record without effect, which the operator who published it did not mean.
* The DS at the parent (:func:`check_ds`), for a zone our authoritative server serves, against
  the zone's keys when ``[dns] dnssec`` signs it: none is MISSING (resolvers take the zone as
  unsigned, harmless but no DANE), none naming a key of the zone's DNSKEY RRset is WRONG
  (validating resolvers then fail every name of the domain, RFC 4035 §5.2; during a rollover
  the next and the previous key count, as both sign that RRset); a DS published for a zone
  we serve unsigned is WRONG just as loudly.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pillarbox.dns.records import DnsRecord, tlsa_record
from pillarbox.dns.resolver import DnsTemporaryError, Resolver
from pillarbox.queue.dane import certificate_matches, parse_tlsa


class FindingStatus(enum.Enum):
    OK = "ok"
    MISSING = "missing"
    WRONG = "wrong"
    #: The lookup failed temporarily (SERVFAIL, timeout).
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Finding:
    """One expected RRset (name, type) and what the DNS has there."""

    name: str
    type: str
    purpose: str
    status: FindingStatus
    expected: tuple[str, ...]
    found: tuple[str, ...]
    detail: str = ""


async def check_records(resolver: Resolver, expected: Iterable[DnsRecord]) -> list[Finding]:
    """One finding per expected (name, type), in the order the records were given."""
    groups: dict[tuple[str, str], list[DnsRecord]] = {}
    for record in expected:
        if record.type == "TXT":
            # Each TXT record is its own finding: SPF and a verification record may share a name.
            groups[(record.name, f"TXT {record.value}")] = [record]
        else:
            groups.setdefault((record.name, record.type), []).append(record)
    return list(await asyncio.gather(*(_check(resolver, records) for records in groups.values())))


async def _check(resolver: Resolver, records: list[DnsRecord]) -> Finding:
    first = records[0]
    expected = tuple(r.value for r in records)
    try:
        if first.type == "TXT":
            found_txt = await resolver.txt(first.name)
            return _compare_txt(first, [t.decode("utf-8", "replace") for t in found_txt])
        found = tuple(await resolver.lookup(first.name, first.type))
    except DnsTemporaryError as exc:
        return Finding(
            first.name, first.type, first.purpose, FindingStatus.ERROR, expected, (), exc.problem
        )
    if not found:
        return Finding(first.name, first.type, first.purpose, FindingStatus.MISSING, expected, ())
    want = {_canonical(first.type, v) for v in expected}
    have = {_canonical(first.type, v) for v in found}
    if want == have:
        return Finding(first.name, first.type, first.purpose, FindingStatus.OK, expected, found)
    parts = []
    if want - have:
        parts.append("missing: " + ", ".join(sorted(want - have)))
    if have - want:
        parts.append("unexpected: " + ", ".join(sorted(have - want)))
    return Finding(
        first.name, first.type, first.purpose, FindingStatus.WRONG, expected, found,
        "; ".join(parts),
    )  # fmt: skip


async def check_tlsa(
    resolver: Resolver, mail_host: str, certificate_der: bytes, unstable: str
) -> Finding | None:
    """The finding for the TLSA RRset of ``mail_host``'s SMTP service against the certificate
    served (DER); ``unstable`` says why a record of its key would not last ("" when it would).
    None when no record is published and none is wanted."""
    expected = tlsa_record(mail_host, certificate_der)
    status, detail, found = FindingStatus.OK, "", tuple[str, ...]()
    try:
        answer = await resolver.records(expected.name, "TLSA")
    except DnsTemporaryError as exc:
        status, detail = FindingStatus.ERROR, exc.problem
    else:
        found = answer.records
        parsed = [t for t in map(parse_tlsa, found) if t is not None]
        if not found:
            if unstable:
                return None
            status = FindingStatus.MISSING
        elif certificate_matches(parsed, certificate_der) is None:
            status = FindingStatus.WRONG
            detail = (
                "MISMATCH: no record matches the certificate served; every DANE sender "
                "defers mail to this host until the record is fixed (RFC 7672 §2.2)"
            )
        elif unstable:
            status = FindingStatus.WRONG
            detail = f"matches now, but will not for long: {unstable}"
        elif not answer.authentic and resolver.trusts_ad:
            status = FindingStatus.WRONG
            detail = (
                "INSECURE: matches, but the answer is not DNSSEC-authenticated, so DANE "
                "senders ignore it (RFC 7672 §2.2) and DANE is not in effect; sign the "
                "zone and publish its DS"
            )
        elif not answer.authentic:
            detail = "matches; not checked whether DNSSEC authenticates it (dns.trust_ad)"
    return Finding(
        expected.name, "TLSA", expected.purpose, status, (expected.value,), found, detail
    )


async def parent_ds(resolver: Resolver, domain: str) -> tuple[str, ...]:
    """The DS values ``domain``'s parent publishes (``DnsTemporaryError`` if the lookup
    fails)."""
    return tuple(await resolver.lookup(domain, "DS"))


async def check_ds(
    resolver: Resolver, domain: str, expected: Sequence[DnsRecord]
) -> Finding | None:
    """The finding for ``domain``'s DS RRset at the parent against ``expected``, the DS of
    each key in the zone's DNSKEY RRset, any of which vouches for the zone (a rollover's
    next or previous key too; empty: the zone is not signed). None when neither is there."""
    purpose = "DNSSEC delegation signer, at the registrar"
    wanted = tuple(record.value for record in expected)
    status, detail, found = FindingStatus.OK, "", tuple[str, ...]()
    try:
        found = await parent_ds(resolver, domain)
    except DnsTemporaryError as exc:
        status, detail = FindingStatus.ERROR, exc.problem
    else:
        if not expected:
            if not found:
                return None
            status = FindingStatus.WRONG
            detail = (
                "the parent vouches for keys but the zone is not signed (dns.dnssec is off): "
                "validating resolvers fail every name of the domain; remove the DS"
            )
        elif not found:
            status = FindingStatus.MISSING
            detail = "the zone is signed, but resolvers take it as unsigned until this is published"
        elif not {canonical_ds(v) for v in wanted} & {canonical_ds(v) for v in found}:
            status = FindingStatus.WRONG
            detail = (
                "no DS names a key of the zone's DNSKEY RRset: validating resolvers fail "
                "every name of the domain (RFC 4035 §5.2)"
            )
    return Finding(domain, "DS", purpose, status, wanted, found, detail)


def canonical_ds(value: str) -> str:
    """A DS in one canonical spelling: key tag, algorithm, digest type, digest in lowercase
    hex without the spaces a presentation may split it with."""
    tokens = value.split()
    return " ".join([*tokens[:3], "".join(tokens[3:]).lower()])


def _canonical(rtype: str, value: str) -> str:
    if rtype in ("A", "AAAA"):
        try:
            return ipaddress.ip_address(value).compressed
        except ValueError:
            return value
    # MX, SRV, CNAME, NS: numbers and names; names are case-insensitive (RFC 4343).
    return " ".join(token.lower().rstrip(".") or "." for token in value.split())


def _version(value: str) -> str:
    """The ``v=`` tag that names a TXT record's kind (``v=spf1``, ``v=DMARC1``), lowercase."""
    head = value.strip().split(";", 1)[0].split(None, 1)
    return head[0].lower() if head and head[0].lower().startswith("v=") else ""


def _tags(value: str) -> dict[str, str]:
    """A tag-value list (RFC 6376 §3.2) as a dict; whitespace inside values is folding only."""
    tags = {}
    for part in value.split(";"):
        tag, sep, tag_value = part.partition("=")
        if sep:
            tags[tag.strip().lower()] = "".join(tag_value.split())
    return tags


def _same_txt(expected: str, found: str) -> bool:
    if _version(expected) == "v=spf1":
        return expected.lower().split() == found.lower().split()
    return _tags(expected) == _tags(found)


def _compare_txt(record: DnsRecord, found: list[str]) -> Finding:
    kind = _version(record.value)
    is_dkim = "._domainkey." in f".{record.name}."
    candidates = tuple(found if is_dkim or not kind else [t for t in found if _version(t) == kind])
    status, detail = FindingStatus.OK, ""
    if not candidates:
        status = FindingStatus.MISSING
    elif len(candidates) > 1:
        status, detail = FindingStatus.WRONG, "several records of this kind: receivers ignore all"
    elif not _same_txt(record.value, candidates[0]):
        status = FindingStatus.WRONG
    return Finding(record.name, "TXT", record.purpose, status, (record.value,), candidates, detail)


def format_findings(findings: Iterable[Finding]) -> str:
    """A plain-text report, one block per finding, for the CLI."""
    lines = []
    for f in findings:
        lines.append(f"[{f.status.value.upper():7}] {f.name} {f.type} ({f.purpose})")
        if f.status is not FindingStatus.OK:
            lines += [f"          expected: {v}" for v in f.expected]
            lines += [f"          found:    {v}" for v in f.found]
            if f.detail:
                lines.append(f"          {f.detail}")
    return "\n".join(lines) + "\n"
