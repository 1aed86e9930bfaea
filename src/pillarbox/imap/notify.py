"""NOTIFY (RFC 5465): which events a session asked for, and what they become on the wire.

Implementation notes:

- **Two halves.** :func:`plan` checks a NOTIFY SET against §5, §6.1 and §8 and turns it into a
  :class:`NotifyPlan` (or refuses it with the reply §3.1 prescribes); :class:`Notifier` holds
  one session's plan and its picture of the account, takes change-feed hints
  (:meth:`Notifier.hint`) and turns them into untagged STATUS and LIST responses
  (:meth:`Notifier.updates`). Events of the *selected* mailbox stay with the session and its
  :class:`~pillarbox.imap.selected.SelectedView` (EXISTS, EXPUNGE, FETCH); only whether and
  when they are pushed, and MessageNew's fetch attributes, come from the plan.
- **Hints, then the truth.** A hint only marks a mailbox (or the mailbox list, or the
  subscriptions, or a mailbox's METADATA) as worth a look; the notifier re-reads the store
  and compares with what it
  last told the client, so coalesced or duplicated hints (see :mod:`pillarbox.store.feed`)
  change nothing. STATUS carries what changed: UIDNEXT and MESSAGES for MessageNew and
  MessageExpunge (§5.2, §5.3), HIGHESTMODSEQ with them once CONDSTORE is on, HIGHESTMODSEQ and
  UIDVALIDITY for FlagChange with CONDSTORE (§5.1), UNSEEN for FlagChange when it moved (the
  MAY of §5.1: without CONDSTORE the client learns nothing else), UIDVALIDITY when it changed.
- **Mailbox names** (§5.4) are a diff of the account's mailboxes by id: a new id is a
  creation, a lost one a deletion (``\\NonExistent``), a new name a rename (``OLDNAME``),
  reported once for the top of a renamed subtree; a created or deleted mailbox's parent is
  listed too, with its new attributes. **Subscriptions** (§5.5) are a diff of the name set.
- **METADATA** (§5.6, §5.7): the notifier keeps a digest of every entry of the account
  (server entries under mailbox id 0), taken at NOTIFY SET; a METADATA hint re-reads that
  mailbox's (or the server's) entries and reports, by name only (RFC 5464 §4.4.2), exactly
  the entries that were added, changed or removed (removed ones always, §5.6). Entries of a
  mailbox created later start from none; a deleted mailbox's go with it, unreported (its
  MailboxName event says it). The hints cross nodes on PostgreSQL like every other change.
- **The client's own changes** are not echoed (§5 SHOULD): after its own CREATE, RENAME,
  DELETE, (UN)SUBSCRIBE, APPEND or COPY the session calls :meth:`Notifier.absorb`, which takes
  the new state in silently (SETMETADATA: :meth:`Notifier.absorb_metadata`). A change by
  another session landing in the same instant may be absorbed with it; the next change of
  that mailbox is reported as usual.
- **Scope.** One personal namespace, no ACLs (RFC 4314): every mailbox is LISTable and
  readable, so §3.1's access checks never refuse and ``\\NoAccess`` never appears. "inboxes"
  is "personal" (§6.3 allows it: plus-addressing can deliver to any mailbox). Unsupported
  events (AnnotationChange: no per-message annotations, RFC 5257; unknown ones) are refused
  with ``NO [BADEVENT (...)]`` listing the supported ones (§3.1).
- **Overflow** (§5.8): more watched mailboxes than ``max_mailboxes`` refuses NOTIFY SET with
  ``NO [NOTIFICATIONOVERFLOW]``; if the account grows past it later, the notifier says
  ``* OK [NOTIFICATIONOVERFLOW]`` once and behaves as after NOTIFY NONE.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from pillarbox.errors import NotFound
from pillarbox.imap import commands as c
from pillarbox.imap import responses
from pillarbox.imap.fetch import FetchAtt
from pillarbox.imap.listing import NON_EXISTENT, SUBSCRIBED, list_mailboxes
from pillarbox.imap.responses import Code, Condition, Reply
from pillarbox.store.interface import Store
from pillarbox.store.types import DELIMITER, Change, ChangeKind, Mailbox, MailboxStatus

__all__ = [
    "SUPPORTED_EVENTS",
    "Notifier",
    "NotifyPlan",
    "NotifyRefused",
    "Watch",
    "plan",
]

_MESSAGE_EVENTS: Final = frozenset(
    {"MessageNew", "MessageExpunge", "FlagChange", "AnnotationChange"}
)
#: What this server can report (the list a BADEVENT code carries, RFC 5465 §3.1).
SUPPORTED_EVENTS: Final = (
    "MessageNew",
    "MessageExpunge",
    "FlagChange",
    "MailboxName",
    "SubscriptionChange",
    "MailboxMetadataChange",
    "ServerMetadataChange",
)

NOTIFICATIONOVERFLOW: Final = Code("NOTIFICATIONOVERFLOW")  # RFC 5465 §5.8
BADEVENT: Final = Code("BADEVENT", b"(" + " ".join(SUPPORTED_EVENTS).encode("ascii") + b")")

OK_NOTIFY: Final = Reply(Condition.OK, "NOTIFY completed")
NO_BADEVENT: Final = Reply(Condition.NO, "Unsupported NOTIFY event", BADEVENT)
NO_OVERFLOW: Final = Reply(Condition.NO, "Too many mailboxes to watch", NOTIFICATIONOVERFLOW)
OVERFLOW: Final = Reply(Condition.OK, "Notifications stopped, too many", NOTIFICATIONOVERFLOW)
BAD_TWO_SELECTED: Final = Reply(Condition.BAD, "Only one of SELECTED and SELECTED-DELAYED")
BAD_SELECTED_EVENT: Final = Reply(Condition.BAD, "SELECTED takes message events only")
BAD_FETCH_ATTS: Final = Reply(Condition.BAD, "MessageNew attributes only for SELECTED")
BAD_EVENT_PAIRS: Final = Reply(
    Condition.BAD, "MessageNew and MessageExpunge go together, and FlagChange needs both"
)

#: The order of STATUS items in a notification: that of every example in RFC 5465.
_STATUS_ORDER: Final = ("HIGHESTMODSEQ", "UIDVALIDITY", "UIDNEXT", "MESSAGES", "UNSEEN")


class NotifyRefused(Exception):
    """A NOTIFY SET that must be answered with ``reply`` and change nothing."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.text)
        self.reply = reply


@dataclass(frozen=True, slots=True)
class Watch:
    """The events asked for a mailbox (the union over the groups that match it)."""

    messages: bool = False  # MessageNew and MessageExpunge (always together, §5)
    flags: bool = False  # FlagChange
    names: bool = False  # MailboxName
    subscriptions: bool = False  # SubscriptionChange
    metadata: bool = False  # MailboxMetadataChange
    server_metadata: bool = False  # ServerMetadataChange (of any group: not per mailbox)

    def __or__(self, other: Watch) -> Watch:
        return Watch(
            self.messages or other.messages,
            self.flags or other.flags,
            self.names or other.names,
            self.subscriptions or other.subscriptions,
            self.metadata or other.metadata,
            self.server_metadata or other.server_metadata,
        )


@dataclass(frozen=True, slots=True)
class _Group:
    filter: str
    mailboxes: tuple[str, ...]
    watch: Watch

    def matches(self, name: str, subscriptions: set[str]) -> bool:
        # RFC 5465 §6.2-6.6; one personal namespace, so "inboxes" is "personal" (§6.3).
        if self.filter in ("PERSONAL", "INBOXES"):
            return True
        if self.filter == "SUBSCRIBED":
            return name in subscriptions
        if self.filter == "MAILBOXES":  # §6.6: names as given, no wildcards
            return name in self.mailboxes
        return any(name == top or name.startswith(top + DELIMITER) for top in self.mailboxes)


@dataclass(frozen=True, slots=True)
class NotifyPlan:
    """A checked NOTIFY SET; the empty plan is NOTIFY NONE."""

    #: Message events of the selected mailbox are pushed (SELECTED or SELECTED-DELAYED, §6.1).
    selected: bool = False
    #: SELECTED-DELAYED: expunges wait for a command that may carry them (§6.1.2).
    delayed: bool = False
    #: FlagChange for the selected mailbox: its flag updates are pushed too (§5.1); without
    #: it they wait for a command, as in plain IMAP (§5: "not to send an event by omitting").
    selected_flags: bool = False
    #: MessageNew's fetch attributes for the selected mailbox (§5.2).
    fetch_atts: tuple[FetchAtt, ...] = ()
    groups: tuple[_Group, ...] = ()
    #: The STATUS indicator: report each watched mailbox once now (§3.1).
    status: bool = False

    def watch(self, name: str, subscriptions: set[str]) -> Watch:
        result = Watch()
        for group in self.groups:
            if group.matches(name, subscriptions):
                result |= group.watch
        return result

    @property
    def server_metadata(self) -> bool:
        """ServerMetadataChange (§5.7) in any group: server entries are no mailbox's."""
        return any(group.watch.server_metadata for group in self.groups)

    @property
    def metadata(self) -> bool:
        """Whether any METADATA event was asked for (the notifier then keeps entry digests)."""
        return any(group.watch.metadata or group.watch.server_metadata for group in self.groups)


def plan(command: c.Notify) -> NotifyPlan:
    """Check a NOTIFY command (RFC 5465 §3.1, §5, §6.1, §8) and return what it asks for.

    Raises :class:`NotifyRefused`: BAD for a malformed request, ``NO [BADEVENT]`` for an event
    this server does not report (checked after the BAD rules, which are the client's error)."""
    if command.groups is None:
        return NotifyPlan()
    selected = [g for g in command.groups if g.filter in c.NOTIFY_SELECTED]
    if len(selected) > 1:
        raise NotifyRefused(BAD_TWO_SELECTED)  # §6.1: only one of them
    unsupported = False
    groups: list[_Group] = []
    for group in command.groups:
        events = set(group.events)
        is_selected = group.filter in c.NOTIFY_SELECTED
        if is_selected and events - _MESSAGE_EVENTS:
            raise NotifyRefused(BAD_SELECTED_EVENT)  # §6.1
        if group.fetch_atts and not is_selected:
            raise NotifyRefused(BAD_FETCH_ATTS)  # §8 message-event
        new, expunge = "MessageNew" in events, "MessageExpunge" in events
        changes = bool(events & {"FlagChange", "AnnotationChange"})
        if new != expunge or (changes and not new):
            raise NotifyRefused(BAD_EVENT_PAIRS)  # §5
        unsupported |= bool(events - set(SUPPORTED_EVENTS))
        watch = Watch(
            messages=new,
            flags="FlagChange" in events,
            names="MailboxName" in events,
            subscriptions="SubscriptionChange" in events,
            metadata="MailboxMetadataChange" in events,
            server_metadata="ServerMetadataChange" in events,
        )
        if not is_selected:
            groups.append(_Group(group.filter, group.mailboxes, watch))
    if unsupported:
        raise NotifyRefused(NO_BADEVENT)
    chosen = selected[0] if selected else None
    return NotifyPlan(
        selected=chosen is not None and "MessageNew" in chosen.events,
        delayed=chosen is not None and chosen.filter == "SELECTED-DELAYED",
        selected_flags=chosen is not None and "FlagChange" in chosen.events,
        fetch_atts=chosen.fetch_atts if chosen is not None else (),
        groups=tuple(groups),
        status=command.status,
    )


@dataclass(frozen=True, slots=True)
class _Counts:
    """What the client was last told of a mailbox (or could compute from it)."""

    uidvalidity: int
    uidnext: int
    messages: int
    highestmodseq: int
    unseen: int

    @classmethod
    def of(cls, status: MailboxStatus) -> _Counts:
        box = status.mailbox
        return cls(box.uidvalidity, box.uidnext, status.messages, box.highestmodseq, status.unseen)

    @classmethod
    def empty(cls, uidvalidity: int) -> _Counts:
        """A mailbox first seen after NOTIFY SET: as created, so its content is news."""
        return cls(uidvalidity, 1, 0, 0, 0)

    def value(self, item: str) -> int:
        return {
            "UIDVALIDITY": self.uidvalidity,
            "UIDNEXT": self.uidnext,
            "MESSAGES": self.messages,
            "HIGHESTMODSEQ": self.highestmodseq,
            "UNSEEN": self.unseen,
        }[item]


def _changed_items(
    watch: Watch, before: _Counts, after: _Counts, *, flags_changed: bool, condstore: bool
) -> set[str]:
    """The STATUS items that report the difference (RFC 5465 §5.1-§5.3). ``flags_changed``:
    a FLAGS hint came (an arrival or expunge moves HIGHESTMODSEQ and UNSEEN too, and is
    reported as such, not as a FlagChange)."""
    items: set[str] = set()
    if before.uidvalidity != after.uidvalidity:
        items.add("UIDVALIDITY")  # §5.1: UIDVALIDITY changes must be reported
    if watch.messages and (before.uidnext, before.messages) != (after.uidnext, after.messages):
        items |= {"UIDNEXT", "MESSAGES"}
        if condstore:  # §5.2 with CONDSTORE, §5.3 with QRESYNC (which implies it)
            items.add("HIGHESTMODSEQ")
    if watch.flags and flags_changed and before.highestmodseq != after.highestmodseq:
        if condstore:
            items |= {"HIGHESTMODSEQ", "UIDVALIDITY"}
        if before.unseen != after.unseen:
            items.add("UNSEEN")
    return items


def _initial_items(watch: Watch, *, condstore: bool) -> set[str]:
    """RFC 5465 §3.1: what NOTIFY SET STATUS reports of a watched mailbox."""
    items = {"UIDVALIDITY", "UIDNEXT", "MESSAGES"} if watch.messages else set()
    if watch.flags and condstore:
        items |= {"UIDVALIDITY", "HIGHESTMODSEQ"}
    return items


def _status_line(name: str, counts: _Counts, items: set[str], *, utf8: bool) -> bytes:
    ordered = [(item, counts.value(item)) for item in _STATUS_ORDER if item in items]
    return responses.status(name, ordered, utf8=utf8)


def _digests(entries: Mapping[str, bytes]) -> dict[str, bytes]:
    """What the notifier keeps of a mailbox's entries: enough to tell a change, not the
    values (up to ``imap.metadata_max_total`` per account and session otherwise)."""
    return {
        name: hashlib.blake2b(value, digest_size=16).digest() for name, value in entries.items()
    }


def _parent(name: str) -> str | None:
    head, sep, _ = name.rpartition(DELIMITER)
    return head if sep else None


class Notifier:
    """One session's NOTIFY state: the plan, what the client knows, what may have changed."""

    __slots__ = (
        "_dirty",
        "_known",
        "_metadata",
        "_metadata_dirty",
        "_names",
        "_names_dirty",
        "_subscriptions",
        "_subscriptions_dirty",
        "account_id",
        "max_mailboxes",
        "plan",
    )

    def __init__(self, account_id: int, plan: NotifyPlan, *, max_mailboxes: int) -> None:
        self.account_id = account_id
        self.plan = plan
        #: Watched mailboxes before :data:`NOTIFICATIONOVERFLOW` (§5.8).
        self.max_mailboxes = max_mailboxes
        #: The account's mailboxes (id → name) and subscriptions as the client knows them.
        self._names: dict[int, str] = {}
        self._subscriptions: set[str] = set()
        #: Each watched mailbox's counters as last reported (or taken in silently).
        self._known: dict[int, _Counts] = {}
        #: Mailboxes hinted at, with the kinds of change (FLAGS tells a FlagChange apart).
        self._dirty: dict[int, set[ChangeKind]] = {}
        self._names_dirty = False
        self._subscriptions_dirty = False
        #: Digests of every entry the client knows, by mailbox id (0: the server's).
        self._metadata: dict[int, dict[str, bytes]] = {}
        #: Mailbox ids (0: the server) whose entries were hinted at.
        self._metadata_dirty: set[int] = set()

    @property
    def active(self) -> bool:
        """Whether anything at all is to be reported (False after NOTIFY NONE, or a SET whose
        groups all say NONE)."""
        return self.plan.selected or any(group.watch != Watch() for group in self.plan.groups)

    async def start(
        self, store: Store, selected_id: int | None, *, condstore: bool, utf8: bool
    ) -> list[bytes]:
        """Take the account's current state in; the STATUS lines NOTIFY SET STATUS sends.

        Raises :class:`NotifyRefused` (``NO [NOTIFICATIONOVERFLOW]``) when too many
        mailboxes would be watched."""
        boxes = await store.list_mailboxes(self.account_id)
        self._subscriptions = await store.list_subscriptions(self.account_id)
        self._names = {box.id: box.name for box in boxes}
        watched = self._watched(boxes)
        if len(watched) > self.max_mailboxes:
            raise NotifyRefused(NO_OVERFLOW)
        if self.plan.metadata:
            every = await store.list_metadata(self.account_id)
            self._metadata = {key: _digests(entries) for key, entries in every.items()}
        lines = []
        for box, watch in watched:
            try:
                counts = _Counts.of(await store.mailbox_status(box.id))
            except NotFound:
                continue  # deleted meanwhile: its deletion is reported later
            self._known[box.id] = counts
            items = _initial_items(watch, condstore=condstore)
            if self.plan.status and items and box.id != selected_id:
                lines.append(_status_line(box.name, counts, items, utf8=utf8))
        return lines

    def _watched(self, boxes: Iterable[Mailbox]) -> list[tuple[Mailbox, Watch]]:
        """The mailboxes with message events asked for, and what is asked."""
        pairs = [(box, self.plan.watch(box.name, self._subscriptions)) for box in boxes]
        return [(box, watch) for box, watch in pairs if watch.messages or watch.flags]

    def hint(self, change: Change) -> None:
        """A change-feed hint (see the module notes); cheap, no store access."""
        if not self.active:
            return
        if change.kind is ChangeKind.MAILBOXES:
            self._names_dirty = True
        elif change.kind is ChangeKind.METADATA:
            if self.plan.metadata:
                self._metadata_dirty.add(change.mailbox_id)
        elif change.kind is ChangeKind.SUBSCRIPTIONS:
            self._subscriptions_dirty = True
        else:
            self._dirty.setdefault(change.mailbox_id, set()).add(change.kind)

    @property
    def pending(self) -> bool:
        return (
            bool(self._dirty)
            or self._names_dirty
            or self._subscriptions_dirty
            or bool(self._metadata_dirty)
        )

    async def absorb_metadata(self, store: Store, mailbox_id: int) -> None:
        """Take in this session's own SETMETADATA silently (``mailbox_id`` 0: the server)."""
        if self.plan.metadata:
            self._metadata[mailbox_id] = _digests(await self._entries(store, mailbox_id))

    async def _entries(self, store: Store, mailbox_id: int) -> dict[str, bytes]:
        try:
            return await store.get_metadata(self.account_id, mailbox_id or None)
        except NotFound:
            return {}  # deleted meanwhile: its MailboxName event tells

    async def _metadata_changes(self, store: Store, *, utf8: bool) -> list[bytes]:
        """RFC 5465 §5.6, §5.7: one unsolicited METADATA (names only) per mailbox or server
        whose entries changed, listing exactly the added, changed and removed ones."""
        dirty, self._metadata_dirty = self._metadata_dirty, set()
        lines = []
        for mailbox_id in sorted(dirty):
            if mailbox_id == 0:
                name = ""
                asked = self.plan.server_metadata
            else:
                found = self._names.get(mailbox_id)
                if found is None:
                    continue  # unknown yet (created meanwhile) or gone
                name = found
                asked = self.plan.watch(name, self._subscriptions).metadata
            after = _digests(await self._entries(store, mailbox_id))
            before = self._metadata.get(mailbox_id, {})
            self._metadata[mailbox_id] = after
            changed = sorted(
                n for n in after.keys() | before.keys() if after.get(n) != before.get(n)
            )
            if asked and changed:
                lines.append(responses.metadata_names(name, changed, utf8=utf8))
        return lines

    async def absorb(self, store: Store, *, mailbox_id: int | None = None) -> None:
        """Take in this session's own change silently (RFC 5465 §5: not echoed)."""
        if mailbox_id is None:
            boxes = await store.list_mailboxes(self.account_id)
            self._subscriptions = await store.list_subscriptions(self.account_id)
            self._names = {box.id: box.name for box in boxes}
            for box, _ in self._watched(boxes):
                if box.id not in self._known:  # created by this session (RENAME INBOX moves
                    await self.absorb(store, mailbox_id=box.id)  # messages into a new one)
            return
        if mailbox_id in self._names:
            try:
                self._known[mailbox_id] = _Counts.of(await store.mailbox_status(mailbox_id))
            except NotFound:
                self._known.pop(mailbox_id, None)

    async def updates(
        self, store: Store, selected_id: int | None, *, condstore: bool, utf8: bool
    ) -> list[bytes]:
        """The untagged responses for what changed since the last call (module notes)."""
        if not self.pending:
            return []
        lines: list[bytes] = []
        boxes: list[Mailbox] | None = None
        if self._names_dirty or self._subscriptions_dirty:
            boxes = await store.list_mailboxes(self.account_id)
            subscriptions = await store.list_subscriptions(self.account_id)
            lines += self._name_changes(boxes, subscriptions, utf8=utf8)
            lines += self._subscription_changes(boxes, subscriptions, utf8=utf8)
            self._names = {box.id: box.name for box in boxes}
            self._subscriptions = subscriptions
            for box in boxes:
                if box.id not in self._known:
                    self._dirty.setdefault(box.id, set())
            self._names_dirty = self._subscriptions_dirty = False
            if len(self._watched(boxes)) > self.max_mailboxes:
                self.plan = NotifyPlan()  # §5.8: as if NOTIFY NONE had been received
                self._dirty.clear()
                return [*lines, OVERFLOW.untagged()]
        if self._metadata_dirty:
            lines += await self._metadata_changes(store, utf8=utf8)
        dirty, self._dirty = self._dirty, {}
        for mailbox_id, kinds in sorted(dirty.items()):
            name = self._names.get(mailbox_id)
            if name is None or mailbox_id == selected_id:
                continue  # gone (reported as a name change), or the session's own view's
            watch = self.plan.watch(name, self._subscriptions)
            if not (watch.messages or watch.flags):
                continue
            try:
                after = _Counts.of(await store.mailbox_status(mailbox_id))
            except NotFound:
                continue
            before = self._known.get(mailbox_id) or _Counts.empty(after.uidvalidity)
            self._known[mailbox_id] = after
            items = _changed_items(
                watch,
                before,
                after,
                flags_changed=ChangeKind.FLAGS in kinds,
                condstore=condstore,
            )
            if items:
                lines.append(_status_line(name, after, items, utf8=utf8))
        return lines

    def _list_line(
        self,
        name: str,
        boxes: Sequence[Mailbox],
        subscriptions: set[str],
        *,
        utf8: bool,
        oldname: str | None = None,
    ) -> bytes:
        """``* LIST`` for ``name`` with accurate attributes (§5.4, §5.5; RFC 5258)."""
        entries = list_mailboxes(
            boxes,
            subscriptions,
            reference="",
            patterns=[name],
            return_options=frozenset({"SUBSCRIBED"}),
        )
        attributes: tuple[str, ...] = (NON_EXISTENT,)
        if entries:
            attributes = entries[0].attributes
        elif name in subscriptions:
            attributes += (SUBSCRIBED,)
        return responses.list_item(attributes, DELIMITER, name, utf8=utf8, oldname=oldname)

    def _name_changes(
        self, boxes: Sequence[Mailbox], subscriptions: set[str], *, utf8: bool
    ) -> list[bytes]:
        """RFC 5465 §5.4 for the mailboxes whose MailboxName events were asked for."""
        current = {box.id: box.name for box in boxes}
        old = self._names
        renamed = {old[i]: name for i, name in current.items() if i in old and old[i] != name}
        affected: dict[str, str | None] = {}  # name → old name (renames)
        for old_name, new_name in renamed.items():
            parent = _parent(old_name)
            if parent in renamed and renamed[parent] == _parent(new_name):
                continue  # §5.4: renamed with its parent, no event of its own
            affected[new_name] = old_name
        created = [name for i, name in current.items() if i not in old]
        deleted = [name for i, name in old.items() if i not in current]
        for name in created + deleted:
            affected.setdefault(name, None)
        for name in created + deleted:  # §5.4: and the direct parent
            parent = _parent(name)
            if parent is not None:
                affected.setdefault(parent, None)
        lines = []
        for name, was in affected.items():
            asked = self.plan.watch(name, subscriptions).names or (
                was is not None and self.plan.watch(was, subscriptions).names
            )
            if asked:
                lines.append(self._list_line(name, boxes, subscriptions, utf8=utf8, oldname=was))
        return lines

    def _subscription_changes(
        self, boxes: Sequence[Mailbox], subscriptions: set[str], *, utf8: bool
    ) -> list[bytes]:
        """RFC 5465 §5.5: a LIST for each name whose subscription changed."""
        changed = sorted(subscriptions ^ self._subscriptions)
        return [
            self._list_line(name, boxes, subscriptions, utf8=utf8)
            for name in changed
            if self.plan.watch(name, subscriptions | self._subscriptions).subscriptions
        ]
