"""A real secondary name server fed by zone transfers from the live server: Knot DNS
(``knotd``, run unprivileged-style on loopback with its own config and storage) transfers a
hosted zone over TSIG (RFC 5936, RFC 8945) and answers ``dig`` with our records; a change in
the store moves the SOA serial, our NOTIFY (RFC 1996) reaches Knot, and Knot serves the new
data within seconds (its own SOA refresh is an hour away). Primary and secondary each have an
address of their own, as on two hosts: Knot transfers from its address, and heeds NOTIFY only
from ours (RFC 1996 §3.10), which the kernel would not pick as the source on loopback.
``dig axfr`` without the key, with the wrong one, or from an address not allowed is refused.
BIND 9 (``named``), set up with docs/dns.md's zone statement, does the same: it signs the SOA
query it makes before each transfer, and takes only a signed answer. Skipped where Knot DNS
(Debian ``knot``), BIND (``bind9``) or dig is missing.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox import provisioning
from pillarbox.testing.command import run_pillarbox
from pillarbox.testing.live import LiveServer, free_port, loopback_config

KNOTD = shutil.which("knotd", path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin")
NAMED = shutil.which("named", path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin")

pytestmark = pytest.mark.skipif(
    shutil.which("dig") is None, reason="dig not installed (apt-get install bind9-dnsutils)"
)
needs_knot = pytest.mark.skipif(KNOTD is None, reason="knotd not installed (apt-get install knot)")
needs_bind = pytest.mark.skipif(NAMED is None, reason="named not installed (apt-get install bind9)")

DOMAIN = "pillarbox.test"
HOST = f"mail.{DOMAIN}"
ADDRESS = "192.0.2.25"
KEY_NAME = "xfr.pillarbox.test"
SECRET = base64.b64encode(bytes(range(100, 132))).decode()
#: Our server's address and the secondary's: neither is 127.0.0.1, loopback's usual source.
PRIMARY = "127.0.0.2"
SECONDARY = "127.0.0.3"

#: A DNS server's address and port.
Server = tuple[str, int]


def dig(server: Server, *args: str, source: str = SECONDARY) -> str:
    address, port = server
    done = subprocess.run(
        ["dig", f"@{address}", "-p", str(port), "-b", source, "+tries=1", "+time=5", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout + done.stderr


def answers(server: Server, name: str, rtype: str) -> list[str]:
    """The rdata of each answer record (dig +short)."""
    return dig(server, "+short", name, rtype).split("\n")[:-1]


def serial(server: Server) -> int:
    (soa,) = answers(server, DOMAIN, "SOA")
    return int(soa.split()[2])


def wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.2)


def knot_config(
    root: Path, port: int, primary: int, *, key: bool = True, catalog: str = ""
) -> Path:
    """A Knot secondary for the domain on :data:`SECONDARY`:``port``, transferring from ours
    (from its own address, ``via``, as from another host); with ``catalog``, for that catalog
    zone instead (RFC 9432), each member zone it lists set up as the domain's would be."""
    for name in ("run", "storage", "zones"):
        (root / name).mkdir(parents=True, exist_ok=True)
    signed = f"    key: {KEY_NAME}\n" if key else ""
    # Every zone, a catalog's members too, takes the default template's primary and ACL.
    zone = DOMAIN
    if catalog:
        zone = f"{catalog}\n    catalog-role: interpret\n    catalog-template: default"
    text = f"""\
server:
    rundir: "{root / "run"}"
    listen: {SECONDARY}@{port}
log:
  - target: stderr
    any: info
database:
    storage: "{root / "storage"}"
key:
  - id: {KEY_NAME}
    algorithm: hmac-sha256
    secret: {SECRET}
remote:
  - id: pillarbox
    address: {PRIMARY}@{primary}
    via: {SECONDARY}
{signed}acl:
  - id: notify-from-pillarbox
    address: {PRIMARY}
{signed}    action: notify
template:
  - id: default
    storage: "{root / "zones"}"
    zonefile-sync: -1
    zonefile-load: none
    journal-content: none
    master: pillarbox
    acl: notify-from-pillarbox
zone:
  - domain: {zone}
"""
    path = root / "knot.conf"
    path.write_text(text)
    return path


def named_config(root: Path, port: int, primary: int, *, catalog: str = "") -> Path:
    """BIND on 127.0.0.1:``port`` (BIND listens only on an interface's address), the zone
    statement as docs/dns.md gives it; with ``catalog``, that catalog zone's instead."""
    (root / "secondary").mkdir(parents=True, exist_ok=True)
    source = f'{PRIMARY} port {primary} key "{KEY_NAME}"'
    zone, members = DOMAIN, ""
    if catalog:
        zone = catalog
        members = f"""\
    catalog-zones {{
        zone "{catalog}" default-primaries {{ {source}; }} min-update-interval 1;
    }};
"""
    text = f"""\
options {{
    directory "{root}";
    pid-file "{root / "named.pid"}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    notify no;
{members}}};
controls {{ }};
key "{KEY_NAME}" {{ algorithm hmac-sha256; secret "{SECRET}"; }};
zone "{zone}" {{
    type secondary;
    primaries {{ {source}; }};
    file "secondary/{zone}.db";
}};
"""
    path = root / "named.conf"
    path.write_text(text)
    return path


#: Starts a secondary on the port given, transferring from our server on the other.
Secondary = Callable[[int, int], subprocess.Popen[str]]


@pytest.fixture
def secondary(tmp_path: Path) -> Iterator[Callable[..., Secondary]]:
    """``secondary("knot")`` or ``secondary("bind")``: a starter of that secondary (its config
    from :func:`knot_config` or :func:`named_config`; ``catalog=``: the catalog zone it
    serves the members of); each stopped at the end of the test."""
    started: list[subprocess.Popen[str]] = []

    def starter(kind: str, catalog: str = "") -> Secondary:
        def start(port: int, primary: int) -> subprocess.Popen[str]:
            if kind == "knot":
                assert KNOTD is not None
                conf = knot_config(tmp_path / "knot", port, primary, catalog=catalog)
                command = [KNOTD, "-c", str(conf)]
            else:
                assert NAMED is not None
                conf = named_config(tmp_path / "bind", port, primary, catalog=catalog)
                command = [NAMED, "-g", "-c", str(conf)]
            process = subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=(tmp_path / f"{kind}.log").open("w"),
                text=True,
            )
            started.append(process)
            return process

        return start

    yield starter
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def primary_config(
    tmp_path: Path, dns_port: int, secondary_port: int, secondary: str = SECONDARY
) -> cfg.Config:
    (tmp_path / "xfr.secret").write_text(SECRET + "\n")
    base = loopback_config(tmp_path / "data", only=("smtp",))
    config = dataclasses.replace(
        base,
        server=dataclasses.replace(base.server, hostname=HOST),
        dns=dataclasses.replace(
            base.dns,
            addresses=(ADDRESS,),
            authoritative_enabled=True,
            authoritative_address=PRIMARY,
            authoritative_port=dns_port,
            nameservers=(HOST, "ns2.secondary.test"),
            transfer_allowed=(f"{secondary}/32",),
            transfer_tsig_key=KEY_NAME,
            transfer_tsig_secret_file="xfr.secret",
            notify=(f"{secondary}:{secondary_port}",),
            notify_retry_interval=1.0,
            zone_check_interval=0.5,
        ),
    )
    return dataclasses.replace(config, source=tmp_path / "pillarbox.toml")


@pytest.mark.parametrize(
    ("kind", "address"),
    [
        pytest.param("knot", SECONDARY, marks=needs_knot),
        pytest.param("bind", "127.0.0.1", marks=needs_bind),
    ],
)
def test_a_secondary_transfers_the_zone_and_follows_changes_by_notify(
    tmp_path: Path,
    secondary: Callable[..., Secondary],
    caplog: pytest.LogCaptureFixture,
    kind: str,
    address: str,
) -> None:
    caplog.set_level(logging.INFO, logger="pillarbox.dns")
    dns_port = free_port(PRIMARY)
    their_port = free_port(address)
    start = secondary(kind)
    config = primary_config(tmp_path, dns_port, their_port, address)
    ours_at, theirs_at = (PRIMARY, dns_port), (address, their_port)
    with LiveServer(config) as server:
        server.add_domain(DOMAIN)
        ours = serial(ours_at)
        assert ours > 1_700_000_000  # Unix time (dns/serial.py), no longer the fixed 1
        start(their_port, dns_port)
        # The secondary transfers at start (TSIG-signed AXFR or IXFR), then answers with our
        # data.
        wait_for(
            lambda: answers(theirs_at, DOMAIN, "MX") == [f"10 {HOST}."], 30, "the secondary's MX"
        )
        assert serial(theirs_at) == ours
        assert answers(theirs_at, HOST, "A") == [ADDRESS]
        assert sorted(answers(theirs_at, DOMAIN, "NS")) == [f"{HOST}.", "ns2.secondary.test."]
        spf = answers(theirs_at, DOMAIN, "TXT")
        assert spf == [f'"v=spf1 ip4:{ADDRESS} -all"']
        assert "AA" in dig(theirs_at, "+norec", DOMAIN, "MX").upper().split("FLAGS:")[1][:20]

        # A change in the store: new DKIM keys, new records. Our zone check notices it,
        # moves the serial and sends NOTIFY; the secondary transfers again at once (its own refresh
        # timer, the SOA's hour, is far away).
        added, _ = server.call(provisioning.rotate_dkim(server.store, DOMAIN))
        selector = added[0].selector
        dkim_name = f"{selector}._domainkey.{DOMAIN}"
        wait_for(
            lambda: answers(theirs_at, dkim_name, "TXT") != [], 20, "the secondary's new DKIM key"
        )
        newer = serial(ours_at)
        assert newer > ours
        # The rotation is several writes, each zone check may see some: the secondary follows each
        # serial, and ends at ours.
        wait_for(lambda: serial(theirs_at) == serial(ours_at), 20, "the secondary at our serial")
        notify = [r for r in caplog.records if r.name == "pillarbox.dns.notify"]
        assert notify and {r.getMessage() for r in notify} == {"notify answered"}
        # Each NOTIFY carried the new SOA (RFC 1996 §3.7): the secondary read its serial
        # from it, where without it Knot logs "serial none" and BIND "no serial".
        log_path = tmp_path / f"{kind}.log"
        last = f"serial {serial(ours_at)}"
        wait_for(lambda: last in log_path.read_text(), 10, "the secondary's log of our NOTIFY")
        notices = [line for line in log_path.read_text().splitlines() if "notify" in line]
        assert not [line for line in notices if "serial none" in line or "no serial" in line]
        # Unchanged content keeps its serial: no NOTIFY and no transfer for nothing.
        settled = serial(ours_at)
        time.sleep(2.5)  # five zone checks
        assert serial(ours_at) == settled == serial(theirs_at)
        assert len([r for r in caplog.records if r.name == "pillarbox.dns.notify"]) == len(notify)


CATALOG = "catalog.invalid"
LATER = "later.test"


@pytest.mark.parametrize(
    ("kind", "address"),
    [
        pytest.param("knot", SECONDARY, marks=needs_knot),
        pytest.param("bind", "127.0.0.1", marks=needs_bind),
    ],
)
def test_a_catalog_zone_provisions_the_hosted_domains_on_the_secondary(
    tmp_path: Path, secondary: Callable[..., Secondary], kind: str, address: str
) -> None:
    """A secondary set up with our catalog zone alone (RFC 9432, ``dns.catalog_zone``) serves
    each hosted domain, one added while it runs included (the catalog's NOTIFY, then the
    member's transfer), and stops serving a removed one: nothing changes on the secondary."""
    dns_port = free_port(PRIMARY)
    their_port = free_port(address)
    base = primary_config(tmp_path, dns_port, their_port, address)
    config = dataclasses.replace(base, dns=dataclasses.replace(base.dns, catalog_zone=CATALOG))
    theirs_at = (address, their_port)
    with LiveServer(config) as server:
        server.add_domain(DOMAIN)
        secondary(kind, catalog=CATALOG)(their_port, dns_port)
        wait_for(
            lambda: answers(theirs_at, DOMAIN, "MX") == [f"10 {HOST}."], 30, "the first member"
        )
        server.add_domain(LATER)
        wait_for(lambda: answers(theirs_at, LATER, "MX") == [f"10 {HOST}."], 30, "the added member")
        assert answers(theirs_at, LATER, "TXT") == [f'"v=spf1 ip4:{ADDRESS} -all"']
        server.call(provisioning.remove_domain(server.store, DOMAIN))
        wait_for(
            lambda: "status: REFUSED" in dig(theirs_at, "+comments", DOMAIN, "SOA"),
            30,
            "the removed member gone",
        )
        assert answers(theirs_at, LATER, "MX") == [f"10 {HOST}."]


def test_dig_axfr_needs_the_key_and_an_allowed_address(tmp_path: Path) -> None:
    dns_port = free_port(PRIMARY)
    config = primary_config(tmp_path, dns_port, free_port(SECONDARY))
    ours_at = (PRIMARY, dns_port)
    signed = ("-y", f"hmac-sha256:{KEY_NAME}:{SECRET}")
    # What the operator is told to set up: the registrar's NS records, and the secondaries'.
    (tmp_path / "pillarbox.toml").write_text(cfg.render_toml(config))
    assert run_pillarbox(tmp_path, "domain", "add", DOMAIN).returncode == 0
    shown = run_pillarbox(tmp_path, "dns", "records", DOMAIN)
    assert shown.returncode == 0, shown.stderr
    assert f"{DOMAIN}.\t3600\tIN\tNS\t{HOST}.\n" in shown.stdout
    assert f"{DOMAIN}.\t3600\tIN\tNS\tns2.secondary.test.\n" in shown.stdout
    assert f"; secondaries transfer {DOMAIN} from {PRIMARY} port {dns_port}" in shown.stdout
    assert f";   TSIG key {KEY_NAME} (hmac-sha256), secret in {tmp_path / 'xfr.secret'}" in (
        shown.stdout
    )
    # Served on every address (docs/dns.md's example): the secondaries are told the public one.
    wildcard = {"PILLARBOX__DNS__AUTHORITATIVE_ADDRESS": "0.0.0.0"}
    shown = run_pillarbox(tmp_path, "dns", "records", DOMAIN, env_extra=wildcard)
    assert f"; secondaries transfer {DOMAIN} from {ADDRESS} port {dns_port}" in shown.stdout
    assert "catalog zone" not in shown.stdout
    catalog = {**wildcard, "PILLARBOX__DNS__CATALOG_ZONE": CATALOG}
    shown = run_pillarbox(tmp_path, "dns", "records", DOMAIN, env_extra=catalog)
    assert f";   listed in the catalog zone {CATALOG} (RFC 9432)" in shown.stdout
    with LiveServer(config):
        good = dig(ours_at, "+comments", DOMAIN, "AXFR", *signed)
        assert "status: NOERROR" in good
        assert "XFR size:" in good and f"IN\tMX\t10 {HOST}." in good
        # Without the key: REFUSED (RFC 5936 §5).
        unsigned = dig(ours_at, "+comments", DOMAIN, "AXFR")
        assert "status: REFUSED" in unsigned and "XFR size" not in unsigned
        # Another secret under the key's name: NOTAUTH, TSIG error BADSIG (RFC 8945 §5.2).
        other = base64.b64encode(b"z" * 32).decode()
        wrong = dig(ours_at, "+comments", DOMAIN, "AXFR", "-y", f"hmac-sha256:{KEY_NAME}:{other}")
        assert "BADSIG" in wrong and "XFR size" not in wrong
        # The right key from an address outside dns.transfer_allowed (the secondary's).
        elsewhere = dig(ours_at, "+comments", DOMAIN, "AXFR", *signed, source="127.0.0.1")
        assert "status: REFUSED" in elsewhere and "XFR size" not in elsewhere
        # The usual queries go on as before, from anywhere.
        assert answers(ours_at, DOMAIN, "MX") == [f"10 {HOST}."]
