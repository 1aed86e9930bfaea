"""RFC 8461 (MTA-STS) core: the TXT record, the policy file, MX matching, host plans, the
cache. Byte-exact inputs; each table cites the section it checks."""

from __future__ import annotations

import pytest

from pillarbox.dns.records import mta_sts_id, mta_sts_policy_text
from pillarbox.queue.mtasts import (
    FETCH_RETRY_SECONDS,
    REFRESH_RETRY_SECONDS,
    CachedPolicy,
    FailedFetch,
    HostPlan,
    InvalidPolicy,
    Mode,
    Policy,
    PolicyCache,
    StsRecord,
    TlsPlan,
    host_plan,
    mx_matches,
    parse_policy,
    parse_record,
)
from pillarbox.queue.tlsrpt import ResultType

# -- §3.1 TXT record ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        ([b"v=STSv1; id=20160831085700Z;"], "20160831085700Z"),  # §3.1's example
        ([b"v=STSv1; id=abc"], "abc"),  # the final delimiter is optional
        ([b"v=STSv1;id=abc"], "abc"),  # *WSP
        ([b"v=STSv1 ;\tid=abc ; "], "abc"),
        ([b"v=STSv1; ext=x.y-z; id=abc"], "abc"),  # order is not significant
        ([b"v=STSv1; id=abc; id=def"], "abc"),  # §3.2: a repeated field keeps the first
        ([b"v=STSv1; id=" + b"a" * 32], "a" * 32),  # 1*32
        ([b"v=spf1 -all", b"v=STSv1; id=abc"], "abc"),  # others are discarded
    ],
)
def test_record_parses(texts: list[bytes], expected: str) -> None:
    assert parse_record(texts) == StsRecord(expected)


@pytest.mark.parametrize(
    "texts",
    [
        [],
        [b"v=STSv1; id=abc", b"v=STSv1; id=def"],  # §3.1: not exactly one record
        [b"v=STSv1"],  # no field
        [b"v=STSv1;"],
        [b"v=STSv1; ext=1"],  # id is required
        [b"id=abc; v=STSv1"],  # MUST begin with sts-version
        [b"v=STSv2; id=abc"],
        [b"v=stsv1; id=abc"],  # %s: case-sensitive
        [b"v=STSv1; id=" + b"a" * 33],
        [b"v=STSv1; id=ab-c"],  # ALPHA / DIGIT only
        [b"v=STSv1; id="],
        [b"v=STSv1; id=abc; ext=a b"],  # SP is not an ext-value character
        [b"v=STSv1; id=abc; =x"],
        [b"v=STSv1; id=abc;; x=y"],
        [b"v=STSv1; id=\xe9t\xe9"],  # MUST be US-ASCII
    ],
)
def test_record_is_none(texts: list[bytes]) -> None:
    assert parse_record(texts) is None


def test_our_own_record_parses() -> None:
    """The record :mod:`pillarbox.dns.records` tells the admin to publish."""
    policy = mta_sts_policy_text(["mx.a.test"], mode="enforce", max_age=86400)
    record = parse_record([f"v=STSv1; id={mta_sts_id(policy)}".encode()])
    assert record == StsRecord(mta_sts_id(policy))


# -- §3.2 policy file -----------------------------------------------------------------------------

EXAMPLE = (
    b"version: STSv1\r\n"
    b"mode: enforce\r\n"
    b"mx: mail.example.com\r\n"
    b"mx: *.example.net\r\n"
    b"mx: backupmx.example.com\r\n"
    b"max_age: 604800\r\n"
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            EXAMPLE,
            Policy(
                Mode.ENFORCE,
                ("mail.example.com", "*.example.net", "backupmx.example.com"),
                604800,
            ),
        ),
        (EXAMPLE.replace(b"\r\n", b"\n"), None),  # LF alone is a sts-policy-term
        (EXAMPLE.removesuffix(b"\r\n"), None),  # the last term is optional
        (  # fields in any order, WSP around values, names of MX hosts in any case
            b"max_age:86400 \nmx:\tMX.A.test\nmode: testing\nversion: STSv1\n",
            Policy(Mode.TESTING, ("mx.a.test",), 86400),
        ),
        (b"version: STSv1\nmode: none\nmax_age: 0\n", Policy(Mode.NONE, (), 0)),  # no mx: ok
        (  # a repeated field: the first counts (§3.2); unknown fields are ignored
            b"version: STSv1\nmode: testing\nmode: enforce\nmx: a.test\nmax_age: 1\n"
            b"max_age: 2\nx_ext.1: some value \xc3\xa9\n",
            Policy(Mode.TESTING, ("a.test",), 1),
        ),
        (  # max_age at its limit
            b"version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557600\n",
            Policy(Mode.ENFORCE, ("a.test",), 31557600),
        ),
    ],
)
def test_policy_parses(body: bytes, expected: Policy | None) -> None:
    assert parse_policy(body) == (expected or parse_policy(EXAMPLE))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"version: STSv1\nmode: enforce\nmax_age: 86400\n",  # no mx outside mode none
        b"mode: enforce\nmx: a.test\nmax_age: 86400\n",  # no version
        b"version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 86400\n",
        b"Version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 86400\n",  # %s: case-sensitive
        b"version: STSv1\nmode: Enforce\nmx: a.test\nmax_age: 86400\n",
        b"version: STSv1\nmode: strict\nmx: a.test\nmax_age: 86400\n",
        b"version: STSv1\nmode: enforce\nmx: a.test\n",  # no max_age
        b"version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557601\n",  # above the limit
        b"version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 12345678901\n",  # 1*10DIGIT
        b"version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n",
        b"version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1e5\n",
        b"version: STSv1\nmode: enforce\nmx: *.*.a.test\nmax_age: 86400\n",
        b"version: STSv1\nmode: enforce\nmx: a*.a.test\nmax_age: 86400\n",
        b"version: STSv1\nmode: enforce\nmx: a.test.\nmax_age: 86400\n",  # RFC 5321 Domain
        b"version: STSv1\nmode: enforce\nmx: -a.test\nmax_age: 86400\n",
        b"version: STSv1\nmode: enforce\nmx:\nmax_age: 86400\n",
        b"version: STSv1\nmode: enforce\nmx: a.test b.test\nmax_age: 86400\n",
        b"version: STSv1\n\nmode: enforce\nmx: a.test\nmax_age: 86400\n",  # a blank line
        b"version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 86400\n\n",
        b"version STSv1\nmode: enforce\nmx: a.test\nmax_age: 86400\n",  # no ":"
        b" version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 86400\n",
        b"version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 86400\nx: a\x01b\n",  # CTL
        b"version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 86400\nx:\n",  # empty value
        b"version: STSv1\rmode: enforce\rmx: a.test\rmax_age: 86400\r",  # CR alone ends nothing
        b"version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 86400\nx: \xff\n",  # not UTF-8
        b"<html><body>not found</body></html>\n",
    ],
)
def test_policy_is_invalid(body: bytes) -> None:
    with pytest.raises(InvalidPolicy):
        parse_policy(body)


def test_our_own_policy_parses() -> None:
    """The file our web app serves (:func:`pillarbox.dns.records.mta_sts_policy_text`)."""
    text = mta_sts_policy_text(["mx.a.test"], mode="testing", max_age=86400)
    assert parse_policy(text.encode()) == Policy(Mode.TESTING, ("mx.a.test",), 86400)


# -- §4.1 MX host validation ----------------------------------------------------------------------

POLICY = Policy(Mode.ENFORCE, ("mail.example.com", "*.example.net"), 86400)


@pytest.mark.parametrize(
    ("host", "matches"),
    [
        ("mail.example.com", True),
        ("MAIL.Example.COM", True),
        ("mail.example.com.", True),  # the root label is no label
        ("example.com", False),
        ("backup.example.com", False),
        ("mx1.example.net", True),  # §4.1: "*.example.com" matches "mail.example.com"
        ("example.net", False),  # ... but not "example.com"
        ("foo.bar.example.net", False),  # ... nor "foo.bar.example.com"
        (".example.net", False),
        ("mx1.example.net.evil", False),
        ("xexample.net", False),
    ],
)
def test_mx_matching(host: str, matches: bool) -> None:
    assert mx_matches(POLICY, host) is matches


# -- §5 policy application ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "host", "plan"),
    [
        (Mode.ENFORCE, "mail.example.com", HostPlan(TlsPlan.VERIFIED)),
        (Mode.ENFORCE, "other.example.com", HostPlan(TlsPlan.REFUSED, mx_mismatch=True)),
        (Mode.TESTING, "mail.example.com", HostPlan(TlsPlan.PROBED)),
        (Mode.TESTING, "other.example.com", HostPlan(TlsPlan.OPPORTUNISTIC, mx_mismatch=True)),
        (Mode.NONE, "other.example.com", HostPlan(TlsPlan.OPPORTUNISTIC)),
    ],
)
def test_host_plan(mode: Mode, host: str, plan: HostPlan) -> None:
    assert host_plan(Policy(mode, POLICY.mx, 86400), host) == plan


def test_no_policy_is_opportunistic() -> None:
    assert host_plan(None, "anything.test") == HostPlan(TlsPlan.OPPORTUNISTIC)


# -- §5.1, §3.3 cache -----------------------------------------------------------------------------


def test_cache_keeps_a_policy_for_max_age_under_one_id() -> None:
    cache = PolicyCache()
    record = StsRecord("one")
    assert cache.fetch_due("a.test", record, 1000.0)
    cache.store("a.test", CachedPolicy(POLICY, "one", 1000.0))
    assert not cache.fetch_due("a.test", record, 1000.0 + 86399)
    assert cache.fetch_due("a.test", StsRecord("two"), 1001.0)  # a new id: fetch again
    assert cache.get("a.test", 1000.0 + 86399) is not None
    # §3.2: max_age from the fetch; expired, it is forgotten and fetched again.
    assert cache.get("a.test", 1000.0 + 86400) is None
    assert cache.fetch_due("a.test", record, 1000.0 + 86400)


def failed(policy_id: str, when: float) -> FailedFetch:
    return FailedFetch(policy_id, when, ResultType.STS_POLICY_FETCH_ERROR, "HTTP status 404")


def test_cache_waits_after_a_failed_fetch_of_one_id() -> None:
    cache = PolicyCache()
    record = StsRecord("one")
    cache.fetch_failed("a.test", failed("one", 0.0))
    assert not cache.fetch_due("a.test", record, FETCH_RETRY_SECONDS - 1)  # §3.3: 5 minutes
    assert cache.fetch_due("a.test", StsRecord("two"), 1.0)  # per version id
    assert cache.fetch_due("a.test", record, FETCH_RETRY_SECONDS)


def test_the_later_of_two_policies_or_failures_counts_whichever_comes_first() -> None:
    """Another node's policy or failure, read from the store, may be older than the one held
    (the module notes): it does not replace it; a failure no later than the policy is stale."""
    cache = PolicyCache()
    cache.store("a.test", CachedPolicy(POLICY, "two", 2000.0))
    cache.store("a.test", CachedPolicy(POLICY, "one", 1000.0))
    kept = cache.get("a.test", 2000.0)
    assert kept is not None and kept.id == "two"
    cache.fetch_failed("a.test", failed("three", 2000.0))
    assert cache.failure("a.test") is None  # not after the policy held
    cache.fetch_failed("a.test", failed("three", 3000.0))
    cache.fetch_failed("a.test", failed("three", 2500.0))
    assert cache.failure("a.test") == failed("three", 3000.0)
    assert not cache.fetch_due("a.test", StsRecord("three"), 3000.0 + FETCH_RETRY_SECONDS - 1)
    cache.store("a.test", CachedPolicy(POLICY, "three", 2900.0))  # fetched before the failure
    assert cache.failure("a.test") == failed("three", 3000.0)
    cache.store("a.test", CachedPolicy(POLICY, "three", 3100.0))  # a success after it
    assert cache.failure("a.test") is None


def test_cache_is_bounded() -> None:
    cache = PolicyCache(max_entries=2)
    for n, domain in enumerate(["a.test", "b.test", "c.test"]):
        cache.store(domain, CachedPolicy(POLICY, "x", float(n)))
    assert cache.get("a.test", 3.0) is None
    assert cache.get("c.test", 3.0) is not None


#: A week-long policy, as §3.2 expects them ("weeks or greater").
WEEK = Policy(Mode.ENFORCE, ("mail.example.com",), 7 * 86400)


def test_a_cached_policy_is_refreshed_a_day_after_its_fetch() -> None:
    """§3.3 SHOULD: "proactively refresh cached policies before they expire; a suggested
    refresh frequency is once per day"."""
    cache = PolicyCache()
    assert cache.next_refresh(86400) is None
    cache.store("a.test", CachedPolicy(WEEK, "one", 1000.0))
    assert cache.next_refresh(86400) == 1000.0 + 86400
    assert cache.refresh_due(1000.0 + 86399, 86400) == []
    assert cache.refresh_due(1000.0 + 86400, 86400) == ["a.test"]
    # Expired, it is no longer refreshed: the next mail fetches it (§5.1).
    assert cache.refresh_due(1000.0 + 7 * 86400, 86400) == []


@pytest.mark.parametrize(
    ("max_age", "due_after"),
    [(3600, 1800.0), (60, FETCH_RETRY_SECONDS), (0, FETCH_RETRY_SECONDS)],
)
def test_a_short_policy_is_refreshed_halfway(max_age: int, due_after: float) -> None:
    """A max_age under the interval: halfway through it, never sooner than five minutes
    after the fetch (§3.3's limit on attempts)."""
    cache = PolicyCache()
    cache.store("a.test", CachedPolicy(Policy(Mode.ENFORCE, ("m.test",), max_age), "x", 0.0))
    assert cache.next_refresh(86400) == due_after


def test_a_failed_refresh_waits_before_the_next() -> None:
    cache = PolicyCache()
    cache.store("a.test", CachedPolicy(WEEK, "one", 0.0))
    cache.fetch_failed("a.test", failed("one", 86400.0))
    assert cache.refresh_due(86400.0 + REFRESH_RETRY_SECONDS - 1, 86400) == []
    assert cache.next_refresh(86400) == 86400.0 + REFRESH_RETRY_SECONDS
    assert cache.refreshable("a.test", 86400.0 + REFRESH_RETRY_SECONDS, 86400) is not None
    cache.store("a.test", CachedPolicy(WEEK, "one", 90000.0))  # refreshed: a day from then
    assert cache.next_refresh(86400) == 90000.0 + 86400
