"""NOTIFY (RFC 1996): telling the secondaries that a hosted zone's serial moved, so they
transfer it now rather than at their next SOA refresh.

Implementation notes:

* Sent by the node whose zone build moved the serial (:mod:`pillarbox.dns.hosted`), to
  every address of ``[dns] notify``, over UDP: a QUERY-shaped message with opcode NOTIFY,
  AA set, the zone's SOA as its question and the new SOA record in its answer section (RFC
  1996 §3.7: a hint; a secondary that already holds that serial need not ask for the SOA
  before it decides not to transfer), signed with the transfer TSIG key when one is set (the
  secondary then checks it, and we check its signed answer).
* Sent from ``[dns] authoritative_address`` when that is one address of the target's
  family: a secondary heeds a NOTIFY only from a primary it knows (RFC 1996 §3.10), by the
  address it transfers from, and on a host with several addresses the kernel's choice of
  source may be another (on loopback, 127.0.0.1 whatever the address served). A wildcard
  address leaves the choice to the kernel.
* Sent again after ``notify_retry_interval`` seconds without an answer, at most
  :data:`RETRANSMISSIONS` times (RFC 1996 §3.6); an answer of any RCODE ends it. A newer
  serial of the same zone replaces the sending still going on for the older one.
* Every outcome is logged: answered (INFO); refused by the secondary (an error RCODE, or a
  TSIG error: Knot answers so for a NOTIFY from an address its ACL does not name), an
  answer that does not verify, or unanswered after the last retransmission (WARNING). A
  secondary never told still finds the change at its next SOA refresh (RFC 1034 §4.3.5).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rrset
import dns.tsig

from pillarbox.config import Config
from pillarbox.dns.resolver import parse_nameserver
from pillarbox.errors import ConfigError
from pillarbox.observability.log import Log

RETRANSMISSIONS = 5  # RFC 1996 §3.6: "a maximum of 5 retransmissions (for UDP)"

_log = Log("dns.notify")


@dataclass(frozen=True, slots=True)
class NotifyTarget:
    host: str
    port: int
    #: The address the NOTIFY is sent from; None: the kernel's choice (module notes).
    source: str | None = None


def notify_targets(config: Config) -> tuple[NotifyTarget, ...]:
    """The ``[dns] notify`` addresses (ConfigError for one that is not an address), each
    with the source address its NOTIFY goes from (module notes)."""
    targets = []
    for text in config.dns.notify:
        parsed = parse_nameserver(text, key="dns.notify")
        if parsed is None:
            raise ConfigError("dns.notify", "an empty address")
        host, port = parsed
        targets.append(NotifyTarget(host, port, _source(config.dns.authoritative_address, host)))
    return tuple(targets)


def _source(served: str, target: str) -> str | None:
    """``served`` (the authoritative server's address) when NOTIFY to ``target`` can go
    from it: one address, not a wildcard, of the same family."""
    try:
        address = ipaddress.ip_address(served)
    except ValueError:
        return None  # a host name: the listener binds what it resolves to
    if address.is_unspecified or address.version != ipaddress.ip_address(target).version:
        return None
    return served


def soa_record(line: str) -> dns.rrset.RRset:
    """A zone's SOA record from its zone-file line (``name TTL IN SOA …``)."""
    name, ttl, rdclass, rdtype, rdata = line.split(None, 4)
    return dns.rrset.from_text(name, int(ttl), rdclass, rdtype, rdata)


def soa_serial(soa: dns.rrset.RRset) -> int:
    rdata = soa[0]
    assert isinstance(rdata, dns.rdtypes.ANY.SOA.SOA)
    return int(rdata.serial)


def notify_message(soa: dns.rrset.RRset, key: dns.tsig.Key | None) -> dns.message.Message:
    """The NOTIFY of the zone whose SOA record is ``soa`` (RFC 1996 §3.7), signed with
    ``key`` if given."""
    message = dns.message.make_query(soa.name, dns.rdatatype.SOA)
    message.flags = dns.flags.AA  # RFC 1996 §3.7: AA set; RD clear
    message.set_opcode(dns.opcode.NOTIFY)
    message.answer.append(soa)  # RFC 1996 §3.7: "MAY … contain the SOA RR"; §3.11: a hint
    if key is not None:
        message.use_tsig(key)
    return message


class ZoneNotifier:
    """Sends the NOTIFYs of the zones whose serial moved (module notes)."""

    def __init__(
        self,
        targets: Sequence[NotifyTarget],
        *,
        key: dns.tsig.Key | None,
        retry_interval: float,
    ) -> None:
        self._targets = tuple(targets)
        self._key = key
        self._retry_interval = retry_interval
        #: Per zone and target, the serial being announced and the task announcing it.
        self._sending: dict[tuple[str, NotifyTarget], tuple[int, asyncio.Task[None]]] = {}

    def zone_changed(self, zone: str, soa: str) -> None:
        """Tell every target that ``zone`` now has the SOA record ``soa`` (a zone-file line;
        a target still being told of its serial is left to it: the announcement at start
        names the serial the first build may have just announced)."""
        record = soa_record(soa)
        serial = soa_serial(record)
        for target in self._targets:
            previous = self._sending.pop((zone, target), None)
            if previous is not None:
                if previous[0] == serial:
                    self._sending[zone, target] = previous
                    continue
                previous[1].cancel()  # superseded: the secondary will fetch the newest anyway
            task = asyncio.ensure_future(self._notify(zone, record, target))
            self._sending[zone, target] = serial, task
            task.add_done_callback(functools.partial(self._forget, (zone, target)))

    def _forget(self, key: tuple[str, NotifyTarget], task: asyncio.Task[None]) -> None:
        sending = self._sending.get(key)
        if sending is not None and sending[1] is task:
            del self._sending[key]

    async def close(self) -> None:
        """Stop every sending still going on."""
        tasks = [task for _, task in self._sending.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _notify(self, zone: str, soa: dns.rrset.RRset, target: NotifyTarget) -> None:
        message = notify_message(soa, self._key)
        where = {
            "zone": zone,
            "serial": soa_serial(soa),
            "secondary": f"{target.host}:{target.port}",
        }
        for attempt in range(1 + RETRANSMISSIONS):
            try:
                response = await dns.asyncquery.udp(
                    message,
                    target.host,
                    timeout=self._retry_interval,
                    port=target.port,
                    source=target.source,
                )
            except dns.exception.Timeout:
                continue
            except OSError as exc:  # unreachable now: wait as for a lost answer
                _log.debug("notify not sent", error=str(exc), **where)
                await asyncio.sleep(self._retry_interval)
                continue
            except dns.tsig.PeerError as exc:  # RFC 8945 §5.2: NOTAUTH with a TSIG error
                _log.warning("notify refused", rcode="NOTAUTH", error=str(exc), **where)
                return
            except dns.exception.DNSException as exc:  # its TSIG did not verify, or garbage
                _log.warning("notify answer unusable", error=str(exc), **where)
                return
            rcode = response.rcode()
            if rcode == dns.rcode.NOERROR:
                _log.info("notify answered", attempts=attempt + 1, **where)
            else:
                _log.warning("notify refused", rcode=dns.rcode.to_text(rcode), **where)
            return
        _log.warning("notify unanswered", attempts=1 + RETRANSMISSIONS, **where)
