"""Test and benchmark corpora read by reference (never copied into the repository)."""

from __future__ import annotations

import lzma
import re
from collections.abc import Iterator
from pathlib import Path

from pillarbox.imap.session import normalise_line_endings

#: The linux-mips archive: 35,000 real list messages, densely threaded (see its MANIFEST.md).
LINUX_MIPS = Path("/work/shared/corpora/mbox/linux-mips-first35000.mboxrd.xz")
_FROM_QUOTED = re.compile(rb"^>(>*From )", re.MULTILINE)


def mboxrd_messages(path: Path, limit: int) -> Iterator[bytes]:
    """Messages of an xz-compressed mboxrd file: split at ``From `` lines, one ``>`` removed
    from quoted ``>From`` lines (the mboxrd rule), line ends made CRLF (as stored)."""
    current: list[bytes] = []
    count = 0
    with lzma.open(path, "rb") as stream:
        for line in stream:
            if line.startswith(b"From "):
                if current:
                    yield normalise_line_endings(_FROM_QUOTED.sub(rb"\1", b"".join(current)))
                    count += 1
                    if count >= limit:
                        return
                current = []
                continue
            current.append(line)
    if current and count < limit:
        yield normalise_line_endings(_FROM_QUOTED.sub(rb"\1", b"".join(current)))
