"""NOTIFY to the secondaries (RFC 1996) from :class:`ZoneNotifier`, received on loopback by a
UDP peer standing in for a secondary (Knot DNS as the real one is in
tests/interop/test_dns_secondaries.py): the address it comes from, and how a secondary's
TSIG error is reported."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.tsig
import pytest

from pillarbox import config as cfg
from pillarbox.dns.authoritative import SoaSettings, StaticZone
from pillarbox.dns.notify import NotifyTarget, ZoneNotifier, notify_targets
from pillarbox.testing.live import free_port

KEY = dns.tsig.Key("xfr.a.test", base64.b64encode(bytes(range(32))), dns.tsig.HMAC_SHA256)
#: How the secondary answers a NOTIFY it received.
Answer = Callable[[dns.message.Message], dns.message.Message]


class _Secondary(asyncio.DatagramProtocol):
    def __init__(self, answer: Answer, port: int) -> None:
        self.answer = answer
        self.port = port
        self.sources: list[str] = []
        self.received: list[dns.message.Message] = []
        self.transport: asyncio.DatagramTransport | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        query = dns.message.from_wire(data, keyring={KEY.name: KEY})
        assert query.opcode() == dns.opcode.NOTIFY
        self.sources.append(str(addr[0]))
        self.received.append(query)
        assert self.transport is not None
        self.transport.sendto(self.answer(query).to_wire(), addr)


@pytest.fixture
async def secondary() -> AsyncIterator[Callable[[Answer], Awaitable[_Secondary]]]:
    """Starts a secondary on 127.0.0.1 answering with the function given."""
    transports: list[asyncio.DatagramTransport] = []

    async def start(answer: Answer) -> _Secondary:
        port = free_port("127.0.0.1")
        transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Secondary(answer, port), local_addr=("127.0.0.1", port)
        )
        transports.append(transport)
        protocol.transport = transport
        return protocol

    yield start
    for transport in transports:
        transport.close()


def notify_config(served: str, notify: str) -> cfg.Config:
    base = cfg.Config()
    return dataclasses.replace(
        base,
        dns=dataclasses.replace(
            base.dns, authoritative_enabled=True, authoritative_address=served, notify=(notify,)
        ),
    )


@pytest.mark.parametrize(
    ("served", "notify", "source"),
    [
        ("127.0.0.2", "127.0.0.1:5300", "127.0.0.2"),
        ("0.0.0.0", "127.0.0.1:5300", None),  # a wildcard: the kernel's choice
        ("::1", "127.0.0.1:5300", None),  # another family
        ("::1", "[::1]:5300", "::1"),
    ],
)
def test_notify_goes_from_the_address_served(served: str, notify: str, source: str | None) -> None:
    (target,) = notify_targets(notify_config(served, notify))
    assert target.source == source


def soa_line(serial: int) -> str:
    """a.test's SOA record as HostedZones gives it to the notifier."""
    return StaticZone("a.test", soa=SoaSettings(serial=serial)).soa.toZone()


async def notify_once(secondary: _Secondary, source: str) -> None:
    target = NotifyTarget("127.0.0.1", secondary.port, source)
    notifier = ZoneNotifier([target], key=KEY, retry_interval=2)
    notifier.zone_changed("a.test", soa_line(1_800_000_000))
    for _ in range(100):
        if secondary.sources:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # the answer read and logged
    await notifier.close()


async def test_the_secondary_sees_the_primary_address(
    secondary: Callable[[Answer], Awaitable[_Secondary]], caplog: pytest.LogCaptureFixture
) -> None:
    """RFC 1996 §3.10: a secondary heeds a NOTIFY only from a primary it knows, by the address
    it transfers from: ours, not the one the kernel picks (127.0.0.1 on loopback)."""
    caplog.set_level(logging.INFO, logger="pillarbox.dns.notify")
    peer = await secondary(dns.message.make_response)
    await notify_once(peer, "127.0.0.2")
    assert peer.sources == ["127.0.0.2"]
    assert [r.getMessage() for r in caplog.records] == ["notify answered"]


async def test_the_notify_carries_the_new_soa_as_its_hint(
    secondary: Callable[[Answer], Awaitable[_Secondary]],
) -> None:
    """RFC 1996 §3.7: the question is the zone's SOA, AA set, RD clear; the answer section
    holds the new SOA record (§3.11: a hint the secondary may use to skip its SOA query)."""
    peer = await secondary(dns.message.make_response)
    await notify_once(peer, "127.0.0.1")
    (query,) = peer.received
    assert query.opcode() == dns.opcode.NOTIFY
    assert query.flags & dns.flags.AA and not query.flags & dns.flags.RD
    assert [(str(q.name), q.rdtype) for q in query.question] == [("a.test.", dns.rdatatype.SOA)]
    (answer,) = query.answer
    assert answer.to_text() == (
        "a.test. 3600 IN SOA ns.a.test. hostmaster.a.test. 1800000000 3600 900 1209600 300"
    )
    assert query.had_tsig  # the hint is under the signature, as the question is


async def test_a_tsig_error_of_the_secondary_is_a_refusal(
    secondary: Callable[[Answer], Awaitable[_Secondary]], caplog: pytest.LogCaptureFixture
) -> None:
    """RFC 8945 §5.2: a secondary that will not take our key answers NOTAUTH with a TSIG
    error (Knot does so for a NOTIFY from an address its ACL does not name)."""

    def badkey(query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.set_rcode(dns.rcode.NOTAUTH)
        response.use_tsig(KEY, tsig_error=dns.rcode.BADKEY, original_id=query.id)
        return response

    caplog.set_level(logging.INFO, logger="pillarbox.dns.notify")
    peer = await secondary(badkey)
    await notify_once(peer, "127.0.0.1")
    (line,) = caplog.records
    assert line.getMessage() == "notify refused" and line.levelno == logging.WARNING


class _Silent(asyncio.DatagramProtocol):
    """A secondary that counts NOTIFYs and answers none (each stays under way)."""

    def __init__(self) -> None:
        self.received = 0

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.received += 1


async def test_a_serial_still_being_announced_is_not_sent_twice() -> None:
    """The announcement at start names the serial the first build may have just announced:
    the NOTIFY under way for it stands; a newer serial supersedes it."""
    port = free_port("127.0.0.1")
    transport, peer = await asyncio.get_running_loop().create_datagram_endpoint(
        _Silent, local_addr=("127.0.0.1", port)
    )
    notifier = ZoneNotifier([NotifyTarget("127.0.0.1", port, None)], key=None, retry_interval=30)
    try:
        notifier.zone_changed("a.test", soa_line(1_800_000_000))
        await asyncio.sleep(0.2)
        notifier.zone_changed("a.test", soa_line(1_800_000_000))
        await asyncio.sleep(0.2)
        assert peer.received == 1
        notifier.zone_changed("a.test", soa_line(1_800_000_001))
        await asyncio.sleep(0.2)
        assert peer.received == 2
    finally:
        await notifier.close()
        transport.close()
