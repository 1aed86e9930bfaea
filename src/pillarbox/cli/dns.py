"""``pillarbox dns records|check DOMAIN`` and ``pillarbox dkim list|rotate DOMAIN``.

``dns records`` prints what a hosted domain needs as a zone-file fragment, with the domain's
real DKIM public keys; ``dns check`` looks each record up (with ``[dns]``'s resolver) and says
what is missing or wrong, exiting 1 unless everything is in place, so scripts can wait on it.
It also checks the addresses the records ask other providers to mail their reports to (the
``rua=`` of DMARC and TLS-RPT): without an account or alias there, every report is refused.

Both also handle the MX host's DANE TLSA record (docs/dane.md): ``records`` offers it only for
a certificate whose key stays (a configured one, or ACME with ``tls.acme_reuse_key``), saying
why otherwise; ``check`` compares a published one with the certificate served.

With ``[dns] authoritative_enabled``, ``records`` ends with the NS records the registrar
lists (``dns.nameservers``) and, when secondaries may transfer the zone, what to set on them:
the primary's address, the TSIG key's name and where its secret is, who gets NOTIFY.

With ``[dns] dnssec``, ``records`` also prints the zone's DNSKEY RRset and the DS records the
registrar publishes (making the zone's key if the server has not yet); when our authoritative
server serves the zone, ``check`` compares the DS at the parent with the zone's keys (or,
unsigned, warns of any DS there). ``dns rollover`` replaces the zone's key by a new one, step
by step (:mod:`pillarbox.dns.rollover`; docs/dane.md). Both say which DS set the zone's CDS
and CDNSKEY RRsets ask a scanning parent for (:mod:`pillarbox.dns.cds`).
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from pillarbox import provisioning
from pillarbox.config import Config
from pillarbox.dns.cds import parent_signal
from pillarbox.dns.check import (
    Finding,
    FindingStatus,
    check_ds,
    check_records,
    check_tlsa,
    format_findings,
    parent_ds,
)
from pillarbox.dns.hosted import hosted_records, record_policy, rollover_timing
from pillarbox.dns.records import DnsRecord, DomainRecords
from pillarbox.dns.resolver import DnsResolver, DnsTemporaryError
from pillarbox.dns.rollover import (
    KeyRing,
    RolloverRefused,
    RolloverStatus,
    finish_rollover,
    rollover_status,
    start_rollover,
)
from pillarbox.dns.securerecords import (
    SecureRecords,
    config_key_ring,
    secure_records,
    zone_text,
)
from pillarbox.errors import NotFound, UserError
from pillarbox.mail.address import parse_address
from pillarbox.net.acmefiles import served_certificate
from pillarbox.queue.routing import Router
from pillarbox.store.interface import Store

if TYPE_CHECKING:
    from pillarbox.cli.main import CliState


async def _records(
    store: Store, config: Config, name: str, extra_addresses: tuple[str, ...]
) -> DomainRecords:
    domain = provisioning.normalise_domain(name)
    if await store.get_domain(domain) is None:
        raise NotFound(f"no such domain: {domain}")
    return await hosted_records(
        store,
        domain,
        mail_host=config.server.hostname,
        addresses=(*config.dns.addresses, *extra_addresses),
        now=datetime.now(UTC),
        policy=record_policy(config),
    )


async def _report_mailboxes(store: Store, config: Config, name: str) -> list[Finding]:
    """One finding per report address the domain's records publish (see the module notes)."""
    domain = provisioning.normalise_domain(name)
    policy = record_policy(config)
    router = Router(store)
    findings = []
    for local, purpose in (
        (policy.dmarc_reports, "DMARC aggregate reports, rua= of _dmarc"),
        (policy.tls_reports, "TLS reports, rua= of _smtp._tls"),
    ):
        if not local:
            continue
        address = f"{local}@{domain}"
        known = not (await router.resolve(parse_address(address))).unknown
        findings.append(
            Finding(
                address,
                "mailbox",
                purpose,
                FindingStatus.OK if known else FindingStatus.MISSING,
                ("an account or an alias",),
                (),
                "" if known else f"pillarbox alias add {address} ACCOUNT",
            )
        )
    return findings


def _delegation(
    config: Config, records: DomainRecords, extra_addresses: tuple[str, ...]
) -> list[str]:
    """With our authoritative server: the NS records the registrar lists, and what each
    secondary name server is to be told (docs/dns.md has its configuration)."""
    section = config.dns
    if not section.authoritative_enabled:
        return []
    ttl = records.records[0].ttl
    domain = records.domain
    lines = ["; name servers: the registrar's NS records for the domain (dns.nameservers)"]
    for name in section.nameservers or (config.server.hostname,):
        lines.append(DnsRecord(domain, "NS", name.rstrip(".") + ".", ttl).zone_line())
    if not section.transfer_allowed:
        lines.append("; secondaries: none may transfer the zone (dns.transfer_allowed)")
        return lines
    primary = _primary_address(config, extra_addresses)
    lines.append(
        f"; secondaries transfer {domain} from {primary} port {section.authoritative_port}"
        " (AXFR over TCP)"
    )
    lines.append(f";   allowed from: {', '.join(section.transfer_allowed)}")
    if section.transfer_tsig_key:
        lines.append(
            f";   TSIG key {section.transfer_tsig_key} (hmac-sha256), secret in "
            f"{config.resolve_path(section.transfer_tsig_secret_file)}"
        )
    if section.notify:
        lines.append(f";   NOTIFY sent to: {', '.join(section.notify)}")
    if section.catalog_zone:
        lines.append(
            f";   listed in the catalog zone {section.catalog_zone} (RFC 9432): a secondary "
            "set up with it serves this domain with no change of its own"
        )
    return lines


def _primary_address(config: Config, extra_addresses: tuple[str, ...]) -> str:
    """The address a secondary transfers from: ``dns.authoritative_address``, or for a
    wildcard (``0.0.0.0``, ``::``) this host's public addresses, which a secondary can reach."""
    served = config.dns.authoritative_address
    try:
        wildcard = ipaddress.ip_address(served).is_unspecified
    except ValueError:
        return served  # a host name
    if not wildcard:
        return served
    public = (*config.dns.addresses, *extra_addresses)
    return " or ".join(public) if public else "this host's public address (dns.addresses)"


_ADDRESS_OPTION = click.option(
    "--address",
    "addresses",
    multiple=True,
    help="A public IP of this host (repeatable; adds to dns.addresses).",
)


@click.group()
def dns() -> None:
    """DNS records of hosted domains."""


@dns.command("records")
@click.argument("domain")
@_ADDRESS_OPTION
@click.pass_obj
def dns_records(state: CliState, domain: str, addresses: tuple[str, ...]) -> None:
    """Print the records DOMAIN needs, as a zone-file fragment (with the DS for the registrar
    when dns.dnssec signs the zone)."""
    from pillarbox.cli.main import run_store

    config = state.load()

    async def from_store(store: Store) -> tuple[DomainRecords, SecureRecords]:
        records = await _records(store, config, domain, addresses)
        ttl = records.records[0].ttl
        return records, await secure_records(store, config, records.domain, ttl)

    records, secure = run_store(config, from_store)
    click.echo(zone_text(records, secure), nl=False)
    for line in _delegation(config, records, addresses):
        click.echo(line)
    click.echo(f"; MTA-STS policy, to serve at {records.mta_sts_url}:")
    for line in records.mta_sts_policy.splitlines():
        click.echo(f";   {line}")


@dns.command("check")
@click.argument("domain")
@_ADDRESS_OPTION
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def dns_check(state: CliState, domain: str, addresses: tuple[str, ...], as_json: bool) -> None:
    """Look up DOMAIN's records and report what is missing or wrong (exit 1 if anything is)."""
    from pillarbox.cli.main import emit, run_store

    config = state.load()

    async def from_store(store: Store) -> tuple[DomainRecords, list[Finding], list[DnsRecord]]:
        records = await _records(store, config, domain, addresses)
        ring = await config_key_ring(store, config, domain)
        ttl = records.records[0].ttl
        ds = [] if ring is None else [k.key.ds_record(ttl) for k in ring.keys]
        return records, await _report_mailboxes(store, config, domain), ds

    records, mailboxes, ds = run_store(config, from_store)
    resolver = DnsResolver(
        nameserver=config.dns.nameserver,
        timeout=config.dns.timeout,
        trust_ad=config.dns.trust_ad,  # the TLSA finding asks whether DNSSEC authenticates it
    )
    der, unstable = served_certificate(config)

    async def look_up() -> list[Finding]:
        findings = await check_records(resolver, records.records)
        if der is not None:
            tlsa = await check_tlsa(resolver, config.server.hostname, der, unstable)
            findings += [tlsa] if tlsa is not None else []
        if config.dns.authoritative_enabled:  # a zone served elsewhere is signed (or not) there
            delegation = await check_ds(resolver, records.domain, ds)
            findings += [delegation] if delegation is not None else []
        return findings

    findings = asyncio.run(look_up()) + mailboxes
    data = [asdict(f) | {"status": f.status.value} for f in findings]
    emit(data, as_json, format_findings(findings).splitlines())
    if any(f.status is not FindingStatus.OK for f in findings):
        raise click.exceptions.Exit(1)


@dns.command("rollover")
@click.argument("domain")
@click.option("--status", "show", is_flag=True, help="Say where the rollover stands.")
@click.option(
    "--finish", is_flag=True, help="Sign with the new key (once the parent shows its DS)."
)
@click.option(
    "--force",
    is_flag=True,
    help="Finish without the parent's DS, or replace a stored key that does not load.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def dns_rollover(
    state: CliState, domain: str, show: bool, finish: bool, force: bool, as_json: bool
) -> None:
    """Replace DOMAIN's DNSSEC key: publish a new key beside the old one and print its DS for
    the registrar; --status says what to do next, --finish moves the signing to the new key
    once the parent shows its DS (docs/dane.md)."""
    from pillarbox.cli.main import emit, run_store

    if show and finish:
        raise click.UsageError("--status and --finish are two steps: give one")
    config = state.load()
    if not config.dns.dnssec:
        raise UserError("dns.dnssec is off: the zones are not signed, there is no key to roll")
    name = provisioning.normalise_domain(domain)
    timing = rollover_timing(config)
    resolver = DnsResolver(nameserver=config.dns.nameserver, timeout=config.dns.timeout)

    async def status_of(ring: KeyRing) -> RolloverStatus:
        try:
            parent: tuple[str, ...] | None = await parent_ds(resolver, name)
        except DnsTemporaryError:
            parent = None
        return rollover_status(ring, timing, datetime.now(UTC), parent)

    async def act(store: Store) -> tuple[KeyRing, RolloverStatus]:
        if await store.get_domain(name) is None:
            raise NotFound(f"no such domain: {name}")
        ring = await config_key_ring(store, config, name)
        assert ring is not None  # dns.dnssec is on
        if finish:
            await finish_rollover(
                store, await status_of(ring), name, datetime.now(UTC), force=force
            )
            ring = await config_key_ring(store, config, name)
        elif not show:
            ring = await start_rollover(store, ring, datetime.now(UTC), force=force)
        assert ring is not None
        return ring, await status_of(ring)

    try:
        ring, status = run_store(config, act)
    except RolloverRefused as exc:
        click.echo(f"pillarbox: {exc}", err=True)
        raise click.exceptions.Exit(1) from None
    now = datetime.now(UTC)
    ttl = timing.dnskey_ttl
    parent_should = ring.parent_ds(timing, now, ttl)
    signal = parent_signal(ring, timing, now, config.dns.dnssec_cds)
    published = [] if signal is None else signal.records(name, ttl)
    data = {
        "domain": name,
        "step": status.step.value,
        "may_finish": status.may_finish,
        "keys": [
            {"tag": k.key.key_tag, "state": k.state.value, "since": k.stored.changed.isoformat()}
            for k in ring.keys
        ],
        "ds": [asdict(record) for record in parent_should],
        "cds": [asdict(record) for record in published],
        "advice": list(status.advice),
    }
    lines = [f"{name}: {status.step.value}"]
    lines += [
        f"  key {k.key.key_tag}: {k.state.value} since {k.stored.changed:%Y-%m-%d %H:%M} UTC"
        for k in ring.keys
    ]
    lines += [f"- {line}" for line in status.advice]
    lines.append("DS records for the parent zone (the registrar), as each says:")
    for record in parent_should:
        lines += [f"  ; {record.purpose}", f"  {record.zone_line()}"]
    if signal is None:
        lines.append("no CDS/CDNSKEY published (dns.dnssec_cds = 'off'): the registrar only")
    else:
        lines.append(signal.note())
        lines += [f"  {record.zone_line()}" for record in published]
    emit(data, as_json, lines)


@click.group()
def dkim() -> None:
    """DKIM signing keys of hosted domains."""


@dkim.command("list")
@click.argument("domain")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def dkim_list(state: CliState, domain: str, as_json: bool) -> None:
    """List DOMAIN's keys, active and retired."""
    from pillarbox.cli.main import emit, run_store

    name = provisioning.normalise_domain(domain)
    keys = run_store(state.load(), lambda s: s.list_dkim_keys(name, include_retired=True))
    data = [
        {
            "selector": k.selector,
            "algorithm": k.algorithm,
            "created": k.created.isoformat(),
            "retired": k.retired.isoformat() if k.retired else None,
        }
        for k in keys
    ]
    lines = [
        f"{k.selector:<14} {k.algorithm:<15} "
        + (f"retired {k.retired:%Y-%m-%d}" if k.retired else "active")
        for k in keys
    ]
    emit(data, as_json, lines or ["(no keys)"])


@dkim.command("rotate")
@click.argument("domain")
@click.pass_obj
def dkim_rotate(state: CliState, domain: str) -> None:
    """New RSA and Ed25519 keys for DOMAIN; the old ones stop signing.

    Publish the new records (``pillarbox dns records``) at once: mail is signed with the new
    keys from now on. The retired keys stay in ``dns records`` for a week.
    """
    from pillarbox.cli.main import run_store

    added, retired = run_store(state.load(), lambda s: provisioning.rotate_dkim(s, domain))
    for key in added:
        click.echo(f"new key {key.selector} ({key.algorithm})")
    if retired:
        click.echo(f"retired {', '.join(retired)}")
