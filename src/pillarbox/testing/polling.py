"""Waiting in a test for something another thread or process does (a delivery, a certificate,
a peer's log line): polled with a deadline, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T],
    what: str,
    *,
    timeout: float = 20.0,
    interval: float = 0.05,
    context: Callable[[], str] | None = None,
) -> T:
    """``condition()``'s first truthy value, asked every ``interval`` seconds for at most
    ``timeout``; past it an AssertionError naming ``what`` (and ``context()``, e.g. a peer's
    log, when given)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{context()}" if context is not None else ""
            raise AssertionError(f"timed out waiting for {what}{extra}")
        time.sleep(interval)
