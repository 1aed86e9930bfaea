"""The pure decisions behind ACME certificates (``pillarbox.certificates``), the ``[tls] acme``
config checks, and the challenge route of the web app."""

from __future__ import annotations

import dataclasses
import datetime
import stat
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pillarbox import config as cfg
from pillarbox.atomicfile import write_atomically
from pillarbox.certificates import (
    CertificateFacts,
    acme_name,
    acme_names,
    certificate_facts,
    renewal_reason,
    renewal_time,
    retry_delay,
)
from pillarbox.errors import ConfigError, InvalidName
from pillarbox.web.acme import challenge_app

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("mail.example.org", "mail.example.org"),
        ("MAIL.Example.ORG.", "mail.example.org"),
        (" mx-1.a.example ", "mx-1.a.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ],
)
def test_acme_name_accepts_host_names(given: str, canonical: str) -> None:
    assert acme_name(given) == canonical


@pytest.mark.parametrize(
    "given",
    [
        "localhost",  # one label
        "*.example.org",  # RFC 8555 §8.3: no wildcard over HTTP-01
        "192.0.2.1",
        "::1",
        "-bad.example.org",
        "bad-.example.org",
        "under_score.example.org",
        "a..example.org",
        "a/b.example.org",
        "../etc.example.org",
        ("x" * 64) + ".example.org",
        ".".join(["abcdefghi"] * 26),  # 259 characters
        "",
    ],
)
def test_acme_name_refuses_what_http01_cannot_prove(given: str) -> None:
    with pytest.raises(InvalidName):
        acme_name(given)


def test_acme_names_default_to_the_hostname_without_repeats() -> None:
    assert acme_names((), "Mail.Example.org") == ("mail.example.org",)
    assert acme_names(("a.example", "A.example.", "b.example"), "mx.example") == (
        "a.example",
        "b.example",
    )


def facts(*names: str, days_left: float) -> CertificateFacts:
    return CertificateFacts(
        names=names,
        serial=1,
        issuer="CN=test",
        not_before=NOW - datetime.timedelta(days=60),
        not_after=NOW + datetime.timedelta(days=days_left),
    )


def test_renewal_reasons() -> None:
    names = ("mail.example.org",)
    assert renewal_reason(None, names, NOW, 30) == "no certificate yet"
    assert renewal_reason(facts("mail.example.org", days_left=31), names, NOW, 30) == ""
    assert renewal_reason(facts("mail.example.org", days_left=29.5), names, NOW, 30) == (
        "expires in 29.5 days"
    )
    assert renewal_reason(facts("mail.example.org", days_left=-1), names, NOW, 30).startswith(
        "expires in -1.0"
    )
    changed = renewal_reason(facts("old.example.org", days_left=80), names, NOW, 30)
    assert changed == "not valid for mail.example.org"
    # A certificate may carry more names than asked for; upper case in it does not matter.
    assert (
        renewal_reason(facts("MAIL.example.org", "x.example", days_left=80), names, NOW, 30) == ""
    )


def test_renewal_time_is_renew_days_before_expiry() -> None:
    assert renewal_time(facts("a.example", days_left=90), 30) == NOW + datetime.timedelta(days=60)


def test_retry_delay_doubles_up_to_the_ceiling() -> None:
    assert [retry_delay(n, 300.0, 3600.0) for n in range(1, 7)] == [
        300.0,
        600.0,
        1200.0,
        2400.0,
        3600.0,
        3600.0,
    ]
    assert retry_delay(10_000, 1.0, 43200.0) == 43200.0


def test_certificate_facts_read_the_leaf_of_a_chain() -> None:
    key = ec.generate_private_key(ec.SECP256R1())

    def cert(name: str, serial: int) -> bytes:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        built = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(NOW)
            .not_valid_after(NOW + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256())
        )
        return built.public_bytes(serialization.Encoding.PEM)

    read = certificate_facts(cert("leaf.example", 7) + cert("intermediate.example", 8))
    assert read.names == ("leaf.example",)
    assert read.serial == 7
    assert read.not_after == NOW + datetime.timedelta(days=90)
    with pytest.raises(ValueError, match="PEM"):
        certificate_facts(b"not a certificate")


def acme_config(**tls: object) -> cfg.Config:
    return cfg.Config(
        server=cfg.ServerSection(hostname="mail.example.org"),
        tls=cfg.TlsSection(acme=True, **tls),  # type: ignore[arg-type]
    )


def test_acme_config_checks() -> None:
    cfg._validate(acme_config())
    cfg._validate(cfg.Config(tls=cfg.TlsSection(acme=False)))  # hostname localhost: ACME off
    bad = [
        ({"cert": "c.pem", "key": "k.pem"}, "tls.acme"),
        ({"acme_directory": "ftp://ca.example/dir"}, "tls.acme_directory"),
        ({"acme_renew_days": 0}, "tls.acme_renew_days"),
        ({"acme_retry": -1.0}, "tls.acme_retry"),
        ({"acme_http_port": 70000}, "tls.acme_http_port"),
        ({"acme_names": ("*.example.org",)}, "tls.acme_names"),
    ]
    for settings, key in bad:
        with pytest.raises(ConfigError) as raised:
            cfg._validate(acme_config(**settings))
        assert raised.value.key == key, settings
    # Without acme_names the server's own name must be one a CA can issue for.
    localhost = dataclasses.replace(acme_config(), server=cfg.ServerSection(hostname="localhost"))
    with pytest.raises(ConfigError) as raised:
        cfg._validate(localhost)
    assert raised.value.key == "server.hostname"


def test_write_atomically_replaces_whole_files_with_their_mode(tmp_path: Path) -> None:
    target = tmp_path / "acme" / "key.pem"
    write_atomically(target, b"first", 0o600)
    write_atomically(target, b"second", 0o600)
    assert target.read_bytes() == b"second"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["key.pem"]  # no temporary left


async def test_challenge_route_answers_known_tokens_only() -> None:
    answers = {"tok-EN_123": "tok-EN_123.thumbprint"}
    transport = httpx.ASGITransport(app=challenge_app(answers))
    async with httpx.AsyncClient(transport=transport, base_url="http://mail.example.org") as client:
        found = await client.get("/.well-known/acme-challenge/tok-EN_123")
        assert found.status_code == 200
        assert found.content == b"tok-EN_123.thumbprint"
        assert found.headers["content-type"] == "application/octet-stream"
        for path in (
            "/.well-known/acme-challenge/unknown",
            "/.well-known/acme-challenge/..%2f..%2fetc%2fpasswd",
            "/.well-known/acme-challenge/",
            "/",
        ):
            assert (await client.get(path)).status_code == 404, path
        posted = await client.post("/.well-known/acme-challenge/tok-EN_123")
        assert posted.status_code == 405
