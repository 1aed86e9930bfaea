"""``pillarbox dmarc received`` and ``pillarbox tls reports``: the DMARC aggregate and TLS-RPT
reports other providers sent about our domains (:mod:`pillarbox.policy.receivedreports`), as
a table or as JSON (the API's shape)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import click

from pillarbox.store.interface import Store
from pillarbox.store.types import ReceivedReport

if TYPE_CHECKING:
    from pillarbox.cli.main import CliState


def show_received(state: CliState, kind: str, domain: str | None, days: int, as_json: bool) -> None:
    """Print the reports of ``kind`` whose period ended within ``days``."""
    from pillarbox import provisioning
    from pillarbox.cli.main import run_store
    from pillarbox.policy import receivedreports

    config = state.load()
    wanted = provisioning.normalise_domain(domain) if domain else None
    since = datetime.now(UTC) - timedelta(days=days)

    async def go(store: Store) -> list[ReceivedReport]:
        return await store.received_reports(since, domain=wanted, kind=kind)

    reports = run_store(config, go)
    if as_json:
        click.echo(json.dumps([receivedreports.report_json(r) for r in reports], indent=2))
        return
    if not reports:
        label = "DMARC aggregate" if kind == "dmarc" else "TLS"
        click.echo(f"no {label} reports received in the last {days} days")
        return
    for r in reports:
        click.echo(
            f"{r.end:%Y-%m-%d} {r.domain} from {r.org_name} ({r.report_id}): "
            f"{r.messages} messages, {r.failed} failed"
        )
        for row in r.rows:
            extra = " ".join(x for x in (row.disposition, row.detail) if x)
            click.echo(f"  {row.source}: {row.messages} ({row.failed} failed) {extra}".rstrip())


def received_command(kind: str, help_text: str) -> click.Command:
    """The command for one kind of report (both groups share it)."""

    @click.command(help=help_text)
    @click.option("--domain", default=None, help="Only reports about this domain.")
    @click.option(
        "--days", default=30, show_default=True, type=click.IntRange(min=1), help="Period."
    )
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @click.pass_obj
    def command(state: CliState, domain: str | None, days: int, as_json: bool) -> None:
        show_received(state, kind, domain, days, as_json)

    return command
