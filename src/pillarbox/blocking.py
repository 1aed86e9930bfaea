"""The one bounded executor for blocking work (STYLE §9): password hashing, parsing big messages.

The event loop must never block on CPU-heavy or blocking calls; everything of that kind goes
through :func:`run_blocking`, so the number of worker threads stays bounded and configured in one
place. The store backends own their I/O threads (they need a dedicated writer for group commit).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None
_workers = 4


def configure(workers: int) -> None:
    """Set the pool size; takes effect for the next pool created (call before serving)."""
    global _workers
    _workers = max(1, workers)


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(
            max_workers=_workers, thread_name_prefix="pillarbox-blocking"
        )
    return _executor


async def run_blocking(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``fn`` on the shared bounded pool and await its result."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), functools.partial(fn, *args, **kwargs))


#: Work on one message (parsing, tokenising, DKIM and ARC verification) runs on the event loop up
#: to this size.
#: It holds the GIL on a pool thread too, so for a mail-sized message the loop waits just as
#: long and the hand-off to the thread and back is pure cost; past it, the interpreter's
#: thread switching (every few ms) keeps one huge message from stalling every session.
INLINE_SIZE = 256 * 1024


async def run_sized(size: int, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` on the loop if ``size`` is at most :data:`INLINE_SIZE`, else
    on the pool (:func:`run_blocking`)."""
    if size <= INLINE_SIZE:
        return fn(*args, **kwargs)
    return await run_blocking(fn, *args, **kwargs)


def shutdown() -> None:
    """Stop the pool (at the end of ``serve``); a later :func:`run_blocking` makes a new one."""
    global _executor
    if _executor is not None:
        _executor.shutdown(wait=True)
        _executor = None
