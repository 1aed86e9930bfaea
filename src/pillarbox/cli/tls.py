"""``pillarbox tls status`` / ``pillarbox tls renew``: the certificate the listeners present,
and a renewal forced by hand.

``status`` reads this node's files and, with ACME, the CA account the store keeps (every node
of a store orders under one); with a shared certificate (PostgreSQL,
``acme_shared_certificate``) it also reads the store's certificate and renewal lease, the
cluster's state beside this node's copy (a node lagging behind the store, a lease left by a
crashed node, a back-off after failures). A store it cannot open (down, or its migration to
this version held off by a running server of an earlier one) leaves the store's part out,
saying why: the node's own part still shows, and the command succeeds.

``renew`` does not talk to the CA itself: the running server owns the challenge listener (port
80) and the TLS context to reload, so the command leaves a request in the data directory that
the server's renewal task takes up within seconds, and waits for its outcome.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from pillarbox.cli.received import received_command
from pillarbox.errors import StorageError, StoreInUse, UserError

if TYPE_CHECKING:
    from pillarbox.certificates import CertificateFacts
    from pillarbox.cli.main import CliState
    from pillarbox.config import Config
    from pillarbox.store.interface import Store
    from pillarbox.store.types import AcmeAccount, AcmeCertificate, AcmeLease


@click.group()
def tls() -> None:
    """The server's TLS certificate (self-signed, configured, or ACME)."""


@tls.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def tls_status(state: CliState, as_json: bool) -> None:
    """Show the certificate in use, its names and expiry, and the last ACME attempt."""
    from pillarbox.certificates import (
        acme_names,
        certificate_facts,
        certificate_scope,
        renewal_time,
    )
    from pillarbox.cli.main import emit
    from pillarbox.net.acmefiles import AcmeFiles, certificate_in_use
    from pillarbox.net.renewalinfo import stored_window
    from pillarbox.store.open import is_postgresql

    config = state.load()
    files = AcmeFiles.of(config)
    path, source = certificate_in_use(config)
    try:
        facts = certificate_facts(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise UserError(f"no certificate readable at {path}: {exc}") from None
    data: dict[str, Any] = {
        "source": source,
        "certificate": str(path),
        **_described(facts),
        "issuer": facts.issuer,
    }
    lines = [
        f"source       {source}",
        f"certificate  {path}",
        f"names        {', '.join(facts.names) or '(none)'}",
        *([f"addresses    {', '.join(facts.addresses)}"] if facts.addresses else []),
        f"serial       {data['serial']}",
        f"issuer       {facts.issuer}",
        f"valid until  {facts.not_after:%Y-%m-%d %H:%M} UTC ({data['days_left']} days left)",
    ]
    if config.tls.acme:
        wanted = acme_names(
            config.tls.acme_names,
            config.server.hostname,
            wildcards="dns-01" in config.tls.acme_challenges,
        )
        shared = config.tls.acme_shared_certificate and is_postgresql(config.store.url)
        data["acme"] = {
            "directory": config.tls.acme_directory,
            "names": list(wanted),
            "challenges": list(config.tls.acme_challenges),
            "shared": shared,
            "last_attempt": files.read_status(),
        }
        lines += [
            f"acme CA      {config.tls.acme_directory}",
            f"acme names   {', '.join(wanted)}",
            f"challenges   {', '.join(config.tls.acme_challenges)}",
            "shared       "
            + (
                "yes: one certificate for every node, kept in the store (this is its copy)"
                if shared
                else "no: this node's own"
            ),
        ]
        scope = certificate_scope(config.tls.acme_directory, wanted) if shared else None
        try:
            stored = _read_store(config, scope)
        except (StorageError, StoreInUse) as exc:  # StoreInUse: a migration held off
            data["acme"]["account"] = {"error": str(exc)}
            if shared:
                data["acme"]["store"] = {"error": str(exc)}
            lines += _unread_store(exc, shared=shared)
        else:
            data["acme"]["account"], more = _account_state(stored.account)
            lines += more
            if scope is not None:
                data["acme"]["store"], more = _store_state(
                    config, scope, stored, facts, source == "acme"
                )
                lines += more
        if source == "acme":
            info = files.read_renewal_info()
            window = stored_window(info, facts)
            due = renewal_time(facts, config.tls.acme_renew_days, window)
            by_window = window is not None and due == window.renew_at
            data["acme"]["renewal_due"] = due.isoformat()
            data["acme"]["renewal_due_by"] = "ari" if by_window else "lifetime"
            mine = info if info.get("certificate") == facts.ari_id else None
            data["acme"]["renewal_info"] = mine
            lines.append(
                f"renewal due  {due:%Y-%m-%d %H:%M} UTC "
                + (
                    "(a moment drawn in the CA's renewal window)"
                    if by_window
                    else f"({(facts.not_after - due).total_seconds() / 86400:.1f} days before "
                    "expiry: the lifetime rule)"
                )
            )
            lines += _renewal_info_lines(mine)
        lines.append("last attempt " + _attempt_line(files.read_status()))
    emit(data, as_json, lines)


def _renewal_info_lines(info: dict[str, Any] | None) -> list[str]:
    """What the CA's renewal information (RFC 9773) said of the certificate presented, as the
    renewal task last fetched it (``renewal-info.json``; None: not for this certificate)."""
    if info is None:
        return ["ari window   not fetched yet for this certificate"]
    checked = f"{info.get('checked')}, next {info.get('next_check')}"
    window = info.get("window")
    lines = []
    if isinstance(window, dict):
        source = info.get("url") or "an earlier fetch"
        lines.append(f"ari window   {window.get('start')} to {window.get('end')}, from {source}")
        if window.get("explanation_url"):
            lines.append(f"             explained at {window['explanation_url']}")
    if info.get("error"):
        lines.append(f"ari error    {info['error']} (checked {checked})")
    elif info.get("offered") is False:
        lines.append(f"ari window   none: the CA offers no renewal information (checked {checked})")
    else:
        lines.append(f"ari checked  {checked}")
    return lines


def _described(facts: CertificateFacts) -> dict[str, Any]:
    left = facts.not_after - datetime.datetime.now(datetime.UTC)
    return {
        "names": list(facts.names),
        "addresses": list(facts.addresses),
        "serial": f"{facts.serial:x}",
        "not_after": facts.not_after.isoformat(),
        "days_left": round(left.total_seconds() / 86400, 1),
    }


@dataclass(frozen=True, slots=True)
class _Stored:
    """What ``status`` reads from the store: the CA account; with a shared certificate, the
    store's certificate for this node's scope and its renewal lease."""

    account: AcmeAccount | None
    certificate: AcmeCertificate | None = None
    lease: AcmeLease | None = None


def _read_store(config: Config, scope: str | None) -> _Stored:
    """The store's part of the status, read in one opening of the store (``scope``: the shared
    certificate's, None when not shared). Raises what opening it raises: ``StoreInUse`` when
    this version's migration is held off by a server of an earlier one (docs/upgrading.md)."""
    from pillarbox.cli.main import run_store

    async def read(store: Store) -> _Stored:
        account = await store.acme_account(config.tls.acme_directory)
        if scope is None:
            return _Stored(account)
        return _Stored(account, await store.acme_certificate(scope), await store.acme_lease(scope))

    return run_store(config, read)


def _unread_store(exc: StorageError | StoreInUse, *, shared: bool) -> list[str]:
    """The lines saying what the store holds is not shown, and why: the rest of the status
    (this node's files) still shows."""
    what = "the account, the shared certificate and its lease" if shared else "the account"
    why = (
        "the store's schema is older than this pillarbox's, and a server running on it "
        "holds the migration off until every server is upgraded (docs/upgrading.md)"
        if isinstance(exc, StoreInUse)
        else "the store cannot be read now"
    )
    return [f"store        not read, so {what} not shown: {why}", f"             ({exc})"]


def _account_state(account: AcmeAccount | None) -> tuple[dict[str, Any] | None, list[str]]:
    """The CA account the store keeps for the configured directory (None: not made yet), as
    data and lines."""
    if account is None:
        return None, ["account      (none yet: the first attempt makes it)"]
    shown = account.url or "(its key is stored; not registered with the CA yet)"
    return {"url": account.url or None}, [f"account      {shown}"]


def _store_state(
    config: Config, scope: str, stored: _Stored, mine: CertificateFacts, mine_is_acme: bool
) -> tuple[dict[str, Any], list[str]]:
    """The store's certificate for this node's scope and its renewal lease, as data and
    lines."""
    from pillarbox.certificates import certificate_facts

    lease = stored.lease
    data: dict[str, Any] = {"scope": scope, "certificate": None, "lease": None}
    lines = []
    if stored.certificate is None:
        lines.append("store cert   (none yet)")
    else:
        try:
            facts = certificate_facts(stored.certificate.chain_pem)
        except ValueError as exc:
            data["certificate"] = {"error": str(exc)}
            lines.append(f"store cert   unreadable: {exc}")
        else:
            same = mine_is_acme and facts.serial == mine.serial
            data["certificate"] = {**_described(facts), "this_node_has_it": same}
            lines += [
                f"store cert   {', '.join(facts.names)}, serial {facts.serial:x}",
                f"             valid until {facts.not_after:%Y-%m-%d %H:%M} UTC ("
                f"{data['certificate']['days_left']} days left); "
                + (
                    "this node's copy"
                    if same
                    else f"not this node's yet (it looks every {config.tls.acme_store_poll:g} s)"
                ),
            ]
    now = datetime.datetime.now(datetime.UTC)
    if lease is None:
        lines.append("lease        none: any node may renew when due")
    else:
        state = "expired" if lease.expires <= now else "held" if lease.holder else "back-off"
        data["lease"] = {
            "holder": lease.holder,
            "expires": lease.expires.isoformat(),
            "failures": lease.failures,
            "state": state,
        }
        until = f"{lease.expires:%Y-%m-%d %H:%M:%S} UTC"
        lines.append(
            "lease        "
            + {
                "held": f"held by {lease.holder} until {until}",
                "back-off": f"back-off until {until} after {lease.failures} failed attempts",
                "expired": f"lapsed at {until} ({lease.holder or 'back-off'}): the next node "
                "to look takes it",
            }[state]
        )
    return data, lines


def _attempt_line(status: dict[str, Any]) -> str:
    if not status:
        return "(none yet)"
    outcome = status.get("result", "?")
    if outcome == "failed":
        outcome += f": {status.get('error', '')}"
    return f"{status.get('finished', '?')} ({status.get('reason', '')}): {outcome}"


@tls.command("renew")
@click.option(
    "--wait",
    type=float,
    default=120.0,
    show_default=True,
    help="Seconds to wait for the running server's attempt.",
)
@click.pass_obj
def tls_renew(state: CliState, wait: float) -> None:
    """Make the running server obtain a new ACME certificate now."""
    from pillarbox.net.acmefiles import AcmeFiles, request_renewal

    config = state.load()
    if not config.tls.acme:
        raise UserError("ACME is off ([tls] acme = false): there is nothing to renew")
    files = AcmeFiles.of(config)
    asked = request_renewal(files).isoformat(timespec="milliseconds")
    click.echo("renewal requested; waiting for the server")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        status = files.read_status()
        if status.get("started", "") >= asked:
            click.echo("last attempt " + _attempt_line(status))
            if status.get("result") != "ok":
                raise UserError("renewal failed")
            return
        time.sleep(0.5)
    raise UserError(
        f"no running server took the request within {wait:.0f} s; "
        "`pillarbox serve` will take it up when it starts"
    )


tls.add_command(
    received_command(
        "tlsrpt", "The TLS-RPT reports (RFC 8460) other providers sent about our domains."
    ),
    name="reports",
)
