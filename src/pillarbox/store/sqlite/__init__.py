"""The embedded SQLite backend (the default): see :mod:`.store` for its design notes.

The re-exports load on first use (PEP 562), as :mod:`pillarbox.store`'s do: the server's lock
(:mod:`.serverlock`) is taken before the backend loads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pillarbox.store.sqlite.store import SqliteLimits, SqliteStore

__all__ = ["SqliteLimits", "SqliteStore"]


def __getattr__(name: str) -> object:
    if name in __all__:
        return getattr(importlib.import_module("pillarbox.store.sqlite.store"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
