"""ACME DNS-01 (RFC 8555 §8.4) against a real CA: Pebble validates through Pillarbox's own
authoritative DNS server, which publishes the challenge TXT records of a hosted domain.

Pebble's ``-dnsserver`` is the live server's authoritative DNS server itself; no HTTP listener
runs, so DNS-01 is the only way a certificate can come, and a wildcard needs it anyway (§7.1.3).
Skipped where Debian's ``pebble`` is not installed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from pillarbox import config as cfg
from pillarbox import provisioning
from pillarbox.dns.acmerecords import txt_values
from pillarbox.net.acmefiles import AcmeFiles
from pillarbox.store.open import open_store
from pillarbox.testing import pebble as pebble_server
from pillarbox.testing.command import run_pillarbox
from pillarbox.testing.live import LiveServer, free_port, loopback_config
from pillarbox.testing.pebble import Pebble, presented_certificate
from pillarbox.testing.polling import wait_for

pytestmark = pytest.mark.skipif(
    not pebble_server.available(), reason="Pebble not installed (apt-get install pebble)"
)

DOMAIN = "pillarbox.test"
HOST = f"mail.{DOMAIN}"
WILDCARD = f"*.{DOMAIN}"


@pytest.fixture
def our_dns_port() -> int:
    return free_port("127.0.0.1")


@pytest.fixture
def pebble(tmp_path: Path, our_dns_port: int) -> Iterator[Pebble]:
    workdir = tmp_path / "pebble"
    workdir.mkdir()
    # Nothing listens on Pebble's HTTP-01 port: a certificate can only come through DNS-01.
    with Pebble(workdir, http_port=free_port("127.0.0.1"), dns_port=our_dns_port) as server:
        yield server


def dns01_config(tmp_path: Path, pebble: Pebble, dns_port: int) -> cfg.Config:
    base = loopback_config(tmp_path / "data", only=("imaps",))
    return dataclasses.replace(
        base,
        server=dataclasses.replace(base.server, hostname=HOST),
        dns=dataclasses.replace(
            base.dns,
            authoritative_enabled=True,
            authoritative_address="127.0.0.1",
            authoritative_port=dns_port,
        ),
        tls=cfg.TlsSection(
            acme=True,
            acme_directory=pebble.directory_url,
            acme_ca_bundle=str(pebble.ca_bundle),
            acme_challenges=("dns-01",),
            acme_names=(HOST, WILDCARD),
        ),
    )


def host_domain(config: cfg.Config) -> None:
    """The domain hosted before the server starts (its first attempt needs the zone)."""

    async def go() -> None:
        store = open_store(config.store.url, config.data_dir, config.store)
        await store.open()
        try:
            await provisioning.add_domain(store, DOMAIN)
        finally:
            await store.close()

    asyncio.run(go())


def test_wildcard_certificate_through_our_own_dns_server(
    tmp_path: Path, pebble: Pebble, our_dns_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pillarbox.acme")
    config = dns01_config(tmp_path, pebble, our_dns_port)
    host_domain(config)
    with LiveServer(config) as server:
        # dns-01 only: no challenge listener, no web listener.
        assert set(server.server.listeners) == {"imaps"}
        assert server.server.dns is not None and server.server.dns.port == our_dns_port
        manager = server.server.acme
        assert manager is not None
        wait_for(lambda: manager.facts is not None, "the certificate", timeout=90)
        assert manager.facts is not None
        assert sorted(manager.facts.names) == sorted((HOST, WILDCARD))

        # Served on the implicit-TLS listener, valid for the host and for any name the
        # wildcard covers (Python's hostname check matches the wildcard).
        for name in (HOST, f"imap.{DOMAIN}", f"anything.{DOMAIN}"):
            cert = presented_certificate(server.port("imaps"), pebble.root_pem, name)
            assert cert.serial_number == manager.facts.serial
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            assert sorted(sans.value.get_values_for_type(x509.DNSName)) == sorted((HOST, WILDCARD))
        # A name outside the wildcard's one label is not covered.
        with pytest.raises(ssl.SSLCertVerificationError):
            presented_certificate(server.port("imaps"), pebble.root_pem, f"a.b.{DOMAIN}")
        # The attempt's outcome is written after the certificate is in place.
        wait_for(lambda: "result" in AcmeFiles.of(config).read_status(), "status.json", timeout=10)
        assert AcmeFiles.of(config).read_status()["result"] == "ok"
        config_path = tmp_path / "pillarbox.toml"
        config_path.write_text(cfg.render_toml(config))
        status = run_pillarbox(tmp_path, "tls", "status", "--json")
        assert status.returncode == 0, status.stderr
        shown = json.loads(status.stdout)
        assert shown["source"] == "acme" and shown["serial"] == f"{manager.facts.serial:x}"
        assert shown["acme"]["names"] == [HOST, WILDCARD]
        assert shown["acme"]["challenges"] == ["dns-01"]

        # Both authorizations were answered with DNS-01 records (Pebble logs no challenge
        # types; nothing listens on its HTTP-01 port anyway).
        published = [r for r in caplog.records if r.getMessage() == "publishing dns-01 records"]
        assert [getattr(r, "fields", {}).get("records") for r in published] == [2], caplog.text

        # The challenge records are gone: from the store and from our server's answers.
        assert server.with_store(lambda s: s.list_acme_challenges(DOMAIN, datetime.now(UTC))) == []
        for name in (f"_acme-challenge.{DOMAIN}", f"_acme-challenge.{HOST}"):
            assert asyncio.run(txt_values("127.0.0.1", our_dns_port, name)) == [], name
        # The zone itself is still served (so the empty answers above come from it).
        assert asyncio.run(txt_values("127.0.0.1", our_dns_port, f"_dmarc.{DOMAIN}")) != []


def test_a_name_outside_our_zones_fails_with_the_reason(
    tmp_path: Path, pebble: Pebble, our_dns_port: int
) -> None:
    """No hosted domain holds the names: dns-01 cannot be answered, the attempt fails naming
    the name and why, and no record is left behind."""
    config = dns01_config(tmp_path, pebble, our_dns_port)
    with LiveServer(config) as server:
        wait_for(
            lambda: AcmeFiles.of(config).read_status().get("result") == "failed",
            "the failed attempt",
            timeout=60,
        )
        error = str(AcmeFiles.of(config).read_status()["error"])
        assert WILDCARD in error or HOST in error
        assert "dns-01 needs our DNS server to serve _acme-challenge." in error
        assert server.server.acme is not None and server.server.acme.facts is None
