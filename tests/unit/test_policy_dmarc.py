"""DMARC (RFC 7489): records, organizational domains, alignment, and evaluation over DNS."""

from __future__ import annotations

import random

import pytest

from pillarbox.policy import dmarc
from pillarbox.policy.dmarc import AuthIdentity, Disposition, DmarcResult
from pillarbox.testing.dnszone import ZoneRecord, serve_records


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v=DMARC1; p=none", {"p": "none", "sp": "none", "adkim": "r", "pct": 100}),
        ("v=DMARC1;p=reject;", {"p": "reject", "sp": "reject"}),
        ("v=DMARC1; p=quarantine; sp=reject; adkim=s; aspf=s; pct=25", {"sp": "reject", "pct": 25}),
        ("v = DMARC1 ; p = QUARANTINE", {"p": "quarantine"}),
        ("v=DMARC1; p=reject; pct=500", {"pct": 100}),  # §6.3: invalid value → default
        ("v=DMARC1; p=none; adkim=x", {"adkim": "r"}),
        ("v=DMARC1; rua=mailto:a@example.com", {"p": "none"}),  # §6.6.3 step 6
        ("v=DMARC1; p=bob; rua=mailto:a@example.com", {"p": "none"}),
        ("v=DMARC1; p=none; foo=bar", {"p": "none"}),
        # Numbers are ASCII digits: "²" made parse_record raise ValueError (a TXT record from
        # anyone's DNS), "٥٠" was read as 50; both are invalid values → defaults.
        ("v=DMARC1; p=none; ri=\u00b2; pct=\u00b2", {"ri": 86400, "pct": 100}),
        ("v=DMARC1; p=none; pct=\u0665\u0660", {"pct": 100}),
    ],
)
def test_valid_records(text: str, expected: dict[str, object]) -> None:
    record = dmarc.parse_record(text)
    assert record is not None
    for name, value in expected.items():
        got = getattr(record, name)
        assert (got.value if isinstance(got, Disposition) else got) == value


@pytest.mark.parametrize(
    "text",
    ["p=none; v=DMARC1", "v=DMARC2; p=none", "v=dmarc1; p=none", "", "v=DMARC1; p=bob",
     "v=DMARC1; p=n", "v=DMARC1; p=none; sp=bob", "v=spf1 -all"],
)  # fmt: skip
def test_invalid_records(text: str) -> None:
    assert dmarc.parse_record(text) is None


def test_two_records_mean_no_policy() -> None:
    assert dmarc.select_record(["v=DMARC1; p=reject", "v=DMARC1; p=none"]) is None
    record = dmarc.select_record(["site-verification=x", "v=DMARC1; p=reject"])
    assert record is not None and record.p is Disposition.REJECT


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("mail.example.com", "example.com"),
        ("a.b.c.example.co.uk", "example.co.uk"),
        ("co.uk", None),
        ("EXAMPLE.COM.", "example.com"),
    ],
)
def test_organizational_domain(domain: str, org: str | None) -> None:
    assert dmarc.organizational_domain(domain) == org
    assert dmarc.organizational_domain(domain) == org  # from the cache, still per name


def test_parsed_records_are_kept_by_text_and_bounded() -> None:
    first = dmarc.parse_record("v=DMARC1; p=reject")
    assert dmarc.parse_record("v=DMARC1; p=reject") is first
    other = dmarc.parse_record("v=DMARC1; p=reject; sp=none")
    assert first is not None and other is not None
    assert (first.sp, other.sp) == (Disposition.REJECT, Disposition.NONE)
    for n in range(dmarc.RECORD_CACHE_SIZE + 10):
        dmarc.parse_record(f"v=DMARC1; p=none; rua=mailto:r{n}@example.com")
    assert dmarc.parse_record.cache_info().currsize == dmarc.RECORD_CACHE_SIZE


def test_organizational_domains_cache_is_bounded() -> None:
    for n in range(dmarc.ORG_DOMAIN_CACHE_SIZE + 10):
        assert dmarc.organizational_domain(f"mail.d{n}.example.co.uk") == "example.co.uk"
        assert dmarc.organizational_domain(f"d{n}.test") == f"d{n}.test"
    info = dmarc.organizational_domain.cache_info()
    assert info.currsize == info.maxsize == dmarc.ORG_DOMAIN_CACHE_SIZE


@pytest.mark.parametrize(
    ("author", "identifier", "mode", "expected"),
    [
        ("mail.example.com", "example.com", "r", True),
        ("a.example.com", "b.example.com", "r", True),
        ("mail.example.com", "example.com", "s", False),
        ("Example.COM", "example.com", "s", True),
        ("example.co.uk", "other.co.uk", "r", False),
        ("example.com", "example.com.evil.net", "r", False),
        ("example.com", "myexample.com", "r", False),
    ],
)
def test_alignment(author: str, identifier: str, mode: str, expected: bool) -> None:
    assert dmarc.aligned(author, identifier, mode) is expected


ZONE = [
    ZoneRecord("_dmarc.strict.test", "TXT", "v=DMARC1; p=reject"),
    ZoneRecord("_dmarc.quarantine.test", "TXT", "v=DMARC1; p=quarantine"),
    ZoneRecord("_dmarc.sampled.test", "TXT", "v=DMARC1; p=reject; pct=0"),
    ZoneRecord("_dmarc.parent.test", "TXT", "v=DMARC1; p=reject; sp=quarantine"),
]


async def evaluate(
    authors: list[str],
    spf: AuthIdentity | None = None,
    dkim: list[AuthIdentity] | None = None,
    failing: tuple[str, ...] = (),
) -> dmarc.DmarcOutcome:
    async with serve_records(ZONE, failing=failing) as resolver:
        return await dmarc.evaluate(resolver, authors, spf, dkim or [], rng=random.Random(1))


async def test_aligned_dkim_pass_passes_despite_spf_fail() -> None:
    outcome = await evaluate(
        ["strict.test"], AuthIdentity("fail", "strict.test"), [AuthIdentity("pass", "strict.test")]
    )
    assert (outcome.result, outcome.disposition, outcome.aligned) == (
        DmarcResult.PASS,
        Disposition.NONE,
        ("dkim",),
    )


async def test_unaligned_passes_fail_with_the_published_policy() -> None:
    outcome = await evaluate(
        ["strict.test"], AuthIdentity("pass", "esp.test"), [AuthIdentity("pass", "esp.test")]
    )
    assert (outcome.result, outcome.disposition) == (DmarcResult.FAIL, Disposition.REJECT)
    softfail = await evaluate(["quarantine.test"], AuthIdentity("softfail", "quarantine.test"))
    assert softfail.disposition is Disposition.QUARANTINE


async def test_subdomain_gets_sp_and_pct_zero_lowers_the_policy() -> None:
    child = await evaluate(["news.parent.test"])
    sampled = await evaluate(["sampled.test"])
    assert (child.result, child.disposition) == (DmarcResult.FAIL, Disposition.QUARANTINE)
    assert (sampled.result, sampled.disposition) == (DmarcResult.FAIL, Disposition.QUARANTINE)


async def test_no_record_temperror_and_no_from() -> None:
    assert (await evaluate(["nowhere.test"])).result is DmarcResult.NONE
    temporary = await evaluate(["strict.test"], failing=("_dmarc.strict.test",))
    assert (temporary.result, temporary.disposition) == (DmarcResult.TEMPERROR, Disposition.NONE)
    missing = await evaluate([])
    assert (missing.result, missing.disposition) == (DmarcResult.PERMERROR, Disposition.REJECT)


async def test_several_author_domains_take_the_strictest() -> None:
    outcome = await evaluate(
        ["strict.test", "quarantine.test"], None, [AuthIdentity("pass", "quarantine.test")]
    )
    assert (outcome.domain, outcome.disposition) == ("strict.test", Disposition.REJECT)


# -- RFC 9989: np, t, psd, and the DNS tree walk ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v=DMARC1; p=reject", {"np": "reject", "t": False, "psd": "u"}),
        ("v=DMARC1; p=reject; sp=quarantine", {"np": "quarantine"}),  # §4.7: np absent → sp
        ("v=DMARC1; p=reject; sp=none; np=quarantine", {"sp": "none", "np": "quarantine"}),
        ("v=DMARC1; p=reject; t=y", {"t": True, "pct": 100}),
        ("v=DMARC1; p=reject; t=Y", {"t": True}),
        ("v=DMARC1; p=reject; t=bob", {"t": False}),  # §4.8: invalid value → default
        # A record with t speaks RFC 9989, which has no pct (Appendix A.6): pct is ignored.
        ("v=DMARC1; p=reject; t=n; pct=0", {"t": False, "pct": 100}),
        ("v=DMARC1; p=reject; pct=0", {"t": False, "pct": 0}),  # legacy: still honoured
        ("v=DMARC1; p=none; psd=y", {"psd": "y"}),
        ("v=DMARC1; p=none; psd=x", {"psd": "u"}),
        ("v=DMARC1; np=bob; rua=mailto:a@example.com", {"p": "none", "np": "none"}),
        # §4.10.1: an invalid sp or np with a valid rua: as if the record said p=none, for all
        (
            "v=DMARC1; p=reject; sp=bob; rua=mailto:a@example.com",
            {"p": "none", "sp": "none", "np": "none"},
        ),
        (
            "v=DMARC1; p=reject; sp=quarantine; np=bob; rua=mailto:a@example.com",
            {"p": "none", "sp": "none", "np": "none"},
        ),
    ],
)
def test_rfc9989_tags(text: str, expected: dict[str, object]) -> None:
    record = dmarc.parse_record(text)
    assert record is not None
    for name, value in expected.items():
        got = record.nonexistent if name == "np" else getattr(record, name)
        assert (got.value if isinstance(got, Disposition) else got) == value
    # The canonical text reads back to the same record (reports quote it).
    assert dmarc.parse_record(record.text()) == record


def test_an_invalid_np_without_rua_voids_the_record() -> None:
    assert dmarc.parse_record("v=DMARC1; p=reject; np=bob") is None  # §4.10.1


@pytest.mark.parametrize(
    ("domain", "targets"),
    [
        ("a.mail.example.com", ["a.mail.example.com", "mail.example.com", "example.com", "com"]),
        # RFC 9989 §4.10: eight queries at most, the second at the seven right-most labels.
        (
            "a.b.c.d.e.f.g.h.i.j.mail.example.com",
            [
                "a.b.c.d.e.f.g.h.i.j.mail.example.com",
                "g.h.i.j.mail.example.com",
                "h.i.j.mail.example.com",
                "i.j.mail.example.com",
                "j.mail.example.com",
                "mail.example.com",
                "example.com",
                "com",
            ],
        ),
        ("com", ["com"]),
        ("", []),
    ],
)
def test_tree_walk_targets(domain: str, targets: list[str]) -> None:
    assert dmarc.walk_targets(domain) == targets


WALK_ZONE = [
    # RFC 9989 Appendix B.4.1/B.4.2.
    ZoneRecord("_dmarc.example.com", "TXT", "v=DMARC1; p=reject; sp=quarantine"),
    ZoneRecord("_dmarc.signing.example.com", "TXT", "v=DMARC1; p=none"),
    # B.4.3: a public suffix operator's record.
    ZoneRecord("_dmarc.bank.example", "TXT", "v=DMARC1; p=reject; psd=y; np=reject; sp=none"),
    ZoneRecord("_dmarc.giant.bank.example", "TXT", "v=DMARC1; p=quarantine"),
    # psd=n: an organizational domain below its registered domain.
    ZoneRecord("_dmarc.unit.corp.com", "TXT", "v=DMARC1; p=reject; psd=n"),
    ZoneRecord("_dmarc.corp.com", "TXT", "v=DMARC1; p=none"),
    # Only an intermediate record: RFC 7489 never sees it, the tree walk does.
    ZoneRecord("_dmarc.b.middle.com", "TXT", "v=DMARC1; p=reject"),
    # np: existing and non-existent subdomains.
    ZoneRecord("_dmarc.np.test", "TXT", "v=DMARC1; p=none; sp=quarantine; np=reject"),
    ZoneRecord("real.np.test", "A", "192.0.2.1"),
    ZoneRecord("np.test", "A", "192.0.2.1"),
    ZoneRecord("_dmarc.testing.test", "TXT", "v=DMARC1; p=reject; t=y"),
    ZoneRecord("_dmarc.testing-q.test", "TXT", "v=DMARC1; p=quarantine; t=y; pct=100"),
    ZoneRecord("_dmarc.legacy.test", "TXT", "v=DMARC1; p=reject; t=n; pct=0"),
]


async def walk_org(domain: str) -> str:
    async with serve_records(WALK_ZONE) as resolver:
        return await dmarc.TreeWalk(resolver).organizational_domain(domain)


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("example.com", "example.com"),  # B.4.1
        ("signing.example.com", "example.com"),  # fewest labels wins
        ("a.b.c.d.e.f.g.h.i.j.k.example.com", "example.com"),  # B.4.2
        ("giant.bank.example", "giant.bank.example"),  # B.4.3: one below psd=y
        ("mail.giant.bank.example", "giant.bank.example"),
        ("mail.mega.bank.example", "mega.bank.example"),
        ("x.unit.corp.com", "unit.corp.com"),  # psd=n stops the walk
        ("nothing.invalid", "nothing.invalid"),  # no record anywhere: the name itself
    ],
)
async def test_tree_walk_organizational_domain(domain: str, org: str) -> None:
    assert await walk_org(domain) == org


async def walk_evaluate(
    authors: list[str],
    spf: AuthIdentity | None = None,
    dkim: list[AuthIdentity] | None = None,
    discovery: dmarc.Discovery = dmarc.Discovery.TREEWALK,
) -> dmarc.DmarcOutcome:
    async with serve_records(WALK_ZONE) as resolver:
        return await dmarc.evaluate(
            resolver, authors, spf, dkim or [], rng=random.Random(1), discovery=discovery
        )


async def test_tree_walk_alignment_and_policy_domain() -> None:
    # B.4.3: SPF of mail.giant.bank.example aligns; DKIM of mail.mega.bank.example does not.
    outcome = await walk_evaluate(
        ["giant.bank.example"],
        AuthIdentity("pass", "mail.giant.bank.example"),
        [AuthIdentity("pass", "mail.mega.bank.example")],
    )
    assert (outcome.result, outcome.aligned) == (DmarcResult.PASS, ("spf",))
    assert outcome.policy_domain == "giant.bank.example"
    assert outcome.discovery is dmarc.Discovery.TREEWALK
    bad = await walk_evaluate(
        ["giant.bank.example"], None, [AuthIdentity("pass", "mega.bank.example")]
    )
    assert (bad.result, bad.disposition) == (DmarcResult.FAIL, Disposition.QUARANTINE)


async def test_tree_walk_finds_what_rfc7489_does_not() -> None:
    walked = await walk_evaluate(["a.b.middle.com"])
    assert (walked.result, walked.policy_domain) == (DmarcResult.FAIL, "b.middle.com")
    assert walked.disposition is Disposition.REJECT  # b.middle.com's p, applied as its sp
    psl = await walk_evaluate(["a.b.middle.com"], discovery=dmarc.Discovery.PSL)
    assert psl.result is DmarcResult.NONE


async def test_public_suffix_record_applies_below_an_org_without_one() -> None:
    # mega.bank.example has no record: the PSD's applies, np since the name does not exist.
    outcome = await walk_evaluate(["mega.bank.example"])
    assert (outcome.policy_domain, outcome.disposition) == ("bank.example", Disposition.REJECT)


@pytest.mark.parametrize("discovery", list(dmarc.Discovery))
async def test_np_applies_to_non_existent_subdomains_only(discovery: dmarc.Discovery) -> None:
    existing = await walk_evaluate(["real.np.test"], discovery=discovery)
    missing = await walk_evaluate(["ghost.np.test"], discovery=discovery)
    itself = await walk_evaluate(["np.test"], discovery=discovery)
    assert existing.disposition is Disposition.QUARANTINE  # sp
    assert missing.disposition is Disposition.REJECT  # np: NXDOMAIN
    assert itself.disposition is Disposition.NONE  # p
    assert missing.policy_domain == "np.test"


async def test_testing_mode_lowers_the_policy_once() -> None:
    testing = await walk_evaluate(["testing.test"])
    assert (testing.disposition, testing.override) == (
        Disposition.QUARANTINE,
        dmarc.Override.TEST_MODE,
    )
    quarantine = await walk_evaluate(["testing-q.test"])
    assert (quarantine.disposition, quarantine.override) == (
        Disposition.NONE,
        dmarc.Override.TEST_MODE,
    )
    # t=n with pct=0: the record is an RFC 9989 one, pct is ignored, the policy applies.
    legacy = await walk_evaluate(["legacy.test"])
    assert (legacy.disposition, legacy.override) == (Disposition.REJECT, None)
    assert testing.override_comment == "t=y"
    sampled = await evaluate(["sampled.test"])
    assert sampled.override is dmarc.Override.OTHER
    assert sampled.override_comment == "not sampled (pct=0)"


def test_local_exception_keeps_the_result_and_lifts_the_policy() -> None:
    record = dmarc.parse_record("v=DMARC1; p=reject")
    failed = dmarc.DmarcOutcome(DmarcResult.FAIL, Disposition.REJECT, "a.test", record, "x")
    excused = dmarc.local_exception(failed, "arc=pass as[1].d=list.test")
    assert (excused.result, excused.disposition, excused.override) == (
        DmarcResult.FAIL,
        Disposition.NONE,
        dmarc.Override.LOCAL_POLICY,
    )
    assert excused.override_comment == "arc=pass as[1].d=list.test"
    passed = dmarc.DmarcOutcome(DmarcResult.PASS, Disposition.NONE, "a.test", record)
    assert dmarc.local_exception(passed, "c") is passed
    monitoring = dmarc.DmarcOutcome(DmarcResult.FAIL, Disposition.NONE, "a.test", record)
    assert dmarc.local_exception(monitoring, "c") is monitoring  # nothing to lift


async def test_slow_lookups_are_a_temperror() -> None:
    async with serve_records(WALK_ZONE) as resolver:
        outcome = await dmarc.evaluate(
            resolver,
            ["a.b.c.d.e.f.g.h.middle.com"],
            None,
            [],
            discovery=dmarc.Discovery.TREEWALK,
            timeout=0.0,
        )
    assert (outcome.result, outcome.disposition) == (DmarcResult.TEMPERROR, Disposition.NONE)
