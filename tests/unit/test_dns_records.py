"""records.py: the records a hosted domain needs, and their zone-file form."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.tokenizer
import dns.zone
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from pillarbox import config as cfg
from pillarbox.dns.hosted import record_policy
from pillarbox.dns.records import (
    DnsRecord,
    RecordPolicy,
    character_strings,
    normalise_name,
    quote_character_string,
    required_records,
    spf_value,
    tlsa_record,
)
from pillarbox.errors import InvalidName
from pillarbox.testing.testca import make_ca

DKIM_VALUE = "v=DKIM1; k=rsa; p=" + "A" * 392  # the length of an RSA-2048 key


def by_name_type(records: tuple[DnsRecord, ...]) -> dict[tuple[str, str], list[str]]:
    table: dict[tuple[str, str], list[str]] = {}
    for r in records:
        table.setdefault((r.name, r.type), []).append(r.value)
    return table


def test_full_set_for_a_domain_with_its_own_mail_host() -> None:
    result = required_records(
        "Example.COM.",
        mail_host="mail.example.com",
        addresses=["192.0.2.1", "2001:db8::1"],
        dkim={"pb202506r": DKIM_VALUE, "pb202506e": "v=DKIM1; k=ed25519; p=abc="},
    )
    table = by_name_type(result.records)
    assert result.domain == "example.com"
    assert table[("example.com", "MX")] == ["10 mail.example.com."]
    assert table[("mail.example.com", "A")] == ["192.0.2.1"]
    assert table[("mail.example.com", "AAAA")] == ["2001:db8::1"]
    assert table[("example.com", "TXT")] == ["v=spf1 ip6:2001:db8::1 ip4:192.0.2.1 -all"]
    assert table[("pb202506r._domainkey.example.com", "TXT")] == [DKIM_VALUE]
    assert table[("pb202506e._domainkey.example.com", "TXT")] == ["v=DKIM1; k=ed25519; p=abc="]
    assert table[("_dmarc.example.com", "TXT")] == [
        "v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@example.com"
    ]
    assert table[("_smtp._tls.example.com", "TXT")] == [
        "v=TLSRPTv1; rua=mailto:tls-reports@example.com"
    ]
    (sts,) = table[("_mta-sts.example.com", "TXT")]
    assert re.fullmatch(r"v=STSv1; id=[A-Za-z0-9]{1,32}", sts)
    srv = {name: value for (name, rtype), (value,) in table.items() if rtype == "SRV"}
    assert srv == {
        "_submissions._tcp.example.com": "0 1 465 mail.example.com.",
        "_submission._tcp.example.com": "10 1 587 mail.example.com.",
        "_imaps._tcp.example.com": "0 1 993 mail.example.com.",
        "_imap._tcp.example.com": "10 1 143 mail.example.com.",
        "_pop3s._tcp.example.com": "20 1 995 mail.example.com.",
        "_pop3._tcp.example.com": "30 1 110 mail.example.com.",
        "_sieve._tcp.example.com": "0 1 4190 mail.example.com.",
    }
    for label in ("mta-sts", "autoconfig", "autodiscover"):
        assert table[(f"{label}.example.com", "CNAME")] == ["mail.example.com."]
    assert all(r.purpose and r.ttl == 3600 for r in result.records)


def test_mail_host_elsewhere_gets_no_address_records_and_spf_mx() -> None:
    result = required_records("example.org", mail_host="mx.provider.net")
    types = {(r.name, r.type) for r in result.records}
    assert not {t for _, t in types} & {"A", "AAAA"}
    assert by_name_type(result.records)[("example.org", "TXT")] == ["v=spf1 mx -all"]
    addressed = required_records("example.org", mail_host="mx.provider.net", addresses=["::1"])
    assert not {r.type for r in addressed.records} & {"A", "AAAA"}


def test_mta_sts_policy_and_id_follow_the_policy() -> None:
    testing = required_records("example.com", mail_host="mail.example.com")
    assert testing.mta_sts_policy == (
        "version: STSv1\r\nmode: testing\r\nmx: mail.example.com\r\nmax_age: 86400\r\n"
    )
    assert testing.mta_sts_url == "https://mta-sts.example.com/.well-known/mta-sts.txt"
    enforce = required_records(
        "example.com", mail_host="mail.example.com", policy=RecordPolicy(mta_sts_mode="enforce")
    )
    assert "mode: enforce\r\n" in enforce.mta_sts_policy

    def sts_id(records: tuple[DnsRecord, ...]) -> str:
        return next(r.value for r in records if r.name.startswith("_mta-sts."))

    assert sts_id(testing.records) != sts_id(enforce.records)
    again = required_records("example.com", mail_host="mail.example.com")
    assert sts_id(again.records) == sts_id(testing.records)


def test_policy_choices() -> None:
    result = required_records(
        "example.com",
        mail_host="example.com",
        policy=RecordPolicy(dmarc_policy="reject", dmarc_reports="", tls_reports="", ttl=300),
    )
    table = by_name_type(result.records)
    assert table[("_dmarc.example.com", "TXT")] == ["v=DMARC1; p=reject"]
    assert ("_smtp._tls.example.com", "TXT") not in table
    assert table[("example.com", "MX")] == ["10 example.com."]
    assert {r.ttl for r in result.records} == {300}


def test_srv_records_name_the_ports_the_listeners_serve() -> None:
    """As the autoconfig documents do: a dev config's 2993 is published, not 993, and a
    listener that is off is left out (RFC 6186 §3.4 clients would try it)."""
    config = cfg.dev_config("data", "mx.example.com")
    config = dataclasses.replace(
        config,
        listeners=dataclasses.replace(
            config.listeners, pop3=dataclasses.replace(config.listeners.pop3, enabled=False)
        ),
    )
    result = required_records(
        "example.com", mail_host="mx.example.com", policy=record_policy(config)
    )
    srv = {n: v for (n, t), v in by_name_type(result.records).items() if t == "SRV"}
    assert srv == {
        "_submissions._tcp.example.com": ["0 1 2465 mx.example.com."],
        "_submission._tcp.example.com": ["10 1 2587 mx.example.com."],
        "_imaps._tcp.example.com": ["0 1 2993 mx.example.com."],
        "_imap._tcp.example.com": ["10 1 2143 mx.example.com."],
        "_pop3s._tcp.example.com": ["20 1 2995 mx.example.com."],
        "_sieve._tcp.example.com": ["0 1 4190 mx.example.com."],
    }
    standard = record_policy(cfg.production_config("data", "mx.example.com"))
    assert [s.port for s in standard.srv_services] == [465, 587, 993, 143, 995, 110, 4190]


def test_no_cname_to_itself() -> None:
    result = required_records("example.com", mail_host="autoconfig.example.com")
    cnames = {r.name for r in result.records if r.type == "CNAME"}
    assert cnames == {"mta-sts.example.com", "autodiscover.example.com"}


@pytest.mark.parametrize(
    ("call", "bad"),
    [
        (lambda: required_records("exa mple.com", mail_host="m.example.com"), "domain"),
        (lambda: required_records("example.com", mail_host="a..b"), "mail host"),
        (lambda: required_records("example.com", mail_host="m.x", addresses=["1.2.3"]), "ip"),
        (lambda: required_records("example.com", mail_host="m.x", dkim={"a b": "v"}), "selector"),
        (lambda: required_records("x" * 64 + ".com", mail_host="m.x"), "label"),
    ],
)
def test_bad_input_is_invalid_name(call: Callable[[], object], bad: str) -> None:
    with pytest.raises(InvalidName):
        call()


def test_names_normalised() -> None:
    assert normalise_name("Mail.Example.COM.") == "mail.example.com"
    assert normalise_name("bücher.de") == "xn--bcher-kva.de"
    assert normalise_name("_dmarc.example.com") == "_dmarc.example.com"


@pytest.mark.parametrize(
    ("length", "sizes"),
    [(0, [0]), (1, [1]), (255, [255]), (256, [255, 1]), (510, [255, 255]), (600, [255, 255, 90])],
)
def test_character_strings_split_at_255_octets(length: int, sizes: list[int]) -> None:
    parts = character_strings("z" * length)
    assert [len(p) for p in parts] == sizes
    assert b"".join(parts) == b"z" * length


def test_split_counts_octets_not_characters() -> None:
    parts = character_strings("é" * 200)  # 400 octets in UTF-8
    assert [len(p) for p in parts] == [255, 145]


def test_quoting_escapes() -> None:
    assert quote_character_string(b'say "hi" \\ ok') == '"say \\"hi\\" \\\\ ok"'
    assert quote_character_string(b"\x00\xff\n") == '"\\000\\255\\010"'


@settings(max_examples=100)
@given(st.binary(max_size=600))
def test_zone_text_parses_back_to_the_same_octets(data: bytes) -> None:
    text = " ".join(quote_character_string(s) for s in character_strings(data))
    rdata = dns.rdtypes.ANY.TXT.TXT.from_text(
        dns.rdataclass.IN, dns.rdatatype.TXT, dns.tokenizer.Tokenizer(text)
    )
    assert b"".join(rdata.strings) == data
    assert all(len(s) <= 255 for s in rdata.strings)


def test_zone_fragment_is_a_valid_zone() -> None:
    result = required_records(
        "example.com",
        mail_host="mail.example.com",
        addresses=["192.0.2.1"],
        dkim={"pb202506r": DKIM_VALUE},
    )
    fragment = result.zone()
    assert fragment.startswith("; DNS records for example.com")
    head = (
        "$ORIGIN example.com.\n"
        "@ 3600 IN SOA ns.example.com. hostmaster.example.com. 1 3600 900 1209600 300\n"
        "@ 3600 IN NS ns.example.com.\n"
    )
    zone = dns.zone.from_text(head + fragment, origin="example.com", relativize=False)
    dkim_rdata = zone.find_rdataset("pb202506r._domainkey.example.com.", "TXT")[0]
    assert [len(s) for s in dkim_rdata.strings] == [255, len(DKIM_VALUE) - 255]
    assert b"".join(dkim_rdata.strings).decode() == DKIM_VALUE
    published = {
        (name.to_text().rstrip("."), dns.rdatatype.to_text(rdataset.rdtype))
        for name, rdataset in zone.iterate_rdatasets()
    }
    assert {(r.name, r.type) for r in result.records} <= published


def test_spf_value() -> None:
    assert spf_value([]) == "v=spf1 mx -all"
    assert spf_value(["2001:DB8:0::1", "192.0.2.9"]) == "v=spf1 ip6:2001:db8::1 ip4:192.0.2.9 -all"


def test_tlsa_record_is_the_sha256_of_the_certificates_public_key(tmp_path: Path) -> None:
    cert_path, _ = make_ca(tmp_path).issue("mx.example.test")
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    if shutil.which("openssl"):
        # docs/dane.md's recipe, by a tool other than ours.
        pem = subprocess.run(
            ["openssl", "x509", "-in", str(cert_path), "-noout", "-pubkey"],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        spki = subprocess.run(
            ["openssl", "pkey", "-pubin", "-outform", "DER"],
            input=pem, capture_output=True, check=True,
        ).stdout  # fmt: skip
    else:
        spki = certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    record = tlsa_record("MX.Example.Test.", certificate.public_bytes(serialization.Encoding.DER))
    assert record.zone_line() == (
        f"_25._tcp.mx.example.test.\t3600\tIN\tTLSA\t3 1 1 {hashlib.sha256(spki).hexdigest()}"
    )
    with pytest.raises(ValueError, match="does not parse"):
        tlsa_record("mx.example.test", b"not a certificate")
