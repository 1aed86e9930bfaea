"""PostgreSQL from the operator's side: ``pillarbox init --store postgresql://…`` on an empty
database, and ``pillarbox store migrate --to postgresql://…`` of a lived-in SQLite store, checked
through the store interface and by a real IMAP client against a server on the copy (UIDVALIDITY,
UIDs, HIGHESTMODSEQ kept; every message byte-identical).

Skipped without a PostgreSQL server (``$PILLARBOX_TEST_POSTGRES`` or 127.0.0.1:5432).
"""

from __future__ import annotations

import asyncio
import imaplib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pillarbox import config as cfg
from pillarbox.mail.parse import parse_message
from pillarbox.store.interface import Store
from pillarbox.store.open import open_store
from pillarbox.store.postgres import PostgresStore
from pillarbox.store.types import (
    INBOX,
    AccountSettings,
    AcmeAccount,
    AttemptOutcome,
    Calendar,
    CalendarObject,
    Contact,
    DeliveryTarget,
    DkimKeyRecord,
    DmarcObservation,
    DnssecKey,
    DnssecKeyState,
    Filing,
    FlagOp,
    GreylistRules,
    GreyOutcome,
    GreyTriplet,
    Identity,
    MetadataLimits,
    NewQueueRecipient,
    ReceivedReport,
    ReceivedReportRow,
    RecipientState,
    SenderListEntry,
    SenderListKind,
    SendingLimits,
    SendingUsage,
    SpamCounts,
    TlsSessionResult,
    TokenKind,
)
from pillarbox.testing.command import init_site, run_pillarbox
from pillarbox.testing.live import LiveServer, loopback_config
from pillarbox.testing.postgres import TestDatabase, needs_postgres

pytestmark = needs_postgres()

PASSWORD = "correct horse battery"
DOMAIN = "example.org"
USER = f"alice@{DOMAIN}"


def test_init_on_an_empty_postgres_database(tmp_path: Path, database: TestDatabase) -> None:
    url = database.new_store_url()
    init_site(tmp_path, USER, PASSWORD, "--store", url)
    assert cfg.load(tmp_path / "pillarbox.toml").store.url == url
    listed = run_pillarbox(tmp_path, "user", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [u["address"] for u in json.loads(listed.stdout)] == [USER]
    assert not (tmp_path / "data" / "pillarbox.sqlite3").exists()


def _message(serial: int, body: str) -> tuple[bytes, Any]:
    raw = (
        f"From: Bob <bob@example.net>\r\nTo: {USER}\r\nSubject: note {serial}\r\n"
        f"Date: Mon, 3 Mar 2025 10:{serial:02d}:00 +0000\r\n"
        f"Message-ID: <{serial}@example.net>\r\n\r\n{body}\r\n"
    ).encode()
    return raw, parse_message(raw)


#: When _populate's dated rows were written.
WHEN = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
#: A greylisting triplet _populate lets pass, and the rules it passed by.
GREY = GreyTriplet("192.0.2.0/24", "bob@example.net", USER)
GREY_RULES = GreylistRules(
    delay=timedelta(minutes=5), retry_window=timedelta(days=2), lifetime=timedelta(days=35)
)


async def _populate(store: Store) -> None:
    """A lived-in store: flags, an expunge, a nested mailbox, a queue entry half-tried, …"""
    account = await store.get_account(USER)
    assert account is not None
    inbox = await store.get_mailbox(account.id, INBOX)
    when = WHEN
    for serial in range(1, 7):
        await store.deliver(
            *_message(serial, f"body {serial} \u00e9t\u00e9 \xa0end"),
            [DeliveryTarget(account.id, flags=frozenset({"$Label"} if serial % 2 else ()))],
            internal_date=when + timedelta(hours=serial),
        )
    await store.store_flags(inbox.id, [2, 3], FlagOp.ADD, frozenset({"\\Seen", "\\Deleted"}))
    await store.expunge(inbox.id, [2])
    projects = await store.create_mailbox(account.id, "Projects/2025")
    await store.copy_messages(inbox.id, [1, 4], projects.id)
    await store.set_subscribed(account.id, "Projects/2025", True)
    metadata_limits = MetadataLimits(max_entries=10, max_total=10_000)
    await store.set_metadata(
        account.id, projects.id, {"/shared/comment": b"\x00\xffbinary"}, metadata_limits
    )
    await store.set_metadata(account.id, None, {"/private/vendor/v/t": b"tok"}, metadata_limits)
    await store.set_acl(projects.id, "anyone", "lr")  # RFC 4314
    await store.set_acl(projects.id, "anyone", "t", negative=True)  # RFC 4314 §2
    await store.add_alias(f"info@{DOMAIN}", [USER])
    await store.set_settings(
        account.id,
        AccountSettings(
            vacation_enabled=True,
            vacation_subject="away",
            forward_to=("x@y.org",),
            junk_days=14,
            trash_days=0,
            time_zone="Europe/Berlin",
            shortcuts=False,
            default_calendar="work",
        ),
    )
    assert await store.set_quota_warned(account.id, 0, 80)  # a quota warning was sent
    await store.add_token(account.id, TokenKind.APP_PASSWORD, "phone", "ab" * 32)
    await store.enable_totp(account.id, "sealed-secret", ["cd" * 32])  # RFC 6238 2FA
    await store.put_sieve_script(account.id, "rules", 'require "fileinto"; fileinto "Projects";')
    await store.put_sieve_script(account.id, "old", "keep;")
    await store.set_active_sieve_script(account.id, "rules")
    assert await store.claim_vacation_reply(account.id, "boss@far.example", when, timedelta(1))
    await store.track_sieve_duplicates(account.id, [("seen", when + timedelta(days=7))], when, 10)
    # What the next DMARC and TLS reports will count.
    await store.record_dmarc_observation(
        DmarcObservation(
            received=when,
            policy_domain=DOMAIN,
            header_from=DOMAIN,
            envelope_from="",
            source_ip="192.0.2.7",
            disposition="none",
            dkim_aligned=True,
            spf_aligned=False,
            spf_domain=DOMAIN,
            spf_result="softfail",
            dkim=((DOMAIN, "s1", "pass"),),
            policy_record="v=DMARC1; p=none",
        )
    )
    await store.record_tls_result(
        TlsSessionResult(
            recorded=when,
            policy_domain="far.example",
            policy_type="sts",
            policy_strings=("version: STSv1", "mode: enforce"),
            mx_patterns=("*.far.example",),
            result_type="certificate-expired",
            receiving_mx="mx.far.example",
            receiving_ip="192.0.2.9",
        )
    )
    await store.claim_totp_step(account.id, 55_000_000)
    acme = AcmeAccount("https://ca.example/dir", b"account key", "https://ca.example/acct/1")
    await store.add_acme_account(acme)
    active = DnssecKeyState.ACTIVE
    await store.add_dnssec_key(DnssecKey(DOMAIN, b"zone key", when, active, when))
    # A rollover under way moves as it stands: the next key stays published, not active.
    published = DnssecKeyState.PUBLISHED
    await store.add_dnssec_key(DnssecKey(DOMAIN, b"next key", when, published, when))
    assert await store.check_greylist(GREY, when, GREY_RULES) is GreyOutcome.NEW
    retried = await store.check_greylist(GREY, when + timedelta(minutes=10), GREY_RULES)
    assert retried is GreyOutcome.RETRIED
    await store.add_received_report(
        ReceivedReport(
            kind="dmarc",
            org_name="google.com",
            report_id="r1",
            domain=DOMAIN,
            begin=when - timedelta(days=1),
            end=when,
            received=when,
            contact="noreply-dmarc-support@google.com",
            policy="p=reject",
            rows=(
                ReceivedReportRow(
                    source="192.0.2.1", messages=3, failed=1, disposition="none", dkim="pass"
                ),
            ),
        )
    )
    await store.save_identity(
        account.id, Identity(address=USER, signature="-- \nme", is_default=True), limit=5
    )
    # A calendar with an object kept as sent, one deleted (its tombstone), a bounded event.
    await store.create_calendar(
        account.id, Calendar(name="work", display_name="Work", color="#336699"), now=WHEN, limit=5
    )
    for name in ("a.ics", "gone.ics"):
        await store.save_calendar_object(
            account.id,
            "work",
            CalendarObject(
                name=name,
                uid=name,
                component="VEVENT",
                data=b"BEGIN:VCALENDAR\r\n\xc3\xa9\r\nEND:VCALENDAR\r\n",
                starts=WHEN,
                ends=WHEN + timedelta(hours=1),
            ),
            now=WHEN,
            limit=10,
        )
    await store.delete_calendar_object(account.id, "work", "gone.ics", now=WHEN)
    (dropped,) = await store.save_contacts(
        account.id, [Contact(uid="dropped", display_name="Gone")], now=when, limit=10
    )
    await store.delete_contact(account.id, dropped.id, now=when)
    await store.prune_tombstones(calendars_before=None, contacts_before=when + timedelta(1))
    await store.save_contacts(
        account.id,
        [
            Contact(
                uid="urn:uuid:c1",
                display_name="Zoë Martin",
                emails=("zoe@far.example", "z@far.example"),
                phones=("+33 1 23",),
                organization="Far",
                note="met in Lyon",
                card="BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:c1\r\nBDAY:19800101\r\nEND:VCARD\r\n",
            )
        ],
        now=when,
        limit=10,
    )
    for model in (account.id, None):
        await store.train_spam_model(model, SpamCounts(2, 1), {"cheap": SpamCounts(0, 1)})
    await store.set_spam_training_mark(account.id, "c0ffee", spam=True)
    await store.record_sender_reputation(account.id, ["example.net"], SpamCounts(3, 0))
    await store.set_sender_entry(account.id, SenderListEntry("spam.example", SenderListKind.BLOCK))
    await store.add_dkim_key(DkimKeyRecord(DOMAIN, "s1", "ed25519-sha256", b"-----PEM-----", when))
    await store.set_sending_limits(account.id, SendingLimits(messages=50, first_time=0))
    for hours, recipients in ((-30, ["old@far.example"]), (0, ["a@far.example", "b@far.example"])):
        at = when + timedelta(hours=hours)
        await store.record_sending(
            account.id,
            recipients,
            at,
            window_start=at - timedelta(days=2),
            memory_start=at - timedelta(days=365),
        )
    queued = await store.enqueue(
        USER,
        _message(9, "outgoing")[0],
        [
            NewQueueRecipient("a@far.example"),
            NewQueueRecipient("b@far.example"),
            # A local copy waiting for room, with the policy's decision on it.
            NewQueueRecipient(USER, filing=Filing("Junk", True, b"X-Pillarbox-Spam: x\r\n")),
        ],
        requiretls=True,  # RFC 8689: the tag goes with the message
    )
    await store.claim_due(queued.queued_at, limit=1, lease_seconds=1, owner="old-node")
    await store.record_attempts(
        queued.id,
        [
            AttemptOutcome(queued.recipients[0].id, RecipientState.DELIVERED, "250 ok"),
            AttemptOutcome(
                queued.recipients[1].id,
                RecipientState.DEFERRED,
                "451 later",
                queued.queued_at + timedelta(hours=1),
            ),
        ],
    )


async def _snapshot(store: Store) -> dict[str, Any]:
    """Everything a client or the server can see, through the interface."""
    account = await store.get_account(USER)
    assert account is not None
    boxes = await store.list_mailboxes(account.id)
    mailboxes: dict[str, Any] = {}
    for box in boxes:
        records = await store.list_messages(box.id)
        mailboxes[box.name] = {
            "box": box,
            "status": await store.mailbox_status(box.id),
            "records": records,
            "infos": await store.message_infos(box.id, [r.uid for r in records]),
            "bytes": [await store.read_blob(r.blob_id) for r in records],
            "expunged": await store.expunged_since(box.id, 0),
            "search": await store.search_text(box.id, ["\u00c9T\u00c9"]),
            "threads": await store.thread_ids(box.id, [r.uid for r in records]),
        }
    return {
        "account": account,
        "usage": await store.quota_usage(account.id),
        "mailboxes": mailboxes,
        "subscriptions": await store.list_subscriptions(account.id),
        "metadata": await store.list_metadata(account.id),
        "acl": await store.get_acl((await store.get_mailbox(account.id, "Projects/2025")).id),
        "aliases": await store.list_aliases(),
        "domains": await store.list_domains(),
        "queue": await store.list_queue(),
        "settings": await store.get_settings(account.id),
        "identities": await store.list_identities(account.id),
        "contacts": await store.list_contacts(account.id, "zoë"),
        "calendars": await store.list_calendars(account.id),
        "calendar_changes": await store.calendar_changes(account.id, "work", 0),
        "tombstones": await store.calendar_changes(account.id, "work", 2),
        "contact_changes": await store.contact_changes(account.id, 0),
        "contact_members": await store.contact_members(account.id),
        "token": await store.find_token(TokenKind.APP_PASSWORD, "ab" * 32),
        "totp": await store.get_totp(account.id),
        "sieve": await store.list_sieve_scripts(account.id),
        "duplicates": await store.sieve_duplicates(account.id, WHEN + timedelta(hours=1)),
        "vacation_again": await store.claim_vacation_reply(
            account.id, "boss@far.example", WHEN + timedelta(hours=1), timedelta(days=1)
        ),
        "dmarc": await store.dmarc_observations(WHEN + timedelta(days=1)),
        "tls": await store.tls_results(WHEN + timedelta(days=1)),
        "reports": await store.received_reports(WHEN - timedelta(days=30)),
        "greylist": await store.check_greylist(GREY, WHEN + timedelta(days=1), GREY_RULES),
        "acme_account": await store.acme_account("https://ca.example/dir"),
        "dnssec_keys": await store.dnssec_keys(DOMAIN),
        "dkim": await store.list_dkim_keys(DOMAIN, include_retired=True),
        "spam": [await store.spam_model(m, ["cheap", "x"]) for m in (account.id, None)],
        "trained": await store.spam_training_mark(account.id, "c0ffee"),
        "reputation": await store.sender_reputation(account.id, ["example.net"]),
        "senders": await store.list_sender_entries(account.id),
        "sending": [
            await store.sending_usage(account.id, WHEN - timedelta(days=days)) for days in (1, 2)
        ],
        "sent_to": await store.known_recipients(
            account.id, ["old@far.example", "a@far.example", "c@far.example"]
        ),
    }


async def _with_store(store: Store, action: Any) -> Any:
    await store.open()
    try:
        return await action(store)
    finally:
        await store.close()


def test_migrate_sqlite_store_to_postgres(tmp_path: Path, database: TestDatabase) -> None:
    init_site(tmp_path, USER, PASSWORD)
    config = cfg.load(tmp_path / "pillarbox.toml")
    sqlite_store = lambda: open_store(config.store.url, config.data_dir)  # noqa: E731
    asyncio.run(_with_store(sqlite_store(), _populate))
    before = asyncio.run(_with_store(sqlite_store(), _snapshot))

    url = database.new_store_url()
    result = run_pillarbox(tmp_path, "store", "migrate", "--to", url)
    assert result.returncode == 0, result.stderr
    assert "verified: 7 messages byte-identical" in result.stdout
    after = asyncio.run(_with_store(PostgresStore(url), _snapshot))
    assert after == before
    assert before["mailboxes"][INBOX]["expunged"] == [2]
    assert before["mailboxes"][INBOX]["search"]  # the text index came along
    threads = before["mailboxes"][INBOX]["threads"]  # RFC 8474 THREADID: copies share them
    assert list(before["mailboxes"]["Projects/2025"]["threads"].values()) == [
        threads[1],
        threads[4],
    ]
    assert before["spam"][0][1] == {"cheap": SpamCounts(0, 1)} and before["trained"] is True
    own = SendingLimits(messages=50, first_time=0)
    assert before["sending"] == [SendingUsage(1, 2, 2, own), SendingUsage(2, 3, 3, own)]
    assert before["sent_to"] == {"old@far.example", "a@far.example"}
    assert before["totp"] is not None and before["totp"].last_step == 55_000_000
    assert [r.report_id for r in before["reports"]] == ["r1"]
    assert before["greylist"] is GreyOutcome.KNOWN  # passed, and still passed on the copy
    assert before["acme_account"] is not None  # the cluster goes on with the SQLite node's
    # The DS at the registrar still names them.
    assert [(k.key_pem, k.state) for k in before["dnssec_keys"]] == [
        (b"zone key", DnssecKeyState.ACTIVE),
        (b"next key", DnssecKeyState.PUBLISHED),
    ]
    assert [(s.name, s.active) for s in before["sieve"]] == [("old", False), ("rules", True)]
    assert before["vacation_again"] is False  # replied within the day: not again
    assert before["duplicates"] == {"seen"}
    assert len(before["dmarc"]) == 1 and len(before["tls"]) == 1
    assert [c.emails for c in before["contacts"]] == [("zoe@far.example", "z@far.example")]
    assert "BDAY:19800101" in (before["contacts"][0].card or "")  # the card as received
    # Calendars keep their ids and sync counters (clients' tokens), objects their bytes and
    # bounds, deletions their tombstones.
    assert [(c.name, c.sync_token) for c in before["calendars"]] == [("work", 4)]
    (kept,) = before["calendar_changes"].changed
    assert (kept.name, kept.ends) == ("a.ics", WHEN + timedelta(hours=1))
    assert before["tombstones"].deleted == ["gone.ics"]
    # The address book keeps its counter, its pruned history and each card's stored ETag.
    book = before["contact_changes"]
    assert (book.token, book.oldest, [c.uid for c in book.changed]) == (3, 2, ["urn:uuid:c1"])
    assert [m.etag for m in before["contact_members"]] == [book.changed[0].etag]
    # The identity ids continue after the copied ones.
    first = before["identities"][0]
    added = asyncio.run(
        _with_store(
            PostgresStore(url),
            lambda s: s.save_identity(before["account"].id, Identity(address=USER), limit=5),
        )
    )
    assert added.id > first.id
    # So do the token ids (an app password made after the move must not take a copied id).
    token = asyncio.run(
        _with_store(
            PostgresStore(url),
            lambda s: s.add_token(before["account"].id, TokenKind.API, "after", "cd" * 32),
        )
    )
    assert token.id > before["token"].id

    again = run_pillarbox(tmp_path, "store", "migrate", "--to", url)
    assert again.returncode == 1 and "not empty" in again.stderr

    # A real client on a server over the copy sees the same mailbox, byte for byte.
    inbox = before["mailboxes"][INBOX]
    config = loopback_config(tmp_path / "live", only=["imap"], store=cfg.StoreSection(url=url))
    with LiveServer(config) as server:
        client = imaplib.IMAP4("127.0.0.1", server.port("imap"))
        # 2FA came along: the account password is refused on IMAP (app passwords only).
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client.login(USER, PASSWORD)
        assert server.call(server.store.disable_totp(before["account"].id))
        client.login(USER, PASSWORD)
        status, _ = client.select("INBOX")
        assert status == "OK"
        uidvalidity = client.untagged_responses.get("UIDVALIDITY", [b"0"])[-1]
        assert int(uidvalidity) == inbox["box"].uidvalidity
        assert int(client.untagged_responses["UIDNEXT"][-1]) == inbox["box"].uidnext
        for record, raw in zip(inbox["records"], inbox["bytes"], strict=True):
            status, fetched = client.uid("FETCH", str(record.uid), "(BODY.PEEK[])")
            assert status == "OK"
            assert isinstance(fetched[0], tuple) and fetched[0][1] == raw
            assert re.search(rb"UID %d\b" % record.uid, fetched[0][0])
        client.logout()
        # New mail continues the UID sequence; nothing is reused.
        account = after["account"]
        [stored] = server.with_store(
            lambda s: s.deliver(*_message(30, "new"), [DeliveryTarget(account.id)])
        )
        assert stored.record is not None and stored.record.uid == inbox["box"].uidnext
        # ... and new threads are numbered after the copied ones.
        uid = stored.record.uid
        [thread] = server.with_store(lambda s: s.thread_ids(inbox["box"].id, [uid])).values()
        assert thread > max(threads.values())
