"""Trusted ARC sealers (RFC 8617 §7.2.1): which chains lift a DMARC failure's policy."""

from __future__ import annotations

import pytest

from pillarbox.policy.arc import ArcOutcome, ArcResult, _dmarc_passes, trusted_pass

SEALERS = frozenset({"list.test"})


def outcome(
    result: ArcResult = ArcResult.PASS,
    sealer: str = "list.test",
    passed: frozenset[str] = frozenset({"strict.test"}),
) -> ArcOutcome:
    return ArcOutcome(result, 1, "", sealer, passed)


@pytest.mark.parametrize(
    ("arc_out", "authors", "lifted"),
    [
        (outcome(), ("strict.test",), True),
        (outcome(sealer="other.test"), ("strict.test",), False),  # not a trusted sealer
        (outcome(ArcResult.FAIL), ("strict.test",), False),  # the chain does not hold
        (outcome(passed=frozenset()), ("strict.test",), False),  # the sealer saw DMARC fail
        (outcome(), ("strict.test", "other.test"), False),  # one From domain not vouched for
        (outcome(), (), False),
        (None, ("strict.test",), False),
    ],
)
def test_trusted_pass(arc_out: ArcOutcome | None, authors: tuple[str, ...], lifted: bool) -> None:
    assert trusted_pass(arc_out, SEALERS, authors) is lifted


def test_only_the_newest_sets_results_count() -> None:
    raw = (
        b"ARC-Authentication-Results: i=2; list.test; dmarc=fail header.from=strict.test\r\n"
        b"ARC-Authentication-Results: i=1; first.test;\r\n"
        b" dmarc=pass (p=reject) header.from=Strict.Test.\r\n"
        b"From: a@strict.test\r\n\r\nbody\r\n"
    )
    assert _dmarc_passes(raw, 2) == frozenset()
    assert _dmarc_passes(raw, 1) == frozenset({"strict.test"})
