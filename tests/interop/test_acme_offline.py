"""ACME on a live server whose CA cannot be reached, and with a broken stored pair: the
server starts, keeps a working certificate, and reports why it has no new one."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import socket
import sqlite3
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pillarbox import config as cfg
from pillarbox.store.open import is_postgresql
from pillarbox.store.postgres import migrations as postgres_migrations
from pillarbox.store.sqlite import migrations as sqlite_migrations
from pillarbox.testing.command import run_pillarbox
from pillarbox.testing.live import LiveServer, free_port, loopback_config
from pillarbox.testing.postgres import TestDatabase, needs_postgres

NAME = "mail.pillarbox.test"


def offline_config(tmp_path: Path) -> cfg.Config:
    base = loopback_config(tmp_path / "data", only=("imaps",))
    # Nothing listens on the CA's port: every attempt fails at once (connection refused).
    tls = cfg.TlsSection(
        acme=True,
        acme_directory=f"https://127.0.0.1:{free_port('127.0.0.1')}/dir",
        acme_http_address="127.0.0.1",
        acme_http_port=0,
    )
    return dataclasses.replace(
        base, server=dataclasses.replace(base.server, hostname=NAME), tls=tls
    )


def served_serial(port: int) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=NAME) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def self_signed_serial(config: cfg.Config) -> int:
    pem = (config.data_dir / "tls" / "cert.pem").read_bytes()
    return x509.load_pem_x509_certificate(pem).serial_number


def last_attempt(config: cfg.Config, timeout: float = 30.0) -> dict[str, object]:
    path = config.data_dir / "tls" / "acme" / "status.json"
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, "no attempt recorded"
        time.sleep(0.05)
    status: dict[str, object] = json.loads(path.read_text())
    return status


def test_unreachable_ca_is_logged_and_the_server_serves_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pillarbox.acme")
    config = offline_config(tmp_path)
    with LiveServer(config) as server:
        status = last_attempt(config)
        assert status["result"] == "failed"
        assert "Connection refused" in str(status["error"])
        assert any(r.getMessage() == "certificate not obtained" for r in caplog.records)
        assert served_serial(server.port("imaps")) == self_signed_serial(config)


def test_a_stored_key_that_does_not_match_its_certificate_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A crash between writing the new key and the new certificate leaves a mismatched pair:
    loading it into the shared context would leave that context with no usable key (every
    handshake failing); it is refused and the self-signed certificate stays."""
    caplog.set_level(logging.INFO, logger="pillarbox.acme")
    config = offline_config(tmp_path)
    acme_dir = config.data_dir / "tls" / "acme"
    acme_dir.mkdir(parents=True)
    now = datetime.datetime.now(datetime.UTC)
    signing_key, other_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(signing_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
        .sign(signing_key, hashes.SHA256())
    )
    (acme_dir / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (acme_dir / "key.pem").write_bytes(
        other_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with LiveServer(config) as server:
        assert server.server.acme is not None and server.server.acme.facts is None
        assert any(r.getMessage() == "stored certificate not loaded" for r in caplog.records)
        assert served_serial(server.port("imaps")) == self_signed_serial(config)


@contextlib.contextmanager
def held_migration(config: cfg.Config) -> Iterator[None]:
    """A server runs on the store as a server of the version before would: its schema's latest
    migration row taken out, this version's commands find the schema behind and may not
    migrate under the server (docs/upgrading.md). The row is put back after."""
    postgres = is_postgresql(config.store.url)
    conn: Any = (
        psycopg.connect(config.store.url, autocommit=True)
        if postgres
        else sqlite3.connect(config.data_dir / "pillarbox.sqlite3", isolation_level=None)
    )
    latest = (postgres_migrations if postgres else sqlite_migrations).LATEST_VERSION
    mark = "%s" if postgres else "?"
    with contextlib.closing(conn):
        where = f"FROM schema_version WHERE version = {mark}"
        row = conn.execute(f"SELECT * {where}", (latest,)).fetchone()
        conn.execute(f"DELETE {where}", (latest,))
        try:
            yield
        finally:
            marks = ", ".join(mark for _ in row)
            conn.execute(f"INSERT INTO schema_version VALUES ({marks})", row)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=needs_postgres())])
def test_tls_status_while_a_migration_is_held_off(tmp_path: Path, backend: str) -> None:
    """``tls status`` of a newer version than the running server's (the store's schema behind
    it, the migration held off while the server runs): this node's certificate and last
    attempt are shown, and the store's part (the account; with PostgreSQL the shared
    certificate and its lease too) is said to be not shown, and why; exit 0, no traceback."""
    config = offline_config(tmp_path)
    if backend == "postgresql":
        database = TestDatabase()
        config = dataclasses.replace(config, store=cfg.StoreSection(url=database.new_store_url()))
    else:
        config = dataclasses.replace(config, store=cfg.StoreSection())
    site = tmp_path / "site"
    site.mkdir()
    (site / "pillarbox.toml").write_text(cfg.render_toml(config))
    try:
        with LiveServer(config), held_migration(config):
            last_attempt(config)
            shown = run_pillarbox(site, "tls", "status")
            as_json = run_pillarbox(site, "tls", "status", "--json")
        after = run_pillarbox(site, "tls", "status", "--json")
    finally:
        if backend == "postgresql":
            database.drop()
    assert shown.returncode == 0, shown.stderr
    assert "Traceback" not in shown.stderr
    shared = backend == "postgresql"
    what = "the account, the shared certificate and its lease" if shared else "the account"
    told = f"store        not read, so {what} not shown: the store's schema is older"
    assert told in shown.stdout, shown.stdout
    assert "needs upgrading" in shown.stdout and "docs/upgrading.md" in shown.stdout
    assert "source       self-signed" in shown.stdout
    assert "last attempt " in shown.stdout and "failed" in shown.stdout
    data = json.loads(as_json.stdout)
    assert "needs upgrading" in data["acme"]["account"]["error"]
    assert data["acme"]["last_attempt"]["result"] == "failed"
    if shared:
        assert "needs upgrading" in data["acme"]["store"]["error"]
    # The server gone, the schema as it was: the store's part shows again.
    assert after.returncode == 0, after.stderr
    shown_after = json.loads(after.stdout)["acme"]
    assert shown_after["account"] == {"url": None}  # its key stored, the CA never reached
    if shared:
        assert shown_after["store"]["certificate"] is None and shown_after["store"]["scope"]
