"""The catalog zone (RFC 9432): the list of hosted domains as a zone of its own, so that a
secondary name server configured once with the catalog serves every hosted domain, a domain
added later included, and drops a removed one, with no change on the secondary.

Implementation notes:

- Schema version 2 (§4.2: ``version.<catalog> TXT "2"``, the one record of its RRset); the
  apex NS is ``invalid.`` (§4.1: the zone is never resolved, only transferred).
- Each member is one PTR at ``<unique-N>.zones.<catalog>`` naming the domain (§4.3), the
  only record of its RRset. unique-N is the hex SHA-1 of the domain's wire form: the same on
  every node of a cluster, and the same for the member's whole life, since a new unique-N
  for the same member tells the consumers to start the zone afresh (§5). A domain removed
  and added again gets its old unique-N back, which is fine: the consumers dropped it when
  it left.
- No properties (§4.4: ``coo``, ``group``): every member is transferred alike.
- The zone is served like any other (its names are hashes, so a query cannot list the
  members); a transfer of it is allowed exactly as a hosted zone's is (``dns.transfer_allowed``
  and the TSIG key), and its serial moves and is announced like theirs
  (:mod:`pillarbox.dns.hosted`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from pillarbox.dns.records import DnsRecord

#: The only schema version this producer writes (RFC 9432 §4.2).
SCHEMA_VERSION = "2"
#: The apex NS of a catalog zone (RFC 9432 §4.1).
NOWHERE = "invalid"
#: TTL of the catalog's records: never cached by a resolver, read only by transfer.
CATALOG_TTL = 0


def member_label(domain: str) -> str:
    """The unique-N of ``domain`` (lowercase A-labels, no final dot): the hex SHA-1 of its
    wire form (RFC 1035 §3.1: each label length-prefixed, then the root's zero octet)."""
    wire = b"".join(bytes([len(label)]) + label.encode() for label in domain.split("."))
    return hashlib.sha1(wire + b"\0", usedforsecurity=False).hexdigest()


def catalog_records(catalog: str, members: Iterable[str]) -> tuple[DnsRecord, ...]:
    """The records of the catalog zone ``catalog`` listing ``members`` (both lowercase
    A-labels, no final dot), its apex NS included, in a stable order."""
    records = [
        DnsRecord(catalog, "NS", f"{NOWHERE}.", CATALOG_TTL, "catalog zone, never resolved"),
        DnsRecord(f"version.{catalog}", "TXT", SCHEMA_VERSION, CATALOG_TTL, "catalog schema"),
    ]
    records += [
        DnsRecord(f"{member_label(m)}.zones.{catalog}", "PTR", f"{m}.", CATALOG_TTL, "member")
        for m in sorted(set(members))
    ]
    return tuple(records)
