"""Whom the MX's pregreet test makes wait (:class:`pillarbox.net.pregreet.GreetPause`), the
clock an argument: every stranger until it waited once, then not for ``pass_ttl``; never a
trusted network; the memory bounded. The wait itself is in
tests/interop/test_smtp_early_talkers.py.
"""

from __future__ import annotations

import ipaddress

from pillarbox.net.pregreet import GreetPause
from pillarbox.observability.metrics import Metrics


def pause(max_clients: int = 10) -> GreetPause:
    trusted = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")]
    return GreetPause(5.0, 100.0, max_clients, trusted, Metrics())


def test_a_client_waits_until_it_waited_once_then_not_for_the_ttl() -> None:
    p = pause()
    assert p.applies("192.0.2.1", 0.0)
    assert p.applies("192.0.2.1", 1.0)  # talking first or leaving remembers nothing
    p.waited("192.0.2.1", 10.0)
    assert not p.applies("192.0.2.1", 50.0)
    assert not p.applies("192.0.2.1", 109.9)
    assert p.applies("192.0.2.2", 50.0)  # by address
    assert p.applies("192.0.2.1", 110.0)  # the pass expired: waits again
    assert p.applies("192.0.2.1", 111.0)


def test_trusted_networks_never_wait() -> None:
    p = pause()
    assert not p.applies("10.1.2.3", 0.0)
    assert not p.applies("::1", 0.0)
    assert not p.applies("::ffff:10.1.2.3", 0.0)  # an IPv4 client on a dual-stack listener


def test_the_memory_is_bounded_and_starts_empty_when_full() -> None:
    p = pause(max_clients=2)
    p.waited("192.0.2.1", 0.0)
    p.waited("192.0.2.2", 0.0)
    assert not p.applies("192.0.2.1", 1.0) and not p.applies("192.0.2.2", 1.0)
    p.waited("192.0.2.3", 1.0)  # a third: the memory is emptied first
    assert p.applies("192.0.2.1", 2.0) and p.applies("192.0.2.2", 2.0)
    assert not p.applies("192.0.2.3", 2.0)
