"""The TXT records answering ACME DNS-01 challenges (RFC 8555 §8.4), published in the zones
our own authoritative DNS server serves for the hosted domains.

Implementation notes:

- A record is written to the store (``acme_challenges``), not kept in this process: every
  node serving the zone reads it from there (:class:`~pillarbox.dns.hosted.HostedZones`), so
  the CA's resolver gets it from whichever of our name servers it asks. This node's zone cache
  is told at once; the others see it within
  :data:`~pillarbox.dns.hosted.CHALLENGE_CACHE_SECONDS`, which :meth:`publish_and_wait` waits
  out after our own server answers.
- RFC 8555 §8.4: the client "SHOULD" make sure the record is answerable before responding to
  the challenge; we ask our own server (UDP, TCP if truncated) until each record's value is in
  its answer.
- A record carries an expiry (the attempt's timeout plus :data:`EXPIRY_MARGIN`): an attempt
  cut short by a crash leaves nothing published for long. Records are withdrawn when the
  attempt ends, validated or not.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dns.asyncquery
import dns.exception
import dns.message
import dns.rdatatype

from pillarbox.certificates import DNS01_LABEL
from pillarbox.dns.hosted import CHALLENGE_CACHE_SECONDS, HostedZones
from pillarbox.store.interface import Store
from pillarbox.store.types import AcmeChallengeRecord

#: Seconds a published record outlives the attempt's timeout if the attempt never withdraws it.
EXPIRY_MARGIN = 60.0
#: Seconds between two questions to our own server while a record is not yet answerable.
POLL_INTERVAL = 0.2
#: Seconds one question to our own server may take.
QUERY_TIMEOUT = 2.0


class NotAnswerable(Exception):
    """Our server did not answer a published record in time (the attempt fails)."""


@dataclass(frozen=True, slots=True)
class ChallengeRecord:
    """One DNS-01 answer: ``value`` under ``name`` in the zone of the hosted ``domain`` (empty
    for a zone served elsewhere, where the administrator's hook publishes it)."""

    domain: str
    name: str
    value: str

    @property
    def identifier(self) -> str:
        """The name being validated (RFC 8555 §8.4: the record is ``_acme-challenge.<it>``)."""
        return self.name.removeprefix(DNS01_LABEL + ".")


def _query_address(host: str) -> str:
    """Where to ask a server bound to ``host``: a wildcard address is asked on loopback."""
    address = ipaddress.ip_address(host)
    if address.is_unspecified:
        return "::1" if address.version == 6 else "127.0.0.1"
    return host


class AcmeChallengeRecords:
    """Publishes and withdraws DNS-01 records through the store, checked on our own server
    (bound to ``host``:``port``) whose zones come from ``zones``."""

    def __init__(self, store: Store, zones: HostedZones, host: str, port: int) -> None:
        self._store = store
        self._zones = zones
        self._address = _query_address(host)
        self._port = port

    async def hosted_domain_of(self, name: str) -> str | None:
        """The hosted domain whose zone holds ``name``; None: our server does not serve it."""
        return await self._zones.hosted_domain_of(name)

    async def publish_and_wait(self, records: Sequence[ChallengeRecord], timeout: float) -> None:
        """Publish ``records`` and return once our server answers each of them and the other
        nodes have had time to read them; :class:`NotAnswerable` after ``timeout`` seconds."""
        expires = datetime.now(UTC) + timedelta(seconds=timeout + EXPIRY_MARGIN)
        for record in records:
            await self._store.add_acme_challenge(
                AcmeChallengeRecord(record.domain, record.name, record.value, expires)
            )
            self._zones.forget_challenges(record.domain)
        loop = asyncio.get_running_loop()
        published = loop.time()
        deadline = published + timeout
        for record in records:
            while not await self._answers(record):
                if loop.time() > deadline:
                    raise NotAnswerable(
                        f"our DNS server at {self._address}:{self._port} does not answer "
                        f"{record.name} TXT {record.value}"
                    )
                await asyncio.sleep(POLL_INTERVAL)
        # Other nodes read the records from the store within CHALLENGE_CACHE_SECONDS.
        await asyncio.sleep(max(0.0, published + CHALLENGE_CACHE_SECONDS - loop.time()))

    async def withdraw(self, records: Sequence[ChallengeRecord]) -> None:
        """Remove ``records`` (those already gone are skipped)."""
        for record in records:
            await self._store.remove_acme_challenge(record.name, record.value)
            self._zones.forget_challenges(record.domain)

    async def _answers(self, record: ChallengeRecord) -> bool:
        """Whether our server's TXT answer for the record's name holds its value."""
        return record.value in await txt_values(self._address, self._port, record.name)


async def txt_values(host: str, port: int, name: str) -> list[str]:
    """The TXT values the server at ``host``:``port`` answers for ``name`` (none on NXDOMAIN,
    NODATA or no answer at all); a wildcard ``host`` is asked on loopback."""
    query = dns.message.make_query(name, dns.rdatatype.TXT)
    try:
        reply, _ = await dns.asyncquery.udp_with_fallback(
            query, _query_address(host), timeout=QUERY_TIMEOUT, port=port
        )
    except (dns.exception.DNSException, OSError):
        return []
    return [
        b"".join(rdata.strings).decode("ascii", "replace")
        for rrset in reply.answer
        if rrset.rdtype == dns.rdatatype.TXT
        for rdata in rrset
    ]
