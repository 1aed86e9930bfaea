"""``pillarbox dmarc report``: the DMARC aggregate reports due now, printed or sent.

Without ``--send`` it prints each report's file name, destinations and XML and changes
nothing; with ``--send`` it queues them as the periodic job does (``[dmarc_reports]``) and
forgets the evaluations they counted.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from pillarbox.cli.received import received_command
from pillarbox.errors import UserError
from pillarbox.store.interface import Store

if TYPE_CHECKING:
    from pillarbox.cli.main import CliState


@click.group()
def dmarc() -> None:
    """DMARC aggregate reports (RFC 9990)."""


@dmarc.command("report")
@click.option("--send", is_flag=True, help="Queue the reports and forget what they counted.")
@click.option("--domain", default=None, help="Only this policy domain's report.")
@click.pass_obj
def dmarc_report(state: CliState, send: bool, domain: str | None) -> None:
    """Build the aggregate reports of every evaluation kept so far."""
    from pillarbox.cli.main import run_store
    from pillarbox.policy import reporting
    from pillarbox.services import command_services

    config = state.load()
    if send and not config.dmarc_reports.from_address:
        raise UserError("set dmarc_reports.from_address to send reports")
    end = int(time.time())
    resolver = reporting.report_resolver(config)

    async def go(store: Store) -> list[str]:
        if not send:
            lines = []
            reports = await reporting.pending_reports(store, config, end, domain=domain)
            for report in reports:
                found = await reporting.verified_destinations(
                    resolver, report.policy_domain, report.rua
                )
                to = ", ".join(d.address for d in found) or "(no verified destination)"
                lines += [f"{report.filename} → {to}", report.xml.decode(), ""]
            return lines or ["no DMARC evaluations to report"]
        services = command_services(config, store)
        sent = await reporting.report_once(services, end, resolver, domain=domain)
        return [
            f"{report.filename}: {report.messages} messages → {', '.join(to) or 'not sent'}"
            for report, to in sent
        ] or ["no DMARC evaluations to report"]

    for line in run_store(config, go):
        click.echo(line)


dmarc.add_command(
    received_command(
        "dmarc", "The aggregate reports other providers sent about our domains (RFC 9990)."
    ),
    name="received",
)
