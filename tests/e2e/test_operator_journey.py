"""An operator's first day, through the command line only: two domains, each its own
``pillarbox init`` and ``pillarbox serve`` process, the DNS records ``pillarbox dns records``
prints published in a DNS server we did not write, and mail between them with ``pillarbox
mail``.

alpha.test runs on 127.0.0.2 and beta.test on 127.0.0.3, both on the same ports (the SMTP
port is the queue's remote port). The config each ``init --dev`` wrote is edited as an operator
edits it, key by key. ``tests/e2e/test_journey.py`` covers the message's path between servers
set up in-process; this covers what the operator touches: the generated config, its self-signed
certificate trusted with ``--cafile`` at the listeners' addresses, the published zone, ``dns
check``, Authentication-Results that pass at the receiver, the reply, a bounce, the
postmaster every domain has, the queue commands while the receiver is down, and a backup
restored elsewhere.
"""

from __future__ import annotations

import email
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from email import policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from dnslib.server import BaseResolver
from dnslib.zoneresolver import ZoneResolver

from pillarbox.cli.main import cli
from pillarbox.testing.dnszone import dnslib_servers
from pillarbox.testing.live import TEST_STORE_ENV, free_port
from pillarbox.testing.polling import wait_for

A_IP, B_IP = "127.0.0.2", "127.0.0.3"
#: The listeners this test uses; the others ``init --dev`` writes are turned off.
USED = ("smtp", "submissions", "imaps", "pop3s", "https")
UNUSED = ("submission", "imap", "pop3", "managesieve", "http")
PASSWORD = "a long enough password"
CHEAP_HASHES = {"PILLARBOX__AUTH__ARGON2_MEMORY_COST": "1024"}


def run(site: Path, *args: str, stdin: str | None = None) -> str:
    """One ``pillarbox --config SITE/pillarbox.toml`` admin command; its standard output. In
    process (click's runner), so that the many stay fast: parsing, config, store and exit code
    are the real ones."""
    env = {"PILLARBOX_CONFIG": None, TEST_STORE_ENV: None, **CHEAP_HASHES}
    result = CliRunner().invoke(
        cli, ["--config", str(site / "pillarbox.toml"), *args], input=stdin, env=env
    )
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.stdout


def set_keys(config: Path, table: str, **values: object) -> None:
    """Edit keys of one ``[table]`` of the file ``init`` wrote, in place, as a person does."""
    text = config.read_text()
    start = text.index(f"\n[{table}]\n") + len(table) + 4
    end = text.find("\n[", start)
    body = text[start:end]
    for key, value in values.items():
        body, count = re.subn(rf"^{key} = .*$", f"{key} = {json.dumps(value)}", body, flags=re.M)
        assert count == 1, (table, key)
    config.write_text(text[:start] + body + text[end:])


class Zone(BaseResolver):  # type: ignore[misc]
    """dnslib's ZoneResolver over the zone text published so far."""

    def __init__(self) -> None:
        self.inner = ZoneResolver("")
        self.lock = threading.Lock()

    def publish(self, text: str) -> None:
        with self.lock:
            self.inner = ZoneResolver(text)

    def resolve(self, request: Any, handler: Any) -> Any:
        with self.lock:
            return self.inner.resolve(request, handler)


class Site:
    """One domain's directory, its ``pillarbox serve`` process and its users' mail client."""

    def __init__(self, root: Path, domain: str, ip: str, user: str, ports: dict[str, int]):
        self.dir = root / domain
        self.dir.mkdir()
        self.domain, self.ip, self.user, self.ports = domain, ip, f"{user}@{domain}", ports
        self.config = self.dir / "pillarbox.toml"
        self.process: subprocess.Popen[str] | None = None

    def serve(self) -> None:
        """Start ``pillarbox serve``; :meth:`started` waits for it (sites start side by side)."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("PILLARBOX_CONFIG", None)
        env.pop(TEST_STORE_ENV, None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pillarbox.cli", "--config", str(self.config), "serve"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def started(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        printed = []
        for line in self.process.stdout:
            printed.append(line)
            if line.startswith("Stop with"):
                break
        assert f"  smtp         {self.ip}:{self.ports['smtp']}\n" in printed, printed

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            _, stderr = self.process.communicate(timeout=30)
            assert self.process.returncode == 0, stderr
            assert "Traceback" not in stderr, stderr
            self.process = None

    def mail(self, *args: str, stdin: str = "") -> str:
        """``pillarbox mail`` as the site's user (``account add`` trusts the site's self-signed
        certificate for the account's later commands)."""
        result = CliRunner().invoke(
            cli,
            ["mail", *args],
            input=stdin,
            env={"PILLARBOX_MAIL_HOME": str(self.dir / "client")},
        )
        assert result.exit_code == 0, (args, result.output, result.exception)
        return result.stdout

    def inbox(self) -> list[dict[str, Any]]:
        inbox: list[dict[str, Any]] = json.loads(self.mail("ls", "--json"))
        return inbox

    def raw(self, subject: str) -> bytes:
        [found] = [m for m in self.inbox() if m["subject"] == subject]
        return self.mail("read", "--raw", "--peek", str(found["uid"])).encode()


def received(site: Site, subject: str) -> bytes:
    wait_for(lambda: any(m["subject"] == subject for m in site.inbox()), f"{subject!r}")
    return site.raw(subject)


def our_results(raw: bytes, host: str) -> str:
    message = email.message_from_bytes(raw, policy=policy.default)
    [ours] = [
        str(v) for v in message.get_all("Authentication-Results", []) if v.startswith(host + ";")
    ]
    return ours


@pytest.fixture
def sites(tmp_path: Path) -> Iterator[tuple[Site, Site]]:
    dns_port = free_port("127.0.0.1")
    zone = Zone()
    servers = dnslib_servers(zone, dns_port)
    ports = {name: free_port(A_IP, B_IP) for name in USED}
    alpha = Site(tmp_path, "alpha.test", A_IP, "alice", ports)
    beta = Site(tmp_path, "beta.test", B_IP, "bob", ports)
    text = ""
    for site in (alpha, beta):
        run(
            site.dir,
            *("init", "--dev", "--hostname", f"mx.{site.domain}", "--domain", site.domain),
            *("--user", site.user, "--password-stdin"),
            stdin=PASSWORD + "\n",
        )
        for name in USED:
            set_keys(site.config, f"listeners.{name}", address=site.ip, port=ports[name])
        for name in UNUSED:
            set_keys(site.config, f"listeners.{name}", enabled=False)
        set_keys(site.config, "server", shutdown_grace=2.0)
        # The other site's MX listens on this port; `queue flush` wakes the running server
        # (its control socket), so neither the long retry schedule nor a scan every
        # `poll_interval` delivers the queued message in time: only the flush does.
        # Connections to another loopback address would leave from 127.0.0.1: each site sends
        # from its own address, the one its SPF record names.
        set_keys(
            site.config,
            "queue",
            remote_port=ports["smtp"],
            poll_interval=600.0,
            retry_schedule=[120.0],
            source_addresses=[site.ip],
        )
        dns = {"nameserver": f"127.0.0.1:{dns_port}", "addresses": [site.ip], "timeout": 2.0}
        set_keys(site.config, "dns", **dns)
        set_keys(site.config, "policy", trusted_networks=[])  # judge each other's mail
        records = run(site.dir, "dns", "records", site.domain)
        # Mail apps are sent to the ports served (as autoconfig does), to no listener that is off.
        assert f"SRV\t0 1 {ports['imaps']} mx.{site.domain}." in records
        assert "_pop3._tcp" not in records
        text += records
    zone.publish(text)
    try:
        for local in ("dmarc-reports", "tls-reports"):  # the records' rua= (README, step 3)
            run(alpha.dir, "alias", "add", f"{local}@alpha.test", "alice@alpha.test")
        run(alpha.dir, "dns", "check", alpha.domain)  # exits 1 on anything missing or wrong
        for site in (alpha, beta):
            site.serve()
        for site in (alpha, beta):
            site.started()
            site.mail(
                *("account", "add", "me", "--address", site.user, "--tls", "implicit"),
                *("--cafile", str(site.dir / "data/tls/cert.pem")),
                *("--imap-host", site.ip, "--imap-port", str(ports["imaps"])),
                *("--pop3-host", site.ip, "--pop3-port", str(ports["pop3s"])),
                *("--smtp-host", site.ip, "--smtp-port", str(ports["submissions"])),
                "--password-stdin",
                stdin=PASSWORD + "\n",
            )
        yield alpha, beta
    finally:
        for site in (alpha, beta):
            if site.process is not None:
                site.process.kill()
                site.process.communicate()
        for server in servers:
            server.stop()


def test_an_operators_first_day(sites: tuple[Site, Site], tmp_path: Path) -> None:
    alpha, beta = sites
    # `serve` made the certificate `init` had made anew: it names the addresses set since.
    assert "addresses    127.0.0.1, ::1, 127.0.0.2\n" in run(alpha.dir, "tls", "status")
    run(alpha.dir, "alias", "add", "sales@alpha.test", "alice@alpha.test")

    # Alice writes to Bob; beta.test judges alpha.test's mail and every check passes.
    alice_sent = alpha.mail("send", "--to", "bob@beta.test", "--subject", "Hello", stdin="Hi!\n")
    assert alice_sent.startswith("sent <")
    hello = received(beta, "Hello")
    results = our_results(hello, "mx.beta.test")
    assert "spf=pass smtp.mailfrom=alpha.test" in results
    assert results.count("dkim=pass header.d=alpha.test") == 2  # RSA and Ed25519
    assert "dmarc=pass" in results
    assert b"from mx.alpha.test ([127.0.0.2])" in hello  # queue.source_addresses
    assert b"by mx.beta.test (Pillarbox) with ESMTPS" in hello  # STARTTLS between the MXs

    # Bob reads it over POP3 and on the web too.
    mbox = tmp_path / "bob.mbox"
    assert "fetched 1 new" in beta.mail("fetch", "--pop3", "--keep", "--to-mbox", str(mbox))
    assert b"Subject: Hello" in mbox.read_bytes()
    web = f"https://{B_IP}:{beta.ports['https']}"
    trust = ssl.create_default_context(cafile=beta.dir / "data/tls/cert.pem")
    with httpx.Client(verify=trust, timeout=10) as browser:
        csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get(f"{web}/login").text)
        assert csrf is not None
        form = {"csrf": csrf.group(1), "username": "bob@beta.test", "password": PASSWORD}
        assert browser.post(f"{web}/login", data=form).status_code == 303
        [inbox] = [b for b in browser.get(f"{web}/api/v1/mailboxes").json() if b["name"] == "INBOX"]
        [listed] = browser.get(f"{web}/api/v1/mailboxes/{inbox['id']}/messages").json()["messages"]
        shown = browser.get(f"{web}/api/v1/mailboxes/{inbox['id']}/messages/{listed['uid']}")
        verdicts = {(r["method"], r["result"]) for r in shown.json()["authentication_results"]}
        assert {("spf", "pass"), ("dkim", "pass"), ("dmarc", "pass")} <= verdicts

    # Bob replies to Alice's alias; alpha.test's checks pass the other way.
    [hello_row] = beta.inbox()
    beta.mail("reply", str(hello_row["uid"]), stdin="Got it.\n")
    reply = received(alpha, "Re: Hello")
    assert "dmarc=pass" in our_results(reply, "mx.alpha.test")

    # One message to a mistyped address and to the postmaster nobody made an alias for
    # (RFC 5321 §4.5.1: every domain has one; Bob, beta.test's admin, reads it).
    alpha.mail("send", "--to", "bobb@beta.test,postmaster@beta.test", "--subject", "Typo")
    received(beta, "Typo")
    bounce = email.message_from_bytes(received(alpha, "Undelivered Mail Returned to Sender"))
    status = bounce.get_payload()[1].get_payload()[1]
    assert status["Final-Recipient"] == "rfc822; bobb@beta.test"
    assert status["Status"] == "5.1.1"

    # beta.test is down: the message waits in alpha.test's queue until the operator flushes it.
    beta.stop()
    alpha.mail("send", "--to", "bob@beta.test", "--subject", "Queued", stdin="Later.\n")

    def deferred() -> dict[str, Any] | None:
        queued = json.loads(run(alpha.dir, "queue", "list", "--json"))
        if queued and queued[0]["recipients"][0]["attempts"] >= 1:
            return queued[0]  # type: ignore[no-any-return]
        return None

    waiting = wait_for(deferred, "a failed attempt")
    assert waiting["recipients"][0]["state"] == "deferred"
    assert "Subject: Queued" in run(alpha.dir, "queue", "show", str(waiting["id"]))
    beta.serve()
    beta.started()
    assert run(alpha.dir, "queue", "flush") == "retrying 1 message (the running server woken)\n"
    received(beta, "Queued")  # long before the 120 s retry
    wait_for(lambda: json.loads(run(alpha.dir, "queue", "list", "--json")) == [], "empty queue")

    # A backup taken while serving, restored on a new machine (another directory).
    backup = tmp_path / "backup"
    assert "backed up" in run(alpha.dir, "backup", str(backup))
    restored = tmp_path / "restored"
    restored.mkdir()
    run(restored, "restore", str(backup))
    assert "sales@alpha.test -> alice@alpha.test\n" in run(restored, "alias", "list")
    exported = restored / "alice.mbox"
    run(
        restored,
        "export",
        "--account",
        "alice@alpha.test",
        "--mailbox",
        "INBOX",
        "--mbox",
        str(exported),
    )
    subjects = re.findall(rb"^Subject: (.*)$", exported.read_bytes(), flags=re.M)
    assert {b"Re: Hello", b"Undelivered Mail Returned to Sender"} <= set(subjects)
    for site in (alpha, beta):
        site.stop()
