"""Renewal timing against a real CA: Pebble issuing 90-day and short-lived certificates, and
ACME renewal information (RFC 9773) from a front to it.

Debian's Pebble (2.4) has no renewal information. The front here is a small HTTPS server on
loopback that relays every request to Pebble byte for byte, adds ``renewalInfo`` (its own URL)
to the directory it relays, and answers ``GET renewalInfo/<id>`` with the window the test set
for that certificate (a far-off one otherwise), recording each identifier asked about. The
server under test is given the front's directory URL; everything else it does goes to Pebble
at the URLs of Pebble's directory.
"""

from __future__ import annotations

import dataclasses
import datetime
import http.client
import json
import logging
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

import pytest
from acme.client import _renewal_info_path_component

from pillarbox import config as cfg
from pillarbox.net.acme import AcmeFiles
from pillarbox.testing import pebble as pebble_server
from pillarbox.testing.dnszone import ZoneRecord
from pillarbox.testing.live import LiveServer, free_port, loopback_config
from pillarbox.testing.pebble import Pebble, presented_certificate
from pillarbox.testing.polling import wait_for

pytestmark = pytest.mark.skipif(
    not pebble_server.available(), reason="Pebble not installed (apt-get install pebble)"
)

NAME = "mail.pillarbox.test"
DAY = datetime.timedelta(days=1)
#: Let's Encrypt's default lifetime, as Pebble is told to issue.
NINETY_DAYS = 90 * 86400


@pytest.fixture
def dns_records() -> list[ZoneRecord]:
    return [ZoneRecord(NAME, "A", "127.0.0.1")]


@pytest.fixture
def challenge_port() -> int:
    return free_port("127.0.0.1")


def _utc(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AriFront:
    """``with AriFront(pebble) as front:`` — Pebble's directory at :attr:`directory_url`, with
    renewal information: :attr:`windows` (identifier → (start, end)) as the test sets them,
    :attr:`default` for any other certificate; :attr:`asked` the identifiers asked about, in
    order; :attr:`failing` makes every renewal information request a 500."""

    def __init__(self, pebble: Pebble) -> None:
        self.pebble = pebble
        now = datetime.datetime.now(datetime.UTC)
        self.default = (now + 60 * DAY, now + 61 * DAY)
        self.windows: dict[str, tuple[datetime.datetime, datetime.datetime]] = {}
        self.asked: list[str] = []
        self.failing = False
        #: The Retry-After sent (seconds): short, so a client that did not bound it would ask
        #: again within the test.
        self.retry_after = 1
        cert, key = pebble.https_identity
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        self._upstream = ssl.create_default_context(cafile=str(pebble.ca_bundle))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.socket = self._context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def directory_url(self) -> str:
        return f"{self.base}/dir"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        front = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.startswith("/renewalInfo/"):
                    front._renewal_info(self)
                else:
                    front._relay(self)

            do_HEAD = do_POST = do_GET

        return Handler

    def _renewal_info(self, handler: BaseHTTPRequestHandler) -> None:
        identifier = handler.path.removeprefix("/renewalInfo/")
        self.asked.append(identifier)
        if self.failing:
            handler.send_error(500, "renewal information broken for the test")
            return
        start, end = self.windows.get(identifier, self.default)
        body = json.dumps({"suggestedWindow": {"start": _utc(start), "end": _utc(end)}}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Retry-After", str(self.retry_after))
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _relay(self, handler: BaseHTTPRequestHandler) -> None:
        """Pebble's answer to the same request, unchanged but for ``renewalInfo`` added to the
        directory."""
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        upstream = http.client.HTTPSConnection(
            "127.0.0.1", self.pebble.port, context=self._upstream, timeout=30
        )
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
            upstream.request(handler.command, handler.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        if handler.path == "/dir" and response.status == 200:
            directory = json.loads(data)
            directory["renewalInfo"] = f"{self.base}/renewalInfo"
            data = json.dumps(directory).encode()
        handler.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)

    def __enter__(self) -> AriFront:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()


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


def tls_status(config: cfg.Config, tmp_path: Path) -> dict[str, object]:
    config_path = tmp_path / "pillarbox.toml"
    config_path.write_text(cfg.render_toml(config))
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "pillarbox.cli",
            "--config",
            str(config_path),
            "tls",
            "status",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    acme: dict[str, object] = json.loads(shown.stdout)["acme"]
    return acme


def test_the_cas_renewal_window_decides_when_a_90_day_certificate_is_renewed(
    tmp_path: Path, pebble: Pebble, challenge_port: int
) -> None:
    """A window far off leaves the new certificate alone (and is not asked for again before
    an hour, whatever the Retry-After); a window that is now renews it at the next start,
    with more than 80 days left, and once only (the new certificate's window is far off)."""
    with AriFront(pebble) as front:
        config = front_config(tmp_path, pebble, front, challenge_port)
        with LiveServer(config) as server:
            manager = server.server.acme
            assert manager is not None
            wait_for(lambda: manager.facts is not None, "the certificate", timeout=60)
            first = manager.facts
            assert first is not None
            wait_for(lambda: front.asked, "a renewal information request", timeout=30)
            served = presented_certificate(server.port("imaps"), pebble.root_pem, NAME)
            # RFC 9773 §4.1: base64url AKI "." base64url serial, of the served certificate.
            assert front.asked == [_renewal_info_path_component(served)] == [first.ari_id]
            time.sleep(3.0)  # three checks at least
            assert manager.facts is not None and manager.facts.serial == first.serial
            assert len(front.asked) == 1  # Retry-After 1 s, bounded to an hour
            wait_for(lambda: AcmeFiles.of(config).read_renewal_info(), "renewal-info.json")
            shown = tls_status(config, tmp_path)
            info = shown["renewal_info"]
            assert isinstance(info, dict), shown
            assert info["url"] == f"{front.base}/renewalInfo/{first.ari_id}"
            assert info["window"]["start"].startswith(_utc(front.default[0])[:16])
            due = datetime.datetime.fromisoformat(str(shown["renewal_due"]))
            assert front.default[0] - datetime.timedelta(seconds=1) <= due <= front.default[1]
            assert shown["renewal_due_by"] == "ari"

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
            manager = server.server.acme
            assert manager is not None
            wait_for(lambda: manager.facts is not None, "the certificate", timeout=60)
            first = manager.facts
            assert first is not None
            wait_for(
                lambda: any(
                    r.getMessage() == "renewal information not fetched" for r in caplog.records
                ),
                "the failed fetch logged",
            )
            time.sleep(2.0)
            assert manager.facts is not None and manager.facts.serial == first.serial
            assert len(front.asked) == 1  # tried again after hours, not at each check
            shown = tls_status(config, tmp_path)
            assert "500" in str(shown["renewal_info"]), shown
            assert shown["renewal_due_by"] == "lifetime"
            due = datetime.datetime.fromisoformat(str(shown["renewal_due"]))
            assert due == first.not_after - 30 * DAY
