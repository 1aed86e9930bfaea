"""Turn the configured store URL into a backend instance.

Accepted URLs (``store.url`` in the config):

- ``sqlite:`` — the default database ``pillarbox.sqlite3`` in the data directory;
- ``sqlite:relative/path.db`` — relative to the data directory;
- ``sqlite:///absolute/path.db`` — an absolute path;
- any of them with ``?blobs=database`` (the default) or ``?blobs=files`` (see
  :mod:`pillarbox.store.blobs` for why the database is the default). File blobs live in
  ``<data_dir>/blobs``;
- ``postgresql://user@host:port/dbname?…`` (or ``postgres://``) — the shared PostgreSQL store
  (:mod:`pillarbox.store.postgres`); the URL goes to libpq as it is, so every libpq parameter
  works (``sslmode``, ``options=-csearch_path%3Dmail`` for a schema of its own, …).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from pillarbox.config import StoreSection
from pillarbox.errors import ConfigError
from pillarbox.store.blobs import BlobMode
from pillarbox.store.interface import Store
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.sqlite.serverlock import LOCK_NAME

DEFAULT_SQLITE_NAME = "pillarbox.sqlite3"
_KEY = "store.url"


def is_postgresql(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL store: one several nodes may share."""
    return urlsplit(url).scheme in {"postgresql", "postgres"}


def open_store(
    url: str,
    data_dir: Path,
    tuning: StoreSection | None = None,
    *,
    clock: Callable[[], float] = time.time,
    serving: bool = False,
) -> Store:
    """A store for ``url``, not yet opened: the caller awaits ``store.open()`` (migrations run
    there, off the event loop) and ``store.close()`` at shutdown. ``clock`` dates what it
    stores (a test's mail saved weeks ago). ``serving`` (``pillarbox serve``) announces a
    server on the store for as long as it is open: a second one on a SQLite data directory is
    refused, and so is a migration by any store opened without it (docs/upgrading.md)."""
    parts = urlsplit(url)
    if is_postgresql(url):
        from pillarbox.store.postgres import PostgresStore

        if not parts.path.strip("/"):
            raise ConfigError(_KEY, "name the database: postgresql://host/dbname")
        return PostgresStore(
            url, limits=(tuning or StoreSection()).postgres, clock=clock, serving=serving
        )
    if parts.scheme != "sqlite":
        raise ConfigError(
            _KEY, f"unknown store scheme {parts.scheme!r} (expected sqlite: or postgresql:)"
        )
    if parts.netloc:
        raise ConfigError(_KEY, "use sqlite:///absolute/path or sqlite:relative/path")
    options = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    unknown = set(options) - {"blobs"}
    if unknown:
        raise ConfigError(_KEY, f"unknown option(s) {', '.join(sorted(unknown))}")
    mode_value = options.get("blobs", [BlobMode.DATABASE.value])[-1]
    try:
        blob_mode = BlobMode(mode_value)
    except ValueError:
        choices = ", ".join(mode.value for mode in BlobMode)
        raise ConfigError(_KEY, f"blobs must be one of {choices}") from None
    path = Path(parts.path) if parts.path else Path(DEFAULT_SQLITE_NAME)
    if not path.is_absolute():
        path = data_dir / path
    return SqliteStore(
        path,
        blob_mode=blob_mode,
        blob_dir=data_dir / "blobs",
        limits=(tuning or StoreSection()).sqlite,
        clock=clock,
        server_lock=data_dir / LOCK_NAME,
        serving=serving,
    )
