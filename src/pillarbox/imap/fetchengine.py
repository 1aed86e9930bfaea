"""FETCH rendering: visible messages × fetch attributes → ``* n FETCH (...)`` on the wire.

Implementation notes (RFC 9051 §6.4.5, §7.5.2; RFC 3516 BINARY; RFC 3501 RFC822.*):

- **Three tiers of cost**, each paid only when an attribute needs it: the view's records
  (FLAGS, UID, INTERNALDATE, RFC822.SIZE, SAVEDATE) — a ``UID FETCH 1:* (FLAGS)`` over tens of
  thousands of messages touches nothing else; the metadata parsed at ingest (ENVELOPE, BODY,
  BODYSTRUCTURE, PREVIEW, section offsets), loaded per batch; the raw bytes (sections), read
  one message at a time. Sections are slices at stored offsets (:mod:`pillarbox.mail.parse`),
  never a re-parse.
- **Streaming.** Output goes to an :class:`Output` in pieces: small items are gathered into
  one write per batch, a literal larger than :data:`CHUNK` goes out in chunks of that size, so
  memory per connection stays near one message however large the response.
- **Implicit \\Seen** (§6.4.5): BODY[…] and BINARY[…] without .PEEK, RFC822 and RFC822.TEXT set
  \\Seen, in one store write per batch before the batch is rendered; those messages' responses
  then carry FLAGS even if not asked for, so the client learns the change at once.
- **Expunged meanwhile.** A message another session expunged is still visible until its
  EXPUNGE may be sent (see :mod:`pillarbox.imap.selected`). Attributes the view holds are still
  answered; if its metadata or bytes are gone, it is left out of the response and the command
  ends ``NO [EXPUNGEISSUED]`` (RFC 5530), as Dovecot does.
- **CONDSTORE** (RFC 7162 §3.1.4): MODSEQ is answered from the view; once the client is
  CONDSTORE-aware every response carrying FLAGS carries MODSEQ too (§3.1), so its cache learns
  the MODSEQ of each flag state it sees. A message whose FLAGS went out is told
  (:meth:`~pillarbox.imap.selected.SelectedView.shown`): another session's change of it,
  not yet announced, is not sent again as an unsolicited FETCH (RFC 9051 §7.5.2).
  **OBJECTID** (RFC 8474 §5): EMAILID is derived from the content-addressed blob, THREADID is
  the store's thread of the message, read per batch (:mod:`.objectid`).
- A section that does not exist is NIL; a partial ``<o.n>`` past the end is the empty string
  (§6.4.5); BINARY of a part in an unknown transfer encoding ends ``NO [UNKNOWN-CTE]``
  (RFC 3516 §4.3).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from pillarbox.errors import NotFound
from pillarbox.imap import responses
from pillarbox.imap.fetch import (
    BinarySection,
    BinarySize,
    BodySection,
    FetchAtt,
    FetchItem,
    Preview,
    sets_seen,
)
from pillarbox.imap.objectid import email_id, thread_id
from pillarbox.imap.selected import RECENT, SelectedView
from pillarbox.mail.decode import UnknownTransferEncoding
from pillarbox.mail.model import MessageInfo
from pillarbox.mail.parse import SectionText, decoded_part, find_part, section_bytes
from pillarbox.store.interface import Store
from pillarbox.store.types import FlagOp, MessageRecord

#: Largest piece handed to the output at once; also the gathering threshold for small items.
CHUNK = 64 * 1024
#: Messages per metadata/flag round trip to the store.
BATCH = 256
#: Messages per gathered write when only the view is needed.
LIGHT_BATCH = 2048

_SEEN = frozenset({"\\Seen"})
_NEEDS_INFO_ITEMS = frozenset(
    {FetchItem.ENVELOPE, FetchItem.BODY, FetchItem.BODYSTRUCTURE, FetchItem.RFC822_HEADER,
     FetchItem.RFC822_TEXT}
)  # fmt: skip
_NEEDS_RAW_ITEMS = frozenset({FetchItem.RFC822, FetchItem.RFC822_HEADER, FetchItem.RFC822_TEXT})


def _render_uid(uid: int, flags: frozenset[str]) -> bytes:
    return b"UID %d" % uid


class Output(Protocol):
    """Where responses go; the adapter's implementation applies back-pressure."""

    async def write(self, data: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class FetchOutcome:
    #: Some messages could not be answered because they were expunged meanwhile.
    expunged: bool = False
    #: A BINARY section had an unknown transfer encoding.
    unknown_cte: bool = False


def _needs_info(att: FetchAtt) -> bool:
    if isinstance(att, FetchItem):
        return att in _NEEDS_INFO_ITEMS
    if isinstance(att, BodySection):
        return bool(att.section.part) or att.section.text is not None
    if isinstance(att, BinarySection | BinarySize):
        return bool(att.part)
    return isinstance(att, Preview)


def _needs_raw(att: FetchAtt) -> bool:
    if isinstance(att, FetchItem):
        return att in _NEEDS_RAW_ITEMS
    return not isinstance(att, Preview)


def _partial(data: bytes, partial: tuple[int, int] | None) -> bytes:
    if partial is None:
        return data
    offset, length = partial
    return data[offset : offset + length]


class _Gather:
    """Collects small pieces and writes them in large ones."""

    def __init__(self, out: Output) -> None:
        self._out = out
        self._buffer: list[bytes] = []
        self._size = 0

    async def add(self, data: bytes) -> None:
        if len(data) >= CHUNK:
            await self.flush()
            for start in range(0, len(data), CHUNK):
                await self._out.write(data[start : start + CHUNK])
            return
        self._buffer.append(data)
        self._size += len(data)
        if self._size >= CHUNK:
            await self.flush()

    async def flush(self) -> None:
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer.clear()
            self._size = 0
            await self._out.write(data)


class FetchEngine:
    """Answers one FETCH / UID FETCH over the visible messages ``uids`` (ascending)."""

    def __init__(
        self,
        view: SelectedView,
        store: Store,
        out: Output,
        *,
        uid_command: bool,
        utf8: bool,
        with_recent: bool,
        condstore: bool = False,
        uid_only: bool = False,
    ) -> None:
        self._view = view
        self._store = store
        self._gather = _Gather(out)
        # RFC 9586 §3: with UIDONLY, UIDFETCH lines numbered by UID, UID only when asked.
        self._uid_command = uid_command and not uid_only
        self._uid_only = uid_only
        self._label = b"UIDFETCH" if uid_only else b"FETCH"
        self._utf8 = utf8
        self._with_recent = with_recent
        self._condstore = condstore
        self._expunged = False
        self._unknown_cte = False
        #: The current batch's threads, when THREADID is asked for.
        self._threads: dict[int, int] = {}

    async def run(self, uids: Sequence[int], atts: Sequence[FetchAtt]) -> FetchOutcome:
        atts = self._normalise(atts)
        needs_info = any(_needs_info(att) for att in atts)
        needs_raw = any(_needs_raw(att) for att in atts)
        needs_threads = FetchItem.THREADID in atts
        view = self._view
        may_seen = view.rights is None or "s" in view.rights  # RFC 4314 §4
        marks_seen = not view.read_only and may_seen and any(sets_seen(att) for att in atts)
        if not (needs_info or needs_raw or marks_seen or needs_threads):
            await self._light(uids, atts)
        else:
            for start in range(0, len(uids), BATCH):
                batch = uids[start : start + BATCH]
                if needs_threads:
                    self._threads = await self._store.thread_ids(view.mailbox_id, batch)
                await self._heavy(batch, atts, needs_info, needs_raw, marks_seen)
        await self._gather.flush()
        return FetchOutcome(self._expunged, self._unknown_cte)

    def _normalise(self, atts: Sequence[FetchAtt]) -> list[FetchAtt]:
        """Duplicates dropped; UID first for UID FETCH (RFC 9051 §6.4.9: always returned);
        MODSEQ beside FLAGS for a CONDSTORE-aware client (RFC 7162 §3.1)."""
        seen: set[FetchAtt] = set()
        ordered: list[FetchAtt] = []
        if self._uid_command:
            ordered.append(FetchItem.UID)
            seen.add(FetchItem.UID)
        for att in atts:
            if att not in seen:
                seen.add(att)
                ordered.append(att)
        if self._condstore and FetchItem.FLAGS in seen and FetchItem.MODSEQ not in seen:
            ordered.append(FetchItem.MODSEQ)
        return ordered

    # -- only the view ---------------------------------------------------------------------

    async def _light(self, uids: Sequence[int], atts: Sequence[FetchAtt]) -> None:
        """The hot path (``UID FETCH 1:* (FLAGS)`` of a whole mailbox): one renderer per
        attribute chosen once, flag lists encoded once per distinct set, one format per line."""
        view = self._view
        renderers = [self._renderer(att) for att in atts]
        line = b"* %d " + self._label + b" (" + b" ".join([b"%s"] * len(renderers)) + b")\r\n"
        numbered = ((uid, uid) for uid in uids) if self._uid_only else view.numbered(uids)
        flag_sets = view.flags_in_order(uids)
        while True:
            lines = [
                line % (seq, *[render(uid, flags) for render in renderers])
                for (seq, uid), flags in zip(
                    itertools.islice(numbered, LIGHT_BATCH), flag_sets, strict=False
                )
            ]
            if not lines:
                break
            await self._gather.add(b"".join(lines))
        if FetchItem.FLAGS in atts:
            view.shown(uids)

    def _renderer(self, att: FetchAtt) -> Callable[[int, frozenset[str]], bytes]:
        """How one attribute is rendered from a UID and its flags; UID and FLAGS make no
        record (a cold SELECT made none: :class:`~pillarbox.store.types.RecordTable`)."""
        view = self._view
        if att is FetchItem.UID:
            return _render_uid
        if att is not FetchItem.FLAGS:
            return lambda uid, _: self._simple(att, uid, view.record(uid))
        recent = view.recent if self._with_recent else frozenset()
        encoded: dict[tuple[frozenset[str], bool], bytes] = {}

        def flags(uid: int, stored: frozenset[str]) -> bytes:
            key = (stored, uid in recent)
            item = encoded.get(key)
            if item is None:
                shown = stored | {RECENT} if key[1] else stored
                item = encoded[key] = responses.flags_item(shown)
            return item

        return flags

    def _simple(self, att: FetchAtt, uid: int, record: MessageRecord) -> bytes:
        match att:
            case FetchItem.FLAGS:
                return responses.flags_item(self._view.flags(uid, with_recent=self._with_recent))
            case FetchItem.UID:
                return responses.uid_item(uid)
            case FetchItem.INTERNALDATE:
                return responses.internaldate_item(record.internal_date)
            case FetchItem.RFC822_SIZE:
                return responses.rfc822_size_item(record.size)
            case FetchItem.SAVEDATE:
                return responses.savedate_item(record.saved_date)
            case FetchItem.MODSEQ:
                return responses.modseq_item(record.modseq)
            case FetchItem.EMAILID:
                return responses.emailid_item(email_id(record))
            case FetchItem.THREADID:
                return responses.threadid_item(thread_id(self._threads[uid]))
        raise AssertionError(f"{att!r} is not answered from the view")  # pragma: no cover

    # -- metadata and bytes --------------------------------------------------------------

    async def _heavy(
        self,
        batch: Sequence[int],
        atts: list[FetchAtt],
        needs_info: bool,
        needs_raw: bool,
        marks_seen: bool,
    ) -> None:
        view = self._view
        store = self._store
        flagged: set[int] = set()
        if marks_seen:
            unseen = [
                uid
                for uid in batch
                if "\\Seen" not in view.record(uid).flags and not view.is_expunged(uid)
            ]
            if unseen:
                update = await store.store_flags(view.mailbox_id, unseen, FlagOp.ADD, _SEEN)
                view.own_flags(update.changed, FlagOp.ADD, _SEEN, None)
                flagged = {record.uid for record in update.changed}
        shown: list[int] = []
        infos: dict[int, MessageInfo] = {}
        if needs_info:
            infos = await store.message_infos(view.mailbox_id, batch)
        for uid in batch:
            if view.is_expunged(uid):
                self._expunged = True  # known gone: its contents are not served any more
                continue
            record = view.record(uid)
            info = infos.get(uid)
            raw: bytes | None = None
            if needs_raw:
                try:
                    raw = await store.read_blob(record.blob_id)
                except NotFound:
                    raw = None
            if (
                (needs_info and info is None)
                or (needs_raw and raw is None)
                or (FetchItem.THREADID in atts and uid not in self._threads)
            ):
                self._expunged = True
                continue
            wanted = atts
            if uid in flagged and FetchItem.FLAGS not in atts:
                wanted = [*atts, FetchItem.FLAGS]
                if self._condstore and FetchItem.MODSEQ not in atts:
                    wanted.append(FetchItem.MODSEQ)
            pieces = [self._item(att, uid, record, info, raw) for att in wanted]
            await self._emit(uid if self._uid_only else view.seq_of(uid), pieces)
            if FetchItem.FLAGS in wanted:
                shown.append(uid)
        view.shown(shown)

    async def _emit(self, number: int, pieces: list[bytes]) -> None:
        await self._gather.add(b"* %d %s (" % (number, self._label))
        for index, piece in enumerate(pieces):
            if index:
                await self._gather.add(b" ")
            await self._gather.add(piece)
        await self._gather.add(b")\r\n")

    def _item(
        self,
        att: FetchAtt,
        uid: int,
        record: MessageRecord,
        info: MessageInfo | None,
        raw: bytes | None,
    ) -> bytes:
        utf8 = self._utf8
        match att:
            case FetchItem.ENVELOPE:
                assert info is not None
                return responses.envelope_item(info.envelope, utf8=utf8)
            case FetchItem.BODY:
                assert info is not None
                return responses.body_item(info.body, utf8=utf8, message_global=utf8)
            case FetchItem.BODYSTRUCTURE:
                assert info is not None
                return responses.bodystructure_item(info.body, utf8=utf8, message_global=utf8)
            case FetchItem.RFC822:
                assert raw is not None
                return responses.section_item(att, raw)
            case FetchItem.RFC822_HEADER:
                assert raw is not None and info is not None
                return responses.section_item(att, raw[: info.header_end])
            case FetchItem.RFC822_TEXT:
                assert raw is not None and info is not None
                return responses.section_item(att, raw[info.header_end :])
            case Preview():
                assert info is not None
                return responses.preview_item(info.preview or None, utf8=utf8)
            case BodySection(section=section, partial=partial):
                assert raw is not None
                if info is None:  # BODY[] needs no metadata
                    data: bytes | None = raw
                else:
                    text: SectionText = section.text or ""  # type: ignore[assignment]
                    data = section_bytes(raw, info, section.part, text, section.fields)
                return responses.section_item(
                    att, None if data is None else _partial(data, partial)
                )
            case BinarySection(part=part, partial=partial):
                assert raw is not None
                data = self._binary(raw, info, part)
                return responses.section_item(
                    att, None if data is None else _partial(data, partial)
                )
            case BinarySize(part=part):
                assert raw is not None
                data = self._binary(raw, info, part)
                return responses.binary_size_item(att, 0 if data is None else len(data))
        return self._simple(att, uid, record)

    def _binary(self, raw: bytes, info: MessageInfo | None, part: tuple[int, ...]) -> bytes | None:
        """BINARY[part]: the part's content with its transfer encoding undone (RFC 3516 §4.2);
        the whole message for an empty part, which has no transfer encoding of its own."""
        if not part or info is None:
            return raw
        found = find_part(info, part)
        if found is None:
            return None
        try:
            return decoded_part(raw, found)
        except UnknownTransferEncoding:
            self._unknown_cte = True
            return None
