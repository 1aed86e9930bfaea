"""Fuzz the control socket's server end (pillarbox.net.control) with a local client's bytes.

Input: what a process that may connect to ``control.sock`` writes before it closes its
sending side. The server runs for real, on a UNIX socket in a temporary directory; each
input is one connection. Asserted, beyond "no exception" (the server's task ends every
connection itself):

* the answer is ``ok`` exactly when the first line, its trailing CRs and LF left out, is
  ``wake-queue``, and the queue is then woken exactly once; ``error unknown command`` for
  any other line; nothing (the connection closed) for bytes without a line break, and for
  a line longer than ``MAX_LINE`` bytes, its line break included;
* every log line the connection made is one line (no CR or LF of the client's in it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from pathlib import Path

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox.net.control import MAX_LINE, OK, UNKNOWN, WAKE_QUEUE, ControlSocket
    from pillarbox.observability.log import _TextFormatter


class _Lines(logging.Handler):
    """Each record as the text log writes it."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(_TextFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class _Server:
    """One server for the whole run, on one event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.path = Path(tempfile.mkdtemp(prefix="pillarbox-fuzz-control-")) / "control.sock"
        self.woken = 0
        self.control = ControlSocket(self._wake)
        self.loop.run_until_complete(self.control.start(self.path))
        self.log = _Lines()
        root = logging.getLogger("pillarbox")
        root.handlers[:] = [self.log]
        root.setLevel(logging.INFO)
        root.propagate = False

    def _wake(self) -> None:
        self.woken += 1

    async def _talk(self, data: bytes) -> bytes:
        reader, writer = await asyncio.open_unix_connection(str(self.path))
        with contextlib.suppress(ConnectionError):
            writer.write(data)
            await writer.drain()
            writer.write_eof()
        try:
            return await reader.read()
        except ConnectionError:
            return b""
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def talk(self, data: bytes) -> bytes:
        return self.loop.run_until_complete(self._talk(data))


_server: _Server | None = None


def expected(data: bytes) -> bytes:
    end = data.find(b"\n")
    if end < 0 or end + 1 > MAX_LINE:
        return b""
    return OK if data[:end].rstrip(b"\r") == WAKE_QUEUE else UNKNOWN


def check(data: bytes) -> None:
    global _server
    if _server is None:
        _server = _Server()
    server = _server
    server.log.lines.clear()
    woken = server.woken
    answer = server.talk(data)
    # The server's task may still be closing its end: let it finish before the next input.
    server.loop.run_until_complete(asyncio.sleep(0))
    want = expected(data)
    assert answer == want, (answer, want)
    assert server.woken - woken == (1 if want == OK else 0)
    for line in server.log.lines:
        assert "\n" not in line and "\r" not in line, line


def seeds() -> list[bytes]:
    return [
        WAKE_QUEUE + b"\n",
        WAKE_QUEUE + b"\r\n",
        WAKE_QUEUE,
        b"flush\n",
        b"\n",
        b"x" * (MAX_LINE - 1) + b"\n",
        b"x" * MAX_LINE + b"\n",
        WAKE_QUEUE + b"\nwake-queue\n",
    ]


if __name__ == "__main__":
    harness.main("control_socket", check, seeds(), max_len=1024)
