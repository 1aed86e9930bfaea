"""RFC 5235 spamtest and spamtestplus: our policy's verdict on the RFC's scales
(:mod:`pillarbox.sieve.spamtest`), and the tests that read it."""

from __future__ import annotations

import pytest

from pillarbox.sieve import Discard, SieveError, SieveMessage, SpamStatus, compile_script
from pillarbox.sieve.spamtest import level, percent

RAW = b"From: a@example.net\r\nSubject: hi\r\n\r\nbody\r\n"


@pytest.mark.parametrize(
    ("score", "action", "expected_level", "expected_percent"),
    [
        (-3.0, "inbox", "1", "0"),  # certainly not spam
        (0.0, "inbox", "1", "0"),
        (1.2, "inbox", "1", "8"),
        (2.5, "inbox", "3", "16"),
        (4.9, "inbox", "4", "32"),
        (5.0, "junk", "5", "33"),
        (7.5, "junk", "6", "50"),
        (14.9, "junk", "9", "99"),
        (15.0, "reject", "10", "100"),
        (40.0, "reject", "10", "100"),
        # Overrides move the value into the action's band.
        (0.0, "junk", "5", "33"),  # a block list
        (9.0, "inbox", "4", "32"),  # an allow list
        (2.0, "reject", "10", "100"),  # a DMARC p=reject
    ],
)
def test_mapping(score: float, action: str, expected_level: str, expected_percent: str) -> None:
    status = SpamStatus(score, action, junk=5.0, reject=15.0)
    assert (level(status), percent(status)) == (expected_level, expected_percent)


def test_not_tested_is_zero() -> None:
    """§3.1: "0" is a message not tested; with :percent §3.2 has no other value for it."""
    assert (level(None), percent(None)) == ("0", "0")


def holds(script: str, spam: SpamStatus | None) -> bool:
    outcome = compile_script(script).run(SieveMessage.from_bytes(RAW, spam=spam))
    assert outcome.error is None
    return outcome.actions == (Discard(),)


NUMERIC = '["spamtestplus", "relational", "comparator-i;ascii-numeric"]'


def test_the_test_reads_the_delivery_verdict() -> None:
    junk = SpamStatus(7.5, "junk", 5.0, 15.0)
    numeric = ':comparator "i;ascii-numeric"'
    ge5 = f'require {NUMERIC}; if spamtest :value "ge" {numeric} "5" {{ discard; }}'
    assert holds(ge5, junk)
    assert not holds(ge5, SpamStatus(1.0, "inbox", 5.0, 15.0))
    assert not holds(ge5, None)
    pct = f'require {NUMERIC}; if spamtest :percent :value "eq" {numeric} "50" {{ discard; }}'
    assert holds(pct, junk)
    assert holds('require "spamtest"; if spamtest "0" { discard; }', None)


def test_percent_needs_spamtestplus() -> None:
    with pytest.raises(SieveError, match="spamtestplus"):
        compile_script('require "spamtest"; if spamtest :percent "5" {}')
    # "spamtestplus" brings "spamtest" with it.
    compile_script('require "spamtestplus"; if spamtest "5" {}')
