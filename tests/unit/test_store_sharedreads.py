"""SharedReads: concurrent callers share reads, but never one that began before their call."""

from __future__ import annotations

import asyncio

import pytest

from pillarbox.store.sharedreads import SharedReads


class _Source:
    """A value that callers bump; each read returns it after a hop, as a database read does."""

    def __init__(self) -> None:
        self.value = 0
        self.reads = 0
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def read(self, key: str) -> tuple[str, int]:
        self.reads += 1
        self.started.set()
        seen = self.value  # the snapshot is taken when the read starts
        await self.release.wait()
        return key, seen


async def test_callers_during_a_read_share_the_next_one_which_sees_their_change() -> None:
    source = _Source()
    reads = SharedReads(source.read)
    early = asyncio.ensure_future(reads.get("box"))
    await source.started.wait()  # the first read has begun, with value 0
    source.value = 1  # a change committed; the callers below were woken by it
    late = [asyncio.ensure_future(reads.get("box")) for _ in range(100)]
    await asyncio.sleep(0)
    source.release.set()
    assert await early == ("box", 0)
    assert {await f for f in late} == {("box", 1)}
    assert source.reads == 2


async def test_keys_are_read_separately_and_a_lone_caller_reads_at_once() -> None:
    source = _Source()
    source.release.set()
    reads = SharedReads(source.read)
    assert await asyncio.gather(reads.get("a"), reads.get("b")) == [("a", 0), ("b", 0)]
    source.value = 2
    assert await reads.get("a") == ("a", 2)
    assert source.reads == 3


async def test_errors_reach_every_sharer_and_a_cancelled_caller_leaves_the_read() -> None:
    calls = 0
    gate = asyncio.Event()
    started = asyncio.Event()

    async def failing(key: int) -> int:
        nonlocal calls
        calls += 1
        started.set()
        await gate.wait()
        raise LookupError(key)

    reads = SharedReads(failing)
    first = asyncio.ensure_future(reads.get(7))
    await started.wait()
    queued = [asyncio.ensure_future(reads.get(7)) for _ in range(3)]
    await asyncio.sleep(0)
    queued[0].cancel()
    gate.set()
    with pytest.raises(LookupError):
        await first
    for future in queued[1:]:
        with pytest.raises(LookupError):
            await future
    assert queued[0].cancelled()
    assert calls == 2
