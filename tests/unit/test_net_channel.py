"""The channel's timed waits over a real loopback connection, on asyncio's loop and uvloop:
one timer serves every wait (see the module notes) and times each out at its own deadline."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import Awaitable, Callable

import pytest
import uvloop

from pillarbox.net.channel import Channel

Scenario = Callable[[Channel, asyncio.StreamWriter], Awaitable[None]]


async def _connected(scenario: Scenario) -> bool:
    """Run ``scenario`` on the server side of a loopback connection; whether the channel is
    still held by anything once both ends closed it (checked while the loop still runs)."""
    made: list[Channel] = []
    accepted = asyncio.Event()

    def factory() -> Channel:
        made.append(Channel())
        accepted.set()
        return made[-1]

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    await accepted.wait()
    channel = made.pop()
    await channel.wait_connected()
    try:
        async with asyncio.timeout(30):  # a timer that never fired fails, not hangs
            await scenario(channel, writer)
    finally:
        writer.close()
        await writer.wait_closed()
        channel.transport.close()
        server.close()
        await server.wait_closed()
    for _ in range(20):  # connection_lost comes on a later turn of the loop
        await asyncio.sleep(0.01)
    held = weakref.ref(channel)
    del channel
    gc.collect()
    return held() is not None


def _run(loop: str, scenario: Scenario) -> bool:
    runner = uvloop.run if loop == "uvloop" else asyncio.run
    return runner(_connected(scenario))


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_each_wait_times_out_at_its_own_deadline(loop: str) -> None:
    async def scenario(channel: Channel, writer: asyncio.StreamWriter) -> None:
        writer.write(b"first")
        assert await channel.receive(300) == b"first"  # leaves a timer 300 s out
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await channel.receive(0.1)  # earlier than that timer: a timer of its own
        assert 0.05 < time.monotonic() - started < 5
        # Waits shorter than their timeout add up past it without harm, each its own.
        for _ in range(3):
            asyncio.get_running_loop().call_later(0.1, writer.write, b"more")
            assert await channel.receive(0.25) == b"more"
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await channel.receive(0.25)  # the timer set for an earlier wait re-arms
        assert 0.2 < time.monotonic() - started < 5

    _run(loop, scenario)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_second_receive_is_refused_and_the_first_still_served(loop: str) -> None:
    """One wait at a time (the channel wakes one waiter): a second is a caller's bug, refused
    without disturbing the first's deadline or data."""

    async def scenario(channel: Channel, writer: asyncio.StreamWriter) -> None:
        first = asyncio.ensure_future(channel.receive(300))
        await asyncio.sleep(0.05)
        with pytest.raises(RuntimeError):
            await channel.receive(0.01)
        writer.write(b"data")
        assert await first == b"data"
        with pytest.raises(TimeoutError):
            await channel.receive(0.05)  # the refused wait left no state behind

    _run(loop, scenario)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_lost_connection_leaves_no_timer_holding_the_channel(loop: str) -> None:
    async def scenario(channel: Channel, writer: asyncio.StreamWriter) -> None:
        writer.write(b"x")
        assert await channel.receive(600) == b"x"
        asyncio.get_running_loop().call_later(0.05, writer.close)
        assert await channel.receive(600) == b""

    assert not _run(loop, scenario)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_close_waits_for_a_paused_write_to_drain(loop: str) -> None:
    """A peer not reading pauses our writing: close waits (up to its bound) until what was
    written has gone, and only then closes; with nothing paused it closes at once."""
    size = 32 * 1024 * 1024  # past any socket buffer: the transport must pause writing

    async def scenario() -> None:
        made: list[Channel] = []
        accepted = asyncio.Event()

        def factory() -> Channel:
            made.append(Channel())
            accepted.set()
            return made[-1]

        server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await accepted.wait()
        channel = made.pop()
        await channel.wait_connected()
        try:
            async with asyncio.timeout(30):
                channel.write(b"x" * size)
                closing = asyncio.ensure_future(channel.close())
                await asyncio.sleep(0.2)
                assert not closing.done()  # the reader has not read: still draining
                assert len(await reader.readexactly(size)) == size
                await closing
                assert await reader.read() == b""
                idle = Channel()
                assert await idle.close() is None  # never connected: nothing to do
        finally:
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()

    runner = uvloop.run if loop == "uvloop" else asyncio.run
    runner(scenario())
