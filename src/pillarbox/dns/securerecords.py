"""The records that make a hosted domain's DNS vouch for its mail: the MX host's DANE TLSA
(RFC 7672 §3.1.1) and, with ``[dns] dnssec``, the zone's DNSKEY RRset, its CDS and CDNSKEY
RRsets (:mod:`pillarbox.dns.cds`) and the DS records its parent publishes (RFC 4034 §2, §5),
during a key rollover each with what to do and when (:mod:`pillarbox.dns.rollover`).
``pillarbox dns records`` prints them after the domain's records and the admin's domain page
(and its API) shows them: both take the records and the wording from here, so an operator
reads the same advice in either place.

Unlike the domain's other records, these depend on more than the store: the TLSA on the
certificate served (offered only when its key stays, :func:`served_certificate`), the DS on
the zone's signing keys, made here the first time anyone asks (as the server would), so the
DS can reach the registrar before the first signed answer goes out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pillarbox import provisioning
from pillarbox.blocking import run_blocking
from pillarbox.config import Config
from pillarbox.dns.cds import ParentSignal, parent_signal
from pillarbox.dns.hosted import rollover_timing
from pillarbox.dns.records import DnsRecord, DomainRecords, tlsa_record
from pillarbox.dns.rollover import KeyRing, broken_key_fix, key_ring
from pillarbox.net.acmefiles import served_certificate
from pillarbox.store.interface import Store


@dataclass(frozen=True, slots=True, kw_only=True)
class SecureRecords:
    """The TLSA of the MX host and the zone's DNSKEY and DS records, or why there are none."""

    #: The MX host (``server.hostname``), whose zone holds the TLSA.
    mail_host: str
    #: The TLSA record, None when the certificate's key may change (``no_tlsa`` says why).
    tlsa: DnsRecord | None
    no_tlsa: str
    #: The zone's keys; None when ``[dns] dnssec`` is off.
    ring: KeyRing | None
    #: The DS records the parent should publish now (:meth:`KeyRing.parent_ds`).
    parent_ds: tuple[DnsRecord, ...]
    #: The CDS and CDNSKEY RRsets the server publishes (``dns.dnssec_cds``); None: none.
    signal: ParentSignal | None
    #: TTL of the DNSKEY and DS lines: that of the domain's own records.
    ttl: int

    @property
    def dnskeys(self) -> tuple[DnsRecord, ...]:
        """The zone's DNSKEY RRset: the active key's first, then a rollover's other key."""
        if self.ring is None:
            return ()
        return tuple(k.key.dnskey_record(self.ttl, k.state.value) for k in self.ring.keys)

    @property
    def dnskey(self) -> DnsRecord | None:
        """The active key's DNSKEY (None: unsigned, or the key does not load)."""
        active = None if self.ring is None else self.ring.active
        return None if active is None else active.key.dnskey_record(self.ttl, "active")

    @property
    def ds(self) -> DnsRecord | None:
        """The active key's DS: the first the parent should publish."""
        active = None if self.ring is None else self.ring.active
        return self.parent_ds[0] if active is not None and self.parent_ds else None

    @property
    def cds_records(self) -> tuple[DnsRecord, ...]:
        """The CDS and CDNSKEY records the server publishes at the apex."""
        if self.signal is None or self.ring is None:
            return ()
        return tuple(self.signal.records(self.ring.domain, self.ttl))

    def records(self) -> tuple[DnsRecord, ...]:
        """The TLSA, the DNSKEYs, the CDS/CDNSKEY and the DS records there are, in that
        order."""
        tlsa = () if self.tlsa is None else (self.tlsa,)
        return (*tlsa, *self.dnskeys, *self.cds_records, *self.parent_ds)

    def tlsa_note(self) -> str:
        if self.tlsa is None:
            return f"DANE: no TLSA record offered for {self.mail_host}: {self.no_tlsa}"
        return (
            f"{self.tlsa.purpose}, in the zone of {self.mail_host}: honoured only where that "
            "zone is DNSSEC-signed; publish the next key's record beside it before the key "
            "changes"
        )

    def dnssec_notes(self) -> list[str]:
        """What the DNSKEY and DS records are for, the rollover under way, or why none."""
        ring = self.ring
        if ring is None:
            return ["DNSSEC: the zone is not signed (dns.dnssec is off; see docs/dane.md)"]
        notes = [f"DNSSEC: {why}; {broken_key_fix(ring.domain)}" for _row, why in ring.broken]
        active = ring.active
        if active is None:
            return [*notes, "DNSSEC: the zone is served unsigned: its active key does not load"]
        if len(ring.keys) > 1:
            notes.append(
                f"DNSSEC: a key rollover is under way: `pillarbox dns rollover {ring.domain} "
                "--status` says what to do next"
            )
        notes.append(
            f"DNSSEC: our DNS server signs the zone with the active key (tag "
            f"{active.key.key_tag}); the DNSKEY RRset:"
        )
        if self.signal is not None:
            notes.append(self.signal.note())
        notes.append(
            "give the registrar the DS record(s) for the parent zone (or the DNSKEY if it "
            "asks for a key), as each says:"
        )
        return notes

    def notes(self) -> list[str]:
        """What to do with each record, or why it is missing: the comments of :meth:`lines`."""
        return [self.tlsa_note(), *self.dnssec_notes()]

    def lines(self) -> list[str]:
        """Zone-file lines saying what to publish, each note a comment: the TLSA record itself,
        the DNSKEYs and the DS records commented out (the server publishes the one, the
        registrar the other)."""
        lines = [f"; {self.tlsa_note()}"]
        if self.tlsa is not None:
            lines.append(self.tlsa.zone_line())
        *notes, registrar = self.dnssec_notes()
        if not self.dnskeys:
            return [*lines, *(f"; {note}" for note in (*notes, registrar))]
        lines += [f"; {note}" for note in notes]
        lines += [f";   {record.zone_line()}" for record in self.dnskeys]
        lines += [f";   {record.zone_line()}" for record in self.cds_records]
        lines.append(f"; {registrar}")
        for record in self.parent_ds:
            lines += [f";   ({record.purpose})", f";   {record.zone_line()}"]
        return lines


def zone_text(records: DomainRecords, secure: SecureRecords) -> str:
    """The zone-file fragment ``dns records`` prints: the domain's records, then the lines
    saying what to publish for DANE and DNSSEC."""
    return records.zone() + "".join(line + "\n" for line in secure.lines())


async def config_key_ring(store: Store, config: Config, domain: str) -> KeyRing | None:
    """The keys ``domain``'s zone is signed with (an active one made now if the zone has none
    yet: the one the server then signs with; a retired key past its time removed); None
    when ``[dns] dnssec`` is off."""
    if not config.dns.dnssec:
        return None
    name = provisioning.normalise_domain(domain)
    return await key_ring(store, name, datetime.now(UTC), rollover_timing(config))


async def secure_records(store: Store, config: Config, domain: str, ttl: int) -> SecureRecords:
    """The TLSA, DNSKEYs and DS records for hosted ``domain``, with ``ttl`` for the DNSKEY
    and DS."""
    host = config.server.hostname
    der, unstable = await run_blocking(served_certificate, config)  # reads the certificate
    tlsa = None if der is None or unstable else tlsa_record(host, der)
    ring = await config_key_ring(store, config, domain)
    timing = rollover_timing(config)
    now = datetime.now(UTC)
    parent_ds = () if ring is None else tuple(ring.parent_ds(timing, now, ttl))
    signal = None if ring is None else parent_signal(ring, timing, now, config.dns.dnssec_cds)
    return SecureRecords(
        mail_host=host,
        tlsa=tlsa,
        no_tlsa=unstable,
        ring=ring,
        parent_ds=parent_ds,
        signal=signal,
        ttl=ttl,
    )
