"""ACME behind a balancer: two ``pillarbox serve`` processes over one PostgreSQL store, node A
running the attempt and a real CA (Pebble) validating it on node B, as a balancer would send
the CA's connection to either node.

Pebble's ``httpPort`` is node B's challenge listener and its ``tlsPort`` node B's https
listener; node A's own listeners are on ports Pebble never uses, and node B's CA directory
does not answer (its own attempts fail), so A's certificate can only come through B answering
A's challenge from the store: http-01 by looking the token up, tls-alpn-01 from its refreshed
copy of pending answers.

The cluster's one certificate: nodes configured alike (one CA, one name) order it once under
the store's lease and all present it; a node killed mid-attempt holds the others back only
until its lease lapses; nodes with certificates of their own, restarted with sharing on,
settle on the later one. Whether they share the certificate or not, the nodes order under one
CA account, the store's: Pebble creates one.

Skipped without Debian's ``pebble`` or a PostgreSQL server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pillarbox import config as cfg
from pillarbox.net.acmefiles import AcmeFiles
from pillarbox.testing import pebble as pebble_server
from pillarbox.testing.dnszone import ZoneRecord
from pillarbox.testing.live import free_port
from pillarbox.testing.nodes import Node
from pillarbox.testing.pebble import Pebble, presented_certificate
from pillarbox.testing.polling import wait_for
from pillarbox.testing.postgres import TestDatabase, needs_postgres

pytestmark = [
    pytest.mark.skipif(
        not pebble_server.available(), reason="Pebble not installed (apt-get install pebble)"
    ),
    needs_postgres(),
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


def tls_cli(node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    """``pillarbox tls …`` run against ``node``'s configuration."""
    return subprocess.run(
        [sys.executable, "-m", "pillarbox.cli", "--config", str(node.config_path), "tls", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def tls_status(node: Node) -> dict[str, Any]:
    """``pillarbox tls status --json`` run against ``node``'s configuration."""
    done = tls_cli(node, "status", "--json")
    assert done.returncode == 0, done.stderr
    shown: dict[str, Any] = json.loads(done.stdout)
    return shown


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


def orders_placed(pebble: Pebble) -> int:
    """How many orders reached Pebble (its log names each new-order request)."""
    return pebble.log_path.read_text().count("POST /order-plz")


def shared_tls(pebble: Pebble, http_port: int, **overrides: object) -> cfg.TlsSection:
    """Both nodes alike, as a cluster's are: one CA, one name, the shared certificate looked
    for in the store every second."""
    settings = tls_section(pebble.directory_url, str(pebble.ca_bundle), "http-01", http_port)
    return dataclasses.replace(settings, acme_store_poll=1.0, **overrides)  # type: ignore[arg-type]


def account_rows(url: str) -> list[tuple[str, str]]:
    """The directory and URL of each ACME account the store holds."""
    with psycopg.connect(url) as conn:
        return [(d, u) for d, u in conn.execute("SELECT directory, url FROM acme_accounts")]


def lease_row(url: str) -> tuple[str, datetime.datetime] | None:
    """The holder and expiry of the store's ACME lease, if there is one."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT holder, expires FROM acme_leases").fetchone()
    return None if row is None else (row[0], row[1])


def test_one_node_orders_and_every_node_serves_the_certificate(
    tmp_path: Path, database: TestDatabase, pebble: Pebble, b_ports: dict[str, int]
) -> None:
    """Two nodes configured alike start together: one of them gets the lease and orders (one
    order reaches Pebble), the other finds the lease held or the certificate already stored,
    takes the certificate from the store and presents the same one, private key included (a
    handshake verified for the name). Pebble validates on node B's port whichever node orders
    (the answer is in the store)."""
    url = database.new_store_url()
    a = Node(
        tmp_path,
        "node-a",
        url,
        listeners=("https",),
        tls=shared_tls(pebble, free_port("127.0.0.1")),
    )
    b = Node(
        tmp_path,
        "node-b",
        url,
        listeners=("https",),
        ports={"https": b_ports["https"]},
        tls=shared_tls(pebble, b_ports["acme-http"]),
    )
    with contextlib.ExitStack() as running:
        running.callback(a.stop)
        running.callback(b.stop)
        with ThreadPoolExecutor(2) as starting:  # at once: both find the certificate due
            list(starting.map(Node.start, (a, b)))

        def serials() -> set[int]:
            return {
                presented_certificate(node.port("https"), pebble.root_pem, NAME).serial_number
                for node in (a, b)
            }

        def same_certificate() -> bool:
            try:
                return len(serials()) == 1
            except ssl.SSLError:
                return False  # one still presents its self-signed certificate

        wait_for(same_certificate, "both nodes presenting one certificate", timeout=90)
        time.sleep(3)  # three more looks at the store each: still nothing to renew
        assert orders_placed(pebble) == 1
        logs = {node.name: node.log() for node in (a, b)}
        [orderer] = [name for name, log in logs.items() if "certificate shared" in log]
        [other] = set(logs) - {orderer}
        assert "certificate installed from the store" in logs[other], logs[other][-3000:]
        assert "requesting certificate" not in logs[other]
        # Each node keeps a copy in its data_dir, the one it loads at its next start.
        (serial,) = serials()
        for node in (a, b):
            assert AcmeFiles.of(node.config).facts().serial == serial  # type: ignore[union-attr]
        assert lease_row(url) is None  # given back after the success
        assert pebble.accounts_created() == 1
        # `tls status` on a node: the store's certificate is its copy, no lease stands.
        shown = tls_status(a)
        assert shown["serial"] == f"{serial:x}"
        assert shown["acme"]["store"]["certificate"]["serial"] == f"{serial:x}"
        assert shown["acme"]["store"]["certificate"]["this_node_has_it"] is True
        assert shown["acme"]["store"]["lease"] is None


def test_a_crashed_nodes_lease_lapses_and_another_node_renews(
    tmp_path: Path, database: TestDatabase, pebble: Pebble, b_ports: dict[str, int]
) -> None:
    """Node A takes the lease and is killed (SIGKILL) while Pebble is still validating (its
    connection to the challenge port hangs); node B, started then, waits for A's lease to
    expire and only then orders, and obtains the certificate."""
    url = database.new_store_url()
    challenge = b_ports["acme-http"]
    # The lease outlasts node B's start-up by far even on a loaded machine (at 25 s, four test
    # workers beside the PostgreSQL pass once let it lapse before B first looked at it).
    quick = {"acme_timeout": 4.0, "acme_lease": 40.0}
    a = Node(
        tmp_path,
        "node-a",
        url,
        listeners=("https",),
        tls=shared_tls(pebble, free_port("127.0.0.1"), **quick),
    )
    with socket.create_server(("127.0.0.1", challenge)), a:
        wait_for(lambda: "/chalZ/" in pebble.log_path.read_text(), "node A's answer", timeout=60)
        a.kill()
    held = lease_row(url)
    assert held is not None and held[0].startswith("node-a.test "), held
    expires = held[1]
    # `tls status` shows the dead node's lease, read without taking it; no certificate yet.
    # (Before node B starts: a status command's start-up on a loaded machine is seconds of
    # the lease's life, which once ran out before it read the lease.)
    store = tls_status(a)["acme"]["store"]
    assert store["certificate"] is None
    assert store["lease"]["holder"] == held[0] and store["lease"]["state"] == "held"
    assert datetime.datetime.fromisoformat(store["lease"]["expires"]) == expires
    b = Node(
        tmp_path,
        "node-b",
        url,
        listeners=("https",),
        ports={"https": b_ports["https"]},
        tls=shared_tls(pebble, challenge, **quick),
    )
    with b:
        assert lease_row(url) == held
        assert expires > datetime.datetime.now(datetime.UTC), "A's lease lapsed before B looked"
        files = AcmeFiles.of(b.config)
        wait_for(
            lambda: files.read_status().get("result") == "ok",
            f"node B's certificate\n{b.log()[-3000:]}",
            timeout=90,
        )
        started = datetime.datetime.fromisoformat(files.read_status()["started"])
        assert started >= expires, (started, expires)
        assert "renewal left to another node" in b.log()
        assert 'holder="node-a.test' in b.log() or "holder=node-a.test" in b.log(), b.log()
        assert orders_placed(pebble) == 2
        cert = presented_certificate(b.port("https"), pebble.root_pem, NAME)
        assert f"{cert.serial_number:x}" == files.read_status()["serial"]


def test_nodes_of_their_own_then_shared_keep_the_later_certificate(
    tmp_path: Path, database: TestDatabase, pebble: Pebble, b_ports: dict[str, int]
) -> None:
    """With ``acme_shared_certificate = false`` each node orders its own certificate (two
    orders, two serials), as before; restarted with sharing on (an upgraded cluster), the
    later-expiring of the two goes to the store and the other node takes it up: both present
    it and nothing more is ordered."""
    url = database.new_store_url()
    own = {"acme_shared_certificate": False}
    tls_a = shared_tls(pebble, free_port("127.0.0.1"))
    tls_b = shared_tls(pebble, b_ports["acme-http"])
    a = Node(tmp_path, "node-a", url, listeners=("https",), tls=dataclasses.replace(tls_a, **own))
    b = Node(
        tmp_path,
        "node-b",
        url,
        listeners=("https",),
        ports={"https": b_ports["https"]},
        tls=dataclasses.replace(tls_b, **own),
    )
    files = [AcmeFiles.of(node.config) for node in (a, b)]
    with b, a:  # Pebble validates on B's port: B answers A's tokens from the store
        for node, node_files in zip((a, b), files, strict=True):
            wait_for(
                lambda f=node_files: f.read_status().get("result") == "ok",  # type: ignore[misc]
                f"{node.name}'s own certificate",
                timeout=90,
                context=node.log,
            )
    own_facts = [f.facts() for f in files]
    assert None not in own_facts and own_facts[0] != own_facts[1]
    assert orders_placed(pebble) == 2
    # Both ordered under the one account the store keeps: the CA made no second one (at
    # once, both may have asked it to before the first stored the URL: it found the first's).
    assert pebble.accounts_created() == 1
    [(directory, account_url)] = account_rows(url)
    assert directory == pebble.directory_url and account_url.startswith("https://127.0.0.1:")
    for node in (a, b):
        assert not AcmeFiles.of(node.config).account_key.exists()
        assert tls_status(node)["acme"]["account"] == {"url": account_url}
    # The later-expiring serial; Pebble's expiries have whole seconds, so the two can tie,
    # and then either may be the one the store kept first (its tie rule): both must settle
    # on that one.
    latest = max(facts.not_after for facts in own_facts)  # type: ignore[union-attr]
    candidates = {facts.serial for facts in own_facts if facts.not_after == latest}  # type: ignore[union-attr]
    a.config = dataclasses.replace(a.config, tls=tls_a)
    b.config = dataclasses.replace(b.config, tls=tls_b)

    def presented() -> set[int]:
        return {
            presented_certificate(node.port("https"), pebble.root_pem, NAME).serial_number
            for node in (a, b)
        }

    with b, a:
        settled = wait_for(
            lambda: len(serials := presented()) == 1 and serials <= candidates,
            "both nodes presenting the later certificate",
            timeout=30,
            context=lambda: f"{presented()} of {candidates}\n{a.log()[-2000:]}\n{b.log()[-2000:]}",
        )
        assert settled
        assert orders_placed(pebble) == 2


def test_nodes_finding_the_account_deactivated_at_once_make_one_new_account(
    tmp_path: Path, database: TestDatabase, pebble: Pebble, b_ports: dict[str, int]
) -> None:
    """Two nodes with certificates of their own, their account deactivated at the CA: both
    asked to renew at once, each either finds the account deactivated and replaces it (the
    store's compare-and-swap keeping one new key, which both register) or reads the other's
    replacement already stored: either way Pebble creates one account more, not two, and
    both nodes order under it. (Whether the two replacements overlap is the nodes' timing;
    the store's contract suite races the compare-and-swap itself.)"""
    url = database.new_store_url()
    own = {"acme_shared_certificate": False}
    a = Node(
        tmp_path,
        "node-a",
        url,
        listeners=("https",),
        tls=dataclasses.replace(shared_tls(pebble, free_port("127.0.0.1")), **own),
    )
    b = Node(
        tmp_path,
        "node-b",
        url,
        listeners=("https",),
        ports={"https": b_ports["https"]},
        tls=dataclasses.replace(shared_tls(pebble, b_ports["acme-http"]), **own),
    )
    files = [AcmeFiles.of(node.config) for node in (a, b)]
    with b, a:
        for node, node_files in zip((a, b), files, strict=True):
            wait_for(
                lambda f=node_files: f.read_status().get("result") == "ok",  # type: ignore[misc]
                f"{node.name}'s own certificate",
                timeout=90,
                context=node.log,
            )
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT key, url FROM acme_accounts").fetchone()
        assert row is not None
        old_key, old_url = bytes(row[0]), str(row[1])
        pebble.deactivate(old_key, old_url)

        with ThreadPoolExecutor(2) as renewing:
            done = list(renewing.map(lambda n: tls_cli(n, "renew", "--wait", "60"), (a, b)))
        for node, renewed in zip((a, b), done, strict=True):
            assert renewed.returncode == 0, f"{renewed.stdout}{renewed.stderr}\n{node.log()}"
        assert pebble.accounts_created() == 2
        [(_, new_url)] = account_rows(url)
        assert new_url not in ("", old_url)
        for node in (a, b):
            assert tls_status(node)["acme"]["account"] == {"url": new_url}
        replaced = [log for log in (a.log(), b.log()) if "ACME account replaced" in log]
        assert replaced, f"{a.log()[-3000:]}\n{b.log()[-3000:]}"
