"""Throw-away PostgreSQL stores for tests: one database per test run, one schema per store.

``CREATE DATABASE`` costs about half a second here and ``DROP DATABASE`` a second (each
checkpoints), so tests do not make a database per store: a run creates one database
(``pb_test_<random>``), each store gets a fresh schema in it (a few milliseconds), named by the
store URL's libpq ``options=-csearch_path=…``, and the database is dropped when the run ends.
Schemas isolate everything a store has, its change-feed channel included (see
:mod:`pillarbox.store.postgres.notify`).

The server is ``$PILLARBOX_TEST_POSTGRES`` (a ``postgresql://`` URL of a database to connect to
for ``CREATE DATABASE``), else the local one at 127.0.0.1:5432 as user ``postgres``.
"""

from __future__ import annotations

import atexit
import os
import secrets
import threading
from graphlib import TopologicalSorter
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from pillarbox.store.open import shown_url

SERVER_ENV = "PILLARBOX_TEST_POSTGRES"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    return os.environ.get(SERVER_ENV) or DEFAULT_SERVER


def unreachable_reason(url: str | None = None) -> str | None:
    """Why no test database can be made on the server (``None``: it can)."""
    url = url or server_url()
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"no PostgreSQL server at {shown_url(url, Path())} ({SERVER_ENV}): {exc}".strip()
    return None


def needs_postgres() -> pytest.MarkDecorator:
    """A test module's ``pytestmark``: its tests skipped, saying why, when no test database can
    be made (:func:`unreachable_reason`)."""
    reason = unreachable_reason()
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def with_database(url: str, dbname: str, schema: str | None = None) -> str:
    """``url`` naming another database (and a schema, as the first of the ``search_path``)."""
    parts = urlsplit(url)
    query = parts.query
    if schema is not None:
        option = "options=" + quote(f"-csearch_path={schema},public", safe="")
        query = f"{query}&{option}" if query else option
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, query, ""))


class TestDatabase:
    """A database of this test run; :meth:`new_store_url` hands out fresh, empty schemas."""

    __test__ = False  # not a pytest test class

    def __init__(self, server: str | None = None) -> None:
        self.server = server or server_url()
        self.name = f"pb_test_{secrets.token_hex(6)}"
        self.url = with_database(self.server, self.name)
        self._lock = threading.Lock()
        with psycopg.connect(self.server, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        with psycopg.connect(self.url, autocommit=True) as conn:
            # One extension for every schema (the store's migration finds it in ``public``).
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")

    def new_store_url(self) -> str:
        """A ``postgresql://`` URL of a new, empty schema in this database."""
        schema = f"s_{secrets.token_hex(6)}"
        with self._lock, psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        return with_database(self.server, self.name, schema)

    def wipe(self, url: str) -> None:
        """Empty the (migrated) store at ``url`` for reuse: its schema stays, so the next test
        skips the migration, which costs about 0.6 s of DDL here against a few ms of DELETEs."""
        with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
            found = conn.execute("SELECT to_regclass('schema_version')").fetchone()
            if found is None or found[0] is None:
                return  # never opened: nothing to empty
            for table in _children_first(conn):
                conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))

    def drop(self) -> None:
        with psycopg.connect(self.server, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )


def _children_first(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """Every table of the connection's schema but the migrations' bookkeeping, each before the
    tables its foreign keys refer to — read from the catalogue: a list kept by hand fell
    behind the migrations, and the rows it missed leaked from one test into the next."""
    tables = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
        "AND tablename <> 'schema_version'"
    ).fetchall()
    referrers: dict[str, set[str]] = {str(name): set() for (name,) in tables}
    for child, parent in conn.execute(
        "SELECT c.relname, p.relname FROM pg_constraint k "
        "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid "
        "WHERE k.contype = 'f' AND k.connamespace = current_schema()::regnamespace"
    ):
        if child != parent:
            referrers[str(parent)].add(str(child))
    return list(TopologicalSorter(referrers).static_order())


_shared: TestDatabase | None = None
_shared_lock = threading.Lock()


def shared_database(server: str) -> TestDatabase:
    """This process's test database on ``server``, created on first use and dropped at exit
    (for fixtures that have no teardown of their own, like ``loopback_config``)."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.server != server:
            _shared = TestDatabase(server)
            atexit.register(_shared.drop)
        return _shared
