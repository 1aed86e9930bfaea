"""A message the inbound policy judged, for an account whose mailbox was full at the end of
DATA, is queued and retried — and the retry delivers it as intake would have: the same
``X-Pillarbox-Spam`` and ``Authentication-Results``, Junk for spam, the account's Sieve script
seeing those fields, spam never redirected, and a sender's own ``X-Pillarbox-Spam`` choosing
nothing. A live server (SMTP in from smtplib, the queue runner, the store read back), senders'
SPF in our loopback DNS server; on PostgreSQL too with ``PILLARBOX_TEST_STORE``."""

from __future__ import annotations

import contextlib
import smtplib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.errors import NotFound
from pillarbox.mail.parse import parse_message
from pillarbox.store.types import INBOX, Filing, SenderListEntry, SenderListKind
from pillarbox.testing.dnszone import ZoneRecord
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.polling import wait_for
from pillarbox.web.reading import spam_verdict

ALICE = "alice@example.org"
BOB = "bob@example.org"
#: A second recipient that always has room: a message none of whose mailboxes has room is
#: refused at DATA (452), not queued.
DAVE = "dave@example.org"
SPAMMER = "x@spammer.test"
FRIEND = "carol@friends.test"


@pytest.fixture
def dns_records() -> list[ZoneRecord]:
    """Both senders' SPF passes for the test client (Authentication-Results: spf=pass)."""
    return [
        ZoneRecord("spammer.test", "TXT", "v=spf1 ip4:127.0.0.1 -all"),
        ZoneRecord("friends.test", "TXT", "v=spf1 ip4:127.0.0.1 -all"),
    ]


@pytest.fixture
def server(tmp_path: Path, dns_port: int) -> Iterator[LiveServer]:
    config = loopback_config(
        tmp_path / "data",
        only=("smtp",),
        dns=cfg.DnsSection(nameserver=f"127.0.0.1:{dns_port}", timeout=2.0),
        policy=cfg.PolicySection(trusted_networks=()),  # the test client is on loopback
        queue=cfg.QueueSection(retry_schedule=(1.0,), poll_interval=1.0),
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account(ALICE, TEST_PASSWORD)
        live.add_account(BOB, TEST_PASSWORD)
        live.add_account(DAVE, TEST_PASSWORD)
        for address in (ALICE, BOB):
            # Both accounts judge spammer.test's mail spam the same way (their block lists).
            block(live, address, "spammer.test")
        yield live


# -- helpers ---------------------------------------------------------------------------------


def block(live: LiveServer, address: str, pattern: str) -> None:
    async def go() -> None:
        account = await live.store.get_account(address)
        assert account is not None
        await live.store.set_sender_entry(
            account.id, SenderListEntry(pattern, SenderListKind.BLOCK)
        )

    live.call(go())


def set_quota(live: LiveServer, address: str, quota_bytes: int | None) -> None:
    async def go() -> None:
        account = await live.store.get_account(address)
        assert account is not None
        await live.store.set_quota(account.id, quota_bytes, None)

    live.call(go())


def message(sender: str, subject: str, *, top: str = "") -> bytes:
    """A message; ``top`` is a field the sender writes above its others."""
    return (
        f"{top}From: {sender}\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        f"Date: Sun, 1 Jun 2025 10:00:00 +0000\r\nMessage-ID: <{subject.replace(' ', '.')}"
        f"@sender.test>\r\n\r\nHello,\r\nthis is a test.\r\n"
    ).encode()


def send(live: LiveServer, sender: str, recipients: Sequence[str], raw: bytes) -> None:
    """Over SMTP to the MX, without a SIZE parameter: a full mailbox is then found at the end
    of DATA (with SIZE it would be refused at RCPT), where the recipient is queued."""
    with smtplib.SMTP("127.0.0.1", live.port("smtp"), local_hostname="client.test") as client:
        client.ehlo()
        assert client.mail(sender)[0] == 250
        for rcpt in recipients:
            assert client.rcpt(rcpt)[0] == 250
        code, text = client.data(raw)
        assert code == 250, text


def queued_filings(live: LiveServer) -> list[tuple[str, Filing | None]]:
    return [(r.address, r.filing) for q in live.call(live.store.list_queue()) for r in q.recipients]


def make_room_and_retry(live: LiveServer) -> None:
    """Lift Alice's quota and have the queue try again now (as ``pillarbox queue retry``)."""
    set_quota(live, ALICE, None)
    for queued in live.call(live.store.list_queue()):
        with contextlib.suppress(NotFound):  # the runner's own retry may have delivered it
            live.call(live.store.retry_queued(queued.id, datetime.now(UTC)))
    wait_for(lambda: not live.call(live.store.list_queue()), "the queue to empty")


def messages(live: LiveServer, mailbox: str, address: str = ALICE) -> list[bytes]:
    return live.mailbox_messages(address, mailbox)


def as_alice(copy: bytes) -> bytes:
    """Bob's copy as Alice's would be: only ``Delivered-To`` differs (RFC 9228)."""
    return copy.replace(f"Delivered-To: {BOB}\r\n".encode(), f"Delivered-To: {ALICE}\r\n".encode())


def shown_verdict(copy: bytes) -> str:
    """The action the web UI shows for a stored copy (it trusts only our delivery's field)."""
    verdict = spam_verdict(copy, parse_message(copy))
    assert verdict is not None
    return verdict.action


# -- the tests -------------------------------------------------------------------------------


def test_spam_for_a_full_mailbox_is_retried_into_junk_with_its_fields(
    server: LiveServer,
) -> None:
    set_quota(server, ALICE, 1)
    send(server, SPAMMER, [ALICE, BOB], message(SPAMMER, "cheap offer"))
    [(address, filing)] = queued_filings(server)
    assert address == ALICE and filing is not None
    assert (filing.mailbox, filing.spam) == ("Junk", True)
    assert messages(server, "Junk") == [] and messages(server, INBOX) == []

    make_room_and_retry(server)
    [direct] = messages(server, "Junk", BOB)
    [retried] = messages(server, "Junk")
    assert messages(server, INBOX) == []
    # Byte for byte what direct delivery stored for Bob, whose verdict was the same.
    assert retried == as_alice(direct)
    assert b"\r\nX-Pillarbox-Spam: score=" in retried and b"BLOCK_LIST:spammer.test" in retried
    assert b"Authentication-Results: mx.test;\r\n\tspf=pass smtp.mailfrom=spammer.test" in retried
    assert shown_verdict(retried) == "junk"


def test_ham_for_a_full_mailbox_is_retried_into_inbox_with_its_fields(
    server: LiveServer,
) -> None:
    set_quota(server, ALICE, 1)
    send(server, FRIEND, [ALICE, BOB], message(FRIEND, "meeting notes"))
    [(_, filing)] = queued_filings(server)
    assert filing is not None and (filing.mailbox, filing.spam) == (INBOX, False)

    make_room_and_retry(server)
    [direct] = messages(server, INBOX, BOB)
    [retried] = messages(server, INBOX)
    assert messages(server, "Junk") == []
    assert retried == as_alice(direct)
    assert b"action=inbox" in retried
    assert b"Authentication-Results: mx.test;\r\n\tspf=pass smtp.mailfrom=friends.test" in retried
    assert shown_verdict(retried) == "inbox"


def test_sieve_sees_the_verdict_on_the_retry_and_spam_is_not_redirected(
    server: LiveServer,
) -> None:
    server.create_mailbox(ALICE, "Suspect")
    server.activate_sieve(
        ALICE,
        'require ["fileinto", "copy"];\n'
        'if header :contains "X-Pillarbox-Spam" "action=junk" { fileinto "Suspect"; }\n'
        f'if header :contains "subject" "pass on" {{ redirect :copy "{BOB}"; }}\n',
    )
    set_quota(server, ALICE, 1)
    send(server, SPAMMER, [ALICE, DAVE], message(SPAMMER, "pass on cheap offer"))
    send(server, FRIEND, [ALICE, DAVE], message(FRIEND, "pass on the notes"))
    send(server, FRIEND, [ALICE, DAVE], message(FRIEND, "notes"))
    # Each copy had to be stored first (a redirect waits for that): all three wait.
    assert len(queued_filings(server)) == 3
    assert messages(server, INBOX, BOB) == []

    make_room_and_retry(server)
    # The script filed the spam on our field; its redirect was not done (spam never is).
    [suspect] = messages(server, "Suspect")
    assert b"Subject: pass on cheap offer" in suspect and shown_verdict(suspect) == "junk"
    assert messages(server, "Junk") == []
    # The ham was kept in INBOX, one of them redirected too, on the retry.
    inbox = messages(server, INBOX)
    assert sorted(b"Subject: pass on the notes" in m for m in inbox) == [False, True]
    assert all(b"action=inbox" in m for m in inbox)
    [redirected] = messages(server, INBOX, BOB)
    assert b"Subject: pass on the notes" in redirected
    assert messages(server, "Junk", BOB) == []


def test_a_forged_verdict_field_does_not_route_the_retry(server: LiveServer) -> None:
    """The decision comes from the store, and a sender's own X-Pillarbox-Spam is removed at
    intake (docs/sieve.md), so a script testing the verdict cannot be fooled either."""
    server.create_mailbox(ALICE, "Clean")
    server.activate_sieve(
        ALICE,
        'require "fileinto";\n'
        'if header :contains "X-Pillarbox-Spam" "action=inbox" { fileinto "Clean"; }\n',
    )
    forged_ham = "X-Pillarbox-Spam: score=-50.0; action=inbox; reasons=ALLOW_LIST(+0.0)\r\n"
    forged_spam = "X-Pillarbox-Spam: score=50.0; action=junk; reasons=GTUBE(+50.0)\r\n"
    set_quota(server, ALICE, 1)
    send(server, SPAMMER, [ALICE, DAVE], message(SPAMMER, "cheap offer", top=forged_ham))
    send(server, FRIEND, [ALICE, DAVE], message(FRIEND, "meeting notes", top=forged_spam))
    assert len(queued_filings(server)) == 2

    make_room_and_retry(server)
    [junk] = messages(server, "Junk")
    [clean] = messages(server, "Clean")
    assert messages(server, INBOX) == []
    assert b"Subject: cheap offer" in junk and b"Subject: meeting notes" in clean
    for copy in (junk, clean):
        assert copy.count(b"X-Pillarbox-Spam:") == 1
        assert b"score=-50.0" not in copy and b"score=50.0" not in copy
    assert shown_verdict(junk) == "junk" and shown_verdict(clean) == "inbox"


def test_a_copy_that_never_fits_is_reported_as_before(tmp_path: Path, dns_port: int) -> None:
    """The decision rides on the queued recipient, not in the queued message: the report of a
    copy that never fit returns the message as it arrived, with no verdict of ours in it."""
    config = loopback_config(
        tmp_path / "data",
        only=("smtp",),
        dns=cfg.DnsSection(nameserver=f"127.0.0.1:{dns_port}", timeout=2.0),
        policy=cfg.PolicySection(trusted_networks=()),
        queue=cfg.QueueSection(retry_schedule=(0.5,), lifetime=1.0, poll_interval=0.5),
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        for address in (ALICE, BOB, DAVE):
            live.add_account(address, TEST_PASSWORD)
        block(live, ALICE, DAVE)  # Alice judges Dave's mail spam
        set_quota(live, ALICE, 1)
        send(live, DAVE, [ALICE, BOB], message(DAVE, "never fits"))
        [(_, filing)] = queued_filings(live)
        assert filing is not None and filing.spam
        wait_for(lambda: not live.call(live.store.list_queue()), "the queue to give up")
        [report] = messages(live, INBOX, DAVE)
        assert b"Content-Type: multipart/report; report-type=delivery-status" in report
        assert b"Final-Recipient: rfc822; alice@example.org" in report
        assert b"Subject: never fits" in report
        assert b"X-Pillarbox-Spam" not in report and b"Authentication-Results" not in report
        assert messages(live, "Junk") == [] and messages(live, INBOX) == []
