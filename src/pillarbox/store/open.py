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
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pillarbox.config import StoreSection
from pillarbox.errors import ConfigError
from pillarbox.store.blobs import BlobMode
from pillarbox.store.sqlite.serverlock import ServerLock

if TYPE_CHECKING:
    from pillarbox.store.interface import Store

DEFAULT_SQLITE_NAME = "pillarbox.sqlite3"
_KEY = "store.url"


def is_postgresql(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL store: one several nodes may share."""
    return urlsplit(url).scheme in {"postgresql", "postgres"}


def shown_url(url: str, data_dir: Path) -> str:
    """``url`` as commands print it: a PostgreSQL URL without its password (in the user part or
    libpq's ``password`` parameter: `pillarbox status` output ends up in tickets and chats),
    a SQLite one with the database file it names."""
    if is_postgresql(url):
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            user, _, host = netloc.rpartition("@")
            netloc = f"{user.partition(':')[0]}:***@{host}"
        query = urlencode(
            [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, True)],
            safe="*/:",
            quote_via=quote,  # libpq reads %20, not "+", as a space
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return f"{url} ({_sqlite_location(url, data_dir)[0]})"


def open_store(
    url: str,
    data_dir: Path,
    tuning: StoreSection | None = None,
    *,
    clock: Callable[[], float] = time.time,
    serving: bool = False,
    held: ServerLock | None = None,
) -> Store:
    """A store for ``url``, not yet opened: the caller awaits ``store.open()`` (migrations run
    there, off the event loop) and ``store.close()`` at shutdown. ``clock`` dates what it
    stores (a test's mail saved weeks ago). ``serving`` (``pillarbox serve``) announces a
    server on the store for as long as it is open: a second one on a SQLite data directory or
    database file is refused, and so is a migration by any store opened without it
    (docs/upgrading.md). ``held`` is the SQLite store's :func:`server_lock`, taken already by
    ``pillarbox serve``."""
    if is_postgresql(url):
        from pillarbox.store.postgres import PostgresStore

        if not urlsplit(url).path.strip("/"):
            raise ConfigError(_KEY, "name the database: postgresql://host/dbname")
        return PostgresStore(
            url, limits=(tuning or StoreSection()).postgres, clock=clock, serving=serving
        )
    # Imported here, as PostgreSQL's: ``pillarbox serve`` finds its lock with this module and
    # must not wait for the backend to load before refusing to start (docs/upgrading.md).
    from pillarbox.store.sqlite import SqliteStore

    path, blob_mode = _sqlite_location(url, data_dir)
    return SqliteStore(
        path,
        blob_mode=blob_mode,
        blob_dir=data_dir / "blobs",
        limits=(tuning or StoreSection()).sqlite,
        clock=clock,
        server_lock=held or ServerLock(data_dir, path),
        serving=serving,
    )


def server_lock(url: str, data_dir: Path) -> ServerLock | None:
    """The locks a server on the SQLite store ``url`` holds (:mod:`.sqlite.serverlock`), not
    yet taken; None for PostgreSQL, whose nodes lock in the database (:mod:`.postgres.servers`)."""
    if is_postgresql(url):
        return None
    return ServerLock(data_dir, _sqlite_location(url, data_dir)[0])


def _sqlite_location(url: str, data_dir: Path) -> tuple[Path, BlobMode]:
    """The database file a ``sqlite:`` URL names and where it keeps blobs."""
    parts = urlsplit(url)
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
    return (path if path.is_absolute() else data_dir / path), blob_mode
