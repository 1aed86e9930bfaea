"""Unbound (NLnet Labs' validating resolver, Debian's ``unbound``) on loopback for tests: it
validates one zone of our authoritative server from DS trust anchors, as a parent zone's DS
set would lead a resolver there, and caches what it validated as any resolver does.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pillarbox.dns.resolver import DnsResolver
from pillarbox.testing.live import free_port
from pillarbox.testing.polling import wait_for


class Unbound:
    """Unbound on loopback, validating ``zone`` from the DS records ``anchors`` (zone-file
    lines: the parent's DS set) and asking only our authoritative server for it (a stub
    zone, as a parent's delegation would lead there). ``cache_max_ttl`` caps how long it
    keeps anything (None: the records' own TTLs), so a test can let TTLs pass."""

    def __init__(
        self,
        directory: Path,
        zone: str,
        anchors: Sequence[str],
        authoritative_port: int,
        *,
        cache_max_ttl: int | None = None,
    ) -> None:
        directory.mkdir()
        self.port = free_port("127.0.0.1")
        self._config = directory / "unbound.conf"
        trust = "".join(f'  trust-anchor: "{" ".join(ds.split())}"\n' for ds in anchors)
        cache = "" if cache_max_ttl is None else f"  cache-max-ttl: {cache_max_ttl}\n"
        self._config.write_text(
            "server:\n"
            "  interface: 127.0.0.1\n"
            f"  port: {self.port}\n"
            "  do-not-query-localhost: no\n"
            "  access-control: 127.0.0.0/8 allow\n"
            '  username: ""\n'
            '  chroot: ""\n'
            f'  directory: "{directory}"\n'
            f'  pidfile: "{directory}/unbound.pid"\n'
            '  logfile: ""\n'
            "  use-syslog: no\n"
            "  num-threads: 1\n"
            "  val-log-level: 2\n"
            '  module-config: "validator iterator"\n'
            f"{trust}{cache}"
            # Unbound answers names under test. itself (RFC 6761) unless told not to.
            '  local-zone: "test." nodefault\n'
            "stub-zone:\n"
            f'  name: "{zone}"\n'
            f"  stub-addr: 127.0.0.1@{authoritative_port}\n"
            "remote-control:\n"
            "  control-enable: no\n"
        )
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Unbound:
        check = subprocess.run(
            ["unbound-checkconf", str(self._config)], capture_output=True, text=True, check=False
        )
        assert check.returncode == 0, check.stdout + check.stderr
        self._process = subprocess.Popen(
            ["unbound", "-d", "-c", str(self._config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, "Unbound listening", timeout=20)
        return self

    def _answers(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)

    def resolver(self) -> DnsResolver:
        # On loopback: its AD bit is believed (dns.trust_ad = "loopback").
        return DnsResolver(nameserver=f"127.0.0.1:{self.port}", timeout=5, trust_ad="loopback")
