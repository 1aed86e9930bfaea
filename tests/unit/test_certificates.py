"""The pure decisions behind ACME certificates (``pillarbox.certificates``), the ``[tls] acme``
config checks, and the challenge route of the web app."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import logging
import ssl
import stat
from pathlib import Path
from typing import Any

import httpx
import josepy
import pytest
from acme import challenges, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pillarbox import config as cfg
from pillarbox.atomicfile import write_atomically
from pillarbox.certificates import (
    CertificateFacts,
    acme_identifier,
    acme_name,
    acme_names,
    certificate_facts,
    certificate_scope,
    dns01_record_name,
    dns01_txt_value,
    renewal_reason,
    renewal_time,
    retry_delay,
)
from pillarbox.errors import ConfigError, InvalidName
from pillarbox.net.acme import CertificateManager
from pillarbox.net.acmechallenge import choose_challenge
from pillarbox.net.acmeclient import AcmeError
from pillarbox.net.tlsalpn import TLSALPN01
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.types import ACME_ANSWER_LAG, AcmeAnswer, AcmeCertificate
from pillarbox.web.acme import SharedTokens, challenge_app

#: The modulus of the RSA key of RFC 7638 §3.1 (base64url).
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
    "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Qvzq"
    "Y368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu"
    "0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
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


def test_acme_name_takes_wildcards_only_when_asked() -> None:
    assert acme_name("*.Example.org.", wildcard=True) == "*.example.org"
    assert acme_name("mail.example.org", wildcard=True) == "mail.example.org"


def test_acme_names_default_to_the_hostname_without_repeats() -> None:
    assert acme_names((), "Mail.Example.org") == ("mail.example.org",)
    assert acme_names(("a.example", "A.example.", "b.example"), "mx.example") == (
        "a.example",
        "b.example",
    )


def facts(*names: str, days_left: float) -> CertificateFacts:
    return CertificateFacts(
        names=names,
        addresses=(),
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


def self_signed(name: str, not_after: datetime.datetime) -> tuple[bytes, bytes, int]:
    """A certificate for ``name`` expiring at ``not_after``: its PEM, its key's and its serial."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    serial = x509.random_serial_number()
    built = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_after - datetime.timedelta(days=90))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return built.public_bytes(serialization.Encoding.PEM), key_pem, serial


def test_certificate_facts_read_the_leaf_of_a_chain() -> None:
    until = NOW + datetime.timedelta(days=90)
    leaf, _, serial = self_signed("leaf.example", until)
    read = certificate_facts(leaf + self_signed("intermediate.example", until)[0])
    assert read.names == ("leaf.example",)
    assert read.serial == serial
    assert read.not_after == until
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
        ({"acme_challenges": ()}, "tls.acme_challenges"),
        ({"acme_challenges": ("http-01", "http-01")}, "tls.acme_challenges"),
        # dns-01 is answered by our own authoritative server, off by default.
        ({"acme_challenges": ("dns-01",)}, "tls.acme_challenges"),
        # tls-alpn-01 by the https listener, off by default too.
        ({"acme_challenges": ("tls-alpn-01",)}, "tls.acme_challenges"),
    ]
    for settings, key in bad:
        with pytest.raises(ConfigError) as raised:
            cfg._validate(acme_config(**settings))
        assert raised.value.key == key, settings
    https = cfg.Listeners(https=cfg.Listener(port=443, enabled=True))
    cfg._validate(
        dataclasses.replace(acme_config(acme_challenges=("tls-alpn-01",)), listeners=https)
    )
    # Without acme_names the server's own name must be one a CA can issue for.
    localhost = dataclasses.replace(acme_config(), server=cfg.ServerSection(hostname="localhost"))
    with pytest.raises(ConfigError) as raised:
        cfg._validate(localhost)
    assert raised.value.key == "server.hostname"


def test_wildcards_need_dns01_and_dns01_our_authoritative_server() -> None:
    dns = cfg.DnsSection(authoritative_enabled=True)
    wildcard = {"acme_names": ("mail.example.org", "*.example.org")}
    for preference in (("dns-01",), ("http-01", "dns-01")):
        config = dataclasses.replace(acme_config(acme_challenges=preference, **wildcard), dns=dns)
        cfg._validate(config)
    # RFC 8555 §8.3: HTTP-01 cannot prove a wildcard; the dotted key names the culprit.
    http_only = dataclasses.replace(acme_config(**wildcard), dns=dns)
    with pytest.raises(ConfigError) as raised:
        cfg._validate(http_only)
    assert raised.value.key == "tls.acme_names"
    assert "dns-01" in str(raised.value)
    # A wildcard only as the whole leftmost label.
    for name in ("a.*.example.org", "*a.example.org", "*.org", "*.*.example.org"):
        odd = acme_config(acme_challenges=("dns-01",), acme_names=(name,))
        with pytest.raises(ConfigError) as raised:
            cfg._validate(dataclasses.replace(odd, dns=dns))
        assert raised.value.key == "tls.acme_names", name


def test_dns_hooks_config() -> None:
    hook = {"acme_challenges": ("dns-01",), "acme_names": ("*.example.org",)}
    # A hook alone (zones served elsewhere) is enough for dns-01.
    cfg._validate(acme_config(acme_dns_hook=("/usr/local/bin/dns-hook", "add"), **hook))
    bad = [
        ({"acme_dns_hook": ("dns-hook",)}, "tls.acme_dns_hook"),  # no PATH search
        ({"acme_dns_hook": ("/x",), "acme_dns_cleanup_hook": ("rm",)}, "tls.acme_dns_cleanup_hook"),
        ({"acme_dns_cleanup_hook": ("/x",)}, "tls.acme_dns_cleanup_hook"),  # without a hook
        ({"acme_dns_hook": ("/x",), "acme_dns_hook_timeout": 0.0}, "tls.acme_dns_hook_timeout"),
    ]
    for settings, key in bad:
        with pytest.raises(ConfigError) as raised:
            cfg._validate(acme_config(**hook, **settings))
        assert raised.value.key == key, settings


def test_challenge_choice_per_authorization() -> None:
    """The first type of the preference the CA offers and we can answer: http-01 never for a
    wildcard, dns-01 only where a zone (ours, or the hook's) takes the record."""
    key = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))

    def authorization(name: str, *types: type[challenges.Challenge], wildcard: bool = False) -> Any:
        bodies = [
            messages.ChallengeBody(
                chall=kind(token=b"t" * 32),
                uri=f"https://ca.test/{i}",
                status=messages.STATUS_PENDING,
            )
            for i, kind in enumerate(types)
        ]
        identifier = messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=name)
        return messages.Authorization(
            identifier=identifier, challenges=bodies, wildcard=wildcard or None
        )

    both = (challenges.HTTP01, challenges.DNS01)
    ours = {"example.org": "example.org", "mail.example.org": "example.org"}
    chosen = choose_challenge(
        authorization("mail.example.org", *both), key, ("http-01", "dns-01"), ours
    )
    assert chosen.record is None and chosen.body.chall.typ == "http-01"
    assert chosen.key_authorization.partition(".")[0] == chosen.token  # RFC 8555 §8.1
    chosen = choose_challenge(
        authorization("mail.example.org", *both), key, ("dns-01", "http-01"), ours
    )
    assert chosen.record is not None
    assert chosen.record.name == "_acme-challenge.mail.example.org"
    assert chosen.record.domain == "example.org"
    assert chosen.record.value == dns01_txt_value(chosen.key_authorization)
    # A wildcard skips http-01 whatever the order.
    wildcard = authorization("example.org", challenges.DNS01, wildcard=True)
    chosen = choose_challenge(wildcard, key, ("http-01", "dns-01"), ours)
    assert chosen.record is not None and chosen.record.name == "_acme-challenge.example.org"
    # Nothing answerable: the reasons, one per type tried.
    with pytest.raises(AcmeError) as raised:
        choose_challenge(wildcard, key, ("http-01", "dns-01"), {})
    assert "*.example.org" in str(raised.value)
    assert "the CA offers no http-01" in str(raised.value)
    assert "dns-01 needs our DNS server to serve _acme-challenge.example.org" in str(raised.value)
    with pytest.raises(AcmeError, match="cannot prove a wildcard"):
        choose_challenge(
            authorization("example.org", *both, wildcard=True), key, ("http-01",), ours
        )
    # tls-alpn-01 (RFC 8737): by its name, never for a wildcard either.
    three = (*both, TLSALPN01)
    chosen = choose_challenge(
        authorization("mail.example.org", *three), key, ("tls-alpn-01", "http-01"), ours
    )
    assert chosen.kind == "tls-alpn-01" and chosen.name == "mail.example.org"
    assert chosen.record is None and chosen.response.to_partial_json() == {}  # RFC 8555 §7.5.1
    chosen = choose_challenge(
        authorization("example.org", *three, wildcard=True), key, ("tls-alpn-01", "dns-01"), ours
    )
    assert chosen.kind == "dns-01"
    with pytest.raises(AcmeError, match=r"tls-alpn-01 cannot prove a wildcard"):
        choose_challenge(
            authorization("example.org", *three, wildcard=True), key, ("tls-alpn-01",), ours
        )


def test_acme_challenges_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "pillarbox.toml"
    path.write_text(
        '[server]\nhostname = "mail.example.org"\n[dns]\nauthoritative_enabled = true\n'
        '[tls]\nacme = true\nacme_challenges = ["dns-01", "http-01"]\n'
        'acme_names = ["*.example.org"]\n'
    )
    assert cfg.load(path).tls.acme_challenges == ("dns-01", "http-01")
    path.write_text('[tls]\nacme_challenges = ["tls-sni-01"]\n')  # RFC 8737 §1: gone
    with pytest.raises(ConfigError) as raised:
        cfg.load(path)
    assert raised.value.key == "tls.acme_challenges[0]"
    # Existing configs (no acme_challenges) keep HTTP-01.
    assert cfg.TlsSection().acme_challenges == ("http-01",)


def test_dns01_txt_value_of_the_rfc_key_authorization() -> None:
    """RFC 8555 §8.1: key authorization = token "." base64url(JWK thumbprint); §8.4: the TXT
    value is base64url(SHA-256(key authorization)). The account key is RFC 7638 §3.1's, whose
    thumbprint the RFC gives; the token is RFC 8555 §8.4's example."""
    jwk = josepy.JWK.from_json({"kty": "RSA", "n": RFC7638_N, "e": "AQAB"})
    thumbprint = base64.urlsafe_b64encode(jwk.thumbprint()).rstrip(b"=").decode()
    assert thumbprint == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"  # RFC 7638 §3.1
    token = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
    challenge = challenges.DNS01(token=josepy.b64.b64decode(token))
    key_authorization = challenge.key_authorization(jwk)
    assert key_authorization == f"{token}.{thumbprint}"
    value = dns01_txt_value(key_authorization)
    assert value == "ZTRx1Ckl1-tM05o5zaizTTA0yUy5AGereMgSNWC6Ll8"
    assert value == challenge.validation(jwk)  # certbot's library agrees
    assert len(value) == 43 and "=" not in value  # 32 octets, unpadded
    assert dns01_record_name(acme_identifier("*.example.org")) == "_acme-challenge.example.org"
    assert dns01_record_name(acme_identifier("mail.example.org")) == (
        "_acme-challenge.mail.example.org"
    )


def test_write_atomically_replaces_whole_files_with_their_mode(tmp_path: Path) -> None:
    target = tmp_path / "acme" / "key.pem"
    write_atomically(target, b"first", 0o600)
    write_atomically(target, b"second", 0o600)
    assert target.read_bytes() == b"second"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["key.pem"]  # no temporary left


async def test_challenge_route_answers_known_tokens_only() -> None:
    answers = {"tok-EN_123": "tok-EN_123.thumbprint"}
    transport = httpx.ASGITransport(app=challenge_app(answers, None))
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


async def test_challenge_route_answers_other_nodes_tokens_from_the_store(tmp_path: Path) -> None:
    """A token this node does not hold is looked up in the store, where another node's attempt
    shared it: unexpired ones are answered, unknown and expired ones are 404."""
    store = SqliteStore(tmp_path / "db.sqlite3")
    await store.open()
    try:
        now = datetime.datetime.now(datetime.UTC)
        hour = datetime.timedelta(hours=1)
        await store.add_acme_answer(AcmeAnswer("http-01", "shared", "shared.thumb", now + hour), 9)
        await store.add_acme_answer(AcmeAnswer("http-01", "stale", "stale.thumb", now), 9)
        await store.add_acme_answer(AcmeAnswer("tls-alpn-01", "alpn", "alpn.thumb", now + hour), 9)
        app = challenge_app({"local": "local.thumb"}, SharedTokens(store, 9))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mx.example") as client:
            for token, body in (("local", b"local.thumb"), ("shared", b"shared.thumb")):
                found = await client.get(f"/.well-known/acme-challenge/{token}")
                assert (found.status_code, found.content) == (200, body), token
            for token in ("unknown", "stale", "alpn", "SHARED", "a.b"):
                missing = await client.get(f"/.well-known/acme-challenge/{token}")
                assert missing.status_code == 404, token
            # Without the store, only this node's own tokens.
            alone = httpx.ASGITransport(app=challenge_app({}, None))
            async with httpx.AsyncClient(transport=alone, base_url="http://mx.example") as other:
                assert (await other.get("/.well-known/acme-challenge/shared")).status_code == 404
    finally:
        await store.close()


async def test_unknown_tokens_cost_no_store_query_while_none_is_pending(tmp_path: Path) -> None:
    """The store holds no http-01 answer: that is remembered for ACME_ANSWER_LAG seconds, so an
    answer written meanwhile is not seen (the store was not asked) until the lag has passed;
    while some are pending every lookup reads the store, an answer added then is seen at once."""
    store = SqliteStore(tmp_path / "db.sqlite3")
    await store.open()
    try:
        now = [100.0]
        shared = SharedTokens(store, 9, clock=lambda: now[0])
        later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        assert await shared.answer("first") is None  # read: none pending
        await store.add_acme_answer(AcmeAnswer("http-01", "first", "first.thumb", later), 9)
        now[0] += ACME_ANSWER_LAG - 0.01
        assert await shared.answer("first") is None  # not asked
        assert await shared.answer("other") is None
        now[0] += 0.01
        assert await shared.answer("first") == "first.thumb"
        assert await shared.answer("unknown") is None  # read: "first" is pending
        await store.add_acme_answer(AcmeAnswer("http-01", "second", "second.thumb", later), 9)
        assert await shared.answer("second") == "second.thumb"
        await store.remove_acme_answer("http-01", "first", "first.thumb")
        await store.remove_acme_answer("http-01", "second", "second.thumb")
        assert await shared.answer("second") is None  # read: none pending again
        await store.add_acme_answer(AcmeAnswer("http-01", "third", "third.thumb", later), 9)
        assert await shared.answer("third") is None
        now[0] += ACME_ANSWER_LAG
        assert await shared.answer("third") == "third.thumb"
    finally:
        await store.close()


def test_nodes_configured_alike_share_one_certificate_scope() -> None:
    """The scope is the directory and the set of names: order and case do not matter, a
    changed CA or name list is another certificate."""
    scope = certificate_scope("https://ca/dir", ["mail.example.org", "MTA-STS.example.org"])
    assert scope == certificate_scope("https://ca/dir", ["mta-sts.example.org", "mail.example.org"])
    assert scope != certificate_scope(
        "https://staging/dir", ["mail.example.org", "mta-sts.example.org"]
    )
    assert scope != certificate_scope("https://ca/dir", ["mail.example.org"])


async def test_a_tie_in_expiry_is_settled_by_the_stores_certificate(tmp_path: Path) -> None:
    """Two nodes that ordered their own certificates in the same second hold two that expire
    alike. The store keeps the first one shared (a tie does not replace it), so the node
    holding the other takes the store's up at its next sync: one certificate for the
    cluster, as with any other pair (CI once saw both nodes keep their own)."""
    base = acme_config(acme_directory="https://ca.test/dir")
    config = dataclasses.replace(
        base, server=dataclasses.replace(base.server, data_dir=str(tmp_path / "data"))
    )
    store = SqliteStore(tmp_path / "db.sqlite3")
    await store.open()
    try:
        manager = CertificateManager(
            config, ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), {}
        )
        manager.store = store
        until = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=60)).replace(
            microsecond=0
        )
        mine, my_key, my_serial = self_signed("mail.example.org", until)
        theirs, their_key, their_serial = self_signed("mail.example.org", until)
        for path, data in ((manager.files.cert, mine), (manager.files.key, my_key)):
            write_atomically(path, data, 0o600)
        write_atomically(manager.files.issuer_directory, b"https://ca.test/dir")
        manager.install_stored()
        assert manager.facts is not None and manager.facts.serial == my_serial
        scope = certificate_scope("https://ca.test/dir", ["mail.example.org"])
        assert await store.put_acme_certificate(AcmeCertificate(scope, theirs, their_key, until))
        # A tie does not replace what is stored ...
        assert not await store.put_acme_certificate(AcmeCertificate(scope, mine, my_key, until))
        # ... so this node takes the store's up, and then keeps it.
        for _ in range(2):
            await manager.sync()
            assert manager.facts.serial == their_serial
            assert manager.files.cert.read_bytes() == theirs
            stored = await store.acme_certificate(scope)
            assert stored is not None and stored.chain_pem == theirs
    finally:
        await store.close()


def manager_on(store: SqliteStore, data_dir: Path, directory: str) -> CertificateManager:
    """A node's certificate manager for ``directory``, sharing ``store``."""
    base = acme_config(acme_directory=directory)
    config = dataclasses.replace(
        base, server=dataclasses.replace(base.server, data_dir=str(data_dir))
    )
    manager = CertificateManager(config, ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), {})
    manager.store = store
    return manager


async def test_nodes_with_account_keys_of_their_own_order_under_the_one_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two nodes upgraded from an earlier version each hold an ``account.key`` of their own:
    their first attempts at once end with one account in the store, one of the two keys, and
    both use it; each file is kept as ``account.key.old``. A node without a file uses it too,
    and another CA directory gets an account of its own."""
    caplog.set_level(logging.INFO, logger="pillarbox.acme")
    store = SqliteStore(tmp_path / "db.sqlite3")
    await store.open()
    try:
        directory = "https://ca.test/dir"
        managers = [manager_on(store, tmp_path / name, directory) for name in ("a", "b", "c")]
        keys = []
        for manager in managers[:2]:
            key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            write_atomically(manager.files.account_key, key, 0o600)
            keys.append(key)
        first, second = await asyncio.gather(*(m.account() for m in managers[:2]))
        assert first == second and first.key_pem in keys
        assert (first.directory, first.url) == (directory, "")
        for manager, key in zip(managers[:2], keys, strict=True):
            assert not manager.files.account_key.exists()
            assert manager.files.old_account_key.read_bytes() == key
        logged = [r.getMessage() for r in caplog.records]
        assert logged.count("ACME account key taken into the store") == 1
        # Again, and on a node that never had a file: the one account.
        for manager in managers:
            assert await manager.account() == first
        assert not managers[2].files.old_account_key.exists()
        # The CA named the account's URL: stored, and then given to every node.
        await store.set_acme_account_url(directory, first.key_pem, "https://ca.test/a/1")
        assert (await managers[2].account()).url == "https://ca.test/a/1"
        # Another directory (staging, say): an account of its own, with a key of its own.
        staging = manager_on(store, tmp_path / "c", "https://staging.ca.test/dir")
        other = await staging.account()
        assert other.directory == "https://staging.ca.test/dir"
        assert other.key_pem not in keys and other.url == ""
        assert "ACME account key made and stored" in [r.getMessage() for r in caplog.records]
        assert await store.acme_account(directory) == dataclasses.replace(
            first, url="https://ca.test/a/1"
        )
    finally:
        await store.close()
