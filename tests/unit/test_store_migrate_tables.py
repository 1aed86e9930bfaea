"""``pillarbox store migrate`` copies every table of the SQLite schema into PostgreSQL, or
says why not (:data:`importer.NOT_COPIED`): a table added by a later migration and forgotten
here would be silently lost in a move (the Sieve scripts and the second factor once were)."""

from __future__ import annotations

import sqlite3

from pillarbox.store.postgres import importer
from pillarbox.store.sqlite import migrations


def test_every_sqlite_table_is_copied_or_named_as_left_behind() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrations.migrate(conn)
    tables = {
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }
    copied = importer.copied_tables()
    assert tables - copied == importer.NOT_COPIED
    assert copied <= tables
