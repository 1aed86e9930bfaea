"""RFC 7672 (DANE for SMTP) core, with RFC 6698/7671 TLSA records: parsing, usability, when a
lookup is due, the plan a lookup gives, certificate matching. Each table cites its section."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pillarbox.dns.resolver import trusted_for_ad
from pillarbox.queue.dane import (
    DanePlanKind,
    Tlsa,
    base_domains,
    certificate_matches,
    needs_alias_check,
    parse_tlsa,
    plan_for,
    subject_public_key_info,
    tlsa_for_certificate,
    tlsa_name,
)
from pillarbox.testing.testca import make_ca


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """Two DER leaf certificates with different keys."""
    ca = make_ca(Path(tmp_path_factory.mktemp("ca")))
    ders = []
    for name in ("mx1.example.com", "mx2.example.com"):
        cert_path, _ = ca.issue(name)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        ders.append(cert.public_bytes(serialization.Encoding.DER))
    return ders[0], ders[1]


# -- RFC 6698 §2.2 presentation format ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3 1 1 " + "ab" * 32, Tlsa(3, 1, 1, b"\xab" * 32)),
        ("3 1 1 " + "AB" * 16 + " " + "ab" * 16, Tlsa(3, 1, 1, b"\xab" * 32)),  # split hex
        ("2 0 1 00", Tlsa(2, 0, 1, b"\x00")),
        ("255 255 255 00", Tlsa(255, 255, 255, b"\x00")),
        ("3 1 1", None),  # no data
        ("3 1 x ab", None),
        ("3 1 1 abc", None),  # odd hex
        ("3 1 1 zz", None),
        ("256 1 1 ab", None),  # §2.1: one octet each
        ("", None),
    ],
)
def test_parse_tlsa(text: str, expected: Tlsa | None) -> None:
    assert parse_tlsa(text) == expected


def test_str_is_presentation_format() -> None:
    record = Tlsa(3, 1, 1, b"\x01\xff")
    assert str(record) == "3 1 1 01ff" and parse_tlsa(str(record)) == record


# -- usability: RFC 6698 §4.1, RFC 7672 §3.1 ------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "usable"),
    [
        (Tlsa(3, 1, 1, b"\0" * 32), True),  # §3.1.1: the recommended DANE-EE SPKI SHA2-256
        (Tlsa(3, 0, 1, b"\0" * 32), True),
        (Tlsa(3, 1, 2, b"\0" * 64), True),
        (Tlsa(3, 0, 0, b"\x30\x00"), True),  # full certificate
        (Tlsa(3, 1, 1, b"\0" * 31), False),  # a digest of the wrong length matches nothing
        (Tlsa(3, 1, 2, b"\0" * 32), False),
        (Tlsa(3, 0, 0, b""), False),
        (Tlsa(3, 2, 1, b"\0" * 32), False),  # unknown selector
        (Tlsa(3, 1, 3, b"\0" * 32), False),  # unknown matching type
        (Tlsa(2, 0, 1, b"\0" * 32), False),  # DANE-TA: needs the chain (module notes)
        (Tlsa(1, 1, 1, b"\0" * 32), False),  # §3.1.3: PKIX-EE
        (Tlsa(0, 0, 1, b"\0" * 32), False),  # §3.1.3: PKIX-TA
        (Tlsa(4, 1, 1, b"\0" * 32), False),
    ],
)
def test_usable(record: Tlsa, usable: bool) -> None:
    assert record.usable is usable


# -- when to look up, and the plan (§2.2) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("canonical", "mx_secure", "addresses_secure", "alias_secure", "bases"),
    [
        ("", True, True, False, ("mx.example.com",)),
        ("mx.example.com", True, True, False, ("mx.example.com",)),  # the name, no alias
        ("mx.provider.net", True, True, False, ("mx.provider.net", "mx.example.com")),  # §2.2.3
        ("", True, False, False, ()),  # §2.2.2: insecure addresses, no lookup
        ("", True, False, True, ()),  # not an alias: the CNAME status does not count
        ("mx.provider.net", True, False, False, ()),  # §2.2.2 "Insecure CNAME", insecure alias
        ("mx.provider.net", True, False, True, ("mx.example.com",)),  # ... secure alias
        ("mx.provider.net", False, False, True, ()),  # §2.2.1: insecure MX RRset
        ("", False, True, False, ()),
    ],
)
def test_base_domains(
    canonical: str,
    mx_secure: bool,
    addresses_secure: bool,
    alias_secure: bool,
    bases: tuple[str, ...],
) -> None:
    found = base_domains(
        "mx.example.com",
        canonical,
        mx_secure=mx_secure,
        addresses_secure=addresses_secure,
        alias_secure=alias_secure,
    )
    assert found == bases
    check = needs_alias_check(
        "mx.example.com", canonical, mx_secure=mx_secure, addresses_secure=addresses_secure
    )
    assert check is (mx_secure and not addresses_secure and canonical == "mx.provider.net")


def test_tlsa_name() -> None:
    """§2.2.3: the port connected to, then the base domain."""
    assert tlsa_name("MX.Example.com.", 25) == "_25._tcp.mx.example.com"
    assert tlsa_name("mx.example.com", 2525) == "_2525._tcp.mx.example.com"


USABLE = "3 1 1 " + "ab" * 32
TA = "2 0 1 " + "ab" * 32


@pytest.mark.parametrize(
    ("records", "secure", "kind", "usable"),
    [
        ([USABLE], True, DanePlanKind.AUTHENTICATE, 1),
        ([USABLE, TA], True, DanePlanKind.AUTHENTICATE, 1),  # the usable ones only
        ([TA], True, DanePlanKind.ENCRYPT, 0),  # §2.2: TLS, no authentication
        (["garbage"], True, DanePlanKind.ENCRYPT, 0),
        ([USABLE], False, DanePlanKind.NONE, 0),  # insecure: as without DANE
        ([], True, DanePlanKind.NONE, 0),  # authenticated denial: as without DANE
        ([], False, DanePlanKind.NONE, 0),
    ],
)
def test_plan_for(records: list[str], secure: bool, kind: DanePlanKind, usable: int) -> None:
    plan = plan_for("mx.example.com", records, secure=secure)
    assert plan.kind is kind and len(plan.records) == usable
    assert plan.requires_tls is (kind in (DanePlanKind.AUTHENTICATE, DanePlanKind.ENCRYPT))


# -- matching (§3.1.1) ----------------------------------------------------------------------------


def _association(der: bytes, selector: int, matching: int) -> bytes:
    selected = der if selector == 0 else subject_public_key_info(der)
    assert selected is not None
    if matching == 1:
        return hashlib.sha256(selected).digest()
    if matching == 2:
        return hashlib.sha512(selected).digest()
    return selected


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("matching", [0, 1, 2])
def test_dane_ee_matches_its_own_certificate_only(
    certificates: tuple[bytes, bytes], selector: int, matching: int
) -> None:
    mine, other = certificates
    record = Tlsa(3, selector, matching, _association(mine, selector, matching))
    assert certificate_matches([record], mine) == record
    assert certificate_matches([record], other) is None


def test_any_usable_record_may_match(certificates: tuple[bytes, bytes]) -> None:
    mine, other = certificates
    records = [Tlsa(3, 1, 1, _association(other, 1, 1)), Tlsa(3, 0, 1, _association(mine, 0, 1))]
    assert certificate_matches(records, mine) == records[1]


def test_unusable_records_never_match(certificates: tuple[bytes, bytes]) -> None:
    mine, _ = certificates
    # The right digest under DANE-TA or PKIX-EE: not usable here, so no match.
    assert certificate_matches([Tlsa(2, 0, 1, _association(mine, 0, 1))], mine) is None
    assert certificate_matches([Tlsa(1, 1, 1, _association(mine, 1, 1))], mine) is None


def test_a_certificate_that_does_not_parse_matches_no_spki_record() -> None:
    record = Tlsa(3, 1, 1, b"\0" * 32)
    assert certificate_matches([record], b"not DER") is None
    # Selector 0 compares the bytes as sent: a full-certificate record of them still matches.
    assert certificate_matches([Tlsa(3, 0, 0, b"not DER")], b"not DER") is not None


def test_tlsa_for_certificate_is_3_1_1_of_the_spki(certificates: tuple[bytes, bytes]) -> None:
    mine, _ = certificates
    record = tlsa_for_certificate(mine)
    assert record == Tlsa(3, 1, 1, _association(mine, 1, 1))
    assert tlsa_for_certificate(b"junk") is None


# -- whose AD bit is believed (RFC 4035 §4.9.3) ----------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "servers", "trusted"),
    [
        ("loopback", ["127.0.0.1"], True),
        ("loopback", ["127.0.0.53"], True),  # systemd-resolved's stub
        ("loopback", ["::1"], True),
        ("loopback", ["127.0.0.1", "192.0.2.1"], False),  # every server must be local
        ("loopback", ["10.0.0.2"], False),
        ("loopback", [], False),
        ("always", ["192.0.2.1"], True),
        ("never", ["127.0.0.1"], False),
    ],
)
def test_trusted_for_ad(setting: str, servers: list[str], trusted: bool) -> None:
    assert trusted_for_ad(setting, servers) is trusted  # type: ignore[arg-type]
