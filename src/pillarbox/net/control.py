"""The control socket: how ``pillarbox queue flush`` and ``queue retry`` wake a running server
on a SQLite store at once instead of at its next scan (``queue.poll_interval``).

On PostgreSQL the CLI needs none of this: :meth:`Store.wake_queue` NOTIFYs every node. A
SQLite store has one server, in another process than the CLI; it listens on the UNIX socket
``control.sock`` in its data directory, as Postfix's master listens for ``postqueue -f``.

Implementation notes:

- **Why a socket, not a signal to a pid file's process.** A pid file left by a crash names a
  process that may be another program by now, and SIGUSR1's default action kills it; a socket
  file left by a crash refuses the connection, so the CLI knows no server runs (and the server
  replaces it at start, as the LMTP socket's). The server answers, so the CLI knows it was
  heard. A socket per data directory also keeps servers in one process (tests) apart, which a
  process-wide signal handler cannot.
- **Who may wake it.** The socket is made mode 0600: only the data directory's owner (and
  root) may connect — those who may write the store anyway.
- **Protocol.** One line per connection: ``wake-queue`` is answered ``ok``; anything else
  ``error unknown command``, logged. A line over :data:`MAX_LINE` bytes, or none within
  :data:`TIMEOUT` seconds, closes the connection with a log line.
- **Not fatal.** A server that cannot listen here (a data directory path over the 107 bytes a
  socket path may have, a file it may not replace) logs a warning and runs on: only the CLI's
  wake-up is lost, and retries start at the next scan. A second server on the data directory
  never gets this far: it is refused at start (:mod:`pillarbox.store.sqlite.serverlock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from pathlib import Path

from pillarbox.net.listener import clear_stale_socket
from pillarbox.observability.log import Log

#: The socket's name in the data directory.
SOCKET_NAME = "control.sock"
#: Longest command line accepted, newline included.
MAX_LINE = 64
#: Seconds a client (the server's peer) or the server (the CLI's) gets to say its line.
TIMEOUT = 5.0

WAKE_QUEUE = b"wake-queue"
OK = b"ok\n"
UNKNOWN = b"error unknown command\n"
#: What :func:`wake_queue` says when nobody listens on the socket.
NOT_RUNNING = "no server is running on this data directory"


def socket_path(data_dir: Path) -> Path:
    return data_dir / SOCKET_NAME


class ControlSocket:
    """The server's end: ``wake_queue`` is called for each ``wake-queue`` heard."""

    def __init__(self, wake_queue: Callable[[], None]) -> None:
        self._wake_queue = wake_queue
        self._server: asyncio.Server | None = None
        self._path: Path | None = None
        self._log = Log("control")

    async def start(self, path: Path) -> None:
        try:
            clear_stale_socket(str(path))
            # A StreamReader's limit bounds the bytes before the separator (``readuntil``
            # refuses a separator found past it): one less than MAX_LINE, newline included.
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(path), limit=MAX_LINE - 1
            )
            os.chmod(path, 0o600)
        except OSError as exc:
            self._log.warning(
                "control socket not opened: queue flush waits for queue.poll_interval",
                path=str(path),
                error=exc.strerror or str(exc),
            )
            return
        self._path = path
        self._log.info("listening", listener="control", on=str(path))

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await server.wait_closed()
        if self._path is not None:
            with contextlib.suppress(OSError):
                clear_stale_socket(str(self._path))
            self._path = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(TIMEOUT):
                line = await reader.readuntil(b"\n")
                if line.rstrip(b"\r\n") == WAKE_QUEUE:
                    self._wake_queue()
                    self._log.info("queue woken", by="control socket")
                    writer.write(OK)
                else:
                    self._log.warning("unknown control command", command=line[:MAX_LINE])
                    writer.write(UNKNOWN)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            self._log.warning("control connection dropped", reason=type(exc).__name__)
        except OSError as exc:
            self._log.warning("control connection broken", error=str(exc))
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def wake_queue(data_dir: Path) -> str | None:
    """Ask the server on ``data_dir`` to scan its queue now (the CLI's end, blocking); None
    once it said so, else why not (no server running, or it could not be reached)."""
    path = socket_path(data_dir)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(TIMEOUT)
            conn.connect(str(path))
            conn.sendall(WAKE_QUEUE + b"\n")
            answer = conn.recv(MAX_LINE)
    except (FileNotFoundError, ConnectionRefusedError):
        return NOT_RUNNING
    except OSError as exc:
        return f"the server could not be reached at {path} ({exc.strerror or exc})"
    if answer != OK:
        return f"the server answered {answer!r} at {path}"
    return None
