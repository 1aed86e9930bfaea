"""Forwarding, SRS, ARC sealing and vacation replies on a live server.

Mail goes in with smtplib (to the MX, or to submission for a local sender); what leaves goes
to a recording SMTP peer we did not write (aiosmtpd, the server's smart host) and what stays
is read from the store. The server's resolver asks a loopback DNS server holding the key of an
upstream ARC sealer; the tests check every ARC chain that leaves with our own verifier
(:func:`pillarbox.policy.arc.verify`) against DNS serving the forwarding domain's keys.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import secrets
import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pillarbox import config as cfg
from pillarbox.policy import arc
from pillarbox.policy.arc import ArcOutcome, ArcResult
from pillarbox.queue.dkim import DkimAlgorithm, generate_key, public_record
from pillarbox.queue.signing import signing_keys
from pillarbox.store.types import INBOX, SenderListEntry, SenderListKind
from pillarbox.testing.capture import Received, Recorder, capture_peer
from pillarbox.testing.dnszone import ZoneRecord, serve_records
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, free_port, loopback_config
from pillarbox.testing.polling import wait_for

RECEIVER = "127.0.0.4"
WAIT = 20.0
UPSTREAM_KEY = generate_key(
    DkimAlgorithm.RSA_SHA256, now=datetime(2025, 1, 1, tzinfo=UTC), selector="u1"
)
UPSTREAM_RECORDS = [
    ZoneRecord("u1._domainkey.upstream.test", "TXT", public_record(UPSTREAM_KEY)),
]
SRS0 = re.compile(r"SRS0=[A-Z2-7]{4}=[A-Z2-7]{2}=outside\.test=sender@example\.org")


@pytest.fixture
def dns_records() -> list[ZoneRecord]:
    """The forwarder's DNS (served by conftest's ``dns_port``): the upstream sealer's key."""
    return UPSTREAM_RECORDS


@pytest.fixture
def peer_port() -> int:
    return free_port(RECEIVER)


@pytest.fixture
def peer(peer_port: int) -> Iterator[Recorder]:
    with capture_peer(RECEIVER, peer_port) as recorder:
        yield recorder


@pytest.fixture
def forwarder(
    tmp_path: Path, dns_port: int, peer: Recorder, peer_port: int
) -> Iterator[LiveServer]:
    config = loopback_config(
        tmp_path / "data",
        only=("smtp", "submission"),
        dns=cfg.DnsSection(nameserver=f"127.0.0.1:{dns_port}", timeout=2.0),
        policy=cfg.PolicySection(trusted_networks=()),  # the test client is on loopback
        queue=cfg.QueueSection(
            smarthost=f"{RECEIVER}:{peer_port}",
            smarthost_verify_tls=False,
            retry_schedule=(1.0,),
            poll_interval=1.0,
        ),
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account("alice@example.org", TEST_PASSWORD)
        live.add_account("bob@example.org", TEST_PASSWORD)
        yield live


# -- helpers ---------------------------------------------------------------------------------


def message(
    sender: str = "sender@outside.test",
    to: str = "alice@example.org",
    subject: str = "hello",
    extra: str = "",
) -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Sun, 1 Jun 2025 10:00:00 +0000\r\n"
        f"Message-ID: <{secrets.token_hex(6)}@outside.test>\r\n{extra}\r\n"
        "Hello,\r\nthis is a test.\r\n"
    ).encode()


def send(live: LiveServer, mail_from: str, rcpts: list[str], raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", live.port("smtp"), local_hostname="client.test") as client:
        client.sendmail(mail_from, rcpts, raw)


def settle(live: LiveServer) -> None:
    """Wait until the queue is empty: whatever was queued has reached the peer."""
    wait_for(lambda: not live.call(live.store.list_queue()), "the queue to empty")


def stored(live: LiveServer, address: str, mailbox: str = INBOX) -> list[bytes]:
    return live.mailbox_messages(address, mailbox)


def configure(live: LiveServer, address: str, **changes: Any) -> None:
    async def go() -> None:
        account = await live.store.get_account(address)
        assert account is not None
        current = await live.store.get_settings(account.id)
        await live.store.set_settings(account.id, dataclasses.replace(current, **changes))

    live.call(go())


def block(live: LiveServer, address: str, pattern: str) -> None:
    async def go() -> None:
        account = await live.store.get_account(address)
        assert account is not None
        await live.store.set_sender_entry(
            account.id, SenderListEntry(pattern, SenderListKind.BLOCK)
        )

    live.call(go())


def header(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def verify_arc(live: LiveServer, raw: bytes) -> ArcOutcome:
    """Our verifier on ``raw``, with DNS serving example.org's keys and the upstream's."""
    keys = signing_keys(live.call(live.store.list_dkim_keys("example.org")))
    records = [
        *UPSTREAM_RECORDS,
        *(
            ZoneRecord(f"{k.selector}._domainkey.example.org", "TXT", public_record(k))
            for k in keys
        ),
    ]

    async def go() -> ArcOutcome:
        async with serve_records(records) as resolver:
            return await arc.verify(resolver, raw)

    return asyncio.run(go())


def forward_alice(live: LiveServer, *, keep_copy: bool) -> None:
    configure(
        live, "alice@example.org", forward_to=("carol@remote.test",), forward_keep_copy=keep_copy
    )


# -- forwarding ------------------------------------------------------------------------------


def test_forward_keeps_a_copy_rewrites_the_sender_and_seals(
    forwarder: LiveServer, peer: Recorder
) -> None:
    forward_alice(forwarder, keep_copy=True)
    send(forwarder, "sender@outside.test", ["alice@example.org"], message(subject="keep"))
    [got] = wait_for(lambda: peer.messages, "the forwarded copy")
    assert got.rcpt_tos == ["carol@remote.test"]
    assert SRS0.fullmatch(got.mail_from), got.mail_from  # SPF sees example.org, not outside.test
    assert b"\r\nDelivered-To: alice@example.org\r\n" in header(got.content)
    assert b"ARC-Seal: i=1;" in header(got.content)
    outcome = verify_arc(forwarder, got.content)
    assert (outcome.result, outcome.instances, outcome.sealer) == (ArcResult.PASS, 1, "example.org")
    [kept] = stored(forwarder, "alice@example.org")
    assert b"Subject: keep" in kept


def test_settings_changes_apply_to_the_next_message(forwarder: LiveServer, peer: Recorder) -> None:
    """The store caches each account's settings for intake; a change must reach the very next
    message (the cache is emptied once the change is durable), switched on and off again."""
    send(forwarder, "sender@outside.test", ["alice@example.org"], message(subject="before"))
    assert len(stored(forwarder, "alice@example.org")) == 1  # settings read (and cached)
    forward_alice(forwarder, keep_copy=False)
    send(forwarder, "sender@outside.test", ["alice@example.org"], message(subject="during"))
    [got] = wait_for(lambda: peer.messages, "the forwarded copy")
    assert b"Subject: during" in got.content
    assert len(stored(forwarder, "alice@example.org")) == 1
    configure(forwarder, "alice@example.org", forward_to=())
    send(forwarder, "sender@outside.test", ["alice@example.org"], message(subject="after"))
    assert [b"Subject: after" in m for m in stored(forwarder, "alice@example.org")] == [
        False,
        True,
    ]
    settle(forwarder)
    assert len(peer.messages) == 1


def test_forward_without_a_copy(forwarder: LiveServer, peer: Recorder) -> None:
    forward_alice(forwarder, keep_copy=False)
    send(forwarder, "sender@outside.test", ["alice@example.org"], message())
    wait_for(lambda: peer.messages, "the forwarded copy")
    assert stored(forwarder, "alice@example.org") == []


def test_local_sender_is_kept_and_submitted_mail_is_signed(
    forwarder: LiveServer, peer: Recorder
) -> None:
    forward_alice(forwarder, keep_copy=False)
    with smtplib.SMTP("127.0.0.1", forwarder.port("submission")) as client:
        client.login("bob@example.org", TEST_PASSWORD)
        client.sendmail("bob@example.org", ["alice@example.org"], message("bob@example.org"))
    [got] = wait_for(lambda: peer.messages, "the forwarded copy")
    assert got.mail_from == "bob@example.org"  # our own SPF covers our domain: no SRS
    assert header(got.content).count(b"DKIM-Signature:") == 2
    assert b"ARC-Seal" not in header(got.content)


def test_srs_bounce_goes_back_to_the_original_sender(forwarder: LiveServer, peer: Recorder) -> None:
    forward_alice(forwarder, keep_copy=False)
    send(forwarder, "sender@outside.test", ["alice@example.org"], message())
    [forwarded] = wait_for(lambda: peer.messages, "the forwarded copy")
    srs_address = forwarded.mail_from
    bounce = message("MAILER-DAEMON@remote.test", srs_address, "Undelivered Mail")
    # The remote MTA may change the case of the address: the hash still matches.
    send(forwarder, "", [srs_address.lower()], bounce)
    returned = wait_for(lambda: peer.messages[1:], "the returned bounce")
    [(_, mail_from, rcpts, content)] = returned
    assert (mail_from, rcpts) == ("<>", ["sender@outside.test"])  # aiosmtpd spells null so
    assert b"Subject: Undelivered Mail" in content
    local, _, domain = srs_address.partition("@")
    forged = local[:5] + ("A" if local[5] != "A" else "B") + local[6:] + "@" + domain
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(forwarder, "", [forged], bounce)
    assert refused.value.recipients[forged][0] == 550


def test_loop_is_not_forwarded_again(forwarder: LiveServer, peer: Recorder) -> None:
    forward_alice(forwarder, keep_copy=False)
    looped = message(extra="Delivered-To: alice@example.org\r\n")
    send(forwarder, "sender@outside.test", ["alice@example.org"], looped)
    settle(forwarder)
    assert peer.messages == []
    assert len(stored(forwarder, "alice@example.org")) == 1  # kept: never lost
    forwarder.call(forwarder.store.add_alias("team@example.org", ["dave@remote.test"]))
    back = message(to="team@example.org", extra="Delivered-To: team@example.org\r\n")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(forwarder, "sender@outside.test", ["team@example.org"], back)
    assert refused.value.smtp_code == 554 and b"5.4.6" in refused.value.smtp_error


def test_spam_is_not_forwarded(forwarder: LiveServer, peer: Recorder) -> None:
    forward_alice(forwarder, keep_copy=False)
    block(forwarder, "alice@example.org", "spammer.test")
    send(forwarder, "x@spammer.test", ["alice@example.org"], message("x@spammer.test"))
    settle(forwarder)
    assert peer.messages == []
    assert len(stored(forwarder, "alice@example.org", "Junk")) == 1
    forwarder.call(forwarder.store.add_alias("team@example.org", ["dave@remote.test"]))
    gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
    spam = message(to="team@example.org").replace(b"this is a test.", gtube.encode())
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(forwarder, "sender@outside.test", ["team@example.org"], spam)
    assert refused.value.smtp_code == 550
    settle(forwarder)
    assert peer.messages == []


def test_header_facts_alone_do_not_refuse_a_forward(forwarder: LiveServer, peer: Recorder) -> None:
    """Spam is refused rather than forwarded: the header facts, which may file mail in Junk but
    never refuse it (PRECEDENCE_BULK +6.2, PRIORITY_HIGH +5.3 here), do not judge forwards."""
    forwarder.call(forwarder.store.add_alias("team@example.org", ["dave@remote.test"]))
    bulk = message(to="team@example.org", extra="Precedence: bulk\r\nX-Priority: 1\r\n")
    send(forwarder, "sender@outside.test", ["team@example.org"], bulk)
    [got] = wait_for(lambda: peer.messages, "the forwarded copy")
    assert got.rcpt_tos == ["dave@remote.test"]


def test_alias_to_remote_takes_the_same_path(forwarder: LiveServer, peer: Recorder) -> None:
    forwarder.call(
        forwarder.store.add_alias("team@example.org", ["dave@remote.test", "bob@example.org"])
    )
    send(forwarder, "sender@outside.test", ["team@example.org"], message(to="team@example.org"))
    [got] = wait_for(lambda: peer.messages, "the forwarded copy")
    assert got.rcpt_tos == ["dave@remote.test"]
    assert got.mail_from.startswith("SRS0=") and got.mail_from.endswith("@example.org")
    assert b"\r\nDelivered-To: team@example.org\r\n" in header(got.content)
    assert verify_arc(forwarder, got.content).result is ArcResult.PASS
    assert len(stored(forwarder, "bob@example.org")) == 1


def test_chained_arc_seal_validates(forwarder: LiveServer, peer: Recorder) -> None:
    """A message an upstream forwarder sealed (i=1): we verify its chain, record arc=pass, and
    our set (i=2, cv=pass) validates with the upstream's."""
    stamped = (
        b"Authentication-Results: upstream.test; spf=pass smtp.mailfrom=outside.test\r\n"
        + message(subject="chained")
    )
    upstream = arc.seal(
        stamped,
        domain="upstream.test",
        selector="u1",
        private_pem=UPSTREAM_KEY.private_pem,
        authserv_id="upstream.test",
    )
    assert b"cv=none" in upstream
    forward_alice(forwarder, keep_copy=False)
    send(forwarder, "sender@outside.test", ["alice@example.org"], upstream + stamped)
    [got] = wait_for(lambda: peer.messages, "the forwarded copy")
    top = header(got.content)
    assert re.search(rb"ARC-Seal: i=2; cv=pass", top), top
    assert b"arc=pass" in top  # our Authentication-Results, copied into the AAR
    outcome = verify_arc(forwarder, got.content)
    assert (outcome.result, outcome.instances, outcome.sealer) == (ArcResult.PASS, 2, "example.org")
    tampered = got.content.replace(b"this is a test.", b"this is changed.")
    assert verify_arc(forwarder, tampered).result is ArcResult.FAIL


# -- vacation --------------------------------------------------------------------------------


def away(live: LiveServer, **changes: Any) -> None:
    configure(
        live, "alice@example.org", vacation_enabled=True, vacation_body="I am away.", **changes
    )


def replies_to(peer: Recorder, address: str) -> list[Received]:
    return [m for m in peer.messages if m.rcpt_tos == [address]]


def test_vacation_replies_once_per_sender(forwarder: LiveServer, peer: Recorder) -> None:
    away(forwarder)
    first = message(subject="first")
    send(forwarder, "sender@outside.test", ["alice@example.org"], first)
    send(forwarder, "sender@outside.test", ["alice@example.org"], message(subject="second"))
    send(forwarder, "other@outside.test", ["alice@example.org"], message("other@outside.test"))
    settle(forwarder)
    [reply] = replies_to(peer, "sender@outside.test")
    assert len(replies_to(peer, "other@outside.test")) == 1
    top = header(reply.content)
    assert reply.mail_from == "<>"  # the null sender, RFC 3834 §3.3
    assert b"Auto-Submitted: auto-replied" in top
    assert b"Subject: Auto: first" in top
    [original_id] = re.findall(rb"Message-ID: (<[^>]+>)", first)
    assert b"In-Reply-To: " + original_id in top
    assert b"References: " + original_id in top
    assert b"From: alice@example.org" in top
    assert header(reply.content).count(b"DKIM-Signature:") == 2
    assert b"I am away." in reply.content
    assert len(stored(forwarder, "alice@example.org")) == 3


def test_vacation_reply_to_a_local_sender_is_delivered_directly(
    forwarder: LiveServer, peer: Recorder
) -> None:
    away(forwarder, vacation_subject="Out of office")
    with smtplib.SMTP("127.0.0.1", forwarder.port("submission")) as client:
        client.login("bob@example.org", TEST_PASSWORD)
        client.sendmail("bob@example.org", ["alice@example.org"], message("bob@example.org"))
    [reply] = wait_for(lambda: stored(forwarder, "bob@example.org"), "the auto-reply")
    assert reply.startswith(b"Return-Path: <>\r\n")
    assert b"Subject: Out of office" in header(reply)
    assert peer.messages == []


YESTERDAY = datetime.now(UTC) - timedelta(days=2)

#: (case, envelope sender, To, extra header fields, settings, replied?)
SUPPRESSION: list[tuple[str, str, str, str, dict[str, Any], bool]] = [
    ("plain", "sender@outside.test", "alice@example.org", "", {}, True),
    ("in Cc", "sender@outside.test", "x@outside.test", "Cc: alice@example.org\r\n", {}, True),
    (
        "auto-submitted no",
        "sender@outside.test",
        "alice@example.org",
        "Auto-Submitted: no\r\n",
        {},
        True,
    ),
    (
        "auto-generated",
        "sender@outside.test",
        "alice@example.org",
        "Auto-Submitted: auto-generated\r\n",
        {},
        False,
    ),
    (
        "auto-replied",
        "sender@outside.test",
        "alice@example.org",
        "Auto-Submitted: auto-replied\r\n",
        {},
        False,
    ),
    (
        "precedence bulk",
        "sender@outside.test",
        "alice@example.org",
        "Precedence: bulk\r\n",
        {},
        False,
    ),
    (
        "precedence list",
        "sender@outside.test",
        "alice@example.org",
        "Precedence: list\r\n",
        {},
        False,
    ),
    (
        "precedence junk",
        "sender@outside.test",
        "alice@example.org",
        "Precedence: junk\r\n",
        {},
        False,
    ),
    (
        "list-id",
        "sender@outside.test",
        "alice@example.org",
        "List-Id: <news.outside.test>\r\n",
        {},
        False,
    ),
    (
        "list-unsubscribe",
        "sender@outside.test",
        "alice@example.org",
        "List-Unsubscribe: <mailto:u@outside.test>\r\n",
        {},
        False,
    ),
    ("null sender", "", "alice@example.org", "", {}, False),
    ("mailer-daemon", "MAILER-DAEMON@outside.test", "alice@example.org", "", {}, False),
    ("owner-", "owner-news@outside.test", "alice@example.org", "", {}, False),
    ("-request", "news-request@outside.test", "alice@example.org", "", {}, False),
    ("not in To/Cc", "sender@outside.test", "someone@outside.test", "", {}, False),
    (
        "past its last day",
        "sender@outside.test",
        "alice@example.org",
        "",
        {"vacation_until": YESTERDAY},
        False,
    ),
    ("spam", "x@spammer.test", "alice@example.org", "", {}, False),
]


@pytest.mark.parametrize(
    ("mail_from", "to", "extra", "changes", "replied"),
    [case[1:] for case in SUPPRESSION],
    ids=[case[0] for case in SUPPRESSION],
)
def test_vacation_suppression(
    forwarder: LiveServer,
    peer: Recorder,
    mail_from: str,
    to: str,
    extra: str,
    changes: dict[str, Any],
    replied: bool,
) -> None:
    away(forwarder, **changes)
    block(forwarder, "alice@example.org", "spammer.test")
    author = mail_from or "someone@outside.test"
    send(forwarder, mail_from, ["alice@example.org"], message(author, to=to, extra=extra))
    settle(forwarder)
    assert (
        len(stored(forwarder, "alice@example.org", "Junk" if "spammer" in author else INBOX)) == 1
    )
    assert bool(peer.messages) is replied
    if replied:
        assert peer.messages[0].rcpt_tos == [mail_from]
