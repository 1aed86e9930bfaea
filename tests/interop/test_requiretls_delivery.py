"""REQUIRETLS (RFC 8689) in delivery, with the real pieces: our DNS server on loopback (the
zone ``signed.test`` with the AD bit, as a validating resolver's "secure" answers), two
receiving servers of ours with certificates from a test CA — one offering REQUIRETLS after
STARTTLS (the default), one with ``smtp.requiretls = false`` — and our queue runner and store.

A tagged message goes only to a host authenticated by DANE (or a DNSSEC-signed MX and a
certificate that chains and names it) that offers REQUIRETLS, with the parameter; a host that
does not offer it fails the message with 5.7.30, an unauthenticated one with 5.7.10, and the
report on it carries the header only and is tagged itself (§5)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import smtplib
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from pillarbox import config as cfg
from pillarbox.cli.main import cli
from pillarbox.dns.resolver import DnsResolver
from pillarbox.net.smtp_client import (
    SessionSettings,
    chain_verifying_context,
    opportunistic_context,
)
from pillarbox.queue.dane import tlsa_for_certificate
from pillarbox.queue.routing import Router
from pillarbox.queue.runner import QueueRunner, Relay, RunnerLimits
from pillarbox.queue.schedule import RetryPolicy
from pillarbox.smtp.client import SmtpClientSettings
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.types import INBOX, NewQueueRecipient, RecipientState
from pillarbox.testing.dnszone import ZoneRecord, serve_records
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, free_port, loopback_config
from pillarbox.testing.outbound import inbox
from pillarbox.testing.polling import wait_for
from pillarbox.testing.testca import CertAuthority, make_ca

REQUIRETLS_MX = "127.0.0.41"  # ours, REQUIRETLS offered under TLS
LACKING_MX = "127.0.0.42"  # ours, smtp.requiretls = false
RAW = b"From: alice@a.test\r\nTo: x@good.signed.test\r\nSubject: secret\r\n\r\nThe secret.\r\n"


@dataclass
class Receivers:
    offering: LiveServer
    lacking: LiveServer
    port: int
    ca: CertAuthority
    #: DER certificates they present.
    offering_certificate: bytes
    lacking_certificate: bytes


def _der(pem: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.read_text())


def _receiver(
    tmp: Path, address: str, port: int, cert: Path, key: Path, *, offer: bool
) -> LiveServer:
    config = loopback_config(
        tmp,
        only=["smtp", "submission", "lmtp"],
        address=address,
        ports={"smtp": port},
        tls=cfg.TlsSection(cert=str(cert), key=str(key)),
    )
    return LiveServer(
        dataclasses.replace(config, smtp=dataclasses.replace(config.smtp, requiretls=offer))
    )


@pytest.fixture(scope="module")
def receivers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receivers]:
    tmp = tmp_path_factory.mktemp("requiretls")
    ca = make_ca(tmp)
    port = free_port(REQUIRETLS_MX, LACKING_MX)
    cert_a, key_a = ca.issue("mx-rt.signed.test", "mx-pkix.signed.test", REQUIRETLS_MX)
    cert_b, key_b = ca.issue("mx-lacking.signed.test")
    offering = _receiver(tmp / "a", REQUIRETLS_MX, port, cert_a, key_a, offer=True)
    lacking = _receiver(tmp / "b", LACKING_MX, port, cert_b, key_b, offer=False)
    with offering, lacking:
        for domain in ("good.signed.test", "pkix.signed.test", "plain.test"):
            offering.add_domain(domain)
            offering.add_account(f"x@{domain}", TEST_PASSWORD)
        offering.add_account("bob@good.signed.test", TEST_PASSWORD)
        lacking.add_domain("lacking.signed.test")
        lacking.add_account("x@lacking.signed.test", TEST_PASSWORD)
        lacking.add_account("bob@lacking.signed.test", TEST_PASSWORD)
        yield Receivers(offering, lacking, port, ca, _der(cert_a), _der(cert_b))


def zone(receivers: Receivers) -> list[ZoneRecord]:
    def at(host: str) -> str:
        return f"_{receivers.port}._tcp.{host}"

    offering = str(tlsa_for_certificate(receivers.offering_certificate))
    lacking = str(tlsa_for_certificate(receivers.lacking_certificate))
    return [
        # DANE-authenticated MX hosts, one offering REQUIRETLS and one not.
        ZoneRecord("good.signed.test", "MX", "10 mx-rt.signed.test."),
        ZoneRecord("mx-rt.signed.test", "A", REQUIRETLS_MX),
        ZoneRecord(at("mx-rt.signed.test"), "TLSA", offering),
        ZoneRecord("lacking.signed.test", "MX", "10 mx-lacking.signed.test."),
        ZoneRecord("mx-lacking.signed.test", "A", LACKING_MX),
        ZoneRecord(at("mx-lacking.signed.test"), "TLSA", lacking),
        # A signed MX answer, no TLSA: the name is vouched for, the certificate must chain
        # to a trusted root and name the host (RFC 8689 §4.2.1 steps 2 and 4).
        ZoneRecord("pkix.signed.test", "MX", "10 mx-pkix.signed.test."),
        ZoneRecord("mx-pkix.signed.test", "A", REQUIRETLS_MX),
        # Unsigned, no MTA-STS: the same server, but nothing authenticates it.
        ZoneRecord("plain.test", "MX", "10 mx.plain.test."),
        ZoneRecord("mx.plain.test", "A", REQUIRETLS_MX),
        # Another name of the REQUIRETLS server, which its certificate does not carry.
        ZoneRecord("mx-alias.signed.test", "A", REQUIRETLS_MX),
    ]


@pytest.fixture
async def resolver(receivers: Receivers) -> AsyncIterator[DnsResolver]:
    async with serve_records(zone(receivers), secure=["signed.test"]) as resolver:
        yield resolver


def runner(
    store: SqliteStore,
    resolver: DnsResolver,
    receivers: Receivers,
    *,
    smarthost: str | None = None,
) -> QueueRunner:
    client = SmtpClientSettings(hostname="mx.a.test")
    session = SessionSettings(client=client, connect_timeout=5.0, tls=opportunistic_context())
    return QueueRunner(
        store=store,
        router=Router(store),
        resolver=resolver,
        policy=RetryPolicy(schedule=(60.0,), lifetime=3600.0),
        hostname="mx.a.test",
        wakeup=asyncio.Event(),
        remote_port=receivers.port,
        session=session,
        # A smart host with queue.smarthost_verify_tls off: opportunistic for other mail.
        relay=Relay(smarthost, receivers.port, session) if smarthost else None,
        dane=True,
        verified_tls=chain_verifying_context(receivers.ca.bundle),
        limits=RunnerLimits(per_domain=1),
    )


async def attempt(
    store: SqliteStore,
    queue: QueueRunner,
    recipient: str,
    *,
    sender: str = "alice@a.test",
    raw: bytes = RAW,
) -> int:
    """Queue a REQUIRETLS message and run one attempt; its queue id."""
    message = await store.enqueue(sender, raw, [NewQueueRecipient(recipient)], requiretls=True)
    await queue.claim()
    await queue.idle()
    return message.id


def unfolded(report: bytes) -> bytes:
    return report.replace(b"\r\n ", b" ")


def accepted(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    """The fields of every "accepted" line the receiving servers logged."""
    return [r.__dict__["fields"] for r in caplog.records if r.getMessage() == "accepted"]


async def test_a_dane_authenticated_mx_offering_requiretls_gets_the_parameter(
    store: SqliteStore,
    resolver: DnsResolver,
    receivers: Receivers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = runner(store, resolver, receivers)
    with caplog.at_level(logging.INFO, logger="pillarbox"):
        message_id = await attempt(store, queue, "x@good.signed.test")
    assert await store.get_queued(message_id) is None  # delivered
    [stored] = await asyncio.to_thread(
        receivers.offering.mailbox_messages, "x@good.signed.test", INBOX
    )
    assert stored.endswith(RAW)
    [fields] = accepted(caplog)
    assert (fields["sender"], fields["requiretls"]) == ("alice@a.test", True)


async def test_a_signed_mx_without_tlsa_needs_a_verified_certificate_naming_it(
    store: SqliteStore,
    resolver: DnsResolver,
    receivers: Receivers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = runner(store, resolver, receivers)
    with caplog.at_level(logging.INFO, logger="pillarbox"):
        message_id = await attempt(store, queue, "x@pkix.signed.test")
    assert await store.get_queued(message_id) is None
    assert await asyncio.to_thread(receivers.offering.mailbox_messages, "x@pkix.signed.test", INBOX)
    assert [f["requiretls"] for f in accepted(caplog)] == [True]
    # Without the CA among the trusted roots the certificate does not verify: the host is
    # not used, and the attempt is retried (a certificate can be fixed).
    untrusting = QueueRunner(
        store=store,
        router=Router(store),
        resolver=resolver,
        policy=RetryPolicy(schedule=(60.0,), lifetime=3600.0),
        hostname="mx.a.test",
        wakeup=asyncio.Event(),
        remote_port=receivers.port,
        session=SessionSettings(
            client=SmtpClientSettings(hostname="mx.a.test"),
            connect_timeout=5.0,
            tls=opportunistic_context(),
        ),
        dane=True,
        verified_tls=chain_verifying_context(),  # the system's roots only
    )
    message_id = await attempt(store, untrusting, "x@pkix.signed.test")
    queued = await store.get_queued(message_id)
    assert queued is not None
    [left] = queued.recipients
    assert left.state is RecipientState.DEFERRED
    assert left.last_reply is not None
    assert left.last_reply.startswith(
        "mx-pkix.signed.test: 451 4.7.5 REQUIRETLS: TLS handshake failed: "
    )


async def test_an_mx_not_offering_requiretls_fails_with_5_7_30_and_a_headers_only_report(
    store: SqliteStore, resolver: DnsResolver, receivers: Receivers
) -> None:
    queue = runner(store, resolver, receivers)
    raw = RAW.replace(b"x@good", b"x@lacking")
    message_id = await attempt(store, queue, "x@lacking.signed.test", raw=raw)
    assert await store.get_queued(message_id) is None  # failed: final
    assert (
        await asyncio.to_thread(receivers.lacking.mailbox_messages, "x@lacking.signed.test", INBOX)
        == []
    )
    [report] = await inbox(store, "alice@a.test")
    assert b"Action: failed" in report
    assert b"Status: 5.7.30" in report
    assert (
        b"Diagnostic-Code: smtp; 550 5.7.30 REQUIRETLS support required:"
        b" the host does not offer it" in unfolded(report)
    )
    # RFC 8689 §5: as if RET=HDRS: the header comes back, the content does not.
    assert b"text/rfc822-headers" in report
    assert b"Subject: secret" in report
    assert b"The secret." not in report


async def test_an_unauthenticated_mx_gets_nothing_even_with_tls_required_no(
    store: SqliteStore, resolver: DnsResolver, receivers: Receivers
) -> None:
    """plain.test's MX is our REQUIRETLS server, but nothing vouches for it (no DNSSEC, no
    MTA-STS): 5.7.10. ``TLS-Required: No`` is ignored beside the parameter (§4.1)."""
    queue = runner(store, resolver, receivers)
    raw = b"TLS-Required: No\r\n" + RAW
    message_id = await attempt(store, queue, "x@plain.test", raw=raw)
    assert await store.get_queued(message_id) is None
    assert await asyncio.to_thread(receivers.offering.mailbox_messages, "x@plain.test", INBOX) == []
    [report] = await inbox(store, "alice@a.test")
    assert b"Status: 5.7.10" in report
    assert (
        b"Diagnostic-Code: smtp; 550 5.7.10 REQUIRETLS: the host is not authenticated by"
        b" DNSSEC, DANE or MTA-STS: the MX records of plain.test are not"
        b" DNSSEC-signed and no MTA-STS policy in enforce mode lists the host" in unfolded(report)
    )


async def test_the_report_is_tagged_and_sent_with_requiretls_where_offered(
    store: SqliteStore,
    resolver: DnsResolver,
    receivers: Receivers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """§5: a report on a REQUIRETLS message is tagged: its null reverse-path keeps it out of
    §4.2.1, and the parameter goes to a host offering it."""
    queue = runner(store, resolver, receivers)
    await attempt(store, queue, "x@plain.test", sender="bob@good.signed.test")
    [bounce] = await store.list_queue()
    assert (bounce.sender, bounce.requiretls) == ("", True)
    with caplog.at_level(logging.INFO, logger="pillarbox"):
        await queue.claim()
        await queue.idle()
    assert await store.list_queue() == []
    [report] = await asyncio.to_thread(
        receivers.offering.mailbox_messages, "bob@good.signed.test", INBOX
    )
    assert b"Status: 5.7.10" in report and b"The secret." not in report
    [fields] = accepted(caplog)
    assert (fields["sender"], fields["requiretls"]) == ("", True)


async def test_the_report_still_goes_to_a_host_without_requiretls(
    store: SqliteStore, resolver: DnsResolver, receivers: Receivers
) -> None:
    """§5: "the REQUIRETLS parameter SHOULD NOT cause a bounce message to be discarded even
    if the next-hop relay does not advertise REQUIRETLS"."""
    queue = runner(store, resolver, receivers)
    await attempt(store, queue, "x@lacking.signed.test", sender="bob@lacking.signed.test")
    [bounce] = await store.list_queue()
    assert (bounce.sender, bounce.requiretls) == ("", True)
    await queue.claim()
    await queue.idle()
    assert await store.list_queue() == []
    [report] = await asyncio.to_thread(
        receivers.lacking.mailbox_messages, "bob@lacking.signed.test", INBOX
    )
    assert b"Status: 5.7.30" in report and b"The secret." not in report


async def test_a_smart_host_must_offer_requiretls_over_verified_tls(
    store: SqliteStore,
    resolver: DnsResolver,
    receivers: Receivers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through a smart host its certificate must chain and name it (whatever
    smarthost_verify_tls says), and it must offer REQUIRETLS; the recipient domain's DNS
    does not matter (plain.test has nothing that would authenticate its MX)."""
    queue = runner(store, resolver, receivers, smarthost="mx-rt.signed.test")
    with caplog.at_level(logging.INFO, logger="pillarbox"):
        message_id = await attempt(store, queue, "x@plain.test")
    assert await store.get_queued(message_id) is None
    assert await asyncio.to_thread(receivers.offering.mailbox_messages, "x@plain.test", INBOX)
    assert [f["requiretls"] for f in accepted(caplog)] == [True]
    lacking = runner(store, resolver, receivers, smarthost="mx-lacking.signed.test")
    await attempt(store, lacking, "x@lacking.signed.test")
    [report] = await inbox(store, "alice@a.test")
    assert b"550 5.7.30 REQUIRETLS support required: the host does not offer it" in unfolded(report)
    # The same smart host by a name its certificate does not carry: not used, retried.
    misnamed = runner(store, resolver, receivers, smarthost="mx-alias.signed.test")
    message_id = await attempt(store, misnamed, "x@good.signed.test")
    queued = await store.get_queued(message_id)
    assert queued is not None
    [left] = queued.recipients
    assert left.state is RecipientState.DEFERRED
    assert left.last_reply is not None
    assert "REQUIRETLS: the certificate" in left.last_reply


def _submit(live: LiveServer, address: str) -> tuple[list[str], list[str], tuple[int, bytes]]:
    """Submission on 587: the EHLO keywords before and after STARTTLS, and the reply to MAIL
    with REQUIRETLS once authenticated."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(address, live.port("submission"), timeout=30) as client:
        client.ehlo("client.test")
        before = sorted(client.esmtp_features)
        refused = client.docmd("MAIL FROM:<bob@good.signed.test> REQUIRETLS")
        assert refused[0] == 530, refused
        client.starttls(context=context)
        client.ehlo("client.test")
        after = sorted(client.esmtp_features)
        client.login("bob@good.signed.test", TEST_PASSWORD)
        reply = client.docmd("MAIL FROM:<bob@good.signed.test> REQUIRETLS")
        client.docmd("RCPT TO:<someone@far.test>")
        client.data(b"Subject: submitted\r\n\r\nSecret.\r\n")
    return before, after, reply


def test_submission_takes_requiretls_under_tls_and_queues_it_tagged(
    receivers: Receivers,
) -> None:
    live = receivers.offering
    before, after, reply = _submit(live, REQUIRETLS_MX)
    assert "requiretls" not in before and "requiretls" in after
    assert reply[0] == 250

    async def tagged() -> bool:
        queued = await live.store.list_queue()
        return any(m.requiretls and m.recipients[0].address == "someone@far.test" for m in queued)

    wait_for(lambda: live.call(tagged()), "the submitted message queued with its tag")


def test_pillarbox_mail_send_require_tls(receivers: Receivers, tmp_path: Path) -> None:
    """``pillarbox mail send --require-tls`` on submission (STARTTLS) gives the parameter."""
    live = receivers.offering
    env = {"PILLARBOX_MAIL_HOME": str(tmp_path)}
    added = CliRunner().invoke(
        cli,
        ["mail", "account", "add", "bob", "--address", "bob@good.signed.test", "--smtp-host",
         REQUIRETLS_MX, "--smtp-port", str(live.port("submission")), "--tls", "starttls",
         "--password-stdin"],
        input=TEST_PASSWORD + "\n",
        env=env,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    sent = CliRunner().invoke(
        cli,
        ["mail", "--cafile", receivers.ca.bundle, "send", "--require-tls", "--to",
         "cli@far.test", "--subject", "by the CLI"],
        input="Secret.\n",
        env=env,
    )  # fmt: skip
    assert sent.exit_code == 0, sent.output

    async def tagged() -> bool:
        return any(
            m.requiretls and m.recipients[0].address == "cli@far.test"
            for m in await live.store.list_queue()
        )

    wait_for(lambda: live.call(tagged()), "the CLI's message queued with its tag")


def _relay_in(address: str, port: int, recipients: list[str]) -> None:
    """A message to ``recipients`` (its To) given to the MX over STARTTLS with REQUIRETLS."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(address, port, timeout=30) as client:
        client.starttls(context=context)
        client.ehlo("relay.test")
        assert client.docmd("MAIL FROM:<carol@elsewhere.test> REQUIRETLS")[0] == 250
        for recipient in recipients:
            assert client.docmd(f"RCPT TO:<{recipient}>")[0] == 250
        to = ", ".join(recipients).encode()
        client.data(b"To: " + to + b"\r\nSubject: onwards\r\n\r\nSecret.\r\n")


def test_aliased_forwarded_and_redirected_copies_keep_the_tag(receivers: Receivers) -> None:
    """§4.1: "all instances of the message MUST be tagged in the same manner"; §6 for a
    Sieve redirect."""
    live = receivers.offering
    live.call(live.store.add_alias("list@good.signed.test", ["one@far.test"]))
    forwarding = live.add_account("fwd@good.signed.test", TEST_PASSWORD)
    settings = live.call(live.store.get_settings(forwarding.id))
    live.call(
        live.store.set_settings(
            forwarding.id, dataclasses.replace(settings, forward_to=("two@far.test",))
        )
    )
    live.add_account("sieve@good.signed.test", TEST_PASSWORD)
    live.activate_sieve("sieve@good.signed.test", 'redirect "three@far.test";')
    wanted = {"one@far.test", "two@far.test", "three@far.test"}
    _relay_in(
        REQUIRETLS_MX,
        receivers.port,
        ["list@good.signed.test", "fwd@good.signed.test", "sieve@good.signed.test"],
    )

    async def tags() -> dict[str, bool]:
        return {
            r.address: m.requiretls
            for m in await live.store.list_queue()
            for r in m.recipients
            if r.address in wanted
        }

    found = wait_for(lambda: len(live.call(tags())) == 3 and live.call(tags()), "the copies")
    assert found == dict.fromkeys(wanted, True)


def test_replies_notifications_and_refusals_of_a_requiretls_message_are_tagged(
    receivers: Receivers,
) -> None:
    """RFC 8689 §6: a vacation reply (the account's own and a Sieve script's) and a Sieve
    notification are reoriginated from the message, so they keep its REQUIRETLS tag; §5: a
    Sieve reject's report is a non-delivery report on it, tagged too."""
    live = receivers.offering
    away = live.add_account("away@good.signed.test", TEST_PASSWORD)
    settings = live.call(live.store.get_settings(away.id))
    live.call(
        live.store.set_settings(
            away.id, dataclasses.replace(settings, vacation_enabled=True, vacation_body="Out.")
        )
    )
    scripts = {
        "vac@good.signed.test": 'require "vacation"; vacation "Away.";',
        "notif@good.signed.test": 'require "enotify"; notify "mailto:watcher@far.test";',
        "rej@good.signed.test": 'require "reject"; reject "Not wanted.";',
    }
    for address, script in scripts.items():
        live.add_account(address, TEST_PASSWORD)
        live.activate_sieve(address, script)
    wanted = {"carol@elsewhere.test", "watcher@far.test"}

    async def tags() -> list[tuple[str, bool]]:
        return sorted(
            (r.address, m.requiretls)
            for m in await live.store.list_queue()
            for r in m.recipients
            if r.address in wanted
        )

    _relay_in(REQUIRETLS_MX, receivers.port, ["away@good.signed.test", *scripts])
    found = wait_for(lambda: len(t := live.call(tags())) == 4 and t, "the four answers")
    assert found == [
        ("carol@elsewhere.test", True),
        ("carol@elsewhere.test", True),
        ("carol@elsewhere.test", True),
        ("watcher@far.test", True),
    ]


def test_lmtp_takes_requiretls_under_tls_only_and_its_copies_keep_the_tag(
    receivers: Receivers,
) -> None:
    """A front MTA passing REQUIRETLS on over LMTP (RFC 8689 §4: it is relayed with the
    message): refused in the clear (§2), taken after STARTTLS, where the LHLO reply offers it,
    and then the forward and the vacation reply of the stored copies are tagged as at the MX."""
    live = receivers.offering
    forwarding = live.add_account("lmtpfwd@good.signed.test", TEST_PASSWORD)
    settings = live.call(live.store.get_settings(forwarding.id))
    live.call(
        live.store.set_settings(
            forwarding.id, dataclasses.replace(settings, forward_to=("lmtp-on@far.test",))
        )
    )
    live.add_account("lmtpvac@good.signed.test", TEST_PASSWORD)
    live.activate_sieve("lmtpvac@good.signed.test", 'require "vacation"; vacation "Away.";')
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.LMTP(REQUIRETLS_MX, live.port("lmtp"), timeout=30) as client:
        client.ehlo("front.test")  # smtplib.LMTP sends LHLO
        assert "requiretls" not in client.esmtp_features
        refused = client.docmd("MAIL FROM:<dora@elsewhere.test> REQUIRETLS")
        assert refused == (530, b"5.7.10 REQUIRETLS needs TLS: issue STARTTLS first")
        client.starttls(context=context)
        client.ehlo("front.test")
        assert "requiretls" in client.esmtp_features
        assert client.docmd("MAIL FROM:<dora@elsewhere.test> REQUIRETLS")[0] == 250
        for recipient in ("lmtpfwd@good.signed.test", "lmtpvac@good.signed.test"):
            assert client.docmd(f"RCPT TO:<{recipient}>")[0] == 250
        client.putcmd("DATA")
        assert client.getreply()[0] == 354
        client.send(b"To: lmtpvac@good.signed.test\r\nSubject: on\r\n\r\nSecret.\r\n.\r\n")
        assert [client.getreply()[0] for _ in range(2)] == [250, 250]
    wanted = {"lmtp-on@far.test", "dora@elsewhere.test"}

    async def tags() -> dict[str, bool]:
        return {
            r.address: m.requiretls
            for m in await live.store.list_queue()
            for r in m.recipients
            if r.address in wanted
        }

    found = wait_for(lambda: len(t := live.call(tags())) == 2 and t, "the forward and the reply")
    assert found == dict.fromkeys(wanted, True)
