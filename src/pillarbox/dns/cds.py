"""The CDS and CDNSKEY RRsets at a signed hosted zone's apex (RFC 7344 §3, §4; RFC 8078): the
DS set the zone asks its parent to hold, for the parents that scan their children and update
the DS themselves (the .ch, .cz, .se and .nl registries, some registrars), so a key rollover
(:mod:`pillarbox.dns.rollover`) needs no visit to the registrar. It does no I/O: the clock
is an argument.

Implementation notes:

* **What they name** is :meth:`~pillarbox.dns.rollover.KeyRing.parent_keys`: the active key;
  during a rollover also the next key, from the time every cache holds the DNSKEY RRset
  naming it (step 2), never before; after ``--finish`` the new key alone, so the parent
  drops the retired key's DS. A parent acts on what it reads (RFC 7344 §4.1: the CDS set
  replaces its DS set), so a DS it should not hold yet must never appear: a DS set naming
  only a key that caches do not yet hold in the DNSKEY RRset makes the zone bogus (RFC 4035
  §5.2). At every step the set published is one whose every DS names a key in the cached
  DNSKEY RRset, signing it (the rollover's notes), so whatever scan picks it up, and
  whenever, validation holds. The CDS carries digest type 2, SHA-256 (RFC 8624 §3.3; RFC
  7344 §3.2: the DS fields), the CDNSKEY the DNSKEY's fields (RFC 7344 §3.1).
* **Signed by every key of the DNSKEY RRset**, as that RRset is (:class:`~pillarbox.dns.
  signing.ZoneSigner`): RFC 7344 §4.1 wants them signed by a key the parent's current DS
  names, and the parent may hold the old key's DS, both, or only the new one's.
* **Published by default** (``dns.dnssec_cds = "publish"`` whenever ``dns.dnssec`` is on):
  the set is always one the parent may hold (above), so a parent that acts on it breaks
  nothing, and without it the operator carries each DS by hand. A parent whose DS set
  already matches does nothing; one that holds no DS yet may take the set after its own
  checks (RFC 8078 §3), which is what turning ``dns.dnssec`` on asks for. ``off`` is for
  an operator who wants every DS change made by hand.
* **Leaving DNSSEC** (RFC 8078 §4): ``dns.dnssec_cds = "delete"`` publishes the delete
  request, CDS ``0 0 0 00`` and CDNSKEY ``0 3 0 AA==``, each alone in its RRset, while the
  zone stays signed: the parent validates the request with the DS it holds, so an unsigned
  zone cannot make it. Once the parent shows no DS and its TTL has passed, ``dns.dnssec``
  may go off (docs/dane.md). A zone whose active key does not load is served unsigned and
  publishes neither RRset.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import dns.dnssec
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from pillarbox.dns.records import DnsRecord
from pillarbox.dns.rollover import KeyRing, RolloverTiming
from pillarbox.dns.signing import DS_DIGEST, ZoneKey, rdata_wire

#: ``dns.dnssec_cds``: what the signed zones ask of their parents (module notes).
CdsMode = Literal["publish", "delete", "off"]
#: RFC 8078 §4: the CDS and CDNSKEY asking the parent to remove the DS RRset.
DELETE_CDS = "0 0 0 00"
DELETE_CDNSKEY = "0 3 0 AA=="


@dataclass(frozen=True, slots=True)
class ParentSignal:
    """A zone's CDS and CDNSKEY RRsets, and the keys they name (none: the delete request)."""

    cds: tuple[dns.rdata.Rdata, ...]
    cdnskey: tuple[dns.rdata.Rdata, ...]
    keys: tuple[ZoneKey, ...]

    @property
    def delete(self) -> bool:
        return not self.keys

    def rrsets(self) -> tuple[tuple[int, tuple[bytes, ...]], ...]:
        """The two RRsets as (type, rdatas in wire form), as a zone serves them."""
        return (
            (dns.rdatatype.CDS, tuple(rdata_wire(r) for r in self.cds)),
            (dns.rdatatype.CDNSKEY, tuple(rdata_wire(r) for r in self.cdnskey)),
        )

    def records(self, origin: str, ttl: int) -> list[DnsRecord]:
        """The records as ``dns records`` shows them, the server's to publish."""
        purpose = (
            "served by our DNS server: the RFC 8078 delete request, a parent that scans "
            "removes the DS"
            if self.delete
            else "served by our DNS server: the DS set for a parent that scans, key tag(s) "
            + ", ".join(str(k.key_tag) for k in self.keys)
        )
        return [
            # chunksize 0: the key or digest in one piece, as the DNSKEY and DS are shown
            DnsRecord(origin, dns.rdatatype.to_text(r.rdtype), r.to_text(chunksize=0), ttl, purpose)
            for r in (*self.cds, *self.cdnskey)
        ]

    def note(self) -> str:
        """What the published RRsets ask, for the operator."""
        if self.delete:
            return (
                "CDS/CDNSKEY: the zone asks its parent to remove the DS (dns.dnssec_cds = "
                "'delete'); turn dns.dnssec off only once the parent shows no DS and its TTL "
                "has passed"
            )
        tags = ", ".join(str(k.key_tag) for k in self.keys)
        return (
            f"CDS/CDNSKEY published, naming key(s) {tags}: a parent that scans for them "
            "(RFC 7344, 8078) picks the DS set up by itself; others need it from the registrar"
        )


def parent_signal(
    ring: KeyRing, timing: RolloverTiming, now: datetime, mode: CdsMode
) -> ParentSignal | None:
    """The CDS and CDNSKEY RRsets ``ring``'s zone serves at ``now`` (module notes); None when
    it serves none (``off``, or no active key: the zone is unsigned)."""
    if mode == "off" or ring.active is None:
        return None
    if mode == "delete":  # RFC 8078 §4: alone in its RRset
        return ParentSignal(
            (dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.CDS, DELETE_CDS),),
            (dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.CDNSKEY, DELETE_CDNSKEY),),
            (),
        )
    keys = ring.parent_keys(timing, now)
    return ParentSignal(
        tuple(dns.dnssec.make_cds(key.name, key.dnskey, DS_DIGEST) for key in keys),
        tuple(
            dns.rdata.from_wire(
                dns.rdataclass.IN, dns.rdatatype.CDNSKEY, key.dnskey_wire, 0, len(key.dnskey_wire)
            )
            for key in keys
        ),
        keys,
    )
