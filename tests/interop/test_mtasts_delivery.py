"""MTA-STS (RFC 8461) in delivery, with the real pieces: our DNS server on loopback serving the
``_mta-sts`` TXT, MX and address records; an HTTPS policy host on loopback (a stdlib
``http.server`` over TLS, the peer); receiving SMTP servers (aiosmtpd, the peer) offering
STARTTLS with certificates from a test CA made here; and our queue runner and store."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.server
import logging
import smtplib
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pillarbox import config as cfg
from pillarbox import provisioning
from pillarbox.dns.authoritative import StaticZones, serve_zones
from pillarbox.dns.records import DnsRecord, required_records
from pillarbox.dns.resolver import DnsResolver
from pillarbox.net.mtasts import MtaStsPolicies, PolicyFetchError, fetch_policy_text
from pillarbox.net.smtp_client import SessionSettings, opportunistic_context, verifying_context
from pillarbox.queue.dane import tlsa_for_certificate
from pillarbox.queue.mtasts import FETCH_RETRY_SECONDS, REFRESH_RETRY_SECONDS, Mode, PolicyCache
from pillarbox.queue.routing import Router
from pillarbox.queue.runner import QueueRunner, Relay, RunnerLimits, mta_sts_for
from pillarbox.queue.schedule import RetryPolicy
from pillarbox.queue.tlspolicy import PolicyTable
from pillarbox.queue.tlsrpt import ResultType
from pillarbox.smtp.client import SmtpClientSettings
from pillarbox.store.interface import Store
from pillarbox.store.postgres import PostgresStore
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.types import (
    INBOX,
    NewQueueRecipient,
    QueuedRecipient,
    RecipientState,
    StsCacheEntry,
)
from pillarbox.testing.capture import Recorder, capture_peer
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, free_port, loopback_config
from pillarbox.testing.outbound import deliver_once, inbox, rcpts
from pillarbox.testing.polling import wait_for
from pillarbox.testing.postgres import TestDatabase, unreachable_reason
from pillarbox.testing.testca import CertAuthority, make_ca

GOOD_MX = "127.0.0.4"  # certificate for mx.good.test
RECEIVER = "127.0.0.9"  # our own servers (see the end)
WRONG_CERT_MX = "127.0.0.7"  # certificate for wrong.test only
NO_TLS_MX = "127.0.0.8"  # offers no STARTTLS
POLICY_HOST = "127.0.0.6"
RAW = b"From: alice@a.test\r\nTo: x@good.test\r\nSubject: sts\r\n\r\nHello.\r\n"


# -- the policy host ------------------------------------------------------------------------------


def policy(mode: str, *mx: str) -> bytes:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), "max_age: 86400"]
    return "".join(f"{line}\r\n" for line in lines).encode()


#: Policy domain → (TXT id, policy file).
POLICIES = {
    "good.test": ("g1", policy("enforce", "mx.good.test")),
    # The MX host is not in the policy.
    "stray.test": ("s1", policy("enforce", "mx.elsewhere.test")),
    # The MX's certificate does not name it.
    "badcert.test": ("b1", policy("enforce", "mx.badcert.test")),
    # The first MX fails validation, the second is good (§5.1 step 2: the next candidate).
    "mixed.test": ("m1", policy("enforce", "*.badcert.test", "mx.good.test")),
    # Enforced, but the MX offers no STARTTLS.
    "notls.test": ("n1", policy("enforce", "mx.notls.test")),
    # Testing mode: failures are logged, mail goes as without a policy.
    "trial.test": ("t1", policy("testing", "mx.trial.test")),
    # DNSSEC-signed, its MX host authenticated by DANE: the policy, which does not list that
    # host, is not applied to it (RFC 8461 §2, docs/dane.md).
    "both.signed.test": ("d1", policy("enforce", "mx.elsewhere.test")),
    # Enforced, its MX one of our servers (REQUIRETLS, RFC 8689).
    "rt.test": ("r1", policy("enforce", "mx.rt.test")),
    # Smart hosts' own policies (§3.4: the smart host's name is the Policy Domain).
    "mx.good.test": ("h1", policy("enforce", "mx.good.test")),
    "mx.badcert.test": ("h2", policy("enforce", "mx.badcert.test")),
}


#: Policy hosts that answer badly: domain → (status, media type, body).
BAD_ANSWERS = {
    "redirect.test": (301, "text/plain", b""),  # §3.3: a redirect is not followed
    "html.test": (200, "text/html", policy("enforce", "mx.html.test")),  # §3.2: not text/plain
    "huge.test": (200, "text/plain", policy("enforce", *(f"mx{n}.huge.test" for n in range(9)))),
    "gone.test": (404, "text/plain", b"not found"),
    "invalid.test": (200, "text/plain", b"version: STSv1\r\nmode: bogus\r\nmax_age: 1\r\n"),
}
#: A policy host whose certificate does not name it (§3.3).
UNNAMED = "unnamed.test"
#: Domains whose TXT record announces a policy that cannot be had (RFC 8460 §4.3.2.2).
UNUSABLE = ("html.test", UNNAMED, "invalid.test")


#: What a test serves instead, for a while: domain → (status, media type, body).
CHANGED: dict[str, tuple[int, str, bytes]] = {}


class PolicyHandler(http.server.BaseHTTPRequestHandler):
    """Serves each domain's policy on ``mta-sts.<domain>``; keeps the hosts asked."""

    asked: list[str]

    def do_GET(self) -> None:
        host = self.headers.get("Host", "")
        self.asked.append(host)
        domain = host.removeprefix("mta-sts.")
        status, media_type, body = BAD_ANSWERS.get(domain, (404, "text/plain", b""))
        if self.path == "/.well-known/mta-sts.txt" and domain in POLICIES:
            status, media_type, body = 200, "text/plain; charset=utf-8", POLICIES[domain][1]
        status, media_type, body = CHANGED.get(domain, (status, media_type, body))
        self.send_response(status)
        if status == 301:
            self.send_header("Location", "https://elsewhere.test/.well-known/mta-sts.txt")
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def policy_server(context: ssl.SSLContext) -> Iterator[tuple[int, list[str]]]:
    asked: list[str] = []
    handler = type("Handler", (PolicyHandler,), {"asked": asked})
    server = http.server.ThreadingHTTPServer((POLICY_HOST, 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], asked
    finally:
        server.shutdown()
        server.server_close()


# -- DNS ------------------------------------------------------------------------------------------


def zones(good_certificate: Path | None = None, smtp_port: int = 25) -> StaticZones:
    records = [
        DnsRecord("mx.good.test", "A", GOOD_MX),
        DnsRecord("mx.badcert.test", "A", WRONG_CERT_MX),
        DnsRecord("mx.notls.test", "A", NO_TLS_MX),
        DnsRecord("mx.trial.test", "A", WRONG_CERT_MX),
        DnsRecord("mx.plain.test", "A", WRONG_CERT_MX),
        DnsRecord("good.test", "MX", "10 mx.good.test."),
        DnsRecord("stray.test", "MX", "10 mx.good.test."),
        DnsRecord("badcert.test", "MX", "10 mx.badcert.test."),
        DnsRecord("mixed.test", "MX", "10 mx.badcert.test."),
        DnsRecord("mixed.test", "MX", "20 mx.good.test."),
        DnsRecord("notls.test", "MX", "10 mx.notls.test."),
        DnsRecord("trial.test", "MX", "10 mx.trial.test."),
        DnsRecord("plain.test", "MX", "10 mx.plain.test."),  # no policy at all
        DnsRecord("rt.test", "MX", "10 mx.rt.test."),
        DnsRecord("mx.rt.test", "A", RECEIVER),
    ]
    for domain, (policy_id, _) in POLICIES.items():
        records.append(DnsRecord(f"_mta-sts.{domain}", "TXT", f"v=STSv1; id={policy_id};"))
    for domain in (*POLICIES, *BAD_ANSWERS, UNNAMED):
        records.append(DnsRecord(f"mta-sts.{domain}", "A", POLICY_HOST))
    for domain in UNUSABLE:
        records.append(DnsRecord(f"_mta-sts.{domain}", "TXT", "v=STSv1; id=u1;"))
        records.append(DnsRecord(domain, "MX", "10 mx.plain.test."))
    if good_certificate is not None:  # the signed zone: the MX host's TLSA matches its key
        der = x509.load_pem_x509_certificate(good_certificate.read_bytes()).public_bytes(
            serialization.Encoding.DER
        )
        records += [
            DnsRecord("both.signed.test", "MX", "10 mx.both.signed.test."),
            DnsRecord("mx.both.signed.test", "A", GOOD_MX),
            DnsRecord(
                f"_{smtp_port}._tcp.mx.both.signed.test", "TLSA", str(tlsa_for_certificate(der))
            ),
        ]
    origins = [*POLICIES, *BAD_ANSWERS, UNNAMED, "plain.test"]
    return StaticZones.from_records(records, origins=origins, authentic=["both.signed.test"])


# -- fixtures -------------------------------------------------------------------------------------


@dataclass
class Peers:
    good: Recorder
    wrong_cert: Recorder
    no_tls: Recorder
    smtp_port: int
    policy_port: int
    policy_asked: list[str]
    ca: CertAuthority


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[Peers]:
    ca = make_ca(tmp_path)
    port = free_port(GOOD_MX, WRONG_CERT_MX, NO_TLS_MX)
    policy_names = [f"mta-sts.{d}" for d in (*POLICIES, *BAD_ANSWERS)]
    with (
        capture_peer(GOOD_MX, port, tls=ca.server_context("mx.good.test")) as good,
        capture_peer(WRONG_CERT_MX, port, tls=ca.server_context("wrong.test")) as wrong,
        capture_peer(NO_TLS_MX, port) as no_tls,
        policy_server(ca.server_context(*policy_names)) as (policy_port, asked),
    ):
        yield Peers(good, wrong, no_tls, port, policy_port, asked, ca)


@pytest.fixture
async def resolver(peers: Peers) -> AsyncIterator[DnsResolver]:
    good_certificate = Path(peers.ca.directory) / "mx.good.test.crt"
    async with serve_zones(zones(good_certificate, peers.smtp_port)) as server:
        yield DnsResolver(nameserver=f"127.0.0.1:{server.port}", timeout=2.0, trust_ad="loopback")


def runner(
    store: Store,
    resolver: DnsResolver,
    peers: Peers,
    *,
    smtp_port: int | None = None,
    policy_port: int | None = None,
    tls_reports: bool = False,
    dane: bool = False,
    tls_policy: dict[str, str] | None = None,
    smarthost: str | None = None,
) -> QueueRunner:
    client = SmtpClientSettings(hostname="mx.a.test")
    relay = None
    if smarthost is not None:  # any certificate unless a policy asks (smarthost_verify_tls off)
        settings = SessionSettings(client=client, connect_timeout=2.0, tls=opportunistic_context())
        relay = Relay(smarthost, smtp_port or peers.smtp_port, settings)
    return QueueRunner(
        store=store,
        router=Router(store),
        resolver=resolver,
        policy=RetryPolicy(schedule=(60.0,), lifetime=3600.0),
        hostname="mx.a.test",
        wakeup=asyncio.Event(),
        remote_port=smtp_port or peers.smtp_port,
        session=SessionSettings(client=client, connect_timeout=2.0, tls=opportunistic_context()),
        relay=relay,
        mta_sts=mta_sts_for(
            resolver,
            store=store,
            cafile=peers.ca.bundle,
            fetch_timeout=5.0,
            policy_port=policy_port or peers.policy_port,
        ),
        tls_reports=tls_reports,
        dane=dane,
        tls_policy=PolicyTable.parse(tls_policy or {}),
        limits=RunnerLimits(per_domain=1),
    )


async def deliver(store: Store, queue: QueueRunner, recipient: str) -> QueuedRecipient | None:
    return await deliver_once(store, queue, recipient, RAW)


@pytest.fixture(params=["sqlite", "postgresql"])
async def kept(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The ``store`` fixture on each backend (PostgreSQL skipped when unreachable)."""
    if request.param == "postgresql":
        reason = unreachable_reason()
        if reason is not None:
            pytest.skip(reason)
        database: TestDatabase = request.getfixturevalue("database")
        store: Store = PostgresStore(database.new_store_url())
    else:
        store = SqliteStore(tmp_path / "kept.sqlite3")
    await store.open()
    await provisioning.add_domain(store, "a.test")
    await store.add_account("alice@a.test", "x")
    try:
        yield store
    finally:
        await store.close()


# -- the cases ------------------------------------------------------------------------------------


async def test_enforce_with_a_valid_certificate_delivers(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    assert await deliver(store, runner(store, resolver, peers), "x@good.test") is None
    assert rcpts(peers.good) == ["x@good.test"]
    assert peers.policy_asked == ["mta-sts.good.test"]  # SNI/Host: the policy host's name


async def test_enforce_refuses_an_mx_not_in_the_policy(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    left = await deliver(store, runner(store, resolver, peers), "x@stray.test")
    assert left is not None and left.state is RecipientState.DEFERRED  # §5: temporary
    assert left.last_reply == (
        "mx.good.test: 451 4.7.0 MTA-STS policy of stray.test (enforce) does not list the host"
    )
    assert peers.good.messages == []


async def test_enforce_refuses_a_certificate_not_valid_for_the_mx(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    left = await deliver(store, runner(store, resolver, peers), "x@badcert.test")
    assert left is not None and left.state is RecipientState.DEFERRED
    assert left.last_reply is not None
    assert left.last_reply.startswith(
        "mx.badcert.test: 451 4.7.5 MTA-STS policy of badcert.test (enforce): TLS handshake"
        " failed: "
    )
    assert "certificate" in left.last_reply.lower()
    assert peers.wrong_cert.messages == []


async def test_enforce_goes_on_to_the_next_valid_mx(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    assert await deliver(store, runner(store, resolver, peers), "x@mixed.test") is None
    assert peers.wrong_cert.messages == [] and rcpts(peers.good) == ["x@mixed.test"]


async def test_enforce_refuses_an_mx_without_starttls(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    left = await deliver(store, runner(store, resolver, peers), "x@notls.test")
    assert left is not None and left.state is RecipientState.DEFERRED
    assert left.last_reply == (
        "mx.notls.test: 451 4.7.10 MTA-STS policy of notls.test (enforce):"
        " the host does not offer STARTTLS"
    )
    assert peers.no_tls.messages == []


async def test_a_smart_hosts_own_policy_applies_not_the_recipient_domains(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    """RFC 8461 §3.4: through a smart host, its name is the Policy Domain. stray.test's own
    policy (which does not list mx.good.test) is not asked for; mx.good.test's is, lists it,
    and its certificate passes."""
    queue = runner(store, resolver, peers, smarthost="mx.good.test")
    assert await deliver(store, queue, "x@stray.test") is None
    assert rcpts(peers.good) == ["x@stray.test"]
    assert peers.policy_asked == ["mta-sts.mx.good.test"]


async def test_a_smart_host_failing_its_own_enforced_policy_gets_no_mail(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    """§3.4, §4.2: the smart host's "enforce" policy asks for a certificate naming it, which
    mx.badcert.test lacks; the smart host settings alone (any certificate) would deliver."""
    queue = runner(store, resolver, peers, smarthost="mx.badcert.test")
    left = await deliver(store, queue, "x@plain.test")
    assert left is not None and left.state is RecipientState.DEFERRED  # §5: temporary
    assert left.last_reply is not None
    assert left.last_reply.startswith(
        "mx.badcert.test: 451 4.7.5 MTA-STS policy of mx.badcert.test (enforce): TLS handshake"
        " failed: "
    )
    assert peers.wrong_cert.messages == []
    assert peers.policy_asked == ["mta-sts.mx.badcert.test"]


async def test_a_tls_policy_entry_replaces_the_domains_policy(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    """docs/tls-policy.md: an administrator's entry is the whole policy of its destination;
    the MTA-STS policy (which would refuse mx.badcert.test's certificate) is not fetched."""
    queue = runner(store, resolver, peers, tls_policy={"badcert.test": "encrypt"})
    assert await deliver(store, queue, "x@badcert.test") is None
    assert rcpts(peers.wrong_cert) == ["x@badcert.test"]
    assert peers.policy_asked == []


async def test_testing_mode_delivers_and_logs_the_failure(
    store: SqliteStore,
    resolver: DnsResolver,
    peers: Peers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="pillarbox"):
        assert await deliver(store, runner(store, resolver, peers), "x@trial.test") is None
    assert rcpts(peers.wrong_cert) == ["x@trial.test"]
    [record] = [r for r in caplog.records if "would fail" in r.getMessage()]
    fields = record.__dict__["fields"]
    assert fields["domain"] == "trial.test" and fields["host"] == "mx.trial.test"
    assert "certificate" in fields["reply"].lower()


async def test_no_policy_delivers_as_before(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    # mx.plain.test presents a certificate for another name: without a policy, any will do.
    assert await deliver(store, runner(store, resolver, peers), "x@plain.test") is None
    assert rcpts(peers.wrong_cert) == ["x@plain.test"]
    assert peers.policy_asked == []  # no TXT record: no fetch


async def test_the_policy_is_fetched_once_while_its_id_stays(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    """§5.1: a cached, unexpired policy under the TXT record's id is not fetched again."""
    queue = runner(store, resolver, peers)
    assert await deliver(store, queue, "x@good.test") is None
    assert await deliver(store, queue, "y@good.test") is None
    assert rcpts(peers.good) == ["x@good.test", "y@good.test"]
    assert peers.policy_asked == ["mta-sts.good.test"]


async def test_dane_decides_for_a_host_it_authenticates(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    """RFC 8461 §2, RFC 7672: the MX host's secure TLSA records authenticate it, so the
    domain's MTA-STS policy, which does not list it, is not applied to it."""
    assert (
        await deliver(store, runner(store, resolver, peers, dane=True), "x@both.signed.test")
        is None
    )
    assert rcpts(peers.good) == ["x@both.signed.test"]


async def test_without_dane_the_policy_refuses_that_host(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    left = await deliver(store, runner(store, resolver, peers), "x@both.signed.test")
    assert left is not None and left.state is RecipientState.DEFERRED
    assert left.last_reply is not None and left.last_reply.endswith(
        "(enforce) does not list the host"
    )
    assert peers.good.messages == []


async def test_policy_outcomes_are_kept_for_tls_reports(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    """RFC 8460 §4.3: each host tried under a policy is a success or a typed failure."""
    queue = runner(store, resolver, peers, tls_reports=True)
    for recipient in ("x@good.test", "x@badcert.test", "x@stray.test", "x@trial.test"):
        await deliver(store, queue, recipient)
    results = await store.tls_results(datetime(2100, 1, 1, tzinfo=UTC))
    seen = {(r.policy_domain, r.policy_type, r.result_type, r.receiving_mx) for r in results}
    assert seen == {
        ("good.test", "sts", "", "mx.good.test"),
        ("badcert.test", "sts", "certificate-host-mismatch", "mx.badcert.test"),
        ("stray.test", "sts", "validation-failure", "mx.good.test"),
        # "testing": the would-be failure is what the report is for; the session that then
        # delivered as without a policy is not counted as a success.
        ("trial.test", "sts", "certificate-host-mismatch", "mx.trial.test"),
    }
    assert len(results) == 4
    good = next(r for r in results if r.policy_domain == "good.test")
    assert good.policy_strings == (
        "version: STSv1",
        "mode: enforce",
        "mx: mx.good.test",
        "max_age: 86400",
    )
    assert good.mx_patterns == ("mx.good.test",)


async def test_policies_that_cannot_be_had_are_reported(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    """RFC 8460 §4.3.2.2: delivered as without a policy (§3.3), and reported as policy
    failures: not text/plain, a policy host whose certificate does not name it, an invalid
    policy file."""
    queue = runner(store, resolver, peers, tls_reports=True)
    for domain in UNUSABLE:
        assert await deliver(store, queue, f"x@{domain}") is None
    results = await store.tls_results(datetime(2100, 1, 1, tzinfo=UTC))
    seen = {(r.policy_domain, r.policy_type, r.result_type, r.receiving_mx) for r in results}
    assert seen == {
        ("html.test", "sts", "sts-policy-fetch-error", ""),
        (UNNAMED, "sts", "sts-webpki-invalid", ""),
        ("invalid.test", "sts", "sts-policy-invalid", ""),
        *((domain, "no-policy-found", "", "mx.plain.test") for domain in UNUSABLE),
    }


async def test_a_smart_hosts_sessions_are_reported_under_its_own_name(
    kept: Store, resolver: DnsResolver, peers: Peers
) -> None:
    """RFC 8461 §3.4, RFC 8460 §4.4: through a smart host its policy applied, so its sessions
    are results of its own Policy Domain (its name), not the recipient domains'; a smart host
    given as an address has no Policy Domain and leaves none."""
    good = runner(kept, resolver, peers, tls_reports=True, smarthost="mx.good.test")
    assert await deliver(kept, good, "x@stray.test") is None
    badcert = runner(kept, resolver, peers, tls_reports=True, smarthost="mx.badcert.test")
    assert await deliver(kept, badcert, "x@plain.test") is not None
    by_address = runner(kept, resolver, peers, tls_reports=True, smarthost=GOOD_MX)
    assert await deliver(kept, by_address, "y@plain.test") is None
    results = await kept.tls_results(datetime(2100, 1, 1, tzinfo=UTC))
    seen = {(r.policy_domain, r.policy_type, r.result_type, r.receiving_mx) for r in results}
    assert seen == {
        ("mx.good.test", "sts", "", "mx.good.test"),
        ("mx.badcert.test", "sts", "certificate-host-mismatch", "mx.badcert.test"),
    }
    assert len(results) == 2
    assert rcpts(peers.good) == ["x@stray.test", "y@plain.test"]
    assert next(r for r in results if r.policy_domain == "mx.good.test").mx_patterns == (
        "mx.good.test",
    )


async def test_a_smart_hosts_policy_that_cannot_be_had_is_reported_under_its_name(
    kept: Store, resolver: DnsResolver, peers: Peers
) -> None:
    """RFC 8460 §4.3.2.2: the smart host's policy could not be fetched (not text/plain); the
    failure is its own, and the session that then went as without a policy too."""
    queue = runner(kept, resolver, peers, tls_reports=True, smarthost="html.test")
    # html.test has no address of its own: the relay session fails; the policy failure stays.
    await deliver(kept, queue, "x@plain.test")
    results = await kept.tls_results(datetime(2100, 1, 1, tzinfo=UTC))
    seen = {(r.policy_domain, r.policy_type, r.result_type) for r in results}
    assert seen == {("html.test", "sts", "sts-policy-fetch-error")}


# -- the fetch (§3.3) -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "reason"),
    [
        ("redirect.test", "HTTP status 301"),
        ("gone.test", "HTTP status 404"),
        ("html.test", "media type text/html, not text/plain"),
        ("huge.test", "policy larger than 200 bytes"),
        (UNNAMED, "certificate verify failed"),
        ("plain.test", "mta-sts.plain.test has no address"),  # NXDOMAIN
    ],
)
async def test_a_policy_that_cannot_be_had(
    resolver: DnsResolver, peers: Peers, domain: str, reason: str
) -> None:
    with pytest.raises(PolicyFetchError) as failure:
        await fetch_policy_text(
            domain,
            resolver,
            verifying_context(peers.ca.bundle),
            port=peers.policy_port,
            timeout=5.0,
            max_size=200,
        )
    assert reason in failure.value.reason


async def test_a_policy_fetched(resolver: DnsResolver, peers: Peers) -> None:
    body = await fetch_policy_text(
        "good.test", resolver, verifying_context(peers.ca.bundle), port=peers.policy_port
    )
    assert body == POLICIES["good.test"][1]


async def test_a_policy_host_that_never_answers_times_out(resolver: DnsResolver) -> None:
    """A listener that accepts and says nothing: the fetch ends at its timeout."""
    server = await asyncio.start_server(lambda r, w: None, POLICY_HOST, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(PolicyFetchError) as failure:
            await fetch_policy_text(
                "good.test", resolver, verifying_context(), port=port, timeout=0.5
            )
    finally:
        server.close()
    assert failure.value.reason == "no policy within 0.5 s"


# -- end to end: our own MX and our own policy, served by our web app ----------------------------


@contextlib.asynccontextmanager
async def tls_front(context: ssl.SSLContext, host: str, upstream: int) -> AsyncIterator[int]:
    """A TLS-terminating proxy to ``RECEIVER:upstream`` (what docs/mta-sts.md asks an operator
    to put before the web listener); yields its port."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(RECEIVER, upstream)
        await asyncio.gather(
            pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True
        )

    server = await asyncio.start_server(relay, host, 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("mx_certificate", ["from the CA", "self-signed"])
async def test_our_policy_from_our_web_app_to_our_mx(
    store: SqliteStore,
    peers: Peers,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    mx_certificate: str,
) -> None:
    """Our receiving server hosts b.test: DNS says what ``pillarbox dns records`` says, its web
    app serves the policy (mode "testing") behind TLS, its MX offers STARTTLS with a certificate
    for mx.b.test, or its own self-signed one (which "testing" logs and delivers anyway)."""
    tls = cfg.TlsSection()
    if mx_certificate == "from the CA":
        cert, key = peers.ca.issue("mx.b.test")
        tls = cfg.TlsSection(cert=str(cert), key=str(key))
    config = loopback_config(tmp_path / "b", only=["smtp", "http"], address=RECEIVER, tls=tls)
    config = dataclasses.replace(
        config, server=dataclasses.replace(config.server, hostname="mx.b.test")
    )
    with LiveServer(config) as live:
        live.add_domain("b.test")
        live.add_account("x@b.test", TEST_PASSWORD)
        published = required_records("b.test", mail_host="mx.b.test")
        served = [r for r in published.records if r.type in ("MX", "TXT") or r.name == "b.test"]
        zone = StaticZones.from_records(
            [
                *served,
                DnsRecord("mx.b.test", "A", RECEIVER),
                DnsRecord("mta-sts.b.test", "A", POLICY_HOST),
            ],
            origins=["b.test"],
        )
        front = peers.ca.server_context("mta-sts.b.test")
        async with (
            serve_zones(zone) as dns,
            tls_front(front, POLICY_HOST, live.port("http")) as policy_port,
        ):
            resolver = DnsResolver(nameserver=f"127.0.0.1:{dns.port}", timeout=2.0)
            queue = runner(
                store, resolver, peers, smtp_port=live.port("smtp"), policy_port=policy_port
            )
            with caplog.at_level(logging.INFO, logger="pillarbox"):
                assert await deliver(store, queue, "x@b.test") is None
        [stored] = await asyncio.to_thread(live.mailbox_messages, "x@b.test", INBOX)
    assert stored.endswith(RAW)
    [fetched] = [r for r in caplog.records if r.getMessage() == "policy fetched"]
    assert fetched.__dict__["fields"]["mode"] == "testing"
    assert fetched.__dict__["fields"]["mx"] == "mx.b.test"
    failures = [r for r in caplog.records if "would fail" in r.getMessage()]
    assert len(failures) == (0 if mx_certificate == "from the CA" else 1)


# -- REQUIRETLS (RFC 8689) ------------------------------------------------------------------------


async def requiretls_attempt(store: SqliteStore, queue: QueueRunner, recipient: str) -> str:
    """One attempt for a message tagged REQUIRETLS that fails: the reply it failed with."""
    message = await store.enqueue(
        "alice@a.test", RAW, [NewQueueRecipient(recipient)], requiretls=True
    )
    await queue.claim()
    await queue.idle()
    assert await store.get_queued(message.id) is None  # failed, final
    [report] = await inbox(store, "alice@a.test")
    [line] = [x for x in report.replace(b"\r\n ", b" ").split(b"\r\n") if b"Diagnostic" in x]
    return line.decode()


async def test_requiretls_enforce_authenticates_but_the_mx_must_offer_it(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    """§4.2.1: "enforce" listing the host vouches for it; aiosmtpd offers no REQUIRETLS."""
    reply = await requiretls_attempt(store, runner(store, resolver, peers), "x@good.test")
    assert reply == (
        "Diagnostic-Code: smtp; 550 5.7.30 REQUIRETLS support required: the host does not offer it"
    )
    assert peers.good.messages == []


async def test_requiretls_testing_mode_does_not_authenticate(
    store: SqliteStore, resolver: DnsResolver, peers: Peers
) -> None:
    reply = await requiretls_attempt(store, runner(store, resolver, peers), "x@trial.test")
    assert reply.startswith("Diagnostic-Code: smtp; 550 5.7.10 REQUIRETLS: the host is not")
    assert peers.wrong_cert.messages == []


async def test_requiretls_to_our_mx_under_enforce(
    store: SqliteStore,
    peers: Peers,
    resolver: DnsResolver,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Our server as rt.test's MX, the policy "enforce": the parameter reaches it."""
    cert, key = peers.ca.issue("mx.rt.test")
    tls = cfg.TlsSection(cert=str(cert), key=str(key))
    with LiveServer(
        loopback_config(tmp_path / "rt", only=["smtp"], address=RECEIVER, tls=tls)
    ) as live:
        live.add_domain("rt.test")
        live.add_account("x@rt.test", TEST_PASSWORD)
        queue = runner(store, resolver, peers, smtp_port=live.port("smtp"))
        message = await store.enqueue(
            "alice@a.test", RAW, [NewQueueRecipient("x@rt.test")], requiretls=True
        )
        with caplog.at_level(logging.INFO, logger="pillarbox"):
            await queue.claim()
            await queue.idle()
        [stored] = await asyncio.to_thread(live.mailbox_messages, "x@rt.test", INBOX)
    assert await store.get_queued(message.id) is None
    assert stored.endswith(RAW)
    [fields] = [r.__dict__["fields"] for r in caplog.records if r.getMessage() == "accepted"]
    assert fields["requiretls"] is True


# -- §3.3 proactive refresh -----------------------------------------------------------------------


@dataclass
class Clock:
    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def changed() -> Iterator[dict[str, tuple[int, str, bytes]]]:
    try:
        yield CHANGED
    finally:
        CHANGED.clear()


def refreshing(resolver: DnsResolver, peers: Peers, clock: Clock) -> MtaStsPolicies:
    context = verifying_context(peers.ca.bundle)
    return MtaStsPolicies(resolver, context, port=peers.policy_port, timeout=5.0, clock=clock)


async def test_a_cached_policy_is_refreshed_before_it_expires(
    peers: Peers,
    resolver: DnsResolver,
    changed: dict[str, tuple[int, str, bytes]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """RFC 8461 §3.3 SHOULD: the policy is fetched again ahead of its expiry, its TXT id
    unchanged and no mail for the domain (max_age a day: refreshed after half of it); the
    refreshed policy applies, for max_age from the refresh."""
    clock = Clock()
    policies = refreshing(resolver, peers, clock)
    first = await policies.policy_for("good.test")
    assert first is not None and first.mode is Mode.ENFORCE
    changed["good.test"] = (200, "text/plain", policy("testing", "mx.good.test"))
    clock.now += 43199
    assert await policies.refresh() == 0
    clock.now += 1
    asked = len(peers.policy_asked)
    with caplog.at_level(logging.INFO, logger="pillarbox"):
        assert await policies.refresh() == 1
    assert peers.policy_asked[asked:] == ["mta-sts.good.test"]
    assert [r.__dict__["fields"]["domain"] for r in caplog.records] == ["good.test"]
    assert caplog.records[0].getMessage() == "policy refreshed"
    clock.now += 86399  # the first fetch expired long ago; the refresh has not
    refreshed = await policies.policy_for("good.test")
    assert refreshed is not None and refreshed.mode is Mode.TESTING
    assert len(peers.policy_asked) == asked + 1  # the TXT id is the same: no fetch on the way


async def test_a_failed_refresh_keeps_the_policy_and_warns(
    peers: Peers,
    resolver: DnsResolver,
    changed: dict[str, tuple[int, str, bytes]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """§3.3: a valid cached policy still applies; the administrator is alerted (a warning),
    and the domain is not asked again for an hour (§3.3: five minutes or more)."""
    clock = Clock()
    policies = refreshing(resolver, peers, clock)
    assert await policies.policy_for("good.test") is not None
    changed["good.test"] = (404, "text/plain", b"not found")
    clock.now += 43200
    with caplog.at_level(logging.WARNING, logger="pillarbox"):
        assert await policies.refresh() == 0
    [warning] = caplog.records
    assert warning.getMessage() == "policy refresh failed"
    assert warning.__dict__["fields"]["cached"] == "enforce"
    asked = len(peers.policy_asked)
    clock.now += 3599
    assert await policies.refresh() == 0 and len(peers.policy_asked) == asked
    kept = await policies.policy_for("good.test")
    assert kept is not None and kept.mode is Mode.ENFORCE
    del changed["good.test"]
    clock.now += 1
    assert await policies.refresh() == 1


async def test_the_running_queue_refreshes_policies(
    store: SqliteStore,
    peers: Peers,
    resolver: DnsResolver,
    changed: dict[str, tuple[int, str, bytes]],
) -> None:
    """:meth:`QueueRunner.run` keeps the cache fresh while it runs: a policy cached by a
    delivery is fetched again when due, with no mail for its domain."""
    clock = Clock()
    queue = runner(store, resolver, peers)
    assert queue._mta_sts is not None
    policies = MtaStsPolicies(
        resolver,
        verifying_context(peers.ca.bundle),
        port=peers.policy_port,
        timeout=5.0,
        refresh=0.1,  # seconds between rounds here (the clock is the test's)
        clock=clock,
    )
    queue._mta_sts = dataclasses.replace(queue._mta_sts, policies=policies)
    assert await deliver(store, queue, "x@good.test") is None
    assert peers.policy_asked == ["mta-sts.good.test"]
    changed["good.test"] = (200, "text/plain", policy("testing", "mx.good.test"))
    task = asyncio.get_running_loop().create_task(queue.run())
    try:
        clock.now += 86400 / 2
        await asyncio.to_thread(
            wait_for, lambda: len(peers.policy_asked) > 1, "the refresh", timeout=5.0
        )
        # The request is seen before its answer is read and cached: the runner goes on until
        # then (cancelled at once, a loaded machine's refresh was cut off before it stored).
        for _ in range(100):
            refreshed = await policies.policy_for("good.test")
            if refreshed is not None and refreshed.mode is Mode.TESTING:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert peers.policy_asked == ["mta-sts.good.test"] * 2
    assert refreshed is not None and refreshed.mode is Mode.TESTING


# -- §5.1, §10.2: the cache outlives a restart --------------------------------------------------


async def test_cached_policies_outlive_a_restart_and_are_refreshed_on_schedule(
    store: SqliteStore,
    peers: Peers,
    resolver: DnsResolver,
    changed: dict[str, tuple[int, str, bytes]],
) -> None:
    """A new cache over the same store (a restart) applies the policy fetched before it without
    fetching it again, refreshes it when due from the first fetch (not from the restart), and
    the refreshed policy is what the next restart finds; an expired one is not loaded."""
    clock = Clock()
    context = verifying_context(peers.ca.bundle)

    def restarted() -> MtaStsPolicies:
        return MtaStsPolicies(
            resolver, context, port=peers.policy_port, timeout=5.0, store=store, clock=clock
        )

    before = restarted()
    assert await before.load() == 0
    fetched = await before.policy_for("good.test")
    assert fetched is not None and fetched.mode is Mode.ENFORCE
    changed["good.test"] = (200, "text/plain", policy("testing", "mx.good.test"))
    clock.now += 3600
    after = restarted()
    assert await after.load() == 1
    assert await after.policy_for("good.test") == fetched
    assert peers.policy_asked == ["mta-sts.good.test"]  # the TXT id is the same: no fetch
    assert await after.refresh() == 0  # due half a max_age after the fetch, not the restart
    clock.now += 43200 - 3600
    assert await after.refresh() == 1
    assert peers.policy_asked == ["mta-sts.good.test"] * 2
    clock.now += 86399  # the first fetch expired long ago; the refresh has not
    again = restarted()
    assert await again.load() == 1
    refreshed = await again.policy_for("good.test")
    assert refreshed is not None and refreshed.mode is Mode.TESTING
    clock.now += 1
    assert await restarted().load() == 0
    assert await store.sts_policies(datetime.fromtimestamp(0, UTC)) == []  # pruned


# -- §3.3: failed fetches outlive a restart; PostgreSQL nodes share the cache ---------------------


def node(resolver: DnsResolver, peers: Peers, store: Store, clock: Clock) -> MtaStsPolicies:
    """A process's policies over ``store``: a new one is a restart, or another node."""
    context = verifying_context(peers.ca.bundle)
    return MtaStsPolicies(
        resolver, context, port=peers.policy_port, timeout=5.0, store=store, clock=clock
    )


async def test_a_failed_fetch_outlives_a_restart(
    kept: Store, peers: Peers, resolver: DnsResolver
) -> None:
    """RFC 8461 §3.3: the same policy id is not fetched again for five minutes after a failure,
    a restart in between or not; the restarted process still knows why, for the TLS report
    (RFC 8460 §4.3.2.2)."""
    clock = Clock()
    before = node(resolver, peers, kept, clock)
    assert await before.policy_for("html.test") is None  # served as text/html: no policy
    assert peers.policy_asked == ["mta-sts.html.test"]
    clock.now += FETCH_RETRY_SECONDS - 1
    after = node(resolver, peers, kept, clock)
    assert await after.load() == 0
    assert await after.policy_for("html.test") is None
    assert peers.policy_asked == ["mta-sts.html.test"]  # not asked again yet
    failure = after.fetch_failure("html.test")
    assert failure is not None and failure.result_type is ResultType.STS_POLICY_FETCH_ERROR
    assert "text/html" in failure.reason
    clock.now += 1
    assert await after.policy_for("html.test") is None
    assert peers.policy_asked == ["mta-sts.html.test"] * 2


async def test_a_failed_refresh_outlives_a_restart(
    kept: Store, peers: Peers, resolver: DnsResolver, changed: dict[str, tuple[int, str, bytes]]
) -> None:
    """§5.1: a failed refresh keeps the cached "enforce" policy, and the restarted process
    waits the hour before the next refresh as the one before it would have, instead of
    asking at once (the loaded policy is due)."""
    clock = Clock()
    before = node(resolver, peers, kept, clock)
    assert await before.policy_for("good.test") is not None
    changed["good.test"] = (404, "text/plain", b"not found")
    clock.now += 43200
    assert await before.refresh() == 0
    asked = len(peers.policy_asked)
    clock.now += REFRESH_RETRY_SECONDS - 1
    after = node(resolver, peers, kept, clock)
    assert await after.load() == 1
    assert await after.refresh() == 0 and len(peers.policy_asked) == asked
    kept_policy = await after.policy_for("good.test")
    assert kept_policy is not None and kept_policy.mode is Mode.ENFORCE
    del changed["good.test"]
    clock.now += 1
    assert await after.refresh() == 1 and len(peers.policy_asked) == asked + 1
    # The successful refresh forgot the failure, in the store too.
    assert after.fetch_failure("good.test") is None
    again = node(resolver, peers, kept, clock)
    await again.load()
    assert again.fetch_failure("good.test") is None


class CountingStore(SqliteStore):
    """The SQLite store, counting its reads of one domain's MTA-STS cache entry."""

    entry_reads = 0

    async def sts_cache_entry(self, domain: str, now: datetime) -> StsCacheEntry:
        self.entry_reads += 1
        return await super().sts_cache_entry(domain, now)


async def test_a_store_no_other_node_writes_is_not_read_on_a_miss(
    tmp_path: Path, peers: Peers, resolver: DnsResolver
) -> None:
    """SQLite has one server per data directory (the server lock): once ``load`` has put the
    store's policies and failures in memory, memory is all there is, and a delivery to a
    domain without a cached policy reads nothing from the store. It reads again before
    ``load``, after the cache's bound pushed a policy out, and on a store other nodes share
    (PostgreSQL's read-through: the node tests below)."""
    store = CountingStore(tmp_path / "counted.sqlite3")
    await store.open()
    clock = Clock()
    context = verifying_context(peers.ca.bundle)

    def policies(*, shared: bool, cache: PolicyCache | None = None) -> MtaStsPolicies:
        return MtaStsPolicies(
            resolver,
            context,
            port=peers.policy_port,
            timeout=5.0,
            store=store,
            shared=shared,
            cache=cache,
            clock=clock,
        )

    try:
        single = policies(shared=False)
        assert await single.policy_for("plain.test") is None
        assert store.entry_reads == 1  # not loaded yet: the store may know more
        assert await single.load() == 0
        for _ in range(3):
            assert await single.policy_for("plain.test") is None
        fetched = await single.policy_for("good.test")
        assert fetched is not None and fetched.mode is Mode.ENFORCE
        assert await single.policy_for("html.test") is None  # a failed fetch
        assert store.entry_reads == 1

        restarted = policies(shared=False)
        assert await restarted.load() == 1
        assert await restarted.policy_for("good.test") == fetched
        assert await restarted.policy_for("html.test") is None
        assert await restarted.policy_for("plain.test") is None
        assert store.entry_reads == 1
        assert peers.policy_asked == ["mta-sts.good.test", "mta-sts.html.test"]

        bounded = policies(shared=False, cache=PolicyCache(max_entries=1))
        assert await bounded.load() == 1
        assert await bounded.policy_for("plain.test") is None
        assert store.entry_reads == 1
        assert await bounded.policy_for("trial.test") is not None  # good.test pushed out
        assert await bounded.policy_for("plain.test") is None
        assert store.entry_reads == 2

        shared = policies(shared=True)
        assert await shared.load() == 2
        assert await shared.policy_for("plain.test") is None
        assert store.entry_reads == 3
    finally:
        await store.close()


@pytest.fixture
async def nodes(database: TestDatabase) -> AsyncIterator[tuple[Store, Store]]:
    """Two nodes' stores on one PostgreSQL database (skipped when unreachable)."""
    url = database.new_store_url()
    first: Store = PostgresStore(url)
    second: Store = PostgresStore(url)
    await first.open()
    await second.open()
    await provisioning.add_domain(first, "a.test")
    await first.add_account("alice@a.test", "x")
    try:
        yield first, second
    finally:
        await second.close()
        await first.close()


_PG_UNREACHABLE = unreachable_reason()
_needs_postgres = pytest.mark.skipif(_PG_UNREACHABLE is not None, reason=_PG_UNREACHABLE or "")


@_needs_postgres
async def test_a_node_uses_the_policy_another_node_fetched(
    nodes: tuple[Store, Store], peers: Peers, resolver: DnsResolver
) -> None:
    """Node B, started before node A fetched good.test's policy, reads it from the store on
    its first mail to the domain instead of fetching it again; a failure A met holds B off
    the policy host as well."""
    clock = Clock()
    a, b = (node(resolver, peers, store, clock) for store in nodes)
    assert await a.load() == 0 and await b.load() == 0
    fetched = await a.policy_for("good.test")
    assert fetched is not None and fetched.mode is Mode.ENFORCE
    assert await b.policy_for("good.test") == fetched
    assert await a.policy_for("html.test") is None
    clock.now += 60
    assert await b.policy_for("html.test") is None
    assert peers.policy_asked == ["mta-sts.good.test", "mta-sts.html.test"]
    failure = b.fetch_failure("html.test")
    assert failure is not None and failure.result_type is ResultType.STS_POLICY_FETCH_ERROR


@_needs_postgres
async def test_a_node_enforces_another_nodes_policy_an_attacker_strips_from_its_view(
    nodes: tuple[Store, Store], peers: Peers, resolver: DnsResolver
) -> None:
    """§10.2 across nodes: A fetched good.test's "enforce" policy; B, whose DNS an attacker
    now answers without the ``_mta-sts`` record, never saw it, yet applies it (from the
    store) rather than delivering as without MTA-STS."""
    clock = Clock()
    first, second = nodes
    fetched = await node(resolver, peers, first, clock).policy_for("good.test")
    assert fetched is not None and fetched.mode is Mode.ENFORCE
    async with serve_zones(attacked_zone()) as dns:
        attacked = DnsResolver(nameserver=f"127.0.0.1:{dns.port}", timeout=2.0)
        assert await node(attacked, peers, second, clock).policy_for("good.test") == fetched
    assert peers.policy_asked == ["mta-sts.good.test"]


@_needs_postgres
async def test_two_queue_nodes_fetch_a_policy_once(
    nodes: tuple[Store, Store], peers: Peers, resolver: DnsResolver
) -> None:
    """The queue runners of two nodes deliver to good.test under its "enforce" policy; the
    second uses the policy the first fetched."""
    first, second = nodes
    assert await deliver(first, runner(first, resolver, peers), "x@good.test") is None
    assert await deliver(second, runner(second, resolver, peers), "y@good.test") is None
    assert rcpts(peers.good) == ["x@good.test", "y@good.test"]
    assert peers.policy_asked == ["mta-sts.good.test"]


@_needs_postgres
async def test_a_node_takes_a_refresh_another_node_made(
    nodes: tuple[Store, Store],
    peers: Peers,
    resolver: DnsResolver,
    changed: dict[str, tuple[int, str, bytes]],
) -> None:
    """Both nodes hold good.test's policy; A refreshes it first (the policy host now says
    "testing"). B's refresh, due as well, finds the later fetch in the store and takes it
    instead of fetching; so does a failed refresh of A's hold B off for the hour."""
    clock = Clock()
    a, b = (node(resolver, peers, store, clock) for store in nodes)
    assert await a.policy_for("good.test") is not None
    assert await b.policy_for("good.test") is not None
    assert peers.policy_asked == ["mta-sts.good.test"]
    changed["good.test"] = (200, "text/plain", policy("testing", "mx.good.test"))
    clock.now += 43200
    assert await a.refresh() == 1
    assert await b.refresh() == 0
    assert peers.policy_asked == ["mta-sts.good.test"] * 2
    refreshed = await b.policy_for("good.test")
    assert refreshed is not None and refreshed.mode is Mode.TESTING
    changed["good.test"] = (404, "text/plain", b"not found")
    clock.now += 43200
    assert await a.refresh() == 0  # failed
    assert await b.refresh() == 0
    assert peers.policy_asked == ["mta-sts.good.test"] * 3
    clock.now += REFRESH_RETRY_SECONDS
    assert await b.refresh() == 0  # B's turn: it fails too, and asks
    assert peers.policy_asked == ["mta-sts.good.test"] * 4


def attacked_zone() -> StaticZones:
    """good.test as an attacker on the path rewrites it: the ``_mta-sts`` record stripped, the
    MX pointing at a host of theirs (offering STARTTLS with a certificate for another name)."""
    records = [
        DnsRecord("good.test", "MX", "10 mx.evil.test."),
        DnsRecord("mx.evil.test", "A", WRONG_CERT_MX),
    ]
    return StaticZones.from_records(records, origins=["good.test", "evil.test"])


def submit(live: LiveServer, recipient: str) -> None:
    with smtplib.SMTP("127.0.0.1", live.port("submission")) as client:
        client.login("alice@a.test", TEST_PASSWORD)
        client.sendmail("alice@a.test", [recipient], RAW)


def queued_reply(live: LiveServer, recipient: str) -> str | None:
    for message in live.call(live.store.list_queue()):
        for queued in message.recipients:
            if queued.address == recipient and queued.last_reply is not None:
                return queued.last_reply
    return None


async def test_a_restarted_server_keeps_enforcing_a_policy_an_attacker_strips(
    peers: Peers, tmp_path: Path
) -> None:
    """RFC 8461 §5.1, §10.2, with the real server: it delivers to good.test under its
    "enforce" policy, is restarted, and an attacker now strips the TXT record and points the
    MX at their host. The policy fetched before the restart still applies (until its max_age
    ends): the host is refused and the mail stays queued, instead of going to the attacker."""
    async with serve_zones(zones()) as dns:
        config = loopback_config(
            tmp_path / "data",
            only=("submission",),
            dns=cfg.DnsSection(nameserver=f"127.0.0.1:{dns.port}", timeout=2.0),
            queue=cfg.QueueSection(
                remote_port=peers.smtp_port,
                connect_timeout=2.0,
                mta_sts_ca_bundle=peers.ca.bundle,
                mta_sts_port=peers.policy_port,
            ),
        )
        with LiveServer(config) as live:
            live.add_domain("a.test")
            live.add_account("alice@a.test", TEST_PASSWORD)
            await asyncio.to_thread(submit, live, "x@good.test")
            await asyncio.to_thread(
                wait_for, lambda: rcpts(peers.good) == ["x@good.test"], "the first delivery"
            )
    assert peers.policy_asked == ["mta-sts.good.test"]
    async with serve_zones(attacked_zone()) as dns:
        dns_section = cfg.DnsSection(nameserver=f"127.0.0.1:{dns.port}", timeout=2.0)
        with LiveServer(dataclasses.replace(config, dns=dns_section)) as live:
            await asyncio.to_thread(submit, live, "y@good.test")
            reply = await asyncio.to_thread(
                wait_for, lambda: queued_reply(live, "y@good.test"), "the refused attempt"
            )
    assert (
        reply
        == "mx.evil.test: 451 4.7.0 MTA-STS policy of good.test (enforce) does not list the host"
    )
    assert peers.wrong_cert.messages == []
    assert peers.policy_asked == ["mta-sts.good.test"]
