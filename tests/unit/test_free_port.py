""":func:`pillarbox.testing.live.free_port`, which every live test's listeners and peers take
their ports from: a port is free when handed out, and never handed out twice in a row of
calls (the callers bind later: two frontends of one HAProxy were once given one port, and the
balancer, binding both with SO_REUSEPORT, sent a ManageSieve client to POP3)."""

from __future__ import annotations

import socket

from pillarbox.testing import live


def test_ports_handed_out_are_free_and_never_handed_out_again() -> None:
    ports = [live.free_port("127.0.0.1") for _ in range(600)]
    assert len(set(ports)) == len(ports)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", ports[-1]))  # still free: nothing bound it meanwhile


def test_the_memory_of_ports_handed_out_is_bounded() -> None:
    for _ in range(live._HANDED_OUT_KEPT + 100):
        live.free_port("127.0.0.1")
    assert len(live._HANDED_OUT) == live._HANDED_OUT_KEPT
