"""ACME behind a balancer: two ``pillarbox serve`` processes over one PostgreSQL store, node A
running the attempt and a real CA (Pebble) validating it on node B, as a balancer would send
the CA's connection to either node.

Pebble's ``httpPort`` is node B's challenge listener and its ``tlsPort`` node B's https
listener; node A's own listeners are on ports Pebble never uses, and node B's CA directory
does not answer (its own attempts fail), so A's certificate can only come through B answering
A's challenge from the store: http-01 by looking the token up, tls-alpn-01 from its refreshed
copy of pending answers.

Skipped without Debian's ``pebble`` or a PostgreSQL server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.net.acme import AcmeFiles
from pillarbox.testing import pebble as pebble_server
from pillarbox.testing.dnszone import ZoneRecord
from pillarbox.testing.live import free_port
from pillarbox.testing.nodes import Node
from pillarbox.testing.pebble import Pebble, presented_certificate
from pillarbox.testing.polling import wait_for
from pillarbox.testing.postgres import TestDatabase, unreachable_reason

_UNREACHABLE = unreachable_reason()
pytestmark = [
    pytest.mark.skipif(
        not pebble_server.available(), reason="Pebble not installed (apt-get install pebble)"
    ),
    pytest.mark.skipif(_UNREACHABLE is not None, reason=_UNREACHABLE or ""),
]

NAME = "mail.pillarbox.test"


@pytest.fixture
def dns_records() -> list[ZoneRecord]:
    return [ZoneRecord(NAME, "A", "127.0.0.1")]


@pytest.fixture
def b_ports() -> dict[str, int]:
    """Node B's challenge and https ports: where Pebble validates."""
    return {"acme-http": free_port("127.0.0.1"), "https": free_port("127.0.0.1")}


@pytest.fixture
def pebble(tmp_path: Path, dns_port: int, b_ports: dict[str, int]) -> Iterator[Pebble]:
    workdir = tmp_path / "pebble"
    workdir.mkdir()
    with Pebble(
        workdir, http_port=b_ports["acme-http"], dns_port=dns_port, tls_port=b_ports["https"]
    ) as server:
        yield server


def tls_section(directory: str, ca_bundle: str, challenge: str, http_port: int) -> cfg.TlsSection:
    return cfg.TlsSection(
        acme=True,
        acme_directory=directory,
        acme_ca_bundle=ca_bundle,
        acme_names=(NAME,),
        acme_challenges=(challenge,),  # type: ignore[arg-type]
        acme_http_address="127.0.0.1",
        acme_http_port=http_port,
        acme_retry=600.0,  # node B's failed attempts are not retried within the test
    )


@pytest.mark.parametrize("challenge", ["http-01", "tls-alpn-01"])
def test_a_certificate_attempted_on_node_a_is_validated_through_node_b(
    tmp_path: Path,
    database: TestDatabase,
    pebble: Pebble,
    b_ports: dict[str, int],
    challenge: str,
) -> None:
    url = database.new_store_url()
    bundle = str(pebble.ca_bundle)
    nowhere = f"http://127.0.0.1:{free_port('127.0.0.1')}/dir"
    a = Node(
        tmp_path,
        "node-a",
        url,
        listeners=("https",),
        tls=tls_section(pebble.directory_url, bundle, challenge, free_port("127.0.0.1")),
    )
    b = Node(
        tmp_path,
        "node-b",
        url,
        listeners=("https",),
        ports={"https": b_ports["https"]},
        tls=tls_section(nowhere, bundle, challenge, b_ports["acme-http"]),
    )
    with b, a:
        files = AcmeFiles.of(a.config)
        wait_for(
            lambda: files.status.exists() and files.read_status().get("result") == "ok",
            f"node A's certificate: {files.read_status() if files.status.exists() else ''}"
            f"\n{a.log()[-3000:]}\n{b.log()[-3000:]}",
            timeout=90,
        )
        # Node A presents it, chaining to Pebble's root for the name.
        cert = presented_certificate(a.port("https"), pebble.root_pem, NAME)
        assert f"{cert.serial_number:x}" == files.read_status()["serial"]
        # Node B answered the validation; its own attempts never got a certificate.
        assert not AcmeFiles.of(b.config).cert.exists()
        if challenge == "tls-alpn-01":
            assert "tls-alpn-01 validation handshake" in b.log()
            assert "tls-alpn-01 validation handshake" not in a.log()
