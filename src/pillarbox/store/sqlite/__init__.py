"""The embedded SQLite backend (the default): see :mod:`.store` for its design notes."""

from pillarbox.store.sqlite.store import SqliteLimits, SqliteStore

__all__ = ["SqliteLimits", "SqliteStore"]
