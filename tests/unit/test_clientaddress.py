"""The key a client address is counted under (:mod:`pillarbox.clientaddress`), and the
connection counter's use of it."""

from __future__ import annotations

import pytest

from pillarbox.clientaddress import client_key
from pillarbox.net.listener import ConnectionCounter, ConnectionLimits


@pytest.mark.parametrize(
    ("address", "prefix", "key"),
    [
        ("192.0.2.7", 64, "192.0.2.7"),
        ("::ffff:192.0.2.7", 64, "192.0.2.7"),  # a dual-stack listener's IPv4 peer
        ("2001:db8:1:2:aaaa::1", 64, "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::ffff", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", 56, "2001:db8:1::/56"),
        ("2001:db8:1:2::1", 128, "2001:db8:1:2::1"),
        ("fe80::1%eth0", 64, "fe80::/64"),
        ("unix", 64, "unix"),  # not an address: itself
        ("", 64, ""),
    ],
)
def test_client_key(address: str, prefix: int, key: str) -> None:
    assert client_key(address, prefix) == key


def test_connections_of_one_prefix_share_the_per_address_limit() -> None:
    counter = ConnectionCounter(ConnectionLimits(total=10, per_address=2))
    assert counter.admit("2001:db8:1:2::1") == counter.admit("2001:db8:1:2::2") == ""
    assert counter.admit("2001:db8:1:2:ffff::3") == "too many connections from your address"
    assert counter.admit("2001:db8:1:3::1") == ""
    counter.release("2001:db8:1:2::1")
    assert counter.admit("2001:db8:1:2::4") == ""
    assert counter.total == 3
    assert ConnectionCounter(ConnectionLimits(per_address=1, ipv6_prefix=128)).admit("::1") == ""
