"""``pillarbox import mbox`` figures: messages/s importing a real mailing-list archive.

Usage: ``python bench/import.py [--messages N] [--corpus PATH] [--blobs database|files]``

The first N messages of the linux-mips archive (mboxrd, xz; see its MANIFEST.md) are unpacked
into a temporary mbox file (outside the clock), then imported into a fresh SQLite store by the
code ``pillarbox import mbox`` runs (:mod:`pillarbox.transfer`): read as a stream, unquoted,
parsed once, appended one by one (each append durable, fsync'd, as APPEND's are) with the
content check against the target mailbox. Reported: wall time, messages/s, MB/s, process CPU
per message; then the same import again, where every message is skipped (the re-run an
interrupted import costs); and the full-text index catch-up behind the writes, separately.
"""

from __future__ import annotations

import argparse
import asyncio
import lzma
import shutil
import tempfile
import time
from pathlib import Path

from pillarbox.store.blobs import BlobMode
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.types import INBOX
from pillarbox.testing.corpus import LINUX_MIPS
from pillarbox.transfer import files
from pillarbox.transfer.importer import Importer


def unpack(corpus: Path, limit: int, target: Path) -> tuple[int, int]:
    """The first ``limit`` messages of an xz mbox into ``target``; (messages, bytes)."""
    count = 0
    size = 0
    with lzma.open(corpus, "rb") as stream, open(target, "wb") as out:
        for line in stream:
            if line.startswith(b"From "):
                count += 1
                if count > limit:
                    count -= 1
                    break
            out.write(line)
            size += len(line)
    return count, size


async def run(path: Path, size: int, directory: Path, mode: BlobMode) -> list[tuple[str, str]]:
    store = SqliteStore(directory / "bench.sqlite3", blob_mode=mode, blob_dir=directory / "b")
    await store.open()
    rows: list[tuple[str, str]] = []
    try:
        await store.add_domain("example.org")
        account = await store.add_account("bench@example.org", "x")
        for label in ("import", "re-run (all skipped)"):
            importer = Importer(store, account, max_message_size=50 << 20)
            await importer.start()
            target = await importer.mailbox(INBOX)
            cpu, wall = time.process_time(), time.perf_counter()
            await files.import_mbox_file(importer, path, target)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            s = importer.summary
            read = s.imported + s.skipped + s.failed
            rows.append(
                (
                    label,
                    f"{read} read, {s.imported} imported, {s.skipped} skipped, {s.failed} failed"
                    f" in {wall:.1f} s: {read / wall:,.0f} messages/s, "
                    f"{size / wall / 1e6:.1f} MB/s, "
                    f"{cpu / read * 1e6:,.0f} µs CPU/message",
                )
            )
        wall = time.perf_counter()
        await store.catch_up_index()
        rows.append(("full-text index catch-up", f"{time.perf_counter() - wall:.1f} s"))
    finally:
        await store.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=35_000)
    parser.add_argument("--corpus", type=Path, default=LINUX_MIPS)
    parser.add_argument("--blobs", choices=[m.value for m in BlobMode], default="database")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="pillarbox-bench-import-"))
    try:
        mbox_path = directory / "corpus.mbox"
        count, size = unpack(args.corpus, args.messages, mbox_path)
        print(f"corpus: {count:,} messages, {size / 1e6:.1f} MB ({args.corpus.name})")
        print(f"store: SQLite, blobs in {args.blobs}")
        for label, figure in asyncio.run(run(mbox_path, size, directory, BlobMode(args.blobs))):
            print(f"{label:<28} {figure}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
