"""``pillarbox queue``, ``dns`` and ``dkim`` commands, against a store the test fills and a DNS
server we did not write (dnslib)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from dnslib.server import DNSServer
from dnslib.zoneresolver import ZoneResolver

from pillarbox.cli.main import cli
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.types import NewQueueRecipient
from pillarbox.testing.dnszone import dnslib_servers
from pillarbox.testing.live import free_port
from pillarbox.testing.testca import make_ca

RAW = b"From: alice@example.org\r\nTo: x@far.test\r\nSubject: waiting\r\n\r\nHi.\r\n"


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def run(tmp_path: Path, *args: str, **env: str) -> Outcome:
    """One command, in-process (click's runner) so a dozen of them stay fast; the parsing,
    config loading, store and exit codes are the real ones."""
    environ = {"PILLARBOX__AUTH__ARGON2_MEMORY_COST": "1024", "PILLARBOX_CONFIG": "", **env}
    result = CliRunner().invoke(
        cli, ["--config", str(tmp_path / "pillarbox.toml"), *args], env=environ
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Outcome(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    result = run(
        tmp_path, "init", "--dev", "--hostname", "mx.example.org", "--domain", "example.org"
    )
    assert result.returncode == 0, result.stderr
    return tmp_path


def enqueue(site: Path, *recipients: str, requiretls: bool = False) -> int:
    async def go() -> int:
        store = SqliteStore(site / "data" / "pillarbox.sqlite3")
        await store.open()
        try:
            queued = await store.enqueue(
                "alice@example.org",
                RAW,
                [NewQueueRecipient(r) for r in recipients],
                ret="HDRS",
                envid="e-1",
                requiretls=requiretls,
            )
            return queued.id
        finally:
            await store.close()

    return asyncio.run(go())


def test_queue_list_show_retry_remove(site: Path) -> None:
    assert run(site, "queue", "list").stdout.strip() == "(queue is empty)"
    first = enqueue(site, "x@far.test", "y@far.test")
    second = enqueue(site, "z@far.test", requiretls=True)
    listed = json.loads(run(site, "queue", "list", "--json").stdout)
    assert [m["id"] for m in listed] == [first, second]
    assert [m["requiretls"] for m in listed] == [False, True]  # RFC 8689 §4.1 tag
    assert "bytes  REQUIRETLS" in run(site, "queue", "show", str(second)).stdout
    assert [r["address"] for r in listed[0]["recipients"]] == ["x@far.test", "y@far.test"]
    assert {r["state"] for r in listed[0]["recipients"]} == {"pending"}
    text = run(site, "queue", "list").stdout
    assert "<alice@example.org>" in text and "pending   x@far.test" in text
    shown = run(site, "queue", "show", str(first))
    assert "Subject: waiting" in shown.stdout and "RET=HDRS ENVID=e-1" in shown.stdout
    shown_json = json.loads(run(site, "queue", "show", str(first), "--json").stdout)
    assert {"name": "Subject", "value": "waiting"} in shown_json["headers"]
    assert run(site, "queue", "retry", str(first)).returncode == 0
    assert run(site, "queue", "flush").stdout.strip() == (
        "retrying 2 messages"
        " (no server is running on this data directory: it starts them when it starts)"
    )
    assert run(site, "queue", "remove", str(first)).returncode == 0
    assert [m["id"] for m in json.loads(run(site, "queue", "list", "--json").stdout)] == [second]
    missing = run(site, "queue", "show", str(first))
    assert missing.returncode == 1 and f"no queued message {first}" in missing.stderr


def test_dkim_list_and_rotate(site: Path) -> None:
    before = json.loads(run(site, "dkim", "list", "example.org", "--json").stdout)
    assert sorted(k["algorithm"] for k in before) == ["ed25519-sha256", "rsa-sha256"]
    rotated = run(site, "dkim", "rotate", "example.org")
    assert rotated.returncode == 0 and "retired" in rotated.stdout
    after = json.loads(run(site, "dkim", "list", "example.org", "--json").stdout)
    assert len(after) == 4 and sum(k["retired"] is None for k in after) == 2
    # Retired keys stay published for mail signed before the rotation.
    records = run(site, "dns", "records", "example.org").stdout
    assert all(f"{k['selector']}._domainkey.example.org." in records for k in after)


@pytest.fixture
def dnslib_port() -> Iterator[tuple[int, list[DNSServer]]]:
    port = free_port("127.0.0.1")
    servers: list[DNSServer] = []
    yield port, servers
    for server in servers:
        server.stop()


def serve(zone: str, port: int, servers: list[DNSServer]) -> None:
    for server in servers:
        server.stop()
        server.server.server_close()  # stop() leaves the port bound until collected
    servers.clear()
    servers.extend(dnslib_servers(ZoneResolver(zone), port))


def test_dns_records_then_check(site: Path, dnslib_port: tuple[int, list[DNSServer]]) -> None:
    port, servers = dnslib_port
    records = run(site, "dns", "records", "example.org", "--address", "192.0.2.10")
    assert records.returncode == 0, records.stderr
    zone = records.stdout
    assert "example.org.\t3600\tIN\tMX\t10 mx.example.org." in zone
    assert "mx.example.org.\t3600\tIN\tA\t192.0.2.10" in zone
    assert '"v=spf1 ip4:192.0.2.10 -all"' in zone
    assert zone.count("._domainkey.example.org.") == 2
    env = {"PILLARBOX__DNS__NAMESERVER": f"127.0.0.1:{port}"}
    serve(zone, port, servers)
    check = run(site, "dns", "check", "example.org", "--address", "192.0.2.10", **env)
    # Every record is there; the addresses the records ask for reports at are not yet.
    assert check.returncode == 1, check.stdout + check.stderr
    assert "[OK     ] _dmarc.example.org TXT" in check.stdout
    assert "[MISSING] dmarc-reports@example.org mailbox" in check.stdout
    assert "pillarbox alias add tls-reports@example.org ACCOUNT" in check.stdout
    assert check.stdout.count("[MISSING]") == 2
    for local in ("dmarc-reports", "tls-reports"):  # an alias elsewhere will do
        assert (
            run(site, "alias", "add", f"{local}@example.org", "dmarc@elsewhere.test").returncode
            == 0
        )
    check = run(site, "dns", "check", "example.org", "--address", "192.0.2.10", **env)
    assert check.returncode == 0, check.stdout + check.stderr
    broken = "\n".join(line for line in zone.splitlines() if not line.startswith("_dmarc."))
    serve(broken, port, servers)
    check = run(site, "dns", "check", "example.org", "--address", "192.0.2.10", "--json", **env)
    assert check.returncode == 1
    findings = {f["name"]: f["status"] for f in json.loads(check.stdout)}
    assert findings["_dmarc.example.org"] == "missing"
    assert findings["example.org"] == "ok"


def test_dns_records_offers_no_tlsa_for_a_key_that_will_change(site: Path) -> None:
    records = run(site, "dns", "records", "example.org").stdout
    assert "; DANE: no TLSA record offered for mx.example.org: the self-signed" in records
    assert "TLSA\t" not in records
    acme = {"PILLARBOX__TLS__ACME": "true"}
    records = run(site, "dns", "records", "example.org", **acme).stdout
    assert "no TLSA record offered for mx.example.org: each ACME renewal makes a new key" in records
    acme["PILLARBOX__TLS__ACME_REUSE_KEY"] = "true"
    records = run(site, "dns", "records", "example.org", **acme).stdout
    assert "no TLSA record offered for mx.example.org: no ACME certificate obtained yet" in records


def test_dns_tlsa_of_a_configured_certificate_then_check(
    site: Path, dnslib_port: tuple[int, list[DNSServer]]
) -> None:
    """A configured certificate's key stays until the admin changes it: its `3 1 1` record is
    offered; `dns check` finds it matching, then a stale one (another key's) loudly wrong."""
    port, servers = dnslib_port
    (site / "ca").mkdir()
    ca = make_ca(site / "ca")
    cert, key = ca.issue("mx.example.org")
    stale_cert, _ = ca.issue("stale.example.org")
    env = {"PILLARBOX__TLS__CERT": str(cert), "PILLARBOX__TLS__KEY": str(key)}
    records = run(site, "dns", "records", "example.org", "--address", "192.0.2.10", **env)
    assert records.returncode == 0, records.stderr
    zone = records.stdout
    digest = tlsa_digest(cert)
    assert f"_25._tcp.mx.example.org.\t3600\tIN\tTLSA\t3 1 1 {digest}\n" in zone
    assert "honoured only where that zone is DNSSEC-signed" in zone

    env["PILLARBOX__DNS__NAMESERVER"] = f"127.0.0.1:{port}"
    serve(zone, port, servers)
    check = run(site, "dns", "check", "example.org", "--address", "192.0.2.10", **env)
    assert "[OK     ] _25._tcp.mx.example.org TLSA" in check.stdout, check.stdout

    stale = zone.replace(digest, tlsa_digest(stale_cert))
    serve(stale, port, servers)
    check = run(site, "dns", "check", "example.org", "--address", "192.0.2.10", **env)
    assert check.returncode == 1
    assert "[WRONG  ] _25._tcp.mx.example.org TLSA" in check.stdout, check.stdout
    assert "MISMATCH: no record matches the certificate served" in check.stdout

    without = "\n".join(line for line in zone.splitlines() if "\tTLSA\t" not in line)
    serve(without, port, servers)
    check = run(site, "dns", "check", "example.org", "--address", "192.0.2.10", **env)
    assert "[MISSING] _25._tcp.mx.example.org TLSA" in check.stdout, check.stdout


def tlsa_digest(cert: Path) -> str:
    """SHA-256 of the certificate's SubjectPublicKeyInfo, hex, computed apart from the code."""
    spki = (
        x509.load_pem_x509_certificate(cert.read_bytes())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return hashlib.sha256(spki).hexdigest()


def test_dns_records_of_an_unknown_domain(site: Path) -> None:
    result = run(site, "dns", "records", "nowhere.test")
    assert result.returncode == 1 and "no such domain: nowhere.test" in result.stderr


def test_dns_records_prints_the_ds_and_check_compares_it(
    site: Path, dnslib_port: tuple[int, list[DNSServer]]
) -> None:
    """With our DNS server signing the zone, ``dns records`` prints the key and the DS for the
    registrar (the same on every run: the key is kept), and ``dns check`` compares the DS the
    parent publishes with it."""
    port, servers = dnslib_port
    env = {
        "PILLARBOX__DNS__AUTHORITATIVE_ENABLED": "true",
        "PILLARBOX__DNS__DNSSEC": "true",
        "PILLARBOX__DNS__NAMESERVER": f"127.0.0.1:{port}",
    }
    records = run(site, "dns", "records", "example.org", "--address", "192.0.2.10", **env)
    assert records.returncode == 0, records.stderr
    (ds,) = [line[1:].strip() for line in records.stdout.splitlines() if "\tDS\t" in line]
    (key,) = [line for line in records.stdout.splitlines() if "\tDNSKEY\t257 3 13 " in line]
    assert ds.startswith("example.org.\t3600\tIN\tDS\t") and ds.split()[5:7] == ["13", "2"]
    again = run(site, "dns", "records", "example.org", **env).stdout
    assert ds in again and key in again

    def ds_finding(zone: str, **extra: str) -> dict[str, str]:
        serve(zone, port, servers)
        check = run(site, "dns", "check", "example.org", "--json", **(env | extra))
        (found,) = [f for f in json.loads(check.stdout) if f["type"] == "DS"]
        return dict(found)

    zone = records.stdout
    assert ds_finding(zone + ds + "\n")["status"] == "ok"
    missing = ds_finding(zone)
    assert missing["status"] == "missing" and missing["expected"] == [ds.split("\t")[-1]]
    other = ds.rsplit(" ", 1)[0] + " " + "00" * 32
    assert ds_finding(zone + other + "\n")["status"] == "wrong"
    # Signing turned off under a published DS: the outage dns check must shout about.
    unsigned = ds_finding(zone + ds + "\n", PILLARBOX__DNS__DNSSEC="false")
    assert unsigned["status"] == "wrong" and "not signed" in unsigned["detail"]
    assert "; DNSSEC: the zone is not signed" in run(site, "dns", "records", "example.org").stdout
    off = run(site, "dns", "rollover", "example.org", PILLARBOX__DNS__DNSSEC="false")
    assert off.returncode == 1 and "dns.dnssec is off" in off.stderr

    # A rollover started: dns records offers both DS records; dns check takes the parent
    # showing the old DS, both, or only the new one (each vouches for the zone), not another.
    both = run(site, "dns", "rollover", "example.org", "--status", "--finish", **env)
    assert both.returncode == 2 and "two steps" in both.stderr
    started = run(site, "dns", "rollover", "example.org", "--json", **env)
    assert started.returncode == 0, started.stderr
    state = json.loads(started.stdout)
    assert state["step"] == "published" and not state["may_finish"]
    assert [k["state"] for k in state["keys"]] == ["active", "published"]
    old_ds, new_ds = (f"{d['name']}.\t{d['ttl']}\tIN\tDS\t{d['value']}" for d in state["ds"])
    assert old_ds == ds
    shown = run(site, "dns", "records", "example.org", **env).stdout
    assert ds in shown and new_ds in shown
    for published in (ds, f"{ds}\n{new_ds}", new_ds):
        assert ds_finding(zone + published + "\n")["status"] == "ok", published
    assert ds_finding(zone + other + "\n")["status"] == "wrong"
    again = run(site, "dns", "rollover", "example.org", **env)
    assert again.returncode == 1 and "a rollover is under way" in again.stderr
    # A zone served elsewhere is signed (or not) there: its DS is none of our business.
    elsewhere = env | {
        "PILLARBOX__DNS__AUTHORITATIVE_ENABLED": "false",
        "PILLARBOX__DNS__DNSSEC": "false",
    }
    check = run(site, "dns", "check", "example.org", "--json", **elsewhere)
    assert [f for f in json.loads(check.stdout) if f["type"] == "DS"] == []
