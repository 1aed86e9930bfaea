"""DANE (RFC 7672) in delivery, with the real pieces: our DNS server on loopback serving MX,
address and TLSA records, with the AD bit on the zone ``signed.test`` (a validating resolver's
"secure" answers; the resolver trusts it, being on loopback); receiving SMTP servers (aiosmtpd,
the peer) offering STARTTLS with certificates from a test CA; our queue runner and store.

Certificates come from a CA nobody trusts: DANE-EE authenticates the key alone (§3.1.1), so the
runner is given no CA bundle at all."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pillarbox.dns.resolver import DnsResolver
from pillarbox.queue.dane import Tlsa, tlsa_for_certificate
from pillarbox.queue.runner import QueueRunner
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.types import NewQueueRecipient, QueuedRecipient, RecipientState
from pillarbox.testing.capture import Recorder, capture_peer
from pillarbox.testing.dnszone import ZoneRecord, serve_records, serve_test_zones
from pillarbox.testing.live import free_port
from pillarbox.testing.outbound import deliver_once, mx_runner, rcpts, tls_peer_context
from pillarbox.testing.testca import make_ca

KEY_A_MX = "127.0.0.21"  # presents the certificate with key A
KEY_B_MX = "127.0.0.22"  # presents the certificate with key B
NO_TLS_MX = "127.0.0.23"  # offers no STARTTLS
RAW = b"From: alice@a.test\r\nTo: x@signed.test\r\nSubject: dane\r\n\r\nHello.\r\n"


@dataclass
class Peer:
    recorder: Recorder
    #: SNI names the peer saw in TLS handshakes.
    sni: list[str]
    #: DER certificate it presents (None: no TLS).
    certificate: bytes | None


@dataclass
class Peers:
    key_a: Peer
    key_b: Peer
    no_tls: Peer
    port: int


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[Peers]:
    ca = make_ca(tmp_path)
    port = free_port(KEY_A_MX, KEY_B_MX, NO_TLS_MX)
    sni_a: list[str] = []
    sni_b: list[str] = []
    # Neither certificate names the MX hosts: DANE-EE ignores names (§3.1.1).
    context_a, der_a = tls_peer_context(ca, "key-a.elsewhere.test", sni_a)
    context_b, der_b = tls_peer_context(ca, "key-b.elsewhere.test", sni_b)
    with (
        capture_peer(KEY_A_MX, port, tls=context_a) as a,
        capture_peer(KEY_B_MX, port, tls=context_b) as b,
        capture_peer(NO_TLS_MX, port) as plain,
    ):
        yield Peers(Peer(a, sni_a, der_a), Peer(b, sni_b, der_b), Peer(plain, [], None), port)


def tlsa(record: Tlsa | None) -> str:
    assert record is not None
    return str(record)


def zone(peers: Peers) -> list[ZoneRecord]:
    assert peers.key_a.certificate is not None and peers.key_b.certificate is not None
    key_a = tlsa(tlsa_for_certificate(peers.key_a.certificate))
    key_b = tlsa(tlsa_for_certificate(peers.key_b.certificate))

    def at(host: str) -> str:
        return f"_{peers.port}._tcp.{host}"  # RFC 7672 §2.2.3: the port connected to

    return [
        ZoneRecord("mx-a.signed.test", "A", KEY_A_MX),
        ZoneRecord(at("mx-a.signed.test"), "TLSA", key_a),
        # Key B's server, with the records of key A: authentication fails.
        ZoneRecord("mx-b.signed.test", "A", KEY_B_MX),
        ZoneRecord(at("mx-b.signed.test"), "TLSA", key_a),
        # MX hosts that are aliases (§2.2.2 "Secure CNAME"): the expanded name's TLSA records
        # first, then the alias's own (§2.2.3).
        ZoneRecord("alias.signed.test", "MX", "10 mx-alias.signed.test."),
        ZoneRecord("mx-alias.signed.test", "CNAME", "mx-a.signed.test."),
        ZoneRecord("hosted.signed.test", "MX", "10 mx-hosted.signed.test."),
        ZoneRecord("mx-hosted.signed.test", "CNAME", "mx-bare.signed.test."),
        ZoneRecord("mx-bare.signed.test", "A", KEY_B_MX),
        ZoneRecord(at("mx-hosted.signed.test"), "TLSA", key_b),
        # Two records (a key rollover): either may match (§3.1.1).
        ZoneRecord("mx-multi.signed.test", "A", KEY_B_MX),
        ZoneRecord(at("mx-multi.signed.test"), "TLSA", key_a),
        ZoneRecord(at("mx-multi.signed.test"), "TLSA", key_b),
        ZoneRecord("multi.signed.test", "MX", "10 mx-multi.signed.test."),
        # TLSA lookups of this one fail (REFUSED, like a SERVFAIL or a bogus answer).
        ZoneRecord("mx-fail.signed.test", "A", KEY_A_MX),
        ZoneRecord(at("mx-fail.signed.test"), "TLSA", key_a),
        ZoneRecord("mx-notls.signed.test", "A", NO_TLS_MX),
        ZoneRecord(at("mx-notls.signed.test"), "TLSA", key_a),
        # Only a DANE-TA record (unusable here): TLS mandatory, no authentication (§2.2).
        ZoneRecord("mx-ta.signed.test", "A", KEY_B_MX),
        ZoneRecord(at("mx-ta.signed.test"), "TLSA", "2 0 1 " + "00" * 32),
        ZoneRecord("mx-ta-notls.signed.test", "A", NO_TLS_MX),
        ZoneRecord(at("mx-ta-notls.signed.test"), "TLSA", "2 0 1 " + "00" * 32),
        # Signed, no TLSA at all: opportunistic, plaintext allowed.
        ZoneRecord("mx-none.signed.test", "A", NO_TLS_MX),
        ZoneRecord("good.signed.test", "MX", "10 mx-a.signed.test."),
        ZoneRecord("bad.signed.test", "MX", "10 mx-b.signed.test."),
        ZoneRecord("mixed.signed.test", "MX", "10 mx-b.signed.test."),
        ZoneRecord("mixed.signed.test", "MX", "20 mx-a.signed.test."),
        ZoneRecord("fail.signed.test", "MX", "10 mx-fail.signed.test."),
        ZoneRecord("failover.signed.test", "MX", "10 mx-fail.signed.test."),
        ZoneRecord("failover.signed.test", "MX", "20 mx-a.signed.test."),
        ZoneRecord("notls.signed.test", "MX", "10 mx-notls.signed.test."),
        ZoneRecord("ta.signed.test", "MX", "10 mx-ta.signed.test."),
        ZoneRecord("ta-notls.signed.test", "MX", "10 mx-ta-notls.signed.test."),
        ZoneRecord("none.signed.test", "MX", "10 mx-none.signed.test."),
        # Unsigned: the wrong key's TLSA record is never looked at (§2.2.1).
        ZoneRecord("plain.test", "MX", "10 mx.plain.test."),
        ZoneRecord("mx.plain.test", "A", KEY_B_MX),
        ZoneRecord(at("mx.plain.test"), "TLSA", key_a),
        # §2.2.2 "Insecure CNAME": signed aliases of unsigned hosts. The alias's own TLSA
        # records count (key A's at mx-cname-a, which presents key A; key A's at
        # mx-cname-b, which presents key B: a mismatch).
        ZoneRecord("cname-a.signed.test", "MX", "10 mx-cname-a.signed.test."),
        ZoneRecord("mx-cname-a.signed.test", "CNAME", "mx-a.unsigned.test."),
        ZoneRecord("mx-a.unsigned.test", "A", KEY_A_MX),
        ZoneRecord(at("mx-cname-a.signed.test"), "TLSA", key_a),
        ZoneRecord("cname-b.signed.test", "MX", "10 mx-cname-b.signed.test."),
        ZoneRecord("mx-cname-b.signed.test", "CNAME", "mx.unsigned.test."),
        ZoneRecord(at("mx-cname-b.signed.test"), "TLSA", key_a),
        # An unsigned alias of an unsigned host: no DANE, key A's record there is not looked at.
        ZoneRecord("cname-plain.signed.test", "MX", "10 mx.alias.test."),
        ZoneRecord("mx.alias.test", "CNAME", "mx.unsigned.test."),
        ZoneRecord(at("mx.alias.test"), "TLSA", key_a),
        # A signed MX RRset pointing at an unsigned host: no TLSA lookup (§2.2.2).
        ZoneRecord("halfway.signed.test", "MX", "10 mx.unsigned.test."),
        ZoneRecord("mx.unsigned.test", "A", KEY_B_MX),
        ZoneRecord(at("mx.unsigned.test"), "TLSA", key_a),
    ]


@pytest.fixture
async def resolver(peers: Peers) -> AsyncIterator[DnsResolver]:
    failing = [f"_{peers.port}._tcp.mx-fail.signed.test"]
    async with serve_records(zone(peers), failing=failing, secure=["signed.test"]) as resolver:
        yield resolver


def runner(
    store: SqliteStore,
    resolver: DnsResolver,
    peers: Peers,
    *,
    dane: bool = True,
    tls_reports: bool = False,
) -> QueueRunner:
    return mx_runner(store, resolver, remote_port=peers.port, dane=dane, tls_reports=tls_reports)


async def deliver(store: SqliteStore, queue: QueueRunner, recipient: str) -> QueuedRecipient | None:
    return await deliver_once(store, queue, recipient, RAW)


# -- the resolver's view ---------------------------------------------------------------------------


async def test_signed_answers_are_authentic_and_others_not(resolver: DnsResolver) -> None:
    assert resolver.trusts_ad
    assert (await resolver.mx("good.signed.test")).authentic
    assert (await resolver.host_addresses("mx-a.signed.test")).authentic
    assert not (await resolver.mx("plain.test")).authentic
    assert not (await resolver.host_addresses("mx.plain.test")).authentic


async def test_an_untrusted_resolver_reports_nothing_authentic(peers: Peers) -> None:
    async with serve_test_zones(zone(peers), secure=["signed.test"]) as server:
        trusted = DnsResolver(nameserver=f"127.0.0.1:{server.port}", trust_ad="loopback")
        untrusted = DnsResolver(nameserver=f"127.0.0.1:{server.port}", trust_ad="never")
        assert (await trusted.mx("good.signed.test")).authentic
        assert not (await untrusted.mx("good.signed.test")).authentic
        assert not untrusted.trusts_ad


# -- the cases ------------------------------------------------------------------------------------


async def test_a_matching_3_1_1_record_delivers(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    assert await deliver(store, runner(store, resolver, peers), "x@good.signed.test") is None
    assert rcpts(peers.key_a.recorder) == ["x@good.signed.test"]
    assert peers.key_a.sni == ["mx-a.signed.test"]  # §8.1: SNI is the TLSA base domain


async def test_any_of_several_records_may_match(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    assert await deliver(store, runner(store, resolver, peers), "x@multi.signed.test") is None
    assert rcpts(peers.key_b.recorder) == ["x@multi.signed.test"]


async def test_an_alias_uses_the_expanded_names_records_first(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    assert await deliver(store, runner(store, resolver, peers), "x@alias.signed.test") is None
    assert rcpts(peers.key_a.recorder) == ["x@alias.signed.test"]
    assert peers.key_a.sni == ["mx-a.signed.test"]  # the base domain: the expanded name


async def test_an_alias_falls_back_to_its_own_records(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    """§2.2.3: no TLSA at the expanded name: the unexpanded name is the next candidate."""
    assert await deliver(store, runner(store, resolver, peers), "x@hosted.signed.test") is None
    assert rcpts(peers.key_b.recorder) == ["x@hosted.signed.test"]
    assert peers.key_b.sni == ["mx-hosted.signed.test"]


async def test_a_mismatch_defers_with_4_7_5(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    left = await deliver(store, runner(store, resolver, peers), "x@bad.signed.test")
    assert left is not None and left.state is RecipientState.DEFERRED
    assert left.last_reply == (
        "mx-b.signed.test: 451 4.7.5 DANE (TLSA of mx-b.signed.test, authenticate):"
        " the certificate matches none of the 1 usable TLSA record(s)"
    )
    assert peers.key_b.recorder.messages == []


async def test_a_mismatch_goes_on_to_the_next_mx(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    assert await deliver(store, runner(store, resolver, peers), "x@mixed.signed.test") is None
    assert peers.key_b.recorder.messages == []
    assert rcpts(peers.key_a.recorder) == ["x@mixed.signed.test"]
    assert peers.key_b.sni == ["mx-b.signed.test"]  # it was tried, over TLS


async def test_a_failed_tlsa_lookup_makes_the_host_unusable(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    left = await deliver(store, runner(store, resolver, peers), "x@fail.signed.test")
    assert left is not None and left.state is RecipientState.DEFERRED
    assert left.last_reply is not None
    assert left.last_reply.startswith(
        f"mx-fail.signed.test: 451 4.4.3 _{peers.port}._tcp.mx-fail.signed.test: server failure"
    )
    assert left.last_reply.endswith("; the host is not used")
    assert peers.key_a.recorder.messages == [] and peers.key_a.sni == []  # §2.1.2: no connection


async def test_a_failed_tlsa_lookup_goes_on_to_the_next_mx(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    assert await deliver(store, runner(store, resolver, peers), "x@failover.signed.test") is None
    assert rcpts(peers.key_a.recorder) == ["x@failover.signed.test"]
    assert peers.key_a.sni == ["mx-a.signed.test"]


async def test_no_starttls_with_tlsa_defers(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    left = await deliver(store, runner(store, resolver, peers), "x@notls.signed.test")
    assert left is not None and left.state is RecipientState.DEFERRED
    assert left.last_reply == (
        "mx-notls.signed.test: 451 4.7.10 DANE (TLSA of mx-notls.signed.test, authenticate):"
        " the host does not offer STARTTLS"
    )
    assert peers.no_tls.recorder.messages == []


async def test_unusable_records_still_require_tls(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    assert await deliver(store, runner(store, resolver, peers), "x@ta.signed.test") is None
    assert rcpts(peers.key_b.recorder) == ["x@ta.signed.test"]
    assert peers.key_b.sni == ["mx-ta.signed.test"]
    left = await deliver(store, runner(store, resolver, peers), "y@ta-notls.signed.test")
    assert left is not None and left.state is RecipientState.DEFERRED
    assert left.last_reply == (
        "mx-ta-notls.signed.test: 451 4.7.10 DANE (TLSA of mx-ta-notls.signed.test, encrypt):"
        " the host does not offer STARTTLS"
    )
    assert peers.no_tls.recorder.messages == []


async def test_signed_without_tlsa_delivers_opportunistically(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    assert await deliver(store, runner(store, resolver, peers), "x@none.signed.test") is None
    assert rcpts(peers.no_tls.recorder) == ["x@none.signed.test"]  # plaintext: nothing was promised


async def test_an_insecure_zone_delivers_opportunistically(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    # The TLSA record there names key A, but the zone is unsigned: it is not looked at.
    assert await deliver(store, runner(store, resolver, peers), "x@plain.test") is None
    assert rcpts(peers.key_b.recorder) == ["x@plain.test"]
    assert peers.key_b.sni == ["mx.plain.test"]


async def test_an_unsigned_mx_host_gets_no_tlsa_lookup(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    assert await deliver(store, runner(store, resolver, peers), "x@halfway.signed.test") is None
    assert rcpts(peers.key_b.recorder) == ["x@halfway.signed.test"]


async def test_an_insecure_cname_uses_the_aliass_own_records(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    """§2.2.2 "Insecure CNAME": the alias's own CNAME record is secure, so its TLSA records
    apply (the SNI is the alias), though the host's addresses are not."""
    assert await deliver(store, runner(store, resolver, peers), "x@cname-a.signed.test") is None
    assert rcpts(peers.key_a.recorder) == ["x@cname-a.signed.test"]
    assert peers.key_a.sni == ["mx-cname-a.signed.test"]
    left = await deliver(store, runner(store, resolver, peers), "x@cname-b.signed.test")
    assert left is not None and left.state is RecipientState.DEFERRED
    assert left.last_reply is not None
    assert "451 4.7.5 DANE (TLSA of mx-cname-b.signed.test, authenticate)" in left.last_reply
    assert peers.key_b.recorder.messages == []


async def test_an_insecure_alias_of_an_insecure_host_gets_no_dane(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    assert await deliver(store, runner(store, resolver, peers), "x@cname-plain.signed.test") is None
    assert rcpts(peers.key_b.recorder) == ["x@cname-plain.signed.test"]
    assert peers.key_b.sni == ["mx.alias.test"]


async def test_dane_off_ignores_tlsa_records(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    queue = runner(store, resolver, peers, dane=False)
    assert await deliver(store, queue, "x@bad.signed.test") is None
    assert rcpts(peers.key_b.recorder) == ["x@bad.signed.test"]


# -- TLS reporting (RFC 8460) ---------------------------------------------------------------------


async def test_each_host_tried_leaves_a_tls_result(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    queue = runner(store, resolver, peers, tls_reports=True)
    for recipient in (
        "x@good.signed.test",
        "x@bad.signed.test",
        "x@fail.signed.test",
        "x@notls.signed.test",
        "x@plain.test",
        "x@none.signed.test",
    ):
        await deliver(store, queue, recipient)
    results = await store.tls_results(datetime(2100, 1, 1, tzinfo=UTC))
    seen = {(r.policy_domain, r.policy_type, r.result_type, r.receiving_mx) for r in results}
    assert seen == {
        ("good.signed.test", "tlsa", "", "mx-a.signed.test"),
        ("bad.signed.test", "tlsa", "tlsa-invalid", "mx-b.signed.test"),
        ("fail.signed.test", "tlsa", "dnssec-invalid", "mx-fail.signed.test"),
        ("notls.signed.test", "tlsa", "starttls-not-supported", "mx-notls.signed.test"),
        ("plain.test", "no-policy-found", "", "mx.plain.test"),
        ("none.signed.test", "no-policy-found", "starttls-not-supported", "mx-none.signed.test"),
    }
    good = next(r for r in results if r.policy_domain == "good.signed.test")
    assert peers.key_a.certificate is not None
    assert good.policy_strings == (str(tlsa_for_certificate(peers.key_a.certificate)),)
    assert (good.receiving_ip, good.sending_ip) == (KEY_A_MX, "127.0.0.1")
    bad = next(r for r in results if r.policy_domain == "bad.signed.test")
    assert "matches none of the 1 usable TLSA record(s)" in bad.failure_reason
    # The attempts stay queued and deferred: the report only describes them.
    assert len(await store.list_queue()) == 3


async def test_tls_required_no_is_delivered_despite_dane_and_not_counted(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    """RFC 8689 §4.2.2 (and RFC 8460 §5.3 for the reports themselves): recipient TLS policies
    do not stop the message, and its session is not reported."""
    queue = runner(store, resolver, peers, tls_reports=True)
    raw = b"TLS-Required: No\r\n" + RAW
    await store.enqueue("alice@a.test", raw, [NewQueueRecipient("x@bad.signed.test")])
    await queue.claim()
    await queue.idle()
    assert await store.list_queue() == []
    assert rcpts(peers.key_b.recorder) == ["x@bad.signed.test"]
    assert await store.tls_results(datetime(2100, 1, 1, tzinfo=UTC)) == []
