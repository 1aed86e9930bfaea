"""The schedule of the server's periodic jobs (DMARC and TLS-RPT reports, retention): runs
aligned to multiples of an interval since the epoch, so every node of a cluster wakes for the
same period (a report job then claims its period in the store). A module of its own, so that
importing one job loads the schedule and not another job's machinery."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from pillarbox.observability.log import Log

if TYPE_CHECKING:
    from pillarbox.services import Services


def period_end(now: float, interval: float) -> int:
    """The last period boundary at or before ``now``."""
    return int(math.floor(now / interval) * interval)


async def run_periodically(
    services: Services,
    interval: float,
    job: Callable[[int], Awaitable[object]],
    log: Log,
    *,
    max_delay: float = 0.0,
) -> None:
    """Run ``job(boundary)`` at each period boundary (multiples of ``interval`` since the
    epoch) until shutdown: the schedule of every periodic report (DMARC, TLS-RPT) and of the
    retention job.

    With ``max_delay`` (below ``interval``) each run waits a random time up to it after its
    boundary (RFC 8460 §4.1), drawn anew each period and on each node: the first node to wake
    claims the period in the store and sends, the others find it claimed. A node started
    within that window of a boundary still runs for it (the claim stops a second send)."""
    last: int | None = None
    while not services.shutdown.is_set():
        now = time.time()
        boundary = period_end(now, interval)  # the last one: still due within its window
        if last is not None or not max_delay or now - boundary >= max_delay:
            boundary = period_end(now + interval, interval)
        if last is not None and boundary <= last:
            # A timer that fired early must not run the same period twice.
            boundary = period_end(last + interval, interval)
        due = boundary + (random.uniform(0, max_delay) if max_delay else 0.0)
        log.debug("next run", boundary=boundary, due=round(due, 3))
        await asyncio.sleep(max(0.0, due - now))
        last = boundary
        try:
            await job(boundary)
        except Exception as exc:  # a bad run must not end the job: the next one retries
            log.error("periodic run failed", error=str(exc))
