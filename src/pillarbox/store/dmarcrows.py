"""The row of ``dmarc_observations`` both backends write and read: its column order, and an
observation's values in it. Only the two encoded columns differ by backend (``received``: a
``timestamptz`` or microseconds since the epoch; ``dkim``: ``jsonb`` or JSON text), so each
backend encodes and decodes those two and passes them in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pillarbox.store.types import DmarcObservation

COLUMNS = (
    "received, policy_domain, header_from, envelope_from, source_ip, disposition, "
    "dkim_aligned, spf_aligned, spf_domain, spf_result, dkim, policy_record, override, "
    "override_comment, discovery"
)


def row(o: DmarcObservation, received: object, dkim: object) -> tuple[object, ...]:
    """``o``'s values in :data:`COLUMNS` order, with ``received`` and ``dkim`` as encoded."""
    return (
        received,
        o.policy_domain,
        o.header_from,
        o.envelope_from,
        o.source_ip,
        o.disposition,
        o.dkim_aligned,
        o.spf_aligned,
        o.spf_domain,
        o.spf_result,
        dkim,
        o.policy_record,
        o.override,
        o.override_comment,
        o.discovery,
    )


#: What a read selects: :data:`COLUMNS` and the row's id.
READ = COLUMNS + ", id"


def observation(
    values: Sequence[Any], received: datetime, dkim: Iterable[Sequence[str]]
) -> DmarcObservation:
    """The observation a row in :data:`READ` order holds, ``received`` and ``dkim`` decoded."""
    return DmarcObservation(
        received=received,
        policy_domain=values[1],
        header_from=values[2],
        envelope_from=values[3],
        source_ip=values[4],
        disposition=values[5],
        dkim_aligned=bool(values[6]),
        spf_aligned=bool(values[7]),
        spf_domain=values[8],
        spf_result=values[9],
        dkim=tuple((d, s, r) for d, s, r in dkim),
        policy_record=values[11],
        override=values[12],
        override_comment=values[13],
        discovery=values[14],
        id=values[15],
    )
