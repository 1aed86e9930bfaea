"""The reference peer for ``bench/smtp.py --reference``: aiosmtpd writing one fsync'd file per
message, the comparison issue #3 names (870–1,050 messages/s on the machine it was measured on).

Figures of ``bench/smtp.py`` move with the VM a session gets (the same code measured 0.40–0.65
ms of server CPU per message one day and 0.6–1.1 ms another). Driving this peer with the same
client, on the same machine, minutes apart, turns them into a ratio that carries across machines.

It is what a small aiosmtpd deployment does: the handler writes the message and fsyncs it on the
event loop before answering 250 (no group commit, no parsing, no index, no policy), on uvloop
like ``pillarbox serve``. Run as a process of its own:

    python bench/smtp_reference.py PORT DIRECTORY
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from pathlib import Path
from typing import Any

import uvloop
from aiosmtpd.smtp import SMTP, Envelope, Session


class FsyncedFiles:
    """aiosmtpd handler: each message into its own file, on stable storage before the 250."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.numbers = itertools.count()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content: Any = envelope.original_content
        path = self.directory / f"{next(self.numbers)}.eml"
        with path.open("wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        return "250 2.0.0 OK"


async def serve(port: int, directory: Path) -> None:
    handler = FsyncedFiles(directory)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, data_size_limit=10 * 1024 * 1024), "127.0.0.1", port
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), Path(sys.argv[2])))
