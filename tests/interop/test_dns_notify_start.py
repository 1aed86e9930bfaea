"""The live server announces every hosted zone to its secondaries (NOTIFY, RFC 1996) when it
starts, changed or not, as BIND does: a secondary that missed the NOTIFY of a change while the
primary was down learns of the zone at the restart, not at its SOA refresh an hour later. A
UDP peer on loopback stands in for the secondary (Knot and BIND, the real ones, are in
test_dns_secondaries.py) and answers each NOTIFY."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.opcode
import dns.rdatatype
import pytest

from pillarbox.testing.live import LiveServer, free_port, loopback_config, serving_dns

DOMAIN = "pillarbox.test"


class Secondary:
    """Answers each NOTIFY it receives and keeps what it was (the zone named, or what else
    came)."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.received: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.socket.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            [question] = query.question
            if query.opcode() != dns.opcode.NOTIFY or question.rdtype != dns.rdatatype.SOA:
                self.received.append(f"not a NOTIFY: {query}")  # RFC 1996 §3.7
                continue
            self.received.append(question.name.to_text(omit_final_dot=True))
            self.socket.sendto(dns.message.make_response(query).to_wire(), peer)

    def wait(self, count: int, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.received)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.socket.close()


@pytest.fixture
def secondary() -> Iterator[Secondary]:
    peer = Secondary()
    yield peer
    peer.close()


def test_every_zone_is_announced_at_start_changed_or_not(
    tmp_path: Path, secondary: Secondary
) -> None:
    config = serving_dns(
        loopback_config(tmp_path / "data", only=("smtp",)),
        free_port("127.0.0.1"),
        notify=(f"127.0.0.1:{secondary.port}",),
        notify_retry_interval=1.0,
        zone_check_interval=0.5,
    )
    with LiveServer(config) as server:
        server.add_domain(DOMAIN)
        assert secondary.wait(1) == [DOMAIN]  # the new zone: its serial moved
        time.sleep(1.5)  # three zone checks: nothing changed, nothing announced
        assert secondary.received == [DOMAIN]
    # Restarted with the zone as it was: its serial stays, and it is announced all the same.
    with LiveServer(config):
        assert secondary.wait(2) == [DOMAIN, DOMAIN]
        time.sleep(1.5)
        assert secondary.received == [DOMAIN, DOMAIN]  # once, and answered: not sent again
