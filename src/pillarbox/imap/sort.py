"""SORT (RFC 5256 §3, DISPLAYFROM/DISPLAYTO of RFC 5957): matched messages → sorted UIDs.

Implementation notes:

- **Keys from stored metadata** (DESIGN principle 4): the envelope and sent date parsed at
  ingest, the view's records for ARRIVAL and SIZE. Nothing is re-parsed.
- **Strings** collate with i;unicode-casemap (RFC 5051, :func:`.basesubject.casemap`); an
  absent header is the empty string, which sorts first (§3). FROM/TO/CC are the
  addr-mailbox (local part) of the first address; DISPLAYFROM/DISPLAYTO the decoded display
  name of the first address, or its addr-spec when it has none (RFC 5957 §3.1).
- **DATE** is the Date: header, or the internal date when absent or unparsable (§2.2); both
  are timezone-aware, so they compare in UTC.
- **REVERSE** reverses its own criterion only; ties on every criterion keep the mailbox
  order (UID, the implicit last criterion, never reversed). Python's sort is stable, so the
  criteria are applied last to first, each a stable sort on one key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from pillarbox.imap.basesubject import base_subject, casemap
from pillarbox.imap.commands import SortCriterion
from pillarbox.mail.decode import decode_words, escaped_to_text
from pillarbox.mail.model import EnvelopeAddress, MessageInfo
from pillarbox.store.types import MessageRecord

__all__ = ["SortKeyValue", "needs_metadata", "sent_date", "sort_uids"]

SortKeyValue = str | int | datetime


def sent_date(info: MessageInfo | None, record: MessageRecord) -> datetime:
    """RFC 5256 §2.2: the Date: header, else the internal date."""
    if info is not None and info.sent_date is not None:
        return info.sent_date
    return record.internal_date


def _first(addresses: tuple[EnvelopeAddress, ...]) -> EnvelopeAddress | None:
    for address in addresses:
        if address.mailbox is not None and address.host is not None:
            return address
    return None


def _mailbox(addresses: tuple[EnvelopeAddress, ...]) -> str:
    address = _first(addresses)
    if address is None or address.mailbox is None:
        return ""
    return casemap(escaped_to_text(address.mailbox))


def _display(addresses: tuple[EnvelopeAddress, ...]) -> str:
    address = _first(addresses)
    if address is None:
        return ""
    if address.name:
        return casemap(decode_words(escaped_to_text(address.name)))
    return casemap(escaped_to_text(f"{address.mailbox}@{address.host}"))


def _key_function(
    key: str,
    record_of: Callable[[int], MessageRecord],
    infos: Mapping[int, MessageInfo],
) -> Callable[[int], SortKeyValue]:
    def info_key(extract: Callable[[MessageInfo], SortKeyValue]) -> Callable[[int], str]:
        def value(uid: int) -> str:
            info = infos.get(uid)
            return "" if info is None else str(extract(info))

        return value

    match key:
        case "ARRIVAL":
            return lambda uid: record_of(uid).internal_date
        case "SIZE":
            return lambda uid: record_of(uid).size
        case "DATE":
            return lambda uid: sent_date(infos.get(uid), record_of(uid))
        case "SUBJECT":
            return info_key(lambda info: casemap(base_subject(info.subject).text))
        case "FROM":
            return info_key(lambda info: _mailbox(info.envelope.from_))
        case "TO":
            return info_key(lambda info: _mailbox(info.envelope.to))
        case "CC":
            return info_key(lambda info: _mailbox(info.envelope.cc))
        case "DISPLAYFROM":
            return info_key(lambda info: _display(info.envelope.from_))
        case "DISPLAYTO":
            return info_key(lambda info: _display(info.envelope.to))
    raise ValueError(f"unknown sort key {key}")


def needs_metadata(criteria: Sequence[SortCriterion]) -> bool:
    """Whether any criterion reads parsed metadata (ARRIVAL and SIZE come from the view)."""
    return any(criterion.key not in ("ARRIVAL", "SIZE") for criterion in criteria)


def sort_uids(
    uids: Sequence[int],
    criteria: Sequence[SortCriterion],
    record_of: Callable[[int], MessageRecord],
    infos: Mapping[int, MessageInfo],
) -> list[int]:
    """``uids`` (ascending: the mailbox order) sorted by ``criteria``, most significant first."""
    ordered = list(uids)
    for criterion in reversed(criteria):
        key = _key_function(criterion.key, record_of, infos)
        ordered.sort(key=key, reverse=criterion.reverse)
    return ordered
