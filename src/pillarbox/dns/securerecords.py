"""The records that make a hosted domain's DNS vouch for its mail: the MX host's DANE TLSA
(RFC 7672 §3.1.1) and, with ``[dns] dnssec``, the zone's DNSKEY and the DS its parent
publishes (RFC 4034 §2, §5). ``pillarbox dns records`` prints them after the domain's records
and the admin's domain page (and its API) shows them: both take the records and the wording
from here, so an operator reads the same advice in either place.

Unlike the domain's other records, these depend on more than the store: the TLSA on the
certificate served (offered only when its key stays, :func:`served_certificate`), the DS on
the zone's signing key, made here the first time anyone asks (as the server would), so the
DS can reach the registrar before the first signed answer goes out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pillarbox import provisioning
from pillarbox.blocking import run_blocking
from pillarbox.config import Config
from pillarbox.dns.hosted import zone_key
from pillarbox.dns.records import DnsRecord, DomainRecords, tlsa_record
from pillarbox.dns.signing import ZoneKey
from pillarbox.net.acmefiles import served_certificate
from pillarbox.store.interface import Store


@dataclass(frozen=True, slots=True, kw_only=True)
class SecureRecords:
    """The TLSA of the MX host and the zone's DNSKEY and DS, or why there are none."""

    #: The MX host (``server.hostname``), whose zone holds the TLSA.
    mail_host: str
    #: The TLSA record, None when the certificate's key may change (``no_tlsa`` says why).
    tlsa: DnsRecord | None
    no_tlsa: str
    #: The zone's signing key; None when ``[dns] dnssec`` is off.
    key: ZoneKey | None
    #: TTL of the DNSKEY and DS lines: that of the domain's own records.
    ttl: int

    @property
    def dnskey(self) -> DnsRecord | None:
        return None if self.key is None else self.key.dnskey_record(self.ttl)

    @property
    def ds(self) -> DnsRecord | None:
        return None if self.key is None else self.key.ds_record(self.ttl)

    def records(self) -> tuple[DnsRecord, ...]:
        """The TLSA, DNSKEY and DS there are, in that order."""
        found = (self.tlsa, self.dnskey, self.ds)
        return tuple(record for record in found if record is not None)

    def notes(self) -> list[str]:
        """What to do with each record, or why it is missing: the comments of :meth:`lines`."""
        if self.tlsa is None:
            tlsa = f"DANE: no TLSA record offered for {self.mail_host}: {self.no_tlsa}"
        else:
            tlsa = (
                f"{self.tlsa.purpose}, in the zone of {self.mail_host}: honoured only where that "
                "zone is DNSSEC-signed; publish the next key's record beside it before the key "
                "changes"
            )
        if self.key is None:
            return [tlsa, "DNSSEC: the zone is not signed (dns.dnssec is off; see docs/dane.md)"]
        return [
            tlsa,
            f"DNSSEC: our DNS server signs the zone with this key (tag {self.key.key_tag}):",
            "give the registrar this DS record for the parent zone (or the DNSKEY if it asks "
            "for a key):",
        ]

    def lines(self) -> list[str]:
        """Zone-file lines saying what to publish, each note a comment: the TLSA record itself,
        the DNSKEY and DS commented out (they go to the registrar, not into the zone)."""
        tlsa_note, *dnssec_notes = (f"; {note}" for note in self.notes())
        tlsa = [tlsa_note] if self.tlsa is None else [tlsa_note, self.tlsa.zone_line()]
        if self.key is None:
            return tlsa + dnssec_notes
        key_note, registrar_note = dnssec_notes
        return [
            *tlsa,
            key_note,
            f";   {self.key.dnskey_record(self.ttl).zone_line()}",
            registrar_note,
            f";   {self.key.ds_record(self.ttl).zone_line()}",
        ]


def zone_text(records: DomainRecords, secure: SecureRecords) -> str:
    """The zone-file fragment ``dns records`` prints: the domain's records, then the lines
    saying what to publish for DANE and DNSSEC."""
    return records.zone() + "".join(line + "\n" for line in secure.lines())


async def config_zone_key(store: Store, config: Config, domain: str) -> ZoneKey | None:
    """The key ``domain``'s zone is signed with (made now if the zone has none yet: the one
    the server then signs with); None when ``[dns] dnssec`` is off."""
    if not config.dns.dnssec:
        return None
    return await zone_key(store, provisioning.normalise_domain(domain), datetime.now(UTC))


async def secure_records(store: Store, config: Config, domain: str, ttl: int) -> SecureRecords:
    """The TLSA, DNSKEY and DS for hosted ``domain``, with ``ttl`` for the DNSKEY and DS."""
    host = config.server.hostname
    der, unstable = await run_blocking(served_certificate, config)  # reads the certificate
    tlsa = None if der is None or unstable else tlsa_record(host, der)
    return SecureRecords(
        mail_host=host,
        tlsa=tlsa,
        no_tlsa=unstable,
        key=await config_zone_key(store, config, domain),
        ttl=ttl,
    )
