"""DNSSEC of the hosted zones, validated by BIND's ``delv`` against the live server's
authoritative DNS, with the DS that ``pillarbox dns records`` prints as the trust anchor: what a
registrar's parent zone would vouch for. Positive answers (MX, A, TXT, the MX host's TLSA),
both kinds of denial (and, asked by dig, the NXDOMAIN a Compact Answers OK query gets), and
the failures a validator must catch (a key other than the one the DS names, signatures past
their expiry). Skipped where ``delv`` (bind9-dnsutils) is missing.

And a key rollover run as an operator would (``pillarbox dns rollover``, ``--status``,
``--finish``), with a parent zone (dnslib's server, a peer's code) publishing the DS set the
registrar would at each step, ``delv`` validating MX and A answers at every step from every DS
set a parent could then be showing: the old DS, both, only the new one. The waits a rollover
has (the DNSKEY TTL before the new DS may go to the parent, the days a retired key stays) are
passed by moving the keys' times back in the store, as the hours would; the zones' 30-second
cache is waited out for real.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib.server import DNSServer
from dnslib.zoneresolver import ZoneResolver

from pillarbox import config as cfg
from pillarbox.dns.authoritative import DEFAULT_SOA, StaticZone, StaticZones, serve_zones
from pillarbox.dns.records import DnsRecord
from pillarbox.dns.signing import SigningPolicy, ZoneKey, ZoneSigner, new_key_pem
from pillarbox.testing.command import run_pillarbox
from pillarbox.testing.dnszone import dnslib_servers
from pillarbox.testing.live import LiveServer, free_port, loopback_config, serving_dns
from pillarbox.testing.polling import wait_for
from pillarbox.testing.rollover import backdate_key, printed_ds
from pillarbox.testing.testca import make_ca

pytestmark = pytest.mark.skipif(
    shutil.which("delv") is None or shutil.which("dig") is None,
    reason="delv/dig not installed (apt-get install bind9-dnsutils)",
)

DOMAIN = "pillarbox.test"
HOST = f"mail.{DOMAIN}"
ADDRESS = "192.0.2.25"


def delv(port: int, anchor: Path, zone: str, name: str, rtype: str) -> str:
    """delv's report (stdout and stderr) on ``name``/``rtype``, validated from ``zone``'s
    trust anchor down, asking our server alone."""
    done = subprocess.run(
        ["delv", "@127.0.0.1", "-p", str(port), "-a", str(anchor), f"+root={zone}", name, rtype],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout + done.stderr


def dig(port: int, name: str, rtype: str) -> list[list[str]]:
    """The answer records of a DO query, each split into fields."""
    done = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(port), "+dnssec", "+noall", "+answer", name, rtype],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [line.split() for line in done.stdout.splitlines() if line.strip()]


def dig_header(port: int, name: str, rtype: str, *options: str) -> tuple[str, str]:
    """The status and the EDNS flags dig reports for a DO query with ``options``."""
    done = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(port), "+dnssec", *options, name, rtype],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    status = done.stdout.split("status: ", 1)[1].split(",", 1)[0]
    flags = done.stdout.split("; EDNS: version: 0, flags:", 1)[1].split(";", 1)[0].strip()
    return status, flags


def anchor_file(path: Path, *ds_lines: str) -> Path:
    """A delv trust anchor from DS records in zone-file form (``name ttl IN DS tag alg
    type digest``): what the parent zone publishes once the registrar has them."""
    anchors = []
    for line in ds_lines:
        name, _ttl, _class, _type, tag, algorithm, digest_type, *digest = line.split()
        anchors.append(f'{name} static-ds {tag} {algorithm} {digest_type} "{"".join(digest)}";')
    path.write_text(f"trust-anchors {{ {' '.join(anchors)} }};\n")
    return path


def signed_config(tmp_path: Path, dns_port: int) -> cfg.Config:
    cert, key = make_ca(tmp_path).issue(HOST)
    base = loopback_config(tmp_path / "data", only=("smtp",))
    named = dataclasses.replace(
        base,
        server=dataclasses.replace(base.server, hostname=HOST),
        # A configured certificate keeps its key: dns records offers its TLSA, the DNS serves it.
        tls=cfg.TlsSection(cert=str(cert), key=str(key)),
    )
    return serving_dns(named, dns_port, addresses=(ADDRESS,), dnssec=True)


def test_delv_validates_the_hosted_zone_from_the_ds_dns_records_prints(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    config = signed_config(tmp_path, port)
    (tmp_path / "pillarbox.toml").write_text(cfg.render_toml(config))
    added = run_pillarbox(tmp_path, "domain", "add", DOMAIN)
    assert added.returncode == 0, added.stderr
    # The operator asks for the records before the server ever ran: the key is made then,
    # and the server signs with that one (the store keeps the first key stored).
    shown = run_pillarbox(tmp_path, "dns", "records", DOMAIN)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    (ds_line,) = [line[1:].strip() for line in lines if "\tDS\t" in line]
    (tlsa_line,) = [line for line in lines if "\tTLSA\t" in line]
    anchor = anchor_file(tmp_path / "anchor.conf", ds_line)
    tag = ds_line.split()[4]

    with LiveServer(config):
        for name, rtype, expected in (
            (DOMAIN, "MX", f"10 {HOST}."),
            (HOST, "A", ADDRESS),
            (DOMAIN, "TXT", f'"v=spf1 ip4:{ADDRESS} -all"'),
            (f"_25._tcp.{HOST}", "TLSA", tlsa_line.split("\t")[-1].split()[0]),
        ):
            report = delv(port, anchor, DOMAIN, name, rtype)
            assert report.startswith("; fully validated"), (name, rtype, report)
            assert expected in report, (name, rtype, report)
            assert f"RRSIG\t{rtype} 13 " in report, report
        # The TLSA served is the one dns records offered, digest and all.
        report = delv(port, anchor, DOMAIN, f"_25._tcp.{HOST}", "TLSA")
        served = "".join(report.split("\tTLSA\t", 1)[1].splitlines()[0].split()[3:])
        assert served.lower() == tlsa_line.split()[-1].lower()

        # A name that does not exist, and one that exists without the type asked for: both
        # denials are proven, not just claimed.
        for name, rtype in ((f"nothing.{DOMAIN}", "A"), (HOST, "AAAA"), (DOMAIN, "TLSA")):
            report = delv(port, anchor, DOMAIN, name, rtype)
            assert "; negative response, fully validated" in report, (name, rtype, report)

        # Compact Answers OK (RFC 9824 §5.1), dig's +coflag: NXDOMAIN for the name that does
        # not exist, CO echoed; without it NOERROR (the denial delv validated above).
        nowhere = f"nothing.{DOMAIN}"
        assert dig_header(port, nowhere, "A", "+coflag") == ("NXDOMAIN", "do co")
        assert dig_header(port, nowhere, "A") == ("NOERROR", "do")
        assert dig_header(port, HOST, "AAAA", "+coflag") == ("NOERROR", "do co")

        # The shape a resolver sees: one CSK (257, ECDSAP256SHA256) whose tag the DS names,
        # signing the DNSKEY RRset and the data.
        keys = dig(port, DOMAIN, "DNSKEY")
        assert [r[4:7] for r in keys if r[3] == "DNSKEY"] == [["257", "3", "13"]]
        for rrsig in (r for r in keys + dig(port, DOMAIN, "MX") if r[3] == "RRSIG"):
            assert rrsig[5] == "13" and rrsig[10] == tag and rrsig[11] == f"{DOMAIN}.", rrsig

        # CDS and CDNSKEY (RFC 7344 §3, §4): the DS the registrar got, digest type 2, and the
        # key itself, validated from that DS as a parent that scans would check them.
        cds = [r[4:] for r in dig(port, DOMAIN, "CDS") if r[3] == "CDS"]
        assert [" ".join(r[:3]) + " " + "".join(r[3:]).lower() for r in cds] == [
            " ".join(ds_line.split()[4:]).lower()
        ]
        cdnskey = [r[4:7] for r in dig(port, DOMAIN, "CDNSKEY") if r[3] == "CDNSKEY"]
        assert cdnskey == [["257", "3", "13"]]
        for rtype in ("CDS", "CDNSKEY"):
            report = delv(port, anchor, DOMAIN, DOMAIN, rtype)
            assert report.startswith("; fully validated"), (rtype, report)
            assert f"RRSIG\t{rtype} 13 " in report, report

        # Under an anchor for another key (a key changed without its DS), nothing validates.
        other = ZoneKey(DOMAIN, new_key_pem()).ds_record(3600).zone_line()
        wrong = anchor_file(tmp_path / "wrong.conf", other)
        report = delv(port, wrong, DOMAIN, DOMAIN, "MX")
        assert "fully validated" not in report and "resolution failed" in report, report


def test_over_the_signing_budget_udp_gets_tc_and_tcp_a_validated_answer(tmp_path: Path) -> None:
    """``dnssec_signatures_per_second = 1``: a burst of new names over UDP alone mostly gets
    TC=1 with no records (never an unsigned answer); dig and delv, following TC to TCP as
    resolvers do, get each name's denial signed, and delv validates it."""
    port = free_port("127.0.0.1")
    config = signed_config(tmp_path, port)
    config = dataclasses.replace(
        config, dns=dataclasses.replace(config.dns, dnssec_signatures_per_second=1)
    )
    (tmp_path / "pillarbox.toml").write_text(cfg.render_toml(config))
    assert run_pillarbox(tmp_path, "domain", "add", DOMAIN).returncode == 0
    shown = run_pillarbox(tmp_path, "dns", "records", DOMAIN)
    (ds_line,) = [line[1:].strip() for line in shown.stdout.splitlines() if "\tDS\t" in line]
    anchor = anchor_file(tmp_path / "anchor.conf", ds_line)
    names = [f"flood{n}.{DOMAIN}" for n in range(5)]
    with LiveServer(config):
        # One dig, five queries over UDP only: at most two signatures' worth pass in the
        # milliseconds they take (the bucket's one and a second's refill).
        burst = subprocess.run(
            ["dig", "@127.0.0.1", "-p", str(port), "+dnssec", "+notcp", "+ignore"]
            + [arg for name in names for arg in (name, "A")],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        headers = [line for line in burst.splitlines() if line.startswith(";; flags:")]
        assert len(headers) == len(names), burst
        truncated = [h for h in headers if "tc" in h.split("flags:")[1].split(";")[0].split()]
        assert len(truncated) >= 3, burst
        assert all("AUTHORITY: 0," in h for h in truncated), burst
        # Those answered are signed: an RRSIG over the SOA and one over the NSEC each.
        signatures = [line for line in burst.splitlines() if "\tRRSIG\t" in line]
        assert len(signatures) == 2 * (len(names) - len(truncated)), burst
        for name in names:
            assert dig_header(port, name, "A") == ("NOERROR", "do"), name
            report = delv(port, anchor, DOMAIN, name, "A")
            assert "; negative response, fully validated" in report, (name, report)


async def test_delv_rejects_expired_signatures(tmp_path: Path) -> None:
    """Signatures made a month ago with a fortnight's validity have expired: the same zone
    and anchor that validate with a signer on today's clock fail."""
    key = ZoneKey("stale.test", new_key_pem())
    anchor = anchor_file(tmp_path / "anchor.conf", key.ds_record(3600).zone_line())
    records = [DnsRecord("stale.test", "MX", "10 mx.stale.test.", 300)]
    month_ago = time.time() - 30 * 86_400
    for clock, valid in ((time.time, True), (lambda: month_ago, False)):
        signer = ZoneSigner(key, SigningPolicy(), clock=clock)
        zones = StaticZones([StaticZone("stale.test", records, signer=signer)])
        async with serve_zones(zones) as server:
            report = await asyncio.to_thread(
                delv, server.port, anchor, "stale.test", "stale.test", "MX"
            )
        assert report.startswith("; fully validated") is valid, report
        if not valid:
            assert "resolution failed" in report, report


#: ``dns.zone_check_interval`` in the rollover test: how long a built zone is served, so
#: how long each step's change takes to show (30 s by default).
ZONE_CHECK = 3.0
#: The longest a change to the keys takes to be served: the zones' cache, and a margin.
ZONE_REBUILT = ZONE_CHECK + 15


class Parent:
    """The parent zone ``test``, publishing the DS records it is given (dnslib's server)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._servers: list[DNSServer] = []

    def publish(self, *ds_lines: str) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()  # stop() leaves the port bound until collected
        soa = "test. 60 IN SOA ns.test. hostmaster.test. 1 3600 900 1209600 60\n"
        zone = soa + "".join(line + "\n" for line in ds_lines)
        self._servers = dnslib_servers(ZoneResolver(zone), self.port)

    def close(self) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()


@pytest.fixture
def parent() -> Iterator[Parent]:
    served = Parent(free_port("127.0.0.1"))
    served.publish()
    yield served
    served.close()


def test_a_rollover_validates_at_every_step_from_every_ds_set(
    tmp_path: Path, parent: Parent
) -> None:
    port = free_port("127.0.0.1")
    config = signed_config(tmp_path, port)
    config = dataclasses.replace(
        config,
        dns=dataclasses.replace(
            config.dns, nameserver=f"127.0.0.1:{parent.port}", zone_check_interval=ZONE_CHECK
        ),
    )
    (tmp_path / "pillarbox.toml").write_text(cfg.render_toml(config))
    assert run_pillarbox(tmp_path, "domain", "add", DOMAIN).returncode == 0
    (old_ds,) = printed_ds(run_pillarbox(tmp_path, "dns", "records", DOMAIN).stdout)
    parent.publish(old_ds)

    def rollover(*options: str) -> subprocess.CompletedProcess[str]:
        return run_pillarbox(tmp_path, "dns", "rollover", DOMAIN, *options)

    def validated(anchors: dict[str, list[str]]) -> dict[str, bool]:
        """Per DS set, whether delv fully validates the MX and the mail host's A."""
        results = {}
        for name, lines in anchors.items():
            anchor = anchor_file(tmp_path / f"anchor-{name}.conf", *lines)
            reports = [delv(port, anchor, DOMAIN, n, t) for n, t in ((DOMAIN, "MX"), (HOST, "A"))]
            results[name] = all(r.startswith("; fully validated") for r in reports)
            if results[name]:
                assert f"10 {HOST}." in reports[0] and ADDRESS in reports[1], reports
        return results

    def signing_tags(rtype: str) -> list[str]:
        return sorted(r[10] for r in dig(port, DOMAIN, rtype) if r[3] == "RRSIG")

    def cds_tags() -> list[str]:
        """The key tags the CDS RRset asks the parent for."""
        return sorted(r[4] for r in dig(port, DOMAIN, "CDS") if r[3] == "CDS")

    def cds_validated(anchors: dict[str, list[str]]) -> dict[str, bool]:
        """Per DS set, whether delv fully validates the CDS RRset: what a scanning parent
        holding that set checks before it acts (RFC 7344 §4.1)."""
        return {
            name: delv(
                port, anchor_file(tmp_path / f"cds-{name}.conf", *lines), DOMAIN, DOMAIN, "CDS"
            ).startswith("; fully validated")
            for name, lines in anchors.items()
        }

    with LiveServer(config):
        old_tag = old_ds.split()[4]
        assert validated({"old": [old_ds]}) == {"old": True}
        assert signing_tags("MX") == [old_tag]
        assert cds_tags() == [old_tag]

        # Step 1: the next key is published; its DS is printed, with when to give it.
        started = rollover()
        assert started.returncode == 0, started.stderr
        assert "published" in started.stdout and "registrar from " in started.stdout
        shown_old, new_ds = printed_ds(started.stdout)
        assert shown_old == old_ds
        new_tag = new_ds.split()[4]
        wait_for(
            lambda: signing_tags("DNSKEY") == sorted([old_tag, new_tag]),
            "new DNSKEY",
            timeout=ZONE_REBUILT,
            interval=1,
        )
        assert signing_tags("MX") == [old_tag]  # the data: still the old key alone
        sets = {"old": [old_ds], "both": [old_ds, new_ds], "new": [new_ds]}
        assert validated(sets) == dict.fromkeys(sets, True)
        # The CDS keeps asking for the old DS alone until caches know the new key.
        assert cds_tags() == [old_tag]
        assert cds_validated(sets) == dict.fromkeys(sets, True)
        # Too early: refused, whatever the parent shows.
        parent.publish(old_ds, new_ds)
        early = rollover("--finish")
        assert early.returncode == 1 and "not finished (published)" in early.stderr

        # Step 2: the DNSKEY TTL has passed; --finish waits for the parent's new DS.
        backdate_key(tmp_path / "data", "published", DEFAULT_SOA.ttl + ZONE_CHECK)
        parent.publish(old_ds)
        status = rollover("--status")
        assert status.returncode == 0 and f"{DOMAIN}: ready" in status.stdout, status.stdout
        assert "CDS/CDNSKEY published, naming key(s)" in status.stdout, status.stdout
        # From now on the CDS asks for both: a parent that scans takes the new DS itself.
        both_tags = sorted([old_tag, new_tag])
        wait_for(lambda: cds_tags() == both_tags, "CDS of both", timeout=ZONE_REBUILT, interval=1)
        refused = rollover("--finish")
        assert refused.returncode == 1 and "not finished (ready)" in refused.stderr
        assert "--force finishes anyway" in refused.stderr
        # The registrar replaces the DS: the parent shows only the new one.
        parent.publish(new_ds)
        assert f"{DOMAIN}: submitted" in rollover("--status").stdout
        assert validated(sets) == dict.fromkeys(sets, True)

        # Step 3: the new key signs the data; the old one still signs the DNSKEY RRset.
        finished = rollover("--finish")
        assert finished.returncode == 0, finished.stderr
        assert f"{DOMAIN}: retired" in finished.stdout
        assert printed_ds(finished.stdout) == [new_ds]
        wait_for(
            lambda: signing_tags("MX") == [new_tag],
            "data signed by the new key",
            timeout=ZONE_REBUILT,
            interval=1,
        )
        # (delv first: a validator holding the old DS alone is what the old key's signature
        # over the DNSKEY RRset is kept for.)
        assert validated(sets) == dict.fromkeys(sets, True)
        assert signing_tags("DNSKEY") == sorted([old_tag, new_tag])
        assert printed_ds(run_pillarbox(tmp_path, "dns", "records", DOMAIN).stdout) == [new_ds]
        # The CDS asks for the new DS alone; a parent still holding the old one can check it.
        assert cds_tags() == [new_tag]
        assert cds_validated(sets) == dict.fromkeys(sets, True)

        # Step 4: past dns.dnssec_retire_seconds the old key goes (the server removes it).
        backdate_key(tmp_path / "data", "retired", config.dns.dnssec_retire_seconds)
        wait_for(
            lambda: signing_tags("DNSKEY") == [new_tag],
            "old key removed",
            timeout=ZONE_REBUILT,
            interval=1,
        )
        # The old DS alone no longer vouches (it left the parent a TTL ago); both or the new do.
        assert validated(sets) == {"old": False, "both": True, "new": True}
        done = rollover("--status")
        assert f"{DOMAIN}: signed" in done.stdout and f"key {new_tag}: active" in done.stdout
