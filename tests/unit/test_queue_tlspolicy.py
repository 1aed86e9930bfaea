"""The TLS policy table (Postfix's smtp_tls_policy_maps semantics): which entry a destination
gets, the names ``verify``/``secure`` accept, and how certificate names match them."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pillarbox.queue.tlspolicy import (
    Level,
    PolicyTable,
    certificate_matches_names,
    certificate_names,
    name_matches,
)
from pillarbox.testing.testca import make_ca

TABLE = PolicyTable.parse(
    {
        "example.org": "verify",
        ".example.org": "encrypt",
        ".deep.example.org": "none",
        "Partner.Example": "secure match=hostname:.mail.partner.example",
        "[relay.isp.example]": "encrypt",
        "[relay.isp.example]:587": "verify",
    }
)


@pytest.mark.parametrize(
    ("domain", "key"),
    [
        ("example.org", "example.org"),  # exact
        ("EXAMPLE.ORG.", "example.org"),
        ("mail.example.org", ".example.org"),  # a subdomain
        ("a.b.example.org", ".example.org"),  # at any depth
        ("x.deep.example.org", ".deep.example.org"),  # the nearest parent wins
        ("deep.example.org", ".example.org"),  # .deep.example.org is its subdomains only
        ("partner.example", "partner.example"),  # keys are not case-sensitive
        ("notexample.org", None),
        ("org", None),
        ("[192.0.2.1]", None),
    ],
)
def test_the_entry_for_a_domain(domain: str, key: str | None) -> None:
    found = TABLE.for_domain(domain)
    assert (found.key if found else None) == key


def test_the_entry_for_a_smart_host() -> None:
    by_port = TABLE.for_relay("relay.isp.example", 587)
    assert by_port is not None and by_port.level is Level.VERIFY
    plain = TABLE.for_relay("Relay.ISP.example", 25)
    assert plain is not None and plain.level is Level.ENCRYPT
    assert TABLE.for_relay("example.org", 25) is None  # domain keys are not smart hosts
    literal = PolicyTable.parse({"[192.0.2.1]": "encrypt"})  # or an address-literal domain
    assert literal.for_domain("[192.0.2.1]") is not None
    assert literal.for_domain("[192.0.2.10]") is None


def test_match_names_default_as_postfix() -> None:
    verify = TABLE.for_domain("example.org")
    assert verify is not None
    assert verify.match_names("mx1.example.net", "example.org") == ("mx1.example.net",)
    secure = PolicyTable.parse({"example.org": "secure"}).for_domain("example.org")
    assert secure is not None
    assert secure.match_names("mx1.example.net", "example.org") == ("example.org", ".example.org")
    explicit = TABLE.for_domain("partner.example")
    assert explicit is not None and explicit.match == ("hostname", ".mail.partner.example")
    assert explicit.match_names("MX.Other.", "partner.example") == (
        "mx.other",
        ".mail.partner.example",
    )


@pytest.mark.parametrize(
    ("presented", "wanted", "matches"),
    [
        ("mx.example.org", "mx.example.org", True),
        ("mx.example.org", "example.org", False),
        ("mx.example.org", ".example.org", True),
        ("a.mx.example.org", ".example.org", True),
        ("example.org", ".example.org", False),  # .suffix is subdomains only
        ("*.example.org", "mx.example.org", True),  # RFC 6125 §6.4.3: one label
        ("*.example.org", "a.mx.example.org", False),
        ("*.example.org", "example.org", False),
        ("*.example.org", ".example.org", True),
        ("m*.example.org", "mx.example.org", False),  # partial wildcards are not honoured
        ("xexample.org", ".example.org", False),
    ],
)
def test_name_matching(presented: str, wanted: str, matches: bool) -> None:
    assert name_matches(presented, wanted) is matches


def test_certificate_names_are_its_dns_alt_names(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    cert_path, _ = ca.issue("mx.example.org", "*.example.net", "192.0.2.1")
    der = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    assert certificate_names(der) == ("mx.example.org", "*.example.net")
    assert certificate_matches_names(der, ("a.example.net",))
    assert not certificate_matches_names(der, ("example.net", "192.0.2.1"))
    assert certificate_names(b"not a certificate") == ()
