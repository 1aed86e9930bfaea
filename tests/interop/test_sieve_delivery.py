"""Sieve at delivery on a live server: scripts in the store, mail in over SMTP to the MX, read
back with imaplib; redirected copies and vacation replies leave through the queue to a
recording SMTP peer (aiosmtpd) found by MX in our loopback DNS server."""

from __future__ import annotations

import imaplib
import re
import secrets
import smtplib
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from imapclient import IMAPClient

from pillarbox import config as cfg
from pillarbox.mail.parse import parse_message
from pillarbox.sieve import INLINE_COMPILE_SIZE, SpamStatus, spamtest
from pillarbox.store.types import INBOX, NewQueueRecipient, SenderListEntry, SenderListKind
from pillarbox.testing.capture import Recorder, capture_peer
from pillarbox.testing.dnszone import ZoneRecord
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, free_port, loopback_config
from pillarbox.testing.polling import wait_for
from pillarbox.web.reading import spam_verdict

RECEIVER = "127.0.0.4"
ALICE = "alice@example.org"
BOB = "bob@example.org"


@pytest.fixture
def dns_records() -> list[ZoneRecord]:
    """remote.test and outside.test (the senders' domain) both receive at the peer."""
    return [
        ZoneRecord("remote.test", "MX", "10 mx.remote.test."),
        ZoneRecord("mx.remote.test", "A", RECEIVER),
        ZoneRecord("outside.test", "MX", "10 mx.remote.test."),
    ]


@pytest.fixture
def peer_port() -> int:
    return free_port(RECEIVER)


@pytest.fixture
def peer(peer_port: int) -> Iterator[Recorder]:
    with capture_peer(RECEIVER, peer_port) as recorder:
        yield recorder


@pytest.fixture
def server(tmp_path: Path, dns_port: int, peer: Recorder, peer_port: int) -> Iterator[LiveServer]:
    config = loopback_config(
        tmp_path / "data",
        only=("smtp", "imap"),
        dns=cfg.DnsSection(nameserver=f"127.0.0.1:{dns_port}", timeout=2.0),
        policy=cfg.PolicySection(trusted_networks=()),  # the test client is on loopback
        queue=cfg.QueueSection(remote_port=peer_port, retry_schedule=(1.0,), poll_interval=1.0),
        sieve=cfg.SieveSection(max_redirects=2),
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account(ALICE, TEST_PASSWORD)
        live.add_account(BOB, TEST_PASSWORD)
        yield live


# -- helpers ---------------------------------------------------------------------------------


def message(subject: str, *, sender: str = "sender@outside.test", to: str = ALICE) -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Sun, 1 Jun 2025 10:00:00 +0000\r\n"
        f"Message-ID: <{secrets.token_hex(6)}@outside.test>\r\n\r\n"
        "Hello,\r\nthis is a test.\r\n"
    ).encode()


def send(live: LiveServer, raw: bytes, *, sender: str = "sender@outside.test") -> None:
    """Over SMTP to the MX; smtplib raises unless every recipient got 250."""
    with smtplib.SMTP("127.0.0.1", live.port("smtp"), local_hostname="client.test") as client:
        client.sendmail(sender, [ALICE], raw)


def settle(live: LiveServer) -> None:
    wait_for(lambda: not live.call(live.store.list_queue()), "the queue to empty")


def imap_read(live: LiveServer, mailbox: str, address: str = ALICE) -> list[tuple[str, bytes]]:
    """(flags, subject line) of each message in ``mailbox``, read with imaplib."""
    with imaplib.IMAP4("127.0.0.1", live.port("imap")) as imap:
        imap.login(address, TEST_PASSWORD)
        typ, data = imap.select(f'"{mailbox}"', readonly=True)
        assert typ == "OK", data
        if int(data[0] or 0) == 0:
            return []
        typ, fetched = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        out = []
        for item in fetched:
            if isinstance(item, tuple):
                flags = re.search(rb"FLAGS \(([^)]*)\)", item[0])
                assert flags is not None
                out.append((flags.group(1).decode(), item[1].strip()))
        return out


# -- the actions -----------------------------------------------------------------------------


def test_fileinto_a_folder_with_flags(server: LiveServer) -> None:
    server.create_mailbox(ALICE, "Reports")
    server.activate_sieve(
        ALICE,
        'require ["fileinto", "imap4flags"];\n'
        'if header :contains "subject" "report" {\n'
        '  fileinto :flags ["\\\\Flagged", "$Report"] "Reports";\n'
        "} else {\n"
        '  addflag "\\\\Seen";\n'
        "}\n",
    )
    send(server, message("Weekly report"))
    send(server, message("Lunch?"))
    [(flags, subject)] = imap_read(server, "Reports")
    assert subject == b"Subject: Weekly report"
    assert set(flags.split()) == {"\\Flagged", "$Report"}
    [(flags, subject)] = imap_read(server, INBOX)  # the implicit keep, with its flags
    assert (flags, subject) == ("\\Seen", b"Subject: Lunch?")


def test_fileinto_a_missing_folder_keeps_in_inbox(server: LiveServer) -> None:
    server.activate_sieve(
        ALICE, 'require ["fileinto", "imap4flags"]; fileinto :flags "$Lost" "Nowhere";'
    )
    send(server, message("where to?"))
    assert imap_read(server, INBOX) == [("$Lost", b"Subject: where to?")]


def test_fileinto_a_folder_named_by_variables(server: LiveServer) -> None:
    """RFC 5229: the list's tag in the subject names the folder, modifiers shape it."""
    server.create_mailbox(ALICE, "Lists/Dev")
    server.activate_sieve(
        ALICE,
        'require ["fileinto", "variables", "imap4flags"];\n'
        'if header :matches "subject" "[*] *" {\n'
        '  set :lower :upperfirst "list" "${1}";\n'
        '  setflag "tag" "$List-${list}";\n'
        '  fileinto :flags "${tag}" "Lists/${list}";\n'
        "}\n",
    )
    send(server, message("[DEV] release on Friday"))
    assert imap_read(server, "Lists/Dev") == [("$List-Dev", b"Subject: [DEV] release on Friday")]
    assert imap_read(server, INBOX) == []


def test_fileinto_create_makes_the_folder_once(server: LiveServer) -> None:
    """RFC 5490 §3.2: the folder (and its superior) is made at the first delivery, reused by
    the second; mailboxexists sees the account's folders; an invalid name keeps the copy."""
    server.activate_sieve(
        ALICE,
        'require ["fileinto", "mailbox", "variables", "imap4flags"];\n'
        'if header :matches "subject" "[*] *" {\n'
        '  if mailboxexists "Lists/${1}" { addflag "existed"; }\n'
        '  fileinto :create "Lists/${1}";\n'
        "}\n",
    )
    send(server, message("[dev] one"))
    send(server, message("[dev] two"))
    send(server, message("[bad//name] three"))
    assert imap_read(server, "Lists/dev") == [
        ("", b"Subject: [dev] one"),
        ("existed", b"Subject: [dev] two"),
    ]
    with imaplib.IMAP4("127.0.0.1", server.port("imap")) as imap:
        imap.login(ALICE, TEST_PASSWORD)
        typ, listed = imap.list('""', "Lists*")
    assert typ == "OK"
    assert sorted(line.rsplit(b" ", 1)[-1] for line in listed if isinstance(line, bytes)) == [
        b"Lists",
        b"Lists/dev",
    ]
    assert imap_read(server, INBOX) == [("", b"Subject: [bad//name] three")]


def test_fileinto_create_stops_at_the_mailbox_bound(tmp_path: Path, dns_port: int) -> None:
    """sieve.create_max_mailboxes: a new account has six mailboxes; with a bound of seven the
    script makes one folder, then keeps in INBOX."""
    config = loopback_config(
        tmp_path / "data",
        only=("smtp", "imap"),
        dns=cfg.DnsSection(nameserver=f"127.0.0.1:{dns_port}", timeout=2.0),
        policy=cfg.PolicySection(trusted_networks=()),
        sieve=cfg.SieveSection(create_max_mailboxes=7),
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account(ALICE, TEST_PASSWORD)
        live.activate_sieve(
            ALICE,
            'require ["fileinto", "mailbox", "variables"];\n'
            'if header :matches "subject" "*" { fileinto :create "${1}"; }\n',
        )
        for subject in ("first", "second", "first"):
            send(live, message(subject))
        assert imap_read(live, "first") == [("", b"Subject: first"), ("", b"Subject: first")]
        assert imap_read(live, INBOX) == [("", b"Subject: second")]


def test_regex_files_by_the_groups_within_the_configured_limits(
    tmp_path: Path, dns_port: int
) -> None:
    """draft-ietf-sieve-regex: a rule as Roundcube writes it files by a group of the subject;
    a pattern made of variables longer than sieve.regex_max_length is a runtime error at
    delivery (kept in INBOX), where the same pattern within it files."""
    config = loopback_config(
        tmp_path / "data",
        only=("smtp", "imap"),
        dns=cfg.DnsSection(nameserver=f"127.0.0.1:{dns_port}", timeout=2.0),
        policy=cfg.PolicySection(trusted_networks=()),
        sieve=cfg.SieveSection(regex_max_length=24),
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account(ALICE, TEST_PASSWORD)
        live.create_mailbox(ALICE, "Lists/Dev")  # ${1} is cut from the value as written
        live.create_mailbox(ALICE, "Long")
        live.activate_sieve(
            ALICE,
            'require ["fileinto", "regex", "variables"];\n'
            'if header :regex "subject" "^\\\\[([a-z]+)\\\\] " { fileinto "Lists/${1}"; stop; }\n'
            'if header :regex "subject" "^(x+)$" { set "p" "^${1}$"; }\n'
            'if header :regex "subject" "${p}" { fileinto "Long"; }\n',
        )
        send(live, message("[Dev] release on Friday"))
        send(live, message("x" * 10))
        send(live, message("x" * 30))
        assert imap_read(live, "Lists/Dev") == [("", b"Subject: [Dev] release on Friday")]
        assert imap_read(live, "Long") == [("", b"Subject: " + b"x" * 10)]
        assert imap_read(live, INBOX) == [("", b"Subject: " + b"x" * 30)]


def test_currentdate_files_by_the_delivery_date(server: LiveServer) -> None:
    """RFC 5260 §5: the rule reads the time of delivery (the server's clock, handed to the
    run), and date reads the message's Date field."""
    server.activate_sieve(
        ALICE,
        'require ["fileinto", "mailbox", "date", "variables", "relational"];\n'
        'if currentdate :matches "year" "*" { set "year" "${1}"; }\n'
        'if currentdate :value "lt" "date" "2000-01-01" { fileinto "Past"; stop; }\n'
        'if date :is :originalzone "date" "year" "2025" {\n'
        '  fileinto :create "Filed ${year}/From 2025";\n'
        "}\n",
    )
    before = datetime.now().astimezone().year
    send(server, message("dated"))
    after = datetime.now().astimezone().year
    with imaplib.IMAP4("127.0.0.1", server.port("imap")) as imap:
        imap.login(ALICE, TEST_PASSWORD)
        typ, listed = imap.list('""', "Filed*/*")
    assert typ == "OK"
    [line] = [item for item in listed if isinstance(item, bytes)]
    # a delivery at New Year's midnight may see either year
    [name] = [f"Filed {y}/From 2025" for y in {before, after} if f'"Filed {y}/' in line.decode()]
    assert imap_read(server, name) == [("", b"Subject: dated")]


def test_discard_stores_nothing(server: LiveServer) -> None:
    server.activate_sieve(ALICE, 'if header :is "subject" "junk mail" { discard; }')
    send(server, message("junk mail"))  # still 250: discarded is delivered
    send(server, message("real mail"))
    assert [s for _, s in imap_read(server, INBOX)] == [b"Subject: real mail"]


def test_redirect_to_another_account(server: LiveServer) -> None:
    server.activate_sieve(ALICE, f'redirect "{BOB}";')
    send(server, message("for bob"))
    settle(server)
    assert imap_read(server, INBOX) == []
    [copy] = server.mailbox_messages(BOB, INBOX)
    assert b"Subject: for bob" in copy
    assert b"\r\nDelivered-To: alice@example.org\r\n" in copy  # the forwarding loop guard


def test_redirect_copy_to_a_remote_domain_through_the_queue(
    server: LiveServer, peer: Recorder
) -> None:
    server.activate_sieve(ALICE, 'require "copy"; redirect :copy "carol@remote.test";')
    send(server, message("for carol"))
    [got] = wait_for(lambda: peer.messages, "the redirected copy")
    assert got.rcpt_tos == ["carol@remote.test"]
    assert got.mail_from.startswith("SRS0=") and got.mail_from.endswith("@example.org")
    assert b"Subject: for carol" in got.content
    assert b"ARC-Seal: i=1;" in got.content  # sealed as any forward
    assert [s for _, s in imap_read(server, INBOX)] == [b"Subject: for carol"]  # :copy


def test_too_many_redirects_keeps_and_sends_nothing(server: LiveServer, peer: Recorder) -> None:
    """sieve.max_redirects = 2: a third is a runtime error, and the implicit keep."""
    server.activate_sieve(ALICE, "".join(f'redirect "r{n}@remote.test";' for n in range(3)))
    send(server, message("many"))
    settle(server)
    assert peer.messages == []
    assert [s for _, s in imap_read(server, INBOX)] == [b"Subject: many"]


def test_vacation_replies_once_per_sender(server: LiveServer, peer: Recorder) -> None:
    server.activate_sieve(
        ALICE,
        'require "vacation";\n'
        'vacation :days 3 :subject "Away until Monday" "I am hiking; back on Monday.";\n',
    )
    send(server, message("question"))
    [reply] = wait_for(lambda: peer.messages, "the auto-reply")
    assert reply.mail_from == "<>"  # RFC 3834 §3.3
    assert reply.rcpt_tos == ["sender@outside.test"]
    assert b"Subject: Away until Monday" in reply.content
    assert b"Auto-Submitted: auto-replied" in reply.content
    assert b"I am hiking; back on Monday." in reply.content
    send(server, message("another question"))
    settle(server)
    assert len(peer.messages) == 1  # once per sender per :days
    assert len(imap_read(server, INBOX)) == 2  # vacation leaves the implicit keep


def test_vacation_seconds_is_raised_to_the_site_minimum(server: LiveServer, peer: Recorder) -> None:
    """RFC 6131: :seconds 1 under the default sieve.vacation_min_seconds (300): one reply."""
    server.activate_sieve(ALICE, 'require "vacation-seconds"; vacation :seconds 1 "In a meeting.";')
    send(server, message("first"))
    wait_for(lambda: peer.messages, "the auto-reply")
    time.sleep(1.5)  # past the script's second, well within the site's minimum
    send(server, message("second"))
    settle(server)
    assert len(peer.messages) == 1


def test_vacation_seconds_zero_replies_every_time(
    tmp_path: Path, dns_port: int, peer: Recorder, peer_port: int
) -> None:
    """With sieve.vacation_min_seconds = 0, :seconds 0 answers every message (RFC 6131 §2)."""
    config = loopback_config(
        tmp_path / "data",
        only=("smtp", "imap"),
        dns=cfg.DnsSection(nameserver=f"127.0.0.1:{dns_port}", timeout=2.0),
        policy=cfg.PolicySection(trusted_networks=()),
        queue=cfg.QueueSection(remote_port=peer_port, retry_schedule=(1.0,), poll_interval=1.0),
        sieve=cfg.SieveSection(vacation_min_seconds=0),
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account(ALICE, TEST_PASSWORD)
        live.activate_sieve(
            ALICE, 'require "vacation-seconds"; vacation :seconds 0 "In a meeting.";'
        )
        send(live, message("first"))
        send(live, message("second"))
        replies = wait_for(lambda: len(peer.messages) == 2 and peer.messages, "two replies")
        assert all(b"In a meeting." in r.content for r in replies)


def test_broken_script_keeps_in_inbox(server: LiveServer) -> None:
    """The store takes any text; a script that does not compile must not lose mail."""
    server.activate_sieve(ALICE, 'if header :frobnicate "subject" "x" { discard; }')
    send(server, message("still here"))
    assert [s for _, s in imap_read(server, INBOX)] == [b"Subject: still here"]


def test_spam_kept_goes_to_junk_and_is_never_redirected(server: LiveServer, peer: Recorder) -> None:
    async def block() -> None:
        account = await server.store.get_account(ALICE)
        assert account is not None
        await server.store.set_sender_entry(
            account.id, SenderListEntry("spammer.test", SenderListKind.BLOCK)
        )

    server.call(block())
    server.activate_sieve(
        ALICE, 'if header :contains "subject" "fwd" { redirect "carol@remote.test"; }'
    )
    send(server, message("keep me", sender="x@spammer.test"), sender="x@spammer.test")
    send(server, message("fwd me", sender="x@spammer.test"), sender="x@spammer.test")
    settle(server)
    assert peer.messages == []
    junk = [s for _, s in imap_read(server, "Junk")]
    assert junk == [b"Subject: keep me", b"Subject: fwd me"]  # the redirect kept it instead
    assert imap_read(server, INBOX) == []


def test_reject_bounces_to_the_sender(server: LiveServer, peer: Recorder) -> None:
    """RFC 5429: after the 250, a reject is a DSN to the envelope sender; nothing is
    stored."""
    server.activate_sieve(
        ALICE,
        'require ["reject", "variables"];\n'
        'if header :matches "subject" "ads *" { reject "No ads about ${1}, please."; }\n'
        'elsif header :contains "subject" "offer" { reject "No offers."; }\n',
    )
    send(server, message("ads shoes"))
    send(server, message("an offer"))
    reports = wait_for(lambda: len(peer.messages) == 2 and peer.messages, "the two reports")
    contents = sorted(r.content.replace(b"\r\n ", b" ") for r in reports)  # any order
    assert all(r.mail_from == "<>" for r in reports)  # RFC 5321 §4.5.5: no report of a report
    assert all(r.rcpt_tos == ["sender@outside.test"] for r in reports)
    reasons = [b"No ads about shoes, please.", b"No offers."]
    for reason in reasons:
        [content] = [c for c in contents if b"550 5.7.1 " + reason in c]
        assert b"Content-Type: multipart/report; report-type=delivery-status" in content
        assert b"Final-Recipient: rfc822; alice@example.org" in content
        assert b"Action: failed" in content and b"Status: 5.7.1" in content
        assert b"Diagnostic-Code: smtp; 550 5.7.1 " + reason in content
        assert b"Content-Type: text/rfc822-headers" in content  # the header, not the body
    assert imap_read(server, INBOX) == []


def test_ereject_refuses_in_smtp_when_every_recipient_does(
    server: LiveServer, peer: Recorder
) -> None:
    """RFC 5429 §2.2: the only recipient erejects: DATA gets 550 5.7.1 with the reason, and
    no report is sent (the client learns it in the protocol)."""
    server.activate_sieve(ALICE, 'require "ereject"; ereject "No mail on Sundays,\r\n please.";')
    with (
        smtplib.SMTP("127.0.0.1", server.port("smtp"), local_hostname="client.test") as client,
        pytest.raises(smtplib.SMTPDataError) as refused,
    ):
        client.sendmail("sender@outside.test", [ALICE], message("sunday"))
    assert refused.value.smtp_code == 550
    assert refused.value.smtp_error == b"5.7.1 No mail on Sundays, please."
    settle(server)
    assert peer.messages == []
    assert imap_read(server, INBOX) == []


def test_ereject_beside_a_delivered_copy_becomes_a_report(
    server: LiveServer, peer: Recorder
) -> None:
    """Bob takes the message, so the transaction's one reply must be 250: Alice's ereject is
    then a report, as reject's is — Bob's copy is not lost to a 550."""
    server.activate_sieve(ALICE, 'require "ereject"; ereject "Not for me.";')
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), local_hostname="client.test") as client:
        refused = client.sendmail("sender@outside.test", [ALICE, BOB], message("both"))
    assert refused == {}
    [report] = wait_for(lambda: peer.messages, "the report")
    assert b"Diagnostic-Code: smtp; 550 5.7.1 Not for me." in report.content
    assert b"Final-Recipient: rfc822; alice@example.org" in report.content
    assert imap_read(server, INBOX) == []
    assert [s for _, s in imap_read(server, INBOX, BOB)] == [b"Subject: both"]


def test_reject_never_answers_spam_or_the_null_sender(server: LiveServer, peer: Recorder) -> None:
    """Spam gets no report (its sender is likely forged) and stays in Junk; a message from
    the null sender (a report itself) is dropped without one."""

    async def block() -> None:
        account = await server.store.get_account(ALICE)
        assert account is not None
        await server.store.set_sender_entry(
            account.id, SenderListEntry("spammer.test", SenderListKind.BLOCK)
        )

    server.call(block())
    server.activate_sieve(ALICE, 'require "reject"; reject "Not wanted.";')
    send(server, message("spam", sender="x@spammer.test"), sender="x@spammer.test")
    send(server, message("a report", sender="mailer-daemon@outside.test"), sender="")
    send(server, message("plain"))
    [report] = wait_for(lambda: peer.messages, "the one report")
    settle(server)
    assert len(peer.messages) == 1 and b"Subject: plain" in report.content
    assert [s for _, s in imap_read(server, "Junk")] == [b"Subject: spam"]
    assert imap_read(server, INBOX) == []


def test_queued_local_delivery_is_filtered_too(server: LiveServer) -> None:
    """Mail for a local account that waits in the queue (its mailbox was full at intake) goes
    through the script when the queue delivers it."""
    server.create_mailbox(ALICE, "Later")
    server.activate_sieve(ALICE, 'require "fileinto"; fileinto "Later";')
    queued = server.store.enqueue(
        "sender@outside.test", message("queued"), [NewQueueRecipient(ALICE)]
    )
    server.call(queued)
    settle(server)  # the runner polls every second (queue.poll_interval)
    assert [s for _, s in imap_read(server, "Later")] == [b"Subject: queued"]
    assert imap_read(server, INBOX) == []


def test_vacation_from_only_an_address_the_account_owns(server: LiveServer, peer: Recorder) -> None:
    """RFC 5230 §4.3: :from is used when the account may send as it, else ignored."""
    server.call(server.store.add_alias("team@example.org", [ALICE]))
    server.activate_sieve(
        ALICE, 'require "vacation"; vacation :from "Team <team@example.org>" "Away.";'
    )
    send(server, message("one", sender="ann@outside.test"), sender="ann@outside.test")
    [reply] = wait_for(lambda: peer.messages, "the auto-reply")
    assert b"\r\nFrom: Team <team@example.org>\r\n" in reply.content
    server.activate_sieve(ALICE, 'require "vacation"; vacation :from "ceo@example.org" "Gone.";')
    send(server, message("two", sender="bea@outside.test"), sender="bea@outside.test")
    wait_for(lambda: len(peer.messages) == 2, "the second auto-reply")
    assert b"\r\nFrom: alice@example.org\r\n" in peer.messages[1].content


def test_vacation_only_when_the_account_is_addressed(server: LiveServer, peer: Recorder) -> None:
    """RFC 5230 §4.5: not to a message that names none of the account's addresses (a Bcc or
    list copy) — unless :addresses names one it does."""
    server.activate_sieve(ALICE, 'require "vacation"; vacation "Away.";')
    send(server, message("bcc", to="someone@example.net"))
    settle(server)
    assert peer.messages == []
    server.activate_sieve(
        ALICE, 'require "vacation"; vacation :addresses "someone@example.net" "Away.";'
    )
    send(server, message("bcc again", to="someone@example.net"))
    wait_for(lambda: peer.messages, "the auto-reply")


def test_redirect_back_to_a_forwarding_loop_is_kept(server: LiveServer, peer: Recorder) -> None:
    """A message that already went out through this account is not redirected again."""
    server.activate_sieve(ALICE, 'redirect "carol@remote.test";')
    looped = b"Delivered-To: alice@example.org\r\n" + message("round again")
    send(server, looped)
    settle(server)
    assert peer.messages == []
    assert [s for _, s in imap_read(server, INBOX)] == [b"Subject: round again"]


def test_keep_and_fileinto_inbox_are_one_copy_with_united_flags(server: LiveServer) -> None:
    server.activate_sieve(
        ALICE,
        'require ["fileinto", "imap4flags"];\n'
        'keep :flags "$One"; fileinto :flags "$Two" "INBOX"; fileinto :flags "$Two" "inbox";',
    )
    send(server, message("once"))
    [(flags, subject)] = imap_read(server, INBOX)
    assert subject == b"Subject: once"
    assert set(flags.split()) == {"$One", "$Two"}


def test_script_is_compiled_once_for_many_deliveries(server: LiveServer) -> None:
    server.activate_sieve(ALICE, 'if header :contains "subject" "drop" { discard; }')
    assert server.server.context is not None
    cache = server.server.context.sieve_scripts
    before = cache.compiled
    for n in range(3):
        send(server, message(f"keep {n}"))
    assert cache.compiled - before == 1
    assert len(imap_read(server, INBOX)) == 3


def test_a_large_script_is_compiled_off_the_loop_once_and_applied(server: LiveServer) -> None:
    """A script past INLINE_COMPILE_SIZE takes the worker pool's path: compiled once, and
    its last rule (after 200 others) still files the message."""
    rules = "".join(
        f'if header :is "subject" "rule {n} of many" {{ discard; }}\n' for n in range(200)
    )
    script = (
        f'require "fileinto";\n{rules}if header :contains "subject" "big" {{ fileinto "Big"; }}\n'
    )
    assert len(script) > INLINE_COMPILE_SIZE
    server.create_mailbox(ALICE, "Big")
    server.activate_sieve(ALICE, script)
    assert server.server.context is not None
    cache = server.server.context.sieve_scripts
    before = cache.compiled
    send(server, message("big one"))
    send(server, message("big two"))
    assert cache.compiled - before == 1
    assert [s for _, s in imap_read(server, "Big")] == [b"Subject: big one", b"Subject: big two"]


# -- include (RFC 6609) and environment (RFC 5183) -------------------------------------------


def test_include_personal_and_global_scripts_with_global_variables(
    tmp_path: Path, dns_port: int
) -> None:
    """The active script includes a personal script (from the account's scripts) and a site
    script (from sieve.global_dir); they share a global variable. Changing the included
    script takes effect on the next delivery (the cache is by content, the text read each
    time); a missing include is the implicit keep; the environment test sees this server."""
    site = tmp_path / "global"
    site.mkdir()
    (site / "tag.sieve").write_text(
        'require ["include", "variables"];\n'
        'global "folder";\n'
        'if header :contains "subject" "urgent" { set "folder" "${folder}-Urgent"; }\n'
    )
    config = loopback_config(
        tmp_path / "data",
        only=("smtp", "imap"),
        dns=cfg.DnsSection(nameserver=f"127.0.0.1:{dns_port}", timeout=2.0),
        policy=cfg.PolicySection(trusted_networks=()),
        sieve=cfg.SieveSection(global_dir=str(site)),
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account(ALICE, TEST_PASSWORD)
        live.put_sieve(
            ALICE,
            'require ["include", "variables"];\n'
            'global "folder";\n'
            'if header :contains "subject" "report" { set "folder" "Reports"; return; }\n'
            'set "folder" "Other";\n',
            "classify",
        )
        live.activate_sieve(
            ALICE,
            'require ["include", "variables", "fileinto", "mailbox", "environment"];\n'
            'global "folder";\n'
            'include :personal "classify";\n'
            'include :global :once "tag";\n'
            'if header :contains "subject" "missing" { include "no-such-script"; }\n'
            'if environment :is "location" "MDA" {\n'
            '  if environment :matches "remote-ip" "*" { set "ip" "${1}"; }\n'
            '  fileinto :create "${folder}";\n'
            '  if environment :is "remote-ip" "127.0.0.1" { fileinto :create "From-${ip}"; }\n'
            "}\n",
        )
        send(live, message("urgent report"))
        send(live, message("lunch"))
        assert imap_read(live, "Reports-Urgent") == [("", b"Subject: urgent report")]
        assert imap_read(live, "Other") == [("", b"Subject: lunch")]
        assert len(imap_read(live, "From-127.0.0.1")) == 2
        # the included script changed: the next delivery runs the new text
        live.put_sieve(
            ALICE,
            'require ["include", "variables"]; global "folder"; set "folder" "Changed";',
            "classify",
        )
        send(live, message("after the change"))
        assert imap_read(live, "Changed") == [("", b"Subject: after the change")]
        # a missing include (no :optional) is a runtime error: kept in INBOX, nothing filed
        send(live, message("missing include"))
        assert imap_read(live, INBOX) == [("", b"Subject: missing include")]


# -- editheader (RFC 5293) --------------------------------------------------------------------


def test_editheader_changes_the_stored_message_fetch_and_search_see(server: LiveServer) -> None:
    """The added field is in the stored bytes and in the stored parse (SEARCH HEADER reads the
    header index, FETCH ENVELOPE the envelope): both re-derived from the edited bytes; a
    deleted Subject is gone from both; Received cannot be deleted."""
    server.create_mailbox(ALICE, "Tagged")
    server.activate_sieve(
        ALICE,
        'require ["editheader", "fileinto", "variables"];\n'
        'if header :matches "subject" "tag *" {\n'
        '  addheader "X-Sieve-Tag" "${1}";\n'
        '  addheader :last "X-Sieve-Utf" "caf\u00e9";\n'
        '  deleteheader "subject";\n'
        '  deleteheader "received";\n'
        '  if header :is "x-sieve-tag" "${1}" { fileinto "Tagged"; }\n'
        "}\n",
    )
    send(server, message("tag blue"))
    send(server, message("untouched"))
    [stored] = server.mailbox_messages(ALICE, "Tagged")
    # below the fields delivery put on top (Return-Path, Delivered-To, our Received)
    assert stored.startswith(b"Return-Path: <sender@outside.test>\r\nDelivered-To: ")
    ours, _, rest = stored.partition(b"\r\nX-Sieve-Tag: blue\r\n")
    assert b"\r\nX-Pillarbox-Spam: " in ours and b"\r\nReceived: from client.test" in ours
    assert b"\r\nFrom: " not in ours
    assert spam_verdict(stored, parse_message(stored)) is not None  # the web UI still reads it
    assert rest.startswith(b"From: sender@outside.test\r\n")
    assert b"\r\nX-Sieve-Utf: =?utf-8?b?Y2Fmw6k=?=\r\n\r\n" in stored  # RFC 5293 §4: encoded
    assert b"Subject:" not in stored
    with imaplib.IMAP4("127.0.0.1", server.port("imap")) as imap:
        imap.login(ALICE, TEST_PASSWORD)
        imap.select('"Tagged"', readonly=True)
        typ, found = imap.search(None, "HEADER", "X-Sieve-Tag", "blue")
        assert typ == "OK" and found == [b"1"]
        typ, found = imap.search(None, "HEADER", "X-Sieve-Utf", '""')  # the field is there
        assert typ == "OK" and found == [b"1"]
        typ, found = imap.search(None, "HEADER", "Subject", "tag")
        assert typ == "OK" and found == [b""]
        typ, fetched = imap.fetch("1", "(ENVELOPE BODY.PEEK[HEADER.FIELDS (X-SIEVE-TAG)])")
        assert typ == "OK"
        envelope, field = fetched[0][0], fetched[0][1]  # type: ignore[index]
        assert b"ENVELOPE (" in envelope and b'"Sun, 1 Jun 2025 10:00:00 +0000" NIL' in envelope
        assert field.strip() == b"X-Sieve-Tag: blue"
        imap.select("INBOX", readonly=True)
        typ, found = imap.search(None, "HEADER", "X-Sieve-Tag", '""')
        assert typ == "OK" and found == [b""]
    assert imap_read(server, INBOX) == [("", b"Subject: untouched")]


# -- enotify (RFC 5435, RFC 5436) and metadata (RFC 5490) ------------------------------------


def imap_headers(live: LiveServer, address: str) -> list[bytes]:
    """The header of each message in the INBOX of ``address``, read with imaplib."""
    with imaplib.IMAP4("127.0.0.1", live.port("imap")) as imap:
        imap.login(address, TEST_PASSWORD)
        typ, data = imap.select(INBOX, readonly=True)
        assert typ == "OK", data
        if int(data[0] or 0) == 0:
            return []
        typ, fetched = imap.fetch("1:*", "(BODY.PEEK[HEADER])")
        assert typ == "OK"
        return [item[1] for item in fetched if isinstance(item, tuple)]


NOTIFY_SCRIPT = (
    'require ["enotify", "variables"];\n'
    'if header :matches "subject" "*" { set "s" "${1}"; }\n'
    'notify :importance "1" :message "New: ${s}" "mailto:bob@example.org?cc=carol@remote.test";\n'
)


def test_notify_mails_a_local_account_and_a_remote_address(
    server: LiveServer, peer: Recorder
) -> None:
    """RFC 5436 §2.7: a new message, Auto-Submitted: auto-notified, From the account, the
    :message as Subject; to Bob's INBOX (read over IMAP) and through the queue to Carol;
    the triggering message itself is kept (RFC 5435 §7)."""
    server.activate_sieve(ALICE, NOTIFY_SCRIPT)
    send(server, message("lunch"))
    [remote] = wait_for(lambda: peer.messages, "the notification to carol")
    assert remote.rcpt_tos == ["carol@remote.test"]
    assert remote.mail_from == ALICE  # §2.7: the author, the trigger's sender was not null
    [header] = wait_for(lambda: imap_headers(server, BOB), "the notification to bob")
    for content in (header, remote.content):
        assert b'\r\nAuto-Submitted: auto-notified; owner-email="alice@example.org"\r\n' in content
        assert b"\r\nFrom: alice@example.org\r\n" in content
        assert b"\r\nTo: bob@example.org\r\nCc: carol@remote.test\r\n" in content
        assert b"\r\nSubject: New: lunch\r\n" in content
        assert b"\r\nImportance: high\r\n" in content
    assert b"\r\nFrom: sender@outside.test" in remote.content  # the note about the trigger
    assert [s for _, s in imap_read(server, INBOX)] == [b"Subject: lunch"]


def test_no_notification_for_automatic_mail_and_none_from_the_null_sender(
    server: LiveServer, peer: Recorder
) -> None:
    """RFC 5436 §2.7: none about an Auto-Submitted message (other than "no"); a message from
    the null sender notifies, from the null sender."""
    server.activate_sieve(ALICE, NOTIFY_SCRIPT)
    send(server, b"Auto-Submitted: auto-replied\r\n" + message("out of office"))
    settle(server)
    assert peer.messages == []
    assert imap_headers(server, BOB) == []
    assert len(imap_read(server, INBOX)) == 1  # delivered all the same
    send(server, b"Auto-Submitted: no\r\n" + message("report"), sender="")
    [remote] = wait_for(lambda: peer.messages, "the notification")
    assert remote.mail_from == "<>"
    wait_for(lambda: len(imap_headers(server, BOB)) == 1, "bob's notification")


def test_notify_skips_the_accounts_own_address_and_uses_an_owned_from(
    server: LiveServer, peer: Recorder
) -> None:
    """A notification to the address the message came to would loop (RFC 5436 §2.7): only
    Bob gets one; :from is an alias Alice owns, so it is the From and the envelope sender."""
    server.call(server.store.add_alias("team@example.org", [ALICE]))
    server.activate_sieve(
        ALICE,
        'require "enotify";\n'
        'notify :from "team@example.org" "mailto:alice@example.org?cc=bob@example.org";\n'
        'notify :from "ceo@example.org" "mailto:carol@remote.test";\n',
    )
    send(server, message("self"))
    [header] = wait_for(lambda: imap_headers(server, BOB), "the notification to bob")
    assert b"\r\nFrom: team@example.org\r\n" in header
    assert header.startswith(b"Return-Path: <team@example.org>\r\n")
    [remote] = wait_for(lambda: peer.messages, "the notification to carol")
    assert b"\r\nFrom: alice@example.org\r\n" in remote.content  # ceo@ is not Alice's
    settle(server)
    assert [s for _, s in imap_read(server, INBOX)] == [b"Subject: self"]


def test_an_included_script_reads_folders_and_metadata_its_includer_does_not_name(
    server: LiveServer,
) -> None:
    """Delivery reads what the included scripts need too: the folder list for
    mailboxexists (RFC 5490 §3.1) and the entries their metadata tests name."""
    server.create_mailbox(ALICE, "Work")
    server.put_sieve(
        ALICE,
        'require ["mailbox", "fileinto", "servermetadata"];\n'
        'if allof (mailboxexists "Work", not servermetadataexists "/private/x/y") {\n'
        '    fileinto "Work";\n'
        "}\n",
        "lib",
    )
    server.activate_sieve(ALICE, 'require "include"; include :personal "lib";')
    send(server, message("included"))
    settle(server)
    assert [s for _, s in imap_read(server, "Work")] == [b"Subject: included"]


def test_notify_of_an_unsupported_method_in_variables_keeps_and_sends_nothing(
    server: LiveServer, peer: Recorder
) -> None:
    """RFC 5435 §3.2: an unsupported method MUST cause an error: at run time, the implicit
    keep (RFC 5228 §2.10.6), no fileinto, no notification."""
    server.create_mailbox(ALICE, "Lists")
    server.activate_sieve(
        ALICE,
        'require ["enotify", "variables", "fileinto"]; set "m" "xmpp:bob@example.org";\n'
        'notify "mailto:bob@example.org"; notify "${m}"; fileinto "Lists";',
    )
    send(server, message("xmpp"))
    settle(server)
    assert imap_headers(server, BOB) == []
    assert [s for _, s in imap_read(server, INBOX)] == [b"Subject: xmpp"]
    assert imap_read(server, "Lists") == []


def test_metadata_set_over_imap_is_what_the_script_tests(server: LiveServer) -> None:
    """RFC 5490 §3.3–§3.6 over RFC 5464: entries set with SETMETADATA (imapclient's raw
    command) steer delivery; the script reads them, never writes."""
    server.create_mailbox(ALICE, "Work")
    server.activate_sieve(
        ALICE,
        'require ["mboxmetadata", "servermetadata", "fileinto", "variables"];\n'
        'if servermetadata :matches "/private/vendor/pillarbox/mode" "away*" {\n'
        '    fileinto "Away${1}";\n'
        '} elsif allof (metadataexists "Work" "/private/comment",\n'
        '               metadata :contains "Work" "/private/comment" "route here") {\n'
        '    fileinto "Work";\n'
        "}\n",
    )
    send(server, message("before"))
    settle(server)
    assert [s for _, s in imap_read(server, INBOX)] == [b"Subject: before"]
    imap = IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False, timeout=10)
    imap.login(ALICE, TEST_PASSWORD)
    typ, data = imap._raw_command(
        b"SETMETADATA", [b"Work", b'(/private/comment "Please ROUTE HERE")'], uid=False
    )
    assert typ == "OK", data
    send(server, message("work mail"))
    settle(server)
    assert [s for _, s in imap_read(server, "Work")] == [b"Subject: work mail"]
    server.create_mailbox(ALICE, "Away-2")
    typ, data = imap._raw_command(
        b"SETMETADATA", [b'""', b'(/private/vendor/pillarbox/mode "away-2")'], uid=False
    )
    assert typ == "OK", data
    imap.logout()
    send(server, message("while away"))
    settle(server)
    assert [s for _, s in imap_read(server, "Away-2")] == [b"Subject: while away"]
    assert len(imap_read(server, "Work")) == 1


# -- spamtest, duplicate, special-use, fcc -----------------------------------------------------

SPAM_LEVELS = (
    'require ["spamtestplus", "variables", "imap4flags"];\n'
    'if spamtest :matches "*" { set "level" "${1}"; }\n'
    'if spamtest :percent :matches "*" { set "percent" "${1}"; }\n'
    'addflag "$L${level}"; addflag "$P${percent}";\n'
)


def test_spamtest_reads_the_policys_verdict(server: LiveServer) -> None:
    """RFC 5235: the MX's verdict, on the documented scales — a sender on the block list is
    Junk whatever its score (level at least 5); a clean message's level follows its score."""

    async def block() -> None:
        account = await server.store.get_account(ALICE)
        assert account is not None
        await server.store.set_sender_entry(
            account.id, SenderListEntry("spammer.test", SenderListKind.BLOCK)
        )

    server.call(block())
    server.activate_sieve(ALICE, SPAM_LEVELS)
    send(server, message("blocked", sender="x@spammer.test"), sender="x@spammer.test")
    send(server, message("clean"))
    [(flags, _)] = imap_read(server, "Junk")
    assert set(flags.split()) == {"$L5", "$P33"}  # junk band: 5/15 of the reject threshold
    [(flags, _)] = imap_read(server, INBOX)
    [raw] = imap_raw(server, INBOX)
    verdict = spam_verdict(raw, parse_message(raw))
    assert verdict is not None and verdict.action == "inbox"
    status = SpamStatus(verdict.score, "inbox", 5.0, 15.0)
    assert set(flags.split()) == {f"$L{spamtest.level(status)}", f"$P{spamtest.percent(status)}"}
    assert spamtest.level(status) in {"1", "2", "3", "4"}


def test_spamtest_of_a_message_not_judged_is_zero(server: LiveServer) -> None:
    """RFC 5235 §3.1: "0" — a message no policy judged (queued for a full mailbox without
    a filing: here a copy injected into the queue)."""
    server.activate_sieve(ALICE, SPAM_LEVELS)

    server.call(
        server.store.enqueue("sender@outside.test", message("queued"), [NewQueueRecipient(ALICE)])
    )
    settle(server)
    assert imap_read(server, INBOX) == [("$L0 $P0", b"Subject: queued")]


def test_duplicate_files_the_second_delivery_of_a_message_id(server: LiveServer) -> None:
    """RFC 7352: the first delivery of a Message-ID is not a duplicate, the second is; another
    :handle tracks apart; a run that fails records nothing (§3.1)."""
    server.create_mailbox(ALICE, "Dups")
    server.activate_sieve(
        ALICE,
        'require ["duplicate", "fileinto", "imap4flags"];\n'
        'if duplicate { fileinto "Dups"; }\n'
        'if header :is "subject" "fail" {\n'
        '  redirect "a@remote.test"; redirect "b@remote.test"; redirect "c@remote.test"; }\n'
        'if duplicate :handle "other" :header "subject" { addflag "$Subject-again"; }\n',
    )
    one = message("same subject")
    send(server, one)
    send(server, one)
    send(server, message("same subject"))
    # Three redirects: over max_redirects, a runtime error (kept) — its id is not recorded,
    # so the same Message-ID without the failure is no duplicate.
    failing = message("fail")
    send(server, failing)
    send(server, failing.replace(b"Subject: fail", b"Subject: after the failure"))
    assert imap_read(server, "Dups") == [("", b"Subject: same subject")]
    assert imap_read(server, INBOX) == [
        ("", b"Subject: same subject"),
        ("$Subject-again", b"Subject: same subject"),
        ("", b"Subject: fail"),
        ("", b"Subject: after the failure"),
    ]


def test_fileinto_specialuse_and_vacation_fcc(server: LiveServer, peer: Recorder) -> None:
    """RFC 8579 §4: :specialuse "\\Junk" files into the account's Junk whatever its name;
    RFC 8580: the vacation reply's copy is stored in Sent, with its :flags."""
    server.activate_sieve(
        ALICE,
        'require ["fileinto", "special-use", "vacation", "fcc", "imap4flags"];\n'
        'if specialuse_exists "Junk" "\\\\Junk" { fileinto :specialuse "\\\\Junk" "Spam"; }\n'
        'vacation :fcc "Outbox" :specialuse "\\\\Sent" :flags "\\\\Seen" "Back on Monday.";\n',
    )
    send(server, message("question"))
    [reply] = wait_for(lambda: peer.messages, "the auto-reply")
    assert b"Back on Monday." in reply.content
    assert [s for _, s in imap_read(server, "Junk")] == [b"Subject: question"]
    [(flags, subject)] = wait_for(lambda: imap_read(server, "Sent"), "the fcc copy")
    assert flags == "\\Seen" and subject == b"Subject: Auto: question"


def imap_raw(live: LiveServer, mailbox: str) -> list[bytes]:
    """The messages of ``mailbox`` as stored, read with imaplib."""
    with imaplib.IMAP4("127.0.0.1", live.port("imap")) as imap:
        imap.login(ALICE, TEST_PASSWORD)
        typ, data = imap.select(f'"{mailbox}"', readonly=True)
        assert typ == "OK", data
        typ, fetched = imap.fetch("1:*", "(BODY.PEEK[])")
        assert typ == "OK"
        return [item[1] for item in fetched if isinstance(item, tuple)]


def test_notify_fcc_creates_its_mailbox_and_a_missing_one_keeps_no_copy(
    server: LiveServer, peer: Recorder
) -> None:
    """RFC 8580: the notification's copy goes into the :fcc mailbox, made with :create; a
    vacation :fcc into a missing mailbox without :create stores nothing (the reply is sent)."""
    server.activate_sieve(
        ALICE,
        'require ["enotify", "fcc", "mailbox", "vacation"];\n'
        'notify :fcc "Notes" :create :message "New: mail" "mailto:carol@remote.test";\n'
        'vacation :fcc "Nowhere" "Away.";\n',
    )
    send(server, message("lunch"))
    wait_for(lambda: len(peer.messages) == 2, "the notification and the reply")
    [(flags, subject)] = wait_for(lambda: imap_read(server, "Notes"), "the fcc copy")
    assert (flags, subject) == ("", b"Subject: New: mail")
    settle(server)
    with imaplib.IMAP4("127.0.0.1", server.port("imap")) as imap:
        imap.login(ALICE, TEST_PASSWORD)
        typ, _ = imap.select('"Nowhere"', readonly=True)
    assert typ == "NO"
    assert [s for _, s in imap_read(server, INBOX)] == [b"Subject: lunch"]


def test_an_empty_fcc_mailbox_keeps_no_copy_and_makes_none(
    server: LiveServer, peer: Recorder
) -> None:
    """``vacation :fcc "" :create`` compiles (as Pigeonhole's sievec takes ``fileinto ""``):
    no mailbox has the empty name and none can be made with it, so the reply is sent, the
    message kept, and no copy stored anywhere."""

    def counts() -> dict[str, int]:
        with IMAPClient("127.0.0.1", server.port("imap"), ssl=False) as imap:
            imap.login(ALICE, TEST_PASSWORD)
            names = [name for _, _, name in imap.list_folders()]
            return {name: imap.folder_status(name, [b"MESSAGES"])[b"MESSAGES"] for name in names}

    before = counts()
    server.activate_sieve(
        ALICE, 'require ["fcc", "mailbox", "vacation"];\nvacation :fcc "" :create "Away.";\n'
    )
    send(server, message("empty"))
    [reply] = wait_for(lambda: peer.messages, "the auto-reply")
    assert b"Away." in reply.content
    settle(server)
    assert counts() == {**before, INBOX: before[INBOX] + 1}
    assert [s for _, s in imap_read(server, INBOX)] == [b"Subject: empty"]
