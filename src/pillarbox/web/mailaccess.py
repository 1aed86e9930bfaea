"""Mail operations of one logged-in account, shared by the HTML pages and the JSON API.

Invariant: every mailbox and message is looked up *within the account* — an id that belongs to
another account is :class:`~pillarbox.errors.NotFound`, exactly like an id that does not exist,
so ids cannot be probed across accounts.

The one exception is a folder another account shares with this one (IMAP ACL, RFC 4314): it is
reached by its id with the rights the store's entries give (``Store.shared_with``, what IMAP
lists), and every operation checks the right RFC 4314 §4 asks of the IMAP command doing the
same thing (:data:`NEEDS`), with IMAP's answers: without any right, or without the needed one
and "l", the folder is NotFound like any other account's; with "l", PermissionDenied. Hiding a
button is the page's courtesy, not the check.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from pillarbox.blocking import run_blocking
from pillarbox.errors import InvalidName, NotFound, PermissionDenied, QuotaExceeded, UserError
from pillarbox.identities import identities_of
from pillarbox.imap import acl
from pillarbox.imap.objectid import thread_id
from pillarbox.mail.model import Attachment, MessageInfo
from pillarbox.mail.parse import UnknownTransferEncoding, decoded_part, parse_message, part_text
from pillarbox.mail.people import Person
from pillarbox.observability.log import Log
from pillarbox.policy import learning
from pillarbox.queue.intake import NOT_YOUR_FROM, NOT_YOUR_SENDER, submit
from pillarbox.queue.quotawarning import QuotaWarnings
from pillarbox.services import Services
from pillarbox.store.aclrows import canonical_rights, flag_right
from pillarbox.store.types import (
    INBOX,
    Account,
    AclEntry,
    Appended,
    Copied,
    FlagOp,
    Identity,
    Mailbox,
    MailboxStatus,
    MessageQuery,
    MessageRecord,
    SpecialUse,
)
from pillarbox.web import identities
from pillarbox.web.composing import (
    Draft,
    Upload,
    attachments_kept,
    build_message,
    check_recipients,
    draft_people,
    kept_of,
)
from pillarbox.web.reading import body_parts, body_text, part_at
from pillarbox.web.threads import MAX_THREAD_LINES, conversations, folder_page

_log = Log("web.mail")
#: Folder order: INBOX, then the special-use folders in the order people use them.
_SPECIAL_ORDER = (
    SpecialUse.DRAFTS,
    SpecialUse.SENT,
    SpecialUse.ARCHIVE,
    SpecialUse.JUNK,
    SpecialUse.TRASH,
)
#: Default names when a special-use folder has to be created.
_SPECIAL_NAMES = {
    SpecialUse.DRAFTS: "Drafts",
    SpecialUse.SENT: "Sent",
    SpecialUse.ARCHIVE: "Archive",
    SpecialUse.JUNK: "Junk",
    SpecialUse.TRASH: "Trash",
}
SEEN = "\\Seen"
FLAGGED = "\\Flagged"
ANSWERED = "\\Answered"
DELETED = "\\Deleted"
DRAFT = "\\Draft"
#: Messages of one conversation listed under an opened message, per folder (oldest first).
MAX_CONVERSATION = 100
#: RFC 5788 keywords a spam filter learns from.
JUNK_KEYWORD = "$Junk"
NOT_JUNK_KEYWORD = "$NotJunk"
#: RFC 4314 §4: the rights an operation needs on a folder, as its IMAP command would — a list
#: or a message is SELECT's "r"; a message leaving (move, delete, empty) is MOVE's "t" and "e"
#: on the source; arriving is COPY's "i"; rename is "x" and "k", delete "x", sharing "a".
#: Flags need :func:`~pillarbox.store.aclrows.flag_right` of each.
NEEDS = {
    "read": "r",
    "leave": "rte",
    "arrive": "i",
    "rename": "xk",
    "delete": "x",
    "share": "a",
}
#: What the webmail lists of another account's folders: "l" (IMAP LIST) and "r" (it can be
#: opened); one without "r" is not shown, as it could show nothing.
LISTED = frozenset("lr")


@dataclass(frozen=True, slots=True)
class Place:
    """A folder this account may reach: its own, or one another account shares with it."""

    mailbox: Mailbox
    #: The sharing account's address (None: the folder is this account's).
    owner: str | None = None
    #: This account's rights on it (RFC 4314 §2.1 letters): every right on its own folders.
    rights: frozenset[str] = acl.ALL_RIGHTS

    def may(self, rights: str) -> bool:
        return set(rights) <= self.rights

    @property
    def label(self) -> str:
        """The folder's name as lists show it: a shared one with its owner."""
        name = self.mailbox.name
        return name if self.owner is None else f"{name} ({self.owner})"


@dataclass(frozen=True, slots=True)
class Folder:
    place: Place
    status: MailboxStatus

    @property
    def mailbox(self) -> Mailbox:
        return self.place.mailbox

    @property
    def owner(self) -> str | None:
        return self.place.owner

    @property
    def rights(self) -> frozenset[str]:
        return self.place.rights

    @property
    def label(self) -> str:
        return self.place.label

    @property
    def depth(self) -> int:
        return self.mailbox.name.count("/")

    def may(self, rights: str) -> bool:
        return self.place.may(rights)


@dataclass(frozen=True, slots=True)
class Sharing:
    """A folder's access list as its owner (or an "a" holder) manages it."""

    mailbox: Mailbox
    owner: str
    entries: tuple[AclEntry, ...]


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a message list."""

    record: MessageRecord
    info: MessageInfo | None

    @property
    def seen(self) -> bool:
        return SEEN in self.record.flags

    @property
    def flagged(self) -> bool:
        return FLAGGED in self.record.flags

    @property
    def answered(self) -> bool:
        return ANSWERED in self.record.flags


@dataclass(frozen=True, slots=True)
class Page:
    total: int
    offset: int
    limit: int
    rows: tuple[Row, ...]

    @property
    def has_next(self) -> bool:
        return self.offset + len(self.rows) < self.total


@dataclass(frozen=True, slots=True)
class ThreadRow:
    """One line of a threaded list: the message and how deep it replies."""

    row: Row
    depth: int


@dataclass(frozen=True, slots=True)
class ThreadedConversation:
    """One conversation of a threaded list: its messages in the folder, as shown."""

    #: Its RFC 8474 THREADID, the id IMAP clients see on the same messages.
    thread_id: str
    rows: tuple[ThreadRow, ...]
    #: Messages of the conversation beyond those shown (MAX_THREAD_LINES).
    more: int
    #: Its messages in the folder without ``\Seen``, shown or not.
    unread: int

    @property
    def size(self) -> int:
        return len(self.rows) + self.more


@dataclass(frozen=True, slots=True)
class ThreadedPage:
    """A page of whole conversations (see :mod:`pillarbox.web.threads`)."""

    #: Conversations and messages in the folder.
    threads: int
    messages: int
    number: int
    pages: int
    conversations: tuple[ThreadedConversation, ...]

    @property
    def has_next(self) -> bool:
        return self.number < self.pages


@dataclass(frozen=True, slots=True)
class Opened:
    """A message with its bytes and metadata."""

    mailbox: Mailbox
    record: MessageRecord
    info: MessageInfo
    raw: bytes
    #: This account's rights on the folder (every right on its own).
    rights: frozenset[str] = acl.ALL_RIGHTS


@dataclass(frozen=True, slots=True)
class Described:
    """A message's metadata without its bytes (:meth:`MailAccess.describe`)."""

    mailbox: Mailbox
    record: MessageRecord
    #: None for a message stored without its parse (then only its bytes tell).
    info: MessageInfo | None
    rights: frozenset[str]


@dataclass(frozen=True, slots=True)
class SendResult:
    sent: bool
    #: Per-field problems (address syntax, refused recipients) to show beside the form.
    errors: dict[str, str]
    #: Said after a successful send when something secondary failed (copy in Sent).
    warning: str = ""


def search_terms(text: str) -> list[str]:
    """Words of a search box; "quoted phrases" stay one term."""
    try:
        return [t for t in shlex.split(text) if t.strip()]
    except ValueError:  # an unbalanced quote: take the words as they are
        return text.split()


def folder_sort_key(mailbox: Mailbox) -> tuple[int, str]:
    if mailbox.name == INBOX:
        return (0, "")
    if mailbox.special_use in _SPECIAL_ORDER:
        return (1 + _SPECIAL_ORDER.index(mailbox.special_use), "")
    return (10, mailbox.name.casefold())


#: Why a message just sent has no copy in Sent (the account is over quota): the warning the
#: compose form shows, and the Calendar page and an invitation's answer (:mod:`.scheduling`).
SENT_NOT_KEPT = "sent, but your mailbox is full: no copy was kept in Sent"


class MailAccess:
    def __init__(self, services: Services, account: Account) -> None:
        self.services = services
        self.store = services.store
        self.account = account
        #: Drafts, Sent copies and moves into another account's folders add to usage as an
        #: IMAP APPEND or COPY does, and warn the same way (docs/retention.md).
        self.quota_warnings = QuotaWarnings.of(services)

    # -- folders -------------------------------------------------------------------------------
    async def mailboxes(self) -> list[Mailbox]:
        return sorted(await self.store.list_mailboxes(self.account.id), key=folder_sort_key)

    async def folders(self) -> list[Folder]:
        """The account's folders, then those shared with it (:data:`LISTED`), by owner."""
        places = [Place(mailbox) for mailbox in await self.mailboxes()]
        places += [place for place in await self._shared() if place.may("".join(LISTED))]
        return [
            Folder(place, await self.store.mailbox_status(place.mailbox.id)) for place in places
        ]

    async def _shared(self) -> list[Place]:
        return [
            Place(s.mailbox, s.owner, frozenset(s.rights))
            for s in await self.store.shared_with(self.account.id)
        ]

    async def place(self, mailbox_id: int, needs: str = NEEDS["read"]) -> Place:
        """The folder ``mailbox_id`` if this account may do what needs ``needs`` there (see
        the module's notes)."""
        for mailbox in await self.store.list_mailboxes(self.account.id):
            if mailbox.id == mailbox_id:
                return Place(mailbox)
        for shared in await self._shared():
            if shared.mailbox.id != mailbox_id:
                continue
            if shared.may(needs):
                return shared
            if "l" in shared.rights:
                _log.info("shared folder action refused", account=self.account.address,
                          mailbox=mailbox_id, rights="".join(sorted(shared.rights)),
                          needs=needs)  # fmt: skip
                raise PermissionDenied(
                    f"your rights on {shared.owner}'s folder {shared.mailbox.name} "
                    f"({acl.format_rights(shared.rights)}) do not allow this"
                )
            break
        raise NotFound("no such folder")

    async def mailbox(self, mailbox_id: int, needs: str = NEEDS["read"]) -> Mailbox:
        return (await self.place(mailbox_id, needs)).mailbox

    async def inbox(self) -> Mailbox:
        return await self.store.get_mailbox(self.account.id, INBOX)

    async def special(self, use: SpecialUse) -> Mailbox:
        """The account's folder for ``use``, created if the account has none."""
        for mailbox in await self.store.list_mailboxes(self.account.id):
            if mailbox.special_use is use:
                return mailbox
        name = _SPECIAL_NAMES[use]
        try:
            return await self.store.create_mailbox(self.account.id, name, use)
        except UserError:  # a plain folder has the name already
            return await self.store.get_mailbox(self.account.id, name)

    async def create_folder(self, name: str) -> Mailbox:
        return await self.store.create_mailbox(self.account.id, name.strip())

    async def rename_folder(self, mailbox_id: int, new_name: str) -> None:
        """Within the folder's own account: a shared folder stays its owner's (as IMAP's
        RENAME of another user's mailbox does)."""
        mailbox = await self.mailbox(mailbox_id, NEEDS["rename"])
        if mailbox.name == INBOX or mailbox.special_use is not None:
            raise InvalidName("INBOX and special folders keep their names here")
        await self.store.rename_mailbox(mailbox.account_id, mailbox.name, new_name.strip())

    async def deletable(self, mailbox_id: int) -> Mailbox:
        """The folder, if this account may delete it (InvalidName for INBOX and the special
        folders)."""
        mailbox = await self.mailbox(mailbox_id, NEEDS["delete"])
        if mailbox.name == INBOX or mailbox.special_use is not None:
            raise InvalidName("INBOX and special folders cannot be deleted")
        return mailbox

    async def delete_folder(self, mailbox_id: int) -> None:
        await self.store.delete_mailbox((await self.deletable(mailbox_id)).id)

    # -- sharing (RFC 4314) --------------------------------------------------------------------
    async def sharing(self, mailbox_id: int) -> Sharing:
        """Who may use the folder and how (GETACL's answer; "a" needed, as there)."""
        return await self._sharing_of(await self.place(mailbox_id, NEEDS["share"]))

    async def _sharing_of(self, place: Place) -> Sharing:
        entries = tuple(await self.store.get_acl(place.mailbox.id))
        return Sharing(place.mailbox, place.owner or self.account.address, entries)

    async def share(self, mailbox_id: int, identifier: str, rights: str) -> Sharing:
        """Give ``identifier`` exactly ``rights`` (SETACL's replace, RFC 4314 §3.1), or with
        "-identifier" take exactly those away (its negative entry, §2); the list after (an
        "a" holder may just have taken their own "a" away)."""
        place = await self.place(mailbox_id, NEEDS["share"])
        try:
            grantee, negative = await self._grantee(place, identifier)
            given = _given_rights(rights)
        except UserError as exc:
            self._refused(place, identifier, exc)
            raise
        await self.store.set_acl(place.mailbox.id, grantee, given, negative=negative)
        _log.info("folder shared", account=self.account.address, mailbox=place.mailbox.id,
                  grantee=identifier.strip(), rights=given)  # fmt: skip
        return await self._sharing_of(place)

    async def unshare(self, mailbox_id: int, identifier: str) -> Sharing:
        """Remove ``identifier``'s entry, or with "-identifier" its negative one (DELETEACL,
        RFC 4314 §3.2); the list after."""
        place = await self.place(mailbox_id, NEEDS["share"])
        try:
            grantee, negative = await self._grantee(place, identifier)
        except UserError as exc:
            self._refused(place, identifier, exc)
            raise
        await self.store.set_acl(place.mailbox.id, grantee, "", negative=negative)
        _log.info("folder unshared", account=self.account.address, mailbox=place.mailbox.id,
                  grantee=identifier.strip())  # fmt: skip
        return await self._sharing_of(place)

    def _refused(self, place: Place, identifier: str, exc: UserError) -> None:
        _log.info("sharing refused", account=self.account.address, mailbox=place.mailbox.id,
                  grantee=identifier.strip(), reason=str(exc))  # fmt: skip

    async def _grantee(self, place: Place, identifier: str) -> tuple[int | str, bool]:
        """An identifier's store form (an account id, "anyone" or "authenticated") and whether
        it names the negative entry ("-identifier", RFC 4314 §2), as IMAP's SETACL takes it:
        an account of this server, never the owner (whose rights cannot be taken, §2)."""
        identifier, negative = acl.split_negative(identifier.strip())
        if not identifier:
            raise UserError("say whom to share the folder with")
        if acl.is_special(identifier):
            return identifier.lower(), negative
        grantee = await self.store.get_account(identifier)
        if grantee is None and identifier != identifier.lower():
            grantee = await self.store.get_account(identifier.lower())
        if grantee is None:
            raise UserError(f"there is no account {identifier} on this server")
        if grantee.id == place.mailbox.account_id:
            raise UserError("the owner always has every right on their folder")
        return grantee.id, negative

    # -- lists ---------------------------------------------------------------------------------
    async def page(self, mailbox: Mailbox, query: MessageQuery, *, offset: int, limit: int) -> Page:
        result = await self.store.query_messages(mailbox.id, query, offset=offset, limit=limit)
        uids = [r.uid for r in result.records]
        infos = await self.store.message_infos(mailbox.id, uids, with_text=False) if uids else {}
        rows = tuple(Row(r, infos.get(r.uid)) for r in result.records)
        return Page(result.total, offset, limit, rows)

    async def search(
        self, mailbox: Mailbox, text: str, query: MessageQuery, *, offset: int, limit: int
    ) -> Page:
        """Full-text terms (the store's index) combined with the other filters of ``query``."""
        terms = search_terms(text)
        if terms:
            query = replace(query, uids=frozenset(await self.store.search_text(mailbox.id, terms)))
        return await self.page(mailbox, query, offset=offset, limit=limit)

    async def threaded(self, mailbox: Mailbox, *, number: int, page_size: int) -> ThreadedPage:
        """Page ``number`` of the folder's conversations, newest activity first, built from
        the store's threads (see :mod:`pillarbox.web.threads`)."""
        sizes = await self.store.thread_sizes(mailbox.id)
        page = folder_page(sizes, number, page_size)
        shown = []
        if page.threads:
            fields = await self.store.thread_fields(mailbox.id, page.threads)
            shown = await run_blocking(conversations, fields, page.threads)
        uids = [line.uid for thread in shown for line in thread.lines[:MAX_THREAD_LINES]]
        rows: dict[int, Row] = {}
        if uids:
            query = MessageQuery(uids=frozenset(uids))
            found = await self.page(mailbox, query, offset=0, limit=len(uids))
            rows = {row.record.uid: row for row in found.rows}
        threaded = tuple(
            ThreadedConversation(
                thread_id(thread.thread),
                tuple(
                    ThreadRow(rows[line.uid], line.depth)
                    for line in thread.lines[:MAX_THREAD_LINES]
                    if line.uid in rows  # expunged since its thread was read
                ),
                max(thread.size - MAX_THREAD_LINES, 0),
                thread.unread,
            )
            for thread in shown
        )
        return ThreadedPage(
            len(sizes), sum(size for _, size in sizes), number, page.pages, threaded
        )

    # -- one message ---------------------------------------------------------------------------
    async def open(self, mailbox_id: int, uid: int) -> Opened:
        described = await self.describe(mailbox_id, uid)
        raw = await self.store.read_blob(described.record.blob_id)
        info = described.info or parse_message(raw)
        return Opened(described.mailbox, described.record, info, raw, described.rights)

    async def describe(self, mailbox_id: int, uid: int) -> Described:
        """What :meth:`open` finds but the message's bytes: its stored metadata is enough to
        list its parts, without reading a message of many megabytes."""
        place = await self.place(mailbox_id)
        record = await self.store.get_message(place.mailbox.id, uid)
        if record is None:
            raise NotFound("no such message")
        infos = await self.store.message_infos(place.mailbox.id, [uid])
        return Described(place.mailbox, record, infos.get(uid), place.rights)

    async def thread(self, opened: Opened) -> list[Row]:
        """Messages of the same conversation (the stored thread, RFC 8474 THREADID: what the
        threaded list and IMAP clients group) in this folder, INBOX and Sent, oldest first,
        the first MAX_CONVERSATION of each. A thread is its account's, so in another user's
        shared folder only that folder is looked in."""
        uid = opened.record.uid
        threads = await self.store.thread_ids(opened.mailbox.id, [uid])
        if uid not in threads:
            return []  # expunged since it was opened
        places = {opened.mailbox.id: opened.mailbox}
        for mailbox in (await self.inbox(), await self.special(SpecialUse.SENT)):
            if mailbox.account_id == opened.mailbox.account_id:
                places.setdefault(mailbox.id, mailbox)
        rows: list[Row] = []
        for mailbox in places.values():
            uids = await self.store.thread_uids(mailbox.id, threads[uid])
            if not uids:
                continue
            query = MessageQuery(uids=frozenset(uids), descending=False)
            page = await self.page(mailbox, query, offset=0, limit=MAX_CONVERSATION)
            rows += page.rows
        if len(rows) <= 1:
            return []
        return sorted(rows, key=_row_date)

    async def mark_seen(self, opened: Opened) -> None:
        """Reading marks read only with "s" (RFC 4314 §4, FETCH's implicit \\Seen)."""
        if SEEN not in opened.record.flags and flag_right(SEEN) in opened.rights:
            await self.store.store_flags(
                opened.mailbox.id, [opened.record.uid], FlagOp.ADD, frozenset({SEEN})
            )

    # -- actions on many -----------------------------------------------------------------------
    async def set_flag(self, mailbox_id: int, uids: Sequence[int], flag: str, on: bool) -> None:
        mailbox = await self.mailbox(mailbox_id, NEEDS["read"] + flag_right(flag))
        op = FlagOp.ADD if on else FlagOp.REMOVE
        await self.store.store_flags(mailbox.id, uids, op, frozenset({flag}))

    async def move(self, mailbox_id: int, uids: Sequence[int], target_id: int) -> None:
        source = await self.mailbox(mailbox_id, NEEDS["leave"])
        target = await self.place(target_id, NEEDS["arrive"])
        if source.id != target.mailbox.id:
            # RFC 4314 §4: into a shared folder only the flags this account may set there.
            rights = None if target.owner is None else canonical_rights(target.rights)
            await self._move(source, uids, target.mailbox, rights)

    async def _move(
        self, source: Mailbox, uids: Sequence[int], target: Mailbox, rights: str | None = None
    ) -> None:
        """Move, and let the spam filter learn from it (into Junk: spam; out of it: ham)."""
        limit = self.services.config.policy.learn_max_messages
        # Nothing to learn: no reads. Else one past the limit: enough for learning to know
        # (and log) that it stopped short.
        learnt = uids[: limit + 1] if learning.move_judgement(source, target) is not None else []
        records = [r for r in [await self.store.get_message(source.id, u) for u in learnt] if r]
        moved = await self.store.move_messages(source.id, uids, target.id, rights=rights)
        await self._watch_quota(target.account_id, moved)
        await learning.on_moved(
            self.store,
            self.account.id,
            source,
            target,
            records,
            hostname=self.services.hostname,
            limit=limit,
        )

    async def delete(self, mailbox_id: int, uids: Sequence[int]) -> None:
        """To Trash; deleting in Trash (or Junk) removes for good. From a shared folder, to
        this account's Trash."""
        source = await self.mailbox(mailbox_id, NEEDS["leave"])
        if source.special_use in (SpecialUse.TRASH, SpecialUse.JUNK):
            await self._expunge(source, uids)
            return
        trash = await self.special(SpecialUse.TRASH)
        moved = await self.store.move_messages(source.id, uids, trash.id)
        await self._watch_quota(trash.account_id, moved)

    async def _watch_quota(self, account_id: int, saved: Appended | Copied) -> None:
        """Warn the account whose usage ``saved`` raised if that took it past a threshold."""
        await self.quota_warnings.after_saving(account_id, saved.usage, saved.size, saved.count)

    async def emptiable(self, mailbox_id: int) -> Mailbox:
        """The folder, if it is Trash or Junk and this account may empty it (other folders
        refuse: too easy to regret)."""
        mailbox = await self.mailbox(mailbox_id, NEEDS["leave"])
        if mailbox.special_use not in (SpecialUse.TRASH, SpecialUse.JUNK):
            raise UserError("only Trash and Junk can be emptied")
        return mailbox

    async def empty(self, mailbox_id: int) -> None:
        """Remove everything from Trash or Junk."""
        mailbox = await self.emptiable(mailbox_id)
        uids = [r.uid for r in await self.store.list_messages(mailbox.id)]
        await self._expunge(mailbox, uids)

    async def _expunge(self, mailbox: Mailbox, uids: Sequence[int]) -> None:
        if uids:
            await self.store.store_flags(mailbox.id, uids, FlagOp.ADD, frozenset({DELETED}))
            await self.store.expunge(mailbox.id, list(uids))

    async def mark_junk(self, mailbox_id: int, uids: Sequence[int], junk: bool) -> None:
        """Mark as spam (to Junk, keyword ``$Junk``) or not spam (to INBOX, ``$NotJunk``):
        this account's Junk or INBOX, also from a shared folder."""
        target = await self.special(SpecialUse.JUNK) if junk else await self.inbox()
        needs = NEEDS["read"] + flag_right(JUNK_KEYWORD)
        source = await self.mailbox(
            mailbox_id, needs if target.id == mailbox_id else needs + NEEDS["leave"]
        )
        add, remove = (JUNK_KEYWORD, NOT_JUNK_KEYWORD) if junk else (NOT_JUNK_KEYWORD, JUNK_KEYWORD)
        await self.store.store_flags(source.id, uids, FlagOp.REMOVE, frozenset({remove}))
        await self.store.store_flags(source.id, uids, FlagOp.ADD, frozenset({add}))
        if target.id != source.id:
            await self._move(source, uids, target)

    # -- sending ---------------------------------------------------------------------------------
    @property
    def me(self) -> Person:
        return Person(self.account.display_name, self.account.address)

    async def kept_parts(
        self, references: Sequence[str], *, with_bytes: bool = False
    ) -> list[tuple[str, Opened | Described, Attachment]]:
        """The stored attachments "mailbox:uid:section" references name (:attr:`Draft.kept`),
        each once, with the message holding it — its metadata only, unless ``with_bytes``
        (the compose form lists them; only a send or a save reads the parts); NotFound for
        one no longer there (the draft was sent or deleted meanwhile) or not a part
        :func:`attachments_kept` offers."""
        limit = self.services.config.web.max_attachments
        unique = list(dict.fromkeys(references))
        if len(unique) > limit:
            raise UserError(f"at most {limit} attachments per message")
        messages: dict[str, Opened | Described] = {}
        found: list[tuple[str, Opened | Described, Attachment]] = []
        for reference in unique:
            message, _, section = reference.rpartition(":")
            if message not in messages:
                messages[message] = await self._looked_up(message, with_bytes=with_bytes)
            held = messages[message]
            assert held.info is not None  # _looked_up opened the bytes of one without it
            match = [a for a in attachments_kept(held.info) if a.section == section]
            if not match:
                raise NotFound("that attachment is no longer there")
            found.append((reference, held, match[0]))
        return found

    async def _looked_up(self, reference: str, *, with_bytes: bool) -> Opened | Described:
        if with_bytes:
            return await self.open_reference(reference)
        mailbox_id, uid = _reference(reference)
        described = await self.describe(mailbox_id, uid)
        # Stored without its parse (none is, since the parse came in): its bytes tell.
        return described if described.info is not None else await self.open(mailbox_id, uid)

    async def kept_all(self, reference: str) -> tuple[str, ...]:
        """:attr:`Draft.kept` for every attachment of the message ``reference`` names (the one
        forwarded, a draft just saved)."""
        held = await self._looked_up(reference, with_bytes=False)
        assert held.info is not None  # _looked_up opened the bytes of one stored without it
        return kept_of(held.info, reference)

    async def _attached(self, draft: Draft) -> Draft:
        """``draft`` with its kept parts read from the store, before its new uploads."""
        uploads: list[Upload] = []
        for _, opened, attachment in await self.kept_parts(draft.kept, with_bytes=True):
            assert isinstance(opened, Opened)
            part = part_at(opened.info, attachment.section)
            assert part is not None  # attachments_kept found it
            try:
                data = decoded_part(opened.raw, part)
            except UnknownTransferEncoding:
                data = opened.raw[part.body_start : part.body_end]
            uploads.append(
                Upload(attachment.filename or "attachment", attachment.content_type, data)
            )
        limit = self.services.config.web.max_attachments
        if len(uploads) + len(draft.attachments) > limit:
            raise UserError(f"at most {limit} attachments per message")
        return replace(draft, attachments=(*uploads, *draft.attachments), kept=())

    def _within_size(self, raw: bytes) -> None:
        """The largest message the server accepts by SMTP is the largest the webmail builds:
        kept attachments add up over saves, past what one upload may carry."""
        limit = self.services.config.smtp.max_message_size
        if len(raw) > limit:
            raise UserError(
                f"the message would be {len(raw):,} bytes; at most {limit:,} may be sent"
            )

    async def open_reference(self, reference: str) -> Opened:
        return await self.open(*_reference(reference))

    async def send(
        self, draft: Draft, *, max_recipients: int, client_ip: str, tls: bool
    ) -> SendResult:
        recipients = check_recipients(draft, max_recipients=max_recipients)
        if recipients.errors:
            return SendResult(False, dict(recipients.errors))
        try:
            identity = identities.chosen(await self.identities(), draft.identity)
        except UserError as exc:
            return SendResult(False, {"identity": str(exc)})
        try:
            draft = await self._attached(draft)
        except UserError as exc:
            return SendResult(False, {"attachment": str(exc)})
        now = datetime.now(UTC)
        hostname = self.services.hostname
        sender = identities.sender(identity, self.account)
        reply_to = identities.reply_to(identity)
        raw, message_id = build_message(
            draft, sender=sender, recipients=recipients, hostname=hostname, now=now,
            include_bcc=False, reply_to=reply_to,
        )  # fmt: skip
        try:
            self._within_size(raw)
        except UserError as exc:
            return SendResult(False, {"attachment": str(exc)})
        # The chosen address is the envelope sender too (as Roundcube sends): bounces come
        # back to it, and SPF aligns with the From's domain. The intake checks both.
        submitted = await submit(
            self.services,
            self.account,
            raw,
            identity.address,
            recipients.envelope,
            client_ip=client_ip,
            tls=tls,
        )
        refused = "; ".join(f"{address}: {reply.text}" for address, reply in submitted.refused)
        if not submitted.ok:
            if submitted.reply in (NOT_YOUR_SENDER, NOT_YOUR_FROM):
                return SendResult(False, {"identity": submitted.reply.text})
            return SendResult(False, {"to": refused or submitted.reply.text})
        copy, _ = build_message(
            draft, sender=sender, recipients=recipients, hostname=hostname, now=now,
            include_bcc=True, message_id=message_id, reply_to=reply_to,
        )  # fmt: skip
        warning = f"not delivered to {refused}" if refused else ""
        warning = await self.keep_sent(copy, now) or warning
        await self._after_send(draft)
        return SendResult(True, {}, warning)

    async def keep_sent(self, copy: bytes, now: datetime) -> str:
        """Keep ``copy`` of a message just sent in Sent, seen; "" when it was kept, else why
        not (the message is sent either way). The webmail's invitations and answers keep
        theirs here too (:mod:`.scheduling`)."""
        try:
            sent = await self.special(SpecialUse.SENT)
            # Off the loop: a sent message carries its attachments (up to the size limit).
            info = await run_blocking(parse_message, copy)
            appended = await self.store.append(
                sent.id, copy, info, flags=frozenset({SEEN}), internal_date=now
            )
        except QuotaExceeded:
            return SENT_NOT_KEPT
        await self._watch_quota(sent.account_id, appended)
        return ""

    async def identities(self) -> list[Identity]:
        """The identities this account may send as (see :mod:`.identities`)."""
        return await identities_of(self.services, self.account)

    async def _after_send(self, draft: Draft) -> None:
        if draft.replying_to:
            await self._mark_answered(draft.replying_to)
        if draft.draft_uid is not None:
            drafts = await self.special(SpecialUse.DRAFTS)
            await self._expunge(drafts, [draft.draft_uid])

    async def _mark_answered(self, reference: str) -> None:
        try:
            parent = await self.open_reference(reference)
        except (NotFound, PermissionDenied):
            return  # the original was moved, deleted or unshared meanwhile
        await self.mark_answered(parent)

    async def mark_answered(self, opened: Opened) -> None:
        """Mark ``opened`` \\Answered, as a client marks the message it replied to (RFC 9051
        §2.3.2): a reply sent, or an invitation answered (:mod:`.invitations`)."""
        if flag_right(ANSWERED) in opened.rights:  # RFC 4314 §4: else left unmarked
            await self.store.store_flags(
                opened.mailbox.id, [opened.record.uid], FlagOp.ADD, frozenset({ANSWERED})
            )

    async def save_draft(self, draft: Draft) -> int:
        """Store the draft in Drafts (replacing its previous version), its attachments in it as
        a mail app's draft holds them; returns its new UID."""
        drafts = await self.special(SpecialUse.DRAFTS)
        draft = await self._attached(draft)
        try:
            identity = identities.chosen(await self.identities(), draft.identity)
        except UserError:
            identity = identities.default_identity(await self.identities())
        raw, _ = build_message(
            draft,
            sender=identities.sender(identity, self.account),
            reply_to=identities.reply_to(identity),
            recipients=draft_people(draft),
            hostname=self.services.hostname,
            now=datetime.now(UTC),
            include_bcc=True,
            as_draft=True,
        )
        self._within_size(raw)
        info = await run_blocking(parse_message, raw)  # off the loop, as keep_sent's
        appended = await self.store.append(drafts.id, raw, info, flags=frozenset({SEEN, DRAFT}))
        await self._watch_quota(drafts.account_id, appended)
        if draft.draft_uid is not None:
            await self._expunge(drafts, [draft.draft_uid])
        return appended.record.uid

    def text_of(self, opened: Opened) -> str:
        return body_text(opened.raw, opened.info)

    def html_of(self, opened: Opened) -> str:
        """The message's HTML body as sent, not sanitised ("" when it has none)."""
        part = body_parts(opened.info).html
        return part_text(opened.raw, part) if part is not None else ""

    async def own_addresses(self) -> set[str]:
        """The account's addresses, its aliases and its identities' (left out of reply-all)."""
        owned = await self.services.router.owned_addresses(self.account)
        return {a.lower() for a in owned} | {i.address.lower() for i in await self.identities()}


def _given_rights(text: str) -> str:
    """The rights a sharing form or API call gives, as stored: RFC 4314 §2.1 letters, "c" and
    "d" as §2.1.1 reads them; no "+" or "-" (a form says the whole set) and not none."""
    letters = text.strip()
    if letters[:1] in ("+", "-"):
        raise UserError("give the rights as letters, without + or -")
    try:
        change = acl.parse_rights(letters)
    except acl.BadRights as exc:
        raise UserError(
            f"“{exc}” is not a right: use the letters {acl.format_rights(acl.ALL_RIGHTS)}"
        ) from None
    if not change.rights:
        raise UserError("choose at least one right, or stop sharing instead")
    return canonical_rights(change.rights)


def _row_date(row: Row) -> datetime:
    if row.info is not None and row.info.sent_date is not None:
        return row.info.sent_date
    return row.record.internal_date


def _reference(reference: str) -> tuple[int, int]:
    """The (mailbox id, uid) a "mailbox:uid" reference names (NotFound when it names none)."""
    mailbox_text, _, uid_text = reference.partition(":")
    try:
        return int(mailbox_text), int(uid_text)
    except ValueError:
        raise NotFound("no such message") from None
