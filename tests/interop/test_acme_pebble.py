"""ACME against a real CA: Pebble (Let's Encrypt's test server) issues to a live Pillarbox.

Pebble resolves the test host name through a loopback DNS server of ours (A 127.0.0.1) and
validates HTTP-01 by connecting to the challenge listener (or the web listener) on the port it
was told; the certificates it issues chain to a root fetched from its management port, which
is what the clients here trust. Skipped where Debian's ``pebble`` is not installed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import logging
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pillarbox import config as cfg
from pillarbox.atomicfile import write_atomically
from pillarbox.certificates import renewal_margin, renewal_time
from pillarbox.net.acme import CertificateManager
from pillarbox.net.acmeaccount import gone_status
from pillarbox.net.acmefiles import AcmeFiles
from pillarbox.store.open import is_postgresql, open_store
from pillarbox.store.types import AcmeAccount
from pillarbox.testing import pebble as pebble_server
from pillarbox.testing.dnszone import ZoneRecord
from pillarbox.testing.live import LiveServer, free_port, loopback_config
from pillarbox.testing.pebble import Pebble, presented_certificate
from pillarbox.testing.polling import wait_for

pytestmark = pytest.mark.skipif(
    not pebble_server.available(), reason="Pebble not installed (apt-get install pebble)"
)

NAME = "mail.pillarbox.test"
#: A name whose address (127.0.0.2) nothing listens on: its validation is refused at once.
REFUSED = "refused.pillarbox.test"
#: Implicit-TLS listeners, the web's included; "submission" (STARTTLS) shares their context and
#: is checked too.
LISTENERS = ("imaps", "submissions", "https")


@pytest.fixture
def dns_records() -> list[ZoneRecord]:
    return [ZoneRecord(NAME, "A", "127.0.0.1"), ZoneRecord(REFUSED, "A", "127.0.0.2")]


@pytest.fixture
def challenge_port() -> int:
    return free_port("127.0.0.1")


@pytest.fixture
def pebble(tmp_path: Path, dns_port: int, challenge_port: int) -> Iterator[Pebble]:
    workdir = tmp_path / "pebble"
    workdir.mkdir()
    with Pebble(workdir, http_port=challenge_port, dns_port=dns_port) as server:
        yield server


def acme_config(
    tmp_path: Path,
    pebble: Pebble,
    challenge_port: int,
    *,
    only: tuple[str, ...] = LISTENERS,
    ports: dict[str, int] | None = None,
    **tls: object,
) -> cfg.Config:
    base = loopback_config(tmp_path / "data", only=only, ports=ports)
    settings = cfg.TlsSection(
        acme=True,
        acme_directory=pebble.directory_url,
        acme_ca_bundle=str(pebble.ca_bundle),
        acme_http_address="127.0.0.1",
        acme_http_port=challenge_port,
        **tls,  # type: ignore[arg-type]
    )
    return dataclasses.replace(
        base, server=dataclasses.replace(base.server, hostname=NAME), tls=settings
    )


def presented(port: int, root_pem: bytes | None) -> x509.Certificate:
    """The certificate a listener presents; verified against ``root_pem`` for NAME when given."""
    return presented_certificate(port, root_pem, NAME)


def presented_after_starttls(port: int, root_pem: bytes) -> x509.Certificate:
    """The certificate the submission listener presents after STARTTLS, verified for NAME."""
    context = ssl.create_default_context(cadata=root_pem.decode())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        reader = raw.makefile("rb")

        def reply() -> bytes:
            while (line := reader.readline())[3:4] == b"-":
                pass
            return line

        assert reply().startswith(b"220")
        raw.sendall(b"EHLO client.test\r\n")
        assert reply().startswith(b"250")
        raw.sendall(b"STARTTLS\r\n")
        assert reply().startswith(b"220")
        with context.wrap_socket(raw, server_hostname=NAME) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def config_file(tmp_path: Path, config: cfg.Config) -> Path:
    """``config`` written where :func:`tls_cli` is pointed at."""
    path = tmp_path / "pillarbox.toml"
    path.write_text(cfg.render_toml(config))
    return path


def certified(server: LiveServer) -> CertificateManager:
    """The server's certificate manager, once it holds its first certificate."""
    manager = server.server.acme
    assert manager is not None
    wait_for(lambda: manager.facts is not None, "the certificate", timeout=60)
    return manager


def tls_cli(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pillarbox.cli", "--config", str(config_path), "tls", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_obtains_serves_and_renews_without_restart(
    tmp_path: Path, pebble: Pebble, challenge_port: int
) -> None:
    config = acme_config(tmp_path, pebble, challenge_port, only=(*LISTENERS, "submission"))
    config_path = config_file(tmp_path, config)
    with LiveServer(config) as server:
        manager = certified(server)
        first = manager.facts
        assert first is not None and first.names == (NAME,)
        # Every implicit-TLS listener presents it, and it verifies for the name.
        for listener in LISTENERS:
            assert presented(server.port(listener), pebble.root_pem).serial_number == first.serial
        starttls = presented_after_starttls(server.port("submission"), pebble.root_pem)
        assert starttls.serial_number == first.serial

        acme_dir = config.data_dir / "tls" / "acme"
        assert stat.S_IMODE((acme_dir / "key.pem").stat().st_mode) == 0o600
        # The account is the store's, not a file's; registered once.
        assert not (acme_dir / "account.key").exists()
        assert pebble.accounts_created() == pebble.account_requests() == 1
        status = tls_cli(config_path, "status", "--json")
        assert status.returncode == 0, status.stderr
        shown = json.loads(status.stdout)
        assert shown["source"] == "acme" and shown["serial"] == f"{first.serial:x}"
        assert shown["acme"]["last_attempt"]["result"] == "ok"
        # The account the store keeps, at the CA's URL for it.
        account_url = shown["acme"]["account"]["url"]
        assert account_url.startswith(pebble.directory_url.removesuffix("/dir") + "/"), shown
        # On PostgreSQL (PILLARBOX_TEST_STORE) the certificate is the store's, shared.
        assert shown["acme"]["shared"] is is_postgresql(config.store.url)

        # A renewal forced from the command line: new connections get the new certificate.
        renewed = tls_cli(config_path, "renew", "--wait", "60")
        assert renewed.returncode == 0, renewed.stdout + renewed.stderr
        second = manager.facts
        assert second is not None and second.serial != first.serial
        for listener in LISTENERS:
            cert = presented(server.port(listener), pebble.root_pem)
            assert cert.serial_number == second.serial
        starttls = presented_after_starttls(server.port("submission"), pebble.root_pem)
        assert starttls.serial_number == second.serial
        # Ordered under the account's stored URL: nothing registered again.
        assert pebble.accounts_created() == pebble.account_requests() == 1

        # The CA goes away: the forced renewal fails, is reported, and the listeners keep
        # the certificate they had.
        pebble.stop()
        failed = tls_cli(config_path, "renew", "--wait", "60")
        assert failed.returncode == 1
        assert "renewal failed" in failed.stderr
        assert "failed" in failed.stdout
        assert AcmeFiles.of(server.config).read_status()["result"] == "failed"
        assert presented(server.port("imaps"), pebble.root_pem).serial_number == second.serial

    # A restart installs the stored certificate before the first connection.
    with LiveServer(config) as server:
        manager = server.server.acme
        assert manager is not None and manager.facts is not None
        assert manager.facts.serial == second.serial
        assert presented(server.port("imaps"), pebble.root_pem).serial_number == second.serial


def test_the_web_listener_answers_challenges(
    tmp_path: Path, pebble: Pebble, challenge_port: int
) -> None:
    """Without the dedicated listener, the web app answers (the web listener on the port the
    CA connects to, as behind a proxy or on port 80 itself)."""
    config = acme_config(
        tmp_path,
        pebble,
        challenge_port,
        only=("imaps", "http"),
        ports={"http": challenge_port},
        acme_challenge_listener=False,
    )
    with LiveServer(config) as server:
        assert "acme-http" not in server.server.listeners
        manager = certified(server)
        assert presented(server.port("imaps"), pebble.root_pem).serial_number == (
            manager.facts.serial
        )


def test_unreachable_challenge_is_logged_and_the_self_signed_certificate_stays(
    tmp_path: Path, pebble: Pebble, challenge_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing answers on the port Pebble validates: the attempt fails with Pebble's reason,
    and the server goes on serving its self-signed certificate."""
    caplog.set_level(logging.INFO, logger="pillarbox.acme")
    config = acme_config(tmp_path, pebble, challenge_port, acme_challenge_listener=False)
    with LiveServer(config) as server:
        wait_for(
            lambda: AcmeFiles.of(server.config).read_status().get("result") == "failed",
            "the failed attempt",
            timeout=60,
        )
        error = str(AcmeFiles.of(server.config).read_status()["error"])
        assert NAME in error and "challenge failed" in error
        failures = [r for r in caplog.records if r.getMessage() == "certificate not obtained"]
        assert failures, caplog.text
        assert server.server.acme is not None and server.server.acme.facts is None
        self_signed = x509.load_pem_x509_certificate(
            (config.data_dir / "tls" / "cert.pem").read_bytes()
        )
        assert presented(server.port("imaps"), None).serial_number == self_signed.serial_number
        with pytest.raises(ssl.SSLCertVerificationError):
            presented(server.port("imaps"), pebble.root_pem)


def test_a_short_lived_certificate_is_renewed_by_itself_at_half_its_life(
    tmp_path: Path, dns_port: int, challenge_port: int
) -> None:
    """Pebble issues 30-second certificates (Let's Encrypt's 6-day ones in miniature) while
    acme_renew_days is 30: the task renews each by itself at half its life (certbot's and
    lego's rule for short-lived certificates), not at once and over again, as a lifetime
    shorter than acme_renew_days used to make it (every new certificate due on arrival, orders
    back to back until the CA's rate limit); new connections see each new certificate."""
    workdir = tmp_path / "pebble"
    workdir.mkdir()
    with Pebble(workdir, http_port=challenge_port, dns_port=dns_port, validity=30) as short:
        config = acme_config(tmp_path, short, challenge_port, acme_check_interval=1.0)
        with LiveServer(config) as server:
            manager = server.server.acme
            assert manager is not None
            wait_for(lambda: manager.facts is not None, "the certificate", timeout=60)
            first = manager.facts
            assert first is not None
            wait_for(
                lambda: manager.facts is not None and manager.facts.serial != first.serial,
                "a new certificate",
                timeout=60,
            )
            second = manager.facts
            assert second is not None
            # status.json is written once the attempt has finished, just after the certificate
            # is taken into use: wait for the renewal's.
            files = AcmeFiles.of(server.config)
            wait_for(
                lambda: files.read_status().get("serial") == f"{second.serial:x}",
                "the renewal's status",
            )
            renewal = files.read_status()
            started = datetime.datetime.fromisoformat(renewal["started"])
            # Pebble's 30 s run from notBefore through notAfter, both included: 15 s left.
            assert started >= first.not_after - datetime.timedelta(seconds=15)
            assert renewal_time(first, 30) == first.not_after - renewal_margin(first, 30)
            assert renewal["reason"].startswith("expires in 0.0 days"), renewal
            served = presented(server.port("imaps"), short.root_pem).serial_number
            assert served in (second.serial, manager.facts.serial)  # a third may come meanwhile


def public_key_info(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize("reuse", [True, False])
def test_a_renewal_keeps_the_key_only_with_acme_reuse_key(
    tmp_path: Path, pebble: Pebble, challenge_port: int, reuse: bool
) -> None:
    """With acme_reuse_key the renewed certificate carries the same public key, so a
    `3 1 1` TLSA record of it stays valid (docs/dane.md); without it, a new key each time."""
    config = acme_config(tmp_path, pebble, challenge_port, acme_reuse_key=reuse)
    config_path = config_file(tmp_path, config)
    with LiveServer(config) as server:
        certified(server)
        first = presented(server.port("imaps"), pebble.root_pem)
        renewed = tls_cli(config_path, "renew", "--wait", "60")
        assert renewed.returncode == 0, renewed.stdout + renewed.stderr
        second = presented(server.port("imaps"), pebble.root_pem)
    assert second.serial_number != first.serial_number
    assert (public_key_info(second) == public_key_info(first)) is reuse


def test_a_key_put_in_place_by_hand_is_the_next_certificates(
    tmp_path: Path, pebble: Pebble, challenge_port: int
) -> None:
    """docs/dane.md's rollover with key reuse: the next key, written over key.pem, is the one
    the forced renewal orders for (and every renewal after it keeps)."""
    config = acme_config(tmp_path, pebble, challenge_port, acme_reuse_key=True)
    config_path = config_file(tmp_path, config)
    with LiveServer(config) as server:
        certified(server)
        first = presented(server.port("imaps"), pebble.root_pem)
        following = ec.generate_private_key(ec.SECP256R1())
        write_atomically(
            AcmeFiles.of(server.config).key,
            following.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            0o600,
        )
        renewed = tls_cli(config_path, "renew", "--wait", "60")
        assert renewed.returncode == 0, renewed.stdout + renewed.stderr
        second = presented(server.port("imaps"), pebble.root_pem)
    assert public_key_info(second) != public_key_info(first)
    assert public_key_info(second) == following.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_a_certificate_from_another_ca_directory_is_replaced_at_start(
    tmp_path: Path, pebble: Pebble, challenge_port: int
) -> None:
    """Moving from a staging directory to production must not keep the staging certificate
    until it falls due: here the same Pebble under a second URL stands for the new CA."""
    config = acme_config(tmp_path, pebble, challenge_port)
    with LiveServer(config) as server:
        manager = certified(server)
        first = manager.facts
        assert first is not None
    moved = dataclasses.replace(
        config,
        tls=dataclasses.replace(
            config.tls, acme_directory=pebble.directory_url.replace("127.0.0.1", "localhost")
        ),
    )
    with LiveServer(moved) as server:
        manager = server.server.acme
        assert manager is not None and manager.facts is not None
        assert manager.facts.serial == first.serial  # presented until the new one arrives
        wait_for(
            lambda: manager.facts is not None and manager.facts.serial != first.serial,
            "a new certificate",
            timeout=60,
        )
        # status.json is written once the attempt has finished, just after the certificate
        # is taken into use: wait for it rather than read it at once.
        files = AcmeFiles.of(server.config)
        wait_for(
            lambda: files.read_status().get("reason") == "issued through another CA directory",
            "the attempt's status",
            timeout=30,
        )
        # Another directory, another account (a key of its own, registered anew).
        assert pebble.accounts_created() == 2


def test_an_earlier_versions_account_key_goes_on_in_the_store(
    tmp_path: Path, pebble: Pebble, challenge_port: int
) -> None:
    """A data directory of an earlier version holds ``account.key``, whose account the CA has:
    the first attempt takes the key into the store and orders under that account (the CA
    creates none), and the file is kept as ``account.key.old``."""
    config = acme_config(tmp_path, pebble, challenge_port, only=("imaps",))
    files = AcmeFiles.of(config)
    key_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomically(files.account_key, key_pem, 0o600)
    url = pebble.register(key_pem)
    assert pebble.accounts_created() == 1
    config_path = config_file(tmp_path, config)
    with LiveServer(config) as server:
        certified(server)
        assert not files.account_key.exists()
        assert files.old_account_key.read_bytes() == key_pem
        assert stat.S_IMODE(files.old_account_key.stat().st_mode) == 0o600
        status = tls_cli(config_path, "status", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["acme"]["account"] == {"url": url}
        # The CA found the account by its key (RFC 8555 §7.3.1) and made no other.
        assert pebble.accounts_created() == 1 and pebble.account_requests() == 2


def test_a_stop_during_validation_does_not_wait_for_the_ca(
    tmp_path: Path, pebble: Pebble, challenge_port: int
) -> None:
    """Pebble's validation hangs on a port that accepts and never answers (Pebble gives up
    after 15 s); stopping the server meanwhile ends the attempt within a second (the pool's
    threads are waited for at shutdown, so a library poll loop would hold the stop up)."""
    config = acme_config(tmp_path, pebble, challenge_port, acme_challenge_listener=False)
    with socket.create_server(("127.0.0.1", challenge_port)) as silent:
        server = LiveServer(config)
        with server:
            # The challenge answered (Pebble logs the POST to it): validation is under way.
            wait_for(
                lambda: "/chalZ/" in pebble.log_path.read_text(),
                "Pebble to log the challenge's answer",
                timeout=60,
            )
            time.sleep(1.0)
            started = time.monotonic()
        stopped_in = time.monotonic() - started
        assert silent.fileno() >= 0
    assert stopped_in < 5.0, stopped_in
    assert AcmeFiles.of(server.config).read_status().get("result") != "ok"


@pytest.mark.parametrize(
    "names", [(NAME, REFUSED), (REFUSED, NAME)], ids=["hung-first", "refused-first"]
)
def test_a_failed_authorization_ends_the_attempt_while_another_is_still_validated(
    tmp_path: Path, pebble: Pebble, challenge_port: int, names: tuple[str, str]
) -> None:
    """Two names: Pebble's validation of NAME hangs on a port that accepts and never answers
    (Pebble gives up after 15 s), REFUSED's is refused at once. The attempt fails as soon as
    Pebble calls REFUSED invalid, whichever name is listed first, with Pebble's reason
    (it used to wait for each authorization in turn: until the hung one settled, and to the
    whole ``acme_timeout`` for one that never did)."""
    config = acme_config(
        tmp_path, pebble, challenge_port, acme_challenge_listener=False, acme_names=names
    )
    with socket.create_server(("127.0.0.1", challenge_port)), LiveServer(config) as server:
        files = AcmeFiles.of(server.config)
        wait_for(
            lambda: files.read_status().get("result") == "failed", "the failed attempt", timeout=60
        )
        status = files.read_status()
    error = str(status["error"])
    assert f"{REFUSED}:" in error and "connection refused" in error, error
    assert f"{NAME}:" not in error, error  # NAME's validation had not ended
    took = datetime.datetime.fromisoformat(status["finished"]) - datetime.datetime.fromisoformat(
        status["started"]
    )
    assert took.total_seconds() < 10.0, took


def stored_account(config: cfg.Config) -> AcmeAccount | None:
    """The ACME account the store holds for the configured directory."""

    async def read() -> AcmeAccount | None:
        store = open_store(config.store.url, config.data_dir, config.store)
        await store.open()
        try:
            return await store.acme_account(config.tls.acme_directory)
        finally:
            await store.close()

    return asyncio.run(read())


def registered(server: LiveServer, config: cfg.Config) -> tuple[CertificateManager, AcmeAccount]:
    """The server's certificate manager and the stored account, once the server holds its
    first certificate and the account's URL is stored."""
    manager = certified(server)
    wait_for(
        lambda: (stored := stored_account(config)) is not None and stored.url != "",
        "the account's URL",
    )
    account = stored_account(config)
    assert account is not None
    return manager, account


def test_an_account_the_ca_forgot_is_registered_again_with_its_key(
    tmp_path: Path, pebble: Pebble, dns_port: int, challenge_port: int
) -> None:
    """The CA answers the stored account URL with accountDoesNotExist (Pebble restarted at the
    same directory URL keeps no accounts; a staging CA reset): the attempt registers the
    stored key again and goes on, and the store keeps the key with the new URL."""
    config = acme_config(tmp_path, pebble, challenge_port, only=("imaps",))
    config_path = config_file(tmp_path, config)
    with LiveServer(config) as server:
        manager, before = registered(server, config)
        pebble.stop()
        workdir = tmp_path / "pebble-restarted"
        workdir.mkdir()
        with Pebble(
            workdir, http_port=challenge_port, dns_port=dns_port, restarting=pebble
        ) as restarted:
            assert restarted.directory_url == config.tls.acme_directory
            renewed = tls_cli(config_path, "renew", "--wait", "60")
            assert renewed.returncode == 0, renewed.stdout + renewed.stderr
            assert restarted.accounts_created() == 1
            after = stored_account(config)
            assert after is not None and after.key_pem == before.key_pem
            assert after.url not in ("", before.url)
            cert = presented(server.port("imaps"), restarted.root_pem)
            assert manager.facts is not None and cert.serial_number == manager.facts.serial


def test_an_account_the_ca_deactivated_is_replaced(
    tmp_path: Path, pebble: Pebble, challenge_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The stored account deactivated (Pebble then refuses its orders, ``unauthorized``): the
    next attempt looks at the account, finds it deactivated, puts a new key in the store in
    its place, registers it and obtains the certificate under it; ``tls status`` shows it."""
    caplog.set_level(logging.INFO, logger="pillarbox.acme")
    config = acme_config(tmp_path, pebble, challenge_port, only=("imaps",))
    config_path = config_file(tmp_path, config)
    with LiveServer(config) as server:
        manager, before = registered(server, config)
        pebble.deactivate(before.key_pem, before.url)
        renewed = tls_cli(config_path, "renew", "--wait", "60")
        assert renewed.returncode == 0, renewed.stdout + renewed.stderr
        after = stored_account(config)
        assert after is not None and after.key_pem != before.key_pem
        assert after.url not in ("", before.url)
        assert pebble.accounts_created() == 2
        cert = presented(server.port("imaps"), pebble.root_pem)
        assert manager.facts is not None and cert.serial_number == manager.facts.serial
        status = tls_cli(config_path, "status", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["acme"]["account"] == {"url": after.url}
    [replaced] = [r for r in caplog.records if r.getMessage().startswith("ACME account replaced")]
    assert replaced.levelno == logging.WARNING
    fields = getattr(replaced, "fields", {})
    assert (fields["old_url"], fields["new_url"]) == (before.url, after.url), fields
    assert fields["status"] == "deactivated" and fields["by"] == "this node"
    # The new account goes on: the next renewal orders under it, nothing replaced again.
    with LiveServer(config) as server:
        renewed = tls_cli(config_path, "renew", "--wait", "60")
        assert renewed.returncode == 0, renewed.stdout + renewed.stderr
    assert stored_account(config) == after
    assert pebble.accounts_created() == 2


def test_an_unauthorized_refusal_of_a_valid_account_is_not_a_deactivation(
    tmp_path: Path, pebble: Pebble
) -> None:
    """An ``unauthorized`` answer for anything but the account (a name, a CAA record; here one
    Pebble gives for another account's order) under an account the CA still takes: looking
    at the account finds it valid, so it is not replaced. Once deactivated, it is."""
    key_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    url = pebble.register(key_pem)
    acme = pebble.client(key_pem)
    acme.net.account = messages.RegistrationResource(uri=url, body=messages.Registration())
    refusals = [
        messages.Error.with_code(
            "unauthorized", detail="Account that authenticated the request does not own the order"
        ),
        messages.Error.with_code("unauthorized", detail="CAA record forbids issuance"),
        messages.Error.with_code("unauthorized", detail="the certificate was revoked"),
    ]
    for refusal in refusals:
        assert gone_status(acme, url, refusal) == "", refusal
    assert gone_status(acme, url, messages.Error.with_code("rateLimited")) == ""
    pebble.deactivate(key_pem, url)
    acme = pebble.client(key_pem)
    acme.net.account = messages.RegistrationResource(uri=url, body=messages.Registration())
    for refusal in refusals:
        assert gone_status(acme, url, refusal) == "deactivated", refusal
    # A refusal of another kind is not looked into at all.
    assert gone_status(acme, url, messages.Error.with_code("rateLimited")) == ""
    # Its key's registration refused: the refusal names the status (Pebble's, as Boulder's).
    fresh = pebble.client(key_pem)
    with pytest.raises(messages.Error) as refused:
        fresh.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    assert gone_status(fresh, "", refused.value) == "deactivated"
