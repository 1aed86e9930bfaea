"""SEARCH evaluation: a key tree (:mod:`pillarbox.imap.search`) → the matching visible UIDs.

Implementation notes (RFC 9051 §6.4.4, RFC 3501 §6.4.4, RFC 5032, RFC 8514, RFC 5182):

- **Nothing is re-parsed** (DESIGN principle 4). Keys are answered from three sources, cheapest
  first: the view's records (flags, sizes, dates, numbers), the store's full-text index
  (TEXT, BODY: :meth:`~pillarbox.store.interface.Store.search_text` matches decoded text,
  RFC 9051 §6.4.4) and thread ids (THREADID, RFC 8474 §6), and the parsed metadata stored at
  ingest (envelope, decoded subject and header text, Date:), loaded only for the messages
  still in question.
- **Narrowing.** Every key is evaluated against a candidate set, never the whole mailbox when
  less will do: the keys of an AND run cheapest first and each sees only what the previous
  ones left; OR evaluates its right side only on what the left did not match; NOT is the
  complement within its candidates.
- **Matching.** String keys are case-insensitive substring matches (§6.4.4) on decoded text
  (``str.casefold``); an empty string matches every message that has the field. Date keys
  compare calendar days, ignoring time and zone (§6.4.4): the internal and save dates are
  stored in UTC and compared as UTC days; SENT* use the Date: header in its own zone, or the
  internal date when there is none (as Dovecot does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date

from pillarbox.imap import search as s
from pillarbox.imap.objectid import email_id, thread_number
from pillarbox.imap.selected import SelectedView
from pillarbox.imap.sequence import SequenceSet
from pillarbox.mail.decode import decode_words, escaped_to_text
from pillarbox.mail.model import EnvelopeAddress, MessageInfo
from pillarbox.store.interface import Store

#: Messages whose metadata is loaded per store round trip.
INFO_BATCH = 1000

_CHEAP = 0
_INDEXED = 1
_METADATA = 2


def _cost(key: s.SearchKey) -> int:
    match key:
        case s.StringKey(field="BODY" | "TEXT") | s.ObjectIdKey(thread=True):
            return _INDEXED
        case s.StringKey() | s.HeaderKey() | s.DateKey(field=s.DateField.SENT):
            return _METADATA
        case s.Not(key=inner):
            return _cost(inner)
        case s.Or(left=left, right=right):
            return max(_cost(left), _cost(right))
        case s.And(keys=keys):
            return max(_cost(k) for k in keys)
    return _CHEAP


def _contains(key: s.SearchKey, test: Callable[[s.SearchKey], bool]) -> bool:
    """Whether ``test`` holds for ``key`` or any key nested in it."""
    if test(key):
        return True
    match key:
        case s.Not(key=inner):
            return _contains(inner, test)
        case s.Or(left=left, right=right):
            return _contains(left, test) or _contains(right, test)
        case s.And(keys=keys):
            return any(_contains(k, test) for k in keys)
    return False


def uses_modseq(key: s.SearchKey) -> bool:
    """Whether a MODSEQ key occurs anywhere in ``key`` (RFC 7162 §3.1.5: then the result
    carries the highest MODSEQ of the matched messages)."""
    return _contains(key, lambda k: isinstance(k, s.ModSeqKey))


def uses_message_numbers(key: s.SearchKey) -> bool:
    """Whether ``key`` names messages by message number anywhere: a bare sequence set, not
    ``UID set`` and not ``$`` (a saved result is kept as UIDs) — refused under RFC 9586."""
    return _contains(
        key, lambda k: isinstance(k, s.SequenceKey) and not k.uid and not k.sequence.saved
    )


def _compare(day: date, op: s.DateOp, wanted: date) -> bool:
    if op is s.DateOp.BEFORE:
        return day < wanted
    if op is s.DateOp.ON:
        return day == wanted
    return day >= wanted  # SINCE: "within or later than" (RFC 9051 §6.4.4)


def _address_text(addresses: Iterable[EnvelopeAddress]) -> str:
    """An address list as a person reads it: decoded display names and addr-specs."""
    parts = []
    for address in addresses:
        if address.name:
            parts.append(decode_words(escaped_to_text(address.name)))
        if address.mailbox is not None and address.host is not None:
            parts.append(f"<{address.mailbox}@{address.host}>")
        elif address.mailbox is not None:
            parts.append(address.mailbox)
    return " ".join(parts)


def _header_values(info: MessageInfo, name: str) -> list[str] | None:
    """Decoded values of header field ``name`` from the stored header text, None if absent."""
    wanted = name.casefold()
    values = [
        value
        for line in info.header_text.split("\n")
        for field, sep, value in (line.partition(": "),)
        if sep and field.casefold() == wanted
    ]
    return values or None


def _field_text(info: MessageInfo, field: str) -> str:
    envelope = info.envelope
    if field == "SUBJECT":
        return info.subject
    lists = {"FROM": envelope.from_, "TO": envelope.to, "CC": envelope.cc, "BCC": envelope.bcc}
    return _address_text(lists[field])


class SearchEngine:
    """One SEARCH over one view; :meth:`run` returns the matching visible UIDs, ascending."""

    def __init__(
        self,
        view: SelectedView,
        store: Store,
        *,
        now: float,
        saved: Sequence[int],
        with_recent: bool,
    ) -> None:
        self._view = view
        self._store = store
        self._now = now
        self._saved = saved
        self._with_recent = with_recent
        self._infos: dict[int, MessageInfo] = {}
        self._sequences: dict[tuple[SequenceSet, bool], frozenset[int]] = {}

    async def run(self, key: s.SearchKey) -> list[int]:
        """Messages expunged meanwhile (still visible, see :mod:`.selected`) never match."""
        matched = await self._match(key, self._view.live_uids())
        return sorted(matched)

    async def _match(self, key: s.SearchKey, candidates: set[int]) -> set[int]:
        if not candidates:
            return set()
        match key:
            case s.And(keys=keys):
                remaining = candidates
                for inner in sorted(keys, key=_cost):
                    remaining = await self._match(inner, remaining)
                    if not remaining:
                        break
                return remaining
            case s.Or(left=left, right=right):
                first, second = sorted((left, right), key=_cost)
                found = await self._match(first, candidates)
                return found | await self._match(second, candidates - found)
            case s.Not(key=inner):
                return candidates - await self._match(inner, candidates)
            case s.StringKey(field="BODY" | "TEXT", value=value):
                if not value:
                    return candidates
                body_only = key.field == "BODY"
                found = await self._store.search_text(
                    self._view.mailbox_id, [value], body_only=body_only
                )
                return candidates & found
            case s.ObjectIdKey(thread=True, object_id=object_id):
                return await self._in_thread(candidates, object_id)
            case s.StringKey(field=field, value=value):
                wanted = value.casefold()
                return await self._filter_info(
                    candidates, lambda info: wanted in _field_text(info, field).casefold()
                )
            case s.HeaderKey(name=name, value=value):
                wanted = value.casefold()

                def has_header(info: MessageInfo) -> bool:
                    values = _header_values(info, name)
                    return values is not None and any(wanted in v.casefold() for v in values)

                return await self._filter_info(candidates, has_header)
            case s.DateKey(field=s.DateField.SENT, op=op, day=day):

                def sent(info: MessageInfo, uid: int) -> bool:
                    stamp = info.sent_date or self._view.record(uid).internal_date
                    return _compare(stamp.date(), op, day)

                return await self._filter_info_uid(candidates, sent)
        return {uid for uid in candidates if self._cheap(key, uid)}

    def _cheap(self, key: s.SearchKey, uid: int) -> bool:
        """One message against a key the view answers; flag keys make no record (a SELECT's
        table makes records only when used: :class:`~pillarbox.store.types.RecordTable`)."""
        record = self._view.record
        match key:
            case s.AllKey() | s.SaveDateSupportedKey():
                return True  # RFC 8514 §4.2: every mailbox here keeps save dates
            case s.FlagKey(flag=flag, present=present):
                return (flag in self._view.flags(uid, with_recent=self._with_recent)) == present
            case s.NewKey():
                flags = self._view.flags(uid, with_recent=self._with_recent)
                return "\\Recent" in flags and "\\Seen" not in flags
            case s.DateKey(field=field, op=op, day=day):
                dates = record(uid)
                stamp = dates.saved_date if field is s.DateField.SAVED else dates.internal_date
                return _compare(stamp.astimezone(UTC).date(), op, day)
            case s.SizeKey(larger=larger, size=size):
                return record(uid).size > size if larger else record(uid).size < size
            case s.WithinKey(older=older, seconds=seconds):  # RFC 5032 §3
                age = self._now - record(uid).internal_date.timestamp()
                return age > seconds if older else age < seconds
            case s.SequenceKey(sequence=sequence, uid=by_uid):
                return uid in self._sequence_uids(sequence, by_uid)
            case s.ModSeqKey(modseq=modseq):
                # RFC 7162 §3.1.5: one MODSEQ per message, so the entry name is moot.
                return record(uid).modseq >= modseq
            case s.ObjectIdKey(object_id=object_id):  # RFC 8474 §6 EMAILID
                return email_id(record(uid)) == object_id
        raise AssertionError(f"{key!r} is not a cheap key")  # pragma: no cover

    def _sequence_uids(self, sequence: SequenceSet, by_uid: bool) -> frozenset[int]:
        known = self._sequences.get((sequence, by_uid))
        if known is None:
            known = frozenset(self._view.resolve(sequence, uid=by_uid, saved=self._saved))
            self._sequences[(sequence, by_uid)] = known
        return known

    async def _load_infos(self, uids: Iterable[int]) -> None:
        missing = sorted(uid for uid in uids if uid not in self._infos)
        for start in range(0, len(missing), INFO_BATCH):
            batch = missing[start : start + INFO_BATCH]
            self._infos.update(await self._store.message_infos(self._view.mailbox_id, batch))

    async def _in_thread(self, candidates: set[int], object_id: str) -> set[int]:
        """RFC 8474 §6 THREADID: the candidates whose thread is exactly ``object_id``, the
        thread's UIDs read from the store's index (a message expunged meanwhile is not there
        and does not match); an id no thread has matches nothing."""
        thread = thread_number(object_id)
        if thread is None:
            return set()
        return candidates.intersection(await self._store.thread_uids(self._view.mailbox_id, thread))

    async def _filter_info(
        self, candidates: set[int], test: Callable[[MessageInfo], bool]
    ) -> set[int]:
        return await self._filter_info_uid(candidates, lambda info, _uid: test(info))

    async def _filter_info_uid(
        self, candidates: set[int], test: Callable[[MessageInfo, int], bool]
    ) -> set[int]:
        await self._load_infos(candidates)
        infos = self._infos
        # A message expunged meanwhile has no metadata any more: it does not match.
        return {uid for uid in candidates if uid in infos and test(infos[uid], uid)}
