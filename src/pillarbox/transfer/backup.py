"""``pillarbox backup DIR`` and ``pillarbox restore DIR``: a consistent copy of a SQLite site while
it serves, and putting it back.

What a backup holds (``DIR``, created 0700)::

    manifest.json        what was copied, from which site, when (format 1)
    pillarbox.toml       the config file
    data/                the data directory: TLS certificate and key (ACME account and
                         certificates included), web and SRS secrets, import state … with
                         their modes (keys stay 0600); the store's database file at its place
    data/blobs/ab/<sha>  message bytes, when the store keeps them as files (``?blobs=files``)
    store/<name>         the database when the config puts it outside the data directory
    external/<n>-<name>  TLS certificate and key files the config names outside the data
                         directory (restore says where they were; it writes nothing outside
                         the config's own places)

**Consistency while serving.** The database is copied with SQLite's online backup API in one
step: a read snapshot, which WAL mode lets writers commit beside. Message bytes in file mode
are content-addressed and immutable, so copying the files the *snapshot* names is enough; a
blob written after the snapshot belongs to mail the snapshot does not have, and is not copied.
A blob deleted during the copy (its last message expunged after the snapshot) cannot be
copied; then the snapshot is taken again — the new one no longer names it — and the blobs it
adds are copied, up to :data:`SNAPSHOT_ATTEMPTS` times. Blobs copied for an earlier snapshot
and not named by the last are removed. Everything is fsync'd before the manifest, written
last: a backup without a manifest is incomplete.

**PostgreSQL.** Its messages and their bytes are in the database (``blob_data``); a file copy
cannot be consistent with it, so the database is not copied: ``backup`` copies the config and
the data directory, then says to run ``pg_dump`` and exits 1 — never a backup that looks
complete and is not.

**Restore** writes the config to ``--config``'s path and the data directory the restored
config names (relative to it), checks the database (``PRAGMA quick_check``) and every blob's
hash, and refuses a non-empty data directory or an existing config file unless ``--force``,
which moves them aside (``NAME.before-restore-<time>``) rather than deleting them — never a
data directory or database a server runs on (its ``server.lock`` and the database's
``-server.lock``, :mod:`pillarbox.store.sqlite.serverlock`): it would go on serving, and
accepting mail, from what was moved aside. Those lock files are not backed up: they name a
process of the machine the backup was taken on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pillarbox import __version__
from pillarbox import config as cfg
from pillarbox.errors import ConfigError, UserError
from pillarbox.store.blobs import BlobMode, is_blob_id
from pillarbox.store.open import open_store
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.sqlite.serverlock import LOCK_NAME, ServerLock

MANIFEST = "manifest.json"
FORMAT = 1
#: How many times a snapshot is retaken because blobs it names vanished during the copy.
SNAPSHOT_ATTEMPTS = 5
_STORE_SUFFIXES = ("", "-wal", "-shm", "-journal")


@dataclass
class BackupResult:
    path: Path
    messages: int = 0
    blobs: int = 0
    files: int = 0
    snapshots: int = 0
    store_copied: bool = True
    notes: list[str] = field(default_factory=list)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_file(source: Path, target: Path) -> None:
    """Copy bytes and mode (a key stays 0600), fsync'd; never through a symlink."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.copyfile(source, target, follow_symlinks=False)
    shutil.copymode(source, target)
    _fsync(target)


def _inside(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
    except ValueError:
        return False
    return True


def _new_directory(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UserError(f"{path} exists and is not an empty directory")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def _snapshot(database: Path, target: Path) -> None:
    """SQLite's online backup of ``database`` into ``target``, in one step (one snapshot)."""
    target.unlink(missing_ok=True)
    source = sqlite3.connect(database, timeout=60)
    try:
        copy = sqlite3.connect(target)
        try:
            source.backup(copy, pages=-1)
            # The copy inherits WAL mode, in which even a read-only look (the counts, the
            # restore's check) leaves -wal and -shm files beside it; the store sets WAL again
            # when it opens the restored file.
            copy.execute("PRAGMA journal_mode = DELETE")
        finally:
            copy.close()
    finally:
        source.close()
    _fsync(target)


def _snapshot_counts(database: Path) -> tuple[set[str], int]:
    """The blob ids a snapshot names, and its number of messages."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        blobs = {str(row[0]) for row in conn.execute("SELECT sha256 FROM blobs")}
        (messages,) = conn.execute("SELECT count(*) FROM messages").fetchone()
    finally:
        conn.close()
    return blobs, int(messages)


def _copy_tree(
    source: Path, target: Path, skip: Callable[[Path], bool], result: BackupResult
) -> None:
    """Regular files and directories below ``source``, with modes; symlinks, sockets and
    whatever ``skip`` names are left out."""
    for directory, subdirs, names in os.walk(source):
        here = Path(directory)
        subdirs[:] = [d for d in subdirs if not skip(here / d) and not (here / d).is_symlink()]
        relative = here.relative_to(source)
        (target / relative).mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copymode(here, target / relative)
        for name in names:
            path = here / name
            if skip(path) or path.is_symlink() or not path.is_file():
                continue
            _copy_file(path, target / relative / name)
            result.files += 1


def backup(
    config: cfg.Config,
    destination: Path,
    *,
    progress: Callable[[str], None] = lambda line: None,
    after_snapshot: Callable[[int], None] = lambda attempt: None,
) -> BackupResult:
    """Back the site up into ``destination`` (new or empty). ``after_snapshot`` runs after each
    snapshot, before its blobs are copied (tests race deletions there)."""
    if config.source is None:
        raise ConfigError("", "backup needs the config file it was loaded from")
    data_dir = config.data_dir
    if _inside(destination, data_dir):
        raise UserError(f"{destination} is inside the data directory {data_dir}")
    _new_directory(destination)
    result = BackupResult(destination)
    store = open_store(config.store.url, data_dir, config.store)
    sqlite_store = store if isinstance(store, SqliteStore) else None
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "created": datetime.now(UTC).isoformat(),
        "pillarbox": __version__,
        "hostname": config.server.hostname,
        "config": "pillarbox.toml",
        "data": "data",
    }

    _copy_file(config.source, destination / "pillarbox.toml")
    store_files = (
        {sqlite_store.path.with_name(sqlite_store.path.name + s) for s in _STORE_SUFFIXES}
        if sqlite_store is not None
        else set()
    )
    blob_root = data_dir / "blobs"
    locks = (
        {file.path for file in ServerLock(data_dir, sqlite_store.path).files}
        if sqlite_store is not None
        else {data_dir / LOCK_NAME}
    )
    left_out = {*store_files, blob_root, *locks}
    if data_dir.is_dir():
        _copy_tree(data_dir, destination / "data", lambda p: p in left_out, result)
    progress(f"copied the config and {result.files} file(s) of {data_dir}")

    external = []
    if config.tls.cert:
        for index, path in enumerate(
            (config.resolve_path(config.tls.cert), config.resolve_path(config.tls.key))
        ):
            if path.is_file() and not _inside(path, data_dir):
                saved = Path("external") / f"{index}-{path.name}"
                _copy_file(path, destination / saved)
                external.append({"original": str(path), "saved": str(saved)})
    manifest["external"] = external

    if sqlite_store is None:
        result.store_copied = False
        manifest["store"] = {"kind": "postgresql", "included": False}
        _write_manifest(destination, manifest)
        return result

    database = sqlite_store.path
    if not database.is_file():
        raise UserError(f"no database at {database}")
    in_data = _inside(database, data_dir)
    relative = (
        Path("data") / database.resolve().relative_to(data_dir.resolve())
        if in_data
        else Path("store") / database.name
    )
    target = destination / relative
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    files_mode = sqlite_store.blob_mode is BlobMode.FILES
    copied: set[str] = set()
    for attempt in range(1, SNAPSHOT_ATTEMPTS + 1):
        _snapshot(database, target)
        result.snapshots = attempt
        named, result.messages = _snapshot_counts(target)
        after_snapshot(attempt)
        if not files_mode:
            break
        vanished = []
        for blob_id in sorted(named - copied):
            if not is_blob_id(blob_id):
                raise UserError(f"the database names a malformed blob id {blob_id!r}")
            source = blob_root / blob_id[:2] / blob_id
            try:
                _copy_file(source, destination / "data" / "blobs" / blob_id[:2] / blob_id)
            except FileNotFoundError:
                vanished.append(blob_id)
                continue
            copied.add(blob_id)
        for stale in copied - named:  # an earlier snapshot's, gone from this one
            (destination / "data" / "blobs" / stale[:2] / stale).unlink(missing_ok=True)
        copied &= named
        if not vanished:
            break
        progress(f"{len(vanished)} blob(s) deleted during the copy; taking a new snapshot")
    else:
        raise UserError(
            f"blobs kept vanishing during {SNAPSHOT_ATTEMPTS} snapshots (mail being deleted "
            "fast); try again later"
        )
    result.blobs = len(copied)
    for directory in {destination, target.parent, destination / "data"}:
        if directory.is_dir():
            _fsync(directory)
    manifest["store"] = {
        "kind": "sqlite",
        "included": True,
        "database": str(relative),
        "blobs": sqlite_store.blob_mode.value,
        "messages": result.messages,
        "blob_files": result.blobs,
        "snapshots": result.snapshots,
    }
    _write_manifest(destination, manifest)
    return result


def _write_manifest(destination: Path, manifest: dict[str, Any]) -> None:
    path = destination / MANIFEST
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(json.dumps(manifest, indent=2) + "\n")
        out.flush()
        os.fsync(out.fileno())
    _fsync(destination)


def postgres_advice(config: cfg.Config, destination: Path) -> str:
    return (
        "the store is PostgreSQL: messages and their bytes live in the database, which this "
        f"command does not copy. The config and the data directory are in {destination}; "
        "back the database up with its own tools, e.g.\n"
        f"  pg_dump --format=custom --file={destination}/pillarbox.pgdump '<store.url>'\n"
        "(pg_dump takes a consistent snapshot while the server runs; restore it with "
        "pg_restore --clean --dbname=… into an empty database)"
    )


# -- restore ---------------------------------------------------------------------------------


@dataclass
class RestoreResult:
    config: Path
    data_dir: Path
    messages: int
    blobs: int
    moved_aside: list[Path]
    external: list[dict[str, str]]


def _aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    moved = path.with_name(f"{path.name}.before-restore-{stamp}")
    path.rename(moved)
    return moved


def _check_blobs(blob_dir: Path) -> int:
    count = 0
    if not blob_dir.is_dir():
        return 0
    for shard in blob_dir.iterdir():
        if not shard.is_dir() or shard.name == "tmp":
            continue
        for blob in shard.iterdir():
            digest = hashlib.sha256()
            with open(blob, "rb") as stream:
                while chunk := stream.read(1 << 20):
                    digest.update(chunk)
            if digest.hexdigest() != blob.name:
                raise UserError(f"the backup is damaged: {blob} does not match its hash")
            count += 1
    return count


def restore(source: Path, config_path: Path, *, force: bool) -> RestoreResult:
    """Put the backup in ``source`` back: the config at ``config_path``, the data directory
    where that config says (see the module docstring)."""
    try:
        manifest = json.loads((source / MANIFEST).read_text("utf-8"))
    except FileNotFoundError:
        raise UserError(f"{source} holds no {MANIFEST}: not a (complete) backup") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {source / MANIFEST}: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise UserError(f"unknown backup format {manifest.get('format')!r}")
    store_info = manifest.get("store", {})
    if not store_info.get("included"):
        raise UserError(
            "this backup holds no mail (a PostgreSQL store: restore the database with "
            "pg_restore; the config and data directory are in the backup to copy by hand)"
        )
    # Everything in the way is found before anything is written: a refused restore leaves
    # no trace. The backed-up config is read where it is, its relative paths resolved
    # against its new place — nothing staged there, which may be the data directory itself
    # (`pillarbox demo` keeps its config in it).
    config = replace(cfg.load(source / "pillarbox.toml"), source=config_path.resolve())
    data_dir = config.data_dir
    store = open_store(config.store.url, data_dir, config.store)
    if not isinstance(store, SqliteStore):
        raise UserError(f"the backed-up config's store {config.store.url} is not SQLite")
    database = Path(store_info["database"])
    outside = database.parts[0] == "store"
    in_the_way = [data_dir] if data_dir.exists() and any(data_dir.iterdir()) else []
    if config_path.exists() and not (in_the_way and _inside(config_path, data_dir)):
        in_the_way.insert(0, config_path)  # a config inside the data dir moves aside with it
    if outside:
        in_the_way += [
            path
            for suffix in _STORE_SUFFIXES
            for path in [store.path.with_name(store.path.name + suffix)]
            if path.exists()
        ]
    if in_the_way and not force:
        raise UserError(
            f"{', '.join(map(str, in_the_way))}: in the way (a non-empty data directory "
            "or existing files); use --force to move them aside"
        )
    served = ServerLock(data_dir, store.path)
    if in_the_way and not served.try_hold("restoring"):
        raise UserError(f"a server {served.refusal()[0]}: stop it before restoring")
    try:
        moved = [_aside(path) for path in in_the_way]
    finally:
        served.release()  # held from the check to the move: no server started on it meanwhile
    result = BackupResult(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _copy_tree(source / "data", data_dir, lambda p: False, result)
    _copy_file(source / "pillarbox.toml", config_path)
    if outside:
        _copy_file(source / database, store.path)
    conn = sqlite3.connect(store.path)
    try:
        (check,) = conn.execute("PRAGMA quick_check").fetchone()
        (messages,) = conn.execute("SELECT count(*) FROM messages").fetchone()
    finally:
        conn.close()
    if check != "ok":
        raise UserError(f"the restored database fails its check: {check}")
    blobs = _check_blobs(data_dir / "blobs")
    return RestoreResult(
        config_path, data_dir, int(messages), blobs, moved, list(manifest.get("external", []))
    )
