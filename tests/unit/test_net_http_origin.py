"""URLs the server writes for its web listeners (serve's printout, autoconfig, the HTTPS
redirect): the port only when it is not the scheme's default (RFC 9110 §4.2)."""

from __future__ import annotations

import pytest

from pillarbox.net.http import origin


@pytest.mark.parametrize(
    ("scheme", "host", "port", "expected"),
    [
        ("https", "mail.example.org", 443, "https://mail.example.org"),
        ("https", "mail.example.org", 8443, "https://mail.example.org:8443"),
        ("http", "127.0.0.1", 80, "http://127.0.0.1"),
        ("http", "127.0.0.1", 443, "http://127.0.0.1:443"),
        ("https", "::1", 8443, "https://[::1]:8443"),
        ("https", "2001:db8::1", 443, "https://[2001:db8::1]"),
    ],
)
def test_origin(scheme: str, host: str, port: int, expected: str) -> None:
    assert origin(scheme, host, port) == expected
