"""The selected mailbox as one session sees it: the seq↔UID map, flags, and what it has not
been told yet.

Implementation notes (RFC 9051 §5.2, §7.4.1, §7.5.1; RFC 3501 §2.3.2 for \\Recent):

- **Two states of the mailbox.** The *visible* state is what the client has been told: the
  UID list that message sequence numbers index (seq n is ``uids[n - 1]``), with each message's
  record (flags, MODSEQ, size, dates). The store's truth runs ahead of it; what the session has
  learned of the truth but not announced is *pending*: arrivals, expunges, flag changes.
  :meth:`SelectedView.apply` takes the truth in, :meth:`SelectedView.announce` turns pending
  changes into untagged responses and makes them visible.
- **Sequence numbers only change when the client is told.** Commands resolve their sequence
  sets against the visible state, so an expunge made by another session (or by delivery) never
  shifts a number under the client. A pending expunge stays visible — FETCH of it answers from
  what the view still holds, or reports ``[EXPUNGEISSUED]`` — until a command that may carry
  EXPUNGE responses ends: never FETCH, STORE or SEARCH (RFC 9051 §7.5.1), never while no
  command is in progress. The caller says which by ``allow_expunge``.
- **EXISTS never decreases** (RFC 9051 §7.4.1): arrivals are announced with a count that still
  includes withheld expunges; expunges are announced highest sequence number first, so every
  number sent is valid at the moment it is sent (§7.5.1's immediate decrement rule).
- **Applying the truth is idempotent.** The session reads ``changes since M`` and ``expunged
  since M`` from the store; reading the same change twice (a race between the MODSEQ it read
  and the rows) changes nothing, because a record whose flags equal the visible ones is not a
  change, an arrival already known is ignored, and UIDs never come back once expunged. So the
  view may lag the store (the feed is a hint), but it can never diverge from it.
- **The session's own writes** need no read back when they directly follow the applied MODSEQ
  (:meth:`SelectedView.own_write`): each write takes the next MODSEQ, so none can lie between.
  A write's record that holds more than the write made of the flags the view knew carries
  another session's change along: that change is pending like any other
  (:meth:`SelectedView.own_flags`), so a ``STORE .SILENT`` does not swallow it.
- **Shown is told.** A flag change stays pending until the client is shown it, by the
  announcement or by a response to its own command: a FETCH or STORE response that shows a
  message's flags — with its MODSEQ, for a CONDSTORE-aware client (RFC 7162 §3.1) — shows
  exactly what the announcement would (both read the view), so the change is no longer
  pending (:meth:`SelectedView.shown`) and is not repeated; a change learned after it is
  pending again, since :meth:`SelectedView.apply` compares with the flags shown.
- **MODSEQ is kept per message** and as the highest value applied (:attr:`SelectedView.modseq`);
  :attr:`SelectedView.announced_modseq` is the highest the client may take as fully known
  (RFC 7162 §3.1.2.1): it only advances when an announcement left nothing pending.
- **CONDSTORE/QRESYNC** (RFC 7162) change the wording, not the bookkeeping: a CONDSTORE-aware
  client gets ``MODSEQ (n)`` in every unsolicited FETCH (§3.1), a QRESYNC client one
  ``VANISHED uids`` instead of the EXPUNGE lines (§3.2.10), under the same §7.5.1 rules.
- **\\Recent** (IMAP4rev1 only) is a set of UIDs owned by this session, filled from the
  store's :meth:`~pillarbox.store.interface.Store.claim_recent` watermark.
- **The flag list** (:attr:`SelectedView.listed`) is what the last FLAGS response named: the
  system flags and every keyword in use at SELECT. A keyword that appears later (another
  session's STORE or APPEND, the webmail, a Sieve ``addflag``) is *unlisted* until a new
  ``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` go out, ahead of the first FETCH or EXISTS
  that could show it (RFC 9051 §7.3.5: the client must remember the list; §7.1: a flag in
  FLAGS but not PERMANENTFLAGS cannot be set permanently, so both are resent together).
  Keywords are never taken off the list while the mailbox stays selected.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from pillarbox.imap import responses
from pillarbox.imap.acl import ALL_RIGHTS
from pillarbox.imap.replies import OK_PERMANENTFLAGS
from pillarbox.imap.sequence import NumberSet, SequenceSet
from pillarbox.store.aclrows import allowed_flags, flags_after
from pillarbox.store.types import SYSTEM_FLAGS, FlagOp, Mailbox, MessageRecord, RecordTable

RECENT = "\\Recent"


@dataclass(frozen=True, slots=True)
class Announcement:
    """What :meth:`SelectedView.announce` made visible: the response lines, and the UIDs
    whose expunge was announced (the session drops them from its saved search result)."""

    lines: list[bytes]
    expunged: list[int]


class SelectedView:
    """One session's view of its selected mailbox; pure data, no store access."""

    def __init__(
        self,
        mailbox: Mailbox,
        records: RecordTable | Iterable[MessageRecord],
        *,
        read_only: bool,
        modseq: int,
    ) -> None:
        #: The mailbox is held by id, not name (as Dovecot): a RENAME of it or of a parent,
        #: by any session, changes nothing here (RFC 9051 §6.3.6 moves its inferiors too).
        self.mailbox_id = mailbox.id
        self.uidvalidity = mailbox.uidvalidity
        self.read_only = read_only
        #: RFC 4314: the user's rights on another user's mailbox; None for the user's own
        #: (every right). FETCH sets no implicit \\Seen without "s" (§4).
        self.rights: frozenset[str] | None = None
        #: The records as SELECT read them (made as they are used: a cold SELECT of a large
        #: mailbox makes none), and those learned since, which take precedence.
        self._table = records if isinstance(records, RecordTable) else RecordTable.of(records)
        self._learned: dict[int, MessageRecord] = {}
        #: Table UIDs whose expunge was announced (no longer visible).
        self._gone: set[int] = set()
        self._uids: list[int] = list(self._table.uids)
        self.uidnext = max(mailbox.uidnext, self._uids[-1] + 1 if self._uids else 1)
        #: The store's MODSEQ up to which every change has been applied.
        self.modseq = modseq
        #: The MODSEQ up to which the client has been told everything (RFC 7162 §3.1.2.1).
        self.announced_modseq = modseq
        self.recent: set[int] = set()
        self._expunged: set[int] = set()
        self._arrived: dict[int, MessageRecord] = {}
        self._flags_changed: set[int] = set()
        #: The flags the last FLAGS response named (module notes), and those learned since.
        self.listed: frozenset[str] = SYSTEM_FLAGS | self.keywords()
        self._unlisted: set[str] = set()

    # -- the visible state ---------------------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self._uids)

    @property
    def uids(self) -> list[int]:
        """Visible UIDs, ascending (seq n is ``uids[n - 1]``); do not modify."""
        return self._uids

    def record(self, uid: int) -> MessageRecord:
        """The record of a visible UID (``KeyError`` otherwise)."""
        record = self._learned.get(uid)
        if record is not None:
            return record
        return self._table[self._table_position(uid)]

    def _table_position(self, uid: int) -> int:
        """Where a visible UID not learned since SELECT sits in the table."""
        position = self._table.position(uid)
        if position is None or uid in self._gone:
            raise KeyError(uid)
        return position

    def is_visible(self, uid: int) -> bool:
        index = bisect.bisect_left(self._uids, uid)
        return index < len(self._uids) and self._uids[index] == uid

    def seq_of(self, uid: int) -> int:
        """The sequence number of a visible UID (``ValueError`` if not visible)."""
        index = bisect.bisect_left(self._uids, uid)
        if index == len(self._uids) or self._uids[index] != uid:
            raise ValueError(f"UID {uid} is not visible")
        return index + 1

    def numbered(self, uids: Iterable[int]) -> Iterator[tuple[int, int]]:
        """``(seq, uid)`` for visible ``uids`` given in ascending order, in one linear walk."""
        visible = self._uids
        if not isinstance(uids, list):
            uids = list(uids)
        if not uids:
            return iter(())
        first = bisect.bisect_left(visible, uids[0])
        if visible[first : first + len(uids)] == uids:  # a run, e.g. 1:*: no search at all
            return enumerate(uids, first + 1)
        return self._searched(uids)

    def _searched(self, uids: list[int]) -> Iterator[tuple[int, int]]:
        visible = self._uids
        index = 0
        for uid in uids:
            index = bisect.bisect_left(visible, uid, index)
            yield index + 1, uid

    def live_uids(self) -> set[int]:
        """Visible UIDs not known to be expunged."""
        return set(self._uids).difference(self._expunged)

    @property
    def expunges_withheld(self) -> bool:
        """Whether expunges the store made are still waiting to be announced."""
        return bool(self._expunged)

    def is_expunged(self, uid: int) -> bool:
        """Expunged in the store, not yet announced: still visible, contents maybe gone."""
        return uid in self._expunged

    def flags(self, uid: int, *, with_recent: bool) -> frozenset[str]:
        """A visible message's flags, read without making its record."""
        record = self._learned.get(uid)
        flags = record.flags if record is not None else self._table.flags[self._table_position(uid)]
        if with_recent and uid in self.recent:
            return flags | {RECENT}
        return flags

    def flags_in_order(self, uids: Iterable[int]) -> Iterator[frozenset[str]]:
        """The flags of visible ``uids`` given ascending (no \\Recent), in one walk of the
        table: ``FETCH 1:* (FLAGS)`` of a large mailbox without a search per message."""
        learned = self._learned
        table_uids = self._table.uids
        table_flags = self._table.flags
        if not isinstance(uids, list):
            uids = list(uids)
        if not uids:
            return
        position = bisect.bisect_left(table_uids, uids[0])
        low, high = uids[0], uids[-1]
        if table_uids[position : position + len(uids)] == uids and not any(
            low <= uid <= high for uid in learned
        ):  # e.g. 1:* after SELECT: no search at all
            yield from table_flags[position : position + len(uids)]
            return
        for uid in uids:
            record = learned.get(uid)
            if record is not None:
                yield record.flags
            else:
                position = bisect.bisect_left(table_uids, uid, position)
                yield table_flags[position]

    def keywords(self) -> frozenset[str]:
        """Every flag in use, for the FLAGS response of SELECT (RFC 9051 §7.3.5)."""
        if not self._learned and len(self._table) == len(self._uids):  # the table's messages
            distinct = set(self._table.flags)
        else:
            distinct = {self.flags(uid, with_recent=False) for uid in self._uids}
        return frozenset().union(*distinct)

    def first_unseen(self) -> int | None:
        """Sequence number of the first message without \\Seen (RFC 3501 [UNSEEN n])."""
        for seq, uid in enumerate(self._uids, 1):
            if "\\Seen" not in self.flags(uid, with_recent=False):
                return seq
        return None

    def resolve(
        self, sequence: SequenceSet, *, uid: bool, saved: Iterable[int] | None = None
    ) -> list[int]:
        """The visible UIDs a sequence set names, ascending.

        ``$`` (RFC 5182) is ``saved``, the UIDs of the last saved search, those still visible.
        For message numbers the caller has checked the range (RFC 9051 §9: BAD otherwise).
        """
        if sequence.saved:
            return sorted(u for u in (saved or ()) if self.is_visible(u))
        if uid:
            if not self._uids:
                return []
            return sequence.resolve(self._uids[-1]).select(self._uids)
        numbers: NumberSet = sequence.resolve(len(self._uids))
        uids = self._uids
        return [uids[seq - 1] for seq in numbers]

    def seq_in_range(self, sequence: SequenceSet) -> bool:
        """Whether a message-number set stays within the visible mailbox (RFC 9051 §9
        seq-number: numbers above EXISTS, and ``*`` in an empty mailbox, are BAD)."""
        if sequence.saved:
            return True
        if sequence.uses_star() and not self._uids:
            return False
        return sequence.explicit_max() <= len(self._uids)

    # -- taking in the truth ---------------------------------------------------------------------

    def apply(self, changed: Iterable[MessageRecord], expunged: Iterable[int], modseq: int) -> None:
        """Take in the store's changes since :attr:`modseq` (see the module notes)."""
        for uid in expunged:
            if self.is_visible(uid):
                self._expunged.add(uid)
            self._arrived.pop(uid, None)
        last_known = max(self._uids[-1] if self._uids else 0, max(self._arrived, default=0))
        for record in changed:
            uid = record.uid
            if self.is_visible(uid):
                if uid in self._expunged:
                    continue
                if record.flags != self.flags(uid, with_recent=False):
                    self._flags_changed.add(uid)
                self._learned[uid] = record
            elif uid in self._arrived or uid > last_known:
                self._arrived[uid] = record
            else:
                continue
            self._note_flags(record.flags)
        self.modseq = max(self.modseq, modseq)

    def _note_flags(self, flags: frozenset[str]) -> None:
        """Keep the keywords of ``flags`` not listed yet (module notes), for
        :meth:`flag_list_update`; a subset test first, so no set is made per record."""
        if not flags <= self.listed:
            self._unlisted.update(flags - self.listed)

    def own_flags(
        self,
        records: Sequence[MessageRecord],
        op: FlagOp,
        flags: frozenset[str],
        rights: str | None,
    ) -> None:
        """Flags this session stored itself, in one write of STORE's ``op`` with ``flags``
        under ``rights`` (see also :meth:`own_write`). A record holding what that write made
        of the flags the view knew is no change to announce; one holding more or fewer
        carries another session's change the view had not learned, which is pending like
        any other (RFC 9051 §6.4.6: the client is to hear of it even after ``.SILENT``)
        until a response shows it (:meth:`shown`). A change learned before stays pending."""
        for record in records:
            uid = record.uid
            if self.is_visible(uid) and uid not in self._expunged:
                known = self.flags(uid, with_recent=False)
                if record.flags != flags_after(known, op, flags, rights):
                    self._flags_changed.add(uid)
                self._learned[uid] = record
                self._note_flags(record.flags)
        if records:
            self.own_write(records[0].modseq)

    def shown(self, uids: Iterable[int]) -> None:
        """A response to the client's own command (FETCH, STORE) showed these messages'
        flags as the view holds them — and their MODSEQ, to a CONDSTORE-aware client (RFC
        7162 §3.1) — so their pending flag changes are told (module notes): an unsolicited
        FETCH would repeat that response (RFC 9051 §7.5.2 allows it; it is noise), and
        :attr:`announced_modseq` may advance at the command's end (RFC 7162 §3.1.2.1)."""
        if self._flags_changed:
            self._flags_changed.difference_update(uids)

    def own_write(self, modseq: int) -> bool:
        """Whether a write of this session's, which took ``modseq`` and whose records the
        caller has already applied, directly follows the MODSEQ applied so far. Every write
        takes the mailbox's next MODSEQ (store interface notes), so nothing else can lie
        between: the view is then current up to ``modseq`` without a store read, and the
        change feed's hint of it (at or below :attr:`modseq`) wakes nobody. False leaves the
        view as it was; the caller reads the store."""
        if modseq != self.modseq + 1:
            return False
        self.modseq = modseq
        return True

    def arrivals(self) -> list[int]:
        """UIDs learned of but not yet announced (for claiming \\Recent before announcing)."""
        return sorted(self._arrived)

    # -- telling the client ------------------------------------------------------------------

    def flag_lines(self) -> list[bytes]:
        """``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` for the flags listed so far: the ones
        this user's rights let change (RFC 4314 §5.1.1; none under EXAMINE), ``\\*`` with
        the "w" right that creates keywords (RFC 9051 §7.1)."""
        if self.read_only:
            code = responses.permanent_flags((), new_keywords=False)
        else:
            rights = ALL_RIGHTS if self.rights is None else self.rights
            code = responses.permanent_flags(
                allowed_flags(self.listed, rights), new_keywords="w" in rights
            )
        return [responses.flags(self.listed), OK_PERMANENTFLAGS.with_code(code).untagged()]

    def flag_list_update(self) -> list[bytes]:
        """:meth:`flag_lines` again if keywords appeared since they were last sent (module
        notes), else nothing; to be sent before the FETCH or EXISTS that shows them."""
        if not self._unlisted:
            return []
        self.listed = self.listed.union(self._unlisted)
        self._unlisted = set()
        return self.flag_lines()

    def announce(
        self,
        *,
        allow_expunge: bool,
        rev1: bool,
        modseq: bool = False,
        vanished: bool = False,
        allow_flags: bool = True,
        uid_only: bool = False,
    ) -> Announcement:
        """The untagged responses for pending changes, made visible as they are sent.

        Flag changes go out as ``FETCH (UID n FLAGS (...))`` — with UID always, as IMAP4rev2
        requires of every unsolicited FETCH (RFC 9051 Appendix E item 21), and ``MODSEQ (m)``
        when ``modseq`` (RFC 7162 §3.1); expunges only if ``allow_expunge``, as EXPUNGE lines
        or, when ``vanished``, one ``VANISHED`` (RFC 7162 §3.2.10); arrivals as EXISTS (and
        RECENT for IMAP4rev1 clients). Flag changes stay pending unless ``allow_flags`` (a
        NOTIFY push the client asked no FlagChange of, RFC 5465 §5). With ``uid_only`` (RFC 9586
        §3) flag changes are ``UIDFETCH`` without the UID item; the caller asks for VANISHED.
        """
        # A new keyword is listed with what may show it: a flag change (unless held back, a
        # NOTIFY push without FlagChange, RFC 5465 §5.1), or an arrival.
        lines = self.flag_list_update() if allow_flags or self._arrived else []
        for uid in sorted(self._flags_changed) if allow_flags else ():
            if self.is_visible(uid) and uid not in self._expunged:
                items = [responses.flags_item(self.flags(uid, with_recent=rev1))]
                if modseq:
                    items.append(responses.modseq_item(self.record(uid).modseq))
                if uid_only:
                    lines.append(responses.uidfetch(uid, items))
                else:
                    items.insert(0, responses.uid_item(uid))
                    lines.append(responses.fetch(self.seq_of(uid), items))
        if allow_flags:
            self._flags_changed.clear()
        gone: list[int] = []
        if allow_expunge and self._expunged:
            gone = sorted(self._expunged)
            if vanished:
                lines.append(responses.vanished(SequenceSet.from_numbers(gone)))
            else:
                for uid in reversed(gone):
                    lines.append(responses.expunge(self.seq_of(uid)))
            removed = self._expunged
            self._uids = [uid for uid in self._uids if uid not in removed]
            self._gone.update(gone)
            for uid in gone:
                self._learned.pop(uid, None)
                self.recent.discard(uid)
            self._expunged = set()
        if self._arrived:
            for uid in sorted(self._arrived):
                self._learned[uid] = self._arrived[uid]
                self._uids.append(uid)
            self.uidnext = max(self.uidnext, self._uids[-1] + 1)
            self._arrived = {}
            lines.append(responses.exists(len(self._uids)))
            if rev1:
                lines.append(responses.recent(len(self.recent)))
        if not self._expunged and not self._flags_changed:
            self.announced_modseq = self.modseq
        return Announcement(lines, gone)
