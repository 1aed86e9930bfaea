"""Per-destination TLS policy (``[queue.tls_policy]``, Postfix's smtp_tls_policy_maps) in
delivery, with the real pieces: our DNS server on loopback (the zone ``signed.test`` answered
with the AD bit, as a validating resolver would), receiving SMTP servers (aiosmtpd, the peer)
with and without STARTTLS and certificates from a trusted and an untrusted test CA, our queue
runner and store. For each level: a delivery it allows and one it defers, with what the
peers saw (transactions, TLS handshakes by their SNI name)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.dns.resolver import DnsResolver
from pillarbox.net.smtp_client import (
    SessionSettings,
    chain_verifying_context,
    opportunistic_context,
    verifying_context,
)
from pillarbox.queue.dane import tlsa_for_certificate
from pillarbox.queue.routing import Router
from pillarbox.queue.runner import QueueRunner, Relay, RunnerLimits
from pillarbox.queue.schedule import RetryPolicy
from pillarbox.queue.tlspolicy import PolicyTable
from pillarbox.smtp.client import SmtpClientSettings
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.types import NewQueueRecipient, QueuedRecipient, RecipientState
from pillarbox.testing.capture import Recorder, capture_peer
from pillarbox.testing.dnszone import ZoneRecord, serve_records, serve_test_zones
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, free_port, loopback_config
from pillarbox.testing.outbound import deliver_once, inbox, rcpts, tls_peer_context
from pillarbox.testing.polling import wait_for
from pillarbox.testing.testca import make_ca

TRUSTED_MX = "127.0.0.41"  # STARTTLS, a certificate for mx.tls.test from the trusted CA
NO_TLS_MX = "127.0.0.42"  # no STARTTLS
UNTRUSTED_MX = "127.0.0.43"  # STARTTLS, a certificate for mx.untrusted.test from another CA
RAW = b"From: alice@a.test\r\nTo: x@tls.test\r\nSubject: policy\r\n\r\nHello.\r\n"


@dataclass
class Peer:
    recorder: Recorder
    #: SNI names of the TLS handshakes it saw: empty when no TLS was started.
    sni: list[str]


@dataclass
class Peers:
    trusted: Peer
    no_tls: Peer
    untrusted: Peer
    port: int
    ca_bundle: str
    trusted_certificate: bytes


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[Peers]:
    ca = make_ca(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    stranger = make_ca(other, "Nobody trusts this CA")
    port = free_port(TRUSTED_MX, NO_TLS_MX, UNTRUSTED_MX)
    sni_trusted: list[str] = []
    sni_untrusted: list[str] = []
    trusted_context, trusted_der = tls_peer_context(ca, "mx.tls.test", sni_trusted)
    untrusted_context, _ = tls_peer_context(stranger, "mx.untrusted.test", sni_untrusted)
    with (
        capture_peer(TRUSTED_MX, port, tls=trusted_context) as trusted,
        capture_peer(NO_TLS_MX, port) as plain,
        capture_peer(UNTRUSTED_MX, port, tls=untrusted_context) as untrusted,
    ):
        yield Peers(
            Peer(trusted, sni_trusted),
            Peer(plain, []),
            Peer(untrusted, sni_untrusted),
            port,
            ca.bundle,
            trusted_der,
        )


def zone(peers: Peers) -> list[ZoneRecord]:
    tlsa = tlsa_for_certificate(peers.trusted_certificate)
    assert tlsa is not None
    return [
        # Unsigned domains.
        ZoneRecord("tls.test", "MX", "10 mx.tls.test."),
        ZoneRecord("mx.tls.test", "A", TRUSTED_MX),
        ZoneRecord("plain.test", "MX", "10 mx.plain.test."),
        ZoneRecord("mx.plain.test", "A", NO_TLS_MX),
        ZoneRecord("untrusted.test", "MX", "10 mx.untrusted.test."),
        ZoneRecord("mx.untrusted.test", "A", UNTRUSTED_MX),
        # Hosted by mx.tls.test: its certificate names the MX host, not this domain.
        ZoneRecord("hosted.test", "MX", "10 mx.tls.test."),
        # A subdomain without TLS, and its parent.
        ZoneRecord("a.sub.test", "MX", "10 mx.plain.test."),
        ZoneRecord("sub.test", "MX", "10 mx.plain.test."),
        # Signed: with TLSA (for the trusted MX's key), without, and with a wrong one.
        ZoneRecord("good.signed.test", "MX", "10 mx-good.signed.test."),
        ZoneRecord("mx-good.signed.test", "A", TRUSTED_MX),
        ZoneRecord(f"_{peers.port}._tcp.mx-good.signed.test", "TLSA", str(tlsa)),
        ZoneRecord("none.signed.test", "MX", "10 mx-none.signed.test."),
        ZoneRecord("mx-none.signed.test", "A", TRUSTED_MX),
        ZoneRecord("wrong.signed.test", "MX", "10 mx-wrong.signed.test."),
        ZoneRecord("mx-wrong.signed.test", "A", UNTRUSTED_MX),
        ZoneRecord(f"_{peers.port}._tcp.mx-wrong.signed.test", "TLSA", str(tlsa)),
    ]


@pytest.fixture
async def resolver(peers: Peers) -> AsyncIterator[DnsResolver]:
    async with serve_records(zone(peers), secure=["signed.test"]) as resolver:
        yield resolver


def runner(
    store: SqliteStore,
    resolver: DnsResolver,
    peers: Peers,
    table: dict[str, str],
    *,
    dane: bool = True,
    relay: str = "",
    tls_reports: bool = False,
    retry: RetryPolicy | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> QueueRunner:
    client = SmtpClientSettings(hostname="mx.a.test")
    smarthost = None
    if relay:  # as ``queue.smarthost`` with ``smarthost_verify_tls`` (the default)
        verified = SessionSettings(
            client=client, connect_timeout=2.0, tls=verifying_context(peers.ca_bundle)
        )
        smarthost = Relay(relay, peers.port, verified)
    return QueueRunner(
        store=store,
        router=Router(store),
        resolver=resolver,
        policy=retry or RetryPolicy(schedule=(60.0,), lifetime=3600.0),
        hostname="mx.a.test",
        wakeup=asyncio.Event(),
        remote_port=peers.port,
        session=SessionSettings(client=client, connect_timeout=2.0, tls=opportunistic_context()),
        relay=smarthost,
        dane=dane,
        tls_policy=PolicyTable.parse(table),
        verified_tls=chain_verifying_context(peers.ca_bundle),
        tls_reports=tls_reports,
        limits=RunnerLimits(per_domain=1),
        clock=clock,
    )


async def attempt(
    store: SqliteStore,
    resolver: DnsResolver,
    peers: Peers,
    table: dict[str, str],
    recipient: str,
    **options: bool | str,
) -> QueuedRecipient | None:
    queue = runner(store, resolver, peers, table, **options)  # type: ignore[arg-type]
    return await deliver_once(store, queue, recipient, RAW)


def deferred(left: QueuedRecipient | None) -> str:
    """The reply a deferred recipient keeps (what the queue listing and a delay DSN show)."""
    assert left is not None and left.state is RecipientState.DEFERRED
    assert left.last_reply is not None
    return left.last_reply


# -- none -----------------------------------------------------------------------------------------


async def test_none_sends_in_clear_even_when_starttls_is_offered(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    assert await attempt(store, resolver, peers, {"tls.test": "none"}, "x@tls.test") is None
    assert rcpts(peers.trusted.recorder) == ["x@tls.test"]
    assert peers.trusted.sni == []  # no handshake


async def test_none_overrides_dane(store: SqliteStore, resolver: DnsResolver, peers: Peers) -> None:
    """Without the entry the wrong TLSA record defers this domain (RFC 7672 §3)."""
    table = {"wrong.signed.test": "none"}
    assert await attempt(store, resolver, peers, table, "x@wrong.signed.test") is None
    assert rcpts(peers.untrusted.recorder) == ["x@wrong.signed.test"]
    assert peers.untrusted.sni == []


# -- may ------------------------------------------------------------------------------------------


async def test_may_takes_any_certificate_and_plaintext(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    table = {"untrusted.test": "may", "plain.test": "may"}
    assert await attempt(store, resolver, peers, table, "x@untrusted.test") is None
    assert await attempt(store, resolver, peers, table, "x@plain.test") is None
    assert rcpts(peers.untrusted.recorder) == ["x@untrusted.test"]
    assert peers.untrusted.sni == ["mx.untrusted.test"]
    assert rcpts(peers.no_tls.recorder) == ["x@plain.test"]


async def test_may_overrides_dane_and_without_it_dane_defers(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    left = await attempt(store, resolver, peers, {}, "x@wrong.signed.test")
    assert "4.7.5 DANE" in deferred(left)
    table = {"wrong.signed.test": "may"}
    assert await attempt(store, resolver, peers, table, "y@wrong.signed.test") is None
    assert rcpts(peers.untrusted.recorder) == ["y@wrong.signed.test"]


# -- encrypt --------------------------------------------------------------------------------------


async def test_encrypt_takes_any_certificate(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    table = {"untrusted.test": "encrypt"}
    assert await attempt(store, resolver, peers, table, "x@untrusted.test") is None
    assert rcpts(peers.untrusted.recorder) == ["x@untrusted.test"]
    assert peers.untrusted.sni == ["mx.untrusted.test"]


async def test_encrypt_without_starttls_defers_and_sends_nothing(
    store: SqliteStore, resolver: DnsResolver, peers: Peers, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pillarbox"):
        left = await attempt(store, resolver, peers, {"plain.test": "encrypt"}, "x@plain.test")
    assert deferred(left) == (
        "mx.plain.test: 451 4.7.10 TLS policy encrypt (plain.test):"
        " the host does not offer STARTTLS"
    )
    assert peers.no_tls.recorder.messages == []
    [record] = [r for r in caplog.records if r.getMessage() == "TLS policy: delivery refused"]
    fields = record.__dict__["fields"]
    assert (fields["domain"], fields["host"], fields["level"]) == (
        "plain.test",
        "mx.plain.test",
        "encrypt",
    )


async def test_none_keeps_smart_host_credentials_off_the_wire(
    store: SqliteStore, resolver: DnsResolver, peers: Peers, our_mx: LiveServer
) -> None:
    """AUTH only over TLS, whatever the level: ``none`` for a smart host that wants
    credentials defers the mail (4.7.10) rather than send the password in clear."""
    port = our_mx.port("submission")
    session = SessionSettings(
        client=SmtpClientSettings(hostname="mx.a.test"),
        connect_timeout=2.0,
        tls=opportunistic_context(),
        require_tls=True,
        credentials=("bob@far.test", TEST_PASSWORD),
    )
    queue = QueueRunner(
        store=store,
        router=Router(store),
        resolver=resolver,
        policy=RetryPolicy(schedule=(60.0,), lifetime=3600.0),
        hostname="mx.a.test",
        wakeup=asyncio.Event(),
        session=session,
        relay=Relay("127.0.0.1", port, session),
        tls_policy=PolicyTable.parse({"[127.0.0.1]": "none"}),
    )
    left = await deliver_once(store, queue, "x@tls.test", RAW)
    assert deferred(left) == "127.0.0.1: 451 4.7.10 credentials are only sent over TLS"


async def test_the_delay_report_says_why(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    """The sender's delay DSN (RFC 3464) carries the refusal as its Diagnostic-Code."""
    later = datetime.now(UTC) + timedelta(hours=5)  # past the delay warning's 4 hours
    retry = RetryPolicy(schedule=(60.0,), lifetime=86400.0, delay_warning=4 * 3600.0)
    queue = runner(
        store, resolver, peers, {"plain.test": "encrypt"}, retry=retry, clock=lambda: later
    )
    assert await deliver_once(store, queue, "x@plain.test", RAW) is not None
    [report] = await inbox(store, "alice@a.test")
    assert b"Action: delayed" in report
    assert b"Status: 4.7.10" in report
    assert b"Diagnostic-Code: smtp; 451 4.7.10 TLS policy encrypt (plain.test)" in report


async def test_a_dot_key_covers_subdomains_not_the_domain(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    table = {".sub.test": "encrypt"}
    left = await attempt(store, resolver, peers, table, "x@a.sub.test")
    assert "451 4.7.10 TLS policy encrypt (.sub.test)" in deferred(left)
    assert await attempt(store, resolver, peers, table, "x@sub.test") is None
    assert rcpts(peers.no_tls.recorder) == ["x@sub.test"]


# -- dane, dane-only ------------------------------------------------------------------------------


async def test_dane_entry_authenticates_even_with_dane_discovery_off(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    table = {"good.signed.test": "dane", "wrong.signed.test": "dane"}
    queue = runner(store, resolver, peers, table, dane=False)
    assert await deliver_once(store, queue, "x@good.signed.test", RAW) is None
    assert rcpts(peers.trusted.recorder) == ["x@good.signed.test"]
    assert peers.trusted.sni == ["mx-good.signed.test"]  # RFC 7672 §8.1: the TLSA base domain
    left = await deliver_once(store, queue, "x@wrong.signed.test", RAW)
    assert "451 4.7.5 DANE (TLSA of mx-wrong.signed.test, authenticate)" in deferred(left)
    assert peers.untrusted.recorder.messages == []


async def test_dane_without_tlsa_is_opportunistic(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    assert await attempt(store, resolver, peers, {"plain.test": "dane"}, "x@plain.test") is None
    assert rcpts(peers.no_tls.recorder) == ["x@plain.test"]


async def test_dane_only_delivers_to_an_authenticated_host(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    table = {"good.signed.test": "dane-only"}
    assert await attempt(store, resolver, peers, table, "x@good.signed.test") is None
    assert rcpts(peers.trusted.recorder) == ["x@good.signed.test"]
    assert peers.trusted.sni == ["mx-good.signed.test"]


async def test_dane_only_defers_without_usable_secure_tlsa(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    """RFC 7672 §6: no secure TLSA records, or an unsigned MX RRset: no delivery at all, not
    even a connection (the trusted MX would have taken it over TLS)."""
    table = {"none.signed.test": "dane-only", "tls.test": "dane-only"}
    left = await attempt(store, resolver, peers, table, "x@none.signed.test")
    assert deferred(left) == (
        "mx-none.signed.test: 451 4.7.5 TLS policy dane-only (none.signed.test):"
        " no secure TLSA records for the host"
    )
    left = await attempt(store, resolver, peers, table, "x@tls.test")
    assert deferred(left) == (
        "mx.tls.test: 451 4.7.5 TLS policy dane-only (tls.test):"
        " the MX records of tls.test are not DNSSEC-signed"
    )
    assert peers.trusted.recorder.messages == [] and peers.trusted.sni == []


async def test_dane_levels_without_a_trusted_resolver(store: SqliteStore, peers: Peers) -> None:
    """No trusted AD bit (``dns.trust_ad``): ``dane`` is ``may`` (the wrong TLSA record is
    not looked at), ``dane-only`` defers even a host that DANE would authenticate."""
    async with serve_test_zones(zone(peers), secure=["signed.test"]) as server:
        untrusted = DnsResolver(nameserver=f"127.0.0.1:{server.port}", trust_ad="never")
        table = {"good.signed.test": "dane-only", "wrong.signed.test": "dane"}
        left = await attempt(store, untrusted, peers, table, "x@good.signed.test")
        assert deferred(left) == (
            "mx-good.signed.test: 451 4.7.5 TLS policy dane-only (good.signed.test):"
            " the resolver is not trusted to validate DNSSEC (dns.trust_ad)"
        )
        assert peers.trusted.recorder.messages == []
        assert await attempt(store, untrusted, peers, table, "x@wrong.signed.test") is None
        assert rcpts(peers.untrusted.recorder) == ["x@wrong.signed.test"]


# -- verify, secure -------------------------------------------------------------------------------


async def test_verify_accepts_a_trusted_certificate_naming_the_mx(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    """``verify`` trusts the MX host name from DNS: hosted.test's MX is mx.tls.test."""
    table = {"hosted.test": "verify"}
    assert await attempt(store, resolver, peers, table, "x@hosted.test") is None
    assert rcpts(peers.trusted.recorder) == ["x@hosted.test"]
    assert peers.trusted.sni == ["mx.tls.test"]


async def test_verify_defers_an_untrusted_certificate(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    left = await attempt(store, resolver, peers, {"untrusted.test": "verify"}, "x@untrusted.test")
    text = deferred(left)
    assert text.startswith("mx.untrusted.test: 451 4.7.5 TLS policy verify (untrusted.test):")
    assert "certificate verify failed" in text
    assert peers.untrusted.recorder.messages == []


async def test_verify_defers_without_starttls(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    left = await attempt(store, resolver, peers, {"plain.test": "verify"}, "x@plain.test")
    assert "451 4.7.10 TLS policy verify (plain.test)" in deferred(left)
    assert peers.no_tls.recorder.messages == []


async def test_secure_accepts_a_certificate_for_a_subdomain_of_the_nexthop(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    assert await attempt(store, resolver, peers, {"tls.test": "secure"}, "x@tls.test") is None
    assert rcpts(peers.trusted.recorder) == ["x@tls.test"]


async def test_secure_does_not_trust_the_mx_name(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    """Postfix's ``secure``: the MX lookup is not trusted, so mx.tls.test's certificate is not
    one for hosted.test, until ``match=`` names it."""
    left = await attempt(store, resolver, peers, {"hosted.test": "secure"}, "x@hosted.test")
    assert deferred(left) == (
        "mx.tls.test: 451 4.7.5 TLS policy secure (hosted.test): the certificate"
        " names none of hosted.test, .hosted.test"
    )
    assert peers.trusted.recorder.messages == []
    table = {"hosted.test": "secure match=.tls.test"}
    assert await attempt(store, resolver, peers, table, "y@hosted.test") is None
    assert rcpts(peers.trusted.recorder) == ["y@hosted.test"]


# -- precedence, smart host, reports --------------------------------------------------------------


async def test_tls_required_no_lowers_a_mandatory_level(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    """RFC 8689 §4.2.2: the sender asked for delivery even without TLS."""
    queue = runner(store, resolver, peers, {"plain.test": "encrypt"})
    left = await deliver_once(store, queue, "x@plain.test", b"TLS-Required: No\r\n" + RAW)
    assert left is None
    assert rcpts(peers.no_tls.recorder) == ["x@plain.test"]


async def test_a_smart_host_gets_its_own_entry_not_the_recipients(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    """Through a smart host the policy is the nexthop's (Postfix): here the untrusted relay
    fails ``smarthost_verify_tls`` until its ``[host]`` entry says ``encrypt``; the recipient
    domain's own entry is not looked at."""
    left = await attempt(store, resolver, peers, {}, "x@tls.test", relay="mx.untrusted.test")
    assert "4.7.5" in deferred(left)
    table = {"[mx.untrusted.test]": "encrypt", "tls.test": "none"}
    assert (
        await attempt(store, resolver, peers, table, "y@tls.test", relay="mx.untrusted.test")
        is None
    )
    assert rcpts(peers.untrusted.recorder) == ["y@tls.test"]
    assert peers.untrusted.sni[-1] == "mx.untrusted.test"  # over TLS, despite "tls.test = none"


async def test_tls_reports_keep_only_what_the_domain_published(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    """RFC 8460: a report tells a domain how its own policies fared. A failure to meet our
    ``encrypt`` is not one of them; DANE under ``dane-only`` is."""
    table = {"plain.test": "encrypt", "good.signed.test": "dane-only"}
    queue = runner(store, resolver, peers, table, tls_reports=True)
    assert await deliver_once(store, queue, "x@plain.test", RAW) is not None
    assert await deliver_once(store, queue, "x@good.signed.test", RAW) is None
    results = await store.tls_results(datetime(2100, 1, 1, tzinfo=UTC))
    seen = {(r.policy_domain, r.policy_type, r.result_type) for r in results}
    assert seen == {("good.signed.test", "tlsa", "")}


# -- from the config file, to our own MX ----------------------------------------------------------


@pytest.fixture
def our_mx(tmp_path: Path) -> Iterator[LiveServer]:
    """Our own server as the receiving MX: STARTTLS with its self-signed certificate."""
    with LiveServer(loopback_config(tmp_path / "mx", only=["smtp", "submission"])) as live:
        live.add_domain("far.test")
        live.add_account("bob@far.test", TEST_PASSWORD)
        yield live


def sender(tmp_path: Path, relay_port: int, table: dict[str, str]) -> LiveServer:
    """A server relaying through ``our_mx`` as its smart host (certificate verified unless the
    table says otherwise), with ``table`` as its ``[queue.tls_policy]``, validated as a file's
    would be."""
    queue = cfg.from_mapping(
        {
            "queue": {
                "smarthost": f"127.0.0.1:{relay_port}",
                "retry_schedule": [3600.0],
                "poll_interval": 0.5,
                "tls_policy": table,
            }
        }
    ).queue
    base = loopback_config(tmp_path / "out", only=["submission"])
    server = dataclasses.replace(base.server, hostname="out.test")
    return LiveServer(dataclasses.replace(base, server=server, queue=queue))


def queue_of(live: LiveServer) -> list[QueuedRecipient]:
    return [r for m in live.call(live.store.list_queue()) for r in m.recipients]


def test_a_smart_host_entry_from_the_config_file(tmp_path: Path, our_mx: LiveServer) -> None:
    """``encrypt`` for the smart host: our MX's self-signed certificate is taken (without the
    entry ``smarthost_verify_tls`` would refuse it); ``verify`` refuses it, and the message
    stays queued with the reason."""
    relay_port = our_mx.port("smtp")
    with sender(tmp_path / "a", relay_port, {f"[127.0.0.1]:{relay_port}": "encrypt"}) as out:
        out.call(out.store.enqueue("alice@out.test", RAW, [NewQueueRecipient("bob@far.test")]))
        wait_for(lambda: our_mx.mailbox_messages("bob@far.test", "INBOX"), "the relayed message")
        wait_for(lambda: not queue_of(out), "the queue to empty")
    with sender(tmp_path / "b", relay_port, {"[127.0.0.1]": "verify"}) as out:
        out.call(out.store.enqueue("alice@out.test", RAW, [NewQueueRecipient("bob@far.test")]))

        def deferred_reply() -> str:
            left = queue_of(out)
            if left and left[0].state is RecipientState.DEFERRED:
                return left[0].last_reply or ""
            return ""

        reply = wait_for(deferred_reply, "the deferral")
        assert reply.startswith(
            "127.0.0.1: 451 4.7.5 TLS policy verify ([127.0.0.1]): TLS handshake failed: "
        )
        assert "certificate verify failed" in reply
    assert len(our_mx.mailbox_messages("bob@far.test", "INBOX")) == 1
