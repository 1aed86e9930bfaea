"""The self-signed certificate of a first run follows the config: it names ``server.hostname``
and the addresses the server is reached at, and one made before those changed is replaced."""

from __future__ import annotations

import dataclasses
import ipaddress
import shutil
from pathlib import Path

from cryptography import x509

from pillarbox import config as cfg
from pillarbox.net.tls import certificate_addresses, ensure_self_signed
from pillarbox.testing.testca import make_ca


def names(cert: Path) -> tuple[set[str], set[str]]:
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    alt = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in alt.get_values_for_type(x509.IPAddress)}
    return set(alt.get_values_for_type(x509.DNSName)), ips


def test_a_changed_host_name_or_address_gets_a_new_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
    assert ensure_self_signed(cert, key, "localhost")  # `pillarbox init` without --hostname
    first = key.read_bytes()
    assert not ensure_self_signed(cert, key, "localhost", ["127.0.0.1"])  # covered: kept
    assert ensure_self_signed(cert, key, "mx.example.org")  # the operator set the name later
    assert key.read_bytes() != first
    assert names(cert) == ({"mx.example.org", "localhost"}, {"127.0.0.1", "::1"})
    assert ensure_self_signed(cert, key, "MX.example.org", ["127.0.0.2", "2001:db8::7"])
    assert names(cert)[1] == {"127.0.0.1", "::1", "127.0.0.2", "2001:db8::7"}
    assert not ensure_self_signed(cert, key, "mx.example.org", ["127.0.0.2"])


def test_a_certificate_not_self_signed_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "ca").mkdir()
    issued_cert, issued_key = make_ca(tmp_path / "ca").issue("other.example")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(issued_cert, cert)
    shutil.copy(issued_key, key)
    assert not ensure_self_signed(cert, key, "mx.example.org", ["192.0.2.1"])
    assert cert.read_bytes() == issued_cert.read_bytes()


def test_certificate_addresses_are_the_bound_and_published_ones() -> None:
    config = cfg.dev_config("data", "mx.example.org")
    listeners = dataclasses.replace(
        config.listeners,
        smtp=cfg.Listener(address="127.0.0.2", port=2525),
        imap=cfg.Listener(address="::", port=2143),
        pop3=cfg.Listener(address="127.0.0.9", port=2110, enabled=False),
    )
    config = dataclasses.replace(
        config,
        listeners=listeners,
        dns=dataclasses.replace(config.dns, addresses=("192.0.2.7", "127.0.0.2")),
    )
    found = certificate_addresses(config)
    assert found == ("127.0.0.2", "127.0.0.1", "192.0.2.7")
    assert all(ipaddress.ip_address(a) for a in found)
