"""The authoritative DNS server as ``pillarbox serve`` runs it from the config: the TCP
connection cap is ``dns.authoritative_max_tcp_connections``."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import dns.message
import dns.rdatatype

from pillarbox.testing.live import LiveServer, free_port, loopback_config, serving_dns

DOMAIN = "example.org"


def tcp_query(conn: socket.socket, name: str) -> dns.message.Message:
    """One query over an open TCP connection (RFC 1035 §4.2.2: two-octet length first)."""
    wire = dns.message.make_query(name, dns.rdatatype.MX).to_wire()
    conn.sendall(struct.pack("!H", len(wire)) + wire)
    (length,) = struct.unpack("!H", conn.recv(2, socket.MSG_WAITALL))
    return dns.message.from_wire(conn.recv(length, socket.MSG_WAITALL))


def test_the_tcp_connection_cap_comes_from_the_config(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    config = serving_dns(
        loopback_config(tmp_path / "data", only=("smtp",)),
        port,
        authoritative_max_tcp_connections=2,
    )
    with LiveServer(config) as server:
        server.add_domain(DOMAIN)
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
        for conn in held:  # each is served, and stays open (RFC 7766 §6.2.1)
            assert tcp_query(conn, DOMAIN).answer, "no MX answer"
        # The third at once is closed without an answer: the cap of 2, not the default 256.
        third = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert third.recv(1) == b""
        third.close()
        held.pop().close()
        deadline = time.monotonic() + 5
        while True:  # the server notices the close when it next reads that connection
            again = socket.create_connection(("127.0.0.1", port), timeout=5)
            try:
                assert tcp_query(again, DOMAIN).answer
                break
            except (struct.error, ConnectionError):
                assert time.monotonic() < deadline, "a freed place was not taken up"
                time.sleep(0.1)
            finally:
                again.close()
        for conn in held:
            conn.close()
