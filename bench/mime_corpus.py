"""Parse a MIME corpus and an mboxrd archive with ``parse_message``; print a table of figures.

Usage: ``python bench/mime_corpus.py [MIME_DIR] [--mbox PATH] [--count N] [--crlf]``

Every file under MIME_DIR (licences, manifests and JSON expectations aside) is one message; the
first N messages of the xz-compressed mboxrd archive are read as a stream (``>From`` unescaped,
RFC 4155 / mboxrd) and never unpacked to disk. ``--crlf`` converts the archive's LF line endings
to CRLF first, the way SMTP would have delivered them. Exceptions must be 0.
"""

from __future__ import annotations

import argparse
import lzma
import re
import statistics
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pillarbox.mail.parse import parse_message

MIME_DIR = Path("/work/shared/corpora/mime")
MBOX = Path("/work/shared/corpora/mbox/linux-mips-first35000.mboxrd.xz")
_NOT_MESSAGES = re.compile(r"(\.json|\.md)$|^(LICENSE|COPYING)", re.IGNORECASE)
_MBOXRD_QUOTED_FROM = re.compile(rb"^>(>*From )")


@dataclass
class Tally:
    name: str
    times: list[float] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    with_defects: int = 0
    total_bytes: int = 0

    def parse(self, label: str, raw: bytes) -> None:
        self.total_bytes += len(raw)
        started = time.perf_counter()
        try:
            info = parse_message(raw)
        except Exception:
            self.exceptions.append(f"{label}: {traceback.format_exc(limit=3)}")
            return
        finally:
            self.times.append(time.perf_counter() - started)
        self.with_defects += bool(info.defects)

    def row(self) -> str:
        seconds = sum(self.times)
        ordered = sorted(self.times)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0
        mb = self.total_bytes / 1e6
        return (
            f"{self.name:<22} {len(self.times):>8} {len(self.exceptions):>10} "
            f"{self.with_defects:>8} {mb:>9.1f} {mb / seconds if seconds else 0:>8.1f} "
            f"{statistics.median(ordered) * 1e3 if ordered else 0:>9.3f} {p99 * 1e3:>9.3f}"
        )


def corpus_files(root: Path) -> Iterator[tuple[str, bytes]]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not _NOT_MESSAGES.search(path.name):
            yield str(path.relative_to(root)), path.read_bytes()


def mboxrd_messages(path: Path, count: int, crlf: bool) -> Iterator[tuple[str, bytes]]:
    """Stream messages out of an xz mboxrd file: split at "From " lines, unescape ">From "."""
    lines: list[bytes] = []
    number = 0

    def finish() -> tuple[str, bytes]:
        body = b"".join(lines)
        return f"mbox#{number}", body.replace(b"\n", b"\r\n") if crlf else body

    with lzma.open(path, "rb") as stream:
        for line in stream:
            if line.startswith(b"From "):
                if number:
                    yield finish()
                    if number >= count:
                        return
                number += 1
                lines = []
                continue
            lines.append(_MBOXRD_QUOTED_FROM.sub(rb"\1", line) if line[:1] == b">" else line)
    if number and lines:
        yield finish()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mime_dir", nargs="?", type=Path, default=MIME_DIR)
    parser.add_argument("--mbox", type=Path, default=MBOX)
    parser.add_argument("--count", type=int, default=5000, help="mbox messages to parse")
    parser.add_argument("--crlf", action="store_true", help="convert mbox LF to CRLF")
    args = parser.parse_args()

    tallies = [Tally("mime corpus"), Tally(f"mbox first {args.count}")]
    for label, raw in corpus_files(args.mime_dir):
        tallies[0].parse(label, raw)
    for label, raw in mboxrd_messages(args.mbox, args.count, args.crlf):
        tallies[1].parse(label, raw)
    total = Tally("total")
    for tally in tallies:
        total.times += tally.times
        total.exceptions += tally.exceptions
        total.with_defects += tally.with_defects
        total.total_bytes += tally.total_bytes

    print(
        f"{'source':<22} {'messages':>8} {'exceptions':>10} {'defects':>8} {'MB':>9} "
        f"{'MB/s':>8} {'p50 ms':>9} {'p99 ms':>9}"
    )
    for tally in (*tallies, total):
        print(tally.row())
    for failure in total.exceptions[:10]:
        print(failure, file=sys.stderr)
    return 1 if total.exceptions else 0


if __name__ == "__main__":
    raise SystemExit(main())
