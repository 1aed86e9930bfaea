"""The columns of ``received_reports`` shared by both backends: the report's rows are kept as
one JSON array (a summary is read whole, never queried by row), each row an object of the
:class:`~pillarbox.store.types.ReceivedReportRow` fields."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pillarbox.store.types import ReceivedReport, ReceivedReportRow

COLUMNS = (
    "kind, org_name, report_id, domain, date_begin, date_end, received, contact, policy, rows_json"
)
_ROW_FIELDS = tuple(f.name for f in dataclasses.fields(ReceivedReportRow))


def rows_value(report: ReceivedReport) -> list[dict[str, object]]:
    return [dataclasses.asdict(r) for r in report.rows]


def values(
    report: ReceivedReport, begin: object, end: object, received: object, rows: object
) -> tuple[object, ...]:
    return (
        report.kind,
        report.org_name,
        report.report_id,
        report.domain,
        begin,
        end,
        received,
        report.contact,
        report.policy,
        rows,
    )


def report(
    row: Sequence[Any], begin: datetime, end: datetime, received: datetime, rows: Any
) -> ReceivedReport:
    return ReceivedReport(
        kind=row[0],
        org_name=row[1],
        report_id=row[2],
        domain=row[3],
        begin=begin,
        end=end,
        received=received,
        contact=row[7],
        policy=row[8],
        rows=tuple(
            ReceivedReportRow(**{k: item[k] for k in _ROW_FIELDS if k in item}) for item in rows
        ),
    )
