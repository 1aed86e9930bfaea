"""The storage contract suite: what every :class:`~pillarbox.store.interface.Store` must do.

A backend's test module subclasses :class:`StoreContract` and provides one fixture,
``store_factory``: a callable returning a new, *unopened* store over the same persistent data
each time it is called (so closing one and opening the next tests durability)::

    class TestSqliteStore(StoreContract):
        @pytest.fixture
        def store_factory(self, tmp_path: Path) -> StoreFactory:
            return lambda: SqliteStore(tmp_path / "db.sqlite3")

A backend that does work behind its writes (the SQLite full-text indexer) overrides
:meth:`StoreContract.settle` to finish it, and the search tests run both before and after.

The Hypothesis state machine :func:`store_state_machine` checks the UID/MODSEQ invariants over
random operation sequences; run it with a factory of *fresh* stores.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pillarbox import vcard
from pillarbox.errors import (
    AlreadyExists,
    InvalidName,
    NotFound,
    PreconditionFailed,
    QuotaExceeded,
    StorageError,
    TooManyEntries,
    UserError,
)
from pillarbox.mail.model import BodyPart, Envelope, EnvelopeAddress, MessageInfo
from pillarbox.mail.parse import parse_message
from pillarbox.store.interface import Store
from pillarbox.store.types import (
    DEFAULT_MAILBOXES,
    INBOX,
    Account,
    AccountSettings,
    AclEntry,
    AcmeAccount,
    AcmeAnswer,
    AcmeCertificate,
    AcmeChallengeRecord,
    AcmeLease,
    ActivityCounts,
    AttemptOutcome,
    Calendar,
    CalendarObject,
    Change,
    ChangeKind,
    Contact,
    Copied,
    DeliveryStatus,
    DeliveryTarget,
    DmarcObservation,
    DnssecKey,
    DnssecKeyState,
    Filing,
    FlagOp,
    GreylistRules,
    GreyOutcome,
    GreyTriplet,
    Identity,
    LoginHold,
    Mailbox,
    Member,
    MetadataLimits,
    NewQueueRecipient,
    QueueDepth,
    QuotaUsage,
    ReceivedReport,
    ReceivedReportRow,
    RecipientState,
    SenderListEntry,
    SenderListKind,
    SendingLimits,
    SendingUsage,
    SieveScript,
    SpamCounts,
    SpamEvidence,
    SpecialUse,
    StsCacheEntry,
    StsFetchFailure,
    StsPolicyRecord,
    TlsReportPost,
    TlsSessionResult,
    TokenKind,
    TotpEnrolment,
    ZoneSerial,
    data_etag,
)

StoreFactory = Callable[[], Store]

DOMAIN = "example.com"
T0 = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)


def make_message(
    serial: int, *, subject: str = "hello", body: str = "", size_pad: int = 0
) -> tuple[bytes, MessageInfo]:
    """A small distinct message and the ``MessageInfo`` a parser would give it."""
    body = body or f"message body number {serial}"
    header = (
        f"From: Ann <ann@example.org>\r\nTo: bob@{DOMAIN}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{serial}@example.org>\r\n\r\n"
    )
    raw = (header + body + "\r\n" + "x" * size_pad).encode()
    info = MessageInfo(
        size=len(raw),
        header_end=len(header),
        envelope=Envelope(
            subject=subject,
            from_=(EnvelopeAddress("Ann", None, "ann", "example.org"),),
            message_id=f"<{serial}@example.org>",
        ),
        body=BodyPart(
            type="text",
            subtype="plain",
            params=(("charset", "utf-8"),),
            size=len(raw) - len(header),
            body_start=len(header),
            body_end=len(raw),
        ),
        sent_date=T0,
        subject=subject.lower(),
        from_addr="ann@example.org",
        from_name="Ann",
        to_addr=f"bob@{DOMAIN}",
        message_id=f"{serial}@example.org",
        header_text=f"From: Ann <ann@example.org>\nSubject: {subject}",
        body_text=body,
    )
    return raw, info


#: A card as a phone PUTs it (kept byte for byte) and a calendar's time zone (RFC 4791 §5.2.2).
_CARD = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:bob\r\nFN:bob\r\nBDAY:1990-01-01\r\nEND:VCARD\r\n"
_VTIMEZONE = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//y//EN\r\nBEGIN:VTIMEZONE\r\n"
    "TZID:Europe/Paris\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n"
    "TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n"
    "END:VCALENDAR\r\n"
)

_BACKFILLED = (
    # (account, internal date in hours after T0, headers): stored in this order.
    ("bob", 1, "Message-ID: <p@x>\r\n"),
    ("bob", 0, "Message-ID: <r@x>\r\nReferences: <p@x>\r\n"),  # the reply arrived first
    ("bob", 2, "Message-ID: <o@x>\r\n"),
    ("carol", 0, "Message-ID: <p@x>\r\n"),
)


async def store_backfill_mail(store: Store) -> None:
    """Mail whose threads a migration's backfill must rebuild (:func:`check_backfilled_threads`):
    a reply older than its parent, an unrelated message, the same Message-ID in another
    account."""
    await store.add_domain(DOMAIN)
    for name in ("bob", "carol"):
        await store.add_account(f"{name}@{DOMAIN}", "h")
    for name, hours, head in _BACKFILLED:
        account = await store.get_account(f"{name}@{DOMAIN}")
        assert account is not None
        inbox = await store.get_mailbox(account.id, INBOX)
        raw = f"From: ann@example.org\r\n{head}\r\nbody\r\n".encode()
        await store.append(
            inbox.id, raw, parse_message(raw), internal_date=T0 + timedelta(hours=hours)
        )


async def check_backfilled_threads(store: Store) -> None:
    """The threads of :func:`store_backfill_mail` after a backfill, and a new thread after it
    numbered apart from every backfilled one."""
    boxes = []
    for name in ("bob", "carol"):
        account = await store.get_account(f"{name}@{DOMAIN}")
        assert account is not None
        boxes.append(await store.get_mailbox(account.id, INBOX))
    bob, carol = boxes
    threads = await store.thread_ids(bob.id, [1, 2, 3])
    [carols] = (await store.thread_ids(carol.id, [1])).values()
    assert threads[1] == threads[2]
    assert len({threads[1], threads[3], carols}) == 3
    raw = b"From: ann@example.org\r\nMessage-ID: <n@x>\r\n\r\nnew\r\n"
    record = await store.append(bob.id, raw, parse_message(raw))
    [new] = (await store.thread_ids(bob.id, [record.record.uid])).values()
    assert new not in {*threads.values(), carols}


#: When :func:`store_backfill_dav` wrote.
DAV_BACKFILLED = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)


async def store_backfill_dav(store: Store) -> None:
    """Contacts and calendar objects whose ETags and sync state a migration's backfill must
    set (:func:`check_backfilled_dav`): a contact made in the webmail (its ETag is its written
    card's, REV included), one with a kept card, an event, a deleted event's tombstone."""
    await store.add_domain(DOMAIN)
    account = await store.add_account(f"dana@{DOMAIN}", "h")
    now = DAV_BACKFILLED
    await store.save_contacts(
        account.id,
        [
            Contact(uid="web", display_name="Web", emails=("w@example.com",)),
            Contact(uid="bob", card=_CARD),
        ],
        now=now,
        limit=5,
    )
    await store.create_calendar(account.id, Calendar(name="cal"), now=now, limit=5)
    for name in ("kept.ics", "gone.ics"):
        obj = CalendarObject(name=name, uid=name, component="VEVENT", data=name.encode() * 50)
        await store.save_calendar_object(account.id, "cal", obj, now=now, limit=5)
    await store.delete_calendar_object(account.id, "cal", "gone.ics", now=now)


async def check_backfilled_dav(store: Store) -> None:
    """What :func:`store_backfill_dav` stored, after the backfill: every ETag as a write now
    computes it, the book's first token, the tombstone kept (dated at the migration, so not
    pruned by an old cutoff), and writes after it numbered on."""
    account = await store.get_account(f"dana@{DOMAIN}")
    assert account is not None
    web, bob = sorted(await store.list_contacts(account.id), key=lambda c: c.uid, reverse=True)
    assert web.etag == vcard.etag(web) and bob.etag == data_etag(_CARD.encode())
    assert [(m.name, m.etag) for m in await store.contact_members(account.id)] == [
        ("bob", bob.etag),
        ("web", web.etag),
    ]
    book = await store.contact_changes(account.id, 0)
    assert (sorted(c.uid for c in book.changed), book.token, book.oldest) == (["bob", "web"], 1, 0)
    (kept,) = await store.calendar_members(account.id, "cal")
    assert (kept.name, kept.etag, kept.size) == ("kept.ics", data_etag(b"kept.ics" * 50), 400)
    assert await store.prune_tombstones(calendars_before=DAV_BACKFILLED, contacts_before=None) == 0
    assert (await store.calendar_changes(account.id, "cal", 2)).deleted == ["gone.ics"]
    await store.delete_contact(account.id, web.id, now=DAV_BACKFILLED)
    after = await store.contact_changes(account.id, 1)
    assert (after.deleted, after.token) == (["web"], 2)


#: An event the server schedules (RFC 6638 §3.1: an ORGANIZER and an ATTENDEE).
_MEETING = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//EN\r\nBEGIN:VEVENT\r\nUID:m\r\n"
    "DTSTAMP:20250101T000000Z\r\nDTSTART:20250301T090000Z\r\nORGANIZER:mailto:a@example.com\r\n"
    "ATTENDEE:mailto:b@example.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


async def store_backfill_schedule_tags(store: Store) -> None:
    """Objects whose Schedule-Tags a migration's backfill must set
    (:func:`check_backfilled_schedule_tags`): a meeting, an event without attendees, bytes
    that are not iCalendar."""
    await store.add_domain(DOMAIN)
    account = await store.add_account(f"erin@{DOMAIN}", "h")
    now = DAV_BACKFILLED
    await store.create_calendar(account.id, Calendar(name="cal"), now=now, limit=5)
    for name, data in (
        ("meeting.ics", _MEETING),
        ("alone.ics", _MEETING.replace("ATTENDEE:mailto:b@example.com\r\n", "")),
        ("broken.ics", "not iCalendar"),
    ):
        obj = CalendarObject(name=name, uid=name, component="VEVENT", data=data.encode())
        await store.save_calendar_object(account.id, "cal", obj, now=now, limit=5)


async def check_backfilled_schedule_tags(store: Store) -> None:
    """After the backfill: the meeting has a Schedule-Tag, the other two none."""
    account = await store.get_account(f"erin@{DOMAIN}")
    assert account is not None
    tags = {m.name: m.schedule_tag for m in await store.calendar_members(account.id, "cal")}
    assert tags["meeting.ics"].startswith('"') and len(tags["meeting.ics"]) > 2
    assert (tags["alone.ics"], tags["broken.ics"]) == ("", "")


def _run(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> Any:
    return loop.run_until_complete(coro)


class StoreContract:
    """Tests every backend must pass; subclasses provide ``store_factory``."""

    async def settle(self, store: Store) -> None:
        """Finish background work a backend does behind its writes (default: none)."""

    async def outlast_kept(self, store: Store) -> None:
        """Wait until ``store`` sees what another process or node wrote, past anything it keeps
        in memory for a while (default: it sees it at once)."""

    @pytest.fixture
    async def store(self, store_factory: StoreFactory) -> AsyncIterator[Store]:
        store = store_factory()
        await store.open()
        yield store
        await store.close()

    @pytest.fixture
    async def account(self, store: Store) -> Account:
        await store.add_domain(DOMAIN)
        return await store.add_account(f"bob@{DOMAIN}", "$argon2id$hash")

    @pytest.fixture
    async def inbox(self, store: Store, account: Account) -> Mailbox:
        return await store.get_mailbox(account.id, INBOX)

    # -- lifecycle and durability --------------------------------------------------------------
    async def test_data_survives_close_and_reopen(self, store_factory: StoreFactory) -> None:
        first = store_factory()
        await first.open()
        await first.add_domain(DOMAIN)
        account = await first.add_account(f"bob@{DOMAIN}", "h")
        inbox = await first.get_mailbox(account.id, INBOX)
        raw, info = make_message(1)
        record = (await first.append(inbox.id, raw, info, flags=frozenset({"\\Seen"}))).record
        queued = await first.enqueue("a@x.org", b"queued", [NewQueueRecipient("r@y.org")])
        await first.close()

        second = store_factory()
        await second.open()
        try:
            assert await second.get_account(account.address) == account
            assert await second.list_messages(inbox.id) == [record]
            assert await second.read_blob(record.blob_id) == raw
            assert await second.message_infos(inbox.id, [record.uid]) == {record.uid: info}
            assert await second.get_queued(queued.id) == queued
        finally:
            await second.close()

    async def test_closed_store_refuses_work(self, store_factory: StoreFactory) -> None:
        store = store_factory()
        await store.open()
        await store.close()
        with pytest.raises(StorageError):
            await store.add_domain(DOMAIN)
        with pytest.raises(StorageError):
            await store.list_domains()

    # -- domains -------------------------------------------------------------------------------
    async def test_domains(self, store: Store) -> None:
        added = await store.add_domain("b.example")
        await store.add_domain("a.example")
        assert await store.get_domain("b.example") == added
        assert added.created.tzinfo is not None
        assert [d.name for d in await store.list_domains()] == ["a.example", "b.example"]
        await store.remove_domain("a.example")
        assert await store.get_domain("a.example") is None

    async def test_domain_errors(self, store: Store, account: Account) -> None:
        with pytest.raises(AlreadyExists):
            await store.add_domain(DOMAIN)
        with pytest.raises(InvalidName):
            await store.add_domain("")
        with pytest.raises(NotFound):
            await store.remove_domain("nowhere.example")
        with pytest.raises(UserError):
            await store.remove_domain(DOMAIN)  # the account uses it

    # -- ACME DNS-01 challenge records ---------------------------------------------------------
    async def test_acme_challenges_published_listed_and_withdrawn(self, store: Store) -> None:
        await store.add_domain("a.example")
        await store.add_domain("b.example")
        now = datetime.now(UTC)
        later = now + timedelta(minutes=10)
        apex = AcmeChallengeRecord("a.example", "_acme-challenge.a.example", "v2", later)
        wildcard = replace(apex, value="v1")  # *.a.example shares the apex's name
        host = AcmeChallengeRecord("a.example", "_acme-challenge.mail.a.example", "v3", later)
        other = AcmeChallengeRecord("b.example", "_acme-challenge.b.example", "v4", later)
        for record in (apex, wildcard, host, other):
            await store.add_acme_challenge(record)
        assert await store.list_acme_challenges("a.example", now) == [wildcard, apex, host]
        # Published again: one record, its expiry moved.
        moved = replace(apex, expires=later + timedelta(minutes=5))
        await store.add_acme_challenge(moved)
        assert await store.list_acme_challenges("a.example", now) == [wildcard, moved, host]
        # Expired records are not served.
        assert await store.list_acme_challenges("a.example", later) == [moved]
        await store.remove_acme_challenge(apex.name, "v2")
        await store.remove_acme_challenge(apex.name, "v2")  # gone already: no error
        assert await store.list_acme_challenges("a.example", now) == [wildcard, host]
        assert await store.list_acme_challenges("b.example", now) == [other]
        # The domain's removal takes its records.
        await store.remove_domain("b.example")
        assert await store.list_acme_challenges("b.example", now) == []

    async def test_acme_challenge_errors_and_expiry(self, store: Store) -> None:
        now = datetime.now(UTC)
        record = AcmeChallengeRecord(
            "nowhere.example", "_acme-challenge.nowhere.example", "v", now + timedelta(hours=1)
        )
        with pytest.raises(NotFound):
            await store.add_acme_challenge(record)
        await store.add_domain("a.example")
        stale = replace(record, domain="a.example", name="_acme-challenge.a.example")
        await store.add_acme_challenge(replace(stale, expires=now - timedelta(seconds=1)))
        assert await store.list_acme_challenges("a.example", now - timedelta(hours=1)) != []
        # The next write deletes what expired: not even a reader with an older clock sees it.
        await store.add_acme_challenge(replace(stale, value="fresh"))
        assert [r.value for r in await store.list_acme_challenges("a.example", now)] == ["fresh"]
        old = await store.list_acme_challenges("a.example", now - timedelta(hours=1))
        assert [r.value for r in old] == ["fresh"]

    # -- ACME http-01 and tls-alpn-01 answers ---------------------------------------------------
    async def test_acme_answers_shared_looked_up_and_withdrawn(self, store: Store) -> None:
        now = datetime.now(UTC)
        later = now + timedelta(minutes=10)
        token = AcmeAnswer("http-01", "tok-B", "tok-B.thumb", later)
        other = AcmeAnswer("http-01", "tok-A", "tok-A.thumb", later)
        name = AcmeAnswer("tls-alpn-01", "mail.a.example", "alpn.thumb", later)
        for answer in (token, other, name):
            await store.add_acme_answer(answer, 10)
        assert await store.acme_answer("http-01", "tok-B", now) == "tok-B.thumb"
        assert await store.acme_answer("http-01", "mail.a.example", now) is None  # kinds apart
        assert await store.acme_answer("http-01", "tok-b", now) is None  # tokens are exact
        assert await store.list_acme_answers("http-01", now, 10) == [other, token]
        assert await store.list_acme_answers("http-01", now, 1) == [other]
        assert await store.list_acme_answers("tls-alpn-01", now, 10) == [name]
        # Expired answers are not given out.
        assert await store.acme_answer("http-01", "tok-B", later) is None
        assert await store.list_acme_answers("tls-alpn-01", later, 10) == []
        # The same answer again moves its expiry; another value for the key is refused.
        moved = replace(name, expires=later + timedelta(minutes=5))
        await store.add_acme_answer(moved, 10)
        assert await store.list_acme_answers("tls-alpn-01", later, 10) == [moved]
        with pytest.raises(AlreadyExists):
            await store.add_acme_answer(replace(name, value="another.thumb"), 10)
        # Removal takes only the value given (another attempt's stays).
        await store.remove_acme_answer("tls-alpn-01", name.key, "another.thumb")
        assert await store.acme_answer("tls-alpn-01", name.key, now) == "alpn.thumb"
        await store.remove_acme_answer("tls-alpn-01", name.key, "alpn.thumb")
        await store.remove_acme_answer("tls-alpn-01", name.key, "alpn.thumb")  # gone: no error
        assert await store.acme_answer("tls-alpn-01", name.key, now) is None
        await store.add_acme_answer(replace(name, value="another.thumb"), 10)  # free again

    async def test_acme_answers_limit_and_expiry(self, store: Store) -> None:
        now = datetime.now(UTC)
        fresh = now + timedelta(hours=1)
        await store.add_acme_answer(AcmeAnswer("http-01", "t1", "v1", fresh), 2)
        await store.add_acme_answer(AcmeAnswer("http-01", "t2", "v2", fresh), 2)
        with pytest.raises(TooManyEntries):
            await store.add_acme_answer(AcmeAnswer("http-01", "t3", "v3", fresh), 2)
        await store.add_acme_answer(AcmeAnswer("http-01", "t2", "v2", fresh), 2)  # not more
        await store.add_acme_answer(AcmeAnswer("tls-alpn-01", "a.example", "v", fresh), 2)
        # An expired answer neither counts nor holds its key: the next add deletes it.
        await store.remove_acme_answer("http-01", "t1", "v1")
        stale = AcmeAnswer("http-01", "t1", "old", now - timedelta(seconds=1))
        await store.add_acme_answer(stale, 2)
        assert await store.acme_answer("http-01", "t1", now - timedelta(hours=1)) == "old"
        await store.add_acme_answer(AcmeAnswer("http-01", "t1", "new", fresh), 2)
        assert await store.acme_answer("http-01", "t1", now - timedelta(hours=1)) == "new"

    # -- the shared ACME certificate and its lease ------------------------------------------------
    async def test_acme_certificate_the_later_expiry_stays(self, store: Store) -> None:
        now = datetime.now(UTC)
        first = AcmeCertificate("dir mail.a.example", b"chain-1", b"key-1", now + timedelta(60))
        assert await store.acme_certificate(first.scope) is None
        assert await store.put_acme_certificate(first)
        assert await store.acme_certificate(first.scope) == first
        assert await store.acme_certificate("dir other.a.example") is None
        # One expiring as late, or earlier (a node's older copy), does not replace it.
        assert not await store.put_acme_certificate(replace(first, chain_pem=b"same-expiry"))
        older = replace(first, chain_pem=b"older", not_after=now + timedelta(30))
        assert not await store.put_acme_certificate(older)
        newer = AcmeCertificate(first.scope, b"chain-2", b"key-2", now + timedelta(90))
        assert await store.put_acme_certificate(newer)
        assert await store.acme_certificate(first.scope) == newer

    async def test_acme_lease_one_holder_lapse_and_back_off(self, store: Store) -> None:
        now = datetime.now(UTC)
        minute = timedelta(minutes=1)
        scope = "dir mail.a.example"
        assert await store.acme_lease(scope) is None
        taken = await store.claim_acme_lease(scope, "node-a", now, now + minute)
        assert taken == AcmeLease(scope, "node-a", now + minute, 0)
        assert await store.acme_lease(scope) == taken  # read as it stands, not taken
        # Another node is refused while it runs (forced too: a running attempt is not a
        # back-off); the holder may take it again, moving its expiry.
        assert await store.claim_acme_lease(scope, "node-b", now, now + minute) == taken
        assert await store.claim_acme_lease(scope, "node-b", now, now + minute, force=True) == (
            taken
        )
        again = await store.claim_acme_lease(scope, "node-a", now, now + 2 * minute)
        assert again.holder == "node-a" and again.expires == now + 2 * minute
        # Other scopes are apart.
        other = await store.claim_acme_lease("dir other", "node-b", now, now + minute)
        assert other.holder == "node-b"
        # A crashed holder's lease lapses at its expiry.
        lapsed = await store.claim_acme_lease(scope, "node-b", now + 2 * minute, now + 3 * minute)
        assert lapsed == AcmeLease(scope, "node-b", now + 3 * minute, 0)
        # node-a's end no longer counts; node-b's failure leaves a back-off counting it.
        await store.end_acme_lease(scope, "node-a", 0, now)
        assert (await store.claim_acme_lease(scope, "node-c", now, now)).holder == "node-b"
        await store.end_acme_lease(scope, "node-b", 1, now + 5 * minute)
        backoff = await store.claim_acme_lease(scope, "node-a", now, now + minute)
        assert backoff == AcmeLease(scope, "", now + 5 * minute, 1)
        assert await store.acme_lease(scope) == backoff
        # A renewal asked for by hand overrides a back-off; the failures are kept.
        forced = await store.claim_acme_lease(scope, "node-a", now, now + minute, force=True)
        assert forced == AcmeLease(scope, "node-a", now + minute, 1)
        await store.end_acme_lease(scope, "node-a", 2, now + 10 * minute)
        after = await store.claim_acme_lease(scope, "node-c", now + 10 * minute, now + 11 * minute)
        assert after == AcmeLease(scope, "node-c", now + 11 * minute, 2)
        # Success: the lease goes, and the count with it.
        await store.end_acme_lease(scope, "node-c", 0, now)
        assert await store.acme_lease(scope) is None
        fresh = await store.claim_acme_lease(scope, "node-a", now, now + minute)
        assert fresh == AcmeLease(scope, "node-a", now + minute, 0)

    # -- the shared ACME account ------------------------------------------------------------------
    async def test_acme_account_is_stored_once_per_directory(self, store: Store) -> None:
        directory = "https://ca.example/dir"
        assert await store.acme_account(directory) is None
        first = AcmeAccount(directory, b"key-1", "")
        assert await store.add_acme_account(first) == first
        assert await store.acme_account(directory) == first
        # A second key for the directory never replaces the stored one: its adder gets that.
        assert await store.add_acme_account(AcmeAccount(directory, b"key-2", "")) == first
        assert await store.add_acme_account(replace(first, url="https://ca.example/a/9")) == first
        # The URL goes only to the account of the key the CA named it for.
        await store.set_acme_account_url(directory, b"key-2", "https://ca.example/a/2")
        assert await store.acme_account(directory) == first
        await store.set_acme_account_url(directory, b"key-1", "https://ca.example/a/1")
        named = replace(first, url="https://ca.example/a/1")
        assert await store.acme_account(directory) == named
        assert await store.add_acme_account(AcmeAccount(directory, b"key-3", "")) == named
        # Another CA (staging, say) is another account; a URL for none stored does nothing.
        staging = "https://staging.ca.example/dir"
        await store.set_acme_account_url(staging, b"key-1", "https://ca.example/a/1")
        assert await store.acme_account(staging) is None
        other = AcmeAccount(staging, b"key-s", "")
        assert await store.add_acme_account(other) == other
        assert await store.acme_account(directory) == named

    @pytest.mark.parametrize("replacing", [False, True], ids=["added", "replaced"])
    async def test_acme_accounts_stored_at_once_on_two_nodes_end_as_one(
        self, store_factory: StoreFactory, store: Store, replacing: bool
    ) -> None:
        """Two nodes each storing a key of their own for one directory at once (a first
        account, or the deactivated one's replacement) both get the one that was stored, and
        it is the one that stays."""

        async def stored(node: Store, directory: str, key: bytes) -> AcmeAccount:
            account = AcmeAccount(directory, key, "")
            if replacing:
                return await node.replace_acme_account(b"old", account)
            return await node.add_acme_account(account)

        node_b = store_factory()
        await node_b.open()
        try:
            for n in range(5):
                directory = f"https://ca{n}.example/dir"
                if replacing:
                    await store.add_acme_account(AcmeAccount(directory, b"old", ""))
                results = await asyncio.gather(
                    stored(store, directory, b"key-a"), stored(node_b, directory, b"key-b")
                )
                assert results[0] == results[1], results
                assert results[0].key_pem in (b"key-a", b"key-b")
                assert await node_b.acme_account(directory) == results[0]
                assert await store.acme_account(directory) == results[0]
        finally:
            await node_b.close()

    async def test_a_deactivated_acme_account_is_replaced_once(self, store: Store) -> None:
        directory = "https://ca.example/dir"
        old = AcmeAccount(directory, b"key-1", "https://ca.example/a/1")
        await store.add_acme_account(old)
        await store.set_acme_account_url(directory, b"key-1", old.url)
        new = AcmeAccount(directory, b"key-2", "")
        assert await store.replace_acme_account(b"key-1", new) == new
        assert await store.acme_account(directory) == new
        # A node still holding the old key (it read the account before) gets the replacement.
        late = AcmeAccount(directory, b"key-3", "")
        assert await store.replace_acme_account(b"key-1", late) == new
        assert await store.acme_account(directory) == new
        # The replacement's URL goes in as any account's does.
        await store.set_acme_account_url(directory, b"key-2", "https://ca.example/a/2")
        named = replace(new, url="https://ca.example/a/2")
        assert await store.acme_account(directory) == named
        # Another directory's account is not touched; one with none stored gets it.
        staging = AcmeAccount("https://staging.ca.example/dir", b"key-s", "")
        assert await store.replace_acme_account(b"key-1", staging) == staging
        assert await store.acme_account(directory) == named

    # -- zone signing keys ------------------------------------------------------------------------
    async def test_dnssec_key_is_stored_once_per_domain_and_state(self, store: Store) -> None:
        when = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        active, published = DnssecKeyState.ACTIVE, DnssecKeyState.PUBLISHED
        with pytest.raises(NotFound):
            await store.add_dnssec_key(DnssecKey("unhosted.example", b"key-0", when, active, when))
        await store.add_domain("signed.example")
        await store.add_domain("other.example")
        assert await store.dnssec_keys("signed.example") == []
        first = DnssecKey("signed.example", b"key-1", when, active, when)
        assert await store.add_dnssec_key(first) == first
        assert await store.dnssec_keys("signed.example") == [first]
        # A second active key never replaces the stored one (its DS is at the registrar):
        # its adder gets the stored one.
        later = DnssecKey("signed.example", b"key-2", when + timedelta(days=1), active, when)
        assert await store.add_dnssec_key(later) == first
        # The next key of a rollover goes beside it, listed after it.
        nxt = DnssecKey("signed.example", b"key-3", when, published, when)
        assert await store.add_dnssec_key(nxt) == nxt
        assert await store.dnssec_keys("signed.example") == [first, nxt]
        other = DnssecKey("other.example", b"key-o", when, active, when)
        assert await store.add_dnssec_key(other) == other
        # The keys go with their domain: one added again gets a new key.
        await store.remove_domain("signed.example")
        assert await store.dnssec_keys("signed.example") == []
        await store.add_domain("signed.example")
        assert await store.add_dnssec_key(later) == later
        assert await store.dnssec_keys("other.example") == [other]

    async def test_a_dnssec_rollover_moves_both_keys_at_once(self, store: Store) -> None:
        when = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        done = when + timedelta(days=2)
        await store.add_domain("roll.example")
        old = DnssecKey("roll.example", b"old", when, DnssecKeyState.ACTIVE, when)
        new = DnssecKey("roll.example", b"new", when, DnssecKeyState.PUBLISHED, when)
        await store.add_dnssec_key(old)
        # Nothing to finish without a published key.
        assert await store.finish_dnssec_rollover("roll.example", done) is False
        await store.add_dnssec_key(new)
        assert await store.finish_dnssec_rollover("roll.example", done) is True
        retired = dataclasses.replace(old, state=DnssecKeyState.RETIRED, changed=done)
        activated = dataclasses.replace(new, state=DnssecKeyState.ACTIVE, changed=done)
        assert await store.dnssec_keys("roll.example") == [activated, retired]
        # A next key cannot be finished while the previous one is still retired.
        third = DnssecKey("roll.example", b"third", done, DnssecKeyState.PUBLISHED, done)
        await store.add_dnssec_key(third)
        assert await store.finish_dnssec_rollover("roll.example", done) is False
        # Removal is by content: a stale copy (the key in an earlier state) removes nothing.
        assert await store.remove_dnssec_key(old) is False
        assert await store.remove_dnssec_key(retired) is True
        assert await store.remove_dnssec_key(retired) is False
        assert await store.dnssec_keys("roll.example") == [activated, third]

    async def test_dnssec_keys_stored_at_once_on_two_nodes_end_as_one(
        self, store_factory: StoreFactory, store: Store
    ) -> None:
        """Two nodes each making a key for one zone at once both sign with the one stored,
        and two finishing its rollover at once make one step."""
        when = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        active, published = DnssecKeyState.ACTIVE, DnssecKeyState.PUBLISHED
        node_b = store_factory()
        await node_b.open()
        try:
            for n in range(5):
                domain = f"zone{n}.example"
                await store.add_domain(domain)
                results = await asyncio.gather(
                    store.add_dnssec_key(DnssecKey(domain, b"key-a", when, active, when)),
                    node_b.add_dnssec_key(DnssecKey(domain, b"key-b", when, active, when)),
                )
                assert results[0] == results[1], results
                assert results[0].key_pem in (b"key-a", b"key-b")
                assert await node_b.dnssec_keys(domain) == [results[0]]
                assert await store.dnssec_keys(domain) == [results[0]]
                await store.add_dnssec_key(DnssecKey(domain, b"next", when, published, when))
                finished = await asyncio.gather(
                    store.finish_dnssec_rollover(domain, when),
                    node_b.finish_dnssec_rollover(domain, when),
                )
                assert sorted(finished) == [False, True], finished
                states = [(k.key_pem, k.state) for k in await node_b.dnssec_keys(domain)]
                assert states == [(b"next", active), (results[0].key_pem, DnssecKeyState.RETIRED)]
        finally:
            await node_b.close()

    # -- the SOA serials of the hosted zones ------------------------------------------------------
    async def test_zone_serial_moves_on_only_with_the_content(self, store: Store) -> None:
        now = 1_800_000_000
        first = await store.zone_serial("a.example", b"d1", now)
        assert first == ZoneSerial(now, changed=True)
        # The same content: the same serial, whenever asked.
        assert await store.zone_serial("a.example", b"d1", now + 50) == ZoneSerial(now, False)
        # New content within the same second: one more, not the clock's.
        assert await store.zone_serial("a.example", b"d2", now) == ZoneSerial(now + 1, True)
        assert await store.zone_serial("a.example", b"d2", now) == ZoneSerial(now + 1, False)
        # Back to earlier content is a change too: the serial never goes back.
        assert await store.zone_serial("a.example", b"d1", now + 60) == ZoneSerial(now + 60, True)
        # A clock set back does not set the serial back.
        assert await store.zone_serial("a.example", b"d3", now - 3600) == ZoneSerial(now + 61, True)
        # Zones are counted apart.
        assert await store.zone_serial("b.example", b"d1", now) == ZoneSerial(now, True)

    async def test_zone_serial_given_at_once_by_two_nodes_moves_once(
        self, store_factory: StoreFactory, store: Store
    ) -> None:
        """Nodes bringing the same new content at once: one step, and one node told it moved
        (the one that sends the NOTIFY)."""
        node_b = store_factory()
        await node_b.open()
        try:
            now = 1_800_000_000
            for n in range(5):
                digest = f"content-{n}".encode()
                results = await asyncio.gather(
                    store.zone_serial("zone.example", digest, now + n),
                    node_b.zone_serial("zone.example", digest, now + n),
                )
                assert results[0].serial == results[1].serial == now + n, results
                assert sorted(r.changed for r in results) == [False, True], results
        finally:
            await node_b.close()

    # -- accounts ------------------------------------------------------------------------------
    async def test_account_gets_default_mailboxes(self, store: Store, account: Account) -> None:
        mailboxes = {m.name: m for m in await store.list_mailboxes(account.id)}
        assert {name for name, _ in DEFAULT_MAILBOXES} == set(mailboxes)
        for name, special_use in DEFAULT_MAILBOXES:
            assert mailboxes[name].special_use == special_use
            assert mailboxes[name].uidnext == 1
        assert len({m.uidvalidity for m in mailboxes.values()}) == len(mailboxes)

    async def test_account_lookup_and_updates(self, store: Store, account: Account) -> None:
        assert account.domain == DOMAIN and not account.is_admin
        assert await store.get_account(account.address) == account
        assert await store.get_account_by_id(account.id) == account
        await store.add_domain("other.example")
        other = await store.add_account(
            "zed@other.example", "h2", is_admin=True, display_name="Zed", quota_bytes=10
        )
        assert [a.address for a in await store.list_accounts()] == [
            account.address,
            "zed@other.example",
        ]
        assert await store.list_accounts("other.example") == [other]
        await store.set_password(account.id, "new", "scram")
        await store.set_display_name(account.id, "Bob")
        await store.set_quota(account.id, 1000, 5)
        changed = await store.get_account_by_id(account.id)
        assert changed is not None
        assert (changed.password_hash, changed.scram_sha256, changed.display_name) == (
            "new",
            "scram",
            "Bob",
        )
        assert (changed.quota_bytes, changed.quota_messages) == (1000, 5)
        assert await store.get_account("nobody@example.com") is None
        assert await store.get_account_by_id(10**9) is None

    async def test_list_admins_the_domains_else_everyones(
        self, store: Store, account: Account
    ) -> None:
        """Who reads postmaster@ without an alias: the domain's admins, else every admin."""
        assert await store.list_admins(DOMAIN) == []
        await store.add_domain("other.example")
        await store.add_domain("third.example")
        zed = await store.add_account("zed@other.example", "h", is_admin=True)
        amy = await store.add_account("amy@third.example", "h", is_admin=True)
        await store.add_account("joe@other.example", "h")
        assert await store.list_admins(DOMAIN) == [amy, zed]
        assert await store.list_admins("other.example") == [zed]
        assert await store.list_admins("unhosted.example") == [amy, zed]
        own = await store.add_account("ann@" + DOMAIN, "h", is_admin=True)
        assert await store.list_admins(DOMAIN) == [own]
        await store.remove_account(own.id)
        assert await store.list_admins(DOMAIN) == [amy, zed]

    async def test_account_errors(self, store: Store, account: Account) -> None:
        with pytest.raises(AlreadyExists):
            await store.add_account(account.address, "h")
        with pytest.raises(NotFound):
            await store.add_account("x@unknown.example", "h")
        for bad in ("no-at-sign", "@example.com", "bob@"):
            with pytest.raises(InvalidName):
                await store.add_account(bad, "h")
        for call in (
            store.set_password(10**9, "h", None),
            store.set_quota(10**9, None, None),
            store.set_display_name(10**9, "x"),
            store.remove_account(10**9),
            store.quota_usage(10**9),
        ):
            with pytest.raises(NotFound):
                await call

    async def test_remove_account_frees_everything(
        self, store: Store, account: Account, inbox: Mailbox
    ) -> None:
        raw, info = make_message(1)
        record = (await store.append(inbox.id, raw, info)).record
        await store.remove_account(account.id)
        assert await store.get_account_by_id(account.id) is None
        assert await store.list_mailboxes(account.id) == []
        with pytest.raises(NotFound):
            await store.read_blob(record.blob_id)
        await store.remove_domain(DOMAIN)  # nothing uses it any more

    async def test_quota_usage_follows_messages(
        self, store: Store, account: Account, inbox: Mailbox
    ) -> None:
        await store.set_quota(account.id, 10_000, 10)
        raw, info = make_message(1)
        record = (await store.append(inbox.id, raw, info, flags=frozenset({"\\Deleted"}))).record
        trash = await store.get_mailbox(account.id, "Trash")
        await store.copy_messages(inbox.id, [record.uid], trash.id)
        usage = await store.quota_usage(account.id)
        assert (usage.bytes_used, usage.messages) == (2 * len(raw), 2)
        assert (usage.bytes_limit, usage.messages_limit) == (10_000, 10)
        await store.expunge(inbox.id)
        await store.delete_mailbox(trash.id)
        usage = await store.quota_usage(account.id)
        assert (usage.bytes_used, usage.messages) == (0, 0)

    async def test_quota_warned_is_compared_and_set(self, store: Store, account: Account) -> None:
        assert (await store.quota_usage(account.id)).warned == 0
        assert await store.set_quota_warned(account.id, 0, 80)
        assert not await store.set_quota_warned(account.id, 0, 95)  # no longer 0
        assert (await store.quota_usage(account.id)).warned == 80
        # Of two deliveries racing to announce the same crossing, one wins.
        raced = await asyncio.gather(*(store.set_quota_warned(account.id, 80, 95) for _ in "ab"))
        assert sorted(raced) == [False, True]
        assert await store.set_quota_warned(account.id, 95, 0)  # usage fell below them all
        assert (await store.quota_usage(account.id)).warned == 0
        with pytest.raises(NotFound):
            await store.set_quota_warned(10**9, 0, 80)

    async def test_retention_days_are_account_settings(
        self, store: Store, account: Account
    ) -> None:
        assert (await store.get_settings(account.id)).junk_days is None
        settings = AccountSettings(junk_days=14, trash_days=0, forward_to=("x@example.com",))
        await store.set_settings(account.id, settings)
        assert await store.get_settings(account.id) == settings
        await store.set_settings(account.id, replace(settings, junk_days=None))
        assert (await store.get_settings(account.id)).junk_days is None

    async def test_time_zone_is_an_account_setting(self, store: Store, account: Account) -> None:
        assert (await store.get_settings(account.id)).time_zone == ""  # the browser's
        settings = AccountSettings(time_zone="America/New_York", junk_days=3)
        await store.set_settings(account.id, settings)
        assert await store.get_settings(account.id) == settings
        await store.set_settings(account.id, replace(settings, time_zone=""))
        assert (await store.get_settings(account.id)).time_zone == ""

    async def test_shortcuts_are_an_account_setting(self, store: Store, account: Account) -> None:
        assert (await store.get_settings(account.id)).shortcuts  # on until switched off
        settings = AccountSettings(shortcuts=False, time_zone="Europe/Paris")
        await store.set_settings(account.id, settings)
        assert await store.get_settings(account.id) == settings
        await store.set_settings(account.id, replace(settings, shortcuts=True))
        assert (await store.get_settings(account.id)).shortcuts

    async def test_the_default_calendar_is_an_account_setting(
        self, store: Store, account: Account
    ) -> None:
        assert (await store.get_settings(account.id)).default_calendar == ""  # the server's
        settings = AccountSettings(default_calendar="work", time_zone="Europe/Paris")
        await store.set_settings(account.id, settings)
        assert await store.get_settings(account.id) == settings
        await store.set_settings(account.id, replace(settings, default_calendar=""))
        assert (await store.get_settings(account.id)).default_calendar == ""

    # -- aliases -------------------------------------------------------------------------------
    async def test_aliases(self, store: Store, account: Account) -> None:
        alias = await store.add_alias(f"info@{DOMAIN}", [account.address, "x@elsewhere.org"])
        catch_all = await store.add_alias(f"@{DOMAIN}", [account.address])
        assert alias.targets == (account.address, "x@elsewhere.org")
        assert await store.get_alias(f"info@{DOMAIN}") == alias
        assert await store.list_aliases(DOMAIN) == [catch_all, alias]
        assert await store.list_aliases("other.example") == []
        await store.remove_alias(f"info@{DOMAIN}")
        assert await store.get_alias(f"info@{DOMAIN}") is None

    async def test_alias_errors(self, store: Store, account: Account) -> None:
        await store.add_alias(f"info@{DOMAIN}", [account.address])
        with pytest.raises(AlreadyExists):
            await store.add_alias(f"info@{DOMAIN}", [account.address])
        with pytest.raises(AlreadyExists):
            await store.add_alias(account.address, ["x@y.org"])  # an account's address
        with pytest.raises(AlreadyExists):
            await store.add_account(f"info@{DOMAIN}", "h")  # an alias's address
        with pytest.raises(NotFound):
            await store.add_alias("a@unknown.example", [account.address])
        with pytest.raises(InvalidName):
            await store.add_alias(f"empty@{DOMAIN}", [])
        with pytest.raises(InvalidName):
            await store.add_alias("no-domain", [account.address])
        with pytest.raises(NotFound):
            await store.remove_alias(f"none@{DOMAIN}")

    async def test_vacation_reply_once_per_interval(self, store: Store, account: Account) -> None:
        week, start = timedelta(days=7), datetime(2025, 6, 1, tzinfo=UTC)
        claim = store.claim_vacation_reply
        assert await claim(account.id, "Ann@Example.com", start, week)
        assert not await claim(account.id, "ann@example.com", start + timedelta(days=6), week)
        assert await claim(account.id, "carl@example.com", start + timedelta(days=6), week)
        assert await claim(account.id, "ann@example.com", start + week, week)
        # The interval counts from the last reply, not from the refused attempt.
        assert not await claim(account.id, "ann@example.com", start + timedelta(days=13), week)
        two = await asyncio.gather(
            *(claim(account.id, "dana@example.com", start, week) for _ in range(2))
        )
        assert sorted(two) == [False, True]
        with pytest.raises(NotFound):
            await claim(account.id + 1000, "ann@example.com", start, week)

    async def test_sieve_duplicates_expire_and_are_bounded(
        self, store: Store, account: Account
    ) -> None:
        now = datetime(2025, 6, 1, tzinfo=UTC)
        hour = timedelta(hours=1)
        assert await store.sieve_duplicates(account.id, now) == frozenset()
        await store.track_sieve_duplicates(
            account.id, [("a", now + hour), ("b", now + 2 * hour)], now, 10
        )
        assert await store.sieve_duplicates(account.id, now) == {"a", "b"}
        assert await store.sieve_duplicates(account.id, now + hour) == {"b"}
        # A key recorded again gets the new expiry (RFC 7352 §3.3 :last).
        await store.track_sieve_duplicates(account.id, [("a", now + 3 * hour)], now, 10)
        assert await store.sieve_duplicates(account.id, now + 2 * hour) == {"a"}
        # Past the bound, the entries expiring first are forgotten.
        await store.track_sieve_duplicates(
            account.id, [("c", now + 4 * hour), ("d", now + 5 * hour)], now, 2
        )
        assert await store.sieve_duplicates(account.id, now) == {"c", "d"}
        assert await store.sieve_duplicates(account.id + 1000, now) == frozenset()
        with pytest.raises(NotFound):
            await store.track_sieve_duplicates(account.id + 1000, [("a", now + hour)], now, 2)

    async def test_sieve_duplicates_pruned_for_every_account(
        self, store: Store, account: Account
    ) -> None:
        """The retention job's sweep forgets what expired in every account, also in one that
        records nothing new (a track only sweeps its own account's)."""
        carol = await store.add_account(f"carol@{DOMAIN}", "h")
        now, hour = datetime(2025, 6, 1, tzinfo=UTC), timedelta(hours=1)
        await store.track_sieve_duplicates(
            account.id, [("a", now + hour), ("b", now + 3 * hour)], now, 10
        )
        await store.track_sieve_duplicates(carol.id, [("a", now + 2 * hour)], now, 10)
        assert await store.prune_sieve_duplicates(now) == 0
        assert await store.prune_sieve_duplicates(now + 2 * hour) == 2
        # Gone, not hidden: asked as of before they expired, they are still not there.
        assert await store.sieve_duplicates(account.id, now) == {"b"}
        assert await store.sieve_duplicates(carol.id, now) == frozenset()
        assert await store.prune_sieve_duplicates(now + 2 * hour) == 0

    async def test_new_vacation_text_forgets_who_had_a_reply(
        self, store: Store, account: Account
    ) -> None:
        week, now = timedelta(days=7), datetime(2025, 6, 1, tzinfo=UTC)
        away = AccountSettings(vacation_enabled=True, vacation_body="Away.")
        await store.set_settings(account.id, away)
        assert await store.claim_vacation_reply(account.id, "ann@example.com", now, week)
        await store.set_settings(account.id, replace(away, forward_to=("x@example.com",)))
        assert not await store.claim_vacation_reply(account.id, "ann@example.com", now, week)
        await store.set_settings(account.id, replace(away, vacation_body="Away until May."))
        assert await store.claim_vacation_reply(account.id, "ann@example.com", now, week)

    # -- sending identities and correspondents -------------------------------------------------
    async def test_identities_added_changed_and_removed(
        self, store: Store, account: Account
    ) -> None:
        assert await store.list_identities(account.id) == []
        work = await store.save_identity(
            account.id,
            Identity(address=f"bob+work@{DOMAIN}", display_name="Bob at work", signature="B."),
            limit=3,
        )
        home = await store.save_identity(
            account.id, Identity(address=f"bob@{DOMAIN}", is_default=True), limit=3
        )
        assert work.id > 0 and home.id not in (0, work.id)
        assert await store.list_identities(account.id) == [home, work]  # the default first
        # Making another the default takes it from the first, in the same write.
        work = await store.save_identity(
            account.id, replace(work, is_default=True, reply_to="desk@example.com"), limit=3
        )
        listed = await store.list_identities(account.id)
        assert listed == [work, replace(home, is_default=False)]
        await store.save_identity(account.id, Identity(address=f"x@{DOMAIN}"), limit=3)
        with pytest.raises(UserError):
            await store.save_identity(account.id, Identity(address=f"y@{DOMAIN}"), limit=3)
        await store.delete_identity(account.id, home.id)
        assert [i.address for i in await store.list_identities(account.id)] == [
            f"bob+work@{DOMAIN}",
            f"x@{DOMAIN}",
        ]
        with pytest.raises(NotFound):
            await store.delete_identity(account.id, home.id)
        with pytest.raises(NotFound):
            await store.save_identity(account.id, home, limit=3)  # gone: not re-created
        with pytest.raises(NotFound):
            await store.save_identity(account.id + 1000, Identity(address="a@b.test"), limit=3)

    async def test_identities_are_the_accounts_own(self, store: Store, account: Account) -> None:
        other = await store.add_account(f"eve@{DOMAIN}", "$argon2id$hash")
        mine = await store.save_identity(account.id, Identity(address=f"bob@{DOMAIN}"), limit=5)
        with pytest.raises(NotFound):
            await store.save_identity(other.id, replace(mine, signature="hijacked"), limit=5)
        with pytest.raises(NotFound):
            await store.delete_identity(other.id, mine.id)
        assert await store.list_identities(other.id) == []
        assert await store.list_identities(account.id) == [mine]
        await store.remove_account(account.id)
        assert await store.list_identities(account.id) == []

    # -- address book ---------------------------------------------------------------------------
    async def test_contacts_added_searched_replaced_and_removed(
        self, store: Store, account: Account
    ) -> None:
        t0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
        assert await store.list_contacts(account.id) == []
        zoe, ann = await store.save_contacts(
            account.id,
            [
                Contact(
                    uid="urn:uuid:1",
                    display_name="Zoë Émond",
                    emails=("zoe@example.com", "ZE@work.example"),
                    phones=("+33 1 23 45 67 89",),
                    organization="Acme",
                    note="line one\nline two",
                ),
                Contact(uid="urn:uuid:2", emails=("ann@example.net",)),
            ],
            now=t0,
            limit=3,
        )
        assert zoe.id > 0 and ann.id not in (0, zoe.id)
        assert zoe.created == zoe.updated == t0
        # Ordered by label (the name, else the first address), case-folded.
        assert await store.list_contacts(account.id) == [ann, zoe]
        assert await store.get_contact(account.id, zoe.id) == zoe
        # Search: name, address or organisation, any case, non-ASCII folded alike.
        assert await store.list_contacts(account.id, "ÉMOND") == [zoe]
        assert await store.list_contacts(account.id, "ze@WORK") == [zoe]
        assert await store.list_contacts(account.id, "acme") == [zoe]
        assert await store.list_contacts(account.id, "example") == [ann, zoe]
        assert await store.list_contacts(account.id, "example", limit=1) == [ann]
        assert await store.list_contacts(account.id, "nobody") == []
        # Replaced by id: the uid and creation time stay, the update time moves.
        t1 = t0 + timedelta(days=1)
        (changed,) = await store.save_contacts(
            account.id,
            [replace(zoe, uid="urn:uuid:ignored", display_name="Zoë", phones=())],
            now=t1,
            limit=3,
        )
        assert (changed.uid, changed.created, changed.updated) == ("urn:uuid:1", t0, t1)
        assert await store.get_contact(account.id, zoe.id) == changed
        # Added again under a uid it has: replaces that contact (a re-imported card).
        (again,) = await store.save_contacts(
            account.id, [Contact(uid="urn:uuid:2", display_name="Ann")], now=t1, limit=3
        )
        assert (again.id, again.created, again.emails) == (ann.id, t0, ())
        # The limit counts what the account would hold; past it nothing is stored.
        with pytest.raises(UserError):
            await store.save_contacts(
                account.id,
                [Contact(uid="urn:uuid:3"), Contact(uid="urn:uuid:4")],
                now=t1,
                limit=3,
            )
        assert len(await store.list_contacts(account.id)) == 2
        await store.delete_contact(account.id, ann.id, now=t1)
        assert await store.list_contacts(account.id) == [changed]
        with pytest.raises(NotFound):
            await store.delete_contact(account.id, ann.id, now=t1)
        with pytest.raises(NotFound):
            await store.get_contact(account.id, ann.id)
        with pytest.raises(NotFound):
            await store.save_contacts(account.id, [again], now=t1, limit=3)  # gone
        with pytest.raises(NotFound):
            await store.save_contacts(account.id + 1000, [Contact(uid="x")], now=t1, limit=3)

    async def test_contact_changes_tombstones_and_stored_etags(
        self, store: Store, account: Account
    ) -> None:
        """RFC 6578 for the address book: every write raises the book's token and stamps what
        it saved; a deletion leaves a tombstone of the UID; the ETag is kept with the card."""
        t0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
        assert await store.contacts_sync_token(account.id) == 0
        assert await store.contact_members(account.id) == []
        first = await store.contact_changes(account.id, 0)
        assert (first.changed, first.deleted, first.token, first.oldest) == ([], [], 0, 0)
        ann, bob = await store.save_contacts(
            account.id,
            [
                Contact(uid="ann", display_name="Ann", emails=("ann@example.com",)),
                Contact(uid="bob", emails=("bob@example.com",), card=_CARD),
            ],
            now=t0,
            limit=5,
        )
        # One token for one write; the ETag is the one CardDAV serves (the kept card's digest,
        # else the written 4.0 card's, REV included).
        assert (ann.modseq, bob.modseq) == (1, 1)
        assert ann.etag == vcard.etag(ann) and bob.etag == data_etag(_CARD.encode())
        assert await store.get_contact(account.id, ann.id) == ann
        assert await store.contact_members(account.id) == [
            Member(name="ann", etag=ann.etag, label="Ann"),
            Member(name="bob", etag=bob.etag, label="bob@example.com"),
        ]
        t1 = t0 + timedelta(minutes=1)
        (edited,) = await store.save_contacts(
            account.id, [replace(ann, note="met in Lyon")], now=t1, limit=5
        )
        assert edited.modseq == 2 and edited.etag not in ("", ann.etag)
        assert edited.etag == vcard.etag(edited)
        await store.delete_contact(account.id, bob.id, now=t1)
        assert await store.contacts_sync_token(account.id) == 3
        since = await store.contact_changes(account.id, 1)
        assert ([c.uid for c in since.changed], since.deleted, since.token) == (["ann"], ["bob"], 3)
        assert since.changed == [edited]
        assert (await store.contact_changes(account.id, 3)).changed == []
        # An import putting the UID back: a change again, no longer a deletion.
        (back,) = await store.save_contacts(
            account.id, [Contact(uid="bob", display_name="Bob")], now=t1, limit=5
        )
        again = await store.contact_changes(account.id, 3)
        assert (again.changed, again.deleted, again.token) == ([back], [], 4)
        assert [m.name for m in await store.contact_members(account.id)] == ["ann", "bob"]
        # Removing the account takes the book's state with it.
        await store.remove_account(account.id)
        assert await store.contacts_sync_token(account.id) == 0

    async def test_tombstones_pruned_by_age_raise_the_oldest_token(
        self, store: Store, account: Account
    ) -> None:
        """RFC 6578 §3.7: tombstones older than the history kept go, and each collection that
        lost one answers no token older than the last change pruned."""
        t0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
        t1, t2 = t0 + timedelta(days=10), t0 + timedelta(days=20)
        await store.create_calendar(account.id, Calendar(name="cal"), now=t0, limit=5)
        await store.create_calendar(account.id, Calendar(name="quiet"), now=t0, limit=5)
        for name in ("a", "b", "c"):
            obj = CalendarObject(name=f"{name}.ics", uid=name, component="VEVENT", data=b"x")
            await store.save_calendar_object(account.id, "cal", obj, now=t0, limit=5)
        await store.delete_calendar_object(account.id, "cal", "a.ics", now=t0)  # token 5
        await store.delete_calendar_object(account.id, "cal", "b.ics", now=t2)  # token 6
        old, young = await store.save_contacts(
            account.id, [Contact(uid="old"), Contact(uid="young")], now=t0, limit=5
        )
        await store.delete_contact(account.id, old.id, now=t0)  # token 2
        await store.delete_contact(account.id, young.id, now=t2)  # token 3
        # None keeps that kind.
        assert await store.prune_tombstones(calendars_before=None, contacts_before=None) == 0
        assert await store.prune_tombstones(calendars_before=t1, contacts_before=t1) == 2
        cal = await store.calendar_changes(account.id, "cal", 5)
        assert (cal.deleted, cal.oldest, cal.answers(4), cal.answers(5)) == (
            ["b.ics"],
            5,
            False,
            True,
        )
        book = await store.contact_changes(account.id, 2)
        assert (book.deleted, book.oldest, book.answers(1), book.answers(2)) == (
            ["young"],
            2,
            False,
            True,
        )
        # A calendar without old tombstones keeps every token.
        assert (await store.calendar_changes(account.id, "quiet", 0)).oldest == 0
        assert (await store.calendar_changes(account.id, "cal", 0)).changed[0].name == "c.ics"
        # Pruning again, later: the oldest only moves forward.
        assert (
            await store.prune_tombstones(
                calendars_before=t2 + timedelta(days=1), contacts_before=None
            )
            == 1
        )
        assert (await store.calendar_changes(account.id, "cal", 6)).oldest == 6
        assert (await store.contact_changes(account.id, 2)).oldest == 2

    # -- calendars ------------------------------------------------------------------------------
    async def test_calendars_made_renamed_counted_and_removed(
        self, store: Store, account: Account
    ) -> None:
        now = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
        assert await store.list_calendars(account.id) == []
        work = await store.create_calendar(
            account.id, Calendar(name="work", display_name="Work"), now=now, limit=2
        )
        home = await store.create_calendar(
            account.id, Calendar(name="home", color="#ff0000ff"), now=now, limit=2
        )
        assert work.id > 0 and work.sync_token == 1 and work.created == now
        assert await store.list_calendars(account.id) == [home, work]
        with pytest.raises(AlreadyExists):
            await store.create_calendar(account.id, Calendar(name="work"), now=now, limit=5)
        with pytest.raises(TooManyEntries):
            await store.create_calendar(account.id, Calendar(name="third"), now=now, limit=2)
        assert (work.description, work.timezone) == ("", "")
        renamed = await store.update_calendar(
            account.id,
            replace(
                work,
                display_name="Office",
                color="#00ff00",
                description="Meetings\nand more",
                timezone=_VTIMEZONE,
            ),
        )
        assert (renamed.display_name, renamed.color, renamed.sync_token) == (
            "Office",
            "#00ff00",
            2,
        )
        assert (renamed.description, renamed.timezone) == ("Meetings\nand more", _VTIMEZONE)
        described = await store.create_calendar(
            account.id,
            Calendar(name="third", description="d", timezone=_VTIMEZONE),
            now=now,
            limit=5,
        )
        assert (described.description, described.timezone) == ("d", _VTIMEZONE)
        await store.delete_calendar(account.id, "third")
        await store.delete_calendar(account.id, "home")
        assert await store.list_calendars(account.id) == [renamed]
        with pytest.raises(NotFound):
            await store.delete_calendar(account.id, "home")
        with pytest.raises(NotFound):
            await store.update_calendar(account.id, home)
        with pytest.raises(NotFound):
            await store.create_calendar(account.id + 1000, Calendar(name="x"), now=now, limit=5)

    async def test_calendar_object_moved_all_or_nothing(
        self, store: Store, account: Account
    ) -> None:
        """A move leaves a tombstone in the calendar left and the object, new token, in the
        one joined (RFC 6578: clients syncing either see it); a UID the target holds, a full
        target or a vanished object moves nothing."""
        now = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
        for name in ("home", "work"):
            await store.create_calendar(account.id, Calendar(name=name), now=now, limit=5)
        obj = CalendarObject(name="a.ics", uid="a", component="VEVENT", data=b"one")
        await store.save_calendar_object(account.id, "home", obj, now=now, limit=5)
        home = (await store.calendar_changes(account.id, "home", 0)).token
        work = (await store.calendar_changes(account.id, "work", 0)).token
        moved = await store.move_calendar_object(
            account.id, "home", "a.ics", "work", replace(obj, name="b.ics"), now=now, limit=5
        )
        assert (moved.name, moved.uid, moved.data) == ("b.ics", "a", b"one")
        left = await store.calendar_changes(account.id, "home", home)
        assert (left.changed, left.deleted) == ([], ["a.ics"])
        joined = await store.calendar_changes(account.id, "work", work)
        assert [(o.name, o.data) for o in joined.changed] == [("b.ics", b"one")]
        assert joined.deleted == []
        # Back onto a calendar holding the UID already: refused, nothing moved.
        await store.save_calendar_object(account.id, "home", obj, now=now, limit=5)
        with pytest.raises(AlreadyExists):
            await store.move_calendar_object(
                account.id, "work", "b.ics", "home", replace(obj, name="c.ics"), now=now, limit=5
            )
        assert [o.name for o in await store.calendar_objects(account.id, "work")] == ["b.ics"]
        # A full target, or an object gone: the same.
        await store.delete_calendar_object(account.id, "home", "a.ics", now=now)
        with pytest.raises(TooManyEntries):
            await store.move_calendar_object(
                account.id, "work", "b.ics", "home", replace(obj, name="b.ics"), now=now, limit=0
            )
        with pytest.raises(NotFound):
            await store.move_calendar_object(
                account.id, "work", "gone.ics", "home", obj, now=now, limit=5
            )
        assert [o.name for o in await store.calendar_objects(account.id, "work")] == ["b.ics"]
        assert await store.calendar_objects(account.id, "home") == []

    async def test_calendar_object_written_only_as_expected(
        self, store: Store, account: Account
    ) -> None:
        """RFC 9110 §13.1: a conditional write (``if_none_match``: the name must be free;
        ``if_match``: its object must have that ETag) writes nothing when another write came
        first, and raises no sync token; an unconditional one replaces as before."""
        now = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
        await store.create_calendar(account.id, Calendar(name="home"), now=now, limit=5)
        first = CalendarObject(name="a.ics", uid="a", component="VEVENT", data=b"first")
        saved = await store.save_calendar_object(
            account.id, "home", first, now=now, limit=5, if_none_match=True
        )
        token = (await store.calendar_changes(account.id, "home", 0)).token
        # A client's object of another UID under that name: neither condition holds for it.
        theirs = replace(first, uid="b", data=b"theirs")
        with pytest.raises(PreconditionFailed):
            await store.save_calendar_object(
                account.id, "home", theirs, now=now, limit=5, if_none_match=True
            )
        with pytest.raises(PreconditionFailed):
            await store.save_calendar_object(
                account.id, "home", theirs, now=now, limit=5, if_match='"not-its-etag"'
            )
        with pytest.raises(PreconditionFailed):  # no object of the name has any ETag
            await store.save_calendar_object(
                account.id, "home", replace(first, name="z.ics"), now=now, limit=5,
                if_match=saved.etag,
            )  # fmt: skip
        assert [(o.name, o.data) for o in await store.calendar_objects(account.id, "home")] == [
            ("a.ics", b"first")
        ]
        assert (await store.calendar_changes(account.id, "home", 0)).token == token
        second = await store.save_calendar_object(
            account.id, "home", replace(first, data=b"second"), now=now, limit=5,
            if_match=saved.etag,
        )  # fmt: skip
        assert second.data == b"second" and second.etag != saved.etag
        await store.save_calendar_object(account.id, "home", theirs, now=now, limit=5)
        assert (await store.calendar_object(account.id, "home", "a.ics")).uid == "b"

    async def test_calendar_object_keeps_its_schedule_tag(
        self, store: Store, account: Account
    ) -> None:
        """RFC 6638 §3.2.10: the Schedule-Tag the caller gives is kept beside the object, read
        back with it, in listings and sync changes, carried by a move, replaced by a write."""
        now = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
        for name in ("home", "work"):
            await store.create_calendar(account.id, Calendar(name=name), now=now, limit=5)
        obj = CalendarObject(
            name="m.ics", uid="m", component="VEVENT", data=b"meeting", schedule_tag='"t1"'
        )
        plain = CalendarObject(name="p.ics", uid="p", component="VEVENT", data=b"plain")
        saved = await store.save_calendar_object(account.id, "home", obj, now=now, limit=5)
        assert saved.schedule_tag == '"t1"'
        await store.save_calendar_object(account.id, "home", plain, now=now, limit=5)
        assert (await store.calendar_object(account.id, "home", "m.ics")).schedule_tag == '"t1"'
        members = await store.calendar_members(account.id, "home")
        assert [(m.name, m.schedule_tag) for m in members] == [("m.ics", '"t1"'), ("p.ics", "")]
        changed = (await store.calendar_changes(account.id, "home", 0)).changed
        assert [o.schedule_tag for o in changed] == ['"t1"', ""]
        later = replace(obj, data=b"moved", schedule_tag='"t2"')
        await store.save_calendar_object(account.id, "home", later, now=now, limit=5)
        found = await store.calendar_objects(account.id, "home")
        assert [o.schedule_tag for o in found] == ['"t2"', ""]
        # RFC 6638 §3.1: the scheduling object resources alone, told by their tags.
        meetings = await store.calendar_objects(account.id, "home", scheduling=True)
        assert [(o.name, o.data) for o in meetings] == [("m.ics", b"moved")]
        await store.move_calendar_object(
            account.id, "home", "m.ics", "work", later, now=now, limit=5
        )
        assert (await store.calendar_object(account.id, "work", "m.ics")).schedule_tag == '"t2"'

    async def test_calendar_objects_moved_both_ways_at_once(
        self, store: Store, account: Account
    ) -> None:
        """Two moves in opposite directions at the same moment both complete: neither waits
        for a lock the other holds (on PostgreSQL that deadlock aborted one of them)."""
        now = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
        for name in ("home", "work"):
            await store.create_calendar(account.id, Calendar(name=name), now=now, limit=5)
        here = {"home": "h.ics", "work": "w.ics"}
        for calendar, name in here.items():
            obj = CalendarObject(name=name, uid=name, component="VEVENT", data=b"x")
            await store.save_calendar_object(account.id, calendar, obj, now=now, limit=5)
        for _ in range(5):
            moves = []
            for calendar, name in here.items():
                target = "work" if calendar == "home" else "home"
                obj = CalendarObject(name=name, uid=name, component="VEVENT", data=b"x")
                moves.append(
                    store.move_calendar_object(
                        account.id, calendar, name, target, obj, now=now, limit=5
                    )
                )
            await asyncio.gather(*moves)
            here = {"work": here["home"], "home": here["work"]}
        for calendar, name in here.items():
            assert [o.name for o in await store.calendar_objects(account.id, calendar)] == [name]

    async def test_calendar_objects_stored_as_sent_narrowed_by_time_and_synced(
        self, store: Store, account: Account
    ) -> None:
        now = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
        await store.create_calendar(account.id, Calendar(name="cal"), now=now, limit=5)
        day = timedelta(days=1)
        meeting = CalendarObject(
            name="m.ics",
            uid="m",
            component="VEVENT",
            data=b"BEGIN:VCALENDAR\r\n\xc3\xa9 kept\r\nEND:VCALENDAR\r\n",
            starts=now,
            ends=now + day,
        )
        weekly = CalendarObject(
            name="w.ics", uid="w", component="VEVENT", data=b"weekly", starts=now - 9 * day
        )
        todo = CalendarObject(name="t.ics", uid="t", component="VTODO", data=b"todo")
        stored = [
            await store.save_calendar_object(account.id, "cal", o, now=now, limit=3)
            for o in (meeting, weekly, todo)
        ]
        assert [o.modseq for o in stored] == [2, 3, 4]
        assert stored[0].data == meeting.data and stored[0].etag.startswith('"')
        listed = await store.calendar_objects(account.id, "cal")
        assert [o.name for o in listed] == ["m.ics", "t.ics", "w.ics"]
        assert listed[0] == stored[0]
        assert await store.calendar_object(account.id, "cal", "m.ics") == stored[0]
        assert await store.calendar_object_by_uid(account.id, "cal", "w") == stored[1]
        # A listing: the ETag and size kept beside each object, no bytes.
        assert await store.calendar_members(account.id, "cal") == [
            Member(name=o.name, uid=o.uid, etag=o.etag, component=o.component, size=len(o.data))
            for o in (stored[0], stored[2], stored[1])
        ]
        # By UIDs, one read for many; in pages by name, each after the last of the one before.
        chosen = await store.calendar_objects(account.id, "cal", uids=["w", "m", "nobody"])
        assert chosen == [stored[0], stored[1]]
        assert await store.calendar_objects(account.id, "cal", uids=[]) == []
        first = await store.calendar_objects(account.id, "cal", limit=2)
        rest = await store.calendar_objects(account.id, "cal", after=first[-1].name, limit=2)
        assert [o.name for o in first + rest] == ["m.ics", "t.ics", "w.ics"]
        assert await store.calendar_objects(account.id, "cal", after="w.ics") == []

        async def between(start: datetime | None, end: datetime | None) -> list[str]:
            found = await store.calendar_objects(account.id, "cal", start=start, end=end)
            return [o.name for o in found]

        # Bounds meet [start, end) or are open: the open-ended weekly and the undated to-do
        # always, the meeting only when its day is met.
        assert await between(now + day, now + 2 * day) == ["t.ics", "w.ics"]
        assert await between(now - day, now) == ["t.ics", "w.ics"]
        assert await between(now - day, now + timedelta(seconds=1)) == ["m.ics", "t.ics", "w.ics"]
        assert await between(None, now - 10 * day) == ["t.ics"]
        assert await between(now + day - timedelta(seconds=1), None) == ["m.ics", "t.ics", "w.ics"]

        # Another object of the UID, the count past the limit: refused, nothing kept.
        with pytest.raises(AlreadyExists):
            await store.save_calendar_object(
                account.id, "cal", replace(todo, name="other.ics"), now=now, limit=5
            )
        with pytest.raises(TooManyEntries):
            await store.save_calendar_object(
                account.id, "cal", replace(todo, name="4.ics", uid="4"), now=now, limit=3
            )
        assert len(await store.calendar_objects(account.id, "cal")) == 3
        (calendar,) = await store.list_calendars(account.id)
        assert calendar.sync_token == 4

        # Replaced by name (a new UID is allowed), deleted with a tombstone; changes since a
        # token name both.
        later = now + day
        changed = await store.save_calendar_object(
            account.id, "cal", replace(meeting, data=b"changed"), now=later, limit=3
        )
        assert (changed.id, changed.modseq, changed.updated) == (stored[0].id, 5, later)
        await store.delete_calendar_object(account.id, "cal", "t.ics", now=later)
        changes = await store.calendar_changes(account.id, "cal", 4)
        assert ([o.name for o in changes.changed], changes.deleted, changes.token) == (
            ["m.ics"],
            ["t.ics"],
            6,
        )
        everything = await store.calendar_changes(account.id, "cal", 0)
        assert [o.name for o in everything.changed] == ["w.ics", "m.ics"]
        with pytest.raises(NotFound):
            await store.delete_calendar_object(account.id, "cal", "t.ics", now=later)
        with pytest.raises(NotFound):
            await store.calendar_object(account.id, "cal", "t.ics")
        # Put back: no longer a deletion.
        await store.save_calendar_object(account.id, "cal", todo, now=later, limit=3)
        again = await store.calendar_changes(account.id, "cal", 6)
        assert ([o.name for o in again.changed], again.deleted) == (["t.ics"], [])

        # Deleting the calendar takes its objects.
        await store.delete_calendar(account.id, "cal")
        await store.create_calendar(account.id, Calendar(name="cal"), now=now, limit=5)
        assert await store.calendar_objects(account.id, "cal") == []
        assert (await store.calendar_changes(account.id, "cal", 0)).deleted == []

    async def test_calendars_are_the_accounts_own(self, store: Store, account: Account) -> None:
        other = await store.add_account(f"eve@{DOMAIN}", "$argon2id$hash")
        now = datetime(2025, 3, 1, tzinfo=UTC)
        await store.create_calendar(account.id, Calendar(name="cal"), now=now, limit=5)
        mine = CalendarObject(name="a.ics", uid="a", component="VEVENT", data=b"x")
        await store.save_calendar_object(account.id, "cal", mine, now=now, limit=5)
        assert await store.list_calendars(other.id) == []
        for attempt in (
            store.calendar_objects(other.id, "cal"),
            store.calendar_object(other.id, "cal", "a.ics"),
            store.calendar_object_by_uid(other.id, "cal", "a"),
            store.save_calendar_object(other.id, "cal", mine, now=now, limit=5),
            store.delete_calendar_object(other.id, "cal", "a.ics", now=now),
            store.calendar_members(other.id, "cal"),
            store.calendar_changes(other.id, "cal", 0),
            store.delete_calendar(other.id, "cal"),
        ):
            with pytest.raises(NotFound):
                await attempt
        # Another account may have a calendar of the same name, and the same UIDs in it.
        await store.create_calendar(other.id, Calendar(name="cal"), now=now, limit=5)
        await store.save_calendar_object(other.id, "cal", mine, now=now, limit=5)
        await store.remove_account(account.id)
        assert await store.list_calendars(account.id) == []
        assert len(await store.calendar_objects(other.id, "cal")) == 1

    async def test_contacts_are_the_accounts_own(self, store: Store, account: Account) -> None:
        other = await store.add_account(f"eve@{DOMAIN}", "$argon2id$hash")
        now = datetime(2025, 3, 1, tzinfo=UTC)
        (mine,) = await store.save_contacts(
            account.id, [Contact(uid="u1", emails=("a@example.com",))], now=now, limit=5
        )
        with pytest.raises(NotFound):
            await store.get_contact(other.id, mine.id)
        with pytest.raises(NotFound):
            await store.save_contacts(other.id, [replace(mine, note="x")], now=now, limit=5)
        with pytest.raises(NotFound):
            await store.delete_contact(other.id, mine.id, now=now)
        assert await store.list_contacts(other.id, "example") == []
        # The same uid in another account is another contact.
        (theirs,) = await store.save_contacts(
            other.id, [Contact(uid="u1", emails=("b@example.com",))], now=now, limit=5
        )
        assert theirs.id != mine.id
        assert await store.list_contacts(account.id) == [mine]
        await store.remove_account(account.id)
        assert await store.list_contacts(account.id) == []
        assert await store.list_contacts(other.id) == [theirs]

    async def test_contacts_keep_their_card_and_are_found_by_uid(
        self, store: Store, account: Account
    ) -> None:
        other = await store.add_account(f"eve@{DOMAIN}", "$argon2id$hash")
        now = datetime(2025, 3, 1, tzinfo=UTC)
        # The card as received, byte for byte: CRLF, folds, a non-ASCII name, a long PHOTO.
        card = (
            "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:c-1\r\nFN:Zoë\r\n"
            "PHOTO;ENCODING=b;TYPE=JPEG:" + "QUJD" * 40 + "\r\n ZA==\r\nEND:VCARD\r\n"
        )
        (kept, plain) = await store.save_contacts(
            account.id,
            [Contact(uid="c-1", display_name="Zoë", card=card), Contact(uid="c-2")],
            now=now,
            limit=5,
        )
        assert (kept.card, plain.card) == (card, None)
        assert await store.contact_by_uid(account.id, "c-1") == kept
        assert await store.get_contact(account.id, kept.id) == kept
        assert await store.list_contacts(account.id) == [plain, kept]
        # Replaced by uid (a PUT) or by id (a webmail edit), the card goes with the fields;
        # None drops it.
        (put,) = await store.save_contacts(
            account.id, [Contact(uid="c-2", card="BEGIN:VCARD\r\n")], now=now, limit=5
        )
        assert (await store.contact_by_uid(account.id, "c-2")).card == "BEGIN:VCARD\r\n"
        await store.save_contacts(account.id, [replace(put, card=None)], now=now, limit=5)
        assert (await store.contact_by_uid(account.id, "c-2")).card is None
        # Another account's UID, or an absent one, is not found.
        with pytest.raises(NotFound):
            await store.contact_by_uid(other.id, "c-1")
        with pytest.raises(NotFound):
            await store.contact_by_uid(account.id, "c-3")

    async def test_totp_enrolment_steps_and_recovery_codes(
        self, store: Store, account: Account
    ) -> None:
        """The second factor: replaced whole, steps claimed only forwards, recovery codes
        used once, gone with the account."""
        other = await store.add_account(f"eve@{DOMAIN}", "$argon2id$hash")
        assert await store.get_totp(account.id) is None
        assert not await store.claim_totp_step(account.id, 5)
        await store.enable_totp(account.id, "sealed-1", ["r1", "r2", "r3"])
        assert await store.get_totp(account.id) == TotpEnrolment(account.id, "sealed-1", 0, 3)
        assert await store.totp_accounts() == {account.id}
        assert await store.claim_totp_step(account.id, 100)
        assert not await store.claim_totp_step(account.id, 100)  # replayed
        assert not await store.claim_totp_step(account.id, 99)  # older
        assert await store.claim_totp_step(account.id, 101)
        assert (await store.get_totp(account.id)) == TotpEnrolment(account.id, "sealed-1", 101, 3)
        assert not await store.use_recovery_code(other.id, "r1")  # not eve's
        assert await store.use_recovery_code(account.id, "r1")
        assert not await store.use_recovery_code(account.id, "r1")  # used
        assert (await store.get_totp(account.id)) == TotpEnrolment(account.id, "sealed-1", 101, 2)
        # New recovery codes replace the old ones; the secret and the used step stay.
        assert await store.replace_recovery_codes(account.id, ["n1", "n2", "n3", "n4"])
        assert (await store.get_totp(account.id)) == TotpEnrolment(account.id, "sealed-1", 101, 4)
        assert not await store.use_recovery_code(account.id, "r2")
        assert await store.use_recovery_code(account.id, "n2")
        assert not await store.replace_recovery_codes(other.id, ["z"])  # no enrolment
        assert not await store.use_recovery_code(other.id, "z")
        # Enrolling again replaces the secret, the step and every code.
        await store.enable_totp(account.id, "sealed-2", ["r9"])
        assert await store.get_totp(account.id) == TotpEnrolment(account.id, "sealed-2", 0, 1)
        assert not await store.use_recovery_code(account.id, "r2")
        with pytest.raises(NotFound):
            await store.enable_totp(999_999, "sealed", [])
        assert await store.disable_totp(account.id)
        assert not await store.disable_totp(account.id)
        assert await store.get_totp(account.id) is None
        assert not await store.use_recovery_code(account.id, "r9")
        await store.enable_totp(other.id, "sealed-3", ["x"])
        await store.remove_account(other.id)
        assert await store.get_totp(other.id) is None
        assert await store.totp_accounts() == set()

    async def test_login_holds_one_per_account_bound_to_the_session_until_they_expire(
        self, store_factory: StoreFactory, store: Store, account: Account
    ) -> None:
        """A message a two-step login holds: found only with its account and session, and by
        another node (another store over the same data); one per account (replaced); gone
        when dropped, expired, pruned or with its account; never past the bound."""
        other = await store.add_account(f"eve@{DOMAIN}", "$argon2id$hash")
        until = T0 + timedelta(minutes=5)

        def hold(owner: Account, sid: str, size: int, expires: datetime = until) -> LoginHold:
            return LoginHold(
                account_id=owner.id, sid=sid, sealed=f"v1:{sid}", size=size, expires=expires
            )

        assert await store.hold_login_message(hold(account, "s1", 10), T0, 100)
        assert await store.held_login_message(account.id, "s1", T0) == "v1:s1"
        assert await store.held_login_message(account.id, "s2", T0) is None  # another browser
        assert await store.held_login_message(other.id, "s1", T0) is None  # another account
        assert await store.held_login_message(account.id, "s1", until) is None  # expired
        node_b = store_factory()
        await node_b.open()
        try:
            await self.outlast_kept(node_b)
            assert await node_b.held_login_message(account.id, "s1", T0) == "v1:s1"
        finally:
            await node_b.close()
        # The account's next password step holds in place of the first.
        assert await store.hold_login_message(hold(account, "s2", 20), T0, 100)
        assert await store.held_login_message(account.id, "s1", T0) is None
        assert await store.held_login_message(account.id, "s2", T0) == "v1:s2"
        await store.drop_login_message(account.id, "s1")  # not this session's: stays
        assert await store.held_login_message(account.id, "s2", T0) == "v1:s2"
        await store.drop_login_message(account.id, "s2")
        assert await store.held_login_message(account.id, "s2", T0) is None

        # The bound, for all accounts together: the holds expiring first go to make room.
        third = await store.add_account(f"ann@{DOMAIN}", "$argon2id$hash")
        minute = timedelta(minutes=1)
        assert await store.hold_login_message(hold(account, "a", 40, until), T0, 100)
        assert await store.hold_login_message(hold(other, "o", 40, until + minute), T0, 100)
        assert await store.hold_login_message(hold(third, "t", 30, until + 2 * minute), T0, 100)
        assert await store.held_login_message(account.id, "a", T0) is None
        assert await store.held_login_message(other.id, "o", T0) == "v1:o"
        assert await store.held_login_message(third.id, "t", T0) == "v1:t"
        # Over the bound alone: not held, and the account's earlier hold is gone too.
        assert not await store.hold_login_message(hold(other, "o2", 101), T0, 100)
        assert await store.held_login_message(other.id, "o", T0) is None
        assert await store.held_login_message(third.id, "t", T0) == "v1:t"
        # Expired holds make room first, and the sweep forgets them.
        assert await store.hold_login_message(hold(account, "b", 70, until + minute), T0, 100)
        assert await store.held_login_message(third.id, "t", T0) == "v1:t"
        later = until + 2 * minute
        assert await store.hold_login_message(hold(other, "o3", 90, later + minute), later, 100)
        assert await store.held_login_message(other.id, "o3", later) == "v1:o3"
        assert await store.held_login_message(account.id, "b", T0) is None  # expired, gone
        assert await store.prune_login_messages(later) == 0
        assert await store.hold_login_message(hold(account, "c", 5, later), T0, 100)
        assert await store.prune_login_messages(later) == 1
        assert await store.held_login_message(other.id, "o3", later) == "v1:o3"
        with pytest.raises(NotFound):
            await store.hold_login_message(
                LoginHold(account_id=999_999, sid="x", sealed="x", size=1, expires=until), T0, 100
            )
        await store.remove_account(other.id)
        assert await store.prune_login_messages(later + 2 * minute) == 0  # went with eve

    async def test_login_holds_made_at_once_on_two_nodes_keep_one_bound(
        self, store_factory: StoreFactory, store: Store
    ) -> None:
        """Holds of many accounts written together through two stores over the same data (two
        nodes) never end above the bound: each write makes room as if it were alone."""
        await store.add_domain(DOMAIN)
        owners = [await store.add_account(f"u{n}@{DOMAIN}", "h") for n in range(12)]
        until = T0 + timedelta(minutes=5)
        node_b = store_factory()
        await node_b.open()
        try:
            await asyncio.gather(
                *(
                    (store if n % 2 else node_b).hold_login_message(
                        LoginHold(
                            account_id=owner.id,
                            sid="s",
                            sealed="v1:x",
                            size=30,
                            expires=until + timedelta(seconds=n),
                        ),
                        T0,
                        100,
                    )
                    for n, owner in enumerate(owners)
                )
            )
        finally:
            await node_b.close()
        held = [o.id for o in owners if await store.held_login_message(o.id, "s", T0)]
        assert 1 <= len(held) <= 3

    async def test_correspondents_by_prefix(self, store: Store, account: Account) -> None:
        other = await store.add_account(f"eve@{DOMAIN}", "$argon2id$hash")
        day = timedelta(days=1)
        for at, address in ((T0, "ann@x.org"), (T0 + day, "anton@y.org"), (T0, "zed@x.org")):
            await store.record_sending(
                account.id, [address], at, window_start=at - day, memory_start=at - 9 * day
            )
        await store.record_sending(
            other.id, ["anna@secret.org"], T0, window_start=T0 - day, memory_start=T0 - day
        )
        ham = SpamCounts(ham=1)
        await store.record_sender_reputation(account.id, ["sent:andy@z.org"], ham)
        await store.record_sender_reputation(account.id, ["sent:ann@x.org", "from:al@z.org"], ham)
        await store.record_sender_reputation(other.id, ["sent:anita@secret.org"], ham)
        # Most recent first, then the reputation's; no duplicates, nothing of the other account.
        assert await store.correspondents(account.id, "an", 10) == [
            "anton@y.org",
            "ann@x.org",
            "andy@z.org",
        ]
        assert await store.correspondents(account.id, "AN", 2) == ["anton@y.org", "ann@x.org"]
        assert await store.correspondents(account.id, "al", 10) == []  # not written to
        assert await store.correspondents(account.id, "%", 10) == []
        assert await store.correspondents(account.id, "", 10) == [
            "anton@y.org",
            "ann@x.org",
            "zed@x.org",
            "andy@z.org",
        ]

    # -- mailboxes -----------------------------------------------------------------------------
    @pytest.mark.parametrize("spelling", ["INBOX", "inbox", "InBoX"])
    async def test_inbox_is_case_insensitive(
        self, store: Store, account: Account, inbox: Mailbox, spelling: str
    ) -> None:
        assert await store.get_mailbox(account.id, spelling) == inbox
        child = await store.create_mailbox(account.id, f"{spelling}/Child")
        assert child.name == "INBOX/Child"

    async def test_create_mailbox_makes_superiors(self, store: Store, account: Account) -> None:
        created = await store.create_mailbox(account.id, "a/b/c", SpecialUse.ARCHIVE)
        assert created.name == "a/b/c" and created.special_use is SpecialUse.ARCHIVE
        assert (await store.get_mailbox(account.id, "a")).special_use is None
        assert (await store.get_mailbox(account.id, "a/b")).name == "a/b"
        assert await store.get_mailbox(account.id, "a/b/c") == created
        # NFC: a decomposed name finds the composed one (RFC 9051 §5.1).
        composed = await store.create_mailbox(account.id, "Caf\u00e9")
        assert await store.get_mailbox(account.id, "Cafe\u0301") == composed

    @pytest.mark.parametrize(
        "name", ["", "/", "/a", "a/", "a//b", "a\x00b", "a\tb", "a*", "%", "x" * 256]
    )
    async def test_invalid_mailbox_names(self, store: Store, account: Account, name: str) -> None:
        with pytest.raises(InvalidName):
            await store.create_mailbox(account.id, name)
        with pytest.raises(InvalidName):
            await store.get_mailbox(account.id, name)
        with pytest.raises(InvalidName):
            await store.set_subscribed(account.id, name, True)

    async def test_mailbox_errors(self, store: Store, account: Account, inbox: Mailbox) -> None:
        with pytest.raises(AlreadyExists):
            await store.create_mailbox(account.id, "inbox")
        with pytest.raises(AlreadyExists):
            await store.create_mailbox(account.id, "Sent")
        with pytest.raises(NotFound):
            await store.create_mailbox(10**9, "x")
        with pytest.raises(NotFound):
            await store.get_mailbox(account.id, "Missing")
        with pytest.raises(InvalidName):
            await store.delete_mailbox(inbox.id)  # RFC 9051 §6.3.5
        with pytest.raises(NotFound):
            await store.delete_mailbox(10**9)
        for call in (
            store.mailbox_status(10**9),
            store.claim_recent(10**9),
            store.list_messages(10**9),
            store.expunge(10**9),
            store.changes_since(10**9, 0),
            store.expunged_since(10**9, 0),
            store.mailbox_delta(10**9, 0),
            store.open_mailbox(10**9, INBOX),
            store.open_mailbox(account.id, "Missing"),
            store.search_text(10**9, ["x"]),
            store.store_flags(10**9, [1], FlagOp.ADD, frozenset({"\\Seen"})),
        ):
            with pytest.raises(NotFound):
                await call

    async def test_delete_mailbox_keeps_inferiors_and_frees_blobs(
        self, store: Store, account: Account
    ) -> None:
        parent = await store.create_mailbox(account.id, "p")
        child = await store.create_mailbox(account.id, "p/c")
        raw, info = make_message(1)
        record = (await store.append(parent.id, raw, info)).record
        await store.delete_mailbox(parent.id)
        with pytest.raises(NotFound):
            await store.get_mailbox(account.id, "p")
        assert await store.get_mailbox(account.id, "p/c") == child
        with pytest.raises(NotFound):
            await store.read_blob(record.blob_id)
        again = await store.create_mailbox(account.id, "p")
        assert again.id != parent.id
        assert again.uidvalidity > parent.uidvalidity  # RFC 9051 §2.3.1.1

    async def test_rename_mailbox_with_inferiors(self, store: Store, account: Account) -> None:
        top = await store.create_mailbox(account.id, "a")
        child = await store.create_mailbox(account.id, "a/b")
        lookalike = await store.create_mailbox(account.id, "ab")
        raw, info = make_message(1)
        record = (await store.append(child.id, raw, info)).record
        await store.rename_mailbox(account.id, "a", "x/y")
        renamed = await store.get_mailbox(account.id, "x/y")
        assert (renamed.id, renamed.uidvalidity) == (top.id, top.uidvalidity)  # §6.3.6
        moved_child = await store.get_mailbox(account.id, "x/y/b")
        assert moved_child.id == child.id
        assert await store.list_messages(child.id) == [record]
        assert (await store.get_mailbox(account.id, "x")).name == "x"  # superior created
        assert await store.get_mailbox(account.id, "ab") == lookalike
        with pytest.raises(NotFound):
            await store.get_mailbox(account.id, "a/b")

    async def test_rename_errors(self, store: Store, account: Account) -> None:
        await store.create_mailbox(account.id, "a")
        with pytest.raises(NotFound):
            await store.rename_mailbox(account.id, "missing", "b")
        with pytest.raises(AlreadyExists):
            await store.rename_mailbox(account.id, "a", "Sent")
        with pytest.raises(AlreadyExists):
            await store.rename_mailbox(account.id, "a", "inbox")
        with pytest.raises(InvalidName):
            await store.rename_mailbox(account.id, "a", "a/b")
        with pytest.raises(InvalidName):
            await store.rename_mailbox(account.id, "a", "")

    async def test_rename_inbox_moves_its_messages(
        self, store: Store, account: Account, inbox: Mailbox
    ) -> None:
        child = await store.create_mailbox(account.id, "INBOX/kept")
        records = [
            (await store.append(inbox.id, *make_message(i), flags=frozenset({"\\Flagged"}))).record
            for i in range(3)
        ]
        await store.rename_mailbox(account.id, "inbox", "Old")
        old = await store.get_mailbox(account.id, "Old")
        moved = await store.list_messages(old.id)
        assert [m.blob_id for m in moved] == [r.blob_id for r in records]
        assert all(m.flags == frozenset({"\\Flagged"}) for m in moved)
        assert await store.list_messages(inbox.id) == []
        still = await store.get_mailbox(account.id, INBOX)
        assert (still.id, still.uidvalidity) == (inbox.id, inbox.uidvalidity)
        assert still.uidnext == 4  # UIDs are never reused
        assert await store.expunged_since(inbox.id, 0) == [1, 2, 3]
        assert await store.get_mailbox(account.id, "INBOX/kept") == child

    async def test_subscriptions_are_names(self, store: Store, account: Account) -> None:
        await store.set_subscribed(account.id, "inbox", True)
        await store.set_subscribed(account.id, "Not/There", True)
        await store.set_subscribed(account.id, "Sent", True)
        await store.set_subscribed(account.id, "Sent", False)
        await store.set_subscribed(account.id, "Never", False)
        assert await store.list_subscriptions(account.id) == {"INBOX", "Not/There"}
        with pytest.raises(NotFound):
            await store.set_subscribed(10**9, "x", True)

    async def test_mailbox_status_counts(self, store: Store, inbox: Mailbox) -> None:
        await store.append(inbox.id, *make_message(1), flags=frozenset({"\\Seen"}))
        await store.append(inbox.id, *make_message(2), flags=frozenset({"\\Deleted"}))
        await store.append(inbox.id, *make_message(3, size_pad=100))
        status = await store.mailbox_status(inbox.id)
        sizes = [m.size for m in await store.list_messages(inbox.id)]
        assert (status.messages, status.unseen, status.deleted) == (3, 2, 1)
        assert status.size == sum(sizes)
        assert status.mailbox.uidnext == 4
        assert status.mailbox.highestmodseq >= 4

    async def test_claim_recent(self, store: Store, inbox: Mailbox) -> None:
        assert await store.claim_recent(inbox.id) == 1
        await store.append(inbox.id, *make_message(1))
        await store.append(inbox.id, *make_message(2))
        assert (await store.mailbox_status(inbox.id)).recent_uid == 1
        assert await store.claim_recent(inbox.id) == 1  # UIDs 1 and 2 are recent to us
        assert await store.claim_recent(inbox.id) == 3  # … and to nobody else
        assert (await store.mailbox_status(inbox.id)).recent_uid == 3
        await store.append(inbox.id, *make_message(3))
        assert await store.claim_recent(inbox.id) == 3
        # Sessions idling on a mailbox claim at once when a delivery wakes them: one gets it.
        await store.append(inbox.id, *make_message(4))
        firsts = await asyncio.gather(*(store.claim_recent(inbox.id) for _ in range(5)))
        assert sorted(firsts) == [4, 5, 5, 5, 5]
        assert await store.claim_recent(inbox.id) == 5

    async def test_maildrop_lock_is_exclusive(self, store: Store, account: Account) -> None:
        """RFC 1939 §4: one POP3 session per maildrop; each account's is its own."""
        other = await store.add_account(f"other@{DOMAIN}", "h")
        assert await store.lock_maildrop(account.id)
        assert not await store.lock_maildrop(account.id)
        assert await store.lock_maildrop(other.id)
        await store.unlock_maildrop(account.id)
        await store.unlock_maildrop(account.id)  # twice: nothing more to give back
        assert await store.lock_maildrop(account.id)
        assert not await store.lock_maildrop(other.id)

    # -- messages ------------------------------------------------------------------------------
    async def test_append_and_read_back(self, store: Store, inbox: Mailbox) -> None:
        raw, info = make_message(1)
        when = datetime(2020, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
        record = (
            await store.append(
                inbox.id, raw, info, flags=frozenset({"\\seen", "$Label"}), internal_date=when
            )
        ).record
        assert (record.mailbox_id, record.uid, record.size) == (inbox.id, 1, len(raw))
        assert record.flags == frozenset({"\\Seen", "$Label"})
        assert record.internal_date == when
        assert record.saved_date.tzinfo is not None
        assert await store.get_message(inbox.id, 1) == record
        assert await store.get_message(inbox.id, 2) is None
        assert await store.read_blob(record.blob_id) == raw
        assert await store.message_infos(inbox.id, [1, 99]) == {1: info}
        assert record.modseq > inbox.highestmodseq

    async def test_append_errors(self, store: Store, account: Account, inbox: Mailbox) -> None:
        raw, info = make_message(1)
        with pytest.raises(NotFound):
            await store.append(10**9, raw, info)
        with pytest.raises(InvalidName):
            await store.append(inbox.id, raw, info, flags=frozenset({"\\Recent"}))
        with pytest.raises(InvalidName):
            await store.append(inbox.id, raw, info, flags=frozenset({"two words"}))
        await store.set_quota(account.id, len(raw) - 1, None)
        with pytest.raises(QuotaExceeded):
            await store.append(inbox.id, raw, info)
        await store.set_quota(account.id, None, 0)
        with pytest.raises(QuotaExceeded):
            await store.append(inbox.id, raw, info)
        assert await store.list_messages(inbox.id) == []
        with pytest.raises(NotFound):
            await store.read_blob("0" * 64)
        with pytest.raises(NotFound):
            await store.read_blob("../../etc/passwd")

    async def test_list_messages_ranges(self, store: Store, inbox: Mailbox) -> None:
        records = [(await store.append(inbox.id, *make_message(i))).record for i in range(5)]
        assert await store.list_messages(inbox.id) == records
        assert await store.list_messages(inbox.id, uid_min=2, uid_max=4) == records[1:4]
        assert await store.list_messages(inbox.id, uid_min=4) == records[3:]
        assert await store.list_messages(inbox.id, uid_min=9) == []

    async def test_deliver_shares_one_blob(self, store: Store, account: Account) -> None:
        await store.add_account(f"carol@{DOMAIN}", "h")
        carol = await store.get_account(f"carol@{DOMAIN}")
        assert carol is not None
        raw, info = make_message(1)
        results = await store.deliver(
            raw,
            info,
            [
                DeliveryTarget(account.id),
                DeliveryTarget(carol.id, "Junk", frozenset({"$Junk"})),
            ],
            internal_date=T0,
        )
        assert [r.status for r in results] == [DeliveryStatus.STORED] * 2
        first, second = (r.record for r in results)
        assert first is not None and second is not None
        assert first.blob_id == second.blob_id
        assert second.flags == frozenset({"$Junk"}) and first.internal_date == T0
        assert await store.read_blob(first.blob_id) == raw
        # The blob lives as long as one copy does.
        await store.store_flags(first.mailbox_id, [first.uid], FlagOp.ADD, frozenset({"\\Deleted"}))
        await store.expunge(first.mailbox_id)
        assert await store.read_blob(first.blob_id) == raw
        await store.store_flags(
            second.mailbox_id, [second.uid], FlagOp.ADD, frozenset({"\\Deleted"})
        )
        await store.expunge(second.mailbox_id)
        with pytest.raises(NotFound):
            await store.read_blob(first.blob_id)

    async def test_deliver_fails_targets_alone(self, store: Store, account: Account) -> None:
        full = await store.add_account(f"full@{DOMAIN}", "h", quota_messages=0)
        tight = await store.add_account(f"tight@{DOMAIN}", "h", quota_bytes=10)
        raw, info = make_message(1)
        targets = [
            DeliveryTarget(full.id),
            DeliveryTarget(account.id, "Nope"),
            DeliveryTarget(tight.id),
            DeliveryTarget(10**9),
            DeliveryTarget(account.id, "a//b"),
            DeliveryTarget(account.id, "inbox"),
        ]
        results = await store.deliver(raw, info, targets)
        assert [r.target for r in results] == targets
        assert [r.status for r in results] == [
            DeliveryStatus.OVER_QUOTA,
            DeliveryStatus.NO_MAILBOX,
            DeliveryStatus.OVER_QUOTA,
            DeliveryStatus.NO_MAILBOX,
            DeliveryStatus.NO_MAILBOX,
            DeliveryStatus.STORED,
        ]
        assert [r.record is None for r in results] == [True] * 5 + [False]

    async def test_deliver_over_quota_takes_no_uid_or_modseq(
        self, store: Store, account: Account
    ) -> None:
        full = await store.add_account(f"full@{DOMAIN}", "h", quota_messages=1)
        inbox = await store.get_mailbox(full.id, INBOX)
        assert inbox is not None
        [first] = await store.deliver(*make_message(1), [DeliveryTarget(full.id)])
        assert first.status is DeliveryStatus.STORED
        before = await store.mailbox_status(inbox.id)
        [refused] = await store.deliver(*make_message(2), [DeliveryTarget(full.id)])
        assert refused.status is DeliveryStatus.OVER_QUOTA
        after = await store.mailbox_status(inbox.id)
        assert after.mailbox.uidnext == before.mailbox.uidnext == 2
        assert after.mailbox.highestmodseq == before.mailbox.highestmodseq
        [beyond] = await store.deliver(
            *make_message(3), [DeliveryTarget(full.id, beyond_quota=True)]
        )
        assert beyond.record is not None and beyond.record.uid == 2
        assert beyond.record.modseq == before.mailbox.highestmodseq + 1

    async def test_deliver_reports_usage_and_stores_beyond_quota(
        self, store: Store, account: Account
    ) -> None:
        raw, info = make_message(1)
        await store.set_quota(account.id, 10 * len(raw), 2)
        assert await store.set_quota_warned(account.id, 0, 80)
        first, second = await store.deliver(
            raw, info, [DeliveryTarget(account.id), DeliveryTarget(account.id, "Archive")]
        )
        # Each copy's usage counts the copies before it in the same delivery.
        assert first.usage == QuotaUsage(len(raw), 1, 10 * len(raw), 2, warned=80)
        assert second.usage == QuotaUsage(2 * len(raw), 2, 10 * len(raw), 2, warned=80)
        [full] = await store.deliver(raw, info, [DeliveryTarget(account.id)])
        assert (full.status, full.record, full.usage) == (DeliveryStatus.OVER_QUOTA, None, None)
        [notice] = await store.deliver(raw, info, [DeliveryTarget(account.id, beyond_quota=True)])
        assert notice.status is DeliveryStatus.STORED and notice.record is not None
        assert notice.usage == QuotaUsage(3 * len(raw), 3, 10 * len(raw), 2, warned=80)
        assert await store.quota_usage(account.id) == notice.usage

    async def test_append_and_copy_report_usage(
        self, store: Store, account: Account, inbox: Mailbox
    ) -> None:
        """APPEND and COPY return the usage their own write left (quota warnings), as deliver
        does; a move within the account changes none."""
        raw, info = make_message(1)
        await store.set_quota(account.id, 10 * len(raw), None)
        assert await store.set_quota_warned(account.id, 0, 80)
        appended = await store.append(inbox.id, raw, info)
        assert (appended.size, appended.count) == (len(raw), 1)
        assert appended.usage == QuotaUsage(len(raw), 1, 10 * len(raw), None, warned=80)
        await store.append(inbox.id, *make_message(2))
        archive = await store.get_mailbox(account.id, "Archive")
        copied = await store.copy_messages(inbox.id, [1, 2], archive.id)
        assert (copied.size, copied.count) == (2 * len(raw), 2)
        assert copied.usage == await store.quota_usage(account.id)
        assert copied.usage.messages == 4
        moved = await store.move_messages(archive.id, [1], inbox.id)
        assert (moved.usage, moved.size, moved.count, len(moved.pairs)) == (None, 0, 0, 1)

    async def test_saved_before_is_the_save_date_in_that_mailbox(
        self, store: Store, account: Account, inbox: Mailbox
    ) -> None:
        records = []
        for serial in range(3):
            appended = await store.append(inbox.id, *make_message(serial), internal_date=T0)
            records.append(appended.record)
            await asyncio.sleep(0.002)  # distinct save dates, microseconds apart at least
        saved = [r.saved_date for r in records]
        assert saved == sorted(saved) and len(set(saved)) == 3
        assert await store.saved_before(inbox.id, saved[0], 10) == []
        assert await store.saved_before(inbox.id, saved[2], 10) == [1, 2]
        later = saved[2] + timedelta(seconds=1)
        assert await store.saved_before(inbox.id, later, 10) == [1, 2, 3]
        assert await store.saved_before(inbox.id, later, 2) == [1, 2]
        # A copy is saved into its mailbox when copied (RFC 8514 §3), not when first stored.
        trash = await store.get_mailbox(account.id, "Trash")
        await store.copy_messages(inbox.id, [1], trash.id)
        assert await store.saved_before(trash.id, saved[2], 10) == []
        assert await store.saved_before(trash.id, later + timedelta(minutes=1), 10) == [1]
        with pytest.raises(NotFound):
            await store.saved_before(10**9, later, 10)

    async def test_deliver_with_no_stored_copy_leaves_no_blob(
        self, store: Store, account: Account
    ) -> None:
        raw, info = make_message(1)
        [result] = await store.deliver(raw, info, [DeliveryTarget(account.id, "Nope")])
        assert result.status is DeliveryStatus.NO_MAILBOX
        with pytest.raises(NotFound):
            await store.read_blob(hashlib.sha256(raw).hexdigest())

    async def test_concurrent_deliveries_get_distinct_uids(
        self, store: Store, account: Account, inbox: Mailbox
    ) -> None:
        results = await asyncio.gather(
            *(store.deliver(*make_message(i), [DeliveryTarget(account.id)]) for i in range(100))
        )
        uids = [r[0].record.uid for r in results if r[0].record is not None]
        assert sorted(uids) == list(range(1, 101))
        modseqs = [r[0].record.modseq for r in results if r[0].record is not None]
        assert len(set(modseqs)) == 100
        status = await store.mailbox_status(inbox.id)
        assert (status.messages, status.mailbox.uidnext) == (100, 101)
        assert status.mailbox.highestmodseq == max(modseqs)

    async def test_store_flags(self, store: Store, inbox: Mailbox) -> None:
        for i in range(3):
            await store.append(inbox.id, *make_message(i))
        added = await store.store_flags(
            inbox.id, [1, 2, 99], FlagOp.ADD, frozenset({"\\SEEN", "$a"})
        )
        assert [r.uid for r in added.changed] == [1, 2]
        assert all(r.flags == {"\\Seen", "$a"} for r in added.changed)
        assert added.unchanged == () and added.modified == ()
        modseq = added.changed[0].modseq
        again = await store.store_flags(inbox.id, [1, 3], FlagOp.ADD, frozenset({"\\Seen"}))
        assert again.unchanged == (1,) and [r.uid for r in again.changed] == [3]
        assert again.changed[0].modseq > modseq
        removed = await store.store_flags(inbox.id, [1], FlagOp.REMOVE, frozenset({"$a"}))
        assert removed.changed[0].flags == {"\\Seen"}
        replaced = await store.store_flags(inbox.id, [2], FlagOp.REPLACE, frozenset({"\\Answered"}))
        assert replaced.changed[0].flags == {"\\Answered"}
        listed = {m.uid: m for m in await store.list_messages(inbox.id)}
        assert listed[2] == replaced.changed[0]
        with pytest.raises(InvalidName):
            await store.store_flags(inbox.id, [1], FlagOp.ADD, frozenset({"\\Bogus"}))

    async def test_store_flags_unchanged_since(self, store: Store, inbox: Mailbox) -> None:
        first = (await store.append(inbox.id, *make_message(1))).record
        second = (await store.append(inbox.id, *make_message(2))).record
        update = await store.store_flags(
            inbox.id, [1, 2], FlagOp.ADD, frozenset({"\\Flagged"}), unchanged_since=first.modseq
        )
        assert update.modified == (2,)  # RFC 7162 §3.1.3
        assert [r.uid for r in update.changed] == [1]
        assert (await store.get_message(inbox.id, 2)) == second

    async def test_store_flags_within_rights(self, store: Store, inbox: Mailbox) -> None:
        """RFC 4314 §4: with ``rights``, flags those rights do not cover keep their state —
        a replace by a user with "s" alone sets \\Seen and keeps \\Flagged and \\Deleted."""
        await store.append(inbox.id, *make_message(1))
        await store.store_flags(inbox.id, [1], FlagOp.ADD, frozenset({"\\Flagged", "\\Deleted"}))
        replaced = await store.store_flags(
            inbox.id, [1], FlagOp.REPLACE, frozenset({"\\Seen", "$a"}), rights="s"
        )
        assert replaced.changed[0].flags == {"\\Seen", "\\Flagged", "\\Deleted"}
        removed = await store.store_flags(
            inbox.id, [1], FlagOp.REMOVE, frozenset({"\\Seen", "\\Deleted"}), rights="tw"
        )
        assert removed.changed[0].flags == {"\\Seen", "\\Flagged"}
        none = await store.store_flags(inbox.id, [1], FlagOp.ADD, frozenset({"$a"}), rights="st")
        assert none.unchanged == (1,) and none.changed == ()
        assert (await store.get_message(inbox.id, 1)) == removed.changed[0]

    async def test_expunge(self, store: Store, inbox: Mailbox) -> None:
        for i in range(4):
            await store.append(inbox.id, *make_message(i))
        before = (await store.mailbox_status(inbox.id)).mailbox.highestmodseq
        assert await store.expunge(inbox.id) == []
        assert (await store.mailbox_status(inbox.id)).mailbox.highestmodseq == before
        await store.store_flags(inbox.id, [1, 2, 4], FlagOp.ADD, frozenset({"\\Deleted"}))
        assert await store.expunge(inbox.id, [2, 3, 4]) == [2, 4]  # UID EXPUNGE
        assert await store.expunge(inbox.id) == [1]
        assert [m.uid for m in await store.list_messages(inbox.id)] == [3]
        assert await store.expunged_since(inbox.id, before) == [1, 2, 4]
        after_first = (await store.mailbox_status(inbox.id)).mailbox.highestmodseq - 1
        assert await store.expunged_since(inbox.id, after_first) == [1]
        new = (await store.append(inbox.id, *make_message(9))).record
        assert new.uid == 5

    async def test_changes_since(self, store: Store, inbox: Mailbox) -> None:
        for i in range(3):
            await store.append(inbox.id, *make_message(i))
        mark = (await store.mailbox_status(inbox.id)).mailbox.highestmodseq
        assert await store.changes_since(inbox.id, mark) == []
        update = await store.store_flags(inbox.id, [2], FlagOp.ADD, frozenset({"\\Seen"}))
        arrival = (await store.append(inbox.id, *make_message(3))).record
        assert await store.changes_since(inbox.id, mark) == [*update.changed, arrival]
        assert len(await store.changes_since(inbox.id, 0)) == 4

    async def test_open_mailbox(self, store: Store, account: Account, inbox: Mailbox) -> None:
        for i in range(3):
            await store.append(inbox.id, *make_message(i))
        await store.store_flags(inbox.id, [2], FlagOp.ADD, frozenset({"\\Seen"}))
        for _ in range(2):  # the second from the SQLite backend's snapshot cache
            snapshot = await store.open_mailbox(account.id, "inbox")
            assert snapshot.status == await store.mailbox_status(inbox.id)
            records = snapshot.records
            assert (records.uids, records.flags[1]) == ([1, 2, 3], frozenset({"\\Seen"}))
            assert (records.position(2), records.position(9)) == (1, None)
            assert list(records) == await store.list_messages(inbox.id)
            assert records[1:] == (await store.list_messages(inbox.id))[1:]
        await store.expunge(inbox.id, [1])  # nothing flagged \Deleted: no change
        await store.store_flags(inbox.id, [1], FlagOp.ADD, frozenset({"\\Deleted"}))
        await store.expunge(inbox.id)
        arrival = (await store.append(inbox.id, *make_message(3))).record
        patched = (await store.open_mailbox(account.id, INBOX)).records
        assert (patched.uids, patched[-1]) == ([2, 3, 4], arrival)

    async def test_mailbox_delta(self, store: Store, inbox: Mailbox) -> None:
        for i in range(4):
            await store.append(inbox.id, *make_message(i))
        mark = (await store.mailbox_status(inbox.id)).mailbox.highestmodseq
        quiet = await store.mailbox_delta(inbox.id, mark)
        assert (quiet.status.messages, quiet.changed, quiet.expunged) == (4, (), ())
        update = await store.store_flags(inbox.id, [2, 3], FlagOp.ADD, frozenset({"\\Deleted"}))
        await store.expunge(inbox.id, [3])
        arrival = (await store.append(inbox.id, *make_message(4))).record
        delta = await store.mailbox_delta(inbox.id, mark)
        assert delta.status == await store.mailbox_status(inbox.id)
        assert delta.changed == (update.changed[0], arrival)
        assert delta.expunged == (3,)
        # Concurrent identical calls may share a read, but each sees what preceded it.
        first, second = await asyncio.gather(
            store.mailbox_delta(inbox.id, mark), store.mailbox_delta(inbox.id, mark)
        )
        assert first == second == delta

    async def test_copy_messages(self, store: Store, account: Account, inbox: Mailbox) -> None:
        for i in range(3):
            await store.append(inbox.id, *make_message(i), flags=frozenset({"$k"}))
        archive = await store.get_mailbox(account.id, "Archive")
        await store.append(archive.id, *make_message(10))
        copied = await store.copy_messages(inbox.id, [3, 1, 42], archive.id)
        assert copied.pairs == [(1, 2), (3, 3)]
        copies = await store.list_messages(archive.id)
        originals = {m.uid: m for m in await store.list_messages(inbox.id)}
        assert [c.blob_id for c in copies[1:]] == [originals[1].blob_id, originals[3].blob_id]
        assert all(c.flags == {"$k"} for c in copies[1:])
        assert copies[1].internal_date == originals[1].internal_date
        assert len(originals) == 3
        assert await store.copy_messages(inbox.id, [], archive.id) == Copied([])
        with pytest.raises(NotFound):
            await store.copy_messages(inbox.id, [1], 10**9)

    async def test_copy_over_quota_stores_nothing(
        self, store: Store, account: Account, inbox: Mailbox
    ) -> None:
        for i in range(3):
            await store.append(inbox.id, *make_message(i))
        await store.set_quota(account.id, None, 4)
        archive = await store.get_mailbox(account.id, "Archive")
        with pytest.raises(QuotaExceeded):
            await store.copy_messages(inbox.id, [1, 2], archive.id)
        assert await store.list_messages(archive.id) == []
        assert (await store.mailbox_status(archive.id)).mailbox.uidnext == 1

    async def test_move_messages(self, store: Store, account: Account, inbox: Mailbox) -> None:
        for i in range(3):
            await store.append(inbox.id, *make_message(i))
        await store.set_quota(account.id, None, 3)  # a move within the account fits anyway
        trash = await store.get_mailbox(account.id, "Trash")
        mark = (await store.mailbox_status(inbox.id)).mailbox.highestmodseq
        blobs = {m.uid: m.blob_id for m in await store.list_messages(inbox.id)}
        moved = await store.move_messages(inbox.id, [2, 3], trash.id)
        assert moved == Copied([(2, 1), (3, 2)])  # within the account: no usage changed
        assert [m.uid for m in await store.list_messages(inbox.id)] == [1]
        assert [m.blob_id for m in await store.list_messages(trash.id)] == [blobs[2], blobs[3]]
        assert await store.expunged_since(inbox.id, mark) == [2, 3]
        assert (await store.quota_usage(account.id)).messages == 3

    async def test_move_within_one_mailbox_takes_one_modseq(
        self, store: Store, inbox: Mailbox
    ) -> None:
        """RFC 6851 §4.4: the move raises the mailbox's MODSEQ once, the expunges remembered
        at it, and the new copies get one above every message there before; one MODSEQ does
        both, as REPLACE's arrival and expunge share one (RFC 8508 §4.5)."""
        for i in range(3):
            await store.append(inbox.id, *make_message(i))
        mark = (await store.mailbox_status(inbox.id)).mailbox.highestmodseq
        moved = await store.move_messages(inbox.id, [1, 2], inbox.id)
        assert moved.pairs == [(1, 4), (2, 5)]
        assert [(m.uid, m.modseq) for m in await store.list_messages(inbox.id)] == [
            (3, mark),
            (4, mark + 1),
            (5, mark + 1),
        ]
        assert await store.expunged_since(inbox.id, mark) == [1, 2]
        assert await store.expunged_since(inbox.id, mark + 1) == []
        assert (await store.mailbox_status(inbox.id)).mailbox.highestmodseq == mark + 1

    async def test_copy_and_move_keep_the_flags_rights_allow_in_one_write(
        self, store: Store, account: Account, inbox: Mailbox
    ) -> None:
        """RFC 4314 §4: with the user's rights on the target, each copy keeps only the flags
        they let the user set ("s": \\Seen), written with the copy at its one MODSEQ."""
        for i in range(2):
            await store.append(
                inbox.id, *make_message(i), flags=frozenset({"\\Seen", "\\Flagged", "$Work"})
            )
        archive = await store.get_mailbox(account.id, "Archive")
        mark = (await store.mailbox_status(archive.id)).mailbox.highestmodseq
        await store.copy_messages(inbox.id, [1], archive.id, rights="lrsi")
        await store.move_messages(inbox.id, [2], archive.id, rights="lrsi")
        await store.copy_messages(inbox.id, [1], archive.id)  # no rights: every flag kept
        assert [(m.flags, m.modseq) for m in await store.list_messages(archive.id)] == [
            (frozenset({"\\Seen"}), mark + 1),
            (frozenset({"\\Seen"}), mark + 2),
            (frozenset({"\\Seen", "\\Flagged", "$Work"}), mark + 3),
        ]
        assert (await store.mailbox_status(archive.id)).mailbox.highestmodseq == mark + 3

    async def test_replace_message_in_one_write(
        self, store: Store, account: Account, inbox: Mailbox
    ) -> None:
        """RFC 8508 REPLACE: the new message stored and the old one expunged, whatever its
        flags, in one transaction; within one mailbox both take the one MODSEQ of the write."""
        for i in range(2):
            await store.append(inbox.id, *make_message(i))
        mark = (await store.mailbox_status(inbox.id)).mailbox.highestmodseq
        raw, info = make_message(7)
        replaced = await store.replace_message(
            inbox.id, 1, inbox.id, raw, info, flags=frozenset({"\\Seen"}), internal_date=T0
        )
        assert replaced is not None
        record = replaced.record
        assert (record.uid, record.modseq, record.flags) == (3, mark + 1, frozenset({"\\Seen"}))
        assert (record.internal_date, await store.read_blob(record.blob_id)) == (T0, raw)
        assert [m.uid for m in await store.list_messages(inbox.id)] == [2, 3]
        assert await store.expunged_since(inbox.id, mark) == [1]
        assert (await store.mailbox_status(inbox.id)).mailbox.highestmodseq == mark + 1
        # Into another mailbox: each of the two takes its next MODSEQ.
        drafts = await store.get_mailbox(account.id, "Drafts")
        other = await store.replace_message(inbox.id, 2, drafts.id, *make_message(8))
        assert other is not None and (other.record.mailbox_id, other.record.uid) == (drafts.id, 1)
        assert [m.uid for m in await store.list_messages(inbox.id)] == [3]
        assert await store.expunged_since(inbox.id, mark + 1) == [2]
        # The old message gone (another session expunged it): nothing is stored.
        status = await store.mailbox_status(inbox.id)
        gone_raw, gone_info = make_message(9)
        assert await store.replace_message(inbox.id, 2, inbox.id, gone_raw, gone_info) is None
        assert await store.mailbox_status(inbox.id) == status
        with pytest.raises(NotFound):
            await store.read_blob(hashlib.sha256(gone_raw).hexdigest())
        with pytest.raises(NotFound):
            await store.replace_message(inbox.id, 3, 10**9, gone_raw, gone_info)
        assert [m.uid for m in await store.list_messages(inbox.id)] == [3]

    async def test_replace_message_quota_is_the_net_change(
        self, store: Store, account: Account, inbox: Mailbox
    ) -> None:
        """A replacement within one account adds no message and only the octets the new one
        has beyond the old (RFC 9208 §4.3.1): at the limit, a no larger one fits; into another
        account's mailbox the whole new message counts there."""
        small, big = make_message(1), make_message(2, size_pad=100)
        await store.append(inbox.id, *big)
        await store.set_quota(account.id, len(big[0]), 1)  # full on both counts
        replaced = await store.replace_message(inbox.id, 1, inbox.id, *small)
        assert replaced is not None
        assert (replaced.size, replaced.count) == (len(small[0]) - len(big[0]), 0)
        assert replaced.usage == await store.quota_usage(account.id)
        assert (replaced.usage.bytes_used, replaced.usage.messages) == (len(small[0]), 1)
        with pytest.raises(QuotaExceeded):  # 100 octets more than the limit leaves room for
            await store.replace_message(inbox.id, 2, inbox.id, *make_message(3, size_pad=200))
        assert [m.uid for m in await store.list_messages(inbox.id)] == [2]
        carol = await store.add_account(f"carol@{DOMAIN}", "h", quota_messages=1)
        carols = await store.get_mailbox(carol.id, INBOX)
        moved = await store.replace_message(inbox.id, 2, carols.id, *big)
        assert moved is not None and (moved.size, moved.count) == (len(big[0]), 1)
        assert moved.usage == await store.quota_usage(carol.id)
        assert (await store.quota_usage(account.id)).messages == 0
        await store.set_quota(account.id, None, None)
        await store.append(inbox.id, *small)
        with pytest.raises(QuotaExceeded):  # carol is full: a new message there does not fit
            await store.replace_message(inbox.id, 3, carols.id, *make_message(4))
        assert [m.uid for m in await store.list_messages(inbox.id)] == [3]

    async def test_activity_counts_mail_per_interval(
        self, store: Store, account: Account, inbox: Mailbox
    ) -> None:
        now = datetime.now(UTC).replace(microsecond=0)
        hour = timedelta(hours=1)
        since = now - 3 * hour  # four intervals; the queue entry made now falls in the last
        boxes = {name: await store.get_mailbox(account.id, name) for name in ("Junk", "Sent")}
        drafts = await store.get_mailbox(account.id, "Drafts")
        placed = [
            (inbox, since + timedelta(minutes=10)),
            (inbox, since + timedelta(minutes=59)),
            (boxes["Junk"], since + hour),
            (boxes["Sent"], since + 2 * hour),
            (drafts, since + 2 * hour),  # not mail that moved
            (inbox, since - timedelta(seconds=1)),  # before the window
        ]
        for serial, (box, when) in enumerate(placed):
            await store.append(box.id, *make_message(serial), internal_date=when)
        await store.enqueue("ann@example.org", b"queued", [NewQueueRecipient("r@y.org")])
        counts = await store.activity(since, hour, 4)
        assert [c.start for c in counts] == [since + hour * i for i in range(4)]
        assert [(c.delivered, c.junk, c.sent, c.queued) for c in counts] == [
            (2, 0, 0, 0),
            (1, 1, 0, 0),
            (0, 0, 1, 0),
            (0, 0, 0, 1),
        ]
        assert await store.activity(since - 10 * hour, hour, 2) == [
            ActivityCounts(since - 10 * hour),
            ActivityCounts(since - 9 * hour),
        ]

    async def test_thread_fields(self, store: Store, inbox: Mailbox) -> None:
        heads = [
            "Message-ID: <a@x>\r\nSubject: Plan\r\nDate: Mon, 3 Mar 2025 12:00:00 +0000\r\n",
            "Message-ID: <b@x>\r\nSubject: Re: Plan\r\nIn-Reply-To: <a@x>\r\n",
            'Message-ID: <c@x>\r\nSubject: =?utf-8?q?R=C3=A9?=\r\nReferences: <a@x> <"b"@x>\r\n',
        ]
        for head in heads:
            raw = f"From: ann@example.org\r\n{head}\r\nbody\r\n".encode()
            await store.append(inbox.id, raw, parse_message(raw), internal_date=T0)
        other = await self._put_threaded(store, inbox, "Message-ID: <o@x>\r\n")
        await store.store_flags(inbox.id, [2], FlagOp.ADD, frozenset({"\\Seen"}))
        thread = (await store.thread_ids(inbox.id, [1]))[1]
        fields = await store.thread_fields(inbox.id, [thread])
        assert [
            (f.uid, f.subject, f.message_id, f.in_reply_to, f.references, f.seen) for f in fields
        ] == [
            (1, "Plan", "a@x", "", (), False),
            (2, "Re: Plan", "b@x", "a@x", (), True),
            (3, "Ré", "c@x", "", ("a@x", "b@x"), False),  # ids normalised at ingest
        ]
        assert fields[0].sent_date == datetime(2025, 3, 3, 12, tzinfo=UTC)
        assert fields[1].sent_date is None and fields[1].internal_date == T0
        assert [f.thread for f in fields] == [thread] * 3  # one conversation
        both = await store.thread_fields(
            inbox.id, [(await self._thread_of(store, inbox, other)), thread]
        )
        assert [f.uid for f in both] == [1, 2, 3, other]  # UID order, whatever the threads' order
        await store.store_flags(inbox.id, [2], FlagOp.ADD, frozenset({"\\Deleted"}))
        await store.expunge(inbox.id)
        assert [f.uid for f in await store.thread_fields(inbox.id, [thread])] == [1, 3]
        assert await store.thread_fields(inbox.id, []) == []
        assert await store.thread_fields(inbox.id + 1000, [thread]) == []

    async def test_thread_sizes_newest_activity_first(
        self, store: Store, account: Account, inbox: Mailbox
    ) -> None:
        """The web's conversations: each thread with its number of the mailbox's messages,
        by the latest date of them (the sent date, else INTERNALDATE), a tie by the highest
        UID; a message of the thread in another mailbox counts there only."""
        archive = await store.get_mailbox(account.id, "Archive")

        async def put(mailbox: Mailbox, hour: int, ids: str, dated: bool = True) -> int:
            date = f"Date: Mon, 3 Mar 2025 {hour}:00:00 +0000\r\n" if dated else ""
            raw = f"From: ann@example.org\r\nSubject: s\r\n{ids}{date}\r\nbody\r\n".encode()
            when = T0.replace(hour=hour)
            appended = await store.append(mailbox.id, raw, parse_message(raw), internal_date=when)
            return appended.record.uid

        plan = await put(inbox, 10, "Message-ID: <a@x>\r\n")
        lunch = await put(inbox, 11, "Message-ID: <b@x>\r\n")
        reply = await put(inbox, 14, "Message-ID: <c@x>\r\nIn-Reply-To: <a@x>\r\n")
        await put(archive, 15, "Message-ID: <d@x>\r\nIn-Reply-To: <b@x>\r\n")
        undated = await put(inbox, 13, "Message-ID: <e@x>\r\n", dated=False)
        tie = await put(inbox, 11, "Message-ID: <f@x>\r\n")
        threads = await store.thread_ids(inbox.id, [plan, lunch, undated, tie])
        assert threads[plan] == await self._thread_of(store, inbox, reply)
        assert await store.thread_sizes(inbox.id) == [
            (threads[plan], 2),
            (threads[undated], 1),
            (threads[tie], 1),  # as late as lunch, and its UID is higher
            (threads[lunch], 1),
        ]
        assert await store.thread_sizes(archive.id) == [(threads[lunch], 1)]
        await store.store_flags(inbox.id, [reply], FlagOp.ADD, frozenset({"\\Deleted"}))
        await store.expunge(inbox.id)
        assert [t for t, _ in await store.thread_sizes(inbox.id)] == [
            threads[undated],
            threads[tie],
            threads[lunch],
            threads[plan],
        ]
        assert await store.thread_sizes(inbox.id + 1000) == []

    async def _put_threaded(self, store: Store, mailbox: Mailbox, head: str) -> int:
        """Append a message with the given threading headers; its UID."""
        raw = f"From: ann@example.org\r\nSubject: s\r\n{head}\r\nbody {head!r}\r\n".encode()
        return (await store.append(mailbox.id, raw, parse_message(raw))).record.uid

    async def _thread_of(self, store: Store, mailbox: Mailbox, uid: int) -> int:
        return (await store.thread_ids(mailbox.id, [uid]))[uid]

    async def test_thread_ids_join_replies_in_either_order(
        self, store: Store, account: Account, inbox: Mailbox
    ) -> None:
        """RFC 8474 §5.2: a reply stored before its parent, in another mailbox of the account,
        still shares its thread; so do a sibling and a grandchild; an unrelated message not."""
        archive = await store.get_mailbox(account.id, "Archive")
        reply = await self._put_threaded(
            store, inbox, "Message-ID: <r@x>\r\nIn-Reply-To: <p@x>\r\nReferences: <p@x>\r\n"
        )
        parent = await self._put_threaded(store, archive, "Message-ID: <p@x>\r\n")
        sibling = await self._put_threaded(
            store, inbox, "Message-ID: <s@x>\r\nIn-Reply-To: <p@x>\r\n"
        )
        grandchild = await self._put_threaded(
            store, archive, "Message-ID: <g@x>\r\nReferences: <s@x>\r\n"
        )
        other = await self._put_threaded(store, inbox, "Message-ID: <o@x>\r\n")
        threads = await store.thread_ids(inbox.id, [reply, sibling, other, 99])
        assert threads.keys() == {reply, sibling, other}  # an absent UID is left out
        assert threads[sibling] == threads[reply] != threads[other]
        assert await self._thread_of(store, archive, parent) == threads[reply]
        assert await self._thread_of(store, archive, grandchild) == threads[reply]

    async def test_thread_ids_never_merge_threads(self, store: Store, inbox: Mailbox) -> None:
        """A message referring to two threads joins the older; the newer keeps its id
        (RFC 8474 §5.2: a THREADID once reported never changes)."""
        first = await self._put_threaded(store, inbox, "Message-ID: <a@x>\r\n")
        second = await self._put_threaded(store, inbox, "Message-ID: <b@x>\r\n")
        before = await store.thread_ids(inbox.id, [first, second])
        assert before[first] != before[second]
        bridge = await self._put_threaded(
            store, inbox, "Message-ID: <c@x>\r\nReferences: <b@x> <a@x>\r\n"
        )
        after = await store.thread_ids(inbox.id, [first, second, bridge])
        assert after == {**before, bridge: before[first]}

    async def test_thread_ids_of_identical_messages_without_message_id(
        self, store: Store, inbox: Mailbox
    ) -> None:
        """RFC 8474 §5.2: the same EMAILID (content) means the same thread, Message-ID or not."""
        raw = b"From: ann@example.org\r\nSubject: no id\r\n\r\nsame\r\n"
        first = await store.append(inbox.id, raw, parse_message(raw))
        again = await store.append(inbox.id, raw, parse_message(raw))
        different = await self._put_threaded(store, inbox, "X-No-Id: 1\r\n")
        first_uid, again_uid = first.record.uid, again.record.uid
        threads = await store.thread_ids(inbox.id, [first_uid, again_uid, different])
        assert threads[first_uid] == threads[again_uid] != threads[different]

    async def test_an_id_posing_as_a_content_key_is_no_thread_key(
        self, store: Store, inbox: Mailbox
    ) -> None:
        """Found by fuzz/thread_keys.py: a quoted id-left keeps its blanks, so a Message-ID of
        ``<" sha256:<digest>">`` was the content key of the message of that digest without a
        Message-ID, and joined its thread."""
        raw = b"From: ann@example.org\r\nSubject: no id\r\n\r\nsame\r\n"
        target = (await store.append(inbox.id, raw, parse_message(raw))).record
        forged = await self._put_threaded(
            store, inbox, f'Message-ID: <" sha256:{target.blob_id}">\r\n'
        )
        threads = await store.thread_ids(inbox.id, [target.uid, forged])
        assert threads[target.uid] != threads[forged]

    async def test_text_with_nul_is_stored(self, store: Store, inbox: Mailbox) -> None:
        """Found by fuzz/thread_keys.py: a NUL in a subject's encoded word, a Message-ID or a
        body made every delivery of the message fail on PostgreSQL (its text refuses NUL);
        the parse keeps U+FFFD in their place."""
        raw = (
            b"From: ann@example.org\r\nSubject: =?utf-8?q?a=00b?=\r\nMessage-ID: <a\x00b@x>\r\n"
            b"References: <c\x00d@x>\r\n\r\nbo\x00dy\r\n"
        )
        results = await store.deliver(raw, parse_message(raw), [DeliveryTarget(inbox.account_id)])
        assert [r.status for r in results] == [DeliveryStatus.STORED]
        [(thread, _)] = await store.thread_sizes(inbox.id)
        [fields] = await store.thread_fields(inbox.id, [thread])
        assert (fields.subject, fields.message_id) == ("a\ufffdb", "a\ufffdb@x")
        assert fields.references == ("c\ufffdd@x",)
        record = results[0].record
        assert record is not None and await store.read_blob(record.blob_id) == raw

    async def test_thread_ids_kept_by_copy_and_move(
        self, store: Store, account: Account, inbox: Mailbox
    ) -> None:
        root = await self._put_threaded(store, inbox, "Message-ID: <a@x>\r\n")
        reply = await self._put_threaded(store, inbox, "Message-ID: <b@x>\r\nReferences: <a@x>\r\n")
        thread = await self._thread_of(store, inbox, root)
        archive = await store.get_mailbox(account.id, "Archive")
        trash = await store.get_mailbox(account.id, "Trash")
        [(_, copied)] = (await store.copy_messages(inbox.id, [root], archive.id)).pairs
        [(_, moved)] = (await store.move_messages(inbox.id, [reply], trash.id)).pairs
        assert await self._thread_of(store, archive, copied) == thread
        assert await self._thread_of(store, trash, moved) == thread
        # The copies hold the thread after the original is gone: a late reply still joins.
        await store.store_flags(inbox.id, [root], FlagOp.ADD, frozenset({"\\Deleted"}))
        await store.expunge(inbox.id)
        late = await self._put_threaded(store, inbox, "Message-ID: <c@x>\r\nIn-Reply-To: <b@x>\r\n")
        assert await self._thread_of(store, inbox, late) == thread

    async def _expunge(self, store: Store, mailbox: Mailbox, uids: list[int]) -> None:
        await store.store_flags(mailbox.id, uids, FlagOp.ADD, frozenset({"\\Deleted"}))
        await store.expunge(mailbox.id, uids)

    async def test_thread_uids(self, store: Store, account: Account, inbox: Mailbox) -> None:
        """SEARCH THREADID's read: the mailbox's UIDs of one thread, ascending, and nothing
        of other mailboxes, other threads, expunged messages or threads that do not exist."""
        archive = await store.get_mailbox(account.id, "Archive")
        root = await self._put_threaded(store, inbox, "Message-ID: <a@x>\r\n")
        await self._put_threaded(store, inbox, "Message-ID: <o@x>\r\n")
        reply = await self._put_threaded(store, inbox, "Message-ID: <b@x>\r\nReferences: <a@x>\r\n")
        await self._put_threaded(store, archive, "Message-ID: <c@x>\r\nReferences: <a@x>\r\n")
        last = await self._put_threaded(store, inbox, "Message-ID: <d@x>\r\nReferences: <b@x>\r\n")
        thread = await self._thread_of(store, inbox, root)
        assert await store.thread_uids(inbox.id, thread) == [root, reply, last]
        assert await store.thread_uids(archive.id, thread) == [1]
        await self._expunge(store, inbox, [reply])
        assert await store.thread_uids(inbox.id, thread) == [root, last]
        assert await store.thread_uids(inbox.id, thread + 1000) == []
        assert await store.thread_uids(inbox.id + 1000, thread) == []

    async def test_thread_keys_pruned_with_the_last_message(
        self, store: Store, account: Account, inbox: Mailbox
    ) -> None:
        """A thread's keys stay while the account holds any of its messages, so a reply to
        an expunged parent still joins its sibling's thread (RFC 8474 §5.2: the ids of the
        messages left never change); once the last is expunged they go, and a reply to the
        thread starts a new one (no message carries the old id any more)."""
        parent = await self._put_threaded(store, inbox, "Message-ID: <p@x>\r\n")
        sibling = await self._put_threaded(
            store, inbox, "Message-ID: <s@x>\r\nIn-Reply-To: <p@x>\r\n"
        )
        thread = await self._thread_of(store, inbox, parent)
        await self._expunge(store, inbox, [parent])
        late = await self._put_threaded(store, inbox, "Message-ID: <l@x>\r\nIn-Reply-To: <p@x>\r\n")
        assert await self._thread_of(store, inbox, late) == thread
        assert await self._thread_of(store, inbox, sibling) == thread
        await self._expunge(store, inbox, [sibling, late])
        later = await self._put_threaded(
            store, inbox, "Message-ID: <m@x>\r\nIn-Reply-To: <p@x>\r\n"
        )
        assert await self._thread_of(store, inbox, later) != thread

    async def test_thread_keys_kept_by_move_pruned_with_mailbox(
        self, store: Store, account: Account, inbox: Mailbox
    ) -> None:
        """A MOVE within the account keeps the thread's keys (its message is still held);
        deleting the mailbox that held a thread's last message prunes them, as an expunge
        does, while a thread with a copy elsewhere keeps its keys."""
        archive = await store.get_mailbox(account.id, "Archive")
        gone = await store.create_mailbox(account.id, "Old")
        moved = await self._put_threaded(store, inbox, "Message-ID: <a@x>\r\n")
        copied = await self._put_threaded(store, inbox, "Message-ID: <b@x>\r\n")
        moved_thread = await self._thread_of(store, inbox, moved)
        copied_thread = await self._thread_of(store, inbox, copied)
        await store.move_messages(inbox.id, [moved], gone.id)
        reply = await self._put_threaded(
            store, archive, "Message-ID: <r@x>\r\nReferences: <a@x>\r\n"
        )
        assert await self._thread_of(store, archive, reply) == moved_thread
        await store.move_messages(archive.id, [reply], gone.id)
        await store.copy_messages(inbox.id, [copied], archive.id)
        await store.move_messages(inbox.id, [copied], gone.id)
        await store.delete_mailbox(gone.id)
        after_move = await self._put_threaded(
            store, inbox, "Message-ID: <x@x>\r\nReferences: <a@x>\r\n"
        )
        after_copy = await self._put_threaded(
            store, inbox, "Message-ID: <y@x>\r\nReferences: <b@x>\r\n"
        )
        assert await self._thread_of(store, inbox, after_move) not in {moved_thread, copied_thread}
        assert await self._thread_of(store, inbox, after_copy) == copied_thread

    async def test_ids_that_are_not_utf8_are_stored_and_thread(
        self, store: Store, account: Account, inbox: Mailbox
    ) -> None:
        """Raw 8-bit Message-ID and References that are not UTF-8 (spam has them) are stored —
        every delivery of such a message used to fail in the text columns — and the same
        bytes in a reply's References still find the thread."""
        root = b"From: a@example.net\r\nMessage-ID: <\xff\xfe@x>\r\nSubject: s \xff\r\n\r\nhi\r\n"
        reply = b"From: b@example.net\r\nReferences: <ok@y> <\xff\xfe@x>\r\n\r\nre\r\n"
        target = [DeliveryTarget(account.id)]
        [first] = await store.deliver(root, parse_message(root), target)
        [second] = await store.deliver(reply, parse_message(reply), target)
        assert first.record is not None and second.record is not None
        threads = await store.thread_ids(inbox.id, [first.record.uid, second.record.uid])
        assert threads[first.record.uid] == threads[second.record.uid]
        stored = await store.get_message(inbox.id, first.record.uid)
        assert stored is not None and stored.size == len(root)

    async def test_thread_ids_are_never_shared_between_accounts(
        self, store: Store, account: Account, inbox: Mailbox
    ) -> None:
        """One delivery to two accounts, and a copy into another account's mailbox: each
        account threads its own mail (RFC 8474 §5.2), joining its own related messages."""
        other = await store.add_account(f"carol@{DOMAIN}", "h")
        other_inbox = await store.get_mailbox(other.id, INBOX)
        root = await self._put_threaded(store, other_inbox, "Message-ID: <a@x>\r\n")
        raw = b"From: ann@example.org\r\nMessage-ID: <b@x>\r\nReferences: <a@x>\r\n\r\nhi\r\n"
        mine, theirs = await store.deliver(
            raw, parse_message(raw), [DeliveryTarget(account.id), DeliveryTarget(other.id)]
        )
        assert mine.record is not None and theirs.record is not None
        their_thread = await self._thread_of(store, other_inbox, root)
        assert await self._thread_of(store, other_inbox, theirs.record.uid) == their_thread
        my_thread = await self._thread_of(store, inbox, mine.record.uid)
        assert my_thread != their_thread
        [(_, copied)] = (await store.copy_messages(other_inbox.id, [root], inbox.id)).pairs
        assert await self._thread_of(store, inbox, copied) == my_thread  # joins <b@x>'s thread
        mine_alone = await self._put_threaded(store, inbox, "Message-ID: <z@x>\r\n")
        theirs_alone = await self._put_threaded(store, other_inbox, "Message-ID: <z@x>\r\n")
        assert await self._thread_of(store, inbox, mine_alone) != await self._thread_of(
            store, other_inbox, theirs_alone
        )

    @pytest.mark.parametrize("settled", [False, True], ids=["unindexed", "indexed"])
    async def test_search_text(self, store: Store, inbox: Mailbox, settled: bool) -> None:
        await store.append(inbox.id, *make_message(1, subject="Quarterly Report", body="Grüße"))
        await store.append(inbox.id, *make_message(2, subject="lunch", body="see the REPORT"))
        await store.append(inbox.id, *make_message(3, subject="misc", body="a b c"))
        if settled:
            await self.settle(store)
        assert await store.search_text(inbox.id, ["report"]) == {1, 2}
        assert await store.search_text(inbox.id, ["EPOR"]) == {1, 2}  # substring, any case
        assert await store.search_text(inbox.id, ["report"], body_only=True) == {2}
        assert await store.search_text(inbox.id, ["report", "lunch"]) == {2}
        assert await store.search_text(inbox.id, ["GRÜSSE"]) == set()
        assert await store.search_text(inbox.id, ["grüße"]) == {1}
        assert await store.search_text(inbox.id, ["ÜSS"]) == set()
        assert await store.search_text(inbox.id, ["Ü"]) == {1}  # shorter than a trigram
        assert await store.search_text(inbox.id, ["b c"]) == {3}
        assert await store.search_text(inbox.id, ["qu", "rep"]) == {1}
        assert await store.search_text(inbox.id, ['"quoted"']) == set()
        assert await store.search_text(inbox.id, ["nothing-like-this"]) == set()
        assert await store.search_text(inbox.id, []) == {1, 2, 3}

    async def test_search_after_expunge_and_copy(
        self, store: Store, account: Account, inbox: Mailbox
    ) -> None:
        await store.append(inbox.id, *make_message(1, body="needle one"))
        await store.append(inbox.id, *make_message(2, body="needle two"))
        await self.settle(store)
        archive = await store.get_mailbox(account.id, "Archive")
        await store.copy_messages(inbox.id, [2], archive.id)
        await store.store_flags(inbox.id, [1, 2], FlagOp.ADD, frozenset({"\\Deleted"}))
        await store.expunge(inbox.id)
        await self.settle(store)
        assert await store.search_text(inbox.id, ["needle"]) == set()
        assert await store.search_text(archive.id, ["needle"]) == {1}
        await store.append(inbox.id, *make_message(3, body="needle three"))
        assert await store.search_text(inbox.id, ["needle"]) == {3}

    # -- change feed ---------------------------------------------------------------------------
    async def test_change_feed(self, store: Store, account: Account, inbox: Mailbox) -> None:
        other = await store.add_account(f"other@{DOMAIN}", "h")
        subscription = store.subscribe(account.id)
        feed = aiter(subscription)
        record = (await store.append(inbox.id, *make_message(1))).record
        await store.deliver(*make_message(2), [DeliveryTarget(other.id)])
        change = await asyncio.wait_for(anext(feed), 5)
        assert change == Change(account.id, inbox.id, ChangeKind.EXISTS, record.modseq)
        update = await store.store_flags(inbox.id, [1], FlagOp.ADD, frozenset({"\\Deleted"}))
        change = await asyncio.wait_for(anext(feed), 5)
        assert (change.kind, change.modseq) == (ChangeKind.FLAGS, update.changed[0].modseq)
        await store.expunge(inbox.id)
        assert (await asyncio.wait_for(anext(feed), 5)).kind is ChangeKind.EXPUNGE
        created = await store.create_mailbox(account.id, "New")
        change = await asyncio.wait_for(anext(feed), 5)
        assert (change.kind, change.mailbox_id) == (ChangeKind.MAILBOXES, created.id)
        await store.set_subscribed(account.id, "New", True)
        change = await asyncio.wait_for(anext(feed), 5)
        assert change == Change(account.id, 0, ChangeKind.SUBSCRIPTIONS, 0)
        await subscription.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(feed), 5)

    async def test_change_feed_watches_a_shared_mailbox(
        self, store: Store, account: Account, inbox: Mailbox
    ) -> None:
        """RFC 4314 sharing: a grantee's subscription hears the one mailbox of another
        account it watches (the selected one), and nothing else of that account."""
        grantee = await store.add_account(f"watcher@{DOMAIN}", "h")
        support = await store.create_mailbox(account.id, "Support")
        subscription = store.subscribe(grantee.id)
        subscription.watch(support.id)
        feed = aiter(subscription)

        async def next_message_change() -> Change:
            """The next change but mailbox creations (on PostgreSQL the hints of the
            accounts' and Support's creation may arrive after the subscription)."""
            while True:
                change = await asyncio.wait_for(anext(feed), 5)
                if change.kind is not ChangeKind.MAILBOXES:
                    return change

        await store.append(inbox.id, *make_message(1))  # not watched
        record = (await store.append(support.id, *make_message(2))).record
        change = await next_message_change()
        assert change == Change(account.id, support.id, ChangeKind.EXISTS, record.modseq)
        subscription.watch(None)
        await store.append(support.id, *make_message(3))
        own = await store.get_mailbox(grantee.id, INBOX)
        mine = (await store.append(own.id, *make_message(4))).record
        change = await next_message_change()  # the next is the grantee's own
        assert change == Change(grantee.id, own.id, ChangeKind.EXISTS, mine.modseq)
        await subscription.close()

    async def test_change_feed_coalesces_for_slow_readers(
        self, store: Store, account: Account, inbox: Mailbox
    ) -> None:
        subscription = store.subscribe(account.id)
        for i in range(20):
            await store.append(inbox.id, *make_message(i))
        last = (await store.mailbox_status(inbox.id)).mailbox.highestmodseq
        feed = aiter(subscription)
        change = await asyncio.wait_for(anext(feed), 5)
        # Hints may be merged; the newest MODSEQ always arrives.
        while change.modseq < last:
            change = await asyncio.wait_for(anext(feed), 5)
        assert change == Change(account.id, inbox.id, ChangeKind.EXISTS, last)
        await subscription.close()

    # -- outbound queue ------------------------------------------------------------------------
    async def test_enqueue_and_inspect(self, store: Store) -> None:
        queued = await store.enqueue(
            "ann@example.org",
            b"raw message",
            [
                NewQueueRecipient("r1@y.org", frozenset({"SUCCESS", "FAILURE"}), "rfc822;r1@y.org"),
                NewQueueRecipient("r2@z.org"),
            ],
            ret="HDRS",
            envid="env-1",
        )
        assert (queued.sender, queued.size, queued.ret, queued.envid) == (
            "ann@example.org",
            11,
            "HDRS",
            "env-1",
        )
        first, second = queued.recipients
        assert first.notify == {"SUCCESS", "FAILURE"} and first.orcpt == "rfc822;r1@y.org"
        assert second.state is RecipientState.PENDING and second.attempts == 0
        assert await store.read_blob(queued.blob_id) == b"raw message"
        assert await store.get_queued(queued.id) == queued
        assert await store.list_queue() == [queued]
        assert await store.get_queued(10**9) is None
        with pytest.raises(InvalidName):
            await store.enqueue("a@b.org", b"x", [])

    async def test_queue_depth(self, store: Store) -> None:
        """The metrics listener's queue gauges: messages, open recipients by state, the
        oldest message's queueing time; final recipients and removed messages do not count."""
        assert await store.queue_depth() == QueueDepth()
        first = await store.enqueue(
            "a@x.org", b"one", [NewQueueRecipient("ok@y.org"), NewQueueRecipient("wait@y.org")]
        )
        second = await store.enqueue("", b"two", [NewQueueRecipient("r@z.org")])
        assert await store.queue_depth() == QueueDepth(2, 3, 0, first.queued_at)
        ok, wait = first.recipients
        now = first.queued_at + timedelta(seconds=1)
        await store.claim_due(now, limit=5, lease_seconds=60, owner="a")
        await store.record_attempts(
            first.id,
            [
                AttemptOutcome(ok.id, RecipientState.DELIVERED, "250 ok"),
                AttemptOutcome(wait.id, RecipientState.DEFERRED, "451 later", now),
            ],
        )
        assert await store.queue_depth() == QueueDepth(2, 1, 1, first.queued_at)
        await store.remove_queued(first.id)
        assert await store.queue_depth() == QueueDepth(1, 1, 0, second.queued_at)
        await store.remove_queued(second.id)
        assert await store.queue_depth() == QueueDepth()

    async def test_queued_message_keeps_requiretls(self, store: Store) -> None:
        """RFC 8689 §4.1: the REQUIRETLS tag is kept with the message, claimed or listed."""
        tagged = await store.enqueue(
            "a@x.org", b"m", [NewQueueRecipient("b@y.org")], requiretls=True
        )
        plain = await store.enqueue("a@x.org", b"m", [NewQueueRecipient("c@y.org")])
        assert (tagged.requiretls, plain.requiretls) == (True, False)
        assert [m.requiretls for m in await store.list_queue()] == [True, False]
        now = plain.queued_at + timedelta(seconds=1)
        claimed = await store.claim_due(now, limit=10, lease_seconds=60, owner="n1")
        assert {m.id: m.requiretls for m in claimed} == {tagged.id: True, plain.id: False}

    async def test_queued_recipient_keeps_its_filing(self, store: Store) -> None:
        """A local recipient queued for a retry keeps the policy's decision on its copy."""
        junk = Filing("Junk", True, b"X-Pillarbox-Spam: score=7.0; action=junk\r\n\x00\xff")
        ham = Filing(INBOX, False, b"")
        queued = await store.enqueue(
            "a@x.org",
            b"payload",
            [
                NewQueueRecipient("spam@y.org", filing=junk),
                NewQueueRecipient("ham@y.org", filing=ham),
                NewQueueRecipient("plain@y.org"),
            ],
        )
        assert [r.filing for r in queued.recipients] == [junk, ham, None]
        assert await store.get_queued(queued.id) == queued
        now = queued.queued_at + timedelta(seconds=1)
        [claimed] = await store.claim_due(now, limit=1, lease_seconds=60, owner="a")
        assert [r.filing for r in claimed.recipients] == [junk, ham, None]

    async def test_claim_due_leases(self, store: Store) -> None:
        queued = await store.enqueue("", b"bounce", [NewQueueRecipient("r@y.org")])
        now = queued.queued_at + timedelta(seconds=1)
        [claimed] = await store.claim_due(now, limit=10, lease_seconds=60, owner="node-a")
        assert claimed.id == queued.id and len(claimed.recipients) == 1
        assert await store.claim_due(now, limit=10, lease_seconds=60, owner="node-b") == []
        later = now + timedelta(seconds=61)  # node-a died; its lease expired
        [taken] = await store.claim_due(later, limit=10, lease_seconds=60, owner="node-b")
        assert taken.id == queued.id
        early = queued.queued_at - timedelta(seconds=1)
        assert await store.claim_due(early, limit=10, lease_seconds=60, owner="node-c") == []

    async def test_record_attempts(self, store: Store) -> None:
        queued = await store.enqueue(
            "a@x.org", b"payload", [NewQueueRecipient("ok@y.org"), NewQueueRecipient("wait@y.org")]
        )
        now = queued.queued_at + timedelta(seconds=1)
        ok, wait = queued.recipients
        [claimed] = await store.claim_due(now, limit=5, lease_seconds=60, owner="a")
        retry_at = now + timedelta(minutes=5)
        await store.record_attempts(
            claimed.id,
            [
                AttemptOutcome(ok.id, RecipientState.DELIVERED, "250 2.0.0 ok"),
                AttemptOutcome(wait.id, RecipientState.DEFERRED, "451 4.3.0 later", retry_at, True),
            ],
        )
        current = await store.get_queued(queued.id)
        assert current is not None
        done, deferred = current.recipients
        assert (done.state, done.attempts, done.last_reply) == (
            RecipientState.DELIVERED,
            1,
            "250 2.0.0 ok",
        )
        assert (deferred.state, deferred.next_attempt, deferred.delay_notified) == (
            RecipientState.DEFERRED,
            retry_at,
            True,
        )
        # The claim is released, and only the deferred recipient is due, once its time comes.
        assert await store.claim_due(now, limit=5, lease_seconds=60, owner="b") == []
        [again] = await store.claim_due(retry_at, limit=5, lease_seconds=60, owner="b")
        assert [r.id for r in again.recipients] == [wait.id]
        await store.record_attempts(
            again.id, [AttemptOutcome(wait.id, RecipientState.FAILED, "550 5.1.1 no")]
        )
        assert await store.get_queued(queued.id) is None
        with pytest.raises(NotFound):
            await store.read_blob(queued.blob_id)

    async def test_record_attempts_errors(self, store: Store) -> None:
        queued = await store.enqueue("a@x.org", b"p", [NewQueueRecipient("r@y.org")])
        with pytest.raises(NotFound):
            await store.record_attempts(10**9, [])
        with pytest.raises(NotFound):
            await store.record_attempts(
                queued.id, [AttemptOutcome(10**9, RecipientState.DELIVERED, None)]
            )
        assert await store.get_queued(queued.id) == queued

    async def test_retry_and_remove_queued(self, store: Store) -> None:
        queued = await store.enqueue("a@x.org", b"p", [NewQueueRecipient("r@y.org")])
        [rcpt] = queued.recipients
        now = queued.queued_at + timedelta(seconds=1)
        await store.claim_due(now, limit=1, lease_seconds=1, owner="a")
        far = now + timedelta(days=1)
        await store.record_attempts(
            queued.id, [AttemptOutcome(rcpt.id, RecipientState.DEFERRED, "421", far)]
        )
        await store.retry_queued(queued.id, now)
        [due] = await store.claim_due(now, limit=1, lease_seconds=1, owner="a")
        assert due.recipients[0].next_attempt == now
        await store.remove_queued(queued.id)
        assert await store.list_queue() == []
        with pytest.raises(NotFound):
            await store.remove_queued(queued.id)
        with pytest.raises(NotFound):
            await store.retry_queued(queued.id, now)

    async def test_wake_queue_reaches_every_listener(self, store: Store) -> None:
        """Each wake-up reaches every callback, the store's own included (on PostgreSQL by
        the round trip through NOTIFY and the LISTEN connection)."""
        heard: list[str] = []
        both = asyncio.Event()

        def hear(name: str) -> None:
            heard.append(name)
            if len(heard) == 2:
                both.set()

        store.on_queue_wake(lambda: hear("runner"))
        store.on_queue_wake(lambda: hear("other"))
        await store.wake_queue()
        async with asyncio.timeout(5):
            await both.wait()
        assert sorted(heard) == ["other", "runner"]

    async def test_queue_and_mailbox_share_blobs(self, store: Store, inbox: Mailbox) -> None:
        raw, info = make_message(1)
        queued = await store.enqueue("a@x.org", raw, [NewQueueRecipient("r@y.org")])
        record = (await store.append(inbox.id, raw, info)).record
        assert record.blob_id == queued.blob_id
        assert await store.message_infos(inbox.id, [record.uid]) == {record.uid: info}
        await store.remove_queued(queued.id)
        assert await store.read_blob(record.blob_id) == raw
        assert await store.search_text(inbox.id, ["message body number 1"]) == {record.uid}

    # -- spam filter evidence --------------------------------------------------------------------
    async def test_spam_evidence_is_the_separate_reads_together(
        self, store: Store, account: Account
    ) -> None:
        empty = await store.spam_evidence(account.id, ["cheap", "meeting"], ["from:a@b.test"])
        assert empty == SpamEvidence((SpamCounts(), {}), (SpamCounts(), {}), {}, [])
        await store.train_spam_model(None, SpamCounts(3, 2), {"cheap": SpamCounts(0, 2)})
        await store.train_spam_model(account.id, SpamCounts(1, 0), {"meeting": SpamCounts(1, 0)})
        await store.record_sender_reputation(account.id, ["from:a@b.test"], SpamCounts(spam=1))
        await store.set_sender_entry(account.id, SenderListEntry("b.test", SenderListKind.BLOCK))
        tokens, keys = ["cheap", "meeting", "unseen"], ["from:a@b.test", "b.test"]
        evidence = await store.spam_evidence(account.id, tokens, keys)
        assert evidence == SpamEvidence(
            (SpamCounts(3, 2), {"cheap": SpamCounts(0, 2)}),
            (SpamCounts(1, 0), {"meeting": SpamCounts(1, 0)}),
            {"from:a@b.test": SpamCounts(0, 1)},
            [SenderListEntry("b.test", SenderListKind.BLOCK)],
            (1, 1),
        )
        assert evidence.global_model == await store.spam_model(None, tokens)
        assert evidence.account_model == await store.spam_model(account.id, tokens)
        assert evidence.reputation == await store.sender_reputation(account.id, keys)
        assert evidence.sender_entries == await store.list_sender_entries(account.id)
        # Asked again (token counts now from the cache): the same answer.
        assert await store.spam_evidence(account.id, tokens, keys) == evidence

    async def test_sender_entries_change_kind_and_are_removed_and_evidence_sees_it(
        self, store: Store, account: Account
    ) -> None:
        """What the settings, the API and the CLI do to the lists (``policy.senderlists``),
        seen by the next verdict's evidence at once (its kept copy is dropped)."""
        allow, block = SenderListKind.ALLOW, SenderListKind.BLOCK
        assert (await store.spam_evidence(account.id, [], [])).sender_entries == []
        await store.set_sender_entry(account.id, SenderListEntry("Z.test", allow))
        await store.set_sender_entry(account.id, SenderListEntry("a@b.test", allow))
        await store.set_sender_entry(account.id, SenderListEntry("z.test", block))
        listed = [SenderListEntry("a@b.test", allow), SenderListEntry("z.test", block)]
        assert await store.list_sender_entries(account.id) == listed
        assert (await store.spam_evidence(account.id, [], [])).sender_entries == listed
        await store.remove_sender_entry(account.id, "A@b.test")
        assert (await store.spam_evidence(account.id, [], [])).sender_entries == listed[1:]
        with pytest.raises(NotFound):
            await store.remove_sender_entry(account.id, "a@b.test")
        with pytest.raises(NotFound):
            await store.set_sender_entry(account.id + 10_000, SenderListEntry("x.test", block))

    async def test_spam_evidence_sees_training_by_another_process(
        self, store_factory: StoreFactory, store: Store, account: Account
    ) -> None:
        """A training committed elsewhere (``pillarbox spam train``, another node) — including
        one that leaves the totals as they were — is seen once what the store keeps may have
        expired (:meth:`outlast_kept`: on PostgreSQL once the other node's notification
        arrived; after ``directory_ttl_ms`` on SQLite, which answers from memory meanwhile);
        the store's own training at once."""
        tokens = ["cheap", "pills", "hello"]
        await store.train_spam_model(None, SpamCounts(1, 1), {"cheap": SpamCounts(0, 1)})
        before = await store.spam_evidence(account.id, tokens, [])
        assert before.global_model == (SpamCounts(1, 1), {"cheap": SpamCounts(0, 1)})
        other = store_factory()
        await other.open()
        try:
            # Untrain one spam and train another: same totals, different token counts.
            await other.train_spam_model(
                None, SpamCounts(0, 0), {"cheap": SpamCounts(0, -1), "pills": SpamCounts(0, 1)}
            )
            await self.outlast_kept(store)
            after = await store.spam_evidence(account.id, tokens, [])
            assert after.global_model == (SpamCounts(1, 1), {"pills": SpamCounts(0, 1)})
            # What a caller keeps per generation (the policy's clues) is dropped on this.
            assert after.generations == (before.generations[0] + 1, 0)
            await other.train_spam_model(account.id, SpamCounts(1, 0), {"hello": SpamCounts(1, 0)})
        finally:
            await other.close()
        await self.outlast_kept(store)
        mine = await store.spam_evidence(account.id, tokens, [])
        assert mine.account_model == (SpamCounts(1, 0), {"hello": SpamCounts(1, 0)})
        assert mine.generations == (after.generations[0], 1)
        # This store's own training, too.
        await store.train_spam_model(account.id, SpamCounts(0, 0), {"hello": SpamCounts(2, 0)})
        assert (await store.spam_model(account.id, tokens))[1] == {"hello": SpamCounts(3, 0)}
        assert (await store.spam_evidence(account.id, tokens, [])).account_model == (
            SpamCounts(1, 0),
            {"hello": SpamCounts(3, 0)},
        )

    async def test_ended_sessions_and_accounts_by_id_follow_every_write(
        self, store_factory: StoreFactory, store: Store, account: Account
    ) -> None:
        """What a web request asks each time (is the session ended? whose is it?) may be
        answered from memory, but a logout or a password change through this store is seen
        at once, and through another (another node, the command line) once
        :meth:`outlast_kept` (on PostgreSQL: once its notification arrived)."""
        ended, by_id = TokenKind.ENDED_SESSION, store.get_account_by_id
        assert await store.find_token(ended, "d1") is None
        assert await by_id(account.id) == account
        other = store_factory()
        await other.open()
        try:
            await other.add_token(account.id, ended, "", "d1")
            await other.set_password(account.id, "elsewhere", None)
            await self.outlast_kept(store)
            found = await store.find_token(ended, "d1")
            assert found is not None and found.account_id == account.id
            changed = await by_id(account.id)
            assert changed is not None and changed.password_hash == "elsewhere"
        finally:
            await other.close()
        assert await store.find_token(ended, "d2") is None
        await store.add_token(account.id, ended, "", "d2")
        assert await store.find_token(ended, "d2") is not None
        await store.remove_token(account.id, found.id)
        assert await store.find_token(ended, "d1") is None
        await store.set_password(account.id, "here", None)
        changed = await by_id(account.id)
        assert changed is not None and changed.password_hash == "here"

    # -- Sieve scripts ---------------------------------------------------------------------------
    async def test_sieve_scripts_are_kept_by_name(self, store: Store, account: Account) -> None:
        assert await store.list_sieve_scripts(account.id) == []
        assert await store.get_sieve_script(account.id, "a") is None
        text = 'require "fileinto";\r\nfileinto "Été";\n'
        for name in ("é", "a", "B"):
            await store.put_sieve_script(account.id, name, text)
        listed = await store.list_sieve_scripts(account.id)
        # Code point order (RFC 5804 leaves it open; the same on every backend).
        assert listed == [SieveScript(n, text, False) for n in ("B", "a", "é")]
        assert await store.get_sieve_script(account.id, "é") == SieveScript("é", text, False)
        assert await store.get_sieve_script(account.id, "A") is None  # names are exact
        with pytest.raises(NotFound):
            await store.put_sieve_script(10**9, "a", "keep;")

    async def test_one_sieve_script_is_active(self, store: Store, account: Account) -> None:
        await store.put_sieve_script(account.id, "one", "keep;")
        await store.put_sieve_script(account.id, "two", "discard;")
        assert await store.active_sieve_script(account.id) is None
        await store.set_active_sieve_script(account.id, "one")
        assert await store.active_sieve_script(account.id) == SieveScript("one", "keep;", True)
        await store.set_active_sieve_script(account.id, "two")
        assert await store.active_sieve_script(account.id) == SieveScript("two", "discard;", True)
        assert [s.active for s in await store.list_sieve_scripts(account.id)] == [False, True]
        # Replacing the active script keeps it active, with the new text at once.
        await store.put_sieve_script(account.id, "two", "stop;")
        assert await store.active_sieve_script(account.id) == SieveScript("two", "stop;", True)
        with pytest.raises(NotFound):
            await store.set_active_sieve_script(account.id, "three")
        assert await store.active_sieve_script(account.id) == SieveScript("two", "stop;", True)
        await store.set_active_sieve_script(account.id, None)
        assert await store.active_sieve_script(account.id) is None
        assert not any(s.active for s in await store.list_sieve_scripts(account.id))

    async def test_sieve_scripts_delete_and_rename(self, store: Store, account: Account) -> None:
        await store.put_sieve_script(account.id, "old", "keep;")
        await store.put_sieve_script(account.id, "other", "discard;")
        await store.set_active_sieve_script(account.id, "old")
        with pytest.raises(AlreadyExists):
            await store.rename_sieve_script(account.id, "old", "other")
        with pytest.raises(NotFound):
            await store.rename_sieve_script(account.id, "missing", "new")
        await store.rename_sieve_script(account.id, "old", "new")
        assert await store.get_sieve_script(account.id, "old") is None
        assert await store.active_sieve_script(account.id) == SieveScript("new", "keep;", True)
        await store.delete_sieve_script(account.id, "new")
        assert await store.active_sieve_script(account.id) is None
        with pytest.raises(NotFound):
            await store.delete_sieve_script(account.id, "new")
        assert await store.list_sieve_scripts(account.id) == [
            SieveScript("other", "discard;", False)
        ]

    async def test_sieve_scripts_belong_to_their_account(
        self, store_factory: StoreFactory, store: Store, account: Account
    ) -> None:
        """Per account, durable, and removed with the account."""
        other = await store.add_account(f"carol@{DOMAIN}", "h")
        await store.put_sieve_script(account.id, "s", "keep;")
        await store.set_active_sieve_script(account.id, "s")
        await store.put_sieve_script(other.id, "s", "discard;")
        assert await store.active_sieve_script(other.id) is None
        with pytest.raises(NotFound):
            await store.delete_sieve_script(other.id, "missing")
        elsewhere = store_factory()  # another process on the same data: it was committed
        await elsewhere.open()
        try:
            assert await elsewhere.active_sieve_script(account.id) == SieveScript(
                "s", "keep;", True
            )
        finally:
            await elsewhere.close()
        await store.remove_account(account.id)
        assert await store.list_sieve_scripts(account.id) == []
        assert await store.active_sieve_script(account.id) is None
        assert await store.list_sieve_scripts(other.id) == [SieveScript("s", "discard;", False)]

    # -- METADATA (RFC 5464) --------------------------------------------------------------------
    async def test_metadata_entries_of_mailboxes_and_server(
        self, store: Store, account: Account, inbox: Mailbox
    ) -> None:
        limits = MetadataLimits(max_entries=10, max_total=10_000)
        assert await store.get_metadata(account.id, inbox.id) == {}
        subscription = store.subscribe(account.id)
        feed = aiter(subscription)
        binary = bytes(range(256))
        await store.set_metadata(
            account.id,
            inbox.id,
            {
                "/private/comment": b"mine",
                "/shared/vendor/x/a": binary,
                "/shared/vendor/x/a/b": b"",
            },
            limits,
        )
        change = await asyncio.wait_for(anext(feed), 5)
        assert change == Change(account.id, inbox.id, ChangeKind.METADATA, 0)
        await store.set_metadata(account.id, None, {"/private/vendor/v/push": b"token"}, limits)
        change = await asyncio.wait_for(anext(feed), 5)
        assert change == Change(account.id, 0, ChangeKind.METADATA, 0)
        await subscription.close()
        # A name covers itself and what lies below it, never a mere prefix of a component.
        got = await store.get_metadata(account.id, inbox.id, ["/shared/vendor/x/a", "/shared/v"])
        assert got == {"/shared/vendor/x/a": binary, "/shared/vendor/x/a/b": b""}
        assert await store.get_metadata(account.id, inbox.id, ["/private"]) == {
            "/private/comment": b"mine"
        }
        assert await store.get_metadata(account.id, None) == {"/private/vendor/v/push": b"token"}
        await store.set_metadata(
            account.id, inbox.id, {"/private/comment": None, "/shared/vendor/x/a/b": b"new"}, limits
        )
        assert await store.list_metadata(account.id) == {
            0: {"/private/vendor/v/push": b"token"},
            inbox.id: {"/shared/vendor/x/a": binary, "/shared/vendor/x/a/b": b"new"},
        }
        other = await store.add_account(f"other@{DOMAIN}", "h")
        with pytest.raises(NotFound):  # another account's mailbox
            await store.get_metadata(other.id, inbox.id)
        with pytest.raises(NotFound):
            await store.set_metadata(other.id, inbox.id, {"/shared/comment": b"x"}, limits)
        assert await store.get_metadata(other.id, None) == {}

    async def test_metadata_follows_its_mailbox(self, store: Store, account: Account) -> None:
        limits = MetadataLimits(max_entries=10, max_total=10_000)
        box = await store.create_mailbox(account.id, "Box")
        child = await store.create_mailbox(account.id, "Box/Child")
        await store.set_metadata(account.id, box.id, {"/shared/comment": b"box"}, limits)
        await store.set_metadata(account.id, child.id, {"/shared/comment": b"child"}, limits)
        await store.rename_mailbox(account.id, "Box", "Renamed")  # RFC 5464 §4.1
        renamed = await store.get_mailbox(account.id, "Renamed/Child")
        assert await store.get_metadata(account.id, renamed.id) == {"/shared/comment": b"child"}
        await store.delete_mailbox(renamed.id)
        again = await store.create_mailbox(account.id, "Renamed/Child")
        assert await store.get_metadata(account.id, again.id) == {}  # nothing inherited
        inbox = await store.get_mailbox(account.id, INBOX)
        await store.set_metadata(account.id, inbox.id, {"/private/comment": b"in"}, limits)
        await store.rename_mailbox(account.id, INBOX, "Old")  # copied; INBOX keeps its own
        old = await store.get_mailbox(account.id, "Old")
        assert await store.get_metadata(account.id, old.id) == {"/private/comment": b"in"}
        assert await store.get_metadata(account.id, inbox.id) == {"/private/comment": b"in"}
        await store.remove_account(account.id)
        assert await store.list_metadata(account.id) == {}

    async def test_acl_entries_and_shared_mailboxes(
        self, store: Store, account: Account, inbox: Mailbox
    ) -> None:
        """RFC 4314: entries by account and special identifier, the grantee's view of them,
        kept through a rename, gone with the mailbox or the grantee."""
        bob = await store.add_account(f"grantee@{DOMAIN}", "h")
        carol = await store.add_account(f"anyone-else@{DOMAIN}", "h")
        support = await store.create_mailbox(account.id, "Support")
        assert await store.get_acl(support.id) == []
        await store.set_acl(support.id, bob.id, "rl")  # stored in RFC 4314 §2.1 order
        await store.set_acl(support.id, "anyone", "l")
        assert await store.get_acl(support.id) == [
            AclEntry("anyone", "l"),
            AclEntry(f"grantee@{DOMAIN}", "lr"),
        ]
        await store.set_acl(support.id, bob.id, "lrswi")  # replaces
        await store.set_acl(support.id, bob.id, "ae", "+")  # RFC 4314 §3.1 modifiers
        await store.set_acl(support.id, bob.id, "ax", "-")
        with pytest.raises(ValueError, match="unknown ACL modification"):
            await store.set_acl(support.id, bob.id, "l", "*")
        shared = await store.shared_with(bob.id)
        assert [(s.mailbox.id, s.owner, s.rights) for s in shared] == [
            (support.id, account.address, "lrswie")
        ]
        # carol has only what "anyone" gives; the owner sees none of their own mailboxes.
        assert [(s.mailbox.name, s.rights) for s in await store.shared_with(carol.id)] == [
            ("Support", "l")
        ]
        assert await store.shared_with(account.id) == []
        await store.rename_mailbox(account.id, "Support", "Help")
        assert [s.mailbox.name for s in await store.shared_with(bob.id)] == ["Help"]
        await store.set_acl(support.id, "anyone", "")  # empty rights remove the entry
        assert await store.shared_with(carol.id) == []
        await store.set_acl(support.id, carol.id, "l")
        await store.remove_account(carol.id)  # the grantee's entries go with it
        assert await store.get_acl(support.id) == [AclEntry(f"grantee@{DOMAIN}", "lrswie")]
        with pytest.raises(NotFound):
            await store.set_acl(support.id, "nobody", "l")
        with pytest.raises(NotFound):
            await store.set_acl(support.id, carol.id, "l")
        await store.set_acl(inbox.id, bob.id, "lr")
        await store.delete_mailbox(support.id)
        assert [s.mailbox.id for s in await store.shared_with(bob.id)] == [inbox.id]
        with pytest.raises(NotFound):
            await store.get_acl(support.id)
        with pytest.raises(NotFound):
            await store.set_acl(support.id, bob.id, "l")

    async def test_acl_negative_entries(self, store: Store, account: Account) -> None:
        """RFC 4314 §2: a negative entry sits beside the identifier's positive one, changes
        apart from it, and takes its rights away from every positive entry that applies."""
        bob = await store.add_account(f"grantee@{DOMAIN}", "h")
        carol = await store.add_account(f"anyone-else@{DOMAIN}", "h")
        team = await store.create_mailbox(account.id, "Team")
        await store.set_acl(team.id, "anyone", "lrsw")
        await store.set_acl(team.id, bob.id, "lrswite")
        await store.set_acl(team.id, bob.id, "wt", negative=True)
        await store.set_acl(team.id, "anyone", "r", "+", negative=True)
        await store.set_acl(team.id, "anyone", "s", "+", negative=True)
        assert await store.get_acl(team.id) == [
            AclEntry("anyone", "lrsw"),
            AclEntry("anyone", "rs", negative=True),
            AclEntry(f"grantee@{DOMAIN}", "lrswite"),
            AclEntry(f"grantee@{DOMAIN}", "wt", negative=True),
        ]
        # bob: (lrsw ∪ lrswite) − (rs ∪ wt); carol: lrsw − rs.
        assert [s.rights for s in await store.shared_with(bob.id)] == ["lie"]
        assert [s.rights for s in await store.shared_with(carol.id)] == ["lw"]
        await store.set_acl(team.id, bob.id, "", negative=True)  # DELETEACL -bob
        assert [s.rights for s in await store.shared_with(bob.id)] == ["lwite"]
        await store.set_acl(team.id, bob.id, "")  # DELETEACL bob
        await store.set_acl(team.id, carol.id, "l", negative=True)  # a negative entry alone
        assert await store.get_acl(team.id) == [
            AclEntry("anyone", "lrsw"),
            AclEntry("anyone", "rs", negative=True),
            AclEntry(f"anyone-else@{DOMAIN}", "l", negative=True),
        ]
        assert [s.rights for s in await store.shared_with(carol.id)] == ["w"]
        assert [s.rights for s in await store.shared_with(bob.id)] == ["lw"]
        await store.set_acl(team.id, "anyone", "lrsw", "-")  # no positive entry is left
        assert await store.get_acl(team.id) == [
            AclEntry("anyone", "rs", negative=True),
            AclEntry(f"anyone-else@{DOMAIN}", "l", negative=True),
        ]
        assert await store.shared_with(bob.id) == []
        await store.remove_account(carol.id)
        assert await store.get_acl(team.id) == [AclEntry("anyone", "rs", negative=True)]

    async def test_metadata_limits(self, store: Store, account: Account, inbox: Mailbox) -> None:
        limits = MetadataLimits(max_entries=2, max_total=40)
        await store.set_metadata(account.id, inbox.id, {"/a/b": b"1", "/a/c": b"2"}, limits)
        with pytest.raises(TooManyEntries):  # all or nothing: /a/b stays
            await store.set_metadata(
                account.id, inbox.id, {"/a/b": None, "/a/d": b"3", "/a/e": b""}, limits
            )
        assert await store.get_metadata(account.id, inbox.id) == {"/a/b": b"1", "/a/c": b"2"}
        # Replacing and removing within the count is fine; the server has its own count.
        await store.set_metadata(account.id, inbox.id, {"/a/b": None, "/a/d": b"3"}, limits)
        await store.set_metadata(account.id, None, {"/s/a": b"1", "/s/b": b"2"}, limits)
        # 4 entries of 5 octets: 20 of 40; 21 more would make 41.
        with pytest.raises(QuotaExceeded):
            await store.set_metadata(account.id, None, {"/s/b": b"2" + b"x" * 21}, limits)
        await store.set_metadata(account.id, None, {"/s/b": b"2" + b"x" * 20}, limits)
        # Below a lowered limit, writes that do not grow the total or count still pass.
        tight = MetadataLimits(max_entries=1, max_total=10)
        await store.set_metadata(account.id, None, {"/s/b": b"2"}, tight)
        with pytest.raises(QuotaExceeded):
            await store.set_metadata(account.id, None, {"/s/b": b"22"}, tight)
        with pytest.raises(TooManyEntries):
            await store.set_metadata(account.id, inbox.id, {"/a/e": b""}, tight)

    # -- outbound sending limits ----------------------------------------------------------------
    async def test_sending_limits_are_per_account(
        self, store_factory: StoreFactory, store: Store, account: Account
    ) -> None:
        other = await store.add_account(f"carol@{DOMAIN}", "h")
        assert await store.sending_limits(account.id) == SendingLimits()
        own = SendingLimits(messages=3, recipients=None, first_time=0)
        await store.set_sending_limits(account.id, own)
        assert await store.sending_limits(account.id) == own
        assert await store.sending_limits(other.id) == SendingLimits()
        elsewhere = store_factory()  # committed: another process reads it
        await elsewhere.open()
        try:
            assert await elsewhere.sending_limits(account.id) == own
        finally:
            await elsewhere.close()
        await store.set_sending_limits(account.id, SendingLimits())
        assert await store.sending_limits(account.id) == SendingLimits()
        with pytest.raises(NotFound):
            await store.set_sending_limits(10**9, own)

    async def test_sending_usage_counts_the_window(self, store: Store, account: Account) -> None:
        day = timedelta(hours=24)
        year = timedelta(days=365)

        async def send(at: datetime, *recipients: str) -> None:
            await store.record_sending(
                account.id, recipients, at, window_start=at - day, memory_start=at - year
            )

        empty = await store.sending_usage(account.id, T0 - day)
        assert empty == SendingUsage(0, 0, 0, SendingLimits())
        await send(T0, "a@x.org", "b@x.org")
        await send(T0 + timedelta(hours=1), "a@x.org", "c@y.org", "c@y.org")
        usage = await store.sending_usage(account.id, T0 + timedelta(hours=1) - day)
        # Duplicates within one message count once; a@x.org was first sent to once.
        assert (usage.messages, usage.recipients, usage.first_time) == (2, 4, 3)
        assert await store.known_recipients(account.id, ["a@x.org", "z@x.org", "c@y.org"]) == {
            "a@x.org",
            "c@y.org",
        }
        assert await store.known_recipients(account.id, []) == set()
        # The window slides: a moment past T0 + 24 h, the first message is out of it.
        later = T0 + day + timedelta(microseconds=1)
        usage = await store.sending_usage(account.id, later - day)
        assert (usage.messages, usage.recipients, usage.first_time) == (1, 2, 1)
        # A recipient first sent to before the window is known, not first-time, again.
        await send(later, "b@x.org")
        usage = await store.sending_usage(account.id, later - day)
        assert (usage.messages, usage.recipients, usage.first_time) == (2, 3, 1)
        await store.set_sending_limits(account.id, SendingLimits(messages=5))
        assert (await store.sending_usage(account.id, later - day)).limits == SendingLimits(5)

    async def test_sending_memory_is_pruned(self, store: Store, account: Account) -> None:
        """Each write forgets the account's messages before the window and its recipients not
        sent to within the memory; the account's removal takes everything."""
        other = await store.add_account(f"carol@{DOMAIN}", "h")
        day = timedelta(hours=24)
        await store.record_sending(
            account.id, ["old@x.org"], T0, window_start=T0 - day, memory_start=T0 - day
        )
        await store.record_sending(
            other.id, ["old@x.org"], T0, window_start=T0 - day, memory_start=T0 - day
        )
        then = T0 + timedelta(days=10)
        await store.record_sending(
            account.id, ["new@x.org"], then, window_start=then - day, memory_start=then - day
        )
        assert await store.known_recipients(account.id, ["old@x.org", "new@x.org"]) == {"new@x.org"}
        usage = await store.sending_usage(account.id, T0 - day)  # even over a wider span
        assert (usage.messages, usage.recipients, usage.first_time) == (1, 1, 1)
        # Another account's memory is its own.
        assert await store.known_recipients(other.id, ["old@x.org"]) == {"old@x.org"}
        await store.set_sending_limits(account.id, SendingLimits(first_time=1))
        await store.remove_account(account.id)
        assert await store.known_recipients(account.id, ["new@x.org"]) == set()
        assert await store.sending_usage(account.id, T0 - day) == SendingUsage(
            0, 0, 0, SendingLimits()
        )

    # -- DMARC aggregate reports ----------------------------------------------------------------
    async def test_dmarc_report_run_is_claimed_once(
        self, store: Store, store_factory: StoreFactory
    ) -> None:
        end = datetime(2026, 3, 2, tzinfo=UTC)
        assert await store.claim_dmarc_report_run(end, "*", "node-a")
        assert not await store.claim_dmarc_report_run(end, "*", "node-a")
        assert await store.claim_dmarc_report_run(end, "example.net", "node-a")
        assert await store.claim_dmarc_report_run(end + timedelta(days=1), "*", "node-a")
        other = store_factory()  # another process or node on the same database
        await other.open()
        try:
            assert not await other.claim_dmarc_report_run(end, "*", "node-b")
        finally:
            await other.close()

    async def test_dmarc_observations(self, store: Store) -> None:
        start = datetime(2026, 3, 1, tzinfo=UTC)
        first = DmarcObservation(
            received=start,
            policy_domain="example.net",
            header_from="mail.example.net",
            envelope_from="",
            source_ip="2001:db8::25",
            disposition="quarantine",
            dkim_aligned=False,
            spf_aligned=False,
            spf_domain="mail.example.net",
            spf_result="softfail",
            dkim=(("example.net", "s1", "fail"), ("other.example", "k", "pass")),
            policy_record="v=DMARC1; p=quarantine; rua=mailto:d@example.net",
        )
        second = dataclasses.replace(
            first,
            received=start + timedelta(hours=1),
            dkim=(),
            disposition="none",
            override="policy_test_mode",
            override_comment="t=y",
            discovery="treewalk",
        )
        await store.record_dmarc_observation(second)
        await store.record_dmarc_observation(first)
        assert await store.dmarc_observations(start) == []
        assert await store.dmarc_observations(start + timedelta(days=1)) == [first, second]
        later = start + timedelta(days=1)
        kept = await store.dmarc_observations(later)
        assert len({o.id for o in kept} - {0}) == 2
        # Stamped before the read's end but stored after the read (a message judged before a
        # report's boundary, committed after): not among the rows the report counted, so kept.
        late = dataclasses.replace(first, received=start + timedelta(minutes=30))
        await store.record_dmarc_observation(late)
        assert await store.delete_dmarc_observations([]) == 0
        assert await store.delete_dmarc_observations([o.id for o in kept]) == 2
        assert await store.dmarc_observations(later) == [late]
        [late] = await store.dmarc_observations(later)
        # A report deleting the largest row (a CLI run beside the server's job) never hands
        # its id to a new row: another report still holding the id would delete that row.
        assert await store.delete_dmarc_observations([late.id]) == 1
        await store.record_dmarc_observation(first)
        [new] = await store.dmarc_observations(later)
        assert new.id > late.id

    # -- reports received about our domains ----------------------------------------------------
    async def test_received_reports_kept_once_and_listed(self, store: Store) -> None:
        start = datetime(2026, 3, 1, tzinfo=UTC)
        dmarc = ReceivedReport(
            kind="dmarc",
            org_name="google.com",
            report_id="1234567890",
            domain="example.org",
            begin=start,
            end=start + timedelta(days=1),
            received=start + timedelta(days=1, hours=2),
            contact="noreply-dmarc-support@google.com",
            policy="p=quarantine",
            rows=(
                ReceivedReportRow(
                    source="192.0.2.25",
                    messages=7,
                    failed=0,
                    disposition="none",
                    dkim="pass",
                    spf="pass",
                    header_from="example.org",
                    detail="dkim example.org/s1 pass; spf example.org pass",
                ),
                ReceivedReportRow(
                    source="2001:db8::bad", messages=2, failed=2, disposition="quarantine"
                ),
            ),
        )
        tls = dataclasses.replace(
            dmarc,
            kind="tlsrpt",
            org_name="Company-X",
            report_id="5065427c-23d3-47ca-b6e0-946ea0e8c4be",
            domain="example.com",
            begin=start + timedelta(days=1),
            end=start + timedelta(days=2),
            policy="",
            rows=(ReceivedReportRow(source="sts example.com", messages=5326, failed=303),),
        )
        assert await store.add_received_report(dmarc)
        assert await store.add_received_report(tls)
        # The same report again (another copy, a resend): kept once, the first one stays.
        assert not await store.add_received_report(dataclasses.replace(dmarc, rows=()))
        assert await store.received_reports(start) == [tls, dmarc]
        assert await store.received_reports(start, domain="example.org") == [dmarc]
        assert await store.received_reports(start, kind="tlsrpt") == [tls]
        assert await store.received_reports(start, limit=1) == [tls]
        assert await store.received_reports(start + timedelta(days=1, hours=1)) == [tls]
        assert dmarc.messages == 9 and dmarc.failed == 2
        # The same id from another organization is another report.
        other = dataclasses.replace(dmarc, org_name="Yahoo")
        assert await store.add_received_report(other)
        assert await store.delete_received_reports(start + timedelta(days=1, hours=1)) == 2
        assert await store.received_reports(start) == [tls]
        # A domain's reports include its subdomains' — not another domain ending the same.
        sub = dataclasses.replace(tls, report_id="sub", domain="mail.example.com")
        assert await store.add_received_report(sub)
        assert await store.add_received_report(
            dataclasses.replace(tls, report_id="other", domain="ample.com")
        )
        assert await store.received_reports(start, domain="example.com") == [sub, tls]
        assert len(await store.received_reports(start, domain="ample.com")) == 1

    # -- greylisting ----------------------------------------------------------------------------
    async def test_greylist_defers_until_a_timely_retry_then_remembers(self, store: Store) -> None:
        rules = GreylistRules(
            delay=timedelta(minutes=5), retry_window=timedelta(hours=4), lifetime=timedelta(days=1)
        )
        start = datetime(2026, 3, 1, tzinfo=UTC)
        grey = GreyTriplet("192.0.2.0/24", "bob@example.net", "alice@example.org")

        async def at(minutes: float, triplet: GreyTriplet = grey) -> GreyOutcome:
            return await store.check_greylist(triplet, start + timedelta(minutes=minutes), rules)

        assert await at(0) is GreyOutcome.NEW
        assert await at(4) is GreyOutcome.EARLY  # the delay runs from the first attempt
        assert await at(5) is GreyOutcome.RETRIED
        assert await at(6) is GreyOutcome.KNOWN
        # A use renews the lifetime once half of it is gone (at most daily): a day after that
        # use, not after the pass (which alone would have been forgotten at minute 5 + 24 h).
        assert await at(12 * 60 + 10) is GreyOutcome.KNOWN
        assert await at(25 * 60) is GreyOutcome.KNOWN
        assert await at(25 * 60 + 3 * 24 * 60) is GreyOutcome.NEW  # forgotten: starts over
        # Another recipient, sender or network is another triplet.
        other = GreyTriplet("192.0.2.0/24", "bob@example.net", "carol@example.org")
        assert await at(0, other) is GreyOutcome.NEW
        # Retried after the window: too late, it starts over.
        assert await at(5 * 60, other) is GreyOutcome.NEW
        assert await at(5 * 60 + 5, other) is GreyOutcome.RETRIED
        # The memory is durable.
        assert await at(5 * 60 + 6, other) is GreyOutcome.KNOWN

    async def test_greylist_auto_allows_a_client_network_and_prunes(self, store: Store) -> None:
        rules = GreylistRules(
            delay=timedelta(minutes=5),
            retry_window=timedelta(hours=4),
            lifetime=timedelta(days=1),
            auto_allow_clients=2,
        )
        start = datetime(2026, 3, 1, tzinfo=UTC)
        later = start + timedelta(minutes=10)
        for n in range(2):
            passing = GreyTriplet("198.51.100.0/24", f"s{n}@example.net", "alice@example.org")
            assert await store.check_greylist(passing, start, rules) is GreyOutcome.NEW
            assert await store.check_greylist(passing, later, rules) is GreyOutcome.RETRIED
        fresh = GreyTriplet("198.51.100.0/24", "new@example.com", "bob@example.org")
        assert await store.check_greylist(fresh, later, rules) is GreyOutcome.CLIENT
        assert await store.check_greylist(fresh, later, rules) is GreyOutcome.KNOWN
        elsewhere = GreyTriplet("203.0.113.0/24", "new@example.com", "bob@example.org")
        assert await store.check_greylist(elsewhere, later, rules) is GreyOutcome.NEW
        # Unpassed triplets expire with their retry window, passed ones with their lifetime.
        assert await store.prune_greylist(later + timedelta(hours=5)) == 1
        assert await store.prune_greylist(later + timedelta(days=2)) == 3
        assert await store.check_greylist(fresh, later + timedelta(days=2), rules) is (
            GreyOutcome.NEW
        )

    async def test_greylist_attempts_at_once_are_decided_one_after_the_other(
        self, store: Store
    ) -> None:
        rules = GreylistRules(
            delay=timedelta(minutes=5), retry_window=timedelta(hours=4), lifetime=timedelta(days=1)
        )
        now = datetime(2026, 3, 1, tzinfo=UTC)
        grey = GreyTriplet("2001:db8::/64", "", "alice@example.org")
        outcomes = await asyncio.gather(*(store.check_greylist(grey, now, rules) for _ in range(8)))
        assert sorted(o.value for o in outcomes) == ["early"] * 7 + ["new"]

    async def test_received_reports_go_with_their_domain(
        self, store: Store, account: Account
    ) -> None:
        """A removed domain's reports go, its subdomains' too — unless another hosted domain
        (a hosted subdomain, or a hosted parent) still covers them; a refused removal keeps
        everything."""
        start = datetime(2026, 3, 1, tzinfo=UTC)
        for name in ("example.org", "lists.example.org", "example.net", "mail.example.net"):
            await store.add_domain(name)
        report = ReceivedReport(
            kind="dmarc",
            org_name="google.com",
            report_id="",
            domain="",
            begin=start,
            end=start + timedelta(days=1),
            received=start + timedelta(days=1, hours=2),
            contact="",
            policy="p=none",
            rows=(ReceivedReportRow(source="192.0.2.25", messages=1, failed=0),),
        )
        about = (
            "example.org",
            "mail.example.org",
            "lists.example.org",
            "x.lists.example.org",
            "notexample.org",
            "mail.example.net",
            DOMAIN,
        )
        for domain in about:
            assert await store.add_received_report(replace(report, report_id=domain, domain=domain))

        async def kept() -> set[str]:
            return {r.domain for r in await store.received_reports(start)}

        with pytest.raises(UserError):
            await store.remove_domain(DOMAIN)  # the account uses it
        assert await kept() == set(about)
        await store.remove_domain("example.org")
        assert await kept() == set(about) - {"example.org", "mail.example.org"}
        await store.remove_domain("mail.example.net")  # example.net still covers it
        assert "mail.example.net" in await kept()
        await store.remove_domain("example.net")
        assert await kept() == {
            "lists.example.org",
            "x.lists.example.org",
            "notexample.org",
            DOMAIN,
        }

    # -- TLS-RPT reports ------------------------------------------------------------------------
    async def test_tls_results(self, store: Store) -> None:
        start = datetime(2026, 3, 1, tzinfo=UTC)
        first = TlsSessionResult(
            recorded=start,
            policy_domain="example.net",
            policy_type="sts",
            policy_strings=(
                "version: STSv1",
                "mode: enforce",
                "mx: *.example.net",
                "max_age: 86400",
            ),
            mx_patterns=("*.example.net",),
            result_type="certificate-host-mismatch",
            receiving_mx="mx1.example.net",
            receiving_ip="2001:db8::25",
            sending_ip="2001:db8::1",
            failure_reason="certificate verify failed: Hostname mismatch",
        )
        second = dataclasses.replace(
            first,
            recorded=start + timedelta(hours=1),
            policy_type="tlsa",
            policy_strings=("3 1 1 " + "ab" * 32,),
            mx_patterns=(),
            result_type="",
            failure_reason="",
        )
        await store.record_tls_result(second)
        await store.record_tls_result(first)
        assert await store.tls_results(start) == []
        later = start + timedelta(days=1)
        kept = await store.tls_results(later)
        assert kept == [first, second]
        assert len({r.id for r in kept} - {0}) == 2
        # Stamped before the read's end, stored after the read: not counted, so kept.
        late = dataclasses.replace(first, recorded=start + timedelta(minutes=30))
        await store.record_tls_result(late)
        assert await store.delete_tls_results([]) == 0
        assert await store.delete_tls_results([r.id for r in kept]) == 2
        assert await store.tls_results(later) == [late]
        [late] = await store.tls_results(later)
        # The largest row's id is never reused, as for DMARC evaluations.
        assert await store.delete_tls_results([late.id]) == 1
        await store.record_tls_result(first)
        [new] = await store.tls_results(later)
        assert new.id > late.id

    async def test_tls_report_posts_are_claimed_once_and_kept_until_deleted(
        self, store: Store
    ) -> None:
        start = datetime(2026, 3, 2, tzinfo=UTC)
        post = TlsReportPost(
            url="https://reports.example.net/v1/tlsrpt",
            policy_domain="example.net",
            body=bytes(range(256)),  # gzip: any octet
            first_try=start,
            next_try=start + timedelta(minutes=5),
            attempts=1,
        )
        first = await store.add_tls_report_post(post)
        second = await store.add_tls_report_post(
            dataclasses.replace(post, policy_domain="example.com", next_try=start)
        )
        assert first != second
        assert await store.claim_tls_report_post(start - timedelta(seconds=1), start) is None
        lease = start + timedelta(minutes=2)
        # Due first, leased: its next_try is the lease, the rest as added.
        assert await store.claim_tls_report_post(start, lease) == dataclasses.replace(
            post, id=second, policy_domain="example.com", next_try=lease
        )
        assert await store.claim_tls_report_post(start + timedelta(minutes=1), lease) is None
        # Both due: claimed concurrently, each goes to one caller only.
        now = start + timedelta(minutes=10)
        claims = await asyncio.gather(
            *(store.claim_tls_report_post(now, now + timedelta(minutes=2)) for _ in range(3))
        )
        assert sorted(c.id for c in claims if c is not None) == sorted([first, second])
        assert claims.count(None) == 1
        await store.delete_tls_report_post(second)
        retry = now + timedelta(minutes=20)
        await store.reschedule_tls_report_post(first, retry, 2)
        assert await store.claim_tls_report_post(retry - timedelta(seconds=1), retry) is None
        claimed = await store.claim_tls_report_post(retry, retry + timedelta(minutes=2))
        assert claimed is not None and (claimed.id, claimed.attempts) == (first, 2)
        assert claimed.body == post.body and claimed.first_try == start
        await store.delete_tls_report_post(first)
        assert await store.claim_tls_report_post(retry + timedelta(days=1), retry) is None

    # -- the MTA-STS policy cache -----------------------------------------------------------------
    async def test_sts_policies_are_kept_until_they_expire(self, store: Store) -> None:
        """RFC 8461 §5.1: a fetched policy is kept for its max_age (a restart reads it back);
        a later fetch replaces it, an earlier one (another node's, arriving late) does not."""
        start = datetime(2026, 3, 2, tzinfo=UTC)
        enforce = StsPolicyRecord(
            domain="example.com",
            policy_id="20260301",
            mode="enforce",
            mx=("mx1.example.com", "*.mx.example.com"),
            max_age=86400,
            fetched=start,
        )
        testing = StsPolicyRecord(
            domain="example.net",
            policy_id="a1",
            mode="testing",
            mx=("mx.example.net",),
            max_age=3600,
            fetched=start + timedelta(minutes=1),
        )
        await store.save_sts_policy(enforce)
        await store.save_sts_policy(testing)
        assert await store.sts_policies(start) == [testing, enforce]  # the latest fetched first
        assert await store.sts_policies(testing.expires) == [enforce]  # expired at its end
        # A refresh replaces the policy; a fetch older than the one kept does not.
        refreshed = dataclasses.replace(
            enforce, policy_id="20260302", mode="none", mx=(), fetched=start + timedelta(hours=12)
        )
        await store.save_sts_policy(refreshed)
        await store.save_sts_policy(
            dataclasses.replace(enforce, fetched=start + timedelta(hours=1))
        )
        assert await store.sts_policies(enforce.expires) == [refreshed]
        assert await store.prune_sts_policies(enforce.expires) == 1  # example.net's
        assert await store.prune_sts_policies(enforce.expires) == 0
        assert await store.sts_policies(start) == [refreshed]
        assert await store.prune_sts_policies(refreshed.expires) == 1
        assert await store.sts_policies(start) == []

    async def test_sts_fetch_failures_are_kept_until_a_later_fetch(self, store: Store) -> None:
        """RFC 8461 §3.3: a failed fetch is kept (a restart or another node waits out its
        retry); a later failure replaces it, an earlier one does not; a policy fetched after it
        forgets it, one fetched before it does not. One read gives a domain's policy and
        failure (the read-through of pillarbox.net.mtasts)."""
        start = datetime(2026, 3, 2, tzinfo=UTC)
        failed = StsFetchFailure(
            domain="example.com",
            policy_id="20260301",
            failed=start,
            result_type="sts-policy-fetch-error",
            reason="HTTP status 404",
        )
        other = dataclasses.replace(failed, domain="example.net", failed=start - timedelta(hours=2))
        await store.save_sts_fetch_failure(failed)
        await store.save_sts_fetch_failure(other)
        assert await store.sts_fetch_failures(other.failed) == [failed, other]
        assert await store.sts_fetch_failures(start) == [failed]  # since: inclusive
        later = dataclasses.replace(
            failed, failed=start + timedelta(minutes=5), result_type="sts-policy-invalid"
        )
        await store.save_sts_fetch_failure(later)
        await store.save_sts_fetch_failure(failed)  # another node's, arriving late
        assert await store.sts_cache_entry("example.com", start) == StsCacheEntry(None, later)
        policy = StsPolicyRecord(
            domain="example.com",
            policy_id="20260301",
            mode="enforce",
            mx=("mx.example.com",),
            max_age=86400,
            fetched=start + timedelta(minutes=1),
        )
        await store.save_sts_policy(policy)  # fetched before the later failure: it stays
        assert await store.sts_cache_entry("example.com", start) == StsCacheEntry(policy, later)
        assert await store.sts_cache_entry("example.com", policy.expires) == StsCacheEntry(
            None, later
        )
        refetched = dataclasses.replace(policy, fetched=start + timedelta(minutes=10))
        await store.save_sts_policy(refetched)
        assert await store.sts_cache_entry("example.com", start) == StsCacheEntry(refetched, None)
        assert await store.sts_cache_entry("example.org", start) == StsCacheEntry(None, None)
        assert await store.prune_sts_fetch_failures(start) == 1  # example.net's, before it
        assert await store.sts_fetch_failures(other.failed) == []


# -- Hypothesis state machine -----------------------------------------------------------------
_FLAGS = st.frozensets(st.sampled_from(["\\Seen", "\\Deleted", "\\Flagged", "$a"]), max_size=3)


def store_state_machine(fresh_store: StoreFactory) -> type[RuleBasedStateMachine]:
    """A state machine over a fresh store per example, checking (RFC 9051 §2.3.1.1, RFC 7162):

    UIDs strictly increase and are never reused; every change raises ``highestmodseq`` and
    stamps the changed messages with a MODSEQ above any before; expunged UIDs never come back;
    flags match a model; STATUS counters and quota usage match the messages.
    """

    class StoreMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.store = fresh_store()
            _run(self.loop, self.store.open())
            _run(self.loop, self.store.add_domain(DOMAIN))
            self.account = _run(self.loop, self.store.add_account(f"m@{DOMAIN}", "h"))
            self.boxes = [
                _run(self.loop, self.store.get_mailbox(self.account.id, INBOX)).id,
                _run(self.loop, self.store.create_mailbox(self.account.id, "Other")).id,
            ]
            #: model: mailbox -> uid -> flags; every UID ever given; every UID expunged.
            self.flags: dict[int, dict[int, frozenset[str]]] = {box: {} for box in self.boxes}
            self.issued: dict[int, set[int]] = {box: set() for box in self.boxes}
            self.expunged: dict[int, set[int]] = {box: set() for box in self.boxes}
            self.highest = {box: self._modseq(box) for box in self.boxes}
            self.serial = 0

        def teardown(self) -> None:
            _run(self.loop, self.store.close())
            self.loop.close()

        def _modseq(self, box: int) -> int:
            status = _run(self.loop, self.store.mailbox_status(box))
            return int(status.mailbox.highestmodseq)

        def _changed(self, box: int, changed: bool) -> None:
            now = self._modseq(box)
            if changed:
                assert now > self.highest[box], "a change must raise HIGHESTMODSEQ"
            else:
                assert now == self.highest[box], "no change, no new MODSEQ"
            self.highest[box] = now

        def _new_uids(self, box: int, uids: list[int], modseq_floor: int) -> None:
            assert all(uid > max(self.issued[box], default=0) for uid in uids)
            assert uids == sorted(set(uids))
            self.issued[box].update(uids)
            for record in _run(self.loop, self.store.list_messages(box, uid_min=min(uids))):
                assert record.modseq > modseq_floor

        @rule(box=st.integers(0, 1), flags=_FLAGS)
        def deliver(self, box: int, flags: frozenset[str]) -> None:
            mailbox_id = self.boxes[box]
            self.serial += 1
            name = INBOX if box == 0 else "Other"
            [result] = _run(
                self.loop,
                self.store.deliver(
                    *make_message(self.serial), [DeliveryTarget(self.account.id, name, flags)]
                ),
            )
            assert result.record is not None
            floor = self.highest[mailbox_id]
            self._new_uids(mailbox_id, [result.record.uid], floor)
            self.flags[mailbox_id][result.record.uid] = flags
            self._changed(mailbox_id, True)

        @precondition(lambda self: any(self.flags.values()))
        @rule(data=st.data(), op=st.sampled_from(list(FlagOp)), flags=_FLAGS)
        def store_flags(self, data: st.DataObject, op: FlagOp, flags: frozenset[str]) -> None:
            box = data.draw(st.sampled_from([b for b in self.boxes if self.flags[b]]))
            uids = data.draw(st.lists(st.sampled_from(sorted(self.flags[box])), min_size=1))
            update = _run(self.loop, self.store.store_flags(box, uids, op, flags))
            for record in update.changed:
                assert record.modseq > self.highest[box]
                old = self.flags[box][record.uid]
                new = {FlagOp.ADD: old | flags, FlagOp.REMOVE: old - flags}.get(op, flags)
                assert record.flags == new
                self.flags[box][record.uid] = new
            for uid in update.unchanged:
                assert uid in self.flags[box]
            self._changed(box, bool(update.changed))

        @rule(box=st.integers(0, 1), only_some=st.booleans())
        def expunge(self, box: int, only_some: bool) -> None:
            mailbox_id = self.boxes[box]
            subset = sorted(self.flags[mailbox_id])[::2] if only_some else None
            removed = _run(self.loop, self.store.expunge(mailbox_id, subset))
            expected = sorted(
                uid
                for uid, flags in self.flags[mailbox_id].items()
                if "\\Deleted" in flags and (subset is None or uid in subset)
            )
            assert removed == expected
            for uid in removed:
                del self.flags[mailbox_id][uid]
            self.expunged[mailbox_id].update(removed)
            self._changed(mailbox_id, bool(removed))
            if removed:
                since = self.highest[mailbox_id] - 1
                assert _run(self.loop, self.store.expunged_since(mailbox_id, since)) == removed

        @precondition(lambda self: any(self.flags.values()))
        @rule(data=st.data(), move=st.booleans())
        def transfer(self, data: st.DataObject, move: bool) -> None:
            src = data.draw(st.sampled_from([b for b in self.boxes if self.flags[b]]))
            dest = data.draw(st.sampled_from(self.boxes))
            uids = data.draw(st.lists(st.sampled_from(sorted(self.flags[src])), min_size=1))
            call = self.store.move_messages if move else self.store.copy_messages
            floor = self.highest[dest]
            pairs = _run(self.loop, call(src, uids, dest)).pairs
            assert [old for old, _ in pairs] == sorted(set(uids))
            moved_flags = {old: self.flags[src][old] for old, _ in pairs}
            if move:
                for old, _ in pairs:
                    del self.flags[src][old]
                self.expunged[src].update(old for old, _ in pairs)
            self._new_uids(dest, [new for _, new in pairs], floor)
            for old, new in pairs:
                self.flags[dest][new] = moved_flags[old]
            self._changed(dest, True)
            if move and src != dest:
                self._changed(src, True)

        @invariant()
        def matches_model(self) -> None:
            total_bytes = total_messages = 0
            for box in self.boxes:
                records = _run(self.loop, self.store.list_messages(box))
                uids = [r.uid for r in records]
                assert uids == sorted(self.flags[box]), "UIDs ascend and match the model"
                assert not set(uids) & self.expunged[box], "an expunged UID came back"
                assert {r.uid: r.flags for r in records} == self.flags[box]
                status = _run(self.loop, self.store.mailbox_status(box))
                assert status.messages == len(records)
                assert status.unseen == sum("\\Seen" not in r.flags for r in records)
                assert status.deleted == sum("\\Deleted" in r.flags for r in records)
                assert status.size == sum(r.size for r in records)
                assert all(r.modseq <= status.mailbox.highestmodseq for r in records)
                assert all(uid < status.mailbox.uidnext for uid in self.issued[box])
                total_bytes += status.size
                total_messages += status.messages
            usage = _run(self.loop, self.store.quota_usage(self.account.id))
            assert (usage.bytes_used, usage.messages) == (total_bytes, total_messages)

    return StoreMachine
