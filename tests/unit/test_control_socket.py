"""The control socket (``pillarbox.net.control``) on a real UNIX socket: its one command, bad
input, permissions, and the CLI's end when no server listens."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from pillarbox.net import control
from pillarbox.net.control import ControlSocket, socket_path


async def exchange(path: Path, data: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(data)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


async def test_wake_queue_unknown_command_and_overlong_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    woken = asyncio.Event()
    server = ControlSocket(woken.set)
    path = socket_path(tmp_path)
    await server.start(path)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the data directory's owner only
        assert await exchange(path, b"wake-queue\n") == b"ok\n"
        assert woken.is_set()
        woken.clear()
        assert await exchange(path, b"reboot\n") == b"error unknown command\n"
        assert await exchange(path, b"x" * (control.MAX_LINE + 10) + b"\n") == b""
        assert not woken.is_set()
        # The CLI's end, blocking, from a thread as the CLI's process would.
        assert await asyncio.to_thread(control.wake_queue, tmp_path) is None
        assert woken.is_set()
    finally:
        await server.close()
    assert "unknown control command" in caplog.text
    assert "control connection dropped" in caplog.text
    assert not path.exists()
    assert control.wake_queue(tmp_path) == control.NOT_RUNNING


async def test_the_longest_line_is_max_line_bytes_newline_included(tmp_path: Path) -> None:
    """MAX_LINE counts the newline (found by fuzz/control_socket.py: a line of MAX_LINE
    bytes before its newline was read and answered)."""
    server = ControlSocket(lambda: None)
    path = socket_path(tmp_path)
    await server.start(path)
    try:
        longest = b"x" * (control.MAX_LINE - 1) + b"\n"
        assert await exchange(path, longest) == b"error unknown command\n"
        assert await exchange(path, b"x" * control.MAX_LINE + b"\n") == b""
    finally:
        await server.close()


async def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    """A crash leaves the socket file behind; the next server listens on it anew."""
    path = socket_path(tmp_path)
    first = ControlSocket(lambda: None)
    await first.start(path)
    assert first._server is not None
    first._server.close()  # as a killed process: the file stays, nobody listens
    await first._server.wait_closed()
    assert path.exists() and control.wake_queue(tmp_path) == control.NOT_RUNNING
    woken = asyncio.Event()
    second = ControlSocket(woken.set)
    await second.start(path)
    try:
        assert await asyncio.to_thread(control.wake_queue, tmp_path) is None
        assert woken.is_set()
    finally:
        await second.close()
