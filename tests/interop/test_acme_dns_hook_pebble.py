"""ACME DNS-01 for a zone another DNS server serves: the administrator's hook commands
(``[tls] acme_dns_hook``, ``acme_dns_cleanup_hook``) publish and remove the TXT records, and
Pebble validates them through that server.

"That server" is a loopback DNS server of the test whose zone is a file the hook script edits
(as a script calling a DNS provider's API would edit the provider's zone). Skipped where
Debian's ``pebble`` is not installed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import stat
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pillarbox import config as cfg
from pillarbox.dns.authoritative import AuthoritativeServer, StaticZone
from pillarbox.dns.records import DnsRecord
from pillarbox.net.acmefiles import AcmeFiles
from pillarbox.testing import pebble as pebble_server
from pillarbox.testing.live import LiveServer, free_port, loopback_config
from pillarbox.testing.pebble import Pebble, presented_certificate
from pillarbox.testing.polling import wait_for

pytestmark = pytest.mark.skipif(
    not pebble_server.available(), reason="Pebble not installed (apt-get install pebble)"
)

ZONE = "elsewhere.test"
NAMES = (f"www.{ZONE}", f"*.{ZONE}")
#: In the server's environment; a hook must not see it (it could be a secret override).
MARKER = "PILLARBOX_TEST_SECRET_MARKER"

HOOK = """\
import json, os, sys, time
mode, zone_file, calls = sys.argv[1:4]
name, value = sys.argv[4:]
with open(calls, "a") as out:
    out.write(json.dumps({"mode": mode, "argv": sys.argv[4:], "env": dict(os.environ)}) + "\\n")
if mode == "fail":
    print("the provider's API said no")
    sys.exit(3)
if mode == "hold":
    # Waits, calls.held made, until the test makes calls.released; then publishes.
    if not os.path.exists(calls + ".held"):
        open(calls + ".held", "w").close()
    while not os.path.exists(calls + ".released"):
        time.sleep(0.1)
    mode = "publish"
lines = open(zone_file).read().splitlines() if os.path.exists(zone_file) else []
entry = f"{name} {value}"
lines = [*lines, entry] if mode == "publish" else [line for line in lines if line != entry]
with open(zone_file, "w") as out:
    out.write("".join(line + "\\n" for line in lines))
"""


class FileZone:
    """A zone source over a file of ``name value`` TXT lines, read at every query."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def zone_for(self, name: str) -> StaticZone | None:
        if name != ZONE and not name.endswith("." + ZONE):
            return None
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        records = []
        for line in lines:
            name, value = line.split(" ", 1)
            records.append(DnsRecord(name, "TXT", value, 10))
        return StaticZone(ZONE, records)


@pytest.fixture
def zone_file(tmp_path: Path) -> Path:
    return tmp_path / "zone.txt"


@pytest.fixture
def their_dns_port(zone_file: Path) -> Iterator[int]:
    """The other DNS server, on its own loop in a thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = AuthoritativeServer(FileZone(zone_file))
    asyncio.run_coroutine_threadsafe(server.start("127.0.0.1", 0), loop).result(10)
    yield server.port
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@pytest.fixture
def pebble(tmp_path: Path, their_dns_port: int) -> Iterator[Pebble]:
    workdir = tmp_path / "pebble"
    workdir.mkdir()
    with Pebble(workdir, http_port=free_port("127.0.0.1"), dns_port=their_dns_port) as server:
        yield server


@pytest.fixture
def hook(tmp_path: Path) -> Path:
    script = tmp_path / "dns-hook"
    script.write_text(f"#!{sys.executable}\n{HOOK}")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def hook_config(
    tmp_path: Path, pebble: Pebble, publish: tuple[str, ...], **tls: object
) -> cfg.Config:
    base = loopback_config(tmp_path / "data", only=("imaps",))
    return dataclasses.replace(
        base,
        server=dataclasses.replace(base.server, hostname=f"mail.{ZONE}"),
        tls=cfg.TlsSection(
            acme=True,
            acme_directory=pebble.directory_url,
            acme_ca_bundle=str(pebble.ca_bundle),
            acme_challenges=("dns-01",),
            acme_names=NAMES,
            acme_dns_hook=publish,
            **tls,  # type: ignore[arg-type]
        ),
    )


def cleaning_config(
    tmp_path: Path, pebble: Pebble, hook: Path, zone_file: Path, log: Path, mode: str
) -> cfg.Config:
    """The hook publishing in ``mode`` and removing as the cleanup hook, each call in ``log``."""
    return hook_config(
        tmp_path,
        pebble,
        (str(hook), mode, str(zone_file), str(log)),
        acme_dns_cleanup_hook=(str(hook), "remove", str(zone_file), str(log)),
    )


def calls(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_hooks_publish_and_remove_records_in_a_zone_served_elsewhere(
    tmp_path: Path, pebble: Pebble, hook: Path, zone_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MARKER, "secret")
    log = tmp_path / "calls.jsonl"
    config = cleaning_config(tmp_path, pebble, hook, zone_file, log, "publish")
    with LiveServer(config) as server:
        assert server.server.dns is None  # our own DNS server is not involved
        manager = server.server.acme
        assert manager is not None
        wait_for(lambda: manager.facts is not None, "the certificate", timeout=90)
        assert manager.facts is not None and sorted(manager.facts.names) == sorted(NAMES)
        cert = presented_certificate(server.port("imaps"), pebble.root_pem, f"imap.{ZONE}")
        assert cert.serial_number == manager.facts.serial

    made = calls(log)
    assert sorted(c["mode"] for c in made) == ["publish", "publish", "remove", "remove"]
    published = [c for c in made if c["mode"] == "publish"]
    # Arguments: the record's name and value after the fixed ones; certbot's variables too.
    assert sorted(c["argv"][0] for c in published) == [
        f"_acme-challenge.{n}" for n in (ZONE, f"www.{ZONE}")
    ]
    for call in published:
        env = call["env"]
        assert isinstance(env, dict)
        name, value = call["argv"]
        assert env["PILLARBOX_ACME_RECORD"] == name and env["PILLARBOX_ACME_VALUE"] == value
        assert env["CERTBOT_VALIDATION"] == value
        assert f"_acme-challenge.{env['CERTBOT_DOMAIN']}" == name
        assert MARKER not in env  # the server's environment stays with the server
    # Each published record was removed again by the cleanup hook.
    assert sorted(c["argv"] for c in made if c["mode"] == "remove") == sorted(
        c["argv"] for c in published
    )
    assert zone_file.read_text() == ""


def test_a_failing_hook_fails_the_attempt_with_its_output(
    tmp_path: Path, pebble: Pebble, hook: Path, zone_file: Path
) -> None:
    log = tmp_path / "calls.jsonl"
    config = hook_config(tmp_path, pebble, (str(hook), "fail", str(zone_file), str(log)))
    with LiveServer(config) as server:
        wait_for(
            lambda: AcmeFiles.of(config).read_status().get("result") == "failed",
            "the failed attempt",
            timeout=60,
        )
        error = str(AcmeFiles.of(config).read_status()["error"])
        assert "exited with status 3" in error and "the provider's API said no" in error
        assert server.server.acme is not None and server.server.acme.facts is None


def test_an_account_deactivated_while_its_order_is_under_way_is_replaced_in_the_same_attempt(
    tmp_path: Path, pebble: Pebble, hook: Path, zone_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The stored account is deactivated after the order was placed: the hook holds the first
    attempt while the test deactivates it at Pebble, and Pebble then refuses the challenge's
    response (``unauthorized``). The same attempt looks at the account, replaces it, orders
    again under the new one and obtains the certificate: no failed attempt, no wait for the
    next. Each order's records are published and removed again."""
    caplog.set_level(logging.INFO, logger="pillarbox.acme")
    log = tmp_path / "calls.jsonl"
    held, released = Path(f"{log}.held"), Path(f"{log}.released")
    config = cleaning_config(tmp_path, pebble, hook, zone_file, log, "hold")
    with LiveServer(config) as server:
        wait_for(held.exists, "the attempt held by the hook, its order placed", timeout=60)
        before = server.with_store(lambda store: store.acme_account(config.tls.acme_directory))
        assert before is not None and before.url
        pebble.deactivate(before.key_pem, before.url)
        released.touch()
        manager = server.server.acme
        assert manager is not None
        wait_for(lambda: manager.facts is not None, "the certificate", timeout=90)
        files = AcmeFiles.of(config)
        wait_for(lambda: files.read_status().get("result") == "ok", "the attempt's status")
        after = server.with_store(lambda store: store.acme_account(config.tls.acme_directory))
    assert after is not None and after.key_pem != before.key_pem
    assert after.url not in ("", before.url)
    assert pebble.accounts_created() == 2
    logged = [r.getMessage() for r in caplog.records]
    assert logged.count("requesting certificate") == 1, logged
    assert "certificate not obtained" not in logged, logged
    [replaced] = [r for r in caplog.records if r.getMessage().startswith("ACME account replaced")]
    fields = getattr(replaced, "fields", {})
    assert (fields["old_url"], fields["new_url"]) == (before.url, after.url), fields
    assert fields["status"] == "deactivated" and fields["by"] == "this node"
    # Two orders of two names each: four records published, the same four removed.
    made = calls(log)
    published = sorted(c["argv"] for c in made if c["mode"] in ("hold", "publish"))
    assert len(published) == 4, made
    assert sorted(c["argv"] for c in made if c["mode"] == "remove") == published
    assert zone_file.read_text() == ""
