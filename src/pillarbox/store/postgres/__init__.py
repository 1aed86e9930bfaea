"""The PostgreSQL backend: many Pillarbox nodes over one database (DESIGN principle 2)."""

from pillarbox.store.postgres.store import PostgresLimits, PostgresStore

__all__ = ["PostgresLimits", "PostgresStore"]
