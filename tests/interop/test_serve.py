"""``pillarbox serve`` as an operator runs it: a process that prints where to connect, serves,
and stops cleanly on SIGTERM and SIGINT (with uvloop when installed, as in production)."""

from __future__ import annotations

import re
import signal
import smtplib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.testing.command import start_serve

LISTENERS = ("smtp", "submission", "pop3", "pop3s")


def write_config(tmp_path: Path, schema_check_interval: float = 60.0) -> Path:
    config = cfg.dev_config(str(tmp_path / "data"))
    listeners = cfg.Listeners(
        **{name: cfg.Listener(port=0, enabled=name in LISTENERS) for name in cfg.LISTENER_DOCS}
    )
    import dataclasses

    server = dataclasses.replace(config.server, schema_check_interval=schema_check_interval)
    config = dataclasses.replace(config, listeners=listeners, server=server)
    path = tmp_path / "pillarbox.toml"
    path.write_text(cfg.render_toml(config))
    return path


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_prints_endpoints_serves_and_stops(tmp_path: Path, sig: signal.Signals) -> None:
    process, ports = start_serve(write_config(tmp_path))
    try:
        assert set(ports) == set(LISTENERS), ports
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as client:
            code, _ = client.ehlo()
            assert code == 250
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "stopped" in stderr
    assert "Traceback" not in stderr
    # The start-up heap is out of the collector's reach (no full-collection pauses over it).
    frozen = re.search(r"start-up heap frozen.*objects=(\d+)", stderr)
    assert frozen is not None and int(frozen.group(1)) > 10_000, stderr
    # The spam filter's model is read before the first message needs it.
    assert "spam model read ahead" in stderr


def test_serve_stops_when_a_later_version_upgrades_the_store(tmp_path: Path) -> None:
    """A newer Pillarbox migrated the database under this running one (another node, or an
    admin command of the new version run before this server was stopped): it stops cleanly,
    saying why, rather than go on writing rows without the new migrations' columns."""
    process, ports = start_serve(write_config(tmp_path, schema_check_interval=0.2))
    try:
        assert set(ports) == set(LISTENERS), ports
        conn = sqlite3.connect(tmp_path / "data" / "pillarbox.sqlite3", isolation_level=None)
        conn.execute("INSERT INTO schema_version (version, description) VALUES (999, 'later')")
        conn.close()
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, stderr
    assert "the store was upgraded under this server; stopping" in stderr
    assert "stopped" in stderr
    assert "pillarbox: database schema version 999 is newer than this Pillarbox" in stderr
    assert "Traceback" not in stderr


def test_serve_refuses_an_invalid_config(tmp_path: Path) -> None:
    path = tmp_path / "pillarbox.toml"
    path.write_text("[listeners.smtp]\nport = -1\n")
    result = subprocess.run(
        [sys.executable, "-m", "pillarbox.cli", "--config", str(path), "serve"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "listeners.smtp.port" in result.stderr


@pytest.mark.parametrize("listener", ["smtp", "http"], ids=["stream-listener", "web-listener"])
def test_serve_names_a_listener_whose_port_is_taken(tmp_path: Path, listener: str) -> None:
    """Another server on the port (Dovecot on 4190, a web server on 8080): a configuration
    error naming the key and the port, exit 2, no traceback, nothing left listening."""
    import dataclasses
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        config = cfg.dev_config(str(tmp_path / "data"))
        listeners = cfg.Listeners(
            **{
                name: cfg.Listener(port=taken)
                if name == listener
                # The others on free ports, so only the taken one can fail.
                else cfg.Listener(port=0, enabled=name in LISTENERS)
                for name in cfg.LISTENER_DOCS
            }
        )
        path = tmp_path / "pillarbox.toml"
        path.write_text(cfg.render_toml(dataclasses.replace(config, listeners=listeners)))
        result = subprocess.run(
            [sys.executable, "-m", "pillarbox.cli", "--config", str(path), "serve"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 2, result.stderr
    assert f"listeners.{listener}" in result.stderr
    assert f"127.0.0.1:{taken}" in result.stderr
    assert "Traceback" not in result.stderr
