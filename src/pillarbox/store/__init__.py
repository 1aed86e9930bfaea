"""Persistence: one interface (:class:`Store`), value types, and the backends behind them.

The re-exports load on first use (PEP 562): ``pillarbox serve`` takes its SQLite lock through
this package (:mod:`.sqlite.serverlock`) before anything else loads, so that a refused start
is refused at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pillarbox.store.interface import ChangeSubscription, Store

__all__ = ["ChangeSubscription", "Store"]


def __getattr__(name: str) -> object:
    if name in __all__:
        return getattr(importlib.import_module("pillarbox.store.interface"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
