"""The lmtp listener (RFC 2033) on a live server, driven by Python's ``smtplib.LMTP``: one reply
per accepted recipient after the data, each that recipient's own outcome (stored, over quota,
erejected by its Sieve script, refused as spam when the admin chose it); the stored copies read
back from the store (``Received: … with LMTP``, Junk filing and ``X-Pillarbox-Spam`` by the
content policy). On PostgreSQL too with ``PILLARBOX_TEST_STORE``.

``smtplib.LMTP.sendmail`` reads only the first reply after the data (a limit of the stdlib
client), so the tests speak the transaction command by command and read the further replies
with ``getreply()``, as an LMTP client must (RFC 2033 §4.2).
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import smtplib
import socket
import ssl
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pillarbox import config as cfg
from pillarbox.errors import ConfigError
from pillarbox.store.types import INBOX, SenderListEntry, SenderListKind
from pillarbox.testing.dnszone import ZoneRecord
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config

ALICE = "alice@example.org"
BOB = "bob@example.org"
FULL = "full@example.org"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def message(subject: str, body: str = "Hello over LMTP.") -> bytes:
    return (
        f"From: sender@outside.test\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@outside.test>\r\n\r\n{body}\r\n"
    ).encode()


@pytest.fixture
def lmtp(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    """A server with only the lmtp listener, ``[lmtp]`` from the test's ``lmtp`` marker;
    alice and bob have room, full@ has a one-byte quota."""
    marker = request.node.get_closest_marker("lmtp")
    section: dict[str, Any] = dict(marker.kwargs) if marker else {}
    config = loopback_config(tmp_path / "data", only=("lmtp",))
    config = dataclasses.replace(config, lmtp=cfg.LmtpSection(**section))
    with LiveServer(config) as server:
        server.add_domain("example.org")
        server.add_account(ALICE, TEST_PASSWORD)
        server.add_account(BOB, TEST_PASSWORD)
        server.add_account(FULL, TEST_PASSWORD, quota_bytes=1)
        yield server


def transaction(
    server: LiveServer, recipients: Sequence[str], data: bytes, *, socket: Path | None = None
) -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]]]:
    """LHLO, MAIL, one RCPT per recipient, DATA (over TCP, or the UNIX ``socket``): the RCPT
    replies and the replies after the data (one per accepted recipient)."""
    client = (
        smtplib.LMTP("127.0.0.1", server.port("lmtp"))
        if socket is None
        else smtplib.LMTP(str(socket))  # a path: smtplib.LMTP connects over AF_UNIX
    )
    with client:
        code, _ = client.ehlo("front.example")  # smtplib.LMTP sends LHLO
        assert code == 250
        assert client.does_esmtp and client.has_extn("pipelining")
        assert client.mail("sender@outside.test")[0] == 250
        rcpt = [client.rcpt(r) for r in recipients]
        accepted = sum(code == 250 for code, _ in rcpt)
        after = [client.data(data)]
        after += [client.getreply() for _ in range(accepted - 1)]
        return rcpt, after


def inbox(server: LiveServer, address: str, mailbox: str = INBOX) -> list[bytes]:
    return server.mailbox_messages(address, mailbox)


def queued(server: LiveServer) -> int:
    return len(server.call(server.store.list_queue()))


def test_one_recipient_over_quota_gets_its_own_reply(lmtp: LiveServer) -> None:
    rcpt, after = transaction(lmtp, [ALICE, FULL, BOB], message("quota mix"))
    assert [code for code, _ in rcpt] == [250, 250, 250]
    assert [code for code, _ in after] == [250, 452, 250]
    assert after[1][1] == b"4.2.2 mailbox full"
    assert after[0][1].startswith(b"2.0.0 message accepted as ")
    for address in (ALICE, BOB):
        (stored,) = inbox(lmtp, address)
        assert b"Subject: quota mix" in stored
        assert b"by mx.test (Pillarbox) with LMTP id " in stored  # RFC 3848 §2
    assert inbox(lmtp, FULL) == []
    assert queued(lmtp) == 0  # the front MTA keeps it and retries, not our queue


@pytest.mark.lmtp(quota_full="reject")
def test_quota_full_reject_is_permanent(lmtp: LiveServer) -> None:
    _, after = transaction(lmtp, [FULL, ALICE], message("quota reject"))
    assert after == [(552, b"5.2.2 mailbox full"), after[1]]
    assert after[1][0] == 250
    assert len(inbox(lmtp, ALICE)) == 1 and inbox(lmtp, FULL) == []
    assert queued(lmtp) == 0


def test_only_hosted_recipients(lmtp: LiveServer) -> None:
    """No relay: a remote recipient is refused at RCPT, an unknown one too; the message goes
    to the one accepted recipient only and nothing is queued outbound."""
    rcpt, after = transaction(
        lmtp, ["someone@elsewhere.example", "nobody@example.org", ALICE], message("relay")
    )
    assert [code for code, _ in rcpt] == [554, 550, 250]
    assert rcpt[0][1].startswith(b"5.7.1") and rcpt[1][1].startswith(b"5.1.1")
    assert [code for code, _ in after] == [250]
    assert len(inbox(lmtp, ALICE)) == 1
    assert queued(lmtp) == 0


def test_helo_and_ehlo_are_refused(lmtp: LiveServer) -> None:
    """RFC 2033 §4.1: an LMTP server does not take HELO or EHLO."""
    with smtplib.SMTP("127.0.0.1", lmtp.port("lmtp")) as client:
        assert client.ehlo("front.example")[0] == 500
        assert client.helo("front.example")[0] == 500
        assert client.mail("a@outside.test") == (503, b"5.5.1 send LHLO first")


def test_sieve_runs_and_ereject_answers_one_recipient(lmtp: LiveServer) -> None:
    lmtp.create_mailbox(ALICE, "Lists")
    lmtp.activate_sieve(
        ALICE, 'require "fileinto"; if header :contains "subject" "sieve" { fileinto "Lists"; }'
    )
    lmtp.activate_sieve(BOB, 'require "ereject"; ereject "bob takes no mail today";')
    _, after = transaction(lmtp, [ALICE, BOB], message("sieve test"))
    assert after[0][0] == 250
    assert after[1] == (550, b"5.7.1 bob takes no mail today")
    assert len(inbox(lmtp, ALICE, "Lists")) == 1 and inbox(lmtp, ALICE) == []
    assert inbox(lmtp, BOB) == []
    assert queued(lmtp) == 0  # answered in the protocol: no report to the sender


def test_content_policy_files_spam_in_junk(lmtp: LiveServer) -> None:
    """The default ``policy = "content"``: GTUBE scores far above the reject threshold, but the
    front MTA accepted the message, so it is filed in Junk with X-Pillarbox-Spam."""
    _, after = transaction(lmtp, [ALICE, BOB], message("spam", GTUBE))
    assert [code for code, _ in after] == [250, 250]
    for address in (ALICE, BOB):
        assert inbox(lmtp, address) == []
        (junk,) = inbox(lmtp, address, "Junk")
        assert b"X-Pillarbox-Spam: score=" in junk and b"GTUBE" in junk
        assert b"action=reject" in junk


@pytest.mark.lmtp(refuse_spam=True)
def test_refuse_spam_refuses_per_recipient(lmtp: LiveServer) -> None:
    lmtp.call(_allow(lmtp, BOB, "sender@outside.test"))
    _, after = transaction(lmtp, [ALICE, BOB], message("spam refused", GTUBE))
    assert after[0][0] == 550 and after[0][1].startswith(b"5.7.1 message looks like spam")
    assert after[1][0] == 250  # bob's allow list lets it in
    assert inbox(lmtp, ALICE) == [] and inbox(lmtp, ALICE, "Junk") == []
    assert len(inbox(lmtp, BOB)) == 1


@pytest.mark.lmtp(policy="none")
def test_policy_none_judges_nothing(lmtp: LiveServer) -> None:
    _, after = transaction(lmtp, [ALICE], message("unjudged", GTUBE))
    assert [code for code, _ in after] == [250]
    (stored,) = inbox(lmtp, ALICE)
    assert b"X-Pillarbox-Spam" not in stored


def test_bdat_last_answers_each_recipient(lmtp: LiveServer) -> None:
    """CHUNKING (RFC 3030) in LMTP: the replies to BDAT LAST are per recipient."""
    data = message("chunked")
    with smtplib.LMTP("127.0.0.1", lmtp.port("lmtp")) as client:
        client.ehlo("front.example")
        assert client.has_extn("chunking")
        client.mail("sender@outside.test")
        client.rcpt(FULL)
        client.rcpt(ALICE)
        client.send(f"BDAT {len(data)} LAST\r\n".encode() + data)
        assert client.getreply() == (452, b"4.2.2 mailbox full")
        assert client.getreply()[0] == 250
    assert len(inbox(lmtp, ALICE)) == 1


async def _allow(server: LiveServer, address: str, pattern: str) -> None:
    account = await server.store.get_account(address)
    assert account is not None
    await server.store.set_sender_entry(account.id, SenderListEntry(pattern, SenderListKind.ALLOW))


def test_unix_socket(tmp_path: Path) -> None:
    """``[lmtp] socket``: LMTP on a UNIX socket (Postfix ``lmtp:unix:``) with the configured
    permissions; a stale socket file is replaced, one in use refuses to start a second
    server, and the file is removed at shutdown. The Received field has no TCP-info."""
    path = tmp_path / "lmtp.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))  # left behind, as by a crash: nobody listens on it
    # Trusting no network: the socket is trusted all the same, and offers no STARTTLS.
    section = cfg.LmtpSection(socket=str(path), socket_mode="0600", trusted_networks=())
    config = loopback_config(tmp_path / "data", only=(), lmtp=section)
    with LiveServer(config) as server:
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        server.add_domain("example.org")
        server.add_account(ALICE, TEST_PASSWORD)
        server.add_account(FULL, TEST_PASSWORD, quota_bytes=1)
        with smtplib.LMTP(str(path)) as client:
            client.ehlo("front.example")
            assert not client.has_extn("starttls") and not client.has_extn("auth")
        _, after = transaction(server, [ALICE, FULL], message("over a socket"), socket=path)
        assert [code for code, _ in after] == [250, 452]
        (stored,) = inbox(server, ALICE)
        assert b"Received: from front.example\r\n\tby mx.test (Pillarbox) with LMTP id" in stored
        again = loopback_config(tmp_path / "again", only=(), lmtp=section)
        with pytest.raises(ConfigError) as busy, LiveServer(again):
            pass
        assert busy.value.key == "lmtp.socket"
        assert path.exists()  # the refused server left the running one's socket alone
    assert not path.exists()


def test_an_alias_answers_for_all_its_accounts(lmtp: LiveServer) -> None:
    """A recipient that is an alias gets one reply: 250 when any of its accounts took the
    message — then a full one among them is retried by our queue, as the 250 promised — and
    the failure when none did (not queued: the front MTA retries)."""
    lmtp.call(lmtp.store.add_alias("team@example.org", [ALICE, FULL]))
    lmtp.call(lmtp.store.add_alias("quota@example.org", [FULL]))
    _, after = transaction(lmtp, ["team@example.org"], message("to the team"))
    assert [code for code, _ in after] == [250]
    assert len(inbox(lmtp, ALICE)) == 1
    (entry,) = lmtp.call(lmtp.store.list_queue())
    assert [r.address for r in entry.recipients] == [FULL]
    _, after = transaction(lmtp, ["quota@example.org", BOB], message("to quota"))
    assert after[0] == (452, b"4.2.2 mailbox full") and after[1][0] == 250
    assert queued(lmtp) == 1  # still only the team message's retry


@pytest.fixture
def dns_records() -> list[ZoneRecord]:
    """outside.test sends from 192.0.2.7 only, and asks for DMARC p=reject."""
    return [
        ZoneRecord("outside.test", "TXT", "v=spf1 ip4:192.0.2.7 -all"),
        ZoneRecord("_dmarc.outside.test", "TXT", "v=DMARC1; p=reject"),
    ]


def test_full_policy_checks_the_client_xforward_names(tmp_path: Path, dns_port: int) -> None:
    """``policy = "full"``: XFORWARD is offered, and SPF/DMARC run on the sender's MTA it names
    (a client outside trusted_networks), not on the front MTA on loopback. DMARC p=reject files
    the message in Junk (the front MTA accepted it; refuse_spam is off). Without XFORWARD the
    message is judged on its content only, as it is when XFORWARD names no usable ADDR (only
    the HELO, or Postfix's ``[UNAVAILABLE]``)."""
    config = loopback_config(
        tmp_path / "data",
        only=("lmtp",),
        dns=cfg.DnsSection(nameserver=f"127.0.0.1:{dns_port}", timeout=2.0),
        lmtp=cfg.LmtpSection(policy="full"),
    )
    with LiveServer(config) as server:
        server.add_domain("example.org")
        server.add_account(ALICE, TEST_PASSWORD)
        for attributes, subject in (
            ("ADDR=192.0.2.7 HELO=mail.outside.test", "pass"),
            ("ADDR=IPv6:2001:db8::9 HELO=mail.outside.test", "fail"),
            ("", "none"),
            ("HELO=mail.outside.test", "helo only"),
            ("ADDR=[UNAVAILABLE] HELO=mail.outside.test", "unavailable"),
        ):
            with smtplib.LMTP("127.0.0.1", server.port("lmtp")) as client:
                client.ehlo("front.example")
                assert client.esmtp_features["xforward"] == "NAME ADDR PROTO HELO SOURCE"
                if attributes:
                    reply = client.docmd("XFORWARD", attributes)
                    assert reply == (250, b"2.0.0 OK")
                client.sendmail("sender@outside.test", [ALICE], message(subject))
        inboxed, junk = inbox(server, ALICE), inbox(server, ALICE, "Junk")
    assert len(inboxed) == 4 and len(junk) == 1
    passed, *unchecked = inboxed
    assert b"Subject: pass" in passed
    assert b"spf=pass smtp.mailfrom=outside.test" in passed
    assert b"dmarc=pass" in passed
    for stored, subject in zip(unchecked, (b"none", b"helo only", b"unavailable"), strict=True):
        assert b"Subject: " + subject in stored
        assert b"Authentication-Results: mx.test; none" in stored
    (failed,) = junk
    assert b"spf=fail smtp.mailfrom=outside.test" in failed and b"dmarc=fail" in failed
    assert b"override=dmarc-reject" in failed
    for stored in (passed, failed):
        # The Received field names the hop we saw: the front MTA.
        assert b"Received: from front.example ([127.0.0.1])" in stored


FRONT = "front@example.org"  # the account the front MTA logs in as
INVALID = b"5.7.8 authentication credentials invalid"


def auth_plain(client: smtplib.SMTP, user: str, password: str) -> tuple[int, bytes]:
    """One AUTH PLAIN (smtplib's ``login`` tries each mechanism in turn)."""
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    return client.docmd("AUTH", f"PLAIN {token}")


def _client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the server's self-signed certificate
    return context


def test_outside_trusted_networks_needs_tls_and_auth(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A front MTA outside ``[lmtp] trusted_networks`` (here loopback, trusting none): MAIL is
    refused until STARTTLS and until AUTH as one of ``auth_accounts``; another account's right
    password fails as a wrong one does; failures are counted and rate-limited by ``[auth]`` as
    on the other listeners. The logged-in front MTA is no submitter: it may name any sender,
    and still cannot relay. The Received field says LMTPSA (RFC 3848 §2)."""
    caplog.set_level(logging.INFO, logger="pillarbox.lmtp")
    config = loopback_config(
        tmp_path / "data",
        only=("lmtp",),
        lmtp=cfg.LmtpSection(trusted_networks=(), auth_accounts=(FRONT,)),
        auth=cfg.AuthSection(free_failures=2, base_delay=0.05, lockout_failures=3),
    )
    with LiveServer(config) as server:
        server.add_domain("example.org")
        for address in (ALICE, BOB, FRONT):
            server.add_account(address, TEST_PASSWORD)
        with smtplib.LMTP("127.0.0.1", server.port("lmtp")) as client:
            client.ehlo("front.example")
            assert client.has_extn("starttls") and not client.has_extn("auth")
            assert client.mail("sender@outside.test") == (
                530,
                b"5.7.0 must issue a STARTTLS command first",
            )
            client.starttls(context=_client_context())
            client.ehlo("front.example")
            assert client.esmtp_features["auth"] == " SCRAM-SHA-256 PLAIN LOGIN"
            assert client.mail("sender@outside.test") == (530, b"5.7.0 authentication required")
            # The right password, but not an lmtp account.
            assert auth_plain(client, BOB, TEST_PASSWORD) == (535, INVALID)
            assert auth_plain(client, FRONT, TEST_PASSWORD)[0] == 235
            assert client.mail("forged@outside.test")[0] == 250
            assert client.rcpt("someone@elsewhere.example")[0] == 554  # still no relay
            assert client.rcpt(ALICE)[0] == 250
            assert client.data(message("over TLS"))[0] == 250
        with smtplib.LMTP("127.0.0.1", server.port("lmtp")) as client:
            client.ehlo("front.example")
            client.starttls(context=_client_context())
            client.ehlo("front.example")
            for _ in range(3):
                assert auth_plain(client, FRONT, "a wrong password") == (535, INVALID)
            # The third failure from this address locked it out: even the right password.
            assert auth_plain(client, FRONT, TEST_PASSWORD) == (
                454,
                b"4.7.0 temporary authentication failure, try again later",
            )
        (stored,) = inbox(server, ALICE)
        assert b"by mx.test (Pillarbox) with LMTPSA id " in stored
        assert server.call(server.store.list_queue()) == []
        assert server.server.context is not None
        sample = server.server.context.metrics.registry.get_sample_value
        failures = "pillarbox_auth_failures_total"
        assert sample(failures, {"protocol": "lmtp", "reason": "credentials"}) == 4
        assert sample(failures, {"protocol": "lmtp", "reason": "rate_limited"}) == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "pillarbox.lmtp"]
    assert "AUTH as an account not in lmtp.auth_accounts" in messages
    assert messages.count("AUTH failed") == 3 and "AUTH rate limited" in messages
    assert messages.count("protocol error") == 2  # the two 530s
