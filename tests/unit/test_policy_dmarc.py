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
