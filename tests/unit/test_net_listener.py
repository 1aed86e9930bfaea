"""What a listener's accepted connections are given by the loop itself, over a real loopback
connection on asyncio's loop and uvloop: :mod:`pillarbox.net.listener` relies on it."""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvloop

from pillarbox.net.channel import Channel
from pillarbox.net.listener import Admission, ConnectionCounter, ConnectionLimits, Listener


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_accepted_tcp_connections_send_without_delay(loop: str, host: str) -> None:
    """TCP_NODELAY is on for every accepted TCP connection (replies are small and each is
    awaited by the client: Nagle's algorithm would hold them for the peer's delayed ACK)."""
    if host == "::1" and not socket.has_ipv6:
        pytest.skip("no IPv6")

    async def scenario() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def handler(channel: Channel, admission: Admission) -> None:
            sock = channel.extra("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        listener = Listener("test", handler, ConnectionCounter(ConnectionLimits()))
        await listener.start(host, 0)
        _, writer = await asyncio.open_connection(host, listener.ports[0][1])
        try:
            async with asyncio.timeout(30):
                return await seen
        finally:
            writer.close()
            listener.stop_accepting()
            await listener.finish(5)

    runner = uvloop.run if loop == "uvloop" else asyncio.run
    assert runner(scenario()) != 0


def test_connections_are_counted_per_client_and_released() -> None:
    counter = ConnectionCounter(ConnectionLimits(total=3, per_address=2))
    assert counter.admit("192.0.2.1") == ""
    assert counter.admit("::ffff:192.0.2.1") == ""  # the same client, IPv4-mapped
    assert counter.admit("192.0.2.1") == "too many connections from your address"
    assert counter.admit(None) == ""  # a reverse proxy's: the total only
    assert counter.admit("192.0.2.2") == "too many connections"
    counter.release("192.0.2.1")
    assert counter.admit("192.0.2.1") == ""
    for address in ("192.0.2.1", "192.0.2.1", None):
        counter.release(address)
    assert (counter.total, counter.by_address) == (0, {})
