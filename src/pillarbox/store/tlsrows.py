"""The rows of ``tls_results`` and ``tls_report_posts`` both backends write and read (TLS-RPT, RFC
8460): their column order, and a result's values in it. As with :mod:`.dmarcrows`, only the
encoded columns differ by backend (``recorded``: a ``timestamptz`` or microseconds since the
epoch; the two string lists: ``jsonb`` or JSON text), so each backend encodes and decodes
those.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pillarbox.store.types import TlsReportPost, TlsSessionResult

COLUMNS = (
    "recorded, policy_domain, policy_type, policy_strings, mx_patterns, result_type, "
    "receiving_mx, receiving_ip, sending_ip, failure_reason"
)
PLACEHOLDERS = 10
#: What a read selects: :data:`COLUMNS` and the row's id.
READ = COLUMNS + ", id"


def row(
    r: TlsSessionResult, recorded: object, policy_strings: object, mx_patterns: object
) -> tuple[object, ...]:
    """``r``'s values in :data:`COLUMNS` order, with the encoded ones passed in."""
    return (
        recorded,
        r.policy_domain,
        r.policy_type,
        policy_strings,
        mx_patterns,
        r.result_type,
        r.receiving_mx,
        r.receiving_ip,
        r.sending_ip,
        r.failure_reason,
    )


def result(
    values: Sequence[Any],
    recorded: datetime,
    policy_strings: Iterable[str],
    mx_patterns: Iterable[str],
) -> TlsSessionResult:
    """The result a row in :data:`READ` order holds, its encoded columns decoded."""
    return TlsSessionResult(
        recorded=recorded,
        policy_domain=values[1],
        policy_type=values[2],
        policy_strings=tuple(policy_strings),
        mx_patterns=tuple(mx_patterns),
        result_type=values[5],
        receiving_mx=values[6],
        receiving_ip=values[7],
        sending_ip=values[8],
        failure_reason=values[9],
        id=values[10],
    )


#: The columns of ``tls_report_posts`` after ``id``, in the order :func:`post` reads them.
POST_COLUMNS = "url, policy_domain, body, first_try, next_try, attempts"


def post(row: Sequence[Any], first_try: datetime, next_try: datetime) -> TlsReportPost:
    """A ``tls_report_posts`` row (``id``, then :data:`POST_COLUMNS`) with its times decoded."""
    return TlsReportPost(
        id=int(row[0]),
        url=str(row[1]),
        policy_domain=str(row[2]),
        body=bytes(row[3]),
        first_try=first_try,
        next_try=next_try,
        attempts=int(row[6]),
    )
