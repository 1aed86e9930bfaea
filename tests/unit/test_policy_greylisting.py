"""Greylisting's decisions (RFC 6647): the timing rule both store backends run
(:meth:`GreylistRules.step`, time an argument), the triplet's parts (client network, sender
normalisation), the ``[greylisting]`` config checks, the opt-outs (a recipient domain
skipped; a sender whose SPF passes and, selectively, a client on no DNSBL, both asked of a
loopback DNS server) and the pruning job (on a real SQLite store). The store's side is in
the contract suite; the MX's in tests/interop/test_greylisting.py and
tests/interop/test_greylisting_postfix.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.errors import ConfigError
from pillarbox.mail.address import parse_address
from pillarbox.observability.log import Log
from pillarbox.observability.metrics import GREYLIST_OUTCOMES, Metrics
from pillarbox.policy import dnsbl, greylisting, spf
from pillarbox.policy.greylisting import (
    ALLOWED,
    LISTED,
    RECIPIENT_SKIPPED,
    SPF_PASSED,
    UNLISTED,
    Greylist,
    client_network,
    prune_periodically,
    rules_of,
    sender_key,
)
from pillarbox.smtp import replies
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.types import GreylistRules, GreyOutcome, GreyTriplet, Sighting
from pillarbox.testing.dnszone import ZoneRecord, serve_records

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RULES = GreylistRules(
    delay=timedelta(minutes=5),
    retry_window=timedelta(days=2),
    lifetime=timedelta(days=35),
    auto_allow_clients=5,
)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def waiting(since: datetime = T0) -> Sighting:
    """A triplet first tried at ``since`` that has not passed."""
    return Sighting(since, False, since + RULES.retry_window)


def passed(last: datetime = T0) -> Sighting:
    """A triplet that passed, last seen at ``last``."""
    return Sighting(T0 - timedelta(hours=1), True, last + RULES.lifetime)


@pytest.mark.parametrize(
    ("seen", "client_passes", "now", "outcome", "after"),
    [
        # First sight: remembered for the retry window, deferred.
        (None, 0, T0, GreyOutcome.NEW, waiting()),
        # A retry before the delay: deferred, the delay still counted from the first attempt.
        (waiting(), 0, minutes(4.99), GreyOutcome.EARLY, waiting()),
        # At the delay and until the window closes: passes, remembered for its lifetime.
        (
            waiting(),
            0,
            minutes(5),
            GreyOutcome.RETRIED,
            Sighting(T0, True, minutes(5) + RULES.lifetime),
        ),
        (
            waiting(),
            0,
            T0 + RULES.retry_window,
            GreyOutcome.RETRIED,
            Sighting(T0, True, T0 + RULES.retry_window + RULES.lifetime),
        ),
        # After the window: starts over.
        (
            waiting(),
            0,
            T0 + RULES.retry_window + timedelta(seconds=1),
            GreyOutcome.NEW,
            waiting(T0 + RULES.retry_window + timedelta(seconds=1)),
        ),
        # A passed triplet passes; its memory is not rewritten within a day of its renewal...
        (passed(), 0, minutes(60), GreyOutcome.KNOWN, passed()),
        (passed(), 0, minutes(24 * 60 - 1), GreyOutcome.KNOWN, passed()),
        # ... and renewed from now after that.
        (
            passed(),
            0,
            minutes(24 * 60),
            GreyOutcome.KNOWN,
            Sighting(passed().first_seen, True, minutes(24 * 60) + RULES.lifetime),
        ),
        # ... until its lifetime ends: then it starts over.
        (
            passed(),
            0,
            T0 + RULES.lifetime + timedelta(seconds=1),
            GreyOutcome.NEW,
            waiting(T0 + RULES.lifetime + timedelta(seconds=1)),
        ),
        # A client network with enough passed triplets passes new ones (and early ones).
        (None, 5, T0, GreyOutcome.CLIENT, Sighting(T0, True, T0 + RULES.lifetime)),
        (
            waiting(),
            5,
            minutes(1),
            GreyOutcome.CLIENT,
            Sighting(minutes(1), True, minutes(1) + RULES.lifetime),
        ),
        # One short of the threshold: greylisted as anyone.
        (None, 4, T0, GreyOutcome.NEW, waiting()),
    ],
)
def test_step(
    seen: Sighting | None,
    client_passes: int,
    now: datetime,
    outcome: GreyOutcome,
    after: Sighting,
) -> None:
    assert RULES.step(seen, client_passes, now) == (outcome, after)


def test_auto_allow_off_never_counts_clients() -> None:
    rules = GreylistRules(
        delay=RULES.delay, retry_window=RULES.retry_window, lifetime=RULES.lifetime
    )
    assert rules.step(None, 1000, T0)[0] is GreyOutcome.NEW


def test_only_new_and_early_defer() -> None:
    assert {o for o in GreyOutcome if not o.passes} == {GreyOutcome.NEW, GreyOutcome.EARLY}


def test_every_outcome_has_its_metric_series() -> None:
    assert set(GREYLIST_OUTCOMES) == {o.value for o in GreyOutcome} | {
        ALLOWED,
        LISTED,
        SPF_PASSED,
        RECIPIENT_SKIPPED,
        UNLISTED,
    }


@pytest.mark.parametrize(
    ("sender", "key"),
    [
        (None, ""),
        ("Bob@Example.NET", "bob@example.net"),
        # VERP and mailing-list extensions, counters standing alone.
        ("list-bounces+alice=example.org@lists.example.net", "list-bounces@lists.example.net"),
        ("bounce-1234-56@news.example.com", "bounce-#-#@news.example.com"),
        ("msg.2026.11.30@example.com", "msg.#.#.#@example.com"),
        ("bob2@example.com", "bob2@example.com"),  # digits inside a word stay
        # BATV: the tag changes with every message.
        ("prvs=1234abcdef=bob@example.net", "bob@example.net"),
        ("PRVS=0123ABCDEF=Bob@example.net", "bob@example.net"),
        ("prvs=short=bob@example.net", "prvs=short=bob@example.net"),
        # SRS: hash and timestamp change from day to day.
        ("SRS0=HHH1=TT=orig.example=bob@fwd.example", "srs0=#=#=orig.example=bob@fwd.example"),
        ("SRS0+ab12=T2=orig.example=bob@fwd.example", "srs0=#=#=orig.example=bob@fwd.example"),
        (
            "SRS1=x9Y1=first.example==ab12=T2=orig.example=bob@fwd.example",
            "srs1=#=first.example==#=#=orig.example=bob@fwd.example",
        ),
        ("+only@example.com", "+only@example.com"),  # nothing before the +: kept
        # Found by fuzz/greylist_keys.py: a general address literal may hold "@" (RFC 5321
        # §4.1.3); the key was split at it, the domain cut and its numbers replaced.
        ("a+b@[x-tag:1@2]", "a@[x-tag:1@2]"),
        ("bounce-7@[x-tag:1@2]", "bounce-#@[x-tag:1@2]"),
    ],
)
def test_sender_key(sender: str | None, key: str) -> None:
    assert sender_key(None if sender is None else parse_address(sender)) == key


@pytest.mark.parametrize(
    ("client", "v4", "v6", "network"),
    [
        ("192.0.2.77", 24, 64, "192.0.2.0/24"),
        ("192.0.2.77", 32, 64, "192.0.2.77/32"),
        ("2001:db8:1:2:3:4:5:6", 24, 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:3:4:5:6", 24, 48, "2001:db8:1::/48"),
        # A dual-stack listener sees IPv4 clients as mapped addresses: the IPv4 network.
        ("::ffff:192.0.2.77", 24, 64, "192.0.2.0/24"),
        ("/run/pillarbox.sock", 24, 64, "/run/pillarbox.sock"),
    ],
)
def test_client_network(client: str, v4: int, v6: int, network: str) -> None:
    assert client_network(client, v4, v6) == network


def test_rules_of_the_config() -> None:
    section = cfg.GreylistingSection(delay=60.0, auto_allow_clients=0)
    assert rules_of(section) == GreylistRules(
        delay=timedelta(minutes=1),
        retry_window=timedelta(days=2),
        lifetime=timedelta(days=35),
        auto_allow_clients=0,
    )


def test_off_by_default() -> None:
    assert cfg.Config().greylisting.enabled is False


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"delay": 0}, "greylisting.delay"),
        ({"delay": 600, "retry_window": 600}, "greylisting.retry_window"),
        ({"lifetime": -1}, "greylisting.lifetime"),
        ({"prune_interval": 0}, "greylisting.prune_interval"),
        ({"ipv4_prefix": 33}, "greylisting.ipv4_prefix"),
        ({"ipv6_prefix": -1}, "greylisting.ipv6_prefix"),
        ({"auto_allow_clients": -1}, "greylisting.auto_allow_clients"),
        ({"allow_networks": ["192.0.2.300/24"]}, "greylisting.allow_networks"),
        ({"allow_sender_domains": ["bob@example.com"]}, "greylisting.allow_sender_domains"),
        ({"allow_sender_domains": ["."]}, "greylisting.allow_sender_domains"),
        ({"allow_sender_domains": ["exa mple.com"]}, "greylisting.allow_sender_domains"),
        ({"skip_recipient_domains": ["a@b.example"]}, "greylisting.skip_recipient_domains"),
        ({"only_listed_clients": True}, "greylisting.only_listed_clients"),
    ],
)
def test_config_errors_name_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg.from_mapping({"greylisting": {"enabled": True, **raw}})
    assert info.value.key == key


async def test_the_pruning_job_forgets_expired_triplets(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "pillarbox.sqlite3")
    await store.open()
    try:
        triplet = GreyTriplet("192.0.2.0/24", "bob@example.net", "alice@example.org")
        long_ago = datetime.now(UTC) - timedelta(days=3)
        assert await store.check_greylist(triplet, long_ago, RULES) is GreyOutcome.NEW
        stopping = asyncio.Event()
        job = asyncio.create_task(prune_periodically(store, 0.05, stopping))
        await asyncio.sleep(0.2)
        stopping.set()
        await asyncio.wait_for(job, 1.0)
        # Already gone: the job removed it (without the job, this prune would find it).
        assert await store.prune_greylist(datetime.now(UTC)) == 0
    finally:
        await store.close()


async def test_greylist_answers_per_attempt_and_a_store_failure_is_a_server_fault(
    tmp_path: Path,
) -> None:
    section = cfg.GreylistingSection(
        enabled=True, allow_networks=("198.51.100.0/24",), allow_sender_domains=("bücher.example",)
    )
    store = SqliteStore(tmp_path / "pillarbox.sqlite3")
    metrics = Metrics()
    greylist = Greylist(section, ("127.0.0.0/8",), store, metrics)
    assert greylist.exempt("127.0.0.1") and greylist.exempt("::ffff:198.51.100.9")
    assert not greylist.exempt("192.0.2.1")
    log = Log("test")
    alice = parse_address("alice@example.org")
    await store.open()
    try:
        bob = parse_address("bob@example.net")
        assert await greylist.check("192.0.2.1", bob, "mx.example.net", alice, (), log) == (
            replies.GREYLISTED
        )
        # An allowed sender domain (given as a U-label), with its subdomains: never deferred.
        news = parse_address("news@lists.xn--bcher-kva.example")
        assert await greylist.check("192.0.2.1", news, "mx.example.net", alice, (), log) is None
    finally:
        await store.close()
    # A closed store stands for a broken one: a temporary server fault, not a pass.
    assert await greylist.check("192.0.2.1", bob, "mx", alice, (), log) == replies.LOCAL_ERROR
    counted = {
        o: metrics.registry.get_sample_value(
            "pillarbox_greylisting_decisions_total", {"outcome": o}
        )
        for o in GREYLIST_OUTCOMES
    }
    assert counted == {o: 1.0 if o in ("new", ALLOWED) else 0.0 for o in GREYLIST_OUTCOMES}


def decided(metrics: Metrics) -> dict[str, float]:
    """The decisions counted so far, by outcome (the ones never taken left out)."""
    counted = {
        o: metrics.registry.get_sample_value(
            "pillarbox_greylisting_decisions_total", {"outcome": o}
        )
        for o in GREYLIST_OUTCOMES
    }
    return {o: n for o, n in counted.items() if n}


async def test_a_skipped_recipient_domain_passes_and_is_not_remembered(tmp_path: Path) -> None:
    section = cfg.GreylistingSection(enabled=True, skip_recipient_domains=("Bücher.example",))
    store = SqliteStore(tmp_path / "pillarbox.sqlite3")
    metrics = Metrics()
    greylist = Greylist(section, (), store, metrics)
    plain_metrics = Metrics()
    plain = Greylist(cfg.GreylistingSection(enabled=True), (), store, plain_metrics)
    log = Log("test")
    bob = parse_address("bob@example.net")
    await store.open()
    try:
        for rcpt in ("anna@xn--bcher-kva.example", "sales@eu.xn--bcher-kva.example"):
            assert (
                await greylist.check("192.0.2.1", bob, "mx", parse_address(rcpt), (), log) is None
            )
        other = parse_address("carl@example.org")
        assert await greylist.check("192.0.2.1", bob, "mx", other, (), log) == replies.GREYLISTED
        # Nothing of the skipped ones was kept: without the opt-out, anna's triplet is new.
        anna = parse_address("anna@xn--bcher-kva.example")
        assert await plain.check("192.0.2.1", bob, "mx", anna, (), log) == replies.GREYLISTED
    finally:
        await store.close()
    assert decided(metrics) == {RECIPIENT_SKIPPED: 2.0, "new": 1.0}
    assert decided(plain_metrics) == {"new": 1.0}


SPF_RECORDS = [
    ZoneRecord("sender.test", "TXT", "v=spf1 ip4:192.0.2.0/24 -all"),
    ZoneRecord("mail.sender.test", "TXT", "v=spf1 ip4:192.0.2.25 -all"),
    ZoneRecord("nospf.test", "TXT", "just some text"),
]


async def test_with_allow_spf_pass_a_sender_whose_spf_passes_is_not_deferred(
    tmp_path: Path,
) -> None:
    """Asked of a loopback DNS server through the real SPF evaluator, and only for a triplet
    that would be deferred; any other result (fail, none, a failing server) defers as ever."""
    section = cfg.GreylistingSection(enabled=True, allow_spf_pass=True, delay=60.0)
    store = SqliteStore(tmp_path / "pillarbox.sqlite3")
    metrics = Metrics()
    asked: list[tuple[str, str, str]] = []
    log = Log("test")
    alice = parse_address("alice@example.org")
    async with serve_records(SPF_RECORDS, failing=["broken.test"]) as resolver:
        limits = spf.SpfLimits(timeout=2.0)

        async def check(ip: str, mail_from: str, helo: str) -> spf.SpfOutcome:
            asked.append((ip, mail_from, helo))
            return await spf.check_mail_from(resolver, ip, mail_from, helo, limits=limits)

        greylist = Greylist(section, (), store, metrics, spf_check=check)
        await store.open()
        try:
            sender = parse_address("news+123@sender.test")
            # SPF passes for the envelope domain from its network: not deferred.
            assert await greylist.check("192.0.2.9", sender, "x", alice, (), log) is None
            # The same sender from elsewhere (SPF fails), a domain without SPF, one whose DNS
            # fails (temperror): deferred as before.
            assert await greylist.check("198.51.100.9", sender, "x", alice, (), log) == (
                replies.GREYLISTED
            )
            for address in ("a@nospf.test", "a@broken.test"):
                assert (
                    await greylist.check("192.0.2.9", parse_address(address), "x", alice, (), log)
                    == replies.GREYLISTED
                )
            # The null sender is checked by its HELO name (RFC 7208 §2.4).
            assert (
                await greylist.check("192.0.2.25", None, "mail.sender.test", alice, (), log) is None
            )
            assert await greylist.check("192.0.2.26", None, "mail.sender.test", alice, (), log) == (
                replies.GREYLISTED
            )
            # A triplet that passes on its own asks nothing of the DNS.
            before = len(asked)
            waited = GreyTriplet("198.51.100.0/24", "news@sender.test", alice.key)
            later = datetime.now(UTC) + timedelta(seconds=120)
            assert (await store.check_greylist(waited, later, rules_of(section))).passes
            assert await greylist.check("198.51.100.9", sender, "x", alice, (), log) is None
            assert len(asked) == before
        finally:
            await store.close()
    assert asked[0] == ("192.0.2.9", "news+123@sender.test", "x")
    assert ("192.0.2.25", "", "mail.sender.test") in asked
    assert decided(metrics) == {SPF_PASSED: 2.0, "new": 3.0, "early": 1.0, "known": 1.0}


def test_allow_spf_pass_without_an_spf_check_is_a_programming_error(tmp_path: Path) -> None:
    section = cfg.GreylistingSection(enabled=True, allow_spf_pass=True)
    with pytest.raises(ValueError, match="allow_spf_pass"):
        Greylist(section, (), SqliteStore(tmp_path / "s.sqlite3"), Metrics())


async def test_with_only_listed_clients_a_client_on_no_list_passes_unremembered(
    tmp_path: Path,
) -> None:
    """Selective greylisting through the real DNSBL lookup (RFC 5782) of a loopback DNS server
    (``check_private``, as the test network is not a public one): a listed client is greylisted,
    one on no list passes and is not remembered, one whose lookup fails is greylisted."""
    section = cfg.GreylistingSection(enabled=True, only_listed_clients=True)
    store = SqliteStore(tmp_path / "pillarbox.sqlite3")
    metrics = Metrics()
    log = Log("test")
    alice = parse_address("alice@example.org")
    bob = parse_address("bob@example.net")
    records = [ZoneRecord("1.2.0.192.bl.test", "A", "127.0.0.2")]
    async with serve_records(records, failing=["7.100.51.198.down.test"]) as resolver:

        def listings_in(zone: str) -> greylisting.ClientListings:
            async def listings(client_ip: str) -> list[dnsbl.Listing]:
                return await dnsbl.check(
                    resolver,
                    client_ip=client_ip,
                    ip_zones=[dnsbl.DnsblZone(zone, 1.0)],
                    domains=(),
                    domain_zones=(),
                    timeout=2.0,
                    check_private=True,
                )

            return listings

        greylist = Greylist(section, (), store, metrics, client_listings=listings_in("bl.test"))
        failing = Greylist(section, (), store, metrics, client_listings=listings_in("down.test"))
        await store.open()
        try:
            assert await greylist.check("192.0.2.1", bob, "x", alice, (), log) == (
                replies.GREYLISTED
            )
            assert await greylist.check("203.0.113.7", bob, "x", alice, (), log) is None
            assert await failing.check("198.51.100.7", bob, "x", alice, (), log) == (
                replies.GREYLISTED
            )
            # The greylisted ones were remembered; the unlisted one was not (new, not early).
            now = datetime.now(UTC)
            for network, outcome in (
                ("192.0.2.0/24", GreyOutcome.EARLY),
                ("198.51.100.0/24", GreyOutcome.EARLY),
                ("203.0.113.0/24", GreyOutcome.NEW),
            ):
                triplet = GreyTriplet(network, "bob@example.net", alice.key)
                assert await store.check_greylist(triplet, now, rules_of(section)) is outcome
        finally:
            await store.close()
    assert decided(metrics) == {UNLISTED: 1.0, "new": 2.0}
    with pytest.raises(ValueError, match="only_listed_clients"):
        Greylist(section, (), store, Metrics())
