"""Renewal timing against a real CA: Pebble issuing 90-day certificates, and
ACME renewal information (RFC 9773) from a front to it.

Debian's Pebble (2.4) has no renewal information: :class:`~pillarbox.testing.arifront.AriFront`
relays to it and adds renewal information, the windows the test sets. Every request goes
through the front, which also shows what each new order named as the certificate it replaces
(RFC 9773 §5), and refuses or fails what Pebble would grant: an order naming a certificate
already replaced, a finalization, an order once finalized.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.certificates import CertificateFacts
from pillarbox.net.acme import CertificateManager
from pillarbox.net.acmefiles import AcmeFiles, request_renewal
from pillarbox.testing import pebble as pebble_server
from pillarbox.testing.arifront import AriFront, certificate_ari_id, utc_text
from pillarbox.testing.dnszone import ZoneRecord
from pillarbox.testing.live import LiveServer, free_port, loopback_config
from pillarbox.testing.nodes import Node
from pillarbox.testing.pebble import Pebble, presented_certificate
from pillarbox.testing.polling import wait_for
from pillarbox.testing.postgres import TestDatabase, needs_postgres

pytestmark = pytest.mark.skipif(
    not pebble_server.available(), reason="Pebble not installed (apt-get install pebble)"
)

NAME = "mail.pillarbox.test"
#: The host's name after a rename: no name in common with NAME.
RENAMED = "mx.pillarbox.test"
DAY = datetime.timedelta(days=1)
#: Let's Encrypt's default lifetime, as Pebble is told to issue.
NINETY_DAYS = 90 * 86400


@pytest.fixture
def dns_records() -> list[ZoneRecord]:
    return [ZoneRecord(NAME, "A", "127.0.0.1"), ZoneRecord(RENAMED, "A", "127.0.0.1")]


@pytest.fixture
def challenge_port() -> int:
    return free_port("127.0.0.1")


@pytest.fixture
def pebble(tmp_path: Path, dns_port: int, challenge_port: int) -> Iterator[Pebble]:
    workdir = tmp_path / "pebble"
    workdir.mkdir()
    with Pebble(
        workdir, http_port=challenge_port, dns_port=dns_port, validity=NINETY_DAYS
    ) as server:
        yield server


def front_config(
    tmp_path: Path, pebble: Pebble, front: AriFront, challenge_port: int
) -> cfg.Config:
    """A server on loopback for NAME, its CA the front's directory, checking every second."""
    base = loopback_config(tmp_path / "data", only=("imaps",))
    settings = cfg.TlsSection(
        acme=True,
        acme_directory=front.directory_url,
        acme_ca_bundle=str(pebble.ca_bundle),
        acme_http_address="127.0.0.1",
        acme_http_port=challenge_port,
        acme_check_interval=1.0,
    )
    return dataclasses.replace(
        base, server=dataclasses.replace(base.server, hostname=NAME), tls=settings
    )


def tls_status(config: cfg.Config, tmp_path: Path, *args: str) -> str:
    """``pillarbox tls status`` (with ``args``) for ``config``: its output."""
    config_path = tmp_path / "pillarbox.toml"
    config_path.write_text(cfg.render_toml(config))
    command = ["-m", "pillarbox.cli", "--config", str(config_path), "tls", "status", *args]
    shown = subprocess.run(
        [sys.executable, *command], capture_output=True, text=True, timeout=120, check=True
    )
    return shown.stdout


def acme_status(config: cfg.Config, tmp_path: Path) -> dict[str, object]:
    """The ACME part of ``pillarbox tls status --json``."""
    acme: dict[str, object] = json.loads(tls_status(config, tmp_path, "--json"))["acme"]
    return acme


def first_certificate(server: LiveServer) -> tuple[CertificateManager, CertificateFacts]:
    """The server's certificate manager and the facts of its first certificate, once held."""
    manager = server.server.acme
    assert manager is not None
    wait_for(lambda: manager.facts is not None, "the certificate", timeout=60)
    assert manager.facts is not None
    return manager, manager.facts


def test_the_cas_renewal_window_decides_when_a_90_day_certificate_is_renewed(
    tmp_path: Path, pebble: Pebble, challenge_port: int
) -> None:
    """A window far off leaves the new certificate alone (and is not asked for again before
    an hour, whatever the Retry-After); a window that is now renews it at the next start,
    with more than 80 days left, and once only (the new certificate's window is far off)."""
    with AriFront(pebble) as front:
        config = front_config(tmp_path, pebble, front, challenge_port)
        with LiveServer(config) as server:
            manager, first = first_certificate(server)
            wait_for(lambda: front.asked, "a renewal information request", timeout=30)
            served = presented_certificate(server.port("imaps"), pebble.root_pem, NAME)
            # RFC 9773 §4.1: base64url AKI "." base64url serial, of the served certificate.
            assert front.asked == [certificate_ari_id(served)] == [first.ari_id]
            time.sleep(3.0)  # three checks at least
            assert manager.facts is not None and manager.facts.serial == first.serial
            assert len(front.asked) == 1  # Retry-After 1 s, bounded to an hour
            wait_for(lambda: AcmeFiles.of(config).read_renewal_info(), "renewal-info.json")
            shown = acme_status(config, tmp_path)
            info = shown["renewal_info"]
            assert isinstance(info, dict), shown
            assert info["url"] == f"{front.base}/renewalInfo/{first.ari_id}"
            assert info["window"]["start"].startswith(utc_text(front.default[0])[:16])
            due = datetime.datetime.fromisoformat(str(shown["renewal_due"]))
            assert front.default[0] - datetime.timedelta(seconds=1) <= due <= front.default[1]
            assert shown["renewal_due_by"] == "ari"
            text = tls_status(config, tmp_path)
            assert "(a moment drawn in the CA's renewal window)" in text, text
            assert f"from {front.base}/renewalInfo/{first.ari_id}" in text, text

        now = datetime.datetime.now(datetime.UTC)
        front.windows[first.ari_id] = (now - datetime.timedelta(hours=1), now)
        with LiveServer(config) as server:
            manager = server.server.acme
            assert manager is not None
            wait_for(
                lambda: manager.facts is not None and manager.facts.serial != first.serial,
                "the renewal the window asked for",
                timeout=60,
            )
            assert (first.not_after - now) > 80 * DAY
            second = manager.facts
            assert second is not None
            wait_for(lambda: second.ari_id in front.asked, "the new certificate's window")
            time.sleep(2.0)
            assert manager.facts is not None and manager.facts.serial == second.serial
            files = AcmeFiles.of(config)
            # Written once the attempt has finished, after the certificate is taken into use.
            wait_for(
                lambda: files.read_status().get("serial") == f"{second.serial:x}",
                "the renewal's status",
            )
            assert files.read_status()["reason"].startswith("the CA's renewal window")


def test_a_failed_renewal_information_fetch_falls_back_to_the_lifetime_rule(
    tmp_path: Path, pebble: Pebble, challenge_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pillarbox.acme")
    with AriFront(pebble) as front:
        front.failing = True
        config = front_config(tmp_path, pebble, front, challenge_port)
        with LiveServer(config) as server:
            manager, first = first_certificate(server)
            wait_for(
                lambda: any(
                    r.getMessage() == "renewal information not fetched" for r in caplog.records
                ),
                "the failed fetch logged",
            )
            time.sleep(2.0)
            assert manager.facts is not None and manager.facts.serial == first.serial
            assert len(front.asked) == 1  # tried again after hours, not at each check
            shown = acme_status(config, tmp_path)
            assert "500" in str(shown["renewal_info"]), shown
            assert shown["renewal_due_by"] == "lifetime"
            text = tls_status(config, tmp_path)
            assert "(30.0 days before expiry: the lifetime rule)" in text, text
            error = f"ari error    HTTP 500 Internal Server Error from {front.base}/renewalInfo/"
            assert error in text, text
            due = datetime.datetime.fromisoformat(str(shown["renewal_due"]))
            assert due == first.not_after - 30 * DAY


@needs_postgres()
def test_with_a_shared_certificate_a_window_now_makes_one_order_for_the_cluster(
    tmp_path: Path, database: TestDatabase, pebble: Pebble, challenge_port: int
) -> None:
    """Two nodes share one certificate (PostgreSQL). At their next start both fetch its window,
    now, and find it due; one order reaches Pebble (the lease holder's), and both present the
    new certificate."""
    url = database.new_store_url()
    with AriFront(pebble) as front:

        def node(name: str, http_port: int) -> Node:
            tls = dataclasses.replace(
                front_config(tmp_path, pebble, front, http_port).tls,
                acme_names=(NAME,),
                acme_store_poll=1.0,
            )
            return Node(tmp_path, name, url, listeners=("https",), tls=tls)

        # Pebble validates on node B's challenge port; node A's is one nobody asks.
        a, b = node("node-a", free_port("127.0.0.1")), node("node-b", challenge_port)

        def serials() -> set[int]:
            try:
                return {
                    presented_certificate(n.port("https"), pebble.root_pem, NAME).serial_number
                    for n in (a, b)
                }
            except ssl.SSLError:
                return set()  # one still presents its self-signed certificate

        def orders() -> int:
            return pebble.log_path.read_text().count("POST /order-plz")

        with contextlib.ExitStack() as running:
            running.callback(a.stop)
            running.callback(b.stop)
            b.start()  # first: Pebble validates through it, whichever node orders
            a.start()
            first = wait_for(lambda: len(s := serials()) == 1 and s, "one certificate", timeout=90)
            time.sleep(2)
            ordered = orders()
        (first_serial,) = first
        ari_id = AcmeFiles.of(a.config).facts().ari_id  # type: ignore[union-attr]
        asked_before = front.asked.count(ari_id)
        now = datetime.datetime.now(datetime.UTC)
        front.windows[ari_id] = (now - datetime.timedelta(hours=1), now)
        with contextlib.ExitStack() as running:
            running.callback(a.stop)
            running.callback(b.stop)
            with ThreadPoolExecutor(2) as starting:  # at once: both find the window open
                list(starting.map(Node.start, (a, b)))
            second = wait_for(
                lambda: len(s := serials()) == 1 and first_serial not in s and s,
                "both nodes presenting the renewed certificate",
                timeout=90,
            )
            assert front.asked.count(ari_id) >= asked_before + 2, front.asked  # each node
            time.sleep(3)
            assert serials() == second
            assert orders() == ordered + 1, (a.log()[-3000:], b.log()[-3000:])


def renewed(manager: CertificateManager, previous: CertificateFacts) -> CertificateFacts:
    """The certificate that replaced ``previous``, once the manager presents it."""
    wait_for(
        lambda: manager.facts is not None and manager.facts.serial != previous.serial,
        "the renewed certificate",
        timeout=60,
    )
    assert manager.facts is not None
    return manager.facts


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        # RFC 9773 §5's answer; the library keeps nothing of a 409 but its status.
        (409, "HTTP 409 Conflict"),
        (400, "the CA refused: certificate {replaced} is already replaced"),
    ],
)
def test_a_renewal_names_the_certificate_it_replaces_and_without_it_when_refused(
    tmp_path: Path,
    pebble: Pebble,
    challenge_port: int,
    caplog: pytest.LogCaptureFixture,
    status: int,
    reason: str,
) -> None:
    """RFC 9773 §5: the first order names no certificate; a renewal's names the served one by
    its identifier. A CA refusing that (alreadyReplaced) gets the order again without it, the
    refusal logged with its reason, and the renewal goes through."""
    caplog.set_level(logging.INFO, logger="pillarbox.acme")
    with AriFront(pebble) as front:
        config = front_config(tmp_path, pebble, front, challenge_port)
        files = AcmeFiles.of(config)
        with LiveServer(config) as server:
            manager, first = first_certificate(server)
            assert len(front.new_orders) == 1 and "replaces" not in front.new_orders[0]
            served = presented_certificate(server.port("imaps"), pebble.root_pem, NAME)
            request_renewal(files)
            second = renewed(manager, first)
            assert len(front.new_orders) == 2
            assert front.new_orders[1]["replaces"] == certificate_ari_id(served) == first.ari_id

            front.refuse_replaces = status
            request_renewal(files)
            third = renewed(manager, second)
            assert [order.get("replaces") for order in front.new_orders[2:]] == [
                second.ari_id,
                None,
            ]
            refused = [
                r
                for r in caplog.records
                if r.getMessage() == "order refused as a replacement: ordering without replaces"
            ]
            assert len(refused) == 1, caplog.text
            fields = refused[0].fields  # type: ignore[attr-defined]
            assert fields["replaces"] == second.ari_id
            reason = reason.format(replaced=second.ari_id)
            assert reason in fields["reason"], fields
            wait_for(lambda: files.read_status().get("serial") == f"{third.serial:x}", "status")
            assert presented_certificate(
                server.port("imaps"), pebble.root_pem, NAME
            ).serial_number == (third.serial)


def test_an_order_sharing_no_name_with_the_last_certificate_replaces_nothing(
    tmp_path: Path, pebble: Pebble, challenge_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """RFC 9773 §5: ``replaces`` names a clear predecessor, which the CA checks shares an
    identifier with the order. A host renamed (server.hostname) orders for the new name
    alone: the certificate of the old one, from the same CA directory, is not presented
    and the order names no certificate, as the first one did; the CA issues it."""
    caplog.set_level(logging.INFO, logger="pillarbox.acme")
    with AriFront(pebble) as front:
        config = front_config(tmp_path, pebble, front, challenge_port)
        with LiveServer(config) as server:
            _manager, first = first_certificate(server)
        assert first.names == (NAME,) and first.ari_id
        renamed = dataclasses.replace(
            config, server=dataclasses.replace(config.server, hostname=RENAMED)
        )
        with LiveServer(renamed) as server:
            _manager, second = first_certificate(server)
            assert second.names == (RENAMED,)
            assert presented_certificate(
                server.port("imaps"), pebble.root_pem, RENAMED
            ).serial_number == (second.serial)
        assert [order.get("replaces") for order in front.new_orders] == [None, None]
        assert [i["value"] for i in front.new_orders[1]["identifiers"]] == [RENAMED]
        assert any(r.getMessage() == "stored certificate not used" for r in caplog.records)


def test_a_ca_without_renewal_information_is_not_told_what_a_renewal_replaces(
    tmp_path: Path, pebble: Pebble, challenge_port: int
) -> None:
    """RFC 9773 §5: no ``replaces`` unless the directory advertises ``renewalInfo``."""
    with AriFront(pebble) as front:
        front.offers_renewal_info = False
        config = front_config(tmp_path, pebble, front, challenge_port)
        with LiveServer(config) as server:
            manager, first = first_certificate(server)
            request_renewal(AcmeFiles.of(config))
            renewed(manager, first)
            assert [order.get("replaces") for order in front.new_orders] == [None, None]
            assert first.ari_id and not front.asked


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        ("refuse_finalize", "the CA refused: finalization refused"),
        ("invalid_orders", "the CA did not issue: issuance failed"),
    ],
)
def test_a_refused_finalization_or_a_failed_order_is_retried_and_the_certificate_stays(
    tmp_path: Path,
    pebble: Pebble,
    challenge_port: int,
    caplog: pytest.LogCaptureFixture,
    failure: str,
    reason: str,
) -> None:
    """The CA refuses the finalization, or the order it finalized goes invalid while it is
    polled (RFC 8555 §7.1.6, §7.4): each attempt is logged with the CA's reason, retried after
    ``acme_retry`` doubling (1, 2, 4 s), and the certificate served stays the one held."""
    caplog.set_level(logging.INFO, logger="pillarbox.acme")
    with AriFront(pebble) as front:
        base = front_config(tmp_path, pebble, front, challenge_port)
        config = dataclasses.replace(
            base,
            tls=dataclasses.replace(base.tls, acme_retry=1.0, acme_check_interval=30.0),
        )
        with LiveServer(config) as server:
            _, first = first_certificate(server)
        now = datetime.datetime.now(datetime.UTC)
        front.windows[first.ari_id] = (now - datetime.timedelta(hours=1), now)
        setattr(front, failure, True)
        with LiveServer(config) as server:
            manager = server.server.acme
            assert manager is not None

            def failed() -> list[logging.LogRecord]:
                return [r for r in caplog.records if r.getMessage() == "certificate not obtained"]

            wait_for(lambda: len(failed()) >= 4, "four failed attempts", timeout=60)
            attempts = [
                r
                for r in caplog.records
                if r.getMessage() == "requesting certificate"
                and r.fields["reason"].startswith("the CA's renewal window")  # type: ignore[attr-defined]
            ]
            retries = [r.fields for r in failed()[:4]]  # type: ignore[attr-defined]
            assert [f["retry_in"] for f in retries] == ["1s", "2s", "4s", "8s"]
            assert all(reason in f["reason"] for f in retries), retries
            assert [f["failures"] for f in retries] == [1, 2, 3, 4]
            # Each attempt starts once the one before has waited its retry out.
            for before, after, wait in zip(failed()[:3], attempts[1:4], (1, 2, 4), strict=True):
                assert after.created - before.created >= wait - 0.1
            assert front.finalizations >= 4
            status = AcmeFiles.of(config).read_status()
            assert status["result"] == "failed" and reason in str(status["error"])
            assert manager.facts is not None and manager.facts.serial == first.serial
            served = presented_certificate(server.port("imaps"), pebble.root_pem, NAME)
            assert served.serial_number == first.serial
